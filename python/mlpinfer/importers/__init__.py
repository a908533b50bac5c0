"""Networks from other frameworks, and back: scikit-learn, ONNX, PyTorch, Keras.

Each framework is an optional dependency, imported only when its function is called.
Every layer, op or option that a dense MLP cannot express is refused with an
`UnsupportedModelError` naming it; nothing is skipped.
"""

from ._common import UnsupportedModelError
from ._convert import WRITERS, convert, write_network
from ._keras import from_keras, load_keras, save_keras, to_keras
from ._onnx import from_onnx, to_onnx
from ._sklearn import from_sklearn
from ._torch import ARCHITECTURE_LAYERS, from_torch, load_torch, save_torch, to_torch

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
