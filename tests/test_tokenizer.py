"""Tokenizer: per-tensor row chunking, metadata, normalisation, persistence, round trips."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_genome import HYP, MODELS, make_model, specs

from latent_evo.compressor.tokenizer import (
    CONFIG_FILE,
    SHAPE_FEATURES,
    STATS_FILE,
    Tokenizer,
    TokenizerError,
)
from latent_evo.genome import KINDS, GenomeError, GenomeSpec, TensorSpec


@pytest.fixture(scope="module", params=list(MODELS))
def model_case(request):
    """(name, spec, genome, tokenizer at chunk 64) for each of the five reference models."""
    model = make_model(request.param)
    spec = GenomeSpec.from_module(model)
    return request.param, spec, spec.flatten(model.state_dict()), Tokenizer(spec, 64)


def check_structure(tok: Tokenizer) -> None:
    """Invariants every tokenizer must satisfy (shared by the model and property tests)."""
    spec, C, T, n = tok.spec, tok.chunk_size, tok.num_tokens, tok.spec.numel
    gi, mask, meta = tok.gather_index, tok.mask, tok.meta
    assert gi.shape == mask.shape == (T, C) and gi.dtype == torch.long and mask.dtype == torch.bool
    assert len(meta) == T and sum(tok.tokens_per_tensor) == T
    # every genome value lands in exactly one slot; padding points at the zero slot n
    # (scatter_index finds every value 0..n-1 in a distinct slot, and there are exactly n
    # value slots: so gather_index is a bijection between value slots and the genome)
    assert int(mask.sum()) == n
    assert torch.equal(gi.view(-1)[tok.scatter_index], torch.arange(n))
    assert bool((gi[~mask] == n).all())
    # padding is a suffix of each token, and every token holds at least one value
    assert bool((mask[:, :-1] >= mask[:, 1:]).all()) and bool(mask[:, 0].all())
    # tokens never straddle tensors or rows
    ti = meta.tensor_index
    numels = torch.tensor(spec.numels)
    lo = torch.tensor(spec.offsets)[ti][:, None]  # (T, 1)
    assert bool(((gi >= lo) & (gi < lo + numels[ti][:, None]) | ~mask).all())
    rows = torch.tensor([t.shape[0] if len(t.shape) >= 2 else 1 for t in spec])[ti]
    row_len = numels[ti] // rows
    row_lo = (lo[:, 0] + meta.row * row_len)[:, None]  # (T, 1)
    assert bool(((gi >= row_lo) & (gi < row_lo + row_len[:, None]) | ~mask).all())
    assert bool((gi[:, :1] == row_lo + meta.chunk[:, None] * C).all())  # chunk c starts at c*C
    assert torch.equal(torch.bincount(ti, minlength=len(spec)), torch.tensor(tok.tokens_per_tensor))
    assert bool((ti[1:] >= ti[:-1]).all())  # tensors in genome order
    # metadata ranges
    assert torch.equal(
        meta.kind, torch.tensor([KINDS.index(spec.tensors[i].kind) for i in ti.tolist()]).long()
    )
    for f in (meta.depth, meta.row_frac, meta.chunk_frac):
        assert f.dtype == torch.float32 and bool(((f >= 0) & (f <= 1)).all())
    assert (
        bool((meta.row < rows).all())
        and bool((meta.row >= 0).all())
        and bool((meta.chunk >= 0).all())
    )
    cont = meta.continuous()
    assert cont.shape == (T, 3 + len(SHAPE_FEATURES)) and bool(torch.isfinite(cont).all())


# ---- the exact layout on a hand-checked example ----------------------------------------------------
def test_layout_by_hand():
    spec = GenomeSpec(
        [
            TensorSpec("a.weight", (2, 3), torch.float32, "weight"),
            TensorSpec("b.conv", (2, 2, 2), torch.float32, "weight"),  # kernel flattened: rows of 4
            TensorSpec("b.bias", (5,), torch.float32, "bias"),  # one row
            TensorSpec("c.scale", (), torch.float32, "norm"),  # scalar: one row of one value
        ]
    )
    tok = Tokenizer(spec, chunk_size=2)
    P = 20  # n: the zero-padding slot
    assert tok.gather_index.tolist() == [
        [0, 1], [2, P], [3, 4], [5, P],  # a.weight: 2 rows of 3 -> 2 tokens per row
        [6, 7], [8, 9], [10, 11], [12, 13],  # b.conv: 2 rows of 2*2 = 4
        [14, 15], [16, 17], [18, P],  # b.bias: one row of 5
        [19, P],  # c.scale
    ]  # fmt: skip
    assert tok.tokens_per_tensor == (4, 4, 3, 1) and tok.num_tokens == 12
    assert tok.meta.row.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0]
    assert tok.meta.chunk.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 0]
    assert tok.meta.chunk_frac.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 0.5, 1, 0]
    assert tok.meta.depth.tolist() == [0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1]
    assert tok.meta.kind.tolist() == [0] * 8 + [1] * 3 + [2]
    feats = dict(zip(SHAPE_FEATURES, tok.meta.shape_features[4].tolist(), strict=True))  # b.conv
    assert feats["ndim"] == 3 and feats["log1p_row_length"] == pytest.approx(math.log1p(4))
    assert feats["log1p_receptive_field"] == pytest.approx(math.log1p(2))
    genome = torch.arange(1.0, 21.0)  # (n,) = 1..20, so padding (0) is recognisable
    tokens = tok.tokenize(genome)
    assert tokens.shape == (1, 12, 2) and tokens.dtype == torch.float32
    assert tokens[0, :4].tolist() == [[1, 2], [3, 0], [4, 5], [6, 0]]
    assert tokens[0, 8:].tolist() == [[15, 16], [17, 18], [19, 0], [20, 0]]
    assert torch.equal(tok.detokenize(tokens[0]), genome)
    check_structure(tok)


# ---- round trips on the five reference models ------------------------------------------------------
def test_model_structure(model_case):
    name, spec, genome, tok = model_case
    check_structure(tok)
    if name in ("mlp", "cnn1d", "resnet18", "transformer"):  # distinct module prefixes, in order
        d = tok.meta.depth
        assert d[0] == 0 and d[-1] == 1 and bool((d[1:] >= d[:-1]).all())
    if name == "resnet18":
        i = spec.index("layer4.1.conv2.weight")  # (512, 512, 3, 3): rows of 4608 = 72 chunks
        assert tok.tokens_per_tensor[i] == 512 * 72


def test_model_round_trip_single_and_batched(model_case):
    _, spec, genome, tok = model_case
    tokens = tok.tokenize(genome)  # identity statistics: tokens are the raw values
    assert tokens.shape == (1, tok.num_tokens, 64)
    assert torch.equal(tok.detokenize(tokens), genome[None])
    assert torch.equal(tok.detokenize(tokens[0]), genome)
    assert bool((tokens[0][~tok.mask] == 0).all())
    pop = genome + torch.randn(3, spec.numel, generator=torch.Generator().manual_seed(0))  # (P, n)
    tokens = tok.tokenize(pop)
    assert tokens.shape == (3, tok.num_tokens, 64)
    assert torch.equal(tok.detokenize(tokens), pop)
    assert torch.equal(tokens[1], tok.tokenize(pop[1])[0])  # batched == one at a time


def test_model_round_trip_normalised(model_case):
    _, spec, genome, tok = model_case
    pop = genome + 0.05 * torch.randn(2, spec.numel, generator=torch.Generator().manual_seed(1))
    fitted = copy.copy(tok).fit_normalization(pop)  # shares the indices, new statistics
    assert not torch.equal(fitted.mean, tok.mean)
    tokens = fitted.tokenize(pop)
    assert bool((tokens[:, ~fitted.mask] == 0).all())  # padding exactly 0 despite mean != 0
    torch.testing.assert_close(fitted.detokenize(tokens), pop, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_genomes(dtype):
    model = make_model("transformer").to(dtype)
    spec = GenomeSpec.from_module(model)
    genome = spec.flatten(model.state_dict())
    tok = Tokenizer(spec, 16)
    tokens = tok.tokenize(genome)
    assert tokens.dtype == torch.float32
    back = tok.detokenize(tokens)
    assert back.shape == (1, spec.numel) and back.dtype == dtype and torch.equal(back[0], genome)
    assert tok.detokenize(tokens, dtype=torch.float32).dtype == torch.float32
    pop = genome + torch.randn(5, spec.numel).to(dtype)
    tok.fit_normalization(pop)
    back = tok.detokenize(tok.tokenize(pop))
    # normalise -> denormalise is float32 arithmetic, errors ~1e-7 * |mean|: casting back lands on
    # the original half value except for values within that error of zero (exact zeros)
    assert back.dtype == dtype
    torch.testing.assert_close(back.float(), pop.float(), rtol=0, atol=1e-6)
    assert float((back == pop).float().mean()) > 0.99


def test_chunk_size_1024_on_resnet18():
    model = make_model("resnet18")
    spec = GenomeSpec.from_module(model)
    tok = Tokenizer(spec, 1024)
    genome = spec.flatten(model.state_dict())
    assert torch.equal(tok.detokenize(tok.tokenize(genome))[0], genome)
    assert int(tok.mask.sum()) == spec.numel
    i = spec.index("layer1.0.conv1.weight")  # (64, 64, 3, 3): rows of 576 < 1024, one token each
    assert tok.tokens_per_tensor[i] == 64


# ---- normalisation -----------------------------------------------------------------------------
def small_spec() -> GenomeSpec:
    return GenomeSpec(
        [
            TensorSpec("l1.weight", (4, 6), torch.float32, "weight"),
            TensorSpec("l1.bias", (4,), torch.float32, "bias"),
            TensorSpec("bn.running_var", (3,), torch.float32, "buffer"),
            TensorSpec("l2.weight", (2, 4), torch.float32, "weight"),
        ]
    )


def test_fit_normalization_matches_direct_statistics():
    spec = small_spec()
    gen = torch.Generator().manual_seed(0)
    pop = torch.randn(50, spec.numel, generator=gen) * torch.linspace(0.1, 5, spec.numel) + 3.0
    pop[:, spec.offsets[2] : spec.offsets[2] + 3] = 1.0  # constant across the set: zero variance
    tok = Tokenizer(spec, 4).fit_normalization(pop)
    for i, part in enumerate(pop.split(spec.numels, dim=1)):
        if i == 2:
            assert tok.mean[i] == 1.0 and tok.std[i] == 1.0  # centred, never divided by ~0
        else:
            torch.testing.assert_close(tok.mean[i], part.double().mean().float())
            torch.testing.assert_close(tok.std[i], part.double().std(unbiased=False).float())
    # streamed batches (an iterable) give the same statistics as one tensor
    streamed = Tokenizer(spec, 4).fit_normalization(iter(pop.split(7)))
    torch.testing.assert_close(streamed.mean, tok.mean)
    torch.testing.assert_close(streamed.std, tok.std)
    tiny_blocks = Tokenizer(spec, 4).fit_normalization(pop, block=spec.numel * 3)
    torch.testing.assert_close(tiny_blocks.std, tok.std)
    # the fit set comes out standardised per tensor (valid slots only)
    tokens = tok.tokenize(pop)  # (P, T, C)
    for i in (0, 1, 3):
        sel = tokens[:, tok.meta.tensor_index == i][:, tok.mask[tok.meta.tensor_index == i]]
        assert abs(float(sel.mean())) < 1e-5 and abs(float(sel.std(unbiased=False)) - 1) < 1e-4
    # a genome that later moves the constant tensor gets a modest token, not 1/eps
    moved = pop[0].clone()
    moved[spec.offsets[2]] = 1.5
    assert float(tok.tokenize(moved).abs().max()) < 100


def test_fit_normalization_errors():
    tok = Tokenizer(small_spec(), 4)
    with pytest.raises(GenomeError, match="genomes has length 5, expected 39"):
        tok.fit_normalization(torch.zeros(3, 5))
    with pytest.raises(TokenizerError, match="no genomes"):
        tok.fit_normalization(iter([]))


# ---- persistence ----------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    spec = small_spec()
    pop = torch.randn(20, spec.numel, generator=torch.Generator().manual_seed(2))
    tok = Tokenizer(spec, 5).fit_normalization(pop)
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == sorted([CONFIG_FILE, STATS_FILE])
    config = json.loads((tmp_path / "tok" / CONFIG_FILE).read_text())
    assert config["chunk_size"] == 5 and config["spec"] == spec.to_dict()
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.spec == spec and loaded.chunk_size == 5 and loaded.num_tokens == tok.num_tokens
    assert torch.equal(loaded.mean, tok.mean) and torch.equal(loaded.std, tok.std)
    assert torch.equal(loaded.tokenize(pop), tok.tokenize(pop))
    assert torch.equal(loaded.gather_index, tok.gather_index)


@pytest.fixture
def saved(tmp_path):
    Tokenizer(small_spec(), 4).save(tmp_path)
    return tmp_path


def test_load_missing_files(saved):
    (saved / STATS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=STATS_FILE):
        Tokenizer.load(saved)
    (saved / CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        Tokenizer.load(saved)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"format": "something-else", "version": 1}),
        json.dumps({"format": "latent-evo-tokenizer", "version": 1, "chunk_size": 4}),  # no spec
        json.dumps(
            {
                "format": "latent-evo-tokenizer",
                "version": 1,
                "chunk_size": 0,
                "spec": small_spec().to_dict(),
            }
        ),
        json.dumps({"format": "latent-evo-tokenizer", "version": 99}),
        "[1, 2]",
    ],
)
def test_load_corrupt_config_names_file(saved, content):
    (saved / CONFIG_FILE).write_text(content)
    with pytest.raises(TokenizerError, match=CONFIG_FILE):
        Tokenizer.load(saved)


def test_load_corrupt_stats_names_file(saved):
    from safetensors.torch import save_file

    path = saved / STATS_FILE
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(TokenizerError, match=STATS_FILE):
        Tokenizer.load(saved)
    save_file({"mean": torch.zeros(3), "std": torch.ones(4)}, str(path))  # wrong number of tensors
    with pytest.raises(TokenizerError, match=rf"{STATS_FILE}.*'mean' is \(3,\)"):
        Tokenizer.load(saved)
    save_file({"mean": torch.zeros(4)}, str(path))
    with pytest.raises(TokenizerError, match=rf"{STATS_FILE}.*'std' is missing"):
        Tokenizer.load(saved)
    save_file({"mean": torch.zeros(4), "std": torch.tensor([1.0, 0.0, 1.0, 1.0])}, str(path))
    with pytest.raises(TokenizerError, match=rf"{STATS_FILE}.*'std' has invalid values"):
        Tokenizer.load(saved)


# ---- errors ---------------------------------------------------------------------------------------
def test_errors_on_bad_input():
    tok = Tokenizer(small_spec(), 4)
    n = small_spec().numel
    with pytest.raises(GenomeError, match=rf"length {n + 2}, expected {n}"):
        tok.tokenize(torch.zeros(n + 2))
    with pytest.raises(GenomeError, match=rf"length {n - 1}, expected {n}"):
        tok.tokenize(torch.zeros(2, n - 1))
    T = tok.num_tokens
    with pytest.raises(TokenizerError, match=rf"\(P, {T}, 4\) or \({T}, 4\), got \(2, {T}, 5\)"):
        tok.detokenize(torch.zeros(2, T, 5))
    with pytest.raises(TokenizerError, match="chunk_size"):
        Tokenizer(small_spec(), 0)
    with pytest.raises(TokenizerError, match="no values"):
        Tokenizer(GenomeSpec([TensorSpec("empty", (0, 3), torch.float32, "weight")]))


def test_token_meta_slicing_and_device():
    tok = Tokenizer(small_spec(), 4)
    block = tok.meta[2:5]
    assert len(block) == 3 and torch.equal(block.row, tok.meta.row[2:5])
    assert block.continuous().shape == (3, 3 + len(SHAPE_FEATURES))
    same = tok.to("cpu")
    assert same is tok and tok.device == torch.device("cpu")


@pytest.mark.gpu
def test_cuda_round_trip():
    spec = small_spec()
    pop = torch.randn(6, spec.numel, device="cuda")
    tok = Tokenizer(spec, 4).to("cuda").fit_normalization(pop)
    assert tok.mean.device.type == "cuda" and tok.meta.depth.device.type == "cuda"
    tokens = tok.tokenize(pop)
    assert tokens.device.type == "cuda"
    torch.testing.assert_close(tok.detokenize(tokens), pop)
    with pytest.raises(TokenizerError, match="tokenizer.to"):
        tok.tokenize(pop.cpu())


# ---- property-based: random specs and chunk sizes --------------------------------------------------
@HYP
@given(spec=specs(), chunk=st.integers(1, 9), pop=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_property_tokenize_round_trip(spec: GenomeSpec, chunk: int, pop: int, seed: int):
    if spec.numel == 0:
        with pytest.raises(TokenizerError):
            Tokenizer(spec, chunk)
        return
    tok = Tokenizer(spec, chunk)
    check_structure(tok)
    gen = torch.Generator().manual_seed(seed)
    genomes = torch.randn(pop, spec.numel, generator=gen).to(spec.dtype)  # (P, n)
    tokens = tok.tokenize(genomes)
    assert tokens.shape == (pop, tok.num_tokens, chunk)
    assert torch.equal(tok.detokenize(tokens), genomes)
    if pop > 1:
        tok.fit_normalization(genomes)
        tokens = tok.tokenize(genomes)
        assert bool((tokens[:, ~tok.mask] == 0).all())
        back = tok.detokenize(tokens, dtype=torch.float32)
        torch.testing.assert_close(back, genomes.float(), rtol=1e-5, atol=1e-5)


def test_gradients_flow_from_weights_to_tokens():
    """The pretraining loss F(decoded weights) must backpropagate into the decoder's tokens."""
    from torch.func import functional_call

    model = make_model("mlp")
    spec = GenomeSpec.from_module(model)
    tok = Tokenizer(spec, 8).fit_normalization(
        spec.flatten(model.state_dict()) + torch.randn(3, spec.numel)
    )
    tokens = tok.tokenize(spec.flatten(model.state_dict())).requires_grad_(True)  # (1, T, C)
    params = spec.unflatten(tok.detokenize(tokens))  # {name: (1, *shape)}
    out = functional_call(model, {k: v[0] for k, v in params.items()}, (torch.randn(4, 8),))
    out.square().sum().backward()
    assert tokens.grad is not None and bool(tokens.grad[:, tok.mask].abs().sum() > 0)
    assert bool((tokens.grad[:, ~tok.mask] == 0).all())  # padding does not reach any weight
