"""ONNX files: the protobuf parsed as data, a chain of dense ops read from its graph.

Reading needs the ``onnx`` package for its ``ModelProto`` message class only: no checker,
no shape inference, no ``onnx.load`` of external data, no ``numpy_helper``. Tensors are
converted by `_onnx_tensors` from the fields the file holds (or from external data files
inside the model's folder, checked first), and only when a node uses them; every use
counts against the load budget before anything is converted, since each use becomes a
copy (an initializer used by 1,500 ``Gemm`` nodes once cost 9 GB). Which graphs load is
`_onnx_graph`'s, which elementwise forms are activations `_onnx_elementwise`'s.

Writing (`write_onnx`) builds opset 17 with ``onnx.helper``, every weight inside the
``.onnx`` file. What the graph cannot say, the pixel scale of uint8 input and the class
labels, is recorded as JSON in the model's ``metadata_props`` (`PIXEL_SCALE_KEY`,
`CLASSES_KEY`), and read back from there.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _activations
from .._files import write_atomically
from .._network import Layer, Network
from ._budget import Budget, limit_for
from ._chain import require
from ._onnx_graph import CLASSES_KEY, PIXEL_SCALE_KEY, GraphReader, supported
from ._onnx_tensors import ExternalFiles
from ._registry import Format, Probe, Request

__all__ = ["CLASSES_KEY", "FORMAT", "PIXEL_SCALE_KEY", "SUPPORTED", "WRITTEN",
           "network_from_model", "read_onnx", "write_onnx"]

# protobuf refuses messages of 2 GiB and more; larger models keep their weights outside.
_MAX_FILE = (1 << 31) - 1
# Opset 17 (IR 8) is read by every ONNX Runtime since 1.11; it has no Gelu (opset 20),
# which `write_onnx` therefore writes as the ops it is defined by.
_EXPORT_OPSET = 17
_EXPORT_IR_VERSION = 8


def read_onnx(request: Request) -> Network:
    """A network from an ONNX file (see `network_from_model`); external data is read
    from the file's folder, and counts as part of the file's size for the load budget."""
    onnx = require("onnx", "onnx")
    if request.size > _MAX_FILE:
        raise request.budget.fail(
            f"expected an ONNX protobuf of less than 2 GiB, found {request.size} bytes (larger "
            "models keep their weights in external data files)"
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
    external = ExternalFiles(request.path.parent)
    reader = GraphReader(model, request.budget, external)
    if request.max_bytes is None:
        request.budget.limit = limit_for(request.size + external.total_size(), None)
    return reader.network()


def network_from_model(model: Any, budget: Budget) -> Network:
    """A network from an ``onnx.ModelProto`` in memory.

    The graph must be a chain from one float input to one output (see `_onnx_graph` and
    `SUPPORTED`); anything else is refused with the op, the node's name and its
    position. A model in memory has no folder: tensors kept in external data files are
    refused (``onnx.load`` reads them into the model, ``mlpinfer.load`` from the file's
    folder). The pixel scale and classes come from ``metadata_props`` when the model
    records them.
    """
    return GraphReader(model, budget, ExternalFiles(None)).network()


#: Concept key (see formats/_support.py) -> how an ONNX graph spells it, for reading.
SUPPORTED: dict[str, str] = supported()


class _Graph:
    """The nodes and initializers of the graph being written, with fresh value names."""

    def __init__(self, onnx: Any) -> None:
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def constant(self, name: str, value: np.ndarray | float) -> str:
        self.initializers.append(
            self.numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attributes))
        return name


def _gelu(graph: _Graph, x: str, name: str, params: tuple[float, ...]) -> str:
    """0.5 x (1 + erf(x / sqrt 2)), as PyTorch's legacy exporter writes it."""
    scaled = graph.node("Div", [x, graph.constant(f"{name}_sqrt2", math.sqrt(2))], f"{name}_div")
    erf = graph.node("Erf", [scaled], f"{name}_erf")
    plus = graph.node("Add", [erf, graph.constant(f"{name}_one", 1.0)], f"{name}_add")
    product = graph.node("Mul", [x, plus], f"{name}_mul")
    return graph.node("Mul", [product, graph.constant(f"{name}_half", 0.5)], name)


