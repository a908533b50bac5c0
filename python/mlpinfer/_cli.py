"""The ``mlpinfer`` command: evaluate, predict, info, convert, bench."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _shipped, datasets
from ._cpu import cpu_info, describe_kernels
from ._errors import DataError, MlpinferError
from ._files import write_atomically
from ._network import Network, _core
from ._png import read_png_gray
from ._progress import Progress, stderr_is_terminal
from .formats import convert, load

__all__ = ["main"]

_PROGRESS_MIN_BATCHES = 20  # fewer batches finish before a bar is worth drawing


class UserError(Exception):
    """A mistake in the command line or its inputs: one line, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:
        # The reader left (mlpinfer evaluate | head): stop quietly, as other tools do,
        # with stdout pointed at /dev/null so that the exit's flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the pipe
    except (UserError, MlpinferError, OSError, ValueError, TypeError, ImportError) as error:
        print(f"mlpinfer: error: {_describe(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlpinfer: interrupted", file=sys.stderr)
        return 130


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless there is none to show (None, False) or its help
    already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _pixel_scale(text: str) -> float:
    """``1/255`` or a number."""
    numerator, _, denominator = text.partition("/")
    try:
        value = float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number such as 1/255 or 1.0, got {text!r}") from None
    return value


_PIXEL_SCALE_HELP = ("what uint8 pixels are multiplied by, for a network whose file does not "
                     "record it (an ONNX, PyTorch or Keras file without a scaling layer): 1/255 "
                     "if it was trained on pixels / 255, 1 if on raw 0-255 values")


def _describe(error: BaseException) -> str:
    message = getattr(error, "strerror", None) if isinstance(error, OSError) else None
    return f"{message}: {error.filename}" if message and error.filename else str(error)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlpinfer", description="Run multilayer perceptrons on mlpinfer's C++ engine.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version",
                        version=f"mlpinfer {_core.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shipped = ", ".join(_shipped.NETWORKS)

    def add_parser(name: str, **options: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, formatter_class=_HelpFormatter, **options)

    evaluate = add_parser(
        "evaluate", help="accuracy, per-class accuracy and confusion matrix on a test set",
        description="Classify a labelled test set and report accuracy, per-class accuracy, "
        "the confusion matrix and images per second. With no arguments: the shipped digits "
        "network on the embedded 1,000-digit sample, offline.",
    )
    evaluate.add_argument("--weights", default=None,
                          help=f"weight file or shipped network ({shipped}); default digits, "
                               "or fashion for --data fashion-mnist")
    evaluate.add_argument("--data", default="sample",
                          help="sample (embedded), mnist, fashion-mnist, or a directory holding "
                               "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    evaluate.add_argument("--batch-size", type=int, default=100, help="images per engine call")
    evaluate.add_argument("--threads", type=int, default=None, help="engine threads")
    evaluate.add_argument("--errors", metavar="FILE.png",
                          help="draw the first 100 misclassified images (needs matplotlib); "
                               "the suffix names the image format: .png, .pdf, .svg, .jpg ...")
    evaluate.add_argument("--pixel-scale", type=_pixel_scale, help=_PIXEL_SCALE_HELP)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a report")
    evaluate.set_defaults(run=_evaluate)

    predict = add_parser(
        "predict", help="label and top-3 probabilities of images",
        description="Classify images given as .npy arrays, IDX files or grayscale PNGs of the "
        "network's input size (28x28 for the shipped networks). Images are read as MNIST "
        "draws them: a white digit (255) on a black background (0); a black-on-white "
        "drawing needs --invert. Colour PNGs are turned into gray (ITU-R BT.601 luma). "
        "A file that cannot be read gets one error line; the others are still classified.",
    )
    predict.add_argument("--weights", default="digits",
                         help=f"weight file or shipped network ({shipped})")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help=".npy, IDX or PNG file")
    predict.add_argument("--invert", action="store_true",
                         help="invert uint8 pixels (255 - x): for dark digits on a light background")
    predict.add_argument("--pixel-scale", type=_pixel_scale, help=_PIXEL_SCALE_HELP)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(run=_predict)

    info = add_parser("info", help="layers, parameters and checksum of a network")
    info.add_argument("weights", metavar="PATH|NAME")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)

    convert = add_parser(
        "convert", help="convert a network between formats",
        description="Read a network by its content (native .npz, textbook .pkl, ONNX, Keras "
        ".keras, PyTorch) and write it in the format named by OUT's suffix: .npz, .pkl, "
        ".onnx, .keras, .pt/.pth.",
    )
    convert.add_argument("source", metavar="IN")
    convert.add_argument("destination", metavar="OUT")
    convert.add_argument("--architecture",
                         help="for a bare PyTorch state_dict: its nn.Sequential layers, "
                              "comma-separated (e.g. Flatten,Linear,ReLU,Linear; options "
                              "as in \"LeakyReLU(negative_slope=0.1)\")")
    convert.add_argument("--hidden", help="hidden activation of a .pkl/.npz without a header")
    convert.add_argument("--output", help="output activation of a .pkl/.npz without a header")
    convert.add_argument("--input-scale", type=float, help="input scale of such a file")
    convert.add_argument("--pixel-scale", type=_pixel_scale, help=_PIXEL_SCALE_HELP)
    convert.set_defaults(run=_convert)

    bench = add_parser(
        "bench", help="throughput and latency against NumPy, ONNX Runtime and PyTorch",
        description="Benchmark mlpinfer against the NumPy reference and, when installed, "
        "ONNX Runtime and PyTorch, on the same network and inputs.",
    )
    from ._bench import add_arguments as add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(run=_bench)
    return parser


