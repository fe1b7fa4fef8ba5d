"""Steps started from the scheduling loop (Run._start) beside steps run by worker threads (Run._launch).

A local step in the runner's directory whose output is not masked is spawned by the loop
itself, its pidfd polled, its timeout and retries timed by the loop (_Started); a step the
launcher cannot start that way goes to a worker. These tests pin which path a step takes and
that the two work together: results from workers wake a loop that is polling pidfds, weighted
steps wait for the slots inline steps hold, timeouts kill the step's whole process group, and an
interrupted run stops the steps the loop started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


def test_the_display_shows_what_fast_inline_steps_print(cli, project, launches: list[str]) -> None:
    # the display follows a log from its size when the step is announced: announced after the spawn,
    # a step that prints at once lost its first lines
    steps = "\n".join(f"          s{i}: {{run: echo printed-{i} > /dev/stderr; echo {i} > o{i}.txt, outputs: [o{i}.txt]}}"
                      for i in range(8))
    proj = project({"pipeline.yaml": f"""
        apiVersion: mlprism/v1
        name: chatty
        steps:
{steps}
    """})
    r = cli("run", "pipeline.yaml", "-j", "2", cwd=proj)
    assert r.code == 0 and launches == []
    for i in range(8):
        assert f"[s{i}] | printed-{i}" in r.out, r.out


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


def test_worker_and_inline_steps_run_at_once(cli, project, launches: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # `worker` is handed to a worker thread (as a step is when the launcher cannot start it here),
    # `plain` is started by the loop: each waits for the other to have started, so the run ends only
    # if both run together and the worker's result wakes the loop while it polls the plain step's pidfd
    start = executor.Run._start
    monkeypatch.setattr(executor.Run, "_start",
                        lambda self, step, decision: None if step.name == "worker" else start(self, step, decision))
    proj = project({"pipeline.yaml": f"""
        apiVersion: mlprism/v1
        name: mixed
        steps:
          worker:
            run: touch worker.started; {WAIT.format(f="plain.started")}; echo w > w.txt
            outputs: [w.txt]
          plain:
            run: touch plain.started; {WAIT.format(f="worker.started")}; sleep 0.3; echo p > p.txt
            outputs: [p.txt]
          after: {{run: cat w.txt p.txt > after.txt, inputs: [w.txt, p.txt], outputs: [after.txt]}}
    """})
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert launches == ["worker"]
    assert (proj / "after.txt").read_text() == "w\np\n"


def test_timeouts_and_retries_of_inline_steps(cli, project, launches: list[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPRISM_RETRY_BACKOFF", "0.2")
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: timers
        steps:
          slow:
            run: echo "go $(date +%s.%N)"; sleep 30 & echo $! >> bg.pids; sleep 30; echo done > s.txt
            outputs: [s.txt]
            timeout: 1s
            retries: 1
          beside: {run: sleep 0.5; echo b > b.txt, outputs: [b.txt]}
    """})
    t0 = time.monotonic()
    r = cli("run", "pipeline.yaml", "-j", "2", "--keep-going", "--json", cwd=proj)
    elapsed = time.monotonic() - t0
    res = json.loads(r.out)
    assert launches == []                                       # both started by the loop
    assert r.code == 1 and elapsed < 15                         # two 1 s timeouts and a backoff, not 30 s
    steps = res["steps"]
    assert steps["slow"]["code"] == "MLP403" and steps["slow"]["attempts"] == 2
    assert steps["slow"]["error"] == "timed out after 1s (process group killed)"
    assert steps["beside"]["status"] == "succeeded"              # ran while `slow` timed out and waited
    assert "--- mlprism: attempt 2 of 2 ---" in (proj / steps["slow"]["log"]).read_text()
    starts = [float(line.split()[1]) for line in (proj / steps["slow"]["log"]).read_text().splitlines()
              if line.startswith("go ")]
    # the 1 s timeout (counted from the spawn, a little before the shell printed), then the 0.2 s backoff
    assert len(starts) == 2 and starts[1] - starts[0] >= 1.1
    for pid in map(int, (proj / "bg.pids").read_text().split()):
        assert _group_gone(_pgid_of(pid) or pid), "a timed-out attempt left a process running"


