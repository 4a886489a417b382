#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes a semantic segmentation model with layer-wise learning rates: a pretrained backbone under a new
UperNet head, or a segmentation checkpoint, on images with per-pixel class masks.

    accelerate launch recipes/semantic_segmentation.py --model_name_or_path facebook/dinov2-small \
        --train_file train.parquet --validation_file validation.parquet --id2label_file id2label.json \
        --image_size 224 --layer_decay 0.65 --learning_rate 1e-4 --output_dir out/segmentation

Data comes from one of:

* ``--dataset_name``: a Hub dataset with an image column and a mask column (scene_parse_150, ...), its
  ``id2label.json`` fetched from the dataset repository unless ``--id2label_file`` is given;
* ``--train_file`` / ``--validation_file``: parquet files (as the Hub stores them) with the columns
  ``--image_column_name`` (default ``image``) and ``--label_column_name`` (default ``label``), or CSV / JSON
  lines files whose two columns hold image paths;
* ``--train_dir`` / ``--validation_dir``: folders holding ``images/`` and ``masks/``, a mask per image with the
  same file name up to the extension (``images/0001.jpg`` and ``masks/0001.png``).

A mask holds one class id per pixel (an 8- or 16-bit grayscale or palette PNG); ``--id2label_file`` (default:
``id2label.json`` beside the training data) names the classes. ``--reduce_labels`` shifts every class id down
by one and makes 0 (background, in ADE20K) the ignored class, as transformers' image processors do; pixels of
class ``--ignore_index`` (default 255) count in neither the loss nor the metric.

The model is either

* a backbone checkpoint (any model with a transformers backbone class: DINOv2, ConvNeXt, Swin, BEiT, ResNet,
  ..., including image-classification checkpoints): its pretrained weights are loaded into the backbone of a
  new ``UperNetForSemanticSegmentation`` (``--head upernet``; four feature maps, evenly spaced blocks of a
  ViT or the stages of a staged network, ``--backbone_out_indices``), every backbone weight checked present;
