"""FSDP on CPU with two gloo ranks (run under torchrun): layer-wise groups through sharding.

Usage: torchrun --nproc_per_node 2 fsdp_cpu.py {fsdp1,fsdp2} OUTPUT_DIR

FSDP2: the optimizer is built on the unsharded model and its parameters are switched to the shards with
Accelerate's own `fsdp2_switch_optimizer_parameters`, as `Accelerator.prepare` does. FSDP1: the optimizer
is built on the wrapped model (use_orig_params=True), as the Trainer does. Both then train three steps with
gradual unfreezing and per-depth gradient norms, and rank 0 compares everything with an unsharded replica
trained on the same global batches.
"""

import functools
import json
import os
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiny_models import tiny_model
from training import RandomTokens

from finetune_llrd import GradualUnfreezingCallback, param_groups
from finetune_llrd.depths import clean_parameter_name
from finetune_llrd.diagnostics import DepthIndex


def build():
    model = tiny_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return model


def summary(groups):
    return [
        (g["layer"], g["lr"], g["weight_decay"], [clean_parameter_name(n) for n in g["param_names"]]) for g in groups
    ]


def train(model, optimizer, rank_batches):
    unfreeze = GradualUnfreezingCallback(1)
    depths = DepthIndex(optimizer.param_groups)
    norms = []
    for step, batch in enumerate(rank_batches):
        unfreeze.on_step_begin(None, SimpleNamespace(global_step=step), None, optimizer=optimizer)
        model(**batch).loss.backward()
        norms.append(depths.gradient_norms().tolist())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return norms


def main():
    mode, output_dir = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = RandomTokens(size=24)
    global_batches = [data[i * 8 : (i + 1) * 8] for i in range(3)]
    rank_batches = [{k: v[rank * 4 : (rank + 1) * 4] for k, v in batch.items()} for batch in global_batches]
    settings = dict(lr=1e-2, layer_decay=0.5, weight_decay=0.01)

    reference = build()
    reference_groups = param_groups(reference, **settings)
    expected = summary(reference_groups)
    reference_norms = train(reference, torch.optim.AdamW(reference_groups), global_batches)

    model = build()
    if mode == "fsdp2":
        from accelerate.utils.fsdp_utils import fsdp2_switch_optimizer_parameters
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        optimizer = torch.optim.AdamW(param_groups(model, **settings))
        before = dict(model.named_parameters())
        mesh = init_device_mesh("cpu", (world,))
        for layer in model.bert.encoder.layer:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        after = dict(model.named_parameters())
        fsdp2_switch_optimizer_parameters(optimizer, {before[n].data_ptr: after[n] for n in before})
    else:
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
        from transformers.models.bert.modeling_bert import BertLayer

        policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={BertLayer})
        model = FullyShardedDataParallel(
            model, auto_wrap_policy=policy, use_orig_params=True, device_id=torch.device("cpu")
        )
        optimizer = torch.optim.AdamW(param_groups(model, **settings))
        flat = FullyShardedDataParallel(
            build(), auto_wrap_policy=policy, use_orig_params=False, device_id=torch.device("cpu")
        )
        try:
            param_groups(flat, **settings)
            flat_error = None
        except ValueError as error:
            flat_error = str(error)

    groups_match = summary(optimizer.param_groups) == expected
    norms = train(model, optimizer, rank_batches)
    if mode == "fsdp2":
        final = {n: p.full_tensor() for n, p in model.named_parameters()}
    else:
        with FullyShardedDataParallel.summon_full_params(model):
            final = {clean_parameter_name(n): p.detach().clone() for n, p in model.named_parameters()}
    if rank == 0:
        reference_params = dict(reference.named_parameters())
        result = {
            "world_size": world,
            "groups_match": groups_match,
            "num_groups": len(optimizer.param_groups),
            "norms": norms,
            "reference_norms": reference_norms,
            "max_weight_difference": max(
                (final[n] - reference_params[n]).abs().max().item() for n in reference_params
            ),
            "embeddings_unchanged": all(
                torch.equal(final[n], tiny_ref)
                for n, tiny_ref in build().named_parameters()
                if n.startswith("bert.embeddings.")
            ),
        }
        if mode == "fsdp1":
            result["flat_error"] = flat_error
        with open(os.path.join(output_dir, f"{mode}.json"), "w") as handle:
            json.dump(result, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
