"""The recipe executor: one run is one subprocess of ``recipes/<recipe>`` on a real backbone.

Every run of a study gets the study's arguments, the arm's, ``--seed`` and ``--learning_rate`` (runs with the same
seed share the recipe's data order and head initialisation, so the arms are paired by seed), an output folder
under ``out/studies/<study>/`` and :data:`RUN_SETTINGS`. Its metrics are the recipe's ``all_results.json``; a run
that fails (a diverged loss, say) is recorded as failed with the end of its log.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_utils

from engine.store import STUDY_OUTPUT_DIR, Run, run_id


# What every run of a study gets after the study's own arguments: no checkpoints, no progress bars.
RUN_SETTINGS = ("--overwrite_output_dir", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true")


@dataclass(frozen=True)
class Recipe:
    """Runs a recipe of ``recipes/`` once per configuration.

    Attributes:
        recipe: the recipe's file name under ``recipes/``.
        model: a ``../shared/models/build.sh`` name (built into ``--models-dir`` on first use), ``minilm-l6`` (the
            PyPI MiniLM), or a folder.
        common_args: arguments of every run; ``{data}`` is replaced by ``../shared/data`` and ``{models}`` by the
            models folder (braces meant literally are doubled).
        model_arg: the recipe's flag for the model folder.
    """

    recipe: str
    model: str
    common_args: tuple[str, ...] | list[str]
    model_arg: str = "--model_name_or_path"

    def describe(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "model": self.model}

    def command(
        self, study, run: Run, model_path: str, models_dir: Path, scratch: Path = STUDY_OUTPUT_DIR
    ) -> list[str]:
        """The command line of one run (from the repository root)."""
        fill = {"data": str(bench_utils.DATA_DIR), "models": str(models_dir)}
        return [
            "python",
            f"recipes/{self.recipe}",
            self.model_arg,
            model_path,
            *(argument.format(**fill) for argument in self.common_args),
            *study.arms[run.arm],
            "--seed",
            str(run.seed),
            "--learning_rate",
            f"{run.point.learning_rate:g}",
            "--output_dir",
            str(scratch / study.name / run_id(*run)),
            *RUN_SETTINGS,
        ]

    def arguments(self, study, run: Run) -> list[str]:
        """The arguments that decide a run's result, as its record keeps them: the study's and the arm's, the seed
        and the rate (not the model and output folders, which depend on the machine)."""
        command = recorded_command(self.command(study, run, "MODEL", bench_utils.DEFAULT_MODELS_DIR))
        return self.recorded_arguments(command)

    def recorded_arguments(self, command: str) -> list[str]:
        """The arguments of a recorded command line: its words between the model folder and ``--output_dir``."""
        words = shlex.split(command)
        if self.model_arg not in words or "--output_dir" not in words:
            return words
        return words[words.index(self.model_arg) + 2 : words.index("--output_dir")]

    def miniature(self):
        raise SystemExit(f"recipes/{self.recipe}: a recipe study has no miniature; --dry-run prints its commands.")

    def prepare(self, study, options) -> dict[str, Any]:
        """Builds the backbone once, before the runs (not for a dry run)."""
        path = (
            str(options.models_dir / self.model)
            if options.dry_run
            else bench_utils.model_folder(self.model, options.models_dir)
        )
        return {"model_path": path}

    def describe_run(self, study, run: Run, options, context: dict[str, Any]) -> str:
        """The run's command line, as ``--dry-run`` prints it."""
        return shlex.join(self.command(study, run, context["model_path"], options.models_dir, options.scratch))

    def execute(self, study, run: Run, options, context: dict[str, Any]) -> dict[str, Any]:
        """Runs one configuration: ``command``, ``status`` (``ok`` or ``failed``) and ``metrics`` (or
        ``returncode`` and ``log_tail``)."""
        command = self.command(study, run, context["model_path"], options.models_dir, options.scratch)
        output_dir = Path(command[command.index("--output_dir") + 1])
        output_dir.mkdir(parents=True, exist_ok=True)
        log_path = output_dir.parent / f"{output_dir.name}.log"
        env = os.environ | {
            "OMP_NUM_THREADS": str(options.threads),
            "MKL_NUM_THREADS": str(options.threads),
            "TOKENIZERS_PARALLELISM": "false",
        }
        with open(log_path, "w", encoding="utf-8") as log:
            completed = subprocess.run(
                [sys.executable, *command[1:]],
                cwd=bench_utils.REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        outcome: dict[str, Any] = {"command": recorded_command(command)}
        results_file = output_dir / "all_results.json"
        if completed.returncode == 0 and results_file.is_file():
            return outcome | {"status": "ok", "metrics": json.loads(results_file.read_text(encoding="utf-8"))}
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        return outcome | {"status": "failed", "returncode": completed.returncode, "log_tail": tail}


def recorded_command(command: list[str]) -> str:
    """A run's command as its record keeps it: one line, with paths relative to the repository and the data folder
    as ``../shared/data``."""
    return (
        shlex.join(command)
        .replace(str(bench_utils.REPO_ROOT) + "/", "")
        .replace(str(bench_utils.DATA_DIR), "../shared/data")
    )
