"""The ehvi sampler: its closed-form improvement, and searches that count before they train (no training)."""

import hashlib
import math

import numpy as np
import optuna
import pytest
import yaml

from jumpsearch.counting import candidate_key, count
from jumpsearch.ehvi import Described, EHVISampler, SpaceView, expected_improvement
from jumpsearch.errors import ConfigError
from jumpsearch.records import counts_as_searched
from jumpsearch.space import space_from_dict
from jumpsearch.study import run_search
from jumpsearch.training import TrainResult

SPACE = """
name: counted
data: {dataset: digits}
model:
  groups: {int: [1, 3]}
  blocks_per_group: {int: [1, 2]}
  stem_filters: [8, 8]
  base_filters: {choice: [8, 16, 24, 32]}
  growth_rate: {float: [1.0, 2.0]}
  jump_spacing: {choice: [0, 1]}
training: {learning_rate: {float: [0.001, 0.01], log: true}, epochs: 2, batch_size: 32}
sampler: {name: ehvi, n_startup_trials: 3, n_candidates: 64}
constraints: {max_params: 20000}
"""


def test_the_improvement_of_a_sure_point_is_the_area_it_adds():
    """Accuracy known (deviation ~0): the box from the point to the reference (1 on the count axis, 0 on
    accuracy) less what the front covers. Front: (0.2, 0.9). A point at 0.5 with 0.95 adds (1 − 0.5)·0.05;
    at 0.1 with 0.5: (0.2 − 0.1)·0.5; one the front dominates adds nothing."""
    front_counts, front_accuracy = np.array([[0.2]]), np.array([0.9])
    counts = np.array([[0.5], [0.1], [0.6]])
    mean, std = np.array([0.95, 0.5, 0.8]), np.full(3, 1e-12)
    got = expected_improvement(counts, mean, std, front_counts, front_accuracy)
    assert got == pytest.approx([0.025, 0.05, 0.0], abs=1e-9)
    empty = expected_improvement(counts[:1], mean[:1], std[:1], np.zeros((0, 1)), np.zeros(0))
    assert empty == pytest.approx([0.5 * 0.95])


@pytest.mark.parametrize("dims", [1, 2])
def test_the_expected_improvement_is_the_mean_of_the_improvements_of_sampled_accuracies(dims):
    rng = np.random.default_rng(0)
    front_counts, front_accuracy = rng.uniform(0, 1, (6, dims)), rng.uniform(0.5, 0.9, 6)
    counts, mean, std = rng.uniform(0, 1, (1, dims)), np.array([0.8]), np.array([0.1])
    sampled = rng.normal(0.8, 0.1, 4000)
    # The improvement of one sure point, by brute force: the hypervolume with it less without it, on a grid.
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, 201)[:-1] + 0.0025] * dims, indexing="ij"), -1).reshape(-1, dims)
    cell = 0.005**dims

    def covered(points: np.ndarray, accuracy: np.ndarray) -> np.ndarray:  # the front's staircase over the grid
        below = np.all(points[None, :, :] <= grid[:, None, :], axis=2)
        return np.where(below, accuracy[None, :], 0.0).max(axis=1, initial=0.0)

    base = covered(front_counts, front_accuracy)
    inside = np.all(counts[0] <= grid, axis=1)
    brute = np.mean([cell * np.sum(np.where(inside, np.maximum(a - base, 0.0), 0.0)) for a in sampled])
    got = expected_improvement(counts, mean, std, front_counts, front_accuracy)[0]
    assert got == pytest.approx(brute, rel=0.05)


def fake_train(candidate, data, seed=0, on_epoch=None, rungs=(), on_rung=None, **_):
    """Accuracy growing with log params and epochs, plus a fixed per-network offset; seconds growing with
    FLOPs; stopped at a rung when the schedule says so."""
    params, flops = count(candidate.model).trainable, count(candidate.model).macs
    offset = int(hashlib.sha256(candidate_key(candidate).encode()).hexdigest()[:6], 16) / 16**6
    final = min(0.99, 0.4 + 0.1 * math.log10(params) + 0.05 * offset)
    epochs, done, stopped = candidate.training.epochs, 0, False
    for epoch in range(1, epochs + 1):
        done, accuracy = epoch, final - 0.02 * (epochs - epoch)
        stopped = on_rung is not None and epoch in rungs and not on_rung(epoch, accuracy)
        on_epoch(epoch, accuracy)
        if stopped:
            break
    costs = {"build": 0.1, "compile": 0.1, "first_step": 0.3, "fixed": 0.5, "train": [flops / 1e6] * done,
             "evaluate": [0.1] * done}  # fmt: skip
    return TrainResult(final - 0.02 * (epochs - done), 0.1, done, 1.0, "cpu", stopped=stopped, costs=costs)


