"""What every framework reader and importer shares: the refusal error, optional imports and
the layer chain that turns a framework's layers into a network.

The input transform, and folding
--------------------------------
Per-feature affine steps (inference-mode BatchNorm, Keras ``Normalization`` and
``Rescaling``, scikit-learn's scalers, ONNX ``Mul``/``Add`` by constants) are not run as
steps. Before the first dense layer they become the network's `InputTransform`, composed
in float64: ``x * s + t`` is ``(x - shift) * multiplier`` with ``multiplier = s`` and
``shift = -t / s``, which the engine computes in float64 and rounds once, exactly however
far the features sit from 0 (a feature with ``s == 0`` is the constant ``t``: it folds
into the first layer's bias, with multiplier 0). A scalar `scale` there sets the
network's input scale as before (uint8 pixels), and its offset folds.

Elsewhere they are folded into the adjacent dense layer, or into a LayerNorm's gamma and
beta. After a dense layer (no activation between) ``(x W + b) * s + t`` becomes
``x (W * s) + (b * s + t)``; after an activation ``(x * s + t) W + b`` becomes
``x (s[:, None] * W) + (t W + b)`` in the next dense layer. The arithmetic is done in
float64 and the folded weights are rounded to float32 once, when the `Network` is built.

That changes one rounding: the framework rounds the float32 product ``x W + b`` and then
applies the BatchNorm in float32 (two more roundings per output); we round the folded
``W * s`` once and the product once. Neither is the exact float64 result; the two differ
by a few float32 ulps of the output. The importer tests compare against the framework
within 1e-5 x max(1, max |output|) (tests/framework_support.py), with identical labels.

Folding a shift into the next dense layer changes more: the framework subtracts first (in
float32, exactly for inputs near the subtracted value) and multiplies the small result,
while the folded layer multiplies the large inputs and subtracts ``t W`` afterwards, losing
about 2^-24 x sum |t W| to cancellation. Where that exceeds 5e-6 of the layer's output scale
the fold is refused rather than run inexactly. Hidden values (after an activation) sit
near 0, so this is for unusual models; on the input, where features hundreds of spreads
from 0 are ordinary (a year near 2000 with std 10), the input transform is used instead.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import numpy.typing as npt

from .. import _activations
from .._errors import WeightsError
from .._network import InputTransform, Layer, LayerNorm, Network

__all__ = ["Chain", "UnsupportedModelError", "require"]


class UnsupportedModelError(WeightsError):
    """A model uses a layer, op or option that mlpinfer cannot run; the message names it."""


UnsupportedModelError.__module__ = "mlpinfer.importers"  # where users import it from


def require(module: str, extra: str) -> ModuleType:
    """Import an optional framework, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"this needs the optional dependency {module.split('.')[0]!r}: "
            f"pip install 'mlpinfer[{extra}]' (import error: {error})"
        ) from error


# How a refusal says what would have worked.
_FOLDS = ("a feature scaling folds into the dense layer before it (with no activation between), "
          "into a LayerNorm before it, or into the next dense layer")
_NORMS = ("a LayerNorm is supported on a dense layer's outputs, before or after its activation, "
          "one per layer")

# What a folded shift may add, relative to a layer's output scale: half the importers'
# 1e-5, as measured output errors reached 1.7x the estimate (see _check_cancellation).
_FOLD_ERROR = 5e-6


@dataclass
class _Draft:
    """A dense layer being built, in float64. ``activation`` None: not applied yet."""

    weights: np.ndarray
    bias: np.ndarray
    activation: str | None = None
    norm: LayerNorm | None = None
    norm_after_activation: bool = False

    @property
    def outputs(self) -> int:
        return int(self.weights.shape[1])


