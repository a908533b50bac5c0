"""Tests of mlpinfer.datasets: the IDX reader, the file lookup order and verified downloads.

Nothing here reaches the internet: an autouse fixture points every mirror at a closed local
port, and download tests run their own HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support import gz, idx_bytes

from mlpinfer import datasets
from mlpinfer._errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_MIRRORS = dict(datasets.MIRRORS)
DEFAULT_SYSTEM_DIRS = dict(datasets.SYSTEM_DIRS)

TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")

# From /work/shared/data/README.md, written out again so that a typo in the module's table
# cannot make the module agree with itself.
README_SHA256 = {
    (
        "mnist",
        "t10k-images-idx3-ubyte.gz",
    ): "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    (
        "mnist",
        "t10k-labels-idx1-ubyte.gz",
    ): "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    (
        "fashion-mnist",
        "train-images-idx3-ubyte.gz",
    ): "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    (
        "fashion-mnist",
        "train-labels-idx1-ubyte.gz",
    ): "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    (
        "fashion-mnist",
        "t10k-images-idx3-ubyte.gz",
    ): "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    (
        "fashion-mnist",
        "t10k-labels-idx1-ubyte.gz",
    ): "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
README_MD5_GZ = {
    ("mnist", "train-images-idx3-ubyte.gz"): "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ("mnist", "train-labels-idx1-ubyte.gz"): "d53e105ee54ea40749a09fcbcd1e9432",
}


# --------------------------------------------------------------------------- helpers


def header(magic: int, *dims: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def make_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def write_split(
    directory: Path, n: int, *, split: str = "test", compress: bool = True, seed: int = 0
):
    """Write a synthetic split of `n` samples; return (images, labels)."""
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = make_split(n, seed)
    names = TEST_FILES if split == "test" else TRAIN_FILES
    for name, array in zip(names, (images, labels), strict=True):
        data = idx_bytes(array)
        if compress:
            (directory / name).write_bytes(gz(data))
        else:
            (directory / name.removesuffix(".gz")).write_bytes(data)
    return images, labels


def sha256_decompressed(path: Path) -> str:
    with gzip.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fresh HOME and cache, no env overrides, no system dirs, mirrors on a closed port."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("MLPINFER_DATA", raising=False)
    monkeypatch.delenv("MLPINFER_MIRROR", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {})
    dead = f"http://127.0.0.1:{closed_port()}/"
    monkeypatch.setattr(datasets, "MIRRORS", {"mnist": (dead,), "fashion-mnist": (dead,)})
    return home


def cache(home: Path, dataset: str = "mnist") -> Path:
    return home / ".cache" / "mlpinfer" / dataset


# --------------------------------------------------------------------------- local server


class _Server(http.server.HTTPServer):
    routes: dict[str, tuple[int, bytes, int | None]]
    requests: list[str]

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), a DNS look-up this offline
        # machine does not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        status, body, length = route
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        # `length` lets a test announce more bytes than it sends: a cut connection.
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class LocalMirror:
    def __init__(self, server: _Server) -> None:
        self._server = server
        self.base = f"http://127.0.0.1:{server.server_port}/"

    def serve(
        self, path: str, body: bytes, *, status: int = 200, length: int | None = None
    ) -> None:
        self._server.routes["/" + path] = (status, body, length)

    @property
    def requests(self) -> list[str]:
        return self._server.requests


@pytest.fixture
def mirror() -> Iterator[LocalMirror]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes = {}
    server.requests = []
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield LocalMirror(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_split(
    mirror: LocalMirror,
    monkeypatch: pytest.MonkeyPatch,
    n: int = 5,
    *,
    prefix: str = "",
    dataset: str = "mnist",
    kind: str = "sha256-decompressed",
) -> tuple[np.ndarray, np.ndarray]:
    """Serve a synthetic test split and make the checksum table expect exactly it."""
    images, labels = make_split(n, seed=42)
    table = dict(datasets.CHECKSUMS[dataset])
    for name, array in zip(TEST_FILES, (images, labels), strict=True):
        raw = idx_bytes(array)
        body = gz(raw)
        mirror.serve(prefix + name, body)
        if kind == "sha256-decompressed":
            table[name] = datasets.Checksum(kind, hashlib.sha256(raw).hexdigest())
        else:
            table[name] = datasets.Checksum(kind, hashlib.md5(body).hexdigest())
    monkeypatch.setitem(datasets.CHECKSUMS, dataset, table)
    return images, labels


# --------------------------------------------------------------------------- IDX round trip


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    "shape", [(0, 28, 28), (1, 1, 1), (7, 3, 5), (13, 28, 28), (0,), (1,), (257,)]
)
def test_round_trip(tmp_path: Path, shape: tuple[int, ...], compress: bool) -> None:
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    expected = rng.integers(0, 256, size=shape, dtype=np.uint8)
    data = idx_bytes(expected)
    if compress:
        data = gz(data)
    path = tmp_path / "file.idx"
    path.write_bytes(data)
    for actual in (datasets.read_idx(path), datasets.read_idx(str(path)), datasets.parse_idx(data)):
        assert actual.dtype == np.uint8
        assert actual.shape == shape
        assert actual.flags.c_contiguous
        assert actual.flags.writeable
        np.testing.assert_array_equal(actual, expected)


def test_compression_detected_from_content_not_name(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    lying_gz = tmp_path / "labels.gz"
    lying_gz.write_bytes(idx_bytes(labels))
    lying_raw = tmp_path / "labels-idx1-ubyte"
    lying_raw.write_bytes(gz(idx_bytes(labels)))
    np.testing.assert_array_equal(datasets.read_idx(lying_gz), labels)
    np.testing.assert_array_equal(datasets.read_idx(lying_raw), labels)


def test_multi_member_gzip(tmp_path: Path) -> None:
    labels = np.arange(20, dtype=np.uint8)
    data = idx_bytes(labels)
    path = tmp_path / "labels.gz"
    path.write_bytes(gz(data[:12]) + gz(data[12:]))
    np.testing.assert_array_equal(datasets.read_idx(path), labels)


# --------------------------------------------------------------------------- real data


def test_real_mnist_test_split() -> None:
    if not (SHARED_MNIST / TEST_FILES[0]).is_file():
        pytest.skip(f"reference MNIST test files not found in {SHARED_MNIST}")
    for name in TEST_FILES:
        actual = sha256_decompressed(SHARED_MNIST / name)
        assert actual == README_SHA256["mnist", name], name
        assert datasets.CHECKSUMS["mnist"][name] == ("sha256-decompressed", actual)
    images = datasets.read_idx(SHARED_MNIST / TEST_FILES[0])
    labels = datasets.read_idx(SHARED_MNIST / TEST_FILES[1])
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert labels.dtype == np.uint8
    # The first ten MNIST test labels are well known; the class counts sum to 10,000.
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels, minlength=10).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    loaded_images, loaded_labels = datasets.load_mnist(
        "test", data_dir=SHARED_MNIST, download=False
    )
    np.testing.assert_array_equal(loaded_images, images)
    np.testing.assert_array_equal(loaded_labels, labels)


@pytest.mark.parametrize(("split", "n"), [("test", 10000), ("train", 60000)])
def test_real_fashion_mnist_from_debian(
    monkeypatch: pytest.MonkeyPatch, split: str, n: int
) -> None:
    names = TEST_FILES if split == "test" else TRAIN_FILES
    if not all((DEBIAN_FASHION / name).is_file() for name in names):
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({DEBIAN_FASHION})")
    for name in names:
        assert sha256_decompressed(DEBIAN_FASHION / name) == README_SHA256["fashion-mnist", name], (
            name
        )
        assert (
            datasets.CHECKSUMS["fashion-mnist"][name].hexdigest
            == README_SHA256["fashion-mnist", name]
        )
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {"fashion-mnist": (DEBIAN_FASHION,)})
    images, labels = datasets.load_fashion_mnist(split, download=False)
    assert images.shape == (n, 28, 28)
    assert labels.shape == (n,)
    # Fashion-MNIST is balanced: every class has a tenth of the split.
    assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10


def test_checksum_table_matches_readme() -> None:
    for (dataset, name), digest in README_SHA256.items():
        assert datasets.CHECKSUMS[dataset][name] == ("sha256-decompressed", digest)
    for (dataset, name), digest in README_MD5_GZ.items():
        assert datasets.CHECKSUMS[dataset][name] == ("md5-gz", digest)


# --------------------------------------------------------------------------- corrupt input

GOOD_IMAGES = idx_bytes(np.zeros((3, 28, 28), np.uint8))
GOOD_LABELS = idx_bytes(np.arange(3, dtype=np.uint8))

CORRUPT = {
    # case: (content, fragments the message must contain)
    "empty": (b"", ["empty"]),
    "short magic": (b"\x00\x00", ["2 bytes", "magic"]),
    "wrong magic": (
        header(2052, 3, 28, 28) + bytes(3 * 784),
        ["expected IDX magic 2049", "2051", "found 2052"],
    ),
    "int32 type code": (header(0x0C03, 3, 28, 28) + bytes(4 * 3 * 784), ["found 3075"]),
    "short header": (header(2051, 3, 28), ["16-byte header", "ends after 12 bytes"]),
    "zero rows": (header(2051, 3, 0, 28), ["0x28", "at least 1"]),
    # found by fuzz/fuzz_idx.py: NumPy refused the shape with a ValueError
    "zero images of 2^63 bytes": (
        header(2051, 0, 2885812224, 4160752128),
        ["2885812224x4160752128", "more bytes than an array can index"],
    ),
    "truncated images": (
        GOOD_IMAGES[:-1],
        ["declares 3 images of 28x28 (2352 bytes)", "holds 2351 bytes"],
    ),
    "truncated labels": (GOOD_LABELS[:-2], ["declares 3 labels (3 bytes)", "holds 1 bytes"]),
    "extra bytes": (GOOD_IMAGES + b"\x00", ["declares 3 images of 28x28 (2352 bytes)", "2353"]),
    "header only": (header(2049, 10), ["declares 10 labels", "holds 0 bytes"]),
    "huge declared size": (
        header(2051, 2**32 - 1, 2**16, 2**16) + bytes(100),
        ["declares 4294967295 images", "100 bytes"],
    ),
    "random bytes": (
        np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        ["expected IDX magic"],
    ),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_file(tmp_path: Path, case: str, compress: bool) -> None:
    content, fragments = CORRUPT[case]
    if compress:
        content = gz(content)
        fragments = [f.replace("2353", "more than 2352") for f in fragments]
        if case == "huge declared size":  # compressed, a declaration is all there is to check
            fragments = ["declares 4294967295 images", "budget of this load"]
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(content)
    for read in (
        lambda: datasets.read_idx(path),
        lambda: datasets.parse_idx(content, name=str(path)),
    ):
        with pytest.raises(DataError) as info:
            read()
        message = str(info.value)
        assert message.startswith(str(path)), message
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"


def test_data_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        datasets.parse_idx(b"")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated stream"),
        pytest.param(lambda b: b[:-8] + bytes(8), id="bad crc and size"),
        pytest.param(
            lambda b: b[:12] + bytes(b ^ 0xFF for b in b[12:40]) + b[40:], id="garbled deflate"
        ),
        pytest.param(lambda b: b[:3] + b"\xff" + b[4:], id="bad gzip flags"),
        pytest.param(lambda b: b + b"garbage", id="trailing garbage"),
    ],
)
def test_corrupt_gzip_stream(tmp_path: Path, mangle) -> None:
    rng = np.random.default_rng(3)
    content = mangle(gz(idx_bytes(rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))))
    path = tmp_path / "images.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"images\.gz: (corrupt gzip stream|header declares)"):
        datasets.read_idx(path)


def test_missing_file_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.gz: cannot open"):
        datasets.read_idx(tmp_path / "nope.gz")


def test_huge_garbage_is_not_read_past_declared_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Raw: a 1 GB sparse file with a 10-label header fails on its size alone.
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.write(header(2049, 10))
        f.truncate(2**30)
    with pytest.raises(DataError, match="holds 1073741816 bytes"):
        datasets.read_idx(sparse)

    # Gzip: 64 MB of zeros behind a 10-label header; count what is decompressed.
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(header(2049, 10) + bytes(64 * 2**20), compresslevel=1, mtime=0))
    decompressed = 0
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        nonlocal decompressed
        data = real_read(self, size)
        decompressed += len(data)
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    with pytest.raises(DataError, match="holds more than 10 bytes"):
        datasets.read_idx(bomb)
    assert decompressed == 8 + 11  # header, then one byte past the 10 declared


def test_load_count_mismatch(tmp_path: Path) -> None:
    images, labels = make_split(5)
    (tmp_path / TEST_FILES[0]).write_bytes(gz(idx_bytes(images)))
    (tmp_path / TEST_FILES[1]).write_bytes(gz(idx_bytes(labels[:4])))
    with pytest.raises(
        DataError, match=r"holds 5 images but .*t10k-labels-idx1-ubyte.gz holds 4 labels"
    ):
        datasets.load_mnist(data_dir=tmp_path, download=False)


def test_load_swapped_files(tmp_path: Path) -> None:
    images, labels = make_split(5)
    (tmp_path / TEST_FILES[0]).write_bytes(gz(idx_bytes(labels)))
    (tmp_path / TEST_FILES[1]).write_bytes(gz(idx_bytes(images)))
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte.gz: expected images of 28x28 .* shape \(5,\)"
    ):
        datasets.load_mnist(data_dir=tmp_path, download=False)


def test_load_wrong_image_size(tmp_path: Path) -> None:
    (tmp_path / TEST_FILES[0]).write_bytes(idx_bytes(np.zeros((2, 27, 28), np.uint8)))
    (tmp_path / TEST_FILES[1]).write_bytes(idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataError, match=r"expected images of 28x28 .* shape \(2, 27, 28\)"):
        datasets.load_mnist(data_dir=tmp_path, download=False)


def test_load_label_out_of_range(tmp_path: Path) -> None:
    images, labels = make_split(5)
    labels[3] = 10
    (tmp_path / TEST_FILES[0]).write_bytes(idx_bytes(images))
    (tmp_path / TEST_FILES[1]).write_bytes(idx_bytes(labels))
    with pytest.raises(DataError, match=r"labels must be 0\.\.9, found 10 at index 3"):
        datasets.load_mnist(data_dir=tmp_path, download=False)


def test_bad_split() -> None:
    with pytest.raises(DataError, match="split must be 'train' or 'test', got 'val'"):
        datasets.load_mnist("val")


# --------------------------------------------------------------------------- lookup order


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("split", ["test", "train"])
def test_explicit_dir(tmp_path: Path, split: str, compress: bool) -> None:
    images, labels = write_split(tmp_path / "d", 6, split=split, compress=compress)
    got_images, got_labels = datasets.load_mnist(split, data_dir=tmp_path / "d", download=False)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_lookup_order(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A distinct sample count marks each location, so the count tells which one was used.
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    xdg = tmp_path / "xdg"
    write_split(explicit, 1)
    write_split(env / "mnist", 2)
    write_split(env, 3)
    write_split(xdg / "mlpinfer" / "mnist", 4)
    write_split(cache(isolated), 5)
    monkeypatch.setenv("MLPINFER_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))

    def count(**kwargs) -> int:
        return len(datasets.load_mnist(download=False, **kwargs)[1])

    assert count(data_dir=explicit) == 1
    assert count(data_dir=tmp_path / "empty") == 2
    assert count() == 2
    (env / "mnist" / TEST_FILES[1]).unlink()  # an incomplete pair is passed over
    assert count() == 3
    monkeypatch.delenv("MLPINFER_DATA")
    assert count() == 4
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert count() == 5
    # The XDG spec says a relative XDG_CACHE_HOME is ignored.
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert count() == 5


def test_env_dir_subfolder_per_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_split(tmp_path / "mnist", 2)
    write_split(tmp_path / "fashion-mnist", 3)
    monkeypatch.setenv("MLPINFER_DATA", str(tmp_path))
    assert len(datasets.load_mnist(download=False)[1]) == 2
    assert len(datasets.load_fashion_mnist(download=False)[1]) == 3


def test_system_dir_is_last_local_place(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_split(tmp_path / "debian", 7)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {"fashion-mnist": (tmp_path / "debian",)})
    assert len(datasets.load_fashion_mnist(download=False)[1]) == 7
    write_split(cache(isolated, "fashion-mnist"), 8)
    assert len(datasets.load_fashion_mnist(download=False)[1]) == 8
    with pytest.raises(DataError):
        datasets.load_mnist(download=False)


def test_default_locations() -> None:
    # Read from the values saved at import, before the autouse fixture replaced them.
    assert {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)} == DEFAULT_SYSTEM_DIRS
    assert DEFAULT_MIRRORS["mnist"] == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    )
    assert DEFAULT_MIRRORS["fashion-mnist"] == (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )


def test_not_found_without_download(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPINFER_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        datasets.load_fashion_mnist("train", data_dir=tmp_path / "mine", download=False)
    message = str(info.value)
    for fragment in [
        "Fashion-MNIST train files not found",
        "download=False",
        str(tmp_path / "mine"),
        str(tmp_path / "env" / "fashion-mnist"),
        str(cache(isolated, "fashion-mnist")),
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "MLPINFER_DATA",
    ]:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert leftovers(isolated / ".cache") == []


# --------------------------------------------------------------------------- download


def test_download_lands_in_cache(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = serve_split(mirror, monkeypatch)
    got_images, got_labels = datasets.load_mnist(mirrors=[mirror.base])
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert leftovers(cache(isolated)) == sorted(TEST_FILES)
    # Second call: found in the cache, no request.
    before = len(mirror.requests)
    datasets.load_mnist(mirrors=[mirror.base])
    assert len(mirror.requests) == before


def test_download_md5_of_gz(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, _ = serve_split(mirror, monkeypatch, kind="md5-gz")
    np.testing.assert_array_equal(datasets.load_mnist(mirrors=[mirror.base])[0], images)


def test_download_with_module_mirrors(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_split(mirror, monkeypatch, dataset="fashion-mnist")
    monkeypatch.setitem(datasets.MIRRORS, "fashion-mnist", (mirror.base.rstrip("/"),))
    assert len(datasets.load_fashion_mnist()[1]) == 5
    assert leftovers(cache(isolated, "fashion-mnist")) == sorted(TEST_FILES)


def test_download_with_env_mirror(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_split(mirror, monkeypatch, prefix="mnist/")
    monkeypatch.setenv("MLPINFER_MIRROR", mirror.base)
    assert len(datasets.load_mnist()[1]) == 5


def test_download_falls_back_to_next_mirror(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_split(mirror, monkeypatch, prefix="good/")
    assert len(datasets.load_mnist(mirrors=[mirror.base + "bad/", mirror.base + "good/"])[1]) == 5
    assert "/bad/t10k-images-idx3-ubyte.gz" in mirror.requests


def test_download_only_missing_file(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, _ = serve_split(mirror, monkeypatch)
    cache(isolated).mkdir(parents=True)
    (cache(isolated) / TEST_FILES[0]).write_bytes(gz(idx_bytes(images)))
    datasets.load_mnist(mirrors=[mirror.base])
    assert mirror.requests == ["/" + TEST_FILES[1]]


def test_download_real_mnist_with_real_checksums(isolated: Path, mirror: LocalMirror) -> None:
    if not (SHARED_MNIST / TEST_FILES[0]).is_file():
        pytest.skip(f"reference MNIST test files not found in {SHARED_MNIST}")
    for name in TEST_FILES:
        mirror.serve(name, (SHARED_MNIST / name).read_bytes())
    images, labels = datasets.load_mnist(mirrors=[mirror.base])
    assert images.shape == (10000, 28, 28)
    assert labels[:3].tolist() == [7, 2, 1]
    assert leftovers(cache(isolated)) == sorted(TEST_FILES)


def test_download_real_checksum_rejects_other_data(isolated: Path, mirror: LocalMirror) -> None:
    images, labels = make_split(5)
    mirror.serve(TEST_FILES[0], gz(idx_bytes(images)))
    mirror.serve(TEST_FILES[1], gz(idx_bytes(labels)))
    with pytest.raises(DataError, match="checksum mismatch: SHA-256 of the decompressed data"):
        datasets.load_mnist(mirrors=[mirror.base])
    assert leftovers(cache(isolated)) == []


def test_download_checksum_mismatch(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, _ = serve_split(mirror, monkeypatch)
    images[0, 0, 0] ^= 1
    mirror.serve(TEST_FILES[0], gz(idx_bytes(images)))
    with pytest.raises(DataError) as info:
        datasets.load_mnist(mirrors=[mirror.base])
    message = str(info.value)
    assert "Downloading t10k-images-idx3-ubyte.gz failed" in message
    assert "checksum mismatch" in message
    assert "MLPINFER_DATA" in message
    assert leftovers(cache(isolated)) == []


def test_download_connection_cut(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_split(mirror, monkeypatch)
    body = mirror._server.routes["/" + TEST_FILES[0]][1]
    mirror.serve(TEST_FILES[0], body[: len(body) // 2], length=len(body))
    with pytest.raises(
        DataError, match=rf"connection closed after {len(body) // 2} of {len(body)} bytes"
    ):
        datasets.load_mnist(mirrors=[mirror.base])
    assert leftovers(cache(isolated)) == []


def test_download_shorter_file(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_split(mirror, monkeypatch)
    body = mirror._server.routes["/" + TEST_FILES[1]][1]
    mirror.serve(TEST_FILES[1], body[:-10])
    with pytest.raises(
        DataError, match=r"(?s)t10k-labels-idx1-ubyte.gz failed.*not a valid gzip file"
    ):
        datasets.load_mnist(mirrors=[mirror.base])
    # The images downloaded fine and stay; the bad labels left nothing.
    assert leftovers(cache(isolated)) == [TEST_FILES[0]]


def test_download_unknown_checksum_refused(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_split(mirror, monkeypatch)
    monkeypatch.delitem(datasets.CHECKSUMS["mnist"], TEST_FILES[0])
    with pytest.raises(DataError, match="no checksum known"):
        datasets.load_mnist(mirrors=[mirror.base])
    assert mirror.requests == []


def assert_where_to_put(message: str, isolated: Path) -> None:
    for fragment in [
        "MNIST test files not found",
        "Downloading t10k-images-idx3-ubyte.gz failed",
        str(cache(isolated)),
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
        "MLPINFER_DATA",
        "Put them in one of these directories",
    ]:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_download_404(isolated: Path, mirror: LocalMirror) -> None:
    with pytest.raises(DataError) as info:
        datasets.load_mnist(mirrors=[mirror.base])
    assert_where_to_put(str(info.value), isolated)
    assert f"{mirror.base}t10k-images-idx3-ubyte.gz: HTTP 404" in str(info.value)
    assert leftovers(cache(isolated)) == []


def test_download_no_server(isolated: Path) -> None:
    # The autouse fixture points MIRRORS at a closed port.
    with pytest.raises(DataError) as info:
        datasets.load_mnist()
    assert_where_to_put(str(info.value), isolated)
    assert "cannot connect" in str(info.value)
    assert leftovers(cache(isolated)) == []


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_only_on_terminal(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    serve_split(mirror, monkeypatch)
    stderr = _FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    datasets.load_mnist(mirrors=[mirror.base])
    if terminal:
        assert "t10k-images-idx3-ubyte.gz [" in stderr.getvalue()
        assert "100%" in stderr.getvalue()
    else:
        assert stderr.getvalue() == ""


def test_no_part_files_left_by_interrupt(
    isolated: Path, mirror: LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_split(mirror, monkeypatch)
    from mlpinfer import _download

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_download, "_verify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datasets.load_mnist(mirrors=[mirror.base])
    assert leftovers(cache(isolated)) == []
    assert os.path.isdir(cache(isolated))
