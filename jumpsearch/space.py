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

import inspect
import json
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

from jumpsearch.config import FAMILIES, Candidate, DataConfig, ModelConfig, TrainingConfig, clip, echo, family_names
from jumpsearch.counting import count, training_memory
from jumpsearch.device import memory_budget
from jumpsearch.ehvi import space_view
from jumpsearch.errors import ConfigError
from jumpsearch.samplers import (
    DEFAULT_SAMPLER,
    EXHAUSTIVE,
    NEEDS_SPACE,
    SAMPLERS,
    make_sampler,
    missing_dependency,
    sampler_options,
)
from jumpsearch.schedule import Schedule

if TYPE_CHECKING:
    from jumpsearch.data import Dataset

OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "flops": "minimize"}
TOP_LEVEL = (
    "name", "data", "model", "training", "objectives", "sampler", "schedule", "seed", "constraints", "trials"
)  # fmt: skip
SET_BY_DATA = ("input_shape", "num_classes")
DEFAULT_GROUPS = 3
MAX_SEED = 2**32 - 1  # what NumPy and every backend accept
OPTION_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}  # a sampler option's, by name


MAX_FILE_BYTES = 2**20  # space and export files hold a few kilobytes: anything larger is the wrong file
MAX_VALUES = 10_000  # values a file may expand to, each use of an alias counted again ("billion laughs")
MAX_DEPTH = 32  # nesting of lists and mappings; a space file needs six


