#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes a sequence classification model with layer-wise learning rates on GLUE, a Hub dataset or local files.

    accelerate launch recipes/text_classification.py --model_name_or_path roberta-base --task_name rte \
        --layer_decay 0.8 --learning_rate 3e-5 --bf16 --output_dir out/rte

Data comes from one of:

* ``--task_name`` (a GLUE task) alone: GLUE from the Hub (``nyu-mll/glue``), with GLUE's columns, labels and metric;
* ``--task_name`` with ``--train_file`` / ``--validation_file`` / ``--test_file``: the same task from local files;
* ``--dataset_name``: any Hub dataset;
* ``--train_file`` / ``--validation_file`` / ``--test_file``: any local CSV, TSV, JSON lines or parquet files.

Without ``--do_train`` the recipe trains (and, without ``--do_eval`` / ``--do_predict`` either, evaluates). It
writes ``all_results.json`` and a model card with the layer-wise settings and the per-depth learning rates to
``--output_dir``, and prints the final metrics and the per-depth learning rates.
"""

import logging
import os
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from datasets import Dataset
from recipe_utils import (
    DataCheck,
    LabelSet,
    PredictionDataArgumentsMixin,
    Refusal,
    TokenizationArgumentsMixin,
    build_trainer,
    check_data_files,
    check_labels,
    check_labels_present,
    check_texts,
    keep_splits_to_run,
    load_config,
    load_data_file,
    load_hub_splits,
    load_metric,
    load_model,
    logits_of,
    model_card_kwargs,
    pad_to_multiple_of,
    prepare_run,
    require_rows_and_columns,
    select_data_files,
    tokenize_splits,
    train_evaluate_and_report,
)
from recipe_utils import ModelArguments as BaseModelArguments
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    default_data_collator,
)


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueTask:
    columns: tuple[str, str | None]
    # The label names in the order of the Hub's ClassLabel; None for the regression task STS-B.
    label_names: tuple[str, ...] | None


GLUE_TASKS = {
    "cola": GlueTask(("sentence", None), ("unacceptable", "acceptable")),
    "mnli": GlueTask(("premise", "hypothesis"), ("entailment", "neutral", "contradiction")),
    "mrpc": GlueTask(("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "qnli": GlueTask(("question", "sentence"), ("entailment", "not_entailment")),
    "qqp": GlueTask(("question1", "question2"), ("not_duplicate", "duplicate")),
    "rte": GlueTask(("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "sst2": GlueTask(("sentence", None), ("negative", "positive")),
    "stsb": GlueTask(("sentence1", "sentence2"), None),
    "wnli": GlueTask(("sentence1", "sentence2"), ("not_entailment", "entailment")),
}
GLUE_HUB_ID = "nyu-mll/glue"
# Column names tried, in order, when neither --task_name nor --text_column says which column holds the text.
TEXT_COLUMN_GUESSES = ("text", "sentence", "content", "review", "document", "question")


@dataclass
class ModelArguments(BaseModelArguments):
    """Which model, config and tokenizer to fine-tune from."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id (roberta-base) or the path of a local model folder."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})


