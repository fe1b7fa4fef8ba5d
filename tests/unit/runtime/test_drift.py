"""Drift statistics checked against hand-computed values and scipy; reports on real files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from mlprism.diagnostics import DiagnosticError
from mlprism.runtime.drift import (
    EPSILON,
    chi2_test,
    compare,
    compare_files,
    ks_statistic,
    numeric_edges,
    psi,
)
from scipy import stats


def test_psi_hand_computed() -> None:
    # 50/50 -> 25/75: (0.25-0.5)*ln(0.25/0.5) + (0.75-0.5)*ln(0.75/0.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(expected, abs=1e-12)
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-12)
    # an empty bin counts as EPSILON
    assert psi([100, 0], [50, 50]) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPSILON) * math.log(0.5 / EPSILON))


def test_ks_and_chi2_match_scipy() -> None:
    rng = np.random.default_rng(7)
    a = np.round(rng.normal(0, 1, 400), 1)         # rounded: ties on purpose
    b = np.round(rng.normal(0.3, 1.2, 250), 1)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert ks_statistic(a, a) == 0.0
    ref, cur = [30, 50, 20, 0], [10, 40, 45, 5]
    stat, p, v = chi2_test(ref, cur)
    table = np.array([[30, 50, 20, 0], [10, 40, 45, 5]])[:, :4]
    table = table[:, table.sum(axis=0) > 0]
    exp_stat, exp_p, _, _ = stats.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(exp_stat) and p == pytest.approx(exp_p)
    assert v == pytest.approx(math.sqrt(exp_stat / table.sum()))


def test_numeric_edges_are_reference_deciles() -> None:
    edges = numeric_edges(list(range(1, 101)))
    assert len(edges) == 9
    assert edges == pytest.approx(list(np.quantile(np.arange(1, 101), [i / 10 for i in range(1, 10)])))
    assert numeric_edges([0, 0, 0, 1, 1, 2]) == [1.0, 2.0]        # few distinct values: one bin each


def _table(columns: dict[str, np.ndarray | list]) -> dict[str, list[str]]:
    return {k: [str(v) for v in vals] for k, vals in columns.items()}


def _data(seed: int, n: int, shift: float = 0.0, colours: tuple[float, float, float] = (0.5, 0.3, 0.2)):
    rng = np.random.default_rng(seed)
    return _table({
        "age": np.round(rng.normal(40 + shift * 10, 10, n), 2),
        "income": np.round(rng.lognormal(10, 0.5, n), 2),
        "colour": rng.choice(["red", "green", "blue"], n, p=list(colours)),
    })


@pytest.mark.parametrize("method", ["psi", "ks", "chi2"])
def test_shift_is_drift_and_resample_is_not(method: str) -> None:
    ref = _data(1, 2000)
    # a bootstrap resample of the reference: same distribution
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 2000, 1000)
    resample = {k: [v[i] for i in idx] for k, v in ref.items()}
    report = compare(ref, resample, method=method, threshold=0.1 if method != "psi" else 0.2)
    assert not report.drifted, report.summary()
    assert all(c.score < 0.1 for c in report.columns)
    # age shifted by one standard deviation, colours re-weighted
    shifted = _data(3, 1000, shift=1.0, colours=(0.2, 0.3, 0.5))
    report = compare(ref, shifted, method=method, threshold=0.1 if method != "psi" else 0.2)
    assert report.drifted_columns == ["age", "colour"], report.summary()
    age = next(c for c in report.columns if c.name == "age")
    assert age.kind == "numeric" and age.mean_current > age.mean_reference + 8
    # the reported PSI/KS are the statistics of the documented binning
    ref_age = [float(v) for v in ref["age"]]
    cur_age = [float(v) for v in shifted["age"]]
    edges = numeric_edges(ref_age)
    rc = np.bincount(np.searchsorted(edges, ref_age, side="right"), minlength=len(edges) + 1)
    cc = np.bincount(np.searchsorted(edges, cur_age, side="right"), minlength=len(edges) + 1)
    rs, cs = np.maximum(rc / rc.sum(), EPSILON), np.maximum(cc / cc.sum(), EPSILON)
    assert age.psi == pytest.approx(float(np.sum((cs - rs) * np.log(cs / rs))))
    assert age.ks == pytest.approx(stats.ks_2samp(ref_age, cur_age).statistic)
    assert age.ks_pvalue == pytest.approx(stats.ks_2samp(ref_age, cur_age).pvalue)
    colour = next(c for c in report.columns if c.name == "colour")
    assert colour.kind == "categorical" and colour.ks is None


def _write_csv(path: Path, table: dict[str, list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(table))
        w.writerows(zip(*table.values(), strict=True))
    return path


def test_files_report_json_and_html(tmp_path: Path) -> None:
    ref = _data(1, 800)
    ref["target"] = ["0", "1"] * 400                   # only in the reference: skipped
    cur = _data(4, 500, shift=1.5)
    cur["age"][0] = ""                                 # a missing value
    r = _write_csv(tmp_path / "data" / "train.csv", ref)
    c = _write_csv(tmp_path / "data" / "live.csv", cur)
    report = compare_files(r, c, method="psi", threshold=0.2, display_base=tmp_path)
    assert report.reference == "data/train.csv" and report.current == "data/live.csv"
    assert report.skipped == {"target": "not in the current data"}
    assert "not compared: target (not in the current data)" in report.summary()     # on the console too
    age = next(col for col in report.columns if col.name == "age")
    assert age.drifted and age.missing_current == 1 and age.n_current == 499
    assert set(report.meta["data"]) == {"data/train.csv", "data/live.csv"}
    json_path, html_path = report.write(tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["drifted"] is True and data["drifted_columns"] == ["age"]
    assert data["columns"][0]["name"] == "age" and len(data["columns"][0]["bins"]) == 10
    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 1    # one chart: one drifted column
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "drift in 1 of 3 columns" in page
    # explicit columns
    only = compare_files(r, c, method="ks", threshold=0.2, columns=["income"])
    assert [col.name for col in only.columns] == ["income"] and not only.drifted


def test_errors_are_diagnostics(tmp_path: Path) -> None:
    r = _write_csv(tmp_path / "a.csv", {"x": ["1", "2"], "y": ["a", "b"]})
    c = _write_csv(tmp_path / "b.csv", {"z": ["1", "2"]})
    for call, code in [
        (lambda: compare_files(tmp_path / "missing.csv", c), "MLP227"),
        (lambda: compare_files(r, c), "MLP227"),
        (lambda: compare_files(r, r, columns=["q"]), "MLP227"),
        (lambda: compare_files(r, r, method="kl"), "MLP203"),
    ]:
        with pytest.raises(DiagnosticError) as exc:
            call()
        assert exc.value.diagnostics[0].code == code
    (tmp_path / "empty.csv").write_text("x,y\n")
    with pytest.raises(DiagnosticError) as exc:
        compare_files(r, tmp_path / "empty.csv")
    assert "no rows" in exc.value.diagnostics[0].message


def test_small_samples_use_fewer_bins() -> None:
    from mlprism.runtime.drift import n_bins

    assert n_bins(5000, 5000) == 10 and n_bins(5000, 119) == 5 and n_bins(30, 30) == 2
    rng = np.random.default_rng(5)
    ref = _table({"x": np.round(rng.normal(0, 1, 400), 3)})
    cur = _table({"x": np.round(rng.normal(0, 1, 60), 3)})     # same distribution, small sample
    col = compare(ref, cur, method="psi").columns[0]
    assert len(col.bins) == 3 and not col.drifted


def test_a_missing_monitored_file_points_at_its_key_or_override(cli, project) -> None:
    """`mlprism monitor` when the current data does not exist: MLP227 at `monitor.drift.current` in the
    spec, or at the override that set it (it named no place at all)."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: watched
        steps:
          a: {run: printf 'x\\n1\\n' > ref.csv, outputs: [ref.csv]}
        monitor:
          schedule: "0 * * * *"
          drift: {reference: ref.csv, current: live.csv}
    """, "ref.csv": "x\n1\n2\n"})
    r = cli("monitor", "pipeline.yaml", cwd=proj)
    assert r.code == 2 and "MLP227" in r.err and "live.csv" in r.err, r.err
    assert "pipeline.yaml:7:" in r.err, r.err
    r = cli("monitor", "pipeline.yaml", "monitor.drift.current=other.csv", cwd=proj)
    assert r.code == 2 and "monitor.drift.current=other.csv" in r.err and "other.csv" in r.err, r.err


@pytest.mark.parametrize("kind", ["empty", "directory", "missing"])
def test_a_data_file_that_cannot_be_read_says_what_it_is_with_a_hint(tmp_path: Path, kind: str) -> None:
    from mlprism.diagnostics import DiagnosticError
    from mlprism.runtime.drift import read_table

    path = tmp_path / "current.csv"
    if kind == "empty":
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(DiagnosticError) as exc:
        read_table(path, "current")
    [d] = exc.value.diagnostics
    expected = {"empty": "is empty", "directory": "is a directory", "missing": "does not exist"}[kind]
    assert d.code == "MLP227" and expected in d.message and d.hint, d.render()
