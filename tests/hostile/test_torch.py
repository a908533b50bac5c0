"""Hostile and broken PyTorch files: each refused with our error, naming the file.

Files are made here (`framework_files`), without torch; torch itself is used only to
check that a benign file loads as ``torch.load`` reads it.
"""

from __future__ import annotations

import numpy as np
import pytest
import support
from framework_files import (
    ORDERED_DICT,
    Call,
    Get,
    Global,
    Persistent,
    Put,
    Raw,
    corruptions,
    pickle_program,
    state_dict_file,
    tensor,
    torch_zip,
    zip_bytes,
)
from support import assert_refused, refused_in_fresh_process

import mlpinfer
from mlpinfer import WeightsError
from mlpinfer.formats.torch import MODULE_OPTIONS

LINEAR = ["Linear", "Sigmoid", "Linear", "Softmax"]


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"0.weight": rng.standard_normal((5, 7)).astype(np.float32),
            "0.bias": rng.standard_normal(5).astype(np.float32),
            "2.weight": rng.standard_normal((3, 5)).astype(np.float32),
            "2.bias": rng.standard_normal(3).astype(np.float32)}


def write(tmp_path, data: bytes, name: str = "hostile.pt"):
    return support.write(tmp_path / name, data)


def bundle_with(state: dict, storages: dict[str, bytes], **fields) -> bytes:
    value = {"format": "mlpinfer.torch", "version": 1, "architecture": ["Linear"],
             "input_scale": None, "state_dict": state, **fields}
    return torch_zip(pickle_program(value), storages)


FLOATS = np.arange(512, dtype="<f4").tobytes()  # a 2 KB storage


# --------------------------------------------------------------------------- benign


def test_our_file_loads_what_it_says(tmp_path):
    weights = arrays()
    path = write(tmp_path, state_dict_file(weights, LINEAR, input_scale=0.5))
    network = mlpinfer.load(path)
    assert network.activations == ("sigmoid", "softmax")
    assert network.input_scale == 0.5
    np.testing.assert_array_equal(network.layers[0].weights, weights["0.weight"].T)
    np.testing.assert_array_equal(network.layers[1].bias, weights["2.bias"])
    assert network.pixel_scale == 0.5  # a bundle from before pixel_scale: the input scale
    assert network.classes is None
    path = write(tmp_path, state_dict_file(weights, LINEAR, input_scale=0.5, pixel_scale=None,
                                           classes=["x", "y", "z"]), "recorded.pt")
    recorded = mlpinfer.load(path)
    assert recorded.pixel_scale is None
    assert recorded.classes.tolist() == ["x", "y", "z"]


