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
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_NATIVE_WORKERS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


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


def exit_130_on_ctrl_c(prog: str, message: str = "interrupted (Ctrl-C) before the results were written in full"):
    """Decorator of a command's ``main``: Ctrl-C (a KeyboardInterrupt out of it) ends the command
    with ``<prog>: <message>`` on stderr and exit code 130 (128 + SIGINT, the shell's convention)
    instead of a traceback (``os._exit(130)`` while a registered thread is still running)."""
    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"{prog}: {message}", file=sys.stderr)
                exit_now_if_work_in_flight(130)
                return 130
        return run
    return decorate
