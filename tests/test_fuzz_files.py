"""Property-based corruption of the files the project writes: a compressor folder (weights,
config, checksums), a zoo shard and an evolution checkpoint. Loading either succeeds with the
original values, bit for bit, or raises the project's own error naming the folder or file --
never a raw exception from deep inside a library."""

import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from latent_evo.compressor import Compressor, Tokenizer, load_compressor
from latent_evo.compressor.mixin import CompressorFormatError
from latent_evo.genome import GenomeSpec

SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    spec = GenomeSpec.from_module(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    comp = Compressor.from_tokenizer(Tokenizer(spec, 8), d_model=16, n_heads=2, num_latents=2,
                                     latent_dim=4, decoder_dim=8, bank_size=4)  # fmt: skip
    folder = tmp_path_factory.mktemp("fuzz") / "c"
    comp.save_pretrained(folder)
    return folder, {k: v.clone() for k, v in comp.state_dict().items()}


def _corrupt(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "set"]))
    i = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:i]
    b = bytearray(data)
    b[i] = (b[i] ^ 0xFF) if kind == "flip" else draw(st.integers(0, 255))
    return bytes(b)


@SETTINGS
@given(data=st.data())
def test_corrupted_compressor_folder(saved, tmp_path_factory, data):
    folder, original = saved
    which = data.draw(st.sampled_from(["model.safetensors", "config.json", "checksums.json"]))
    copy = tmp_path_factory.mktemp("case") / "c"
    shutil.copytree(folder, copy)
    (copy / which).write_bytes(_corrupt((folder / which).read_bytes(), data.draw))
    try:
        loaded = load_compressor(copy)
    except (CompressorFormatError, FileNotFoundError) as e:
        assert str(copy) in str(e)
        return
    state = loaded.state_dict()
    assert state.keys() == original.keys()
    assert all(torch.equal(state[k], v) for k, v in original.items())


@SETTINGS
@given(data=st.data())
def test_corrupted_zoo_shard_and_checkpoint(tmp_path_factory, data):
    from zoo_helpers import write_zoo

    from latent_evo.evolution.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from latent_evo.zoo.dataset import ZooDataset
    from latent_evo.zoo.format import ZooError

    root = tmp_path_factory.mktemp("z")
    spec = GenomeSpec.from_module(nn.Linear(3, 2))
    genomes = torch.randn(4, spec.numel, generator=torch.Generator().manual_seed(0))
    zoo = write_zoo(root / "zoo", "toy", spec, genomes)
    shard = next((zoo / "shards").glob("*.safetensors"))
    ckpt = save_checkpoint(root / "ck", "gen-000001", {"a": genomes}, {"generation": 1})
    target = data.draw(st.sampled_from([shard, ckpt / "state.safetensors", ckpt / "state.json"]))
    target.write_bytes(_corrupt(target.read_bytes(), data.draw))
    if target == shard:
        try:
            got = ZooDataset(zoo, "all").genomes()
        except ZooError as e:
            assert shard.name in str(e)
            return
        assert torch.equal(got, genomes)
    else:
        try:
            tensors, meta = load_checkpoint(root / "ck")
        except CheckpointError as e:
            assert str(ckpt) in str(e)
            return
        assert torch.equal(tensors["a"], genomes) and meta["generation"] == 1
