"""What every timing benchmark shares: its command line (sizes with a full and a quick default), the machine it ran
on, the lockstep training of two arms and their pooled ratios, interleaved timing, and the JSON and the table it
ends with (the section ``report.py`` renders into BENCHMARKS.md).

Lockstep: both arms train the same model (fresh from the same weights and seed) on the same batches in the same
order, in one process: each trainer runs in its own thread and they take turns step by step (stock step 1, LLRD
step 1, stock step 2, ...; the other waits), so that background load on a shared machine falls on both alike. A
step is timed from the moment its trainer gets the turn to the end of its optimizer step. The figure is the ratio
of the arms' median samples/s pooled over the rounds, with the spread of the per-step ratios (each LLRD step
against the stock step next to it in time) and the ratio of each round; rounds alternate which arm goes first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_utils


ARMS = ("stock", "llrd")


def build_parser(
    doc: str, name: str, sizes: dict[str, tuple[int, int, str]], device: bool = True
) -> argparse.ArgumentParser:
    """A timing benchmark's command line: ``--quick``, ``--device``, one option per size (unset: its full or
    quick default, see :func:`fill_defaults`), ``--threads`` and ``--output``.

    Args:
        doc: the benchmark's docstring (its first paragraph describes the command).
        name: the benchmark's name, for the default output file.
        sizes: option name (``rounds``, ``warmup_steps``, ...) -> (full default, quick default, help).
        device: whether the benchmark takes ``--device``.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A miniature run (seconds).")
    if device:
        parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    for option, (full, quick, text) in sizes.items():
        parser.add_argument(
            f"--{option.replace('_', '-')}", type=int, default=None, help=f"{text} (default {full}, quick {quick})."
        )
    bench_utils.add_threads_argument(parser)
    parser.add_argument(
        "--output", type=Path, default=None, help=f"The JSON file (default: benchmarks/results/{name}.json)."
    )
    return parser


def fill_defaults(args: argparse.Namespace, sizes: dict[str, tuple[int, int, str]]) -> argparse.Namespace:
    """Gives the unset sizes their full or quick defaults."""
    for option, (full, quick, _) in sizes.items():
        if getattr(args, option) is None:
            setattr(args, option, quick if args.quick else full)
    return args


def lockstep_sizes(rounds: tuple[int, int], warmup_steps: tuple[int, int], measured_steps: tuple[int, int]):
    """The sizes of a lockstep (or round-robin) benchmark, each (full default, quick default)."""
    return {
        "rounds": (*rounds, "Rounds, each with fresh trainers"),
        "warmup_steps": (*warmup_steps, "Steps of every round left out of the timing"),
        "measured_steps": (*measured_steps, "Timed steps per arm and round"),
    }


# The arguments of every timed run besides its own: no checkpoints, no reports, no progress bars, seed 0.
QUIET_RUN = dict(save_strategy="no", report_to=[], disable_tqdm=True, seed=0, dataloader_num_workers=0)


