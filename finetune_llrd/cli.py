"""The ``finetune-llrd`` command line: ``inspect`` a model's depths and rates, ``plot`` a run's per-depth series.

``inspect`` takes the flag names of the training scripts (``--learning_rate``, ``--layer_decay``, ...); the
short forms of earlier releases (``--lr``, ``--layer-decay``, ...) stay as aliases.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .depths import LAYER_GROUPINGS, layer_map, parse_layer_mapping, parse_layer_towers
from .groups import (
    LayerwiseRates,
    check_finite_non_negative,
    format_lr_table,
    loraplus_rules,
    lr_table,
    param_groups,
    parse_param_group_rules,
    parse_tower_layer_decay,
)
from .groups.loraplus import check_loraplus_settings
from .groups.rate_table import full_size
from .groups.rules import as_rules, match_rules
from .plotting import plot_lr_profile, plot_run


TASKS = (
    "auto",
    "sequence-classification",
    "image-classification",
    "token-classification",
    "causal-lm",
    "seq2seq-lm",
    "image-text-to-text",
    "zero-shot-image-classification",
    "semantic-segmentation",
    "depth-estimation",
    "object-detection",
    "universal-segmentation",
    "base",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune-llrd", description="Layer-wise learning rates for Hugging Face models."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser(
        "inspect",
        help="Show the depth of every block of a model and the learning rate each gets.",
        description="One row per depth: depth, block, parameter count, lr, weight decay, and a count of the frozen "
        "parameters. The layer-wise flags are those of LLRDTrainingArguments (and of every recipe).",
    )
    inspect.add_argument(
        "model",
        help="A local model folder or a Hub id, or a PEFT adapter folder (adapter_config.json: its base model with "
        "the adapter's LoRA layers).",
    )
    _add_layerwise_flags(inspect)
    _add_lora_flags(inspect)
    inspect.add_argument(
        "--task",
        choices=TASKS,
        default="auto",
        help="Which head to put on the model. Default: the class the config's architectures names (causal LM, "
        "seq2seq LM, ...), or a new classification head for a bare base model.",
    )
    inspect.add_argument(
        "--num_labels",
        "--num-labels",
        type=int,
        default=None,
        help="Labels of a classification head (default: the config's).",
    )
    inspect.add_argument(
        "--from_config",
        "--from-config",
        action="store_true",
        help="Build the model from its config on the meta device: no weights are read or allocated.",
    )
    inspect.add_argument(
        "--json",
        action="store_true",
        help="Print the rows as a JSON array of objects; each row lists its parameters (name, depth, group, lr, "
        "weight_decay, trains), and the frozen parameters of each depth come in rows with frozen: true.",
    )
    inspect.add_argument("--plot", metavar="FILE.png", default=None, help="Draw lr against depth into a PNG file.")

    plot = commands.add_parser(
        "plot",
        help="Draw lr, gradient norm and update ratio per depth over training from a run's trainer_state.json.",
        description="Reads RUN_DIR/trainer_state.json (or that of the newest checkpoint-* in RUN_DIR) and writes "
        "lr_per_depth.png, plus grad_norm_per_depth.png and update_ratio_per_depth.png when the run logged them "
        "(--log_layer_grad_norms).",
    )
    plot.add_argument("run_dir", help="An output_dir of LLRDTrainer, or one of its checkpoint folders.")
    plot.add_argument("--out", default=None, help="Folder for the PNG files (default: RUN_DIR).")
    return parser


def _add_layerwise_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of LLRDTrainingArguments that shape the groups, each with its earlier short form as an alias."""
    parser.add_argument(
        "--learning_rate",
        "--lr",
        type=float,
        default=5e-5,
        help="Learning rate of the head, and the base of the decay (default 5e-5).",
    )
    parser.add_argument(
        "--layer_decay", "--layer-decay", type=float, default=0.8, help="Layer-wise decay in (0, 1] (default 0.8)."
    )
    parser.add_argument(
        "--weight_decay", "--weight-decay", type=float, default=0.01, help="Weight decay of weights (default 0.01)."
    )
    parser.add_argument(
        "--head_learning_rate",
        "--head-lr",
        type=float,
        default=None,
        help="Learning rate of the head, if not --learning_rate.",
    )
    parser.add_argument(
        "--embedding_learning_rate",
        "--embedding-lr",
        type=float,
        default=None,
        help="Learning rate of the embeddings.",
    )
    parser.add_argument(
        "--layer_decay_min_scale",
        "--min-scale",
        type=float,
        default=0.0,
        help="Floor of the decayed rates, as a fraction of --learning_rate.",
    )
    parser.add_argument(
        "--layer_grouping",
        "--grouping",
        choices=LAYER_GROUPINGS,
        default="block",
        help="One depth per block or per stage.",
    )
    parser.add_argument(
        "--layer_mapping",
        type=_layer_mapping_flag,
        default=None,
        help='Your own depths: a JSON object {"regex": depth} (first match wins), inline or as a path to a .json file.',
    )
    parser.add_argument(
        "--layer_towers",
        type=_towers_flag,
        default="auto",
        help="Parallel stacks numbered side by side, each from depth 1 to L: 'auto' (CLIP, SigLIP, BLIP-2, VLMs; "
        "default), 'encoder-decoder' (also an encoder-decoder's two stacks), 'none' (all in series), or a JSON "
        'object {"name": "module.path"}.',
    )
    parser.add_argument(
        "--tower_layer_decay",
        type=_tower_layer_decay_flag,
        default=None,
        help='A decay of its own for some towers, as a JSON object {"vision": 0.75, "text": 0.85}.',
    )
    parser.add_argument(
        "--param_group_rules",
        type=_param_group_rules_flag,
        default=None,
        help='Rules per module, as --param_group_rules of the training scripts: a JSON array such as \'[{"pattern": '
        '"multi_modal_projector", "lr_scale": 10}]\' or the path of a JSON or YAML file.',
    )


