"""The genome compressor: a self-attention autoencoder whose decoder is a hypernetwork.

    tokens (P, T, C) - base --chunk embedding (+ metadata)--> encoder blocks (optional, windowed)
        --K queries pool the residual's embedding with metadata-only attention weights (layers.py
        AttentionPool), then Perceiver read-ins--> z (P, K*Z) = (P, s)
    z --decoder (decoder.py)--> per token: cross-attention to the latents, self-attention within
        windows of its tensor, M coefficients of a per-token bank of output directions
        x_t = base_t + c_t @ bank_t     (normalised tokens; base = the zoo's mean genome)

so a decoded weight is w = base + sigma_tensor * head(h_t): the tokenizer's per-tensor
normalisation supplies sigma_tensor, and a zero-initialised head starts training at the base.

Decode cost is what evolution pays for every individual of every generation, so everything that
does not depend on z (token embeddings, metadata, queries) is computed once per architecture and
cached (eval mode, no grad), and the per-token width d (`decoder_dim`) is small: per (genome,
token) we pay the scores and readout of K latents, one narrow windowed block and the bank mix
(`benchmarks/decode.py` measures it).

NOTE: no `from __future__ import annotations` here: PyTorchModelHubMixin inspects the real type of
`__init__(config: CompressorConfig)` to rebuild the dataclass config on `from_pretrained`.
"""

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from latent_evo.compressor.base import _HUB, REGULARIZERS, GenomeAutoencoder
from latent_evo.compressor.decoder import TokenBlock, WindowLayout, positive_around_base
from latent_evo.compressor.layers import AttentionPool, Block, CrossBlock, fourier_features
from latent_evo.compressor.mixin import FORMAT_VERSION, CompressorFormatError, SafeHubMixin
from latent_evo.compressor.raw_bank import RawBankCache, raw_bank, raw_segments, write_runs
from latent_evo.compressor.tokenizer import Tokenizer, TokenMeta
from latent_evo.genome import KINDS, GenomeError

#: the first format of this decoder (token bank + base); older attention compressors decoded
#: from coordinates alone and cannot be converted
RESIDUAL_DECODER_FORMAT = 3
#: (genome, token) pairs per default decode block: ~4 MiB per activation at decoder_dim 32
CACHE_SLOTS = 32768


