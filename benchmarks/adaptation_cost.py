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
import tempfile
import time
from typing import Any

import bench_utils
import timing


ARMS = ("none", "singh2015", "auto_rgn", "lars", "autolr")
REFERENCES = ("none", "singh2015")


SIZES = timing.lockstep_sizes(rounds=(5, 1), warmup_steps=(3, 1), measured_steps=(20, 2)) | {
    "batch_size": (32, 4, "Training batch size")
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = timing.build_parser(__doc__, "adaptation_cost", SIZES)
    timing.add_model_argument(parser)
    parser.add_argument("--max-length", type=int, default=64, help="Tokens per example.")
    parser.add_argument(
        "--autolr-interval", type=int, default=10, help="layer_lr_adaptation_interval of the autolr arm."
    )
    return parser


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


def step_time_ratios(times: dict[str, list[list[float]]]) -> dict[str, Any]:
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Times every arm, writes the JSON and prints the table; returns the results."""
    session = timing.start("adaptation_cost", build_parser(), SIZES, argv)
    args = session.args
    initial = timing.sequence_classifier("tiny-bert" if args.quick else args.model)
    steps = args.warmup_steps + args.measured_steps
    dataset = random_batches(initial.config.vocab_size, steps * args.batch_size, args.max_length)
    with tempfile.TemporaryDirectory() as output_dir:
        times = timing.interleaved(
            {
                arm: lambda arm=arm: time_one_run(
                    arm, copy.deepcopy(initial).to(args.device), dataset, args, output_dir
                )
                for arm in ARMS
            },
            args.rounds,
            rotate=True,
        )
    summary = step_time_ratios(times)
    results = {
        "model": "tiny-bert" if args.quick else args.model,
        "device": args.device,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "autolr_interval": args.autolr_interval,
        "arms": summary,
        "step_seconds_by_round": times,
    }
    return session.finish(results)


if __name__ == "__main__":
    main()
