"""`SupervisedTask`: a dataset + a model family + a loss, evaluated for a whole population of genomes at once.

The population's weights come as stacked tensors `{name: (P, *shape)}` (see `GenomeSpec.unflatten`);
`fitness` runs `torch.func.functional_call` under `torch.func.vmap`, in chunks of the population
so the working set stays small (see `auto_chunk_size`). Fitness is a loss to *minimise*.

Minimum a user writes for their own task::

    task = SupervisedTask("my-task", model=lambda: MyNet(), train_data=(x_train, y_train),
                test_data=(x_test, y_test))                     # cross-entropy + accuracy

`model` is an `nn.Module` or, better, a zero-argument factory (then `init_genomes` uses the
model's own initialisation; with a module it re-runs `reset_parameters()` of its submodules).
Pass `loss_fn(logits, targets) -> scalar` for another loss, `kind="lm"` for next-token prediction.

Conventions:
  * Eval mode always: dropout is off, BatchNorm normalises with the running statistics stored in
    the genome's buffers (`running_mean`/`running_var` are part of `GenomeSpec.from_module`).
  * Non-finite fitness (NaN/inf weights or overflow) becomes `worst_fitness` (default 1e9, finite
    so that mean/std fitness shaping stays finite) and is counted in `nonfinite_count`.
  * `batch=None` means the task's fixed fitness batch: the whole training split when
    `fitness_batch_size` is None, else a fixed sample drawn with `seed`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from latent_evo.genome import GenomeSpec

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs (B, ...), targets (B, ...))
Params = dict[str, torch.Tensor]  # {name: (P, *shape)}

LN2 = math.log(2.0)
# Working-set budget per vmapped chunk on CPU, about half a server L3 (32 MiB on the dev EPYC):
# chunks that stay in cache beat one giant vmap (hundreds of MB of temporaries, 5x slower than
# chunks of 4-16 MLPs here) and a Python loop (see benchmarks/results/tasks.md).
CPU_CHUNK_BYTES = 16 * 2**20


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats; logits `(B, C)` or `(B, T, C)` with targets `(B,)` / `(B, T)`."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def bits_per_token(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits (bits per character for char-level models)."""
    return cross_entropy(logits, targets) / LN2


def reinitialised(module: nn.Module) -> nn.Module:
    """A module re-initialised: its own `reset_parameters()` when it has one (a model that
    initialises itself as a whole, e.g. a policy's small output layer), else each submodule's."""
    if "reset_parameters" in type(module).__dict__:
        module.reset_parameters()
        return module
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return module


def chunked_losses(
    task: Any, genomes: torch.Tensor, data: Batch, chunks: int, metric: str
) -> torch.Tensor:
    """`(P, chunks)`: `task`'s loss (`fitness_genomes`) or error rate (1 - `metrics` accuracy)
    of `genomes (P, n)` on each of `chunks` contiguous parts of `data`, the same parts for all."""
    x, y = data
    parts = list(zip(x.tensor_split(chunks), y.tensor_split(chunks), strict=True))
    with torch.no_grad():
        if metric == "error":
            params = task.params(genomes)
            return torch.stack([1 - task.metrics(params, p)["accuracy"] for p in parts], dim=1)
        return torch.stack([task.fitness_genomes(genomes, p) for p in parts], dim=1)


