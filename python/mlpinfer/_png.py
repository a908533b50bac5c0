"""A small PNG reader for the CLI: 8-bit grayscale or colour, non-interlaced.

Enough for 28x28 digit images without a dependency; it checks every chunk's CRC and
refuses what it does not support instead of guessing.
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


def read_png_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """The image as uint8 (height, width) luminance; alpha is ignored."""
    name = os.fspath(path)
    with open(path, "rb") as stream:
        data = stream.read(64 << 20)
    if not data.startswith(_SIGNATURE):
        raise DataError(f"{name}: not a PNG file")
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


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, name: str) -> np.ndarray:
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.int32)
    for row in range(height):
        start = row * (stride + 1)
        kind = raw[start]
        line = np.frombuffer(raw, np.uint8, stride, start + 1).astype(np.int32)
        if kind == 0:
            current = line
        elif kind == 2:
            current = (line + previous) & 0xFF
        elif kind in (1, 3, 4):
            current = np.zeros(stride, dtype=np.int32)
            for i in range(stride):
                left = current[i - bpp] if i >= bpp else 0
                up = previous[i]
                if kind == 1:
                    predictor = left
                elif kind == 3:
                    predictor = (left + up) >> 1
                else:
                    upper_left = previous[i - bpp] if i >= bpp else 0
                    predictor = _paeth(left, up, upper_left)
                current[i] = (line[i] + predictor) & 0xFF
        else:
            raise DataError(f"{name}: corrupt PNG (filter type {kind} on row {row})")
        out[row] = current
        previous = current
    return out


def _paeth(left: int, up: int, upper_left: int) -> int:
    estimate = left + up - upper_left
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - upper_left))
    if distances[0] <= distances[1] and distances[0] <= distances[2]:
        return left
    return up if distances[1] <= distances[2] else upper_left
