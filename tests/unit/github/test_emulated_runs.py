"""The generated workflow, run job by job here with the real mlprism (see emulate.py): outputs move
between jobs as artifacts, the sweep's best leg is selected, a second run is all cache hits
through `actions/cache` keyed by `mlprism fingerprint`, a failed gate fails its job (every leg's: nothing
is selected), and a combination that fails its gate is only not a candidate."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import mlprism
import pytest

from tests.unit.github.conftest import write_project
from tests.unit.github.emulate import Emulator, Store

SPEC = """
apiVersion: mlprism/v1
name: e2e
params: {scale: 1, bias: 1}
steps:
  make:
    run: mkdir -p data && printf '1\\n2\\n3\\n' > data/x.txt
    outputs: [data/x.txt]
  score:
    run: python3 score.py ${params.scale} ${params.bias}
    inputs: [data/x.txt, score.py]
    outputs: [out/model.txt]
    metrics: metrics/score.json
    gate: [{metric: accuracy, min: 0.5}]
sweep:
  params: {scale: [1, 2]}
  select: {metric: accuracy, goal: max}
registry: {name: e2e, artifact: out/model.txt, register_after: score, flavor: file}
triggers: {manual: true}
"""

SCORE = """\
import json, os, sys
scale, bias = float(sys.argv[1]), float(sys.argv[2])
accuracy = max(0.0, 1 - abs(scale - 2) / 4 - max(0.0, bias - 1))
os.makedirs("out", exist_ok=True)
os.makedirs("metrics", exist_ok=True)
with open("out/model.txt", "w") as fh:
    fh.write(f"scale={scale} bias={bias}\\n")
with open("metrics/score.json", "w") as fh:
    json.dump({"accuracy": accuracy}, fh)
"""


def _log(results: dict, job: str) -> str:
    return "\n".join(results[job].log)


@pytest.mark.slow
def test_three_runs_of_the_generated_workflow(tmp_path: Path) -> None:
    spec = write_project(tmp_path / "project", SPEC, {"score.py": SCORE})
    text = mlprism.compile_spec(str(spec), "github-actions")[".github/workflows/e2e.yml"].decode()
    store = Store(tmp_path / "store")
    bin_dir = Path(sys.executable).parent

    def run(n: int, inputs: dict[str, str] | None = None) -> dict:
        return Emulator(text, spec.parent, store, tmp_path / "work", bin_dir, inputs).run()

    # 1. everything runs; the sweep keeps scale=2 (accuracy 1.0 against 0.75)
    first = run(1)
    assert all(r.ok and not r.skipped for r in first.values()), {k: _log(first, k)[-3000:] for k in first}
    assert first["select_sweep"].outputs["select"]["index"] == "1"
    with tarfile.open(store.artifact_dir("score") / "score.tar") as tar:
        assert tar.extractfile("out/model.txt").read() == b"scale=2.0 bias=1.0\n"
    assert "| 1 **best** | params.scale=2 | 1 |" in first["select_sweep"].summary
    assert "| accuracy | 1.0 |" in first["score"].summary
    assert "cache miss: mlprism-e2e-make-" in _log(first, "make")
    assert set(store.artifacts()) >= {"make", "score", "score.sweep-0", "score.sweep-1", "records.make"}

    # 2. nothing changed: every step is restored from actions/cache, the champion is restored too
    second = run(2)
    assert all(r.ok and not r.skipped for r in second.values())
    for job in ("make", "score"):
        log = _log(second, job)
        assert f"cache hit: mlprism-e2e-{job}-" in log
        assert "up to date" in log, log[-2000:]
    assert "cache hit: mlprism-e2e-registry-1001" in _log(second, "score")

    # 3. a person dispatches bias=3: every leg fails its gate, so nothing is selected
    third = run(3, {"bias": "3"})
    assert third["make"].ok and "up to date" in _log(third, "make")
    assert not third["score"].ok
    assert "accuracy" in _log(third, "score")
    assert not third["select_sweep"].ok and "no leg of the sweep passed" in _log(third, "select_sweep")
    assert "select" not in third["select_sweep"].outputs

    # 4. bias=1.3: leg 0 (accuracy 0.45) fails its gate, leg 1 (0.7) passes: as locally, the run fails (a
    #    leg's job did) but the best passing combination is selected, published and its registry kept
    fourth = run(4, {"bias": "1.3"})
    assert not fourth["score"].ok
    assert fourth["select_sweep"].ok, _log(fourth, "select_sweep")[-3000:]
    assert fourth["select_sweep"].outputs["select"]["index"] == "1"
    assert "| 0 | params.scale=1 | failed |" in fourth["select_sweep"].summary
    assert "| 1 **best** | params.scale=2 | 0.7 |" in fourth["select_sweep"].summary
    with tarfile.open(store.artifact_dir("score") / "score.tar") as tar:
        assert tar.extractfile("out/model.txt").read() == b"scale=2.0 bias=1.3\n"
    assert any(k.startswith("mlprism-e2e-registry-1004") for _, k, _ in store._entries())
