#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes a token classification model (CoNLL-2003-style named-entity recognition) with layer-wise learning
rates, scored with seqeval.

    accelerate launch recipes/token_classification.py --model_name_or_path bert-base-cased \
        --train_file conll2003/train.txt --validation_file conll2003/valid.txt \
        --layer_decay 0.9 --learning_rate 5e-5 --output_dir out/conll2003

Data comes from one of:

* ``--dataset_name``: a Hub dataset with a column of word lists and a column of tag lists;
* ``--train_file`` / ``--validation_file`` / ``--test_file``: JSON lines (``.json``, ``.jsonl``) or parquet files
  with the two list columns, or CoNLL text files (any other name: ``train.txt``, ``eng.train``, ``.conll``):
  one word per line with its whitespace-separated columns, a blank line between sentences, ``-DOCSTART-``
  lines skipped.

Each word's tag goes to its first sub-word token (to every sub-word token with ``--label_all_tokens``).
Entities are scored with seqeval as CoNLL's conlleval scores them (overall precision, recall, F1 and token
accuracy). Without ``--do_train`` / ``--do_eval`` / ``--do_predict`` the recipe trains and evaluates. It writes
``all_results.json`` and a model card with the layer-wise settings and the per-depth learning rates to
``--output_dir``, and prints the final metrics and the per-depth learning rates.
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, Dataset, load_dataset
from seqeval.metrics import accuracy_score, classification_report
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    EvalPrediction,
    set_seed,
)

