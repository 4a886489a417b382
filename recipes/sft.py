#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Supervised fine-tuning (SFT) of a causal language model with layer-wise learning rates, through TRL's
``SFTTrainer``.

    accelerate launch recipes/sft.py --model_name_or_path HuggingFaceTB/SmolLM2-135M-Instruct \
        --train_file ../shared/data/chitchat/train.jsonl.gz --validation_file ../shared/data/chitchat/validation.jsonl \
        --max_length 512 --assistant_only_loss true --layer_decay 0.95 --learning_rate 1e-4 --output_dir out/sft

The trainer is ``layerwise_trainer(SFTTrainer)`` and the arguments are ``SFTConfig`` with the layer-wise fields
(``layerwise_arguments(SFTConfig)``), so every ``trl sft`` training flag keeps its name and its TRL default
(``--max_length``, ``--packing``, ``--assistant_only_loss``, ``--dataset_text_field``, ``--learning_rate`` 2e-5,
``--gradient_checkpointing`` on, ...), as do the LoRA flags of TRL's ``ModelConfig`` (``--use_peft``,
``--lora_r``, ``--lora_alpha``, ``--lora_dropout``, ``--lora_target_modules``, ...).

Data (JSON lines, optionally .gz, or ``--dataset_name``), in one of TRL's formats:

* conversations: a ``messages`` column of ``{"role", "content"}`` turns, rendered with the model's chat template;
* prompt-completion: ``prompt`` and ``completion`` columns (the loss falls on the completion);
* plain text: the ``--dataset_text_field`` column (``text``).

It writes ``all_results.json`` (``eval_loss`` and ``perplexity = exp(eval_loss)``) and a model card with the
layer-wise settings to ``--output_dir``, and prints the final metrics and the per-depth learning rates.
"""

import logging
import math
import os
import re
from dataclasses import dataclass, field
from functools import partial

from datasets import Dataset
from recipe_utils import (
    DataArgumentsMixin,
    DataCheck,
    HubModelArguments,
    RecipeArgumentsMixin,
    Refusal,
    build_trainer,
    check_data_files,
    column_values,
    is_missing,
    keep_splits_to_run,
    load_splits,
    prepare_run,
    require_rows_and_columns,
    sample_positions,
    short,
    take_samples,
    train_evaluate_and_report,
)
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import get_training_chat_template, has_generation_markers

from finetune_llrd import layerwise_arguments, layerwise_trainer
from finetune_llrd.search import SearchArguments


logger = logging.getLogger(__name__)

# The column names TRL's SFTTrainer reads, by data format.
CHAT, PROMPT_COMPLETION, TEXT = "messages", "prompt-completion", "text"


@dataclass
class SFTTrainingArguments(RecipeArgumentsMixin, layerwise_arguments(SFTConfig), SearchArguments):
    """TRL's `SFTConfig` (its defaults kept) with the layer-wise fields, the recipes' own settings and the
    lr x decay search."""


@dataclass
class ModelArguments(HubModelArguments):
    """Which causal language model to fine-tune, how to load it, and the optional LoRA adapter (TRL's names)."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id (HuggingFaceTB/SmolLM2-135M-Instruct) or the path of a local model folder."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    dtype: str = field(
        default="float32",
        metadata={
            "help": "Load the weights in this dtype (as TRL's --dtype); 'auto' keeps the checkpoint's. Mixed "
            "precision is --bf16 / --fp16.",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "The attention kernel (sdpa, eager, flash_attention_2, ...); default: the model's."},
    )
    use_peft: bool = field(
        default=False,
        metadata={
            "help": "Train a LoRA adapter instead of all weights; its matrices keep the depths of the blocks they "
            "sit in."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules to adapt (q_proj v_proj ..., or all-linear); default: PEFT's for the architecture."
        },
    )
    lora_modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained in full beside the adapter (a new head, say)."}
    )
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised LoRA: scale by alpha / sqrt(r)."})
    use_dora: bool = field(default=False, metadata={"help": "Weight-decomposed LoRA (DoRA)."})

    def hub_options(self, trust_remote_code: bool) -> dict:
        """The keyword arguments of every ``from_pretrained`` call (``--trust_remote_code`` is SFTConfig's)."""
        return {**self.fetch_options(), "trust_remote_code": trust_remote_code}

    def peft_config(self):
        """The LoRA configuration of ``--use_peft`` (as TRL's ``get_peft_config``), or None."""
        if not self.use_peft:
            return None
        from peft import LoraConfig

        return LoraConfig(
            task_type="CAUSAL_LM",
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_target_modules,
            modules_to_save=self.lora_modules_to_save,
            use_rslora=self.use_rslora,
            use_dora=self.use_dora,
            bias="none",
        )


