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
accuracy). Without ``--do_train`` the recipe trains (and, without ``--do_eval`` / ``--do_predict`` either,
evaluates). It writes ``all_results.json`` and a model card with the layer-wise settings and the per-depth
learning rates to ``--output_dir``, and prints the final metrics and the per-depth learning rates.
"""

import logging
import os
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from datasets import ClassLabel, Dataset
from recipe_utils import (
    DATA_FILE_BUILDERS,
    DataCheck,
    LabelSet,
    PredictionDataArgumentsMixin,
    Refusal,
    TokenizationArgumentsMixin,
    build_trainer,
    column_values,
    data_file_builder,
    is_missing,
    keep_splits_to_run,
    load_config,
    load_data_file,
    load_hub_splits,
    load_model,
    logits_of,
    model_card_kwargs,
    names_preview,
    pad_to_multiple_of,
    prepare_run,
    read_text_lines,
    require_rows,
    require_rows_and_columns,
    select_data_files,
    short,
    tokenize_splits,
    train_evaluate_and_report,
    without_compression,
)
from recipe_utils import ModelArguments as BaseModelArguments
from seqeval.metrics import accuracy_score, classification_report
from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification


logger = logging.getLogger(__name__)

CONLL_2003_COLUMNS = ("tokens", "pos_tags", "chunk_tags", "ner_tags")
# Byte-level BPE tokenizers need add_prefix_space=True to take pre-split words.
ADD_PREFIX_SPACE_MODEL_TYPES = {"bloom", "gpt2", "roberta", "deberta", "longformer"}


@dataclass
class ModelArguments(BaseModelArguments):
    """Which model, config and tokenizer to fine-tune from."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id (bert-base-cased) or the path of a local model folder."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer name or path, if not the model's; it must be a fast tokenizer."}
    )


@dataclass
class DataTrainingArguments(PredictionDataArgumentsMixin, TokenizationArgumentsMixin):
    """Which data to train and evaluate on, and how to read it."""

    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset of tagged sentences."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data: .json / .jsonl (JSON lines) or .parquet with word and tag lists, or a CoNLL "
            "text file (any other name: train.txt, eng.train, ...)."
        },
    )
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
    return_entity_level_metrics: bool = field(
        default=False, metadata={"help": "Also report precision, recall and F1 of every entity type."}
    )

    def __post_init__(self):
        files = {"train_file": self.train_file, "validation_file": self.validation_file, "test_file": self.test_file}
        files = {argument: path for argument, path in files.items() if path is not None}
        if (self.dataset_name is not None) == bool(files):
            raise ValueError("Give the data one way: --dataset_name (Hub) or --train_file / --validation_file.")
        for argument, path in files.items():
            if not os.path.isfile(path):
                raise ValueError(f"--{argument} {path}: no such file.")
            if not is_conll_file(path) and data_file_builder(path) == "csv":
                raise ValueError(
                    f"--{argument} {path}: CSV / TSV cannot hold lists of words; use a CoNLL text file, JSON lines "
                    "or parquet."
                )
        named = self.tokens_column in self.conll_columns and self.label_column in self.conll_columns
        if not named and any(is_conll_file(path) for path in files.values()):
            raise ValueError(
                f"--conll_columns {' '.join(self.conll_columns)} must name the --tokens_column "
                f"{self.tokens_column!r} and the --label_column {self.label_column!r}."
            )
        super().__post_init__()


