"""The Markdown renderer of BENCHMARKS.md: every table, from the committed results in ``benchmarks/results``.

* The timing benchmarks (one JSON each, ``benchmarks/results/<name>.json``): each table is followed by the command
  that produced it; each benchmark prints its own section when it finishes.
* The in-process studies (one JSON per run, ``benchmarks/results/studies/<study>/``, see ``benchmarks/engine``):
  each section of :data:`engine.sections.SECTIONS` with the studies that declare it, drawn from
  :mod:`engine.views` (the quality grid, the evidence studies: each arm at its rate chosen on the selection split,
  paired differences, rate spans, the lr x decay heatmap, every configuration; the searches against their grids);
  and the table of a study reported on its own (every recipe study), which ``python benchmarks/study.py report
  <study> --update BENCHMARKS.md`` puts between its markers.

Nothing here computes a figure or writes a file but BENCHMARKS.md in :func:`update_document`; ``plots.py`` draws
the same views. Run ``python benchmarks/report.py`` after the benchmarks: it prints the section of BENCHMARKS.md
between ``<!-- report.py begins -->`` and ``<!-- report.py ends -->`` (a test checks that they match).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import bench_utils
from engine import Study
from engine.classification import MODEL_NOTES
from engine.sections import SECTIONS, Section
from engine.store import Run
from engine.summary import search_cost, summarize
from engine.views import (
    complete,
    evidence_view,
    quality_label,
    quality_view,
    search_comparisons,
    section_studies,
    study_results,
    view_of,
)


# The document: each timing benchmark's JSON and its heading, and where each section of engine.sections goes (a
# section missing here goes at the end).
LAYOUT = (
    ("throughput", "Throughput overhead"),
    ("throughput_rules", "Throughput overhead with parameter rules"),
    ("throughput_bert-base_cuda", "Throughput overhead, 12-layer BERT-base on GPU"),
    ("optimizer_step", "Optimizer step cost"),
    ("optimizer_step_cuda", "Optimizer step cost on GPU"),
    ("grouping_scale", "Scale of the grouping"),
    "quality",
    "quality_adaptive",
    ("adaptation_cost", "Cost of the adaptive rates per step"),
    ("preemption_cost", "Cost of a preemption"),
    "evidence",
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=None, help="Where the benchmarks' JSON files are.")
    parser.add_argument("--quick", action="store_true", help="Report the miniatures (out/bench-quick by default).")
    return parser


# ---- the timing benchmarks ----


def load(results_dir: Path, name: str) -> dict[str, Any] | None:
    """One benchmark's JSON, or None when it has not been run."""
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def command_block(payload: dict[str, Any]) -> str:
    """The command, the revision, the wall time and the machine load of one benchmark run."""
    return session_block(
        payload["command"].replace(str(bench_utils.REPO_ROOT) + "/", ""),
        payload["git_revision"],
        payload["started_utc"],
        payload["wall_seconds"],
        payload["machine"],
    )


