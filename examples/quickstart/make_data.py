"""Write the quickstart's data from scikit-learn's bundled breast-cancer set (nothing is downloaded).

- data/raw.csv   450 labelled rows: what the model is trained and evaluated on.
- data/live.csv  the other 119 rows as "production traffic" (features only, no label), drifted on
                 purpose: a new imaging device reads cells about 30% larger and textures noisier.

Deterministic: the same bytes on every run and machine. Usage: python make_data.py [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

N_RAW = 450
DRIFT = {"mean_radius": 1.3, "mean_perimeter": 1.3, "mean_area": 1.69, "worst_radius": 1.3,
         "worst_area": 1.69}


def column_name(name: str) -> str:
    return name.replace(" ", "_")


def write(path: Path, header: list[str], rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([format(float(v), ".6g") for v in row])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).parent / "data"))
    out = Path(ap.parse_args().out)
    ds = load_breast_cancer()
    features = [column_name(n) for n in ds.feature_names]
    order = np.random.default_rng(42).permutation(len(ds.target))
    X, y = ds.data[order], ds.target[order]
    write(out / "raw.csv", [*features, "target"], np.column_stack([X[:N_RAW], y[:N_RAW]]))
    live = X[N_RAW:].copy()
    rng = np.random.default_rng(7)
    for name, factor in DRIFT.items():
        live[:, features.index(name)] *= factor
    texture = features.index("mean_texture")
    live[:, texture] += rng.normal(4.0, 2.0, len(live))
    write(out / "live.csv", features, live)
    print(f"wrote {out / 'raw.csv'} ({N_RAW} rows) and {out / 'live.csv'} ({len(live)} rows, drifted)")


if __name__ == "__main__":
    main()
