"""Command-line tools of the core package, and what every CLI of the project shares."""
from __future__ import annotations

import argparse

__all__ = ["ArgumentParser"]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line: ``PROG: error: REASON (see
    PROG --help)`` on stderr, exit code 2 (argparse's own code for a usage error). The stock
    parser prints its whole usage block first, which buries the reason."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
