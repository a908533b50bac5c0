#!/usr/bin/env bash
# CI: ruff with the rules pyproject.toml selects, pinned so that a new ruff release does
# not fail a submission that changed nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q "ruff==0.17.6"
ruff check .
