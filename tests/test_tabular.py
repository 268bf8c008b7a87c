"""The tabulated benchmark: learning curves and costs in trials, exhaustive search, and the simulator."""

import json
import math
import sys

import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from conftest import ROOT
from jumpsearch.counting import candidate_key, count
from jumpsearch.errors import ConfigError, JumpsearchError
from jumpsearch.space import space_from_dict
from jumpsearch.study import run_search

sys.path.insert(0, str(ROOT / "benchmarks"))
import tabular  # noqa: E402

SIX = """
name: six
data: {dataset: digits}
model: {groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {choice: [8, 16, 32]}, jump_spacing: 0}
training: {learning_rate: {choice: [0.01, 0.1]}, epochs: 2, steps_per_epoch: 2, batch_size: 32}
sampler: bruteforce
constraints: {max_params: 20000}
"""
PARAMS = {8: 1602, 16: 4034, 32: 12994}  # trainable weights of each base width on 8x8 digits


def test_a_trial_records_its_learning_curve_and_where_its_seconds_went(tmp_path):
    raw = yaml.safe_load(SIX)
    raw["training"]["epochs"] = 3
    space = space_from_dict({**raw, "sampler": "random", "trials": 1})
    study = run_search(space, storage=f"sqlite:///{tmp_path}/c.db")
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    curve, costs = trial.user_attrs["curve"], trial.user_attrs["costs"]
    assert list(curve) == ["1", "2", "3"] and all(0 <= a <= 1 for a in curve.values())
    assert curve["3"] == pytest.approx(trial.values[0], abs=1e-6)  # the last epoch's score is the trial's
    assert len(costs["train"]) == len(costs["evaluate"]) == 3
    assert costs["fixed"] == pytest.approx(costs["build"] + costs["compile"] + costs["first_step"], abs=1e-3)
    assert all(s > 0 for s in [costs["build"], costs["first_step"], *costs["train"], *costs["evaluate"]])
    assert sum(costs["train"]) + costs["first_step"] <= trial.user_attrs["train_seconds"] + 0.05


def test_the_bruteforce_sampler_trains_each_configuration_once_with_two_workers(tmp_path):
    from jumpsearch.workers import run_workers

    path = tmp_path / "six.yaml"
    raw = yaml.safe_load(SIX)
    raw["training"]["epochs"] = 1
    path.write_text(yaml.safe_dump(raw))
    space = space_from_dict(raw, str(path))
    study = run_workers(space, workers=2, trials=20, storage=f"sqlite:///{tmp_path}/six.db")
    trained = [t for t in study.trials if "curve" in t.user_attrs]
    assert len(trained) == 6
    assert len({t.user_attrs["key"] for t in trained}) == 6
    assert len({t.user_attrs["worker"] for t in trained}) == 2  # both workers trained


def test_the_bruteforce_sampler_refuses_a_space_with_no_end_of_points():
    raw = yaml.safe_load(SIX)
    raw["training"]["learning_rate"] = {"float": [0.001, 0.1], "log": True}
    with pytest.raises(ConfigError, match=r"six: training.learning_rate: a float range without a step .* bruteforce"):
        space_from_dict(raw, "six")
    raw["training"]["learning_rate"] = {"float": [0.01, 0.1], "step": 0.03}
    assert space_from_dict(raw, "six").distributions()["learning_rate"].step == 0.03  # a stepped range has an end


def six_table(tmp_path):
    """A hand-made table: (base width, rate) → (final accuracy, fixed seconds, seconds per epoch)."""
    rows = {
        (8, 0.01): (0.70, 1, 1),  # ends at 3 s
        (8, 0.1): (0.60, 2, 1),  # 4 s
        (16, 0.01): (0.80, 1, 2),  # 5 s
        (16, 0.1): (0.85, 2, 3),  # 8 s
        (32, 0.01): (0.90, 2, 2),  # 6 s
        (32, 0.1): (0.75, 1, 3),  # 7 s
    }
    space = space_from_dict(yaml.safe_load(SIX))
    frame = []
    for (width, rate), (accuracy, fixed, epoch) in rows.items():
        candidate = space._at({"base_filters": width, "learning_rate": rate}, (8, 8, 1), 10)
        frame.append({"key": candidate_key(candidate), "run": 0, "params": PARAMS[width], "flops": 0,
                      "val_images": 360, "fixed_seconds": fixed, "epoch_seconds": json.dumps([epoch, epoch]),
                      "curve": json.dumps([accuracy / 2, accuracy]), "config": "{}"})  # fmt: skip
    path = tmp_path / "six.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    return space, tabular.Table.read(path)


