"""Gates, registration and sweeps through `mlprism run` (real processes, the real registry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlprism.runtime.registry import ModelRegistry

TRAIN = """
import json, sys
lr, depth = float(sys.argv[1]), int(sys.argv[2])
rows = open("data/train.csv").read().split()
acc = round(1 - abs(lr - 0.1) - 0.01 * abs(depth - 4), 4)
open("models/model.txt", "w").write(f"lr={lr} depth={depth} rows={len(rows)}\\n")
json.dump({"accuracy": acc, "f1": acc - 0.05}, open("metrics/train.json", "w"))
"""

SPEC = """
apiVersion: mlprism/v1
name: churn
params:
  lr: 0.1
  depth: 4
  min_acc: 0.5
data:
  raw: {path: data/raw.csv}
steps:
  prepare:
    run: echo prepare >> "$COUNT_FILE" && head -n 8 data/raw.csv > data/train.csv
    inputs: [data/raw.csv]
    outputs: [data/train.csv]
  train:
    run: echo "train ${params.lr} ${params.depth}" >> "$COUNT_FILE" && python src/train.py ${params.lr} ${params.depth}
    inputs: [data/train.csv, src/train.py]
    outputs: [models/model.txt]
    metrics: metrics/train.json
  evaluate:
    run: echo evaluate >> "$COUNT_FILE" && cp metrics/train.json metrics/eval.json
    inputs: [models/model.txt]
    needs: [train]
    metrics: metrics/eval.json
    gate:
      - metric: accuracy
        min: ${params.min_acc}
      - {metric: f1, not_worse_than: production, tolerance: 0.01}
  publish:
    run: echo publish >> "$COUNT_FILE" && cp models/model.txt published.txt
    inputs: [models/model.txt]
    needs: [evaluate]
    outputs: [published.txt]
registry:
  name: churn
  artifact: models/model.txt
  register_after: evaluate
"""

SWEEP = """
sweep:
  params: {lr: [0.01, 0.1, 0.3], depth: [2, 4]}
  select: {metric: accuracy, goal: max}
"""


@pytest.fixture
def churn(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))

    def make(extra: str = "") -> tuple[Path, object]:
        proj = project({"pipeline.yaml": SPEC + extra, "src/train.py": TRAIN,
                        "data/raw.csv": "\n".join(str(i) for i in range(20)) + "\n"})

        def executed() -> list[str]:
            lines = count.read_text().splitlines() if count.exists() else []
            count.unlink(missing_ok=True)
            return lines

        return proj, executed

    return make


def test_gate_passes_registers_with_lineage(cli, churn) -> None:
    proj, _ = churn()
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 0 and res["registered"] == 1
    gate = res["steps"]["evaluate"]["gate"]
    assert gate["passed"] and gate["conditions"][1]["note"] == "no champion in this stage yet"
    reg = ModelRegistry(proj / ".mlprism")
    v = reg.get("churn", 1)
    lineage = v.lineage if hasattr(v, "lineage") else v.to_dict()["lineage"]
    assert lineage["run_id"] == res["run_id"] and lineage["metrics"]["accuracy"] == 1.0
    assert lineage["data"]["raw"] == res["data"]["raw"]["hash"]
    assert lineage["params"]["lr"] == 0.1 and lineage["fingerprint"] == res["steps"]["evaluate"]["fingerprint"]
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)           # cached: same artifact, same version
    assert json.loads(r.out)["registered"] == 1 and len(reg.list("churn")) == 1


def test_failed_gate_stops_downstream_and_registers_nothing(cli, churn) -> None:
    proj, executed = churn()
    r = cli("run", "pipeline.yaml", "params.min_acc=0.99", "params.lr=0.3", cwd=proj)
    assert r.code == 1
    assert "[evaluate] FAILED [MLP402]: gate failed: accuracy: 0.8 >= 0.99 (min)" in r.out
    assert "FAIL accuracy: 0.8 >= 0.99 (min)" in r.out and "PASS f1" in r.out
    assert "[publish] blocked" in r.out and not (proj / "published.txt").exists()
    assert "publish" not in executed()
    assert ModelRegistry(proj / ".mlprism").list() == []


def test_champion_challenger(cli, churn) -> None:
    proj, _ = churn()
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0          # accuracy 1.0, f1 0.95
    reg = ModelRegistry(proj / ".mlprism")
    reg.promote("churn", 1, "production")
    r = cli("run", "pipeline.yaml", "params.lr=0.05", "--json", cwd=proj)   # f1 0.90 < 0.95 - 0.01
    res = json.loads(r.out)
    assert r.code == 1 and res["steps"]["evaluate"]["code"] == "MLP402"
    cond = res["steps"]["evaluate"]["gate"]["conditions"][1]
    assert cond["kind"] == "not_worse_than" and cond["bound"] == pytest.approx(0.94) and not cond["passed"]
    assert [v.version for v in reg.list("churn")] == [1]
    r = cli("run", "pipeline.yaml", "params.lr=0.095", "--json", cwd=proj)  # f1 0.945: within tolerance
    assert r.code == 0 and json.loads(r.out)["registered"] == 2


def test_sweep_of_six_runs_shares_prepare_and_selects_the_best(cli, churn) -> None:
    proj, executed = churn(SWEEP)
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)
    assert r.code == 0, r.out + r.err
    res = json.loads(r.out)
    lines = executed()
    assert lines.count("prepare") == 1                              # unaffected by the swept params: once
    assert sorted(x for x in lines if x.startswith("train")) == sorted(
        f"train {lr} {d}" for lr in (0.01, 0.1, 0.3) for d in (2, 4))
    sweep = res["sweep"]
    assert len(sweep["runs"]) == 6 and all(run["status"] == "succeeded" for run in sweep["runs"])
    best = next(run for run in sweep["runs"] if run["selected"])
    assert best["combo"] == "lr=0.1,depth=4" and best["metrics"]["accuracy"] == 1.0
    assert (proj / "models" / "model.txt").read_text() == "lr=0.1 depth=4 rows=8\n"   # restored into the project
    assert res["registered"] == 1
    assert ModelRegistry(proj / ".mlprism").get("churn", 1).to_dict()["lineage"]["params"]["depth"] == 4
    assert not list((proj / ".mlprism" / "sweeps").glob("*/*"))     # workspaces are removed
    r = cli("runs", "compare", res["run_id"], cwd=proj)
    assert r.code == 0
    header = r.out.splitlines()[0]
    assert all(run["run_id"] in header for run in sweep["runs"])     # one column per run of the sweep
    assert "param lr" in r.out and "metric train:accuracy" in r.out and "* selected by the sweep" in r.out
    r = cli("runs", "compare", res["run_id"], "--json", cwd=proj)
    cmp = json.loads(r.out)
    assert len(cmp["runs"]) == 6 and {"depth", "lr"} <= set(cmp["differ"]["params"])
    r = cli("run", "pipeline.yaml", cwd=proj)                       # again: every run is cached
    assert r.code == 0 and executed() == []
    r = cli("run", "pipeline.yaml", "--no-sweep", "-m", "params.depth=2,4", "params.lr=0.3", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 0 and [x["combo"] for x in res["sweep"]["runs"]] == ["depth=2", "depth=4"]
    assert executed() == []                                          # both combinations ran in the first sweep
