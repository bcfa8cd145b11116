"""Ctrl-C stops the evaluators cleanly (issue 12, item 3).

``crossi2p-evaluate-bag`` runs as a subprocess on a simulated drive with a stub model whose frames
take ~0.5 s (tests/ros/stub_model.py); once its progress bar shows a few LiDAR sweeps read, it gets
SIGINT. It must exit with code 130 and one line on stderr (no traceback), having written
frames.csv and summary.json (and ``--json``) for the pairs processed so far, marked
``"interrupted": true``. Offline mode and live mode (the bag played over DDS into the node in the
same process). ``crossi2p-evaluate`` interrupted likewise: code 130, one line.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import signal_and_wait, write_simulated_bag
from .stub_model import write_stub_model

BIN = Path(sys.executable).parent
FRAMES = 12
PROGRESS = re.compile(r"(\d+)(?:/\d+|[a-z]+) \[")  # tqdm: "3/12 [00:02<..." or, no total known, "3sweep [00:02, ..."


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory) -> Path:
    bag, _ = write_simulated_bag(tmp_path_factory.mktemp("interrupt_bag"), seed=23, frames=FRAMES)
    return bag


@pytest.fixture(scope="module")
def slow_card(tmp_path_factory) -> Path:
    """A stub model that loads at once; a frame takes about half a second."""
    return write_stub_model(tmp_path_factory.mktemp("slow_stub"), frame_iterations=1500)


class Command:
    """A console command as a subprocess; its stderr (progress bars included) read as it comes."""

    def __init__(self, *argv: str):
        # Ctrl-C as in a terminal: the child starts with SIGINT's default action even when this
        # run inherited it ignored (a job started in the background by a non-interactive shell),
        # in which case Python, rightly, would not turn SIGINT into KeyboardInterrupt at all.
        self.proc = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.stderr = b""
        self.stdout = b""
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s, n), daemon=True)
                         for s, n in ((self.proc.stderr, "stderr"), (self.proc.stdout, "stdout"))]
        for r in self._readers:
            r.start()

    def _read(self, stream, name: str) -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
            with self._cond:
                setattr(self, name, getattr(self, name) + chunk)
                self._cond.notify_all()
        with self._cond:  # end of the stream: the process is ending
            self._cond.notify_all()

    def wait_for_progress(self, desc: str, count: int, timeout_s: float) -> bool:
        """Block until the tqdm bar ``desc`` shows at least ``count`` steps (or the process ended)."""
        def reached() -> bool:
            shown = [int(m.group(1)) for part in self.stderr.decode(errors="replace").split("\r")
                     if part.lstrip().startswith(desc) for m in [PROGRESS.search(part)] if m]
            return bool(shown) and max(shown) >= count

        with self._cond:
            return self._cond.wait_for(lambda: reached() or self.proc.poll() is not None, timeout_s) and reached()

    def interrupt(self, signum: int = signal.SIGINT) -> int:
        """SIGINT (or ``signum``), then the exit code."""
        return signal_and_wait(self.proc, signum, 60.0, self._readers, self.text, "the command")

    def text(self) -> str:
        return self.stdout.decode(errors="replace") + self.stderr.decode(errors="replace")

    def message_lines(self, prog: str) -> list[str]:
        """stderr lines of the command itself (progress bar redraws left out)."""
        lines = self.stderr.decode(errors="replace").replace("\r", "\n").splitlines()
        return [line for line in lines if line.startswith(f"{prog}:")]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize(("mode", "signum"), [("offline", signal.SIGINT), ("live", signal.SIGINT),
                                              ("offline", signal.SIGTERM), ("live", signal.SIGTERM)],
                         ids=["offline", "live", "offline-sigterm", "live-sigterm"])
def test_evaluate_bag_interrupted_mid_replay_keeps_partial_results_and_exits_130(drive_bag, slow_card, tmp_path,
                                                                                  mode, signum):
    """SIGTERM (a process manager stopping the job) as Ctrl-C, with exit code 143."""
    report, out_json = tmp_path / "report", tmp_path / "summary.json"
    cmd = Command("crossi2p-evaluate-bag", str(drive_bag), "--model", str(slow_card), "--json", str(out_json),
                  "--report", str(report), "--execution-provider", "cpu", "--mode", mode)
    try:
        # offline: LiDAR sweeps read; live: messages played, each after the node finished the last
        desc, count = ("replay", 3) if mode == "offline" else ("play", 12)
        assert cmd.wait_for_progress(desc, count, 120.0), cmd.text()
        code = cmd.interrupt(signum)
    finally:
        cmd.kill()
    out = cmd.text()
    assert code == 128 + signum, out
    assert "Traceback" not in out and "Exception in thread" not in out, out
    messages = cmd.message_lines("crossi2p-evaluate-bag")
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert len(messages) == 1 and f"interrupted ({name}) after" in messages[0], out
    rows = list(csv.DictReader(open(report / "frames.csv")))
    summary = json.loads((report / "summary.json").read_text())
    assert json.loads(out_json.read_text()) == summary
    assert summary["interrupted"] is True and summary["mode"] == mode
    assert 1 <= summary["frames"] == len(rows) < FRAMES, (summary["frames"], len(rows))
    assert not (report / "report.md").exists()  # no plots after Ctrl-C


def test_evaluate_interrupted_is_one_line_and_exit_130(slow_card, tmp_path):
    cmd = Command("crossi2p-evaluate", "--model", str(slow_card.with_suffix(".onnx")), "--sim-seed", "3",
                  "--frames", "20", "--protocol", "global", "--json", str(tmp_path / "eval.json"), "--no-overlays")
    try:
        assert cmd.wait_for_progress("evaluating", 2, 120.0), cmd.text()
        code = cmd.interrupt()
    finally:
        cmd.kill()
    out = cmd.text()
    assert code == 130, out
    assert "Traceback" not in out, out
    assert cmd.message_lines("crossi2p-evaluate") == [
        "crossi2p-evaluate: interrupted (Ctrl-C) before the results were written in full"], out
