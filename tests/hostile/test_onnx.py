"""Hostile and broken ONNX files: each refused with our error, naming the file.

Files are made here with ``onnx.helper`` (the reader needs the ``onnx`` package for its
message classes anyway) or as raw protobuf bytes; ONNX's own ``numpy_helper`` checks
that what loads equals what the file says.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from framework_files import corruptions
from support import refused_in_fresh_process

import mlpinfer
from mlpinfer import WeightsError
from mlpinfer.importers import from_onnx

onnx = pytest.importorskip("onnx")
helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)


def model_of(nodes, initializers, *, inputs=4, elem=TensorProto.FLOAT, output="y"):
    tensors = [value if isinstance(value, onnx.TensorProto)
               else numpy_helper.from_array(np.asarray(value), name)
               for name, value in initializers.items()]
    graph = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("x", elem, ["N", inputs])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], tensors)
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)],
                             ir_version=8)


def gemm(weights="W", bias="b", out="y", **attributes):
    return helper.make_node("Gemm", ["x", weights, bias], [out], name="fc", **attributes)


def write(tmp_path, model, name: str = "hostile.onnx"):
    path = tmp_path / name
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return path


def refused(folder, model, match: str) -> None:
    path = write(folder, model)
    with pytest.raises(WeightsError, match=match) as caught:
        mlpinfer.load(path)
    assert str(path) in str(caught.value)


def tensor_proto(name, data_type, dims, **fields):
    proto = onnx.TensorProto(name=name, data_type=data_type, dims=dims)
    for field, value in fields.items():
        if field == "raw_data":
            proto.raw_data = value
        else:
            getattr(proto, field).extend(value)
    return proto


# --------------------------------------------------------------------------- benign


@pytest.mark.parametrize(
    "weights",
    [
        numpy_helper.from_array(W, "W"),
        tensor_proto("W", TensorProto.FLOAT, [4, 3], float_data=W.reshape(-1).tolist()),
        numpy_helper.from_array(W.astype(np.float64), "W"),
        numpy_helper.from_array(W.astype(np.float16), "W"),
        tensor_proto("W", TensorProto.FLOAT16, [4, 3],
                     int32_data=W.astype(np.float16).view(np.uint16).reshape(-1).tolist()),
        helper.make_tensor("W", TensorProto.BFLOAT16, [4, 3], W.reshape(-1).tolist()),
    ],
    ids=["raw-float", "float_data", "double", "raw-float16", "float16-in-int32", "bfloat16"],
)
def test_initializers_load_what_numpy_helper_reads(tmp_path, weights):
    """What loads equals what the file says, read independently by onnx.numpy_helper."""
    path = write(tmp_path, model_of([gemm()], {"W": weights, "b": B}))
    network = mlpinfer.load(path)
    expected = numpy_helper.to_array(weights).astype(np.float64).astype(np.float32)
    np.testing.assert_array_equal(network.layers[0].weights, expected)
    np.testing.assert_array_equal(network.layers[0].bias, B)


# --------------------------------------------------------------------------- bombs


def test_one_initializer_used_by_many_nodes_counts_per_use(tmp_path):
    """A 4 MB initializer used by 1,500 Gemm nodes (killed the process at 9 GB)."""
    square = np.zeros((1000, 1000), np.float32)
    nodes = [helper.make_node("Gemm", ["x" if i == 0 else f"h{i}", "W", "b"],
                              ["y" if i == 1499 else f"h{i + 1}"], name=f"g{i}")
             for i in range(1500)]
    path = write(tmp_path, model_of(nodes, {"W": square, "b": np.zeros(1000, np.float32)},
                                    inputs=1000))
    refused_in_fresh_process(
        path, match=r"input 1 \('W'\) of node #\d+ needs 4000000 bytes.*budget")


def test_dimensions_declaring_terabytes_are_refused_without_allocating(tmp_path):
    weights = tensor_proto("W", TensorProto.FLOAT, [1 << 20, 1 << 20], raw_data=W.tobytes())
    path = write(tmp_path, model_of([gemm()], {"W": weights, "b": B}))
    refused_in_fresh_process(
        path, match=r"needs 4398046511104 bytes of raw_data, the file holds 48")


@pytest.mark.parametrize("dims", [[4, 3, 24548679292, 2104, 887605, 0], [1] * 9],
                         ids=["empty-but-overflowing", "nine-axes"])
def test_shapes_numpy_cannot_hold_are_refused(tmp_path, dims):
    # Found by fuzz/fuzz_onnx.py (F27): an empty tensor whose other dimensions overflow
    # NumPy's index type escaped from reshape as a ValueError.
    weights = tensor_proto("W", TensorProto.FLOAT, dims, raw_data=b"" if 0 in dims else b"\0" * 4)
    refused(tmp_path, model_of([gemm()], {"W": weights, "b": B}),
            r"initializer 'W' declares shape .*: expected at most 8 dimensions")


# --------------------------------------------------------------------------- tensors


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (tensor_proto("W", TensorProto.FLOAT, [4, 3], raw_data=W.tobytes()[:-4]),
         "FLOAT of shape \\[4, 3\\] needs 48 bytes of raw_data, the file holds 44"),
        (tensor_proto("W", TensorProto.FLOAT, [4, 3], raw_data=W.tobytes() + bytes(4)),
         "the file holds 52"),
        (tensor_proto("W", TensorProto.FLOAT, [4, 3], float_data=[1.0, 2.0]),
         "needs 12 values in float_data, found 2 values in float_data"),
        (tensor_proto("W", TensorProto.FLOAT, [4, 3], double_data=[1.0] * 12),
         "found 12 values in double_data"),
        (tensor_proto("W", TensorProto.FLOAT, [4, 3]), "found no data"),
        (tensor_proto("W", TensorProto.FLOAT, [4, 3], raw_data=W.tobytes(), float_data=[1.0]),
         "holds raw_data and float_data"),
        (tensor_proto("W", TensorProto.FLOAT, [4, -3], raw_data=W.tobytes()),
         "negative dimension"),
        (tensor_proto("W", 87, [4, 3], raw_data=W.tobytes()),
         "element type unknown type 87; expected one of FLOAT"),
        (tensor_proto("W", TensorProto.STRING, [1], string_data=[b"x"]),
         "element type STRING"),
        (tensor_proto("W", TensorProto.INT64, [4, 3], int64_data=list(range(12))),
         "a constant of int64; expected floats"),
        (tensor_proto("W", TensorProto.FLOAT16, [4, 3], int32_data=[70000] * 12),
         "16-bit values in int32_data beyond 0..65535"),
    ],
    ids=["short-raw", "long-raw", "few-floats", "wrong-field", "no-data", "two-fields",
         "negative-dim", "type-87", "string", "int64-weights", "float16-range"],
)
def test_initializers_must_hold_what_they_declare(tmp_path, weights, match):
    refused(tmp_path, model_of([gemm()], {"W": weights, "b": B}), match)


# --------------------------------------------------------------------------- external data


def external(name, array, location, *, offset=None, length=None):
    """``array`` as a tensor whose bytes are in ``location`` (written by the caller)."""
    tensor = numpy_helper.from_array(np.asarray(array), name)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    if offset is not None:
        tensor.external_data.add(key="offset", value=str(offset))
    if length is not None:
        tensor.external_data.add(key="length", value=str(length))
    return tensor


def external_model(weights):
    return model_of([gemm()], {"W": weights, "b": B})


def test_external_data_loads_what_onnx_reads(tmp_path):
    """Weights at an offset of a data file, a bias in a subfolder without a length
    (to the end of its file), and a symbolic link that stays inside the folder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.onnx.data").write_bytes(b"16 bytes ahead. " + W.tobytes() + b"tail")
    (tmp_path / "sub" / "bias.bin").write_bytes(B.tobytes())
    (tmp_path / "link.bin").symlink_to(tmp_path / "sub" / "bias.bin")
    for bias_location in ("sub/bias.bin", "link.bin"):
        model = model_of([gemm()], {"W": external("W", W, "model.onnx.data", offset=16,
                                                  length=48),
                                    "b": external("b", B, bias_location)})
        path = write(tmp_path, model, "model.onnx")
        network = mlpinfer.load(path)
        np.testing.assert_array_equal(network.layers[0].weights, W)
        np.testing.assert_array_equal(network.layers[0].bias, B)
        if bias_location != "link.bin":  # onnx.load refuses every symbolic link
            loaded = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
            np.testing.assert_array_equal(network.layers[0].weights, loaded["W"])
            np.testing.assert_array_equal(network.layers[0].bias, loaded["b"])


