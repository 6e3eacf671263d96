#!/usr/bin/env bash
# One-time set-up on a fresh machine (Debian, Python 3.11, root): the Fashion-MNIST Debian
# package and a virtualenv with aiq_tvm and its pinned dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f .venv/.aiq-installed ] || [ pyproject.toml -nt .venv/.aiq-installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch .venv/.aiq-installed
fi
