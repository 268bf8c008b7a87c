"""Search spaces: a YAML file of fixed values, ranges and choices, turned into candidates by a trial.

A value in the ``model`` or ``training`` section is either fixed (any YAML value) or one of::

    {int: [low, high], step: 1, log: false}
    {float: [low, high], log: true}
    {choice: [a, b, c]}

``blocks_per_group`` takes ``per_group: true`` to search one value per group. Every error names the file
and the key, so a typo never costs a training run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from jumpsearch.config import MODEL_FAMILIES, Candidate, DataConfig, ModelConfig, TrainingConfig, coerce_value
from jumpsearch.errors import ConfigError

OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "flops": "minimize"}
SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
}
TOP_LEVEL = ("name", "data", "model", "training", "objectives", "sampler", "seed", "constraints", "trials")
SET_BY_DATA = ("input_shape", "num_classes")
DEFAULT_GROUPS = 3


def parse_count(value: Any, where: str) -> int | None:
    """``250000``, ``250k``, ``1.5M``, ``2G`` or null."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*", str(value))
    if not match:
        raise ConfigError(f"{where}: expected a count such as 250000, 250k or 1.5M, got {value!r}")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class Param:
    """One entry of a space: ``kind`` is fixed, int, float or choice."""

    kind: str
    values: tuple[Any, ...]
    log: bool = False
    step: float | None = None
    per_group: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "int":
            return trial.suggest_int(name, *self.values, step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(name, *self.values, step=self.step, log=self.log)
        # Optuna's categorical choices must be scalars: lists travel as JSON strings.
        scalar = all(v is None or isinstance(v, (bool, int, float, str)) for v in self.values)
        if scalar:
            return trial.suggest_categorical(name, list(self.values))
        return json.loads(trial.suggest_categorical(name, [json.dumps(v) for v in self.values]))


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


def _check_type(param: Param, hint: Any, where: str) -> None:
    """Hold every value a Param can give to the configuration field's type."""
    if param.kind == "float" and hint in (int, int | None):
        raise ConfigError(f"{where}: a float range for an integer key; use int")
    if param.kind in ("fixed", "choice"):
        for v in param.values:
            coerce_value(where, hint, v)


@dataclass(frozen=True)
class Constraints:
    max_params: int | None = None
    max_flops: int | None = None

    def violation(self, params: int, flops: int) -> str | None:
        if self.max_params is not None and params > self.max_params:
            return f"{params:,} params exceed max_params {self.max_params:,}"
        if self.max_flops is not None and flops > self.max_flops:
            return f"{flops:,} FLOPs exceed max_flops {self.max_flops:,}"
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

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.model)

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        options = dict(self.sampler)
        cls = SAMPLERS[options.pop("name")]
        return cls(seed=self.seed if seed is None else seed, **options)

    def for_family(self, family: str) -> SearchSpace:
        """The sub-space of one family, as its own space named ``<name>-<family>`` (for ``ablate``)."""
        return dataclasses.replace(
            self, name=f"{self.name}-{family}", family=Param("fixed", (family,)), model={family: self.model[family]}
        )

    def max_downsamplings(self) -> int:
        """The most halvings of the feature map any point of the space asks for."""
        most = 0
        for family, params in self.model.items():
            cls = MODEL_FAMILIES[family]
            groups, per_group = params.get("groups"), params.get(_per_group_key(cls))
            if groups is not None:
                count = max(int(v) for v in groups.values)
            elif per_group is not None and per_group.kind in ("fixed", "choice"):
                count = max(len(v) if isinstance(v, list) else DEFAULT_GROUPS for v in per_group.values)
            else:
                count = DEFAULT_GROUPS
            most = max(most, cls(**{_per_group_key(cls): (1,) * count}).downsamplings)
        return most

    def check_input(self, input_shape: tuple[int, int, int], source: str) -> None:
        """Reject, before any trial, a space whose groups cannot all halve this data set's images."""
        strides = [int(v) for p in self.model.values() if "stem_stride" in p for v in p["stem_stride"].values if v]
        smallest = max(strides or [1 if max(input_shape[:2]) <= 32 else 2])
        side = min(input_shape[:2]) // smallest
        most = max(side.bit_length() - 1, 0)
        if self.max_downsamplings() > most:
            raise ConfigError(
                f"{source}: model.groups: the space reaches {self.max_downsamplings()} downsamplings, but a "
                f"{input_shape[0]}x{input_shape[1]} input can be halved at most {most} times; lower the upper bound"
            )

    def suggest(self, trial: optuna.Trial, input_shape: tuple[int, int, int], num_classes: int) -> Candidate:
        """Sample one candidate; its model takes input shape and classes from the data set.

        With a choice of families, parameters are named ``<family>.<key>`` so that each family's ranges
        stay apart in the study.
        """
        family = self.family.suggest(trial, "family")
        params = self.model[family]
        prefix = f"{family}." if self.family.kind != "fixed" else ""
        key = _per_group_key(MODEL_FAMILIES[family])
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
            default = getattr(MODEL_FAMILIES[family](), key)
            values[key] = [default[min(g, len(default) - 1)] for g in range(groups)]
        model = ModelConfig.from_dict(
            {"family": family, **values, "input_shape": list(input_shape), "num_classes": num_classes}
        )
        training = TrainingConfig.from_dict({k: p.suggest(trial, k) for k, p in self.training.items()})
        return Candidate(model, training)