def test_a_torch_save_file_loads_what_torch_load_reads(tmp_path):
    """What loads equals what the file says, read independently by torch.load."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(13, 9), nn.Tanh(), nn.Linear(9, 4))
    state = model.state_dict()
    state["2.weight"] = state["2.weight"].T.contiguous().T  # a transposed view in the file
    path = tmp_path / "model.pt"
    torch.save(state, path)
    network = mlpinfer.load(path, architecture=["Linear", "Tanh", "Linear"])
    reread = torch.load(path, weights_only=True)
    for layer, index in zip(network.layers, (0, 2), strict=True):
        np.testing.assert_array_equal(layer.weights, reread[f"{index}.weight"].numpy().T)
        np.testing.assert_array_equal(layer.bias, reread[f"{index}.bias"].numpy())


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_other_float_storages_read_exactly(tmp_path, dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    weight = torch.randn(4, 6, dtype=torch.float64).to(getattr(torch, dtype))
    path = tmp_path / f"{dtype}.pt"
    torch.save({"0.weight": weight, "0.bias": torch.zeros(4, dtype=weight.dtype)}, path)
    network = mlpinfer.load(path, architecture=["Linear"])
    expected = weight.to(torch.float64).numpy().T.astype(np.float32)
    np.testing.assert_array_equal(network.layers[0].weights, expected)


def test_a_big_endian_file_reads_the_same_numbers(tmp_path):
    weight = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    pkl = pickle_program({"0.weight": tensor("0", 12, (3, 4))})
    path = write(tmp_path, torch_zip(pkl, {"0": weight.astype(">f4").tobytes()},
                                     byteorder=b"big"))
    network = mlpinfer.load(path, architecture=["Linear"])
    np.testing.assert_array_equal(network.layers[0].weights, weight.T)


def test_a_view_at_an_offset_reads_its_elements(tmp_path):
    pkl = pickle_program({"0.weight": tensor("0", 512, (2, 3), (1, 2), offset=100)})
    path = write(tmp_path, torch_zip(pkl, {"0": FLOATS}))
    weights = mlpinfer.load(path, architecture=["Linear"]).layers[0].weights
    np.testing.assert_array_equal(weights, [[100, 101], [102, 103], [104, 105]])


# --------------------------------------------------------------------------- bombs


def test_deep_tuple_key_is_refused_before_hashing(tmp_path):
    """A dict key nested 150,000 deep: hashing it overflowed the C stack inside
    torch.load(weights_only=True)."""
    key = Raw(b")" + b"\x85" * 150_000)
    pkl = b"\x80\x02}" + key.data + b"Ns."
    path = write(tmp_path, torch_zip(pkl, {}))
    refused_in_fresh_process(path, match=r"nested more than \d+ deep",
                             options={"architecture": ["Linear"]})


def test_stride_zero_expansion_is_refused(tmp_path):
    """A 2 KB tensor, one float expanded with stride 0 to 20000x20000 (7.9 GB)."""
    pkl = pickle_program({"0.weight": tensor("0", 512, (20000, 20000), (0, 0))})
    path = write(tmp_path, torch_zip(pkl, {"0": FLOATS}))
    refused_in_fresh_process(path, match=r"strides \(0, 0\).*stride 0",
                             options={"architecture": ["Linear"]})


def test_one_tensor_used_by_many_keys_counts_per_use(tmp_path):
    """A 4 MB storage reused by 300 entries through the memo: 1.2 GB of copies."""
    state = {"0.weight": Put(tensor("0", 1 << 20, (1024, 1024)), 1)}
    state.update({f"{i}.weight": Get(1) for i in range(1, 300)})
    pkl = pickle_program(state)
    path = write(tmp_path, torch_zip(pkl, {"0": bytes(4 << 20)}))
    refused_in_fresh_process(path, match=r"budget of this load",
                             options={"architecture": ["Linear"]})


def test_members_declaring_gigabytes_are_refused_before_inflating(tmp_path):
    pkl = pickle_program({"0.weight": tensor("0", 4, (2, 2))})
    data = zip_bytes({"archive/data.pkl": pkl, "archive/data/0": bytes(16),
                      "archive/data/1": bytes(16)},
                     declared={"archive/data/1": 2_000_000_000})
    path = write(tmp_path, data)
    refused_in_fresh_process(path, match=r"'archive/data/1'.*budget",
                             options={"architecture": ["Linear"]})


def test_a_huge_data_pkl_is_refused_before_inflating(tmp_path):
    data = zip_bytes({"archive/data.pkl": b"\x80\x02}."},
                     declared={"archive/data.pkl": 100 << 20})
    path = write(tmp_path, data)
    with pytest.raises(WeightsError, match=r"hostile.pt: expected archive/data.pkl of at "
                                           r"most \d+ bytes, found one declaring 104857600"):
        mlpinfer.load(path, max_bytes=1 << 30)


# --------------------------------------------------------------------------- refusals


def refused(tmp_path, data: bytes, match: str, **options) -> None:
    options.setdefault("architecture", ["Linear"])
    assert_refused(tmp_path, data, match, name="hostile.pt", **options)


@pytest.mark.parametrize(
    ("shape", "stride", "offset", "match"),
    [
        ((4, 4), (1, 1), 0, r"strides \(1, 1\): stride 0, negative or overlapping"),
        ((4, 4), (4, -1), 0, "negative or overlapping"),
        ((3, -2), (1, 1), 0, r"shape \(3, -2\)"),
        ((2, 3), (3, 1), 510, r"reaches element 515; its storage '0' holds 512"),
        ((2, 3), (3, 1), -1, "at offset -1"),
        ((600,), (1,), 0, "reaches element 599"),
    ],
)
def test_views_outside_or_overlapping_their_storage(tmp_path, shape, stride, offset, match):
    pkl = pickle_program({"0.weight": tensor("0", 512, shape, stride, offset=offset)})
    refused(tmp_path, torch_zip(pkl, {"0": FLOATS}), match)


@pytest.mark.parametrize(
    ("storages", "numel", "match"),
    [
        ({"0": bytes(40)}, 512, r"512 elements of FloatStorage need 2048 bytes.*holds 40"),
        ({"0": bytes(4096)}, 512, "holds 4096"),
        ({}, 512, r"storage '0': no member 'archive/data/0'"),
    ],
)
def test_storage_members_must_hold_what_they_declare(tmp_path, storages, numel, match):
    pkl = pickle_program({"0.weight": tensor("0", numel, (2, 2))})
    refused(tmp_path, torch_zip(pkl, storages), match)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"0.weight": tensor("0", 4, (2, 2), storage="LongStorage")},
         r"expected '0.weight' to be a float tensor, found a tensor of LongStorage"),
        ({"0.weight": [1.0, 2.0]}, "found a list"),
        ({"0.weight": Call(Global("os", "system"), ("touch pwned",))},
         r"refusing to load global 'os.system'"),
        ({"0.weight": Call(Global("torch.nn.modules.linear", "Linear"), (2, 2))},
         r"refusing to load global 'torch.nn.modules.linear.Linear'.*state_dict\(\)"),
        ({"0.weight": tensor("0", 4, (2, 2), storage="ComplexFloatStorage")},
         r"refusing to load global 'torch.ComplexFloatStorage'"),
        ({"0.weight": Persistent(("storage", "FloatStorage", "0", "cpu", 4))},
         r"persistent ID that is not torch.save's"),
        ({"0.weight": Call(Global("torch._utils", "_rebuild_tensor_v2"), (1, 2, 3))},
         "a tensor rebuild with 3 arguments"),
        ({"0.weight": Call(Global("torch._utils", "_rebuild_tensor_v2"),
                           (1, 0, (2,), (1,), False, Call(ORDERED_DICT, ())))},
         "rebuilt from something other than a storage"),
        ({"0.weight": Call(ORDERED_DICT, ((("a", 1),),))}, "OrderedDict with arguments"),
        (["not", "a", "dict"], "expected a state_dict .* found a list"),
        ({1: 2}, "dict key of type int"),
        ({"0.weight": Raw(b"\x8f(K\x01\x90")}, "a set"),
    ],
    ids=["int-tensor", "list", "os.system", "pickled-module", "complex-storage",
         "bad-persistent-id", "rebuild-arity", "rebuild-storage", "ordereddict-args",
         "list-top", "int-key", "frozenset"],
)
def test_what_is_not_tensors_in_plain_containers(tmp_path, value, match):
    refused(tmp_path, torch_zip(pickle_program(value), {"0": bytes(32)}), match)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("fields", "options", "match"),
    [
        ({"version": "1"}, {}, "mlpinfer.torch version '1'; this mlpinfer reads version 1"),
        ({"version": 2}, {}, "version 2"),
        ({"architecture": "Linear"}, {}, "'architecture' must be a list of layer names"),
        ({"input_scale": 10 ** 5000}, {}, "'input_scale' must be null or a number"),
        ({"input_scale": 1e39}, {}, "'input_scale' must be null or a number"),
        ({}, {"architecture": ["Linear"]}, "records its architecture and input scale"),
        ({"architecture": ["Conv2d"]}, {}, "unsupported layer 'Conv2d' at entry 0"),
        ({"pixel_scale": "1/255"}, {}, "'pixel_scale' must be null or a number"),
        ({"pixel_scale": float("nan")}, {}, "'pixel_scale' must be null or a number"),
        ({"pixel_scale": True}, {}, "'pixel_scale' must be null or a number"),
        ({"classes": "ab"}, {}, "'classes' must be null or a list of numbers or strings"),
        ({"classes": [[0], [1]]}, {}, "'classes' must be null or a list of numbers or strings"),
        ({"classes": ["a", "b", "c"]}, {}, "got 3 classes; 2 outputs needs 2"),
        ({"classes": ["a", "a"]}, {}, "classes must be distinct"),
    ],
)
def test_bundle_fields_of_the_wrong_kind(tmp_path, fields, options, match):
    state = {"0.weight": tensor("0", 4, (2, 2)), "0.bias": tensor("1", 2, (2,))}
    path = write(tmp_path, bundle_with(state, {"0": bytes(16), "1": bytes(8)}, **fields))
    with pytest.raises(WeightsError, match=match):
        mlpinfer.load(path, **options)


def test_batch_norm_statistics_and_its_integer_counter_load_what_they_say(tmp_path):
    """A Linear-BatchNorm1d-ReLU-Linear state_dict as torch.save writes it, with the
    int64 num_batches_tracked that BatchNorm1d keeps; the fold computed here in float64."""
    rng = np.random.default_rng(3)
    weights = arrays()
    stats = {f"1.{name}": rng.uniform(0.5, 2.0, 5).astype(np.float32)
             for name in ("weight", "bias", "running_mean", "running_var")}
    state = {}
    storages = {}
    for index, (key, array) in enumerate({**weights, **stats}.items()):
        storages[str(index)] = array.tobytes()
        state[key] = tensor(str(index), array.size, array.shape)
    storages["counter"] = np.array([7], "<i8").tobytes()
    state["1.num_batches_tracked"] = tensor("counter", 1, (), storage="LongStorage")
    architecture = ["Linear", "BatchNorm1d(eps=0.01)", "ReLU", "Linear", "Softmax(dim=-1)"]
    weights = {key.replace("2.", "3."): value for key, value in weights.items()}
    state = {key.replace("2.", "3."): value for key, value in state.items()}
    network = mlpinfer.load(write(tmp_path, bundle_with(state, storages,
                                                        architecture=architecture)))
    x = rng.standard_normal((7, 7))
    h = x @ weights["0.weight"].T.astype(np.float64) + weights["0.bias"]
    h = (h - stats["1.running_mean"]) / np.sqrt(stats["1.running_var"] + 0.01)
    h = np.maximum(h * stats["1.weight"] + stats["1.bias"], 0)
    h = h @ weights["3.weight"].T + weights["3.bias"]
    expected = np.exp(h - h.max(axis=1, keepdims=True))
    np.testing.assert_allclose(network.predict(x), expected / expected.sum(axis=1, keepdims=True),
                               atol=1e-6)


@pytest.mark.parametrize(
    ("architecture", "match"),
    [
        (["Linear", "LeakyReLU(negative_slope=" + "9" * 100_000 + ")"],
         r"unsupported layer 'LeakyReLU\(negative_slope=9999.*' at entry 1; expected one of"),
        (["Linear", "LeakyReLU(negative_slope=1e999)"], "expected a number"),
        (["Linear", "LeakyReLU(negative_slope=nan)"], "option value 'nan'"),
        (["Linear", "LeakyReLU(negative_slope=True)"], "'True'; expected a number"),
        (["Linear", "ELU(alpha=0.5, alpha=0.7)"], "alpha given twice"),
        (["Linear", "GELU(approximate='erf')"], "approximate='erf'; expected 'none' or 'tanh'"),
        (["Linear", "GELU(approximate=__import__('os'))"], r"option value"),
        (["Linear", "Softmax(dim=0)"], "dim=0; only the last"),
        (["Linear", "Linear(bias=False)"], r"expected key=value of its options \(none\)"),
        (["Linear", "ReLU((("], "unsupported layer"),
        (["Linear", 7], "'architecture' must be a list of layer names"),
    ],
)
def test_architecture_entries_that_say_something_else(tmp_path, architecture, match):
    state = {"0.weight": tensor("0", 4, (2, 2)), "0.bias": tensor("1", 2, (2,))}
    path = write(tmp_path, bundle_with(state, {"0": bytes(16), "1": bytes(8)},
                                       architecture=architecture))
    with pytest.raises(WeightsError, match=match):
        mlpinfer.load(path)


ODD_VALUES = ["None", "True", "'x'", "-1", "0", "1e308", "1e-400", "7"]


@pytest.mark.parametrize("kind", [kind for kind, options in MODULE_OPTIONS.items() if options])
def test_every_option_of_every_entry_reads_or_is_refused(tmp_path, kind):
    """Each option of an architecture entry set to values of every kind: the file loads
    (and runs), or is refused with a WeightsError; nothing else escapes."""
    rng = np.random.default_rng(2)
    tensors = {"0.weight": rng.standard_normal((4, 6)), "0.bias": rng.standard_normal(4),
               "2.weight": rng.standard_normal((3, 4)), "2.bias": rng.standard_normal(3)}
    if kind in ("BatchNorm1d", "LayerNorm"):
        tensors.update({"1.weight": rng.uniform(0.5, 2, 4), "1.bias": rng.standard_normal(4)})
    if kind == "BatchNorm1d":
        tensors.update({"1.running_mean": rng.standard_normal(4),
                        "1.running_var": rng.uniform(0.5, 2, 4)})
    for key in MODULE_OPTIONS[kind]:
        for value in ODD_VALUES:
            architecture = ["Linear", f"{kind}({key}={value})", "Linear"]
            path = write(tmp_path, state_dict_file(tensors, architecture))
            try:
                network = mlpinfer.load(path)
            except WeightsError:
                continue
            assert network.predict(np.ones((2, 6))).shape == (2, 3), architecture


def test_the_legacy_format_is_named_not_read(tmp_path):
    magic = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # torch.save before 1.6
    path = write(tmp_path, magic + pickle_program({"0.weight": tensor("0", 4, (2, 2))}))
    with pytest.raises(WeightsError, match=r"hostile.pt: a PyTorch file in the legacy format"):
        mlpinfer.load(path, architecture=["Linear"])


def test_torchs_legacy_format_is_recognised(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "legacy.pt"
    torch.save({"0.weight": torch.ones(2, 2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="legacy format"):
        mlpinfer.load(path)


def test_a_bare_state_dict_names_its_keys(tmp_path):
    path = write(tmp_path, state_dict_file(arrays()))
    with pytest.raises(WeightsError, match=r"hostile.pt: a bare state_dict .* its keys are "
                                           r"\['0.bias', '0.weight', '2.bias', '2.weight'\]"):
        mlpinfer.load(path)


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"a/data.pkl": b"\x80\x02}.", "b/data.pkl": b"\x80\x02}."}, "found 2"),
        ({"archive/data.pkl": b"\x80\x02}.", "archive/byteorder": b"middle"},
         "byteorder says b'middle'"),
        ({"archive/data.pkl": b"\x80\x02garbage"}, "unreadable pickle"),
        ({"archive/data.pkl": b"\x80\x02}(X\x01\x00\x00\x00a"}, "truncated file"),
    ],
    ids=["two-pickles", "byteorder", "garbage", "truncated"],
)
def test_broken_containers(tmp_path, members, match):
    refused(tmp_path, zip_bytes(members), match)


def test_corruptions_load_the_written_weights_or_nothing(tmp_path):
    """Zip CRCs cover every member: a changed byte is refused, or (a timestamp, padding)
    loads exactly the written weights; never other weights."""
    weights = arrays()
    data = state_dict_file(weights, LINEAR)
    for variant in corruptions(data):
        try:
            network = mlpinfer.load(write(tmp_path, variant))
        except WeightsError:
            continue
        np.testing.assert_array_equal(network.layers[0].weights, weights["0.weight"].T)
        np.testing.assert_array_equal(network.layers[1].weights, weights["2.weight"].T)
        np.testing.assert_array_equal(network.layers[1].bias, weights["2.bias"])