@dataclass
class DataTrainingArguments(PredictionDataArgumentsMixin, TokenizationArgumentsMixin):
    """Which data to train and evaluate on, and how to read it."""

    task_name: str | None = field(
        default=None,
        metadata={
            "help": f"A GLUE task ({', '.join(GLUE_TASKS)}): sets the text columns, labels and metric. Alone, it "
            "loads the task from the Hub; with --train_file / --validation_file, from those files.",
            "choices": list(GLUE_TASKS),
        },
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (imdb, ag_news, ...)."})
    train_file: str | None = field(
        default=None, metadata={"help": "Local training data: .csv, .tsv, .json / .jsonl (JSON lines) or .parquet."}
    )
    column_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "The column names of CSV / TSV files that have no header row, in order (CoLA and AG News ship "
            "without one: --column_names sentence label)."
        },
    )
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "The column holding the text (the first sentence of a pair). Default: the GLUE task's column, "
            f"else the first of {', '.join(TEXT_COLUMN_GUESSES)} the data has, else sentence1 with sentence2."
        },
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "The column holding the second sentence of a pair, if any."}
    )
    label_column: str = field(
        default="label",
        metadata={
            "help": "The column holding the labels: strings or integers for classification, floats for regression."
        },
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Tokens per example after tokenization; longer examples are truncated."}
    )

    def __post_init__(self):
        if self.task_name is not None:
            self.task_name = self.task_name.lower()
            if self.task_name not in GLUE_TASKS:
                raise ValueError(f"Unknown --task_name {self.task_name!r}: choose one of {', '.join(GLUE_TASKS)}.")
        if self.dataset_name is not None and self.uses_local_files:
            raise ValueError("Give either --dataset_name or local files (--train_file, ...), not both.")
        if self.dataset_name is not None and self.task_name is not None:
            raise ValueError(
                "--task_name loads GLUE from the Hub itself; drop --dataset_name, or drop --task_name to use "
                f"{self.dataset_name} with --text_column / --label_column."
            )
        if self.task_name is None and self.dataset_name is None and not self.uses_local_files:
            raise ValueError(
                "Give the data: --task_name (GLUE), --dataset_name (Hub) or --train_file / --validation_file."
            )
        arguments = {"train": "train_file", "eval": "validation_file", "test": "test_file"}
        check_data_files(
            {arguments[split]: path for split, path in self.data_files().items()}, column_names=self.column_names
        )
        super().__post_init__()

    @property
    def uses_local_files(self) -> bool:
        return any(path is not None for path in self.data_files().values())


