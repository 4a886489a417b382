"""The classes of a classification task: the label set of a column, the check that every labelled split holds
only known labels, and the labels given to a model's config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
from datasets import Dataset
from transformers import PretrainedConfig

from .checks import DataCheck, Refusal, check_labels_present


# Label names shown in full in an error message; longer lists show their first few and their count.
NAMES_SHOWN = 10


def names_preview(names: Sequence[Any]) -> str:
    """The names as a list, or, past ``NAMES_SHOWN``, the first few followed by ``...``: a checkpoint made for
    ImageNet has 1,000 labels."""
    if len(names) <= NAMES_SHOWN:
        return str(list(names))
    return str(list(names[: NAMES_SHOWN // 2]))[:-1] + ", ...]"


@dataclass(frozen=True)
class LabelSet:
    """The classes of a label column: their names (by class id) and the class id of every raw label value."""

    names: list[str]
    ids: dict[Any, int]

    @classmethod
    def from_names(cls, names: Sequence[str]) -> LabelSet:
        """Classes whose labels are given either as their name or as their index in ``names``."""
        ids = {index: index for index in range(len(names))}
        ids.update({name: index for index, name in enumerate(names)})
        return cls(names=list(names), ids=ids)

    @classmethod
    def from_column(cls, dataset: Dataset, column: str) -> LabelSet:
        """The classes of a `ClassLabel` column, or else the sorted distinct values of the column."""
        feature = dataset.features[column]
        if isinstance(feature, datasets.ClassLabel):
            return cls.from_names(feature.names)
        values = sorted(dataset.unique(column))
        return cls(names=[str(value) for value in values], ids={value: index for index, value in enumerate(values)})


def check_labels(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    column: str,
    labels: LabelSet,
    origin: str,
    label_flag: str = "--label_column",
) -> None:
    """Raises a ValueError naming the split's source and ``column`` if a labelled split (any but the test
    splits) holds a label ``labels`` does not know.

    Args:
        splits: split -> dataset.
        sources: split -> the file, or the Hub split, for the message.
        column: the label column.
        labels: the classes.
        origin: where the classes come from ("the GLUE task rte", "train.tsv"), for the message.
        label_flag: the recipe's option that names the label column, for the message.
    """
    for split, dataset in splits.items():
        if split.startswith("test"):
            continue
        unknown = sorted(set(dataset.unique(column)) - set(labels.ids), key=str)
        if unknown:
            raise Refusal(
                f"Column {column!r} of {sources[split]} holds labels {unknown[:10]} that are not among the "
                f"{len(labels.names)} labels {names_preview(labels.names)} of {origin}. Fix the data, or choose the "
                f"label column with {label_flag}."
            )


def classification_labels(
    splits: dict[str, Dataset], sources: dict[str, str], column: str, label_flag: str = "--label_column"
) -> LabelSet:
    """The classes of the training split's ``column`` (:meth:`LabelSet.from_column`), after refusing labelled
    rows without a label or with a label of another type (:func:`check_labels_present`), and every labelled
    split holding a label the training split lacks (:func:`check_labels`).

    Raises:
        DataError: naming the file, the row and the column of every row without a label.
        ValueError: naming the labels of a split that the training split does not have.
    """
    with DataCheck(splits, sources) as check:
        check_labels_present(check, column, label_flag)
    labels = LabelSet.from_column(splits["train"], column)
    check_labels(splits, sources, column, labels, sources["train"], label_flag)
    return labels


def set_labels(
    config: PretrainedConfig,
    names: Sequence[str] | None,
    *,
    head_suffix: str,
    model_name_or_path: str,
    labels_source: str,
    ignore_mismatched_sizes: bool,
) -> None:
    """Gives ``config`` the data's labels, refusing first a pretrained head made for another number of labels.

    Loading a checkpoint whose classification head has another size fails (or, with
    ``ignore_mismatched_sizes``, replaces the head): this says why before anything is loaded.

    Args:
        config: the pretrained config, as loaded.
        names: the label names by class id; None for a regression (one output).
        head_suffix: the class-name suffix of the task's models ("ForSequenceClassification").
        model_name_or_path: the model, for the message.
        labels_source: where the labels come from, for the message.
        ignore_mismatched_sizes: whether a head of another size may be replaced.

    Raises:
        ValueError: if the checkpoint is a classifier for another number of labels and
            ``ignore_mismatched_sizes`` is not set.
    """
    num_labels = 1 if names is None else len(names)
    pretrained_head = any(name.endswith(head_suffix) for name in config.architectures or [])
    if pretrained_head and config.num_labels != num_labels and not ignore_mismatched_sizes:
        raise Refusal(
            f"{model_name_or_path} is a {config.architectures[0]} whose head predicts {config.num_labels} labels "
            f"{names_preview(list(config.id2label.values()))}, but {labels_source} has {num_labels}"
            f"{'' if names is None else ' ' + names_preview(names)}. Pass --ignore_mismatched_sizes to train a new "
            "head, or check --label_column."
        )
    if names is None:
        config.num_labels = 1
    else:
        config.id2label = dict(enumerate(names))
        config.label2id = {name: index for index, name in enumerate(names)}
