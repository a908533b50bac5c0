"""Networks from other frameworks, and back: scikit-learn, ONNX, PyTorch, Keras.

Live framework objects (a ``keras.Model``, an ``nn.Sequential``, a fitted scikit-learn
MLP, an ``onnx.ModelProto``) are converted here, each framework imported only when its
function is called. Files of every format are read as data, without any framework, and
written by `mlpinfer.load`, `mlpinfer.save` and `mlpinfer.convert` (`mlpinfer.formats`);
``convert``, ``write_network``, ``WRITERS`` and the ``load_*``/``save_*``/``to_onnx``
names here are the same. Every layer, op or option that a dense MLP cannot express is
refused with an `UnsupportedModelError` naming it; only layers that are the identity at
inference (Dropout, Identity, Flatten, InputLayer) are skipped.
"""

from ..formats import convert, writers
from ..formats import save as write_network
from ..formats._chain import UnsupportedModelError
from ..formats.keras import to_keras
from ..formats.keras import write_keras as save_keras
from ..formats.onnx import write_onnx as to_onnx
from ..formats.torch import ARCHITECTURE_LAYERS
from ..formats.torch import write_torch as save_torch
from ._keras import from_keras, load_keras
from ._onnx import from_onnx
from ._sklearn import from_sklearn
from ._torch import from_torch, load_torch, to_torch

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
