"""The restricted unpickler: the security boundary between a stranger's pickle and us.

A pickle is a program. This unpickler runs only the part of it that builds data:

- globals resolve only through the caller's allowlist (``allowed``: ``(module, name)`` ->
  the callable we substitute); persistent IDs only through the caller's
  ``persistent_load``; extension codes, sets and out-of-band buffers never;
- BUILD reaches only the types in ``setstate`` (the caller's check-then-apply function),
  at most once per object and before any use of it (an empty array fetched 300 times and
  then filled would escape the per-use charge below): NumPy's ``ndarray.__setstate__`` frees the buffer that a
  ``_frombuffer`` view of it still points at, so a second BUILD crashed the interpreter
  (8 MB array) or silently changed the weights (a small one);
- containers hold what the file says and nothing hashes a stranger's object: dict keys
  must be ``str`` (a tuple nested 150,000 deep as a key overflowed the C stack when
  hashed), nesting is limited to `MAX_DEPTH`, and a container cannot change once it is
  inside another (so depths and sizes recorded when it was built stay true, and no
  cycle can form);
- every use of an array (its BUILD, each memo fetch, each DUP, each container holding
  it fetched again) is charged to the caller's `Budget` by its size before anyone can
  expand it: one 1 MB array used by 300 layers costs 300 MB, and is refused as such;
- reads never run past the file's end, frames are at most `MAX_FRAME` bytes, and a
  declared length is checked against the file before anything is allocated for it.

The pure-Python ``pickle._Unpickler`` runs the opcodes (its memo is a dict, so ``LONG_BINPUT
680825748`` costs nothing; the C unpickler allocated 5 GB for it). Every failure ends in
the budget's error type (`WeightsError`), naming the file.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, ClassVar

import numpy as np

from .._errors import MlpinferError
from ._budget import Budget

__all__ = ["MAX_DEPTH", "MAX_FRAME", "RestrictedUnpickler", "empty_dict"]

#: Containers nested deeper than this are refused as they are built. A weight pickle
#: needs 3 (dict -> array state -> shape).
MAX_DEPTH = 32
#: pickle.dumps writes frames of about 64 KiB; a larger one only makes us read ahead.
MAX_FRAME = 1 << 20

SetState = Callable[[Any, Any, Budget], None]


def empty_dict(*args: Any) -> dict[Any, Any]:
    """What ``collections.OrderedDict`` may resolve to: pickles write ``OrderedDict()``
    and then SETITEMS, which checks the keys; ``dict(pairs)`` would hash them unchecked."""
    if args:
        raise pickle.UnpicklingError("OrderedDict with arguments: pickles never write that")
    return {}


_CONTAINERS = (tuple, list, dict)
_MUTABLE = (list, dict)


class _BoundedReader(io.RawIOBase):
    """Reads that would run past the file's end are refused before they are attempted:
    a pickle declares a multi-gigabyte bytes object in a few bytes, and the stock file
    object would allocate the declared size before noticing the file is short."""

    def __init__(self, raw: BinaryIO, size: int, budget: Budget) -> None:
        super().__init__()
        self._raw = raw
        self._remaining = size
        self._budget = budget

    def readable(self) -> bool:
        return True

    def _claim(self, wanted: int) -> None:
        if wanted > self._remaining:
            raise self._budget.fail(
                f"truncated file: the pickle asks for {wanted} more bytes, {self._remaining} remain"
            )

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        self._claim(len(view))
        got = self._raw.readinto(view)
        self._remaining -= got
        return got

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._remaining
        self._claim(size)
        data = self._raw.read(size)
        self._remaining -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = self._remaining if size is None or size < 0 else min(size, self._remaining)
        line = self._raw.readline(limit)
        self._remaining -= len(line)
        return line


class _Shape:
    """What the unpickler knows of a container it built: depth and bytes of array uses."""

    __slots__ = ("contained", "depth", "weight")

    def __init__(self, depth: int, weight: int) -> None:
        self.depth = depth
        self.weight = weight
        self.contained = False


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """``RestrictedUnpickler(stream, size, allowed=..., budget=...).load()``.

    ``size`` is the number of bytes the pickle may read from ``stream``. ``setstate``
    maps an exact type to ``f(target, state, budget)``, which checks the state, charges
    what applying it allocates and applies it. ``persistent_load(pid)`` resolves
    persistent IDs (the PyTorch reader's storages); without it they are refused.
    ``use_cost(obj)`` is the bytes one use of a non-container object costs (NumPy
    arrays: their size).
    """

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(
        self,
        stream: BinaryIO,
        size: int,
        *,
        allowed: Mapping[tuple[str, str], Any],
        budget: Budget,
        setstate: Mapping[type, SetState] | None = None,
        persistent_load: Callable[[Any], Any] | None = None,
        use_cost: Callable[[Any], int] | None = None,
        what: str = "a weight pickle",
    ) -> None:
        super().__init__(_BoundedReader(stream, size, budget))
        self._size = size
        self._allowed = allowed
        self._budget = budget
        self._setstate = setstate or {}
        self._persistent = persistent_load
        self._use_cost = use_cost or _array_bytes
        self._what = what
        self._shapes: dict[int, _Shape] = {}
        self._built: set[int] = set()
        self._placed: set[int] = set()
        # Every object the bookkeeping above refers to by id stays alive until the load
        # ends, so that no id is reused by a later object.
        self._alive: list[Any] = []

    def load(self) -> Any:
        try:
            return super().load()
        except MlpinferError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure to parse a hostile file is ours
            raise self._budget.fail(
                f"expected {self._what}, found an unreadable pickle "
                f"({type(error).__name__}: {str(error)[:200]})"
            ) from None
        finally:
            self._alive.clear()
            self._shapes.clear()
            self._placed.clear()

    # ----------------------------------------------------------- what may be called

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self._budget.fail(
                f"refusing to load global '{module}.{name}': expected {self._what}, which "
                "holds data only (this file would run code while loading)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise self._budget.fail(f"refusing a pickle with persistent IDs: {self._what} has none")
        return self._persistent(pid)

    def _refuse(self, what: str) -> None:
        raise self._budget.fail(f"refusing {what}: expected {self._what}, which never holds it")

    def _refuse_extension(self) -> None:
        self._refuse("an extension code (copyreg's registry can reach any callable)")

    def _refuse_set(self) -> None:
        self._refuse("a set (building one hashes objects from the file)")

    def _refuse_buffer(self) -> None:
        self._refuse("an out-of-band buffer")

    for _opcode in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = _refuse_extension
    for _opcode in (pickle.EMPTY_SET, pickle.ADDITEMS, pickle.FROZENSET):
        dispatch[_opcode[0]] = _refuse_set
    for _opcode in (pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        dispatch[_opcode[0]] = _refuse_buffer

    # ------------------------------------------------------------ reading the file

    def _load_bytearray8(self) -> None:
        # The stock handler allocates the declared size before reading a byte of it.
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._size:
            raise self._budget.fail(
                f"truncated file: a bytearray of {length} bytes in a file of {self._size}")
        self.append(bytearray(self.read(length)))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def _load_frame(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        if size > MAX_FRAME:
            raise self._budget.fail(f"refusing a pickle frame of {size} bytes (at most {MAX_FRAME})")
        self._unframer.load_frame(size)

    dispatch[pickle.FRAME[0]] = _load_frame

    # ------------------------------------------------------- containers and their uses

    def _weight(self, obj: Any) -> int:
        shape = self._shapes.get(id(obj))
        if shape is not None:
            return shape.weight
        return 0 if isinstance(obj, _CONTAINERS) else self._use_cost(obj)

    def _depth(self, obj: Any) -> int:
        shape = self._shapes.get(id(obj))
        return 0 if shape is None else shape.depth

    def _place(self, item: Any) -> None:
        """``item`` goes into a container: from now on it may not change (a later BUILD
        or added item would make what its containers recorded of it untrue)."""
        shape = self._shapes.get(id(item))
        if shape is not None:
            shape.contained = True
        elif type(item) in self._setstate and id(item) not in self._placed:
            # Only objects that a BUILD could reach are remembered: a list of a million
            # floats must not cost a set entry each.
            self._placed.add(id(item))
            self._alive.append(item)

    def _track(self, container: Any) -> None:
        """Record a container just built from items already on the stack."""
        items = list(container.items()) if type(container) is dict else container
        flat = [part for pair in items for part in pair] if type(container) is dict else items
        depth = 1 + max((self._depth(item) for item in flat), default=0)
        if depth > MAX_DEPTH:
            raise self._budget.fail(
                f"refusing containers nested more than {MAX_DEPTH} deep: expected {self._what}")
        for item in flat:
            self._place(item)
        self._shapes[id(container)] = _Shape(depth, sum(self._weight(item) for item in flat))
        self._alive.append(container)

    def _grow(self, container: Any, added: list[Any]) -> None:
        """Items go into a list or dict that the file built earlier."""
        shape = self._shapes.get(id(container))
        if shape is None or type(container) not in _MUTABLE:
            raise self._budget.fail(
                f"refusing to add items to a {type(container).__name__}: expected {self._what}")
        if shape.contained:
            raise self._budget.fail(
                "refusing to change a container after it was placed inside another: "
                f"expected {self._what}")
        if any(item is container for item in added):
            self._refuse("a container that holds itself")
        depth = 1 + max((self._depth(item) for item in added), default=0)
        if depth > MAX_DEPTH:
            raise self._budget.fail(
                f"refusing containers nested more than {MAX_DEPTH} deep: expected {self._what}")
        for item in added:
            self._place(item)
        shape.depth = max(shape.depth, depth)
        shape.weight += sum(self._weight(item) for item in added)

    def _check_pairs(self, items: list[Any]) -> None:
        if len(items) % 2:
            self._refuse("a dict built from an odd number of items")
        self._check_keys(items[0::2])

    def _check_keys(self, keys: list[Any]) -> None:
        for key in keys:
            if type(key) is not str:
                raise self._budget.fail(
                    f"refusing a dict key of type {type(key).__name__}: expected {self._what}, "
                    "whose keys are names (str)")

    def _builds_container(handler: Callable[[Any], None]) -> Callable[[Any], None]:  # type: ignore[misc]
        def build(self: RestrictedUnpickler) -> None:
            handler(self)
            self._track(self.stack[-1])

        return build

    def _load_dict(self) -> None:
        items = self.pop_mark()
        self._check_pairs(items)
        self.append(dict(zip(items[0::2], items[1::2], strict=True)))
        self._track(self.stack[-1])

    dispatch[pickle.DICT[0]] = _load_dict

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self.stack[-1]
        self._check_keys([key])
        self._grow(target, [key, value])
        target[key] = value

    dispatch[pickle.SETITEM[0]] = _load_setitem

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._check_pairs(items)
        self._grow(target, items)
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    dispatch[pickle.SETITEMS[0]] = _load_setitems

    def _load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        self._require_list(target)
        self._grow(target, [value])
        target.append(value)

    dispatch[pickle.APPEND[0]] = _load_append

    def _load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._require_list(target)
        self._grow(target, items)
        target.extend(items)

    dispatch[pickle.APPENDS[0]] = _load_appends

    def _require_list(self, target: Any) -> None:
        if type(target) is not list:
            self._refuse(f"appending to a {type(target).__name__}")

    def _charges_a_use(handler: Callable[[Any], None]) -> Callable[[Any], None]:  # type: ignore[misc]
        def fetch(self: RestrictedUnpickler) -> None:
            handler(self)
            obj = self.stack[-1]
            self._budget.charge(self._weight(obj), f"another use of a {type(obj).__name__}")
            if not isinstance(obj, _CONTAINERS):
                # A use fixes the object's state: fetched while still empty and then given
                # its data by BUILD, it would have been charged nothing for this use.
                self._place(obj)

        return fetch

    def _calls(handler: Callable[[Any], None]) -> Callable[[Any], None]:  # type: ignore[misc]
        """An allowed callable ran: its arguments are placed, its result is a new use."""

        def call(self: RestrictedUnpickler) -> None:
            for item in self.stack[-2:]:
                self._place(item)
            handler(self)
            result = self.stack[-1]
            if isinstance(result, _CONTAINERS):
                if type(result) not in _CONTAINERS or result:
                    self._refuse(f"a callable that returns a {type(result).__name__}")
                self._track(result)
            else:
                self._budget.charge(self._use_cost(result), f"a {type(result).__name__}")
                self._alive.append(result)

        return call

    _STOCK = pickle._Unpickler.dispatch  # type: ignore[attr-defined]
    for _wrap, _opcodes in (
        (_builds_container, (pickle.EMPTY_TUPLE, pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2,
                             pickle.TUPLE3, pickle.EMPTY_LIST, pickle.LIST, pickle.EMPTY_DICT)),
        (_charges_a_use, (pickle.GET, pickle.BINGET, pickle.LONG_BINGET, pickle.DUP)),
        (_calls, (pickle.REDUCE, pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST)),
    ):
        for _opcode in _opcodes:
            dispatch[_opcode[0]] = _wrap(_STOCK[_opcode[0]])

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        apply = self._setstate.get(type(target))
        if apply is None:
            raise self._budget.fail(
                f"refusing to set the state of a {type(target).__name__}: expected {self._what}")
        if id(target) in self._built:
            raise self._budget.fail(
                f"refusing to set the state of the same {type(target).__name__} twice: "
                "pickles set each object's state once (a second time frees memory that views "
                "of it still use)")
        if id(target) in self._placed:
            raise self._budget.fail(
                f"refusing to set the state of a {type(target).__name__} already in use (in a "
                "container, fetched from the memo or duplicated): pickles set an object's "
                "state before using it")
        self._built.add(id(target))
        self._alive.append(target)
        self._place(state)
        apply(target, state, self._budget)

    dispatch[pickle.BUILD[0]] = _load_build

    del _opcode, _opcodes, _wrap, _STOCK, _builds_container, _charges_a_use, _calls


def _array_bytes(obj: Any) -> int:
    return int(obj.nbytes) if type(obj) is np.ndarray else 0
