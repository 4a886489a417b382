"""The runner: runs what is missing of a study, one record per run, re-planning after each run (a finished grid
unlocks the later seeds), then the study's search.

Several runners of one study on this machine share its runs: each claims the run it starts and skips the runs
that live runners hold; when every runnable run is held (the later seeds wait for a grid that another runner is
finishing), it waits and plans again. ``--processes N`` starts N such runners.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import bench_utils

from engine.declaration import Study
from engine.plan import planned_runs
from engine.store import STUDY_OUTPUT_DIR, STUDY_RESULTS_DIR, Run, RunStore, run_id, score, write_json


QUICK_ROOT = bench_utils.QUICK_RESULTS_DIR / "studies"


@dataclass
class Options:
    """How a runner runs.

    Attributes:
        threads: torch intra-op threads of each run.
        models_dir: where ``build.sh`` puts (or has put) the real backbones.
        device: ``cpu`` or ``cuda`` (in-process runs).
        quick: run the study's miniature (:func:`miniature`) on tiny models, into ``out/bench-quick/studies``.
        dry_run: print the runs that would run now, and run nothing.
        retry_failed: run failed runs again.
        max_runs: stop after this many runs.
        poll_seconds: the wait while every runnable run is held by another runner.
        command: the runner's command line, recorded by in-process runs.
        root: the folder of the studies' run folders.
        scratch: where claims, run outputs and tiny models go.
    """

    threads: int = 1
    models_dir: Path = bench_utils.DEFAULT_MODELS_DIR
    device: str = "cpu"
    quick: bool = False
    dry_run: bool = False
    retry_failed: bool = False
    max_runs: int | None = None
    poll_seconds: float = 30.0
    command: str = ""
    root: Path = field(default=STUDY_RESULTS_DIR)
    scratch: Path = field(default=STUDY_OUTPUT_DIR)

    def __post_init__(self):
        if self.quick and self.root == STUDY_RESULTS_DIR:
            self.root, self.scratch = QUICK_ROOT, QUICK_ROOT.parent / "scratch"


def miniature(study: Study) -> Study:
    """The study shrunk to a smoke test: the first point of each arm's grid, seed 0, at most 2 search trials, and the
    executor's miniature (tiny models, a few steps)."""
    return replace(
        study,
        executor=study.executor.miniature(),
        arm_learning_rates={arm: study.points(arm)[:1] for arm in study.arms},
        grid_seeds=(0,),
        seeds=(0,),
        rates_on_every_seed={},
        search_trials=min(study.search_trials, 2),
    )


def execute(study: Study, run: Run, options: Options, context: dict[str, Any]) -> dict[str, Any]:
    """Runs one configuration and returns its record."""
    executor = study.executor
    started = time.time()
    outcome = executor.execute(study, run, options, context)
    record: dict[str, Any] = {"study": study.name, "arm": run.arm, "learning_rate": run.point.learning_rate}
    if run.point.settings:
        record["settings"] = dict(run.point.settings)
    return (
        record
        | {
            "seed": run.seed,
            "arguments": executor.arguments(study, run),
            "command": outcome.pop("command", options.command),
            "git_revision": bench_utils.git_revision(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "wall_seconds": round(time.time() - started, 1),
            "threads": options.threads,
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        }
        | outcome
    )


def run_study(study: Study, options: Options) -> int:
    """Runs what is missing of ``study`` (its miniature with ``options.quick``), then its search.

    Returns:
        How many runs ran.
    """
    study = miniature(study) if options.quick else study
    store = RunStore(study, options.root, options.scratch)
    context = study.executor.prepare(study, options)
    done = 0
    retry_failed = options.retry_failed
    while options.max_runs is None or done < options.max_runs:
        results = store.load()
        store.refuse_stale(results)
        if retry_failed:
            results = {key: value for key, value in results.items() if value.get("status") == "ok"}
        plan = planned_runs(study, results)
        if options.dry_run:
            for run in plan:
                print(study.executor.describe_run(study, run, options, context))
            return 0
        free = [run for run in plan if not store.claimed_by_another(store.claim_path(run_id(*run)))]
        if not free:
            if not store.held_elsewhere():
                print(f"{study.name}: nothing left to run ({len(results)} runs).", flush=True)
                run_search(study, store, options, context)
                break
            time.sleep(options.poll_seconds)
            continue
        run = free[0]
        if not store.claim(run_id(*run)):
            continue
        try:
            print(f"{study.name}: {run_id(*run)} ({len(plan)} runnable now)", flush=True)
            record = execute(study, run, options, context)
            store.write(run, record)
        finally:
            store.release(run_id(*run))
        print(
            f"  {record['status']}: {study.metric}={score(record, study.metric)} in {record['wall_seconds']} s",
            flush=True,
        )
        retry_failed = False
        done += 1
    return done


def run_search(study: Study, store: RunStore, options: Options, context: dict[str, Any]) -> None:
    """The study's lr x decay search on seed 0, once (a file per search, claimed like a run)."""
    path = store.search_path(study.search_trials)
    claim = path.stem
    if not study.search_trials or path.is_file() or not store.claim(claim):
        return
    try:
        started = time.time()
        record = {"study": study.name} | study.executor.search(study, study.search_trials, options, context)
        record |= {
            "git_revision": bench_utils.git_revision(),
            "command": options.command,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "wall_seconds": round(time.time() - started, 1),
        }
        write_json(path, record)
        print(f"{study.name} search: best {record['best_params']} = {record['best_value']:.4f}", flush=True)
    finally:
        store.release(claim)


def run_studies(names: list[str], options: Options, processes: int = 1) -> None:
    """Runs every study of ``names`` in turn, in ``processes`` runners side by side that share the runs."""
    if processes <= 1 or options.dry_run:
        run_each(names, options)
        return
    from engine.declaration import load_study

    for name in names:  # the backbones built once here, not by runners racing
        study = load_study(name)
        study.executor.prepare(miniature(study) if options.quick else study, options)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=run_each, args=(names, options)) for _ in range(processes - 1)]
    for worker in workers:
        worker.start()
        time.sleep(1.0)  # the first runner claims the first run before the next plans
    try:
        run_each(names, options)
    except BaseException:
        for worker in workers:
            worker.terminate()  # each stops its run and drops its claim (run_each's SIGTERM handler)
        raise
    finally:
        for worker in workers:
            worker.join()
    if any(worker.exitcode for worker in workers):
        raise SystemExit(f"a runner failed (exit codes {[worker.exitcode for worker in workers]})")


def run_each(names: list[str], options: Options) -> None:
    """Runs the studies of ``names`` in order (in a runner process). A runner stopped by SIGTERM stops its run too
    and drops its claim, as after Ctrl-C: ``subprocess.run`` kills a recipe when an exception interrupts it."""
    from engine.declaration import load_study

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for name in names:
        run_study(load_study(name), options)
