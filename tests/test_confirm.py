"""Trusting a front: confirmation runs, rank correlations, noise, repeats, and Fashion-MNIST's files."""

import collections
import gzip
import json
import math
import re
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import test_workers

from jumpsearch import JumpsearchError, best_configs, confirm, write_report
from jumpsearch.cli import main
from jumpsearch.config import DataConfig
from jumpsearch.confirm import (
    RESEED,
    _with_run,
    budget_key,
    choose,
    kendall_tau,
    spearman_rho,
    stored_confirmation,
    stored_runs,
)
from jumpsearch.data import FASHION_MNIST_FILES, load_dataset, read_idx
from jumpsearch.recipe import Recipe
from jumpsearch.records import front
from jumpsearch.space import space_from_dict
from jumpsearch.study import run_search, standard_error
from jumpsearch.training import TrainResult


def write_idx(path, array, gzipped=True, cut=0):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - cut]
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    return path


def fashion_folder(folder, train=40, test=20, cut=0):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (train, 28, 28)),
        "y_train": np.arange(train) % 10,
        "x_test": rng.integers(0, 256, (test, 28, 28)),
        "y_test": np.arange(test) % 10,
    }
    for key, name in FASHION_MNIST_FILES.items():
        write_idx(folder / name, arrays[key], cut=cut if key == "x_train" else 0)
    return arrays


