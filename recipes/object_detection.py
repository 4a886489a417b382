#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes an object detection model with layer-wise learning rates: a detection checkpoint (RF-DETR, LW-DETR,
D-FINE, RT-DETR, DETR, ...), or a pretrained backbone under a new RF-DETR detection head.

    accelerate launch recipes/object_detection.py --backbone_name_or_path facebook/dinov2-small \
        --train_dir data/bccd --train_split train --validation_dir data/bccd --validation_split val \
        --image_size 448 --layer_decay 0.8 --learning_rate 1e-4 --output_dir out/detection

Data comes from one of:

* ``--train_dir`` / ``--validation_dir`` / ``--test_dir``: a Pascal VOC folder (``ImageSets/Main/<split>.txt``,
  ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``; the split from ``--train_split`` / ``--validation_split``
  / ``--test_split``), or an image folder with ``metadata.jsonl`` (transformers' documented local format:
  ``{"file_name": ..., "objects": {"bbox": [[x, y, w, h], ...], "category": [...]}}`` a line);
* ``--train_file`` / ``--validation_file`` / ``--test_file``: COCO JSON files (``images``, ``annotations``,
  ``categories``), the images in ``--image_dir`` or beside the file;
* ``--dataset_name``: a Hub dataset in transformers' detection format (``image``, ``objects`` with ``bbox``
  [x, y, w, h] and ``category``, as cppe-5).

The classes are those of the training split, sorted by name, set on the model. Before the model loads, every
image is opened (a missing or unreadable one is named) and every box checked: a box reaching outside its image is
clipped and counted (``--clip_boxes false`` refuses it), a box of zero or negative size is dropped and counted
with its image, images without boxes are counted, and a class that training never has is refused with the file
that has it.

The model is either

