"""`LLRDTrainingArguments`: transformers' `TrainingArguments` plus the layer-wise settings."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .layer_map import LAYER_GROUPINGS
from .param_groups import validate_layerwise_settings


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

    def __post_init__(self):
        super().__post_init__()
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

    @property
    def uses_layerwise_groups(self) -> bool:
        """Whether the optimizer gets one group per depth rather than the stock decay / no-decay pair."""
        return (
            self.layer_decay != 1.0
            or self.head_learning_rate is not None
            or self.embedding_learning_rate is not None
            or self.layer_mapping is not None
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
