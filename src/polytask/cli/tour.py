"""``polytask`` commands to get to know polytask: demo (a real multi-task run in minutes) and list (every
registered plugin and where it comes from)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from polytask.cli.common import _fail, _setup_logging, app, console
from polytask.errors import PolytaskError


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option(help="where the data, demo.yaml and the checkpoints go")] = Path(
        "runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="a few rows and steps (a smoke test; scores mean nothing)")
                     ] = False,
    encoder: Annotated[str, typer.Option(help="encoder: 'minilm' (packaged), a local folder or a hub id")] = "minilm",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bar")] = False,
) -> None:
    """Train one MiniLM on tweet sentiment, BBC news topics (real data from PyPI packages) and intents + slots of a
    hand-written assistant set, ~5 min on 2 CPU cores; print test scores and example predictions. See docs/demo.md."""
    from polytask.demo import run_demo

    _setup_logging()
    try:
        run_demo(output_dir, quick=quick, encoder=encoder, console=console,
                 show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)


@app.command("list")
def list_plugins() -> None:
    """List the registered task types, input specs, samplers, loss weightings, gradient methods, data formats,
    experiment trackers and sharing designs, with where each comes from (built-in, or the plugin module that registered it)."""
    from polytask.data import input_specs  # noqa: F401  (registers the built-in input specs)
    from polytask.data.inputs import INPUTS
    from polytask.data.readers import READERS
    from polytask.gradients import GRADIENT_METHODS
    from polytask.plugins import origin
    from polytask.sampling import SAMPLERS
    from polytask.sharing import SHARING
    from polytask.tasks import TASKS
    from polytask.trackers import TRACKERS
    from polytask.weighting import WEIGHTINGS

    for title, registry in (("task types", TASKS), ("input specs", INPUTS), ("samplers", SAMPLERS),
                            ("loss weightings", WEIGHTINGS), ("gradient methods", GRADIENT_METHODS),
                            ("data formats", READERS), ("experiment trackers (train.report_to)", TRACKERS),
                            ("sharing designs (encoder.sharing)", SHARING)):
        table = Table(title=title)
        table.add_column("name")
        table.add_column("description")
        table.add_column("from")
        for name, item in registry.items():
            doc = " ".join((getattr(item, "__doc__", None) or "").strip().split("\n\n")[0].split())
            # the first paragraph; docstrings may hold "[E1]": not rich markup
            table.add_row(name, escape(doc), escape(origin(item)))
        console.print(table)
