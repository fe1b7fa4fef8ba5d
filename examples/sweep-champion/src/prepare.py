"""Write a stratified train/test split of scikit-learn's bundled wine data (nothing is downloaded)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-size", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_wine()
    header = [n.replace("/", "_") for n in ds.feature_names] + ["target"]
    rows = [[*map(float, x), int(y)] for x, y in zip(ds.data, ds.target, strict=True)]
    train, test = train_test_split(rows, test_size=args.test_size, random_state=args.seed,
                                   stratify=ds.target)
    Path("data").mkdir(exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        with open(f"data/{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            w.writerows(part)
    print(f"prepare: {len(train)} training rows, {len(test)} test rows")


if __name__ == "__main__":
    main()
