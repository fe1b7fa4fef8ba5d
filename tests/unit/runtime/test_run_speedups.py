"""The runtime's fast paths give the same results as the slow ones they replace."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlprism import dump_yaml
from mlprism.runtime.ledger import Ledger
from mlprism.runtime.lockfile import HEADER, _render_fast, render_document

TRICKY = ["true", "y", "n", "No", "null", "~", "", "0.1", "1e3", "1_000", "0x1F", "0o17", "012", "2020-01-01",
          "-x", "a:b", "a: b", "---", "...", ".", ".inf", ".nan", "./x", ".hidden/a.txt", "_", "a b", "#x", "x#y",
          "s0", "out/s1.txt", "data/raw.csv", "abc123" * 3, "0" * 64, "e" * 64, "1.0", "+1", "=", "a=b", "é",
          "x" * 130, "1:20", "12:30:45", "0b101", "a\nb", "'q'", '"q"', "[a]", "{a}", "*a", "&a", "!a", "%a", "@a"]

scalars = st.one_of(
    st.sampled_from(TRICKY), st.text(max_size=12), st.from_regex(r"[a-z0-9_./-]{1,20}", fullmatch=True),
    st.integers(-10**20, 10**20), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.1, 1e20, 1e-05, -0.0, 3.0, 1e16, 2.5e-300]),
)
keys = st.one_of(st.sampled_from(TRICKY), st.from_regex(r"[a-z0-9_./-]{1,20}", fullmatch=True), st.text(max_size=8))
docs = st.recursive(scalars, lambda children: st.dictionaries(keys, children, max_size=5), max_leaves=30)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, docs, max_size=6))
def test_fast_lock_rendering_is_byte_identical_to_dump_yaml(doc: dict[str, object]) -> None:
    fast = _render_fast(doc)
    assert fast is None or fast == dump_yaml(doc, header=HEADER)
    assert render_document(doc) == dump_yaml(doc, header=HEADER)      # and so is every other lock


def test_a_lock_the_fast_renderer_declines_is_still_dump_yaml() -> None:
    doc = {"version": 1, "pipeline": "p", "data": {"raw": {"path": "data/r\U0001f600 s.csv", "hash": "ab", "size": 3}}}
    assert _render_fast(doc) is None
    assert render_document(doc) == dump_yaml(doc, header=HEADER)


def test_fast_lock_rendering_covers_a_usual_lock() -> None:
    steps = {f"s{i}": {"fingerprint": f"{i + 0xabc:064x}", "params": {"lr": 0.1, "depth": i, "opt": "adam", "x": None},
                       "inputs": {f"out/s{i - 1}.txt": {"hash": "ab" * 32, "size": i}},
                       "outputs": {f"out/s{i}.txt": {"hash": "cd" * 32, "size": 3}, "m": {}}} for i in range(50)}
    doc = {"version": 1, "pipeline": "p", "data": {"raw": {"path": "data/raw.csv", "hash": "0" * 62 + "ab", "size": 3}},
           "steps": steps}
    assert _render_fast(doc) == dump_yaml(doc, header=HEADER)
    assert _render_fast({"a": math.inf, "b": -math.inf, "c": math.nan}) == dump_yaml(
        {"a": math.inf, "b": -math.inf, "c": math.nan}, header=HEADER)


LAZY = """
apiVersion: mlprism/v1
name: lazy
params: {k: 1}
steps:
  build:
    run: echo build >> "$COUNT_FILE" && mkdir -p model/parts && echo w > model/weights.txt && echo 1 > model/parts/a.txt
    outputs: [model]
  score:
    run: echo score ${params.k} >> "$COUNT_FILE" && cat model/parts/a.txt > s.txt && echo '{"acc":${params.k}}' > m.json
    inputs: [model/parts/a.txt]
    outputs: [s.txt]
    metrics: m.json
  report:
    run: echo report >> "$COUNT_FILE" && cat s.txt model/weights.txt > all.txt
    inputs: [s.txt, model]
    outputs: [all.txt]
    CACHE
sweep:
  params: {k: [1, 2]}
  select: {metric: acc, goal: max}
"""


def _sweep_project(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: bool) -> tuple[Path, Any]:
    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    proj = project({"pipeline.yaml": LAZY.replace("CACHE", "" if cache else "cache: false")})

    def executed() -> list[str]:
        lines = count.read_text().splitlines() if count.exists() else []
        count.unlink(missing_ok=True)
        return sorted(lines)

    return proj, executed


def test_a_no_op_sweep_runs_nothing_and_restores_nothing_into_its_workspaces(cli, project, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    proj, executed = _sweep_project(project, tmp_path, monkeypatch, cache=True)
    first = json.loads(cli("run", "pipeline.yaml", "--json", cwd=proj).out)
    # `report` reads the same bytes in both combinations: one run serves both
    assert first["status"] == "succeeded" and executed() == ["build", "report", "score 1", "score 2"]
    (proj / "all.txt").unlink()                                      # the project lost an output
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 0 and res["status"] == "succeeded" and executed() == []
    assert [run["combo"] for run in res["sweep"]["runs"] if run["selected"]] == ["k=2"]
    assert (proj / "all.txt").read_text() == "1\nw\n" and (proj / "s.txt").read_text() == "1\n"
    assert (proj / "model" / "parts" / "a.txt").read_text() == "1\n"
    assert not list((proj / ".mlprism" / "sweeps").glob("*/*"))
    with Ledger(proj / ".mlprism" / "ledger.db") as ledger:          # every combination is recorded, all cached
        children = ledger.children(res["run_id"])
        assert len(children) == 2 and all(c["status"] == "succeeded" for c in children)
        for c in children:
            steps = ledger.step_runs(c["id"])
            assert sorted(s["step"] for s in steps) == ["build", "report", "score"]
            assert all(s["status"] == "cached" and s["cache_hit"] for s in steps)
            assert ledger.metrics(c["id"])["score"]["acc"] in (1.0, 2.0)
        assert len(ledger.reports("gate")) == 0


def test_a_step_that_must_run_in_a_sweep_gets_the_deferred_outputs_it_reads_first(cli, project, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    proj, executed = _sweep_project(project, tmp_path, monkeypatch, cache=False)
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    assert executed() == ["build", "report", "report", "score 1", "score 2"]
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)              # `report` (cache: false) runs in both
    assert r.code == 0, r.out + r.err
    assert executed() == ["report", "report"]
    assert (proj / "all.txt").read_text() == "1\nw\n"

