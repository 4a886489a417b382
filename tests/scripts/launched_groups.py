"""Trains a tiny BERT for two steps with LLRDTrainer under whatever `accelerate launch` configures
(DeepSpeed ZeRO, FSDP2, DDP, one device) and records the groups the engine's optimizer ended up with.

Usage: launched_groups.py OUTPUT_DIR [--field value ...]  (any LLRDTrainingArguments field)
Writes OUTPUT_DIR/result.json on the main process and OUTPUT_DIR/groups-<rank>.json on every rank.
"""

import json
import os
import sys

from transformers import HfArgumentParser


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiny_models import tiny_model
from training import RandomTokens

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments, param_groups


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
        "--seed",
        "0",
        "--learning_rate",
        "1e-3",
        "--weight_decay",
        "0.01",
        "--layer_decay",
        "0.5",
        "--max_steps",
        "2",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "8",
    ]
    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(defaults + extra)
    model = tiny_model("bert")
    expected = [
        [g["layer"], g["lr"], g["weight_decay"], g.get("rule")]
        for g in param_groups(
            model, rates=args.layerwise_rates, weight_decay=args.weight_decay, rules=args.rules_for(model)
        )
    ]
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens())
    trainer.train()
    engine_optimizer = (
        trainer.optimizer.optimizer
    )  # behind Accelerate's wrapper: torch's, or DeepSpeed's ZeRO optimizer
    groups = [
        [g.get("layer"), g["initial_lr"], g["weight_decay"], g.get("rule")] for g in engine_optimizer.param_groups
    ]
    names = [g.get("param_names") for g in trainer.optimizer.param_groups]
    with open(os.path.join(output_dir, f"groups-{args.process_index}.json"), "w") as handle:
        json.dump({"groups": groups, "param_names": names}, handle)
    if args.process_index == 0:
        with open(os.path.join(output_dir, "result.json"), "w") as handle:
            json.dump(
                {
                    "distributed_type": str(trainer.accelerator.distributed_type),
                    "optimizer": type(engine_optimizer).__name__,
                    "groups": groups,
                    "expected": expected,
                    "logs": [e for e in trainer.state.log_history if "loss" in e],
                },
                handle,
            )


if __name__ == "__main__":
    main()
