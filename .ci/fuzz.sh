#!/usr/bin/env bash
# CI: a short fuzzing smoke of every loader (SECURITY.md has the long run); any exception
# other than our own error types, a crash, a timeout or an out-of-memory fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q "atheris==3.0.0"
fuzz/run.sh 60