def search(seed: int, trials: int = 10, edit: dict | None = None, **sampler: object) -> optuna.Study:
    raw = {**yaml.safe_load(SPACE), **(edit or {})}
    raw["sampler"].update(sampler)
    space = space_from_dict(raw)
    return run_search(space, trials=trials, storage=optuna.storages.InMemoryStorage(), train=fake_train, seed=seed)


def test_a_seed_gives_the_same_search_and_no_point_breaks_a_constraint():
    first, again, other = search(1), search(1), search(2)
    points = [t.params for t in first.trials]
    assert points == [t.params for t in again.trials]
    assert points != [t.params for t in other.trials]
    for study in (first, other):
        assert all("rejected" not in t.user_attrs for t in study.trials)  # counted before proposing: none rejected
        assert all(t.user_attrs["params"] <= 20000 for t in study.trials)
        keys = [t.user_attrs["key"] for t in study.trials]
        assert len(set(keys)) == len(keys)  # no network proposed twice


def test_the_first_trials_spread_along_the_params_axis():
    """After a random first point, each startup point is the farthest in log params from those before:
    the second is one end of the space's range of sizes."""
    study = search(3, trials=3)
    params = [t.user_attrs["params"] for t in study.trials]
    logs = np.log10(params)
    assert max(logs) - min(logs) > 0.6  # the space spans about a decade under the limit
    gaps = [min(abs(logs[i] - logs[j]) for j in range(i)) for i in range(1, 3)]
    assert all(g > 0.15 for g in gaps)


def test_after_the_start_it_proposes_what_adds_most_to_the_front_per_second():
    """With accuracy growing with params and seconds with FLOPs, the model-based proposals must not all
    pile up on one size: the trained sizes after the start cover most of the range."""
    study = search(4, trials=12)
    later = sorted(t.user_attrs["params"] for t in study.trials[3:])
    assert len(set(later)) >= 6


