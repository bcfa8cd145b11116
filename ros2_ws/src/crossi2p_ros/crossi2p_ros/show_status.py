"""Print what a running calibration node says on /diagnostics, and the transforms on /tf_static.

``python -m crossi2p_ros.show_status [--node crossi2p_calibration] [--watch]`` is ``ros2 topic echo
/diagnostics`` and ``ros2 topic echo /tf_static`` for the PyPI-wheel set-up, which has no ``ros2``
command: the node's status line (level, message), then every key and value it reports
(docs/troubleshooting.md reads them), then each /tf_static transform as ``parent -> child``,
``T_cam_lidar``'s inverse as tf carries it (translation in metres, quaternion x, y, z, w; REP 103).
Once, or again at every new status with ``--watch`` (Ctrl-C ends it).

Exit codes: 0 a status was printed; 1 no status of that node within ``--timeout-s`` (node not
running, another name, another ``ROS_DOMAIN_ID``); 2 a usage error; 130 / 143 on Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import sys
import time

from crossi2p.cli import ArgumentParser
from crossi2p.interrupt import exit_130_on_ctrl_c

PROG = "python -m crossi2p_ros.show_status"
LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}
"""diagnostic_msgs/DiagnosticStatus levels."""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--node", default="crossi2p_calibration",
                   help="the calibration node's name, its status's name before ': camera-LiDAR extrinsic' "
                        "(default %(default)s)")
    p.add_argument("--timeout-s", type=float, default=10.0,
                   help="seconds to wait for the node's first status (default %(default)s)")
    p.add_argument("--watch", action="store_true", help="print every new status until Ctrl-C")
    return p


def format_status(status, transforms: dict[tuple[str, str], object]) -> str:
    """The lines printed for one diagnostic_msgs/DiagnosticStatus and the /tf_static transforms
    seen so far (``{(parent, child): geometry_msgs/TransformStamped}``)."""
    level = LEVELS.get(int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else status.level,
                       str(status.level))
    lines = [f"{status.name}: {level}: {status.message}"]
    width = max((len(kv.key) for kv in status.values), default=0)
    lines += [f"  {kv.key:<{width}}  {kv.value}" for kv in status.values]
    for (parent, child), tf in sorted(transforms.items()):
        t, q = tf.transform.translation, tf.transform.rotation
        lines.append(f"/tf_static {parent} -> {child}: translation [{t.x:+.4f}, {t.y:+.4f}, {t.z:+.4f}] m, "
                     f"quaternion_xyzw [{q.x:+.5f}, {q.y:+.5f}, {q.z:+.5f}, {q.w:+.5f}]")
    return "\n".join(lines)


@exit_130_on_ctrl_c("show_status")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.timeout_s > 0:
        parser.error(f"--timeout-s: expected > 0 seconds, got {args.timeout_s}")
    import rclpy                                 # rclpy after --help and the checks (a second to import)
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    wanted = f"{args.node.strip('/').split('/')[-1]}: camera-LiDAR extrinsic"
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    node = rclpy.create_node("crossi2p_show_status", context=context)
    statuses: list = []
    transforms: dict[tuple[str, str], object] = {}

    def on_diagnostics(msg) -> None:
        statuses.extend(s for s in msg.status if s.name == wanted)

    def on_tf(msg) -> None:
        transforms.update({(tf.header.frame_id, tf.child_frame_id): tf for tf in msg.transforms})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    latched = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(TFMessage, "/tf_static", on_tf, latched)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + args.timeout_s
        while not statuses:
            if time.monotonic() > deadline:
                print(f"show_status: error: no /diagnostics status '{wanted}' within {args.timeout_s:g} s (is the "
                      f"node running, under that name and ROS_DOMAIN_ID? --node NAME)", file=sys.stderr)
                return 1
            executor.spin_once(timeout_sec=0.1)
        for _ in range(5):                        # the latched /tf_static comes within a few spins
            executor.spin_once(timeout_sec=0.05)
        print(format_status(statuses[-1], transforms), flush=True)
        while args.watch:
            seen = len(statuses)
            while len(statuses) == seen:
                executor.spin_once(timeout_sec=0.1)
            print(format_status(statuses[-1], transforms), flush=True)
        return 0
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
