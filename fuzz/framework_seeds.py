"""Seeds of fuzz_onnx, fuzz_keras and fuzz_torch (fuzz/seeds.py writes them).

Small valid files in each harness's framing, made by the same factories as the
hostile-file tests (tests/hostile/framework_files.py), without Keras or torch.
"""

from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hostile"))

import framework_files as files
from _members import join

import mlpinfer
from mlpinfer.formats.onnx import write_onnx

_RNG = np.random.default_rng(0)


def _weights(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def onnx_seeds() -> dict[str, bytes]:
    from onnx import TensorProto, helper, numpy_helper

    network = mlpinfer.Network.from_params(
        {"W1": _weights(3, 2), "b1": _weights(2), "W2": _weights(2, 2), "b2": _weights(2)},
        activations=["tanh", "softmax"], input_scale=0.5, pixel_scale=1.0, classes=[3, 7])
    with tempfile.TemporaryDirectory() as scratch:
        write_onnx(network, Path(scratch) / "seed.onnx")
        models = {"written": (Path(scratch) / "seed.onnx").read_bytes()}
    init = [numpy_helper.from_array(_weights(4, 3).astype(np.float16), "W"),
            numpy_helper.from_array(_weights(3).astype(np.float64), "b"),
            numpy_helper.from_array(np.array([0, -1], np.int64), "shape"),
            helper.make_tensor("k", TensorProto.BFLOAT16, [], [2.0])]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Div", ["r", "k"], ["s"]),
             helper.make_node("MatMul", ["s", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["z"]),
             helper.make_node("Relu", ["z"], ["a"]),
             helper.make_node("Constant", [], ["c"],
                              value=numpy_helper.from_array(_weights(3, 2), "c")),
             helper.make_node("Constant", [], ["cb"], value_floats=[1.0, 2.0]),
             helper.make_node("Gemm", ["a", "c", "cb"], ["y"], alpha=0.5, transB=0)]
    graph = helper.make_graph(
        nodes, "seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)],
                              ir_version=8)
    models["ops"] = model.SerializeToString()
    return models


def keras_seeds() -> dict[str, bytes]:
    import json

    config = files.keras_config(
        (2, 3), files.keras_layer("Rescaling", scale=0.5, offset=0.0),
        files.keras_layer("Flatten", data_format="channels_last"), files.dense(4, "tanh"),
        files.keras_layer("Dropout", rate=0.5), files.dense(2, "softmax", use_bias=False))
    weights = files.dense_weights((_weights(6, 4), _weights(4)), (_weights(4, 2), None))
    return {"sequential": join([json.dumps(config).encode(), weights])}


def torch_seeds() -> dict[str, bytes]:
    seeds = {}
    bundle = files.state_dict_file(
        {"0.weight": _weights(4, 3), "0.bias": _weights(4), "2.weight": _weights(2, 4)},
        ["Linear", "ReLU", "Linear", "Softmax"], input_scale=0.25, pixel_scale=1.0,
        classes=["no", "yes"])
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        seeds["bundle"] = join([archive.read("archive/data.pkl")]
                               + [archive.read(f"archive/data/{i}") for i in range(3)])
    view = {"format": "mlpinfer.torch", "version": 1, "architecture": ["Linear", "Tanh"],
            "input_scale": None,
            "state_dict": {"0.weight": files.tensor("0", 16, (2, 3), (1, 2), offset=4),
                           "0.bias": files.tensor("1", 2, (2,), storage="HalfStorage")}}
    seeds["views"] = join([files.pickle_program(view), bytes(64), bytes(4)])
    return seeds
