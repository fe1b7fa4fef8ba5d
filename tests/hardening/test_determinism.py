"""Determinism: the same spec compiles to byte-identical files for every installed target, whatever the
hash seed, the working directory, the time, the time zone or the locale (real processes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "mlprism"

VARIANTS = [
    # (hash seed, time zone, locale, run from)
    ("0", "UTC", "C.UTF-8", "project"),
    ("4242", "Pacific/Kiritimati", "C", "root"),
    ("random", "America/St_Johns", "POSIX", "subdir"),
]


def project(tmp_path: Path, case: str) -> Path:
    dest = tmp_path / "proj"
    if case == "init":
        assert run_cli("init", str(dest), "--name", "starter", cwd=tmp_path).code == 0
    else:
        shutil.copytree(ROOT / "tests" / "golden" / case, dest, ignore=shutil.ignore_patterns("expected", ".mlprism"))
    (dest / "sub").mkdir(exist_ok=True)
    return dest


def installed_targets() -> list[str]:
    res = run_cli("plugins", "--json")
    assert res.code == 0, res.err
    return sorted({t for plugin in json.loads(res.out)["plugins"] for t in plugin["targets"]})


def supported_targets(proj: Path) -> list[str]:
    """The installed targets that can express this spec (the others refuse it with MLP302 only)."""
    ok = []
    for target in installed_targets():
        res = run_cli("compile", "pipeline.yaml", "--target", target, "--out", "gen", "--check", cwd=proj)
        codes = sorted(set(re.findall(r"error\[(MLP\d+)\]", res.err)))
        assert res.code in (0, 1) or codes == ["MLP302"], res.err
        if res.code in (0, 1):
            ok.append(target)
    return ok


def compile_all(proj: Path, out: Path, targets: list[str], variant: tuple[str, str, str, str]) -> None:
    seed, tz, locale, where = variant
    env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": tz, "LC_ALL": locale, "LANG": locale}
    if where == "project":
        cwd, spec = proj, "pipeline.yaml"
    elif where == "root":
        cwd, spec = Path("/"), str(proj / "pipeline.yaml")
    else:
        cwd, spec = proj / "sub", "../pipeline.yaml"
    dest = out if len(targets) > 1 else out / targets[0]     # several targets: one subdirectory each
    args = [a for t in targets for a in ("--target", t)]
    res = subprocess.run([str(BIN), "compile", spec, *args, "--out", str(dest)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), os.access(p, os.X_OK))
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["full", "minimal", "init"])
def test_byte_identical_across_seeds_directories_times_and_zones(tmp_path: Path, case: str) -> None:
    proj = project(tmp_path, case)
    targets = supported_targets(proj)
    assert targets, "no installed target can compile this spec"
    outputs = []
    for i, variant in enumerate(VARIANTS):
        if i:
            time.sleep(1.1)          # another second: a timestamp anywhere would differ
        out = tmp_path / f"out{i}"
        compile_all(proj, out, targets, variant)
        outputs.append(tree(out))
    assert {rel.split("/", 1)[0] for rel in outputs[0]} == set(targets)
    first = outputs[0]
    assert first, "nothing was generated"
    for other in outputs[1:]:
        assert other.keys() == first.keys()
        differing = [rel for rel in first if first[rel] != other[rel]]
        assert not differing, f"differ between runs: {differing}"
    # no machine paths leak into what is generated
    for rel, (data, _) in first.items():
        assert str(tmp_path).encode() not in data, f"{rel} contains the machine's path"
