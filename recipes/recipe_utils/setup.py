"""Setting a run up as every recipe does: parsing the command line (or one arguments file), logging, the check
that launched processes joined, whether to train and evaluate, the checkpoint to resume from, the seed
(:func:`prepare_run` does it all)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import datasets
import transformers
import yaml
from transformers import HfArgumentParser, set_seed

from finetune_llrd.checkpoints import complete_checkpoints, parse_resume_argument, resolve_resume_checkpoint
from finetune_llrd.launching import check_processes_joined

from .arguments import RecipeTrainingArguments
from .checks import Refusal, check_checkpoint_origin, check_output_dir, exit_on_refusal


logger = logging.getLogger(__name__)

STAGES = ("do_train", "do_eval", "do_predict")


def parse_arguments(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parses the command line, or a single ``.json`` / ``.yaml`` / ``.yml`` file holding every argument.

    Args:
        dataclass_types: the argument dataclasses, in the order they are returned.
        argv: the arguments; ``sys.argv[1:]`` by default.

    Returns:
        One instance of each dataclass.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser(dataclass_types)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(yaml_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def arguments_given(argv: Sequence[str]) -> set[str]:
    """The names of the arguments ``argv`` gives (``--do-train`` counts as ``do_train``), or the keys of the
    single ``.json`` / ``.yaml`` file it names: what the user said, as opposed to the defaults."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        with open(argv[0], encoding="utf-8") as handle:
            return set(json.load(handle) if argv[0].endswith(".json") else yaml.safe_load(handle))
    return {argument.split("=", 1)[0][2:].replace("-", "_") for argument in argv if argument.startswith("--")}


def setup_logging(training_args: RecipeTrainingArguments, recipe_logger: logging.Logger) -> None:
    """Logs to stdout, at info level on the main process and warning on the others (as transformers' examples)."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if training_args.should_log:
        # log_level defaults to "passive", which keeps transformers' verbosity: raise it to info here.
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    # The package's logger is the parent of every recipe_utils module's own.
    for name in (recipe_logger.name, __package__, "finetune_llrd"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    recipe_logger.warning(
        f"Process rank: {training_args.process_index} of {training_args.world_size}, device: {training_args.device}, "
        f"distributed: {training_args.parallel_mode.value}, bf16: {training_args.bf16}, fp16: {training_args.fp16}"
    )
    recipe_logger.info(f"Training/evaluation parameters {training_args}")


def choose_stages(training_args: RecipeTrainingArguments, given: set[str]) -> None:
    """Sets ``do_train`` / ``do_eval`` from what the user said: a recipe trains unless told not to.

    transformers turns ``do_eval`` on for any ``--eval_strategy``, so "none of --do_train / --do_eval /
    --do_predict is set" cannot tell "evaluate every epoch" (which means training) from "only evaluate".
    What was given on the command line (or in the arguments file) can: the recipe trains unless
    ``--do_train`` was given (``--do_train false``), or only ``--do_eval`` / ``--do_predict`` were; with
    none of the three given, it trains and evaluates.

    Args:
        training_args: the parsed arguments, changed in place.
        given: the names of the arguments the user gave (:func:`arguments_given`).
    """
    stages = given & set(STAGES)
    if "do_train" in stages:
        return
    training_args.do_train = not any(getattr(training_args, stage) for stage in stages)
    if not stages:
        training_args.do_eval = True
    logger.info(
        f"--do_train not given: {'training' if training_args.do_train else 'not training'}"
        f"{' and evaluating' if training_args.do_eval else ''}."
    )


def find_checkpoint_to_resume(training_args: RecipeTrainingArguments) -> str | None:
    """The checkpoint to resume training from, and the guard against writing over an earlier run.

    Returns the checkpoint ``--resume_from_checkpoint`` names (``True`` / ``true`` / ``yes`` / ``1``: the newest
    complete one in ``--output_dir``; ``false`` / ``no`` / ``0``: none), checked; else, unless
    ``--overwrite_output_dir``, the newest ``checkpoint-*`` folder in ``--output_dir`` that was written to the
    end (a run killed while saving leaves an incomplete one, which is skipped with a warning).

    Raises:
        ValueError: if ``--output_dir`` holds files but no checkpoint and ``--overwrite_output_dir`` is not set.
        CheckpointError: if the checkpoint asked for is missing, incomplete or unreadable.
    """
    output_dir = training_args.output_dir
    if training_args.resume_from_checkpoint is not None:
        if parse_resume_argument(training_args.resume_from_checkpoint) is None:
            return None
        return resolve_resume_checkpoint(training_args.resume_from_checkpoint, output_dir)
    if training_args.overwrite_output_dir or not os.path.isdir(output_dir):
        return None
    if not complete_checkpoints(output_dir):
        if os.listdir(output_dir):
            raise Refusal(
                f"Output directory {output_dir} already exists and is not empty, and it holds no complete checkpoint "
                "to resume from. Pass --overwrite_output_dir to write into it, or choose another --output_dir."
            )
        return None
    last_checkpoint = resolve_resume_checkpoint(True, output_dir)
    if training_args.do_train:
        logger.info(
            f"Checkpoint found: resuming training from {last_checkpoint}. To train from scratch instead, choose "
            "another --output_dir or pass --overwrite_output_dir."
        )
        return last_checkpoint
    return None


def prepare_run(
    model_arguments: type,
    data_arguments: type,
    argv: Sequence[str] | None,
    recipe_logger: logging.Logger,
    training_arguments: type | None = None,
) -> tuple[Any, Any, RecipeTrainingArguments, str | None]:
    """Parses the arguments and sets a run up as every recipe does: logging, the check that launched processes
    joined, whether to train / evaluate (:func:`choose_stages`), the output folder (:func:`check_output_dir`),
    the checkpoint to resume from (refused if another recipe or another model type wrote it:
    :func:`check_checkpoint_origin`), the seed. Run as a script, a recipe's :class:`Refusal` ends it with its
    message alone (:func:`exit_on_refusal`).

    Args:
        model_arguments: the recipe's `ModelArguments` class.
        data_arguments: the recipe's `DataTrainingArguments` class.
        argv: the command line (``sys.argv[1:]`` by default), or one ``.json`` / ``.yaml`` file.
        recipe_logger: the recipe's logger, set to the run's log level.
        training_arguments: the recipe's training arguments class (:class:`RecipeArgumentsMixin` on a layer-wise
            class); `RecipeTrainingArguments` by default.

    Returns:
        The model, data and training arguments, and the checkpoint to resume from (or None).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if recipe_logger.name == "__main__":  # run as a script: a refusal ends it with its message alone
        sys.excepthook = exit_on_refusal
    model_args, data_args, training_args = parse_arguments(
        (model_arguments, data_arguments, training_arguments or RecipeTrainingArguments), argv
    )
    setup_logging(training_args, recipe_logger)
    check_processes_joined(training_args)
    choose_stages(training_args, arguments_given(argv))
    check_output_dir(training_args.output_dir)
    # What --search_trials prints as the command that trains its best configuration, and what a checkpoint's
    # training_args.bin records of the recipe that wrote it.
    recipe_file = os.path.relpath(sys.modules[recipe_logger.name].__file__)
    training_args.recipe_command = [recipe_file, *argv]
    checkpoint = find_checkpoint_to_resume(training_args)
    if checkpoint is not None:
        model = getattr(model_args, "config_name", None) or model_args.model_name_or_path
        check_checkpoint_origin(checkpoint, model, recipe_file)
    set_seed(training_args.seed)
    return model_args, data_args, training_args, checkpoint
