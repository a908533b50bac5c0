"""MNIST and Fashion-MNIST: an IDX reader, and loaders that find or download the files.

Where the loaders look, in order (the first directory holding both files of the split wins):

1. the ``data_dir`` argument;
2. ``$MLPINFER_DATA/<dataset>`` then ``$MLPINFER_DATA`` itself, where ``<dataset>`` is
   ``mnist`` or ``fashion-mnist`` (files directly in ``$MLPINFER_DATA`` are taken for
   whichever dataset is asked for, so keep both datasets in their subfolders);
3. the user cache, ``$XDG_CACHE_HOME/mlpinfer/<dataset>`` else ``~/.cache/mlpinfer/<dataset>``;
4. system directories (`SYSTEM_DIRS`): Debian's ``dataset-fashion-mnist`` package for
   Fashion-MNIST;
5. with ``download=True``, the public mirrors (`MIRRORS`), into the user cache.

File names are the official ones (``t10k-images-idx3-ubyte.gz``...), compressed or not
(the same name without ``.gz``). Downloads are verified against `CHECKSUMS` before they get
their final name. Every failure raises `mlpinfer._errors.DataError` (a `ValueError`).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import stat
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from ._download import Checksum, fetch
from ._errors import DataError
from .formats._budget import Budget, limit_for

__all__ = [
    "CHECKSUMS",
    "MIRRORS",
    "SYSTEM_DIRS",
    "Checksum",
    "load_directory",
    "load_fashion_mnist",
    "load_mnist",
    "parse_idx",
    "read_idx",
]

StrPath = str | os.PathLike[str]

#: Base URLs tried in order; ``<base><file name>`` is the file. Replace or monkeypatch
#: to use another mirror; `load_mnist(mirrors=...)` and ``$MLPINFER_MIRROR`` take precedence.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    # Plain HTTP is the only way this bucket is published; the checksums below are what
    # protects the download, not the transport.
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

#: The expected checksum of each downloadable file, from /work/shared/data/README.md.
#: SHA-256 of the decompressed bytes identifies the data whoever recompressed it (mirrors and
#: Debian ship different .gz bytes of the same content). For the two MNIST train files only
#: the MD5 of the official .gz is known, so those are checked on the .gz bytes as served,
#: which also means a mirror serving a recompressed copy of them is rejected.
CHECKSUMS: dict[str, dict[str, Checksum]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": Checksum("md5-gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": Checksum("md5-gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": Checksum(
            "sha256-decompressed",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        "t10k-labels-idx1-ubyte.gz": Checksum(
            "sha256-decompressed",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": Checksum(
            "sha256-decompressed",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        "train-labels-idx1-ubyte.gz": Checksum(
            "sha256-decompressed",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        "t10k-images-idx3-ubyte.gz": Checksum(
            "sha256-decompressed",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        "t10k-labels-idx1-ubyte.gz": Checksum(
            "sha256-decompressed",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    },
}

#: Read-only directories where a system package installs the official files.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_IMAGE_SHAPE = (28, 28)
_NUM_CLASSES = 10

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
# Only the two layouts of these datasets are accepted.
_MAGIC_LABELS = 0x0801  # 2049
_MAGIC_IMAGES = 0x0803  # 2051
_NDIM = {_MAGIC_LABELS: 1, _MAGIC_IMAGES: 3}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- IDX reader


def read_idx(path: StrPath, *, max_bytes: int | None = None) -> npt.NDArray[np.uint8]:
    """Read an IDX file of unsigned bytes, gzip-compressed or not.

    Returns images ``(N, rows, cols)`` for magic 2051 and labels ``(N,)`` for magic 2049,
    dtype uint8, C-contiguous and writable. Compression is detected from the content (the
    gzip magic bytes), not the file name.

    Raises `DataError` if the file cannot be opened, the magic number is not 2049/2051, a
    dimension is invalid, the gzip stream is corrupt, or the payload is not exactly the
    size the header declares. The header is read first: the payload of an uncompressed file
    is never read when its size is wrong, and at most one byte more than declared is
    decompressed from a gzip file. The declared payload is at most ``max_bytes``, by default
    100 times the file's size from 16 MiB on and at most 1 GiB (a 2 MB gzip file declaring
    2 GB of zeros is refused before inflating); a pipe's size is unknown, so it gets 1 GiB.
    """
    name = os.fspath(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 -- closed by the with-block right below
    except OSError as exc:
        raise DataError(f"{name}: cannot open ({exc.strerror or exc})") from exc
    with raw:
        # peek, not read + seek: the check must not consume bytes nor require a seekable file.
        st = os.fstat(raw.fileno())
        # Only a regular file's size is known in advance; a pipe is read in chunks instead.
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
        budget = _budget(name, size, max_bytes)
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as stream:
                return _parse_gzip(stream, name, budget)
        return _parse_stream(raw, name, size, "file", budget)


def parse_idx(
    data: bytes | bytearray | memoryview, *, name: str = "<bytes>", max_bytes: int | None = None
) -> npt.NDArray[np.uint8]:
    """Parse IDX content held in memory; same contract as `read_idx`.

    `name` is only used in error messages.
    """
    view = memoryview(data)
    budget = _budget(name, view.nbytes, max_bytes)
    if view[:2] == _GZIP_MAGIC:
        with gzip.GzipFile(fileobj=io.BytesIO(view)) as stream:
            return _parse_gzip(stream, name, budget)
    return _parse_stream(io.BytesIO(view), name, view.nbytes, "file", budget)


def _budget(name: str, size: int | None, max_bytes: int | None) -> Budget:
    return Budget(limit_for(size, max_bytes), name=name, error=DataError)


def _parse_gzip(stream: IO[bytes], name: str, budget: Budget) -> npt.NDArray[np.uint8]:
    try:
        return _parse_stream(stream, name, None, "decompressed data", budget)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip stream ({exc})") from exc


def _parse_stream(
    stream: IO[bytes], name: str, size: int | None, holder: str, budget: Budget
) -> npt.NDArray[np.uint8]:
    """Parse header then payload; `size` is the total byte count if known in advance."""
    head = _read_upto(stream, 4)
    if not head:
        raise DataError(f"{name}: the {holder} is empty, expected an IDX file")
    if len(head) < 4:
        raise DataError(
            f"{name}: the {holder} holds {len(head)} bytes, too few for an IDX magic number"
        )
    magic = int.from_bytes(head, "big")
    if magic not in _NDIM:
        raise DataError(
            f"{name}: expected IDX magic {_MAGIC_LABELS} (uint8 labels) or {_MAGIC_IMAGES} "
            f"(uint8 images), found {magic} (bytes {head.hex(' ')})"
        )
    ndim = _NDIM[magic]
    header_len = 4 + 4 * ndim
    dims_raw = _read_upto(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(
            f"{name}: IDX magic {magic} needs a {header_len}-byte header, "
            f"the {holder} ends after {4 + len(dims_raw)} bytes"
        )
    dims = tuple(int.from_bytes(dims_raw[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    if ndim == 3 and (dims[1] == 0 or dims[2] == 0):
        raise DataError(
            f"{name}: header declares images of {dims[1]}x{dims[2]}, rows and columns must be at least 1"
        )
    if ndim == 3 and dims[1] * dims[2] > np.iinfo(np.intp).max:
        # Zero such images hold no bytes, but NumPy cannot shape even an empty array so.
        raise DataError(
            f"{name}: header declares images of {dims[1]}x{dims[2]}, more bytes than an "
            f"array can index"
        )
    declared = math.prod(dims)
    what = _describe(dims)

    if size is not None:
        payload = size - header_len
        if payload != declared:
            raise DataError(
                f"{name}: header declares {what} but the {holder} holds {payload} bytes "
                f"after the {header_len}-byte header"
            )
        budget.charge(declared, f"the payload (the header declares {what})")
        out = np.empty(declared, dtype=np.uint8)
        got = _readinto_full(stream, memoryview(out))
        if got != declared:
            raise DataError(
                f"{name}: the {holder} shrank while being read ({got} of {declared} payload bytes)"
            )
        return out.reshape(dims)

    # Size unknown (gzip or a pipe): what the header declares is charged before anything
    # is inflated (a gzip bomb declares what it inflates to); then read in chunks so that a
    # garbage header costs only what the stream really holds, and stop one byte past the
    # declared size.
    budget.charge(declared, f"the payload (the header declares {what})")
    buf = bytearray()
    while len(buf) <= declared:
        chunk = stream.read(min(_CHUNK, declared + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    if len(buf) != declared:
        found = f"more than {declared}" if len(buf) > declared else str(len(buf))
        raise DataError(
            f"{name}: header declares {what} but the {holder} holds {found} bytes after the {header_len}-byte header"
        )
    return np.frombuffer(buf, dtype=np.uint8).reshape(dims)


def _describe(dims: tuple[int, ...]) -> str:
    if len(dims) == 3:
        return f"{dims[0]} images of {dims[1]}x{dims[2]} ({math.prod(dims)} bytes)"
    return f"{dims[0]} labels ({dims[0]} bytes)"


def _read_upto(stream: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _readinto_full(stream: IO[bytes], view: memoryview) -> int:
    done = 0
    while done < len(view):
        n = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not n:
            break
        done += n
    return done


# --------------------------------------------------------------------------- loaders


def load_mnist(
    split: str = "test",
    *,
    data_dir: StrPath | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Load MNIST handwritten digits: ``(images uint8 (N, 28, 28), labels uint8 (N,))``.

    `split` is ``"train"`` (60,000 images) or ``"test"`` (10,000). Files are looked up as
    the module docstring describes; with `download` the missing ones are fetched into the
    user cache and verified. `mirrors` replaces the base URLs of `MIRRORS`. Labels are 0..9.
    Raises `DataError` when the files are missing, corrupt or inconsistent.
    """
    return _load("mnist", split, data_dir, download, mirrors)