def session_block(command: str, revision: str, started: str, wall_seconds: float, machine: dict[str, Any]) -> str:
    """A command in a code block, and the revision, start, wall time and load of the session that ran it."""
    return (
        f"```\n{command}\n```\n"
        f"(revision `{revision}`, {started}, {wall_seconds / 60:.1f} min wall, "
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


def throughput_section(result: dict[str, Any]) -> list[str]:
    """The throughput table."""
    lines = [
        f"{result['model']} on {result['device']}{' (bf16)' if result['bf16'] else ''}, optim `{result['optim']}`, batch {result['batch_size']}, "
        f"{result['rounds']} lockstep rounds x {result['measured_steps']} timed steps per arm (after {result['warmup_steps']} warm-up steps), "
        f"logging every {result['logging_steps']} step(s).",
        "",
        "| arm | optimizer groups | median samples/s | step ms: q1 | median | q3 | optimizer creation ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rules = result.get("param_group_rules")
    llrd_name = f"`LLRDTrainer`, layer_decay {result['layer_decay']}" + (
        f", {len(rules)} parameter rules ({', '.join(rule.get('name', rule['pattern']) for rule in rules)})"
        if rules
        else ""
    )
    for arm, name in (("stock", "stock `Trainer`"), ("llrd", llrd_name)):
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
    return lines + [
        "",
        f"- **Ratio LLRD / stock of the median samples/s: {ratio['of_medians']:.3f}** (goal >= 0.99).",
        f"- Per-step ratios (each LLRD step against the stock step beside it, n={per_step['n']}): median {per_step['median']:.3f}, "
        f"95% bootstrap interval of the median {low:.3f}-{high:.3f}, quartiles {per_step['q1']:.3f}-{per_step['q3']:.3f}.",
        f"- Per round: {', '.join(f'{value:.3f}' for value in ratio['per_round'])}.",
        f"- `trainer.log` per call: stock {log['stock_us']:.1f} us, LLRD {log['llrd_us']:.1f} us (+{log['extra_us']:.1f} us per logging step for the per-depth rates).",
    ]


def sft_throughput_section(result: dict[str, Any]) -> list[str]:
    """The SFT throughput figures (``sft_throughput.py``; BENCHMARKS.md quotes them in its SFT section)."""
    arms, ratio = result["arms"], result["ratio"]
    low, high = ratio["per_step_median_95ci"]
    return [
        f"{result['model']} on {result['device']}: {result['rounds']} lockstep rounds x {result['measured_steps']} timed steps of "
        f"{result['batch_size']} conversations at {result['max_length']} tokens.",
        "",
        f"- `SFTTrainer` {arms['stock']['samples_per_second']:.3f} samples/s ({arms['stock']['optimizer_groups']} groups), "
        f"`layerwise_trainer(SFTTrainer)` {arms['llrd']['samples_per_second']:.3f} samples/s ({arms['llrd']['optimizer_groups']} groups).",
        f"- **Ratio of the median samples/s: {ratio['of_medians']:.3f}**; per step median {ratio['per_step']['median']:.3f} "
        f"[{low:.3f}, {high:.3f}]; per round {', '.join(f'{value:.3f}' for value in ratio['per_round'])}.",
    ]


def optimizer_section(result: dict[str, Any]) -> list[str]:
    """The optimizer-step table."""
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
    lines += ["", f"Steps timed per arm: {counts}. Goal: ratio <= 1.05."]
    if result.get("group_sweep"):
        sweep = result["group_sweep"]
        group_counts = list(sweep[0]["step_us"])
        lines += [
            "",
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
    return lines


def grouping_section(result: dict[str, Any]) -> list[str]:
    """The grouping-scale figures."""
    memory = result["memory"]
    layer_time, group_time = result["layer_map_seconds"], result["param_groups_seconds"]
    return [
        f"Llama-3-70B shape ({result['num_parameters']:,} parameters, {result['num_tensors']} tensors) built on `meta` in {result['build_seconds']:.2f} s.",
        "",
        "| step | median s | min | max | calls |",
        "|---|---:|---:|---:|---:|",
        f"| `layer_map(model)` | {layer_time['median']:.3f} | {layer_time['min']:.3f} | {layer_time['max']:.3f} | {layer_time['n']} |",
        f"| `param_groups(model, ...)` (maps the layers too) | **{group_time['median']:.3f}** | {group_time['min']:.3f} | {group_time['max']:.3f} | {group_time['n']} |",
        *(
            [
                f"| `param_groups(model, ..., rules=...)` with {len(result['rules'])} rules ({result['num_groups_with_rules']} groups) | "
                f"**{rules_time['median']:.3f}** | {rules_time['min']:.3f} | {rules_time['max']:.3f} | {rules_time['n']} |"
            ]
            if (rules_time := result.get("param_groups_with_rules_seconds"))
            else []
        ),
        "",
        f"- {result['num_groups']} groups holding all {result['num_grouped_tensors']} tensors; every parameter still on `meta`: {result['all_parameters_on_meta']}.",
        f"- One `param_groups` call: Python heap peak (tracemalloc) {memory['tracemalloc_peak_bytes'] / 2**20:.2f} MiB, resident-set growth "
        f"{memory['rss_growth_bytes'] / 2**20:.2f} MiB, peak-RSS growth {memory['max_rss_growth_bytes'] / 2**20:.2f} MiB; the weights in bf16 would take "
        f"{result['bf16_weight_bytes'] / 2**30:.0f} GiB.",
    ]


def preemption_section(result: dict[str, Any]) -> list[str]:
    """Seconds from the preemption signal to the exit, and the steps lost."""
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
    return lines + [
        "",
        f"Signal to exit: median {timing['median']:.2f} s (min {timing['min']:.2f}, max {timing['max']:.2f}). Resume: "
        f"{resume['steps_redone']} steps redone, {resume['steps_missing']} missing; largest weight difference from the "
        f"uninterrupted run {resume['max_abs_weight_difference_vs_uninterrupted']:g}.",
    ]


def adaptation_section(result: dict[str, Any]) -> list[str]:
    """Step time of each layer_lr_adaptation method against none and singh2015, timed in one run."""
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
    return lines


BENCHMARK_SECTIONS = {
    "throughput": throughput_section,
    "sft_throughput": sft_throughput_section,
    "optimizer_step": optimizer_section,
    "grouping_scale": grouping_section,
    "adaptation_cost": adaptation_section,
    "preemption_cost": preemption_section,
}


def benchmark_section(payload: dict[str, Any]) -> str:
    """One timing benchmark's section: its table and the command that produced it."""
    lines = BENCHMARK_SECTIONS[payload["benchmark"]](payload["results"])
    return "\n".join([*lines, "", command_block(payload)])


# ---- the studies ----


def study_command(names: list[str], quick: bool = False) -> str:
    """The command that runs (or resumes) the studies ``names`` (their miniatures with ``quick``)."""
    return f"python benchmarks/study.py run {','.join(names)} --processes 2 --threads 1" + (
        " --quick" if quick else ""
    )


def provenance(names: list[str], records: list[dict[str, Any]], quick: bool = False) -> list[str]:
    """The command that runs the studies, then the revisions and time of their runs: the session that ran them all
    when one did (a record's ``session``), else the revisions and process-hours of the runs."""
    sessions = {json.dumps(record.get("session"), sort_keys=True) for record in records}
    if len(sessions) == 1 and records[0].get("session"):
        session = records[0]["session"]
        return [
            session_block(
                study_command(names, quick),
                session["git_revision"],
                session["started_utc"],
                session["wall_seconds"],
                session,
            )
        ]
    hours = sum(record.get("wall_seconds") or 0 for record in records) / 3600
    return [
        "```",
        study_command(names, quick),
        "```",
        f"(revisions {', '.join(f'`{revision}`' for revision in sorted({record['git_revision'] for record in records}))}; "
        f"{hours:.1f} process-hours, one torch thread per process)",
    ]


def format_mean_and_std(by_seed: dict[int, float]) -> str:
    """``0.8035 +- 0.0118``: the mean and sample standard deviation (:func:`bench_utils.mean_and_std`) of the
    scores by seed."""
    stats = bench_utils.mean_and_std(list(by_seed.values()))
    return f"{stats['mean']:.4f} +- {stats['std']:.4f}"


def config_row(config: dict[str, Any]) -> str:
    """A configuration's row: its label, report mean +- std, selection mean and report score by seed."""
    per_seed = ", ".join(f"{config['report'][seed]:.4f}" for seed in sorted(config["report"]))
    return f"| {config['label']} | {format_mean_and_std(config['report'])} | {statistics.fmean(config['select'].values()):.4f} | {per_seed} |"


def evidence_section(study: Study, results: dict[str, dict[str, Any]]) -> str:
    """One evidence study: arms, heatmap, configurations, command."""
    view = evidence_view(study, results)
    setup, seeds = view["setup"], view["seeds"]
    executor = study.executor
    size = f"{setup['image_size']} px" if setup["image_size"] else f"max {setup['max_length']} tokens"
    metric = "Matthews correlation" if setup["metric"] == "matthews_correlation" else "accuracy"
    lines = [
        f"#### {study.title}: {executor.model_name()} ({view['num_blocks']} blocks) on {executor.task}, {executor.budget} budget",
        "",
        f"Model: {MODEL_NOTES.get(executor.model_name(), executor.model_name())}.",
        f"{view['steps']} steps x batch {setup['batch_size']} ({size}); {setup['train_size']} training examples, selection on "
        f"{setup['select_size']} held out from the training file (curve every {setup['eval_every']} steps), report {metric} on "
        f"`{setup['report_split']}`"
        + (f" ({setup['report_size']} rows)" if setup["report_size"] else "")
        + f". Seeds {seeds}; {len(results)} runs.",
        "",
        f"| arm | best rate (selection split) | report {metric}, mean +- std | n | minus uniform, paired: mean [95% t interval] | rates within 1 point of the arm's best (span) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, entry in view["arms"].items():
        difference = entry["paired_difference"]
        if difference is None or name == "uniform" or difference["mean"] is None:
            diff_text = ""
        elif difference["interval_95"] is None:
            diff_text = f"{difference['mean']:+.4f} (n=1)"
        else:
            low, high = difference["interval_95"]
            diff_text = f"{difference['mean']:+.4f} [{low:+.4f}, {high:+.4f}]"
        span = entry["rate_span"]
        span_text = f"{', '.join(f'{rate:.0e}' for rate in span['rates'])} (x{span['span']:g} of a x{span['grid'][-1] / span['grid'][0]:g} grid)"
        best = entry["best"]
        chosen_on = (
            ""
            if entry["grid_seeds"] == seeds or len(span["grid"]) == 1
            else f" (chosen on seeds {', '.join(map(str, entry['grid_seeds']))})"
        )
        lines.append(
            f"| {name} | {best['point']['learning_rate']:.0e}{chosen_on} | {format_mean_and_std(best['report'])} | "
            f"{len(best['report'])} | {diff_text} | {span_text} |"
        )
    grid = view["heatmap"]
    if len(grid["decays"]) > 1 and len(grid["rates"]) > 1:
        over = (
            ""
            if grid["seeds"] == seeds
            else f", over seeds {', '.join(map(str, grid['seeds']))} (those every cell has)"
        )
        lines += [
            "",
            f"Mean report {metric}{over}, learning rate (columns) x decay (rows; 1.0 = uniform, stock `Trainer`):",
            "",
            "| decay | " + " | ".join(f"{rate:.0e}" for rate in grid["rates"]) + " |",
            "|---|" + "---:|" * len(grid["rates"]),
        ]
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
    lines += [config_row(config) for config in view["configs"]]
    lines += ["", "</details>", "", *provenance([study.name], view["records"], executor.quick), ""]
    return "\n".join(lines)


def search_row(search: dict[str, Any], grid_runs: list[dict[str, Any]]) -> str:
    """A search against its grid: the grid's best, its cost, the trials and steps to come within half a point."""
    cost = search_cost(search, grid_runs)
    needed = "not reached" if cost["trials_needed"] is None else f"{cost['trials_needed']}, {cost['steps_needed']}"
    best = ", ".join(f"{key} {value:.3g}" for key, value in cost["best_params"].items())
    return (
        f"{cost['grid_best']['label']} ({cost['grid_best']['select_score']:.4f}) | {cost['grid_configs']}, {cost['grid_steps']} | "
        f"{needed} | {best} ({cost['best_value']:.4f}) | {cost['trials']}, {cost['steps']} |"
    )


def search_section(studies: list[tuple[Study, dict[str, dict[str, Any]]]], results_dir: Path) -> list[str]:
    """The evidence studies' searches against their grids (seed 0, selection split)."""
    rows, names = [], []
    for study, results in studies:
        for search, grid in search_comparisons(study, results, results_dir, study.executor.quick):
            rows.append(f"| {search['model']}, {search['task']} | {search_row(search, grid)}")
            names.append(study.name)
    if not rows:
        return []
    return [
        "#### The lr x decay search against the grid (seed 0, selection split)",
        "",
        "| model, task | grid's best configuration (selection score) | grid cost: configurations, steps | search: trials, steps to within 0.5 point | search's best (score) | all trials, steps |",
        "|---|---|---:|---:|---|---:|",
        *rows,
        "",
        "```",
        *(study_command([name], studies[0][0].executor.quick) for name in dict.fromkeys(names)),
        "```",
        "",
    ]


def quality_task(study: Study, results: dict[str, dict[str, Any]]) -> list[str]:
    """The tables of one quality study (one task)."""
    name = study.executor.setup().task
    if not complete(study, results):
        return [f"#### {name}: incomplete ({len(results)} runs)", ""]
    view = quality_view(study, results)
    setup = view["setup"]
    lines = [
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
    lines += [config_row(config) for config in view["configs"]]
    lines += [
        "",
        "| arm | best configuration (picked on selection split) | its report accuracy, mean +- std | best single run | mean over the whole grid |",
        "|---|---|---:|---:|---:|",
    ]
    for arm, arm_name in (("uniform", "uniform (stock `Trainer`)"), ("layerwise", "layer-wise (`LLRDTrainer`)")):
        entry = view["arms"][arm]
        single, single_label = entry["best_single"]
        lines.append(
            f"| {arm_name} | {entry['best']['label']} | **{format_mean_and_std(entry['best']['report'])}** | "
            f"{single['metrics']['report_score']:.4f} ({single_label}, seed {single['seed']}) | {entry['grid']['mean']:.4f} +- {entry['grid']['std']:.4f} |"
        )
    tta, difference = view["time_to_accuracy"], view["paired_difference"]
    lines += [
        "",
        f"- Layer-wise minus uniform (best configurations, same seed): {difference['mean']:+.4f} +- {difference['std']:.4f} "
        f"(per seed: {', '.join(f'{value:+.4f}' for value in difference['differences'])}).",
        f"- Time to accuracy, target {tta['target']:.4f} = the uniform best configuration's mean final accuracy on `{setup['curve_split']}`: "
        f"uniform reaches it at step {tta['uniform']['mean_curve_steps']}, layer-wise at step "
        f"{tta['layerwise']['mean_curve_steps'] if tta['layerwise']['mean_curve_steps'] is not None else 'never (within the budget)'} "
        f"(mean curves); per seed, uniform {format_steps(tta['uniform']['per_seed_steps'])}, layer-wise {format_steps(tta['layerwise']['per_seed_steps'])}.",
        "",
    ]
    return lines


def quality_extras(study: Study, results: dict[str, dict[str, Any]], results_dir: Path, quick: bool) -> list[str]:
    """Each adaptation of a quality study against its twin, and its search against the quality grid."""
    name = study.executor.setup().task
    if not complete(study, results):
        return []
    view, lines = quality_view(study, results), []
    if view["adaptive"]:
        lines += [
            f"#### {name}: each adaptation against its twin",
            "",
            f"| configuration | report accuracy, mean +- std | minus its twin, paired mean +- std (per seed) | minus {view['arms']['uniform']['best']['label']}, paired mean +- std |",
            "|---|---:|---:|---:|",
        ]
        for entry in view["adaptive"]:
            twin, uniform = entry["minus_twin"], entry["minus_uniform_best"]
            lines.append(
                f"| {entry['config']['label']} | {format_mean_and_std(entry['config']['report'])} | "
                f"{twin['mean']:+.4f} +- {twin['std']:.4f} ({', '.join(f'{value:+.4f}' for value in twin['differences'])}) | "
                f"{uniform['mean']:+.4f} +- {uniform['std']:.4f} |"
            )
        lines.append("")
    for search, grid in search_comparisons(study, results, results_dir, quick):
        lines += [
            f"#### {name}: the lr x decay search against the grid of `{study.search_grid or study.name}` (seed 0, selection split)",
            "",
            "| grid's best configuration (selection accuracy) | grid cost: configurations, steps | search: trials, steps to within 0.5 point | search's best (accuracy) | all trials, steps |",
            "|---|---:|---:|---|---:|",
            f"| {search_row(search, grid)}",
            "",
        ]
    return lines


def quality_section(
    studies: list[tuple[Study, dict[str, dict[str, Any]]]], results_dir: Path, quick: bool = False
) -> str:
    """The quality tables of ``studies`` (one per task), their adaptations and searches, and the command."""
    names = [study.name for study, _ in studies]
    study = studies[0][0]
    labels = [quality_label(study, Run(arm, point, 0)) for arm in study.arms for point in study.points(arm)]
    lines = [f"Seeds {list(study.seeds)}; grid: {', '.join(labels)}.", ""]
    for study, results in studies:
        lines += quality_task(study, results)
    extras = [line for study, results in studies for line in quality_extras(study, results, results_dir, quick)]
    if extras:
        lines = [*lines[:-1], "", *extras]
    records = [record for _, results in studies for record in results.values()]
    return "\n".join([*lines, *provenance(names, records, quick)])


def format_steps(per_seed: dict[str, int | None]) -> str:
    """``{"0": 32, "1": None}`` -> ``32 / never``."""
    return " / ".join("never" if steps is None else str(steps) for steps in per_seed.values())


def section_text(section: Section, results_dir: Path, quick: bool = False) -> str:
    """One section of :data:`engine.sections.SECTIONS` with the studies that declare it, under its heading; empty
    while it has nothing to show (a quality section: until each of its studies has runs; an evidence section: until
    one has)."""
    studies = [(study, study_results(study, results_dir)) for study in section_studies(section, quick)]
    if section.view == "quality":
        if not studies or not all(results for _, results in studies):
            return ""
        return "\n".join([f"### {section.heading}", "", quality_section(studies, results_dir, quick)])
    studies = [(study, results) for study, results in studies if results]
    if not studies:
        return ""
    search = search_section(studies, results_dir)
    parts = [evidence_section(study, results) for study, results in studies] + (["\n".join(search)] if search else [])
    return "\n".join([f"### {section.heading}", "", *parts])


# ---- the studies' tables (the recipe studies', between their markers in BENCHMARKS.md) ----


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def study_table(summary: dict[str, Any]) -> str:
    """A study's tables in Markdown (the recipe studies' in BENCHMARKS.md, and any study's without a section of its
    own): the chosen rate and scores of every arm, then the grid."""
    better = "higher" if summary["greater_is_better"] else "lower"
    others = summary.get("other_metrics", [])
    executor = summary["executor"]
    if "recipe" in executor:
        what = f"`{executor['recipe']}` on `{executor['model']}`"
    else:
        what = ", ".join(f"{key} `{value}`" for key, value in executor.items())
    lines = [
        f"{summary['study']}: {what}, {summary['metric']} ({better} is better), "
        f"rate chosen per arm on seed(s) {', '.join(map(str, summary['grid_seeds']))}.",
        "",
        f"| arm | chosen lr | seeds | by seed | mean | std | {''.join(f'mean {name} | ' for name in others)}"
        f"paired difference to {summary['reference_arm']} [95% interval] |",
        "|---|---|---|---|---|---|---|" + "---|" * len(others),
    ]
    for arm, row in summary["arms"].items():
        seeds = ", ".join(map(str, sorted(row["by_seed"])))
        if row["failed_seeds"]:
            seeds += f" (failed: {', '.join(map(str, row['failed_seeds']))})"
        difference = row.get("paired_difference")
        if difference is None:
            paired_text = "reference"
        elif difference["mean"] is None:
            paired_text = "-"
        else:
            interval = difference["interval_95"]
            paired_text = (
                f"{difference['mean']:+.4f}"
                + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "")
                + f" ({len(difference['seeds'])} seeds)"
            )
        rate = "-" if row["chosen_rate"] is None else f"{row['chosen_rate']:g}"
        by_seed = ", ".join(_number(row["by_seed"][seed]) for seed in sorted(row["by_seed"])) or "-"
        other_means = "".join(f"{_number(row.get('other_metrics', {}).get(name))} | " for name in others)
        lines.append(
            f"| {arm} | {rate} | {seeds or '-'} | {by_seed} | {_number(row['mean'])} | {_number(row['std'])} | {other_means}{paired_text} |"
        )
    rates = sorted(
        {rate for row in summary["grid"].values() for rate in row}, key=lambda label: float(label.split()[0])
    )
    lines += [
        "",
        f"Grid (mean over seed(s) {', '.join(map(str, summary['grid_seeds']))}):",
        "",
        "| arm | " + " | ".join(rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for arm, row in summary["grid"].items():
        lines.append(
            f"| {arm} | " + " | ".join(_number(row.get(rate)) if rate in row else "" for rate in rates) + " |"
        )
    if summary["failed_runs"]:
        lines += ["", f"Failed runs: {', '.join(summary['failed_runs'])}."]
    lines += ["", f"{summary['runs']} runs, revision(s) {', '.join(summary['revisions'])}."]
    if summary["caveats"]:
        lines += ["", f"Caveats: {summary['caveats']}"]
    return "\n".join(lines)


def study_section(study: Study, results: dict[str, dict[str, Any]], results_dir: Path) -> str:
    """One study's Markdown as ``study.py report`` prints it: an evidence or quality study's part of its section, as
    BENCHMARKS.md shows it, else (a study reported on its own) :func:`study_table` of its summary.

    Args:
        study: the study (its miniature for a quick run).
        results: its records.
        results_dir: the folder of ``studies/`` (a quality study's search reads the grid it is measured against).
    """
    view = view_of(study)
    if view == "evidence":
        return evidence_section(study, results)
    if view == "quality":
        return quality_section([(study, results)], results_dir, study.executor.quick)
    return study_table(summarize(study, results))


def update_document(path: Path, study_name: str, table: str) -> None:
    """Replaces what stands between ``<!-- <study>-study results begin -->`` and ``... end -->`` in ``path``
    (BENCHMARKS.md) with ``table``.

    Raises:
        ValueError: when the file has no such markers.
    """
    begin, end = f"<!-- {study_name}-study results begin -->", f"<!-- {study_name}-study results end -->"
    text = path.read_text(encoding="utf-8")
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{path} needs one line {begin!r} and, after it, one line {end!r} around the study's table.")
    head, rest = text.split(begin)
    path.write_text(f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}", encoding="utf-8")


def main(argv: list[str] | None = None) -> str:
    """Prints every section whose results exist, in the order of :data:`LAYOUT`.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The Markdown printed.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    results_dir = args.results_dir or (bench_utils.QUICK_RESULTS_DIR if args.quick else bench_utils.RESULTS_DIR)
    placed = {entry for entry in LAYOUT if isinstance(entry, str)}
    layout = [*LAYOUT, *(section.name for section in SECTIONS if section.name not in placed)]
    sections = {section.name: section for section in SECTIONS}
    payloads = [payload for entry in layout if isinstance(entry, tuple) and (payload := load(results_dir, entry[0]))]
    parts = ["### Machine and versions", "", machine_section(payloads)] if payloads else []
    for entry in layout:
        if isinstance(entry, str):
            text = section_text(sections[entry], results_dir, args.quick)
            parts += [text] if text else []
        elif (payload := load(results_dir, entry[0])) is not None:
            parts += [f"### {entry[1]}", "", benchmark_section(payload)]
    text = "\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    main()
