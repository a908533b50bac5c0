"""Fuzz the ONNX reader: arbitrary bytes as an ONNX file.

    python fuzz/fuzz_onnx.py [libFuzzer options] [corpus directories]

Seeded with small models (fuzz/framework_seeds.py); protobuf parses the mutations, which
reach the graph walk, the tensor checks and the per-use budget. The only acceptable
failure is WeightsError; a network that loads must run.
"""

from __future__ import annotations

import os
import tempfile

import atheris

with atheris.instrument_imports(include=["mlpinfer"]):
    import mlpinfer  # noqa: F401 - imported here to be instrumented; _findings calls it

from _findings import fuzz, load_and_run

_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIRECTORY, f"mlpinfer-fuzz-onnx-{os.getpid()}.onnx")


def check(data: bytes) -> None:
    with open(_PATH, "wb") as stream:
        stream.write(data)
    load_and_run(_PATH, 2)


if __name__ == "__main__":
    fuzz(check, _PATH)