* a detection checkpoint (any ``AutoModelForObjectDetection``, including this recipe's own output),
  ``--ignore_mismatched_sizes`` giving it new class heads for another label set;
* or, with ``--backbone_name_or_path``, a pretrained DINOv2 (``Dinov2Model`` weights, as RF-DETR's backbone is a
  windowed DINOv2 with the same parameter names) under a new ``RfDetrForObjectDetection`` head: the backbone's
  weights are loaded, every one checked present, and the projector, decoder, queries and heads are new.

``--config_overrides "num_queries=100,group_detr=4,backbone_config.num_windows=2"`` changes the model's config
before it is built (transformers' ``run_clm.py`` flag). HF's DETR with a transformers ResNet backbone freezes every
backbone parameter; ``--train_backbone`` trains all but its stem and first stage, as DETR's own recipe does.

Images go through the model's image processor (RF-DETR's, in plain torch where torchvision is missing:
``RfDetrImageProcessorTorch``); ``--image_size N`` makes them N x N (RF-DETR) or N on the shorter side (DETR).
Training images are augmented with albumentations, boxes moved with them (flip, perspective, brightness, hue;
the augmentation of transformers' ``run_object_detection.py``). Evaluation scores COCO's mean average precision
(pycocotools): ``eval_map``, ``eval_map_50``, ``eval_map_75``, ``eval_mar_100`` and ``eval_map_<class>``.
``--do_predict`` writes ``predictions.json`` (COCO results, boxes in pixels) for ``--test_*``. The layer-wise rates
come from ``LLRDTrainingArguments`` (``--layer_decay`` ...) like every recipe: the backbone's blocks take depths
1..L, the new detection modules the head's depth.
"""

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from recipe_utils import ModelArguments as BaseModelArguments
from recipe_utils import (
    PredictionDataArgumentsMixin,
    Refusal,
    build_trainer,
    keep_splits_to_run,
    model_card_kwargs,
    prepare_run,
    sample_positions,
    train_evaluate_and_report,
    treat_loss_as_batch_mean,
)
from recipe_utils.detection import (
    DETECTIONS_PER_IMAGE,
    RfDetrImageProcessorTorch,
    as_dataset,
    check_boxes,
    check_classes_known,
    detection_metrics,
    detections_tensor,
    read_coco,
    read_hub_split,
    read_image_folder,
    read_voc,
    training_classes,
)
from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection, PretrainedConfig

from finetune_llrd import LLRDTrainer


logger = logging.getLogger(__name__)

# DETR's own recipe trains its ResNet backbone but for the stem and the first stage (``lr_backbone`` > 0).
FROZEN_STAGE_PREFIXES = ("embedder.", "encoder.stages.0.")
# The recipe's splits, the prefix of their arguments (--validation_dir, ...), and the stage that needs each.
SPLIT_NAMES = {"train": "train", "eval": "validation", "test": "test"}
STAGE_FLAGS = {"train": "--do_train", "eval": "--do_eval", "test": "--do_predict"}


@dataclass
class ModelArguments(BaseModelArguments):
    """Which detection checkpoint, or which backbone under a new RF-DETR head, to fine-tune."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A detection checkpoint (an RF-DETR, LW-DETR, D-FINE, RT-DETR, DETR folder or Hub id)."},
    )
    backbone_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A DINOv2 checkpoint (facebook/dinov2-small, a folder) to put under a new RF-DETR detection head "
            "instead of --model_name_or_path: its weights are loaded into RF-DETR's windowed DINOv2, the head is new."
        },
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor name or path, if not the model's."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Resize images to N x N (RF-DETR; a multiple of 14 x the backbone's windows) or to N on their "
            "shorter side (DETR-style processors). Default: the image processor's size (RF-DETR head: 560)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": 'Config changes before the model is built, "num_queries=100,group_detr=4,'
            "backbone_config.num_windows=2\" (as run_clm.py's flag; a dotted key reaches a sub-config)."
        },
    )
    train_backbone: bool = field(
        default=False,
        metadata={
            "help": "Train a convolutional backbone as DETR's recipe does: every parameter but the stem and first "
            "stage. HF's DETR on a transformers ResNet freezes all of it when built from its config, and loading a "
            "checkpoint makes all of it trainable: the recipe says which."
        },
    )

    def __post_init__(self):
        if (self.model_name_or_path is None) == (self.backbone_name_or_path is None):
            raise ValueError(
                "Give one of --model_name_or_path (a detection checkpoint) and --backbone_name_or_path (a DINOv2 "
                "backbone under a new RF-DETR head)."
            )
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"--image_size must be a positive integer, got {self.image_size}.")

    @property
    def source(self) -> str:
        return self.model_name_or_path or self.backbone_name_or_path


@dataclass
class DataTrainingArguments(PredictionDataArgumentsMixin):
    """Which images and boxes to train, evaluate and predict on, and how to check them."""

    train_dir: str | None = field(
        default=None, metadata={"help": "A Pascal VOC folder, or an image folder with metadata.jsonl."}
    )
    validation_dir: str | None = field(default=None, metadata={"help": "Evaluation data, as --train_dir."})
    test_dir: str | None = field(default=None, metadata={"help": "Data to predict (--do_predict), as --train_dir."})
    train_split: str = field(default="train", metadata={"help": "The VOC split of --train_dir."})
    validation_split: str = field(default="val", metadata={"help": "The VOC split of --validation_dir."})
    test_split: str = field(default="test", metadata={"help": "The VOC split of --test_dir."})
    image_dir: str | None = field(
        default=None, metadata={"help": "The images of COCO JSON files (default: the folder of each file)."}
    )
    image_column_name: str = field(default="image", metadata={"help": "The Hub dataset's image column."})
    clip_boxes: bool = field(
        default=True,
        metadata={
            "help": "Clip boxes that reach outside their image to it, counted (as DETR-family processors do); "
            "--clip_boxes false refuses them, naming each."
        },
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Predict on a random subset (seeded by --seed) of this many images."}
    )

    def __post_init__(self):
        dirs = (self.train_dir, self.validation_dir, self.test_dir)
        files = (self.train_file, self.validation_file, self.test_file)
        ways = sum((self.dataset_name is not None, any(dirs), any(files)))
        if ways != 1:
            raise ValueError(
                "Give the images and boxes one way: --train_dir / --validation_dir (Pascal VOC or metadata.jsonl "
                "folders), --train_file / --validation_file (COCO JSON) or --dataset_name (Hub)."
            )
        for argument, path in (("train_dir", dirs[0]), ("validation_dir", dirs[1]), ("test_dir", dirs[2])):
            if path is not None and not os.path.isdir(path):
                raise ValueError(f"--{argument} {path}: no such folder.")
        super().__post_init__()

    def max_samples(self, split: str) -> int | None:
        return {"train": self.max_train_samples, "eval": self.max_eval_samples, "test": self.max_predict_samples}[
            split
        ]


