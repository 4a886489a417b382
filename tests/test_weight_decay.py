"""Weight-decay rules: which parameters get no weight decay, and which modules are norms."""

import pytest
import torch
from tiny_models import tiny_model
from torch import nn

from finetune_llrd import no_weight_decay_names
from finetune_llrd.depths import is_norm_module


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


class _OddNorm(nn.Module):
    """A normalization whose class, not its attribute name, says what it is; its scale is 2-D."""

    def __init__(self, width):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, width))


class _Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.gate = _OddNorm(width)  # a norm under a name with no "norm" in it
        self.norm_proj = nn.Linear(width, width)  # a Linear whose name says "norm"
        self.rms = nn.RMSNorm(width)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.blocks = nn.ModuleList(_Block(4) for _ in range(2))
        self.head = nn.Linear(4, 2)
        self.mamba_a_log = nn.Parameter(torch.zeros(4, 4))
        self.mamba_a_log._no_weight_decay = True


def test_weight_decay_exemptions_follow_module_classes_and_declarations():
    model = _Net()
    assert is_norm_module(model.blocks[0].gate)
    exempt = no_weight_decay_names(model)
    assert "blocks.0.gate.scale" in exempt  # 2-D, and no "norm" in its name: the class decides
    assert "blocks.0.norm_proj.weight" not in exempt  # "norm" in its name, but a Linear
    assert {"blocks.0.rms.weight", "blocks.0.norm_proj.bias", "cls_token", "mamba_a_log"} <= exempt
    assert "embed.weight" not in exempt and "head.weight" not in exempt


def test_norm_detection_by_class():
    class ScaleNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3, 3))

    class SubclassedLayerNorm(nn.LayerNorm):
        pass

    for module in (
        nn.LayerNorm(3),
        nn.BatchNorm2d(3),
        nn.GroupNorm(1, 3),
        nn.RMSNorm(3),
        ScaleNorm(),
        SubclassedLayerNorm(3),
    ):
        assert is_norm_module(module), type(module).__name__
    for module in (nn.Linear(3, 3), nn.Conv2d(3, 3, 1), nn.Embedding(3, 3)):
        assert not is_norm_module(module), type(module).__name__

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Sequential(nn.Linear(3, 3), ScaleNorm()) for _ in range(2))

    exempt = no_weight_decay_names(Net())
    assert exempt == {"layers.0.0.bias", "layers.0.1.weight", "layers.1.0.bias", "layers.1.1.weight"}


def test_vision_tokens_positions_and_layer_scales_get_no_decay():
    model = tiny_model("dinov2")
    exempt = no_weight_decay_names(model)
    decayed = {n for n, _ in model.named_parameters()} - exempt
    assert {
        "dinov2.embeddings.cls_token",
        "dinov2.embeddings.mask_token",
        "dinov2.embeddings.position_embeddings",
    } <= exempt
    assert all(p.ndim >= 2 for n, p in model.named_parameters() if n in decayed)
    assert decayed == {
        n
        for n, p in model.named_parameters()
        if p.ndim >= 2
        and n
        not in {"dinov2.embeddings.cls_token", "dinov2.embeddings.mask_token", "dinov2.embeddings.position_embeddings"}
    }
    assert "dinov2.encoder.layer.0.layer_scale1.lambda1" in exempt

    clip = tiny_model("clip")
    assert "vision_model.embeddings.position_embedding.weight" in no_weight_decay_names(clip)
    # A text model's position table is an ordinary embedding, decayed as the stock Trainer does.
    assert "bert.embeddings.position_embeddings.weight" not in no_weight_decay_names(tiny_model("bert"))


def test_modules_no_weight_decay_declaration_is_honoured():
    class Declaring(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(3, 3), nn.ReLU()) for _ in range(2))
            self.table = nn.Parameter(torch.zeros(4, 3))
            self.head = nn.Linear(3, 2)

        def no_weight_decay(self):
            return {"table"}

    assert "table" in no_weight_decay_names(Declaring())