def test_a_sampler_that_needs_a_missing_package_is_refused_at_load(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    raw = {**yaml.safe_load(SPACE), "sampler": "gp"}
    with pytest.raises(ConfigError, match=r"sampler.name: the gp sampler needs torch: pip install 'jumpsearch\[gp\]'"):
        space_from_dict(raw, "g.yaml")


@pytest.mark.parametrize(
    "edit",
    [
        {"objectives": ["accuracy"]},
        {"objectives": ["accuracy", "params", "flops"]},
        {"schedule": {"name": "asha", "min_epochs": 1, "reduction_factor": 2}},  # stopped trials in the model
        {
            "model": {
                "groups": {"choice": [1, 2]},
                "stem_filters": [8, 8],
                "base_filters": {"choice": [8, 16, 24]},
                "jump_spacing": {"choice": [0, 1]},
            },
            "training": {"epochs": 2, "batch_size": 32, "learning_rate": {"choice": [0.001, 0.003, 0.01]}},
        },
        {"constraints": {}},  # no limit: a reference past the largest network
    ],
    ids=["accuracy-only", "three-objectives", "asha", "finite", "no-limit"],
)
def test_the_model_proposes_in_every_kind_of_space(edit):
    """Past the start, in a space of one, two or three objectives, under a schedule, whole (every point
    scored) or drawn, with or without a limit: each trial trains a network of its own."""
    study = search(5, trials=7, edit=edit, n_startup_trials=2)
    assert [t.state for t in study.trials].count(optuna.trial.TrialState.FAIL) == 0
    assert all("rejected" not in t.user_attrs and "duplicate_of" not in t.user_attrs for t in study.trials)
    assert len({t.user_attrs["key"] for t in study.trials}) == len(study.trials) == 7


def described_view(work: dict[int, float]) -> SpaceView:
    """Three networks of one choice ``w``: params 1,000·w, accuracy unknown, a full trial's work given."""
    distributions = {"w": optuna.distributions.CategoricalDistribution([1, 2, 3])}

    def describe(point):
        w = point["w"]
        return Described(f"net{w}", {"params": 1000 * w, "flops": 1000 * w}, work[w], {"w": w})

    return SpaceView(distributions, ("accuracy", "params"), {"params": 10_000, "flops": None}, describe)


def proposal(per_second: bool, work: dict[int, float]) -> int:
    """Trials of w = 1 (accuracy 0.5, 10 s for work 10) and w = 2 (0.6, 20 s): the sampler proposes w = 3
    if it adds most per trial; per second, a cheap w = 3 still; an expensive one loses to nothing."""
    view = described_view(work)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for w, accuracy, seconds in ((1, 0.5, 10.0), (2, 0.6, 20.0)):
        attrs = {"key": f"net{w}", "params": 1000 * w, "flops": 1000 * w, "accuracy": accuracy, "images": 1,
                 "costs": {"fixed": 0.0, "train": [seconds], "evaluate": [0.0]}}  # fmt: skip
        study.add_trial(optuna.trial.create_trial(values=[accuracy, 1000 * w], params={"w": w},
                                                  distributions=view.distributions, user_attrs=attrs))  # fmt: skip
    sampler = EHVISampler(seed=0, n_startup_trials=0, per_second=per_second, view=view)
    trial = study.ask()
    return sampler.sample_relative(study, study._storage.get_trial(trial._trial_id), view.distributions)["w"]


def test_only_unseen_networks_are_proposed_and_their_seconds_count_per_second():
    assert proposal(per_second=False, work={1: 10, 2: 20, 3: 30}) == 3  # the only network not trained
    assert proposal(per_second=True, work={1: 10, 2: 20, 3: 30}) == 3


def test_a_trial_s_seconds_are_predicted_from_the_recorded_ones():
    """A line through the trials' seconds against their work (FLOPs × images); with one trial, the work
    relative to the candidates' median, plus one."""
    from jumpsearch.ehvi import _seconds

    finished = []
    for work, seconds in ((10.0, 11.0), (20.0, 21.0)):
        costs = {"fixed": 1.0, "train": [seconds - 1.0], "evaluate": [0.0]}
        attrs = {"flops": work, "images": 1, "costs": costs}
        finished.append(optuna.trial.create_trial(values=[0.5, 1.0], user_attrs=attrs))
    assert _seconds(finished, [5.0, 40.0]).tolist() == pytest.approx([6.0, 41.0])  # a line: 1 s + 1 s per unit
    assert _seconds(finished[:1], [5.0, 15.0]).tolist() == pytest.approx([1.5, 2.5])  # too few: relative work


def test_a_proposal_reads_the_latest_trials_for_seconds_and_gains(monkeypatch):
    """What grows with the study is bounded: the seconds line and the gains to the end read the latest
    ``RECENT`` trials, and the improvement the front's (dominated trials change no cell of its staircase)."""
    import jumpsearch.ehvi as ehvi

    seen = {"seconds": [], "gains": [], "front": []}
    real = {name: getattr(ehvi, name) for name in ("_seconds", "_gains_to_the_end", "expected_improvement")}

    def seconds(trials, work):
        seen["seconds"].append([t.number for t in trials])
        return real["_seconds"](trials, work)

    def gains(complete):
        seen["gains"].append([t.number for t in complete])
        return real["_gains_to_the_end"](complete)

    def improvement(counts, mean, std, front_counts, front_accuracy):
        seen["front"].append(len(front_accuracy))
        return real["expected_improvement"](counts, mean, std, front_counts, front_accuracy)

    monkeypatch.setattr(ehvi, "RECENT", 4)
    monkeypatch.setattr(ehvi, "_seconds", seconds)
    monkeypatch.setattr(ehvi, "_gains_to_the_end", gains)
    monkeypatch.setattr(ehvi, "expected_improvement", improvement)
    study = search(5, trials=12)
    last = study.trials[-1].number
    assert max(map(len, seen["seconds"])) == 4 and max(map(len, seen["gains"])) == 4
    assert seen["seconds"][-1] == sorted(seen["seconds"][-1]) and seen["seconds"][-1][-1] == last - 1
    complete = [t for t in study.trials[:-1] if t.state == optuna.trial.TrialState.COMPLETE and counts_as_searched(t)]
    assert 0 < seen["front"][-1] < len(complete)  # one proposal at a time: no running trial joins the front


def test_a_point_the_model_code_cannot_count_is_left_out_and_said_once(monkeypatch, caplog):
    """A bug in a family's code must not silently turn every proposal random: its first error is a warning."""
    import jumpsearch.counting
    from jumpsearch.data import load_dataset
    from jumpsearch.ehvi import space_view

    space = space_from_dict(yaml.safe_load(SPACE), "counted.yaml")
    data = load_dataset(space.data)

    def broken(model):
        raise RuntimeError("a bug in the template")

    monkeypatch.setattr(jumpsearch.counting, "count", broken)
    view = space_view(space, data)
    points = [{"groups": 1, "blocks_per_group": 1, "base_filters": b, "growth_rate": 1.0, "jump_spacing": 0,
               "learning_rate": 0.003} for b in (8, 16)]  # fmt: skip
    with caplog.at_level("DEBUG", logger="jumpsearch.ehvi"):
        assert [view.describe(p) for p in points] == [None, None]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "cannot count" in r.getMessage()]
    assert [level for level, _ in said] == ["WARNING", "DEBUG"]
    assert "RuntimeError: a bug in the template" in said[0][1]
