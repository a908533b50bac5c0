"""ONNX: import a chain of dense ops, and export a network (checked in ONNX Runtime)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._errors import WeightsError
from .._files import write_atomically
from .._network import Network
from ._common import Chain, UnsupportedModelError, require

__all__ = ["from_onnx", "to_onnx"]

_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}
# Attributes each op may carry; any other attribute is an option we would be ignoring.
_KNOWN_ATTRIBUTES = {
    "Gemm": {"alpha", "beta", "transA", "transB"},
    "MatMul": set(),
    "Add": set(),
    "Mul": set(),
    "Div": set(),
    "Relu": set(),
    "Sigmoid": set(),
    "Tanh": set(),
    "Softmax": {"axis"},
    "Flatten": {"axis"},
    "Reshape": {"allowzero"},
    "Identity": set(),
    "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints"},
}
# Opset 17 (IR 8) is read by every ONNX Runtime since 1.11.
_EXPORT_OPSET = 17
_EXPORT_IR_VERSION = 8


def from_onnx(source: str | os.PathLike[str] | Any) -> Network:
    """A network from an ONNX file or ``onnx.ModelProto``.

    The graph must be a chain from one float input to one output of ``Gemm``,
    ``MatMul`` + ``Add``, ``Relu``, ``Sigmoid``, ``Tanh``, ``Softmax`` (last axis),
    ``Flatten`` and ``Reshape`` to (batch, features). ``Identity`` and ``Constant`` are
    accepted, and a ``Mul``/``Div`` by a scalar before the first dense op becomes
    ``input_scale`` (``to_onnx`` writes it so). Anything else is refused with
    "unsupported op X at node Y". External tensor data is refused rather than read.
    """
    onnx = require("onnx", "onnx")
    decode_error = require("google.protobuf.message", "onnx").DecodeError
    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        try:
            # External data would make a model file open other paths it names: refused below.
            model = onnx.load(os.fspath(source), load_external_data=False)
        except OSError as error:
            raise WeightsError(f"cannot read {os.fspath(source)!r}: {error}") from None
        except (decode_error, ValueError, RuntimeError) as error:
            raise WeightsError(
                f"{os.fspath(source)}: not a readable ONNX model ({type(error).__name__}: {error})"
            ) from None
    try:
        return _Reader(onnx, model).network()
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - a hostile graph can break any assumption
        raise WeightsError(
            f"not a readable ONNX network ({type(error).__name__}: {error})"
        ) from None


class _Reader:
    def __init__(self, onnx: Any, model: Any) -> None:
        self._onnx = onnx
        graph = model.graph
        self._graph = graph
        self._opset = next(
            (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0
        )
        self._constants: dict[str, np.ndarray] = {}
        for tensor in graph.initializer:
            self._constants[tensor.name] = self._array(tensor, f"initializer {tensor.name!r}")
        inputs = [value for value in graph.input if value.name not in self._constants]
        if len(inputs) != 1:
            raise UnsupportedModelError(
                f"expected one graph input, got {len(inputs)}: {[v.name for v in inputs]}"
            )
        if len(graph.output) != 1:
            raise UnsupportedModelError(
                f"expected one graph output, got {len(graph.output)}: "
                f"{[v.name for v in graph.output]}"
            )
        tensor_type = inputs[0].type.tensor_type
        proto = onnx.TensorProto
        if tensor_type.elem_type not in (proto.FLOAT, proto.DOUBLE):
            raise UnsupportedModelError(
                f"input {inputs[0].name!r} has element type "
                f"{proto.DataType.Name(tensor_type.elem_type)}; expected FLOAT or DOUBLE"
            )
        self._current = inputs[0].name
        shape = tensor_type.shape if tensor_type.HasField("shape") else None
        self._dims: list[int | None] | None = (
            None if shape is None
            else [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
        )
        self._chain = Chain()

    def network(self) -> Network:
        for index, node in enumerate(self._graph.node):
            where = f"node {node.name!r}" if node.name else f"node #{index} (unnamed)"
            self._step(node, where)
        output = self._graph.output[0].name
        if output != self._current:
            raise UnsupportedModelError(
                f"graph output {output!r} is not the end of the chain ({self._current!r})"
            )
        return self._chain.network()

    # ------------------------------------------------------------------ nodes

    def _step(self, node: Any, where: str) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx") or op not in _KNOWN_ATTRIBUTES:
            qualified = f"{node.domain}:{op}" if node.domain not in ("", "ai.onnx") else op
            raise UnsupportedModelError(f"unsupported op {qualified} at {where}")
        attributes = {a.name: self._onnx.helper.get_attribute_value(a) for a in node.attribute}
        unknown = sorted(set(attributes) - _KNOWN_ATTRIBUTES[op])
        if unknown:
            raise UnsupportedModelError(f"unsupported attribute {unknown[0]} of {op} at {where}")
        if len(node.output) != 1:
            raise UnsupportedModelError(f"{op} at {where} has {len(node.output)} outputs")
        if op == "Constant":
            self._constants[node.output[0]] = self._constant_value(attributes, where)
            return
        data, constants = self._split_inputs(node, where)
        if op == "Gemm":
            self._gemm(attributes, data, constants, where)
        elif op == "MatMul":
            self._need(data == [0] and self._rank() == 2, f"MatMul at {where}",
                       "multiplies the 2-D running value by a constant matrix on the right")
            self._chain.dense(constants[1], None, f"MatMul at {where}")
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

    def _gemm(self, attributes: dict[str, Any], data: list[int],
              constants: dict[int, np.ndarray], where: str) -> None:
        where = f"Gemm at {where}"
        self._need(data == [0], where, "takes the running value as A, constants as B and C")
        self._need(not attributes.get("transA", 0), where,
                   "does not transpose A, the batch (transA=1 is unsupported)")
        weights = constants[1]
        if attributes.get("transB", 0):
            weights = weights.T
        alpha = float(attributes.get("alpha", 1.0))
        beta = float(attributes.get("beta", 1.0))
        if alpha != 1.0:
            weights = weights.astype(np.float64) * alpha
        self._chain.dense(weights, None, where)
        if 2 in constants:
            self._chain.add_bias(constants[2].astype(np.float64) * beta, where)

    def _scalar_scale(self, op: str, data: list[int], constants: dict[int, np.ndarray],
                      where: str) -> None:
        where = f"{op} at {where}"
        factor = self._only_constant(constants, where)
        self._need(factor.size == 1 and (op == "Mul" or data == [0]), where,
                   "multiplies or divides the running value by one scalar")
        value = float(factor.reshape(()))
        self._chain.scale(value if op == "Mul" else 1.0 / value, 0.0, where)

    def _reshape(self, attributes: dict[str, Any], constants: dict[int, np.ndarray],
                 where: str) -> None:
        where = f"Reshape at {where}"
        shape = [int(v) for v in constants.get(1, np.empty(0)).reshape(-1)]
        features = self._features()
        ok = len(shape) == 2 and shape[0] in (0, -1) and (
            (shape[1] == -1 and shape[0] == 0) or shape[1] == features
        )
        if attributes.get("allowzero", 0) and 0 in shape:
            ok = False
        self._need(ok, where, f"reshapes to (batch, {features}) (target shape {shape})")
        self._flatten()

    # ------------------------------------------------------------------ helpers

    def _split_inputs(self, node: Any, where: str) -> tuple[list[int], dict[int, np.ndarray]]:
        data, constants = [], {}
        for position, name in enumerate(node.input):
            if not name:
                continue
            if name == self._current:
                data.append(position)
            elif name in self._constants:
                constants[position] = self._constants[name]
            else:
                raise UnsupportedModelError(
                    f"{node.op_type} at {where} reads {name!r}, which is neither the running "
                    f"value {self._current!r} nor a constant: only chains are supported"
                )
        if len(data) != 1:
            raise UnsupportedModelError(
                f"{node.op_type} at {where} does not read the running value {self._current!r} "
                "exactly once: only chains are supported"
            )
        return data, constants

    @staticmethod
    def _only_constant(constants: dict[int, np.ndarray], where: str) -> np.ndarray:
        if len(constants) != 1:
            raise UnsupportedModelError(f"{where}: expected one constant operand")
        return next(iter(constants.values()))

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
        return int(np.prod(self._dims[1:]))

    def _flatten(self) -> None:
        if not self._chain.started and self._dims is not None:
            features = self._features()
            self._dims = [self._dims[0] if self._dims else None, features]

    def _array(self, tensor: Any, what: str) -> np.ndarray:
        if tensor.data_location == self._onnx.TensorProto.EXTERNAL:
            raise UnsupportedModelError(f"{what} keeps its data in an external file: unsupported")
        return np.asarray(self._onnx.numpy_helper.to_array(tensor))

    def _constant_value(self, attributes: dict[str, Any], where: str) -> np.ndarray:
        if "value" in attributes:
            return self._array(attributes["value"], f"Constant at {where}")
        name, value = next(iter(attributes.items()), (None, None))
        if name is None:
            raise UnsupportedModelError(f"Constant at {where} has no value")
        return np.asarray(value, dtype=np.float64 if "float" in name else np.int64)


def to_onnx(network: Network, path: str | os.PathLike[str]) -> None:
    """Write ``network`` as an ONNX model (opset 17): input ``input`` (N, inputs) float32,
    output ``output``, one ``Gemm`` and one activation op per layer.

    ``input_scale``, when set, is a ``Mul`` on the input by a float32, the precision the
    engine multiplies in. ONNX has no uint8-pixel convention: feed it floats.
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
    onnx.checker.check_model(model)
    write_atomically(path, lambda stream: stream.write(model.SerializeToString()))
