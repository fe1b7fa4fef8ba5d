"""Property-based hardening: hostile specs and overrides never crash mlprism or hang it.

Every generated case runs `mlprism validate` in this process (the real CLI entry point) and, when the spec
is valid, `mlprism compile --target all --check` (every installed target). Each must end in success or in
diagnostics that carry a registered code and a location: exit 3 (an internal error, i.e. a traceback
turned into MLP001) fails the test, and so does a case that takes longer than CASE_SECONDS.

CI runs a fixed, derandomized slice (about 2,000 cases, under a minute on a quiet machine). A longer run:

    MLPRISM_FUZZ_EXAMPLES=100000 .venv/bin/pytest tests/hardening/test_fuzz.py -q -p no:randomly

(MLPRISM_FUZZ_EXAMPLES is the number of examples of the biggest test; the others scale with it;
MLPRISM_FUZZ_SEED picks another random seed; MLPRISM_FUZZ_REPORT=FILE appends the counts as JSON.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from mlprism._internal.cli import main
from mlprism.diagnostics import CODES

from tests.hardening.strategies import (
    FILES_ON_DISK,
    OVERRIDE_PROJECT,
    defaults_lists,
    dump,
    hostile_valid_specs,
    mutated_specs,
    overrides,
    yaml_texts,
)

CASE_SECONDS = 20.0
BIG = int(os.environ.get("MLPRISM_FUZZ_EXAMPLES", "1000"))
LONG = "MLPRISM_FUZZ_EXAMPLES" in os.environ
SEED = int(os.environ.get("MLPRISM_FUZZ_SEED", "20261126"))


def examples(share: float) -> int:
    return max(10, int(BIG * share))


def fuzz_settings(share: float) -> settings:
    return settings(max_examples=examples(share), deadline=None, derandomize=not LONG, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


STATS: Counter[str] = Counter()
SLOWEST: dict[str, float] = {}


class CaseTimeout(BaseException):     # not an Exception: nothing in mlprism may swallow it
    pass


@contextlib.contextmanager
def time_bound(label: str) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"{label} took longer than {CASE_SECONDS}s: a hang")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        elapsed = time.perf_counter() - t0
        SLOWEST[label] = max(SLOWEST.get(label, 0.0), elapsed)


def cli(cwd: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def check_diagnostics(code: int, out: str, err: str, what: str) -> list[dict[str, Any]]:
    assert code != 3, f"{what}: internal error (a crash)\n{out}\n{err}"
    assert "Traceback" not in out + err, f"{what}: traceback\n{out}\n{err}"
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"{what}: --json printed no JSON (exit {code})\n{out}\n{err}") from None
    diags = report.get("diagnostics", [])
    for d in diags:
        assert d["code"] in CODES, f"{what}: unregistered code {d}"
        assert d["message"], d
        if d["severity"] == "error" and d["code"] != "MLP002":    # MLP002: the command line itself
            loc = d.get("location") or {}
            assert loc.get("override") or loc.get("line"), f"{what}: an error without a location: {d}"
    return diags


def small(spec: Any) -> bool:
    """Compile only specs of a few steps: emitting hundreds of steps for five targets is slow, not interesting."""
    return isinstance(spec, dict) and (not isinstance(spec.get("steps"), dict) or len(spec["steps"]) <= 30)


def run_case(root: Path, spec_text: bytes | str, ovs: list[str] = (), compile_: bool = False) -> None:
    data = spec_text.encode("utf-8", "surrogatepass") if isinstance(spec_text, str) else spec_text
    (root / "pipeline.yaml").write_bytes(data)
    with time_bound("validate"):
        code, out, err = cli(root, "validate", "pipeline.yaml", *ovs, "--json")
    diags = check_diagnostics(code, out, err, "validate")
    assert code in (0, 2), f"validate exit {code}\n{out}\n{err}"
    if code == 2:
        assert any(d["severity"] == "error" for d in diags), out
        STATS["validate: diagnostics"] += 1
        STATS.update(f"code {d['code']}" for d in diags if d["severity"] == "error")
        return
    STATS["validate: ok"] += 1
    if compile_:
        with time_bound("compile"):
            code, out, err = cli(root, "compile", "pipeline.yaml", *ovs, "--target", "all", "--out", "gen", "--check")
        assert code in (0, 1, 2), f"compile exit {code}\n{out}\n{err}"
        assert "Traceback" not in out + err, err
        STATS[f"compile --target all: exit {code}"] += 1
        if code == 2:
            assert "error[MLP" in err, err


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mlprism-fuzz-") as tmp:
        root = Path(tmp)
        for rel in FILES_ON_DISK:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("a,b\n1,2\n")
        yield root


@pytest.fixture(scope="module")
def group_project() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mlprism-fuzz-groups-") as tmp:
        root = Path(tmp)
        for rel in FILES_ON_DISK:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("a,b\n1,2\n")
        for rel, text in OVERRIDE_PROJECT.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        yield root


@fuzz_settings(1.2)
@seed(SEED)
@given(text=yaml_texts())
def test_random_yaml_never_crashes(workdir: Path, text: bytes) -> None:
    run_case(workdir, text)
    STATS["cases: random YAML"] += 1


@fuzz_settings(0.6)
@seed(SEED)
@given(spec=mutated_specs(), do_compile=st.integers(0, 9))
def test_mutated_specs_never_crash(workdir: Path, spec: dict[str, Any], do_compile: int) -> None:
    run_case(workdir, dump(spec), compile_=do_compile == 0 and small(spec))   # a tenth: emitting is the slow part
    STATS["cases: mutated specs"] += 1


@fuzz_settings(0.06)
@seed(SEED)
@given(ovs=overrides())
def test_hostile_overrides_never_crash(group_project: Path, ovs: list[str]) -> None:
    (group_project / "pipeline.yaml").write_text(OVERRIDE_PROJECT["pipeline.yaml"])
    run_case(group_project, OVERRIDE_PROJECT["pipeline.yaml"], ovs, compile_=False)
    STATS["cases: hostile overrides"] += 1


@fuzz_settings(0.04)
@seed(SEED)
@given(text=defaults_lists())
def test_hostile_defaults_lists_never_crash(group_project: Path, text: str) -> None:
    run_case(group_project, text)
    STATS["cases: hostile defaults"] += 1


@fuzz_settings(0.06)
@seed(SEED)
@given(spec=hostile_valid_specs())
def test_hostile_text_compiles_for_every_target(workdir: Path, spec: dict[str, Any]) -> None:
    run_case(workdir, dump(spec), compile_=True)
    STATS["cases: compile"] += 1


def test_report() -> None:
    """Print (and with MLPRISM_FUZZ_REPORT, append) the counts of this run: what docs/hardening.md records."""
    report = {"examples_setting": BIG, "seed": SEED, "derandomized": not LONG, "counts": dict(sorted(STATS.items())),
              "slowest_case_seconds": {k: round(v, 3) for k, v in SLOWEST.items()}}
    print(json.dumps(report, indent=2))
    if os.environ.get("MLPRISM_FUZZ_REPORT"):
        with open(os.environ["MLPRISM_FUZZ_REPORT"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(report) + "\n")
    if STATS:   # run together with the property tests (not alone, e.g. with -k)
        assert all(v < CASE_SECONDS for v in SLOWEST.values())
