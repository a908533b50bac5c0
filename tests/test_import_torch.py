"""PyTorch nn.Sequential and state_dict files -> Network, checked against PyTorch itself."""

from __future__ import annotations

import numpy as np
import pytest
from framework_support import assert_not_degenerate, assert_same_answers

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
    assert_same_answers(network.predict(mnist_test[0]), theirs)  # uint8 pixels, scaled by 1/255
    assert_not_degenerate(ours, labels, 0.85)


def test_state_dict_file_with_architecture(logits_net, mnist, tmp_path):
    x, _ = mnist
    path = tmp_path / "weights.pt"
    torch.save(logits_net.state_dict(), path)
    architecture = ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    network = load_torch(path, architecture)
    assert_same_answers(network.predict(x), run(logits_net, x))
    with pytest.raises(WeightsError, match=r"load_torch\(path, architecture=\[...\]\).*'1.bias', '1.weight'"):
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


def test_save_torch_round_trip_and_plain_torch_can_use_it(logits_net, mnist, tmp_path):
    x, _ = mnist
    network = from_torch(logits_net)
    path = tmp_path / "net.pt"
    save_torch(network, path)
    back = load_torch(path)
    np.testing.assert_array_equal(back.predict(x[:200]), network.predict(x[:200]))
    bundle = torch.load(path, weights_only=True)
    rebuilt = nn.Sequential(*[getattr(nn, kind)() if kind != "Linear" else nn.Linear(1, 1)
                              for kind in bundle["architecture"]])
    for index, kind in enumerate(bundle["architecture"]):
        if kind == "Linear":
            shape = bundle["state_dict"][f"{index}.weight"].shape
            rebuilt[index] = nn.Linear(shape[1], shape[0])
    rebuilt.load_state_dict(bundle["state_dict"])
    assert_same_answers(network.predict(x), run(rebuilt, x))


def test_to_torch_folds_the_input_scale(mnist_test):
    images = mnist_test[0].reshape(-1, 784)[:500]
    params = {"W1": np.random.default_rng(0).standard_normal((784, 10)) * 0.05, "b1": np.zeros(10)}
    from mlpinfer import Network

    network = Network.from_params(params, activations=["softmax"], input_scale=1 / 255)
    theirs = run(to_torch(network), images.astype(np.float32))
    assert_same_answers(network.predict(images.astype(np.float32)), theirs)


# --------------------------------------------------------------------------- refusals

class Custom(nn.Sequential):
    def forward(self, x):  # pragma: no cover - never run
        return super().forward(x) * 2


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda: nn.Sequential(nn.Conv2d(1, 4, 3)), r"unsupported layer Conv2d at module 0"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)),
         r"unsupported layer BatchNorm1d at module 1"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.LeakyReLU()), "unsupported layer LeakyReLU"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1)),
         "unsupported layer LogSoftmax"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=0)), "dim=0"),
        (lambda: nn.Sequential(nn.Flatten(0), nn.Linear(4, 3)), "start_dim=0"),
        (lambda: nn.Sequential(nn.Sequential(nn.Linear(4, 3)), nn.ReLU(), nn.ReLU()),
         r"module 2 \(ReLU\): activation relu applied to relu"),
        (lambda: nn.Sequential(nn.Linear(4, 3), Custom(nn.ReLU())),
         "unsupported module Custom at 1"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1), nn.Linear(3, 2)),
         "a dense layer after softmax"),
        (lambda: nn.RNN(4, 3), "expected an nn.Sequential or nn.Linear, got RNN"),
    ],
)
def test_refuses_unsupported_modules_naming_them(model, message):
    with pytest.raises(UnsupportedModelError, match=message):
        from_torch(model())


def test_refuses_state_dict_entries_the_architecture_does_not_use():
    state = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).state_dict()
    with pytest.raises(UnsupportedModelError, match=r"no Linear .* uses: \['1.bias'"):
        load_torch(state, ["Linear", "Identity"])
    with pytest.raises(UnsupportedModelError, match="unsupported layer 'BatchNorm1d' at entry 1"):
        load_torch(state, ["Linear", "BatchNorm1d"])


def test_a_pickled_module_is_refused_without_running_it(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Linear(4, 3)), path)
    with pytest.raises(WeightsError, match=r"refused by torch.load\(weights_only=True\)"):
        load_torch(path, ["Linear"])
