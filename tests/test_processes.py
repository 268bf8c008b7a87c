"""The command line as real processes: bad input stops in one line before anything is stored, signals
leave a resumable study, and no configuration is trained twice however many processes share a study."""

import importlib.util
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from jumpsearch.records import trained

SPACE = """\
name: {name}
data: {{dataset: digits}}
model: {{groups: {{int: [1, 2]}}, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {{choice: [8, 16]}},
        jump_spacing: {{choice: [0, 1]}}}}
training: {{epochs: {epochs}, steps_per_epoch: {steps}, batch_size: 32, learning_rate: {{float: [1e-3, 1e-2]}}}}
sampler: {sampler}
"""


def space_text(name="proc", epochs=1, steps=2, sampler="random"):
    return SPACE.format(name=name, epochs=epochs, steps=steps, sampler=sampler)


def jumpsearch(*args, cwd, env=None, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jumpsearch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )


def start(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jumpsearch", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def assert_one_line_error(result, message):
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("jumpsearch: error: "), result.stderr
    assert message in result.stderr, result.stderr


def all_distinct(study) -> None:
    done = trained(study)
    keys = [t.user_attrs["key"] for t in done]
    assert len(set(keys)) == len(keys), sorted(keys)
    spent = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.FAIL) and "epochs" in t.user_attrs]
    spent = [t for t in spent if t.user_attrs["epochs"] > 0]  # trained (a reused result has epochs 0)
    assert len({t.user_attrs["key"] for t in spent}) == len(spent)


def write_npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((60, 8, 8)).astype(np.float32), "y_train": np.arange(60) % 3}
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


BAD_SPACES = {
    "epochs 0": ("training: {epochs: 0}", "training.epochs: must be at least 1, got 0"),
    "growth rate -1": ("model: {growth_rate: -1}", "model.growth_rate: must be positive, got -1"),
    "no blocks": ("model: {blocks_per_group: 0}", "model.blocks_per_group: need at least one group"),
    "jump width 0": ("model: {jump_width: 0}", "model.jump_width: must be positive"),
    "unreachable budget": ("model: {groups: 1}\nconstraints: {max_params: 500}", "the smallest model of the space"),
    "10⁹ filters": ("model: {groups: 1, base_filters: 1000000000}", "constraints.max_memory: the smallest model"),
    "malformed YAML": ("model: {groups: [1, 2}", "malformed YAML"),
    "unknown key": ("model: {grups: 2}", "model.grups: unknown key"),
    "too many groups": ("model: {groups: {int: [1, 5]}}", "reaches 5 downsamplings, but a 8x8 input"),
    "unknown sampler": ("sampler: annealing", "sampler.name: unknown sampler 'annealing'"),
}
BAD_DATA = {
    "one class": ({"y_train": np.zeros(60, dtype=int)}, "y_train holds one class"),
    "negative labels": ({"y_train": np.arange(60) % 3 - 1}, "negative label -1"),
    "absurd labels": ({"y_train": np.where(np.arange(60) % 3 == 2, 10**9, np.arange(60) % 3)}, "classes up to"),
    "NaN pixels": ({"x_train": np.full((60, 8, 8), np.nan, dtype=np.float32)}, "NaN or infinite pixels"),
    "test shape": ({"x_test": np.zeros((4, 9, 9)), "y_test": np.arange(4) % 3}, "x_test images are (9, 9, 1)"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_a_bad_space_stops_in_one_line_and_writes_nothing(tmp_path, write_space, case):
    text, message = BAD_SPACES[case]
    space = write_space(f"name: bad\n{text}\n")
    assert_one_line_error(jumpsearch("run", "--space", str(space), cwd=tmp_path), message)
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_stops_in_one_line_and_writes_nothing(tmp_path, write_space, case):
    arrays, message = BAD_DATA[case]
    data = write_npz(tmp_path / "d.npz", **arrays)
    space = write_space(f"name: bad\ndata: {{dataset: npz, path: {data}}}\nmodel: {{groups: 1}}\n")
    assert_one_line_error(jumpsearch("run", "--space", str(space), cwd=tmp_path), message)
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "storage postgresql://nobody@127.0.0.1:1/none"),
        (["--storage", "mongodb://127.0.0.1/x"], "storage mongodb://127.0.0.1/x: cannot open it"),
        (["--trials", "0"], "argument --trials: expected a positive integer, got '0'"),
        (["--workers", "0"], "argument --workers: expected a positive integer"),
        (["--gpus", "first"], "--gpus first: expected all or GPU indices"),
    ],
)
def test_bad_arguments_stop_in_one_line(tmp_path, write_space, extra, message):
    space = write_space(space_text())
    assert_one_line_error(jumpsearch("run", "--space", str(space), *extra, cwd=tmp_path), message)
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KERAS_BACKEND": "bogus"},
            "KERAS_BACKEND 'bogus': not a backend jumpsearch trains with (known: tensorflow, jax, torch)",
        ),
        ({"KERAS_BACKEND": "numpy"}, "KERAS_BACKEND 'numpy': not a backend jumpsearch"),  # Keras's, not ours
        ({"KERAS_BACKEND": "", "KERAS_HOME": "{home}"}, "keras.json: backend 'mxnet': not a backend jumpsearch"),
        ({"KERAS_BACKEND": "torch"}, "the torch backend failed to start: ModuleNotFoundError"),  # not installed
    ],
)
def test_a_backend_that_cannot_start_is_one_line_before_any_study(tmp_path, write_space, env, message):
    if env.get("KERAS_BACKEND") == "torch" and importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here: its workers start")
    (tmp_path / "keras.json").write_text('{"backend": "mxnet"}')
    space = write_space(space_text())
    env = {key: value.format(home=tmp_path) for key, value in env.items()}
    assert_one_line_error(jumpsearch("run", "--space", str(space), "--workers", "2", cwd=tmp_path, env=env), message)
    assert not (tmp_path / "studies").exists()


