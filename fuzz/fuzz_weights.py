"""Fuzz the weight loader: arbitrary bytes as a weight file (pickle, npz or native).

    python fuzz/fuzz_weights.py [libFuzzer options] [corpus directories]

Content decides the format, so one harness reaches every reader; fuzz/seeds.py gives it
pickles of every protocol, npz and native files to mutate. The only acceptable failure is
WeightsError; any other exception, a hang or a crash is a finding.
"""

from __future__ import annotations

import os
import tempfile

import atheris

with atheris.instrument_imports(include=["mlpinfer", "zipfile", "numpy.lib._format_impl"]):
    import mlpinfer  # noqa: F401 - imported here to be instrumented; _findings calls it

from _findings import fuzz, load_and_run

# One file rewritten per input: a tmpfs keeps the write off the disk.
_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIRECTORY, f"mlpinfer-fuzz-{os.getpid()}.bin")


def check(data: bytes) -> None:
    with open(_PATH, "wb") as stream:
        stream.write(data)
    load_and_run(_PATH, 3)


if __name__ == "__main__":
    fuzz(check, _PATH)
