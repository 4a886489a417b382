"""The layer-wise settings: `LayerwiseArgumentsMixin` (the fields and their checks, for any `TrainingArguments`
subclass) and `LLRDTrainingArguments` (the mixin on transformers' `TrainingArguments`).

:func:`finetune_llrd.layerwise_arguments` (in :mod:`finetune_llrd.composition`) puts the mixin on any other
arguments class (``Seq2SeqTrainingArguments``, TRL's ``SFTConfig``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from ._moved import moved_names
from .adaptation import ADAPTATIONS
from .depths import LAYER_GROUPINGS, parse_layer_mapping, parse_layer_towers, validate_layer_grouping
from .groups import LayerwiseRates, ParamGroupRule, loraplus_rules, parse_param_group_rules, parse_tower_layer_decay
from .groups.loraplus import check_loraplus_settings
from .groups.rules import as_rules
from .integrations.deepspeed import refuse_deepspeed_optimizer_block
from .launching import check_processes_joined, join_launched_processes_on_cpu
from .optimizer_choice import parse_muon_kwargs
from .schedules import SLANTED_TRIANGULAR, validate_slanted_triangular_kwargs


LAYER_LR_ADAPTATIONS = ("none", *ADAPTATIONS)


@dataclass
class LayerwiseArgumentsMixin:
    """The layer-wise fields, for any `TrainingArguments` subclass: put it first among the bases,
    ``@dataclass class MyArgs(LayerwiseArgumentsMixin, Seq2SeqTrainingArguments)``, or let
    :func:`finetune_llrd.layerwise_arguments` write that class.

    It adds only its own fields, after those of the class it is mixed into, and leaves that class's fields,
    defaults, ``__post_init__`` checks and ``to_dict()`` as they are. Its ``__post_init__`` checks the
    layer-wise fields and then runs the wrapped class's. Processes a launcher started together on a machine
    without an accelerator get ``use_cpu=True``, so that they join one run over gloo; processes that still did not
    join are refused (:mod:`finetune_llrd.launching`).

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
        metadata={
            "help": "Learning rate of the task head, pooler and final norm (depth L+1). Default: learning_rate."
        },
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
    layer_towers: str = field(
        default="auto",
        metadata={
            "help": "Parallel stacks numbered side by side, each from depth 1 to L: 'auto' (the towers of CLIP, "
            "SigLIP, BLIP-2 and vision-language models), 'encoder-decoder' (also an encoder-decoder's encoder and "
            "decoder; by default they are in series), 'none' (every stack in series), or a JSON object "
            '{"name": "module.path"}.'
        },
    )
    tower_layer_decay: str | None = field(
        default=None,
        metadata={
            "help": 'A layer decay of its own for some towers, as a JSON object {"vision": 0.75, "text": 0.85} '
            "(open_clip's per-tower decay); other towers and parameters outside the towers use layer_decay."
        },
    )
    param_group_rules: str | None = field(
        default=None,
        metadata={
            "help": "Rules per module on top of the depths, tried in order, the first match winning: a JSON array "
            'such as \'[{"pattern": "multi_modal_projector", "lr_scale": 10}, {"pattern": "pos_embed", '
            '"weight_decay": 0}, {"pattern": "vision_tower", "freeze": true}]\' or the path of a JSON or YAML file '
            "holding one (a list of dicts in Python). Each rule: pattern (a regex searched in parameter names), "
            "name (its log key lr/<name>/..., default the pattern), and lr_scale (x the depth's rate), lr (a peak "
            "rate of its own), weight_decay, or freeze."
        },
    )
    loraplus_lr_ratio: float | None = field(
        default=None,
        metadata={
            "help": "LoRA+: the LoRA B matrices (and other 1-D trainable parameters, as peft's "
            "create_loraplus_optimizer) train at this many times their depth's rate; 16 is LoRA+'s suggestion. "
            "With layer_decay 1.0 every rate equals peft's create_loraplus_optimizer."
        },
    )
    loraplus_lr_embedding: float | None = field(
        default=None,
        metadata={
            "help": "LoRA+: the rate of LoRA embedding layers (peft's default 1e-6 when loraplus_lr_ratio is set)."
        },
    )
    use_muon: bool = field(
        default=False,
        metadata={
            "help": "Train with Muon at the layer-wise rates: the blocks' hidden matrices take Muon's step, every "
            "other parameter (embeddings, head, norms, biases, positions) an AdamW fallback's (betas and epsilon from "
            "--adam_beta1/--adam_beta2/--adam_epsilon), each at its depth's rate (finetune_llrd.LayerwiseMuon). "
            "Muon's update is scaled to AdamW's RMS (adjust_lr_fn='match_rms_adamw'), so AdamW-tuned rates transfer. "
            "--optim must stay an AdamW of torch's (adamw_torch, adamw_torch_fused)."
        },
    )
    muon_kwargs: str | None = field(
        default=None,
        metadata={
            "help": 'With --use_muon: Muon\'s settings as a JSON object, such as \'{"momentum": 0.95, "nesterov": '
            'true, "ns_steps": 5, "adjust_lr_fn": "match_rms_adamw"}\' (keys of finetune_llrd.LayerwiseMuon).'
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
            "help": "Adaptation of each depth's rate from the training signal, on top of the decay and the schedule "
            "(g_d, w_d: the depth's gradient and weights): 'none'; 'singh2015' (Singh et al. 2015: rate * (1 + "
            "log(1 + 1 / ||g_d||)) each step); 'auto_rgn' (Lee et al. 2023: rate * RGN_d / max RGN, RGN_d = ||g_d|| / "
            "||w_d||, each step); 'lars' (You et al. 2017: rate * 0.001 * ||w_d|| / (||g_d|| + weight_decay * ||w_d||) "
            "each step); 'autolr' (Ro & Choi 2021: every layer_lr_adaptation_interval steps, rescales the depths "
            "below the head so that their weight changes rise from bottom to top).",
            "choices": list(LAYER_LR_ADAPTATIONS),
        },
    )
    layer_lr_adaptation_interval: int = field(
        default=50,
        metadata={"help": "layer_lr_adaptation=autolr: optimizer steps between two adjustments of the rates."},
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
        _ = self.layerwise_rates  # building the value checks the five rate settings
        validate_layer_grouping(self.layer_grouping)
        self.param_group_rules = parse_param_group_rules(self.param_group_rules)
        check_loraplus_settings(self.loraplus_lr_ratio, self.loraplus_lr_embedding)
        refuse_deepspeed_optimizer_block(self.deepspeed, self.uses_layerwise_groups)
        join_launched_processes_on_cpu(self)
        self.muon_kwargs = parse_muon_kwargs(self.muon_kwargs, self.use_muon)
        slanted_triangular = self.lr_scheduler_type == SLANTED_TRIANGULAR
        if slanted_triangular:
            # TrainingArguments only knows transformers' schedules; this one is built by LLRDTrainer.
            self.lr_scheduler_type = "linear"
        super().__post_init__()
        check_processes_joined(self)
        if slanted_triangular:
            self.lr_scheduler_type = SLANTED_TRIANGULAR
            if self.warmup_steps:
                raise ValueError(
                    "lr_scheduler_type=slanted_triangular warms up by itself (cut_frac in --lr_scheduler_kwargs); "
                    "leave warmup_steps at 0."
                )
            validate_slanted_triangular_kwargs(self.lr_scheduler_kwargs or {})
        if self.layer_mapping is not None:
            self.layer_mapping = parse_layer_mapping(self.layer_mapping)
        self.layer_towers = parse_layer_towers(self.layer_towers)
        if self.tower_layer_decay is not None:
            self.tower_layer_decay = parse_tower_layer_decay(self.tower_layer_decay)
        for name in ("gradual_unfreeze_steps", "reinit_top_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0 turns it off), got {value!r}.")
        if self.layer_lr_adaptation not in LAYER_LR_ADAPTATIONS:
            raise ValueError(
                f"layer_lr_adaptation must be one of {list(LAYER_LR_ADAPTATIONS)}, got {self.layer_lr_adaptation!r}."
            )
        interval = self.layer_lr_adaptation_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"layer_lr_adaptation_interval must be an integer >= 1, got {interval!r}.")
        if self.gradual_unfreeze_steps > 0:
            # Frozen depths produce no gradients; DDP must be told to expect that.
            if self.ddp_find_unused_parameters is False:
                raise ValueError(
                    "gradual_unfreeze_steps needs ddp_find_unused_parameters=True (frozen depths produce no "
                    "gradients); leave ddp_find_unused_parameters unset or set it to True."
                )
            self.ddp_find_unused_parameters = True

    @property
    def layerwise_rates(self) -> LayerwiseRates:
        """The five rate settings (``learning_rate``, ``layer_decay``, ``head_learning_rate``,
        ``embedding_learning_rate``, ``layer_decay_min_scale``) as one value, for
        ``param_groups(model, rates=args.layerwise_rates)``.

        Raises:
            ValueError: naming the first invalid setting.
        """
        return LayerwiseRates.from_attributes(self)

    @property
    def uses_layerwise_groups(self) -> bool:
        """Whether the optimizer gets one group per depth rather than the stock decay / no-decay pair."""
        return (
            self.layerwise_rates.is_layerwise
            or self.layer_mapping is not None
            or self.gradual_unfreeze_steps > 0
            or self.layer_lr_adaptation != "none"
            or self.log_layer_grad_norms
            or self.param_group_rules is not None
            or self.loraplus_lr_ratio is not None
            or getattr(self, "use_muon", False)  # arguments pickled before the field existed
        )

    def rules_for(self, model: Any) -> tuple[ParamGroupRule, ...]:
        """The parameter rules of a model: ``param_group_rules`` in their order, then the LoRA+ rules of the model
        (``loraplus_lr_ratio``), so that a rule of the user's wins over LoRA+'s.

        Args:
            model: the module whose parameters the optimizer groups hold (LoRA+ looks for its LoRA embedding layers).
        """
        rules = as_rules(self.param_group_rules)
        if self.loraplus_lr_ratio is not None:
            rules += loraplus_rules(model, self.loraplus_lr_ratio, self.loraplus_lr_embedding)
        return rules