def test_external_data_counts_as_part_of_the_file_for_the_budget(tmp_path):
    """A 36 MB data file beside a model of 48 KB loads with the default
    budget (the model's size with its data, not 100 times the .onnx alone)."""
    big = np.ones((784, 12_000), np.float32)
    (tmp_path / "big.onnx.data").write_bytes(big.tobytes())
    model = model_of([gemm()], {"W": external("W", big, "big.onnx.data"),
                                "b": np.zeros(12_000, np.float32)}, inputs=784)
    path = write(tmp_path, model, "big.onnx")
    assert path.stat().st_size < 100_000
    assert mlpinfer.load(path).layers[0].weights.shape == (784, 12_000)


@pytest.mark.parametrize(
    ("location", "match"),
    [
        ("../outside.bin", "location '../outside.bin' contains '..'"),
        ("sub/../../outside.bin", "contains '..'"),
        ("/dev/zero", "location '/dev/zero' is absolute"),
        ("C:\\weights.bin", "is absolute"),
        ("link-out.bin", "location 'link-out.bin' leads outside the model's folder"),
        ("link-zero.bin", ("location 'link-zero.bin' leads outside the model's folder .* "
                          r"\(to '/dev/zero'\)")),
        ("missing.bin", "cannot open its external data file .*missing.bin.*No such file"),
        ("folder", "its external data file .*folder' is a directory, not a regular file"),
        ("", "external data without a location"),
    ],
    ids=["dotdot", "dotdot-inside", "absolute", "windows-drive", "symlink-out",
         "symlink-dev-zero", "missing", "directory", "no-location"],
)
def test_external_data_outside_the_folder_or_not_a_file_is_refused(tmp_path, location, match):
    (tmp_path / "outside.bin").write_bytes(W.tobytes())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "folder").mkdir()
    (tmp_path / "model" / "link-out.bin").symlink_to(tmp_path / "outside.bin")
    (tmp_path / "model" / "link-zero.bin").symlink_to("/dev/zero")
    refused(tmp_path / "model", external_model(external("W", W, location)), match)


