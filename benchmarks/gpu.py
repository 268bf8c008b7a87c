"""GPU benchmark: what a search costs on the GPU of this machine, per Keras backend.

    .venv/bin/python benchmarks/gpu.py                    # every backend installed; writes benchmarks/gpu.json
    .venv/bin/python benchmarks/gpu.py --backends jax --quick

Measures, and prints as it goes (one JSON line per figure) with the GPU, driver and versions:

1. steady training throughput (images/s) of the seed's CIFAR-10 JumpNet at batch 128 on random data
   shaped like CIFAR-10 (uniform pixels in [0, 1), labels 0-9), with mixed precision on and off, per
   backend, for jumpsearch's trial loop and for a plain ``model.fit`` on the same arrays;
2. the fixed cost of a trial on the same path: from the call to the end of the first step (build,
   compile, first step), and to the end of training;
3. trials per hour of 1-epoch trials of the shipped CIFAR space's models on 45,000 random 32x32x3 images
   (a 50,000-image set less its 10% validation split), with 1, 2 and 4 workers sharing GPU 0
   (``jumpsearch run --gpus 0,0,…``), and the share of that wall time the GPU was busy (nvidia-smi's
   utilization, sampled every 200 ms).

It refuses to run on a machine without an NVIDIA GPU (``--allow-cpu`` runs the same code on the CPU to
check the script, and says so in every figure). It needs no TensorFlow: each backend that imports is
measured in its own process, with ``KERAS_BACKEND`` set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "torch", "tensorflow")
BATCH = 128


def nvidia_smi(*query: str) -> list[list[str]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    out = subprocess.run([smi, f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout  # fmt: skip
    return [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]


def machine() -> dict:
    versions = {"python": platform.python_version()}
    for module in ("keras", "optuna", "jax", "jaxlib", "torch", "tensorflow"):
        if importlib.util.find_spec(module) is not None:
            try:
                from importlib.metadata import version

                versions[module] = version(module)
            except Exception:  # noqa: BLE001 - a module without distribution metadata
                versions[module] = "?"
    gpus = nvidia_smi("name", "driver_version", "memory.total")
    return {
        "gpus": [{"name": n, "driver": d, "memory_mib": int(float(m))} for n, d, m in gpus],
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "versions": versions,
    }


# ----------------------------------------------------------------------------------------- child: one backend


def child_throughput(args: argparse.Namespace) -> dict:
    """One backend, one precision, one path (jumpsearch's trial loop, or a plain fit on the same arrays),
    in a process of its own so that neither warms a cache for the other."""
    import numpy as np

    from jumpsearch import Candidate, TrainingConfig, build_model, canonical_config
    from jumpsearch.data import Dataset
    from jumpsearch.device import setup_device
    from jumpsearch.training import train_and_evaluate

    device = setup_device()
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if args.precision == "mixed" else "float32")
    rng = np.random.default_rng(0)
    n = BATCH * args.steps
    x = rng.random((n, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    data = Dataset("random-cifar-shaped", x, y, x[:1024], y[:1024], None, None, 10)
    config = canonical_config("jumpnet_seed_cifar")
    training = TrainingConfig(optimizer="sgd", learning_rate=0.05, batch_size=BATCH, epochs=args.epochs)

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.first_step = None
            self.epochs: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self.first_step is None:
                self.first_step = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.epoch_start)

    clock = Clock()
    start = time.perf_counter()
    if args.path == "jumpsearch":
        train_and_evaluate(Candidate(config, training), data, seed=0, callbacks=[clock])
    else:  # the usual Keras recipe on the same arrays
        keras.utils.set_random_seed(0)
        model = build_model(config)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])  # fmt: skip
        model.fit(x, y, batch_size=BATCH, epochs=args.epochs, callbacks=[clock], verbose=0)
    steady = statistics.median(clock.epochs[1:])
    return {
        "images_per_second": round(n / steady, 1),
        "steady_epoch_seconds": round(steady, 4),
        "fixed_cost_to_first_step_seconds": round(clock.first_step - start, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "backend": keras.config.backend(),
        "device": device,
        "images_per_epoch": n,
    }


# ----------------------------------------------------------------------------------------- parent


def run_child(backend: str, precision: str, args: argparse.Namespace) -> dict:
    figure: dict = {"case": "seed CIFAR JumpNet, batch 128, random CIFAR-shaped data", "backend": backend,
                    "precision": precision}  # fmt: skip
    for path in ("jumpsearch", "plain_fit"):
        command = [sys.executable, __file__, "--child", "--path", path, "--precision", precision,
                   "--steps", str(args.steps), "--epochs", str(args.epochs)]  # fmt: skip
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        if result.returncode != 0:
            return {**figure, "error": " ".join(result.stderr.strip().splitlines()[-3:])[-500:]}
        figure[path] = json.loads(result.stdout.strip().splitlines()[-1])
    figure["ratio_to_plain_fit"] = round(
        figure["jumpsearch"]["images_per_second"] / figure["plain_fit"]["images_per_second"], 3
    )
    return figure


def packing(backend: str, workers: int, args: argparse.Namespace, folder: Path) -> dict:
    """Trials per hour of 1-epoch trials of the CIFAR space with ``workers`` processes on GPU 0."""
    space = folder / f"pack{workers}.yaml"
    text = (ROOT / "search_spaces" / "cifar.yaml").read_text()
    text = text.replace("name: cifar", f"name: pack{workers}")
    text = text.replace("dataset: cifar10", f"dataset: npz\n  path: {folder / 'images.npz'}")
    text = text.replace("epochs: 10", "epochs: 1").replace(
        "sampler: {name: tpe, n_startup_trials: 16}", "sampler: random"
    )
    space.write_text(text)
    trials = args.trials_per_worker * workers
    command = [sys.executable, "-m", "jumpsearch", "run", "--space", str(space), "--trials", str(trials), "-q",
               "--storage", f"sqlite:///{folder}/pack{workers}.db", "--gpus", ",".join(["0"] * workers)]  # fmt: skip
    if args.allow_cpu and not nvidia_smi("name"):
        command = command[:-2] + ["--workers", str(workers)]
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    sampler = None
    smi = shutil.which("nvidia-smi")
    if smi:
        sampler = subprocess.Popen([smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0",
                                    "-lms", "200"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    busy = None
    if sampler is not None:
        sampler.terminate()
        samples = [float(v) for v in sampler.communicate()[0].split() if v.replace(".", "").isdigit()]
        busy = round(statistics.fmean(samples) / 100, 3) if samples else None
    figure = {"case": "trials per hour, 1-epoch CIFAR-space trials on 45,000 images", "backend": backend,
              "workers": workers, "trials": trials, "seconds": round(seconds, 1),
              "trials_per_hour": round(3600 * trials / seconds, 1), "gpu_busy_share": busy}  # fmt: skip
    if result.returncode != 0:
        figure["error"] = " ".join(result.stderr.strip().splitlines()[-2:])[-500:]
    return figure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated; those not installed are skipped"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu.json"))
    parser.add_argument("--quick", action="store_true", help="fewer steps and trials (a first look, or a check)")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="run on the CPU to check the script (not a GPU figure)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="mixed", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="jumpsearch", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trials-per-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps = args.steps or (4 if args.allow_cpu else 20 if args.quick else 60)
    args.epochs = args.epochs or (2 if args.allow_cpu else 3)
    args.trials_per_worker = args.trials_per_worker or (1 if args.allow_cpu else 2 if args.quick else 4)
    if args.child:
        print(json.dumps(child_throughput(args)), flush=True)
        return 0
    about = machine()
    if not about["gpus"] and not args.allow_cpu:
        print("gpu.py: no NVIDIA GPU here (nvidia-smi lists none); this benchmark measures GPUs only", file=sys.stderr)
        return 2
    about["note"] = "GPU figures" if about["gpus"] else "CPU run to check the script: not GPU figures"
    print(json.dumps(about), flush=True)
    figures: list[dict] = []
    installed = [b for b in args.backends.split(",") if importlib.util.find_spec(b) is not None]
    for backend in installed:
        for precision in ("mixed", "float32"):
            figure = run_child(backend, precision, args)
            print(json.dumps(figure), flush=True)
            figures.append(figure)
    measured = [f for f in figures if "error" not in f]
    fastest = max(measured, key=lambda f: f["jumpsearch"]["images_per_second"])["backend"] if measured else None
    if fastest:
        import numpy as np

        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(0)
            n = 2_000 if args.allow_cpu else 50_000
            np.savez(Path(tmp) / "images.npz", x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                     y_train=np.arange(n) % 10)  # fmt: skip
            for workers in (1, 2, 4):
                figure = packing(fastest, workers, args, Path(tmp))
                print(json.dumps(figure), flush=True)
                figures.append(figure)
    Path(args.out).write_text(json.dumps({"machine": about, "figures": figures}, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
