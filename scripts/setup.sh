#!/usr/bin/env bash
# One-command set-up from nothing (Debian/Ubuntu, Python 3.11, no ROS install needed):
#   bash scripts/setup.sh
# Creates .venv/ with ROS 2 (PyPI wheels) + tf2_msgs + torch/onnxruntime/OpenCV and installs the
# two packages (ros2_ws/src/crossi2p_ros, training/) in editable mode. Idempotent: a second run
# only checks and takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
venv="$root/.venv"
stamp="$venv/.crossi2p-setup-stamp"
want=$(cat requirements.txt requirements-rosidl.txt requirements-nodeps.txt tools/tf2_msgs/msg/*.msg \
       ros2_ws/src/crossi2p_ros/setup.py training/pyproject.toml | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$venv/bin/python" -c "import crossi2p, crossi2p_training, tf2_msgs.msg" 2>/dev/null; then
  echo "setup: .venv is up to date ($venv)"
  exit 0
fi

step() { printf '\n[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step "virtual environment ($($PYTHON --version))"
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
log="$venv/setup.log"
: > "$log"
# pip's output goes to the log; on failure its tail is shown.
pip_install() {
  "$venv/bin/python" -m pip --disable-pip-version-check install "$@" >>"$log" 2>&1 \
    || { grep -v "is ignored" "$log" | tail -30 >&2; echo "setup: pip install $* failed (log: $log)" >&2; exit 1; }
}
pip_install --upgrade pip setuptools wheel

step "Python + ROS 2 wheels (requirements.txt)"
pip_install -r requirements.txt -r requirements-rosidl.txt
pip_install --no-deps -r requirements-nodeps.txt
"$venv/bin/python" -c "import torch, onnxruntime, cv2, rosbags, embreex" \
  || { echo "setup: core dependencies failed to import" >&2; exit 1; }

step "tf2_msgs generated with rosidl (tools/build_tf2_msgs.sh)"
command -v cmake >/dev/null && command -v make >/dev/null && command -v g++ >/dev/null \
  || { echo "setup: cmake, make and g++ are needed to build tf2_msgs (apt-get install cmake build-essential)" >&2; exit 1; }
tools/build_tf2_msgs.sh "$venv"

step "editable installs: crossi2p_ros (core + ROS glue) and crossi2p_training"
pip_install --no-deps --no-build-isolation -e ros2_ws/src/crossi2p_ros -e training

step "check: rclpy + tf2_msgs import"
"$venv/bin/python" -c "import rclpy, tf2_msgs.msg, sensor_msgs.msg, std_srvs.srv, crossi2p, crossi2p_training; print('ok')"
echo "$want" > "$stamp"
echo "setup: done. Commands are in $venv/bin (crossi2p-sim, crossi2p-train, calibration_node, ...)"
