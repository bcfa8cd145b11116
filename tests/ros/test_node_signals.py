"""Start-up and shutdown of the calibration node (issue 12, item 3).

The ``calibration_node`` console script runs as a subprocess and gets SIGINT or SIGTERM at each
moment that matters: while the model loads (a stub whose session takes seconds to create: the
shipped graph now loads in well under a second), in the middle of a frame (a stub model whose
``session.run`` never ends within the test) and when idle. Each time it must exit with code 0,
promptly (``EXIT_BOUND_S``; the 2 s of the issue is measured by ``bench/bench_node_startup.py``),
without a traceback.

In-process (deterministic): the node is subscribed and publishes diagnostics saying ``loading
model`` while the model loads; pairs arriving meanwhile are counted, the newest one waits and is
processed once the model is there; a model that fails to load is one line, exit code 1.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from crossi2p.pointcloud2 import rclpy_pointcloud2
from crossi2p.runtime import CalibrationRuntime, ModelLoadError
from crossi2p_ros import calibration_node
from crossi2p_ros.calibration_node import CalibrationNode

from .conftest import signal_and_wait, spin_until
from .stub_model import SHIPPED_CARD, write_stub_model
from .test_calibration_node import image_msg, info_msg

NODE = Path(sys.executable).parent / "calibration_node"
# A behavioural bound, not a timing figure: "exits promptly instead of waiting for the load, the
# frame or a timeout" (the 1-minute waits it replaces). The issue's 2 s is measured by
# bench/bench_node_startup.py (docs/benchmarks.md, section 2: 0.02-0.7 s), not asserted here, so
# that a loaded CI machine cannot turn a timing into a red test.
EXIT_BOUND_S = 10.0
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
STARTED_LOADING = "loading model"
MODEL_READY = ": ready"
FRAME_STARTED = "running the model"


@pytest.fixture(scope="module")
def drive():
    from crossi2p_training.sim import SimConfig, simulate_drive

    return simulate_drive(SimConfig.preset("small"), seed=5, frames=3)


@pytest.fixture(scope="module")
def endless_frame_card(tmp_path_factory) -> Path:
    """A stub model that loads at once and whose frames never end within a test."""
    return write_stub_model(tmp_path_factory.mktemp("endless"), frame_iterations=10**8)


@pytest.fixture(scope="module")
def slow_loading_card(tmp_path_factory) -> Path:
    """A stub whose session takes seconds to create (the shipped graph now loads in well under a
    second, too fast to signal reliably in the middle of its load)."""
    return write_stub_model(tmp_path_factory.mktemp("slow_loading"), frame_iterations=1, load_nodes=60_000)


@pytest.fixture(scope="module")
def quick_card(tmp_path_factory) -> Path:
    """A stub model that loads at once and runs a frame in milliseconds."""
    return write_stub_model(tmp_path_factory.mktemp("quick"), frame_iterations=1)


class NodeProcess:
    """``calibration_node`` as a subprocess; its stdout and stderr lines are collected as they come."""

    def __init__(self, *ros_args: str):
        self.proc = subprocess.Popen([str(NODE), "--ros-args", *ros_args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s, out), daemon=True)
                         for s, out in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for r in self._readers:
            r.start()

    def _read(self, stream, out: list[str]) -> None:
        for line in stream:
            with self._cond:
                out.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> bool:
        """Block until a line holding ``text`` was printed (or the process ended)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.printed(text) or self.proc.poll() is not None, timeout_s) \
                and self.printed(text)

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.stdout + self.stderr)

    def signal_and_wait(self, sig: int) -> tuple[int, float]:
        """Send ``sig``; (exit code, seconds from the signal to the exit)."""
        start = time.monotonic()
        code = signal_and_wait(self.proc, sig, 30.0, self._readers, self.output, "calibration_node")
        return code, time.monotonic() - start

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_node():
    """Start ``calibration_node`` subprocesses; any still running at the end are killed."""
    started: list[NodeProcess] = []

    def start(*ros_args: str) -> NodeProcess:
        started.append(NodeProcess(*ros_args))
        return started[-1]

    yield start
    for p in started:
        p.kill()


def assert_clean_exit(node: NodeProcess, sig: int, moment: str) -> None:
    code, elapsed = node.signal_and_wait(sig)
    out = node.output()
    name = signal.Signals(sig).name
    assert code == 0, f"{name} {moment}: exit code {code}\n{out}"
    assert elapsed < EXIT_BOUND_S, f"{name} {moment}: exited {elapsed:.2f} s after the signal\n{out}"
    assert "Traceback" not in out and "Exception in thread" not in out, f"{name} {moment}:\n{out}"


