"""The genome compressor: a self-attention autoencoder whose decoder is a hypernetwork.

    tokens (P, T, C) --chunk + metadata embedding--> encoder blocks (full or windowed SDPA)
        --K learned latent queries cross-attend (Perceiver read-in)--> z (P, K*Z) = (P, s)
    z --latent blocks (per genome)--> keys + values folded with the output projection
        every output token t: query q_t built from its metadata alone (cached per architecture)
        y_t = u_t + c_t + g_t * gelu(u_t + b_t),   u_t = sum_hk softmax_k(q_t . k_hk) V'_hk

Decode cost is what evolution pays for every individual of every generation, so everything that
does not depend on z (metadata embeddings, queries, per-token affine terms) is computed once per
architecture and cached (eval mode, no grad); per (genome, token) we pay K*D for the scores and
K*C for the readout plus an elementwise nonlinearity (`benchmarks/decode.py` measures it).

NOTE: no `from __future__ import annotations` here: PyTorchModelHubMixin inspects the real type of
`__init__(config: CompressorConfig)` to rebuild the dataclass config on `from_pretrained`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from latent_evo.compressor.base import _HUB, REGULARIZERS, GenomeAutoencoder
from latent_evo.compressor.layers import MLP, Block, CrossBlock, fourier_features
from latent_evo.compressor.mixin import FORMAT_VERSION, SafeHubMixin
from latent_evo.compressor.tokenizer import TokenMeta
from latent_evo.genome import KINDS


@dataclass
class CompressorConfig:
    # the architecture this compressor tokenizes and decodes (GenomeSpec.to_dict()); it travels
    # with the weights so a saved compressor rebuilds its tokenizer without any other file
    genome_spec: dict | None = None
    chunk_size: int = 64  # values per token (C): larger = fewer tokens, cheaper encode/decode
    d_model: int = 128  # width (D) of encoder, latent blocks and token queries
    n_heads: int = 4  # heads of encoder and latent blocks
    encoder_layers: int = 2  # transformer blocks over the genome's tokens
    attention_window: int | None = None  # None: full attention; W: local windows (linear cost)
    num_latents: int = 16  # K learned latent queries
    latent_dim: int = 8  # Z: width of one latent; the search space has s = K * Z dims (<= 256)
    decoder_layers: int = 1  # blocks over the K latents before keys/values: per genome, not token
    # readout heads: per-token cost is 2*K*(D + heads*C) FLOPs; heads*K >= C lets a token's chunk
    # span every direction (with 1 head, each token is a mix of only K value vectors)
    decoder_heads: int = 4
    decoder_token_layers: int = 0  # windowed self-attn among output tokens: richer, ~24*D^2/token
    decoder_window: int = 64  # window of those token blocks; decode blocks are multiples of it
    decode_block_size: int = 2048  # tokens per streamed decode block: bounds decode memory
    regularizer: str = "kl"  # "kl" (VAE prior), "noise" (latent noise in training) or "none"
    beta: float = 1e-3  # weight of the KL term (per latent dimension) in the combined loss
    noise_std: float = 0.1  # std of latent noise in training with regularizer="noise"
    head_hidden: int = 64  # hidden width of the fitness head z -> predicted fitness
    max_tensors: int = 512  # tensor-index embedding rows; larger indices wrap around
    n_freqs: int = 16  # sin/cos frequencies for a token's row and chunk coordinates
    cache_max_mb: float = 256.0  # largest per-architecture query cache; beyond it, stream
    format_version: int = (
        FORMAT_VERSION  # on-disk format; newer versions refuse to load in old code
    )

    def __post_init__(self):
        if self.genome_spec is None:
            raise ValueError("CompressorConfig needs genome_spec (GenomeSpec.to_dict())")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.d_model % self.n_heads or self.d_model % self.decoder_heads:
            raise ValueError(f"d_model={self.d_model} must divide by n_heads and decoder_heads")
        for name in ("chunk_size", "d_model", "num_latents", "latent_dim", "decode_block_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CompressorConfig.{name} must be >= 1, got {getattr(self, name)}")


class MetaEmbedding(nn.Module):
    """TokenMeta -> (T, D): what a token *is* (which tensor, kind, depth, shape, row, chunk)."""

    def __init__(self, d_model: int, max_tensors: int, n_freqs: int, n_cont: int):
        super().__init__()
        self.max_tensors, self.n_freqs = max_tensors, n_freqs
        self.tensor = nn.Embedding(max_tensors, d_model)
        self.kind = nn.Embedding(len(KINDS), d_model)
        self.cont = nn.Linear(n_cont, d_model)
        self.pos = nn.Linear(4 * n_freqs, d_model)  # fourier(row) ++ fourier(chunk)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, meta: TokenMeta) -> torch.Tensor:
        pos = torch.cat(
            [fourier_features(meta.row, self.n_freqs), fourier_features(meta.chunk, self.n_freqs)],
            -1,
        )
        e = self.tensor(meta.tensor_index % self.max_tensors) + self.kind(meta.kind)  # (T, D)
        return self.ln(e + self.cont(meta.continuous()) + self.pos(pos))  # (T, D)


class Compressor(GenomeAutoencoder, SafeHubMixin, **_HUB):
    config_class = CompressorConfig

    def __init__(self, config: CompressorConfig):
        super().__init__()
        if isinstance(config, dict):  # tolerate a plain dict (older hub versions, user code)
            config = CompressorConfig(**config)
        self._setup_common(config)
        cfg, C, D, K, Z = (
            config,
            config.chunk_size,
            config.d_model,
            config.num_latents,
            config.latent_dim,
        )
        n_cont = self._tok.meta.continuous().shape[1]
        self.meta_emb = MetaEmbedding(D, cfg.max_tensors, cfg.n_freqs, n_cont)
        # ---- encoder ----
        self.chunk_in = nn.Linear(C, D)
        self.encoder = nn.ModuleList(
            Block(D, cfg.n_heads, cfg.attention_window, shift=i % 2 == 1)
            for i in range(cfg.encoder_layers)
        )
        self.latent_queries = nn.Parameter(0.02 * torch.randn(K, D))
        self.read_in = CrossBlock(D, cfg.n_heads)
        self.ln_z = nn.LayerNorm(D)
        self.to_z = nn.Linear(D, 2 * Z if cfg.regularizer == "kl" else Z)
        # ---- decoder, per genome (z-dependent) ----
        self.z_up = nn.Linear(Z, D)
        self.latent_pos = nn.Parameter(0.02 * torch.randn(K, D))
        self.latent_blocks = nn.ModuleList(Block(D, cfg.n_heads) for _ in range(cfg.decoder_layers))
        self.ln_kv = nn.LayerNorm(D)
        self.to_k, self.to_v = nn.Linear(D, D), nn.Linear(D, D)
        Hd, E = cfg.decoder_heads, D // cfg.decoder_heads
        c_out = D if cfg.decoder_token_layers else C  # readout width per token
        self.w_out = nn.Parameter(torch.randn(Hd, E, c_out) / math.sqrt(D))  # folded into values
        # ---- decoder, per token (z-independent: cached per architecture) ----
        self.query_mlp = MLP(D, mult=2)
        self.ln_q = nn.LayerNorm(D)
        self.to_q = nn.Linear(D, D)
        self.token_affine = nn.Linear(D, 3 * C)  # b_t, g_t, c_t of the per-token nonlinearity
        self.token_blocks = nn.ModuleList(
            Block(D, cfg.n_heads, cfg.decoder_window) for _ in range(cfg.decoder_token_layers)
        )
        self.ln_out = nn.LayerNorm(D) if cfg.decoder_token_layers else None
        self.out = nn.Linear(D, C) if cfg.decoder_token_layers else None
        self._cache: tuple | None = None  # (key, {name: (T, ...)}) per-token decoder features

    # ---- encoder ----------------------------------------------------------------------------
    def encode_dist(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(P, T, C) -> mu (P, s) and logvar (P, s) (None unless regularizer="kl")."""
        tokens = self._check_tokens(tokens)
        P = tokens.shape[0]
        x = self.chunk_in(tokens) + self.meta_emb(self.tokenizer.meta)  # (P, T, D)
        for blk in self.encoder:
            x = blk(x)  # (P, T, D)
        lat = self.read_in(self.latent_queries.expand(P, -1, -1), x)  # (P, K, D)
        h = self.to_z(self.ln_z(lat))  # (P, K, Z) or (P, K, 2Z)
        if self.config.regularizer == "kl":
            mu, logvar = (t.flatten(1) for t in h.chunk(2, dim=-1))  # (P, s) each
            return self._finish_mu(mu, logvar)
        return self._finish_mu(h.flatten(1), None)  # (P, s)

    # ---- decoder ----------------------------------------------------------------------------
    def _query_modules(self) -> list[nn.Module]:
        return [self.meta_emb, self.query_mlp, self.ln_q, self.to_q, self.token_affine]

    def _token_features(self, meta: TokenMeta) -> dict[str, torch.Tensor]:
        """Per-token, z-independent decoder inputs for the tokens of `meta`."""
        e = self.meta_emb(meta)  # (T, D)
        f = e + self.query_mlp(e)  # (T, D)
        Hd = self.config.decoder_heads
        q = rearrange(self.to_q(self.ln_q(f)), "t (h e) -> h t e", h=Hd)  # (Hd, T, E)
        q = q * q.shape[-1] ** -0.5  # fold the softmax temperature into the cached queries
        b, g, c = self.token_affine(f).chunk(3, dim=-1)  # (T, C) each
        return {"q": q, "f": f, "b": b, "g": g, "c": c}

    def _cached_features(self) -> dict[str, torch.Tensor] | None:
        """All tokens' features, cached while parameters are unchanged -- or None when caching is
        off (training / grad to the query path) or the cache would exceed cache_max_mb (then the
        features are recomputed per decode block, which streams)."""
        params = [p for m in self._query_modules() for p in m.parameters()]
        if self.training or (torch.is_grad_enabled() and any(p.requires_grad for p in params)):
            self._cache = None
            return None
        T, cfg = self.tokenizer.num_tokens, self.config
        if T * (2 * cfg.d_model + 3 * cfg.chunk_size) * 4 > cfg.cache_max_mb * 2**20:
            return None
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._token_features(self.tokenizer.meta))
        return self._cache[1]

    def _latent_kv(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, s) -> keys (P, Hd, K, E) and values already multiplied by the output projection
        (P, Hd, K, c_out): per genome work, so per token only scores and readout remain."""
        cfg = self.config
        lat = (
            self.z_up(rearrange(z, "p (k z) -> p k z", k=cfg.num_latents)) + self.latent_pos
        )  # (P, K, D)
        for blk in self.latent_blocks:
            lat = blk(lat)  # (P, K, D)
        lat = self.ln_kv(lat)
        k = rearrange(self.to_k(lat), "p k (h e) -> p h k e", h=cfg.decoder_heads)  # (P, Hd, K, E)
        v = rearrange(self.to_v(lat), "p k (h e) -> p h k e", h=cfg.decoder_heads)  # (P, Hd, K, E)
        return k, torch.einsum("phke,hec->phkc", v, self.w_out)  # (P, Hd, K, c_out)

    def _decode_block(
        self, k: torch.Tensor, vo: torch.Tensor, feats: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        a = torch.einsum("hte,phke->phtk", feats["q"], k).softmax(dim=-1)  # (P, Hd, T, K)
        a = rearrange(a, "p h t k -> p t (h k)")  # (P, T, Hd*K)
        u = torch.bmm(a, rearrange(vo, "p h k c -> p (h k) c"))  # (P, T, c_out)
        if self.out is None:  # light path: an elementwise per-token nonlinearity
            return u + feats["c"] + feats["g"] * F.gelu(u + feats["b"])  # (P, T, C)
        h = feats["f"] + u  # (P, T, D) token states, then local self-attention among tokens
        for blk in self.token_blocks:
            h = blk(h)
        return self.out(self.ln_out(h)) + feats["c"]  # (P, T, C)

    def decode(self, z: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
        """(P, s) codes -> (P, T, C) normalised tokens (padding slots 0), streaming over blocks
        of `block_size` tokens (default config.decode_block_size) so memory stays bounded."""
        z = self._check_z(z)
        cfg, tok = self.config, self.tokenizer
        T, P = tok.num_tokens, z.shape[0]
        bs = int(block_size or cfg.decode_block_size)
        if cfg.decoder_token_layers:  # windows of token blocks must not straddle decode blocks
            bs = -(-bs // cfg.decoder_window) * cfg.decoder_window
        k, vo = self._latent_kv(z)
        cached = self._cached_features()
        mask = tok.mask.to(z.dtype)  # (T, C)
        out = z.new_empty(P, T, cfg.chunk_size)  # (P, T, C)
        for lo in range(0, T, bs):
            hi = min(lo + bs, T)
            if cached is not None:
                feats = {n: (t[:, lo:hi] if n == "q" else t[lo:hi]) for n, t in cached.items()}
            else:
                feats = self._token_features(tok.meta[lo:hi])
            out[:, lo:hi] = self._decode_block(k, vo, feats) * mask[lo:hi]
        return out
