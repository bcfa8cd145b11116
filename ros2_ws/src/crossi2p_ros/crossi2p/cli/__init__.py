"""Command-line tools of the core package, and what every CLI of the project shares."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

__all__ = ["ArgumentParser", "UsageError", "check_writable", "check_writable_folder"]


class UsageError(ValueError):
    """A flag's value, or a combination of flags, that the command does not take: one line and
    exit 2, as argparse's own usage errors (a missing or unreadable input is a ``ValueError``:
    exit 1)."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line: ``PROG: error: REASON (see
    PROG --help)`` on stderr, exit code 2 (argparse's own code for a usage error). The stock
    parser prints its whole usage block first, which buries the reason.

    ``--help`` is plain text: the reStructuredText literals of the docstrings it is built from
    (double backquotes) are printed without their quotes."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        return super().format_help().replace("``", "")


def check_writable(path: Path, option: str, named: Path | None = None) -> None:
    """ValueError (one line, naming ``option`` and ``named``, default ``path``) when ``path``'s
    folder could not be made or written: checked before the run, so that a long run is not lost at
    its end. The nearest existing folder is probed by creating (and deleting) a temporary file in
    it: ``os.access`` says yes to root even where nothing can be written (e.g. under /proc). No
    folder is created here (a refused run leaves no empty folder; the folder is made when the file
    is written)."""
    what = f"{option} {path if named is None else named}"
    if path.is_dir():
        raise ValueError(f"{what}: is a folder, expected a file path")
    folder = path.parent.absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{what}: cannot create its folder ({existing} is a file)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(f"{what}: not writable (cannot create a file in {existing}: {exc.strerror or exc})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what}: not writable")


def check_writable_folder(folder: Path, option: str) -> None:
    """ValueError (one line, naming ``folder``) when files could not be written into ``folder``
    (a ``--report DIR``): it is a file, or ``check_writable`` refuses a file in it."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder}: is a file, expected a folder")
    check_writable(folder / "report.md", option, named=folder)
