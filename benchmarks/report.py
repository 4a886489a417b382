"""Prints the tables of BENCHMARKS.md, in Markdown, from the full runs' JSON in ``benchmarks/results``.

Every figure in the tables is read from a JSON file that a benchmark wrote; each table is followed by the
command that produced it. Run ``python benchmarks/report.py`` after the benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import bench_utils
import evidence_summary
import quality


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results-dir", type=Path, default=bench_utils.RESULTS_DIR, help="Where the benchmarks' JSON files are."
    )
    return parser


def load(results_dir: Path, name: str) -> dict[str, Any] | None:
    """One benchmark's JSON, or None when it has not been run."""
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def command_block(payload: dict[str, Any]) -> str:
    """The command, the revision, the wall time and the machine load of one benchmark run."""
    machine = payload["machine"]
    return (
        f"```\n{payload['command'].replace(str(bench_utils.REPO_ROOT) + '/', '')}\n```\n"
        f"(revision `{payload['git_revision']}`, {payload['started_utc']}, {payload['wall_seconds'] / 60:.1f} min wall, "
        f"load average {machine['load_average_at_start'][0]:.1f} at start and {machine['load_average_at_end'][0]:.1f} at the end "
        f"on {machine['logical_cpus']} CPUs)\n"
    )


def machine_section(payloads: list[dict[str, Any]]) -> str:
    """Machine and versions, from the first benchmark that ran."""
    machine = payloads[0]["machine"]
    return "\n".join(
        [
            f"- CPU: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch threads {machine['torch_threads']}, {machine['memory_gib']} GiB memory",
            f"- {machine['platform']}",
            f"- Python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, accelerate {machine['accelerate']}",
            "",
        ]
    )


