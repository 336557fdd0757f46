"""Data sets the examples train on, read with numpy alone."""

import gzip
import os

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def _idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, the file holds {body.size} bytes")
    return body.reshape(shape)


def fashion_mnist(split: str = "train", data_dir: str = FASHION_MNIST_DIR):
    """(images float32 [n, 1, 28, 28] standardised with the training set's
    mean and deviation, labels int64 [n]) of "train" or "t10k"."""
    prefix = os.path.join(data_dir, split)
    images = _idx(prefix + "-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = _idx(prefix + "-labels-idx1-ubyte.gz").astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels")
    mean, std = 0.2860, 0.3530  # of Fashion-MNIST's training images
    return ((images - mean) / std)[:, None, :, :], labels
