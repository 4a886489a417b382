"""What the recipes share and where they are meant to differ, in the spirit of accelerate's
``ExampleDifferenceTests`` (its ``tests/test_examples.py``): a recipe keeps only what is specific to its task,
and everything else comes from the package ``recipes/recipe_utils/``. A change to what differs must change the
sets below, on purpose."""

import ast
import dataclasses
import glob
import importlib
import inspect
import os
import re
import typing

import pytest
import recipe_utils
from recipe_helpers import RECIPES_DIR


CLASSIFICATION_RECIPES = ("text_classification", "image_classification", "token_classification")
RECIPES = CLASSIFICATION_RECIPES + (
    "question_answering", "audio_classification", "semantic_segmentation", "sft", "seq2seq",
)  # fmt: skip

# The steps every recipe takes from recipe_utils, in this order (the classification recipes take all of SHARED_STEPS;
# the others build their model, tokenizer or trainer class the way their task needs).
CORE_STEPS = ["prepare_run", "load_splits", "keep_splits_to_run", "build_trainer", "train_evaluate_and_report"]

# The shared steps every main() takes, in this order; a recipe's own steps come between them.
SHARED_STEPS = [
    "prepare_run",
    "load_splits",  # each recipe's own, or recipe_utils' where the data needs nothing more
    "keep_splits_to_run",
    "load_config",
    "load_model",
    "build_trainer",
    "model_card_kwargs",
    "train_evaluate_and_report",
]

# Each main()'s calls, in order: the steps that are meant to differ stand between the shared ones.
MAIN_CALLS = {
    "text_classification": [
        "prepare_run", "load_splits", "check_text_columns", "check_text_rows", "resolve_labels", "keep_splits_to_run",
        "load_config", "load_model", "drop_test_labels", "text_tokenizer", "tokenize_splits",
        "DataCollatorWithPadding", "pad_to_multiple_of", "text_metrics", "build_trainer", "model_card_kwargs",
        "partial", "train_evaluate_and_report",
    ],
    "image_classification": [
        "prepare_run", "load_splits", "check_image_columns", "classification_labels", "keep_splits_to_run",
        "check_media", "load_config", "set_drop_path_rate", "load_model", "resize_image_processor", "image_size_forward_options",
        "apply_transforms", "build_trainer", "partial", "accuracy_metrics", "model_card_kwargs",
        "train_evaluate_and_report",
    ],
    "token_classification": [
        "prepare_run", "load_splits", "require_rows_and_columns", "check_sentences", "resolve_tags", "keep_splits_to_run",
        "load_config", "load_fast_tokenizer", "load_model", "min", "partial", "tokenize_splits",
        "DataCollatorForTokenClassification", "pad_to_multiple_of", "seqeval_metrics", "build_trainer",
        "model_card_kwargs", "partial", "train_evaluate_and_report",
    ],
    "question_answering": [
        "prepare_run", "load_splits", "require_rows_and_columns", "check_answers", "keep_splits_to_run", "load_config",
        "load_fast_tokenizer", "load_model", "min", "dict", "tokenize_eval_examples", "partial", "tokenize_splits",
        "partial", "DataCollatorWithPadding", "pad_to_multiple_of", "build_trainer", "partial", "model_card_kwargs",
        "partial", "train_evaluate_and_report",
    ],
    "audio_classification": [
        "prepare_run", "load_splits", "require_rows_and_columns", "check_audio_column", "classification_labels",
        "keep_splits_to_run", "check_media", "load_config", "load_model", "freeze", "apply_transforms", "build_trainer",
        "AudioCollator", "accuracy_metrics", "model_card_kwargs", "train_evaluate_and_report",
    ],
    "semantic_segmentation": [
        "prepare_run", "load_splits", "check_image_and_mask_columns", "load_id2label", "keep_splits_to_run", "partial",
        "len", "check_media", "resize_image_processor", "min", "model_input_size", "hasattr", "build_model", "getattr",
        "getattr", "apply_transforms", "len", "build_trainer", "segmentation_metrics", "model_card_kwargs",
        "train_evaluate_and_report",
    ],
    "sft": [
        "prepare_run", "load_splits", "resolve_data_format", "load_tokenizer", "check_sft_rows", "keep_splits_to_run",
        "select_sft_columns", "load_causal_lm", "mask_assistant_turns", "build_trainer", "sft_trainer_class",
        "count_prepared_examples", "trl_model_card_kwargs", "train_evaluate_and_report",
    ],
    "seq2seq": [
        "prepare_run", "load_splits", "resolve_columns", "check_pairs", "keep_splits_to_run", "load_seq2seq_model",
        "set_generation_defaults", "partial", "tokenize_splits", "DataCollatorForSeq2Seq", "pad_to_multiple_of",
        "generation_metrics", "build_trainer", "layerwise_trainer", "model_card_kwargs", "partial",
        "train_evaluate_and_report",
    ],
}  # fmt: skip

