"""Trusting a front: confirmation runs, rank correlations, noise, repeats, and Fashion-MNIST's files."""

import gzip
import math

import numpy as np
import optuna
import pytest

from jumpsearch import JumpsearchError, best_configs, confirm, write_report
from jumpsearch.cli import main
from jumpsearch.config import DataConfig
from jumpsearch.confirm import RESEED, choose, kendall_tau, spearman_rho, stored_confirmation
from jumpsearch.data import FASHION_MNIST_FILES, load_dataset, read_idx
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
