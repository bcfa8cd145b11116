"""Ask a running calibration node to save its calibration: its ``~/save_calibration`` service.

``python -m crossi2p_ros.save_calibration [--node /crossi2p_calibration]`` is ``ros2 service call
/crossi2p_calibration/save_calibration std_srvs/srv/Trigger`` for the PyPI-wheel set-up, which has no
``ros2`` command. The node writes the estimate it publishes (and, with ``rig_calibration``, every
rig camera's) to its ``save_path`` as a calibration YAML and URDF snippet; this prints the node's
answer.

Exit codes: 0 saved; 3 the node has nothing that passed its checks yet (nothing saved; its reason
printed); 1 no such service within ``--timeout-s`` (node not running, another name, another
``ROS_DOMAIN_ID``) or the call failed; 2 a usage error; 130 / 143 on Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import sys

from crossi2p.cli import ArgumentParser
from crossi2p.interrupt import exit_130_on_ctrl_c

PROG = "python -m crossi2p_ros.save_calibration"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--node", default="/crossi2p_calibration",
                   help="the calibration node's full name (its node_name, with namespace; default %(default)s)")
    p.add_argument("--timeout-s", type=float, default=10.0,
                   help="seconds to wait for the service to appear and for the answer (default %(default)s)")
    return p


@exit_130_on_ctrl_c("save_calibration", "interrupted (Ctrl-C); the node may still save")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.timeout_s > 0:
        parser.error(f"--timeout-s: expected > 0 seconds, got {args.timeout_s}")   # exit 2, one line
    import rclpy                                 # rclpy after --help and the checks (a second to import)
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import Trigger

    service = args.node.rstrip("/") + "/save_calibration"
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    node = rclpy.create_node("crossi2p_save_calibration", context=context)
    try:
        client = node.create_client(Trigger, service)
        if not client.wait_for_service(timeout_sec=args.timeout_s):
            print(f"save_calibration: error: no service {service} within {args.timeout_s:g} s (is the node running, "
                  f"under that name and ROS_DOMAIN_ID? --node NAME)", file=sys.stderr)
            return 1
        future = client.call_async(Trigger.Request())
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=args.timeout_s)
        if not future.done() or future.result() is None:
            print(f"save_calibration: error: {service} did not answer within {args.timeout_s:g} s", file=sys.stderr)
            return 1
        response = future.result()
        if response.success:
            print(response.message)
        else:
            print(f"save_calibration: {response.message}", file=sys.stderr)
        return 0 if response.success else 3
    finally:
        node.destroy_node()
        context.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
