"""recipes/sft.py on a tiny Llama with a locally made tokenizer and chat template, the real chitchat
conversations, and (slow) the real SmolLM2-135M-Instruct."""

import gzip
import json
import math
import os
import subprocess
import sys

import pytest
import recipe_utils
import sft
import torch
from recipe_helpers import QUIET, REPO_ROOT, read_json, run_recipe, shared_data
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


CHITCHAT_TRAIN, CHITCHAT_DEV = shared_data("chitchat", "train.jsonl.gz"), shared_data("chitchat", "validation.jsonl")
SMOLLM2 = os.path.join(REPO_ROOT, "out", "models", "smollm2-135m-instruct")

# SmolLM2's ChatML template (no {% generation %} markers), with a shorter system prompt.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The same template with the assistant turns (content and end-of-turn) between generation markers.
CHATML_WITH_MARKERS = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny assistant<|im_end|>\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>\n' }}{% endgeneration %}"
    "{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSATION = [
    {"role": "user", "content": "hi there"},
    {"role": "assistant", "content": "hello you"},
    {"role": "user", "content": "how are you?"},
    {"role": "assistant", "content": "fine"},
]


def chitchat(path: str, count: int) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(count), handle)]


def make_chat_tokenizer(chat_template: str = CHATML) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (500 tokens) trained on real chitchat turns, with ChatML's special tokens."""
    texts = [message["content"] for row in chitchat(CHITCHAT_TRAIN, 300) for message in row["messages"]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = chat_template
    return fast


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A tiny Llama (3 blocks, tied embeddings as SmolLM2's) saved with the ChatML tokenizer."""
    directory = str(tmp_path_factory.mktemp("tiny-llama"))
    tokenizer = make_chat_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def run_sft(tiny_llama, tmp_path):
    """Runs the recipe on the tiny Llama with small settings; returns the output folder."""

    def run(arguments: str, output_dir=None):
        output_dir = output_dir or str(tmp_path / "out")
        common = f"""
            --model_name_or_path {tiny_llama} --output_dir {output_dir} --per_device_train_batch_size 4
            --per_device_eval_batch_size 8 --max_length 64 --learning_rate 1e-3 --layer_decay 0.5 --max_steps 2
            --logging_steps 1 --gradient_checkpointing false --bf16 false
        """
        run_recipe("sft", common.split() + QUIET + arguments.split())
        return output_dir

    return run


def test_assistant_mask_is_what_generation_markers_give():
    # The recipe's mask on a template without markers equals transformers' mask on the same template with them.
    plain, marked = make_chat_tokenizer(CHATML), make_chat_tokenizer(CHATML_WITH_MARKERS)
    assert not sft.trl_masks_assistant_turns(plain) and sft.trl_masks_assistant_turns(marked)

    ours = sft.tokenize_with_assistant_mask({"messages": CONVERSATION}, tokenizer=plain)
    reference = marked.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert ours["input_ids"] == reference["input_ids"]
    assert ours["assistant_masks"] == reference["assistant_masks"]
    masked = [token for token, bit in zip(ours["input_ids"], ours["assistant_masks"]) if bit]
    assert plain.decode(masked) == "hello you<|im_end|>\nfine<|im_end|>\n"
    assert plain.decode(ours["input_ids"]) == plain.apply_chat_template(CONVERSATION, tokenize=False)


def test_assistant_spans_refuse_a_template_that_is_not_prefix_preserving():
    tokenizer = make_chat_tokenizer(
        "{% for message in messages %}{{ message['content'] }}{% if loop.last %}{{ '[END]' }}{% endif %}{% endfor %}"
    )
    with pytest.raises(ValueError, match="renders the start of a conversation differently"):
        sft.assistant_spans(tokenizer, CONVERSATION)


def test_chat_sft_trains_on_assistant_turns_logs_depth_rates_and_reports_perplexity(run_sft, tiny_llama):
    output_dir = run_sft(
        f"--train_file {CHITCHAT_TRAIN} --validation_file {CHITCHAT_DEV} --max_train_samples 16 "
        "--max_eval_samples 8 --assistant_only_loss true"
    )
    results = read_json(output_dir, "all_results.json")
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]), rel=1e-12)
    # SFTTrainer leaves out 3 of the 16 conversations, with no assistant token within the 64 tokens: train_samples
    # counts the 13 that train (as eval_samples counts what is scored, below), and a warning says so.
    assert results["train_samples"] == 13
    with open(os.path.join(output_dir, "README.md"), encoding="utf-8") as handle:
        card = handle.read()  # TRL's card, with the layer-wise section
    assert "# Model Card for out\n" in card and "It has been trained using [TRL]" in card
    assert "### Layer-wise learning rates" in card and "- layer_decay: 0.5\n" in card

    # Per-depth rates: L=3 blocks, depth d at 1e-3 * 0.5 ** (4 - d), all following one schedule.
    logs = [entry for entry in read_json(output_dir, "trainer_state.json")["log_history"] if "lr/head" in entry]
    assert len(logs) == 2
    for entry in logs:
        rates = [entry[f"lr/layer_{depth:02d}"] for depth in range(4)] + [entry["lr/head"]]
        assert rates == pytest.approx([entry["lr/head"] * 0.5 ** (4 - depth) for depth in range(5)], rel=1e-6)
    assert [entry["lr/head"] for entry in logs] == pytest.approx([1e-3, 5e-4])  # each step's rate: linear decay

    # eval_loss is the saved model's mean cross entropy on the assistant tokens of the 8 conversations (cut
    # to 64 tokens), recomputed here from the rendered conversations; one batch holds them all.
    eval_rows = sft.take_samples(recipe_utils.load_data_file(CHITCHAT_DEV), 8, seed=42)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    losses, counts = [], []
    for row in eval_rows:
        encoded = sft.tokenize_with_assistant_mask({"messages": row["messages"]}, tokenizer=tokenizer)
        ids = torch.tensor(encoded["input_ids"][:64])
        labels = torch.where(torch.tensor(encoded["assistant_masks"][:64]) == 1, ids, -100)
        if (labels[1:] != -100).sum() == 0:
            continue  # left out by SFTTrainer: nothing to score within 64 tokens
        with torch.no_grad():
            logits = model(ids[None]).logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits, labels[1:], ignore_index=-100, reduction="sum")
        losses.append(loss.item())
        counts.append(int((labels[1:] != -100).sum()))
    assert results["eval_samples"] == len(losses)
    assert results["eval_loss"] == pytest.approx(sum(losses) / sum(counts), rel=1e-4)


