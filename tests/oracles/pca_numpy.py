#!/usr/bin/python3
"""The PCA oracle: numpy's SVD of Fashion-MNIST's training images scaled to
[0, 1] and centred, as worker/examples/pca analyses them. Prints
"explained_variance=<share of the variance in the top k components>
seconds=<SVD time>".

  pca_numpy.py [--data_dir=/usr/share/datasets/fashion-mnist] [--k=16]
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np


def read_images(path):
    with gzip.open(path) as f:
        data = f.read()
    if int.from_bytes(data[0:4], "big") != 2051:
        sys.exit(f"pca_numpy: {path} is not an IDX3 image file")
    n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(data, np.uint8, offset=16)
    if pixels.size != n * rows * cols:
        sys.exit(f"pca_numpy: {path} is truncated")
    return pixels.reshape(n, rows * cols).astype(np.float32) / 255


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--k", type=int, default=16)
    args = parser.parse_args()
    x = read_images(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz"))
    start = time.time()
    s = np.linalg.svd(x - x.mean(axis=0), full_matrices=False, compute_uv=False)
    variance = s.astype(np.float64) ** 2
    explained = variance[:args.k].sum() / variance.sum()
    print(f"explained_variance={explained:.6f} seconds={time.time() - start:.2f}")


if __name__ == "__main__":
    main()
