"""The search loop's bookkeeping as a study grows: 100, 1,000 and 10,000 trials, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/scale.py                 # both storages; about 10 minutes on 2 CPU cores
    .venv/bin/python benchmarks/scale.py --sizes 100,1000 --storages sqlite

Each study holds synthetic finished trials of ``search_spaces/fashion_mnist_grid.yaml``: real points of
the space, with the configuration, counts and key a trial records, and made-up accuracies and curves (no
training). On each, timed (median of 5, after a first read that fills the process's cache as a running
supervisor or worker has long done):

- **refresh**: the supervisor's progress bar after another process added one trained trial (trials
  trained, epochs spent, the front); it runs twice a second, so its cost over 0.5 s is the share of a
  core the supervisor uses;
- **duplicate check** and **rung decision**: what a worker does before training a point (the write of its
  description, whose transaction also selects the trials that recorded the same configuration) and at each rung
  (the rung decision of a worker that has decided at that rung before: its first reads every trial);
- **proposal**: a trial's ``ask`` and its sampling with the ``ehvi`` sampler (which fits its model on at
  most 300 trials: the front's, then the latest) and with multi-objective TPE (Optuna's, on every trial);
- **results**: ``jumpsearch results`` in a fresh process's way: open the storage, load the study, print
  the summary line and the front table (whatever it reads of the trials included);
- **front**: ``records.front`` (the front from the trials' values, its members checked against the
  stored space), in a process that has read the study before;
- **report**: ``jumpsearch report`` in a fresh process's way: open the storage, load the study, write the
  HTML page (once: it takes seconds at 10,000 trials).

Writes ``benchmarks/scale.json`` and prints a table with the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import optuna  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

URLS = {"sqlite": "sqlite:///{folder}/scale-{size}.db", "postgresql": "postgresql+psycopg://postgres@127.0.0.1/test"}


def median_seconds(run: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_trials(space: Any, data: Any, size: int, rng: random.Random) -> list[Any]:
    """``size`` finished trials at random points of the space (networks repeat: the grid has 252)."""
    from jumpsearch.ehvi import space_view

    view = space_view(space, data)
    names = list(view.distributions)
    trials = []
    while len(trials) < size:
        point = {n: rng.choice(view.distributions[n].choices) for n in names}
        described = view.describe(point)
        if described is None:
            continue
        accuracy = round(0.7 + 0.2 * rng.random(), 4)
        params = described.counts["params"]
        attrs = {
            "key": f"{described.key}-{len(trials)}",  # distinct networks, as in a space of ranges
            "params": params,
            "flops": described.counts["flops"],
            "accuracy": accuracy,
            "epochs": 9,
            "images": 9 * 40 * 128,
            "curve": {str(e): round(accuracy - 0.02 * (9 - e), 4) for e in range(1, 10)},
            "rungs": {"1": round(accuracy - 0.16, 4), "3": round(accuracy - 0.12, 4)},
            "costs": {"fixed": 1.2, "train": [1.5] * 9, "evaluate": [0.3] * 9},
        }
        used = {n: point[n] for n in described.used}
        candidate = space.suggest(optuna.trial.FixedTrial(point), data.input_shape, data.num_classes)
        attrs["config"] = candidate.to_dict()
        distributions = {n: view.distributions[n] for n in used}
        trials.append(create_trial(state=TrialState.COMPLETE, values=[accuracy, params], params=used,
                                   distributions=distributions, user_attrs=attrs))  # fmt: skip
    return trials


def measure(kind: str, size: int, folder: Path) -> dict[str, Any]:
    from jumpsearch.columns import snapshot
    from jumpsearch.data import load_dataset
    from jumpsearch.progress import Tally
    from jumpsearch.records import front, record_configuration, summary
    from jumpsearch.report import write_report
    from jumpsearch.results import format_table, load_study, pareto_front
    from jumpsearch.space import load_space
    from jumpsearch.study import _Rungs, _twin, create_study

    space = dataclasses.replace(
        load_space(ROOT / "search_spaces" / "fashion_mnist_grid.yaml"), sampler={"name": "random"}
    )
    data = load_dataset(space.data, os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    url = URLS[kind].format(folder=folder, size=size)
    name = f"scale-{size}"
    if kind == "postgresql":
        from jumpsearch.storage import open_storage

        storage = open_storage(url)
        if name in optuna.get_all_study_names(storage):
            optuna.delete_study(study_name=name, storage=storage)
    start = time.perf_counter()
    writer = create_study(space, url, name)
    rng = random.Random(size)
    writer.add_trials(synthetic_trials(space, data, size, rng))
    row: dict[str, Any] = {"storage": kind, "trials": size, "build_seconds": round(time.perf_counter() - start, 1)}

    study = create_study(space, url, name, data=data)  # a supervisor's or worker's own connection
    tally = Tally(study)
    tally.update(study.get_trials(deepcopy=False))
    extra = iter(synthetic_trials(space, data, 5, random.Random(-size)))

    def refresh() -> None:
        writer.add_trial(next(extra))  # another process trains one more (not timed: the write is not the bar's)
        start = time.perf_counter()
        tally.update(study.get_trials(deepcopy=False))
        refresh.seconds.append(time.perf_counter() - start)  # type: ignore[attr-defined]

    refresh.seconds = []  # type: ignore[attr-defined]
    for _ in range(5):
        refresh()
    row["refresh_ms"] = round(1000 * statistics.median(refresh.seconds), 2)  # type: ignore[attr-defined]
    row["supervisor_core_share"] = round(statistics.median(refresh.seconds) / 0.5, 4)  # type: ignore[attr-defined]

    trial = study.ask()
    # the description's write with its query of the same key, then the look at what it found
    check = lambda: _twin(trial, "absent", record_configuration(trial, {}, "absent"))  # noqa: E731
    row["duplicate_check_ms"] = round(1000 * median_seconds(check), 2)
    rungs = _Rungs(trial, "absent", space, {"params": 50_000, "flops": 2_000_000})
    row["rung_decision_ms"] = round(1000 * median_seconds(lambda: rungs(1, 0.7)), 2)
    study.tell(trial, state=TrialState.FAIL)
    row["front_ms"] = round(1000 * median_seconds(lambda: front(study)), 2)
    for sampler in ("ehvi", "tpe"):
        proposing = create_study(dataclasses.replace(space, sampler={"name": sampler}), url, name, data=data)

        def ask(proposing: optuna.Study = proposing) -> None:
            proposed = proposing.ask()
            space.suggest(proposed, data.input_shape, data.num_classes)
            proposing.tell(proposed, state=TrialState.FAIL)

        row[f"{sampler}_proposal_s"] = round(median_seconds(ask, repeat=3), 3)

    def results() -> None:  # what jumpsearch results prints: the summary line and the front, from one read
        fresh = load_study(url, name)
        with snapshot():
            summary(fresh)
            format_table(pareto_front(fresh))

    row["results_s"] = round(median_seconds(results, repeat=3), 3)
    page = folder / f"report-{size}.html"
    row["report_s"] = round(median_seconds(lambda: write_report(load_study(url, name), page), repeat=1), 2)
    row["report_mb"] = round(page.stat().st_size / 1e6, 1)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--storages", default="sqlite,postgresql")
    parser.add_argument("--folder", default="/tmp/jumpsearch-scale")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "scale.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ask/tell outside optimize, on purpose
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("scale-*.db"):
        old.unlink()
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; Optuna {optuna.__version__}")
    rows = [measure(kind, int(size), folder) for kind in args.storages.split(",") for size in args.sizes.split(",")]
    Path(args.out).write_text(json.dumps({"machine": machine, "optuna": optuna.__version__, "rows": rows}, indent=1))
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
