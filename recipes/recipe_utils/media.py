"""Images and clips checked before the model loads, and decoded as batches are drawn with the row named.

:func:`check_media_files` reads every image or clip a run will use (the rows of ``--max_*_samples``) before the model
loads: a row that names no file, a file that does not exist or is empty, one that is not an image or a clip, a
clip without samples. How much it reads is ``--media_check``: ``decode`` decodes every file (a truncated JPEG
or WAV is found), ``header`` reads each file's header alone (format, size, mode, number of samples: cheap for
large sets) and decodes the first file of each split; ``auto`` (the default) decodes up to
:data:`MEDIA_DECODE_LIMIT` files a split and reads headers beyond. A recipe may check each example further
(segmentation: a mask's size, mode and class ids) with ``check_example``.

What the header check cannot see, :func:`decode_media` finds as batches are drawn: it decodes the media columns
of a batch itself and stops the run with the row, the column and the file named (a :class:`DataError`), not a
library's traceback deep in the data loader.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from typing import Any

import datasets
from datasets import Dataset

from .checks import DataCheck, DataError, Finding, Refusal
from .data import sample_positions
from .files import MEDIA_CHECKS, MEDIA_DECODE_LIMIT  # noqa: F401 - importable from here, as before


logger = logging.getLogger(__name__)

# The column of row numbers (from 1) a media split carries into its transform, to name a row that fails to decode.
ROW_COLUMN = "__row__"


class MediaProblem(Exception):
    """What is wrong with one image or clip, as a clause ("cannot be decoded: image file is truncated")."""


def media_path(value: Any) -> str | None:
    """The file an image or clip entry names (a path, or a ``{"bytes", "path"}`` dict without its bytes), if any:
    an entry that holds its bytes (parquet, the Hub) is its row, its path only a name."""
    path = (
        None
        if isinstance(value, dict) and value.get("bytes")
        else value.get("path")
        if isinstance(value, dict)
        else value
    )
    return path if isinstance(path, str) and path.strip() else None


def media_file(value: Any) -> str | io.BytesIO:
    """What to open for an image or clip entry: its bytes, else its path.

    Raises:
        MediaProblem: for an entry that names no file, a file that does not exist, or an empty one.
    """
    path = value
    if isinstance(value, dict):
        if value.get("bytes"):
            return io.BytesIO(value["bytes"])
        if value.get("bytes") == b"":
            raise MediaProblem("is empty (0 bytes)")
        path = value.get("path")
    if not isinstance(path, str) or not path.strip():
        raise MediaProblem(f"names no file ({path!r})")
    if not os.path.isfile(path):
        raise MediaProblem("no such file")
    if os.path.getsize(path) == 0:
        raise MediaProblem("is an empty file (0 bytes)")
    return path


def read_image(value: Any, decode: bool = True):
    """The PIL image of an entry: its header read, and with ``decode`` its pixels too.

    Raises:
        MediaProblem: naming what PIL could not read.
    """
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    source = media_file(value)
    try:
        image = Image.open(source)
    except Exception as error:
        raise MediaProblem(f"is not an image PIL can read ({type(error).__name__}: {error})") from error
    if decode:
        try:
            image.load()
        except Exception as error:
            image.close()
            raise MediaProblem(f"cannot be decoded ({type(error).__name__}: {error})") from error
    if 0 in image.size:
        raise MediaProblem(f"is an image of {image.size[0]}x{image.size[1]} pixels")
    return image


def read_clip_header(value: Any, decode: bool = True) -> int:
    """The number of samples of a clip: from its header, and with ``decode`` from its samples, decoded.

    Raises:
        MediaProblem: for a file soundfile cannot read, or a clip without samples.
    """
    import soundfile

    source = media_file(value)
    try:
        frames = soundfile.info(source).frames
        if decode:
            if isinstance(source, io.BytesIO):
                source.seek(0)
            frames = len(soundfile.read(source, dtype="float32", always_2d=True)[0])
    except Exception as error:
        raise MediaProblem(f"is not a clip soundfile can read ({type(error).__name__}: {error})") from error
    if frames == 0:
        raise MediaProblem("holds no samples (a clip of length 0)")
    return frames


READERS = {"image": read_image, "audio": read_clip_header}


def undecoded(dataset: Dataset, columns) -> Dataset:
    """``dataset`` with its image and audio ``columns`` left undecoded (``{"bytes", "path"}`` entries)."""
    for column in columns:
        feature = dataset.features[column]
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
        elif isinstance(feature, datasets.Audio) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    return dataset


def check_media_files(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    columns: dict[str, str],
    *,
    media_check: str,
    max_samples: dict[str, int | None],
    seed: int,
    check_example: Callable[[dict[str, Any], bool], list[tuple[str, str]]] | None = None,
) -> None:
    """Reads every image or clip of the rows each split will use (``--max_*_samples``), as ``mode`` says, and
    refuses the run naming every row whose file cannot be used.

    Args:
        splits: split -> dataset.
        sources: split -> where it comes from, for the messages.
        columns: media column -> its kind, "image" or "audio".
        media_check: "decode", "header" or "auto" (``--media_check``: see the module's docstring).
        max_samples: split -> the number of rows it uses (``--max_*_samples``), None or absent for all.
        seed: the seed of the random subsets (``--seed``).
        check_example: checks one row further, given its column -> the image (PIL) or the number of samples
            of each media column, and whether they were decoded; returns (column, problem) pairs.

    Raises:
        DataError: naming each bad row, its column and its file.
    """
    check, mode = DataCheck(splits, sources), media_check
    for split, dataset in splits.items():
        positions = sample_positions(len(dataset), max_samples.get(split), seed)
        rows = range(1, len(dataset) + 1) if positions is None else [position + 1 for position in positions]
        decode_all = mode == "decode" or (mode == "auto" and len(rows) <= MEDIA_DECODE_LIMIT)
        subset = undecoded(dataset, columns).select_columns(list(columns))
        if positions is not None:
            subset = subset.select(positions)
        examples = (
            dict(zip(batch, values)) for batch in subset.iter(batch_size=256) for values in zip(*batch.values())
        )
        for index, (row, example) in enumerate(zip(rows, examples)):
            decode = decode_all or index == 0
            opened = {}
            for column, kind in columns.items():
                try:
                    opened[column] = READERS[kind](example[column], decode)
                except MediaProblem as problem:
                    check.add(split, row, column, str(problem), path=media_path(example[column]))
            if check_example is not None and len(opened) == len(columns):
                for column, problem in check_example(opened, decode):
                    check.add(split, row, column, problem, path=media_path(example[column]))
            for item in opened.values():
                getattr(item, "close", lambda: None)()
        kinds = " and ".join(sorted({f"{kind}s" if kind == "image" else "clips" for kind in columns.values()}))
        how = (
            "decoded every one"
            if decode_all
            else f"read their headers and decoded the first (--media_check {mode}; a file that fails to decode later "
            "stops the run naming its row)"
        )
        logger.info(f"Checked the {kinds} of {len(rows)} rows of {sources[split]}: {how}.")
    check.done()


def number_rows(dataset: Dataset) -> Dataset:
    """``dataset`` with :data:`ROW_COLUMN`, its rows numbered from 1, for :func:`decode_media` to name them."""
    return dataset.add_column(ROW_COLUMN, list(range(1, len(dataset) + 1)))


def decode_media(
    apply: Callable[[dict[str, list]], dict[str, list]],
    *,
    source: str,
    readers: dict[str, Callable[[Any], Any]],
) -> Callable[[dict[str, list]], dict[str, list]]:
    """A ``with_transform`` function that decodes a batch's media ``columns`` with their ``readers`` (images
    and clips left undecoded by :func:`undecoded`), then calls ``apply`` on it. A file that fails to decode, or
    an example ``apply`` fails on, stops the run with a :class:`DataError` naming ``source``, the row
    (:func:`number_rows`) and the file.
    """

    def transform(batch: dict[str, list]) -> dict[str, list]:
        rows = batch.get(ROW_COLUMN) or [None] * len(next(iter(batch.values())))
        for column, read in readers.items():
            decoded = []
            for row, value in zip(rows, batch[column]):
                try:
                    decoded.append(read(value))
                except Exception as error:
                    problem = str(error) if isinstance(error, MediaProblem) else f"{type(error).__name__}: {error}"
                    if not problem.startswith("cannot be decoded"):
                        problem = f"cannot be decoded: {problem}"
                    finding = Finding(source, row, column, problem, media_path(value))
                    raise DataError([finding]) from error
            batch[column] = decoded
        try:
            return apply(batch)
        except Refusal:
            raise
        except Exception:
            for index, row in enumerate(rows):  # which example fails
                try:
                    apply({name: values[index : index + 1] for name, values in batch.items()})
                except Exception as failure:
                    problem = (
                        str(failure) if isinstance(failure, ValueError) else f"{type(failure).__name__}: {failure}"
                    )
                    raise DataError([Finding(source, row, None, problem)]) from failure
            raise

    return transform
