#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes an encoder-decoder (T5, BART, Marian, a warm-started EncoderDecoderModel, ...) for summarisation or
translation with layer-wise learning rates, through ``Seq2SeqTrainer``, scored with ROUGE or sacreBLEU.

    accelerate launch recipes/seq2seq.py --model_name_or_path google-t5/t5-small --dataset_name EdinburghNLP/xsum \
        --source_prefix "summarize: " --layer_decay 0.9 --learning_rate 3e-4 --output_dir out/xsum
    accelerate launch recipes/seq2seq.py --model_name_or_path Helsinki-NLP/opus-mt-en-es \
        --train_file ../shared/data/translation_en_es/train.jsonl.gz \
        --validation_file ../shared/data/translation_en_es/validation.jsonl \
        --source_lang en --target_lang es --layer_decay 0.9 --learning_rate 5e-5 --output_dir out/en-es

The trainer is ``layerwise_trainer(Seq2SeqTrainer)`` and the arguments are ``Seq2SeqTrainingArguments`` with the
layer-wise fields; the data and generation flags are those of transformers' ``run_summarization.py`` and
``run_translation.py`` (``--text_column``, ``--summary_column``, ``--source_lang``, ``--target_lang``,
``--max_source_length``, ``--max_target_length``, ``--num_beams``, ``--source_prefix``). The encoder's blocks sit
below the decoder's: depth 0 is the shared embeddings, then encoder block 1..E, decoder block E+1..E+D, then the
head.

* Summarisation (without ``--source_lang``): a document column and a summary column (JSON lines, CSV, parquet or
  ``--dataset_name``), scored with ROUGE-1/2/L/Lsum (evaluate's ``rouge``, or the same computed with
  ``rouge_score`` offline), in percent.
* Translation (``--source_lang en --target_lang es``): a ``translation`` column of ``{lang: text}`` pairs, as
  run_translation reads it, scored with sacreBLEU (``bleu``).

