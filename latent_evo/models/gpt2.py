"""A compact GPT-2 whose tensor names and shapes are those of the public checkpoints.

Names follow Hugging Face's `GPT2LMHeadModel` state dict (`transformer.wte.weight`,
`transformer.h.{i}.attn.c_attn.weight`, ...), and linear layers keep GPT-2's "Conv1D" layout,
weight (in, out) with y = x @ W + b, so the real `gpt2/model.safetensors` loads without any
transposes. `lm_head.weight` is tied to `transformer.wte.weight`: `named_parameters()` (and so the
genome) holds it once; `torch.func.functional_call` keeps the tie when given only the wte tensor
(given both tied names it raises, as it does for any tied module).

Under `vmap` (a population's fitness), `F.scaled_dot_product_attention` has no batching rule for
its CPU flash kernel, and torch would fall back to a Python loop over the population. So under
vmap the attention is written out (scores, causal mask, softmax, readout): plain batched matmuls
that vmap turns into one kernel per op for the whole population (`benchmarks/results/speed.md`).
Outside vmap the fused kernel runs, as it should for one model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257  # GPT-2's BPE vocabulary; 256 for byte-level toy models
    n_ctx: int = 1024  # longest sequence: the learned position table `wpe` has n_ctx rows
    n_embd: int = 768  # residual stream width d
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; must divide n_embd (public checkpoints use head size 64)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GPT2Config.{f.name} must be a positive int, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPT2Config: n_embd={self.n_embd} is not divisible by n_head={self.n_head}"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> GPT2Config:
        """A named size (see `GPT2_PRESETS`), with any field overridden, e.g. vocab_size=65."""
        if name not in GPT2_PRESETS:
            raise ValueError(f"unknown GPT-2 preset {name!r}; valid: {list(GPT2_PRESETS)}")
        valid = [f.name for f in fields(cls)]
        bad = [k for k in overrides if k not in valid]
        if bad:
            raise ValueError(f"unknown GPT2Config field(s) {bad}; valid: {valid}")
        return replace(GPT2_PRESETS[name], **overrides)

    @property
    def num_params(self) -> int:
        """Parameter count, the tied lm_head counted once, without building the model."""
        d = self.n_embd
        per_block = 12 * d * d + 13 * d  # c_attn 3d^2+3d, attn c_proj d^2+d, mlp 8d^2+5d, 2 LNs 4d
        return self.vocab_size * d + self.n_ctx * d + self.n_layer * per_block + 2 * d


GPT2_PRESETS: dict[str, GPT2Config] = {
    "tiny": GPT2Config(vocab_size=256, n_ctx=128, n_embd=48, n_layer=3, n_head=4),  # ~103k
    "small": GPT2Config(vocab_size=256, n_ctx=256, n_embd=128, n_layer=4, n_head=4),  # ~0.87M
    # a few million parameters that still trains (and is searched) on two CPU cores
    "mini": GPT2Config(vocab_size=256, n_ctx=128, n_embd=192, n_layer=5, n_head=4),  # ~2.3M
    "base": GPT2Config(vocab_size=256, n_ctx=256, n_embd=384, n_layer=6, n_head=6),  # ~10.8M
    "gpt2": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=768, n_layer=12, n_head=12),  # 124M
    "gpt2-medium": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=1280, n_layer=36, n_head=20),
    "gpt2-xl": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=1600, n_layer=48, n_head=25),
}


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored (in, out), y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


@torch.library.custom_op("latent_evo::causal_sdpa", mutates_args=())
def causal_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The fused causal attention kernel as an op with a vmap rule: a population's attention
    is one kernel call over (population x batch), not a loop over the population."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


@causal_sdpa.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(q)


def _causal_sdpa_vmap(info, in_dims, q, k, v):
    # fold the vmapped (population) dim into the batch dim: (P, B, nh, T, hs) -> (P*B, ...)
    qkv = [
        x.movedim(d, 0) if d is not None else x.expand(info.batch_size, *x.shape)
        for x, d in zip((q, k, v), in_dims, strict=True)
    ]
    P, B = qkv[0].shape[:2]
    y = causal_sdpa(*(x.flatten(0, 1) for x in qkv))  # (P*B, nh, T, hs)
    return y.unflatten(0, (P, B)), 0


causal_sdpa.register_vmap(_causal_sdpa_vmap)


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √hs + causal mask) v, from ops that all have vmap batching rules."""
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # (B, nh, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)  # (T, T) j > i
    att = att.masked_fill(future, float("-inf")).softmax(dim=-1)
    return att @ v  # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads at once
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q = q.reshape(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.reshape(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.reshape(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if torch._C._functorch.is_batchedtensor(q):  # a population under vmap: no fallback loop
            # fitness: the fused kernel over the whole population; under vmap(grad) (zoo
            # training) the written-out attention, whose ops all have autograd and vmap rules
            # (inside vmap `requires_grad` does not show the outer graph: ask the grad mode)
            fused = not torch.is_grad_enabled()
            y = causal_sdpa(q, k, v) if fused else _causal_attention(q, k, v)  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble the heads side by side
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, 4 * config.n_embd)
        self.c_proj = Conv1D(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's "gelu_new"


class Block(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # pre-LN residual blocks, as in GPT-2
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """Token ids (B, T) long, T <= n_ctx -> logits (B, T, vocab_size)."""

    def __init__(self, config: GPT2Config | None = None):
        super().__init__()
        self.config = config = config if config is not None else GPT2Config()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.n_ctx, config.n_embd),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, eps=1e-5),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying, as in GPT-2
        nn.init.normal_(self.transformer.wte.weight, std=0.02)
        nn.init.normal_(self.transformer.wpe.weight, std=0.01)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2 or idx.dtype not in (torch.long, torch.int32):
            raise ValueError(
                f"GPT2 expects token ids (B, T) long, got {tuple(idx.shape)} {idx.dtype}"
            )
        B, T = idx.shape
        if T > self.config.n_ctx:
            raise ValueError(
                f"sequence length {T} exceeds the context size n_ctx={self.config.n_ctx}"
            )
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)  # (B, T, V)

    def permutation_groups(self) -> list[list[tuple[str, int]]]:
        """Exact groups: the residual stream's d channels, and each block's 4d MLP hidden units.

        The residual stream permutes because LayerNorm is permutation-equivariant (its mean and
        variance do not depend on channel order) and every other reader/writer is linear. The tied
        `lm_head.weight` is not listed: permute a genome (which holds wte once), not a full
        `state_dict()`. Attention is left out: q/k/v dimensions may only be permuted within a head
        (and heads only as whole blocks), which a plain permutation group cannot express.
        """
        stream = [("transformer.wte.weight", 1), ("transformer.wpe.weight", 1)]
        groups = []
        for i in range(self.config.n_layer):
            p = f"transformer.h.{i}"
            stream += [
                (f"{p}.ln_1.weight", 0),
                (f"{p}.ln_1.bias", 0),
                (f"{p}.attn.c_attn.weight", 0),
            ]
            stream += [(f"{p}.attn.c_proj.weight", 1), (f"{p}.attn.c_proj.bias", 0)]
            stream += [(f"{p}.ln_2.weight", 0), (f"{p}.ln_2.bias", 0), (f"{p}.mlp.c_fc.weight", 0)]
            stream += [(f"{p}.mlp.c_proj.weight", 1), (f"{p}.mlp.c_proj.bias", 0)]
            groups.append(
                [
                    (f"{p}.mlp.c_fc.weight", 1),
                    (f"{p}.mlp.c_fc.bias", 0),
                    (f"{p}.mlp.c_proj.weight", 0),
                ]
            )
        stream += [("transformer.ln_f.weight", 0), ("transformer.ln_f.bias", 0)]
        return [stream, *groups]

    @classmethod
    def from_safetensors(
        cls, path: str | Path, config: GPT2Config | None = None, device: str | torch.device = "cpu"
    ) -> GPT2:
        """Load a GPT-2 checkpoint (HF `model.safetensors`, prefixed or bare names).

        The config is, in order: the argument; a Hugging Face `config.json` beside the file;
        inferred from the tensor shapes (n_head assumes GPT-2's head size of 64).
        """
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no safetensors file at {path}")
        state_dict = load_file(str(path), device=str(device))
        if config is None:
            config = _config_from_json(path.parent / "config.json") or infer_gpt2_config(state_dict)
        with torch.device("meta"):  # no point initialising weights that are overwritten next
            model = cls(config)
        return load_gpt2_state_dict(model, state_dict, source=str(path), assign=True)


class GPT2LoadError(ValueError):
    """A state dict does not fit a `GPT2`; the message names every missing/mis-shaped tensor."""


# The original checkpoints carry the causal-mask buffers `h.N.attn.bias` and `h.N.attn.masked_bias`.
_MASK_BUFFER = re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")


def canonical_gpt2_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`transformer.`-prefix the bare names of the original checkpoints; drop the mask buffers."""
    out = {}
    for k, v in state_dict.items():
        if _MASK_BUFFER.match(k):
            continue
        out[k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}"] = v
    return out


def _config_from_json(path: Path) -> GPT2Config | None:
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    try:
        return GPT2Config(
            vocab_size=cfg["vocab_size"],
            n_ctx=cfg.get("n_positions", cfg.get("n_ctx")),
            n_embd=cfg["n_embd"],
            n_layer=cfg["n_layer"],
            n_head=cfg["n_head"],
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a GPT-2 config.json (missing {e})") from None


def infer_gpt2_config(state_dict: Mapping[str, torch.Tensor], head_size: int = 64) -> GPT2Config:
    """Config from tensor shapes; n_head is not in the shapes, so it is n_embd // head_size."""
    sd = canonical_gpt2_names(state_dict)
    for name in ("transformer.wte.weight", "transformer.wpe.weight"):
        if name not in sd:
            raise GPT2LoadError(f"cannot infer a GPT-2 config: no {name!r} tensor")
    vocab_size, n_embd = sd["transformer.wte.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if n_embd % head_size:
        raise GPT2LoadError(
            f"n_embd={n_embd} is not a multiple of head size {head_size}; pass a GPT2Config"
        )
    return GPT2Config(
        vocab_size=vocab_size,
        n_ctx=sd["transformer.wpe.weight"].shape[0],
        n_embd=n_embd,
        n_layer=max(layers) + 1 if layers else 0,
        n_head=n_embd // head_size,
    )


def load_gpt2_state_dict(
    model: GPT2,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "state dict",
    assign: bool = False,
) -> GPT2:
    """Copy a GPT-2 state dict (prefixed or bare names) into `model`, strictly; returns `model`.

    Raises `GPT2LoadError` naming every missing, unexpected or mis-shaped tensor, and an
    `lm_head.weight` that differs from wte (this model ties them). assign=True adopts the given
    tensors (their dtype and device) instead of copying, e.g. into a model built on "meta".
    """
    sd = canonical_gpt2_names(state_dict)
    head = sd.pop("lm_head.weight", None)
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    problems = []
    missing = [k for k in expected if k not in sd]
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {_names(missing)}")
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {_names(unexpected)}")
    for k, v in expected.items():
        if k in sd and tuple(sd[k].shape) != tuple(v.shape):
            problems.append(f"{k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")
    wte = sd.get("transformer.wte.weight")
    if (
        head is not None
        and wte is not None
        and (head.shape != wte.shape or not torch.equal(head, wte))
    ):
        problems.append(
            "lm_head.weight differs from transformer.wte.weight, but this GPT-2 ties them"
        )
    if problems:
        raise GPT2LoadError(
            f"cannot load {source} into GPT2({asdict(model.config)}): " + "; ".join(problems)
        )
    model.load_state_dict({**sd, "lm_head.weight": sd["transformer.wte.weight"]}, assign=assign)
    model.lm_head.weight = model.transformer.wte.weight  # assign=True made two Parameters: re-tie
    return model


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")
