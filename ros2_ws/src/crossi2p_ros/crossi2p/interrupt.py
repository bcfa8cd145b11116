"""Ctrl-C during work that cannot be interrupted (creating an onnxruntime session: under a second for the shipped graph, tens of seconds for a large one;
``session.run``).

Python delivers SIGINT (KeyboardInterrupt) to the main thread only between bytecodes, so a main
thread inside onnxruntime's session creation hears Ctrl-C when the load is over.
``run_interruptibly`` runs such a call on a daemon thread and waits for it in a way Ctrl-C
interrupts at once. The thread then keeps running inside onnxruntime, and the interpreter's normal
exit crashes under it (segmentation fault, seen with onnxruntime 1.31). Threads that may be left
inside onnxruntime like this (the loader here, the node's loader and inference worker) are
registered with ``register_native_worker``; a command that was interrupted ends with
``exit_now_if_work_in_flight``, which leaves with ``os._exit`` while one of them still runs.

SIGINT and SIGTERM, for a command that should stop cleanly on either at any moment:

- ``exit_at_once_on_termination_signals`` (``crossi2p.startup_signals``, light enough to import
  first): during start-up (the slow imports), before anything is started, a signal ends the
  process at once (``os._exit``), without a traceback (``calibration_node``'s entry,
  ``python -m crossi2p_ros.bag_player``);
- ``termination_signals_as_interrupt``: from then on both raise KeyboardInterrupt in the main
  thread (SIGINT too where the process started with it ignored: a background job of a
  non-interactive shell), for a process that installs no rclpy signal handlers (rclpy's would
  shut its context down under the code still publishing: "publisher's context is invalid");
  ``interrupt_name`` / ``interrupt_exit_code`` say which one came (130 for SIGINT, 143 for SIGTERM);
- ``ignore_termination_signals``: while cleaning up, a second signal does not break the clean-up;
- ``StopRequests``: a long loop that should finish its current step and save (``crossi2p-train``)
  notes the first signal and polls it; a second one interrupts at once.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TypeVar

from .startup_signals import TERMINATION_SIGNALS, exit_at_once_on_termination_signals, signal_name

T = TypeVar("T")

_NATIVE_WORKERS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_received: list[int] = []  # signals turned into KeyboardInterrupt (termination_signals_as_interrupt)


def register_native_worker(thread: threading.Thread) -> threading.Thread:
    """Note a daemon thread that may still be inside native code (onnxruntime) when the process
    ends (``exit_now_if_work_in_flight``); returns it."""
    _NATIVE_WORKERS.add(thread)
    return thread


def run_interruptibly(fn: Callable[[], T], name: str = "crossi2p_uninterruptible") -> T:
    """``fn()`` on a daemon thread; its result, or its exception re-raised here. A KeyboardInterrupt
    in the caller (Ctrl-C) leaves the thread running: see ``exit_now_if_work_in_flight``."""
    outcome: dict = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        finally:
            finished.set()

    thread = register_native_worker(threading.Thread(target=run, name=name, daemon=True))
    thread.start()
    # A lock wait, which SIGINT interrupts with KeyboardInterrupt (POSIX). Not thread.join(): in
    # Python 3.11 a join interrupted so marks the still running thread as stopped (is_alive() False).
    finished.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def work_in_flight() -> bool:
    """True while a registered thread (``register_native_worker``) is still running."""
    return any(t.is_alive() and t is not threading.current_thread() for t in list(_NATIVE_WORKERS))


def exit_now_if_work_in_flight(code: int) -> None:
    """Flush stdout/stderr and ``os._exit(code)`` when ``work_in_flight()``; else return. Call it
    last, once everything else is shut down (``os._exit`` runs no atexit handler)."""
    if work_in_flight():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _raise_interrupt(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def termination_signals_as_interrupt() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (module
    docstring); on leaving it the handlers from before come back. Off the main thread (signals
    cannot be handled there) it changes nothing."""
    _received.clear()
    with _termination_handler(_raise_interrupt):
        yield


@contextlib.contextmanager
def _termination_handler(handler: Callable) -> Iterator[None]:
    """Within the block, ``handler`` handles SIGINT and SIGTERM (main thread only: elsewhere
    nothing changes); on leaving it the handlers from before come back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in TERMINATION_SIGNALS}
    for sig in TERMINATION_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


class StopRequests:
    """Within the block, the first SIGINT or SIGTERM is noted, not raised: a loop polls
    ``requested`` and stops at its next safe point (a training step: never half an optimiser
    update); a second signal raises KeyboardInterrupt at once. Main thread only (elsewhere it
    notes nothing). ``signum``: the first signal's number (None before one)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._handling = _termination_handler(self._note)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _note(self, signum, frame) -> None:
        if self.signum is not None:
            _received.append(signum)
            raise KeyboardInterrupt
        self.signum = signum
        _received.append(signum)

    def __enter__(self) -> "StopRequests":
        self._handling.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._handling.__exit__(*exc)


def ignore_termination_signals() -> None:
    """SIGINT / SIGTERM ignored from here on (main thread only): a second Ctrl-C does not break the
    clean-up."""
    if threading.current_thread() is threading.main_thread():
        for sig in TERMINATION_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def interrupt_name() -> str:
    """The signal behind the last KeyboardInterrupt: ``Ctrl-C`` (SIGINT, also a KeyboardInterrupt
    of Python's own handler) or ``SIGTERM`` (``termination_signals_as_interrupt``)."""
    return signal_name(_received[-1] if _received else signal.SIGINT)


def interrupt_exit_code() -> int:
    """128 + the signal behind the last KeyboardInterrupt (the shell's convention): 130 for SIGINT,
    143 for SIGTERM."""
    return 128 + (_received[-1] if _received else signal.SIGINT)


def _close_progress_bars() -> None:
    """Close the tqdm bars an interrupt left open (their frames unwound without closing them), so
    that the one-line reason that follows is on a line of its own, not on the bar's and not
    followed by the bar's final redraw."""
    tqdm = sys.modules.get("tqdm")        # only when the command used tqdm at all
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


def exit_130_on_ctrl_c(prog: str, message: str = "interrupted (Ctrl-C) before the results were written in full"):
    """Decorator of a command's ``main``: Ctrl-C (a KeyboardInterrupt out of it) ends the command
    with ``<prog>: <message>`` on stderr and exit code 130 (128 + SIGINT, the shell's convention)
    instead of a traceback (``os._exit(130)`` while a registered thread is still running). A
    SIGTERM (``kill``, a process manager stopping the job) is turned into the same
    KeyboardInterrupt while ``main`` runs (``termination_signals_as_interrupt``), so the command
    stops as on Ctrl-C (partial results where it writes them), with exit code 143 and ``(Ctrl-C)``
    in the message reading ``(SIGTERM)``."""
    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                with termination_signals_as_interrupt():
                    return main(*args, **kwargs)
            except KeyboardInterrupt:
                code, name = interrupt_exit_code(), interrupt_name()
                _received.clear()
                _close_progress_bars()
                print(f"{prog}: {message.replace('(Ctrl-C)', f'({name})')}", file=sys.stderr)
                exit_now_if_work_in_flight(code)
                return code
        return run
    return decorate
