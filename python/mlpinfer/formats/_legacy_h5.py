"""HDF5 files (legacy Keras ``.h5`` models): recognised by their signature, to refuse them
with a message rather than read them as a broken pickle."""

from __future__ import annotations

from ._registry import Format

__all__ = ["FORMAT"]

_SIGNATURE = b"\x89HDF\r\n\x1a\n"

FORMAT = Format(
    name="hdf5",
    description="HDF5 file",
    recognise=lambda probe: probe.head.startswith(_SIGNATURE),
    read=None,
    refusal="an HDF5 file (a legacy Keras .h5 model?), which mlpinfer does not read: save "
            "the model as .keras",
)
