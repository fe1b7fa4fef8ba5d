"""Score the model on data/test.csv: accuracy and macro F1 (what the gate and the sweep's selection read)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def main() -> None:
    with open("data/test.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    data = np.asarray(rows[1:], dtype=float)
    X, y = data[:, :-1], data[:, -1].astype(int)
    pred = joblib.load("models/model.joblib").predict(X)
    metrics = {"accuracy": round(float(accuracy_score(y, pred)), 6),
               "f1_macro": round(float(f1_score(y, pred, average="macro")), 6)}
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"evaluate: {metrics}")


if __name__ == "__main__":
    main()