* or a segmentation checkpoint (any ``AutoModelForSemanticSegmentation``: Segformer, BEiT, DPT, MobileViT,
  UperNet, ... including this recipe's own output), loaded as it is; ``--ignore_mismatched_sizes`` gives it a
  new classifier for another set of classes.

Training images and masks are augmented together: resized to ``s * --image_size`` for a random scale ``s``
in [``--min_scale``, ``--max_scale``] (bilinear for the image, nearest neighbour for the mask), padded with
``--ignore_index`` where smaller, randomly cropped to ``--image_size`` and flipped left-right, as
mmsegmentation's ADE20K pipeline does; evaluation resizes both to ``--image_size``. Grayscale images are
converted to the model's number of channels. Logits are upsampled to the masks' size to score mean IoU,
mean accuracy, overall accuracy and the IoU and accuracy of every class (evaluate's ``mean_iou``, computed
here when the Hub is out of reach). The layer-wise rates come from ``LLRDTrainingArguments`` (``--layer_decay``
...) like every recipe; the depths are ``finetune_llrd``'s (a pretrained backbone's blocks, and the new
heads at the head's depth). Writes ``all_results.json`` (``eval_mean_iou``, ``eval_iou_<class>``, ...) and
a model card with the per-depth learning rates to ``--output_dir``.
"""

import logging
import os
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from recipe_utils import (
    FolderDataArgumentsMixin,
    Refusal,
    as_image_column,
    build_trainer,
    check_media,
    decode_media,
    keep_splits_to_run,
    load_config,
    load_data_file,
    load_data_splits,
    load_metric,
    load_model,
    logits_of,
    model_card_kwargs,
    model_input_size,
    number_rows,
    prepare_run,
    read_image,
    read_json_file,
    require_rows_and_columns,
    resize_image_processor,
    take_samples,
    train_evaluate_and_report,
    treat_loss_as_batch_mean,
    undecoded,
)
from recipe_utils import ModelArguments as BaseModelArguments
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModelForSemanticSegmentation,
    EvalPrediction,
    PretrainedConfig,
    PreTrainedModel,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_BACKBONE_MAPPING_NAMES,
    MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES,
)


logger = logging.getLogger(__name__)

HEADS = ("upernet",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Modules a backbone class adds on top of the pretrained network (one norm per output feature map in ConvNeXt
# and Swin backbones): new by design, so absent from a pretrained checkpoint.
NEW_BACKBONE_MODULES = ("hidden_states_norms.",)
# Config attributes that hold the class id a model's loss ignores (UperNet; Segformer, BEiT, DPT, MobileViT).
LOSS_IGNORE_INDEX_ATTRIBUTES = ("loss_ignore_index", "semantic_loss_ignore_index")


@dataclass
class ModelArguments(BaseModelArguments):
    """Which backbone or segmentation checkpoint to fine-tune, with which head, at which input size."""

    model_name_or_path: str = field(
        metadata={
            "help": "A backbone (facebook/dinov2-small, facebook/convnext-tiny-224, "
            "microsoft/swin-tiny-patch4-window7-224, an image-classification folder) that gets a new --head, or a "
            "segmentation checkpoint "
            "(nvidia/mit-b0, nvidia/segformer-b0-finetuned-ade-512-512, openmmlab/upernet-convnext-tiny) loaded as is."
        }
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor name or path, if not the model's."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Train on N x N crops and evaluate on images resized to N x N. Default: the image processor's "
            "size. A multiple of the patch size for a ViT backbone (DINOv2: 14) or of 32 for staged backbones."
        },
    )
    head: str | None = field(
        default=None,
        metadata={
            "help": f"The new decode head put on a backbone checkpoint: {', '.join(HEADS)} (the default). A "
            "segmentation checkpoint keeps its own head, so --head is refused for it."
        },
    )
    backbone_out_indices: list[int] | None = field(
        default=None,
        metadata={
            "help": "The backbone stages whose feature maps the head takes (0 is the stem). Default: four evenly "
            "spaced blocks of a ViT (3 6 9 12 of 12, as DPT and Depth Anything take them), or every stage of a "
            "staged backbone (ConvNeXt, Swin)."
        },
    )
    decode_head_hidden_size: int = field(
        default=512, metadata={"help": "UperNet's channels (UperNetConfig.hidden_size; mmsegmentation uses 512)."}
    )
    use_auxiliary_head: bool | None = field(
        default=None,
        metadata={
            "help": "UperNet's auxiliary FCN head on the third feature map, its loss weighted 0.4. Default: on when "
            "the head takes at least three feature maps."
        },
    )

    def __post_init__(self):
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"--image_size must be a positive integer, got {self.image_size}.")
        if self.head is not None and self.head not in HEADS:
            raise ValueError(f"--head {self.head}: choose one of {', '.join(HEADS)}.")
        if self.decode_head_hidden_size < 1:
            raise ValueError(
                f"--decode_head_hidden_size must be a positive integer, got {self.decode_head_hidden_size}."
            )


@dataclass
class DataTrainingArguments(FolderDataArgumentsMixin):
    """Which images and masks to train and evaluate on, how to read them, and how to augment them."""

    examples_name = "images and masks"
    folder_layout = "folders of images/ and masks/"
    file_layout = "parquet files"

    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (scene_parse_150, ...)."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data: a .parquet file (as on the Hub), or .csv / .jsonl with image and mask paths."
        },
    )
    train_dir: str | None = field(
        default=None,
        metadata={
            "help": "A folder holding images/ and masks/, one mask per image with the same name up to the extension."
        },
    )
    validation_dir: str | None = field(default=None, metadata={"help": "Evaluation images and masks, as --train_dir."})
    image_column_name: str = field(default="image", metadata={"help": "The column holding the images."})
    label_column_name: str = field(default="label", metadata={"help": "The column holding the masks."})
    id2label_file: str | None = field(
        default=None,
        metadata={
            "help": 'A JSON file {"0": "background", "1": ...} naming every class id. Default: id2label.json beside '
            "--train_file or in --train_dir, or in the --dataset_name repository."
        },
    )
    reduce_labels: bool = field(
        default=False,
        metadata={
            "help": "Shift the mask's class ids down by one and ignore class 0 (ADE20K's 'other'), as the image "
            "processors' do_reduce_labels; --id2label_file then names the classes from 1 on as 0, 1, ..."
        },
    )
    ignore_index: int = field(
        default=255, metadata={"help": "The mask value of pixels that count in neither the loss nor the metric."}
    )
    min_scale: float = field(
        default=0.5,
        metadata={
            "help": "Training images are resized to s * --image_size, s drawn uniformly in [--min_scale, "
            "--max_scale], before the crop."
        },
    )
    max_scale: float = field(default=2.0, metadata={"help": "See --min_scale."})

    def __post_init__(self):
        if self.id2label_file is not None and not os.path.isfile(self.id2label_file):
            raise ValueError(f"--id2label_file {self.id2label_file}: no such file.")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(
                f"--min_scale {self.min_scale} and --max_scale {self.max_scale}: need 0 < --min_scale <= --max_scale."
            )
        super().__post_init__()


def image_mask_folder(folder: str) -> Dataset:
    """The images of ``folder/images`` paired with the masks of ``folder/masks`` by file name (extension aside),
    as a dataset of paths with the columns "image" and "label".

    Raises:
        ValueError: naming the missing sub-folder, or the images without a mask and the masks without an image.
    """
    stems = {}
    for sub_folder in ("images", "masks"):
        path = os.path.join(folder, sub_folder)
        if not os.path.isdir(path):
            raise Refusal(f"{folder} has no {sub_folder}/ folder: it needs images/ and masks/, one mask per image.")
        files = sorted(name for name in os.listdir(path) if name.lower().endswith(IMAGE_SUFFIXES))
        stems[sub_folder] = {os.path.splitext(name)[0]: os.path.join(path, name) for name in files}
    unpaired = sorted(set(stems["images"]) ^ set(stems["masks"]))
    if unpaired:
        raise Refusal(
            f"{folder}: {len(unpaired)} images/ and masks/ files have no partner with the same name, e.g. "
            f"{unpaired[:5]}."
        )
    names = sorted(stems["images"])
    return Dataset.from_dict(
        {"image": [stems["images"][name] for name in names], "label": [stems["masks"][name] for name in names]}
    )


def load_splits(data_args, model_args, training_args) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits "train" and "eval" the run needs, with a description of where each comes from."""
    required = {"train": training_args.do_train, "eval": training_args.do_eval}
    if data_args.dataset_name is not None:
        return load_data_splits(data_args, model_args, required)
    if data_args.train_dir is not None or data_args.validation_dir is not None:
        sources = {"train": data_args.train_dir, "eval": data_args.validation_dir}
        arguments = {"train": "--train_dir", "eval": "--validation_dir"}
        read = image_mask_folder
    else:
        sources = {"train": data_args.train_file, "eval": data_args.validation_file}
        arguments = {"train": "--train_file", "eval": "--validation_file"}
        read = partial(load_data_file, cache_dir=model_args.cache_dir)
    stages = {"train": "--do_train", "eval": "--do_eval"}
    splits = {}
    for split, needed in required.items():
        if needed and sources[split] is None:
            raise Refusal(f"{stages[split]} needs {arguments[split]}.")
        if needed:
            splits[split] = read(sources[split])
    return splits, {split: sources[split] for split in splits}


def load_id2label(data_args, model_args) -> tuple[dict[int, str], str]:
    """The class names by class id, and the file they come from.

    Raises:
        ValueError: if no file names the classes, or if its ids are not 0, 1, ..., N - 1.
    """
    path = data_args.id2label_file
    if path is None and (data_args.train_file or data_args.train_dir):
        beside = data_args.train_dir or os.path.dirname(os.path.abspath(data_args.train_file))
        if os.path.isfile(os.path.join(beside, "id2label.json")):
            path = os.path.join(beside, "id2label.json")
    if path is None and data_args.dataset_name is not None:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(
                data_args.dataset_name,
                "id2label.json",
                repo_type="dataset",
                token=model_args.token,
                cache_dir=model_args.cache_dir,
            )
        except Exception as error:
            raise Refusal(
                f"Could not fetch id2label.json from the dataset {data_args.dataset_name} ({type(error).__name__}): "
                "give --id2label_file."
            ) from error
    if path is None:
        raise Refusal(
            'Which classes do the masks hold? Give --id2label_file, a JSON file {"0": "background", "1": ...}, or put '
            "id2label.json beside the training data."
        )
    raw = read_json_file(path)
    try:
        id2label = {int(key): str(value) for key, value in raw.items()}
    except (AttributeError, ValueError) as error:
        raise Refusal(f'{path} must map class ids to names, as {{"0": "background", "1": ...}}.') from error
    if sorted(id2label) != list(range(len(id2label))):
        raise Refusal(f"{path}: the class ids must be 0, 1, ..., N - 1; they are {sorted(id2label)}.")
    return id2label, path


def check_image_and_mask_columns(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> None:
    """Checks that every split holds rows and both columns, and decodes both as images (paths are cast)."""
    columns = {data_args.image_column_name: "--image_column_name", data_args.label_column_name: "--label_column_name"}
    require_rows_and_columns(splits, sources, columns)
    for split, dataset in splits.items():
        for column, flag in columns.items():
            dataset = as_image_column(dataset, column, sources[split], flag)
        splits[split] = dataset


def checked_mask(image_size, mask: Image.Image, num_labels: int, data_args, decode: bool = True) -> np.ndarray | None:
    """The class ids of an image's mask (reduced with ``--reduce_labels``), after checking its mode and size and,
    with ``decode``, its class ids (:func:`check_class_ids`); None without ``decode``.

    Raises:
        ValueError: for a colour mask (its pixels are not class ids), or one of another size than its image.
    """
    if mask.mode not in ("L", "P", "I", "I;16", "1"):
        raise ValueError(
            f"the mask is an image of mode {mask.mode}; masks hold one class id per pixel (8- or 16-bit grayscale, "
            "or palette PNG). Check --label_column_name"
        )
    if tuple(image_size) != mask.size:
        raise ValueError(
            f"the image is {image_size[0]}x{image_size[1]} but its mask is {mask.size[0]}x{mask.size[1]}: each mask "
            "must label every pixel of its image"
        )
    if not decode:
        return None
    ids = np.asarray(mask, dtype=np.int64)
    if data_args.reduce_labels:
        ids = reduce_labels(ids, data_args.ignore_index)
    check_class_ids(ids, num_labels, data_args.ignore_index)
    return ids


def check_pair(media: dict, decoded: bool, *, data_args, num_labels: int) -> list[tuple[str, str]]:
    """:func:`check_media`'s check of one image and its mask (:func:`checked_mask`): (column, problem) pairs."""
    image = media[data_args.image_column_name]
    try:
        checked_mask(image.size, media[data_args.label_column_name], num_labels, data_args, decoded)
    except ValueError as error:
        return [(data_args.label_column_name, str(error))]
    return []


def reduce_labels(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    """Class 0 becomes ``ignore_index`` and every other class id drops by one (the image processors'
    ``do_reduce_labels``, evaluate's ``reduce_labels``); pixels at ``ignore_index`` stay ignored."""
    reduced = mask - 1
    reduced[(mask == 0) | (mask == ignore_index)] = ignore_index
    return reduced


def check_class_ids(mask: np.ndarray, num_labels: int, ignore_index: int) -> None:
    """Raises a ValueError if ``mask`` holds an id that is neither a class nor ``ignore_index``."""
    values = np.unique(mask)
    unknown = values[(values != ignore_index) & ((values < 0) | (values >= num_labels))]
    if unknown.size:
        raise ValueError(
            f"the mask holds class ids {unknown[:10].tolist()}, but there are {num_labels} classes (ids 0 to "
            f"{num_labels - 1}) and --ignore_index is {ignore_index}. Check --id2label_file, --reduce_labels and "
            "--label_column_name"
        )


def random_scale_crop_flip(
    image: Image.Image, mask: np.ndarray, size: int, scale_range: tuple[float, float], ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training augmentation, applied to an image and its mask together.

    Both are resized to ``s * size`` square for ``s`` uniform in ``scale_range`` (the image bilinearly, the mask
    by nearest neighbour, so its values stay class ids), padded at the bottom and right to ``size`` where
    smaller (image with 0, mask with ``ignore_index``), cropped to ``size`` x ``size`` at a random place and
    flipped left-right with probability 1/2. Draws from torch's random generator, which the Trainer seeds.

    Returns:
        The image as a (size, size, channels) uint8 array and the mask as a (size, size) int64 array.
    """
    scale = torch.empty(1).uniform_(*scale_range).item()
    scaled = max(1, round(size * scale))
    image = np.asarray(image.resize((scaled, scaled), Image.Resampling.BILINEAR))
    if image.ndim == 2:
        image = image[:, :, None]
    mask_image = Image.fromarray(mask.astype(np.int32), mode="I")
    mask = np.asarray(mask_image.resize((scaled, scaled), Image.Resampling.NEAREST), dtype=np.int64)
    if scaled < size:
        pad = ((0, size - scaled), (0, size - scaled))
        image = np.pad(image, (*pad, (0, 0)), constant_values=0)
        mask = np.pad(mask, pad, constant_values=ignore_index)
    top = int(torch.randint(0, image.shape[0] - size + 1, (1,)).item())
    left = int(torch.randint(0, image.shape[1] - size + 1, (1,)).item())
    image, mask = image[top : top + size, left : left + size], mask[top : top + size, left : left + size]
    if torch.rand(1).item() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def resize_pair(image: Image.Image, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation resize: image (bilinear) and mask (nearest neighbour) to ``size`` x ``size``."""
    image = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    if image.ndim == 2:
        image = image[:, :, None]
    mask_image = Image.fromarray(mask.astype(np.int32), mode="I")
    return image, np.asarray(mask_image.resize((size, size), Image.Resampling.NEAREST), dtype=np.int64)


class SegmentationTransform:
    """Turns a batch of images and masks into ``pixel_values`` and ``labels``: class ids checked (and reduced
    with ``--reduce_labels``), image converted to the model's channels, augmented together for training
    (:func:`random_scale_crop_flip`) or resized for evaluation (:func:`resize_pair`), then rescaled and
    normalized by the image processor (its resize and crop switched off)."""

    def __init__(self, image_processor, size: int, num_labels: int, data_args, num_channels: int, train: bool):
        self.image_processor, self.data_args = image_processor, data_args
        self.size, self.num_labels, self.train = size, num_labels, train
        self.image_mode = "RGB" if num_channels == 3 else "L"
        self.scale_range, self.ignore_index = (data_args.min_scale, data_args.max_scale), data_args.ignore_index
        self.processor_options = {"do_resize": False, "return_tensors": "pt"}
        for option in ("do_center_crop", "do_reduce_labels", "do_pad"):  # the transform does them
            if hasattr(image_processor, option):
                self.processor_options[option] = False

    def pair(self, image: Image.Image, mask: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """One image and its mask, checked (:func:`checked_mask`), converted and augmented or resized (not yet
        normalized)."""
        mask = checked_mask(image.size, mask, self.num_labels, self.data_args)
        image = image.convert(self.image_mode)
        if self.train:
            return random_scale_crop_flip(image, mask, self.size, self.scale_range, self.ignore_index)
        return resize_pair(image, mask, self.size)

    def __call__(self, images: list[Image.Image], masks: list[Image.Image]) -> dict[str, torch.Tensor]:
        pairs = [self.pair(image, mask) for image, mask in zip(images, masks)]
        pixel_values = self.image_processor(
            [image for image, _ in pairs], input_data_format="channels_last", **self.processor_options
        )["pixel_values"]
        return {"pixel_values": pixel_values, "labels": torch.from_numpy(np.stack([mask for _, mask in pairs]))}


def apply_transforms(
    splits, image_processor, size: int, num_labels: int, num_channels: int, data_args, training_args, sources
):
    """Replaces every split by its random subset of ``--max_*_samples`` pairs, decoded (a file that fails stops the
    run naming its row) and transformed on the fly as batches are drawn (:class:`SegmentationTransform`)."""
    columns = (data_args.image_column_name, data_args.label_column_name)
    for split, dataset in splits.items():
        transform = SegmentationTransform(image_processor, size, num_labels, data_args, num_channels, split == "train")

        def apply(batch, transform=transform):
            outputs = transform(batch[columns[0]], batch[columns[1]])
            return {"pixel_values": list(outputs["pixel_values"]), "labels": list(outputs["labels"])}

        dataset = take_samples(
            number_rows(undecoded(dataset, columns)), data_args.max_samples(split), training_args.seed
        )
        readers = dict.fromkeys(columns, read_image)
        splits[split] = dataset.with_transform(decode_media(apply, source=sources[split], readers=readers))


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([example["labels"] for example in examples]),
    }


def is_segmentation_checkpoint(config: PretrainedConfig) -> bool:
    """Whether to load the checkpoint as it is with ``AutoModelForSemanticSegmentation``: it was saved as a
    segmentation model, or its architecture has a segmentation model but no backbone class (Segformer's
    ``nvidia/mit-b0`` encoder)."""
    saved_as_segmentation = any(name.endswith("ForSemanticSegmentation") for name in config.architectures or [])
    segmentation_only = config.model_type not in MODEL_FOR_BACKBONE_MAPPING_NAMES
    return config.model_type in MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES and (
        saved_as_segmentation or segmentation_only
    )


def default_out_indices(config: PretrainedConfig) -> list[int]:
    """Four evenly spaced blocks of a ViT (3, 6, 9, 12 of 12), or every stage of a staged backbone."""
    stages = len(config.stage_names) - 1
    depths = getattr(config, "depths", None)
    if depths is not None and len(depths) == stages:  # a staged backbone (ConvNeXt, Swin, ResNet): every stage
        return list(range(1, stages + 1))
    return sorted({max(1, round(stages * quarter / 4)) for quarter in (1, 2, 3, 4)})


def set_loss_ignore_index(config: PretrainedConfig, ignore_index: int) -> None:
    """Makes the model's loss ignore ``ignore_index``.

    Raises:
        ValueError: for a config that does not say which class its loss ignores.
    """
    attributes = [name for name in LOSS_IGNORE_INDEX_ATTRIBUTES if hasattr(config, name)]
    if not attributes:
        raise ValueError(
            f"{type(config).__name__} does not say which class its loss ignores (no "
            f"{' or '.join(LOSS_IGNORE_INDEX_ATTRIBUTES)}), so --ignore_index cannot reach it."
        )
    for name in attributes:
        setattr(config, name, ignore_index)


def upernet_on_backbone(
    model_args, backbone_config: PretrainedConfig, id2label: dict[int, str], ignore_index: int
) -> UperNetForSemanticSegmentation:
    """A new ``UperNetForSemanticSegmentation`` whose backbone holds the pretrained weights of
    ``model_args.model_name_or_path``.

    Raises:
        ValueError: naming the weights the checkpoint lacks, if any backbone weight (other than the output norms
            a backbone class adds) is missing from it.
    """
    backbone_config.out_indices = model_args.backbone_out_indices or default_out_indices(backbone_config)
    use_auxiliary_head = model_args.use_auxiliary_head
    if use_auxiliary_head is None:
        use_auxiliary_head = len(backbone_config.out_indices) >= 3
    elif use_auxiliary_head and len(backbone_config.out_indices) < 3:
        raise ValueError(
            f"UperNet's auxiliary head reads the third feature map, but the head takes "
            f"{len(backbone_config.out_indices)} (stages {backbone_config.out_indices}). Give three or more "
            "--backbone_out_indices, or --use_auxiliary_head false."
        )
    config = UperNetConfig(
        backbone_config=backbone_config,
        hidden_size=model_args.decode_head_hidden_size,
        use_auxiliary_head=use_auxiliary_head,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
        loss_ignore_index=ignore_index,
    )
    model = UperNetForSemanticSegmentation(config)
    # The backbone class itself: AutoBackbone.from_pretrained asks the Hub about every path, even a local folder.
    backbone_class = AutoBackbone._model_mapping[type(backbone_config)]
    pretrained, loading_info = backbone_class.from_pretrained(
        model_args.model_name_or_path, config=backbone_config, output_loading_info=True, **model_args.hub_options()
    )
    missing = [key for key in loading_info["missing_keys"] if not key.startswith(NEW_BACKBONE_MODULES)]
    if missing:
        raise ValueError(
            f"{model_args.model_name_or_path} lacks {len(missing)} weights of its {type(pretrained).__name__}, e.g. "
            f"{sorted(missing)[:5]}: it is not a pretrained {backbone_config.model_type} checkpoint."
        )
    model.backbone.load_state_dict(pretrained.state_dict())
    logger.info(
        f"UperNet head on the pretrained {type(pretrained).__name__} of {model_args.model_name_or_path} "
        f"(feature maps of stages {backbone_config.out_indices}); new: "
        f"{sorted(loading_info['missing_keys']) or 'nothing in the backbone'}, the decode and auxiliary heads."
    )
    return model


def build_model(model_args, id2label: dict[int, str], labels_source: str, ignore_index: int) -> PreTrainedModel:
    """The segmentation model: a segmentation checkpoint as it is (with its classifier for ``id2label``), or a
    new ``--head`` on a backbone checkpoint."""
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    if is_segmentation_checkpoint(config):
        if model_args.head is not None:
            raise ValueError(
                f"{model_args.model_name_or_path} is a {config.model_type} segmentation model with its own head; "
                f"--head {model_args.head} puts a head on a backbone checkpoint. Leave --head out."
            )
        names = [id2label[index] for index in range(len(id2label))]
        config = load_config(
            model_args,
            names,
            labels_source,
            finetuning_task="semantic-segmentation",
            head_suffix="ForSemanticSegmentation",
        )
        set_loss_ignore_index(config, ignore_index)
        return load_model(AutoModelForSemanticSegmentation, model_args, config)
    if config.model_type not in MODEL_FOR_BACKBONE_MAPPING_NAMES:
        raise ValueError(
            f"{model_args.model_name_or_path} is a {config.model_type} model, which has neither a segmentation model "
            "nor a backbone class in transformers. Choose a backbone (DINOv2, ConvNeXt, Swin, BEiT, ResNet, ...) or a "
            "segmentation checkpoint (Segformer, UperNet, DPT, ...)."
        )
    model = upernet_on_backbone(model_args, config, id2label, ignore_index)
    treat_loss_as_batch_mean(model)
    return model


def upsampled_predictions(logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
    """``preprocess_logits_for_metrics``: the class of every pixel, from the logits upsampled (bilinearly) to the
    masks' size, so that evaluation keeps one integer per pixel instead of the logits of every class."""
    logits = logits_of(logits)
    upsampled = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return upsampled.argmax(dim=1)


def mean_iou(
    predictions,
    references,
    num_labels: int,
    ignore_index: int,
    nan_to_num: float | None = None,
    label_map: dict[int, int] | None = None,
    reduce_labels: bool = False,
) -> dict[str, float | np.ndarray]:
    """evaluate's ``mean_iou`` (mmsegmentation's definition), computed here: the same arguments and results.

    Per class c, summed over all images: IoU = |pred = c and label = c| / |pred = c or label = c| and accuracy =
    |pred = c and label = c| / |label = c|, over the pixels whose label is not ``ignore_index``; classes that
    appear in neither give NaN, left out of the means. ``label_map`` renames label ids first; ``reduce_labels``
    turns label 0 into 255 and lowers the others by one. Ids outside 0 .. num_labels - 1 are not counted.

    Returns:
        ``mean_iou``, ``mean_accuracy``, ``overall_accuracy`` (the share of counted pixels predicted right), and
        the arrays ``per_category_iou`` and ``per_category_accuracy``.
    """
    area_intersect = np.zeros(num_labels, dtype=np.float64)
    area_prediction, area_label = np.zeros_like(area_intersect), np.zeros_like(area_intersect)
    for prediction, label in zip(predictions, references):
        prediction, label = np.asarray(prediction), np.array(label)
        if label_map is not None:
            renamed = label.copy()
            for old_id, new_id in label_map.items():
                renamed[label == old_id] = new_id
            label = renamed
        if reduce_labels:
            label[label == 0] = 255
            label = label - 1
            label[label == 254] = 255
        counted = label != ignore_index
        prediction, label = prediction[counted], label[counted]

        def histogram(values):
            values = values[(values >= 0) & (values < num_labels)].astype(np.int64)
            return np.bincount(values, minlength=num_labels)

        area_intersect += histogram(prediction[prediction == label])
        area_prediction += histogram(prediction)
        area_label += histogram(label)
    area_union = area_prediction + area_label - area_intersect
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, accuracy = area_intersect / area_union, area_intersect / area_label
        metrics = {
            "mean_iou": np.nanmean(iou),
            "mean_accuracy": np.nanmean(accuracy),
            "overall_accuracy": area_intersect.sum() / area_label.sum(),
            "per_category_iou": iou,
            "per_category_accuracy": accuracy,
        }
    if nan_to_num is not None:
        metrics = {name: np.nan_to_num(value, nan=nan_to_num) for name, value in metrics.items()}
    return metrics


def segmentation_metrics(id2label: dict[int, str], ignore_index: int):
    """``compute_metrics``: mean IoU, mean and overall accuracy, and ``iou_<class>`` / ``accuracy_<class>`` of
    every class (NaN for a class in neither the masks nor the predictions)."""
    metric = load_metric("mean_iou", local=mean_iou)

    def compute_metrics(prediction: EvalPrediction):
        results = metric(
            predictions=prediction.predictions,
            references=prediction.label_ids,
            num_labels=len(id2label),
            ignore_index=ignore_index,
            reduce_labels=False,  # the transform has reduced them
        )
        per_class_iou, per_class_accuracy = results.pop("per_category_iou"), results.pop("per_category_accuracy")
        metrics = {name: float(value) for name, value in results.items()}
        metrics.update({f"iou_{id2label[index]}": float(value) for index, value in enumerate(per_class_iou)})
        metrics.update({f"accuracy_{id2label[index]}": float(value) for index, value in enumerate(per_class_accuracy)})
        return metrics

    return compute_metrics


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(ModelArguments, DataTrainingArguments, argv, logger)
    # The transforms read the image and mask columns, which the Trainer would otherwise drop as unknown to forward().
    training_args.remove_unused_columns = False
    splits, sources = load_splits(data_args, model_args, training_args)
    check_image_and_mask_columns(data_args, splits, sources)
    id2label, labels_source = load_id2label(data_args, model_args)
    keep_splits_to_run(splits, training_args)
    media = dict.fromkeys((data_args.image_column_name, data_args.label_column_name), "image")
    pairs = partial(check_pair, data_args=data_args, num_labels=len(id2label))
    check_media(splits, sources, media, data_args=data_args, seed=training_args.seed, check_example=pairs)

    image_processor = AutoImageProcessor.from_pretrained(
        model_args.image_processor_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    if model_args.image_size is not None:
        resize_image_processor(image_processor, model_args.image_size)
    size = model_args.image_size or min(model_input_size(image_processor))
    if hasattr(image_processor, "do_reduce_labels"):
        image_processor.do_reduce_labels = data_args.reduce_labels  # saved with the model, for inference
    model = build_model(model_args, id2label, labels_source, data_args.ignore_index)
    num_channels = getattr(getattr(model.config, "backbone_config", None) or model.config, "num_channels", 3)
    apply_transforms(splits, image_processor, size, len(id2label), num_channels, data_args, training_args, sources)

    trainer = build_trainer(
        model,
        image_processor,
        training_args,
        splits,
        data_collator=collate,
        compute_metrics=segmentation_metrics(id2label, data_args.ignore_index),
    )
    trainer.preprocess_logits_for_metrics = upsampled_predictions
    model_card = model_card_kwargs(
        model_args, data_args, tasks="image-segmentation", tags=["image-segmentation", "vision"]
    )
    train_evaluate_and_report(trainer, splits, checkpoint=checkpoint, model_card=model_card)


if __name__ == "__main__":
    main()
