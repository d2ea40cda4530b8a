"""Compressor (attention autoencoder + hypernetwork decoder), MLP baseline and combined loss."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from latent_evo.compressor.attention import Compressor, CompressorConfig
from latent_evo.compressor.layers import Block
from latent_evo.compressor.losses import (
    compressor_loss,
    functional_fitness,
    kl_divergence,
    masked_mse,
)
from latent_evo.compressor.mlp import MLPAutoencoder
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.genome import GenomeError, GenomeSpec

SMALL = dict(
    d_model=32,
    n_heads=2,
    encoder_layers=2,
    num_latents=4,
    latent_dim=4,
    decoder_heads=2,
    head_hidden=16,
)


def _models():
    """Small instances of every model family (the package's classes when present)."""
    try:
        from latent_evo.models import GPT2, MLP, CharLSTM, CifarResNet, CNN1d, GPT2Config

        return {
            "mlp": lambda: MLP(8, (16, 16), 4),
            "cnn1d": lambda: CNN1d(1, 40, (4, 8), 10),
            "resnet8": lambda: CifarResNet(depth=8, width=4),
            "lstm": lambda: CharLSTM(vocab_size=16, embed_dim=8, hidden_size=12),
            "gpt2_tiny": lambda: GPT2(
                GPT2Config(vocab_size=32, n_ctx=16, n_embd=16, n_layer=2, n_head=2)
            ),
        }
    except ImportError:  # fall back to plain torch modules of the same shapes
        return {
            "mlp": lambda: nn.Sequential(
                nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 4)
            ),
            "cnn1d": lambda: nn.Sequential(
                nn.Conv1d(1, 4, 5), nn.Conv1d(4, 8, 5), nn.Linear(8, 10)
            ),
            "resnet8": lambda: nn.Sequential(
                nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 10)
            ),
            "lstm": lambda: nn.ModuleDict({"embed": nn.Embedding(16, 8), "lstm": nn.LSTM(8, 12)}),
            "gpt2_tiny": lambda: nn.TransformerEncoderLayer(16, 2, 32),
        }


MODELS = _models()


def _population(factory, p: int, seed: int = 0) -> tuple[GenomeSpec, torch.Tensor]:
    torch.manual_seed(seed)
    spec = GenomeSpec.from_module(factory())
    genomes = torch.stack([spec.flatten(factory().state_dict()) for _ in range(p)])  # (P, n)
    return spec, genomes + 0.01 * torch.randn_like(genomes)  # BN buffers differ too


def _compressor(factory, p=3, seed=0, cls=Compressor, **cfg):
    spec, genomes = _population(factory, p, seed)
    tok = Tokenizer(spec, cfg.pop("chunk_size", 16)).fit_normalization(genomes)
    torch.manual_seed(seed)
    return cls.from_tokenizer(tok, **({**SMALL, **cfg} if cls is Compressor else cfg)), genomes


@pytest.mark.parametrize("family", list(MODELS))
def test_shapes_and_masks(family):
    comp, genomes = _compressor(MODELS[family], attention_window=8)  # windows exercised too
    tok = comp.tokenizer
    tokens = tok.tokenize(genomes)  # (P, T, C)
    out = comp(tokens)
    P, s = genomes.shape[0], comp.latent_size
    assert out["recon"].shape == tokens.shape and out["z"].shape == (P, s)
    assert out["mu"].shape == out["logvar"].shape == (P, s) and out["fitness_pred"].shape == (P,)
    assert (out["recon"][:, ~tok.mask] == 0).all()  # padding slots are exactly zero
    assert out["recon"][:, tok.mask].abs().sum() > 0
    z = comp.encode_genomes(genomes)
    assert z.shape == (P, s) and torch.isfinite(z).all()
    g = comp.decode_genomes(z)
    assert g.shape == genomes.shape and g.dtype == comp.spec.dtype
    assert comp.encode(tokens[0]).shape == (1, s)  # a single (T, C) genome is a population of one


