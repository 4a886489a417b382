"""Images, for image classification and semantic segmentation: a column decoded as images, and the input size of
the model's image processor (read, or changed)."""

from __future__ import annotations

import datasets
from datasets import Dataset

from .checks import Refusal


def as_image_column(dataset: Dataset, column: str, source: str, flag: str = "--image_column") -> Dataset:
    """``dataset`` with ``column`` decoded as images (a column of image paths is cast to images); ``flag`` is
    the recipe's option that names the column, for the message. Whether every image can be read is
    :func:`check_media`'s to say, naming the rows that cannot.

    Raises:
        ValueError: naming the column and ``source`` if it holds neither images nor paths.
    """
    feature = dataset.features[column]
    if not isinstance(feature, datasets.Image):
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise Refusal(
                f"Column {column!r} of {source} holds {feature}, not images or image paths. Set {flag} to "
                f"the column of images; the columns are {dataset.column_names}."
            )
        dataset = dataset.cast_column(column, datasets.Image())
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


def resize_image_processor(image_processor, image_size: int) -> None:
    """Makes ``image_processor`` (and so the transforms built on it) produce ``image_size`` x ``image_size``
    images. A processor that resizes and then center-crops keeps its ratio of resize to crop (DINOv2's
    256 -> 224 becomes 128 -> 112 for 112).

    Raises:
        ValueError: for timm's image processors, whose own transforms fix the input size.
    """
    if getattr(image_processor, "train_transforms", None) is not None:
        raise ValueError("--image_size does not apply to timm models: timm's own transforms set the input size.")
    height, width = model_input_size(image_processor)
    size = image_processor.size
    if getattr(image_processor, "do_center_crop", False):
        image_processor.crop_size = {"height": image_size, "width": image_size}
        if size.get("shortest_edge"):
            shortest_edge = round(size.get("shortest_edge") * image_size / min(height, width))
            image_processor.size = {"shortest_edge": shortest_edge}
        else:
            image_processor.size = {
                "height": round(size.get("height") * image_size / height),
                "width": round(size.get("width") * image_size / width),
            }
    elif size.get("height") and size.get("width"):
        image_processor.size = {"height": image_size, "width": image_size}
    else:
        image_processor.size = {"shortest_edge": image_size}