def read_split(data_args, split: str) -> tuple[list[dict], str]:
    """The rows of one split ("train", "eval", "test"), whatever its format, and where it comes from."""
    names = SPLIT_NAMES
    folder = getattr(data_args, f"{names[split]}_dir")
    if folder is not None:
        voc_split = getattr(data_args, f"{names[split]}_split")
        if os.path.isdir(os.path.join(folder, "ImageSets", "Main")):
            return read_voc(folder, voc_split), f"{folder} ({voc_split})"
        return read_image_folder(folder), folder
    file = getattr(data_args, f"{names[split]}_file")
    if file is not None:
        return read_coco(file, data_args.image_dir), file
    from datasets import load_dataset

    hub_split = getattr(data_args, f"{names[split]}_split_name")
    dataset = load_dataset(
        data_args.dataset_name, data_args.dataset_config_name, split=hub_split, revision=data_args.dataset_revision
    )
    source = f"{data_args.dataset_name} ({hub_split})"
    return read_hub_split(dataset, data_args.dataset_name, hub_split, data_args.image_column_name), source


def load_checked_splits(data_args, training_args) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """The rows of the splits the run needs (and of the training split wherever it is given: it names the
    classes), read, sampled (``--max_*_samples``, seeded) and checked (:func:`check_boxes`), and where each split
    comes from.

    Raises:
        Refusal: for a stage without its data.
    """
    needed = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    rows, sources = {}, {}
    for split, name in SPLIT_NAMES.items():
        given = data_args.dataset_name is not None or any(
            getattr(data_args, f"{name}_{kind}") is not None for kind in ("dir", "file")
        )
        if needed[split] and not given:
            raise Refusal(f"{STAGE_FLAGS[split]} needs --{name}_dir or --{name}_file.")
        if not given or not (needed[split] or split == "train"):
            continue
        read, sources[split] = read_split(data_args, split)
        positions = sample_positions(len(read), data_args.max_samples(split), training_args.seed)
        chosen = read if positions is None else [read[position] for position in positions]
        rows[split], _ = check_boxes(chosen, sources[split], clip_boxes=data_args.clip_boxes)
    return rows, sources


def load_image_processor(model_args):
    """The model's image processor, RF-DETR's in plain torch (:class:`RfDetrImageProcessorTorch`) where
    transformers' needs torchvision, or for a new RF-DETR head."""
    if model_args.backbone_name_or_path is not None and model_args.image_processor_name is None:
        processor = RfDetrImageProcessorTorch(size={"height": 560, "width": 560})
    else:
        name = model_args.image_processor_name or model_args.model_name_or_path
        try:
            processor = AutoImageProcessor.from_pretrained(name, **model_args.hub_options())
        except (ImportError, ValueError) as error:  # transformers' torchvision-only processor, without torchvision
            from transformers.image_processing_utils import ImageProcessingMixin

            settings, _ = ImageProcessingMixin.get_image_processor_dict(name, **model_args.fetch_options())
            if settings.get("image_processor_type") != "RfDetrImageProcessor":
                raise
            logger.info(f"RfDetrImageProcessor needs torchvision ({error}): using RfDetrImageProcessorTorch.")
            processor = RfDetrImageProcessorTorch(**settings)
    if model_args.image_size is not None:
        if "height" in processor.size or isinstance(processor, RfDetrImageProcessorTorch):
            processor.size = {"height": model_args.image_size, "width": model_args.image_size}
        else:
            processor.size = {
                "shortest_edge": model_args.image_size,
                "longest_edge": round(model_args.image_size * 1333 / 800),
            }
    return processor


