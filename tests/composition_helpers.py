"""Tiny real models, tokenizers and data for the composed Trainers of tests/test_composition*.py (no download)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from recipe_helpers import save_tiny_text_model
from tiny_models import tiny_config
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Seq2SeqTrainingArguments,
    T5ForConditionalGeneration,
)

from finetune_llrd import layerwise_arguments


WORDS = [f"w{i}" for i in range(90)]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``WORDS`` with pad 0, bos 1, eos 2, unk 3 (94 tokens)."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{word: i + 4 for i, word in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def random_texts(count: int, length: int = 8, seed: int = 0) -> list[str]:
    generator = torch.Generator().manual_seed(seed)
    return [
        " ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (length,), generator=generator).tolist())
        for _ in range(count)
    ]


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """A tiny Llama causal LM (3 blocks) for ``word_tokenizer``."""
    config = tiny_config("llama", vocab_size=94, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def tiny_t5(seed: int = 0) -> T5ForConditionalGeneration:
    """A tiny T5 (3 encoder + 2 decoder blocks: L = 5)."""
    config = tiny_config("t5")
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config)


class CopyPrefix(torch.utils.data.Dataset):
    """Random token sequences whose target is their first four tokens, for a seq2seq model."""

    def __init__(self, size: int = 16, length: int = 8, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(2, 99, (size, length), generator=generator)

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, index):
        ids = self.input_ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:4]}


def tiny_sentence_transformer(directory: str, dense: bool = True):
    """A SentenceTransformer over a tiny BERT (3 blocks, hidden 32): Transformer, mean Pooling, optionally
    Dense(32 -> 8), Normalize."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    texts = random_texts(16)
    if not os.path.exists(os.path.join(directory, "config.json")):
        save_tiny_text_model(directory, texts, num_labels=None)
    transformer = Transformer(directory, max_seq_length=16)
    modules = [transformer, Pooling(32)]
    if dense:
        modules.append(Dense(32, 8))
    modules.append(Normalize())
    torch.manual_seed(0)
    return SentenceTransformer(modules=modules, device="cpu")


def pair_classification_data(count: int = 16):
    """``sentence1``, ``sentence2``, ``label`` (3 classes), as SoftmaxLoss takes them."""
    from datasets import Dataset

    first, second = random_texts(count, seed=1), random_texts(count, seed=2)
    return Dataset.from_dict({"sentence1": first, "sentence2": second, "label": [i % 3 for i in range(count)]})


@dataclass
class ProjectArguments(Seq2SeqTrainingArguments):
    """A project's own arguments class, outside every library: its composition must unpickle in a fresh process."""

    source_prefix: str = field(default="summarize: ", metadata={"help": "Prepended to every source text."})


@dataclass
class ProjectSubclassArguments(layerwise_arguments(Seq2SeqTrainingArguments)):
    """A project's subclass of a composed arguments class, as a recipe's: pickled by reference to itself."""

    target_prefix: str = field(default="", metadata={"help": "Prepended to every target text."})


def describe_in_child(trainer_cls, args, queue) -> None:
    """Runs in a spawned process: reports what arrived there (the composed class and arguments)."""
    queue.put(
        (
            trainer_cls.__module__,
            trainer_cls.__name__,
            type(args).__name__,
            args.layer_decay,
            args.predict_with_generate,
        )
    )