@dataclass
class CompressorConfig:
    # the architecture this compressor tokenizes and decodes (GenomeSpec.to_dict()); it travels
    # with the weights so a saved compressor rebuilds its tokenizer without any other file
    genome_spec: dict | None = None
    chunk_size: int = 64  # values per token (C): larger = fewer tokens, cheaper encode/decode
    d_model: int = 64  # width (D) of encoder and latent blocks: per genome, not per token
    n_heads: int = 4  # heads of encoder and latent blocks
    encoder_layers: int = 0  # transformer blocks over the genome's tokens before the read-in
    attention_window: int | None = 64  # None: full attention in the encoder; W: local windows
    # Perceiver cross-attention blocks of the latents onto the tokens, after an attention pool
    read_in_layers: int = 1
    num_latents: int = 16  # K learned latent queries
    latent_dim: int = 8  # Z: width of one latent; the search space has s = K * Z dims (<= 256)
    decoder_layers: int = 1  # blocks over the K latents before keys/values: per genome, not token
    # width of the per-token decoder path: decode costs ~ T * (2K(1 + heads) d + 12 d^2 + ...)
    decoder_dim: int = 32
    decoder_heads: int = 2  # heads of the token read-out and of the token self-attention
    decoder_token_layers: int = 1  # blocks over the output tokens (self-attention + MLP)
    decoder_window: int = 16  # tokens per self-attention window; windows never straddle tensors
    token_mlp_mult: int = 2  # hidden width of the token blocks' MLP, in units of decoder_dim
    bank_size: int = 16  # M learned output directions per token, mixed by the head
    # ablation switches (all True is the model; each False removes one piece)
    token_bank: bool = True  # per-token embeddings + bank; False: one shared head d -> C
    token_attention: bool = True  # self-attention among output tokens; False: MLP blocks only
    residual_base: bool = True  # decode around a stored base genome; False: around tensor means
    decode_block_size: int = 2048  # tokens per streamed decode block: bounds decode memory
    regularizer: str = "kl"  # "kl" (VAE prior), "noise" (latent noise in training) or "none"
    beta: float = 1e-3  # weight of the KL term (per latent dimension) in the combined loss
    noise_std: float = 0.1  # std of latent noise in training with regularizer="noise"
    head_hidden: int = 64  # hidden width of the fitness head z -> predicted fitness
    max_tensors: int = 512  # tensor-index embedding rows; larger indices wrap around
    n_freqs: int = 16  # sin/cos frequencies for a token's row and chunk coordinates
    cache_max_mb: float = 256.0  # largest per-architecture token-feature cache; beyond it, stream
    format_version: int = (
        FORMAT_VERSION  # on-disk format; newer versions refuse to load in old code
    )

    def __post_init__(self):
        if self.genome_spec is None:
            raise ValueError("CompressorConfig needs genome_spec (GenomeSpec.to_dict())")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must divide by n_heads={self.n_heads}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"decoder_dim={self.decoder_dim} must divide by decoder_heads={self.decoder_heads}"
            )
        for name in (
            "chunk_size",
            "d_model",
            "num_latents",
            "latent_dim",
            "decode_block_size",
            "decoder_dim",
            "decoder_window",
            "bank_size",
        ):
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
        d, Hd, M = cfg.decoder_dim, cfg.decoder_heads, cfg.bank_size
        tok = self._tok
        T, n_cont = tok.num_tokens, tok.meta.continuous().shape[1]
        # the genome decoding starts from, as normalised tokens: zeros = every tensor's zoo mean;
        # `set_base` stores a real network (by default the training zoo's mean genome)
        self.register_buffer("base", torch.zeros(T, C))  # (T, C)
        # ---- encoder ----
        self.meta_emb = MetaEmbedding(D, cfg.max_tensors, cfg.n_freqs, n_cont)
        self.chunk_in = nn.Linear(C, D, bias=False)
        self.encoder = nn.ModuleList(
            Block(D, cfg.n_heads, cfg.attention_window, shift=i % 2 == 1)
            for i in range(cfg.encoder_layers)
        )
        self.pool = AttentionPool(D, cfg.n_heads, K)  # latents from the residual alone
        self.latent_queries = nn.Parameter(0.02 * torch.randn(K, D))
        self.read_in = nn.ModuleList(CrossBlock(D, cfg.n_heads) for _ in range(cfg.read_in_layers))
        self.ln_z = nn.LayerNorm(D)
        self.to_z = nn.Linear(D, 2 * Z if cfg.regularizer == "kl" else Z)
        # ---- decoder, per genome (z-dependent) ----
        self.z_up = nn.Linear(Z, D)
        self.latent_pos = nn.Parameter(0.02 * torch.randn(K, D))
        self.latent_blocks = nn.ModuleList(Block(D, cfg.n_heads) for _ in range(cfg.decoder_layers))
        self.ln_kv = nn.LayerNorm(D)
        self.to_k, self.to_v = nn.Linear(D, d), nn.Linear(D, d)
        self.w_o = nn.Parameter(torch.randn(Hd, d // Hd, d) / math.sqrt(d))  # folded into values
        # ---- decoder, per token (z-independent: cached per architecture) ----
        self.dec_meta = MetaEmbedding(d, cfg.max_tensors, cfg.n_freqs, n_cont)
        self.token_emb = nn.Parameter(0.02 * torch.randn(T, d)) if cfg.token_bank else None
        self.ln_q = nn.LayerNorm(d)
        self.to_q = nn.Linear(d, d)
        # ---- decoder, per (genome, token) ----
        self.token_blocks = nn.ModuleList(
            TokenBlock(d, Hd, cfg.token_attention, cfg.token_mlp_mult)
            for _ in range(cfg.decoder_token_layers)
        )
        self.ln_out = nn.LayerNorm(d)
        # the head starts at zero: training starts at the base genome and can only improve on it
        self.out = nn.Linear(d, M if cfg.token_bank else C)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # M output directions per token (T, M, C): unit-variance outputs for unit coefficients
        self.bank = nn.Parameter(torch.randn(T, M, C) / math.sqrt(M)) if cfg.token_bank else None

        self._layout = WindowLayout(tok.tokens_per_tensor, cfg.decoder_window)
        # tokens of tensors that must stay positive (BatchNorm running variances)
        positive = [i for i, t in enumerate(self.spec.tensors) if t.name.endswith("running_var")]
        is_pos = torch.isin(tok.meta.tensor_index, torch.tensor(positive, dtype=torch.long))
        self._positive_tokens = is_pos.nonzero().squeeze(1)  # (T_pos,)
        self._cache: tuple | None = None  # (key, {name: ...}) per-token decoder features
        self._segments: list | None = None  # token runs of the raw-unit decode (raw_bank.py)
        self._bank_cache = RawBankCache()  # their raw-unit banks

    # ---- construction and the base genome ---------------------------------------------------
    @classmethod
    def _check_config_file(cls, path: Path) -> None:
        super()._check_config_file(path)
        data = json.loads(path.read_text())  # readable: the check above would have raised
        cfg = data.get("config", data)
        version = cfg.get("format_version", 1)
        if version < RESIDUAL_DECODER_FORMAT:
            raise CompressorFormatError(
                f"{path}: an attention compressor of format {version}, whose decoder read weights "
                f"off coordinates alone; this latent-evo's decoder (format "
                f"{RESIDUAL_DECODER_FORMAT}: per-token bank + base genome) cannot load it. "
                "Pretrain it again (latent-evo pretrain fit)."
            )

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, **overrides):
        """A fresh compressor for `tokenizer`'s spec, adopting its statistics and, when the
        tokenizer was fitted on genomes, their mean genome as the base (residual_base only)."""
        model = super().from_tokenizer(tokenizer, **overrides)
        mean_genome = getattr(tokenizer, "mean_genome", None)
        if model.config.residual_base and mean_genome is not None:
            model.set_base(mean_genome)
        return model

    @torch.no_grad()
    def set_base(self, genome: torch.Tensor) -> None:
        """Decode around `genome` (n,) (raw weights, e.g. a user's network or a zoo's mean): the
        zero code of an untrained head decodes to it. Stored normalised, in `self.base`."""
        if not self.config.residual_base:
            raise ValueError("set_base: this compressor was built with residual_base=False")
        self.spec.check_genome(genome, what="base genome")
        if genome.dim() != 1 or not bool(torch.isfinite(genome).all()):
            raise GenomeError(
                f"base genome must be one finite (n,) vector, got {tuple(genome.shape)}"
            )
        tokens = self.tokenizer.tokenize(genome.to(self.base.device).float())[0]  # (T, C)
        self.base.copy_(tokens)

    # ---- encoder ----------------------------------------------------------------------------
    def encode_dist(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(P, T, C) -> mu (P, s) and logvar (P, s) (None unless regularizer="kl")."""
        tokens = self._check_tokens(tokens)
        resid = (tokens - self.base) * self.tokenizer.mask  # (P, T, C) what the base lacks
        meta = self.meta_emb(self.tokenizer.meta)  # (T, D)
        v = self.chunk_in(resid)  # (P, T, D) no bias: zero for the base genome itself
        x = v + meta  # (P, T, D)
        for blk in self.encoder:
            x = blk(x)  # (P, T, D)
        values = v if not len(self.encoder) else x - meta  # features minus the metadata
        lat = self.pool(meta, values) + self.latent_queries  # (P, K, D)
        for blk in self.read_in:
            lat = blk(lat, x)  # (P, K, D)
        h = self.to_z(self.ln_z(lat))  # (P, K, Z) or (P, K, 2Z)
        if self.config.regularizer == "kl":
            mu, logvar = (t.flatten(1) for t in h.chunk(2, dim=-1))  # (P, s) each
            return self._finish_mu(mu, logvar)
        return self._finish_mu(h.flatten(1), None)  # (P, s)

    # ---- decoder: per-token features (z-independent) ----------------------------------------
    def _static_modules(self) -> list[nn.Module]:
        return [self.dec_meta, self.ln_q, self.to_q]

    def _static_params(self) -> list[torch.Tensor]:
        params = [p for m in self._static_modules() for p in m.parameters()]
        return params + ([self.token_emb] if self.token_emb is not None else [])

    def _token_features(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """(S,) token indices -> their embedding e (S, d) and read-out queries q (S, H*E)."""
        e = self.dec_meta(self.tokenizer.meta[tokens])  # (S, d)
        if self.token_emb is not None:
            e = e + self.token_emb[tokens]
        q = self.to_q(self.ln_q(e))  # (S, H*E), heads side by side
        scale = (self.config.decoder_dim // self.config.decoder_heads) ** -0.5
        return {"e": e, "q": q * scale}  # softmax temperature folded into q

    def _cached_features(self) -> dict[str, torch.Tensor] | None:
        """Every window slot's features, cached while parameters are unchanged -- or None when
        caching is off (training / grad to the static path) or the cache would exceed
        cache_max_mb (then features are recomputed per decode block, which streams)."""
        params = self._static_params()
        if self.training or (torch.is_grad_enabled() and any(p.requires_grad for p in params)):
            self._cache = None
            return None
        slots = self._layout.num_windows * self._layout.window
        if slots * 2 * self.config.decoder_dim * 4 > self.config.cache_max_mb * 2**20:
            return None
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._token_features(self._slot_tokens(0, None)))
        return self._cache[1]

    def _slot_tokens(self, w_lo: int, w_hi: int | None) -> torch.Tensor:
        return self._layout.index[w_lo:w_hi].reshape(-1)  # (S,) = (N*W,) token of each slot

    def _follow_device(self) -> None:
        """Index tables are plain tensors, not buffers (they are rebuilt from the spec, never
        saved): move them to where the weights went."""
        if self._layout.index.device != self.base.device:
            self._layout.to(self.base.device)
            self._positive_tokens = self._positive_tokens.to(self.base.device)

    # ---- decoder: per genome, then per (genome, token) --------------------------------------
    def _latent_kv(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, s) -> keys (P, H, K, E) and values already multiplied by the output projection
        (P, H, K, d): per genome work, so per token only scores and readout remain."""
        cfg = self.config
        lat = self.z_up(rearrange(z, "p (k z) -> p k z", k=cfg.num_latents))  # (P, K, D)
        lat = lat + self.latent_pos
        for blk in self.latent_blocks:
            lat = blk(lat)  # (P, K, D)
        lat = self.ln_kv(lat)
        k = rearrange(self.to_k(lat), "p k (h e) -> p h k e", h=cfg.decoder_heads)  # (P, H, K, E)
        v = rearrange(self.to_v(lat), "p k (h e) -> p h k e", h=cfg.decoder_heads)  # (P, H, K, E)
        return k, torch.einsum("phke,hed->phkd", v, self.w_o)  # (P, H, K, d)

    def _window_coefficients(self, kv, w_lo: int, w_hi: int, cached) -> torch.Tensor:
        """The head's output (P, T_b, M) for the tokens of the windows [w_lo, w_hi): each
        token's mixing coefficients of its bank (without a bank: its C values)."""
        k, vo = kv
        lay, W = self._layout, self._layout.window
        P = k.shape[0]
        if cached is not None:
            s_lo, s_hi = w_lo * W, w_hi * W
            feats = {"e": cached["e"][s_lo:s_hi], "q": cached["q"][s_lo:s_hi]}
        else:
            feats = self._token_features(self._slot_tokens(w_lo, w_hi))
        # all heads' scores in one matmul against block-diagonal keys, landing directly in the
        # (P, S, H*K) layout the readout needs: no per-head einsum, no permuted copies
        H, K, E = k.shape[1:]
        kbd = k.new_zeros(P, H, E, H, K)  # (P, H, E, H, K) zero off the diagonal heads
        for h in range(H):
            kbd[:, h, :, h] = k[:, h].transpose(1, 2)  # (P, E, K)
        a = torch.matmul(feats["q"], kbd.view(P, H * E, H * K))  # (P, S, H*K) scores
        a = a.view(P, -1, H, K).softmax(dim=-1).view(P, -1, H * K)  # per head over its K
        u = torch.bmm(a, rearrange(vo, "p h k d -> p (h k) d"))  # (P, S, d) the code, read
        h = rearrange(feats["e"] + u, "p (n w) d -> (p n) w d", w=W)  # (P*N, W, d)
        valid = lay.valid[w_lo:w_hi]  # (N, W)
        key_mask = valid.repeat(P, 1)  # (P*N, W), "(p n)" order as h
        for blk in self.token_blocks:
            h = blk(h, key_mask)  # (P*N, W, d)
        y = self.out(self.ln_out(h))  # (P*N, W, M) coefficients, or (P*N, W, C) without a bank
        return rearrange(y, "(p n) w m -> p (n w) m", p=P)[:, valid.reshape(-1)]  # (P, T_b, M|C)

    def _decode_windows(self, kv, w_lo: int, w_hi: int, cached) -> torch.Tensor:
        """Normalised tokens (P, hi - lo, C) of the windows [w_lo, w_hi), i.e. of the contiguous
        token run [lo, hi) they cover; padding slots of the chunks are 0."""
        y = self._window_coefficients(kv, w_lo, w_hi, cached)  # (P, T_b, M|C)
        lo, hi = self._layout.token_range(w_lo, w_hi)
        if self.bank is not None:  # mix this token's M output directions
            y = torch.bmm(y.transpose(0, 1), self.bank[lo:hi]).transpose(0, 1)  # (P, T_b, C)
        x = self.base[lo:hi] + y  # (P, T_b, C) the residual around the base genome
        return self._constrain(x, lo, hi) * self.tokenizer.mask[lo:hi]

    def _constrain(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Keep tensors that must be positive (BatchNorm running variances) positive."""
        pos = self._positive_tokens
        if pos.numel() == 0:
            return x
        sel = pos[(pos >= lo) & (pos < hi)]  # (T_sel,) genome tokens
        if sel.numel() == 0:
            return x
        tok = self.tokenizer
        fixed = positive_around_base(
            x[:, sel - lo], self.base[sel], tok._mean_tok[sel], tok._std_tok[sel]
        )  # (P, T_sel, C)
        return x.index_copy(1, sel - lo, fixed)

    def _window_blocks(
        self, w_lo: int, w_hi: int, block_size: int | None, population: int = 1
    ) -> Iterable:
        """[w_lo, w_hi) cut into blocks of about `block_size` tokens (whole windows). By default
        a block holds at most config.decode_block_size tokens and about CACHE_SLOTS (genome,
        token) pairs: the per-token path is a chain of narrow, memory-bound ops, twice as fast
        when its activations stay in cache (measured at P = 256 in benchmarks/results)."""
        if block_size is None:
            block_size = min(self.config.decode_block_size, CACHE_SLOTS // max(1, population))
        bs = int(block_size)
        step = max(1, bs // self._layout.window)
        for a in range(w_lo, w_hi, step):
            yield a, min(a + step, w_hi)

    def decode(self, z: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
        """(P, s) codes -> (P, T, C) normalised tokens (padding slots 0), streaming over blocks
        of about `block_size` tokens (default config.decode_block_size, rounded to whole windows)
        so memory stays bounded."""
        z = self._check_z(z)
        T, C = self.tokenizer.num_tokens, self.config.chunk_size
        self._follow_device()
        kv = self._latent_kv(z)
        cached = self._cached_features()
        out = z.new_empty(z.shape[0], T, C)  # (P, T, C), filled block by block
        blocks = self._window_blocks(0, self._layout.num_windows, block_size, z.shape[0])
        for w_lo, w_hi in blocks:
            lo, hi = self._layout.token_range(w_lo, w_hi)
            out[:, lo:hi] = self._decode_windows(kv, w_lo, w_hi, cached)  # (P, T_b, C)
        return out

    def decode_genomes(self, z: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
        """(P, s) codes -> (P, n) raw genomes in the spec's dtype, equal (to float rounding) to
        `detokenize(decode(z))`. Each token's bank is mixed straight into its real slots, in raw
        units (`raw_bank.py`), so the padded (P, T, C) grid of normalised tokens -- most of the
        decode time for rows shorter than C -- is never built."""
        if self._segments is None and self.bank is not None:
            self._segments = raw_segments(self.tokenizer.mask, self.tokenizer.meta.tensor_index)
        segs = self._segments if self.bank is not None else None
        if not segs or self._positive_tokens.numel():  # constrained tensors: generic path
            return super().decode_genomes(z, block_size)
        z = self._check_z(z)
        self._follow_device()
        kv = self._latent_kv(z)
        cached = self._cached_features()
        banks = self._raw_banks(segs)  # None: not cached, built per block below
        tok = self.tokenizer

        def bank_of(j: int, a: int, b: int) -> torch.Tensor:
            if banks is not None:
                return banks[j][a - segs[j][0] : b - segs[j][0]]
            i, L = segs[j][4], segs[j][2]
            return raw_bank(self.bank[a:b], self.base[a:b], tok.mean[i], tok.std[i], L)

        out = z.new_empty(z.shape[0], self.spec.numel)  # (P, n)
        for w_lo, w_hi in self._window_blocks(0, self._layout.num_windows, block_size, len(z)):
            lo, hi = self._layout.token_range(w_lo, w_hi)
            y = self._window_coefficients(kv, w_lo, w_hi, cached)  # (P, T_b, M)
            write_runs(out, y, lo, hi, segs, bank_of)
        return out.to(self.spec.dtype)

    def _raw_banks(self, segs) -> list[torch.Tensor] | None:
        """Every run's raw bank, cached while the bank, base and tokenizer statistics are
        unchanged; None when a gradient is wanted or the cache would exceed cache_max_mb."""
        if torch.is_grad_enabled() and self.bank.requires_grad:
            self._bank_cache.clear()
            return None
        if self.spec.numel * (self.config.bank_size + 1) * 4 / 2**20 > self.config.cache_max_mb:
            return None
        tok = self.tokenizer
        return self._bank_cache.get(
            (self.bank, self.base, tok.mean, tok.std),
            lambda: [
                raw_bank(self.bank[lo:hi], self.base[lo:hi], tok.mean[i], tok.std[i], L)
                for lo, hi, L, _, i in segs
            ],
        )

    def decode_tensors(
        self, z: torch.Tensor, names: Iterable[str], block_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Decode only some tensors: (P, s) codes -> {name: (P, *shape)} raw values in the spec's
        dtype, equal to the same tensors of a full `decode_genomes` (windows never straddle
        tensors, so a tensor depends only on the code and on its own tokens). The hypernetwork
        used as one: a head, one layer, or one tensor of a huge network, at its own cost."""
        z = self._check_z(z)
        names = [names] if isinstance(names, str) else list(names)
        index = {t.name: i for i, t in enumerate(self.spec.tensors)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise GenomeError(
                f"decode_tensors: no tensor(s) {unknown} in {self.spec!r}; "
                f"names are {list(index)[:8]}{' ...' if len(index) > 8 else ''}"
            )
        self._follow_device()
        kv = self._latent_kv(z)
        cached = self._cached_features()
        tok, P, out = self.tokenizer, z.shape[0], {}
        for name in names:
            i, ts = index[name], self.spec.tensors[index[name]]
            w_lo, w_hi = self._layout.tensor_windows[i]
            if w_lo == w_hi:  # an empty tensor has no tokens
                out[name] = z.new_zeros(P, *ts.shape, dtype=self.spec.dtype)
                continue
            blocks = self._window_blocks(w_lo, w_hi, block_size, P)
            x = torch.cat([self._decode_windows(kv, a, b, cached) for a, b in blocks], dim=1)
            lo, hi = self._layout.token_range(w_lo, w_hi)  # x: (P, hi - lo, C) its tokens
            values = x.flatten(1)[:, tok.mask[lo:hi].reshape(-1)]  # (P, numel) row-major
            values = torch.addcmul(tok.mean[i], values, tok.std[i])  # denormalised
            out[name] = values.reshape(P, *ts.shape).to(self.spec.dtype)
        return out
