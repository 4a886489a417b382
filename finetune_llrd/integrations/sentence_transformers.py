"""Layer-wise rates in sentence-transformers' trainers (``SentenceTransformerTrainer``, ``CrossEncoderTrainer``,
``SparseEncoderTrainer``).

Their optimizer covers the loss module, which wraps the model and may hold trainable parameters of its own
(``SoftmaxLoss``' classifier), and their ``get_optimizer_cls_and_kwargs`` hands its own groups over as
``optimizer_dict``, with ``learning_rate_mapping`` already applied. Here:

* depths run over the model's modules: the ``Transformer``'s embeddings and blocks, then everything after it
  (pooling, ``Dense``, ``Normalize``) at the head's depth;
* the loss's own parameters go to the head's depth too;
* ``optimizer_dict`` is taken over: it must hold exactly the parameters of the layer-wise groups, and those
  of its groups with a rate of their own (``learning_rate_mapping``) keep that rate, in groups of their own at
  their depth. Every parameter is in exactly one group.

sentence-transformers is not imported here: the trainer hands over what it built. ``layerwise_trainer`` puts
:class:`SentenceTransformerTrainerMixin` before :class:`~finetune_llrd.trainer.LayerwiseTrainerMixin` for every
class of the library (registered below); for a class statement use
:class:`~finetune_llrd.composition.LayerwiseSentenceTransformerTrainerMixin`, the two in one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from .._moved import moved_names
from .registry import register_integration


__all__ = ["SentenceTransformerTrainerMixin", "absorb_optimizer_dict"]


class SentenceTransformerTrainerMixin:
    """The hooks of :class:`~finetune_llrd.trainer.LayerwiseTrainerMixin` for sentence-transformers' trainers, put
    before it among the bases: ``layerwise_trainer(SentenceTransformerTrainer)`` does, or write
    ``class MyTrainer(SentenceTransformerTrainerMixin, LayerwiseTrainerMixin, SentenceTransformerTrainer)``."""

    def layerwise_module(self, model: nn.Module) -> nn.Module:
        """The loss module (several losses as one ``nn.Sequential``, as sentence-transformers does), which
        holds the model and the loss's own parameters."""
        loss = getattr(self, "loss", None)
        if loss is None:
            return model
        if isinstance(loss, dict):
            return nn.Sequential(OrderedDict(loss))
        return loss

    def absorb_optimizer_groups(
        self, groups: list[dict[str, Any]], optimizer_kwargs: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Takes over sentence-transformers' ``optimizer_dict`` (see :func:`absorb_optimizer_dict`)."""
        if isinstance(optimizer_kwargs.get("optimizer_dict"), list):
            optimizer_kwargs = dict(optimizer_kwargs)
            groups = absorb_optimizer_dict(groups, optimizer_kwargs.pop("optimizer_dict"))
        return super().absorb_optimizer_groups(groups, optimizer_kwargs)


def absorb_optimizer_dict(groups: list[dict[str, Any]], optimizer_dict: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The layer-wise ``groups`` with the rates that sentence-transformers' ``optimizer_dict`` sets itself.

    A group of ``optimizer_dict`` that carries ``lr`` (one ``learning_rate_mapping`` pattern) keeps that rate:
    its parameters leave their layer-wise group for a group of their own at the same depth and weight decay,
    placed after it. The other groups of ``optimizer_dict`` (all trainable parameters, at the default rate)
    get the layer-wise rates.

    Args:
        groups: the layer-wise groups (``params``, ``lr``, ``weight_decay``, ``layer``, ``param_names``).
        optimizer_dict: sentence-transformers' groups (``params``, ``weight_decay``, maybe ``lr``).

    Returns:
        The groups to build the optimizer with; no group is empty.

    Raises:
        ValueError: if ``optimizer_dict`` holds other parameters than ``groups``.
    """
    ours = {id(param) for group in groups for param in group["params"]}
    theirs = {id(param) for group in optimizer_dict for param in group["params"]}
    if ours != theirs:
        raise ValueError(
            f"sentence-transformers' optimizer groups hold {len(theirs - ours)} parameters that the layer-wise groups "
            f"lack and lack {len(ours - theirs)} that they hold: this version of sentence-transformers optimizes "
            "other parameters than its loss module's trainable ones. Please report it to finetune_llrd."
        )
    own_rate = {id(param): group["lr"] for group in optimizer_dict if "lr" in group for param in group["params"]}
    if not own_rate:
        return groups
    absorbed = []
    for group in groups:
        by_rate: dict[float, list[int]] = {group["lr"]: []}  # the layer-wise group first: its rate is the depth's
        for index, param in enumerate(group["params"]):
            by_rate.setdefault(own_rate.get(id(param), group["lr"]), []).append(index)
        for rate, indices in by_rate.items():
            if not indices:
                continue
            absorbed.append(
                {
                    **group,
                    "lr": rate,
                    "params": [group["params"][i] for i in indices],
                    "param_names": [group["param_names"][i] for i in indices],
                }
            )
    return absorbed


register_integration(
    "sentence_transformers", matches="sentence_transformers", trainer_mixin=SentenceTransformerTrainerMixin
)

# The mixin with the layer-wise one in a single class, for a class statement, lives with the composition.
__getattr__ = moved_names(__name__, {"LayerwiseSentenceTransformerTrainerMixin": "finetune_llrd.composition"})