@dataclass
class _Carry:
    """``x * scale + shift`` waiting for the next dense layer; 0-d arrays are scalars."""

    scale: np.ndarray
    shift: np.ndarray
    where: str  # the first step it holds, for refusals
    affine: bool = False  # holds an affine step, not only `scale` calls

    @property
    def width(self) -> int | None:
        sizes = {a.size for a in (self.scale, self.shift) if a.ndim == 1}
        return sizes.pop() if sizes else None


class Chain:
    """Builds a network from a framework's layers, one step at a time.

    Each step names where it came from (``where``, e.g. "layer 3 (BatchNormalization
    'bn1')") so that a refusal points at the framework's layer or node. Two dense steps with
    no activation between them become two layers (the first with identity) rather than one
    product, so that the engine rounds exactly as the framework does.
    """

    def __init__(self) -> None:
        self._layers: list[_Draft] = []
        self._carry: _Carry | None = None
        self._scale: float | None = None
        self._transform: InputTransform | None = None

    @property
    def started(self) -> bool:
        """Whether a dense step has been seen (input transforms must come before it)."""
        return bool(self._layers)

    @property
    def input_transform(self) -> InputTransform | None:
        """What the affine steps before the first dense layer became (once that layer is
        added); None: there were none, or only `scale` steps."""
        return self._transform

    @property
    def width(self) -> int | None:
        """Features of the current value, once a dense step (or a per-feature step on the
        input) has fixed it."""
        if self._layers:
            return self._layers[-1].outputs
        return None if self._carry is None else self._carry.width

    # ------------------------------------------------------------------ steps

    def dense(self, weights: npt.ArrayLike, bias: npt.ArrayLike | None, where: str) -> None:
        """``x @ weights + bias``; ``weights`` is (inputs, outputs); no bias means zeros."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2:
            raise UnsupportedModelError(f"{where}: weights must be 2-D, got shape {w.shape}")
        b = np.zeros(w.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64)
        if b.shape != (w.shape[1],):
            raise UnsupportedModelError(
                f"{where}: bias has shape {b.shape}, the weights have {w.shape[1]} outputs"
            )
        last = self._layers[-1] if self._layers else None
        if last is not None and last.activation in _activations.ROW_ACTIVATIONS:
            raise UnsupportedModelError(
                f"{where}: a dense layer after {last.activation} ({last.activation} is only "
                "supported on the last layer)"
            )
        if self._carry is not None:
            carry = self._carry
            if carry.width is not None and carry.width != w.shape[0]:
                raise UnsupportedModelError(
                    f"{carry.where}: {carry.width} features, but the dense layer it folds "
                    f"into ({where}) has {w.shape[0]} inputs"
                )
            shift = np.broadcast_to(carry.shift, (w.shape[0],))
            if last is None and carry.affine:
                # x * s + t == (x - (-t / s)) * s, in the engine; s == 0: the constant t.
                scale = np.broadcast_to(carry.scale, (w.shape[0],))
                constant = scale == 0
                b = b + np.where(constant, shift, 0.0) @ w
                self._transform = InputTransform(
                    np.where(constant, 0.0, -shift / np.where(constant, 1.0, scale)),
                    scale.copy())
            else:
                # (x * s + t) @ W + b == x @ (s[:, None] * W) + (t @ W + b)
                _check_cancellation(shift, w, b, carry.where, where)
                b = b + shift @ w
                w = (carry.scale[:, None] if carry.scale.ndim else carry.scale) * w
            self._carry = None
        if last is not None and last.outputs != w.shape[0]:
            raise UnsupportedModelError(
                f"{where}: weights for {w.shape[0]} inputs, but the value before it has "
                f"{last.outputs} features"
            )
        if last is not None and last.activation is None:
            last.activation = "identity"
        self._layers.append(_Draft(w, b))

    def add_bias(self, bias: npt.ArrayLike, where: str) -> None:
        """``+ bias`` on the outputs of the dense layer just added."""
        if not self._layers or self._layers[-1].activation is not None:
            raise UnsupportedModelError(f"{where}: a bias addition that follows no dense layer")
        self._fold(np.float64(1.0), _features(bias, "bias", where), where)

    def scale(self, factor: float, offset: float, where: str) -> None:
        """``x * factor + offset`` of the current value, two numbers.

        Before the first dense layer the factor becomes the network's input scale (what
        uint8 pixels are multiplied by) and the offset folds into the first layer; after
        it, this is `affine` with scalars."""
        if self._layers:
            self.affine(factor, offset, where)
            return
        factor, offset = float(factor), float(offset)
        if not (math.isfinite(factor) and math.isfinite(offset)):
            raise UnsupportedModelError(
                f"{where}: scale {factor} and offset {offset}; expected finite numbers"
            )
        self._scale = factor if self._scale is None else self._scale * factor
        # (x' * s + t) * f + o == (x' * f) * s + (t * f + o): f joins the input scale.
        if self._carry is None:
            self._carry = _Carry(np.float64(1.0), np.float64(offset), where)
        else:
            self._carry.shift = self._carry.shift * factor + offset

    def affine(self, scale: npt.ArrayLike, shift: npt.ArrayLike, where: str) -> None:
        """``x * scale + shift``, each per feature or one number, folded (see the module
        docstring)."""
        self._fold(_features(scale, "scale", where), _features(shift, "shift", where), where)

    def batch_norm(self, mean: npt.ArrayLike, variance: npt.ArrayLike,
                   gamma: npt.ArrayLike | None, beta: npt.ArrayLike | None,
                   epsilon: float, where: str) -> None:
        """Inference-mode BatchNorm: ``(x - mean) / sqrt(variance + epsilon) * gamma + beta``
        with the running statistics; ``gamma``/``beta`` None: 1 and 0 (no affine part)."""
        mean_ = _features(mean, "mean", where, vector=True)
        variance_ = _features(variance, "variance", where, vector=True, size=mean_.size)
        gamma_ = _features(1.0 if gamma is None else gamma, "gamma", where, size=mean_.size)
        beta_ = _features(0.0 if beta is None else beta, "beta", where, size=mean_.size)
        epsilon = _epsilon(epsilon, where)
        denominator = variance_ + epsilon
        if not np.all(denominator > 0):
            index = int(np.argmin(denominator > 0))
            raise UnsupportedModelError(
                f"{where}: variance {float(variance_[index])!r} + epsilon {epsilon!r} at feature "
                f"{index} is not positive"
            )
        scale = gamma_ / np.sqrt(denominator)
        self._fold(scale, beta_ - mean_ * scale, where)

    def layer_norm(self, gamma: npt.ArrayLike | None, beta: npt.ArrayLike | None,
                   epsilon: float, where: str) -> None:
        """LayerNorm over the features of the current dense layer's outputs: before its
        activation if none has been applied yet, after it otherwise."""
        if self._carry is not None:
            what = ("the input (before the first dense layer)" if not self._layers
                    else f"the feature scaling {self._carry.where}, which has no dense layer "
                    "to fold into")
            raise UnsupportedModelError(
                f"{where}: a LayerNorm on {what} cannot be expressed; {_NORMS}"
            )
        if not self._layers:
            raise UnsupportedModelError(
                f"{where}: a LayerNorm on the input (before the first dense layer) cannot be "
                f"expressed; {_NORMS}"
            )
        last = self._layers[-1]
        if last.norm is not None:
            raise UnsupportedModelError(
                f"{where}: a second LayerNorm on the same dense layer; {_NORMS}"
            )
        if last.activation in _activations.ROW_ACTIVATIONS:
            raise UnsupportedModelError(
                f"{where}: a LayerNorm after {last.activation} ({last.activation} is only "
                "supported as the last step)"
            )
        size = last.outputs
        norm = LayerNorm(
            _features(1.0 if gamma is None else gamma, "gamma", where, size=size) * np.ones(size),
            _features(0.0 if beta is None else beta, "beta", where, size=size) * np.ones(size),
            _epsilon(epsilon, where, positive=True),
        )
        last.norm = norm
        last.norm_after_activation = last.activation is not None

    def activate(self, spec: str, where: str) -> None:
        """Apply an activation (a name, or a name with parameters, see
        `mlpinfer._activations`) to the current dense layer."""
        try:
            name = str(_activations.parse(spec))
        except ValueError as error:
            raise UnsupportedModelError(f"{where}: {error}") from None
        if name == "identity":
            return
        if self._carry is not None and self._layers:
            raise UnsupportedModelError(
                f"{where}: activation {name} after the feature scaling {self._carry.where}, "
                f"with no dense layer between, cannot be expressed; {_FOLDS}"
            )
        if not self._layers or self._layers[-1].activation is not None:
            previous = self._layers[-1].activation if self._layers else "the input"
            raise UnsupportedModelError(
                f"{where}: activation {name} applied to {previous} with no dense layer between"
            )
        self._layers[-1].activation = name

    def skip(self, what: str, where: str) -> None:
        """A layer that changes nothing at inference (Dropout, Identity, Flatten of a flat
        value, InputLayer). Readers call it so that every layer they accept is a decision."""
        del what, where  # nothing to compute or to record

    # ------------------------------------------------------------------ the result

    def layers(self) -> list[Layer]:
        """The layers built so far (float64 arrays; `Network` rounds them to float32)."""
        if not self._layers:
            raise UnsupportedModelError("the model has no dense layer")
        if self._carry is not None:
            raise UnsupportedModelError(
                f"{self._carry.where}: a feature scaling after the last activation, with no "
                f"dense layer after it, cannot be expressed; {_FOLDS}"
            )
        return [Layer(d.weights, d.bias, d.activation or "identity", d.norm,
                      d.norm_after_activation) for d in self._layers]

    def network(self, *, classes: npt.ArrayLike | None = None,
                pixel_scale: float | str | None = "auto", multilabel: bool = False) -> Network:
        """The layers built so far, with what the file records beside them.

        ``pixel_scale`` "auto" means the file does not record it: uint8 input then takes
        the model's input scale when the model scales its input, and is refused otherwise
        (a framework's file does not say what its pixels were divided by)."""
        return Network(
            self.layers(),
            input_scale=self._scale,
            pixel_scale=None if pixel_scale == "auto" and self._scale is None else pixel_scale,
            classes=classes,
            input_transform=self._transform,
            multilabel=multilabel,
        )

    # ------------------------------------------------------------------ folding

    def _fold(self, scale: np.ndarray, shift: np.ndarray, where: str) -> None:
        """``x * scale + shift`` of the current value, into whatever computed it last."""
        last = self._layers[-1] if self._layers and self._carry is None else None
        if last is not None and (last.activation is None or last.norm_after_activation):
            if {a.size for a in (scale, shift) if a.ndim} - {last.outputs}:
                raise UnsupportedModelError(
                    f"{where}: {max(scale.size, shift.size)} features, but the value it "
                    f"scales has {last.outputs} (the outputs of the dense layer before it)"
                )
            if last.norm is not None:  # the LayerNorm is the last step: fold into it
                last.norm = LayerNorm(last.norm.gamma * scale,
                                      last.norm.beta * scale + shift, last.norm.epsilon)
            else:
                last.weights = last.weights * scale
                last.bias = last.bias * scale + shift
            return
        # After an activation, or on the input: waits for the next dense layer.
        width = self.width
        sizes = {a.size for a in (scale, shift) if a.ndim}
        if width is not None and sizes - {width}:
            raise UnsupportedModelError(
                f"{where}: {max(sizes)} features, but the value it scales has {width}"
            )
        if self._carry is None:
            self._carry = _Carry(scale, shift, where, affine=True)
        else:
            # (x * s1 + t1) * s2 + t2 == x * (s1 s2) + (t1 s2 + t2)
            carry = self._carry
            carry.scale, carry.shift = carry.scale * scale, carry.shift * scale + shift
            carry.affine = True


def _features(value: npt.ArrayLike, name: str, where: str, *, vector: bool = False,
              size: int | None = None) -> np.ndarray:
    """``value`` as finite float64: one number (0-d) or one per feature (1-D). Leading axes
    of length 1, as in Keras's (1, n) statistics, are dropped."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise UnsupportedModelError(
            f"{where}: {name} is not an array of numbers ({error})"
        ) from None
    if array.ndim > 1 and array.size == array.shape[-1]:
        array = array.reshape(-1)
    if array.size == 1 and not vector:
        array = array.reshape(())  # broadcasts as one number, as in NumPy, ONNX and Keras
    if array.ndim > 1 or (vector and array.ndim == 0) or (array.ndim and array.size == 0):
        expected = "one value per feature" if vector else "one number or one value per feature"
        raise UnsupportedModelError(f"{where}: {name} has shape {array.shape}; expected {expected}")
    if size is not None and array.ndim and array.size != size:
        raise UnsupportedModelError(f"{where}: {name} has {array.size} values, expected {size}")
    if not np.all(np.isfinite(array)):
        raise UnsupportedModelError(f"{where}: {name} has a non-finite value")
    return array


def _check_cancellation(shift: np.ndarray, weights: np.ndarray, bias: np.ndarray,
                        scaling: str, where: str) -> None:
    """Refuse a shift whose fold would cost more than 1e-5 of a layer's output scale.

    Folded, ``x * s @ W`` and ``t @ W`` are large and cancel in float32 where the framework
    subtracts first (exactly, in float32, for inputs near the mean): output j gains an error
    of about 2^-24 x sum_i |t_i W_ij|. Against the scale of that output for inputs of unit
    size, max(1, sum_i |W_ij| + |b_j|), this is 2^-24 times how far (weighted by W) the
    inputs sit from 0 in their own units; `_FOLD_ERROR` allows about 84. Measured on 9
    standardised features, all with their mean 10, 100, 300, 1000 spreads from 0 (a 16-8
    tanh scikit-learn classifier, Sapphire Rapids Xeon): 1e-6, 1e-5, 2.8e-5, 1e-4 at its
    probability outputs (the estimate at 100 is 6e-6); a Keras Normalization +
    BatchNormalization on MNIST columns (at most 170 units, 12 on average under W): 4e-5 on
    logits of 45, accepted."""
    error = np.abs(shift) @ np.abs(weights) * 2.0**-24
    scale = np.maximum(1.0, np.abs(weights).sum(axis=0) + np.abs(bias))
    worst = int(np.argmax(error / scale)) if error.size else 0
    if error.size and error[worst] > _FOLD_ERROR * scale[worst]:
        feature = int(np.argmax(np.abs(shift)))
        raise UnsupportedModelError(
            f"{scaling}: folded into {where}, this scaling's shift (up to "
            f"{float(shift[feature]):.4g} at feature {feature}, in the units the dense layer "
            f"sees) cancels in float32 against the product: an error of up to "
            f"{error[worst]:.2g} in output {worst}, whose scale is {scale[worst]:.3g}, more "
            f"than the {_FOLD_ERROR:g} of it that mlpinfer keeps to. The features sit far "
            "from 0 relative to their spread; centre them (subtract a typical value) before "
            "training"
        )


def _epsilon(epsilon: float, where: str, *, positive: bool = False) -> float:
    """A finite epsilon >= 0; > 0 for a LayerNorm, whose rows may have no variance."""
    value = float(epsilon)
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise UnsupportedModelError(
            f"{where}: epsilon {value!r}; expected a finite number {'>' if positive else '>='} 0"
        )
    return value
