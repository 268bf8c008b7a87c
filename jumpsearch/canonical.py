"""Named configurations: the seed's example and the papers' reference networks, as each family
registers them (CIFAR-10 input unless the entry says otherwise)."""

from __future__ import annotations

from jumpsearch.config import FAMILIES, ConfigError, ModelConfig

CIFAR10 = {"input_shape": (32, 32, 3), "num_classes": 10}


def canonical_names() -> list[str]:
    return sorted(name for family in FAMILIES.values() for name in family.canonical)


def canonical_config(name: str) -> ModelConfig:
    """A named configuration, e.g. ``jumpnet_seed_cifar`` or ``densenet121``.

    Example:
        >>> from jumpsearch import canonical_config
        >>> canonical_config("resnet_v2_164").stem
        'cifar'
    """
    for family in FAMILIES.values():
        if name in family.canonical:
            return family.config(**{**CIFAR10, **family.canonical[name]})
    raise ConfigError(f"unknown canonical configuration {name!r} (known: {', '.join(canonical_names())})")
