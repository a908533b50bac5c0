"""Hostile and broken .keras files: each refused with our error, naming the file.

Files are made here (`framework_files`: the config as JSON, the weights with h5py),
without Keras; Keras itself is used only to check that a file it saved loads as
``keras.saving.load_model`` reads it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import support
from framework_files import (
    corruptions,
    dense,
    dense_weights,
    h5_bytes,
    keras_config,
    keras_layer,
    keras_zip,
    zip_bytes,
)
from support import assert_refused, refused_in_fresh_process

import mlpinfer
from mlpinfer import WeightsError

h5py = pytest.importorskip("h5py")

RNG = np.random.default_rng(0)
KERNEL = RNG.standard_normal((6, 4)).astype(np.float32)
BIAS = RNG.standard_normal(4).astype(np.float32)


def write(tmp_path, data: bytes, name: str = "hostile.keras"):
    return support.write(tmp_path / name, data)


def refused(tmp_path, data: bytes, match: str, **options) -> None:
    assert_refused(tmp_path, data, match, name="hostile.keras", **options)


def one_dense(**config) -> dict:
    return keras_config(6, dense(4, "relu", **config))


# --------------------------------------------------------------------------- benign


def test_our_file_loads_what_it_says(tmp_path):
    config = keras_config((2, 3), keras_layer("Rescaling", scale=0.5, offset=0.0),
                          keras_layer("Flatten", data_format="channels_last"),
                          dense(4, "tanh"), keras_layer("Dropout", rate=0.5),
                          dense(2, "softmax", use_bias=False))
    second = RNG.standard_normal((4, 2)).astype(np.float32)
    path = write(tmp_path, keras_zip(config, dense_weights((KERNEL, BIAS), (second, None))))
    network = mlpinfer.load(path)
    assert network.activations == ("tanh", "softmax")
    assert network.input_scale == 0.5
    np.testing.assert_array_equal(network.layers[0].weights, KERNEL)
    np.testing.assert_array_equal(network.layers[0].bias, BIAS)
    np.testing.assert_array_equal(network.layers[1].weights, second)
    np.testing.assert_array_equal(network.layers[1].bias, np.zeros(2))


# Keras's torch backend trips NumPy 2's __array__ deprecation in save(); Keras's to fix.
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_a_keras_file_loads_what_keras_reads(tmp_path):
    """What loads equals what the file says, read independently by Keras."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(4)
    inputs = keras.Input((7,))
    inner = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="sigmoid")])
    hidden = keras.layers.Activation("relu")(keras.layers.Dense(5)(inputs))
    model = keras.Model(inputs, inner(hidden))
    path = tmp_path / "functional.keras"
    model.save(path)
    network = mlpinfer.load(path)
    assert network.activations == ("relu", "sigmoid")
    reread = keras.saving.load_model(path)
    variables = reread.get_weights()  # kernel, bias of each Dense, in order
    pairs = zip(variables[::2], variables[1::2], strict=True)
    for layer, (kernel, bias) in zip(network.layers, pairs, strict=True):
        np.testing.assert_array_equal(layer.weights, kernel)
        np.testing.assert_array_equal(layer.bias, bias)


def test_a_compressed_chunked_dataset_reads(tmp_path):
    def build(h5):
        group = h5.create_group("layers/dense/vars")
        group.create_dataset("0", data=KERNEL, chunks=(3, 2), compression="gzip", shuffle=True)
        group.create_dataset("1", data=BIAS)

    network = mlpinfer.load(write(tmp_path, keras_zip(one_dense(), h5_bytes(build))))
    np.testing.assert_array_equal(network.layers[0].weights, KERNEL)


# --------------------------------------------------------------------------- bombs


def test_a_huge_dense_layer_is_refused_by_the_budget_before_reading(tmp_path):
    """Dense(30000) on 30,000 inputs, declared in a few hundred bytes of config."""
    path = write(tmp_path, keras_zip(keras_config(30000, dense(30000)), h5_bytes(lambda h5: None)))
    refused_in_fresh_process(path,
                             match=r"layer 0 'dense' \(Dense\) needs 7200240000 bytes.*budget")


