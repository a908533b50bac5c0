"""Test helpers: the shared real data, the comparison with the reference, the one set of
network and file factories every test uses, and the hostile-file budget harness."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data; in CI its absence fails the test instead of skipping it."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; CI must provide ../shared beside the project")
        pytest.skip(f"{path} not available (the project expects ../shared/data)")
    return path



def reference_outputs(network, x, scale: float = 1.0) -> np.ndarray:
    """The float64 oracle (`mlpinfer.reference`) on ``network``'s layers for ``x`` (one
    sample a row; images are flattened), multiplied by ``scale`` first, then through the
    network's input transform."""
    from mlpinfer import reference

    return reference.forward(network.layers, np.asarray(x, np.float64).reshape(len(x), -1), scale,
                             input_transform=getattr(network, "input_transform", None))


def assert_close_to_reference(actual: np.ndarray, expected: np.ndarray, *, rtol: float = 1e-4,
                              atol: float = 1e-5) -> None:
    """|actual - expected| <= atol * max(1, max|expected|) + rtol * |expected| everywhere.

    The engine computes in float32 and the reference in float64; the absolute term
    scales with the largest output so that logits of any size are judged alike.
    NaN must appear in exactly the same places.
    """
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == np.float32, f"dtype {actual.dtype}, expected float32"
    nan_actual, nan_expected = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(nan_actual, nan_expected):
        where = tuple(int(i) for i in np.argwhere(nan_actual != nan_expected)[0])
        raise AssertionError(f"NaN mismatch at {where}: expected {expected[where]}, got {actual[where]}")
    finite = ~nan_expected
    if not finite.any():
        return
    magnitude = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    error = np.where(finite, np.abs(actual.astype(np.float64) - expected), 0.0)
    allowed = atol * magnitude + rtol * np.abs(np.where(finite, expected, 0.0))
    bad = error > allowed
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} values differ; first at {where}: "
            f"expected {expected[where]!r}, got {actual[where]!r} "
            f"(error {error[where]:.3g}, allowed {allowed[where]:.3g})"
        )


# The file a hostile pickle would create if any of its code ran.
MARKER = "pwned_marker"


class ReduceTo:
    """Pickles as a call of ``func(*args)``: what a hostile weight file carries."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --------------------------------------------------------------------------- networks and files

def random_params(widths=(4, 3, 2), *, rng=None, dtype=np.float32) -> dict[str, np.ndarray]:
    """``W1..Wn``, ``b1..bn`` for layers of these widths. Weights are scaled by
    1/sqrt(fan-in), which keeps activations near 1 at any depth, so that float32
    rounding is judged against outputs of a sensible size."""
    rng = np.random.default_rng(0) if rng is None else rng
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
        params[f"W{i}"] = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
        params[f"b{i}"] = (rng.standard_normal(n_out) * 0.5).astype(dtype)
    return params


def random_network(widths=(4, 3, 2), *, rng=None, hidden="sigmoid", output="softmax",
                   activations=None, input_scale=None, pixel_scale="auto", classes=None):
    """A network of `random_params` (float64 parameters, converted once by the network)."""
    import mlpinfer

    return mlpinfer.Network.from_params(
        random_params(widths, rng=rng, dtype=np.float64), hidden=hidden, output=output,
        activations=activations, input_scale=input_scale, pixel_scale=pixel_scale,
        classes=classes)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def npz_bytes(arrays, *, compressed=False) -> bytes:
    stream = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(stream, **arrays)
    return stream.getvalue()


def native_bytes(network=None, *, header: bytes | None = None) -> bytes:
    """What ``mlpinfer.save(network, "x.npz")`` writes; ``header`` replaces the JSON
    header's bytes when given."""
    from mlpinfer.formats import _npz

    network = network if network is not None else random_network(activations=["relu", "softmax"])
    arrays = dict(network.params())
    classes = None if network.classes is None else network.classes.tolist()
    text = header if header is not None else _npz.header_bytes(
        list(network.activations), network.input_scale, network.pixel_scale, classes).tobytes()
    arrays[_npz.HEADER_KEY] = np.frombuffer(text, dtype=np.uint8)
    return npz_bytes(arrays)