def assert_one_line_error_exit_1(node: NodeProcess, expected: str) -> None:
    """The node exited with code 1, printed exactly ``expected`` as its one error line, and no traceback."""
    code = node.proc.wait(timeout=60.0)
    for r in node._readers:
        r.join(timeout=5.0)
    errors = [line for line in node.stderr if "error" in line.lower()]
    assert code == 1, node.output()
    assert errors == [f"calibration_node: error: {expected}\n"], node.output()
    assert "Traceback" not in node.output()


def stub_args(card: Path) -> list[str]:
    return ["-p", f"model_card:={card}", "-p", "qos:=reliable", "-p", "queue_depth:=50",
            "-p", "runtime.execution_provider:=cpu", "-p", "runtime.intra_op_threads:=1",
            "--log-level", "crossi2p_calibration:=debug"]


class DrivePlayer:
    """Publishes a simulated drive (CameraInfo + image, LiDAR) to the node's default topics with
    reliable QoS; keep it open until the node has what it needs (closing drops undelivered data)."""

    def __init__(self, context):
        self.node = rclpy.create_node("signal_test_player", context=context)
        qos = QoSProfile(depth=50)
        self.pubs = {"image": self.node.create_publisher(Image, "/camera/image_raw", qos),
                     "info": self.node.create_publisher(CameraInfo, "/camera/camera_info", qos),
                     "points": self.node.create_publisher(PointCloud2, "/lidar/points", qos)}
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def play(self, drive) -> None:
        """Wait until the node subscribed, then publish ``drive`` in stamp order."""
        assert spin_until(self.executor, lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values()),
                          30.0), "the node never subscribed"
        events = [(t, "image", d) for t, d in drive.camera_frames] + [(t, "lidar", d) for t, d in drive.lidar_sweeps]
        for t, kind, data in sorted(events, key=lambda e: e[0]):
            if kind == "image":
                self.pubs["info"].publish(info_msg(drive.camera, t))
                self.pubs["image"].publish(image_msg(data, t))
            else:
                self.pubs["points"].publish(rclpy_pointcloud2(data[:, :4], t, "lidar"))
            self.executor.spin_once(timeout_sec=0.01)

    def play_until(self, drive, node: "NodeProcess", text: str, timeout_s: float = 20.0, tries: int = 3) -> bool:
        """Publish ``drive`` until ``node`` prints ``text``, at most ``tries`` times: on a loaded
        machine DDS may match the node's readers after the first messages went out (seen in
        full-suite runs: the CameraInfo of every pair was missed and no pair reached the model)."""
        for _ in range(tries):
            self.play(drive)
            if node.wait_for(text, timeout_s):
                return True
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


# ---------------------------------------------------------------------------- subprocess: signals
def _wait_until_catching(pid: int, sig: int, timeout_s: float) -> bool:
    """Wait until process ``pid`` has a handler for ``sig`` (Linux: ``SigCgt`` of
    /proc/PID/status); False when it does not within ``timeout_s`` or has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught >> (int(sig) - 1) & 1:
            return True
        time.sleep(0.002)
    return False


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("after_s", [0.05, 0.4])
def test_signal_during_the_imports_exits_with_code_0_and_no_traceback(sig, after_s):
    """Before the node exists (the imports take about a second): the console script's entry
    (``crossi2p_ros.node_main``) handles both signals first, so no KeyboardInterrupt traceback
    and no signal exit code. ``after_s`` counts from when the entry's handlers are in place (the
    process catches SIGTERM, which Python itself does not): a signal sent earlier, while the
    interpreter itself starts (tens of milliseconds, more on a loaded machine), reaches no code of
    this project."""
    card = Path(__file__).resolve().parents[2] / "models" / "crossi2p_cpu.yaml"   # runs until the signal
    proc = subprocess.Popen([str(NODE), "--ros-args", "-p", f"model_card:={card}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_until_catching(proc.pid, signal.SIGTERM, timeout_s=30.0), "the entry never installed its handlers"
    time.sleep(after_s)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (proc.returncode, out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_while_the_model_loads_exits_at_once_with_code_0(start_node, slow_loading_card, sig):
    node = start_node(*stub_args(slow_loading_card))
    assert node.wait_for(STARTED_LOADING, 60.0), node.output()
    assert not node.printed(MODEL_READY), f"the model was loaded before the signal could be sent:\n{node.output()}"
    assert_clean_exit(node, sig, "while the model loads")
    assert not node.printed(MODEL_READY), f"the signal did not land during the load:\n{node.output()}"


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_in_the_middle_of_a_frame_exits_at_once_with_code_0(start_node, endless_frame_card, drive, sig):
    node = start_node(*stub_args(endless_frame_card))
    assert node.wait_for(MODEL_READY, 60.0), node.output()
    context = rclpy.Context()
    rclpy.init(context=context)
    player = DrivePlayer(context)
    try:
        assert player.play_until(drive, node, FRAME_STARTED), node.output()
    finally:
        player.close()
        context.try_shutdown()
    assert_clean_exit(node, sig, "in the middle of a frame")


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_when_idle_exits_at_once_with_code_0(start_node, quick_card, sig):
    node = start_node(*stub_args(quick_card))
    assert node.wait_for(MODEL_READY, 60.0), node.output()
    assert_clean_exit(node, sig, "when idle")


def test_model_that_fails_to_load_is_one_line_and_exit_code_1(start_node, tmp_path):
    node = start_node("-p", f"model_card:={tmp_path / 'missing.yaml'}")
    assert_one_line_error_exit_1(node, f"model card {tmp_path / 'missing.yaml'}: file not found")


# ---------------------------------------------------------------------------- in-process: loading
@pytest.fixture
def gated_loading(monkeypatch):
    """The node's model loading waits for ``gate`` to open (a load of any length, deterministic)."""
    gate = threading.Event()
    fail = []

    def load(card, config):
        if not gate.wait(60.0):
            raise ModelLoadError("test: the gate never opened")
        if fail:
            raise ModelLoadError(fail[0])
        return CalibrationRuntime(card, config)

    monkeypatch.setattr(calibration_node, "CalibrationRuntime", load)
    return gate, fail