def apply_overrides(config: PretrainedConfig, overrides: str | None) -> None:
    """Applies ``--config_overrides`` ("key=value,sub_config.key=value"), each value read as JSON if it parses."""
    if not overrides:
        return
    for item in overrides.split(","):
        key, _, value = item.partition("=")
        target, parts = config, key.strip().split(".")
        for part in parts[:-1]:
            target = getattr(target, part)
        if not hasattr(target, parts[-1]):
            raise Refusal(f"--config_overrides {key}: {type(target).__name__} has no attribute {parts[-1]!r}.")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        setattr(target, parts[-1], parsed)
    logger.info(f"Config overrides applied: {overrides}")


def rf_detr_on_backbone(model_args, id2label: dict[int, str]):
    """A new ``RfDetrForObjectDetection`` whose windowed DINOv2 holds the pretrained weights of
    ``--backbone_name_or_path``; the projector, decoder, queries and heads are new.

    Raises:
        Refusal: for a checkpoint that is not DINOv2, or that lacks some of the backbone's weights.
    """
    from transformers import Dinov2Model, RfDetrConfig, RfDetrForObjectDetection
    from transformers.models.rf_detr.configuration_rf_detr import RfDetrDinov2Config

    source = AutoConfig.from_pretrained(model_args.backbone_name_or_path, **model_args.hub_options())
    if source.model_type != "dinov2":
        raise Refusal(
            f"--backbone_name_or_path {model_args.backbone_name_or_path} is a {source.model_type} model; RF-DETR's "
            "backbone is a windowed DINOv2, so it takes DINOv2 weights (facebook/dinov2-small, ...)."
        )
    settings = source.to_dict()
    for key in (
        "model_type",
        "architectures",
        "out_features",
        "out_indices",
        "stage_names",
        "transformers_version",
        "id2label",
        "label2id",
        "_name_or_path",
        "dtype",
    ):
        settings.pop(key, None)
    layers = settings["num_hidden_layers"]
    quarter = [round(layers * q / 4) for q in (1, 2, 3, 4)]
    # RF-DETR's windowed blocks: all but each quarter's last, which attends globally.
    windowed = [index for index in range(layers) if index + 1 not in quarter]
    backbone_config = RfDetrDinov2Config(**settings, out_indices=quarter, window_block_indexes=windowed)
    config = RfDetrConfig(
        backbone_config=backbone_config,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
    )
    apply_overrides(config, model_args.config_overrides)
    model = RfDetrForObjectDetection(config)
    pretrained = Dinov2Model.from_pretrained(model_args.backbone_name_or_path, **model_args.hub_options())
    missing, unexpected = model.model.backbone.backbone.load_state_dict(pretrained.state_dict(), strict=False)
    if missing:
        raise Refusal(
            f"{model_args.backbone_name_or_path} lacks {len(missing)} weights of RF-DETR's DINOv2, e.g. "
            f"{sorted(missing)[:5]}: it is not a pretrained DINOv2 checkpoint."
        )
    logger.info(
        f"RF-DETR head on the pretrained DINOv2 of {model_args.backbone_name_or_path} (feature maps of blocks "
        f"{quarter}, windows {backbone_config.num_windows}, windowed blocks {windowed}); new: the projector, "
        f"decoder, queries and heads{'; not loaded: ' + str(sorted(unexpected)) if unexpected else ''}."
    )
    model.name_or_path = model_args.backbone_name_or_path
    return model


