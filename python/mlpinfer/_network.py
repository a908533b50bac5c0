"""The user-facing network: validation, defaults and dtype policy around the engine."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import WeightsError
from ._params import is_float32_number, ordered_layers

try:
    from . import _core
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "mlpinfer's compiled engine (mlpinfer._core) failed to import. Install the package "
        "with `pip install .` (an in-place source tree has no compiled module); "
        f"the import error was: {error}"
    ) from error

__all__ = ["ACTIVATIONS", "Layer", "Network", "get_num_threads", "set_num_threads"]

ACTIVATIONS = ("identity", "sigmoid", "relu", "tanh", "softmax")
_PIXEL_SCALE = 1.0 / 255.0  # the textbook loader's normalize=True
_ENGINE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))


def get_num_threads() -> int:
    """Threads that ``predict`` uses when not told otherwise."""
    return int(_core.default_threads())


def set_num_threads(threads: int) -> None:
    """Set the threads that ``predict`` uses when not told otherwise (process-wide)."""
    _core.set_default_threads(_positive_int(threads, "threads", _MAX_THREADS))


_MAX_THREADS = 1024  # the engine itself uses at most the CPUs the process may run on


def _positive_int(value: Any, name: str, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be at least 1, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {number}")
    return number


@dataclass(frozen=True)
class Layer:
    """One dense layer: ``activation(x @ weights + bias)``. Arrays are read-only float32."""

    weights: np.ndarray
    bias: np.ndarray
    activation: str

    @property
    def inputs(self) -> int:
        return int(self.weights.shape[0])

    @property
    def outputs(self) -> int:
        return int(self.weights.shape[1])


def _checked_array(value: Any, name: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        raise WeightsError(f"{name} is not an array of numbers ({error})") from None
    if array.dtype.kind != "f":
        raise WeightsError(f"{name} must be a float array, got dtype {array.dtype}")
    if array.ndim == 2 and ndim == 1 and array.shape[0] == 1:
        array = array[0]  # a (1, n) bias row, as some exporters write it
    if array.ndim != ndim:
        raise WeightsError(f"{name} must be {ndim}-D, got shape {array.shape}")
    # Converted once here so that no call ever copies or converts weights again.
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported below
        converted = np.array(array, dtype=np.float32, order="C", copy=True)
    if not np.all(np.isfinite(converted)):
        bad = np.argwhere(~np.isfinite(converted))[0]
        raise WeightsError(
            f"{name} has a non-finite value at index {tuple(int(i) for i in bad)} "
            f"(value {array[tuple(bad)]!r} in the file, {converted[tuple(bad)]!r} as float32)"
        )
    converted.flags.writeable = False
    return converted


class Network:
    """A dense multilayer perceptron running on mlpinfer's C++ engine.

    ``input_scale`` multiplies every input before the first layer. ``None`` means:
    uint8 input is pixels and is scaled by 1/255, float input is used as it is.
    """

    def __init__(self, layers: Sequence[Layer], *, input_scale: float | None = None) -> None:
        # Copied once, here: float32, C order, read-only, finite; never aliasing the
        # caller's arrays, whose later changes would not reach the engine.
        layers = tuple(
            Layer(_checked_array(layer.weights, f"W{index}", 2),
                  _checked_array(layer.bias, f"b{index}", 1), layer.activation)
            for index, layer in enumerate(layers, start=1)
        )
        if not layers:
            raise WeightsError("a network needs at least one layer, got 0")
        for index, layer in enumerate(layers, start=1):
            if layer.activation not in ACTIVATIONS:
                raise WeightsError(
                    f"layer {index}: unknown activation {layer.activation!r}; "
                    f"expected one of {', '.join(ACTIVATIONS)}"
                )
            if layer.activation == "softmax" and index != len(layers):
                raise WeightsError(f"layer {index}: softmax is only supported on the last layer")
            if layer.activation == "softmax" and layer.outputs == 1:
                raise WeightsError(
                    f"layer {index}: softmax over a single output is always 1; a one-unit "
                    "output wants sigmoid (e.g. mlpinfer.load(path, output='sigmoid'))"
                )
            if layer.bias.shape != (layer.outputs,):
                raise WeightsError(
                    f"layer {index}: b has shape {layer.bias.shape}, W has {layer.outputs} columns"
                )
            if index > 1 and layer.inputs != layers[index - 2].outputs:
                raise WeightsError(
                    f"layer {index}: W has {layer.inputs} rows, "
                    f"previous layer has {layers[index - 2].outputs} outputs"
                )
        if input_scale is not None:
            if not is_float32_number(input_scale):
                raise WeightsError(
                    f"input_scale must be None or a number that float32 holds as finite, "
                    f"got {input_scale!r}"
                )
            input_scale = float(input_scale)
        self._layers = layers
        self._input_scale = input_scale
        self._n_inputs = layers[0].inputs
        float_scale = 1.0 if input_scale is None else input_scale
        pixel_scale = _PIXEL_SCALE if input_scale is None else input_scale
        # Native-order arrays of these dtypes take predict's fast path.
        self._direct_scales = {
            np.dtype(np.float32): float_scale,
            np.dtype(np.float64): float_scale,
            np.dtype(np.uint8): pixel_scale,
        }
        try:
            self._engine = _core.Network([(l.weights, l.bias, l.activation) for l in layers])
        except ValueError as error:
            raise WeightsError(str(error)) from None

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, npt.ArrayLike],
        *,
        hidden: str = "sigmoid",
        output: str = "softmax",
        activations: Sequence[str] | None = None,
        input_scale: float | None = None,
    ) -> Network:
        """Build from a ``sample_weight.pkl``-style dict ``W1..Wn``, ``b1..bn``.

        Hidden layers use ``hidden``, the last layer ``output``, unless ``activations``
        names one per layer.
        """
        pairs = ordered_layers(params)
        if activations is None:
            activations = [hidden] * (len(pairs) - 1) + [output]
        elif len(activations) != len(pairs):
            raise WeightsError(
                f"got {len(activations)} activations for a network of {len(pairs)} layers"
            )
        layers = [Layer(w, b, activation) for (w, b), activation in zip(pairs, activations, strict=True)]
        return cls(layers, input_scale=input_scale)

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self._layers

    @property
    def input_scale(self) -> float | None:
        return self._input_scale

    @property
    def n_inputs(self) -> int:
        return self._layers[0].inputs

    @property
    def n_outputs(self) -> int:
        return self._layers[-1].outputs

    @property
    def activations(self) -> tuple[str, ...]:
        return tuple(layer.activation for layer in self._layers)

    def params(self) -> dict[str, np.ndarray]:
        """The ``W1..Wn``, ``b1..bn`` dict (read-only float32 arrays)."""
        params = {}
        for i, layer in enumerate(self._layers, start=1):
            params[f"W{i}"] = layer.weights
            params[f"b{i}"] = layer.bias
        return params

    def __repr__(self) -> str:
        parts = [str(self.n_inputs)]
        parts += [f"{layer.outputs} {layer.activation}" for layer in self._layers]
        scale = "" if self._input_scale is None else f", input_scale={self._input_scale!r}"
        return f"Network({' -> '.join(parts)}{scale})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.params(), list(self.activations), self._input_scale))

    # ------------------------------------------------------------------ inference

    def predict(
        self, x: npt.ArrayLike, *, batch_size: int | None = None, threads: int | None = None
    ) -> np.ndarray:
        """Network outputs, float32: (N, outputs) for (N, inputs); (outputs,) for one sample.

        ``x`` may be float32 (used in place when C-contiguous), float64 or uint8 (pixels),
        and image batches (N, 28, 28) are flattened. A Python list is read as numbers.
        ``batch_size`` splits the work into calls of at most that many rows.
        """
        thread_count = 0 if threads is None else _positive_int(threads, "threads", _MAX_THREADS)
        if batch_size is None and type(x) is np.ndarray:
            # The common call costs well under a microsecond of Python this way; a
            # single image is computed in about as long (see benchmarks/README.md).
            scale = self._direct_scales.get(x.dtype)
            if scale is not None and 0 < x.ndim <= 2 and x.shape[-1] == self._n_inputs:
                return self._engine.predict(x, scale, thread_count)
        batch, single = self._as_batch(x)
        if batch_size is not None:
            batch_size = _positive_int(batch_size, "batch_size")
        scale = self._scale_for(batch.dtype)
        rows = batch.shape[0]
        out = np.empty((rows, self.n_outputs), dtype=np.float32)
        step = rows if batch_size is None else batch_size
        for start in range(0, rows, max(step, 1)):
            stop = start + step
            self._engine.forward(batch[start:stop], scale, out[start:stop], thread_count)
        return out[0] if single else out

    def classify(
        self, x: npt.ArrayLike, *, batch_size: int | None = None, threads: int | None = None
    ) -> np.ndarray:
        """Class labels (int64): the argmax of the outputs.

        A single-output network answers 0 or 1: 1 where a sigmoid output is >= 0.5
        (or any other output >= 0). A row whose output is NaN gets the label -1.
        """
        outputs = self.predict(x, batch_size=batch_size, threads=threads)
        matrix = np.atleast_2d(outputs)
        if self.n_outputs == 1:
            threshold = 0.5 if self._layers[-1].activation == "sigmoid" else 0.0
            labels = (matrix[:, 0] >= threshold).astype(np.int64)
        else:
            labels = np.argmax(matrix, axis=1).astype(np.int64)
        labels[np.isnan(matrix).any(axis=1)] = -1
        return labels[0] if outputs.ndim == 1 else labels

    def accuracy(
        self,
        x: npt.ArrayLike,
        t: npt.ArrayLike,
        *,
        batch_size: int | None = 100,
        threads: int | None = None,
    ) -> float:
        """Fraction of samples whose label equals ``t`` (labels, or one-hot rows)."""
        labels = np.atleast_1d(self.classify(x, batch_size=batch_size, threads=threads))
        truth = self.true_labels(t)
        if truth.shape[0] != labels.shape[0]:
            raise ValueError(
                f"t must hold one label or one-hot row per sample ({labels.shape[0]}), "
                f"got shape {np.shape(t)}"
            )
        if labels.shape[0] == 0:
            raise ValueError("accuracy of an empty set is undefined: x has 0 samples")
        return float(np.count_nonzero(labels == truth)) / labels.shape[0]

    def true_labels(self, t: npt.ArrayLike) -> np.ndarray:
        """``t`` as a 1-D array of labels: labels (N,) or (N, 1), or one-hot rows (N, outputs).

        Lazy arrays (Dask) stay lazy: only shapes and dtypes are checked here.
        """
        truth = t if hasattr(t, "ndim") and hasattr(t, "dtype") else np.asarray(t)
        if truth.ndim == 2 and truth.shape[1] == 1:
            truth = truth[:, 0]
        elif truth.ndim == 2:
            if truth.shape[1] != self.n_outputs:
                raise ValueError(
                    f"one-hot t must have {self.n_outputs} columns (one per output), "
                    f"got shape {truth.shape}"
                )
            return truth.argmax(axis=1)
        if truth.ndim != 1:
            raise ValueError(
                f"t must hold one label or one-hot row per sample, as (N,) or "
                f"(N, {self.n_outputs}); got shape {truth.shape}"
            )
        whole = truth.dtype.kind in "iu" or (
            truth.dtype.kind == "f"
            and (not isinstance(truth, np.ndarray) or np.array_equal(truth, np.round(truth)))
        )
        if not whole:
            raise TypeError(f"t must hold integer labels or one-hot rows, got dtype {truth.dtype}")
        return truth

    # ------------------------------------------------------------------ helpers

    def _scale_for(self, dtype: np.dtype) -> float:
        return self._direct_scales[dtype]

    def _as_batch(self, x: npt.ArrayLike) -> tuple[np.ndarray, bool]:
        array = _as_array(x)
        width = self.n_inputs
        if array.ndim == 1 and array.shape[0] == width:
            return array.reshape(1, width), True
        if array.ndim == 2 and array.shape[1] == width:
            return array, False
        if array.ndim >= 2 and math.prod(array.shape[1:]) == width:
            return array.reshape(array.shape[0], width), False
        single = " (for one image, pass x.reshape(1, -1))" if array.size == width else ""
        raise ValueError(
            f"expected {width} features per sample, as (N, {width}), ({width},) or "
            f"(N, ...) with {width} values per sample; got an array of shape {array.shape}"
            f"{single}"
        )


def _as_array(x: npt.ArrayLike) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"expected an array of numbers, got {type(x).__name__}")
    try:
        array = np.asarray(x)
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        raise ValueError(f"could not read the input as a rectangular array: {error}") from None
    if isinstance(x, (list, tuple)) and array.dtype.kind in "iub":
        array = array.astype(np.float64)  # a list of Python numbers means numbers, not pixels
    dtype = array.dtype
    if dtype.kind == "f" and dtype.itemsize < 4:
        return array.astype(np.float32)
    if dtype.newbyteorder("=") in _ENGINE_DTYPES:
        # A foreign byte order is converted: the engine reads native numbers only.
        return array if dtype.isnative else array.astype(dtype.newbyteorder("="))
    hint = (
        "; for pixels use x.astype(np.uint8), for numbers x.astype(np.float32)"
        if dtype.kind in "iub"
        else ""
    )
    raise TypeError(f"expected float32, float64 or uint8 input, got dtype {dtype}{hint}")


def _rebuild(
    params: dict[str, np.ndarray], activations: list[str], input_scale: float | None
) -> Network:
    return Network.from_params(params, activations=activations, input_scale=input_scale)