@dataclass
class DataTrainingArguments(DataArgumentsMixin):
    """Which data to train and evaluate on. The text column of plain-text data is SFTConfig's --dataset_text_field."""

    train_file: str | None = field(
        default=None, metadata={"help": "Local training data: JSON lines (.json / .jsonl, optionally .gz) or parquet."}
    )
    messages_column: str = field(
        default="messages", metadata={"help": "The column of conversations: lists of {role, content} turns."}
    )
    prompt_column: str = field(default="prompt", metadata={"help": "The prompt column of prompt-completion data."})
    completion_column: str = field(
        default="completion", metadata={"help": "The completion column of prompt-completion data."}
    )

    def __post_init__(self):
        if self.dataset_name is not None and (self.train_file or self.validation_file):
            raise ValueError("Give either --dataset_name or local files (--train_file, ...), not both.")
        if self.dataset_name is None and not (self.train_file or self.validation_file):
            raise ValueError("Give the data: --dataset_name (Hub) or --train_file / --validation_file.")
        check_data_files({"train_file": self.train_file, "validation_file": self.validation_file})
        super().__post_init__()


def resolve_data_format(data_args, training_args, splits: dict[str, Dataset], sources: dict[str, str]) -> str:
    """The data format (:data:`CHAT`, :data:`PROMPT_COMPLETION` or :data:`TEXT`), from the columns of the first
    split, after checking that every split holds rows and that format's columns.

    Raises:
        ValueError: naming the split's columns and the flags that choose them, when none of the formats fits.
    """
    split = next(iter(splits))
    columns = splits[split].column_names
    prompt_completion = {
        data_args.prompt_column: "--prompt_column",
        data_args.completion_column: "--completion_column",
    }
    if data_args.messages_column in columns:
        data_format, needed = CHAT, {data_args.messages_column: "--messages_column"}
    elif all(column in columns for column in prompt_completion):
        data_format, needed = PROMPT_COMPLETION, prompt_completion
    elif training_args.dataset_text_field in columns:
        data_format, needed = TEXT, {training_args.dataset_text_field: "--dataset_text_field"}
    else:
        raise Refusal(
            f"{sources[split]} has none of the columns the recipe reads: conversations in "
            f"{data_args.messages_column!r} (--messages_column), prompts and completions in "
            f"{data_args.prompt_column!r} and {data_args.completion_column!r} (--prompt_column, --completion_column), "
            f"or text in {training_args.dataset_text_field!r} (--dataset_text_field). Its columns are {columns}."
        )
    require_rows_and_columns(splits, sources, needed)
    if training_args.assistant_only_loss and data_format != CHAT:
        raise Refusal(
            f"--assistant_only_loss needs conversations (a {data_args.messages_column!r} column); {sources[split]} "
            f"holds {data_format} data. Prompt-completion data is trained on its completions by default "
            "(--completion_only_loss)."
        )
    return data_format


def select_sft_columns(data_args, training_args, splits: dict[str, Dataset], data_format: str) -> None:
    """Keeps the columns of ``data_format`` in every split, under the names TRL reads, and takes the random
    subsets of ``--max_train_samples`` / ``--max_eval_samples`` (seeded by ``--seed``) of whole conversations,
    documents or prompt-completion pairs, before anything is tokenized, truncated or packed."""
    names = {
        CHAT: {data_args.messages_column: "messages"},
        PROMPT_COMPLETION: {data_args.prompt_column: "prompt", data_args.completion_column: "completion"},
        TEXT: {training_args.dataset_text_field: training_args.dataset_text_field},
    }[data_format]
    for split, dataset in splits.items():
        dataset = take_samples(dataset, data_args.max_samples(split), training_args.seed)
        dataset = dataset.select_columns(list(names))
        splits[split] = dataset.rename_columns({old: new for old, new in names.items() if old != new})


