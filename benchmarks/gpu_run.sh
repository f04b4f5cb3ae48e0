#!/usr/bin/env bash
# One prepared GPU run (issue 26): provenance, trainer benchmarks (MLP and CNN at 1, 8, 64, 256
# members; naive, batched fp32 / bf16 autocast / torch.compile, each checked against fp32), the
# `paper` set's training and verdict table — under one output folder, in < 9 minutes on one H200.
#
#   benchmarks/gpu_run.sh                          # on the GPU machine: --device cuda, output $OUT or results/gpu_run
#   benchmarks/gpu_run.sh --device cpu --tiny --out /tmp/x   # the CPU test of this script (seconds)
#
# Every other option goes to benchmarks/gpu_run.py (see its --help): --budget-s, --paper-arms,
# --paper-seeds, --no-bench, --no-paper. The data must be local (SOFTLAB_DATA_DIR, human labels via
# SOFTLAB_HUMAN_DIR or ../shared/data/human): the GPU machine has no network.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export SOFTLAB_OFFLINE=1
# hard cap: the python side stops its own steps at --budget-s (default 530 s); this is the backstop
cap="${GPU_RUN_CAP_S:-560}"
exec timeout --kill-after=10 "$cap" "$python" "$here/gpu_run.py" "$@"
