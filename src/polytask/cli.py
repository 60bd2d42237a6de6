"""``polytask`` command line: a thin layer over the library functions."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polytask.errors import PolytaskError, check_choice

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train one Transformer encoder on many NLP tasks; evaluate, predict and serve them together.")
# wide enough for a results table when the output is a file or a pipe (rich would use 80 columns there)
console = Console(width=None if sys.stdout.isatty() else 160)
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
    from polytask.tables import results_table
    from polytask.train import train as run_training

    _setup_logging()
    try:
        cfg = load_config(config, overrides or [])
        result = run_training(cfg, resume=resume, show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    if not _main_process():  # under torchrun / accelerate launch, one process prints
        return
    for split in ("validation", "test"):
        res = getattr(result, split)
        if res:
            console.print(results_table(res, f"{split} results (best checkpoint)"))
            _print_calibration(res, f"{split} calibration (best checkpoint)")
    console.print(f"trained {result.steps} steps in {result.seconds:.1f}s; best model: {result.best_dir}")


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
    from polytask.tables import results_table

    _setup_logging()
    try:
        result = run_add_task(checkpoint, config, overrides or [], tune_encoder,
                              show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    if not _main_process():
        return
    for split in ("validation", "test"):
        res = getattr(result, split)
        if res:
            console.print(results_table(res, f"{split} results of the new task(s)"))
    console.print(f"trained {result.steps} steps in {result.seconds:.1f}s; model with every task: {result.best_dir}")


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
    from polytask.tables import results_table
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
    for split in ("validation", "test"):
        res = getattr(result, split)
        if res:
            console.print(results_table(res, f"{split} results of the distilled model"))
    console.print(f"trained {result.steps} steps in {result.seconds:.1f}s; student: {result.best_dir}")


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


def _print_calibration(result: dict, title: str) -> None:
    from polytask.tables import calibration_table

    table = calibration_table(result, title)
    if table is not None:
        console.print(table)


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


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder")],
    texts: Annotated[Optional[list[str]], typer.Argument(help="texts to run every task on")] = None,
    pair: Annotated[Optional[str], typer.Option(help="second text, for pair tasks (with one TEXT)")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="comma-separated task names (default: all)")] = None,
    input_file: Annotated[Optional[Path], typer.Option(
        "--input", help="file of texts (.txt: one per line, .jsonl, .csv with a header) instead of TEXTs")] = None,
    output: Annotated[Optional[Path], typer.Option(help="JSON-lines file to write (with --input)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="texts per encoder pass")] = 32,
    text_field: Annotated[str, typer.Option(help="jsonl key / csv column holding the text")] = "text",
    pair_field: Annotated[str, typer.Option(help="jsonl key / csv column of the second text (pair tasks)")
                          ] = "text_pair",
    backend: Annotated[str, typer.Option(help="torch, or onnx (runs CHECKPOINT/model.onnx from `export`)")
                       ] = "torch",
    precision: Annotated[str, typer.Option(help="fp32 or bf16 (bf16 autocast; torch backend only)")] = "fp32",
    num_beams: Annotated[Optional[int], typer.Option(min=1, max=16, help="seq2seq tasks: beams (1: greedy; "
                                                                         "default: the task's own)")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, max=1024, help="seq2seq tasks: longest generated "
                                                          "text in tokens (default: the task's own)")] = None,
) -> None:
    """Run every task in one encoder pass per batch: on TEXTs (prints one JSON object each) or on every row of
    --input (streamed in chunks; writes one JSON line per row to --output). Seq2seq tasks answer {"text": ...}."""
    from polytask.inference import Pipeline

    if input_file is not None and texts:
        _fail(ValueError("give TEXTs or --input, not both"))
    if input_file is None and output is not None:
        _fail(ValueError("--output needs --input (a file of texts)"))
    if input_file is not None and output is None:
        _fail(ValueError("--input needs --output (the JSON-lines file to write)"))
    if input_file is None and not texts:
        _fail(ValueError("give at least one TEXT, or --input FILE --output FILE"))
    texts = texts or []  # without --input, at least one (checked above)
    try:
        check_choice("--precision", precision, ("fp32", "bf16"), "precision")
        check_choice("--backend", backend, ("torch", "onnx"), "backend")
    except PolytaskError as exc:
        _fail(exc)
    if backend == "onnx" and precision != "fp32":
        _fail(ValueError("--precision bf16 applies to the torch backend only (the ONNX graph runs in fp32)"))
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        pipe = Pipeline.from_pretrained(checkpoint, batch_size=batch_size, precision=precision, backend=backend)
        with pipe.generating({"num_beams": num_beams, "max_new_tokens": max_new_tokens}):
            if input_file is not None:
                from polytask.batch_predict import predict_file

                result = predict_file(pipe, input_file, output, tasks=task_list,  # type: ignore[arg-type]
                                      text_field=text_field, pair_field=pair_field)
            else:
                inputs = [(texts[0], pair)] if pair is not None else list(texts)
                outputs = pipe(inputs, tasks=task_list)
    except (PolytaskError, KeyError, ValueError, OSError) as exc:
        _fail(exc)
    if input_file is not None:
        console.print(f"wrote {result.rows} prediction(s) to {result.output} in {result.seconds:.1f}s "
                      f"({result.texts_per_second:.1f} texts/s)")
        return
    for text, out in zip(texts, outputs):
        console.print_json(json.dumps({"text": text, **out}, ensure_ascii=False))


@app.command()
def serve(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder")],
    host: Annotated[str, typer.Option(help="address to bind (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, help="most texts in one request")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="most characters in one text")] = 5000,
    wait_ms: Annotated[float, typer.Option(min=0, help="micro-batching window for concurrent requests")] = 5.0,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="larger request bodies get 413, before they are read")
                              ] = 4 * 1024 * 1024,
    timeout_s: Annotated[float, typer.Option(min=0, help="a request not answered by then gets 504 (0: no limit)")
                         ] = 30.0,
    max_queue: Annotated[int, typer.Option(min=0, help="requests waiting for the model beyond this get 503 "
                                                       "(0: no limit)")] = 1024,
    graceful_s: Annotated[float, typer.Option(min=0, help="on SIGTERM/Ctrl-C: how long requests in flight may "
                                                          "take to finish")] = 30.0,
    max_beams: Annotated[int, typer.Option(min=1, max=16, help="seq2seq tasks: most beams a request may ask for")
                         ] = 4,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=1024, help="seq2seq tasks: most generated tokens a "
                                                                      "request may ask for")] = 256,
) -> None:
    """Serve every task over HTTP: a page to try the model at /, GET /health, GET /tasks, GET /info, POST /predict,
    docs at /docs."""
    from polytask.serve.app import serve as run_server

    try:
        run_server(str(checkpoint), host=host, port=port, max_batch=max_batch, max_chars=max_chars, wait_ms=wait_ms,
                   max_body_bytes=max_body_bytes, timeout_s=timeout_s or None, max_queue=max_queue or None,
                   graceful_s=graceful_s, max_beams=max_beams, max_new_tokens=max_new_tokens)
    except PolytaskError as exc:
        _fail(exc)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder")],
    format: Annotated[str, typer.Option("--format", help="onnx: every head in one graph; hf: ONE task as a "
                                                         "folder the stock transformers Auto class loads")] = "onnx",
    task: Annotated[Optional[str], typer.Option(help="hf: the task to export")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "--out", help="onnx: the file (default CHECKPOINT/model.onnx); hf: the folder (default "
                                  "CHECKPOINT-hf-TASK beside the checkpoint)")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="onnx: int8 also writes a dynamically quantised graph")
                        ] = None,
    split: Annotated[str, typer.Option(help="onnx: split to measure the int8 accuracy change on")] = "validation",
) -> None:
    """onnx: the encoder and every head as ONE graph, checked against PyTorch (max abs diff). hf: one task as a
    stock AutoModelForSequenceClassification / ForTokenClassification / ForQuestionAnswering folder, checked
    against polytask; heads a stock class cannot reproduce are refused with the reason."""
    try:
        check_choice("--format", format, ("onnx", "hf"), "export format")
        if format == "hf":
            from polytask.hf_export import run_hf_export

            if quantize is not None:
                raise PolytaskError("--quantize applies to --format onnx only")
            done = run_hf_export(checkpoint, task, output)
            console.print(f"wrote {done.path}: task {task!r} as {done.auto_class}; largest relative difference "
                          f"from polytask on sample texts {done.max_difference:.1e}", highlight=False)
            for note in done.notes:
                console.print(f"note: {note}", highlight=False, markup=False)
            return
        if task is not None:
            raise PolytaskError("--task applies to --format hf (the ONNX graph holds every task)")
        from polytask.export_cli import run_export

        run_export(checkpoint, output, quantize, split, console)
    except PolytaskError as exc:
        _fail(exc)


@app.command()
def push(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder (e.g. runs/x/best)")],
    repo_id: Annotated[str, typer.Argument(help="Hub repository, OWNER/NAME (created if missing)")],
    private: Annotated[bool, typer.Option("--private", help="create the repository private")] = False,
    revision: Annotated[Optional[str], typer.Option(help="branch to commit to (created if missing; default main)")
                        ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the files that would go up; no network")] = False,
) -> None:
    """Upload a checkpoint to the Hugging Face Hub in one commit, with its model card (README.md); the training
    state of a last/ folder stays behind. Needs a token (`hf auth login` or HF_TOKEN)."""
    from polytask.hub import plan_push, push as run_push

    try:
        plan = plan_push(checkpoint, repo_id)
        if not dry_run:
            url = run_push(checkpoint, repo_id, private=private, revision=revision)
    except PolytaskError as exc:
        _fail(exc)
    card = "" if plan.card is None else " (README.md: the model card, written for this repository)"
    console.print(f"{'would upload' if dry_run else 'uploaded'} {len(plan.names)} files to {repo_id}{card}:",
                  highlight=False)
    for name in plan.names:
        console.print(f"  {name}", highlight=False, markup=False)
    if not dry_run:
        console.print(f"done: {url}", highlight=False)


@app.command()
def baseline(
    config: Annotated[Path, typer.Argument(help="the multi-task run config YAML")],
    overrides: Overrides = None,
    seeds: Annotated[Optional[str], typer.Option(help="seeds, e.g. 1,2,3 or 1-3 (default: train.seed)")] = None,
    budget: Annotated[str, typer.Option(help="passes: as many passes over its own data as the multi-task run; "
                                             "steps: as many optimizer steps")] = "passes",
    force: Annotated[bool, typer.Option("--force", help="retrain runs that are there already")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bars")] = False,
) -> None:
    """Train every task ALONE with the same settings and budget, and the multi-task model, on each seed; writes
    OUTPUT_DIR/compare/ (summary.json, multi/seed-N, single/TASK/seed-N) and prints the comparison."""
    from polytask.baseline import BUDGETS, parse_seeds, run_baseline
    from polytask.compare import comparison, comparison_tables
    from polytask.config import load_config

    _setup_logging()
    try:
        check_choice("--budget", budget, BUDGETS, "budget")
        seed_list = parse_seeds(seeds)
        cfg = load_config(config, overrides or [])
        summary = run_baseline(cfg, seed_list, budget, force, show_progress=False if no_progress else None)
        tables = comparison_tables(comparison(summary, "test"))
    except PolytaskError as exc:
        _fail(exc)
    for table in tables:
        console.print(table)
    console.print(f"wrote {Path(cfg.train.output_dir) / 'compare' / 'summary.json'}")


@app.command()
def finetune(
    checkpoint: Annotated[Path, typer.Argument(help="a joint model (runs/x/best), or a `polytask baseline` run dir "
                                                    "(every seed's joint model)")],
    tasks: Annotated[Optional[str], typer.Option(help="comma-separated tasks (default: all)")] = None,
    scope: Annotated[str, typer.Option(help="heads: encoder frozen, one combined model; full: one model per task")
                     ] = "heads",
    epochs: Annotated[Optional[float], typer.Option(help="epochs of each task's run (default: the joint run's)")
                      ] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate (default: the joint run's)")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="default: next to the checkpoint, finetuned-SCOPE")
                          ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bars")] = False,
) -> None:
    """Per-task fine-tuning after joint training: each task's own short run from the joint model; prints joint vs
    fine-tuned per task and what each task stores."""
    from polytask.recipes.finetune import SCOPES, finetune as run_finetune

    if scope not in SCOPES:
        _fail(ValueError(f"unknown --scope {scope!r}; available: {', '.join(SCOPES)}"))
    _setup_logging()
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        summary = run_finetune(checkpoint, names, scope, output_dir, epochs, lr,
                               show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    for seed, one in (summary.get("seeds") or {"": summary}).items():
        table = Table(title=f"per-task fine-tuning ({scope}){f' seed {seed}' if seed else ''}: {one['checkpoint']}")
        for col in ("task", "split", "metric", "joint", "fine-tuned", "stored per task"):
            table.add_column(col, justify="left" if col in ("task", "split", "metric") else "right")
        for name, entry in one["tasks"].items():
            metric = next((k for k in entry["finetuned"] if k not in ("split", "examples")), "")
            table.add_row(name, entry["finetuned"].get("split", ""), metric,
                          f"{entry['joint'].get(metric, float('nan')):.4f}",
                          f"{entry['finetuned'].get(metric, float('nan')):.4f}", f"{entry['stored_bytes']:,} B")
        console.print(table)
        if one.get("combined"):
            console.print(f"one model with every fine-tuned head: {one['combined']}")


@app.command()
def affinity(
    run_dir: Annotated[Path, typer.Argument(help="a run's output_dir (trained with train.affinity_every)")],
    max_groups: Annotated[int, typer.Option(min=1, help="suggest partitions into 1..N groups")] = 3,
) -> None:
    """The inter-task affinity a run measured (TAG): the matrix averaged over training, a heatmap PNG
    (RUN_DIR/report/affinity.png) and the best task groupings for 1..N groups."""
    import math

    from polytask.recipes.affinity import heatmap, read_affinity, suggest_groups

    try:
        found = read_affinity(run_dir)
    except PolytaskError as exc:
        _fail(exc)
    tasks, matrix = found["tasks"], found["matrix"]
    table = Table(title=f"affinity Z[i→j] = 1 − L'_j / L_j (row i: the task stepped on; column j: the task whose "
                        f"loss is read), mean of {found['measurements']} measurements ({found['seconds']} s)")
    table.add_column("i \\ j")
    for t in tasks:
        table.add_column(t, justify="right")
    for t, row in zip(tasks, matrix):
        table.add_row(t, *["-" if math.isnan(v) else f"{v:+.4f}" for v in row])
    console.print(table)
    groups = Table(title="suggested groupings (TAG score: Σ over tasks of the mean affinity onto it from its group)")
    for col in ("groups", "partition", "score"):
        groups.add_column(col)
    for s in suggest_groups(tasks, matrix, max_groups):
        groups.add_row(str(s["groups"]), " | ".join("+".join(g) for g in s["partition"]), f"{s['score']:.4f}")
    console.print(groups)
    try:
        console.print(f"wrote {heatmap(tasks, matrix, run_dir / 'report' / 'affinity.png')}")
    except ImportError:
        console.print("note: matplotlib is not installed (pip install 'polytask[plots]'): no heatmap")


@app.command()
def compare(
    run_dir: Annotated[Path, typer.Argument(help="the config's train.output_dir (holds compare/summary.json)")],
    split: Annotated[str, typer.Option(help="test (a task without test falls back to validation) or validation")
                     ] = "test",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the comparison as JSON here")] = None,
) -> None:
    """Multi-task vs single-task per task (from `polytask baseline`): primary metric, difference, time, size."""
    from polytask.compare import comparison, comparison_tables, load_summary

    try:
        check_choice("--split", split, ("test", "validation"), "split")
        comp = comparison(load_summary(run_dir), split)
    except PolytaskError as exc:
        _fail(exc)
    for table in comparison_tables(comp):
        console.print(table)
    if json_out:
        json_out.write_text(json.dumps(comp, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run's output_dir (holds metrics.jsonl)")]) -> None:
    """PNG plots (loss, validation metric, sampling, loss weights) and summary.md, written into RUN_DIR/report/."""
    from polytask.report import write_report

    try:
        result = write_report(run_dir)
    except PolytaskError as exc:
        _fail(exc)
    for path in result.files:
        console.print(f"wrote {path}")
    for note in result.notes:
        console.print(f"note: {note}")


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


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