# The steps of each main() that check the data row by row before a model loads (issue #32): the recipe's own for
# its format, and recipe_utils' where recipes share a format (classification labels, images and clips). The output
# folder is checked by prepare_run, before anything is read.
DATA_CHECKS = {
    "text_classification": ["check_text_rows", "resolve_labels"],
    "image_classification": ["classification_labels", "check_media"],
    "token_classification": ["check_sentences", "resolve_tags"],
    "question_answering": ["check_answers"],
    "audio_classification": ["check_audio_column", "classification_labels", "check_media"],
    "semantic_segmentation": ["check_media"],
    "sft": ["check_sft_rows"],
    "seq2seq": ["check_pairs"],
}
SHARED_DATA_CHECKS = {"classification_labels", "check_media"}
# The calls that load a model (or its config), which every data check comes before.
MODEL_LOADS = {"load_config", "load_model", "load_seq2seq_model", "load_causal_lm", "build_model"}

# What each recipe defines itself: its task's data, processing, metric and predictions.
OWN_DEFINITIONS = {
    "text_classification": {
        "GlueTask", "ModelArguments", "DataTrainingArguments", "load_splits", "resolve_text_columns",
        "check_text_columns", "check_text_rows", "resolve_labels", "tokenize_texts", "text_tokenizer", "drop_test_labels",
        "text_metrics", "write_predictions", "main",
    },
    "image_classification": {
        "ModelArguments", "DataTrainingArguments", "read_image_folders", "load_splits", "resolve_image_column",
        "resolve_label_column", "random_resized_crop_box", "TrainTransform", "EvalTransform",
        "check_image_columns", "set_drop_path_rate", "image_size_forward_options",
        "apply_transforms", "collate", "main",
    },
    "token_classification": {
        "ModelArguments", "DataTrainingArguments", "is_conll_file", "read_conll_file", "load_splits",
        "check_sentences", "resolve_tags", "inside_tag_ids", "align_tags", "seqeval_scores", "tokenize_and_align_tags",
        "load_fast_tokenizer", "word_level_tags", "seqeval_metrics", "write_predicted_tags", "main",
    },
    "question_answering": {
        "DataTrainingArguments", "ModelArguments", "QuestionAnsweringTrainer", "answer_f1", "answer_problems",
        "answer_token_span",
        "check_answers", "load_fast_tokenizer", "main", "normalize_answer", "postprocess_qa_predictions",
        "prepare_eval_features", "prepare_train_features", "shorten_questions", "squad_scores", "tokenize_eval_examples",
        "tokenize_windows",
        "write_json", "write_predictions",
    },
    "audio_classification": {
        "AudioCollator", "DataTrainingArguments", "ModelArguments", "apply_transforms", "check_audio_column", "freeze",
        "load_splits", "main", "random_window", "read_audio_folder", "read_clip", "resample",
    },
    "semantic_segmentation": {
        "DataTrainingArguments", "ModelArguments", "SegmentationTransform", "apply_transforms", "build_model",
        "check_class_ids", "check_image_and_mask_columns", "check_pair", "checked_mask", "collate",
        "default_out_indices", "image_mask_folder", "is_segmentation_checkpoint", "load_id2label", "load_splits", "main",
        "mean_iou", "random_scale_crop_flip", "reduce_labels", "resize_pair", "segmentation_metrics",
        "set_loss_ignore_index", "upernet_on_backbone", "upsampled_predictions",
    },
    "sft": {
        "DataTrainingArguments", "ModelArguments", "SFTTrainingArguments", "add_perplexity", "assistant_spans",
        "check_sft_rows", "count_prepared_examples", "known_roles", "load_causal_lm", "load_tokenizer", "main",
        "mask_assistant_turns", "resolve_data_format", "template_problems", "turn_problems", "select_sft_columns", "sft_trainer_class", "tokenize_with_assistant_mask",
        "trl_masks_assistant_turns", "trl_model_card_kwargs",
    },
    "seq2seq": {
        "DataTrainingArguments", "ModelArguments", "Seq2SeqRecipeTrainingArguments", "check_pairs", "decode",
        "generation_metrics",
        "load_seq2seq_model", "main", "resolve_columns", "rouge_scores", "sacrebleu_scores",
        "set_generation_defaults", "split_sentences", "tokenize_pairs", "write_generations",
    },
}  # fmt: skip

