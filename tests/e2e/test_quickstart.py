"""The quickstart end to end: gates, registry, champion/challenger, serving, drift and retraining.

Real processes (the steps, `mlprism serve`), real SQLite files, real HTTP. One project copy is
walked through the lifecycle in order, as a user would: each phase builds on the previous one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlprism.runtime.ledger import Ledger
from mlprism.runtime.registry import ModelRegistry
from scipy import stats

BIN = Path(sys.executable).parent
DRIFTED = {"mean_radius", "mean_perimeter", "mean_area", "worst_radius", "worst_area", "mean_texture"}
CHALLENGER_WEAK = ["params.max_depth=1", "params.n_estimators=2"]   # accuracy ok, f1 below the champion


def _json(result) -> dict:
    assert result.out.strip(), result.err
    return json.loads(result.out)


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def qs(tmp_path: Path) -> Path:
    import shutil

    root = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
    dest = tmp_path / "quickstart"
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns(".mlprism", "__pycache__", "models", "metrics",
                                                              "train.csv", "test.csv"))
    if not (dest / "data" / "live.csv").exists():
        subprocess.run([sys.executable, str(dest / "make_data.py")], check=True)
    return dest


def phase_01_failing_gate_blocks_registration(qs: Path, cli) -> None:
    r = cli("run", "pipeline.yaml", "params.min_accuracy=0.999", "--json", cwd=qs)
    assert r.code == 1, r.out + r.err
    res = _json(r)
    evaluate = res["steps"]["evaluate"]
    assert evaluate["status"] == "failed" and evaluate["code"] == "MLP402"
    cond = {c["metric"]: c for c in evaluate["gate"]["conditions"]}
    assert cond["accuracy"]["passed"] is False and cond["accuracy"]["bound"] == 0.999
    assert res["registered"] is None
    listed = _json(cli("models", "list", "--json", cwd=qs))
    assert listed["versions"] == []


def phase_02_run_registers_with_lineage(qs: Path, cli) -> None:
    r = cli("run", "pipeline.yaml", "--json", cwd=qs)
    assert r.code == 0, r.out + r.err
    res = _json(r)
    assert res["registered"] == 1
    show = _json(cli("models", "show", "cancer@latest", "--json", cwd=qs))
    assert show["version"] == 1 and show["stages"] == []
    lineage = show["lineage"]
    assert lineage["run_id"] == res["run_id"] == show["run_id"]
    assert set(lineage["data"]) == {"raw", "live"} and all(len(h) == 64 for h in lineage["data"].values())
    assert lineage["params"]["n_estimators"] == 50        # conf/env/dev.yaml
    assert lineage["metrics"]["accuracy"] == res["steps"]["evaluate"]["metrics"]["accuracy"] >= 0.9
    assert "git_commit" in lineage and lineage["fingerprint"]
    assert show["signature"]["features"][0] == "mean_radius" and len(show["signature"]["features"]) == 30


def phase_03_champion_challenger(qs: Path, cli) -> None:
    r = cli("models", "promote", "cancer", "1", "--stage", "production", "--reason", "first model", cwd=qs)
    assert r.code == 0 and "promoted cancer v1 to production" in r.out
    champion = ModelRegistry(qs / ".mlprism").champion_metrics("cancer", "production")
    # a weaker challenger passes the fixed bar but not the champion: blocked, nothing registered
    r = cli("run", "pipeline.yaml", *CHALLENGER_WEAK, "--json", cwd=qs)
    assert r.code == 1, r.out + r.err
    cond = {c["metric"]: c for c in _json(r)["steps"]["evaluate"]["gate"]["conditions"]}
    assert cond["accuracy"]["passed"] is True
    assert cond["f1"]["passed"] is False and cond["f1"]["kind"] == "not_worse_than"
    assert cond["f1"]["bound"] == pytest.approx(champion["f1"] - 0.01)
    assert [v["version"] for v in _json(cli("models", "list", "cancer", "--json", cwd=qs))["versions"]] == [1]
    # (a challenger that holds against the champion: the retrain in test_07 registers version 2)


def phase_04_serve_over_http(qs: Path) -> None:
    proc = subprocess.Popen([str(BIN / "mlprism"), "serve", "pipeline.yaml", "--port", "0"], cwd=qs,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert " on http://127.0.0.1:" in line, line + (proc.stdout.read() if proc.poll() is not None else "")
        url = line.split(" on ", 1)[1].split()[0]
        header, rows = _read(qs / "data" / "live.csv")
        body = json.dumps({"rows": [dict(zip(header, map(float, row), strict=True)) for row in rows[:3]]})
        req = urllib.request.Request(f"{url}/predict", body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.load(resp)
        assert answer["model"] == {"name": "cancer", "version": 1}         # the production model
        assert len(answer["predictions"]) == 3 and set(answer["predictions"]) <= {0, 1}
        with urllib.request.urlopen(f"{url}/metadata", timeout=10) as resp:
            meta = json.load(resp)
        assert meta["version"] == 1 and meta["lineage"]["metrics"]["f1"] > 0.9 and len(meta["features"]) == 30
        bad = urllib.request.Request(f"{url}/predict", json.dumps({"rows": [{"mean_radius": "x"}]}).encode(),
                                     {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 422
        detail = json.load(err.value)["detail"]
        assert {"loc": ["body", "rows", 0, "mean_texture"], "msg": "Field required", "type": "missing"} in detail
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    log_header, logged = _read(qs / ".mlprism" / "serve" / "requests.csv")     # deploy.serve.log_requests
    assert log_header == [*header, "prediction"] and len(logged) == 3


def phase_05_drift_detected_with_reference_statistics(qs: Path, cli) -> None:
    r = cli("monitor", "pipeline.yaml", "--no-retrain", "--json", cwd=qs)
    assert r.code == 1, r.err
    report = _json(r)
    assert report["drifted"] and set(report["drifted_columns"]) == DRIFTED
    assert report["retrain"] is None
    assert Path(report["report_html"]).is_file() and Path(report["report_json"]).is_file()
    # the numbers, recomputed independently from the files
    ref_h, ref_rows = _read(qs / "data" / "train.csv")
    cur_h, cur_rows = _read(qs / "data" / "live.csv")
    ref = np.array([float(r[ref_h.index("mean_radius")]) for r in ref_rows])
    cur = np.array([float(r[cur_h.index("mean_radius")]) for r in cur_rows])
    col = next(c for c in report["columns"] if c["name"] == "mean_radius")
    ks = stats.ks_2samp(ref, cur)
    assert col["ks"] == pytest.approx(ks.statistic, rel=1e-9) and col["ks_pvalue"] == pytest.approx(ks.pvalue, rel=1e-6)
    bins = min(10, min(len(ref), len(cur)) // 20)          # 119 live rows: quintiles
    assert bins == 5 and len(col["bins"]) == bins
    edges = np.quantile(ref, np.arange(1, bins) / bins)
    r_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=bins) / len(ref)
    c_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=bins) / len(cur)
    r_share, c_share = np.maximum(r_share, 1e-4), np.maximum(c_share, 1e-4)
    expected_psi = float(np.sum((c_share - r_share) * np.log(c_share / r_share)))
    assert col["psi"] == pytest.approx(expected_psi, rel=1e-6) and col["psi"] > 1.0
    with Ledger(qs / ".mlprism" / "ledger.db") as ledger:
        stored = ledger.reports(kind="drift", limit=1)[0]["payload"]
    assert stored["drifted_columns"] == report["drifted_columns"]
    # the human-readable form: exit 1, MLP409 with the report's path
    r = cli("monitor", "pipeline.yaml", "--no-retrain", "--report-dir", "out", cwd=qs)
    assert r.code == 1 and "error[MLP409]" in r.err and "drift.html" in r.err
    assert (qs / "out" / "drift.html").read_text().count("<svg") == len(report["drifted_columns"])


def phase_06_no_drift_on_resampled_reference(qs: Path, cli) -> None:
    header, rows = _read(qs / "data" / "train.csv")
    live = qs / "data" / "live.csv"
    saved = live.read_bytes()
    rng = np.random.default_rng(11)
    features = [h for h in header if h != "target"]
    sample = [[row[header.index(f)] for f in features] for row in (rows[i] for i in rng.integers(0, len(rows), 300))]
    _write(live, features, sample)
    try:
        for method in ("psi", "ks", "chi2"):
            r = cli("monitor", "pipeline.yaml", f"monitor.drift.method={method}", "--json", cwd=qs)
            assert r.code == 0, (method, r.out[-2000:], r.err)
            report = _json(r)
            assert report["drifted_columns"] == [] and len(report["columns"]) == 30
            assert max(c["score"] for c in report["columns"]) < 0.2
    finally:
        live.write_bytes(saved)


def phase_07_drift_triggers_retraining_through_the_gates(qs: Path, cli) -> None:
    # fresh labelled data arrives (the first 30 rows are replaced by the later ones, re-ordered)
    raw = qs / "data" / "raw.csv"
    header, rows = _read(raw)
    _write(raw, header, rows[30:] + rows[:30][::-1])
    versions_before = [v.version for v in ModelRegistry(qs / ".mlprism").list("cancer")]
    r = cli("monitor", "pipeline.yaml", "--json", cwd=qs)
    assert r.code == 1, r.err                 # drift is reported even though the pipeline ran again
    retrain = _json(r)["retrain"]
    assert retrain is not None and retrain["status"] in ("succeeded", "failed")
    assert retrain["steps"]["prepare"] == "succeeded" and retrain["steps"]["train"] == "succeeded"
    with Ledger(qs / ".mlprism" / "ledger.db") as ledger:
        run = ledger.get_run(retrain["run_id"])
        gate = ledger.reports(kind="retrain", run_id=retrain["run_id"])
        assert run["status"] == retrain["status"] and gate and gate[0]["payload"]["drift_report"]
        metrics = ledger.metrics(retrain["run_id"])["evaluate"]
    # the same gates decided: registered exactly when the challenger held against production
    champion = ModelRegistry(qs / ".mlprism").champion_metrics("cancer", "production")
    assert metrics["accuracy"] >= 0.9 and metrics["f1"] >= champion["f1"] - 0.01     # this data passes
    versions_after = [v.version for v in ModelRegistry(qs / ".mlprism").list("cancer")]
    assert retrain["status"] == "succeeded" and retrain["registered"] == versions_after[-1]
    assert versions_after == [*versions_before, versions_before[-1] + 1]
    new = ModelRegistry(qs / ".mlprism").resolve("cancer@latest")
    assert new.run_id == retrain["run_id"] and new.stages == ()           # promotion stays a decision
    assert new.lineage["data"]["raw"] != ModelRegistry(qs / ".mlprism").resolve("cancer@1").lineage["data"]["raw"]
    assert math.isfinite(metrics["f1"]) and os.path.exists(qs / "mlprism.lock")


def phase_08_promote_and_rollback(qs: Path, cli) -> None:
    assert cli("models", "promote", "cancer", "2", "--stage", "production", cwd=qs).code == 0
    assert _json(cli("models", "show", "cancer@production", "--json", cwd=qs))["version"] == 2
    r = cli("models", "rollback", "cancer", "--stage", "production", "--json", cwd=qs)
    assert r.code == 0 and _json(r)["version"] == 1 and _json(r)["previous"] == 2
    assert _json(cli("models", "show", "cancer@production", "--json", cwd=qs))["version"] == 1
    history = _json(cli("models", "history", "cancer", "--json", cwd=qs))
    assert [(h["action"], h["version"]) for h in history] == [("promote", 1), ("promote", 2), ("rollback", 1)]
    assert history[0]["reason"] == "first model" and all(h["who"] and h["at"] for h in history)
    # refused and unknown: diagnostics, exit 2
    r = cli("models", "rollback", "cancer", "--stage", "production", cwd=qs)
    assert r.code == 2 and "MLP408" in r.err
    r = cli("models", "show", "cancer@9", cwd=qs)
    assert r.code == 2 and "MLP407" in r.err and "versions: 1, 2" in r.err
    r = cli("models", "promote", "cancre", "1", "--stage", "production", cwd=qs)
    assert r.code == 2 and "did you mean `cancer`" in r.err


def test_quickstart_lifecycle(qs: Path, cli) -> None:
    """One project through the whole lifecycle, in order (one test, so pytest-xdist keeps it together)."""
    phase_01_failing_gate_blocks_registration(qs, cli)
    phase_02_run_registers_with_lineage(qs, cli)
    phase_03_champion_challenger(qs, cli)
    phase_04_serve_over_http(qs)
    phase_05_drift_detected_with_reference_statistics(qs, cli)
    phase_06_no_drift_on_resampled_reference(qs, cli)
    phase_07_drift_triggers_retraining_through_the_gates(qs, cli)
    phase_08_promote_and_rollback(qs, cli)


def test_demo_script_runs_end_to_end_then_says_up_to_date(qs: Path) -> None:
    """`make demo` = examples/quickstart/demo.py: the README's first command, twice, as a user runs it."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def demo() -> str:
        res = subprocess.run([sys.executable, str(qs / "demo.py")], cwd=qs.parent, env=env, text=True,
                             capture_output=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res.stdout + res.stderr

    first = demo()
    assert "model `cancer` registered: version 1" in first
    assert "promoted cancer v1 to production" in first
    assert re.search(r"POST http://127\.0\.0\.1:\d+/predict .*\n  -> prediction [01] \((malignant|benign)\)", first)
    assert "drift (psi > 0.2): 6 of 30 column(s) drifted" in first
    assert (qs / ".mlprism" / "reports" / "drift" / "latest.html").is_file()
    tail = first.split("Where to look next:", 1)[1]
    assert "cd quickstart" in tail
    for command in ("mlprism runs list", "mlprism models list cancer", "open .mlprism/reports/drift/latest.html"):
        assert command in tail, command
    assert "everything is up to date" not in first

    second = demo()
    assert "everything up to date (3 steps cached)" in second
    assert "==> everything is up to date: nothing was retrained" in second
    assert "cancer@production is version 1" in second and "-> prediction" in second
    assert "model `cancer` unchanged: already registered as version 1" in second and "registered: version" not in second
