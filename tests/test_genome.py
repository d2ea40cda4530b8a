"""GenomeSpec: bit-exact flatten/unflatten on real architectures, batched views, errors."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, vmap

from latent_evo.genome import KINDS, GenomeError, GenomeSpec, TensorSpec, exact_cast

BITS = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
}
HYP = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


# ---- the five reference architectures (shared with test_tokenizer.py) -----------------------------
def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 4))


def cnn1d() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 8, 5),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=1),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def resnet18() -> nn.Module:
    return torchvision.models.resnet18()


def lstm() -> nn.Module:
    return nn.LSTM(6, 10, num_layers=2)


def transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


MODELS = {
    "mlp": mlp,
    "cnn1d": cnn1d,
    "resnet18": resnet18,
    "lstm": lstm,
    "transformer": transformer,
}
INPUTS = {
    "mlp": lambda: torch.randn(5, 8),
    "cnn1d": lambda: torch.randn(5, 1, 20),
    "resnet18": lambda: torch.randn(2, 3, 32, 32),
    "lstm": lambda: torch.randn(7, 3, 6),
    "transformer": lambda: torch.randn(3, 5, 16),
}


@functools.cache
def _base_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    with torch.no_grad():
        for buf_name, b in model.named_buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
            elif buf_name.endswith("num_batches_tracked"):
                b.fill_(7)
    return model


def make_model(name: str) -> nn.Module:
    """A fresh copy of the model in eval mode with non-trivial BatchNorm statistics (so buffers
    matter); built once per session because initialising resnet18 is the slow part."""
    return copy.deepcopy(_base_model(name))


def random_bits(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Uniformly random bit patterns: NaN payloads, infinities, -0.0 and subnormals included."""
    ity = BITS[dtype]
    info = torch.iinfo(ity)
    return torch.randint(info.min, info.max, shape, dtype=ity, generator=gen).view(dtype)


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.view(BITS[a.dtype]), b.view(BITS[b.dtype]))
    )