def test_node_is_up_and_says_loading_model_until_the_model_is_loaded(gated_loading, quick_card, drive):
    gate, _ = gated_loading
    context = rclpy.Context()
    rclpy.init(context=context)
    node = CalibrationNode(context=context, load_model_in_background=True, parameter_overrides=[
        Parameter("model_card", value=str(quick_card)), Parameter("qos", value="reliable"),
        Parameter("queue_depth", value=50), Parameter("diagnostics_rate_hz", value=20.0),
        Parameter("runtime.execution_provider", value="cpu"), Parameter("runtime.intra_op_threads", value=1)])
    io = rclpy.create_node("signal_test_listener", context=context)
    diagnostics: list[dict] = []
    io.create_subscription(DiagnosticArray, "/diagnostics",
                           lambda m: diagnostics.append({kv.key: kv.value for kv in m.status[0].values}), 10)
    player = DrivePlayer(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(io)
    try:
        assert spin_until(executor, lambda: diagnostics and diagnostics[-1]["state"] == "loading model", 30.0)
        assert "loading for" in diagnostics[-1]["model"]
        thread = threading.Thread(target=player.play, args=(drive,))  # a second executor spins the player
        thread.start()
        assert spin_until(executor, lambda: not thread.is_alive() and node.counters.pairs_in >= 2, 60.0)
        thread.join()
        c = node.counters
        assert c.frames_done == 0 and node.runtime is None
        assert c.pairs_dropped_loading == c.pairs_in - 1 and c.pairs_dropped_busy == 0  # the newest one waits
        gate.set()
        assert spin_until(executor, lambda: c.frames_done == 1, 60.0)  # the waiting pair, on the loaded model
        assert spin_until(executor, lambda: diagnostics[-1]["model"] == "stub: ready"
                          and diagnostics[-1]["state"] != "loading model", 30.0)
        assert node.wait_until_idle(c.inputs_handled, 10.0)
    finally:
        gate.set()
        executor.shutdown()
        player.close()
        node.destroy_node()
        io.destroy_node()
        context.try_shutdown()


def test_model_failing_in_the_background_is_reported_in_one_line(gated_loading, quick_card):
    gate, fail = gated_loading
    fail.append("model graph x.onnx: file not found (named by x.yaml)")
    gate.set()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = CalibrationNode(context=context, load_model_in_background=True,
                           parameter_overrides=[Parameter("model_card", value=str(quick_card))])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        executor.spin_until_future_complete(node.model_failed, timeout_sec=30.0)
        assert node.model_failed.result() == fail[0]
        values = {kv.key: kv.value for kv in node.diagnostics_status().values}
        assert values["state"] == "model failed to load"
        assert values["last_error"] == f"model failed to load: {fail[0]}"
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def test_help_prints_the_usage_and_parameters_without_starting_the_node():
    out = subprocess.run([str(NODE), "--help"], capture_output=True, text=True, timeout=60.0)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: calibration_node") and "model_card" in out.stdout
    assert "subscribed" not in out.stdout + out.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--ros-args", "--params-file", "/nonexistent/params.yaml"], 1,
     "--params-file /nonexistent/params.yaml: No such file or directory"),
    (["--ros-args", "--params-file", "BAD"], 1, "not valid YAML"),
    (["--ros-args", "--params-file", "PLAIN"], 1, "no ros__parameters in it"),
    (["--ros-args", "-p", "image_topic"], 1, "-p image_topic: expected NAME:=VALUE"),
    (["--ros-args", "-r", "image_topic"], 1, "ROS arguments refused: Couldn't parse remap rule"),
    (["--verbose"], 2, "unknown argument '--verbose'"),
])
def test_a_bad_params_file_or_argument_is_one_line_and_non_zero(tmp_path, args, code, message):
    """rcl alone logs 'Failed to parse global arguments' without the file, and the node exited 0
    (also for a plain YAML without ros__parameters and a -p without :=VALUE); rcl's own log line
    of that is left (it comes before the node can say anything), the node's reason is one line."""
    bad, plain = tmp_path / "params.yaml", tmp_path / "plain.yaml"
    bad.write_text("crossi2p_calibration:\n  ros__parameters: [1\n")
    plain.write_text("image_topic: /x\n")
    args = [{"BAD": str(bad), "PLAIN": str(plain)}.get(a, a) for a in args]
    out = subprocess.run([str(NODE), *args], capture_output=True, text=True, timeout=60.0)
    assert out.returncode == code and message in out.stderr, out.stderr
    ours = [line for line in out.stderr.strip().splitlines() if not line.startswith("[ERROR]")]
    assert len(ours) == 1 and "Traceback" not in out.stderr, out.stderr


