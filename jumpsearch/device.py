"""The backend and the device a process trains on: set up once, quietly, and named for the trial record.

Keras runs on TensorFlow (the default), JAX or PyTorch (``KERAS_BACKEND``). This module is the seam: it
finds the GPUs each backend sees and sets them up (TensorFlow's memory growth, JAX without
preallocation, so that several workers share one GPU), turns mixed precision on where there is a GPU,
and says which backend and device a trial ran on. Nothing here imports a backend that is not chosen.

TensorFlow writes its C++ start-up lines (oneDNN, CUDA stubs, a cuInit error on a machine without a GPU)
straight to file descriptor 2, before any logging is configured, so neither ``TF_CPP_MIN_LOG_LEVEL`` nor
Python's logging can hold them. ``quiet_native_stderr`` points descriptor 2 at a temporary file while the
backend imports and finds its devices, then hands those lines to this module's logger at DEBUG level.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from jumpsearch.config import echo
from jumpsearch.errors import JumpsearchError, signals_held

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


def _tensorflow_gpus() -> list[str]:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [tf.config.experimental.get_device_details(gpu).get("device_name", "GPU") for gpu in gpus]


def _jax_gpus() -> list[str]:
    import jax

    return [device.device_kind for device in jax.devices() if device.platform == "gpu"]


def _torch_gpus() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


GPUS = {"tensorflow": _tensorflow_gpus, "jax": _jax_gpus, "torch": _torch_gpus}


def check_backend() -> str:
    """The backend Keras will import (``KERAS_BACKEND``, else the ``backend`` of Keras's ``keras.json``,
    else TensorFlow), read without importing anything: an unknown one is refused before any process
    starts or any study is made, rather than as Keras's traceback from every worker."""
    name, source = os.environ.get("KERAS_BACKEND"), "KERAS_BACKEND"
    if not name:
        config = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "keras.json"
        try:
            name, source = json.loads(config.read_text()).get("backend"), f"{config}: backend"
        except (OSError, ValueError, AttributeError):
            name = None
    name = name or "tensorflow"
    if name not in GPUS:
        raise JumpsearchError(f"{source} {echo(name)}: not a backend jumpsearch trains with (known: {', '.join(GPUS)})")
    return name


def backend() -> str:
    """The Keras backend of this process (imported quietly on first use). On JAX or PyTorch, Keras is
    told that TensorFlow is absent, so that it does not import it for its own optional uses (seeding
    tf.random, recognizing TensorFlow types): the package then runs the same where TensorFlow is not
    installed at all."""
    check_backend()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's later C++ notes, e.g. tf.data's, too
    with signals_held(), quiet_native_stderr():  # a signal waits for the import: cut, it leaves a broken one
        import keras
    name = keras.config.backend()
    if name != "tensorflow":
        from keras.src.utils import module_utils

        module_utils.tensorflow._available = False
    return name


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend (``keras.utils.set_random_seed``, after ``backend`` above)."""
    backend()
    import keras

    keras.utils.set_random_seed(seed)


@lru_cache(maxsize=1)
def setup_device() -> str:
    """Import the backend and configure it once: on a GPU, mixed precision (and the backend's own
    memory settings); returns the device as a trial records it, e.g. ``CPU`` or ``GPU:0 NVIDIA H100``."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: take GPU memory as needed
    name = backend()
    with quiet_native_stderr():
        gpus = GPUS[name]()
    if not gpus:
        logger.debug("no GPU visible to %s; training on CPU", name)
        return "CPU"
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    return f"GPU:0 {gpus[0]}" + (f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else "")


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