# --------------------------------------------------------------------------- evaluate

def _load_data(spec: str) -> tuple[str, np.ndarray, np.ndarray]:
    if spec == "sample":
        images, labels = _shipped.load_digits_sample()
        return "embedded sample (1,000 held-out MNIST training digits)", images, labels
    if spec == "mnist":
        return "MNIST test set", *datasets.load_mnist("test")
    if spec == "fashion-mnist":
        return "Fashion-MNIST test set", *datasets.load_fashion_mnist("test")
    if Path(spec).is_dir():
        return f"test files in {spec}", *datasets.load_directory(spec, "test")
    raise UserError(f"--data must be sample, mnist, fashion-mnist or a directory; got {spec!r}")


def _classify_timed(network: Network, images: np.ndarray, batch_size: int,
                    threads: int | None) -> tuple[np.ndarray, float]:
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    starts = range(0, len(images), batch_size)
    progress = (Progress("classifying", len(images), unit="images")
                if stderr_is_terminal() and len(starts) >= _PROGRESS_MIN_BATCHES else None)
    labels = np.empty(len(images), dtype=np.int64)
    elapsed = 0.0
    try:
        for start in starts:
            chunk = images[start : start + batch_size]
            began = time.perf_counter()
            labels[start : start + len(chunk)] = network.classify(chunk, threads=threads)
            elapsed += time.perf_counter() - began
            if progress:
                progress.update(start + len(chunk))
    finally:
        if progress:
            progress.close()
    return labels, elapsed


