"""The parallel DAG runner behind ``mlprism run``.

``run_pipeline(project_dir, pipeline, options)`` runs the steps of a compiled
pipeline as real processes (``/bin/sh -c``, cwd = the spec's directory) in
dependency order, independent steps in parallel up to ``-j``. For each step:

1. hash its inputs (stat cache) and compute its fingerprint (:mod:`.fingerprint`);
2. skip it when a record with that fingerprint exists and its outputs are intact,
   restore missing or changed outputs from the cache (:mod:`.cache`), else run it
   with retries and exponential backoff, its whole process group killed on timeout;
3. check its declared outputs (MLP401) and metrics (MLP406), hash them, put them in
   the cache, evaluate its gate (MLP402), record everything in the ledger.

Then the lock file is written and, when ``registry.register_after`` ran and every
gate held, the model is registered. The scheduling loop runs in the calling
thread. It starts a local step itself when it can (``posix_spawn`` in the
runner's directory, output not masked: :meth:`LocalLauncher.start`), polls its
pidfd and times its timeout and retries (:class:`_Started`), finishing it in the
same thread; other steps run in worker threads through a :class:`Launcher`.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import heapq
import itertools
import math
import os
import posixpath
import queue
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from mlprism.diagnostics import Diagnostic, DiagnosticError, did_you_mean
from mlprism.ir import Pipeline, Step
from mlprism.runtime.cache import SMALL as CACHE_SMALL
from mlprism.runtime.cache import Cache, OutputEntry, StepRecord, _write_all
from mlprism.runtime.display import Display, make_display, step_counts
from mlprism.runtime.fingerprint import (
    Fingerprint,
    compute_fingerprint,
    redact,
    secret_values,
    step_params,
)
from mlprism.runtime.gates import GateReport, evaluate_gate
from mlprism.runtime.hashing import Digest, Hasher
from mlprism.runtime.ledger import Ledger, new_run_id
from mlprism.runtime.lockfile import (
    lock_document,
    lock_path,
    read_lock,
    render_document,
    write_lock,
)
from mlprism.runtime.metrics import read_metrics
from mlprism.runtime.paths import (
    disk_full_in_log,
    escaping_paths,
    free_bytes,
    is_write_failure,
    write_failure,
)
from mlprism.runtime.redact import mask, redaction_values
from mlprism.runtime.spawn import (
    SpawnedProcess,
    can_spawn,
    can_spawn_in,
    close_on_exec_all,
    spawn_shell,
)

__all__ = [
    "Decision",
    "Launcher",
    "LocalLauncher",
    "RunOptions",
    "RunResult",
    "StepResult",
    "StepTimeout",
    "dry_run_result",
    "plan_decisions",
    "plan_pipeline",
    "plan_sweep_decisions",
    "run_pipeline",
    "select_steps",
]

STATE_DIR = ".mlprism"
_T = TypeVar("_T")
OK_STATUSES = frozenset({"succeeded", "cached", "restored"})
RETRY_BACKOFF = 1.0                  # seconds before the first retry (env MLPRISM_RETRY_BACKOFF overrides)
RETRY_BACKOFF_MAX = 300.0
TIMEOUT_EXIT_CODE = 124                                                # how launchers without exceptions say "timed out"
COMMIT_EVERY = 0.25                                                    # ledger commits at most this often (s)
KILL_GRACE = 3.0                                                       # SIGTERM -> SIGKILL on timeout


# -- launching processes ----------------------------------------------------------------------
class StepTimeout(TimeoutError):
    """Raised by a launcher when a step ran past its timeout (its process group is killed)."""


@runtime_checkable
class Launcher(Protocol):
    """Runs one step command, blocking; called from worker threads.

    Writes the command's stdout and stderr to ``log_path`` (appending), returns its
    exit code, and on timeout kills everything it started and raises
    :class:`StepTimeout` (any ``TimeoutError`` is accepted).
    """

    def run(self, command: str, *, cwd: Path, env: dict[str, str], log_path: Path,
            timeout: float | None) -> int: ...


def _proc_started_at(pid: int) -> float | None:
    """When a process started (epoch seconds, about a second precise), or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[-1].split()[19])
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def _stop_group(proc: subprocess.Popen[bytes] | SpawnedProcess, grace: float) -> None:
    """SIGTERM the step's process group; SIGKILL whatever is left once its leader exits or ``grace`` passes."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait(proc: subprocess.Popen[bytes] | SpawnedProcess, timeout: float | None) -> int:
    """``proc.wait(timeout)``, woken the moment the process exits.

    With a timeout, Popen.wait polls: it sleeps 1 ms, then 2, 4 … up to 50 ms between
    looks, so a step with a ``timeout`` ended up to 50 ms late (0.4 ms for a trivial one,
    docs/performance.md). A pidfd (Linux 5.3) that becomes readable when the process
    exits is waited on instead; without one, Popen's own wait.
    """
    if timeout is None:
        return proc.wait()
    try:
        fd = os.pidfd_open(proc.pid)            # not reaped yet: only this thread waits before it exits
    except (AttributeError, OSError):
        return proc.wait(timeout=timeout)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not poller.poll(min(_POLL_MAX_MS, max(0, math.ceil((deadline - time.monotonic()) * 1000)))):
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(fd)
    return proc.wait()


class Started(NamedTuple):
    """A command :meth:`LocalLauncher.start` started: its process and its open log."""

    proc: SpawnedProcess
    log: int
    log_file: str


_POLL_MAX_MS = 1 << 30                          # poll() takes an int of milliseconds (~12 days a look)
_SPARE_IDS = itertools.count()


class LocalLauncher:
    """Runs commands here: ``/bin/sh -c`` in a new session (its own process group).

    Output goes straight to the log file, or, when there are secret values to
    hide, through a pipe that replaces them line by line. Each running process
    is noted in ``running_dir`` so that a later run can kill what a killed
    runner left behind (:func:`reap_orphans`).

    A step that prints nothing leaves no log file: its empty log is renamed to a
    hidden spare (``.spare-…`` in the run's folder) that becomes the next step's log,
    so a run of quiet steps allocates about one file per job instead of one per step
    (creating a file is the costly part on some file systems, see docs/performance.md).
    A log is recycled only once nothing of the step is left in its process group
    (nothing can still write to it); the spares are removed by :meth:`close`.
    """

    def __init__(self, running_dir: Path | None = None, redact_values: Sequence[str] = (),
                 kill_grace: float = KILL_GRACE) -> None:
        self.running_dir = running_dir
        self.redact_values = redaction_values(redact_values)
        self.kill_grace = kill_grace
        self._procs: dict[int, subprocess.Popen[bytes] | SpawnedProcess] = {}
        self._lock = threading.Lock()
        self._notes: int | None = None
        self._spares: dict[str, list[str]] = {}   # folder -> empty files there, ready to become a step's log
        self._spawn = can_spawn()                 # posix_spawn for steps that run in this process's directory
        self._spawn_dirs: dict[str, bool] = {}
        self._devnull: int | None = None
        self._stopped = False                     # terminate_all was called: what starts now is killed at once

    def _take_log(self, log_path: str) -> None:
        """Put a spare empty file at ``log_path`` (a rename: no new file), unless it exists already."""
        folder = log_path.rpartition("/")[0]
        with self._lock:
            spares = self._spares.get(folder)
            if not spares:
                return
            spare = spares.pop()
        if os.path.lexists(log_path):                        # a retry appends to the earlier attempts' log
            with self._lock:
                spares.append(spare)
            return
        try:
            os.rename(spare, log_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(spare)

    def _recycle_log(self, log: int, log_path: str, pgid: int) -> None:
        """An empty log whose writers are all gone becomes a spare (the step printed nothing)."""
        try:
            if os.fstat(log).st_size:
                return
            os.killpg(pgid, 0)
            return                                           # something of the step still runs: keep its log
        except ProcessLookupError:
            pass
        except OSError:
            return
        folder = log_path.rpartition("/")[0]
        spare = f"{folder}/.spare-{os.getpid()}-{next(_SPARE_IDS)}"
        try:
            os.rename(log_path, spare)
        except OSError:
            return
        with self._lock:
            self._spares.setdefault(folder, []).append(spare)

    def _note(self, pid: int, started: float) -> None:
        """Append "pid start-time" to this runner's note (one file per runner, removed by close()).

        Best effort: the note only lets a later run kill what a killed runner left behind. The
        step is running already, so a note that cannot be written (a step that filled the disk
        at once) must not make it look failed, nor leave it unwatched.
        """
        if self.running_dir is None:
            return
        with self._lock:
            try:
                if self._notes is None:
                    self._notes = os.open(self.running_dir / str(os.getpid()),
                                          os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.write(self._notes, f"{pid} {started:.3f}\n".encode())
            except OSError:
                pass

    def _spawns_in(self, cwd: str) -> bool:
        """Start steps in ``cwd`` with posix_spawn (see mlprism.runtime.spawn): it is this process's directory."""
        ok = self._spawn_dirs.get(cwd)
        if ok is None:
            ok = can_spawn_in(cwd)
            if ok:
                with self._lock:
                    if self._devnull is None:
                        close_on_exec_all()
                        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            self._spawn_dirs[cwd] = ok          # published once the descriptor is there (other workers look)
        return ok

    def close(self) -> None:
        with self._lock:
            if self._devnull is not None:
                os.close(self._devnull)
                self._devnull = None
            if self._notes is not None:
                os.close(self._notes)
                self._notes = None
                assert self.running_dir is not None
                (self.running_dir / str(os.getpid())).unlink(missing_ok=True)
            spares, self._spares = self._spares, {}
        for spare in itertools.chain.from_iterable(spares.values()):
            with contextlib.suppress(OSError):
                os.unlink(spare)

    def _pump(self, src: Any, dst: int) -> None:
        """Copy the step's output to its log with secret values masked; closes both (``dst`` is its own copy)."""
        try:
            for line in iter(src.readline, b""):
                text = mask(line.decode("utf-8", "surrogateescape"), self.redact_values)
                _write_all(dst, text.encode("utf-8", "surrogateescape"))
        finally:
            src.close()
            os.close(dst)

    def _open_log(self, log_path: Path) -> tuple[int, str]:
        """The step's log opened for appending (a spare renamed into place when there is one), and its path."""
        log_file = os.fspath(log_path)
        if self._spares:
            self._take_log(log_file)
        return os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666), log_file

    def can_start(self, cwd: Path) -> bool:
        """Whether :meth:`start` can start commands in ``cwd``."""
        return not self.redact_values and self._spawn and self._spawns_in(os.fspath(cwd))

    def start(self, command: str, *, cwd: Path, env: dict[str, str], log_path: Path) -> Started | None:
        """Start a command without waiting for it, or None when this launcher cannot (see :meth:`run`).

        Only what ``posix_spawn`` starts is started this way: a step in this process's directory
        whose output is not masked. The caller waits for ``started.proc`` (it may poll a pidfd
        of it) and then calls :meth:`end`, which reaps it if nobody has.
        """
        if not self.can_start(cwd):
            return None
        log, log_file = self._open_log(log_path)
        started = time.time()
        assert self._devnull is not None
        try:
            proc = spawn_shell(command, env=env, stdin=self._devnull, output=log)
        except NotImplementedError:                 # no setsid for posix_spawn here: Popen from now on
            self._spawn = False
            os.close(log)
            return None
        except BaseException:
            os.close(log)
            raise
        self._watch(proc)
        self._note(proc.pid, started)
        return Started(proc, log, log_file)

    def _watch(self, proc: subprocess.Popen[bytes] | SpawnedProcess) -> None:
        """Count a started process among the running ones; kill it at once if the runner is stopping
        (terminate_all ran while it was being started: it did not see it)."""
        with self._lock:
            self._procs[proc.pid] = proc
            stopped = self._stopped
        if stopped:
            _signal_group(proc.pid, signal.SIGKILL)

    def end(self, started: Started) -> int | None:
        """Let go of a command :meth:`start` started: its exit code, reaped, or None if it still runs."""
        proc = started.proc
        try:
            return proc.poll()
        finally:
            with self._lock:
                self._procs.pop(proc.pid, None)
            try:
                if proc.returncode is not None:
                    self._recycle_log(started.log, started.log_file, proc.pid)
            finally:
                os.close(started.log)

    def run(self, command: str, *, cwd: Path, env: dict[str, str], log_path: Path,
            timeout: float | None) -> int:
        started = self.start(command, cwd=cwd, env=env, log_path=log_path)
        if started is not None:
            try:
                return _wait(started.proc, timeout)
            except subprocess.TimeoutExpired:
                _stop_group(started.proc, self.kill_grace)
                raise StepTimeout(f"timed out after {timeout:g}s") from None
            finally:
                self.end(started)
        log, log_file = self._open_log(log_path)
        try:
            piped = bool(self.redact_values)
            started_at = time.time()
            proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE if piped else log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self._watch(proc)
            self._note(proc.pid, started_at)
            pump = None
            if piped:
                # its own descriptor: a step's background process may keep the pipe open after this returns
                pump = threading.Thread(target=self._pump, args=(proc.stdout, os.dup(log)), daemon=True)
                pump.start()
            try:
                try:
                    code = _wait(proc, timeout)
                except subprocess.TimeoutExpired:
                    _stop_group(proc, self.kill_grace)
                    raise StepTimeout(f"timed out after {timeout:g}s") from None
                return code
            finally:
                if pump is not None:
                    pump.join(timeout=2.0)
                with self._lock:
                    self._procs.pop(proc.pid, None)
                if proc.returncode is not None and (pump is None or not pump.is_alive()):
                    self._recycle_log(log, log_file, proc.pid)
        finally:
            os.close(log)

    def terminate_all(self) -> None:
        """Kill every running step's process group (the runner is stopping), and any started from now on."""
        with self._lock:
            self._stopped = True
            procs = list(self._procs.values())
        threads = [threading.Thread(target=_stop_group, args=(p, self.kill_grace)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def reap_orphans(running_dir: Path) -> int:
    """Kill the step process groups that killed runners left running; return how many.

    Each runner notes "pid start-time" of every process it starts in
    ``running_dir/<runner pid>`` and removes the file when it ends. A file whose
    runner is gone names processes that may still run: those that exist and
    started at the noted time (not a recycled pid) lose their process group.
    """
    killed = 0
    if not running_dir.is_dir():
        return 0
    for note in running_dir.iterdir():
        try:
            runner = int(note.name)
        except ValueError:
            note.unlink(missing_ok=True)
            continue
        alive_since = _proc_started_at(runner) if runner != os.getpid() else None
        try:
            if alive_since is not None and alive_since <= note.stat().st_mtime + 1:
                continue                         # its runner is alive (a pid reused later started after the note)
        except OSError:
            continue
        try:
            lines = note.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                pid_s, when_s = line.split()
                pid, when = int(pid_s), float(when_s)
            except ValueError:
                continue
            started = _proc_started_at(pid)
            if started is not None and abs(started - when) < 2.5:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                    killed += 1
        note.unlink(missing_ok=True)
    return killed


# -- options and results ---------------------------------------------------------------------
@dataclass
class RunOptions:
    """What ``mlprism run`` was asked to do (one field per command-line option)."""

    jobs: int | None = None                      # -j N (default: CPU count)
    only: tuple[str, ...] = ()                   # --only STEP…: just these, their inputs assumed present
    from_step: str | None = None                 # --from STEP: it and everything downstream
    until: str | None = None                     # --until STEP: it and everything upstream
    force: tuple[str, ...] | None = None         # --force [STEP…]: () forces every selected step
    dry_run: bool = False                        # --dry-run: say what would run and why
    keep_going: bool = False                     # --keep-going: independent branches go on after a failure
    multirun: bool = False                       # -m: sweep the comma-separated overrides below
    sweep_overrides: tuple[str, ...] = ()        # -m overrides with several values (params.lr=0.1,0.01)
    no_sweep: bool = False                       # --no-sweep: ignore the spec's `sweep`
    in_docker: bool = False                      # --in-docker [--image IMAGE]
    image: str | None = None
    json: bool = False                           # --json: a JSON result on stdout, no progress
    quiet: bool = False                          # -q: do not stream step output
    lock_timeout: float | None = None            # --lock-timeout S: wait at most S s for the project lock
    register: bool = True                        # register the model after `registry.register_after`
    launcher: Launcher | None = None             # programmatic use: run steps elsewhere
    display: Display | None = None               # programmatic use: show progress elsewhere
    environ: Mapping[str, str] | None = None     # the caller's environment (default: os.environ)

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ


@dataclass
class StepResult:
    name: str
    status: str            # succeeded | cached | restored | failed | blocked | cancelled | would-run | would-restore
    fingerprint: str | None = None
    exit_code: int | None = None
    duration: float = 0.0
    attempts: int = 0
    cache_hit: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    gate: GateReport | None = None
    code: str | None = None          # MLP4xx when failed
    error: str | None = None
    reason: str = ""
    log: str | None = None           # for people: relative, printable (see Run._rel)
    inputs: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    outputs: dict[str, OutputEntry] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    log_file: str | None = field(default=None, repr=False, compare=False)    # the log's real path

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def describe(self) -> str:
        if self.status == "succeeded":
            return f"ok in {self.duration:.2f}s" + (f" ({self.attempts} attempts)" if self.attempts > 1 else "")
        if self.status == "cached":
            return "up to date (cached)"
        if self.status == "restored":
            return f"cached: {self.reason}"
        if self.status == "failed":
            if self.log and not os.path.exists(self.log_file or self.log):    # a step that printed nothing has no log
                return f"FAILED [{self.code}]: {self.error} — it printed nothing"
            return f"FAILED [{self.code}]: {self.error}" + (f" — log: {self.log}" if self.log else "")
        if self.status in ("blocked", "cancelled"):
            return f"{self.status}: {self.reason}"
        return f"{self.status}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "fingerprint": self.fingerprint,
            "exit_code": self.exit_code, "duration": round(self.duration, 4), "attempts": self.attempts,
            "cache_hit": self.cache_hit, "metrics": self.metrics,
            "gate": self.gate.to_dict() if self.gate else None, "code": self.code, "error": self.error,
            "reason": self.reason, "log": self.log,
            "outputs": {k: v.to_dict() for k, v in sorted(self.outputs.items())},
        }


@dataclass
class RunResult:
    run_id: str
    status: str                          # succeeded | failed | interrupted | dry-run
    steps: dict[str, StepResult] = field(default_factory=dict)
    duration: float = 0.0
    registered: Any = None               # what ModelRegistry.register returned
    sweep: dict[str, Any] | None = None  # a sweep: its runs, the selected one
    lock_file: str | None = None
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "dry-run")

    @property
    def metrics(self) -> dict[str, float]:
        """Every step's metrics merged (a later step wins on a shared key)."""
        out: dict[str, float] = {}
        for r in self.steps.values():
            out.update(r.metrics)
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.steps.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "duration": round(self.duration, 4),
                "steps": {k: v.to_dict() for k, v in self.steps.items()}, "registered": _jsonable(self.registered),
                "sweep": self.sweep, "lock_file": self.lock_file, "data": self.data, "counts": self.counts()}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)


