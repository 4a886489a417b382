"""Layer-wise rates for the Trainers people already run: ``layerwise_trainer(Seq2SeqTrainer)``,
``layerwise_arguments(SFTConfig)``, ``layerwise_trainer(SentenceTransformerTrainer)``, ...

Each factory returns a subclass named ``LLRD<Name>`` with the layer-wise mixin first among its bases
(:class:`~finetune_llrd.trainer.LayerwiseTrainerMixin`, :class:`~finetune_llrd.arguments.LayerwiseArgumentsMixin`).
The class lives in this module: ``finetune_llrd.composition.LLRDSeq2SeqTrainingArguments`` is importable, and
pickle finds it, so ``torch.save(args)``, every checkpoint's ``training_args.bin`` and spawn-based launchers
work. In a fresh process the classes of the common libraries (transformers, TRL, sentence-transformers) are
made again on first access by name; arguments of any other composed class unpickle through
:func:`_restore_arguments`, which makes the class again from the import path of the class it wraps.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Any

from transformers import Trainer, TrainingArguments

from .arguments import LayerwiseArgumentsMixin, LLRDTrainingArguments, lr_scheduler_type_field
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

# wrapped class -> its composition; the stock classes map to the classes defined with their mixins.
_COMPOSED: dict[type, type] = {Trainer: LLRDTrainer, TrainingArguments: LLRDTrainingArguments}


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
    if trainer_cls in _COMPOSED:
        return _COMPOSED[trainer_cls]
    mixin = _trainer_mixin_for(trainer_cls)
    namespace = {
        "__doc__": f"``{_path(trainer_cls)}`` with layer-wise learning rates (:func:`finetune_llrd.layerwise_trainer`).\n\n"
        f"{mixin.__doc__}",
    }
    return _register(trainer_cls, type(f"LLRD{trainer_cls.__name__}", (mixin, trainer_cls), namespace))


def layerwise_arguments(args_cls: type) -> type:
    """A subclass of ``args_cls`` with the layer-wise fields, named ``LLRD<Name>``.

    ``layerwise_arguments(TrainingArguments)`` is :class:`~finetune_llrd.LLRDTrainingArguments`. The subclass
    adds only the fields of :class:`~finetune_llrd.arguments.LayerwiseArgumentsMixin` (after ``args_cls``'s
    own, so ``HfArgumentParser`` takes ``--layer_decay`` etc.); ``args_cls``'s defaults (``SFTConfig``'s
    ``learning_rate=2e-5``, ``logging_steps=10``, ``gradient_checkpointing=True``, ...), its ``__post_init__``
    checks and ``to_dict()`` stay. ``lr_scheduler_type`` keeps ``args_cls``'s default and also accepts
    ``slanted_triangular``. The same class comes back for the same ``args_cls``.

    Args:
        args_cls: ``transformers.TrainingArguments`` or a subclass (``Seq2SeqTrainingArguments``, TRL's
            ``SFTConfig`` / ``DPOConfig``, ``SentenceTransformerTrainingArguments``, your own).

    Returns:
        The composed dataclass, also reachable as ``finetune_llrd.composition.LLRD<Name>``.

    Raises:
        TypeError: if ``args_cls`` is not a ``TrainingArguments`` subclass.
    """
    if not (isinstance(args_cls, type) and issubclass(args_cls, TrainingArguments)):
        raise TypeError(f"layerwise_arguments takes a transformers.TrainingArguments subclass, got {args_cls!r}.")
    if issubclass(args_cls, LayerwiseArgumentsMixin):
        return args_cls
    if args_cls in _COMPOSED:
        return _COMPOSED[args_cls]
    namespace = {
        "__doc__": f"``{_path(args_cls)}`` with the layer-wise fields (:func:`finetune_llrd.layerwise_arguments`).\n\n"
        f"{LayerwiseArgumentsMixin.__doc__}",
        "__annotations__": {"lr_scheduler_type": str},
        "lr_scheduler_type": lr_scheduler_type_field(args_cls),
        "__reduce__": _reduce_arguments,
    }
    composed = type(f"LLRD{args_cls.__name__}", (LayerwiseArgumentsMixin, args_cls), namespace)
    return _register(args_cls, dataclasses.dataclass(composed))


def _trainer_mixin_for(trainer_cls: type) -> type:
    """The trainer mixin for ``trainer_cls``: the sentence-transformers one for its trainers, else the generic one."""
    if any(base.__module__.split(".")[0] == "sentence_transformers" for base in trainer_cls.__mro__):
        from .integrations.sentence_transformers import LayerwiseSentenceTransformerTrainerMixin

        return LayerwiseSentenceTransformerTrainerMixin
    return LayerwiseTrainerMixin


def _register(wrapped: type, composed: type) -> type:
    """Makes ``composed`` an attribute of this module, under its own name when that is free."""
    module = sys.modules[__name__]
    name = composed.__name__
    if name in vars(module):
        # Two wrapped classes with one name (your own "Seq2SeqTrainer"): the later one is qualified by its module.
        name = f"{name}__{wrapped.__module__.replace('.', '_')}"
    composed.__module__ = __name__
    composed.__qualname__ = name
    setattr(module, name, composed)
    _COMPOSED[wrapped] = composed
    return composed


def _reduce_arguments(self) -> tuple:
    """Pickles composed arguments as (the import path of the wrapped class, the field values), so that any
    process can make the class again, whether or not it has composed it yet."""
    wrapped = _wrapped_class(type(self))
    return _restore_arguments, (wrapped.__module__, wrapped.__qualname__), self.__dict__.copy()


def _restore_arguments(module: str, qualname: str) -> Any:
    """An empty instance of ``layerwise_arguments(<module>.<qualname>)``; pickle then sets its state."""
    cls = layerwise_arguments(_import(module, qualname))
    return cls.__new__(cls)


def _wrapped_class(composed: type) -> type:
    for wrapped, candidate in _COMPOSED.items():
        if candidate is composed:
            return wrapped
    raise LookupError(f"{composed!r} was not made by finetune_llrd.layerwise_arguments.")


def _import(module: str, qualname: str) -> type:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def __getattr__(name: str) -> type:
    """``finetune_llrd.composition.LLRD<Name>`` for a class of the common libraries that this process has not
    composed yet (pickle asks for it so in a fresh process)."""
    wrapped_name = name[len("LLRD"):] if name.startswith("LLRD") else None
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
