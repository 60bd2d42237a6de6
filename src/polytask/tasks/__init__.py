"""Task types. Importing this package registers every built-in type in ``TASKS``."""

from polytask.tasks import (classification, dialogue_state, regression,  # noqa: F401  (registration)
                            relation_classification, relation_extraction, seq2seq, span_qa,
                            token_classification)
from polytask.tasks.base import TASKS, Task, TaskParams

__all__ = ["TASKS", "Task", "TaskParams", "build_task"]


def build_task(name: str, params: TaskParams) -> Task:
    return TASKS.get(params.type)(name, params)
