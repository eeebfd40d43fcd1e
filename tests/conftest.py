"""Shared test fixtures.

Real data lives at ../shared/data beside the checkout (override with ALEXNET_SHARED_DATA);
tests that need it are skipped with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never contact a model hub: huggingface_hub reads this when it is first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ALEXNET_SHARED_DATA", REPO.parent / "shared" / "data"))

# Two cores on CI: keep torch from oversubscribing them when tests run side by side.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "imagenette").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
