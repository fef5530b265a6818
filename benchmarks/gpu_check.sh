#!/usr/bin/env bash
# The one-GPU check (under 5 minutes): see benchmarks/gpu_check.py for the steps.
# Usage: benchmarks/gpu_check.sh OUTDIR   -> OUTDIR/gpu_check.json, OUTDIR/summary.txt, OUTDIR/<step>.txt
# Exit status: 0 every step passed, 1 a step failed, 2 no CUDA device.
set -u
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
shift
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
test -x "$PY" || PY=python3
exec "$PY" benchmarks/gpu_check.py "$OUT" "$@"
