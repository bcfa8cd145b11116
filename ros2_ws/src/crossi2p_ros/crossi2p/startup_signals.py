"""SIGINT / SIGTERM during a command's start-up (the slow imports): exit at once, no traceback.

Kept apart from ``crossi2p.interrupt`` (which re-exports it) and importing only ``os`` and
``signal``: it must be installed within the first few tens of milliseconds of the interpreter's
start, before anything heavier is imported (``crossi2p_ros.node_main``, ``crossi2p_ros.bag_player``;
tests/ros/test_node_signals.py signals the node 50 ms after it starts).
"""
from __future__ import annotations

import os
import signal

TERMINATION_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """``Ctrl-C`` for SIGINT, else the signal's name (``SIGTERM``)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_at_once_on_termination_signals(prog: str = "", exit_code: int | None = None) -> None:
    """Start-up, before the slow imports: SIGINT and SIGTERM end the process at once (``os._exit``:
    nothing has been started, so there is nothing to clean up), without a traceback, with
    ``<prog>: interrupted (<signal>) while starting`` on stderr when ``prog`` is given, and exit code
    ``exit_code`` (None: 128 + the signal's number, 130 / 143)."""
    def exit_now(signum, frame) -> None:
        if prog:
            os.write(2, f"{prog}: interrupted ({signal_name(signum)}) while starting\n".encode())
        os._exit(128 + signum if exit_code is None else exit_code)

    for sig in TERMINATION_SIGNALS:
        signal.signal(sig, exit_now)
