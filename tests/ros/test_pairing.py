"""Approximate-time pairing by stamp (the node's and the bag evaluator's own policy)."""
import numpy as np
import pytest

from crossi2p_ros.pairing import PairingConfig, StampPairer


def feed(pairer, events):
    """events: list of (stamp, kind) in arrival order -> list of (image_stamp, lidar_stamp)."""
    out = []
    for stamp, kind in events:
        add = pairer.add_image if kind == "image" else pairer.add_lidar
        out += [(p.image_stamp_s, p.lidar_stamp_s) for p in add(stamp, f"{kind}@{stamp}")]
    return out


def test_15hz_camera_and_10hz_lidar_pair_each_sweep_with_its_nearest_image():
    rng = np.random.default_rng(0)
    cam = np.arange(0, 10, 1 / 15) + rng.uniform(-0.002, 0.002, 150)
    lidar = np.arange(0.013, 10, 0.1)
    # LiDAR messages arrive ~60 ms after their stamp (driver latency), images at once.
    events = sorted([(t, t, "image") for t in cam] + [(t + 0.06, t, "lidar") for t in lidar])
    pairs = feed(StampPairer(PairingConfig(slop_s=0.04, queue_size=20)), [(s, k) for _, s, k in events])
    assert len(pairs) >= len(lidar) - 1  # the last sweep may still wait for a later image
    for t_img, t_lidar in pairs:
        nearest = cam[np.argmin(np.abs(cam - t_lidar))]
        assert t_img == nearest
        assert abs(t_img - t_lidar) <= 0.04


def test_sweep_without_an_image_within_slop_is_dropped_and_counted():
    pairer = StampPairer(PairingConfig(slop_s=0.01))
    pairs = feed(pairer, [(0.0, "lidar"), (0.05, "image"), (0.10, "lidar"), (0.105, "image")])
    assert pairs == [(0.105, 0.10)]
    assert pairer.counters.lidar_unmatched == 1


def test_a_pair_waits_until_no_closer_image_can_come():
    pairer = StampPairer(PairingConfig(slop_s=0.05))
    assert feed(pairer, [(1.00, "lidar"), (0.97, "image")]) == []  # 1.02 may still come
    assert feed(pairer, [(1.02, "image")]) == [(1.02, 1.00)]


def test_stamps_jumping_back_reset_pairing_and_small_reorders_are_dropped():
    pairer = StampPairer(PairingConfig(slop_s=0.05, time_jump_back_s=1.0))
    feed(pairer, [(10.0, "image"), (10.01, "lidar")])
    assert feed(pairer, [(9.99, "image")]) == []
    assert pairer.counters.out_of_order == 1
    # A bag loop: back to t=0.
    pairs = feed(pairer, [(0.0, "image"), (0.01, "lidar"), (0.02, "image")])
    assert pairer.counters.time_resets == 1
    assert pairs == [(0.0, 0.01)]


def test_a_loop_is_detected_after_every_queued_message_was_paired():
    pairer = StampPairer(PairingConfig(slop_s=0.05, time_jump_back_s=1.0))
    assert feed(pairer, [(10.0, "image"), (10.01, "lidar"), (10.02, "image")]) == [(10.0, 10.01)]
    assert feed(pairer, [(10.1, "lidar"), (10.12, "image")]) == [(10.12, 10.1)]  # LiDAR queue now empty
    # a stale sweep (older than one already paired) must not pair; a loop back to 0 resets
    assert feed(pairer, [(10.05, "lidar")]) == [] and pairer.counters.out_of_order == 1
    assert feed(pairer, [(0.0, "lidar"), (0.01, "image")]) == [(0.01, 0.0)]
    assert pairer.counters.time_resets == 1


@pytest.mark.parametrize("queue_size", [1, 5])
def test_queues_stay_bounded(queue_size):
    pairer = StampPairer(PairingConfig(queue_size=queue_size))
    for i in range(100):
        pairer.add_lidar(float(i), i)  # no images at all
    assert len(pairer._lidars) == queue_size
    assert pairer.counters.lidar_unmatched == 100 - queue_size


def test_flush_pairs_the_last_sweep_when_no_later_image_can_come():
    # A recording read to its end: each camera ~9 ms before its sweep, nothing after the last sweep.
    pairer = StampPairer(PairingConfig(slop_s=0.05))
    events = [(0.991, "image"), (1.000, "lidar"), (1.091, "image"), (1.100, "lidar"), (1.191, "image"),
              (1.200, "lidar")]
    assert feed(pairer, events) == [(0.991, 1.000), (1.091, 1.100)]
    assert [(p.image_stamp_s, p.lidar_stamp_s) for p in pairer.flush()] == [(1.191, 1.200)]
    assert pairer.flush() == [] and pairer.counters.pairs == 3


def test_flush_leaves_a_sweep_without_an_image_within_the_slop_unpaired():
    pairer = StampPairer(PairingConfig(slop_s=0.05))
    feed(pairer, [(1.000, "lidar"), (0.900, "image")])
    assert pairer.flush() == [] and pairer.counters.lidar_unmatched == 1
