"""The one reader of the recipes' data files: CSV, TSV, JSON, JSON lines and Parquet (compressed with .gz, .bz2,
.xz or .zst, or not), the JSON annotation files beside them (``id2label.json``) and the line-based text files
(CoNLL). It takes plain values (paths, column names, a cache folder), never a recipe's arguments.

A file that cannot be parsed, is cut short, or is not UTF-8 text ends the run before anything trains, with one
line (a :class:`~recipe_utils.checks.Refusal`) naming the file and, where the format has lines, the line: the
first line that is not JSON, the line a CSV row has too many fields, the line after which a compressed file
breaks off. The readers of the libraries behind (`datasets`, pyarrow, pandas) otherwise end in a long traceback
that names neither.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import json
import lzma
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import datasets
from datasets import Dataset, load_dataset

from .checks import Refusal
from .files import COMPRESSION_SUFFIXES, data_file_builder, is_tsv


# What a reader raises on a file it cannot parse, a cut compressed stream or bytes that are not text.
_READ_ERRORS = (
    datasets.exceptions.DatasetGenerationError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    UnicodeDecodeError,
)
try:  # pyarrow comes with datasets; its errors are ValueError / OSError subclasses, but not all of them.
    import pyarrow

    _READ_ERRORS += (pyarrow.ArrowException,)
except ImportError:  # pragma: no cover
    pass


def read_data_file(path: str, column_names: Sequence[str] | None = None, cache_dir: str | None = None) -> Dataset:
    """Reads one local CSV, TSV, JSON (one array, or JSON lines) or Parquet file into a `Dataset`.

    TSV files are read as GLUE ships them: tab-separated, with no quote handling (a ``"`` is text). In CSV
    and TSV files, "NA", "null" and "nan" are text too, not missing values.

    Args:
        path: the file.
        column_names: the column names of a CSV / TSV file without a header row.
        cache_dir: where `datasets` caches what it reads.

    Raises:
        Refusal: one line naming the file (and the line, where the format has lines) if it cannot be read, is
            cut short, or holds no rows.
    """
    builder = data_file_builder(path)
    options: dict[str, Any] = {}
    if builder == "csv":
        options["keep_default_na"] = False
        if is_tsv(path):
            options.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        if column_names:
            options["column_names"] = list(column_names)
    if os.path.getsize(path) == 0:
        raise Refusal(f"{path} is empty.")
    with read_errors(path, builder):
        if builder == "parquet" and not path.lower().endswith(COMPRESSION_SUFFIXES):
            # Its footer first: `datasets` logs a line of its own before it raises on a file cut short.
            import pyarrow.parquet

            pyarrow.parquet.ParquetFile(path).close()
        try:
            dataset = load_dataset(builder, data_files={"data": path}, split="data", cache_dir=cache_dir, **options)
        except ValueError as error:
            # A file with a header and no rows gives a split `datasets` cannot select ("corresponds to no data").
            if "corresponds to no data" in str(error):
                raise Refusal(f"{path} holds no rows.") from error
            raise
    if len(dataset) == 0:
        raise Refusal(f"{path} holds no rows.")
    return dataset


def read_json_file(path: str) -> Any:
    """Reads a JSON file (an annotation file such as ``id2label.json``), compressed or not.

    Raises:
        Refusal: one line naming the file, and the line of a syntax error, of bytes that are not UTF-8 or after
            which a compressed file breaks off.
    """
    text = "\n".join(line for _, line in read_text_lines(path))
    if not text.strip():
        raise Refusal(f"{path} is empty.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as parsing:
        raise Refusal(
            f"Could not read {path} as JSON: line {parsing.lineno} is not valid JSON ({_json_problem(parsing)})."
        ) from parsing


def read_text_lines(path: str) -> Iterator[tuple[int, str]]:
    """The lines of a text file (CoNLL, JSON), compressed or not, with their numbers from 1, without line ends.

    Raises:
        Refusal: naming the file, and the line that is not UTF-8 text or after which a compressed file breaks off.
    """
    raw, broken = _decompressed(path)
    if broken is not None:
        raise Refusal(f"Could not read {path}: {_cut_short(raw, broken)}.")
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as decoding:
            raise Refusal(f"Could not read {path}: {_not_utf8(number, decoding)}.") from decoding
        yield number, text.removesuffix("\r")


@contextlib.contextmanager
def read_errors(path: str, builder: str, what: str | None = None) -> Iterator[None]:
    """Turns what a reader raises on ``path`` into one line naming the file and, where it can be found, the line.

    Args:
        path: the file (or folder) being read.
        builder: its format ("csv", "json", "parquet", "imagefolder", ...), for the message.
        what: how to call it in the message, instead of "``path`` as ``BUILDER``".
    """
    try:
        yield
    except Refusal:
        raise
    except _READ_ERRORS as error:
        cause = error.__cause__ if isinstance(error, datasets.exceptions.DatasetGenerationError) else None
        reason = locate_read_error(path, builder, cause or error)
        raise Refusal(f"Could not read {what or f'{path} as {builder.upper()}'}: {reason}") from error


# The files in which `datasets`' folder builders (imagefolder, audiofolder) find the labels and columns of a folder.
FOLDER_METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


@contextlib.contextmanager
def folder_read_errors(folders: Sequence[str], kind: str) -> Iterator[None]:
    """:func:`read_errors` for `datasets`' folder builders: an error in a folder's metadata file names that file
    and its line; any other names the folders.

    Args:
        folders: the folders being read.
        kind: what they hold ("image", "audio"), for the message.
    """
    try:
        yield
    except Refusal:
        raise
    except _READ_ERRORS as error:
        cause = error.__cause__ if isinstance(error, datasets.exceptions.DatasetGenerationError) else None
        for folder in folders:
            for name in FOLDER_METADATA_FILES:
                metadata = os.path.join(folder, name)
                if os.path.isfile(metadata):
                    builder = data_file_builder(metadata)
                    reason = locate_read_error(metadata, builder, cause or error)
                    if reason.startswith(("line ", "the compressed", "it is not")):
                        raise Refusal(f"Could not read {metadata} as {builder.upper()}: {reason}") from error
        names = " and ".join(folders)
        raise Refusal(f"Could not read the {kind} folders {names}: {_one_line(cause or error)}") from error


def locate_read_error(path: str, builder: str, error: BaseException) -> str:
    """The reader's error in one line, with the file's line where the reader does not give it: the line after
    which a compressed file breaks off, the first line that is not UTF-8 text, the first line that is not JSON in
    a JSON lines file (pyarrow counts its rows from 0, and blank lines are not rows), the line of a JSON file's
    syntax error."""
    reason = _one_line(error)
    if not os.path.isfile(path) or path.lower().endswith(".zst"):
        return reason
    raw, broken = _decompressed(path)
    if broken is not None:
        return _cut_short(raw, broken)
    if builder == "parquet":
        return f"it is not a complete Parquet file (cut short, or not Parquet): {reason}"
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as decoding:
            return _not_utf8(number, decoding)
    if builder != "json":
        return reason
    text = raw.decode("utf-8")
    if text.lstrip().startswith("["):  # one JSON array
        try:
            json.loads(text)
        except json.JSONDecodeError as parsing:
            return f"line {parsing.lineno} is not valid JSON ({_json_problem(parsing)})"
        return reason
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            if line.strip():
                json.loads(line)
        except json.JSONDecodeError as parsing:
            return f"line {number} is not a JSON object ({_json_problem(parsing)})"
    return reason


def _decompressed(path: str) -> tuple[bytes, BaseException | None]:
    """The bytes of ``path``, decompressed by its suffix as far as they go, and what broke the stream off (or
    damaged it), if anything did."""
    with open(path, "rb") as handle:
        data = handle.read()
    new = {
        ".gz": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
        ".bz2": bz2.BZ2Decompressor,
        ".xz": lzma.LZMADecompressor,
    }.get(os.path.splitext(path)[1].lower())
    if new is None:
        return data, None
    chunks = []
    while True:  # a gzip or bz2 file may hold several streams one after the other
        decompressor = new()
        try:
            chunks.append(decompressor.decompress(data))
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
            return b"".join(chunks), error
        if not decompressor.eof:
            return b"".join(chunks), EOFError("Compressed file ended before the end-of-stream marker was reached")
        data = decompressor.unused_data
        if not data:
            return b"".join(chunks), None


def _cut_short(raw: bytes, error: BaseException) -> str:
    lines = raw.count(b"\n")
    where = f"after line {lines}" if lines else "before its first line ends"
    if isinstance(error, EOFError):
        return f"the compressed data breaks off {where}: the file is cut short ({_one_line(error)})"
    return f"the compressed data is damaged {where} ({_one_line(error)})"


def _not_utf8(number: int, decoding: UnicodeDecodeError) -> str:
    return f"line {number} is not UTF-8 text ({decoding.reason} at byte {decoding.start + 1} of the line)"


def _json_problem(parsing: json.JSONDecodeError) -> str:
    # "Unterminated string starting at" ends with its own "at".
    return f"{parsing.msg}{'' if parsing.msg.endswith(' at') else ' at'} character {parsing.colno}"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
