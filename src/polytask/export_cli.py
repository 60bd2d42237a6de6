"""What ``polytask export`` does: export, check parity, optionally quantise and measure the accuracy change."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from polytask.errors import PolytaskError


def run_export(checkpoint: Path, output: Path | None, quantize: str | None, split: str, console: Console) -> None:
    """Export ``checkpoint`` to ONNX, print parity with PyTorch, and with int8 the accuracy change on ``split``."""
    from polytask.config import SPLITS
    from polytask.errors import check_choice
    from polytask.evaluate import aggregate, evaluate
    from polytask.export import OnnxModel, export_onnx, exported_tasks, parity, quantize_int8, skipped_tasks
    from polytask.model import MultiTaskModel

    check_choice("--split", split, SPLITS, "split")  # before the export, not after minutes of it
    if quantize is not None:
        check_choice("--quantize", quantize, ("int8",), "quantization")
    model = MultiTaskModel.from_pretrained(checkpoint)
    path = export_onnx(model, output or checkpoint / "model.onnx")
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): heads of "
                  f"{', '.join(exported_tasks(model))}")
    if skipped_tasks(model):
        console.print(f"[yellow]not exported: {', '.join(skipped_tasks(model))} (generating tasks: their search "
                      "runs in Python; serve them with the PyTorch backend)[/]")
    table = Table(title="ONNX vs PyTorch: max |difference| of logits on sample inputs")
    table.add_column("output")
    table.add_column("fp32 ONNX", justify="right")
    diffs = {"fp32 ONNX": parity(model, path)}
    int8_path = None
    if quantize == "int8":
        int8_path = quantize_int8(path, path.with_name(path.stem + ".int8.onnx"))
        console.print(f"wrote {int8_path} ({int8_path.stat().st_size / 2**20:.1f} MiB)")
        diffs["int8 ONNX"] = parity(model, int8_path)
        table.add_column("int8 ONNX", justify="right")
    for name in diffs["fp32 ONNX"]:
        table.add_row(name, *[f"{d[name]:.2e}" for d in diffs.values()])
    console.print(table)
    if int8_path is None:
        return
    try:
        data = _data(model, split, checkpoint)
    except PolytaskError as exc:
        console.print(f"[yellow]int8 accuracy not measured: {exc}[/]")
        return
    acc = Table(title=f"accuracy on {split}: PyTorch fp32 vs ONNX int8")
    for col in ("task", "metric", "PyTorch fp32", "ONNX int8", "change"):
        acc.add_column(col, justify="left" if col in ("task", "metric") else "right")
    ref = evaluate(model, data, split)
    got = evaluate(OnnxModel(int8_path, model), data, split)
    for task, metrics in ref["tasks"].items():
        m = model.tasks[task].primary_metric
        acc.add_row(task, m, f"{metrics[m]:.4f}", f"{got['tasks'][task][m]:.4f}",
                    f"{got['tasks'][task][m] - metrics[m]:+.4f}")
    a, b = aggregate(ref, model.tasks), aggregate(got, model.tasks)
    if a is not None and b is not None:
        acc.add_row("(mean)", "primary", f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}")
    console.print(acc)


def _data(model, split: str, checkpoint: Path):
    from polytask.checkpoint import saved_run_config
    from polytask.data.loading import load_data

    if model.run_config is None:
        raise PolytaskError("the checkpoint has no run_config.yaml")
    from polytask.export import exported_tasks

    cfg = saved_run_config(checkpoint, model.run_config)
    kept = exported_tasks(model)  # the tasks the graph holds (generating ones are not exported)
    cfg = cfg.model_copy(update={"tasks": {n: p for n, p in cfg.tasks.items() if n in kept}})
    data = load_data(cfg, model.tokenizer, splits=(split,), tasks={n: model.tasks[n] for n in cfg.tasks})
    if not data.splits.get(split):
        raise PolytaskError(f"no {split!r} split in the checkpoint's data")
    return data