def test_a_dataset_of_gigabytes_holding_nothing_is_refused(tmp_path):
    """An HDF5 dataset of 3.6 GiB that stores no data (it would read as fill values)."""

    def build(h5):
        h5.create_group("layers/dense/vars").create_dataset("0", shape=(30000, 30000),
                                                            dtype="f4")

    path = write(tmp_path, keras_zip(one_dense(), h5_bytes(build)))
    refused_in_fresh_process(
        path, match=r"expected shape \(6, 4\) from the config, found \(30000, 30000\)")


@pytest.mark.parametrize("chunks", [None, (3, 2)])
def test_a_dataset_of_the_declared_shape_holding_nothing_is_refused(tmp_path, chunks):
    def build(h5):
        group = h5.create_group("layers/dense/vars")
        group.create_dataset("0", shape=(6, 4), dtype="f4", chunks=chunks)
        group.create_dataset("1", data=BIAS)

    refused(tmp_path, keras_zip(one_dense(), h5_bytes(build)),
            r"vars/0'.*the file stores 0.*fill value" if chunks is None
            else r"expected 4 chunks of \(3, 2\) for shape \(6, 4\), the file stores 0")


def test_a_config_of_gigabytes_is_refused_before_inflating(tmp_path):
    """config.json declaring 1.5 GiB (Keras inflated it: 3.5 GB, then loaded)."""
    data = keras_zip(one_dense(), dense_weights((KERNEL, BIAS)),
                     declared={"config.json": 1536 << 20})
    path = write(tmp_path, data)
    refused_in_fresh_process(path, match=r"'config.json'.*budget")
    with pytest.raises(WeightsError, match=r"expected a config.json of at most 16777216 bytes, "
                                           r"found one declaring 1610612736"):
        mlpinfer.load(path, max_bytes=4 << 30)


def test_members_that_would_extract_gigabytes_are_refused(tmp_path):
    members = {f"assets/{i}": bytes(100) for i in range(20)}
    declared = {f"assets/{i}": 100 << 20 for i in range(20)}
    data = zip_bytes({"config.json": json.dumps(one_dense()).encode(),
                      "model.weights.h5": dense_weights((KERNEL, BIAS)), **members},
                     declared=declared)
    path = write(tmp_path, data)
    refused_in_fresh_process(path, match=r"'assets/\d+'.*budget")


# --------------------------------------------------------------------------- code


FOREIGN = {"module": "my_package.layers", "class_name": "MyDense", "config": {},
           "registered_name": "my_package>MyDense"}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (keras_config(6, keras_layer("Lambda", function={"class_name": "__lambda__",
                                                         "config": {"code": "4wEAAA=="}})),
         r"names '__lambda__' from module 'None'.*custom code is never loaded"),
        (keras_config(6, FOREIGN),
         r"names 'MyDense' from module 'my_package.layers'.*never loaded"),
        (keras_config(6, {**dense(4), "registered_name": "evil>Dense"}),
         "registered as 'evil>Dense'"),
        (one_dense(kernel_initializer={"module": "os", "class_name": "system",
                                       "config": {}, "registered_name": None}),
         r"names 'system' from module 'os'"),
        (keras_config(6, dense(4, activation={"module": "builtins", "class_name": "function",
                                              "config": "eval", "registered_name": "eval"})),
         r"names 'function' from module 'builtins'"),
        (keras_config(6, keras_layer("Conv2D", filters=2)), r"unsupported layer Conv2D at layer"),
        (keras_config(6, dense(4, "relu6")), r"unsupported activation 'relu6'; supported: "),
        (keras_config(6, dense(4, "relu", lora_rank=4)), "quantized or LoRA"),
        (keras_config(6, dense(4, "relu", kernel_size=3)), "unsupported option 'kernel_size'"),
        ({**keras_config(6, dense(4)), "class_name": "MyModel"}, "the model is a 'MyModel'"),
    ],
    ids=["lambda", "custom-layer", "registered-name", "initializer-module", "activation-fn",
         "conv", "relu6", "lora", "unknown-option", "custom-model"],
)
def test_code_in_the_config_is_refused_never_resolved(tmp_path, config, match):
    refused(tmp_path, keras_zip(config, dense_weights((KERNEL, BIAS))), match)


