"""``polytask baseline`` / ``polytask compare``: every task trained alone beside the multi-task model, on the tiny
random BERT and two toy tasks, and the comparison read back from the run folders."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.baseline import parse_seeds, single_plan
from polytask.compare import comparison
from polytask.cli import app
from polytask.config import validate_config
from polytask.errors import PolytaskError

from conftest import toy_config, write_yaml

TASKS = ("intent", "sentiment")


def two_task_config(toy_data: Path, encoder: str, out: Path, tasks=TASKS, **train) -> dict:
    cfg = toy_config(toy_data, encoder, out, **train)
    cfg["tasks"] = {t: cfg["tasks"][t] for t in tasks}
    used = {cfg["tasks"][t]["dataset"] for t in tasks}
    cfg["datasets"] = {d: spec for d, spec in cfg["datasets"].items() if d in used}
    return cfg


def best_metrics(out: Path, *parts: str) -> dict:
    return json.loads((out.joinpath("compare", *parts, "best", "metrics.json")).read_text())


def row_of(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if re.match(rf"\W*{name}\s", line)]
    assert lines, f"no row for {name} in:\n{output}"
    return lines[0]


@pytest.fixture(scope="module")
def compared(tiny_encoder: str, toy_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """`polytask baseline` on two tasks from two datasets, seeds 1 and 2 -> (output_dir, CLI output)."""
    root = tmp_path_factory.mktemp("compare")
    path = write_yaml(root / "two.yaml", two_task_config(toy_data, tiny_encoder, root / "out", max_steps=4))
    r = CliRunner().invoke(app, ["baseline", str(path), "train.lr=1e-3", "--seeds", "1,2", "--no-progress"])
    assert r.exit_code == 0, r.output
    return root / "out", r.output


def test_baseline_writes_the_layout_and_summary(compared) -> None:
    out, output = compared
    for seed in (1, 2):
        assert (out / f"compare/multi/seed-{seed}/best/model.safetensors").is_file()
        for task in TASKS:
            run = out / f"compare/single/{task}/seed-{seed}"
            assert (run / "best/metrics.json").is_file() and (run / "metrics.jsonl").is_file()
            assert (run / "compare_stats.json").is_file()
    summary = json.loads((out / "compare/summary.json").read_text())
    assert summary["format"] == "polytask-compare" and summary["seeds"] == [1, 2]
    assert set(summary["tasks"]) == set(TASKS) and set(summary["single"]) == set(TASKS)
    assert summary["tasks"]["intent"]["primary_metric"] == "accuracy"
    assert summary["skipped"] == {}
    # the budget: 160 rows / batch 16 = 10 batches per dataset; a multi-task epoch is 20 steps, max_steps=4 is
    # 0.2 passes, so each task alone gets ceil(0.2 * 10) = 2 steps
    budget = summary["budget"]
    assert budget["mode"] == "passes"
    assert budget["multi"] == {"steps": 4, "steps_per_epoch": 20, "passes": 0.2, "every_steps": None}
    assert budget["single"]["intent"]["steps"] == 2 and budget["single"]["intent"]["passes"] == 0.2
    assert summary["memory"]["method"] in ("vmhwm", "ru_maxrss") and summary["memory"]["description"]
    for seed in ("1", "2"):
        multi = summary["multi"]["runs"][seed]
        assert multi["run_dir"] == f"multi/seed-{seed}" and multi["steps"] == 4
        assert multi["validation"] == best_metrics(out, "multi", f"seed-{seed}")["validation"]["tasks"]
        assert set(multi["test"]) == set(TASKS)
        for key in ("train_seconds", "wall_seconds", "peak_rss_mib", "parameters", "model_bytes"):
            assert multi[key] > 0, key
        for task in TASKS:
            single = summary["single"][task]["runs"][seed]
            assert single["steps"] == 2 and set(single["validation"]) == {task}
            assert single["test"] == best_metrics(out, "single", task, f"seed-{seed}")["test"]["tasks"]
            model_file = out / "compare" / single["run_dir"] / "best/model.safetensors"
            assert single["model_bytes"] == model_file.stat().st_size
    # 1 model vs N models: N encoders, one head each
    totals = summary["totals"]
    assert totals["multi"]["models"] == 1 and totals["single"]["models"] == 2
    assert totals["single"]["parameters"] == sum(summary["single"][t]["parameters"] for t in TASKS)
    assert summary["multi"]["parameters"] < totals["single"]["parameters"] < 2 * summary["multi"]["parameters"]
    size = (out / "compare/multi/seed-1/best/model.safetensors").stat().st_size
    assert totals["multi"]["model_bytes"] == size
    # a single-task run dir holds a normal single-task config
    run_config = (out / "compare/single/intent/seed-1/run_config.yaml").read_text()
    assert "sentiment" not in run_config and "max_steps: 2" in run_config and "name: equal" in run_config
    assert "multi-task vs single-task" in output  # baseline ends by printing the comparison


def test_compare_with_two_seeds_shows_mean_and_std(compared, tmp_path: Path) -> None:
    out, _ = compared
    r = CliRunner().invoke(app, ["compare", str(out), "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert "mean ± std over seeds 1, 2" in r.output
    for name in ("multi", "single", "delta"):
        assert name in r.output
    for task in TASKS:
        multi = [best_metrics(out, "multi", f"seed-{s}")["test"]["tasks"][task]["accuracy"] for s in (1, 2)]
        single = [best_metrics(out, "single", task, f"seed-{s}")["test"]["tasks"][task]["accuracy"] for s in (1, 2)]
        deltas = [m - s for m, s in zip(multi, single)]
        row = row_of(r.output, task)
        assert f"{statistics.fmean(multi):.4f} ± {statistics.stdev(multi):.4f}" in row
        assert f"{statistics.fmean(single):.4f} ± {statistics.stdev(single):.4f}" in row
        assert f"{statistics.fmean(deltas):+.4f} ± {statistics.stdev(deltas):.4f}" in row
    assert "±" in row_of(r.output, "aggregate")
    comp = json.loads((tmp_path / "c.json").read_text())
    assert comp["tasks"]["intent"]["multi"]["n"] == 2 and comp["tasks"]["intent"]["split"] == "test"
    assert comp["cost"]["models"] == {"multi": 1, "single": 2}
    assert "parameters" in r.output and "model.safetensors" in r.output and "training time" in r.output


def test_compare_numbers_equal_the_run_folders(compared, tmp_path: Path) -> None:
    """One seed: the cells are the best checkpoints' metrics as written in the run folders."""
    out, _ = compared
    summary = json.loads((out / "compare/summary.json").read_text())
    summary["seeds"] = [1]
    for group in [summary["multi"], *summary["single"].values()]:
        del group["runs"]["2"]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    runner = CliRunner()
    for split in ("test", "validation"):
        r = runner.invoke(app, ["compare", str(tmp_path / "summary.json"), "--split", split])
        assert r.exit_code == 0, r.output
        assert "±" not in row_of(r.output, "intent") and "(seed 1)" in r.output
        multi_all, single_all = [], []
        for task in TASKS:
            m = best_metrics(out, "multi", "seed-1")[split]["tasks"][task]["accuracy"]
            s = best_metrics(out, "single", task, "seed-1")[split]["tasks"][task]["accuracy"]
            multi_all.append(m)
            single_all.append(s)
            cells = row_of(r.output, task).split()
            assert f"{m:.4f}" in cells and f"{s:.4f}" in cells and f"{m - s:+.4f}" in cells, (split, task, cells)
            assert split in cells
        agg = row_of(r.output, "aggregate").split()
        assert f"{statistics.fmean(multi_all):.4f}" in agg and f"{statistics.fmean(single_all):.4f}" in agg


