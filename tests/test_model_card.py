"""finetune_llrd.model_card: the layer-wise section of a model card."""

import pytest
from tiny_models import tiny_model
from training import RandomTokens, training_args
from transformers import TrainingArguments

from finetune_llrd import (
    LLRDTrainer,
    LLRDTrainingArguments,
    add_layerwise_section,
    layerwise_model_card_section,
)
from finetune_llrd.model_card import SECTION_END, SECTION_START, layerwise_settings


def _trainer(tmp_path, **overrides):
    args = training_args(tmp_path, **{"layer_decay": 0.5, "max_steps": 2, **overrides})
    return LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())


def test_settings_are_the_fields_llrd_training_arguments_adds(tmp_path):
    args = LLRDTrainingArguments(output_dir=str(tmp_path), layer_decay=0.8, head_learning_rate=1e-3)
    settings = layerwise_settings(args)
    assert settings["layer_decay"] == 0.8 and settings["head_learning_rate"] == 1e-3
    assert settings["embedding_learning_rate"] is None and settings["layer_grouping"] == "block"
    assert "learning_rate" not in settings and "output_dir" not in settings
    assert layerwise_settings(TrainingArguments(output_dir=str(tmp_path))) == {}


def test_rows_before_training_are_the_planned_rates(tmp_path):
    trainer = _trainer(tmp_path)
    assert trainer.optimizer is None
    rows = trainer.layerwise_lr_table()
    assert [row["lr"] for row in rows] == [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)]
    assert [row["block"] for row in rows] == ["embeddings"] + [f"bert.encoder.layer.{i}" for i in range(3)] + ["head"]


def test_rows_after_training_are_the_base_rates_not_the_decayed_ones(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train()
    # The linear schedule has brought every group's current rate to 0 ...
    assert [group["lr"] for group in trainer.optimizer.param_groups] == [0.0] * 10
    # ... the table records the rates the schedule scaled.
    assert [row["lr"] for row in trainer.layerwise_lr_table()] == [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)]


def test_section_lists_settings_and_one_table_row_per_depth(tmp_path):
    section = layerwise_model_card_section(_trainer(tmp_path))
    lines = section.splitlines()
    assert lines[0] == "### Layer-wise learning rates"
    assert "- learning_rate: 0.001" in lines and "- layer_decay: 0.5" in lines
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 5
    assert rows[0].startswith("| 0 | `embeddings` |") and rows[0].endswith("| 6.250e-05 | 0.01 |")
    assert rows[-1].startswith("| 4 | `head` |") and rows[-1].endswith("| 1.000e-03 | 0.01 |")


def test_section_says_when_the_optimizer_is_the_stock_one(tmp_path):
    section = layerwise_model_card_section(_trainer(tmp_path, layer_decay=1.0))
    assert "The optimizer was the stock one" in section and "| depth |" not in section


def test_add_section_before_framework_versions_and_replace_it_on_a_second_call(tmp_path):
    trainer = _trainer(tmp_path)
    card = tmp_path / "README.md"
    card.write_text("# model\n\n### Training hyperparameters\n\n- lr\n\n### Framework versions\n\n- Transformers\n")
    add_layerwise_section(trainer)
    first = card.read_text()
    assert first.index(SECTION_START) < first.index("### Framework versions")
    assert first.startswith("# model\n\n### Training hyperparameters\n\n- lr\n\n" + SECTION_START)

    trainer.args.layer_decay = 0.25
    add_layerwise_section(trainer)
    second = card.read_text()
    assert second.count(SECTION_START) == 1 and second.count(SECTION_END) == 1
    assert "- layer_decay: 0.25" in second and "- layer_decay: 0.5" not in second
    assert second.endswith("### Framework versions\n\n- Transformers\n")


def test_add_section_appends_to_a_card_without_framework_versions(tmp_path):
    card = tmp_path / "card.md"
    card.write_text("# my card\n")
    add_layerwise_section(_trainer(tmp_path), card)
    text = card.read_text()
    assert text.startswith("# my card\n\n" + SECTION_START + "\n### Layer-wise learning rates\n")
    assert text.endswith(SECTION_END + "\n")


def test_add_section_needs_a_card(tmp_path):
    with pytest.raises(FileNotFoundError, match="call trainer.create_model_card"):
        add_layerwise_section(_trainer(tmp_path))
