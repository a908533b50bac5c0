"""The textbook check, run by scripts/cross_aarch64_python.sh on both sides: natively
(x86-64, an FMA family) and under qemu-aarch64 (NEON). Prints the kernels in use, the
accuracy of sample_weight.pkl on the 10,000 MNIST test images, and a SHA-256 of the
predictions for the first 1,000, which every FMA family must reproduce bit for bit.

Usage: python aarch64_package_check.py DATA_DIR   (DATA_DIR holds sample_weight.pkl, mnist/)
"""

import hashlib
import sys

import numpy as np

import mlpinfer
from mlpinfer.datasets import load_mnist

data = sys.argv[1]
images, labels = load_mnist("test", data_dir=f"{data}/mnist", download=False)
network = mlpinfer.load(f"{data}/sample_weight.pkl")
outputs = np.ascontiguousarray(network.predict(images[:1000]), dtype=np.float32)
print("kernels", mlpinfer.cpu_info()["isa"])
print("accuracy", network.accuracy(images, labels))
print("outputs", hashlib.sha256(outputs.tobytes()).hexdigest())
