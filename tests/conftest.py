"""Shared fixtures. Tests are offline; real data is used when ../shared/data is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings beside the project; tests using them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only beside the project checkout)")
    return SHARED_DATA


def pytest_configure(config):
    # Tiny models on a 2-core machine: torch's thread pool costs more than it gives (a 35x
    # slowdown of small training steps was measured under load). One thread per process.
    import torch

    torch.set_num_threads(1)
