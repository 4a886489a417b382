"""Where layer-wise rates matter: real pretrained backbones fine-tuned to convergence, many seeds.

Studies, each a grid of runs with one result file per run, so that a stopped study resumes where it
stopped (a run whose file exists is skipped) and several machines or sessions can share the work:

* ``vit``: the real pretrained DINOv2-layout ViT-S/14 (``dinov2-small-imgfocus``, 12 blocks) on CIFAR-10.
  Arms: linear probe (backbone frozen), uniform fine-tuning (stock ``Trainer``) over a learning-rate grid,
  layer-wise decay 0.65 / 0.75 / 0.85 (the ViT literature's values) over the same grid. Drop path 0.1 and
  label smoothing 0.1, as ViT fine-tuning recipes use, in every fine-tuning arm.
* ``cnn``: the real ImageNet EfficientNet-Lite0 (16 blocks in 7 stages) on CIFAR-10: uniform against
  layer-wise with ``layer_grouping`` block and stage.
* ``text``: the few-sample protocol of Zhang et al. (2021), *Revisiting Few-sample BERT Fine-tuning*: 1,000
  training examples, several seeds, on RTE, CoLA (Matthews correlation) and SST-2, with the 12-layer
  ``e5-small`` and the 6-layer MiniLM. Arms: an lr x decay grid (decay 1.0 is the uniform stock Trainer),
  re-initialising the top k blocks (k = 1, 2, 3), decay + re-initialisation, at the standard budget
  (3 epochs) and a longer one (``--budgets standard,long``; 3x the steps). ``cola-full`` is CoLA with the
  whole training file instead of 1,000 sentences (beyond the protocol: for models that learn nothing from
  1,000).
* ``adaptive``, ``cnn-adaptive`` and ``vit-adaptive``: each ``layer_lr_adaptation`` method on top of uniform
  rates and on top of layer-wise decay, on the text models (at ``--adapt-lr``), on the CNN and on the ViT (at
  each arm's chosen rate, ``--cnn-adapt-lrs`` and ``--vit-adapt-lrs``); each run's twin without adaptation
  is a run of the ``text``, ``cnn`` or ``vit`` study.
* ``search``: the lr x decay search (``finetune_llrd.search``) on seed 0, against the text grid's cost.

Three disjoint splits per task: the model trains on the training subset; the selection split (held out
from the training file) is evaluated every ``eval_every`` steps for the learning curve and once at the
end to pick each arm's best configuration; the report split (the task's dev/test file, never seen by the
selection) gives the reported score. Every run with the same seed has the same training subset, batch
order and new-head initialisation, so differences between arms are paired by seed.

The real backbones are built offline by ``../shared/models/build.sh`` into ``--models-dir`` (built on first
use; about 40 s). Run, for example::

    python benchmarks/evidence.py --studies vit --processes 2 --threads 1
    python benchmarks/evidence.py --studies text --models e5-small --tasks cola,rte --processes 2 --threads 1

and ``python benchmarks/report.py`` renders what has finished. ``--quick`` runs a miniature of every study
on tiny models built from configs (seconds), into ``out/bench-quick/evidence``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import math
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import bench_utils
import evidence_summary
import numpy as np


logger = logging.getLogger("evidence")

EVIDENCE_DIR = bench_utils.RESULTS_DIR / "evidence"
QUICK_EVIDENCE_DIR = bench_utils.QUICK_RESULTS_DIR / "evidence"
DEFAULT_MODELS_DIR = bench_utils.REPO_ROOT / "out" / "models"
BUILD_SCRIPT = bench_utils.REPO_ROOT.parent / "shared" / "models" / "build.sh"
STUDIES = ("vit", "cnn", "text", "adaptive", "cnn-adaptive", "vit-adaptive", "search")
ADAPTATIONS = ("singh2015", "auto_rgn", "autolr", "lars")
TEXT_MODELS = ("e5-small", "minilm-l6")
TEXT_TASKS = ("rte", "cola", "sst2", "cola-full")
BUDGETS = {"standard": 1, "long": 3}


@dataclass(frozen=True)
class TaskSetup:
    """The data and budget of one (model, task) pair.

    Attributes:
        task: ``cifar10``, ``rte``, ``cola``, ``sst2`` or ``cola-full``.
        metric: ``accuracy`` or ``matthews_correlation``.
        train_size: training examples, a fixed random subset of the training file.
        select_size: selection examples, held out from the training file (disjoint from the training subset).
        report_split: the file whose score is reported.
        report_size: its rows used (None: all).
        batch_size: training batch size.
        max_steps: optimizer steps of the standard budget.
        eval_every: steps between two evaluations of the selection split.
        max_length: token truncation length (text).
        image_size: input resolution in pixels (images).
        data: the task whose files hold the data (empty: ``task``).
    """

    task: str
    metric: str
    train_size: int
    select_size: int
    report_split: str
    report_size: int | None
    batch_size: int
    max_steps: int
    eval_every: int
    max_length: int = 0
    image_size: int = 0
    data: str = ""


SETUPS = {
    # 2,000 CIFAR-10 images, 56 px (a 4x4 grid of 14-px patches), 200 steps = 3.2 epochs: the curves flatten.
    "cifar10": TaskSetup("cifar10", "accuracy", 2000, 500, "test", 2000, 32, 200, 25, image_size=56),
    # Zhang et al.: 1,000 examples, 3 epochs at batch 16 = 188 steps.
    "rte": TaskSetup("rte", "accuracy", 1000, 244, "test", None, 16, 188, 47, max_length=128),
    "cola": TaskSetup("cola", "matthews_correlation", 1000, 500, "dev", None, 16, 188, 47, max_length=64),
    "sst2": TaskSetup("sst2", "accuracy", 1000, 872, "test", None, 16, 188, 47, max_length=64),
    # Beyond Zhang et al.: the whole CoLA training file (8,551 sentences, 500 of them held out for selection),
    # 3 epochs at batch 16, for models that learn nothing from 1,000 sentences.
    "cola-full": TaskSetup(
        "cola-full", "matthews_correlation", 8051, 500, "dev", None, 16, 1510, 302, max_length=64, data="cola"
    ),
}


@dataclass(frozen=True)
class RunSpec:
    """One run: a configuration of one arm, on one model and task, with one seed.

    Attributes:
        study: ``vit``, ``cnn`` or ``text``.
        model: the model folder's name (``dinov2-small-imgfocus``, ``efficientnet-lite0``, ``e5-small``,
            ``minilm-l6``, or ``tiny-*`` in quick runs).
        task: the task.
        arm: ``probe``, ``uniform``, ``layerwise``, ``reinit`` or ``layerwise+reinit``.
        learning_rate: the uniform rate, or the head's rate for layer-wise arms.
        layer_decay: 1.0 for uniform arms.
        layer_grouping: ``block`` or ``stage``.
        reinit_top_layers: top blocks re-initialised before training (with the head).
        budget: ``standard`` or ``long``.
        seed: seeds the data order, the new head and dropout.
        adaptation: ``layer_lr_adaptation`` (``none``, ``singh2015``, ``auto_rgn``, ``autolr``, ``lars``).
    """

    study: str
    model: str
    task: str
    arm: str
    learning_rate: float
    layer_decay: float = 1.0
    layer_grouping: str = "block"
    reinit_top_layers: int = 0
    budget: str = "standard"
    seed: int = 0
    adaptation: str = "none"

    @property
    def config_label(self) -> str:
        """The configuration without the seed, e.g. ``layerwise lr=3e-04 decay=0.75``."""
        parts = [self.arm, f"lr={self.learning_rate:.0e}"]
        if self.layer_decay != 1.0:
            parts.append(f"decay={self.layer_decay:g}")
        if self.layer_grouping != "block":
            parts.append(f"grouping={self.layer_grouping}")
        if self.reinit_top_layers:
            parts.append(f"reinit={self.reinit_top_layers}")
        if self.adaptation != "none":
            parts.append(f"adapt={self.adaptation}")
        if self.budget != "standard":
            parts.append(f"budget={self.budget}")
        return " ".join(parts)

    @property
    def file_name(self) -> str:
        """The run's result file, unique per configuration and seed."""
        label = self.config_label.replace(" ", "_").replace("=", "").replace("+", "-")
        return f"{self.model}__{self.task}__{label}__seed{self.seed}.json"