def _gelu_tanh(graph: _Graph, x: str, name: str, params: tuple[float, ...]) -> str:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as PyTorch's legacy exporter."""
    square = graph.node("Mul", [x, x], f"{name}_square")
    cube = graph.node("Mul", [x, square], f"{name}_cube")
    cubic = graph.node("Mul", [cube, graph.constant(f"{name}_c", 0.044715)], f"{name}_cubic")
    inner = graph.node("Add", [x, cubic], f"{name}_inner")
    scaled = graph.node("Mul", [inner, graph.constant(f"{name}_k", math.sqrt(2 / math.pi))],
                        f"{name}_scaled")
    tanh = graph.node("Tanh", [scaled], f"{name}_tanh")
    plus = graph.node("Add", [tanh, graph.constant(f"{name}_one", 1.0)], f"{name}_add")
    product = graph.node("Mul", [x, plus], f"{name}_mul")
    return graph.node("Mul", [product, graph.constant(f"{name}_half", 0.5)], name)


def _silu(graph: _Graph, x: str, name: str, params: tuple[float, ...]) -> str:
    return graph.node("Mul", [x, graph.node("Sigmoid", [x], f"{name}_sigmoid")], name)


def _one_op(op: str, *keys: str, **fixed: Any) -> Callable[[_Graph, str, str, tuple], str]:
    def write(graph: _Graph, x: str, name: str, params: tuple[float, ...]) -> str:
        return graph.node(op, [x], name, **fixed, **dict(zip(keys, params, strict=True)))
    return write


# Activation -> (how it is written, what the supported-layers table says).
_ACTIVATION_WRITERS: dict[str, tuple[Callable[[_Graph, str, str, tuple], str], str]] = {
    "relu": (_one_op("Relu"), "Relu"),
    "sigmoid": (_one_op("Sigmoid"), "Sigmoid"),
    "tanh": (_one_op("Tanh"), "Tanh"),
    "softmax": (_one_op("Softmax", axis=-1), "Softmax (axis -1)"),
    "log_softmax": (_one_op("LogSoftmax", axis=-1), "LogSoftmax (axis -1)"),
    "leaky_relu": (_one_op("LeakyRelu", "alpha"), "LeakyRelu (alpha)"),
    "elu": (_one_op("Elu", "alpha"), "Elu (alpha)"),
    "selu": (_one_op("Selu"), "Selu"),
    "softplus": (_one_op("Softplus"), "Softplus"),
    "hard_sigmoid": (_one_op("HardSigmoid", "alpha", "beta"), "HardSigmoid (alpha, beta)"),
    "gelu": (_gelu, "Div, Erf, Add, Mul, Mul (opset 17 has no Gelu)"),
    "gelu_tanh": (_gelu_tanh, "Mul, Mul, Mul, Add, Mul, Tanh, Add, Mul, Mul"),
    "silu": (_silu, "Mul(x, Sigmoid(x))"),
}

#: Concept key -> how `write_onnx` spells it in the graph.
WRITTEN: dict[str, str] = {
    "dense": "Gemm",
    "layer_norm": "LayerNormalization (axis -1)",
    "feature_scaling": "Mul (input_scale); Sub, Sub, Mul (the input transform)",
    "identity": "no activation op",
    **{name: spelling for name, (_, spelling) in _ACTIVATION_WRITERS.items()},
}


