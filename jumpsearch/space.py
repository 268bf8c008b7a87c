"""Search spaces: a YAML file of fixed values, ranges and choices, turned into candidates by a trial.

A value in the ``model`` or ``training`` section is either fixed (any YAML value) or one of::

    {int: [low, high], step: 1, log: false}
    {float: [low, high], log: true}
    {choice: [a, b, c]}

``blocks_per_group`` takes ``per_group: true`` to search one value per group. Every fixed value, range
end and choice is checked against the rule of the configuration field it sets, and the constraints
against the smallest model of the space, when the file loads: a mistake never costs a training run,
and never writes a trial. Every error names the file and the key.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from jumpsearch.config import FAMILIES, Candidate, DataConfig, ModelConfig, TrainingConfig, family_names
from jumpsearch.counting import count, training_memory
from jumpsearch.device import memory_budget
from jumpsearch.errors import ConfigError
from jumpsearch.samplers import SAMPLERS, make_sampler, sampler_options
from jumpsearch.schedule import Schedule

OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "flops": "minimize"}
TOP_LEVEL = (
    "name", "data", "model", "training", "objectives", "sampler", "schedule", "seed", "constraints", "trials"
)  # fmt: skip
SET_BY_DATA = ("input_shape", "num_classes")
DEFAULT_GROUPS = 3


class _Loader(yaml.SafeLoader):
    """YAML as people write numbers: ``1e-4`` is a float (YAML 1.1 wants ``1.0e-4`` and reads a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """A YAML (or JSON) file's contents, with numbers read as people write them; errors name the file."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({' '.join(str(e).split())})") from None


def parse_count(value: Any, where: str) -> int | None:
    """``250000``, ``250k``, ``1.5M``, ``2G`` or null."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        if value is not None and value < 1:
            raise ConfigError(f"{where}: expected a positive count, got {value!r}")
        return value
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)\s*", str(value))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{where}: expected a count such as 250000, 250k or 1.5M, got {value!r}")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class Param:
    """One entry of a space: ``kind`` is fixed, int, float or choice."""

    kind: str
    values: tuple[Any, ...]
    log: bool = False
    step: float | None = None
    per_group: bool = False

    @property
    def scalar_choices(self) -> bool:
        return all(v is None or isinstance(v, (bool, int, float, str)) for v in self.values)

    def distribution(self) -> BaseDistribution | None:
        """Optuna's distribution for this entry (None when fixed). Lists travel as JSON strings."""
        if self.kind == "int":
            return IntDistribution(*self.values, log=self.log, step=int(self.step or 1))
        if self.kind == "float":
            return FloatDistribution(*self.values, log=self.log, step=self.step)
        if self.kind == "choice":
            choices = list(self.values) if self.scalar_choices else [json.dumps(v) for v in self.values]
            return CategoricalDistribution(choices)
        return None

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "int":
            return trial.suggest_int(name, *self.values, step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(name, *self.values, step=self.step, log=self.log)
        if self.scalar_choices:
            return trial.suggest_categorical(name, list(self.values))
        return json.loads(trial.suggest_categorical(name, [json.dumps(v) for v in self.values]))

    def describe(self) -> str:
        if self.kind == "fixed":
            return json.dumps(self.values[0])
        if self.kind == "choice":
            return f"choice {json.dumps(list(self.values))}"
        extra = "".join([", log" if self.log else "", f", step {self.step}" if self.step else ""])
        return f"{self.kind} [{self.values[0]}, {self.values[1]}]{extra}"


def _param(raw: Any, where: str) -> Param:
    kinds = [k for k in ("int", "float", "choice") if isinstance(raw, dict) and k in raw]
    if not kinds:
        return Param("fixed", (raw,))
    if len(kinds) > 1:
        raise ConfigError(f"{where}: give one of int, float or choice, not {' and '.join(kinds)}")
    kind = kinds[0]
    unknown = sorted(set(raw) - {kind, "log", "step", "per_group"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown option (known: log, step, per_group)")
    log, step, per_group = raw.get("log", False), raw.get("step"), raw.get("per_group", False)
    if not isinstance(log, bool) or not isinstance(per_group, bool):
        raise ConfigError(f"{where}: log and per_group must be true or false")
    values = raw[kind]
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.choice: expected a non-empty list of options")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(f"{where}.choice: an option appears twice in {values!r}")
        if log or step is not None:
            raise ConfigError(f"{where}: log and step apply to int and float ranges, not to choice")
        return Param("choice", tuple(values), per_group=per_group)
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(values, list)
        or len(values) != 2
        or not all(isinstance(v, number) and not isinstance(v, bool) for v in values)
    ):
        raise ConfigError(f"{where}.{kind}: expected [low, high] with {kind} bounds, got {values!r}")
    low, high = values
    if low > high:
        raise ConfigError(f"{where}.{kind}: empty range [{low}, {high}] (low is above high)")
    if log and low <= 0:
        raise ConfigError(f"{where}.{kind}: a log range needs a positive low bound, got {low}")
    if step is not None and (log or isinstance(step, bool) or not isinstance(step, number) or step <= 0):
        raise ConfigError(f"{where}.step: expected a positive {kind} step without log, got {step!r}")
    if kind == "float":
        low, high = float(low), float(high)
    return Param(kind, (low, high), log=log, step=step, per_group=per_group)


def _check_values(cls: type, key: str, param: Param, where: str, per_group: bool = False) -> None:
    """Hold every value the entry can give (fixed value, choices, both ends of a range) to the field's
    type and rule; a per-group entry gives one element of the field at a time."""
    hint = cls.field_types()[key]
    if param.kind == "float" and (hint in (int, int | None) or per_group):
        raise ConfigError(f"{where}: a float range for an integer key; use int")
    for value in param.values:
        if per_group and not isinstance(value, list):
            value = [value]
        try:
            cls.check_field(key, value)
        except ConfigError as e:
            raise ConfigError(f"{where}: {str(e).split(': ', 1)[1]}") from None


@dataclass(frozen=True)
class Constraints:
    """Limits a point must meet before it is trained: trainable params, FLOPs (multiply-accumulates) and
    the estimated memory of a training step (``counting.training_memory``), in bytes."""

    max_params: int | None = None
    max_flops: int | None = None
    max_memory: int | None = None

    MEASURES = {
        "max_params": ("params", lambda c: count(c.model).trainable),
        "max_flops": ("FLOPs", lambda c: count(c.model).macs),
        "max_memory": ("of training memory", training_memory),
    }

    @staticmethod
    def shown(key: str, value: int) -> str:
        """A measure as people read it: counts with thousands separators, memory in GiB."""
        return f"{value / 2**30:,.2f} GiB" if key == "max_memory" else f"{value:,}"

    def active(self) -> dict[str, tuple[str, Callable[[Candidate], int], int]]:
        """Each limit in force: (what it counts, how to count it, the limit). Memory is always limited:
        without ``max_memory``, by what this machine's device holds (``device.memory_budget``)."""
        limits = {key: getattr(self, key) for key in self.MEASURES}
        limits["max_memory"] = limits["max_memory"] or memory_budget()
        return {key: (*self.MEASURES[key], limit) for key, limit in limits.items() if limit is not None}

    def violation(self, candidate: Candidate) -> tuple[str, float] | None:
        """The first limit the candidate breaks, and by how much (as a fraction of the limit)."""
        for key, (unit, measure, limit) in self.active().items():
            value = measure(candidate)
            if value > limit:
                return f"{self.shown(key, value)} {unit} exceed {key} {self.shown(key, limit)}", value / limit - 1
        return None


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file. ``raw`` is the file's mapping, kept to store beside the study."""

    name: str
    data: DataConfig
    family: Param
    model: dict[str, dict[str, Param]]
    training: dict[str, Param]
    objectives: tuple[str, ...]
    sampler: dict[str, Any]
    seed: int
    constraints: Constraints
    trials: int
    raw: dict[str, Any]
    schedule: Schedule = Schedule()
    source: str = "<space>"

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.model)

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        return make_sampler(self.sampler, self.seed if seed is None else seed)

    def for_family(self, family: str) -> SearchSpace:
        """The sub-space of one family, as its own space named ``<name>-<family>`` (for ``ablate``); its
        ``raw``, which the family's study stores, is that family's part of the file alone."""
        model = self.raw.get("model") or {}
        if self.family.kind != "fixed":
            model = {"family": family, **(model.get(family) or {})}
        return space_from_dict({**self.raw, "name": f"{self.name}-{family}", "model": model}, self.source)

    def _prefix(self, family: str) -> str:
        return f"{family}." if self.family.kind != "fixed" else ""

    def _max_groups(self, family: str) -> int:
        params = self.model[family]
        groups, lengths = params.get("groups"), params.get(FAMILIES[family].per_group)
        if groups is not None:
            return max(int(v) for v in groups.values)
        if lengths is not None and lengths.kind in ("fixed", "choice"):
            return max(len(v) if isinstance(v, list) else DEFAULT_GROUPS for v in lengths.values)
        return DEFAULT_GROUPS

    def distributions(self, families: Iterable[str] | None = None) -> dict[str, BaseDistribution]:
        """Every parameter a trial of this space can suggest, by name, with its distribution."""
        found: dict[str, BaseDistribution | None] = {"family": self.family.distribution()}
        for family in self.families if families is None else families:
            prefix, key = self._prefix(family), FAMILIES[family].per_group
            for name, param in self.model[family].items():
                if name == key and param.per_group:
                    for g in range(self._max_groups(family)):
                        found[f"{prefix}{name}_{g}"] = param.distribution()
                else:
                    found[prefix + name] = param.distribution()
        found.update({name: param.distribution() for name, param in self.training.items()})
        return {name: d for name, d in found.items() if d is not None}

    def fixed_values(self) -> dict[str, Any]:
        """Every fixed entry, named as a parameter would be."""
        fixed = {
            f"{self._prefix(family)}{name}": p.values[0]
            for family, params in self.model.items()
            for name, p in params.items()
            if p.kind == "fixed"
        }
        fixed.update({f"training.{name}": p.values[0] for name, p in self.training.items() if p.kind == "fixed"})
        return fixed

    def suggest(self, trial: Any, input_shape: tuple[int, int, int], num_classes: int) -> Candidate:
        """Sample one candidate (``trial``: an Optuna trial, or a FixedTrial); its model takes input shape
        and classes from the data set. Raises ConfigError for a point that cannot be built.

        With a choice of families, parameters are named ``<family>.<key>`` so that each family's ranges
        stay apart in the study.
        """
        family = self.family.suggest(trial, "family")
        params = self.model[family]
        prefix = self._prefix(family)
        key = FAMILIES[family].per_group
        values = {k: p.suggest(trial, prefix + k) for k, p in params.items() if k not in ("groups", key)}
        groups = params["groups"].suggest(trial, prefix + "groups") if "groups" in params else None
        lengths = params.get(key)
        if lengths is not None and lengths.per_group:
            assert groups is not None  # enforced at load
            values[key] = [lengths.suggest(trial, f"{prefix}{key}_{g}") for g in range(groups)]
        elif lengths is not None:
            value = lengths.suggest(trial, prefix + key)
            values[key] = value if isinstance(value, list) else [value] * (groups or DEFAULT_GROUPS)
        elif groups is not None:
            default = getattr(FAMILIES[family].config(), key)
            values[key] = [default[min(g, len(default) - 1)] for g in range(groups)]
        model = ModelConfig.from_dict(
            {"family": family, **values, "input_shape": list(input_shape), "num_classes": num_classes}
        )
        training = TrainingConfig.from_dict({k: p.suggest(trial, k) for k, p in self.training.items()})
        return Candidate(model, training)

    def _at(self, point: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> Candidate | str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return self.suggest(optuna.trial.FixedTrial(point), input_shape, num_classes)
            except ConfigError as e:
                return str(e)

    def smallest(
        self, measure: Callable[[Candidate], int], input_shape: tuple[int, int, int], num_classes: int
    ) -> Candidate:
        """The point of the space with the least ``measure``, by coordinate descent over the ends of every
        range and every choice (exact where the measure grows with each value, as sizes do).

        Raises ConfigError when no point tried builds a model.
        """
        best: tuple[int, Candidate] | None = None
        reason = ""
        for family in self.families:
            options = {
                name: _ends(d) for name, d in self.distributions([family]).items() if not name.startswith("family")
            }
            if self.family.kind != "fixed":
                options["family"] = [family]
            point = {name: values[0] for name, values in options.items()}
            moves = [(None, None)] + [(name, value) for _ in range(2) for name in options for value in options[name]]
            local: tuple[int, Candidate] | None = None  # this family's best so far
            for name, value in moves:
                tried = point if name is None else {**point, name: value}
                candidate = self._at(tried, input_shape, num_classes)
                if isinstance(candidate, str):
                    reason = reason or candidate
                    continue
                score = measure(candidate)
                if local is None or score < local[0]:
                    local, point = (score, candidate), tried
            if local is not None and (best is None or local[0] < best[0]):
                best = local
        if best is None:
            raise ConfigError(f"{self.source}: no point of the space builds a model ({reason})")
        return best[1]

    def check(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        """Before any trial: every group count the space reaches fits the images, and the smallest
        model of the space meets each constraint (else no point could)."""
        self.check_input(input_shape)
        shown = self.constraints.shown
        for key, (unit, measure, limit) in self.constraints.active().items():
            value = measure(self.smallest(measure, input_shape, num_classes))
            if value > limit:
                raise ConfigError(
                    f"{self.source}: constraints.{key}: the smallest model of the space has {shown(key, value)} "
                    f"{unit}, over the limit {shown(key, limit)}; raise the limit or lower the model's ranges"
                )

    def check_input(self, input_shape: tuple[int, int, int]) -> None:
        """Reject a space whose groups cannot all halve this data set's images (its worst point: the
        most groups behind the stem that shrinks the images most)."""
        for family, params in self.model.items():
            strides = [v for v in params["stem_stride"].values if v] if "stem_stride" in params else []
            stems = params["stem"].values if "stem" in params else ("shared",)
            default = 1 if max(input_shape[:2]) <= 32 else 2
            reduction = max(4 if s == "imagenet" else max(strides or [default]) for s in stems)
            most = max((min(input_shape[:2]) // reduction).bit_length() - 1, 0)
            needed = FAMILIES[family].config.downsamplings_of(self._max_groups(family))
            if needed > most:
                h, w = input_shape[:2]
                raise ConfigError(
                    f"{self.source}: model.groups: the space reaches {needed} downsamplings, but a {h}x{w} "
                    f"input can be halved at most {most} times after the stem; lower the upper bound"
                )


def _ends(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    low, high = distribution.low, distribution.high  # type: ignore[attr-defined]
    if isinstance(distribution, FloatDistribution) and distribution.step:
        high = low + ((high - low) // distribution.step) * distribution.step
    elif isinstance(distribution, IntDistribution):
        high = low + ((high - low) // distribution.step) * distribution.step
    return [low, high]


def _section(raw: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
    return value


def _family_params(family: str, section: dict[str, Any], where_base: str) -> dict[str, Param]:
    registered = FAMILIES[family]
    types = registered.config.field_types()
    params: dict[str, Param] = {}
    for key, value in section.items():
        where = f"{where_base}.{key}"
        if key in SET_BY_DATA:
            raise ConfigError(f"{where}: set by the data set, not by the space")
        param = _param(value, where)
        if param.per_group and key != registered.per_group:
            raise ConfigError(f"{where}: per_group applies to {registered.per_group} only")
        if key == "groups":
            if param.kind == "float" or not all(isinstance(v, int) and not isinstance(v, bool) for v in param.values):
                raise ConfigError(f"{where}: expected an integer number of groups")
            if min(param.values) < 1:
                raise ConfigError(f"{where}: a model needs at least one group, got {min(param.values)}")
        elif key not in types:
            known = sorted(set(types) - set(SET_BY_DATA) | {"groups"})
            raise ConfigError(f"{where}: unknown key for family {family} (known: {', '.join(known)})")
        elif key == registered.per_group:
            if param.per_group and "groups" not in section:
                raise ConfigError(f"{where}: per_group needs a groups entry to say how many groups")
            scalar = param.per_group or param.kind == "int" or any(not isinstance(v, list) for v in param.values)
            _check_values(registered.config, key, param, where, per_group=scalar)
        else:
            _check_values(registered.config, key, param, where)
        params[key] = param
    return params


def _model_section(raw: dict[str, Any], source: str) -> tuple[Param, dict[str, dict[str, Param]]]:
    """``family: NAME`` with the metaparameters beside it, or ``family: {choice: [...]}`` with one
    mapping of metaparameters per family, under the family's name."""
    section = dict(_section(raw, "model", source))
    family = _param(section.pop("family", "jumpnet"), f"{source}: model.family")
    if family.kind not in ("fixed", "choice") or family.per_group:
        raise ConfigError(f"{source}: model.family: a family name or {{choice: [names]}} (known: {family_names()})")
    for name in family.values:
        if name not in FAMILIES:
            raise ConfigError(f"{source}: model.family: unknown family {name!r} (known: {family_names()})")
    if family.kind == "fixed":
        return family, {family.values[0]: _family_params(family.values[0], section, f"{source}: model")}
    stray = sorted(set(section) - set(family.values))
    if stray:
        raise ConfigError(
            f"{source}: model.{stray[0]}: with a choice of families, metaparameters go under each family's name"
        )
    return family, {
        name: _family_params(name, _section(section, name, f"{source}: model"), f"{source}: model.{name}")
        for name in family.values
    }


def _training_section(raw: dict[str, Any], source: str) -> dict[str, Param]:
    types = TrainingConfig.field_types()
    params = {}
    for key, value in _section(raw, "training", source).items():
        where = f"{source}: training.{key}"
        if key not in types:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(types)})")
        param = _param(value, where)
        if param.per_group:
            raise ConfigError(f"{where}: per_group applies to the model's blocks_per_group or layers_per_block only")
        _check_values(TrainingConfig, key, param, where)
        params[key] = param
    return params


def _sampler(raw: Any, source: str) -> dict[str, Any]:
    options = {"name": raw} if isinstance(raw, str) else dict(raw or {"name": "tpe"})
    name = options.get("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError(f"{source}: sampler.name: unknown sampler {name!r} (known: {', '.join(SAMPLERS)})")
    accepted = sampler_options(name)
    for key in options:
        if key != "name" and key not in accepted:
            raise ConfigError(
                f"{source}: sampler.{key}: not an option of {name} (options: {', '.join(sorted(accepted))})"
            )
    return {**options, "name": name}


def _constraints(raw: dict[str, Any], source: str) -> Constraints:
    section = _section(raw, "constraints", source)
    keys = tuple(Constraints.MEASURES)
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise ConfigError(f"{source}: constraints.{unknown[0]}: unknown key (known: {', '.join(keys)})")
    return Constraints(**{k: parse_count(section.get(k), f"{source}: constraints.{k}") for k in keys})


def space_from_dict(raw: Any, source: str = "<space>") -> SearchSpace:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of {', '.join(TOP_LEVEL)}")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key (known: {', '.join(TOP_LEVEL)})")
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{source}: name: expected letters, digits, '.', '_' or '-', got {name!r}")
    try:
        data = DataConfig.from_dict(_section(raw, "data", source))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    family, model = _model_section(raw, source)
    training = _training_section(raw, source)
    objectives = raw.get("objectives", ["accuracy", "params"])
    if (
        not isinstance(objectives, list)
        or not objectives
        or len(set(objectives)) != len(objectives)
        or any(o not in OBJECTIVES for o in objectives)
        or objectives[0] != "accuracy"
    ):
        raise ConfigError(f"{source}: objectives: expected distinct names from {', '.join(OBJECTIVES)}, accuracy first")
    seed, trials = raw.get("seed", 0), raw.get("trials", 20)
    for key, value in (("seed", seed), ("trials", trials)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ConfigError(f"{source}: {key}: expected a {'non-negative' if key == 'seed' else 'positive'} integer")
    try:
        schedule = Schedule.from_dict(raw.get("schedule"))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    epochs = training.get("epochs")
    schedule.check_epochs(epochs.values if epochs is not None else (TrainingConfig().epochs,), source)
    repeats = training.get("repeats")
    if schedule.name != "none" and repeats is not None and max(repeats.values) > 1:
        raise ConfigError(f"{source}: training.repeats: a schedule judges one run at its rungs; use one or the other")
    return SearchSpace(
        name=name,
        data=data,
        family=family,
        model=model,
        training=training,
        objectives=tuple(objectives),
        sampler=_sampler(raw.get("sampler"), source),
        seed=seed,
        constraints=_constraints(raw, source),
        trials=trials,
        raw=raw,
        source=source,
        schedule=schedule,
    )


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a space file; errors name the file and the key.

    Example:
        >>> from jumpsearch import load_space
        >>> space = load_space("search_spaces/digits.yaml")
        >>> space.name, space.objectives
        ('digits', ('accuracy', 'params'))
    """
    return space_from_dict(read_yaml(path, "space file"), str(path))


def space_changes(stored: SearchSpace, new: SearchSpace) -> tuple[list[str], list[str]]:
    """How ``new`` differs from the space a study was made with: (changes that would corrupt the study,
    changes it can take). Objectives, the data set, the families and the kind, choices, log scale or
    step of any parameter must stay; ranges, fixed values, budgets, constraints and the sampler may move."""
    breaking: list[str] = []
    noted: list[str] = []
    if stored.objectives != new.objectives:
        breaking.append(f"objectives {list(stored.objectives)} -> {list(new.objectives)}")
    if stored.data != new.data:
        breaking.append(f"data {stored.data.to_dict()} -> {new.data.to_dict()}")
    if stored.families != new.families:
        breaking.append(f"model.family {list(stored.families)} -> {list(new.families)}")
    old_d, new_d = stored.distributions(), new.distributions()
    for name in sorted(set(old_d) & set(new_d)):
        before, after = old_d[name], new_d[name]
        if before == after:
            continue
        same_kind = type(before) is type(after) and not isinstance(before, CategoricalDistribution)
        if same_kind and (before.log, before.step) == (after.log, after.step):  # type: ignore[attr-defined]
            noted.append(f"{name} range [{before.low}, {before.high}] -> [{after.low}, {after.high}]")  # type: ignore[attr-defined]
        else:
            breaking.append(f"{name} {_shown(before)} -> {_shown(after)}")
    for name in sorted(set(old_d) ^ set(new_d)):
        noted.append(f"{name} {'now searched' if name in new_d else 'no longer searched'}")
    old_fixed, new_fixed = stored.fixed_values(), new.fixed_values()
    for name in sorted(set(old_fixed) & set(new_fixed)):
        if old_fixed[name] != new_fixed[name]:
            noted.append(f"{name} {json.dumps(old_fixed[name])} -> {json.dumps(new_fixed[name])}")
    for key in ("constraints", "sampler", "schedule", "trials", "seed"):
        if stored.raw.get(key) != new.raw.get(key):
            noted.append(f"{key} {json.dumps(stored.raw.get(key))} -> {json.dumps(new.raw.get(key))}")
    return breaking, noted


def _shown(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return f"choice {list(distribution.choices)}"
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    d: Any = distribution
    return f"{kind} [{d.low}, {d.high}]" + (", log" if d.log else "") + (f", step {d.step}" if d.step else "")
