"""The command line's options: each number is held to its meaning, in one line that names the option."""

import argparse

import pytest

from jumpsearch.cli import _as_flags, main

SPACE = ["--space", "search_spaces/digits.yaml"]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["run", *SPACE, "--trials", "0"], "--trials"),
        (["run", *SPACE, "--timeout", "-5"], "--timeout"),
        (["run", *SPACE, "--timeout", "0"], "--timeout"),
        (["run", *SPACE, "--timeout", "nan"], "--timeout"),
        (["run", *SPACE, "--timeout", "inf"], "--timeout"),
        (["run", *SPACE, "--seed", "-1"], "--seed"),
        (["run", *SPACE, "--seed", str(2**32)], "--seed"),
        (["run", *SPACE, "--workers", "0"], "--workers"),
        (["run", *SPACE, "--recycle", "-2"], "--recycle"),
        (["run", *SPACE, "--heartbeat", "0"], "--heartbeat"),
        (["run", *SPACE, "--heartbeat", "1.5"], "--heartbeat"),
        (["ablate", *SPACE, "--trials", "-1"], "--trials"),
        (["ablate", *SPACE, "--budgets", "0,abc"], "--budgets"),
        (["ablate", *SPACE, "--budgets", "10k,"], "--budgets"),
        (["ablate", *SPACE, "--timeout", "soon"], "--timeout"),
        (["results", *SPACE, "-k", "0"], "-k"),
        (["results", *SPACE, "-k", "-3"], "-k"),
        (["results", *SPACE, "--max-params", "-3"], "--max-params"),
        (["results", *SPACE, "--max-flops", "0.2"], "--max-flops"),
        (["export", *SPACE, "--out", "x.yaml", "-k", "0"], "-k"),
        (["export", *SPACE, "--out", "x.yaml", "--max-params", "lots"], "--max-params"),
        (["train", "best.yaml", "--index", "-1"], "--index"),
        (["train", "best.yaml", "--epochs", "0"], "--epochs"),
        (["train", "best.yaml", "--seed", "-7"], "--seed"),
        (["train", "best.yaml", "--dataset", "mnist"], "--dataset"),
        (["confirm", *SPACE, "--epochs", "0"], "--epochs"),
        (["confirm", *SPACE, "--seeds", "0"], "--seeds"),
        (["confirm", *SPACE, "--others", "-1"], "--others"),
        (["dashboard", *SPACE, "--port", "70000"], "--port"),
        (["dashboard", *SPACE, "--port", "0"], "--port"),
        (["dashboard", *SPACE, "--port", "http"], "--port"),
    ],
)
def test_numbers_against_their_meaning_are_refused_in_one_line(capsys, argv, option):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"jumpsearch: error: argument {option}")
    assert repr(argv[-1]) in error  # the value received


def test_library_parameters_read_as_the_options_that_set_them():
    args = argparse.Namespace(seeds=2, data_dir=None, out="models/run", timeout=None)
    assert _as_flags("seeds=0: must be at least 1", args) == "--seeds 0: must be at least 1"
    assert _as_flags("pass data_dir=FOLDER (or set data.path)", args) == "pass --data-dir FOLDER (or set data.path)"
    assert _as_flags("train into another folder (out_dir=DIR)", args) == "train into another folder (--out DIR)"
    assert _as_flags("epochs=0 at postgresql://h/db?timeout=5", args) == "epochs=0 at postgresql://h/db?timeout=5"
