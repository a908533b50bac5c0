"""An ONNX graph read as a chain of dense layers: which nodes mean what.

The graph must compute one chain from its one float input to its one output: dense ops
(``Gemm``, ``MatMul`` + ``Add``), inference-mode ``BatchNormalization`` (folded into the
adjacent dense layer), ``LayerNormalization`` over the last axis, activations (one op or
the multi-node forms exporters write, see `_onnx_elementwise`), ``Softmax`` and
``LogSoftmax`` last, feature scaling by constants, and no-ops: ``Identity``, ``Dropout``,
``Flatten`` and ``Reshape`` to (batch, features). The legacy PyTorch exporter computes
the target of ``x.view(x.size(0), -1)`` with ``Shape``, ``Gather``, ``Unsqueeze`` and
``Concat``: those are evaluated on the input's symbolic shape (`_Shape`), so that a
``Reshape`` is accepted only when it really flattens. Anything else is refused with the
op, the node's name and its position.

Values are kept by name as one of: an `Expr` (elementwise of the running value), a
constant array, or a `_Shape`. Each node that moves the chain on (a dense layer, a norm,
a reshape, a row activation) first turns the `Expr` it reads into chain steps, then
starts a new running value (``generation``); a node that reads an older running value
is a branch and is refused, so only chains load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _activations
from .._errors import WeightsError
from .._network import Network
from ._budget import Budget
from ._chain import Chain, UnsupportedModelError
from ._onnx_elementwise import FUNCTIONS, PATTERNS, Expr, decompose
from ._onnx_tensors import ExternalFiles, declared_nbytes, tensor_array, type_name
from ._recorded import checked_classes, checked_scale, read_json

__all__ = ["CLASSES_KEY", "OPS", "PIXEL_SCALE_KEY", "GraphReader"]

#: metadata_props keys of what `write_onnx` records beside the graph, as JSON values.
PIXEL_SCALE_KEY = "mlpinfer.pixel_scale"
CLASSES_KEY = "mlpinfer.classes"

# AttributeProto.AttributeType codes.
_FLOAT, _INT, _STRING, _TENSOR, _FLOATS, _INTS = 1, 2, 3, 4, 6, 7
_ATTRIBUTE_TYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "INT", 3: "STRING", 4: "TENSOR",
                         5: "GRAPH", 6: "FLOATS", 7: "INTS", 8: "STRINGS", 9: "TENSORS",
                         10: "GRAPHS", 11: "SPARSE_TENSOR", 12: "SPARSE_TENSORS",
                         13: "TYPE_PROTO", 14: "TYPE_PROTOS"}
_SCALING = "Add, Sub, Mul, Div by constants (one number or one per feature)"
_UNARY = ("Neg", "Erf")  # the other `_arithmetic` ops take two inputs
# The ops we read: op -> (handler, attributes it may carry with their types, what it is
# as (concept key, spelling) rows of the supported-layers table). Any other attribute is
# an option we would be ignoring; an op not here is refused.
OPS: dict[str, tuple[str, dict[str, int], tuple[tuple[str, str], ...]]] = {
    "Gemm": ("_gemm", {"alpha": _FLOAT, "beta": _FLOAT, "transA": _INT, "transB": _INT},
             (("dense", "Gemm"),)),
    "MatMul": ("_matmul", {}, (("dense", "MatMul + Add"),)),
    "Add": ("_arithmetic", {}, (("feature_scaling", _SCALING),)),
    "Sub": ("_arithmetic", {}, (("feature_scaling", _SCALING),)),
    "Mul": ("_arithmetic", {}, (("feature_scaling", _SCALING),)),
    "Div": ("_arithmetic", {}, (("feature_scaling", _SCALING),)),
    "Neg": ("_arithmetic", {}, ()),
    "Pow": ("_arithmetic", {}, ()),
    "Erf": ("_arithmetic", {}, ()),
    "Relu": ("_function", {}, (("relu", "Relu"),)),
    "Sigmoid": ("_function", {}, (("sigmoid", "Sigmoid"),)),
    "Tanh": ("_function", {}, (("tanh", "Tanh"),)),
    "LeakyRelu": ("_function", {"alpha": _FLOAT}, (("leaky_relu", "LeakyRelu (alpha)"),)),
    "Elu": ("_function", {"alpha": _FLOAT}, (("elu", "Elu (alpha)"),)),
    "Selu": ("_function", {"alpha": _FLOAT, "gamma": _FLOAT},
             (("selu", "Selu (default alpha, gamma)"),)),
    "Softplus": ("_function", {}, (("softplus", ("Softplus; Where(x > t, x, Softplus(x)), "
                                                 "t >= 16")),)),
    "HardSigmoid": ("_function", {"alpha": _FLOAT, "beta": _FLOAT},
                    (("hard_sigmoid", "HardSigmoid (alpha, beta)"),)),
    "Gelu": ("_function", {"approximate": _STRING},
             (("gelu", "Gelu (approximate='none')"), ("gelu_tanh", "Gelu (approximate='tanh')"))),
    "Greater": ("_arithmetic", {}, ()),  # only as Softplus's threshold (`_where`)
    "Where": ("_where", {}, ()),
    "Softmax": ("_row_activation", {"axis": _INT}, (("softmax", "Softmax (last axis)"),)),
    "LogSoftmax": ("_row_activation", {"axis": _INT},
                   (("log_softmax", "LogSoftmax (last axis)"),)),
    "BatchNormalization": ("_batch_norm", {"epsilon": _FLOAT, "momentum": _FLOAT,
                                           "training_mode": _INT, "spatial": _INT},
                           (("batch_norm", "BatchNormalization (inference)"),)),
    "LayerNormalization": ("_layer_norm", {"axis": _INT, "epsilon": _FLOAT, "stash_type": _INT},
                           (("layer_norm", "LayerNormalization (last axis)"),)),
    "Identity": ("_identity", {}, (("no_op", "Identity"),)),
    "Dropout": ("_dropout", {"seed": _INT, "ratio": _FLOAT}, (("no_op", "Dropout"),)),
    "Flatten": ("_flatten", {"axis": _INT}, (("no_op", "Flatten"),)),
    "Reshape": ("_reshape", {"allowzero": _INT},
                (("no_op", ("Reshape to (batch, features), also computed by "
                           "Shape/Gather/Unsqueeze/Concat")),)),
    "Shape": ("_shape", {"start": _INT, "end": _INT}, ()),
    "Gather": ("_gather", {"axis": _INT}, ()),
    "Unsqueeze": ("_unsqueeze", {"axes": _INTS}, ()),
    "Concat": ("_concat", {"axis": _INT}, ()),
    "Constant": ("_constant_node", {"value": _TENSOR, "value_float": _FLOAT,
                                    "value_floats": _FLOATS, "value_int": _INT,
                                    "value_ints": _INTS}, ()),
}
_INPUT_TYPES = (1, 11)  # FLOAT, DOUBLE
# ONNX's Selu defaults, as the float32 attributes hold them.
_SELU = {"alpha": np.float32(1.67326319217681884765625),
         "gamma": np.float32(1.05070102214813232421875)}
# Where(x > t, x, Softplus(x)) is Softplus in float32 from t = 16 on: for x > 16,
# log(1 + e^x) - x = log1p(e^-x) < e^-16 = 1.1e-7, below half a float32 ulp of x
# (4.8e-7 from 8 on, 9.5e-7 from 16), so x + log1p(e^-x) rounds to x. PyTorch uses 20.
_SOFTPLUS_THRESHOLD = 16.0
_BATCH = "batch"  # the batch dimension in a `_Shape`
_MAX_RANK = 8


def decimal(value: float) -> float:
    """A float32 attribute as the shortest decimal that is that float32 (0.1f -> 0.1): what
    the exporter was given, and the same float32 for the engine."""
    return float(np.format_float_scientific(np.float32(value), unique=True))


@dataclass(frozen=True)
class _Shape:
    """An integer vector computed from the running value's shape: ints, `_BATCH`, or
    None (a dimension the graph does not declare); ``scalar``: a 0-d value."""

    entries: tuple[int | str | None, ...]
    scalar: bool = False


class GraphReader:
    """Reads one model: declare its tensors (``__init__``), then build (`network`)."""

    def __init__(self, model: Any, budget: Budget, external: ExternalFiles) -> None:
        graph = model.graph
        self._graph = graph
        self._budget = budget
        self._external = external
        self._opset = next(
            (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0
        )
        if len(graph.sparse_initializer):
            raise UnsupportedModelError("sparse initializers are not supported")
        self._initializers = {tensor.name: tensor for tensor in graph.initializer}
        self._sizes = {name: declared_nbytes(tensor, f"initializer {name!r}", external)
                       for name, tensor in self._initializers.items()}
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
                f"{type_name(tensor_type.elem_type)}; expected FLOAT or DOUBLE"
            )
        shape = tensor_type.shape if tensor_type.HasField("shape") else None
        self._dims: list[int | None] | None = (
            None if shape is None
            else [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                  for d in shape.dim]
        )
        # A batch size fixed at export (PyTorch's default without dynamic axes): a
        # Reshape to (that size, -1) is the flatten the model was written for.
        self._fixed_batch = self._dims[0] if self._dims else None
        self._generation = 0
        self._values: dict[str, Expr | np.ndarray | _Shape] = {
            inputs[0].name: Expr("value", where=f"input {inputs[0].name[:100]!r}")}
        self._used = {name for node in graph.node for name in node.input if name}
        self._used.update(value.name for value in graph.output)
        self._chain = Chain()

    def network(self) -> Network:
        self._charge_uses()
        for index, node in enumerate(self._graph.node):
            self._step(index, node)
        output = self._graph.output[0].name
        value = self._values.get(output)
        if not isinstance(value, Expr) or value.generation != self._generation:
            raise UnsupportedModelError(
                f"graph output {output[:100]!r} is not the end of the chain"
            )
        self._apply(value)
        return self._chain.network(**self._recorded)

    def _charge_uses(self) -> None:
        """Every use of an initializer or constant becomes a copy: count them all against
        the budget before converting any."""
        sizes = dict(self._sizes)
        for index, node in enumerate(self._graph.node):
            for position, name in enumerate(node.input):
                if name in sizes:
                    self._budget.charge(sizes[name], f"input {position} ({name!r}) of node #{index}")
            if node.op_type == "Constant" and len(node.output) == 1:
                size = 0
                for attribute in node.attribute:
                    if attribute.type == _TENSOR:
                        size += declared_nbytes(attribute.t, f"Constant at node #{index}",
                                                self._external)
                    else:
                        size += 8 * max(1, len(attribute.floats) + len(attribute.ints))
                self._budget.charge(size, f"the value of Constant node #{index}")
                sizes[node.output[0]] = size

    # ------------------------------------------------------------------ nodes

    def _step(self, index: int, node: Any) -> None:
        op = node.op_type
        label = (f"node #{index} {node.name[:100]!r}" if node.name
                 else f"node #{index} (unnamed)")
        if node.domain not in ("", "ai.onnx") or op not in OPS:
            qualified = f"{node.domain}:{op}" if node.domain not in ("", "ai.onnx") else op
            raise UnsupportedModelError(
                f"unsupported op {qualified[:100]} at {label} (supported: {', '.join(OPS)})")
        where = f"{op} at {label}"
        handler, known, _ = OPS[op]
        attributes = self._attributes(node, known, where)
        if not node.output or not node.output[0]:
            raise UnsupportedModelError(f"{where} has no output")
        for extra in node.output[1:]:
            if extra and extra in self._used:
                raise UnsupportedModelError(
                    f"{where}: its second output {extra[:100]!r} is used; only the first "
                    "output of an op is supported")
        inputs = list(node.input)
        self._values[node.output[0]] = getattr(self, handler)(op, inputs, attributes, where)

    @staticmethod
    def _attributes(node: Any, known: dict[str, int], where: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for attribute in node.attribute:
            name = attribute.name
            if name not in known:
                raise UnsupportedModelError(
                    f"unsupported attribute {name[:100]} of {where}"
                )
            if attribute.type != known[name]:
                found = _ATTRIBUTE_TYPE_NAMES.get(attribute.type, f"type {attribute.type}")
                raise WeightsError(
                    f"attribute {name} of {where} is {found}; expected "
                    f"{_ATTRIBUTE_TYPE_NAMES[known[name]]}"
                )
            values[name] = {_FLOAT: attribute.f, _INT: attribute.i, _STRING: attribute.s,
                            _TENSOR: attribute.t, _FLOATS: attribute.floats,
                            _INTS: attribute.ints}[known[name]]
        return values

    # The handlers: (op, input names, attributes, where) -> the value of the node's output.

    def _gemm(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        self._need(len(inputs) in (2, 3) and not attributes.get("transA", 0), where,
                   "multiplies the running value, not transposed (transA=0), by constants")
        self._apply(self._running(inputs[0], where))
        weights = self._float(self._constant(inputs[1], where), where)
        if attributes.get("transB", 0):
            weights = weights.T
        alpha = float(attributes.get("alpha", 1.0))
        beta = float(attributes.get("beta", 1.0))
        if alpha != 1.0:
            weights = weights.astype(np.float64) * alpha
        self._chain.dense(weights, None, where)
        if len(inputs) == 3 and inputs[2]:
            bias = self._float(self._constant(inputs[2], where), where)
            self._chain.add_bias(bias.astype(np.float64) * beta, where)
        return self._next(where)

    def _matmul(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        self._need(len(inputs) == 2 and self._rank() == 2, where,
                   "multiplies the 2-D running value by a constant matrix on the right")
        self._apply(self._running(inputs[0], where))
        self._chain.dense(self._float(self._constant(inputs[1], where), where), None, where)
        return self._next(where)

    def _arithmetic(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        arity = 1 if op in _UNARY else 2
        self._need(len(inputs) == arity, where,
                   f"has {arity} input{'s' if arity > 1 else ''} (found {len(inputs)})")
        args = []
        for name in inputs:
            value = self._operand(name, where)
            if isinstance(value, Expr):
                args.append(self._current(value, name, where))
            elif isinstance(value, np.ndarray):
                args.append(self._per_feature(value, where, integers=op == "Pow"))
            else:
                raise UnsupportedModelError(f"{where}: arithmetic on a shape is unsupported")
        if not any(isinstance(a, Expr) for a in args):
            raise UnsupportedModelError(f"{where} computes on constants only: unsupported")
        if op == "Div" and isinstance(args[1], np.ndarray):
            self._need(bool(np.all(np.isfinite(args[1])) and np.all(args[1] != 0)), where,
                       f"divides by finite non-zero numbers (found {args[1].min()!r})")
        return Expr(op, tuple(args), generation=self._generation, where=where)

    def _function(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        self._need(len(inputs) == 1, where, "has one input")
        value = self._current(self._operand(inputs[0], where), inputs[0], where)
        name = FUNCTIONS[op]
        params: tuple[float, ...] = ()
        if op == "LeakyRelu":
            params = (decimal(attributes.get("alpha", 0.01)),)
        elif op == "Elu":
            params = (decimal(attributes.get("alpha", 1.0)),)
        elif op == "HardSigmoid":
            params = (decimal(attributes.get("alpha", 0.2)), decimal(attributes.get("beta", 0.5)))
        elif op == "Selu":
            self._need(all(np.float32(attributes.get(k, v)) == v for k, v in _SELU.items()),
                       where, f"has ONNX's default alpha and gamma (found {attributes})")
        elif op == "Gelu":
            approximate = attributes.get("approximate", b"none")
            self._need(approximate in (b"none", b"tanh"), where,
                       f"approximates with 'none' or 'tanh' (found {approximate[:20]!r})")
            name = "gelu" if approximate == b"none" else "gelu_tanh"
        spec = str(_activations.Activation(name, params))
        return Expr(op, (value,), spec=spec, generation=self._generation, where=where)

    def _where(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        """Where(Greater(x, t), x, Softplus(x)): PyTorch's Softplus with its threshold."""
        values = [self._operand(name, where) for name in inputs]
        if len(values) == 3 and all(isinstance(v, Expr) for v in values):
            condition, above, below = values
            if (condition.op == "Greater" and condition.args[0] is above
                    and below.op == "Softplus" and below.args[0] is above
                    and isinstance(condition.args[1], np.ndarray)
                    and condition.args[1].ndim == 0
                    and float(condition.args[1]) >= _SOFTPLUS_THRESHOLD):
                return self._current(below, inputs[2], where)
        raise UnsupportedModelError(
            f"{where}: supported only as Softplus's threshold, Where(Greater(x, t), x, "
            f"Softplus(x)) with t >= {_SOFTPLUS_THRESHOLD:g}")

    def _row_activation(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        axis = attributes.get("axis", -1 if self._opset >= 13 else 1)
        self._need(len(inputs) == 1 and axis in (-1, 1) and self._rank() == 2, where,
                   f"is over the last axis of a 2-D value (axis={axis})")
        self._apply(self._running(inputs[0], where))
        self._chain.activate("softmax" if op == "Softmax" else "log_softmax", where)
        return self._next(where)

    def _batch_norm(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        self._need(len(inputs) == 5 and not attributes.get("training_mode", 0)
                   and attributes.get("spatial", 1) == 1 and self._rank() == 2, where,
                   "normalises a 2-D value with its running statistics (training_mode=0)")
        self._apply(self._running(inputs[0], where))
        gamma, beta, mean, variance = (self._float(self._constant(name, where), where)
                                       for name in inputs[1:])
        self._chain.batch_norm(mean, variance, gamma, beta,
                               decimal(attributes.get("epsilon", 1e-5)), where)
        return self._next(where)

    def _layer_norm(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        axis = attributes.get("axis", -1)
        self._need(len(inputs) in (2, 3) and axis in (-1, 1) and self._rank() == 2
                   and attributes.get("stash_type", 1) == 1, where,
                   f"normalises the last axis of a 2-D value in float32 (axis={axis}, "
                   f"stash_type={attributes.get('stash_type', 1)})")
        self._apply(self._running(inputs[0], where))
        gamma = self._float(self._constant(inputs[1], where), where)
        beta = (self._float(self._constant(inputs[2], where), where)
                if len(inputs) == 3 and inputs[2] else None)
        self._chain.layer_norm(gamma, beta, decimal(attributes.get("epsilon", 1e-5)), where)
        return self._next(where)

    def _identity(self, op: str, inputs: list[str], attributes: dict,
                  where: str) -> Expr | np.ndarray | _Shape:
        self._need(len(inputs) == 1, where, "has one input")
        value = self._operand(inputs[0], where)
        if isinstance(value, Expr):
            self._chain.skip(op, where)
        return value

    def _dropout(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        self._need(1 <= len(inputs) <= 3, where, "has its data, ratio and training_mode inputs")
        if len(inputs) == 3 and inputs[2]:
            training = self._constant(inputs[2], where)
            self._need(training.size == 1 and not training.reshape(-1)[0], where,
                       "runs in inference mode (training_mode false)")
        value = self._current(self._operand(inputs[0], where), inputs[0], where)
        self._chain.skip(op, where)
        return value

    def _flatten(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        axis = attributes.get("axis", 1)
        self._need(len(inputs) == 1 and axis == 1, where, f"keeps the batch axis (axis={axis})")
        self._apply(self._running(inputs[0], where))
        self._flattened(op, where)
        return self._next(where)

    def _reshape(self, op: str, inputs: list[str], attributes: dict, where: str) -> Expr:
        self._need(len(inputs) == 2, where, "has data and shape inputs")
        running = self._running(inputs[0], where)
        target = self._operand(inputs[1], where)
        if isinstance(target, np.ndarray):
            self._need(target.dtype.kind == "i" and target.ndim == 1, where,
                       f"reshapes to (batch, features) (target of {target.dtype} "
                       f"shape {target.shape})")
            target = _Shape(tuple(int(v) for v in target))
        elif not isinstance(target, _Shape) or target.scalar:
            raise UnsupportedModelError(f"{where}: its target shape is not a constant or "
                                        "computed from the input's shape")
        entries = list(target.entries)
        features = self._features()
        batch = entries[0] if entries else None
        by_batch = batch == _BATCH or (batch == 0 and not attributes.get("allowzero", 0)) or (
            batch is not None and batch == self._fixed_batch and batch > 0)
        ok = len(entries) == 2 and (
            (by_batch and (entries[1] == -1 or (features is not None and entries[1] == features)))
            or (batch == -1 and features is not None and entries[1] == features))
        self._need(ok, where, f"reshapes to (batch, {features}) (target "
                   f"{[e if e != _BATCH else 'batch' for e in entries]})")
        self._apply(running)
        self._flattened(op, where)
        return self._next(where)

    def _shape(self, op: str, inputs: list[str], attributes: dict, where: str) -> _Shape:
        self._need(len(inputs) == 1, where, "has one input")
        self._current(self._operand(inputs[0], where), inputs[0], where)
        dims = self._running_dims()
        if dims is None:
            raise UnsupportedModelError(f"{where}: the shape of an input whose rank the "
                                        "graph does not declare")
        entries = [_BATCH, *dims[1:]]
        start, end = attributes.get("start", 0), attributes.get("end", len(entries))
        return _Shape(tuple(entries[slice(start, end)]))

    def _gather(self, op: str, inputs: list[str], attributes: dict, where: str) -> _Shape:
        data = self._integers(inputs[0], where) if inputs else None
        indices = self._constant(inputs[1], where) if len(inputs) == 2 else None
        self._need(data is not None and not data.scalar and indices is not None
                   and indices.dtype.kind == "i" and indices.ndim <= 1
                   and attributes.get("axis", 0) == 0, where,
                   "takes constant indices of a 1-D shape")
        assert data is not None
        assert indices is not None
        count = len(data.entries)
        picked = []
        for index in indices.reshape(-1).tolist():
            self._need(-count <= index < count, where, f"indexes within {count} entries")
            picked.append(data.entries[index])
        return _Shape(tuple(picked), scalar=indices.ndim == 0)

    def _unsqueeze(self, op: str, inputs: list[str], attributes: dict, where: str) -> _Shape:
        axes = (list(attributes["axes"]) if "axes" in attributes
                else self._constant(inputs[1], where).reshape(-1).tolist()
                if len(inputs) == 2 else None)
        data = self._integers(inputs[0], where) if inputs else None
        self._need(data is not None and data.scalar and axes in ([0], [-1]), where,
                   "makes a 1-D shape of one entry")
        assert data is not None
        return _Shape(data.entries)

    def _concat(self, op: str, inputs: list[str], attributes: dict, where: str) -> _Shape:
        parts = [self._integers(name, where) for name in inputs]
        # 60 Concats of a shape with itself would make 2^60 entries.
        self._need(attributes.get("axis") in (0, -1) and all(not p.scalar for p in parts)
                   and sum(len(p.entries) for p in parts) <= _MAX_RANK,
                   where, f"joins 1-D shapes into at most {_MAX_RANK} entries")
        return _Shape(tuple(entry for part in parts for entry in part.entries))

    def _constant_node(self, op: str, inputs: list[str], attributes: dict,
                       where: str) -> np.ndarray:
        if len(attributes) != 1:
            raise UnsupportedModelError(f"{where} has {len(attributes)} values; expected one")
        name, value = next(iter(attributes.items()))
        if name == "value":
            return tensor_array(value, where, self._external)
        return np.asarray(value, dtype=np.float64 if "float" in name else np.int64)

    # ------------------------------------------------------------------ values

    def _operand(self, name: str, where: str) -> Expr | np.ndarray | _Shape:
        if name in self._values:
            return self._values[name]
        if name in self._initializers:
            return self._constant(name, where)
        raise UnsupportedModelError(
            f"{where} reads {name[:100]!r}, which is neither computed before it nor a "
            "constant"
        )

    def _constant(self, name: str, where: str) -> np.ndarray:
        value = self._values.get(name)
        if isinstance(value, np.ndarray):
            return value
        if value is None and name in self._initializers:
            array = tensor_array(self._initializers[name], f"initializer {name!r}",
                                 self._external)
            self._values[name] = array
            return array
        found = "a value computed from the input" if isinstance(value, (Expr, _Shape)) else "nothing"
        raise UnsupportedModelError(f"{where}: expected a constant as {name[:100]!r}, found "
                                    f"{found}")

    def _integers(self, name: str, where: str) -> _Shape:
        value = self._operand(name, where)
        if isinstance(value, np.ndarray) and value.dtype.kind == "i" and value.ndim <= 1:
            return _Shape(tuple(int(v) for v in value.reshape(-1)), scalar=value.ndim == 0)
        if isinstance(value, _Shape):
            return value
        raise UnsupportedModelError(f"{where}: expected a shape or integer constant as "
                                    f"{name[:100]!r}")

    def _current(self, value: Any, name: str, where: str) -> Expr:
        if not isinstance(value, Expr):
            raise UnsupportedModelError(f"{where}: expected the running value as "
                                        f"{name[:100]!r}, found a constant")
        if value.generation != self._generation:
            raise UnsupportedModelError(
                f"{where} reads {name[:100]!r}, a value from before the layer the chain has "
                "moved on to: only chains are supported (no branches or skip connections)")
        return value

    def _running(self, name: str, where: str) -> Expr:
        return self._current(self._operand(name, where), name, where)

    def _per_feature(self, value: np.ndarray, where: str, *, integers: bool) -> np.ndarray:
        """A constant operand of elementwise arithmetic: one number, or one per feature of
        the 2-D running value."""
        if value.dtype.kind not in ("fi" if integers else "f"):
            raise UnsupportedModelError(f"{where}: a constant of {value.dtype}; expected floats")
        array = value.astype(np.float64)
        if array.size == 1:
            return array.reshape(())
        features = self._features()
        if self._rank() == 2 and features is not None and array.shape in ((features,),
                                                                           (1, features)):
            return array.reshape(-1)
        raise UnsupportedModelError(
            f"{where}: a constant of shape {value.shape} is neither one number nor one per "
            f"feature of the running value ({self._running_dims()})")

    @staticmethod
    def _float(value: np.ndarray, where: str) -> np.ndarray:
        if value.dtype.kind != "f":
            raise UnsupportedModelError(f"{where}: a constant of {value.dtype}; expected floats")
        return value

    @staticmethod
    def _need(condition: bool, where: str, contract: str) -> None:
        if not condition:
            raise UnsupportedModelError(f"{where}: supported only when it {contract}")

    # ------------------------------------------------------------------ the chain

    def _apply(self, value: Expr) -> None:
        """Run the chain steps that compute ``value`` from the running value."""
        for step in decompose(value):
            if step.activation is not None:
                self._chain.activate(step.activation, step.where)
            elif (not self._chain.started and step.scale.ndim == 0 and step.shift.ndim == 0
                  and float(step.scale) != 1.0):
                self._chain.scale(float(step.scale), float(step.shift), step.where)
            else:
                self._chain.affine(step.scale, step.shift, step.where)

    def _next(self, where: str) -> Expr:
        """A new running value: what the layer at ``where`` computed."""
        self._generation += 1
        return Expr("value", generation=self._generation, where=where)

    def _flattened(self, op: str, where: str) -> None:
        if not self._chain.started and self._dims is not None:
            self._dims = [self._dims[0] if self._dims else None, self._features()]
        self._chain.skip(op, where)

    def _running_dims(self) -> list[int | None] | None:
        if self._chain.started:
            return [None, self._chain.width]
        return self._dims

    def _rank(self) -> int | None:
        dims = self._running_dims()
        return None if dims is None else len(dims)

    def _features(self) -> int | None:
        dims = self._running_dims()
        if dims is None or any(d is None for d in dims[1:]):
            return None
        return math.prod(d for d in dims[1:] if d is not None)


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


def supported() -> dict[str, str]:
    """Concept key -> how ONNX spells it, for reading: from `OPS` and the patterns."""
    rows: dict[str, list[str]] = {"identity": ["no activation op"]}
    for _, _, concepts in OPS.values():
        for concept, spelling in concepts:
            if spelling not in rows.setdefault(concept, []):
                rows[concept].append(spelling)
    for concept, spelling in PATTERNS.items():
        rows.setdefault(concept, []).append(spelling)
    return {concept: "; ".join(spellings) for concept, spellings in rows.items()}
