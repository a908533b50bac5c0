"""Write the seed corpus of each harness: python fuzz/seeds.py CORPUS_ROOT.

Seeds are small valid files, so that mutation starts inside each format rather than
at its magic bytes. Existing files are kept: a corpus grown by earlier runs stays.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
from framework_seeds import keras_seeds, onnx_seeds, torch_seeds

import mlpinfer


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"W1": rng.standard_normal((3, 2)).astype(np.float32), "b1": np.zeros(2, np.float32),
            "W2": rng.standard_normal((2, 2)), "b2": np.ones((1, 2))}


def weights() -> dict[str, bytes]:
    params = _params()
    seeds = {f"pickle-p{p}": pickle.dumps(params, protocol=p)
             for p in range(pickle.HIGHEST_PROTOCOL + 1)}
    seeds["pickle-fortran"] = pickle.dumps({k: np.asfortranarray(v) for k, v in params.items()})
    for name, save in (("npz", np.savez), ("npz-compressed", np.savez_compressed)):
        stream = io.BytesIO()
        save(stream, **params)
        seeds[name] = stream.getvalue()
    network = mlpinfer.Network.from_params(params, activations=["tanh", "softmax"],
                                           input_scale=0.5)
    stream = io.BytesIO()
    classes = [f"class {i}" for i in range(network.n_outputs)]  # so the fuzzer mutates them too
    np.savez(stream, **network.params(), mlpinfer_header=mlpinfer.formats._npz.header_bytes(
        list(network.activations), network.input_scale, 1.0, classes))
    seeds["native"] = stream.getvalue()
    return seeds


def idx() -> dict[str, bytes]:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.arange(5, dtype=np.uint8)
    raw_images = struct.pack(">IIII", 0x0803, *images.shape) + images.tobytes()
    raw_labels = struct.pack(">II", 0x0801, labels.size) + labels.tobytes()
    return {"images": raw_images, "labels": raw_labels,
            "images-gz": gzip.compress(raw_images, mtime=0),
            "labels-gz": gzip.compress(raw_labels, mtime=0)}


def main(root: Path) -> None:
    for harness, seeds in (("weights", weights()), ("roundtrip", weights()), ("idx", idx()),
                           ("onnx", onnx_seeds()), ("keras", keras_seeds()),
                           ("torch", torch_seeds())):
        directory = root / harness
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            path = directory / f"seed-{name}"
            if not path.exists():
                path.write_bytes(data)
    # fuzz_npz builds its archives from the input, so any bytes seed it.
    (root / "npz").mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
