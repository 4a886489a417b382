"""Trains a tiny T5 for two steps with `layerwise_trainer(Seq2SeqTrainer)` under whatever `accelerate launch`
configures and records the groups the engine's optimizer ended up with and the per-depth logs.

Usage: launched_composed.py OUTPUT_DIR [--field value ...]  (any field of layerwise_arguments(Seq2SeqTrainingArguments))
Writes OUTPUT_DIR/result.json on the main process.
"""

import json
import os
import sys

from transformers import HfArgumentParser, Seq2SeqTrainer, Seq2SeqTrainingArguments


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from composition_helpers import CopyPrefix, tiny_t5

from finetune_llrd import layerwise_arguments, layerwise_trainer, param_groups


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
        "4",
    ]
    (args,) = HfArgumentParser(layerwise_arguments(Seq2SeqTrainingArguments)).parse_args_into_dataclasses(
        defaults + extra
    )
    model = tiny_t5()
    expected = [
        [g["layer"], g["lr"], g["weight_decay"]]
        for g in param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    ]
    trainer = layerwise_trainer(Seq2SeqTrainer)(model=model, args=args, train_dataset=CopyPrefix())
    trainer.train()
    engine_optimizer = trainer.optimizer.optimizer  # behind Accelerate's wrapper
    if args.process_index == 0:
        with open(os.path.join(output_dir, "result.json"), "w") as handle:
            json.dump(
                {
                    "trainer": type(trainer).__name__,
                    "distributed_type": str(trainer.accelerator.distributed_type),
                    "num_processes": trainer.accelerator.num_processes,
                    "model_wrapper": type(trainer.model_wrapped).__name__,
                    "groups": [
                        [g.get("layer"), g["initial_lr"], g["weight_decay"]] for g in engine_optimizer.param_groups
                    ],
                    "expected": expected,
                    "logs": [e for e in trainer.state.log_history if "loss" in e],
                },
                handle,
            )


if __name__ == "__main__":
    main()
