"""recipes/token_classification.py: CoNLL-2003-style NER on a tiny BERT, scored with seqeval."""

import json
import logging
import os

import pytest
import token_classification
from datasets import ClassLabel, Dataset, Features, List, Value
from recipe_helpers import QUIET, read_json, run_recipe, save_tiny_text_model
from recipe_utils import LabelSet
from token_classification import align_tags, inside_tag_ids, read_conll_file, seqeval_scores


# CoNLL-2003 layout: word, part of speech, chunk, entity; -DOCSTART- lines and blank lines between sentences.
CONLL = """-DOCSTART- -X- -X- O

Maria NNP B-NP B-PER
Lopez NNP I-NP I-PER
joined VBD B-VP O
Acme NNP B-NP B-ORG
Robotics NNP I-NP I-ORG
in IN B-PP O
Lisbon NNP B-NP B-LOC
. . O O

The DT B-NP O
Berlin NNP I-NP B-LOC
office NN I-NP O
of IN B-PP O
Nordwind NNP B-NP B-ORG
hired VBD B-VP O
Tom NNP B-NP B-PER
Becker NNP I-NP I-PER
. . O O

-DOCSTART- -X- -X- O

Kenya NNP B-NP B-LOC
beat VBD B-VP O
Peru NNP B-NP B-LOC
in IN B-PP O
the DT B-NP O
World NNP B-NP B-MISC
Cup NNP I-NP I-MISC
final NN I-NP O
. . O O

Shares NNS B-NP O
of IN B-PP O
Orbital NNP B-NP B-ORG
Freight NNP I-NP I-ORG
rose VBD B-VP O
in IN B-PP O
New NNP B-NP B-LOC
York NNP I-NP I-LOC
on IN B-PP O
Monday NNP B-NP O
.  .  O  O
"""
TAGS = ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]


@pytest.fixture(scope="module")
def conll_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("conll") / "train.conll"
    path.write_text(CONLL, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tiny_bert_encoder(tmp_path_factory):
    words = [line.split()[0] for line in CONLL.splitlines() if line and not line.startswith("-DOCSTART-")]
    return save_tiny_text_model(str(tmp_path_factory.mktemp("tiny-bert-encoder")), [" ".join(words)], num_labels=None)


@pytest.fixture
def run_token(tiny_bert_encoder, tmp_path):
    def run(arguments: str, output_dir=None):
        output_dir = output_dir or str(tmp_path / "out")
        common = f"""
            --model_name_or_path {tiny_bert_encoder} --output_dir {output_dir} --cache_dir {tmp_path / "cache"}
            --per_device_train_batch_size 2 --per_device_eval_batch_size 4 --num_train_epochs 2
            --learning_rate 1e-3 --layer_decay 0.8
        """
        run_recipe("token_classification", common.split() + QUIET + arguments.split())
        return output_dir

    return run


def test_conll_file_trains_scores_with_seqeval_and_predicts(run_token, conll_file, capsys):
    output_dir = run_token(
        f"--train_file {conll_file} --validation_file {conll_file} --test_file {conll_file} "
        "--do_train --do_eval --do_predict --return_entity_level_metrics"
    )
    results = read_json(output_dir, "all_results.json")
    assert results["train_samples"] == 4 and results["eval_samples"] == 4 and results["predict_samples"] == 4
    for name in ("precision", "recall", "f1", "accuracy", "PER_f1", "LOC_f1", "ORG_f1", "MISC_f1"):
        assert 0.0 <= results[f"eval_{name}"] <= 1.0
    assert read_json(output_dir, "trainer_state.json")["global_step"] == 4  # 2 epochs of 2 batches of 2
    assert list(read_json(output_dir, "config.json")["id2label"].values()) == TAGS

    # One line of tags per sentence, one tag per word.
    with open(os.path.join(output_dir, "predictions.txt"), encoding="utf-8") as handle:
        predicted = [line.split() for line in handle.read().splitlines()]
    assert [len(sentence) for sentence in predicted] == [8, 9, 9, 11]
    assert all(tag in TAGS for sentence in predicted for tag in sentence)

    lines = capsys.readouterr().out.splitlines()
    start = lines.index("***** layer-wise learning rates (L=3 blocks, depths by block_stack) *****")
    table = [line.split() for line in lines[start + 3 : start + 8]]
    assert [row[1] for row in table] == ["embeddings"] + [f"bert.encoder.layer.{i}" for i in range(3)] + ["head"]
    assert [row[4] for row in table] == [f"{1e-3 * 0.8**k:.3e}" for k in (4, 3, 2, 1, 0)]
    assert table[-1][2] == f"{32 * 9 + 9:,}"  # the new classifier alone: BertForTokenClassification has no pooler


def test_parquet_with_classlabel_tags(run_token, tmp_path):
    path = tmp_path / "ner.parquet"
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=["O", "B-PER", "I-PER"]))})
    sentences = {"tokens": [["Maria", "Lopez", "left"], ["Tom", "stayed"]], "ner_tags": [[1, 2, 0], [1, 0]]}
    Dataset.from_dict(sentences, features=features).to_parquet(str(path))
    output_dir = run_token(f"--train_file {path} --validation_file {path}")
    assert read_json(output_dir, "config.json")["id2label"] == {"0": "O", "1": "B-PER", "2": "I-PER"}
    assert read_json(output_dir, "all_results.json")["eval_samples"] == 2


