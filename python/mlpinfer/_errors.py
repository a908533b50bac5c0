"""Exception types: every failure caused by a file or an argument is one of these."""


class MlpinferError(Exception):
    """Base class of all errors raised by mlpinfer on bad input."""


class WeightsError(MlpinferError, ValueError):
    """A weight file or parameter set cannot be turned into a network."""


class DataError(MlpinferError, ValueError):
    """A dataset file is missing, corrupt, truncated or inconsistent."""


class MaxIsaError(ValueError):
    """``MLPINFER_MAX_ISA`` names no kernel family of this CPU's architecture. Raised while
    ``import mlpinfer`` chooses the kernels, so nobody can import it to catch it: it is a
    ValueError, and its own type is for the package's import to recognise it (see
    ``mlpinfer/__init__.py``)."""


# Tracebacks and reprs name them where users import them from, not this private module.
for _error in (MlpinferError, WeightsError, DataError):
    _error.__module__ = "mlpinfer"
del _error
