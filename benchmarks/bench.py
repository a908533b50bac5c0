"""Benchmark mlpinfer against NumPy, ONNX Runtime and PyTorch: ``python benchmarks/bench.py --help``.

The same as ``mlpinfer bench``; see benchmarks/README.md for the method.
"""

import sys

from mlpinfer._cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
