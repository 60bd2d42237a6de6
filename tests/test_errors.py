"""The error contract of the command line: every user mistake exits with code 2 and one message naming where the
problem is, the field, the bad value and what is allowed, never a traceback.

Each case below is a command with a bad input and the fragments its message must hold. ``test_every_command_has_a
case`` keeps the table complete: a new command without a bad-input case fails it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.cli import app
from polytask.errors import PolytaskError
from polytask.registry import UnknownNameError
from polytask.weighting.base import NonFiniteLossError

from conftest import write_yaml


@dataclass
class Ctx:
    tmp: Path
    data: Path
    encoder: str
    run: Path  # config of a short finished run
    ckpt: Path  # its best/


Case = Callable[[Ctx], tuple[list[str], list[str]]]
CASES: dict[str, Case] = {}


def case(command: str) -> Callable[[Case], Case]:
    def add(func: Case) -> Case:
        CASES[f"{command}:{func.__name__}"] = func
        return func
    return add


def one_task(ctx: Ctx, dataset: dict, task: dict, **extra: object) -> Path:
    cfg = {"encoder": {"name": ctx.encoder, "max_length": 32}, "datasets": {"d": dataset}, "tasks": {"t": task},
           "train": {"output_dir": str(ctx.tmp / "out"), "progress_bar": False}, **extra}
    return write_yaml(ctx.tmp / "c.yaml", cfg)


def sentiment(ctx: Ctx, **keys: object) -> dict:
    return {"format": "csv", "train": str(ctx.data / "sentiment_train.csv"), "text": "sentence", **keys}


CLASSIFY = {"type": "classification", "dataset": "d", "label": "label"}


@pytest.fixture(scope="module")
def finished_run(tiny_encoder: str, toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from polytask.config import load_config
    from polytask.train import train

    root = tmp_path_factory.mktemp("contract-run")
    cfg = {"encoder": {"name": tiny_encoder, "max_length": 32},
           "datasets": {"d": {"format": "csv", "train": str(toy_data / "sentiment_train.csv"),
                              "validation": str(toy_data / "sentiment_dev.csv"), "text": "sentence"}},
           "tasks": {"t": CLASSIFY}, "evaluation": {"every_steps": 2},
           "train": {"output_dir": str(root / "out"), "max_steps": 4, "batch_size": 16, "seed": 7,
                     "lr": 3e-3, "progress_bar": False}}
    path = write_yaml(root / "run.yaml", cfg)
    result = train(load_config(path))
    return path, result.best_dir


@pytest.fixture
def ctx(tmp_path: Path, toy_data: Path, tiny_encoder: str, finished_run: tuple[Path, Path]) -> Ctx:
    return Ctx(tmp_path, toy_data, tiny_encoder, *finished_run)


# -- validate ---------------------------------------------------------------------------------------------------------
@case("validate")
def missing_config(c: Ctx):
    return ["validate", str(c.tmp / "nope.yaml")], ["nope.yaml", "file not found"]


@case("validate")
def yaml_syntax(c: Ctx):
    (c.tmp / "bad.yaml").write_text("tasks:\n  a: {type: classification\n", encoding="utf-8")
    return ["validate", str(c.tmp / "bad.yaml")], ["bad.yaml", "line 3, column 1", "invalid YAML"]


@case("validate")
def tasks_as_a_list(c: Ctx):
    path = write_yaml(c.tmp / "c.yaml", {"datasets": {"d": sentiment(c)}, "tasks": [{"name": "t", **CLASSIFY}]})
    return ["validate", str(path)], ["tasks: must be a mapping name -> settings, e.g.", "found a list"]


@case("validate")
def non_finite_lr(c: Ctx):
    return (["validate", str(one_task(c, sentiment(c), CLASSIFY)), "train.lr=.inf"],
            ["train.lr", "value inf", "not a finite number", "allowed: a finite number"])


@case("validate")
def max_length_over_position_table(c: Ctx):
    return (["validate", str(one_task(c, sentiment(c), CLASSIFY)), "encoder.max_length=512"],
            ["encoder.max_length", "value 512", "max_position_embeddings is 128", "allowed: 8-128"])


@case("validate")
def task_max_length_over_position_table(c: Ctx):
    squad = {"format": "squad", "train": str(c.data / "sentiment_train.csv"), "text": "question",
             "text_pair": "context"}
    path = one_task(c, squad, {"type": "span_qa", "dataset": "d", "max_length": 4096})
    return ["validate", str(path)], ["tasks.t.max_length", "value 4096", "allowed: 8-128"]


@case("validate")
def encoder_folder_not_found(c: Ctx):
    return (["validate", str(one_task(c, sentiment(c), CLASSIFY)), "encoder.name=./no/such/encoder"],
            ["encoder.name", "folder not found", "no/such/encoder"])


@case("validate")
def selection_metric_without_validation(c: Ctx):
    path = one_task(c, sentiment(c), CLASSIFY, evaluation={"metric": "t/accuracy"})
    return ["validate", str(path)], ["evaluation.metric", "'t/accuracy'", "dataset 'd' has no validation split"]


@case("validate")
def override_without_value(c: Ctx):
    return (["validate", str(one_task(c, sentiment(c), CLASSIFY)), "train.lr"],
            ["<command line>", "override 'train.lr' is not KEY=VALUE"])


@case("validate")
def conll_token_with_a_space(c: Ctx):
    (c.tmp / "ner.conll").write_text("fly O\nto O\nNew York B-city\n", encoding="utf-8")
    path = one_task(c, {"format": "conll", "train": str(c.tmp / "ner.conll"), "text": "tokens"},
                    {"type": "token_classification", "dataset": "d", "label": "tags"})
    return ["validate", str(path)], ["ner.conll:3", "value 'New York B-city'", "3 columns", "allowed: 2 columns"]


@case("validate")
def jsonl_label_types_mixed(c: Ctx):
    (c.tmp / "t.jsonl").write_text('{"text": "good", "label": "1"}\n{"text": "bad", "label": 1}\n', encoding="utf-8")
    path = one_task(c, {"format": "jsonl", "train": str(c.tmp / "t.jsonl")}, CLASSIFY)
    return ["validate", str(path)], ["t.jsonl:2", "field 'label'", "value 1", "t.jsonl:1 holds '1', a string",
                                     "allowed: labels of one type"]


@case("validate")
def regression_boolean(c: Ctx):
    (c.tmp / "r.jsonl").write_text('{"text": "good", "score": true}\n{"text": "bad", "score": 0.5}\n',
                                   encoding="utf-8")
    path = one_task(c, {"format": "jsonl", "train": str(c.tmp / "r.jsonl")},
                    {"type": "regression", "dataset": "d", "label": "score"})
    return ["validate", str(path)], ["r.jsonl:1", "field 'score'", "value True", "a boolean is not a number",
                                     "allowed: a real number"]


# -- train ------------------------------------------------------------------------------------------------------------
@case("train")
def resume_with_a_changed_config(c: Ctx):
    return (["train", str(c.run), "train.lr=0.001", "train.seed=3", "--resume", str(c.ckpt.parent / "last")],
            ["cannot resume exactly", "train.lr: 0.003 -> 0.001", "train.seed: 7 -> 3", "Keys that may differ"])


@case("train")
def resume_folder_not_found(c: Ctx):
    return (["train", str(c.run), "--resume", str(c.tmp / "nowhere")],
            ["nowhere", "--resume folder not found"])


# -- evaluate / export / predict / serve ------------------------------------------------------------------------------
@case("evaluate")
def split_dev(c: Ctx):
    return (["evaluate", str(c.ckpt), "--split", "dev"],
            ["--split", "value 'dev'", "unknown split", "allowed: train, validation, test"])


@case("evaluate")
def precision_fp16(c: Ctx):
    return (["evaluate", str(c.ckpt), "--precision", "fp16"],
            ["--precision", "value 'fp16'", "allowed: fp32, bf16"])


@case("evaluate")
def not_a_checkpoint(c: Ctx):
    return ["evaluate", str(c.tmp)], [str(c.tmp), "not a polytask checkpoint (no config.json)"]


@case("evaluate")
def task_type_not_registered(c: Ctx):
    ckpt = shutil.copytree(c.ckpt, c.tmp / "ckpt")
    config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    config["tasks"]["t"]["params"]["type"] = "my_plugin_task"
    (ckpt / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return (["evaluate", str(ckpt)], ["task 't' has type 'my_plugin_task', which is not registered",
                                      "available: classification", "load a plugin with `polytask --code FILE.py|MODULE",
                                      "entry point group 'polytask.plugins'"])


@case("calibrate")
def calibrate_coverage_share_out_of_range(c: Ctx):
    return (["calibrate", str(c.ckpt), "--coverage", "t=1.5"],
            ["--coverage 't=1.5'", "TASK=SHARE with 0 < SHARE <= 1"])


@case("calibrate")
def calibrate_coverage_unknown_task(c: Ctx):
    return (["calibrate", str(c.ckpt), "--coverage", "intent=0.9"],
            ["--coverage", "unknown task(s) intent", "available: t"])


@case("calibrate")
def calibrate_split_dev(c: Ctx):
    return (["calibrate", str(c.ckpt), "--split", "dev"],
            ["--split", "value 'dev'", "allowed: train, validation, test"])


@case("calibrate")
def calibrate_precision_fp16(c: Ctx):
    return (["calibrate", str(c.ckpt), "--precision", "fp16"],
            ["--precision", "value 'fp16'", "allowed: fp32, bf16"])


@case("export")
def export_split_dev(c: Ctx):
    return (["export", str(c.ckpt), "--quantize", "int8", "--split", "dev"],
            ["--split", "value 'dev'", "allowed: train, validation, test"])


@case("export")
def export_format(c: Ctx):
    return ["export", str(c.ckpt), "--format", "tflite"], ["--format", "value 'tflite'", "allowed: onnx, hf"]


@case("export")
def export_hf_mean_pooling(c: Ctx):
    return (["export", str(c.ckpt), "--format", "hf", "--task", "t", "--out", str(c.tmp / "hf")],
            ["task 't'", "encoder.pooling: mean", "Train with encoder.pooling: cls"])


@case("export")
def export_hf_unknown_task(c: Ctx):
    return (["export", str(c.ckpt), "--format", "hf", "--task", "intent"],
            ["--task", "value 'intent'", "not a task of the checkpoint", "allowed: t"])


@case("push")
def push_repo_id(c: Ctx):
    return (["push", str(c.ckpt), "me/bad..name", "--dry-run"],
            ["REPO_ID", "value 'me/bad..name'", "not a Hub repository id", "allowed: NAME or OWNER/NAME"])


@case("push")
def push_not_a_checkpoint(c: Ctx):
    return ["push", str(c.tmp), "me/model", "--dry-run"], [str(c.tmp), "not a polytask checkpoint (no config.json)"]


@case("export")
def export_quantize(c: Ctx):
    return ["export", str(c.ckpt), "--quantize", "int4"], ["--quantize", "value 'int4'", "allowed: int8"]


@case("predict")
def predict_precision(c: Ctx):
    return ["predict", str(c.ckpt), "hi", "--precision", "fp16"], ["--precision", "value 'fp16'", "fp32, bf16"]


@case("predict")
def predict_missing_input(c: Ctx):
    return (["predict", str(c.ckpt), "--input", str(c.tmp / "in.txt"), "--output", str(c.tmp / "o.jsonl")],
            ["in.txt", "no such file"])


@case("serve")
def serve_not_a_checkpoint(c: Ctx):
    return ["serve", str(c.tmp / "none")], ["none", "not a polytask checkpoint"]


# -- baseline / compare / report --------------------------------------------------------------------------------------
@case("baseline")
def budget_unknown(c: Ctx):
    return ["baseline", str(c.run), "--budget", "hours"], ["--budget", "value 'hours'", "allowed: passes, steps"]


@case("baseline")
def seeds_not_integers(c: Ctx):
    return ["baseline", str(c.run), "--seeds", "one,two"], ["--seeds 'one,two'", "e.g. 1,2,3"]


@case("compare")
def compare_split(c: Ctx):
    return ["compare", str(c.tmp), "--split", "train"], ["--split", "value 'train'", "allowed: test, validation"]


@case("compare")
def compare_no_summary(c: Ctx):
    return ["compare", str(c.tmp)], [str(c.tmp), "no compare/summary.json"]


@case("report")
def report_no_metrics(c: Ctx):
    return ["report", str(c.tmp)], [str(c.tmp), "no metrics.jsonl"]


@case("add-task")
def add_task_clashing_name(c: Ctx) -> tuple[list[str], list[str]]:
    path = one_task(c, sentiment(c), {"type": "regression", "dataset": "d", "label": "label"})
    return ["add-task", str(c.ckpt), str(path)], ["task name(s) t exist in", "with another type"]


@case("add-task")
def add_task_not_a_checkpoint(c: Ctx) -> tuple[list[str], list[str]]:
    path = one_task(c, sentiment(c), CLASSIFY)
    return ["add-task", str(c.tmp), str(path)], [str(c.tmp), "not a polytask checkpoint (no config.json)"]


@case("finetune")
def finetune_unknown_task(c: Ctx) -> tuple[list[str], list[str]]:
    return ["finetune", str(c.ckpt), "--tasks", "nope"], ["--tasks: nope not in the checkpoint's run config",
                                                          "(it has t)"]


@case("finetune")
def finetune_unknown_scope(c: Ctx) -> tuple[list[str], list[str]]:
    return ["finetune", str(c.ckpt), "--scope", "layers"], ["unknown --scope 'layers'", "available: heads, full"]


@case("distill")
def distill_teacher_not_a_checkpoint(c: Ctx) -> tuple[list[str], list[str]]:
    return ["distill", str(c.run), "--teachers", str(c.tmp)], [
        "distillation.teachers: not a polytask checkpoint folder (no config.json)", str(c.tmp)]


@case("distill")
def distill_teacher_without_the_tasks(c: Ctx) -> tuple[list[str], list[str]]:
    path = one_task(c, sentiment(c), {"type": "classification", "dataset": "d", "label": "label"},
                    tasks={"other": CLASSIFY})
    return ["distill", str(path), "--teachers", str(c.ckpt)], ["distillation: no teacher holds a task of this config",
                                                               "tasks: other"]


@case("affinity")
def affinity_without_measurements(c: Ctx) -> tuple[list[str], list[str]]:
    return ["affinity", str(c.run.parent / "out")], ["no affinity measurements",
                                                     "train.affinity_every: N (e.g. 10)"]


@case("affinity")
def affinity_not_a_run(c: Ctx) -> tuple[list[str], list[str]]:
    return ["affinity", str(c.tmp)], [str(c.tmp), "no metrics.jsonl (is it a run's output_dir?)"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_user_error_exits_2_with_a_complete_message(name: str, ctx: Ctx) -> None:
    args, fragments = CASES[name](ctx)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (name, result.output, result.exception)
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    for fragment in fragments:
        assert " ".join(fragment.split()) in text, (name, fragment, result.output)


def test_every_command_has_a_case() -> None:
    # list takes no input; demo builds its own config from packaged data and checks it with validate_config
    # (the validate cases), after preparing that data, too slow for this table
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}  # type: ignore[union-attr]
    covered = {name.split(":")[0] for name in CASES}
    assert commands - {"list", "demo"} <= covered, sorted(commands - {"list", "demo"} - covered)


def test_library_errors_are_polytask_errors_and_keep_their_old_bases() -> None:
    unknown = UnknownNameError("task type", "x", ["a"])
    assert isinstance(unknown, PolytaskError) and isinstance(unknown, KeyError)
    assert str(unknown) == "unknown task type 'x'; available: a"
    assert issubclass(NonFiniteLossError, PolytaskError) and issubclass(NonFiniteLossError, FloatingPointError)