def load_fashion_mnist(
    split: str = "test",
    *,
    data_dir: StrPath | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Load Fashion-MNIST (Zalando): ``(images uint8 (N, 28, 28), labels uint8 (N,))``.

    Same contract as `load_mnist`; also found in Debian's ``dataset-fashion-mnist``
    package (``/usr/share/datasets/fashion-mnist``).
    """
    return _load("fashion-mnist", split, data_dir, download, mirrors)


def _load(
    dataset: str,
    split: str,
    data_dir: StrPath | None,
    download: bool,
    mirrors: Sequence[str] | None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    if split not in _FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    names = _FILES[split]
    dirs = _search_dirs(dataset, data_dir)
    for directory in dirs:
        found = [_find(directory, name) for name in names]
        if found[0] is not None and found[1] is not None:
            return _load_pair(found[0], found[1])

    title = _TITLES[dataset]
    if not download:
        raise DataError(
            _missing_message(dataset, split, dirs, "download=False, so nothing was downloaded.")
        )
    target = _cache_dir(dataset)
    bases = _mirror_bases(dataset, mirrors)
    paths: list[Path] = []
    for name in names:
        existing = _find(target, name)
        if existing is not None:
            paths.append(existing)
            continue
        checksum = CHECKSUMS.get(dataset, {}).get(name)
        if checksum is None:
            raise DataError(
                f"{title} {name}: no checksum known, refusing to download an unverifiable file"
            )
        urls = [base + name for base in bases]
        try:
            paths.append(fetch(name, urls, target, checksum))
        except DataError as exc:
            raise DataError(
                _missing_message(
                    dataset, split, dirs, f"Downloading {name} failed:\n  {_indent(str(exc))}"
                )
            ) from exc
    return _load_pair(paths[0], paths[1])


def load_directory(
    directory: StrPath, split: str = "test"
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Images and labels of `split` from exactly `directory`, with the official IDX file
    names (MNIST and Fashion-MNIST share them); nothing else is searched or downloaded."""
    if split not in _FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(directory).expanduser()
    found = [_find(folder, name) for name in _FILES[split]]
    if found[0] is None or found[1] is None:
        images, labels = _FILES[split]
        raise DataError(
            f"{folder}: expected {images} and {labels} (or the same names without .gz) "
            "in this directory"
        )
    return _load_pair(found[0], found[1])


def _load_pair(
    images_path: Path, labels_path: Path
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
        raise DataError(
            f"{images_path}: expected images of {_IMAGE_SHAPE[0]}x{_IMAGE_SHAPE[1]} (IDX magic 2051), "
            f"found an array of shape {images.shape}"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected labels (IDX magic 2049), found an array of shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "the two files must come from the same split"
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        index = int(np.argmax(labels >= _NUM_CLASSES))
        raise DataError(
            f"{labels_path}: labels must be 0..{_NUM_CLASSES - 1}, found {labels[index]} at index {index}"
        )
    return images, labels


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _search_dirs(dataset: str, data_dir: StrPath | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    env = os.environ.get("MLPINFER_DATA")
    if env:
        base = Path(env).expanduser()
        dirs += [base / dataset, base]
    dirs.append(_cache_dir(dataset))
    dirs += SYSTEM_DIRS.get(dataset, ())
    return dirs


def _cache_dir(dataset: str) -> Path:
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "mlpinfer" / dataset


def _mirror_bases(dataset: str, mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is not None:
        bases = list(mirrors)
    elif env := os.environ.get("MLPINFER_MIRROR"):
        # One tree for both datasets, laid out like $MLPINFER_DATA: <base>/<dataset>/<file>.
        bases = [f"{base.rstrip('/')}/{dataset}/" for base in env.split()]
    else:
        bases = list(MIRRORS.get(dataset, ()))
    return [base if base.endswith("/") else base + "/" for base in bases]


def _missing_message(dataset: str, split: str, dirs: list[Path], reason: str) -> str:
    title = _TITLES[dataset]
    images, labels = _FILES[split]
    searched = "\n".join(f"  {d}" for d in dirs)
    return (
        f"{title} {split} files not found. {reason}\n"
        f"Searched, in order:\n{searched}\n"
        f"Expected files: {images} and {labels} (or the same names without .gz).\n"
        f"Put them in one of these directories, or set MLPINFER_DATA to a directory holding "
        f"them (directly or in a subfolder named '{dataset}'), or pass data_dir=."
    )


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")
