"""A finished study's front: as a table, as configurations to pick from, and as files to take away."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial

from jumpsearch.columns import by_number
from jumpsearch.config import Candidate, DataConfig, ModelConfig, TrainingConfig
from jumpsearch.errors import JumpsearchError
from jumpsearch.recipe import Recipe
from jumpsearch.records import front as front_trials
from jumpsearch.space import read_yaml
from jumpsearch.storage import check_study_name, open_storage, redact, require_existing, require_jumpsearch_study

ACCURACY_COLUMNS = ("accuracy", "confirmed", "search", "reseeded", "mean", "spread", "se")
MEASURED = ("trial", "accuracy", "se", "confirmed", "params", "flops", "train_seconds")
# Set by the data set, the same in every trial: left out of the table.
FROM_DATA = ("input_shape", "num_classes")


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """Every trial as a row (Optuna's trials_dataframe: values are named after the objectives)."""
    table = study.trials_dataframe(multi_index=False)
    for column in table.columns:  # the configuration is a mapping: keep it as JSON text in a table
        if table[column].map(lambda v: isinstance(v, dict)).any():
            table[column] = table[column].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
    return table


def load_study(storage: str, study_name: str | None = None) -> optuna.Study:
    """Load a jumpsearch study; without a name, the storage's only study. Never creates a storage, and
    refuses a study another tool made there."""
    if study_name is not None:
        check_study_name(study_name)
    require_existing(storage)
    opened = open_storage(storage)
    names = optuna.get_all_study_names(opened)
    found = ", ".join(repr(n) for n in names[:20]) or "none"
    if study_name is None:
        if len(names) != 1:
            held = "several studies; name one" if names else "no study"
            raise JumpsearchError(f"storage {redact(storage)}: holds {held} (studies: {found})")
        study_name = names[0]
    if study_name not in names:
        raise JumpsearchError(f"storage {redact(storage)}: no study named {study_name!r} (studies: {found})")
    study = optuna.load_study(study_name=study_name, storage=opened)
    require_jumpsearch_study(study, storage)
    return study


def pareto_front(study: optuna.Study, trials: list[int] | None = None) -> pd.DataFrame:
    """One row per front trial (or per trial of ``trials``, in that order): accuracy and its standard
    error, the confirmed accuracy where ``confirm`` ran, params, FLOPs, then the metaparameters."""
    from jumpsearch.confirm import confirmed_accuracy

    require_jumpsearch_study(study)
    confirmed = confirmed_accuracy(study)
    chosen = front_trials(study) if trials is None else by_number(study, trials)
    rows = []
    for trial in chosen:
        config = trial.user_attrs.get("config", {})
        row = {
            "trial": trial.number,
            "accuracy": trial.values[0],
            "se": trial.user_attrs.get("accuracy_se"),
            **({"confirmed": confirmed.get(trial.number)} if confirmed else {}),
            "params": trial.user_attrs.get("params"),
            "flops": trial.user_attrs.get("flops"),
            **_metaparameters(config.get("model", {})),
            **config.get("training", {}),
            "train_seconds": trial.user_attrs.get("train_seconds"),
        }
        rows.append(row)
    table = pd.DataFrame(rows, dtype=object)  # a configuration's values as they are: 8, not 8.0 beside a blank
    measured = [c for c in MEASURED if c in table.columns]
    table[measured] = table[measured].apply(pd.to_numeric)
    table = grouped_columns(table)
    if table.empty or trials is not None:
        return table
    return table.sort_values(["accuracy", "params"], ascending=[False, True], ignore_index=True)


def grouped_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of several families in one table: every family's metaparameters together, before the
    training recipe (a table's columns otherwise come in the order rows first name them)."""
    recipe = [c for c in [*TrainingConfig.field_types(), "train_seconds"] if c in table.columns]
    return table[[c for c in table.columns if c not in recipe] + recipe]


def _metaparameters(model: dict[str, Any]) -> dict[str, Any]:
    """A model configuration as the table shows it: the family, its own metaparameters (whichever the
    family: ``layers_per_block``, ``compression``, ``jump_spacing``…), then the stem every family shares;
    not what the data set sets."""
    shared = list(ModelConfig.field_types())
    own = [k for k in model if k not in shared and k != "family"]
    return {k: model[k] for k in ["family", *own, *shared] if k in model and k not in FROM_DATA}


def _cell(value: Any) -> Any:
    """A configuration's value as the table shows it: [3, 4, 3] as 3-4-3, nothing for None or a blank."""
    if isinstance(value, list):
        return "-".join(map(str, value))
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def format_table(table: pd.DataFrame) -> str:
    """Readable widths: lists as 3-4-3, big counts with thousands separators, blanks for what a row's
    family does not have."""
    if table.empty:
        return "(the study has no completed trial yet)"
    shown = table.copy()
    for column in shown.columns:
        if shown[column].dtype == object:
            shown[column] = shown[column].map(_cell)
    accuracy = "{:.4f}".format
    formats = {"params": "{:,}".format, "flops": "{:,}".format}
    for column in shown.columns:  # accuracies: the search's, confirm's runs and their mean; "se" its noise
        if column in ACCURACY_COLUMNS or column.startswith("seed "):
            shown[column] = pd.to_numeric(shown[column], errors="coerce")  # None (not measured) shows blank
            formats[column] = accuracy
    if "learning_rate" in shown:
        formats["learning_rate"] = "{:.3g}".format
    return shown.to_string(index=False, formatters=formats, na_rep="")


@dataclass(frozen=True)
class Best:
    """A front trial as people pick it: the candidate to rebuild, and what it measured."""

    candidate: Candidate
    accuracy: float
    params: int
    flops: int
    trial: int

    @property
    def model(self) -> ModelConfig:
        return self.candidate.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "accuracy": self.accuracy,
            "params": self.params,
            "flops": self.flops,
            **self.candidate.to_dict(),
        }


def _as_study(study_or_storage: optuna.Study | str, study_name: str | None) -> optuna.Study:
    if isinstance(study_or_storage, optuna.Study):
        require_jumpsearch_study(study_or_storage)
        return study_or_storage
    return load_study(study_or_storage, study_name)


def knee(front: list[Best]) -> Best:
    """The front point farthest above the line joining its ends, accuracy against log10(params), both
    scaled to [0, 1]: where adding parameters stops buying accuracy. (A point below the line is where
    accuracy has not started to pay yet; it is never the knee unless no point lies above.)"""
    if len(front) <= 2:
        return max(front, key=lambda b: b.accuracy)
    xs = [math.log10(max(b.params, 1)) for b in front]
    ys = [b.accuracy for b in front]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    points = [((x - min(xs)) / span_x, (y - min(ys)) / span_y) for x, y in zip(xs, ys, strict=True)]
    (x0, y0), (x1, y1) = min(points), max(points)
    above = [(x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) for x, y in points]  # ∝ signed distance
    return front[above.index(max(above))]


def best_configs(
    study_or_storage: optuna.Study | str,
    study_name: str | None = None,
    *,
    k: int | None = None,
    max_params: int | None = None,
    max_flops: int | None = None,
    pick_knee: bool = False,
    by: str = "search",
) -> list[Best]:
    """The Pareto front's configurations, most accurate first, optionally within a parameter or FLOP
    budget (the first is then the most accurate model under it), cut to ``k``, or only the knee.

    ``by="confirmed"`` ranks by the mean accuracy of ``confirm``'s longer runs instead (``accuracy`` then
    holds it): the front of the confirmed trials, recomputed on (confirmed accuracy, params).

    Example:
        >>> from jumpsearch import best_configs, build_model
        >>> best = best_configs("sqlite:///studies/digits.db", max_params=20_000)  # doctest: +SKIP
        >>> model = build_model(best[0].model)  # doctest: +SKIP
    """
    study = _as_study(study_or_storage, study_name)
    if by == "confirmed":
        front = _confirmed_front(study)
    elif by == "search":
        front = [_best(t, float(t.values[0])) for t in front_trials(study)]
    else:
        raise JumpsearchError(f"by: expected 'search' or 'confirmed', got {by!r}")
    front = [
        b
        for b in front
        if (max_params is None or b.params <= max_params) and (max_flops is None or b.flops <= max_flops)
    ]
    front.sort(key=lambda b: (-b.accuracy, b.params))
    if pick_knee and front:
        front = [knee(sorted(front, key=lambda b: b.params))]
    return front[:k] if k is not None else front


def _best(trial: FrozenTrial, accuracy: float) -> Best:
    attrs = trial.user_attrs
    return Best(Candidate.from_dict(attrs["config"]), accuracy, int(attrs["params"]), int(attrs["flops"]), trial.number)


def _confirmed_front(study: optuna.Study) -> list[Best]:
    from jumpsearch.confirm import confirmed_accuracy, non_dominated

    confirmed = confirmed_accuracy(study)
    if not confirmed:
        raise JumpsearchError(f"study {study.study_name!r}: nothing confirmed yet; run jumpsearch confirm first")
    trials = {t.number: t for t in by_number(study, sorted(confirmed))}
    kept = non_dominated(confirmed, {n: t.user_attrs["params"] for n, t in trials.items()})
    return [_best(trials[n], confirmed[n]) for n in sorted(kept)]


def searched_data(study: optuna.Study, data_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The data set a study searched, as an export records it: the space's ``data`` section, with the
    folder or file it was read from (``data_dir``, else the one the search was given and recorded as
    the study's ``data_dir``), so that ``jumpsearch train`` on the exported file finds the data."""
    if data_dir is not None and not Path(data_dir).exists():
        raise JumpsearchError(f"data_dir={data_dir}: no such file or folder")
    data = study.user_attrs.get("space", {}).get("data")
    where = data_dir if data_dir is not None else study.user_attrs.get("data_dir")
    if where is None:
        return data
    return {**(data or {}), "path": str(Path(where).resolve())}


def export_configs(best: list[Best], path: str | Path, data: dict[str, Any] | None = None) -> Path:
    """Write candidates (with what they measured, and the data set they were searched on: see
    ``searched_data``) as YAML or JSON, by the file's suffix, with the recipe ``jumpsearch train`` will
    train them with (``Recipe``'s defaults: each switch is there to edit); ``load_configs``,
    ``exported_data``, ``exported_recipe`` and ``jumpsearch train`` read it back."""
    path = Path(path)
    document = {"data": data, "recipe": Recipe().to_dict(), "candidates": [b.to_dict() for b in best]}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) if path.suffix == ".json" else yaml.safe_dump(document, sort_keys=False)
    path.write_text(text)
    return path


def load_configs(path: str | Path) -> list[Candidate]:
    """The candidates of a file from ``export_configs`` (or of a single candidate mapping), in order:
    ``build_model(candidates[0].model)`` builds the first. ``exported_data`` reads its data set."""
    return _read_export(path)[0]


def exported_data(path: str | Path) -> DataConfig | None:
    """The data set a file from ``export_configs`` names (None if it names none)."""
    return _read_export(path)[1]


def exported_recipe(path: str | Path) -> Recipe:
    """The recipe a file from ``export_configs`` trains with (``Recipe()`` if it has no ``recipe:``)."""
    return _read_export(path)[2]


def read_recipe(path: str | Path) -> Recipe:
    """The recipe of a file: its ``recipe:`` section (an export file; ``Recipe()`` when it has none), or
    the whole file (a file of recipe switches). JumpsearchError naming the file and the key if it is wrong."""
    document = read_yaml(path, "recipe")
    if document is None:
        raise JumpsearchError(f"{path}: the file is empty; write recipe switches in it, e.g. label_smoothing: 0.1")
    if isinstance(document, dict) and ("recipe" in document or "candidates" in document):
        document = document.get("recipe") or {}  # an export without one trains with Recipe()
    try:
        if not isinstance(document, dict):
            raise JumpsearchError(f"recipe: expected a mapping of switches, got {type(document).__name__}")
        return Recipe.from_dict(document)
    except JumpsearchError as e:
        raise JumpsearchError(f"{path}: {e}") from None


def _read_export(path: str | Path) -> tuple[list[Candidate], DataConfig | None, Recipe]:
    path = Path(path)
    document = read_yaml(path, "configurations")  # YAML reads JSON too
    if isinstance(document, dict) and "candidates" in document:
        entries, data, recipe = document["candidates"], document.get("data"), document.get("recipe")
    else:
        entries, data, recipe = [document], None, None
    if not isinstance(entries, list) or not entries:
        raise JumpsearchError(f"{path}: candidates: expected a non-empty list")
    measured = {"trial", "accuracy", "params", "flops"}
    try:
        candidates = [
            Candidate.from_dict({k: v for k, v in e.items() if k not in measured}) if isinstance(e, dict) else e
            for e in entries
        ]
        if not all(isinstance(c, Candidate) for c in candidates):
            raise JumpsearchError("each candidate must be a mapping with model (and training)")
        return candidates, DataConfig.from_dict(data) if data else None, Recipe.from_dict(recipe)
    except JumpsearchError as e:
        raise JumpsearchError(f"{path}: {e}") from None
