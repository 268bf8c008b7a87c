"""What a trial records, and how the rest of the package reads it back.

A trained trial holds ``config``, ``params``, ``flops``, ``key`` (the network and recipe, see
``counting.candidate_key``), ``train_seconds``, ``epochs``, ``device``, ``worker`` and ``val_loss``. A
trial whose configuration was already trained in the study is complete with the earlier result and
``duplicate_of`` (it cost no training); one rejected before training is pruned with ``rejected``; one
that raised is failed with ``fail_reason`` and ``traceback``, or ``interrupted`` when a signal stopped it.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState


def is_duplicate(trial: FrozenTrial) -> bool:
    return "duplicate_of" in trial.user_attrs


def trained(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials, each configuration once (duplicates left out)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_duplicate(t)]


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front, each configuration once."""
    return [t for t in study.best_trials if not is_duplicate(t)]


def spent_training(trial: FrozenTrial) -> bool:
    """Whether the trial's configuration went through training (so that training it again would repeat
    it): complete, running, or failed while training (not interrupted, not failed by a dead worker)."""
    if "key" not in trial.user_attrs or (trial.state == TrialState.PRUNED):
        return False
    if trial.state == TrialState.FAIL:
        return "fail_reason" in trial.user_attrs and not trial.user_attrs.get("interrupted")
    return trial.state in (TrialState.COMPLETE, TrialState.RUNNING)
