"""crossi2p.log_once.ThrottleByKind: warnings throttled per kind of problem (numbers aside), not per
place in the code: the first of each distinct problem always goes out."""
from __future__ import annotations

from crossi2p.log_once import ThrottleByKind, warning_kind


def test_messages_differing_only_in_numbers_are_one_kind():
    assert warning_kind("image is 416x128 but its CameraInfo says 640x480") == \
        warning_kind("image is 32x24 but its CameraInfo says 1.5e3x-2")
    assert warning_kind("image dropped: no CameraInfo received yet") != warning_kind("image is 1x1 but 2x2")


def test_first_of_each_kind_goes_out_then_once_per_period_with_the_count_suppressed():
    throttle = ThrottleByKind(period_s=5.0)
    assert throttle.admit("image dropped: no CameraInfo received yet", now_s=0.0) == 0
    assert throttle.admit("image is 416x128 but its CameraInfo says 640x480", now_s=0.1) == 0  # not hidden
    assert throttle.admit("image dropped: no CameraInfo received yet", now_s=1.0) is None
    for t in (0.2, 0.3, 4.0):
        assert throttle.admit("image is 416x128 but its CameraInfo says 640x480", now_s=t) is None
    assert throttle.admit("image is 416x128 but its CameraInfo says 640x480", now_s=5.2) == 3
    assert throttle.admit("image is 416x128 but its CameraInfo says 640x480", now_s=5.3) is None


def test_only_the_newest_kinds_are_remembered():
    throttle = ThrottleByKind(period_s=5.0, max_kinds=2)
    for word in ("a", "b", "c"):
        assert throttle.admit(word, now_s=0.0) == 0
    assert throttle.admit("c", now_s=1.0) is None
    assert throttle.admit("a", now_s=1.0) == 0    # forgotten: goes out again
