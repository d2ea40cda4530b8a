"""A network that latent-evo does not ship, registered as a task: what `--import` loads.

latent-evo --import examples/own-model/my_tasks.py zoo generate --config examples/own-model/zoo.yaml
"""

from torch import nn

from latent_evo.tasks import TaskEntry, register_task


class LayerNormMLP(nn.Module):
    """Linear -> LayerNorm -> GELU -> Linear on MNIST-1D's 40 inputs."""

    def __init__(self, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(40, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x):
        return self.net(x)


# family: your own factory; model: its keyword arguments; task: Task defaults. The dataset is a
# built-in loader (mnist1d | digits | text | mnist | cifar10 | cifar100, the last three from a
# local root). overwrite=True: importing this file twice in one process is harmless.
register_task(
    "mnist1d-layernorm-mlp",
    TaskEntry("mnist1d", LayerNormMLP, {"hidden": 64}, {"fitness_batch_size": 1000},
              description="MNIST-1D, Linear-LayerNorm-GELU-Linear (user-defined)"),
    overwrite=True,
)  # fmt: skip