def arm_trainer(
    arm: str,
    trainer_class: type,
    arguments_class: type,
    common: dict[str, Any],
    layer_decay: float,
    param_group_rules: str | None = None,
    **kwargs,
):
    """The stock trainer (arm ``stock``) or its layer-wise composition with ``layer_decay`` and
    ``param_group_rules`` (arm ``llrd``), with otherwise identical arguments (``common``) and ``kwargs`` (model,
    data), progress printing off."""
    from transformers.trainer_callback import PrinterCallback

    from finetune_llrd import layerwise_arguments, layerwise_trainer

    if arm == "stock":
        trainer = trainer_class(args=arguments_class(**common), **kwargs)
    else:
        arguments = layerwise_arguments(arguments_class)(
            **common, layer_decay=layer_decay, param_group_rules=param_group_rules
        )
        trainer = layerwise_trainer(trainer_class)(args=arguments, **kwargs)
    trainer.remove_callback(PrinterCallback)
    return trainer


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model``: the real MiniLM or a BERT-base built from its config (:func:`sequence_classifier`)."""
    parser.add_argument(
        "--model",
        choices=("minilm", "bert-base"),
        default="minilm",
        help="minilm: the real pretrained all-MiniLM-L6-v2 (6 layers); bert-base: a 12-layer BERT-base built from its config (random weights).",
    )


def add_lockstep_arguments(parser: argparse.ArgumentParser) -> None:
    """The layer-wise arm's ``--layer-decay`` and both arms' ``--logging-steps`` of a lockstep benchmark."""
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
        "--param-group-rules",
        default=None,
        help="The LLRD arm's --param_group_rules (a JSON array), on top of its decay: each rule's parameters get "
        "groups of their own and log keys of their own.",
    )


def sequence_classifier(name: str):
    """A fresh two-label classifier: the real pretrained MiniLM (``minilm``), a 12-layer BERT-base built from its
    config (``bert-base``, no download), or a tiny BERT of 3 layers (``tiny-bert``)."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    if name == "minilm":
        return AutoModelForSequenceClassification.from_pretrained(bench_utils.minilm_path(), num_labels=2)
    tiny = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37)
    return AutoModelForSequenceClassification.from_config(
        BertConfig(num_labels=2, **(tiny if name == "tiny-bert" else {}))
    )


@dataclass
class Session:
    """One run of a timing benchmark: its name, command line, when and on what machine it started."""

    name: str
    argv: list[str]
    args: argparse.Namespace
    started: float
    machine: dict[str, Any]

    def finish(self, results: dict[str, Any], output_name: str = "") -> dict[str, Any]:
        """Writes the JSON (``--output``, else ``<output_name>.json`` under ``benchmarks/results`` or
        ``out/bench-quick``) with the command, the machine and the wall time, and prints its BENCHMARKS.md section."""
        import report

        args = self.args
        output = args.output or bench_utils.default_output(output_name or self.name, args.quick)
        bench_utils.write_result(output, self.name, self.argv, args.quick, self.machine, results, self.started)
        print(report.benchmark_section(report.load(output.parent, output.stem)))
        return results


def start(
    name: str, parser: argparse.ArgumentParser, sizes: dict[str, tuple[int, int, str]], argv: list[str] | None
) -> Session:
    """Parses the command line (default: ``sys.argv[1:]``), fills the sizes' defaults, sets the threads and notes
    the machine, before anything is measured."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = fill_defaults(parser.parse_args(argv), sizes)
    started, machine = bench_utils.start_benchmark(args.threads, args.quick, getattr(args, "device", "cpu"))
    return Session(name, argv, args, started, machine)


def interleaved(calls: dict[str, Callable[[], float]], repeats: int, rotate: bool = False) -> dict[str, list[float]]:
    """Each call's measurements, ``repeats`` times, in an order that changes from one repeat to the next so that
    background load falls on all alike: reversed every other repeat (A B C, C B A, ...), or with ``rotate`` starting
    one further each time (A B C, B C A, ...); for two calls both alternate A B, B A."""
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(repeats):
        shift = index % len(names)
        order = names[shift:] + names[:shift] if rotate else (names if index % 2 == 0 else names[::-1])
        for name in order:
            samples[name].append(calls[name]())
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    """The median of each name's samples."""
    return {name: bench_utils.median_and_spread(values)["median"] for name, values in samples.items()}


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


def lockstep_rounds(
    rounds: int, make_arm_trainer: Callable[[str, str], Any], device: str, warmup_steps: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``rounds`` lockstep rounds with fresh trainers, alternating which arm goes first.

    Returns:
        Each round's outcome (:func:`train_in_lockstep`, without its trainers) and the last round's trainers.
    """
    outcomes, trainers = [], {}
    for index in range(rounds):
        outcome = train_in_lockstep(ARMS[index % 2], make_arm_trainer, device, warmup_steps)
        trainers = outcome.pop("trainers")
        outcomes.append(outcome)
    return outcomes, trainers


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
