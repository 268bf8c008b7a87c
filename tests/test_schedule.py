"""Multi-objective successive halving: the promotion rule on hand-made rungs, and a search under it."""

import itertools

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from jumpsearch import ConfigError, JumpsearchError, write_report
from jumpsearch.records import is_stopped, searched, spent_training, stopped
from jumpsearch.schedule import Schedule, continues, crowding_distances, nondominated, nondominated_ranks
from jumpsearch.space import load_space, space_from_dict
from jumpsearch.study import run_search
from jumpsearch.training import TrainResult

UP_DOWN = ("maximize", "minimize")  # (accuracy, params)


def test_rungs_are_min_epochs_times_powers_of_eta_below_the_budget():
    asha = Schedule(name="asha", min_epochs=1, reduction_factor=3)
    assert asha.rungs(27) == (1, 3, 9)
    assert asha.rungs(10) == (1, 3, 9)
    assert asha.rungs(1) == ()
    assert Schedule(name="asha", min_epochs=2, reduction_factor=2).rungs(16) == (2, 4, 8)
    assert Schedule().rungs(27) == ()  # none: every trial trains its full budget


def test_non_dominated_sorting_and_crowding_by_hand():
    # minimise both: (0,0) dominates all; (0,1) and (1,0) are the next front; (2,2) last
    points = np.array([[1, 0], [2, 2], [0, 1], [0, 0]], dtype=float)
    assert nondominated_ranks(points).tolist() == [1, 2, 1, 0]
    # one front along a line: ends infinite; inner points: the sum of their neighbours' normalised gaps
    front = np.array([[0, 4], [1, 3], [3, 1], [4, 0]], dtype=float)
    assert crowding_distances(front).tolist() == [np.inf, 0.75 + 0.75, 0.75 + 0.75, np.inf]


@pytest.mark.parametrize("columns", [1, 2, 3])
def test_the_fast_fronts_are_those_of_comparing_every_pair(columns):
    """On points with many ties and repeated rows, as trials' counts and accuracies have: the first front,
    and (two columns) every row's front number."""
    from jumpsearch.schedule import _ranks_by_pairs

    rng = np.random.default_rng(columns)
    for _ in range(30):
        points = rng.integers(0, 6, size=(int(rng.integers(1, 40)), columns)).astype(float)
        assert nondominated(points).tolist() == (_ranks_by_pairs(points) == 0).tolist()
        assert nondominated_ranks(points).tolist() == _ranks_by_pairs(points).tolist()
    assert nondominated(np.zeros((0, 2))).tolist() == []


def test_a_newcomer_that_dominates_every_recorded_trial_continues():
    recorded = [(0.5, 1000), (0.6, 2000), (0.7, 4000), (0.4, 500), (0.55, 3000), (0.65, 5000)]
    assert continues((0.9, 400), recorded, UP_DOWN, reduction_factor=3, objectives=("accuracy", "params"))


def test_a_newcomer_dominated_by_every_recorded_trial_stops():
    recorded = [(0.5, 1000), (0.6, 2000), (0.7, 4000), (0.4, 500), (0.55, 3000), (0.65, 5000)]
    assert not continues((0.3, 6000), recorded, UP_DOWN, reduction_factor=3, objectives=("accuracy", "params"))


def test_the_first_trial_at_a_rung_continues():
    assert continues((0.1, 10_000), [], UP_DOWN, reduction_factor=3)


