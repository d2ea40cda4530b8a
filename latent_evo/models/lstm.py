"""A character-level LSTM language model that runs under `torch.func.vmap`.

`nn.LSTM` dispatches to a fused kernel (`aten::lstm`) with no vmap batching rule, so `LSTM` here
writes the recurrence out with explicit gates: the input projection of all time steps is one
matmul, then a Python loop over time steps (never over the population). Parameter names and
shapes are exactly `nn.LSTM`'s (`weight_ih_l{k}` (4H, in), `weight_hh_l{k}` (4H, H),
`bias_ih_l{k}`, `bias_hh_l{k}` (4H,), gate order i, f, g, o), so an `nn.LSTM` state dict loads.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LSTM(nn.Module):
    """Multi-layer, unidirectional, batch-first LSTM without dropout; drop-in for `nn.LSTM`
    weights. forward(x (B, T, in), state=None) -> (out (B, T, H), (h (L, B, H), c (L, B, H)))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            h4 = 4 * hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(h4, fan_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(h4, hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(h4)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(h4)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # nn.LSTM's init
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, _ = x.shape
        H = self.hidden_size
        if state is None:
            zeros = x.new_zeros(self.num_layers, B, H)
            state = (zeros, zeros)
        h_n, c_n = [], []
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            bias = getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}")
            x_proj = x @ w_ih.T + bias  # (B, T, 4H): every time step's input gates in one matmul
            h, c = state[0][k], state[1][k]  # (B, H)
            outs = []
            for t in range(T):
                gates = x_proj[:, t] + h @ w_hh.T  # (B, 4H)
                i, f, g, o = gates.chunk(4, dim=-1)  # nn.LSTM's gate order
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            x = torch.stack(outs, dim=1)  # (B, T, H), the next layer's input
            h_n.append(h)
            c_n.append(c)
        return x, (torch.stack(h_n), torch.stack(c_n))


class CharLSTM(nn.Module):
    """Token ids (B, T) long -> next-token logits (B, T, vocab_size).

    Tensors: `embed.weight` (V, E), `lstm.*` as `nn.LSTM`, `head.weight` (V, H), `head.bias` (V,).
    A model built as `nn.Embedding` + `nn.LSTM(batch_first=True)` + `nn.Linear` under the same
    attribute names loads with `load_state_dict`.
    """

    def __init__(
        self, vocab_size: int = 96, embed_dim: int = 32, hidden_size: int = 64, num_layers: int = 1
    ):
        super().__init__()
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = LSTM(embed_dim, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2 or idx.dtype not in (torch.long, torch.int32):
            raise ValueError(
                f"CharLSTM expects token ids (B, T) long, got {tuple(idx.shape)} {idx.dtype}"
            )
        x = self.embed(idx)  # (B, T, E)
        x, _ = self.lstm(x)  # (B, T, H)
        return self.head(x)  # (B, T, V)

    def permutation_groups(self) -> list[list[tuple[str, int]]]:
        """Exact groups: the embedding dimensions, and the hidden units of each LSTM layer.

        A hidden unit j of layer k owns row j of each of the four gate blocks of `weight_ih_lk`,
        `weight_hh_lk` and both biases (axis 0 of length 4H: four blocks of H permuted alike, see
        `symmetry.apply_permutation`), column j of `weight_hh_lk` (the recurrence reads h), and
        column j of whatever reads h next (`weight_ih_l{k+1}` or `head.weight`). Gates are
        element-wise in the hidden unit, so these permutations leave the function unchanged.
        """
        groups = [[("embed.weight", 1), ("lstm.weight_ih_l0", 1)]]
        for k in range(self.num_layers):
            reader = f"lstm.weight_ih_l{k + 1}" if k + 1 < self.num_layers else "head.weight"
            groups.append(
                [
                    (f"lstm.weight_hh_l{k}", 1),
                    (f"lstm.weight_ih_l{k}", 0),
                    (f"lstm.weight_hh_l{k}", 0),
                    (f"lstm.bias_ih_l{k}", 0),
                    (f"lstm.bias_hh_l{k}", 0),
                    (reader, 1),
                ]
            )
        return groups
