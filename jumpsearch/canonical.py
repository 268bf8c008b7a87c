"""Named configurations: the seed's example and (later) the papers' reference networks."""

from __future__ import annotations

from jumpsearch.config import JumpNetConfig, ModelConfig
from jumpsearch.errors import ConfigError

CANONICAL: dict[str, ModelConfig] = {
    # DESIGN.md: stem (16, 32) stride 1; groups (F, n) = (32, 3), (64, 4), (128, 3); links every group, W = F.
    "jumpnet_seed_cifar": JumpNetConfig(
        input_shape=(32, 32, 3),
        num_classes=10,
        stem_filters=(16, 32),
        blocks_per_group=(3, 4, 3),
        base_filters=32,
        growth_rate=2.0,
        jump_spacing=1,
        jump_width=1.0,
    ),
}


def canonical_config(name: str) -> ModelConfig:
    """A named configuration, e.g. ``jumpnet_seed_cifar`` (CIFAR-10, 10 classes)."""
    try:
        return CANONICAL[name]
    except KeyError:
        raise ConfigError(f"unknown canonical configuration {name!r} (known: {', '.join(sorted(CANONICAL))})") from None
