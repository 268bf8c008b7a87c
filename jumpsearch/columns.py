"""A study's figures read column by column: every trial's state and values and a few of its attributes,
without loading whole trials.

A process that opens a study to print its front (``jumpsearch results``, ``export``) would otherwise
load every trial with all it records (its configuration, learning curve, costs): seconds at 10,000
trials, for a front of a few dozen. On a relational storage the database chooses a two-objective front
(its trials are then loaded one by one), or two queries select what a front needs, and two more count
and sum what the summary line needs. Other storages (journal files, Redis) have no selective read:
their trials are loaded once, as Optuna loads them.
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
    reuses it (so a command that prints a summary and a front from a storage without queries reads the
    trials once; read the summary's keys first). Outside, every call reads afresh, as a progress bar that
    refreshes must."""
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


def tally(
    study: optuna.Study, flags: Sequence[str], summed: Sequence[str]
) -> tuple[list[tuple[Row, int]], dict[str, float]]:
    """How many trials have each state and each set of the user attributes ``flags`` present (a row per
    such group — its ``user_attrs`` the flags present, each True, so that ``records``' predicates read it —
    with its count), and each numeric user attribute of ``summed`` added up over all trials (0 where none
    holds it). On SQLite and PostgreSQL, two aggregate queries that scan the study's trials inside the
    database instead of reading each into Python (about 0.03 s at 10,000 trials on SQLite); else, and
    where the database cannot add a value up (PostgreSQL, text), from ``rows``. SQLite adds a value that is
    not a number as 0; what jumpsearch records there is always a number."""
    counted = None if _cached(study) else _rdb_tally(study, tuple(flags), tuple(summed))
    if counted is not None:
        return counted
    groups: dict[tuple[TrialState, tuple[str, ...]], int] = {}
    sums = dict.fromkeys(summed, 0.0)
    for row in rows(study, (*flags, *summed)):
        present = tuple(k for k in flags if k in row.user_attrs)
        groups[(row.state, present)] = groups.get((row.state, present), 0) + 1
        for key in summed:
            sums[key] += row.user_attrs.get(key, 0)
    return [(Row(-1, -1, state, None, dict.fromkeys(present, True)), n) for (state, present), n in groups.items()], sums


def _rdb_tally(
    study: optuna.Study, flags: tuple[str, ...], summed: tuple[str, ...]
) -> tuple[list[tuple[Row, int]], dict[str, float]] | None:
    found = _rdb(study)
    if found is None:
        return None
    import sqlalchemy as sa

    backend, models, session_of = found
    if backend.engine.dialect.name not in ("sqlite", "postgresql"):  # MySQL: no CAST to a float
        return None
    trial, attr = models.TrialModel, models.TrialUserAttributeModel
    has = [
        sa.exists().where(attr.trial_id == trial.trial_id, attr.key == key).label(f"flag{i}")
        for i, key in enumerate(flags)
    ]
    per_trial = sa.select(trial.state, *has).where(trial.study_id == study._study_id).subquery()
    columns = [per_trial.c[f"flag{i}"] for i in range(len(flags))]
    try:
        with session_of(backend.scoped_session) as session:
            grouped = session.execute(
                sa.select(per_trial.c.state, *columns, sa.func.count()).group_by(per_trial.c.state, *columns)
            ).all()
            totals = (
                session.execute(
                    sa.select(attr.key, sa.func.sum(sa.cast(attr.value_json, sa.Float)))
                    .join(trial, attr.trial_id == trial.trial_id)
                    .where(trial.study_id == study._study_id, attr.key.in_(summed))
                    .group_by(attr.key)
                ).all()
                if summed
                else []
            )
    except Exception as e:  # noqa: BLE001  (a schema Optuna changed, or on PostgreSQL a value not a number)
        logger.debug("counting in the database failed (%s): trials are read", e)
        return None
    groups = [
        (Row(-1, -1, TrialState(state), None, {k: True for k, on in zip(flags, present, strict=True) if on}), n)
        for state, *present, n in grouped
    ]
    sums = dict.fromkeys(summed, 0.0)
    sums.update({key: float(total or 0.0) for key, total in totals})
    return groups, sums