@pytest.mark.parametrize(
    ("offset", "length", "match"),
    [
        (64, 48, (r"offset 64 \+ length 48 lies beyond the end of its external data file "
                 r".*w.bin' \(64 bytes\)")),
        (1 << 62, 48, "lies beyond the end"),
        (0, 44, r"external data of 44 bytes in 'w.bin'; its shape and type need 48"),
        (0, 1 << 40, "external data of 1099511627776 bytes"),
        (None, None, r"holds 64 bytes from offset 0; its shape and type need 48"),
        ("-4", 48, "offset '-4' is not a non-negative integer"),
        ("0x10", 48, "offset '0x10' is not a non-negative integer"),
        (0, "48.0", "length '48.0' is not a non-negative integer"),
    ],
    ids=["offset-at-end", "offset-huge", "length-short", "length-huge", "no-length-rest",
         "negative-offset", "hex-offset", "float-length"],
)
def test_external_extent_must_be_what_the_tensor_declares(tmp_path, offset, length, match):
    (tmp_path / "w.bin").write_bytes(W.tobytes() + bytes(16))  # 64 bytes
    refused(tmp_path, external_model(external("W", W, "w.bin", offset=offset, length=length)),
            match)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    os.mkfifo(tmp_path / "fifo.bin")
    path = write(tmp_path, external_model(external("W", W, "fifo.bin")))
    refused_in_fresh_process(path, match="fifo.bin' is a FIFO, not a regular file")


