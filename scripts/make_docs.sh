#!/usr/bin/env bash
# Regenerates every result page in docs/ (one heavy job at a time; ~20 min on 2 cores).
# Each page records the exact command that wrote it; plans and calibrations go to docs/runs/ so
# the whole-model benchmark times exactly the plans the search pages describe.
set -euo pipefail
cd "$(dirname "$0")/.."
export TVM_NUM_THREADS="${TVM_NUM_THREADS:-2}"
AIQ=.venv/bin/aiq-tvm
PY=.venv/bin/python
RUNS=docs/runs

$AIQ run --model resnet20 --search greedy --lam 0.9 --baselines int8,int4 --bench --out $RUNS \
    --markdown docs/resnet20_aiq_greedy.md
$AIQ run --model mobilenet_v2 --search greedy --lam 0.9 --baselines int8,int4 --bench --out $RUNS \
    --markdown docs/mobilenet_v2_aiq_greedy.md
# Integer precisions only: what runs fastest on a VNNI CPU (weight-only kernels do not).
$AIQ run --model mobilenet_v2 --search greedy --lam 0.9 --precisions fp32,int8,int4 \
    --baselines int8,int4 --bench --out $RUNS --markdown docs/mobilenet_v2_aiq_integer.md
$AIQ run --model mobilenet_v2 --search greedy --lam 0.9 --objective measured \
    --baselines int8,int4 --bench --out $RUNS --markdown docs/mobilenet_v2_aiq_measured.md
$PY scripts/bench_kernels.py table --rounds 15 --models resnet20 mobilenet_v2 \
    --plan resnet20=$RUNS/resnet20_greedy_plan.json:$RUNS/resnet20_greedy_calibration.json \
    --plan mobilenet_v2=$RUNS/mobilenet_v2_greedy_fp32-int8-int4_plan.json:$RUNS/mobilenet_v2_greedy_fp32-int8-int4_calibration.json \
    --out docs/performance.md
