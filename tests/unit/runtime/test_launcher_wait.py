"""Waiting for a step's process with a timeout: woken when it exits (a pidfd), never late, never early."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlprism.runtime.executor import LocalLauncher, StepTimeout, _wait


def _sh(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True)


@pytest.mark.parametrize("timeout", [None, 30.0, 1e9])       # 1e9 s: more than one poll() can wait
def test_exit_codes(timeout: float | None) -> None:
    assert _wait(_sh("exit 3"), timeout) == 3
    assert _wait(_sh("exit 0"), timeout) == 0
    assert _wait(_sh("kill -TERM $$"), timeout) == -signal.SIGTERM


def test_a_process_that_outlives_its_timeout() -> None:
    proc = _sh("sleep 5")
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        _wait(proc, 0.2)
    assert 0.2 <= time.monotonic() - t0 < 4
    assert proc.returncode is None                           # still running: the caller kills the group
    proc.kill()
    assert _wait(proc, 5.0) == -signal.SIGKILL


def test_already_reaped_elsewhere() -> None:
    """Another thread (the runner stopping everything) may reap it first: the code is still returned."""
    proc = _sh("exit 7")
    proc.wait()
    assert _wait(proc, 10.0) == 7


def test_launcher_runs_a_step_with_a_timeout(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    log = tmp_path / "s.log"
    assert launcher.run("echo hi; exit 4", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, log_path=log,
                        timeout=60.0) == 4
    assert log.read_text() == "hi\n"
    t0 = time.monotonic()
    with pytest.raises(StepTimeout):
        launcher.run("sleep 20", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, log_path=log, timeout=0.3)
    assert time.monotonic() - t0 < 10
    launcher.close()
