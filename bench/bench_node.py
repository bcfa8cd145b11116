"""The calibration node under a live sensor load: pair throughput, end-to-end latency, CPU, memory.

    .venv/bin/python bench/bench_node.py                 # 2000 LiDAR messages: ~3.5 min of load
    .venv/bin/python bench/bench_node.py --pairs 150 --out out/bench_node_short

The real node (the ``calibration_node`` console script: rclpy over Fast DDS on loopback,
onnxruntime with the model card's ONNX graph) runs as a child process, so its CPU and memory are
its own. This process plays the sensor drivers: Image + CameraInfo at the camera rate (15 Hz) and
PointCloud2 at the LiDAR rate (10 Hz), each stamped with the wall-clock time it is due and
published at that time. The frames come from a small pool simulated once before the load starts
(``small`` preset, fixed seed) and cycled, so the simulator's cost is not in the figures.

Measured over ``--pairs`` LiDAR messages, after ``--warmup-s`` seconds of the same load:
- per second: LiDAR messages published, clouds received, pairs received / used / dropped while the
  worker was busy / invalid, from the node's /diagnostics counters;
- end-to-end latency: LiDAR stamp -> receipt of ``~/pose`` here (the pose carries the LiDAR stamp of
  the newest pair in the estimate), and -> receipt of the /tf_static message carrying the same
  estimate (the node publishes before convergence: ``publish_before_convergence`` is set);
- the node process's CPU (%, 100 = one core) and resident memory, sampled every second from /proc,
  and the memory slope (MB per 1000 LiDAR messages, least squares over the second half).

By default the per-frame acceptance thresholds are 0 (``runtime.min_confidence``,
``runtime.min_correspondences``, ``fusion.min_confidence``) so that every pair goes through the
whole path (graph, fusion, publication) whatever the model's accuracy; ``--node-thresholds`` keeps
the node's own. Writes ``summary.json`` (or ``--json``), ``bench_node.png`` and ``node.log`` (the
node's output) to ``--out``. Figures, not assertions: they depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import array
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossi2p.geometry import invert_transform, transform_from_tq

REPO = Path(__file__).resolve().parents[1]
NODE_NAME = "crossi2p_calibration"
COUNTERS = ("images_in", "clouds_in", "bad_images", "bad_clouds", "pairs_in", "pairs_used",
            "pairs_dropped_busy", "frames_invalid", "frames_fused", "frames_gated_out", "lidar_unmatched",
            "time_resets", "tf_published", "drift_events")
ACCEPT_ALL = {"runtime.min_confidence": "0.0", "runtime.min_correspondences": "0", "fusion.min_confidence": "0.0"}


class BenchError(Exception):
    """A one-line reason the bench cannot run."""


# ------------------------------------------------------------------------------------ /proc
def _proc_cpu_s(pid: int | str) -> float:
    """User + system CPU seconds of a process (all its threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15: utime, stime


def _proc_rss_mb(pid: int | str) -> float:
    """Resident memory (VmRSS) of a process in MB (2**20 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    total = sum(v)
    return (total - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


class ResourceSampler(threading.Thread):
    """Samples the node's and this process's CPU % and RSS once a second (a daemon thread)."""

    def __init__(self, node_pid: int, lidar_count, period_s: float = 1.0):
        super().__init__(name="resource_sampler", daemon=True)
        self.node_pid, self.lidar_count, self.period_s = node_pid, lidar_count, period_s
        self.samples: list[dict] = []
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5.0)

    def run(self) -> None:
        t_prev = time.time()
        node_prev, self_prev, (busy_prev, total_prev) = _proc_cpu_s(self.node_pid), _proc_cpu_s("self"), _machine_cpu_s()
        next_t = t_prev + self.period_s
        while not self._stop_event.wait(max(0.0, next_t - time.time())):
            next_t += self.period_s
            try:
                t, node_cpu, self_cpu, (busy, total) = time.time(), _proc_cpu_s(self.node_pid), _proc_cpu_s("self"), _machine_cpu_s()
                node_rss = _proc_rss_mb(self.node_pid)
            except (FileNotFoundError, ProcessLookupError):  # the node exited
                return
            dt = t - t_prev
            self.samples.append({
                "t": t, "lidar_published": self.lidar_count(),
                "node_cpu_pct": 100.0 * (node_cpu - node_prev) / dt, "node_rss_mb": node_rss,
                "bench_cpu_pct": 100.0 * (self_cpu - self_prev) / dt, "bench_rss_mb": _proc_rss_mb("self"),
                "machine_busy_pct": 100.0 * (busy - busy_prev) / max(total - total_prev, 1e-9),
            })
            t_prev, node_prev, self_prev, busy_prev, total_prev = t, node_cpu, self_cpu, busy, total


# ------------------------------------------------------------------------------------ the load
def simulate_pool(preset: str, seed: int, pool: int, camera_offset_s: float = 0.0):
    """``pool`` LiDAR sweeps and the camera frames over the same span, cycled with period
    ``pool / lidar rate`` (the pool is one stretch of a simulated drive, so a cycled pair is a real
    pair). Camera stamps are shifted by ``camera_offset_s``. Returns (camera, [(offset_s, points)],
    [(offset_s, image)], period_s)."""
    from crossi2p_training.sim import SimConfig, simulate_drive

    config = SimConfig.preset(preset)
    drive = simulate_drive(config, seed=seed, frames=pool + 1, progress=True)
    period_s = pool / config.lidar.rate_hz
    t0 = drive.lidar_sweeps[0][0]
    sweeps = [(t - t0, pts[:, :4]) for t, pts in drive.lidar_sweeps[:pool]]
    frames = [(t - t0 + camera_offset_s, img) for t, img in drive.camera_frames if t - t0 < period_s - 1e-6]
    return drive.camera, sweeps, frames, period_s


def schedule(sweeps, frames, period_s: float, lidar_messages: int, start_s: float) -> list[tuple[float, int, int]]:
    """Due times (wall clock) of ``lidar_messages`` LiDAR messages and of the camera frames over
    the same span plus one frame after the last sweep (it makes the last pair final):
    ``[(due_s, kind (0 camera, 1 LiDAR), pool index)]`` in time order."""
    events = [(start_s + sweeps[k % len(sweeps)][0] + (k // len(sweeps)) * period_s, 1, k % len(sweeps))
              for k in range(lidar_messages)]
    last = events[-1][0]
    j = 0
    while True:
        due = start_s + frames[j % len(frames)][0] + (j // len(frames)) * period_s
        events.append((due, 0, j % len(frames)))
        if due >= last:
            break
        j += 1
    return sorted(events, key=lambda e: (e[0], e[1]))


def build_messages(camera, sweeps, frames):
    """Pre-built messages (only the stamps change while publishing)."""
    from sensor_msgs.msg import CameraInfo, Image

    from crossi2p.image_encoding import rgb_to_image_fields
    from crossi2p.pointcloud2 import rclpy_pointcloud2

    images = []
    for _, rgb in frames:
        f = rgb_to_image_fields(rgb)
        msg = Image(height=f["height"], width=f["width"], encoding="rgb8", is_bigendian=0, step=f["step"])
        msg.data = array.array("B", rgb.tobytes())
        msg.header.frame_id = "camera_optical"
        images.append(msg)
    info = CameraInfo(width=camera.width, height=camera.height,
                      distortion_model=camera.distortion_model if camera.distortion.size else "plumb_bob")
    info.k = [float(v) for v in camera.K.reshape(-1)]
    info.d = [float(v) for v in camera.distortion]
    info.header.frame_id = "camera_optical"
    clouds = [rclpy_pointcloud2(pts, 0.0, "lidar") for _, pts in sweeps]
    return images, info, clouds


# ------------------------------------------------------------------------------------ the node
def node_command(args) -> list[str]:
    exe = Path(sys.executable).parent / "calibration_node"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "crossi2p_ros.calibration_node"]
    params = {"model_card": str(Path(args.model).resolve()), "runtime.execution_provider": args.provider,
              "qos": args.qos, "publish_before_convergence": "true"}
    if not args.node_thresholds:
        params.update(ACCEPT_ALL)
    for p in args.param:
        name, _, value = p.partition(":=")
        params[name] = value
    cmd += ["--ros-args"]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd


def stop_node(proc: subprocess.Popen) -> None:
    """SIGINT (the node's clean shutdown), then SIGTERM, then SIGKILL — this child only."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class Listener:
    """What the node publishes, with the wall-clock time each message arrived here."""

    def __init__(self, node, overlay: bool):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from tf2_msgs.msg import TFMessage

        self.poses: list[tuple[float, float, np.ndarray]] = []  # (receipt, stamp, T_cam_lidar translation)
        self.tfs: list[tuple[float, np.ndarray]] = []  # (receipt, T_cam_lidar translation)
        self.diagnostics: list[tuple[float, float, dict]] = []  # (receipt, stamp, key -> value)
        self.overlays = 0
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(PoseWithCovarianceStamped, f"/{NODE_NAME}/pose", self._on_pose, 50)
        node.create_subscription(TFMessage, "/tf_static", self._on_tf, latched)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        if overlay:
            node.create_subscription(Image, f"/{NODE_NAME}/overlay", self._on_overlay, 1)

    def _on_pose(self, msg) -> None:
        t = time.time()
        p = msg.pose.pose.position
        self.poses.append((t, msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, np.array([p.x, p.y, p.z])))

    def _on_tf(self, msg) -> None:
        t = time.time()
        for tf in msg.transforms:
            if tf.header.frame_id == "lidar" and tf.child_frame_id == "camera_optical":
                tr, r = tf.transform.translation, tf.transform.rotation
                T_lidar_cam = transform_from_tq([tr.x, tr.y, tr.z], [r.x, r.y, r.z, r.w])
                self.tfs.append((t, invert_transform(T_lidar_cam)[:3, 3]))

    def _on_diagnostics(self, msg) -> None:
        t = time.time()
        for st in msg.status:
            if st.name.startswith(NODE_NAME):
                self.diagnostics.append((t, msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec,
                                         {kv.key: kv.value for kv in st.values}))

    def _on_overlay(self, msg) -> None:
        self.overlays += 1

    def last(self) -> dict:
        return self.diagnostics[-1][2] if self.diagnostics else {}


# ------------------------------------------------------------------------------------ figures
def _stats_ms(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    return {"n": int(v.size), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max()), "mean": float(v.mean())}


def tf_latencies_ms(poses, tfs, window: tuple[float, float]) -> list[float]:
    """LiDAR stamp -> receipt of each tf message whose estimate was first posed inside ``window``.

    ``poses``: [(receipt_s, stamp_s, (3,) translation)] in publication order; ``tfs``:
    [(receipt_s, (3,) translation of T_cam_lidar)]. The node publishes tf right after the pose of an
    estimate that moved, so a tf message belongs to the first pose of the newest run of poses with
    its value stamped before its receipt (the estimate can stay the same over several poses, and
    the cycled pool can bring a value back later)."""
    if not poses:
        return []
    stamps = np.array([s for _, s, _ in poses])
    translations = np.array([p for _, _, p in poses])
    out = []
    for r, trans in tfs:
        same = np.abs(translations - trans).max(axis=1) < 1e-6
        match = np.flatnonzero(same & (stamps <= r))
        if not match.size:
            continue
        i = match[-1]
        while i > 0 and same[i - 1]:
            i -= 1
        if window[0] <= stamps[i] < window[1]:
            out.append(float(1e3 * (r - stamps[i])))
    return out


def compute_figures(listener: Listener, samples: list[dict], dues: np.ndarray, camera_dues: np.ndarray,
                    window: tuple[float, float], lags_ms: list[float]) -> dict:
    """Summary figures over the measurement window ``[start, end)`` (wall-clock seconds)."""
    t0, t1 = window
    # Pair counters: between the first and the last diagnostics snapshot inside the window.
    inside = [(stamp, values) for _, stamp, values in listener.diagnostics if t0 <= stamp <= t1]
    rates: dict[str, float] = {}
    if len(inside) >= 2:
        (a, first), (b, last) = inside[0], inside[-1]
        span = b - a
        rates["lidar_published"] = float(np.sum((dues > a) & (dues <= b))) / span
        rates["images_published"] = float(np.sum((camera_dues > a) & (camera_dues <= b))) / span
        for key in COUNTERS:
            rates[key] = (int(last.get(key, 0)) - int(first.get(key, 0))) / span
        rates["span_s"] = span
    compute = [float(v["latency_ms"]) for s, v in inside if float(v.get("latency_ms", 0)) > 0]
    # End-to-end latency: LiDAR stamp -> receipt here.
    pose_lat = [1e3 * (r - s) for r, s, _ in listener.poses if t0 <= s < t1]
    tf_lat = tf_latencies_ms(listener.poses, listener.tfs, window)
    # Resources.
    win = [s for s in samples if t0 <= s["t"] < t1]
    res: dict = {}
    if win:
        cpu = np.array([s["node_cpu_pct"] for s in win])
        rss = np.array([s["node_rss_mb"] for s in win])
        res = {"node_cpu_pct_mean": float(cpu.mean()), "node_cpu_pct_p90": float(np.percentile(cpu, 90)),
               "node_cpu_pct_max": float(cpu.max()), "node_rss_mb_start": float(rss[0]),
               "node_rss_mb_end": float(rss[-1]), "node_rss_mb_max": float(rss.max()),
               "bench_cpu_pct_mean": float(np.mean([s["bench_cpu_pct"] for s in win])),
               "machine_busy_pct_mean": float(np.mean([s["machine_busy_pct"] for s in win])),
               "samples": len(win)}
        half = [s for s in win if s["t"] >= (t0 + t1) / 2]
        if len(half) >= 3 and len({s["lidar_published"] for s in half}) >= 2:
            x = np.array([s["lidar_published"] for s in half], float)
            y = np.array([s["node_rss_mb"] for s in half])
            slope, intercept = np.polyfit(x, y, 1)
            res["rss_slope_mb_per_1000_pairs"] = float(1000.0 * slope)
            res["rss_fit"] = {"slope_mb_per_msg": float(slope), "intercept_mb": float(intercept),
                              "from_msg": float(x[0]), "to_msg": float(x[-1])}
    return {"rates_per_s": rates, "latency_pose_ms": _stats_ms(pose_lat), "latency_tf_ms": _stats_ms(tf_lat),
            "node_compute_ms": _stats_ms(compute), "publish_lag_ms": _stats_ms(lags_ms), "resources": res,
            "_pose_latencies_ms": pose_lat, "_tf_latencies_ms": tf_lat}


def summary_table(fig: dict) -> list[str]:
    r, res = fig["rates_per_s"], fig["resources"]

    def lat(d):
        return "no messages" if not d.get("n") else \
            f"{d['median']:.0f} / {d['p90']:.0f} / {d['p99']:.0f} / {d['max']:.0f} ms ({d['n']} msgs)"

    def rate(key):
        return f"{r[key]:.2f}" if key in r else "n/a"

    used_frac = f" ({100 * r['pairs_used'] / r['pairs_in']:.0f} % of pairs)" if r.get("pairs_in") else ""
    rows = [
        ("LiDAR messages published / s", rate("lidar_published")),
        ("clouds received by the node / s", rate("clouds_in")),
        ("images published / s", rate("images_published")),
        ("images received by the node / s", rate("images_in")),
        ("pairs received / s", rate("pairs_in")),
        ("pairs used (graph run) / s", rate("pairs_used") + used_frac),
        ("pairs dropped, worker busy / s", rate("pairs_dropped_busy")),
        ("frames invalid / s", rate("frames_invalid")),
        ("LiDAR sweeps left unpaired / s", rate("lidar_unmatched")),
        ("latency LiDAR stamp -> ~/pose (median / p90 / p99 / max)", lat(fig["latency_pose_ms"])),
        ("latency LiDAR stamp -> /tf_static, sent when the estimate moved (median / p90 / p99 / max)",
         lat(fig["latency_tf_ms"])),
        ("node compute per frame, diagnostics latency_ms (median / p90 / p99 / max)", lat(fig["node_compute_ms"])),
        ("node CPU % (100 = one core; mean / p90 / max)",
         f"{res['node_cpu_pct_mean']:.0f} / {res['node_cpu_pct_p90']:.0f} / {res['node_cpu_pct_max']:.0f}" if res else "n/a"),
        ("node RSS MB (start / end / max)",
         f"{res['node_rss_mb_start']:.0f} / {res['node_rss_mb_end']:.0f} / {res['node_rss_mb_max']:.0f}" if res else "n/a"),
        ("node RSS slope over the second half", f"{res['rss_slope_mb_per_1000_pairs']:+.2f} MB per 1000 LiDAR msgs"
         if "rss_slope_mb_per_1000_pairs" in res else "n/a (too few samples)"),
        ("publisher (this process) CPU % mean; publish lag behind the stamp (median / p99 / max)",
         (f"{res['bench_cpu_pct_mean']:.0f}; " if res else "n/a; ") + (
             f"{fig['publish_lag_ms']['median']:.1f} / {fig['publish_lag_ms']['p99']:.1f} / "
             f"{fig['publish_lag_ms']['max']:.1f} ms" if fig["publish_lag_ms"]["n"] else "n/a")),
        ("machine busy, all cores (%)", f"{res['machine_busy_pct_mean']:.0f}" if res else "n/a"),
    ]
    return ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]


def plot(path: Path, samples: list[dict], listener: Listener, fig: dict, window: tuple[float, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0, t1 = window
    f, ax = plt.subplots(2, 2, figsize=(13, 8))
    t = np.array([s["t"] - t0 for s in samples])
    for a in ax.flat[:3]:
        a.axvspan(min(t.min(), 0) if t.size else 0, 0, color="0.9", label="warm-up")
        a.axvline(t1 - t0, color="0.6", ls=":")
        a.set_xlabel("time since measurement start (s)")
    ax[0, 0].plot(t, [s["node_rss_mb"] for s in samples], label="node RSS")
    fit = fig["resources"].get("rss_fit")
    if fit:
        half = [s for s in samples if (t0 + t1) / 2 <= s["t"] < t1]
        ax[0, 0].plot([s["t"] - t0 for s in half],
                      [fit["intercept_mb"] + fit["slope_mb_per_msg"] * s["lidar_published"] for s in half], "r--",
                      label=f"fit: {fig['resources']['rss_slope_mb_per_1000_pairs']:+.2f} MB / 1000 msgs")
    ax[0, 0].set_ylabel("MB")
    ax[0, 0].set_title("node resident memory")
    ax[0, 0].legend()
    ax[0, 1].plot(t, [s["node_cpu_pct"] for s in samples], label="node")
    ax[0, 1].plot(t, [s["bench_cpu_pct"] for s in samples], label="publisher (bench)", alpha=0.7)
    ncpu = os.cpu_count() or 1
    ax[0, 1].plot(t, [s["machine_busy_pct"] * ncpu for s in samples], label="machine, all processes", alpha=0.5)
    ax[0, 1].set_ylabel("CPU % (100 = one core)")
    ax[0, 1].set_title("CPU, sampled every second")
    ax[0, 1].legend()
    d = listener.diagnostics
    if len(d) >= 2:
        td = np.array([s for _, s, _ in d])
        for key, label in (("pairs_in", "received"), ("pairs_used", "used"), ("pairs_dropped_busy", "dropped (busy)")):
            c = np.array([int(v.get(key, 0)) for _, _, v in d])
            ax[1, 0].step(td[1:] - t0, np.diff(c) / np.maximum(np.diff(td), 1e-3), where="pre", label=label)
    ax[1, 0].set_ylabel("pairs / s")
    ax[1, 0].set_title("pairs per second (diagnostics)")
    ax[1, 0].legend()
    pose, tf = fig["_pose_latencies_ms"], fig["_tf_latencies_ms"]
    if pose or tf:
        bins = np.linspace(0, max(pose + tf) * 1.05, 40)
        if pose:
            ax[1, 1].hist(pose, bins, alpha=0.7, label=f"~/pose (median {np.median(pose):.0f} ms)")
        if tf:
            ax[1, 1].hist(tf, bins, alpha=0.5, label=f"/tf_static (median {np.median(tf):.0f} ms)")
        ax[1, 1].legend()
    ax[1, 1].set_xlabel("LiDAR stamp -> receipt (ms)")
    ax[1, 1].set_ylabel("messages")
    ax[1, 1].set_title("end-to-end latency")
    f.suptitle(title, fontsize=10)
    f.tight_layout()
    f.savefig(path, dpi=100)
    plt.close(f)


# ------------------------------------------------------------------------------------ main
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2000, help="LiDAR messages measured (10 Hz: 2000 = 200 s)")
    ap.add_argument("--warmup-s", type=float, default=5.0, help="seconds of load before the measurement")
    ap.add_argument("--model", default=str(REPO / "models" / "crossi2p_cpu.yaml"), help="model card YAML")
    ap.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "auto"], help="runtime.execution_provider")
    ap.add_argument("--qos", default="sensor_data", choices=["sensor_data", "reliable"],
                    help="QoS of the sensor topics (publishers here and the node's subscriptions)")
    ap.add_argument("--node-thresholds", action="store_true",
                    help="keep the node's per-frame acceptance thresholds (default: 0, every pair goes all the way)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="extra node parameter (repeatable), e.g. runtime.intra_op_threads:=1")
    ap.add_argument("--overlay", action="store_true", help="subscribe to ~/overlay (the node then draws it, 1 Hz)")
    ap.add_argument("--sim-preset", default="small", help="simulator preset of the frame pool")
    ap.add_argument("--seed", type=int, default=7, help="simulator seed of the frame pool")
    ap.add_argument("--pool", type=int, default=20, help="LiDAR sweeps in the cycled pool (camera frames follow)")
    ap.add_argument("--camera-offset-ms", type=float, default=0.0,
                    help="shift of the camera stamps against the LiDAR's (0: every 3rd image is due with a sweep)")
    ap.add_argument("--startup-timeout-s", type=float, default=600.0,
                    help="wait this long for the node (the model loads in the background; a large graph takes a while on busy cores)")
    ap.add_argument("--out", default="out/bench_node", help="folder for summary.json, bench_node.png, node.log")
    ap.add_argument("--json", default=None, help="summary JSON path (default: OUT/summary.json)")
    args = ap.parse_args(argv)
    if args.pairs < 10:
        raise BenchError(f"--pairs must be >= 10, got {args.pairs}")
    if args.pool < 2:
        raise BenchError(f"--pool must be >= 2, got {args.pool}")
    if args.warmup_s < 0:
        raise BenchError(f"--warmup-s must be >= 0, got {args.warmup_s}")
    if abs(args.camera_offset_ms) > 500:
        raise BenchError(f"--camera-offset-ms must be within +-500, got {args.camera_offset_ms}")
    if not Path(args.model).is_file():
        raise BenchError(f"model card not found: {args.model}")
    bad = [p for p in args.param if ":=" not in p]
    if bad:
        raise BenchError(f"--param takes NAME:=VALUE, got {bad[0]!r}")
    return args


def run(args) -> dict:
    os.environ.setdefault("ROS_DOMAIN_ID", str(200 + os.getpid() % 30))  # apart from the tests' 100-199
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from crossi2p.pointcloud2 import stamp_to_sec_nanosec

    # 1. The frame pool (simulated before any timing).
    camera, sweeps, frames, period_s = simulate_pool(args.sim_preset, args.seed, args.pool, 1e-3 * args.camera_offset_ms)
    images, info, clouds = build_messages(camera, sweeps, frames)
    points_per_sweep = float(np.mean([len(p) for _, p in sweeps]))

    # 2. The node (child process) and this process's publisher / listener node.
    log_path = out / "node.log"
    cmd = node_command(args)
    log = open(log_path, "w")
    spawn_s = time.time()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    context = rclpy.Context()
    rclpy.init(context=context)
    io = rclpy.create_node("bench_sensor_player", context=context)
    qos = qos_profile_sensor_data if args.qos == "sensor_data" else QoSProfile(depth=5)
    pub_image = io.create_publisher(Image, "/camera/image_raw", qos)
    pub_info = io.create_publisher(CameraInfo, "/camera/camera_info", qos)
    pub_points = io.create_publisher(PointCloud2, "/lidar/points", qos)
    listener = Listener(io, args.overlay)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(io)
    spinner = threading.Thread(target=executor.spin, name="listener", daemon=True)
    spinner.start()
    published = {"lidar": 0}
    sampler = None
    try:
        print(f"bench_node: waiting for the node (pid {proc.pid}; the model loads in the background)",
              flush=True)
        deadline = spawn_s + args.startup_timeout_s
        while not (listener.diagnostics and pub_points.get_subscription_count() and pub_image.get_subscription_count()
                   and pub_info.get_subscription_count()):
            if proc.poll() is not None:
                raise BenchError(f"the node exited with code {proc.returncode}: {_log_tail(log_path)}")
            if time.time() > deadline:
                raise BenchError(f"the node was not ready after {args.startup_timeout_s:.0f} s: {_log_tail(log_path)}")
            time.sleep(0.2)
        startup_s = time.time() - spawn_s
        sampler = ResourceSampler(proc.pid, lambda: published["lidar"])
        sampler.start()

        # 3. The load: sleep until each message is due, stamp it with its due time, publish.
        lidar_hz = 1.0 / (sweeps[1][0] - sweeps[0][0])
        warmup_msgs = int(round(args.warmup_s * lidar_hz))
        start_s = time.time() + 1.0
        events = schedule(sweeps, frames, period_s, warmup_msgs + args.pairs, start_s)
        dues = np.array([due for due, kind, _ in events if kind == 1])
        camera_dues = np.array([due for due, kind, _ in events if kind == 0])
        window = (float(dues[warmup_msgs]), float(dues[-1] + 1.0 / lidar_hz))
        lags_ms: list[float] = []
        bar = tqdm(total=len(dues), desc="LiDAR messages", unit="msg")
        last_postfix = 0.0
        for due, kind, i in events:
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            sec, nanosec = stamp_to_sec_nanosec(due)
            if kind == 0:
                info.header.stamp.sec, info.header.stamp.nanosec = sec, nanosec
                pub_info.publish(info)
                images[i].header.stamp.sec, images[i].header.stamp.nanosec = sec, nanosec
                pub_image.publish(images[i])
            else:
                clouds[i].header.stamp.sec, clouds[i].header.stamp.nanosec = sec, nanosec
                pub_points.publish(clouds[i])
                published["lidar"] += 1
                bar.update(1)
            if due >= window[0]:
                lags_ms.append(1e3 * (time.time() - due))
            if time.time() - last_postfix > 1.0:
                last_postfix = time.time()
                d = listener.last()
                rss = sampler.samples[-1]["node_rss_mb"] if sampler.samples else float("nan")
                bar.set_postfix(phase="warm-up" if due < window[0] else "measuring", used=d.get("pairs_used"),
                                dropped=d.get("pairs_dropped_busy"), rss_mb=f"{rss:.0f}")
                if proc.poll() is not None:
                    raise BenchError(f"the node exited with code {proc.returncode}: {_log_tail(log_path)}")
        bar.close()

        # 4. Let the worker finish its last pair and a diagnostics snapshot count it.
        end = time.time() + 30.0
        while time.time() < end:
            d = listener.diagnostics[-1] if listener.diagnostics else None
            done = int(d[2].get("frames_done", d[2].get("pairs_used", 0))) if d else 0  # frames_done: published too
            if d and d[1] > window[1] + 0.5 and done + int(d[2].get("pairs_dropped_busy", 0)) >= int(d[2].get("pairs_in", 0)):
                break
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        if sampler is not None:
            sampler.stop()
        stop_node(proc)
        log.close()
        executor.shutdown(timeout_sec=5.0)
        io.destroy_node()
        context.try_shutdown()

    fig = compute_figures(listener, sampler.samples, dues, camera_dues, window, lags_ms)
    final = listener.last()
    setup = {
        "pairs": args.pairs, "warmup_s": args.warmup_s, "lidar_hz": lidar_hz,
        "camera_hz": 1.0 / (frames[1][0] - frames[0][0]), "qos": args.qos, "provider": args.provider,
        "node_thresholds": "node defaults" if args.node_thresholds else "0 (every pair goes all the way)",
        "params": args.param, "overlay_subscribed": args.overlay, "sim_preset": args.sim_preset, "seed": args.seed,
        "camera_offset_ms": args.camera_offset_ms,
        "pool_lidar": len(sweeps), "pool_camera": len(frames), "image_wh": [camera.width, camera.height],
        "points_per_sweep_mean": points_per_sweep, "model_card": str(args.model),
        "execution_providers": final.get("execution_providers", ""), "node_command": cmd,
        "cpu_count": os.cpu_count(), "node_startup_s": startup_s, "loadavg_end": open("/proc/loadavg").read().split()[:3],
    }
    return {"setup": setup, "figures": {k: v for k, v in fig.items() if not k.startswith("_")},
            "final_counters": {k: final.get(k) for k in COUNTERS + ("state", "latency_ms")},
            "lidar_published_total": published["lidar"], "overlays_received": listener.overlays,
            "series": {"samples": sampler.samples, "pose_latency_ms": fig["_pose_latencies_ms"],
                       "tf_latency_ms": fig["_tf_latencies_ms"],
                       "poses": [[r, s, *map(float, p)] for r, s, p in listener.poses],  # receipt, stamp, x, y, z
                       "tfs": [[r, *map(float, p)] for r, p in listener.tfs],  # receipt, x, y, z (T_cam_lidar)
                       "diagnostics": [{"stamp": s, **{k: v.get(k) for k in COUNTERS}} for _, s, v in listener.diagnostics]},
            "_fig": fig, "_listener": listener, "_window": window}


def main(argv=None) -> None:
    try:
        args = parse_args(argv)
        result = run(args)
    except BenchError as exc:
        print(f"bench_node: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bench_node: interrupted", file=sys.stderr)
        sys.exit(130)
    out = Path(args.out)
    fig, listener, window = result.pop("_fig"), result.pop("_listener"), result.pop("_window")
    s = result["setup"]
    title = (f"calibration node, {args.pairs} LiDAR msgs at {s['lidar_hz']:.0f} Hz + camera {s['camera_hz']:.0f} Hz "
             f"({s['sim_preset']} {s['image_wh'][0]}x{s['image_wh'][1]}, {s['points_per_sweep_mean']:.0f} pts), "
             f"{s['execution_providers']}, {s['cpu_count']} cores")
    png = out / "bench_node.png"
    plot(png, result["series"]["samples"], listener, fig, window, title)
    json_path = Path(args.json) if args.json else out / "summary.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1))
    print(title)
    print(f"node ready {s['node_startup_s']:.0f} s after start; {result['lidar_published_total']} LiDAR messages "
          f"published ({s['warmup_s']:.0f} s warm-up excluded); acceptance thresholds: {s['node_thresholds']}; "
          f"final state {result['final_counters'].get('state')}")
    print("\n".join(summary_table(fig)))
    print(f"wrote {json_path}, {png}, {out / 'node.log'}")


if __name__ == "__main__":
    main()
