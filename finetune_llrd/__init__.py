"""Layer-wise learning rates for fine-tuning Hugging Face models."""

from .arguments import LLRDTrainingArguments
from .layer_map import LayerMap, LayerMapError, layer_map
from .model_card import add_layerwise_section, layerwise_lr_rows, layerwise_model_card_section
from .param_groups import depth_learning_rates, lr_table, no_weight_decay_names, param_groups
from .trainer import LLRDTrainer

__version__ = "0.1.0"

__all__ = [
    "LLRDTrainer",
    "LLRDTrainingArguments",
    "LayerMap",
    "LayerMapError",
    "add_layerwise_section",
    "depth_learning_rates",
    "layer_map",
    "layerwise_lr_rows",
    "layerwise_model_card_section",
    "lr_table",
    "no_weight_decay_names",
    "param_groups",
]
