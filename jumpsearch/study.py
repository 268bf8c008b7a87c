"""The search in one process: an Optuna study whose trials sample, check, train and score candidates."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import socket
import statistics
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.trial import FrozenTrial, TrialState

from jumpsearch.config import Candidate
from jumpsearch.counting import Counts, candidate_key, count
from jumpsearch.data import Dataset, load_dataset
from jumpsearch.device import setup_device
from jumpsearch.errors import ConfigError, JumpsearchError, StorageFailed, check_interrupted, hold_signals, interruption
from jumpsearch.progress import SearchBar
from jumpsearch.records import (
    appended,
    counts_as_searched,
    counts_toward_recycling,
    held_writes,
    is_duplicate,
    is_stopped,
    merge_study_attr,
    record,
    record_configuration,
    searched,
    spent,
    spent_training,
)
from jumpsearch.samplers import EXHAUSTIVE
from jumpsearch.schedule import continues
from jumpsearch.space import SearchSpace, space_changes, stored_space
from jumpsearch.storage import (
    HEARTBEAT_INTERVAL,
    check_study_name,
    open_storage,
    redact,
    require_jumpsearch_study,
    storage_failure,
    storage_url,
)

logger = logging.getLogger(__name__)


_frozen = {"searches": 0, "ours": False}  # searches running in this process; whether they froze
_freezing = threading.Lock()


@contextlib.contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Keep the process's long-lived objects (the backend's modules, the data set) out of the full
    collection that ends every trial (Optuna's ``gc_after_trial``, which frees the last network's graph):
    they are most of what a collection would walk (about 470,000 objects), and walking them took 0.24 s
    after each stopped trial of 1.3 s on a 2-core CPU. The first of concurrent searches (threads) freezes,
    the last one out unfreezes; a process that froze objects itself is left as it is."""
    with _freezing:
        if _frozen["searches"] == 0 and gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()
            _frozen["ours"] = True
        _frozen["searches"] += 1
    try:
        yield
    finally:
        with _freezing:
            _frozen["searches"] -= 1
            if _frozen["searches"] == 0 and _frozen["ours"]:
                gc.unfreeze()
                _frozen["ours"] = False


def worker_name(pid: int) -> str:
    """How a trial names the process that ran it (``worker``): to find it when it hangs or dies."""
    return f"{socket.gethostname()}:{pid}"


WORKER = worker_name(os.getpid())
MAX_CONSECUTIVE_FAILURES = 5
MAX_CONSECUTIVE_REJECTIONS = 50  # points in a row that trained nothing new (rejected or duplicates)
MAX_CONSECUTIVE_DUPLICATES = 20  # of them, duplicates of trained configurations
BUDGET_POLL_SECONDS = 0.5
TRACEBACK_CHARS = 8000
REPEAT_SEED_STRIDE = 100_003  # repeat k of trial n trains with seed + n + k·stride: no two runs share a seed


def _reject(trial: optuna.Trial, reason: str, excess: float = 1.0, attrs: dict[str, Any] | None = None) -> NoReturn:
    """Prune a point before training, and tell the sampler it is infeasible, by how much (its relative
    excess over the limit), rather than merely unlucky; ``attrs``: what else to record with the reason."""
    record(trial, {**(attrs or {}), "rejected": reason})
    trial.set_constraint("jumpsearch", max(excess, 1e-6))
    raise optuna.TrialPruned(f"rejected: {reason}")


