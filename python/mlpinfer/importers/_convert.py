"""Converting between every format mlpinfer reads and writes."""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from .._errors import WeightsError
from .._files import write_atomically
from .._network import Network, load
from ..formats.keras import write_keras as save_keras
from ..formats.onnx import write_onnx as to_onnx
from ..formats.torch import write_torch as save_torch
from ._keras import load_keras
from ._onnx import from_onnx
from ._torch import load_torch

__all__ = ["WRITERS", "convert", "read_foreign", "write_network"]

# File name suffix of the destination -> format written.
WRITERS = {
    ".npz": "native mlpinfer network (Network.save)",
    ".pkl": "textbook sample_weight.pkl (a pickled dict W1..Wn, b1..bn)",
    ".onnx": "ONNX model",
    ".keras": "Keras 3 model",
    ".pt": "PyTorch state_dict with its architecture (save_torch)",
    ".pth": "PyTorch state_dict with its architecture (save_torch)",
}


def read_foreign(
    path: Path,
    kind: str,
    *,
    architecture: Sequence[str] | None = None,
    hidden: str | None = None,
    output: str | None = None,
    input_scale: float | None = None,
) -> Network:
    """A network from an ONNX, Keras or PyTorch file (``kind`` as `sniff_format` says).

    These record their activations; only a bare PyTorch state_dict takes
    ``architecture`` (and an ``input_scale``).
    """
    allowed = {"architecture", "input_scale"} if kind == "torch" else set()
    given = [name for name, value in (("architecture", architecture), ("hidden", hidden),
                                      ("output", output), ("input_scale", input_scale))
             if value is not None and name not in allowed]
    if given:
        raise WeightsError(
            f"{path}: {kind} models record their activations; do not pass "
            f"{', '.join(given)}"
        )
    if kind == "onnx":
        return from_onnx(path)
    if kind == "keras":
        return load_keras(path)
    return load_torch(path, architecture, input_scale=input_scale)


def write_network(network: Network, destination: str | os.PathLike[str]) -> None:
    """Write ``network`` in the format named by the suffix of ``destination`` (`WRITERS`)."""
    path = Path(destination)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        network.save(path)
    elif suffix == ".pkl":
        _save_textbook_pickle(network, path)
    elif suffix == ".onnx":
        to_onnx(network, path)
    elif suffix == ".keras":
        save_keras(network, path)
    elif suffix in (".pt", ".pth"):
        save_torch(network, path)
    else:
        known = ", ".join(f"{s} ({what})" for s, what in WRITERS.items())
        raise ValueError(f"cannot tell the format to write from {path.name!r}; use one of {known}")


def convert(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    architecture: Sequence[str] | None = None,
    hidden: str | None = None,
    output: str | None = None,
    input_scale: float | None = None,
) -> Network:
    """Read ``source`` by its content, write it in the format named by ``destination``'s
    suffix (`WRITERS`), and return the network. Options as in `mlpinfer.load`."""
    network = load(source, architecture=architecture, hidden=hidden, output=output,
                   input_scale=input_scale)
    write_network(network, destination)
    return network


def _save_textbook_pickle(network: Network, path: Path) -> None:
    # The textbook format records no activations or scale: readers assume these.
    textbook = ("sigmoid",) * (len(network.layers) - 1) + ("softmax",)
    if network.activations != textbook or network.input_scale is not None:
        raise WeightsError(
            f"a .pkl records only weights and reads back as sigmoid hidden layers, a softmax "
            f"output and the default input scale; this network is {network!r}: "
            "write .npz (the native format) to keep its activations"
        )
    params = {name: array.copy() for name, array in network.params().items()}
    write_atomically(path, lambda stream: pickle.dump(params, stream, protocol=4))
