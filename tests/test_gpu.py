"""The GPU checks as tests (`python -m pytest -m gpu` on a machine with a CUDA device); scripts/gpu_check.sh
runs the same checks plus FSDP2 and ZeRO-2 through `accelerate launch`."""

import json
import os
import subprocess
import sys

import pytest
import torch


SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "gpu_check.py")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_with_fused_adamw_on_the_gpu(tmp_path, precision):
    result = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "precision",
            precision,
            "--device",
            "cuda",
            "--steps",
            "20",
            "--output_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["ok"] and record["fused"] and record["grad_scaler"] == (precision == "fp16")
