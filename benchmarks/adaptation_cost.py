"""Cost per optimizer step of each ``--layer_lr_adaptation`` method, against no adaptation and against singh2015.

Every arm trains the same model (fresh from the same weights each round) with LLRDTrainer, the same
layer-wise groups (``layer_decay`` 0.9), the same optimizer and the same fixed batches of random tokens
(the cost of an adaptation does not depend on what the tokens say); only ``layer_lr_adaptation`` differs:
none, singh2015, auto_rgn, lars, autolr (``--autolr-interval`` 10, so that it adjusts within the measured
steps). A step is timed by a callback from ``on_step_begin`` to ``on_step_end``: forward, backward,
clipping, the adaptation's work and the optimizer step. Rounds run every arm once, in an order that
rotates from round to round, so that background load on a shared machine falls on all arms alike. The
figures are each arm's median step time over all rounds and its ratio to the ``none`` arm and to the
``singh2015`` arm, with the spread of the per-round ratios (each round's median against the same round's).

Run ``python benchmarks/adaptation_cost.py --threads 1`` (real MiniLM on CPU; writes
benchmarks/results/adaptation_cost.json), ``--device cuda --model bert-base`` on a GPU, or ``--quick``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_utils


ARMS = ("none", "singh2015", "auto_rgn", "lars", "autolr")
REFERENCES = ("none", "singh2015")


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A miniature run: a tiny BERT, one round of a few steps.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument(
        "--model",
        choices=("minilm", "bert-base"),
        default="minilm",
        help="minilm: the real pretrained all-MiniLM-L6-v2 (6 layers); bert-base: a 12-layer BERT-base built from its config.",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="Rounds; every arm trains once per round (default 5, quick 1)."
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="Steps of every run left out of the timing (default 3, quick 1).",
    )
    parser.add_argument(
        "--measured-steps", type=int, default=None, help="Timed steps per arm and round (default 20, quick 2)."
    )
    parser.add_argument("--batch-size", type=int, default=None, help="Training batch size (default 32, quick 4).")
    parser.add_argument("--max-length", type=int, default=64, help="Tokens per example.")
    parser.add_argument(
        "--autolr-interval", type=int, default=10, help="layer_lr_adaptation_interval of the autolr arm."
    )
    bench_utils.add_threads_argument(parser)
    parser.add_argument(
        "--output", type=Path, default=None, help="The JSON file (default: benchmarks/results/adaptation_cost.json)."
    )
    return parser


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Gives the unset sizes their full or quick defaults."""
    for name, (full, quick) in {
        "rounds": (5, 1),
        "warmup_steps": (3, 1),
        "measured_steps": (20, 2),
        "batch_size": (32, 4),
    }.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def make_model(name: str, quick: bool):
    """The model every arm starts from: the real MiniLM, BERT-base from its config, or a tiny BERT (quick)."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    if quick:
        config = BertConfig(
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            intermediate_size=37,
            num_labels=2,
        )
        return AutoModelForSequenceClassification.from_config(config)
    if name == "minilm":
        return AutoModelForSequenceClassification.from_pretrained(bench_utils.minilm_path(), num_labels=2)
    return AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2))


def random_batches(vocab_size: int, size: int, length: int):
    """A fixed dataset of ``size`` random token sequences with random binary labels."""
    import torch

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab_size, (size, length), generator=generator)
    labels = torch.randint(0, 2, (size,), generator=generator)
    return [{"input_ids": ids, "labels": label} for ids, label in zip(input_ids, labels)]


def time_one_run(arm: str, model, dataset, args: argparse.Namespace, output_dir: str) -> list[float]:
    """Trains ``model`` with one arm's settings; returns the measured steps' times in seconds."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from finetune_llrd import LLRDTrainer, LLRDTrainingArguments

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            bench_utils.synchronize(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            bench_utils.synchronize(device)
            self.times.append(time.perf_counter() - self.start)

    device = args.device
    training = LLRDTrainingArguments(
        output_dir=output_dir,
        learning_rate=2e-5,
        layer_decay=0.9,
        weight_decay=0.01,
        layer_lr_adaptation=arm,
        layer_lr_adaptation_interval=args.autolr_interval,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + args.measured_steps,
        max_grad_norm=1.0,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=device == "cpu",
        seed=0,
        data_seed=0,
        dataloader_drop_last=True,
    )
    timer = StepTimer()
    trainer = LLRDTrainer(model=model, args=training, train_dataset=dataset, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return timer.times[args.warmup_steps :]


def summarize(times: dict[str, list[list[float]]]) -> dict[str, Any]:
    """Each arm's median step time and its ratios to the reference arms, overall and round by round."""
    summary = {}
    for arm, rounds in times.items():
        row: dict[str, Any] = {"step_seconds": bench_utils.median_and_spread([t for run in rounds for t in run])}
        for reference in REFERENCES:
            per_round = [
                statistics.median(run) / statistics.median(base) for run, base in zip(rounds, times[reference])
            ]
            row[f"ratio_to_{reference}"] = row["step_seconds"]["median"] / summary_median(times[reference])
            row[f"ratio_to_{reference}_per_round"] = bench_utils.median_and_spread(per_round)
        summary[arm] = row
    return summary


def summary_median(rounds: list[list[float]]) -> float:
    """The median of all the steps of all rounds."""
    return statistics.median(t for run in rounds for t in run)


def format_table(summary: dict[str, Any]) -> str:
    """A text table of the summary."""
    lines = [f"{'arm':<10} {'median step (ms)':>17} {'/ none':>8} {'/ singh2015':>12}"]
    for arm, row in summary.items():
        lines.append(
            f"{arm:<10} {row['step_seconds']['median'] * 1e3:>17.2f} {row['ratio_to_none']:>8.3f} {row['ratio_to_singh2015']:>12.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Times every arm, prints the table and writes the JSON.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The results written to the JSON file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = fill_defaults(build_parser().parse_args(argv))
    started, machine = bench_utils.start_benchmark(args.threads, args.quick, args.device)
    initial = make_model(args.model, args.quick)
    steps = args.warmup_steps + args.measured_steps
    dataset = random_batches(initial.config.vocab_size, steps * args.batch_size, args.max_length)
    times: dict[str, list[list[float]]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as output_dir:
        for round_index in range(args.rounds):
            order = ARMS[round_index % len(ARMS) :] + ARMS[: round_index % len(ARMS)]
            for arm in order:
                times[arm].append(time_one_run(arm, copy.deepcopy(initial).to(args.device), dataset, args, output_dir))
    summary = summarize(times)
    results = {
        "model": "tiny-bert" if args.quick else args.model,
        "device": args.device,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "autolr_interval": args.autolr_interval,
        "arms": summary,
        "step_seconds_by_round": times,
    }
    output = args.output or bench_utils.default_output("adaptation_cost", args.quick)
    bench_utils.write_result(output, "adaptation_cost", argv, args.quick, machine, results, started)
    print(format_table(summary))
    return results


if __name__ == "__main__":
    main()
