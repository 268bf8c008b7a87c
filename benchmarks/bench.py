"""Benchmarks of a trial's fixed costs, what TensorFlow costs for each new network, training throughput,
counting and the digits search (in one process, and with its worker replaced every 5 trials; every 2
with --quick).

    .venv/bin/python benchmarks/bench.py            # all of it, about 10 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench.py --quick    # fewer repetitions and trials

Prints what it measured and on which machine, and writes the same as JSON (``--out``).
Timings live here, never in the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jumpsearch.device import setup_device

setup_device()  # imports TensorFlow with its start-up lines kept off the terminal, as the CLI does

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from jumpsearch import Candidate, JumpNetConfig, TrainingConfig, build_model, canonical_config  # noqa: E402
from jumpsearch.config import DataConfig  # noqa: E402
from jumpsearch.counting import count  # noqa: E402
from jumpsearch.data import Dataset, load_dataset  # noqa: E402
from jumpsearch.optimizers import make_optimizer  # noqa: E402
from jumpsearch.records import searched  # noqa: E402
from jumpsearch.space import load_space  # noqa: E402
from jumpsearch.study import run_search  # noqa: E402
from jumpsearch.training import train_and_evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [
        tf.config.experimental.get_device_details(g).get("device_name", g.name)
        for g in tf.config.list_physical_devices("GPU")
    ]
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpus": gpus or ["none"],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class FirstSteps(keras.callbacks.Callback):
    """Marks the start of ``fit`` and the end of its first two steps (per-step callbacks sync every step,
    so this runs apart from the throughput measurements)."""

    def on_train_begin(self, logs=None):
        self.marks = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        if len(self.marks) < 3:
            self.marks.append(time.perf_counter())


def fixed_costs(candidate: Candidate, data: Dataset, repeats: int) -> dict:
    """Where a trial's fixed cost goes, on the trial's own path: set-up before ``fit`` (clear the session,
    build, compile), the first step (the trace and TensorFlow's first-call graph set-up), a later step."""
    rows = []
    for r in range(repeats):
        marks = FirstSteps()
        start = time.perf_counter()
        train_and_evaluate(candidate, data, seed=r, callbacks=[marks])
        rows.append((marks.marks[0] - start, marks.marks[1] - marks.marks[0], marks.marks[2] - marks.marks[1]))
    set_up, first, second = (statistics.median(column) for column in zip(*rows, strict=True))
    return {
        "set_up_seconds": round(set_up, 3),
        "first_step_seconds": round(first, 3),
        "second_step_seconds": round(second, 4),
    }


def steady(seconds: list[float]) -> float:
    """An epoch's time after warm-up: the median of every epoch but the first."""
    return statistics.median(seconds[1:])


def plain_keras_trial(candidate: Candidate, data: Dataset, seed: int) -> tuple[float, list[float]]:
    """The usual Keras recipe, for comparison: compile with metrics, fit on arrays, evaluate."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = build_model(candidate.model)
    model.compile(make_optimizer(candidate.training), "sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    steps = candidate.training.steps_per_epoch
    images = steps * candidate.training.batch_size if steps else len(data.x_train)  # the same epoch as the tool's
    model.fit(
        data.x_train[:images],
        data.y_train[:images],
        batch_size=candidate.training.batch_size,
        epochs=candidate.training.epochs,
        callbacks=[timer],
        verbose=0,
    )
    model.evaluate(data.x_val, data.y_val, verbose=0)
    return time.perf_counter() - start, timer.seconds


def tool_trial(candidate: Candidate, data: Dataset, seed: int) -> tuple[float, list[float]]:
    timer = EpochTimer()
    start = time.perf_counter()
    train_and_evaluate(candidate, data, seed=seed, callbacks=[timer])
    return time.perf_counter() - start, timer.seconds


def overhead_and_throughput(name: str, candidate: Candidate, data: Dataset, repeats: int) -> dict:
    """Trial wall time over steady-state training time, and images/s, for both loops side by side."""
    n, batch = len(data.x_train), candidate.training.batch_size
    images_per_epoch = (candidate.training.steps_per_epoch or -(-n // batch)) * batch
    result: dict = {"case": name, "epochs": candidate.training.epochs, "images_per_epoch": images_per_epoch}
    for label, trial in (("plain_keras", plain_keras_trial), ("jumpsearch", tool_trial)):
        walls, steadies = [], []
        for r in range(repeats):
            wall, epochs = trial(candidate, data, seed=r)
            walls.append(wall)
            steadies.append(steady(epochs))
        wall, epoch = statistics.median(walls), statistics.median(steadies)
        result[label] = {
            "trial_seconds": round(wall, 3),
            "steady_epoch_seconds": round(epoch, 4),
            "overhead": round(wall / (epoch * candidate.training.epochs), 3),
            "images_per_second": round(images_per_epoch / epoch, 1),
        }
    result["throughput_ratio"] = round(
        result["jumpsearch"]["images_per_second"] / result["plain_keras"]["images_per_second"], 3
    )
    return result


def counting(repeats: int) -> dict:
    config = canonical_config("jumpnet_seed_cifar")
    uncached = count.__wrapped__
    loops = 200
    start = time.perf_counter()
    for _ in range(loops):
        uncached(config)
    analytic = (time.perf_counter() - start) / loops
    builds = []
    for _ in range(repeats):
        keras.backend.clear_session(free_memory=False)
        start = time.perf_counter()
        build_model(config).count_params()
        builds.append(time.perf_counter() - start)
    built = statistics.median(builds)
    return {
        "config": "jumpnet_seed_cifar",
        "count_seconds": analytic,
        "build_and_count_seconds": round(built, 4),
        "speedup": round(built / analytic),
    }


def digits_search(trials: int) -> dict:
    space = load_space(ROOT / "search_spaces" / "digits.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = run_search(space, trials=trials, storage=f"sqlite:///{tmp}/bench.db")
        seconds = time.perf_counter() - start
        done = searched(study)
    return {"trials": done, "seconds": round(seconds, 1), "trials_per_minute": round(60 * done / seconds, 2)}


def recycled_search(trials: int, recycle: int, seed: int = 0) -> dict:
    """The digits search through ``run_workers``, one worker replaced every ``recycle`` trained trials:
    wall time (start-up included), the median trial, and the seconds between one worker's last trial and
    the next worker's first (what a replacement costs the search)."""
    from jumpsearch.workers import run_workers

    space = load_space(ROOT / "search_spaces" / "digits.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = run_workers(space, recycle=recycle, trials=trials, seed=seed, storage=f"sqlite:///{tmp}/recycled.db")
        seconds = time.perf_counter() - start
        done = [t for t in study.get_trials() if t.datetime_complete is not None]
    done.sort(key=lambda t: t.datetime_start)
    pairs = zip(done, done[1:], strict=False)
    between = [(b.datetime_start - a.datetime_complete).total_seconds()
               for a, b in pairs if a.user_attrs["worker"] != b.user_attrs["worker"]]  # fmt: skip
    return {"trials": trials, "recycle": recycle, "seed": seed, "seconds": round(seconds, 1),
            "median_trial": round(statistics.median((t.datetime_complete - t.datetime_start).total_seconds()
                                                    for t in done), 2),
            "between_workers": [round(b, 2) for b in between]}  # fmt: skip


def stopping_space(space_file: str) -> Any:
    """A shipped space under ``asha`` from epoch 1 and random sampling: most trials stop at epoch 1."""
    from jumpsearch.space import read_yaml, space_from_dict

    raw = read_yaml(ROOT / "search_spaces" / space_file)
    raw.update(schedule={"name": "asha", "min_epochs": 1}, sampler={"name": "random"})
    return space_from_dict(raw, f"{space_file} with asha from epoch 1, random sampling")


def stopped_trials(trials: int, space_file: str = "digits.yaml", data_dir: str | None = None) -> dict:
    """Where the seconds of a trial stopped at its first rung go, on the search's own path: the digits
    space (or ``space_file`` of ``search_spaces``, its data in ``data_dir``) under ``asha`` from epoch 1,
    one process, SQLite, random sampling (a sampler's proposal is
    ``scale.py``'s to measure). Per stopped trial: build, compile, first step (the trace), the rest of the
    epoch's steps, the rung's evaluation, and the rest of its wall time (storage writes, the duplicate
    check, the rung decision); overhead is wall time over the time inside training steps (the epoch's
    steps at the steady per-step rate); and the seconds between the last trial's end and its start. Also
    the storage writes per trial: transactions that wrote (Optuna's reads commit too; they are not
    counted)."""
    import sqlalchemy

    from jumpsearch.records import is_stopped

    space = stopping_space(space_file)
    writing: set[int] = set()  # connections inside a transaction that wrote
    writes = [0]

    def statement(connection: Any, cursor: Any, text: str, *args: Any) -> None:
        if text.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writing.add(id(connection))

    def committed(connection: Any) -> None:
        if id(connection) in writing:
            writing.discard(id(connection))
            writes[0] += 1

    listeners = (("before_cursor_execute", statement), ("commit", committed))
    for name, listener in listeners:
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, name, listener)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            study = run_search(space, trials=trials, storage=f"sqlite:///{tmp}/stopped.db", data_dir=data_dir)
            search_seconds = time.perf_counter() - start
    finally:
        for name, listener in listeners:
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, name, listener)
    rows = []
    for before, t in zip(study.trials, study.trials[1:], strict=False):
        if not is_stopped(t) or t.user_attrs.get("stopped_at") != 1:
            continue
        costs = t.user_attrs["costs"]
        steps = t.user_attrs["images"] // t.user_attrs["config"]["training"]["batch_size"]
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        in_steps = costs["train"][0] * steps / (steps - 1)  # the first step's share at the steady rate
        parts = {k: costs[k] for k in ("build", "compile", "first_step")}
        parts.update(other_steps=costs["train"][0], rung_evaluation=costs["evaluate"][0])
        parts["search_loop"] = wall - sum(parts.values())  # sampler, storage writes, rung decision
        # Between the last trial's end and this one's start: Optuna's collection after each trial, the
        # sampler's proposal and the trial's creation; a cost of the search, outside the trial's wall time.
        between = (t.datetime_start - before.datetime_complete).total_seconds()
        rows.append({**parts, "wall": wall, "overhead": wall / in_steps, "between_trials": between})
    medians = {k: round(statistics.median(r[k] for r in rows), 4) for k in rows[0]} if rows else {}
    return {"trials": len(study.trials), "stopped_at_1": len(rows), "median_seconds": medians,
            "writes_per_trial": round(writes[0] / len(study.trials), 1),
            "search_seconds": round(search_seconds, 1)}  # fmt: skip


