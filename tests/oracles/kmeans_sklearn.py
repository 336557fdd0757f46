#!/usr/bin/python3
"""The k-means oracle: scikit-learn's KMeans (Lloyd, greedy k-means++) on
Fashion-MNIST's training images scaled to [0, 1], as worker/examples/kmeans
clusters them. Prints "inertia=<sum of squared distances> seconds=<fit time>".

  kmeans_sklearn.py [--data_dir=/usr/share/datasets/fashion-mnist] [--k=10]
                    [--n_init=1] [--seed=1]
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np
from sklearn.cluster import KMeans


def read_images(path):
    with gzip.open(path) as f:
        data = f.read()
    if int.from_bytes(data[0:4], "big") != 2051:
        sys.exit(f"kmeans_sklearn: {path} is not an IDX3 image file")
    n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(data, np.uint8, offset=16)
    if pixels.size != n * rows * cols:
        sys.exit(f"kmeans_sklearn: {path} is truncated")
    return pixels.reshape(n, rows * cols).astype(np.float32) / 255


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n_init", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    x = read_images(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz"))
    start = time.time()
    km = KMeans(n_clusters=args.k, init="k-means++", n_init=args.n_init,
                random_state=args.seed).fit(x)
    print(f"inertia={km.inertia_:.1f} seconds={time.time() - start:.2f}")


if __name__ == "__main__":
    main()
