"""The serving benchmark runs end to end in --smoke mode (tiny random BERT, a few batches) and writes its JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_serving_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "serving.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serving.py"), "--smoke", "--threads", "1",
                           "--json-out", str(out)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "speedup vs K models" in proc.stdout
    result = json.loads(out.read_text())
    assert {"machine", "command", "model", "texts", "settings", "results", "speedup", "target"} <= set(result)
    assert result["model"]["K"] == 3 and set(result["model"]["tasks"]) == {"intent", "slots", "sentiment"}
    setups = {r["setup"] for r in result["results"]}
    assert {"K models fp32", "K models bf16", "polytask fp32", "polytask bf16"} <= setups
    try:
        import onnxruntime  # noqa: F401

        assert {"polytask ONNX fp32", "polytask ONNX int8"} <= setups
    except ImportError:
        pass
    assert {r["batch_size"] for r in result["results"]} == {1, 32}
    for row in result["results"]:
        for key in ("texts_per_s", "p50_ms", "p95_ms", "peak_rss_mb", "import_rss_mb", "x_kmodels_fp32_throughput"):
            assert row[key] > 0, (row["setup"], key)
        assert row["p95_ms"] >= row["p50_ms"]
    assert set(result["speedup"]["polytask fp32"]) == {"1", "32"}
    assert result["target"]["required_speedup"] == 0.9 * 3


def test_serving_curve_smoke(tmp_path: Path) -> None:
    """K tasks per design vs K separate models: every row measured, sizes grow with K as they must."""
    out = tmp_path / "curve.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serving_curve.py"), "--smoke", "--threads",
                           "1", "--ks", "1,3", "--designs", "hard,moe top 2", "--texts-per-run", "32", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {(r["design"], r["K"]): r for r in result["results"]}
    assert set(rows) == {(d, k) for d in ("hard", "moe top 2", "K separate HF models") for k in (1, 3)}
    for row in rows.values():
        assert row["texts_per_s"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0 and row["peak_rss_mb"] > 0
    hard, separate = rows[("hard", 3)], rows[("K separate HF models", 3)]
    assert separate["x_separate"] == 1.0
    # three encoders vs one: the separate models carry two more encoders' parameters and bytes
    assert separate["parameters"] > 2.5 * hard["parameters"] and separate["disk_bytes"] > 2.5 * hard["disk_bytes"]
    assert hard["extra_parameters"] > rows[("hard", 1)]["extra_parameters"] > 0  # heads only
    assert rows[("moe top 2", 3)]["extra_parameters"] > hard["extra_parameters"]  # + experts and gates


def test_train_throughput_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "train_throughput.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--smoke",
                           "--precisions", "fp32", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x HF Trainer" in proc.stdout
    result = json.loads(out.read_text())
    rows = {r["system"]: r for r in result["rows"]}
    assert set(rows) == {"polytask", "HF Trainer", "HF Trainer (group_by_length)"}
    assert rows["HF Trainer"]["ratio_vs_hf_trainer"] == 1.0
    for row in rows.values():
        assert row["seconds"] > 0 and row["examples_per_s"] > 0
        assert abs(row["examples_per_s"] / rows["HF Trainer"]["examples_per_s"] - row["ratio_vs_hf_trainer"]) < 0.02
    assert result["command"].startswith("python benchmarks/train_throughput.py")


def test_qa_and_relation_benchmarks_smoke() -> None:
    for script, marker in (("qa_squadshifts.py", "XQuAD-en"), ("relations.py", "conll04")):
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke"], capture_output=True,
                              text=True, timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert marker in proc.stdout, proc.stdout[-2000:]


def test_mtl_methods_benchmark_smoke() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mtl_methods.py"), "--smoke", "--seeds", "1",
                           "--methods", "equal,pcgrad"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Δm%" in proc.stdout and "pcgrad" in proc.stdout, proc.stdout[-2000:]


def test_fewshot_benchmark_smoke() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fewshot.py"), "--smoke"], capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "add-task" in proc.stdout and "finetune" in proc.stdout, proc.stdout[-2000:]


def test_benchmarks_reading_a_baseline_smoke(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    """start_from_joint, affinity_groups and sharing_designs read a `polytask baseline` run; here a 2-task toy one
    (the real ones read benchmarks/mtl_vs_single)."""
    from typer.testing import CliRunner

    from polytask.cli import app

    from conftest import write_yaml
    from test_compare import two_task_config

    cfg = write_yaml(tmp_path / "two.yaml", two_task_config(toy_data, tiny_encoder, tmp_path / "out", max_steps=6))
    r = CliRunner().invoke(app, ["baseline", str(cfg), "--seeds", "1,2", "--no-progress"])
    assert r.exit_code == 0, r.output
    kept = ["--seeds", "1,2", "--baseline-records", str(tmp_path / "baseline_records.json")]
    for script, extra, marker in (
            ("start_from_joint.py", ["--finetune-epochs", "1"], "BAM distilled"),
            ("affinity_groups.py", ["--config", str(cfg), "--every", "2", "--groups", "2", *kept, "--records",
                                    str(tmp_path / "groups.json"), "--output-dir", str(tmp_path / "groups")],
             "grouped"),
            ("sharing_designs.py", ["--config", str(cfg), "--designs", "hard,lora2-frozen", *kept,
                                    "--output-dir", str(tmp_path / "designs"), "--records",
                                    str(tmp_path / "records.json")], "lora top 2, frozen encoder")):
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--baseline", str(tmp_path / "out"),
                               "--json-out", str(tmp_path / f"{script}.json"), *extra], capture_output=True,
                              text=True, timeout=900, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert marker in proc.stdout, proc.stdout[-2000:]
        assert json.loads((tmp_path / f"{script}.json").read_text())["machine"]["cores"] >= 1
    # the baseline's runs were kept when read: per seed, the multi-task run and each task alone
    assert sorted(json.loads((tmp_path / "baseline_records.json").read_text())) == [
        "multi/seed-1", "multi/seed-2", "single/intent/seed-1", "single/intent/seed-2", "single/sentiment/seed-1",
        "single/sentiment/seed-2"]
    # sharing_designs kept every run in --records: a report-only call with neither the run folders nor the
    # baseline's folder trains nothing and reports the same numbers
    kept_runs = json.loads((tmp_path / "records.json").read_text())
    assert sorted(kept_runs) == ["hard/seed-1", "hard/seed-2", "lora2-frozen/seed-1", "lora2-frozen/seed-2"]
    first = json.loads((tmp_path / "sharing_designs.py.json").read_text())["summary"]
    shutil.rmtree(tmp_path / "designs")
    shutil.move(tmp_path / "out", tmp_path / "moved")
    again = [sys.executable, str(REPO / "benchmarks" / "sharing_designs.py"), "--config", str(cfg), "--designs",
             "hard,lora2-frozen", "--records", str(tmp_path / "records.json"), "--report-only", "--output-dir",
             str(tmp_path / "designs"), "--json-out", str(tmp_path / "again.json")]
    proc = subprocess.run([*again, *kept], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "again.json").read_text())["summary"] == first
    assert not (tmp_path / "designs").exists()
    # the affinity run and its groups were kept too: a second call trains nothing and finds the same grouping
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "affinity_groups.py"), "--config", str(cfg),
                           "--every", "2", "--groups", "2", *kept, "--records", str(tmp_path / "groups.json"),
                           "--output-dir", str(tmp_path / "nowhere"), "--json-out", str(tmp_path / "again2.json")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "nowhere").exists()
    assert (json.loads((tmp_path / "again2.json").read_text())["summary"]
            == json.loads((tmp_path / "affinity_groups.py.json").read_text())["summary"])
    # without kept runs for these seeds (or a folder) the scripts say what to run
    proc = subprocess.run([*again[:-2], "--json-out", str(tmp_path / "x.json"), "--seeds", "3",
                           "--baseline-records", str(tmp_path / "baseline_records.json")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode != 0 and "polytask baseline" in proc.stderr and "--seeds 3" in proc.stderr, proc.stderr


def test_calibration_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "calibration.py"), "--smoke", "--json-out",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ECE (T=1)" in proc.stdout and "relations" in proc.stdout, proc.stdout[-2000:]
    result = json.loads(out.read_text())
    assert result["smoke"] and result["command"].startswith("python benchmarks/calibration.py")
    mixed, joint = result["results"]
    assert {r["task"] for r in mixed["splits"]["validation"]} == {"intent", "slots", "sentiment", "topics"}
    assert {r["task"] for r in mixed["splits"]["test"]} == {"intent", "slots", "sentiment"}  # topics has no test
    assert {r["head"] for r in joint["splits"]["test"]} == {"entities", "relations"}
    for res in (mixed, joint):
        for rows in res["splits"].values():
            for row in rows:
                assert 0 < row["temperature"] <= 100 and row["examples"] > 0
                assert 0 <= row["ece"] <= 1 and 0 <= row["ece_uncalibrated"] <= 1


def test_serve_load_benchmark_smoke(tmp_path: Path) -> None:
    """A real server under concurrent clients, a sustained run for the RSS bound, 100 MB bodies, SIGTERM in flight:
    every check of the script passes (its exit status says so too)."""
    out = tmp_path / "serve_load.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--smoke", "--json-out",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mean batch" in proc.stdout and "FAIL" not in proc.stdout
    result = json.loads(out.read_text())
    assert result["passed"] and all(result["checks"].values()) and len(result["checks"]) == 9
    assert [r["concurrency"] for r in result["levels"]] == [1, 4]
    for row in result["levels"]:
        assert row["success_rate"] == 1.0 and row["bad_rejected_422"] == row["bad"]
        assert row["p99_ms"] >= row["p50_ms"] > 0 and row["mean_batch"] >= 1.0 and row["model_calls"] > 0
    assert result["rss"]["requests"] == 300 and result["rss"]["growth_mib"] <= result["rss"]["bound_mib"]
    assert result["oversized"]["statuses"] == {"413": 5}
    assert result["shutdown"]["answered_200"] == result["shutdown"]["in_flight"] == 4


def test_mtl_methods_names_where_a_baseline_config_differs(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    """`mtl_methods.py --baseline` must refuse single-task runs trained from another config: the check names the
    differing keys and ignores only seed, folder and progress bar."""
    import importlib

    from polytask.config import validate_config

    from test_compare import two_task_config

    sys.path.insert(0, str(REPO / "benchmarks"))
    mtl = importlib.import_module("mtl_methods")
    raw = two_task_config(toy_data, tiny_encoder, tmp_path / "out", max_steps=6)
    run_dir = tmp_path / "saved"
    run_dir.mkdir()
    saved = validate_config({**raw, "train": {**raw["train"], "seed": 3, "output_dir": str(run_dir)}})
    (run_dir / "run_config.yaml").write_text(saved.to_yaml())
    ignore = ("progress_bar", "output_dir", "seed")
    dump = validate_config(raw).model_dump(mode="json")
    assert mtl.config_differences(run_dir, dump, ignore) == []
    assert mtl.config_differences(run_dir, dump) == ["train.output_dir", "train.seed"]
    other = validate_config({**raw, "train": {**raw["train"], "lr": 1e-3}}).model_dump(mode="json")
    assert mtl.config_differences(run_dir, other, ignore) == ["train.lr"]
    fewer = two_task_config(toy_data, tiny_encoder, tmp_path / "out", tasks=["intent"], max_steps=6)
    assert mtl.config_differences(run_dir, validate_config(fewer).model_dump(mode="json"), ignore) == [
        "datasets", "tasks"]
    assert mtl.config_differences(tmp_path, dump, ignore) == ["run_config.yaml"]


def test_run_records_are_reused_only_for_the_same_config_and_machine(tmp_path: Path) -> None:
    """A kept run stands for a new one only when its config (but for folder and progress bar), CPU model, torch and
    GPU are the same; every put is on disk at once (a grid stopped mid-way keeps its finished runs)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run_records import RunRecords

    here = {"cpu": "AMD EPYC", "cores": 2, "amx": False, "avx512_bf16": True, "torch": "2.13.0", "threads": 2,
            "gpu": None}
    config = {"tasks": {"a": {"type": "classification"}}, "train": {"seed": 7, "lr": 1e-4, "output_dir": "x",
                                                                     "progress_bar": True}}
    best = {"step": 10, "test": {"tasks": {"a": {"accuracy": 0.5}}}, "timed_steps": 9, "step_seconds": 1.0,
            "train_seconds": 2.0, "parameters": {"total": 3}, "validation": None, "metric": "mean",
            "best_metric": 0.5, "unused": "dropped"}
    RunRecords(tmp_path / "r.json", here).put("equal/source/seed-7", config, best)
    kept = RunRecords(tmp_path / "r.json", here)  # read back from disk
    moved = {**config, "train": {**config["train"], "output_dir": "elsewhere", "progress_bar": False}}
    assert kept.get("equal/source/seed-7", moved) == {k: v for k, v in best.items() if k != "unused"}
    assert kept.get("equal/source/seed-8", config) is None
    assert kept.get("equal/source/seed-7", {**config, "train": {**config["train"], "lr": 2e-4}}) is None
    for key, value in (("cpu", "Intel Xeon"), ("torch", "2.14.1"), ("gpu", "NVIDIA H100")):
        assert RunRecords(tmp_path / "r.json", {**here, key: value}).get("equal/source/seed-7", config) is None
    assert kept.dates(["equal/source/seed-7", "missing"]) == [kept.records["equal/source/seed-7"]["date"]]
