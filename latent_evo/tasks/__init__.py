"""Tasks: a dataset + a model family + a loss, evaluated for a whole population at once.

`Task` is what the evolution loop needs of any problem (a `typing.Protocol`, `protocol.py`).
`get_task(name, **overrides)` builds a registered task (`list_tasks()` names them);
`SupervisedTask` builds one from your own module and labelled data (see `latent_evo.tasks.base`);
`FunctionTask` from your own module and a fitness function of one network.

    protocol.py   Task, and the optional MinibatchTask, StatefulTask, CountingTask
    base.py       SupervisedTask: vmapped population fitness, test metrics, init genomes
    function.py   FunctionTask, and the checks every fitness passes
    lora.py       LoRATask: the genome is low-rank adapters of a base task's network
    registry.py   named tasks (MNIST-1D, digits, text) and `register_task`
    data.py       the offline datasets (MNIST-1D generated, scikit-learn digits, a text corpus)
    sgd.py        Adam on the same architecture: the gradient reference
    episodic.py   EpisodicTask: a policy + a Gymnasium environment, P x E episodes per rollout
"""

from latent_evo.tasks.base import SupervisedTask, bits_per_token, cross_entropy
from latent_evo.tasks.episodic import EpisodicTask  # torch only: gymnasium loads with an env
from latent_evo.tasks.function import FitnessShapeError, FunctionTask
from latent_evo.tasks.protocol import CountingTask, MinibatchTask, StatefulTask, Task
from latent_evo.tasks.registry import (
    TASKS,
    TaskEntry,
    get_task,
    list_tasks,
    register_task,
    text_windows,
)

__all__ = [
    "CountingTask",
    "EpisodicTask",
    "FitnessShapeError",
    "FunctionTask",
    "MinibatchTask",
    "StatefulTask",
    "SupervisedTask",
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
