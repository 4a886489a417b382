"""The layer-wise section of a model card: the settings and the per-depth learning-rate table of a run.

``Trainer.create_model_card`` writes the stock card (``README.md`` in ``output_dir``); it knows nothing of
layer-wise rates. :func:`add_layerwise_section` inserts a section that records them, so a reader of the
card can reproduce the optimizer.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from transformers import Trainer, TrainingArguments

from .arguments import LayerwiseArgumentsMixin


SECTION_START = "<!-- finetune_llrd: layer-wise learning rates -->"
SECTION_END = "<!-- /finetune_llrd -->"
_INSERT_BEFORE = "### Framework versions"


def layerwise_settings(args: TrainingArguments) -> dict[str, Any]:
    """The layer-wise settings of ``args``: every field ``LayerwiseArgumentsMixin`` adds to the arguments.

    Args:
        args: the trainer's arguments.

    Returns:
        ``{field name: value}`` in declaration order; empty if ``args`` has no layer-wise fields.
    """
    if not isinstance(args, LayerwiseArgumentsMixin):
        return {}
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(LayerwiseArgumentsMixin)}


def layerwise_model_card_section(trainer: Trainer) -> str:
    """The Markdown section that records a run's layer-wise settings and per-depth learning rates.

    Args:
        trainer: an ``LLRDTrainer`` (after or before training).

    Returns:
        The section, from its ``###`` heading to a trailing newline.
    """
    lines = ["### Layer-wise learning rates", ""]
    settings = layerwise_settings(trainer.args)
    if not settings:
        lines.append("Trained without layer-wise settings: every parameter had the same learning rate.")
        return "\n".join(lines) + "\n"

    lines.append("Fine-tuned with `finetune_llrd` layer-wise learning rates and these settings:")
    lines.append("")
    lines.append(f"- learning_rate: {trainer.args.learning_rate}")
    lines.extend(f"- {name}: {value}" for name, value in settings.items())
    lines.append("")

    rows = trainer.layerwise_lr_table() if hasattr(trainer, "layerwise_lr_table") else []
    if not rows:
        lines.append(_optimizer_without_depths(trainer))
        return "\n".join(lines) + "\n"

    layers = getattr(trainer, "layers", None)
    if layers is not None:
        lines.append(
            f"Depth 0 holds the embeddings, depths 1-{layers.num_layers} the blocks from bottom to top, depth "
            f"{layers.head_depth} the head (depths found by `{layers.method}`). The rates are the base rates "
            "that the learning-rate schedule scales:"
        )
    else:
        lines.append("The base rate of every depth, which the learning-rate schedule scales:")
    lines.append("")
    lines.append("| depth | block | parameters | of which without weight decay | learning rate | weight decay |")
    lines.append("|---:|:---|---:|---:|---:|---:|")
    for row in rows:
        lines.append(
            f"| {row['depth']} | `{row['block']}` | {row['num_params']:,} | {row['num_params_no_decay']:,} | "
            f"{row['lr']:.3e} | {row['weight_decay']:g} |"
        )
    return "\n".join(lines) + "\n"


def add_layerwise_section(trainer: Trainer, model_card_path: str | os.PathLike | None = None) -> str | None:
    """Inserts (or replaces) the layer-wise section in the model card that ``trainer.create_model_card`` wrote.

    The section goes before the card's "Framework versions" heading, or at its end. Running it again
    replaces the section rather than adding a second one. Only the main process writes.

    Args:
        trainer: the trainer of the run.
        model_card_path: the card; by default ``README.md`` in ``trainer.args.output_dir``.

    Returns:
        The card's path, or None on processes other than the main one.

    Raises:
        FileNotFoundError: if there is no card at ``model_card_path`` (call ``trainer.create_model_card()``
            first).
    """
    if not trainer.is_world_process_zero():
        return None
    path = os.fspath(model_card_path or os.path.join(trainer.args.output_dir, "README.md"))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No model card at {path}: call trainer.create_model_card() before add_layerwise_section()."
        )
    with open(path, encoding="utf-8") as handle:
        card = handle.read()
    section = f"{SECTION_START}\n{layerwise_model_card_section(trainer)}{SECTION_END}\n"

    start, end = card.find(SECTION_START), card.find(SECTION_END)
    if start != -1 and end > start:
        card = card[:start] + section + card[end + len(SECTION_END) :].lstrip("\n")
    elif _INSERT_BEFORE in card:
        position = card.index(_INSERT_BEFORE)
        card = card[:position] + section + "\n" + card[position:]
    else:
        card = card.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(card)
    return path


def _optimizer_without_depths(trainer: Trainer) -> str:
    """What trained when no group carries a depth: the optimizer given to the trainer, or the stock one."""
    optimizer = getattr(trainer, "optimizer", None)
    optimizer = getattr(optimizer, "optimizer", optimizer)  # behind Accelerate's wrapper once training ran
    if getattr(trainer, "optimizer_was_given", False) and optimizer is not None:
        rates = sorted({group.get("initial_lr", group["lr"]) for group in optimizer.param_groups})
        return (
            f"The optimizer was given to the trainer (`optimizers=`): {type(optimizer).__name__} with "
            f"{len(optimizer.param_groups)} parameter groups at the base rates {', '.join(f'{rate:.3e}' for rate in rates)}. "
            "The layer-wise settings above were at their defaults and did not change it."
        )
    return (
        "The optimizer was the stock one: no head, embedding or per-depth rate was set and layer_decay was 1.0, "
        "so every parameter had learning_rate."
    )
