"""Throughput overhead of layer-wise rates in TRL's SFT: ``layerwise_trainer(SFTTrainer)`` against TRL's own
``SFTTrainer``, as ``throughput.py`` measures the plain Trainer.

Both arms fine-tune the same causal LM (the real SmolLM2-135M-Instruct from ``../shared/models/build.sh``, or with
``--quick`` a tiny Llama built from a config) fresh from the same weights on the same real chitchat
conversations (rendered with the model's chat template and cut to ``--max-length`` tokens by SFTTrainer itself),
in the same order, in one process and in lockstep: each trainer runs in its own thread and they take turns step
by step, so that background load on the shared machine falls on both alike (``throughput.train_in_lockstep``).
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
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_utils
from throughput import ARMS, summarize_rounds, train_in_lockstep


MODEL = "smollm2-135m-instruct"


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A miniature run on a tiny Llama built from a config.")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=bench_utils.REPO_ROOT / "out" / "models",
        help="Where build.sh put smollm2-135m-instruct.",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="Rounds of lockstep training with fresh trainers (default 4, quick 1).",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="Steps of every round left out of the timing (default 1, quick 1).",
    )
    parser.add_argument(
        "--measured-steps", type=int, default=None, help="Timed steps per arm and round (default 6, quick 2)."
    )
    parser.add_argument("--batch-size", type=int, default=4, help="Conversations per step.")
    parser.add_argument(
        "--max-length", type=int, default=128, help="Tokens per conversation (SFTConfig's max_length)."
    )
    parser.add_argument("--layer-decay", type=float, default=0.9, help="The LLRD arm's layer decay.")
    parser.add_argument(
        "--logging-steps",
        type=int,
        default=1,
        help="Log every this many steps (1: the worst case for per-depth logging).",
    )
    bench_utils.add_threads_argument(parser)
    parser.add_argument(
        "--output", type=Path, default=None, help="The JSON file (default: benchmarks/results/sft_throughput.json)."
    )
    return parser


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Gives the unset sizes their full or quick defaults."""
    for name, (full, quick) in {"rounds": (4, 1), "warmup_steps": (1, 1), "measured_steps": (6, 2)}.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def conversations(count: int):
    """The first ``count`` real chitchat training conversations, as a `Dataset` of TRL's ``messages``."""
    from datasets import Dataset

    with gzip.open(bench_utils.DATA_DIR / "chitchat" / "train.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line)["messages"] for _, line in zip(range(count), handle)]
    return Dataset.from_dict({"messages": rows})


def model_folder(args: argparse.Namespace, scratch: str) -> str:
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
    and ``--layer-decay``: otherwise identical arguments (fp32, no gradient checkpointing), progress printing off."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from finetune_llrd import layerwise_arguments, layerwise_trainer

    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    common = dict(
        output_dir=output_dir, learning_rate=1e-4, per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + args.measured_steps, max_length=args.max_length, logging_steps=args.logging_steps,
        gradient_checkpointing=False, bf16=False, use_cpu=True, save_strategy="no", report_to=[], disable_tqdm=True,
        seed=0, dataloader_num_workers=0,
    )  # fmt: skip
    if arm == "stock":
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=dataset, processing_class=tokenizer)
    else:
        trainer_args = layerwise_arguments(SFTConfig)(**common, layer_decay=args.layer_decay)
        trainer = layerwise_trainer(SFTTrainer)(
            model=model, args=trainer_args, train_dataset=dataset, processing_class=tokenizer
        )
    trainer.remove_callback(PrinterCallback)
    return trainer


def lockstep_round(first: str, args: argparse.Namespace, folder: str, dataset) -> dict[str, Any]:
    """Trains both arms in lockstep once, with fresh trainers (``throughput.train_in_lockstep``); per arm the timed
    step seconds (after the warm-up) and the number of optimizer groups, and how many steps logged per-depth rates.
    """
    outcome = train_in_lockstep(
        first, lambda arm, output_dir: make_trainer(arm, args, folder, dataset, output_dir), "cpu", args.warmup_steps
    )
    trainers = outcome.pop("trainers")
    logged = [entry for entry in trainers["llrd"].state.log_history if "lr/head" in entry]
    return outcome | {"llrd_logged_depth_rates": len(logged)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the lockstep rounds, prints the ratio and writes the JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = fill_defaults(build_parser().parse_args(argv))
    started, machine = bench_utils.start_benchmark(args.threads, args.quick)
    dataset = conversations((args.warmup_steps + args.measured_steps) * args.batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        folder = model_folder(args, scratch)
        rounds = [lockstep_round(ARMS[round_index % 2], args, folder, dataset) for round_index in range(args.rounds)]
    arms, ratio = summarize_rounds(rounds, args.batch_size)
    arms = {arm: {"trainer": "SFTTrainer" if arm == "stock" else "LLRDSFTTrainer"} | arms[arm] for arm in ARMS}
    groups = {arm: arms[arm]["optimizer_groups"] for arm in ARMS}
    logged = sum(outcome["llrd_logged_depth_rates"] for outcome in rounds)
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
        "llrd_logs_with_depth_rates": logged,
        "arms": arms,
        "ratio": ratio,
    }
    output = args.output or bench_utils.default_output("sft_throughput", args.quick)
    bench_utils.write_result(output, "sft_throughput", argv, args.quick, machine, results, started)
    ratio = results["ratio"]
    print(
        f"SFT throughput, {results['model']} on CPU: {args.rounds} lockstep rounds x {args.measured_steps} timed steps of "
        f"{args.batch_size} conversations at {args.max_length} tokens\n"
        f"  SFTTrainer {arms['stock']['samples_per_second']:.3f} samples/s ({groups['stock']} groups), "
        f"layerwise_trainer(SFTTrainer) {arms['llrd']['samples_per_second']:.3f} samples/s ({groups['llrd']} groups)\n"
        f"  ratio llrd/stock of medians {ratio['of_medians']:.4f}; per step median {ratio['per_step']['median']:.4f} "
        f"(95% CI {ratio['per_step_median_95ci'][0]:.4f}-{ratio['per_step_median_95ci'][1]:.4f}); per round "
        f"{', '.join(f'{value:.4f}' for value in ratio['per_round'])}"
    )
    return results


if __name__ == "__main__":
    main()
