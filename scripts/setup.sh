#!/usr/bin/env bash
# One-time set-up on a fresh machine (Debian, Python 3.11, root): the Fashion-MNIST Debian
# package and a virtualenv with aiq_tvm and its pinned dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
# dataset-fashion-mnist: the data; g++-aarch64-linux-gnu: exports aarch64 builds (tests too).
apt_pkgs=()
for p in dataset-fashion-mnist g++-aarch64-linux-gnu; do
    dpkg -s "$p" >/dev/null 2>&1 || apt_pkgs+=("$p")
done
if [ ${#apt_pkgs[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}"
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f .venv/.aiq-installed ] || [ pyproject.toml -nt .venv/.aiq-installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch .venv/.aiq-installed
fi
