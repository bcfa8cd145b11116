"""Shared fixtures of the model tests: the cpu preset shrunk to tiny sizes, and inputs for it."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from crossi2p_training.model.crossi2p_net import ModelConfig
from crossi2p_training.model.onnx_graph import example_inputs

TINY_IMAGE_HW = (64, 192)
TINY_POINTS = 600


def tiny_config() -> ModelConfig:
    """The ``cpu`` preset with fewer points / matches, for fast tests."""
    c = ModelConfig.cpu()
    return dataclasses.replace(
        c,
        point=dataclasses.replace(c.point, num_fine_points=256, num_superpoints=64, superpoint_neighbors=8),
        coarse=dataclasses.replace(c.coarse, num_matches=16),
        fine=dataclasses.replace(c.fine, points_per_match=4),
    )


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return tiny_config()


@pytest.fixture
def tiny_inputs():
    torch.manual_seed(0)
    image, points, K, T_prior, prior_weight = example_inputs(None, TINY_IMAGE_HW, TINY_POINTS, batch=2)
    return image, points, K