class _Refused(Exception):
    """A file the loader will not read (a duplicate key, too many values): the message says where."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as people write numbers: ``1e-4`` is a float (YAML 1.1 wants ``1.0e-4`` and reads a string).
    A key given twice in one mapping is refused (YAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first:
                raise _Refused(
                    f"line {line}: duplicate key {echo(key.value)} (first given at line {first[key.tag, key.value]})"
                )
            first[key.tag, key.value] = line
        return super().construct_mapping(node, deep)


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


def _expanded(node: yaml.Node, sizes: dict[int, int], depth: int = 0) -> int:
    """How many values a node stands for once its aliases are expanded (each node counted once per
    use, computed once per node): refused beyond MAX_VALUES, or deeper than MAX_DEPTH (a recursive alias)."""
    if depth > MAX_DEPTH:
        raise _Refused(f"line {node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
    if id(node) not in sizes:
        children = node.value if isinstance(node, yaml.SequenceNode) else []
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        sizes[id(node)] = 1 + sum(_expanded(child, sizes, depth + 1) for child in children)
        if sizes[id(node)] > MAX_VALUES:
            raise _Refused(
                f"line {node.start_mark.line + 1}: expands to more than {MAX_VALUES:,} values (through YAML aliases)"
            )
    return sizes[id(node)]


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """A YAML (or JSON) file's contents, with numbers read as people write them; errors name the file.

    Refused in one line: a file over MAX_FILE_BYTES, not UTF-8, a key given twice, or aliases that
    expand beyond MAX_VALUES values."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # never more: the path may be a device or a pipe
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: cannot read the {what}: larger than {MAX_FILE_BYTES // 2**10:,} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: cannot read the {what}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node, {})
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({' '.join(str(e).split())[:300]})") from None
    except _Refused as e:
        raise ConfigError(f"{path}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def parse_count(value: Any, where: str) -> int | None:
    """``250000``, ``250k``, ``1.5M``, ``2G`` or null."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        if value is not None and value < 1:
            raise ConfigError(f"{where}: expected a positive count, got {echo(value)}")
        return value
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)\s*", str(value))
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[match.group(2).lower()] if match else 0
    count = round(float(match.group(1)) * scale) if match else 0
    if not match or count < 1 or abs(float(match.group(1)) * scale - count) > 1e-6 * count:  # 1.5 weights: no
        raise ConfigError(f"{where}: expected a count such as 250000, 250k or 1.5M, got {echo(value)}")
    return count


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

    def admits(self, value: Any) -> bool:
        """Whether the entry can give ``value`` (a configuration's value, lists as lists)."""
        if self.kind in ("int", "float"):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return number and self.values[0] <= value <= self.values[1]
        return value in self.values

    def admits_groups(self, value: list[Any]) -> bool:
        """Whether the per-group entry can give ``value``, one element per group."""
        if value in [v for v in self.values if isinstance(v, list)]:
            return True
        if self.per_group:
            return all(self.admits(v) for v in value)
        return len(set(value)) == 1 and self.admits(value[0])

    def describe(self) -> str:
        if self.kind == "fixed":
            return clip(json.dumps(self.values[0]))
        if self.kind == "choice":
            return f"choice {clip(json.dumps(list(self.values)))}"
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
            raise ConfigError(f"{where}.choice: an option appears twice in {echo(values)}")
        if log or step is not None:
            raise ConfigError(f"{where}: log and step apply to int and float ranges, not to choice")
        return Param("choice", tuple(values), per_group=per_group)
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(values, list)
        or len(values) != 2
        or not all(isinstance(v, number) and not isinstance(v, bool) for v in values)
    ):
        raise ConfigError(f"{where}.{kind}: expected [low, high] with {kind} bounds, got {echo(values)}")
    low, high = values
    if low > high:
        raise ConfigError(f"{where}.{kind}: empty range [{low}, {high}] (low is above high)")
    if log and low <= 0:
        raise ConfigError(f"{where}.{kind}: a log range needs a positive low bound, got {low}")
    if step is not None and (log or isinstance(step, bool) or not isinstance(step, number) or step <= 0):
        raise ConfigError(f"{where}.step: expected a positive {kind} step without log, got {echo(step)}")
    if kind == "float":
        low, high = float(low), float(high)
    param = Param(kind, (low, high), log=log, step=step, per_group=per_group)
    with warnings.catch_warnings():  # Optuna warns, then moves the high end to the last step under it
        warnings.simplefilter("ignore")
        ends = param.distribution()
    if (ends.low, ends.high) != (low, high):  # type: ignore[union-attr]
        raise ConfigError(
            f"{where}.step: {step} does not divide the range [{low}, {high}] (it would end at {ends.high})"  # type: ignore[union-attr]
        )
    return param


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

    def make_sampler(self, seed: int | None = None, data: Dataset | None = None) -> optuna.samplers.BaseSampler:
        """The space's sampler; ``data``, the data set trials train on, for one that counts candidate
        points before proposing one (``ehvi``)."""
        view = space_view(self, data) if data is not None and self.sampler["name"] in NEEDS_SPACE else None
        return make_sampler(self.sampler, self.seed if seed is None else seed, view)

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

    def outside(self, trial: FrozenTrial) -> str | None:
        """Why a trained trial is not a point of this space, or None. After a compatible edit on resume (a
        narrower range, another fixed value or recipe, a lower limit), the study's earlier trials may lie
        outside the space as it now is: what ranks them beside the new ones must leave them out."""
        config = trial.user_attrs.get("config") or {}
        model, training = config.get("model") or {}, config.get("training") or {}
        family = model.get("family")
        if family not in self.model:
            return f"model.family {echo(family)} is no longer searched"
        per_group = FAMILIES[family].per_group
        checks = [(f"training.{key}", param, training.get(key)) for key, param in self.training.items()]
        for key, param in self.model[family].items():
            value = len(model.get(per_group) or ()) if key == "groups" else model.get(key)
            if key == per_group and not (isinstance(value, list) and param.admits_groups(value)):
                return f"model.{key} {echo(value)} is outside {param.describe()}"
            if key != per_group:
                checks.append((f"model.{key}", param, value))
        for where, param, value in checks:
            if not param.admits(value):
                return f"{where} {echo(value)} is outside {param.describe()}"
        measured = {"max_params": trial.user_attrs.get("params"), "max_flops": trial.user_attrs.get("flops")}
        if self.constraints.max_memory is not None:  # only a limit the space sets: not this machine's memory
            measured["max_memory"] = training_memory(Candidate.from_dict(config))
        for key, value in measured.items():
            limit = getattr(self.constraints, key)
            if limit is not None and value is not None and value > limit:
                unit, shown = Constraints.MEASURES[key][0], Constraints.shown
                return f"{shown(key, value)} {unit} exceed {key} {shown(key, limit)}"
        return None

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
        lengths = params.get(key)
        value = lengths.suggest(trial, prefix + key) if lengths is not None and not lengths.per_group else None
        # A list sets the groups by its length: groups is drawn only when it decides something.
        groups = (
            params["groups"].suggest(trial, prefix + "groups")
            if "groups" in params and not isinstance(value, list)
            else None
        )
        if lengths is not None and lengths.per_group:
            assert groups is not None  # enforced at load
            values[key] = [lengths.suggest(trial, f"{prefix}{key}_{g}") for g in range(groups)]
        elif lengths is not None:
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


def _section(value: Any, where: str) -> dict[str, Any]:
    """A mapping of the file (absent or null: empty), or ConfigError naming where it is."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {echo(value)}")
    return value


def _plain(value: Any, source: str, where: str = "") -> None:
    """Only what JSON holds, under names: the study stores the space as JSON and trials travel as it
    (YAML also reads dates, sets, bytes and keys that are numbers)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{source}: {where or 'top level'}: the key {echo(key)} is not a name; quote it")
            _plain(item, source, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, source, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float))):
        raise ConfigError(
            f"{source}: {where}: expected a number, a string, true/false, a list or a mapping, got {echo(value)}"
        )


