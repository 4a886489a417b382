"""Throughput overhead: LLRDTrainer (layer-wise groups, per-depth rate logging) against the stock Trainer,
or (``--trainer seq2seq``) ``layerwise_trainer(Seq2SeqTrainer)`` against the stock ``Seq2SeqTrainer``.

Both arms train the same model (fresh from the same weights and seed) on the same SST-2 batches in the
same order, in one process and in lockstep: each trainer runs in its own thread and they take turns step
by step (stock step 1, LLRD step 1, stock step 2, ...; the other waits), so that background load on a
shared machine falls on both alike. A step is timed from the moment its trainer gets the turn to the end
of its optimizer step, so it holds the logging of the step before, the batch loading, forward, backward
and optimizer step. samples/s is the batch size over the median step time after the warm-up; the figure
is the ratio of the arms' medians, with the spread of the per-step ratios (each LLRD step against the stock
step next to it in time). Rounds alternate which arm goes first. Logging every step
(``--logging-steps 1``) makes the per-depth rate logging cost as much as it can; ``trainer.log`` and the
optimizer creation (the grouping) are also timed on their own.

Run ``python benchmarks/throughput.py --threads 1`` (real MiniLM on CPU), ``--device cuda --model
bert-base --bf16`` on a GPU, or ``--quick`` for a miniature. ``--trainer seq2seq`` trains a BERT2BERT
encoder-decoder warm-started from the real MiniLM on both sides (Rothe et al. 2020; cross-attention new) on
real XSum documents and summaries, with ``Seq2SeqTrainingArguments`` and its layer-wise composition.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_utils


ARMS = ("stock", "llrd")


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A miniature run: one round of a few steps.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument(
        "--trainer",
        choices=("trainer", "seq2seq"),
        default="trainer",
        help="trainer: Trainer against LLRDTrainer on a sequence classifier; seq2seq: Seq2SeqTrainer against layerwise_trainer(Seq2SeqTrainer) on a BERT2BERT made of the real MiniLM (--model is then unused).",
    )
    parser.add_argument(
        "--model",
        choices=("minilm", "bert-base"),
        default="minilm",
        help="minilm: the real pretrained all-MiniLM-L6-v2 (6 layers); bert-base: a 12-layer BERT-base built from its config (random weights).",
    )
    parser.add_argument("--bf16", action="store_true", help="Train in bf16 mixed precision (GPU).")
    parser.add_argument(
        "--optim", default="adamw_torch_fused", help="The Trainer's --optim for both arms (transformers' default)."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="Rounds of lockstep training with fresh trainers (default 8, quick 1).",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="Steps of every round left out of the timing (default 3, quick 1).",
    )
    parser.add_argument(
        "--measured-steps", type=int, default=None, help="Timed steps per arm and round (default 30, quick 2)."
    )
    parser.add_argument("--batch-size", type=int, default=None, help="Training batch size (default 32, quick 8).")
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
    parser.add_argument(
        "--layer-decay",
        type=float,
        default=0.9,
        help="The LLRD arm's layer decay (1.0: an A/A control, same optimizer as stock).",
    )
    parser.add_argument(
        "--logging-steps",
        type=int,
        default=1,
        help="Log every this many steps (1: the worst case for per-depth logging).",
    )
    parser.add_argument(
        "--log-calls", type=int, default=None, help="Timed calls of trainer.log per arm (default 2000, quick 50)."
    )
    parser.add_argument(
        "--creations", type=int, default=None, help="Timed optimizer creations per arm (default 20, quick 2)."
    )
    bench_utils.add_threads_argument(parser)
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="The JSON file (default: benchmarks/results/throughput[_<model>_<device>].json).",
    )
    return parser


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Gives the unset sizes their full or quick defaults."""
    defaults = {
        "rounds": (8, 1),
        "warmup_steps": (3, 1),
        "measured_steps": (30, 2),
        "batch_size": (32, 8),
        "log_calls": (2000, 50),
        "creations": (20, 2),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def make_model(name: str):
    """A fresh model: the real MiniLM or BERT-base from its config (no download) as sequence classifiers, or
    ``bert2bert-minilm``, an encoder-decoder warm-started from the real MiniLM on both sides."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, EncoderDecoderModel

    if name == "bert2bert-minilm":
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            bench_utils.minilm_path(), bench_utils.minilm_path()
        )
        tokenizer = AutoTokenizer.from_pretrained(bench_utils.minilm_path())
        model.config.decoder_start_token_id = tokenizer.cls_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        return model
    if name == "minilm":
        return AutoModelForSequenceClassification.from_pretrained(bench_utils.minilm_path(), num_labels=2)
    return AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2))


class Baton:
    """Lets two trainers, each in its own thread, take turns: one runs while the other waits."""

    def __init__(self, first: str):
        self.turn = first
        self.finished: set[str] = set()
        self.condition = threading.Condition()

    def wait_for_turn(self, arm: str) -> None:
        """Blocks until it is ``arm``'s turn or the other arm has finished."""
        with self.condition:
            self.condition.wait_for(lambda: self.turn == arm or other_arm(arm) in self.finished)

    def pass_on(self, arm: str) -> None:
        """Gives the turn to the other arm."""
        with self.condition:
            self.turn = other_arm(arm)
            self.condition.notify_all()

    def finish(self, arm: str) -> None:
        """Marks ``arm`` as done, so the other never waits for it again."""
        with self.condition:
            self.finished.add(arm)
            self.turn = other_arm(arm)
            self.condition.notify_all()


def other_arm(arm: str) -> str:
    """``stock`` <-> ``llrd``."""
    return ARMS[1 - ARMS.index(arm)]


class LockstepClock:
    """A Trainer callback that times each step of one arm and hands the turn over after it.

    ``step_seconds[k]`` runs from the moment the arm got the turn to the end of its step k + 1.
    """

    def __init__(self, arm: str, baton: Baton, device: str):
        from transformers import TrainerCallback

        clock = self
        self.step_seconds: list[float] = []
        self.resumed = 0.0

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                baton.wait_for_turn(arm)
                clock.resumed = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                bench_utils.synchronize(device)
                clock.step_seconds.append(time.perf_counter() - clock.resumed)
                baton.pass_on(arm)
                baton.wait_for_turn(arm)
                clock.resumed = time.perf_counter()

        self.callback = _Callback()


def trainer_classes(name: str) -> tuple[type, type]:
    """The stock (Trainer, TrainingArguments) pair of ``--trainer``."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments

    return (Seq2SeqTrainer, Seq2SeqTrainingArguments) if name == "seq2seq" else (Trainer, TrainingArguments)


def make_trainer(arm: str, args: argparse.Namespace, dataset, tokenizer, output_dir: str):
    """The stock Trainer (or Seq2SeqTrainer) or its layer-wise composition with otherwise identical arguments,
    progress printing off."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, set_seed
    from transformers.trainer_callback import PrinterCallback

    from finetune_llrd import layerwise_arguments, layerwise_trainer

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
    collator = (
        DataCollatorForSeq2Seq(tokenizer, model) if args.trainer == "seq2seq" else DataCollatorWithPadding(tokenizer)
    )
    trainer_cls, args_cls = trainer_classes(args.trainer)
    if arm == "stock":
        trainer = trainer_cls(model=model, args=args_cls(**common), train_dataset=dataset, data_collator=collator)
    else:
        trainer_args = layerwise_arguments(args_cls)(**common, layer_decay=args.layer_decay)
        trainer = layerwise_trainer(trainer_cls)(
            model=model, args=trainer_args, train_dataset=dataset, data_collator=collator
        )
    trainer.remove_callback(PrinterCallback)
    return trainer


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


def train_in_lockstep(
    first: str, make_arm_trainer: Callable[[str, str], Any], device: str, warmup_steps: int
) -> dict[str, Any]:
    """Trains both arms in lockstep once, each trainer in its own thread, taking turns step by step.

    Args:
        first: the arm that takes the first step.
        make_arm_trainer: (arm, output folder) -> a fresh trainer of that arm.
        device: where the steps run (synchronised before each step's time is read).
        warmup_steps: the first steps of each arm, left out of its timed steps.

    Returns:
        Per arm ``step_seconds`` (the timed steps, after the warm-up) and ``optimizer_groups``; the trainers
        under ``trainers``.

    Raises:
        The first exception a trainer raised.
    """
    baton = Baton(first)
    clocks = {arm: LockstepClock(arm, baton, device) for arm in ARMS}
    errors: list[BaseException] = []
    with tempfile.TemporaryDirectory() as output_dir:
        trainers = {arm: make_arm_trainer(arm, f"{output_dir}/{arm}") for arm in ARMS}
        for arm in ARMS:
            trainers[arm].add_callback(clocks[arm].callback)

        def train(arm: str) -> None:
            try:
                trainers[arm].train()
            except BaseException as error:  # noqa: BLE001 - handed to the main thread, which re-raises it
                errors.append(error)
            finally:
                baton.finish(arm)

        threads = [threading.Thread(target=train, args=(arm,)) for arm in ARMS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return {
        arm: {
            "step_seconds": clocks[arm].step_seconds[warmup_steps:],
            "optimizer_groups": len(trainers[arm].optimizer.param_groups),
        }
        for arm in ARMS
    } | {"trainers": trainers}


def summarize_rounds(rounds: list[dict[str, Any]], batch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pools the timed steps of the lockstep rounds (:func:`train_in_lockstep`).

    Returns:
        Per arm its optimizer groups, median samples/s and step times; and the ratio llrd / stock of the median
        samples/s, of each pair of steps taken in turn (median, spread, 95% interval of the median) and per round.
    """
    step_seconds = {arm: [seconds for outcome in rounds for seconds in outcome[arm]["step_seconds"]] for arm in ARMS}
    arms = {}
    for arm in ARMS:
        step_ms = {
            key: value * 1e3 if key != "n" else value
            for key, value in bench_utils.median_and_spread(step_seconds[arm]).items()
        }
        arms[arm] = {
            "optimizer_groups": rounds[-1][arm]["optimizer_groups"],
            "samples_per_second": batch_size / (step_ms["median"] / 1e3),
            "step_ms": step_ms,
            "step_seconds": step_seconds[arm],
        }
    per_step = [stock / llrd for stock, llrd in zip(step_seconds["stock"], step_seconds["llrd"])]
    ratio = {
        "of_medians": arms["llrd"]["samples_per_second"] / arms["stock"]["samples_per_second"],
        "per_step": bench_utils.median_and_spread(per_step),
        "per_step_median_95ci": bench_utils.bootstrap_median_interval(per_step),
        "per_round": [
            bench_utils.median_and_spread(outcome["stock"]["step_seconds"])["median"]
            / bench_utils.median_and_spread(outcome["llrd"]["step_seconds"])["median"]
            for outcome in rounds
        ],
    }
    return arms, ratio


def lockstep_round(first: str, args: argparse.Namespace, dataset, tokenizer) -> dict[str, Any]:
    """Trains both arms in lockstep once, with fresh trainers (:func:`train_in_lockstep`)."""
    return train_in_lockstep(
        first,
        lambda arm, output_dir: make_trainer(arm, args, dataset, tokenizer, output_dir),
        args.device,
        args.warmup_steps,
    )


def time_optimizer_creation(trainers: dict[str, Any], repeats: int) -> dict[str, float]:
    """Milliseconds to build each arm's optimizer (the grouping included), interleaved, medians.

    Returns:
        ``stock_ms``, ``llrd_ms``.
    """
    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
    kept = {arm: trainers[arm].optimizer for arm in ARMS}
    for index in range(repeats):
        for arm in ARMS if index % 2 == 0 else ARMS[::-1]:
            trainers[arm].optimizer = None
            started = time.perf_counter()
            trainers[arm].create_optimizer()
            samples[arm].append((time.perf_counter() - started) * 1e3)
    for arm in ARMS:
        trainers[arm].optimizer = kept[arm]
    return {f"{arm}_ms": bench_utils.median_and_spread(samples[arm])["median"] for arm in ARMS}


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
        f"throughput, {results['trainer_class']} / {results['model']} on {results['device']}: {results['rounds']} lockstep rounds x "
        f"{results['measured_steps']} timed steps of batch {results['batch_size']}, optim {results['optim']}",
        f"{'arm':<8} {'groups':>6} {'median samples/s':>17} {'step ms q1':>11} {'median':>8} {'q3':>8} {'optimizer creation ms':>22}",
    ]
    for arm in ARMS:
        entry = results["arms"][arm]
        step = entry["step_ms"]
        lines.append(
            f"{arm:<8} {entry['optimizer_groups']:>6} {entry['samples_per_second']:>17.2f} {step['q1']:>11.1f} "
            f"{step['median']:>8.1f} {step['q3']:>8.1f} {results['optimizer_creation'][f'{arm}_ms']:>22.1f}"
        )
    ratio = results["ratio"]
    per_step = ratio["per_step"]
    lines.append(
        f"ratio llrd/stock of median samples/s: {ratio['of_medians']:.4f}; per step: median {per_step['median']:.4f} "
        f"[q1 {per_step['q1']:.4f}, q3 {per_step['q3']:.4f}; 95% CI of the median {ratio['per_step_median_95ci'][0]:.4f}-"
        f"{ratio['per_step_median_95ci'][1]:.4f}]; per round: {', '.join(f'{value:.4f}' for value in ratio['per_round'])}; goal >= 0.99"
    )
    log = results["log_call"]
    lines.append(
        f"trainer.log per call: stock {log['stock_us']:.1f} us, llrd {log['llrd_us']:.1f} us (+{log['extra_us']:.1f} us)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the lockstep rounds, prints the table and writes the JSON.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The results written to the JSON file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = fill_defaults(build_parser().parse_args(argv))
    if args.trainer == "seq2seq":
        args.model = "bert2bert-minilm"
    started, machine = bench_utils.start_benchmark(args.threads, args.quick, args.device)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bench_utils.minilm_path())
    size = (args.warmup_steps + args.measured_steps) * args.batch_size
    if args.trainer == "seq2seq":
        dataset = summarization_dataset(tokenizer, size, args.max_length, args.target_length)
    else:
        texts, labels = bench_utils.sst2_rows("train")
        dataset = bench_utils.encode(tokenizer, texts[:size], labels[:size], args.max_length)

    rounds = []
    for round_index in range(args.rounds):
        rounds.append(lockstep_round(ARMS[round_index % 2], args, dataset, tokenizer))
        trainers = rounds[-1].pop("trainers")
    arms, ratio = summarize_rounds(rounds, args.batch_size)
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
        "arms": arms,
        "ratio": ratio,
        "optimizer_creation": time_optimizer_creation(trainers, args.creations),
        "log_call": time_log_calls(trainers, args.log_calls),
    }
    if args.trainer == "seq2seq":
        name = "throughput_seq2seq" if args.device == "cpu" else f"throughput_seq2seq_{args.device}"
    else:
        name = (
            "throughput"
            if (args.model, args.device) == ("minilm", "cpu")
            else f"throughput_{args.model}_{args.device}"
        )
    output = args.output or bench_utils.default_output(name, args.quick)
    bench_utils.write_result(output, "throughput", argv, args.quick, machine, results, started)
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
