"""Approximate-time pairing of camera and LiDAR messages by stamp.

message_filters is not installable beside the PyPI ROS 2 wheels, so this is the project's own
(plain Python, no rclpy: the node and the offline bag evaluator share it).

Policy: each LiDAR sweep is paired with the camera image whose stamp is closest to the sweep's,
if within ``slop_s``. A pair is emitted as soon as it is final, i.e. once an image stamped at or
after the sweep has arrived (any later image can only be further away). Queues are bounded;
sweeps that cannot be matched any more are dropped and counted. A stamp that jumps back by more
than ``time_jump_back_s`` (a bag loop, a restarted driver) resets both queues; a slightly
out-of-order message is dropped and counted.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

ImageT = TypeVar("ImageT")
LidarT = TypeVar("LidarT")


@dataclass
class PairingConfig:
    """Parameters of ``StampPairer`` (ROS parameters map onto these 1:1)."""

    slop_s: float = 0.05
    """Largest |image stamp - LiDAR stamp| of a pair, seconds."""
    queue_size: int = 10
    """Messages kept per stream while waiting for a partner (bounded memory)."""
    time_jump_back_s: float = 1.0
    """A stamp this much older than the stream's newest resets the pairing (bag loop)."""


@dataclass(frozen=True)
class StampedPair(Generic[ImageT, LidarT]):
    """A camera image and a LiDAR sweep close in time."""

    image_stamp_s: float
    image: ImageT
    lidar_stamp_s: float
    lidar: LidarT

    @property
    def dt_s(self) -> float:
        """Image stamp minus LiDAR stamp."""
        return self.image_stamp_s - self.lidar_stamp_s


@dataclass
class PairingCounters:
    """Counts reported in diagnostics."""

    pairs: int = 0
    lidar_unmatched: int = 0
    images_unmatched: int = 0
    out_of_order: int = 0
    time_resets: int = 0


class StampPairer(Generic[ImageT, LidarT]):
    """Pairs two stamped streams (see module docstring). Feed with ``add_image`` / ``add_lidar``."""

    def __init__(self, config: PairingConfig | None = None):
        self.config = config or PairingConfig()
        self.counters = PairingCounters()
        self._images: deque[tuple[float, Any]] = deque()
        self._lidars: deque[tuple[float, Any]] = deque()
        # newest stamp seen per stream (queues empty out as pairs are made, so they cannot tell)
        self._newest: dict[int, float] = {}

    def reset(self) -> None:
        """Drop everything queued and the newest stamps seen (the counters stay)."""
        self._images.clear()
        self._lidars.clear()
        self._newest.clear()

    def add_image(self, stamp_s: float, image: ImageT) -> list[StampedPair[ImageT, LidarT]]:
        """Queue an image; return the pairs that became final."""
        if self._enqueue(self._images, stamp_s, image):
            return self._match()
        return []

    def add_lidar(self, stamp_s: float, lidar: LidarT) -> list[StampedPair[ImageT, LidarT]]:
        """Queue a LiDAR sweep; return the pairs that became final."""
        if self._enqueue(self._lidars, stamp_s, lidar):
            return self._match()
        return []

    @property
    def sweeps_waiting(self) -> int:
        """LiDAR sweeps queued, waiting for a later image to pair with."""
        return len(self._lidars)

    def flush(self) -> list[StampedPair[ImageT, LidarT]]:
        """End of the streams (a recording read to its end): pair each queued sweep with the closest
        queued image within ``slop_s`` (no later image can come), then empty the queues. A live
        node never calls this."""
        return self._match(final=True)

    # ----------------------------------------------------------------------------- internals
    def _enqueue(self, queue: deque, stamp_s: float, item) -> bool:
        newest = self._newest.get(id(queue))
        if newest is not None and stamp_s <= newest:
            if newest - stamp_s > self.config.time_jump_back_s:
                self.counters.time_resets += 1
                self.reset()
            else:
                self.counters.out_of_order += 1
                return False
        self._newest[id(queue)] = float(stamp_s)
        queue.append((float(stamp_s), item))
        while len(queue) > self.config.queue_size:
            queue.popleft()
            if queue is self._lidars:
                self.counters.lidar_unmatched += 1
            else:
                self.counters.images_unmatched += 1
        return True

    def _match(self, final: bool = False) -> list[StampedPair]:
        """Pair the queued sweeps whose closest image is known; ``final``: no image comes any more
        (every sweep is decided now and the queues are emptied)."""
        pairs = []
        slop = self.config.slop_s
        while self._lidars and self._images:
            t_lidar, lidar = self._lidars[0]
            if not final and self._images[-1][0] < t_lidar:
                break  # a closer image may still come
            best = min(range(len(self._images)), key=lambda i: abs(self._images[i][0] - t_lidar))
            t_image, image = self._images[best]
            self._lidars.popleft()
            if abs(t_image - t_lidar) <= slop:
                pairs.append(StampedPair(t_image, image, t_lidar, lidar))
                self.counters.pairs += 1
                for _ in range(best + 1):  # the image is used; older ones cannot pair any more
                    self._images.popleft()
                self.counters.images_unmatched += best
            else:
                self.counters.lidar_unmatched += 1
        if final:
            self.counters.lidar_unmatched += len(self._lidars)
            self.counters.images_unmatched += len(self._images)
            self._lidars.clear()
            self._images.clear()
        return pairs
