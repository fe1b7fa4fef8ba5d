"""Steps started from the scheduling loop (Run._start) beside steps run by worker threads (Run._launch).

A plain local step (no timeout, no retries, output not masked, in the runner's directory) is
spawned by the loop itself and its pidfd polled; every other step still goes to a worker. These
tests pin which path a step takes and that the two work together: results from workers wake a
loop that is polling pidfds, weighted steps wait for the slots inline steps hold, and an
interrupted run stops the steps the loop started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlprism.runtime import executor

from tests.conftest import BIN

pytestmark = pytest.mark.skipif(not (hasattr(os, "pidfd_open") and hasattr(os, "eventfd")),
                                reason="the loop starts steps itself only with pidfds and eventfds (Linux)")

WAIT = 'for i in $(seq 200); do [ -e {f} ] && break; sleep 0.05; done; [ -e {f} ]'


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the steps a worker thread ran (Run._launch), in order."""
    seen: list[str] = []
    original = executor.Run._launch

    def spy(self: executor.Run, step, decision):  # type: ignore[no-untyped-def]
        seen.append(step.name)
        return original(self, step, decision)

    monkeypatch.setattr(executor.Run, "_launch", spy)
    yield seen


def test_plain_steps_are_started_by_the_loop_and_cached(cli, project, launches: list[str]) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: diamond
        steps:
          top: {run: echo top > top.txt, outputs: [top.txt]}
          left: {run: cat top.txt > left.txt; echo l >> left.txt, inputs: [top.txt], outputs: [left.txt]}
          right: {run: cat top.txt > right.txt; echo r >> right.txt, inputs: [top.txt], outputs: [right.txt]}
          bottom: {run: cat left.txt right.txt > bottom.txt, inputs: [left.txt, right.txt], outputs: [bottom.txt]}
    """})
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 0, r.out + r.err
    assert launches == []                                       # no worker ran a step
    assert (proj / "bottom.txt").read_text() == "top\nl\ntop\nr\n"
    assert {n: s["status"] for n, s in res["steps"].items()} == dict.fromkeys(
        ["top", "left", "right", "bottom"], "succeeded")
    assert all(s["exit_code"] == 0 and s["log"] for s in res["steps"].values())
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code == 0 and {s["status"] for s in json.loads(r.out)["steps"].values()} == {"cached"}


def test_a_failing_inline_step_fails_like_any_other(cli, project, launches: list[str]) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: failing
        steps:
          bad: {run: echo oops; exit 3, outputs: [b.txt]}
          quiet: {run: 'true', outputs: [q.txt]}
    """})
    r = cli("run", "pipeline.yaml", "-j", "2", "--keep-going", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 1 and launches == []
    assert res["steps"]["bad"]["code"] == "MLP400" and res["steps"]["bad"]["error"] == "exit code 3"
    assert res["steps"]["quiet"]["code"] == "MLP401"
    assert (proj / res["steps"]["bad"]["log"]).read_text() == "oops\n"


def test_worker_and_inline_steps_run_at_once(cli, project, launches: list[str]) -> None:
    # `timed` has a timeout (a worker runs it), `plain` does not (the loop starts it): each waits for the
    # other to have started, so the run ends only if both run together and the worker's result wakes
    # the loop while it polls the plain step's pidfd
    proj = project({"pipeline.yaml": f"""
        apiVersion: mlprism/v1
        name: mixed
        steps:
          timed:
            run: touch timed.started; {WAIT.format(f="plain.started")}; echo t > t.txt
            outputs: [t.txt]
            timeout: 60s
          plain:
            run: touch plain.started; {WAIT.format(f="timed.started")}; sleep 0.3; echo p > p.txt
            outputs: [p.txt]
          after: {{run: cat t.txt p.txt > after.txt, inputs: [t.txt, p.txt], outputs: [after.txt]}}
    """})
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert launches == ["timed"]
    assert (proj / "after.txt").read_text() == "t\np\n"


def test_a_weighted_step_waits_for_the_slots_inline_steps_hold(cli, project, launches: list[str]) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: weights
        steps:
          small: {run: 'date +%s.%N > small.start; sleep 0.4; date +%s.%N > small.end', outputs: [small.end]}
          big:
            run: date +%s.%N > big.start; sleep 0.1; date +%s.%N > big.end
            outputs: [big.end]
            resources: {cpu: "2"}
    """})
    r = cli("run", "pipeline.yaml", "-j", "2", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert launches == ["big"]                  # both slots were not free when it was its turn: a worker waited
    spans = {n: (float((proj / f"{n}.start").read_text()), float((proj / f"{n}.end").read_text()))
             for n in ("small", "big")}
    first, second = sorted(spans.values())
    assert first[1] <= second[0]                # never both at once: `big` takes the two slots


def test_masked_output_and_retries_go_to_workers(cli, project, launches: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPRISM_RETRY_BACKOFF", "0.01")
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: routes
        steps:
          retried: {run: echo r > r.txt, outputs: [r.txt], retries: 2}
          plain: {run: echo p > p.txt, outputs: [p.txt]}
    """})
    assert cli("run", "pipeline.yaml", "-j", "2", cwd=proj).code == 0
    assert launches == ["retried"]
    launches.clear()
    (proj / "pipeline.yaml").write_text((proj / "pipeline.yaml").read_text() + """environment:
  secrets: [TOKEN]
""")
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    r = cli("run", "pipeline.yaml", "-j", "2", "--force", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert sorted(launches) == ["plain", "retried"]            # a secret to mask: every step through a pipe


def test_an_interrupted_run_stops_the_steps_the_loop_started(project, tmp_path: Path) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: long
        steps:
          first: {run: echo $$ > first.pid; sleep 60; echo x > a.txt, outputs: [a.txt]}
          second: {run: echo $$ > second.pid; sleep 60; echo y > b.txt, outputs: [b.txt]}
    """})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([str(BIN / "mlprism"), "run", "pipeline.yaml", "-j", "2", "--json"], cwd=proj,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(pids) < 2:
        pids = [int(p.read_text()) for p in (proj / "first.pid", proj / "second.pid")
                if p.exists() and p.read_text().strip()]
        time.sleep(0.05)
    assert len(pids) == 2, "the steps did not start"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10                           # not the steps' 60 s
    res = json.loads(out)
    assert res["status"] == "interrupted", err
    assert {s["status"] for s in res["steps"].values()} == {"failed"}
    for pid in pids:                                            # both process groups are gone
        assert _group_gone(pid), f"process group {pid} still runs"


def _group_gone(pgid: int, wait: float = 5.0) -> bool:
    """Nothing of the process group runs (zombies wait for init to reap them)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        alive = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[2]) == pgid and fields[0] != "Z":
                    alive.append(entry.name)
        if not alive:
            return True
        time.sleep(0.05)
    return False