def test_the_simulator_replays_a_hand_made_table_second_by_second(tmp_path):
    """Six workers start the six networks at 0 s; each ends at its fixed seconds plus two epochs.

    With x = scaled log params (0 at the smallest model, 1,602 weights; 1 at max_params, 20,000):
    a = x(4,034) = log(4034/1602)/log(20000/1602), b = x(12,994). The hypervolume at t is the area under
    the best accuracy reached left of each x, up to x = 1:
      t < 3: 0;  3 ≤ t < 5: 0.70 (A alone; B at 4 s is dominated);  5 ≤ t < 6: 0.70a + 0.80(1 - a);
      6 ≤ t < 8: 0.70a + 0.80(b - a) + 0.90(1 - b) (F at 7 s is dominated);  t ≥ 8: 0.70a + 0.85(b - a) + 0.90(1 - b).
    """
    space, table = six_table(tmp_path)
    for width, params in PARAMS.items():
        assert count(space._at({"base_filters": width, "learning_rate": 0.01}, (8, 8, 1), 10).model).trainable == params
    events = tabular.simulate(space, table, workers=6, seed=0, horizon=100, input_shape=(8, 8, 1), num_classes=10,
                              overhead=0.0)  # fmt: skip
    assert [e.seconds for e in events] == [3, 4, 5, 6, 7, 8]
    scale = tabular.params_scale(space, (8, 8, 1), 10)
    a = math.log10(4034 / 1602) / math.log10(20000 / 1602)
    b = math.log10(12994 / 1602) / math.log10(20000 / 1602)
    assert scale(4034) == pytest.approx(a) and scale(12994) == pytest.approx(b) and scale(1602) == 0
    expected = {
        0: 0, 2.9: 0, 3: 0.70, 4: 0.70, 5: 0.70 * a + 0.80 * (1 - a),
        6: 0.70 * a + 0.80 * (b - a) + 0.90 * (1 - b), 7: 0.70 * a + 0.80 * (b - a) + 0.90 * (1 - b),
        8: 0.70 * a + 0.85 * (b - a) + 0.90 * (1 - b), 9: 0.70 * a + 0.85 * (b - a) + 0.90 * (1 - b),
    }  # fmt: skip
    for t, hv in expected.items():
        assert tabular.hypervolume_at(events, scale, t) == pytest.approx(hv), t


def test_one_worker_runs_the_networks_back_to_back_and_stops_at_the_horizon(tmp_path):
    space, table = six_table(tmp_path)
    events = tabular.simulate(space, table, workers=1, seed=3, horizon=12, input_shape=(8, 8, 1), num_classes=10,
                              overhead=0.5)  # fmt: skip
    # each run ends 0.5 s (the loop's own work per trial) + its table time after the last one
    ends, clock = [], 0.0
    for e in events:
        duration = {0.70: 3, 0.60: 4, 0.80: 5, 0.85: 8, 0.90: 6, 0.75: 7}[e.accuracy]
        clock += 0.5 + duration
        ends.append(clock)
    assert [e.seconds for e in events] == pytest.approx(ends)
    assert ends[-2] < 12 <= ends[-1]  # the last run started before the horizon, none after it
    assert len({e.key for e in events}) == len(events)


def test_the_table_is_built_from_a_study_s_curves_and_costs(tmp_path):
    raw = yaml.safe_load(SIX)
    space = space_from_dict({**raw, "sampler": "random", "trials": 2})
    study = run_search(space, storage=f"sqlite:///{tmp_path}/t.db")
    frame = tabular.table_from_studies([study], 288)
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(frame) == len(trained) == 2
    row = frame.iloc[0]
    trial = next(t for t in trained if t.user_attrs["key"] == row["key"])
    assert json.loads(row["curve"]) == [trial.user_attrs["curve"]["1"], trial.user_attrs["curve"]["2"]]
    costs = trial.user_attrs["costs"]
    assert row["fixed_seconds"] == costs["fixed"]
    assert json.loads(row["epoch_seconds"]) == pytest.approx(
        [t + v for t, v in zip(costs["train"], costs["evaluate"], strict=True)]
    )
    table = tabular.Table(frame)
    assert table.run(row["key"], 0).curve == tuple(json.loads(row["curve"]))
    with pytest.raises(KeyError, match="not in the table"):
        table.run("nope", 0)