def test_evaluation_alone_scores_the_model_as_loaded(run_sft, tiny_llama, tmp_path):
    # SFTTrainer requires a training set; without --do_train it gets the evaluation set and never trains.
    output_dir = run_sft(f"--validation_file {CHITCHAT_DEV} --max_eval_samples 8 --assistant_only_loss true --do_eval")
    results = read_json(output_dir, "all_results.json")
    assert "train_loss" not in results and results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]))
    assert not os.path.exists(os.path.join(output_dir, "model.safetensors"))
    # The same 8 conversations after training: the trained model is scored, not the one as loaded.
    trained = run_sft(
        f"--train_file {CHITCHAT_TRAIN} --validation_file {CHITCHAT_DEV} --max_train_samples 16 --max_eval_samples 8 "
        "--assistant_only_loss true",
        output_dir=str(tmp_path / "trained"),
    )
    assert read_json(trained, "all_results.json")["eval_loss"] != results["eval_loss"]


def test_prompt_completion_and_plain_text(run_sft, tmp_path):
    rows = chitchat(CHITCHAT_TRAIN, 12)
    pairs, texts = tmp_path / "pairs.jsonl", tmp_path / "texts.jsonl.gz"
    with open(pairs, "w", encoding="utf-8") as handle:
        for row in rows:
            question, answer = row["messages"][0]["content"], row["messages"][1]["content"]
            handle.write(json.dumps({"question": question, "answer": answer}) + "\n")
    with gzip.open(texts, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"body": " ".join(m["content"] for m in row["messages"][:4])}) + "\n")

    output_dir = run_sft(
        f"--train_file {pairs} --validation_file {pairs} --prompt_column question --completion_column answer",
        output_dir=str(tmp_path / "pairs"),
    )
    assert math.isfinite(read_json(output_dir, "all_results.json")["perplexity"])
    output_dir = run_sft(
        f"--train_file {texts} --validation_file {texts} --dataset_text_field body --packing true",
        output_dir=str(tmp_path / "texts"),
    )
    assert math.isfinite(read_json(output_dir, "all_results.json")["eval_loss"])

    refused = r"has none of the columns the recipe reads.*Its columns are \['question', 'answer'\]"
    with pytest.raises(ValueError, match=refused):
        run_sft(f"--train_file {pairs} --validation_file {pairs}", output_dir=str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="--assistant_only_loss needs conversations"):
        run_sft(f"--train_file {texts} --validation_file {texts} --dataset_text_field body --assistant_only_loss true")


