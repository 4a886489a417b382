"""A user's own training script: ``HfArgumentParser(LLRDTrainingArguments)`` and ``LLRDTrainer``, no recipe
helper, as a user writes it from the README (run under ``accelerate launch`` by tests/test_launching.py).

Usage: user_script.py [--plain_training_arguments] --output_dir DIR [--field value ...]

Writes OUTPUT_DIR/rank{R}.json with the world size, the device and the log history.
"""

import json
import os
import sys

from transformers import HfArgumentParser, TrainingArguments


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiny_models import tiny_model
from training import RandomTokens

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments


def main():
    argv = sys.argv[1:]
    plain = "--plain_training_arguments" in argv
    if plain:
        argv.remove("--plain_training_arguments")
    (args,) = HfArgumentParser(TrainingArguments if plain else LLRDTrainingArguments).parse_args_into_dataclasses(argv)
    model = tiny_model("bert")
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(size=32))
    trainer.train()
    with open(os.path.join(args.output_dir, f"rank{args.process_index}.json"), "w") as handle:
        json.dump(
            {
                "world_size": args.world_size,
                "use_cpu": args.use_cpu,
                "device": args.device.type,
                "log_history": trainer.state.log_history,
            },
            handle,
        )


if __name__ == "__main__":
    main()
