"""`LLRDTrainingArguments`: transformers' `TrainingArguments` plus the layer-wise settings."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from .layer_map import LAYER_GROUPINGS
from .param_groups import validate_layerwise_settings
from .schedules import SLANTED_TRIANGULAR, validate_slanted_triangular_kwargs

LAYER_LR_ADAPTATIONS = ("none", "singh2015")


@dataclass
class LLRDTrainingArguments(TrainingArguments):
    """`TrainingArguments` with layer-wise learning rates.

    The rate at depth d (0 = embeddings, 1..L = blocks, L+1 = head) is
    ``learning_rate * layer_decay ** (L + 1 - d)``. With the defaults (``layer_decay=1.0`` and no
    per-depth override) the optimizer is exactly the stock Trainer's.
    """

    layer_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise learning-rate decay in (0, 1]: depth d of L+1 gets learning_rate * layer_decay ** "
            "(L + 1 - d). 1.0 keeps the stock optimizer. Usual: 0.65-0.75 for ViT/BEiT, 0.8 for ELECTRA, "
            "0.9-0.95 for BERT-style encoders."
        },
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the task head, pooler and final norm (depth L+1). Default: learning_rate."},
    )
    embedding_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the embeddings or stem (depth 0). Default: learning_rate * layer_decay ** (L + 1)."
        },
    )
    layer_decay_min_scale: float = field(
        default=0.0,
        metadata={
            "help": "Floor in [0, 1] for the decayed rates, as a fraction of learning_rate: no depth goes below "
            "learning_rate * layer_decay_min_scale."
        },
    )
    layer_grouping: str = field(
        default="block",
        metadata={
            "help": "What one depth is: 'block' (every transformer block or residual block) or 'stage' (every "
            "stage of a staged backbone such as Swin, ConvNeXt or ResNet; same as 'block' for other models).",
            "choices": list(LAYER_GROUPINGS),
        },
    )
    layer_mapping: str | None = field(
        default=None,
        metadata={
            "help": "Your own depths for parameters the automatic map gets wrong or cannot place: a JSON object "
            "{regex: depth} (first match wins), inline or as a path to a .json file. 0 = embeddings, "
            "1..L = blocks, L+1 = head."
        },
    )

    lr_scheduler_type: str = field(
        default="linear",
        metadata={
            "help": "The scheduler type: one of transformers' schedules, or 'slanted_triangular' (ULMFiT; takes "
            "cut_frac and ratio in --lr_scheduler_kwargs, default 0.1 and 32).",
            "choices": [schedule.value for schedule in SchedulerType] + [SLANTED_TRIANGULAR],
        },
    )
    gradual_unfreeze_steps: int = field(
        default=0,
        metadata={
            "help": "Gradual unfreezing (ULMFiT): with N > 0 only the head trains at first, and every N optimizer "
            "steps the next depth below joins. Frozen depths get no update, no optimizer state and no weight decay. "
            "0 turns it off."
        },
    )
    layer_lr_adaptation: str = field(
        default="none",
        metadata={
            "help": "Per-step adaptation of each depth's rate from that depth's gradient norm: 'none', or 'singh2015' "
            "(Singh et al. 2015: rate * (1 + log(1 + 1 / ||g_depth||)), on top of the decay and the schedule).",
            "choices": list(LAYER_LR_ADAPTATIONS),
        },
    )
    reinit_top_layers: int = field(
        default=0,
        metadata={
            "help": "Re-initialise the top k blocks and the head (pooler, final norm, classifier) with the model's own "
            "initialisation before fine-tuning (Zhang et al. 2021, 'Revisiting Few-sample BERT Fine-tuning'). "
            "0 turns it off."
        },
    )
    log_layer_grad_norms: bool = field(
        default=False,
        metadata={
            "help": "Log every depth's gradient norm (grad_norm/layer_XX) and update-to-weight ratio "
            "(update_ratio/layer_XX) at each logging step; `finetune-llrd plot RUN_DIR` draws them."
        },
    )

    stop_on_nonfinite_loss: bool = field(
        default=True,
        metadata={
            "help": "Stop with a clear error when the training loss becomes NaN or inf, before the optimizer applies "
            "that step, so the last checkpoint stays the last good one. False trains on, as the stock Trainer does."
        },
    )
    save_on_preemption: bool = field(
        default=False,
        metadata={
            "help": "On SIGTERM or SIGUSR1 (a cluster's preemption notice), finish the current optimizer step on all "
            "ranks, write a complete checkpoint there and exit with code 75 (EX_TEMPFAIL), leaving "
            "output_dir/preempted.json; run the same command with --resume_from_checkpoint True to continue."
        },
    )

    def __post_init__(self):
        _refuse_deepspeed_optimizer_block(self.deepspeed, self.uses_layerwise_groups)
        slanted_triangular = self.lr_scheduler_type == SLANTED_TRIANGULAR
        if slanted_triangular:
            # TrainingArguments only knows transformers' schedules; this one is built by LLRDTrainer.
            self.lr_scheduler_type = "linear"
        super().__post_init__()
        if slanted_triangular:
            self.lr_scheduler_type = SLANTED_TRIANGULAR
            if self.warmup_steps:
                raise ValueError(
                    "lr_scheduler_type=slanted_triangular warms up by itself (cut_frac in --lr_scheduler_kwargs); "
                    "leave warmup_steps at 0."
                )
            validate_slanted_triangular_kwargs(self.lr_scheduler_kwargs or {})
        validate_layerwise_settings(
            learning_rate=self.learning_rate,
            layer_decay=self.layer_decay,
            head_learning_rate=self.head_learning_rate,
            embedding_learning_rate=self.embedding_learning_rate,
            layer_decay_min_scale=self.layer_decay_min_scale,
            layer_grouping=self.layer_grouping,
        )
        if self.layer_mapping is not None:
            self.layer_mapping = parse_layer_mapping(self.layer_mapping)
        for name in ("gradual_unfreeze_steps", "reinit_top_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0 turns it off), got {value!r}.")
        if self.layer_lr_adaptation not in LAYER_LR_ADAPTATIONS:
            raise ValueError(
                f"layer_lr_adaptation must be one of {list(LAYER_LR_ADAPTATIONS)}, got {self.layer_lr_adaptation!r}."
            )
        if self.gradual_unfreeze_steps > 0:
            # Frozen depths produce no gradients; DDP must be told to expect that.
            if self.ddp_find_unused_parameters is False:
                raise ValueError(
                    "gradual_unfreeze_steps needs ddp_find_unused_parameters=True (frozen depths produce no "
                    "gradients); leave ddp_find_unused_parameters unset or set it to True."
                )
            self.ddp_find_unused_parameters = True

    @property
    def uses_layerwise_groups(self) -> bool:
        """Whether the optimizer gets one group per depth rather than the stock decay / no-decay pair."""
        return (
            self.layer_decay != 1.0
            or self.head_learning_rate is not None
            or self.embedding_learning_rate is not None
            or self.layer_mapping is not None
            or self.gradual_unfreeze_steps > 0
            or self.layer_lr_adaptation != "none"
            or self.log_layer_grad_norms
        )


def _refuse_deepspeed_optimizer_block(deepspeed: str | dict | None, layerwise: bool) -> None:
    if deepspeed is None or not layerwise:
        return
    config = deepspeed
    if isinstance(deepspeed, str):
        if not os.path.isfile(deepspeed):
            return  # the stock validation reports a missing file
        with open(deepspeed, encoding="utf-8") as handle:
            config = json.load(handle)
    check_deepspeed_config(config)


def check_deepspeed_config(config: dict) -> None:
    """Refuses a DeepSpeed config with an ``optimizer`` block: DeepSpeed would then build its own optimizer
    from all parameters, silently dropping the layer-wise groups.

    Raises:
        ValueError: saying what to remove.
    """
    if isinstance(config, dict) and "optimizer" in config:
        raise ValueError(
            "The DeepSpeed config has an 'optimizer' block: DeepSpeed would then build its own optimizer from all "
            "parameters and silently drop the layer-wise groups. Remove the 'optimizer' block (the Trainer's "
            "optimizer, set with --optim, is used instead)."
        )


def parse_layer_mapping(value: str | dict) -> dict[str, int]:
    """Reads ``--layer_mapping``: a dict, a JSON object, or the path of a JSON file holding one.

    Args:
        value: the field's value.

    Returns:
        ``{regex: depth}``.

    Raises:
        ValueError: if it is not a JSON object of regex -> non-negative int.
    """
    if isinstance(value, str):
        text = value
        if not value.lstrip().startswith("{"):
            if not os.path.isfile(value):
                raise ValueError(
                    f"layer_mapping must be a JSON object such as '{{\"^stem\\\\.\": 0}}' or the path of a JSON file; "
                    f"{value!r} is neither."
                )
            with open(value, encoding="utf-8") as handle:
                text = handle.read()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"layer_mapping is not valid JSON: {error}.") from error
    if not isinstance(value, dict):
        raise ValueError(f"layer_mapping must be a JSON object {{regex: depth}}, got {type(value).__name__}.")
    for pattern, depth in value.items():
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"layer_mapping key {pattern!r} is not a valid regex: {error}.") from error
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"layer_mapping depth for {pattern!r} must be an integer >= 0, got {depth!r}.")
    return dict(value)