def is_conll_file(path: str) -> bool:
    """Whether ``path`` is read as CoNLL text: every file that is not CSV, TSV, JSON (lines) or parquet."""
    return os.path.splitext(without_compression(path))[1] not in DATA_FILE_BUILDERS


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

    for line_number, line in read_text_lines(path):
        fields = line.split()
        if not fields:
            end_sentence()
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) != len(column_names):
            raise Refusal(
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
    required = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    wanted = dict(required, train=True)
    if data_args.dataset_name is not None:
        return load_hub_splits(
            data_args.dataset_name,
            data_args.dataset_config_name,
            {split: names for split, names in data_args.hub_splits().items() if wanted[split]},
            cache_dir=model_args.cache_dir,
            token=model_args.token,
            revision=data_args.dataset_revision,
        )
    if data_args.train_file is None:
        raise Refusal("The tags come from the training data: give --train_file.")
    files = select_data_files(data_args, required, wanted)
    splits = {
        split: read_conll_file(path, data_args.conll_columns)
        if is_conll_file(path)
        else load_data_file(path, cache_dir=model_args.cache_dir)
        for split, path in files.items()
    }
    return splits, files


def check_sentences(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> None:
    """Refuses sentences without a list of words or of tags, with an empty word (which gets no token, its tag
    lost), a missing tag, or another number of tags than words, naming the file, the sentence and the column."""
    words_column, tags_column = data_args.tokens_column, data_args.label_column
    units = {split: "sentence" for split, source in sources.items() if is_conll_file(source)}
    with DataCheck(splits, sources, units=units) as check:
        for split, dataset in splits.items():
            for row, (words, tags) in enumerate(
                zip(column_values(dataset, words_column), column_values(dataset, tags_column)), start=1
            ):
                if not isinstance(words, list) or not words:
                    check.add(split, row, words_column, f"holds {short(words)}, not a list of words")
                elif not isinstance(tags, list):
                    check.add(split, row, tags_column, f"holds {short(tags)}, not a list of tags")
                elif len(words) != len(tags):
                    problem = f"{len(tags)} tags for the {len(words)} words of {words_column!r}"
                    check.add(split, row, tags_column, problem)
                else:
                    kinds = ((words_column, words, "word", (str,)), (tags_column, tags, "tag", (str, int)))
                    for column, items, what, types in kinds:
                        for index, item in enumerate(items, start=1):
                            if is_missing(item) or not isinstance(item, types):
                                check.add(split, row, column, f"{what} {index} of {len(items)} is {short(item)}")


def resolve_tags(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> LabelSet:
    """The tag names and ids, checking every split: tags are strings or ClassLabels, all known."""
    column = data_args.label_column
    feature = splits["train"].features[column]
    inner = getattr(feature, "feature", None)  # the items of a list column
    if isinstance(inner, ClassLabel):
        tags = LabelSet.from_names(inner.names)
    elif getattr(inner, "dtype", None) in ("string", "large_string"):
        names = sorted({tag for sentence in splits["train"][column] for tag in sentence})
        tags = LabelSet.from_names(names)
    else:
        raise Refusal(
            f"Column {column!r} of {sources['train']} must hold lists of tag names (B-PER, I-PER, O, ...) or of "
            f"ClassLabel ids, but holds {feature}: seqeval scores entities by their tag names."
        )
    for split, dataset in splits.items():
        unknown = sorted(
            {tag for sentence in column_values(dataset, column) for tag in sentence} - set(tags.ids), key=str
        )
        if unknown:
            raise Refusal(
                f"Column {column!r} of {sources[split]} holds tags {unknown[:10]} that are not among the "
                f"{len(tags.names)} tags {names_preview(tags.names)} of {sources['train']}."
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


def tokenize_and_align_tags(examples, *, tokenizer, data_args, tags: LabelSet, max_seq_length: int):
    """The model inputs of a batch of sentences, and as ``labels`` each word's tag on its first sub-word token
    (see :func:`align_tags`)."""
    encoded = tokenizer(
        examples[data_args.tokens_column],
        is_split_into_words=True,
        truncation=True,
        max_length=max_seq_length,
        padding="max_length" if data_args.pad_to_max_length else False,
    )
    inside_ids = inside_tag_ids(tags)
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


def load_fast_tokenizer(model_args, config):
    """The model's fast tokenizer (``add_prefix_space`` for byte-level BPE models, which take pre-split words).

    Raises:
        ValueError: for a slow tokenizer, which has no ``word_ids()`` to align tags with.
    """
    tokenizer_options = {"add_prefix_space": True} if config.model_type in ADD_PREFIX_SPACE_MODEL_TYPES else {}
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **tokenizer_options, **model_args.hub_options()
    )
    if not tokenizer.is_fast:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: tags are aligned to sub-words through a fast "
            "tokenizer's word_ids(). Choose a model with a fast tokenizer, or one with --tokenizer_name."
        )
    return tokenizer


def word_level_tags(
    logits: np.ndarray, label_ids: np.ndarray, tags: LabelSet
) -> tuple[list[list[str]], list[list[str]]]:
    """Predicted and true tag names of the scored tokens: each word's first sub-word token (every sub-word
    token with --label_all_tokens)."""
    predicted = np.argmax(logits, axis=-1)
    predictions, references = [], []
    for sentence_predictions, sentence_labels in zip(predicted, label_ids):
        scored = sentence_labels != -100
        predictions.append([tags.names[i] for i in sentence_predictions[scored]])
        references.append([tags.names[i] for i in sentence_labels[scored]])
    return predictions, references


def seqeval_metrics(tags: LabelSet, entity_level: bool):
    """``compute_metrics``: seqeval's entity precision, recall and F1, and token accuracy (:func:`seqeval_scores`)."""

    def compute_metrics(prediction):
        predictions, references = word_level_tags(logits_of(prediction.predictions), prediction.label_ids, tags)
        return seqeval_scores(predictions, references, entity_level=entity_level)

    return compute_metrics


def write_predicted_tags(trainer, *, dataset: Dataset, source: str, tags: LabelSet) -> None:
    """Scores the test split and writes ``predictions.txt``: one line of tags per sentence, one tag per word."""
    output = trainer.predict(dataset, metric_key_prefix="predict")
    metrics = {**output.metrics, "predict_samples": len(dataset)}
    trainer.log_metrics("predict", metrics)
    trainer.save_metrics("predict", metrics)
    predictions, _ = word_level_tags(logits_of(output.predictions), output.label_ids, tags)
    if trainer.is_world_process_zero():
        path = os.path.join(trainer.args.output_dir, "predictions.txt")
        with open(path, "w", encoding="utf-8") as writer:
            writer.write("\n".join(" ".join(sentence) for sentence in predictions) + "\n")
        logger.info(f"Predicted tags of {source} written to {path}, one sentence per line.")


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(ModelArguments, DataTrainingArguments, argv, logger)
    splits, sources = load_splits(data_args, model_args, training_args)
    columns = {data_args.tokens_column: "--tokens_column", data_args.label_column: "--label_column"}
    require_rows_and_columns(splits, sources, columns)
    check_sentences(data_args, splits, sources)
    tags = resolve_tags(data_args, splits, sources)
    keep_splits_to_run(splits, training_args)

    head_suffix = "ForTokenClassification"
    config = load_config(model_args, tags.names, sources["train"], finetuning_task="ner", head_suffix=head_suffix)
    tokenizer = load_fast_tokenizer(model_args, config)
    model = load_model(AutoModelForTokenClassification, model_args, config)

    max_seq_length = min(data_args.max_seq_length or tokenizer.model_max_length, tokenizer.model_max_length)
    tokenize = partial(
        tokenize_and_align_tags, tokenizer=tokenizer, data_args=data_args, tags=tags, max_seq_length=max_seq_length
    )
    tokenize_splits(splits, sources, tokenize, data_args=data_args, training_args=training_args)
    data_collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of(training_args))
    compute_metrics = seqeval_metrics(tags, entity_level=data_args.return_entity_level_metrics)

    trainer = build_trainer(
        model, tokenizer, training_args, splits, data_collator=data_collator, compute_metrics=compute_metrics
    )
    model_card = model_card_kwargs(model_args, data_args, tasks="token-classification")
    predict = partial(write_predicted_tags, dataset=splits.get("test"), source=sources.get("test"), tags=tags)
    train_evaluate_and_report(trainer, splits, checkpoint=checkpoint, model_card=model_card, predict=predict)


if __name__ == "__main__":
    main()
