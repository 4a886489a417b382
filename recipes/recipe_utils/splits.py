"""The splits of a run, chosen from a recipe's arguments: which local files, folders or Hub splits a run's stages
need, read with the plain-value readers of :mod:`recipe_utils.data` and :mod:`recipe_utils.media`, and the
splits kept for the stages that run. This module sits above both: the argument dataclasses
(:mod:`recipe_utils.arguments`) call no reader, and the readers know no argument dataclass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import Dataset

from .arguments import DataArgumentsMixin, FolderDataArgumentsMixin, HubModelArguments, RecipeTrainingArguments
from .checks import Refusal
from .data import load_data_file, load_hub_splits
from .media import check_media_files


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
    return _load_requested_hub_splits(data_args, model_args, requested)


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
        splits, sources = _load_requested_hub_splits(data_args, model_args, requested)
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


def keep_splits_to_run(splits: dict[str, Dataset], training_args: RecipeTrainingArguments) -> None:
    """Drops the splits that were read only to check the data or find the labels: "train" without
    ``--do_train``, the evaluation splits without ``--do_eval``, the test splits without ``--do_predict``."""
    stage_of = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    for split in [split for split in splits if not stage_of[split.split("_")[0]]]:
        del splits[split]


def check_media(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    columns: dict[str, str],
    *,
    data_args: FolderDataArgumentsMixin,
    seed: int,
    check_example: Callable[[dict[str, Any], bool], list[tuple[str, str]]] | None = None,
) -> None:
    """:func:`~recipe_utils.media.check_media_files` with ``--media_check`` and ``--max_*_samples`` taken from a
    recipe's data arguments.

    Args:
        splits: split -> dataset.
        sources: split -> where it comes from, for the messages.
        columns: media column -> its kind, "image" or "audio".
        data_args: the data arguments (``--media_check``, ``--max_*_samples``).
        seed: the seed of the random subsets (``--seed``).
        check_example: as :func:`~recipe_utils.media.check_media_files` takes it.

    Raises:
        DataError: naming each bad row, its column and its file.
    """
    check_media_files(
        splits,
        sources,
        columns,
        media_check=data_args.media_check,
        max_samples={split: data_args.max_samples(split) for split in splits},
        seed=seed,
        check_example=check_example,
    )


def _load_requested_hub_splits(data_args, model_args, requested: dict) -> tuple[dict[str, Dataset], dict[str, str]]:
    """:func:`load_hub_splits` of the arguments' Hub dataset: ``requested`` maps split -> (Hub split, argument)."""
    return load_hub_splits(
        data_args.dataset_name,
        data_args.dataset_config_name,
        requested,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
        revision=data_args.dataset_revision,
    )
