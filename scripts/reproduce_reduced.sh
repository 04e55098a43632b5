#!/usr/bin/env bash
# Reduced-scale reproduction of the paper on real CIFAR-10 (ResNet-20, k = 1, 20 epochs per run:
# ternary log, ternary fixed Δ0 = 0.1, binary, float, ternary linear), then the report.
# The schedule compression is documented in keras_ternary/configs/reduced/base.yaml.
#
#   scripts/reproduce_reduced.sh [DATA_DIR] [OUT_ROOT] [TIME_LIMIT_MINUTES]
#
# DATA_DIR   directory with cifar-10-batches-bin/ (default: $KERAS_TERNARY_CIFAR10_DIR or /work/data)
# OUT_ROOT   where runs go: OUT_ROOT/reduced/<run>/ (default: runs); report in OUT_ROOT/reduced-report
# TIME_LIMIT stop the sweep at the end of the first epoch after this many minutes (default: none)
#
# Resumable: run the same command again to skip finished runs and continue the partial one.
# In the background:  nohup scripts/reproduce_reduced.sh /work/data runs 600 > reduced.log 2>&1 &
set -euo pipefail
DATA_DIR=${1:-${KERAS_TERNARY_CIFAR10_DIR:-/work/data}}
OUT_ROOT=${2:-runs}
LIMIT=${3:-}
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
args=(sweep reduced/reproduce --data-dir "$DATA_DIR" --out-root "$OUT_ROOT" --verbose 2)
if [[ -n "$LIMIT" ]]; then args+=(--time-limit "$LIMIT"); fi
status=0
python -m keras_ternary "${args[@]}" || status=$?
python -m keras_ternary report "$OUT_ROOT/reduced" --out "$OUT_ROOT/reduced-report" --include-partial \
  || true
exit "$status"
