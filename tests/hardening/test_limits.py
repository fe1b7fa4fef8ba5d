"""Limits: oversized specs, alias bombs and pathological nesting are refused quickly, with bounded memory.

Each case runs `mlprism validate` as a real process and measures its wall time and peak RSS (wait4);
the numbers are recorded in docs/hardening.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlprism._internal.load import MAX_BYTES, MAX_NODES

BIN = Path(sys.executable).parent / "mlprism"
SECONDS = 10.0          # generous for a loaded 2-core CI machine; typical runs take well under 2 s
RSS_MIB = 250


# Linux carries a process's peak RSS across exec: a child started straight from the pytest worker
# would report the worker's own peak (hundreds of MiB after other tests). A fresh, small Python
# process starts `mlprism validate` and reports what wait4 says of it.
_MEASURE = """
import os, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "wb") as err:
    proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss / 1024)
"""


def measured(spec: Path) -> tuple[int, str, float, float]:
    """(exit code, stderr, seconds, peak RSS MiB) of `mlprism validate SPEC`, a real process."""
    err_path = spec.parent / "stderr.txt"
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(err_path), str(BIN), "validate", str(spec)],
                         cwd=spec.parent, capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), err_path.read_text(errors="replace"), float(out[1]), float(out[2])


def spec_with(tmp_path: Path, body: str | bytes) -> Path:
    spec = tmp_path / "pipeline.yaml"
    head = b"apiVersion: mlprism/v1\nname: limits\nsteps:\n  a: {run: echo a}\n"
    spec.write_bytes(head + (body.encode() if isinstance(body, str) else body))
    return spec


def bomb(levels: int) -> str:
    lines = ["params:", "  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


CASES = {
    "over the size limit (5 MiB)": lambda: "params:\n  blob: " + "x" * (5 * 1024 * 1024) + "\n",
    "billion laughs (10^9 values)": lambda: bomb(9),
    "quadratic blow-up (10^30 values)": lambda: bomb(30),
    "10,000 nested flow lists": lambda: "params:\n  p: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "1,500 nested block mappings": lambda: "params:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(1_500)),
    "300,000 keys": lambda: "params: {" + ", ".join(f"k{i}: {i}" for i in range(300_000)) + "}\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_quickly_with_bounded_memory(tmp_path: Path, name: str) -> None:
    body = CASES[name]()
    spec = spec_with(tmp_path, body)
    code, err, seconds, rss = measured(spec)
    assert code == 2, err
    assert "error[MLP103]" in err or "error[MLP100]" in err, err
    assert "Traceback" not in err
    assert seconds < SECONDS, f"{name}: {seconds:.2f}s"
    assert rss < RSS_MIB, f"{name}: {rss:.0f} MiB"
    print(f"{name}: {len(body.encode()) / 1024:.0f} KiB, exit {code}, {seconds:.2f}s, {rss:.0f} MiB peak")


def test_limits_are_what_the_docs_say() -> None:
    assert MAX_BYTES == 4 * 1024 * 1024
    assert MAX_NODES == 200_000


def test_a_big_valid_spec_is_not_refused(tmp_path: Path) -> None:
    """A 2,000-step spec (about 200 KiB) is well inside every limit."""
    steps = "".join(f"  s{i}:\n    run: echo {i}\n    outputs: [o/{i}]\n" + (f"    inputs: [o/{i - 1}]\n" if i else "")
                    for i in range(2_000))
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("apiVersion: mlprism/v1\nname: big\nsteps:\n" + steps)
    code, err, seconds, rss = measured(spec)
    assert code == 0, err
    assert seconds < 4 * SECONDS
    print(f"2,000 steps: {spec.stat().st_size / 1024:.0f} KiB, {seconds:.2f}s, {rss:.0f} MiB peak")
