"""Which search finds the better front for the same compute: random, TPE, and each with successive halving.

    .venv/bin/python benchmarks/search_efficiency.py          # 4 strategies, 3 seeds, 2 data sets: under an hour
    .venv/bin/python benchmarks/search_efficiency.py --quick  # 1 seed, small budgets: a check that it runs

Each search runs in this process on its own SQLite study until its trials have trained a fixed number
of epochs (the same for every strategy on a data set: ``--full-trials`` trials of the full budget of 9
epochs), so the strategies are compared at equal compute. After every trial it records the compute
spent so far (epochs, images, seconds of wall time) and the hypervolume of the front of the trials
trained to the end (a trial the schedule stopped is not on a front: its accuracy is a rung's).

Hypervolume: of the front of (validation accuracy, log10 params), both scaled to [0, 1]: accuracy as it
is; params as (log10 p - log10 p_min) / (log10 p_max - log10 p_min), where p_min is the smallest model of
the space and p_max the space's ``max_params``. Reference point: accuracy 0 at p_max. 1.0 would be a
perfect classifier at the smallest model's size.

Data: scikit-learn's digits (1,437 training images, 8x8; 288 held out to rank) as ``search_spaces/
digits.yaml`` searches it, and a Fashion-MNIST subset (the original files, ``--data-dir``, default
Debian's ``/usr/share/datasets/fashion-mnist``): 7,500 training images, 6,000 to train, 1,500 held out,
epochs of 10 batches of 64, in ``search_spaces/fashion_mnist.yaml``'s model space.

Writes ``benchmarks/search_efficiency.json`` (every curve, and the summary) and
``benchmarks/search_efficiency.html`` (hypervolume against epochs and seconds, mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

STRATEGIES = {  # name: (sampler, schedule)
    "random": ("random", "none"),
    "tpe": ("tpe", "none"),
    "random+asha": ("random", "asha"),
    "tpe+asha": ("tpe", "asha"),
}
EPOCHS = 9  # rungs at 1 and 3 epochs with reduction factor 3
FASHION_DEFAULT = "/usr/share/datasets/fashion-mnist"


def space_for(dataset: str, sampler: str, schedule: str, seed: int):
    from jumpsearch.space import read_yaml, space_from_dict

    raw = read_yaml(ROOT / "search_spaces" / f"{dataset}.yaml")
    raw["training"] = {**raw["training"], "epochs": EPOCHS}
    if dataset == "fashion_mnist":
        raw["data"] = {**raw["data"], "subset": 7500}
        raw["training"].update({"steps_per_epoch": 10, "batch_size": 64})
    raw["sampler"] = {"name": "tpe", "n_startup_trials": 8} if sampler == "tpe" else "random"
    raw["schedule"] = {"name": "asha", "min_epochs": 1, "reduction_factor": 3} if schedule == "asha" else "none"
    raw.update({"name": f"{dataset}-{sampler}-{schedule}-{seed}", "seed": seed, "trials": 10_000})
    return space_from_dict(raw, f"{dataset} ({sampler}, {schedule})")


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated by (scaled log params, accuracy) points, up to the reference (1, 0 accuracy):
    the integral over x of the best accuracy among points at or left of x."""
    ordered = sorted((min(max(x, 0.0), 1.0), accuracy) for x, accuracy in points)
    area = best = 0.0
    for i, (x, accuracy) in enumerate(ordered):
        best = max(best, accuracy)
        area += ((ordered[i + 1][0] if i + 1 < len(ordered) else 1.0) - x) * best
    return area


