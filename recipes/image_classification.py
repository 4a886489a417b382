#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes an image classification model with layer-wise learning rates on a Hub dataset, image folders or
parquet files.

    accelerate launch --config_file recipes/accelerate/ddp.yaml recipes/image_classification.py \
        --model_name_or_path google/vit-base-patch16-224-in21k --dataset_name cifar10 \
        --validation_split_name test --layer_decay 0.65 --learning_rate 1e-3 --output_dir out/cifar10

Data comes from one of:

* ``--dataset_name``: a Hub dataset (cifar10, cifar100, food101, beans, ...);
* ``--train_dir`` / ``--validation_dir``: folders with one sub-folder of images per class;
* ``--train_file`` / ``--validation_file``: parquet files (as the Hub stores image datasets), or CSV / JSON lines
  files whose image column holds image paths.

Any ``AutoModelForImageClassification`` backbone works, and timm models (``timm/...`` ids) when timm is
installed. Training images get the standard augmentation (a random resized crop to the model's input size
and a random horizontal flip) and then the model's image processor for rescaling and normalization;
evaluation images get the image processor alone (its resize, crop and normalization). Without
``--do_train`` / ``--do_eval`` the recipe trains and evaluates. It writes ``all_results.json`` and a model
card with the layer-wise settings and the per-depth learning rates to ``--output_dir``, and prints the final
metrics and the per-depth learning rates.
"""

import logging
import math
import os
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from datasets import Dataset, load_dataset
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, EvalPrediction, set_seed

from finetune_llrd import LLRDTrainer
from recipe_utils import (
    LabelSet,
    RecipeTrainingArguments,
    check_data_files,
    check_labels,
    check_processes_joined,
    default_to_train_and_eval,
    find_checkpoint_to_resume,
    load_data_file,
    load_metric,
    parse_arguments,
    print_layerwise_lr_table,
    require_columns,
    require_rows,
    set_labels,
    setup_logging,
    take_samples,
    treat_loss_as_batch_mean,
)

logger = logging.getLogger(__name__)

# Label column names tried, in order, when --label_column is not given.
LABEL_COLUMN_GUESSES = ("label", "labels", "fine_label")


@dataclass
class ModelArguments:
    """Which model, config and image processor to fine-tune from."""

    model_name_or_path: str = field(
        metadata={
            "help": "A Hub model id (google/vit-base-patch16-224-in21k, microsoft/beit-base-patch16-224-pt22k, "
            "timm/vit_base_patch16_224.augreg_in21k with timm installed) or the path of a local model folder."
        }
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor name or path, if not the model's."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models and datasets from the Hub."})
    model_revision: str = field(
        default="main", metadata={"help": "The model version to use: a branch name, tag name or commit id."}
    )
    token: str | None = field(
        default=None,
        metadata={"help": "Hub token for private models and datasets; by default the one `hf auth login` stored."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow models whose code lives on the Hub; only for repositories you trust."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "Replace a pretrained classification head whose number of classes differs from the data's "
            "(needed to fine-tune an ImageNet-1k classifier on another label set)."
        },
    )


@dataclass
class DataTrainingArguments:
    """Which images to train and evaluate on, and how to read them."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset (cifar10, cifar100, food101, beans, ...)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    dataset_revision: str | None = field(default=None, metadata={"help": "The Hub dataset's branch, tag or commit."})
    train_split_name: str = field(default="train", metadata={"help": "The Hub dataset's training split."})
    validation_split_name: str = field(
        default="validation",
        metadata={"help": "The Hub dataset's evaluation split (cifar10 and cifar100 have none: use test)."},
    )
    train_val_split: float | None = field(
        default=None,
        metadata={"help": "Evaluate on this fraction of the training data, split off at random, instead."},
    )
    train_dir: str | None = field(
        default=None, metadata={"help": "A folder of training images with one sub-folder per class."}
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "A folder of evaluation images, as --train_dir."}
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: a .parquet file (as on the Hub), or .csv / .jsonl with image paths."},
    )
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data, as --train_file."})
    image_column: str | None = field(
        default=None, metadata={"help": "The column holding the images. Default: the first column of images."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": f"The column holding the labels. Default: the first of {', '.join(LABEL_COLUMN_GUESSES)}."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on a random subset (seeded by --seed) of this many images."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on a random subset (seeded by --seed) of this many images."}
    )

    def __post_init__(self):
        has_dirs = self.train_dir is not None or self.validation_dir is not None
        has_files = self.train_file is not None or self.validation_file is not None
        if sum((self.dataset_name is not None, has_dirs, has_files)) != 1:
            raise ValueError(
                "Give the images one way: --dataset_name (Hub), --train_dir / --validation_dir (image folders) or "
                "--train_file / --validation_file (parquet files)."
            )
        for argument in ("train_dir", "validation_dir"):
            path = getattr(self, argument)
            if path is not None and not os.path.isdir(path):
                raise ValueError(f"--{argument} {path}: no such folder.")
        check_data_files({"train_file": self.train_file, "validation_file": self.validation_file})
        if self.train_val_split is not None and not 0.0 < self.train_val_split < 1.0:
            raise ValueError(f"--train_val_split must be a fraction in (0, 1), got {self.train_val_split}.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value}.")


def load_splits(data_args, model_args, training_args) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits "train" (always, for the classes) and "eval", with a description of where each comes from."""
    if data_args.dataset_name is not None:
        raw = load_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            cache_dir=model_args.cache_dir,
            token=model_args.token,
            revision=data_args.dataset_revision,
        )
        hub_splits = {"train": data_args.train_split_name}
        if training_args.do_eval and data_args.train_val_split is None:
            hub_splits["eval"] = data_args.validation_split_name
        splits, sources = {}, {}
        for split, hub_split in hub_splits.items():
            if hub_split not in raw:
                argument = (
                    "--train_split_name" if split == "train" else "--validation_split_name (or --train_val_split)"
                )
                raise ValueError(
                    f"{data_args.dataset_name} has no split {hub_split!r}; its splits are {list(raw)}. "
                    f"Choose one with {argument}."
                )
            splits[split], sources[split] = raw[hub_split], f"split {hub_split!r} of {data_args.dataset_name}"
    elif data_args.train_dir is not None or data_args.validation_dir is not None:
        folders = {"train": data_args.train_dir, "eval": data_args.validation_dir}
        folders = {split: folder for split, folder in folders.items() if folder is not None}
        # One load, so that both splits get the same classes (the sub-folder names).
        raw = load_dataset(
            "imagefolder",
            data_files={split: os.path.join(folder, "**") for split, folder in folders.items()},
            cache_dir=model_args.cache_dir,
        )
        splits = {split: raw[split] for split in folders}
        sources = {split: f"image folder {folder}" for split, folder in folders.items()}
    else:
        files = {"train": data_args.train_file, "eval": data_args.validation_file}
        files = {split: path for split, path in files.items() if path is not None}
        splits = {split: load_data_file(path, cache_dir=model_args.cache_dir) for split, path in files.items()}
        sources = dict(files)

    if "train" not in splits:
        raise ValueError(
            "The classes come from the training data: give --train_dir, --train_file or a Hub train split."
        )
    if training_args.do_eval and "eval" not in splits:
        if data_args.train_val_split is None:
            raise ValueError(
                "--do_eval needs evaluation images: --validation_dir, --validation_file, a Hub evaluation split, or "
                "--train_val_split to split some off the training data."
            )
        held_out = splits["train"].train_test_split(test_size=data_args.train_val_split, seed=training_args.seed)
        splits["train"], splits["eval"] = held_out["train"], held_out["test"]
        sources["eval"] = f"{data_args.train_val_split:.0%} of {sources['train']}"
    return splits, sources


def resolve_image_column(data_args, dataset: Dataset, source: str) -> str:
    if data_args.image_column is not None:
        return data_args.image_column
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            return name
    raise ValueError(
        f"{source} has no column of images; its columns are {dataset.column_names}. Set --image_column to the column "
        "that holds the images or their paths."
    )


def resolve_label_column(data_args, dataset: Dataset, source: str) -> str:
    if data_args.label_column is not None:
        return data_args.label_column
    for name in LABEL_COLUMN_GUESSES:
        if name in dataset.column_names:
            return name
    raise ValueError(
        f"Which column holds the labels of {source}? Set --label_column to one of {dataset.column_names}."
    )


def as_image_column(dataset: Dataset, column: str, source: str) -> Dataset:
    """``dataset`` with ``column`` decoded as images (a column of image paths is cast to images).

    Raises:
        ValueError: naming the column and ``source`` if it holds no images.
    """
    feature = dataset.features[column]
    if not isinstance(feature, datasets.Image):
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise ValueError(
                f"Column {column!r} of {source} holds {feature}, not images or image paths. Set --image_column to "
                f"the column of images; the columns are {dataset.column_names}."
            )
        dataset = dataset.cast_column(column, datasets.Image())
    try:
        first = dataset[0][column]
    except (OSError, ValueError) as error:
        raise ValueError(f"Column {column!r} of {source} does not hold readable images: {error}") from error
    if not isinstance(first, Image.Image):
        raise ValueError(
            f"Column {column!r} of {source} does not hold images: its first entry is {type(first).__name__}."
        )
    return dataset


def model_input_size(image_processor) -> tuple[int, int]:
    """(height, width) of the images the model takes: the processor's crop size if it crops, else its size."""
    sizes = [getattr(image_processor, "size", None)]
    if getattr(image_processor, "do_center_crop", False):
        sizes.insert(0, getattr(image_processor, "crop_size", None))
    for size in sizes:
        if size is None:
            continue
        get = size.get if isinstance(size, dict) else lambda key, size=size: getattr(size, key, None)
        if get("height") and get("width"):
            return int(get("height")), int(get("width"))
        if get("shortest_edge"):
            return int(get("shortest_edge")), int(get("shortest_edge"))
    raise ValueError(
        f"Cannot tell the input size of the model from its image processor {type(image_processor).__name__} "
        f"(size={getattr(image_processor, 'size', None)})."
    )


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of a random crop covering a random ``scale`` fraction of the image
    with a random aspect ratio in ``ratio`` (log-uniform), as torchvision's ``RandomResizedCrop`` draws it;
    after 10 failed draws, the largest central crop whose aspect ratio is within ``ratio``. Draws from
    torch's random generator, which the Trainer seeds and DataLoader workers reseed."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        crop_width = round(math.sqrt(target_area * aspect_ratio))
        crop_height = round(math.sqrt(target_area / aspect_ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(torch.randint(0, height - crop_height + 1, size=(1,)).item())
            left = int(torch.randint(0, width - crop_width + 1, size=(1,)).item())
            return left, top, left + crop_width, top + crop_height
    image_ratio = width / height
    if image_ratio < min(ratio):
        crop_width, crop_height = width, round(width / min(ratio))
    elif image_ratio > max(ratio):
        crop_width, crop_height = round(height * max(ratio)), height
    else:
        crop_width, crop_height = width, height
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


class TrainTransform:
    """The standard training augmentation: a random resized crop to the model's input size and a random
    horizontal flip, then the image processor's rescaling and normalization (no resize, no crop). timm
    image processors bring their own training transform, which is used instead."""

    def __init__(self, image_processor):
        self.image_processor = image_processor
        self.timm_transform = getattr(image_processor, "train_transforms", None)
        self.height, self.width = model_input_size(image_processor)
        self.processor_options = {"do_resize": False, "return_tensors": "pt"}
        if hasattr(image_processor, "do_center_crop"):
            self.processor_options["do_center_crop"] = False

    def augment(self, image: Image.Image) -> Image.Image:
        box = random_resized_crop_box(*image.size)
        image = image.resize((self.width, self.height), Image.Resampling.BILINEAR, box=box)
        if torch.rand(1).item() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        images = [image.convert("RGB") for image in images]
        if self.timm_transform is not None:
            return torch.stack([self.timm_transform(image) for image in images])
        crops = [self.augment(image) for image in images]
        return self.image_processor(crops, **self.processor_options)["pixel_values"]


class EvalTransform:
    """The image processor as it is: its resize, center crop and normalization."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return self.image_processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples]),
    }


def main(argv=None):
    # 1. Arguments: the command line, or one .json / .yaml file with all of them.
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataTrainingArguments, RecipeTrainingArguments), argv
    )
    setup_logging(training_args, logger)
    check_processes_joined(training_args)
    default_to_train_and_eval(training_args)
    # The transforms below read the image and label columns, which the Trainer would otherwise drop as
    # unknown to the model's forward().
    training_args.remove_unused_columns = False
    checkpoint = find_checkpoint_to_resume(training_args)
    set_seed(training_args.seed)

    # 2. Data: read it and check the image and label columns before any model is loaded.
    splits, sources = load_splits(data_args, model_args, training_args)
    image_column = resolve_image_column(data_args, splits["train"], sources["train"])
    label_column = resolve_label_column(data_args, splits["train"], sources["train"])
    column_arguments = {image_column: "--image_column", label_column: "--label_column"}
    for split, dataset in splits.items():
        require_rows(dataset, sources[split])
        require_columns(dataset, (image_column, label_column), sources[split], column_arguments)
        splits[split] = as_image_column(dataset, image_column, sources[split])
    labels = LabelSet.from_column(splits["train"], label_column)
    for split, dataset in splits.items():
        check_labels(dataset, label_column, labels, sources[split], sources["train"])
    if not training_args.do_train:
        splits.pop("train")
    if not training_args.do_eval:
        splits.pop("eval", None)

    # 3. Model and image processor.
    hub_options = dict(
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )
    config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path, **hub_options)
    set_labels(
        config,
        labels.names,
        head_suffix="ForImageClassification",
        model_name_or_path=model_args.model_name_or_path,
        labels_source=sources["train"],
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    config.finetuning_task = "image-classification"
    model = AutoModelForImageClassification.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub_options,
    )
    treat_loss_as_batch_mean(model)
    image_processor = AutoImageProcessor.from_pretrained(
        model_args.image_processor_name or model_args.model_name_or_path, **hub_options
    )

    # 4. Transforms, applied on the fly as batches are drawn.
    max_samples = {"train": data_args.max_train_samples, "eval": data_args.max_eval_samples}
    transforms = {"train": TrainTransform(image_processor), "eval": EvalTransform(image_processor)}
    for split, dataset in splits.items():
        transform = transforms[split]

        def apply(batch, transform=transform):
            return {
                "pixel_values": transform(batch[image_column]),
                "labels": [labels.ids[value] for value in batch[label_column]],
            }

        splits[split] = take_samples(dataset, max_samples[split], training_args.seed).with_transform(apply)

    # 5. Metric.
    metric = load_metric("accuracy")

    def compute_metrics(prediction: EvalPrediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metric(predictions=np.argmax(logits, axis=-1), references=prediction.label_ids)

    # 6. Train.
    trainer = LLRDTrainer(
        model=model,
        args=training_args,
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("eval"),
        processing_class=image_processor,
        data_collator=collate,
        compute_metrics=compute_metrics,
    )
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        metrics = {**train_result.metrics, "train_samples": len(splits["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    # 7. Evaluate.
    if training_args.do_eval:
        metrics = {**trainer.evaluate(), "eval_samples": len(splits["eval"])}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    # 8. Model card (pushed with the model on --push_to_hub), then the per-depth rates under the metrics.
    card_kwargs = {
        "finetuned_from": model_args.model_name_or_path,
        "tasks": "image-classification",
        "tags": ["image-classification", "vision"],
    }
    if data_args.dataset_name is not None:
        card_kwargs.update(dataset_tags=data_args.dataset_name, dataset=data_args.dataset_name)
    if training_args.push_to_hub:
        trainer.push_to_hub(**card_kwargs)
    else:
        trainer.create_model_card(**card_kwargs)
    print_layerwise_lr_table(trainer)


if __name__ == "__main__":
    main()
