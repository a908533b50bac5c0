"""ONNX models in memory (``onnx.ModelProto``) -> Network; files go through `mlpinfer.load`."""

from __future__ import annotations

import os
from typing import Any

from .. import formats
from .._network import Network
from ..formats._budget import DEFAULT_MAX_BYTES, Budget
from ..formats._chain import require
from ..formats.onnx import network_from_model

__all__ = ["from_onnx"]


def from_onnx(source: str | os.PathLike[str] | Any) -> Network:
    """A network from an ``onnx.ModelProto``, or from an ONNX file (as `mlpinfer.load`).

    See `mlpinfer.formats.onnx.network_from_model` for the graphs that are accepted.
    """
    onnx = require("onnx", "onnx")
    if isinstance(source, onnx.ModelProto):
        return network_from_model(source, Budget(DEFAULT_MAX_BYTES, name="ModelProto"))
    return formats.load(source)
