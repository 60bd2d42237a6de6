"""Score a span_qa checkpoint on a SQuAD-format file both ways: SQuAD v1.1's white-space rules for every question (as
XQuAD's published tables score every language) and polytask's default (MLQA's mixed segmentation for questions with
CJK characters). The two agree on text without CJK characters.

    .venv/bin/python benchmarks/qa_rescore.py runs/qa-e5/run/best ../shared/data/xquad_en_zh/xquad.zh.json \\
        --json-out benchmarks/results/qa_xquad_zh_rescore.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, describe, machine  # noqa: E402


def questions(file: Path) -> list[dict]:
    """Every question of a SQuAD v1.1 file (read and checked by polytask's ``squad`` reader): id, question,
    context, reference answer texts."""
    from polytask.data.readers import read_rows

    return [{"id": r.values["id"], "question": r.values["question"], "context": r.values["context"],
             "answers": [a["text"] for a in r.values["answers"]]} for r in read_rows("squad", str(file))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("file", help="SQuAD v1.1 JSON")
    parser.add_argument("--task", default=None, help="the span_qa task (default: the checkpoint's only one)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    from polytask.inference import Pipeline
    from polytask.tasks.qa_metrics import squad_scores

    pipe = Pipeline.from_pretrained(args.checkpoint, batch_size=args.batch_size)
    qa_tasks = [n for n, t in pipe.model.tasks.items() if t.params.type == "span_qa"]
    task = args.task or (qa_tasks[0] if len(qa_tasks) == 1 else None)
    if task is None:
        sys.exit(f"give --task: span_qa tasks of the checkpoint: {qa_tasks}")
    items = questions(Path(args.file))
    started = time.perf_counter()
    predicted = [p[task]["answer"] for p in pipe([{"question": q["question"], "context": q["context"]}
                                                   for q in items], tasks=[task])]
    seconds = time.perf_counter() - started
    references = [q["answers"] for q in items]
    scores = {"squad_v1.1_whitespace": squad_scores(predicted, references, cjk=False),
              "polytask_default_mixed_cjk": squad_scores(predicted, references)}
    m = machine()
    print(f"{len(items)} questions of {args.file}, {seconds:.0f} s on {describe(m)}")
    for name, s in scores.items():
        print(f"  {name:<28} EM {100 * s['exact_match']:.1f}  F1 {100 * s['f1']:.1f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "command": command(), "machine": m, "checkpoint": args.checkpoint, "file": args.file,
            "questions": len(items), "scores": scores, "seconds": seconds,
            "predictions": {q["id"]: p for q, p in zip(items, predicted)}}, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
