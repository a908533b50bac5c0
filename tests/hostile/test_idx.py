"""Hostile and broken IDX files (MNIST's format), raw and gzip: truncations, corrupt
headers, garbage, and gzip bombs. Each must end in a `DataError` naming the file, within
the budget; what loads must equal the bytes the file holds. test_datasets.py covers the
single cases (empty, short, wrong magic, wrong type code, extra bytes); these are sweeps.
"""

from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest
from support import bytes_read_by_this_process, gz, idx_bytes, refused_in_fresh_process, write

from mlpinfer import DataError
from mlpinfer.datasets import parse_idx, read_idx

GOOD_IDX = idx_bytes(np.random.default_rng(1).integers(0, 256, (3, 5, 7), dtype=np.uint8))

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_idx_truncated_at_every_byte(compress):
    for cut in range(len(GOOD_IDX)):
        content = GOOD_IDX[:cut]
        with pytest.raises(DataError):
            parse_idx(gz(content) if compress else content)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_idx_random_bytes_behind_a_valid_magic(compress):
    rng = np.random.default_rng(2)
    for _ in range(200):
        content = rng.choice([b"\x00\x00\x08\x01", b"\x00\x00\x08\x03"]) + rng.bytes(
            int(rng.integers(0, 64)))
        try:
            array = parse_idx(gz(content) if compress else content)
        except DataError:
            continue
        # Accepted only when the header agreed with the payload exactly.
        header = 8 if content[3] == 1 else 16
        assert array.dtype == np.uint8
        assert array.tobytes() == content[header:]


def test_idx_header_corruptions_never_escape_as_other_errors():
    for position in range(16):
        for value in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            corrupt = bytearray(GOOD_IDX)
            corrupt[position] = value
            try:
                array = parse_idx(bytes(corrupt))
            except DataError:
                continue
            assert array.tobytes() == GOOD_IDX[16:]


def test_idx_gzip_random_bytes():
    rng = np.random.default_rng(4)
    for _ in range(100):
        with pytest.raises(DataError):
            parse_idx(b"\x1f\x8b" + rng.bytes(int(rng.integers(0, 200))))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts reads in /proc/self/io")
def test_idx_several_gigabytes_of_garbage(tmp_path):
    path = tmp_path / "images"
    with open(path, "wb") as stream:
        stream.write(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 28, 28))
        stream.truncate(4 * 2**30)
    before = bytes_read_by_this_process()
    with pytest.raises(DataError, match="10 images"):
        read_idx(path)
    assert bytes_read_by_this_process() - before < 2**20



def _gzip_member_of_zeros(size: int) -> bytes:
    return gzip.compress(bytes(size), compresslevel=9, mtime=0)


def test_a_gzip_bomb_is_refused_before_inflating(tmp_path):
    # The red team's file: a header declaring 2.1 GB of images, then gzip members that
    # really inflate to it (one 16 MiB member of zeros, 2 KB deflated, written 128 times:
    # gzip readers take concatenated members as one stream). 2 MB -> 2.1 GB before.
    count = 128 * (16 << 20) // (28 * 28)
    head = gz(struct.pack(">IIII", 2051, count, 28, 28))
    path = write(tmp_path / "images.gz", head + _gzip_member_of_zeros(16 << 20) * 128)
    assert path.stat().st_size < 3 << 20
    outcome = refused_in_fresh_process(path, call="read_idx", error="DataError",
                                       match=f"declares {count} images.*budget of this load")
    assert outcome["rss_growth"] < 64 << 20


def test_max_bytes_reads_a_genuinely_compressible_file(tmp_path):
    images = np.zeros((30_000, 28, 28), np.uint8)  # 23.5 MB of zeros in 23 KB
    path = write(tmp_path / "images.gz", gz(idx_bytes(images)))
    with pytest.raises(DataError, match="pass max_bytes="):
        read_idx(path)
    assert read_idx(path, max_bytes=images.nbytes).shape == images.shape
    with pytest.raises(DataError, match="pass max_bytes="):
        parse_idx(path.read_bytes(), name="x")


def test_what_loads_equals_the_payload_raw_and_gzip(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (17, 28, 28), dtype=np.uint8)
    raw = idx_bytes(images)
    for data in (raw, gz(raw), gz(raw[:9]) + gz(raw[9:])):
        array = read_idx(write(tmp_path / "images", data))
        assert array.tobytes() == raw[16:]
        assert array.shape == images.shape