def _group_counts(groups: Param) -> set[int]:
    """The numbers of groups an entry for ``groups`` can give."""
    if groups.kind == "int":
        return set(range(groups.values[0], groups.values[1] + 1, int(groups.step or 1)))
    return set(groups.values)


def _check_lengths(params: dict[str, Param], key: str, where_base: str) -> None:
    """A list of the per-group key sets the number of groups by its length: each list must be one that
    ``groups`` allows, and ``groups`` must count for some draw (else the sampler learns from a parameter
    that changes nothing)."""
    lengths, groups = params.get(key), params.get("groups")
    if lengths is None or groups is None or lengths.per_group:
        return
    lists = [v for v in lengths.values if isinstance(v, list)]
    allowed = _group_counts(groups)
    section = where_base.rpartition(": ")[2]  # the key path, without the file
    for value in lists:
        if len(value) not in allowed:
            raise ConfigError(
                f"{where_base}.{key}: {echo(value)} makes {len(value)} groups, but {section}.groups is "
                f"{groups.describe()}; give lists of a length it allows"
            )
    if len(lists) == len(lengths.values) and groups.kind != "fixed":
        raise ConfigError(
            f"{where_base}.groups: searched, but every value of {section}.{key} is a list whose length sets "
            f"the groups; drop {section}.groups, or give {key} numbers"
        )


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
                raise ConfigError(f"{where}: expected an integer number of groups, got {param.describe()}")
            if min(param.values) < 1:
                raise ConfigError(f"{where}: a model needs at least one group, got {min(param.values)}")
        elif key not in types:
            known = sorted(set(types) - set(SET_BY_DATA) | {"groups"})
            raise ConfigError(f"{where}: unknown key for family {family} (known: {', '.join(known)})")
        elif key == registered.per_group:
            if param.per_group and "groups" not in section:
                raise ConfigError(f"{where}: per_group needs a groups entry to say how many groups")
            if param.per_group and not all(isinstance(v, (int, float)) for v in param.values):
                raise ConfigError(f"{where}: per_group draws one number per group; give numbers, not lists")
            scalar = param.per_group or param.kind == "int" or any(not isinstance(v, list) for v in param.values)
            _check_values(registered.config, key, param, where, per_group=scalar)
        else:
            _check_values(registered.config, key, param, where)
        params[key] = param
    _check_lengths(params, registered.per_group, where_base)
    return params


def _model_section(raw: dict[str, Any], source: str) -> tuple[Param, dict[str, dict[str, Param]]]:
    """``family: NAME`` with the metaparameters beside it, or ``family: {choice: [...]}`` with one
    mapping of metaparameters per family, under the family's name."""
    section = dict(_section(raw.get("model"), f"{source}: model"))
    family = _param(section.pop("family", "jumpnet"), f"{source}: model.family")
    if family.kind not in ("fixed", "choice") or family.per_group:
        raise ConfigError(f"{source}: model.family: a family name or {{choice: [names]}} (known: {family_names()})")
    for name in family.values:
        if not isinstance(name, str) or name not in FAMILIES:
            raise ConfigError(f"{source}: model.family: unknown family {echo(name)} (known: {family_names()})")
    if family.kind == "fixed":
        return family, {family.values[0]: _family_params(family.values[0], section, f"{source}: model")}
    stray = sorted(set(section) - set(family.values))
    if stray:
        raise ConfigError(
            f"{source}: model.{stray[0]}: with a choice of families, metaparameters go under each family's name"
        )
    return family, {
        name: _family_params(name, _section(section.get(name), f"{source}: model.{name}"), f"{source}: model.{name}")
        for name in family.values
    }