@pytest.mark.parametrize("token_layers", [0, 1])
def test_block_decode_equals_one_pass(token_layers):
    comp, genomes = _compressor(
        MODELS["resnet8"], decoder_token_layers=token_layers, decoder_window=4
    )
    z = torch.randn(3, comp.latent_size)
    T = comp.tokenizer.num_tokens
    for train in (True, False):
        comp.train(train)
        full = comp.decode(z, block_size=T)
        for bs in (7, 100):
            torch.testing.assert_close(comp.decode(z, block_size=bs), full, rtol=1e-5, atol=1e-6)


def test_cached_decode_equals_uncached_and_invalidates():
    comp, _ = _compressor(MODELS["mlp"])
    comp.eval()
    z = torch.randn(4, comp.latent_size)
    with torch.no_grad():
        comp.out.weight.normal_()  # the head starts at zero: make the output depend on the queries
        cached = comp.decode(z)
        assert comp._cache is not None
    uncached = comp.decode(z)  # grad enabled -> features recomputed, no cache
    # with and without grad, SDPA may pick different kernels: equal to float32 rounding (seen:
    # 2.5e-6 absolute on unit-normal head weights on one CPU), not bit for bit
    torch.testing.assert_close(cached, uncached.detach(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        comp.to_q.weight.mul_(2.0)  # an in-place update (optimizer.step) invalidates the cache
        cached2 = comp.decode(z)
    assert not torch.allclose(cached2, cached)
    torch.testing.assert_close(cached2, comp.decode(z).detach(), rtol=1e-4, atol=1e-5)


def test_windowed_block_matches_full_attention_when_window_covers_sequence():
    torch.manual_seed(0)
    blk = Block(16, 2, window=None)
    x = torch.randn(2, 9, 16)
    y = blk(x)
    blk.window = 16
    torch.testing.assert_close(blk(x), y, rtol=1e-5, atol=1e-6)
    blk.window, blk.shift = 4, True  # local: output differs, shape and finiteness kept
    yl = blk(x)
    assert yl.shape == y.shape and torch.isfinite(yl).all() and not torch.allclose(yl, y)


@pytest.mark.parametrize("cls", [Compressor, MLPAutoencoder])
def test_save_load_round_trip(tmp_path, cls):
    comp, genomes = _compressor(MODELS["mlp"], cls=cls)
    comp.eval()
    comp.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    state = load_file(tmp_path / "model.safetensors")  # plain safetensors, no pickle
    torch.testing.assert_close(state["norm_std"], comp.norm_std)
    assert json.loads((tmp_path / "config.json").read_text())["genome_spec"] == comp.spec.to_dict()
    loaded = cls.from_pretrained(tmp_path)
    assert type(loaded.config) is type(comp.config) and loaded.config == comp.config
    assert loaded.spec == comp.spec
    torch.testing.assert_close(loaded.tokenizer.std, comp.tokenizer.std)
    with torch.no_grad():
        z = comp.encode_genomes(genomes)
        assert torch.equal(loaded.encode_genomes(genomes), z)
        assert torch.equal(loaded.decode_genomes(z), comp.decode_genomes(z))


def test_fitness_term_gradient_reaches_decoder():
    factory = MODELS["mlp"]
    comp, genomes = _compressor(factory, p=4)
    model = factory()
    fitness_fn = functional_fitness(model, F.cross_entropy)
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 8, generator=gen), torch.randint(0, 4, (32,), generator=gen))
    terms = compressor_loss(
        comp, comp.tokenizer.tokenize(genomes), fitness_fn=fitness_fn, batch=batch
    )
    assert set(terms) >= {"loss", "recon", "fit", "head", "kl"}
    assert terms["fit"] > 0 and terms["head"] > 0
    terms["fit"].backward()
    # the head starts at zero, so at init the gradient reaches it and the bank's coefficients
    for name in ("out.weight", "out.bias"):
        grad = comp.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert comp.head[0].weight.grad is None  # only the head term trains the head


