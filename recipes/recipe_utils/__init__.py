"""What the recipes share, one module a concern:

* ``arguments``: the recipes' training arguments, the pretrained model to start from, and the mixins of the
  data arguments (a Hub dataset or files, the data to predict, folders of examples, tokenization);
* ``setup``: parsing the arguments and setting a run up (logging, stages, the checkpoint to resume from);
* ``files``: the kinds of data file, told by their suffix, and the checks of a path before anything is read;
* ``readers``: the one reader of data files (CSV, TSV, JSON, JSON lines, Parquet, compressed or not), JSON
  annotation files and line-based text files, each failure one line naming the file and the line;
* ``data``: local files and Hub splits read into datasets (plain values in), their checks, their random subsets;
* ``splits``: the splits a run's stages need, chosen from a recipe's arguments and read with the readers;
* ``checks``: the data checked row by row before a model loads (findings naming the file, the row and the
  column, refused or dropped), and the output folder checked before anything loads;
* ``media``: the images and clips a run uses, checked before the model loads and decoded with the row named;
* ``labels``: the classes of a label column, their checks, and the labels of a model's config;
* ``models``: the pretrained config and model;
* ``metrics``: `evaluate` metrics, or the same computed locally, and accuracy;
* ``images``: image columns and the input size of an image processor;
* ``tokenization``: tokenizing every split, and padding for mixed precision;
* ``detection``: object detection's readers (Pascal VOC, COCO JSON, metadata.jsonl, Hub), box checks, RF-DETR's
  image processor without torchvision and COCO mAP (imported as ``recipe_utils.detection``);
* ``training``: the trainer, training, evaluation and the report at the end, and the lr x decay search.

Each recipe keeps what is specific to its task (how its data is read and checked, its processor, its
transforms or tokenization, its metric and its predictions); ``tests/test_recipes_differences.py`` pins
that split. Nothing here computes layer-wise rates: that is `finetune_llrd`'s (`LLRDTrainingArguments`,
`LLRDTrainer`, `finetune_llrd.model_card`).

The recipes run as scripts, with ``recipes/`` on ``sys.path``, and import every name from the package:
``from recipe_utils import prepare_run``.
"""

from .arguments import (
    DataArgumentsMixin,
    FolderDataArgumentsMixin,
    HubModelArguments,
    ModelArguments,
    PredictionDataArgumentsMixin,
    RecipeArgumentsMixin,
    RecipeTrainingArguments,
    TokenizationArgumentsMixin,
)
from .checks import (
    FINDINGS_SHOWN,
    DataCheck,
    DataError,
    Finding,
    Refusal,
    check_checkpoint_origin,
    check_labels_present,
    check_output_dir,
    check_texts,
    check_unique,
    checkpoint_recipe,
    column_values,
    exit_on_refusal,
    is_missing,
    labelled_splits,
    model_type_of,
    short,
    writable,
)
from .data import (
    load_data_file,
    load_hub_splits,
    require_columns,
    require_rows,
    require_rows_and_columns,
    sample_positions,
    take_samples,
)
from .detection import (
    DETECTIONS_PER_IMAGE,
    IMAGE_SUFFIXES,
    IMAGES_SHOWN,
    BoxReport,
    RfDetrImageProcessorTorch,
    as_dataset,
    center_to_corners,
    check_boxes,
    check_classes_known,
    coco_target,
    corners_to_center,
    detection_metrics,
    detections_tensor,
    mean_average_precision,
    read_coco,
    read_hub_split,
    read_image_folder,
    read_size,
    read_voc,
    sigmoid_top_k_detections,
    size_with_aspect_ratio,
    softmax_detections,
    training_classes,
    uses_softmax_classes,
)
from .files import (
    COMPRESSION_SUFFIXES,
    DATA_FILE_BUILDERS,
    check_data_files,
    data_file_builder,
    is_tsv,
    without_compression,
)
from .images import (
    as_image_column,
    model_input_size,
    resize_image_processor,
)
from .labels import (
    NAMES_SHOWN,
    LabelSet,
    check_labels,
    classification_labels,
    names_preview,
    set_labels,
)
from .media import (
    MEDIA_CHECKS,
    MEDIA_DECODE_LIMIT,
    READERS,
    ROW_COLUMN,
    MediaProblem,
    check_media_files,
    decode_media,
    media_file,
    media_path,
    number_rows,
    read_clip_header,
    read_image,
    undecoded,
)
from .metrics import (
    accuracy_metrics,
    load_metric,
    local_metric,
    logits_of,
)
from .models import (
    load_config,
    load_model,
    treat_loss_as_batch_mean,
)
from .readers import (
    FOLDER_METADATA_FILES,
    folder_read_errors,
    locate_read_error,
    read_data_file,
    read_errors,
    read_json_file,
    read_text_lines,
)
from .setup import (
    STAGES,
    arguments_given,
    choose_stages,
    find_checkpoint_to_resume,
    parse_arguments,
    prepare_run,
    setup_logging,
)
from .splits import (
    check_media,
    keep_splits_to_run,
    load_data_splits,
    load_splits,
    load_train_and_eval_splits,
    select_data_files,
)
from .tokenization import (
    pad_to_multiple_of,
    tokenize_splits,
)
from .training import (
    build_trainer,
    model_card_kwargs,
    print_layerwise_lr_table,
    search_layerwise_rates,
    train_evaluate_and_report,
)


