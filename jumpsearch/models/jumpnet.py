"""JumpNet: a ResNet v2 learner whose groups are joined by group jump links.

Group g (F_g filters, n_g blocks) is n_g bottleneck blocks, then the group end (BN → ReLU → 1×1 conv
stride 2). A group jump link takes the input of group g through BN → 1×1 conv (W = w·F filters) strided
to the size of the output of group g+s-1, and concatenates it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from jumpsearch.config import GroupedConfig, positive, register_family, rule
from jumpsearch.models._ops import Ops
from jumpsearch.models.common import preact_conv, stem

T = TypeVar("T")


def bottleneck_block(ops: Ops[T], x: T, filters: int) -> T:
    """1×1 → 3×3 → 1×1 pre-activation convolutions (no expansion) plus the block's input.

    The shortcut is the identity where the input already has ``filters`` channels, else a 1×1 projection.
    """
    shortcut = x if ops.channels(x) == filters else ops.conv(x, filters, 1)
    y = preact_conv(ops, x, filters, 1)
    y = preact_conv(ops, y, filters, 3)
    y = preact_conv(ops, y, filters, 1)
    return ops.add(shortcut, y)


def jump_link(ops: Ops[T], x: T, width: int, span: int) -> T:
    """BN → 1×1 conv whose stride matches the ``span`` groups it jumps over."""
    return ops.conv(ops.bn(x), width, 1, stride=2**span)


def forward(ops: Ops[T], config: JumpNetConfig, x: T) -> T:
    x = stem(ops, config, x)
    group_inputs = []
    for g, (filters, blocks) in enumerate(zip(config.group_filters, config.blocks_per_group, strict=True)):
        group_inputs.append(x)
        for _ in range(blocks):
            x = bottleneck_block(ops, x, filters)
        x = preact_conv(ops, x, filters, 1, stride=2)  # group end: feature pooling
        width = config.round_filters(config.jump_width * filters)
        links = [
            jump_link(ops, group_inputs[first], width, g - first + 1) for first, last in config.jump_spans if last == g
        ]
        if links:
            x = ops.concat([x, *links])
    return ops.classifier(x, config.num_classes)


def _spacing(value: int | str) -> bool:
    return value == "exp" or (isinstance(value, int) and value >= 0)


@register_family(
    "jumpnet",
    template=forward,
    per_group="blocks_per_group",
    # stem (16, 32) stride 1; groups (F, n) = (32, 3), (64, 4), (128, 3); links every group, W = F.
    canonical={"jumpnet_seed_cifar": {}},
)
@dataclass(frozen=True)
class JumpNetConfig(GroupedConfig):
    """The JumpNet template. ``jump_spacing`` s links the input of group g to the output of group g+s-1
    for g = 0, s, 2s, … (a last, shorter span ends at the last group); 0 means no links, ``exp`` the
    exponential pattern. ``jump_width`` w gives links W_g = w·F_g filters."""

    jump_spacing: int | str = rule(1, _spacing, "must be 0 (no links), a positive number of groups, or 'exp'")
    jump_width: float = rule(1.0, positive, "must be positive (use jump_spacing 0 for no links)")

    @classmethod
    def downsamplings_of(cls, groups: int) -> int:
        return groups

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
        assert isinstance(s, int)
        return tuple((g, min(g + s, self.groups) - 1) for g in range(0, self.groups, s))
