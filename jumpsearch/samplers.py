"""Optuna samplers by name, seeded per trial so that no two trials of a study draw from the same stream.

A sampler seeded once per process replays the same points in every process that starts with that seed:
a resumed study, a recycled worker and a second worker on the same storage all begin again from the
first draw. Seeding each trial from (seed, trial number) instead keeps a single process reproducible
(``--seed`` gives the same trial numbers, so the same draws) while every trial of a study, whichever
process runs it, draws from its own stream. The samplers keep their state in the study (TPE and
NSGA-II read the trials; QMC keeps its sequence position there), so a fresh sampler per trial loses
nothing. Each open trial keeps its own sampler until it is told, so trials open at once (``ask`` twice,
``optimize(n_jobs=2)``) never share a stream.
"""

from __future__ import annotations

import importlib.util
import inspect
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from jumpsearch.ehvi import EHVISampler, SpaceView

SAMPLERS: dict[str, type[BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "bruteforce": optuna.samplers.BruteForceSampler,
    "gp": optuna.samplers.GPSampler,
    "ehvi": EHVISampler,
}
DEFAULT_SAMPLER = "ehvi"  # ahead of the others per second on the tabulated benchmark and in real searches
EXHAUSTIVE = ("bruteforce",)  # samplers that train every point of a finite space once, then stop the study
SEED_ONCE = ("qmc",)  # a scrambled sequence must keep one seed; its position lives in the study
NEEDS_SPACE = ("ehvi",)  # samplers that count candidate points: given a ``SpaceView`` when a search starts
EXTRAS = {"gp": ("gp", ("torch", "scipy"))}  # sampler: (the extra that installs it, the modules it imports)


def sampler_options(name: str) -> set[str]:
    """The keyword options a sampler takes (``seed``, and a space's view, are set by jumpsearch)."""
    return set(inspect.signature(SAMPLERS[name]).parameters) - {"seed", "view"}


def missing_dependency(name: str) -> str | None:
    """Why the sampler ``name`` cannot run here (a module it needs is not installed), or None."""
    extra, modules = EXTRAS.get(name, ("", ()))
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        return f"the {name} sampler needs {' and '.join(absent)}: pip install 'jumpsearch[{extra}]'"
    return None


def trial_seed(seed: int, number: int) -> int:
    """A seed for trial ``number`` of a study searched with ``seed``: distinct streams per trial."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeed(BaseSampler):
    """Delegates each trial to a sampler of its own, seeded from (seed, trial number), made when the trial
    first reaches the sampler (``before_trial``, or a direct ``sample_*`` call) and dropped once it is told."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._open: dict[int, BaseSampler] = {}  # by trial id; threads of optimize(n_jobs > 1) share it
        self._lock = threading.Lock()

    def _sampler(self, trial: FrozenTrial) -> BaseSampler:
        with self._lock:
            if trial._trial_id not in self._open:
                self._open[trial._trial_id] = self._make(trial_seed(self._seed, trial.number))
            return self._open[trial._trial_id]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._sampler(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        """The trial's sampler sees it finish (NSGA-II stores its constraints here), even a trial asked by
        another process, and is then dropped."""
        try:
            self._sampler(trial).after_trial(study, trial, state, values)
        finally:
            with self._lock:
                self._open.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        """A fresh seed for the trials to come (those open keep their streams). Optuna calls it as each
        thread of ``optimize(n_jobs > 1)`` starts, so that such a run, as with Optuna's own samplers, is
        not reproducible; every trial still draws from a stream of its own."""
        with self._lock:
            self._seed = int(np.random.SeedSequence().generate_state(1)[0])


def make_sampler(options: dict[str, Any], seed: int, view: SpaceView | None = None) -> BaseSampler:
    """The sampler ``options["name"]`` with its other options, seeded per trial from ``seed``; ``view``
    for one that counts candidate points (``NEEDS_SPACE``)."""
    options = dict(options)
    name = options.pop("name")
    cls = SAMPLERS[name]
    if name in NEEDS_SPACE:
        options["view"] = view

    def make(trial_seed: int) -> BaseSampler:
        with warnings.catch_warnings():  # options such as multivariate are "experimental": noise per trial
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(seed=trial_seed, **options)

    if cls in (SAMPLERS[name] for name in SEED_ONCE):
        return make(seed)
    return PerTrialSeed(make, seed)
