"""Shared pytest fixtures: repository paths and the real sensor samples beside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI clones the repository with ../shared beside it (the real sensor samples).
SHARED_DATA = Path(os.environ.get("CROSSI2P_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real camera + LiDAR samples (../shared/data); the tests on real data need it."""
    if not (SHARED_DATA / "real").is_dir():
        pytest.fail(f"real sensor samples not found at {SHARED_DATA}/real "
                    "(set CROSSI2P_SHARED_DATA to the shared/data folder)")
    return SHARED_DATA