def test_a_parameter_the_node_does_not_have_is_named_with_the_closest_one(quick_card):
    context = rclpy.Context()
    rclpy.init(context=context)
    node = CalibrationNode(context=context, load_model_in_background=True,
                           parameter_overrides=[Parameter("model_card", value=str(quick_card)),
                                                Parameter("fusion.window_sizee", value=3),
                                                Parameter("no_such_thing", value=1)])
    try:
        assert node.unknown_parameters == {"fusion.window_sizee": "fusion.window_size", "no_such_thing": None}
        assert node.params.fusion.window_size == 60                    # the typo left the default
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_diagnostics_keep_coming_under_sim_time_without_a_clock(quick_card):
    """use_sim_time with no /clock (a bag replay that ended): the node's clock stands still, and a
    timer on it never fires; diagnostics run on a steady clock and go on."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = CalibrationNode(context=context, load_model_in_background=True,
                           parameter_overrides=[Parameter("model_card", value=str(quick_card)),
                                                Parameter("use_sim_time", value=True),
                                                Parameter("diagnostics_rate_hz", value=20.0)])
    io = rclpy.create_node("diagnostics_listener", context=context)
    got = []
    io.create_subscription(DiagnosticArray, "/diagnostics", got.append, QoSProfile(depth=50))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(io)
    try:
        assert spin_until(executor, lambda: len(got) >= 3, 10.0)
    finally:
        executor.shutdown()
        node.destroy_node()
        io.destroy_node()
        context.try_shutdown()


def test_a_params_file_for_another_node_is_warned_and_an_integer_for_a_float_gets_a_hint(tmp_path):
    """rcl applies a --params-file section of another node name to nothing, without a word: the
    node warns, naming the sections it found; rclpy's refusal of 1 for a float parameter says to
    write 1.0."""
    other = tmp_path / "other.yaml"
    other.write_text("other_node:\n  ros__parameters:\n    image_topic: /x\n")
    missing = tmp_path / "missing.yaml"
    out = subprocess.run([str(NODE), "--ros-args", "--params-file", str(other), "-p", f"model_card:={missing}"],
                         capture_output=True, text=True, timeout=60.0)
    assert out.returncode == 1
    assert f"--params-file {other}: no section for node 'crossi2p_calibration' (it has other_node)" in out.stderr
    out = subprocess.run([str(NODE), "--ros-args", "-p", "pairing.slop_s:=1"], capture_output=True, text=True,
                         timeout=60.0)
    assert out.returncode == 1 and "(write a decimal point: 1.0, not 1)" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    # a value outside a parameter's range: in the node's words, not rclpy's
    out = subprocess.run([str(NODE), "--ros-args", "-p", "queue_depth:=-1"], capture_output=True, text=True,
                         timeout=60.0)
    assert out.returncode == 1 and out.stderr.strip() == "calibration_node: error: parameter queue_depth: -1 outside " \
                                                          "[1, 1000]", out.stderr
    # ... a floating-point one too (rclpy words it without the period), and a choice by its name
    for setting, expected in (("pairing.slop_s:=5.0", "parameter pairing.slop_s: 5.0 outside [0.0, 1.0]"),
                              ("qos:=fast", "parameter qos: expected one of ['sensor_data', 'reliable'], got 'fast'")):
        out = subprocess.run([str(NODE), "--ros-args", "-p", setting], capture_output=True, text=True, timeout=60.0)
        assert out.returncode == 1 and out.stderr.strip() == f"calibration_node: error: {expected}", out.stderr
