"""What plugin authors test with: golden-file helpers (and the conformance suite).

Golden files: compile a spec, compare every emitted file with the files kept
under ``expected/``; run pytest with ``--update-goldens`` to rewrite them::

    from mlprism.testing import assert_golden
    assert_golden(mlprism.compile_spec("pipeline.yaml", "make"), Path("expected/make"))
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

__all__ = ["UPDATE_ENV", "assert_golden"]

#: Set to 1 (pytest's --update-goldens does) to rewrite expected files instead of comparing.
UPDATE_ENV = "MLPRISM_UPDATE_GOLDENS"


def assert_golden(files: Mapping[str, bytes | str], expected_dir: Path, update: bool | None = None) -> None:
    """Assert that `files` equal the tree under `expected_dir` exactly (no file more, none less)."""
    update = os.environ.get(UPDATE_ENV) == "1" if update is None else update
    data = {k: (v.encode() if isinstance(v, str) else v) for k, v in files.items()}
    if update:
        if expected_dir.exists():
            shutil.rmtree(expected_dir)
        for rel, content in sorted(data.items()):
            dest = expected_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
        return
    if not expected_dir.is_dir():
        raise AssertionError(f"no golden files at {expected_dir}; run pytest with --update-goldens")
    existing = {p.relative_to(expected_dir).as_posix() for p in expected_dir.rglob("*") if p.is_file()}
    problems = []
    for rel in sorted(existing - data.keys()):
        problems.append(f"missing from output: {rel}")
    for rel in sorted(data.keys() - existing):
        problems.append(f"new file not in goldens: {rel}")
    for rel in sorted(data.keys() & existing):
        want = (expected_dir / rel).read_bytes()
        if want != data[rel]:
            diff = difflib.unified_diff(want.decode(errors="replace").splitlines(),
                                        data[rel].decode(errors="replace").splitlines(),
                                        f"expected/{rel}", f"emitted/{rel}", lineterm="", n=2)
            problems.append("\n".join(list(diff)[:60]))
    if problems:
        raise AssertionError("golden files differ (rerun with --update-goldens if intended):\n" + "\n".join(problems))
