import json

import pytest
import yaml

from jumpsearch import Candidate, ConfigError, JumpNetConfig, ModelConfig, TrainingConfig, canonical_config


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
        ({"family": "jumpnet", "base_filters": "wide"}, "model.base_filters: expected an integer"),
        ({"family": "jumpnet", "stem_filters": [16]}, "model.stem_filters: expected 2 values"),
        ({"family": "jumpnet", "jump_width": 0}, "jump_width 0"),
        ({"family": "jumpnet", "input_shape": [8, 8, 1], "blocks_per_group": [1, 1, 1, 1]}, "4 downsamplings"),
    ],
)
def test_bad_model_configs_say_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(data)


def test_training_config_rejects_unknown_optimizer():
    with pytest.raises(ConfigError, match="training.optimizer: unknown optimizer 'lamb'"):
        TrainingConfig.from_dict({"optimizer": "lamb"})


def test_group_filters_and_jump_spans_follow_the_design():
    config = JumpNetConfig(blocks_per_group=(1, 1, 1), base_filters=16, growth_rate=1.5, jump_spacing=2)
    assert config.group_filters == (16, 24, 40)  # 16·1.5² = 36 rounds to 40 (multiple of 8)
    assert config.jump_spans == ((0, 1), (2, 2))  # the last, shorter span ends at the last group
    assert JumpNetConfig(jump_spacing=0).jump_spans == ()
    assert JumpNetConfig(input_shape=(64, 64, 3)).stride == 2
    assert JumpNetConfig(input_shape=(32, 32, 3)).stride == 1
