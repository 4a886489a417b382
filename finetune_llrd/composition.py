"""Layer-wise rates for the Trainers people already run: ``layerwise_trainer(Seq2SeqTrainer)``,
``layerwise_arguments(SFTConfig)``, ``layerwise_trainer(SentenceTransformerTrainer)``, ...

Each factory returns a subclass named ``LLRD<Name>`` with the layer-wise mixin first among its bases
(:class:`~finetune_llrd.trainer.LayerwiseTrainerMixin`, :class:`~finetune_llrd.arguments.LayerwiseArgumentsMixin`).
A composed trainer lives in this module, a composed arguments class in :mod:`finetune_llrd.arguments` (where
:func:`layerwise_arguments` is defined); both are reachable here as ``finetune_llrd.composition.LLRD<Name>``.
In a fresh process the classes of the common libraries (transformers, TRL, sentence-transformers) are made
again on first access by name, so pickle finds them; composed arguments of any other class unpickle through
``_restore_arguments``, which makes the class again from the import path of the class it wraps.
"""

from __future__ import annotations

import sys

from transformers import Trainer

from . import arguments as arguments_module
from .arguments import LayerwiseArgumentsMixin, _import, _path, layerwise_arguments, register_composed

# Arguments pickled by 0.1.0 name their restoring function finetune_llrd.composition._restore_arguments.
from .arguments import _restore_arguments as _restore_arguments
from .integrations.sentence_transformers import LayerwiseSentenceTransformerTrainerMixin
from .trainer import LayerwiseTrainerMixin, LLRDTrainer


__all__ = ["LayerwiseArgumentsMixin", "LayerwiseTrainerMixin", "layerwise_arguments", "layerwise_trainer"]

# Wrapped classes whose composition a fresh process makes again when pickle (or an import) asks for it by
# name: "Name" -> candidate (module, qualname) of the wrapped class.
_KNOWN_WRAPPED = {
    "Seq2SeqTrainer": [("transformers", "Seq2SeqTrainer")],
    "Seq2SeqTrainingArguments": [("transformers", "Seq2SeqTrainingArguments")],
    "SFTTrainer": [("trl", "SFTTrainer")],
    "SFTConfig": [("trl", "SFTConfig")],
    "DPOTrainer": [("trl", "DPOTrainer")],
    "DPOConfig": [("trl", "DPOConfig")],
    "SentenceTransformerTrainer": [("sentence_transformers", "SentenceTransformerTrainer")],
    "SentenceTransformerTrainingArguments": [("sentence_transformers", "SentenceTransformerTrainingArguments")],
    "CrossEncoderTrainer": [("sentence_transformers.cross_encoder", "CrossEncoderTrainer")],
    "CrossEncoderTrainingArguments": [("sentence_transformers.cross_encoder", "CrossEncoderTrainingArguments")],
    "SparseEncoderTrainer": [("sentence_transformers.sparse_encoder", "SparseEncoderTrainer")],
    "SparseEncoderTrainingArguments": [("sentence_transformers.sparse_encoder", "SparseEncoderTrainingArguments")],
}

# wrapped trainer class -> its composition; the stock Trainer maps to LLRDTrainer.
_COMPOSED_TRAINERS: dict[type, type] = {Trainer: LLRDTrainer}


def layerwise_trainer(trainer_cls: type) -> type:
    """A subclass of ``trainer_cls`` with layer-wise learning rates, named ``LLRD<Name>``.

    ``layerwise_trainer(Trainer)`` is :class:`~finetune_llrd.LLRDTrainer`. The subclass takes
    ``trainer_cls``'s arguments plus ``layer_mapping=``, and keeps all of its behaviour but the optimizer's
    groups (see :class:`~finetune_llrd.trainer.LayerwiseTrainerMixin`). For sentence-transformers trainers it
    also takes over the groups they build (their loss modules' parameters at the head's rate,
    ``learning_rate_mapping``), see :mod:`finetune_llrd.integrations.sentence_transformers`. The same class
    comes back for the same ``trainer_cls``.

    Args:
        trainer_cls: ``transformers.Trainer`` or a subclass (``Seq2SeqTrainer``, TRL's ``SFTTrainer`` /
            ``DPOTrainer``, ``SentenceTransformerTrainer``, your own).

    Returns:
        The composed class, also reachable as ``finetune_llrd.composition.LLRD<Name>``.

    Raises:
        TypeError: if ``trainer_cls`` is not a ``Trainer`` subclass.
    """
    if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, Trainer)):
        raise TypeError(f"layerwise_trainer takes a transformers.Trainer subclass, got {trainer_cls!r}.")
    if issubclass(trainer_cls, LayerwiseTrainerMixin):
        return trainer_cls
    if trainer_cls in _COMPOSED_TRAINERS:
        return _COMPOSED_TRAINERS[trainer_cls]
    mixin = _trainer_mixin_for(trainer_cls)
    namespace = {
        "__doc__": f"``{_path(trainer_cls)}`` with layer-wise learning rates (:func:`finetune_llrd.layerwise_trainer`).\n\n"
        f"{mixin.__doc__}",
    }
    composed = type(f"LLRD{trainer_cls.__name__}", (mixin, trainer_cls), namespace)
    return register_composed(sys.modules[__name__], trainer_cls, composed, _COMPOSED_TRAINERS)


def _trainer_mixin_for(trainer_cls: type) -> type:
    """The trainer mixin for ``trainer_cls``: the sentence-transformers one for its trainers, else the generic one."""
    if any(base.__module__.split(".")[0] == "sentence_transformers" for base in trainer_cls.__mro__):
        return LayerwiseSentenceTransformerTrainerMixin
    return LayerwiseTrainerMixin


def __getattr__(name: str) -> type:
    """``finetune_llrd.composition.LLRD<Name>``: a composed arguments class made before, or the composition of a
    class of the common libraries that this process has not composed yet (pickle asks for it so in a fresh
    process)."""
    if name.startswith("LLRD") and name in vars(arguments_module):
        return vars(arguments_module)[name]
    wrapped_name = name[len("LLRD") :] if name.startswith("LLRD") else None
    for module, qualname in _KNOWN_WRAPPED.get(wrapped_name, []):
        try:
            wrapped = _import(module, qualname)
        except (ImportError, AttributeError):
            continue
        return layerwise_trainer(wrapped) if issubclass(wrapped, Trainer) else layerwise_arguments(wrapped)
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}: composed classes exist once layerwise_trainer() or "
        "layerwise_arguments() made them; call it on the wrapped class before loading what refers to it."
    )
