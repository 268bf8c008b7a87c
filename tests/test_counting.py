"""The analytic counts against the models Keras builds, for random points of the shipped spaces."""

from collections import Counter

import keras
import numpy as np
import optuna
import pytest

from conftest import ROOT
from jumpsearch import build_model, canonical_config, count_flops, count_params
from jumpsearch.counting import count
from jumpsearch.space import load_space

SHAPES = {"digits": ((8, 8, 1), 10), "cifar": ((32, 32, 3), 10)}


def keras_macs(model: keras.Model) -> int:
    """MACs of Conv2D and Dense layers, read off the built graph's shapes."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, _ = layer.output.shape
            total += h * w * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def weights(variables) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


@pytest.mark.parametrize("space_name", ["digits", "cifar"])
def test_counts_equal_the_built_model_for_random_points(space_name):
    """100 buildable points per shipped space: 200 in all."""
    space = load_space(ROOT / "search_spaces" / f"{space_name}.yaml")
    shape, classes = SHAPES[space_name]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), directions=space.directions)
    seen = 0
    families = Counter()
    while seen < 100:
        trial = study.ask()
        config = space.suggest(trial, shape, classes).model
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        if space.constraints.violation(count_params(config), count_flops(config)):
            continue  # the search never builds it; building a 60M-weight model here only costs time
        keras.backend.clear_session(free_memory=False)  # skipping its gc.collect halves the loop
        model = build_model(config)
        counts = count(config)
        assert counts.trainable == weights(model.trainable_weights), config
        assert counts.non_trainable == weights(model.non_trainable_weights), config
        assert counts.macs == keras_macs(model), config
        families[config.jump_spacing] += 1
        seen += 1
    assert len(families) == 3  # links off, every group, every two groups were all exercised


def test_seed_cifar_example_has_exactly_the_seeds_layers():
    config = canonical_config("jumpnet_seed_cifar")
    model = build_model(config)
    # DESIGN.md, layer by layer: stem 3×3 (16) and 3×3 (32); groups (F, n) = (32, 3), (64, 4), (128, 3);
    # each block 1×1, 3×3, 1×1 at F; group end 1×1 stride 2; jump link 1×1 stride 2 at W = F.
    convs = [((3, 3, 3, 16), 1), ((3, 3, 16, 32), 1)]
    for filters, blocks in ((32, 3), (64, 4), (128, 3)):
        convs += [((1, 1, filters, filters), 1), ((3, 3, filters, filters), 1), ((1, 1, filters, filters), 1)] * blocks
        convs += [((1, 1, filters, filters), 2)] * 2  # group end and jump link (input has F channels: 32, 32+32, 64+64)
    built = [(tuple(v.kernel.shape), v.strides[0]) for v in model.layers if isinstance(v, keras.layers.Conv2D)]
    assert Counter(built) == Counter(convs)
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    assert kinds["BatchNormalization"] == 2 + 3 * 10 + 3 + 3
    assert kinds["ReLU"] == 2 + 3 * 10 + 3
    assert kinds["Add"] == 10
    assert kinds["Concatenate"] == 3
    assert kinds["GlobalAveragePooling2D"] == 1 and kinds["Dense"] == 1
    assert not any(layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    concat_channels = [layer.output.shape[-1] for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    assert concat_channels == [64, 128, 256]
    bn_channels = [
        layer.output.shape[-1] for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    expected = sum(int(np.prod(k)) for k, _ in convs) + 2 * sum(bn_channels) + 256 * 10 + 10
    assert count_params(config) == expected == weights(model.trainable_weights)
    assert model.output_shape == (None, 10)
    assert count_flops(config) == keras_macs(model)


def test_projection_shortcut_appears_only_where_widths_differ():
    from jumpsearch import JumpNetConfig

    common = dict(input_shape=(8, 8, 1), stem_filters=(8, 16), blocks_per_group=(1, 1), base_filters=16)
    lined_up = build_model(JumpNetConfig(**common))  # group 0 outputs 16 + 16 = 32 channels, group 1 wants 32
    misaligned = build_model(JumpNetConfig(**common, jump_width=0.5))  # 16 + 8 = 24 channels, group 1 wants 32

    def convs(model):
        return [tuple(v.kernel.shape) for v in model.layers if isinstance(v, keras.layers.Conv2D)]

    assert len(convs(misaligned)) == len(convs(lined_up)) + 1
    assert (1, 1, 24, 32) in convs(misaligned)
    assert count_params(JumpNetConfig(**common, jump_width=0.5)) == weights(misaligned.trainable_weights)
