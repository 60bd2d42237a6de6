"""``polytask`` commands that train a model and measure it: validate, train, add-task, distill, evaluate,
calibrate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from polytask.cli.common import (Overrides, _fail, _main_process, _print_calibration, _print_run, _setup_logging, app,
                                 console)
from polytask.errors import PolytaskError, check_choice


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="run config YAML")],
    overrides: Overrides = None,
    no_data: Annotated[bool, typer.Option("--no-data", help="check the config only, do not read the data")] = False,
) -> None:
    """Check a config (keys, values, plugin names, files, encoder folder) and then read every split of the data
    (columns, inputs, labels, tags); reports every problem at once. Loads no weights and no tokenizer."""
    from polytask.config import load_config
    from polytask.data.check import check_data
    from polytask.errors import DataCheckError

    _setup_logging()
    try:
        cfg = load_config(config, overrides or [])
        report = None if no_data else check_data(cfg)
        if report is not None and report.problems:
            raise DataCheckError(str(config), report.problems)
    except PolytaskError as exc:
        _fail(exc)
    sources = cfg.sources_of()
    console.print(f"[green]OK[/] {config}: {len(cfg.tasks)} task(s) from {len(sources)} dataset(s), "
                  f"encoder {cfg.encoder.name!r}, sampler {cfg.sampler.name!r}, weighting {cfg.weighting.name!r}",
                  highlight=False)
    if report is not None:
        for source, splits in report.rows.items():
            console.print(f"  {source}: " + ", ".join(f"{split} {n} rows" for split, n in splits.items()),
                          highlight=False)
        for note in report.notes:
            console.print(f"  note: {note}", highlight=False, markup=False)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="run config YAML")],
    overrides: Overrides = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue from a 'last' checkpoint folder")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bar")] = False,
) -> None:
    """Train every task of CONFIG jointly; writes OUTPUT_DIR/best (model), OUTPUT_DIR/last (resumable) and
    OUTPUT_DIR/metrics.jsonl, and logs to the experiment trackers of train.report_to (tensorboard, mlflow, ...)."""
    from polytask.config import load_config
    from polytask.train import train as run_training

    _setup_logging()
    try:
        cfg = load_config(config, overrides or [])
        result = run_training(cfg, resume=resume, show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    if not _main_process():  # under torchrun / accelerate launch, one process prints
        return
    _print_run(result, "results (best checkpoint)", "best model", calibration=True)


@app.command("add-task")
def add_task(
    checkpoint: Annotated[Path, typer.Argument(help="the trained model to add to (e.g. runs/x/best)")],
    config: Annotated[Path, typer.Argument(help="run config YAML declaring the new task(s) and their data")],
    overrides: Overrides = None,
    tune_encoder: Annotated[bool, typer.Option("--tune-encoder", help="also train the encoder (the checkpoint's "
                                                                      "other tasks then change)")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bar")] = False,
) -> None:
    """Add CONFIG's task(s) to CHECKPOINT: new heads trained on the (few-shot) data, the encoder and the other tasks
    frozen so their outputs stay the same; writes OUTPUT_DIR/best holding every task."""
    from polytask.recipes.add_task import add_task as run_add_task

    _setup_logging()
    try:
        result = run_add_task(checkpoint, config, overrides or [], tune_encoder,
                              show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    if not _main_process():
        return
    _print_run(result, "results of the new task(s)", "model with every task")


@app.command()
def distill(
    config: Annotated[Path, typer.Argument(help="the student's run config YAML (its tasks and data)")],
    teachers: Annotated[list[Path], typer.Option("--teachers", help="teacher checkpoint folders (repeat the option "
                                                                    "or give several); each labels its tasks")],
    overrides: Overrides = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bar")] = False,
) -> None:
    """Train CONFIG's tasks as one model on a mix of gold labels and the teachers' outputs, the teacher weight
    going from 1 to 0 over training (BAM! teacher annealing); the teachers label the training rows once."""
    from polytask.config import load_config
    from polytask.train import train as run_training

    _setup_logging()
    try:
        cfg = load_config(config, [*(overrides or []), "distillation.teachers=" + json.dumps([str(t) for t in
                                                                                            teachers])])
        result = run_training(cfg, show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    if not _main_process():
        return
    _print_run(result, "results of the distilled model", "student")


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
    _print_calibration(result, f"{checkpoint} on {split}: calibration")
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


@app.command()
def calibrate(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder (e.g. runs/x/best)")],
    split: Annotated[str, typer.Option(help="the split to fit on (labelled data of the checkpoint's config)")
                     ] = "validation",
    config: Annotated[Optional[Path], typer.Option(help="data config to use instead of the checkpoint's")] = None,
    coverage: Annotated[Optional[list[str]], typer.Option(
        help="TASK=SHARE: also set TASK's min_score to the highest score that still answers SHARE of the split's "
             "inputs (spans, relations), e.g. intent=0.99; repeatable")] = None,
    batch_size: Annotated[int, typer.Option(help="evaluation batch size")] = 128,
    precision: Annotated[str, typer.Option(help="fp32 (what predict and serve run) or bf16")] = "fp32",
) -> None:
    """Fit a temperature per head whose outputs are class probabilities (temperature scaling) on SPLIT, and
    optionally min_score per task; writes CHECKPOINT/config.json back atomically (weights untouched)."""
    from polytask.calibrate import calibrate_checkpoint, parse_coverage

    _setup_logging()
    try:
        check_choice("--precision", precision, ("fp32", "bf16"), "precision")
        result = calibrate_checkpoint(checkpoint, split, config, parse_coverage(coverage), batch_size, precision)
    except PolytaskError as exc:
        _fail(exc)
    _print_calibration(result, f"{checkpoint}: calibrated on {split}")
    if not result["tasks"]:
        console.print(f"no calibrated head has labelled {split} data: temperatures unchanged")
    else:
        console.print(f"wrote {checkpoint / 'config.json'}")
