"""Benchmark mlpinfer against NumPy, ONNX Runtime and PyTorch: ``python benchmarks/bench.py --help``.

The same as ``mlpinfer bench``, except that in a checkout with ``../shared/data`` beside it
the real MNIST test images and the textbook's weights are used unless told otherwise.
See benchmarks/README.md for the method.
"""

import sys
from pathlib import Path

from mlpinfer._cli import main

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not any(a.startswith("--data") for a in arguments) and (SHARED_DATA / "mnist").is_dir():
        arguments += ["--data", str(SHARED_DATA / "mnist")]
    weights = SHARED_DATA / "sample_weight.pkl"
    if not any(a.startswith("--weights") for a in arguments) and weights.is_file():
        arguments += ["--weights", str(weights)]
    sys.exit(main(["bench", *arguments]))
