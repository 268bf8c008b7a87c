"""End to end: a space file → trained candidates in an Optuna study → the front, through the CLI."""

import logging

import optuna
import pytest
from optuna.trial import TrialState

from jumpsearch import Candidate, JumpsearchError, count_params
from jumpsearch.cli import main
from jumpsearch.records import record_configuration, searched
from jumpsearch.samplers import make_sampler
from jumpsearch.space import load_space
from jumpsearch.study import run_search
from jumpsearch.training import TrainingFailed, TrainResult


def study_at(tmp_path, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/studies/{name}.db")


def test_run_records_trials_resumes_and_prints_the_front(tmp_path, monkeypatch, write_space, capsys):
    monkeypatch.chdir(tmp_path)
    space = write_space()
    assert main(["run", "--space", str(space), "-q"]) == 0
    first = study_at(tmp_path).get_trials(states=(TrialState.COMPLETE,))
    assert len(first) == 2
    for trial in first:
        accuracy, params = trial.values
        assert 0.0 <= accuracy <= 1.0
        candidate = Candidate.from_dict(trial.user_attrs["config"])
        assert params == trial.user_attrs["params"] == count_params(candidate.model)
        assert candidate.model.input_shape == (8, 8, 1) and candidate.training.epochs == 1
        assert trial.user_attrs["epochs"] == 1 and trial.user_attrs["train_seconds"] > 0
        assert trial.user_attrs["device"].split(":")[0] in ("CPU", "GPU") and trial.user_attrs["flops"] > 0
    assert study_at(tmp_path).user_attrs["space"]["name"] == "tiny"

    assert main(["run", "--space", str(space), "--trials", "3", "-q"]) == 0  # resumes: one more trial
    again = study_at(tmp_path).get_trials(states=(TrialState.COMPLETE,))
    assert len(again) == 3
    assert [(t.number, t.values) for t in again[:2]] == [(t.number, t.values) for t in first]
    assert len({t.user_attrs["key"] for t in again}) == 3  # the resumed run trained a new configuration

    capsys.readouterr()
    assert main(["results", "--space", str(space)]) == 0
    table = capsys.readouterr().out
    front = study_at(tmp_path).best_trials
    assert table.splitlines()[0].split()[:5] == ["trial", "accuracy", "se", "params", "flops"]
    assert len(table.splitlines()) == 1 + len(front)
    assert f"{front[0].values[0]:.4f}" in table


def fixed_result(accuracy=0.5):
    def train(candidate, data, seed, on_epoch=None):
        if on_epoch is not None:
            on_epoch(candidate.training.epochs)
        return TrainResult(accuracy, 1.0, candidate.training.epochs, 0.1, "CPU")

    return train


def test_points_over_the_budget_are_rejected_without_training(tmp_path, write_space):
    space = load_space(
        write_space(
            """\
            name: budget
            data: {dataset: digits}
            model: {groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {choice: [8, 64]}}
            training: {epochs: 1, steps_per_epoch: 1, learning_rate: {float: [1e-3, 1e-2]}}
            constraints: {max_params: 5000}
            sampler: random
            """
        )
    )
    storage = f"sqlite:///{tmp_path}/budget.db"
    optuna.create_study(storage=storage, study_name="budget", directions=space.directions).enqueue_trial(
        {"base_filters": 64}
    )
    calls = []

    def failing_train(candidate, data, seed, on_epoch=None):
        calls.append(candidate)
        raise RuntimeError("not this time")

    with pytest.raises(JumpsearchError, match="search stopped: 5 trials in a row failed"):
        run_search(space, trials=1, storage=storage, train=failing_train)
    trials = optuna.load_study(study_name="budget", storage=storage).get_trials()
    rejected = trials[0]
    assert rejected.state == TrialState.PRUNED
    assert "exceed max_params 5,000" in rejected.user_attrs["rejected"]
    assert rejected.user_attrs["params"] > 5000 and "train_seconds" not in rejected.user_attrs
    assert rejected.constraints["jumpsearch"] > 0  # the sampler is told the point is infeasible
    assert rejected.params["base_filters"] == 64 and "learning_rate" in rejected.params  # stored with the rejection
    assert all(c.model.base_filters == 8 for c in calls)  # only points within budget reached training
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 5 and all(t.user_attrs["fail_reason"] == "RuntimeError: not this time" for t in failed)
    assert all(t.params["base_filters"] == 8 and "learning_rate" in t.params for t in failed)
    assert all("Traceback" in t.user_attrs["traceback"] for t in failed)


def test_a_failing_trial_fails_alone_with_its_reason(tmp_path, write_space):
    space = load_space(write_space())
    storage = f"sqlite:///{tmp_path}/f.db"
    outcomes = iter([TrainingFailed("training loss became nan at epoch 1"), None, None])

    def flaky_train(candidate, data, seed, on_epoch=None):
        error = next(outcomes)
        if error:
            raise error
        return TrainResult(0.5, 1.0, 1, 0.1, "CPU")

    study = run_search(space, trials=2, storage=storage, train=flaky_train)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["fail_reason"] == "TrainingFailed: training loss became nan at epoch 1"


def test_a_configuration_sampled_again_reuses_its_result_without_training(tmp_path, write_space, caplog):
    """growth_rate 1.0 and 1.01 round to the same widths: one network, trained once."""
    space = load_space(
        write_space(
            """\
            name: same
            model: {groups: 2, blocks_per_group: 1, stem_filters: [8, 8], base_filters: 8,
                    growth_rate: {choice: [1.0, 1.01]}, jump_width: 1.0}
            training: {epochs: 1, steps_per_epoch: 1}
            sampler: random
            """
        )
    )
    calls = []

    def train(candidate, data, seed, on_epoch=None):
        calls.append(candidate)
        return TrainResult(0.75, 1.0, 1, 0.1, "CPU")

    caplog.set_level(logging.DEBUG, logger="jumpsearch")  # a duplicate is a debug line; the summary counts them
    storage = f"sqlite:///{tmp_path}/same.db"
    with pytest.raises(JumpsearchError, match="the space looks exhausted at 1 configurations"):
        run_search(space, trials=3, storage=storage, train=train)
    study = optuna.load_study(study_name="same", storage=storage)
    assert len(calls) == 1 and searched(study) == 1
    duplicates = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert len(duplicates) == 20  # then the space is called exhausted and the search stops
    assert all(t.state == TrialState.COMPLETE and t.values == study.trials[0].values for t in duplicates)
    assert all(t.user_attrs["duplicate_of"] == 0 and t.user_attrs["train_seconds"] == 0 for t in duplicates)
    assert "trial 1 is trial 0 again (same network and recipe): not trained" in caplog.text


def test_of_two_trials_racing_on_one_configuration_the_first_to_record_it_trains(tmp_path):
    from jumpsearch.study import _twin

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/race.db", directions=["maximize", "minimize"])
    first, second = study.ask(), study.ask()
    # The higher number records first and sees no twin: it trains. The lower one records after it looked
    # (the interleaving in which a rule by numbers trained both) and defers to it.
    assert _twin(second, "same", record_configuration(second, {}, "same")) is None
    assert _twin(first, "same", record_configuration(first, {}, "same")).number == second.number
    study.tell(second, state=TrialState.FAIL)
    assert _twin(first, "same", [second._trial_id]) is None  # failed without a reason (a dead worker): trained again


def test_without_an_order_of_records_the_lower_number_trains(tmp_path):
    """A journal file: no transaction to order the records by, so the rule is by numbers."""
    from jumpsearch.study import _twin

    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(storage=journal, directions=["maximize", "minimize"])
    first, second = study.ask(), study.ask()
    assert record_configuration(second, {}, "same") is None and record_configuration(first, {}, "same") is None
    assert _twin(first, "same", None) is None
    assert _twin(second, "same", None).number == first.number


def test_samplers_continue_a_study_instead_of_replaying_it():
    """A resumed study (a new sampler, the same seed) draws what one long run would have drawn."""

    def params(study, sampler, n):
        for _ in range(n):
            trial = study.ask()
            trial.suggest_float("x", 0, 1)
            study.tell(trial, [trial.params["x"], 0.0])
        return [t.params["x"] for t in study.trials]

    directions = ["maximize", "minimize"]
    for name in ("random", "tpe", "nsga2"):
        one_run = params(optuna.create_study(directions=directions, sampler=make_sampler({"name": name}, 0)), None, 4)
        resumed = optuna.create_study(directions=directions, sampler=make_sampler({"name": name}, 0))
        params(resumed, None, 2)
        resumed.sampler = make_sampler({"name": name}, 0)  # a new process with the same seed
        assert params(resumed, None, 2) == one_run, name
        assert len(set(one_run)) == 4, name


def test_training_seeds_and_progress_reach_the_trainer(tmp_path, write_space):
    space = load_space(write_space())
    seen = []

    def train(candidate, data, seed, on_epoch=None):
        on_epoch(1)
        seen.append(seed)
        return TrainResult(0.5, 1.0, 1, 0.1, "CPU")

    study = run_search(space, trials=2, storage=f"sqlite:///{tmp_path}/s.db", seed=7, train=train)
    assert seen == [7 + t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert all(len(t.user_attrs["curve"]) == 1 for t in study.trials if t.state == TrialState.COMPLETE)


def test_the_search_keeps_long_lived_objects_out_of_each_trials_collection(tmp_path, write_space):
    """Each trial ends with a full collection; what the process held before the search (modules, the
    data set) is frozen out of it for the search, and given back to the collector when it returns."""
    import gc

    space = load_space(write_space())
    held = [space]  # made before the search; the collector tracks it
    collected = []

    def train(candidate, data, seed, on_epoch=None):
        collected.append(any(o is held for o in gc.get_objects()))  # the generations a collection walks
        return TrainResult(0.5, 1.0, 1, 0.1, "CPU")

    assert any(o is held for o in gc.get_objects())
    run_search(space, trials=2, storage=f"sqlite:///{tmp_path}/s.db", train=train)
    assert collected == [False, False]
    assert any(o is held for o in gc.get_objects()) and gc.get_freeze_count() == 0


def test_concurrent_searches_share_one_freeze_and_a_callers_own_is_kept():
    """Searches in threads (the tabulated benchmark runs several): the first one in freezes, the last one
    out unfreezes; a process that froze its objects itself keeps them frozen."""
    import gc

    from jumpsearch.study import long_lived_frozen

    def tracked(obj):
        return any(o is obj for o in gc.get_objects())

    held = [object()]
    first, second = long_lived_frozen(), long_lived_frozen()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not tracked(held)  # the second search still runs
    second.__exit__(None, None, None)
    assert tracked(held) and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        with long_lived_frozen():
            pass
        assert not tracked(held)  # the caller's freeze stands
    finally:
        gc.unfreeze()


def test_ablate_runs_each_family_and_writes_the_comparison(tmp_path, monkeypatch, write_space, capsys):
    monkeypatch.chdir(tmp_path)
    space = write_space(
        """\
        name: abl
        data: {dataset: digits}
        model:
          family: {choice: [jumpnet, sparsenet]}
          jumpnet: {groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {choice: [8, 16]}}
          sparsenet: {groups: 2, layers_per_block: 2, stem_filters: [8, 8], growth_rate: {choice: [4, 6]}}
        training: {epochs: 1, steps_per_epoch: 2, batch_size: 32}
        sampler: random
        trials: 1
        """
    )
    assert main(["ablate", "--space", str(space), "-q", "--budgets", "5k,1M", "--out", "report"]) == 0
    out = capsys.readouterr().out
    assert "acc@<=5,000" in out and "acc@<=1,000,000" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "report" / "abl-ablation.csv")
    assert list(table["family"]) == ["jumpnet", "sparsenet"] and list(table["trials"]) == [1, 1]
    assert all(0 < hv < 1 for hv in table["hypervolume"])
    fronts = pd.read_csv(tmp_path / "report" / "abl-ablation-fronts.csv")
    assert set(fronts["family"]) == {"jumpnet", "sparsenet"}
    html = (tmp_path / "report" / "abl-ablation.html").read_text()
    assert "plotly" in html and '"name":"sparsenet"' in html.replace(" ", "")
    assert "against trainable parameters" in html and "against FLOPs" in html  # both panels
    names = optuna.get_all_study_names(f"sqlite:///{tmp_path}/studies/abl.db")
    assert sorted(names) == ["abl-jumpnet", "abl-sparsenet"]
    # Every family's own metaparameters are columns of the fronts: which SparseNet, which JumpNet.
    assert {"layers_per_block", "compression", "bottleneck", "aggregation", "jump_spacing"} <= set(fronts.columns)
    sparse = fronts[fronts["family"] == "sparsenet"].iloc[0]
    assert sparse["aggregation"] == "exponential" and sparse["layers_per_block"] == "[2, 2]"
    # The same command again, and with a larger budget: each family's study resumes.
    assert main(["ablate", "--space", str(space), "-q", "--out", "report"]) == 0
    assert main(["ablate", "--space", str(space), "-q", "--trials", "2", "--out", "report"]) == 0
    table = pd.read_csv(tmp_path / "report" / "abl-ablation.csv")
    assert list(table["trials"]) == [2, 2]


def test_each_family_of_an_ablation_resumes_alone_and_old_studies_too(tmp_path, write_space):
    """Each family's study stores its own part of the space; a study made when it stored the whole space
    file (every family) resumes too, and a breaking edit of a family's part is still refused."""
    import dataclasses

    from jumpsearch.ablation import run_ablation

    text = """\
        name: old
        data: {dataset: digits}
        model:
          family: {choice: [resnet_v2, densenet_bc]}
          resnet_v2: {groups: 1, blocks_per_group: {int: [1, 2]}, stem_filters: [8, 8], base_filters: 8}
          densenet_bc: {groups: 1, layers_per_block: {int: [1, 3]}, stem_filters: [8, 8], growth_rate: 4}
        training: {epochs: 1, steps_per_epoch: 1, batch_size: 32}
        sampler: random
        """
    space = load_space(write_space(text))
    storage = f"sqlite:///{tmp_path}/old.db"
    for family in space.families:  # as ablate stored them before: the whole file in each family's study
        old = dataclasses.replace(space.for_family(family), raw=space.raw)
        run_search(old, trials=1, storage=storage, train=fixed_result())
    studies = run_ablation(space, trials=2, storage=storage, train=fixed_result())
    for family, study in studies.items():
        assert searched(study) == 2
        assert study.user_attrs["space"]["model"]["family"] == family  # its part alone, from now on
    alone = """\
        name: old
        data: {dataset: digits}
        model: {family: densenet_bc, groups: 1, layers_per_block: {int: [1, 3]}, stem_filters: [8, 8], growth_rate: 4}
        training: {epochs: 1, steps_per_epoch: 1, batch_size: 32}
        sampler: random
        """
    (densenet,) = run_ablation(load_space(write_space(alone, "alone.yaml")), trials=3, storage=storage,
                               train=fixed_result()).values()  # fmt: skip
    assert densenet.study_name == "old-densenet_bc" and searched(densenet) == 3
    assert searched(optuna.load_study(study_name="old-resnet_v2", storage=storage)) == 2
    broken = text.replace("layers_per_block: {int: [1, 3]}", "layers_per_block: {choice: [1, 3]}")
    with pytest.raises(JumpsearchError, match="incompatible with study 'old-densenet_bc'.*layers_per_block"):
        run_ablation(load_space(write_space(broken, "broken.yaml")), trials=2, storage=storage, train=fixed_result())


def test_a_study_from_a_space_file_without_a_name_is_still_compared_on_resume(tmp_path, write_space):
    """The stored file has no ``name:`` (the study is named after the file): resuming it with a changed
    choice is refused like any other, not waved through."""
    text = "\n".join(line for line in write_space().read_text().splitlines() if not line.startswith("name:"))
    storage = f"sqlite:///{tmp_path}/n.db"
    run_search(load_space(write_space(text, "plain.yaml")), trials=1, storage=storage, train=fixed_result())
    changed = load_space(write_space(text.replace("choice: [8, 16]", "choice: [8, 16, 24]"), "plain.yaml"))
    with pytest.raises(JumpsearchError, match="incompatible with study 'plain'.*base_filters choice"):
        run_search(changed, trials=2, storage=storage, train=fixed_result())


def test_the_ablations_largest_budget_holds_every_model():
    from jumpsearch.ablation import default_budgets

    study = optuna.create_study(directions=["maximize", "minimize"])
    for params in (1_234, 5_000, 32_450):  # 32,450 to two figures is 32,000: under the largest model
        study.add_trial(optuna.trial.create_trial(values=[0.5, params], user_attrs={"params": params}))
    budgets = default_budgets({"jumpnet": study})
    assert budgets == sorted(budgets) and len(budgets) == 4
    assert budgets[-1] == 33_000 and budgets[0] >= 1_234


def test_an_ablation_front_s_hypervolume_is_the_mean_best_accuracy_over_log_params():
    from jumpsearch.ablation import hypervolume

    # params 10 .. 1000 on a log scale: 10 -> 0, 100 -> 0.5, 1000 -> 1
    assert hypervolume([(10, 0.5), (100, 0.8)], 10, 1000) == pytest.approx(0.5 * 0.5 + 0.5 * 0.8)
    assert hypervolume([(100, 0.8), (10, 0.5), (50, 0.4)], 10, 1000) == pytest.approx(0.65)  # dominated: no area
    assert hypervolume([(100, 0.8)], 10, 1000) == pytest.approx(0.4)  # nothing below 100 params
    assert hypervolume([], 10, 1000) == 0.0
