"""Empty, truncated, corrupted and random PNG files (mlpinfer predict): every one ends in
our own error type, never another exception or a crash. (Weight files of every format
have theirs in tests/hostile/.)"""

from __future__ import annotations

import numpy as np
import pytest
from support import png_bytes

from mlpinfer import DataError
from mlpinfer._png import read_png_gray

GOOD_PNG = png_bytes()


def cuts(data: bytes) -> list[int]:
    return sorted({0, 1, 8, 16, 33, len(data) // 2, len(data) - 13, len(data) - 1})


@pytest.mark.parametrize(("name", "data", "message"), [
    ("empty", b"", "not a PNG"),
    ("random", np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes(), "not a PNG"),
    ("bad CRC", GOOD_PNG[:29] + bytes([GOOD_PNG[29] ^ 1]) + GOOD_PNG[30:], "CRC mismatch"),
    ("IHDR of 12 bytes", png_bytes(ihdr=bytes(12)), "header chunk"),
    ("16-bit", png_bytes(depth=16), "unsupported PNG"),
    ("palette", png_bytes(colour=3), "unsupported PNG"),
    ("zero width", png_bytes(width=0, raw=b""), "unsupported PNG size"),
    ("huge declared size", png_bytes(width=1 << 15, height=1 << 15, raw=b"\0"), "unsupported PNG size"),
    ("short image data", png_bytes(raw=b"\0" * 10), "image data holds 10 bytes"),
    ("bad filter type", png_bytes(raw=b"".join(b"\x07" + bytes(28) for _ in range(28))), "filter type 7"),
    ("inflates far beyond the image", png_bytes(raw=bytes(50 << 20)), "image data holds"),
])
def test_broken_png(tmp_path, name, data, message):
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_png_gray(path)


def test_truncated_png_at_every_boundary(tmp_path):
    for cut in cuts(GOOD_PNG):
        (tmp_path / "x.png").write_bytes(GOOD_PNG[:cut])
        with pytest.raises(DataError):
            read_png_gray(tmp_path / "x.png")
