"""Storages and studies: another tool's study, storages workers cannot share, servers that never answer,
names a storage cannot hold — each refused in one line, before anything is written."""

import re
import socket
import subprocess
import sys
import threading
import uuid

import optuna
import pytest

from jumpsearch import JumpsearchError, best_configs, create_study, load_space, load_study, run_ablation, write_report
from jumpsearch.cli import main
from jumpsearch.storage import MAX_STUDY_NAME, open_storage

PG = "postgresql://postgres@127.0.0.1:5432/test"


def answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("jumpsearch: error: "), err
    return err


def another_tools_study(storage: str) -> optuna.Study:
    """A study made with plain Optuna: its own objective names, a user attribute, a few trials."""
    study = optuna.create_study(study_name="theirs", storage=open_storage(storage), directions=["maximize", "minimize"])
    study.set_user_attr("owner", "someone else")
    study.optimize(lambda t: (t.suggest_float("lr", 0.0, 1.0), t.suggest_int("width", 1, 9)), n_trials=3)
    return study


def snapshot(storage: str, name: str) -> tuple:
    opened = open_storage(storage)
    study = optuna.load_study(study_name=name, storage=opened)
    system = opened.get_study_system_attrs(study._study_id)
    return study.user_attrs, system, [(t.number, t.state, t.user_attrs, t.system_attrs) for t in study.trials]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_study_another_tool_made_is_refused_before_anything_is_written(tmp_path, write_space, capsys, kind):
    storage = f"sqlite:///{tmp_path}/shared.db" if kind == "sqlite" else str(tmp_path / "shared.log")
    study = another_tools_study(storage)
    before = snapshot(storage, "theirs")
    refusal = f"study 'theirs' in {storage} was not made by jumpsearch"
    picked = ["--storage", storage, "--study-name", "theirs"]
    for command in (["results"], ["results", "--knee"], ["export", "--out", str(tmp_path / "x.yaml")], ["report"],
                    ["confirm"]):  # fmt: skip
        assert main([*command, *picked]) == 2
        assert refusal in one_error_line(capsys)
    path = write_space()
    assert main(["run", "--space", str(path), *picked, "--trials", "1", "-q"]) == 2
    assert refusal in one_error_line(capsys)
    space = load_space(path)
    for call in (
        lambda: create_study(space, storage, "theirs"),
        lambda: load_study(storage, "theirs"),
        lambda: load_study(storage),  # the storage's only study
        lambda: best_configs(storage, "theirs"),
        lambda: best_configs(study),
        lambda: write_report(study, tmp_path / "r.html"),
    ):
        with pytest.raises(JumpsearchError, match="was not made by jumpsearch"):
            call()
    assert snapshot(storage, "theirs") == before
    assert not (tmp_path / "x.yaml").exists() and not (tmp_path / "r.html").exists()


def test_an_empty_study_another_jumpsearch_process_is_creating_is_taken(tmp_path, write_space):
    """Between Optuna creating a study and jumpsearch storing its space in it, the study has no trial and
    no attribute; a second process starting the same search then must not refuse it."""
    storage = f"sqlite:///{tmp_path}/race.db"
    optuna.create_study(study_name="tiny", storage=storage, directions=["maximize", "minimize"])
    study = create_study(load_space(write_space()), storage)
    assert study.user_attrs["space"]["name"] == "tiny"


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "sqlite+pysqlite:///:memory:", "sqlite:///file:shared?mode=memory&uri=true"]
)
def test_a_storage_workers_cannot_share_is_refused(tmp_path, monkeypatch, write_space, capsys, url):
    monkeypatch.chdir(tmp_path)
    space = write_space()
    assert main(["results", "--storage", url]) == 2
    assert "names no file" in one_error_line(capsys)
    with pytest.raises(JumpsearchError, match="names no file"):
        create_study(load_space(space), url)
    assert main(["run", "--space", str(space), "--storage", url, "--trials", "1", "-q"]) == 2
    assert f"storage {url}: names no file" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]  # nothing made, nowhere


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in held:
        connection.close()


def test_a_server_that_never_answers_fails_the_command_in_one_line(silent_server, tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/test"
    args = ["export", "--storage", url, "--out", str(tmp_path / "best.yaml")]
    result = subprocess.run(
        [sys.executable, "-m", "jumpsearch", *args], capture_output=True, text=True, timeout=240
    )  # fmt: skip  (it hung forever before)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"jumpsearch: error: storage {url}: cannot open it after 3 tries")
    assert not (tmp_path / "best.yaml").exists()


@pytest.mark.parametrize("scheme", ["redis://", "postgresql+psycopg://postgres@"])
def test_a_server_that_never_answers_fails_the_python_api_too(silent_server, scheme):
    url = f"{scheme}127.0.0.1:{silent_server}" + ("/test" if "postgres" in scheme else "")
    with pytest.raises(JumpsearchError, match=re.escape(f"storage {url}: cannot open it (")):
        open_storage(url, attempts=1)


def test_study_names_no_storage_can_hold_are_refused_before_writing(tmp_path, write_space, capsys):
    if not answers(5432):
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
    space = load_space(write_space())
    before = set(optuna.get_all_study_names(PG))
    long_name = "n" * (MAX_STUDY_NAME + 1)
    for name, reason in ((long_name, "513 characters"), ("a\x00b", "control character"), ("a\udcffb", "Unicode")):
        with pytest.raises(JumpsearchError, match=reason):
            create_study(space, PG, name)
        with pytest.raises(JumpsearchError, match=reason):
            load_study(PG, name)
    assert main(["results", "--storage", PG, "--study-name", long_name]) == 2
    assert "'nnnnn" in one_error_line(capsys)  # quoted in part: the line stays short
    # A space name that fits alone, but not with the ablation's family suffix.
    ablation = write_space(
        f"""\
        name: {"a" * 505}
        data: {{dataset: digits}}
        model:
          family: {{choice: [jumpnet, densenet_bc]}}
          jumpnet: {{groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: 8}}
          densenet_bc: {{groups: 1, layers_per_block: 1, stem_filters: [8, 8], growth_rate: 4}}
        """
    )
    with pytest.raises(JumpsearchError, match="513 characters"):
        run_ablation(load_space(ablation), storage=PG)
    assert set(optuna.get_all_study_names(PG)) == before
    name = f"fits-{uuid.uuid4().hex[:8]}"  # the longest name a storage holds is taken
    study = create_study(space, PG, name + "x" * (MAX_STUDY_NAME - len(name)))
    assert len(study.study_name) == MAX_STUDY_NAME
    optuna.delete_study(study_name=study.study_name, storage=PG)


def test_a_malformed_storage_url_is_named_once_without_its_password(capsys):
    assert main(["results", "--storage", "postgresql://me:secret@db.internal:port/jobs"]) == 2
    line = one_error_line(capsys)
    assert "storage postgresql://me:***@db.internal:port/jobs: not a storage URL" in line and "secret" not in line
