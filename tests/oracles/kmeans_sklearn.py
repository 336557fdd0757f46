#!/usr/bin/python3
"""The k-means oracle: scikit-learn's KMeans (Lloyd, greedy k-means++) on
Fashion-MNIST's training images scaled to [0, 1], as worker/examples/kmeans
clusters them. Prints "inertia=<sum of squared distances> seconds=<fit time>".

  kmeans_sklearn.py [--data_dir=/usr/share/datasets/fashion-mnist] [--k=10]
                    [--n_init=1] [--seed=1]
"""
import argparse
import time

from sklearn.cluster import KMeans

import fashion_mnist


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default=fashion_mnist.DEFAULT_DIR)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n_init", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    x = fashion_mnist.read_images(args.data_dir)
    start = time.time()
    km = KMeans(n_clusters=args.k, init="k-means++", n_init=args.n_init,
                random_state=args.seed).fit(x)
    print(f"inertia={km.inertia_:.1f} seconds={time.time() - start:.2f}")

if __name__ == "__main__":
    main()
