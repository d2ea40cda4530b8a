"""Test-session setup. Environment first: huggingface_hub reads these at import time."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="latent-evo-tests-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_HOME"] = os.path.join(_TMP, "hf_home")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("LATENT_EVO_CACHE", os.path.join(_TMP, "cache"))
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
