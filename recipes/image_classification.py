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
evaluation images get the image processor alone (its resize, crop and normalization). ``--image_size``
changes the input size, ``--drop_path_rate`` sets stochastic depth, and the Trainer's
``--label_smoothing_factor`` smooths the labels. Without ``--do_train`` the recipe trains (and, without
``--do_eval`` either, evaluates). It writes ``all_results.json`` and a model card with the layer-wise settings
and the per-depth learning rates to ``--output_dir``, and prints the final metrics and the per-depth learning
rates.
"""

import inspect
import logging
import math
import os
from dataclasses import dataclass, field
from functools import partial

import datasets
import torch
from datasets import Dataset, load_dataset
from PIL import Image
from recipe_utils import (
    FolderDataArgumentsMixin,
    LabelSet,
    Refusal,
    accuracy_metrics,
    as_image_column,
    build_trainer,
    check_media,
    classification_labels,
    decode_media,
    folder_read_errors,
    keep_splits_to_run,
    load_config,
    load_model,
    load_train_and_eval_splits,
    model_card_kwargs,
    model_input_size,
    number_rows,
    prepare_run,
    read_image,
    require_rows_and_columns,
    resize_image_processor,
    take_samples,
    train_evaluate_and_report,
    undecoded,
)
from recipe_utils import ModelArguments as BaseModelArguments
from transformers import AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig
from transformers.integrations import is_deepspeed_zero3_enabled


logger = logging.getLogger(__name__)

# Label column names tried, in order, when --label_column is not given.
LABEL_COLUMN_GUESSES = ("label", "labels", "fine_label")
# Config attributes that set stochastic depth, in the order tried (EfficientNet calls it drop_connect_rate).
STOCHASTIC_DEPTH_ATTRIBUTES = ("drop_path_rate", "drop_connect_rate")


@dataclass
class ModelArguments(BaseModelArguments):
    """Which model, config and image processor to fine-tune from, at which input size and stochastic depth."""

    model_name_or_path: str = field(
        metadata={
            "help": "A Hub model id (google/vit-base-patch16-224-in21k, microsoft/beit-base-patch16-224-pt22k, "
            "timm/vit_base_patch16_224.augreg_in21k with timm installed) or the path of a local model folder."
        }
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor name or path, if not the model's."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Train and evaluate on N x N images instead of the image processor's size (evaluation resizes "
            "in the processor's ratio of resize to crop). DINOv2 interpolates its position embeddings, as do "
            "ViT-style models whose forward takes interpolate_pos_encoding (passed to them), so a smaller size "
            "is valid and much cheaper. The model is checked on one image of that size before training."
        },
    )
    drop_path_rate: float | None = field(
        default=None,
        metadata={
            "help": "Stochastic depth: the rate at which the deepest residual branches are dropped in training "
            "(the config's drop_path_rate, EfficientNet's drop_connect_rate, timm's drop_path_rate). Default: the "
            "checkpoint's. Refused for a model without it (ViT and DeiT in transformers have none)."
        },
    )

    def __post_init__(self):
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"--image_size must be a positive integer, got {self.image_size}.")
        if self.drop_path_rate is not None and not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"--drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")


@dataclass
class DataTrainingArguments(FolderDataArgumentsMixin):
    """Which images to train and evaluate on, and how to read them."""

    examples_name = "images"
    folder_layout = "image folders"
    file_layout = "parquet files"

    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset (cifar10, cifar100, food101, beans, ...)."}
    )
    validation_split_name: str = field(
        default="validation",
        metadata={"help": "The Hub dataset's evaluation split (cifar10 and cifar100 have none: use test)."},
    )
    train_val_split: float | None = field(
        default=None,
        metadata={"help": "Evaluate on this fraction of the training data, split off at random, instead."},
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: a .parquet file (as on the Hub), or .csv / .jsonl with image paths."},
    )
    image_column: str | None = field(
        default=None, metadata={"help": "The column holding the images. Default: the first column of images."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": f"The column holding the labels. Default: the first of {', '.join(LABEL_COLUMN_GUESSES)}."},
    )

    def __post_init__(self):
        if self.train_val_split is not None and not 0.0 < self.train_val_split < 1.0:
            raise ValueError(f"--train_val_split must be a fraction in (0, 1), got {self.train_val_split}.")
        super().__post_init__()


def read_image_folders(folders: dict[str, str], cache_dir: str | None) -> dict[str, Dataset]:
    """Split -> its folder of images with one sub-folder per class, its labels the sub-folder names. (The
    imagefolder builder gives every split the classes of all the folders: a class found only in the validation
    folder is then refused, as for files, rather than added to the model.)"""
    with folder_read_errors(list(folders.values()), "image"):
        raw = load_dataset(
            "imagefolder",
            data_files={split: os.path.join(folder, "**") for split, folder in folders.items()},
            cache_dir=cache_dir,
        )
    splits = {}
    for split in folders:
        names = raw[split].features["label"].names
        splits[split] = raw[split].map(
            lambda batch, names=names: {"label": [names[index] for index in batch["label"]]},
            batched=True,
            features=datasets.Features({**raw[split].features, "label": datasets.Value("string")}),
        )
    return splits


def load_splits(data_args, model_args, training_args) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits "train" (always, for the classes) and "eval", with a description of where each comes from."""
    hub_eval = training_args.do_eval and data_args.train_val_split is None
    splits, sources = load_train_and_eval_splits(
        data_args,
        model_args,
        hub_eval_argument="--validation_split_name (or --train_val_split)" if hub_eval else None,
        read_folders=partial(read_image_folders, cache_dir=model_args.cache_dir),
        folder_kind="image folder",
    )
    if training_args.do_eval and "eval" not in splits:
        if data_args.train_val_split is None:
            raise Refusal(
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
    raise Refusal(
        f"{source} has no column of images; its columns are {dataset.column_names}. Set --image_column to the column "
        "that holds the images or their paths."
    )


def resolve_label_column(data_args, dataset: Dataset, source: str) -> str:
    if data_args.label_column is not None:
        return data_args.label_column
    for name in LABEL_COLUMN_GUESSES:
        if name in dataset.column_names:
            return name
    raise Refusal(f"Which column holds the labels of {source}? Set --label_column to one of {dataset.column_names}.")


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


def check_image_columns(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> tuple[str, str]:
    """The image column and the label column, after checking that every split has them; every split's image
    column is decoded as images (a column of image paths is cast to images)."""
    image_column = resolve_image_column(data_args, splits["train"], sources["train"])
    label_column = resolve_label_column(data_args, splits["train"], sources["train"])
    require_rows_and_columns(splits, sources, {image_column: "--image_column", label_column: "--label_column"})
    for split, dataset in splits.items():
        splits[split] = as_image_column(dataset, image_column, sources[split])
    return image_column, label_column


def set_drop_path_rate(config: PretrainedConfig, rate: float | None) -> None:
    """Sets the stochastic depth of the model ``config`` builds (nothing when ``rate`` is None).

    Raises:
        ValueError: for a config without stochastic depth.
    """
    if rate is None:
        return
    if config.model_type == "timm_wrapper":
        config.model_args = {**(config.model_args or {}), "drop_path_rate": rate}  # passed to timm.create_model
        return
    for attribute in STOCHASTIC_DEPTH_ATTRIBUTES:
        if hasattr(config, attribute):
            setattr(config, attribute, rate)
            return
    raise ValueError(
        f"--drop_path_rate {rate}: {type(config).__name__} has no stochastic depth (no "
        f"{' or '.join(STOCHASTIC_DEPTH_ATTRIBUTES)}). Leave --drop_path_rate out, or choose a model that has it "
        "(DINOv2, BEiT, Swin, ConvNeXt, EfficientNet, timm models)."
    )


def image_size_forward_options(model, image_size: int) -> dict[str, bool]:
    """The forward arguments the model needs for ``image_size`` x ``image_size`` images
    (``interpolate_pos_encoding`` where its forward takes it), after checking it on one blank image.

    Raises:
        ValueError: naming the model and the size, if the model does not take images of that size.
    """
    takes_interpolation = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    options = {"interpolate_pos_encoding": True} if takes_interpolation else {}
    if is_deepspeed_zero3_enabled():  # the weights are partitioned until DeepSpeed wraps the model: no forward yet
        return options
    pixel_values = torch.zeros(1, getattr(model.config, "num_channels", 3), image_size, image_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values, **options)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"{type(model).__name__} does not take {image_size}x{image_size} images (--image_size {image_size}): "
            f"{error}"
        ) from error
    finally:
        model.train(was_training)
    return options


def apply_transforms(
    splits, sources, image_processor, columns: tuple[str, str], labels: LabelSet, data_args, training_args
):
    """Replaces every split by its random subset of ``--max_*_samples`` images, decoded (a file that fails
    stops the run naming its row) and transformed on the fly as batches are drawn: augmented for training
    (:class:`TrainTransform`), processed for evaluation."""
    image_column, label_column = columns
    transforms = {"train": TrainTransform(image_processor), "eval": EvalTransform(image_processor)}
    for split, dataset in splits.items():
        transform = transforms[split]

        def apply(batch, transform=transform):
            return {
                "pixel_values": transform(batch[image_column]),
                "labels": [labels.ids[value] for value in batch[label_column]],
            }

        dataset = take_samples(
            number_rows(undecoded(dataset, [image_column])), data_args.max_samples(split), training_args.seed
        )
        splits[split] = dataset.with_transform(
            decode_media(apply, source=sources[split], readers={image_column: read_image})
        )


def collate(examples: list[dict], forward_options: dict[str, bool] | None = None) -> dict[str, torch.Tensor]:
    """The batch of images and labels, with ``forward_options`` for the model (:func:`image_size_forward_options`)."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples]),
        **(forward_options or {}),
    }


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(ModelArguments, DataTrainingArguments, argv, logger)
    # The transforms read the image and label columns, which the Trainer would otherwise drop as unknown to the
    # model's forward().
    training_args.remove_unused_columns = False
    splits, sources = load_splits(data_args, model_args, training_args)
    image_column, label_column = check_image_columns(data_args, splits, sources)
    labels = classification_labels(splits, sources, label_column)
    keep_splits_to_run(splits, training_args)
    check_media(splits, sources, {image_column: "image"}, data_args=data_args, seed=training_args.seed)

    task, head_suffix = "image-classification", "ForImageClassification"
    config = load_config(model_args, labels.names, sources["train"], finetuning_task=task, head_suffix=head_suffix)
    set_drop_path_rate(config, model_args.drop_path_rate)
    model = load_model(AutoModelForImageClassification, model_args, config)
    image_processor = AutoImageProcessor.from_pretrained(
        model_args.image_processor_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    forward_options = {}
    if model_args.image_size is not None:
        resize_image_processor(image_processor, model_args.image_size)
        forward_options = image_size_forward_options(model, model_args.image_size)
    apply_transforms(splits, sources, image_processor, (image_column, label_column), labels, data_args, training_args)

    trainer = build_trainer(
        model,
        image_processor,
        training_args,
        splits,
        data_collator=partial(collate, forward_options=forward_options),
        compute_metrics=accuracy_metrics(),
    )
    model_card = model_card_kwargs(
        model_args, data_args, tasks="image-classification", tags=["image-classification", "vision"]
    )
    train_evaluate_and_report(trainer, splits, checkpoint=checkpoint, model_card=model_card)


if __name__ == "__main__":
    main()
