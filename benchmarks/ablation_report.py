"""The tables and the figure of ``benchmarks/ablation_fashion.md``, read from what the run stored.

    .venv/bin/python benchmarks/ablation_report.py      # after benchmarks/ablation_fashion.sh; trains nothing

Reads the four families' studies (search accuracy, params, FLOPs, and ``confirm``'s runs), the recipe
comparison (``recipe_switches.json``) and the trained models' metrics (``trained-*.json``); prints the tables as
Markdown and writes the fronts as an SVG figure (plotly through kaleido, which needs Chrome or
Chromium: ``BROWSER_PATH=/usr/bin/chromium``). Hypervolumes share one scale: params on a log scale from
the smallest network any family trained (0) to 250K (1), accuracy from 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
import pandas as pd
import yaml

from jumpsearch.ablation import fronts, fronts_figure, hypervolume
from jumpsearch.confirm import budget_key, stored_confirmation
from jumpsearch.records import front, trained
from jumpsearch.results import load_study

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("jumpnet", "resnet_v2", "densenet_bc", "sparsenet")
BUDGETS = (25_000, 50_000, 100_000)
HIGH = 250_000  # the space's max_params
CONFIRMED = budget_key(9)  # the confirmation every family has: ablation_fashion.sh step 5, 9 epochs, no recipe


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (pandas' ``to_markdown`` wants the tabulate package)."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.4f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def confirmed_means(study: optuna.Study) -> tuple[dict[int, float], float | None]:
    """Trial → mean accuracy of ``confirm``'s longer runs, and the Kendall tau of the search's ranking."""
    confirmation = stored_confirmation(study, CONFIRMED)
    if confirmation is None:
        return {}, None
    means = zip(confirmation.table["trial"], confirmation.table["mean"], strict=True)
    return {int(t): float(m) for t, m in means if pd.notna(m)}, confirmation.kendall_tau


def family_budgets(folder: Path) -> pd.DataFrame:
    """One row per family and budget from ``ablation_families.sh``'s metrics files: mean validation and
    test accuracy over the seeds, the test figure's standard error (binomial, 10,000 images: the mean's
    is this over √seeds) and the seeds' range."""
    runs = []
    for path in sorted(folder.glob("*-seed*.json")):
        family_budget, _, seed = path.stem.rpartition("-seed")
        family, _, budget = family_budget.rpartition("-")
        m = json.loads(path.read_text())
        exported = yaml.safe_load((folder / f"{family_budget}.yaml").read_text())["candidates"][0]
        runs.append({"family": family, "budget": budget, "seed": int(seed), "params": exported["params"],
                     "epochs": m["epochs"], "val": m["val_accuracy"], "test": m["test_accuracy"],
                     "minutes": m["train_seconds"] / 60})  # fmt: skip
    if not runs:
        return pd.DataFrame()
    grouped = pd.DataFrame(runs).groupby(["budget", "family", "params", "epochs"], sort=False)
    table = grouped.agg(seeds=("seed", "count"), val=("val", "mean"), test=("test", "mean"), low=("test", "min"),
                        high=("test", "max"), minutes=("minutes", "sum")).reset_index()  # fmt: skip
    table["standard error"] = (table["test"] * (1 - table["test"]) / 10_000) ** 0.5
    table["test range"] = [f"{a:.4f}–{b:.4f}" for a, b in zip(table["low"], table["high"], strict=True)]
    table["minutes"] = table["minutes"].round(1).astype(str)
    order = table["budget"].str.rstrip("k").astype(int) * 10 + table["family"].map(FAMILIES.index)
    return table.iloc[order.argsort()].drop(columns=["low", "high"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", default=str(ROOT / "benchmarks" / "ablation_fashion.log"))
    parser.add_argument("--figure", default=str(ROOT / "benchmarks" / "ablation_fashion" / "fronts.svg"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {f: load_study(args.storage, f"ablation_fashion-{f}") for f in FAMILIES}
    low = min(t.user_attrs["params"] for s in studies.values() for t in trained(s))

    print("\n## Search: each family's front (search accuracy, 10 trials)\n")
    rows = []
    for family, study in studies.items():
        done = trained(study)
        confirmed, tau = confirmed_means(study)
        members = front(study)
        row = {
            "family": family,
            "trials": len(done),
            "front": len(members),
            "hypervolume (search)": hypervolume([(t.user_attrs["params"], t.values[0]) for t in done], low, HIGH),
        }
        if confirmed:
            points = [(t.user_attrs["params"], confirmed[t.number]) for t in members if t.number in confirmed]
            row["hypervolume (confirmed front)"] = hypervolume(points, low, HIGH)
            row["Kendall tau"] = tau
        for budget in BUDGETS:
            row[f"best ≤ {budget // 1000}K"] = max((t.values[0] for t in done if t.user_attrs["params"] <= budget),
                                                  default=float("nan"))  # fmt: skip
        row["training s"] = round(sum(t.user_attrs.get("train_seconds", 0.0) for t in done))
        rows.append(row)
    print(markdown(pd.DataFrame(rows)))

    print("\n## Fronts, trial by trial\n")
    table = fronts(studies)
    confirmed_all = {(f, t): m for f, study in studies.items() for t, m in confirmed_means(study)[0].items()}
    table["confirmed"] = [confirmed_all.get((f, int(t))) for f, t in zip(table["family"], table["trial"], strict=True)]
    keep = ["family", "trial", "params", "flops", "accuracy", "confirmed", "stem_stride", "groups"]
    keep += [c for c in ("blocks_per_group", "layers_per_block", "base_filters", "growth_rate", "jump_spacing",
                         "jump_width", "bottleneck", "learning_rate") if c in table.columns]  # fmt: skip
    print(markdown(table[[c for c in keep if c in table.columns]]))

    recipe = ROOT / "benchmarks" / "recipe_switches.json"
    if recipe.is_file():
        runs = json.loads(recipe.read_text())
        print(f"\n## Recipe switches ({runs['epochs']} epochs, validation accuracy)\n")
        for key, run in runs["runs"].items():
            print(f"| {key} | {run['val_accuracy']:.4f} | {run['seconds']:.0f} s |")

    print("\n## Trained models (test accuracy read once, at the end)\n")
    for metrics in sorted((ROOT / "benchmarks" / "ablation_fashion").glob("trained-*.json")):
        m = json.loads(metrics.read_text())
        print(f"| {metrics.stem} | {m['candidate']['model']['family']} | val {m['val_accuracy']:.4f} | "
              f"test {m['test_accuracy']:.4f} | {m['epochs']} epochs | {m['train_seconds'] / 60:.1f} min | "
              f"{json.dumps({k: v for k, v in m['recipe'].items()})} |")  # fmt: skip

    print("\n## Each family's best network under each budget (ranked by confirm), seeds\n")
    print(markdown(family_budgets(ROOT / "benchmarks" / "ablation_fashion" / "families")))

    figure = fronts_figure(table, "Fashion-MNIST: each family's Pareto front (validation accuracy, 10 trials each)")
    figure.update_layout(width=1100, height=480)
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    figure.write_image(args.figure)
    print(f"\nwrote {args.figure}")


if __name__ == "__main__":
    main()
