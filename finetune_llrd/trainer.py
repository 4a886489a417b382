"""`LLRDTrainer`: transformers' `Trainer` with layer-wise learning rates."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import IntervalStrategy

from .arguments import LLRDTrainingArguments, check_deepspeed_config
from .callbacks import GradualUnfreezingCallback
from .checkpoints import check_resume_matches, complete_checkpoints, resolve_resume_checkpoint
from .diagnostics import DepthIndex, singh2015_factors
from .layer_map import LayerMap, LayerMapping, layer_map
from .model_card import add_layerwise_section
from .param_groups import format_lr_table, lr_table, param_groups
from .preemption import PreemptionCallback
from .reinit import reinit_top_layers
from .schedules import SLANTED_TRIANGULAR, get_slanted_triangular_schedule

logger = logging.getLogger(__name__)

# Optimizer keyword arguments through which an optimizer brings its own parameter groups (GaLore, APOLLO,
# LOMO, the layer-wise dummy optimizer): layer-wise groups cannot be applied to them.
_OWN_GROUP_KWARGS = ("params", "model", "optimizer_dict")


class LLRDTrainer(Trainer):
    """A drop-in `Trainer` whose optimizer has one parameter group per depth and weight-decay class.

    Everything else is the stock Trainer's: the optimizer class and its arguments (``--optim``), the
    scheduler, ``model_init`` and ``hyperparameter_search``, the split of groups by DTensor device mesh.
    With ``LLRDTrainingArguments`` at their defaults it builds exactly the stock optimizer.

    At every logging step it logs the rate of every depth (``lr/layer_00`` ... ``lr/head``), and with
    ``log_layer_grad_norms`` every depth's gradient norm and update-to-weight ratio. It also runs gradual
    unfreezing, the adaptive rates of Singh et al. (2015), top-layer re-initialisation and the slanted
    triangular schedule when the arguments ask for them.

    Args:
        *args: the stock Trainer's positional arguments.
        layer_mapping: your own depths, ``{regex: depth}`` or a callable ``name -> depth | None``; wins over
            ``args.layer_mapping`` and over the automatic map.
        **kwargs: the stock Trainer's keyword arguments.
    """

    def __init__(self, *args, layer_mapping: LayerMapping | None = None, **kwargs):
        self.layer_mapping = layer_mapping
        self.layers: LayerMap | None = None
        self._depths: DepthIndex | None = None
        self._rates_of_last_step: list[tuple[int, float]] | None = None
        self._gradient_norms: torch.Tensor | None = None
        self._update_ratios: torch.Tensor | None = None
        self._weights_before_step: list[torch.Tensor | None] | None = None
        self._rates_before_adaptation: list[float] | None = None
        self._resume_checkpoint: str | None = None
        self._nonfinite_loss: torch.Tensor | None = None
        self._nonfinite_since_step: int | None = None
        super().__init__(*args, **kwargs)
        self._check_features_fit_the_setup()
        if self.model_init is None:
            self._reinit_top_layers(self.model)
        # Preemption (issue 13): added before the callback that checks for a non-finite loss at step end, so
        # that check sees the save this callback asks for.
        self._preemption = PreemptionCallback() if getattr(self.args, "save_on_preemption", False) else None
        if self._preemption is not None:
            self.add_callback(self._preemption)
        self.add_callback(_LayerwiseStepHooks(self))
        if getattr(self.args, "gradual_unfreeze_steps", 0) > 0:
            self.add_callback(GradualUnfreezingCallback(self.args.gradual_unfreeze_steps))

    def _layerwise_args(self) -> LLRDTrainingArguments | None:
        args = self.args
        if isinstance(args, LLRDTrainingArguments) and (args.uses_layerwise_groups or self.layer_mapping is not None):
            return args
        return None

    def _check_features_fit_the_setup(self) -> None:
        args = self.args
        if not isinstance(args, LLRDTrainingArguments):
            return
        step_features = [
            name
            for name, active in (
                ("gradual_unfreeze_steps", args.gradual_unfreeze_steps > 0),
                ("layer_lr_adaptation", args.layer_lr_adaptation != "none"),
                ("log_layer_grad_norms", args.log_layer_grad_norms),
            )
            if active
        ]
        if self.is_deepspeed_enabled and self._layerwise_args() is not None:
            check_deepspeed_config(self.accelerator.state.deepspeed_plugin.hf_ds_config.config)
        if step_features and self.is_deepspeed_enabled:
            raise ValueError(
                f"{', '.join(step_features)} cannot run under DeepSpeed, which keeps the gradients inside its engine. "
                "Use DDP or FSDP2, or turn these options off."
            )

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial=None,
        ignore_keys_for_eval: list[str] | None = None,
    ):
        """The stock ``train``, after checking the checkpoint to resume from: complete, readable, and built
        with the same layer-wise groups. ``resume_from_checkpoint=True`` takes the newest complete one.

        With ``save_on_preemption``, a run stopped by SIGTERM or SIGUSR1 raises ``TrainingPreempted`` (a
        ``SystemExit`` with code 75) once its checkpoint is written."""
        self._resume_checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir)
        # Preemption (issue 13): the signal handlers go back however training ends.
        try:
            output = super().train(
                resume_from_checkpoint=self._resume_checkpoint, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval
            )
        finally:
            if self._preemption is not None:
                self._preemption.restore_signal_handlers()
        if self._preemption is not None:
            self._preemption.exit_if_preempted()
        return output

    def call_model_init(self, trial=None):
        model = super().call_model_init(trial)
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
        if self.optimizer is not None:
            return super().create_optimizer(model)
        if self._layerwise_args() is None:
            optimizer = super().create_optimizer(model)
        else:
            optimizer = self._create_layerwise_optimizer(model)
        if self._resume_checkpoint is not None and not self.is_deepspeed_enabled:
            check_resume_matches(self._resume_checkpoint, optimizer.param_groups)
        return optimizer

    def _create_layerwise_optimizer(self, model=None) -> torch.optim.Optimizer:
        opt_model = self.model if model is None else model
        groups = _split_by_device_mesh(self.build_param_groups(opt_model))

        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        is_factory = not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer))
        if is_factory or any(key in optimizer_kwargs for key in _OWN_GROUP_KWARGS):
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

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None and self.args.lr_scheduler_type == SLANTED_TRIANGULAR:
            self.lr_scheduler = get_slanted_triangular_schedule(
                self.optimizer if optimizer is None else optimizer,
                num_training_steps,
                **(self.args.lr_scheduler_kwargs or {}),
            )
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    def layerwise_lr_table(self) -> list[dict[str, Any]]:
        """One row per depth: depth, block, parameter counts, base lr (the rate the schedule scales), weight decay.

        Before training, the rows of the optimizer that training will build. Empty when the optimizer is the
        stock one (``layer_decay=1.0`` and no per-depth option).
        """
        if self.optimizer is not None:
            return lr_table(self.optimizer.param_groups, self.layers)
        if self._layerwise_args() is not None and self.model is not None:
            return lr_table(self.build_param_groups(self.model), self.layers)
        return []

    def create_model_card(self, *args, **kwargs) -> None:
        """The stock model card (also what ``push_to_hub`` uploads), with a section that records the
        layer-wise settings and the per-depth rates."""
        super().create_model_card(*args, **kwargs)
        add_layerwise_section(self)

    # ---- per-step work, called by _LayerwiseStepHooks and training_step ----

    def _needs_gradient_norms(self) -> bool:
        args = self.args
        return isinstance(args, LLRDTrainingArguments) and (
            args.layer_lr_adaptation != "none" or args.log_layer_grad_norms
        )

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if getattr(self.args, "stop_on_nonfinite_loss", False):
            # Kept on the device: reading it is a host sync, done only where it costs nothing (see
            # _nonfinite_loss_check_is_free).
            nonfinite = ~torch.isfinite(loss.detach())
            if self._nonfinite_loss is None:
                self._nonfinite_loss = nonfinite
                self._nonfinite_since_step = self.state.global_step + 1
            else:
                self._nonfinite_loss = self._nonfinite_loss | nonfinite
        if self._depths is not None and self.accelerator.sync_gradients and self._needs_gradient_norms():
            # The gradients are now reduced across ranks and accumulated, and not yet clipped.
            self._gradient_norms = self._depths.gradient_norms()
        return loss

    def _before_optimizer_step(self) -> None:
        args = self.args
        if not isinstance(args, LLRDTrainingArguments):
            return
        if self._nonfinite_loss is not None and self._checks_nonfinite_loss_before_every_step():
            self._stop_on_nonfinite_loss(before_step=True)
        if self._depths is None:
            return
        if args.layer_lr_adaptation == "singh2015" and self._gradient_norms is not None:
            factors = singh2015_factors(self._gradient_norms).tolist()
            position = {depth: index for index, depth in enumerate(self._depths.depths)}
            self._rates_before_adaptation = [group["lr"] for group in self.optimizer.param_groups]
            for group in self.optimizer.param_groups:
                if "layer" in group:
                    group["lr"] = group["lr"] * factors[position[int(group["layer"])]]
        if args.log_layer_grad_norms and self._step_will_log():
            self._weights_before_step = self._depths.snapshot()

    def _checks_nonfinite_loss_before_every_step(self) -> bool:
        # On the CPU reading the flag waits for nothing; on an accelerator it would stall the launch queue.
        return self._nonfinite_loss.device.type == "cpu"

    def _stop_on_nonfinite_loss(self, before_step: bool) -> None:
        """Raises NonFiniteLossError when a loss since the last check was NaN or inf.

        On an accelerator the flag is read only at steps where the stock Trainer synchronises anyway (logging,
        evaluation, saving, the last step), so that the check adds no host sync; the weights the bad steps
        touched are then never saved. On the CPU it is read before every optimizer step.
        """
        flag = self._nonfinite_loss.to(torch.int32)
        first_step = self._nonfinite_since_step
        self._nonfinite_loss = None
        self._nonfinite_since_step = None
        if self.args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if not flag.item():
            return
        step = self.state.global_step + 1 if before_step else self.state.global_step
        complete = complete_checkpoints(self.args.output_dir)
        last = f"The last checkpoint, {complete[-1]}, is intact: resume from it" if complete else "No checkpoint was saved yet"
        if before_step:
            where = f"at optimizer step {step} (epoch {self.state.epoch or 0:.2f}). Training stopped before that step changed any weight."
        else:
            where = (
                f"at one of optimizer steps {first_step}-{step} (epoch {self.state.epoch or 0:.2f}; checked at logging, "
                "evaluation and save steps, so as to add no device sync). Training stopped before saving any weight those steps changed."
            )
        raise NonFiniteLossError(
            f"The training loss is not finite (NaN or inf) {where} {last} after lowering the learning rate "
            f"(the head's is {self.args.head_learning_rate or self.args.learning_rate:g}), enabling gradient clipping "
            "(--max_grad_norm 1.0), or training in bf16 instead of fp16. Set --stop_on_nonfinite_loss false to "
            "train on as the stock Trainer does."
        )

    def _after_optimizer_step(self) -> None:
        groups = self.optimizer.param_groups
        self._rates_of_last_step = [(group["layer"], group["lr"]) for group in groups if "layer" in group]
        if self._rates_before_adaptation is not None:
            for group, rate in zip(groups, self._rates_before_adaptation):
                group["lr"] = rate
            self._rates_before_adaptation = None
        if self._weights_before_step is not None:
            self._update_ratios = self._depths.update_ratios(self._weights_before_step)
            self._weights_before_step = None

    def _step_will_log(self) -> bool:
        """Whether the optimizer step about to run ends on a logging step (logging_strategy="steps")."""
        args, state = self.args, self.state
        if args.logging_strategy != IntervalStrategy.STEPS:
            return False
        next_step = state.global_step + 1
        return (args.logging_first_step and next_step == 1) or (state.logging_steps and next_step % state.logging_steps == 0)

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
            if getattr(self.args, "log_layer_grad_norms", False) and self._depths is not None:
                if self._gradient_norms is not None:
                    logs.update(_depth_logs("grad_norm", self._depths.depths, self._gradient_norms.tolist(), head_depth))
                if self._update_ratios is not None:
                    logs.update(_depth_logs("update_ratio", self._depths.depths, self._update_ratios.tolist(), head_depth))
                    self._update_ratios = None
        super().log(logs, start_time)


class _LayerwiseStepHooks(TrainerCallback):
    """Runs the trainer's per-step work around the optimizer step (after clipping, before the scheduler)."""

    def __init__(self, trainer: LLRDTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        # After accelerator.prepare: FSDP2 has replaced the parameters in the groups by their shards.
        groups = optimizer.param_groups if optimizer is not None else []
        self.trainer._depths = DepthIndex(groups) if any("layer" in group for group in groups) else None
        self.trainer._gradient_norms = None
        self.trainer._update_ratios = None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._before_optimizer_step()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.trainer.optimizer is not None:
            self.trainer._after_optimizer_step()

    def on_step_end(self, args, state, control, **kwargs):
        # DefaultFlowCallback ran first and has set the flags for this step; the save comes after this hook.
        if self.trainer._nonfinite_loss is not None and (
            control.should_log or control.should_evaluate or control.should_save or control.should_training_stop
            or state.global_step >= state.max_steps
        ):
            self.trainer._stop_on_nonfinite_loss(before_step=False)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; raised before the weights it touched are applied (CPU) or saved."""


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
    return _depth_logs("lr", sorted(rates), [rates[d] for d in sorted(rates)], head)


def _depth_logs(prefix: str, depths: list[int], values: list[float], head_depth: int | None) -> dict[str, float]:
    head = max(depths) if head_depth is None else head_depth
    width = max(2, len(str(head - 1)))
    logs = {}
    for depth, value in zip(depths, values):
        key = f"{prefix}/head" if depth == head else f"{prefix}/layer_{depth:0{width}d}"
        logs[key] = value
    return logs


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


def _keep_embeddings_in_32_bit(model: nn.Module) -> None:
    """As the stock Trainer does for 8-bit bitsandbytes optimizers: embeddings keep 32-bit state."""
    import bitsandbytes

    manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            manager.register_module_override(module, "weight", {"optim_bits": 32})
