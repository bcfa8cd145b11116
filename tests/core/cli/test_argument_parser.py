"""Every CLI's usage errors are one line naming the tool and the reason (exit 2, argparse's code)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from crossi2p.cli import ArgumentParser


def test_a_usage_error_is_one_line_with_the_reason_and_exit_2(capsys):
    p = ArgumentParser(prog="tool")
    p.add_argument("--span", choices=["spread", "recent"])
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--span", "bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tool: error: argument --span: invalid choice: 'bogus'")
    assert err.rstrip().endswith("(see tool --help)")


@pytest.mark.parametrize("module, argv", [
    ("crossi2p_ros.calibrate", ["rec", "--out", "c.yaml", "--window-span", "bogus"]),
    ("crossi2p_ros.evaluate_bag", ["bag", "--model", "m.yaml", "--refine-window-span", "bogus"]),
    ("crossi2p_training.sim.cli", ["--no-such-flag"]),
    ("crossi2p.cli.overlay", ["--frame", "x"]),
])
def test_the_project_clis_use_it(module, argv):
    proc = subprocess.run([sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))",
                           *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "error:" in proc.stderr and "--help)" in proc.stderr, proc.stderr


def test_help_prints_the_docstrings_literals_without_their_rst_quotes(capsys):
    p = ArgumentParser(prog="tool", description="Writes ``calib.yaml``.")
    p.add_argument("--span", help="``recent`` or ``spread``")
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Writes calib.yaml." in out and "recent or spread" in out and "``" not in out
