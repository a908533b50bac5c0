"""Networks and data that ship inside the package, reachable by name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ._errors import WeightsError

__all__ = ["NETWORKS", "Source", "load_digits_sample", "network_path", "resolve"]


@dataclass(frozen=True)
class Source:
    path: Path
    hidden: str
    output: str


# name -> (hidden activation, output activation); weights/README.md documents each.
NETWORKS: dict[str, tuple[str, str]] = {
    "digits": ("sigmoid", "softmax"),
    "fashion": ("sigmoid", "softmax"),  # one layer: only the output activation applies
    "and": ("sigmoid", "sigmoid"),
    "or": ("sigmoid", "sigmoid"),
    "nand": ("sigmoid", "sigmoid"),
    "xor": ("sigmoid", "sigmoid"),
}


def _package_file(*parts: str) -> Path:
    # joinpath, not a path built from the package directory: an editable install
    # spreads the package over the source tree and the build output.
    return Path(str(resources.files("mlpinfer").joinpath(*parts)))


def network_path(name: str) -> Path:
    """Path of the shipped network ``name`` (one of ``NETWORKS``)."""
    if name not in NETWORKS:
        raise WeightsError(f"no shipped network named {name!r}; shipped: {', '.join(NETWORKS)}")
    return _package_file("weights", f"{name}.pkl")


def resolve(path_or_name: str | os.PathLike[str]) -> Source:
    """A weight file path, or a shipped network's name, with its default activations."""
    path = Path(path_or_name)
    if path.exists() and not path.is_dir():  # a folder named "digits" is not the network
        return Source(path, "sigmoid", "softmax")
    name = os.fspath(path_or_name)
    if name in NETWORKS:
        hidden, output = NETWORKS[name]
        return Source(network_path(name), hidden, output)
    if path.is_dir():
        raise WeightsError(f"cannot read weight file {name!r}: it is a directory")
    raise WeightsError(
        f"{name!r} is neither an existing file nor a shipped network "
        f"(shipped: {', '.join(NETWORKS)})"
    )


def load_digits_sample() -> tuple[np.ndarray, np.ndarray]:
    """The embedded sample: 1,000 held-out MNIST training digits, 100 per class.

    Returns ``(images, labels)``: uint8 (1000, 28, 28) and uint8 (1000,).
    """
    with np.load(_package_file("data", "digits_sample.npz"), allow_pickle=False) as archive:
        return archive["images"], archive["labels"]
