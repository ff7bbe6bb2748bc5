#!/usr/bin/env bash
# Set up (if needed) and run the main job on built-in data: synthetic volume -> train on CPU ->
# segment at every level of the hierarchy -> Dice per level -> labels and a PNG in demo-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hypseg demo --out demo-output "$@"
