"""Trains a tiny BERT with LLRDTrainer and save_on_preemption for one epoch of 192 samples; run directly or
under `accelerate launch`. Layer-wise rates (decay 0.5), gradual unfreezing, the adaptive rates of Singh et
al. and per-depth logging are on; checkpoints every 8 steps.

Usage: preemptible_run.py OUTPUT_DIR [--field value ...]  (any LLRDTrainingArguments field;
``--resume_from_checkpoint True`` takes the newest complete checkpoint)

Writes OUTPUT_DIR/pid{R} (its process id) at the start, OUTPUT_DIR/progress{R} (the optimizer step) after
every step, and at the end OUTPUT_DIR/rank{R}.json (log history, world size) and rank{R}.pt (weights).
For the tests to land signals where they want, PREEMPT_TEST_STEP_SECONDS slows every optimizer step down
and PREEMPT_TEST_STATE_WRITE_SECONDS waits before each trainer_state.json is written.
"""

import json
import os
import sys
import time

import torch
from transformers import HfArgumentParser, TrainerCallback, TrainerState


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiny_models import tiny_model
from training import RandomTokens

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments


DEFAULTS = [
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--use_cpu",
    "true",
    "--seed",
    "0",
    "--data_seed",
    "0",
    "--learning_rate",
    "1e-3",
    "--weight_decay",
    "0.01",
    "--layer_decay",
    "0.5",
    "--gradual_unfreeze_steps",
    "6",
    "--layer_lr_adaptation",
    "singh2015",
    "--log_layer_grad_norms",
    "true",
    "--logging_steps",
    "1",
    "--num_train_epochs",
    "1",
    "--per_device_train_batch_size",
    "4",
    "--save_strategy",
    "steps",
    "--save_steps",
    "8",
    "--dataloader_drop_last",
    "true",
    "--save_on_preemption",
    "true",
    "--ddp_timeout",
    "60",
    "--log_level",
    "warning",
]


class Progress(TrainerCallback):
    def __init__(self, path: str, step_seconds: float):
        self.path = path
        self.step_seconds = step_seconds

    def on_step_end(self, args, state, control, **kwargs):
        with open(self.path, "w") as handle:
            handle.write(str(state.global_step))
        time.sleep(self.step_seconds)


def slow_down_state_writes(seconds: float) -> None:
    save_to_json = TrainerState.save_to_json

    def waiting_save_to_json(self, json_path):
        time.sleep(seconds)
        save_to_json(self, json_path)

    TrainerState.save_to_json = waiting_save_to_json


def run(output_dir: str, extra: list[str]) -> None:
    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", output_dir] + DEFAULTS + extra
    )
    rank = args.process_index
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"pid{rank}"), "w") as handle:
        handle.write(str(os.getpid()))
    if os.environ.get("PREEMPT_TEST_STATE_WRITE_SECONDS"):
        slow_down_state_writes(float(os.environ["PREEMPT_TEST_STATE_WRITE_SECONDS"]))

    model = tiny_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    # Its loss is a batch mean that ignores num_items_in_batch (see train_tiny.py).
    model.accepts_loss_kwargs = False
    progress = Progress(
        os.path.join(output_dir, f"progress{rank}"), float(os.environ.get("PREEMPT_TEST_STEP_SECONDS", "0"))
    )
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(size=192), callbacks=[progress])
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)  # "True" / "true" as the command line gives it

    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"world_size": args.world_size, "log_history": trainer.state.log_history}, handle)
    torch.save(
        {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
        os.path.join(output_dir, f"rank{rank}.pt"),
    )


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
