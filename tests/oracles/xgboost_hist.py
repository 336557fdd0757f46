#!/usr/bin/python3
"""The boosted-trees oracle: XGBoost's `hist` method on Fashion-MNIST, one
class against the rest, with worker/examples/gbdt's settings. Prints
"test_auc=<AUC on the test set> seconds=<training time>".

  xgboost_hist.py [--data_dir=/usr/share/datasets/fashion-mnist]
                  [--positive_class=6] [--trees=20] [--depth=4] [--eta=0.3]
                  [--bins=32] [--threads=1]
"""
import argparse
import time

import xgboost
from sklearn.metrics import roc_auc_score

import fashion_mnist


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default=fashion_mnist.DEFAULT_DIR)
    parser.add_argument("--positive_class", type=int, default=6)
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--eta", type=float, default=0.3)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    x = fashion_mnist.read_images(args.data_dir, "train")
    y = fashion_mnist.read_labels(args.data_dir, "train") == args.positive_class
    x_test = fashion_mnist.read_images(args.data_dir, "t10k")
    y_test = fashion_mnist.read_labels(args.data_dir, "t10k") == args.positive_class
    start = time.time()
    params = {"tree_method": "hist", "max_depth": args.depth, "eta": args.eta,
              "max_bin": args.bins, "objective": "binary:logistic", "lambda": 1,
              "min_child_weight": 1, "nthread": args.threads}
    model = xgboost.train(params, xgboost.DMatrix(x, label=y), args.trees)
    seconds = time.time() - start
    auc = roc_auc_score(y_test, model.predict(xgboost.DMatrix(x_test)))
    print(f"test_auc={auc:.6f} seconds={seconds:.2f}")


if __name__ == "__main__":
    main()