def _evaluate(args: argparse.Namespace) -> int:
    weights = args.weights or ("fashion" if args.data == "fashion-mnist" else "digits")
    network = load(weights, pixel_scale=args.pixel_scale)
    _refuse_multilabel(network, weights, "evaluate")
    title, images, labels = _load_data(args.data)
    if network.classes_.dtype.kind not in "iu" or network.classes_.min() < 0:
        raise UserError(
            f"{weights}: evaluate compares with a test set's labels 0, 1, 2 ...; this "
            f"network's classes are {network.classes_.tolist()!r:.60}"
        )
    if len(images) == 0:
        raise UserError(f"{title} holds no images")
    _check_pixel_scale(network, weights, images, title)
    predicted, elapsed = _classify_timed(network, images, args.batch_size, args.threads)
    classes = max(network.n_outputs, int(labels.max()) + 1, int(predicted.max()) + 1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    classified = predicted >= 0  # -1 marks a NaN output: counted apart, never as class 0
    np.add.at(confusion, (labels[classified], predicted[classified]), 1)
    unclassified = int(np.count_nonzero(~classified))
    correct = int(np.count_nonzero(predicted == labels))
    totals = confusion.sum(axis=1)
    per_class = [float(confusion[c, c] / totals[c]) if totals[c] else None for c in range(classes)]
    report = {
        "weights": weights,
        "network": repr(network),
        "data": title,
        "images": len(images),
        "correct": correct,
        "accuracy": correct / len(images),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "unclassified": unclassified,
        "images_per_second": len(images) / elapsed if elapsed > 0 else None,
        "batch_size": args.batch_size,
        "threads": args.threads,
    }
    if args.errors:
        report["errors_drawn"] = _draw_errors(Path(args.errors), images, labels, predicted)
        report["errors_image"] = args.errors
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    speed = report["images_per_second"]
    print(f"network   {weights}: {network!r}")
    print(f"data      {title}: {len(images):,} images")
    print(f"accuracy  {report['accuracy']:.4f} ({correct:,} of {len(images):,})")
    if speed:
        print(f"speed     {speed:,.0f} images/s (batch size {args.batch_size})")
    if unclassified:
        print(f"          {unclassified:,} images gave a NaN output and have no label")
    print("\nper-class accuracy")
    print("  " + "  ".join(f"{c}: {a:.3f}" if a is not None else f"{c}: -" for c, a in enumerate(per_class)))
    print("\nconfusion matrix (rows: true label, columns: predicted)")
    width = max(4, len(str(confusion.max())) + 1)
    print("     " + "".join(f"{c:>{width}}" for c in range(classes)))
    for c in range(classes):
        print(f"  {c:>2} " + "".join(f"{v:>{width}}" for v in confusion[c]))
    if args.errors:
        print(f"\n{report['errors_drawn']} misclassified images drawn to {args.errors}")
    return 0


def _draw_errors(path: Path, images: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                 limit: int = 100) -> int:
    """Draw the first ``limit`` misclassified images into ``path``; returns how many."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(
            "--errors needs matplotlib: pip install 'mlpinfer[plot]' (or pip install matplotlib)"
        ) from None
    all_wrong = np.flatnonzero(predicted != labels)
    wrong = all_wrong[:limit]
    columns = 10
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.3), squeeze=False)
    try:
        image_format = path.suffix.lower().lstrip(".")
        supported = figure.canvas.get_supported_filetypes()
        if image_format not in supported:
            raise UserError(
                f"--errors {path}: the suffix names the image format; use one of "
                f"{', '.join('.' + name for name in sorted(supported))}"
            )
        for axis in axes.flat:
            axis.axis("off")
        for axis, index in zip(axes.flat, wrong, strict=False):
            axis.imshow(images[index].reshape(28, 28), cmap="gray_r")
            axis.set_title(f"{predicted[index]} (true {labels[index]})", fontsize=7)
        which = (f"first {len(wrong)} of {len(all_wrong)}" if len(wrong) < len(all_wrong)
                 else f"all {len(all_wrong)}")
        figure.suptitle(f"{which} misclassified images: predicted (true)", fontsize=9)
        figure.tight_layout()
        write_atomically(path, lambda stream: figure.savefig(stream, format=image_format, dpi=100))
    finally:
        plt.close(figure)
    return len(wrong)


# --------------------------------------------------------------------------- predict

# Formats a user may hand to predict by mistake, by their first bytes.
_OTHER_FORMATS = ((b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                  (b"BM", "a BMP image"), (b"RIFF", "a RIFF (WebP?) file"),
                  (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                  (b"PK\x03\x04", "a zip archive (.npz?)"))
_EXPECTED_INPUT = "predict reads grayscale PNG, .npy (uint8 or float) and IDX files"


def _read_npy(path: Path) -> np.ndarray:
    """A .npy array, refused from its header when the file cannot hold what it declares."""
    with open(path, "rb") as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise DataError(f"{path}: .npy format version {version} is not supported")
        except ValueError as error:  # NumPy's own words for a bad header
            raise DataError(f"{path}: not a readable .npy file ({error})") from None
        if dtype.kind not in "biuf" or dtype.hasobject:
            raise DataError(f"{path}: a .npy of dtype {dtype}; expected numbers (uint8 or float)")
        declared = math.prod(shape) * dtype.itemsize
        available = os.fstat(stream.fileno()).st_size - stream.tell()
        if declared > available:
            raise DataError(
                f"{path}: the .npy header declares shape {shape} of {dtype} ({declared:,} "
                f"bytes) but the file holds {available:,} bytes after it"
            )
        data = np.fromfile(stream, dtype=dtype, count=math.prod(shape))
    return data.reshape(shape, order="F" if fortran else "C")


def _read_images(path: Path, width: int) -> np.ndarray:
    with open(path, "rb") as stream:
        head = stream.read(512)
    if head.startswith(b"\x89PNG"):
        images = read_png_gray(path, pixels=width)[np.newaxis]
    elif head.startswith(b"\x93NUMPY"):
        images = _read_npy(path)
    elif head[:2] == b"\x00\x00" or head[:2] == b"\x1f\x8b":  # IDX, or gzip (of IDX)
        images = datasets.read_idx(path)
    else:
        what = next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), None)
        if what is None:
            what = "a text file" if _looks_like_text(head) else "not a PNG, .npy or IDX file"
        raise DataError(f"{path}: {what}; {_EXPECTED_INPUT}")
    if images.ndim == 2 and images.size == width:
        images = images[np.newaxis]
    if images.ndim == 1:
        images = images[np.newaxis]
    if images.ndim < 2 or int(np.prod(images.shape[1:])) != width:
        raise UserError(f"{path}: expected images of {width} values each, got shape {images.shape}")
    return images


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(byte < 9 or 13 < byte < 32 for byte in head)


def _check_pixel_scale(network: Network, weights: str, images: np.ndarray, what: str) -> None:
    """Refuse uint8 images for a network with no pixel scale, naming the CLI's option
    (the library's own error names its Python method instead)."""
    if images.dtype == np.uint8 and network.pixel_scale is None:
        raise UserError(
            f"{what}: uint8 pixels, and {weights} does not record the scale of "
            "the pixels it was trained on: state it with --pixel-scale 1/255 (trained "
            "on pixels / 255) or --pixel-scale 1 (on raw 0..255 values)"
        )


def _refuse_multilabel(network: Network, weights: str, command: str) -> None:
    if network.multilabel:
        raise UserError(
            f"{weights}: a multi-label classifier (each of its {network.n_outputs} outputs "
            f"is one label's probability); {command} gives one label per image"
        )


def _predict(args: argparse.Namespace) -> int:
    network = load(args.weights, pixel_scale=args.pixel_scale)
    _refuse_multilabel(network, args.weights, "predict")
    results = []
    failed = 0
    for name in args.inputs:
        path = Path(name)
        try:
            images = _read_images(path, network.n_inputs)
            _check_pixel_scale(network, args.weights, images, str(path))
            if args.invert:
                if images.dtype != np.uint8:
                    raise UserError(f"{path}: --invert needs uint8 pixels, got {images.dtype}")
                images = 255 - images
            outputs = np.atleast_2d(network.predict(images))
            labels = network._classify_outputs(outputs)
        except (UserError, MlpinferError, OSError, ValueError, TypeError) as error:
            # One line per file that cannot be read or run (int16 pixels, uint8 for a
            # network with no pixel scale); the others are still classified.
            message = _describe(error)
            where = "" if name in message else f"{name}: "
            print(f"mlpinfer: error: {where}{message}", file=sys.stderr)
            failed += 1
            continue
        # One score per class, paired with its class: the probabilities when the outputs
        # are (a single sigmoid output p is p for classes_[1] and 1 - p for classes_[0]),
        # else the outputs (a single one scores classes_[1], as classify reads it).
        scores, columns = network._probabilities_of(outputs), network.classes_
        if scores is None:
            scores = outputs
            columns = columns[-network.n_outputs:]
        for index, (row, label) in enumerate(zip(scores, labels, strict=True)):
            top = np.argsort(row)[::-1][:3]
            results.append({
                "input": name if len(images) == 1 else f"{name}[{index}]",
                "label": label.item(),
                "top3": [[columns[k].item(), float(row[k])] for k in top],
            })
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            top = "  ".join(f"{k}: {p:.3f}" for k, p in result["top3"])
            print(f"{result['input']}: {result['label']}   ({top})")
    return 2 if failed else 0


# --------------------------------------------------------------------------- info

def _info(args: argparse.Namespace) -> int:
    source = _shipped.resolve(args.weights)
    network = load(args.weights)
    digest = hashlib.sha256(source.path.read_bytes()).hexdigest()
    layers: list[dict[str, Any]] = [
        {"inputs": layer.inputs, "outputs": layer.outputs, "activation": layer.activation,
         "layer_norm": None if layer.norm is None else
         {"epsilon": layer.norm.epsilon, "after_activation": layer.norm_after_activation},
         "steps": layer.steps, "parameters": layer.parameters}
        for layer in network.layers
    ]
    report = {
        "file": str(source.path),
        "sha256": digest,
        "network": repr(network),
        "layers": layers,
        "parameters": sum(layer["parameters"] for layer in layers),
        "dtype": "float32",
        "input_scale": network.input_scale,
        "input_transform": None if network.input_transform is None else {
            "shift": network.input_transform.shift.tolist(),
            "multiplier": network.input_transform.multiplier.tolist()},
        "cpu": cpu_info(),
        "pixel_scale": network.pixel_scale,
        "classes": network.classes_.tolist(),
        "multilabel": network.multilabel,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"file        {report['file']}")
    print(f"sha256      {digest}")
    print(f"network     {report['network']}")
    for number, layer in enumerate(layers, start=1):
        print(f"layer {number:<5} {layer['inputs']} -> {layer['outputs']} {layer['steps']}"
              f" ({layer['parameters']:,} parameters)")
    print(f"parameters  {report['parameters']:,} (float32)")
    scale, pixels = network.input_scale, network.pixel_scale
    print("input scale " + ("none (floats as given)" if scale is None else repr(scale)))
    transform = network.input_transform
    if transform is not None:
        print(f"input transform (x - shift) * multiplier per feature, float64: shift "
              f"{_range(transform.shift)}, multiplier {_range(transform.multiplier)}")
    print("pixel scale " + ("not recorded (uint8 input is refused; see --pixel-scale)"
                            if pixels is None else f"{pixels!r} for uint8 pixels"))
    print(f"classes     {report['classes']!r:.70}"
          + (" (multi-label: each output is one label's probability)"
             if network.multilabel else ""))
    print(f"kernels     {describe_kernels(report['cpu'])}")
    return 0


def _range(values: np.ndarray) -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:.6g}" if low == high else f"{low:.6g} to {high:.6g}"


def _convert(args: argparse.Namespace) -> int:
    # Commas inside an entry's parentheses separate its options: "Softplus(beta=1, threshold=30)".
    architecture = (re.split(r",(?![^()]*\))", args.architecture) if args.architecture
                    else None)
    network = convert(args.source, args.destination, architecture=architecture,
                      hidden=args.hidden, output=args.output, input_scale=args.input_scale,
                      pixel_scale=args.pixel_scale)
    print(f"wrote {args.destination}: {network!r}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ._bench import run

    return run(args)
