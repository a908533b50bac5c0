"""The one registry of weight-file formats: how each is recognised, read and written.

A format is one `Format` entry (usually one module's ``FORMAT``) registered once with
`register`. `mlpinfer.load` recognises a file by its content (`Probe`): the specific
formats are asked first, in registration order, then the catch-alls (a zip that no
other format claims is read as an ``.npz``, anything else as a pickle), so that the
order of registration does not matter among specific formats. `mlpinfer.save` picks the
writer by the destination's suffix.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .._errors import WeightsError
from .._network import Network
from ._budget import MAX_ZIP_MEMBERS, Budget, declared_member_count

__all__ = ["OPTIONS", "Format", "Probe", "Request", "describe_options", "formats", "probe",
           "recognise", "register", "writer_for", "writers"]

#: The keywords of `mlpinfer.load` that a format may take (`Format.options`).
OPTIONS = ("hidden", "output", "input_scale", "architecture")

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
PROBE_BYTES = 64


@dataclass(frozen=True)
class Probe:
    """What recognising a file may look at: its first `PROBE_BYTES` bytes, and for a zip
    its member names (``None`` when the zip is unreadable or has too many members: the
    reader then says why)."""

    head: bytes
    zip_names: tuple[str, ...] | None

    @property
    def is_zip(self) -> bool:
        return self.head.startswith(_ZIP_MAGICS)


@dataclass(frozen=True)
class Request:
    """One load: the file, its budget, and the options as the format sees them (``hidden``
    and ``output`` already defaulted from the caller, a shipped network, or sigmoid and
    softmax)."""

    path: Path
    size: int
    budget: Budget
    hidden: str
    output: str
    input_scale: float | None
    architecture: Sequence[str] | None
    pixel_scale: float | None = None
    #: The caller's ``max_bytes`` (None: the budget is `limit_for` the file's size, which
    #: a format whose weights live in other files, ONNX external data, may recompute).
    max_bytes: int | None = None

    @property
    def name(self) -> str:
        return os.fspath(self.path)

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """The file, opened for reading; failing to open it is a `WeightsError`."""
        try:
            stream = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            raise WeightsError(
                f"cannot read weight file {self.name!r}: {error.strerror or error}") from None
        with stream:
            yield stream

    def network_from(self, params: Mapping[str, np.ndarray]) -> Network:
        """A network from parameters that record no activations (textbook pickle, npz):
        uint8 pixels / 255 as the textbook's, unless the caller stated another scale."""
        return Network.from_params(
            params, hidden=self.hidden, output=self.output, input_scale=self.input_scale,
            pixel_scale="auto" if self.pixel_scale is None else self.pixel_scale)


@dataclass(frozen=True)
class Format:
    """One weight-file format.

    ``recognise(probe)`` says whether a file's content is this format; a ``catch_all``
    format is asked only after every specific one. ``read(request)`` returns the network
    or raises `WeightsError` (``None``: recognised only to refuse it, with ``refusal``).
    ``write(network, path)`` writes it atomically (``None``: not written); ``suffixes``
    are the destination suffixes that select this writer. ``options`` are the keywords of
    `mlpinfer.load` the format takes; ``records`` says, in refusals of the others, what
    the file records instead.
    """

    name: str
    description: str
    recognise: Callable[[Probe], bool]
    read: Callable[[Request], Network] | None
    write: Callable[[Network, Path], None] | None = None
    suffixes: tuple[str, ...] = ()
    options: frozenset[str] = frozenset()
    records: str = "its activations"
    catch_all: bool = False
    refusal: str = ""


_FORMATS: list[Format] = []


def register(entry: Format) -> Format:
    """Add a format; its name and suffixes must be new."""
    taken = {f.name for f in _FORMATS}
    suffixes = {s for f in _FORMATS for s in f.suffixes}
    unknown = entry.options - set(OPTIONS)
    if entry.name in taken or suffixes & set(entry.suffixes) or unknown:
        raise ValueError(
            f"format {entry.name!r}: name or suffixes {entry.suffixes} already registered, "
            f"or unknown options {sorted(unknown)}")
    _FORMATS.append(entry)
    return entry


def formats() -> tuple[Format, ...]:
    """The registered formats, in the order they are asked."""
    return tuple(f for f in _FORMATS if not f.catch_all) + tuple(f for f in _FORMATS if f.catch_all)


def probe(stream: BinaryIO) -> Probe:
    head = stream.read(PROBE_BYTES)
    names = None
    if head.startswith(_ZIP_MAGICS):
        names = _zip_names(stream)
    stream.seek(0)
    return Probe(head, names)


def _zip_names(stream: BinaryIO) -> tuple[str, ...] | None:
    stream.seek(0)
    if (declared_member_count(stream) or 0) > MAX_ZIP_MEMBERS:
        return None
    try:
        with zipfile.ZipFile(stream) as archive:
            return tuple(archive.namelist())
    except Exception:  # noqa: BLE001 - the reader of the format reports a broken zip
        return None


def recognise(found: Probe) -> Format | None:
    """The first format whose `Format.recognise` says yes (pickle takes anything that is
    not a zip, so only an unregistered catch-all leaves None)."""
    return next((entry for entry in formats() if entry.recognise(found)), None)


def writers() -> dict[str, str]:
    """Destination suffix -> what is written there."""
    return {suffix: f.description for f in _FORMATS if f.write for suffix in f.suffixes}


def writer_for(path: Path) -> Format:
    suffix = path.suffix.lower()
    for entry in _FORMATS:
        if entry.write is not None and suffix in entry.suffixes:
            return entry
    known = ", ".join(f"{s} ({what})" for s, what in writers().items())
    raise ValueError(f"cannot tell the format to write from {path.name!r}; use one of {known}")


def describe_options(entry: Format, given: Sequence[str]) -> str:
    return (f"{entry.description} records {entry.records}; do not pass {', '.join(given)}"
            + ("" if "architecture" not in given or "architecture" in entry.options
               else " (architecture is only for a bare PyTorch state_dict)"))

