"""The shared core of the ``polytask`` command line: the Typer app, its consoles, the ``--code`` option and the
helpers every command uses (errors as exit code 2, logging, the calibration table)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from polytask.errors import PolytaskError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train one Transformer encoder on many NLP tasks; evaluate, predict and serve them together.")
# wide enough for a results table when the output is a file or a pipe (rich would use 80 columns there); soft_wrap so
# that a message line naming a long path is never broken mid-path by a hard newline (tables still fit the width)
console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=True)
err_console = Console(stderr=True)

Overrides = Annotated[Optional[list[str]], typer.Argument(help="dotted overrides, e.g. train.lr=3e-5 train.epochs=1")]


def _fail(exc: Exception) -> None:
    # escaped: messages quote user values such as "[E1]" or "['a', 1]", which rich would read as markup
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2)


def _main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "accelerate", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.callback()
def _global_options(
    code: Annotated[Optional[list[str]], typer.Option(
        "--code", metavar="FILE.py|MODULE",
        help="import this Python file or module first, so the task types, samplers, weightings, gradient methods, "
             "data formats, input specs or trackers it registers can be used (in configs and in the checkpoints "
             "loaded); repeatable; give it before the command: polytask --code my_plugins.py train CONFIG. "
             "Installed packages with a 'polytask.plugins' entry point are loaded always")] = None,
) -> None:
    """Train one Transformer encoder on many NLP tasks; evaluate, predict and serve them together."""
    from polytask.plugins import load_plugins

    try:
        load_plugins(code)
    except PolytaskError as exc:
        _fail(exc)


def _print_calibration(result: dict, title: str) -> None:
    from polytask.tables import calibration_table

    table = calibration_table(result, title)
    if table is not None:
        console.print(table)


def _print_run(result: Any, title: str, model: str, calibration: bool = False) -> None:
    """A finished training run: its validation and test tables (``title`` after the split name), calibration
    tables if asked, and a line with the steps, seconds and where ``model`` was written."""
    from polytask.tables import results_table

    for split in ("validation", "test"):
        res = getattr(result, split)
        if res:
            console.print(results_table(res, f"{split} {title}"))
            if calibration:
                _print_calibration(res, f"{split} calibration (best checkpoint)")
    console.print(f"trained {result.steps} steps in {result.seconds:.1f}s; {model}: {result.best_dir}")


def main() -> None:  # pragma: no cover - entry point
    app()

