"""The kinds of data file the recipes read, told by their suffix, and the checks of a path before anything is
read. A leaf: the argument dataclasses (``arguments``) and the readers (``readers``, ``data``, ``media``) both
import it, and it imports neither."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .checks import Refusal


# Suffix -> `datasets` builder. TSV is read by the csv builder with a tab delimiter and no quote handling.
DATA_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")

# Up to this many files a split, --media_check auto decodes every one before training; beyond, it reads headers.
MEDIA_DECODE_LIMIT = 10_000
MEDIA_CHECKS = ("auto", "decode", "header")


def without_compression(path: str) -> str:
    """``path`` in lower case, without a compression suffix (``.gz``, ``.bz2``, ``.xz``, ``.zst``)."""
    name = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def data_file_builder(path: str) -> str:
    """The `datasets` builder that reads ``path`` ("csv", "json" or "parquet"), from its suffix.

    Raises:
        Refusal: for another suffix.
    """
    extension = os.path.splitext(without_compression(path))[1]
    if extension not in DATA_FILE_BUILDERS:
        raise Refusal(
            f"{path}: unsupported file type {extension!r}. Use one of {', '.join(DATA_FILE_BUILDERS)} "
            "(optionally compressed with .gz, .bz2, .xz or .zst)."
        )
    return DATA_FILE_BUILDERS[extension]


def is_tsv(path: str) -> bool:
    """Whether ``path`` is a TSV file (read with a tab delimiter), compressed or not."""
    return without_compression(path).endswith(".tsv")


def check_data_files(files: dict[str, str | None], column_names: Sequence[str] | None = None) -> None:
    """Checks, before anything is loaded, that every given data file exists and has a supported type.

    Args:
        files: argument name (``"train_file"``) -> path or None.
        column_names: the column names given for headerless CSV / TSV files, if any.

    Raises:
        Refusal: naming the argument and the file.
    """
    for argument, path in files.items():
        if path is None:
            continue
        if not os.path.isfile(path):
            raise Refusal(f"--{argument} {path}: no such file.")
        builder = data_file_builder(path)
        if column_names and builder != "csv":
            raise Refusal(
                f"--column_names names the columns of headerless CSV / TSV files; --{argument} {path} is not one."
            )
