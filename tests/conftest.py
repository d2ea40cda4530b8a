"""Test-session setup. Environment first: huggingface_hub reads these at import time.

`HF_ENDPOINT` points at a loopback Hub (tests/hub_server.py) for the whole session, so even an
accidental Hub call never leaves this machine; offline mode is on unless a test turns it off.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import LocalHub  # noqa: E402

_TMP = tempfile.mkdtemp(prefix="latent-evo-tests-")
_HUB = LocalHub().start()
os.environ["HF_ENDPOINT"] = _HUB.endpoint
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_TMP, "hf_home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("LATENT_EVO_CACHE", os.path.join(_TMP, "cache"))
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def local_hub(monkeypatch):
    """The session's loopback Hub, with offline mode lifted for this test only."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    _HUB.requests.clear()
    yield _HUB
    _HUB.repos.clear()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
