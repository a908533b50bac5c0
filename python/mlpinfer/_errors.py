"""Exception types: every failure caused by a file or an argument is one of these."""


class MlpinferError(Exception):
    """Base class of all errors raised by mlpinfer on bad input."""


class WeightsError(MlpinferError, ValueError):
    """A weight file or parameter set cannot be turned into a network."""


class DataError(MlpinferError, ValueError):
    """A dataset file is missing, corrupt, truncated or inconsistent."""


# Tracebacks and reprs name them where users import them from, not this private module.
for _error in (MlpinferError, WeightsError, DataError):
    _error.__module__ = "mlpinfer"
del _error