@dataclass
class Objective:
    """Sample → reject on constraints (no training) → reuse a twin's result → train (stopped early at
    a rung if the space's schedule says so; ``repeats`` times with distinct seeds) → values.

    A trial records what ``jumpsearch.records`` describes. ``train`` replaces ``train_and_evaluate``
    (same keywords; ``rungs`` and ``on_rung`` only under a schedule); ``on_epoch(trial_number,
    epochs_done, epochs)`` follows a trial as it trains.
    """

    space: SearchSpace
    data: Dataset
    seed: int = 0
    train: Callable[..., Any] | None = None
    on_epoch: Callable[[int, int, int], None] | None = None
    budget: int | None = None  # trained trials the study should hold: a trial past it does not train
    rung_records: RungRecords = field(default_factory=lambda: RungRecords(), repr=False)

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            with held_writes(trial):  # the worker, the point's parameters and its description: one write
                trial.set_user_attr("worker", WORKER)  # a trial this process leaves running is found by it
                hold_signals(False)  # held since the last trial (``run_search``): from here a signal fails it
                check_interrupted()  # ... as does one held, or swallowed before this trial (by a finalizer, say)
                described = self._describe(trial)
            values = self._run(trial, *described)
            check_interrupted()  # ... and one swallowed in its last steps fails it rather than completing it
            return values
        except optuna.TrialPruned:
            raise
        except BaseException as e:  # Ctrl-C or a signal, whatever error it became: Optuna fails the trial
            stop = interruption(e)
            if stop is not None:
                record(trial, {"fail_reason": f"interrupted by {stop.name}", "interrupted": True})
                raise stop from None
            if storage_failure(e) is not None:  # past Optuna's catch: nothing more can be stored
                raise StorageFailed(str(e)) from e
            if isinstance(e, Exception):
                record(trial, {"fail_reason": f"{type(e).__name__}: {e}"[:1000],
                               "traceback": traceback.format_exc()[-TRACEBACK_CHARS:]})  # fmt: skip
            raise

    def _describe(self, trial: optuna.Trial) -> tuple[Candidate, Counts, str, list[int] | None]:
        """The point, what it builds and its key, recorded; rejected here when it breaks a constraint."""
        try:
            candidate = self.space.suggest(trial, self.data.input_shape, self.data.num_classes)
        except ConfigError as e:
            _reject(trial, str(e))
        counts = count(candidate.model)
        described = {"config": candidate.to_dict(), "params": counts.trainable, "flops": counts.macs}
        violation = self.space.constraints.violation(candidate)
        if violation:
            _reject(trial, *violation, attrs=described)
        key = candidate_key(candidate)
        return candidate, counts, key, record_configuration(trial, described, key)  # before looking for a twin

    def _run(
        self, trial: optuna.Trial, candidate: Candidate, counts: Counts, key: str, earlier: list[int] | None
    ) -> tuple[float, ...]:
        twin = _twin(trial, key, earlier)
        if twin is not None:
            if twin.state != TrialState.COMPLETE:
                trial.set_user_attr("duplicate_of", twin.number)
                raise optuna.TrialPruned(f"duplicate of trial {twin.number} ({twin.state.name.lower()})")
            record(trial, {"duplicate_of": twin.number, "train_seconds": 0.0, "epochs": 0})
            return tuple(twin.values)
        if self.budget is not None:
            _within_budget(trial, self.budget)
        from jumpsearch.training import steps_per_epoch, train_and_evaluate

        train = self.train or train_and_evaluate
        epochs, repeats = candidate.training.epochs, candidate.training.repeats

        values = {"params": counts.trainable, "flops": counts.macs}
        rungs = self.space.schedule.rungs(epochs)
        curve: dict[str, float | None] = {}  # epoch → validation accuracy; with repeats, epochs count on
        on_rung = _Rungs(trial, key, self.space, values, records=self.rung_records, curve=curve)
        schedule = {"rungs": rungs, "on_rung": on_rung} if rungs else {}
        results = []
        for repeat in range(repeats):  # repeats and a schedule do not combine (checked with the space)

            def epoch_done(done: int, accuracy: float | None = None, before: int = repeat * epochs) -> None:
                point = _curve_point(accuracy)
                if curve.get(str(before + done), _ABSENT) != point:  # a rung's decision wrote it with its own
                    curve[str(before + done)] = point
                    trial.set_user_attr("curve", curve)  # one write an epoch: the curve, and workers' progress
                if self.on_epoch is not None:
                    self.on_epoch(trial.number, before + done, epochs * repeats)

            seed = self.seed + trial.number + repeat * REPEAT_SEED_STRIDE
            results.append(train(candidate, self.data, seed=seed, on_epoch=epoch_done, **schedule))
        result = results[-1]
        spent_epochs = sum(r.epochs for r in results)
        accuracy = statistics.fmean(r.val_accuracy for r in results)
        done: dict[str, Any] = {"train_seconds": round(sum(r.train_seconds for r in results), 3)}
        costs = [r.costs for r in results if r.costs]  # repeats: fixed seconds summed, epochs one after another
        if costs:
            fixed = {k: round(sum(c[k] for c in costs), 4) for k in ("build", "compile", "first_step", "fixed")}
            epochs_of = {k: [s for c in costs for s in c[k]] for k in ("train", "evaluate")}
            done["costs"] = {**fixed, **epochs_of}
        done.update({
            "epochs": spent_epochs,
            "images": spent_epochs * steps_per_epoch(candidate.training, self.data) * candidate.training.batch_size,
            "device": result.device,
            "backend": result.backend,
            "val_loss": statistics.fmean(r.val_loss for r in results),
            "accuracy": accuracy,
            "accuracy_se": standard_error(accuracy, len(self.data.y_val)),
        })  # fmt: skip
        if repeats > 1:
            done["accuracies"] = [r.val_accuracy for r in results]
        if result.stopped:
            done["stopped_at"] = result.epochs
        record(trial, done)  # one write: what the trial trained and scored
        if result.stopped:
            raise optuna.TrialPruned(f"stopped by the schedule at epoch {result.epochs} of {epochs}")
        values["accuracy"] = accuracy
        return tuple(float(values[o]) for o in self.space.objectives)


