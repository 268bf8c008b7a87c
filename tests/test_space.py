import copy
import functools
import re

import optuna
import pytest
import yaml

from conftest import ROOT
from jumpsearch import ConfigError, canonical_config
from jumpsearch.space import load_space, parse_count


def test_shipped_spaces_load_and_cifar_contains_the_seed_example():
    for name in ("digits", "cifar", "fashion_mnist", "ablation", "ablation_fashion"):
        assert load_space(ROOT / "search_spaces" / f"{name}.yaml").name.startswith(name)
    for name in ("fashion_mnist", "ablation_fashion"):  # their groups fit 28x28 images, within their budgets
        fashion = load_space(ROOT / "search_spaces" / f"{name}.yaml")
        fashion.check((28, 28, 1), 10)
    assert set(fashion.families) == {"jumpnet", "resnet_v2", "densenet_bc", "sparsenet"}
    space = load_space(ROOT / "search_spaces" / "cifar.yaml")
    seed = canonical_config("jumpnet_seed_cifar")
    fixed = {
        "groups": 3,
        **{f"blocks_per_group_{g}": n for g, n in enumerate(seed.blocks_per_group)},
        "stem_filters": "[16, 32]",
        "base_filters": 32,
        "growth_rate": 2.0,
        "jump_spacing": 1,
        "jump_width": 1.0,
    }
    study = optuna.create_study(directions=space.directions)
    study.enqueue_trial(fixed)
    candidate = space.suggest(study.ask(), (32, 32, 3), 10)
    assert candidate.model == seed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nmodel: {groups: [1, 2}\n", "malformed YAML"),
        ("name: x\nmodle: {}\n", r"space.yaml: modle: unknown key"),
        ("model: {base_filter: 8}\n", r"space.yaml: model.base_filter: unknown key for family jumpnet"),
        ("model: {base_filters: {int: [32, 16]}}\n", r"model.base_filters.int: empty range \[32, 16\]"),
        ("model: {base_filters: {float: [8, 16]}}\n", "model.base_filters: a float range for an integer key"),
        ("model: {growth_rate: fast}\n", "model.growth_rate: expected a number"),
        ("model: {jump_width: {choice: []}}\n", "model.jump_width.choice: expected a non-empty list"),
        ("model: {input_shape: [8, 8, 1]}\n", "model.input_shape: set by the data set"),
        ("training: {learning_rate: {float: [0, 1], log: true}}\n", "training.learning_rate.float: a log range"),
        ("training: {epochs: 2.5}\n", "training.epochs: expected an integer"),
        ("sampler: {name: grid}\n", "sampler.name: unknown sampler 'grid'"),
        ("sampler: {name: tpe, n_startup: 3}\n", "sampler.n_startup: not an option of tpe"),
        ("data: {dataset: mnist}\n", "data.dataset: unknown data set .*, got 'mnist'"),
        ("training: {epochs: 0}\n", "training.epochs: must be at least 1, got 0"),
        ("training: {epochs: {int: [0, 3]}}\n", "training.epochs: must be at least 1, got 0"),
        ("model: {growth_rate: -1}\n", "model.growth_rate: must be positive, got -1"),
        ("model: {growth_rate: {float: [-1, 2]}}\n", "model.growth_rate: must be positive, got -1.0"),
        ("model: {blocks_per_group: 0}\n", r"model.blocks_per_group: .*, got \[0\]"),
        ("model: {groups: 2, blocks_per_group: {int: [0, 2], per_group: true}}\n", "model.blocks_per_group: .*got"),
        ("model: {jump_width: 0}\n", "model.jump_width: must be positive"),
        ("model: {jump_spacing: {choice: [0, -1]}}\n", "model.jump_spacing: must be 0 .*, got -1"),
        ("model: {groups: 0}\n", "model.groups: a model needs at least one group, got 0"),
        ("training: {optimizer: {choice: [adam, lamb]}}\n", "training.optimizer: unknown optimizer .*'lamb'"),
        ("constraints: {max_memory: -1}\n", "constraints.max_memory: expected a positive count"),
        ("objectives: [params, accuracy]\n", "objectives: .* accuracy first"),
        ("constraints: {max_params: lots}\n", "constraints.max_params: expected a count"),
        ("model: {blocks_per_group: {int: [1, 2], per_group: true}}\n", "per_group needs a groups entry"),
    ],
)
def test_bad_space_files_name_the_file_and_the_key(write_space, text, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_space(write_space(text))
    assert "space.yaml" in str(error.value)
    assert "\n" not in str(error.value)


def test_counts_parse_human_suffixes():
    assert parse_count("150k", "x") == 150_000
    assert parse_count("1.5M", "x") == 1_500_000
    assert parse_count(42, "x") == 42


def test_groups_beyond_what_the_input_can_halve_are_refused_before_a_trial(write_space):
    space = load_space(write_space("model: {groups: {int: [2, 4]}}\n"))
    with pytest.raises(ConfigError, match="reaches 4 downsamplings, but a 8x8 input can be halved at most 3 times"):
        space.check_input((8, 8, 1))
    space.check_input((32, 32, 3))


def test_per_group_blocks_sample_one_value_per_group(write_space):
    space = load_space(write_space("model: {groups: 3, blocks_per_group: {int: [1, 4], per_group: true}}\n"))
    study = optuna.create_study(directions=space.directions)
    study.enqueue_trial({"blocks_per_group_0": 1, "blocks_per_group_1": 4, "blocks_per_group_2": 2})
    trial = study.ask()
    assert space.suggest(trial, (32, 32, 3), 10).model.blocks_per_group == (1, 4, 2)
    assert set(trial.params) == {"blocks_per_group_0", "blocks_per_group_1", "blocks_per_group_2"}


FAMILIES_SPACE = """\
model:
  family: {choice: [jumpnet, densenet_bc]}
  jumpnet: {groups: 2, base_filters: {choice: [8, 16]}}
  densenet_bc: {groups: {int: [2, 3]}, layers_per_block: {int: [1, 4], per_group: true}, growth_rate: 6}
"""


def test_a_family_choice_samples_each_family_under_its_own_names(write_space):
    space = load_space(write_space(FAMILIES_SPACE))
    assert space.families == ("jumpnet", "densenet_bc")
    study = optuna.create_study(directions=space.directions)
    study.enqueue_trial(
        {"family": "densenet_bc", "densenet_bc.groups": 2, "densenet_bc.layers_per_block_0": 3,
         "densenet_bc.layers_per_block_1": 1}
    )  # fmt: skip
    trial = study.ask()
    model = space.suggest(trial, (8, 8, 1), 10).model
    assert model.family == "densenet_bc" and model.layers_per_block == (3, 1) and model.growth_rate == 6
    assert set(trial.params) == {"family", "densenet_bc.groups", "densenet_bc.layers_per_block_0",
                                 "densenet_bc.layers_per_block_1"}  # fmt: skip
    only = space.for_family("jumpnet")
    assert only.name == "space-jumpnet" and only.families == ("jumpnet",)
    trial = optuna.create_study(directions=space.directions).ask()
    assert only.suggest(trial, (8, 8, 1), 10).model.family == "jumpnet"
    assert set(trial.params) == {"base_filters"}  # one family: plain names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {family: {choice: [jumpnet, vgg]}}\n", "model.family: unknown family 'vgg'"),
        ("model: {family: {choice: [jumpnet, resnet_v2]}, groups: 2}\n", "model.groups: with a choice of families"),
        ("model: {family: {choice: [jumpnet, resnet_v2]}, resnet_v2: {jump_width: 1}}\n",
         "model.resnet_v2.jump_width: unknown key for family resnet_v2"),
        ("model: {family: densenet_bc, growth_rate: {float: [4, 8]}}\n", "model.growth_rate: a float range"),
    ],
)  # fmt: skip
def test_family_sub_spaces_are_checked_like_the_rest(write_space, text, message):
    with pytest.raises(ConfigError, match=message):
        load_space(write_space(text))


