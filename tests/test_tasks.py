"""Tasks: vmapped population fitness is exact, chunking-invariant, deterministic and learnable."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from latent_evo.tasks import SupervisedTask, get_task, list_tasks, register_task
from latent_evo.tasks.data import DatasetMissingError
from latent_evo.tasks.registry import TASKS, TaskEntry

TINY = [
    "mnist1d-mlp-tiny",
    "mnist1d-cnn-tiny",
    "digits-mlp-tiny",
    "digits-cnn-tiny",
    "digits-resnet8-tiny",
    "text-lstm-tiny",
    "text-gpt2-tiny",
]
LOCAL_ROOT = {"mnist-cnn", "cifar10-resnet8", "cifar100-resnet8"}  # need files under a root


@pytest.fixture(scope="session", autouse=True)
def cache(tmp_path_factory):
    """Same path as test_datasets.py's fixture: MNIST-1D is generated once per session."""
    path = tmp_path_factory.getbasetemp() / "latent_evo_cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENT_EVO_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def image_root(tmp_path_factory):
    """Tiny MNIST (raw idx-ubyte) and CIFAR-10/100 (pickle batches) in torchvision's layout."""
    import torchvision.datasets as tvd

    root = tmp_path_factory.mktemp("tv")
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        for kind, arr in (("images", rng.integers(0, 256, (6, 28, 28))), ("labels", np.arange(6))):
            with open(raw / f"{split}-{kind}-idx{arr.ndim}-ubyte", "wb") as f:
                f.write(bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape))
                f.write(arr.astype(np.uint8).tobytes())
    md5s = {}
    for cls, key in ((tvd.CIFAR10, "labels"), (tvd.CIFAR100, "fine_labels")):
        folder = root / cls.base_folder
        folder.mkdir()
        files = [f for f, _ in cls.train_list + cls.test_list]
        for fname in files:
            batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), key: [0, 1]}
            (folder / fname).write_bytes(pickle.dumps(batch))
        (folder / cls.meta["filename"]).write_bytes(pickle.dumps({cls.meta["key"]: ["a", "b"]}))
        md5s[cls] = {
            f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in os.listdir(folder)
        }
    with pytest.MonkeyPatch.context() as mp:  # torchvision verifies md5s: give it ours
        for cls, sums in md5s.items():
            mp.setattr(cls, "train_list", [[f, sums[f]] for f, _ in cls.train_list])
            mp.setattr(cls, "test_list", [[f, sums[f]] for f, _ in cls.test_list])
            mp.setattr(cls, "meta", {**cls.meta, "md5": sums[cls.meta["filename"]]})
        yield root


def small_task(name: str, image_root=None, **overrides) -> SupervisedTask:
    """A registered task with batches small enough for fast CPU tests."""
    if name in LOCAL_ROOT:
        overrides["data"] = {"root": image_root}
    if name.startswith("text-"):
        overrides.setdefault("seq_len", 16)
    return get_task(name, **overrides)


def loop_fitness(task: SupervisedTask, genomes: torch.Tensor, batch) -> torch.Tensor:
    """The reference: one `nn.Module` per genome, `load_state_dict`, eval mode, plain forward."""
    out = []
    for g in genomes:
        model = copy.deepcopy(task.model)
        model.load_state_dict(task.spec.unflatten(g), strict=False)
        out.append(task.loss_fn(model.eval()(batch[0]), batch[1]))
    return torch.stack(out)