# The arguments (flags) each recipe adds to the shared ones.
OWN_MODEL_ARGUMENTS = {
    "text_classification": {"tokenizer_name"},
    "image_classification": {"image_processor_name", "image_size", "drop_path_rate"},
    "token_classification": {"tokenizer_name"},
    "question_answering": {"tokenizer_name"},
    "audio_classification": {"feature_extractor_name", "freeze_feature_encoder", "freeze_base_model"},
    "semantic_segmentation": {
        "image_processor_name", "image_size", "head", "backbone_out_indices", "decode_head_hidden_size",
        "use_auxiliary_head",
    },
    "sft": {
        "tokenizer_name", "dtype", "attn_implementation", "use_peft", "lora_r", "lora_alpha", "lora_dropout",
        "lora_target_modules", "lora_modules_to_save", "use_rslora", "use_dora",
    },
    "seq2seq": {"tokenizer_name"},
}  # fmt: skip
OWN_DATA_ARGUMENTS = {
    "text_classification": {
        "task_name", "column_names", "text_column", "text_pair_column", "label_column", "max_seq_length",
    },
    "image_classification": {"train_val_split", "image_column", "label_column"},
    "token_classification": {
        "conll_columns", "tokens_column", "label_column", "label_all_tokens", "max_seq_length",
        "return_entity_level_metrics",
    },
    "question_answering": {
        "question_column_name", "context_column_name", "answer_column_name", "max_seq_length", "doc_stride",
        "version_2_with_negative", "null_score_diff_threshold", "n_best_size", "max_answer_length",
    },
    "audio_classification": {"audio_column_name", "label_column_name", "max_length_seconds"},
    "semantic_segmentation": {
        "image_column_name", "label_column_name", "id2label_file", "reduce_labels", "ignore_index", "min_scale",
        "max_scale",
    },
    "sft": {"messages_column", "prompt_column", "completion_column"},
    "seq2seq": {
        "text_column", "summary_column", "source_lang", "target_lang", "source_prefix", "max_source_length",
        "max_target_length", "ignore_pad_token_for_loss", "num_beams", "drop_invalid_rows",
    },
}  # fmt: skip
# Shared arguments a recipe declares again only to say more in --help (type and default stay the shared ones).
REWORDED_ARGUMENTS = {
    "text_classification": {"model_name_or_path", "dataset_name", "train_file"},
    "image_classification": {"model_name_or_path", "dataset_name", "validation_split_name", "train_file"},
    "token_classification": {"model_name_or_path", "dataset_name", "train_file", "test_file"},
    "question_answering": {"model_name_or_path", "dataset_name", "train_file", "test_file"},
    "audio_classification": {"model_name_or_path", "dataset_name", "train_file"},
    "semantic_segmentation": {"model_name_or_path", "dataset_name", "train_file", "train_dir", "validation_dir"},
    "sft": {"model_name_or_path", "train_file"},
    "seq2seq": {"model_name_or_path", "train_file"},
}
# The shared model arguments each recipe takes: sft.py's --trust_remote_code is TRL's SFTConfig's, so it takes
# the Hub fields alone.
MODEL_BASES = dict.fromkeys(RECIPES, recipe_utils.ModelArguments) | {"sft": recipe_utils.HubModelArguments}
# The shared data arguments each recipe takes: the Hub dataset, files and subsets; the data to predict; folders of
# examples; tokenization.
DATA_MIXINS = {
    "text_classification": (recipe_utils.PredictionDataArgumentsMixin, recipe_utils.TokenizationArgumentsMixin),
    "image_classification": (recipe_utils.FolderDataArgumentsMixin,),
    "token_classification": (recipe_utils.PredictionDataArgumentsMixin, recipe_utils.TokenizationArgumentsMixin),
    "question_answering": (recipe_utils.PredictionDataArgumentsMixin, recipe_utils.TokenizationArgumentsMixin),
    "audio_classification": (recipe_utils.FolderDataArgumentsMixin,),
    "semantic_segmentation": (recipe_utils.FolderDataArgumentsMixin,),
    "sft": (recipe_utils.DataArgumentsMixin,),
    "seq2seq": (recipe_utils.PredictionDataArgumentsMixin, recipe_utils.TokenizationArgumentsMixin),
}


def _tree(recipe: str) -> ast.Module:
    return _parse(os.path.join(RECIPES_DIR, f"{recipe}.py"))


