"""mlpinfer: fast, exact CPU inference for multilayer perceptrons."""

from . import importers  # noqa: F401 - registers the Keras, PyTorch and ONNX formats
from ._cpu import cpu_info
from ._errors import DataError, MlpinferError, WeightsError
from ._network import InputTransform, Layer, LayerNorm, Network, get_num_threads, set_num_threads
from ._network import _core as _engine  # _network explains a failed import of it
from .formats import convert, load, save

__version__: str = _engine.__version__

__all__ = [
    "DataError",
    "InputTransform",
    "Layer",
    "LayerNorm",
    "MlpinferError",
    "Network",
    "WeightsError",
    "__version__",
    "convert",
    "cpu_info",
    "get_num_threads",
    "load",
    "save",
    "set_num_threads",
]