def test_downsampling_limits_follow_each_family(write_space):
    # ResNet and DenseNet halve once less than they have groups; JumpNet halves once per group.
    load_space(write_space("model: {family: resnet_v2, groups: 4}\n")).check_input((8, 8, 1))
    with pytest.raises(ConfigError, match="reaches 4 downsamplings"):
        load_space(write_space("model: {family: jumpnet, groups: 4}\n")).check_input((8, 8, 1))


def test_numbers_read_as_people_write_them(write_space):
    """YAML 1.1 reads 1e-4 as a string; a space file reads it as the number it is."""
    space = load_space(write_space("training: {learning_rate: {float: [1e-4, 1e-2], log: true}, weight_decay: 5e-4}\n"))
    assert space.training["learning_rate"].values == (1e-4, 1e-2)
    assert space.training["weight_decay"].values == (5e-4,)


def test_distributions_name_every_parameter_a_trial_can_suggest(write_space):
    space = load_space(write_space(FAMILIES_SPACE))
    names = set(space.distributions())
    assert names == {"family", "jumpnet.base_filters", "densenet_bc.groups", "densenet_bc.layers_per_block_0",
                     "densenet_bc.layers_per_block_1", "densenet_bc.layers_per_block_2"}  # fmt: skip
    trial = optuna.create_study(directions=space.directions).ask()
    space.suggest(trial, (8, 8, 1), 10)
    assert set(trial.params) <= names


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        # 1 group of 1 block at 8 filters, no link: stem 72+16+576+16, block 3·16+64+576+64, end 16+64, dense 90
        ("{max_params: 1000}", "constraints.max_params: the smallest model of the space has 1,602 params"),
        ("{max_flops: 1k}", "constraints.max_flops: the smallest model of the space has"),
        ("{max_memory: 1M}", "constraints.max_memory: the smallest model of the space has"),
    ],
)
def test_constraints_no_point_can_meet_are_found_without_training(write_space, constraints, message):
    space = load_space(
        write_space(
            f"model: {{groups: {{int: [1, 3]}}, blocks_per_group: {{int: [1, 2]}}, stem_filters: [8, 8], "
            f"base_filters: {{choice: [16, 8]}}, jump_spacing: {{choice: [1, 0]}}}}\nconstraints: {constraints}\n"
        )
    )
    with pytest.raises(ConfigError, match=message):
        space.check((8, 8, 1), 10)


