#!/usr/bin/env bash
# Create ./.venv and install noamt into it; `setup.sh dev` adds the test tools.
#   TORCH_SPEC   the torch requirement to install first (default torch==2.13.0; on Linux, PyPI's
#                build of it includes CUDA where a GPU is present)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[[ "${1:-}" == "dev" ]] && extra="[dev]"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".${extra}"
echo "noamt installed in $(pwd)/.venv"