def random_buffers(
    task: SupervisedTask, genomes: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Give every genome its own BatchNorm statistics so eval-mode BN is really exercised."""
    genomes = genomes.clone()
    for t, off, n in zip(task.spec.tensors, task.spec.offsets, task.spec.numels, strict=True):
        if t.kind == "buffer":
            noise = torch.rand(len(genomes), n, generator=gen)
            genomes[:, off : off + n] = noise + 0.5 if "var" in t.name else noise - 0.5
    return genomes


# ---- exactness ------------------------------------------------------------------------------------
# registered entries (factories such as `lora` build other kinds of task: tests of their own)
ENTRIES = [n for n in list_tasks() if isinstance(TASKS[n], TaskEntry)]


@pytest.mark.parametrize("name", ENTRIES)
def test_vmapped_fitness_equals_module_loop(name, image_root):
    task = small_task(name, image_root)
    gen = torch.Generator().manual_seed(0)
    genomes = random_buffers(task, task.init_genomes(3, gen), gen)
    batch = task.sample_batch(gen, batch_size=2 if name.startswith("text-") else 6)
    with torch.no_grad():
        vmapped = task.fitness_genomes(genomes, batch)
        reference = loop_fitness(task, genomes, batch)
    assert vmapped.shape == (3,)
    torch.testing.assert_close(vmapped, reference, rtol=1e-4, atol=1e-5)
    if any(t.kind == "buffer" for t in task.spec):  # the buffers must matter (BN in eval mode)
        plain = task.fitness_genomes(task.init_genomes(3, torch.Generator().manual_seed(0)), batch)
        assert not torch.allclose(plain, vmapped)


def test_chunked_equals_unchunked_and_loop():
    task = get_task("mnist1d-mlp-tiny")
    genomes = task.init_genomes(10, torch.Generator().manual_seed(1))
    batch = task.batch(0)
    results = []
    for chunk, vectorize in ((10, True), (3, True), (1, True), (None, True), (None, False)):
        task.chunk_size, task.vectorize = chunk, vectorize
        results.append(task.fitness_genomes(genomes, batch))
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], rtol=1e-5, atol=1e-6)
    task.chunk_bytes = 1  # budget below one genome: one genome per chunk, never zero
    assert task.auto_chunk_size(10, 256) == 1
    task.chunk_bytes = 2**40
    assert task.auto_chunk_size(10, 256) == 10


def test_nonfinite_genomes_get_worst_and_are_counted():
    task = get_task("mnist1d-mlp-tiny")
    genomes = task.init_genomes(4, torch.Generator().manual_seed(2))
    clean = task.fitness_genomes(genomes)
    genomes[1] = float("nan")
    genomes[2, 5] = float("inf")
    f = task.fitness_genomes(genomes)
    assert torch.isfinite(f).all() and f[1] == f[2] == task.worst_fitness
    torch.testing.assert_close(f[[0, 3]], clean[[0, 3]])  # the others are unaffected
    assert task.nonfinite_count == 2
    m = task.metrics(genomes)
    assert m["accuracy"][1] == 0 and m["loss"][2] == task.worst_fitness
    assert task.nonfinite_count == 2  # metrics report, they do not count


def test_fitness_is_differentiable_wrt_params():
    task = get_task("digits-resnet8-tiny")
    g = task.init_genomes(2, torch.Generator().manual_seed(0)).requires_grad_(True)
    task.fitness_genomes(g, task.batch(0)).sum().backward()
    assert g.grad is not None and torch.isfinite(g.grad).all() and g.grad.abs().sum() > 0


# ---- determinism ----------------------------------------------------------------------------------
def test_same_seed_same_batches_genomes_and_fitness():
    a, b = get_task("mnist1d-mlp-tiny", seed=3), get_task("mnist1d-mlp-tiny", seed=3)
    for i in (0, 7):
        assert torch.equal(a.batch(i)[0], b.batch(i)[0]) and torch.equal(
            a.batch(i)[1], b.batch(i)[1]
        )
    assert not torch.equal(a.batch(0)[0], a.batch(1)[0])
    assert not torch.equal(a.batch(0)[0], get_task("mnist1d-mlp-tiny", seed=4).batch(0)[0])
    ga = a.init_genomes(5, torch.Generator().manual_seed(9))
    gb = b.init_genomes(5, torch.Generator().manual_seed(9))
    assert torch.equal(ga, gb) and not torch.equal(ga[0], ga[1])
    assert torch.equal(a.fitness_genomes(ga), b.fitness_genomes(gb))
    assert torch.equal(a.genome(), b.genome())
    xa, _ = a.sample_batch(torch.Generator().manual_seed(5))
    xb, _ = b.batch(torch.Generator().manual_seed(5))
    assert torch.equal(xa, xb) and len(xa) == a.batch_size


# ---- learnability ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_sgd_lowers_fitness(name):
    task = small_task(name)
    genome = task.genome().clone().requires_grad_(True)
    batch = task.fitness_batch()
    opt = torch.optim.Adam([genome], lr=1e-2)
    before = float(task.fitness_genomes(genome[None].detach(), batch)[0])
    for _ in range(15):
        opt.zero_grad()
        task.fitness_genomes(genome[None], batch)[0].backward()
        opt.step()
    after = float(task.fitness_genomes(genome[None].detach(), batch)[0])
    assert after < 0.9 * before, (before, after)


def test_sgd_reference_trains_a_batchnorm_network():
    """The Adam reference of every search table on a genome holding BatchNorm running
    statistics: they stay fixed (BatchNorm refuses a running_mean that requires grad)."""
    from latent_evo.tasks.sgd import run_sgd

    task = get_task("digits-resnet8-tiny")
    before = task.evaluate(task.init_genomes(1, torch.Generator().manual_seed(0))[0])
    res = run_sgd(task, 40, lr=1e-2, seed=0, batch_size=64)
    assert res["test"]["test_loss"] < before["test_loss"]


def test_sgd_mnist1d_mlp_reaches_sane_test_accuracy():
    task = get_task("mnist1d-mlp")
    torch.manual_seed(0)
    model = copy.deepcopy(task.model).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        x, y = task.sample_batch(gen)
        opt.zero_grad()
        task.loss_fn(model(x), y).backward()
        opt.step()
    result = task.evaluate(task.spec.flatten(model.state_dict()))
    print(f"\nmnist1d-mlp after 300 Adam steps: {result}")
    assert result["test_accuracy"] > 0.45 and result["test_loss"] < 1.6


# ---- evaluation and metrics -----------------------------------------------------------------------
def test_evaluate_and_metrics_classification():
    task = get_task("digits-mlp-tiny")
    g = task.genome()
    res = task.evaluate(g)
    assert set(res) == {"test_loss", "test_accuracy"}
    x, y = task.test_data
    with torch.no_grad():
        logits = task.model(x)
    assert res["test_loss"] == pytest.approx(float(task.loss_fn(logits, y)), rel=1e-5)
    assert res["test_accuracy"] == pytest.approx(float((logits.argmax(-1) == y).float().mean()))
    m = task.metrics(torch.stack([g, g]))
    assert set(m) == {"loss", "accuracy"} and m["loss"].shape == (2,)


def test_evaluate_text_reports_bpc_and_perplexity():
    task = small_task("text-lstm-tiny", eval_batch_size=4096)
    res = task.evaluate(task.genome())
    assert set(res) == {"test_loss", "test_bpc", "test_accuracy", "test_perplexity"}
    # an untrained model predicts ~uniformly over the 96 symbols: log2(96) = 6.58 bits
    assert res["test_bpc"] == pytest.approx(np.log2(96), abs=0.3)
    assert res["test_perplexity"] == pytest.approx(2 ** res["test_bpc"])
    m = task.metrics(task.genome()[None])
    assert set(m) == {"loss", "bpc", "perplexity", "accuracy"}


# ---- registry and custom tasks --------------------------------------------------------------------
def test_unknown_task_and_bad_overrides_list_valid_ones():
    with pytest.raises(ValueError, match="unknown task 'mnist1d-mpl'.*mnist1d-mlp-wide.*text-gpt2"):
        get_task("mnist1d-mpl")
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['hiden'\].*'hidden'.*'seed'"):
        get_task("mnist1d-mlp", hiden=(3,))
    with pytest.raises(ValueError, match="unknown MNIST-1D argument.*'noise'"):
        get_task("mnist1d-mlp", data={"noise": 1})
    with pytest.raises(ValueError, match="seq_len=999 exceeds"):
        get_task("text-gpt2-tiny", seq_len=999)


def test_registry_sizes_and_overrides():
    wide = get_task("mnist1d-mlp-wide")
    assert wide.spec.numel == 78_858 and wide.name == "mnist1d-mlp-wide"
    t = get_task("mnist1d-mlp", hidden=(8,), batch_size=32, seed=1)
    assert t.spec.numel == 40 * 8 + 8 + 8 * 10 + 10 and len(t.batch(0)[0]) == 32
    shifted = get_task("mnist1d-shift-mlp")
    assert not torch.equal(shifted.train_data[0][:50], t.train_data[0][:50])
    assert t.train_data[0].device == t.model_device() == t.device


def test_missing_local_dataset_names_dataset_and_path(tmp_path):
    with pytest.raises(DatasetMissingError, match=rf"'cifar10'.*{tmp_path}.*download=True"):
        get_task("cifar10-resnet8", data={"root": tmp_path})


def test_custom_task_from_module_and_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    task = SupervisedTask("toy", model, (x[:48], y[:48]), (x[48:], y[48:]), batch_size=16)
    g = task.init_genomes(4, torch.Generator().manual_seed(1))
    assert g.shape == (4, task.spec.numel) and not torch.equal(g[0], g[1])
    torch.testing.assert_close(task.fitness_genomes(g), loop_fitness(task, g, task.train_data))
    register_task(
        "toy", lambda **kw: SupervisedTask("toy", model, (x, y), (x, y), **kw), overwrite=True
    )
    assert get_task("toy", seed=2).seed == 2
    with pytest.raises(ValueError, match="already registered"):
        register_task("toy", lambda **kw: task)


def test_import_is_light():
    code = (
        "import sys, latent_evo.tasks; "
        "print([m for m in ('lightning', 'datasets', 'torchvision', 'mnist1d', 'sklearn') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.gpu
def test_cuda_fitness_matches_cpu():
    task = get_task("digits-resnet8-tiny")
    g = task.init_genomes(8, torch.Generator().manual_seed(0))
    batch = task.batch(0)
    cpu = task.fitness_genomes(g, batch)
    task.to("cuda")
    cuda = task.fitness_genomes(g.cuda(), tuple(t.cuda() for t in batch))
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-3, atol=1e-4)