def test_a_device_in_the_folder_is_refused(tmp_path):
    try:
        os.mknod(tmp_path / "zero.bin", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except (AttributeError, OSError) as error:
        pytest.skip(f"cannot make a device file here ({error})")
    refused(tmp_path, external_model(external("W", W, "zero.bin")),
            "zero.bin' is a character device, not a regular file")


def test_huge_external_tensors_are_refused_before_reading(tmp_path):
    """4 TiB declared, and the file to match in a sparse file: the budget refuses it
    before a byte is read or allocated."""
    huge = external("W", W, "huge.bin", length=4 << 40)
    del huge.dims[:]
    huge.dims.extend([1 << 20, 1 << 20])
    with open(tmp_path / "huge.bin", "wb") as stream:
        stream.truncate(4 << 40)
    path = write(tmp_path, external_model(huge))
    refused_in_fresh_process(path, match=r"needs 4398046511104 bytes .*budget")


def test_one_external_tensor_used_many_times_counts_per_use(tmp_path):
    square = np.zeros((1000, 1000), np.float32)
    (tmp_path / "w.bin").write_bytes(square.tobytes())
    nodes = [helper.make_node("Gemm", ["x" if i == 0 else f"h{i}", "W", "b"],
                              ["y" if i == 1499 else f"h{i + 1}"], name=f"g{i}")
             for i in range(1500)]
    path = write(tmp_path, model_of(nodes, {"W": external("W", square, "w.bin"),
                                            "b": np.zeros(1000, np.float32)}, inputs=1000))
    refused_in_fresh_process(
        path, match=r"input 1 \('W'\) of node #\d+ needs 4000000 bytes.*budget")


def test_a_model_naming_too_many_external_files_is_refused(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc")]
    initializers = {"W": W, "b": B}
    for i in range(1001):
        initializers[f"unused{i}"] = external(f"unused{i}", B, f"b{i}.bin")
    refused(tmp_path, model_of(nodes, initializers),
            "initializer 'unused1000': expected at most 1000 external data files")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: setattr(t, "raw_data", W.tobytes()), "expected external data only with"),
        (lambda t: t.external_data.add(key="basepath", value="/"),
         "unknown external_data key 'basepath'"),
        (lambda t: t.external_data.add(key="location", value="w.bin"),
         "external_data gives 'location' twice"),
        (lambda t: setattr(t, "data_location", TensorProto.DEFAULT),
         "expected external data only with data_location EXTERNAL"),
    ],
    ids=["raw-data-too", "basepath", "location-twice", "not-marked-external"],
)
def test_external_declarations_must_be_consistent(tmp_path, change, match):
    (tmp_path / "w.bin").write_bytes(W.tobytes())
    weights = external("W", W, "w.bin")
    change(weights)
    refused(tmp_path, external_model(weights), match)


def test_a_model_in_memory_has_no_folder_for_external_data(tmp_path):
    (tmp_path / "w.bin").write_bytes(W.tobytes())
    model = external_model(external("W", W, "w.bin"))
    with pytest.raises(WeightsError, match=r"keeps its data in the external file 'w\.bin', which "
                                           "a model in memory has no folder to read from"):
        from_onnx(model)


def test_segments_and_sparse_initializers_are_refused(tmp_path):
    weights = numpy_helper.from_array(W, "W")
    weights.segment.begin = 0
    weights.segment.end = 6
    refused(tmp_path, model_of([gemm()], {"W": weights, "b": B}), "a segment")
    model = model_of([gemm()], {"W": W, "b": B})
    model.graph.sparse_initializer.add()
    refused(tmp_path, model, "sparse initializers are not supported")


# --------------------------------------------------------------------------- graphs