def test_mixed_cases_rank_as_worked_out_by_hand():
    """Eight trials at a rung, η = 2: the top 4 go on.

    Front 0 (non-dominated): A (0.9, 8000), B (0.8, 2000), C (0.6, 500), D (0.7, 1000).
    Front 1: E (0.85, 9000) (dominated by A only), F (0.55, 600) (by C only); front 2 and worse: G, H.
    On log10(params), front 0 sorted by accuracy: C, D, B, A. A and C are the ends (infinite); D's gap:
    accuracy (0.8 - 0.6) / 0.3 = 0.667 plus params (log 2000 - log 500) / (log 8000 - log 500) = 0.5,
    1.167; B's: (0.9 - 0.7) / 0.3 = 0.667 plus (log 8000 - log 1000) / log 16 = 0.75, 1.417.
    The order is A = C, B, D, then front 1: each of A, B, C goes on, D goes on (4th), E and F stop.
    """
    trials = {
        "A": (0.9, 8000),
        "B": (0.8, 2000),
        "C": (0.6, 500),
        "D": (0.7, 1000),
        "E": (0.85, 9000),
        "F": (0.55, 600),
        "G": (0.5, 9500),
        "H": (0.3, 9900),
    }
    expected = {"A": True, "B": True, "C": True, "D": True, "E": False, "F": False, "G": False, "H": False}
    for name, values in trials.items():
        others = [v for n, v in trials.items() if n != name]
        got = continues(values, others, UP_DOWN, reduction_factor=2, objectives=("accuracy", "params"))
        assert got == expected[name], name
    # Without H, seven trials and η = 2: the top 3 go on, A, C and B; D (less crowded than B) stops.
    del trials["H"]
    expected = {"A": True, "B": True, "C": True, "D": False}
    for name, go in expected.items():
        others = [v for n, v in trials.items() if n != name]
        assert continues(trials[name], others, UP_DOWN, 2, ("accuracy", "params")) == go, name
    # With η = 4 only the top one goes on, and A and C tie on both counts: neither ranks ahead of the other.
    for name, go in {"A": True, "C": True, "B": False}.items():
        others = [v for n, v in trials.items() if n != name]
        assert continues(trials[name], others, UP_DOWN, 4, ("accuracy", "params")) == go, name


def test_the_answer_does_not_depend_on_the_order_trials_were_recorded():
    rng = np.random.default_rng(0)
    recorded = [(float(a), float(p)) for a, p in zip(rng.random(7).round(2), rng.integers(100, 10_000, 7), strict=True)]
    recorded.append(recorded[2])  # a tie
    for newcomer in [recorded[2], (0.5, 3000), (0.99, 20_000)]:
        answers = {
            continues(newcomer, list(order), UP_DOWN, 3, ("accuracy", "params"))
            for order in itertools.islice(itertools.permutations(recorded), 0, None, 997)
        }
        assert len(answers) == 1, newcomer


def test_a_schedule_is_validated_like_the_rest_of_the_space(tmp_path, write_space):
    base = "name: s\ndata: {dataset: digits}\nmodel: {groups: 1}\ntraining: {epochs: 9}\n"
    with pytest.raises(ConfigError, match="schedule.reduction_factor: must be at least 2, got 1"):
        load_space(write_space(base + "schedule: {name: asha, reduction_factor: 1}"))
    with pytest.raises(ConfigError, match=r"schedule.name: unknown schedule \(known: none, asha\), got 'hyperband'"):
        load_space(write_space(base + "schedule: hyperband"))
    with pytest.raises(ConfigError, match="schedule.min_epochs: 9 leaves no rung below training.epochs"):
        load_space(write_space(base + "schedule: {name: asha, min_epochs: 9}"))
    with pytest.raises(ConfigError, match="schedule.eta: unknown key"):
        load_space(write_space(base + "schedule: {name: asha, eta: 3}"))
    assert load_space(write_space(base + "schedule: asha")).schedule.rungs(9) == (1, 3)


SCHEDULED = {
    "name": "sched",
    "data": {"dataset": "digits"},
    "model": {"groups": 1, "blocks_per_group": 1, "stem_filters": [8, 8], "base_filters": {"choice": [8, 16, 24]}},
    "training": {"epochs": 9, "steps_per_epoch": 1, "batch_size": 8, "learning_rate": {"float": [1e-3, 1e-1]}},
    "schedule": {"name": "asha", "min_epochs": 1, "reduction_factor": 3},
}


def rung_train(accuracy_of, calls):
    """Training that never trains: accuracy by the candidate, judged at each rung as a real run is."""

    def train(candidate, data, seed, on_epoch=None, rungs=(), on_rung=None):
        accuracy = accuracy_of(candidate)
        calls.append(candidate)
        epochs = candidate.training.epochs
        for epoch in range(1, epochs + 1):
            if epoch in rungs and not on_rung(epoch, accuracy * epoch / epochs):
                return TrainResult(accuracy * epoch / epochs, 1.0, epoch, 0.01, "CPU", stopped=True)
        return TrainResult(accuracy, 1.0, candidate.training.epochs, 0.01, "CPU")

    return train


