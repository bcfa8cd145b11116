"""Warnings logged once per cause, so a stream of messages with the same defect does not spam the log.

Core modules (no ROS) log through Python ``logging``; a ROS node that wants the notes in its own
logger passes a callable instead where a function takes ``on_note``.
"""
from __future__ import annotations

import logging
import threading

__all__ = ["warn_once"]

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
