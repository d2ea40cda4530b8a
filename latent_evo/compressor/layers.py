"""Attention building blocks of the genome compressor (pre-norm, PyTorch SDPA, einops).

Axis legend (used in every einops pattern and shape comment of this file and compressor.py):
    P  population / batch of genomes        T  tokens of a genome (or of a block of them)
    C  chunk size: values per token         K  learned latents
    D  model width (d_model)                H  attention heads
    E  head width (D // H)                  W  window length (local attention)
    N  number of windows                    F  input features (metadata)
    Z  width of one latent (latent_dim)     S  sequence length inside an attention call
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head attention on top of `F.scaled_dot_product_attention` (flash/mem-efficient
    kernels when available). Self-attention when `ctx` is None, cross-attention otherwise."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, ctx: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        # x (B, S, D) queries, ctx (B, S', D) keys/values, key_mask (B, S') True = attend
        ctx = x if ctx is None else ctx
        q = rearrange(self.q(x), "b s (h e) -> b h s e", h=self.n_heads)  # (B, H, S, E)
        k, v = rearrange(self.kv(ctx), "b s (two h e) -> two b h s e", two=2, h=self.n_heads)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S')
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, S, E)
        return self.out(rearrange(y, "b h s e -> b s (h e)"))  # (B, S, D)


class MLP(nn.Module):
    def __init__(self, d_model: int, mult: int = 4, d_out: int | None = None):
        super().__init__()
        self.fc = nn.Linear(d_model, mult * d_model)
        self.proj = nn.Linear(mult * d_model, d_out or d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + mlp(LN x).

    With `window`, attention is local: the sequence is cut into windows of `window` tokens that
    attend only within themselves, so cost is O(S * window) instead of O(S^2) -- long genomes
    (GPT-2: ~2M tokens) stay linear. `shift=True` offsets the windows by half a window (Swin-style),
    so stacking shifted and unshifted blocks lets information cross window borders.
    """

    def __init__(self, d_model: int, n_heads: int, window: int | None = None, shift: bool = False):
        super().__init__()
        self.window, self.shift = window, shift
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads)
        self.mlp = MLP(d_model)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        W = self.window
        if W is None or S <= W and not self.shift:
            return self.attn(x)
        lead = W // 2 if self.shift else 0  # front padding realises the half-window shift
        tail = -(lead + S) % W
        xp = F.pad(x, (0, 0, lead, tail))  # (B, lead + S + tail, D)
        valid = torch.zeros(lead + S + tail, dtype=torch.bool, device=x.device)
        valid[lead : lead + S] = True
        xw = rearrange(xp, "b (n w) d -> (b n) w d", w=W)  # (B*N, W, D)
        # every window holds at least one real token, so no query row is fully masked
        mask = rearrange(valid, "(n w) -> n w", w=W).repeat(B, 1)  # (B*N, W)
        y = rearrange(self.attn(xw, key_mask=mask), "(b n) w d -> b (n w) d", b=B)
        return y[:, lead : lead + S]  # (B, S, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attend(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class AttentionPool(nn.Module):
    """K learned queries pool a population's token features with attention weights that depend
    on the token *keys* only (metadata: the same for every genome): where to read is learned per
    architecture, what is read is the genome. The values have no bias, so the pooled vectors
    carry the genome's content alone; a LayerNorm sets their scale. A Perceiver read-in that
    mixes metadata into its values averages one genome's residual over T tokens away (its codes
    then barely differ between genomes and the decoder gets no signal to learn from)."""

    def __init__(self, d_model: int, n_heads: int, n_queries: int):
        super().__init__()
        self.n_heads = n_heads
        self.queries = nn.Parameter(0.02 * torch.randn(n_queries, d_model))  # (K, D)
        self.to_q, self.to_k = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.to_v = nn.Linear(d_model, d_model, bias=False)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        # keys (T, D) per token, the same for every genome; values (P, T, D) -> (P, K, D)
        q = rearrange(self.to_q(self.queries), "k (h e) -> h k e", h=self.n_heads)  # (H, K, E)
        k = rearrange(self.to_k(keys), "t (h e) -> h t e", h=self.n_heads)  # (H, T, E)
        a = (q @ k.transpose(1, 2) * q.shape[-1] ** -0.5).softmax(-1)  # (H, K, T)
        v = rearrange(self.to_v(values), "p t (h e) -> p h t e", h=self.n_heads)  # (P, H, T, E)
        pooled = torch.einsum("hkt,phte->phke", a, v)  # (P, H, K, E)
        return self.ln(rearrange(pooled, "p h k e -> p k (h e)"))  # (P, K, D)


class CrossBlock(nn.Module):
    """Pre-norm cross-attention block: queries x attend to a context (Perceiver read-in)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln_q, self.ln_ctx, self.ln2 = (nn.LayerNorm(d_model) for _ in range(3))
        self.attn = Attention(d_model, n_heads)
        self.mlp = MLP(d_model)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_q(x), self.ln_ctx(ctx))
        return x + self.mlp(self.ln2(x))


def fourier_features(x: torch.Tensor, n_freqs: int, max_period: float = 1e5) -> torch.Tensor:
    """(T,) integer coordinates -> (T, 2 * n_freqs) sin/cos features at geometric frequencies
    (as transformer positions): row 17 and row 18 of a tensor get distinct, smooth codes."""
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(n_freqs, device=x.device, dtype=torch.float32)
        / n_freqs
    )  # (n_freqs,)
    ang = x.float()[:, None] * freqs[None, :]  # (T, n_freqs)
    return torch.cat([ang.sin(), ang.cos()], dim=-1)  # (T, 2 * n_freqs)
