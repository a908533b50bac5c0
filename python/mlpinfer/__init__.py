"""mlpinfer: fast, exact CPU inference for multilayer perceptrons."""

import os as _os  # private names: `dir(mlpinfer)` lists the API, not the standard library
import sys as _sys

from ._errors import DataError, MaxIsaError, MlpinferError, WeightsError


def _started_as_command() -> bool:
    """Whether this import starts the ``mlpinfer`` command, whose own code runs only after
    it: its console script (sys.argv[0], named as pip names it on each platform), or
    ``python -m mlpinfer`` (while Python locates the module, sys.argv[0] is "-m" and the
    module's name, alone or joined to "-m", comes just before the command's arguments)."""
    if _sys.argv[:1] == ["-m"] and len(_sys.orig_argv) > len(_sys.argv):
        named = _sys.orig_argv[-len(_sys.argv)]
        return named == __name__ or (named.startswith("-") and named.endswith("m" + __name__))
    script = _os.path.basename(_sys.argv[0]) if _sys.argv else ""
    return script in (__name__, f"{__name__}.exe", f"{__name__}-script.py")


try:
    from ._cpu import cpu_info  # chooses the kernels, once: an unknown MLPINFER_MAX_ISA fails here
except MaxIsaError as error:
    if not _started_as_command():
        raise
    # The command reports it as it reports a bad argument: one line, status 2.
    print(f"mlpinfer: error: {error}", file=_sys.stderr)
    raise SystemExit(2) from None

from . import importers  # noqa: F401 - registers the Keras, PyTorch and ONNX formats
from ._network import InputTransform, Layer, LayerNorm, Network, get_num_threads, set_num_threads
from ._network import _core as _engine  # _network explains a failed import of it
from .formats import convert, load, save

__version__: str = _engine.__version__

__all__ = [
    "DataError",
    "InputTransform",
    "Layer",
    "LayerNorm",
    "MaxIsaError",
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
