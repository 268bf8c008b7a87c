"""Optuna's own sampler tests, for the Optuna version installed, against every sampler a space may name.

The tests come from Optuna's source archive on the package registry (fetched once per version into pytest's
cache, never copied into this repository) and run in a pytest of their own with the plugin
``tests/optuna_sampler_suite.py``, which puts ``jumpsearch.samplers.make_sampler`` wherever they build one
of the samplers in ``SAMPLERS``, with the same options. Of the modules below, the tests that take a sampler
run: Optuna's generic sampler contract (``TestBasicSampler``, ``TestRelativeSampler``,
``TestMultiObjectiveSampler``), reproducibility with one seed, across processes and after
``reseed_rng()``, ``PartialFixedSampler`` over a sampler, NSGA-II's crossovers, and every test of
``BruteForceSampler`` (whose tests build the class inside their bodies: there the class itself is replaced
by one that builds jumpsearch's ``bruteforce``).

What does not apply to a wrapper, and why:

- ``test_sampler_reseed_rng`` (skipped, with the reason, for the samplers jumpsearch wraps; run for ``qmc``,
  which is Optuna's own): it finds a ``RandomState`` among the sampler's attributes and a nested sampler
  whose ``reseed_rng`` must be called once. A wrapper holds one sampler per open trial, none before the
  first. What reseeding must achieve, other draws, is ``test_reseed_rng_change_sampling``'s, which runs.
- ``test_not_avoid_premature_stop`` and ``test_avoid_premature_stop`` (skipped, with the reason): they
  assert the very values ``BruteForceSampler(seed=42)`` draws for four trials; a wrapper draws each trial
  from its own (seed, trial number) stream, so other values, by design.
- Tests that take no sampler factory are deselected, as they exercise Optuna's classes alone:
  ``test_pickle_random_sampler`` builds ``RandomSampler`` itself and reads its private ``_rng``
  (jumpsearch never pickles a sampler: each worker process builds its own from the space);
  ``test_sample_relative`` uses Optuna's ``FixedSampler``; the rest of ``test_partial_fixed.py`` and
  ``test_nsgaii.py`` test ``PartialFixedSampler`` and NSGA-II's private functions with mocks.
- Parameters that build samplers no space may name (CMA-ES, NSGA-III), or whose dependencies are not
  installed (GP without the ``gp`` extra), are dropped from each parametrisation.
"""

import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import optuna
import pytest
from optuna_sampler_suite import INLINE

from jumpsearch.samplers import NEEDS_SPACE, SAMPLERS, missing_dependency

SUITE = (
    "samplers_tests/test_samplers.py",
    "samplers_tests/test_partial_fixed.py",
    "samplers_tests/test_nsgaii.py",
    "samplers_tests/test_brute_force.py",
)


@pytest.fixture(scope="module")
def optuna_tests(pytestconfig: pytest.Config) -> Path:
    """The folder holding ``tests/`` and ``pyproject.toml`` (its pytest settings) of the installed Optuna's
    source archive. Unreachable registry: a skip, saying so, except under ``CI=true``, where it fails."""
    folder = pytestconfig.cache.mkdir(f"optuna-{optuna.__version__}-source")
    if (folder / "tests").is_dir():
        return folder
    with tempfile.TemporaryDirectory(dir=folder) as download:
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--timeout", "30"]
            + ["--retries", "2", "--dest", download, f"optuna=={optuna.__version__}"],
            capture_output=True,
            text=True,
        )
        archives = list(Path(download).glob("optuna-*.tar.gz"))
        if pip.returncode or not archives:
            reason = f"optuna=={optuna.__version__}'s source archive could not be fetched from the package registry"
            said = (pip.stderr.strip().splitlines() or ["(pip said nothing)"])[-1]
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}: {said}")
            pytest.skip(f"{reason} (offline?): {said}")
        with tarfile.open(archives[0]) as tar:
            top = tar.getnames()[0].split("/")[0]
            wanted = [
                m for m in tar.getmembers() if m.name.startswith(f"{top}/tests/") or m.name == f"{top}/pyproject.toml"
            ]
            tar.extractall(download, members=wanted, filter="data")
        missing = [path for path in SUITE if not (Path(download) / top / "tests" / path).is_file()]
        assert not missing, f"optuna {optuna.__version__}'s source archive has no tests/{', tests/'.join(missing)}"
        (Path(download) / top / "pyproject.toml").rename(folder / "pyproject.toml")
        (Path(download) / top / "tests").rename(folder / "tests")  # last, at once: a cache is whole or absent
    return folder


def test_optunas_sampler_suite_passes_with_every_sampler_a_space_may_name(optuna_tests, tmp_path):
    report = tmp_path / "report.xml"
    paths = [str(Path(__file__).parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # the plugin, also for the processes it spawns
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *(f"tests/{path}" for path in SUITE), "-p", "optuna_sampler_suite"]
        + ["-p", "no:cacheprovider", "-q", "--color=no", "-rs", f"--junitxml={report}"],
        cwd=optuna_tests,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    passed = [
        f"{case.get('classname', '')}::{case.get('name', '')}"
        for case in ElementTree.parse(report).iter("testcase")
        if not any(child.tag in ("failure", "error", "skipped") for child in case)
    ]
    suite = [n for n in SAMPLERS if n not in NEEDS_SPACE and not missing_dependency(n)]  # what it can build
    ran = {name: [case for case in passed if f"jumpsearch.{name}(" in case] for name in suite}
    for module, name in INLINE.items():  # their tests build the sampler inside: no sampler in the test's id
        ran[name] += [case for case in passed if f".{module}::test_study_optimize" in case]
    for name, cases in ran.items():  # a sampler Optuna's suite never builds would otherwise go untested here
        assert cases, f"no test of Optuna's ran sampler {name!r}"
