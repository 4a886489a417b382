"""Trains a tiny BERT with LLRDTrainer for a few steps; run directly or under `accelerate launch`.

Usage: train_tiny.py OUTPUT_DIR [--field value ...]  (any LLRDTrainingArguments field)

Writes OUTPUT_DIR/rank{R}.json with the log history and the world size, and OUTPUT_DIR/rank{R}.pt with
the final weights.
"""

import json
import os
import sys

import torch
from transformers import HfArgumentParser


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiny_models import tiny_model
from training import RandomTokens

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments


def main():
    output_dir, extra = sys.argv[1], sys.argv[2:]
    defaults = [
        "--output_dir",
        output_dir,
        "--report_to",
        "none",
        "--save_strategy",
        "no",
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
        "--logging_steps",
        "1",
        "--dataloader_drop_last",
        "true",
    ]
    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(defaults + extra)
    model = tiny_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    # Its loss is a batch mean that ignores num_items_in_batch; without this the Trainer would scale it by
    # the number of processes (and not divide it by the accumulation steps).
    model.accepts_loss_kwargs = False
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(size=32))
    trainer.train()
    rank = args.process_index
    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"world_size": args.world_size, "log_history": trainer.state.log_history}, handle)
    torch.save(
        {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
        os.path.join(output_dir, f"rank{rank}.pt"),
    )


if __name__ == "__main__":
    main()
