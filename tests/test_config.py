import dataclasses
import json

import pytest
import yaml

from jumpsearch import (
    Candidate,
    ConfigError,
    DataConfig,
    JumpNetConfig,
    ModelConfig,
    SparseNetConfig,
    TrainingConfig,
    canonical_config,
)
from jumpsearch.config import FAMILIES, register_family
from jumpsearch.config import ModelConfig as Base


def test_model_config_round_trips_through_dict_json_and_yaml():
    config = JumpNetConfig(input_shape=(8, 8, 1), blocks_per_group=(1, 2), growth_rate=1.5, jump_spacing=2)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig.from_dict(json.loads(config.to_json())) == config
    assert ModelConfig.from_dict(yaml.safe_load(config.to_yaml())) == config
    assert json.loads(config.to_json())["family"] == "jumpnet"


def test_candidate_round_trips_and_is_hashable():
    candidate = Candidate(canonical_config("jumpnet_seed_cifar"), TrainingConfig(optimizer="sgd", epochs=3))
    again = Candidate.from_json(candidate.to_json())
    assert again == candidate
    assert hash(again.model) == hash(candidate.model)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"family": "jumpnet", "blocks": [1]}, "model.blocks: unknown key"),
        ({"family": "vgg"}, "model.family: unknown family 'vgg'"),
        ({"family": "jumpnet", "base_filters": "wide"}, "model.base_filters: expected an integer, got 'wide'"),
        (
            {"family": "jumpnet", "stem_filters": [16]},
            r"model.stem_filters: the shared stem takes 2 widths, got \[16\]",
        ),
        ({"family": "jumpnet", "jump_width": 0}, "model.jump_width: must be positive .*, got 0"),
        ({"family": "jumpnet", "growth_rate": -1}, "model.growth_rate: must be positive, got -1"),
        ({"family": "jumpnet", "blocks_per_group": [1, 0]}, r"model.blocks_per_group: .*, got \[1, 0\]"),
        ({"family": "jumpnet", "input_shape": [8, 8, 1], "blocks_per_group": [1, 1, 1, 1]}, "4 downsamplings"),
        ({"family": "densenet_bc", "aggregation": "sparse"}, "model.aggregation: must be one of dense, exponential"),
        ({"family": "resnet_v2", "stem": "cifar", "stem_filters": [16, 16]}, "the cifar stem takes 1 width"),
    ],
)
def test_bad_model_configs_say_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message) as error:
        ModelConfig.from_dict(data)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainingConfig(optimizer="lamb"), "training.optimizer: unknown optimizer .*, got 'lamb'"),
        (lambda: TrainingConfig(epochs=0), "training.epochs: must be at least 1, got 0"),
        (lambda: TrainingConfig(learning_rate=float("nan")), "training.learning_rate: expected a finite number"),
        (lambda: DataConfig(dataset="mnist"), "data.dataset: unknown data set .*, got 'mnist'"),
        (lambda: DataConfig(validation_fraction=1.0), "data.validation_fraction: must lie strictly between"),
        (lambda: DataConfig(dataset="npz"), "data.path: the npz data set needs"),
        (lambda: JumpNetConfig(num_classes=1), "model.num_classes: a classifier needs at least 2 classes, got 1"),
        (lambda: JumpNetConfig(jump_spacing="often"), "model.jump_spacing: must be 0 .*, got 'often'"),
    ],
)
def test_configs_check_themselves_when_constructed_directly(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_construction_coerces_like_a_file_does():
    config = JumpNetConfig(input_shape=[8, 8, 1], blocks_per_group=[1, 2], growth_rate=2)
    assert config.input_shape == (8, 8, 1) and config.blocks_per_group == (1, 2)
    assert isinstance(config.growth_rate, float)
    with pytest.raises(ConfigError, match="model.bottleneck: expected true or false"):
        dataclasses.replace(canonical_config("resnet_v2_164"), bottleneck="yes")


def test_group_filters_and_jump_spans_follow_the_template():
    config = JumpNetConfig(blocks_per_group=(1, 1, 1), base_filters=16, growth_rate=1.5, jump_spacing=2)
    assert config.group_filters == (16, 24, 40)  # 16·1.5² = 36 rounds to 40 (multiple of 8)
    assert config.jump_spans == ((0, 1), (2, 2))  # the last, shorter span ends at the last group
    assert JumpNetConfig(jump_spacing=0).jump_spans == ()
    assert JumpNetConfig(input_shape=(64, 64, 3)).stride == 2
    assert JumpNetConfig(input_shape=(32, 32, 3)).stride == 1


def test_every_family_registers_once_with_its_template_and_per_group_field():
    assert set(FAMILIES) == {"jumpnet", "resnet_v2", "densenet_bc", "sparsenet"}
    for name, family in FAMILIES.items():
        assert family.config.family == name
        assert family.per_group in family.config.field_types()
        default = family.config()
        assert default.groups == len(getattr(default, family.per_group))
    assert (
        SparseNetConfig().aggregation == "exponential"
        and FAMILIES["sparsenet"].template is FAMILIES["densenet_bc"].template
    )  # one template: the aggregation is a field, not the family's name
    with pytest.raises(ValueError, match="registered twice"):
        register_family("jumpnet", template=lambda *a: None, per_group="blocks_per_group")(JumpNetConfig)


def test_a_new_family_is_one_class_and_one_decorator(tmp_path):
    def template(ops, config, x):
        for _ in config.widths:
            x = ops.relu(ops.bn(ops.conv(x, config.width, 3, 2)))
        return ops.classifier(x, config.num_classes)

    @register_family("plain_test", template=template, per_group="widths", canonical={"plain_tiny": {"width": 4}})
    @dataclasses.dataclass(frozen=True)
    class PlainConfig(Base):
        widths: tuple[int, ...] = (1, 1)
        width: int = 8

        @classmethod
        def downsamplings_of(cls, groups: int) -> int:
            return groups

    try:
        from jumpsearch import count_params
        from jumpsearch.space import space_from_dict

        config = canonical_config("plain_tiny")
        assert count_params(config) == (3 * 3 * 3 * 4 + 8) + (3 * 3 * 4 * 4 + 8) + 4 * 10 + 10
        assert ModelConfig.from_dict(config.to_dict()) == config
        space = space_from_dict({"name": "p", "model": {"family": "plain_test", "groups": {"int": [1, 2]}, "width": 4}})
        assert space.distributions() == {"groups": space.model["plain_test"]["groups"].distribution()}
    finally:
        del FAMILIES["plain_test"]
