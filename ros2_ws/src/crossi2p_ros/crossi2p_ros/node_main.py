"""``calibration_node``'s console-script entry: signals are handled before the heavy imports.

Importing the node (numpy, scipy, onnxruntime, rclpy) takes about a second. A SIGINT or SIGTERM in
that second used to end it with a ``KeyboardInterrupt`` traceback and a signal exit code, or be
lost where the shell started it with SIGINT ignored (a background job). Here both end the start-up
at once with exit code 0 and no traceback, as ``calibration_node.main``'s own handling does from
``rclpy.init`` on: nothing has been started yet, so there is nothing to clean up
(``crossi2p.startup_signals.exit_at_once_on_termination_signals``: it imports only os and signal,
so the handlers are in place within milliseconds).
"""
from __future__ import annotations

from crossi2p.startup_signals import exit_at_once_on_termination_signals


def main() -> int:
    """Install the start-up signal handlers, then import and run ``calibration_node.main``."""
    exit_at_once_on_termination_signals(exit_code=0)  # only the interpreter and imports exist at this point
    from .calibration_node import main as node_main  # the slow part

    return node_main()
