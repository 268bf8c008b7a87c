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


def hypervolume(points: list[tuple[int, float]], low: int, high: int) -> float:
    """The area a front dominates, of (params, accuracy) points, with params on a log scale from 0 at
    ``low`` to 1 at ``high`` (the reference point: ``high`` params at accuracy 0): the mean, over log
    params, of the best accuracy within them. 1 is perfect accuracy at ``low`` params; fronts compare
    only on the same ``low`` and ``high``."""
    span = math.log(high / low) if high > low else 1.0
    scaled = sorted((min(max(math.log(max(p, low) / low) / span, 0.0), 1.0), a) for p, a in points)
    area = best = 0.0
    for (x, accuracy), (after, _) in zip(scaled, [*scaled[1:], (1.0, 0.0)], strict=False):
        best = max(best, accuracy)
        area += (after - x) * best
    return area


def ablation_table(studies: dict[str, optuna.Study], budgets: list[int]) -> pd.DataFrame:
    """One row per family: trials, front size, the front's hypervolume (``hypervolume``: params from the
    smallest network any family trained to the largest budget or network, whichever is larger; a network
    at that end adds no area), best accuracy overall and within each parameter budget, and the training
    seconds spent (with the device they were spent on)."""
    done_by = {family: trained(study) for family, study in studies.items()}
    params = [t.user_attrs["params"] for done in done_by.values() for t in done]
    low, high = min(params, default=1), max([*params, *budgets], default=1)
    rows = []
    for family, study in studies.items():
        done = done_by[family]
        members = front(study)
        row: dict = {"family": family, "trials": len(done), "front": len(members)}
        row["hypervolume"] = round(hypervolume([(t.user_attrs["params"], t.values[0]) for t in members], low, high), 4)
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
    """Each family's front, stepped, as accuracy against params (left), and the same networks as points
    against FLOPs (right), both log-scaled; a family keeps its colour in both panels."""
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles = ("against trainable parameters", "against FLOPs (multiply-accumulates)")
    figure = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04, subplot_titles=titles)
    colours = plotly.colors.qualitative.Plotly
    for i, (family, rows) in enumerate(table.groupby("family", sort=False)):
        for column, (axis, unit) in enumerate((("params", "params"), ("flops", "FLOPs")), start=1):
            rows = rows.sort_values(axis)
            figure.add_trace(
                go.Scatter(
                    x=rows[axis],
                    y=rows["accuracy"],
                    mode="lines+markers" if axis == "params" else "markers",  # a front in params, not in FLOPs
                    line_shape="hv",
                    line={"color": colours[i % len(colours)]},
                    name=family,
                    legendgroup=family,
                    showlegend=column == 1,
                    text=[f"trial {t}" for t in rows["trial"]],
                    hovertemplate=f"%{{text}}<br>{unit} %{{x:,}}<br>accuracy %{{y:.4f}}<extra>{family}</extra>",
                ),
                row=1,
                col=column,
            )
    figure.update_layout(title=title, yaxis_title="validation accuracy")
    figure.update_xaxes(type="log")
    figure.update_xaxes(title_text="trainable parameters", row=1, col=1)
    figure.update_xaxes(title_text="FLOPs", row=1, col=2)
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
