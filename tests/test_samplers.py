"""Per-trial streams: reseeding changes them, and trials open at once never share one (no training)."""

import threading

import optuna
import pytest

from jumpsearch.samplers import (
    EXHAUSTIVE,
    NEEDS_SPACE,
    SAMPLERS,
    SEED_ONCE,
    PerTrialSeed,
    make_sampler,
    missing_dependency,
)

# Samplers that need nothing but Optuna's trials (ehvi counts a space's points: tests/test_ehvi.py), and
# whose dependencies are installed here (gp's come with an extra).
PER_TRIAL = [n for n in SAMPLERS if n not in SEED_ONCE and n not in NEEDS_SPACE and not missing_dependency(n)]
# An exhaustive sampler draws among the points no other trial holds, open ones included: what it draws
# depends on the others by design (that is how it never draws a point twice).
INDEPENDENT = [name for name in PER_TRIAL if name not in EXHAUSTIVE]


def draws(sampler: optuna.samplers.BaseSampler, trials: int = 3) -> list[tuple[float, int]]:
    """Points of a finite space (bruteforce takes no other) of a million points: two samplers' draws
    overlap by chance with a probability of about 10⁻⁵."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(trials):
        trial = study.ask()
        study.tell(trial, [trial.suggest_float("x", 0, 1, step=0.001) + trial.suggest_int("k", 0, 999), 0.0])
    return [(trial.params["x"], trial.params["k"]) for trial in study.trials]


@pytest.mark.parametrize("name", PER_TRIAL)
def test_reseed_rng_changes_what_is_drawn_next(name):
    fresh = draws(make_sampler({"name": name}, 0))
    assert draws(make_sampler({"name": name}, 0)) == fresh  # the same seed, the same draws
    reseeded = make_sampler({"name": name}, 0)
    reseeded.reseed_rng()
    assert set(draws(reseeded)).isdisjoint(fresh)


@pytest.mark.parametrize("name", INDEPENDENT)
def test_trials_open_at_once_each_draw_what_they_draw_alone(name):
    """Trial n draws from the (seed, n) stream whatever else is open: two asked before either draws, and
    drawing in turns, get what each gets when asked and told one after the other."""
    one_by_one = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler({"name": name}, 7))
    for _ in range(2):
        trial = one_by_one.ask()
        one_by_one.tell(trial, [trial.suggest_float("x", 0, 1, step=0.001) + trial.suggest_int("k", 0, 1000), 0.0])
    together = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler({"name": name}, 7))
    first, second = together.ask(), together.ask()
    second.suggest_float("x", 0, 1, step=0.001)
    first.suggest_float("x", 0, 1, step=0.001)
    first.suggest_int("k", 0, 1000)
    second.suggest_int("k", 0, 1000)
    assert [first.params, second.params] == [trial.params for trial in one_by_one.trials]
    assert first.params != second.params


def test_threads_of_optimize_draw_each_from_their_own_trials_stream():
    """optimize(n_jobs=2), both trials open before either draws: each trial's values are the first draws
    of a sampler seeded for it alone, and no sampler outlives its trial."""
    seeds: dict[int, int] = {}

    class Recorded(optuna.samplers.RandomSampler):
        def __init__(self, seed: int) -> None:
            super().__init__(seed=seed)
            self.seed = seed

        def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            seeds[trial.number] = self.seed

    both_open = threading.Barrier(2, timeout=60)

    def objective(trial: optuna.Trial) -> float:
        both_open.wait()
        return trial.suggest_float("x", 0, 1) + trial.suggest_float("y", 0, 1)

    sampler = PerTrialSeed(Recorded, 0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=4, n_jobs=2)
    for trial in study.trials:
        alone = optuna.create_study(sampler=optuna.samplers.RandomSampler(seeds[trial.number])).ask()
        assert trial.params == {"x": alone.suggest_float("x", 0, 1), "y": alone.suggest_float("y", 0, 1)}
    assert len(set(seeds.values())) == 4
    assert not sampler._open
