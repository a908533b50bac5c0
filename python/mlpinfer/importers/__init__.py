"""Networks from other frameworks, and back: scikit-learn, ONNX, PyTorch, Keras.

Each framework is an optional dependency, imported only when its function is called.
Every layer, op or option that a dense MLP cannot express is refused with an
`UnsupportedModelError` naming it; nothing is skipped. Files of every format are read
and written by `mlpinfer.load`, `mlpinfer.save` and `mlpinfer.convert`
(`mlpinfer.formats`); ``convert``, ``write_network`` and ``WRITERS`` here are the same.
"""

from ..formats import convert, writers
from ..formats import save as write_network
from ..formats._chain import UnsupportedModelError
from . import _convert  # registers the framework formats
from ._keras import from_keras, load_keras, save_keras, to_keras
from ._onnx import from_onnx, to_onnx
from ._sklearn import from_sklearn
from ._torch import ARCHITECTURE_LAYERS, from_torch, load_torch, save_torch, to_torch

#: Destination suffix -> the format `write_network` (`mlpinfer.save`) writes there.
WRITERS = writers()

__all__ = [
    "ARCHITECTURE_LAYERS",
    "WRITERS",
    "UnsupportedModelError",
    "convert",
    "from_keras",
    "from_onnx",
    "from_sklearn",
    "from_torch",
    "load_keras",
    "load_torch",
    "save_keras",
    "save_torch",
    "to_keras",
    "to_onnx",
    "to_torch",
    "write_network",
]

del _convert
