"""The one place where finetune_llrd touches private attributes of `transformers.Trainer`.

Written against transformers 5.24.0. Everything else in the toolkit goes through the Trainer's public
methods and callback events. ``tests/test_trainer_internals.py`` fails when a transformers upgrade moves
what is used here; adapt this module (and only it) then.
"""

from __future__ import annotations

import transformers
from transformers import Trainer


WRITTEN_AGAINST_TRANSFORMERS = "5.24.0"

# Set by Trainer.create_scheduler when it builds the scheduler itself; Trainer._prepare_for_training then
# drops that scheduler at the start of the next train() so that it is rebuilt for the new step count.
_SCHEDULER_CREATED_FLAG = "_created_lr_scheduler"


def mark_scheduler_created(trainer: Trainer) -> None:
    """Marks ``trainer.lr_scheduler`` as built by the trainer, as the stock ``create_scheduler`` does for its own.

    Without it, a scheduler built by a subclass's ``create_scheduler`` would be reused by the next
    ``train()`` (a second call, or the next trial of ``hyperparameter_search``) with the step count of the
    first.

    Raises:
        RuntimeError: if this transformers no longer has the flag, naming the version this was written for.
    """
    if not hasattr(trainer, _SCHEDULER_CREATED_FLAG):
        raise RuntimeError(
            f"transformers {transformers.__version__} has no Trainer.{_SCHEDULER_CREATED_FLAG}, which finetune_llrd "
            f"(written against transformers {WRITTEN_AGAINST_TRANSFORMERS}) sets so that a scheduler it built is "
            "rebuilt at the next train(). Update finetune_llrd/_trainer_internals.py for this version, or install "
            f"transformers=={WRITTEN_AGAINST_TRANSFORMERS}."
        )
    setattr(trainer, _SCHEDULER_CREATED_FLAG, True)


def load_checkpoint_weights(trainer: Trainer, checkpoint: str) -> None:
    """Loads the model weights of ``checkpoint`` into ``trainer.model`` as the stock ``train()`` does when it
    resumes (safetensors or bin, sharded or not, adapters).

    Raises:
        RuntimeError: if this transformers no longer has ``Trainer._load_from_checkpoint``.
    """
    if not hasattr(trainer, "_load_from_checkpoint"):
        raise RuntimeError(
            f"transformers {transformers.__version__} has no Trainer._load_from_checkpoint, which finetune_llrd "
            f"(written against transformers {WRITTEN_AGAINST_TRANSFORMERS}) calls to resume from a checkpoint that "
            "already holds every step. Update finetune_llrd/_trainer_internals.py for this version."
        )
    trainer._load_from_checkpoint(checkpoint)
