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

Without ``--do_train`` / ``--do_eval`` / ``--do_predict`` the recipe trains and evaluates. It writes
``all_results.json`` and a model card with the layer-wise settings and the per-depth learning rates to
``--output_dir``, and prints the final metrics and the per-depth learning rates.
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset, load_dataset
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    default_data_collator,
    set_seed,
)

from finetune_llrd import LLRDTrainer
from recipe_utils import (
    LabelSet,
    RecipeTrainingArguments,
    check_data_files,
    check_labels,
    check_processes_joined,
    default_to_train_and_eval,
    find_checkpoint_to_resume,
    load_data_file,
    load_metric,
    parse_arguments,
    print_layerwise_lr_table,
    require_columns,
    require_rows,
    set_labels,
    setup_logging,
    take_samples,
    treat_loss_as_batch_mean,
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
class ModelArguments:
    """Which model, config and tokenizer to fine-tune from."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id (roberta-base) or the path of a local model folder."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models and datasets from the Hub."})
    model_revision: str = field(
        default="main", metadata={"help": "The model version to use: a branch name, tag name or commit id."}
    )
    token: str | None = field(
        default=None,
        metadata={"help": "Hub token for private models and datasets; by default the one `hf auth login` stored."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow models whose code lives on the Hub; only for repositories you trust."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Replace a pretrained classification head whose number of labels differs from the data's."},
    )


@dataclass
class DataTrainingArguments:
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
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    dataset_revision: str | None = field(default=None, metadata={"help": "The Hub dataset's branch, tag or commit."})
    train_split_name: str = field(default="train", metadata={"help": "The Hub dataset's training split."})
    validation_split_name: str = field(default="validation", metadata={"help": "The Hub dataset's evaluation split."})
    test_split_name: str = field(default="test", metadata={"help": "The Hub dataset's prediction split."})
    train_file: str | None = field(
        default=None, metadata={"help": "Local training data: .csv, .tsv, .json / .jsonl (JSON lines) or .parquet."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Local evaluation data, as --train_file."})
    test_file: str | None = field(default=None, metadata={"help": "Local data to predict, as --train_file."})
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
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every example to --max_seq_length (default: pad each batch to its longest example)."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on a random subset (seeded by --seed) of this many examples."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on a random subset (seeded by --seed) of this many examples."}
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Predict a random subset (seeded by --seed) of this many examples."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (default: the main process alone)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again rather than read the cache."})

    def __post_init__(self):
        if self.task_name is not None:
            self.task_name = self.task_name.lower()
            if self.task_name not in GLUE_TASKS:
                raise ValueError(f"Unknown --task_name {self.task_name!r}: choose one of {', '.join(GLUE_TASKS)}.")
        has_files = any(f is not None for f in (self.train_file, self.validation_file, self.test_file))
        if self.dataset_name is not None and has_files:
            raise ValueError("Give either --dataset_name or local files (--train_file, ...), not both.")
        if self.dataset_name is not None and self.task_name is not None:
            raise ValueError(
                "--task_name loads GLUE from the Hub itself; drop --dataset_name, or drop --task_name to use "
                f"{self.dataset_name} with --text_column / --label_column."
            )
        if self.task_name is None and self.dataset_name is None and not has_files:
            raise ValueError(
                "Give the data: --task_name (GLUE), --dataset_name (Hub) or --train_file / --validation_file."
            )
        check_data_files(
            {"train_file": self.train_file, "validation_file": self.validation_file, "test_file": self.test_file},
            column_names=self.column_names,
        )
        for name in ("max_seq_length", "max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value}.")

    @property
    def uses_local_files(self) -> bool:
        return any(f is not None for f in (self.train_file, self.validation_file, self.test_file))


def load_splits(data_args, model_args, training_args) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits to train on ("train"), evaluate on ("eval", and "eval_mismatched" for MNLI) and predict
    ("test", or "test_matched" and "test_mismatched" for MNLI), with a description of where each comes from."""
    required = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    # Without a GLUE task the classes come from the training data, which is then read even for evaluation alone.
    wanted = dict(required, train=training_args.do_train or data_args.task_name is None)
    splits, sources = {}, {}
    if data_args.uses_local_files:
        files = {"train": data_args.train_file, "eval": data_args.validation_file, "test": data_args.test_file}
        arguments = {"train": "--train_file", "eval": "--validation_file", "test": "--test_file"}
        for split, path in files.items():
            if required[split] and path is None:
                raise ValueError(f"--do_{'predict' if split == 'test' else split} needs {arguments[split]}.")
            if wanted[split] and path is not None:
                splits[split] = load_data_file(path, data_args.column_names, model_args.cache_dir)
                sources[split] = path
        return splits, sources

    if data_args.task_name is not None:
        hub_id, config_name = GLUE_HUB_ID, data_args.task_name
        hub_splits = {"train": "train", "eval": "validation", "test": "test"}
        if data_args.task_name == "mnli":
            hub_splits = {
                "train": "train",
                "eval": "validation_matched",
                "eval_mismatched": "validation_mismatched",
                "test_matched": "test_matched",
                "test_mismatched": "test_mismatched",
            }
    else:
        hub_id, config_name = data_args.dataset_name, data_args.dataset_config_name
        hub_splits = {
            "train": data_args.train_split_name,
            "eval": data_args.validation_split_name,
            "test": data_args.test_split_name,
        }
    raw = load_dataset(
        hub_id,
        config_name,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
        revision=data_args.dataset_revision,
    )
    for split, hub_split in hub_splits.items():
        if not wanted[split.split("_")[0]] or (hub_split not in raw and not required[split.split("_")[0]]):
            continue
        if hub_split not in raw:
            argument = {"train": "--train_split_name", "eval": "--validation_split_name"}.get(
                split, "--test_split_name"
            )
            raise ValueError(
                f"{hub_id} has no split {hub_split!r}; its splits are {list(raw)}. Choose one with {argument}."
            )
        splits[split], sources[split] = raw[hub_split], f"split {hub_split!r} of {hub_id}"
    return splits, sources


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
        raise ValueError(f"Which column holds the text? Set --text_column to one of {column_names}.")
    return text_column, data_args.text_pair_column or default_pair


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
            raise ValueError("The labels of custom data come from --train_file or --validation_file: give one.")
        origin = sources[reference]
        is_regression = getattr(splits[reference].features[column], "dtype", None) in ("float16", "float32", "float64")
        labels = None if is_regression else LabelSet.from_column(splits[reference], column)

    for split, dataset in splits.items():
        if split.startswith("test"):
            continue
        if labels is not None:
            check_labels(dataset, column, labels, sources[split], origin)
            continue
        dtype = getattr(dataset.features[column], "dtype", "")
        if not dtype.startswith(("float", "int")):
            raise ValueError(
                f"Column {column!r} of {sources[split]} must hold numbers for regression, but holds "
                f"{dataset.features[column]}. Choose the label column with --label_column."
            )
    return labels, origin


def main(argv=None):
    # 1. Arguments: the command line, or one .json / .yaml file with all of them.
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataTrainingArguments, RecipeTrainingArguments), argv
    )
    setup_logging(training_args, logger)
    check_processes_joined(training_args)
    default_to_train_and_eval(training_args)
    checkpoint = find_checkpoint_to_resume(training_args)
    set_seed(training_args.seed)

    # 2. Data: read it and check columns and labels before any model is loaded.
    splits, sources = load_splits(data_args, model_args, training_args)
    for split, dataset in splits.items():
        require_rows(dataset, sources[split])
    text_column, text_pair_column = resolve_text_columns(data_args, next(iter(splits.values())).column_names)
    column_arguments = {text_column: "--text_column", text_pair_column: "--text_pair_column"}
    for split, dataset in splits.items():
        require_columns(dataset, (text_column, text_pair_column), sources[split], column_arguments)
        if not split.startswith("test"):
            require_columns(
                dataset, (data_args.label_column,), sources[split], {data_args.label_column: "--label_column"}
            )
    labels, labels_origin = resolve_labels(data_args, splits, sources)
    is_regression = labels is None
    if not training_args.do_train:
        splits.pop("train", None)

    # 3. Model and tokenizer.
    hub_options = dict(
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )
    config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path, **hub_options)
    set_labels(
        config,
        None if is_regression else labels.names,
        head_suffix="ForSequenceClassification",
        model_name_or_path=model_args.model_name_or_path,
        labels_source=labels_origin,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    config.problem_type = "regression" if is_regression else "single_label_classification"
    config.finetuning_task = data_args.task_name or "text-classification"
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **hub_options
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub_options,
    )
    treat_loss_as_batch_mean(model)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Decoder-only models (GPT-2, Llama) ship without a padding token; classification needs one.
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id

    # 4. Tokenize.
    max_seq_length = min(data_args.max_seq_length, tokenizer.model_max_length)
    if data_args.max_seq_length > tokenizer.model_max_length:
        logger.warning(
            f"--max_seq_length {data_args.max_seq_length} exceeds the tokenizer's limit; using {max_seq_length}."
        )
    padding = "max_length" if data_args.pad_to_max_length else False

    def tokenize(examples, with_labels):
        texts = (
            (examples[text_column],)
            if text_pair_column is None
            else (examples[text_column], examples[text_pair_column])
        )
        encoded = tokenizer(*texts, padding=padding, max_length=max_seq_length, truncation=True)
        if with_labels:
            if is_regression:
                encoded["labels"] = [float(value) for value in examples[data_args.label_column]]
            else:
                encoded["labels"] = [labels.ids[value] for value in examples[data_args.label_column]]
        return encoded

    max_samples = {
        "train": data_args.max_train_samples,
        "eval": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    with training_args.main_process_first(desc="tokenization"):
        for split, dataset in splits.items():
            dataset = take_samples(dataset, max_samples[split.split("_")[0]], training_args.seed)
            splits[split] = dataset.map(
                tokenize,
                batched=True,
                fn_kwargs={"with_labels": not split.startswith("test")},
                remove_columns=dataset.column_names,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"Tokenizing {sources[split]}",
            )
    if data_args.pad_to_max_length:
        data_collator = default_data_collator
    else:
        pad_to_multiple_of = 8 if training_args.fp16 or training_args.bf16 else None
        data_collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    # 5. Metric: GLUE's for a GLUE task, else accuracy (MSE for regression).
    if data_args.task_name is not None:
        metric = load_metric("glue", data_args.task_name)
    else:
        metric = load_metric("mse" if is_regression else "accuracy")

    def compute_metrics(prediction: EvalPrediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        predictions = np.squeeze(logits, axis=-1) if is_regression else np.argmax(logits, axis=-1)
        result = metric(predictions=predictions, references=prediction.label_ids)
        if len(result) > 1:
            result["combined_score"] = float(np.mean(list(result.values())))
        return result

    # 6. Train.
    trainer = LLRDTrainer(
        model=model,
        args=training_args,
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("eval"),
        processing_class=tokenizer,
        data_collator=data_collator,
        compute_metrics=compute_metrics,
    )
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        metrics = {**train_result.metrics, "train_samples": len(splits["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    # 7. Evaluate (MNLI: on the matched and the mismatched validation sets).
    for split in ("eval", "eval_mismatched"):
        if split in splits:
            metrics = trainer.evaluate(eval_dataset=splits[split], metric_key_prefix=split)
            metrics[f"{split}_samples"] = len(splits[split])
            trainer.log_metrics(split, metrics)
            trainer.save_metrics(split, metrics)

    # 8. Predict.
    for split in ("test", "test_matched", "test_mismatched"):
        if split not in splits:
            continue
        logits = trainer.predict(splits[split], metric_key_prefix="predict").predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions = np.squeeze(logits, axis=-1) if is_regression else np.argmax(logits, axis=-1)
        if trainer.is_world_process_zero():
            path = os.path.join(training_args.output_dir, f"predict_results_{split}.tsv")
            with open(path, "w", encoding="utf-8") as writer:
                writer.write("index\tprediction\n")
                for index, value in enumerate(predictions):
                    writer.write(f"{index}\t{value:.3f}\n" if is_regression else f"{index}\t{labels.names[value]}\n")
            logger.info(f"Predictions for {sources[split]} written to {path}.")

    # 9. Model card (pushed with the model on --push_to_hub), then the per-depth rates under the metrics.
    card_kwargs = {"finetuned_from": model_args.model_name_or_path, "tasks": "text-classification"}
    if data_args.task_name is not None:
        card_kwargs.update(
            language="en",
            dataset_tags="glue",
            dataset_args=data_args.task_name,
            dataset=f"GLUE {data_args.task_name.upper()}",
        )
    elif data_args.dataset_name is not None:
        card_kwargs.update(dataset_tags=data_args.dataset_name, dataset=data_args.dataset_name)
        if data_args.dataset_config_name is not None:
            card_kwargs["dataset_args"] = data_args.dataset_config_name
    if training_args.push_to_hub:
        trainer.push_to_hub(**card_kwargs)
    else:
        trainer.create_model_card(**card_kwargs)
    print_layerwise_lr_table(trainer)


if __name__ == "__main__":
    main()