def test_runs_timed_on_a_slower_machine_are_rescaled_by_the_networks_trained_on_both():
    """Networks a and b ran before the change and again after, each at half the seconds: c, timed only
    before, is halved too; the factor stays in the table, so the seconds measured can be recovered."""
    import datetime

    import optuna

    def run(key: str, fixed: float, epoch: float, when: datetime.datetime) -> optuna.trial.FrozenTrial:
        costs = {"fixed": fixed, "train": [epoch, epoch], "evaluate": [0.0, 0.0]}
        attrs = {"key": key, "params": 1, "flops": 1, "epochs": 2, "curve": {"1": 0.5, "2": 0.6}, "costs": costs,
                 "config": {}}  # fmt: skip
        trial = optuna.trial.create_trial(values=[0.6, 1.0], user_attrs=attrs)
        trial.datetime_start = when
        return trial

    before, after = datetime.datetime(2026, 1, 1, 10), datetime.datetime(2026, 1, 1, 12)
    earlier = optuna.create_study(directions=["maximize", "minimize"])
    earlier.add_trials([run("a", 2.0, 4.0, before), run("b", 4.0, 8.0, before), run("c", 2.0, 4.0, before)])
    later = optuna.create_study(directions=["maximize", "minimize"])
    later.add_trials([run("a", 1.0, 2.0, after), run("b", 2.0, 4.0, after)])
    frame = tabular.table_from_studies([earlier, later], 100, rescale_before=datetime.datetime(2026, 1, 1, 11))
    c = frame[frame["key"] == "c"].iloc[0]
    assert c["seconds_scale"] == 0.5 and c["fixed_seconds"] == 1.0 and json.loads(c["epoch_seconds"]) == [2.0, 2.0]
    assert frame[frame["run"] == 1]["seconds_scale"].tolist() == [1.0, 1.0]  # the later runs as measured
    assert tabular.table_from_studies([earlier, later], 100)["seconds_scale"].tolist() == [1.0] * 5


def test_results_and_the_report_carry_the_curves(tmp_path):
    from jumpsearch.report import curves_figure
    from jumpsearch.results import trials_table

    raw = yaml.safe_load(SIX)
    schedule = {"name": "asha", "min_epochs": 1, "reduction_factor": 3}
    space = space_from_dict({**raw, "sampler": "random", "trials": 4, "schedule": schedule})
    study = run_search(space, storage=f"sqlite:///{tmp_path}/r.db")
    table = trials_table(study)
    for trial, curve in zip(study.trials, table["user_attrs_curve"], strict=True):
        if "curve" in trial.user_attrs:
            assert json.loads(curve) == trial.user_attrs["curve"]
    assert table["user_attrs_costs"].notna().sum() == sum("costs" in t.user_attrs for t in study.trials) > 0
    figure = curves_figure(study)
    lines = {d.name: d for d in figure.data}
    halted = [t for t in study.trials if "stopped_at" in t.user_attrs]
    assert halted  # two epochs, a rung at 1: of 4 trials, some stop
    assert "stopped early" in lines and lines["stopped early"].line.dash == "dot"
    assert list(lines["stopped early"].x) == [1, None] * len(halted)  # one line each, ending at its rung


def test_an_exhaustive_search_goes_through_its_duplicates_to_the_end(tmp_path):
    """Fifty points, two networks (jump_width does nothing without links): the other loops stop after
    twenty duplicates in a row, bruteforce draws every point once and ends without an error."""
    from jumpsearch.training import TrainResult

    raw = yaml.safe_load(SIX)
    raw["model"]["base_filters"] = {"choice": [8, 16]}
    raw["model"]["jump_width"] = {"choice": [round(0.2 + 0.02 * i, 2) for i in range(25)]}
    raw["training"]["learning_rate"] = 0.01
    space = space_from_dict({**raw, "trials": 100}, "six")

    def train(candidate, data, seed, **_):
        return TrainResult(0.5, 1.0, candidate.training.epochs, 0.01, "CPU")

    study = run_search(space, storage=f"sqlite:///{tmp_path}/x.db", train=train)
    assert len(study.trials) == 50
    assert sum("duplicate_of" not in t.user_attrs for t in study.trials) == 2
    with pytest.raises(JumpsearchError, match="looks exhausted"):
        run_search(space_from_dict({**raw, "trials": 100, "sampler": "random"}, "six"),
                   storage=f"sqlite:///{tmp_path}/y.db", train=train)  # fmt: skip
