#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes an audio classification model with layer-wise learning rates on folders of labelled clips, a list
of clips and labels, or a Hub dataset.

    accelerate launch recipes/audio_classification.py --model_name_or_path openai/whisper-tiny.en \
        --train_dir drums/train --validation_dir drums/validation --layer_decay 0.75 --learning_rate 1e-4 \
        --output_dir out/drums

Data comes from one of:

* ``--train_dir`` / ``--validation_dir``: folders with one sub-folder of clips per class (any format soundfile
  reads: WAV, FLAC, OGG, MP3, AIFF, ...);
* ``--train_file`` / ``--validation_file``: CSV, JSON lines or parquet files with a column of clip paths
  (relative paths are read from the file's folder) and a column of labels;
* ``--dataset_name``: a Hub dataset with an audio column and a label column.

Clips are decoded with soundfile (`datasets` decodes audio only through torchcodec, whose wheel needs CUDA, so
this runs the same on a CPU machine and a GPU), mixed down to mono and resampled to the feature extractor's
``sampling_rate`` with a polyphase filter (``scipy.signal.resample_poly``). As transformers'
``run_audio_classification.py`` does, a training clip longer than ``--max_length_seconds`` is cut to a random
window of that length; evaluation clips are whole. The model's feature extractor turns a batch of clips into
its inputs (Whisper's pads every clip to 30 s). Any ``AutoModelForAudioClassification`` works: Whisper's
encoder (``WhisperForAudioClassification``), wav2vec2, HuBERT, AST, ... ``--freeze_base_model`` trains the head
alone (a linear probe on the frozen pretrained model). Without ``--do_train`` the recipe trains (and, without
``--do_eval`` either, evaluates). It writes ``all_results.json`` (``eval_accuracy``) and a model card with the
layer-wise settings and the per-depth learning rates to ``--output_dir``, and prints the final metrics and the
per-depth learning rates.
"""

import inspect
import logging
import math
import os
from dataclasses import dataclass, field

import datasets
import numpy as np
import soundfile
import torch
from datasets import Dataset
from recipe_utils import (
    FolderDataArgumentsMixin,
    LabelSet,
    Refusal,
    accuracy_metrics,
    build_trainer,
    check_media,
    classification_labels,
    column_values,
    decode_media,
    keep_splits_to_run,
    load_config,
    load_model,
    load_train_and_eval_splits,
    media_file,
    model_card_kwargs,
    number_rows,
    prepare_run,
    require_rows_and_columns,
    take_samples,
    train_evaluate_and_report,
)
from recipe_utils import ModelArguments as BaseModelArguments
from scipy.signal import resample_poly
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification


logger = logging.getLogger(__name__)

# The file suffixes read as clips in --train_dir / --validation_dir: the common formats soundfile's libsndfile reads.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64")
# The class names of audio classification heads (wav2vec2 and HuBERT call theirs sequence classification).
HEAD_SUFFIXES = ("ForAudioClassification", "ForSequenceClassification")


@dataclass
class ModelArguments(BaseModelArguments):
    """Which model, config and feature extractor to fine-tune from, and which of its parts to freeze."""

    model_name_or_path: str = field(
        metadata={
            "help": "A Hub model id (openai/whisper-tiny.en, facebook/wav2vec2-base, "
            "MIT/ast-finetuned-audioset-10-10-0.4593) or the path of a local model folder."
        }
    )
    feature_extractor_name: str | None = field(
        default=None, metadata={"help": "Feature extractor name or path, if not the model's."}
    )
    freeze_feature_encoder: bool = field(
        default=True,
        metadata={
            "help": "Freeze the convolutional feature encoder of models that have one (wav2vec2, HuBERT), as "
            "transformers' run_audio_classification does by default; other models have none to freeze."
        },
    )
    freeze_base_model: bool = field(
        default=False,
        metadata={
            "help": "Freeze the whole pretrained model and train the new head alone (a linear probe): Whisper's "
            "encoder, wav2vec2's or HuBERT's base model, AST's transformer."
        },
    )


@dataclass
class DataTrainingArguments(FolderDataArgumentsMixin):
    """Which clips to train and evaluate on, and how to read them."""

    examples_name = "clips"
    file_layout = "lists of clip paths and labels"

    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset with an audio column and a label column."}
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data: .csv, .jsonl or .parquet with a column of clip paths (relative to the file's "
            "folder, or absolute) and a column of labels."
        },
    )
    audio_column_name: str = field(
        default="audio", metadata={"help": "The column holding the clips (paths, or a Hub dataset's audio)."}
    )
    label_column_name: str = field(default="label", metadata={"help": "The column holding the labels."})
    max_length_seconds: float = field(
        default=20.0,
        metadata={"help": "Training clips longer than this are cut to a random window of this many seconds."},
    )

    def __post_init__(self):
        if self.max_length_seconds <= 0:
            raise ValueError(f"--max_length_seconds must be positive, got {self.max_length_seconds}.")
        super().__post_init__()


def read_audio_folder(folder: str, audio_column: str, label_column: str) -> Dataset:
    """The clips of ``folder``'s sub-folders, labelled with their sub-folder's name, in sorted order.

    Raises:
        ValueError: naming the folder if it holds no clips in sub-folders.
    """
    rows = {audio_column: [], label_column: []}
    for label in sorted(os.listdir(folder)):
        class_folder = os.path.join(folder, label)
        if not os.path.isdir(class_folder):
            continue
        for name in sorted(os.listdir(class_folder)):
            if name.lower().endswith(AUDIO_SUFFIXES):
                rows[audio_column].append(os.path.join(class_folder, name))
                rows[label_column].append(label)
    if not rows[audio_column]:
        raise Refusal(
            f"{folder} holds no clips in sub-folders: put each class's clips ({', '.join(AUDIO_SUFFIXES[:5])}, ...) "
            "in a sub-folder named after the class."
        )
    return Dataset.from_dict(rows)


def load_splits(data_args, model_args, training_args) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits "train" (always, for the classes) and "eval", with a description of where each comes from."""
    columns = (data_args.audio_column_name, data_args.label_column_name)
    splits, sources = load_train_and_eval_splits(
        data_args,
        model_args,
        hub_eval_argument="--validation_split_name" if training_args.do_eval else None,
        read_folders=lambda folders: {split: read_audio_folder(folder, *columns) for split, folder in folders.items()},
        folder_kind="audio folder",
    )
    if training_args.do_eval and "eval" not in splits:
        raise Refusal(
            "--do_eval needs evaluation clips: --validation_dir, --validation_file or a Hub evaluation split."
        )
    return splits, sources


def check_audio_column(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> None:
    """Makes every split's audio column one of clips soundfile can read: a Hub ``Audio`` column is left undecoded
    (its bytes or path are read here), and relative paths of a file are made relative to the file's folder.
    Whether each clip exists and can be read is :func:`check_media`'s to say, naming the rows.

    Raises:
        ValueError: naming the column and the split's source if it holds neither audio nor paths.
    """
    column = data_args.audio_column_name
    for split, dataset in splits.items():
        feature = dataset.features[column]
        if isinstance(feature, datasets.Audio):
            splits[split] = dataset.cast_column(column, datasets.Audio(decode=False))
            continue
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise Refusal(
                f"Column {column!r} of {sources[split]} holds {feature}, not audio or clip paths. Set "
                f"--audio_column_name to the column of clips; the columns are {dataset.column_names}."
            )
        folder = os.path.dirname(os.path.abspath(sources[split])) if os.path.isfile(sources[split]) else ""
        paths = [
            os.path.join(folder, path) if isinstance(path, str) and path else path
            for path in column_values(dataset, column)
        ]
        splits[split] = dataset.remove_columns(column).add_column(column, paths)


def resample(waveform: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """``waveform`` at ``target_rate`` samples per second: polyphase resampling with scipy's anti-aliasing FIR
    filter, ``ceil(len * target_rate / rate)`` samples long."""
    if rate == target_rate:
        return waveform
    divisor = math.gcd(rate, target_rate)
    return resample_poly(waveform, target_rate // divisor, rate // divisor).astype(np.float32)


def read_clip(clip: str | dict, sampling_rate: int) -> np.ndarray:
    """A clip (a path, or a Hub audio entry with its ``bytes`` or ``path``) decoded with soundfile, mixed down to
    mono and resampled to ``sampling_rate``."""
    waveform, rate = soundfile.read(media_file(clip), dtype="float32", always_2d=True)
    return resample(waveform.mean(axis=1), rate, sampling_rate)


def random_window(waveform: np.ndarray, max_samples: int) -> np.ndarray:
    """A random window of ``max_samples`` samples of a longer waveform (the waveform itself otherwise), drawn from
    torch's generator, which the Trainer seeds."""
    if len(waveform) <= max_samples:
        return waveform
    offset = int(torch.randint(0, len(waveform) - max_samples + 1, size=(1,)).item())
    return waveform[offset : offset + max_samples]


def apply_transforms(splits, sources, sampling_rate: int, labels: LabelSet, data_args, training_args) -> None:
    """Replaces every split by its random subset of ``--max_*_samples`` clips, decoded and resampled as batches
    are drawn (a clip that fails stops the run naming its row), training clips cut to a random window of
    ``--max_length_seconds``."""
    audio_column, label_column = data_args.audio_column_name, data_args.label_column_name
    max_samples = round(data_args.max_length_seconds * sampling_rate)
    readers = {audio_column: lambda clip: read_clip(clip, sampling_rate)}
    for split, dataset in splits.items():

        def apply(batch, crop=split == "train"):
            return {
                "waveform": [random_window(clip, max_samples) if crop else clip for clip in batch[audio_column]],
                "labels": [labels.ids[value] for value in batch[label_column]],
            }

        dataset = take_samples(number_rows(dataset), data_args.max_samples(split), training_args.seed)
        splits[split] = dataset.with_transform(decode_media(apply, source=sources[split], readers=readers))


class AudioCollator:
    """Turns a batch of waveforms into the model's inputs with its feature extractor (padded to the longest clip
    for extractors that do not pad to a fixed length themselves, as Whisper's and AST's do)."""

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor
        padding = inspect.signature(feature_extractor.__call__).parameters.get("padding")
        self.options = {"padding": "longest"} if padding is not None and padding.default is False else {}

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        features = self.feature_extractor(
            [example["waveform"] for example in examples],
            sampling_rate=self.feature_extractor.sampling_rate,
            return_tensors="pt",
            **self.options,
        )
        batch = {name: features[name] for name in self.feature_extractor.model_input_names if name in features}
        batch["labels"] = torch.tensor([example["labels"] for example in examples])
        return batch


def freeze(model, model_args) -> None:
    """Freezes the convolutional feature encoder (``--freeze_feature_encoder``, where the model has one) or the
    whole pretrained model (``--freeze_base_model``), leaving the new head to train.

    Raises:
        ValueError: for ``--freeze_base_model`` on a model whose pretrained part cannot be told from its head.
    """
    if model_args.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    if not model_args.freeze_base_model:
        return
    if hasattr(model, "freeze_base_model"):  # wav2vec2, HuBERT, ...
        model.freeze_base_model()
    elif hasattr(model, "freeze_encoder"):  # Whisper
        model.freeze_encoder()
    elif model.base_model is not model:
        model.base_model.requires_grad_(False)
    else:
        raise ValueError(
            f"--freeze_base_model: {type(model).__name__} has no base model apart from its head to freeze. Use "
            "--layer_mapping to place its parameters, or freeze them in code."
        )
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    logger.info(f"--freeze_base_model: training {len(trainable)} tensors: {trainable}")


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(ModelArguments, DataTrainingArguments, argv, logger)
    # The transforms read the audio and label columns, which the Trainer would otherwise drop as unknown to the
    # model's forward().
    training_args.remove_unused_columns = False
    splits, sources = load_splits(data_args, model_args, training_args)
    columns = {data_args.audio_column_name: "--audio_column_name", data_args.label_column_name: "--label_column_name"}
    require_rows_and_columns(splits, sources, columns)
    check_audio_column(data_args, splits, sources)
    labels = classification_labels(splits, sources, data_args.label_column_name, "--label_column_name")
    keep_splits_to_run(splits, training_args)
    check_media(splits, sources, {data_args.audio_column_name: "audio"}, data_args=data_args, seed=training_args.seed)

    config = load_config(
        model_args, labels.names, sources["train"], finetuning_task="audio-classification", head_suffix=HEAD_SUFFIXES
    )
    model = load_model(AutoModelForAudioClassification, model_args, config)
    freeze(model, model_args)
    feature_extractor = AutoFeatureExtractor.from_pretrained(
        model_args.feature_extractor_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    apply_transforms(splits, sources, feature_extractor.sampling_rate, labels, data_args, training_args)

    trainer = build_trainer(
        model,
        feature_extractor,
        training_args,
        splits,
        data_collator=AudioCollator(feature_extractor),
        compute_metrics=accuracy_metrics(),
    )
    model_card = model_card_kwargs(
        model_args, data_args, tasks="audio-classification", tags=["audio-classification", "audio"]
    )
    train_evaluate_and_report(trainer, splits, checkpoint=checkpoint, model_card=model_card)


if __name__ == "__main__":
    main()