def detection_checkpoint(model_args, id2label: dict[int, str]):
    """A detection checkpoint with the data's classes (``--ignore_mismatched_sizes`` for a new label set)."""
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    if len(config.id2label) != len(id2label) and not model_args.ignore_mismatched_sizes:
        raise Refusal(
            f"{model_args.model_name_or_path} detects {len(config.id2label)} classes "
            f"({list(config.id2label.values())[:10]}), the data {len(id2label)} ({list(id2label.values())}). "
            "Pass --ignore_mismatched_sizes to give it new class heads."
        )
    config.id2label, config.label2id = id2label, {name: index for index, name in id2label.items()}
    config.num_labels = len(id2label)
    apply_overrides(config, model_args.config_overrides)
    return AutoModelForObjectDetection.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **model_args.hub_options(),
    )


def backbone_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The parameters of the model's convolutional backbone (``model.backbone.model`` / ``conv_encoder.model``
    of DETR-style models), by name within it; empty for others."""
    for path in ("model.backbone.conv_encoder.model", "model.backbone.model", "model.backbone.backbone"):
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None:
            return dict(module.named_parameters())
    return {}


def check_frozen_backbone(model, train_backbone: bool) -> None:
    """Says how much of a convolutional backbone trains, and with ``--train_backbone`` trains DETR's recipe's set:
    every backbone parameter but the stem and first stage.

    HF's DETR family (DETR, Conditional / Deformable DETR) on a transformers ResNet (``use_timm_backbone=False``)
    freezes every backbone parameter when built from its config (it keeps ``stage.1``-``stage.3`` trainable by name,
    but the names say ``stages.1``); loading a checkpoint with transformers 5 makes every loaded weight trainable
    again, stem and first stage included. Either way the user is told, since neither is DETR's recipe.
    """
    parameters = backbone_parameters(model)
    if not parameters:
        return
    frozen = [name for name, parameter in parameters.items() if not parameter.requires_grad]
    if train_backbone:
        for name, parameter in parameters.items():
            parameter.requires_grad_(not name.startswith(FROZEN_STAGE_PREFIXES))
        trained = sum(parameter.requires_grad for parameter in parameters.values())
        logger.warning(
            f"--train_backbone: {trained} of the backbone's {len(parameters)} parameters train (all but the stem and "
            "first stage, as DETR's recipe), at their depths' rates."
        )
    elif len(frozen) == len(parameters):
        logger.warning(
            f"{type(model).__name__} froze {len(frozen)} of its backbone's {len(parameters)} parameters (all of them): "
            "they will not train, and layer-wise decay reaches only what trains. Pass --train_backbone to train all "
            "but the stem and first stage, as DETR's recipe does."
        )
    elif not frozen and any(name.startswith(FROZEN_STAGE_PREFIXES) for name in parameters):
        logger.warning(
            f"All {len(parameters)} parameters of {type(model).__name__}'s backbone train, its stem and first stage "
            "included (loading a checkpoint makes every weight trainable); DETR's recipe keeps those two frozen: "
            "pass --train_backbone for that."
        )


def check_image_size(model, image_processor) -> None:
    """Refuses an input size a windowed ViT backbone (RF-DETR, LW-DETR) cannot split into its windows."""
    backbone = getattr(model.config, "backbone_config", None)
    # RF-DETR's num_windows is the windows a side; LW-DETR's, the windows in all (num_windows_side a side).
    windows = getattr(backbone, "num_windows_side", None) or getattr(backbone, "num_windows", None)
    patch, size = getattr(backbone, "patch_size", None), getattr(image_processor, "size", None) or {}
    if not windows or not isinstance(patch, int) or "height" not in size:
        return
    side = patch * windows
    if size["height"] % side or size["width"] % side:
        raise Refusal(
            f"Images of {size['height']} x {size['width']} do not split into {windows} x {windows} windows of "
            f"{patch}-pixel patches: give an --image_size that is a multiple of {side} (or change "
            "backbone_config.num_windows with --config_overrides)."
        )


def build_model(model_args, id2label: dict[int, str]):
    """The detection model with the data's classes: a checkpoint, or a new RF-DETR head on a DINOv2 backbone."""
    if model_args.backbone_name_or_path is not None:
        model = rf_detr_on_backbone(model_args, id2label)
    else:
        model = detection_checkpoint(model_args, id2label)
    check_frozen_backbone(model, model_args.train_backbone)
    treat_loss_as_batch_mean(model)
    return model


