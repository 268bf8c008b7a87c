"""The Keras backends side by side on this machine: the fixed cost of a trial and a whole digits search.

    .venv/bin/python benchmarks/backends.py                   # every backend installed; about 6 minutes on 2 cores
    .venv/bin/python benchmarks/backends.py --backends jax --trials 5

For each backend that imports, in its own processes (``KERAS_BACKEND`` set): a digits point of 5 epochs
on jumpsearch's trial path — the wall time from the call to the end of the first step (import and
device set-up excluded: measured in a warm process), the steady epoch, the whole trial — and then
``jumpsearch run --space search_spaces/digits.yaml --trials N`` end to end (process start-up included).
Prints one JSON line per figure and writes ``benchmarks/backends.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child() -> dict:
    """One backend: a warm-up trial (imports, device), then the measured one."""
    import keras

    from jumpsearch import Candidate, DataConfig, JumpNetConfig, TrainingConfig
    from jumpsearch.data import load_dataset
    from jumpsearch.training import train_and_evaluate

    data = load_dataset(DataConfig())
    model = JumpNetConfig(input_shape=(8, 8, 1), stem_filters=(16, 16), blocks_per_group=(1, 1), base_filters=16,
                          jump_spacing=1, jump_width=0.5)  # fmt: skip
    candidate = Candidate(model, TrainingConfig(epochs=5, batch_size=64))
    train_and_evaluate(Candidate(model, TrainingConfig(epochs=1, steps_per_epoch=2)), data)  # warm: imports, device

    class Clock(keras.callbacks.Callback):
        first_step: float | None = None
        epochs: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.first_step = self.first_step or time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs = [*self.epochs, time.perf_counter() - self.start]

    clock = Clock()
    start = time.perf_counter()
    result = train_and_evaluate(candidate, data, seed=0, callbacks=[clock])
    return {
        "case": "digits point, 5 epochs of 1,437 images, trial path",
        "backend": result.backend,
        "device": result.device,
        "fixed_cost_to_first_step_seconds": round(clock.first_step - start, 3),
        "steady_epoch_seconds": round(statistics.median(clock.epochs[1:]), 4),
        "trial_seconds": round(time.perf_counter() - start, 3),
        "val_accuracy": round(result.val_accuracy, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "backends.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child()), flush=True)
        return 0
    about = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    print(json.dumps(about), flush=True)
    figures = []
    for backend in [b for b in args.backends.split(",") if importlib.util.find_spec(b) is not None]:
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
        result = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True)
        figure = json.loads(result.stdout.splitlines()[-1]) if result.returncode == 0 else {
            "backend": backend, "error": result.stderr.strip().splitlines()[-1][-300:]}  # fmt: skip
        print(json.dumps(figure), flush=True)
        figures.append(figure)
        with tempfile.TemporaryDirectory() as tmp:
            space = str(ROOT / "search_spaces" / "digits.yaml")
            command = [sys.executable, "-m", "jumpsearch", "run", "--space", space, "--trials", str(args.trials),
                       "-q", "--storage", f"sqlite:///{tmp}/search.db"]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
        search = {"case": f"digits search, {args.trials} trials, `jumpsearch run` end to end", "backend": backend,
                  "seconds": round(seconds, 1), "trials_per_minute": round(60 * args.trials / seconds, 2)}  # fmt: skip
        if done.returncode != 0:
            search["error"] = done.stderr.strip().splitlines()[-1][-300:]
        print(json.dumps(search), flush=True)
        figures.append(search)
    Path(args.out).write_text(json.dumps({"machine": about, "figures": figures}, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