@pytest.mark.parametrize("reg", ["kl", "noise", "none"])
def test_regularizers(reg):
    comp, genomes = _compressor(MODELS["mlp"], regularizer=reg, noise_std=0.5)
    tokens = comp.tokenizer.tokenize(genomes)
    comp.train()
    torch.manual_seed(1)
    out = comp(tokens)
    kl = kl_divergence(out["mu"], out["logvar"])
    if reg == "kl":
        assert out["logvar"].shape == out["mu"].shape and kl > 0
        assert not torch.allclose(out["z"], out["mu"])
    else:
        assert out["logvar"] is None and kl == 0
        # codes are standardised so that N(0, I) samples and mutations match real codes
        torch.testing.assert_close(out["mu"].pow(2).mean(1), torch.ones(3), rtol=1e-3, atol=1e-3)
        if reg == "noise":
            assert 0.2 < (out["z"] - out["mu"]).std() < 0.8
        else:
            assert torch.equal(out["z"], out["mu"])
    comp.eval()
    out = comp(tokens)
    assert torch.equal(out["z"], out["mu"])  # eval: the posterior mean, deterministic
    terms = compressor_loss(comp, tokens, beta=2.0)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 2.0 * terms["kl"])


def test_sample_shape_and_seed():
    comp, _ = _compressor(MODELS["mlp"])
    a = comp.sample(7, torch.Generator().manual_seed(3))
    assert a.shape == (7, comp.latent_size)
    assert torch.equal(a, comp.sample(7, torch.Generator().manual_seed(3)))
    assert comp.decode_genomes(a).shape == (7, comp.spec.numel)


@pytest.mark.parametrize("cls", [Compressor, MLPAutoencoder])
def test_fit_prior_samples_like_the_codes_and_survives_save_load(tmp_path, cls):
    comp, _ = _compressor(MODELS["mlp"], cls=cls)
    s = comp.latent_size
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(s, s, generator=g) / s**0.5
    codes = 3.0 + torch.randn(4000, s, generator=g) @ mix.T  # (N, s): mean 3, covariance mix mix^T
    comp.fit_prior(codes, shrinkage=0.0)
    z = comp.sample(20000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(z.mean(0), codes.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.cov(codes.T), atol=0.05, rtol=0)
    comp.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    a = loaded.sample(5, torch.Generator().manual_seed(2))
    assert torch.equal(a, comp.sample(5, torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError, match="NaN"):
        comp.fit_prior(torch.full((3, s), float("nan")))
    with pytest.raises(ValueError, match="at least 2"):
        comp.fit_prior(codes[:1])


def test_compressor_saved_before_fitted_priors_loads_with_standard_normal(tmp_path):
    """Format 1 files have no prior buffers: they load, and `sample` stays N(0, I)."""
    from safetensors.torch import save_file

    comp, _ = _compressor(MODELS["mlp"], cls=MLPAutoencoder)
    comp.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("prior_")},
              tmp_path / "model.safetensors")  # fmt: skip
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "format_version": 1}))
    (tmp_path / "checksums.json").unlink()  # format 1 folders had no checksums either
    loaded = MLPAutoencoder.from_pretrained(tmp_path)
    assert loaded.config.format_version == 1
    z = loaded.sample(3, torch.Generator().manual_seed(0))
    assert torch.equal(
        z, torch.randn(3, loaded.latent_size, generator=torch.Generator().manual_seed(0))
    )


def test_spec_mismatch_is_a_clear_error():
    comp, genomes = _compressor(MODELS["mlp"])
    other = GenomeSpec.from_module(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5)))
    with pytest.raises(GenomeError, match=r"does not match.*tensor"):
        comp.check_spec(other)
    comp.check_spec(GenomeSpec.from_dict(comp.spec.to_dict()))  # equal spec passes
    with pytest.raises(GenomeError, match="length"):
        comp.encode_genomes(genomes[:, :-1])
    with pytest.raises(GenomeError, match="tokens must have shape"):
        comp.encode(torch.zeros(2, 3, 16))
    with pytest.raises(ValueError, match="latent codes"):
        comp.decode(torch.zeros(2, comp.latent_size + 1))
    with pytest.raises(ValueError, match="regularizer"):
        CompressorConfig(genome_spec=comp.spec.to_dict(), regularizer="vq")


