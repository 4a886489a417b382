"""Throughput overhead: LLRDTrainer (layer-wise groups, per-depth rate logging) against the stock Trainer.

Both arms train the same model (fresh from the same weights and seed) on the same SST-2 batches in the
same order, for the same number of steps, in one process, alternating stock / LLRD / LLRD / stock / ...
so that background load falls on both alike. A callback stamps the end of every optimizer step; samples/s
is taken over the steps after the warm-up. The figure is the ratio of the arms' median samples/s, with
the spread of the per-pair ratios. Logging every step (``--logging-steps 1``) makes the per-depth rate
logging cost as much as it can; its cost per call is also timed on its own.

Run ``python benchmarks/throughput.py`` (real MiniLM on CPU), ``--device cuda --model bert-base --bf16``
on a GPU, or ``--quick`` for a miniature.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_utils

ARMS = ("stock", "llrd")


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A miniature run: one pair of runs, a few steps.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--model", choices=("minilm", "bert-base"), default="minilm", help="minilm: the real pretrained all-MiniLM-L6-v2 (6 layers); bert-base: a 12-layer BERT-base built from its config (random weights).")
    parser.add_argument("--bf16", action="store_true", help="Train in bf16 mixed precision (GPU).")
    parser.add_argument("--optim", default="adamw_torch_fused", help="The Trainer's --optim for both arms (transformers' default).")
    parser.add_argument("--pairs", type=int, default=None, help="Pairs of runs (default 8, quick 1).")
    parser.add_argument("--warmup-steps", type=int, default=None, help="Steps of every run left out of the timing (default 3, quick 1).")
    parser.add_argument("--measured-steps", type=int, default=None, help="Timed steps of every run (default 24, quick 2).")
    parser.add_argument("--batch-size", type=int, default=None, help="Training batch size (default 32, quick 8).")
    parser.add_argument("--max-length", type=int, default=64, help="Truncation length in tokens.")
    parser.add_argument("--layer-decay", type=float, default=0.9, help="The LLRD arm's layer decay.")
    parser.add_argument("--logging-steps", type=int, default=1, help="Log every this many steps (1: the worst case for per-depth logging).")
    parser.add_argument("--log-calls", type=int, default=None, help="Timed calls of trainer.log per arm (default 2000, quick 50).")
    bench_utils.add_threads_argument(parser)
    parser.add_argument("--output", type=Path, default=None, help="The JSON file (default: benchmarks/results/throughput[_<model>_<device>].json).")
    return parser


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Gives the unset sizes their full or quick defaults."""
    defaults = {"pairs": (8, 1), "warmup_steps": (3, 1), "measured_steps": (24, 2), "batch_size": (32, 8), "log_calls": (2000, 50)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def make_model(name: str):
    """A fresh sequence classifier: the real MiniLM, or BERT-base from its config (no download)."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    if name == "minilm":
        return AutoModelForSequenceClassification.from_pretrained(bench_utils.minilm_path(), num_labels=2)
    return AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2))


class StepClock:
    """A Trainer callback that stamps the end of every optimizer step (after the device has finished)."""

    def __init__(self, device: str):
        from transformers import TrainerCallback

        clock = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                bench_utils.synchronize(device)
                clock.stamps.append(time.perf_counter())

        self.stamps: list[float] = []
        self.callback = _Callback()


def make_trainer(arm: str, args: argparse.Namespace, dataset, tokenizer, output_dir: str, clock: StepClock):
    """The stock Trainer or the LLRDTrainer with otherwise identical arguments, progress printing off."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    from finetune_llrd import LLRDTrainer, LLRDTrainingArguments

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
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        optim=args.optim,
        bf16=args.bf16,
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
    )
    collator = DataCollatorWithPadding(tokenizer)
    if arm == "stock":
        trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=dataset, data_collator=collator)
    else:
        trainer_args = LLRDTrainingArguments(**common, layer_decay=args.layer_decay)
        trainer = LLRDTrainer(model=model, args=trainer_args, train_dataset=dataset, data_collator=collator)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(clock.callback)
    return trainer


def timed_run(arm: str, args: argparse.Namespace, dataset, tokenizer) -> dict[str, Any]:
    """Trains one arm once and times it.

    Returns:
        ``samples_per_second`` (batch size over the median step time after the warm-up: robust to bursts
        of background load), ``samples_per_second_mean`` (timed samples over their total time),
        ``train_seconds`` (the whole ``trainer.train()`` call, optimizer creation included),
        ``optimizer_groups`` and the trainer.
    """
    clock = StepClock(args.device)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = make_trainer(arm, args, dataset, tokenizer, output_dir, clock)
        bench_utils.synchronize(args.device)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    timed = clock.stamps[args.warmup_steps - 1 :]
    step_seconds = [later - earlier for earlier, later in zip(timed, timed[1:])]
    return {
        "samples_per_second": args.batch_size / bench_utils.median_and_spread(step_seconds)["median"],
        "samples_per_second_mean": args.measured_steps * args.batch_size / (timed[-1] - timed[0]),
        "train_seconds": train_seconds,
        "optimizer_groups": len(trainer.optimizer.param_groups),
        "trainer": trainer,
    }


