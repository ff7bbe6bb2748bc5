#!/usr/bin/env bash
# Set up everything napari-hypseg needs on a fresh Debian/Ubuntu machine; safe to run again.
#  - system packages for a virtual display (xvfb and two Qt xcb libraries), if missing
#  - a virtual environment in .venv with the package (editable) and its test tools
# torch and PyQt6 are pinned by constraints.txt so a CPU build of torch is used.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
for pkg in xvfb xauth libxcb-icccm4 libxcb-keysyms1; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    say "installing system packages: ${need_apt[*]}"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
else
    say "system packages present"
fi

if [ ! -x .venv/bin/python ]; then
    say "creating virtual environment .venv"
    python3 -m venv .venv
fi

stamp=.venv/.hypseg-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing napari-hypseg and its dependencies into .venv (torch pinned by constraints.txt)"
    # (pip's notes about package-index folders that lack a package are dropped: they are noise)
    quiet_pip() { .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
    quiet_pip --upgrade pip setuptools wheel
    quiet_pip -c constraints.txt -e ".[testing]"
    echo "$want" > "$stamp"
else
    say "python packages up to date"
fi
