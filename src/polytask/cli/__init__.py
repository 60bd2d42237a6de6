"""``polytask`` command line: a thin layer over the library functions.

``app`` (the console entry point ``polytask.cli:app``) lives in :mod:`polytask.cli.common`; the commands are in
:mod:`~polytask.cli.training` (validate, train, add-task, distill, evaluate, calibrate),
:mod:`~polytask.cli.serving` (predict, serve, export, push), :mod:`~polytask.cli.experiments` (baseline, finetune,
affinity, compare, report) and :mod:`~polytask.cli.tour` (demo, list). Importing them registers the commands, in
the order ``polytask --help`` lists them.
"""

from __future__ import annotations

from polytask.cli.common import app, console, err_console, main
from polytask.cli.training import add_task, calibrate, distill, evaluate, train, validate
from polytask.cli.serving import export, predict, push, serve
from polytask.cli.experiments import affinity, baseline, compare, finetune, report
from polytask.cli.tour import demo, list_plugins

__all__ = ["add_task", "affinity", "app", "baseline", "calibrate", "compare", "console", "demo", "distill",
           "err_console", "evaluate", "export", "finetune", "list_plugins", "main", "predict", "push", "report",
           "serve", "train", "validate"]
