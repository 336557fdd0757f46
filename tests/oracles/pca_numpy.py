#!/usr/bin/python3
"""The PCA oracle: numpy's SVD of Fashion-MNIST's training images scaled to
[0, 1] and centred, as worker/examples/pca analyses them. Prints
"explained_variance=<share of the variance in the top k components>
seconds=<SVD time>".

  pca_numpy.py [--data_dir=/usr/share/datasets/fashion-mnist] [--k=16]
"""
import argparse
import time

import numpy as np

import fashion_mnist


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default=fashion_mnist.DEFAULT_DIR)
    parser.add_argument("--k", type=int, default=16)
    args = parser.parse_args()
    x = fashion_mnist.read_images(args.data_dir)
    start = time.time()
    s = np.linalg.svd(x - x.mean(axis=0), full_matrices=False, compute_uv=False)
    variance = s.astype(np.float64) ** 2
    explained = variance[:args.k].sum() / variance.sum()
    print(f"explained_variance={explained:.6f} seconds={time.time() - start:.2f}")


if __name__ == "__main__":
    main()
