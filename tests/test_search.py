"""End to end: a space file → trained candidates in an Optuna study → the front, through the CLI."""

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from jumpsearch import Candidate, count_params
from jumpsearch.cli import main
from jumpsearch.space import load_space
from jumpsearch.study import run_search
from jumpsearch.training import TrainingFailed


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
        assert trial.user_attrs["device"] == "CPU" and trial.user_attrs["flops"] > 0
    assert study_at(tmp_path).user_attrs["space"]["name"] == "tiny"

    assert main(["run", "--space", str(space), "--trials", "3", "-q"]) == 0  # resumes: one more trial
    again = study_at(tmp_path).get_trials(states=(TrialState.COMPLETE,))
    assert len(again) == 3
    assert [(t.number, t.values) for t in again[:2]] == [(t.number, t.values) for t in first]

    capsys.readouterr()
    assert main(["results", "--space", str(space)]) == 0
    table = capsys.readouterr().out
    front = study_at(tmp_path).best_trials
    assert table.splitlines()[0].split()[:4] == ["trial", "accuracy", "params", "flops"]
    assert len(table.splitlines()) == 1 + len(front)
    assert f"{front[0].values[0]:.4f}" in table


def test_points_over_the_budget_are_rejected_without_training(tmp_path, write_space):
    space = load_space(
        write_space(
            """\
            name: budget
            data: {dataset: digits}
            model: {groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {choice: [8, 64]}}
            training: {epochs: 1, steps_per_epoch: 1}
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

    def fake_train(candidate, data, seed, **kwargs):
        calls.append(candidate)
        raise AssertionError("not reached for a rejected point")

    with pytest.raises(Exception, match="search stopped: 5 trials in a row failed"):
        run_search(space, trials=1, storage=storage, progress=False, train=fake_train)
    trials = optuna.load_study(study_name="budget", storage=storage).get_trials()
    rejected = trials[0]
    assert rejected.state == TrialState.PRUNED
    assert "exceed max_params 5,000" in rejected.user_attrs["rejected"]
    assert rejected.user_attrs["params"] > 5000 and "train_seconds" not in rejected.user_attrs
    assert all(c.model.base_filters == 8 for c in calls)  # only points within budget reached training
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 5 and all("AssertionError" in t.user_attrs["fail_reason"] for t in failed)


def test_a_failing_trial_fails_alone_with_its_reason(tmp_path, write_space):
    space = load_space(write_space())
    storage = f"sqlite:///{tmp_path}/f.db"
    outcomes = iter([TrainingFailed("training loss became nan at epoch 1"), None, None])

    def flaky_train(candidate, data, seed, **kwargs):
        error = next(outcomes)
        if error:
            raise error
        from jumpsearch.training import TrainResult

        return TrainResult(0.5, 1.0, 1, 0.1, "CPU")

    study = run_search(space, trials=2, storage=storage, progress=False, train=flaky_train)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["fail_reason"] == "TrainingFailed: training loss became nan at epoch 1"


def test_ctrl_c_fails_the_running_trial_and_leaves_the_study_resumable(tmp_path, monkeypatch, write_space, capsys):
    import jumpsearch.training

    monkeypatch.chdir(tmp_path)
    space = write_space()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real = jumpsearch.training.train_and_evaluate
    monkeypatch.setattr(jumpsearch.training, "train_and_evaluate", interrupted)
    assert main(["run", "--space", str(space), "-q"]) == 130
    assert "Run the same command to resume" in capsys.readouterr().err
    assert [t.state for t in study_at(tmp_path).trials] == [TrialState.FAIL]

    monkeypatch.setattr(jumpsearch.training, "train_and_evaluate", real)
    assert main(["run", "--space", str(space), "-q", "--trials", "1"]) == 0
    assert [t.state for t in study_at(tmp_path).trials] == [TrialState.FAIL, TrialState.COMPLETE]


@pytest.mark.parametrize(
    ("space_text", "extra", "message"),
    [
        ("name: x\nmodel: {groups: [1, 2}\n", [], "space.yaml: malformed YAML"),
        ("name: x\nmodel: {grups: 2}\n", [], "space.yaml: model.grups: unknown key"),
        ("name: x\nmodel: {groups: {int: [1, 5]}}\n", [], "reaches 5 downsamplings, but a 8x8 input"),
        ("name: x\nsampler: annealing\n", [], "sampler.name: unknown sampler 'annealing'"),
        ("name: x\ndata: {dataset: npz, path: nowhere.npz}\n", [], "nowhere.npz: cannot read"),
        (
            "name: x\n",
            ["--storage", "postgresql://nobody@127.0.0.1:1/none"],
            "storage postgresql://nobody@127.0.0.1:1/none",
        ),
        ("name: x\n", ["--storage", "mongodb://127.0.0.1/x"], "storage mongodb://127.0.0.1/x: cannot open it"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, write_space, space_text, extra, message):
    space = write_space(space_text)
    result = subprocess.run(
        [sys.executable, "-m", "jumpsearch", "run", "--space", str(space), *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("jumpsearch: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "studies").exists()


def test_ablate_runs_each_family_and_writes_the_comparison(tmp_path, monkeypatch, write_space, capsys):
    monkeypatch.chdir(tmp_path)
    space = write_space(
        """\
        name: abl
        data: {dataset: digits}
        model:
          family: {choice: [jumpnet, sparsenet]}
          jumpnet: {groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: 8}
          sparsenet: {groups: 2, layers_per_block: 2, stem_filters: [8, 8], growth_rate: 4}
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
    fronts = pd.read_csv(tmp_path / "report" / "abl-ablation-fronts.csv")
    assert set(fronts["family"]) == {"jumpnet", "sparsenet"}
    html = (tmp_path / "report" / "abl-ablation.html").read_text()
    assert "plotly" in html and '"name":"sparsenet"' in html.replace(" ", "")
    names = optuna.get_all_study_names(f"sqlite:///{tmp_path}/studies/abl.db")
    assert sorted(names) == ["abl-jumpnet", "abl-sparsenet"]
