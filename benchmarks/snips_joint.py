"""SNIPS joint intent + slots with the packaged all-MiniLM-L6-v2, against the JointBERT paper.

One source, two tasks, one encoder pass per batch. Reports intent accuracy, slot F1 (seqeval) and sentence accuracy
(intent and every slot right) on the 700-row test split, plus training time. The JointBERT figures (Chen et al. 2019,
BERT-base, 110M parameters, GPU) are quoted from the paper, not measured here.

    .venv/bin/python benchmarks/snips_joint.py                       # full train split (13,084 rows)
    .venv/bin/python benchmarks/snips_joint.py --rows 2000 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SNIPS = REPO.parent / "shared" / "data" / "snips"
PAPER = {"intent accuracy": 0.986, "slot F1": 0.970, "sentence accuracy": 0.928}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="first N training rows (default: all)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--head-lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/snips_joint.json"))
    args = parser.parse_args()
    if not SNIPS.is_dir():
        sys.exit(f"{SNIPS} is absent")
    from rich.console import Console
    from rich.table import Table

    from polytask.config import validate_config
    from polytask.train import train

    out = args.output_dir or tempfile.mkdtemp(prefix="snips-")
    cfg = validate_config({
        "encoder": {"name": "minilm", "max_length": 64},
        "datasets": {"snips": {"format": "jointbert", "train": str(SNIPS / "train"), "validation": str(SNIPS / "dev"),
                               "test": str(SNIPS / "test"), "text": "tokens",
                               "max_rows": {"train": args.rows} if args.rows else {}}},
        "tasks": {"intent": {"type": "classification", "dataset": "snips", "label": "intent"},
                  "slots": {"type": "token_classification", "dataset": "snips", "label": "tags"}},
        "train": {"output_dir": out, "lr": args.lr, "head_lr": args.head_lr, "batch_size": args.batch_size,
                  "epochs": args.epochs, "precision": args.precision, "warmup_ratio": 0.06, "seed": 1},
        "evaluation": {"every_steps": 200},
    })
    result = train(cfg)
    test = result.test
    measured = {"intent accuracy": test["tasks"]["intent"]["accuracy"], "slot F1": test["tasks"]["slots"]["f1"],
                "sentence accuracy": test["sources"]["snips"]["all_tasks_correct"]}
    table = Table(title=f"SNIPS test (700 rows): MiniLM-L6 (22.7M) trained on {args.rows or 13084} rows, "
                        f"{args.epochs:g} epochs, {args.precision}, {result.seconds:.0f} s on this CPU")
    for col in ("metric", "polytask MiniLM (measured)", "JointBERT paper, BERT-base (cited)"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, value in measured.items():
        table.add_row(key, f"{100 * value:.2f}", f"{100 * PAPER[key]:.1f}")
    Console().print(table)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"measured": measured, "paper": PAPER, "train_seconds": result.seconds,
                                               "steps": result.steps, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
