"""Layer-wise learning rates for fine-tuning Hugging Face models.

``import finetune_llrd`` loads nothing but this file: each public name is imported from its module when it is
first used (PEP 562), so ``from finetune_llrd import layer_map, param_groups`` loads torch alone, not
transformers' Trainer, accelerate or datasets.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ._moved import install_moved_module_finder


try:
    __version__ = version("finetune-llrd")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

# Public name -> the module that defines it.
_PUBLIC_NAMES = {
    "LayerMap": "depths",
    "LayerMapError": "depths",
    "layer_map": "depths",
    "LayerwiseRates": "groups",
    "ParamGroupRule": "groups",
    "depth_learning_rate_logs": "groups",
    "depth_learning_rates": "groups",
    "loraplus_rules": "groups",
    "format_lr_table": "groups",
    "lr_table": "groups",
    "no_weight_decay_names": "groups",
    "param_groups": "groups",
    "LayerwiseArgumentsMixin": "arguments",
    "LLRDTrainingArguments": "arguments",
    "layerwise_arguments": "composition",
    "LayerwiseTrainerMixin": "trainer",
    "LLRDTrainer": "trainer",
    "layerwise_trainer": "composition",
    "GradualUnfreezingCallback": "callbacks",
    "NonFiniteLossCallback": "callbacks",
    "NonFiniteLossError": "callbacks",
    "PREEMPTED_EXIT_CODE": "preemption",
    "PreemptionCallback": "preemption",
    "TrainingPreempted": "preemption",
    "add_layerwise_section": "model_card",
    "layerwise_model_card_section": "model_card",
    "reinit_top_layers": "reinit",
    "get_slanted_triangular_schedule": "schedules",
    "LayerwiseMuon": "optimizers",
    "layerwise_muon": "optimizers",
}

__all__ = sorted(_PUBLIC_NAMES)

install_moved_module_finder()
# The old modules finetune_llrd.layer_map and finetune_llrd.param_groups share their names with the functions
# exported here. Importing a submodule binds it on the package, where it would hide the function: load the two
# (light, see _moved.py) now and drop what the import bound, so the names stay the functions.
for _old_module in ("layer_map", "param_groups"):
    importlib.import_module(f".{_old_module}", __name__)
    del globals()[_old_module]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC_NAMES))


if TYPE_CHECKING:
    from .arguments import LayerwiseArgumentsMixin, LLRDTrainingArguments
    from .callbacks import GradualUnfreezingCallback, NonFiniteLossCallback, NonFiniteLossError
    from .composition import layerwise_arguments, layerwise_trainer
    from .depths import LayerMap, LayerMapError, layer_map
    from .groups import (
        LayerwiseRates,
        ParamGroupRule,
        depth_learning_rate_logs,
        depth_learning_rates,
        format_lr_table,
        loraplus_rules,
        lr_table,
        no_weight_decay_names,
        param_groups,
    )
    from .model_card import add_layerwise_section, layerwise_model_card_section
    from .optimizers import LayerwiseMuon, layerwise_muon
    from .preemption import PREEMPTED_EXIT_CODE, PreemptionCallback, TrainingPreempted
    from .reinit import reinit_top_layers
    from .schedules import get_slanted_triangular_schedule
    from .trainer import LayerwiseTrainerMixin, LLRDTrainer
