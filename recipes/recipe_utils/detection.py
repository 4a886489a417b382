"""Object detection: the four ways its data comes (Pascal VOC folders, COCO JSON, an image folder with
``metadata.jsonl``, a Hub dataset in transformers' detection format), the checks of its boxes before a model
loads, RF-DETR's image processor without torchvision, the predictions an evaluation keeps, and COCO's mean
average precision.

Every reader returns rows of one shape, whatever the format: ``image`` (a file path, or a decoded image for a
Hub dataset), ``image_id`` (the row's position), ``width``, ``height`` (as the annotation says; 0 where it does not)
and ``objects``: ``{"bbox": [[x, y, w, h], ...], "category": [name, ...]}``, boxes in pixels as COCO writes them
(top-left corner, width, height), classes by name. :func:`check_boxes` then names, counts, clips and drops what
needs it, and :func:`category_ids` turns the names into the ids of the training split's classes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from transformers.image_processing_utils import BatchFeature, ImageProcessingMixin

from .checks import DataError, Finding, Refusal
from .readers import read_json_file, read_text_lines


logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Images named one a line in a finding, the rest counted.
IMAGES_SHOWN = 5
# Detections per image an evaluation keeps, as COCO's evaluation counts them (maxDets 100).
DETECTIONS_PER_IMAGE = 100


# ---------------------------------------------------------------------------------------------------------------
# Readers


def read_voc(folder: str, split: str) -> list[dict[str, Any]]:
    """The images of a Pascal VOC split: ``folder/ImageSets/Main/<split>.txt`` lists image ids, each with
    ``Annotations/<id>.xml`` (``object/name`` and ``bndbox`` xmin, ymin, xmax, ymax in pixels) and
    ``JPEGImages/<id>.jpg``.

    Raises:
        Refusal: naming the split file or the annotation file that is missing or unreadable.
    """
    listing = os.path.join(folder, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(listing):
        splits = (
            sorted(
                name[:-4] for name in os.listdir(os.path.join(folder, "ImageSets", "Main")) if name.endswith(".txt")
            )
            if os.path.isdir(os.path.join(folder, "ImageSets", "Main"))
            else []
        )
        raise Refusal(
            f"{folder} has no Pascal VOC split {split!r} ({listing} is missing); "
            + (f"its splits are {splits}." if splits else "a VOC folder holds ImageSets/Main/<split>.txt.")
        )
    listed = [(number, text.split()[0]) for number, text in read_text_lines(listing) if text.strip()]
    rows = []
    for line, image_id in listed:
        annotation = os.path.join(folder, "Annotations", f"{image_id}.xml")
        try:
            root = ElementTree.parse(annotation).getroot()
        except (OSError, ElementTree.ParseError) as error:
            raise Refusal(
                f"{listing}, line {line}: the annotation of {image_id} is missing or unreadable ({annotation}: "
                f"{error}). Fix or remove the line."
            ) from error
        boxes, names = [], []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(box.findtext(key, "nan")) for key in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([xmin, ymin, xmax - xmin, ymax - ymin])
            names.append((obj.findtext("name") or "").strip())
        file_name = root.findtext("filename") or f"{image_id}.jpg"
        path = os.path.join(folder, "JPEGImages", file_name)
        if not os.path.isfile(path):
            path = os.path.join(folder, "JPEGImages", f"{image_id}.jpg")
        rows.append(
            {
                "image": path,
                "file": annotation,
                "width": int(float(root.findtext("size/width") or 0)),
                "height": int(float(root.findtext("size/height") or 0)),
                "objects": {"bbox": boxes, "category": names},
            }
        )
    return rows


def read_coco(annotation_file: str, image_folder: str | None = None) -> list[dict[str, Any]]:
    """The images of a COCO detection file (``images``, ``annotations`` with ``bbox`` [x, y, w, h] and
    ``category_id``, ``categories`` with ``name``), their files in ``image_folder`` (default: the annotation
    file's folder). Crowd annotations (``iscrowd``) are left out, as COCO's training does."""
    coco = read_json_file(annotation_file)
    if not isinstance(coco, dict):
        raise Refusal(f"{annotation_file} is not a COCO detection file: it holds a JSON {type(coco).__name__}.")
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise Refusal(
                f"{annotation_file} has no {key!r}: a COCO detection file holds images, annotations, categories."
            )
    names = {category["id"]: category["name"] for category in coco["categories"]}
    folder = image_folder or os.path.dirname(os.path.abspath(annotation_file))
    rows, by_id = [], {}
    for image in coco["images"]:
        by_id[image["id"]] = len(rows)
        rows.append(
            {
                "image": os.path.join(folder, image["file_name"]),
                "file": annotation_file,
                "width": int(image.get("width") or 0),
                "height": int(image.get("height") or 0),
                "objects": {"bbox": [], "category": []},
            }
        )
    for annotation in coco["annotations"]:
        if annotation.get("iscrowd", 0):
            continue
        if annotation["image_id"] not in by_id:
            raise Refusal(
                f"{annotation_file}: annotation {annotation.get('id')} names image {annotation['image_id']}, which images lacks."
            )
        if annotation["category_id"] not in names:
            raise Refusal(
                f"{annotation_file}: annotation {annotation.get('id')} has category_id {annotation['category_id']}, "
                f"which categories lacks."
            )
        objects = rows[by_id[annotation["image_id"]]]["objects"]
        objects["bbox"].append([float(value) for value in annotation["bbox"]])
        objects["category"].append(names[annotation["category_id"]])
    return rows


def read_image_folder(folder: str) -> list[dict[str, Any]]:
    """The images of a folder with ``metadata.jsonl`` (transformers' documented local detection format): one line
    an image, ``{"file_name": "0001.jpg", "objects": {"bbox": [[x, y, w, h], ...], "category": [...]}}``,
    categories as names or ids (ids name themselves, unless the folder holds ``id2label.json``)."""
    metadata = os.path.join(folder, "metadata.jsonl")
    if not os.path.isfile(metadata):
        raise Refusal(f"{folder} has no metadata.jsonl: an image folder names its images and their objects there.")
    id2label = {}
    if os.path.isfile(os.path.join(folder, "id2label.json")):
        id2label = {int(key): value for key, value in read_json_file(os.path.join(folder, "id2label.json")).items()}
    rows = []
    for line_number, line in read_text_lines(metadata):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            objects = entry.get("objects", {"bbox": [], "category": []})
            boxes, categories = objects["bbox"], objects["category"]
            file_name = entry["file_name"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise Refusal(
                f"{metadata}, line {line_number}: not a detection entry ({type(error).__name__}: {error}); each line "
                'is {"file_name": ..., "objects": {"bbox": [[x, y, w, h], ...], "category": [...]}}.'
            ) from error
        rows.append(
            {
                "image": os.path.join(folder, file_name),
                "file": f"{metadata}, line {line_number}",
                "width": int(entry.get("width") or 0),
                "height": int(entry.get("height") or 0),
                "objects": {
                    "bbox": [[float(value) for value in box] for box in boxes],
                    "category": [id2label.get(c, str(c)) if isinstance(c, int) else str(c) for c in categories],
                },
            }
        )
    return rows


def read_hub_split(dataset, name: str, split: str, image_column: str = "image") -> list[dict[str, Any]]:
    """The rows of a Hub split in transformers' detection format (cppe-5): ``image`` and ``objects`` with
    ``bbox`` [x, y, w, h] and ``category`` (a ClassLabel's ids, named by its names)."""
    for column in (image_column, "objects"):
        if column not in dataset.column_names:
            raise Refusal(
                f"{name} split {split} has no column {column!r} (its columns: {dataset.column_names}); the detection "
                "format has an image column and 'objects' with 'bbox' and 'category'."
            )
    feature = dataset.features["objects"]
    category_feature = (
        feature["category"] if isinstance(feature, dict) else getattr(feature, "feature", {})["category"]
    )
    category_feature = getattr(category_feature, "feature", category_feature)
    names = getattr(category_feature, "names", None)
    rows = []
    for position, example in enumerate(dataset):
        image = example[image_column]
        objects = example["objects"]
        if isinstance(objects, list):  # a list of objects rather than a dict of lists
            objects = {"bbox": [o["bbox"] for o in objects], "category": [o["category"] for o in objects]}
        rows.append(
            {
                "image": image,
                "file": f"{name} split {split}, row {position + 1}",
                "width": getattr(image, "width", 0),
                "height": getattr(image, "height", 0),
                "objects": {
                    "bbox": [[float(value) for value in box] for box in objects["bbox"]],
                    "category": [names[c] if names else str(c) for c in objects["category"]],
                },
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Checks


@dataclass
class BoxReport:
    """What :func:`check_boxes` found and did in one split: counts, and the files of each kind of finding."""

    clipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    without_boxes: list[str] = field(default_factory=list)

    def lines(self, source: str) -> list[str]:
        """The warnings of the split: what was clipped and dropped, naming the images, and the images without boxes."""
        lines = []
        for items, what in (
            (self.clipped, "reaching outside its image, clipped to it"),
            (self.dropped, "of zero or negative width or height, dropped"),
        ):
            if items:
                shown = ", ".join(items[:IMAGES_SHOWN])
                if len(items) > IMAGES_SHOWN:
                    shown += f", ... ({len(items)} in all)"
                lines.append(f"{source}: {len(items)} box{'es' if len(items) > 1 else ''} {what}: {shown}.")
        if self.without_boxes:
            count = len(self.without_boxes)
            lines.append(
                f"{source}: {count} image{'s' if count > 1 else ''} without boxes (kept: background to learn)."
            )
        return lines


def read_size(path_or_image) -> tuple[int, int]:
    """(width, height) of an image file, read from its header, or of a decoded image."""
    if isinstance(path_or_image, Image.Image):
        return path_or_image.size
    with Image.open(path_or_image) as image:
        return image.size


def check_boxes(
    rows: list[dict[str, Any]], source: str, *, clip_boxes: bool = True, read_sizes: bool = True
) -> tuple[list[dict[str, Any]], BoxReport]:
    """Checks every image and box of a split before the model loads, and returns the rows to use.

    * an image that is missing or unreadable: refused, naming the file and where it is listed;
    * a box with a coordinate that is not a number: refused, naming the file;
    * a box that reaches outside its image: clipped to it and counted (``clip_boxes``), or refused;
    * a box of zero or negative width or height (after clipping): dropped and counted, naming its image;
    * an image without boxes: counted (kept).

    Args:
        rows: a reader's rows.
        source: the folder, file or Hub split, for messages.
        clip_boxes: clip boxes to their image (as RF-DETR's and DETR's processors do) rather than refuse them.
        read_sizes: read every image's size from its file (its header: fast), rather than trust the annotation.

    Returns:
        The rows with clipped boxes and without the dropped ones, and the report.

    Raises:
        DataError: one line per image that is missing or unreadable, box that is not a number, or (without
            ``clip_boxes``) box outside its image.
    """
    findings, report, checked = [], BoxReport(), []
    for row in rows:
        label = row["image"] if isinstance(row["image"], str) else row["file"]
        try:
            width, height = (
                read_size(row["image"]) if read_sizes or not row["width"] else (row["width"], row["height"])
            )
        except (OSError, ValueError) as error:
            reason = (
                "is missing"
                if isinstance(row["image"], str) and not os.path.exists(row["image"])
                else "cannot be read"
            )
            findings.append(
                Finding(
                    source, None, None, f"the image {label} listed in {row['file']} {reason} ({type(error).__name__})"
                )
            )
            continue
        boxes, categories, kept = row["objects"]["bbox"], row["objects"]["category"], ([], [])
        for box, category in zip(boxes, categories):
            x, y, w, h = box
            if not all(np.isfinite(value) for value in box):
                findings.append(
                    Finding(source, None, None, f"{row['file']}: a {category} box is not four numbers: {box}")
                )
                continue
            x0, y0, x1, y1 = x, y, x + w, y + h
            cx0, cy0, cx1, cy1 = (
                min(max(x0, 0), width),
                min(max(y0, 0), height),
                min(max(x1, 0), width),
                min(max(y1, 0), height),
            )
            if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1) and w > 0 and h > 0:
                if not clip_boxes:
                    findings.append(
                        Finding(
                            source,
                            None,
                            None,
                            f"{row['file']}: a {category} box {box} reaches outside the {width}x{height} image",
                        )
                    )
                    continue
                report.clipped.append(f"{label} ({category} {box})")
            if cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
                report.dropped.append(f"{label} ({category} {box})")
                continue
            kept[0].append([cx0, cy0, cx1 - cx0, cy1 - cy0])
            kept[1].append(category)
        if not kept[0]:
            report.without_boxes.append(label)
        checked.append({**row, "width": width, "height": height, "objects": {"bbox": kept[0], "category": kept[1]}})
    if findings:
        advice = (
            "Fix the listed files or remove their lines"
            + ("" if clip_boxes else "; or pass --clip_boxes true to clip boxes to their images")
            + "."
        )
        raise DataError(findings, advice)
    for line in report.lines(source):
        logger.warning(line)
    return checked, report


def training_classes(rows: list[dict[str, Any]], source: str) -> list[str]:
    """The classes of the training split, sorted by name: the model's labels."""
    names = sorted({name for row in rows for name in row["objects"]["category"]})
    if not names:
        raise Refusal(f"{source} has no box: a detection model needs boxes to train on.")
    return names


def check_classes_known(rows: list[dict[str, Any]], source: str, names: Sequence[str], names_source: str) -> None:
    """Refuses boxes of a class the model does not have (one training never has), naming the class and files.

    Raises:
        DataError: one line per class, with the first file that has it.
    """
    known, unknown = set(names), {}
    for row in rows:
        for name in row["objects"]["category"]:
            if name not in known and name not in unknown:
                unknown[name] = row["file"]
    if unknown:
        findings = [
            Finding(source, None, None, f"{file} has a box of class {name!r}, which {names_source} never has")
            for name, file in unknown.items()
        ]
        raise DataError(
            findings, f"The model's classes are {list(names)}: fix the labels, or train on data with every class."
        )


def as_dataset(rows: list[dict[str, Any]], label2id: dict[str, int]) -> Dataset:
    """The checked rows as a dataset: ``image``, ``image_id`` (the position), ``width``, ``height`` and
    ``objects`` with ``bbox`` and ``category`` ids."""
    return Dataset.from_list(
        [
            {
                "image": row["image"],
                "image_id": position,
                "width": row["width"],
                "height": row["height"],
                "objects": {
                    "bbox": row["objects"]["bbox"],
                    "category": [label2id[name] for name in row["objects"]["category"]],
                },
            }
            for position, row in enumerate(rows)
        ]
    )


# ---------------------------------------------------------------------------------------------------------------
# RF-DETR's image processor without torchvision


def size_with_aspect_ratio(image_size: tuple[int, int], shortest: int, longest: int | None) -> tuple[int, int]:
    """transformers' ``get_size_with_aspect_ratio``: (height, width) whose shorter side is ``shortest`` unless the
    longer would pass ``longest``."""
    height, width = image_size
    if longest is not None:
        small, large = float(min(height, width)), float(max(height, width))
        if large / small * shortest > longest:
            shortest = int(round(longest * small / large))
    if (height <= width and height == shortest) or (width <= height and width == shortest):
        return height, width
    if width < height:
        return int(shortest * height / width), shortest
    return shortest, int(shortest * width / height)


class RfDetrImageProcessorTorch(ImageProcessingMixin):
    """``RfDetrImageProcessor`` in plain torch, for machines without torchvision (which it needs, and which has no
    PIL twin). The same settings, steps and outputs: rescale to [0, 1], resize (bilinear, no antialiasing: torch's
    ``interpolate``, as torchvision's ``resize`` of a float tensor is), normalize with ImageNet's mean and std,
    pad at the bottom and right to the batch's largest image with a ``pixel_mask``; COCO annotations become
    normalized (center x, center y, width, height) boxes. Saved, it is written as ``RfDetrImageProcessor``, so
    that transformers loads it as such where torchvision is installed.

    Args:
        size: ``{"height": H, "width": W}``, or ``{"shortest_edge": S, "longest_edge": L}`` (the default 800 / 1333).
        image_mean, image_std, do_resize, do_rescale, rescale_factor, do_normalize, do_pad,
        do_convert_annotations: as ``RfDetrImageProcessor``'s.
    """

    model_input_names = ["pixel_values", "pixel_mask"]

    def __init__(
        self,
        size: dict[str, int] | None = None,
        image_mean: Sequence[float] = (0.485, 0.456, 0.406),
        image_std: Sequence[float] = (0.229, 0.224, 0.225),
        do_resize: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        do_pad: bool = True,
        do_convert_annotations: bool = True,
        **kwargs,
    ):
        for key in ("image_processor_type", "processor_class", "resample", "format", "default_to_square"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.size = dict(size or {"shortest_edge": 800, "longest_edge": 1333})
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.do_resize, self.do_rescale, self.rescale_factor = do_resize, do_rescale, rescale_factor
        self.do_normalize, self.do_pad, self.do_convert_annotations = do_normalize, do_pad, do_convert_annotations
        self.resample = 2  # bilinear, as RfDetrImageProcessor
        self.format = "coco_detection"

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["image_processor_type"] = "RfDetrImageProcessor"
        return output

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if "height" in self.size and "width" in self.size:
            return self.size["height"], self.size["width"]
        return size_with_aspect_ratio((height, width), self.size["shortest_edge"], self.size.get("longest_edge"))

    def _tensor(self, image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.array(image))  # a copy: PIL arrays are read-only
            if image.ndim == 2:
                image = image[:, :, None].expand(-1, -1, 3)
            image = image.permute(2, 0, 1)
        return image.float()

    def __call__(self, images, annotations=None, return_tensors="pt", **kwargs) -> BatchFeature:
        return self.preprocess(images, annotations=annotations, **kwargs)

    def preprocess(self, images, annotations: list[dict] | dict | None = None, **kwargs) -> BatchFeature:
        """``RfDetrImageProcessor.preprocess`` of images (PIL, HWC uint8 arrays or CHW tensors) and their COCO
        detection annotations (``{"image_id": ..., "annotations": [{"bbox", "category_id", "area"}, ...]}``)."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        if isinstance(annotations, dict):
            annotations = [annotations]
        tensors = [self._tensor(image) for image in images]
        targets = []
        processed = []
        for index, image in enumerate(tensors):
            height, width = image.shape[-2:]
            target = None
            if annotations is not None:
                target = coco_target(annotations[index], height, width)
            if self.do_rescale:
                image = image * self.rescale_factor
            if self.do_resize:
                new_height, new_width = self.output_size(height, width)
                image = torch.nn.functional.interpolate(
                    image[None], size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=False
                )[0]
                if target is not None:
                    ratio_h, ratio_w = new_height / height, new_width / width
                    target["boxes"] = target["boxes"] * torch.tensor([ratio_w, ratio_h, ratio_w, ratio_h])
                    target["area"] = target["area"] * (ratio_w * ratio_h)
                    target["size"] = torch.tensor([new_height, new_width])
            if self.do_normalize:
                mean = torch.tensor(self.image_mean)[:, None, None]
                std = torch.tensor(self.image_std)[:, None, None]
                image = (image - mean) / std
            if target is not None and self.do_convert_annotations:
                h, w = image.shape[-2:]
                target["boxes"] = corners_to_center(target["boxes"]) / torch.tensor([w, h, w, h], dtype=torch.float32)
            processed.append(image)
            targets.append(target)
        data = {}
        if self.do_pad:
            max_h, max_w = max(t.shape[-2] for t in processed), max(t.shape[-1] for t in processed)
            masks = []
            for index, image in enumerate(processed):
                h, w = image.shape[-2:]
                padded = torch.zeros((image.shape[0], max_h, max_w), dtype=image.dtype)
                padded[:, :h, :w] = image
                mask = torch.zeros((max_h, max_w), dtype=torch.int64)
                mask[:h, :w] = 1
                processed[index] = padded
                masks.append(mask)
                target = targets[index]
                if target is not None and (h, w) != (max_h, max_w):
                    target["size"] = torch.tensor([max_h, max_w])
                    if self.do_convert_annotations:
                        target["boxes"] = target["boxes"] * torch.tensor([w / max_w, h / max_h, w / max_w, h / max_h])
            data["pixel_mask"] = torch.stack(masks)
        data["pixel_values"] = torch.stack(processed)
        features = BatchFeature(data)
        if annotations is not None:
            features["labels"] = targets
        return features

    def post_process_object_detection(
        self, outputs, threshold: float = 0.5, target_sizes=None, top_k: int | None = None
    ):
        """``RfDetrImageProcessor.post_process_object_detection``: the ``top_k`` (default: the number of queries)
        best (query, class) pairs by sigmoid score above ``threshold``, boxes in (x0, y0, x1, y1) pixels of
        ``target_sizes``."""
        return sigmoid_top_k_detections(outputs, threshold=threshold, target_sizes=target_sizes, top_k=top_k)


def corners_to_center(boxes: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def center_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def coco_target(annotation: dict, height: int, width: int) -> dict[str, torch.Tensor]:
    """``prepare_coco_detection_annotation`` of DETR-family processors: corner boxes clipped to the image, empty
    ones dropped, with the class labels, areas and the original size."""
    objects = [obj for obj in annotation["annotations"] if not obj.get("iscrowd", 0)]
    boxes = torch.as_tensor([obj["bbox"] for obj in objects], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] = boxes[:, 0::2].clip(min=0, max=width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(min=0, max=height)
    keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
    classes = torch.as_tensor([obj["category_id"] for obj in objects], dtype=torch.int64)
    area = torch.as_tensor([obj["area"] for obj in objects], dtype=torch.float32)
    return {
        "image_id": torch.as_tensor([annotation["image_id"]], dtype=torch.int64),
        "class_labels": classes[keep],
        "boxes": boxes[keep],
        "area": area[keep],
        "iscrowd": torch.zeros_like(classes)[keep],
        "orig_size": torch.as_tensor([int(height), int(width)], dtype=torch.int64),
    }


def sigmoid_top_k_detections(
    outputs, threshold: float = 0.5, target_sizes=None, top_k: int | None = None
) -> list[dict]:
    """RF-DETR's (and Deformable DETR's) post-processing: the ``top_k`` best (query, class) pairs by sigmoid score."""
    logits, pred_boxes = outputs.logits, outputs.pred_boxes
    if target_sizes is not None and len(logits) != len(target_sizes):
        raise ValueError("Make sure that you pass in as many target sizes as the batch dimension of the logits")
    top_k = top_k if top_k is not None else logits.shape[1]
    prob = logits.sigmoid()
    batch_size, num_queries, num_classes = prob.shape
    scores, indexes = torch.topk(prob.view(batch_size, -1), min(top_k, num_queries * num_classes), dim=1)
    queries, labels = indexes // num_classes, indexes % num_classes
    boxes = torch.gather(center_to_corners(pred_boxes), 1, queries.unsqueeze(-1).repeat(1, 1, 4))
    if target_sizes is not None:
        if isinstance(target_sizes, list):
            img_h = torch.tensor([size[0] for size in target_sizes], device=boxes.device)
            img_w = torch.tensor([size[1] for size in target_sizes], device=boxes.device)
        else:
            img_h, img_w = target_sizes.to(boxes.device).unbind(1)
        boxes = boxes * torch.stack([img_w, img_h, img_w, img_h], dim=1).to(boxes.device)[:, None, :]
    return [
        {"scores": score[score > threshold], "labels": label[score > threshold], "boxes": box[score > threshold]}
        for score, label, box in zip(scores, labels, boxes)
    ]


def softmax_detections(outputs, target_sizes) -> list[dict]:
    """DETR's post-processing (a softmax over the classes and "no object"): each query's best class and score."""
    prob = torch.nn.functional.softmax(outputs.logits, -1)
    scores, labels = prob[..., :-1].max(-1)
    boxes = center_to_corners(outputs.pred_boxes)
    img_h, img_w = target_sizes.to(boxes.device).unbind(1)
    boxes = boxes * torch.stack([img_w, img_h, img_w, img_h], dim=1)[:, None, :]
    return [{"scores": s, "labels": label, "boxes": b} for s, label, b in zip(scores, labels, boxes)]


def uses_softmax_classes(model) -> bool:
    """Whether the model scores classes with a softmax over them and "no object" (DETR, YOLOS: one more logit than
    classes) rather than a sigmoid per class (RF-DETR, LW-DETR, Deformable / Conditional DETR, RT-DETR, D-FINE)."""
    return getattr(model.config, "model_type", "") in ("detr", "yolos", "table-transformer", "maskformer")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


def detections_tensor(model, outputs, labels: list[dict], top_k: int = DETECTIONS_PER_IMAGE) -> torch.Tensor:
    """The ``top_k`` best detections of every image as one fixed-shape tensor (batch, top_k, 7): image id, x0, y0,
    x1, y1 in the original image's pixels, score, class; rows past an image's detections hold score -1. Fixed
    shapes let the Trainer gather them across processes as it gathers logits."""
    sizes = torch.stack([label["orig_size"] for label in labels]).to(outputs.logits.device)
    if uses_softmax_classes(model):
        detections = softmax_detections(outputs, sizes)
    else:
        detections = sigmoid_top_k_detections(outputs, threshold=-1.0, target_sizes=sizes, top_k=top_k)
    rows = torch.full((len(labels), top_k, 7), -1.0)
    for index, (label, found) in enumerate(zip(labels, detections)):
        order = found["scores"].argsort(descending=True)[:top_k]
        count = len(order)
        rows[index, :, 0] = float(label["image_id"].reshape(-1)[0])
        rows[index, :count, 1:5] = found["boxes"][order].float().cpu()
        rows[index, :count, 5] = found["scores"][order].float().cpu()
        rows[index, :count, 6] = found["labels"][order].float().cpu()
    return rows


def mean_average_precision(
    detections: np.ndarray, references: Dataset | list[dict], id2label: dict[int, str]
) -> dict[str, float]:
    """COCO's mean average precision (pycocotools, the evaluator torchmetrics' ``MeanAveragePrecision`` wraps) of
    detections against the references' boxes.

    Args:
        detections: (images, top_k, 7) rows of :func:`detections_tensor` (score -1: none).
        references: the evaluated rows (``image_id``, ``width``, ``height``, ``objects``), boxes [x, y, w, h].
        id2label: the class names by id.

    Returns:
        ``map`` (AP at IoU 0.50:0.95), ``map_50``, ``map_75``, ``map_small`` / ``medium`` / ``large``, ``mar_100``,
        and ``map_<class>`` for every class (-1 for a class without boxes in the references, as COCO and
        torchmetrics write it).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations = [], []
    for row in references:
        images.append({"id": int(row["image_id"]), "width": row["width"], "height": row["height"]})
        for box, category in zip(row["objects"]["bbox"], row["objects"]["category"]):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(row["image_id"]),
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "category_id": int(category),
                    "iscrowd": 0,
                }
            )
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": index, "name": name} for index, name in id2label.items()],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    evaluated = {image["id"] for image in images}
    results, seen = [], set()
    for image_rows in detections.reshape(-1, detections.shape[-2], 7):
        image_id = int(image_rows[0, 0])
        if image_id not in evaluated or image_id in seen:  # a row the Trainer repeated to even out the batches
            continue
        seen.add(image_id)
        for _, x0, y0, x1, y1, score, label in image_rows[image_rows[:, 5] >= 0]:
            results.append(
                {
                    "image_id": image_id,
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "score": float(score),
                    "category_id": int(label),
                }
            )
    metrics = {"map": -1.0, "map_50": -1.0, "map_75": -1.0}
    metrics.update({f"map_{name}": -1.0 for name in id2label.values()})
    if not annotations or not results:
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        found = ground_truth.loadRes(results)
        evaluation = COCOeval(ground_truth, found, "bbox")
        evaluation.params.imgIds = sorted(evaluated)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    metrics = {
        "map": stats[0],
        "map_50": stats[1],
        "map_75": stats[2],
        "map_small": stats[3],
        "map_medium": stats[4],
        "map_large": stats[5],
        "mar_100": stats[8],
    }
    precision = evaluation.eval["precision"]  # IoU thresholds x recall x classes x areas x max detections
    for position, category in enumerate(evaluation.params.catIds):
        values = precision[:, :, position, 0, -1]
        values = values[values > -1]
        metrics[f"map_{id2label[category]}"] = float(values.mean()) if values.size else -1.0
    return {name: float(value) for name, value in metrics.items()}


def detection_metrics(references: Dataset, id2label: dict[int, str]) -> Callable:
    """``compute_metrics``: :func:`mean_average_precision` of the gathered detections against ``references``."""

    def compute_metrics(prediction) -> dict[str, float]:
        predictions = prediction.predictions
        if isinstance(predictions, (list, tuple)):
            predictions = np.concatenate([np.asarray(p) for p in predictions])
        return mean_average_precision(np.asarray(predictions), references, id2label)

    return compute_metrics
