"""``polytask`` commands that run and ship a trained model: predict, serve, export, push."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from polytask.cli.common import _fail, app, console
from polytask.errors import PolytaskError, check_choice


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
