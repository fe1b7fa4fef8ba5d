"""A tiny threshold model: no third-party package, deterministic."""

import argparse
import json
import os
import pathlib

from common import secret, shout

ap = argparse.ArgumentParser()
ap.add_argument("--lr", type=float)
ap.add_argument("--rounds", type=int)
args = ap.parse_args()
assert os.environ["PASSWORD_COPY"] == secret("DB_PASSWORD"), "the password did not arrive through env"
shout("train")
rows = [line.split(",") for line in pathlib.Path("data/clean.csv").read_text().splitlines()[1:]]
xs = [(float(x), int(y)) for x, y in rows]
threshold = 0.0
for _ in range(args.rounds):
    wrong = [x for x, y in xs if (x > threshold) != bool(y)]
    threshold += args.lr * (sum(wrong) / len(wrong) - threshold) if wrong else 0.0
accuracy = sum((x > threshold) == bool(y) for x, y in xs) / len(xs)
pathlib.Path("models").mkdir(exist_ok=True)
pathlib.Path("models/model.json").write_text(json.dumps({"threshold": round(threshold, 6)}) + "\n")
pathlib.Path("metrics").mkdir(exist_ok=True)
pathlib.Path("metrics/train.json").write_text(json.dumps({"accuracy": accuracy, "rounds": args.rounds}) + "\n")