def _add_lora_flags(parser: argparse.ArgumentParser) -> None:
    """LoRA+ (the flags of LLRDTrainingArguments) and the LoRA settings of the SFT recipe (TRL's ModelConfig), to
    inspect a base model with the adapters a run would add."""
    parser.add_argument(
        "--loraplus_lr_ratio",
        type=float,
        default=None,
        help="LoRA+: the LoRA B matrices at this multiple of their depth's rate (needs LoRA layers: a PEFT adapter "
        "folder, or --use_peft).",
    )
    parser.add_argument(
        "--loraplus_lr_embedding",
        type=float,
        default=None,
        help="LoRA+: the rate of LoRA embedding layers (default: peft's 1e-6).",
    )
    parser.add_argument(
        "--use_peft", action="store_true", help="Add LoRA adapters to the model, as --use_peft of the SFT recipe."
    )
    parser.add_argument("--lora_r", type=int, default=16, help="LoRA rank (with --use_peft; default 16).")
    parser.add_argument("--lora_alpha", type=int, default=32, help="LoRA alpha (with --use_peft; default 32).")
    parser.add_argument(
        "--lora_target_modules",
        nargs="+",
        default=None,
        help="Modules to adapt (q_proj v_proj ..., or all-linear; with --use_peft); default: PEFT's for the "
        "architecture.",
    )