def load_tokenizer(model_args, training_args):
    """The tokenizer, with the chat template of ``--chat_template_path`` when that is a .jinja file (as SFTTrainer
    reads it), so that the assistant mask is computed with the template that trains."""
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path,
        **model_args.hub_options(training_args.trust_remote_code),
    )
    path = training_args.chat_template_path
    if path is not None and os.path.isfile(path) and path.endswith((".jinja", ".j2")):
        with open(path, encoding="utf-8") as handle:
            tokenizer.chat_template = handle.read()
    return tokenizer


def load_causal_lm(model_args, training_args):
    """``AutoModelForCausalLM.from_pretrained`` with ``--dtype`` and ``--attn_implementation``."""
    options = {"dtype": model_args.dtype}
    if model_args.attn_implementation is not None:
        options["attn_implementation"] = model_args.attn_implementation
    return AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, **options, **model_args.hub_options(training_args.trust_remote_code)
    )


def trl_masks_assistant_turns(tokenizer) -> bool:
    """Whether TRL can mask the assistant turns itself: the chat template has ``{% generation %}`` markers, or
    TRL ships a training variant of it (Qwen, Llama 3, Gemma, Phi-3, ...)."""
    if tokenizer.chat_template is None:
        raise ValueError(
            "The tokenizer has no chat template to render the conversations with: give one as a .jinja file with "
            "--chat_template_path."
        )
    if has_generation_markers(tokenizer.chat_template):
        return True
    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return False
    return True


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The conversation rendered with the chat template, and the character span of every assistant turn in it.

    An assistant turn is what the template adds to the conversation before it (rendered with the generation
    prompt) to render the conversation through that turn: its content and its end-of-turn marker
    (``Hi!<|im_end|>\\n`` in ChatML), what TRL's training templates put between their ``{% generation %}``
    markers. This needs a template that renders every conversation as a prefix of its continuations, as chat
    templates for multi-turn training do.

    Raises:
        ValueError: if the template does not render a conversation's beginning as a prefix of it.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (through.startswith(before) and text.startswith(through)):
            raise ValueError(
                "The chat template renders the start of a conversation differently from the whole, so the assistant "
                "turns cannot be found in it: give a template with {% generation %} markers around the assistant "
                "turns with --chat_template_path, or train on every token without --assistant_only_loss."
            )
        spans.append((len(before), len(through)))
    return text, spans


def tokenize_with_assistant_mask(example, *, tokenizer) -> dict[str, list[int]]:
    """``input_ids`` of a conversation and its ``assistant_masks`` (1 on the tokens of the assistant turns), as
    transformers' ``return_assistant_tokens_mask`` gives them for a template with generation markers: a token
    belongs to a turn when it overlaps the turn's characters."""
    text, spans = assistant_spans(tokenizer, example["messages"])
    # As SFTTrainer tokenizes rendered conversations: the template writes the special tokens itself.
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(start < end_turn and end > start_turn for start_turn, end_turn in spans))
            for start, end in encoded["offset_mapping"]]  # fmt: skip
    return {"input_ids": encoded["input_ids"], "assistant_masks": mask}


def mask_assistant_turns(splits: dict[str, Dataset], tokenizer, training_args) -> None:
    """Tokenizes the conversations with their assistant masks where TRL cannot (a chat template without
    ``{% generation %}`` markers that TRL has no training variant of, such as SmolLM2's ChatML template).

    SFTTrainer takes tokenized data with an ``assistant_masks`` column as it takes its own: it builds the labels
    from the mask, truncates to ``--max_length``, drops examples left without an assistant token and packs.
    Unchanged where TRL masks the turns itself, or without ``--assistant_only_loss``.
    """
    if not training_args.assistant_only_loss or trl_masks_assistant_turns(tokenizer):
        return
    logger.warning(
        "The chat template has no {% generation %} markers and TRL has no training variant of it: the recipe masks "
        "the assistant turns itself (each turn's content and end-of-turn marker, as TRL's training templates do)."
    )
    with training_args.main_process_first(desc="assistant masks"):
        for split, dataset in splits.items():
            splits[split] = dataset.map(
                partial(tokenize_with_assistant_mask, tokenizer=tokenizer),
                remove_columns=dataset.column_names,
                num_proc=training_args.dataset_num_proc,
                desc=f"Tokenizing the {split} conversations with their assistant masks",
            )


