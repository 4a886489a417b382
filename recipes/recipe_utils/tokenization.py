"""Tokenization, for the text recipes: every split tokenized once, on the main process first, and the padding
multiple for mixed precision."""

from __future__ import annotations

from collections.abc import Callable

from datasets import Dataset

from .arguments import DataArgumentsMixin, RecipeTrainingArguments
from .data import take_samples


def tokenize_splits(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    tokenize: Callable[[dict[str, list]], dict[str, list]],
    *,
    data_args: DataArgumentsMixin,
    training_args: RecipeTrainingArguments,
) -> None:
    """Replaces every split by its random subset of ``--max_*_samples`` rows, tokenized by ``tokenize`` (batched,
    the raw columns dropped), on the main process first so that the others read its cache.

    Args:
        splits: split -> dataset, changed in place.
        sources: split -> where it comes from, for the progress bar.
        tokenize: maps a batch of raw rows to the model's inputs (and ``labels``).
        data_args: ``--max_*_samples``, ``--preprocessing_num_workers``, ``--overwrite_cache``.
        training_args: the seed, and the processes.
    """
    with training_args.main_process_first(desc="tokenization"):
        for split, dataset in splits.items():
            dataset = take_samples(dataset, data_args.max_samples(split), training_args.seed)
            splits[split] = dataset.map(
                tokenize,
                batched=True,
                remove_columns=dataset.column_names,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"Tokenizing {sources[split]}",
            )


def pad_to_multiple_of(training_args: RecipeTrainingArguments) -> int | None:
    """8 under mixed precision (tensor cores work on multiples of 8), else None."""
    return 8 if training_args.fp16 or training_args.bf16 else None
