"""Relation classification (SemEval-2010 Task 8) and joint entity + relation extraction (CoNLL04) with the packaged
all-MiniLM-L6-v2, beside published references.

SemEval: the official train file less a seeded 10% validation slice (model selection), the full official test file
(2,717 sentences); the official score is macro-F1 over the nine relation types, direction taken into account, Other
left out. CoNLL04: the SpERT split (train 922 / dev 231 / test 288 sentences); strict micro F1 (a relation counts
when both entity spans and types and the relation type are right), as SpERT reports.

    .venv/bin/python benchmarks/relations.py                      # both, ~15-25 minutes on 2 CPU cores
    .venv/bin/python benchmarks/relations.py --only semeval --epochs-semeval 2
    .venv/bin/python benchmarks/relations.py --smoke              # tiny random BERT, toy data, seconds
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
from common import REPO, SHARED, command, describe, machine  # noqa: E402

REFERENCES = {
    "semeval": "R-BERT (BERT-large, 340M) 89.25; CNN (Zeng et al. 2014) 82.7 macro-F1 (cited from the papers)",
    "conll04": "SpERT (BERT-base, 110M): entity F1 88.94, relation F1 71.47 (micro, strict; cited from the paper)",
}


def configs(args: argparse.Namespace, out: Path) -> dict[str, dict[str, Any]]:
    semeval, conll = SHARED / "semeval2010_task8", SHARED / "conll04"
    encoder = "minilm"
    if args.smoke:
        sys.path.insert(0, str(REPO / "tests"))
        from toydata import make_semeval, make_spert

        from polytask.testing import tiny_bert

        semeval = conll = out / "toy"
        semeval.mkdir(parents=True, exist_ok=True)
        make_semeval(semeval / "TRAIN_FILE.TXT", 80, 1)
        make_semeval(semeval / "TEST_FILE_FULL.TXT", 20, 2, start_id=9000)
        for split, n, seed in (("train", 40, 1), ("dev", 10, 2), ("test", 10, 3)):
            make_spert(conll / f"conll04_{split}.json", n, seed)
        encoder = tiny_bert(out / "tiny-bert", ["the", "in", "and", "makes", "lives", "works", "for"])
    common = {"batch_size": args.batch_size, "precision": args.precision, "seed": args.seed,
              "progress_bar": not args.smoke, "warmup_ratio": 0.1}
    return {
        "semeval": {
            "encoder": {"name": encoder, "max_length": 128},
            "datasets": {"semeval": {"format": "semeval", "train": str(semeval / "TRAIN_FILE.TXT"),
                                     "test": str(semeval / "TEST_FILE_FULL.TXT"), "validation_fraction": 0.1}},
            "tasks": {"relation": {"type": "relation_classification", "dataset": "semeval"}},
            "train": {"output_dir": str(out / "semeval"), "lr": args.lr, "head_lr": args.head_lr,
                      "epochs": args.epochs_semeval, **common},
        },
        "conll04": {
            "encoder": {"name": encoder, "max_length": 128},
            "datasets": {"conll04": {"format": "spert", "text": "tokens",
                                     "train": str(conll / "conll04_train.json"),
                                     "validation": str(conll / "conll04_dev.json"),
                                     "test": str(conll / "conll04_test.json")}},
            "tasks": {"joint": {"type": "relation_extraction", "dataset": "conll04"}},
            "train": {"output_dir": str(out / "conll04"), "lr": args.lr, "head_lr": args.head_lr,
                      "epochs": args.epochs_conll04, **common},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["semeval", "conll04"], default=None)
    parser.add_argument("--epochs-semeval", type=float, default=3)
    parser.add_argument("--epochs-conll04", type=float, default=30)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--head-lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output-dir", default="runs/relations")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/relations.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT on toy data (checks the script runs)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from polytask.config import validate_config
    from polytask.train import train

    out = Path(tempfile.mkdtemp(prefix="relations-smoke-") if args.smoke else args.output_dir)
    if not args.smoke and not (SHARED / "semeval2010_task8").is_dir():
        sys.exit(f"{SHARED} is absent; use --smoke")
    m = machine()
    results: dict[str, Any] = {}
    table = Table(title=f"MiniLM-L6 (22.7M) relation benchmarks, {args.precision}, on {describe(m)}")
    for col in ("data set", "metric", "test", "train s", "reference"):
        table.add_column(col, justify="right" if col in ("test", "train s") else "left")
    for name, raw in configs(args, out).items():
        if args.only and name != args.only:
            continue
        result = train(validate_config(raw))
        metrics = result.test["tasks"]
        results[name] = {"test": metrics, "validation": result.validation["tasks"], "train_seconds": result.seconds,
                         "steps": result.steps, "config": raw}
        task = next(iter(metrics.values()))
        keys = ["macro_f1", "accuracy"] if name == "semeval" else ["entity_f1", "relation_f1"]
        for i, key in enumerate(keys):
            table.add_row(name if i == 0 else "", key, f"{100 * task[key]:.2f}",
                          f"{result.seconds:.0f}" if i == 0 else "", REFERENCES[name] if i == 0 else "")
    Console().print(table)
    if args.smoke:
        return
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"command": command(), "machine": m, "results": results,
                                               "references": REFERENCES, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
