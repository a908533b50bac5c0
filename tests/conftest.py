"""Fixtures over the real data in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import SHARED_DATA, shared_file


@pytest.fixture(scope="session")
def sample_weight_path() -> Path:
    return shared_file("sample_weight.pkl")


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images (uint8, N x 28 x 28) and labels."""
    from mlpinfer.datasets import load_mnist

    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    return load_mnist("test", data_dir=SHARED_DATA / "mnist", download=False)



@pytest.fixture(scope="session")
def mnist(mnist_test) -> tuple[np.ndarray, np.ndarray]:
    """The test images as the frameworks see them: (10000, 784) float32 x/255, and labels."""
    from framework_support import mnist_floats

    return mnist_floats(mnist_test)
