"""Model families: shapes, population evaluation under vmap(functional_call), LSTM/GPT-2 weight
compatibility, and the hidden-unit permutation symmetries."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.func import functional_call, vmap

from latent_evo.genome import GenomeSpec
from latent_evo.models import (
    GPT2,
    LSTM,
    MLP,
    MODEL_PRESETS,
    CharLSTM,
    CifarResNet,
    CNN1d,
    CNN2d,
    GPT2Config,
    GPT2LoadError,
    apply_permutation,
    build_model,
    infer_gpt2_config,
    load_gpt2_state_dict,
    permutation_groups,
    random_permutations,
    torchvision_resnet,
)

TOKENS = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))

# family name -> (factory, input). Each factory builds a fresh, differently initialised model.
CASES = {
    "mlp": (lambda: MLP(40, (32, 32), 10), torch.randn(4, 40)),
    "mlp_gelu": (lambda: MLP(64, (16,), 3, activation="gelu"), torch.randn(4, 1, 8, 8)),
    "cnn1d": (lambda: CNN1d(1, 40, (8, 16), 10), torch.randn(4, 40)),
    "cnn1d_ch": (lambda: CNN1d(2, 40, (8, 16, 16), 10, kernel_size=3), torch.randn(4, 2, 40)),
    "cnn2d": (lambda: CNN2d(1, 8, (8, 16), 10), torch.randn(4, 1, 8, 8)),
    "resnet8": (lambda: CifarResNet(8, 3, 10, width=8), torch.randn(2, 3, 16, 16)),
    "resnet20": (lambda: CifarResNet(20, 1, 5, width=4), torch.randn(2, 1, 12, 12)),
    "tv_resnet18": (
        lambda: torchvision_resnet("resnet18", 10, 1, small_input=True),
        torch.randn(2, 1, 8, 8),
    ),
    "lstm": (lambda: CharLSTM(96, 16, 32, num_layers=2), TOKENS),
    "gpt2": (lambda: GPT2(GPT2Config.preset("tiny", vocab_size=96)), TOKENS),
}
OUT_SHAPES = {
    "mlp": (4, 10), "mlp_gelu": (4, 3), "cnn1d": (4, 10), "cnn1d_ch": (4, 10), "cnn2d": (4, 10),
    "resnet8": (2, 10), "resnet20": (2, 5), "tv_resnet18": (2, 10), "lstm": (2, 12, 96), "gpt2": (2, 12, 96),
}  # fmt: skip


def make_population(factory, P, seed=0):
    """P models with different weights (and random BN running stats), in eval mode."""
    models = []
    for p in range(P):
        torch.manual_seed(seed + p)
        m = factory()
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.5)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
        # BN/LN affines start at 1 and biases at 0: make them differ between genomes
        for w in m.parameters():
            if w.dim() == 1 and (torch.all(w == 0) or torch.all(w == 1)):
                w.data.add_(torch.randn_like(w), alpha=0.2)
        models.append(m.eval())
    return models


def stack(models):
    """The population's genomes as {name: (P, *shape)}, exactly the tensors of the GenomeSpec."""
    spec = GenomeSpec.from_module(models[0])
    tensors = [{**dict(m.named_parameters()), **dict(m.named_buffers())} for m in models]
    return {t.name: torch.stack([d[t.name].detach() for d in tensors]) for t in spec.tensors}


def population_forward(model, stacked, x):
    return vmap(lambda sd: functional_call(model, sd, (x,)))(stacked)


@pytest.mark.parametrize("case", [c for c in CASES if c != "tv_resnet18"])  # that one: next test
def test_forward_shape(case):
    factory, x = CASES[case]
    assert factory()(x).shape == OUT_SHAPES[case]


