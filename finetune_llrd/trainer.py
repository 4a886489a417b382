"""`LayerwiseTrainerMixin`: layer-wise learning rates for any `transformers.Trainer` subclass, and `LLRDTrainer`,
the mixin on the stock `Trainer`."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerState
from transformers.trainer_utils import TrainOutput

from ._moved import moved_names
from ._trainer_internals import load_checkpoint_weights, mark_scheduler_created
from .arguments import LayerwiseArgumentsMixin
from .callbacks import GradualUnfreezingCallback, NonFiniteLossCallback
from .checkpoints import TRAINER_STATE, check_resume_matches, resolve_resume_checkpoint
from .depths import LayerMap, LayerMapping, layer_map, layer_map_of_wrapper
from .diagnostics import DepthStepMonitor
from .groups import format_lr_table, frozen_by_rules, lr_table, param_groups
from .integrations import prepare_for_optimizer
from .integrations.deepspeed import check_deepspeed_config, refuse_step_features_under_deepspeed
from .launching import check_processes_joined
from .model_card import add_layerwise_section
from .optimizer_choice import (
    given_optimizer_differences,
    is_muon,
    muon_is_asked,
    muon_optimizer_kwargs,
    optimizer_from_factory,
    refuse_muon_rules_without_muon,
    refuse_muon_under_sharding,
)
from .optimizers import LayerwiseMuon, muon_groups
from .preemption import PreemptionCallback
from .reinit import reinit_top_layers
from .schedules import SLANTED_TRIANGULAR, get_slanted_triangular_schedule


logger = logging.getLogger(__name__)

__all__ = ["LLRDTrainer", "LayerwiseTrainerMixin"]

# Fields of LayerwiseArgumentsMixin that do not shape the optimizer's groups.
_NOT_GROUP_SETTINGS = (
    "layer_lr_adaptation_interval",
    "reinit_top_layers",
    "stop_on_nonfinite_loss",
    "save_on_preemption",
)

# Optimizer keyword arguments through which an optimizer brings its own parameter groups (GaLore, APOLLO,
# LOMO, the layer-wise dummy optimizer): layer-wise groups cannot be applied to them.
_OWN_GROUP_KWARGS = ("params", "model", "optimizer_dict")


class LayerwiseTrainerMixin:
    """Layer-wise learning rates for any ``transformers.Trainer`` subclass: put it first among the bases,
        ``class MyTrainer(LayerwiseTrainerMixin, Seq2SeqTrainer)``, or let :func:`finetune_llrd.layerwise_trainer`
        write that class. The trainer's optimizer then has one parameter group per depth and weight-decay class.

        Everything else is the wrapped Trainer's: the optimizer class and its arguments (``--optim``), the
        scheduler, ``model_init`` and ``hyperparameter_search``, the split of groups by DTensor device mesh.
        With ``LLRDTrainingArguments`` at their defaults it builds exactly the stock optimizer.

        At every logging step it logs the rate of every depth (``lr/layer_00`` ... ``lr/head``), and with
        ``log_layer_grad_norms`` every depth's gradient norm and update-to-weight ratio. It also runs gradual
        unfreezing, the per-depth rate adaptations (``layer_lr_adaptation``), top-layer re-initialisation, the
        slanted triangular schedule and the stop on a non-finite loss when the arguments ask for them.

        The methods it overrides take and forward whatever the wrapped Trainer's take (``*args, **kwargs``), so
        the wrapped class's own overrides (TRL's ``log`` and ``training_step``, sentence-transformers'
        ``get_optimizer_cls_and_kwargs``) still run.

        The trainer only wires: ``depth_monitor`` (:class:`~finetune_llrd.diagnostics.DepthStepMonitor`) owns the
        per-depth statistics and adaptation of every step, ``nonfinite_loss_stop``
        (:class:`~finetune_llrd.callbacks.NonFiniteLossCallback`) the stop on a NaN or inf loss, and
        ``finetune_llrd._trainer_internals`` the one private attribute of the stock Trainer it has to set.

        Per-module rules (``param_group_rules``) and LoRA+ (``loraplus_lr_ratio``) act on top of the depths; a
    ``freeze`` rule's parameters get ``requires_grad=False`` when the optimizer is built. What would drop the
    layer-wise settings in silence is refused: an optimizer passed in ``optimizers=`` whose groups were not built by
    :func:`~finetune_llrd.param_groups`, and a ``create_optimizer`` of the wrapped class's own (override
    :meth:`build_param_groups` or ``get_optimizer_cls_and_kwargs`` instead). The logged ``learning_rate`` is
    ``--learning_rate`` as scheduled, not the first group's rate.

        Args:
            *args: the wrapped Trainer's positional arguments.
            layer_mapping: your own depths, ``{regex: depth}`` or a callable ``name -> depth | None``; wins over
                ``args.layer_mapping`` and over the automatic map.
            **kwargs: the wrapped Trainer's keyword arguments.

        Attributes:
            optimizer_was_given: whether the optimizer came from ``optimizers=`` rather than from the trainer (the model
                card then describes that one).
    """

    def __init__(self, *args, layer_mapping: LayerMapping | None = None, **kwargs):
        self.layer_mapping = layer_mapping
        self._layers: LayerMap | None = None
        self._resume_checkpoint: str | None = None
        super().__init__(*args, **kwargs)
        check_processes_joined(self.args)  # also for arguments that are not layer-wise ones
        self._check_features_fit_the_setup()
        self._refuse_what_would_drop_the_layerwise_groups()
        self.optimizer_was_given = self.optimizer is not None
        if self.model_init is None:
            self._reinit_top_layers(self.model)
        # Callbacks run in the order added: preemption first (the loss check at step end must see the save it
        # asks for), then the loss check before the adaptation, unfreezing last.
        self.preemption: PreemptionCallback | None = None
        if getattr(self.args, "save_on_preemption", False):
            self.preemption = PreemptionCallback()
            self.add_callback(self.preemption)
        self.nonfinite_loss_stop: NonFiniteLossCallback | None = None
        if getattr(self.args, "stop_on_nonfinite_loss", False):
            self.nonfinite_loss_stop = NonFiniteLossCallback()
            self.add_callback(self.nonfinite_loss_stop)
        self.depth_monitor = DepthStepMonitor()
        self.add_callback(self.depth_monitor)
        if getattr(self.args, "gradual_unfreeze_steps", 0) > 0:
            self.add_callback(GradualUnfreezingCallback(self.args.gradual_unfreeze_steps))

    @property
    def layers(self) -> LayerMap | None:
        """The depth of every parameter: the map the optimizer's groups were built with, or, before the
        optimizer is built, the map it will be built with. None when the optimizer is the stock one."""
        if self.optimizer is None and self._layerwise_args() is not None and self.model is not None:
            return self._optimized_layers(self.model)[1]
        return self._layers

    def _layerwise_args(self) -> LayerwiseArgumentsMixin | None:
        args = self.args
        if isinstance(args, LayerwiseArgumentsMixin) and (
            args.uses_layerwise_groups
            or self.layer_mapping is not None
            or is_muon(getattr(self, "optimizer_cls_and_kwargs", None) and self.optimizer_cls_and_kwargs[0])
        ):
            return args
        return None

    def _check_features_fit_the_setup(self) -> None:
        if muon_is_asked(self.args, getattr(self, "optimizer_cls_and_kwargs", None)):
            refuse_muon_under_sharding(self)
        if not isinstance(self.args, LayerwiseArgumentsMixin) or not self.is_deepspeed_enabled:
            return
        if self._layerwise_args() is not None:
            check_deepspeed_config(self.accelerator.state.deepspeed_plugin.hf_ds_config.config)
        refuse_step_features_under_deepspeed(self.args)

    def _refuse_what_would_drop_the_layerwise_groups(self) -> None:
        """Refuses, when layer-wise settings are on, what would train without the layer-wise groups in silence: an
        optimizer passed in ``optimizers=`` whose groups were not built by :func:`~finetune_llrd.param_groups`, and
        a wrapped class with a ``create_optimizer`` of its own (which would replace the groups, or, with the usual
        ``if self.optimizer is None`` guard, be skipped itself).

        Raises:
            ValueError: naming the settings that would be lost and what to do instead.
        """
        if self._layerwise_args() is None:
            return
        if self.optimizer is not None:
            self._check_given_optimizer(self.optimizer)
        mro = type(self).__mro__
        # A class below the mixin runs after it (super().create_optimizer()): it would replace the layer-wise
        # optimizer, or be skipped by it. A subclass above the mixin can compose with it through super(); whether it
        # did is checked once the optimizer is built (create_scheduler).
        wrapped = [cls for cls in mro[mro.index(LayerwiseTrainerMixin) + 1 :] if "create_optimizer" in vars(cls)]
        if wrapped and wrapped[0] is not Trainer:
            owner = wrapped[0]
            raise ValueError(
                f"{owner.__module__}.{owner.__qualname__} defines its own create_optimizer, and {self._lost_settings()} "
                "are set: its optimizer would replace the layer-wise groups (or, with an `if self.optimizer is None:` "
                "guard, be skipped for them), either way in silence. Keep the layer-wise optimizer and change it "
                "through what it calls: override build_param_groups(model, layers) to change the groups, or "
                "get_optimizer_cls_and_kwargs (or pass optimizer_cls_and_kwargs=) to change the optimizer class and "
                "its arguments; or build the optimizer yourself over finetune_llrd.param_groups(...) and pass it as "
                "optimizers=(optimizer, None)."
            )

    def _lost_settings(self) -> str:
        """The layer-wise settings away from their defaults, as a message names them."""
        args = self.args
        names = [
            f"{setting.name}={getattr(args, setting.name)!r}"
            for setting in dataclasses.fields(LayerwiseArgumentsMixin)
            if setting.name not in _NOT_GROUP_SETTINGS and getattr(args, setting.name) != setting.default
        ]
        if self.layer_mapping is not None:
            names.append("layer_mapping (given to the trainer)")
        return ", ".join(names) or "the layer-wise settings"

    def _check_given_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Refuses an optimizer from outside whose groups carry no depth, or whose groups differ from those the
        layer-wise settings build (another rate, weight decay or parameter set), when layer-wise settings are on."""
        if any("layer" in group for group in optimizer.param_groups):
            self._check_given_groups_follow_the_settings(optimizer)
            return
        raise ValueError(
            f"The optimizer passed in optimizers= ({type(optimizer).__name__}, {len(optimizer.param_groups)} "
            f"parameter groups without a depth) would train with none of {self._lost_settings()}: they would be "
            "dropped in silence. Build its groups with finetune_llrd.param_groups(model, rates=args.layerwise_rates, "
            "weight_decay=args.weight_decay, rules=args.rules_for(model)) (they carry each group's depth), or leave "
            "optimizers= out and let the trainer build the optimizer (--optim chooses its class), or set the "
            "layer-wise settings back to their defaults."
        )

    def _check_given_groups_follow_the_settings(self, optimizer: torch.optim.Optimizer) -> None:
        if self.model is None or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return
        module, layers = self._optimized_layers(self.model)
        self._layers = layers  # the depth of the head, for the logs, even where the groups cover fewer depths
        inner = getattr(optimizer, "optimizer", optimizer)  # behind accelerate's wrapper
        names = {id(param): name for name, param in module.named_parameters()}
        differences = given_optimizer_differences(inner.param_groups, self.build_param_groups(module, layers), names)
        if differences:
            shown = "; ".join(differences[:4]) + (f"; ... ({len(differences)} in all)" if len(differences) > 4 else "")
            raise ValueError(
                f"The optimizer passed in optimizers= does not follow learning_rate={self.args.learning_rate!r}, "
                f"weight_decay={self.args.weight_decay!r}, {self._lost_settings()}: {shown}. They would be "
                "dropped in silence. Build its groups with the same settings, finetune_llrd.param_groups(model, "
                "rates=args.layerwise_rates, weight_decay=args.weight_decay, rules=args.rules_for(model)) after "
                "trainer.freeze_by_rules(model), or leave optimizers= out and let the trainer build the optimizer."
            )

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """The stock ``train``, after checking the checkpoint to resume from: complete, readable, and built
        with the same layer-wise groups. ``resume_from_checkpoint=True`` takes the newest complete one.

        With ``save_on_preemption``, a run stopped by SIGTERM or SIGUSR1 raises ``TrainingPreempted`` (a
        ``SystemExit`` with code 75) once its checkpoint is written."""
        self._resume_checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if self._resume_checkpoint is not None and self._checkpoint_holds_every_step(self._resume_checkpoint):
            return self._finished_run(self._resume_checkpoint)
        # The signal handlers go back however training ends.
        try:
            output = super().train(self._resume_checkpoint, *args, **kwargs)
        finally:
            if self.preemption is not None:
                self.preemption.restore_signal_handlers()
        if self.preemption is not None:
            self.preemption.exit_if_preempted()
        return output

    def _checkpoint_holds_every_step(self, checkpoint: str) -> bool:
        """Whether ``checkpoint`` already reached ``max_steps``: the stock loop would then train one step more."""
        if (
            self.args.max_steps <= 0
            or self.is_deepspeed_enabled
            or self.is_fsdp_enabled
            or self.model_init is not None
        ):
            return False
        return TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE)).global_step >= self.args.max_steps

    def _finished_run(self, checkpoint: str) -> TrainOutput:
        """The outcome of resuming a run that has nothing left to train: the checkpoint's weights and state."""
        logger.warning(
            "%s already holds all %d steps of --max_steps: nothing is left to train, its weights are loaded.",
            checkpoint,
            self.args.max_steps,
        )
        load_checkpoint_weights(self, checkpoint)
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE))
        losses = [entry.get("train_loss", entry.get("loss")) for entry in self.state.log_history]
        training_loss = next((loss for loss in reversed(losses) if loss is not None), float("nan"))
        metrics = {
            "train_runtime": 0.0,
            "train_samples_per_second": 0.0,
            "train_steps_per_second": 0.0,
            "total_flos": self.state.total_flos,
        }
        if training_loss == training_loss:  # not NaN: a loss was logged
            metrics["train_loss"] = training_loss
        return TrainOutput(self.state.global_step, training_loss, metrics)

    def call_model_init(self, *args, **kwargs):
        model = super().call_model_init(*args, **kwargs)
        self._reinit_top_layers(model)
        return model

    def _reinit_top_layers(self, model: nn.Module | None) -> None:
        num_blocks = getattr(self.args, "reinit_top_layers", 0)
        if model is None or num_blocks == 0:
            return
        reinitialized = reinit_top_layers(model, num_blocks)
        logger.info("Re-initialised the top %d blocks and the head: %d modules.", num_blocks, len(reinitialized))

    def compute_layer_map(self, model: nn.Module) -> LayerMap:
        """The depth of every parameter of ``model`` under this trainer's settings."""
        args = self.args
        mapping = self.layer_mapping if self.layer_mapping is not None else getattr(args, "layer_mapping", None)
        return layer_map(
            model,
            grouping=getattr(args, "layer_grouping", "block"),
            mapping=mapping,
            towers=getattr(args, "layer_towers", "auto"),
        )

    def layerwise_module(self, model: nn.Module) -> nn.Module:
        """The module whose trainable parameters the optimizer's groups hold: ``model`` itself. A trainer whose
        loss holds parameters of its own returns the module that holds both (sentence-transformers' loss,
        which wraps the model); the parameters outside ``model`` then go to the head's depth."""
        return model

    def _optimized_layers(self, model: nn.Module) -> tuple[nn.Module, LayerMap]:
        """:meth:`layerwise_module` of ``model`` and the depth of each of its parameters."""
        module = self.layerwise_module(model)
        layers = self.compute_layer_map(model)
        if module is model:
            return module, layers
        return module, layer_map_of_wrapper(module, model, layers)

    def build_param_groups(self, model: nn.Module, layers: LayerMap | None = None) -> list[dict[str, Any]]:
        """The layer-wise parameter groups of ``model``; override to change them.

        Args:
            model: the module to optimize (:meth:`layerwise_module` of the trainer's model).
            layers: its depths; by default :meth:`compute_layer_map`.
        """
        args = self.args
        return param_groups(
            model,
            rates=args.layerwise_rates,
            weight_decay=args.weight_decay,
            layers=self.compute_layer_map(model) if layers is None else layers,
            rules=args.rules_for(model),
        )

    def freeze_by_rules(self, model: nn.Module) -> list[str]:
        """Sets ``requires_grad=False`` on the parameters of ``model`` that a ``freeze`` rule of
        ``param_group_rules`` takes (as gradual unfreezing freezes a depth), before the groups are built.

        Returns:
            The names of the parameters frozen now.
        """
        names = frozen_by_rules(model, self.args.rules_for(model))
        params = dict(model.named_parameters())
        for name in names:
            params[name].requires_grad_(False)
        if names:
            logger.info("Frozen by param_group_rules: %d parameters (%s, ...).", len(names), names[0])
        return names

    def create_optimizer(self, *args, **kwargs) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            if self._layerwise_args() is not None:
                self._check_given_optimizer(self.optimizer)  # one set after __init__, as trainer.optimizer = ...
            return super().create_optimizer(*args, **kwargs)
        if self._layerwise_args() is None:
            optimizer = super().create_optimizer(*args, **kwargs)
        else:
            optimizer = self._create_layerwise_optimizer(*args, **kwargs)
        if self._resume_checkpoint is not None and not self.is_deepspeed_enabled:
            check_resume_matches(self._resume_checkpoint, optimizer.param_groups)
        return optimizer

    def _create_layerwise_optimizer(self, *args, **kwargs) -> torch.optim.Optimizer:
        model = kwargs.get("model", args[0] if args else None)
        opt_model = self.model if model is None else model
        self.freeze_by_rules(self.layerwise_module(opt_model))
        module, layers = self._optimized_layers(opt_model)
        groups = _split_by_device_mesh(self.build_param_groups(module, layers=layers))

        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        groups, optimizer_kwargs = self.absorb_optimizer_groups(groups, optimizer_kwargs)
        muon_kwargs = muon_optimizer_kwargs(optimizer_cls, optimizer_kwargs, self.args)
        if muon_kwargs is not None:
            refuse_muon_under_sharding(self)
            optimizer_cls, optimizer_kwargs, groups = LayerwiseMuon, muon_kwargs, muon_groups(groups, module, layers)
        else:
            refuse_muon_rules_without_muon(groups)
        is_factory = not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer))
        if is_factory:  # transformers' optimizer factories: composed when they take param_groups=, else refused
            self.optimizer = optimizer_from_factory(
                optimizer_cls, opt_model, groups, optimizer_kwargs, self._lost_settings()
            )
        elif any(key in optimizer_kwargs for key in _OWN_GROUP_KWARGS):
            raise ValueError(
                f"--optim {getattr(self.args.optim, 'value', self.args.optim)} builds its own parameter groups, so "
                "layer-wise learning rates cannot "
                "be applied to it. Choose another optimizer (adamw_torch, adamw_torch_fused, adafactor, sgd, ...) "
                "or set layer_decay=1.0 with no head/embedding learning rate. (A trainer that hands over groups of its "
                f"own needs layerwise_trainer({self._wrapped_trainer_name()}), which takes them over.)"
            )
        else:
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        self._layers = layers
        prepare_for_optimizer(opt_model, optimizer_cls, optimizer_kwargs)
        logger.info(
            "Layer-wise learning rates (depths by %s, L=%d):\n%s",
            layers.method,
            layers.num_layers,
            format_lr_table(lr_table(groups, layers)),
        )
        return super().create_optimizer(*args, **kwargs)

    def _wrapped_trainer_name(self) -> str:
        """The name of the first Trainer class below the layer-wise mixins."""
        below = type(self).__mro__[type(self).__mro__.index(LayerwiseTrainerMixin) + 1 :]
        return next((cls.__name__ for cls in below if issubclass(cls, Trainer)), "TrainerCls")

    def absorb_optimizer_groups(
        self, groups: list[dict[str, Any]], optimizer_kwargs: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Where the wrapped Trainer's ``get_optimizer_cls_and_kwargs`` hands over parameter groups of its own
        (sentence-transformers' ``optimizer_dict``), folds them into the layer-wise ``groups``. The stock
        Trainer hands over none: ``groups`` and ``optimizer_kwargs`` come back unchanged.

        Returns:
            The groups to build the optimizer with, and the remaining optimizer keyword arguments.
        """
        return groups, optimizer_kwargs

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None, *args, **kwargs
    ):
        if self._layerwise_args() is not None and not any(
            "layer" in group for group in (optimizer or self.optimizer).param_groups
        ):
            owner = next(cls for cls in type(self).__mro__ if "create_optimizer" in vars(cls))
            raise ValueError(
                f"The optimizer that {owner.__qualname__}.create_optimizer returned has no layer-wise groups, so "
                f"{self._lost_settings()} would be dropped in silence: call super().create_optimizer() and change the "
                "optimizer it builds through build_param_groups or get_optimizer_cls_and_kwargs."
            )
        if self.lr_scheduler is None and self.args.lr_scheduler_type == SLANTED_TRIANGULAR:
            self.lr_scheduler = get_slanted_triangular_schedule(
                self.optimizer if optimizer is None else optimizer,
                num_training_steps,
                **(self.args.lr_scheduler_kwargs or {}),
            )
            mark_scheduler_created(self)
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer, *args, **kwargs)

    def layerwise_lr_table(self) -> list[dict[str, Any]]:
        """One row per depth: depth, block, parameter counts, base lr (the rate the schedule scales), weight decay.

        Before training, the rows of the optimizer that training will build. Empty when the optimizer is the
        stock one (``layer_decay=1.0`` and no per-depth option).
        """
        if self.optimizer is not None:
            return lr_table(self.optimizer.param_groups, self._layers)
        if self._layerwise_args() is not None and self.model is not None:
            module, layers = self._optimized_layers(self.model)
            return lr_table(self.build_param_groups(module, layers=layers), layers)
        return []

    def create_model_card(self, *args, **kwargs) -> None:
        """The stock model card (also what ``push_to_hub`` uploads), with a section that records the
        layer-wise settings and the per-depth rates."""
        super().create_model_card(*args, **kwargs)
        add_layerwise_section(self)

    # ---- the two points of a step where the helpers need the trainer ----

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        if self.nonfinite_loss_stop is not None:
            self.nonfinite_loss_stop.record_loss(loss, self.state.global_step)
        if self.accelerator.sync_gradients:
            # The gradients are now reduced across ranks and accumulated, and not yet clipped.
            self.depth_monitor.gradients_ready()
        return loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "learning_rate" in logs and self.optimizer is not None:
            # Like the stock "learning_rate": the rates of the optimizer step just taken, before the
            # scheduler moved them on.
            head_depth = self._layers.head_depth if self._layers is not None else None
            depth_logs = self.depth_monitor.logs(self.optimizer.param_groups, head_depth=head_depth)
            if depth_logs:
                logs["learning_rate"] = self._scheduled_learning_rate(logs["learning_rate"])
            logs.update(depth_logs)
        super().log(logs, *args, **kwargs)

    def _scheduled_learning_rate(self, first_group_rate: float) -> float:
        """``--learning_rate`` as the schedule has it now: the stock ``learning_rate`` log is the first group's rate
        (the embeddings' under layer-wise decay); the schedule's factor on it applies to every group."""
        groups = self.optimizer.param_groups
        bases = [float(group.get("initial_lr", group["lr"])) for group in groups]  # torchao keeps tensors
        if bases[0] > 0:
            return self.args.learning_rate * first_group_rate / bases[0]
        scheduled = self.lr_scheduler.get_last_lr() if hasattr(self.lr_scheduler, "get_last_lr") else None
        for index, base in enumerate(bases):
            if base > 0 and scheduled is not None and len(scheduled) == len(groups):
                return self.args.learning_rate * float(scheduled[index]) / base
        return float(first_group_rate)


class LLRDTrainer(LayerwiseTrainerMixin, Trainer):
    """A drop-in `Trainer` whose optimizer has one parameter group per depth and weight-decay class:
    :class:`LayerwiseTrainerMixin` on the stock ``Trainer``, the class ``layerwise_trainer(Trainer)`` returns.

    With ``LLRDTrainingArguments`` at their defaults it builds exactly the stock optimizer.

    Args:
        *args: the stock Trainer's positional arguments.
        layer_mapping: your own depths, ``{regex: depth}`` or a callable ``name -> depth | None``; wins over
            ``args.layer_mapping`` and over the automatic map.
        **kwargs: the stock Trainer's keyword arguments.
    """


def _split_by_device_mesh(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parameters on different DTensor device meshes (expert parallelism, 2-D meshes) cannot share a
    fused/foreach kernel: as the stock Trainer does, each mesh gets its own group."""
    from torch.distributed.tensor import DTensor

    meshes = {p.device_mesh if isinstance(p, DTensor) else None for group in groups for p in group["params"]}
    if len(meshes) <= 1:
        return groups

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


# NonFiniteLossError lived here in 0.1.0.
__getattr__ = moved_names(__name__, {"NonFiniteLossError": "finetune_llrd.callbacks"})
