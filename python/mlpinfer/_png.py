"""A small PNG reader for the CLI: 8-bit grayscale or colour, non-interlaced.

Enough for 28x28 digit images without a dependency; it checks every chunk's CRC and
refuses what it does not support instead of guessing. The declared size is checked
before anything is inflated, and the row filters are undone with NumPy, a diagonal of
pixels at a time, so that decoding costs height + width vector steps, not a Python step
per byte (a 4096x4096 image took 24 s of CPU with per-byte filters).
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from ._errors import DataError

__all__ = ["read_png_gray"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_MAX_PIXELS = 1 << 24
_MAX_FILE = 64 << 20


def read_png_gray(path: str | os.PathLike[str], *, pixels: int | None = None) -> np.ndarray:
    """The image as uint8 (height, width) luminance; alpha is ignored.

    ``pixels``: the number of pixels expected (e.g. 784 for 28x28); an image of another
    size is refused from its header, before its data is read.
    """
    name = os.fspath(path)
    with open(path, "rb") as stream:
        head = stream.read(len(_SIGNATURE) + 25)  # the signature and the IHDR chunk
        if not head.startswith(_SIGNATURE):
            raise DataError(f"{name}: not a PNG file")
        if len(head) == len(_SIGNATURE) + 25 and head[12:16] == b"IHDR" and pixels is not None:
            width, height = struct.unpack(">II", head[16:24])
            if width * height != pixels:
                raise DataError(
                    f"{name}: a {width}x{height} image; expected {pixels} pixels "
                    f"({_shape_hint(pixels)})"
                )
        data = head + stream.read(_MAX_FILE)
    position = len(_SIGNATURE)
    header = None
    compressed = bytearray()
    while True:
        if position + 8 > len(data):
            raise DataError(f"{name}: truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        crc = data[position + 8 + length : position + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise DataError(f"{name}: truncated PNG chunk {kind!r}")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise DataError(f"{name}: corrupt PNG chunk {kind!r} (CRC mismatch)")
        position += 12 + length
        if kind == b"IHDR":
            if length != 13:
                raise DataError(f"{name}: corrupt PNG header chunk ({length} bytes, expected 13)")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    if header is None:
        raise DataError(f"{name}: PNG without IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace != 0:
        raise DataError(
            f"{name}: unsupported PNG (bit depth {depth}, colour type {colour}, interlace "
            f"{interlace}); expected 8-bit grayscale or RGB, not interlaced"
        )
    if width == 0 or height == 0 or width * height > _MAX_PIXELS:
        raise DataError(f"{name}: unsupported PNG size {width}x{height}")
    channels = _CHANNELS[colour]
    stride = width * channels
    expected = height * (stride + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(bytes(compressed), expected + 1)
    except zlib.error as error:
        raise DataError(f"{name}: corrupt PNG image data ({error})") from None
    if len(raw) != expected:
        raise DataError(f"{name}: PNG image data holds {len(raw)} bytes, expected {expected}")
    pixels = _unfilter(raw, height, stride, channels, name)
    samples = pixels.reshape(height, width, channels)
    if channels <= 2:
        return samples[:, :, 0].copy()
    rgb = samples[:, :, :3].astype(np.float64)
    return np.rint(rgb @ [0.299, 0.587, 0.114]).astype(np.uint8)  # ITU-R BT.601 luma


def _shape_hint(pixels: int) -> str:
    side = round(pixels ** 0.5)
    return f"{side}x{side}" if side * side == pixels else "width x height"


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, name: str) -> np.ndarray:
    """Undo the per-row filters (PNG spec 9.2): each byte adds a predictor made from the
    decoded bytes to its left (a), above (b) and above-left (c) in the same channel.

    Pixel (r, j) needs only (r, j-1), (r-1, j) and (r-1, j-1), so all pixels on one
    anti-diagonal r + j = d are decoded together, whatever each row's filter.
    """
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    kinds = rows[:, 0]
    if np.any(kinds > 4):
        row = int(np.argmax(kinds > 4))
        raise DataError(f"{name}: corrupt PNG (filter type {kinds[row]} on row {row})")
    width = stride // bpp
    filtered = rows[:, 1:].reshape(height, width, bpp).astype(np.int32)
    # Padded by one zero row above and one zero pixel to the left: the spec's "outside".
    out = np.zeros((height + 1, width + 1, bpp), dtype=np.int32)
    for d in range(height + width - 1):
        r = np.arange(max(0, d - width + 1), min(height, d + 1))
        j = d - r
        a, b, c = out[r + 1, j], out[r, j + 1], out[r, j]
        kind = kinds[r][:, np.newaxis]
        estimate = a + b - c
        pa, pb, pc = np.abs(estimate - a), np.abs(estimate - b), np.abs(estimate - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        predictor = np.select([kind == 0, kind == 1, kind == 2, kind == 3],
                              [0, a, b, (a + b) >> 1], paeth)
        out[r + 1, j + 1] = (filtered[r, j] + predictor) & 0xFF
    return out[1:, 1:].reshape(height, stride).astype(np.uint8)