from finetune_llrd import LLRDTrainer
from recipe_utils import (
    DATA_FILE_BUILDERS,
    LabelSet,
    RecipeTrainingArguments,
    check_processes_joined,
    data_file_builder,
    default_to_train_and_eval,
    find_checkpoint_to_resume,
    load_data_file,
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

CONLL_2003_COLUMNS = ("tokens", "pos_tags", "chunk_tags", "ner_tags")
# Byte-level BPE tokenizers need add_prefix_space=True to take pre-split words.
ADD_PREFIX_SPACE_MODEL_TYPES = {"bloom", "gpt2", "roberta", "deberta", "longformer"}


@dataclass
class ModelArguments:
    """Which model, config and tokenizer to fine-tune from."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id (bert-base-cased) or the path of a local model folder."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer name or path, if not the model's; it must be a fast tokenizer."}
    )
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
        metadata={"help": "Replace a pretrained classification head whose number of tags differs from the data's."},
    )


@dataclass
class DataTrainingArguments:
    """Which data to train and evaluate on, and how to read it."""

    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset of tagged sentences."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    dataset_revision: str | None = field(default=None, metadata={"help": "The Hub dataset's branch, tag or commit."})
    train_split_name: str = field(default="train", metadata={"help": "The Hub dataset's training split."})
    validation_split_name: str = field(default="validation", metadata={"help": "The Hub dataset's evaluation split."})
    test_split_name: str = field(default="test", metadata={"help": "The Hub dataset's prediction split."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data: .json / .jsonl (JSON lines) or .parquet with word and tag lists, or a CoNLL "
            "text file (any other name: train.txt, eng.train, ...)."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data, as --train_file."})
    test_file: str | None = field(default=None, metadata={"help": "Data to predict (with its tags), as --train_file."})
    conll_columns: list[str] = field(
        default_factory=lambda: list(CONLL_2003_COLUMNS),
        metadata={
            "help": "The names of the whitespace-separated columns of CoNLL text files, in order. The default is "
            "CoNLL-2003's (word, part of speech, chunk, entity); for a file of words and tags: "
            "--conll_columns tokens ner_tags."
        },
    )
    tokens_column: str = field(default="tokens", metadata={"help": "The column holding each sentence's words."})
    label_column: str = field(
        default="ner_tags", metadata={"help": "The column holding each sentence's tags (B-PER, I-PER, O, ...)."}
    )
    label_all_tokens: bool = field(
        default=False,
        metadata={
            "help": "Tag every sub-word token of a word (B- becomes I- after the first), not only the first; the "
            "rest are left out of the loss otherwise."
        },
    )
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Tokens per sentence after tokenization (default: the model's limit)."}
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every sentence to --max_seq_length (default: pad each batch to its longest sentence)."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on a random subset (seeded by --seed) of this many sentences."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on a random subset (seeded by --seed) of this many sentences."}
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Predict a random subset (seeded by --seed) of this many sentences."}
    )
    return_entity_level_metrics: bool = field(
        default=False, metadata={"help": "Also report precision, recall and F1 of every entity type."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (default: the main process alone)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again rather than read the cache."})

    def __post_init__(self):
        has_files = any(f is not None for f in (self.train_file, self.validation_file, self.test_file))
        if (self.dataset_name is not None) == has_files:
            raise ValueError("Give the data one way: --dataset_name (Hub) or --train_file / --validation_file.")
        for argument in ("train_file", "validation_file", "test_file"):
            path = getattr(self, argument)
            if path is None:
                continue
            if not os.path.isfile(path):
                raise ValueError(f"--{argument} {path}: no such file.")
            if not is_conll_file(path) and data_file_builder(path) == "csv":
                raise ValueError(
                    f"--{argument} {path}: CSV / TSV cannot hold lists of words; use a CoNLL text file, JSON lines "
                    "or parquet."
                )
        if self.tokens_column not in self.conll_columns or self.label_column not in self.conll_columns:
            if has_files and any(
                is_conll_file(path) for path in (self.train_file, self.validation_file, self.test_file) if path
            ):
                raise ValueError(
                    f"--conll_columns {' '.join(self.conll_columns)} must name the --tokens_column "
                    f"{self.tokens_column!r} and the --label_column {self.label_column!r}."
                )
        for name in ("max_seq_length", "max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value}.")


def is_conll_file(path: str) -> bool:
    """Whether ``path`` is read as CoNLL text: every file that is not CSV, TSV, JSON (lines) or parquet."""
    return os.path.splitext(path.lower())[1] not in DATA_FILE_BUILDERS


def read_conll_file(path: str, column_names: list[str]) -> Dataset:
    """Reads a CoNLL text file: one word per line with whitespace-separated columns, a blank line after every
    sentence, ``-DOCSTART-`` lines skipped.

    Raises:
        ValueError: naming the file and line where a line has another number of columns than ``column_names``.
    """
    sentences = {name: [] for name in column_names}
    current = {name: [] for name in column_names}

    def end_sentence():
        if current[column_names[0]]:
            for name in column_names:
                sentences[name].append(current[name])
                current[name] = []

    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                end_sentence()
                continue
            if fields[0] == "-DOCSTART-":
                continue
            if len(fields) != len(column_names):
                raise ValueError(
                    f"{path}, line {line_number}: {len(fields)} columns, but --conll_columns names "
                    f"{len(column_names)} ({' '.join(column_names)})."
                )
            for name, value in zip(column_names, fields):
                current[name].append(value)
    end_sentence()
    dataset = Dataset.from_dict(sentences)
    require_rows(dataset, path)
    return dataset


def load_splits(data_args, model_args, training_args) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits "train" (always, for the tags), "eval" and "test", with where each comes from."""
    wanted = {"train": True, "eval": training_args.do_eval, "test": training_args.do_predict}
    splits, sources = {}, {}
    if data_args.dataset_name is not None:
        raw = load_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            cache_dir=model_args.cache_dir,
            token=model_args.token,
            revision=data_args.dataset_revision,
        )
        hub_splits = {
            "train": (data_args.train_split_name, "--train_split_name"),
            "eval": (data_args.validation_split_name, "--validation_split_name"),
            "test": (data_args.test_split_name, "--test_split_name"),
        }
        for split, (hub_split, argument) in hub_splits.items():
            if not wanted[split]:
                continue
            if hub_split not in raw:
                raise ValueError(
                    f"{data_args.dataset_name} has no split {hub_split!r}; its splits are {list(raw)}. "
                    f"Choose one with {argument}."
                )
            splits[split], sources[split] = raw[hub_split], f"split {hub_split!r} of {data_args.dataset_name}"
        return splits, sources

    files = {"train": data_args.train_file, "eval": data_args.validation_file, "test": data_args.test_file}
    arguments = {"train": "--train_file", "eval": "--validation_file", "test": "--test_file"}
    for split, path in files.items():
        if not wanted[split]:
            continue
        if path is None:
            needs = {"train": "the tags", "eval": "--do_eval", "test": "--do_predict"}[split]
            raise ValueError(f"{needs} needs {arguments[split]}.")
        if is_conll_file(path):
            splits[split] = read_conll_file(path, data_args.conll_columns)
        else:
            splits[split] = load_data_file(path, cache_dir=model_args.cache_dir)
        sources[split] = path
    return splits, sources


