"""Fuzz the ONNX reader: the weights harness (bytes as a file, content decides the format)
on its own corpus, seeded with small ONNX models (fuzz/framework_seeds.py).

    python fuzz/fuzz_onnx.py [libFuzzer options] [corpus directories]

Protobuf parses the mutations, which reach the graph walk, the tensor checks and the
per-use budget. The only acceptable failure is WeightsError; a network that loads must run.
"""

from __future__ import annotations

from _findings import fuzz
from fuzz_weights import _PATH, check  # instruments mlpinfer as it imports it

if __name__ == "__main__":
    fuzz(check, _PATH)
