"""The low-rank decoding mode end to end: a LoRA zoo of a trained base (corpus parts, canonical
factors) -> an attention compressor whose decoder emits the factors -> latent search over
adapters, evaluated unbuilt; plus canonical factors, corpus parts and the base-weights loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from latent_evo.models.lowrank import canonical_factors
from latent_evo.tasks import get_task
from latent_evo.tasks.lora import load_base_genome

ROOT = Path(__file__).resolve().parents[1]
TINY_LORA = {
    "base_task": "text-gpt2-tiny",
    "base": {"steps": 20, "lr": 3e-3, "batch_size": 8},
    "rank": 2,
    "include": "transformer.h.",
    "parts": 8,
    "zoo_parts": [0, 1, 2],
    "adapters_per_part": 2,
    "steps": 6,
    "batch_size": 2,
    "lr": [3e-3, 1e-2],
    "checkpoint_steps": [3, 6],
}


def _config(tmp: Path, **changes) -> Path:
    import yaml

    path = tmp / "tiny-lora.yaml"
    path.write_text(yaml.safe_dump({**TINY_LORA, **changes}))
    return path


@pytest.fixture(scope="module")
def lora_zoo(tmp_path_factory) -> Path:
    from latent_evo.zoo.lora import generate_lora_zoo

    tmp = tmp_path_factory.mktemp("lora")
    return generate_lora_zoo(_config(tmp), tmp / "zoo", progress=False)


def test_canonical_factors_keep_the_product_and_undo_the_gauge():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 12, 4, generator=g), torch.randn(3, 9, 4, generator=g)
    ca, cb = canonical_factors(a, b)
    torch.testing.assert_close(ca @ cb.transpose(1, 2), a @ b.transpose(1, 2), rtol=1e-4, atol=1e-5)
    q = torch.randn(3, 4, 4, generator=g) + 3 * torch.eye(4)  # any invertible mixing
    qa, qb = canonical_factors(a @ q, b @ torch.linalg.inv(q).transpose(1, 2))
    torch.testing.assert_close(qa, ca, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(qb, cb, rtol=1e-4, atol=1e-4)
    assert bool((ca.abs().amax(1) == ca.amax(1)).all())  # each column's largest entry positive
    ref = torch.randn(9, 4, generator=g)  # the gauge closest to a reference B
    ra, rb = canonical_factors(a, b, ref)
    torch.testing.assert_close(ra @ rb.transpose(1, 2), a @ b.transpose(1, 2), rtol=1e-4, atol=1e-4)
    qa, qb = canonical_factors(a @ q, b @ torch.linalg.inv(q).transpose(1, 2), ref)
    torch.testing.assert_close(qa, ra, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(qb, rb, rtol=1e-3, atol=1e-4)
    # continuous: a small change of the adapter moves the factors a little
    da, db = canonical_factors(a + 1e-3 * torch.randn(a.shape, generator=g), b, ref)
    assert float((da - ra).abs().max()) < 0.05 and float((db - rb).abs().max()) < 0.05


def test_text_parts_are_contiguous_slices_with_their_own_split():
    whole = get_task("text-gpt2-tiny")
    part = get_task("text-gpt2-tiny", data={"part": [3, 8]})
    assert len(part.train_data[0]) < len(whole.train_data[0]) / 7
    with pytest.raises(ValueError, match="part must be"):
        get_task("text-gpt2-tiny", data={"part": [8, 8]})
    from latent_evo.tasks.registry import load_dataset

    tail = load_dataset("text", part=[3, 8])
    blocks = load_dataset("text", part=[3, 8], part_val="blocks")  # every 10th 1,024-char block
    assert len(blocks.val) % 1024 == 0 and 0.08 < len(blocks.val) / len(tail.train) < 0.13
    assert torch.equal(blocks.train[:1024], tail.train[:1024])  # the part's text, re-split
    assert torch.equal(blocks.val[:1024], tail.train[9 * 1024 : 10 * 1024])


def test_base_weights_loader_names_missing_and_misshaped_tensors(tmp_path):
    task = get_task("text-gpt2-tiny")
    sd = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    sd.pop("transformer.h.0.mlp.c_fc.bias")
    sd["transformer.wpe.weight"] = torch.zeros(3, 3)
    path = tmp_path / "base.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError) as e:
        load_base_genome(task, path)
    assert "h.0.mlp.c_fc.bias" in str(e.value) and "wpe.weight (3, 3)" in str(e.value)
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_base_genome(task, tmp_path / "nowhere.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_base_genome(task, tmp_path / "junk.safetensors")


def test_lora_zoo_stores_canonical_adapters_of_its_base(lora_zoo):
    from latent_evo.pretrain.data import zoo_task
    from latent_evo.zoo import ZooDataset

    ds = ZooDataset(lora_zoo, split="all")
    meta = ds.metadata.to_pandas()
    assert len(ds) == 3 * 2 * 2 and sorted(set(meta["cohort"])) == [0, 1, 2]  # cohort = part
    assert {json.loads(h)["part"] for h in meta["hparams"]} == {0, 1, 2}
    task = zoo_task(ds)  # the `lora` task around the zoo's own base.safetensors
    g = ds.genomes()
    sd = task.spec.unflatten(g)
    init = task.spec.unflatten(load_file(str(lora_zoo / "lora_init.safetensors"))["genome"][None])
    for i in range(len(task.layers)):
        a, b = sd[f"adapters.A.{i}"].mT, sd[f"adapters.B.{i}"].mT  # (P, out, r), (P, in, r)
        ref = init[f"adapters.B.{i}"][0].mT  # (in, r) the shared LoRA init's B: the gauge
        ca, cb = canonical_factors(a, b, ref)
        torch.testing.assert_close(ca, a, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(cb, b, rtol=1e-3, atol=1e-5)
    with torch.no_grad():  # trained adapters move the network; the stored base is not the init
        fit = task.fitness_genomes(g)
        fresh = task.fitness_genomes(task.init_genomes(1, torch.Generator().manual_seed(0)))
    assert torch.isfinite(fit).all() and not torch.allclose(fit, fresh.expand_as(fit))
    init = get_task("text-gpt2-tiny").genome()
    base = load_base_genome(task.base_task, lora_zoo / "base.safetensors")
    assert not torch.equal(base, init)
    # the task's fitness from a params dict equals the genome path (pretraining uses the dict)
    with torch.no_grad():
        torch.testing.assert_close(task.fitness(task.params(g[:3])), fit[:3])
        m = task.metrics(task.params(g[:2]))
    torch.testing.assert_close(m["bpc"], fit[:2])


def test_killed_lora_zoo_resumes_identically_and_finished_one_is_kept(lora_zoo, tmp_path):
    from latent_evo.zoo import ZooDataset
    from latent_evo.zoo.format import ZooError
    from latent_evo.zoo.lora import generate_lora_zoo

    with pytest.raises(ZooError, match="finished zoo"):
        generate_lora_zoo(_config(tmp_path), lora_zoo, progress=False)
    copy = tmp_path / "copy"  # a run killed after its base: the card is there, not complete
    copy.mkdir()
    (copy / "base.safetensors").write_bytes((lora_zoo / "base.safetensors").read_bytes())
    card = json.loads((lora_zoo / "zoo.json").read_text())
    (copy / "zoo.json").write_text(json.dumps({**card, "complete": False}))
    generate_lora_zoo(_config(tmp_path), copy, progress=False)
    a, b = ZooDataset(lora_zoo, split="all"), ZooDataset(copy, split="all")
    assert torch.equal(a.genomes(), b.genomes())


def test_lora_compressor_decodes_factors_and_latent_search_improves(lora_zoo, tmp_path):
    from latent_evo.cli.pretrain import main as pretrain
    from latent_evo.evolution.evolve import evolve
    from latent_evo.pretrain.data import zoo_task
    from latent_evo.zoo import ZooDataset

    rc = pretrain(["fit", "--config", str(ROOT / "configs/pretrain/tiny.yaml"),
                   "--trainer.enable_progress_bar", "false", "--data.zoos", json.dumps([str(lora_zoo)]),
                   "--model.model_type", "attention", "--model.lambda_fit", "0.1",
                   "--model.fitness_batch_size", "2", "--model.eval_max_models", "2",
                   "--model.eval_prior_samples", "2", "--trainer.max_epochs", "2",
                   "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert rc == 0
    task = zoo_task(ZooDataset(lora_zoo, split="all"))
    res = evolve(task=task, compressor=str(tmp_path / "tiny/version_0/compressor"), strategy="cma_es",
                 evaluations=96, popsize=8, strategy_hparams={"sigma_init": 1.0},
                 init={"kind": "prior"}, seed=0)  # fmt: skip
    assert res.history[-1]["best_fitness"] < res.history[0]["best_fitness"]
    factors = task.factors(res.best_genome[None])  # the decoded code is per-matrix factors
    assert len(factors) == len(task.layers)
    assert all(torch.isfinite(a).all() and torch.isfinite(b).all() for a, b in factors.values())
    assert res.test_metrics["test_bpc"] > 0
