"""Models that define timm's group_matcher: a module with timm's VisionTransformer layout, and real timm
models when timm is installed."""

import pytest
import torch
from tiny_models import names_at
from torch import nn

from finetune_llrd import layer_map, no_weight_decay_names, param_groups


class _Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)


class _Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 2)
        self.fc2 = nn.Linear(dim * 2, dim)


class _Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim)


class _PatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 4, 4)


class TimmStyleViT(nn.Module):
    """The parameter layout, group_matcher and no_weight_decay of timm's VisionTransformer."""

    def __init__(self, dim=16, depth=3, num_classes=5):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 17, dim))
        self.patch_embed = _PatchEmbed(dim)
        self.blocks = nn.Sequential(*[_Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def no_weight_decay(self):
        return {"pos_embed", "cls_token", "dist_token"}

    def group_matcher(self, coarse=False):
        return dict(stem=r"^cls_token|pos_embed|patch_embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])


def test_group_matcher_rule_gives_exact_depths():
    model = TimmStyleViT()
    layers = layer_map(model)
    assert layers.method == "timm_group_matcher"
    assert layers.num_layers == 3
    assert set(names_at(layers, 0)) == {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    for depth in (1, 2, 3):
        assert set(names_at(layers, depth)) == {
            n for n, _ in model.named_parameters() if n.startswith(f"blocks.{depth - 1}.")
        }
    # timm merges the final norm into the last block's group; here it joins the head, as for every model.
    assert set(names_at(layers, 4)) == {"norm.weight", "norm.bias", "head.weight", "head.bias"}


def test_group_matcher_callable_form():
    model = TimmStyleViT()
    model.group_matcher = lambda coarse=False: (
        lambda name: (
            (0,)
            if name.startswith(("cls", "pos", "patch"))
            else (1, int(name.split(".")[1]))
            if name.startswith("blocks.")
            else (float("inf"),)
        )
    )
    layers = layer_map(model)
    assert layers.num_layers == 3
    assert layers.depths["blocks.2.mlp.fc2.weight"] == 3 and layers.depths["norm.weight"] == 4


def test_timm_no_weight_decay_list_and_rates():
    model = TimmStyleViT()
    assert no_weight_decay_names(model) >= {"cls_token", "pos_embed"}
    groups = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.05)
    decayed = {n for g in groups if g["weight_decay"] for n in g["param_names"]}
    assert decayed == {n for n, p in model.named_parameters() if p.ndim >= 2 and n not in {"cls_token", "pos_embed"}}
    assert {g["layer"]: g["lr"] for g in groups} == {0: 1e-3 / 16, 1: 1e-3 / 8, 2: 1e-3 / 4, 3: 1e-3 / 2, 4: 1e-3}


@pytest.mark.parametrize(
    "name, kwargs, num_layers",
    [
        ("vit_tiny_patch16_224", dict(depth=3, img_size=32, patch_size=8), 3),
        (
            "swin_tiny_patch4_window7_224",
            dict(depths=(1, 2), num_heads=(2, 4), embed_dim=16, img_size=32, window_size=2),
            3,
        ),
        ("convnext_atto", dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32)), 5),
        ("resnet18", dict(layers=(1, 1, 1, 1)), 4),
    ],
)
def test_real_timm_models(name, kwargs, num_layers):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs)
    layers = layer_map(model)
    assert layers.method == "timm_group_matcher"
    assert layers.num_layers == num_layers
    groups = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.05)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    head = model.get_classifier()
    assert {layers.depths[f"{n}"] for n, p in model.named_parameters() if any(p is q for q in head.parameters())} == {
        num_layers + 1
    }


def test_real_timm_stage_grouping():
    timm = pytest.importorskip("timm")
    model = timm.create_model(
        "convnext_atto", pretrained=False, num_classes=5, depths=(1, 1, 2, 1), dims=(8, 16, 24, 32)
    )
    layers = layer_map(model, grouping="stage")
    assert layers.num_layers == 4
    for stage in range(4):
        assert set(names_at(layers, stage + 1)) == {
            n for n, _ in model.named_parameters() if n.startswith(f"stages.{stage}.")
        }
