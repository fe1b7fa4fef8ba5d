"""Robustness with real processes: SIGKILL of the runner, two runs at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SPEC = """
apiVersion: mlprism/v1
name: robust
steps:
  quick:
    run: echo quick >> "$COUNT_FILE" && echo q > q.txt
    outputs: [q.txt]
  slow:
    run: echo slow >> "$COUNT_FILE" && while [ ! -e "$RELEASE" ]; do sleep 0.05; done && cat q.txt > s.txt
    inputs: [q.txt]
    outputs: [s.txt]
"""

MLPRISM = str(Path(sys.executable).parent / "mlprism")


def _start(proj: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([MLPRISM, "run", "pipeline.yaml", *args], cwd=proj, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path_glob: Path, pattern: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(path_glob.glob(pattern)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{pattern} never appeared in {path_glob}")


def _wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the runner never reached the expected state")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_resume_after_sigkill_of_the_runner(project, proc, tmp_path: Path) -> None:
    count = tmp_path / "count.txt"
    env = {"COUNT_FILE": str(count), "RELEASE": str(tmp_path / "release")}
    proj = project({"pipeline.yaml": SPEC})
    runner = _start(proj, env=env)
    # kill only once `slow` is observably running (its command wrote to the count file and the runner
    # noted its process) and `quick` is cached: a step is cached just after the steps it unblocked
    # start (docs/how-to/caching.md), so `slow` running alone does not say so (no sleep racing the
    # scheduler; under load any of these can take a while)
    note = proj / ".mlprism" / "running" / str(runner.pid)
    records = proj / ".mlprism" / "cache" / "steps"
    _wait_until(lambda: count.exists() and count.read_text().split() == ["quick", "slow"]
                and note.exists() and len(note.read_text().splitlines()) == 2
                and records.is_dir() and len(list(records.glob("*/*.json"))) == 1)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    notes = list((proj / ".mlprism" / "running").iterdir())
    assert notes == [note]                                  # the killed runner's note of its processes
    pids = [int(line.split()[0]) for line in note.read_text().splitlines()]
    slow_pid = pids[-1]
    assert _alive(slow_pid)                                 # its step is orphaned, still running
    rerun = _start(proj, env=env)
    # release `slow` only once the rerun has killed the orphan: released earlier, the orphan could
    # finish by itself before the rerun looks for it (the rerun takes a second or more to start)
    _wait_until(lambda: not _alive(slow_pid))
    (tmp_path / "release").touch()
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, out + err
    assert "killed 1 step process group(s) left running by an interrupted run" in out
    assert "[quick] up to date (cached)" in out           # finished before the kill: a cache hit
    assert "[slow] ok" in out                              # interrupted: runs again
    assert count.read_text().split() == ["quick", "slow", "slow"]
    r = proc("runs", "list", "--json", cwd=proj)
    statuses = sorted(run["status"] for run in json.loads(r.out)["runs"])
    assert statuses == ["interrupted", "succeeded"]
    assert proc("run", "pipeline.yaml", cwd=proj, env=env).out.count("up to date (cached)") == 2


def test_two_runs_at_once_wait_or_fail_with_mlp404(project, proc, tmp_path: Path) -> None:
    env = {"COUNT_FILE": str(tmp_path / "count.txt"), "RELEASE": str(tmp_path / "release")}
    proj = project({"pipeline.yaml": SPEC})
    first = _start(proj, env=env)
    _wait_for(proj / ".mlprism" / "runs", "*/slow.log")
    r = proc("run", "pipeline.yaml", "--lock-timeout", "0", cwd=proj, env=env)
    assert r.code == 2 and "MLP404" in r.err and "another mlprism run holds the project lock" in r.err
    second = _start(proj, env=env)                         # default: waits for the first one
    assert second.stdout is not None
    first_line = second.stdout.readline()                  # printed as soon as it has to wait
    assert "waiting for the project lock held by pid" in first_line, first_line
    assert first.poll() is None                            # the first run is still going
    (tmp_path / "release").touch()
    first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err2
    assert "everything up to date (2 steps cached)" in out2
    assert (tmp_path / "count.txt").read_text().split() == ["quick", "slow"]


PIPE_SPEC = """
apiVersion: mlprism/v1
name: piped
steps:
  first:
    run: echo one && echo 1 > a.txt
    outputs: [a.txt]
  second:
    run: sleep 0.5 && cat a.txt > b.txt
    inputs: [a.txt]
    outputs: [b.txt]
  third:
    run: sleep 0.2 && exit 3