def float_list(text: str) -> list[float]:
    """``"1e-4,3e-4"`` -> ``[1e-4, 3e-4]``."""
    return [float(item) for item in text.split(",") if item.strip()]


def int_list(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``."""
    return [int(item) for item in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A miniature of every study on tiny models (seconds).")
    parser.add_argument(
        "--studies", default="vit,text", help=f"Comma-separated studies among {', '.join(STUDIES)}, run in this order."
    )
    parser.add_argument("--models", default="e5-small", help=f"Text models among {', '.join(TEXT_MODELS)}.")
    parser.add_argument("--tasks", default="cola,rte", help=f"Text tasks among {', '.join(TEXT_TASKS)}.")
    parser.add_argument("--budgets", default="standard", help="Text budgets among standard, long (3x the steps).")
    parser.add_argument("--vit-seeds", type=int, default=3, help="Seeds per configuration of the image studies.")
    parser.add_argument("--text-seeds", type=int, default=5, help="Seeds per configuration of the text study.")
    parser.add_argument(
        "--vit-lrs", default="5e-5,2e-4,8e-4", help="Learning rates of the ViT grid (uniform rate, or the head's)."
    )
    parser.add_argument(
        "--vit-uniform-lrs",
        default="",
        help="More rates for the ViT's uniform arm only (e.g. below the grid, when its best rate is the grid's lowest).",
    )
    parser.add_argument(
        "--vit-adapt-lrs",
        default="2e-5,2e-4",
        help="Rates of the vit-adaptive study: uniform's and layer-wise decay's (--vit-adapt-decay), each arm's rate chosen in the ViT study.",
    )
    parser.add_argument(
        "--vit-adapt-decay",
        type=float,
        default=0.75,
        help="Decay of the vit-adaptive study's layer-wise arm (the ViT study's best).",
    )
    parser.add_argument("--vit-decays", default="0.65,0.75,0.85", help="Layer-wise decays of the ViT grid.")
    parser.add_argument("--probe-lr", type=float, default=1e-3, help="Learning rate of the ViT linear probe.")
    parser.add_argument("--cnn-lrs", default="2e-4,1e-3,5e-3", help="Learning rates of the CNN grid.")
    parser.add_argument(
        "--cnn-block-decay", type=float, default=0.85, help="The CNN's decay with one depth per block (16 blocks)."
    )
    parser.add_argument(
        "--cnn-adapt-lrs",
        default="1e-3,5e-3",
        help="Rates of the cnn-adaptive study: uniform's and per-block decay's, each arm's rate chosen in the CNN study.",
    )
    parser.add_argument(
        "--cnn-stage-decay", type=float, default=0.7, help="The CNN's decay with one depth per stage (7 stages)."
    )
    parser.add_argument("--text-lrs", default="3e-5,1e-4,3e-4", help="Learning rates of the text grid.")
    parser.add_argument(
        "--text-decays", default="0.9,0.8", help="Layer-wise decays of the text grid (1.0, uniform, is always in)."
    )
    parser.add_argument(
        "--text-grid-seeds",
        type=int,
        default=None,
        help=(
            "Seeds that run every rate of the text grid (default: all). Later seeds run each arm only at the rate "
            "its mean selection score over these seeds picked, once they have finished: a staged protocol that "
            "buys more seeds for the same time."
        ),
    )
    parser.add_argument(
        "--reinit-ks",
        default="1,2,3",
        help="Numbers of top blocks re-initialised by the re-init arms of the text study.",
    )
    parser.add_argument(
        "--reinit-lrs",
        "--reinit-lr",
        dest="reinit_lr",
        metavar="LRS",
        default="1e-4",
        help="Learning rates of the re-initialisation arms, comma-separated (with --text-grid-seeds, later seeds run the one selected).",
    )
    parser.add_argument("--reinit-decay", type=float, default=0.9, help="Decay of the decay + re-initialisation arm.")
    parser.add_argument(
        "--adapt-lr",
        type=float,
        default=1e-4,
        help="Rate of the adaptive arms (a rate of the text grid, so each has a twin without adaptation).",
    )
    parser.add_argument(
        "--adapt-decay", type=float, default=0.9, help="Decay of the adaptive arms on top of layer-wise decay."
    )
    parser.add_argument(
        "--adaptations", default=",".join(ADAPTATIONS), help="layer_lr_adaptation methods of the adaptive study."
    )
    parser.add_argument(
        "--search-trials", type=int, default=12, help="Trials of the search study (seed 0, text tasks)."
    )
    parser.add_argument("--processes", type=int, default=1, help="Runs side by side in this many processes.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    bench_utils.add_threads_argument(parser)
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=DEFAULT_MODELS_DIR,
        help="Where build.sh puts (or has put) the real backbones.",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="One JSON file per run (default: benchmarks/results/evidence, or out/bench-quick/evidence with --quick).",
    )
    parser.add_argument(
        "--max-runs", type=int, default=None, help="Stop after this many new runs (the rest stay pending)."
    )
    return parser


def vit_specs(args: argparse.Namespace, seeds: list[int]) -> list[RunSpec]:
    """Linear probe, then uniform and each decay over the lr grid; seed-major, so early seeds finish first."""
    model = "tiny-vit" if args.quick else "dinov2-small-imgfocus"
    lrs = float_list(args.vit_lrs)
    specs = []
    for seed in seeds:
        specs.append(RunSpec("vit", model, "cifar10", "probe", args.probe_lr, seed=seed))
        specs += [
            RunSpec("vit", model, "cifar10", "uniform", lr, seed=seed) for lr in lrs + float_list(args.vit_uniform_lrs)
        ]
        specs += [
            RunSpec("vit", model, "cifar10", "layerwise", lr, decay, seed=seed)
            for decay in float_list(args.vit_decays)
            for lr in lrs
        ]
    return specs


def cnn_specs(args: argparse.Namespace, seeds: list[int]) -> list[RunSpec]:
    """Uniform, and layer-wise per block and per stage, over the CNN's lr grid."""
    model = "tiny-cnn" if args.quick else "efficientnet-lite0"
    specs = []
    for seed in seeds:
        for lr in float_list(args.cnn_lrs):
            specs.append(RunSpec("cnn", model, "cifar10", "uniform", lr, seed=seed))
            specs.append(RunSpec("cnn", model, "cifar10", "layerwise", lr, args.cnn_block_decay, "block", seed=seed))
            specs.append(RunSpec("cnn", model, "cifar10", "layerwise", lr, args.cnn_stage_decay, "stage", seed=seed))
    return specs


def text_specs(args: argparse.Namespace, seeds: list[int]) -> list[RunSpec]:
    """Per model, task and budget: the lr x decay grid, re-init of the top k blocks (``--reinit-ks``), and decay +
    re-init of the top 2, the re-init arms over the rates of ``--reinit-lrs``.

    With ``--text-grid-seeds N``, seeds from N on run each arm at its selected rate only
    (:func:`selected_rate`), and are left out until the first N seeds have finished the grid.
    """
    models = ["tiny-bert"] if args.quick else args.models.split(",")
    grid_seeds = len(seeds) if args.text_grid_seeds is None else args.text_grid_seeds
    reinit_lrs = float_list(args.reinit_lr)
    specs = []
    for model in models:
        for budget in args.budgets.split(","):
            for task in args.tasks.split(","):
                for seed in seeds:
                    grids = [
                        [
                            RunSpec(
                                "text",
                                model,
                                task,
                                "uniform" if decay == 1.0 else "layerwise",
                                lr,
                                decay,
                                budget=budget,
                                seed=seed,
                            )
                            for lr in float_list(args.text_lrs)
                        ]
                        for decay in [1.0, *float_list(args.text_decays)]
                    ]
                    grids += [
                        [
                            RunSpec("text", model, task, "reinit", lr, reinit_top_layers=k, budget=budget, seed=seed)
                            for lr in reinit_lrs
                        ]
                        for k in int_list(args.reinit_ks)
                    ]
                    grids.append(
                        [
                            RunSpec(
                                "text",
                                model,
                                task,
                                "layerwise+reinit",
                                lr,
                                args.reinit_decay,
                                reinit_top_layers=2,
                                budget=budget,
                                seed=seed,
                            )
                            for lr in reinit_lrs
                        ]
                    )
                    if seed >= grid_seeds:
                        rates = [selected_rate(grid, range(grid_seeds), args.output_dir / "text") for grid in grids]
                        if None in rates:
                            break  # this seed and the later ones wait for the grid seeds
                        grids = [
                            [spec for spec in grid if spec.learning_rate == rate] for grid, rate in zip(grids, rates)
                        ]
                    specs += [spec for grid in grids for spec in grid]
    return specs


def selected_rate(grid: list[RunSpec], grid_seeds: range, directory: Path) -> float | None:
    """The rate of ``grid`` (one arm's configurations, one per rate) whose mean selection score over
    ``grid_seeds`` is best (:func:`evidence_summary.best_rate`); None until every grid run
    of those seeds has its result file in ``directory``.
    """
    means = {}
    for spec in grid:
        paths = [directory / replace(spec, seed=seed).file_name for seed in grid_seeds]
        if not all(path.is_file() for path in paths):
            return None
        means[spec.learning_rate] = statistics.fmean(json.loads(path.read_text())["select_score"] for path in paths)
    return evidence_summary.best_rate(means)


def adaptive_specs(args: argparse.Namespace, seeds: list[int]) -> list[RunSpec]:
    """Each ``layer_lr_adaptation`` method on top of uniform rates and on top of decay, at a rate of the text
    grid, so that each run has a twin without adaptation (same seed) in the text study."""
    models = ["tiny-bert"] if args.quick else args.models.split(",")
    specs = []
    for model in models:
        for task in args.tasks.split(","):
            for seed in seeds:
                for method in args.adaptations.split(","):
                    specs.append(RunSpec("text", model, task, "adaptive", args.adapt_lr, seed=seed, adaptation=method))
                    specs.append(
                        RunSpec(
                            "text",
                            model,
                            task,
                            "layerwise",
                            args.adapt_lr,
                            args.adapt_decay,
                            seed=seed,
                            adaptation=method,
                        )
                    )
    return specs


def cnn_adaptive_specs(args: argparse.Namespace, seeds: list[int]) -> list[RunSpec]:
    """Each ``layer_lr_adaptation`` method on the CNN, on top of uniform rates and on top of per-block decay, each
    at its arm's rate of ``--cnn-adapt-lrs``, so that each run has a twin without adaptation in the CNN study."""
    model = "tiny-cnn" if args.quick else "efficientnet-lite0"
    return image_adaptive_specs("cnn", model, "--cnn-adapt-lrs", args.cnn_adapt_lrs, args.cnn_block_decay, args, seeds)


def vit_adaptive_specs(args: argparse.Namespace, seeds: list[int]) -> list[RunSpec]:
    """Each ``layer_lr_adaptation`` method on the ViT, on top of uniform rates and on top of decay
    ``--vit-adapt-decay``, each at its arm's rate of ``--vit-adapt-lrs`` (twins in the ViT study)."""
    model = "tiny-vit" if args.quick else "dinov2-small-imgfocus"
    return image_adaptive_specs("vit", model, "--vit-adapt-lrs", args.vit_adapt_lrs, args.vit_adapt_decay, args, seeds)


def image_adaptive_specs(
    study: str, model: str, flag: str, rates_text: str, decay: float, args: argparse.Namespace, seeds: list[int]
) -> list[RunSpec]:
    """The runs of an image adaptive study: per seed and method, one on uniform rates and one on decay.

    Args:
        study: ``cnn`` or ``vit`` (the study whose runs are the twins).
        model: the model folder's name.
        flag: the command-line flag of ``rates_text``, named in the error.
        rates_text: two rates, the uniform arm's then the layer-wise arm's.
        decay: the layer-wise arm's decay.
        args: the parsed command line (``--adaptations``).
        seeds: the seeds.

    Returns:
        The runs, seed-major.
    """
    rates = float_list(rates_text)
    if len(rates) != 2:
        raise SystemExit(
            f"{flag}: give two rates, uniform's then layer-wise decay's (e.g. 1e-3,5e-3), got {rates_text!r}."
        )
    uniform_lr, layerwise_lr = rates
    specs = []
    for seed in seeds:
        for method in args.adaptations.split(","):
            specs.append(RunSpec(study, model, "cifar10", "adaptive", uniform_lr, seed=seed, adaptation=method))
            specs.append(
                RunSpec(study, model, "cifar10", "layerwise", layerwise_lr, decay, seed=seed, adaptation=method)
            )
    return specs


def all_specs(args: argparse.Namespace) -> list[RunSpec]:
    """Every run the command asks for, in the order they run (the search study is not made of runs)."""
    makers = {
        "vit": (vit_specs, args.vit_seeds),
        "cnn": (cnn_specs, args.vit_seeds),
        "text": (text_specs, args.text_seeds),
        "adaptive": (adaptive_specs, args.text_seeds),
        "cnn-adaptive": (cnn_adaptive_specs, args.vit_seeds),
        "vit-adaptive": (vit_adaptive_specs, args.vit_seeds),
        "search": (lambda args, seeds: [], 1),
    }
    specs = []
    for study in args.studies.split(","):
        if study not in makers:
            raise SystemExit(f"--studies: unknown study {study!r}; choose among {', '.join(STUDIES)}.")
        maker, num_seeds = makers[study]
        specs += maker(args, list(range(1 if args.quick else num_seeds)))
    return specs


def miniature(args: argparse.Namespace) -> argparse.Namespace:
    """With ``--quick``: one rate and one decay per grid, one seed, the standard budget."""
    if not args.quick:
        return args
    first = {
        name: getattr(args, name).split(",")[0]
        for name in ("vit_lrs", "vit_decays", "cnn_lrs", "text_lrs", "text_decays")
    }
    return argparse.Namespace(**(vars(args) | first | {"budgets": "standard", "tasks": args.tasks.split(",")[0]}))


# ---- models and data ----


def model_folder(name: str, models_dir: Path) -> str:
    """The folder of a real backbone, built with ``../shared/models/build.sh`` when missing (MiniLM comes from PyPI)."""
    if name == "minilm-l6":
        return bench_utils.minilm_path()
    folder = models_dir / name
    if not (folder / "config.json").is_file():
        subprocess.run(["bash", str(BUILD_SCRIPT), str(models_dir), name], check=True, cwd=bench_utils.REPO_ROOT)
    return str(folder)


def tiny_model_folder(name: str, directory: Path) -> str:
    """A tiny randomly initialised model of the same family as a real one, saved with its preprocessing."""
    from transformers import (
        AutoConfig,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    folder = directory / name
    if (folder / "config.json").is_file():
        return str(folder)
    if name == "tiny-bert":
        config = AutoConfig.for_model(
            "bert", vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
        )
        AutoTokenizer.from_pretrained(bench_utils.minilm_path()).save_pretrained(folder)
    elif name == "tiny-vit":
        config = AutoConfig.for_model(
            "dinov2",
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
            patch_size=8,
            image_size=32,
        )
    else:
        config = AutoConfig.for_model(
            "efficientnet", width_coefficient=0.25, depth_coefficient=0.25, image_size=32, hidden_dim=320
        )
    auto_class = AutoModelForSequenceClassification if name == "tiny-bert" else AutoModelForImageClassification
    auto_class.from_config(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return str(folder)


@lru_cache(maxsize=4)
def cifar_tensors(
    split: str, size: int | None, image_size: int, mean: tuple[float, ...], std: tuple[float, ...], seed: int = 1234
):
    """CIFAR-10 images of one split, a fixed random subset, resized (bicubic) and normalised.

    Returns:
        ``(pixels, labels)``: a float32 tensor ``(n, 3, image_size, image_size)`` and an int64 tensor.
    """
    import io

    import pandas
    import torch
    from PIL import Image

    frame = pandas.read_parquet(bench_utils.DATA_DIR / "cifar10" / f"{split}.parquet")
    rows = bench_utils.seeded_sample(list(range(len(frame))), size, seed)
    pixels = np.stack(
        [
            np.asarray(
                Image.open(io.BytesIO(frame["img"].iloc[row]["bytes"]))
                .convert("RGB")
                .resize((image_size, image_size), Image.BICUBIC)
            )
            for row in rows
        ]
    )
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    tensor = (tensor - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return tensor.contiguous(), torch.tensor(frame["label"].iloc[rows].to_numpy(), dtype=torch.long)


class ImageDataset:
    """``pixel_values``/``labels`` items over preprocessed tensors."""

    def __init__(self, pixels, labels):
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


def flip_collator(features: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacks a batch and flips each training image horizontally with probability 1/2 (torch's seeded RNG)."""
    import torch

    pixels = torch.stack([feature["pixel_values"] for feature in features])
    flip = torch.rand(len(features)) < 0.5
    pixels[flip] = pixels[flip].flip(-1)
    return {"pixel_values": pixels, "labels": torch.stack([feature["labels"] for feature in features])}


def image_splits(setup: TaskSetup, folder: str) -> dict[str, ImageDataset]:
    """Train, selection (both from CIFAR-10's train file, disjoint) and report splits."""
    processor = json.loads((Path(folder) / "preprocessor_config.json").read_text())
    norm = (tuple(processor["image_mean"]), tuple(processor["image_std"]))
    size = setup.image_size
    pool_pixels, pool_labels = cifar_tensors("train", setup.train_size + setup.select_size, size, *norm)
    report = cifar_tensors(setup.report_split, setup.report_size, size, *norm)
    return {
        "train": ImageDataset(pool_pixels[: setup.train_size], pool_labels[: setup.train_size]),
        "select": ImageDataset(pool_pixels[setup.train_size :], pool_labels[setup.train_size :]),
        "report": ImageDataset(*report),
    }


def text_rows(task: str, split: str) -> tuple[list, list[int]]:
    """Texts and labels of one split of a text task."""
    return {"rte": bench_utils.rte_rows, "cola": bench_utils.cola_rows, "sst2": bench_utils.sst2_rows}[task](split)


def text_splits(setup: TaskSetup, folder: str, model: str) -> tuple[dict[str, Any], Any]:
    """Train and selection (disjoint subsets of the training file) and report splits, tokenized.

    e5 was trained with a ``"query: "`` prefix before every text; it gets it here too.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prefix = "query: " if model.startswith("e5") else ""
    texts, labels = text_rows(setup.data or setup.task, "train")
    pool = bench_utils.seeded_sample(list(zip(texts, labels)), setup.train_size + setup.select_size, 1234)
    report_texts, report_labels = text_rows(setup.data or setup.task, setup.report_split)
    report = list(zip(report_texts, report_labels))
    if setup.report_size is not None:
        report = bench_utils.seeded_sample(report, setup.report_size, 1234)

    def encoded(rows):
        return bench_utils.encode(
            tokenizer,
            [tuple(prefix + part for part in text) for text, _ in rows],
            [label for _, label in rows],
            setup.max_length,
        )

    splits = {
        "train": encoded(pool[: setup.train_size]),
        "select": bench_utils.sort_by_length(encoded(pool[setup.train_size :])),
        "report": bench_utils.sort_by_length(encoded(report)),
    }
    return splits, tokenizer


def score_function(metric: str):
    """The Trainer's ``compute_metrics`` returning ``{"score": ...}`` (accuracy or Matthews correlation)."""
    from sklearn.metrics import matthews_corrcoef

    def compute(eval_prediction) -> dict[str, float]:
        logits, labels = eval_prediction
        predictions = np.argmax(logits, axis=-1)
        if metric == "matthews_correlation":
            return {"score": float(matthews_corrcoef(labels, predictions))}
        return {"score": float((predictions == labels).mean())}

    return compute


# ---- one run ----


def quick_setup(setup: TaskSetup) -> TaskSetup:
    """A miniature: a few steps on a few examples."""
    return replace(
        setup,
        train_size=32,
        select_size=16,
        report_size=16,
        batch_size=8,
        max_steps=4,
        eval_every=2,
        max_length=min(setup.max_length, 32),
        image_size=32 if setup.image_size else 0,
    )


def is_stock(spec: RunSpec) -> bool:
    """Whether the run uses the stock ``Trainer`` (the probe and the uniform arm)."""
    return spec.arm in ("probe", "uniform")


def training_arguments(spec: RunSpec, setup: TaskSetup, steps: int, output_dir: str, device: str):
    """``TrainingArguments`` for the stock arms (probe, uniform), ``LLRDTrainingArguments`` otherwise."""
    from transformers import TrainingArguments

    from finetune_llrd import LLRDTrainingArguments

    common = dict(
        output_dir=output_dir,
        learning_rate=spec.learning_rate,
        weight_decay=0.05 if setup.image_size else 0.01,
        per_device_train_batch_size=setup.batch_size,
        per_device_eval_batch_size=64,
        max_steps=steps,
        lr_scheduler_type="cosine" if setup.image_size else "linear",
        warmup_steps=math.ceil(0.1 * steps),
        label_smoothing_factor=0.1 if setup.image_size and spec.arm != "probe" else 0.0,
        eval_strategy="steps",
        eval_steps=setup.eval_every * (steps // setup.max_steps),
        logging_steps=setup.eval_every,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=spec.seed,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        train_sampling_strategy="random" if setup.image_size else "group_by_length",
    )
    if is_stock(spec):
        return TrainingArguments(**common)
    adaptation = {} if spec.adaptation == "none" else {"layer_lr_adaptation": spec.adaptation}
    return LLRDTrainingArguments(
        **common,
        layer_decay=spec.layer_decay,
        layer_grouping=spec.layer_grouping,
        reinit_top_layers=spec.reinit_top_layers,
        **adaptation,
    )


def load_model(spec: RunSpec, folder: str, setup: TaskSetup):
    """The pretrained backbone with a new head; drop path 0.1 for ViT fine-tuning; frozen backbone for the probe."""
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    if not setup.image_size:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
        model.accepts_loss_kwargs = False
        return model
    overrides = {"num_labels": 10}
    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "drop_path_rate") and spec.arm != "probe":
        overrides["drop_path_rate"] = 0.1
    if "id2label" in config.to_dict() and len(config.id2label) != 10:
        overrides |= {"id2label": {i: str(i) for i in range(10)}, "label2id": {str(i): i for i in range(10)}}
    model = AutoModelForImageClassification.from_pretrained(folder, ignore_mismatched_sizes=True, **overrides)
    if spec.arm == "probe":
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith("classifier"))
    return model


def run_once(spec: RunSpec, args: argparse.Namespace, output_path: Path) -> dict[str, Any]:
    """Fine-tunes once, evaluates the selection split along the way and the report split at the end, and
    writes the run's JSON.

    Returns:
        The run's result: the spec, model facts, rate settings, curve, selection and report scores, timing.
    """
    from transformers import DataCollatorWithPadding, Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback

    from finetune_llrd import LLRDTrainer

    started = time.time()
    setup = quick_setup(SETUPS[spec.task]) if args.quick else SETUPS[spec.task]
    folder = (
        tiny_model_folder(spec.model, args.output_dir / "models")
        if args.quick
        else model_folder(spec.model, args.models_dir)
    )
    if setup.image_size:
        splits, collator = image_splits(setup, folder), flip_collator
    else:
        splits, tokenizer = text_splits(setup, folder, spec.model)
        collator = DataCollatorWithPadding(tokenizer)
    steps = setup.max_steps * BUDGETS[spec.budget]
    set_seed(spec.seed)
    model = load_model(spec, folder, setup)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer_class = Trainer if is_stock(spec) else LLRDTrainer
        trainer = trainer_class(
            model=model,
            args=training_arguments(spec, setup, steps, output_dir, args.device),
            train_dataset=splits["train"],
            eval_dataset=splits["select"],
            data_collator=collator,
            compute_metrics=score_function(setup.metric),
        )
        trainer.remove_callback(PrinterCallback)
        train_started = time.perf_counter()
        train_output = trainer.train()
        train_seconds = time.perf_counter() - train_started
        curve = [[entry["step"], entry["eval_score"]] for entry in trainer.state.log_history if "eval_score" in entry]
        report_score = trainer.evaluate(splits["report"], metric_key_prefix="report")["report_score"]
        rates = bench_utils.peak_rates(trainer)
    result = {
        "spec": asdict(spec),
        "config_label": spec.config_label,
        "model_folder": Path(folder).name,
        "num_blocks": num_blocks(model),
        "metric": setup.metric,
        "setup": asdict(setup),
        "steps": steps,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "curve": curve,
        "select_score": curve[-1][1],
        "report_score": report_score,
        "final_train_loss": train_output.training_loss,
        "train_seconds": round(train_seconds, 1),
        "lr_per_depth": rates,
        "git_revision": args.git_revision,
        "command": args.command,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "torch_threads": __import__("torch").get_num_threads(),
    }
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    partial.replace(output_path)
    return result


def search_study(model: str, task: str, args: argparse.Namespace) -> Path:
    """The lr x decay search (``finetune_llrd.search``, Optuna TPE with median pruning) on one text task, seed 0,
    each trial at the standard budget and evaluated on the selection split like the grid's runs.

    Returns:
        The result file (every trial, in order, with its selection score and steps).
    """
    import optuna
    from transformers import DataCollatorWithPadding

    from finetune_llrd.search import SearchArguments, search_rates

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = args.output_dir / "search" / f"{model}__{task}__trials{args.search_trials}__seed0.json"
    if path.is_file():
        return path
    started = time.time()
    setup = quick_setup(SETUPS[task]) if args.quick else SETUPS[task]
    folder = (
        tiny_model_folder(model, args.output_dir / "models") if args.quick else model_folder(model, args.models_dir)
    )
    splits, tokenizer = text_splits(setup, folder, model)
    base = RunSpec("search", model, task, "layerwise", args.adapt_lr, args.adapt_decay)
    with tempfile.TemporaryDirectory() as output_dir:
        outcome, space = search_rates(
            lambda: load_model(base, folder, setup),
            training_arguments(base, setup, setup.max_steps, output_dir, args.device),
            SearchArguments(search_trials=args.search_trials, search_max_steps=setup.max_steps),
            "eval_score",
            train_dataset=splits["train"],
            eval_dataset=splits["select"],
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=score_function(setup.metric),
        )
    result = {
        "model": model,
        "task": task,
        "metric": setup.metric,
        "setup": asdict(setup),
        "steps_per_trial": setup.max_steps,
        "space": asdict(space),
        "best_params": outcome.best_params,
        "best_value": outcome.best_value,
        "trials": outcome.trials,
        "git_revision": args.git_revision,
        "command": args.command,
        "wall_seconds": round(time.time() - started, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    logger.info(
        "search %s %s: best %s = %.4f after %d trials",
        model,
        task,
        outcome.best_params,
        outcome.best_value,
        len(outcome.trials),
    )
    return path


def num_blocks(model) -> int:
    """L, the number of blocks the layer map finds."""
    from finetune_llrd import layer_map

    return layer_map(model).num_layers


# ---- the grid ----


def run_in_worker(spec: RunSpec, args: argparse.Namespace, output_path: Path) -> tuple[RunSpec, float, float]:
    """One run in a worker process: threads set, transformers quiet."""
    bench_utils.apply_threads(args.threads, args.quick)
    bench_utils.quiet_transformers()
    result = run_once(spec, args, output_path)
    return spec, result["report_score"], result["wall_seconds"]


def main(argv: list[str] | None = None) -> list[Path]:
    """Runs every pending run of the chosen studies (those without a result file).

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The result files of all the runs asked for, finished before or now.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = miniature(build_parser().parse_args(argv))
    args.output_dir = args.output_dir or (QUICK_EVIDENCE_DIR if args.quick else EVIDENCE_DIR)
    args.git_revision = bench_utils.git_revision()
    args.command = bench_utils.command_line("evidence", argv)
    bench_utils.apply_threads(args.threads, args.quick)
    bench_utils.quiet_transformers()
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    runs_left = args.max_runs
    while runs_left is None or runs_left > 0:  # a staged text grid asks for its later seeds once the first have run
        specs = all_specs(args)
        paths = {spec: args.output_dir / spec.study / spec.file_name for spec in specs}
        pending = [spec for spec in specs if not paths[spec].is_file()][:runs_left]
        if not pending:
            break
        logger.info("%d runs asked for so far, %d to run now", len(specs), len(pending))
        run_specs(pending, paths, args)
        runs_left = None if runs_left is None else runs_left - len(pending)
    if "search" in args.studies.split(","):
        for model in ["tiny-bert"] if args.quick else args.models.split(","):
            for task in args.tasks.split(","):
                search_study(model, task, args)
    return [args.output_dir / spec.study / spec.file_name for spec in all_specs(args)]


def run_specs(pending: list[RunSpec], paths: dict[RunSpec, Path], args: argparse.Namespace) -> None:
    """Runs ``pending``, side by side in ``args.processes`` processes or one after the other."""
    if not args.quick:
        for model in sorted({spec.model for spec in pending}):  # built once here, not by workers racing
            model_folder(model, args.models_dir)
    if args.processes > 1 and len(pending) > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.processes, mp_context=context) as pool:
            futures = [pool.submit(run_in_worker, spec, args, paths[spec]) for spec in pending]
            for future in concurrent.futures.as_completed(futures):
                log_finished(*future.result())
    else:
        for spec in pending:
            log_finished(*run_in_worker(spec, args, paths[spec]))


def log_finished(spec: RunSpec, score: float, seconds: float) -> None:
    """One line per finished run."""
    logger.info(
        "%s %s %s seed %d: report %.4f (%.0f s)", spec.model, spec.task, spec.config_label, spec.seed, score, seconds
    )


if __name__ == "__main__":
    main()
