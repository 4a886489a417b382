"""Throughput overhead of layer-wise rates in TRL's SFT: ``layerwise_trainer(SFTTrainer)`` against TRL's own
``SFTTrainer``, as ``throughput.py`` measures the plain Trainer.

Both arms fine-tune the same causal LM (the real SmolLM2-135M-Instruct from ``../shared/models/build.sh``, or with
``--quick`` a tiny Llama built from a config) fresh from the same weights on the same real chitchat
conversations (rendered with the model's chat template and cut to ``--max-length`` tokens by SFTTrainer itself),
in the same order, in one process and in lockstep (``timing.py``: each trainer runs in its own thread and they take
turns step by step, so that background load on the shared machine falls on both alike).
The LLRD arm trains with ``--layer-decay`` and logs every depth's rate at every
step (``--logging-steps 1``, the worst case). The figure is the ratio of the arms' median samples/s, with the
per-step ratios' spread; rounds alternate which arm goes first.

    python benchmarks/sft_throughput.py --threads 1            # real SmolLM2, CPU
    python benchmarks/sft_throughput.py --quick                 # a tiny Llama, seconds
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import bench_utils
import timing
from timing import ARMS


MODEL = "smollm2-135m-instruct"


SIZES = timing.lockstep_sizes(rounds=(4, 1), warmup_steps=(1, 1), measured_steps=(6, 2))


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = timing.build_parser(__doc__, "sft_throughput", SIZES, device=False)
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=bench_utils.DEFAULT_MODELS_DIR,
        help="Where build.sh put smollm2-135m-instruct.",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="Conversations per step.")
    parser.add_argument(
        "--max-length", type=int, default=128, help="Tokens per conversation (SFTConfig's max_length)."
    )
    timing.add_lockstep_arguments(parser)
    return parser


def conversations(count: int):
    """The first ``count`` real chitchat training conversations, as a `Dataset` of TRL's ``messages``."""
    from datasets import Dataset

    with gzip.open(bench_utils.DATA_DIR / "chitchat" / "train.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line)["messages"] for _, line in zip(range(count), handle)]
    return Dataset.from_dict({"messages": rows})


def sft_model_folder(args: argparse.Namespace, scratch: str) -> str:
    """The real SmolLM2 folder, or with ``--quick`` a tiny Llama (3 blocks) saved with SmolLM2's tokenizer if it
    is built, else with a ChatML tokenizer of single bytes."""
    folder = args.models_dir / MODEL
    if not args.quick:
        if not (folder / "config.json").is_file():
            raise SystemExit(f"{folder} is missing: bash ../shared/models/build.sh {args.models_dir} {MODEL}")
        return str(folder)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(folder) if (folder / "config.json").is_file() else byte_chat_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    return scratch


def byte_chat_tokenizer():
    """A tokenizer of the 256 bytes and ChatML's two markers, with a ChatML chat template (no training needed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, additional_special_tokens=["<|im_start|>", "<|im_end|>"]
    )
    fast.eos_token = fast.pad_token = "<|im_end|>"
    fast.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    )
    return fast


def make_trainer(arm: str, args: argparse.Namespace, folder: str, dataset, output_dir: str):
    """TRL's SFTTrainer with SFTConfig, or ``layerwise_trainer(SFTTrainer)`` with ``layerwise_arguments(SFTConfig)``
    and ``--layer-decay``: otherwise identical arguments (fp32, no gradient checkpointing)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    common = dict(
        output_dir=output_dir, learning_rate=1e-4, per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + args.measured_steps, max_length=args.max_length, logging_steps=args.logging_steps,
        gradient_checkpointing=False, bf16=False, use_cpu=True, **timing.QUIET_RUN,
    )  # fmt: skip
    return timing.arm_trainer(
        arm, SFTTrainer, SFTConfig, common, args.layer_decay, model=model, train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(folder),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the lockstep rounds, writes the JSON and prints the ratio; returns the results."""
    session = timing.start("sft_throughput", build_parser(), SIZES, argv)
    args = session.args
    dataset = conversations((args.warmup_steps + args.measured_steps) * args.batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        folder = sft_model_folder(args, scratch)
        rounds, trainers = timing.lockstep_rounds(
            args.rounds,
            lambda arm, output_dir: make_trainer(arm, args, folder, dataset, output_dir),
            "cpu",
            args.warmup_steps,
        )
    arms, ratio = timing.summarize_rounds(rounds, args.batch_size)
    arms = {arm: {"trainer": "SFTTrainer" if arm == "stock" else "LLRDSFTTrainer"} | arms[arm] for arm in ARMS}
    results = {
        "model": "tiny-llama" if args.quick else MODEL,
        "device": "cpu",
        "rounds": args.rounds,
        "warmup_steps": args.warmup_steps,
        "measured_steps": args.measured_steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "logging_steps": args.logging_steps,
        "layer_decay": args.layer_decay,
        # every round logs alike: the last round's logs with per-depth rates, times the rounds
        "llrd_logs_with_depth_rates": args.rounds
        * sum(1 for entry in trainers["llrd"].state.log_history if "lr/head" in entry),
        "arms": arms,
        "ratio": ratio,
    }
    return session.finish(results)


if __name__ == "__main__":
    main()