def _layer_nodes(graph: _Graph, layer: Layer, x: str, i: int) -> str:
    """Gemm, then the LayerNorm and the activation in the layer's order."""
    value = graph.node("Gemm", [x, graph.constant(f"W{i}", layer.weights),
                                graph.constant(f"b{i}", layer.bias)], f"layer{i}_gemm")

    def norm(value: str) -> str:
        assert layer.norm is not None
        return graph.node(
            "LayerNormalization",
            [value, graph.constant(f"gamma{i}", layer.norm.gamma),
             graph.constant(f"beta{i}", layer.norm.beta)],
            f"layer{i}_layer_norm", axis=-1, epsilon=float(layer.norm.epsilon))

    if layer.norm is not None and not layer.norm_after_activation:
        value = norm(value)
    activation = _activations.parse(layer.activation)
    if activation.name != "identity":
        write, _ = _ACTIVATION_WRITERS[activation.name]
        value = write(graph, value, f"layer{i}_{activation.name}", activation.params)
    if layer.norm is not None and layer.norm_after_activation:
        value = norm(value)
    return value


def _input_transform_nodes(graph: _Graph, network: Network, x: str) -> str:
    """The input transform (x * input_scale - shift) * multiplier as float32 ops that keep
    it exact: ``Sub`` of the shift's float32 part (exact for inputs near it), ``Sub`` of
    the rest, ``Mul`` by the multiplier. The input scale is folded into the shift and the
    multiplier (x * s - shift == (x - shift / s) * s): a separate Mul would round x * s
    to float32 first, which costs 1e-5 of a spread for a year near 2000."""
    transform = network.input_transform
    assert transform is not None
    scale = 1.0 if network.input_scale is None else network.input_scale
    shift = transform.shift / scale
    high = shift.astype(np.float32)
    low = (shift - high).astype(np.float32)
    value = graph.node("Sub", [x, graph.constant("input_shift", high)], "input_shift_sub")
    value = graph.node("Sub", [value, graph.constant("input_shift_rest", low)],
                       "input_shift_rest_sub")
    return graph.node("Mul", [value, graph.constant(
        "input_multiplier", (transform.multiplier * scale).astype(np.float32))],
        "input_multiplier_mul")


def write_onnx(network: Network, path: str | os.PathLike[str]) -> None:
    """Write ``network`` as a self-contained ONNX model (opset 17, no external data):
    input ``input`` (N, inputs) float32, output ``output``, per layer one ``Gemm``, its
    ``LayerNormalization`` and its activation (`WRITTEN` says how each is spelled).

    ``input_scale``, when set, is a ``Mul`` on the input by a float32, the precision the
    engine multiplies in. An input transform is ``Sub``, ``Sub``, ``Mul`` by constants
    (see `_input_transform_nodes`), with the input scale folded into them; the pixel
    scale recorded is then what uint8 input is multiplied by before the graph (the pixel
    scale over the input scale). ONNX has no uint8-pixel convention: feed it floats (ONNX Runtime
    refuses uint8 for a float model). The pixel scale and the classes are recorded as JSON
    in ``metadata_props`` (`PIXEL_SCALE_KEY`, `CLASSES_KEY`), so that `mlpinfer.load`
    scales uint8 input as this network does and `classify` returns the same labels.
    """
    onnx = require("onnx", "onnx")
    helper = onnx.helper
    graph = _Graph(onnx)
    current = "input"
    pixel_scale = network.pixel_scale
    if network.input_transform is not None:
        current = _input_transform_nodes(graph, network, current)
        if pixel_scale is not None and network.input_scale is not None:
            pixel_scale = pixel_scale / network.input_scale
    elif network.input_scale is not None:
        current = graph.node("Mul", [current, graph.constant("input_scale",
                                                             network.input_scale)], "scale")
    for i, layer in enumerate(network.layers, start=1):
        current = _layer_nodes(graph, layer, current, i)
    graph.node("Identity", [current], "output")
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "mlpinfer",
            [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                           ["N", network.n_inputs])],
            [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT,
                                           ["N", network.n_outputs])],
            graph.initializers,
        ),
        producer_name="mlpinfer",
        opset_imports=[helper.make_operatorsetid("", _EXPORT_OPSET)],
        ir_version=_EXPORT_IR_VERSION,
    )
    classes = None if network.classes is None else network.classes.tolist()
    helper.set_model_props(model, {PIXEL_SCALE_KEY: json.dumps(pixel_scale),
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