def sft_trainer_class(model_args, splits: dict[str, Dataset]):
    """``layerwise_trainer(SFTTrainer)``, given the LoRA configuration of ``--use_peft``.

    SFTTrainer requires a training set even to evaluate: without ``--do_train`` it gets the evaluation set, which
    it prepares and never trains on. With tokenized conversations (:func:`mask_assistant_turns`) TRL must not
    look for the conversations' turns itself: its ``assistant_only_loss`` is off while the trainer is built, and
    the mask in the data does its work.
    """
    trainer_class = partial(layerwise_trainer(SFTTrainer), peft_config=model_args.peft_config())
    tokenized = "input_ids" in next(iter(splits.values())).column_names

    def build(*, args, train_dataset, eval_dataset, **kwargs):
        if train_dataset is None:
            train_dataset = eval_dataset
        if tokenized:
            args.assistant_only_loss = False
        try:
            return trainer_class(args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        finally:
            if tokenized:
                args.assistant_only_loss = True

    return build


def count_prepared_examples(trainer, splits: dict[str, Dataset]) -> None:
    """Replaces the training and evaluation splits by the trainer's tokenized ones, so that ``train_samples`` and
    ``eval_samples`` count what trains and what is evaluated: SFTTrainer leaves out, in silence, examples without
    a token to score within ``--max_length`` (a first user turn longer than that, with ``--assistant_only_loss``),
    and packing joins examples. Says how many were left out, and that a larger ``--max_length`` keeps them.

    Raises:
        ValueError: if no example is left of a split.
    """
    for split, prepared, stage in (
        ("train", trainer.train_dataset, "training"),
        ("eval", trainer.eval_dataset, "evaluation"),
    ):
        if split not in splits:
            continue
        given = len(splits[split])
        if len(prepared) == 0:
            raise ValueError(
                f"None of the {given} {stage} examples has a token to score within --max_length "
                f"{trainer.args.max_length}: raise --max_length."
            )
        if len(prepared) < given and not trainer.args.packing:
            logger.warning(
                f"{given - len(prepared)} of {given} {stage} examples have no token to score within --max_length "
                f"{trainer.args.max_length} and are left out of the {stage}: raise --max_length to keep them."
            )
        splits[split] = prepared


def check_sft_rows(
    data_args, training_args, splits: dict[str, Dataset], sources: dict[str, str], data_format, tokenizer
):
    """Refuses, naming the file, the row and the column: conversations that are not lists of ``{role, content}``
    turns, a role the chat template does not know (:func:`known_roles`), a turn without text, a conversation the
    template fails on or, with ``--assistant_only_loss``, one without an assistant turn (TRL would drop it in
    silence); prompts, completions and texts that are missing or empty. Every row is read; the template renders
    the conversations the run uses (``--max_*_samples``)."""
    columns = {
        CHAT: {data_args.messages_column: "conversation"},
        PROMPT_COMPLETION: {data_args.prompt_column: "prompt", data_args.completion_column: "completion"},
        TEXT: {training_args.dataset_text_field: "text"},
    }[data_format]
    roles = known_roles(tokenizer) if data_format != TEXT else set()
    needs_assistant = training_args.assistant_only_loss and data_format == CHAT
    with DataCheck(splits, sources) as check:
        for split, dataset in splits.items():
            positions = sample_positions(len(dataset), data_args.max_samples(split), training_args.seed)
            rendered = set(range(len(dataset)) if positions is None else positions)  # the conversations that train
            for column, what in columns.items():
                for row, value in enumerate(column_values(dataset, column), start=1):
                    if isinstance(value, list) or data_format == CHAT:  # turns (a prompt may be turns too)
                        problems = turn_problems(value, roles, needs_assistant)
                        if not problems and data_format == CHAT and row - 1 in rendered:
                            problems = template_problems(tokenizer, value)
                    elif is_missing(value) or not isinstance(value, str):
                        problems = [f"the {what} is {short(value)}"]
                    else:
                        problems = []
                    for problem in problems:
                        check.add(split, row, column, problem)


def known_roles(tokenizer) -> set[str]:
    """The roles a conversation may hold: system, user, assistant and tool, and any role the chat template
    names (``message['role'] == 'ipython'``)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return {"system", "user", "assistant", "tool"} | set(
        re.findall(r"role['\"]?\]?\s*[!=]=\s*['\"]([\w-]+)['\"]", template)
    )


def turn_problems(messages, roles: set[str], needs_assistant: bool) -> list[str]:
    """What is wrong with a conversation: not a list of ``{role, content}`` turns, an unknown role, a turn without
    text, or (``needs_assistant``) no assistant turn to train on."""
    if not isinstance(messages, list) or not messages:
        return [f"holds {short(messages)}, not a list of {{role, content}} turns"]
    problems = []
    for number, message in enumerate(messages, start=1):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in roles:
            problems.append(
                f"turn {number} has the role {short(role)}; the chat template knows {', '.join(sorted(roles))}"
            )
        elif is_missing(content) or not isinstance(content, (str, list)):
            problems.append(f"turn {number} ({role}) has no text: {short(content)}")
    if needs_assistant and not problems and not any(message.get("role") == "assistant" for message in messages):
        problems.append("has no assistant turn to train on with --assistant_only_loss (TRL would drop it in silence)")
    return problems


def template_problems(tokenizer, messages: list[dict]) -> list[str]:
    """The error the chat template raises on a conversation, if any (Gemma's refuses a system turn, many refuse
    turns that do not alternate)."""
    if tokenizer.chat_template is None:
        return []
    try:
        tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as error:  # noqa: BLE001 - a template raises what its author chose
        return [f"the chat template fails on it ({type(error).__name__}: {error})"]
    return []


def trl_model_card_kwargs(data_args, training_args) -> dict:
    """The keyword arguments of SFTTrainer's ``create_model_card`` / ``push_to_hub`` (TRL's own card, to which
    the layer-wise section is added): the model's name (as ``push_to_hub`` names it), the Hub dataset, the tags."""
    hub_model_id = training_args.hub_model_id
    name = (
        hub_model_id.split("/")[-1] if hub_model_id else os.path.basename(os.path.normpath(training_args.output_dir))
    )
    return {"model_name": name, "dataset_name": data_args.dataset_name, "tags": ["layer-wise-lr"]}