def test_idx_files_read_back_as_written(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", array, gzipped=False)), array)


def test_fashion_mnist_loads_from_a_folder_of_its_four_files(tmp_path):
    arrays = fashion_folder(tmp_path)
    data = load_dataset(DataConfig(dataset="fashion_mnist", path=str(tmp_path), validation_fraction=0.25))
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert len(data.x_train) == 30 and len(data.x_val) == 10 and len(data.x_test) == 20
    assert data.x_train.dtype == np.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert np.allclose(data.x_test[..., 0], arrays["x_test"] / 255)
    subset = load_dataset(DataConfig(dataset="fashion_mnist", path=str(tmp_path), subset=20, validation_fraction=0.5))
    assert len(subset.x_train) == 10 and len(subset.x_val) == 10


def test_a_truncated_or_missing_file_is_one_line_naming_it(tmp_path):
    fashion_folder(tmp_path, cut=100)
    with pytest.raises(JumpsearchError, match=r"train-images-idx3-ubyte.gz: the header announces \(40, 28, 28\)"):
        load_dataset(DataConfig(dataset="fashion_mnist", path=str(tmp_path)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        JumpsearchError, match="missing t10k-labels-idx1-ubyte.gz.*apt-get install dataset-fashion-mnist"
    ):
        load_dataset(DataConfig(dataset="fashion_mnist", path=str(tmp_path)))
    (tmp_path / "junk.gz").write_bytes(gzip.compress(b"PK\x03\x04 not idx"))
    with pytest.raises(JumpsearchError, match="junk.gz: not an IDX file"):
        read_idx(tmp_path / "junk.gz")


def test_rank_correlations_match_hand_computed_values():
    # one discordant pair of six: tau = (5 - 1) / 6; rank differences 0, 1, 1, 0: rho = 1 - 6 * 2 / (4 * 15)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2], [1, 2]) is None  # too few to mean anything


def test_standard_error_follows_the_validation_size():
    assert standard_error(0.9, 100) == pytest.approx(0.03)
    assert standard_error(0.5, 2500) == pytest.approx(0.01)
    assert standard_error(1.0, 288) == 0.0


SPACE = {
    "name": "conf",
    "data": {"dataset": "digits"},
    "model": {"groups": 1, "blocks_per_group": 1, "stem_filters": [8, 8], "base_filters": {"choice": [8, 16, 24]}},
    "training": {"epochs": 2, "steps_per_epoch": 1, "batch_size": 8, "learning_rate": {"float": [1e-3, 1e-1]}},
    "sampler": "random",
}


def scripted(calls, fail_after=None):
    """Accuracy from the learning rate, the epochs and the seed: longer runs score higher, seeds jitter."""

    def train(candidate, data, seed, on_epoch=None, **_):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt
        calls.append((candidate.training.learning_rate, candidate.training.epochs, seed))
        accuracy = 0.5 + 4 * candidate.training.learning_rate + 0.01 * candidate.training.epochs + 0.001 * (seed % 7)
        return TrainResult(min(accuracy, 1.0), 1.0, candidate.training.epochs, 0.01, "CPU")

    return train


@pytest.fixture
def study(tmp_path):
    return run_search(space_from_dict(SPACE), trials=8, storage=f"sqlite:///{tmp_path}/c.db", train=scripted([]))


def test_confirm_retrains_the_front_and_a_span_of_others_and_stores_it(study):
    chosen = choose(study, others=3)
    on_front = {t.number for t in front(study)}
    assert on_front <= {t.number for t in chosen} and len(chosen) == len(on_front) + 3
    calls = []
    result = confirm(study, seeds=2, train=scripted(calls))
    assert result.epochs == 6  # three times the search's 2
    assert len(calls) == len(chosen) * 3  # reseeded once at 2 epochs, 2 seeds at 6
    assert sorted(e for _, e, _ in calls).count(2) == len(chosen)
    assert list(result.table["trial"]) == sorted(t.number for t in chosen)
    # accuracy rises with the rate in every run: the ranking holds
    assert result.kendall_tau == pytest.approx(1.0) and result.spearman_rho == pytest.approx(1.0)
    assert set(result.survivors) | set(result.dropped) == on_front
    row = result.table.iloc[0]
    assert row["mean"] == pytest.approx((row["seed 0"] + row["seed 1"]) / 2)
    assert row["se"] == pytest.approx(standard_error(row["search"], 288))

    again = stored_confirmation(optuna.load_study(study_name="conf", storage=study._storage))
    assert again.table.fillna(-1).equals(result.table.fillna(-1))  # reprinted from the study alone
    assert confirm(study, seeds=2, train=scripted(more := [])).kendall_tau == result.kendall_tau and not more

    best = best_configs(study, by="confirmed")
    assert best[0].accuracy == max(result.table["mean"]) and {b.trial for b in best} <= set(result.table["trial"])


def test_the_report_plots_search_against_confirmed_accuracy(study, tmp_path):
    assert "Does the front hold up" not in write_report(study, tmp_path / "before.html").read_text()
    confirm(study, seeds=2, others=1, train=scripted([]))
    html = write_report(study, tmp_path / "after.html").read_text()
    assert "Does the front hold up? Search against confirmed accuracy" in html
    assert "2 seeds at 6 epochs (Kendall tau" in html and "confirmed validation accuracy" in html


def test_an_interrupted_confirmation_resumes_where_it_stopped(study):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        confirm(study, seeds=2, train=scripted(calls, fail_after=4))
    stored = study.user_attrs["confirmations"]["6"]
    assert sum(len(runs) for runs in stored.values()) == 4
    rest = []
    result = confirm(study, seeds=2, train=scripted(rest))
    assert len(rest) == 3 * len(result.table) - 4  # only the runs that had not finished
    assert result.table[[RESEED, "seed 0", "seed 1"]].notna().all().all()


def test_confirm_needs_a_trained_trial(tmp_path):
    empty = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/e.db", study_name="e", directions=["maximize", "minimize"]
    )
    with pytest.raises(JumpsearchError, match="no completed trial to confirm"):
        confirm(empty)
    with pytest.raises(JumpsearchError, match="nothing confirmed yet"):
        best_configs(empty, by="confirmed")


def test_repeats_train_several_seeds_and_rank_on_the_mean(tmp_path):
    space = space_from_dict({**SPACE, "training": {**SPACE["training"], "repeats": 3}})
    calls = []
    study = run_search(space, trials=2, storage=f"sqlite:///{tmp_path}/r.db", train=scripted(calls))
    assert len(calls) == 6 and len({seed for _, _, seed in calls}) == 6
    for trial in study.trials:
        accuracies = trial.user_attrs["accuracies"]
        assert len(accuracies) == 3 and trial.values[0] == pytest.approx(sum(accuracies) / 3)
        assert trial.user_attrs["epochs"] == 6
    with pytest.raises(Exception, match="training.repeats: a schedule judges one run"):
        space_from_dict({**SPACE, "training": {**SPACE["training"], "repeats": 2}, "schedule": "asha"})


def test_confirm_on_the_command_line_prints_and_reprints(tmp_path, monkeypatch, write_space, capsys):
    monkeypatch.chdir(tmp_path)
    space = write_space()
    assert main(["run", "--space", str(space), "--trials", "3", "-q"]) == 0
    capsys.readouterr()
    assert main(["confirm", "--space", str(space), "--epochs", "2", "--seeds", "2", "--others", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["trial", "front", "params", "search"]
    assert "Kendall tau" in out and "front trials still non-dominated" in out
    assert main(["results", "--space", str(space), "--by", "confirmed"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["trial", "accuracy", "se", "confirmed"]
    confirmed = [float(line.split()[3]) for line in table.splitlines()[1:]]
    assert confirmed == sorted(confirmed, reverse=True) and all(0 <= a <= 1 for a in confirmed)
    assert not math.isnan(confirmed[0])
    (tmp_path / "recipe.yaml").write_text("recipe: {label_smoothing: 0.3}\n")
    assert main(["confirm", "--space", str(space), "--epochs", "2", "--seeds", "1", "--others", "0",
                 "--recipe", "recipe.yaml"]) == 0  # fmt: skip
    # every switch shown, the defaults it trains with too (a cosine rate)
    assert (
        'at 2 epochs with the recipe {"augment":"auto","random_erasing":0.0,"label_smoothing":0.3,'
        '"schedule":"cosine",' in capsys.readouterr().out
    )
    assert main(["results", "--space", str(space), "--by", "confirmed"]) == 0
    # the plain confirmation confirmed more trials (--others 1): it still ranks, and says so
    assert "ranked by confirm's runs at 2 epochs (the search's training)" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("recipe: {label_smoothing: 2}\n")
    assert main(["confirm", "--space", str(space), "--recipe", "bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml: recipe.label_smoothing: must lie in [0, 1), got 2" in err


def test_a_recipe_s_confirmation_trains_the_longer_runs_with_it_and_the_reseeded_run_as_the_search_did(
    study, monkeypatch
):
    seen = []

    def search_train(candidate, data, seed=0, **_):
        seen.append(("search", candidate.training.epochs, None))
        return TrainResult(0.6, 1.0, candidate.training.epochs, 0.01, "CPU")

    def recipe_train(candidate, data, seed=0, *, recipe):
        seen.append(("recipe", candidate.training.epochs, recipe))
        return TrainResult(0.7, 1.0, candidate.training.epochs, 0.01, "CPU")

    monkeypatch.setattr("jumpsearch.training.train_and_evaluate", search_train)
    monkeypatch.setattr("jumpsearch.final.validate_with_recipe", recipe_train)
    recipe = Recipe(label_smoothing=0.1)
    result = confirm(study, epochs=4, seeds=2, others=1, recipe=recipe)
    assert sorted(seen, key=str) == sorted([("search", 2, None)] * len(result.table) +
                                           [("recipe", 4, recipe)] * 2 * len(result.table), key=str)  # fmt: skip
    assert set(result.table["mean"]) == {0.7} and set(result.table[RESEED]) == {0.6}


def test_confirm_with_a_recipe_keeps_its_runs_apart_and_is_preferred_at_equal_epochs(study):
    plain = confirm(study, epochs=4, seeds=1, others=1, train=scripted(calls := []))
    recipe = Recipe(label_smoothing=0.1, ema_momentum=0.99)
    with_recipe = confirm(study, epochs=4, seeds=1, others=1, recipe=recipe, train=scripted(more := []))
    # the longer runs are new; each trial's run at the search's budget is the same, and reused
    assert sorted(more) == sorted(c for c in calls if c[1] == 4) and len(more) < len(calls)
    assert with_recipe.table[RESEED].equals(plain.table[RESEED]) and with_recipe.seed_tau == plain.seed_tau
    assert with_recipe.recipe == recipe and plain.recipe is None
    stored = study.user_attrs["confirmations"]
    assert set(stored) == {"4", budget_key(4, recipe)} and stored[budget_key(4, recipe)]
    assert Recipe.from_dict(json.loads(budget_key(4, recipe).split(" ", 1)[1])) == recipe
    again = stored_confirmation(optuna.load_study(study_name="conf", storage=study._storage))
    assert again.recipe == recipe and "with the recipe" in again.summary()
    assert confirm(study, epochs=4, seeds=1, others=1, recipe=recipe, train=scripted(none := [])) and not none
    with pytest.raises(JumpsearchError, match="recipe.warmup_epochs: 4 leaves nothing of epochs=4"):
        confirm(study, epochs=4, recipe=Recipe(warmup_epochs=4), train=scripted([]))


postgres_url = test_workers.postgres_url  # a fixture: a fresh PostgreSQL database


@pytest.fixture(autouse=True)
def quick_settle(monkeypatch):
    """One process here: no other writer to wait for between writing a study attribute and reading it."""
    monkeypatch.setattr("jumpsearch.records.SETTLE_SECONDS", 0.0)


def test_a_run_another_process_holds_is_left_to_it_and_a_lapsed_claim_is_taken_over(study, monkeypatch):
    chosen = choose(study, others=0)
    first = chosen[0].number
    other = {"by": "elsewhere:1", "until": time.time() + 600}
    study.set_user_attr("confirmation_claims", {f"6/{first}/0": other, f"6/{first}/1": {**other, "until": 0}})
    monkeypatch.setattr(sys.modules["jumpsearch.confirm"], "WAIT_SECONDS", 0.01)
    calls = []
    train = scripted(calls)

    def store_the_held_run_once_waiting(*args, **kwargs):  # the other process finishes its run meanwhile
        result = train(*args, **kwargs)
        if len(calls) == 3 * len(chosen) - 1:
            study.set_user_attr("confirmations", _with_run("6", first, "0", 0.5)(study.user_attrs["confirmations"]))
        return result

    result = confirm(study, seeds=2, others=0, train=store_the_held_run_once_waiting)
    assert len(calls) == 3 * len(chosen) - 1  # all but the run held by a live claim; the lapsed one retaken
    assert result.table.set_index("trial").loc[first, "seed 0"] == 0.5
    assert study.user_attrs["confirmation_claims"] == {f"6/{first}/0": other}  # its own claims released


def test_an_interrupted_confirmation_releases_its_claims(study):
    with pytest.raises(KeyboardInterrupt):
        confirm(study, seeds=2, train=scripted([], fail_after=2))
    assert study.user_attrs["confirmation_claims"] == {}
    assert sum(len(r) for r in study.user_attrs["confirmations"]["6"].values()) == 2


CONFIRM_SPACE = """\
name: {name}
data: {{dataset: digits}}
model: {{groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {{choice: [8, 16, 24]}}}}
training: {{epochs: 1, steps_per_epoch: 2, batch_size: 32, learning_rate: {{float: [1e-3, 1e-2]}}}}
sampler: random
"""


def jumpsearch(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jumpsearch", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("epochs", [("2", "2"), ("2", "3")])
def test_two_confirm_processes_on_one_postgresql_study_train_each_run_once(tmp_path, postgres_url, epochs):
    (tmp_path / "space.yaml").write_text(CONFIRM_SPACE.format(name="twice"))
    search = jumpsearch("run", "--space", "space.yaml", "--storage", postgres_url, "--trials", "3", "-q", cwd=tmp_path)
    assert search.wait(timeout=600) == 0, search.stderr.read()
    args = ["confirm", "--storage", postgres_url, "--seeds", "1", "--others", "1"]
    processes = [jumpsearch(*args, "--epochs", e, cwd=tmp_path) for e in epochs]
    trained = collections.Counter()
    for process, e in zip(processes, epochs, strict=True):
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        for line in stderr.splitlines():  # one line per run this process trained
            if match := re.match(r"jumpsearch: run \d+ of \d+: trial (\d+), (.*): validation", line):
                trained[(e, *match.groups())] += 1
    study = optuna.load_study(study_name="twice", storage=postgres_url)
    labelled = {e: stored_runs(study, e) for e in set(epochs)}  # the reseeded run is shared by both budgets
    for runs in labelled.values():
        assert sum(len(r) for r in runs.values()) == 2 * len(choose(study, others=1))  # every run stored
    longer = {(e, t, r) for e, runs in labelled.items() for t in runs for r in runs[t] if r != RESEED}
    assert {(e, t, r.removeprefix("seed ")) for (e, t, r) in trained if "another seed" not in r} == longer
    reseeded = [t for (_, t, r) in trained.elements() if "another seed" in r]
    assert sorted(reseeded) == sorted(set(reseeded)) == sorted({t for runs in labelled.values() for t in runs})
    assert set(trained.values()) == {1}  # none trained twice
    assert not study.user_attrs["confirmation_claims"]


def test_confirm_under_sigterm_is_one_line_143_and_keeps_its_runs(tmp_path, postgres_url):
    (tmp_path / "space.yaml").write_text(CONFIRM_SPACE.format(name="term"))
    search = jumpsearch("run", "--space", "space.yaml", "--storage", postgres_url, "--trials", "3", "-q", cwd=tmp_path)
    assert search.wait(timeout=600) == 0, search.stderr.read()
    process = jumpsearch("confirm", "--storage", postgres_url, "--epochs", "400", cwd=tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline:  # SIGTERM while the second run trains
        study = optuna.load_study(study_name="term", storage=postgres_url)
        if study.user_attrs.get("confirmations") and study.user_attrs.get("confirmation_claims"):
            break
        time.sleep(0.2)
    time.sleep(3.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr.splitlines()[-1] == (
        "jumpsearch: interrupted by SIGTERM; the runs that finished are stored in the study; "
        "run the same command to resume."
    )
    study = optuna.load_study(study_name="term", storage=postgres_url)
    assert sum(len(r) for r in study.user_attrs["confirmations"]["400"].values()) >= 1
    assert study.user_attrs["confirmation_claims"] == {}


def test_a_stored_confirmation_can_be_asked_for_by_its_budget(study):
    confirm(study, epochs=4, seeds=1, others=1, train=scripted([]))
    confirm(study, epochs=4, seeds=1, others=1, recipe=Recipe(label_smoothing=0.1), train=scripted([]))
    assert stored_confirmation(study).recipe == Recipe(label_smoothing=0.1)  # as complete: the recipe's
    assert stored_confirmation(study, budget_key(4)).recipe is None
    assert stored_confirmation(study, budget_key(5)) is None
    begun = _with_run(budget_key(8, Recipe(ema_momentum=0.9)), front(study)[0].number, "0", 0.99)
    study.set_user_attr("confirmations", begun(study.user_attrs["confirmations"]))  # one run of many, longer
    assert stored_confirmation(study).recipe == Recipe(label_smoothing=0.1)  # not replaced by a begun one
