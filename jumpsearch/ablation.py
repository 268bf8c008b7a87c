"""The ablation study: the same budget of trials for each family, compared front against front.

Each family gets a study of its own (``<space>-<family>``) rather than one study with a family choice:
every family then completes exactly the same number of trials, its sampler models only its own
metaparameters, and one family can be resumed or extended without the others.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from jumpsearch.data import load_dataset
from jumpsearch.errors import ConfigError
from jumpsearch.records import front, trained
from jumpsearch.results import grouped_columns, pareto_front
from jumpsearch.space import SearchSpace, stored_space
from jumpsearch.storage import open_storage, require_jumpsearch_study, storage_url
from jumpsearch.study import run_search

logger = logging.getLogger(__name__)


def run_ablation(
    space: SearchSpace,
    *,
    trials: int | None = None,
    storage: str | None = None,
    data_dir: str | None = None,
    **kwargs: Any,
) -> dict[str, optuna.Study]:
    """Run (or resume) one study per family of the space, each to ``trials`` complete trials, all in one
    storage (default ``studies/<space name>.db``). Other keyword arguments go to ``run_search``."""
    data = load_dataset(space.data, data_dir)
    storage = storage_url(storage, space.name)
    studies = {}
    for family in space.families:
        part = space.for_family(family)
        _store_family_part(storage, part.name, family)
        studies[family] = run_search(part, trials=trials, storage=storage, data=data, data_dir=data_dir, **kwargs)
    return studies


def _store_family_part(storage: str, study_name: str, family: str) -> None:
    """A family's study made before each stored its own part of the space holds the whole space file:
    store its family's part instead (what its trials were drawn from), so that resuming compares it with
    this family's part of the space now, not with all the families."""
    opened = open_storage(storage)
    if study_name not in optuna.get_all_study_names(opened):
        return
    study = optuna.load_study(study_name=study_name, storage=opened)
    require_jumpsearch_study(study, storage)
    stored = study.user_attrs.get("space")
    try:
        whole = stored_space(stored or {}, study_name)
    except ConfigError:
        return  # create_study says that it cannot compare, and goes on
    if len(whole.families) > 1 and family in whole.families:
        study.set_user_attr("space", {**whole.for_family(family).raw, "name": study_name})
        logger.info("study %r: stored its family's part of the space instead of the whole file", study_name)


def default_budgets(studies: dict[str, optuna.Study], count: int = 4) -> list[int]:
    """``count`` parameter budgets spaced evenly in log between the smallest and largest model trained,
    rounded up to two significant figures: the last holds every model."""
    params = [t.user_attrs["params"] for study in studies.values() for t in trained(study)]
    if not params:
        return []
    low, high = math.log10(min(params)), math.log10(max(params))
    steps = [low + (high - low) * (i + 1) / count for i in range(count)]
    return sorted({_two_figures_up(max(10**s, 1)) for s in steps[:-1]} | {_two_figures_up(max(params))})


def _two_figures_up(x: float) -> int:
    """The smallest number of two significant figures at or above ``x`` (32,450 → 33,000)."""
    unit = 10 ** max(math.floor(math.log10(x)) - 1, 0)
    return math.ceil(round(x / unit, 9)) * unit


def ablation_table(studies: dict[str, optuna.Study], budgets: list[int]) -> pd.DataFrame:
    """One row per family: trials, front size, best accuracy overall and within each parameter budget,
    and the training seconds spent (with the device they were spent on)."""
    rows = []
    for family, study in studies.items():
        done = trained(study)
        row: dict = {"family": family, "trials": len(done), "front": len(front(study))}
        row["best_accuracy"] = max((t.values[0] for t in done), default=float("nan"))
        for budget in budgets:
            within = [t.values[0] for t in done if t.user_attrs["params"] <= budget]
            row[f"acc@<={budget:,}"] = max(within, default=float("nan"))
        row["train_seconds"] = round(sum(t.user_attrs.get("train_seconds", 0.0) for t in done), 1)
        row["device"] = ", ".join(sorted({t.user_attrs.get("device", "?") for t in done})) or "-"
        rows.append(row)
    return pd.DataFrame(rows)


def fronts(studies: dict[str, optuna.Study]) -> pd.DataFrame:
    """Every family's Pareto front in one table, with a ``family`` column."""
    tables = [t.assign(family=f) for f, study in studies.items() if not (t := pareto_front(study)).empty]
    return grouped_columns(pd.concat(tables, ignore_index=True)) if tables else pd.DataFrame()


def fronts_figure(table: pd.DataFrame, title: str):  # -> plotly.graph_objects.Figure
    """Accuracy against params, one stepped front per family, log-scaled params."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for family, rows in table.groupby("family", sort=False):
        rows = rows.sort_values("params")
        figure.add_trace(
            go.Scatter(
                x=rows["params"],
                y=rows["accuracy"],
                mode="lines+markers",
                line_shape="hv",
                name=family,
                text=[f"trial {t}" for t in rows["trial"]],
                hovertemplate="%{text}<br>params %{x:,}<br>accuracy %{y:.4f}<extra>" + family + "</extra>",
            )
        )
    figure.update_layout(title=title, xaxis_title="trainable parameters", yaxis_title="validation accuracy")
    figure.update_xaxes(type="log")
    return figure


def write_ablation(
    studies: dict[str, optuna.Study], out_dir: str | Path, name: str, budgets: list[int] | None = None
) -> tuple[pd.DataFrame, list[Path]]:
    """Write ``<name>-ablation.html`` (the fronts, self-contained), ``<name>-ablation-fronts.csv`` and
    ``<name>-ablation.csv`` (the per-family table); return the table and the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budgets = default_budgets(studies) if budgets is None else budgets
    table = ablation_table(studies, budgets)
    front_rows = fronts(studies)
    paths = [out / f"{name}-ablation.csv", out / f"{name}-ablation-fronts.csv"]
    table.to_csv(paths[0], index=False)
    front_rows.to_csv(paths[1], index=False)
    if not front_rows.empty:
        paths.append(out / f"{name}-ablation.html")
        fronts_figure(front_rows, f"{name}: Pareto fronts per family").write_html(paths[2], include_plotlyjs=True)
    return table, paths