@pytest.mark.parametrize("case", [c for c in CASES if c != "resnet20"])  # that one: symmetry test
def test_vmap_population_matches_loop(case):
    factory, x = CASES[case]
    P = 2 if case == "tv_resnet18" else 3  # 11M parameters a genome: keep the test quick
    models = make_population(factory, P)
    stacked = stack(models)
    before = {k: v.clone() for k, v in stacked.items()}
    with torch.no_grad():
        out = population_forward(models[0], stacked, x)
        ref = torch.stack([m(x) for m in models])
    assert out.shape == (P, *OUT_SHAPES[case])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ref[0], ref[1])  # the population really differs
    for k, v in stacked.items():  # eval-mode forward never writes into the genome (BN stats)
        assert torch.equal(v, before[k]), k


def test_batchnorm_eval_uses_stacked_running_stats():
    models = make_population(lambda: CifarResNet(8, 3, 10, width=4), 2)
    stacked = stack(models)
    assert any(k.endswith("running_var") for k in stacked)  # the stats are part of the genome
    x = torch.randn(2, 3, 8, 8)
    shifted = dict(stacked)
    shifted["bn1.running_mean"] = stacked["bn1.running_mean"] + torch.tensor([[1.0], [0.0]])
    with torch.no_grad():
        a, b = population_forward(models[0], stacked, x), population_forward(models[0], shifted, x)
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


@pytest.mark.parametrize("case", ["mlp", "gpt2", "lstm"])
def test_vmap_gradients_match_loop(case):
    """The fitness loss is differentiated through the decoded weights: grads must match too."""
    factory, x = CASES[case]
    x = x[:, :6] if case != "mlp" else x  # shorter sequences: backward through the time loop
    out_dims = tuple(range(1, 1 + len(OUT_SHAPES[case])))
    models = make_population(factory, 2)
    stacked = {k: v.requires_grad_() for k, v in stack(models).items()}
    population_forward(models[0], stacked, x).square().mean(dim=out_dims).sum().backward()
    for p, m in enumerate(models):
        m(x).square().mean().backward()
        for name, w in m.named_parameters():
            torch.testing.assert_close(stacked[name].grad[p], w.grad, rtol=1e-4, atol=1e-6)


def test_torchvision_resnet50_adapts_stem():
    with torch.device("meta"):  # shapes only: building real weights takes a while
        model = torchvision_resnet("resnet50", num_classes=4, in_channels=1)
        small = torchvision_resnet("resnet50", small_input=True)
    assert model.conv1.weight.shape == (64, 1, 7, 7) and model.fc.weight.shape == (4, 2048)
    assert small.conv1.weight.shape == (64, 3, 3, 3) and isinstance(small.maxpool, nn.Identity)
    with pytest.raises(ValueError, match="resnet18"):
        torchvision_resnet("resnet19")


@pytest.mark.slow
def test_torchvision_resnet50_under_vmap():
    models = make_population(lambda: torchvision_resnet("resnet50", num_classes=4), 2)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = population_forward(models[0], stack(models), x)
        ref = torch.stack([m(x) for m in models])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert models[0].conv1.in_channels == 3 and models[0].fc.out_features == 4


def test_lstm_equals_nn_lstm():
    torch.manual_seed(0)
    ref = nn.LSTM(5, 7, num_layers=2, batch_first=True)
    ours = LSTM(5, 7, num_layers=2)
    ours.load_state_dict(ref.state_dict())  # same names and shapes
    x, h0, c0 = torch.randn(3, 6, 5), torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    out, (h, c) = ours(x, (h0, c0))
    out_ref, (h_ref, c_ref) = ref(x, (h0, c0))
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=1e-5, atol=1e-6)


def test_char_lstm_loads_nn_lstm_language_model():
    torch.manual_seed(1)
    ref = nn.ModuleDict(
        dict(
            embed=nn.Embedding(20, 8),
            lstm=nn.LSTM(8, 16, 2, batch_first=True),
            head=nn.Linear(16, 20),
        )
    )
    model = CharLSTM(20, 8, 16, num_layers=2)
    model.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 20, (2, 9))
    expected = ref["head"](ref["lstm"](ref["embed"](idx))[0])
    torch.testing.assert_close(model(idx), expected, rtol=1e-5, atol=1e-6)


