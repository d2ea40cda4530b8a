"""Compressors through the real huggingface_hub client, served by the loopback Hub (conftest)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from latent_evo.cli import hub as hub_cli
from latent_evo.compressor import hub
from latent_evo.compressor.attention import Compressor
from latent_evo.compressor.mixin import CompressorFormatError
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.genome import GenomeSpec


@pytest.fixture(scope="module")
def compressor_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    spec = GenomeSpec.from_module(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    comp = Compressor.from_tokenizer(
        Tokenizer(spec, 8), d_model=32, n_heads=2, num_latents=4, latent_dim=4
    )
    comp.eval()
    folder = tmp_path_factory.mktemp("hub") / "compressor"
    comp.save_pretrained(folder)
    (folder / hub.METRICS_FILE).write_text(
        json.dumps({"heldout_r2": 0.5, "accuracy_retention": 0.93})
    )
    (folder / hub.PROVENANCE_FILE).write_text(json.dumps({"task": "mnist1d-mlp", "zoo_models": 12}))
    return folder


def _same_outputs(a: Compressor, b: Compressor) -> None:
    z = torch.randn(3, a.latent_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a.decode_genomes(z), b.decode_genomes(z))


def test_local_folder_round_trip(compressor_dir):
    a = hub.load_compressor(compressor_dir)
    b = Compressor.from_pretrained(compressor_dir)
    _same_outputs(a, b)
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in compressor_dir.iterdir())


def test_download_through_real_client(compressor_dir, local_hub):
    local_hub.add("latent-evo/test-compressor", compressor_dir)
    a = hub.load_compressor("latent-evo/test-compressor")
    _same_outputs(a, Compressor.from_pretrained(compressor_dir))
    assert any(
        path.endswith("model.safetensors") for method, path in local_hub.requests if method == "GET"
    )
    # pulled folder is a complete snapshot (weights, config, metrics, provenance)
    folder = hub.pull("latent-evo/test-compressor")
    assert {"config.json", "model.safetensors", hub.METRICS_FILE}.issubset(
        p.name for p in folder.iterdir()
    )


def test_cached_repo_loads_offline(compressor_dir, local_hub, monkeypatch):
    import huggingface_hub.constants as hf_constants

    local_hub.add("latent-evo/cached", compressor_dir)
    hub.pull("latent-evo/cached")  # populate the cache online
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    local_hub.requests.clear()
    comp = hub.load_compressor("latent-evo/cached")
    assert comp.latent_size == 16
    assert local_hub.requests == []  # served from the cache alone


def test_missing_repo_and_file_raise_real_errors(compressor_dir, local_hub, tmp_path):
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        hub.pull("latent-evo/does-not-exist")
    partial = tmp_path / "partial"
    shutil.copytree(compressor_dir, partial)
    (partial / "model.safetensors").unlink()
    local_hub.add("latent-evo/no-weights", partial)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        hub.load_compressor("latent-evo/no-weights")
    with pytest.raises(EntryNotFoundError):
        _download_missing_file()


def _download_missing_file():
    from huggingface_hub import hf_hub_download

    hf_hub_download("latent-evo/no-weights", "model.safetensors")


def test_newer_format_version_is_refused(compressor_dir, tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(compressor_dir, newer)
    cfg = json.loads((newer / "config.json").read_text())
    cfg.get("config", cfg)["format_version"] = 99
    (newer / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CompressorFormatError, match="format 99.*upgrade"):
        Compressor.from_pretrained(newer)


def test_unknown_config_key_is_refused(compressor_dir, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(compressor_dir, odd)
    cfg = json.loads((odd / "config.json").read_text())
    cfg.get("config", cfg)["warp_drive"] = True
    (odd / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CompressorFormatError, match="warp_drive"):
        Compressor.from_pretrained(odd)


def test_truncated_weights_name_the_file(compressor_dir, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(compressor_dir, cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CompressorFormatError, match="model.safetensors.*truncated"):
        Compressor.from_pretrained(cut)


def test_missing_local_weights_name_the_file(compressor_dir, tmp_path):
    empty = tmp_path / "noweights"
    shutil.copytree(compressor_dir, empty)
    (empty / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Compressor.from_pretrained(empty)


def test_not_a_path_nor_repo_id():
    with pytest.raises(FileNotFoundError, match="no such local folder"):
        hub.load_compressor("./no/such/dir")


def test_model_card_has_metadata_metrics_and_usage(compressor_dir):
    card = hub.model_card(compressor_dir, "org/name")
    head = card.split("---")[1]
    assert "library_name: latent-evo" in head and "license:" in head
    assert "accuracy_retention | 0.93" in card
    assert "16 (4 latents × 4)" in card
    assert 'load_compressor("org/name")' in card
    assert "a self-attention autoencoder" in card


def test_hub_cli_card_and_bad_run_dir(compressor_dir, tmp_path, capsys):
    assert hub_cli.main(["card", str(compressor_dir.parent)]) == 0
    assert "library_name: latent-evo" in capsys.readouterr().out
    assert hub_cli.main(["push", str(tmp_path), "org/name"]) == 2
    assert "found no compressor" in capsys.readouterr().err


def test_load_compressor_tells_baseline_from_attention(tmp_path):
    from latent_evo.compressor.mlp import MLPAutoencoder

    spec = GenomeSpec.from_module(nn.Linear(4, 3))
    base = MLPAutoencoder.from_tokenizer(Tokenizer(spec, 4), hidden=16, num_latents=2, latent_dim=2)
    base.save_pretrained(tmp_path / "mlp")
    loaded = hub.load_compressor(tmp_path / "mlp")
    assert isinstance(loaded, MLPAutoencoder)
    assert "an MLP autoencoder over the flattened" in hub.model_card(tmp_path / "mlp")
    _same_outputs(base.eval(), loaded.eval())


def test_export_copies_newest_version_with_card(compressor_dir, tmp_path):
    run = tmp_path / "run"
    for v in (0, 2):
        shutil.copytree(compressor_dir, run / f"version_{v}" / "compressor")
    (run / "version_2" / "compressor" / hub.METRICS_FILE).write_text(json.dumps({"marker": 7.0}))
    dest = hub_cli.export(run, tmp_path / "bundle", "org/x")
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in dest.iterdir()}
    assert "marker | 7" in (dest / "README.md").read_text()
    _same_outputs(Compressor.from_pretrained(dest), Compressor.from_pretrained(compressor_dir))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_latents", "16", r"config\.json: num_latents: expected int, got '16'"),
        ("beta", "high", r"config\.json: beta: expected float, got 'high'"),
        ("chunk_size", 0, r"config\.json: .*chunk_size must be >= 1"),
    ],
)
def test_config_values_of_the_wrong_type_name_key_and_file(
    compressor_dir, tmp_path, key, value, message
):
    bad = tmp_path / "bad"
    shutil.copytree(compressor_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg.get("config", cfg)[key] = value
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CompressorFormatError, match=message):
        hub.load_compressor(bad)


def test_non_finite_weights_are_refused_unless_allowed(compressor_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    nan = tmp_path / "nan"
    shutil.copytree(compressor_dir, nan)
    state = load_file(str(nan / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)
    state[name].view(-1)[:3] = float("nan")
    save_file(state, str(nan / "model.safetensors"))
    # saved from a diverged run: the checksum matches, the values are NaN
    from latent_evo.integrity import sha256_file

    sums = {"model.safetensors": sha256_file(nan / "model.safetensors")}
    (nan / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(
        CompressorFormatError, match=rf"model\.safetensors: tensor '{name}' holds NaN"
    ):
        Compressor.from_pretrained(nan)
    comp = Compressor.from_pretrained(nan, allow_non_finite=True)
    assert torch.isnan(comp.state_dict()[name]).any()


def test_weights_changed_after_saving_fail_their_checksum(compressor_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    assert (compressor_dir / "checksums.json").is_file()
    edited = tmp_path / "edited"
    shutil.copytree(compressor_dir, edited)
    state = load_file(str(edited / "model.safetensors"))
    name = next(iter(state))
    state[name] = state[name] + 1.0  # finite, well-formed, but not what was saved
    save_file(state, str(edited / "model.safetensors"))
    with pytest.raises(CompressorFormatError, match=r"model\.safetensors: content hash mismatch"):
        hub.load_compressor(edited)
    (edited / "checksums.json").unlink()  # a folder from before checksums: loads as it is
    assert torch.equal(hub.load_compressor(edited).state_dict()[name], state[name])


def test_push_compressor_then_pull_it_through_the_loopback_hub(
    compressor_dir, local_hub, tmp_path, monkeypatch
):
    """`hub push` end to end: create_repo, preupload and commit against the loopback Hub, then
    the pushed repo loads through the real download client, bit for bit."""
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_test_token")
    local_hub.upload_root = tmp_path / "hub"
    folder = tmp_path / "to-push"
    shutil.copytree(compressor_dir, folder)
    assert hub_cli.main(["push", str(folder), "me/pushed-compressor"]) == 0
    posted = [p for m, p in local_hub.requests if m == "POST"]
    assert "/api/repos/create" in posted and any(p.endswith("/commit/main") for p in posted)
    pushed = tmp_path / "hub" / "model" / "me" / "pushed-compressor"
    assert {"config.json", "model.safetensors", "checksums.json", "README.md"} <= {
        p.name for p in pushed.iterdir()
    }
    _same_outputs(hub.load_compressor("me/pushed-compressor"), Compressor.from_pretrained(folder))


def test_push_zoo_then_load_it_through_the_loopback_hub(local_hub, tmp_path, monkeypatch):
    from zoo_helpers import write_zoo

    from latent_evo.zoo import ZooDataset, load_zoo, push_zoo

    monkeypatch.setenv("HF_TOKEN", "hf_loopback_test_token")
    local_hub.upload_root = tmp_path / "hub"
    spec = GenomeSpec.from_module(nn.Linear(3, 2))
    genomes = torch.randn(4, spec.numel, generator=torch.Generator().manual_seed(0))
    zoo = write_zoo(tmp_path / "zoo", "toy", spec, genomes)
    push_zoo(zoo, "me/pushed-zoo")
    pulled = load_zoo("me/pushed-zoo", split="all")
    assert torch.equal(pulled.genomes(), ZooDataset(zoo, "all").genomes())
