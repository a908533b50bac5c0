"""Fuzz a load -> save -> load round trip: whatever loads must save and load back the same.

    python fuzz/fuzz_roundtrip.py [libFuzzer options] [corpus directories]

Inputs are weight files (seeded like fuzz_weights.py). One that loads is written in every
format mlpinfer writes without a framework (native .npz; the textbook .pkl when the network
has its activations and scales) and read back: activations, input and pixel scales, classes
and every weight must be bit-identical, and the network must compute the same outputs. A WeightsError from the first
load is the expected refusal; any other exception, a difference, a hang or a crash is a finding.
"""

from __future__ import annotations

import os
import tempfile

import atheris

with atheris.instrument_imports(include=["mlpinfer", "zipfile", "numpy.lib._format_impl"]):
    import numpy as np

    import mlpinfer

from _findings import fuzz, load_or_none

_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_STEM = os.path.join(_DIRECTORY, f"mlpinfer-roundtrip-{os.getpid()}")
_TEXTBOOK_OUTPUT = "softmax"


def _same(first: mlpinfer.Network, second: mlpinfer.Network, where: str) -> None:
    assert first.activations == second.activations, (where, first, second)
    assert first.input_scale == second.input_scale, (where, first.input_scale, second.input_scale)
    assert first.pixel_scale == second.pixel_scale, (where, first.pixel_scale, second.pixel_scale)
    assert repr(first.classes) == repr(second.classes), (where, first.classes, second.classes)
    for one, other in zip(first.layers, second.layers, strict=True):
        assert one.weights.tobytes() == other.weights.tobytes(), where
        assert one.bias.tobytes() == other.bias.tobytes(), where
    x = np.linspace(-2.0, 2.0, 3 * first.n_inputs, dtype=np.float32).reshape(3, -1)
    assert first.predict(x).tobytes() == second.predict(x).tobytes(), where


def check(data: bytes) -> None:
    with open(_STEM + ".in", "wb") as stream:
        stream.write(data)
    network = load_or_none(_STEM + ".in")
    if network is None:
        return
    textbook = network.activations == ("sigmoid",) * (len(network.layers) - 1) + (_TEXTBOOK_OUTPUT,)
    textbook = (textbook and network.input_scale is None and network.pixel_scale == 1 / 255
                and network.classes is None)
    suffixes = [".npz"] + ([".pkl"] if textbook else [])
    for suffix in suffixes:
        mlpinfer.save(network, _STEM + suffix)
        _same(network, mlpinfer.load(_STEM + suffix), suffix)


if __name__ == "__main__":
    try:
        fuzz(check, _STEM + ".in")
    finally:
        for suffix in (".npz", ".pkl"):
            if os.path.exists(_STEM + suffix):
                os.unlink(_STEM + suffix)