def add_perplexity(metrics: dict[str, float]) -> None:
    """``perplexity = exp(eval_loss)``, as transformers' run_clm reports it (inf past float range)."""
    try:
        metrics["perplexity"] = math.exp(metrics["eval_loss"])
    except OverflowError:
        metrics["perplexity"] = float("inf")


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(
        ModelArguments, DataTrainingArguments, argv, logger, training_arguments=SFTTrainingArguments
    )
    splits, sources = load_splits(data_args, model_args, training_args)
    data_format = resolve_data_format(data_args, training_args, splits, sources)
    tokenizer = load_tokenizer(model_args, training_args)
    check_sft_rows(data_args, training_args, splits, sources, data_format, tokenizer)
    keep_splits_to_run(splits, training_args)
    select_sft_columns(data_args, training_args, splits, data_format)

    model = load_causal_lm(model_args, training_args)
    mask_assistant_turns(splits, tokenizer, training_args)

    trainer = build_trainer(
        model,
        tokenizer,
        training_args,
        splits,
        data_collator=None,
        compute_metrics=None,
        trainer_class=sft_trainer_class(model_args, splits),
    )
    count_prepared_examples(trainer, splits)
    model_card = trl_model_card_kwargs(data_args, training_args)
    train_evaluate_and_report(
        trainer, splits, checkpoint=checkpoint, model_card=model_card, add_eval_metrics=add_perplexity
    )


if __name__ == "__main__":
    main()