def time_log_calls(trainers: dict[str, Any], calls: int) -> dict[str, float]:
    """Microseconds per ``trainer.log`` call of each arm, interleaved, with the logs a training step writes.

    Returns:
        ``stock_us``, ``llrd_us`` (medians of blocks of 10 calls) and ``extra_us``.
    """
    block = 10
    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for index in range(max(calls // block, 1)):
        order = ARMS if index % 2 == 0 else ARMS[::-1]
        for arm in order:
            trainer = trainers[arm]
            started = time.perf_counter()
            for _ in range(block):
                trainer.log({"loss": 0.5, "grad_norm": 1.0, "learning_rate": 5e-5})
            samples[arm].append((time.perf_counter() - started) / block * 1e6)
            del trainer.state.log_history[-block:]
    stock = bench_utils.median_and_spread(samples["stock"])["median"]
    llrd = bench_utils.median_and_spread(samples["llrd"])["median"]
    return {"stock_us": stock, "llrd_us": llrd, "extra_us": llrd - stock}


def format_table(results: dict[str, Any]) -> str:
    """The printed result table."""
    lines = [
        f"throughput, {results['model']} on {results['device']}: {results['pairs']} pairs x "
        f"{results['measured_steps']} timed steps of batch {results['batch_size']}, optim {results['optim']}",
        f"{'arm':<8} {'groups':>6} {'median samples/s':>17} {'min':>8} {'max':>8} {'median train() s':>17}",
    ]
    for arm in ARMS:
        entry = results["arms"][arm]
        spread = entry["samples_per_second"]
        lines.append(
            f"{arm:<8} {entry['optimizer_groups']:>6} {spread['median']:>17.2f} {spread['min']:>8.2f} "
            f"{spread['max']:>8.2f} {entry['train_seconds']['median']:>17.2f}"
        )
    ratio = results["ratio"]
    lines.append(
        f"ratio llrd/stock of median samples/s: {ratio['of_medians']:.4f}; per pair: median {ratio['per_pair']['median']:.4f} "
        f"[q1 {ratio['per_pair']['q1']:.4f}, q3 {ratio['per_pair']['q3']:.4f}, min {ratio['per_pair']['min']:.4f}, "
        f"max {ratio['per_pair']['max']:.4f}]; goal >= 0.99"
    )
    log = results["log_call"]
    lines.append(f"ratio of mean-based samples/s (timed samples / timed seconds): {ratio['of_medians_mean_based']:.4f}")
    lines.append(f"trainer.log per call: stock {log['stock_us']:.1f} us, llrd {log['llrd_us']:.1f} us (+{log['extra_us']:.1f} us)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the interleaved pairs, prints the table and writes the JSON.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The results written to the JSON file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = fill_defaults(build_parser().parse_args(argv))
    bench_utils.apply_threads(args.threads)
    started = time.time()
    machine = bench_utils.machine_info(args.device)
    bench_utils.quiet_transformers()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bench_utils.minilm_path())
    texts, labels = bench_utils.sst2_rows("train")
    size = (args.warmup_steps + args.measured_steps) * args.batch_size
    dataset = bench_utils.encode(tokenizer, texts[:size], labels[:size], args.max_length)

    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    for pair in range(args.pairs):
        for arm in ARMS if pair % 2 == 0 else ARMS[::-1]:
            runs[arm].append(timed_run(arm, args, dataset, tokenizer))
    last_trainers = {arm: runs[arm][-1].pop("trainer") for arm in ARMS}
    for arm in ARMS:
        for run in runs[arm]:
            run.pop("trainer", None)

    per_pair = [llrd["samples_per_second"] / stock["samples_per_second"] for stock, llrd in zip(runs["stock"], runs["llrd"])]
    arms = {
        arm: {
            "optimizer_groups": runs[arm][0]["optimizer_groups"],
            "samples_per_second": bench_utils.median_and_spread([run["samples_per_second"] for run in runs[arm]]),
            "samples_per_second_mean": bench_utils.median_and_spread([run["samples_per_second_mean"] for run in runs[arm]]),
            "train_seconds": bench_utils.median_and_spread([run["train_seconds"] for run in runs[arm]]),
            "runs": runs[arm],
        }
        for arm in ARMS
    }
    results = {
        "model": args.model,
        "device": args.device,
        "bf16": args.bf16,
        "optim": args.optim,
        "pairs": args.pairs,
        "warmup_steps": args.warmup_steps,
        "measured_steps": args.measured_steps,
        "batch_size": args.batch_size,
        "logging_steps": args.logging_steps,
        "layer_decay": args.layer_decay,
        "arms": arms,
        "ratio": {
            "of_medians": arms["llrd"]["samples_per_second"]["median"] / arms["stock"]["samples_per_second"]["median"],
            "per_pair": bench_utils.median_and_spread(per_pair),
            "per_pair_values": per_pair,
            "of_medians_mean_based": arms["llrd"]["samples_per_second_mean"]["median"]
            / arms["stock"]["samples_per_second_mean"]["median"],
            "train_seconds_of_medians": arms["llrd"]["train_seconds"]["median"] / arms["stock"]["train_seconds"]["median"],
        },
        "log_call": time_log_calls(last_trainers, args.log_calls),
    }
    name = "throughput" if (args.model, args.device) == ("minilm", "cpu") else f"throughput_{args.model}_{args.device}"
    output = args.output or bench_utils.default_output(name, args.quick)
    bench_utils.write_result(output, "throughput", argv, args.quick, machine, results, started)
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