_ABSENT = object()


def _curve_point(accuracy: float | None) -> float | None:
    return None if accuracy is None else round(float(accuracy), 6)


def standard_error(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on ``images`` images (binomial): the noise a
    difference between two trials must exceed to mean anything. One seed's spread comes on top."""
    return round(math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(images, 1)), 5)


@dataclass
class _Rungs:
    """A trial's decisions at the rungs of its schedule: record the rung's accuracy in the storage
    (``rungs``: epoch → accuracy), then rank it against every trial that recorded that rung."""

    trial: optuna.Trial
    key: str
    space: SearchSpace
    counts: dict[str, float]
    recorded: dict[str, float] = field(default_factory=dict)
    records: RungRecords = field(default_factory=lambda: RungRecords())
    curve: dict[str, float | None] | None = None  # the trial's curve: this epoch's point goes in the same write

    def __call__(self, epoch: int, accuracy: float) -> bool:
        check_interrupted()
        rung = str(epoch)  # JSON keys
        self.recorded[rung] = accuracy
        attrs: dict[str, Any] = {"rungs": dict(self.recorded)}
        if self.curve is not None:
            self.curve[rung] = _curve_point(accuracy)
            attrs["curve"] = dict(self.curve)
        record(self.trial, attrs)  # before reading: racing trials see each other
        objectives = self.space.objectives
        mine = [accuracy if o == "accuracy" else self.counts[o] for o in objectives]
        others = self.records.others(self.trial, self.key, rung, objectives)
        go = continues(mine, others, self.space.directions, self.space.schedule.reduction_factor, objectives)
        logger.debug("trial %d at epoch %d: accuracy %.4f, %s (%d others at this rung)", self.trial.number, epoch,
                     accuracy, "goes on" if go else "stops", len(others))  # fmt: skip
        return go


