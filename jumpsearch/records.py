"""What a trial records, and how the rest of the package reads it back.

A trained trial holds ``config``, ``params``, ``flops``, ``key`` (the network and recipe, see
``counting.candidate_key``), ``train_seconds``, ``epochs``, ``device``, ``worker`` and ``val_loss``. A
trial whose configuration was already trained in the study is complete with the earlier result and
``duplicate_of`` (it cost no training); one rejected before training is pruned with ``rejected``; one
that raised is failed with ``fail_reason`` and ``traceback``, or ``interrupted`` when a signal stopped it,
or ``worker_died`` when its worker died (killed, or its heartbeats stopped). One sampled once the study
held its budget is pruned with ``over_budget``, untrained.

Under a schedule, a trial records ``rungs`` (epoch → validation accuracy at each rung it reached); one
the schedule stopped is pruned with ``stopped_at`` (the epochs it trained), and its ``accuracy`` then
is the last rung's. Every trial that trained records ``epochs`` and ``images`` (the compute it used),
``curve`` (epoch → validation accuracy after that epoch, written as each epoch ends: the learning curve,
and the progress of a running trial) and ``costs`` (seconds: ``fixed`` = ``build`` + ``compile`` +
``first_step``, then ``train`` and ``evaluate`` per epoch; see ``training.train_and_evaluate``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from jumpsearch.columns import Row, front_rows, load, rows, tally

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 0.5  # longer than a read then a write of a study attribute take
PEELS = 3  # passes of the front over trials outside an edited space before checking every trial


def is_duplicate(trial: FrozenTrial | Row) -> bool:
    return "duplicate_of" in trial.user_attrs


def trained(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials, each configuration once (duplicates left out)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_duplicate(t)]


def is_stopped(trial: FrozenTrial | Row) -> bool:
    """Stopped early by the schedule (pruned after training, unlike a rejected or duplicate trial)."""
    return trial.state == TrialState.PRUNED and "stopped_at" in trial.user_attrs


def stopped(study: optuna.Study) -> list[FrozenTrial]:
    """Trials the schedule stopped early, each configuration once."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if is_stopped(t)]


def counts_as_searched(trial: FrozenTrial | Row) -> bool:
    """Trained, to the end or until the schedule stopped it: what a budget of trials counts."""
    return (trial.state == TrialState.COMPLETE and not is_duplicate(trial)) or is_stopped(trial)


def counts_toward_recycling(trial: FrozenTrial) -> bool:
    """What a worker process counts towards its ``--recycle`` trials: a trial it trained, to the end or
    to a rung, or that failed; not a duplicate, nor a point rejected or over the budget."""
    return (trial.state in (TrialState.COMPLETE, TrialState.FAIL) or is_stopped(trial)) and not is_duplicate(trial)


def searched(study: optuna.Study) -> int:
    """Configurations trained, to the end or until the schedule stopped them: what a budget of trials counts."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return sum(counts_as_searched(t) for t in finished)


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of the trials trained to the end, each configuration once, among the points of
    the space as the study now stores it: after an edit on resume (a narrower range, another recipe, a
    lower limit), trials it leaves outside are not ranked beside the new ones.

    Chosen by the database where it can (``columns.front_rows``), else from the trials' values
    (``columns.rows``: on a relational storage, without loading every trial); only the front's members
    (and, after an edit, those of the few fronts peeled off before it) are loaded whole."""
    signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
    space = stored_space_of(study)
    candidates: list[Row] | None = None  # every trial's values, read only where the database cannot choose
    gone: set[int] = set()
    # The front of every trial, less its trials outside the space, again, until a front holds none: then
    # every outsider left is dominated by one of its insiders (dominance is transitive), so it is the
    # insiders' front. A few passes usually settle it; past PEELS (a much narrower space), every trial
    # is held to the space once.
    for _ in range(PEELS):
        chosen = front_rows(study, signs, gone)
        if chosen is None:
            if candidates is None:
                read = rows(study, ("duplicate_of",))
                candidates = [r for r in read if r.state == TrialState.COMPLETE and not is_duplicate(r)]
            chosen = _nondominated([r for r in candidates if r.number not in gone], signs)
        members = load(study, chosen)
        outside = {t.number for t in members if space is not None and space.outside(t) is not None}
        if not outside:
            return members
        gone |= outside
    inside = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # one read, each held to the space
        if t.number not in gone and not is_duplicate(t) and space.outside(t) is None
    ]
    return _nondominated(inside, signs)