def constant(value_attribute, out="k"):
    return helper.make_node("Constant", [], [out], name="const", **value_attribute)


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([gemm(alpha="two")], "attribute alpha of Gemm at node #0 'fc' is STRING; expected FLOAT"),
        ([gemm(transB=1.5)], "attribute transB of Gemm at node #0 'fc' is FLOAT; expected INT"),
        ([gemm(weights="x")], ("Gemm at node #0 'fc': expected a constant as 'x', found a value "
                              "computed from the input")),
        ([helper.make_node("Gemm", ["x"], ["y"], name="fc")],
         r"multiplies the running value, not transposed \(transA=0\), by constants"),
        ([helper.make_node("MatMul", ["x"], ["y"], name="mm")], "MatMul at node #0 'mm'"),
        ([helper.make_node("Div", ["x", "zero"], ["s"], name="div"),
          helper.make_node("Gemm", ["s", "W", "b"], ["y"], name="fc")],
         r"Div at node #0 'div': supported only when it divides by finite non-zero numbers"),
        ([helper.make_node("If", ["x"], ["y"], name="branch")], "unsupported op If"),
        ([constant({"value_float": 1.0, "value_int": 2})], "has 2 values; expected one"),
        ([helper.make_node("Reshape", ["x", "shape"], ["r"], name="rs"), gemm("W", "b", "y")],
         "reshapes to \\(batch, features\\)"),
        ([helper.make_node("Shape", ["x"], ["s"], name="shape"),
          helper.make_node("Gather", ["s", "nine"], ["g"], name="gather", axis=0)],
         "Gather at node #1 'gather': supported only when it indexes within 2 entries"),
        ([helper.make_node("Erf", ["x"], ["e"], name="erf"),
          helper.make_node("Pow", ["e", "big"], ["p"], name="pow"),
          helper.make_node("Gemm", ["p", "W", "b"], ["y"], name="fc")],
         "Pow at node #1 'pow': the elementwise ops Erf, Pow on the running value are neither"),
        # Found by fuzz/fuzz_onnx.py: a Mul of one input escaped as a TypeError.
        ([helper.make_node("Mul", ["x"], ["m"], name="mul"), helper.make_node("Gemm", ["m", "W", "b"], ["y"], name="fc")],
         r"Mul at node #0 'mul': supported only when it has 2 inputs \(found 1\)"),
        ([helper.make_node("Erf", ["x", "x"], ["e"], name="erf"), helper.make_node("Gemm", ["e", "W", "b"], ["y"], name="fc")],
         r"Erf at node #0 'erf': supported only when it has 1 input \(found 2\)"),
    ],
    ids=["alpha-string", "transB-float", "weights-are-input", "gemm-one-input",
         "matmul-one-input", "div-by-zero", "if", "constant-two-values", "reshape-float",
         "gather-beyond", "pow-1000", "mul-one-input", "erf-two-inputs"],
)
def test_graphs_we_cannot_run_are_refused(tmp_path, nodes, match):
    init = {"W": W, "b": B, "zero": np.float32(0), "shape": np.array([0.5, 4.0], np.float32),
            "nine": np.array(9, np.int64), "big": np.float32(1000)}
    refused(tmp_path, model_of(nodes, init), match)


REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzz" / "regressions"


@pytest.mark.parametrize("name", sorted(p.name for p in REGRESSIONS.glob("*.onnx")))
def test_fuzz_finding_is_refused(tmp_path, name):
    """Inputs that fuzz/ found escaping as another exception type; see SECURITY.md."""
    path = tmp_path / name
    path.write_bytes((REGRESSIONS / name).read_bytes())
    with pytest.raises(WeightsError):
        mlpinfer.load(path)


def doubling(op, count, *, first="x"):
    """``count`` nodes each combining the previous value with itself."""
    return [helper.make_node(op, [first if i == 0 else f"v{i}"] * 2, [f"v{i + 1}"],
                             name=f"n{i}", **({"axis": 0} if op == "Concat" else {}))
            for i in range(count)]


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        # x^(2^60) as a polynomial would have a degree of 2^60.
        ([*doubling("Mul", 60), helper.make_node("Gemm", ["v60", "W", "b"], ["y"], name="fc")],
         (r"Mul at node #59 'n59': the elementwise ops Mul, Mul, .*, \.\.\. \(60 ops\) on the "
         "running value are neither an activation")),
        ([helper.make_node("Shape", ["x"], ["s"], name="shape"),
          *doubling("Concat", 60, first="s")],
         "Concat at node #3 'n2': supported only when it joins 1-D shapes into at most 8"),
        ([helper.make_node("Erf", ["x" if i == 0 else f"e{i}"], [f"e{i + 1}"], name=f"erf{i}")
          for i in range(5000)], "more than 64 elementwise ops in a row"),
    ],
    ids=["square-60-times", "concat-doubling", "erf-5000"],
)
def test_elementwise_and_shape_bombs_are_refused_quickly(tmp_path, nodes, match):
    path = write(tmp_path, model_of(nodes, {"W": W, "b": B}))
    refused_in_fresh_process(path, match=match)


