"""`--timings`: seconds per compiler stage and per target, on stderr; stdout unchanged."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SPEC = str(ROOT / "tests" / "golden" / "minimal" / "pipeline.yaml")
LINE = re.compile(r"^timing: (\S.*?)\s+(\d+\.\d{3}) s$")


def _timed(err: str) -> dict[str, float]:
    found = [LINE.match(line) for line in err.splitlines() if line.startswith("timing:")]
    assert all(found), err
    return {m.group(1): float(m.group(2)) for m in found if m}


def test_validate_timings(cli) -> None:
    plain = cli("validate", SPEC)
    r = cli("validate", SPEC, "--timings")
    assert r.code == 0 and r.out == plain.out
    assert list(_timed(r.err)) == ["load", "compose", "validate", "lower", "graph", "inputs", "passes"]


def test_compile_timings_name_every_target(cli, tmp_path: Path) -> None:
    r = cli("compile", SPEC, "-t", "local", "-t", "docker", "--out", str(tmp_path), "--timings")
    assert r.code == 0
    stages = _timed(r.err)
    assert {"load", "graph", "emit local", "emit docker", "write"} <= set(stages)
    assert all(v >= 0 for v in stages.values())
    r = cli("compile", SPEC, "-t", "local", "-t", "docker", "--out", str(tmp_path), "--timings", "--check")
    assert r.code == 0 and "check" in _timed(r.err)