def test_compare_falls_back_to_validation_without_test(compared) -> None:
    out, _ = compared
    summary = json.loads((out / "compare/summary.json").read_text())
    for group in [summary["multi"], *summary["single"].values()]:
        for run in group["runs"].values():
            run["test"] = {k: v for k, v in run["test"].items() if k != "sentiment"}
    comp = comparison(summary, "test")
    assert comp["tasks"]["intent"]["split"] == "test" and comp["tasks"]["sentiment"]["split"] == "validation"
    expected = statistics.fmean(summary["multi"]["runs"][s]["validation"]["sentiment"]["accuracy"] for s in "12")
    assert comp["tasks"]["sentiment"]["multi"]["mean"] == pytest.approx(expected)


def test_shared_dataset_is_split_into_single_task_runs_and_finished_runs_are_reused(
        tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    """intent and slots both come from snips: two single-task runs on the same dataset; a second call reuses
    every finished run of the same config instead of training again."""
    path = write_yaml(tmp_path / "snips.yaml", two_task_config(toy_data, tiny_encoder, tmp_path / "out",
                                                               tasks=("intent", "slots"), max_steps=2))
    runner = CliRunner()
    r = runner.invoke(app, ["baseline", str(path), "--no-progress"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "out/compare/summary.json").read_text())
    assert summary["seeds"] == [7]  # the config's train.seed
    assert summary["tasks"]["slots"]["shares_dataset_with"] == ["intent"]
    assert summary["budget"]["multi"]["steps_per_epoch"] == 10 and summary["budget"]["single"]["slots"]["steps"] == 2
    for task in ("intent", "slots"):
        run = summary["single"][task]["runs"]["7"]
        assert set(run["validation"]) == {task} and not run["reused"]
    stamp = (tmp_path / "out/compare/single/slots/seed-7/best/model.safetensors").stat().st_mtime_ns
    r = runner.invoke(app, ["baseline", str(path), "--no-progress"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "out/compare/summary.json").read_text())
    assert again["multi"]["runs"]["7"]["reused"] and again["single"]["slots"]["runs"]["7"]["reused"]
    assert (tmp_path / "out/compare/single/slots/seed-7/best/model.safetensors").stat().st_mtime_ns == stamp
    assert again["single"]["slots"]["runs"]["7"]["peak_rss_mib"] == summary["single"]["slots"]["runs"]["7"][
        "peak_rss_mib"]  # measurements are kept with the run
    r = runner.invoke(app, ["compare", str(tmp_path / "out")])
    assert r.exit_code == 0 and "slots" in r.output and "f1" in r.output


def test_budget_rules(toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    raw = toy_config(toy_data, tiny_encoder, tmp_path, epochs=2)
    raw["evaluation"] = {"metric": "sentiment/accuracy", "every_steps": 20}
    raw["weighting"] = {"name": "static", "weights": {"intent": 2.0}}
    cfg = validate_config(raw)
    sizes = {"snips": 160, "sentiment": 160, "pairs": 160, "topics": 80}  # 10 + 10 + 10 + 5 batches: 35 per epoch
    plan = single_plan(cfg, "topics", 3, sizes)
    t = plan.config.train
    assert (plan.steps, plan.steps_per_epoch, t.max_steps, t.epochs, t.seed) == (10, 5, 10, 2.0, 3)
    assert list(plan.config.tasks) == ["topics"] and list(plan.config.datasets) == ["topics"]
    assert plan.config.weighting.name == "equal"
    assert plan.config.evaluation.metric == "mean"  # the selection metric named another task
    assert plan.config.evaluation.every_steps == 3  # 20 * 5 / 35: as many evaluations as the multi-task run
    assert t.lr == cfg.train.lr and t.batch_size == cfg.train.batch_size
    assert plan.run_dir == tmp_path / "compare/single/topics/seed-3"
    assert single_plan(cfg, "sentiment", 3, sizes).config.evaluation.metric == "sentiment/accuracy"
    steps = single_plan(cfg, "topics", 3, sizes, budget="steps")
    assert steps.steps == 70 and steps.config.evaluation.every_steps == 20  # 2 epochs * 35 steps
    raw["train"]["grad_accum"] = 2
    raw["train"]["max_steps"] = 7  # an epoch is ceil(35 / 2) = 18 steps; 7 steps are 7/18 passes
    plan = single_plan(validate_config(raw), "intent", 1, sizes)
    assert (plan.steps_per_epoch, plan.steps) == (5, 2)  # ceil(7/18 * 5)
    with pytest.raises(PolytaskError, match="unknown budget"):
        single_plan(cfg, "topics", 1, sizes, budget="flops")


def test_parse_seeds() -> None:
    assert parse_seeds("1,2,3") == [1, 2, 3]
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    assert parse_seeds(None) is None and parse_seeds(" ") is None
    for bad in ("a", "1,1", "3-1"):
        with pytest.raises(PolytaskError, match="--seeds"):
            parse_seeds(bad)


def test_compare_without_summary_fails_cleanly(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["compare", str(tmp_path)])
    assert r.exit_code == 2 and "polytask baseline" in r.output