def test_an_unknown_input_type_is_named(tmp_path):
    refused(tmp_path, model_of([gemm()], {"W": W, "b": B}, elem=87),
            "input 'x' has element type unknown type 87; expected FLOAT or DOUBLE")


@pytest.mark.parametrize(
    ("props", "match"),
    [
        ({"mlpinfer.pixel_scale": '"1/255"'}, "'mlpinfer.pixel_scale' must be null or a number"),
        ({"mlpinfer.pixel_scale": "NaN"}, "'mlpinfer.pixel_scale' must be null or a number"),
        ({"mlpinfer.pixel_scale": "1e39"}, "'mlpinfer.pixel_scale' must be null or a number"),
        ({"mlpinfer.pixel_scale": "true"}, "'mlpinfer.pixel_scale' must be null or a number"),
        ({"mlpinfer.pixel_scale": "1/255"}, "corrupt metadata_props 'mlpinfer.pixel_scale'"),
        ({"mlpinfer.pixel_scale": "[" * 100_000}, "corrupt metadata_props"),
        ({"mlpinfer.classes": '{"a": 1}'}, "'mlpinfer.classes' must be null or a list"),
        ({"mlpinfer.classes": "[[0], [1], [2]]"}, "'mlpinfer.classes' must be null or a list"),
        ({"mlpinfer.classes": '["a", "b"]'}, "got 2 classes; 3 outputs needs 3"),
        ({"mlpinfer.classes": '[1, "a", 2]'}, "classes must be a 1-D list"),
        ({"mlpinfer.classes": "[" + "1, " * 400_000 + "1]"}, "of at most 1048576 bytes"),
    ],
)
def test_recorded_settings_of_the_wrong_kind(tmp_path, props, match):
    model = model_of([gemm()], {"W": W, "b": B})
    helper.set_model_props(model, props)
    refused(tmp_path, model, match)


def test_recorded_settings_twice_are_refused(tmp_path):
    model = model_of([gemm()], {"W": W, "b": B})
    for value in ("1.0", "0.5"):
        model.metadata_props.add(key="mlpinfer.pixel_scale", value=value)
    refused(tmp_path, model, "'mlpinfer.pixel_scale' once, found it twice")


# --------------------------------------------------------------------------- protobuf


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deeply_nested_graph(depth: int) -> bytes:
    """A ModelProto whose graph's node holds a graph attribute holding ... ``depth`` deep."""
    graph = b""
    for _ in range(depth):
        attribute = field(1, b"g") + field(6, graph)  # AttributeProto: name, g
        node = field(4, b"If") + field(5, attribute)  # NodeProto: op_type, attribute
        graph = field(1, node)  # GraphProto: node
    return b"\x08\x08" + field(7, graph)  # ModelProto: ir_version 8, graph


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x08\x08\x12\xff\xff\xff\xff\x0f", "not a readable ONNX model"),
        (b"\x08\x08\x3a\x05\x0a\x03", "not a readable ONNX model"),
        (b"\x08\x08\x12\x03abc", "expected one graph input, got 0"),
        (deeply_nested_graph(5000), "not a readable ONNX model"),
    ],
    ids=["length-beyond-the-file", "truncated-graph", "empty-graph", "nested-5000"],
)
def test_broken_protobuf(tmp_path, data, match):
    refused(tmp_path, data, match)


def test_corruptions_load_what_the_corrupt_file_says_or_nothing(tmp_path):
    """ONNX has no checksum: a changed byte inside a weight changes the weight. What
    loads must be what onnx.numpy_helper reads from the same corrupt file."""
    data = model_of([gemm()], {"W": W, "b": B}).SerializeToString()
    for variant in corruptions(data):
        try:
            network = mlpinfer.load(write(tmp_path, variant))
        except WeightsError:
            continue
        initializers = onnx.load_from_string(variant).graph.initializer
        tensors = {t.name: numpy_helper.to_array(t) for t in initializers}
        np.testing.assert_array_equal(network.layers[0].weights, tensors["W"])
        np.testing.assert_array_equal(network.layers[0].bias, tensors["b"])