def scrambled_state(model: nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The model's state dict with every float tensor replaced by random bits."""
    return {
        k: random_bits(tuple(v.shape), v.dtype, gen) if v.is_floating_point() else v.clone()
        for k, v in model.state_dict().items()
    }


# ---- round trips on real architectures -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_bit_exact(name: str, dtype: torch.dtype):
    model = make_model(name).to(dtype)
    spec = GenomeSpec.from_module(model)
    state = scrambled_state(model, torch.Generator().manual_seed(1))
    float_names = [k for k, v in state.items() if v.is_floating_point()]
    assert [t.name for t in spec] == float_names  # state dict order, integer buffers left out
    assert spec.dtype == dtype and spec.numel == sum(state[k].numel() for k in float_names)

    genome = spec.flatten(state)
    assert genome.shape == (spec.numel,) and genome.dtype == dtype
    out = spec.unflatten(genome)
    assert list(out) == float_names
    for k in float_names:
        assert bits_equal(out[k], state[k]), k
    assert bits_equal(spec.flatten(out), genome)
    assert GenomeSpec.from_dict(spec.to_dict()) == spec
    assert GenomeSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("name", list(MODELS))
def test_unflattened_genome_computes_the_same_function(name: str):
    model = make_model(name)
    spec = GenomeSpec.from_module(model)
    params = spec.unflatten(spec.flatten(model.state_dict()))
    x = INPUTS[name]()
    with torch.no_grad():
        want, got = model(x), functional_call(model, params, (x,))
    if name == "lstm":
        want, got = want[0], got[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_resnet18_kinds_and_buffers():
    model = make_model("resnet18")
    spec = GenomeSpec.from_module(model)
    kinds = {t.name: t.kind for t in spec}
    assert spec.numel == 11_689_512 + 2 * sum(
        m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert not any("num_batches_tracked" in k for k in kinds)
    assert kinds["conv1.weight"] == "weight" and kinds["fc.weight"] == "weight"
    assert (
        kinds["fc.bias"] == "bias" and kinds["bn1.weight"] == "norm" and kinds["bn1.bias"] == "norm"
    )
    assert kinds["layer2.0.downsample.1.weight"] == "norm"
    assert kinds["bn1.running_mean"] == "buffer" and kinds["bn1.running_var"] == "buffer"
    # from a bare state dict: same tensors, same kinds (BatchNorm affine found via its stats)
    assert GenomeSpec.from_state_dict(model.state_dict()) == spec
    # without buffers the stats are left out, yet flattening the full state dict is fine
    no_buf = GenomeSpec.from_module(model, include_buffers=False)
    assert not any(t.kind == "buffer" for t in no_buf) and "bn1.running_mean" in no_buf.excluded
    assert no_buf.flatten(model.state_dict()).shape == (11_689_512,)
    assert GenomeSpec.from_dict(no_buf.to_dict()).excluded == no_buf.excluded


def test_kinds_of_transformer_embedding_and_names():
    spec = GenomeSpec.from_module(make_model("transformer"))
    kinds = {t.name: t.kind for t in spec}
    assert kinds["layers.0.norm1.weight"] == "norm" and kinds["layers.0.norm1.bias"] == "norm"
    assert kinds["layers.0.self_attn.in_proj_weight"] == "weight"
    assert kinds["layers.0.self_attn.in_proj_bias"] == "bias"
    model = nn.ModuleDict({"tok": nn.Embedding(10, 4), "subnet": nn.Linear(4, 4)})
    kinds = {t.name: t.kind for t in GenomeSpec.from_module(model)}
    assert kinds == {"tok.weight": "embedding", "subnet.weight": "weight", "subnet.bias": "bias"}
    sd = {"ln_f.weight": torch.ones(3), "wte": torch.ones(5, 3), "h.0.mlp.c_fc.bias": torch.ones(3)}
    assert [t.kind for t in GenomeSpec.from_state_dict(sd)] == ["norm", "embedding", "bias"]


def test_tied_weights_appear_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.wte.weight

        def forward(self, idx):
            return self.head(self.wte(idx))

    model = Tied()
    spec = GenomeSpec.from_module(model)
    assert [t.name for t in spec] == ["wte.weight"] and spec.aliases == {
        "head.weight": "wte.weight"
    }
    genome = spec.flatten(model.state_dict())  # the alias in the state dict is not "extra"
    idx = torch.tensor([1, 2, 3])
    torch.testing.assert_close(
        functional_call(model, spec.unflatten(genome * 2), (idx,)), model(idx) * 4
    )
    assert GenomeSpec.from_dict(spec.to_dict()).aliases == spec.aliases


def test_non_persistent_buffers_are_not_genes():
    model = nn.Linear(3, 2)
    model.register_buffer("cache", torch.ones(4), persistent=False)
    spec = GenomeSpec.from_module(model)
    assert [t.name for t in spec] == ["weight", "bias"]
    spec.flatten(model.state_dict())


# ---- populations: zero-copy views and vmap ---------------------------------------------------------
def test_batched_unflatten_returns_views_and_flatten_batch_inverts():
    model = make_model("cnn1d")
    spec = GenomeSpec.from_module(model)
    pop = torch.randn(4, spec.numel)  # (P, n)
    params = spec.unflatten(pop)
    storage = pop.untyped_storage().data_ptr()
    for t in spec:
        v = params[t.name]
        assert v.shape == (4, *t.shape) and v.untyped_storage().data_ptr() == storage
    params["1.running_var"][2, 3] = 123.0  # writing the view writes the genome
    i = spec.index("1.running_var")
    assert pop[2, spec.offsets[i] + 3] == 123.0
    assert torch.equal(spec.flatten_batch(params), pop)
    for p in range(4):  # row p of the population is individual p
        single = spec.unflatten(pop[p])
        assert all(torch.equal(single[k], params[k][p]) for k in single)


def test_unflatten_of_strided_genome_is_correct():
    spec = GenomeSpec.from_module(make_model("mlp"))
    pop = torch.randn(spec.numel, 3).T  # (P, n) with stride (1, P): cannot be viewed
    params = spec.unflatten(pop)
    assert torch.equal(spec.flatten_batch(params), pop)


def test_vmap_functional_call_matches_loop():
    model = make_model("mlp")
    spec = GenomeSpec.from_module(model)
    base = spec.flatten(model.state_dict())
    pop = base + 0.1 * torch.randn(
        5, spec.numel, generator=torch.Generator().manual_seed(0)
    )  # (P, n)
    x = torch.randn(6, 8)

    def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params, (x,))

    got = vmap(forward, in_dims=(0, None))(spec.unflatten(pop), x)  # (P, 6, 4)
    want = torch.stack([forward(spec.unflatten(g), x) for g in pop])
    assert got.shape == (5, 6, 4)
    torch.testing.assert_close(got, want)
    # gradients flow through the views back to the genome
    pop.requires_grad_(True)
    vmap(forward, in_dims=(0, None))(spec.unflatten(pop), x).sum().backward()
    assert pop.grad is not None and pop.grad.abs().sum() > 0


# ---- mixed dtypes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtypes, genome_dtype",
    [
        ((torch.float16, torch.bfloat16), torch.float32),
        ((torch.float16, torch.float32), torch.float32),
        ((torch.bfloat16, torch.float64), torch.float64),
        ((torch.float16, torch.float64), torch.float64),
    ],
)
def test_mixed_dtypes_round_trip_bit_exact(dtypes, genome_dtype):
    model = nn.Sequential(nn.Linear(30, 40), nn.Linear(40, 30))
    model[0].to(dtypes[0])
    model[1].to(dtypes[1])
    spec = GenomeSpec.from_module(model)
    assert spec.dtype == genome_dtype
    state = scrambled_state(model, torch.Generator().manual_seed(3))  # NaN payloads included
    assert any(torch.isnan(v).any() for v in state.values())
    genome = spec.flatten(state)
    assert genome.dtype == genome_dtype
    back = spec.unflatten_to_module_dtypes(genome)
    for k, v in state.items():
        assert bits_equal(back[k], v), k
    # a NaN from a narrow tensor is still a NaN in the genome
    assert torch.equal(
        torch.isnan(genome), torch.cat([torch.isnan(v).reshape(-1) for v in state.values()])
    )


def test_exact_cast_keeps_nan_sign_and_payload():
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        if dtype == torch.float32:  # 2**32 patterns is too many: random ones, NaNs forced in
            x = random_bits((100_000,), dtype, gen)
            x[::2] = (x[::2].view(torch.int32) | 0x7F800001).view(dtype)  # NaN, any payload
        else:  # every 16-bit pattern
            x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
        for wide in (torch.float32, torch.float64):
            if wide == dtype:
                continue
            w = exact_cast(x, wide)
            assert torch.equal(torch.isnan(w), torch.isnan(x))
            assert bits_equal(exact_cast(w, dtype), x)


# ---- errors that name the culprit ----------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn_spec_state():
    model = make_model("cnn1d")
    return GenomeSpec.from_module(model), model.state_dict()


def test_error_missing_tensor(cnn_spec_state):
    spec, state = cnn_spec_state
    state = dict(state)
    del state["3.weight"]
    with pytest.raises(GenomeError, match=r"missing .*'3\.weight'"):
        spec.flatten(state)


def test_error_extra_tensor(cnn_spec_state):
    spec, state = cnn_spec_state
    with pytest.raises(GenomeError, match=r"'head\.weight'.* not in the genome spec"):
        spec.flatten({**state, "head.weight": torch.zeros(2)})
    spec.flatten({**state, "counter": torch.tensor(3)})  # integer entries are not genes


def test_error_wrong_shape(cnn_spec_state):
    spec, state = cnn_spec_state
    with pytest.raises(
        GenomeError, match=r"'0\.weight' has shape \(8, 1, 4\), expected \(8, 1, 5\)"
    ):
        spec.flatten({**state, "0.weight": torch.zeros(8, 1, 4)})
    pop = {k: v.expand(3, *v.shape) for k, v in state.items() if v.is_floating_point()}
    pop["6.bias"] = torch.zeros(2, 3)
    with pytest.raises(GenomeError, match=r"'6\.bias' has shape \(2, 3\), expected \(3, 3\)"):
        spec.flatten_batch(pop)


def test_error_wrong_dtype(cnn_spec_state):
    spec, state = cnn_spec_state
    with pytest.raises(GenomeError, match=r"'1\.running_mean' has dtype float64"):
        spec.flatten({**state, "1.running_mean": state["1.running_mean"].double()})
    with pytest.raises(GenomeError, match=r"'1\.bias' must be a floating tensor"):
        spec.flatten({**state, "1.bias": torch.zeros(8, dtype=torch.long)})
    with pytest.raises(GenomeError, match="floating"):
        spec.unflatten(torch.zeros(spec.numel, dtype=torch.long))


def test_error_wrong_length(cnn_spec_state):
    spec, _ = cnn_spec_state
    n = spec.numel
    with pytest.raises(GenomeError, match=rf"length {n + 1}, expected {n}"):
        spec.unflatten(torch.zeros(n + 1))
    with pytest.raises(GenomeError, match=rf"length {n - 1}, expected {n}"):
        spec.unflatten(torch.zeros(3, n - 1))
    with pytest.raises(GenomeError, match=r"\(n,\) or \(P, n\)"):
        spec.unflatten(torch.zeros(2, 2, n))


def test_error_non_finite_names_tensor(cnn_spec_state):
    spec, state = cnn_spec_state
    genome = spec.flatten(state)
    spec.unflatten(genome, check_finite=True)  # finite: fine
    i = spec.index("3.weight")
    bad = genome.clone()
    bad[spec.offsets[i] + 5] = float("nan")
    spec.unflatten(bad)  # not asked: no check
    with pytest.raises(GenomeError, match=r"1 non-finite value\(s\); first in tensor '3\.weight'"):
        spec.unflatten(bad, check_finite=True)
    pop = genome.repeat(3, 1)  # (P, n)
    pop[1, spec.offsets[spec.index("6.bias")]] = float("-inf")
    with pytest.raises(GenomeError, match=r"individual 1, tensor '6\.bias'"):
        spec.unflatten(pop, check_finite=True)


def test_error_bad_spec():
    t = TensorSpec("a", (2,), torch.float32, "weight")
    with pytest.raises(GenomeError, match="duplicate.*'a'"):
        GenomeSpec([t, t])
    with pytest.raises(GenomeError, match="'b' has unknown kind 'gene'"):
        GenomeSpec([TensorSpec("b", (2,), torch.float32, "gene")])
    with pytest.raises(GenomeError, match="at least one"):
        GenomeSpec([])
    with pytest.raises(GenomeError, match="'c' has dtype"):
        GenomeSpec([TensorSpec("c", (2,), torch.int32, "weight")])
    with pytest.raises(GenomeError, match="malformed"):
        GenomeSpec.from_dict({"tensors": [{"name": "a", "shape": [2]}]})
    with pytest.raises(GenomeError, match="'a' has unsupported dtype 'int8'"):
        GenomeSpec.from_dict(
            {"tensors": [{"name": "a", "shape": [2], "dtype": "int8", "kind": "weight"}]}
        )
    with pytest.raises(GenomeError, match="not valid JSON"):
        GenomeSpec.from_json("{nope")


# ---- property-based: random specs, dtypes and bit patterns -----------------------------------------
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
float_dtypes = st.sampled_from([torch.float32, torch.bfloat16, torch.float16])


@st.composite
def specs(draw, mixed: bool = False) -> GenomeSpec:
    k = draw(st.integers(1, 6))
    one = draw(float_dtypes)
    return GenomeSpec(
        TensorSpec(
            f"m{i}.t",
            draw(shapes),
            draw(float_dtypes) if mixed else one,
            draw(st.sampled_from(KINDS)),
        )
        for i in range(k)
    )


@HYP
@given(spec=specs(mixed=True), pop=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
def test_property_round_trip(spec: GenomeSpec, pop: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    lead = (pop,) if pop else ()
    state = {t.name: random_bits((*lead, *t.shape), t.dtype, gen) for t in spec}
    genome = spec.flatten_batch(state) if pop else spec.flatten(state)
    assert genome.shape == (*lead, spec.numel) and genome.dtype == spec.dtype
    assert spec.offsets == tuple(sum(spec.numels[:i]) for i in range(len(spec)))
    views = spec.unflatten(genome)
    back = spec.unflatten_to_module_dtypes(genome)
    for t in spec:
        assert views[t.name].shape == (*lead, *t.shape)
        assert bits_equal(back[t.name], state[t.name])
        if t.dtype == spec.dtype:  # no cast at all: the view itself holds the original bits
            assert bits_equal(views[t.name], state[t.name])
    assert bits_equal(spec.flatten_batch(views) if pop else spec.flatten(views), genome)
    assert GenomeSpec.from_json(spec.to_json()) == spec
    assert spec.numel == sum(math.prod(t.shape) for t in spec)