# -- selection --------------------------------------------------------------------------------
def _unknown_step(name: str, pipeline: Pipeline, flag: str) -> Diagnostic:
    return Diagnostic("MLP407", f"{flag}: no step is named `{name}`", None,
                      did_you_mean(name, pipeline.step_names) or f"steps: {', '.join(pipeline.step_names)}")


@dataclass(frozen=True)
class GraphIndex:
    """Steps by name and direct neighbours, built once (the IR's lookups scan every edge)."""

    steps: dict[str, Step]
    ups: dict[str, list[str]]
    downs: dict[str, list[str]]
    order: dict[str, int]

    @classmethod
    def of(cls, pipeline: Pipeline) -> GraphIndex:
        """The index of ``pipeline``; its neighbours and order are the last index's when the edges are the
        same object and the steps' names the same (a sweep's combinations: their compiler shared the graph)."""
        steps = {s.name: s for s in pipeline.steps}
        names = tuple(steps)
        last = _LAST_INDEX[0] if _LAST_INDEX else None
        if last is not None and last[0] is pipeline.edges and last[1] == names:
            known = last[2]
            return cls(steps, known.ups, known.downs, known.order)      # read only, never changed
        ups: dict[str, set[str]] = {n: set() for n in steps}
        downs: dict[str, set[str]] = {n: set() for n in steps}
        for e in pipeline.edges:
            ups[e.target].add(e.source)
            downs[e.source].add(e.target)
        index = cls(steps, {n: sorted(v) for n, v in ups.items()}, {n: sorted(v) for n, v in downs.items()},
                    {n: i for i, n in enumerate(steps)})
        _LAST_INDEX[:] = [(pipeline.edges, names, index)]
        return index


_LAST_INDEX: list[tuple[Any, tuple[str, ...], GraphIndex]] = []    # (edges, step names, index) of the last one


class SharedSteps:
    """The steps a sweep's combinations have in common, run once, by the first combination (the leader).

    A step is shared when every combination compiled it the same way (equal IR step,
    equal values of the params it uses, the same environment), caches, is not forced,
    and every step upstream of it is shared too: then every combination computes the
    same fingerprint for it. The leader runs in the project directory; a follower
    (every other combination, in its own workspace) holds a shared step back until the
    leader has finished it, then takes it from the cache like any cached step, so the
    shared work runs once and its outputs land in the project once, instead of being
    scattered over the workspaces by whichever combination got there first.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._done: dict[str, StepResult | None] = {}
        self._lock = threading.Lock()
        self._wakers: list[Callable[[str], None]] = []

    @classmethod
    def of(cls, pipelines: Sequence[Pipeline], selected: Sequence[str], forced: set[str]) -> SharedSteps:
        if len(pipelines) < 2:
            return cls(frozenset())
        first = {s.name: s for s in pipelines[0].steps}
        return cls(frozenset(alike_steps(pipelines, {n for n in selected if first[n].cache and n not in forced})))

    def follow(self, wake: Callable[[str], None]) -> None:
        """A follower's loop asks to be told (the step's name) whenever the leader finishes a shared step."""
        with self._lock:
            self._wakers.append(wake)

    def done(self, name: str) -> bool:
        with self._lock:
            return name in self._done

    def result(self, name: str) -> StepResult | None:
        """The leader's result for a shared step it finished well (ran, or found in the cache)."""
        with self._lock:
            r = self._done.get(name)
        return r if r is not None and r.ok and r.fingerprint else None

    def finished(self, name: str, result: StepResult | None) -> None:
        """The leader is done with a step (``result`` None: it never got to it): wake the followers."""
        with self._lock:
            self._done.setdefault(name, result)
            wakers = list(self._wakers)
        for wake in wakers:
            wake(name)


def alike_steps(pipelines: Sequence[Pipeline], candidates: set[str], index: GraphIndex | None = None) -> set[str]:
    """Those of ``candidates`` every pipeline (a sweep's combinations) compiled alike: the same IR step, the
    same values of the params it uses, the same environment, over upstream steps that are alike too. Each
    pipeline computes the same fingerprint for them, and they make the same outputs."""
    first = pipelines[0]
    if not all(p.environment == first.environment for p in pipelines[1:]):
        return set()
    index = index or GraphIndex.of(first)
    flats = [p.flat_params() for p in pipelines]
    steps = [{s.name: s for s in p.steps} for p in pipelines]
    alike: set[str] = set()
    for name in _upstream_first(index, candidates):
        step = steps[0][name]
        if any(u not in alike for u in index.ups[name]):
            continue
        used = step_params(first, step, flats[0])
        if all(((o := other.get(name)) is step or o == step) and step_params(p, step, flat) == used
               for other, p, flat in zip(steps[1:], pipelines[1:], flats[1:], strict=True)):
            alike.add(name)
    return alike


def _upstream_first(index: GraphIndex, names: set[str]) -> list[str]:
    """``names`` ordered so that each step comes after its upstream steps among ``names``."""
    waiting = {n: sum(1 for u in index.ups[n] if u in names) for n in names}
    todo = sorted((n for n, k in waiting.items() if k == 0), key=index.order.__getitem__, reverse=True)
    out: list[str] = []
    while todo:
        n = todo.pop()
        out.append(n)
        for d in index.downs[n]:
            if d in waiting:
                waiting[d] -= 1
                if waiting[d] == 0:
                    todo.append(d)
    return out


def _closure(index: GraphIndex, start: str, down: bool) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        n = todo.pop()
        for m in (index.downs[n] if down else index.ups[n]):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def select_steps(pipeline: Pipeline, options: RunOptions, index: GraphIndex | None = None) -> list[str]:
    """The steps a run covers, in topological order (MLP407 for an unknown name)."""
    index = index or GraphIndex.of(pipeline)
    names = set(index.steps)
    errors = [_unknown_step(n, pipeline, "--only") for n in options.only if n not in names]
    for flag, value in (("--from", options.from_step), ("--until", options.until)):
        if value is not None and value not in names:
            errors.append(_unknown_step(value, pipeline, flag))
    errors += [_unknown_step(n, pipeline, "--force") for n in (options.force or ()) if n not in names]
    if errors:
        raise DiagnosticError(errors)
    selected = set(options.only) if options.only else set(names)
    if options.from_step:
        selected &= _closure(index, options.from_step, down=True)
    if options.until:
        selected &= _closure(index, options.until, down=False)
    if not selected and names:
        given = [f"--only {' '.join(options.only)}"] if options.only else []
        given += [f"--from {options.from_step}"] if options.from_step else []
        given += [f"--until {options.until}"] if options.until else []
        raise DiagnosticError([Diagnostic("MLP002", f"{', '.join(given)} select no step: no step is in all of them",
                                          None, "--from takes a step and what is downstream of it, --until a step "
                                          "and what is upstream; drop one of them (`mlprism graph SPEC` shows the DAG)")])
    return [n for n in index.steps if n in selected]


def forced_steps(selected: Sequence[str], options: RunOptions) -> set[str]:
    if options.force is None:
        return set()
    return set(options.force) if options.force else set(selected)


