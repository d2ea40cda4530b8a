"""The bundled GPT-2 compressor (LoRA adapters of a GPT-2 'mini') and `latent-evo demo --family gpt2`:
it loads offline, decodes to finite weights, and the demo runs end to end on a tiny budget."""

import json
import shutil

import pytest
import torch

from latent_evo.cli import demo
from latent_evo.compressor.hub import (
    BASE_WEIGHTS_FILE,
    BUNDLED_GPT2,
    base_weights_path,
    bundled_compressor_path,
    load_compressor,
)
from latent_evo.tasks.lora import lora_task_for


@pytest.fixture(scope="module")
def bundle():
    return bundled_compressor_path(BUNDLED_GPT2)


def test_bundled_gpt2_compressor_loads_offline_and_decodes_finite_weights(bundle):
    size = sum(f.stat().st_size for f in bundle.iterdir())
    assert size < 8 * 2**20, f"the bundle is {size / 2**20:.1f} MiB"
    comp = load_compressor(bundle).eval()
    task, cfg = lora_task_for(bundle, part=14)
    assert cfg["parts"] == 16 and 14 not in cfg["zoo_parts"]  # the demo's part is unseen
    assert comp.spec.numel == task.spec.numel == 61_440  # rank-4 factors of 20 block matrices
    with torch.no_grad():
        z = comp.sample(4, generator=torch.Generator().manual_seed(0))
        factors = comp.decode_genomes(z)  # (4, 61440)
        assert factors.shape == (4, task.spec.numel) and bool(factors.isfinite().all())
        network = task.network_genome(factors[0])  # the whole GPT-2, adapters merged in
        assert network.shape == (task.base_task.spec.numel,) and bool(network.isfinite().all())
        bpc = task.fitness_genomes(factors)
    # the decoded adapters are language models of the unseen part, near the base (~2.1 bits/char)
    assert bool(bpc.isfinite().all()) and float(bpc.max()) < 3.0


def test_demo_gpt2_runs_every_method_and_writes_its_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--family", "gpt2", "--budget", "16", "--popsize", "8", "--out", str(out)]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    for method in ("latent CMA-ES", "direct EGGROLL", "Adam", "the base network"):
        assert method in printed
    results = json.loads((out / "results.json").read_text())
    assert results["part"] == 14
    for name, run in results["methods"].items():
        assert run["evaluations"] >= 16, name
        assert 1.0 < run["test_bpc"] < 4.0, name
    assert (out / "bits_per_char.png").stat().st_size > 10_000


def test_demo_gpt2_refuses_bad_input_before_any_work(bundle, tmp_path, capsys):
    mlp = bundled_compressor_path()
    assert (
        demo.main(["--family", "gpt2", "--compressor", str(mlp), "--out", str(tmp_path / "a")]) == 2
    )
    assert "not a low-rank" in capsys.readouterr().err
    assert demo.main(["--family", "gpt2", "--part", "16", "--out", str(tmp_path / "b")]) == 2
    assert "--part 16" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    data = bytearray((broken / BASE_WEIGHTS_FILE).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the base network's weights
    (broken / BASE_WEIGHTS_FILE).write_bytes(bytes(data))
    assert (
        demo.main(["--family", "gpt2", "--compressor", str(broken), "--out", str(tmp_path / "c")])
        == 2
    )
    assert "base.safetensors: content hash mismatch" in capsys.readouterr().err
    (broken / BASE_WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="base network"):
        base_weights_path(broken)
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))  # nothing written


def test_export_half_with_base_weights_round_trips(bundle, tmp_path):
    from safetensors.torch import load_file

    from latent_evo.cli.hub import export

    base32 = tmp_path / "base32.safetensors"
    from safetensors.torch import save_file

    save_file(
        {k: v.float() for k, v in load_file(str(bundle / BASE_WEIGHTS_FILE)).items()}, str(base32)
    )
    dest = export(bundle, tmp_path / "export", half=True, base_weights=base32)
    assert (
        load_file(str(dest / BASE_WEIGHTS_FILE))["transformer.h.0.attn.c_attn.weight"].dtype
        == torch.float16
    )
    a, b = load_compressor(bundle), load_compressor(dest)  # checksums of the new files verify
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k  # the bundle is float16 already: halving again is exact
    assert base_weights_path(dest) == dest / BASE_WEIGHTS_FILE
    with pytest.raises(FileNotFoundError, match="--base-weights"):
        export(bundle, tmp_path / "other", base_weights=tmp_path / "missing.safetensors")
    assert not (tmp_path / "other").exists()
