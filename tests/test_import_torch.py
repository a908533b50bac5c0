"""PyTorch nn.Sequential and state_dict files -> Network, checked against PyTorch itself."""

from __future__ import annotations

import numpy as np
import pytest
from framework_support import (
    assert_not_degenerate,
    assert_same_answers,
    assert_same_answers_at_batch_sizes,
    assert_same_network,
    random_inputs,
)

import mlpinfer
from mlpinfer import WeightsError, reference
from mlpinfer.importers import (
    UnsupportedModelError,
    from_torch,
    load_torch,
    save_torch,
    to_torch,
)

torch = pytest.importorskip("torch")
nn = torch.nn

TRAIN = 3000  # images of the test set used for a brief fit: enough for a meaningful argmax


def run(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def logits_net(mnist):
    """The source material's 784-256-256-10 relu network with logits out, trained briefly."""
    x, labels = mnist
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.from_numpy(x[:TRAIN].reshape(-1, 1, 28, 28))
    targets = torch.from_numpy(labels[:TRAIN].astype(np.int64))
    model.train()
    for _ in range(2):
        for start in range(0, TRAIN, 100):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[start:start + 100]),
                                               targets[start:start + 100])
            loss.backward()
            optimizer.step()
    return model.eval()


def test_logits_network_matches_pytorch_on_mnist(logits_net, mnist, mnist_test):
    x, labels = mnist
    network = from_torch(logits_net)
    assert network.activations == ("relu", "relu", "identity")
    theirs = run(logits_net, x.reshape(-1, 1, 28, 28))
    ours = network.predict(x)
    assert_same_answers(ours, theirs)
    # Ours against the exact result, absolutely: 2.8e-6 measured (Zen 5 and Sapphire Rapids).
    layers = [(layer.weights, layer.bias, activation)
              for layer, activation in zip(network.layers, network.activations, strict=True)]
    np.testing.assert_allclose(ours, reference.forward(layers, x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="does not record the scale of the pixels"):
        network.predict(mnist_test[0])  # a module records no input scale
    # Trained on pixels / 255, as stated:
    assert_same_answers(network.with_pixel_scale(1 / 255).predict(mnist_test[0]), theirs)
    assert_not_degenerate(ours, labels, 0.85)


def test_state_dict_file_with_architecture(logits_net, mnist, tmp_path):
    x, _ = mnist
    path = tmp_path / "weights.pt"
    torch.save(logits_net.state_dict(), path)
    architecture = ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    network = load_torch(path, architecture)
    assert_same_answers(network.predict(x), run(logits_net, x))
    with pytest.raises(WeightsError, match=r"mlpinfer.load\(path, architecture=\[...\]\).*'1.bias', '1.weight'"):
        load_torch(path)


@pytest.mark.parametrize(
    ("layers", "activations"),
    [
        (lambda: [nn.Linear(784, 50), nn.Sigmoid(), nn.Linear(50, 100), nn.Sigmoid(),
                  nn.Linear(100, 10), nn.Softmax(dim=1)], ("sigmoid", "sigmoid", "softmax")),
        (lambda: [nn.Sequential(nn.Linear(784, 64, bias=False), nn.Tanh()), nn.Identity(),
                  nn.Linear(64, 10), nn.Identity(), nn.Softmax(dim=-1)], ("tanh", "softmax")),
        (lambda: [nn.Linear(784, 32), nn.Linear(32, 10), nn.Flatten()], ("identity", "identity")),
    ],
    ids=["textbook-shape", "nested-no-bias", "two-linear"],
)
def test_layer_kinds_match_pytorch(mnist, layers, activations):
    x, _ = mnist
    torch.manual_seed(1)
    model = nn.Sequential(*layers())
    network = from_torch(model)
    assert network.activations == activations
    assert_same_answers(network.predict(x), run(model, x))


def rebuild(bundle):
    """The nn.Sequential a save_torch bundle describes, built as its docstring says: each
    entry is a module and its constructor's keyword arguments."""
    modules = []
    for index, entry in enumerate(bundle["architecture"]):
        state = {key.split(".", 1)[1]: value for key, value in bundle["state_dict"].items()
                 if key.split(".", 1)[0] == str(index)}
        if entry == "Linear":
            modules.append(nn.Linear(state["weight"].shape[1], state["weight"].shape[0]))
        elif entry.startswith("LayerNorm"):
            modules.append(eval(f"nn.LayerNorm({state['weight'].shape[0]}, " + entry[10:]))
        else:
            modules.append(eval(f"nn.{entry}" if "(" in entry else f"nn.{entry}()"))
    rebuilt = nn.Sequential(*modules)
    rebuilt.load_state_dict(bundle["state_dict"])
    return rebuilt


def test_save_torch_round_trip_and_plain_torch_can_use_it(logits_net, mnist, tmp_path):
    x, _ = mnist
    network = from_torch(logits_net)
    path = tmp_path / "net.pt"
    save_torch(network, path)
    back = load_torch(path)
    np.testing.assert_array_equal(back.predict(x[:200]), network.predict(x[:200]))
    assert_same_answers(network.predict(x), run(rebuild(torch.load(path, weights_only=True)), x))


def test_to_torch_folds_the_input_scale(mnist_test):
    images = mnist_test[0].reshape(-1, 784)[:500]
    params = {"W1": np.random.default_rng(0).standard_normal((784, 10)) * 0.05, "b1": np.zeros(10)}
    from mlpinfer import Network

    network = Network.from_params(params, activations=["softmax"], input_scale=1 / 255)
    theirs = run(to_torch(network), images.astype(np.float32))
    assert_same_answers(network.predict(images.astype(np.float32)), theirs)


# --------------------------------------------------------------------------- issue 14

def assert_loads_as_torch_runs(model, architecture, x, tmp_path):
    """The module imported, and its state_dict saved by torch.save and read with the
    architecture a user writes, are the same network; it agrees with PyTorch at batch
    sizes 1, 7 and 1,000."""
    network = from_torch(model)
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    loaded = load_torch(path, architecture)
    assert_same_network(loaded, network)
    assert_same_answers_at_batch_sizes((network, loaded), x, run(model, x))
    return network


def settle_running_stats(model, x):
    """Running statistics as training leaves them: a few train-mode passes (no step)."""
    model.train()
    with torch.no_grad():
        for start in range(0, 600, 200):
            model(torch.from_numpy(x[start:start + 200]) * 1.5 + 0.3)
    return model.eval()


ACTIVATION_MODULES = [
    (nn.ReLU, "ReLU", "relu"),
    (nn.Sigmoid, "Sigmoid", "sigmoid"),
    (nn.Tanh, "Tanh", "tanh"),
    (nn.LeakyReLU, "LeakyReLU", "leaky_relu(negative_slope=0.01)"),
    (lambda: nn.LeakyReLU(0.2), "LeakyReLU(negative_slope=0.2)", "leaky_relu(negative_slope=0.2)"),
    (nn.ELU, "ELU", "elu(alpha=1.0)"),
    (lambda: nn.ELU(alpha=0.5), "ELU(alpha=0.5)", "elu(alpha=0.5)"),
    (nn.SELU, "SELU", "selu"),
    (nn.GELU, "GELU", "gelu"),
    (lambda: nn.GELU(approximate="tanh"), "GELU(approximate='tanh')", "gelu_tanh"),
    (nn.SiLU, "SiLU", "silu"),
    (nn.Softplus, "Softplus", "softplus"),
    (nn.Hardsigmoid, "Hardsigmoid", "hard_sigmoid(slope=0.16666666666666666, offset=0.5)"),
]


@pytest.mark.parametrize(("module", "entry", "activation"), ACTIVATION_MODULES,
                         ids=[entry for _, entry, _ in ACTIVATION_MODULES])
@pytest.mark.parametrize("inputs", ["mnist", "random"])
def test_activation_modules_match_pytorch(module, entry, activation, inputs, mnist, tmp_path):
    x = mnist[0][:1000] if inputs == "mnist" else random_inputs(784)
    torch.manual_seed(20)
    model = nn.Sequential(nn.Linear(784, 48), module(), nn.Linear(48, 10), module())
    network = assert_loads_as_torch_runs(model, ["Linear", entry, "Linear", entry], x, tmp_path)
    assert network.activations == (activation, activation)


@pytest.mark.parametrize(("module", "entry", "activation"), [
    (lambda: nn.Softmax(dim=1), "Softmax", "softmax"),
    (lambda: nn.LogSoftmax(dim=-1), "LogSoftmax(dim=-1)", "log_softmax"),
], ids=["Softmax", "LogSoftmax"])
def test_row_activation_modules_match_pytorch(module, entry, activation, mnist, tmp_path):
    torch.manual_seed(21)
    model = nn.Sequential(nn.Linear(784, 32), nn.SiLU(), nn.Linear(32, 10), module())
    network = assert_loads_as_torch_runs(model, ["Linear", "SiLU", "Linear", entry],
                                         mnist[0][:1000], tmp_path)
    assert network.activations == ("silu", activation)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("inputs", ["mnist", "random"])
def test_batch_norm_folds_wherever_it_stands(affine, inputs, mnist, tmp_path):
    """The issue's Linear-BatchNorm1d-GELU-Dropout-Linear, with a BatchNorm1d on the input
    (folded into the first Linear) and one after an activation (into the next)."""
    x = mnist[0][:1000] if inputs == "mnist" else random_inputs(784)
    torch.manual_seed(22)
    model = nn.Sequential(nn.BatchNorm1d(784, affine=affine), nn.Linear(784, 64),
                          nn.BatchNorm1d(64, affine=affine, eps=1e-3), nn.GELU(),
                          nn.Dropout(0.2), nn.Linear(64, 32), nn.ReLU(),
                          nn.BatchNorm1d(32, affine=affine), nn.Linear(32, 10))
    if affine:
        with torch.no_grad():
            for norm in (model[0], model[2], model[7]):
                norm.weight.uniform_(0.5, 2.0)
                norm.bias.normal_(0.0, 0.5)
    settle_running_stats(model, x)
    architecture = ["BatchNorm1d", "Linear", "BatchNorm1d(eps=0.001)", "GELU", "Dropout",
                    "Linear", "ReLU", "BatchNorm1d", "Linear"]
    network = assert_loads_as_torch_runs(model, architecture, x, tmp_path)
    assert network.activations == ("gelu", "relu", "identity")


@pytest.mark.parametrize("options", [{}, {"elementwise_affine": False}, {"bias": False},
                                     {"eps": 1e-3}])
@pytest.mark.parametrize("inputs", ["mnist", "random"])
def test_layer_norm_before_and_after_the_activation(options, inputs, mnist, tmp_path):
    x = mnist[0][:1000] if inputs == "mnist" else random_inputs(784)
    torch.manual_seed(23)
    model = nn.Sequential(nn.Linear(784, 64), nn.LayerNorm(64, **options), nn.ReLU(),
                          nn.Linear(64, 32), nn.SiLU(), nn.LayerNorm(32, **options),
                          nn.Linear(32, 10))
    if options.get("elementwise_affine", True):
        with torch.no_grad():
            for norm in (model[1], model[5]):
                norm.weight.uniform_(0.5, 2.0)
                if norm.bias is not None:
                    norm.bias.normal_(0.0, 0.5)
    entry = "LayerNorm(eps=0.001)" if "eps" in options else "LayerNorm"
    network = assert_loads_as_torch_runs(
        model, ["Linear", entry, "ReLU", "Linear", "SiLU", entry, "Linear"], x, tmp_path)
    assert [layer.norm_after_activation for layer in network.layers if layer.norm] == [False, True]


def test_save_torch_writes_every_activation_and_layer_norm(mnist, tmp_path):
    x = mnist[0][:1000]
    torch.manual_seed(24)
    model = nn.Sequential(nn.Linear(784, 32), nn.LayerNorm(32), nn.LeakyReLU(0.1),
                          nn.Linear(32, 24), nn.ELU(0.7), nn.LayerNorm(24),
                          nn.Linear(24, 16), nn.GELU(approximate="tanh"), nn.Linear(16, 16),
                          nn.Hardsigmoid(), nn.Linear(16, 12), nn.Softplus(),
                          nn.Linear(12, 10), nn.LogSoftmax(dim=1))
    network = from_torch(model)
    path = tmp_path / "all.pt"
    save_torch(network, path)
    back = load_torch(path)
    assert back.activations == network.activations
    theirs = run(model, x)
    assert_same_answers(back.predict(x), theirs)
    assert_same_answers(network.predict(x), run(rebuild(torch.load(path, weights_only=True)), x))
    assert_same_answers(network.predict(x), run(to_torch(network), x))


def test_convert_takes_entries_with_options(mnist, tmp_path):
    """`mlpinfer convert --architecture` splits entries at the commas outside their
    parentheses."""
    from mlpinfer._cli import main

    torch.manual_seed(25)
    model = nn.Sequential(nn.Linear(784, 16), nn.Softplus(beta=1, threshold=30),
                          nn.Linear(16, 10), nn.LeakyReLU(0.1))
    source, written = tmp_path / "state.pt", tmp_path / "converted.npz"
    torch.save(model.state_dict(), source)
    assert main(["convert", str(source), str(written), "--architecture",
                 "Linear,Softplus(beta=1, threshold=30),Linear,LeakyReLU(negative_slope=0.1)"]) == 0
    assert_same_answers(mlpinfer.load(written).predict(mnist[0]), run(model, mnist[0]))


def test_a_hard_sigmoid_pytorch_has_no_module_for_is_refused_when_writing(tmp_path):
    from mlpinfer import Network

    network = Network.from_params({"W1": np.ones((3, 2)), "b1": np.zeros(2)},
                                  activations=["hard_sigmoid(slope=0.2)"])
    with pytest.raises(WeightsError, match=r"hard_sigmoid\(slope=0.2, offset=0.5\) has no "
                       "PyTorch module"):
        save_torch(network, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


# --------------------------------------------------------------------------- refusals

class Custom(nn.Sequential):
    def forward(self, x):  # pragma: no cover - never run
        return super().forward(x) * 2


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda: nn.Sequential(nn.Conv2d(1, 4, 3)),
         r"unsupported layer Conv2d at module 0 \(Conv2d\); supported: Linear, BatchNorm1d"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.PReLU()),
         r"unsupported layer PReLU at module 1 \(PReLU\); supported: .*LeakyReLU"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3)),
         (r"module 2 \(BatchNorm1d\): a feature scaling after the last activation"
         r".*folds into the dense layer before it")),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)),
         r"module 1 \(BatchNorm1d\): no running statistics \(track_running_stats=False\)"),
        (lambda: nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 3)),
         r"module 0 \(LayerNorm\): a LayerNorm on the input.*supported on a dense layer's outputs"),
        (lambda: nn.Sequential(nn.Linear(4, 6), nn.LayerNorm((2, 3))),
         r"module 1 \(LayerNorm\): normalized_shape=\(2, 3\); only LayerNorm over the last"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.Softplus(beta=2)),
         r"module 1 \(Softplus\): beta=2; only Softplus with beta=1"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.Softplus(threshold=5)),
         r"module 1 \(Softplus\): threshold=5"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=0)), "dim=0"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=0)), "dim=0"),
        (lambda: nn.Sequential(nn.Flatten(0), nn.Linear(4, 3)), "start_dim=0"),
        (lambda: nn.Sequential(nn.Sequential(nn.Linear(4, 3)), nn.ReLU(), nn.ReLU()),
         r"module 2 \(ReLU\): activation relu applied to relu"),
        (lambda: nn.Sequential(nn.Linear(4, 3), Custom(nn.ReLU())),
         "unsupported module Custom at 1"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1), nn.Linear(3, 2)),
         "a dense layer after softmax"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.BatchNorm1d(3), nn.Tanh()),
         r"module 3 \(Tanh\): activation tanh after the feature scaling module 2"),
        (lambda: nn.RNN(4, 3), "expected an nn.Sequential or nn.Linear, got RNN"),
    ],
)
def test_refuses_unsupported_modules_naming_them(model, message):
    with pytest.raises(UnsupportedModelError, match=message):
        from_torch(model())


