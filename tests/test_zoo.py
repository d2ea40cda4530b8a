"""Model zoos: vmapped cohort training, generation + resume, the on-disk format, ZooDataset splits
and filters, clear errors for broken zoos, the Model-Zoos importer, the CLI and the Hub path."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from latent_evo.cli.zoo import main as zoo_main
from latent_evo.genome import GenomeError, GenomeSpec
from latent_evo.zoo import (
    ZooConfigError,
    ZooDataset,
    ZooError,
    ZooWriter,
    config_from_dict,
    generate_zoo,
    import_modelzoos,
    load_config,
    load_stats,
    load_zoo,
    pull_zoo,
    push_zoo,
    train_cohort,
    train_sequential,
)
from latent_evo.zoo import generate as gen_mod
from latent_evo.zoo.generate import expected_checkpoints

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "zoo"

# A few-second zoo: 800 MNIST-1D samples (640 train), batches of 64, 2-3 epochs, two cohorts.
TINY = {
    "task": "mnist1d-mlp-tiny",
    "task_overrides": {"data": {"num_samples": 800}},
    "seed": 3,
    "batch_size": 64,
    "checkpoint_epochs": [0, 1, 2, 3],
    "cohorts": [
        {"count": 1, "models_per_cohort": 3, "shared_init": False},
        {"count": 1, "models_per_cohort": 3, "shared_init": True},
    ],
    "hparams": {
        "lr": [5e-3, 2e-2],
        "weight_decay": [1e-5, 1e-3],
        "init_scale": [0.8, 1.2],
        "epochs": [2, 3],
        "label_noise": [0.0, 0.1],
        "data_fraction": 0.9,
    },
    "shard_size": 7,  # several shards per cohort
    "device": "cpu",
    "name": "tiny",
}


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "tiny"
    return generate_zoo(config_from_dict(TINY), out, progress=False)


# ---- trainer -------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_vmapped_trainer_matches_sequential_torch_optim(optimizer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    spec = GenomeSpec.from_module(model)
    pop = 4
    inits = torch.stack(
        [
            spec.flatten(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).state_dict())
            for _ in range(pop)
        ]
    )
    x, y = torch.randn(50, 6), torch.randint(0, 3, (50,))
    kw = dict(
        lr=torch.tensor([1e-2, 3e-2, 5e-3, 2e-2]),
        weight_decay=torch.tensor([0.0, 1e-2, 1e-3, 0.1]),
        epochs=torch.tensor([3, 2, 3, 1]),  # models stop at different epochs
        order_seeds=torch.tensor([5, 6, 7, 8]),
        batch_size=16,
        optimizer=optimizer,
        subsets=torch.stack([torch.randperm(50)[:40] for _ in range(pop)]),
        targets=torch.randint(0, 3, (pop, 50)),
    )
    vec = train_cohort(model, F.cross_entropy, spec.unflatten(inits), x, y, **kw)
    seq = train_sequential(model, F.cross_entropy, spec.unflatten(inits), x, y, **kw)
    for k in vec:
        torch.testing.assert_close(vec[k], seq[k], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(vec["0.weight"], spec.unflatten(inits)["0.weight"])  # it trained


def test_checkpoint_callback_sees_each_models_schedule():
    model = nn.Linear(3, 2)
    spec = GenomeSpec.from_module(model)
    seen = []
    train_cohort(
        model, F.cross_entropy, spec.unflatten(torch.zeros(2, spec.numel)), torch.randn(8, 3), torch.randint(0, 2, (8,)),
        lr=torch.full((2,), 0.1), weight_decay=torch.zeros(2), epochs=torch.tensor([1, 3]),
        order_seeds=torch.tensor([0, 1]), batch_size=4, checkpoint_epochs=[0, 2],
        on_checkpoint=lambda e, p, m: seen.append((e, m.tolist())),
    )  # fmt: skip
    assert seen == [(0, [0, 1]), (1, [0]), (2, [1]), (3, [1])]


# ---- generation ----------------------------------------------------------------------------------
def test_tiny_zoo_end_to_end(tiny_zoo):
    ds = ZooDataset(tiny_zoo, "all")
    cfg = config_from_dict(TINY)
    assert len(ds) == expected_checkpoints(cfg)
    assert len(set(ds.model_ids.tolist())) == 6 and ds.card["complete"]
    assert (
        ds.task_name == "mnist1d-mlp-tiny" and ds.card["task_overrides"] == TINY["task_overrides"]
    )
    meta = ds.metadata.to_pandas()
    assert {"lr", "weight_decay", "init_scale", "label_noise", "hparams", "train_loss"} <= set(
        meta.columns
    )
    first = ds.epochs == 0
    last = torch.tensor(
        [
            e == meta[meta.model_id == m].epoch.max()
            for m, e in zip(meta.model_id, meta.epoch, strict=True)
        ]
    )
    assert ds.fitness[last].mean() < ds.fitness[first].mean() - 0.1  # training improved fitness
    # shared-init cohort: identical epoch-0 genomes; different-seed cohort: all different
    g0 = {c: ds.genomes(torch.nonzero(first & (ds.cohorts == c)).squeeze(1)) for c in (0, 1)}
    assert (g0[1] == g0[1][0]).all()
    assert not torch.equal(g0[0][0], g0[0][1]) and not torch.equal(g0[0][1], g0[0][2])
    # each stored genome really has its stored test loss (shard/offset bookkeeping is right)
    task = gen_mod.build_task(cfg)
    idx = torch.tensor([0, len(ds) // 2, len(ds) - 1])
    loss = task.metrics(ds.genomes(idx), task.test_data)["loss"]
    torch.testing.assert_close(loss, ds.fitness[idx], rtol=1e-4, atol=1e-5)
    stats = load_stats(tiny_zoo)
    assert list(stats) == [t.name for t in ds.spec.tensors] and all(
        s > 0 for _, s in stats.values()
    )


def test_resume_skips_finished_cohorts_and_is_bit_identical(tiny_zoo, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real = gen_mod.train_one_cohort
    trained = []

    def crash_on_second(cfg, task, cohort, *a, **k):
        if cohort == 1:
            raise KeyboardInterrupt  # the run is interrupted after cohort 0 was written
        trained.append(cohort)
        return real(cfg, task, cohort, *a, **k)

    monkeypatch.setattr(gen_mod, "train_one_cohort", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        generate_zoo(config_from_dict(TINY), out, progress=False)
    with pytest.raises(ZooError, match="resume"):
        generate_zoo(config_from_dict(TINY), out, progress=False)  # not without resume=True
    with pytest.raises(ZooError, match="differs"):
        generate_zoo(config_from_dict({**TINY, "seed": 4}), out, resume=True, progress=False)

    def spy(cfg, task, cohort, *a, **k):
        trained.append(cohort)
        return real(cfg, task, cohort, *a, **k)

    monkeypatch.setattr(gen_mod, "train_one_cohort", spy)
    generate_zoo(config_from_dict(TINY), out, resume=True, progress=False)
    assert trained == [0, 1]  # cohort 0 once (before the crash), cohort 1 once (on resume)
    a, b = ZooDataset(out, "all"), ZooDataset(tiny_zoo, "all")
    assert torch.equal(a.genomes(), b.genomes()) and torch.equal(a.fitness, b.fitness)


def test_stem_cohort_branches_from_one_trained_network(tmp_path):
    """`stem_epochs`: the cohort's shared init is trained first, so every member's epoch-0
    checkpoint is that trained network (lower loss than the raw shared init)."""
    cohorts = [{"count": 1, "models_per_cohort": 3, "shared_init": True}]
    plain = {**TINY, "cohorts": cohorts, "hparams": {**TINY["hparams"], "label_noise": 0.0}}
    stem = {**plain, "cohorts": [{**cohorts[0], "stem_epochs": 3, "stem_lr": 1e-2}]}
    ds = {}
    for name, cfg in (("plain", plain), ("stem", stem)):
        ds[name] = ZooDataset(generate_zoo(config_from_dict(cfg), tmp_path / name, progress=False))
    g0 = {k: d.genomes(torch.nonzero(d.epochs == 0).squeeze(1)) for k, d in ds.items()}
    assert (g0["stem"] == g0["stem"][0]).all() and not torch.equal(g0["stem"][0], g0["plain"][0])
    f0 = {k: d.fitness[d.epochs == 0].mean() for k, d in ds.items()}
    assert f0["stem"] < f0["plain"] - 0.1
    with pytest.raises(ZooConfigError, match=r"cohorts\[0\].*stem_epochs.*shared_init"):
        config_from_dict({**TINY, "cohorts": [{"count": 1, "stem_epochs": 2}]})


def test_config_validation(tmp_path):
    with pytest.raises(ZooConfigError, match="unknown config key.*lrr"):
        config_from_dict({**TINY, "hparams": {"lrr": 0.1}})
    with pytest.raises(ZooConfigError, match="unknown config key.*cohort"):
        config_from_dict({**TINY, "cohort": []})
    with pytest.raises(ZooConfigError, match="log-uniform"):
        config_from_dict({**TINY, "hparams": {"lr": [0.0, 0.1]}})
    with pytest.raises(ZooConfigError, match="checkpoint_epochs"):
        config_from_dict({**TINY, "checkpoint_epochs": [2, 1]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(ZooConfigError, match="bad.yaml"):
        load_config(bad)


def test_shipped_configs_are_valid():
    from latent_evo.tasks import TASKS

    paths = sorted(CONFIGS.glob("*.yaml"))
    assert len(paths) >= 6
    for p in paths:
        if p.stem.endswith("-lora"):  # a LoRA zoo config (latent_evo.zoo.lora)
            from latent_evo.zoo.lora import load_lora_config

            assert load_lora_config(p).base_task in TASKS, p
            continue
        cfg = load_config(p)
        assert cfg.task in TASKS, p
    default = load_config(CONFIGS / "mnist1d-mlp.yaml")
    assert default.num_models >= 500 and len(default.checkpoint_epochs) >= 5
    assert any(g.shared_init for g in default.cohorts) and any(
        not g.shared_init for g in default.cohorts
    )


# ---- format and ZooDataset -----------------------------------------------------------------------
def _write_zoo(
    root: Path, models: int = 10, epochs: int = 3, n: int = 7, shard_size: int = 8
) -> torch.Tensor:
    spec = GenomeSpec.from_module(nn.Linear(n - 1, 1))  # tensors "weight" (1, n-1) and "bias" (1,)
    g = torch.randn(models * epochs, spec.numel, generator=torch.Generator().manual_seed(0))
    rows = [
        {
            "model_id": m,
            "cohort": m % 3,
            "epoch": e,
            "test_loss": 3.0 - e - m / 100,
            "test_accuracy": 0.1 * e,
        }
        for m in range(models)
        for e in range(epochs)
    ]
    w = ZooWriter(root, spec, "toy", shard_size=shard_size)
    w.start(resume=False)
    w.write_part("a", g[:12], rows[:12])
    w.write_part("b", g[12:], rows[12:])
    w.finalize()
    return g


def test_format_round_trip(tmp_path):
    g = _write_zoo(tmp_path / "z")
    ds = ZooDataset(tmp_path / "z", "all")
    assert torch.equal(ds.genomes(), g)  # bit-exact, across parts and shards
    assert torch.equal(ds.genomes([5, 0, 29, 6, 5]), g[[5, 0, 29, 6, 5]])  # any order, repeats
    item = ds[4]
    assert (
        torch.equal(item["genome"], g[4])
        and item["model_id"] == 1
        and item["epoch"] == 1
        and item["task"] == "toy"
    )
    assert math.isclose(float(item["fitness"]), 3.0 - 1 - 0.01, rel_tol=1e-6)
    mean, std = ds.compute_stats()
    st = load_stats(tmp_path / "z")
    torch.testing.assert_close(mean[0], g[:, :-1].mean().float())
    assert math.isclose(
        st["weight"][1], float(g[:, :-1].double().std(unbiased=False)), rel_tol=1e-5
    )
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["genome"].shape == (4, g.shape[1]) and batch["task"] == ["toy"] * 4
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in (tmp_path / "z").rglob("*"))


def test_split_by_model_never_leaks(tmp_path):
    _write_zoo(tmp_path / "z", models=20)
    splits = {s: ZooDataset(tmp_path / "z", s, seed=1) for s in ("train", "validation", "test")}
    ids = {s: set(d.model_ids.tolist()) for s, d in splits.items()}
    assert ids["train"].isdisjoint(ids["validation"]) and ids["train"].isdisjoint(ids["test"])
    assert ids["validation"].isdisjoint(ids["test"])
    assert set().union(*ids.values()) == set(range(20)) and (
        len(ids["train"]),
        len(ids["test"]),
    ) == (16, 2)
    assert sum(len(d) for d in splits.values()) == 60  # every checkpoint of a model in its split
    assert ids["test"] == set(
        ZooDataset(tmp_path / "z", "test", seed=1).model_ids.tolist()
    )  # seeded
    assert ids["test"] != set(ZooDataset(tmp_path / "z", "test", seed=2).model_ids.tolist())
    by_cohort = {
        s: set(
            ZooDataset(
                tmp_path / "z", s, split_by="cohort", fractions=(0.34, 0.33, 0.33)
            ).cohorts.tolist()
        )
        for s in ("train", "test")
    }
    assert by_cohort["train"].isdisjoint(by_cohort["test"])


def test_filters_and_empty_filter_error(tmp_path):
    _write_zoo(tmp_path / "z")
    z = tmp_path / "z"
    assert set(ZooDataset(z, "all", epochs=[0, 2]).epochs.tolist()) == {0, 2}
    assert set(ZooDataset(z, "all", cohorts=[1]).cohorts.tolist()) == {1}
    f = ZooDataset(z, "all", fitness_range=(None, 1.5))
    assert len(f) == 10 and (f.fitness <= 1.5).all()
    assert len(ZooDataset(z, "all", accuracy_range=(0.15, None))) == 10
    with pytest.raises(ZooError, match=r"no checkpoints .* epochs=\[7\]"):
        ZooDataset(z, "all", epochs=7)


def test_corrupt_and_truncated_shards_name_the_file(tmp_path):
    _write_zoo(tmp_path / "z")
    shard = sorted((tmp_path / "z" / "shards").glob("*.safetensors"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 10])
    with pytest.raises(ZooError, match=rf"{shard.name}.*(corrupt|truncated)"):
        ZooDataset(tmp_path / "z", "all")
    shard.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(ZooError, match=shard.name):
        ZooDataset(tmp_path / "z", "all")


def test_bad_metadata_row_and_wrong_genome_length(tmp_path):
    import pyarrow.parquet as pq

    z = tmp_path / "z"
    _write_zoo(z)
    part = z / "metadata" / "b.parquet"
    table = pq.read_table(part)
    offsets = table.column("offset").to_pylist()
    offsets[-1] = 99
    pq.write_table(
        table.set_column(table.schema.get_field_index("offset"), "offset", [offsets]), part
    )
    with pytest.raises(
        ZooError, match=r"model 9 epoch 2 points to offset 99 of shard .*holds \d+ genomes"
    ):
        ZooDataset(z, "all")
    (z / "shards" / "b-000.safetensors").unlink()
    with pytest.raises(ZooError, match=r"b-000.safetensors.*does not exist"):
        ZooDataset(z, "all")
    # a shard of the wrong width
    w = tmp_path / "w"
    _write_zoo(w)
    save_file({"genomes": torch.zeros(12, 8)}, str(w / "shards" / "a-000.safetensors"))
    with pytest.raises(ZooError, match=r"a-000.safetensors.*\(12, 8\).*length 7"):
        ZooDataset(w, "all")
    writer = ZooWriter(tmp_path / "x", GenomeSpec.from_module(nn.Linear(6, 1)), "toy")
    with pytest.raises(GenomeError, match="length 8, expected 7"):
        writer.write_part("p", torch.zeros(2, 8), [{"model_id": 0, "epoch": 0}] * 2)


# ---- Model-Zoos importer -------------------------------------------------------------------------
class _Evil:
    ran = False

    def __reduce__(self):
        return (_Evil._boom, ())

    @staticmethod
    def _boom():
        _Evil.ran = True
        return {}


def _write_modelzoos(src: Path) -> dict:
    torch.manual_seed(0)
    states = {}
    for m in range(2):
        folder = src / f"NN_tune_trainable_{m:05d}_seed={m}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(
            json.dumps({"optim::lr": 0.01 * (m + 1), "optim::wd": 1e-4, "seed": m})
        )
        lines = [
            {
                "training_iteration": e,
                "test_acc": 0.2 * e,
                "test_loss": 2.0 - 0.5 * e,
                "train_loss": 2.1 - 0.5 * e,
            }
            for e in range(1, 3)
        ]
        (folder / "result.json").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
        for e in range(3):
            net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
            ck = folder / f"checkpoint_{e:06d}"
            ck.mkdir()
            sd = net.state_dict()
            states[(m, e)] = sd
            if m == 1 and e == 2:
                save_file(sd, str(ck / "checkpoints.safetensors"))
            else:
                torch.save(sd, ck / "checkpoints")
    return states


def test_modelzoos_importer(tmp_path):
    src = tmp_path / "src"
    states = _write_modelzoos(src)
    import_modelzoos(src, tmp_path / "dst", task="cnn-mnist", progress=False)
    ds = ZooDataset(tmp_path / "dst", "all")
    assert len(ds) == 6 and ds.task_name == "cnn-mnist"
    meta = ds.metadata.to_pandas()
    for i, (m, e) in enumerate(zip(meta.model_id, meta.epoch, strict=True)):
        assert torch.equal(ds.genomes([i])[0], ds.spec.flatten(states[(int(m), int(e))]))
    row = meta[(meta.model_id == 1) & (meta.epoch == 2)].iloc[0]
    assert (
        math.isclose(row.test_loss, 1.0)
        and math.isclose(row.test_accuracy, 0.4)
        and math.isclose(row.lr, 0.02)
    )
    assert math.isnan(meta[meta.epoch == 0].test_loss.iloc[0])  # no result line for the init
    assert json.loads(row.hparams)["seed"] == 1


def test_modelzoos_importer_never_unpickles(tmp_path):
    src = tmp_path / "src"
    _write_modelzoos(src)
    bad = sorted(src.glob("*"))[0] / "checkpoint_000001" / "checkpoints"
    torch.save({"weight": _Evil()}, bad)
    with pytest.raises(ZooError, match=r"checkpoint_000001/checkpoints.*weights_only"):
        import_modelzoos(src, tmp_path / "dst", progress=False)
    assert not _Evil.ran


# ---- CLI and Hub ---------------------------------------------------------------------------------
def test_cli_info(tiny_zoo, capsys, tmp_path):
    assert zoo_main(["info", str(tiny_zoo)]) == 0
    out = capsys.readouterr().out
    assert "6 models in 2 cohorts" in out and "mnist1d-mlp-tiny" in out
    assert zoo_main(["info", str(tiny_zoo), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (
        info["checkpoints"] == len(ZooDataset(tiny_zoo, "all"))
        and info["per_epoch"]["0"]["checkpoints"] == 6
    )
    # the share of weight variance within cohorts, computed here the long way
    ds = ZooDataset(tiny_zoo, "all")
    final = ds.final_checkpoints()
    g, c = ds.genomes(final).double(), ds.cohorts[final]
    within = sum(((g[c == k] - g[c == k].mean(0)) ** 2).sum() for k in c.unique())
    share = float(within / ((g - g.mean(0)) ** 2).sum())
    assert 0 < share < 1 and math.isclose(info["within_cohort_share"], share, abs_tol=1e-4)
    assert "weight variance lies within cohorts" in out
    assert zoo_main(["info", str(tmp_path / "nope")]) == 1
    assert "not a zoo" in capsys.readouterr().err
    from latent_evo.cli import main as top_main

    assert top_main(["zoo", "info", str(tiny_zoo)]) == 0


def test_cli_best_saves_the_final_checkpoint_with_the_lowest_training_loss(tiny_zoo, tmp_path):
    from safetensors import safe_open

    ds = ZooDataset(tiny_zoo, "all")
    final = ds.final_checkpoints()
    # one index per model, each that model's last epoch
    assert len(final) == len(set(ds.model_ids.tolist()))
    for i in final.tolist():
        assert ds.epochs[i] == ds.epochs[ds.model_ids == ds.model_ids[i]].max()
    best = ds.best_checkpoint()
    assert best in final.tolist() and ds.train_loss[best] == ds.train_loss[final].min()
    out = tmp_path / "best.safetensors"
    assert zoo_main(["best", str(tiny_zoo), str(out)]) == 0
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["model_id"] == str(int(ds.model_ids[best]))
        genome = ds.spec.flatten({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    assert torch.equal(genome, ds.genomes([best])[0])


def test_cli_fit_prior_fits_a_saved_compressor_to_the_zoo_codes(tiny_zoo, tmp_path, capsys):
    from latent_evo.compressor.attention import Compressor
    from latent_evo.compressor.tokenizer import Tokenizer

    ds = ZooDataset(tiny_zoo, "all")
    comp = Compressor.from_tokenizer(
        Tokenizer(ds.spec, 32), d_model=16, n_heads=2, decoder_heads=2, num_latents=2, latent_dim=4
    )
    comp.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "pretraining.json").write_text("{}")
    argv = ["fit-prior", str(tiny_zoo), str(tmp_path / "c"), "--split", "all",
            "--out", str(tmp_path / "fitted")]  # fmt: skip
    assert zoo_main(argv) == 0
    assert f"to {len(ds)} codes" in capsys.readouterr().out
    fitted = Compressor.from_pretrained(tmp_path / "fitted")
    assert (tmp_path / "fitted" / "pretraining.json").is_file()  # the rest of the folder is kept
    codes = ds.encode(comp.eval())
    torch.testing.assert_close(fitted.prior_mean, codes.mean(0))
    assert not torch.equal(Compressor.from_pretrained(tmp_path / "c").prior_mean, fitted.prior_mean)


def test_hub_pull_and_push(tiny_zoo, local_hub, tmp_path, monkeypatch):
    local_hub.add("latent-evo/tiny-zoo", tiny_zoo, repo_type="dataset")
    folder = pull_zoo("latent-evo/tiny-zoo", tmp_path / "pulled")
    assert any("/datasets/" in path for _, path in local_hub.requests)
    a, b = load_zoo(folder, "all"), ZooDataset(tiny_zoo, "all")
    assert torch.equal(a.genomes(), b.genomes())
    assert len(load_zoo("latent-evo/tiny-zoo", split="test")) == len(ZooDataset(tiny_zoo, "test"))
    calls = {}
    import huggingface_hub

    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "create_repo",
        lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw)),
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "upload_folder",
        lambda self, **kw: calls.setdefault("upload", kw) and "url",
    )
    copy = tmp_path / "copy"
    shutil.copytree(tiny_zoo, copy)
    push_zoo(copy, "me/zoo")
    assert (
        calls["create"][1]["repo_type"] == "dataset" and calls["upload"]["repo_type"] == "dataset"
    )
    assert (
        calls["upload"]["folder_path"] == str(copy)
        and "metadata/*.parquet" in (copy / "README.md").read_text()
    )


def test_load_zoo_local_never_touches_network(tiny_zoo, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("network")
    )
    assert len(load_zoo(tiny_zoo, "all")) == len(ZooDataset(tiny_zoo, "all"))
    with pytest.raises(ZooError, match="not a zoo directory"):
        load_zoo("./no/such/zoo")
