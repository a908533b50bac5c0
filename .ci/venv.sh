# CI, sourced by .ci/run: a fresh virtual environment, active for the jobs after it, with
# every test dependency, so that the install is proven from scratch and no test skips.
venv="${TMPDIR:-/tmp}/mlpinfer-ci-venv"
rm -rf "$venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
# The CPU build of PyTorch that this machine keeps on disk, then the PyTorch and Keras
# tests' extra ("torch>=2.0" is then satisfied instead of pulling a CUDA build).
pip install -q torch==2.13.0
pip install -q ".[test-frameworks]"