def lr_scheduler_type_field(args_cls: type) -> Any:
    """The ``lr_scheduler_type`` field of ``args_cls`` with 'slanted_triangular' among its choices.

    ``TrainingArguments`` types the field ``SchedulerType | str``, which ``HfArgumentParser`` restricts to
    transformers' schedules. This field keeps ``args_cls``'s own default (SFTConfig and others may change it)
    and only widens the choices.

    Args:
        args_cls: a ``TrainingArguments`` subclass (a dataclass).

    Returns:
        A ``dataclasses.Field`` to declare as ``lr_scheduler_type: str`` in a subclass of ``args_cls``.
    """
    default = args_cls.__dataclass_fields__["lr_scheduler_type"].default
    if isinstance(default, SchedulerType):
        default = default.value
    return field(
        default=default,
        metadata={
            "help": "The scheduler type: one of transformers' schedules, or 'slanted_triangular' (ULMFiT; takes "
            "cut_frac and ratio in --lr_scheduler_kwargs, default 0.1 and 32).",
            "choices": [schedule.value for schedule in SchedulerType] + [SLANTED_TRIANGULAR],
        },
    )


@dataclass
class LLRDTrainingArguments(LayerwiseArgumentsMixin, TrainingArguments):
    """`TrainingArguments` with layer-wise learning rates: :class:`LayerwiseArgumentsMixin` on
    ``TrainingArguments``, the class ``layerwise_arguments(TrainingArguments)`` returns.

    The rate at depth d (0 = embeddings, 1..L = blocks, L+1 = head) is
    ``learning_rate * layer_decay ** (L + 1 - d)``. With the defaults (``layer_decay=1.0`` and no
    per-depth override) the optimizer is exactly the stock Trainer's.
    """

    lr_scheduler_type: str = lr_scheduler_type_field(TrainingArguments)


__getattr__ = moved_names(
    __name__,
    {
        "check_deepspeed_config": "finetune_llrd.integrations.deepspeed",
        "check_deepspeed_scheduler": "finetune_llrd.integrations.deepspeed",
        # The composition of arguments classes, here in 0.2.0's development, lives in composition.py as in 0.1.0.
        "layerwise_arguments": "finetune_llrd.composition",
        "register_composed": "finetune_llrd.composition",
        "_reduce_arguments": "finetune_llrd.composition",
        "_restore_arguments": "finetune_llrd.composition",
    },
)
