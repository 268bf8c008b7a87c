"""A study of thousands of trials: what a refresh, a duplicate check and a rung decision read (no training).

Timings belong in ``benchmarks/scale.py``; here, the number of trials each one reads from the storage and
looks into, which is what keeps their cost flat as the study grows."""

import random

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from conftest import ROOT
from jumpsearch.progress import Tally
from jumpsearch.records import counts_as_searched, front, record_configuration, summary
from jumpsearch.results import load_study, pareto_front
from jumpsearch.schedule import nondominated
from jumpsearch.space import load_space
from jumpsearch.study import RungRecords, _Rungs, _twin, create_study

TRIALS = 2000


def synthetic(number: int, rng: random.Random) -> optuna.trial.FrozenTrial:
    params, accuracy = rng.randint(2_000, 500_000), round(rng.uniform(0.6, 0.9), 4)
    attrs = {
        "key": f"net{number}",
        "params": params,
        "flops": 40 * params,
        "accuracy": accuracy,
        "epochs": 9,
        "curve": {str(e): accuracy for e in range(1, 10)},
        "rungs": {"1": accuracy - 0.1, "3": accuracy - 0.05},
    }
    return create_trial(state=TrialState.COMPLETE, values=[accuracy, params], params={"x": 0},
                        distributions={"x": CategoricalDistribution([0])}, user_attrs=attrs)  # fmt: skip


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A study of 2,000 finished trials in SQLite, and a counter of the trials each read returns."""
    url = f"sqlite:///{tmp_path_factory.mktemp('scale')}/large.db"
    space = load_space(ROOT / "search_spaces" / "digits.yaml")
    writer = create_study(space, url, "large")
    writer.set_user_attr("space", None)  # synthetic trials have no configuration to hold to a space
    rng = random.Random(0)
    writer.add_trials([synthetic(n, rng) for n in range(TRIALS)])
    return space, url


def test_reads_after_the_first_take_only_the_trials_that_changed(large, monkeypatch):
    space, url = large
    study = optuna.load_study(study_name="large", storage=url)
    backend = study._storage._backend
    returned: list[int] = []
    fetch = backend._get_trials
    monkeypatch.setattr(backend, "_get_trials", lambda *a, **k: returned.append(len(r := fetch(*a, **k))) or r)
    tally = Tally(study)
    assert len(tally.update(study.get_trials(deepcopy=False))) == TRIALS  # the first refresh reads them all
    assert tally.searched == TRIALS and len(tally.front) > 1
    assert {t.number for t in tally.front} == {t.number for t in front(study)}

    other = optuna.load_study(study_name="large", storage=url)  # another process adds one trained trial
    other.add_trial(synthetic(TRIALS, random.Random(1)))
    returned.clear()
    read = tally.update(study.get_trials(deepcopy=False))  # the supervisor's refresh
    assert [t.number for t in read] == [TRIALS] and returned == [1]
    assert tally.searched == TRIALS + 1
    assert {t.number for t in tally.front} == {t.number for t in front(study)}

    trial = study.ask()  # a worker's duplicate check, then its decision at a rung
    returned.clear()
    earlier = record_configuration(trial, {"params": 10_000, "flops": 400_000}, "net5")  # before it trains
    assert _twin(trial, "net5", earlier).number == 5
    assert not returned  # one query of the records with the same key, no read of the study's trials
    records = RungRecords()  # a worker's, shared by its trials
    rungs = _Rungs(trial, "absent", space, {"params": 10_000, "flops": 400_000}, records=records)
    rungs(1, 0.7)
    assert max(returned) <= 1  # only the running trial, each time: the finished ones are cached
    study.tell(trial, state=TrialState.FAIL)

    following = study.ask()  # the worker's next trial, at the same rung: only unfinished trials looked into
    real = optuna.trial.FrozenTrial.user_attrs
    looked: list[int] = []
    counting = property(lambda t: looked.append(t.number) or real.fget(t), real.fset)
    monkeypatch.setattr(optuna.trial.FrozenTrial, "user_attrs", counting)
    warm = records.others(following, "absent", "1", space.objectives)
    assert looked == [TRIALS + 1]  # only the trial that finished since (the new one is itself)
    monkeypatch.setattr(optuna.trial.FrozenTrial, "user_attrs", real)
    cold = RungRecords().others(following, "absent", "1", space.objectives)
    assert sorted(warm) == sorted(cold) and len(cold) == TRIALS + 1  # one record per key: "net5" twice


def test_results_in_a_fresh_process_read_values_and_load_only_the_front(large, monkeypatch):
    _, url = large
    everything = optuna.load_study(study_name="large", storage=url).get_trials(deepcopy=False)
    complete = [t for t in everything if t.state == TrialState.COMPLETE]
    keep = nondominated(np.array([[-t.values[0], t.values[1]] for t in complete]))
    expected = {t.number for t, kept in zip(complete, keep, strict=True) if kept}

    study = load_study(url, "large")  # what jumpsearch results opens
    backend = study._storage._backend
    bulk, single = [], []
    fetch, one = backend._get_trials, backend.get_trial
    monkeypatch.setattr(backend, "_get_trials", lambda *a, **k: bulk.append(len(r := fetch(*a, **k))) or r)
    monkeypatch.setattr(backend, "get_trial", lambda trial_id: single.append(trial_id) or one(trial_id))
    table = pareto_front(study)
    line = summary(study)
    assert set(table["trial"]) == expected and 1 < len(expected) < 50
    assert bulk == [] and len(single) == len(expected)  # no trial but the front's was loaded
    epochs = sum(t.user_attrs.get("epochs", 0) for t in everything)
    assert line.startswith(f"{sum(map(counts_as_searched, everything))} trained trials; {epochs:,} epochs")


def test_the_report_draws_thousands_of_curves_as_a_few_traces_and_samples_the_parameter_plots(large, monkeypatch):
    from jumpsearch import report

    _, url = large
    study = load_study(url, "large")
    trained = sum(t.state == TrialState.COMPLETE for t in study.trials)  # TRIALS, and more after the tests above
    on_front = {t.number for t in front(study)}
    figure = report.curves_figure(study)
    assert len(figure.data) == 1 + len(on_front)  # every trial trained to the end: one grey trace, then the front's
    grey = figure.data[0]
    assert grey.name == "trained" and list(grey.x).count(None) == trained - len(on_front)
    assert sum(x is not None for x in grey.x) == 9 * (trained - len(on_front))  # nine epochs each

    monkeypatch.setattr(report, "SAMPLED_TRIALS", 500)
    sample, note = report._sample(study)
    again, _ = report._sample(study)
    assert len(sample.trials) == 500 and note == f" (500 of the {trained:,} trials trained to the end, drawn at random)"
    drawn = [(t.values, t.params) for t in sample.trials]
    assert drawn == [(t.values, t.params) for t in again.trials]  # the same draw every time
    held = [(t.values, t.params) for t in study.trials]
    assert all(d in held for d in drawn) and drawn != held[:500]  # real trials, not the first ones
    assert not any(t.user_attrs for t in sample.trials)  # what the plots read, not all that trials record
    monkeypatch.setattr(report, "SAMPLED_TRIALS", trained)
    assert len(report._sample(study)[0].trials) == trained and report._sample(study)[1] == ""
