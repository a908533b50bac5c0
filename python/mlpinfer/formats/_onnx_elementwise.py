"""Elementwise ONNX ops on the running value, recognised as activations or feature scaling.

Exporters write one activation as several nodes: PyTorch's SiLU is ``Mul(x, Sigmoid(x))``,
its GELU before opset 20 is ``Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5`` (the
legacy exporter) or with the two ``Mul`` in the other order (the dynamo exporter), its
tanh-approximated GELU is ten nodes, its Softplus is ``Where(x > 20, x, Softplus(x))``.
Rather than matching node sequences, which each exporter orders differently, the reader
keeps every elementwise value as an expression tree (`Expr`) over the running value and
constants, and when a value leaves the elementwise world (a dense layer, a norm, a
reshape or the graph output reads it) decomposes it (`decompose`) into steps the chain
runs: per-feature ``x * a + b`` (feature scaling) and activations.

A decomposition picks a sub-expression ``u``, writes the whole as a polynomial in ``u``
whose coefficients may carry factors such as ``Erf(p)`` (`_canonical`), and compares the
coefficients with those of each known activation (`_match`): GELU is
``0.5 u + 0.5 u erf(u / sqrt 2)`` whatever order and association the nodes use. A
coefficient matches within a relative 1e-6: the constants are float32 (sqrt 2 is stored
as 1.41421354, 4e-8 away), and 1e-6 is far below any float32 network's own error.
Anything that matches nothing is refused, naming the node and the ops it found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._chain import UnsupportedModelError

__all__ = ["FACTORS", "FUNCTIONS", "PATTERNS", "Expr", "Step", "decompose"]

# Ops that are one activation of the running value: op -> the activation's name (the
# parameters come from the node's attributes, see `_onnx_graph`).
FUNCTIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leaky_relu",
             "Elu": "elu", "Selu": "selu", "Softplus": "softplus",
             "HardSigmoid": "hard_sigmoid", "Gelu": "gelu"}
# Multi-node forms recognised by their polynomial: activation -> how it is spelled.
PATTERNS = {
    "gelu": "its Div (or Mul), Erf, Add, Mul, Mul form",
    "gelu_tanh": "its Mul (or Pow), Add, Mul, Tanh, Add, Mul, Mul form",
    "silu": "Mul(x, Sigmoid(x))",
}
# Ops that are factors of the patterns only, not activations themselves. An `Expr` may
# also hold Add, Sub, Mul, Div, Neg and Pow (`_combine`), and Greater (only as Softplus's
# threshold, see `_onnx_graph`).
FACTORS = ("Erf",)

# Bounds of a canonical form: beyond them nothing we recognise can match, and a graph
# that squares a value 100 times must not cost 2^100 terms.
_MAX_DEGREE = 4
_MAX_TERMS = 8
_MAX_FACTORS = 2
_MAX_NODES = 64  # GELU's tanh form is 10
_RELATIVE = 1e-6

_SQRT_HALF = math.sqrt(0.5)
_TANH_SCALE = math.sqrt(2 / math.pi)
_TANH_CUBIC = 0.044715


@dataclass(eq=False)
class Expr:
    """An elementwise value: ``op`` ("value": the running value itself) of ``args``, each
    an `Expr` or a constant (a float64 array, 0-d or one value per feature). ``spec`` is
    the activation of a FUNCTIONS op, with its parameters. ``generation`` names the
    running value it derives from; ``where`` the node that computed it."""

    op: str
    args: tuple[Expr | np.ndarray, ...] = ()
    spec: str = ""
    generation: int = 0
    where: str = ""

    def __post_init__(self) -> None:
        # Nodes of the tree as a DAG; shared sub-expressions count once.
        seen: dict[int, Expr] = {}
        stack = [self]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            stack.extend(a for a in node.args if isinstance(a, Expr))
            if len(seen) > _MAX_NODES:
                raise UnsupportedModelError(
                    f"{self.where}: more than {_MAX_NODES} elementwise ops in a row; expected "
                    "an activation or a feature scaling")

    def nodes(self) -> list[Expr]:
        """Every sub-expression, breadth first from this one, each once."""
        order, seen = [self], {id(self)}
        for node in order:
            for arg in node.args:
                if isinstance(arg, Expr) and id(arg) not in seen:
                    seen.add(id(arg))
                    order.append(arg)
        return order

    def ops(self) -> list[str]:
        return [node.op for node in reversed(self.nodes()) if node.op != "value"]


@dataclass(frozen=True)
class Step:
    """What the chain runs for part of an expression: ``activation`` (a spec), or
    ``x * scale + shift`` when activation is None."""

    where: str
    activation: str | None = None
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None


# A canonical form: (power of u, ids of factor Exprs) -> coefficient (0-d or per feature).
_Poly = dict[tuple[int, tuple[int, ...]], np.ndarray]


def decompose(root: Expr) -> list[Step]:
    """The chain steps that compute ``root`` from the running value, or a refusal naming
    the node and the ops."""
    steps = _Decomposer().steps(root)
    if steps is None:
        ops = root.ops()
        shown = ", ".join(ops[:12]) + (f", ... ({len(ops)} ops)" if len(ops) > 12 else "")
        raise UnsupportedModelError(
            f"{root.where}: the elementwise ops {shown} on the running value "
            "are neither an activation nor a feature scaling mlpinfer knows (supported: "
            f"{', '.join(FUNCTIONS)}, Softmax, LogSoftmax, the patterns "
            f"{'; '.join(f'{k}: {v}' for k, v in PATTERNS.items())}; Add, Sub, Mul, Div by "
            "constants)")
    return steps


class _Decomposer:
    def __init__(self) -> None:
        self._memo: dict[int, list[Step] | None] = {}
        self._factors: dict[int, Expr] = {}

    def steps(self, root: Expr) -> list[Step] | None:
        if root.op == "value":
            return []
        if id(root) in self._memo:
            return self._memo[id(root)]
        self._memo[id(root)] = None  # while being decomposed
        found = None
        for inner in root.nodes()[1:]:
            poly = _canonical(root, inner, {}, self._factors)
            if poly is None:
                continue
            step = self._match(poly, inner, root.where)
            if step is None:
                continue
            rest = self.steps(inner)
            if rest is not None:
                found = rest + ([] if _is_identity(step) else [step])
                break
        self._memo[id(root)] = found
        return found

    def _match(self, poly: _Poly, inner: Expr, where: str) -> Step | None:
        if all(not factors and power <= 1 for power, factors in poly):
            return Step(where, None, poly.get((1, ()), np.float64(0.0)),
                        poly.get((0, ()), np.float64(0.0)))
        if len(poly) == 1:
            ((power, factors), coefficient), = poly.items()
            if len(factors) != 1 or not _near(coefficient, 1.0):
                return None
            factor = self._factors[factors[0]]
            if not self._is_function_of(factor, inner, {(1, ()): 1.0}):
                return None
            if power == 0 and factor.spec:
                return Step(where, factor.spec)
            if power == 1 and factor.op == "Sigmoid":
                return Step(where, "silu")
            return None
        if len(poly) == 2 and _near(poly.get((1, ()), np.nan), 0.5):
            rest = [key for key in poly if key != (1, ())]
            if len(rest) != 1 or rest[0][0] != 1 or len(rest[0][1]) != 1 or \
                    not _near(poly[rest[0]], 0.5):
                return None
            factor = self._factors[rest[0][1][0]]
            if factor.op == "Erf" and self._is_function_of(factor, inner, {(1, ()): _SQRT_HALF}):
                return Step(where, "gelu")
            if factor.op == "Tanh" and self._is_function_of(
                    factor, inner, {(1, ()): _TANH_SCALE, (3, ()): _TANH_SCALE * _TANH_CUBIC}):
                return Step(where, "gelu_tanh")
        return None

    def _is_function_of(self, factor: Expr, inner: Expr, expected: dict) -> bool:
        """Whether ``factor``'s argument is the polynomial ``expected`` of ``inner``."""
        argument = factor.args[0]
        if not isinstance(argument, Expr):
            return False
        poly = _canonical(argument, inner, {}, self._factors)
        return poly is not None and poly.keys() == expected.keys() and all(
            _near(poly[key], value) for key, value in expected.items())