def _training_section(raw: dict[str, Any], source: str) -> dict[str, Param]:
    types = TrainingConfig.field_types()
    params = {}
    for key, value in _section(raw.get("training"), f"{source}: training").items():
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
    """``name`` or ``{name: ..., option: value}``; each option's value is held to the type the sampler
    declares for it (one that only Python can give, such as a function, cannot be set in a file)."""
    if raw is not None and not isinstance(raw, (str, dict)):
        raise ConfigError(f"{source}: sampler: expected a name or a mapping with name, got {echo(raw)}")
    options = {"name": raw} if isinstance(raw, str) else dict(raw or {"name": DEFAULT_SAMPLER})
    name = options.get("name", DEFAULT_SAMPLER)
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ConfigError(f"{source}: sampler.name: unknown sampler {echo(name)} (known: {', '.join(SAMPLERS)})")
    declared = inspect.signature(SAMPLERS[name]).parameters
    accepted = sampler_options(name)
    for key, value in options.items():
        if key == "name":
            continue
        if key not in accepted:
            raise ConfigError(
                f"{source}: sampler.{key}: not an option of {name} (options: {', '.join(sorted(accepted))})"
            )
        kinds = {part.strip() for part in str(declared[key].annotation).split("|")}
        allowed = tuple(t for kind in sorted(kinds) for t in OPTION_TYPES.get(kind, ()))
        if not allowed:
            raise ConfigError(f"{source}: sampler.{key}: takes a Python object, which a space file cannot give")
        ok = (value is None and "None" in kinds) or (
            isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))
        )
        if not ok:
            raise ConfigError(f"{source}: sampler.{key}: expected {' or '.join(sorted(kinds))}, got {echo(value)}")
    try:  # the sampler's own checks of its options (a wrapper builds it only when a trial asks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SAMPLERS[name](seed=0, **{k: v for k, v in options.items() if k != "name"})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: sampler: {name} refuses its options ({echo(str(e))})") from None
    missing = missing_dependency(name)
    if missing:
        raise ConfigError(f"{source}: sampler.name: {missing}")
    return {**options, "name": name}


def _constraints(raw: dict[str, Any], source: str) -> Constraints:
    section = _section(raw.get("constraints"), f"{source}: constraints")
    keys = tuple(Constraints.MEASURES)
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise ConfigError(f"{source}: constraints.{unknown[0]}: unknown key (known: {', '.join(keys)})")
    return Constraints(**{k: parse_count(section.get(k), f"{source}: constraints.{k}") for k in keys})


