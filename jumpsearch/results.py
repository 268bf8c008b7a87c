"""The Pareto front of a study as a pandas table, most accurate first."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from jumpsearch.errors import JumpsearchError
from jumpsearch.storage import open_storage, redact

# Metaparameters shown in the table, in this order; others in a configuration follow them.
COLUMNS = (
    "family",
    "blocks_per_group",
    "base_filters",
    "growth_rate",
    "jump_spacing",
    "jump_width",
    "stem_filters",
)


def load_study(storage: str, study_name: str | None = None) -> optuna.Study:
    """Load a study; without a name, the storage's only study. Never creates a storage."""
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).is_file():
        raise JumpsearchError(f"storage {storage}: no such database file (has a search run yet?)")
    opened = open_storage(storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            found = ", ".join(names) if names else "none"
            raise JumpsearchError(f"storage {redact(storage)}: name the study with --study-name (studies: {found})")
        study_name = names[0]
    if study_name not in names:
        raise JumpsearchError(
            f"storage {redact(storage)}: no study named {study_name!r} (studies: {', '.join(names) or 'none'})"
        )
    return optuna.load_study(study_name=study_name, storage=opened)


def pareto_front(study: optuna.Study) -> pd.DataFrame:
    """One row per front trial: accuracy, params, FLOPs, then the configuration's metaparameters."""
    rows = []
    for trial in study.best_trials:
        config = trial.user_attrs.get("config", {})
        model, training = config.get("model", {}), config.get("training", {})
        row = {
            "trial": trial.number,
            "accuracy": trial.values[0],
            "params": trial.user_attrs.get("params"),
            "flops": trial.user_attrs.get("flops"),
        }
        row.update({k: model[k] for k in COLUMNS if k in model})
        row.update({k: v for k, v in training.items() if k in ("optimizer", "learning_rate", "batch_size", "epochs")})
        row["train_seconds"] = trial.user_attrs.get("train_seconds")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["accuracy", "params"], ascending=[False, True], ignore_index=True)


def format_table(table: pd.DataFrame) -> str:
    """Readable widths: tuples as 3-4-3, big counts with thousands separators."""
    if table.empty:
        return "(the study has no completed trial yet)"
    shown = table.copy()
    for column in ("blocks_per_group", "stem_filters"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "-".join(map(str, v)) if isinstance(v, list) else v)
    formats = {"accuracy": "{:.4f}".format, "params": "{:,}".format, "flops": "{:,}".format}
    if "learning_rate" in shown:
        formats["learning_rate"] = "{:.3g}".format
    return shown.to_string(index=False, formatters=formats)