@pytest.mark.parametrize("cls", [Compressor, MLPAutoencoder])
def test_overfit_small_mlp_genomes(cls):
    small = dict(encoder_layers=1, num_latents=8, decoder_heads=2) if cls is Compressor else {}
    comp, genomes = _compressor(MODELS["mlp"], p=8, seed=0, cls=cls, regularizer="none", **small)
    tokens = comp.tokenizer.tokenize(genomes)
    mask = comp.tokenizer.mask
    opt = torch.optim.Adam(comp.parameters(), lr=3e-3)
    comp.train()
    with torch.no_grad():
        first = masked_mse(comp(tokens)["recon"], tokens, mask).item()
    for _ in range(250):
        loss = masked_mse(comp(tokens)["recon"], tokens, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    comp.eval()
    with torch.no_grad():
        last = masked_mse(comp.decode(comp.encode(tokens)), tokens, mask).item()
    # random inits are incompressible; the hypernetwork first fits the per-token mean (MSE ~0.9)
    # and then separates genomes (seen: 0.40x after 250 steps); the MLP baseline memorises them
    assert last < (0.6 if cls is Compressor else 0.05) * first, (first, last)


# ---- the residual token decoder ----------------------------------------------------------------
def _r2_around(pred: torch.Tensor, target: torch.Tensor, base: torch.Tensor) -> float:
    """1 - SSE / SST with SST around `base`: 0 = no better than the base, 1 = exact."""
    return float(1 - ((pred - target) ** 2).sum() / ((target - base) ** 2).sum())


def test_zero_head_decodes_the_base_and_set_base_takes_a_network():
    comp, genomes = _compressor(MODELS["resnet8"], p=4)
    comp.eval()
    z = torch.randn(2, comp.latent_size)
    with torch.no_grad():  # the head starts at zero: every code decodes to the training mean
        torch.testing.assert_close(comp.decode_genomes(z), genomes.mean(0).expand(2, -1))
        comp.set_base(genomes[1])  # a user's network
        torch.testing.assert_close(comp.decode_genomes(z)[0], genomes[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(GenomeError, match="length"):
        comp.set_base(genomes[1, :-1])
    flat, _ = _compressor(MODELS["mlp"], residual_base=False)
    assert flat.base.abs().sum() == 0  # around the tensor means only
    with pytest.raises(ValueError, match="residual_base=False"):
        flat.set_base(torch.zeros(flat.spec.numel))


def _fit_reconstruction(comp, tokens, mask, steps: int, lr: float) -> None:
    """`steps` Adam steps of the masked reconstruction loss on `tokens`, then eval mode."""
    opt = torch.optim.Adam(comp.parameters(), lr=lr)
    comp.train()
    for _ in range(steps):
        loss = masked_mse(comp(tokens)["recon"], tokens, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    comp.eval()


def test_overfit_one_network():
    """The per-token bank gives the decoder capacity per position: it reproduces one network
    that is not its base to R^2 > 0.99 (of the residual around the base)."""
    comp, genomes = _compressor(MODELS["mlp"], p=4, regularizer="none", encoder_layers=0)
    tok = comp.tokenizer
    target = tok.tokenize(genomes[:1])  # (1, T, C); the base is the mean of all four
    _fit_reconstruction(comp, target, tok.mask, steps=100, lr=1e-2)
    with torch.no_grad():
        recon = comp.decode_genomes(comp.encode_genomes(genomes[:1]))
    assert _r2_around(recon, genomes[:1], genomes.mean(0)) > 0.99


def _shared_init_zoo(n_models: int = 24, steps: int = 40):
    """A tiny shared-init zoo: one MLP init trained with different lr / batch order; plus data."""
    factory = MODELS["mlp"]
    torch.manual_seed(0)
    teacher = torch.randn(8, 4)
    x, xt = torch.randn(512, 8), torch.randn(512, 8)
    y, yt = (x @ teacher).argmax(1), (xt @ teacher).argmax(1)
    init = factory()
    spec = GenomeSpec.from_module(init)
    genomes = []
    for i in range(n_models):
        net = factory()
        net.load_state_dict(init.state_dict())
        opt = torch.optim.Adam(net.parameters(), lr=3e-3 * 2 ** (i % 4))
        gen = torch.Generator().manual_seed(i)
        for _ in range(steps):
            idx = torch.randint(0, 512, (64,), generator=gen)
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        genomes.append(spec.flatten(net.state_dict()).detach())
    model = factory()

    def accuracy(g: torch.Tensor) -> torch.Tensor:  # (N, n) -> (N,) test accuracy
        fn = lambda p: (torch.func.functional_call(model, p, (xt,)).argmax(1) == yt).float().mean()  # noqa: E731
        return torch.stack([fn(spec.unflatten(w)) for w in g])

    return spec, torch.stack(genomes), accuracy


def test_held_out_networks_of_a_shared_init_zoo_keep_their_accuracy():
    spec, genomes, accuracy = _shared_init_zoo()
    train, held = genomes[:20], genomes[20:]
    tok = Tokenizer(spec, 16).fit_normalization(train)
    torch.manual_seed(0)
    comp = Compressor.from_tokenizer(tok, **{**SMALL, "encoder_layers": 0, "regularizer": "none"})
    _fit_reconstruction(comp, tok.tokenize(train), tok.mask, steps=150, lr=3e-3)
    with torch.no_grad():
        recon = comp.decode_genomes(comp.encode_genomes(held))
    base = train.mean(0)
    # held-out content beyond the training mean (batch-order noise of 20 models is not all
    # predictable: seen 0.27) and the accuracy of every held-out network
    r2 = _r2_around(recon, held, base)
    acc_held, acc_recon, acc_base = accuracy(held), accuracy(recon), accuracy(base[None])
    retention = acc_recon / acc_held  # seen: 1.02, 0.87, 0.97, 0.99
    assert r2 > 0.15 and retention.mean() > 0.93, (r2, retention)
    # closer to each held-out network's accuracy than the training mean network is
    assert (acc_recon - acc_held).abs().mean() < (acc_base - acc_held).abs().mean()


def test_batchnorm_running_var_decodes_positive_for_any_code():
    comp, genomes = _compressor(MODELS["resnet8"], p=4)
    with torch.no_grad():  # a head far from zero, codes far from the prior
        comp.out.weight.normal_(0, 3.0)
        comp.out.bias.normal_(0, 3.0)
    comp.eval()
    z = 10 * torch.randn(16, comp.latent_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g = comp.decode_genomes(z)
    assert torch.isfinite(g).all()
    params = comp.spec.unflatten(g)
    var_names = [k for k in params if k.endswith("running_var")]
    assert var_names and all(bool((params[k] > 0).all()) for k in var_names)
    # so a training step's loss is finite (it was NaN at step 1 before)
    tokens = comp.tokenizer.tokenize(genomes)
    comp.train()
    assert torch.isfinite(masked_mse(comp(tokens)["recon"], tokens, comp.tokenizer.mask))


@pytest.mark.parametrize("family", ["resnet8", "gpt2_tiny"])
def test_decode_tensors_equals_the_slice_of_a_full_decode(family):
    comp, _ = _compressor(MODELS[family], decoder_window=4)
    with torch.no_grad():
        comp.out.weight.normal_(0, 1.0)  # a non-trivial head, so tensors differ from the base
    comp.eval()
    z = torch.randn(3, comp.latent_size)
    names = [t.name for t in comp.spec.tensors]
    some = [names[-1], names[0]] + [n for n in names if n.endswith("running_var")][:1]
    with torch.no_grad():
        full = comp.spec.unflatten(comp.decode_genomes(z))
        for block_size in (None, 5):
            part = comp.decode_tensors(z, some, block_size=block_size)
            assert list(part) == some
            for name in some:
                assert part[name].shape == full[name].shape
                torch.testing.assert_close(part[name], full[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(GenomeError, match="no tensor"):
        comp.decode_tensors(z, ["nope.weight"])


@pytest.mark.parametrize(
    "switch", [{}, {"token_bank": False}, {"token_attention": False}, {"residual_base": False}]
)
def test_ablation_switches_change_the_model_and_train(switch):
    full, genomes = _compressor(MODELS["mlp"], p=4)
    comp, _ = _compressor(MODELS["mlp"], p=4, **switch)
    names, full_names = set(dict(comp.named_parameters())), set(dict(full.named_parameters()))
    if "token_bank" in switch:
        assert "bank" not in names and "token_emb" not in names and comp.out.out_features == 16
    if "token_attention" in switch:
        assert not any(".attn." in n for n in names if n.startswith("token_blocks"))
    if "residual_base" in switch:
        assert comp.base.abs().sum() == 0 and full.base.abs().sum() > 0
    else:
        assert (names != full_names) == bool(switch)
    tokens = comp.tokenizer.tokenize(genomes)
    loss = masked_mse(comp(tokens)["recon"], tokens, comp.tokenizer.mask)
    loss.backward()
    assert torch.isfinite(loss) and comp.out.weight.grad.abs().sum() > 0


def test_attention_compressor_of_an_older_format_is_refused(tmp_path):
    from latent_evo.compressor.mixin import CompressorFormatError

    comp, _ = _compressor(MODELS["mlp"])
    comp.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "format_version": 2}))
    with pytest.raises(CompressorFormatError, match="format 2.*Pretrain it again"):
        Compressor.from_pretrained(tmp_path)


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize("chunk_size", [8, 64])
def test_fast_raw_decode_equals_detokenized_tokens(family, chunk_size):
    """`decode_genomes` mixes banks straight into raw slots; it must equal the generic path."""
    from latent_evo.compressor.base import GenomeAutoencoder

    comp, _ = _compressor(MODELS[family], chunk_size=chunk_size)
    comp.eval()
    with torch.no_grad():  # a trained-looking bank: the zero-init head would hide mistakes
        for p in comp.parameters():
            p.add_(0.1 * torch.randn_like(p))
        z = comp.sample(5, torch.Generator().manual_seed(0))
        generic = GenomeAutoencoder.decode_genomes(comp, z)
        for block in (None, 3):
            torch.testing.assert_close(comp.decode_genomes(z, block), generic, rtol=1e-5, atol=1e-6)


def test_fast_raw_decode_differentiable_and_bank_cache_invalidates():
    """With grad on, the fast path copies a differentiable product (it writes through `out=`
    only under no_grad); an in-place update of the bank or base invalidates its raw-bank cache."""
    from latent_evo.compressor.base import GenomeAutoencoder

    comp, _ = _compressor(MODELS["mlp"], chunk_size=8)
    comp.eval()
    with torch.no_grad():
        for p in comp.parameters():
            p.add_(0.1 * torch.randn_like(p))
    z = comp.sample(3, torch.Generator().manual_seed(1)).requires_grad_(True)
    with_grad = comp.decode_genomes(z)
    with_grad.square().sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert comp.bank.grad is not None and float(comp.bank.grad.abs().sum()) > 0
    with torch.no_grad():
        torch.testing.assert_close(comp.decode_genomes(z), with_grad.detach(), rtol=1e-5, atol=1e-6)
        before = comp.decode_genomes(z)
        comp.bank.mul_(2.0)  # an optimizer step on the bank: the cached raw bank is stale
        after = comp.decode_genomes(z)
        assert not torch.allclose(before, after)
        comp.base.add_(1.0)
        generic = GenomeAutoencoder.decode_genomes(comp, z)  # the tokens path, no raw bank
        torch.testing.assert_close(comp.decode_genomes(z), generic, rtol=1e-5, atol=1e-6)