def test_gpus_named_where_none_is_visible_are_refused_before_any_study(tmp_path, write_space):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine may have a GPU")
    space = write_space(space_text())
    result = jumpsearch("run", "--space", str(space), "--gpus", "0,0", cwd=tmp_path)
    assert_one_line_error(result, "--gpus 0,0: tensorflow sees no GPU there (CUDA_VISIBLE_DEVICES=0)")
    assert not (tmp_path / "studies").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root, with mount: CI's container); skipped where mounting is not allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)  # this process may still hold the file open


def fill(folder) -> None:
    filler = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(filler, b"\0" * 4096):
            pass
    except OSError:  # no space left
        pass
    finally:
        os.close(filler)


def file_size_limit(size: int):
    def limit() -> None:  # in the child: writes past ``size`` bytes fail (EFBIG) instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.mark.parametrize("how", ["a full disk", "a file size limit"])
def test_a_storage_that_takes_no_more_writes_stops_the_run_in_one_line(tmp_path, write_space, request, how):
    folder = request.getfixturevalue("small_disk") if how == "a full disk" else tmp_path
    space = write_space(space_text(name="full"))
    url = f"sqlite:///{folder}/full.db"
    assert (
        jumpsearch("run", "--space", str(space), "--storage", url, "--trials", "1", "-q", cwd=tmp_path).returncode == 0
    )
    limit = None
    if how == "a full disk":
        fill(folder)
    else:
        limit = file_size_limit((folder / "full.db").stat().st_size + 4096)
    result = jumpsearch("run", "--space", str(space), "--storage", url, "--trials", "30", "-q", cwd=tmp_path,
                        preexec_fn=limit)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "failed" not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"jumpsearch: error: storage {url}: "), last
    assert ("no space left on its device (disk full)" if how == "a full disk" else "disk I/O error") in last
    if how == "a full disk":
        (folder / "filler").unlink()
    trials = optuna.load_study(study_name="full", storage=url).trials
    assert len([t for t in trials if t.state != TrialState.COMPLETE]) <= 1  # stopped at the first failed write


def test_a_read_only_studies_folder_is_one_line(tmp_path, write_space):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders; run as a user to check this case")
    (tmp_path / "studies").mkdir(mode=0o555)
    space = write_space(space_text())
    assert_one_line_error(jumpsearch("run", "--space", str(space), cwd=tmp_path), "is not writable")


