#!/usr/bin/env bash
# Set up (if needed) and run the test suite headless; pytest-xvfb starts its own virtual display.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
unset QT_QPA_PLATFORM   # napari's canvas needs the xcb platform on Xvfb, not "offscreen"
echo "[test] linting"
.venv/bin/ruff check src tests benchmarks docs
echo "[test] validating the napari manifest"
.venv/bin/npe2 validate --imports napari-hypseg
echo "[test] running pytest"
exec .venv/bin/python -m pytest "$@"
