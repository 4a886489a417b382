"""The data of a run: local files (CSV, TSV, JSON lines, parquet) and Hub splits read into the splits a run
needs, the checks that they hold rows and the columns the recipe reads, and their random subsets."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
from datasets import Dataset, load_dataset

from .checks import Refusal


if TYPE_CHECKING:  # arguments.py imports check_data_files from here
    from .arguments import DataArgumentsMixin, FolderDataArgumentsMixin, HubModelArguments, RecipeTrainingArguments


# Suffix -> `datasets` builder. TSV is read by the csv builder with a tab delimiter and no quote handling.
DATA_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


def data_file_builder(path: str) -> str:
    """The `datasets` builder that reads ``path`` ("csv", "json" or "parquet"), from its suffix.

    Raises:
        ValueError: for another suffix.
    """
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    extension = os.path.splitext(name)[1]
    if extension not in DATA_FILE_BUILDERS:
        raise Refusal(
            f"{path}: unsupported file type {extension!r}. Use one of {', '.join(DATA_FILE_BUILDERS)} "
            "(optionally compressed with .gz, .bz2, .xz or .zst)."
        )
    return DATA_FILE_BUILDERS[extension]


def is_tsv(path: str) -> bool:
    """Whether ``path`` is a TSV file (read with a tab delimiter), compressed or not."""
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith(".tsv")


def check_data_files(files: dict[str, str | None], column_names: Sequence[str] | None = None) -> None:
    """Checks, before anything is loaded, that every given data file exists and has a supported type.

    Args:
        files: argument name (``"train_file"``) -> path or None.
        column_names: the column names given for headerless CSV / TSV files, if any.

    Raises:
        ValueError: naming the argument and the file.
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


def load_data_file(path: str, column_names: Sequence[str] | None = None, cache_dir: str | None = None) -> Dataset:
    """Reads one local CSV, TSV, JSON (lines) or parquet file into a `Dataset`.

    TSV files are read as GLUE ships them: tab-separated, with no quote handling (a ``"`` is text). In CSV
    and TSV files, "NA", "null" and "nan" are text too, not missing values.

    Args:
        path: the file.
        column_names: the column names of a CSV / TSV file without a header row.
        cache_dir: where `datasets` caches what it reads.

    Raises:
        ValueError: naming the file if it cannot be read or holds no rows.
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
    try:
        dataset = load_dataset(builder, data_files={"data": path}, split="data", cache_dir=cache_dir, **options)
    except datasets.exceptions.DatasetGenerationError as error:
        cause = error.__cause__ or error
        raise Refusal(
            f"Could not read {path} as {builder.upper()}: {locate_read_error(path, builder, cause)}"
        ) from error
    except ValueError as error:
        # A file with a header and no rows gives a split `datasets` cannot select ("corresponds to no data").
        if "corresponds to no data" in str(error):
            raise Refusal(f"{path} holds no rows.") from error
        raise
    require_rows(dataset, path)
    return dataset


def locate_read_error(path: str, builder: str, error: BaseException) -> str:
    """The reader's error, with the file's line where the reader does not give it: the first line that is not
    JSON in a JSON lines file (pyarrow counts its rows from 0, and blank lines are not rows), the line of a JSON
    file's syntax error, the first line that is not UTF-8 text."""
    suffix = os.path.splitext(path)[1].lower()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
    if suffix == ".zst":
        return str(error)
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except OSError:
        return str(error)
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as decoding:
            return f"line {number} is not UTF-8 text ({decoding.reason} at byte {decoding.start + 1} of the line)"
    if builder != "json":
        return str(error)
    text = raw.decode("utf-8")
    if text.lstrip().startswith("["):  # one JSON array
        try:
            json.loads(text)
        except json.JSONDecodeError as parsing:
            return f"line {parsing.lineno} is not valid JSON ({parsing.msg} at character {parsing.colno})"
        return str(error)
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            if line.strip():
                json.loads(line)
        except json.JSONDecodeError as parsing:
            return f"line {number} is not a JSON object ({parsing.msg} at character {parsing.colno})"
    return str(error)


