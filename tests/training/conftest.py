"""Fixtures of the training-infrastructure tests: a tiny simulator cache (built once per session)
and a tiny trained checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest

from crossi2p_training.config import load_train_config


@pytest.fixture(scope="session")
def train_sim_cache(tmp_path_factory) -> Path:
    """Simulator cache folder shared by the tiny-config runs (4 training + 2 validation frames)."""
    return tmp_path_factory.mktemp("sim_cache")


@pytest.fixture(scope="session")
def tiny_overrides(train_sim_cache) -> dict:
    """``--set`` overrides that point the tiny config at the session's cache."""
    return {"data.cache_dir": str(train_sim_cache)}


@pytest.fixture(scope="session")
def tiny_train_config(tiny_overrides):
    return load_train_config("tiny", tiny_overrides)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_overrides) -> Path:
    """``last.pt`` of a 1-step tiny training run."""
    from crossi2p_training.train import main

    out = tmp_path_factory.mktemp("tiny_ckpt")
    args = ["--config", "tiny", "--out", str(out), "--steps", "1"]
    for k, v in tiny_overrides.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    return out / "checkpoints" / "last.pt"
