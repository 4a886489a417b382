"""Layer-wise arguments for trainers that take their own arguments class, as TRL's do.

TRL's ``SFTTrainer`` wants an ``SFTConfig`` and copies any other ``TrainingArguments`` into a plain one with
``to_dict()``, which fails on the layer-wise fields. This integration tells which class a TRL trainer takes
(:func:`arguments_class_taken_by`); ``layerwise_trainer`` then makes the same copy into the layer-wise
composition of that class, so they are kept
(:func:`~finetune_llrd.composition.with_arguments_the_trainer_takes`). TRL is not imported here: the class
is read from the trainer's ``__init__`` annotation.
"""

from __future__ import annotations

import sys
import typing

from transformers import TrainingArguments

from .._moved import moved_names
from .registry import register_integration


__all__ = ["arguments_class_taken_by"]


def arguments_class_taken_by(trainer_cls: type) -> type | None:
    """The ``TrainingArguments`` subclass that the nearest ``__init__`` of ``trainer_cls`` names for ``args``
    (``SFTConfig`` for ``SFTTrainer``); None where it names ``TrainingArguments`` itself or nothing readable."""
    for cls in trainer_cls.__mro__:
        annotation = getattr(cls.__dict__.get("__init__"), "__annotations__", {}).get("args")
        if annotation is None:
            continue
        if isinstance(annotation, typing.ForwardRef):
            annotation = annotation.__forward_arg__
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, vars(sys.modules[cls.__module__]))  # noqa: S307 - the library's own annotation
            except Exception:  # noqa: BLE001 - a name imported only for type checkers
                return None
        candidates = typing.get_args(annotation) or (annotation,)
        for candidate in candidates:
            if (
                isinstance(candidate, type)
                and issubclass(candidate, TrainingArguments)
                and candidate is not TrainingArguments
            ):
                return candidate
        return None
    return None


register_integration("trl", matches="trl", arguments_class=arguments_class_taken_by)

__getattr__ = moved_names(__name__, {"with_arguments_the_trainer_takes": "finetune_llrd.composition"})