def _is_identity(step: Step) -> bool:
    return step.activation is None and bool(np.all(step.scale == 1.0)) and \
        bool(np.all(step.shift == 0.0))


def _near(value: np.ndarray | float, expected: float) -> bool:
    array = np.asarray(value)
    return array.ndim == 0 and abs(float(array) - expected) <= _RELATIVE * abs(expected)


def _canonical(node: Expr | np.ndarray, inner: Expr, memo: dict[int, _Poly | None],
               factors: dict[int, Expr]) -> _Poly | None:
    """``node`` as a polynomial in ``inner`` (None: it is not one within the bounds, or
    it reads the running value other than through ``inner``)."""
    if isinstance(node, np.ndarray):
        return {(0, ()): node}
    if node is inner:
        return {(1, ()): np.float64(1.0)}
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = result = _combine(node, inner, memo, factors)
    return result


def _combine(node: Expr, inner: Expr, memo: dict[int, _Poly | None],
             factors: dict[int, Expr]) -> _Poly | None:
    if node.op == "value":
        return None
    if node.op in FUNCTIONS or node.op in FACTORS:
        if _canonical(node.args[0], inner, memo, factors) is None:
            return None  # its argument reads the running value some other way
        factors[id(node)] = node
        return {(0, (id(node),)): np.float64(1.0)}
    parts = [_canonical(arg, inner, memo, factors) for arg in node.args]
    if any(part is None for part in parts) or node.op not in _OPERATIONS:
        return None
    return _bounded(_OPERATIONS[node.op](*parts))


