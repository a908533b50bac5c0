"""Fuzz the IDX reader: arbitrary bytes, raw or gzip, through mlpinfer.datasets.parse_idx.

    python fuzz/fuzz_idx.py [libFuzzer options] [corpus directories]

The only acceptable failure is DataError; an accepted input must be exactly the size
its header declares and hold exactly the bytes that the file (or gzip's own reading) holds.
"""

from __future__ import annotations

import math
import sys

import atheris

with atheris.instrument_imports(include=["mlpinfer", "gzip"]):
    import gzip

    import numpy as np

    from mlpinfer import DataError
    from mlpinfer.datasets import parse_idx

from _findings import is_known


def check(data: bytes) -> None:
    try:
        array = parse_idx(data)
    except DataError:
        return
    except Exception as error:
        if is_known(error):
            return
        raise
    assert array.dtype == np.uint8
    assert array.ndim in (1, 3), array.shape
    header = 4 + 4 * array.ndim
    # What loads is what the file holds, by an independent reading (gzip's own).
    content = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    assert array.size == math.prod(array.shape) == len(content) - header
    assert array.tobytes() == content[header:]


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
