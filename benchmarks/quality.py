"""Quality at equal budget: uniform rate (stock Trainer) against layer-wise decay (LLRDTrainer).

The real pretrained all-MiniLM-L6-v2 is fine-tuned on real SST-2 and RTE. Each arm runs a small grid of
configurations over several seeds; every run has the same number of optimizer steps, batch size, sequence
length, training subset, schedule and evaluation points. Per seed, both arms start from the same head
initialization and see the same batches in the same order.

Three splits per task, each used for one purpose:

* the curve split, evaluated every ``eval_every`` steps, gives the accuracy-against-step curve and the time
  to accuracy;
* the selection split, evaluated once at the end, picks each arm's best configuration (mean over seeds), so
  that the configuration is not picked on the figures it is reported with;
* the report split gives the final accuracy in the tables.

SST-2: curve = report = ``test.tsv`` (the 872-row GLUE dev set), selection = 872 rows of ``dev.tsv`` (held
out from GLUE train). RTE: curve = selection = ``dev.tsv`` (139 pairs, cheap enough to evaluate often),
report = ``test.tsv`` (1,384 pairs, evaluated once: ten times less noisy than dev).

The default grid gives both arms four configurations: uniform lr in {5e-5, 1e-4, 2e-4, 4e-4}; layer-wise
head lr in {2e-4, 4e-4} x decay in {0.8, 0.9}, whose depth-mean rates (1.0e-4 to 2.8e-4) lie inside the
uniform range. Equal grid sizes give both arms the same chance in the selection. ``--uniform-lrs``,
``--layerwise-lrs`` and ``--layer-decays`` change it.

Run ``python benchmarks/quality.py --threads 1 --processes 2`` for the full grid (48 runs, the two tasks
side by side in two processes: about 1.5 hours on 2 CPU cores) or ``--quick`` for a miniature of the same
code. Every run is deterministic (one thread, fixed seeds), so the figures do not depend on ``--processes``.

``--adaptations`` adds each ``layer_lr_adaptation`` method on top of every configuration of the grid (its
twin: the same rates without adaptation), compared seed by seed with the twin; narrow the grid to the arms'
chosen configurations first. ``--search-trials N`` runs the lr x decay search (``finetune_llrd.search``) on
seed 0, each trial at the grid's budget and scored on the selection split like the grid's runs::

    python benchmarks/quality.py --tasks sst2 --uniform-lrs 1e-4 --layerwise-lrs 2e-4 --layer-decays 0.8 \
        --adaptations singh2015,autolr,auto_rgn,lars --search-trials 12 --threads 1 \
        --output benchmarks/results/quality_adaptive.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import bench_utils
import numpy as np
from bench_utils import EncodedDataset


logger = logging.getLogger("quality")


@dataclass(frozen=True)
class TaskSetup:
    """The data and budget of one task.

    Attributes:
        name: ``sst2`` or ``rte``.
        train_size: training examples, a fixed random subset of ``train.tsv`` (None: all).
        curve_split: split evaluated every ``eval_every`` steps.
        curve_size: rows of it used (None: all).
        select_split: split evaluated at the end to pick each arm's best configuration.
        select_size: rows of it used (None: all).
        report_split: split whose final accuracy is reported.
        report_size: rows of it used (None: all).
        max_length: truncation length in tokens.
        batch_size: training batch size.
        max_steps: optimizer steps of every run.
        eval_every: steps between evaluations of the curve split.
    """

    name: str
    train_size: int | None
    curve_split: str
    curve_size: int | None
    select_split: str
    select_size: int | None
    report_split: str
    report_size: int | None
    max_length: int
    batch_size: int
    max_steps: int
    eval_every: int


FULL_TASKS = {
    "sst2": TaskSetup(
        name="sst2",
        train_size=2048,
        curve_split="test",
        curve_size=None,
        select_split="dev",
        select_size=872,
        report_split="test",
        report_size=None,
        max_length=64,
        batch_size=32,
        max_steps=64,
        eval_every=16,
    ),
    "rte": TaskSetup(
        name="rte",
        train_size=None,
        curve_split="dev",
        curve_size=None,
        select_split="dev",
        select_size=None,
        report_split="test",
        report_size=None,
        max_length=128,
        batch_size=16,
        max_steps=64,
        eval_every=16,
    ),
}


def quick_task(setup: TaskSetup) -> TaskSetup:
    """A miniature of a task: a few steps on a few examples, evaluated on small subsets."""
    return replace(
        setup,
        train_size=32,
        curve_size=16,
        select_size=16,
        report_size=16,
        batch_size=8,
        max_steps=4,
        eval_every=2,
        max_length=min(setup.max_length, 64),
    )


@dataclass(frozen=True)
class ArmConfig:
    """One configuration of one arm.

    Attributes:
        arm: ``uniform`` (stock Trainer) or ``layerwise`` (LLRDTrainer).
        learning_rate: the uniform rate, or the head's rate for the layer-wise arm.
        layer_decay: 1.0 for the uniform arm.
        layer_lr_adaptation: ``none``, or the method applied on top of the arm's rates (then LLRDTrainer
            trains the uniform arm too, with ``layer_decay`` 1.0).
    """

    arm: str
    learning_rate: float
    layer_decay: float = 1.0
    layer_lr_adaptation: str = "none"

    @property
    def twin(self) -> ArmConfig:
        """The same rates without adaptation."""
        return replace(self, layer_lr_adaptation="none")

    @property
    def label(self) -> str:
        """A short readable name such as ``uniform lr=1e-04``, ``layerwise lr=2e-04 decay=0.8`` or
        ``uniform lr=1e-04 +auto_rgn``."""
        if self.arm == "uniform":
            base = f"uniform lr={self.learning_rate:.0e}"
        else:
            base = f"layerwise lr={self.learning_rate:.0e} decay={self.layer_decay:g}"
        return base if self.layer_lr_adaptation == "none" else f"{base} +{self.layer_lr_adaptation}"


def parse_floats(text: str) -> list[float]:
    """``"1e-4,2e-4"`` -> ``[1e-4, 2e-4]``."""
    return [float(item) for item in text.split(",") if item.strip()]


def parse_ints(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    return [int(item) for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A miniature run (seconds): one seed, one configuration per arm, a few steps.",
    )
    parser.add_argument("--tasks", default="sst2,rte", help="Comma-separated tasks among sst2, rte.")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds; every configuration runs with each.")
    parser.add_argument("--uniform-lrs", default="5e-5,1e-4,2e-4,4e-4", help="The uniform arm's learning rates.")
    parser.add_argument("--layerwise-lrs", default="2e-4,4e-4", help="The layer-wise arm's head learning rates.")
    parser.add_argument("--layer-decays", default="0.8,0.9", help="The layer-wise arm's decays.")
    parser.add_argument(
        "--adaptations",
        default="",
        help="layer_lr_adaptation methods (comma-separated) added on top of every configuration of the grid, each compared with its twin without adaptation.",
    )
    parser.add_argument(
        "--search-trials", type=int, default=0, help="Trials of the lr x decay search on seed 0 (0: no search)."
    )
    parser.add_argument("--weight-decay", type=float, default=0.01, help="Weight decay of both arms.")
    parser.add_argument(
        "--warmup-fraction", type=float, default=0.1, help="Linear warm-up as a fraction of the steps."
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    bench_utils.add_threads_argument(parser)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Run the tasks side by side in this many processes (each with --threads threads).",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="The JSON file (default: benchmarks/results/quality.json, or out/bench-quick/ with --quick).",
    )
    return parser


def grid(args: argparse.Namespace) -> list[ArmConfig]:
    """The configurations of both arms, uniform first, then each ``--adaptations`` method on top of each.

    Returns:
        With ``--quick``, one configuration per arm: uniform 2e-4 (or the middle uniform rate) and the first
        decay with the layer-wise rate nearest 2e-4 (and the methods on top of those two).
    """
    uniform_lrs, layerwise_lrs, decays = (
        parse_floats(args.uniform_lrs),
        parse_floats(args.layerwise_lrs),
        parse_floats(args.layer_decays),
    )
    if args.quick:

        def nearest(rates: list[float]) -> float:
            return min(rates, key=lambda rate: abs(math.log(rate / 2e-4)))

        base = [ArmConfig("uniform", nearest(uniform_lrs)), ArmConfig("layerwise", nearest(layerwise_lrs), decays[0])]
    else:
        uniform = [ArmConfig("uniform", lr) for lr in uniform_lrs]
        layerwise = [ArmConfig("layerwise", lr, decay) for decay in decays for lr in layerwise_lrs]
        base = uniform + layerwise
    adaptive = [
        replace(config, layer_lr_adaptation=method) for method in parse_methods(args.adaptations) for config in base
    ]
    return base + adaptive


def parse_methods(text: str) -> list[str]:
    """``"singh2015,lars"`` -> ``["singh2015", "lars"]``, refusing unknown methods before any training."""
    from finetune_llrd.arguments import LAYER_LR_ADAPTATIONS

    known = [method for method in LAYER_LR_ADAPTATIONS if method != "none"]
    methods = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [method for method in methods if method not in known]
    if unknown:
        raise SystemExit(f"--adaptations: unknown method(s) {unknown}; choose among {known}.")
    return methods


def load_split(task: str, split: str, size: int | None, seed: int = 1234) -> tuple[list, list[int]]:
    """The texts and labels of one split, reduced to a fixed random subset of ``size`` rows."""
    texts, labels = bench_utils.sst2_rows(split) if task == "sst2" else bench_utils.rte_rows(split)
    if size is None or size >= len(labels):
        return texts, labels
    chosen = bench_utils.seeded_sample(list(zip(texts, labels)), size, seed)
    return [text for text, _ in chosen], [label for _, label in chosen]


@dataclass
class TaskData:
    """The tokenized splits of one task."""

    train: EncodedDataset
    curve: EncodedDataset
    select: EncodedDataset
    report: EncodedDataset


def prepare_task(setup: TaskSetup, tokenizer) -> TaskData:
    """Reads and tokenizes the four splits of a task; evaluation splits are sorted by length (less padding)."""

    def encoded(split: str, size: int | None) -> EncodedDataset:
        texts, labels = load_split(setup.name, split, size)
        return bench_utils.encode(tokenizer, texts, labels, setup.max_length)

    return TaskData(
        train=encoded("train", setup.train_size),
        curve=bench_utils.sort_by_length(encoded(setup.curve_split, setup.curve_size)),
        select=bench_utils.sort_by_length(encoded(setup.select_split, setup.select_size)),
        report=bench_utils.sort_by_length(encoded(setup.report_split, setup.report_size)),
    )


def accuracy(eval_prediction) -> dict[str, float]:
    """The Trainer's ``compute_metrics``: accuracy of the arg-max prediction."""
    logits, labels = eval_prediction
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def training_arguments(config: ArmConfig, setup: TaskSetup, seed: int, args: argparse.Namespace, output_dir: str):
    """The arguments of one run: ``TrainingArguments`` for the uniform arm, ``LLRDTrainingArguments`` otherwise.

    Everything but the rates is identical between arms.
    """
    from transformers import TrainingArguments

    from finetune_llrd import LLRDTrainingArguments

    common = dict(
        output_dir=output_dir,
        learning_rate=config.learning_rate,
        weight_decay=args.weight_decay,
        per_device_train_batch_size=setup.batch_size,
        per_device_eval_batch_size=64,
        max_steps=setup.max_steps,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(args.warmup_fraction * setup.max_steps),
        eval_strategy="steps",
        eval_steps=setup.eval_every,
        logging_steps=setup.eval_every,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=seed,
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
    )
    if not uses_llrd_trainer(config):
        return TrainingArguments(**common)
    adaptation = {} if config.layer_lr_adaptation == "none" else {"layer_lr_adaptation": config.layer_lr_adaptation}
    return LLRDTrainingArguments(**common, layer_decay=config.layer_decay, **adaptation)