def test_the_smallest_point_is_the_smallest(write_space):
    from jumpsearch import count_params

    space = load_space(write_space(FAMILIES_SPACE))
    smallest = space.smallest(lambda c: count_params(c.model), (8, 8, 1), 10)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), directions=space.directions)
    sampled = [count_params(space.suggest(study.ask(), (8, 8, 1), 10).model) for _ in range(200)]
    assert count_params(smallest.model) <= min(sampled)


def test_a_model_too_large_for_memory_is_rejected_by_its_estimate(write_space):
    """A filter count of 10⁹ is refused before anything is built (the default limit is the device's)."""
    from jumpsearch.counting import training_memory
    from jumpsearch.device import memory_budget

    space = load_space(write_space("model: {groups: 1, base_filters: 1000000000}\n"))
    with pytest.raises(ConfigError, match="constraints.max_memory: the smallest model of the space has"):
        space.check((8, 8, 1), 10)
    candidate = space.smallest(training_memory, (8, 8, 1), 10)
    assert training_memory(candidate) > memory_budget()


@pytest.mark.parametrize(
    ("edit", "breaking", "noted"),
    [
        ("objectives: [accuracy, flops]\n", "objectives ['accuracy', 'params'] -> ['accuracy', 'flops']", None),
        ("objectives: [accuracy, params, flops]\n", "objectives", None),
        ("model: {base_filters: {choice: [8, 16, 24]}}\n", "base_filters choice [8, 16] -> choice [8, 16, 24]", None),
        ("model: {base_filters: {int: [8, 16]}}\n", "base_filters choice [8, 16] -> int [8, 16]", None),
        ("data: {dataset: digits, validation_fraction: 0.3}\n", "data ", None),
        ("model: {base_filters: {choice: [8, 16]}, growth_rate: {float: [1.0, 3.0]}}\n", None,
         "growth_rate range [1.0, 2.0] -> [1.0, 3.0]"),
        ("training: {epochs: 10}\n", None, "training.epochs 5 -> 10"),
    ],
)  # fmt: skip
def test_a_resumed_space_is_compared_with_the_stored_one(write_space, edit, breaking, noted):
    from jumpsearch.space import space_changes

    base = "model: {base_filters: {choice: [8, 16]}, growth_rate: {float: [1.0, 2.0]}}\ntraining: {epochs: 5}\n"
    stored = load_space(write_space(base, "a.yaml"))
    lines = base.splitlines(keepends=True)
    key = edit.split(":")[0]
    edited = "".join([line for line in lines if not line.startswith(key)] + [edit])
    found_breaking, found_noted = space_changes(stored, load_space(write_space(edited, "a.yaml")))
    if breaking:
        assert any(breaking in change for change in found_breaking), found_breaking
    else:
        assert not found_breaking and any(noted in change for change in found_noted), found_noted


