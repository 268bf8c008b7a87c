"""Configurations as plain data, checked when they are made.

A configuration is a frozen dataclass that round-trips through dicts, JSON and YAML, so a trial can
store it, a file can carry it, and a fresh interpreter can rebuild the model from it with nothing else.
Every field carries its rule; ``__post_init__`` coerces and checks each field, then the class's
cross-field rules, so a configuration that exists is one that builds. A search space checks its ranges
against the same rules (``check_field``) before any trial exists.

Families register themselves with ``register_family`` in their own module under ``jumpsearch.models``,
beside their template and named configurations.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from jumpsearch.errors import ConfigError

# ---------------------------------------------------------------------------------------------- rules

ECHOED = 80  # characters of a value an error message shows back
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, ECHOED, ECHOED


def clip(text: str) -> str:
    """Text an error message shows back, cut to ECHOED characters."""
    return text if len(text) <= ECHOED else text[: ECHOED - 3] + "..."


def echo(value: Any) -> str:
    """A value as an error message shows it back: its repr, cut short (a file may hold huge structures,
    and one line must stay one readable line)."""
    return clip(_REPR.repr(value))


@dataclass(frozen=True)
class Rule:
    """What a field accepts, as a predicate and the words an error uses ("must be positive")."""

    ok: Callable[[Any], bool]
    says: str


def rule(default: Any, ok: Callable[[Any], bool] | None = None, says: str = "") -> Any:
    """A dataclass field whose values are checked by ``ok`` (after coercion to the field's type)."""
    return field(default=default, metadata={"rule": Rule(ok, says)} if ok else {})


def at_least(n: float) -> Callable[[Any], bool]:
    return lambda v: v >= n


def positive(v: Any) -> bool:
    return v > 0


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices


def each(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: len(v) > 0 and all(check(x) for x in v)


def coerce_value(name: str, hint: Any, value: Any) -> Any:
    """Turn JSON/YAML values (lists, ints for floats) into the field's declared type, or say why not."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        error = ConfigError(f"{name}: unexpected value {echo(value)}")
        for alternative in (a for a in args if a is not type(None)):
            try:
                return coerce_value(name, alternative, value)
            except ConfigError as e:
                error = e
        raise error
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {echo(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce_value(name, args[0], v) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
        return tuple(coerce_value(name, a, v) for a, v in zip(args, value, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {echo(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {echo(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {echo(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{name}: expected a finite number, got {echo(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {echo(value)}")
        return value
    return value


class _PlainData:
    """Dict/JSON/YAML round-trip and field checks shared by every configuration dataclass."""

    section: ClassVar[str] = ""  # how errors name this configuration: model, training, data

    def __post_init__(self) -> None:
        for name in self.field_types():
            value = self.check_field(name, getattr(self, name))
            object.__setattr__(self, name, value)  # frozen: coercion (list → tuple, 1 → 1.0) happens once
        self.check()

    def check(self) -> None:
        """Rules that span fields; each class adds its own."""

    @classmethod
    def check_field(cls, name: str, value: Any) -> Any:
        """``value`` coerced to the field's type, or ConfigError naming the key and the value received."""
        where = f"{cls.section}.{name}"
        value = coerce_value(where, cls.field_types()[name], value)
        checked = cls._rule(name)
        if checked is not None and value is not None and not checked.ok(value):
            shown = echo(list(value) if isinstance(value, tuple) else value)
            raise ConfigError(f"{where}: {checked.says}, got {shown}")
        return value

    @classmethod
    @functools.cache
    def _rule(cls, name: str) -> Rule | None:
        """The field's rule, from the class that declared it: a subclass may change a default alone."""
        for klass in cls.__mro__:
            declared = getattr(klass, "__dataclass_fields__", {}).get(name)
            if declared is not None and "rule" in declared.metadata:
                return declared.metadata["rule"]
        return None

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return [plain(x) for x in v] if isinstance(v, tuple) else v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    @functools.cache
    def field_types(cls) -> dict[str, Any]:
        """Declared type of each field, for checking a search space against this configuration."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def _from_fields(cls, data: Any, where: str) -> Any:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {echo(data)}")
        hints = cls.field_types()
        unknown = sorted(set(data) - set(hints), key=str)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(hints))})")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------- models

STEMS = ("shared", "cifar", "imagenet")


@dataclass(frozen=True)
class Family:
    """A registered model family: its configuration class, its template (read by ``KerasOps`` to build
    and by ``CountOps`` to count), its one-entry-per-group field and its named configurations."""

    name: str
    config: type[ModelConfig]
    template: Callable[..., Any]
    per_group: str
    canonical: Mapping[str, Mapping[str, Any]]


FAMILIES: dict[str, Family] = {}


def register_family(
    name: str,
    *,
    template: Callable[..., Any],
    per_group: str,
    canonical: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[type[ModelConfig]], type[ModelConfig]]:
    """Class decorator: make a configuration class the family ``name``.

    ``canonical`` maps names to the fields that differ from the class's defaults, e.g.
    ``{"resnet_v2_164": {"stem": "cifar"}}``; ``canonical_config(name)`` builds them.
    """

    def register(cls: type[ModelConfig]) -> type[ModelConfig]:
        if name in FAMILIES:
            raise ValueError(f"family {name!r} is registered twice")
        if per_group not in cls.field_types():
            raise ValueError(f"family {name!r}: per_group {per_group!r} is not a field of {cls.__name__}")
        cls.family = name
        FAMILIES[name] = Family(name, cls, template, per_group, dict(canonical or {}))
        return cls

    return register


def family_names() -> str:
    return ", ".join(sorted(FAMILIES))


@dataclass(frozen=True)
class ModelConfig(_PlainData):
    """What every family shares: the input the data set fixes, the stem and the classifier.

    ``stem`` is ``shared`` (conv 3×3 → BN → ReLU → conv 3×3 → BN → ReLU, ``stem_filters`` = [s0, s1]; the
    default, so that families compared in one search differ only in their learner), ``cifar`` (one 3×3
    convolution that the first pre-activation block follows directly, ``stem_filters`` = [s0]) or
    ``imagenet`` (conv 7×7 stride 2 → BN → ReLU → 3×3 max-pool stride 2, ``stem_filters`` = [s0]).
    ``from_dict`` dispatches on the ``family`` key, so one loader reads a configuration of any family.
    """

    section: ClassVar[str] = "model"
    family: ClassVar[str] = ""
    input_shape: tuple[int, int, int] = rule((32, 32, 3), each(at_least(1)), "every dimension must be at least 1")
    num_classes: int = rule(10, at_least(2), "a classifier needs at least 2 classes")
    stem: str = rule("shared", one_of(*STEMS), f"must be one of {', '.join(STEMS)}")
    stem_filters: tuple[int, ...] = rule((16, 32), each(at_least(1)), "expected widths of at least 1")
    stem_stride: int | None = rule(None, one_of(1, 2), "must be 1, 2 or null")
    filter_multiple: int = rule(8, at_least(1), "must be at least 1")

    def check(self) -> None:
        widths = 2 if self.stem == "shared" else 1
        if len(self.stem_filters) != widths:
            raise ConfigError(
                f"model.stem_filters: the {self.stem} stem takes {widths} width{'s' * (widths > 1)}, "
                f"got {list(self.stem_filters)}"
            )
        h, w, _ = self.input_shape
        side = min(h, w) // self.stem_reduction
        if side < 2**self.downsamplings:
            raise ConfigError(
                f"model: {self.downsamplings} downsamplings need an input of at least {2**self.downsamplings} "
                f"pixels after the stem, but a {h}x{w} input with a {self.stem} stem of stride "
                f"{self.stem_reduction} leaves {side}"
            )

    @property
    def stride(self) -> int:
        """The first convolution's stride: 1 for images of 32 pixels or less (CIFAR, digits), else 2;
        the ImageNet stem always strides 2."""
        if self.stem == "imagenet":
            return 2
        if self.stem_stride is not None:
            return self.stem_stride
        return 1 if max(self.input_shape[:2]) <= 32 else 2

    @property
    def stem_reduction(self) -> int:
        """How much the stem shrinks each side: its stride, and the ImageNet stem's max-pool."""
        return 4 if self.stem == "imagenet" else self.stride

    @property
    def groups(self) -> int:
        """Entries of the family's per-group field: groups of blocks, or dense blocks."""
        return len(getattr(self, FAMILIES[self.family].per_group))

    @classmethod
    def downsamplings_of(cls, groups: int) -> int:
        """How many times the learner halves the feature map, with this many groups."""
        raise NotImplementedError

    @property
    def downsamplings(self) -> int:
        return self.downsamplings_of(self.groups)

    def round_filters(self, x: float) -> int:
        """Round a width to a multiple of ``filter_multiple`` (at least one multiple)."""
        m = self.filter_multiple
        return max(m, int(math.floor(x / m + 0.5)) * m)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **super().to_dict()}

    @staticmethod
    def family_of(data: Any, where: str = "model") -> type[ModelConfig]:
        family = data.get("family", "jumpnet") if isinstance(data, dict) else None
        if not isinstance(family, str) or family not in FAMILIES:
            raise ConfigError(f"{where}.family: unknown family {echo(family)} (known: {family_names()})")
        return FAMILIES[family].config

    @staticmethod
    def from_dict(data: Any, where: str = "model") -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {echo(data)}")
        cls = ModelConfig.family_of(data, where)
        return cls._from_fields({k: v for k, v in data.items() if k != "family"}, where)


@dataclass(frozen=True)
class GroupedConfig(ModelConfig):
    """Residual groups of blocks whose widths grow geometrically: what JumpNet and ResNet v2 share."""

    blocks_per_group: tuple[int, ...] = rule((3, 4, 3), each(at_least(1)), "need at least one group of 1+ blocks")
    base_filters: int = rule(32, at_least(1), "must be at least 1")
    growth_rate: float = rule(2.0, positive, "must be positive")

    @property
    def group_filters(self) -> tuple[int, ...]:
        """F_g = F_0 · r^g, rounded to a multiple of ``filter_multiple``."""
        return tuple(self.round_filters(self.base_filters * self.growth_rate**g) for g in range(self.groups))


# ---------------------------------------------------------------------------------------------- training

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainingConfig(_PlainData):
    """The recipe a trial trains with: brief in a search, long in ``train``."""

    section: ClassVar[str] = "training"
    optimizer: str = rule("adam", one_of(*OPTIMIZERS), f"unknown optimizer (known: {', '.join(OPTIMIZERS)})")
    learning_rate: float = rule(1e-3, positive, "must be positive")
    batch_size: int = rule(64, at_least(1), "must be at least 1")
    epochs: int = rule(5, at_least(1), "must be at least 1")
    steps_per_epoch: int | None = rule(None, at_least(1), "must be at least 1, or null for one pass over the data")
    weight_decay: float = rule(0.0, at_least(0), "must not be negative")
    repeats: int = rule(1, at_least(1), "must be at least 1")  # seeds trained in a search; it ranks on the mean

    @staticmethod
    def from_dict(data: Any, where: str = "training") -> TrainingConfig:
        config: TrainingConfig = TrainingConfig._from_fields(data, where)
        return config


@dataclass(frozen=True)
class Candidate:
    """One point of a search: the model and how it is trained. Trials store it as JSON."""

    model: ModelConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "training": self.training.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_dict(data: Any) -> Candidate:
        if not isinstance(data, dict) or "model" not in data:
            raise ConfigError("a candidate needs a 'model' mapping (and optionally 'training')")
        unknown = sorted(set(data) - {"model", "training"}, key=str)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown key (known: model, training)")
        return Candidate(ModelConfig.from_dict(data["model"]), TrainingConfig.from_dict(data.get("training") or {}))

    @staticmethod
    def from_json(text: str) -> Candidate:
        return Candidate.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------- data

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "npz")


@dataclass(frozen=True)
class DataConfig(_PlainData):
    """Which data set a search trains on, and how much of its training split is held out to rank.

    ``path`` is the ``.npz`` file for ``npz``, a folder of Fashion-MNIST's four ``.gz`` files, or a folder
    of extracted CIFAR python batches (optional for those three: without it they come through
    ``keras.datasets``, which downloads them once). ``subset`` keeps that many images of the training split
    (stratified, fixed seed) before the validation part is held out: a quicker, noisier search.
    """

    section: ClassVar[str] = "data"
    dataset: str = rule("digits", one_of(*DATASETS), f"unknown data set (known: {', '.join(DATASETS)})")
    path: str | None = None
    validation_fraction: float = rule(0.2, lambda v: 0 < v < 1, "must lie strictly between 0 and 1")
    subset: int | None = rule(None, at_least(20), "must be at least 20 images, or null for the whole training split")

    def check(self) -> None:
        if self.dataset == "npz" and not self.path:
            raise ConfigError("data.path: the npz data set needs the path of a .npz file")

    @staticmethod
    def from_dict(data: Any, where: str = "data") -> DataConfig:
        config: DataConfig = DataConfig._from_fields(data, where)
        return config
