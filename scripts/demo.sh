#!/usr/bin/env bash
# The main job on an embedded default: calibrate a generated sample drive with the shipped model.
#   bash scripts/demo.sh [SEED] [FRAMES]
# 1. crossi2p-sim writes a deterministic simulated drive (ground truth on /tf_static) as a rosbag2;
# 2. crossi2p-evaluate-bag runs the calibration node's own pairing -> ONNX runtime -> fusion code
#    path over it, prints the estimated extrinsic's error against the ground truth and writes the
#    report (out/demo/report/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-7}
frames=${2:-40}
out=out/demo
rm -rf "$out/bag"
mkdir -p "$out"
.venv/bin/crossi2p-sim --seed "$seed" --frames "$frames" --preset small --bag "$out/bag"
.venv/bin/crossi2p-evaluate-bag "$out/bag" --model models/crossi2p_cpu.yaml \
  --json "$out/summary.json" --report "$out/report"
