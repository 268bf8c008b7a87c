"""The tabulated benchmark: search strategies replayed against a table of fully trained networks.

    # 1. the table: train every configuration of a finite space once, then 60 of them with other seeds
    #    (trial n trains with seed + n: a seed far from the first study's keeps every run's seed apart).
    #    The studies live in a journal file of the repository, so the build resumes across sessions.
    data=/usr/share/datasets/fashion-mnist; table=benchmarks/fashion_mnist_grid.log
    .venv/bin/jumpsearch run --space search_spaces/fashion_mnist_grid.yaml --data-dir $data --storage $table
    .venv/bin/jumpsearch run --space search_spaces/fashion_mnist_grid.yaml --data-dir $data --storage $table \\
        --study-name fashion_mnist_grid-seed2 --seed 100003 --trials 60
    .venv/bin/python benchmarks/tabular.py table --storage $table --data-dir $data \\
        --study-names fashion_mnist_grid,fashion_mnist_grid-seed2 --rescale-before 2026-12-01T13:00:00
    # (the first 145 networks were timed in an earlier session, on a machine 1.54 times slower: their
    #  seconds are scaled by the networks trained in both; the factor is each row's seconds_scale)
    # 2. replay strategies against it, 30 seeds each, 1 and 4 workers (one process per number of workers)
    .venv/bin/python benchmarks/tabular.py simulate --workers 1 --seeds 30 --out benchmarks/tabular_w1.json
    .venv/bin/python benchmarks/tabular.py simulate --workers 4 --seeds 30 --out benchmarks/tabular_w4.json
    .venv/bin/python benchmarks/tabular.py report --results benchmarks/tabular_w1.json,benchmarks/tabular_w4.json
    # 3. real searches of the same space, 2 workers, against the simulator with the same workers
    .venv/bin/python benchmarks/tabular.py real --strategies tpe+asha --seeds 0,1 --data-dir $data --seconds 400
    .venv/bin/python benchmarks/tabular.py real --strategies random --seeds 0 --data-dir $data --seconds 400
    .venv/bin/python benchmarks/tabular.py validate          # prints the real workers' slowdown F
    .venv/bin/python benchmarks/tabular.py simulate --workers 2 --strategies tpe+asha,random --horizon 400 \\
        --slowdown F --out benchmarks/tabular_w2.json
    .venv/bin/python benchmarks/tabular.py validate --results benchmarks/tabular_w2.json

A real search's wall time is spent in training, which the table holds (each network's whole learning
curve, its fixed seconds — build, compile, first step — and its seconds per epoch of training and
validation, measured when the table was built), and in the search loop's own work (sampling, the
storage, rung decisions), which the simulator measures as it runs. The simulator drives jumpsearch's own
loop — ``run_search`` with its samplers, schedule rule and duplicate handling — with ``train`` replaced by
a look-up in the table, in ``workers`` threads on one in-memory study. Time is simulated: each thread has
a clock, and only the thread whose clock is earliest runs; a trial's time is its network's recorded
fixed seconds, plus its recorded seconds per epoch for the epochs it trained, plus the real seconds its
thread spent in the loop's own code. So the loop sees, at a rung, exactly the records a real search with
``workers`` workers would have written by then.

Hypervolume: as ``search_efficiency.py`` defines it (accuracy against log10 params, scaled between the
space's smallest model and its ``max_params``; reference point: accuracy 0 at ``max_params``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from search_efficiency import hypervolume  # noqa: E402

COLUMNS = ["key", "run", "params", "flops", "val_images", "fixed_seconds", "epoch_seconds", "seconds_scale", "curve",
           "config"]  # fmt: skip


# --- the table ------------------------------------------------------------------------------------------


def table_from_studies(studies: Sequence[Any], val_images: int, rescale_before: datetime | None = None) -> pd.DataFrame:
    """One row per (network, training run) of the studies' trials trained to the end: the learning curve
    and costs each recorded. A configuration trained in several studies (another seed) gets run 0, 1, …
    ``val_images``: the size of the validation part the accuracies were measured on.

    ``rescale_before``: runs that started earlier were timed on a slower (or busier) machine: their
    seconds are multiplied by the median ratio, over networks with a run on each side of that time, of the
    later run's seconds to the earlier one's; the factor applied is the row's ``seconds_scale`` (the
    seconds measured are the row's divided by it)."""
    from optuna.trial import TrialState

    from jumpsearch.records import is_duplicate

    rows: list[dict[str, Any]] = []
    runs: dict[str, int] = {}
    trials = [t for study in studies for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if not is_duplicate(t) and "costs" in t.user_attrs and "curve" in t.user_attrs]  # fmt: skip
    scale = _rescaling(trials, rescale_before) if rescale_before is not None else 1.0
    for trial in trials:
        attrs = trial.user_attrs
        factor = scale if rescale_before is not None and trial.datetime_start < rescale_before else 1.0
        costs, curve = attrs["costs"], [attrs["curve"][str(e)] for e in range(1, attrs["epochs"] + 1)]
        seconds = [round((t + v) * factor, 4) for t, v in zip(costs["train"], costs["evaluate"], strict=True)]
        run = runs[attrs["key"]] = runs.get(attrs["key"], -1) + 1
        rows.append({
            "key": attrs["key"],
            "run": run,
            "params": attrs["params"],
            "flops": attrs["flops"],
            "val_images": val_images,
            "fixed_seconds": round(costs["fixed"] * factor, 4),
            "epoch_seconds": json.dumps(seconds),
            "seconds_scale": round(factor, 4),
            "curve": json.dumps(curve),
            "config": json.dumps(attrs["config"], sort_keys=True),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _rescaling(trials: Sequence[Any], before: datetime) -> float:
    """The median, over networks trained both before and after ``before``, of a later run's seconds over
    an earlier run's."""

    def seconds(trial: Any) -> float:
        costs = trial.user_attrs["costs"]
        return costs["fixed"] + sum(costs["train"]) + sum(costs["evaluate"])

    earlier: dict[str, float] = {}
    for t in trials:
        if t.datetime_start < before:
            earlier[t.user_attrs["key"]] = seconds(t)
    ratios = [seconds(t) / earlier[t.user_attrs["key"]] for t in trials
              if t.datetime_start >= before and t.user_attrs["key"] in earlier]  # fmt: skip
    if not ratios:
        raise ValueError(f"no network has a run on each side of {before.isoformat()}: nothing to rescale by")
    factor = float(np.median(ratios))
    q1, q3 = np.percentile(ratios, [25, 75])
    print(f"runs before {before.isoformat()}: seconds times {factor:.3f} (the median of {len(ratios)} networks' "
          f"later/earlier ratios; interquartile range {q1:.3f}–{q3:.3f})")  # fmt: skip
    return factor


@dataclass(frozen=True)
class Run:
    """One recorded training run of a network."""

    curve: tuple[float, ...]
    fixed_seconds: float
    epoch_seconds: tuple[float, ...]


class Table:
    """The recorded runs by network key. ``run(key, seed)`` picks one of a network's runs from the seed,
    so a table with two seeds for a network shows its own noise to the strategies."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.runs: dict[str, list[Run]] = {}
        for row in frame.sort_values(["key", "run"]).itertuples():
            self.runs.setdefault(row.key, []).append(
                Run(tuple(json.loads(row.curve)), float(row.fixed_seconds), tuple(json.loads(row.epoch_seconds)))
            )
        self.val_images = int(frame["val_images"].max()) if len(frame) else 0

    @staticmethod
    def read(path: str | Path) -> Table:
        return Table(pd.read_csv(path))

    def run(self, key: str, seed: int) -> Run:
        try:
            runs = self.runs[key]
        except KeyError:
            raise KeyError(f"network {key} is not in the table: the space replayed is not the one tabulated") from None
        digest = int(hashlib.sha256(f"{key}:{seed}".encode()).hexdigest()[:8], 16)
        return runs[digest % len(runs)]


# --- simulated time -----------------------------------------------------------------------------------


class HorizonReached(BaseException):
    """Raised in a worker whose clock passed the simulation's horizon, by the trial it would start: not an
    Exception (Optuna's ``catch`` would fail the trial and go on) nor a signal. The worker's search loop
    ends there, as a real worker's at its deadline; the trial it left running is then failed."""


class SimClock:
    """Per-worker clocks; only the worker whose clock is earliest (ties: lowest id) runs, so the threads
    replay, one at a time and deterministically, what ``workers`` processes would do in parallel.

    ``advance(seconds)`` charges a worker the seconds of training it simulates, plus the real seconds it
    spent since it last ran (the search loop's own work) unless ``overhead`` fixes that per call."""

    def __init__(self, workers: int, horizon: float = math.inf, overhead: float | None = None) -> None:
        self.horizon, self.overhead = horizon, overhead
        self.now: dict[int, float] = dict.fromkeys(range(workers), 0.0)  # all at 0 s before any runs
        self.resumed: dict[int, float] = {}
        self.lock = threading.Condition()

    def join(self, worker: int) -> None:
        with self.lock:
            self._wait(worker)

    def time(self, worker: int) -> float:
        """The worker's clock, its own work since it last ran included."""
        spent = time.perf_counter() - self.resumed[worker] if self.overhead is None else 0.0
        return self.now[worker] + spent

    def advance(self, worker: int, seconds: float, overhead: bool = True) -> None:
        with self.lock:
            charged = (self.overhead or 0.0) if overhead else 0.0
            self.now[worker] = self.time(worker) + seconds + charged
            self._wait(worker)

    def leave(self, worker: int) -> None:
        with self.lock:
            del self.now[worker]
            self.lock.notify_all()

    def _wait(self, worker: int) -> None:
        self.lock.notify_all()
        while min(self.now, key=lambda w: (self.now[w], w)) != worker:
            self.lock.wait()
        self.resumed[worker] = time.perf_counter()


@dataclass
class Event:
    """A training run that ended: when (simulated seconds), what it cost, and where it ended."""

    seconds: float
    epochs: int
    key: str
    params: int
    accuracy: float
    stopped: bool


@dataclass
class Replay:
    """``train`` for ``run_search``: a look-up in the table that advances the worker's simulated clock."""

    table: Table
    clock: SimClock
    slowdown: float = 1.0  # the table's seconds times this: workers that share a machine's cores
    events: list[Event] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)

    def __call__(
        self,
        candidate: Any,
        data: Any,
        seed: int = 0,
        on_epoch: Callable[..., None] | None = None,
        rungs: Sequence[int] = (),
        on_rung: Callable[[int, float], bool] | None = None,
        **_: Any,
    ) -> Any:
        from jumpsearch.counting import candidate_key, count
        from jumpsearch.training import TrainResult

        worker = self.local.worker
        key = candidate_key(candidate)
        if self.clock.time(worker) >= self.clock.horizon:
            self.local.abandoned = key
            raise HorizonReached()
        run = self.table.run(key, seed)
        epochs = candidate.training.epochs
        if len(run.curve) < epochs:
            raise ValueError(f"network {key}: the table holds {len(run.curve)} epochs, the space asks {epochs}")
        self.clock.advance(worker, run.fixed_seconds * self.slowdown)
        done, stopped = 0, False
        for epoch in range(1, epochs + 1):
            self.clock.advance(worker, run.epoch_seconds[epoch - 1] * self.slowdown, overhead=False)
            done = epoch
            accuracy = run.curve[epoch - 1]
            if on_rung is not None and epoch in rungs and not on_rung(epoch, accuracy):
                stopped = epoch < epochs
            if on_epoch is not None:
                on_epoch(epoch, accuracy)
            if stopped:
                break
        accuracy = run.curve[done - 1]
        seconds = (run.fixed_seconds + sum(run.epoch_seconds[:done])) * self.slowdown
        self.events.append(Event(self.clock.time(worker), done, key, count(candidate.model).trainable, accuracy,
                                 stopped))  # fmt: skip
        costs = {"build": 0.0, "compile": 0.0, "first_step": 0.0, "fixed": run.fixed_seconds * self.slowdown,
                 "train": [s * self.slowdown for s in run.epoch_seconds[:done]], "evaluate": [0.0] * done}  # fmt: skip
        # The table keeps a run's fixed seconds whole and each epoch's training and validation together:
        # so are they recorded here (what a sampler reads of a trial's cost is their sum).
        return TrainResult(accuracy, 0.0, done, seconds, "table", "table", stopped, run.curve[:done], costs)


def fake_data(table: Table, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """A data set of the right shape and validation size, holding no images: the table trains nothing."""
    from jumpsearch.data import Dataset

    x = np.zeros((1, *input_shape), dtype=np.float32)
    y_val = np.zeros(max(table.val_images, 1), dtype=np.int64)
    return Dataset("table", x, np.zeros(1, np.int64), x, y_val, None, None, num_classes)


def simulate(
    space: Any,
    table: Table,
    *,
    workers: int,
    seed: int,
    horizon: float,
    input_shape: tuple[int, int, int],
    num_classes: int,
    overhead: float | None = None,
    slowdown: float = 1.0,
) -> list[Event]:
    """Replay one search of ``space`` (its sampler and schedule) against ``table`` with ``workers``
    asynchronous workers until ``horizon`` simulated seconds (or the space is exhausted); the training
    runs that ended, in the order they ended. ``slowdown`` multiplies the table's seconds (workers that
    share one machine's cores train slower than the one worker that built the table)."""
    import optuna
    from optuna.trial import TrialState

    from jumpsearch.errors import JumpsearchError
    from jumpsearch.study import run_search

    storage = optuna.storages.InMemoryStorage()

    def study_id() -> int:
        return storage.get_study_id_from_name(space.name)

    clock = SimClock(workers, horizon, overhead)
    replay = Replay(table, clock, slowdown)
    data = fake_data(table, input_shape, num_classes)
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        replay.local.worker = number
        clock.join(number)
        try:
            run_search(space, storage=storage, data=data, train=replay, seed=seed, trials=10**9)
        except HorizonReached:  # its last trial never trained: failed, so that no worker takes it for a twin
            for trial in storage.get_all_trials(study_id(), deepcopy=False, states=(TrialState.RUNNING,)):
                if trial.user_attrs.get("key") == replay.local.abandoned:
                    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except JumpsearchError as e:  # the loop's own stop (a space exhausted): the end of this worker's search
            logging.getLogger(__name__).debug("worker %d: %s", number, e)
        except BaseException as e:  # noqa: BLE001 (reported by the caller)
            errors.append(e)
        finally:
            clock.leave(number)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sorted(replay.events, key=lambda e: e.seconds)


def hypervolume_at(events: Sequence[Event], scale: Callable[[float], float], seconds: float) -> float:
    """The hypervolume of the front of the runs trained to the end by ``seconds``."""
    return hypervolume([(scale(e.params), e.accuracy) for e in events if not e.stopped and e.seconds <= seconds])


def hypervolume_at_epochs(events: Sequence[Event], scale: Callable[[float], float], epochs: float) -> float:
    """The hypervolume once ``epochs`` were spent (runs counted as they end)."""
    spent, points = 0, []
    for e in events:
        spent += e.epochs
        if spent > epochs:
            break
        if not e.stopped:
            points.append((scale(e.params), e.accuracy))
    return hypervolume(points)


def params_scale(space: Any, input_shape: tuple[int, int, int], num_classes: int) -> Callable[[float], float]:
    """``search_efficiency.py``'s normalisation: log10 params between the smallest model and max_params."""
    from jumpsearch.counting import count

    smallest = count(space.smallest(lambda c: count(c.model).trainable, input_shape, num_classes).model).trainable
    low, high = math.log10(smallest), math.log10(space.constraints.max_params)
    return lambda params: (math.log10(params) - low) / (high - low)


# --- the command line ---------------------------------------------------------------------------------

ASHA = {"name": "asha", "min_epochs": 1, "reduction_factor": 3}
STRATEGIES = {  # name: (sampler options, schedule)
    "random": ({"name": "random"}, "none"),
    "tpe": ({"name": "tpe", "n_startup_trials": 8}, "none"),
    "nsga2": ({"name": "nsga2"}, "none"),
    "gp": ({"name": "gp"}, "none"),
    "ehvi": ({"name": "ehvi"}, "none"),
    "random+asha": ({"name": "random"}, ASHA),
    "tpe+asha": ({"name": "tpe", "n_startup_trials": 8}, ASHA),
    "ehvi+asha": ({"name": "ehvi"}, ASHA),
}


def space_for(path: Path, strategy: str, seed: int) -> Any:
    from jumpsearch.space import read_yaml, space_from_dict

    raw = read_yaml(path)
    sampler, schedule = STRATEGIES[strategy]
    name = f"{raw['name']}-{strategy.replace('+', '_')}-{seed}"
    raw.update({"name": name, "sampler": sampler, "schedule": schedule, "seed": seed})
    return space_from_dict(raw, f"{path} ({strategy})")


def _table(args: argparse.Namespace) -> None:
    import optuna

    from jumpsearch.data import load_dataset
    from jumpsearch.space import space_from_dict
    from jumpsearch.storage import open_storage

    storage = open_storage(args.storage)
    names = args.study_names.split(",") if args.study_names else optuna.get_all_study_names(storage)
    studies = [optuna.load_study(study_name=n, storage=storage) for n in names]
    space = space_from_dict(studies[0].user_attrs["space"], names[0])
    data = load_dataset(space.data, args.data_dir)
    before = datetime.fromisoformat(args.rescale_before) if args.rescale_before else None
    frame = table_from_studies(studies, len(data.y_val), before)
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {frame['key'].nunique()} networks, {len(frame)} runs "
          f"({(frame['run'] > 0).sum()} second runs), from studies {', '.join(names)}")  # fmt: skip


def _simulate(args: argparse.Namespace) -> None:
    import optuna
    import peers  # it imports this module: here, not at the top

    logging.getLogger("jumpsearch").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = Table.read(args.table)
    model = json.loads(table.frame["config"].iloc[0])["model"]  # the networks' input, as the table recorded it
    shape, classes = tuple(model["input_shape"]), int(model["num_classes"])
    first = space_for(Path(args.space), "random", 0)
    epochs = first.training["epochs"].values[0]  # a table holds one budget: a fixed number of epochs
    scale = params_scale(first, shape, classes)
    full = [r.fixed_seconds + sum(r.epoch_seconds[:epochs]) for runs in table.runs.values() for r in runs[:1]]
    results = []
    for workers in map(int, args.workers.split(",")):
        horizon = args.horizon or args.budget_trials * statistics.median(full) * args.slowdown / workers
        for strategy in args.strategies.split(","):
            for seed in range(args.seeds):
                start = time.perf_counter()
                if strategy in peers.STRATEGIES:  # Syne Tune's methods, in Syne Tune's simulator (peers.py)
                    events = peers.STRATEGIES[strategy](first, table, workers=workers, seed=seed, horizon=horizon,
                                                        input_shape=shape, num_classes=classes)  # fmt: skip
                else:
                    events = simulate(space_for(Path(args.space), strategy, seed), table, workers=workers, seed=seed,
                                      horizon=horizon, input_shape=shape, num_classes=classes,
                                      slowdown=args.slowdown)  # fmt: skip
                row = {"workers": workers, "strategy": strategy, "seed": seed, "horizon": round(horizon, 1),
                       "runs": len(events), "real_seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
                for part in (0.25, 0.5, 1.0):
                    row[f"hv_{int(part * 100)}"] = round(hypervolume_at(events, scale, horizon * part), 5)
                    budget = args.budget_trials * epochs * part  # the same compute counted in epochs
                    row[f"hv_epochs_{int(part * 100)}"] = round(hypervolume_at_epochs(events, scale, budget), 5)
                row["curve"] = [[round(e.seconds, 2), round(hypervolume_at(events, scale, e.seconds), 5)]
                                for e in events if e.seconds <= horizon]  # fmt: skip
                results.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    Path(args.out).write_text(json.dumps(results))
    print(f"wrote {args.out}")


def _real(args: argparse.Namespace) -> None:
    """Real searches of the table's space with ``--workers`` worker processes, each for ``--seconds``
    (no trial starts after; the running ones finish), in studies named like the simulator's."""
    from jumpsearch.workers import run_workers

    for strategy in args.strategies.split(","):
        for seed in map(int, args.seeds.split(",")):
            space = space_for(Path(args.space), strategy, seed)
            start = time.perf_counter()
            study = run_workers(space, workers=args.workers, trials=10**6, timeout=args.seconds, storage=args.storage,
                                seed=seed, data_dir=args.data_dir, recycle=0)  # fmt: skip
            print(f"{study.study_name}: {len(study.trials)} trials in {time.perf_counter() - start:.0f} s", flush=True)


def real_events(study: Any) -> list[Event]:
    """A real search's training runs as the simulator's events: seconds from the first trial's start."""
    from optuna.trial import TrialState

    from jumpsearch.records import is_duplicate, is_stopped

    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete and not is_duplicate(t)
              and (t.state == TrialState.COMPLETE or is_stopped(t))]  # fmt: skip
    if not trials:
        return []
    start = min(t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start)
    events = [Event((t.datetime_complete - start).total_seconds(), t.user_attrs["epochs"], t.user_attrs["key"],
                    t.user_attrs["params"], t.user_attrs["accuracy"], is_stopped(t)) for t in trials]  # fmt: skip
    return sorted(events, key=lambda e: e.seconds)


HV_COLUMNS = ("hv_25", "hv_50", "hv_100")


def _validate(args: argparse.Namespace) -> None:
    """The slowdown of the real workers' epochs against the table's (the ``--slowdown`` to simulate them
    with); each real search's hypervolume at 25/50/100% of its seconds, and each strategy's median over
    its searches; with ``--results``, each beside the spread (10th–90th percentile, median) of the
    simulator's seeds for the same strategy."""
    import optuna

    from jumpsearch.storage import open_storage

    table = Table.read(args.table)
    storage = open_storage(args.storage)
    first = space_for(Path(args.space), "random", 0)
    model = json.loads(table.frame["config"].iloc[0])["model"]
    scale = params_scale(first, tuple(model["input_shape"]), int(model["num_classes"]))
    ratios, reals = [], []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        strategy = study.user_attrs["space"]["name"].split("-")[-2].replace("_", "+")
        for t in study.get_trials(deepcopy=False):
            costs, key = t.user_attrs.get("costs"), t.user_attrs.get("key")
            if costs and key in table.runs:
                recorded = table.runs[key][0].epoch_seconds
                mine = [a + b for a, b in zip(costs["train"], costs["evaluate"], strict=True)]
                ratios += [m / r for m, r in zip(mine, recorded, strict=False) if r > 0]
        reals.append((name, strategy, real_events(study)))
    slowdown = float(np.median(ratios)) if ratios else math.nan
    print(f"real epochs / the table's epochs, median over {len(ratios)} epochs: {slowdown:.3f} (--slowdown)")
    simulated = pd.DataFrame(json.loads(Path(args.results).read_text())) if args.results else None
    horizon = float(simulated["horizon"].iloc[0]) if simulated is not None else args.horizon
    rows = [{"search": name, "strategy": strategy, "trained": len(events),
             **{f"hv_{part}": hypervolume_at(events, scale, horizon * part / 100) for part in (25, 50, 100)}}
            for name, strategy, events in reals]  # fmt: skip
    real = pd.DataFrame(rows)
    print(f"\nreal searches' hypervolume at 25/50/100% of {horizon:.0f} s:\n")
    print("| real search | networks trained | 25% | 50% | 100% |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['search']} | {row['trained']} | {row['hv_25']:.4f} | {row['hv_50']:.4f} | {row['hv_100']:.4f} |")
    print("\n| strategy | searches | 25%: median (min–max) | 50% | 100% |\n| --- | --- | --- | --- | --- |")
    for strategy, runs in real.groupby("strategy"):
        cells = [f"{runs[c].median():.4f} ({runs[c].min():.4f}–{runs[c].max():.4f})" for c in HV_COLUMNS]
        print(f"| {strategy} | {len(runs)} | {' | '.join(cells)} |")
    if simulated is None:
        return
    print("| real search | when | its hypervolume | simulator: median (10th–90th percentile) | inside | "
          "simulated seeds below it |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for name, strategy, events in reals:
        runs = simulated[simulated["strategy"] == strategy]
        for part in (25, 50, 100):
            mine = hypervolume_at(events, scale, horizon * part / 100)
            low, median, high = np.percentile(runs[f"hv_{part}"], [10, 50, 90])
            inside = "yes" if low <= mine <= high else "no"
            when = f"{part}% ({horizon * part / 100:.0f} s)"
            below = float(np.mean(runs[f"hv_{part}"] < mine))
            print(f"| {name} | {when} | {mine:.4f} | {median:.4f} ({low:.4f}–{high:.4f}) | {inside} | {below:.0%} |")


def _report(args: argparse.Namespace) -> None:
    """The README's tables from ``simulate``'s results: per workers and budget, each strategy's median
    hypervolume and interquartile range over seeds, the simulated time its median seed needs to reach 95%
    of the best median hypervolume any strategy found at the full budget, and a Wilcoxon signed-rank test
    over seeds (paired by seed number) of ``--default`` against each other strategy."""
    from scipy.stats import wilcoxon

    frame = pd.DataFrame([row for path in args.results.split(",") for row in json.loads(Path(path).read_text())])
    frame = frame.drop_duplicates(["workers", "strategy", "seed"], keep="last")  # a strategy run again: its last
    lines = []
    for workers, runs in frame.groupby("workers"):
        horizon = float(runs["horizon"].iloc[0])
        best = max(runs.groupby("strategy")["hv_100"].median())
        target = 0.95 * best
        reach = {s: _median_time_to(rows["curve"], target) for s, rows in runs.groupby("strategy")}
        baseline = runs[runs["strategy"] == args.baseline]["hv_100"].median()
        catch_up = {s: _median_time_to(rows["curve"], baseline) for s, rows in runs.groupby("strategy")}
        for part in (25, 50, 100):
            column = f"hv_{part}"
            lines += [f"\n**{workers} worker{'s' if workers > 1 else ''}, {part}% of the budget** "
                      f"({horizon * part / 100:,.0f} simulated s; 95% of the best median at 100%: {target:.4f})\n",
                      "| strategy | seeds | median HV | IQR | HV at equal epochs (median) | time to 95% of best "
                      f"| time to {args.baseline}'s final HV | vs {args.default}: Wilcoxon p | median difference |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            default = runs[runs["strategy"] == args.default].set_index("seed")[column]
            order = runs.groupby("strategy")[column].median().sort_values(ascending=False).index
            for strategy in order:
                values = runs[runs["strategy"] == strategy].set_index("seed")[column]
                q1, med, q3 = np.percentile(values, [25, 50, 75])
                epochs = runs[runs["strategy"] == strategy][f"hv_epochs_{part}"].median()
                test, diff = "", ""
                if strategy != args.default:
                    paired = pd.concat([default, values], axis=1, join="inner").dropna()
                    differences = paired.iloc[:, 1] - paired.iloc[:, 0]
                    if len(paired) and (differences != 0).any():
                        test = f"{wilcoxon(paired.iloc[:, 1], paired.iloc[:, 0]).pvalue:.2g}"
                    diff = f"{differences.median():+.4f}"
                shown, caught = (f"{t:,.0f} s ({t / horizon:.0%})" if math.isfinite(t) else "not reached"
                                 for t in (reach[strategy], catch_up[strategy]))  # fmt: skip
                lines.append(f"| {strategy} | {len(values)} | {med:.4f} | {q1:.4f}–{q3:.4f} | {epochs:.4f} | "
                             f"{shown} | {caught} | {test} | {diff} |")  # fmt: skip
    text = "\n".join(lines).lstrip() + "\n"
    Path(args.out).write_text(text)
    print(text)
    if args.plot:
        _plot(frame, Path(args.plot))
        print(f"wrote {args.plot}")


def _median_time_to(curves: pd.Series, target: float) -> float:
    """The median over seeds of the first simulated second a search's hypervolume reached ``target``
    (a seed that never reached it counts as infinitely late)."""
    times = []
    for curve in curves:
        reached = [seconds for seconds, hv in curve if hv >= target]
        times.append(reached[0] if reached else math.inf)
    return float(np.median(times))


def _plot(frame: pd.DataFrame, path: Path) -> None:
    """Median hypervolume over seeds against simulated seconds, one panel per number of workers."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = sorted(frame["workers"].unique())
    figure = make_subplots(rows=1, cols=len(groups), subplot_titles=[f"{w} worker(s)" for w in groups])
    for column, workers in enumerate(groups, start=1):
        runs = frame[frame["workers"] == workers]
        grid = np.linspace(0, float(runs["horizon"].iloc[0]), 101)
        for strategy, rows in runs.groupby("strategy"):
            at = [[max([hv for s, hv in curve if s <= t], default=0.0) for t in grid] for curve in rows["curve"]]
            figure.add_trace(go.Scatter(x=grid, y=np.median(at, axis=0), name=strategy, legendgroup=strategy,
                                        showlegend=column == 1), row=1, col=column)  # fmt: skip
        figure.update_xaxes(title_text="simulated seconds", row=1, col=column)
    figure.update_yaxes(title_text="median hypervolume", row=1, col=1)
    figure.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="write the table of a finished exhaustive search")
    table.add_argument("--storage", required=True)
    table.add_argument("--study-names", help="comma-separated (default: every study of the storage)")
    table.add_argument("--data-dir", help="where the studies' data set lies (to count its validation images)")
    table.add_argument("--out", default=str(ROOT / "benchmarks" / "fashion_mnist_grid.csv"))
    table.add_argument(
        "--rescale-before",
        metavar="TIME",
        help="scale the seconds of runs started before this "
        "time (ISO, local time as Optuna stores it) to the later runs' (see table_from_studies)",
    )
    table.set_defaults(func=_table)
    sim = commands.add_parser("simulate", help="replay strategies against a table")
    sim.add_argument("--table", default=str(ROOT / "benchmarks" / "fashion_mnist_grid.csv"))
    sim.add_argument("--space", default=str(ROOT / "search_spaces" / "fashion_mnist_grid.yaml"))
    sim.add_argument("--strategies", default=",".join([*STRATEGIES, "syne_tune_moasha", "syne_tune_moasha_ranked",
                                                       "syne_tune_morea"]))  # fmt: skip
    sim.add_argument("--seeds", type=int, default=30)
    sim.add_argument("--workers", default="1,4")
    sim.add_argument("--budget-trials", type=float, default=40,
                     help="the budget: this many median full trials' seconds, shared by the workers (and, for "
                     "the figures against epochs, this many full trials' epochs)")  # fmt: skip
    sim.add_argument("--horizon", type=float, help="simulated seconds (default: from --budget-trials)")
    sim.add_argument("--slowdown", type=float, default=1.0, help="the table's seconds times this")
    sim.add_argument("--out", default=str(ROOT / "benchmarks" / "tabular.json"))
    sim.set_defaults(func=_simulate)
    real = commands.add_parser("real", help="real searches of the table's space (to hold the simulator against)")
    real.add_argument("--space", default=str(ROOT / "search_spaces" / "fashion_mnist_grid.yaml"))
    real.add_argument("--strategies", default="tpe+asha,random")
    real.add_argument("--seeds", default="0,1,2")
    real.add_argument("--workers", type=int, default=2)
    real.add_argument("--seconds", type=float, default=600, help="wall seconds each search starts trials for")
    real.add_argument("--storage", default=str(ROOT / "benchmarks" / "real_searches.log"))
    real.add_argument("--data-dir", required=True)
    real.set_defaults(func=_real)
    val = commands.add_parser("validate", help="real searches' hypervolume against the simulator's spread")
    val.add_argument("--storage", default=str(ROOT / "benchmarks" / "real_searches.log"))
    val.add_argument("--table", default=str(ROOT / "benchmarks" / "fashion_mnist_grid.csv"))
    val.add_argument("--space", default=str(ROOT / "search_spaces" / "fashion_mnist_grid.yaml"))
    val.add_argument("--results", help="simulate's results at the real searches' workers, horizon and slowdown")
    val.add_argument("--horizon", type=float, default=400, help="the real searches' seconds (without --results)")
    val.set_defaults(func=_validate)
    rep = commands.add_parser("report", help="the tables (markdown) and a plot of simulate's results")
    rep.add_argument("--results", default=str(ROOT / "benchmarks" / "tabular.json"), help="comma-separated")
    rep.add_argument("--default", default="tpe", help="the strategy the others are tested against")
    rep.add_argument("--baseline", default="random", help="the strategy whose median final HV the others race to")
    rep.add_argument("--out", default=str(ROOT / "benchmarks" / "tabular.md"))
    rep.add_argument("--plot", default=str(ROOT / "benchmarks" / "tabular.html"))
    rep.set_defaults(func=_report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