def curve(study, scale) -> list[dict]:
    """After each finished trial: compute spent so far and the hypervolume of the front so far."""
    from optuna.trial import TrialState

    from jumpsearch.records import is_duplicate

    finished = sorted((t for t in study.trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    if not finished:
        return []
    start = min(t.datetime_start for t in finished)
    epochs = images = 0
    training = 0.0
    complete: list[tuple[float, float]] = []
    points = []
    for trial in finished:
        epochs += trial.user_attrs.get("epochs", 0)
        images += trial.user_attrs.get("images", 0)
        training += trial.user_attrs.get("train_seconds", 0.0)
        if trial.state == TrialState.COMPLETE and not is_duplicate(trial):
            complete.append((scale(trial.user_attrs["params"]), trial.values[0]))
        points.append({
            "trial": trial.number,
            "epochs": epochs,
            "images": images,
            "seconds": round((trial.datetime_complete - start).total_seconds(), 2),
            "train_seconds": round(training, 2),
            "hypervolume": round(hypervolume(complete), 5),
        })  # fmt: skip
    return points


def at_budget(points: list[dict], epochs: float) -> float:
    """The hypervolume reached once ``epochs`` were spent (the last point at or below it)."""
    reached = [p["hypervolume"] for p in points if p["epochs"] <= epochs]
    return reached[-1] if reached else 0.0


def machine() -> dict:
    import keras
    import optuna

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "keras": keras.__version__,
            "backend": keras.config.backend(), "optuna": optuna.__version__}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default="digits,fashion_mnist")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--full-trials", type=int, default=None, help="budget: this many 9-epoch trials' epochs")
    parser.add_argument("--data-dir", default=FASHION_DEFAULT, help="Fashion-MNIST's four .gz files")
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 full trials: checks that it runs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "search_efficiency"))
    parser.add_argument("--from-json", metavar="FILE", help="summarise and plot the runs of an earlier JSON")
    args = parser.parse_args()
    if args.from_json:
        earlier = json.loads(Path(args.from_json).read_text())
        runs, datasets = earlier["runs"], list(dict.fromkeys(r["dataset"] for r in earlier["runs"]))
        write(earlier["machine"], runs, datasets, Path(args.out))
        return
    if args.quick:
        args.seeds, args.full_trials = 1, args.full_trials or 4
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from jumpsearch.counting import count
    from jumpsearch.data import load_dataset
    from jumpsearch.study import run_search

    datasets = args.datasets.split(",")
    full_trials = {"digits": args.full_trials or 15, "fashion_mnist": args.full_trials or 10}
    about = machine()
    print(json.dumps({"machine": about}), flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for dataset in datasets:
            if dataset == "fashion_mnist" and not Path(args.data_dir, "train-images-idx3-ubyte.gz").is_file():
                sys.exit(f"search_efficiency: no Fashion-MNIST files in {args.data_dir}: "
                         "apt-get install dataset-fashion-mnist, or pass --data-dir, or --datasets digits")  # fmt: skip
            first = space_for(dataset, "random", "none", 0)
            data = load_dataset(first.data, args.data_dir if dataset == "fashion_mnist" else None)
            smallest = count(first.smallest(lambda c: count(c.model).trainable, data.input_shape, data.num_classes)
                             .model).trainable  # fmt: skip
            largest = first.constraints.max_params
            low, high = math.log10(smallest), math.log10(largest)

            def scale(params: float, low: float = low, high: float = high) -> float:
                return (math.log10(params) - low) / (high - low)

            budget = full_trials[dataset] * EPOCHS
            for seed in range(args.seeds):
                for name in args.strategies.split(","):
                    sampler, schedule = STRATEGIES[name]
                    space = space_for(dataset, sampler, schedule, seed)
                    start = time.perf_counter()
                    study = run_search(space, storage=f"sqlite:///{folder}/{space.name}.db", data=data,
                                       seed=seed, epoch_budget=budget)  # fmt: skip
                    seconds = time.perf_counter() - start
                    points = curve(study, scale)
                    run = {"dataset": dataset, "strategy": name, "seed": seed, "budget_epochs": budget,
                           "seconds": round(seconds, 1), "trials": len(points), "curve": points,
                           "hypervolume": at_budget(points, budget)}  # fmt: skip
                    runs.append(run)
                    print(json.dumps({k: v for k, v in run.items() if k != "curve"}), flush=True)
    write(about, runs, datasets, Path(args.out))


def write(about: dict, runs: list[dict], datasets: list[str], out: Path) -> None:
    summary = summarise(runs, datasets)
    for row in summary:
        print(json.dumps(row), flush=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": about, "summary": summary, "runs": runs}, indent=1))
    plot(runs, datasets, out.with_suffix(".html"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.html')}")


def at_seconds(points: list[dict], seconds: float) -> float:
    """The hypervolume reached after ``seconds`` of wall time."""
    reached = [p["hypervolume"] for p in points if p["seconds"] <= seconds]
    return reached[-1] if reached else 0.0


def summarise(runs: list[dict], datasets: list[str]) -> list[dict]:
    """Per data set and strategy: hypervolume at a quarter, half and all of the budget in epochs, and at
    the wall time full-budget TPE took (median over seeds, and the lowest and highest); trials trained;
    wall time, time in ``fit``, and wall seconds per epoch trained (where a trial's fixed cost shows)."""
    rows = []
    for dataset in datasets:
        tpe = [r["curve"][-1]["seconds"] for r in runs if r["dataset"] == dataset and r["strategy"] == "tpe"]
        tpe_wall = statistics.median(tpe) if tpe else None
        for name in STRATEGIES:
            mine = [r for r in runs if r["dataset"] == dataset and r["strategy"] == name]
            if not mine:
                continue
            row: dict = {"dataset": dataset, "strategy": name, "seeds": len(mine)}
            for part in (0.25, 0.5, 1.0):
                values = [at_budget(r["curve"], r["budget_epochs"] * part) for r in mine]
                row[f"hv_{int(part * 100)}"] = [round(statistics.median(values), 4), min(values), max(values)]
            if tpe_wall is not None:
                values = [at_seconds(r["curve"], tpe_wall) for r in mine]
                row["hv_at_tpe_wall"] = [round(statistics.median(values), 4), min(values), max(values)]
            row["trials"] = statistics.median(r["trials"] for r in mine)
            row["seconds_per_epoch"] = round(
                statistics.median(r["seconds"] / r["curve"][-1]["epochs"] for r in mine), 2
            )
            row["seconds"] = round(statistics.median(r["seconds"] for r in mine), 1)
            row["train_seconds"] = round(statistics.median(r["curve"][-1]["train_seconds"] for r in mine), 1)
            rows.append(row)
    return rows


def plot(runs: list[dict], datasets: list[str], path: Path) -> None:
    """Mean hypervolume over seeds against epochs spent, one panel per data set."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(datasets), subplot_titles=datasets)
    colours = dict(zip(STRATEGIES, ("#888", "#1f77b4", "#ff7f0e", "#2ca02c"), strict=True))
    for column, dataset in enumerate(datasets, start=1):
        for name in STRATEGIES:
            mine = [r for r in runs if r["dataset"] == dataset and r["strategy"] == name]
            if not mine:
                continue
            budget = mine[0]["budget_epochs"]
            grid = list(range(0, budget + 1, max(1, budget // 60)))
            mean = [statistics.mean(at_budget(r["curve"], e) for r in mine) for e in grid]
            figure.add_trace(go.Scatter(x=grid, y=mean, name=name, legendgroup=name, showlegend=column == 1,
                                        line={"color": colours[name]}, line_shape="hv"), row=1, col=column)  # fmt: skip
        figure.update_xaxes(title_text="training epochs spent", row=1, col=column)
    figure.update_yaxes(title_text="hypervolume (accuracy, log params)", row=1, col=1)
    figure.update_layout(title="Front found for the compute spent (mean over seeds)")
    figure.write_html(path, include_plotlyjs="inline")


if __name__ == "__main__":
    main()
