"""The input framing of the zip-based harnesses: members as (4-byte length, bytes) pairs.

libFuzzer's mutations then land inside a member (a config.json, a data.pkl, an HDF5
file) rather than in the zip's CRCs and offsets; the harness zips them, well-formed.
"""

from __future__ import annotations

import io
import struct
import zipfile


def split(data: bytes, count: int) -> list[bytes]:
    """Up to ``count`` members; a length beyond the input takes what is left."""
    members = []
    while data and len(members) < count:
        (length,) = struct.unpack("<I", data[:4].ljust(4, b"\0"))
        members.append(data[4:4 + length])
        data = data[4 + length:]
    return members


def join(members: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(member)) + member for member in members)


def zipped(named: dict[str, bytes]) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
        for name, data in named.items():
            archive.writestr(name, data)
    return stream.getvalue()
