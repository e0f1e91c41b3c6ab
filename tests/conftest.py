"""Shared fixtures: where the prepared data lives, and small data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BUNDLED_DATA = REPO / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository (present in CI); skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (it sits beside the repo in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bundled_data() -> Path:
    return BUNDLED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module (small models: threads only add overhead)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