# Operations a train step cannot do without, per operation of these kinds in its graph: the forward
# kernel and its gradients with respect to the input and the weights (a convolution), or to the input
# (batch normalization's kernel, ReLU). A dense layer's gradients are MatMuls too: each counts once.
# Additions, concatenations, pooling and the loss are left out, so the count is a lower bound.
NEEDED_PER_KERNEL = {"Conv2D": 3, "FusedBatchNorm": 2, "Relu": 2, "MatMul": 1}


def new_graphs(networks: int) -> dict:
    """What TensorFlow itself costs for each new network's train step, against the overhead goal's budget:
    a stopped one-epoch trial within 1.3 times its time in training steps leaves 0.3 times the epoch (at
    the steady per-step rate) for everything else. The digits points of a random search, which also warms
    the process as a search does, each built and compiled as a trial is; per network: the operations of
    its train step's graph, the trace (building that graph; TensorFlow's op creation is most of it), the
    first call's seconds beyond a later step (TensorFlow's graph optimizer and kernel set-up), a later
    step, the build (the network, and the optimizer's variables), and a floor on any train step's trace
    for that network: the operations it cannot do without (``NEEDED_PER_KERNEL``, and a read and an
    update per trained variable) at the seconds per operation measured. Seconds; ``over_budget`` counts
    the networks where that part alone exceeds the budget."""
    from collections import Counter

    from jumpsearch.study import long_lived_frozen
    from jumpsearch.training import _tensorflow_examples, steps_per_epoch

    space = stopping_space("digits.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        study = run_search(space, trials=networks, storage=f"sqlite:///{tmp}/graphs.db")
    data = load_dataset(space.data)
    configs = {json.dumps(t.user_attrs["config"], sort_keys=True) for t in study.trials if "config" in t.user_attrs}
    rows = []
    with long_lived_frozen():  # as in a search: no full collection walks the backend's modules
        for config in sorted(configs):
            candidate = Candidate.from_json(config)
            keras.backend.clear_session(free_memory=False)
            gc.collect()  # as Optuna does after each trial
            start = time.perf_counter()
            model = build_model(candidate.model, fused=True)
            model.compile(make_optimizer(candidate.training, fused=True), "sparse_categorical_crossentropy")
            model.optimizer.build(model.trainable_variables)
            build = time.perf_counter() - start
            batches = iter(_tensorflow_examples(data, candidate.training.batch_size, seed=0))
            step = tf.function(model.train_step, autograph=False)
            batch = next(batches)
            start = time.perf_counter()
            traced = step.get_concrete_function(batch)
            trace = time.perf_counter() - start
            start = time.perf_counter()
            traced(batch)
            first = time.perf_counter() - start
            later = []
            steps = steps_per_epoch(candidate.training, data)
            for _ in range(steps - 1):
                batch = next(batches)
                start = time.perf_counter()
                traced(batch)
                later.append(time.perf_counter() - start)
            per_step = statistics.median(later)
            kinds = Counter(op.type for op in traced.graph.get_operations())
            ops = sum(kinds.values())
            needed = sum(n * kinds[k] for k, n in NEEDED_PER_KERNEL.items()) + 2 * len(model.trainable_variables)
            rows.append({
                "ops": ops, "needed_ops": needed, "build": build, "trace": trace, "first_call": first - per_step,
                "step": per_step, "needed_trace": needed * trace / ops, "budget": 0.3 * steps * per_step,
            })  # fmt: skip
            del model, step, traced, batches  # as a trial's end: nothing of this network outlives it
    medians = {k: round(statistics.median(r[k] for r in rows), 4) for k in rows[0]}
    over = {k: sum(r[k] > r["budget"] for r in rows) for k in ("build", "trace", "first_call", "needed_trace")}
    return {"networks": len(rows), "median": medians, "over_budget": over}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, 5 search trials")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"), help="JSON results file")
    args = parser.parse_args()
    repeats, trials = (1, 5) if args.quick else (3, 20)
    device = setup_device()
    report: dict = {"machine": machine(), "device": device, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(report["machine"]), flush=True)

    digits = load_dataset(DataConfig())
    digits_point = Candidate(
        JumpNetConfig(
            input_shape=digits.input_shape,
            stem_filters=(16, 16),
            blocks_per_group=(2, 2),
            base_filters=8,
            growth_rate=2.0,
            jump_width=0.25,
        ),
        TrainingConfig(learning_rate=0.003, batch_size=64, epochs=5),
    )
    rng = np.random.default_rng(0)
    cifar_like = Dataset(
        "random-cifar",
        rng.random((1024, 32, 32, 3), dtype=np.float32),
        rng.integers(0, 10, 1024).astype(np.int32),
        rng.random((256, 32, 32, 3), dtype=np.float32),
        rng.integers(0, 10, 256).astype(np.int32),
        None,
        None,
        10,
    )
    seed_point = Candidate(
        canonical_config("jumpnet_seed_cifar"), TrainingConfig(batch_size=128, epochs=4, steps_per_epoch=3)
    )

    report["overhead"] = []
    for name, candidate, data, times in (
        ("digits point, 5 epochs", digits_point, digits, repeats),
        ("seed CIFAR example, random 32x32x3 data, 4 epochs of 3 steps", seed_point, cifar_like, 1),
    ):
        result = overhead_and_throughput(name, candidate, data, times)
        print(json.dumps(result), flush=True)
        report["overhead"].append(result)
    report["fixed_costs"] = {"case": "digits point, 5 epochs", **fixed_costs(digits_point, digits, repeats)}
    print(json.dumps(report["fixed_costs"]), flush=True)
    report["counting"] = counting(repeats)
    print(json.dumps(report["counting"]), flush=True)
    report["new_graphs"] = new_graphs(trials)
    print(json.dumps(report["new_graphs"]), flush=True)
    report["stopped_trials"] = stopped_trials(20)
    print(json.dumps(report["stopped_trials"]), flush=True)
    report["digits_search"] = digits_search(trials)
    print(json.dumps(report["digits_search"]), flush=True)
    report["recycled_search"] = recycled_search(trials, recycle=max(2, trials // 4))  # 20 trials: every 5
    print(json.dumps(report["recycled_search"]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
