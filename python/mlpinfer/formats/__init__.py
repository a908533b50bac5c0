"""Weight files: every format mlpinfer reads and writes, behind one registry.

`load` recognises a file by its content and reads it as data only, within a budget of
bytes (`DEFAULT_MAX_BYTES`, or 100 times the file's size from 16 MiB on, whichever is
smaller; ``max_bytes=`` replaces it); `save` writes the format that the destination's
suffix names; `convert` does both. Each format is one module and one `register` line
(see `Format`); the restricted unpickler, the security boundary, is `_unpickler`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .. import _shipped
from .._errors import WeightsError
from .._network import Network
from .._params import is_float32_number
from . import _legacy_h5, _npz, _pickle, keras, onnx, torch
from ._budget import DEFAULT_MAX_BYTES, Budget, limit_for
from ._registry import (
    Format,
    Probe,
    Request,
    describe_options,
    formats,
    probe,
    recognise,
    register,
    writer_for,
    writers,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Format",
    "Probe",
    "Request",
    "convert",
    "formats",
    "load",
    "register",
    "save",
    "writers",
]

register(_npz.NATIVE)
register(_npz.NPZ)
register(_pickle.FORMAT)
register(_legacy_h5.FORMAT)
register(keras.FORMAT)
register(torch.FORMAT)
register(torch.LEGACY_FORMAT)
register(onnx.FORMAT)


def load(
    path: str | os.PathLike[str],
    *,
    hidden: str | None = None,
    output: str | None = None,
    input_scale: float | None = None,
    architecture: Sequence[str] | None = None,
    pixel_scale: float | None = None,
    max_bytes: int | None = None,
) -> Network:
    """Load a network from a weight file, or a shipped network by name.

    The format is recognised by content: the native ``.npz`` (`save`), a textbook
    ``sample_weight.pkl``-style pickle or ``.npz`` (``W1..Wn``, ``b1..bn``), ONNX, Keras
    (``.keras``) or PyTorch. Files are read as data: no code from them runs.

    A textbook file records no activations: hidden layers use ``hidden`` (default
    sigmoid), the last ``output`` (default softmax), and ``input_scale`` applies. A bare
    PyTorch state_dict needs ``architecture``, its ``nn.Sequential`` layer names. Passing
    an option that the file records itself is an error.

    uint8 input (pixels) of a textbook file is divided by 255, the textbook's
    normalisation, unless ``pixel_scale`` says otherwise (1.0 for raw 0..255 training).
    Other files record their pixel scale (`save` writes it) or, when they cannot say,
    leave it unknown, and uint8 input is refused until ``pixel_scale`` states it (see
    `Network`); a file that records one refuses a different one.

    What a load may allocate is at most ``max_bytes`` (default: 100 times the file's size
    from 16 MiB on, and at most `DEFAULT_MAX_BYTES`, 1 GiB); raise it for a genuinely
    large or very compressible network.
    """
    source = _shipped.resolve(path)
    name = os.fspath(source.path)
    try:
        with open(source.path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            found = probe(stream)
    except OSError as error:
        raise WeightsError(f"cannot read weight file {name!r}: {error.strerror or error}") from None
    if size == 0:
        raise WeightsError(f"{name}: empty file, expected a weight file")
    entry = recognise(found)
    if entry is None:
        raise WeightsError(f"{name}: expected a weight file, found content no format recognises")
    if entry.read is None:
        raise WeightsError(f"{name}: {entry.refusal}")
    options = {"hidden": hidden, "output": output, "input_scale": input_scale,
               "architecture": architecture}
    given = [key for key, value in options.items() if value is not None and key not in entry.options]
    if given:
        raise WeightsError(f"{name}: {describe_options(entry, given)}")
    request = Request(source.path, size, Budget(limit_for(size, max_bytes), name=name),
                      hidden or source.hidden, output or source.output, input_scale,
                      architecture, pixel_scale, max_bytes)
    try:
        network = entry.read(request)
    except WeightsError as error:
        if name in str(error):
            raise
        # Network's own checks do not know the file; every failure of a load names it.
        raise type(error)(f"{name}: {error}") from None
    return _with_pixel_scale(network, pixel_scale, name)


def _with_pixel_scale(network: Network, pixel_scale: float | None, name: str) -> Network:
    """``network`` with the pixel scale the caller stated, if its file recorded none."""
    if pixel_scale is None:
        return network
    if network.pixel_scale is None:
        return network.with_pixel_scale(pixel_scale)
    if not is_float32_number(pixel_scale) or float(pixel_scale) != network.pixel_scale:
        raise WeightsError(
            f"{name} records pixel scale {network.pixel_scale!r}; "
            f"do not pass pixel_scale={pixel_scale!r}")
    return network


def save(network: Network, path: str | os.PathLike[str]) -> None:
    """Write ``network`` atomically in the format that ``path``'s suffix names
    (`writers`: ``.npz`` native, ``.pkl`` textbook pickle, ``.onnx``, ``.keras``,
    ``.pt``/``.pth``). A multi-label classifier (`Network.multilabel`) is written only
    as ``.npz``, the one format that records it."""
    if not isinstance(network, Network):
        raise TypeError(f"save writes an mlpinfer.Network, got {type(network).__name__}")
    destination = Path(path)
    entry = writer_for(destination)
    assert entry.write is not None
    if network.multilabel and entry is not _npz.NATIVE:
        # Read back without it, the network would classify one label per sample.
        raise WeightsError(
            f"{destination.name}: {entry.description} does not record that a network is a "
            "multi-label classifier; write .npz (mlpinfer's native format) to keep it")
    entry.write(network, destination)


def convert(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    architecture: Sequence[str] | None = None,
    hidden: str | None = None,
    output: str | None = None,
    input_scale: float | None = None,
    pixel_scale: float | None = None,
    max_bytes: int | None = None,
) -> Network:
    """Read ``source`` by its content, write it in the format named by ``destination``'s
    suffix (`writers`), and return the network. Options as in `load`."""
    target = Path(destination)
    origin = _shipped.resolve(source).path
    writer_for(target)  # an unknown suffix is refused before anything is read
    if target.exists() and os.path.samefile(origin, target):
        raise ValueError(f"convert {os.fspath(source)!r} {os.fspath(destination)!r}: the "
                         "destination is the source; write to another file")
    network = load(source, architecture=architecture, hidden=hidden, output=output,
                   input_scale=input_scale, pixel_scale=pixel_scale, max_bytes=max_bytes)
    save(network, target)
    return network

