"""How much a load may allocate, and the container checks every reader shares.

A small file must not cost gigabytes. Every reader charges a `Budget` for what it is
about to allocate (each use of a shared array counts again; a compressed member counts
its declared uncompressed size) *before* allocating it, and containers are checked
before anything inflates: a zip's declared member sizes, and the payload an IDX header
declares before its gzip stream is inflated, are charged first. The budget of a load is
`limit_for`: by default at most `DEFAULT_MAX_BYTES`, and at most `DEFAULT_RATIO` times the
file's size (from a floor of `RATIO_FLOOR`), so that a 2 MB file never costs more than
200 MB. ``max_bytes=`` given by the caller replaces both for a genuinely large (or very
compressible) network.
"""

from __future__ import annotations

import os
import struct
import zipfile
from typing import BinaryIO

from .._errors import MlpinferError, WeightsError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_RATIO",
    "MAX_ZIP_MEMBERS",
    "RATIO_FLOOR",
    "Budget",
    "declared_member_count",
    "limit_for",
    "open_zip",
    "read_member",
]

#: Default cap of what one load allocates for the file's content: 1 GiB is a network of
#: 268 million float32 parameters. ``mlpinfer.load(path, max_bytes=...)`` raises it.
DEFAULT_MAX_BYTES = 1 << 30
#: Default cap relative to the file: arrays stored in a pickle or a stored zip member
#: cost their size once (ratio 1); deflate shrinks the textbook's float64 weights 1.07
#: times (savez_compressed) and MNIST's t10k images 4.75 times (gzip). A file needing more
#: than 100 times its size holds repeated references or a compression bomb.
DEFAULT_RATIO = 100
#: Below this, the ratio does not apply: small files may hold small all-zero networks.
RATIO_FLOOR = 16 << 20
#: A weight archive has two members a layer (npz) or one a tensor (.pt); zipfile parses
#: the whole central directory, 495 bytes of Python objects a member (tracemalloc,
#: Python 3.11), so a directory of millions of members is refused from its end record first.
MAX_ZIP_MEMBERS = 10_000


def limit_for(file_size: int | None, max_bytes: int | None) -> int:
    """The budget of a load: ``max_bytes`` when given, else the defaults above (a stream
    of unknown size gets `DEFAULT_MAX_BYTES`)."""
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        return max_bytes
    if file_size is None:
        return DEFAULT_MAX_BYTES
    return min(DEFAULT_MAX_BYTES, max(RATIO_FLOOR, DEFAULT_RATIO * file_size))


class Budget:
    """Bytes a load may still allocate; `charge` before allocating, never after.

    ``error`` is the exception type raised (`WeightsError` for weights, `DataError` for
    datasets); ``name`` the file, for messages.
    """

    def __init__(self, limit: int, *, name: str,
                 error: type[MlpinferError] = WeightsError) -> None:
        self.limit = limit
        self.used = 0
        self.name = name
        self.error = error

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` about to be allocated for ``what``, or refuse."""
        if nbytes < 0:
            raise self.error(f"{self.name}: {what} declares a negative size {nbytes}")
        if self.used + nbytes > self.limit:
            raise self.error(
                f"{self.name}: {what} needs {nbytes} bytes after {self.used} already used; "
                f"the budget of this load is {self.limit} bytes (pass max_bytes= to allow "
                "more): a small file that expands this much is refused"
            )
        self.used += nbytes

    def fail(self, message: str) -> MlpinferError:
        """Our error for this file: raise ``budget.fail("expected ..., found ...")``."""
        return self.error(f"{self.name}: {message}")


# Zip end-of-central-directory record: signature, disk numbers, entries on this disk,
# total entries, directory size and offset, comment length.
_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_ACCEPTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})


def declared_member_count(stream: BinaryIO) -> int | None:
    """Entries a zip's end record declares, read without zipfile (which would parse them
    all); ``None`` without an end record."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - (_EOCD.size + 0xFFFF)))
    tail = stream.read()
    stream.seek(0)
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < _EOCD.size:
        return None
    return int(_EOCD.unpack_from(tail, at)[4])


def open_zip(stream: BinaryIO, budget: Budget, *, what: str) -> zipfile.ZipFile:
    """A `zipfile.ZipFile` over ``stream`` whose members were checked before inflating:
    at most `MAX_ZIP_MEMBERS`, only stored or deflate, none encrypted, and their declared
    uncompressed sizes charged to ``budget`` (zipfile never inflates a member beyond its
    declared size, so the charge bounds what reading every member allocates). ``what``
    names the expected content ("an .npz") for messages."""
    count = declared_member_count(stream)
    if count is None:
        raise budget.fail(f"expected {what}, found a zip without an end-of-central-directory record")
    if count > MAX_ZIP_MEMBERS:
        raise budget.fail(
            f"expected {what} of at most {MAX_ZIP_MEMBERS} members, found a zip declaring {count}"
        )
    try:
        archive = zipfile.ZipFile(stream)
    except Exception as error:  # noqa: BLE001 - zipfile raises many types on a broken file
        raise budget.fail(f"expected {what}, found a broken zip ({type(error).__name__}: "
                          f"{str(error)[:200]})") from None
    try:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:  # zip64 end records may declare differently
            raise budget.fail(f"expected {what} of at most {MAX_ZIP_MEMBERS} members, "
                              f"found {len(members)}")
        for member in members:
            label = f"zip member {member.filename[:80]!r}"
            if member.compress_type not in _ACCEPTED_METHODS:
                raise budget.fail(
                    f"{label}: expected a stored or deflate member, found compression "
                    f"method {member.compress_type}")
            if member.flag_bits & 0x1:
                raise budget.fail(f"{label}: expected a plain member, found an encrypted one")
            budget.charge(member.file_size, f"{label} (inflating from {member.compress_size} bytes)")
    except BaseException:
        archive.close()
        raise
    return archive


def read_member(archive: zipfile.ZipFile, name: str, budget: Budget) -> bytes:
    """A member of an archive from `open_zip` (its declared size already charged), or
    the budget's error: a bad CRC, a broken deflate stream or a truncated zip are ours."""
    try:
        return archive.read(name)
    except Exception as error:  # noqa: BLE001 - zipfile and zlib raise many types
        raise budget.fail(f"zip member {name[:80]!r} cannot be read ({type(error).__name__}: "
                          f"{str(error)[:200]})") from None
