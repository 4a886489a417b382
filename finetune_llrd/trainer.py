"""`LLRDTrainer`: transformers' `Trainer` with layer-wise learning rates."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_optimizer import has_mixed_dtensor, is_optimizer_factory

from .arguments import LLRDTrainingArguments
from .layer_map import LayerMap, LayerMapping, layer_map
from .param_groups import format_lr_table, lr_table, param_groups

logger = logging.getLogger(__name__)

# Optimizer keyword arguments through which an optimizer brings its own parameter groups (GaLore, APOLLO,
# LOMO, the layer-wise dummy optimizer): layer-wise groups cannot be applied to them.
_OWN_GROUP_KWARGS = ("params", "model", "optimizer_dict")


class LLRDTrainer(Trainer):
    """A drop-in `Trainer` whose optimizer has one parameter group per depth and weight-decay class.

    Everything else is the stock Trainer's: the optimizer class and its arguments (``--optim``), the
    scheduler, ``model_init`` and ``hyperparameter_search``, the split of groups by DTensor device mesh.
    With ``LLRDTrainingArguments`` at their defaults it builds exactly the stock optimizer.

    At every logging step it logs the rate of every depth (``lr/layer_00`` ... ``lr/head``).

    Args:
        *args: the stock Trainer's positional arguments.
        layer_mapping: your own depths, ``{regex: depth}`` or a callable ``name -> depth | None``; wins over
            ``args.layer_mapping`` and over the automatic map.
        **kwargs: the stock Trainer's keyword arguments.
    """

    def __init__(self, *args, layer_mapping: LayerMapping | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.layer_mapping = layer_mapping
        self.layers: LayerMap | None = None
        self._rates_of_last_step: list[tuple[int, float]] | None = None
        self.add_callback(_RecordRatesOfStep(self))

    def _layerwise_args(self) -> LLRDTrainingArguments | None:
        args = self.args
        if isinstance(args, LLRDTrainingArguments) and (args.uses_layerwise_groups or self.layer_mapping is not None):
            return args
        return None

    def compute_layer_map(self, model: nn.Module) -> LayerMap:
        """The depth of every parameter of ``model`` under this trainer's settings."""
        args = self.args
        mapping = self.layer_mapping if self.layer_mapping is not None else getattr(args, "layer_mapping", None)
        return layer_map(model, grouping=getattr(args, "layer_grouping", "block"), mapping=mapping)

    def build_param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """The layer-wise parameter groups of ``model``; override to change them."""
        args = self.args
        self.layers = self.compute_layer_map(model)
        return param_groups(
            model,
            lr=args.learning_rate,
            layer_decay=args.layer_decay,
            weight_decay=args.weight_decay,
            head_learning_rate=args.head_learning_rate,
            embedding_learning_rate=args.embedding_learning_rate,
            layer_decay_min_scale=args.layer_decay_min_scale,
            layers=self.layers,
        )

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is not None or self._layerwise_args() is None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        groups = _split_by_device_mesh(self.build_param_groups(opt_model))

        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        if is_optimizer_factory(optimizer_cls) or any(key in optimizer_kwargs for key in _OWN_GROUP_KWARGS):
            raise ValueError(
                f"--optim {self.args.optim} builds its own parameter groups, so layer-wise learning rates cannot "
                "be applied to it. Choose another optimizer (adamw_torch, adamw_torch_fused, adafactor, sgd, ...) "
                "or set layer_decay=1.0 with no head/embedding learning rate."
            )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        if "bitsandbytes" in str(optimizer_cls) and optimizer_kwargs.get("optim_bits", None) == 8:
            _keep_embeddings_in_32_bit(opt_model)
        logger.info(
            "Layer-wise learning rates (%s rule, L=%d):\n%s",
            self.layers.rule,
            self.layers.num_layers,
            format_lr_table(lr_table(groups, self.layers)),
        )
        return super().create_optimizer(model)

    def layerwise_lr_table(self) -> list[dict[str, Any]]:
        """One row per depth of the current optimizer: depth, block, parameter counts, lr, weight decay."""
        if self.optimizer is None:
            return []
        return lr_table(self.optimizer.param_groups, self.layers)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "learning_rate" in logs and self.optimizer is not None:
            # Like the stock "learning_rate": the rates of the optimizer step just taken, before the
            # scheduler moved them on.
            if self._rates_of_last_step is not None:
                groups = [{"layer": depth, "lr": rate} for depth, rate in self._rates_of_last_step]
            else:
                groups = self.optimizer.param_groups
            head_depth = self.layers.head_depth if self.layers is not None else None
            logs.update(depth_learning_rate_logs(groups, head_depth=head_depth))
        super().log(logs, start_time)


class _RecordRatesOfStep(TrainerCallback):
    """Keeps each depth's rate as the optimizer step used it (the scheduler changes it right after)."""

    def __init__(self, trainer: LLRDTrainer):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:
            self.trainer._rates_of_last_step = [
                (group["layer"], group["lr"]) for group in optimizer.param_groups if "layer" in group
            ]


def depth_learning_rate_logs(groups: list[dict[str, Any]], head_depth: int | None = None) -> dict[str, float]:
    """The current rate of every depth, keyed ``lr/layer_00`` ... ``lr/layer_L`` and ``lr/head``.

    Args:
        groups: optimizer parameter groups carrying ``layer``; groups without it are skipped.
        head_depth: L+1; by default the deepest depth present.

    Returns:
        An empty dict when no group carries ``layer``.
    """
    rates: dict[int, float] = {}
    for group in groups:
        if "layer" in group:
            rates.setdefault(int(group["layer"]), float(group["lr"]))
    if not rates:
        return {}
    head = max(rates) if head_depth is None else head_depth
    width = max(2, len(str(head - 1)))
    logs = {f"lr/layer_{depth:0{width}d}": rate for depth, rate in sorted(rates.items()) if depth != head}
    if head in rates:
        logs["lr/head"] = rates[head]
    return logs


def _split_by_device_mesh(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parameters on different DTensor device meshes (expert parallelism, 2-D meshes) cannot share a
    fused/foreach kernel: as the stock Trainer does, each mesh gets its own group."""
    if not has_mixed_dtensor(p for group in groups for p in group["params"]):
        return groups
    from torch.distributed.tensor import DTensor

    split = []
    for group in groups:
        by_mesh: dict[Any, list[int]] = defaultdict(list)
        for index, param in enumerate(group["params"]):
            by_mesh[param.device_mesh if isinstance(param, DTensor) else None].append(index)
        for indices in by_mesh.values():
            split.append(
                {
                    **group,
                    "params": [group["params"][i] for i in indices],
                    "param_names": [group["param_names"][i] for i in indices],
                }
            )
    return split


def _keep_embeddings_in_32_bit(model: nn.Module) -> None:
    """As the stock Trainer does for 8-bit bitsandbytes optimizers: embeddings keep 32-bit state."""
    import bitsandbytes

    manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            manager.register_module_override(module, "weight", {"optim_bits": 32})