def test_the_in_flight_lock_is_held_until_the_record_is_written(cli, project, launches: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # a sweep's other run waiting for the same fingerprint must find the record when it gets the lock,
    # not run the step a second time (test_run_speedups' no-op sweep saw `report` run twice)
    held: list[bool] = []
    save = executor.Run._save

    def spy(self: executor.Run, result, hashed, record):  # type: ignore[no-untyped-def]
        held.append(self.s.inflight(record.fingerprint).locked())
        return save(self, result, hashed, record)

    monkeypatch.setattr(executor.Run, "_save", spy)
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: locks
        steps:
          a: {run: echo a > a.txt, outputs: [a.txt]}
          b: {run: cat a.txt > b.txt, inputs: [a.txt], outputs: [b.txt]}
    """})
    assert cli("run", "pipeline.yaml", "-j", "2", cwd=proj).code == 0
    assert launches == [] and held == [True, True]


CHAIN = """
    apiVersion: mlprism/v1
    name: chain
    steps:
      a: {run: echo a > a.txt, outputs: [a.txt]}
      b: {run: cat a.txt > b.txt; echo b >> b.txt, inputs: [a.txt], outputs: [b.txt]}
      c: {run: cat b.txt > c.txt; echo c >> c.txt, inputs: [b.txt], outputs: [c.txt]}
      gated:
        run: cat c.txt > g.txt; printf '{"acc":0.9}' > m.json
        inputs: [c.txt]
        outputs: [g.txt]
        metrics: m.json
        gate: [{metric: acc, min: 0.5}]
      last: {run: cat g.txt > z.txt, inputs: [g.txt], outputs: [z.txt]}
"""


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """"start X" when the loop starts step X, "save X" when X's outputs are cached and its record written."""
    seen: list[str] = []
    start, save = executor.Run._start, executor.Run._save

    def spy_start(self: executor.Run, step, decision):  # type: ignore[no-untyped-def]
        seen.append(f"start {step.name}")
        return start(self, step, decision)

    def spy_save(self: executor.Run, result, hashed, record):  # type: ignore[no-untyped-def]
        seen.append(f"save {result.name}")
        return save(self, result, hashed, record)

    monkeypatch.setattr(executor.Run, "_start", spy_start)
    monkeypatch.setattr(executor.Run, "_save", spy_save)
    yield seen


@pytest.fixture
def no_room_for_a(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Writing step `a`'s record fails with ENOSPC (as on a full disk) until the function it gives is called."""
    import errno

    from mlprism.runtime.cache import Cache

    put = Cache.put_record

    def full(self: Cache, record):  # type: ignore[no-untyped-def]
        if record.step == "a":
            raise OSError(errno.ENOSPC, "No space left on device")
        return put(self, record)

    monkeypatch.setattr(Cache, "put_record", full)
    yield lambda: monkeypatch.setattr(Cache, "put_record", put)


def test_a_step_is_cached_while_the_step_it_unblocked_runs(cli, project, launches: list[str],
                                                           events: list[str]) -> None:
    # in a chain the runner would idle while the one step runs: the step before is cached then;
    # a gated step is cached before its downstream starts (the gate could still fail it)
    proj = project({"pipeline.yaml": CHAIN})
    r = cli("run", "pipeline.yaml", "-j", "2", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert launches == []
    assert events == ["start a", "start b", "save a", "start c", "save b", "start gated", "save c",
                      "save gated", "start last", "save last"]
    lines = r.out.splitlines()                      # shown as done before the step it unblocked starts
    assert [x for x in lines if x.startswith(("[a] ok in ", "[b] run: "))] == [
        next(x for x in lines if x.startswith("[a] ok in ")), "[b] run: cat a.txt > b.txt; echo b >> b.txt"]
    lock = (proj / "mlprism.lock").read_text()
    assert all(f"  {n}:" in lock for n in ("a", "b", "c", "gated", "last"))
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code == 0 and {s["status"] for s in json.loads(r.out)["steps"].values()} == {"cached"}


def test_a_step_whose_outputs_cannot_be_cached_fails_after_its_downstream_started(
        cli, project, events: list[str], no_room_for_a: Callable[[], None]) -> None:
    proj = project({"pipeline.yaml": CHAIN})
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code == 1, r.out + r.err
    steps = json.loads(r.out)["steps"]
    assert steps["a"]["status"] == "failed" and steps["a"]["code"] == "MLP410"
    assert "cannot write the step's outputs into the cache" in steps["a"]["error"]
    assert steps["a"]["outputs"] == {}
    # b had started on a's (whole) output: it ends and is recorded; nothing after it starts
    assert steps["b"]["status"] == "succeeded"
    assert [steps[n]["status"] for n in ("c", "gated", "last")] == ["cancelled", "blocked", "blocked"]
    assert events[:3] == ["start a", "start b", "save a"] and "start c" not in events
    lock = (proj / "mlprism.lock").read_text()
    assert "  b:" in lock and "  a:" not in lock
    no_room_for_a()                                          # room again
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code == 0, r.out + r.err
    steps = json.loads(r.out)["steps"]
    assert steps["a"]["status"] == "succeeded" and steps["b"]["status"] == "cached"     # a's output is the same
    assert all(steps[n]["status"] == "succeeded" for n in ("c", "gated", "last"))


def test_the_plain_display_shows_a_step_that_failed_late_twice(cli, project, no_room_for_a: Callable[[], None]) -> None:
    proj = project({"pipeline.yaml": CHAIN})
    r = cli("run", "pipeline.yaml", "-j", "2", cwd=proj)
    shown = [x for x in (r.out + r.err).splitlines() if x.startswith("[a] ")]
    assert shown[1].startswith("[a] ok in "), shown
    assert shown[2].startswith("[a] FAILED [MLP410]: cannot write the step's outputs into the cache"), shown


def test_an_interrupt_caches_the_steps_that_finished(cli, project, events: list[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # a finished step not yet cached when the run is interrupted is cached before the run stops:
    # the next run does not run it again
    start = executor.Run._start

    def interrupted(self: executor.Run, step, decision):  # type: ignore[no-untyped-def]
        if step.name == "b":
            raise KeyboardInterrupt
        return start(self, step, decision)

    monkeypatch.setattr(executor.Run, "_start", interrupted)
    proj = project({"pipeline.yaml": CHAIN})
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code != 0
    assert events == ["start a", "save a"]           # b was interrupted as it started
    monkeypatch.setattr(executor.Run, "_start", start)
    r = cli("run", "pipeline.yaml", "-j", "2", "--json", cwd=proj)
    assert r.code == 0, r.out + r.err
    steps = json.loads(r.out)["steps"]
    assert steps["a"]["status"] == "cached" and steps["b"]["status"] == "succeeded"


def test_an_interrupt_between_saves_leaves_no_in_flight_lock_held(cli, project,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a sweep's other runs wait on these locks: one kept by a step whose save was cut short would hang them
    locks: list[object] = []
    inflight = executor.Session.inflight

    def spy(self: executor.Session, fingerprint: str):  # type: ignore[no-untyped-def]
        lock = inflight(self, fingerprint)
        locks.append(lock)
        return lock

    def interrupted(self: executor.Run, result: executor.StepResult) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(executor.Session, "inflight", spy)
    monkeypatch.setattr(executor.Run, "_save_later", interrupted)
    proj = project({"pipeline.yaml": CHAIN})
    r = cli("run", "pipeline.yaml", "-j", "2", cwd=proj)
    assert r.code != 0 and locks
    assert not any(lock.locked() for lock in locks)  # type: ignore[attr-defined]


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


def test_masked_output_goes_to_workers(cli, project, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: routes
        environment:
          secrets: [TOKEN]
        steps:
          one: {run: echo $TOKEN > r.txt, outputs: [r.txt]}
          two: {run: echo p > p.txt, outputs: [p.txt]}
    """})
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    r = cli("run", "pipeline.yaml", "-j", "2", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert sorted(launches) == ["one", "two"]                  # a secret to mask: every step through a pipe


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
    # killed by the stopping run, not failed by themselves (the ledger says so too)
    assert {s["status"] for s in res["steps"].values()} == {"cancelled"}, res["steps"]
    assert all(s["reason"].startswith("stopped with the run") for s in res["steps"].values()), res["steps"]
    shown = subprocess.run([str(BIN / "mlprism"), "runs", "show", "latest", "--json"], cwd=proj, env=env,
                           capture_output=True, text=True, check=True)
    assert "MLP400" not in shown.stdout and "cancelled" in shown.stdout, shown.stdout
    for pid in pids:                                            # both process groups are gone
        assert _group_gone(pid), f"process group {pid} still runs"


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


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


def test_a_note_that_cannot_be_written_does_not_fail_the_step(tmp_path: Path) -> None:
    # the note (for killing what a killed runner leaves) is written after the spawn: a step that fills
    # the disk at once made it fail with ENOSPC (seen in CI), the step reported as an internal error
    running = tmp_path / "running"
    running.mkdir()
    (running / str(os.getpid())).symlink_to("/dev/full")        # every write: ENOSPC
    launcher = executor.LocalLauncher(running)
    cwd = Path.cwd()
    log = tmp_path / "step.log"
    try:
        started = launcher.start("echo hi", cwd=cwd, env=dict(os.environ), log_path=log)
        assert started is not None
        assert started.proc.pid in launcher._procs             # registered: a stop would kill it
        assert started.proc.wait() == 0
        assert launcher.end(started) == 0
        assert launcher.run("exit 3", cwd=cwd, env=dict(os.environ), log_path=log, timeout=None) == 3
    finally:
        launcher.close()
    assert log.read_text() == "hi\n"


def test_an_interrupt_is_not_retried_by_a_worker(project, tmp_path: Path) -> None:
    """A step run by a worker (a secret's value is masked through a pipe) with retries left: Ctrl-C kills
    it and the run stops; the kill is not an attempt that failed (it was retried and ran to the end)."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: retried
        environment: {secrets: [TOK]}
        steps:
          a: {run: echo $$ > a.pid; sleep 30; echo x > a.txt, outputs: [a.txt], retries: 2}
    """})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TOK": "tok-not-shown-1234"}
    proc = subprocess.Popen([str(BIN / "mlprism"), "run", "pipeline.yaml", "--json"], cwd=proj,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ((proj / "a.pid").exists() and (proj / "a.pid").read_text().strip()):
        time.sleep(0.05)
    pid = int((proj / "a.pid").read_text())
    (proj / "a.pid").unlink()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 10, err                     # not a retry's 30 s
    res = json.loads(out)
    assert res["status"] == "interrupted" and res["steps"]["a"]["status"] == "cancelled", res
    assert res["steps"]["a"]["attempts"] == 1 and not (proj / "a.pid").exists(), res
    assert _group_gone(pid) and not (proj / "a.txt").exists()


def test_a_step_started_after_terminate_all_is_killed_at_once(tmp_path: Path) -> None:
    """terminate_all snapshots the running processes: one started in the same moment (a worker between
    its check and its spawn) is killed as it registers, not left to run out its time."""
    launcher = executor.LocalLauncher(None)
    cwd = Path.cwd()
    try:
        launcher.terminate_all()
        t0 = time.monotonic()
        started = launcher.start("sleep 30", cwd=cwd, env=dict(os.environ), log_path=tmp_path / "a.log")
        assert started is not None
        assert started.proc.wait() == -signal.SIGKILL and time.monotonic() - t0 < 10
        launcher.end(started)
        assert launcher.run("sleep 30", cwd=cwd, env=dict(os.environ), log_path=tmp_path / "b.log",
                            timeout=None) == -signal.SIGKILL
        assert time.monotonic() - t0 < 10
    finally:
        launcher.close()
    masking = executor.LocalLauncher(None, redact_values=["tok-masked-5678"])     # Popen and a pipe instead
    try:
        masking.terminate_all()
        t0 = time.monotonic()
        assert masking.run("sleep 30", cwd=cwd, env=dict(os.environ), log_path=tmp_path / "c.log",
                           timeout=None) == -signal.SIGKILL
        assert time.monotonic() - t0 < 10
    finally:
        masking.close()