def require_rows(dataset: Dataset, source: str) -> None:
    """Raises a ValueError naming ``source`` if ``dataset`` is empty."""
    if len(dataset) == 0:
        raise Refusal(f"{source} holds no rows.")


def require_columns(dataset: Dataset, columns: Iterable[str | None], source: str, arguments: dict[str, str]) -> None:
    """Raises a ValueError naming the column, its argument and ``source`` if a column is missing.

    Args:
        dataset: the split.
        columns: the columns it must have (None entries are skipped).
        source: the file, or the Hub split, for the message.
        arguments: column -> the argument that chooses it (``{"sentence": "--text_column"}``), for the message.
    """
    for column in columns:
        if column is not None and column not in dataset.column_names:
            argument = arguments.get(column)
            hint = f" Set {argument} to one of them." if argument else ""
            raise Refusal(f"{source} has no column {column!r}; its columns are {dataset.column_names}.{hint}")


def load_hub_splits(
    name: str,
    config_name: str | None,
    requested: dict[str, tuple[str, str]],
    *,
    model_args: HubModelArguments,
    revision: str | None,
    optional: Iterable[str] = (),
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """Loads a Hub dataset and picks the splits a run needs.

    Args:
        name: the Hub dataset.
        config_name: its configuration.
        requested: split ("train", "eval", ...) -> (the Hub split, the argument that chooses it).
        model_args: for the cache folder and the Hub token.
        revision: the dataset's branch, tag or commit.
        optional: splits skipped, rather than refused, when the dataset lacks them.

    Returns:
        The splits, and a description of where each comes from.

    Raises:
        ValueError: naming the dataset's splits and the argument to set, if a split is missing.
    """
    raw = load_dataset(name, config_name, cache_dir=model_args.cache_dir, token=model_args.token, revision=revision)
    splits, sources = {}, {}
    for split, (hub_split, argument) in requested.items():
        if hub_split in raw:
            splits[split], sources[split] = raw[hub_split], f"split {hub_split!r} of {name}"
        elif split not in optional:
            raise Refusal(
                f"{name} has no split {hub_split!r}; its splits are {list(raw)}. Choose one with {argument}."
            )
    return splits, sources


def load_splits(
    data_args: DataArgumentsMixin, model_args: HubModelArguments, training_args: RecipeTrainingArguments
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits the run's stages need: "train" (``--do_train``), "eval" (``--do_eval``) and, for a recipe that
    predicts, "test" (``--do_predict``), from the local files or ``--dataset_name`` (:func:`load_data_splits`),
    with where each comes from. The recipes whose data needs nothing more take this one."""
    stages = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    return load_data_splits(data_args, model_args, {split: stages[split] for split in data_args.data_files()})


def load_data_splits(
    data_args: DataArgumentsMixin, model_args: HubModelArguments, required: dict[str, bool]
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits ``required`` names ("train", "eval", "test" -> whether the run needs it), from the local files
    (:func:`select_data_files`) or from ``--dataset_name`` (:func:`load_hub_splits`), with where each comes from.
    """
    if data_args.dataset_name is None:
        files = select_data_files(data_args, required, required)
        return {split: load_data_file(path, cache_dir=model_args.cache_dir) for split, path in files.items()}, files
    requested = {split: hub for split, hub in data_args.hub_splits().items() if required[split]}
    return load_hub_splits(
        data_args.dataset_name,
        data_args.dataset_config_name,
        requested,
        model_args=model_args,
        revision=data_args.dataset_revision,
    )


def load_train_and_eval_splits(
    data_args: FolderDataArgumentsMixin,
    model_args: HubModelArguments,
    *,
    hub_eval_argument: str | None,
    read_folders: Callable[[dict[str, str]], dict[str, Dataset]],
    folder_kind: str,
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The "train" split, and "eval" where there is one, from the one source the arguments give: the Hub
    dataset, the folders (``--train_dir`` / ``--validation_dir``) or the local files. A classifier takes the
    training split even when it does not train: its classes come from it.

    Args:
        data_args: the data arguments.
        model_args: for the cache folder and the Hub token.
        hub_eval_argument: the argument that chooses the Hub evaluation split, for the message if it is
            missing; None not to load one.
        read_folders: the recipe's reader of its folders: from split -> folder to split -> dataset.
        folder_kind: what to call a folder ("audio folder"), in the description of where a split comes from.

    Returns:
        The splits, and a description of where each comes from.

    Raises:
        ValueError: if there is no training split.
    """
    if data_args.dataset_name is not None:
        requested = {"train": (data_args.train_split_name, "--train_split_name")}
        if hub_eval_argument is not None:
            requested["eval"] = (data_args.validation_split_name, hub_eval_argument)
        splits, sources = load_hub_splits(
            data_args.dataset_name,
            data_args.dataset_config_name,
            requested,
            model_args=model_args,
            revision=data_args.dataset_revision,
        )
    elif data_args.train_dir is not None or data_args.validation_dir is not None:
        folders = data_args.data_folders()
        splits = read_folders(folders)
        sources = {split: f"{folder_kind} {folder}" for split, folder in folders.items()}
    else:
        files = {split: path for split, path in data_args.data_files().items() if path is not None}
        splits = {split: load_data_file(path, cache_dir=model_args.cache_dir) for split, path in files.items()}
        sources = dict(files)
    if "train" not in splits:
        raise Refusal("The classes come from the training data: give --train_dir, --train_file or a Hub train split.")
    return splits, sources


def select_data_files(
    data_args: DataArgumentsMixin, required: dict[str, bool], wanted: dict[str, bool]
) -> dict[str, str]:
    """The local files to read: split -> path, for every wanted split that has a file.

    Args:
        data_args: the data arguments, with their files.
        required: split ("train", "eval", "test") -> whether the run needs it (--do_train, --do_eval, --do_predict).
        wanted: split -> whether to read its file when there is one.

    Raises:
        ValueError: naming the argument to give, for a required split without a file.
    """
    stages = {"train": "--do_train", "eval": "--do_eval", "test": "--do_predict"}
    arguments = {"train": "--train_file", "eval": "--validation_file", "test": "--test_file"}
    files = {}
    for split, path in data_args.data_files().items():
        if required[split] and path is None:
            raise Refusal(f"{stages[split]} needs {arguments[split]}.")
        if wanted[split] and path is not None:
            files[split] = path
    return files


def require_rows_and_columns(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    columns: dict[str | None, str],
    label_columns: dict[str, str] | None = None,
) -> None:
    """Checks that every split holds rows and ``columns``, and every split but the test splits ``label_columns``.

    Args:
        splits: split -> dataset.
        sources: split -> where it comes from, for the messages.
        columns: column -> the argument that chooses it (``{"sentence": "--text_column"}``); None keys are skipped.
        label_columns: as ``columns``, for the columns that the test splits (to predict) may lack.

    Raises:
        ValueError: naming the split's source, and the column with its argument.
    """
    for split, dataset in splits.items():
        require_rows(dataset, sources[split])
        require_columns(dataset, columns, sources[split], columns)
        if label_columns and not split.startswith("test"):
            require_columns(dataset, label_columns, sources[split], label_columns)


def keep_splits_to_run(splits: dict[str, Dataset], training_args: RecipeTrainingArguments) -> None:
    """Drops the splits that were read only to check the data or find the labels: "train" without
    ``--do_train``, the evaluation splits without ``--do_eval``, the test splits without ``--do_predict``."""
    stage_of = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    for split in [split for split in splits if not stage_of[split.split("_")[0]]]:
        del splits[split]


def take_samples(dataset: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``max_samples`` rows (all rows if None or larger): files are often sorted by label.
    The rows are :func:`sample_positions`' (those of ``dataset.shuffle(seed=seed).select(range(max_samples))``)."""
    positions = sample_positions(len(dataset), max_samples, seed)
    return dataset if positions is None else dataset.select(positions)


def sample_positions(num_rows: int, max_samples: int | None, seed: int) -> list[int] | None:
    """The positions of :func:`take_samples`' rows, in its order (None for every row): the first ``max_samples``
    of the permutation ``Dataset.shuffle(seed=seed)`` draws, so that a check reads the rows a run will use."""
    if max_samples is None or max_samples >= num_rows:
        return None
    return np.random.default_rng(seed).permutation(num_rows)[:max_samples].tolist()
