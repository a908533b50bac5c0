#!/usr/bin/env bash
# CI: build the manylinux wheel as a user would get it (scripts/build_wheels.sh), install it
# into a fresh venv and run the test suite against the installed package, from a copy of
# tests/ with no source tree beside it (only ../shared, as in the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
shared="$(realpath ../shared)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

scripts/build_wheels.sh "$work/wheels"
wheel="$(ls "$work"/wheels/mlpinfer-*manylinux_2_28_x86_64*.whl)"
built=$SECONDS

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
python -m pip install -q --upgrade pip
pip install -q torch==2.13.0  # the CPU build this machine keeps on disk (README: Set-up)
pip install -q "$wheel[test-frameworks]"

# The tests, their pytest settings, the README (its supported-layers table is tested) and
# the fuzzers' regression inputs they replay; no code.
mkdir -p "$work/project/fuzz"
cp -r tests pyproject.toml README.md "$work/project/"
cp -r fuzz/regressions "$work/project/fuzz/"
ln -s "$shared" "$work/shared"
cd "$work/project"
location="$(python -c 'import mlpinfer; print(mlpinfer.__file__)')"
case "$location" in
  "$work/venv/"*) ;;
  *) echo "import mlpinfer found $location, not the installed wheel" >&2; exit 1 ;;
esac
installed=$SECONDS
python -m pytest -q -p no:cacheprovider
echo "wheel job: build $((built - started)) s, install $((installed - built)) s," \
  "tests $((SECONDS - installed)) s ($(basename "$wheel"), tested from $root's tests/)"
