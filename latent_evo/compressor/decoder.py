"""Pieces of the attention compressor's decoder: a hypernetwork queried by token coordinates.

    z (P, s) --latent blocks (per genome)--> keys (P, H, K, E) and values folded with the output
        projection (P, H, K, d): per-genome work, so per token only scores and a readout remain
    every output token t (z-independent, cached per architecture):
        e_t = emb_t + meta(t)        a learned embedding per token + what the token is
        q_t = W_q LN(e_t)            its cross-attention query
    per (genome, token):
        h_t = e_t + sum_hk softmax_k(q_t . k_hk) v'_hk       read the code
        h   = token blocks(h)        self-attention among the tokens of a window (+ MLP)
        c_t = head(LN h_t)           M coefficients (head initialised at zero)
        x_t = base_t + c_t @ bank_t  a residual around the base genome, spanned by M learned
                                     output directions of this token (bank_t: M x C)

Why a bank: a decoder needs free parameters per position to emit a network's init-specific
content (DESIGN.md, notes/decoder-feasibility.md). A per-token embedding mixed through shared
layers learned nothing there; a small bank of output directions per token is what the MLP
autoencoder's last layer is, at a fraction of its size and decode cost.

Windows never straddle two tensors (`WindowLayout`), so one tensor's tokens depend only on the
code and on tokens of that tensor: decoding some tensors (`Compressor.decode_tensors`) gives
exactly the slice of a full decode, and streaming in blocks of windows gives the one-pass result.

Axis legend: P population, T tokens, S window slots of a block (N windows x W), N windows,
W window length, C chunk size, M bank size, K latents, H heads, E head width, d decoder width.
"""

import torch
from torch import nn

from latent_evo.compressor.layers import MLP, Attention


class WindowLayout:
    """Tokens grouped into windows of at most W consecutive tokens of one tensor.

    start (N,)    first token of each window       valid (N, W)  slot holds a token
    index (N, W)  token of each slot (padding -> the window's first token, masked out)
    tensor_windows[i] = (first window, end window) of tensor i
    """

    def __init__(self, tokens_per_tensor: tuple[int, ...], window: int, device=None):
        W = int(window)
        counts = torch.tensor(tokens_per_tensor, dtype=torch.long)  # (num_tensors,)
        nwin = (counts + W - 1) // W  # windows per tensor
        tensor_of = torch.repeat_interleave(torch.arange(len(counts)), nwin)  # (N,)
        first_win = torch.cumsum(nwin, 0) - nwin  # (num_tensors,)
        first_tok = torch.cumsum(counts, 0) - counts
        local = torch.arange(len(tensor_of)) - first_win[tensor_of]  # window number in tensor
        self.start = first_tok[tensor_of] + local * W  # (N,)
        length = torch.clamp(counts[tensor_of] - local * W, max=W)  # (N,)
        slot = torch.arange(W)
        self.valid = slot[None, :] < length[:, None]  # (N, W)
        self.index = torch.where(self.valid, self.start[:, None] + slot, self.start[:, None])
        self.tensor_windows = [
            (int(a), int(a + n)) for a, n in zip(first_win.tolist(), nwin.tolist(), strict=True)
        ]
        self.window, self.num_windows = W, len(tensor_of)
        self.end = self.start + length  # (N,) one past the last token of each window
        if device is not None:
            self.to(device)

    def to(self, device) -> "WindowLayout":
        for name in ("start", "end", "valid", "index"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def token_range(self, w_lo: int, w_hi: int) -> tuple[int, int]:
        """Tokens [lo, hi) covered by windows [w_lo, w_hi): a contiguous run of the genome."""
        return int(self.start[w_lo]), int(self.end[w_hi - 1])


class TokenBlock(nn.Module):
    """Pre-norm block over the slots of windows: x + attn(LN x) within each window (skipped when
    `attention` is False: the ablation without token self-attention), then x + mlp(LN x)."""

    def __init__(self, d: int, n_heads: int, attention: bool = True, mlp_mult: int = 2):
        super().__init__()
        self.ln1 = nn.LayerNorm(d) if attention else None
        self.attn = Attention(d, n_heads) if attention else None
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MLP(d, mult=mlp_mult)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        # x (B, W, d) one window per row, key_mask (B, W) True = a real token
        if self.attn is not None:
            x = x + self.attn(self.ln1(x), key_mask=key_mask)
        return x + self.mlp(self.ln2(x))


def positive_around_base(
    x: torch.Tensor, base: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Decoded tokens of a tensor that must stay positive (BatchNorm running variances), in the
    tokenizer's normalised space: the residual is applied multiplicatively in value space,

        v = v_base * exp((v_lin - v_base) / v_base),   v_lin = mean + std * x,

    which equals v_lin to first order around the base (so the zero-initialised head still starts
    exactly at the base) and is > 0 for every finite input. x, base (P | 1, T, C); mean, std (T, 1).
    """
    # floors far above float32 rounding of `mean + std * x`, so the genome value stays > 0 too
    v_base = (mean + std * base).clamp(min=1e-2 * mean.abs().clamp(min=1e-3))
    ratio = (std * (x - base) / v_base).clamp(-5.0, 10.0)  # v in [0.0067, 22026] * v_base
    return (v_base * ratio.exp() - mean) / std
