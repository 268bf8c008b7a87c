"""The peers on the tabulated benchmark: Syne Tune's MOASHA and multi-objective regularized evolution run by
Syne Tune's own simulator against a hand-made table."""

import json
import sys
import types

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from jumpsearch.counting import candidate_key, count
from jumpsearch.space import space_from_dict

pytest.importorskip(
    "syne_tune.blackbox_repository.simulated_tabular_backend",
    reason="the peers need the bench extra (syne-tune, huggingface_hub): pip install -e '.[bench]'",
)
sys.path.insert(0, str(ROOT / "benchmarks"))
import peers  # noqa: E402
import tabular  # noqa: E402

TWELVE = """
name: twelve
data: {dataset: digits}
model: {groups: 1, blocks_per_group: {choice: [1, 2]}, stem_filters: [8, 8], base_filters: {choice: [8, 16, 32]},
        jump_spacing: 0}
training: {learning_rate: {choice: [0.01, 0.1]}, epochs: 9, steps_per_epoch: 2, batch_size: 32}
sampler: random
constraints: {max_params: 60000}
"""
SHAPE = (8, 8, 1)
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.set_index")  # Syne Tune's own
DELAYS = 0.05  # Syne Tune's SimulatorConfig default, for each of start, result, stop, completion


@pytest.fixture
def twelve(tmp_path, monkeypatch):
    """A hand-made table of 12 networks, 9 epochs each: network i has fixed seconds 1 + i % 3, 1 + i % 4
    seconds per epoch and a final accuracy rising with i; its curve climbs linearly to it. Syne Tune's
    clock charges no real seconds here (its time keeper reads a stopped clock), so simulated times are exact."""
    from syne_tune.backend.simulator_backend import time_keeper

    monkeypatch.setattr(time_keeper, "time", types.SimpleNamespace(time=lambda: 0.0))
    space = space_from_dict(yaml.safe_load(TWELVE))
    rows = []
    for i, (blocks, width, rate) in enumerate((b, w, r) for b in (1, 2) for w in (8, 16, 32) for r in (0.01, 0.1)):
        candidate = space._at({"blocks_per_group": blocks, "base_filters": width, "learning_rate": rate}, SHAPE, 10)
        final = 0.5 + 0.04 * i
        rows.append({"key": candidate_key(candidate), "run": 0, "params": count(candidate.model).trainable, "flops": 0,
                     "val_images": 360, "fixed_seconds": 1 + i % 3, "epoch_seconds": json.dumps([1 + i % 4] * 9),
                     "curve": json.dumps([round(final * e / 9, 4) for e in range(1, 10)]), "config": "{}"})  # fmt: skip
    path = tmp_path / "twelve.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return space, tabular.Table.read(path)


def table_seconds(table, event):
    run = table.runs[event.key][0]
    return run.fixed_seconds + sum(run.epoch_seconds[: event.epochs])


def test_moasha_with_one_worker_stops_only_at_its_rungs_and_keeps_the_table_s_time(twelve):
    space, table = twelve
    horizon, poll = 400.0, 0.5
    events = peers.simulate_syne_tune("moasha", space, table, workers=1, seed=0, horizon=horizon, input_shape=SHAPE,
                                      num_classes=10, poll=poll)  # fmt: skip
    assert len(events) > 20
    assert all(e.key in table.runs for e in events)
    params = dict(zip(table.frame["key"], table.frame["params"], strict=True))
    assert all(e.params == params[e.key] for e in events)
    *ended, last = events  # the last may be cut at the horizon: its next epoch would end after it
    assert {e.epochs for e in ended} <= {1, 3, 9} and {1, 3} <= {e.epochs for e in ended}
    assert last.epochs in (1, 3, 9) or last.seconds + table.runs[last.key][0].epoch_seconds[last.epochs] > horizon
    assert all(e.stopped == (e.epochs < 9) for e in events)
    assert all(e.accuracy == table.runs[e.key][0].curve[e.epochs - 1] for e in events)
    # one worker: each trial starts when the one before it has been seen to end; its last result comes
    # its table seconds later, plus Syne Tune's delays (start, result) and, between two trials, the
    # previous trial's stop and completion delays and up to one poll of the tuner
    assert events[0].seconds == pytest.approx(table_seconds(table, events[0]) + 2 * DELAYS, abs=1e-6)
    for before, after in zip(events, events[1:], strict=False):
        overhead = after.seconds - before.seconds - table_seconds(table, after)
        assert 4 * DELAYS <= overhead <= 4 * DELAYS + poll + 0.01
    assert max(e.seconds for e in events) <= horizon
    full = max(r.fixed_seconds + sum(r.epoch_seconds) for runs in table.runs.values() for r in runs)
    assert last.seconds > horizon - full - 4 * DELAYS - poll  # the search went on up to the horizon


def test_regularized_evolution_trains_every_trial_to_the_full_budget(twelve):
    space, table = twelve
    events = peers.simulate_syne_tune("morea", space, table, workers=2, seed=1, horizon=300, input_shape=SHAPE,
                                      num_classes=10)  # fmt: skip
    assert len(events) > 5 and all(e.key in table.runs for e in events) and max(e.seconds for e in events) <= 300
    full, cut = [e for e in events if e.epochs == 9], [e for e in events if e.epochs < 9]
    assert len(full) > 5 and not any(e.stopped for e in full)
    # a trial ends early only when the horizon cuts it: its next epoch would have ended after it
    assert len(cut) <= 2 and all(e.stopped for e in cut)
    assert all(e.seconds + table.runs[e.key][0].epoch_seconds[e.epochs] > 300 for e in cut)


def test_a_table_that_lacks_a_network_of_the_space_is_refused(twelve):
    space, table = twelve
    partial = tabular.Table(table.frame.iloc[1:])
    with pytest.raises(KeyError, match=r"networks of the space not in the table: 1 \(first: "):
        peers.simulate_syne_tune("moasha", space, partial, workers=1, seed=0, horizon=10, input_shape=SHAPE,
                                 num_classes=10)  # fmt: skip


def test_the_ranked_priority_lets_a_newcomer_that_dominates_every_trial_go_on():
    """Syne Tune's rung reads one priority per trial; the ranked sort gives it that (see peers.py)."""
    from syne_tune.optimizer.schedulers.asha import Bracket

    bracket = Bracket(1, 9, 3, 0, peers._ranked_priority())
    for trial, value in enumerate([0.5, 0.6, 0.7]):
        bracket.on_result(trial, 1, {"error": value, "size": value})
    assert bracket.on_result(3, 1, {"error": 0.1, "size": 0.1}) == "CONTINUE"
    assert bracket.on_result(4, 1, {"error": 0.9, "size": 0.9}) == "STOP"
