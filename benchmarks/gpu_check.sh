#!/usr/bin/env bash
# The 300x450 GPU check in one command (benchmarks/gpu_check.py says what it measures).
# On a machine without an NVIDIA GPU it is a dry run: it says what it skipped and why, and exits 0.
#   bash benchmarks/gpu_check.sh [--out runs/gpu-check]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
# 5 minutes at most, whatever happens; the script keeps its own budget under that.
exec timeout 300 "$PYTHON" benchmarks/gpu_check.py "$@"
