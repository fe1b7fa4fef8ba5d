"""Helpers shared by the steps: read a CSV into a feature matrix and labels."""

from __future__ import annotations

import csv

import numpy as np

TARGET = "target"


def read_xy(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [[float(v) for v in r] for r in reader if r]
    data = np.asarray(rows, dtype=float)
    t = header.index(TARGET)
    features = [h for h in header if h != TARGET]
    return features, np.delete(data, t, axis=1), data[:, t].astype(int)