"""


def test_a_reader_that_goes_away_does_not_fake_a_success(tmp_path: Path) -> None:
    """`mlprism run ... | head -1`: the run goes on without its output, is recorded, and its exit code is
    the run's (here 1, a step failed), never 0 with the run left `running` and a step blamed for the pipe."""
    (tmp_path / "pipeline.yaml").write_text(PIPE_SPEC)
    read, write = os.pipe()
    os.close(read)                                   # nobody reads: the first write raises EPIPE
    proc = subprocess.run([MLPRISM, "run", "pipeline.yaml", "-j", "1"], cwd=tmp_path, stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert (tmp_path / "b.txt").read_text() == "1\n"
    runs = json.loads(subprocess.run([MLPRISM, "runs", "show", "latest", "--json"], cwd=tmp_path,
                                     capture_output=True, text=True, check=True).stdout)
    assert runs["run"]["status"] == "failed", runs["run"]
    ok = subprocess.run([MLPRISM, "run", "pipeline.yaml", "--only", "first", "second"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "2 steps cached" in ok.stdout, ok.stdout + ok.stderr


def test_run_json_to_a_reader_that_went_away_keeps_the_exit_code(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(PIPE_SPEC)
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([MLPRISM, "run", "pipeline.yaml", "--json"], cwd=tmp_path, stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 1 and "Exception ignored" not in proc.stderr, proc.stderr


def test_a_step_that_deletes_the_working_directory_of_the_run(tmp_path: Path) -> None:
    """`cd build/x && mlprism run ../../pipeline.yaml` where a step recreates `build/`: the runner's working
    directory is gone when the run is recorded. The run succeeds and is recorded (it was MLP001, exit 3,
    a FileNotFoundError from os.path.relpath, with the run left `running` and the lock file not written)."""
    (tmp_path / "pipeline.yaml").write_text(
        "apiVersion: mlprism/v1\nname: cwd\nsteps:\n"
        "  clean:\n    run: rm -rf build && mkdir -p build/x && echo 1 > build/x/a\n    outputs: [build]\n")
    (tmp_path / "build" / "x").mkdir(parents=True)
    proc = subprocess.run([MLPRISM, "run", "../../pipeline.yaml"], cwd=tmp_path / "build" / "x",
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MLP001" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "mlprism.lock").exists()
    runs = json.loads(subprocess.run([MLPRISM, "runs", "show", "latest", "--json"], cwd=tmp_path,
                                     capture_output=True, text=True, check=True).stdout)
    assert runs["run"]["status"] == "succeeded", runs["run"]


def test_a_project_whose_folder_name_is_not_utf8(tmp_path: Path) -> None:
    """A project in a folder named b"p\\xff" (made in a Latin-1 locale), run from its parent: the run is recorded
    and a failed step's log is named (it was MLP001, a UnicodeEncodeError writing the log path to the ledger)."""
    proj = os.fsencode(tmp_path) + b"/p\xff"
    os.mkdir(proj)
    with open(proj + b"/pipeline.yaml", "w") as f:
        f.write("apiVersion: mlprism/v1\nname: bytes\nsteps:\n"
                "  ok:\n    run: echo 1 > a.txt\n    outputs: [a.txt]\n"
                "  bad:\n    run: echo oops && exit 3\n    inputs: [a.txt]\n    outputs: [b.txt]\n")
    proc = subprocess.run([MLPRISM, "run", os.fsdecode(proj + b"/pipeline.yaml")], cwd=tmp_path,
                          capture_output=True, text=True, errors="replace", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MLP001" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "[bad] FAILED [MLP400]: exit code 3 — log: p\\xff/.mlprism/runs/" in proc.stdout, proc.stdout
    runs = json.loads(subprocess.run([MLPRISM, "runs", "show", "latest", "--json"], cwd=proj,
                                     capture_output=True, text=True, check=True).stdout)
    assert runs["run"]["status"] == "failed", runs["run"]
    again = subprocess.run([MLPRISM, "run", "pipeline.yaml", "--only", "ok"], cwd=proj, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "1 step cached" in again.stdout, again.stdout + again.stderr


def test_a_project_too_deep_for_sqlite_is_mlp410_with_a_hint(tmp_path: Path) -> None:
    """SQLite opens a database only if its full path is at most 504 bytes: a project under a deep folder (a CI
    workspace, about 490 characters) failed with MLP001 "unable to open database file", exit 3."""
    proj = tmp_path
    while len(os.fsencode(proj / ".mlprism" / "ledger.db")) <= 520:
        proj = proj / ("d" * 100)
    proj.mkdir(parents=True)
    (proj / "pipeline.yaml").write_text("apiVersion: mlprism/v1\nname: deep\nsteps:\n"
                                        "  a:\n    run: echo 1 > a.txt\n    outputs: [a.txt]\n")
    proc = subprocess.run([MLPRISM, "run", "pipeline.yaml"], cwd=proj, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error[MLP410]: cannot open the run ledger `" in proc.stderr, proc.stderr
    assert "SQLite opens databases only up to 504 bytes" in proc.stderr and "hint: move the project" in proc.stderr
    assert "MLP001" not in proc.stderr


def test_leftovers_of_a_restore_killed_midway_are_removed_by_the_next_run(tmp_path: Path) -> None:
    """A runner killed while it restored an output leaves its temporary beside it in the project (a restore of a
    20,000-file tree takes seconds): `.d.mlprism-2897acc7/` with part of the tree, `.big.bin.mlprism-…` with part
    of a file. They stayed in the user's project forever; the next run (under the project lock) removes them, and
    nothing else that merely looks alike."""
    (tmp_path / "pipeline.yaml").write_text(
        "apiVersion: mlprism/v1\nname: left\nsteps:\n"
        "  a:\n    run: mkdir -p d out && echo 1 > d/f && echo 2 > out/big.bin\n    outputs: [d, out/big.bin]\n")
    assert subprocess.run([MLPRISM, "run", "pipeline.yaml"], cwd=tmp_path, capture_output=True).returncode == 0
    leftovers = [tmp_path / ".d.mlprism-2897acc7", tmp_path / ".d.mlprism-old-0a1b2c3d",
                 tmp_path / "out" / ".big.bin.mlprism-6f1d2a3b4c5d6e7f-4242-3", tmp_path / "out" / ".big.bin.mlprism-tmp"]
    (leftovers[0] / "x").mkdir(parents=True)
    (leftovers[0] / "x" / "f").write_text("part")
    (leftovers[1]).mkdir()
    for f in leftovers[2:]:
        f.write_text("part")
    kept = [tmp_path / ".d.mlprism-notes", tmp_path / ".e.mlprism-2897acc7", tmp_path / "out" / "big.bin.mlprism-1234abcd"]
    for f in kept:
        f.write_text("mine")
    proc = subprocess.run([MLPRISM, "run", "pipeline.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "1 step cached" in proc.stdout, proc.stdout + proc.stderr
    assert [p for p in leftovers if os.path.lexists(p)] == []
    assert all(p.read_text() == "mine" for p in kept)


def test_commands_from_a_directory_that_was_deleted(tmp_path: Path) -> None:
    """`mlprism status /abs/pipeline.yaml` in a shell whose directory was deleted (`rm -rf build` from elsewhere):
    it was MLP001 ("this is a bug"), a FileNotFoundError from os.getcwd."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "pipeline.yaml").write_text(
        "apiVersion: mlprism/v1\nname: gone\nsteps:\n  a:\n    run: echo 1 > a.txt\n    outputs: [a.txt]\n")
    (tmp_path / "gone").mkdir()
    spec = tmp_path / "proj" / "pipeline.yaml"
    for cmd in ("status", "run"):
        proc = subprocess.run(["sh", "-c", f'cd gone && rmdir ../gone && exec "$0" {cmd} "$1"', MLPRISM, str(spec)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "error[MLP002]: the current directory no longer exists" in proc.stderr, proc.stderr
        (tmp_path / "gone").mkdir()
