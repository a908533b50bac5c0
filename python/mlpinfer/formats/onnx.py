"""ONNX files: the protobuf parsed as data, a chain of dense ops read from its graph.

Reading needs the ``onnx`` package for its ``ModelProto`` message class only: no checker,
no shape inference, no external data, no ``numpy_helper``. Initializers are converted by
`_tensor_array` from the fields the file holds, and only when a node uses them; every
use counts against the load budget before anything is converted, since each use becomes
a copy (an initializer used by 1,500 ``Gemm`` nodes once cost 9 GB).

Writing (`write_onnx`) builds opset 17 with ``onnx.helper``. What the graph cannot say,
the pixel scale of uint8 input and the class labels, is recorded as JSON in the model's
``metadata_props`` (`PIXEL_SCALE_KEY`, `CLASSES_KEY`), and read back from there.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from .._errors import WeightsError
from .._files import write_atomically
from .._network import Network
from ._budget import Budget
from ._chain import Chain, UnsupportedModelError, require
from ._recorded import checked_classes, checked_scale, read_json
from ._registry import Format, Probe, Request

__all__ = ["CLASSES_KEY", "FORMAT", "PIXEL_SCALE_KEY", "network_from_model", "read_onnx",
           "write_onnx"]

#: metadata_props keys of what `write_onnx` records beside the graph, as JSON values.
PIXEL_SCALE_KEY = "mlpinfer.pixel_scale"
CLASSES_KEY = "mlpinfer.classes"

_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}
# AttributeProto.AttributeType codes.
_FLOAT, _INT, _TENSOR, _FLOATS, _INTS = 1, 2, 4, 6, 7
_ATTRIBUTE_TYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "INT", 3: "STRING", 4: "TENSOR",
                         5: "GRAPH", 6: "FLOATS", 7: "INTS", 8: "STRINGS", 9: "TENSORS",
                         10: "GRAPHS", 11: "SPARSE_TENSOR", 12: "SPARSE_TENSORS",
                         13: "TYPE_PROTO", 14: "TYPE_PROTOS"}
# The attributes each op may carry, with their types; any other is an option we would
# be ignoring.
_KNOWN_ATTRIBUTES: dict[str, dict[str, int]] = {
    "Gemm": {"alpha": _FLOAT, "beta": _FLOAT, "transA": _INT, "transB": _INT},
    "MatMul": {},
    "Add": {},
    "Mul": {},
    "Div": {},
    "Relu": {},
    "Sigmoid": {},
    "Tanh": {},
    "Softmax": {"axis": _INT},
    "Flatten": {"axis": _INT},
    "Reshape": {"allowzero": _INT},
    "Identity": {},
    "Constant": {"value": _TENSOR, "value_float": _FLOAT, "value_floats": _FLOATS,
                 "value_int": _INT, "value_ints": _INTS},
}
# TensorProto.DataType codes we read: (name, NumPy dtype of the stored element, the
# typed field that holds the values when raw_data is empty). float16 and bfloat16 sit
# in int32_data as their 16 bits.
_FLOAT16, _BFLOAT16 = 10, 16
_TENSOR_TYPES = {
    1: ("FLOAT", np.dtype("<f4"), "float_data"),
    11: ("DOUBLE", np.dtype("<f8"), "double_data"),
    _FLOAT16: ("FLOAT16", np.dtype("<f2"), "int32_data"),
    _BFLOAT16: ("BFLOAT16", np.dtype("<u2"), "int32_data"),
    7: ("INT64", np.dtype("<i8"), "int64_data"),
    6: ("INT32", np.dtype("<i4"), "int32_data"),
}
_DATA_TYPE_NAMES = {0: "UNDEFINED", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 8: "STRING",
                    9: "BOOL", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128",
                    **{code: spec[0] for code, spec in _TENSOR_TYPES.items()}}
_INPUT_TYPES = (1, 11)  # FLOAT, DOUBLE
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# protobuf refuses messages of 2 GiB and more; larger models keep their weights outside.
_MAX_FILE = (1 << 31) - 1
# Opset 17 (IR 8) is read by every ONNX Runtime since 1.11.
_EXPORT_OPSET = 17
_EXPORT_IR_VERSION = 8


def _type_name(code: int) -> str:
    return _DATA_TYPE_NAMES.get(code, f"unknown type {code}")


def read_onnx(request: Request) -> Network:
    """A network from an ONNX file (see `network_from_model`)."""
    onnx = require("onnx", "onnx")
    if request.size > _MAX_FILE:
        raise request.budget.fail(
            f"expected an ONNX protobuf of less than 2 GiB, found {request.size} bytes (larger "
            "models keep external data, which mlpinfer does not read yet)"
        )
    with request.open() as stream:
        data = stream.read()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError, or its RuntimeError
        raise request.budget.fail(
            f"not a readable ONNX model (expected a protobuf ModelProto; {str(error)[:200]})"
        ) from None
    return _Reader(model, request.budget).network()


def network_from_model(model: Any, budget: Budget) -> Network:
    """A network from an ``onnx.ModelProto`` in memory.

    The graph must be a chain from one float input to one output of ``Gemm``,
    ``MatMul`` + ``Add``, ``Relu``, ``Sigmoid``, ``Tanh``, ``Softmax`` (last axis),
    ``Flatten`` and ``Reshape`` to (batch, features). ``Identity`` and ``Constant`` are
    accepted, and a ``Mul``/``Div`` by a scalar before the first dense op becomes
    ``input_scale`` (`write_onnx` writes it so). Anything else is refused with
    "unsupported op X at node Y". External tensor data is refused rather than read.
    The pixel scale and classes come from ``metadata_props`` when the model records them.
    """
    return _Reader(model, budget).network()


def _declared_nbytes(tensor: Any, what: str) -> int:
    """The bytes ``tensor`` becomes, from its declaration; checks that the file holds
    them (raw_data of exactly that size, or that many typed values) and nothing else."""
    if tensor.data_location == _EXTERNAL or len(tensor.external_data):
        raise UnsupportedModelError(
            f"{what} keeps its data in an external file, which mlpinfer does not read yet "
            "(save the model with its weights inside the .onnx file)"
        )
    if tensor.HasField("segment"):
        raise UnsupportedModelError(f"{what} is a segment of a larger tensor: unsupported")
    if tensor.data_type not in _TENSOR_TYPES:
        raise UnsupportedModelError(
            f"{what} has element type {_type_name(tensor.data_type)}; expected one of "
            f"{', '.join(spec[0] for spec in _TENSOR_TYPES.values())}"
        )
    type_name, dtype, field = _TENSOR_TYPES[tensor.data_type]
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise WeightsError(f"{what} has a negative dimension: {dims}")
    count = math.prod(dims)
    filled = [f for f in ("float_data", "double_data", "int32_data", "int64_data",
                          "uint64_data", "string_data") if len(getattr(tensor, f))]
    raw = len(tensor.raw_data)
    if raw:
        if filled:
            raise WeightsError(f"{what} holds raw_data and {filled[0]}: expected one of them")
        if raw != count * dtype.itemsize:
            raise WeightsError(
                f"{what}: {type_name} of shape {dims} needs {count * dtype.itemsize} bytes of "
                f"raw_data, the file holds {raw}"
            )
    elif filled not in ([], [field]) or len(getattr(tensor, field)) != count:
        found = ", ".join(f"{len(getattr(tensor, f))} values in {f}" for f in filled) or "no data"
        raise WeightsError(
            f"{what}: {type_name} of shape {dims} needs {count} values in {field}, "
            f"found {found}"
        )
    return count * dtype.itemsize


def _tensor_array(tensor: Any, what: str) -> np.ndarray:
    """The values of a tensor that `_declared_nbytes` has checked."""
    _, dtype, field = _TENSOR_TYPES[tensor.data_type]
    raw = tensor.raw_data
    if raw:
        values = np.frombuffer(raw, dtype=dtype)
    elif field == "int32_data" and dtype.itemsize == 2:
        bits = np.array(tensor.int32_data, dtype=np.int64)
        if bits.size and (bits.min() < 0 or bits.max() > 0xFFFF):
            raise WeightsError(f"{what}: 16-bit values in int32_data beyond 0..65535")
        values = bits.astype(np.uint16)  # the bits, reinterpreted below
    else:
        values = np.array(getattr(tensor, field), dtype=dtype)
    if tensor.data_type == _FLOAT16:
        values = values.view(np.float16)
    elif tensor.data_type == _BFLOAT16:  # the top half of a float32
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values.reshape(tuple(tensor.dims))


class _Reader:
    def __init__(self, model: Any, budget: Budget) -> None:
        graph = model.graph
        self._graph = graph
        self._opset = next(
            (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0
        )
        if len(graph.sparse_initializer):
            raise UnsupportedModelError("sparse initializers are not supported")
        self._initializers = {tensor.name: tensor for tensor in graph.initializer}
        self._converted: dict[str, np.ndarray] = {}
        self._charge_uses(budget)
        self._recorded = _recorded_settings(model, budget)
        inputs = [value for value in graph.input if value.name not in self._initializers]
        if len(inputs) != 1:
            raise UnsupportedModelError(
                f"expected one graph input, got {len(inputs)}: {[v.name for v in inputs][:5]}"
            )
        if len(graph.output) != 1:
            raise UnsupportedModelError(
                f"expected one graph output, got {len(graph.output)}: "
                f"{[v.name for v in graph.output][:5]}"
            )
        tensor_type = inputs[0].type.tensor_type
        if tensor_type.elem_type not in _INPUT_TYPES:
            raise UnsupportedModelError(
                f"input {inputs[0].name!r} has element type "
                f"{_type_name(tensor_type.elem_type)}; expected FLOAT or DOUBLE"
            )
        self._current = inputs[0].name
        shape = tensor_type.shape if tensor_type.HasField("shape") else None
        self._dims: list[int | None] | None = (
            None if shape is None
            else [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                  for d in shape.dim]
        )
        self._chain = Chain()

    def _charge_uses(self, budget: Budget) -> None:
        """Every use of an initializer or constant becomes a copy: count them all against
        the budget before converting any."""
        sizes = {}
        for name, tensor in self._initializers.items():
            sizes[name] = _declared_nbytes(tensor, f"initializer {name!r}")
        for index, node in enumerate(self._graph.node):
            for position, name in enumerate(node.input):
                if name in sizes:
                    budget.charge(sizes[name], f"input {position} ({name!r}) of node #{index}")
            if node.op_type == "Constant" and len(node.output) == 1:
                size = 0
                for attribute in node.attribute:
                    if attribute.type == _TENSOR:
                        size += _declared_nbytes(attribute.t, f"Constant at node #{index}")
                    else:
                        size += 8 * max(1, len(attribute.floats) + len(attribute.ints))
                budget.charge(size, f"the value of Constant node #{index}")
                sizes[node.output[0]] = size

    def network(self) -> Network:
        for index, node in enumerate(self._graph.node):
            where = f"node {node.name[:100]!r}" if node.name else f"node #{index} (unnamed)"
            self._step(node, where)
        output = self._graph.output[0].name
        if output != self._current:
            raise UnsupportedModelError(
                f"graph output {output[:100]!r} is not the end of the chain "
                f"({self._current[:100]!r})"
            )
        return self._chain.network(**self._recorded)

    # ------------------------------------------------------------------ nodes

    def _step(self, node: Any, where: str) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx") or op not in _KNOWN_ATTRIBUTES:
            qualified = f"{node.domain}:{op}" if node.domain not in ("", "ai.onnx") else op
            raise UnsupportedModelError(f"unsupported op {qualified[:100]} at {where}")
        attributes = self._attributes(node, where)
        if len(node.output) != 1:
            raise UnsupportedModelError(f"{op} at {where} has {len(node.output)} outputs")
        if op == "Constant":
            self._converted[node.output[0]] = self._constant_value(attributes, where)
            return
        data, constants = self._split_inputs(node, where)
        if op == "Gemm":
            self._gemm(attributes, data, constants, where)
        elif op == "MatMul":
            self._need(data == [0] and 1 in constants and self._rank() == 2,
                       f"MatMul at {where}",
                       "multiplies the 2-D running value by a constant matrix on the right")
            self._chain.dense(self._float(constants[1], f"MatMul at {where}"), None,
                              f"MatMul at {where}")
        elif op == "Add":
            self._chain.add_bias(self._only_constant(constants, f"Add at {where}"),
                                 f"Add at {where}")
        elif op in ("Mul", "Div"):
            self._scalar_scale(op, data, constants, where)
        elif op in _ACTIVATIONS:
            if op == "Softmax":
                axis = attributes.get("axis", -1 if self._opset >= 13 else 1)
                self._need(axis in (-1, 1) and self._rank() == 2, f"Softmax at {where}",
                           f"is over the last axis of a 2-D value (axis={axis})")
            self._chain.activate(_ACTIVATIONS[op], f"{op} at {where}")
        elif op == "Flatten":
            axis = attributes.get("axis", 1)
            self._need(axis == 1, f"Flatten at {where}", f"keeps the batch axis (axis={axis})")
            self._flatten()
        elif op == "Reshape":
            self._reshape(attributes, constants, where)
        self._current = node.output[0]

    @staticmethod
    def _attributes(node: Any, where: str) -> dict[str, Any]:
        known = _KNOWN_ATTRIBUTES[node.op_type]
        values: dict[str, Any] = {}
        for attribute in node.attribute:
            name = attribute.name
            if name not in known:
                raise UnsupportedModelError(
                    f"unsupported attribute {name[:100]} of {node.op_type} at {where}"
                )
            if attribute.type != known[name]:
                found = _ATTRIBUTE_TYPE_NAMES.get(attribute.type, f"type {attribute.type}")
                raise WeightsError(
                    f"attribute {name} of {node.op_type} at {where} is {found}; expected "
                    f"{_ATTRIBUTE_TYPE_NAMES[known[name]]}"
                )
            values[name] = {_FLOAT: attribute.f, _INT: attribute.i, _TENSOR: attribute.t,
                            _FLOATS: attribute.floats, _INTS: attribute.ints}[known[name]]
        return values

    def _gemm(self, attributes: dict[str, Any], data: list[int],
              constants: dict[int, np.ndarray], where: str) -> None:
        where = f"Gemm at {where}"
        self._need(data == [0] and 1 in constants, where,
                   "takes the running value as A, constants as B and C")
        self._need(not attributes.get("transA", 0), where,
                   "does not transpose A, the batch (transA=1 is unsupported)")
        weights = self._float(constants[1], where)
        if attributes.get("transB", 0):
            weights = weights.T
        alpha = float(attributes.get("alpha", 1.0))
        beta = float(attributes.get("beta", 1.0))
        if alpha != 1.0:
            weights = weights.astype(np.float64) * alpha
        self._chain.dense(weights, None, where)
        if 2 in constants:
            self._chain.add_bias(self._float(constants[2], where).astype(np.float64) * beta,
                                 where)

    def _scalar_scale(self, op: str, data: list[int], constants: dict[int, np.ndarray],
                      where: str) -> None:
        where = f"{op} at {where}"
        factor = self._only_constant(constants, where)
        self._need(factor.size == 1 and (op == "Mul" or data == [0]), where,
                   "multiplies or divides the running value by one scalar")
        value = float(factor.reshape(()))
        self._need(math.isfinite(value) and (op == "Mul" or value != 0), where,
                   f"scales by a finite number (found {value})")
        self._chain.scale(value if op == "Mul" else 1.0 / value, 0.0, where)

    def _reshape(self, attributes: dict[str, Any], constants: dict[int, np.ndarray],
                 where: str) -> None:
        where = f"Reshape at {where}"
        target = constants.get(1, np.empty(0, np.int64))
        self._need(target.dtype.kind == "i" and target.size == 2, where,
                   f"reshapes to (batch, features) (target of {target.size} {target.dtype})")
        shape = [int(v) for v in target.reshape(-1)]
        features = self._features()
        ok = shape[0] in (0, -1) and ((shape[1] == -1 and shape[0] == 0) or shape[1] == features)
        if attributes.get("allowzero", 0) and 0 in shape:
            ok = False
        self._need(ok, where, f"reshapes to (batch, {features}) (target shape {shape})")
        self._flatten()

    # ------------------------------------------------------------------ helpers

    def _constant(self, name: str) -> np.ndarray:
        if name not in self._converted:
            self._converted[name] = _tensor_array(self._initializers[name],
                                                  f"initializer {name!r}")
        return self._converted[name]

    def _split_inputs(self, node: Any, where: str) -> tuple[list[int], dict[int, np.ndarray]]:
        data, constants = [], {}
        for position, name in enumerate(node.input):
            if not name:
                continue
            if name == self._current:
                data.append(position)
            elif name in self._initializers or name in self._converted:
                constants[position] = self._constant(name)
            else:
                raise UnsupportedModelError(
                    f"{node.op_type} at {where} reads {name[:100]!r}, which is neither the "
                    f"running value {self._current[:100]!r} nor a constant: only chains are "
                    "supported"
                )
        if len(data) != 1:
            raise UnsupportedModelError(
                f"{node.op_type} at {where} does not read the running value "
                f"{self._current[:100]!r} exactly once: only chains are supported"
            )
        return data, constants

    @classmethod
    def _only_constant(cls, constants: dict[int, np.ndarray], where: str) -> np.ndarray:
        if len(constants) != 1:
            raise UnsupportedModelError(f"{where}: expected one constant operand")
        return cls._float(next(iter(constants.values())), where)

    @staticmethod
    def _float(value: np.ndarray, where: str) -> np.ndarray:
        if value.dtype.kind != "f":
            raise UnsupportedModelError(f"{where}: a constant of {value.dtype}; expected floats")
        return value

    @staticmethod
    def _need(condition: bool, where: str, contract: str) -> None:
        if not condition:
            raise UnsupportedModelError(f"{where}: supported only when it {contract}")

    def _rank(self) -> int | None:
        return 2 if self._chain.started else None if self._dims is None else len(self._dims)

    def _features(self) -> int | None:
        if self._chain.started:
            return self._chain.width
        if self._dims is None or any(d is None for d in self._dims[1:]):
            return None
        return math.prod(d for d in self._dims[1:] if d is not None)

    def _flatten(self) -> None:
        if not self._chain.started and self._dims is not None:
            features = self._features()
            self._dims = [self._dims[0] if self._dims else None, features]

    def _constant_value(self, attributes: dict[str, Any], where: str) -> np.ndarray:
        if len(attributes) != 1:
            raise UnsupportedModelError(
                f"Constant at {where} has {len(attributes)} values; expected one"
            )
        name, value = next(iter(attributes.items()))
        if name == "value":
            return _tensor_array(value, f"Constant at {where}")
        return np.asarray(value, dtype=np.float64 if "float" in name else np.int64)


def _recorded_settings(model: Any, budget: Budget) -> dict[str, Any]:
    """What ``metadata_props`` records: keywords of `Chain.network` (a pixel scale not
    recorded stays "auto")."""
    found: dict[str, Any] = {}
    for entry in model.metadata_props:
        if entry.key not in (PIXEL_SCALE_KEY, CLASSES_KEY):
            continue  # other tools' metadata (author, version ...) says nothing we use
        if entry.key in found:
            raise budget.fail(f"expected metadata_props {entry.key!r} once, found it twice")
        found[entry.key] = read_json(entry.value, f"metadata_props {entry.key!r}", budget)
    recorded: dict[str, Any] = {
        "classes": checked_classes(found.get(CLASSES_KEY), f"metadata_props {CLASSES_KEY!r}",
                                   budget)}
    if PIXEL_SCALE_KEY in found:
        recorded["pixel_scale"] = checked_scale(found[PIXEL_SCALE_KEY],
                                                f"metadata_props {PIXEL_SCALE_KEY!r}", budget)
    return recorded


def write_onnx(network: Network, path: str | os.PathLike[str]) -> None:
    """Write ``network`` as an ONNX model (opset 17): input ``input`` (N, inputs) float32,
    output ``output``, one ``Gemm`` and one activation op per layer.

    ``input_scale``, when set, is a ``Mul`` on the input by a float32, the precision the
    engine multiplies in. ONNX has no uint8-pixel convention: feed it floats (ONNX Runtime
    refuses uint8 for a float model). The pixel scale and the classes are recorded as JSON
    in ``metadata_props`` (`PIXEL_SCALE_KEY`, `CLASSES_KEY`), so that `mlpinfer.load`
    scales uint8 input as this network does and `classify` returns the same labels.
    """
    onnx = require("onnx", "onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes, initializers = [], []
    current = "input"
    if network.input_scale is not None:
        initializers.append(
            numpy_helper.from_array(np.array(network.input_scale, np.float32), "input_scale")
        )
        nodes.append(helper.make_node("Mul", [current, "input_scale"], ["scaled"], name="scale"))
        current = "scaled"
    last = len(network.layers)
    for i, layer in enumerate(network.layers, start=1):
        initializers += [numpy_helper.from_array(layer.weights, f"W{i}"),
                         numpy_helper.from_array(layer.bias, f"b{i}")]
        dense = "output" if i == last and layer.activation == "identity" else f"dense{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [dense],
                                      name=f"layer{i}_gemm"))
        current = dense
        if layer.activation != "identity":
            op = next(op for op, name in _ACTIVATIONS.items() if name == layer.activation)
            activated = "output" if i == last else f"act{i}"
            extra = {"axis": -1} if op == "Softmax" else {}
            nodes.append(helper.make_node(op, [current], [activated], name=f"layer{i}_{op.lower()}",
                                          **extra))
            current = activated
    graph = helper.make_graph(
        nodes,
        "mlpinfer",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", network.n_inputs])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT,
                                       ["N", network.n_outputs])],
        initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="mlpinfer",
        opset_imports=[helper.make_operatorsetid("", _EXPORT_OPSET)],
        ir_version=_EXPORT_IR_VERSION,
    )
    classes = None if network.classes is None else network.classes.tolist()
    helper.set_model_props(model, {PIXEL_SCALE_KEY: json.dumps(network.pixel_scale),
                                   CLASSES_KEY: json.dumps(classes)})
    onnx.checker.check_model(model)
    write_atomically(path, lambda stream: stream.write(model.SerializeToString()))


def _looks_like_onnx(probe: Probe) -> bool:
    # A protobuf ModelProto whose first field is ir_version (tag 0x08, a small varint);
    # no pickle starts with byte 0x08, which is not a pickle opcode.
    head = probe.head
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in (
        0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72)


FORMAT = Format(
    name="onnx",
    description="ONNX model",
    recognise=_looks_like_onnx,
    read=read_onnx,
    write=write_onnx,
    suffixes=(".onnx",),
)