def _bounded(poly: _Poly | None) -> _Poly | None:
    if poly is None or len(poly) > _MAX_TERMS:
        return None
    if any(power > _MAX_DEGREE or len(f) > _MAX_FACTORS for power, f in poly):
        return None
    return poly


def _add(a: _Poly, b: _Poly, sign: float) -> _Poly:
    total = dict(a)
    for key, value in b.items():
        total[key] = total[key] + sign * value if key in total else sign * value
    return {key: value for key, value in total.items() if np.any(value != 0)}


def _scaled(a: _Poly, factor: np.ndarray) -> _Poly:
    return {key: value * factor for key, value in a.items()}


def _multiply(a: _Poly, b: _Poly) -> _Poly | None:
    if len(a) * len(b) > _MAX_TERMS * _MAX_TERMS:
        return None
    product: _Poly = {}
    for (power_a, factors_a), value_a in a.items():
        for (power_b, factors_b), value_b in b.items():
            key = (power_a + power_b, tuple(sorted(factors_a + factors_b)))
            if key[0] > _MAX_DEGREE or len(key[1]) > _MAX_FACTORS:
                return None
            value = value_a * value_b
            product[key] = product[key] + value if key in product else value
    return {key: value for key, value in product.items() if np.any(value != 0)}


def _constant(poly: _Poly) -> np.ndarray | None:
    return poly.get((0, ())) if set(poly) <= {(0, ())} else None


def _divide(a: _Poly, b: _Poly) -> _Poly | None:
    divisor = _constant(b)
    if divisor is None or not np.all(np.isfinite(divisor)) or np.any(divisor == 0):
        return None
    return _scaled(a, 1.0 / divisor)


def _power(a: _Poly, b: _Poly) -> _Poly | None:
    exponent = _constant(b)
    if exponent is None or exponent.ndim or exponent not in (1.0, 2.0, 3.0, 4.0):
        return None
    result: _Poly | None = a
    for _ in range(int(exponent) - 1):
        result = _bounded(_multiply(result, a)) if result is not None else None
    return result


# The polynomial arithmetic of `_combine` (Greater has none: it is no polynomial).
_OPERATIONS: dict[str, Callable[..., _Poly | None]] = {
    "Add": lambda a, b: _add(a, b, 1.0),
    "Sub": lambda a, b: _add(a, b, -1.0),
    "Mul": _multiply,
    "Neg": lambda a: _scaled(a, np.float64(-1.0)),
    "Div": _divide,
    "Pow": _power,
}
