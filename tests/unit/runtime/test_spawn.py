"""Steps started with posix_spawn keep what Popen gave them: a new session, default signals, no leaked descriptors."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from mlprism.runtime import spawn
from mlprism.runtime.executor import LocalLauncher, StepTimeout, _stop_group, _wait
from mlprism.runtime.spawn import SpawnedProcess, can_spawn_in, close_on_exec_all, spawn_shell

pytestmark = pytest.mark.skipif(not spawn.can_spawn(), reason="no posix_spawn on this platform")

ENV = {"PATH": "/usr/bin:/bin"}


def _run(tmp_path: Path, script: str) -> tuple[SpawnedProcess, Path]:
    log = tmp_path / "out.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return spawn_shell(script, env=ENV, stdin=null, output=fd), log
    finally:
        os.close(fd)
        os.close(null)


def test_exit_codes_and_signals(tmp_path: Path) -> None:
    proc, _ = _run(tmp_path, "exit 3")
    assert proc.wait() == 3 and proc.returncode == 3
    proc, _ = _run(tmp_path, "kill -TERM $$")
    assert _wait(proc, 30.0) == -signal.SIGTERM


def test_new_session_output_and_stdin(tmp_path: Path) -> None:
    proc, log = _run(tmp_path, 'echo "pid=$$ sid=$(ps -o sid= -p $$ | tr -d " ")"; echo err >&2; cat; echo end')
    assert proc.wait() == 0
    lines = log.read_text().splitlines()
    pid, sid = (int(part.split("=")[1]) for part in lines[0].split())
    assert pid == proc.pid == sid                 # its own session, so its own process group to kill
    assert lines[1:] == ["err", "end"]            # stderr to the same file; stdin is empty (/dev/null)


def test_ignored_signals_are_reset(tmp_path: Path) -> None:
    """Python ignores SIGPIPE; a step's `yes | head -1` must end by SIGPIPE, not loop on EPIPE errors."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    proc, log = _run(tmp_path, "yes | head -n 1; grep SigIgn /proc/$$/status")
    assert _wait(proc, 30.0) == 0
    text = log.read_text()
    assert text.startswith("y\n") and "Broken pipe" not in text
    ignored = int(text.split("SigIgn:")[1].split()[0], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


def test_no_descriptor_leaks_into_the_step(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.set_inheritable(w, True)                   # as a descriptor the process inherited would be
    try:
        close_on_exec_all()
        assert not os.get_inheritable(w)
        proc, log = _run(tmp_path, "ls /proc/$$/fd")
        assert proc.wait() == 0
        assert sorted(int(x) for x in log.read_text().split()) == [0, 1, 2]
    finally:
        os.close(r)
        os.close(w)


def test_wait_with_a_timeout_and_a_second_waiter(tmp_path: Path) -> None:
    proc, _ = _run(tmp_path, "sleep 20")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    assert proc.poll() is None
    blocked = threading.Thread(target=proc.wait)     # one thread blocks in waitpid; a stop waits beside it
    blocked.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    _stop_group(proc, grace=5.0)
    blocked.join(5.0)
    assert not blocked.is_alive() and proc.returncode == -signal.SIGTERM and time.monotonic() - t0 < 5


def test_can_spawn_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert can_spawn_in(tmp_path) and can_spawn_in(".")
    assert not can_spawn_in(tmp_path.parent) and not can_spawn_in(tmp_path / "nope")


def test_launcher_spawns_here_and_uses_popen_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    monkeypatch.chdir(here)
    started: list[str] = []
    real_spawn, real_popen = spawn_shell, subprocess.Popen
    monkeypatch.setattr("mlprism.runtime.executor.spawn_shell",
                        lambda *a, **k: started.append("spawn") or real_spawn(*a, **k))
    monkeypatch.setattr("mlprism.runtime.executor.subprocess.Popen",
                        lambda *a, **k: started.append("popen") or real_popen(*a, **k))
    launcher = LocalLauncher()
    try:
        for cwd in (here, there):
            log = cwd / "s.log"
            assert launcher.run("pwd; exit 5", cwd=cwd, env=ENV, log_path=log, timeout=None) == 5
            assert log.read_text() == f"{cwd}\n"
        assert started == ["spawn", "popen"]
        t0 = time.monotonic()                      # a timeout kills the spawned step's whole group
        with pytest.raises(StepTimeout):
            launcher.run("sleep 30 & sleep 30; wait", cwd=here, env=ENV, log_path=here / "t.log", timeout=0.3)
        assert time.monotonic() - t0 < 10 and started[-1] == "spawn"
    finally:
        launcher.close()