def _nondominated(trials: list[Any], signs: list[float]) -> list[Any]:
    """The trials (or rows) no other one dominates (``signs``: -1 for an objective to maximize, 1 to minimize)."""
    from jumpsearch.schedule import nondominated

    if not trials:
        return []
    keep = nondominated(np.array([t.values for t in trials]) * np.array(signs))
    return [t for t, kept in zip(trials, keep, strict=True) if kept]


def stored_space_of(study: optuna.Study) -> Any:  # -> SearchSpace | None
    """The space the study stores, to rank only its points (None: none stored, or one no longer readable)."""
    return _stored_space(json.dumps(study.user_attrs.get("space"), sort_keys=True), study.study_name)


@functools.lru_cache(maxsize=8)
def _stored_space(raw: str, name: str) -> Any:  # -> SearchSpace | None
    """The space a study stores, parsed once per text (a progress bar asks for the front twice a second)."""
    from jumpsearch.errors import ConfigError
    from jumpsearch.space import stored_space

    stored = json.loads(raw)
    if stored is None:
        return None
    try:
        return stored_space(stored, name)
    except ConfigError as e:  # a space stored by an older version that today's checks refuse: rank every trial
        logger.debug("study %r: cannot read its stored space (%s); the front ranks every trial", name, e)
        return None


def spent_training(trial: FrozenTrial) -> bool:
    """Whether the trial's configuration went through training (so that training it again would repeat
    it): complete, stopped by the schedule, running, or failed while training (not interrupted, not
    failed by a dead worker)."""
    if "key" not in trial.user_attrs:
        return False
    if trial.state == TrialState.PRUNED:
        return is_stopped(trial)
    if trial.state == TrialState.FAIL:
        attrs = trial.user_attrs
        return "fail_reason" in attrs and not attrs.get("interrupted") and not attrs.get("worker_died")
    return trial.state in (TrialState.COMPLETE, TrialState.RUNNING)


SPENT = ("epochs", "images", "train_seconds")  # what each trial records of the compute it used


def spent(study: optuna.Study) -> dict[str, float]:
    """The compute a study used: epochs, images and seconds of training over all its trials."""
    return _spent(tally(study, (), SPENT)[1])


def _spent(sums: dict[str, float]) -> dict[str, float]:
    seconds = round(sums["train_seconds"], 1)
    return {"epochs": round(sums["epochs"]), "images": round(sums["images"]), "seconds": seconds}


def summary(study: optuna.Study) -> str:
    """One line: configurations trained, how many the schedule stopped, how many sampled points repeated
    a trained one, and the compute they used (counted and summed by the database where it can, without
    reading each trial)."""
    groups, sums = tally(study, ("duplicate_of", "stopped_at"), SPENT)
    halted = sum(n for group, n in groups if is_stopped(group))
    repeats = sum(n for group, n in groups if is_duplicate(group))
    done, used = sum(n for group, n in groups if counts_as_searched(group)), _spent(sums)
    early = f" ({halted} stopped early by the schedule)" if halted else ""
    again = f"; {repeats} sampled points repeated a trained configuration (not trained again)" if repeats else ""
    return (
        f"{done} trained trials{early}{again}; {used['epochs']:,} epochs, {used['images']:,} images, "
        f"{used['seconds']:,.0f} s of training"
    )


