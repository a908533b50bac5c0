"""Keras, PyTorch and ONNX files made by the tests themselves, without the frameworks.

`pickle_program` writes pickle opcodes for a tree of plain values, `Global` names and
`Call`s, so that a ``data.pkl`` can say anything a hostile file could (a tensor rebuild
with any strides, a tuple nested 150,000 deep as a dict key) without importing torch.
`zip_bytes` writes a zip whose members may declare sizes other than what they hold (a
1.5 GiB ``config.json`` in a few bytes). `keras_config` writes what ``model.save``
writes for a Sequential model.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- pickles


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    func: Any
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Persistent:
    pid: Any


@dataclass(frozen=True)
class Put:
    """``value``, then memoised in ``slot`` (BINPUT)."""

    value: Any
    slot: int


@dataclass(frozen=True)
class Get:
    """The object memoised in ``slot`` (BINGET): one more use of it."""

    slot: int


@dataclass(frozen=True)
class Raw:
    """Opcodes written as they are."""

    data: bytes


def pickle_program(value: Any) -> bytes:
    """Protocol 2 opcodes that build ``value``, as torch.save writes its data.pkl."""
    out = io.BytesIO()
    out.write(b"\x80\x02")
    _emit(out, value)
    out.write(b".")
    return out.getvalue()


def _emit(out: io.BytesIO, value: Any) -> None:
    if isinstance(value, Raw):
        out.write(value.data)
    elif value is None:
        out.write(b"N")
    elif value is True or value is False:
        out.write(b"\x88" if value else b"\x89")
    elif isinstance(value, int) and -(1 << 31) <= value < (1 << 31):
        out.write(b"J" + struct.pack("<i", value))
    elif isinstance(value, int):
        data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        out.write(b"\x8a" + bytes([len(data)]) + data if len(data) < 256
                  else b"\x8b" + struct.pack("<I", len(data)) + data)
    elif isinstance(value, Put):
        _emit(out, value.value)
        out.write(b"q" + bytes([value.slot]))
    elif isinstance(value, Get):
        out.write(b"h" + bytes([value.slot]))
    elif isinstance(value, float):
        out.write(b"G" + struct.pack(">d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.write(b"X" + struct.pack("<I", len(data)) + data)
    elif isinstance(value, Global):
        out.write(f"c{value.module}\n{value.name}\n".encode())
    elif isinstance(value, Call):
        _emit(out, value.func)
        _emit(out, value.args)
        out.write(b"R")
    elif isinstance(value, Persistent):
        _emit(out, value.pid)
        out.write(b"Q")
    elif isinstance(value, tuple):
        out.write(b"(")
        for item in value:
            _emit(out, item)
        out.write(b"t")
    elif isinstance(value, list):
        out.write(b"]")
        for item in value:
            _emit(out, item)
            out.write(b"a")
    elif isinstance(value, dict):
        out.write(b"}(")
        for key, item in value.items():
            _emit(out, key)
            _emit(out, item)
        out.write(b"u")
    else:
        raise TypeError(type(value))


REBUILD_TENSOR = Global("torch._utils", "_rebuild_tensor_v2")
ORDERED_DICT = Global("collections", "OrderedDict")


def tensor(key: str, numel: int, shape: tuple[int, ...], stride: tuple[int, ...] | None = None,
           *, offset: int = 0, storage: str = "FloatStorage") -> Call:
    """A ``_rebuild_tensor_v2`` call on storage ``key``, as torch.save writes it."""
    if stride is None:
        stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    pid = Persistent(("storage", Global("torch", storage), key, "cpu", numel))
    return Call(REBUILD_TENSOR, (pid, offset, shape, stride, False, Call(ORDERED_DICT, ())))


def torch_zip(data_pkl: bytes, storages: dict[str, bytes], *, name: str = "archive",
              byteorder: bytes | None = b"little") -> bytes:
    """A zip laid out as torch.save writes it."""
    members = {f"{name}/data.pkl": data_pkl}
    if byteorder is not None:
        members[f"{name}/byteorder"] = byteorder
    members.update({f"{name}/data/{key}": data for key, data in storages.items()})
    members[f"{name}/version"] = b"3\n"
    return zip_bytes(members)


def state_dict_file(arrays: dict[str, np.ndarray], architecture: list[str] | None = None,
                    input_scale: float | None = None, **recorded: Any) -> bytes:
    """What ``save_torch`` writes for float32 arrays (``recorded``: its ``pixel_scale``
    and ``classes``), or a bare state_dict."""
    state = {}
    storages = {}
    for index, (key, array) in enumerate(arrays.items()):
        storages[str(index)] = np.ascontiguousarray(array, "<f4").tobytes()
        state[key] = tensor(str(index), array.size, array.shape)
    value: Any = state
    if architecture is not None:
        value = {"format": "mlpinfer.torch", "version": 1, "architecture": architecture,
                 "input_scale": input_scale, **recorded, "state_dict": state}
    return torch_zip(pickle_program(value), storages)


# --------------------------------------------------------------------------- zips


def zip_bytes(members: dict[str, bytes], *, declared: dict[str, int] | None = None,
              deflate: bool = False) -> bytes:
    """A zip of ``members``; ``declared`` overrides the uncompressed size that the local
    header and the central directory record (the data stays what it is)."""
    stream = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(stream, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    data = bytearray(stream.getvalue())
    for name, size in (declared or {}).items():
        encoded = name.encode()
        # Local header: signature, then the uncompressed size at offset 22; central
        # directory entry: at offset 24. Both are followed by the name after fixed fields.
        for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
            at = 0
            while (at := data.find(signature, at)) >= 0:
                if data[at + name_at: at + name_at + len(encoded)] == encoded:
                    struct.pack_into("<I", data, at + size_at, size)
                at += 4
    return bytes(data)


# --------------------------------------------------------------------------- Keras


def _policy() -> dict[str, Any]:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
            "registered_name": None}


def keras_layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name,
            "config": {"name": config.pop("name", class_name.lower()), "trainable": True,
                       "dtype": _policy(), **config},
            "registered_name": None}


def dense(units: Any, activation: Any = "linear", **config: Any) -> dict[str, Any]:
    return keras_layer("Dense", units=units, activation=activation,
                       **{"use_bias": True, **config})


def keras_config(inputs: int | tuple[int, ...], *layers: dict[str, Any]) -> dict[str, Any]:
    """A Sequential model's config.json."""
    shape = [None, *(inputs if isinstance(inputs, tuple) else (inputs,))]
    first = {"module": "keras.layers", "class_name": "InputLayer",
             "config": {"batch_shape": shape, "dtype": "float32", "sparse": False,
                        "ragged": False, "name": "input_layer", "optional": False},
             "registered_name": None}
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": "sequential", "trainable": True, "dtype": _policy(),
                       "layers": [first, *layers], "build_input_shape": shape},
            "registered_name": None}


