"""Extractive QA with the packaged all-MiniLM-L6-v2: trained on SQuADShifts, tested on held-out articles and XQuAD-en.

The split is made by ``polytask.data.squad.split_by_article`` (seeded, by article): of the 48 new_wiki articles, 6
go to dev (model selection) and 10 to test; train is the other 32 plus all of Reddit and Amazon (25,282 questions).
XQuAD-en (1,190 questions from SQuAD v1.1 dev, no overlap with SQuADShifts) is an out-of-domain test. Scores are the
official SQuAD v1.1 EM/F1 (max over the reference answers).

    .venv/bin/python benchmarks/qa_squadshifts.py                     # all train questions, 2 epochs (hours on CPU)
    .venv/bin/python benchmarks/qa_squadshifts.py --rows 4000 --epochs 1
    .venv/bin/python benchmarks/qa_squadshifts.py --smoke             # tiny random BERT, toy data, seconds

Cross-lingual (English training only, Chinese test): a multilingual encoder and XQuAD-zh, the same 1,190 questions
professionally translated (scored with MLQA's mixed segmentation, see ``polytask.tasks.qa_metrics``):

    .venv/bin/python benchmarks/qa_squadshifts.py --encoder multilingual-e5-small --freeze word_embeddings \
        --xquad en,zh --rows 2000 --epochs 1 --output-dir runs/qa-e5 --json-out benchmarks/results/qa_xquad_zh.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, command, describe, machine  # noqa: E402

FILES = ("new_wiki_v1.0.json", "reddit_v1.0.json", "amazon_reviews_v1.0.json")
REFERENCE = ("6-layer MiniLM reports SQuAD 2.0 F1 75.6 trained on SQuAD 2.0 (130k questions); BERT-base trained on "
             "SQuAD v1.1 scores 88.5 F1 on its dev set, of which XQuAD-en is a subset (both cited, not measured)")


def smoke_data(folder: Path) -> tuple[Path, Path]:
    """Toy SQuAD files and a tiny encoder (as in the tests) for --smoke."""
    sys.path.insert(0, str(REPO / "tests"))
    from toydata import make_squad

    from polytask.testing import tiny_bert

    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 64, 1), ("dev", 16, 2), ("test", 16, 3)):
        make_squad(folder / f"{split}.json", n, seed)
    return folder, Path(tiny_bert(folder / "tiny-bert", ["where", "is", "the", "weather", "who", "makes", "music"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="first N training questions (default: all)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=128, help="tokens shared by consecutive windows")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--encoder", default="minilm", help="encoder name or alias (e.g. multilingual-e5-small)")
    parser.add_argument("--freeze", default="", help="comma-separated train.freeze entries (e.g. word_embeddings)")
    parser.add_argument("--xquad", default="en", help="XQuAD languages to test on (en, zh)")
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output-dir", default="runs/qa-squadshifts")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/qa_squadshifts.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT on toy data (checks the script runs)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from polytask.config import validate_config
    from polytask.data.squad import split_by_article
    from polytask.evaluate import evaluate_checkpoint
    from polytask.train import train

    out = Path(args.output_dir if not args.smoke else tempfile.mkdtemp(prefix="qa-smoke-"))
    encoder = args.encoder
    xquad = {lang: SHARED / "xquad_en_zh" / f"xquad.{lang}.json" for lang in args.xquad.split(",")}
    if args.smoke:
        data, tiny = smoke_data(out / "data")
        encoder, xquad, split_info = str(tiny), {lang: data / "test.json" for lang in xquad}, {"smoke": True}
    else:
        files = [SHARED / "squadshifts" / f for f in FILES]
        if not all(f.is_file() for f in files) or not all(f.is_file() for f in xquad.values()):
            sys.exit(f"{SHARED}/squadshifts or xquad_en_zh is absent")
        data = out / "data"
        split_info = split_by_article(files, data, holdout_file=files[0], dev_articles=6, test_articles=10, seed=0)
    dataset = {"format": "squad", "train": str(data / "train.json"), "validation": str(data / "dev.json"),
               "test": str(data / "test.json"), "text": "question", "text_pair": "context",
               "max_rows": {"train": args.rows} if args.rows else {}}
    raw = {"encoder": {"name": encoder, "max_length": args.max_length if not args.smoke else 32},
           "datasets": {"squadshifts": dataset},
           "tasks": {"qa": {"type": "span_qa", "dataset": "squadshifts",
                            "doc_stride": args.stride if not args.smoke else 8}},
           "train": {"output_dir": str(out / "run"), "lr": args.lr, "head_lr": args.head_lr,
                     "batch_size": args.batch_size, "epochs": args.epochs, "precision": args.precision,
                     "warmup_ratio": 0.1, "seed": args.seed, "progress_bar": not args.smoke,
                     "freeze": [f for f in args.freeze.split(",") if f]}}
    result = train(validate_config(raw))
    rows = {"dev (6 held-out new_wiki articles)": result.validation,
            "test (10 held-out new_wiki articles)": result.test}
    for lang, file in xquad.items():
        xquad_cfg = dict(raw, datasets={"squadshifts": dict(dataset, test=str(file))})
        (out / f"xquad-{lang}.yaml").write_text(json.dumps(xquad_cfg), encoding="utf-8")  # JSON is valid YAML
        rows[f"XQuAD-{lang} (out of domain{'' if lang == 'en' else ', never-seen language'})"] = \
            evaluate_checkpoint(result.best_dir, "test", config=out / f"xquad-{lang}.yaml")
    m = machine()
    table = Table(title=f"SQuADShifts -> {encoder} span_qa, {args.epochs:g} epochs, max_length {args.max_length}, "
                        f"stride {args.stride}, {args.precision}; {result.seconds:.0f} s training on {describe(m)}")
    for col in ("split", "questions", "EM", "F1"):
        table.add_column(col, justify="left" if col == "split" else "right")
    measured = {}
    for name, res in rows.items():
        qa = res["tasks"]["qa"]
        measured[name] = {"examples": qa["examples"], "exact_match": qa["exact_match"], "f1": qa["f1"]}
        table.add_row(name, str(qa["examples"]), f"{100 * qa['exact_match']:.1f}", f"{100 * qa['f1']:.1f}")
    Console().print(table)
    print("reference:", REFERENCE)
    if args.smoke:
        return
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({
        "command": command(), "machine": m, "measured": measured, "train_seconds": result.seconds,
        "steps": result.steps, "split": {k: v for k, v in split_info.items() if k != "inputs"}, "args": vars(args),
        "reference": REFERENCE}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
