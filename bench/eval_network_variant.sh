#!/usr/bin/env bash
# One network variant through the issue-14 table's three scores (docs/benchmarks.md, section 10):
# export, the shared real frames (global protocol, 2 draws each), 10 held-out `small` drives and
# 3 held-out `kitti_hdl64` drives (10 frames each).
#   bash bench/eval_network_variant.sh CHECKPOINT NAME [real-only]
# Writes out/i14/onnx/NAME.{onnx,yaml}, out/i14/{real,sim,kitti}_global_NAME.json and their logs.
# Needs ../shared/data/real (CROSSI2P_SHARED_DATA to point elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash bench/eval_network_variant.sh CHECKPOINT NAME [real-only]" >&2; exit 1; }
ck=$1; name=$2; real=${CROSSI2P_SHARED_DATA:-../shared/data}/real
mkdir -p out/i14/onnx
.venv/bin/crossi2p-export --checkpoint "$ck" --out "out/i14/onnx/$name.onnx" --fine-peak-radius 2
.venv/bin/python bench/bench_real_global.py --real "$real" --model "out/i14/onnx/$name.yaml" --trials 2 \
  --json "out/i14/real_global_$name.json"
if [ "${3:-}" != real-only ]; then
  for spec in "small 10 sim" "kitti_hdl64 3 kitti"; do
    set -- $spec
    .venv/bin/crossi2p-evaluate --model "out/i14/onnx/$name.onnx" --sim-seed 900001 --sim-drives "$2" --frames 10 \
      --sim-preset "$1" --protocol global --seed 0 --json "out/i14/${3}_global_$name.json"
  done
fi