def test_refuses_state_dict_entries_the_architecture_does_not_use():
    state = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).state_dict()
    with pytest.raises(UnsupportedModelError, match=r"entry 1 \(Identity\): a Identity has no "
                       r"tensor 'bias'"):
        load_torch(state, ["Linear", "Identity"])
    with pytest.raises(UnsupportedModelError, match=r"no module of the architecture uses: "
                       r"\['1.bias'"):
        load_torch(state, ["Linear"])
    with pytest.raises(UnsupportedModelError, match=r"unsupported layer 'BatchNorm2d' at entry 1; "
                       r"expected one of Linear, BatchNorm1d"):
        load_torch(state, ["Linear", "BatchNorm2d"])
    with pytest.raises(UnsupportedModelError, match=r"entry 1 \('BatchNorm1d\(momentum=0.1\)'\):"
                       r" expected key=value of its options \(eps\)"):
        load_torch(state, ["Linear", "BatchNorm1d(momentum=0.1)"])
    with pytest.raises(UnsupportedModelError, match=r"option value 'os.system'"):
        load_torch(state, ["Linear", "BatchNorm1d(eps=os.system)"])


def test_a_pickled_module_is_refused_without_running_it(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Linear(4, 3)), path)
    with pytest.raises(WeightsError, match=r"module.pt: refusing to load global "
                       r"'torch.nn.modules.container.Sequential'.*save model.state_dict"):
        load_torch(path, ["Linear"])