def test_a_storage_that_cannot_be_written_is_one_line(tmp_path, write_space):
    (tmp_path / "file").write_text("not a folder")
    space = write_space(space_text())
    result = jumpsearch("run", "--space", str(space), "--storage", f"sqlite:///{tmp_path}/file/x.db", cwd=tmp_path)
    assert_one_line_error(result, "cannot create the folder")


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """A two-trial study made once for the tests that only read it."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "space.yaml").write_text(space_text(name="small"))
    result = jumpsearch("run", "--space", "space.yaml", "--trials", "2", "-q", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("objectives: [accuracy, flops]\n", "objectives ['accuracy', 'params'] -> ['accuracy', 'flops']"),
        ("objectives: [accuracy, params, flops]\n", "objectives ['accuracy', 'params'] -> ['accuracy', 'params', "),
        ("", "base_filters choice [8, 16] -> choice [8, 16, 24]"),
    ],
)
def test_resuming_with_an_incompatible_space_stops_before_training(small_study, tmp_path, edit, message):
    text = space_text(name="small").replace("choice: [8, 16]", "choice: [8, 16, 24]" if not edit else "choice: [8, 16]")
    (tmp_path / "space.yaml").write_text(text + edit)
    storage = f"sqlite:///{small_study}/studies/small.db"
    before = len(optuna.load_study(study_name="small", storage=storage).trials)
    result = jumpsearch("run", "--space", str(tmp_path / "space.yaml"), "--storage", storage, cwd=tmp_path)
    assert_one_line_error(result, message)
    assert "incompatible with study 'small'" in result.stderr
    assert len(optuna.load_study(study_name="small", storage=storage).trials) == before


def test_a_compatible_edit_goes_on_and_is_noted(small_study, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "studies").mkdir()
    (folder / "studies" / "small.db").write_bytes((small_study / "studies" / "small.db").read_bytes())
    (folder / "space.yaml").write_text(space_text(name="small").replace("[1e-3, 1e-2]", "[1e-4, 1e-2]"))
    result = jumpsearch("run", "--space", "space.yaml", "--trials", "3", "-q", cwd=folder)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{folder}/studies/small.db")
    (change,) = study.user_attrs["space_changes"]
    assert change["changes"] == ["learning_rate range [0.001, 0.01] -> [0.0001, 0.01]"]
    assert len(trained(study)) == 3


def test_other_commands_end_bad_input_in_one_line(small_study, tmp_path):
    storage = f"sqlite:///{small_study}/studies/small.db"
    export = tmp_path / "best.yaml"
    assert jumpsearch("export", "--storage", storage, "--out", str(export), cwd=tmp_path).returncode == 0
    assert_one_line_error(
        jumpsearch("train", str(export), "--epochs", "0", cwd=tmp_path), "--epochs: expected a positive"
    )
    assert_one_line_error(
        jumpsearch("results", "--storage", f"sqlite:///{tmp_path}/typo.db", cwd=tmp_path), "no such file"
    )
    assert not (tmp_path / "typo.db").exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = jumpsearch("dashboard", "--storage", storage, "--port", port, cwd=tmp_path)
    assert_one_line_error(result, f"--port {port}: cannot listen on 127.0.0.1:{port}")
    csv = tmp_path / "new" / "folder" / "trials.csv"  # a missing folder is made
    assert jumpsearch("results", "--storage", storage, "--csv", str(csv), cwd=tmp_path).returncode == 0
    assert csv.read_text().count("\n") == 3


def wait_for_training(storage, name, process, timeout=300, epochs=1):
    """The running trial once it has finished ``epochs`` epochs (1: it is mid-training; 0: it has just
    begun: sampling, building, compiling)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            running = study.get_trials(states=(TrialState.RUNNING,))
            running = [t for t in running if len(t.user_attrs.get("curve", {})) >= epochs]
            if running:
                return running[0]
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # the study may not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"no trial started training; stderr: {process.stderr.read() if process.stderr else ''}")


@pytest.mark.parametrize(
    ("signum", "status", "epochs", "delay"),
    [(signal.SIGTERM, 143, 1, 0.0), (signal.SIGINT, 130, 1, 0.0), (signal.SIGTERM, 143, 0, 0.0),
     (signal.SIGTERM, 143, 0, 0.3), (signal.SIGTERM, 143, 0, 1.0)],
)  # fmt: skip
def test_a_signal_fails_the_running_trial_in_one_line_and_the_study_resumes(
    tmp_path, write_space, signum, status, epochs, delay
):
    """Mid-training, and at varied moments of a trial's start (sampling, building, compiling, first steps)."""
    space = write_space(space_text(name="sig", epochs=5000, steps=4))
    storage = f"sqlite:///{tmp_path}/studies/sig.db"
    process = start("run", "--space", str(space), "--trials", "2", "-q", cwd=tmp_path)
    running = wait_for_training(storage, "sig", process, epochs=epochs)
    time.sleep(delay)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (
        f"jumpsearch: interrupted by {name}; the running trial is marked failed and the study kept; "
        "run the same command to resume."
    )
    study = optuna.load_study(study_name="sig", storage=storage)
    trial = study.trials[running.number]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == f"interrupted by {name}"
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert len(study.trials) == 1  # no further trial