def keras_zip(config: Any, weights_h5: bytes, **zip_options: Any) -> bytes:
    text = config if isinstance(config, (bytes, str)) else json.dumps(config)
    return zip_bytes({"metadata.json": b'{"keras_version": "3.15.1"}',
                      "config.json": text.encode() if isinstance(text, str) else text,
                      "model.weights.h5": weights_h5}, **zip_options)


def h5_bytes(build: Any) -> bytes:
    """An HDF5 file in memory: ``build(h5py.File)`` fills it."""
    import h5py

    stream = io.BytesIO()
    with h5py.File(stream, "w") as h5:
        build(h5)
    return stream.getvalue()


def dense_weights(*layers: tuple[np.ndarray, np.ndarray | None]) -> bytes:
    """``model.weights.h5`` for Sequential Dense layers, named as Keras names them."""

    def build(h5: Any) -> None:
        for index, (kernel, bias) in enumerate(layers):
            group = h5.create_group(f"layers/dense{'_' + str(index) if index else ''}/vars")
            group.create_dataset("0", data=kernel)
            if bias is not None:
                group.create_dataset("1", data=bias)

    return h5_bytes(build)


def corruptions(data: bytes, count: int = 200, *, seed: int = 5) -> list[bytes]:
    """``data`` cut short, and with one byte changed, at ``count`` positions each (every
    position when the file is shorter)."""
    rng = np.random.default_rng(seed)
    positions = (range(len(data)) if count >= len(data)
                 else rng.choice(len(data), size=count, replace=False))
    variants = []
    for position in positions:
        variants.append(data[:position])
        corrupt = bytearray(data)
        corrupt[position] ^= int(rng.integers(1, 256))
        variants.append(bytes(corrupt))
    return variants
