"""Until the Keras, PyTorch and ONNX modules move into `mlpinfer.formats` (issue 13), they
import the shared chain from here; delete this file with that move."""

from ..formats._chain import Chain, UnsupportedModelError, require

__all__ = ["Chain", "UnsupportedModelError", "require"]
