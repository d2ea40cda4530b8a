"""A generator search space: a small coordinate-query generator whose weights are the genome.

HyperNetworks (Ha, Dai & Le 2016) generate a network's weights with another network; evolving
the generator instead of the weights ("a hypernetwork trained by a GA") needs no zoo and no
pretraining. Here the generator is a tiny MLP queried once per entry of every target tensor:

    entry (tensor t, row r, column c)  ->  [fourier(r), fourier(c), embed_t]  ->  MLP  ->  v
    weight = offset_t + scale_t * exp(log_gain_t) * standardise(v)   (per output unit's fan-in)

`r` is the output index, `c` the input index (a conv kernel's remaining dims flattened, as in
its row-major layout), both normalised to [-1, 1]; `embed_t` is a learned vector per tensor, so
one shared MLP can emit different tensors. `scale_t` is the std of the task's own init for that
tensor, so the MLP works in O(1) units whatever the layer's fan-in. Float buffers that are not
trained (BatchNorm running statistics) are emitted as their init values, never generated.

The strategy searches the flat vector `theta` (d,) of [log gains | embeddings | MLP layers],
with d far below the target's n (<= n / 4 for the default config on the small tasks).

    space = GeneratorSpace(task)                      # d = space.dim
    s = get_strategy("snes", dim=space.dim, popsize=32); s.init(mean=space.initial_mean())
    f = task.fitness_genomes(space.to_genomes(s.ask()))
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent_evo.evolution.config import GeneratorConfig
from latent_evo.evolution.spaces import SearchSpace
from latent_evo.genome import GenomeSpec
from latent_evo.tasks.protocol import Task

# activation -> gain of the Kaiming-style init (keeps the hidden activations O(1))
_ACTIVATIONS = {
    "tanh": (torch.tanh, 5.0 / 3.0),
    "relu": (F.relu, math.sqrt(2.0)),
    "gelu": (F.gelu, math.sqrt(2.0)),
    "silu": (F.silu, math.sqrt(2.0)),
}


def _axis_features(length: int, n_freqs: int) -> Tensor:
    """`(length, 2 * n_freqs)` sin/cos features of the index normalised to [-1, 1]."""
    pos = torch.linspace(-1.0, 1.0, length) if length > 1 else torch.zeros(1)  # (L,)
    top = max(length - 1, 1)  # pi/2 * (L - 1): adjacent indices half a period apart (Nyquist)
    expo = torch.arange(n_freqs) / max(n_freqs - 1, 1)
    freqs = (math.pi / 2) * top**expo  # (K,)
    ang = pos[:, None] * freqs[None, :]  # (L, K)
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)  # (L, 2K)


def _default_values(spec: Any, reference: Tensor | None, cfg: GeneratorConfig):
    """Per tensor: (offset, scale) of generated entries, or the constant values of a buffer."""
    parts = []
    fallback: dict[str, float] = {}  # module prefix -> its weight's std (for its bias)
    for t, off, k in zip(spec.tensors, spec.offsets, spec.numels, strict=True):
        ref = None if reference is None else reference[off : off + k].float()
        prefix = t.name.rsplit(".", 1)[0]
        if t.kind == "buffer":
            # without a reference, BatchNorm's defaults: running_var = 1, anything else 0
            fill = torch.full((k,), 1.0 if t.name.endswith("var") else 0.0)
            parts.append(("const", ref.clone() if ref is not None else fill))
            continue
        if t.kind == "norm":
            base = float(ref.mean()) if ref is not None else float(t.name.endswith("weight"))
            parts.append(("gen", (base, cfg.norm_scale)))
            continue
        # PyTorch's default init: U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in); a bias shares its
        # weight's bound
        fan_in = math.prod(t.shape[1:]) if len(t.shape) >= 2 else 0
        guess = 1.0 / math.sqrt(3 * fan_in) if fan_in else fallback.get(prefix, 0.1)
        if t.kind == "embedding" and ref is None:
            guess = 1.0  # nn.Embedding draws N(0, 1)
        std = float(ref.std(unbiased=False)) if ref is not None and k > 1 else 0.0
        scale = std if std > 0 and math.isfinite(std) else guess
        if len(t.shape) >= 2:
            fallback[prefix] = scale
        parts.append(("gen", (0.0, scale)))
    return parts


class CoordinateGenerator(nn.Module):
    """theta `(P, d)` -> genomes `(P, n)` of `spec`; buffers only, no trained parameters (theta
    is passed in, so a whole population is generated at once and gradients reach it)."""

    def __init__(
        self, spec: Any, cfg: GeneratorConfig | None = None, reference: Tensor | None = None
    ):
        super().__init__()
        self.spec, self.cfg = spec, cfg or GeneratorConfig()
        cfg = self.cfg
        if reference is not None and tuple(reference.shape) != (spec.numel,):
            raise ValueError(
                f"CoordinateGenerator: reference genome has shape {tuple(reference.shape)}, "
                f"expected ({spec.numel},)"
            )
        self.n = int(spec.numel)
        feats, tids, idx, offs, scales, groups = [], [], [], [], [], []
        n_groups = 0
        const = torch.zeros(self.n)
        defaults = _default_values(spec, reference, cfg)
        rows_of = zip(spec.tensors, spec.offsets, spec.numels, defaults, strict=True)
        for ti, (t, off, k, (what, val)) in enumerate(rows_of):
            if k == 0:
                continue
            if what == "const":
                const[off : off + k] = val
                continue
            rows = int(t.shape[0]) if t.shape else 1
            cols = k // rows
            fr = _axis_features(rows, cfg.n_freqs)  # (rows, 2K)
            fc = _axis_features(cols, cfg.n_freqs)  # (cols, 2K)
            # row-major entry order of the flattened tensor: entry r * cols + c
            grid = torch.cat(
                [fr[:, None, :].expand(rows, cols, -1), fc[None, :, :].expand(rows, cols, -1)],
                dim=2,
            ).reshape(k, -1)  # (rows, cols, 4K) -> (k, 4K)
            feats.append(grid)
            tids.append(torch.full((k,), ti, dtype=torch.long))
            idx.append(torch.arange(off, off + k))
            offs.append(torch.full((k,), val[0]))
            scales.append(torch.full((k,), val[1]))
            # standardisation group of each entry; -1: as emitted (norm parameters, scalars)
            if cfg.standardize == "none" or t.kind == "norm" or k < 2:
                groups.append(torch.full((k,), -1, dtype=torch.long))
            elif cfg.standardize == "row" and len(t.shape) >= 2 and cols >= 2:
                groups.append(n_groups + torch.arange(rows).repeat_interleave(cols))  # (k,)
                n_groups += rows
            else:
                groups.append(torch.full((k,), n_groups, dtype=torch.long))
                n_groups += 1
        if not feats:
            raise ValueError("CoordinateGenerator: the genome has no trainable tensor to generate")
        group = torch.cat(groups)  # (m,), m generated entries
        mask = group >= 0  # entries that are standardised
        counts = torch.zeros(max(n_groups, 1)).index_add_(
            0, group[mask], torch.ones(int(mask.sum()))
        )
        # features (m, 4K); tensor_id, gen_index (flat genome positions), offset, scale, std_mask,
        # group: (m,); const (n,): buffers' values, 0 where generated; group_count (G,)
        for k, v in (("features", torch.cat(feats)), ("tensor_id", torch.cat(tids)),
                     ("gen_index", torch.cat(idx)), ("offset", torch.cat(offs)),
                     ("scale", torch.cat(scales)), ("const", const), ("std_mask", mask),
                     ("group", group.clamp_min(0)), ("group_count", counts.clamp_min(1))):  # fmt: skip
            self.register_buffer(k, v)
        self.n_groups = n_groups
        self.m = int(self.gen_index.numel())
        self.act, self.gain = _ACTIVATIONS[cfg.activation]

        # the flat layout of theta: (name, shape), in order
        n_feat, h, e = 4 * cfg.n_freqs, cfg.hidden, cfg.embed
        # log_gain: a learned log-multiplier of each tensor's scale (init 0: the init's std), so
        # the search can grow weights beyond their init scale, which standardising fixes
        n_t = len(spec.tensors)
        layout: list[tuple[str, tuple[int, ...]]] = [("log_gain", (n_t,)), ("embed", (n_t, e))]
        layout += [("w0", (h, n_feat + e)), ("b0", (h,))]
        for i in range(1, cfg.layers):
            layout += [(f"w{i}", (h, h)), (f"b{i}", (h,))]
        layout += [("w_out", (1, h)), ("b_out", (1,))]
        self.layout = layout
        self.dim = sum(math.prod(s) for _, s in layout)

    @classmethod
    def from_task(cls, task: Task, cfg: GeneratorConfig | None = None) -> CoordinateGenerator:
        """Scales and buffer values from the task's template network (its default init)."""
        reference = task.spec.flatten(task.model.state_dict())  # (n,) the template's weights
        return cls(task.spec, cfg, reference.detach().cpu()).to(task.device)

    def unpack(self, theta: Tensor) -> dict[str, Tensor]:
        """`(P, d)` -> `{name: (P, *shape)}` views of theta's layout."""
        self.check_theta(theta)
        out, off = {}, 0
        for name, shape in self.layout:
            k = math.prod(shape)
            out[name] = theta[:, off : off + k].reshape(theta.shape[0], *shape)  # (P, *shape)
            off += k
        return out

    def check_theta(self, theta: Tensor) -> None:
        if not torch.is_tensor(theta) or theta.dim() != 2 or theta.shape[1] != self.dim:
            shape = tuple(theta.shape) if torch.is_tensor(theta) else type(theta).__name__
            raise ValueError(f"generator theta must be (P, {self.dim}) (width {self.dim} = the "
                             f"generator's parameters), got {shape}")  # fmt: skip
        if not theta.is_floating_point():
            raise ValueError(f"generator theta must be a floating tensor, got {theta.dtype}")

    def raw(self, theta: Tensor) -> Tensor:
        """`(P, d)` -> `(P, m)` the MLP's output for every generated entry (before scaling)."""
        p = self.unpack(theta)
        P, n_feat = theta.shape[0], self.features.shape[1]
        w0 = p["w0"]  # (P, H, 4K + E)
        wf, we = w0[..., :n_feat], w0[..., n_feat:]
        # the embedding is constant within a tensor: its first-layer term once per tensor
        per_tensor = torch.einsum("pte,phe->pth", p["embed"], we) + p["b0"][:, None, :]  # (P,T,H)
        hidden = self.cfg.hidden
        chunk = max(1, self.cfg.max_chunk_elements // (P * hidden))
        outs = []
        for s in range(0, self.m, chunk):
            f = self.features[s : s + chunk].to(theta.dtype)  # (c, 4K)
            h = torch.einsum("cf,phf->pch", f, wf) + per_tensor[:, self.tensor_id[s : s + chunk]]
            h = self.act(h)  # (P, c, H)
            for i in range(1, self.cfg.layers):
                h = self.act(torch.baddbmm(p[f"b{i}"][:, None, :], h, p[f"w{i}"].transpose(1, 2)))
            v = torch.baddbmm(p["b_out"][:, None, :], h, p["w_out"].transpose(1, 2))  # (P, c, 1)
            outs.append(v.squeeze(-1))  # (P, c)
        return torch.cat(outs, dim=1)  # (P, m)

    def values(self, theta: Tensor) -> Tensor:
        """`(P, d)` -> `(P, m)` the generated entries: offset + scale * gain * standardised MLP."""
        self.check_theta(theta)
        if self.features.device != theta.device:
            self.to(theta.device)
        v = self.raw(theta)  # (P, m)
        if self.n_groups:
            P, G = v.shape[0], self.group_count.numel()
            g, mask = self.group, self.std_mask

            def group_mean(x: Tensor) -> Tensor:  # (P, m) -> (P, G), over standardised entries
                x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
                return x.new_zeros(P, G).index_add_(1, g, x) / self.group_count

            c = v - group_mean(v)[:, g]  # (P, m)
            # eps: a group the MLP emits as a constant becomes 0, not NaN
            z = c / torch.sqrt(group_mean(c.square())[:, g] + 1e-12)
            v = torch.where(mask, z, v)
        gain = torch.exp(self.unpack(theta)["log_gain"])[:, self.tensor_id]  # (P, m)
        return self.offset + self.scale * gain * v

    def generate(self, theta: Tensor) -> Tensor:
        """`(P, d)` -> `(P, n)` genomes; differentiable w.r.t. theta."""
        dtype = self.spec.dtype
        vals = self.values(theta).to(dtype)  # (P, m)
        if self.m == self.n:  # nothing constant: generated entries are the whole genome in order
            return vals
        out = self.const.to(dtype).expand(theta.shape[0], -1).clone()  # (P, n)
        out[:, self.gen_index] = vals
        return out

    def init_theta(self, generator: torch.Generator | None = None) -> Tensor:
        """`(d,)` Kaiming-style MLP init, N(0, 1) embeddings, and the output layer rescaled so
        that the raw MLP output has unit std: the first phenotype has the task's init scale."""
        if generator is None:
            generator = torch.Generator().manual_seed(self.cfg.seed)
        parts = []
        for name, shape in self.layout:
            if name.startswith("b") or name == "log_gain":
                parts.append(torch.zeros(shape))
                continue
            w = torch.randn(shape, generator=generator)
            if name == "w_out":
                w = w / math.sqrt(shape[1])
            elif name != "embed":
                w = w * self.gain / math.sqrt(shape[1])
            parts.append(w.reshape(-1))
        theta = torch.cat(parts).to(self.features.device)  # (d,)
        with torch.no_grad():
            std = float(self.raw(theta[None]).std())
        if std > 0 and math.isfinite(std):
            lo = self.dim - self.cfg.hidden - 1  # w_out then b_out close the layout
            theta[lo : lo + self.cfg.hidden] /= std
        return theta


class GeneratorSpace(SearchSpace):
    """The strategy searches the generator's theta `(P, d)`; genomes are what it emits. No
    mutable state (`state_dict()` is the base's `{}`): the generator is rebuilt from (spec, cfg,
    the task's template network)."""

    name = "generator"

    def __init__(self, task_or_spec: Any, cfg: GeneratorConfig | None = None,
                 reference: Tensor | None = None):  # fmt: skip
        """`task_or_spec`: a Task (scales and buffers from its template network) or a
        GenomeSpec (with an optional `reference` genome, else PyTorch-default scales)."""
        if isinstance(task_or_spec, GenomeSpec):
            self.generator = CoordinateGenerator(task_or_spec, cfg, reference)
        else:
            self.generator = CoordinateGenerator.from_task(task_or_spec, cfg)
        self.cfg = self.generator.cfg
        self.dim = self.generator.dim

    def to_genomes(self, x: Tensor) -> Tensor:
        return self.generator.generate(x)

    def from_genomes(self, g: Tensor) -> Tensor:
        """Approximate: `cfg.fit_steps` of Adam from `initial_mean()` on each genome's MSE (in
        units of each tensor's scale, so every layer counts alike). A generator with d << n
        cannot emit an arbitrary genome; this finds the theta whose network is nearest."""
        gen = self.generator
        gen.spec.check_genome(g, what="genomes")
        g = g.reshape(-1, gen.n).to(gen.features.device)
        target = g[:, gen.gen_index].float()  # (P, m)
        theta = self.initial_mean().to(target.device).expand(len(g), -1).clone()  # (P, d)
        theta = theta.requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=self.cfg.fit_lr)
        with torch.enable_grad():  # the loop calls spaces under no_grad
            for _ in range(self.cfg.fit_steps):
                err = (gen.values(theta) - target) / gen.scale  # (P, m)
                # a sum of per-genome means: each row's gradient is its own fit's
                loss = err.square().mean(1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return theta.detach()

    def initial_mean(self) -> Tensor:
        """`(d,)` the generator's init (seed `cfg.seed`): where a strategy should start."""
        return self.generator.init_theta()


def parameter_counts(task: Any, cfg: GeneratorConfig | None = None) -> dict[str, Any]:
    """Target network's values (and its trained part, without buffers) vs the generator's d."""
    gen = CoordinateGenerator(task.spec, cfg)
    target = int(task.spec.numel)
    trained = sum(k for t, k in zip(task.spec.tensors, task.spec.numels, strict=True)
                  if t.kind != "buffer")  # fmt: skip
    return {"target": target, "target_trained": trained, "generator": gen.dim,
            "ratio": gen.dim / max(trained, 1)}  # fmt: skip


def train_generator_backprop(task: Any, cfg: GeneratorConfig | None, steps: int, lr: float,
                                seed: int, batch_size: int = 128) -> dict[str, Any]:  # fmt: skip
    """The gradient reference of the generator space: Adam on theta through the generated
    network, on minibatches (as `latent_evo.tasks.sgd.run_sgd` does on the weights). Returns
    `history`, `test`, `wall_s`, `steps`, `trained_params` (= d) and the final `theta` (a tensor)."""
    from tqdm.auto import tqdm

    from latent_evo.tasks.sgd import minibatch_loss

    cfg = replace(cfg or GeneratorConfig(), seed=seed)
    gen_net = CoordinateGenerator.from_task(task, cfg)
    gen = torch.Generator().manual_seed(seed)
    theta = gen_net.init_theta(gen)[None].clone().requires_grad_(True)  # (1, d)
    opt = torch.optim.Adam([theta], lr=lr)
    # buffers (BatchNorm running stats) are generated as constants; detached as in run_sgd
    trainable = {name for name, _ in task.model.named_parameters()}
    history, t0 = [], time.perf_counter()
    for step in tqdm(range(1, steps + 1), desc="generator (Adam)", unit="step",
                     dynamic_ncols=True):  # fmt: skip
        x, y = task.sample_batch(gen, batch_size)
        loss = minibatch_loss(task, gen_net.generate(theta)[0], x, y, trainable)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(steps // 20, 1) == 0 or step == steps:
            with torch.no_grad():
                g = gen_net.generate(theta)[0]
            history.append({"step": step, "train_loss": float(loss.detach()), **task.evaluate(g)})
    with torch.no_grad():
        final = gen_net.generate(theta)[0]
    return {"history": history, "test": task.evaluate(final), "wall_s": time.perf_counter() - t0,
            "steps": steps, "trained_params": gen_net.dim, "theta": theta.detach()[0]}  # fmt: skip
