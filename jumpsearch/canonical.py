"""Named configurations: the seed's example and the papers' reference networks."""

from __future__ import annotations

from jumpsearch.config import DenseNetConfig, JumpNetConfig, ModelConfig, ResNetV2Config, SparseNetConfig
from jumpsearch.errors import ConfigError

CIFAR10 = {"input_shape": (32, 32, 3), "num_classes": 10}

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
    # The papers' reference networks on CIFAR-10, with the shared two-convolution stem (its second
    # convolution is the only addition to each paper's network).
    # He et al. 2016: 164 layers = 3 groups × 18 bottleneck blocks × 3 + 2; widths 16, 32, 64 (×4 out).
    "resnet_v2_164": ResNetV2Config(**CIFAR10, stem_filters=(16, 16), blocks_per_group=(18, 18, 18), base_filters=16),
    # Huang et al. 2016, DenseNet-BC: L = 6·n + 4 with bottlenecks, θ = 0.5, a first convolution of 2k.
    "densenet_bc_100_12": DenseNetConfig(**CIFAR10, stem_filters=(24, 24), layers_per_block=(16,) * 3, growth_rate=12),
    "densenet_bc_250_24": DenseNetConfig(**CIFAR10, stem_filters=(48, 48), layers_per_block=(41,) * 3, growth_rate=24),
    # Zhu et al. 2018, without bottleneck or compression: L = 3·n + 4, a first convolution of 2k.
    "sparsenet_40_24": SparseNetConfig(**CIFAR10, stem_filters=(48, 48), layers_per_block=(12,) * 3, growth_rate=24),
    "sparsenet_100_24": SparseNetConfig(**CIFAR10, stem_filters=(48, 48), layers_per_block=(32,) * 3, growth_rate=24),
}


def canonical_config(name: str) -> ModelConfig:
    """A named configuration, e.g. ``jumpnet_seed_cifar`` (CIFAR-10, 10 classes)."""
    try:
        return CANONICAL[name]
    except KeyError:
        raise ConfigError(f"unknown canonical configuration {name!r} (known: {', '.join(sorted(CANONICAL))})") from None
