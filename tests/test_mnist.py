"""The textbook's result on the real data: 0.9352 on the 10,000 MNIST test images."""

from __future__ import annotations

import numpy as np
import pytest
from support import assert_close_to_reference, reference_outputs

import mlpinfer

TEXTBOOK_ACCURACY = 0.9352  # ../shared/data/README.md


@pytest.fixture(scope="module")
def textbook(sample_weight_path):
    return mlpinfer.load(sample_weight_path)


@pytest.fixture(scope="module")
def pixels(mnist_test):
    images, labels = mnist_test
    return images.reshape(len(images), -1), labels


def test_architecture_is_the_textbooks(textbook):
    assert repr(textbook) == "Network(784 -> 50 sigmoid -> 100 sigmoid -> 10 softmax)"


@pytest.mark.parametrize("batch_size", [1, 100, 10_000])
def test_accuracy_is_exactly_the_textbooks(textbook, mnist_test, batch_size):
    images, labels = mnist_test
    assert textbook.accuracy(images, labels, batch_size=batch_size) == TEXTBOOK_ACCURACY


def test_accuracy_with_one_hot_labels(textbook, mnist_test):
    images, labels = mnist_test
    one_hot = np.eye(10, dtype=np.float32)[labels]
    assert textbook.accuracy(images, one_hot) == TEXTBOOK_ACCURACY


def test_probabilities_and_labels_equal_the_reference(textbook, pixels):
    x, _ = pixels
    expected = reference_outputs(textbook, x / 255.0)
    actual = textbook.predict(x.astype(np.float32) / 255.0)
    assert np.max(np.abs(actual - expected)) <= 1e-5
    assert_close_to_reference(actual, expected)
    np.testing.assert_array_equal(textbook.classify(x.astype(np.float32) / 255.0),
                                  np.argmax(expected, axis=1))


def test_uint8_pixels_give_the_labels_of_float_input(textbook, pixels):
    x, _ = pixels
    from_pixels = textbook.classify(x)
    from_floats = textbook.classify(x / 255.0)
    np.testing.assert_array_equal(from_pixels, from_floats)
    expected = reference_outputs(textbook, x / 255.0)
    assert np.max(np.abs(textbook.predict(x) - expected)) <= 1e-5


def test_image_batch_shape_is_flattened(textbook, mnist_test):
    images, _ = mnist_test
    np.testing.assert_array_equal(
        textbook.predict(images[:50]), textbook.predict(images[:50].reshape(50, 784))
    )