# -- project state ----------------------------------------------------------------------------
def state_dir_of(project_dir: Path) -> Path:
    return project_dir / STATE_DIR


def ensure_state_dir(project_dir: Path) -> Path:
    state = state_dir_of(project_dir)
    if not state.is_dir():
        state.mkdir(parents=True, exist_ok=True)
    ignore = state / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# mlprism's local state: never commit it\n*\n")
    return state


@contextlib.contextmanager
def project_lock(state_dir: Path, owner: str, timeout: float | None = None,
                 on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``.mlprism/project.lock`` (fcntl): one ``mlprism run`` per project at a time.

    ``timeout`` None waits as long as it takes; 0 fails at once; otherwise waits that
    many seconds. Failing to get the lock is MLP404.
    """
    path = state_dir / "project.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            if timeout is not None and timeout <= 0:
                raise DiagnosticError([Diagnostic("MLP404", f"another mlprism run holds the project lock ({holder})",
                                                  None, "wait for it to finish, or pass --lock-timeout SECONDS to wait")])
            if on_wait:
                on_wait(f"waiting for the project lock held by {holder} …")
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DiagnosticError([Diagnostic(
                            "MLP404", f"another mlprism run still holds the project lock after {timeout:g}s ({holder})",
                            None, "wait for it to finish, or give --lock-timeout more seconds")])
                    time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{owner}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def git_commit(project_dir: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def check_secrets(pipeline: Pipeline, environ: Mapping[str, str]) -> None:
    missing = [n for n in pipeline.environment.secrets if not environ.get(n)]
    if missing:
        names = ", ".join(f"`{n}`" for n in missing)
        raise DiagnosticError([Diagnostic(
            "MLP405", f"declared secret{'s' * (len(missing) > 1)} {names} not set in the environment",
            pipeline.location("environment.secrets"),
            f"export {missing[0]}=… before `mlprism run` (secrets are read from the caller's environment, never stored)")])


class Slots:
    """A counting semaphore with weights: a step asking for cpu: 2 takes two of the -j slots."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self._free = self.total
        self._cond = threading.Condition()

    def _clamp(self, weight: int) -> int:
        """A step asks for at least one slot and gets at most all of them."""
        return min(max(1, weight), self.total)

    @contextlib.contextmanager
    def take(self, weight: int) -> Iterator[None]:
        weight = self._clamp(weight)
        with self._cond:
            while self._free < weight:
                self._cond.wait()
            self._free -= weight
        try:
            yield
        finally:
            self.give(weight)

    def try_take(self, weight: int) -> int | None:
        """Take ``weight`` slots if they are free now: the weight taken (give it back), or None."""
        weight = self._clamp(weight)
        with self._cond:
            if self._free < weight:
                return None
            self._free -= weight
        return weight

    def give(self, weight: int) -> None:
        with self._cond:
            self._free += weight
            self._cond.notify_all()


@dataclass(slots=True)
class _Inline:
    """A step started from the scheduling loop (:meth:`Run._start`): its attempt and what its end needs."""

    step: Step
    decision: Decision
    started: Started
    outs: list[str]
    log_path: Path
    started_at: float                 # time.time() of the first attempt
    weight: int                       # slots held (0 while waiting to retry)
    guard: threading.Lock | None
    attempts: int = 1
    deadline: float | None = None     # monotonic: SIGTERM to its group then
    kill_at: float | None = None      # monotonic: SIGKILL to its group then (timed out, still running)
    timed_out: bool = False
    code: int | None = None           # the last attempt's exit code
    retry_at: float = 0.0             # monotonic: the next attempt, once the backoff has passed
    retry: bool = True                # False: the run is stopping, no more attempts


@dataclass(slots=True)
class _Unsaved:
    """A run step's outputs, checked and hashed, not yet in the cache (see :meth:`Run._save_later`)."""

    hashed: Mapping[str, tuple[Digest, bytes | None]]
    record: StepRecord
    guard: threading.Lock | None = None      # its in-flight lock, held until the record is written


class _Waker:
    """An eventfd the scheduling loop polls beside its steps' pidfds; worker threads write it with a result.

    Closed when the loop ends: a late ``wake`` (a sweep's leader releasing a follower that stopped)
    does nothing, instead of writing to a descriptor number that may be reused.
    """

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._lock = threading.Lock()

    def wake(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)

    def close(self) -> None:
        with self._lock:
            os.close(self.fd)
            self.fd = -1


class _Started:
    """The steps a run's scheduling loop started itself (:meth:`Run._start`), as the loop waits for them.

    Their pidfds are polled with a :class:`_Waker` that worker threads write when they post a
    result, so one ``poll`` waits for both kinds of steps. A step past its ``timeout`` gets
    SIGTERM to its process group, SIGKILL after the launcher's grace period, and SIGKILL again
    once its shell exited (what it left behind), as :func:`_stop_group` does for a worker; a
    failed attempt with retries left waits for its backoff without holding slots.
    """

    def __init__(self, run: Run, kill_grace: float) -> None:
        self.run = run
        self.kill_grace = kill_grace
        self.waker = _Waker()
        self.poller = select.poll()
        self.poller.register(self.waker.fd, select.POLLIN)
        self.live: dict[int, _Inline] = {}                   # pidfd -> the step
        self.waiting: list[tuple[float, int, _Inline]] = []  # retries, by when they are due
        self._order = itertools.count()
        self._starved = False        # the next retry found no free slots: wait for a step to end, not its time

    def __bool__(self) -> bool:
        return bool(self.live or self.waiting)

    def add(self, launch: _Inline) -> StepResult | None:
        """Watch a started step (its result: it ended already).

        Without a pidfd for it (no descriptors left) it is waited for here, its timeout kept.
        """
        try:
            fd = os.pidfd_open(launch.started.proc.pid)
        except OSError:
            proc = launch.started.proc
            try:
                _wait(proc, None if launch.deadline is None else max(0.0, launch.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                launch.timed_out = True
                _stop_group(proc, self.kill_grace)
            return self._end(launch)
        self.live[fd] = launch
        self.poller.register(fd, select.POLLIN)
        return None

    def wait(self) -> tuple[list[StepResult], bool]:
        """Wait up to 100 ms for a step to exit, a timer or the waker: the steps' results, and whether anything woke."""
        timeout = 100.0
        due = [t for t in map(_timer, self.live.values()) if t is not None]
        if self.waiting and not self._starved:
            due.append(self.waiting[0][0])
        if due:
            timeout = min(timeout, max(0.0, (min(due) - time.monotonic()) * 1000))
        events = self.poller.poll(math.ceil(timeout))
        if events:
            self._starved = False
        results = []
        for fd, _ in events:
            launch = self.live.pop(fd, None)
            if launch is None:
                self.waker.drain()
                continue
            self.poller.unregister(fd)
            os.close(fd)
            result = self._end(launch)
            if result is not None:
                results.append(result)
        now = time.monotonic()
        self._expire(now)
        while self.waiting and self.waiting[0][0] <= now:
            launch = self.waiting[0][2]
            again = _safely(launch.step.name, launch.decision, self.run._restart, launch)
            if again is False:
                self._starved = True                        # no free slots yet: a finishing step frees them
                break
            heapq.heappop(self.waiting)
            if isinstance(again, StepResult):               # it could not start again
                self.run._release(launch)
                results.append(again)
                continue
            result = self.add(launch)
            if result is not None:
                results.append(result)
        return results, bool(events)

    def _end(self, launch: _Inline) -> StepResult | None:
        """A step's process exited: its result, or None when it waits to be retried."""
        result = _safely(launch.step.name, launch.decision, self.run._exited, launch)
        if result is None:
            heapq.heappush(self.waiting, (launch.retry_at, next(self._order), launch))
        return result

    def _expire(self, now: float) -> None:
        for launch in self.live.values():
            if launch.kill_at is not None and now >= launch.kill_at:
                launch.kill_at = None
                _signal_group(launch.started.proc.pid, signal.SIGKILL)
            elif launch.deadline is not None and not launch.timed_out and now >= launch.deadline:
                launch.timed_out = True
                launch.kill_at = now + self.kill_grace
                _signal_group(launch.started.proc.pid, signal.SIGTERM)

    def abort(self) -> list[StepResult]:
        """After the launcher stopped every process: the live steps' results; the waiting retries given up."""
        results = []
        for fd, launch in list(self.live.items()):
            del self.live[fd]
            self.poller.unregister(fd)
            os.close(fd)
            launch.retry = False
            result = self._end(launch)
            if result is not None:
                results.append(result)
        for _, _, launch in self.waiting:
            self.run._release(launch)
            results.append(_safely(launch.step.name, launch.decision, self.run._outcome_of, launch))
        self.waiting.clear()
        return results

    def close(self) -> None:
        for fd in self.live:
            os.close(fd)
        self.live.clear()
        self.waker.close()


def _timer(launch: _Inline) -> float | None:
    """When a started step needs a signal next (monotonic), if it does."""
    if launch.kill_at is not None:
        return launch.kill_at
    return None if launch.timed_out else launch.deadline


class Session:
    """What the runs of one ``mlprism run`` share: state, lock, cache, ledger, launcher, display, slots."""

    def __init__(self, project_dir: Path, pipeline: Pipeline, options: RunOptions) -> None:
        self.project_dir = project_dir
        self.options = options
        self.pipeline = pipeline
        local = pipeline.targets.get("local") or {}
        self.jobs = max(1, options.jobs or int(local.get("jobs") or 0) or os.cpu_count() or 1)
        self.secrets = secret_values(pipeline, options.env)
        self.redactions = redaction_values(self.secrets.values())     # what masking looks for (see redact)
        self.display = options.display or make_display(options.json, options.quiet)
        if self.secrets:
            values = self.redactions
            self.display.redact = lambda s: mask(s, values)
        self.state_dir = state_dir_of(project_dir)
        self.hasher: Hasher
        self.cache: Cache
        self.ledger: Ledger
        self.launcher: Launcher
        self.slots = Slots(self.jobs)
        self.shared = False                  # several runs at once (a sweep): they share steps in flight
        self._inflight: dict[str, threading.Lock] = {}
        self._inflight_guard = threading.Lock()
        self._stack = contextlib.ExitStack()
        self.no_escapes: set[tuple[Any, ...]] = set()     # path sets found free of symlink escapes (a sweep's runs)
        self._escapes_guard = threading.Lock()
        self.git_commit: str | None = None
        #: set when the runner stops (an interrupt): every run's loop then starts nothing more
        self.stopping = threading.Event()

    def __enter__(self) -> Session:
        try:
            ensure_state_dir(self.project_dir)
            self._stack.enter_context(project_lock(
                self.state_dir, f"pid {os.getpid()}", self.options.lock_timeout,
                lambda msg: self.display.message(msg, err=True)))
            running_dir = self.state_dir / "running"
            running_dir.mkdir(exist_ok=True)
            reaped = reap_orphans(running_dir)
            if reaped:
                self.display.message(f"killed {reaped} step process group(s) left running by an interrupted run",
                                     err=True)
            self.hasher = Hasher(self.state_dir)
            self.cache = Cache(self.state_dir)
            self.cache.clean_tmp()
            self.cache.clean_restore_leftovers(self.project_dir, (o for st in self.pipeline.steps
                                                                  for o in _step_outputs(st)))
            self.ledger = Ledger(self.state_dir / "ledger.db")
            self._stack.callback(self.ledger.close)
            self._stack.callback(self.hasher.save)
            self.ledger.mark_interrupted()
            self.launcher = self._launcher(running_dir)
            reap_containers = getattr(self.launcher, "reap_orphans", None)
            if reap_containers is not None:     # --in-docker: a killed runner's step containers go on running
                reaped = reap_containers()
                if reaped:
                    self.display.message(f"killed {reaped} step container(s) left running by an interrupted run",
                                         err=True)
            close = getattr(self.launcher, "close", None)
            if close is not None:
                self._stack.callback(close)
            self.git_commit = git_commit(self.project_dir)
        except BaseException:
            self._stack.close()
            self.display.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
        finally:
            self.display.close()

    def _launcher(self, running_dir: Path) -> Launcher:
        if self.options.launcher is not None:
            return self.options.launcher
        if self.options.in_docker:
            try:
                from mlprism.runtime.container import DockerLauncher
            except ImportError as exc:
                raise DiagnosticError([Diagnostic("MLP002", f"--in-docker is not available: {exc}", None,
                                                  "install mlprism with Docker support, or run without --in-docker")])
            return DockerLauncher(image=self.options.image or default_image(self.pipeline),  # type: ignore[no-any-return]
                                  project_dir=self.project_dir,
                                  redact_values=self.redactions)
        return LocalLauncher(running_dir, list(self.secrets.values()))

    def inflight(self, fingerprint: str) -> threading.Lock:
        """One lock per fingerprint: two runs of a sweep never run the same step at once."""
        with self._inflight_guard:
            lock = self._inflight.get(fingerprint)
            if lock is None:
                lock = self._inflight[fingerprint] = threading.Lock()
            return lock

    def terminate(self) -> None:
        """Stop: no run of this session starts another step, and the running ones are killed."""
        self.stopping.set()
        term = getattr(self.launcher, "terminate_all", None)
        if term is not None:
            term()


def default_image(pipeline: Pipeline) -> str:
    """The pipeline image `mlprism build` makes: ``[REGISTRY/]NAME-pipeline:TAG`` (targets.docker)."""
    opts = pipeline.targets.get("docker") or {}
    registry = str(opts.get("registry") or "").rstrip("/")
    return f"{registry + '/' if registry else ''}{pipeline.name}-pipeline:{opts.get('tag') or 'dev'}"


# -- deciding what to do ------------------------------------------------------------------------
@dataclass
class Decision:
    action: str                                  # "run", "cached" or "restore"
    reasons: list[str]
    fingerprint: Fingerprint
    inputs: dict[str, Digest]
    record: StepRecord | None = None
    outputs: dict[str, Digest] = field(default_factory=dict)   # current digests (cached/restore)
    restore: list[str] = field(default_factory=list)
    previous: str | None = None                  # the fingerprint in the lock file

    @property
    def reason(self) -> str:
        return self.reasons[0] if self.reasons else ""


def _short_hash(h: Any) -> str:
    return str(h)[:12] if h else "none"


def diff_components(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why two fingerprints differ, one sentence per changed part."""
    out: list[str] = []
    if "command" in old and old.get("command") != new.get("command"):
        a, b = (" ".join(str(c).split()) for c in (old.get("command"), new.get("command")))
        if a == b:                   # only the whitespace differs: show it
            a, b = repr(old.get("command")), repr(new.get("command"))
        out.append(f"command changed: `{a}` → `{b}`")      # one line each (a block scalar ends with a newline)
    for kind, label in (("params", "param"), ("env", "environment variable")):
        if kind not in old:
            continue
        a, b = old.get(kind) or {}, new.get(kind) or {}
        for k in sorted(set(a) | set(b)):
            if k not in b:
                out.append(f"{label} `{k}` removed (was {a[k]!r})")
            elif k not in a:
                out.append(f"{label} `{k}` added: {b[k]!r}")
            elif a[k] != b[k]:
                out.append(f"{label} `{k}` changed: {a[k]!r} → {b[k]!r}")
    if "secrets" in old and old.get("secrets") != new.get("secrets"):
        out.append(f"declared secrets changed: {old.get('secrets')} → {new.get('secrets')}")
    if "python" in old and old.get("python") != new.get("python"):
        out.append(f"environment.python changed: {old.get('python')} → {new.get('python')}")
    if "requirements" in old and old.get("requirements") != new.get("requirements"):
        out.append(f"requirements file changed: {_short_hash(old.get('requirements'))} → "
                   f"{_short_hash(new.get('requirements'))}")
    if "definition" in old and old.get("definition") != new.get("definition"):
        a, b = old.get("definition") or {}, new.get("definition") or {}
        parts = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        out.append(f"step definition changed: {', '.join(parts)}")
    a, b = old.get("inputs") or {}, new.get("inputs") or {}
    for k in sorted(set(a) | set(b)):
        if k not in b:
            out.append(f"input `{k}` removed")
        elif k not in a:
            out.append(f"input `{k}` added ({_short_hash(b[k])})")
        elif a[k] != b[k]:
            out.append(f"input `{k}` changed: {_short_hash(a[k])} → {_short_hash(b[k])}")
    if "v" in old and old.get("v") != new.get("v"):
        out.append(f"fingerprint format changed: v{old.get('v')} → v{new.get('v')}")
    return out


class _Planner:
    """Decides, step by step, whether to run, skip or restore (shared by run, --dry-run, status, explain)."""

    def __init__(self, pipeline: Pipeline, workdir: Path, hasher: Hasher, cache: Cache, lock: dict[str, Any],
                 secrets: Mapping[str, str], forced: set[str], predict: bool = False) -> None:
        self.pipeline = pipeline
        self.workdir = workdir
        self.root = str(workdir)
        self.hasher = hasher
        self.cache = cache
        self.lock_steps: dict[str, Any] = dict(lock.get("steps") or {})
        self.secrets = secrets
        self.forced = forced
        # planning only (--dry-run, status): the outputs cached or restored steps will have
        self.predict = predict
        self.predicted: dict[str, OutputEntry] = {}
        self.flat_params = pipeline.flat_params()
        req = pipeline.environment.requirements
        if req:
            d = hasher.digest(workdir / req)
            self.req_hash: str | None = d.hash if d.exists else "missing"
        else:
            self.req_hash = None

    def _lock_record(self, name: str, fp: str) -> StepRecord | None:
        entry = self.lock_steps.get(name)
        if not isinstance(entry, dict) or entry.get("fingerprint") != fp:
            return None
        try:
            outputs = {k: OutputEntry.from_dict(v) for k, v in (entry.get("outputs") or {}).items()}
        except (KeyError, TypeError, ValueError):
            return None
        return StepRecord(fp, name, outputs, {}, {}, 0.0, 0.0, None)

    def previous_components(self, name: str) -> tuple[str | None, dict[str, Any] | None]:
        entry = self.lock_steps.get(name)
        if not isinstance(entry, dict) or not entry.get("fingerprint"):
            return None, None
        prev = str(entry["fingerprint"])
        rec = self.cache.get_record(prev)
        if rec is not None and rec.components:
            return prev, rec.components
        partial: dict[str, Any] = {"params": entry.get("params") or {},
                                   "inputs": {k: (v or {}).get("hash") for k, v in (entry.get("inputs") or {}).items()}}
        return prev, partial

    def why_changed(self, name: str, fp: Fingerprint) -> tuple[list[str], str | None]:
        prev, old = self.previous_components(name)
        if prev is None or old is None:
            return ["never ran: no record of this step in the cache or the lock file"], None
        reasons = diff_components(old, fp.components)
        if not reasons:
            reasons = ["command, environment or step definition changed since the lock file was written"]
        return reasons, prev

    def decide(self, step: Step, pending_upstream: Sequence[str] = ()) -> Decision:
        inputs: dict[str, Digest] = {}
        for i in step.inputs:
            key = posixpath.normpath(i)
            if key in self.predicted:
                e = self.predicted[key]
                inputs[key] = Digest(e.kind, e.hash, e.size, e.executable, None, e.files)
            else:
                inputs[key] = self.hasher.digest(os.path.join(self.root, i))
        fp = compute_fingerprint(self.pipeline, step, {k: d.hash for k, d in inputs.items()}, self.req_hash,
                                 self.secrets, self.flat_params)
        prev = (self.lock_steps.get(step.name) or {}).get("fingerprint") if isinstance(
            self.lock_steps.get(step.name), dict) else None
        if pending_upstream:
            return Decision("run", [f"upstream {', '.join(f'`{u}`' for u in pending_upstream)} will run first; "
                                    "decided once its outputs exist"], fp, inputs, previous=prev)
        if not step.cache:
            return Decision("run", ["`cache: false`: this step runs every time"], fp, inputs, previous=prev)
        if step.name in self.forced:
            return Decision("run", ["forced (--force)"], fp, inputs, previous=prev)
        # the lock file (loaded once) answers for the usual case, a step unchanged since the last run;
        # the cache's records answer for any earlier state (a param switched back)
        record = self._lock_record(step.name, fp.digest) or self.cache.get_record(fp.digest)
        if record is None:
            reasons, prev = self.why_changed(step.name, fp)
            return Decision("run", reasons, fp, inputs, previous=prev)
        current = {p: self.hasher.digest(os.path.join(self.root, p)) for p in record.outputs}
        bad = sorted(p for p, e in record.outputs.items() if current[p].hash != e.hash)
        if self.predict:
            for p, e in record.outputs.items():
                self.predicted[posixpath.normpath(p)] = e
        if not bad:
            return Decision("cached", ["up to date"], fp, inputs, record, current, previous=prev)
        if all(self.cache.can_restore(record.outputs[p], fp.digest) for p in bad):
            what = ", ".join(f"`{p}`" for p in bad)
            if prev is not None and prev != fp.digest:
                # a param or input switched back: the outputs here are another version's, not edited
                reasons, _ = self.why_changed(step.name, fp)
                reasons.append(f"the cache has this version's {what}: restored from it, not run")
            else:
                state = ("missing" if all(not current[p].exists for p in bad)
                         else "changed" if all(current[p].exists for p in bad) else "missing or changed")
                reasons = [f"{what} {state}; the cache has the recorded version"]
            return Decision("restore", reasons, fp, inputs, record, current, bad, previous=prev)
        for p in record.outputs:
            self.predicted.pop(posixpath.normpath(p), None)
        return Decision("run", [f"outputs {', '.join(f'`{p}`' for p in bad)} are missing or changed, "
                                "and the cache does not hold them"], fp, inputs, previous=prev)


# -- running ----------------------------------------------------------------------------------
def _remove(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            raise


def _venv_path(environ: Mapping[str, str]) -> str:
    """PATH with this interpreter's virtualenv first, so `python` in a step is the one running mlprism."""
    path = environ.get("PATH", os.defpath)
    if sys.prefix == sys.base_prefix:
        return path
    bindir = os.path.dirname(sys.executable)
    parts = path.split(os.pathsep)
    return path if bindir in parts else os.pathsep.join([bindir, *parts])


def _cpu_slots(cpu: str | None) -> int:
    """How many -j slots a step takes: its cpu request rounded up (``500m`` -> 1, ``2`` -> 2)."""
    if not cpu:
        return 1
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.ceil(value))


def _step_outputs(step: Step) -> list[str]:
    outs = [posixpath.normpath(o) for o in step.outputs]
    if step.metrics and posixpath.normpath(step.metrics) not in outs:
        outs.append(posixpath.normpath(step.metrics))
    return outs


class Run:
    """One run of one pipeline in one working directory (the project, or a sweep's workspace)."""

    def __init__(self, session: Session, workdir: Path, pipeline: Pipeline, options: RunOptions, run_id: str, *,
                 write_lock: bool = True, register: bool = True, parent: str | None = None,
                 info: Mapping[str, Any] | None = None, lazy: bool = False,
                 share: SharedSteps | None = None, leader: bool = False) -> None:
        self.s = session
        self.workdir = workdir
        self.pipeline = pipeline
        self.options = options
        self.run_id = run_id
        self.write_lock_file = write_lock
        self.register_model = register
        self.parent = parent
        self.info = dict(info or {})
        self.index = GraphIndex.of(pipeline)
        self.selected = select_steps(pipeline, options, self.index)
        self.forced = forced_steps(self.selected, options)
        self.spec_path = workdir / pipeline.spec_file
        self.lock_file = lock_path(session.project_dir / pipeline.spec_file)
        self.lock = read_lock(self.lock_file) if write_lock else {}
        self.lock_steps: dict[str, Any] = dict(self.lock.get("steps") or {})
        self.lock_changed = False
        self.run_dir = session.state_dir / "runs" / run_id
        self._run_dir_rel: str | None = None       # what _rel gives for run_dir, worked out once (see _launch)
        env = dict(options.env)
        env["PATH"] = _venv_path(env)
        env.update(pipeline.environment.variables)
        env["MLPRISM_RUN_ID"] = run_id
        self.base_env = env
        self.results: dict[str, StepResult] = {}
        self.unsaved: dict[str, _Unsaved] = {}     # succeeded steps the loop caches once their downstream started
        self.messages: list[str] = []
        self.label = ""                      # a sweep's run number, shown before step names
        self._made_dirs: set[str] = set()
        self._champions: dict[str, dict[str, float] | None] = {}
        # a sweep's workspace starts without outputs: a step the cache answers for is not restored
        # into it (its outputs stay "deferred", known by their recorded hashes) until a step has to
        # run there, when every deferred output is put in place first (see _materialize)
        self.lazy = lazy
        self.deferred: dict[str, OutputEntry] = {}
        self._deferred_dirs: dict[str, int] = {}       # folder -> how many deferred outputs lie below it
        self._deferred_lock = threading.RLock()      # the loop defers, workers materialize before launching
        # a sweep's shared steps (see SharedSteps): the leader runs them, a follower waits for it
        self.share = share
        self.leader = leader

    # -- helpers ------------------------------------------------------------------------
    def _rel(self, path: Path) -> str:
        """``path`` for people (messages, the ledger): relative to the working directory, and printable even
        when a folder's name is not UTF-8 (those bytes are shown as ``\\xff``; SQLite and stdout refuse them)."""
        try:
            rel = os.path.relpath(path)
        except (ValueError, OSError):       # OSError: the working directory is gone (a step deleted it)
            rel = str(path)
        return rel if rel.isascii() else os.fsencode(rel).decode("utf-8", "backslashreplace")

    def _log_rel(self, name: str) -> str:
        """``_rel(run_dir / f"{name}.log")`` for a step name (no `/` in it) without a relpath per step."""
        if self._run_dir_rel is None:
            self._run_dir_rel = self._rel(self.run_dir)
        return f"{self._run_dir_rel}/{name}.log"

    def _dn(self, name: str) -> str:
        return f"{self.label}:{name}" if self.label else name

    def _redact(self, text: str) -> str:
        return redact(text, self.s.secrets) if self.s.secrets else text

    def _check_inputs(self) -> None:
        """Before any step runs: every input that no step of this run produces must exist (a declared
        data file, a file in the project, or the output of a step the selection leaves out)."""
        sel = set(self.selected)
        producers: dict[str, str] = {}
        holders: set[str] = set()            # directories holding an output of a step of this run
        for s in self.pipeline.steps:
            for o in (*s.outputs, s.metrics) if s.metrics else s.outputs:
                key = posixpath.normpath(o)
                producers[key] = s.name
                if s.name in sel:
                    while "/" in key:
                        key = key.rpartition("/")[0]
                        holders.add(key)
        data = {posixpath.normpath(d.path): d.name for d in self.pipeline.data}
        root = os.fspath(self.workdir)
        errors = []
        for name in self.selected:
            for n, i in enumerate(self.index.steps[name].inputs):
                key = posixpath.normpath(i)
                producer = producers.get(key)
                if producer in sel or key in holders:
                    continue
                if producer is None:               # below a directory output? (its parents, not every output)
                    parent = key
                    while producer is None and "/" in parent:
                        parent = parent.rpartition("/")[0]
                        producer = producers.get(parent)
                    if producer in sel:
                        continue
                if not os.path.exists(i if os.path.isabs(i) else f"{root}/{i}"):
                    if producer:
                        hint = f"run `{producer}` first (e.g. `mlprism run {self.pipeline.spec_file} --until {producer}`)"
                    elif key in data:
                        hint = f"it is the declared data `{data[key]}`: put the file there, or fix `data.{data[key]}.path`"
                    else:
                        hint = "create it, or fix the path"
                    errors.append(Diagnostic("MLP411", f"step `{name}` reads `{i}`, which does not exist",
                                             self.pipeline.location(f"steps.{name}.inputs.{n}")
                                             or self.pipeline.location(f"steps.{name}.inputs"), hint))
        if errors:
            raise DiagnosticError(errors)

    def _check_escapes(self) -> None:
        """Hardening: no path may lead out of the project through a symlink (MLP230).

        A sweep's combinations usually declare the same paths: the project is checked once per distinct set.
        """
        p = self.pipeline
        steps = p.steps if len(self.selected) == len(p.steps) else [self.index.steps[n] for n in self.selected]
        key = (tuple((d.path, d.external) for d in p.data),
               tuple((s.inputs, s.outputs, s.metrics) for s in steps),
               p.registry.artifact if p.registry is not None else None, p.environment.requirements)
        with self.s._escapes_guard:                  # a sweep's runs start at once: one checks, the others wait
            if key in self.s.no_escapes:
                return
            escaping = escaping_paths(p, self.s.project_dir, self.selected)
            if escaping:
                raise DiagnosticError(escaping)
            self.s.no_escapes.add(key)

    def champion(self, stage: str) -> dict[str, float] | None:
        if stage in self._champions:
            return self._champions[stage]
        value = None
        reg = self.pipeline.registry
        if reg is not None:
            try:
                from mlprism.runtime.registry import ModelRegistry
            except ImportError:
                ModelRegistry = None
            if ModelRegistry is not None:
                value = ModelRegistry(self.s.state_dir).champion_metrics(reg.name, stage)
        self._champions[stage] = value
        return value

    # -- the loop -------------------------------------------------------------------------
    def execute(self) -> RunResult:
        t0 = time.monotonic()
        self._check_escapes()
        self._check_inputs()
        planner = _Planner(self.pipeline, self.workdir, self.s.hasher, self.s.cache, self.lock, self.s.secrets,
                           self.forced)
        self.planner = planner
        data = {d.name: self.s.hasher.digest(self.workdir / d.path) for d in self.pipeline.data}
        ledger = self.s.ledger
        ledger.start_run(self.run_id, self.pipeline.name, spec_file=self.pipeline.spec_file,
                         overrides=[self._redact(o) for o in self.pipeline.overrides], git_commit=self.s.git_commit,
                         parent=self.parent, params=self.pipeline.flat_params(), pid=os.getpid(),
                         info={**self.info, "steps": self.selected, "workdir": self._rel(self.workdir)})
        ledger.add_artifacts(self.run_id, "", "data", {d.path: (data[d.name].hash, data[d.name].size)
                                                       for d in self.pipeline.data})
        ledger.add_lineage(self.run_id, [(f"data:{d.name}", f"path:{posixpath.normpath(d.path)}", "data")
                                         for d in self.pipeline.data])
        ledger.commit()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        display = self.s.display
        if self.parent is None:
            display.run_started(self.run_id, self.pipeline.name, len(self.selected), self.s.jobs)
        status = "failed"
        try:
            self._loop(planner)
            status = "succeeded" if all(r.ok for r in self.results.values()) else "failed"
            if self.s.stopping.is_set() and (status == "failed" or len(self.results) < len(self.selected)):
                status = "interrupted"            # stopped by another thread's interrupt (a sweep's)
                self.messages.append("interrupted: running steps were stopped")
        except KeyboardInterrupt:
            self.s.terminate()
            status = "interrupted"
            self.messages.append("interrupted: running steps were stopped")
        finally:
            for name in self.selected:
                if name not in self.results:
                    upstream_failed = [u for u in self.index.ups[name]
                                       if u in self.results and not self.results[u].ok]
                    r = StepResult(name, "blocked" if upstream_failed else "cancelled",
                                   reason=f"upstream `{upstream_failed[0]}` did not succeed" if upstream_failed
                                   else "the run stopped before this step started")
                    self.results[name] = r
                    ledger.record_step(self.run_id, name, status=r.status, error=r.reason)
                    self.s.display.step_finished(r, self._dn(name))
            lock_written = self._write_lock(data) if self.write_lock_file else False
            if getattr(self, "lock_error", None) and status == "succeeded":
                status = "failed"
            registered = None
            if status == "succeeded" and self.register_model:
                registered = self.register(data)
            ledger.finish_run(self.run_id, status, {**self.info, "steps": self.selected,
                                                    "workdir": self._rel(self.workdir),
                                                    "registered": _jsonable(registered)})
            ledger.commit()
        result = RunResult(self.run_id, status, {n: self.results[n] for n in self.selected},
                           time.monotonic() - t0, registered, None,
                           self._rel(self.lock_file) if lock_written else None,
                           {d.name: {"path": d.path, **data[d.name].to_dict()} for d in self.pipeline.data},
                           self.messages)
        return result

    def _loop(self, planner: _Planner) -> None:
        index = self.index
        order = index.order
        sel = set(self.selected)
        downs = {n: [d for d in index.downs[n] if d in sel] for n in self.selected}
        waiting = {n: sum(1 for u in index.ups[n] if u in sel) for n in self.selected}
        ready = [(order[n], n) for n in self.selected if waiting[n] == 0]
        heapq.heapify(ready)
        done_q: queue.SimpleQueue[StepResult | str] = queue.SimpleQueue()     # str: the leader finished that step
        running = 0
        stop = False
        dirty = False
        last_commit = time.monotonic()
        display = self.s.display
        jobs = self.s.jobs
        share = self.share or SharedSteps(frozenset())
        # a follower's shared steps wait for the leader (parked), then take its result
        follow = share.names if not self.leader else frozenset()
        parked: set[str] = set()
        launcher = self.s.launcher
        # the steps this thread starts itself (see _start): with the local launcher, where it can start them
        inline = (_Started(self, launcher.kill_grace) if isinstance(launcher, LocalLauncher) and type(launcher).run is LocalLauncher.run
                  and _pidfds() and launcher.can_start(self.workdir) else None)
        post: Callable[[StepResult | str], None] = done_q.put
        if inline is not None:
            wake = inline.waker.wake

            def post(item: StepResult | str) -> None:
                done_q.put(item)
                wake()
        if follow:
            share.follow(post)

        def woken(name: str) -> None:
            if name in parked:
                parked.remove(name)
                heapq.heappush(ready, (order[name], name))

        def submit(name: str, decision: Decision) -> None:
            # a step counts as running once it is where the loop will find its result (watched, or with a
            # worker), not before: an interrupt in between leaves no result to wait for
            nonlocal running
            if inline is not None:
                started = _safely(name, decision, self._start, index.steps[name], decision)
                if isinstance(started, _Inline):
                    started = inline.add(started)
                    if started is None:
                        running += 1
                        return
                if started is not None:
                    finish(started)
                    return
            pool.submit(lambda: post(_safely(name, decision, self._work, index.steps[name], decision)))
            running += 1

        def collect(item: StepResult | str) -> None:
            nonlocal running
            if isinstance(item, str):
                woken(item)
            else:
                running -= 1
                finish(item)

        def release(name: str) -> None:
            for d in downs[name]:
                waiting[d] -= 1
                if waiting[d] == 0:
                    heapq.heappush(ready, (order[d], d))

        # Succeeded steps whose outputs are checked and hashed but not yet cached (see _exited): the
        # steps they unblock start first, and these are cached and recorded while those run, off the
        # critical path of a chain, where the runner would otherwise idle while its one step runs.
        later: list[StepResult] = []

        def finish(result: StepResult) -> None:
            if result.name in self.unsaved:
                self.s.display.step_finished(result, self._dn(result.name))
                release(result.name)
                later.append(result)
            else:
                settle(result, released=False)

        def settle(result: StepResult, released: bool) -> None:
            nonlocal stop, dirty
            self._finish(result, shown=released)
            dirty = True
            if self.leader and result.name in share.names:
                share.finished(result.name, result)
            if result.ok:
                if not released:
                    release(result.name)
            elif not self.options.keep_going:
                stop = True          # (a step that fails late may have started some of its downstream)

        def save_later() -> None:
            while later:
                result = later.pop(0)
                self._save_later(result)
                settle(result, released=True)

        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mlprism-step") as pool:
            try:
                while True:
                    if self.s.stopping.is_set():
                        stop = True               # another thread stopped the session (a sweep interrupted)
                    while ready and not stop and running < jobs:
                        _, name = heapq.heappop(ready)
                        step = index.steps[name]
                        if name in follow:
                            if not share.done(name):
                                parked.add(name)
                                continue
                            lead = share.result(name)
                            if lead is not None:
                                finish(self._shared(step, lead))
                                continue
                        try:
                            if self.deferred and self._reads_deferred(step):
                                self._materialize(step)
                            decision = planner.decide(step)
                        except OSError as exc:
                            finish(StepResult(name, "failed", code="MLP410", error=f"cannot hash inputs: {exc}"))
                            continue
                        if decision.action == "cached":
                            # first: a record it writes holds the small outputs the followers then need
                            self._keep_vouched(step, decision)
                            if self.leader and name in share.names:
                                try:
                                    self._keep_for_followers(decision)
                                except OSError as exc:
                                    code, error = self._cache_failure(exc)
                                    finish(StepResult(name, "failed", decision.fingerprint.digest, code=code,
                                                      error=error))
                                    continue
                            finish(self._cached(step, decision))
                            continue
                        if self.lazy and self._defer(step, decision):
                            result = self._cached(step, decision)
                            result.reason = "up to date (outputs in the cache)"
                            finish(result)
                            continue
                        for o in step.outputs:
                            planner.predicted.pop(posixpath.normpath(o), None)
                        submit(name, decision)
                    save_later()
                    if running == 0 and (stop or not parked):
                        break
                    if dirty and time.monotonic() - last_commit > COMMIT_EVERY:
                        self.s.ledger.commit()
                        dirty = False
                        last_commit = time.monotonic()
                    if inline:
                        results, woke = inline.wait()
                        for result in results:
                            collect(result)
                        if not woke:
                            display.tick()
                            continue
                    else:
                        try:
                            collect(done_q.get(timeout=0.1))
                        except queue.Empty:
                            display.tick()
                            continue
                    while True:
                        try:
                            item = done_q.get_nowait()
                        except queue.Empty:
                            break
                        collect(item)
                    display.tick()
            except BaseException:
                with contextlib.suppress(Exception):
                    save_later()         # they finished: a resumed run must not run them again
                self.s.terminate()
                if inline is not None:
                    for result in inline.abort():
                        collect(result)
                while running > 0:
                    collect(done_q.get())
                raise
            finally:
                if inline is not None:
                    inline.close()
                for unsaved in self.unsaved.values():   # an interrupt between two saves: no lock kept
                    if unsaved.guard is not None:
                        unsaved.guard.release()
                self.unsaved.clear()
                if self.leader:
                    for name in sorted(share.names - self.results.keys()):
                        share.finished(name, None)          # release the followers, whatever happened here

    # -- deferred outputs (lazy workspaces) -----------------------------------------------------
    def _keep_vouched(self, step: Step, decision: Decision) -> None:
        """Put an up-to-date step in the cache when only the lock file vouched for it (a teammate's clone,
        a removed ``.mlprism``): its outputs and a record, so that switching a param or a file back later
        restores them instead of running the step again. Best effort: the outputs are fine where they are.
        """
        record = decision.record
        if record is None or record.components or not step.cache:
            return                               # the cache answered (its records have components)
        fp = decision.fingerprint.digest
        cache = self.s.cache
        try:
            if cache.has_record(fp):
                return
            root = os.fspath(self.workdir)
            hashed = {o: self.s.hasher.digest_output(f"{root}/{o}", CACHE_SMALL) for o in record.outputs}
            if any(hashed[o][0].hash != e.hash for o, e in record.outputs.items()):
                return                           # changed since it was decided: nothing to vouch for
            metrics: dict[str, float] = {}
            if step.metrics:
                with contextlib.suppress(DiagnosticError):
                    metrics = self._read_metrics(step)
            self._put(hashed, StepRecord(fp, step.name, {}, metrics, decision.fingerprint.components, time.time(),
                                         0.0, self.run_id))
        except OSError:
            pass

    def _keep_for_followers(self, decision: Decision) -> None:
        """Put a shared step's up-to-date outputs in the cache if only the project holds them.

        The followers take a shared step's outputs from the cache (see _shared). The lock file
        vouches for outputs without any cache (a teammate's checkout, a removed ``.mlprism``), and
        a record may outlive an object: what the leader found up to date in the project is stored,
        under the digests it just compared (``decision.outputs``).
        """
        assert decision.record is not None
        cache = self.s.cache
        fp = decision.fingerprint.digest
        for path, entry in decision.record.outputs.items():
            # a small file is kept in the step's record: the followers read it only if they restore it
            if not (cache.kept_in_record(entry, fp) or cache.can_restore(entry)):
                cache.store(self.workdir / path, decision.outputs[path])

    def _shared(self, step: Step, lead: StepResult) -> StepResult:
        """A follower's result for a shared step the leader finished: the same fingerprint, outputs left in the cache.

        Equal step definitions over equal upstream outputs give the leader's fingerprint
        (see SharedSteps): no need to hash inputs or read the cache record again.
        """
        with self._deferred_lock:
            for key, entry in lead.outputs.items():
                self._defer_key(posixpath.normpath(key), entry)
        now = time.time()
        return StepResult(step.name, "cached", lead.fingerprint, cache_hit=True, metrics=dict(lead.metrics),
                          reason="up to date (outputs in the cache)", started=now, ended=now,
                          inputs=dict(lead.inputs), outputs=dict(lead.outputs))

    def _defer(self, step: Step, decision: Decision) -> bool:
        """Leave a cache-answered step's missing outputs in the cache for now; False if it must be restored."""
        record = decision.record
        if decision.action != "restore" or record is None:
            return False
        return self._defer_outputs(step, record, decision.restore, decision.outputs)

    def _defer_outputs(self, step: Step, record: StepRecord, paths: Sequence[str],
                       current: Mapping[str, Digest]) -> bool:
        if step.metrics and not record.metrics:
            return False                     # its metrics are read from the file: restore it
        if not self.leader and any(current[p].exists for p in paths):
            return False                     # something is there (changed): put the recorded version back
        # a sweep's leader runs in the project, whose files are the previously selected combination's:
        # they stay until a step of the leader reads them, or the selected combination's are restored
        with self._deferred_lock:
            for p in paths:
                self._defer_key(posixpath.normpath(p), record.outputs[p])
        return True

    def _defer_key(self, key: str, entry: OutputEntry) -> None:
        """Note an output left in the cache (the planner knows its hash) and count it in each folder above it."""
        new = key not in self.deferred
        self.deferred[key] = self.planner.predicted[key] = entry
        if new:
            self._count_dirs(key, 1)

    def _count_dirs(self, key: str, delta: int) -> None:
        dirs = self._deferred_dirs
        while key != ".":
            key = posixpath.dirname(key) or "."
            count = dirs.get(key, 0) + delta
            if count:
                dirs[key] = count
            else:
                del dirs[key]

    def _deferred_reads(self, step: Step, *, own: bool) -> Iterator[str]:
        """The deferred outputs ``step`` reads: those inside an input directory, or a directory holding an
        input, and (``own``) those that are themselves inputs (the planner knows their recorded hashes)."""
        for i in step.inputs:
            key = posixpath.normpath(i)
            if key in self.deferred:
                if own:
                    yield key
                continue
            if key in self._deferred_dirs:
                prefix = "" if key == "." else key + "/"
                yield from (k for k in self.deferred if k.startswith(prefix))
            while "/" in key:
                key = key.rsplit("/", 1)[0]
                if key in self.deferred:
                    yield key
                    break

    def _reads_deferred(self, step: Step) -> bool:
        """Whether a step reads a deferred output whose hash the planner does not know (a folder around it)."""
        return next(self._deferred_reads(step, own=False), None) is not None

    def _materialize(self, step: Step) -> None:
        """Restore the deferred outputs ``step`` reads into the workspace (before it is hashed or runs there).

        That is every deferred output that is one of its declared inputs, lies inside an input
        directory, or is a directory holding an input: what the step is promised, as on every
        other target (a CI job or a pod gets its declared inputs). Other deferred outputs stay in
        the cache, so a combination that runs a few steps of a big sweep copies a few files.
        """
        with self._deferred_lock:
            for rel in sorted(set(self._deferred_reads(step, own=True))):
                self.s.cache.restore(self.workdir / rel, self.deferred[rel])
                del self.deferred[rel]
                self._count_dirs(rel, -1)

    # -- per step -------------------------------------------------------------------------
    def _metrics_of(self, step: Step, record: StepRecord | None) -> dict[str, float]:
        """A cached step's metrics: from its record, else from its (intact) metrics file."""
        if record is not None and record.metrics:
            return record.metrics
        if step.metrics:
            return self._read_metrics(step)
        return {}

    def _read_metrics(self, step: Step) -> dict[str, float]:
        """The step's metrics, with declared secrets' values masked in their names (a key such as
        ``rows@postgres://user:TOKEN@host`` would otherwise reach the ledger, the registry and the cache)."""
        metrics = read_metrics(self.workdir / step.metrics, [c.metric for c in step.gate])
        if self.s.secrets:
            metrics = {mask(k, self.s.redactions): v for k, v in metrics.items()}
        return metrics

    def _cached(self, step: Step, decision: Decision) -> StepResult:
        assert decision.record is not None
        now = time.time()
        try:
            metrics = self._metrics_of(step, decision.record)
        except DiagnosticError as exc:
            return StepResult(step.name, "failed", decision.fingerprint.digest, code="MLP406",
                              error=exc.diagnostics[0].message)
        return StepResult(step.name, "cached", decision.fingerprint.digest, cache_hit=True, metrics=metrics,
                          reason=decision.reason, started=now, ended=now,
                          inputs={k: (d.hash, d.size) for k, d in decision.inputs.items()},
                          outputs=dict(decision.record.outputs))

    def _restore(self, step: Step, decision: Decision, record: StepRecord, paths: Sequence[str]) -> StepResult:
        t0 = time.time()
        for p in paths:
            self.s.cache.restore(self.workdir / p, record.outputs[p])
        reason = (f"restored {', '.join(f'`{p}`' for p in paths)} from the cache" if paths
                  else "up to date")
        status = "restored" if paths else "cached"
        return StepResult(step.name, status, record.fingerprint, cache_hit=True,
                          metrics=self._metrics_of(step, record), reason=reason, started=t0, ended=time.time(),
                          duration=time.time() - t0,
                          inputs={k: (d.hash, d.size) for k, d in decision.inputs.items()},
                          outputs=dict(record.outputs))

    def _work(self, step: Step, decision: Decision) -> StepResult:
        if decision.action == "restore":
            assert decision.record is not None
            return self._restore(step, decision, decision.record, decision.restore)
        fp = decision.fingerprint.digest
        guard = self.s.inflight(fp) if step.cache else contextlib.nullcontext()
        with guard:
            early = self._before_launch(step, decision)
            if early is not None:
                return early
            return self._launch(step, decision)

    def _before_launch(self, step: Step, decision: Decision) -> StepResult | None:
        """Under the step's in-flight lock, before it starts: a result if another run of the sweep has just
        made its record (outputs restored), or if the deferred outputs it reads cannot be put in place."""
        fp = decision.fingerprint.digest
        if step.cache and step.name not in self.forced and self.s.shared:
            record = self.s.cache.get_record(fp)     # another run of the sweep may have just made it
            if record is not None:
                current = {p: self.s.hasher.digest(self.workdir / p) for p in record.outputs}
                bad = [p for p, e in record.outputs.items() if current[p].hash != e.hash]
                if all(self.s.cache.can_restore(record.outputs[p], fp) for p in bad):
                    if self.lazy and self._defer_outputs(step, record, bad, current):
                        return self._restore(step, decision, record, [])
                    return self._restore(step, decision, record, bad)
        if self.deferred:
            try:
                self._materialize(step)      # the step runs here: the deferred outputs it reads are put in place
            except OSError as exc:
                return StepResult(step.name, "failed", fp, code="MLP001",
                                  error=f"cannot restore outputs from the cache: {exc}")
        return None

    def _prepare(self, step: Step) -> tuple[list[str], Path, dict[str, str]]:
        """Before a step's first attempt: its old outputs removed, their folders made; its log and environment."""
        outs = _step_outputs(step)
        root = os.fspath(self.workdir)            # paths as strings: this runs for every step
        for o in outs:
            target = f"{root}/{o}"
            _remove(target)
            parent = target.rpartition("/")[0]
            if parent not in self._made_dirs:
                os.makedirs(parent, exist_ok=True)
                self._made_dirs.add(parent)
        return outs, self.run_dir / f"{step.name}.log", self._step_env(step)

    def _step_env(self, step: Step) -> dict[str, str]:
        return {**self.base_env, **step.env, "MLPRISM_STEP": step.name}

    def _launch(self, step: Step, decision: Decision) -> StepResult:
        """Run a step in this (worker) thread through the session's launcher, with its retries and timeout."""
        outs, log_path, env = self._prepare(step)
        weight = _cpu_slots(step.resources.cpu)
        started = time.time()
        attempts = 0
        code: int | None = None
        timed_out = False
        launcher = self.s.launcher
        while True:
            if self.s.stopping.is_set():          # Ctrl-C or SIGTERM before this attempt: none starts
                return StepResult(step.name, "cancelled", decision.fingerprint.digest, attempts=attempts,
                                  log=self._log_rel(step.name), log_file=os.fspath(log_path),
                                  started=started, ended=time.time(),
                                  reason=("stopped with the run" + (f" (exit code {code})" if attempts else
                                                                    " before this step started")))
            attempts += 1
            self._announce(step, log_path, attempts)
            timed_out = False
            with self.s.slots.take(weight):
                t_start = time.monotonic()
                try:
                    code = launcher.run(step.run, cwd=self.workdir, env=env, log_path=log_path,
                                        timeout=float(step.timeout) if step.timeout else None)
                except (TimeoutError, subprocess.TimeoutExpired):
                    timed_out, code = True, None
                # launchers may report a timeout as exit 124, like timeout(1) (DockerLauncher does)
                if code == TIMEOUT_EXIT_CODE and step.timeout and time.monotonic() - t_start >= step.timeout:
                    timed_out, code = True, None
            delay = None if self.s.stopping.is_set() else self._retry_delay(step, attempts, code, timed_out)
            if delay is None:
                break
            self.s.stopping.wait(delay)           # a backoff that an interrupt cuts short (then no retry)
        if not isinstance(launcher, LocalLauncher) and self.s.secrets:
            _scrub_log(log_path, list(self.s.secrets.values()))
        return self._outcome(step, decision, outs, log_path, code, timed_out, attempts, started, time.time())

    def _announce(self, step: Step, log_path: Path, attempt: int) -> None:
        """An attempt is about to start: its line in the log (after the first) and on the display.

        Before the process starts: the display follows the log from the size it has now.
        """
        if attempt > 1:
            with open(log_path, "ab") as log:
                log.write(f"--- mlprism: attempt {attempt} of {step.retries + 1} ---\n".encode())
        self.s.display.step_started(self._dn(step.name), step.run, log_path, attempt)

    def _retry_delay(self, step: Step, attempts: int, code: int | None, timed_out: bool) -> float | None:
        """After a failed attempt with retries left: the backoff before the next one (shown); else None."""
        if (code == 0 and not timed_out) or attempts > step.retries:
            return None
        delay = _backoff(attempts)
        why = f"timed out after {step.timeout}s" if timed_out else f"exit code {code}"
        self.s.display.step_retry(self._dn(step.name), attempts, delay, why)
        return delay

    def _spawn(self, step: Step, log_path: Path, env: dict[str, str],
               attempt: int) -> tuple[Started, float | None] | None:
        """Announce and start an attempt with the local launcher: its process and its deadline (monotonic);
        None if the launcher cannot start it."""
        launcher = self.s.launcher
        assert isinstance(launcher, LocalLauncher)
        self._announce(step, log_path, attempt)
        t_start = time.monotonic()
        started = launcher.start(step.run, cwd=self.workdir, env=env, log_path=log_path)
        if started is None:
            return None
        return started, t_start + float(step.timeout) if step.timeout else None

    def _start(self, step: Step, decision: Decision) -> _Inline | StepResult | None:
        """Start a step from the scheduling loop, without a worker thread; None: a worker runs it.

        For a command the local launcher can spawn here (see :meth:`LocalLauncher.start`): the
        loop polls its pidfd, times its timeout and retries (:class:`_Started`), and does the rest
        of :meth:`_launch` when it exits (:meth:`_exited`). One thread then does a cold run's
        bookkeeping, instead of a worker per step handing each result to the loop under the
        interpreter lock (docs/performance.md, eighth round). A result: the step needed no process.
        """
        if decision.action != "run":
            return None
        slots = self.s.slots
        weight = slots.try_take(_cpu_slots(step.resources.cpu))
        if weight is None:
            return None
        guard = self.s.inflight(decision.fingerprint.digest) if step.cache else None
        if guard is not None and not guard.acquire(blocking=False):
            slots.give(weight)
            return None                           # another run of the sweep is running it: a worker waits
        try:
            early = self._before_launch(step, decision)
            if early is not None:
                return early
            outs, log_path, env = self._prepare(step)
            started_at = time.time()
            spawned = self._spawn(step, log_path, env, 1)
            if spawned is None:                  # posix_spawn turned out not to work here (once): a worker runs it
                return None
            launch = _Inline(step, decision, spawned[0], outs, log_path, started_at, weight, guard,
                             deadline=spawned[1])
            guard = None
            weight = None
            return launch
        finally:
            if guard is not None:
                guard.release()
            if weight is not None:
                slots.give(weight)

    def _exited(self, launch: _Inline) -> StepResult | None:
        """A started step's process exited: its result, or None when it is to be retried (``launch.retry_at``).

        Its slots are given back at once (a worker holds them only while the process runs); its
        in-flight lock once its record is written, so another run of a sweep waiting for the same
        fingerprint finds the record (see _before_launch), as with a worker (_work).
        """
        launcher = self.s.launcher
        assert isinstance(launcher, LocalLauncher)
        step = launch.step
        retrying = False
        try:
            code = launch.started.proc.wait()
            launcher.end(launch.started)
            if launch.timed_out:                 # what the step left in its group goes too (see _stop_group)
                _signal_group(launch.started.proc.pid, signal.SIGKILL)
            launch.code = None if launch.timed_out else code
            self._give_slots(launch)
            delay = self._retry_delay(step, launch.attempts, launch.code, launch.timed_out) if launch.retry else None
            if delay is not None:
                launch.retry_at = time.monotonic() + delay
                retrying = True
                return None
            # a gate may still fail the step: it is cached at once; so is a step of a stopping run
            result = self._outcome_of(launch, later=launch.retry and not step.gate)
            unsaved = self.unsaved.get(step.name)
            if unsaved is not None:
                unsaved.guard, launch.guard = launch.guard, None
            return result
        finally:
            if not retrying:
                self._release(launch)

    def _outcome_of(self, launch: _Inline, later: bool = False) -> StepResult:
        return self._outcome(launch.step, launch.decision, launch.outs, launch.log_path, launch.code,
                             launch.timed_out, launch.attempts, launch.started_at, time.time(), later=later)

    def _restart(self, launch: _Inline) -> bool:
        """Start the next attempt of a step that waited for its backoff; False: no free slots yet."""
        step = launch.step
        taken = self.s.slots.try_take(_cpu_slots(step.resources.cpu))
        if taken is None:
            return False
        launch.weight = taken
        launch.attempts += 1
        spawned = self._spawn(step, launch.log_path, self._step_env(step), launch.attempts)
        if spawned is None:
            raise RuntimeError("the local launcher could not start the step again")
        launch.started, launch.deadline = spawned
        launch.timed_out = False
        launch.kill_at = None
        return True

    def _give_slots(self, launch: _Inline) -> None:
        if launch.weight:
            self.s.slots.give(launch.weight)
            launch.weight = 0

    def _release(self, launch: _Inline) -> None:
        """Give back what a started step holds: its slots and its in-flight lock."""
        self._give_slots(launch)
        if launch.guard is not None:
            launch.guard.release()
            launch.guard = None

    def _outcome(self, step: Step, decision: Decision, outs: Sequence[str], log_path: Path, code: int | None,
                 timed_out: bool, attempts: int, started: float, ended: float, *, later: bool = False) -> StepResult:
        """A run step's result: its exit, declared outputs and metrics checked; outputs hashed, cached, recorded.

        ``later``: a succeeded step's outputs are cached and its record written by :meth:`_save_later`
        (it is in ``unsaved`` until then).
        """
        name = step.name
        fp = decision.fingerprint.digest
        root = os.fspath(self.workdir)
        inputs = {k: (d.hash, d.size) for k, d in decision.inputs.items()}
        base = dict(fingerprint=fp, exit_code=code, duration=ended - started, attempts=attempts,
                    log=self._log_rel(name), log_file=os.fspath(log_path), inputs=inputs, started=started,
                    ended=ended)
        if timed_out:
            return StepResult(name, "failed", code="MLP403", **base,    # type: ignore[arg-type]
                              error=f"timed out after {step.timeout}s (process group killed)")
        if code != 0 and self.s.stopping.is_set():
            # the run is stopping (Ctrl-C, SIGTERM) and killed the step's process group: not the step's failure
            return StepResult(name, "cancelled", reason=f"stopped with the run (exit code {code})",
                              **base)  # type: ignore[arg-type]
        if code != 0:
            full = _disk_full_failure(self.workdir, outs, log_path)               # hardening: ENOSPC in a step
            if full is not None:
                return StepResult(name, "failed", code="MLP410", error=f"exit code {code}: {full}",
                                  **base)  # type: ignore[arg-type]
            return StepResult(name, "failed", code="MLP400", error=f"exit code {code}", **base)  # type: ignore[arg-type]
        missing = [o for o in step.outputs if not os.path.exists(f"{root}/{o}")]
        if missing:
            return StepResult(name, "failed", code="MLP401", **base,    # type: ignore[arg-type]
                              error="did not produce declared output" + "s" * (len(missing) > 1) + " "
                              + ", ".join(f"`{m}`" for m in missing))
        metrics: dict[str, float] = {}
        if step.metrics:
            try:
                metrics = self._read_metrics(step)
            except DiagnosticError as exc:
                return StepResult(name, "failed", code="MLP406", error=exc.diagnostics[0].message,
                                  **base)  # type: ignore[arg-type]
        hashed = {o: self.s.hasher.digest_output(f"{root}/{o}", CACHE_SMALL) for o in outs}
        entries = {o: OutputEntry.of(d) for o, (d, _) in hashed.items()}
        result = StepResult(name, "succeeded", metrics=metrics, outputs=entries, reason=decision.reason,
                            **base)  # type: ignore[arg-type]
        if step.cache:
            record = StepRecord(fp, name, entries, metrics, decision.fingerprint.components, time.time(),
                                ended - started, self.run_id)
            if later:
                self.unsaved[name] = _Unsaved(hashed, record)
            else:
                self._save(result, hashed, record)
        return result

    def _save(self, result: StepResult, hashed: Mapping[str, tuple[Digest, bytes | None]],
              record: StepRecord) -> None:
        """Put a run step's outputs in the cache and write its record; a full disk fails the step (MLP410)."""
        try:
            self._put(hashed, record)
        except OSError as exc:                                  # hardening: disk full while caching
            if not is_write_failure(exc):
                raise
            _fail(result, *self._cache_failure(exc))

    def _put(self, hashed: Mapping[str, tuple[Digest, bytes | None]], record: StepRecord) -> None:
        """Store a step's hashed outputs and write its record, which names what the store holds: a small
        file's bytes (the bytes that were hashed) travel inside it (INLINE_MAX)."""
        root = os.fspath(self.workdir)
        cache = self.s.cache
        record.outputs = {o: cache.store(f"{root}/{o}", d) if data is None else cache.store_bytes(data, d)
                          for o, (d, data) in hashed.items()}
        cache.put_record(record)

    def _cache_failure(self, exc: Exception) -> tuple[str, str]:
        """The code and message of a step whose outputs could not be put in the cache: MLP410 when the
        file system refused (full, read-only), else MLP001 (as :func:`_safely` reports any other error)."""
        if is_write_failure(exc):
            d410 = write_failure(exc, "the step's outputs into the cache", self.s.cache.root)
            return "MLP410", f"{d410.message}; {d410.hint}"
        return "MLP001", _internal_error(exc)

    def _save_later(self, result: StepResult) -> None:
        """Cache a step whose outputs :meth:`_outcome` checked and hashed with ``later`` (see _loop), then give
        back its in-flight lock. The result fails if that fails."""
        unsaved = self.unsaved.pop(result.name)
        try:
            self._save(result, unsaved.hashed, unsaved.record)
        except Exception as exc:  # a bug or an I/O error: as _safely
            _fail(result, "MLP001", _internal_error(exc))
        finally:
            if unsaved.guard is not None:
                unsaved.guard.release()

    def _finish(self, r: StepResult, shown: bool = False) -> None:
        """Main thread: gate, ledger, lock entry, display (``shown``: the display has it, unless it failed since)."""
        step = self.index.steps[r.name]
        if r.ok and step.gate:
            report = evaluate_gate(step, r.metrics, self.champion)
            r.gate = report
            if not report.passed:
                r.status, r.code = "failed", "MLP402"
                failed = [c for c in report.conditions if not c.passed]
                r.error = "gate failed: " + "; ".join(c.describe().removeprefix("FAIL ") for c in failed)
            if not report.passed or r.status == "succeeded":
                self.s.display.message(report.render(), step=self._dn(r.name), err=not report.passed)
        self.results[r.name] = r
        ledger = self.s.ledger
        ledger.record_step(self.run_id, r.name, status=r.status, exit_code=r.exit_code, duration=r.duration,
                           fingerprint=r.fingerprint, cache_hit=r.cache_hit, attempts=r.attempts, started=r.started,
                           ended=r.ended, error=self._redact(f"[{r.code}] {r.error}") if r.error else None,
                           log=r.log)
        if r.metrics:
            ledger.add_metrics(self.run_id, r.name, r.metrics)
        if r.inputs:
            ledger.add_artifacts(self.run_id, r.name, "input", r.inputs)
        if r.outputs:
            ledger.add_artifacts(self.run_id, r.name, "output", {k: (v.hash, v.size) for k, v in r.outputs.items()})
        edges = [(f"path:{posixpath.normpath(i)}", f"step:{r.name}", "input") for i in step.inputs]
        edges += [(f"step:{r.name}", f"path:{o}", "output") for o in r.outputs]
        ledger.add_lineage(self.run_id, edges)
        if r.gate is not None:
            ledger.buffer_report("gate", r.gate.to_dict(), run_id=self.run_id)
        if r.ok and r.fingerprint:
            entry = {
                "fingerprint": r.fingerprint,
                "params": step_params(self.pipeline, step, self.planner.flat_params),
                "inputs": {k: {"hash": h, "size": s} for k, (h, s) in r.inputs.items()},
                "outputs": {k: v.to_dict() for k, v in r.outputs.items()},
            }
            if self.lock_steps.get(r.name) != entry:
                self.lock_steps[r.name] = entry
                self.lock_changed = True
        if not shown or not r.ok:
            self.s.display.step_finished(r, self._dn(r.name))

    # -- after the loop ---------------------------------------------------------------------
    def _write_lock(self, data: Mapping[str, Digest]) -> bool:
        data_doc = {d.name: {"path": d.path, **data[d.name].to_dict()} for d in self.pipeline.data}
        if (self.lock and not self.lock_changed and self.lock.get("data") == data_doc
                and self.lock.get("pipeline") == self.pipeline.name and set(self.lock_steps) <= set(self.index.steps)):
            return False                     # unchanged: spare building and rendering a big lock file
        steps = {k: v for k, v in self.lock_steps.items() if k in self.index.steps}
        doc = lock_document(self.pipeline.name, data_doc, steps, list(self.index.steps))
        if self.lock and self.lock == doc and list(self.lock["steps"]) == list(doc["steps"]):
            return False
        try:
            return write_lock(self.lock_file, render_document(doc), doc)
        except OSError as exc:
            # hardening: the old lock stays (atomic replace); the run fails with MLP410
            d410 = write_failure(exc, "the lock file", self.lock_file)
            self.lock_error = f"[MLP410] {d410.message} (it still holds the previous run's hashes); {d410.hint}"
            self.messages.append(self.lock_error)
            self.s.display.message(self.lock_error, err=True)
            return False

    def register(self, data: Mapping[str, Digest]) -> Any:
        """Register the model once `registry.register_after` succeeded (ran or cached) and every gate held.

        The registry keys versions by the artifact's hash, so registering an unchanged
        model again returns its existing version.
        """
        reg = self.pipeline.registry
        if reg is None:
            return None
        r = self.results.get(reg.register_after)
        if r is None or not r.ok:
            return None
        artifact = self.workdir / reg.artifact
        if not artifact.exists():
            self.messages.append(f"not registered: `{reg.artifact}` does not exist")
            self.s.display.message(self.messages[-1], err=True)
            return None
        try:
            from mlprism.runtime.registry import ModelRegistry
        except ImportError as exc:
            self.messages.append(f"not registered: the model registry is unavailable ({exc})")
            self.s.display.message(self.messages[-1], err=True)
            return None
        lineage = {
            "data": {name: d.hash for name, d in sorted(data.items())},
            "params": self.pipeline.flat_params(),
            "metrics": self.metrics(),
            "fingerprint": r.fingerprint,
            "git_commit": self.s.git_commit,
        }
        mv = ModelRegistry(self.s.state_dir).register_version(reg.name, artifact, run_id=self.run_id, lineage=lineage)
        if mv.created:
            self.s.display.message(f"model `{reg.name}` registered: version {mv.version}")
        else:       # a rerun that changed nothing: the registry keys versions by the artifact's hash
            self.s.display.message(f"model `{reg.name}` unchanged: already registered as version {mv.version}")
        return mv.version

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in self.index.steps:
            r = self.results.get(name)
            if r is not None:
                out.update(r.metrics)
        return out


def _pidfds() -> bool:
    """Whether this system has pidfds (Linux 5.3) and eventfds, which the loop polls for the steps it starts."""
    global _PIDFDS
    if _PIDFDS is None:
        try:
            os.close(os.pidfd_open(os.getpid()))
            _PIDFDS = hasattr(os, "eventfd")
        except (AttributeError, OSError):
            _PIDFDS = False
    return _PIDFDS


_PIDFDS: bool | None = None


def _backoff(attempts: int) -> float:
    """Seconds to wait before the attempt after ``attempts``: doubling from MLPRISM_RETRY_BACKOFF (1 s)."""
    base = float(os.environ.get("MLPRISM_RETRY_BACKOFF") or RETRY_BACKOFF)
    return min(base * 2 ** (attempts - 1), RETRY_BACKOFF_MAX)


def _safely(name: str, decision: Decision, work: Callable[..., _T], *args: Any) -> _T | StepResult:
    """``work(*args)``, or a failed result for the step if it raises: a step fails, never the runner."""
    try:
        return work(*args)
    except DiagnosticError as exc:     # e.g. the container engine refused
        d = exc.diagnostics[0]
        return StepResult(name, "failed", decision.fingerprint.digest, code=d.code, error=d.message)
    except Exception as exc:  # a bug or an I/O error
        return StepResult(name, "failed", decision.fingerprint.digest, code="MLP001", error=_internal_error(exc))


def _internal_error(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


def _fail(result: StepResult, code: str, error: str) -> None:
    """A succeeded step's result turned failed after the fact (its outputs could not be cached)."""
    result.status, result.code, result.error = "failed", code, error
    result.outputs, result.metrics, result.reason = {}, {}, ""


def _disk_full_failure(workdir: Path, outs: Sequence[str], log_path: Path) -> str | None:
    """Why a failed step failed when it ran out of disk space (its log says so, or nothing is left);
    its partial outputs are removed (they would be wrong, and this frees the space)."""
    free = free_bytes(workdir)
    if disk_full_in_log(log_path):
        why = "its log says so"
    elif free is not None and free < 64 * 1024:
        why = f"{free // 1024} KiB left on the file system of `{workdir}`, so its log may be incomplete"
    else:
        return None
    removed = []
    for o in outs:
        try:
            if (workdir / o).exists() or (workdir / o).is_symlink():
                _remove(workdir / o)
                removed.append(f"`{o}`")
        except OSError:
            pass
    return (f"no space left on device while the step ran ({why})"
            + (f"; its partial output{'s' * (len(removed) > 1)} {', '.join(removed)} removed" if removed else "")
            + "; free some space on that file system, then run again (steps that finished are reused)")


def _scrub_log(path: Path, values: Sequence[str]) -> None:
    try:
        raw = path.read_bytes()
    except OSError:
        return
    text = raw.decode("utf-8", "surrogateescape")
    clean = mask(text, redaction_values(values))
    if clean != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(clean.encode("utf-8", "surrogateescape"))
        os.replace(tmp, path)


# -- entry points -------------------------------------------------------------------------------
def _summary(result: RunResult) -> str:
    c = result.counts()
    ran = c.get("succeeded", 0)
    cached = c.get("cached", 0) + c.get("restored", 0)
    failed = c.get("failed", 0)
    if result.status == "succeeded" and ran == 0 and failed == 0:
        head = f"everything up to date ({cached} step{'s' * (cached != 1)} cached)"
    else:
        head = f"{result.status}: {step_counts(c)}"
    return f"run {result.run_id}: {head} in {result.duration:.2f}s"


def _sweep_applies(pipeline: Pipeline, options: RunOptions) -> bool:
    if options.only or options.no_sweep:
        return bool(options.multirun and options.sweep_overrides and not options.only)
    return bool((pipeline.sweep and pipeline.sweep.params) or (options.multirun and options.sweep_overrides))


@contextlib.contextmanager
def _gc_paused_for_old_objects() -> Iterator[None]:
    """Keep the cyclic garbage collector off what exists before the run (the IR, modules) and run it less often.

    A run allocates a few dicts per step that live until it ends; with the default thresholds
    the collector walks the whole heap again and again (a third of a no-op run's time at
    1,000 steps). Reference counting still frees everything at once; cycles are collected
    at the higher threshold, and what was frozen is unfrozen afterwards.
    """
    from mlprism._internal.load import hold_frozen  # loaded already: the run's spec came through it

    with _GC_GUARD:
        _GC_STATE.append(gc.get_threshold())
        if len(_GC_STATE) == 1:
            old = _GC_STATE[0]
            gc.freeze()
            hold_frozen(1)
            gc.set_threshold(max(old[0], 20_000), max(old[1], 20), max(old[2], 20))
    try:
        yield
    finally:
        with _GC_GUARD:
            first = _GC_STATE.pop(0) if len(_GC_STATE) == 1 else _GC_STATE.pop()
            if not _GC_STATE:                    # the last run of this process to end restores the settings
                gc.set_threshold(*first)
                hold_frozen(-1)
                gc.unfreeze()


_GC_GUARD = threading.Lock()
_GC_STATE: list[tuple[int, int, int]] = []     # thresholds before each run in progress (runs in threads)


def run_pipeline(project_dir: Path, pipeline: Pipeline, options: RunOptions | None = None) -> RunResult:
    """Run a compiled pipeline in ``project_dir`` (the spec's directory). See the module docstring."""
    with _gc_paused_for_old_objects():
        return _run_pipeline(project_dir, pipeline, options)


def _run_pipeline(project_dir: Path, pipeline: Pipeline, options: RunOptions | None = None) -> RunResult:
    options = options or RunOptions()
    project_dir = Path(project_dir).resolve()
    if _sweep_applies(pipeline, options):
        from mlprism.runtime.sweep import run_sweep

        with _term_as_interrupt():
            result = run_sweep(project_dir, pipeline, options)
        return _mirror(project_dir, pipeline, result)
    select_steps(pipeline, options)                # unknown names: MLP407 before anything else
    if options.dry_run:
        return plan_pipeline(project_dir, pipeline, options)
    try:
        result = _run_once(project_dir, pipeline, options)
    except (OSError, sqlite3.Error) as exc:          # hardening: disk full while writing the project's state
        if not is_write_failure(exc):
            raise
        ledger = isinstance(exc, sqlite3.Error)
        raise DiagnosticError([write_failure(
            exc, "the run ledger" if ledger else "mlprism's state",
            state_dir_of(project_dir) / "ledger.db" if ledger else None)]) from None
    return _mirror(project_dir, pipeline, result)


def _mirror(project_dir: Path, pipeline: Pipeline, result: RunResult) -> RunResult:
    """Mirror the ledger and registry to MLflow when the spec says `tracking: {backend: mlflow}`.

    The embedded ledger stays the source of truth: a failed mirror is a warning, not a failed run.
    """
    if pipeline.tracking.backend != "mlflow":
        return result
    from mlprism.runtime.tracking import sync_if_configured

    try:
        sync_if_configured(project_dir, pipeline)
    except DiagnosticError as exc:
        for diag in exc.diagnostics:
            print(f"warning: {diag.render()}", file=sys.stderr)
    return result


def _run_once(project_dir: Path, pipeline: Pipeline, options: RunOptions) -> RunResult:
    check_secrets(pipeline, options.env)
    with Session(project_dir, pipeline, options) as session:
        with _term_as_interrupt():
            run = Run(session, project_dir, pipeline, options, new_run_id(), register=options.register)
            result = run.execute()
        session.display.run_finished(_summary(result), result.ok)
        return result


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run (or a sweep) like Ctrl-C: running steps are killed, the state is saved.

    Only in the main thread (where Python runs signal handlers); elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def plan_decisions(project_dir: Path, pipeline: Pipeline, options: RunOptions | None = None,
                   workdir: Path | None = None,
                   lock: dict[str, Any] | None = None) -> tuple[dict[str, Decision], dict[str, Digest]]:
    """Decide every selected step as a run would, without running anything or taking the lock.

    ``lock``: the project's lock file as the caller has just read it (else it is read here)."""
    plans, data = plan_sweep_decisions(project_dir, [pipeline], options, lock, workdir)
    return plans[0], data


def plan_sweep_decisions(project_dir: Path, pipelines: Sequence[Pipeline], options: RunOptions | None = None,
                         lock: dict[str, Any] | None = None,
                         workdir: Path | None = None) -> tuple[list[dict[str, Decision]], dict[str, Digest]]:
    """:func:`plan_decisions` for every combination of a sweep (``pipelines``: each compiled with its overrides).

    As the sweep's run would: the steps every combination compiles alike (:class:`SharedSteps`)
    are decided once, for the first combination, and the others take that decision (the same
    fingerprint); each combination decides only its own steps, knowing what the shared ones
    will leave (a step whose outputs are restorable counts as having them). One stat cache
    and one cache for all. The data's digests are the first combination's.
    """
    options = options or RunOptions()
    project_dir = Path(project_dir).resolve()
    workdir = workdir or project_dir
    state = state_dir_of(project_dir)
    hasher = Hasher(state if state.is_dir() else None)
    cache = Cache(state)
    if lock is None:
        lock = read_lock(lock_path(project_dir / pipelines[0].spec_file))
    first, planner = _plan(pipelines[0], options, hasher, cache, lock, workdir)
    plans = [first]
    if len(pipelines) > 1:
        shared = SharedSteps.of(pipelines, list(first), planner.forced).names
        reuse = {n: d for n, d in first.items() if n in shared}
        seed = {posixpath.normpath(o): e for d in reuse.values() if d.record is not None
                for o, e in d.record.outputs.items()}
        plans += [_plan(p, options, hasher, cache, lock, workdir, reuse, seed)[0] for p in pipelines[1:]]
    return plans, {d.name: hasher.digest(workdir / d.path) for d in pipelines[0].data}


def _plan(pipeline: Pipeline, options: RunOptions, hasher: Hasher, cache: Cache, lock: dict[str, Any],
          workdir: Path, reuse: Mapping[str, Decision] | None = None,
          seed: Mapping[str, OutputEntry] | None = None) -> tuple[dict[str, Decision], _Planner]:
    """Decide the selected steps in order; ``reuse``: decisions already made (a sweep's shared steps),
    ``seed``: the outputs those will leave, as the planner predicts them."""
    index = GraphIndex.of(pipeline)
    selected = select_steps(pipeline, options, index)
    planner = _Planner(pipeline, workdir, hasher, cache, lock, secret_values(pipeline, options.env),
                       forced_steps(selected, options), predict=True)
    if seed:
        planner.predicted.update(seed)
    sel = set(selected)
    decisions: dict[str, Decision] = {}
    for name in selected:
        if reuse is not None and name in reuse:
            decisions[name] = reuse[name]
            continue
        pending = [u for u in index.ups[name] if u in sel and decisions[u].action == "run"]
        decisions[name] = planner.decide(index.steps[name], pending)
    return decisions, planner


def plan_pipeline(project_dir: Path, pipeline: Pipeline, options: RunOptions | None = None) -> RunResult:
    """What a run would do and why (``--dry-run``): a RunResult with would-run/would-restore/cached steps."""
    decisions, data = plan_decisions(project_dir, pipeline, options)
    return dry_run_result(pipeline, decisions, data)


def dry_run_result(pipeline: Pipeline, decisions: Mapping[str, Decision], data: Mapping[str, Digest]) -> RunResult:
    """The RunResult of ``--dry-run`` for these decisions: would-run, would-restore or cached steps."""
    statuses = {"run": "would-run", "restore": "would-restore", "cached": "cached"}
    steps = {name: StepResult(name, statuses[d.action], d.fingerprint.digest, reason="; ".join(d.reasons),
                              cache_hit=d.action != "run") for name, d in decisions.items()}
    return RunResult("dry-run", "dry-run", steps,
                     data={n: {"path": pipeline.data[i].path, **dg.to_dict()} for i, (n, dg) in enumerate(data.items())})