def test_stopped_trials_are_pruned_with_their_rungs_and_the_compute_they_used(tmp_path):
    space = space_from_dict({**SCHEDULED, "sampler": "random"})
    calls = []
    train = rung_train(lambda c: 1 - c.training.learning_rate, calls)
    study = run_search(space, trials=12, storage=f"sqlite:///{tmp_path}/s.db", train=train)
    halted = stopped(study)
    assert halted and searched(study) == 12 == len(calls)
    for trial in halted:
        assert trial.state == TrialState.PRUNED and is_stopped(trial) and spent_training(trial)
        assert trial.user_attrs["stopped_at"] == trial.user_attrs["epochs"] in (1, 3)
        assert set(trial.user_attrs["rungs"]) == {str(r) for r in (1, 3) if r <= trial.user_attrs["epochs"]}
        assert trial.user_attrs["images"] == trial.user_attrs["epochs"] * 8  # one batch of 8 an epoch
    html = write_report(study, tmp_path / "r.html").read_text()
    assert "stopped early" in html and f"({len(halted)} stopped early by the schedule)" in html
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert all(set(t.user_attrs["rungs"]) == {"1", "3"} and t.user_attrs["epochs"] == 9 for t in finished)
    # The rule held at every decision: each trial that went past a rung was in the top third there.
    for rung in ("1", "3"):
        at_rung = [t for t in study.trials if rung in t.user_attrs.get("rungs", {})]
        went_on = [t for t in at_rung if t.user_attrs["epochs"] > int(rung)]
        assert len(went_on) < len(at_rung) or len(at_rung) == 1


LEARNING_RATE_ONLY = {  # one network: the learning rate alone decides, so params never save a point
    **SCHEDULED,
    "model": {"groups": 1, "blocks_per_group": 1, "stem_filters": [8, 8], "base_filters": 8},
    "training": {**SCHEDULED["training"], "learning_rate": {"float": [1e-3, 1e-1], "log": True}},
}


def good_rate(candidate):
    return 0.9 if candidate.training.learning_rate > 0.01 else 0.2


def test_the_sampler_learns_from_stopped_trials(tmp_path):
    """Rates that always stop early stop being proposed: TPE counts stopped trials among the bad ones."""
    space = space_from_dict({**LEARNING_RATE_ONLY, "sampler": {"name": "tpe", "n_startup_trials": 6}})
    calls = []
    study = run_search(space, trials=40, storage=f"sqlite:///{tmp_path}/s.db", train=rung_train(good_rate, calls))
    assert len(stopped(study)) >= 5
    late = [good_rate(c) for c in calls[10:]]
    # Random sampling proposes a low rate half of the time (15 of 30, give or take 3); trained to the end,
    # the low rates are proposed 9 times with this seed, and the stopped ones teach TPE as much.
    assert late.count(0.2) <= 10, late


def test_a_resumed_study_may_change_its_schedule(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    calls = []
    train = rung_train(lambda c: 1 - c.training.learning_rate, calls)
    run_search(space_from_dict({**SCHEDULED, "sampler": "random", "schedule": "none"}), trials=2, storage=storage,
               train=train)  # fmt: skip
    study = run_search(space_from_dict({**SCHEDULED, "sampler": "random"}), trials=4, storage=storage, train=train)
    assert any("schedule" in change for entry in study.user_attrs["space_changes"] for change in entry["changes"])
    assert searched(study) == 4


def test_a_twin_of_a_stopped_trial_is_not_trained_again(tmp_path):
    training = {**LEARNING_RATE_ONLY["training"], "learning_rate": {"choice": [0.001, 0.05]}}
    space = space_from_dict({**LEARNING_RATE_ONLY, "training": training, "sampler": "random"})
    calls = []
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=storage, study_name="sched", directions=space.directions)
    for rate in (0.05, 0.001, 0.001):
        study.enqueue_trial({"learning_rate": rate})
    with pytest.raises(JumpsearchError, match="sampled points in a row had been trained"):
        run_search(space, trials=3, storage=storage, train=rung_train(good_rate, calls))
    assert [c.training.learning_rate for c in calls] == [0.05, 0.001]  # each configuration once
    first, second, third = study.trials[:3]
    assert first.state == TrialState.COMPLETE and is_stopped(second)
    assert third.state == TrialState.PRUNED and third.user_attrs["duplicate_of"] == 1
