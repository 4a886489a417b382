"""recipes/seq2seq.py on tiny T5 / BART / bert2bert models built from configs with a locally made tokenizer, the
real XSum articles and English / Spanish verses, and (slow) the real MiniLM bert2bert."""

import json
import os
import subprocess
import sys

import pytest
import seq2seq
import torch
from recipe_helpers import QUIET, REPO_ROOT, read_json, run_recipe, shared_data, write_word_piece_vocab
from recipe_utils import load_data_file, take_samples
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertTokenizerFast,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    T5Config,
    T5ForConditionalGeneration,
)


XSUM_TRAIN, XSUM_DEV = shared_data("xsum", "train.jsonl"), shared_data("xsum", "validation.jsonl")
EN_ES_TRAIN = shared_data("translation_en_es", "train.jsonl.gz")
EN_ES_DEV = shared_data("translation_en_es", "validation.jsonl")
BERT2BERT = os.path.join(REPO_ROOT, "out", "models", "bert2bert-minilm-l6")


def _texts() -> list[str]:
    texts = []
    with open(XSUM_TRAIN, encoding="utf-8") as handle:
        for _, line in zip(range(200), handle):
            row = json.loads(line)
            texts += [row["document"], row["summary"]]
    with open(EN_ES_DEV, encoding="utf-8") as handle:
        for _, line in zip(range(300), handle):
            texts += list(json.loads(line)["translation"].values())
    return texts


def _save(directory: str, model, tokenizer) -> str:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = write_word_piece_vocab(str(tmp_path_factory.mktemp("vocab") / "vocab.txt"), _texts(), size=600)
    return BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory, tokenizer):
    """A tiny T5 (2 encoder + 2 decoder blocks); [PAD] starts decoding, [SEP] ends it."""
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return _save(str(tmp_path_factory.mktemp("tiny-t5")), T5ForConditionalGeneration(config), tokenizer)


@pytest.fixture(scope="module")
def tiny_bart(tmp_path_factory, tokenizer):
    """A tiny BART (2 encoder + 2 decoder blocks); [SEP] starts and ends decoding, as </s> does in BART."""
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id, forced_eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return _save(str(tmp_path_factory.mktemp("tiny-bart")), BartForConditionalGeneration(config), tokenizer)


@pytest.fixture
def run_seq2seq(tmp_path):
    """Runs the recipe with small settings; returns the output folder."""

    def run(model: str, arguments: str, output_dir=None):
        output_dir = output_dir or str(tmp_path / "out")
        common = f"""
            --model_name_or_path {model} --output_dir {output_dir} --per_device_train_batch_size 4
            --per_device_eval_batch_size 8 --max_source_length 64 --max_target_length 16 --learning_rate 1e-3
            --layer_decay 0.5 --max_steps 2 --logging_steps 1
        """
        run_recipe("seq2seq", common.split() + QUIET + arguments.split())
        return output_dir

    return run


def test_rouge_on_known_strings():
    # unigrams: 5 of 6 shared (the x2, cat, on, mat); bigrams: 3 of 5 (the cat, on the, the mat); LCS: 5 of 6.
    scores = seq2seq.rouge_scores(["the cat sat on the mat", "A dog."], ["the cat was on the mat", "a dog"])
    assert scores == pytest.approx(
        {"rouge1": (5 / 6 + 1) / 2, "rouge2": (3 / 5 + 1) / 2, "rougeL": (5 / 6 + 1) / 2, "rougeLsum": (5 / 6 + 1) / 2}
    )
    # ROUGE-Lsum takes the union of the longest common subsequences of every reference sentence (at newlines).
    lsum = seq2seq.rouge_scores(["b a\nc d"], ["a b\nc d"])
    assert lsum["rougeL"] == pytest.approx(3 / 4) and lsum["rougeLsum"] == pytest.approx(3 / 4)
    assert seq2seq.split_sentences("One went. Two came!  Three? Done") == "One went.\nTwo came!\nThree?\nDone"


def test_sacrebleu_on_known_strings():
    # Every n-gram precision is 100%; the brevity penalty of 4 tokens against 5 is exp(1 - 5/4).
    assert seq2seq.sacrebleu_scores(["a b c d"], ["a b c d e"])["score"] == pytest.approx(100 * 0.7788007830714049)
    # With a second reference of 4 tokens the closest reference length is 4: no penalty.
    assert seq2seq.sacrebleu_scores(["a b c d"], [["a b c d e", "a b c d"]])["score"] == pytest.approx(100.0)
    result = seq2seq.sacrebleu_scores(["the cat sat", "el gato"], ["the cat sat", "el perro"])
    assert result["counts"][0] == 4 and result["totals"][0] == 5 and result["sys_len"] == result["ref_len"] == 5