def _layer_mapping_flag(value: str) -> dict[str, int]:
    # argparse replaces the message of a ValueError raised by a type function; it keeps an ArgumentTypeError's.
    try:
        return parse_layer_mapping(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _towers_flag(value: str) -> str | dict[str, str]:
    try:
        return parse_layer_towers(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _param_group_rules_flag(value: str) -> list[dict]:
    try:
        return parse_param_group_rules(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _tower_layer_decay_flag(value: str) -> dict[str, float]:
    try:
        return parse_tower_layer_decay(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "inspect":
        try:
            # The flags carry the names of the settings, as in LLRDTrainingArguments.
            rates = LayerwiseRates.from_attributes(args)
            check_finite_non_negative(args.weight_decay, "weight_decay")
            check_loraplus_settings(args.loraplus_lr_ratio, args.loraplus_lr_embedding)
        except ValueError as error:
            parser.error(str(error))
        try:
            return _inspect(args, rates)
        except (OSError, ValueError) as error:
            # A missing path, a folder without a config, a mapping or rule the model cannot take: one line, no traceback.
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            parser.exit(2, f"finetune-llrd inspect: {first_line}\n")
    if args.command == "plot":
        for path in plot_run(args.run_dir, args.out):
            print(path)
        return 0
    return 2


def _inspect(args: argparse.Namespace, rates: LayerwiseRates) -> int:
    model = _inspected_model(args)
    layers = layer_map(model, grouping=args.layer_grouping, mapping=args.layer_mapping, towers=args.layer_towers)
    rules = as_rules(args.param_group_rules)
    if args.loraplus_lr_ratio is not None:
        rules += loraplus_rules(model, args.loraplus_lr_ratio, args.loraplus_lr_embedding)
    groups = param_groups(model, rates=rates, weight_decay=args.weight_decay, layers=layers, rules=rules)
    rows = lr_table(groups, layers)
    frozen = frozen_parameters(model, rules, groups)
    if args.json:
        print(json.dumps(parameter_rows(model, rows, groups, layers, frozen), indent=2))
    else:
        print(
            f"{args.model} ({type(model).__name__}): L={layers.num_layers} {layers.grouping}s, method={layers.method}, "
            f"learning_rate={rates.learning_rate:g}, layer_decay={rates.layer_decay:g}"
        )
        for line in structure_lines(layers, rates):
            print(line)
        print(format_lr_table(rows))
        for line in frozen_lines(model, frozen):
            print(line)
    if args.plot:
        plot_lr_profile(rows, args.plot, title=f"{args.model}: layer_decay={rates.layer_decay:g}")
        if not args.json:
            print(f"Plot written to {args.plot}")
    return 0


def _inspected_model(args: argparse.Namespace):
    """The model to inspect: the model, a PEFT adapter folder's base model with the adapter's LoRA layers, or the
    model with the LoRA layers of ``--use_peft``."""
    adapter = os.path.join(args.model, "adapter_config.json")
    if os.path.isfile(adapter):
        from peft import PeftConfig, get_peft_model

        config = PeftConfig.from_pretrained(args.model)
        config.inference_mode = False  # as a run that trains the adapter
        base = load_inspected_model(
            config.base_model_name_or_path, task=args.task, num_labels=args.num_labels, from_config=args.from_config
        )
        # The adapter's structure (its rank, its target modules) is what sets the groups; its weights are not read.
        return get_peft_model(base, config)
    model = load_inspected_model(args.model, task=args.task, num_labels=args.num_labels, from_config=args.from_config)
    if not args.use_peft:
        return model
    from peft import LoraConfig, get_peft_model

    task_type = {"ForCausalLM": "CAUSAL_LM", "ForSequenceClassification": "SEQ_CLS"}
    suffix = next((suffix for suffix in task_type if type(model).__name__.endswith(suffix)), None)
    config = LoraConfig(
        task_type=task_type.get(suffix),
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        target_modules=args.lora_target_modules,
        bias="none",
    )
    return get_peft_model(model, config)


def frozen_parameters(model, rules, groups) -> dict[str, str]:
    """The parameters of ``model`` in no group -> who froze them: ``"rule NAME"`` for a ``freeze`` rule's,
    ``"model"`` for those that came with ``requires_grad=False``."""
    grouped = {name for group in groups for name in group.get("param_names", ())}
    rule_of = match_rules(model.named_parameters(), rules) if rules else {}
    frozen = {}
    for name, _ in model.named_parameters():
        if name in grouped:
            continue
        rule = rule_of.get(name)
        frozen[name] = f"rule {rule.name}" if rule is not None and rule.freeze else "model"
    return frozen


def parameter_rows(model, rows: list[dict], groups: list[dict], layers, frozen: dict[str, str]) -> list[dict]:
    """The rows of ``lr_table`` with their parameters (name, depth, group, lr, weight_decay, trains), then one row
    per depth holding frozen parameters (``frozen: true``, ``lr`` and ``weight_decay`` null, each parameter with
    ``frozen_by``: ``"model"`` or ``"rule NAME"``)."""
    rows = [{**row, "parameters": []} for row in rows]
    by_key = {(row["depth"], row.get("tower"), row.get("rule")): row for row in rows}
    for group in groups:
        if "layer" not in group:
            continue
        row = by_key[(int(group["layer"]), group.get("tower"), group.get("rule"))]
        for name in group["param_names"]:
            row["parameters"].append(
                {
                    "name": name,
                    "depth": row["depth"],
                    "group": row["block"],
                    "lr": group.get("initial_lr", group["lr"]),
                    "weight_decay": group["weight_decay"],
                    "trains": True,
                }
            )
    sizes = {name: full_size(param) for name, param in model.named_parameters()}
    frozen_rows: dict[tuple, dict] = {}
    for name, by in frozen.items():
        depth, tower = layers.depths.get(name), layers.tower_of(name)
        row = frozen_rows.setdefault(
            (depth, tower),
            {
                "depth": depth,
                **({"tower": tower} if tower is not None else {}),
                "block": f"{layers.block_name(depth, tower) if depth is not None else 'no depth'} [frozen]",
                "num_params": 0,
                "num_params_no_decay": 0,
                "lr": None,
                "weight_decay": None,
                "frozen": True,
                "parameters": [],
            },
        )
        row["num_params"] += sizes[name]
        row["parameters"].append(
            {
                "name": name,
                "depth": depth,
                "group": None,
                "lr": None,
                "weight_decay": None,
                "trains": False,
                "frozen_by": by,
            }
        )
    order = sorted(frozen_rows, key=lambda key: (key[0] is None, key[0] or 0, key[1] or ""))
    return rows + [frozen_rows[key] for key in order]


def frozen_lines(model, frozen: dict[str, str]) -> list[str]:
    """The lines under the table that count the frozen parameters, by who froze them."""
    if not frozen:
        return []
    sizes = {name: full_size(param) for name, param in model.named_parameters()}
    by: dict[str, list[str]] = {}
    for name, who in frozen.items():
        by.setdefault(who, []).append(name)
    lines = []
    for who, names in by.items():
        source = "came frozen with the model (requires_grad=False)" if who == "model" else f"frozen by the {who}"
        lines.append(
            f"frozen, not trained: {sum(sizes[name] for name in names):,} parameters in {len(names)} tensors "
            f"{source}, e.g. {', '.join(names[:2])}{', ...' if len(names) > 2 else ''}"
        )
    return lines


def structure_lines(layers, rates: LayerwiseRates) -> list[str]:
    """The lines that describe a map's towers or backbone boundary, for the header of ``inspect``."""
    lines = []
    for tower in layers.towers:
        lines.append(
            f"tower {tower.name} ({tower.path}): {tower.num_blocks} {layers.grouping}s on depths 1..{layers.num_layers}, "
            f"layer_decay={rates.decay_of(tower.name):g}"
        )
    if layers.backbone is not None:
        lines.append(f"backbone (pretrained) {layers.backbone}: depths 0..{layers.num_layers}")
        lines.extend(f"{module} (new): head depth {layers.head_depth}" for module in layers.new_modules)
    return lines


def load_inspected_model(
    name_or_path: str, *, task: str = "auto", num_labels: int | None = None, from_config: bool = False
):
    """Loads a model (or builds it from its config on the meta device) with the head of ``task``.

    Args:
        name_or_path: local folder or Hub id.
        task: one of ``TASKS``; ``auto`` takes the class the config's ``architectures`` names (a causal LM, a
            seq2seq LM, a token classifier, ...); for a bare base model (``BertModel``, a sentence-transformers
            folder), a new classification head: image classification for vision configs, else sequence
            classification. CLIP-style models need ``zero-shot-image-classification`` (or ``base``) for both
            towers.
        num_labels: labels of a classification head.
        from_config: build from the config alone, on the meta device.

    Returns:
        The model.

    Raises:
        FileNotFoundError: for a local path that does not exist, or a folder without ``config.json``.
        OSError: for a folder without weights (unless ``from_config``), or a Hub id that cannot be fetched.
    """
    import torch
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    _check_model_path(name_or_path)
    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    model_class = _head_class(config, task, transformers, MODEL_MAPPING_NAMES)
    if from_config:
        with torch.device("meta"):
            return model_class.from_config(config) if model_class.__name__.startswith("Auto") else model_class(config)
    try:
        return model_class.from_pretrained(name_or_path, config=config)
    except OSError as error:
        if os.path.isdir(name_or_path):
            raise OSError(
                f"{name_or_path} holds a config but no model weights that transformers can read. Add --from_config "
                "to inspect the structure from the config alone, or point at a folder with model.safetensors."
            ) from error
        raise


def _check_model_path(name_or_path: str) -> None:
    """Refuses a local path that does not exist or holds no config, before transformers tries it as a Hub id."""
    looks_local = os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1
    if os.path.isdir(name_or_path):
        if not os.path.isfile(os.path.join(name_or_path, "config.json")):
            raise FileNotFoundError(f"{name_or_path} holds no config.json: point at a model folder or a Hub id.")
    elif looks_local or os.path.exists(name_or_path):
        raise FileNotFoundError(f"{name_or_path}: no such model folder.")


def _head_class(config, task: str, transformers, base_model_names: dict[str, str]):
    """The model class ``load_inspected_model`` builds: the Auto class of ``task``, or with ``auto`` the class the config's
    ``architectures`` names unless it is the bare base model."""
    architecture = (getattr(config, "architectures", None) or [None])[0]
    named = getattr(transformers, architecture, None) if architecture else None
    if task == "auto" and named is not None and architecture != base_model_names.get(config.model_type):
        return named
    if task == "auto":
        vision = hasattr(config, "num_channels") or hasattr(getattr(config, "vision_config", None), "num_channels")
        task = "image-classification" if vision else "sequence-classification"
    return {
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "image-classification": transformers.AutoModelForImageClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
        "seq2seq-lm": transformers.AutoModelForSeq2SeqLM,
        "image-text-to-text": transformers.AutoModelForImageTextToText,
        "zero-shot-image-classification": transformers.AutoModelForZeroShotImageClassification,
        "semantic-segmentation": transformers.AutoModelForSemanticSegmentation,
        "depth-estimation": transformers.AutoModelForDepthEstimation,
        "object-detection": transformers.AutoModelForObjectDetection,
        "universal-segmentation": transformers.AutoModelForUniversalSegmentation,
        "base": transformers.AutoModel,
    }[task]


if __name__ == "__main__":
    sys.exit(main())