def seeded_genomes(
    spec: GenomeSpec,
    build: Callable[[], nn.Module],
    population: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """`(P, n)` fresh initialisations: `build()` (a network with its own init) once per member,
    under a seed drawn from `generator`, so the same generator state gives the same population;
    torch's global RNG is left as it was."""
    seeds = torch.randint(0, 2**62, (population,), generator=generator).tolist()
    out = torch.empty(population, spec.numel, dtype=spec.dtype)
    for i, s in enumerate(seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            out[i] = spec.flatten(build().state_dict())
    return out


class SupervisedTask:
    def __init__(
        self,
        name: str,
        model: nn.Module | Callable[[], nn.Module],
        train_data: Batch,
        test_data: Batch,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        kind: Literal["classification", "lm"] = "classification",
        batch_size: int = 256,
        fitness_batch_size: int | None = None,
        eval_batch_size: int = 1024,
        seed: int = 0,
        device: str | torch.device | None = None,
        chunk_size: int | None = None,
        chunk_bytes: int | None = None,
        vectorize: bool = True,
        worst_fitness: float = 1e9,
    ):
        if kind not in ("classification", "lm"):
            raise ValueError(f"task kind must be 'classification' or 'lm', got {kind!r}")
        for split, data in (("train_data", train_data), ("test_data", test_data)):
            if len(data) != 2 or len(data[0]) != len(data[1]) or len(data[0]) == 0:
                raise ValueError(
                    f"{split} must be a non-empty (inputs, targets) pair of equal length"
                )
        self.name = name
        self.kind = kind
        self.loss_fn = loss_fn or (bits_per_token if kind == "lm" else cross_entropy)
        self.batch_size = batch_size
        self.fitness_batch_size = fitness_batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.chunk_size = chunk_size  # None: auto_chunk_size() per call
        self.chunk_bytes = chunk_bytes
        self.vectorize = vectorize
        self.worst_fitness = float(worst_fitness)
        self.nonfinite_count = 0  # genomes whose fitness was non-finite, over all fitness() calls
        if isinstance(model, nn.Module):
            template = model
            self._model_fn = lambda: reinitialised(copy.deepcopy(template).cpu())
        else:
            self._model_fn = model
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the template is the same network for the same seed
                template = model()
        self.model: nn.Module = template.eval()
        self.spec = GenomeSpec.from_module(self.model)
        self._buffer_names = {t.name for t in self.spec if t.kind == "buffer"}
        self.train_data: Batch = tuple(train_data)
        self.val_data: Batch | None = None  # set by hold_out
        self._all_train: Batch | None = None  # the training split before hold_out
        self.test_data: Batch = tuple(test_data)
        self._fixed_batch: Batch | None = None
        self._act_per_example: int | None = None
        self.device = torch.device("cpu")
        self.to(device or self.model_device())

    # ---- placement ----------------------------------------------------------------------------
    def model_device(self) -> torch.device:
        return next(iter(self.model.parameters())).device

    def to(self, device: str | torch.device) -> SupervisedTask:
        self.device = torch.device(device)
        self.model.to(self.device)
        self.train_data = tuple(t.to(self.device) for t in self.train_data)
        if self.val_data is not None:
            self.val_data = tuple(t.to(self.device) for t in self.val_data)
            self._all_train = tuple(t.to(self.device) for t in self._all_train)
        self.test_data = tuple(t.to(self.device) for t in self.test_data)
        self._fixed_batch = None
        return self

    def __repr__(self) -> str:
        return (
            f"SupervisedTask({self.name!r}, {type(self.model).__name__}, {self.spec.numel:,} params, "
            f"{len(self.train_data[0])} train / {len(self.test_data[0])} test, {self.device})"
        )

    # ---- genomes ------------------------------------------------------------------------------
    def init_genomes(
        self, population: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """`(P, n)` fresh random initialisations, one seed per individual drawn from `generator`."""
        return seeded_genomes(self.spec, self._model_fn, population, generator).to(self.device)

    def genome(self) -> torch.Tensor:
        """`(n,)` the template model's weights."""
        return self.spec.flatten(self.model.state_dict())

    def params(self, genomes: torch.Tensor) -> Params:
        """`(P, n)` or `(n,)` -> `{name: (P, *shape)}` zero-copy views."""
        if genomes.dim() == 1:
            genomes = genomes.unsqueeze(0)
        return self.spec.unflatten(genomes)

    # ---- batches ------------------------------------------------------------------------------
    def sample_batch(
        self, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> Batch:
        """A minibatch of training examples without replacement; indices are drawn on CPU, so the
        same generator state gives the same batch on every device."""
        n = len(self.train_data[0])
        size = min(batch_size or self.batch_size, n)
        idx = torch.randperm(n, generator=generator)[:size].to(self.device)
        return self.train_data[0][idx], self.train_data[1][idx]

    def batch(self, step_or_generator: int | torch.Generator, size: int | None = None) -> Batch:
        """`batch(step)` is a pure function of (task seed, step); a generator is used as is.
        `size` examples (default `batch_size`)."""
        if isinstance(step_or_generator, torch.Generator):
            return self.sample_batch(step_or_generator, size)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(step_or_generator))
        return self.sample_batch(gen, size)

    def fitness_batch(self) -> Batch:
        """The fixed batch used when `fitness(batch=None)`."""
        if self._fixed_batch is None:
            if self.fitness_batch_size is None:
                self._fixed_batch = self.train_data
            else:
                gen = torch.Generator().manual_seed(self.seed)
                self._fixed_batch = self.sample_batch(gen, self.fitness_batch_size)
        return self._fixed_batch

    # ---- validation ---------------------------------------------------------------------------
    def hold_out(self, fraction: float, seed: int) -> None:
        """`fraction` of the training examples (a seeded draw) become `val_data`; fitness
        batches come from the rest. Re-splits the original training data when called again."""
        full = self._all_train if self._all_train is not None else self.train_data
        n = len(full[0])
        k = round(fraction * n)
        if not 0 < k < n:
            raise ValueError(
                f"task {self.name!r}: validation fraction {fraction} of {n} training examples "
                "leaves no validation or no training example"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(self.device)
        self._all_train = full
        self.val_data = (full[0][perm[:k]], full[1][perm[:k]])
        self.train_data = (full[0][perm[k:]], full[1][perm[k:]])
        self._fixed_batch = None

    def validation_losses(
        self, genomes: torch.Tensor, chunks: int, metric: str = "loss"
    ) -> torch.Tensor:
        """`(P, n)` -> `(P, chunks)` mean loss (or error rate, `metric="error"`) on each of
        `chunks` contiguous parts of `val_data` (see `ValidatedTask`)."""
        if self.val_data is None:
            raise ValueError(f"task {self.name!r}: no validation set; call hold_out first")
        return chunked_losses(self, genomes, self.val_data, chunks, metric)

    # ---- chunking -----------------------------------------------------------------------------
    def activations_per_example(self) -> int:
        """Elements of all module outputs for one example (a proxy for vmap's working set)."""
        if self._act_per_example is None:
            total = 0

            def hook(_m, _i, out):
                nonlocal total
                for t in out if isinstance(out, tuple) else (out,):
                    if torch.is_tensor(t):
                        total += t.numel()

            handles = [m.register_forward_hook(hook) for m in self.model.modules()]
            try:
                with torch.no_grad():
                    self.model(self.train_data[0][:1])
            finally:
                for h in handles:
                    h.remove()
            self._act_per_example = total
        return self._act_per_example

    def auto_chunk_size(self, population: int, batch_len: int) -> int:
        """Genomes per vmapped chunk: as many as fit a working-set budget.

        Per genome we count its weights plus ~3x the activations of the batch (outputs, their
        temporaries and the loss). Budget: `chunk_bytes`, else 16 MiB on CPU and a quarter of the
        free memory on CUDA.
        """
        itemsize = torch.finfo(self.spec.dtype).bits // 8
        per_genome = itemsize * (self.spec.numel + 3 * batch_len * self.activations_per_example())
        budget = self.chunk_bytes
        if budget is None:
            if self.device.type == "cuda":
                free, _total = torch.cuda.mem_get_info(self.device)
                budget = free // 4
            else:
                budget = CPU_CHUNK_BYTES
        return max(1, min(population, budget // per_genome))

    # ---- population evaluation ----------------------------------------------------------------
    def _as_params(self, params: Params | torch.Tensor) -> Params:
        params = self.params(params) if torch.is_tensor(params) else params
        # Buffers (BN running stats) are read, not learned: autograd cannot differentiate BN in
        # eval mode w.r.t. them, so they never carry a gradient, even when the genome does.
        return {k: v.detach() if k in self._buffer_names else v for k, v in params.items()}

    def _population_map(
        self, fn: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]], params, batch
    ) -> dict[str, torch.Tensor]:
        """`{name: (P, *shape)}` -> `{metric: (P,)}`: `fn(logits, targets)` per genome, chunked."""
        params = self._as_params(params)
        x, y = self.fitness_batch() if batch is None else batch
        population = next(iter(params.values())).shape[0]

        def one(p: Params) -> dict[str, torch.Tensor]:
            return fn(functional_call(self.model, p, (x,)), y)

        if not self.vectorize:
            outs = [one({k: v[i] for k, v in params.items()}) for i in range(population)]
            return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
        chunk = self.chunk_size or self.auto_chunk_size(population, len(x))
        batched = vmap(one)
        parts = [
            batched({k: v[s : s + chunk] for k, v in params.items()})
            for s in range(0, population, chunk)
        ]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def fitness(self, params: Params | torch.Tensor, batch: Batch | None = None) -> torch.Tensor:
        """`(P,)` loss to minimise (differentiable w.r.t. `params`); non-finite -> `worst_fitness`."""
        f = self._population_map(lambda out, y: {"loss": self.loss_fn(out, y)}, params, batch)
        return self._finite_fitness(f["loss"])

    def _finite_fitness(self, f: torch.Tensor) -> torch.Tensor:
        """Non-finite fitness -> `worst_fitness`, counted in `nonfinite_count`."""
        bad = ~torch.isfinite(f)
        n_bad = int(bad.sum())
        if n_bad:
            self.nonfinite_count += n_bad
            f = torch.where(bad, torch.full_like(f, self.worst_fitness), f)
        return f

    def _finite_metrics(self, m: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Members with a non-finite loss get `worst_fitness` for every metric, accuracy 0."""
        bad = ~torch.isfinite(m["loss"])
        if bad.any():
            for k, v in m.items():
                fill = 0.0 if k == "accuracy" else self.worst_fitness
                m[k] = torch.where(bad, torch.full_like(v, fill), v)
        return m

    def fitness_genomes(self, genomes: torch.Tensor, batch: Batch | None = None) -> torch.Tensor:
        """`(P, n)` genomes -> `(P,)` fitness."""
        return self.fitness(self.params(genomes), batch)

    def fitness_low_rank(
        self,
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
        batch: Batch | None = None,
        model: nn.Module | None = None,
        members_per_pass: int = 16,
    ) -> torch.Tensor:
        """`(P,)` fitness of a population of low-rank variants of one network, never building
        their weights: member p is `model` (default the task's own; `genome_to_module` gives one
        carrying another genome) with layer `name` changed by A_p B_pᵀ,
        `factors[name] = (A (P, out, r), B (P, in, r))` (`latent_evo.models.lowrank`). Equals
        `fitness_genomes` of the materialised members."""
        return self._finite_fitness(
            self._low_rank_map(factors, batch, model, members_per_pass, self.loss_fn)
        )

    def metrics_low_rank(
        self,
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
        batch: Batch | None = None,
        model: nn.Module | None = None,
        members_per_pass: int = 16,
    ) -> dict[str, torch.Tensor]:
        """`metrics` of a low-rank population (see `fitness_low_rank`)."""
        with torch.no_grad():
            m = self._low_rank_map(factors, batch, model, members_per_pass, self._metric_fn)
        return self._finite_metrics(m)

    def _low_rank_map(self, factors, batch, model, members_per_pass, fn):
        """`fn(logits, y)` of each low-rank member, `members_per_pass` members per forward."""
        from latent_evo.models.lowrank import low_rank_population

        x, y = self.fitness_batch() if batch is None else batch
        model = self.model if model is None else model
        population = next(iter(factors.values()))[0].shape[0]
        rows = []
        for s in range(0, population, members_per_pass):
            part = {k: (a[s : s + members_per_pass], b[s : s + members_per_pass])
                    for k, (a, b) in factors.items()}  # fmt: skip
            n = next(iter(part.values()))[0].shape[0]
            with low_rank_population(model, part):
                logits = model(x.repeat(n, *[1] * (x.dim() - 1)))  # (n * b, ...) member-major
            logits = logits.reshape(n, x.shape[0], *logits.shape[1:])  # (n, b, ...)
            rows += [fn(logits[i], y) for i in range(n)]
        if isinstance(rows[0], dict):
            return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
        return torch.stack(rows)

    def _metric_fn(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = self.loss_fn(out, y)
        m = {"loss": loss}
        if out.shape[:-1] == y.shape and not y.is_floating_point():  # class / next-token labels
            m["accuracy"] = (out.argmax(-1) == y).float().mean()
        if self.kind == "lm":
            m["bpc"] = loss
            m["perplexity"] = torch.exp2(loss)
        return m

    def metrics(self, params: Params | torch.Tensor, batch: Batch | None = None) -> dict:
        """`{metric: (P,)}`: loss (= fitness) plus accuracy; for `lm` also bpc and perplexity.
        Non-finite genomes get `worst_fitness` loss and zero accuracy (not counted here)."""
        with torch.no_grad():
            m = self._population_map(self._metric_fn, params, batch)
        return self._finite_metrics(m)

    def evaluate(self, genome: torch.Tensor) -> dict[str, float]:
        """Test-split metrics of one `(n,)` genome: test_loss, test_accuracy (+ test_bpc,
        test_perplexity for `lm`), averaged over the whole test split."""
        if genome.dim() != 1:
            raise ValueError(f"evaluate takes one (n,) genome, got shape {tuple(genome.shape)}")
        params = self.params(genome.to(self.device))
        x, y = self.test_data
        sums: dict[str, float] = {}
        for s in range(0, len(x), self.eval_batch_size):
            xb, yb = x[s : s + self.eval_batch_size], y[s : s + self.eval_batch_size]
            for k, v in self.metrics(params, (xb, yb)).items():
                sums[k] = sums.get(k, 0.0) + float(v[0]) * len(xb)
        out = {f"test_{k}": v / len(x) for k, v in sums.items()}
        if self.kind == "lm":  # perplexity of the mean loss, not the mean of perplexities
            out["test_perplexity"] = 2.0 ** out["test_bpc"]
        return out
