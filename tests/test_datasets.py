"""Dataset loaders: offline generation and caching, fixed splits, text, torchvision file formats."""

from __future__ import annotations

import hashlib
import pickle
import random
import struct

import numpy as np
import pytest
import torch

from latent_evo.tasks import data as D


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One temporary cache per test session (shared with test_tasks.py by its fixed path), so
    MNIST-1D is generated once and no user cache is read."""
    path = tmp_path_factory.getbasetemp() / "latent_evo_cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENT_EVO_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def mnist1d(cache):
    return D.load_mnist1d()


# ---- MNIST-1D ------------------------------------------------------------------------------------
def test_mnist1d_standard_shapes_and_cache(mnist1d, cache, monkeypatch):
    d = mnist1d
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert set(d.y_train.unique().tolist()) == set(range(10)) and d.num_classes == 10
    assert list(cache.glob("mnist1d-*.safetensors"))  # cached as safetensors, never pickle
    assert not list(cache.glob("*.pkl"))
    # The second load reads the cache: generation must not run again.
    import mnist1d.data

    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda *a, **k: pytest.fail("regenerated"))
    again = D.load_mnist1d()
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)


def test_mnist1d_variant_and_global_rng_untouched(mnist1d, cache):
    n_cached = len(list(cache.glob("mnist1d-*.safetensors")))
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    variant = D.load_mnist1d(num_samples=500, seed=3, corr_noise_scale=0.5)
    # mnist1d reseeds the global RNGs while generating; the loader restores them
    assert np.random.rand() == expected_np and random.random() == expected_py
    assert variant.x_train.shape == (400, 40) and variant.x_test.shape == (100, 40)
    assert not torch.equal(variant.x_train[:100], mnist1d.x_train[:100])
    assert len(list(cache.glob("mnist1d-*.safetensors"))) == n_cached + 1  # under its own key


def test_mnist1d_bad_argument_lists_valid():
    with pytest.raises(ValueError, match="unknown MNIST-1D argument.*'noise'.*corr_noise_scale"):
        D.mnist1d_args(noise=1.0)


# ---- digits --------------------------------------------------------------------------------------
def test_digits_fixed_seeded_split():
    a, b, c = D.load_digits(seed=0), D.load_digits(seed=0), D.load_digits(seed=1)
    assert a.x_train.shape == (1438, 1, 8, 8) and a.x_test.shape == (359, 1, 8, 8)
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_test, c.y_test)
    # train and test partition the 1,797 images (digits has a few duplicate images: compare counts)
    rows = torch.cat([a.x_train, a.x_test]).flatten(1)
    assert len(rows) == 1797
    all_rows = torch.from_numpy(__import__("sklearn.datasets").datasets.load_digits().data).float()
    assert torch.allclose(rows.sum(0), all_rows.div(16).sum(0), atol=1e-2)


def test_digits_transfer_variant_turns_and_moves_every_image():
    a, r = D.load_digits(), D.load_digits(rotate=1)
    assert torch.equal(r.x_train, torch.rot90(a.x_train, 1, dims=(2, 3)))
    assert torch.equal(r.y_train, a.y_train) and torch.equal(r.y_test, a.y_test)  # same split
    s = D.load_digits(rotate=1, shift=1)
    assert torch.equal(s.x_test, D.load_digits(rotate=1, shift=1).x_test)  # seeded offsets
    pad = torch.nn.functional.pad(r.x_train, (1, 1, 1, 1))  # (N, 1, 10, 10)
    # every image is its turned original cut from some window of the zero-padded one
    windows = torch.stack([pad[..., i : i + 8, j : j + 8] for i in range(3) for j in range(3)])
    match = (windows == s.x_train[None]).flatten(2).all(-1)  # (9, N)
    assert bool(match.any(0).all())
    assert int((~match[4]).sum()) > len(s.x_train) // 2  # most are moved (centre: 1/9 of them)
    with pytest.raises(ValueError, match="shift"):
        D.load_digits(shift=8)


# ---- text ----------------------------------------------------------------------------------------
def test_char_vocab_roundtrip_and_folding():
    assert len(D.CHAR_VOCAB) == 96
    s = "def f(x):\n    return x ** 2  # ok ~"
    ids = D.encode_chars(s)
    assert ids.dtype == torch.int64 and D.decode_chars(ids) == s
    assert D.decode_chars(D.encode_chars("it’s “so” … é")) == 'it\'s "so" ... ?'


def test_pydoc_text_split():
    t = D.load_pydoc_text(val_fraction=0.1)
    n = len(t.train) + len(t.val)
    assert n > 400_000 and abs(len(t.val) - 0.1 * n) <= 1
    assert int(t.train.max()) < t.vocab_size == 96 and int(t.train.min()) >= 0
    assert "def" in D.decode_chars(t.train[:20_000])
    assert torch.equal(D.load_text("pydoc").val, t.val)


def test_local_text_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("hello world\n" * 50, encoding="utf-8")
    t = D.load_text(str(p), val_fraction=0.2)
    assert len(t.train) + len(t.val) == 600 and len(t.val) == 120
    assert D.decode_chars(t.train[:12]) == "hello world\n"
    with pytest.raises(D.DatasetMissingError, match=r"nope\.txt"):
        D.load_text_file(tmp_path / "nope.txt")


def test_hf_text_from_saved_dataset(tmp_path):
    import datasets

    docs = [f"document number {i}." for i in range(30)]
    datasets.Dataset.from_dict({"text": docs, "id": list(range(30))}).save_to_disk(tmp_path / "ds")
    t = D.load_text(str(tmp_path / "ds"), val_fraction=0.1)
    joined = D.decode_chars(torch.cat([t.train, t.val]))
    assert joined == "\n".join(docs)
    capped = D.load_hf_text(str(tmp_path / "ds"), max_chars=100)
    assert len(capped.train) + len(capped.val) == 100
    with pytest.raises(ValueError, match=r"columns \['text', 'id'\]"):
        D.load_hf_text(str(tmp_path / "ds"), text_column="content")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"content": docs[:5]})})
    dd.save_to_disk(tmp_path / "dd")
    assert D.decode_chars(D.load_hf_text(str(tmp_path / "dd"), text_column="content").train)[
        :10
    ] == ("document n")


def test_hf_text_missing_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(D.DatasetMissingError, match="no-such-user/no-such-corpus.*save_to_disk"):
        D.load_text("hf:no-such-user/no-such-corpus")
    with pytest.raises(D.DatasetMissingError, match="missing-dir"):
        D.load_text("/definitely/missing-dir/corpus.txt")


# ---- torchvision formats, written by hand --------------------------------------------------------
def _write_idx(path, array: np.ndarray):
    """The MNIST idx-ubyte format: magic (0, 0, 0x08=ubyte, ndim), big-endian dims, raw bytes."""
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, array.ndim]))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_raw_idx(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = {s: rng.integers(0, 256, (n, 28, 28)) for s, n in (("train", 12), ("t10k", 5))}
    labels = {s: rng.integers(0, 10, len(imgs[s])) for s in imgs}
    for s in imgs:
        _write_idx(raw / f"{s}-images-idx3-ubyte", imgs[s])
        _write_idx(raw / f"{s}-labels-idx1-ubyte", labels[s])
    d = D.load_torchvision("mnist", root=tmp_path)
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    assert d.y_train.tolist() == labels["train"].tolist()
    expected = (torch.from_numpy(imgs["t10k"]).float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(d.x_test[:, 0], expected, atol=1e-5)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_torchvision_cifar_from_pickle_batches(tmp_path, monkeypatch, name):
    import torchvision.datasets as tvd

    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    folder = tmp_path / cls.base_folder
    folder.mkdir()
    rng = np.random.default_rng(1)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    n_classes = 10 if name == "cifar10" else 100

    def write(fname: str, n: int) -> tuple[np.ndarray, list[int]]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, n_classes, n).tolist()
        with open(folder / fname, "wb") as f:
            pickle.dump({"data": data, label_key: labels}, f)
        return data, labels

    def md5(fname: str) -> str:
        return hashlib.md5((folder / fname).read_bytes()).hexdigest()

    train = [(f, write(f, 4)) for f, _ in cls.train_list]
    test_data, test_labels = write(cls.test_list[0][0], 3)
    with open(folder / cls.meta["filename"], "wb") as f:
        pickle.dump({cls.meta["key"]: [f"c{i}" for i in range(n_classes)]}, f)
    # torchvision checks the real files' md5s; point it at ours so its own check still runs
    monkeypatch.setattr(cls, "train_list", [[f, md5(f)] for f, _ in train])
    monkeypatch.setattr(cls, "test_list", [[cls.test_list[0][0], md5(cls.test_list[0][0])]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})

    d = D.load_torchvision(name, root=tmp_path)
    assert d.x_train.shape == (4 * len(train), 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.num_classes == n_classes and d.y_test.tolist() == test_labels
    img = torch.from_numpy(test_data[1].reshape(3, 32, 32)).float() / 255  # CHW in the pickle
    mean = torch.tensor(D._TORCHVISION[name][2]).view(3, 1, 1)
    std = torch.tensor(D._TORCHVISION[name][3]).view(3, 1, 1)
    assert torch.allclose(d.x_test[1], (img - mean) / std, atol=1e-5)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_torchvision_missing_offline_says_where_and_how(tmp_path, name):
    with pytest.raises(D.DatasetMissingError) as e:
        D.load_torchvision(name, root=tmp_path / "empty")
    msg = str(e.value)
    assert repr(name) in msg and str(tmp_path / "empty") in msg and "download=True" in msg
    assert e.value.dataset == name


def test_unknown_torchvision_dataset():
    with pytest.raises(ValueError, match="valid ones are.*cifar10"):
        D.load_torchvision("svhn")