def test_missing_files_are_refused_at_once(run_sft, tmp_path):
    with pytest.raises(ValueError, match=r"--validation_file .*missing\.jsonl: no such file"):
        run_sft(f"--train_file {CHITCHAT_TRAIN} --validation_file {tmp_path / 'missing.jsonl'}")


def test_lora_keeps_the_full_models_depths(run_sft, tmp_path, capsys):
    output_dir = run_sft(
        f"--train_file {CHITCHAT_TRAIN} --validation_file {CHITCHAT_DEV} --max_train_samples 8 --max_eval_samples 4 "
        "--use_peft --lora_r 4 --lora_alpha 8 --lora_target_modules q_proj v_proj"
    )
    assert os.path.isfile(os.path.join(output_dir, "adapter_model.safetensors"))
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line[:5].strip().isdigit()]
    # LoRA matrices only (the embeddings are frozen): blocks 1-3 at their own depths' rates, nothing else.
    assert [row[:2] for row in table] == [
        ["1", "base_model.model.model.layers.0"], ["2", "base_model.model.model.layers.1"],
        ["3", "base_model.model.model.layers.2"],
    ]  # fmt: skip
    assert [row[4] for row in table] == [f"{1e-3 * 0.5**k:.3e}" for k in (3, 2, 1)]


def test_loraplus_trains_the_b_matrices_at_the_ratio_times_their_depths_rate(run_sft, tmp_path, capsys):
    output_dir = run_sft(
        f"--train_file {CHITCHAT_TRAIN} --validation_file {CHITCHAT_DEV} --max_train_samples 8 --max_eval_samples 4 "
        "--use_peft --lora_r 4 --lora_alpha 8 --lora_target_modules q_proj v_proj --loraplus_lr_ratio 16"
    )
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line[:5].strip().isdigit()]
    # Each block: its A matrices at the depth's rate, its B matrices at 16 times that.
    assert [(row[0], row[-2]) for row in table] == [
        (str(depth), f"{1e-3 * 0.5 ** (4 - depth) * scale:.3e}") for depth in (1, 2, 3) for scale in (1, 16)
    ]
    assert [row[2] for row in table[1::2]] == ["[loraplus_B]"] * 3
    logs = [entry for entry in read_json(output_dir, "trainer_state.json")["log_history"] if "lr/layer_01" in entry]
    assert logs[0]["lr/loraplus_B/layer_01"] == pytest.approx(16 * logs[0]["lr/layer_01"], rel=1e-12)


@pytest.mark.slow
def test_real_smollm2_on_eight_conversations(tmp_path):
    """The issue's check: 8 chitchat conversations, the real SmolLM2-135M-Instruct (dequantized from 4 bits)."""
    if not os.path.isdir(SMOLLM2):
        build = os.path.join(REPO_ROOT, "..", "shared", "models", "build.sh")
        subprocess.run(["bash", build, os.path.dirname(SMOLLM2), "smollm2-135m-instruct"], check=True)
    output_dir = str(tmp_path / "smollm2")
    command = [
        sys.executable, os.path.join(REPO_ROOT, "recipes", "sft.py"), "--model_name_or_path", SMOLLM2,
        "--train_file", CHITCHAT_TRAIN, "--validation_file", CHITCHAT_DEV, "--max_train_samples", "8",
        "--max_eval_samples", "8", "--max_length", "128", "--layer_decay", "0.9", "--max_steps", "2",
        "--logging_steps", "1", "--assistant_only_loss", "true", "--output_dir", output_dir, *QUIET,
    ]  # fmt: skip
    subprocess.run(command, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    results = read_json(output_dir, "all_results.json")
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]))
    assert 1.0 < results["eval_loss"] < 6.0
    logs = [entry for entry in read_json(output_dir, "trainer_state.json")["log_history"] if "lr/head" in entry]
    rates = [logs[0][f"lr/layer_{depth:02d}"] for depth in range(31)] + [logs[0]["lr/head"]]
    assert rates == pytest.approx([logs[0]["lr/head"] * 0.9 ** (31 - depth) for depth in range(32)], rel=1e-6)
