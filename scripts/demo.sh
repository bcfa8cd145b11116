#!/usr/bin/env bash
# The main job. With no arguments: calibrate the committed real recording; --sim: a simulated drive.
#   bash scripts/demo.sh                      # real sensors (TRI DGP scene_02, data/real/tri_dgp_scene_02)
#   bash scripts/demo.sh --sim [SEED] [FRAMES]
# Real: scripts/real_demo.py runs crossi2p-calibrate on each camera of the committed rosbag2 (3 LiDAR
#   sweeps, 6 cameras, ground truth on /tf_static) from a committed prior 3 deg / 0.2 m off, and prints
#   the prior's error, what the refinement searched, whether crossi2p-calibrate accepted it (exit 0) or
#   refused it (exit 3, with the reason: then no calibration is written; the demo still exits 0) and
#   where the report is (out/demo_real/report.md).
# --sim: 1. crossi2p-sim writes a deterministic simulated drive (ground truth on /tf_static) as a rosbag2;
# 2. crossi2p-evaluate-bag --mode live plays it over DDS with /clock into the real calibration node
#    (use_sim_time), records what the node publishes (per-frame estimates, ~/pose, /tf_static,
#    /diagnostics), prints the estimated T_cam_lidar, its error against the ground truth and where
#    the report is (out/demo/report/report.md). Node pacing (the default) makes the run
#    deterministic: each message waits until the node has handled the previous one, so the same
#    SEED and FRAMES give the same figures, equal to `--mode offline`'s.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then   # the header above, without its '# '
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ "${1:-}" != "--sim" ]]; then
  if [[ $# -gt 0 ]]; then   # a usage error: exit 2, as the product's commands
    echo "demo.sh: error: unknown argument '$1' (usage: bash scripts/demo.sh [--sim [SEED] [FRAMES]])" >&2
    exit 2
  fi
  .venv/bin/python scripts/real_demo.py --out out/demo_real
  echo "The simulated drive through the live node: bash scripts/demo.sh --sim [SEED] [FRAMES]"
  exit 0
fi
shift
seed=${1:-7}
frames=${2:-40}
for value in "$seed" "$frames"; do   # checked before the previous bag is removed
  if ! [[ "$value" =~ ^[0-9]+$ ]]; then
    echo "demo.sh: error: --sim $seed $frames: expected SEED and FRAMES as whole numbers (usage: bash scripts/demo.sh [--sim [SEED] [FRAMES]])" >&2
    exit 2
  fi
done
out=out/demo
# Keep the demo's DDS traffic on this machine (its node publishes /tf_static).
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
rm -rf "$out/bag"
mkdir -p "$out"
.venv/bin/crossi2p-sim --seed "$seed" --frames "$frames" --preset small --bag "$out/bag"
.venv/bin/crossi2p-evaluate-bag "$out/bag" --model models/crossi2p_cpu.yaml --mode live --pacing node \
  --json "$out/summary.json" --report "$out/report"
