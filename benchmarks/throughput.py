"""Throughput overhead: LLRDTrainer (layer-wise groups, per-depth rate logging) against the stock Trainer,
or (``--trainer seq2seq``) ``layerwise_trainer(Seq2SeqTrainer)`` against the stock ``Seq2SeqTrainer``.

Both arms train the same model on the same SST-2 batches in lockstep (``timing.py``: one process, turns step by
step, rounds alternating which arm goes first); samples/s is the batch size over the median step time after the
warm-up, and the figure the ratio of the arms' medians, with the spread of the per-step ratios. Logging every step
(``--logging-steps 1``) makes the per-depth rate logging cost as much as it can; ``trainer.log`` and the optimizer
creation (the grouping) are also timed on their own, interleaved.

Run ``python benchmarks/throughput.py --threads 1`` (real MiniLM on CPU), ``--device cuda --model
bert-base --bf16`` on a GPU, or ``--quick`` for a miniature. ``--param-group-rules '[...]'`` adds parameter rules to
the layer-wise arm (written to ``throughput_rules.json``). ``--trainer seq2seq`` trains a BERT2BERT
encoder-decoder warm-started from the real MiniLM on both sides (Rothe et al. 2020; cross-attention new) on
real XSum documents and summaries, with ``Seq2SeqTrainingArguments`` and its layer-wise composition.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import bench_utils
import timing
from timing import ARMS


SIZES = timing.lockstep_sizes(rounds=(8, 1), warmup_steps=(3, 1), measured_steps=(30, 2)) | {
    "batch_size": (32, 8, "Training batch size"),
    "log_calls": (2000, 50, "Timed calls of trainer.log per arm"),
    "creations": (20, 2, "Timed optimizer creations per arm"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = timing.build_parser(__doc__, "throughput[_<model>_<device>]", SIZES)
    parser.add_argument(
        "--trainer",
        choices=("trainer", "seq2seq"),
        default="trainer",
        help="trainer: Trainer against LLRDTrainer on a sequence classifier; seq2seq: Seq2SeqTrainer against layerwise_trainer(Seq2SeqTrainer) on a BERT2BERT made of the real MiniLM (--model is then unused).",
    )
    timing.add_model_argument(parser)
    parser.add_argument("--bf16", action="store_true", help="Train in bf16 mixed precision (GPU).")
    parser.add_argument(
        "--optim", default="adamw_torch_fused", help="The Trainer's --optim for both arms (transformers' default)."
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=64,
        help="Truncation length in tokens (of the source documents with --trainer seq2seq).",
    )
    parser.add_argument(
        "--target-length",
        type=int,
        default=32,
        help="--trainer seq2seq: truncation length of the target summaries in tokens.",
    )
    timing.add_lockstep_arguments(parser)
    return parser


def make_model(name: str):
    """A fresh model: the real MiniLM or BERT-base from its config (no download) as sequence classifiers, or
    ``bert2bert-minilm``, an encoder-decoder warm-started from the real MiniLM on both sides."""
    from transformers import AutoTokenizer, EncoderDecoderModel

    if name == "bert2bert-minilm":
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            bench_utils.minilm_path(), bench_utils.minilm_path()
        )
        tokenizer = AutoTokenizer.from_pretrained(bench_utils.minilm_path())
        model.config.decoder_start_token_id = tokenizer.cls_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        return model
    return timing.sequence_classifier(name)


def trainer_classes(name: str) -> tuple[type, type]:
    """The stock (Trainer, TrainingArguments) pair of ``--trainer``."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments

    return (Seq2SeqTrainer, Seq2SeqTrainingArguments) if name == "seq2seq" else (Trainer, TrainingArguments)


