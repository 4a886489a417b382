"""recipes/accelerate/*.yaml: each loads with accelerate's config loader, and yields, through accelerate's own
launch code, the distributed set-up it promises. Nothing is launched: these set-ups need GPUs."""

import glob
import os
from unittest import mock

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
from recipe_helpers import RECIPES_DIR


CONFIG_DIR = os.path.join(RECIPES_DIR, "accelerate")
EXPECTED = {
    "single_gpu.yaml": (DistributedType.NO, 1, 1),
    "ddp.yaml": (DistributedType.MULTI_GPU, 8, 1),
    "fsdp2.yaml": (DistributedType.FSDP, 8, 1),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 8, 1),
    "deepspeed_zero3.yaml": (DistributedType.DEEPSPEED, 8, 1),
    "multi_node.yaml": (DistributedType.MULTI_GPU, 16, 2),
}


def _launch_environment(name):
    """The arguments and environment `accelerate launch --config_file <name> script.py` would give the script."""
    args = launch_command_parser().parse_args(["--config_file", os.path.join(CONFIG_DIR, name), "script.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        # As accelerate's launch_command does before it calls the DeepSpeed launcher.
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return args, prepare_deepspeed_cmd_env(args)[1]
    if args.multi_gpu or args.use_fsdp:
        return args, prepare_multi_gpu_env(args)
    return args, {}


def test_every_config_is_listed():
    assert sorted(os.path.basename(path) for path in glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerates_loader(name):
    config = load_config_from_file(os.path.join(CONFIG_DIR, name))
    assert isinstance(config, ClusterConfig)
    assert (config.distributed_type, config.num_processes, config.num_machines) == EXPECTED[name]
    # Precision is the recipe's --bf16 / --fp16: a config that set it would override the recipe's choice.
    assert config.mixed_precision == "no"


def test_fsdp2_config_gives_fsdp_version_2_wrapping_each_block():
    args, env = _launch_environment("fsdp2.yaml")
    assert args.use_fsdp and env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_configs_leave_the_optimizer_to_the_trainer(name, stage):
    args, env = _launch_environment(name)
    assert args.use_deepspeed and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    with mock.patch.dict(os.environ, env):
        deepspeed_config = DeepSpeedPlugin().deepspeed_config
    # A DeepSpeed optimizer (or scheduler) block would replace the Trainer's layer-wise parameter groups.
    assert "optimizer" not in deepspeed_config and "scheduler" not in deepspeed_config
    assert deepspeed_config["zero_optimization"]["stage"] == stage
    assert deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert deepspeed_config[key] == "auto"  # filled from the recipe's arguments


def test_multi_node_config_names_the_rendezvous():
    args, env = _launch_environment("multi_node.yaml")
    assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 16, 0)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 29500)
    assert args.multi_gpu and env["ACCELERATE_MIXED_PRECISION"] == "no"
