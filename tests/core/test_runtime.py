"""CalibrationRuntime's per-frame validity checks, on a real onnxruntime session of a stub graph
that returns its ``T_prior`` input as the estimate (tests/ros/stub_model.py)."""
import numpy as np
import pytest

from crossi2p.camera import CameraModel
from crossi2p.geometry import make_transform
from crossi2p.runtime import CalibrationRuntime, RuntimeConfig
from tests.ros.stub_model import write_stub_model


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    rt = CalibrationRuntime(write_stub_model(tmp_path_factory.mktemp("stub")),
                            RuntimeConfig(execution_provider="cpu", alignment_check=False))
    yield rt
    rt.close()


def _frame():
    rng = np.random.default_rng(0)
    camera = CameraModel(K=np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]]), width=320, height=240)
    points = np.column_stack([rng.uniform(5, 30, 2000), rng.uniform(-10, 10, 2000), rng.uniform(-2, 2, 2000),
                              rng.uniform(0, 1, 2000)]).astype(np.float32)
    return rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), points, camera


@pytest.mark.parametrize("distance_m, lever_arm_refused", [(24.0, True), (10.5, True), (0.3, False)])
def test_an_estimate_that_puts_the_sensors_far_apart_is_invalid(runtime, distance_m, lever_arm_refused):
    """Sensors on one vehicle are within max_lever_arm_m (10 m) of each other: an estimate 24 m
    away (as the network gave on a real KITTI frame) is refused with that reason; a near one goes
    on to the next check (the stub has no correspondences: refused for that)."""
    image, points, camera = _frame()
    T = make_transform(np.eye(3), np.array([0.6, 0.0, 0.8]) * distance_m)
    est = runtime.estimate(image, points, camera, T_prior=T)
    assert not est.valid
    assert ("m apart under the estimate, more than max_lever_arm_m 10" in est.reason) == lever_arm_refused, est.reason
    if not lever_arm_refused:
        assert "correspondences consistent" in est.reason


def test_the_lever_arm_bound_can_be_turned_off(tmp_path):
    rt = CalibrationRuntime(write_stub_model(tmp_path), RuntimeConfig(execution_provider="cpu", alignment_check=False,
                                                                      max_lever_arm_m=0.0))
    try:
        image, points, camera = _frame()
        est = rt.estimate(image, points, camera, T_prior=make_transform(np.eye(3), [0.0, 0.0, 24.0]))
        assert "correspondences consistent" in est.reason, est.reason
    finally:
        rt.close()
