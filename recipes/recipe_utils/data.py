"""The data of a run: local files and Hub splits read into datasets, the checks that they hold rows and the
columns the recipe reads, and their random subsets. Everything here takes plain values (paths, names, a cache
folder); choosing the splits from a recipe's arguments is :mod:`recipe_utils.splits`'s."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from datasets import Dataset, load_dataset

from .checks import Refusal
from .files import DATA_FILE_BUILDERS, check_data_files, data_file_builder, is_tsv
from .readers import locate_read_error, read_data_file


__all__ = [
    "DATA_FILE_BUILDERS",
    "check_data_files",
    "data_file_builder",
    "is_tsv",
    "load_data_file",
    "load_hub_splits",
    "locate_read_error",
    "require_columns",
    "require_rows",
    "require_rows_and_columns",
    "sample_positions",
    "take_samples",
]

# The recipes' name for the one reader of data files (recipe_utils.readers).
load_data_file = read_data_file


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
    cache_dir: str | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    optional: Iterable[str] = (),
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """Loads a Hub dataset and picks the splits a run needs.

    Args:
        name: the Hub dataset.
        config_name: its configuration.
        requested: split ("train", "eval", ...) -> (the Hub split, the argument that chooses it).
        cache_dir: where `datasets` caches the dataset.
        token: the Hub token.
        revision: the dataset's branch, tag or commit.
        optional: splits skipped, rather than refused, when the dataset lacks them.

    Returns:
        The splits, and a description of where each comes from.

    Raises:
        ValueError: naming the dataset's splits and the argument to set, if a split is missing.
    """
    raw = load_dataset(name, config_name, cache_dir=cache_dir, token=token, revision=revision)
    splits, sources = {}, {}
    for split, (hub_split, argument) in requested.items():
        if hub_split in raw:
            splits[split], sources[split] = raw[hub_split], f"split {hub_split!r} of {name}"
        elif split not in optional:
            raise Refusal(
                f"{name} has no split {hub_split!r}; its splits are {list(raw)}. Choose one with {argument}."
            )
    return splits, sources


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