def uses_llrd_trainer(config: ArmConfig) -> bool:
    """The stock ``Trainer`` for the uniform arm, ``LLRDTrainer`` for layer-wise rates or an adaptation."""
    return config.arm == "layerwise" or config.layer_lr_adaptation != "none"


def run_once(
    config: ArmConfig, setup: TaskSetup, data: TaskData, tokenizer, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Fine-tunes the real MiniLM once and evaluates it.

    Args:
        config: the arm and its rates.
        setup: the task's budget.
        data: the tokenized splits.
        tokenizer: the model's tokenizer (for the padding collator).
        seed: seeds the new head's initialization and the batch order (the same for both arms).
        args: the command-line arguments.

    Returns:
        ``curve`` (list of ``[step, accuracy]`` on the curve split), ``select_accuracy``,
        ``report_accuracy``, ``train_seconds``, ``final_train_loss`` and, for the layer-wise arm,
        ``lr_per_depth`` (the rates at the peak of the schedule).
    """
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback

    from finetune_llrd import LLRDTrainer

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(bench_utils.minilm_path(), num_labels=2)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer_class = LLRDTrainer if uses_llrd_trainer(config) else Trainer
        trainer = trainer_class(
            model=model,
            args=training_arguments(config, setup, seed, args, output_dir),
            train_dataset=data.train,
            eval_dataset=data.curve,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        train_output = trainer.train()
        train_seconds = time.perf_counter() - started
        curve = [
            [entry["step"], entry["eval_accuracy"]] for entry in trainer.state.log_history if "eval_accuracy" in entry
        ]
        select_accuracy = trainer.evaluate(data.select, metric_key_prefix="select")["select_accuracy"]
        if setup.report_split == setup.curve_split and setup.report_size == setup.curve_size:
            report_accuracy = curve[-1][1]
        else:
            report_accuracy = trainer.evaluate(data.report, metric_key_prefix="report")["report_accuracy"]
        result = {
            "config": asdict(config),
            "label": config.label,
            "seed": seed,
            "curve": curve,
            "select_accuracy": select_accuracy,
            "report_accuracy": report_accuracy,
            "train_seconds": round(train_seconds, 2),
            "final_train_loss": train_output.training_loss,
        }
        if uses_llrd_trainer(config):
            result["lr_per_depth"] = bench_utils.peak_rates(trainer)
        return result


def run_search_trials(setup: TaskSetup, data: TaskData, tokenizer, args: argparse.Namespace) -> dict[str, Any]:
    """The lr x decay search (Optuna TPE, median pruning) on seed 0: each trial trains for the grid's
    ``max_steps`` and is scored on the selection split, evaluated every ``eval_every`` steps for pruning.

    Returns:
        ``space``, ``steps_per_trial``, ``best_params``, ``best_value`` (selection accuracy) and ``trials``
        (in the order they ran, each with its parameters, state, value and steps).
    """
    import optuna
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, set_seed

    from finetune_llrd.search import SearchArguments, search_rates

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def model_init():
        return AutoModelForSequenceClassification.from_pretrained(bench_utils.minilm_path(), num_labels=2)

    set_seed(0)
    with tempfile.TemporaryDirectory() as output_dir:
        outcome, space = search_rates(
            model_init,
            training_arguments(ArmConfig("layerwise", 2e-4, 0.8), setup, 0, args, output_dir),
            SearchArguments(search_trials=args.search_trials, search_max_steps=setup.max_steps),
            "eval_accuracy",
            train_dataset=data.train,
            eval_dataset=data.select,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
    return {
        "space": asdict(space),
        "steps_per_trial": setup.max_steps,
        "best_params": outcome.best_params,
        "best_value": outcome.best_value,
        "trials": outcome.trials,
    }


def first_step_reaching(curve: list[list[float]], target: float) -> int | None:
    """The first evaluated step whose accuracy is at least ``target`` (None if none is)."""
    for step, value in curve:
        if value >= target - 1e-12:
            return int(step)
    return None


def summarize_task(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-configuration means, each arm's best configuration (picked on the selection split), the best
    single run, the grid mean, paired differences and the time to accuracy.

    Args:
        runs: every run of one task.

    Returns:
        A JSON-ready summary.
    """
    by_label: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_label.setdefault(run["label"], []).append(run)
    configs = []
    for label, config_runs in by_label.items():
        configs.append(
            {
                "label": label,
                "arm": config_runs[0]["config"]["arm"],
                "config": config_runs[0]["config"],
                "report": bench_utils.mean_and_std([run["report_accuracy"] for run in config_runs]),
                "select": bench_utils.mean_and_std([run["select_accuracy"] for run in config_runs]),
                "final_curve": bench_utils.mean_and_std([run["curve"][-1][1] for run in config_runs]),
                "train_seconds": bench_utils.mean_and_std([run["train_seconds"] for run in config_runs]),
            }
        )
    base_configs = [config for config in configs if config["config"].get("layer_lr_adaptation", "none") == "none"]
    base_runs = [run for run in runs if run["config"].get("layer_lr_adaptation", "none") == "none"]
    arms: dict[str, Any] = {}
    for arm in ("uniform", "layerwise"):
        arm_configs = [config for config in base_configs if config["arm"] == arm]
        arm_runs = [run for run in base_runs if run["config"]["arm"] == arm]
        best = max(arm_configs, key=lambda config: config["select"]["mean"])
        best_runs = by_label[best["label"]]
        best_single = max(arm_runs, key=lambda run: run["report_accuracy"])
        arms[arm] = {
            "best_config": best["label"],
            "best_config_report": best["report"],
            "best_config_select": best["select"],
            "best_config_curve": bench_utils.mean_curve(best_runs),
            "best_single_run": {
                "label": best_single["label"],
                "seed": best_single["seed"],
                "report_accuracy": best_single["report_accuracy"],
            },
            "best_config_on_report_split": max(arm_configs, key=lambda config: config["report"]["mean"])["label"],
            "grid_report": bench_utils.mean_and_std([run["report_accuracy"] for run in arm_runs]),
        }
    arms["time_to_accuracy"] = time_to_accuracy(
        by_label[arms["uniform"]["best_config"]], by_label[arms["layerwise"]["best_config"]]
    )
    arms["paired_difference"] = paired_difference(
        by_label[arms["uniform"]["best_config"]], by_label[arms["layerwise"]["best_config"]]
    )
    summary = {"configs": configs, "arms": arms}
    adaptive = [config for config in configs if config not in base_configs]
    if adaptive:
        uniform_best_runs = by_label[arms["uniform"]["best_config"]]
        summary["adaptive"] = [
            {
                "label": config["label"],
                "twin": (twin := ArmConfig(**config["config"]).twin.label),
                "report": config["report"],
                "minus_twin": paired_difference(by_label[twin], by_label[config["label"]]),
                "minus_uniform_best": paired_difference(uniform_best_runs, by_label[config["label"]]),
            }
            for config in adaptive
        ]
    return summary


def search_cost(
    search: dict[str, Any], grid_runs: list[dict[str, Any]], grid_max_steps: int, tolerance: float = 0.005
) -> dict[str, Any]:
    """How many trials and training steps the search needed to come within ``tolerance`` (half a point) of
    the grid's best configuration, both judged on the selection split with seed 0.

    Args:
        search: a task's ``search`` entry (trials in the order they ran).
        grid_runs: the grid's runs of the same task (runs with an adaptation are left out).
        grid_max_steps: the steps of each grid run.
        tolerance: how close counts as reaching the grid's best.

    Returns:
        ``grid_best`` (label and selection accuracy), ``grid_configs``, ``grid_steps`` (the grid's cost for one
        seed), ``trials_needed`` and ``steps_needed`` (None: not reached), ``trials`` and ``steps`` (all).
    """
    seed0 = [
        run for run in grid_runs if run["seed"] == 0 and run["config"].get("layer_lr_adaptation", "none") == "none"
    ]
    best = max(seed0, key=lambda run: run["select_accuracy"])
    return {
        "grid_best": {"label": best["label"], "select_accuracy": best["select_accuracy"]},
        "grid_configs": len(seed0),
        "grid_steps": len(seed0) * grid_max_steps,
        **bench_utils.trials_to_reach(search["trials"], best["select_accuracy"], tolerance),
        "best_params": search["best_params"],
        "best_value": search["best_value"],
    }


def time_to_accuracy(uniform_runs: list[dict[str, Any]], layerwise_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Steps each arm's best configuration needs to first reach the uniform best configuration's mean final
    accuracy on the curve split: on the mean-over-seeds curve, and seed by seed.

    Returns:
        ``target``, and per arm ``mean_curve_steps`` (None: never reached) and ``per_seed_steps``.
    """
    target = statistics.fmean(run["curve"][-1][1] for run in uniform_runs)
    result: dict[str, Any] = {"target": target}
    for arm, arm_runs in (("uniform", uniform_runs), ("layerwise", layerwise_runs)):
        curve = [[step, mean] for step, mean, _ in bench_utils.mean_curve(arm_runs)]
        result[arm] = {
            "mean_curve_steps": first_step_reaching(curve, target),
            "per_seed_steps": {str(run["seed"]): first_step_reaching(run["curve"], target) for run in arm_runs},
        }
    return result


def paired_difference(uniform_runs: list[dict[str, Any]], layerwise_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Layer-wise minus uniform report accuracy, seed by seed (same head initialization and batches)."""
    uniform_by_seed = {run["seed"]: run["report_accuracy"] for run in uniform_runs}
    differences = [
        run["report_accuracy"] - uniform_by_seed[run["seed"]]
        for run in layerwise_runs
        if run["seed"] in uniform_by_seed
    ]
    return bench_utils.mean_and_std(differences) | {"per_seed": differences}


def format_task_table(task: str, summary: dict[str, Any], setup: TaskSetup) -> str:
    """The result table of one task, as printed."""
    lines = [
        f"{task}: {setup.max_steps} steps x batch {setup.batch_size}; report = {setup.report_split}, "
        f"selection = {setup.select_split}, curve = {setup.curve_split}",
        f"{'configuration':<36} {'report acc mean':>15} {'std':>7} {'select acc':>10} {'n':>3}",
    ]
    for config in summary["configs"]:
        lines.append(
            f"{config['label']:<36} {config['report']['mean']:>15.4f} {config['report']['std']:>7.4f} "
            f"{config['select']['mean']:>10.4f} {config['report']['n']:>3}"
        )
    arms = summary["arms"]
    for arm in ("uniform", "layerwise"):
        entry = arms[arm]
        lines.append(
            f"{arm:<10} best config {entry['best_config']}: {entry['best_config_report']['mean']:.4f} +- "
            f"{entry['best_config_report']['std']:.4f}; best run {entry['best_single_run']['report_accuracy']:.4f}; "
            f"grid mean {entry['grid_report']['mean']:.4f} +- {entry['grid_report']['std']:.4f}"
        )
    tta = arms["time_to_accuracy"]
    lines.append(
        f"time to accuracy (target {tta['target']:.4f} on {setup.curve_split}): uniform "
        f"{tta['uniform']['mean_curve_steps']} steps, layerwise {tta['layerwise']['mean_curve_steps']} steps"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the grid of both arms on every task, prints the tables and writes the JSON.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The results written to the JSON file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    started, machine = bench_utils.start_benchmark(args.threads, args.quick, args.device)
    seeds = parse_ints(args.seeds)[:1] if args.quick else parse_ints(args.seeds)
    configs = grid(args)
    output = args.output or bench_utils.default_output("quality", args.quick)
    results: dict[str, Any] = {"grid": [config.label for config in configs], "seeds": seeds, "tasks": {}}
    tasks = args.tasks.split(",")

    def record(task: str, task_result: dict[str, Any]) -> None:
        results["tasks"][task] = task_result
        bench_utils.write_result(output, "quality", argv, args.quick, machine, results, started)

    if args.processes > 1 and len(tasks) > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(args.processes, len(tasks)), mp_context=context
        ) as pool:
            futures = {pool.submit(run_task, task, args, seeds, configs, None): task for task in tasks}
            finished = {futures[future]: future.result() for future in concurrent.futures.as_completed(futures)}
        for task in tasks:  # in the order asked for, whichever finished first
            record(task, finished[task])
    else:
        for task in tasks:
            run_task(task, args, seeds, configs, lambda task_result, task=task: record(task, task_result))
    for task in tasks:
        task_result = results["tasks"][task]
        setup = quick_task(FULL_TASKS[task]) if args.quick else FULL_TASKS[task]
        print(format_task_table(task, task_result["summary"], setup))
    return results


def run_task(
    task: str, args: argparse.Namespace, seeds: list[int], configs: list[ArmConfig], on_run
) -> dict[str, Any]:
    """Runs every configuration and seed of one task (in this process or a worker).

    Args:
        task: ``sst2`` or ``rte``.
        args: the parsed command line.
        seeds: the seeds of every configuration.
        configs: the grid of both arms.
        on_run: called with the task's partial result after every run (None: not called).

    Returns:
        The task's setup, runs and summary.
    """
    from transformers import AutoTokenizer

    bench_utils.apply_threads(args.threads, args.quick)
    bench_utils.quiet_transformers()
    if not args.quick and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    tokenizer = AutoTokenizer.from_pretrained(bench_utils.minilm_path())
    setup = quick_task(FULL_TASKS[task]) if args.quick else FULL_TASKS[task]
    data = prepare_task(setup, tokenizer)
    task_result = {"setup": asdict(setup), "runs": [], "complete": False}
    for seed in seeds:
        for config in configs:
            run = run_once(config, setup, data, tokenizer, seed, args)
            task_result["runs"].append(run)
            logger.info(
                "%s seed %d %s: report accuracy %.4f, %.0f s",
                task,
                seed,
                config.label,
                run["report_accuracy"],
                run["train_seconds"],
            )
            if on_run is not None:
                on_run(task_result)
    if args.search_trials > 0:
        task_result["search"] = run_search_trials(setup, data, tokenizer, args)
        logger.info(
            "%s search: best %s = %.4f",
            task,
            task_result["search"]["best_params"],
            task_result["search"]["best_value"],
        )
    task_result["summary"] = summarize_task(task_result["runs"])
    task_result["complete"] = True
    if on_run is not None:
        on_run(task_result)
    return task_result


if __name__ == "__main__":
    main()
