"""Configurations as plain data.

A configuration is a frozen dataclass that round-trips through dicts, JSON and YAML, so a trial can
store it, a file can carry it, and a fresh interpreter can rebuild the model from it with nothing else.
Models, counts and studies are built from configurations, never the other way round.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from jumpsearch.errors import ConfigError

MODEL_FAMILIES: dict[str, type[ModelConfig]] = {}


def coerce_value(name: str, hint: Any, value: Any) -> Any:
    """Turn JSON/YAML values (lists, ints for floats) into the field's declared type, or say why not."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        error = ConfigError(f"{name}: unexpected value {value!r}")
        for alternative in (a for a in args if a is not type(None)):
            try:
                return coerce_value(name, alternative, value)
            except ConfigError as e:
                error = e
        raise error
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce_value(name, args[0], v) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
        return tuple(coerce_value(name, a, v) for a, v in zip(args, value, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


class _PlainData:
    """Dict/JSON/YAML round-trip shared by every configuration dataclass."""

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return [plain(x) for x in v] if isinstance(v, tuple) else v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Declared type of each field, for checking a search space against this configuration."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], where: str) -> Any:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {data!r}")
        hints = cls.field_types()
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(hints))})")
        kwargs = {k: coerce_value(f"{where}.{k}", hints[k], v) for k, v in data.items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


@dataclass(frozen=True)
class ModelConfig(_PlainData):
    """What every family shares: the input the data set fixes, the stem and the classifier.

    ``from_dict`` dispatches on the ``family`` key, so one loader reads a configuration of any family.
    """

    family: ClassVar[str] = ""
    input_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 10
    stem_filters: tuple[int, int] = (16, 32)
    stem_stride: int | None = None
    filter_multiple: int = 8

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.family:
            MODEL_FAMILIES[cls.family] = cls

    @property
    def stride(self) -> int:
        """The stem's stride: 1 for images of 32 pixels or less (CIFAR, digits), else 2."""
        if self.stem_stride is not None:
            return self.stem_stride
        return 1 if max(self.input_shape[:2]) <= 32 else 2

    def round_filters(self, x: float) -> int:
        """Round a width to a multiple of ``filter_multiple`` (at least one multiple)."""
        m = self.filter_multiple
        return max(m, int(math.floor(x / m + 0.5)) * m)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **super().to_dict()}

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = "model") -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {data!r}")
        data = dict(data)
        family = data.pop("family", "jumpnet")
        if family not in MODEL_FAMILIES:
            raise ConfigError(f"{where}.family: unknown family {family!r} (known: {', '.join(sorted(MODEL_FAMILIES))})")
        config = MODEL_FAMILIES[family]._from_fields(data, where)
        config.validate()
        return config

    @property
    def downsamplings(self) -> int:
        """How many times the learner halves the feature map."""
        raise NotImplementedError

    def validate(self) -> None:
        """Raise ConfigError with the reason when this point cannot build a valid model."""
        h, w, c = self.input_shape
        if min(h, w, c) < 1:
            raise ConfigError(f"input_shape {self.input_shape}: every dimension must be positive")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes {self.num_classes}: a classifier needs at least 2 classes")
        if min(self.stem_filters) < 1 or self.filter_multiple < 1:
            raise ConfigError("stem_filters and filter_multiple must be positive")
        if self.stride not in (1, 2):
            raise ConfigError(f"stem_stride {self.stride}: must be 1 or 2")
        side = min(h, w) // self.stride
        if side < 2**self.downsamplings:
            raise ConfigError(
                f"{self.downsamplings} downsamplings need an input of at least {2**self.downsamplings} pixels "
                f"after the stem, but a {h}x{w} input with stem stride {self.stride} leaves {side}"
            )


@dataclass(frozen=True)
class GroupedConfig(ModelConfig):
    """Residual groups of blocks whose widths grow geometrically: what JumpNet and ResNet v2 share."""

    blocks_per_group: tuple[int, ...] = (3, 4, 3)
    base_filters: int = 32
    growth_rate: float = 2.0

    @property
    def groups(self) -> int:
        return len(self.blocks_per_group)

    @property
    def group_filters(self) -> tuple[int, ...]:
        """F_g = F_0 · r^g, rounded to a multiple of ``filter_multiple``."""
        return tuple(self.round_filters(self.base_filters * self.growth_rate**g) for g in range(self.groups))

    def validate(self) -> None:
        if self.groups < 1 or min(self.blocks_per_group) < 1:
            raise ConfigError(f"blocks_per_group {self.blocks_per_group}: need at least one group of one block")
        if self.base_filters < 1 or self.growth_rate <= 0:
            raise ConfigError("base_filters and growth_rate must be positive")
        super().validate()


@dataclass(frozen=True)
class JumpNetConfig(GroupedConfig):
    """The JumpNet template: ResNet v2 bottleneck groups joined by group jump links (DESIGN.md).

    ``jump_spacing`` s links the input of group g to the output of group g+s-1 for g = 0, s, 2s, …
    (a last, shorter span ends at the last group); 0 means no links.
    """

    family: ClassVar[str] = "jumpnet"
    jump_spacing: int | str = 1
    jump_width: float = 1.0

    @property
    def downsamplings(self) -> int:
        return self.groups

    @property
    def jump_spans(self) -> tuple[tuple[int, int], ...]:
        """(first group, last group) of each jump link.

        ``"exp"`` is SparseNet's exponential pattern over groups: the output of group g receives links
        from the inputs of groups g, g-1, g-3, g-7, … (spans of 1, 2, 4, 8, … groups).
        """
        s = self.jump_spacing
        if s == "exp":
            return tuple(
                (g - 2**j + 1, g) for g in range(self.groups) for j in range(g.bit_length() + 1) if 2**j <= g + 1
            )
        if s == 0:
            return ()
        return tuple((g, min(g + s, self.groups) - 1) for g in range(0, self.groups, s))

    def validate(self) -> None:
        if self.jump_spacing != "exp" and (isinstance(self.jump_spacing, str) or self.jump_spacing < 0):
            raise ConfigError(f"jump_spacing {self.jump_spacing!r}: must be 0 (no links), positive, or 'exp'")
        if self.jump_width <= 0:
            raise ConfigError(f"jump_width {self.jump_width}: must be positive (use jump_spacing 0 for no links)")
        super().validate()


