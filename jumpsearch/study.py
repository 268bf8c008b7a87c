"""The search: an Optuna study whose trials sample, count, train and score candidates."""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from jumpsearch.counting import count
from jumpsearch.data import Dataset, load_dataset
from jumpsearch.errors import ConfigError, JumpsearchError
from jumpsearch.space import SearchSpace
from jumpsearch.storage import HEARTBEAT_INTERVAL, default_storage, open_storage, redact

WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial, to find it when it hangs
MAX_CONSECUTIVE_FAILURES = 5
MAX_CONSECUTIVE_REJECTIONS = 1000


@dataclass
class Objective:
    """Sample → reject on constraints (no training) → train → (accuracy, params[, flops]).

    User attributes hold what a person needs to rebuild and judge the trial: ``config`` (the candidate
    as a dict), ``params``, ``flops``, ``train_seconds``, ``epochs``, ``device``, ``worker`` (host:pid),
    and ``rejected`` or ``fail_reason`` when it did not complete.
    """

    space: SearchSpace
    data: Dataset
    seed: int = 0
    train: Callable[..., Any] | None = None  # injectable for tests; defaults to train_and_evaluate

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:1000])
            raise

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            candidate = self.space.suggest(trial, self.data.input_shape, self.data.num_classes)
        except ConfigError as e:
            trial.set_user_attr("rejected", str(e))
            raise optuna.TrialPruned(f"rejected: {e}") from None
        counts = count(candidate.model)
        trial.set_user_attr("worker", WORKER)
        trial.set_user_attr("config", candidate.to_dict())
        trial.set_user_attr("params", counts.trainable)
        trial.set_user_attr("flops", counts.macs)
        reason = self.space.constraints.violation(counts.trainable, counts.macs)
        if reason:
            trial.set_user_attr("rejected", reason)
            raise optuna.TrialPruned(f"rejected: {reason}")
        if self.train is None:
            from jumpsearch.training import train_and_evaluate

            self.train = train_and_evaluate
        result = self.train(candidate, self.data, seed=self.seed + trial.number)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 3))
        trial.set_user_attr("epochs", result.epochs)
        trial.set_user_attr("device", result.device)
        trial.set_user_attr("val_loss", result.val_loss)
        values = {"accuracy": result.val_accuracy, "params": counts.trainable, "flops": counts.macs}
        return tuple(float(values[o]) for o in self.space.objectives)


def create_study(
    space: SearchSpace,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    heartbeat: int = HEARTBEAT_INTERVAL,
) -> optuna.Study:
    """Create the space's study, or load it to resume; the study carries the space it was made from."""
    url = storage or default_storage(space.name)
    name = study_name or space.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=open_storage(url, heartbeat),
            study_name=name,
            sampler=space.make_sampler(seed),
            directions=space.directions,
            load_if_exists=True,
        )
    except JumpsearchError:
        raise
    except ValueError as e:  # e.g. an existing study with other directions
        raise JumpsearchError(f"study {name!r} in {redact(url)}: {e}") from None
    if "space" not in study.user_attrs:
        study.set_user_attr("space", space.raw)
        study.set_user_attr("objectives", list(space.objectives))
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2; names show in tables and dashboards
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(space.objectives))
    return study


def count_complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


@dataclass
class _Watch:
    """Stops the loop at the budget, or when trials keep failing or being rejected; drives the progress bar."""

    budget: int
    process_trials: int | None = None
    bar: Any = None
    trained: int = 0
    failures: int = 0
    rejections: int = 0
    last_reason: str = ""
    stopped_because: str = field(default="")

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # Failures count since the last completed trial; rejections since the last trained one.
        self.failures = 0 if trial.state == TrialState.COMPLETE else self.failures + (trial.state == TrialState.FAIL)
        self.rejections = self.rejections + 1 if trial.state == TrialState.PRUNED else 0
        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("rejected")
        self.last_reason = reason or self.last_reason
        done = count_complete(study)
        if self.bar is not None:
            front = study.best_trials
            best = max((t.values[0] for t in front), default=float("nan"))
            self.bar.set_postfix(front=len(front), best_acc=f"{best:.4f}", refresh=False)
            self.bar.update(max(done - self.bar.n, 0))
        self.trained += trial.state in (TrialState.COMPLETE, TrialState.FAIL)
        if done >= self.budget or (self.process_trials and self.trained >= self.process_trials):
            study.stop()
        elif self.failures >= MAX_CONSECUTIVE_FAILURES:
            self.stopped_because = f"{self.failures} trials in a row failed; the last: {self.last_reason}"
            study.stop()
        elif self.rejections >= MAX_CONSECUTIVE_REJECTIONS:
            self.stopped_because = (
                f"{self.rejections} sampled points in a row were rejected; the last: {self.last_reason}"
            )
            study.stop()


def run_search(
    space: SearchSpace,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    train: Callable[..., Any] | None = None,
    data: Dataset | None = None,
    heartbeat: int = HEARTBEAT_INTERVAL,
    process_trials: int | None = None,
) -> optuna.Study:
    """Run (or resume) a search until the study holds ``trials`` completed trials, or ``timeout`` seconds.

    ``train`` replaces ``train_and_evaluate`` (same signature); ``data`` skips loading the space's data set;
    ``heartbeat`` sets the seconds between a running trial's heartbeats (see ``open_storage``). Several
    processes may run this against one storage at once: they share the study and its budget.
    ``process_trials`` returns after this many trained trials even below the budget: TensorFlow keeps some
    memory of every traced model, so a long search runs in processes that are replaced now and then (the
    CLI's ``--recycle``).

    Example:
        >>> from jumpsearch.space import load_space
        >>> study = run_search(load_space("search_spaces/digits.yaml"), trials=3)  # doctest: +SKIP
        >>> [t.values for t in study.best_trials]  # doctest: +SKIP
    """
    if data is None:
        data = load_dataset(space.data, data_dir)  # before the study: a missing data set writes nothing
    space.check_input(data.input_shape, f"{space.name} ({space.data.dataset})")
    study = create_study(space, storage, study_name, seed, heartbeat)
    budget = trials or space.trials
    done = count_complete(study)
    if done >= budget:
        print(
            f"jumpsearch: study {study.study_name!r} already has {done} complete trials (budget {budget})",
            file=sys.stderr,
        )
        return study
    watch = _Watch(budget, process_trials)
    if progress:
        from tqdm.auto import tqdm

        watch.bar = tqdm(total=budget, initial=done, desc=study.study_name, unit="trial", file=sys.stderr)
    objective = Objective(space, data, seed=space.seed if seed is None else seed, train=train)
    try:
        study.optimize(objective, timeout=timeout, callbacks=[watch], catch=(Exception,), gc_after_trial=True)
    finally:
        if watch.bar is not None:
            watch.bar.close()
    try:
        from jumpsearch.report import annotate_for_dashboard

        annotate_for_dashboard(study)
    except Exception as e:  # a worker racing another for the note must not fail a finished search
        print(f"jumpsearch: could not annotate the study for optuna-dashboard ({e})", file=sys.stderr)
    if watch.stopped_because:
        raise JumpsearchError(f"search stopped: {watch.stopped_because}")
    return study
