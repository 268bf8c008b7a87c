import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]

TINY_SPACE = """\
name: tiny
data: {dataset: digits, validation_fraction: 0.2}
model:
  groups: {int: [1, 2]}
  blocks_per_group: 1
  stem_filters: [8, 8]
  base_filters: {choice: [8, 16]}
  growth_rate: 1.0
  jump_spacing: {choice: [0, 1]}
  jump_width: 0.5
training: {learning_rate: 0.01, batch_size: 32, epochs: 1, steps_per_epoch: 2}
sampler: {name: random}
seed: 0
trials: 2
"""


@pytest.fixture
def write_space(tmp_path):
    """Write a space file (the tiny default, or given text) into tmp_path and return its path."""

    def write(text: str = TINY_SPACE, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