def load_splits(data_args, model_args, training_args) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits to train on ("train"), evaluate on ("eval", and "eval_mismatched" for MNLI) and predict
    ("test", or "test_matched" and "test_mismatched" for MNLI), with a description of where each comes from."""
    required = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    # Without a GLUE task the classes come from the training data, which is then read even for evaluation alone.
    wanted = dict(required, train=training_args.do_train or data_args.task_name is None)
    if data_args.uses_local_files:
        files = select_data_files(data_args, required, wanted)
        read = partial(load_data_file, column_names=data_args.column_names, cache_dir=model_args.cache_dir)
        return {split: read(path) for split, path in files.items()}, files

    if data_args.task_name == "mnli":
        hub_splits = {
            "train": "train",
            "eval": "validation_matched",
            "eval_mismatched": "validation_mismatched",
            "test_matched": "test_matched",
            "test_mismatched": "test_mismatched",
        }
    elif data_args.task_name is not None:
        hub_splits = {"train": "train", "eval": "validation", "test": "test"}
    else:
        hub_splits = {split: hub_split for split, (hub_split, _) in data_args.hub_splits().items()}
    arguments = {split: argument for split, (_, argument) in data_args.hub_splits().items()}
    requested = {
        split: (hub_split, arguments[split.split("_")[0]])
        for split, hub_split in hub_splits.items()
        if wanted[split.split("_")[0]]
    }
    glue = data_args.task_name is not None
    return load_hub_splits(
        GLUE_HUB_ID if glue else data_args.dataset_name,
        data_args.task_name if glue else data_args.dataset_config_name,
        requested,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
        revision=data_args.dataset_revision,
        optional=[split for split in requested if not required[split.split("_")[0]]],
    )


def resolve_text_columns(data_args, column_names: list[str]) -> tuple[str, str | None]:
    if data_args.task_name is not None:
        default_text, default_pair = GLUE_TASKS[data_args.task_name].columns
    elif "sentence1" in column_names and "sentence2" in column_names:
        default_text, default_pair = "sentence1", "sentence2"
    else:
        default_text = next((name for name in TEXT_COLUMN_GUESSES if name in column_names), None)
        default_pair = None
    text_column = data_args.text_column or default_text
    if text_column is None:
        raise Refusal(f"Which column holds the text? Set --text_column to one of {column_names}.")
    return text_column, data_args.text_pair_column or default_pair


def check_text_columns(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> tuple[str, str | None]:
    """The text column and the pair column (or None), after checking that every split has them and every
    labelled split (all but the test splits) has the label column."""
    text_column, text_pair_column = resolve_text_columns(data_args, next(iter(splits.values())).column_names)
    require_rows_and_columns(
        splits,
        sources,
        {text_column: "--text_column", text_pair_column: "--text_pair_column"},
        {data_args.label_column: "--label_column"},
    )
    return text_column, text_pair_column


def check_text_rows(data_args, splits: dict[str, Dataset], sources: dict[str, str], columns) -> None:
    """Refuses rows without a text (or a second text of a pair), and labelled rows without a label or with a
    label of another type than the rest, naming each file, row and column (an empty CSV cell would otherwise be
    a class '' of its own)."""
    text_column, text_pair_column = columns
    with DataCheck(splits, sources) as check:
        check_texts(check, {text_column: "text", text_pair_column: "second text of the pair"})
        check_labels_present(check, data_args.label_column, "--label_column")


def resolve_labels(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> tuple[LabelSet | None, str]:
    """The classes (None for regression) and where they come from, after checking that every labelled split
    holds only known labels. Without a GLUE task, the training split (else the evaluation split) defines them."""
    column = data_args.label_column
    if data_args.task_name is not None:
        names = GLUE_TASKS[data_args.task_name].label_names
        labels = None if names is None else LabelSet.from_names(names)
        origin = f"the GLUE task {data_args.task_name}"
    else:
        reference = next((split for split in ("train", "eval") if split in splits), None)
        if reference is None:
            raise Refusal("The labels of custom data come from --train_file or --validation_file: give one.")
        origin = sources[reference]
        is_regression = getattr(splits[reference].features[column], "dtype", None) in ("float16", "float32", "float64")
        labels = None if is_regression else LabelSet.from_column(splits[reference], column)

    if labels is not None:
        check_labels(splits, sources, column, labels, origin)
        return labels, origin
    for split, dataset in splits.items():
        dtype = getattr(dataset.features[column], "dtype", "")
        if not split.startswith("test") and not dtype.startswith(("float", "int")):
            raise Refusal(
                f"Column {column!r} of {sources[split]} must hold numbers for regression, but holds "
                f"{dataset.features[column]}. Choose the label column with --label_column."
            )
    return labels, origin


def tokenize_texts(examples, *, tokenizer, columns, max_seq_length, padding, label_column, labels):
    """The model inputs of a batch of texts (or text pairs), with their ``labels`` where the batch has labels:
    class ids, or floats for a regression (``labels`` None)."""
    texts = [examples[column] for column in columns if column is not None]
    encoded = tokenizer(*texts, padding=padding, max_length=max_seq_length, truncation=True)
    if label_column in examples:
        values = examples[label_column]
        encoded["labels"] = [float(value) for value in values] if labels is None else [labels.ids[v] for v in values]
    return encoded


def text_tokenizer(data_args, tokenizer, columns: tuple[str, str | None], labels: LabelSet | None):
    """:func:`tokenize_texts` with the recipe's settings; the sequence length is capped at the tokenizer's limit."""
    max_seq_length = min(data_args.max_seq_length, tokenizer.model_max_length)
    if data_args.max_seq_length > tokenizer.model_max_length:
        logger.warning(
            f"--max_seq_length {data_args.max_seq_length} exceeds the tokenizer's limit; using {max_seq_length}."
        )
    return partial(
        tokenize_texts,
        tokenizer=tokenizer,
        columns=columns,
        max_seq_length=max_seq_length,
        padding="max_length" if data_args.pad_to_max_length else False,
        label_column=data_args.label_column,
        labels=labels,
    )


def drop_test_labels(splits: dict[str, Dataset], label_column: str) -> None:
    """Predicts the test splits without their labels (GLUE's test splits on the Hub hold -1)."""
    for split, dataset in splits.items():
        if split.startswith("test") and label_column in dataset.column_names:
            splits[split] = dataset.remove_columns(label_column)


def text_metrics(task_name: str | None, is_regression: bool):
    """``compute_metrics``: GLUE's metric for a GLUE task, else accuracy (mean squared error for regression);
    with more than one score, their mean as ``combined_score``."""
    if task_name is not None:
        metric = load_metric("glue", task_name)
    else:
        metric = load_metric("mse" if is_regression else "accuracy")

    def compute_metrics(prediction: EvalPrediction):
        logits = logits_of(prediction.predictions)
        predictions = np.squeeze(logits, axis=-1) if is_regression else np.argmax(logits, axis=-1)
        result = metric(predictions=predictions, references=prediction.label_ids)
        if len(result) > 1:
            result["combined_score"] = float(np.mean(list(result.values())))
        return result

    return compute_metrics


def write_predictions(trainer, *, splits: dict[str, Dataset], sources: dict[str, str], labels: LabelSet | None):
    """Writes ``predict_results_<split>.tsv`` for every test split: the index and the predicted label (the
    predicted value for a regression) of every example."""
    for split in [split for split in splits if split.startswith("test")]:
        logits = logits_of(trainer.predict(splits[split], metric_key_prefix="predict").predictions)
        predictions = np.squeeze(logits, axis=-1) if labels is None else np.argmax(logits, axis=-1)
        if trainer.is_world_process_zero():
            path = os.path.join(trainer.args.output_dir, f"predict_results_{split}.tsv")
            with open(path, "w", encoding="utf-8") as writer:
                writer.write("index\tprediction\n")
                for index, value in enumerate(predictions):
                    writer.write(f"{index}\t{value:.3f}\n" if labels is None else f"{index}\t{labels.names[value]}\n")
            logger.info(f"Predictions for {sources[split]} written to {path}.")


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(ModelArguments, DataTrainingArguments, argv, logger)
    splits, sources = load_splits(data_args, model_args, training_args)
    text_columns = check_text_columns(data_args, splits, sources)
    check_text_rows(data_args, splits, sources, text_columns)
    labels, labels_origin = resolve_labels(data_args, splits, sources)
    keep_splits_to_run(splits, training_args)

    label_names = None if labels is None else labels.names
    task, head_suffix = data_args.task_name or "text-classification", "ForSequenceClassification"
    config = load_config(model_args, label_names, labels_origin, finetuning_task=task, head_suffix=head_suffix)
    config.problem_type = "regression" if labels is None else "single_label_classification"
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    model = load_model(AutoModelForSequenceClassification, model_args, config)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Decoder-only models (GPT-2, Llama) ship without a padding token; classification needs one.
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id

    drop_test_labels(splits, data_args.label_column)
    tokenize = text_tokenizer(data_args, tokenizer, text_columns, labels)
    tokenize_splits(splits, sources, tokenize, data_args=data_args, training_args=training_args)
    if data_args.pad_to_max_length:
        data_collator = default_data_collator
    else:
        data_collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of(training_args))
    compute_metrics = text_metrics(data_args.task_name, is_regression=labels is None)

    trainer = build_trainer(
        model, tokenizer, training_args, splits, data_collator=data_collator, compute_metrics=compute_metrics
    )
    model_card = model_card_kwargs(model_args, data_args, tasks="text-classification")
    if data_args.task_name is not None:
        glue = {"language": "en", "dataset_tags": "glue", "dataset_args": data_args.task_name}
        model_card.update(glue, dataset=f"GLUE {data_args.task_name.upper()}")
    predict = partial(write_predictions, splits=splits, sources=sources, labels=labels)
    train_evaluate_and_report(trainer, splits, checkpoint=checkpoint, model_card=model_card, predict=predict)


if __name__ == "__main__":
    main()