def zip_of_deflated(members: dict[str, bytes], *, repeat: int = 1) -> bytes:
    """A zip whose members are deflated once each and then written ``repeat`` times under
    numbered names (``name`` -> ``0name``, ``1name``...), which builds archives declaring
    gigabytes in a few seconds. Independent of `zipfile`'s writer."""
    local, central = bytearray(), bytearray()
    count = 0
    for name, data in members.items():
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = packer.compress(data) + packer.flush()
        crc = zlib.crc32(data)
        for copy in range(repeat):
            encoded = (f"{copy}{name}" if repeat > 1 else name).encode()
            fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0, crc, len(packed), len(data))
            offset = len(local)
            local += b"PK\x03\x04" + fields + struct.pack("<HH", len(encoded), 0) + encoded + packed
            central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields
                        + struct.pack("<HHHHHI", len(encoded), 0, 0, 0, 0, 0)
                        + struct.pack("<I", offset) + encoded)
            count += 1
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, count, count, len(central), len(local), 0)
    return bytes(local + central + end)


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array(stream, array, allow_pickle=False)
    return stream.getvalue()


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array of 1 or 3 dimensions as IDX."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _paeth(a: int, b: int, c: int) -> int:
    """The PNG spec's Paeth predictor, one byte at a time."""
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _png_filtered(pixels: np.ndarray, channels: int, filters: list[int]) -> bytes:
    """Each row of ``pixels`` (rows x bytes) encoded with its filter, per the PNG spec."""
    rows = pixels.reshape(pixels.shape[0], -1).astype(np.int32)
    encoded_rows = bytearray()
    previous = np.zeros(rows.shape[1], np.int32)
    for row, kind in zip(rows, filters, strict=True):
        left = np.concatenate([np.zeros(channels, np.int32), row[:-channels]])
        upper_left = np.concatenate([np.zeros(channels, np.int32), previous[:-channels]])
        if kind == 1:  # Sub
            encoded = (row - left) & 0xFF
        elif kind == 2:  # Up
            encoded = (row - previous) & 0xFF
        elif kind == 3:  # Average
            encoded = (row - (left + previous) // 2) & 0xFF
        elif kind == 4:  # Paeth
            encoded = np.array([(x - _paeth(a, b, c)) & 0xFF for x, a, b, c
                                in zip(row, left, previous, upper_left, strict=True)])
        else:
            encoded = row
        encoded_rows += bytes([kind]) + encoded.astype(np.uint8).tobytes()
        previous = row
    return bytes(encoded_rows)


def png_bytes(image=None, *, colour=0, filter_type=0, width=28, height=28, depth=8, raw=None,
              ihdr=None) -> bytes:
    """A PNG encoder independent of the reader under test. ``image`` (uint8, rows x
    columns, or rows x columns x 3 for ``colour`` 2) is encoded with ``filter_type`` (0
    none, 1 Sub, 2 Up, 3 Average, 4 Paeth; one for every row, or a list with one per row),
    as grey (``colour`` 0) or RGB (2; a grey image is repeated into the three channels);
    without it, ``raw`` is the filtered data (default: a blank ``width`` x ``height``
    image) and ``ihdr`` may replace the header."""
    if image is not None:
        height, width = image.shape[:2]
        channels = {0: 1, 2: 3}[colour]
        pixels = image if channels == 1 or image.ndim == 3 else np.repeat(image[:, :, None], 3,
                                                                          axis=2)
        filters = filter_type if isinstance(filter_type, list) else [filter_type] * height
        raw = _png_filtered(pixels, channels, filters)
    raw = raw if raw is not None else b"".join(b"\0" + bytes(width) for _ in range(height))
    header = ihdr if ihdr is not None else struct.pack(">IIBBBBB", width, height, depth, colour,
                                                       0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


# --------------------------------------------------------------------------- hostile-file budget

#: Issue 13's budget for refusing any hostile file, measured in a fresh process beyond
#: its imports.
HOSTILE_CPU_SECONDS = 1.0
HOSTILE_RSS_BYTES = 256 * 2**20

_FRESH_PROCESS = r"""
import json, os, resource, sys
import mlpinfer, mlpinfer.datasets, mlpinfer.formats
for optional in ("h5py", "onnx"):  # what the optional readers import, before measuring
    try:
        __import__(optional)
    except ImportError:
        pass
call = {"load": mlpinfer.load, "read_idx": mlpinfer.datasets.read_idx}[sys.argv[1]]
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a regression fails, not the machine

def status(field):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

# The peak RSS (VmHWM, ru_maxrss) carries the parent's over fork and exec: reset it to the
# current RSS, so that the peak measured below is the load's own.
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before_rss, before_cpu = status("VmRSS"), cpu()
try:
    call(sys.argv[2], **json.loads(sys.argv[3]))
    outcome = {"error": None, "message": ""}
except BaseException as error:
    outcome = {"error": type(error).__name__, "message": str(error)[:2000]}
outcome.update(cpu=cpu() - before_cpu, rss_growth=status("VmHWM") - before_rss,
               frameworks=sorted(m for m in ("keras", "torch", "tensorflow") if m in sys.modules))
print(json.dumps(outcome))
"""


def refused_in_fresh_process(path: Path, *, call: str = "load", error: str = "WeightsError",
                             match: str | None = None, options: dict | None = None) -> dict:
    """Run ``mlpinfer.load(path, **options)`` (or ``datasets.read_idx``) in a new interpreter with an
    empty HOME and check that it ends in ``error`` naming the file (and matching the regular
    expression ``match``) within `HOSTILE_CPU_SECONDS` of CPU and `HOSTILE_RSS_BYTES` of
    peak RSS growth beyond the imports, without importing Keras or torch and without
    writing to HOME. A crash (a signal) or any other outcome fails. Returns the report."""
    import re
    import subprocess
    import sys
    import tempfile

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("measures peak RSS through Linux's /proc/self/clear_refs")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home, "KERAS_HOME": os.path.join(home, ".keras")}
        done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, call, str(path),
                               json.dumps(options or {})],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        written = sorted(os.listdir(home))
    assert done.returncode == 0, (
        f"loading {path.name} ended the interpreter with code {done.returncode}: {done.stderr[-2000:]}")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    accepted = {error, "UnsupportedModelError"} if error == "WeightsError" else {error}
    assert outcome["error"] in accepted, f"{path.name}: expected {error}, got {outcome}"
    assert str(path) in outcome["message"], f"the message does not name the file: {outcome}"
    if match is not None:
        assert re.search(match, outcome["message"]), f"{match!r} not in {outcome['message']!r}"
    assert outcome["cpu"] < HOSTILE_CPU_SECONDS, f"{path.name}: {outcome['cpu']:.2f} s of CPU"
    assert outcome["rss_growth"] < HOSTILE_RSS_BYTES, (
        f"{path.name}: resident memory grew by {outcome['rss_growth'] / 2**20:.0f} MB")
    assert outcome["frameworks"] == [], f"reading {path.name} imported {outcome['frameworks']}"
    assert written == [], f"reading {path.name} wrote {written} into HOME"
    # Shown with `pytest -rP`: the figures SECURITY.md records.
    print(f"{path.name} ({path.stat().st_size:,} bytes): refused in {outcome['cpu']:.3f} s of CPU, "
          f"peak RSS +{outcome['rss_growth'] / 2**20:.1f} MB: {outcome['message'][len(str(path)) + 2:][:100]}")
    return outcome


def assert_refused(directory: Path, data: bytes, match: str | None = None, *, name="w.pkl",
                   **options):
    """``data`` as a file in ``directory`` is refused by ``mlpinfer.load(path, **options)``
    with a `WeightsError` naming it, and no code from it ran (no `MARKER` file appeared)."""
    import mlpinfer

    path = write(directory / name, data)
    with pytest.raises(mlpinfer.WeightsError, match=match) as raised:
        mlpinfer.load(path, **options)
    assert str(path) in str(raised.value), f"the message does not name the file: {raised.value}"
    assert not (directory / MARKER).exists(), "code from the file ran"
    return raised.value


def bytes_read_by_this_process() -> int:
    """Bytes this process has read from files so far (Linux: /proc/self/io)."""
    with open("/proc/self/io") as stats:
        for line in stats:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")