def _per_group_key(cls: type[ModelConfig]) -> str:
    """The family's one-entry-per-group field: blocks_per_group, or layers_per_block for dense blocks."""
    return next(k for k, t in cls.field_types().items() if t == tuple[int, ...])


def _section(raw: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
    return value


def _family_params(family: str, section: dict[str, Any], where_base: str) -> dict[str, Param]:
    cls = MODEL_FAMILIES[family]
    types = cls.field_types()
    per_group_key = _per_group_key(cls)
    params: dict[str, Param] = {}
    for key, value in section.items():
        where = f"{where_base}.{key}"
        if key in SET_BY_DATA:
            raise ConfigError(f"{where}: set by the data set, not by the space")
        if key == "groups":
            param = _param(value, where)
            _check_type(param, int, where)
            if min(int(v) for v in param.values) < 1:
                raise ConfigError(f"{where}: a model needs at least one group")
        elif key not in types:
            known = sorted(set(types) - set(SET_BY_DATA) | {"groups"})
            raise ConfigError(f"{where}: unknown key for family {family} (known: {', '.join(known)})")
        else:
            param = _param(value, where)
            hint = types[key]
            if key == per_group_key:
                if param.per_group and "groups" not in section:
                    raise ConfigError(f"{where}: per_group needs a groups entry to say how many groups")
                hint = int if param.kind in ("int", "float") or param.per_group else int | tuple[int, ...]
            _check_type(param, hint, where)
        if param.per_group and key != per_group_key:
            raise ConfigError(f"{where}: per_group applies to {per_group_key} only")
        params[key] = param
    return params


def _model_section(raw: dict[str, Any], source: str) -> tuple[Param, dict[str, dict[str, Param]]]:
    """``family: NAME`` with the metaparameters beside it, or ``family: {choice: [...]}`` with one
    mapping of metaparameters per family, under the family's name."""
    section = dict(_section(raw, "model", source))
    family = _param(section.pop("family", "jumpnet"), f"{source}: model.family")
    known = ", ".join(sorted(MODEL_FAMILIES))
    if family.kind not in ("fixed", "choice") or family.per_group:
        raise ConfigError(f"{source}: model.family: a family name or {{choice: [names]}} (known: {known})")
    for name in family.values:
        if name not in MODEL_FAMILIES:
            raise ConfigError(f"{source}: model.family: unknown family {name!r} (known: {known})")
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
        _check_type(param, types[key], where)
        params[key] = param
    return params


def _sampler(raw: Any, source: str) -> dict[str, Any]:
    options = {"name": raw} if isinstance(raw, str) else dict(raw or {"name": "tpe"})
    name = options.get("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError(f"{source}: sampler.name: unknown sampler {name!r} (known: {', '.join(SAMPLERS)})")
    accepted = set(inspect.signature(SAMPLERS[name]).parameters) - {"seed"}
    for key in options:
        if key != "name" and key not in accepted:
            raise ConfigError(
                f"{source}: sampler.{key}: not an option of {name} (options: {', '.join(sorted(accepted))})"
            )
    return {**options, "name": name}


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
    constraints_raw = _section(raw, "constraints", source)
    unknown = sorted(set(constraints_raw) - {"max_params", "max_flops"})
    if unknown:
        raise ConfigError(f"{source}: constraints.{unknown[0]}: unknown key (known: max_params, max_flops)")
    constraints = Constraints(
        *(parse_count(constraints_raw.get(k), f"{source}: constraints.{k}") for k in ("max_params", "max_flops"))
    )
    seed, trials = raw.get("seed", 0), raw.get("trials", 20)
    for key, value in (("seed", seed), ("trials", trials)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ConfigError(f"{source}: {key}: expected a {'non-negative' if key == 'seed' else 'positive'} integer")
    return SearchSpace(
        name=name,
        data=data,
        family=family,
        model=model,
        training=training,
        objectives=tuple(objectives),
        sampler=_sampler(raw.get("sampler"), source),
        seed=seed,
        constraints=constraints,
        trials=trials,
        raw=raw,
    )


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a space file; errors name the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the space file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({' '.join(str(e).split())})") from None
    return space_from_dict(raw, str(path))
