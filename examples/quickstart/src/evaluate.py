"""Score the model on the held-out test set; the gate in pipeline.yaml reads these metrics."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
from common import read_xy
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score


def main() -> None:
    _, X, y = read_xy("data/test.csv")
    model = joblib.load("models/model.joblib")
    pred = model.predict(X)
    proba = model.predict_proba(X)[:, 1]
    metrics = {
        "accuracy": accuracy_score(y, pred),
        "f1": f1_score(y, pred),
        "precision": precision_score(y, pred),
        "recall": recall_score(y, pred),
        "roc_auc": roc_auc_score(y, proba),
    }
    metrics = {k: round(float(v), 6) for k, v in metrics.items()}
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"evaluate: {metrics}")


if __name__ == "__main__":
    main()
