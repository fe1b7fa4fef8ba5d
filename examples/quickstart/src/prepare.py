"""Split the raw data into a training and a test set (stratified by label, seeded)."""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="src", required=True)
    ap.add_argument("--test-size", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="data")
    args = ap.parse_args()
    with open(args.src, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [r for r in reader if r]
    label = header.index("target")
    rng = random.Random(args.seed)
    train, test = [], []
    for cls in sorted({r[label] for r in rows}):        # the same share of each class in both sets
        group = [r for r in rows if r[label] == cls]
        rng.shuffle(group)
        n_test = round(len(group) * args.test_size)
        test += group[:n_test]
        train += group[n_test:]
    rng.shuffle(train)
    rng.shuffle(test)
    for name, part in (("train", train), ("test", test)):
        path = Path(args.out) / f"{name}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            w.writerows(part)
    print(f"prepare: {len(train)} training rows, {len(test)} test rows")


if __name__ == "__main__":
    main()
