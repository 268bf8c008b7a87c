"""Using a finished study: pick from the front, export, train fully, report, and optuna-dashboard."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from jumpsearch import (
    Candidate,
    best_configs,
    count_params,
    export_configs,
    load_configs,
    load_space,
    run_search,
    write_report,
)
from jumpsearch.cli import main
from jumpsearch.results import Best, exported_data, format_table, knee, pareto_front
from jumpsearch.training import TrainResult

SPACE = """\
name: picks
data: {dataset: digits}
model:
  groups: {int: [1, 2]}
  blocks_per_group: 1
  stem_filters: [8, 8]
  base_filters: {choice: [8, 16, 24]}
  jump_spacing: {choice: [0, 1]}
  jump_width: {float: [0.25, 1.0]}
training: {epochs: 1, steps_per_epoch: 2, batch_size: 32}
sampler: random
trials: 12
"""


def made_up_accuracy(candidate, data, seed, **kwargs):
    """Bigger is better, with diminishing returns: a front with a clear shape, without training."""
    params = count_params(candidate.model)
    return TrainResult(min(0.99, 0.5 + 0.1 * params**0.25 / 4), 0.1, 1, 0.01, "CPU")


@pytest.fixture(scope="module")
def study_url(tmp_path_factory):
    """Made once; the tests only read it (the dashboard test writes to its own copy)."""
    folder = tmp_path_factory.mktemp("picks")
    (folder / "space.yaml").write_text(SPACE)
    url = f"sqlite:///{folder}/picks.db"
    run_search(load_space(folder / "space.yaml"), storage=url, train=made_up_accuracy)
    return url


def test_best_configs_pick_like_people_do(study_url):
    front = best_configs(study_url)
    assert len(front) >= 2
    assert [b.accuracy for b in front] == sorted((b.accuracy for b in front), reverse=True)
    assert all(b.params == count_params(b.model) for b in front)
    budget = sorted(b.params for b in front)[1]
    under = best_configs(study_url, max_params=budget)
    assert under[0].params <= budget and all(b.params <= budget for b in under)
    assert under[0].accuracy == max(b.accuracy for b in front if b.params <= budget)
    assert len(best_configs(study_url, k=1)) == 1
    (knee_point,) = best_configs(study_url, pick_knee=True)
    assert knee_point == knee(sorted(front, key=lambda b: b.params))


def best(accuracy: float, params: int) -> Best:
    return Best(None, accuracy, params, 0, 0)  # type: ignore[arg-type]  (knee reads accuracy and params)


def test_the_knee_is_where_parameters_stop_buying_accuracy():
    """Accuracy against log10(params), both scaled to [0, 1]: the point farthest from the chord."""
    front = [best(0.50, 10), best(0.90, 100), best(0.92, 1_000), best(0.93, 10_000)]
    # Scaled: (0, 0), (1/3, 0.93), (2/3, 0.977), (1, 1); the chord is y = x; distances ∝ |y - x|.
    assert knee(front) is front[1]
    assert knee([best(0.5, 10), best(0.6, 100)]).accuracy == 0.6  # two points: the more accurate
    late = [best(0.50, 10), best(0.52, 100), best(0.55, 1_000), best(0.95, 10_000), best(0.96, 100_000)]
    # Scaled y: 0, 0.043, 0.109, 0.957, 1 against x: 0, 0.25, 0.5, 0.75, 1: the fourth is farthest above
    # the chord (0.207); the third is farther below it (0.391), where accuracy has not started to pay.
    assert knee(late) is late[3]


def test_export_round_trips_and_a_fresh_interpreter_builds_and_fits(study_url, tmp_path):
    front = best_configs(study_url, k=2)
    for name in ("best.yaml", "best.json"):
        path = export_configs(front, tmp_path / name, {"dataset": "digits"})
        assert load_configs(path) == [b.candidate for b in front] and exported_data(path).dataset == "digits"
    code = (
        "from jumpsearch import best_configs, compile_model, load_dataset, DataConfig\n"
        f"best = best_configs({study_url!r})\n"
        "model = compile_model(best[0].candidate)\n"
        "d = load_dataset(DataConfig())\n"
        "h = model.fit(d.x_train[:64], d.y_train[:64], epochs=1, verbose=0)\n"
        "print('fitted', model.count_params() > 0, len(h.history['loss']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fitted True 1" in result.stdout
    assert result.stderr == ""  # TensorFlow's start-up lines (oneDNN, CUDA stubs, cuInit) stay off the terminal


def test_cli_results_pick_and_export(study_url, tmp_path, capsys):
    assert main(["results", "--storage", study_url, "--max-params", "3k"]) == 0
    out = capsys.readouterr().out
    rows = out.splitlines()[1:]
    assert rows and all(int(row.split()[3].replace(",", "")) <= 3000 for row in rows)  # trial accuracy se params
    assert main(["results", "--storage", study_url, "--csv", str(tmp_path / "t.csv")]) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    study = optuna.load_study(study_name="picks", storage=study_url)
    assert len(table) == len(study.trials) and {"values_accuracy", "values_params", "user_attrs_config"} <= set(
        table.columns
    )
    assert main(["export", "--storage", study_url, "--knee", "--out", str(tmp_path / "k.yaml")]) == 0
    (candidate,) = load_configs(tmp_path / "k.yaml")
    assert isinstance(candidate, Candidate) and exported_data(tmp_path / "k.yaml").dataset == "digits"
    assert main(["results", "--storage", f"sqlite:///{tmp_path}/typo.db"]) == 2
    assert not (tmp_path / "typo.db").exists()


def test_train_reports_validation_and_test_and_resumes(study_url, tmp_path, capsys):
    path = export_configs(best_configs(study_url, k=1), tmp_path / "best.yaml", {"dataset": "digits"})
    from jumpsearch import train_final
    from jumpsearch.config import DataConfig
    from jumpsearch.data import load_dataset

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    (candidate,) = load_configs(path)
    data = load_dataset(DataConfig())
    with pytest.raises(KeyboardInterrupt):
        train_final(candidate, data, tmp_path / "run", epochs=4, verbose=0, callbacks=[Interrupt()])
    resumed = train_final(candidate, data, tmp_path / "run", epochs=4, verbose=0)
    assert resumed.epochs == 2  # epochs 3 and 4: the first two came back from the backup

    capsys.readouterr()
    assert main(["train", str(path), "--epochs", "1", "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "test accuracy 0." in out
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert 0 <= metrics["val_accuracy"] <= 1 and 0 <= metrics["test_accuracy"] <= 1
    model = keras.models.load_model(tmp_path / "cli" / "model.keras")
    assert model.predict(data.x_test[:4], verbose=0).shape == (4, 10)


def test_report_is_one_self_contained_page(study_url, tmp_path):
    study = optuna.load_study(study_name="picks", storage=study_url)
    html = write_report(study, tmp_path / "r.html").read_text()
    for title in ("Pareto front: accuracy against params", "Accuracy against FLOPs", "Optimization history",
                  "Hyperparameter importances for accuracy", "Hyperparameter importances for params",
                  "Parallel coordinates"):  # fmt: skip
        assert title in html
    assert "<script src=" not in html  # plotly is inlined: the page opens offline
    assert html.count("Plotly.newPlot") >= 5
    assert f"trial {study.best_trials[0].number}" in html


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_dashboard_serves_the_study_while_a_worker_writes(study_url, tmp_path, write_space):
    own = tmp_path / "picks.db"
    own.write_bytes(Path(study_url[len("sqlite:///") :]).read_bytes())
    study_url = f"sqlite:///{own}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jumpsearch", "dashboard", "--storage", study_url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                studies = get_json(f"{base}/api/studies")
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("optuna-dashboard did not answer")
        (summary,) = [s for s in studies["study_summaries"] if s["study_name"] == "picks"]
        detail = get_json(f"{base}/api/studies/{summary['study_id']}?after=0")
        attrs = {a["key"]: a["value"] for a in detail["trials"][0]["user_attrs"]}
        assert {"config", "params", "flops", "train_seconds", "device"} <= set(attrs)
        assert "Search space" in json.dumps(detail.get("note", ""))  # the space file is in the study's note
        # A worker keeps writing while the dashboard reads.
        space = load_space(write_space(SPACE.replace("trials: 12", "trials: 16")))
        run_search(space, storage=study_url, train=made_up_accuracy)
        for _ in range(50):  # the dashboard refreshes its view of a study every few seconds
            detail = get_json(f"{base}/api/studies/{summary['study_id']}?after=0")
            if len(detail["trials"]) >= 16:
                break
            time.sleep(0.2)
        assert len(detail["trials"]) >= 16
    finally:
        server.terminate()
        server.wait(timeout=30)  # it stops in about 2 s; a loaded machine needs longer


def test_the_front_table_shows_each_familys_own_metaparameters(tmp_path, write_space):
    space = load_space(
        write_space(
            """\
            name: families
            data: {dataset: digits}
            model:
              family: {choice: [resnet_v2, sparsenet]}
              resnet_v2: {groups: 1, blocks_per_group: {int: [1, 2]}, stem_filters: [8, 8], base_filters: 8,
                          bottleneck: {choice: [true, false]}}
              sparsenet: {groups: 2, layers_per_block: {int: [1, 3]}, stem_filters: [8, 8], growth_rate: 4,
                          compression: {float: [0.5, 1.0]}}
            training: {epochs: 1, steps_per_epoch: 2, batch_size: 32}
            sampler: random
            trials: 8
            """
        )
    )
    study = run_search(space, storage=f"sqlite:///{tmp_path}/f.db", train=made_up_accuracy)
    done = [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    table = pareto_front(study, done)
    assert set(table["family"]) == {"resnet_v2", "sparsenet"}
    assert {"blocks_per_group", "base_filters", "bottleneck", "layers_per_block", "compression", "aggregation",
            "growth_rate", "stem_filters", "optimizer", "learning_rate"} <= set(table.columns)  # fmt: skip
    assert not {"input_shape", "num_classes"} & set(table.columns)  # the data set's, the same in every row
    sparse = table[table["family"] == "sparsenet"].iloc[0]
    trial = study.trials[int(sparse["trial"])].user_attrs["config"]["model"]
    assert sparse["aggregation"] == "exponential" and sparse["compression"] == trial["compression"]
    assert pd.isna(sparse["blocks_per_group"])  # not a SparseNet's metaparameter: blank
    shown = format_table(table)
    assert "-".join(map(str, trial["layers_per_block"])) in shown.splitlines()[1 + list(done).index(sparse["trial"])]


def test_an_export_carries_the_data_the_search_read_and_train_finds_it(tmp_path, write_space, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (90, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(90) % 3
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "shapes.npz", x_train=images[:60], y_train=labels[:60], x_test=images[60:],
             y_test=labels[60:])  # fmt: skip
    space = load_space(write_space(SPACE.replace("{dataset: digits}", "{dataset: npz, path: elsewhere.npz}")))
    monkeypatch.chdir(tmp_path / "data")  # a relative --data-dir, as people type it
    url = f"sqlite:///{tmp_path}/npz.db"
    run_search(space, trials=3, storage=url, data_dir="shapes.npz", train=made_up_accuracy)
    out = tmp_path / "elsewhere"
    out.mkdir()
    monkeypatch.chdir(out)
    assert main(["export", "--storage", url, "-k", "1", "--out", "best.yaml"]) == 0
    assert exported_data("best.yaml").path == str(tmp_path / "data" / "shapes.npz")
    assert main(["export", "--storage", url, "--data-dir", "missing.npz", "--out", "other.yaml"]) == 2
    assert not Path("other.yaml").exists()
    result = subprocess.run(
        [sys.executable, "-m", "jumpsearch", "train", "best.yaml", "--epochs", "1", "--out", "model"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy 0." in result.stdout and (out / "model" / "model.keras").is_file()
    assert result.stderr == ""  # TensorFlow's start-up and tf.data's lines stay off the terminal


def test_after_an_edit_on_resume_the_front_ranks_only_the_points_of_the_space_as_it_is(tmp_path):
    """Resumed with another recipe (2 epochs, not 1): the earlier trials are not points of the space any
    more, so the front, the picks and the table rank the new trials alone, even where an earlier one
    used to dominate them."""
    from jumpsearch.records import front
    from jumpsearch.space import space_from_dict

    raw = yaml.safe_load(SPACE)
    del raw["name"]  # a file without name: (the study stores no name to read its space back with)
    url = f"sqlite:///{tmp_path}/edit.db"
    before = run_search(space_from_dict(raw, "picks"), storage=url, train=made_up_accuracy)
    assert front(before)
    earlier = len(before.trials)
    raw["training"]["epochs"] = 2
    raw["model"]["base_filters"] = {"choice": [8, 16, 24]}
    after = run_search(space_from_dict({**raw, "trials": 18}, "picks"), storage=url, train=made_up_accuracy)
    new = [t for t in after.trials if t.number >= earlier and "duplicate_of" not in t.user_attrs]
    kept = front(after)
    assert kept and {t.number for t in kept} <= {t.number for t in new}
    assert all(t.user_attrs["config"]["training"]["epochs"] == 2 for t in kept)
    best = max((t for t in new if t.state.name == "COMPLETE"), key=lambda t: t.values[0])
    assert best_configs(after)[0].trial == best.number
    assert list(pareto_front(after)["trial"]) == [b.trial for b in best_configs(after)]
    assert len(after.best_trials) > 0 and {t.number for t in after.best_trials} - {t.number for t in new}
