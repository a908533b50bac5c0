"""The user-facing network: validation, defaults and dtype policy around the engine."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _activations
from ._errors import WeightsError
from ._params import is_float32_number, ordered_layers
from ._progress import Progress

try:
    from . import _core
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "mlpinfer's compiled engine (mlpinfer._core) failed to import. Install the package "
        "with `pip install .` (an in-place source tree has no compiled module); "
        f"the import error was: {error}"
    ) from error

__all__ = ["ACTIVATIONS", "InputTransform", "Layer", "LayerNorm", "Network", "get_num_threads",
           "set_num_threads"]

ACTIVATIONS = tuple(_activations.ACTIVATIONS)
_PIXEL_SCALE = 1.0 / 255.0  # the textbook loader's normalize=True
_VERBOSE_ROWS = 8192  # rows per engine call while predict(verbose=1) draws its progress bar
_ENGINE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))
_PROBABILITY_OUTPUTS = ("softmax", "sigmoid", "log_softmax")  # what predict_proba reads


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
class LayerNorm:
    """Per-row normalisation of a layer's outputs, as PyTorch's ``LayerNorm``, Keras's
    ``LayerNormalization`` and ONNX's ``LayerNormalization`` over the last axis:
    ``(y - mean(y)) / sqrt(var(y) + epsilon) * gamma + beta``."""

    gamma: np.ndarray
    beta: np.ndarray
    epsilon: float


@dataclass(frozen=True)
class InputTransform:
    """A per-feature transform of the input before the first layer: feature ``c`` of each
    sample becomes ``(x * scale - shift[c]) * multiplier[c]``, computed in float64 and
    rounded to float32 once (``scale``: the network's input_scale or pixel_scale).

    It is what a scikit-learn scaler, a Keras ``Normalization`` or a BatchNorm in front of
    the first dense layer computes. Folded into the first layer's weights instead, it
    cancels in float32 when the features sit far from 0 against their spread (a year near
    2000 with std 10); kept apart, it is exact. ``shift`` and ``multiplier``: float64,
    one finite value per input feature."""

    shift: np.ndarray
    multiplier: np.ndarray

    def __repr__(self) -> str:
        return f"InputTransform(<{self.shift.size} features>)"


@dataclass(frozen=True)
class Layer:
    """One dense layer: ``activation(x @ weights + bias)``. Arrays are read-only float32.

    ``activation`` is a name or a name with parameters (see `mlpinfer._activations`).
    ``norm``, if given, normalises the layer's outputs before the activation, or after it
    when ``norm_after_activation``."""

    weights: np.ndarray
    bias: np.ndarray
    activation: str
    norm: LayerNorm | None = None
    norm_after_activation: bool = False

    @property
    def inputs(self) -> int:
        return int(self.weights.shape[0])

    @property
    def outputs(self) -> int:
        return int(self.weights.shape[1])

    @property
    def parameters(self) -> int:
        """How many numbers the layer holds: W, b, and the LayerNorm's gamma and beta."""
        norm = 0 if self.norm is None else self.norm.gamma.size + self.norm.beta.size
        return int(self.weights.size + self.bias.size + norm)

    @property
    def steps(self) -> str:
        """What the layer does after its product, in order: ``"gelu"``,
        ``"layer_norm(epsilon=1e-05) gelu"`` or ``"relu layer_norm(epsilon=1e-05)"``."""
        if self.norm is None:
            return self.activation
        norm = f"layer_norm(epsilon={self.norm.epsilon!r})"
        order = (self.activation, norm) if self.norm_after_activation else (norm, self.activation)
        return " ".join(order)


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


def _checked_layer(layer: Layer, index: int) -> Layer:
    """``layer`` with read-only float32 copies of its arrays, its activation in canonical
    spelling, and its LayerNorm checked; WeightsError saying what is wrong otherwise."""
    weights = _checked_array(layer.weights, f"W{index}", 2)
    bias = _checked_array(layer.bias, f"b{index}", 1)
    try:
        activation = _activations.parse(layer.activation)
    except ValueError as error:
        raise WeightsError(f"layer {index}: {error}") from None
    except TypeError as error:
        raise TypeError(f"layer {index}: {error}") from None
    for value in activation.params:
        if not is_float32_number(value):
            raise WeightsError(
                f"layer {index}: {activation}: parameters must be finite in float32, got {value!r}"
            )
    outputs = int(weights.shape[1])
    if bias.shape != (outputs,):
        raise WeightsError(f"layer {index}: b has shape {bias.shape}, W has {outputs} columns")
    if not isinstance(layer.norm_after_activation, (bool, np.bool_)):
        raise WeightsError(
            f"layer {index}: norm_after_activation must be True or False, "
            f"got {layer.norm_after_activation!r}"
        )
    norm = None if layer.norm is None else _checked_norm(layer.norm, index, outputs)
    row_activation = activation.name in _activations.ROW_ACTIVATIONS
    if norm is not None and layer.norm_after_activation and row_activation:
        raise WeightsError(
            f"layer {index}: a LayerNorm after {activation.name} is not supported "
            "(it would no longer give probabilities)"
        )
    return Layer(weights, bias, str(activation), norm,
                 norm is not None and bool(layer.norm_after_activation))


def _checked_norm(norm: LayerNorm, index: int, outputs: int) -> LayerNorm:
    if not isinstance(norm, LayerNorm):
        raise WeightsError(f"layer {index}: norm must be a LayerNorm, got {type(norm).__name__}")
    gamma = _checked_array(norm.gamma, f"layer {index} LayerNorm gamma", 1)
    beta = _checked_array(norm.beta, f"layer {index} LayerNorm beta", 1)
    for name, array in (("gamma", gamma), ("beta", beta)):
        if array.shape != (outputs,):
            raise WeightsError(
                f"layer {index}: LayerNorm {name} has shape {array.shape}, the layer has "
                f"{outputs} outputs"
            )
    epsilon = norm.epsilon
    if (isinstance(epsilon, (bool, np.bool_)) or not is_float32_number(epsilon)
            or not np.float32(epsilon) > 0):
        raise WeightsError(
            f"layer {index}: LayerNorm epsilon must be a positive number that float32 holds "
            f"as positive and finite, got {epsilon!r}"
        )
    return LayerNorm(gamma, beta, float(epsilon))


def _checked_transform(transform: InputTransform | None, width: int) -> InputTransform | None:
    """``transform`` with float64 read-only copies of its arrays; WeightsError saying what
    is wrong otherwise."""
    if transform is None:
        return None
    if not isinstance(transform, InputTransform):
        raise WeightsError(
            f"input_transform must be an InputTransform or None, got {type(transform).__name__}"
        )
    arrays = []
    for name in ("shift", "multiplier"):
        try:
            array = np.array(getattr(transform, name), dtype=np.float64, copy=True)
        except (ValueError, TypeError, OverflowError) as error:
            raise WeightsError(f"input_transform {name} is not an array of numbers ({error})") from None
        if array.shape != (width,):
            raise WeightsError(
                f"input_transform {name} must have shape ({width},) (the network's inputs), "
                f"got {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            bad = int(np.argmax(~np.isfinite(array)))
            raise WeightsError(
                f"input_transform {name} has a non-finite value at feature {bad}: {array[bad]!r}"
            )
        array.flags.writeable = False
        arrays.append(array)
    return InputTransform(*arrays)


def _engine_layer(layer: Layer) -> tuple[Any, ...]:
    """``layer`` as the engine takes it (`_core.Network`): activation name and its
    parameters as alpha and beta, and the LayerNorm."""
    activation = _activations.parse(layer.activation)
    alpha, beta = (*activation.params, 0.0, 0.0)[:2]
    norm = None if layer.norm is None else (
        layer.norm.gamma, layer.norm.beta, layer.norm.epsilon, layer.norm_after_activation)
    return (layer.weights, layer.bias, activation.name, alpha, beta, norm)


class Network:
    """A dense multilayer perceptron running on mlpinfer's C++ engine.

    ``input_scale`` multiplies float input before the first layer (``None``: used as it
    is). ``pixel_scale`` multiplies uint8 input (pixels):

    - ``"auto"`` (the default): ``input_scale`` when that is set (uint8 values are then
      numbers, as in NumPy and Keras), otherwise 1/255, the textbook's convention
      (``load_mnist(normalize=True)``) that ``sample_weight.pkl`` and every W1..Wn, b1..bn
      dict follows;
    - a number: what the network was trained on, e.g. 1.0 for raw 0..255 values;
    - ``None``: not known (networks imported from a framework whose file does not say);
      uint8 input is then refused with an error that says how to state it.

    ``classes`` are the labels that `classify` returns for each output (two for a
    single sigmoid output), as scikit-learn's ``classes_``; ``None``: the indices.

    ``input_transform`` (an `InputTransform`) shifts and multiplies each feature after
    that scale and before the first layer, exactly (in float64); ``None``: none.

    ``multilabel=True`` marks a multi-label classifier (as a scikit-learn ``MLPClassifier``
    fitted on an indicator matrix is): sigmoid outputs, each the probability of one
    label, any number of which may apply to a sample. Such a network has no single label
    per sample, and `classify`, `accuracy`, `score`, `evaluate` and `true_labels` refuse it.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        input_scale: float | None = None,
        pixel_scale: float | str | None = "auto",
        classes: npt.ArrayLike | None = None,
        input_transform: InputTransform | None = None,
        multilabel: bool = False,
    ) -> None:
        # Copied once, here: float32, C order, read-only, finite; never aliasing the
        # caller's arrays, whose later changes would not reach the engine.
        layers = tuple(_checked_layer(layer, index) for index, layer in enumerate(layers, start=1))
        if not layers:
            raise WeightsError("a network needs at least one layer, got 0")
        for index, layer in enumerate(layers, start=1):
            name = _activations.parse(layer.activation).name
            if name in _activations.ROW_ACTIVATIONS and index != len(layers):
                raise WeightsError(f"layer {index}: {name} is only supported on the last layer")
            if name in _activations.ROW_ACTIVATIONS and layer.outputs == 1:
                raise WeightsError(
                    f"layer {index}: {name} over a single output is always "
                    f"{1 if name == 'softmax' else 0}; a one-unit "
                    "output wants sigmoid (e.g. mlpinfer.load(path, output='sigmoid'))"
                )
            if index > 1 and layer.inputs != layers[index - 2].outputs:
                raise WeightsError(
                    f"layer {index}: W has {layer.inputs} rows, "
                    f"previous layer has {layers[index - 2].outputs} outputs"
                )
        input_scale = _checked_scale(input_scale, "input_scale")
        if isinstance(pixel_scale, str) and pixel_scale == "auto":
            pixel_scale = _PIXEL_SCALE if input_scale is None else input_scale
        else:
            pixel_scale = _checked_scale(pixel_scale, "pixel_scale")
        self._layers = layers
        self._input_scale = input_scale
        self._pixel_scale = pixel_scale
        self._classes = _checked_classes(classes, layers[-1].outputs)
        self._n_inputs = layers[0].inputs
        self._input_transform = _checked_transform(input_transform, layers[0].inputs)
        self._multilabel = _checked_multilabel(multilabel, layers[-1])
        transform = (None if self._input_transform is None else
                     (self._input_transform.shift, self._input_transform.multiplier))
        float_scale = 1.0 if input_scale is None else input_scale
        # Native-order arrays of these dtypes take predict's fast path; uint8 of a network
        # with no known pixel scale takes the slow path, which refuses it.
        self._direct_scales = {
            np.dtype(np.float32): float_scale,
            np.dtype(np.float64): float_scale,
        }
        if pixel_scale is not None:
            self._direct_scales[np.dtype(np.uint8)] = pixel_scale
        try:
            self._engine = _core.Network([_engine_layer(layer) for layer in layers], transform)
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
        pixel_scale: float | str | None = "auto",
        classes: npt.ArrayLike | None = None,
    ) -> Network:
        """Build from a ``sample_weight.pkl``-style dict ``W1..Wn``, ``b1..bn``.

        Hidden layers use ``hidden``, the last layer ``output``, unless ``activations``
        names one per layer. The scales and classes are as in `Network`.
        """
        pairs = ordered_layers(params)
        if activations is None:
            activations = [hidden] * (len(pairs) - 1) + [output]
        elif len(activations) != len(pairs):
            raise WeightsError(
                f"got {len(activations)} activations for a network of {len(pairs)} layers"
            )
        layers = [Layer(w, b, activation) for (w, b), activation in zip(pairs, activations, strict=True)]
        return cls(layers, input_scale=input_scale, pixel_scale=pixel_scale, classes=classes)

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self._layers

    @property
    def input_scale(self) -> float | None:
        return self._input_scale

    @property
    def input_transform(self) -> InputTransform | None:
        """The per-feature shift and multiplier before the first layer, or ``None``."""
        return self._input_transform

    @property
    def pixel_scale(self) -> float | None:
        """What uint8 input is multiplied by; ``None``: not known, uint8 is refused."""
        return self._pixel_scale

    def with_pixel_scale(self, pixel_scale: float) -> Network:
        """This network, taking uint8 pixels multiplied by ``pixel_scale`` (1/255 for a
        network trained on pixels / 255, 1.0 for one trained on raw 0..255 values)."""
        if pixel_scale is None or isinstance(pixel_scale, str):
            raise TypeError(f"pixel_scale must be a number, got {pixel_scale!r}")
        return self._replaced(pixel_scale=pixel_scale)

    @property
    def classes(self) -> np.ndarray | None:
        """The labels given as ``classes`` (what weight files record), ``None`` when the
        network has none and `classify` answers indices; `classes_` is never ``None``."""
        return self._classes

    @property
    def multilabel(self) -> bool:
        """Whether this is a multi-label classifier (see `Network`): each sigmoid output
        is one label's probability, and scikit-learn's ``predict`` is ``predict(x) > 0.5``."""
        return self._multilabel

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
        parts += [f"{layer.outputs} {layer.steps}" for layer in self._layers]
        scale = "" if self._input_scale is None else f", input_scale={self._input_scale!r}"
        if self._pixel_scale != (_PIXEL_SCALE if self._input_scale is None else self._input_scale):
            scale += f", pixel_scale={self._pixel_scale!r}"
        if self._input_transform is not None:
            scale += f", input_transform={self._input_transform!r}"
        if self._classes is not None:
            scale += f", classes={self._classes.tolist()!r:.60}"
        if self._multilabel:
            scale += ", multilabel=True"
        return f"Network({' -> '.join(parts)}{scale})"

    def __reduce__(self) -> tuple[Any, ...]:
        norms = [None if layer.norm is None else (layer.norm.gamma, layer.norm.beta,
                                                  layer.norm.epsilon, layer.norm_after_activation)
                 for layer in self._layers]
        transform = (None if self._input_transform is None else
                     (self._input_transform.shift, self._input_transform.multiplier))
        return (_rebuild, (self.params(), list(self.activations), self._input_scale,
                           self._pixel_scale, self._classes, norms, transform, self._multilabel))

    # ------------------------------------------------------------------ inference

    def predict(
        self,
        x: npt.ArrayLike,
        *,
        batch_size: int | None = None,
        threads: int | None = None,
        verbose: int | bool = 0,
    ) -> np.ndarray:
        """Network outputs, float32: (N, outputs) for (N, inputs); (outputs,) for one sample.

        These are the outputs (probabilities for a softmax network), as Keras's
        ``predict`` gives them, not labels as scikit-learn's ``predict``: labels come from
        `classify`, so ``(net.predict(x) == y).mean()`` compares probabilities with
        labels (use ``net.accuracy(x, y)``).

        ``x`` may be float32 (used in place when C-contiguous), float64 or uint8 (pixels,
        multiplied by `pixel_scale`), and image batches (N, 28, 28) are flattened. A
        Python list is read as numbers. ``batch_size`` splits the work into calls of at
        most that many rows; the outputs are the same bits whatever the split.
        ``verbose=1`` draws a progress bar on stderr, as Keras does.
        """
        thread_count = 0 if threads is None else _positive_int(threads, "threads", _MAX_THREADS)
        if batch_size is None and not verbose and type(x) is np.ndarray:
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
        step = batch_size or (min(rows, _VERBOSE_ROWS) if verbose else rows)
        progress = Progress("predict", rows, unit="rows") if verbose else None
        try:
            for start in range(0, rows, max(step, 1)):
                stop = start + step
                self._engine.forward(batch[start:stop], scale, out[start:stop], thread_count)
                if progress:
                    progress.update(min(stop, rows))
        finally:
            if progress:
                progress.close()
        return out[0] if single else out

    def classify(
        self, x: npt.ArrayLike, *, batch_size: int | None = None, threads: int | None = None
    ) -> np.ndarray:
        """Class labels: the argmax of the outputs (scikit-learn's ``predict``).

        The labels are `classes_` when the network records its classes (as a network
        imported from a scikit-learn classifier does), else indices (int64). A
        single-output network answers index 0 or 1: 1 where a sigmoid output is above 0.5
        (or any other output above 0), as scikit-learn's ``predict`` and Keras's
        ``predict(x) > 0.5``. A row whose output is NaN gets the index -1; a
        network with classes refuses it (no class stands for "no answer").

        A multi-label classifier (`multilabel`, e.g. imported from a scikit-learn
        ``MLPClassifier`` fitted on an indicator matrix) is refused with a TypeError: a
        sample may have several labels or none, and scikit-learn's ``predict`` is the 0/1
        matrix ``(net.predict(x) > 0.5).astype(int)``, which
        ``mlpinfer.estimator.NetworkClassifier(net).predict(x)`` gives.
        """
        return self._classify_outputs(self.predict(x, batch_size=batch_size, threads=threads))

    def _classify_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """`classify` of what `predict` returned, for callers that want both from one run."""
        self._refuse_multilabel()
        matrix = np.atleast_2d(outputs)
        unanswered = np.isnan(matrix).any(axis=1)
        if self._classes is not None and unanswered.any():
            raise ValueError(
                f"{int(unanswered.sum())} of {len(matrix)} rows gave a NaN output (the "
                f"first is row {int(np.argmax(unanswered))}) and have no class; "
                "predict(x) shows the outputs"
            )
        labels = self._labels_of(matrix)
        if self._classes is None:
            labels = labels.astype(np.int64)
            labels[unanswered] = -1
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
        correct = self._correct(x, t, batch_size=batch_size, threads=threads)
        return float(np.count_nonzero(correct)) / correct.shape[0]

    # ------------------------------------------------------------------ conventions
    # scikit-learn's and Keras's names for the same work, spelled as they spell them.

    @property
    def classes_(self) -> np.ndarray:
        """The labels `classify` returns: the recorded classes, else the output indices
        (``[0, 1]`` for a single output), as scikit-learn's ``classes_``."""
        if self._classes is not None:
            return self._classes
        return np.arange(max(2, self.n_outputs))

    @property
    def n_features_in_(self) -> int:
        """Inputs per sample, as scikit-learn names it."""
        return self.n_inputs

    def __call__(self, x: npt.ArrayLike, **options: Any) -> np.ndarray:
        """`predict`, as a Keras model is called: ``net(x)``."""
        return self.predict(x, **options)

    def predict_proba(
        self, x: npt.ArrayLike, *, batch_size: int | None = None, threads: int | None = None
    ) -> np.ndarray:
        """Class probabilities, one column per entry of `classes_` (scikit-learn's
        ``predict_proba``): the outputs of a softmax or sigmoid network, e to the power
        of a log_softmax network's outputs (log-probabilities); a single sigmoid output p
        becomes the two columns 1 - p and p."""
        if self._output_kind() not in _PROBABILITY_OUTPUTS:
            raise TypeError(
                f"predict_proba needs a softmax, log_softmax or sigmoid output; this "
                f"network's output is {self._layers[-1].steps}, whose values are not "
                "probabilities (predict gives them as they are)"
            )
        probabilities = self._probabilities_of(self.predict(x, batch_size=batch_size,
                                                            threads=threads))
        assert probabilities is not None
        return probabilities

    def _probabilities_of(self, outputs: np.ndarray) -> np.ndarray | None:
        """`predict_proba` of what `predict` returned; ``None`` when the outputs are not
        probabilities."""
        last = self._output_kind()
        if last not in _PROBABILITY_OUTPUTS:
            return None
        if last == "log_softmax":
            return np.exp(outputs)
        if self.n_outputs == 1:
            return np.concatenate([1 - outputs, outputs], axis=-1)
        return outputs

    def score(
        self, x: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
    ) -> float:
        """Mean accuracy of `classify` against ``y``, as a scikit-learn classifier's
        ``score`` (``sample_weight`` weighs each sample)."""
        correct = self._correct(x, y, batch_size=100, threads=None)
        return float(np.average(correct, weights=sample_weight))

    def evaluate(
        self,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        batch_size: int | None = 100,
        threads: int | None = None,
        verbose: int | bool = 0,
        return_dict: bool = False,
    ) -> list[float] | dict[str, float]:
        """``[loss, accuracy]`` on labelled data, as Keras's ``evaluate`` with
        ``metrics=["accuracy"]`` (``return_dict=True``: ``{"loss": ..., "accuracy": ...}``).

        The loss is the mean cross-entropy of the true class, in float64: categorical
        for a softmax output, binary for sigmoid outputs (each output against its
        one-hot target), and from logits for an identity output (Keras's
        ``from_logits=True``: softmax, or sigmoid for one output, applied first), and
        the negative log-likelihood for a log_softmax output (PyTorch's ``NLLLoss``).
        Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras clips them. Other output
        activations, and outputs with a LayerNorm after their activation, have no
        cross-entropy and are refused.
        """
        outputs = np.atleast_2d(self.predict(x, batch_size=batch_size, threads=threads,
                                             verbose=verbose)).astype(np.float64)
        truth = np.atleast_1d(self.true_labels(y))
        if truth.shape[0] != outputs.shape[0] or outputs.shape[0] == 0:
            raise ValueError(
                f"y must hold one label or one-hot row per sample ({outputs.shape[0]}, at "
                f"least one), got shape {np.shape(y)}"
            )
        targets = np.zeros((outputs.shape[0], max(2, self.n_outputs)))
        targets[np.arange(len(truth)), self._class_indices(truth)] = 1.0
        loss = _cross_entropy(outputs, targets, self._output_kind())
        labels = self._labels_of(outputs)
        accuracy = float(np.count_nonzero(labels == truth)) / len(truth)
        return {"loss": loss, "accuracy": accuracy} if return_dict else [loss, accuracy]

    def summary(self, print_fn: Any = print) -> None:
        """Print a table of the layers, as Keras's ``Model.summary``."""
        rows = [("Layer (activation)", "Output Shape", "Param #")]
        rows.append(("input", f"(None, {self.n_inputs})", "0"))
        if self._input_transform is not None:
            rows.append(("input_transform (shift, multiplier)", f"(None, {self.n_inputs})",
                         f"{2 * self.n_inputs:,}"))
        for index, layer in enumerate(self._layers, start=1):
            rows.append((f"dense_{index} ({layer.steps})", f"(None, {layer.outputs})",
                         f"{layer.parameters:,}"))
        widths = [max(len(row[i]) for row in rows) + 3 for i in range(3)]
        lines = ["".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                 .rstrip() for row in rows]
        rule = "-" * sum(widths)
        total = sum(layer.parameters for layer in self._layers)
        transform = 0 if self._input_transform is None else 2 * self.n_inputs
        pixels = ("refused (pixel scale not recorded; see with_pixel_scale)"
                  if self._pixel_scale is None else f"multiplied by {self._pixel_scale:.6g}")
        floats = "as given" if self._input_scale is None else f"multiplied by {self._input_scale:.6g}"
        kilobytes = (total + 2 * transform) * 4 / 1024
        float64 = "; the input transform float64" if transform else ""
        text = [rule, lines[0], "=" * len(rule), *lines[1:], "=" * len(rule),
                f"Total params: {total + transform:,} ({kilobytes:,.2f} KB, float32{float64})",
                f"Float input: {floats}; uint8 input: {pixels}"]
        if self._classes is not None:
            text.append(f"Classes: {self._classes.tolist()!r:.70}")
        print_fn("\n".join(text))

    def true_labels(self, t: npt.ArrayLike) -> np.ndarray:
        """``t`` as a 1-D array of labels: labels (N,) or (N, 1), or one-hot rows (N, outputs).

        One-hot rows become `classes_` labels when the network has classes, else indices.
        Lazy arrays (Dask) stay lazy: only shapes and dtypes are checked here. A
        multi-label classifier (`multilabel`) has no single label per sample: refused.
        """
        self._refuse_multilabel()
        truth = t if hasattr(t, "ndim") and hasattr(t, "dtype") else np.asarray(t)
        if truth.ndim == 2 and truth.shape[1] == 1:
            truth = truth[:, 0]
        elif truth.ndim == 2:
            if truth.shape[1] != self.n_outputs:
                raise ValueError(
                    f"one-hot t must have {self.n_outputs} columns (one per output), "
                    f"got shape {truth.shape}"
                )
            indices = truth.argmax(axis=1)
            return indices if self._classes is None else self._classes[indices]
        if truth.ndim != 1:
            raise ValueError(
                f"t must hold one label or one-hot row per sample, as (N,) or "
                f"(N, {self.n_outputs}); got shape {truth.shape}"
            )
        if self._classes is not None:
            if _is_text(truth.dtype) != _is_text(self._classes.dtype):
                raise TypeError(
                    f"t holds labels of dtype {truth.dtype}; this network's classes_ are "
                    f"{self._classes.dtype} ({self._classes.tolist()!r:.60})"
                )
            return truth
        whole = truth.dtype.kind in "iu" or (
            truth.dtype.kind == "f"
            and (not isinstance(truth, np.ndarray) or np.array_equal(truth, np.round(truth)))
        )
        if not whole:
            raise TypeError(
                f"t must hold integer labels or one-hot rows, got dtype {truth.dtype} (a "
                "network whose outputs stand for other labels records them as classes_: "
                "Network(..., classes=[...]))"
            )
        return truth

    # ------------------------------------------------------------------ helpers

    def _output_kind(self) -> str:
        """What the outputs are: the last activation's name, or "layer_norm" when a
        LayerNorm follows it (the values are then neither probabilities nor logits)."""
        last = self._layers[-1]
        if last.norm is not None and last.norm_after_activation:
            return "layer_norm"
        return _activations.parse(last.activation).name

    def _scale_for(self, dtype: np.dtype) -> float:
        if dtype == np.uint8 and self._pixel_scale is None:
            raise ValueError(
                "uint8 input: this network does not record the scale of the pixels it was "
                "trained on, and mlpinfer does not guess. State it once: "
                "net = net.with_pixel_scale(1/255) if it was trained on pixels / 255 (values "
                "0..1), net.with_pixel_scale(1.0) if on raw 0..255 values (or "
                "mlpinfer.load(path, pixel_scale=...)); or pass float input exactly as in "
                "training"
            )
        return self._direct_scales[dtype]

    def _correct(self, x: npt.ArrayLike, t: npt.ArrayLike, *, batch_size: int | None,
                 threads: int | None) -> np.ndarray:
        """Per sample: whether `classify` gives its label in ``t``."""
        labels = np.atleast_1d(self.classify(x, batch_size=batch_size, threads=threads))
        truth = self.true_labels(t)
        if truth.shape[0] != labels.shape[0]:
            raise ValueError(
                f"t must hold one label or one-hot row per sample ({labels.shape[0]}), "
                f"got shape {np.shape(t)}"
            )
        if labels.shape[0] == 0:
            raise ValueError("accuracy of an empty set is undefined: x has 0 samples")
        return np.asarray(labels == truth)

    def _labels_of(self, outputs: np.ndarray) -> np.ndarray:
        if self.n_outputs == 1:
            threshold = 0.5 if self._output_kind() in ("sigmoid", "hard_sigmoid") else 0.0
            indices = (outputs[:, 0] > threshold).astype(np.int64)
        else:
            indices = np.argmax(outputs, axis=1)
        return indices if self._classes is None else self._classes[indices]

    def _class_indices(self, truth: np.ndarray) -> np.ndarray:
        """Column of each label in `classes_`; a label outside it is an error."""
        classes = self.classes_
        order = np.argsort(classes)
        found = np.searchsorted(classes, truth, sorter=order)
        found = order[np.minimum(found, len(classes) - 1)]
        unknown = classes[found] != truth
        if np.any(unknown):
            raise ValueError(
                f"label {truth[np.argmax(unknown)]!r} is not among the network's classes_ "
                f"({classes.tolist()!r:.60})"
            )
        return found

    def _refuse_multilabel(self) -> None:
        """Every use of one label per sample (classify, true_labels and the metrics built
        on them) passes here: a multi-label classifier has none."""
        if self._multilabel:
            raise TypeError(
                f"this network is a multi-label classifier ({self.n_outputs} sigmoid "
                "outputs, each one label's probability; a sample may have several labels "
                "or none): it has no single label per sample to classify or compare. "
                "scikit-learn's predict is (net.predict(x) > 0.5).astype(int), which "
                "mlpinfer.estimator.NetworkClassifier(net).predict(x) gives; its score is "
                "the fraction of samples whose labels all match"
            )

    def _replaced(self, **changes: Any) -> Network:
        settings = {"input_scale": self._input_scale, "pixel_scale": self._pixel_scale,
                    "classes": self._classes, "input_transform": self._input_transform,
                    "multilabel": self._multilabel}
        settings.update(changes)
        return type(self)(self._layers, **settings)

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


_CLIP = 1e-7  # Keras's backend.epsilon(): probabilities are clipped to [eps, 1 - eps]


def _cross_entropy(outputs: np.ndarray, targets: np.ndarray, activation: str) -> float:
    """Mean cross-entropy (float64) of outputs against one-hot targets; see `evaluate`."""
    if activation == "identity":  # logits
        if outputs.shape[1] == 1:
            logit = outputs[:, 0]
            # log(sigmoid(z)) = -log1p(exp(-z)), written to stay finite for any z
            log_p = -np.logaddexp(0.0, -logit)
            log_q = -np.logaddexp(0.0, logit)
            return float(-np.mean(targets[:, 1] * log_p + targets[:, 0] * log_q))
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(np.sum(targets * log_softmax, axis=1)))
    if activation == "log_softmax":  # log-probabilities, as PyTorch's NLLLoss takes them
        return float(-np.mean(np.sum(targets * outputs, axis=1)))
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(
            f"evaluate: a {activation} output has no cross-entropy (it is neither "
            "probabilities nor logits); accuracy(x, y) gives the accuracy"
        )
    p = np.clip(outputs, _CLIP, 1 - _CLIP)
    if activation == "softmax":
        return float(-np.mean(np.sum(targets * np.log(p), axis=1)))
    if outputs.shape[1] == 1:
        targets = targets[:, 1:]
    bce = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    return float(np.mean(bce))


def _checked_scale(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not is_float32_number(value):
        raise WeightsError(
            f"{name} must be None or a number that float32 holds as finite, got {value!r}"
        )
    return float(value)


def _is_text(dtype: np.dtype) -> bool:
    return dtype.kind in "USO"


def _checked_multilabel(multilabel: Any, last: Layer) -> bool:
    """``multilabel`` as a bool; only sigmoid outputs, two or more, can be one."""
    if not isinstance(multilabel, (bool, np.bool_)):
        raise TypeError(f"multilabel must be True or False, got {multilabel!r}")
    output = _activations.parse(last.activation).name
    after = last.norm is not None and last.norm_after_activation
    if multilabel and (output != "sigmoid" or after or last.outputs < 2):
        raise WeightsError(
            f"a multi-label classifier has two or more sigmoid outputs, one per label; this "
            f"network's output is {last.outputs} {last.steps}"
        )
    return bool(multilabel)


def _checked_classes(classes: npt.ArrayLike | None, outputs: int) -> np.ndarray | None:
    """The labels as a read-only 1-D array of numbers or strings, one per class."""
    if classes is None:
        return None
    # Through object dtype, so that [1, "a"] is refused rather than read as ["1", "a"].
    array = classes if isinstance(classes, np.ndarray) else np.array(list(classes), dtype=object)
    if array.dtype.kind == "O" and array.ndim == 1:  # e.g. scikit-learn's classes_ of str
        values = array.tolist()
        for kinds, dtype in (((str,), str), ((bool, np.bool_), bool),
                             ((int, np.integer), np.int64), ((int, float, np.number), np.float64)):
            same = all(isinstance(v, kinds) and (dtype is bool or not isinstance(v, bool))
                       for v in values)
            if values and same:
                try:
                    array = np.array(values, dtype=dtype)
                except OverflowError:  # e.g. 2**70 from a file's JSON
                    raise WeightsError(
                        f"classes must be numbers that {np.dtype(dtype)} holds"
                    ) from None
                break
    array = np.array(array)  # a copy, made read-only below
    expected = 2 if outputs == 1 else outputs
    if array.ndim != 1 or array.dtype.kind not in "biufU":
        raise WeightsError(
            f"classes must be a 1-D list of numbers or strings, got {array.dtype} of "
            f"shape {array.shape}"
        )
    if array.shape[0] != expected:
        where = "a single output has two classes" if outputs == 1 else f"{outputs} outputs"
        raise WeightsError(f"got {array.shape[0]} classes; {where} needs {expected}")
    if len(np.unique(array)) != expected:
        raise WeightsError(f"classes must be distinct, got {array.tolist()!r:.80}")
    array.flags.writeable = False
    return array


def _rebuild(
    params: dict[str, np.ndarray], activations: list[str], input_scale: float | None,
    pixel_scale: float | str | None = "auto", classes: np.ndarray | None = None,
    norms: list[tuple[np.ndarray, np.ndarray, float, bool] | None] | None = None,
    transform: tuple[np.ndarray, np.ndarray] | None = None, multilabel: bool = False,
) -> Network:
    """A pickled Network; ``norms`` (one per layer, ``(gamma, beta, epsilon,
    after_activation)`` or None) is absent from pickles made before LayerNorm,
    ``transform`` (``(shift, multiplier)`` or None) from those made before InputTransform,
    and ``multilabel`` from those made before it."""
    layers = [Layer(w, b, activation) for (w, b), activation
              in zip(ordered_layers(params), activations, strict=True)]
    if norms is not None:
        layers = [layer if norm is None else
                  Layer(layer.weights, layer.bias, layer.activation,
                        LayerNorm(norm[0], norm[1], norm[2]), norm[3])
                  for layer, norm in zip(layers, norms, strict=True)]
    return Network(layers, input_scale=input_scale, pixel_scale=pixel_scale, classes=classes,
                   input_transform=None if transform is None else InputTransform(*transform),
                   multilabel=multilabel)


