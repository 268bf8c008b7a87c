"""The backend and the device a process trains on: set up once, quietly, and named for the trial record.

TensorFlow writes its C++ start-up lines (oneDNN, CUDA stubs, a cuInit error on a machine without a GPU)
straight to file descriptor 2, before any logging is configured, so neither ``TF_CPP_MIN_LOG_LEVEL`` nor
Python's logging can hold them. ``quiet_native_stderr`` points descriptor 2 at a temporary file while the
backend imports and finds its devices, then hands those lines to this module's logger at DEBUG level.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import lru_cache

logger = logging.getLogger(__name__)

HOST_MEMORY_SHARE = 0.5  # of the machine's RAM, for a trial on the CPU
GPU_MEMORY_SHARE = 0.9  # of the smallest visible GPU's memory


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what native code writes to stderr during the block to the DEBUG log instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                logger.debug("backend: %s", line)


@lru_cache(maxsize=1)
def setup_device() -> str:
    """Import the backend and configure it once: on a GPU, memory growth and mixed precision."""
    with quiet_native_stderr():
        import keras
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        logger.info("no GPU visible to TensorFlow; training on CPU")
        return "CPU"
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.mixed_precision.set_global_policy("mixed_float16")
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"GPU:0 {name}" + (f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else "")


@lru_cache(maxsize=1)
def memory_budget() -> int:
    """Bytes a trial may plan to use when the space sets no ``max_memory``: 90% of the smallest GPU that
    nvidia-smi lists (respecting CUDA_VISIBLE_DEVICES), else half of this machine's RAM."""
    smi = shutil.which("nvidia-smi")
    if smi:
        query = [smi, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"]
        try:
            listed = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        sizes = [
            int(float(size)) * 2**20
            for index, size in (line.split(",") for line in listed.splitlines() if line.count(",") == 1)
            if visible is None or index.strip() in visible.split(",")
        ]
        if sizes:
            return int(GPU_MEMORY_SHARE * min(sizes))
    return int(HOST_MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