def training_augmentation(seed: int):
    """transformers' run_object_detection.py augmentation: boxes follow the image (COCO boxes, clipped; boxes left
    under 25 square pixels dropped). Seeded, so that runs with one ``--seed`` draw the same augmentations."""
    import albumentations as A

    return A.Compose(
        [
            A.Perspective(p=0.1),
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(p=0.5),
            A.HueSaturationValue(p=0.1),
        ],
        bbox_params=A.BboxParams(format="coco", label_fields=["category"], clip=True, min_area=25),
        seed=seed,
    )


class DetectionTransform:
    """Decodes, augments (training) and processes a batch of rows into the model's inputs and COCO targets."""

    def __init__(self, image_processor, train: bool, seed: int = 0):
        self.image_processor = image_processor
        self.augment = training_augmentation(seed) if train else None

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        images, annotations = [], []
        for image, image_id, objects in zip(batch["image"], batch["image_id"], batch["objects"]):
            if isinstance(image, str):
                with Image.open(image) as opened:
                    image = opened.convert("RGB")
            array = np.asarray(image.convert("RGB"))
            boxes, categories = objects["bbox"], objects["category"]
            if self.augment is not None:
                augmented = self.augment(
                    image=array, bboxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4), category=categories
                )
                array, boxes, categories = augmented["image"], augmented["bboxes"], augmented["category"]
            images.append(array)
            annotations.append(
                {
                    "image_id": image_id,
                    "annotations": [
                        {
                            "image_id": image_id,
                            "category_id": int(c),
                            "bbox": [float(v) for v in box],
                            "iscrowd": 0,
                            "area": float(box[2] * box[3]),
                        }
                        for box, c in zip(boxes, categories)
                    ],
                }
            )
        outputs = self.image_processor(images=images, annotations=annotations, return_tensors="pt")
        result = {"pixel_values": list(outputs["pixel_values"]), "labels": list(outputs["labels"])}
        if "pixel_mask" in outputs:
            result["pixel_mask"] = list(outputs["pixel_mask"])
        return result


def collate(examples: list[dict]) -> dict:
    """Pads the batch's images to its largest (bottom and right, a ``pixel_mask`` marking the image)."""
    height = max(example["pixel_values"].shape[-2] for example in examples)
    width = max(example["pixel_values"].shape[-1] for example in examples)
    pixel_values = torch.zeros((len(examples), examples[0]["pixel_values"].shape[0], height, width))
    pixel_mask = torch.zeros((len(examples), height, width), dtype=torch.int64)
    for index, example in enumerate(examples):
        h, w = example["pixel_values"].shape[-2:]
        pixel_values[index, :, :h, :w] = example["pixel_values"]
        mask = example.get("pixel_mask")
        pixel_mask[index, :h, :w] = 1 if mask is None else mask[:h, :w]
    labels = []
    for example in examples:
        label = dict(example["labels"])
        labels.append({key: torch.as_tensor(value) for key, value in label.items()})
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": labels}


class DetectionTrainer(LLRDTrainer):
    """An `LLRDTrainer` whose evaluation keeps each image's best detections (:func:`detections_tensor`, fixed
    shapes that gather across processes) and the image ids as labels, instead of the model's raw outputs."""

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs["labels"]
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.loss.detach().mean() if getattr(outputs, "loss", None) is not None else None
        if prediction_loss_only:
            return loss, None, None
        detections = detections_tensor(self.accelerator.unwrap_model(model), outputs, labels)
        return loss, detections, detections[:, 0, 0].clone()


def apply_transforms(splits: dict[str, Dataset], image_processor, seed: int) -> None:
    """Decodes, augments (the training split, seeded) and processes every split on the fly."""
    for split in list(splits):
        splits[split] = splits[split].with_transform(DetectionTransform(image_processor, split == "train", seed))


