"""Several worker processes on one machine, one study: Optuna's own distributed model.

Each worker is the same ``jumpsearch run`` against the same storage, with its own sampler seed, so that
workers propose different points; with GPUs, each sees only its own through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from jumpsearch.errors import JumpsearchError


def gpu_ids(spec: str) -> list[str]:
    """``all`` (every GPU nvidia-smi lists) or a list such as ``0,1``."""
    if spec != "all":
        ids = [part.strip() for part in spec.split(",") if part.strip()]
        if not ids or not all(part.isdigit() for part in ids):
            raise JumpsearchError(f"--gpus {spec}: expected all or GPU indices such as 0,1")
        return ids
    smi = shutil.which("nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout if smi else ""
    ids = [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]
    if not ids:
        raise JumpsearchError("--gpus all: nvidia-smi lists no GPU on this machine")
    return ids


def spawn_workers(run_args: Sequence[str], count: int, seed: int, gpus: Sequence[str] | None = None) -> list:
    """Start ``count`` quiet ``jumpsearch run`` processes with seeds ``seed``, ``seed + 1``, …, the i-th
    seeing only ``gpus[i]`` when GPUs are given. ``run_args`` are the shared ``run`` arguments."""
    processes = []
    for i in range(count):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i]
        command = [sys.executable, "-m", "jumpsearch", "run", *run_args, "--seed", str(seed + i), "--quiet"]
        processes.append(subprocess.Popen(command, env=env))
    return processes