def test_summarisation_with_t5_scores_rouge_of_its_generations_and_logs_depth_rates(run_seq2seq, tiny_t5, tmp_path):
    output_dir = run_seq2seq(
        tiny_t5,
        f"--train_file {XSUM_TRAIN} --validation_file {XSUM_DEV} --test_file {XSUM_DEV} --do_train --do_eval "
        "--do_predict --max_train_samples 16 --max_eval_samples 8 --max_predict_samples 8 --source_prefix summarize: ",
    )
    results = read_json(output_dir, "all_results.json")
    assert results["eval_samples"] == 8 and 1 <= results["eval_gen_len"] <= 16
    # The evaluation scores the greedy generations of the same 8 articles that --do_predict writes out.
    with open(os.path.join(output_dir, "generated_predictions.txt"), encoding="utf-8") as handle:
        generated = handle.read().splitlines()
    eval_rows = take_samples(load_data_file(XSUM_DEV), 8, seed=42)
    tokenizer = BertTokenizerFast.from_pretrained(output_dir)
    references = [
        tokenizer.decode(labels, skip_special_tokens=True)
        for labels in tokenizer(text_target=list(eval_rows["summary"]), max_length=16, truncation=True)["input_ids"]
    ]
    expected = seq2seq.rouge_scores(
        [seq2seq.split_sentences(text) for text in generated], [seq2seq.split_sentences(text) for text in references]
    )
    for key in seq2seq.ROUGE_TYPES:
        assert results[f"eval_{key}"] == results[f"predict_{key}"] == pytest.approx(100 * expected[key], abs=1e-4)

    # T5: 2 encoder blocks (depths 1-2) below 2 decoder blocks (3-4); the rate of depth d is lr * 0.5 ** (5 - d).
    logs = [entry for entry in read_json(output_dir, "trainer_state.json")["log_history"] if "lr/head" in entry]
    assert [entry["lr/head"] for entry in logs] == pytest.approx([1e-3, 5e-4])
    for entry in logs:
        rates = [entry[f"lr/layer_{depth:02d}"] for depth in range(5)] + [entry["lr/head"]]
        assert rates == pytest.approx([entry["lr/head"] * 0.5 ** (5 - depth) for depth in range(6)], rel=1e-6)


def test_translation_with_bart_scores_bleu(run_seq2seq, tiny_bart):
    output_dir = run_seq2seq(
        tiny_bart,
        f"--train_file {EN_ES_TRAIN} --validation_file {EN_ES_DEV} --source_lang en --target_lang es "
        "--max_train_samples 16 --max_eval_samples 8 --num_beams 2",
    )
    results = read_json(output_dir, "all_results.json")
    assert 0.0 <= results["eval_bleu"] <= 100.0 and results["eval_samples"] == 8
    # The arguments (Seq2SeqTrainingArguments with the layer-wise fields) were saved with the model and load back.
    saved = torch.load(os.path.join(output_dir, "training_args.bin"), weights_only=False)
    assert type(saved) is seq2seq.Seq2SeqRecipeTrainingArguments
    assert saved.layer_decay == 0.5 and saved.predict_with_generate and saved.generation_num_beams == 2
    assert any("lr/layer_04" in entry for entry in read_json(output_dir, "trainer_state.json")["log_history"])


def test_columns_languages_and_files_are_checked(run_seq2seq, tiny_t5, tmp_path):
    with pytest.raises(ValueError, match=r"no language 'fr'; they hold \['en', 'es'\]\. Set --target_lang"):
        run_seq2seq(
            tiny_t5, f"--train_file {EN_ES_TRAIN} --validation_file {EN_ES_DEV} --source_lang en --target_lang fr"
        )
    refused = r"has no column 'body'; its columns are \['id', 'document', 'summary'\]\. Set --text_column"
    with pytest.raises(ValueError, match=refused):
        run_seq2seq(tiny_t5, f"--train_file {XSUM_TRAIN} --validation_file {XSUM_DEV} --text_column body")
    with pytest.raises(ValueError, match=r"--train_file .*nowhere\.jsonl: no such file"):
        run_seq2seq(tiny_t5, f"--train_file {tmp_path / 'nowhere.jsonl'}")


def test_an_encoder_decoder_without_a_decoder_start_token_is_refused(run_seq2seq, tokenizer, tmp_path):
    bert = dict(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**bert), BertConfig(**bert, is_decoder=True, add_cross_attention=True)
    )
    directory = _save(str(tmp_path / "bert2bert"), EncoderDecoderModel(config), tokenizer)
    with pytest.raises(ValueError, match="has no decoder_start_token_id in its config"):
        run_seq2seq(directory, f"--train_file {XSUM_TRAIN} --validation_file {XSUM_DEV}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, metric",
    [
        (["--train_file", XSUM_TRAIN, "--validation_file", XSUM_DEV, "--max_source_length", "256"], "eval_rougeL"),
        (
            [
                "--train_file",
                EN_ES_TRAIN,
                "--validation_file",
                EN_ES_DEV,
                "--source_lang",
                "en",
                "--target_lang",
                "es",
            ],
            "eval_bleu",
        ),
    ],
    ids=["xsum", "en-es"],
)
def test_real_bert2bert_on_eight_examples(data, metric, tmp_path):
    """The issue's checks: the warm-started MiniLM bert2bert on 8 XSum articles, then on 8 verse pairs."""
    if not os.path.isdir(BERT2BERT):
        build = os.path.join(REPO_ROOT, "..", "shared", "models", "build.sh")
        subprocess.run(["bash", build, os.path.dirname(BERT2BERT), "bert2bert-minilm-l6"], check=True)
    output_dir = str(tmp_path / "bert2bert")
    command = [
        sys.executable, os.path.join(REPO_ROOT, "recipes", "seq2seq.py"), "--model_name_or_path", BERT2BERT, *data,
        "--max_train_samples", "8", "--max_eval_samples", "8", "--max_target_length", "32", "--layer_decay", "0.9",
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir", output_dir, *QUIET,
    ]  # fmt: skip
    subprocess.run(command, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    results = read_json(output_dir, "all_results.json")
    assert 0.0 <= results[metric] <= 100.0 and results["eval_samples"] == 8
