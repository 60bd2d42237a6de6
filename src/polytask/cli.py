"""``polytask`` command line: a thin layer over the library functions."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from polytask.errors import PolytaskError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train one Transformer encoder on many NLP tasks; evaluate, predict and serve them together.")
# wide enough for a results table when the output is a file or a pipe (rich would use 80 columns there)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

Overrides = Annotated[Optional[list[str]], typer.Argument(help="dotted overrides, e.g. train.lr=3e-5 train.epochs=1")]


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "accelerate", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="run config YAML")], overrides: Overrides = None) -> None:
    """Check a config (keys, values, plugin names, files) and report every problem at once; loads no weights."""
    from polytask.config import load_config

    try:
        cfg = load_config(config, overrides or [])
    except PolytaskError as exc:
        _fail(exc)
    sources = cfg.sources_of()
    console.print(f"[green]OK[/] {config}: {len(cfg.tasks)} task(s) from {len(sources)} dataset(s), "
                  f"encoder {cfg.encoder.name!r}, sampler {cfg.sampler.name!r}, weighting {cfg.weighting.name!r}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="run config YAML")],
    overrides: Overrides = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue from a 'last' checkpoint folder")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bar")] = False,
) -> None:
    """Train every task of CONFIG jointly; writes OUTPUT_DIR/best (model) and OUTPUT_DIR/last (resumable)."""
    from polytask.config import load_config
    from polytask.tables import results_table
    from polytask.train import train as run_training

    _setup_logging()
    try:
        cfg = load_config(config, overrides or [])
        result = run_training(cfg, resume=resume, show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    for split in ("validation", "test"):
        res = getattr(result, split)
        if res:
            console.print(results_table(res, f"{split} results (best checkpoint)"))
    console.print(f"trained {result.steps} steps in {result.seconds:.1f}s; best model: {result.best_dir}")


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder (e.g. runs/x/best)")],
    split: Annotated[str, typer.Option(help="train, validation or test")] = "test",
    config: Annotated[Optional[Path], typer.Option(help="data config to use instead of the checkpoint's")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the results as JSON here")] = None,
    batch_size: Annotated[int, typer.Option(help="evaluation batch size")] = 128,
    precision: Annotated[Optional[str], typer.Option(help="fp32 or bf16 (default: the training precision)")] = None,
) -> None:
    """Per-task metrics of a checkpoint on a split of the data it was trained with (or of --config's data)."""
    from polytask.evaluate import evaluate_checkpoint
    from polytask.tables import results_table

    _setup_logging()
    try:
        result = evaluate_checkpoint(checkpoint, split, config, batch_size, precision)
    except PolytaskError as exc:
        _fail(exc)
    console.print(results_table(result, f"{checkpoint} on {split}"))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder")],
    texts: Annotated[Optional[list[str]], typer.Argument(help="texts to run every task on")] = None,
    pair: Annotated[Optional[str], typer.Option(help="second text, for pair tasks (with one TEXT)")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="comma-separated task names (default: all)")] = None,
) -> None:
    """Run every task on the given texts in one encoder pass; prints one JSON object per text."""
    from polytask.inference import Pipeline

    if not texts:
        _fail(ValueError("give at least one TEXT"))
    try:
        pipe = Pipeline.from_pretrained(checkpoint)
        inputs = [(texts[0], pair)] if pair is not None else list(texts)  # type: ignore[index]
        outputs = pipe(inputs, tasks=tasks.split(",") if tasks else None)
    except (PolytaskError, KeyError, ValueError) as exc:
        _fail(exc)
    for text, out in zip(texts, outputs):  # type: ignore[arg-type]
        console.print_json(json.dumps({"text": text, **out}, ensure_ascii=False))


@app.command()
def serve(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder")],
    host: Annotated[str, typer.Option(help="address to bind (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_batch: Annotated[int, typer.Option(help="most texts in one request")] = 64,
    max_chars: Annotated[int, typer.Option(help="most characters in one text")] = 5000,
    wait_ms: Annotated[float, typer.Option(help="micro-batching window for concurrent requests")] = 5.0,
) -> None:
    """Serve every task over HTTP: GET /health, GET /tasks, POST /predict, docs at /docs."""
    from polytask.serve.app import serve as run_server

    try:
        run_server(str(checkpoint), host=host, port=port, max_batch=max_batch, max_chars=max_chars, wait_ms=wait_ms)
    except PolytaskError as exc:
        _fail(exc)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder")],
    format: Annotated[str, typer.Option("--format", help="export format (onnx)")] = "onnx",
    output: Annotated[Optional[Path], typer.Option(help="file to write (default: CHECKPOINT/model.onnx)")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="int8: also write a dynamically quantised graph")] = None,
    split: Annotated[str, typer.Option(help="split to measure the int8 accuracy change on")] = "validation",
) -> None:
    """Export the encoder and every head as ONE graph; checks it against PyTorch (max abs diff)."""
    from polytask.export_cli import run_export

    if format != "onnx":
        _fail(ValueError(f"unknown format {format!r}; available: onnx"))
    if quantize not in (None, "int8"):
        _fail(ValueError(f"unknown quantization {quantize!r}; available: int8"))
    try:
        run_export(checkpoint, output, quantize, split, console)
    except PolytaskError as exc:
        _fail(exc)


@app.command("list")
def list_plugins() -> None:
    """List the registered task types, samplers, loss weightings and data formats."""
    from polytask.data.readers import READERS
    from polytask.sampling import SAMPLERS
    from polytask.tasks import TASKS
    from polytask.weighting import WEIGHTINGS

    for title, registry in (("task types", TASKS), ("samplers", SAMPLERS), ("weightings", WEIGHTINGS),
                            ("data formats", READERS)):
        table = Table(title=title)
        table.add_column("name")
        table.add_column("description")
        for name, item in registry.items():
            doc = (getattr(item, "__doc__", None) or "").strip().splitlines()
            table.add_row(name, doc[0] if doc else "")
        console.print(table)


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
