"""A study's figures read column by column: every trial's state and values and a few of its attributes,
without loading whole trials.

A process that opens a study to print its front (``jumpsearch results``, ``export``) would otherwise
load every trial with all it records (its configuration, learning curve, costs): seconds at 10,000
trials, for a front of a few dozen. On a relational storage two queries select what the front and the
summary need; the front's trials are then loaded one by one. Other storages (journal files, Redis) have
no selective read: their trials are loaded once, as Optuna loads them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One trial as a column read sees it: ``user_attrs`` holds the attributes asked for (so that the
    predicates of ``records``, ``is_duplicate`` and ``is_stopped``, read rows as they read trials)."""

    number: int
    trial_id: int
    state: TrialState
    values: tuple[float, ...] | None
    user_attrs: dict[str, Any] = field(default_factory=dict)


_Held = dict[tuple[int, int], tuple[frozenset[str], list[Row]]]  # (storage, study) → (keys, rows)
_SNAPSHOTS: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("jumpsearch_snapshots", default=None)


@contextlib.contextmanager
def snapshot() -> Iterator[None]:
    """Within the block, ``rows`` reads each study once: a later call whose keys the first read held
    reuses it (so a command that prints a summary and a front reads the trials once; read the summary's
    keys first). Outside, every call reads afresh, as a progress bar that refreshes must."""
    token = _SNAPSHOTS.set({})
    try:
        yield
    finally:
        _SNAPSHOTS.reset(token)


def rows(study: optuna.Study, keys: Iterable[str] = ()) -> list[Row]:
    """Every trial of the study, by number: its state, values and the user attributes ``keys``. From
    two queries where the storage is relational and this process has not read the study's trials yet;
    else from the trials as Optuna holds them (a warm cache reads only what changed). Inside
    ``snapshot()``, from that block's earlier read when it held ``keys``."""
    keys = tuple(keys)
    held = _SNAPSHOTS.get()
    which = (id(study._storage), study._study_id)  # two storages may number their studies alike
    earlier = held.get(which) if held is not None else None
    if earlier is not None and earlier[0].issuperset(keys):
        return list(earlier[1])
    read = _read(study, keys)
    if held is not None:
        held[which] = (frozenset(keys), read)
    return list(read)


def _read(study: optuna.Study, keys: tuple[str, ...]) -> list[Row]:
    selected = None if _cached(study) else _rdb_rows(study, keys)
    if selected is not None:
        return selected
    return [
        Row(
            t.number,
            t._trial_id,
            t.state,
            tuple(t.values) if t.values is not None else None,
            {k: t.user_attrs[k] for k in keys if k in t.user_attrs},
        )  # fmt: skip
        for t in study.get_trials(deepcopy=False)
    ]


def load(study: optuna.Study, chosen: Sequence[Row]) -> list[FrozenTrial]:
    """The whole trials of ``chosen`` rows, in that order (not copies: do not change them)."""
    storage = study._storage
    return [storage.get_trial(row.trial_id) for row in chosen]  # type: ignore[union-attr]


def by_number(study: optuna.Study, numbers: Sequence[int]) -> list[FrozenTrial]:
    """The whole trials numbered ``numbers``, in that order (IndexError names one the study lacks); one
    look-up each, whatever the study's size."""
    storage = study._storage
    found = []
    for number in numbers:
        try:
            number = operator.index(number)  # a NumPy integer from a table, too; not a float or a string
            if number < 0:  # a journal would index its list from the end
                raise KeyError(number)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        except (KeyError, TypeError):
            raise IndexError(f"study {study.study_name!r} has no trial {number!r}") from None
        found.append(storage.get_trial(trial_id))
    return found


def _cached(study: optuna.Study) -> bool:
    """Whether Optuna's cache in this process already holds the study's trials (then reading them
    through it costs only what changed since, less than the two queries)."""
    held = getattr(study._storage, "_studies", {}).get(study._study_id)
    return bool(getattr(held, "trials", None))


def _rdb(study: optuna.Study) -> Any:
    """The study's relational storage and Optuna's table models, or None (another storage, or an Optuna
    whose internals moved: then everything is read through its public calls)."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:
        logger.debug("this Optuna's table models moved: trials are loaded whole")
        return None
    return backend, models, _create_scoped_session


def _rdb_rows(study: optuna.Study, keys: tuple[str, ...]) -> list[Row] | None:
    found = _rdb(study)
    if found is None:
        return None
    backend, models, session_of = found
    trial, value, attr = models.TrialModel, models.TrialValueModel, models.TrialUserAttributeModel
    try:
        with session_of(backend.scoped_session) as session:
            listed = (
                session.query(trial.trial_id, trial.number, trial.state, value.objective, value.value, value.value_type)
                .outerjoin(value, value.trial_id == trial.trial_id)
                .filter(trial.study_id == study._study_id)
                .all()
            )
            attributes = (
                session.query(attr.trial_id, attr.key, attr.value_json)
                .join(trial, attr.trial_id == trial.trial_id)
                .filter(trial.study_id == study._study_id, attr.key.in_(keys))
                .all()
                if keys
                else []
            )
    except Exception as e:  # noqa: BLE001  (a schema Optuna changed: read the public way)
        logger.debug("selective read failed (%s): trials are loaded whole", e)
        return None
    by_id: dict[int, tuple[int, TrialState, dict[int, float]]] = {}
    for trial_id, number, state, objective, stored, kind in listed:
        entry = by_id.setdefault(trial_id, (number, state, {}))
        if objective is not None:
            entry[2][objective] = value.stored_repr_to_value(stored, kind)
    attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, text in attributes:
        attrs.setdefault(trial_id, {})[key] = json.loads(text)
    found_rows = [
        Row(number, trial_id, state, tuple(v[i] for i in sorted(v)) if v else None, attrs.get(trial_id, {}))
        for trial_id, (number, state, v) in by_id.items()
    ]
    return sorted(found_rows, key=lambda r: r.number)
