"""Fuzz the PyTorch reader: data.pkl and its storages, zipped as torch.save lays them out.

    python fuzz/fuzz_torch.py [libFuzzer options] [corpus directories]

The input is ``data.pkl`` then up to four storages ``data/0..3``, framed by `_members`;
mutation reaches the restricted unpickler with torch's globals, the tensor view checks
and the state_dict interpretation (seeds are bundles, which record their architecture).
The only acceptable failure is WeightsError; a network that loads must run.
"""

from __future__ import annotations

import os
import tempfile

import atheris

with atheris.instrument_imports(include=["mlpinfer", "pickle"]):
    import mlpinfer  # noqa: F401 - imported here to be instrumented; _findings calls it

from _findings import fuzz, load_and_run
from _members import split, zipped

_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIRECTORY, f"mlpinfer-fuzz-torch-{os.getpid()}.pt")


def check(data: bytes) -> None:
    members = split(data, 5) or [b""]
    named = {"archive/data.pkl": members[0], "archive/byteorder": b"little"}
    named.update({f"archive/data/{i}": member for i, member in enumerate(members[1:])})
    with open(_PATH, "wb") as stream:
        stream.write(zipped(named))
    load_and_run(_PATH, 2)


if __name__ == "__main__":
    fuzz(check, _PATH)
