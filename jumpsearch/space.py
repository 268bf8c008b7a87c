"""Search spaces: a YAML file of fixed values, ranges and choices, turned into candidates by a trial.

A value in the ``model`` or ``training`` section is either fixed (any YAML value) or one of::

    {int: [low, high], step: 1, log: false}
    {float: [low, high], log: true}
    {choice: [a, b, c]}

``blocks_per_group`` takes ``per_group: true`` to search one value per group. Every error names the file
and the key, so a typo never costs a training run.
"""

from __future__ import annotations

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
    family: str
    model: dict[str, Param]
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

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        options = dict(self.sampler)
        cls = SAMPLERS[options.pop("name")]
        return cls(seed=self.seed if seed is None else seed, **options)

    def max_groups(self) -> int:
        """The most downsampling groups any point of the space asks for."""
        groups = self.model.get("groups")
        blocks = self.model.get("blocks_per_group")
        if groups is not None:
            return max(int(v) for v in groups.values)
        if blocks is not None and blocks.kind in ("fixed", "choice"):
            return max(len(v) if isinstance(v, list) else 3 for v in blocks.values)
        return 3

    def check_input(self, input_shape: tuple[int, int, int], source: str) -> None:
        """Reject, before any trial, a space whose groups cannot all halve this data set's images."""
        stride = self.model.get("stem_stride")
        strides = [int(v) for v in stride.values if v is not None] if stride else []
        smallest = max(strides or [1 if max(input_shape[:2]) <= 32 else 2])
        side = min(input_shape[:2]) // smallest
        most = max(side.bit_length() - 1, 0)
        if self.max_groups() > most:
            raise ConfigError(
                f"{source}: model.groups: the space reaches {self.max_groups()} groups, but a "
                f"{input_shape[0]}x{input_shape[1]} input can be halved at most {most} times; lower the upper bound"
            )

    def suggest(self, trial: optuna.Trial, input_shape: tuple[int, int, int], num_classes: int) -> Candidate:
        """Sample one candidate; its model takes input shape and classes from the data set."""
        values: dict[str, Any] = {}
        for key, param in self.model.items():
            if key not in ("groups", "blocks_per_group"):
                values[key] = param.suggest(trial, key)
        blocks = self.model.get("blocks_per_group")
        groups = self.model["groups"].suggest(trial, "groups") if "groups" in self.model else None
        if blocks is not None:
            if blocks.per_group:
                assert groups is not None  # enforced at load
                values["blocks_per_group"] = [blocks.suggest(trial, f"blocks_per_group_{g}") for g in range(groups)]
            else:
                value = blocks.suggest(trial, "blocks_per_group")
                values["blocks_per_group"] = value if isinstance(value, list) else [value] * (groups or 3)
        elif groups is not None:
            values["blocks_per_group"] = [3] * groups
        model = ModelConfig.from_dict(
            {"family": self.family, **values, "input_shape": list(input_shape), "num_classes": num_classes}
        )
        training = TrainingConfig.from_dict({k: p.suggest(trial, k) for k, p in self.training.items()})
        return Candidate(model, training)


def _section(raw: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
    return value


def _model_section(raw: dict[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    section = dict(_section(raw, "model", source))
    family = section.pop("family", "jumpnet")
    if family not in MODEL_FAMILIES:
        raise ConfigError(
            f"{source}: model.family: unknown family {family!r} (known: {', '.join(sorted(MODEL_FAMILIES))})"
        )
    types = MODEL_FAMILIES[family].field_types()
    params: dict[str, Param] = {}
    for key, value in section.items():
        where = f"{source}: model.{key}"
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
            if key == "blocks_per_group":
                if param.per_group and "groups" not in section:
                    raise ConfigError(f"{where}: per_group needs a groups entry to say how many groups")
                hint = int if param.kind in ("int", "float") or param.per_group else int | tuple[int, ...]
            _check_type(param, hint, where)
        if param.per_group and key != "blocks_per_group":
            raise ConfigError(f"{where}: per_group applies to blocks_per_group only")
        params[key] = param
    return family, params


def _training_section(raw: dict[str, Any], source: str) -> dict[str, Param]:
    types = TrainingConfig.field_types()
    params = {}
    for key, value in _section(raw, "training", source).items():
        where = f"{source}: training.{key}"
        if key not in types:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(types)})")
        param = _param(value, where)
        if param.per_group:
            raise ConfigError(f"{where}: per_group applies to model.blocks_per_group only")
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
