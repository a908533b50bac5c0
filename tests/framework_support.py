"""Helpers for the importer tests: MNIST as frameworks see it, and the issue-5 criterion."""

from __future__ import annotations

import numpy as np

# Every importer's network agrees with its framework to this, scaled by max(1, max |output|)
# (the criterion of issue 14). The framework's own float32 error depends on the CPU it runs
# on: on the 784-256-256-10 logits network, PyTorch 2.13 is 3e-6 from the float64 result on
# a Zen 5 EPYC but 1.05e-5 on a Sapphire Rapids Xeon (logits up to 17.7), while ours is
# 2.8e-6 on both (identity output layers accumulate in double). An absolute 1e-5 bound
# therefore failed on the second CPU through no error of ours; one float32 ulp at 128 is
# already 1.5e-5.
MAX_ABS_DIFF = 1e-5


def mnist_floats(mnist_test: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images as (10000, 784) float32 x/255, and their labels."""
    images, labels = mnist_test
    return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32), labels


def random_inputs(features: int, rows: int = 1000, seed: int = 0) -> np.ndarray:
    """Standard normal inputs times 2, as float32: beyond what MNIST pixels reach."""
    return np.random.default_rng(seed).standard_normal((rows, features)).astype(np.float32) * 2


def assert_same_answers(ours: np.ndarray, theirs: np.ndarray) -> None:
    """|ours - theirs| <= MAX_ABS_DIFF x max(1, max |theirs|), and the same argmax per row."""
    theirs = np.asarray(theirs, dtype=np.float64).reshape(ours.shape)
    error = np.abs(ours.astype(np.float64) - theirs)
    worst = np.unravel_index(int(np.argmax(error)), error.shape)
    allowed = MAX_ABS_DIFF * max(1.0, float(np.max(np.abs(theirs), initial=0.0)))
    assert error[worst] <= allowed, (
        f"max abs difference {error[worst]:.3g} > {allowed:.3g} at "
        f"{tuple(int(i) for i in worst)}: framework {theirs[worst]!r}, ours {ours[worst]!r}"
    )
    if ours.ndim == 2 and ours.shape[1] > 1:
        differ = np.flatnonzero(np.argmax(ours, axis=1) != np.argmax(theirs, axis=1))
        assert differ.size == 0, (
            f"argmax differs in {differ.size} rows; first row {differ[0]}: "
            f"framework {theirs[differ[0]]}, ours {ours[differ[0]]}"
        )


def assert_not_degenerate(outputs: np.ndarray, labels: np.ndarray, minimum: float) -> None:
    """The comparison means something: the network has learned, its argmax is not constant."""
    accuracy = float(np.mean(np.argmax(outputs, axis=1) == labels))
    assert accuracy >= minimum, f"accuracy {accuracy:.4f} < {minimum}: the test network is degenerate"


def assert_same_network(actual, expected) -> None:
    """Same activations, same weights and LayerNorms bit for bit, and the same float32
    input scale."""
    assert actual.activations == expected.activations
    assert (actual.input_scale is None) == (expected.input_scale is None)
    assert np.float32(actual.input_scale or 0) == np.float32(expected.input_scale or 0)
    for got, want in zip(actual.layers, expected.layers, strict=True):
        np.testing.assert_array_equal(got.weights, want.weights)
        np.testing.assert_array_equal(got.bias, want.bias)
        assert (got.norm is None) == (want.norm is None)
        if got.norm is not None:
            np.testing.assert_array_equal(got.norm.gamma, want.norm.gamma)
            np.testing.assert_array_equal(got.norm.beta, want.norm.beta)
            assert got.norm.epsilon == want.norm.epsilon
            assert got.norm_after_activation == want.norm_after_activation


def assert_same_answers_at_batch_sizes(networks, x: np.ndarray, expected: np.ndarray) -> None:
    """Each network agrees with the framework's ``expected`` on the first 1, 7 and 1,000
    rows of ``x`` (the batch sizes of issue 14)."""
    for batch in (1, 7, 1000):
        for network in networks:
            assert_same_answers(network.predict(x[:batch]), expected[:batch])


def write_foreign_onnx(network, path) -> None:
    """``network`` as an ONNX file that another tool wrote: without mlpinfer's
    ``metadata_props``, so that it records no pixel scale and no classes."""
    import onnx

    from mlpinfer.importers import to_onnx

    to_onnx(network, path)
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, path)