def make_trainer(arm: str, args: argparse.Namespace, dataset, tokenizer, output_dir: str):
    """The stock Trainer (or Seq2SeqTrainer) or its layer-wise composition, with otherwise identical arguments."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, set_seed

    set_seed(0)
    model = make_model(args.model)
    common = dict(
        output_dir=output_dir,
        learning_rate=5e-5,
        weight_decay=0.01,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + args.measured_steps,
        lr_scheduler_type="linear",
        logging_steps=args.logging_steps,
        optim=args.optim,
        bf16=args.bf16,
        use_cpu=args.device == "cpu",
        **timing.QUIET_RUN,
    )
    collator = (
        DataCollatorForSeq2Seq(tokenizer, model) if args.trainer == "seq2seq" else DataCollatorWithPadding(tokenizer)
    )
    return timing.arm_trainer(
        arm,
        *trainer_classes(args.trainer),
        common,
        args.layer_decay,
        args.param_group_rules,
        model=model,
        train_dataset=dataset,
        data_collator=collator,
    )


def summarization_dataset(tokenizer, size: int, max_length: int, target_length: int) -> bench_utils.EncodedDataset:
    """``size`` real XSum examples (cycled if the 800 training articles are too few): the document truncated to
    ``max_length`` tokens, its one-sentence summary as ``labels`` truncated to ``target_length``."""
    import json

    with open(bench_utils.DATA_DIR / "xsum" / "train.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [rows[index % len(rows)] for index in range(size)]
    sources = tokenizer([row["document"] for row in rows], truncation=True, max_length=max_length)
    targets = tokenizer([row["summary"] for row in rows], truncation=True, max_length=target_length)
    return bench_utils.EncodedDataset(
        [
            {"input_ids": ids, "attention_mask": mask, "labels": labels}
            for ids, mask, labels in zip(sources["input_ids"], sources["attention_mask"], targets["input_ids"])
        ]
    )


def time_optimizer_creation(trainers: dict[str, Any], repeats: int) -> dict[str, float]:
    """Milliseconds to build each arm's optimizer (the grouping included), interleaved, medians.

    Returns:
        ``stock_ms``, ``llrd_ms``.
    """
    kept = {arm: trainers[arm].optimizer for arm in ARMS}

    def create(arm: str) -> float:
        trainers[arm].optimizer = None
        started = time.perf_counter()
        trainers[arm].create_optimizer()
        return (time.perf_counter() - started) * 1e3

    samples = timing.interleaved({arm: lambda arm=arm: create(arm) for arm in ARMS}, repeats)
    for arm in ARMS:
        trainers[arm].optimizer = kept[arm]
    return {f"{arm}_ms": median for arm, median in timing.medians(samples).items()}


def time_log_calls(trainers: dict[str, Any], calls: int, block: int = 10) -> dict[str, float]:
    """Microseconds per ``trainer.log`` call of each arm, interleaved in blocks of ``block`` calls, with the logs a
    training step writes.

    Returns:
        ``stock_us``, ``llrd_us`` (medians of the blocks) and ``extra_us``.
    """

    def log_block(arm: str) -> float:
        trainer = trainers[arm]
        started = time.perf_counter()
        for _ in range(block):
            trainer.log({"loss": 0.5, "grad_norm": 1.0, "learning_rate": 5e-5})
        seconds = time.perf_counter() - started
        del trainer.state.log_history[-block:]
        return seconds / block * 1e6

    stock, llrd = timing.medians(
        timing.interleaved({arm: lambda arm=arm: log_block(arm) for arm in ARMS}, max(calls // block, 1))
    ).values()
    return {"stock_us": stock, "llrd_us": llrd, "extra_us": llrd - stock}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the lockstep rounds, writes the JSON and prints the table; returns the results."""
    session = timing.start("throughput", build_parser(), SIZES, argv)
    args = session.args
    if args.trainer == "seq2seq":
        args.model = "bert2bert-minilm"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bench_utils.minilm_path())
    size = (args.warmup_steps + args.measured_steps) * args.batch_size
    if args.trainer == "seq2seq":
        dataset = summarization_dataset(tokenizer, size, args.max_length, args.target_length)
    else:
        texts, labels = bench_utils.sst2_rows("train")
        dataset = bench_utils.encode(tokenizer, texts[:size], labels[:size], args.max_length)

    rounds, trainers = timing.lockstep_rounds(
        args.rounds,
        lambda arm, output_dir: make_trainer(arm, args, dataset, tokenizer, output_dir),
        args.device,
        args.warmup_steps,
    )
    arms, ratio = timing.summarize_rounds(rounds, args.batch_size)
    results = {
        "trainer_class": trainer_classes(args.trainer)[0].__name__,
        "model": args.model,
        "device": args.device,
        "bf16": args.bf16,
        "optim": args.optim,
        "rounds": args.rounds,
        "warmup_steps": args.warmup_steps,
        "measured_steps": args.measured_steps,
        "batch_size": args.batch_size,
        "logging_steps": args.logging_steps,
        "layer_decay": args.layer_decay,
        "param_group_rules": json.loads(args.param_group_rules) if args.param_group_rules else None,
        "arms": arms,
        "ratio": ratio,
        "optimizer_creation": time_optimizer_creation(trainers, args.creations),
        "log_call": time_log_calls(trainers, args.log_calls),
    }
    if args.param_group_rules:
        name = f"throughput_rules{'' if (args.model, args.device) == ('minilm', 'cpu') else f'_{args.model}_{args.device}'}"
    elif args.trainer == "seq2seq":
        name = "throughput_seq2seq" if args.device == "cpu" else f"throughput_seq2seq_{args.device}"
    else:
        name = (
            "throughput"
            if (args.model, args.device) == ("minilm", "cpu")
            else f"throughput_{args.model}_{args.device}"
        )
    return session.finish(results, name)


if __name__ == "__main__":
    main()