@dataclass(frozen=True)
class ResNetV2Config(GroupedConfig):
    """Pre-activation ResNet (He et al. 2016): stride 2 and a projection where each group after the first
    starts; bottleneck blocks expand 4×. ResNet-164 is (18, 18, 18) bottleneck blocks from 16 filters."""

    family: ClassVar[str] = "resnet_v2"
    stem_filters: tuple[int, int] = (16, 16)
    blocks_per_group: tuple[int, ...] = (18, 18, 18)
    base_filters: int = 16
    bottleneck: bool = True

    @property
    def downsamplings(self) -> int:
        return self.groups - 1


@dataclass(frozen=True)
class DenseNetConfig(ModelConfig):
    """DenseNet(-BC) (Huang et al. 2016): dense blocks of BN-ReLU-1×1 (4k) → BN-ReLU-3×3 (k) layers whose
    outputs are concatenated, joined by transitions (BN-ReLU-1×1 to ⌊θ·c⌋, 2×2 average pooling)."""

    family: ClassVar[str] = "densenet_bc"
    stem_filters: tuple[int, int] = (24, 24)
    layers_per_block: tuple[int, ...] = (16, 16, 16)
    growth_rate: int = 12
    compression: float = 0.5
    bottleneck: bool = True

    @property
    def downsamplings(self) -> int:
        return len(self.layers_per_block) - 1

    def validate(self) -> None:
        if not self.layers_per_block or min(self.layers_per_block) < 1:
            raise ConfigError(f"layers_per_block {self.layers_per_block}: need at least one block of one layer")
        if self.growth_rate < 1 or not 0 < self.compression <= 1:
            raise ConfigError("growth_rate must be positive and compression in (0, 1]")
        super().validate()


@dataclass(frozen=True)
class SparseNetConfig(DenseNetConfig):
    """SparseNet (Zhu et al. 2018, "Sparsely Aggregated Convolutional Networks"): as DenseNet, but layer i
    of a block takes only the outputs at offsets 1, 2, 4, 8, … behind it (the block input counts as one).
    The seed cites Liu & Zeng 2018, which sparsifies differently; this is the exponential pattern."""

    family: ClassVar[str] = "sparsenet"
    stem_filters: tuple[int, int] = (48, 48)
    layers_per_block: tuple[int, ...] = (12, 12, 12)
    growth_rate: int = 24
    compression: float = 1.0
    bottleneck: bool = False


OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainingConfig(_PlainData):
    """The recipe a trial trains with: brief in a search, long in ``train``."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 64
    epochs: int = 5
    steps_per_epoch: int | None = None
    weight_decay: float = 0.0

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = "training") -> TrainingConfig:
        config: TrainingConfig = TrainingConfig._from_fields(data, where)
        config.validate(where)
        return config

    def validate(self, where: str = "training") -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"{where}.optimizer: unknown optimizer {self.optimizer!r} (known: {', '.join(OPTIMIZERS)})"
            )
        if self.learning_rate <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ConfigError(f"{where}: learning_rate, batch_size and epochs must be positive")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"{where}.steps_per_epoch: must be positive or null")
        if self.weight_decay < 0:
            raise ConfigError(f"{where}.weight_decay: must not be negative")


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
    def from_dict(data: dict[str, Any]) -> Candidate:
        if not isinstance(data, dict) or "model" not in data:
            raise ConfigError("a candidate needs a 'model' mapping (and optionally 'training')")
        unknown = sorted(set(data) - {"model", "training"})
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown key (known: model, training)")
        return Candidate(ModelConfig.from_dict(data["model"]), TrainingConfig.from_dict(data.get("training") or {}))

    @staticmethod
    def from_json(text: str) -> Candidate:
        return Candidate.from_dict(json.loads(text))


DATASETS = ("digits", "cifar10", "cifar100", "npz")


@dataclass(frozen=True)
class DataConfig(_PlainData):
    """Which data set a search trains on, and how much of its training split is held out to rank.

    ``path`` is the ``.npz`` file for ``npz``, or a folder of extracted CIFAR python batches (optional:
    without it CIFAR comes through ``keras.datasets``).
    """

    dataset: str = "digits"
    path: str | None = None
    validation_fraction: float = 0.2

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = "data") -> DataConfig:
        config: DataConfig = DataConfig._from_fields(data, where)
        if config.dataset not in DATASETS:
            raise ConfigError(f"{where}.dataset: unknown data set {config.dataset!r} (known: {', '.join(DATASETS)})")
        if config.dataset == "npz" and not config.path:
            raise ConfigError(f"{where}.path: the npz data set needs the path of a .npz file")
        if not 0 < config.validation_fraction < 1:
            raise ConfigError(f"{where}.validation_fraction: must lie strictly between 0 and 1")
        return config
