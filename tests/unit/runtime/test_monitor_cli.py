"""`mlprism monitor` on a small project: exit codes, reports, the ledger, --watch and its cron schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mlprism._internal.cli.lifecycle import next_fire
from mlprism.runtime.ledger import Ledger

SPEC = """
apiVersion: mlprism/v1
name: mon
steps:
  make: {run: "true", outputs: [ref.csv]}
monitor:
  schedule: "*/5 * * * *"
  drift: {reference: ref.csv, current: cur.csv, method: ks, threshold: 0.3}
"""


def _csv(path: Path, values: list[float], colour: list[str]) -> None:
    path.write_text("x,colour\n" + "".join(f"{v},{c}\n" for v, c in zip(values, colour, strict=True)))


@pytest.fixture
def mon(project, tmp_path: Path) -> Path:
    proj = project({"pipeline.yaml": SPEC})
    xs = [i / 10 for i in range(200)]
    _csv(proj / "ref.csv", xs, ["a", "b"] * 100)
    _csv(proj / "cur.csv", [x + 0.05 for x in xs[::2]], ["a", "b"] * 50)
    return proj


def test_no_drift_then_drift(mon: Path, cli) -> None:
    r = cli("monitor", "pipeline.yaml", "--json", cwd=mon)
    assert r.code == 0, r.err
    assert json.loads(r.out)["drifted"] is False
    _csv(mon / "cur.csv", [x / 10 + 15 for x in range(100)], ["a"] * 100)
    r = cli("monitor", "pipeline.yaml", cwd=mon)
    assert r.code == 1 and "error[MLP409]" in r.err and "x, colour" in r.err
    assert (mon / ".mlprism" / "reports" / "drift" / "latest.html").is_file()
    assert len(list((mon / ".mlprism" / "reports" / "drift").glob("drift-*.json"))) >= 1
    with Ledger(mon / ".mlprism" / "ledger.db") as ledger:
        kinds = [r["payload"]["drifted"] for r in ledger.reports(kind="drift")]
    assert kinds == [True, False]


def test_watch_repeats_on_an_interval(mon: Path, cli) -> None:
    r = cli("monitor", "pipeline.yaml", "--watch", "--interval", "0.1", "--count", "3", cwd=mon)
    assert r.code == 0 and r.out.count("next check at") == 2 and r.out.count("drift (ks > 0.3)") == 3


def test_monitor_errors(mon: Path, cli, project) -> None:
    (mon / "cur.csv").unlink()
    r = cli("monitor", "pipeline.yaml", cwd=mon)
    assert r.code == 2 and "MLP227" in r.err and "cur.csv" in r.err
    plain = project({"pipeline.yaml": "apiVersion: mlprism/v1\nname: p\nsteps:\n  a: {run: 'true'}\n"},
                    root=mon.parent / "plain")
    r = cli("monitor", "pipeline.yaml", cwd=plain)
    assert r.code == 2 and "no `monitor` section" in r.err
    r = cli("monitor", "pipeline.yaml", "--watch", "~monitor.schedule", cwd=mon)
    assert r.code == 2 and "--watch needs" in r.err


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("0 * * * *", "2026-03-01T10:15", "2026-03-01T11:00"),
    ("*/5 * * * *", "2026-03-01T10:15", "2026-03-01T10:20"),
    ("30 3 * * 1", "2026-03-01T10:15", "2026-03-02T03:30"),          # 2026-03-02 is a Monday
    ("0 0 1 jan *", "2026-03-01T10:15", "2027-01-01T00:00"),
    ("0 12 15 * mon", "2026-03-01T10:15", "2026-03-02T12:00"),       # day-of-month OR day-of-week
    ("15 10-12/2 * * *", "2026-03-01T10:15", "2026-03-01T12:15"),
    ("0 0 * * 7", "2026-03-01T10:15", "2026-03-08T00:00"),            # 7 is Sunday too
])
def test_next_fire(expr: str, after: str, expected: str) -> None:
    got = next_fire(expr, datetime.fromisoformat(after).replace(tzinfo=UTC))
    assert got == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_report_dir_that_is_a_file_is_a_usage_error(mon: Path, cli) -> None:
    (mon / "taken").write_text("x")
    r = cli("monitor", "pipeline.yaml", "--report-dir", "taken", cwd=mon)
    assert r.code == 2 and "MLP002" in r.err and "hint:" in r.err, r.err     # was MLP001, exit 3
    assert (mon / "taken").read_text() == "x"