def test_two_processes_on_one_study_train_distinct_configurations(tmp_path, write_space):
    """The README's many-machines recipe, on one SQLite file: both start from the same seed."""
    space = write_space(space_text(name="two"))
    processes = [start("run", "--space", str(space), "--trials", "8", "-q", cwd=tmp_path) for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    study = optuna.load_study(study_name="two", storage=f"sqlite:///{tmp_path}/studies/two.db")
    assert len(trained(study)) >= 8
    all_distinct(study)
    assert len({t.user_attrs["worker"] for t in trained(study)}) == 2


def test_a_recycled_worker_is_replaced_by_a_standby_that_read_the_study_before_its_turn(tmp_path, write_space):
    """One worker recycled after two trials, four trials: once the first has trained, a standby starts,
    opens the study and reads its trials; the second half of the budget is its turn. Trials of 80 steps:
    the supervisor, which looks every half second, sees the first trained well before the second ends."""
    space = write_space(space_text(name="recycle", epochs=2, steps=40))
    result = jumpsearch("-v", "run", "--space", str(space), "--trials", "4", "--recycle", "2", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "jumpsearch: error" not in result.stderr, result.stderr
    study = optuna.load_study(study_name="recycle", storage=f"sqlite:///{tmp_path}/studies/recycle.db")
    assert len(trained(study)) == 4
    all_distinct(study)
    workers = [t.user_attrs["worker"] for t in sorted(trained(study), key=lambda t: t.number)]
    assert len(set(workers)) == 2 and workers[0] == workers[1] != workers[2] == workers[3]  # two processes in turn
    said = r"standby (\S+): study 'recycle' read \((\d+) trials trained\); waiting for its turn"
    ((standby, read),) = re.findall(said, result.stderr)
    assert re.findall(r"standby (\S+) takes its turn", result.stderr) == [standby] == [workers[2]]
    assert int(read) >= 1  # started once its predecessor had trained a trial
    with pytest.raises(ProcessLookupError):  # and it has left with the run (no process stays behind)
        os.kill(int(standby.rsplit(":", 1)[1]), 0)


def test_a_resume_after_sigkill_trains_new_configurations(tmp_path, write_space):
    space = write_space(space_text(name="killed", epochs=50, steps=4))
    storage = f"sqlite:///{tmp_path}/studies/killed.db"
    process = start("run", "--space", str(space), "--trials", "3", "--heartbeat", "1", "-q", cwd=tmp_path)
    running = wait_for_training(storage, "killed", process)
    worker = int(running.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(worker, signal.SIGKILL)  # the worker and its supervisor die without a word
    process.kill()
    process.wait()
    time.sleep(5)  # four missed heartbeats: the trial is stale
    (tmp_path / "space.yaml").write_text(space_text(name="killed"))  # shorter trials from here on
    result = jumpsearch("run", "--space", "space.yaml", "--trials", "3", "--heartbeat", "1", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="killed", storage=storage)
    assert study.trials[running.number].state == TrialState.FAIL  # failed by heartbeat, and retried
    assert study.trials[running.number].user_attrs["fail_reason"] == (
        f"{running.user_attrs['worker']} sent no heartbeat for 4 s (killed, or its machine lost)"
    )
    assert len(trained(study)) == 3
    all_distinct(study)


def test_the_same_seed_in_one_process_reproduces_its_trials(tmp_path, write_space):
    space = write_space(space_text(name="repro", sampler="{name: tpe, n_startup_trials: 2}"))
    folders = [tmp_path / "a", tmp_path / "b"]
    processes = []
    for folder in folders:  # two separate studies, run side by side
        folder.mkdir()
        processes.append(start("run", "--space", str(space), "--trials", "3", "--seed", "7", "-q", cwd=folder))
    runs = []
    for folder, process in zip(folders, processes, strict=True):
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        study = optuna.load_study(study_name="repro", storage=f"sqlite:///{folder}/studies/repro.db")
        runs.append([(t.params, t.values) for t in study.trials])
    assert runs[0] == runs[1]
    assert len({str(p) for p, _ in runs[0]}) == len(runs[0])