@dataclass
class RungRecords:
    """What a worker's trials read of the others at each rung. A finished trial never changes, so what it
    recorded at a rung is read once per worker (``settled``: rung → trial numbers read, and configuration
    key → (trial number, values)); each decision reads again only the trials that were still running:
    at 10,000 trials a rung decision costs a pass over the trial list, not over their attributes."""

    settled: dict[str, tuple[set[int], dict[Any, tuple[int, list[float]]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # optimize(n_jobs > 1) shares it

    def others(self, trial: optuna.Trial, key: str, rung: str, objectives: Sequence[str]) -> list[list[float]]:
        """The values at ``rung`` of every configuration but ``key``: one record per configuration (a
        worker's killed trial and its retry count once, with the later one's figures)."""
        with self.lock:
            return self._others(trial, key, rung, objectives)

    def _others(self, trial: optuna.Trial, key: str, rung: str, objectives: Sequence[str]) -> list[list[float]]:
        seen, settled = self.settled.setdefault(rung, (set(), {}))
        fresh: dict[Any, tuple[int, list[float]]] = {}
        for t in trial.study.get_trials(deepcopy=False):
            number = t.number
            if number in seen or number == trial.number:
                continue
            finished = t.state.is_finished()
            attrs = t.user_attrs
            if rung not in attrs.get("rungs", {}):
                if finished:
                    seen.add(number)
                continue
            values = [attrs["rungs"][rung] if o == "accuracy" else attrs[o] for o in objectives]
            if finished:  # only once its values are read: a trial that cannot be read fails every decision
                seen.add(number)
            _keep_later(settled if finished else fresh, attrs.get("key", number), number, values)
        others = dict(settled)
        for other, (number, values) in fresh.items():
            _keep_later(others, other, number, values)
        others.pop(key, None)
        return [values for _, values in others.values()]


def _keep_later(into: dict[Any, tuple[int, list[float]]], key: Any, number: int, values: list[float]) -> None:
    held = into.get(key)
    if held is None or held[0] < number:
        into[key] = (number, values)


def _within_budget(trial: optuna.Trial, budget: int) -> None:
    """Let the trial train only if fewer than ``budget`` trials numbered before it trained or may be
    training, so that however many processes share the study it holds exactly ``budget`` trained trials.

    Each trial judges only the trials before it, so two racing trials never both count on the other.
    While earlier running trials could still fall short (fail, turn out duplicates), it waits for them;
    once the earlier ones fill the budget it is pruned with ``over_budget``, having trained nothing.
    """
    said = False
    while True:
        earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
        done = sum(counts_as_searched(t) for t in earlier)
        if done >= budget:
            trial.set_user_attr("over_budget", True)
            raise optuna.TrialPruned(f"the study holds its {budget} trained trials")
        running = [t.number for t in earlier if _may_train(t)]
        if done + len(running) < budget:
            return
        if not said:  # a wait the user can see: a journal storage keeps a dead machine's trial running
            logger.info("trial %d waits: %s %s may still fill the budget of %d", trial.number,
                        "trial" if len(running) == 1 else "trials", ", ".join(map(str, running)), budget)  # fmt: skip
            said = True
        check_interrupted()
        time.sleep(BUDGET_POLL_SECONDS)
        with warnings.catch_warnings():  # a dead worker's trial must not hold this one forever
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(trial.study)


def _may_train(trial: FrozenTrial) -> bool:
    """Running and no duplicate, unless its process on this machine is gone (a storage without heartbeats,
    such as a journal, would leave it running for ever)."""
    if trial.state != TrialState.RUNNING or is_duplicate(trial):
        return False
    host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            pass
    return True


def _twin(trial: optuna.Trial, key: str, earlier: list[int] | None) -> FrozenTrial | None:
    """The trial this one defers to: the earliest other trial of the study that trained, or is training,
    the same configuration (duplicates of it aside).

    ``earlier``, the trials that recorded the key before this one in a serialized order
    (``record_configuration``): of trials that sample one point at once, exactly the first trains. Without
    that order (a journal file), every trial recorded its key before looking, so of two racing trials at
    least one sees the other, and a running twin counts only when its number is lower: the lower number
    trains, unless it looked before the higher one wrote (then both train).
    """
    if earlier is not None:
        storage = trial.study._storage
        others = [storage.get_trial(trial_id) for trial_id in earlier]
    else:
        others = sorted((t for t in trial.study.get_trials(deepcopy=False) if t.user_attrs.get("key") == key),
                        key=lambda t: t.number)  # fmt: skip
    for other in others:
        if other.number == trial.number or other.user_attrs.get("key") != key or not spent_training(other):
            continue
        if is_duplicate(other):  # it defers to a trial of its own, which recorded the key before it
            continue
        if earlier is None and other.state == TrialState.RUNNING and other.number > trial.number:
            continue
        return other
    return None


def _check_resume(study_name: str, opened: optuna.storages.BaseStorage, space: SearchSpace, url: str) -> list[str]:
    """Compare the space with the one a stored study was made from: stop on a change that would corrupt
    it, return the changes it can take."""
    if study_name not in optuna.get_all_study_names(opened):
        return []
    study = optuna.load_study(study_name=study_name, storage=opened)
    require_jumpsearch_study(study, url)  # another tool's study: refused before anything is written to it
    stored = study.user_attrs.get("space")
    if stored is None:
        return []
    try:
        before = stored_space(stored, study_name)
    except ConfigError as e:
        logger.warning("cannot compare with the space study %r was made from (%s)", study_name, e)
        return []
    breaking, noted = space_changes(before, space)
    if breaking:
        raise JumpsearchError(
            f"{space.source}: incompatible with study {study_name!r} at {redact(url)}: {'; '.join(breaking)}. "
            "Restore the space, or start a new study (another name: or study_name=NAME)"
        )
    return noted


def create_study(
    space: SearchSpace,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    heartbeat: int = HEARTBEAT_INTERVAL,
    data: Dataset | None = None,
    load_only: bool = False,
) -> optuna.Study:
    """Create the space's study, or load it to resume; the study carries the space it was made from.

    Resuming with an edited space is checked first: objectives, data set, families, and the kind, choices,
    log scale and step of every parameter must be unchanged (JumpsearchError names what changed); other
    edits (a wider range, a longer budget) are recorded in the study's ``space_changes``. ``storage`` is a
    URL (see ``open_storage``) or an Optuna storage object that threads of this process share; ``data``,
    the data set its trials train on, lets a sampler count candidate points before proposing one.
    ``load_only``: load a study that a supervisor has created and checked, writing nothing (a standby
    worker, which may be killed at any moment; an attempt to create it would write to a journal file).
    """
    name = study_name or space.name
    check_study_name(name)
    if isinstance(storage, optuna.storages.BaseStorage):  # one process's threads sharing a storage object
        url, opened = type(storage).__name__, storage
    else:
        url = storage_url(storage, space.name)
        opened = open_storage(url, heartbeat)
    if load_only:
        try:
            return optuna.load_study(study_name=name, storage=opened, sampler=space.make_sampler(seed, data))
        except KeyError:
            raise JumpsearchError(f"study {name!r} in {redact(url)}: not found") from None
    noted = _check_resume(name, opened, space, url)
    try:
        study = optuna.create_study(
            storage=opened,
            study_name=name,
            sampler=space.make_sampler(seed, data),
            directions=space.directions,
            load_if_exists=True,
        )
    except ValueError as e:  # an existing study with other directions and no stored space
        raise JumpsearchError(f"study {name!r} in {redact(url)}: {e}") from None
    if noted:  # merged: two processes resuming at once both keep their entry
        entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "changes": noted}
        merge_study_attr(study, "space_changes", appended(entry))
        logger.info("study %r resumed with an edited space: %s", name, "; ".join(noted))
    if noted or "space" not in study.user_attrs:
        study.set_user_attr("space", space.raw)
        study.set_user_attr("objectives", list(space.objectives))
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2; names show in tables and dashboards
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(space.objectives))
        _note_space(study)
    return study


def _note_space(study: optuna.Study) -> None:
    """The space file as the study's note, which optuna-dashboard shows beside the trials."""
    import optuna_dashboard
    import yaml

    text = yaml.safe_dump(study.user_attrs["space"], sort_keys=False)
    optuna_dashboard.save_note(study, f"# {study.study_name}\n\nSearch space:\n\n```yaml\n{text}```\n")


@dataclass
class _Watch:
    """Stops the loop at the budget, or when trials keep failing, or keep training nothing new (rejected
    before training, or duplicates of trained configurations); reports each failed trial in one line,
    and drives the progress bar. A signal swallowed during a trial stops the loop here at the latest."""

    budget: int
    process_trials: int | None = None
    bar: SearchBar | None = None
    epoch_budget: int | None = None
    exhaustive: bool = False  # the sampler draws each point once and stops the study: duplicates are expected
    trained: int = 0
    failures: int = 0
    rejections: int = 0
    duplicates: int = 0
    last_reason: str = ""
    stopped_because: str = field(default="")

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        check_interrupted()
        attrs = trial.user_attrs
        failed = trial.state == TrialState.FAIL
        rejected = trial.state == TrialState.PRUNED and "rejected" in attrs
        duplicate = is_duplicate(trial)
        trained = counts_toward_recycling(trial)
        # Failures count since the last completed trial; rejections and duplicates together since the last
        # trained one (a rejected point between two duplicates does not make the space less exhausted).
        self.failures = 0 if trial.state == TrialState.COMPLETE or is_stopped(trial) else self.failures + failed
        self.rejections = 0 if trained else self.rejections + rejected
        self.duplicates = 0 if trained else self.duplicates + duplicate
        if failed and not attrs.get("interrupted"):
            self.last_reason = attrs.get("fail_reason", "its worker stopped")
            logger.warning(
                "trial %d failed: %s (traceback: user attribute 'traceback' of trial %d)",
                trial.number, self.last_reason, trial.number,
            )  # fmt: skip
        elif rejected:
            self.last_reason = attrs["rejected"]
            logger.debug("trial %d rejected before training: %s", trial.number, self.last_reason)
        elif duplicate:
            logger.debug("trial %d is trial %d again (same network and recipe): not trained", trial.number,
                         attrs["duplicate_of"])  # fmt: skip
        if self.bar is not None:
            self.bar.refresh(with_running=False)
        self.trained += trained
        untrained = self.rejections + self.duplicates
        exhausted = not self.exhaustive and (
            self.duplicates >= MAX_CONSECUTIVE_DUPLICATES
            or (self.duplicates > 0 and untrained >= MAX_CONSECUTIVE_REJECTIONS)
        )
        if searched(study) >= self.budget or (self.process_trials and self.trained >= self.process_trials):
            study.stop()
        elif self.epoch_budget is not None and spent(study)["epochs"] >= self.epoch_budget:
            study.stop()
        elif self.failures >= MAX_CONSECUTIVE_FAILURES:
            self.stopped_because = f"{self.failures} trials in a row failed; the last: {self.last_reason}"
            study.stop()
        elif exhausted:
            self.stopped_because = (
                f"{self.duplicates} sampled points in a row had been trained already ({self.rejections} rejected "
                f"ones between them): the space looks exhausted at {searched(study)} configurations; widen it, "
                "or ask for fewer trials"
            )
            study.stop()
        elif self.rejections >= MAX_CONSECUTIVE_REJECTIONS:
            self.stopped_because = (
                f"{self.rejections} sampled points in a row were rejected before training; the last: "
                f"{self.last_reason}. Narrow the space's ranges towards what the constraints allow"
            )
            study.stop()


def fail_running(study: optuna.Study, worker: str, attrs: dict[str, Any]) -> list[FrozenTrial]:
    """Fail the trials ``worker`` left running, recording ``attrs`` (``fail_reason`` and what else tells
    why) first; returns the trials this call failed (not those another process finished meanwhile)."""
    storage, failed = study._storage, []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") != worker:
            continue
        try:
            for key, value in attrs.items():
                storage.set_trial_user_attr(trial._trial_id, key, value)
            if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                failed.append(storage.get_trial(trial._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:  # its heartbeat check failed it elsewhere first
            pass
    return failed


def run_search(
    space: SearchSpace,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    progress: bool = False,
    train: Callable[..., Any] | None = None,
    data: Dataset | None = None,
    heartbeat: int = HEARTBEAT_INTERVAL,
    process_trials: int | None = None,
    epoch_budget: int | None = None,
) -> optuna.Study:
    """Run (or resume) a search in this process until the study holds ``trials`` trained trials (each
    configuration counted once, whether it trained to the end or the schedule stopped it), for
    ``timeout`` seconds, or until its trials have trained ``epoch_budget`` epochs in all (a compute
    budget: schedules compared at equal compute).

    The data set, the space against it and the storage are checked before the study is touched, so bad
    input writes nothing. ``train`` replaces ``train_and_evaluate`` (same keywords); ``data`` skips loading
    the space's data set; ``heartbeat`` sets the seconds between a running trial's heartbeats (see
    ``open_storage``). Several processes may run this against one storage at once: they share the study
    and its budget, and no configuration is trained twice. ``process_trials`` returns after this many
    trained trials even below the budget (``run_workers`` then goes on in a fresh process).

    Example:
        >>> from jumpsearch import load_space, run_search
        >>> study = run_search(load_space("search_spaces/digits.yaml"), trials=3)  # doctest: +SKIP
        >>> [t.values for t in study.best_trials]  # doctest: +SKIP
    """
    study, data = _open_search(space, storage=storage, study_name=study_name, seed=seed, data_dir=data_dir,
                              data=data, heartbeat=heartbeat)  # fmt: skip
    return _search(study, space, data, trials=trials, timeout=timeout, storage=storage, seed=seed, progress=progress,
                  train=train, process_trials=process_trials, epoch_budget=epoch_budget)  # fmt: skip


def _open_search(
    space: SearchSpace,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    data: Dataset | None = None,
    heartbeat: int = HEARTBEAT_INTERVAL,
    load_only: bool = False,
) -> tuple[optuna.Study, Dataset]:
    """The first half of ``run_search``: the data set, the space against it, and the study, created or
    resumed; nothing trains. A standby worker of ``run_workers`` does this while another trains, with
    ``load_only`` (see ``create_study``)."""
    if data is None:
        data = load_dataset(space.data, data_dir)
    space.check(data.input_shape, data.num_classes)
    study = create_study(space, storage, study_name, seed, heartbeat, data, load_only)
    if load_only:
        return study, data
    where = None if data_dir is None else str(Path(data_dir).resolve())  # for an export of this study to train on
    if where is not None and study.user_attrs.get("data_dir") != where:
        study.set_user_attr("data_dir", where)
    return study, data


def _search(
    study: optuna.Study,
    space: SearchSpace,
    data: Dataset,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    seed: int | None = None,
    progress: bool = False,
    train: Callable[..., Any] | None = None,
    process_trials: int | None = None,
    epoch_budget: int | None = None,
) -> optuna.Study:
    """The second half of ``run_search``: train trials of the study ``_open_search`` returned (same
    keywords; ``storage`` only names the storage in an error)."""
    budget = trials or space.trials
    done = searched(study)
    if done >= budget:
        logger.info("study %r already has %d trained trials (budget %d)", study.study_name, done, budget)
        return study
    if train is None:
        setup_device()  # the backend's modules are imported before they are frozen
    bar = SearchBar(study, budget) if progress else None
    watch = _Watch(budget, process_trials, bar, epoch_budget, exhaustive=space.sampler["name"] in EXHAUSTIVE)
    on_epoch = watch.bar.epoch if watch.bar is not None else None
    objective = Objective(space, data, seed=space.seed if seed is None else seed, train=train, on_epoch=on_epoch,
                          budget=budget)  # fmt: skip

    def held_after(trial: optuna.Trial) -> tuple[float, ...]:
        try:
            return objective(trial)
        finally:
            hold_signals(True)  # until the next trial's objective starts: see ``hold_signals``

    hold_signals(True)  # the first trial's start, as every next one's
    try:
        with long_lived_frozen():
            study.optimize(held_after, timeout=timeout, callbacks=[watch], catch=(Exception,), gc_after_trial=True)
        check_interrupted()  # one held after the last trial
    except (StorageFailed, Exception, KeyboardInterrupt) as e:
        stop = interruption(e)  # a signal, whatever error it became where it landed
        if stop is not None:
            # One that landed in Optuna's own code, outside the objective, left the trial running.
            with contextlib.suppress(Exception):  # a storage that takes no writes: the heartbeat fails it later
                fail_running(study, WORKER, {"fail_reason": f"interrupted by {stop.name}", "interrupted": True})
            raise stop from None
        failure = storage_failure(e)  # a storage that takes no more writes stops every worker at once
        if failure is None:
            raise
        shared = isinstance(storage, optuna.storages.BaseStorage)
        where = type(storage).__name__ if shared else redact(storage_url(storage, space.name))
        raise JumpsearchError(f"storage {where}: {failure}") from None
    finally:
        hold_signals(False)
        if watch.bar is not None:
            watch.bar.close()
    if watch.stopped_because:
        raise JumpsearchError(f"search stopped: {watch.stopped_because}")
    return study
