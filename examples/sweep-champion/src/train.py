"""Train a random forest on data/train.csv; write the model and its input signature."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-estimators", type=int, required=True)
    ap.add_argument("--max-depth", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with open("data/train.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header, data = rows[0], np.asarray(rows[1:], dtype=float)
    X, y = data[:, :-1], data[:, -1].astype(int)
    model = RandomForestClassifier(n_estimators=args.n_estimators, max_depth=args.max_depth,
                                   random_state=args.seed, n_jobs=1).fit(X, y)
    Path("models").mkdir(exist_ok=True)
    joblib.dump(model, "models/model.joblib")
    Path("models/model.joblib.signature.json").write_text(json.dumps({"features": header[:-1]}, indent=2) + "\n")
    print(f"train: {args.n_estimators} trees, max depth {args.max_depth}")


if __name__ == "__main__":
    main()
