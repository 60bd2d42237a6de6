"""Where training time goes: reading + tokenisation, collation, forward, backward, optimizer step.

Times each phase of polytask's own training step (the same functions train.py calls) on SNIPS intent + slots with
MiniLM, for fp32 and bf16 autocast, and prints a table of milliseconds per step and shares.

    .venv/bin/python benchmarks/profile_training.py [--steps 30] [--rows 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SNIPS = REPO.parent / "shared" / "data" / "snips"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fused", type=int, default=1, help="1: polytask's optimizer (fused AdamW); 0: default")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/profile_training.json"))
    args = parser.parse_args()
    import torch
    from rich.console import Console
    from rich.table import Table

    from polytask.config import validate_config
    from polytask.data.loading import load_data
    from polytask.encoder import load_encoder
    from polytask.sampling import SourceScheduler, build_sampler
    from polytask.train import build_model, build_objective, make_optimizer
    from polytask.training.distributed import make_accelerator
    from polytask.training.feed import Feeder
    from polytask.training.step import StepContext, training_step

    cfg = validate_config({
        "encoder": {"name": "minilm", "max_length": 64},
        "datasets": {"snips": {"format": "jointbert", "train": str(SNIPS / "train"), "text": "tokens",
                               "max_rows": {"train": args.rows}}},
        "tasks": {"intent": {"type": "classification", "dataset": "snips", "label": "intent"},
                  "slots": {"type": "token_classification", "dataset": "snips", "label": "tags"}},
        "train": {"output_dir": "/tmp/unused", "batch_size": args.batch_size},
    })
    encoder, tokenizer = load_encoder("minilm")
    t0 = time.perf_counter()
    data = load_data(cfg, tokenizer, splits=("train",))
    read_tokenize_s = time.perf_counter() - t0
    split = data.splits["train"]["snips"]
    results = {"read_and_tokenize_s": read_tokenize_s, "rows": len(split), "precisions": {}}
    table = Table(title=f"ms per training step (batch {args.batch_size}, SNIPS intent+slots, MiniLM, "
                        f"{torch.get_num_threads()} threads, {'fused' if args.fused else 'default'} AdamW); "
                        f"reading+tokenising {len(split)} rows once: "
                        f"{read_tokenize_s:.2f} s")
    for col in ("precision", "collate", "forward+loss", "backward", "optimizer", "total", "examples/s"):
        table.add_column(col, justify="right")
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        accelerator = make_accelerator(precision)
        model = build_model(cfg, data, load_encoder("minilm")[0], tokenizer).train()
        opt = make_optimizer([{"params": list(model.parameters()), "lr": 5e-5}]) if args.fused else \
            torch.optim.AdamW(model.parameters(), lr=5e-5)
        scheduler = SourceScheduler(build_sampler("temperature", {}), [len(split)], seed=0)
        feeder = Feeder("source", data.splits["train"], data.tasks, args.batch_size, scheduler, 0,
                        tokenizer.pad_token_id)
        objective = build_objective(cfg, list(data.tasks))
        timings: dict[str, float] = {}
        # the same training_step as polytask train (no second copy of the step): it times its own phases
        ctx = StepContext(accelerator, model, opt, shared=[p for p in model.encoder.parameters()])
        from polytask.sampling import Progress

        progress = Progress(step=0, total_steps=args.steps + 3, epoch=0.0, num_epochs=1.0)
        examples = 0
        for step in range(args.steps + 3):
            a = time.perf_counter()
            micro = [feeder.micro_batch(progress)]
            collate_s = time.perf_counter() - a
            ctx.timings = timings if step >= 3 else None  # first steps warm up kernels and allocator
            stats = training_step(micro, ctx, data.tasks, objective, progress)
            if step >= 3:
                timings["collate"] = timings.get("collate", 0.0) + collate_s
                examples += stats.examples
        phases = {"collate": timings.get("collate", 0.0), "forward+loss": timings.get("forward", 0.0),
                  "backward": timings.get("backward", 0.0), "optimizer": timings.get("optimizer", 0.0)}
        total = sum(phases.values())
        ms = {k: 1000 * v / args.steps for k, v in phases.items()}
        results["precisions"][precision] = {"ms_per_step": ms, "examples_per_s": examples / total}
        table.add_row(precision, *[f"{v:.1f} ({100 * v / (1000 * total / args.steps):.0f}%)" for v in ms.values()],
                      f"{1000 * total / args.steps:.1f}", f"{examples / total:.1f}")
    Console().print(table)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
