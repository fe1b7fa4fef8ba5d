"""The generated reference docs are up to date, and what they are generated from is complete.

When a test here fails after you added a command, a code, a hook, a target or
a schema field: run `python docs/generate.py` and commit docs/reference/.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import mlprism
import pytest
from mlprism import hookspecs

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
PAGES = ["spec.md", "cli.md", "error-codes.md", "hooks.md", "capabilities.md"]


def test_committed_reference_docs_are_current(tmp_path: Path) -> None:
    """Regenerate into a temp dir (a clean process: no test's registrations leak in) and compare."""
    res = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    stale = [p for p in PAGES if not (REFERENCE / p).exists()
             or (REFERENCE / p).read_text(encoding="utf-8") != (tmp_path / p).read_text(encoding="utf-8")]
    assert not stale, f"stale generated docs: {stale}; run `python docs/generate.py`"


def test_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    for page in PAGES:
        (tmp_path / page).write_text((REFERENCE / page).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "hooks.md").write_text("stale\n")
    res = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 1
    assert "hooks.md" in res.stderr and "python docs/generate.py" in res.stderr
    assert (tmp_path / "hooks.md").read_text() == "stale\n", "--check must not write"


def _hookspecs() -> list[tuple[str, object]]:
    return [(n, f) for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "mlprism_spec")]


@pytest.mark.parametrize("name", [n for n, _ in _hookspecs()])
def test_every_hook_is_documented(name: str) -> None:
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert len(doc.split()) >= 10, f"hookspec {name} needs a docstring: it is the hook's reference"
    assert f"### `{name}`" in (REFERENCE / "hooks.md").read_text(encoding="utf-8")


def test_every_code_has_a_summary_and_is_listed() -> None:
    page = (REFERENCE / "error-codes.md").read_text(encoding="utf-8")
    for code, summary in mlprism.CODES.items():
        assert summary.strip(), f"{code} has no summary"
        if code.startswith("MLP"):
            assert f"`{code}`" in page, f"{code} is missing from error-codes.md"


def test_every_feature_is_in_the_capability_matrix() -> None:
    page = (REFERENCE / "capabilities.md").read_text(encoding="utf-8")
    for feature in mlprism.FEATURES:
        assert f"### `{feature}`" in page
