#!/usr/bin/env bash
# The main job on an embedded default: calibrate a generated sample drive, live, with the shipped model.
#   bash scripts/demo.sh [SEED] [FRAMES]
# 1. crossi2p-sim writes a deterministic simulated drive (ground truth on /tf_static) as a rosbag2;
# 2. crossi2p-evaluate-bag --mode live plays it over DDS with /clock into the real calibration node
#    (use_sim_time), records what the node publishes (per-frame estimates, ~/pose, /tf_static,
#    /diagnostics), prints the estimated T_cam_lidar, its error against the ground truth and where
#    the report is (out/demo/report/report.md). Node pacing (the default) makes the run
#    deterministic: each message waits until the node has handled the previous one, so the same
#    SEED and FRAMES give the same figures, equal to `--mode offline`'s.
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-7}
frames=${2:-40}
out=out/demo
# Keep the demo's DDS traffic on this machine (its node publishes /tf_static).
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
rm -rf "$out/bag"
mkdir -p "$out"
.venv/bin/crossi2p-sim --seed "$seed" --frames "$frames" --preset small --bag "$out/bag"
.venv/bin/crossi2p-evaluate-bag "$out/bag" --model models/crossi2p_cpu.yaml --mode live --pacing node \
  --json "$out/summary.json" --report "$out/report"
