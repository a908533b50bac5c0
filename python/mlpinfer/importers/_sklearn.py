"""scikit-learn ``MLPClassifier`` and ``MLPRegressor``, alone or at the end of a ``Pipeline``
of scalers (the network's exact input transform)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._network import Network
from ..formats._chain import Chain, UnsupportedModelError, require

__all__ = ["SUPPORTED", "from_sklearn"]

# scikit-learn's names (sklearn.neural_network._base.ACTIVATIONS) to ours. softmax is only
# an output (out_activation_ of a multi-class classifier), never an `activation=` choice.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "softmax": "softmax"}
_MODELS = ("MLPClassifier", "MLPRegressor")
_NO_OPS = ("passthrough", None)  # what Pipeline takes for a step that does nothing


def _standard(scaler: Any) -> tuple[Any, Any]:
    # transform: x - mean_ if with_mean, then / scale_ if with_std (scale_ None without it)
    scale = 1.0 if scaler.scale_ is None else 1.0 / np.asarray(scaler.scale_, np.float64)
    mean = np.asarray(scaler.mean_, np.float64) if scaler.with_mean else 0.0
    return scale, -mean * scale


def _min_max(scaler: Any) -> tuple[Any, Any]:
    if scaler.clip:
        raise ValueError("clip=True clips to feature_range, which a dense layer cannot express")
    return scaler.scale_, scaler.min_  # transform: x * scale_ + min_


def _max_abs(scaler: Any) -> tuple[Any, Any]:
    return 1.0 / np.asarray(scaler.scale_, np.float64), 0.0  # transform: x / scale_


# sklearn.preprocessing class name -> (x * scale + shift) of its transform.
_SCALERS: dict[str, Callable[[Any], tuple[Any, Any]]] = {
    "StandardScaler": _standard,
    "MinMaxScaler": _min_max,
    "MaxAbsScaler": _max_abs,
}

_EXPECTED = (
    f"a Pipeline of {', '.join(_SCALERS)} (clip=False) or 'passthrough' steps, ending in an "
    f"{' or '.join(_MODELS)}"
)

#: Concept key (README table) -> how scikit-learn spells it, from the tables above.
SUPPORTED: dict[str, str] = {
    "dense": f"each layer of an {' or '.join(_MODELS)}",
    "feature_scaling": f"{', '.join(_SCALERS)} (clip=False) before the MLP in a Pipeline",
    "no_op": " or ".join(repr(step) for step in _NO_OPS) + " Pipeline steps",
    **{ours: ("output of a multi-class classifier" if ours == "softmax"
              else f"activation={theirs!r}") for theirs, ours in _ACTIVATIONS.items()},
}


def from_sklearn(model: Any, *, pixel_scale: float | None = None) -> Network:
    """A fitted ``MLPClassifier`` or ``MLPRegressor``, or a ``Pipeline`` (``make_pipeline``)
    of StandardScaler, MinMaxScaler, MaxAbsScaler and 'passthrough' steps ending in one, as
    a network. The scalers become the network's input transform, computed in float64 (see
    `mlpinfer.formats._chain`);
    any other step is refused, named by its place in the pipeline (``pipeline[2]``).

    The outputs equal ``predict_proba`` for a multi-class classifier and ``predict`` for a
    regressor. A binary classifier has one logistic output, ``predict_proba[:, 1]``. A
    classifier's ``classes_`` come along: ``Network.classify`` returns them, as the model's
    ``predict`` does. A multi-label classifier (fitted on an indicator matrix) has one
    logistic output per label, equal to its ``predict_proba``, and becomes a
    ``multilabel`` network: its ``predict`` is the 0/1 matrix ``outputs > 0.5``, which
    ``mlpinfer.estimator.NetworkClassifier(net).predict`` gives, and ``Network.classify``
    (one label per sample) refuses it.

    scikit-learn reads uint8 input as the numbers 0..255 and records nothing about
    how the training data was scaled, so uint8 input is refused until ``pixel_scale``
    states it: 1.0 for a model trained on raw pixel values (what ``model.predict`` does
    with uint8 input), 1/255 for one trained on pixels / 255. Float input is used as it is.
    """
    neural_network = require("sklearn.neural_network", "sklearn")
    preprocessing = require("sklearn.preprocessing", "sklearn")
    pipeline = require("sklearn.pipeline", "sklearn")
    steps = list(_steps(pipeline, model, "pipeline"))
    where, mlp = steps[-1]
    if type(mlp).__name__ not in _MODELS or type(mlp) is not getattr(neural_network,
                                                                     type(mlp).__name__):
        found = next((w for w, step in steps if type(step).__name__ in _MODELS), None)
        if not isinstance(model, pipeline.Pipeline):
            raise UnsupportedModelError(
                f"expected a scikit-learn MLPClassifier or MLPRegressor, or {_EXPECTED}; "
                f"got {type(model).__name__}"
            )
        after = f" after the MLP at {found}" if found is not None else ""
        raise UnsupportedModelError(
            f"{where} ({_describe(mlp)}){after}: the last step must be the MLP; "
            f"supported: {_EXPECTED}"
        )
    name = type(mlp).__name__
    if not hasattr(mlp, "coefs_"):
        raise UnsupportedModelError(f"the {name} is not fitted (it has no coefs_)")
    chain = Chain()
    for step_where, step in steps[:-1]:
        if step in _NO_OPS:
            chain.skip(repr(step), step_where)
            continue
        _scale(preprocessing, chain, step, step_where)
    last = len(mlp.coefs_)
    for index, (weights, bias) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True), start=1):
        layer = f"{name} layer {index}" if where == "model" else f"{where} {name} layer {index}"
        chain.dense(weights, bias, layer)
        activation = mlp.out_activation_ if index == last else mlp.activation
        if activation not in _ACTIVATIONS:
            raise UnsupportedModelError(
                f"{layer}: unsupported activation {activation!r}; expected one of "
                f"{', '.join(repr(a) for a in _ACTIVATIONS)}"
            )
        chain.activate(_ACTIVATIONS[activation], layer)
    classes = mlp.classes_ if name == "MLPClassifier" else None
    # Multi-class classifiers have a softmax output and binary ones a single logistic
    # output: several logistic outputs are scikit-learn's multi-label classifier.
    multilabel = classes is not None and mlp.out_activation_ == "logistic" and mlp.n_outputs_ > 1
    network = chain.network(classes=classes, multilabel=multilabel)
    return network if pixel_scale is None else network.with_pixel_scale(pixel_scale)


def _steps(pipeline: Any, model: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``(where, estimator)`` of each step, nested pipelines flattened; a lone model is
    its own single step."""
    if type(model) is not pipeline.Pipeline:
        yield ("model", model)
        return
    if not model.steps:
        raise UnsupportedModelError(f"{where}: an empty Pipeline; expected {_EXPECTED}")
    for index, (label, step) in enumerate(model.steps):
        place = f"{where}[{index}]"
        if type(step) is pipeline.Pipeline:
            yield from _steps(pipeline, step, place)
        else:
            yield (f"{place} ({label!r})", step)


def _scale(preprocessing: Any, chain: Chain, scaler: Any, where: str) -> None:
    kind = type(scaler).__name__
    what = f"{where} ({_describe(scaler)})"
    if kind not in _SCALERS or type(scaler) is not getattr(preprocessing, kind):
        raise UnsupportedModelError(
            f"{what}: not supported before the MLP; supported: {_EXPECTED}"
        )
    if not hasattr(scaler, "n_features_in_"):
        raise UnsupportedModelError(f"{what}: not fitted")
    try:
        scale, shift = _SCALERS[kind](scaler)
    except ValueError as error:
        raise UnsupportedModelError(f"{what}: {error}; supported: {_EXPECTED}") from None
    chain.affine(scale, shift, what)


def _describe(step: Any) -> str:
    return repr(step) if step in _NO_OPS or isinstance(step, str) else type(step).__name__