def record(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Set several user attributes of a running trial at once: in one transaction on a relational
    database (Optuna's storages commit each attribute on its own, a lock and a sync each), else one write
    each. A trial records a handful of groups (what it is, each epoch's curve, what it scored), not one
    commit per figure. Inside ``held_writes``, what is held so far goes in the same transaction."""
    if not _record_in_one_transaction(trial, attrs, len(attrs) > 1):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)


def record_configuration(trial: optuna.Trial, attrs: dict[str, Any], key: str) -> list[int] | None:
    """Record what a trial is about to train (``attrs`` and its configuration's ``key``, as the user
    attribute ``key``) and return the ids of the study's trials that recorded the same key before it, in
    the order they recorded it.

    On a relational database this is one transaction that holds the study's lock from its first write to
    its commit (SQLite's writer lock; a row lock on the study elsewhere), so trials that record the same
    key at once are put in an order: each sees every trial before it and none after it, and exactly one
    of them sees no twin. Elsewhere (a journal file) it records and returns None: the caller reads the
    study, and two racing trials may both see, or both miss, each other.
    """
    earlier: list[int] = []
    if _record_in_one_transaction(trial, {**attrs, "key": key}, True, same_key=(key, earlier)):
        return earlier
    record(trial, {**attrs, "key": key})
    return None


def _record_in_one_transaction(
    trial: optuna.Trial, attrs: dict[str, Any], worth_it: bool, same_key: tuple[str, list[int]] | None = None
) -> bool:
    """Write ``attrs`` (and what ``held_writes`` holds) in one transaction through Optuna's internals;
    with ``same_key``, lock the study first and fill its list with the ids of the trials that hold the
    same key. False where the storage is not relational or Optuna's internals changed (nothing written
    then)."""
    storage = trial.storage
    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    held = storage if isinstance(storage, _Held) else None
    if not ((worth_it or held or same_key) and isinstance(backend, optuna.storages.RDBStorage)):
        return False
    try:  # Optuna's own transaction, through its internals: where they changed, one write each
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        backend._set_trial_attr_without_commit  # noqa: B018 (present in this Optuna?)
        cached = trial._cached_frozen_trial
    except (ImportError, AttributeError):
        logger.debug("this Optuna has no transaction of several attributes: one write each")
        return False
    study_id = trial.study._study_id
    # Unlike Optuna's single writes, an integrity error is raised: rolled back in silence, it would leave
    # the trial training with nothing of what it is stored.
    with _create_scoped_session(backend.scoped_session) as session:
        if same_key is not None:  # a row lock where the database has them (SQLite locks at the first write)
            study = session.query(models.StudyModel).filter(models.StudyModel.study_id == study_id)
            study.with_for_update(key_share=True).one()  # PostgreSQL: FOR NO KEY UPDATE (attribute writes go on)
        if held:
            held.write(backend, session, trial, attrs)
        else:
            _write_attrs(backend, session, trial._trial_id, attrs)
        if same_key is not None:
            key, earlier = same_key
            rows = (
                session.query(models.TrialUserAttributeModel.trial_id)
                .join(models.TrialModel)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialUserAttributeModel.key == "key")
                .filter(models.TrialUserAttributeModel.value_json == json.dumps(key))
                .filter(models.TrialUserAttributeModel.trial_id != trial._trial_id)
                .order_by(models.TrialUserAttributeModel.trial_user_attribute_id)  # the order they recorded in
            )
            earlier.extend(row.trial_id for row in rows)
    if held:
        held.clear()
    cached.user_attrs.update(attrs)
    return True


def _write_attrs(backend: Any, session: Any, trial_id: int, attrs: dict[str, Any]) -> None:
    """Write a running trial's user attributes in ``session``'s transaction: on SQLite and PostgreSQL one
    statement for all of them (the upsert Optuna writes for one, with a row each: Optuna's look-up of the
    trial and build of a statement, per attribute, cost about 1 ms each, and a trial records about 20),
    elsewhere Optuna's, one at a time."""
    from optuna.storages._rdb import models

    model = models.TrialUserAttributeModel
    if backend.engine.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif backend.engine.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):  # upserts
        from sqlalchemy.dialects.sqlite import insert
    else:
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(session, model, trial_id, key, value)
        return
    if not attrs:
        return
    backend.check_trial_is_updatable(trial_id, models.TrialModel.find_or_raise_by_id(trial_id, session).state)
    values = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
    for start in range(0, len(values), 300):  # 3 bound values a row: under SQLite's oldest limit, 999
        upsert = insert(model).values(values[start : start + 300])
        same = {"value_json": upsert.excluded.value_json}
        session.execute(upsert.on_conflict_do_update(index_elements=[model.trial_id, model.key], set_=same))


class _Held:
    """A trial's storage that holds the parameters the trial suggests and the user attributes it sets
    instead of writing each: the rest goes to the storage it wraps."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self.params: list[tuple[str, float, Any]] = []
        self.attrs: dict[str, Any] = {}

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: Any) -> None:
        self.params.append((name, value, distribution))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.attrs[key] = value

    def __bool__(self) -> bool:
        return bool(self.params or self.attrs)

    def write(self, backend: Any, session: Any, trial: optuna.Trial, attrs: dict[str, Any] | None = None) -> None:
        """Write what is held, and ``attrs`` after it, in ``session``'s transaction; forget what was held
        once that commits (``clear``)."""
        for name, value, distribution in self.params:
            backend._set_trial_param_without_commit(session, trial._trial_id, name, value, distribution)
        _write_attrs(backend, session, trial._trial_id, {**self.attrs, **(attrs or {})})

    def clear(self) -> None:
        self.params.clear()
        self.attrs.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


@contextlib.contextmanager
def held_writes(trial: Any) -> Iterator[None]:
    """Hold the parameters a running trial suggests, and the user attributes it sets, inside this block,
    and write them with its next ``record`` (or at the block's end, or when it raises) in one transaction,
    on a relational database: Optuna commits each on its own, a lock and a sync each. The trial reads them
    from its own cache meanwhile, as Optuna's trials do; other processes see them once written. Elsewhere,
    or where Optuna's internals changed, each is written as usual."""
    storage = getattr(trial, "storage", None)
    backend = getattr(storage, "_backend", storage)
    if not isinstance(trial, optuna.Trial) or not isinstance(backend, optuna.storages.RDBStorage):
        yield
        return
    try:
        from optuna.storages._rdb.storage import _create_scoped_session

        backend._set_trial_param_without_commit  # noqa: B018 (present in this Optuna?)
        backend._set_trial_attr_without_commit  # noqa: B018
    except (ImportError, AttributeError):
        logger.debug("this Optuna has no transaction of several parameters: one write each")
        yield
        return
    holder = _Held(storage)
    trial.storage = holder
    try:
        yield
    finally:
        trial.storage = storage
        if holder:  # ignoring an integrity error: a signal between a commit and its ``clear`` leaves rows written
            with _create_scoped_session(backend.scoped_session, True) as session:
                holder.write(backend, session, trial)


def merge_study_attr(study: optuna.Study, key: str, merge: Callable[[Any], Any]) -> Any:
    """Write ``merge(stored value)`` (None when absent) to the study attribute ``key``, keeping what other
    processes write there at the same time; returns the value stored in the end.

    Optuna's storages replace an attribute whole, and the last writer wins: so a writer reads the value
    back after a pause longer than another's read-then-write takes, and merges again until its change is
    in it (``merge`` then changes nothing). ``merge`` must be idempotent.
    """
    while True:
        stored = study.user_attrs.get(key)
        wanted = merge(copy.deepcopy(stored))
        if wanted == stored:
            return stored
        study.set_user_attr(key, wanted)
        time.sleep(SETTLE_SECONDS)


def appended(entry: Any) -> Callable[[Any], list[Any]]:
    """For ``merge_study_attr``: the stored list with ``entry`` at its end, once."""
    return lambda stored: (stored or []) + ([] if entry in (stored or []) else [entry])
