"""finetune_llrd._trainer_internals: the private parts of transformers.Trainer the toolkit relies on are where
it expects them. A failure here after a transformers upgrade says which one moved."""

import pytest
from tiny_models import tiny_model
from training import RandomTokens, training_args
from transformers import Trainer, TrainingArguments

from finetune_llrd import LLRDTrainer
from finetune_llrd._trainer_internals import (
    WRITTEN_AGAINST_TRANSFORMERS,
    load_checkpoint_weights,
    mark_scheduler_created,
)
from finetune_llrd.schedules import slanted_triangular_factor


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


def test_the_stock_trainer_keeps_the_scheduler_flag_where_we_set_it(tmp_path):
    trainer = Trainer(model=tiny_model("bert"), args=training_args(tmp_path, cls=TrainingArguments))
    assert trainer._created_lr_scheduler is False
    trainer.create_optimizer()
    trainer.create_scheduler(num_training_steps=10)
    assert trainer._created_lr_scheduler is True, "Trainer.create_scheduler no longer sets _created_lr_scheduler"


def test_a_scheduler_the_trainer_built_is_rebuilt_for_the_next_train(tmp_path):
    args = training_args(tmp_path, layer_decay=0.5, lr_scheduler_type="slanted_triangular", max_steps=2)
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    trainer.train()
    first = trainer.lr_scheduler
    trainer.args.max_steps = 6
    trainer.train()
    assert trainer.lr_scheduler is not first, (
        "Trainer._prepare_for_training no longer drops a scheduler the trainer built"
    )
    schedule = trainer.lr_scheduler.lr_lambdas[0]
    assert [schedule(step) for step in range(6)] == [
        slanted_triangular_factor(step, num_training_steps=6) for step in range(6)
    ]


def test_a_missing_flag_is_reported_with_the_version_it_was_written_for():
    with pytest.raises(RuntimeError, match=rf"written against transformers {WRITTEN_AGAINST_TRANSFORMERS}\)"):
        mark_scheduler_created(object())


def test_a_missing_checkpoint_loader_is_reported_with_the_version_it_was_written_for():
    assert callable(Trainer._load_from_checkpoint), "Trainer._load_from_checkpoint moved"
    with pytest.raises(RuntimeError, match=rf"written against transformers {WRITTEN_AGAINST_TRANSFORMERS}\)"):
        load_checkpoint_weights(object(), "checkpoint-6")