def test_eval_strategy_without_do_train_trains(run_token, conll_file):
    output_dir = run_token(f"--train_file {conll_file} --validation_file {conll_file} --eval_strategy epoch")
    results = read_json(output_dir, "all_results.json")
    assert (results["train_samples"], results["epoch"], results["eval_samples"]) == (4, 2.0, 4)
    state = read_json(output_dir, "trainer_state.json")
    assert state["global_step"] == 4
    assert [entry["epoch"] for entry in state["log_history"] if "eval_f1" in entry] == [1.0, 2.0]


def test_a_run_that_trains_nothing_says_so(run_token, tiny_bert_encoder, conll_file, tmp_path, caplog):
    stages = {
        "evaluate": "--do_eval",
        "predict": f"--do_predict --test_file {conll_file}",
        "evaluate-every-epoch": "--do_train false --eval_strategy epoch",
    }
    for name, flags in stages.items():
        output_dir = str(tmp_path / name)
        with caplog.at_level(logging.WARNING, logger="recipe_utils"):
            run_token(f"--train_file {conll_file} --validation_file {conll_file} {flags}", output_dir)
        assert "train_samples" not in read_json(output_dir, "all_results.json")
        assert caplog.messages[-1] == (
            "This run trained nothing (--do_train false, or only --do_eval / --do_predict given): every score above "
            f"is that of {tiny_bert_encoder} as loaded. Drop those flags, or pass --do_train, to fine-tune."
        )


def test_files_other_than_tables_are_read_as_conll_text():
    for name in ("train.txt", "eng.train", "eng.testa", "ner.conll", "dev.iob"):
        assert token_classification.is_conll_file(name)
    for name in ("train.json", "train.jsonl", "train.parquet", "train.csv", "train.tsv"):
        assert not token_classification.is_conll_file(name)


def test_read_conll_file(conll_file):
    dataset = read_conll_file(conll_file, ["tokens", "pos_tags", "chunk_tags", "ner_tags"])
    assert len(dataset) == 4
    assert dataset[0]["tokens"] == ["Maria", "Lopez", "joined", "Acme", "Robotics", "in", "Lisbon", "."]
    assert dataset[0]["ner_tags"] == ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"]
    assert dataset[3]["tokens"][-3:] == ["on", "Monday", "."]


def test_align_tags_to_sub_word_tokens():
    tags = LabelSet.from_names(TAGS)
    inside = inside_tag_ids(tags)
    assert [TAGS[inside[tags.ids[tag]]] for tag in TAGS] == [
        "I-LOC", "I-MISC", "I-ORG", "I-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O",
    ]  # fmt: skip
    # [CLS] Mar ##ia Lopez [SEP]: Maria is B-PER, Lopez I-PER.
    word_ids, word_tags = [None, 0, 0, 1, None], [tags.ids["B-PER"], tags.ids["I-PER"]]
    b_per, i_per = tags.ids["B-PER"], tags.ids["I-PER"]
    assert align_tags(word_ids, word_tags, inside, label_all_tokens=False) == [-100, b_per, -100, i_per, -100]
    assert align_tags(word_ids, word_tags, inside, label_all_tokens=True) == [-100, b_per, i_per, i_per, -100]