WRONG_SHAPES = (["x", 1], {"a": 1}, 7, 0.5, "word", None, True)
OPTION_KEYS = ("int", "float", "choice", "step", "log", "per_group")  # an entry's options: errors name the entry


def _paths(value, path=()):
    """The path of every value of a parsed file, mapping keys and list indices alike."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*path, key)
        yield from _paths(item, (*path, key))


@pytest.mark.parametrize("name", ["digits", "cifar", "fashion_mnist", "ablation"])
def test_any_value_of_a_shipped_space_given_a_wrong_shape_loads_or_names_its_key(tmp_path, name):
    raw = yaml.safe_load((ROOT / "search_spaces" / f"{name}.yaml").read_text())
    refused = 0
    for path in _paths(raw):
        named = ".".join(k for k in path if isinstance(k, str) and k not in OPTION_KEYS)
        for wrong in WRONG_SHAPES:
            edited = copy.deepcopy(raw)
            parent = functools.reduce(lambda v, k: v[k], path[:-1], edited)
            parent[path[-1]] = wrong
            file = tmp_path / f"{name}.yaml"
            file.write_text(yaml.safe_dump(edited))
            try:
                load_space(file)
            except ConfigError as e:
                refused += 1
                message = str(e)
                assert message.startswith(str(file)) and named in message and "\n" not in message, (path, wrong)
    assert refused > 100  # most wrong shapes are refused; the rest are values the key accepts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sampler: [random]\n", r"sampler: expected a name or a mapping with name, got \['random'\]"),
        ("sampler: {name: [tpe]}\n", r"sampler.name: unknown sampler \['tpe'\]"),
        ("sampler: {name: tpe, n_startup_trials: [8]}\n", r"sampler.n_startup_trials: expected int, got \[8\]"),
        ("sampler: {name: tpe, multivariate: 1}\n", "sampler.multivariate: expected None or bool, got 1"),
        ("sampler: {name: tpe, gamma: 0.1}\n", "sampler.gamma: takes a Python object"),
        ("sampler: {name: nsga2, population_size: 1}\n", "sampler: nsga2 refuses its options"),
        ("model: {family: [jumpnet]}\n", r"model.family: unknown family \['jumpnet'\]"),
        ("model: {family: {choice: [jumpnet, {a: 1}]}}\n", r"model.family: unknown family \{'a': 1\}"),
        ("objectives: [accuracy, [params]]\n", r"objectives: .*got \['accuracy', \['params'\]\]"),
        ("training: [epochs]\n", r"training: expected a mapping, got \['epochs'\]"),
        ("training: false\n", "training: expected a mapping, got False"),
        ("model: {family: {choice: [jumpnet, resnet_v2]}, jumpnet: 3}\n", "model.jumpnet: expected a mapping, got 3"),
        ("schedule: [asha]\n", r"schedule: expected a mapping, got \['asha'\]"),
        ("constraints: {max_params: true}\n", "constraints.max_params: expected a count .*got True"),
        ("constraints: {max_params: 0.4}\n", "constraints.max_params: expected a count .*got 0.4"),
        ("model: {growth_rate: 2020-01-01}\n", r"model.growth_rate: expected a number, .*datetime.date\(2020, 1, 1\)"),
        ("model: {1: 2}\n", "model: the key 1 is not a name"),
        ("training: {epochs: {int: [1, 3], step: [1]}}\n", r"training.epochs.step: expected a positive int step"),
        ("training: {epochs: {int: [1, 6], step: 2}}\n", r"training.epochs.step: 2 does not divide the range \[1, 6\]"),
        ("model: {jump_width: {float: [0.1, 1], step: 0.2}}\n", r"jump_width.step: 0.2 does not divide .*end at 0.9"),
        ("seed: [1]\n", r"seed: expected an integer from 0 to 4294967295, got \[1\]"),
        ("seed: 4294967296\n", r"seed: expected an integer from 0 to 4294967295, got 4294967296"),
        ("trials: 2.0\n", r"trials: expected a positive integer, got 2.0"),
        ("model: {groups: 2, blocks_per_group: {choice: [[1, 2]], per_group: true}}\n", "give numbers, not lists"),
    ],
)
def test_wrongly_shaped_values_are_refused_naming_the_key(write_space, text, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_space(write_space(text))
    assert "space.yaml: " in str(error.value) and "\n" not in str(error.value)


def test_a_key_given_twice_is_refused_with_its_line(write_space):
    text = "name: x\ntraining:\n  batch_size: 8\n  batch_size: 32\n"
    with pytest.raises(ConfigError, match=r"space.yaml: line 4: duplicate key 'batch_size' \(first given at line 3\)"):
        load_space(write_space(text))
    merged = "defaults: &d {batch_size: 8}\n"  # a merge key overrides on purpose: not a duplicate
    with pytest.raises(ConfigError, match="defaults: unknown key"):
        load_space(write_space(merged + "training: {<<: *d, batch_size: 32}\n"))


LAUGHS = b"a: &a [1, 1, 1, 1, 1, 1, 1, 1]\n" + b"".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 8)}]\n".encode() for a, b in zip("abcd", "bcde", strict=True)
)  # 8**5 values from 60 bytes


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name: x\nseed: \x80\x81\n", r"cannot read the space file: not UTF-8 text \(byte 0x80 at offset 14\)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", r"not UTF-8 text \(byte 0x89 at offset 0\)"),
        (b"x: '" + b"a" * (2**20) + b"'\n", "larger than 1,024 KiB"),
        (LAUGHS, "line 5: expands to more than 10,000 values"),
        (b"a: &a [1, *a]\n", "nested deeper than 32 levels"),
        (b"[" * 200 + b"]" * 200, "nested deeper than 32 levels"),
    ],
)  # fmt: skip
def test_files_that_are_not_a_space_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "space.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as error:
        load_space(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_values_echoed_in_errors_are_cut_short(write_space):
    long = ", ".join(str(i) for i in range(2000))
    with pytest.raises(ConfigError) as error:
        load_space(write_space(f"model: {{stem_filters: {{choice: [[{long}], [{long}]]}}, stem: shared}}\n"))
    assert "stem_filters" in str(error.value) and len(str(error.value)) < 300
    with pytest.raises(ConfigError) as error:
        load_space(write_space(f"name: [{long}]\n"))
    assert len(str(error.value)) < 300


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("groups: {int: [1, 2]}, blocks_per_group: {choice: [2, [1, 1, 1]]}",
         r"model.blocks_per_group: \[1, 1, 1\] makes 3 groups, but model.groups is int \[1, 2\]"),
        ("groups: {choice: [1, 3]}, blocks_per_group: [1, 1]",
         r"model.blocks_per_group: \[1, 1\] makes 2 groups, but model.groups is choice \[1, 3\]"),
        ("groups: {int: [1, 3]}, blocks_per_group: {choice: [[1, 1], [2, 2, 2]]}",
         "model.groups: searched, but every value of model.blocks_per_group is a list"),
        ("family: densenet_bc, groups: 2, layers_per_block: {choice: [3, [2, 2, 2]]}",
         r"model.layers_per_block: \[2, 2, 2\] makes 3 groups, but model.groups is 2"),
    ],
)  # fmt: skip
def test_lists_that_contradict_the_groups_are_refused_naming_both_keys(write_space, model, message):
    with pytest.raises(ConfigError, match=message):
        load_space(write_space(f"model: {{{model}}}\n"))


def test_groups_is_drawn_only_when_a_number_leaves_it_open(write_space):
    space = load_space(write_space("model: {groups: {int: [1, 3]}, blocks_per_group: {choice: [2, [1, 2, 1]]}}\n"))
    study = optuna.create_study(directions=space.directions)
    study.enqueue_trial({"blocks_per_group": "[1, 2, 1]", "groups": 1})
    study.enqueue_trial({"blocks_per_group": "2", "groups": 2})
    listed, number = study.ask(), study.ask()
    assert space.suggest(listed, (8, 8, 1), 10).model.blocks_per_group == (1, 2, 1)
    assert "groups" not in listed.params  # the list's length decided it: nothing for the sampler to learn
    assert space.suggest(number, (8, 8, 1), 10).model.blocks_per_group == (2, 2)
    assert number.params["groups"] == 2


def test_a_family_of_an_ablation_stores_and_resumes_against_its_own_sub_space():
    from jumpsearch.space import space_changes, space_from_dict

    space = load_space(ROOT / "search_spaces" / "ablation.yaml")
    for family in space.families:
        alone = space.for_family(family)
        assert alone.raw["model"]["family"] == family and alone.raw["name"] == alone.name
        assert space_changes(space_from_dict(alone.raw, "stored"), alone) == ([], [])


@pytest.mark.parametrize(
    ("sampler", "model", "breaking"),
    [
        ("qmc", "{base_filters: {int: [8, 32]}, growth_rate: {float: [1.0, 2.0]}}",
         "base_filters range [8, 16] -> [8, 32] (qmc draws from its first trial's ranges"),
        ("qmc", "{base_filters: {int: [8, 16]}, growth_rate: {float: [1.0, 2.0]}, jump_width: {float: [0.5, 1.0]}}",
         "jump_width now searched (qmc draws"),
        ("nsga2", "{base_filters: {int: [8, 16]}, growth_rate: {float: [1.0, 3.0]}}",
         "growth_rate range [1.0, 2.0] -> [1.0, 3.0] (nsga2 would no longer model it with the other parameters)"),
        ("{name: tpe, multivariate: true}", "{base_filters: {int: [4, 16]}, growth_rate: {float: [1.0, 2.0]}}",
         "base_filters range [8, 16] -> [4, 16] (tpe would no longer model it"),
    ],
)  # fmt: skip
def test_a_range_edit_a_joint_sampler_would_not_follow_is_refused(write_space, sampler, model, breaking):
    from jumpsearch.space import space_changes

    stored = "model: {base_filters: {int: [8, 16]}, growth_rate: {float: [1.0, 2.0]}}\n"
    stored = load_space(write_space(f"sampler: {sampler}\n{stored}"))
    found, noted = space_changes(stored, load_space(write_space(f"sampler: {sampler}\nmodel: {model}\n")))
    assert any(c.startswith(breaking) for c in found), found
    tpe = load_space(write_space(f"sampler: tpe\nmodel: {model}\n"))
    assert any(breaking.startswith(c) for c in space_changes(stored, tpe)[1])  # TPE reads each trial's own range
    narrower = load_space(write_space(f"sampler: {sampler}\nmodel: {{base_filters: {{int: [8, 16]}}}}\n"))
    assert space_changes(stored, narrower) == ([], ["growth_rate no longer searched"])  # harmless to every sampler


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ("", None),
        ("model: {groups: {int: [1, 3]}, blocks_per_group: 1, base_filters: {choice: [8, 16, 24]}}\n", None),
        ("model: {groups: {int: [1, 2]}, blocks_per_group: 1, base_filters: 8}\n", "model.base_filters 16 is outsi"),
        ("model: {groups: 1, blocks_per_group: 1, base_filters: {choice: [8, 16]}}\n", "model.groups 2 is outside 1"),
        ("model: {groups: {int: [1, 2]}, blocks_per_group: {int: [2, 3]}, base_filters: {choice: [8, 16]}}\n",
         r"model.blocks_per_group \[1, 1\] is outside int \[2, 3\]"),
        ("training: {epochs: 2, learning_rate: 0.01}\n", "training.epochs 1 is outside 2"),
        ("training: {epochs: 1, learning_rate: {float: [0.02, 0.1]}}\n", r"training.learning_rate 0.01 is outside"),
        ("constraints: {max_params: 2k}\n", "5,000 params exceed max_params 2,000"),
    ],
)  # fmt: skip
def test_a_trial_outside_the_space_as_edited_is_named_with_its_reason(write_space, edit, reason):
    base = "model: {groups: {int: [1, 2]}, blocks_per_group: 1, base_filters: {choice: [8, 16]}}\n"
    base += "training: {epochs: 1, learning_rate: 0.01}\n"
    stored = load_space(write_space(base))
    study = optuna.create_study(directions=stored.directions)
    study.enqueue_trial({"groups": 2, "base_filters": 16})
    trial = study.ask()
    trial.set_user_attr("config", stored.suggest(trial, (8, 8, 1), 10).to_dict())
    trial.set_user_attr("params", 5_000)
    study.tell(trial, [0.5, 5_000])
    keys = {line.split(":")[0] for line in edit.splitlines()}
    edited = "".join([line for line in base.splitlines(keepends=True) if line.split(":")[0] not in keys] + [edit])
    found = load_space(write_space(edited)).outside(study.trials[0])
    assert (found is None) if reason is None else re.search(reason, found), found
