"""Train a random forest; write the model, its input signature and training metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import joblib
from common import read_xy
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-estimators", type=int, default=100)
    ap.add_argument("--max-depth", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    features, X, y = read_xy("data/train.csv")
    model = RandomForestClassifier(n_estimators=args.n_estimators, max_depth=args.max_depth,
                                   random_state=args.seed, n_jobs=1)
    cv = cross_val_score(model, X, y, cv=3, scoring="accuracy")
    model.fit(X, y)
    Path("models").mkdir(exist_ok=True)
    joblib.dump(model, "models/model.joblib")
    # the registry stores this with the model; the server validates requests against it
    signature = {"features": features, "target": "target", "classes": {"0": "malignant", "1": "benign"}}
    Path("models/model.joblib.signature.json").write_text(json.dumps(signature, indent=2) + "\n")
    Path("metrics").mkdir(exist_ok=True)
    metrics = {"train_accuracy": round(float(model.score(X, y)), 6), "cv_accuracy": round(float(cv.mean()), 6)}
    Path("metrics/train.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"train: {args.n_estimators} trees, max depth {args.max_depth}: {metrics}")


if __name__ == "__main__":
    main()