def resolve_tags(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> LabelSet:
    """The tag names and ids, checking every split: tags are strings or ClassLabels, one per word, all known."""
    column = data_args.label_column
    feature = splits["train"].features[column]
    inner = getattr(feature, "feature", None)  # the items of a list column
    if isinstance(inner, ClassLabel):
        tags = LabelSet.from_names(inner.names)
    elif getattr(inner, "dtype", None) in ("string", "large_string"):
        names = sorted({tag for sentence in splits["train"][column] for tag in sentence})
        tags = LabelSet.from_names(names)
    else:
        raise ValueError(
            f"Column {column!r} of {sources['train']} must hold lists of tag names (B-PER, I-PER, O, ...) or of "
            f"ClassLabel ids, but holds {feature}: seqeval scores entities by their tag names."
        )
    for split, dataset in splits.items():
        for index, (words, sentence_tags) in enumerate(zip(dataset[data_args.tokens_column], dataset[column])):
            if len(words) != len(sentence_tags):
                raise ValueError(
                    f"Sentence {index} of {sources[split]} has {len(words)} words in {data_args.tokens_column!r} but "
                    f"{len(sentence_tags)} tags in {column!r}."
                )
        unknown = sorted({tag for sentence in dataset[column] for tag in sentence} - set(tags.ids), key=str)
        if unknown:
            raise ValueError(
                f"Column {column!r} of {sources[split]} holds tags {unknown[:10]} that are not among the "
                f"{len(tags.names)} tags {tags.names} of {sources['train']}."
            )
    return tags


def inside_tag_ids(tags: LabelSet) -> list[int]:
    """For every tag id, the id of the tag that continues it inside a word (B-X -> I-X; others stay)."""
    continued = []
    for index, name in enumerate(tags.names):
        inside = "I-" + name[2:] if name.startswith("B-") else None
        continued.append(tags.names.index(inside) if inside in tags.names else index)
    return continued


def align_tags(
    word_ids: list[int | None], word_tag_ids: list[int], inside_ids: list[int], *, label_all_tokens: bool
) -> list[int]:
    """The label of every token: its word's tag on the word's first sub-word token, -100 (left out of the loss
    and the scores) on special tokens and, unless ``label_all_tokens``, on the word's other sub-word tokens,
    which otherwise get the tag that continues the word (I-X for B-X).

    Args:
        word_ids: the word of every token (None for special tokens), from a fast tokenizer's ``word_ids()``.
        word_tag_ids: the tag id of every word.
        inside_ids: :func:`inside_tag_ids` of the tags.
        label_all_tokens: whether a word's other sub-word tokens get a tag too.
    """
    labels, previous_word = [], None
    for word in word_ids:
        if word is None:
            labels.append(-100)
        elif word != previous_word:
            labels.append(word_tag_ids[word])
        else:
            labels.append(inside_ids[word_tag_ids[word]] if label_all_tokens else -100)
        previous_word = word
    return labels


def seqeval_scores(
    predictions: list[list[str]], references: list[list[str]], *, entity_level: bool = False
) -> dict[str, float]:
    """Entity precision, recall and F1 (micro-averaged over entity types, as conlleval counts them) and token
    accuracy, with seqeval; with ``entity_level``, also every entity type's precision, recall and F1."""
    report = classification_report(references, predictions, output_dict=True, zero_division=0)
    overall = report["micro avg"]
    scores = {
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "f1": float(overall["f1-score"]),
        "accuracy": float(accuracy_score(references, predictions)),
    }
    if entity_level:
        for entity, entity_scores in report.items():
            if not entity.endswith(" avg"):
                scores[f"{entity}_precision"] = float(entity_scores["precision"])
                scores[f"{entity}_recall"] = float(entity_scores["recall"])
                scores[f"{entity}_f1"] = float(entity_scores["f1-score"])
    return scores


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

    # 2. Data: read it and check the columns and tags before any model is loaded.
    splits, sources = load_splits(data_args, model_args, training_args)
    column_arguments = {data_args.tokens_column: "--tokens_column", data_args.label_column: "--label_column"}
    for split, dataset in splits.items():
        require_rows(dataset, sources[split])
        require_columns(dataset, (data_args.tokens_column, data_args.label_column), sources[split], column_arguments)
    tags = resolve_tags(data_args, splits, sources)
    if not training_args.do_train:
        splits.pop("train")

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
        tags.names,
        head_suffix="ForTokenClassification",
        model_name_or_path=model_args.model_name_or_path,
        labels_source=sources["train"],
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    config.finetuning_task = "ner"
    tokenizer_options = {"add_prefix_space": True} if config.model_type in ADD_PREFIX_SPACE_MODEL_TYPES else {}
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **tokenizer_options, **hub_options
    )
    if not tokenizer.is_fast:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: tags are aligned to sub-words through a fast "
            "tokenizer's word_ids(). Choose a model with a fast tokenizer, or one with --tokenizer_name."
        )
    model = AutoModelForTokenClassification.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub_options,
    )
    treat_loss_as_batch_mean(model)

    # 4. Tokenize, giving each word's tag to its first sub-word token (-100 elsewhere: left out of the loss).
    max_seq_length = min(data_args.max_seq_length or tokenizer.model_max_length, tokenizer.model_max_length)
    padding = "max_length" if data_args.pad_to_max_length else False
    inside_ids = inside_tag_ids(tags)

    def tokenize_and_align_tags(examples):
        encoded = tokenizer(
            examples[data_args.tokens_column],
            is_split_into_words=True,
            truncation=True,
            max_length=max_seq_length,
            padding=padding,
        )
        encoded["labels"] = [
            align_tags(
                encoded.word_ids(batch_index=index),
                [tags.ids[tag] for tag in sentence_tags],
                inside_ids,
                label_all_tokens=data_args.label_all_tokens,
            )
            for index, sentence_tags in enumerate(examples[data_args.label_column])
        ]
        return encoded

    max_samples = {
        "train": data_args.max_train_samples,
        "eval": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    with training_args.main_process_first(desc="tokenization"):
        for split, dataset in splits.items():
            dataset = take_samples(dataset, max_samples[split], training_args.seed)
            splits[split] = dataset.map(
                tokenize_and_align_tags,
                batched=True,
                remove_columns=dataset.column_names,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"Tokenizing {sources[split]}",
            )
    pad_to_multiple_of = 8 if training_args.fp16 or training_args.bf16 else None
    data_collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    # 5. Metric: seqeval's entity-level precision, recall and F1, and token accuracy.
    def word_level_tags(logits: np.ndarray, label_ids: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
        """Predicted and true tag names of the scored tokens: each word's first sub-word token (every sub-word
        token with --label_all_tokens)."""
        predicted = np.argmax(logits, axis=-1)
        predictions, references = [], []
        for sentence_predictions, sentence_labels in zip(predicted, label_ids):
            scored = sentence_labels != -100
            predictions.append([tags.names[i] for i in sentence_predictions[scored]])
            references.append([tags.names[i] for i in sentence_labels[scored]])
        return predictions, references

    def compute_metrics(prediction: EvalPrediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        predictions, references = word_level_tags(logits, prediction.label_ids)
        return seqeval_scores(predictions, references, entity_level=data_args.return_entity_level_metrics)

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

    # 7. Evaluate.
    if training_args.do_eval:
        metrics = {**trainer.evaluate(), "eval_samples": len(splits["eval"])}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    # 8. Predict: one line of tags per sentence, one tag per word.
    if training_args.do_predict:
        output = trainer.predict(splits["test"], metric_key_prefix="predict")
        metrics = {**output.metrics, "predict_samples": len(splits["test"])}
        trainer.log_metrics("predict", metrics)
        trainer.save_metrics("predict", metrics)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        predictions, _ = word_level_tags(logits, output.label_ids)
        if trainer.is_world_process_zero():
            path = os.path.join(training_args.output_dir, "predictions.txt")
            with open(path, "w", encoding="utf-8") as writer:
                writer.write("\n".join(" ".join(sentence) for sentence in predictions) + "\n")
            logger.info(f"Predicted tags of {sources['test']} written to {path}, one sentence per line.")

    # 9. Model card (pushed with the model on --push_to_hub), then the per-depth rates under the metrics.
    card_kwargs = {"finetuned_from": model_args.model_name_or_path, "tasks": "token-classification"}
    if data_args.dataset_name is not None:
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