__all__ = [
    "BoxReport",
    "COMPRESSION_SUFFIXES",
    "DATA_FILE_BUILDERS",
    "DETECTIONS_PER_IMAGE",
    "DataArgumentsMixin",
    "DataCheck",
    "DataError",
    "FINDINGS_SHOWN",
    "FOLDER_METADATA_FILES",
    "Finding",
    "FolderDataArgumentsMixin",
    "HubModelArguments",
    "IMAGES_SHOWN",
    "IMAGE_SUFFIXES",
    "LabelSet",
    "MEDIA_CHECKS",
    "MEDIA_DECODE_LIMIT",
    "MediaProblem",
    "ModelArguments",
    "NAMES_SHOWN",
    "PredictionDataArgumentsMixin",
    "READERS",
    "ROW_COLUMN",
    "RecipeArgumentsMixin",
    "RecipeTrainingArguments",
    "Refusal",
    "RfDetrImageProcessorTorch",
    "STAGES",
    "TokenizationArgumentsMixin",
    "accuracy_metrics",
    "arguments_given",
    "as_dataset",
    "as_image_column",
    "build_trainer",
    "center_to_corners",
    "check_boxes",
    "check_checkpoint_origin",
    "check_classes_known",
    "check_data_files",
    "check_labels",
    "check_labels_present",
    "check_media",
    "check_media_files",
    "check_output_dir",
    "check_texts",
    "check_unique",
    "checkpoint_recipe",
    "choose_stages",
    "classification_labels",
    "coco_target",
    "column_values",
    "corners_to_center",
    "data_file_builder",
    "decode_media",
    "detection_metrics",
    "detections_tensor",
    "exit_on_refusal",
    "find_checkpoint_to_resume",
    "folder_read_errors",
    "is_missing",
    "is_tsv",
    "keep_splits_to_run",
    "labelled_splits",
    "load_config",
    "load_data_file",
    "load_data_splits",
    "load_hub_splits",
    "load_metric",
    "load_model",
    "load_splits",
    "load_train_and_eval_splits",
    "local_metric",
    "locate_read_error",
    "logits_of",
    "mean_average_precision",
    "media_file",
    "media_path",
    "model_card_kwargs",
    "model_input_size",
    "model_type_of",
    "names_preview",
    "number_rows",
    "pad_to_multiple_of",
    "parse_arguments",
    "prepare_run",
    "print_layerwise_lr_table",
    "read_clip_header",
    "read_coco",
    "read_data_file",
    "read_errors",
    "read_hub_split",
    "read_image",
    "read_image_folder",
    "read_json_file",
    "read_size",
    "read_text_lines",
    "read_voc",
    "require_columns",
    "require_rows",
    "require_rows_and_columns",
    "resize_image_processor",
    "sample_positions",
    "search_layerwise_rates",
    "select_data_files",
    "set_labels",
    "setup_logging",
    "short",
    "sigmoid_top_k_detections",
    "size_with_aspect_ratio",
    "softmax_detections",
    "take_samples",
    "tokenize_splits",
    "train_evaluate_and_report",
    "training_classes",
    "treat_loss_as_batch_mean",
    "undecoded",
    "uses_softmax_classes",
    "without_compression",
    "writable",
]
