"""INTERIM (i13readers, until i13core's skeleton is merged): registers the framework
formats and offers `load`; replaced by i13core's package on merge."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .._errors import WeightsError
from .._network import Network
from . import keras, onnx, torch
from ._budget import Budget, limit_for
from ._registry import Request, probe, recognise, register

for _entry in (keras.FORMAT, onnx.FORMAT, torch.FORMAT):
    register(_entry)


def load(path: str | os.PathLike[str], *, architecture: Sequence[str] | None = None,
         input_scale: float | None = None, max_bytes: int | None = None) -> Network:
    name = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            entry = recognise(probe(stream))
    except OSError as error:
        raise WeightsError(f"cannot read weight file {name!r}: {error.strerror or error}") from None
    given = [k for k, v in (("architecture", architecture), ("input_scale", input_scale))
             if v is not None and k not in entry.options]
    if given:
        raise WeightsError(f"{name}: {entry.description} records its activations; do not "
                           f"pass {', '.join(given)}")
    request = Request(Path(path), size, Budget(limit_for(size, max_bytes), name=name),
                      "sigmoid", "softmax", input_scale, architecture)
    assert entry.read is not None
    try:
        return entry.read(request)
    except WeightsError as error:
        if name in str(error):
            raise
        raise type(error)(f"{name}: {error}") from None
