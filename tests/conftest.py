"""Shared test set-up: offline hubs, deterministic seeds, small thread counts, and the shared fixtures of the
support modules (tests/support/, imported as `support.*`: see tests/README.md)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402
import torch  # noqa: E402

# Fixtures used by tests in more than one folder; a folder's own fixtures live in its conftest.py.
pytest_plugins = ["support.tiny_generator", "support.metric_assets", "support.token_data", "support.recipes",
                  "support.hub_cache"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """One intra-op thread for the duration of a test: tiny models on a shared 2-core machine spend most of their
    time in thread contention otherwise. Opt in with `pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
