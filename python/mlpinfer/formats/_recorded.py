"""What a weight file records beside its layers, checked the same way in every format:
the scales of float and uint8 input (``input_scale``, ``pixel_scale``) and the labels of
the outputs (``classes``).

The native header, the PyTorch bundle and the ONNX model's ``metadata_props`` hold them
as JSON or plain values; a value that is not what `Network` accepts is a `WeightsError`
naming the field, never a guess.
"""

from __future__ import annotations

import json
from typing import Any

from .._params import is_float32_number
from ._budget import Budget

__all__ = ["MAX_JSON_BYTES", "checked_classes", "checked_scale", "read_json"]

#: A header or a metadata value is a few hundred bytes (a thousand class names are tens of
#: kilobytes); a megabyte of it is not one, and JSON decoding costs many times its text.
MAX_JSON_BYTES = 1 << 20


def read_json(data: bytes | str, what: str, budget: Budget) -> Any:
    """``data`` (UTF-8 bytes, or text) decoded as JSON, or `WeightsError` naming ``what``."""
    if len(data) > MAX_JSON_BYTES:
        raise budget.fail(f"expected {what} of at most {MAX_JSON_BYTES} bytes, found {len(data)}")
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, or nested too deep
        raise budget.fail(f"corrupt {what} ({str(error)[:200]})") from None


def checked_scale(value: Any, what: str, budget: Budget) -> float | None:
    """A recorded input or pixel scale: ``None`` or a number that float32 holds."""
    if value is not None and not is_float32_number(value):
        raise budget.fail(
            f"{what} must be null or a number within float32's range, got {_shown(value)}")
    return None if value is None else float(value)


def _shown(value: Any) -> str:
    try:
        return repr(value)[:40]
    except ValueError:  # Python refuses to print an integer of more than 4,300 digits
        return f"a {type(value).__name__} too long to print"


def checked_classes(value: Any, what: str, budget: Budget) -> list[Any] | None:
    """Recorded classes: ``None`` or a list of numbers or strings (`Network` checks that
    they are distinct, of one kind, and one per output)."""
    if value is not None and (
        type(value) is not list or not all(isinstance(c, (str, int, float)) for c in value)
    ):
        raise budget.fail(f"{what} must be null or a list of numbers or strings")
    return value
