"""Warnings logged once per cause, so a stream of messages with the same defect does not spam the log.

Core modules (no ROS) log through Python ``logging``; a ROS node that wants the notes in its own
logger passes a callable instead where a function takes ``on_note``.

``ThrottleByKind`` throttles a stream of warnings per kind of problem (``warning_kind``), not per
place in the code: the first warning of each distinct problem always gets through, so a start-up
race ("no CameraInfo received yet") does not hide the real cause that follows it ("is 416x128
but its CameraInfo says 640x480"), as a per-call-site throttle (rclpy's ``throttle_duration_sec``)
did.
"""
from __future__ import annotations

import logging
import re
import threading
import time

__all__ = ["warn_once", "warning_kind", "ThrottleByKind"]

_warned: set[tuple] = set()
_lock = threading.Lock()


def warn_once(key: tuple, message: str, logger: logging.Logger | None = None) -> bool:
    """Log ``message`` as a warning the first time ``key`` is seen in this process.

    Returns True when it was logged (first time), False when ``key`` had been seen already.
    """
    with _lock:
        if key in _warned:
            return False
        _warned.add(key)
    (logger or logging.getLogger("crossi2p")).warning(message)
    return True


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def warning_kind(message: str) -> str:
    """The kind of problem a warning describes: its text with every number replaced by ``#``
    (sizes, stamps, counts vary between messages with the same defect; the words name the
    problem)."""
    return _NUMBER.sub("#", message)


class ThrottleByKind:
    """At most one warning per ``period_s`` seconds of each kind (``warning_kind``); at most
    ``max_kinds`` kinds are remembered (the oldest are forgotten). Thread-safe."""

    def __init__(self, period_s: float = 5.0, max_kinds: int = 256):
        self.period_s = period_s
        self.max_kinds = max_kinds
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (monotonic time logged, suppressed since)
        self._lock = threading.Lock()

    def admit(self, message: str, now_s: float | None = None) -> int | None:
        """None when ``message`` is to be suppressed (one of its kind went out less than
        ``period_s`` ago), else how many of its kind were suppressed since the last one went out."""
        now_s = time.monotonic() if now_s is None else now_s
        kind = warning_kind(message)
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now_s - last[0] < self.period_s:
                self._last[kind] = (last[0], last[1] + 1)
                return None
            self._last.pop(kind, None)  # re-inserted last: the dict's order is the oldest first
            if len(self._last) >= self.max_kinds:
                self._last.pop(next(iter(self._last)))
            self._last[kind] = (now_s, 0)
            return 0 if last is None else last[1]
