"""Optuna samplers by name, seeded per trial so that no two trials of a study draw from the same stream.

A sampler seeded once per process replays the same points in every process that starts with that seed:
a resumed study, a recycled worker and a second worker on the same storage all begin again from the
first draw. Seeding each trial from (seed, trial number) instead keeps a single process reproducible
(``--seed`` gives the same trial numbers, so the same draws) while every trial of a study, whichever
process runs it, draws from its own stream. The samplers keep their state in the study (TPE and
NSGA-II read the trials; QMC keeps its sequence position there), so a fresh sampler per trial loses
nothing.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

SAMPLERS: dict[str, type[BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "bruteforce": optuna.samplers.BruteForceSampler,
}
SEED_ONCE = ("qmc",)  # a scrambled sequence must keep one seed; its position lives in the study


def sampler_options(name: str) -> set[str]:
    """The keyword options a sampler takes (``seed`` is set by jumpsearch)."""
    return set(inspect.signature(SAMPLERS[name]).parameters) - {"seed"}


def trial_seed(seed: int, number: int) -> int:
    """A seed for trial ``number`` of a study searched with ``seed``: distinct streams per trial."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeed(BaseSampler):
    """Delegates to a sampler made afresh for each trial, seeded from (seed, trial number)."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._sampler = make(seed)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._sampler = self._make(trial_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def make_sampler(options: dict[str, Any], seed: int) -> BaseSampler:
    """The sampler ``options["name"]`` with its other options, seeded per trial from ``seed``."""
    options = dict(options)
    cls = SAMPLERS[options.pop("name")]

    def make(trial_seed: int) -> BaseSampler:
        with warnings.catch_warnings():  # options such as multivariate are "experimental": noise per trial
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(seed=trial_seed, **options)

    if cls in (SAMPLERS[name] for name in SEED_ONCE):
        return make(seed)
    return PerTrialSeed(make, seed)
