"""Layer-wise learning rates for fine-tuning Hugging Face models."""

from .arguments import LayerwiseArgumentsMixin, LLRDTrainingArguments
from .callbacks import GradualUnfreezingCallback, NonFiniteLossCallback
from .composition import layerwise_arguments, layerwise_trainer
from .layer_map import LayerMap, LayerMapError, layer_map
from .model_card import add_layerwise_section, layerwise_model_card_section
from .param_groups import depth_learning_rates, lr_table, no_weight_decay_names, param_groups
from .preemption import PREEMPTED_EXIT_CODE, PreemptionCallback, TrainingPreempted
from .rates import LayerwiseRates
from .reinit import reinit_top_layers
from .schedules import get_slanted_triangular_schedule
from .trainer import LayerwiseTrainerMixin, LLRDTrainer

__version__ = "0.1.0"

__all__ = [
    "GradualUnfreezingCallback",
    "LLRDTrainer",
    "LLRDTrainingArguments",
    "LayerMap",
    "LayerMapError",
    "LayerwiseArgumentsMixin",
    "LayerwiseTrainerMixin",
    "LayerwiseRates",
    "NonFiniteLossCallback",
    "PREEMPTED_EXIT_CODE",
    "PreemptionCallback",
    "TrainingPreempted",
    "add_layerwise_section",
    "depth_learning_rates",
    "get_slanted_triangular_schedule",
    "layer_map",
    "layerwise_arguments",
    "layerwise_trainer",
    "layerwise_model_card_section",
    "lr_table",
    "no_weight_decay_names",
    "param_groups",
    "reinit_top_layers",
]
