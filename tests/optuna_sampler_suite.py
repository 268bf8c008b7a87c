"""A pytest plugin: Optuna's own sampler tests, with jumpsearch's samplers in place of Optuna's.

``tests/test_samplers_optuna.py`` loads it (``-p optuna_sampler_suite``) into a pytest run over the
``tests/`` folder of Optuna's source archive. Just before pytest collects one of Optuna's test modules,
every parameter that builds a sampler — a ``sampler*`` argument of ``@pytest.mark.parametrize``, the
params of a test class's ``sampler`` fixture, the ``sampler_class_with_seed`` table — is called once with
the sampler classes patched to record their arguments. One that builds a class a space may name
(``jumpsearch.samplers.SAMPLERS``) becomes ``make_sampler`` with that name and the same options; one that
builds another sampler (CMA-ES, NSGA-III, ...) is dropped. A sampler added to ``SAMPLERS`` is therefore run
wherever Optuna's suite runs its class. Tests left with no jumpsearch sampler test Optuna alone and are
deselected; those that do not apply to a wrapper are skipped, with the reason.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from unittest.mock import patch

import pytest
from _pytest.fixtures import getfixturemarker  # pytest keeps a fixture's params on its marker alone
from _pytest.mark import ParameterSet
from optuna.samplers import BaseSampler

from jumpsearch.samplers import NEEDS_SPACE, SAMPLERS, PerTrialSeed, make_sampler, missing_dependency

UNSEEDED = 0  # Optuna's tests build some samplers without a seed; a space always has one
INLINE = {"test_brute_force": "bruteforce"}  # Optuna's modules that build their one sampler inside each test
SEEDED_TABLE = "sampler_class_with_seed"  # test_samplers.py's samplers by name, also read in other processes
NOT_APPLICABLE = {
    "test_sampler_reseed_rng": "it looks for a RandomState among the sampler's own attributes and for a nested "
    "sampler whose reseed_rng is called once; a wrapper holds one sampler per open trial, none before the "
    "first (test_reseed_rng_change_sampling checks what reseeding must do: change what is drawn)",
    **dict.fromkeys(
        ("test_not_avoid_premature_stop", "test_avoid_premature_stop"),
        "it asserts the very values BruteForceSampler(seed=42) draws for trials 0-3; a wrapper draws each trial "
        "from its own (seed, trial number) stream, other values by design (the study stops when the space is "
        "exhausted: test_study_optimize_with_single_search_space and the others that run)",
    ),
}


@dataclass(frozen=True)
class JumpsearchSampler:
    """What a space's ``sampler: {name: ..., **options}`` builds, called by Optuna's tests as a factory."""

    name: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __call__(self, seed: int | None = None) -> BaseSampler:
        return make_sampler({"name": self.name, **self.options}, UNSEEDED if seed is None else seed)

    def __str__(self) -> str:  # the test id: options by value, objects (a crossover) by class
        shown = (
            f"{k}={v if isinstance(v, (bool, int, float, str)) else type(v).__name__}" for k, v in self.options.items()
        )
        return f"jumpsearch.{self.name}({', '.join(shown)})"


def translate(factory: Any) -> JumpsearchSampler | None:
    """The jumpsearch sampler that stands for Optuna's ``factory`` (a sampler class, or a callable of nothing
    or of the seed), or None where what it builds is no sampler a space may name. The factory is called with
    the classes of ``SAMPLERS`` recording the arguments each instance was made with; the one returned
    tells its name and options (samplers that a sampler makes inside, like NSGA-II's RandomSampler, not)."""
    if isinstance(factory, JumpsearchSampler):  # a module substituted already
        return factory
    names = {cls: name for name, cls in SAMPLERS.items()}
    arguments: dict[int, dict[str, Any]] = {}

    def recording(init: Any) -> Any:
        @functools.wraps(init)
        def record(self: BaseSampler, *args: Any, **kwargs: Any) -> None:
            arguments.setdefault(id(self), inspect.signature(init).bind(self, *args, **kwargs).arguments)
            init(self, *args, **kwargs)

        return record

    with ExitStack() as patches:
        for cls in names:
            patches.enter_context(patch.object(cls, "__init__", recording(cls.__init__)))
        try:
            required = [p for p in inspect.signature(factory).parameters.values() if p.default is p.empty]
            sampler = factory(*[UNSEEDED] * len(required))
        except Exception:  # another sampler, perhaps without its optional dependency: not one of ours
            return None
    if type(sampler) not in names or names[type(sampler)] in NEEDS_SPACE or missing_dependency(names[type(sampler)]):
        return None
    options = {key: value for key, value in arguments[id(sampler)].items() if key not in ("self", "seed")}
    return JumpsearchSampler(names[type(sampler)], options)


def _translated(values: list[Any], single: bool = True) -> list[ParameterSet]:
    """Parametrize values whose first element is a sampler factory, with jumpsearch's in its place; those
    that build no sampler of ours are dropped."""
    result = []
    for value in (ParameterSet.extract_from(v, force_tuple=single) for v in values):
        sampler = translate(value.values[0])
        if sampler is not None:
            result.append(pytest.param(sampler, *value.values[1:], marks=value.marks, id=str(sampler)))
    return result


def substitute(module: ModuleType) -> None:
    """Rewrite an imported test module of Optuna's so that its tests take jumpsearch's samplers."""
    table = getattr(module, SEEDED_TABLE, None)
    if isinstance(table, dict):
        translated = {name: translate(factory) for name, factory in table.items()}
        renamed = {name: str(sampler) for name, sampler in translated.items() if sampler is not None}
        table.clear()
        table.update({str(sampler): sampler for sampler in translated.values() if sampler is not None})
    for obj in list(vars(module).values()):
        marker = getfixturemarker(getattr(obj, "sampler", None)) if inspect.isclass(obj) else None
        if marker is not None and marker.params:
            params = _translated(list(marker.params))
            obj.sampler = pytest.fixture(params=params, name="sampler")(_sampler_fixture)
        for mark in getattr(obj, "pytestmark", []) if inspect.isfunction(obj) else []:
            if mark.name != "parametrize" or not isinstance(mark.args[0], str):
                continue
            argnames = [name.strip() for name in mark.args[0].split(",")]
            if not argnames[0].startswith("sampler"):
                continue
            if argnames == ["sampler_name"] and isinstance(table, dict):  # keys of the table
                names = [ParameterSet.extract_from(v, force_tuple=True).values[0] for v in mark.args[1]]
                values = [pytest.param(renamed[v], id=renamed[v]) for v in names if v in renamed]
            else:
                values = _translated(list(mark.args[1]), single=len(argnames) == 1)
            obj.pytestmark[obj.pytestmark.index(mark)] = pytest.mark.parametrize(
                mark.args[0], values, **mark.kwargs
            ).mark
    inline = INLINE.get(module.__name__.rsplit(".", 1)[-1])
    if inline is not None:  # the class itself stands for jumpsearch's sampler in every test of the module
        module._jumpsearch_sampler = pytest.fixture(autouse=True, name="_jumpsearch_sampler")(_inline_sampler(inline))
    if hasattr(module, "run_optimize"):  # run in a spawned process, which imports the module afresh
        module.run_optimize = functools.partial(run_optimize, module.__name__)


def _inline_sampler(name: str) -> Any:
    """A fixture: while a test runs, ``optuna.samplers.<Class>(seed=..., **options)`` builds jumpsearch's
    sampler (the class's static helpers, which some tests call, stay where they were)."""
    cls = SAMPLERS[name]

    class Substitute(cls):  # type: ignore[valid-type, misc]
        def __new__(klass, seed: int | None = None, **options: Any) -> BaseSampler:  # noqa: N804
            return JumpsearchSampler(name, options)(seed)

    def fixture(monkeypatch: pytest.MonkeyPatch) -> None:
        import optuna

        monkeypatch.setattr(optuna.samplers, cls.__name__, Substitute)

    return fixture


def _sampler_fixture(self: Any, request: pytest.FixtureRequest) -> JumpsearchSampler:
    return request.param


def run_optimize(module_name: str, *args: Any) -> None:
    """Optuna's ``run_optimize``, in a process of its own, on the table of jumpsearch's samplers."""
    module = importlib.import_module(module_name)
    optuna_run = module.run_optimize
    substitute(module)
    optuna_run(*args)


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module):
        try:
            module = collector.obj
        except Exception:  # pytest reports the import error when it collects the module
            return
        substitute(module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests that take a jumpsearch sampler; skip, where it is a wrapper, those that do not apply."""
    kept = [item for item in items if _sampler_of(item) is not None]
    config.hook.pytest_deselected(items=[item for item in items if _sampler_of(item) is None])
    items[:] = kept
    for item in kept:
        if item.originalname in NOT_APPLICABLE and isinstance(_sampler_of(item)(), PerTrialSeed):
            reason = NOT_APPLICABLE[item.originalname]
            item.add_marker(pytest.mark.skip(reason=f"not applicable to a wrapper: {reason}"))


def _sampler_of(item: pytest.Item) -> JumpsearchSampler | None:
    """The jumpsearch sampler a test takes, itself or by its name in the module's table."""
    module = getattr(item, "module", None)
    inline = INLINE.get(getattr(module, "__name__", "").rsplit(".", 1)[-1])
    if inline is not None:
        return JumpsearchSampler(inline)
    table = getattr(module, SEEDED_TABLE, {})
    for value in getattr(getattr(item, "callspec", None), "params", {}).values():
        if isinstance(value, JumpsearchSampler):
            return value
        if isinstance(value, str) and isinstance(table.get(value), JumpsearchSampler):
            return table[value]
    return None
