"""Fashion-MNIST's IDX files as the oracles read them: float32 pixels scaled
to [0, 1], as Fulcrum's IDX reader (common/data/idx_dataset.h) gives them."""
import gzip
import os
import sys

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


def read_images(data_dir, split="train"):
    """The images of `split` ("train" or "t10k"), one row per image."""
    path = os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz")
    with gzip.open(path) as f:
        data = f.read()
    if int.from_bytes(data[0:4], "big") != 2051:
        sys.exit(f"{path} is not an IDX3 image file")
    n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(data, np.uint8, offset=16)
    if pixels.size != n * rows * cols:
        sys.exit(f"{path} is truncated")
    return pixels.reshape(n, rows * cols).astype(np.float32) / 255


def read_labels(data_dir, split="train"):
    """The labels of `split`, one byte per image."""
    path = os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz")
    with gzip.open(path) as f:
        data = f.read()
    if int.from_bytes(data[0:4], "big") != 2049:
        sys.exit(f"{path} is not an IDX1 label file")
    return np.frombuffer(data, np.uint8, offset=8)
