"""Fuzz the weight loader: arbitrary bytes as a weight file (pickle, npz or native).

    python fuzz/fuzz_weights.py [libFuzzer options] [corpus directories]

Content decides the format, so one harness reaches every reader; fuzz/seeds.py gives it
pickles of every protocol, npz and native files to mutate. The only acceptable failure is
WeightsError; any other exception, a hang or a crash is a finding.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["mlpinfer", "zipfile", "numpy.lib._format_impl"]):
    import numpy as np

    import mlpinfer

from _findings import is_known

# One file rewritten per input: a tmpfs keeps the write off the disk.
_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIRECTORY, f"mlpinfer-fuzz-{os.getpid()}.bin")


def check(data: bytes) -> None:
    with open(_PATH, "wb") as stream:
        stream.write(data)
    try:
        network = mlpinfer.load(_PATH)
    except mlpinfer.WeightsError:
        return
    except Exception as error:
        if is_known(error):
            return
        raise
    # A file that loads must give a network that runs.
    x = np.linspace(-1.0, 1.0, 3 * network.n_inputs, dtype=np.float32).reshape(3, -1)
    out = network.predict(x)
    assert out.shape == (3, network.n_outputs), out.shape
    assert out.dtype == np.float32


def main() -> None:
    try:
        atheris.Setup(sys.argv, check)
        atheris.Fuzz()
    finally:
        if os.path.exists(_PATH):
            os.unlink(_PATH)


if __name__ == "__main__":
    main()