Evaluation generates (``--predict_with_generate``, on by default here) with ``--num_beams`` beams up to
``--max_target_length`` tokens. It writes ``all_results.json`` (``eval_rouge1`` ... ``eval_rougeLsum`` or
``eval_bleu``, and ``eval_gen_len``), ``generated_predictions.txt`` with ``--do_predict``, and a model card with
the layer-wise settings to ``--output_dir``, and prints the final metrics and the per-depth learning rates.
"""

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from datasets import Dataset
from recipe_utils import (
    DataCheck,
    PredictionDataArgumentsMixin,
    RecipeArgumentsMixin,
    Refusal,
    TokenizationArgumentsMixin,
    build_trainer,
    check_data_files,
    check_texts,
    column_values,
    is_missing,
    keep_splits_to_run,
    load_metric,
    load_model,
    load_splits,
    model_card_kwargs,
    pad_to_multiple_of,
    prepare_run,
    require_rows_and_columns,
    short,
    tokenize_splits,
    train_evaluate_and_report,
)
from recipe_utils import ModelArguments as BaseModelArguments
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from finetune_llrd import layerwise_arguments, layerwise_trainer
from finetune_llrd.search import SearchArguments


logger = logging.getLogger(__name__)

# Column names tried, in order, when --text_column / --summary_column are not given (XSum, CNN/DailyMail, ...).
TEXT_COLUMN_GUESSES = ("document", "article", "text", "dialogue")
SUMMARY_COLUMN_GUESSES = ("summary", "highlights", "abstract")
TRANSLATION_COLUMN = "translation"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@dataclass
class Seq2SeqRecipeTrainingArguments(
    RecipeArgumentsMixin, layerwise_arguments(Seq2SeqTrainingArguments), SearchArguments
):
    """`Seq2SeqTrainingArguments` with the layer-wise fields, the recipes' own settings and the lr x decay search."""

    predict_with_generate: bool = field(
        default=True,
        metadata={
            "help": "Generate at evaluation and prediction, to score ROUGE / BLEU (on by default in this recipe; "
            "--predict_with_generate false scores the loss alone, faster)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.search_trials > 0 and self.predict_with_generate:
            raise ValueError(
                "--search_trials scores its trials without generating (by the loss): pass --predict_with_generate "
                "false with it, then evaluate the chosen configuration with generation in a second run."
            )


@dataclass
class ModelArguments(BaseModelArguments):
    """Which encoder-decoder, config and tokenizer to fine-tune from."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id (google-t5/t5-small, facebook/bart-base, ...) or a local model folder."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})


@dataclass
class DataTrainingArguments(PredictionDataArgumentsMixin, TokenizationArgumentsMixin):
    """Which data to train and evaluate on, and how to read and tokenize it (run_summarization's names)."""

    train_file: str | None = field(
        default=None, metadata={"help": "Local training data: JSON lines (.jsonl, optionally .gz), CSV or parquet."}
    )
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "Summarisation: the column of documents. Default: the first of "
            f"{', '.join(TEXT_COLUMN_GUESSES)} the data has."
        },
    )
    summary_column: str | None = field(
        default=None,
        metadata={
            "help": "Summarisation: the column of summaries. Default: the first of "
            f"{', '.join(SUMMARY_COLUMN_GUESSES)} the data has."
        },
    )
    source_lang: str | None = field(
        default=None, metadata={"help": "Translation: the source language, a key of the 'translation' column (en)."}
    )
    target_lang: str | None = field(
        default=None, metadata={"help": "Translation: the target language, a key of the 'translation' column (es)."}
    )
    source_prefix: str = field(
        default="",
        metadata={"help": "Text put before every source (T5: 'summarize: ', 'translate English to German: ')."},
    )
    max_source_length: int = field(
        default=1024, metadata={"help": "Source tokens per example after tokenization; longer sources are truncated."}
    )
    max_target_length: int = field(
        default=128,
        metadata={
            "help": "Target tokens per example (longer targets are truncated); also the length generation stops "
            "at, unless --generation_max_length."
        },
    )
    num_beams: int | None = field(
        default=None,
        metadata={"help": "Beams of the generation at evaluation and prediction (default: the model's, else 1)."},
    )
    ignore_pad_token_for_loss: bool = field(
        default=True, metadata={"help": "With --pad_to_max_length, leave the padded target positions out of the loss."}
    )
    drop_invalid_rows: bool = field(
        default=False,
        metadata={
            "help": "Leave out the training and evaluation rows whose source or target text is empty or missing, "
            "with a warning that counts them, as run_summarization does in silence. By default the run stops on "
            "them, naming each row."
        },
    )

    def __post_init__(self):
        if self.dataset_name is not None and any(self.data_files().values()):
            raise ValueError("Give either --dataset_name or local files (--train_file, ...), not both.")
        if self.dataset_name is None and not any(self.data_files().values()):
            raise ValueError("Give the data: --dataset_name (Hub) or --train_file / --validation_file / --test_file.")
        if (self.source_lang is None) != (self.target_lang is None):
            raise ValueError("Translation needs both --source_lang and --target_lang (summarisation neither).")
        if self.is_translation and (self.text_column or self.summary_column):
            raise ValueError(
                "--text_column / --summary_column are for summarisation; translation reads the 'translation' column."
            )
        for name in ("max_source_length", "max_target_length", "num_beams"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value}.")
        arguments = {"train": "train_file", "eval": "validation_file", "test": "test_file"}
        check_data_files({arguments[split]: path for split, path in self.data_files().items()})
        super().__post_init__()

    @property
    def is_translation(self) -> bool:
        return self.source_lang is not None


def resolve_columns(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> tuple[str, str]:
    """The source and target columns (summarisation), or the translation column twice, after checking that every
    split holds rows and them, and that the translation pairs hold both languages.

    Raises:
        ValueError: naming the split's columns (or languages) and the flag that chooses them.
    """
    columns = next(iter(splits.values())).column_names
    if data_args.is_translation:
        require_rows_and_columns(splits, sources, {TRANSLATION_COLUMN: "--source_lang / --target_lang"})
        for split, dataset in splits.items():
            languages = set(dataset[0][TRANSLATION_COLUMN])
            wanted = ((data_args.source_lang, "--source_lang"), (data_args.target_lang, "--target_lang"))
            for language, argument in wanted:
                if language not in languages:
                    raise Refusal(
                        f"The translations of {sources[split]} have no language {language!r}; they hold "
                        f"{sorted(languages)}. Set {argument} to one of them."
                    )
        return TRANSLATION_COLUMN, TRANSLATION_COLUMN
    text_column = data_args.text_column or next((c for c in TEXT_COLUMN_GUESSES if c in columns), None)
    summary_column = data_args.summary_column or next((c for c in SUMMARY_COLUMN_GUESSES if c in columns), None)
    for column, argument in ((text_column, "--text_column"), (summary_column, "--summary_column")):
        if column is None:
            raise Refusal(f"Which column holds the {argument[2:-7]}s? Set {argument} to one of {columns}.")
    require_rows_and_columns(splits, sources, {text_column: "--text_column"}, {summary_column: "--summary_column"})
    return text_column, summary_column


def check_pairs(data_args, splits: dict[str, Dataset], sources: dict[str, str], columns: tuple[str, str]) -> None:
    """Refuses (or with ``--drop_invalid_rows`` drops, in the splits that train or score) the rows whose source or
    target text is empty or missing, naming the file, the row and the column: an empty target trains the model to
    stop at once. The rows to predict keep their places, so they are refused, not dropped."""
    drop = {"drop_flag": "--drop_invalid_rows", "drop": data_args.drop_invalid_rows}
    with DataCheck(splits, sources, **drop) as check:
        for split, dataset in splits.items():
            droppable = not split.startswith("test")
            if not data_args.is_translation:
                texts = {columns[0]: "source text", columns[1]: "target summary"}
                check_texts(check, texts, splits=[split], droppable=droppable)
                continue
            languages = {data_args.source_lang: "source text", data_args.target_lang: "target translation"}
            for row, pair in enumerate(column_values(dataset, TRANSLATION_COLUMN), start=1):
                for language, what in languages.items():
                    text = pair.get(language) if isinstance(pair, dict) else None
                    if is_missing(text) or not isinstance(text, str):
                        problem = f"the {what} ({language!r}) is {short(text)}"
                        check.add(split, row, TRANSLATION_COLUMN, problem, droppable=droppable)


def load_seq2seq_model(model_args):
    """The tokenizer and the model (its loss read as a batch mean), after checking that the model can start
    decoding: a warm-started EncoderDecoderModel needs ``decoder_start_token_id`` and ``pad_token_id`` set."""
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    model = load_model(AutoModelForSeq2SeqLM, model_args, config)
    for name in ("decoder_start_token_id", "pad_token_id"):
        if getattr(model.config, name, None) is None:
            raise ValueError(
                f"{model_args.model_name_or_path} has no {name} in its config, which the decoder needs to start (an "
                "EncoderDecoderModel warm-started from two encoders: set model.config.decoder_start_token_id and "
                "pad_token_id, e.g. to the tokenizer's [CLS] and [PAD], and save it)."
            )
    embeddings = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return tokenizer, model


def set_generation_defaults(data_args, training_args, model_args) -> None:
    """Generation at evaluation stops at ``--max_target_length`` tokens (unless ``--generation_max_length``) and
    uses ``--num_beams`` beams, as run_summarization sets them; T5 without ``--source_prefix`` gets a warning."""
    if training_args.generation_max_length is None:
        training_args.generation_max_length = data_args.max_target_length
    if data_args.num_beams is not None:
        training_args.generation_num_beams = data_args.num_beams
    if not data_args.source_prefix and "t5" in model_args.model_name_or_path.lower():
        logger.warning(
            "T5 was pre-trained with a task prefix: pass --source_prefix 'summarize: ' (or 'translate English to "
            "German: ', ...) for a T5 checkpoint."
        )


def tokenize_pairs(examples, *, tokenizer, data_args, columns: tuple[str, str]):
    """The model inputs of a batch of source texts and, where the batch has them, their ``labels``."""
    source_column, target_column = columns
    if data_args.is_translation:
        pairs = examples[TRANSLATION_COLUMN]
        sources = [pair[data_args.source_lang] for pair in pairs]
        targets = [pair[data_args.target_lang] for pair in pairs]
    else:
        sources = examples[source_column]
        targets = examples.get(target_column)
    padding = "max_length" if data_args.pad_to_max_length else False
    inputs = [data_args.source_prefix + (text or "") for text in sources]
    model_inputs = tokenizer(inputs, max_length=data_args.max_source_length, padding=padding, truncation=True)
    if targets is not None:
        labels = tokenizer(
            text_target=[text or "" for text in targets], max_length=data_args.max_target_length, padding=padding,
            truncation=True,
        )["input_ids"]  # fmt: skip
        if padding and data_args.ignore_pad_token_for_loss:
            labels = [[token if token != tokenizer.pad_token_id else -100 for token in label] for label in labels]
        model_inputs["labels"] = labels
    return model_inputs


def split_sentences(text: str) -> str:
    """The sentences of ``text`` one per line, as ROUGE-Lsum wants them (run_summarization uses nltk's punkt,
    which needs a download; this splits after ., ! or ? followed by white space)."""
    return "\n".join(sentence for sentence in re.split(r"(?<=[.!?])\s+", text.strip()) if sentence)


def rouge_scores(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = False) -> dict[str, float]:
    """ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures as evaluate's ``rouge`` computes them with
    `rouge_score` (its default tokenizer: lower case, words of letters and digits), averaged over the examples.

    evaluate's default aggregation reports the median of 1,000 bootstrap means, which is this mean up to its
    sampling noise; ``use_aggregator=False`` there gives the per-example scores whose mean this is. ROUGE-Lsum
    splits texts into sentences at newlines.

    Args:
        predictions: the generated texts.
        references: one reference text per prediction.
        use_stemmer: strip word suffixes with the Porter stemmer before matching (evaluate's ``use_stemmer``).

    Returns:
        ``{"rouge1": f, "rouge2": f, "rougeL": f, "rougeLsum": f}``, each in [0, 1].
    """
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    scores = [scorer.score(reference, prediction) for prediction, reference in zip(predictions, references)]
    return {key: float(np.mean([score[key].fmeasure for score in scores])) if scores else 0.0 for key in ROUGE_TYPES}


def sacrebleu_scores(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, Any]:
    """Corpus BLEU as evaluate's ``sacrebleu`` computes it, with sacreBLEU's defaults (13a tokenization,
    exponential smoothing, case-sensitive).

    Args:
        predictions: the generated texts.
        references: the reference of every prediction, or a list of references each (as many for every one).

    Returns:
        ``score`` (BLEU, 0-100), ``counts``, ``totals``, ``precisions``, ``bp``, ``sys_len`` and ``ref_len``, as
        evaluate returns them.
    """
    import sacrebleu

    references = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
    if len({len(reference) for reference in references}) > 1:
        raise ValueError("sacreBLEU needs the same number of references for every prediction.")
    streams = [list(stream) for stream in zip(*references)]  # one stream per reference position
    bleu = sacrebleu.corpus_bleu(list(predictions), streams)
    return {
        "score": bleu.score, "counts": bleu.counts, "totals": bleu.totals, "precisions": bleu.precisions,
        "bp": bleu.bp, "sys_len": bleu.sys_len, "ref_len": bleu.ref_len,
    }  # fmt: skip


def decode(tokenizer, token_ids: np.ndarray) -> list[str]:
    """Texts of generated or label token ids (-100, the ignored positions, read as padding)."""
    token_ids = np.where(token_ids != -100, token_ids, tokenizer.pad_token_id)
    return [text.strip() for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]


def generation_metrics(tokenizer, data_args, predict_with_generate: bool):
    """``compute_metrics`` of generated token ids: ROUGE (in percent) for summarisation, sacreBLEU's ``bleu`` for
    translation, and the mean generated length ``gen_len``. None without ``--predict_with_generate``: the
    evaluation then reports the loss alone, as run_summarization does."""
    if not predict_with_generate:
        return None
    metric = (
        load_metric("sacrebleu", local=sacrebleu_scores)
        if data_args.is_translation
        else load_metric("rouge", local=rouge_scores)
    )

    def compute_metrics(prediction):
        generated = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        predictions, references = decode(tokenizer, generated), decode(tokenizer, prediction.label_ids)
        if data_args.is_translation:
            result = {"bleu": metric(predictions=predictions, references=[[text] for text in references])["score"]}
        else:
            scores = metric(
                predictions=[split_sentences(text) for text in predictions],
                references=[split_sentences(text) for text in references],
            )
            result = {key: float(scores[key]) * 100 for key in ROUGE_TYPES}
        generated = np.where(generated != -100, generated, tokenizer.pad_token_id)
        lengths = [int(np.count_nonzero(row != tokenizer.pad_token_id)) for row in generated]
        result["gen_len"] = float(np.mean(lengths)) if lengths else 0.0
        return {key: round(value, 4) for key, value in result.items()}

    return compute_metrics


def write_generations(trainer, *, splits: dict[str, Dataset], tokenizer) -> None:
    """Writes ``generated_predictions.txt``: the generated text of every example of the test split, one a line."""
    output = trainer.predict(splits["test"], metric_key_prefix="predict")
    metrics = dict(output.metrics, predict_samples=len(splits["test"]))
    trainer.log_metrics("predict", metrics)
    trainer.save_metrics("predict", metrics)
    if trainer.is_world_process_zero() and trainer.args.predict_with_generate:
        generated = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        path = os.path.join(trainer.args.output_dir, "generated_predictions.txt")
        with open(path, "w", encoding="utf-8") as writer:
            writer.write("\n".join(text.replace("\n", " ") for text in decode(tokenizer, generated)) + "\n")
        logger.info(f"Generated texts written to {path}.")


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(
        ModelArguments, DataTrainingArguments, argv, logger, training_arguments=Seq2SeqRecipeTrainingArguments
    )
    splits, sources = load_splits(data_args, model_args, training_args)
    columns = resolve_columns(data_args, splits, sources)
    check_pairs(data_args, splits, sources, columns)
    keep_splits_to_run(splits, training_args)

    tokenizer, model = load_seq2seq_model(model_args)
    set_generation_defaults(data_args, training_args, model_args)
    tokenize = partial(tokenize_pairs, tokenizer=tokenizer, data_args=data_args, columns=columns)
    tokenize_splits(splits, sources, tokenize, data_args=data_args, training_args=training_args)
    data_collator = DataCollatorForSeq2Seq(
        tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of(training_args)
    )
    compute_metrics = generation_metrics(tokenizer, data_args, training_args.predict_with_generate)

    trainer = build_trainer(
        model,
        tokenizer,
        training_args,
        splits,
        data_collator=data_collator,
        compute_metrics=compute_metrics,
        trainer_class=layerwise_trainer(Seq2SeqTrainer),
    )
    task = "translation" if data_args.is_translation else "summarization"
    model_card = model_card_kwargs(model_args, data_args, tasks=task)
    predict = partial(write_generations, splits=splits, tokenizer=tokenizer)
    train_evaluate_and_report(trainer, splits, checkpoint=checkpoint, model_card=model_card, predict=predict)


if __name__ == "__main__":
    main()
