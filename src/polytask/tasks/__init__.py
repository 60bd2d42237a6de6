"""Task types. Importing this package registers every built-in type in ``TASKS``."""

from polytask.tasks import classification, regression, token_classification  # noqa: F401  (registration)
from polytask.tasks.base import TASKS, DecodeContext, Task, TaskParams

__all__ = ["TASKS", "DecodeContext", "Task", "TaskParams", "build_task"]


def build_task(name: str, params: TaskParams) -> Task:
    return TASKS.get(params.type)(name, params)