def test_seqeval_scores_count_entities():
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predictions = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-LOC"]]
    # Entities: PER and ORG found, LOC missed, one spurious LOC: precision 2/3, recall 2/3; 4 of 6 tokens right.
    scores = seqeval_scores(predictions, references, entity_level=True)
    assert scores == pytest.approx(
        {
            "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "accuracy": 4 / 6,
            "LOC_precision": 0.0, "LOC_recall": 0.0, "LOC_f1": 0.0,
            "ORG_precision": 1.0, "ORG_recall": 1.0, "ORG_f1": 1.0,
            "PER_precision": 1.0, "PER_recall": 1.0, "PER_f1": 1.0,
        }
    )  # fmt: skip


def _refusal(arguments: str, tmp_path) -> str:
    """The message the recipe stops with; the model does not exist, so the data was checked before loading it."""
    common = f"--model_name_or_path /no/such/model --output_dir {tmp_path / 'out'} --cache_dir {tmp_path / 'cache'}"
    with pytest.raises(ValueError) as error:
        token_classification.main(common.split() + QUIET + arguments.split())
    return str(error.value)


def test_a_line_with_other_columns_is_named_with_file_and_line(conll_file, tmp_path):
    assert _refusal(f"--train_file {conll_file} --conll_columns tokens ner_tags --do_train", tmp_path) == (
        f"{conll_file}, line 3: 4 columns, but --conll_columns names 2 (tokens ner_tags)."
    )


def test_tags_that_do_not_fit_are_named(conll_file, tmp_path):
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text(json.dumps({"tokens": ["Ana", "sings"], "ner_tags": ["B-PERSON", "O"]}) + "\n", encoding="utf-8")
    assert _refusal(f"--train_file {conll_file} --validation_file {jsonl}", tmp_path) == (
        f"Column 'ner_tags' of {jsonl} holds tags ['B-PERSON'] that are not among the 9 tags {TAGS} of {conll_file}."
    )
    jsonl.write_text(json.dumps({"tokens": ["Ana", "sings"], "ner_tags": ["B-PER"]}) + "\n", encoding="utf-8")
    assert _refusal(f"--train_file {conll_file} --validation_file {jsonl}", tmp_path) == (
        f"{jsonl}, row 1, column 'ner_tags': 1 tags for the 2 words of 'tokens'."
    )
    jsonl.write_text(json.dumps({"tokens": ["Ana", "sings"], "ner_tags": [1, 0]}) + "\n", encoding="utf-8")
    assert _refusal(f"--train_file {jsonl} --do_train", tmp_path) == (
        f"Column 'ner_tags' of {jsonl} must hold lists of tag names (B-PER, I-PER, O, ...) or of ClassLabel ids, but "
        "holds List(Value('int64')): seqeval scores entities by their tag names."
    )


def test_missing_files_columns_and_types_are_named(conll_file, tmp_path):
    missing = "/no/such/train.conll"
    assert _refusal(f"--train_file {missing}", tmp_path) == f"--train_file {missing}: no such file."
    table = tmp_path / "train.csv"
    table.write_text("tokens,ner_tags\n", encoding="utf-8")
    assert _refusal(f"--train_file {table}", tmp_path).startswith(f"--train_file {table}: CSV / TSV cannot hold lists")
    assert _refusal(f"--train_file {conll_file} --label_column ner --do_train", tmp_path) == (
        "--conll_columns tokens pos_tags chunk_tags ner_tags must name the --tokens_column 'tokens' and the "
        "--label_column 'ner'."
    )
    empty = tmp_path / "empty.conll"
    empty.write_text("-DOCSTART- -X- -X- O\n\n", encoding="utf-8")
    assert _refusal(f"--train_file {empty} --do_train", tmp_path) == f"{empty} holds no rows."
