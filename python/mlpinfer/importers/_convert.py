"""The Keras, PyTorch and ONNX entries of the format registry, over the importers' readers.

Until those readers move into `mlpinfer.formats` (issue 13: our own bounded parsers,
each with its ``FORMAT``), they are registered from here, which `mlpinfer.importers`
imports; delete this file with that move.
"""

from __future__ import annotations

from ..formats import Format, Probe, register
from ._keras import load_keras, save_keras
from ._onnx import from_onnx, to_onnx
from ._torch import load_torch, save_torch

__all__ = ["KERAS", "ONNX", "TORCH"]


def _looks_like_onnx(probe: Probe) -> bool:
    # A protobuf ModelProto whose first field is ir_version (tag 0x08, a small varint);
    # no pickle starts with byte 0x08, which is not a pickle opcode.
    head = probe.head
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in (
        0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72)


KERAS = register(Format(
    name="keras",
    description="Keras 3 model",
    recognise=lambda probe: probe.zip_names is not None
    and {"config.json", "model.weights.h5"} <= set(probe.zip_names),
    read=lambda request: load_keras(request.path),
    write=save_keras,
    suffixes=(".keras",),
))

TORCH = register(Format(
    name="torch",
    description="PyTorch state_dict with its architecture (save_torch)",
    recognise=lambda probe: probe.zip_names is not None
    and any(name.endswith("/data.pkl") for name in probe.zip_names),
    read=lambda request: load_torch(request.path, request.architecture,
                                    input_scale=request.input_scale),
    write=save_torch,
    suffixes=(".pt", ".pth"),
    options=frozenset({"architecture", "input_scale"}),
))

ONNX = register(Format(
    name="onnx",
    description="ONNX model",
    recognise=_looks_like_onnx,
    read=lambda request: from_onnx(request.path),
    write=to_onnx,
    suffixes=(".onnx",),
))