def space_from_dict(raw: Any, source: str = "<space>") -> SearchSpace:
    """Check a space's mapping (as read from a file, or as a study stored it); errors name the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of {', '.join(TOP_LEVEL)}, got {echo(raw)}")
    _plain(raw, source)
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key (known: {', '.join(TOP_LEVEL)})")
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{source}: name: expected letters, digits, '.', '_' or '-', got {echo(name)}")
    try:
        data = DataConfig.from_dict(_section(raw.get("data"), "data"))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    family, model = _model_section(raw, source)
    training = _training_section(raw, source)
    objectives = raw.get("objectives", ["accuracy", "params"])
    if (
        not isinstance(objectives, list)
        or not objectives
        or not all(isinstance(o, str) and o in OBJECTIVES for o in objectives)
        or len(set(objectives)) != len(objectives)
        or objectives[0] != "accuracy"
    ):
        raise ConfigError(
            f"{source}: objectives: expected distinct names from {', '.join(OBJECTIVES)}, accuracy first, "
            f"got {echo(objectives)}"
        )
    seed, trials = raw.get("seed", 0), raw.get("trials", 20)
    for key, value, least, most in (("seed", seed, 0, MAX_SEED), ("trials", trials, 1, None)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least or value > (most or value):
            says = f"an integer from {least} to {most}" if most else "a positive integer"
            raise ConfigError(f"{source}: {key}: expected {says}, got {echo(value)}")
    try:
        schedule = Schedule.from_dict(raw.get("schedule"))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    epochs = training.get("epochs")
    schedule.check_epochs(epochs.values if epochs is not None else (TrainingConfig().epochs,), source)
    repeats = training.get("repeats")
    if schedule.name != "none" and repeats is not None and max(repeats.values) > 1:
        raise ConfigError(f"{source}: training.repeats: a schedule judges one run at its rungs; use one or the other")
    space = SearchSpace(
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
    if space.sampler["name"] in EXHAUSTIVE:
        for key, distribution in space.distributions().items():
            if isinstance(distribution, FloatDistribution) and distribution.step is None:
                where = f"training.{key}" if key in space.training else f"model.{key}"
                raise ConfigError(
                    f"{source}: {where}: a float range without a step has no end of points; the "
                    f"{space.sampler['name']} sampler trains every point: give a step or a choice"
                )
    return space


def stored_space(raw: Any, study_name: str) -> SearchSpace:
    """The space a study stores (its ``space`` user attribute), checked as a file would be; one read from a
    file without ``name:`` gets a placeholder name (a stored space has no file name to fall back on)."""
    named = {"name": "stored", **raw} if isinstance(raw, dict) and "name" not in raw else raw
    return space_from_dict(named, f"study {study_name!r}")


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
        breaking.append(f"data {echo(stored.data.to_dict())} -> {echo(new.data.to_dict())}")
    if stored.families != new.families:
        breaking.append(f"model.family {list(stored.families)} -> {list(new.families)}")
    old_d, new_d = stored.distributions(), new.distributions()
    ranges: list[str] = []  # what a sampler that models parameters jointly would not follow
    for name in sorted(set(old_d) & set(new_d)):
        before, after = old_d[name], new_d[name]
        if before == after:
            continue
        same_kind = type(before) is type(after) and not isinstance(before, CategoricalDistribution)
        if same_kind and (before.log, before.step) == (after.log, after.step):  # type: ignore[attr-defined]
            ranges.append(f"{name} range [{before.low}, {before.high}] -> [{after.low}, {after.high}]")  # type: ignore[attr-defined]
        else:
            breaking.append(f"{name} {_shown(before)} -> {_shown(after)}")
    ranges += [f"{name} now searched" for name in sorted(set(new_d) - set(old_d))]
    noted += [f"{name} no longer searched" for name in sorted(set(old_d) - set(new_d))]
    joint = _joint_sampling(new.sampler)
    if joint:
        breaking += [f"{change} ({joint})" for change in ranges]
    else:
        noted += ranges
    old_fixed, new_fixed = stored.fixed_values(), new.fixed_values()
    for name in sorted(set(old_fixed) & set(new_fixed)):
        if old_fixed[name] != new_fixed[name]:
            noted.append(f"{name} {clip(json.dumps(old_fixed[name]))} -> {clip(json.dumps(new_fixed[name]))}")
    for key in ("constraints", "sampler", "schedule", "trials", "seed"):
        if stored.raw.get(key) != new.raw.get(key):
            noted.append(f"{key} {clip(json.dumps(stored.raw.get(key)))} -> {clip(json.dumps(new.raw.get(key)))}")
    return breaking, noted


def _joint_sampling(sampler: dict[str, Any]) -> str | None:
    """Why the sampler would not follow an edited or added range (None for one that would): Optuna's
    QMCSampler draws from its first trial's distributions, and NSGA-II and multivariate TPE model only
    the parameters whose distribution every trial shares (the others are drawn apart: NSGA-II at random)."""
    if sampler["name"] == "qmc":
        return "qmc draws from its first trial's ranges: the edit would not take effect"
    if sampler["name"] == "nsga2" or sampler.get("multivariate"):
        return f"{sampler['name']} would no longer model it with the other parameters"
    return None


def _shown(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return f"choice {echo(list(distribution.choices))}"
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    d: Any = distribution
    return f"{kind} [{d.low}, {d.high}]" + (", log" if d.log else "") + (f", step {d.step}" if d.step else "")
