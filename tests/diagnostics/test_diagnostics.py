"""Data-driven bad-input cases: each file in cases/ is a spec whose header says
what must be reported.

    # expect: MLP224 7:5          (code, then line:col in this very file)
    # expect: MLP110 override     (a diagnostic located at a command-line override)
    # overrides: params.x=[1,     (optional, space separated)
    # file: conf/env/dev.yaml     (optional: following lines up to `# end` go to that file)

Every case must exit 2, print no traceback, and report each expected code at
its location; every error it reports has a hint.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import run_cli

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))


def parse_case(path: Path) -> tuple[str, list[tuple[str, str]], list[str], dict[str, str]]:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")   # some cases hold non-UTF-8 bytes
    expects: list[tuple[str, str]] = []
    overrides: list[str] = []
    extra: dict[str, str] = {}
    spec_lines: list[str] = []
    current: str | None = None
    for line in text.splitlines(keepends=True):
        m = re.match(r"#\s*expect:\s*(MLP\d{3})\s+(\S+)", line)
        if m:
            expects.append((m.group(1), m.group(2)))
        m2 = re.match(r"#\s*overrides:\s*(.*)$", line)
        if m2:
            overrides.extend(shlex.split(m2.group(1)))
        m3 = re.match(r"#\s*file:\s*(\S+)", line)
        if m3:
            current = m3.group(1)
            extra[current] = ""
            spec_lines.append("#\n")       # keep the spec's line numbers
            continue
        if current is not None:
            if re.match(r"#\s*end\b", line):
                current = None
            else:
                extra[current] += line[2:] if line.startswith("# ") else line.lstrip("#")
            spec_lines.append("#\n")
            continue
        spec_lines.append(line)
    return "".join(spec_lines), expects, overrides, extra


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case(case: Path, tmp_path: Path) -> None:
    spec, expects, overrides, extra = parse_case(case)
    assert expects, f"{case.name} has no `# expect:` line"
    (tmp_path / "pipeline.yaml").write_text(spec, encoding="utf-8", errors="surrogateescape")
    for rel, text in extra.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    res = run_cli("validate", "pipeline.yaml", *overrides, "--json", cwd=tmp_path)
    assert "Traceback" not in res.out + res.err
    assert res.code == 2, f"exit {res.code}: {res.out}{res.err}"
    diags = json.loads(res.out)["diagnostics"]
    found = []
    for d in diags:
        loc = d.get("location", {})
        where = "override" if "override" in loc else f"{loc.get('line')}:{loc.get('col')}"
        found.append((d["code"], where))
        assert d["message"], d
        if d["severity"] == "error":
            assert d.get("hint"), f"every user error has a hint: {d}"
    for code, where in expects:
        assert (code, where) in found, f"expected {code} at {where}; got {found}"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 60
