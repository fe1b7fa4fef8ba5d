"""Starting a step's shell with ``posix_spawn``: what ``subprocess.Popen`` does, with less of the runner's CPU.

A cold run starts one ``/bin/sh`` per step, and ``Popen``'s Python-side work (handles,
an error pipe read back after ``exec``, the bookkeeping of a general-purpose class) is
done in the runner's thread for each one. ``os.posix_spawn`` (glibc: ``clone`` with
``CLONE_VM | CLONE_VFORK``) does the same start from C: 80-100 µs less of the runner
thread's CPU a step, too little to show in a whole run's time on the project's machine
(docs/performance.md, seventh round). What Popen would have done is kept:

- a new session (``setsid``), so a timeout or a stop kills the step's whole process group;
- the signals Python ignores at start-up (``SIGPIPE``, ``SIGXFSZ``) back to their default
  in the child, as Popen's ``restore_signals``;
- no descriptor of the runner leaks into the step (Popen's ``close_fds``): descriptors
  Python opens are close-on-exec already (PEP 446), and :func:`close_on_exec_all` marks
  the ones the process inherited or a library opened without the flag, once per launcher.

``posix_spawn`` cannot change the child's working directory (Python exposes no
``addchdir``), so :func:`can_spawn_in` tells whether a step's directory is the
process's own; the launcher uses ``Popen`` for the others (sweep workspaces, a spec in
another directory).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

__all__ = ["SpawnedProcess", "can_spawn", "can_spawn_in", "close_on_exec_all", "spawn_shell"]

_RESET_SIGNALS = tuple(s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None))
                       if s is not None)
_POLL = 0.005                   # seconds between looks while waiting with a timeout behind another waiter


def can_spawn() -> bool:
    """posix_spawn with ``setsid`` is available here (Linux with glibc 2.26 or later, Python 3.8+)."""
    return hasattr(os, "posix_spawn") and hasattr(os, "POSIX_SPAWN_DUP2") and os.name == "posix"


def can_spawn_in(cwd: str | os.PathLike[str]) -> bool:
    """``cwd`` is this process's working directory (the same file), so a spawned child starts there."""
    try:
        a, b = os.stat(cwd), os.stat(".")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def close_on_exec_all() -> None:
    """Mark every open descriptor above 2 close-on-exec, as Popen's ``close_fds`` closes them in a child."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):      # the listing's own descriptor is gone already
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)


class SpawnedProcess:
    """The handle of a spawned child: the part of Popen's interface the launcher uses.

    ``wait`` is safe from several threads (a worker waits for its step while a stop
    waits for the same process with a grace period): one thread reaps, the others
    see ``returncode``.
    """

    def __init__(self, pid: int, args: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._reaping = threading.Lock()

    def _reap(self, flags: int) -> None:
        """Caller holds ``_reaping``."""
        if self.returncode is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:               # reaped elsewhere (cannot happen here): its status is lost
            self.returncode = 255
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> int | None:
        if self.returncode is None and self._reaping.acquire(blocking=False):
            try:
                self._reap(os.WNOHANG)
            finally:
                self._reaping.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            with self._reaping:
                self._reap(0)
            assert self.returncode is not None
            return self.returncode
        deadline = time.monotonic() + timeout
        while True:
            if self.poll() is not None:
                return self.returncode          # type: ignore[return-value]
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(min(_POLL, left))


def spawn_shell(command: str, *, env: Mapping[str, str], stdin: int, output: int) -> SpawnedProcess:
    """``/bin/sh -c command`` in a new session, here, with stdin from ``stdin`` and stdout and stderr to ``output``."""
    args = ["/bin/sh", "-c", command]
    pid = os.posix_spawn(args[0], args, env,
                         file_actions=[(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, output, 1),
                                       (os.POSIX_SPAWN_DUP2, output, 2)],
                         setsigdef=_RESET_SIGNALS, setsid=True)
    return SpawnedProcess(pid, args)