def write_predictions(trainer, dataset: Dataset, references: Dataset, id2label: dict[int, str], output_dir: str):
    """``--do_predict``: COCO results (image, class, box [x, y, w, h] in pixels, score) of every test image, and
    the scores where the test images have boxes."""
    output = trainer.predict(dataset, metric_key_prefix="predict")
    if output.metrics:
        trainer.log_metrics("predict", output.metrics)
        trainer.save_metrics("predict", output.metrics)
    if not trainer.is_world_process_zero():
        return
    results, seen = [], set()
    for rows in np.asarray(output.predictions).reshape(-1, DETECTIONS_PER_IMAGE, 7):
        image_id = int(rows[0, 0])
        if image_id in seen:
            continue
        seen.add(image_id)
        image = references[image_id]["image"]
        for _, x0, y0, x1, y1, score, label in rows[rows[:, 5] >= 0]:
            results.append(
                {
                    "image_id": image_id,
                    "file_name": image if isinstance(image, str) else None,
                    "category_id": int(label),
                    "category": id2label[int(label)],
                    "bbox": [
                        round(float(x0), 2),
                        round(float(y0), 2),
                        round(float(x1 - x0), 2),
                        round(float(y1 - y0), 2),
                    ],
                    "score": round(float(score), 5),
                }
            )
    path = os.path.join(output_dir, "predictions.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    logger.info(f"{len(results)} detections of {len(seen)} images written to {path}.")


def choose_classes(rows: dict[str, list[dict]], sources: dict[str, str], model_args) -> dict[int, str]:
    """The model's classes: the training split's, sorted by name (else the checkpoint's, for a run that does not
    train); a class of the evaluation or test split that they lack is refused (:func:`check_classes_known`)."""
    if "train" in rows:
        names, names_source = training_classes(rows["train"], sources["train"]), sources["train"]
    else:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, **model_args.hub_options())
        names, names_source = [config.id2label[i] for i in range(len(config.id2label))], model_args.model_name_or_path
    for split in ("eval", "test"):
        if split in rows:
            check_classes_known(rows[split], sources[split], names, f"the training data ({names_source})")
    return dict(enumerate(names))


def prediction_step_for(references: dict[str, Dataset], id2label: dict[int, str], output_dir: str):
    """``--do_predict``'s step for :func:`train_evaluate_and_report` (None without a test split)."""
    if "test" not in references:
        return None

    def predict(trainer):
        trainer.compute_metrics = detection_metrics(references["test"], id2label)
        write_predictions(trainer, trainer.test_dataset, references["test"], id2label, output_dir)

    return predict


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(ModelArguments, DataTrainingArguments, argv, logger)
    if model_args.model_name_or_path is None:
        model_args.model_name_or_path = model_args.backbone_name_or_path  # the model card's base model
    # The transforms read the image and objects columns, which the Trainer would otherwise drop.
    training_args.remove_unused_columns = False
    rows, sources = load_checked_splits(data_args, training_args)
    id2label = choose_classes(rows, sources, model_args)
    label2id = {name: index for index, name in id2label.items()}
    splits = {split: as_dataset(split_rows, label2id) for split, split_rows in rows.items()}
    keep_splits_to_run(splits, training_args)
    references = dict(splits)

    image_processor = load_image_processor(model_args)
    model = build_model(model_args, id2label)
    check_image_size(model, image_processor)
    apply_transforms(splits, image_processor, seed=training_args.seed + training_args.process_index)
    trainer = build_trainer(
        model,
        image_processor,
        training_args,
        {split: splits[split] for split in ("train", "eval") if split in splits},
        data_collator=collate,
        compute_metrics=detection_metrics(references["eval"], id2label) if "eval" in references else None,
        trainer_class=DetectionTrainer,
    )
    trainer.test_dataset = splits.get("test")
    model_card = model_card_kwargs(
        model_args, data_args, tasks="object-detection", tags=["object-detection", "vision"]
    )
    train_evaluate_and_report(
        trainer,
        {split: dataset for split, dataset in splits.items() if split != "test"},
        checkpoint=checkpoint,
        model_card=model_card,
        predict=prediction_step_for(references, id2label, training_args.output_dir),
    )


if __name__ == "__main__":
    main()
