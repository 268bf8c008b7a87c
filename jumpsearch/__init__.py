"""jumpsearch: macro-architecture search over JumpNet CNNs, ranked in an Optuna study.

Example:
    >>> from jumpsearch import build_model, canonical_config, count_params
    >>> config = canonical_config("jumpnet_seed_cifar")
    >>> count_params(config)  # trainable weights, known before anything is built
    810714
"""

from jumpsearch.ablation import run_ablation, write_ablation
from jumpsearch.canonical import canonical_config
from jumpsearch.config import Candidate, DataConfig, ModelConfig, TrainingConfig, register_family
from jumpsearch.confirm import Confirmation, confirm
from jumpsearch.counting import count_flops, count_params
from jumpsearch.data import Dataset, load_dataset
from jumpsearch.ehvi import EHVISampler, space_view
from jumpsearch.errors import ConfigError, Interrupted, JumpsearchError
from jumpsearch.final import FinalResult, train_final
from jumpsearch.models import build_model
from jumpsearch.models.densenet import DenseNetConfig, SparseNetConfig
from jumpsearch.models.jumpnet import JumpNetConfig
from jumpsearch.models.resnet_v2 import ResNetV2Config
from jumpsearch.recipe import Recipe
from jumpsearch.report import write_report
from jumpsearch.results import (
    Best,
    best_configs,
    export_configs,
    exported_data,
    exported_recipe,
    load_configs,
    load_study,
    pareto_front,
    read_recipe,
)
from jumpsearch.schedule import Schedule
from jumpsearch.space import SearchSpace, load_space
from jumpsearch.study import create_study, run_search
from jumpsearch.training import compile_model, train_and_evaluate
from jumpsearch.workers import run_workers

__all__ = [
    "Best",
    "FinalResult",
    "Candidate",
    "ConfigError",
    "Confirmation",
    "DataConfig",
    "Dataset",
    "DenseNetConfig",
    "EHVISampler",
    "JumpNetConfig",
    "Interrupted",
    "JumpsearchError",
    "ModelConfig",
    "Recipe",
    "ResNetV2Config",
    "Schedule",
    "SearchSpace",
    "SparseNetConfig",
    "TrainingConfig",
    "best_configs",
    "build_model",
    "canonical_config",
    "compile_model",
    "confirm",
    "count_flops",
    "count_params",
    "create_study",
    "export_configs",
    "exported_data",
    "exported_recipe",
    "read_recipe",
    "load_configs",
    "load_dataset",
    "load_space",
    "load_study",
    "pareto_front",
    "register_family",
    "run_ablation",
    "run_search",
    "run_workers",
    "space_view",
    "train_and_evaluate",
    "train_final",
    "write_ablation",
    "write_report",
]