def _parse(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as handle:
        return ast.parse(handle.read())


def _main(recipe: str) -> ast.FunctionDef:
    return next(node for node in _tree(recipe).body if isinstance(node, ast.FunctionDef) and node.name == "main")


def _called_names(function: ast.FunctionDef) -> list[str]:
    calls = [node for node in ast.walk(function) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    return [call.func.id for call in sorted(calls, key=lambda call: (call.lineno, call.col_offset))]


def _functions(module: str) -> dict[str, str]:
    """Module-level function name -> its code (arguments and body, without its name and docstring)."""
    return _functions_of(_tree(module))


def _shared_functions() -> dict[str, str]:
    """:func:`_functions` of every module of the package recipe_utils."""
    functions = {}
    for path in sorted(glob.glob(os.path.join(RECIPES_DIR, "recipe_utils", "*.py"))):
        functions.update(_functions_of(_parse(path)))
    return functions


def _functions_of(tree: ast.Module) -> dict[str, str]:
    functions = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            functions[node.name] = ast.dump(node.args) + ast.dump(ast.Module(body=body, type_ignores=[]))
    return functions


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(cls)}


def _declared(cls: type) -> set[str]:
    return set(cls.__dict__.get("__annotations__", {}))


@pytest.mark.parametrize("recipe", RECIPES)
def test_main_takes_the_shared_steps_and_its_own_between_them(recipe):
    calls = _called_names(_main(recipe))
    assert calls == MAIN_CALLS[recipe]
    steps = SHARED_STEPS if recipe in CLASSIFICATION_RECIPES else CORE_STEPS
    assert [call for call in calls if call in steps] == steps
    module = importlib.import_module(recipe)
    for name in steps:
        owner = recipe_utils if name != "load_splits" else module
        assert getattr(module, name) is getattr(owner, name), name


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_checks_its_data_before_it_loads_a_model(recipe):
    calls = _called_names(_main(recipe))
    first_load = min(calls.index(name) for name in MODEL_LOADS if name in calls)
    assert all(step in calls[:first_load] for step in DATA_CHECKS[recipe]), calls[:first_load]
    module = importlib.import_module(recipe)
    for step in DATA_CHECKS[recipe]:
        owner = recipe_utils if step in SHARED_DATA_CHECKS else module
        assert getattr(module, step) is getattr(owner, step), step


@pytest.mark.parametrize("recipe", RECIPES)
def test_main_reads_in_one_screen_of_named_steps(recipe):
    main = _main(recipe)
    assert main.end_lineno - main.lineno + 1 <= 80
    with open(os.path.join(RECIPES_DIR, f"{recipe}.py"), encoding="utf-8") as handle:
        body = handle.read().splitlines()[main.lineno - 1 : main.end_lineno]
    assert not [line for line in body if re.match(r"\s*# \d+\.", line)]  # no numbered narration


@pytest.mark.parametrize("recipe", RECIPES)
def test_each_recipe_defines_only_what_its_task_needs(recipe):
    defined = {node.name for node in _tree(recipe).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert defined == OWN_DEFINITIONS[recipe]
    # None of them is a copy, under its name or another, of a shared function or of another recipe's.
    shared = _shared_functions()
    # load_splits is the one shared step a recipe may define anew: when its data needs more than recipe_utils'.
    assert not (defined - {"load_splits"}) & set(shared)
    ours = set(_functions(recipe).values())
    for other in RECIPES:
        if other != recipe:
            assert not ours & set(_functions(other).values()), other
    assert not ours & set(shared.values())


@pytest.mark.parametrize("recipe", RECIPES)
def test_each_recipe_adds_only_its_own_arguments_to_the_shared_ones(recipe):
    module = importlib.import_module(recipe)
    model_arguments, data_arguments = module.ModelArguments, module.DataTrainingArguments
    assert model_arguments.__bases__ == (MODEL_BASES[recipe],)
    assert data_arguments.__bases__ == DATA_MIXINS[recipe]

    reworded = REWORDED_ARGUMENTS[recipe]
    assert _declared(model_arguments) | _declared(data_arguments) == (
        OWN_MODEL_ARGUMENTS[recipe] | OWN_DATA_ARGUMENTS[recipe] | reworded
    )
    shared, shared_types = _fields(MODEL_BASES[recipe]), typing.get_type_hints(MODEL_BASES[recipe])
    for mixin in DATA_MIXINS[recipe]:
        shared.update(_fields(mixin))
        shared_types.update(typing.get_type_hints(mixin))
    own_types = {**typing.get_type_hints(model_arguments), **typing.get_type_hints(data_arguments)}
    assert set(_fields(model_arguments)) | set(_fields(data_arguments)) == (
        set(shared) | OWN_MODEL_ARGUMENTS[recipe] | OWN_DATA_ARGUMENTS[recipe]
    )
    for name in reworded:
        own = {**_fields(model_arguments), **_fields(data_arguments)}[name]
        assert (own_types[name], own.default) == (shared_types[name], shared[name].default), name
        assert own.metadata["help"] != shared[name].metadata["help"], name


def test_the_recipes_share_their_steps_from_one_package():
    # Every recipe_utils function a main() calls is a public, documented helper with its arguments named.
    for name in SHARED_STEPS:
        if name == "load_splits":
            continue
        function = getattr(recipe_utils, name)
        assert function.__module__.startswith(f"{recipe_utils.__name__}."), name
        assert function.__doc__, name
        assert not any(
            parameter.kind is inspect.Parameter.VAR_KEYWORD
            for parameter in inspect.signature(function).parameters.values()
        ), name