def test_a_file_loads_without_keras_or_torch_and_writes_nothing(tmp_path):
    path = write(tmp_path, keras_zip(keras_config(6, dense(4, "relu6")),
                                     dense_weights((KERNEL, BIAS))))
    refused_in_fresh_process(path, match="unsupported activation 'relu6'")


def norm_weights(*groups: tuple[str, list[np.ndarray]]) -> bytes:
    """``model.weights.h5`` with the variables of each named layer group, in order."""

    def build(h5) -> None:
        for name, arrays in groups:
            group = h5.create_group(f"layers/{name}/vars")
            for index, array in enumerate(arrays):
                group.create_dataset(str(index), data=array)

    return h5_bytes(build)


def test_normalization_layers_load_what_the_file_says(tmp_path):
    """BatchNormalization folded into the Dense before it, LayerNormalization kept on it,
    Normalization folded into the Dense after it; computed here in float64."""
    stats = [RNG.uniform(0.5, 2, 4).astype(np.float32) for _ in range(4)]
    gamma, beta = RNG.uniform(0.5, 2, 4).astype(np.float32), RNG.normal(0, 1, 4).astype(np.float32)
    mean = RNG.normal(0, 1, 6).astype(np.float32)
    variance = RNG.uniform(0.5, 2, 6).astype(np.float32)
    config = keras_config(6, keras_layer("Normalization", axis=[-1], invert=False, mean=None,
                                         variance=None),
                          dense(4), keras_layer("BatchNormalization", axis=-1, epsilon=0.01,
                                                center=True, scale=True),
                          keras_layer("LayerNormalization", axis=[-1], epsilon=0.001,
                                      center=True, scale=True, rms_scaling=False),
                          keras_layer("Activation", activation="relu"))
    weights = norm_weights(("normalization", [mean, variance, np.array(7, np.int32)]),
                           ("dense", [KERNEL, BIAS]), ("batch_normalization", stats),
                           ("layer_normalization", [gamma, beta]))
    network = mlpinfer.load(write(tmp_path, keras_zip(config, weights)))
    x = RNG.standard_normal((7, 6))
    h = (x - mean) / np.sqrt(variance.astype(np.float64)) @ KERNEL + BIAS
    h = (h - stats[2]) / np.sqrt(stats[3] + 0.01) * stats[0] + stats[1]
    h = (h - h.mean(axis=1, keepdims=True)) / np.sqrt(h.var(axis=1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(network.predict(x), np.maximum(h * gamma + beta, 0), atol=1e-5)


@pytest.mark.parametrize(
    ("layers", "weights", "match"),
    [
        ([dense(4), keras_layer("BatchNormalization", axis=0)], [],
         r"layer 1 'batchnormalization' \(BatchNormalization\): axis=0; only the last axis"),
        ([dense(4), keras_layer("BatchNormalization", renorm=True)], [], "renorm"),
        ([dense(4), keras_layer("LayerNormalization", rms_scaling=True)], [], "rms_scaling=True"),
        ([keras_layer("Normalization", invert=True, mean=0.0, variance=1.0), dense(4)], [],
         "invert=True"),
        ([dense(4), keras_layer("ReLU", threshold=0.5)], [], "threshold=0.5; only ReLU"),
        ([dense(4), keras_layer("LeakyReLU", negative_slope="x")], [], "'x'|x; expected a number"),
        ([dense(4), keras_layer("BatchNormalization", epsilon=0.001, momentum=0.9,
                                center=True, scale=True, secret=1)], [],
         "unsupported option 'secret'"),
        ([dense(4), keras_layer("BatchNormalization")],
         [("batch_normalization", [np.ones(4, np.float32)] * 3 + [np.ones(5, np.float32)])],
         r"vars/3'.*expected shape \(4,\) from the config, found \(5,\)"),
        ([dense(4), keras_layer("BatchNormalization")],
         [("batch_normalization", [np.ones(4, np.float32)] * 3)], r"vars/3'.*not found"),
        ([keras_layer("Normalization", mean=[1.0, 2.0], variance=[1.0, 1.0]), dense(4)], [],
         r"values of shape \(2,\); expected numbers broadcasting over the input \(None, 6\)"),
        ([keras_layer("Normalization", mean=[0.0] * 6, variance=[-1.0] * 6), dense(4)], [],
         "a negative variance"),
    ],
    ids=["bn-axis", "bn-renorm", "rms-scaling", "invert", "relu-threshold", "slope-str",
         "unknown-option", "bn-shape", "bn-missing", "normalization-shape", "negative-variance"],
)
def test_normalization_layers_refused_naming_what_is_wrong(tmp_path, layers, weights, match):
    config = keras_config(6, *layers)
    refused(tmp_path, keras_zip(config, norm_weights(("dense", [KERNEL, BIAS]), *weights)), match)


ODD_VALUES = [None, "x", [], {}, [1, 2], [[1], [2, 3]], True, -1, 0, 1e308, {"a": [1]}]
OPTION_LAYERS = [
    ("BatchNormalization", {"axis": -1, "epsilon": 0.001, "center": True, "scale": True,
                            "renorm": False, "synchronized": False}),
    ("LayerNormalization", {"axis": [-1], "epsilon": 0.001, "center": True, "scale": True,
                            "rms_scaling": False}),
    ("Normalization", {"axis": [-1], "invert": False, "mean": [0.5] * 4,
                       "variance": [2.0] * 4}),
    ("Rescaling", {"scale": 0.5, "offset": 0.25}),
    ("LeakyReLU", {"negative_slope": 0.1}),
    ("ELU", {"alpha": 0.5}),
    ("ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}),
    ("Softmax", {"axis": -1}),
    ("Activation", {"activation": "gelu"}),
]


# A scale of 1e308 folded into a Dense overflows in the Chain (formats/_chain.py warns),
# and Network then refuses the infinite weights.
@pytest.mark.filterwarnings("ignore:overflow encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize(("kind", "options"), OPTION_LAYERS,
                         ids=[kind for kind, _ in OPTION_LAYERS])
def test_every_option_of_every_new_layer_reads_or_is_refused(tmp_path, kind, options):
    """Each option of the new layers set to values of every JSON type: the file loads, or
    is refused with a WeightsError; nothing else escapes."""
    rng = np.random.default_rng(1)
    stats = [rng.uniform(0.5, 2.0, 4).astype(np.float32) for _ in range(4)]
    group = {"BatchNormalization": [("batch_normalization", stats)],
             "LayerNormalization": [("layer_normalization", stats[:2])]}.get(kind, [])
    for key in options:
        for value in ODD_VALUES:
            layer = keras_layer(kind, **{**options, key: value})
            config = keras_config(6, dense(4), layer, dense(3, name="dense_1"))
            weights = norm_weights(("dense", [KERNEL, BIAS]), *group,
                                   ("dense_1", [np.ones((4, 3), np.float32), BIAS[:3]]))
            path = write(tmp_path, keras_zip(config, weights))
            try:
                network = mlpinfer.load(path)
            except WeightsError:
                continue
            assert network.predict(np.ones((2, 6))).shape == (2, 3), (kind, key, value)


def test_per_feature_scaling_of_a_huge_input_is_refused_by_the_budget_first(tmp_path):
    """A Rescaling per column of an input of 10^10 features would be 80 GB once
    broadcast: the budget refuses the Dense it flows into before anything is broadcast."""
    scale = [1.0] * 99_999 + [2.0]
    config = keras_config((100_000, 100_000), keras_layer("Rescaling", scale=scale),
                          keras_layer("Flatten", data_format="channels_last"), dense(4))
    path = write(tmp_path, keras_zip(config, dense_weights((KERNEL, BIAS))))
    refused_in_fresh_process(path, match=r"layer 2 'dense' \(Dense\) needs \d{12} bytes.*budget")


# --------------------------------------------------------------------------- HDF5


def other_file(tmp_path):
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as h5:
        h5.create_dataset("w", data=KERNEL)
    return outside


def external_link(tmp_path):
    outside = other_file(tmp_path)

    def build(h5):
        group = h5.create_group("layers/dense/vars")
        group["0"] = h5py.ExternalLink(str(outside), "w")
        group.create_dataset("1", data=BIAS)

    return h5_bytes(build)


def soft_link(tmp_path):
    def build(h5):
        group = h5.create_group("layers/dense/vars")
        group.create_dataset("real", data=KERNEL)
        group["0"] = h5py.SoftLink("/layers/dense/vars/real")
        group.create_dataset("1", data=BIAS)

    return h5_bytes(build)


def external_storage(tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(KERNEL.tobytes())

    def build(h5):
        group = h5.create_group("layers/dense/vars")
        group.create_dataset("0", shape=(6, 4), dtype="<f4", external=[(str(raw), 0, 96)])
        group.create_dataset("1", data=BIAS)

    return h5_bytes(build)


def virtual(tmp_path):
    outside = other_file(tmp_path)

    def build(h5):
        layout = h5py.VirtualLayout(shape=(6, 4), dtype="f4")
        layout[:] = h5py.VirtualSource(str(outside), "w", shape=(6, 4))
        group = h5.create_group("layers/dense/vars")
        group.create_virtual_dataset("0", layout)
        group.create_dataset("1", data=BIAS)

    return h5_bytes(build)


def with_dataset(**options):
    def make(tmp_path):
        def build(h5):
            group = h5.create_group("layers/dense/vars")
            group.create_dataset("0", **options)
            group.create_dataset("1", data=BIAS)

        return h5_bytes(build)

    return make


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (external_link, r"reached through a ExternalLink; only hard links are followed"),
        (soft_link, "reached through a SoftLink"),
        (external_storage, "stored in external files"),
        (virtual, "a virtual dataset"),
        (with_dataset(data=KERNEL, chunks=(3, 2), compression="lzf"), "HDF5 filter 32000"),
        (with_dataset(data=np.zeros((7, 4), np.float32)),
         r"expected shape \(6, 4\) from the config, found \(7, 4\)"),
        (with_dataset(data=KERNEL.astype(np.int32)), "expected float16, float32 or float64"),
        (with_dataset(data=KERNEL.view(np.complex64)), r"expected shape"),
        (lambda tmp_path: dense_weights((KERNEL, None)), r"vars/1'.*not found"),
        (lambda tmp_path: b"\x89HDF\r\n\x1a\n" + bytes(200), "not a readable HDF5 file"),
        (lambda tmp_path: b"not hdf5 at all", "not a readable HDF5 file"),
    ],
    ids=["external-link", "soft-link", "external-storage", "virtual", "lzf-filter",
         "larger-than-declared", "int32", "complex", "missing-bias", "corrupt-superblock",
         "garbage"],
)
def test_datasets_read_only_from_the_file_as_declared(tmp_path, make, match):
    refused(tmp_path, keras_zip(one_dense(), make(tmp_path)), match)


def test_an_external_link_is_refused_without_opening_its_target(tmp_path):
    weights = external_link(tmp_path)
    (tmp_path / "outside.h5").write_bytes(b"")  # opening it would now fail differently
    refused(tmp_path, keras_zip(one_dense(), weights), "ExternalLink")


# --------------------------------------------------------------------------- config


def branching() -> dict:
    config = keras_config(6, dense(4), dense(4))
    config["class_name"] = "Functional"
    layers = config["config"]["layers"]
    names = ["input_layer", "dense", "dense_1"]
    for layer, name in zip(layers, names, strict=True):
        layer["name"] = name
        layer["config"]["name"] = name
        layer["inbound_nodes"] = []
    for layer in layers[1:]:
        layer["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": [None, 6], "keras_history": ["input_layer", 0, 0]}}], "kwargs": {}}]
    config["config"]["input_layers"] = [["input_layer", 0, 0]]
    config["config"]["output_layers"] = [["dense_1", 0, 0]]
    return config


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (b"{not json", "config.json is not JSON"),
        (b"\xff\xfe", "config.json is not JSON"),
        (nested(100_000), "config.json is not JSON"),
        (json.dumps(one_dense()).replace("0.0", "NaN").replace('"units": 4', '"units": NaN'),
         "config.json holds NaN"),
        ('{"class_name": "Sequential", "config": {"layers": [], "x": 1' + "0" * 5000 + "}}",
         "config.json is not JSON"),
        ([], "expected 'class_name' in the config"),
        (keras_config(6, dense("4")), "expected 'units' to be an integer, found str"),
        (keras_config(6, dense(True)), "expected 'units' to be an integer, found bool"),
        (keras_config(6, dense(-3)), "-3 units"),
        (keras_config(6, {**dense(4), "config": []}), "expected 'config' to be an object"),
        (keras_config(6, keras_layer("Rescaling", scale=[1.0, 2.0], offset=0.0), dense(4)),
         r"values of shape \(2,\); expected numbers broadcasting over the input \(None, 6\)"),
        (keras_config(6, keras_layer("Rescaling", scale="x", offset=0.0), dense(4)),
         "expected numbers"),
        (keras_config(6, dense(4, "relu"), keras_layer("Rescaling", scale=2.0, offset=0.0)),
         "a feature scaling after the last activation"),
        (keras_config((2, 3), dense(4)), r"input of shape \(None, 2, 3\)"),
        (keras_config((2, 3), keras_layer("Flatten", data_format="channels_first"), dense(4)),
         "reorders the features"),
        (keras_config(0, dense(4)), "expected \\(None, positive sizes"),
        ({**keras_config(6), "config": {"layers": [
            {**keras_config(6)["config"]["layers"][0],
             "config": {"batch_shape": [None, None]}}, dense(4)]}},
         "expected \\(None, positive sizes"),
        (keras_config(6, keras_layer("Dropout", rate=0.1)), "has no Dense layer"),
        (keras_config(6, dense(4, dtype={"module": "keras", "class_name": "DTypePolicy",
                                         "config": {"name": "mixed_float16"},
                                         "registered_name": None})),
         "dtype policy 'mixed_float16'"),
        (branching(), "does not take the previous layer's output"),
    ],
    ids=["not-json", "not-utf8", "nested-100k", "nan", "5000-digits", "list", "units-str",
         "units-bool", "units-negative", "config-list", "per-channel", "scale-str",
         "late-rescaling", "rank-3-dense", "channels-first", "zero-input", "unknown-input",
         "no-dense", "mixed-float16", "branching"],
)
def test_configs_that_do_not_describe_a_chain_we_can_check(tmp_path, config, match):
    refused(tmp_path, keras_zip(config, dense_weights((KERNEL, BIAS))), match)


def test_corruptions_load_the_written_weights_or_nothing(tmp_path):
    """Zip CRCs cover config.json and the HDF5 file: a changed byte is refused, or (a
    timestamp) loads exactly the written weights; never other weights."""
    data = keras_zip(one_dense(), dense_weights((KERNEL, BIAS)))
    for variant in corruptions(data):
        try:
            network = mlpinfer.load(write(tmp_path, variant))
        except WeightsError:
            continue
        np.testing.assert_array_equal(network.layers[0].weights, KERNEL)
        np.testing.assert_array_equal(network.layers[0].bias, BIAS)
