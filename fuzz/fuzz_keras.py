"""Fuzz the .keras reader: config.json and model.weights.h5, zipped well-formed.

    python fuzz/fuzz_keras.py [libFuzzer options] [corpus directories]

The input is the two members, framed by `_members`; mutation reaches the JSON config
checks and, through h5py, libhdf5's parser and our dataset checks. The only acceptable
failure is WeightsError; a network that loads must run.
"""

from __future__ import annotations

import os
import tempfile

import atheris

with atheris.instrument_imports(include=["mlpinfer", "json"]):
    import mlpinfer  # noqa: F401 - imported here to be instrumented; _findings calls it

from _findings import fuzz, load_and_run
from _members import split, zipped

_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIRECTORY, f"mlpinfer-fuzz-keras-{os.getpid()}.keras")


def check(data: bytes) -> None:
    members = [*split(data, 2), b"", b""]
    with open(_PATH, "wb") as stream:
        stream.write(zipped({"config.json": members[0], "model.weights.h5": members[1]}))
    load_and_run(_PATH, 2)


if __name__ == "__main__":
    fuzz(check, _PATH)
