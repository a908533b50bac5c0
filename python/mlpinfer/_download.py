"""Fetch one dataset file from HTTP mirrors into a directory, verified and written atomically.

Contract of `fetch`: on return, ``target_dir / name`` exists and its content matched the
expected checksum when it was downloaded; on failure nothing is left behind under the final
name nor as a ``.part`` file, and a `DataError` lists every URL tried and why it failed.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, BinaryIO, Literal, NamedTuple

from ._errors import DataError
from ._progress import Progress, stderr_is_terminal

__all__ = ["MAX_DOWNLOAD_BYTES", "TIMEOUT_SECONDS", "Checksum", "fetch"]

#: Seconds to wait for the connection and for each read; a stalled mirror must not hang
#: a test run or a training script forever.
TIMEOUT_SECONDS = 30.0

#: The largest official file (Fashion-MNIST train images) is 26.4 MB compressed; a server
#: streaming far more than that is broken, and we stop before it fills the disk.
MAX_DOWNLOAD_BYTES = 128 * 2**20

_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"


class Checksum(NamedTuple):
    """What a downloaded file must hash to.

    ``kind`` is ``"sha256-decompressed"`` (SHA-256 of the gunzipped bytes, which identifies
    the data whatever compressor produced the .gz) or ``"md5-gz"`` (MD5 of the .gz bytes
    exactly as served, which is all the official sites publish for some files).
    """

    kind: Literal["sha256-decompressed", "md5-gz"]
    hexdigest: str


class _MirrorError(Exception):
    """One mirror failed; the message says why, for the summary of all attempts."""


def fetch(
    name: str,
    urls: Sequence[str],
    target_dir: Path,
    checksum: Checksum,
    *,
    timeout: float = TIMEOUT_SECONDS,
) -> Path:
    """Download `name` from the first of `urls` that serves a file matching `checksum`.

    Returns ``target_dir / name``. Raises `DataError` listing each URL and its failure.
    """
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the download directory {target_dir}: {exc}") from exc
    failures: list[str] = []
    for url in urls:
        try:
            return _fetch_one(url, name, target_dir, checksum, timeout)
        except _MirrorError as exc:
            failures.append(f"{url}: {exc}")
    raise DataError("\n".join(failures) if failures else f"{name}: no mirror to download from")


def _fetch_one(url: str, name: str, target_dir: Path, checksum: Checksum, timeout: float) -> Path:
    final = target_dir / name
    # A unique .part name (not just `<name>.part`) so two processes filling the same cache
    # cannot interleave their writes into one file; os.replace then makes the switch atomic
    # and a reader never sees a half-written file under the final name.
    try:
        fd, part_name = tempfile.mkstemp(dir=target_dir, prefix=f"{name}.", suffix=".part")
    except OSError as exc:
        raise _MirrorError(f"cannot write to {target_dir}: {exc}") from exc
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            gz_md5 = _download_to(url, out, name, timeout)
        _verify(part, gz_md5, checksum)
        os.replace(part, final)
    except BaseException:
        # BaseException too: a Ctrl-C mid-download must not leave a .part behind either.
        part.unlink(missing_ok=True)
        raise
    return final


def _download_to(url: str, out: BinaryIO, name: str, timeout: float) -> str:
    """Stream `url` into `out`; return the MD5 of the bytes received."""
    request = urllib.request.Request(url, headers={"User-Agent": "mlpinfer-datasets"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        # The error object owns the open response; closing it avoids a ResourceWarning.
        exc.close()
        raise _MirrorError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _MirrorError(f"cannot connect ({exc.reason})") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise _MirrorError(f"cannot connect ({exc})") from None

    md5 = hashlib.md5(usedforsecurity=False)
    received = 0
    with response:
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        if expected is not None and expected > MAX_DOWNLOAD_BYTES:
            raise _MirrorError(
                f"server announces {expected} bytes, more than the {MAX_DOWNLOAD_BYTES} expected at most"
            )
        progress = Progress(name, expected, unit="MB", scale=1e6) if stderr_is_terminal() else None
        try:
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise _MirrorError(f"server sent more than {MAX_DOWNLOAD_BYTES} bytes")
                md5.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress.update(received)
        except http.client.IncompleteRead as exc:
            raise _MirrorError(
                f"connection closed after {received + len(exc.partial)} of {expected} bytes"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _MirrorError(f"download interrupted after {received} bytes ({exc})") from None
        finally:
            if progress is not None:
                progress.close()
    # http.client reports a connection closed before Content-Length only in some read paths,
    # so compare the counts here as well.
    if expected is not None and received != expected:
        raise _MirrorError(f"connection closed after {received} of {expected} bytes")
    return md5.hexdigest()


def _verify(part: Path, gz_md5: str, checksum: Checksum) -> None:
    if checksum.kind == "md5-gz":
        actual = gz_md5
    elif checksum.kind == "sha256-decompressed":
        actual = _sha256_decompressed(part)
    else:
        raise _MirrorError(f"unknown checksum kind {checksum.kind!r}")
    if actual != checksum.hexdigest.lower():
        what = "MD5 of the .gz" if checksum.kind == "md5-gz" else "SHA-256 of the decompressed data"
        raise _MirrorError(f"checksum mismatch: {what} is {actual}, expected {checksum.hexdigest}")


def _sha256_decompressed(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        try:
            if compressed:
                with gzip.GzipFile(fileobj=raw) as stream:
                    _hash_stream(stream, sha)
            else:
                _hash_stream(raw, sha)
        except (OSError, EOFError, zlib.error) as exc:
            raise _MirrorError(f"not a valid gzip file ({exc})") from None
    return sha.hexdigest()


def _hash_stream(stream: IO[bytes], sha: hashlib._Hash) -> None:
    while chunk := stream.read(_CHUNK):
        sha.update(chunk)
