"""ONNX export of every head in one graph: parity with PyTorch, int8 quantisation, the ONNX pipeline backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from polytask.cli import app  # noqa: E402
from polytask.export import OnnxModel, export_onnx, parity, quantize_int8  # noqa: E402
from polytask.inference import Pipeline  # noqa: E402
from polytask.model import MultiTaskModel  # noqa: E402


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[MultiTaskModel, Path]:
    model = MultiTaskModel.from_pretrained(trained[1].best_dir)
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnx_matches_pytorch(exported) -> None:
    model, path = exported
    diffs = parity(model, path, ["what is the weather in rome today", "play music by sting"])
    assert set(diffs) == set(model.tasks)
    assert max(diffs.values()) < 1e-4


def test_onnx_pipeline_equals_torch_pipeline(exported) -> None:
    model, path = exported
    texts = ["what is the weather in oslo today", "play music by drake bjork now", "the movie was really awful"]
    torch_out = Pipeline(model)(texts)
    onnx_out = Pipeline(OnnxModel(path, model))(texts)
    for a, b in zip(torch_out, onnx_out):
        assert a["intent"]["label"] == b["intent"]["label"]
        assert a["slots"]["tags"] == b["slots"]["tags"]
        assert a["intent"]["score"] == pytest.approx(b["intent"]["score"], abs=1e-4)


def test_int8_graph_runs_close(exported) -> None:
    model, path = exported
    q = quantize_int8(path, path.with_name("model.int8.onnx"))
    assert q.stat().st_size < path.stat().st_size
    diffs = parity(model, q)
    assert max(diffs.values()) < 0.5  # quantisation error, bounded; accuracy change is measured by the CLI


def test_export_cli(trained, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["export", str(trained[1].best_dir), "--output", str(tmp_path / "m.onnx"),
                                 "--quantize", "int8"])
    assert r.exit_code == 0, r.output
    assert "max |difference|" in r.output and "ONNX int8" in r.output and "change" in r.output
    pipe = Pipeline.from_pretrained(trained[1].best_dir, backend="onnx", onnx_file=tmp_path / "m.onnx")
    assert "intent" in pipe(["play music by queen now"])[0]
