"""Exception types: every failure caused by a file or an argument is one of these."""


class MlpinferError(Exception):
    """Base class of all errors raised by mlpinfer on bad input."""


class WeightsError(MlpinferError, ValueError):
    """A weight file or parameter set cannot be turned into a network."""


class DataError(MlpinferError, ValueError):
    """A dataset file is missing, corrupt, truncated or inconsistent."""