def throughput_section(payload: dict[str, Any]) -> str:
    """The throughput table."""
    result = payload["results"]
    lines = [
        f"{result['model']} on {result['device']}{' (bf16)' if result['bf16'] else ''}, optim `{result['optim']}`, batch {result['batch_size']}, "
        f"{result['rounds']} lockstep rounds x {result['measured_steps']} timed steps per arm (after {result['warmup_steps']} warm-up steps), "
        f"logging every {result['logging_steps']} step(s).",
        "",
        "| arm | optimizer groups | median samples/s | step ms: q1 | median | q3 | optimizer creation ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, name in (("stock", "stock `Trainer`"), ("llrd", f"`LLRDTrainer`, layer_decay {result['layer_decay']}")):
        entry = result["arms"][arm]
        step = entry["step_ms"]
        lines.append(
            f"| {name} | {entry['optimizer_groups']} | {entry['samples_per_second']:.2f} | {step['q1']:.0f} | {step['median']:.0f} | "
            f"{step['q3']:.0f} | {result['optimizer_creation'][f'{arm}_ms']:.1f} |"
        )
    ratio = result["ratio"]
    per_step = ratio["per_step"]
    low, high = ratio["per_step_median_95ci"]
    log = result["log_call"]
    lines += [
        "",
        f"- **Ratio LLRD / stock of the median samples/s: {ratio['of_medians']:.3f}** (goal >= 0.99).",
        f"- Per-step ratios (each LLRD step against the stock step beside it, n={per_step['n']}): median {per_step['median']:.3f}, "
        f"95% bootstrap interval of the median {low:.3f}-{high:.3f}, quartiles {per_step['q1']:.3f}-{per_step['q3']:.3f}.",
        f"- Per round: {', '.join(f'{value:.3f}' for value in ratio['per_round'])}.",
        f"- `trainer.log` per call: stock {log['stock_us']:.1f} us, LLRD {log['llrd_us']:.1f} us (+{log['extra_us']:.1f} us per logging step for the per-depth rates).",
        "",
        command_block(payload),
    ]
    return "\n".join(lines)


def optimizer_section(payload: dict[str, Any]) -> str:
    """The optimizer-step table."""
    result = payload["results"]
    lines = [
        f"torch.optim.AdamW on {result['device']} ({result['dtype']}), same tensors and random gradients, layer decay {result['layer_decay']}.",
        "",
        "| model | implementation | groups (stock / layer-wise) | stock step ms (median) | layer-wise step ms (median) | ratio of medians | per-pair ratio: median [95% interval] | q1-q3 | us per extra group |",
        "|---|---|---|---:|---:|---:|---|---|---:|",
    ]
    for row in result["rows"]:
        pair = row["ratio_per_pair"]
        lines.append(
            f"| {row['model']} ({row['num_parameters'] / 1e6:.1f}M, {row['num_tensors']} tensors) | {row['implementation']} | "
            f"{row['groups']['two_groups']} / {row['groups']['layerwise']} | {row['step_ms']['two_groups']['median']:.2f} | "
            f"{row['step_ms']['layerwise']['median']:.2f} | **{row['ratio']:.3f}** | {pair['median']:.3f} [{row['ratio_per_pair_median_95ci'][0]:.3f}-{row['ratio_per_pair_median_95ci'][1]:.3f}] | "
            f"{pair['q1']:.3f}-{pair['q3']:.3f} | {row['extra_us_per_group']:.0f} |"
        )
    counts = ", ".join(
        f"{row['model']} {row['implementation']} {row['step_ms']['two_groups']['n']}" for row in result["rows"]
    )
    lines += ["", f"Steps timed per arm: {counts}. Goal: ratio <= 1.05.", ""]
    if result.get("group_sweep"):
        sweep = result["group_sweep"]
        group_counts = list(sweep[0]["step_us"])
        lines += [
            f"Fixed cost of a group: 326 tensors of 4,096 elements split into {', '.join(group_counts)} groups ({sweep[0]['steps']} steps per count, median us per step):",
            "",
            "| implementation | "
            + " | ".join(f"{count} groups" for count in group_counts)
            + " | us per extra group (slope) |",
            "|---|" + "---:|" * (len(group_counts) + 1),
        ]
        for row in sweep:
            lines.append(
                f"| {row['implementation']} | "
                + " | ".join(f"{row['step_us'][count]:.0f}" for count in group_counts)
                + f" | **{row['us_per_group']:.1f}** |"
            )
        lines.append("")
    lines.append(command_block(payload))
    return "\n".join(lines)


def grouping_section(payload: dict[str, Any]) -> str:
    """The grouping-scale figures."""
    result = payload["results"]
    memory = result["memory"]
    layer_time, group_time = result["layer_map_seconds"], result["param_groups_seconds"]
    lines = [
        f"Llama-3-70B shape ({result['num_parameters']:,} parameters, {result['num_tensors']} tensors) built on `meta` in {result['build_seconds']:.2f} s.",
        "",
        "| step | median s | min | max | calls |",
        "|---|---:|---:|---:|---:|",
        f"| `layer_map(model)` | {layer_time['median']:.3f} | {layer_time['min']:.3f} | {layer_time['max']:.3f} | {layer_time['n']} |",
        f"| `param_groups(model, ...)` (maps the layers too) | **{group_time['median']:.3f}** | {group_time['min']:.3f} | {group_time['max']:.3f} | {group_time['n']} |",
        "",
        f"- {result['num_groups']} groups holding all {result['num_grouped_tensors']} tensors; every parameter still on `meta`: {result['all_parameters_on_meta']}.",
        f"- One `param_groups` call: Python heap peak (tracemalloc) {memory['tracemalloc_peak_bytes'] / 2**20:.2f} MiB, resident-set growth "
        f"{memory['rss_growth_bytes'] / 2**20:.2f} MiB, peak-RSS growth {memory['max_rss_growth_bytes'] / 2**20:.2f} MiB; the weights in bf16 would take "
        f"{result['bf16_weight_bytes'] / 2**30:.0f} GiB.",
        "",
        command_block(payload),
    ]
    return "\n".join(lines)


def quality_section(payload: dict[str, Any]) -> str:
    """The quality tables, one set per task."""
    results = payload["results"]
    lines = [f"Seeds {results['seeds']}; grid: {', '.join(results['grid'])}.", ""]
    for name, task in results["tasks"].items():
        setup = task["setup"]
        if not task.get("complete"):
            lines += [f"#### {name}: incomplete ({len(task['runs'])} runs)", ""]
            continue
        summary = task["summary"]
        arms = summary["arms"]
        lines += [
            f"#### {name}",
            "",
            f"{setup['max_steps']} steps x batch {setup['batch_size']} (max {setup['max_length']} tokens), "
            f"train subset {setup['train_size'] or 'all'}; curve on `{setup['curve_split']}` every {setup['eval_every']} steps, "
            f"selection on `{setup['select_split']}`"
            + (f" ({setup['select_size']} rows)" if setup["select_size"] else "")
            + f", report on `{setup['report_split']}`.",
            "",
            "| configuration | report accuracy, mean +- std over seeds | selection accuracy (mean) | per seed |",
            "|---|---:|---:|---|",
        ]
        for config in summary["configs"]:
            per_seed = ", ".join(
                f"{run['report_accuracy']:.4f}" for run in task["runs"] if run["label"] == config["label"]
            )
            lines.append(
                f"| {config['label']} | {config['report']['mean']:.4f} +- {config['report']['std']:.4f} | {config['select']['mean']:.4f} | {per_seed} |"
            )
        lines += [
            "",
            "| arm | best configuration (picked on selection split) | its report accuracy, mean +- std | best single run | mean over the whole grid |",
            "|---|---|---:|---:|---:|",
        ]
        for arm, arm_name in (("uniform", "uniform (stock `Trainer`)"), ("layerwise", "layer-wise (`LLRDTrainer`)")):
            entry = arms[arm]
            best = entry["best_single_run"]
            lines.append(
                f"| {arm_name} | {entry['best_config']} | **{entry['best_config_report']['mean']:.4f} +- {entry['best_config_report']['std']:.4f}** | "
                f"{best['report_accuracy']:.4f} ({best['label']}, seed {best['seed']}) | {entry['grid_report']['mean']:.4f} +- {entry['grid_report']['std']:.4f} |"
            )
        tta = arms["time_to_accuracy"]
        difference = arms["paired_difference"]
        lines += [
            "",
            f"- Layer-wise minus uniform (best configurations, same seed): {difference['mean']:+.4f} +- {difference['std']:.4f} "
            f"(per seed: {', '.join(f'{value:+.4f}' for value in difference['per_seed'])}).",
            f"- Time to accuracy, target {tta['target']:.4f} = the uniform best configuration's mean final accuracy on `{setup['curve_split']}`: "
            f"uniform reaches it at step {tta['uniform']['mean_curve_steps']}, layer-wise at step "
            f"{tta['layerwise']['mean_curve_steps'] if tta['layerwise']['mean_curve_steps'] is not None else 'never (within the budget)'} "
            f"(mean curves); per seed, uniform {format_steps(tta['uniform']['per_seed_steps'])}, layer-wise {format_steps(tta['layerwise']['per_seed_steps'])}.",
            "",
        ]
    lines.append(command_block(payload))
    return "\n".join(lines)


def quality_adaptive_section(payload: dict[str, Any], grid_payload: dict[str, Any] | None) -> str:
    """The quality tables of a run with ``--adaptations`` and ``--search-trials``: each method against its
    twin without adaptation, and the search against the full grid of ``quality.json`` (seed 0, selection split)."""
    tables, command = quality_section(payload), command_block(payload)
    lines = [tables.removesuffix(command).rstrip("\n"), ""]
    for name, task in payload["results"]["tasks"].items():
        if not task.get("complete"):
            continue
        adaptive = task["summary"].get("adaptive", [])
        if adaptive:
            uniform_best = task["summary"]["arms"]["uniform"]["best_config"]
            lines += [
                f"#### {name}: each adaptation against its twin",
                "",
                f"| configuration | report accuracy, mean +- std | minus its twin, paired mean +- std (per seed) | minus {uniform_best}, paired mean +- std |",
                "|---|---:|---:|---:|",
            ]
            for entry in adaptive:
                twin, uniform = entry["minus_twin"], entry["minus_uniform_best"]
                lines.append(
                    f"| {entry['label']} | {entry['report']['mean']:.4f} +- {entry['report']['std']:.4f} | "
                    f"{twin['mean']:+.4f} +- {twin['std']:.4f} ({', '.join(f'{value:+.4f}' for value in twin['per_seed'])}) | "
                    f"{uniform['mean']:+.4f} +- {uniform['std']:.4f} |"
                )
            lines.append("")
        search = task.get("search")
        if search is not None and grid_payload is not None and name in grid_payload["results"]["tasks"]:
            grid_task = grid_payload["results"]["tasks"][name]
            cost = quality.search_cost(search, grid_task["runs"], grid_task["setup"]["max_steps"])
            needed = (
                "not reached" if cost["trials_needed"] is None else f"{cost['trials_needed']}, {cost['steps_needed']}"
            )
            best = ", ".join(f"{key} {value:.3g}" for key, value in cost["best_params"].items())
            lines += [
                f"#### {name}: the lr x decay search against the grid of `quality.json` (seed 0, selection split)",
                "",
                "| grid's best configuration (selection accuracy) | grid cost: configurations, steps | search: trials, steps to within 0.5 point | search's best (accuracy) | all trials, steps |",
                "|---|---:|---:|---|---:|",
                f"| {cost['grid_best']['label']} ({cost['grid_best']['select_accuracy']:.4f}) | {cost['grid_configs']}, {cost['grid_steps']} | {needed} | "
                f"{best} ({cost['best_value']:.4f}) | {cost['trials']}, {cost['steps']} |",
                "",
            ]
    lines.append(command)
    return "\n".join(lines)


def preemption_section(payload: dict[str, Any]) -> str:
    """Seconds from the preemption signal to the exit, and the steps lost."""
    result = payload["results"]
    timing, resume = result["seconds_signal_to_exit"], result["resume"]
    lines = [
        f"{result['model']}; {timing['n']} preemptions.",
        "",
        "| exit code | step in flight -> checkpoint | signal to exit, s | finishing the step, s | writing the checkpoint (MB), s | interpreter exit, s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for repeat in result["repeats"]:
        lines.append(
            f"| {repeat['exit_code']} | {repeat['step_in_flight_at_signal']} -> checkpoint-{repeat['checkpoint_step']} | {repeat['seconds_signal_to_exit']:.2f} | "
            f"{repeat['seconds_finishing_the_step']:.2f} | {repeat['seconds_writing_the_checkpoint']:.2f} ({repeat['checkpoint_megabytes']:.0f}) | {repeat['seconds_interpreter_exit']:.2f} |"
        )
    lines += [
        "",
        f"Signal to exit: median {timing['median']:.2f} s (min {timing['min']:.2f}, max {timing['max']:.2f}). Resume: "
        f"{resume['steps_redone']} steps redone, {resume['steps_missing']} missing; largest weight difference from the "
        f"uninterrupted run {resume['max_abs_weight_difference_vs_uninterrupted']:g}.",
        "",
        command_block(payload),
    ]
    return "\n".join(lines)


def adaptation_section(payload: dict[str, Any]) -> str:
    """Step time of each layer_lr_adaptation method against none and singh2015, timed in one run."""
    result = payload["results"]
    lines = [
        f"Real {result['model']} on {result['device']}, batch {result['batch_size']} x {result['max_length']} tokens, methods interleaved "
        f"in rotating order (AutoLR interval {result['autolr_interval']}).",
        "",
        "| method | median step, s (IQR) | / none | / singh2015 | per-round ratio to none: median (min-max) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, arm in result["arms"].items():
        seconds, rounds = arm["step_seconds"], arm["ratio_to_none_per_round"]
        lines.append(
            f"| {name} | {seconds['median']:.3f} ({seconds['q1']:.2f}-{seconds['q3']:.2f}) | {arm['ratio_to_none']:.3f} | "
            f"{arm['ratio_to_singh2015']:.3f} | {rounds['median']:.3f} ({rounds['min']:.2f}-{rounds['max']:.2f}) |"
        )
    lines += ["", command_block(payload)]
    return "\n".join(lines)


STUDY_TITLES = {"vit": "ViT on CIFAR-10", "cnn": "CNN on CIFAR-10", "text": "text"}


def evidence_group_section(key: tuple[str, str, str, str], summary: dict[str, Any]) -> str:
    """One model, task and budget of the evidence studies: arms, heatmap, configurations, command."""
    study, model, task, budget = key
    meta = summary["runs_meta"]
    setup = meta["setup"]
    size = f"{setup['image_size']} px" if setup["image_size"] else f"max {setup['max_length']} tokens"
    metric = "Matthews correlation" if meta["metric"] == "matthews_correlation" else "accuracy"
    lines = [
        f"#### {STUDY_TITLES.get(study, study)}: {model} ({meta['num_blocks']} blocks) on {task}, {budget} budget",
        "",
        f"Model: {evidence_summary.MODEL_NOTES.get(model, model)}.",
        f"{meta['steps']} steps x batch {setup['batch_size']} ({size}); {setup['train_size']} training examples, selection on "
        f"{setup['select_size']} held out from the training file (curve every {setup['eval_every']} steps), report {metric} on "
        f"`{setup['report_split']}`"
        + (f" ({setup['report_size']} rows)" if setup["report_size"] else "")
        + f". Seeds {meta['seeds']}; {summary['num_runs']} runs.",
        "",
        f"| arm | best rate (selection split) | report {metric}, mean +- std | n | minus uniform, paired: mean [95% t interval] | rates within 1 point of the arm's best (span) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, entry in summary["arms"].items():
        difference = entry.get("paired_difference")
        if difference is None or name == "uniform" or difference["mean"] is None:
            diff_text = ""
        elif difference["interval_95"] is None:
            diff_text = f"{difference['mean']:+.4f} (n=1)"
        else:
            low, high = difference["interval_95"]
            diff_text = f"{difference['mean']:+.4f} [{low:+.4f}, {high:+.4f}]"
        span = entry["rate_span"]
        span_text = f"{', '.join(f'{rate:.0e}' for rate in span['rates'])} (x{span['span']:g} of a x{span['grid'][-1] / span['grid'][0]:g} grid)"
        best = summary["configs"][entry["best_config"]]
        chosen_on = (
            ""
            if entry["grid_seeds"] == meta["seeds"] or len(entry["rate_span"]["grid"]) == 1
            else f" (chosen on seeds {', '.join(map(str, entry['grid_seeds']))})"
        )
        lines.append(
            f"| {name} | {best['learning_rate']:.0e}{chosen_on} | {entry['best_report']['mean']:.4f} +- {entry['best_report']['std']:.4f} | "
            f"{entry['best_report']['n']} | {diff_text} | {span_text} |"
        )
    grid = summary["heatmap"]
    if len(grid["decays"]) > 1 and len(grid["rates"]) > 1:
        over = (
            ""
            if grid["seeds"] == meta["seeds"]
            else f", over seeds {', '.join(map(str, grid['seeds']))} (those every cell has)"
        )
        lines += [
            "",
            f"Mean report {metric}{over}, learning rate (columns) x decay (rows; 1.0 = uniform, stock `Trainer`):",
            "",
        ]
        lines.append("| decay | " + " | ".join(f"{rate:.0e}" for rate in grid["rates"]) + " |")
        lines.append("|---|" + "---:|" * len(grid["rates"]))
        for decay, row in zip(grid["decays"], grid["scores"]):
            lines.append(
                f"| {decay:g} | " + " | ".join("" if value is None else f"{value:.4f}" for value in row) + " |"
            )
    lines += [
        "",
        "<details><summary>every configuration</summary>",
        "",
        "| configuration | report, mean +- std | selection, mean | per seed |",
        "|---|---:|---:|---|",
    ]
    for label, config in summary["configs"].items():
        per_seed = ", ".join(f"{config['report_by_seed'][seed]:.4f}" for seed in sorted(config["report_by_seed"]))
        lines.append(
            f"| {label} | {config['report']['mean']:.4f} +- {config['report']['std']:.4f} | {config['select']['mean']:.4f} | {per_seed} |"
        )
    lines += ["", "</details>", ""]
    lines += ["```", *meta["commands"], "```"]
    lines.append(
        f"(revisions {', '.join(f'`{revision}`' for revision in meta['revisions'])}; {meta['run_hours']:.1f} process-hours, one torch thread per process)"
    )
    lines.append("")
    return "\n".join(lines)


def evidence_sections(results_dir: Path) -> list[str]:
    """One section per model, task and budget of the evidence studies that has runs."""
    directory = results_dir / "evidence"
    if not directory.is_dir():
        return []
    sections = [
        evidence_group_section(key, summary) for key, summary in evidence_summary.summarize_all(directory).items()
    ]
    searches = sorted((directory / "search").glob("*.json"))
    if searches:
        sections.append(
            search_section(
                [json.loads(path.read_text(encoding="utf-8")) for path in searches],
                evidence_summary.load_runs(directory),
            )
        )
    return sections


def search_section(searches: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """The search against the grid: trials and steps to come within half a point of the grid's best."""
    lines = [
        "#### The lr x decay search against the grid (seed 0, selection split)",
        "",
        "| model, task | grid's best configuration (selection score) | grid cost: configurations, steps | search: trials, steps to within 0.5 point | search's best (score) | all trials, steps |",
        "|---|---|---:|---:|---|---:|",
    ]
    for search in searches:
        grid = [
            run
            for run in runs
            if run["spec"]["model"] == search["model"]
            and run["spec"]["task"] == search["task"]
            and run["spec"]["budget"] == "standard"
        ]
        if not any(run["spec"]["seed"] == 0 and run["spec"]["arm"] in ("uniform", "layerwise") for run in grid):
            continue
        cost = evidence_summary.search_cost(search, grid)
        needed = "not reached" if cost["trials_needed"] is None else f"{cost['trials_needed']}, {cost['steps_needed']}"
        best = ", ".join(f"{key} {value:.3g}" for key, value in cost["best_params"].items())
        lines.append(
            f"| {search['model']}, {search['task']} | {cost['grid_best']['label']} ({cost['grid_best']['select_score']:.4f}) | "
            f"{cost['grid_configs']}, {cost['grid_steps']} | {needed} | {best} ({cost['best_value']:.4f}) | {cost['trials']}, {cost['steps']} |"
        )
    lines += ["", "```", *sorted({search["command"] for search in searches}), "```", ""]
    return "\n".join(lines)


def format_steps(per_seed: dict[str, int | None]) -> str:
    """``{"0": 32, "1": None}`` -> ``32 / never``."""
    return " / ".join("never" if steps is None else str(steps) for steps in per_seed.values())


def main(argv: list[str] | None = None) -> str:
    """Prints every section whose JSON exists.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The Markdown printed.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    sections = [
        ("throughput", "Throughput overhead", throughput_section),
        ("throughput_bert-base_cuda", "Throughput overhead, 12-layer BERT-base on GPU", throughput_section),
        ("optimizer_step", "Optimizer step cost", optimizer_section),
        ("optimizer_step_cuda", "Optimizer step cost on GPU", optimizer_section),
        ("grouping_scale", "Scale of the grouping", grouping_section),
        ("quality", "Quality at equal budget", quality_section),
        (
            "quality_adaptive",
            "Adaptive rates and the search at the quality budget",
            lambda payload: quality_adaptive_section(payload, load(args.results_dir, "quality")),
        ),
        ("adaptation_cost", "Cost of the adaptive rates per step", adaptation_section),
        ("preemption_cost", "Cost of a preemption", preemption_section),
    ]
    payloads = [payload for name, _, _ in sections if (payload := load(args.results_dir, name)) is not None]
    parts = ["### Machine and versions", "", machine_section(payloads)] if payloads else []
    for name, title, render in sections:
        payload = load(args.results_dir, name)
        if payload is not None:
            parts += [f"### {title}", "", render(payload)]
    evidence = evidence_sections(args.results_dir)
    if evidence:
        parts += ["### Where layer-wise rates matter: real backbones to convergence", "", *evidence]
    text = "\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    main()