# ----- GPT-2 -----------------------------------------------------------------------------------

CFG = dict(vocab_size=50, n_ctx=16, n_embd=64, n_layer=2, n_head=2)


def public_gpt2_state_dict(vocab_size, n_ctx, n_embd, n_layer, n_head, bare, seed=0):
    """Random tensors under the public checkpoints' names and shapes, written out independently
    of our model: HF `GPT2LMHeadModel` (prefixed, with lm_head) or the original file (bare, with
    the attention mask buffers)."""
    g = torch.Generator().manual_seed(seed)
    d = n_embd

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    sd = {"wte.weight": r(vocab_size, d), "wpe.weight": r(n_ctx, d)}
    for i in range(n_layer):
        h = f"h.{i}."
        sd |= {
            h + "ln_1.weight": 1 + r(d),
            h + "ln_1.bias": r(d),
            h + "ln_2.weight": 1 + r(d),
            h + "ln_2.bias": r(d),
        }
        sd |= {h + "attn.c_attn.weight": r(d, 3 * d), h + "attn.c_attn.bias": r(3 * d)}
        sd |= {h + "attn.c_proj.weight": r(d, d), h + "attn.c_proj.bias": r(d)}
        sd |= {h + "mlp.c_fc.weight": r(d, 4 * d), h + "mlp.c_fc.bias": r(4 * d)}
        sd |= {h + "mlp.c_proj.weight": r(4 * d, d), h + "mlp.c_proj.bias": r(d)}
        if bare:  # the original checkpoint's causal-mask buffers
            sd[h + "attn.bias"] = torch.ones(n_ctx, n_ctx).tril().view(1, 1, n_ctx, n_ctx)
            sd[h + "attn.masked_bias"] = torch.tensor(-1e4)
    sd |= {"ln_f.weight": 1 + r(d), "ln_f.bias": r(d)}
    if bare:
        return sd
    out = {f"transformer.{k}": v for k, v in sd.items()}
    out["lm_head.weight"] = out["transformer.wte.weight"].clone()
    return out


def reference_gpt2_logits(sd, idx, n_head):
    """GPT-2's forward written from the paper/HF code, reading the bare-named state dict."""
    T = idx.shape[1]
    x = sd["wte.weight"][idx] + sd["wpe.weight"][:T]
    n_layer = len({k.split(".")[1] for k in sd if k.startswith("h.")})
    mask = torch.ones(T, T).tril().bool()
    for i in range(n_layer):
        w = {k[len(f"h.{i}.") :]: v for k, v in sd.items() if k.startswith(f"h.{i}.")}
        a = F.layer_norm(x, x.shape[-1:], w["ln_1.weight"], w["ln_1.bias"], 1e-5)
        q, k, v = (a @ w["attn.c_attn.weight"] + w["attn.c_attn.bias"]).chunk(3, dim=-1)
        heads = lambda t: t.unflatten(-1, (n_head, -1)).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        y = (att.masked_fill(~mask, float("-inf")).softmax(-1) @ v).transpose(1, 2).flatten(2)
        x = x + y @ w["attn.c_proj.weight"] + w["attn.c_proj.bias"]
        m = F.layer_norm(x, x.shape[-1:], w["ln_2.weight"], w["ln_2.bias"], 1e-5)
        m = 0.5 * (m @ w["mlp.c_fc.weight"] + w["mlp.c_fc.bias"])
        m = m * (1 + torch.tanh(math.sqrt(2 / math.pi) * (2 * m + 0.044715 * (2 * m) ** 3)))
        x = x + m @ w["mlp.c_proj.weight"] + w["mlp.c_proj.bias"]
    x = F.layer_norm(x, x.shape[-1:], sd["ln_f.weight"], sd["ln_f.bias"], 1e-5)
    return x @ sd["wte.weight"].T


