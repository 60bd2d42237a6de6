"""Calibration of trained checkpoints: per task (and per head) the expected calibration error (ECE, 15 equal-width
confidence bins; see ``polytask.calibration`` for what an entry is per head kind) before temperature scaling
(T = 1) and after it, on validation (where T was fitted) and on test (held out from the fit).

    .venv/bin/python benchmarks/calibration.py runs/demo/best runs/mixed/best     # checkpoints of `polytask train`
    .venv/bin/python benchmarks/calibration.py OLD_CKPT --fit                     # fit T here first (not written)
    .venv/bin/python benchmarks/calibration.py --smoke                            # tiny random BERT, toy data

Checkpoints trained by this version carry the temperatures `polytask train` fitted on validation; ``--fit`` refits
them in memory first (the checkpoint is not changed; `polytask calibrate` writes them). Writes JSON (default
benchmarks/results/calibration.json; with --smoke a temporary file unless --json-out is given).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command, describe, machine  # noqa: E402

SPLITS = ("validation", "test")


def smoke_checkpoints(out: Path) -> list[Path]:
    """Two tiny runs of a few steps: the toy intent/slots/sentiment/similarity/topics config (softmax, token and
    multi-label heads), and joint entity + relation extraction (a task with two calibrated heads)."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import (ARTISTS, BAD, CITIES, FILLER, GOOD, make_pairs_tsv, make_sentiment_csv, make_snips_like,
                          make_topics_jsonl, toy_config)
    from toydata import ORGS, make_spert

    from polytask.config import validate_config
    from polytask.testing import tiny_bert
    from polytask.train import train

    encoder = tiny_bert(out / "tiny-bert", CITIES + ARTISTS + GOOD + BAD + FILLER + ORGS + ["lives", "works", "for"])
    data = out / "data"
    for split, n, seed in (("train", 96, 1), ("dev", 48, 2), ("test", 48, 3)):
        make_snips_like(data / "snips" / split, n, seed)
        make_sentiment_csv(data / f"sentiment_{split}.csv", n, seed)
        make_pairs_tsv(data / f"pairs_{split}.tsv", n, seed)
        make_topics_jsonl(data / f"topics_{split}.jsonl", n, seed)
        make_spert(data / f"spert_{split}.json", n // 2, seed)
    mixed = toy_config(data, encoder, out / "mixed", max_steps=6)
    joint = {"encoder": {"name": encoder, "max_length": 32},
             "datasets": {"conll": {"format": "spert", "text": "tokens", "train": str(data / "spert_train.json"),
                                    "validation": str(data / "spert_dev.json"),
                                    "test": str(data / "spert_test.json")}},
             "tasks": {"joint": {"type": "relation_extraction", "dataset": "conll"}},
             "train": {"output_dir": str(out / "joint"), "lr": 3e-3, "batch_size": 8, "max_steps": 6,
                       "progress_bar": False}}
    return [train(validate_config(raw)).best_dir for raw in (mixed, joint)]


def measure(checkpoint: Path, fit: bool, batch_size: int) -> dict[str, Any]:
    """{"checkpoint", "fitted_here", "splits": {split: [calibration row per head]}} (``tables.calibration_rows``,
    plus the examples each task was scored on)."""
    from polytask.data.loading import load_data
    from polytask.evaluate import evaluate, fit_calibration, load_checkpoint_data
    from polytask.tables import calibration_rows

    model, cfg, data = load_checkpoint_data(checkpoint, "validation")
    if fit:
        fit_calibration(model, data, "validation", batch_size, cfg.train.precision)
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "fitted_here": fit, "splits": {}}
    for split in SPLITS:
        if split != "validation":
            data = load_data(cfg, model.tokenizer, splits=(split,), tasks=model.tasks)
        if not data.splits.get(split):
            continue
        result = evaluate(model, data, split, batch_size, cfg.train.precision, calibration=True)
        rows = calibration_rows(result)
        for row in rows:
            row["examples"] = result["tasks"][row["task"]].get("examples")
        out["splits"][split] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", type=Path, help="checkpoint folders (e.g. runs/x/best)")
    parser.add_argument("--fit", action="store_true", help="fit the temperatures on validation here (in memory)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json-out", default=None, help="default: benchmarks/results/calibration.json")
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT on toy data (checks the script runs)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    if args.smoke == bool(args.checkpoints):
        parser.error("give checkpoint folders, or --smoke")
    scratch = Path(tempfile.mkdtemp(prefix="calibration-smoke-")) if args.smoke else None
    checkpoints = smoke_checkpoints(scratch) if scratch else args.checkpoints
    m = machine()
    results = [measure(Path(c), args.fit, args.batch_size) for c in checkpoints]
    table = Table(title=f"ECE before (T=1) and after temperature scaling, 15 bins; {describe(m)}")
    for col in ("checkpoint", "task", "head", "T", "split", "examples", "ECE (T=1)", "ECE (T)"):
        table.add_column(col, justify="left" if col in ("checkpoint", "task", "head", "split") else "right")
    for res in results:
        for split, rows in res["splits"].items():
            for row in rows:
                if row["temperature"] is None:  # a min_score row of a task without a calibrated head
                    continue
                table.add_row(Path(res["checkpoint"]).parent.name, row["task"], row["head"],
                              f"{row['temperature']:.3f}", split, str(row["examples"]),
                              f"{row['ece_uncalibrated']:.4f}", f"{row['ece']:.4f}")
    Console(width=160).print(table)
    default = (scratch / "calibration.json") if scratch else REPO / "benchmarks/results/calibration.json"
    path = Path(args.json_out or default)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": command(), "machine": m, "smoke": args.smoke, "results": results},
                               indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