def front_rows(study: optuna.Study, signs: Sequence[float], excluded: Iterable[int] = ()) -> list[Row] | None:
    """The rows of the Pareto front of a two-objective study's completed trials that are not duplicates
    (no ``duplicate_of``) and whose numbers are not ``excluded``, by number; ``signs``: -1 for an objective
    to maximize, 1 to minimize. Chosen by the database (SQLite, PostgreSQL), which returns only the
    front: a process that has not read the study's trials pays a scan inside the database instead of
    reading every trial's values into Python (0.03 s against 0.15 s at 10,000 trials on SQLite). None
    where the database cannot choose: Optuna's cache already holds the trials (the caller's read costs
    less), another storage or dialect, other than two objectives, or a value that is not finite (Optuna
    stores infinities apart from the value column)."""
    found = None if _cached(study) or len(signs) != 2 else _rdb(study)
    if found is None:
        return None
    import sqlalchemy as sa

    backend, models, session_of = found
    if backend.engine.dialect.name not in ("sqlite", "postgresql"):  # window functions tested on these two
        return None
    trial, value, attr = models.TrialModel, models.TrialValueModel, models.TrialUserAttributeModel
    first, second = sa.orm.aliased(value), sa.orm.aliased(value)
    complete = sa.and_(trial.study_id == study._study_id, trial.state == TrialState.COMPLETE)
    finite = value.TrialValueType.FINITE
    infinite = sa.exists().where(value.trial_id == trial.trial_id, complete, value.value_type != finite)
    duplicate = sa.exists().where(attr.trial_id == trial.trial_id, attr.key == "duplicate_of")
    ranked = (
        sa.select(trial.trial_id, trial.number, first.value.label("v0"), second.value.label("v1"),
                  (signs[0] * first.value).label("a"), (signs[1] * second.value).label("b"))
        .join(first, sa.and_(first.trial_id == trial.trial_id, first.objective == 0))
        .join(second, sa.and_(second.trial_id == trial.trial_id, second.objective == 1))
        .where(complete, ~duplicate, trial.number.not_in(list(excluded)),
               first.value_type == finite, second.value_type == finite)  # a trial finished since the check
        .cte()
    )  # fmt: skip
    # Both objectives minimized (a, b): the best a at each b, then kept where it beats the best a at
    # every smaller b: the front's steps. Every trial at a step is on the front (equal points do not
    # dominate). The steps are materialized, a few rows: PostgreSQL, misjudging a fresh table's size,
    # would otherwise compute them again for each trial it joins.
    best = sa.select(ranked.c.b, sa.func.min(ranked.c.a).label("a")).group_by(ranked.c.b).subquery()
    before = sa.func.min(best.c.a).over(order_by=best.c.b, rows=(None, -1))
    steps = sa.select(best.c.b, best.c.a, before.label("before")).subquery()
    front = (
        sa.select(steps.c.b, steps.c.a)
        .where(sa.or_(steps.c.before.is_(None), steps.c.a < steps.c.before))
        .cte()
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    chosen = (
        sa.select(ranked.c.trial_id, ranked.c.number, ranked.c.v0, ranked.c.v1)
        .join(front, sa.and_(ranked.c.b == front.c.b, ranked.c.a == front.c.a))
        .order_by(ranked.c.number)
    )
    try:
        with session_of(backend.scoped_session) as session:
            if session.execute(sa.select(infinite)).scalar():  # stored apart from the value column
                return None
            picked = session.execute(chosen).all()
    except Exception as e:  # noqa: BLE001  (a schema Optuna changed, or a database without window functions)
        logger.debug("choosing the front in the database failed (%s): values are read", e)
        return None
    return [Row(number, trial_id, TrialState.COMPLETE, (v0, v1)) for trial_id, number, v0, v1 in picked]