def test_gpt2_loads_public_names_prefixed_and_bare():
    idx = torch.randint(0, CFG["vocab_size"], (2, 10))
    bare = public_gpt2_state_dict(**CFG, bare=True)
    prefixed = public_gpt2_state_dict(**CFG, bare=False)
    a = load_gpt2_state_dict(GPT2(GPT2Config(**CFG)), bare)
    b = load_gpt2_state_dict(GPT2(GPT2Config(**CFG)), prefixed)
    expected = reference_gpt2_logits(bare, idx, CFG["n_head"])
    with torch.no_grad():
        torch.testing.assert_close(a(idx), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b(idx), a(idx), rtol=0, atol=0)
    assert a.lm_head.weight is a.transformer.wte.weight  # still tied after loading
    spec = GenomeSpec.from_module(a)  # the genome holds the tied matrix once
    assert [t.name for t in spec.tensors].count("transformer.wte.weight") == 1
    assert "lm_head.weight" not in [t.name for t in spec.tensors]


def test_gpt2_from_safetensors(tmp_path):
    bare = public_gpt2_state_dict(**CFG, bare=True)
    path = tmp_path / "model.safetensors"
    save_file(bare, str(path))
    (tmp_path / "config.json").write_text(
        json.dumps({"vocab_size": 50, "n_positions": 16, "n_embd": 64, "n_layer": 2, "n_head": 2})
    )
    model = GPT2.from_safetensors(path)
    assert model.config == GPT2Config(**CFG)
    assert model.lm_head.weight is model.transformer.wte.weight  # re-tied after loading
    assert sum(p.numel() for p in model.parameters()) == GPT2Config(**CFG).num_params
    idx = torch.randint(0, 50, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(
            model(idx), reference_gpt2_logits(bare, idx, 2), rtol=1e-4, atol=1e-4
        )
    # without config.json the shapes give everything but n_head (GPT-2's head size 64 is assumed)
    assert infer_gpt2_config(bare) == GPT2Config(50, 16, 64, 2, 1)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        GPT2.from_safetensors(tmp_path / "nope.safetensors")


def test_gpt2_bad_state_dict_names_the_tensor():
    model = GPT2(GPT2Config(**CFG))
    sd = public_gpt2_state_dict(**CFG, bare=True)
    missing = {k: v for k, v in sd.items() if k != "h.1.mlp.c_fc.bias"}
    with pytest.raises(
        GPT2LoadError, match=r"missing 1 tensor.*transformer\.h\.1\.mlp\.c_fc\.bias"
    ):
        load_gpt2_state_dict(model, missing)
    wrong = dict(sd, **{"h.0.attn.c_attn.weight": torch.zeros(3 * 64, 64)})  # (out, in): transposed
    with pytest.raises(
        GPT2LoadError,
        match=r"transformer\.h\.0\.attn\.c_attn\.weight has shape \(192, 64\), expected \(64, 192\)",
    ):
        load_gpt2_state_dict(model, wrong)
    untied = public_gpt2_state_dict(**CFG, bare=False)
    untied["lm_head.weight"] = untied["lm_head.weight"] + 1
    with pytest.raises(GPT2LoadError, match="lm_head.weight differs"):
        load_gpt2_state_dict(model, untied)
    with pytest.raises(
        GPT2LoadError, match=r"unexpected 1 tensor.*transformer\.h\.2\.ln_1\.weight"
    ):
        load_gpt2_state_dict(model, dict(sd, **{"h.2.ln_1.weight": torch.ones(64)}))


def test_gpt2_124m_parameter_count():
    config = GPT2Config.preset("gpt2")
    assert (config.vocab_size, config.n_ctx, config.n_embd, config.n_layer, config.n_head) == (
        50257,
        1024,
        768,
        12,
        12,
    )
    with torch.device("meta"):
        model = GPT2(config)
    assert sum(p.numel() for p in model.parameters()) == 124_439_808 == config.num_params
    tiny = GPT2Config.preset("tiny")
    assert 80_000 < tiny.num_params < 130_000 and tiny.vocab_size <= 256
    with pytest.raises(ValueError, match="n_ctx=128"):
        GPT2(tiny)(torch.zeros(1, 129, dtype=torch.long))


# ----- symmetry and building ---------------------------------------------------------------------

SYMMETRY_CASES = ["mlp", "cnn1d", "cnn1d_ch", "cnn2d", "resnet20", "lstm", "gpt2"]


@pytest.mark.parametrize("case", SYMMETRY_CASES)
def test_permutation_preserves_function(case):
    factory, x = CASES[case]
    models = make_population(factory, 3)
    stacked = stack(models)
    groups = permutation_groups(models[0])
    assert groups
    perms = random_permutations(groups, stacked, torch.Generator().manual_seed(0))
    permuted = apply_permutation(stacked, groups, perms)
    for name in {n for g in groups for n, _ in g}:
        assert not torch.equal(permuted[name], stacked[name]), name  # every listed tensor moved
    with torch.no_grad():
        torch.testing.assert_close(
            population_forward(models[0], permuted, x),
            population_forward(models[0], stacked, x),
            rtol=1e-4,
            atol=1e-5,
        )


def test_apply_permutation_is_per_genome():
    stacked = {
        "layers.0.weight": torch.arange(6.0).view(1, 3, 2).repeat(2, 1, 1),
        "layers.0.bias": torch.zeros(2, 3),
    }
    perms = [torch.tensor([[2, 0, 1], [0, 1, 2]])]
    out = apply_permutation(stacked, [[("layers.0.weight", 0), ("layers.0.bias", 0)]], perms)
    assert out["layers.0.weight"][0].tolist() == [[4, 5], [0, 1], [2, 3]]
    assert torch.equal(out["layers.0.weight"][1], stacked["layers.0.weight"][1])
    with pytest.raises(ValueError, match="layers.9.weight"):
        apply_permutation(stacked, [[("layers.9.weight", 0)]], perms)
    assert permutation_groups(torchvision_resnet("resnet18")) == []


def test_build_model_presets_and_errors():
    for family, presets in MODEL_PRESETS.items():
        for preset in presets:
            if family == "torchvision_resnet" or preset.startswith("gpt2") or preset == "base":
                continue  # big ones: built elsewhere
            assert isinstance(build_model(family, preset), nn.Module)
    m = build_model("gpt2", "tiny", vocab_size=65)
    assert m.config.vocab_size == 65 and m.config.n_embd == GPT2Config.preset("tiny").n_embd
    assert build_model("mlp", hidden=(8,)).hidden == (8,)
    assert build_model("resnet", depth=20).depth == 20
    with pytest.raises(ValueError, match=r"unknown model family 'vit'.*'mlp'.*'gpt2'"):
        build_model("vit")
    with pytest.raises(ValueError, match=r"unknown argument.*'hiden'.*valid.*'hidden'"):
        build_model("mlp", hiden=(8,))
    with pytest.raises(ValueError, match=r"unknown argument.*'width'.*valid.*'n_embd'"):
        build_model("gpt2", width=8)
    with pytest.raises(ValueError, match=r"unknown cnn1d preset 'huge'.*'tiny'"):
        build_model("cnn1d", "huge")
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth=10)
    with pytest.raises(ValueError, match=r"CNN1d expects \(B, 40\)"):
        CNN1d()(torch.randn(2, 41))


@pytest.mark.parametrize("grad", [False, True], ids=["fitness", "zoo-training"])
def test_gpt2_attention_under_vmap_never_falls_back_to_a_loop(grad):
    """A population's GPT-2 attention runs batched (the fused kernel over population x batch via
    its vmap rule; under grad the written-out attention), never torch's per-sample fallback."""
    import warnings

    factory, x = CASES["gpt2"]
    models = make_population(factory, 3)
    stacked = {k: v.requires_grad_(grad) for k, v in stack(models).items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*batching rule")  # the fallback loop warns
        with torch.set_grad_enabled(grad):
            out = population_forward(models[0], stacked, x)
    with torch.no_grad():
        ref = torch.stack([m(x) for m in models])
    torch.testing.assert_close(out.detach(), ref, rtol=1e-4, atol=1e-5)
