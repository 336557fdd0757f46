"""Data sets the examples train on: Fashion-MNIST (read with numpy) and
click logs in Criteo's format (read by the C++ reader the workers share)."""

import gzip
import os

import numpy as np

import fulcrum

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


def ctr(path: str, partition=None, numeric_fields: int = 13, categorical_fields: int = 26):
    """A click log in Criteo's text format (tools/gen_ctr_data writes one):
    (labels float32 [n], numeric float32 [n, numeric_fields] as written,
    ids int64 [n, categorical_fields]). ``partition`` = (index, count) reads
    only that share of the file, cut by byte range (each line in exactly one
    share), as workers read theirs; None reads it whole. Raises
    fulcrum.FulcrumError naming the file and line of a malformed line."""
    index, count = partition if partition is not None else (0, 1)
    return fulcrum._call(
        fulcrum._native.read_ctr, path, index, count, numeric_fields, categorical_fields
    )
