"""Scores the model; the API key is in the environment while it computes the metrics."""

import json
import pathlib
import sys

from common import secret, shout

shout("evaluate")
key = secret("API_KEY")
model = json.loads(pathlib.Path("models/model.json").read_text())
rows = [line.split(",") for line in pathlib.Path("data/clean.csv").read_text().splitlines()[1:]]
hits = sum((float(x) > model["threshold"]) == bool(int(y)) for x, y in rows)
accuracy = hits / len(rows)
print(f"evaluate: accuracy {accuracy:.3f} (scored with key {key})", file=sys.stderr)
pathlib.Path("metrics").mkdir(exist_ok=True)
pathlib.Path("metrics/eval.json").write_text(json.dumps({"accuracy": accuracy, "n": len(rows)}) + "\n")
