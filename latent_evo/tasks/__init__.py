"""Tasks: a dataset + a model family + a loss, evaluated for a whole population at once.

`get_task(name, **overrides)` builds a registered task (`list_tasks()` names them); `Task` builds
one from your own module and data (see `latent_evo.tasks.base`).
"""

from latent_evo.tasks.base import Task, bits_per_token, cross_entropy
from latent_evo.tasks.registry import (
    TASKS,
    TaskEntry,
    get_task,
    list_tasks,
    register_task,
    text_windows,
)

__all__ = [
    "TASKS",
    "Task",
    "TaskEntry",
    "bits_per_token",
    "cross_entropy",
    "get_task",
    "list_tasks",
    "register_task",
    "text_windows",
]
