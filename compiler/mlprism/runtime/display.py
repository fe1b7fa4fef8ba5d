"""What a person sees while ``mlprism run`` works.

- :class:`PlainDisplay`: plain lines prefixed with the step name, fit for CI logs;
  the output of running steps is streamed from their log files (``[train] epoch 1 …``).
- :class:`LiveDisplay`: on a terminal, a rich live view of every running step
  (elapsed time, last output line) above a one-line summary; finished steps
  scroll above it.
- :class:`NullDisplay`: nothing (``--json``).

Every method is called with the display's lock held by the caller's thread:
they are safe to call from worker threads.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mlprism.runtime.executor import StepResult

__all__ = ["Display", "LiveDisplay", "NullDisplay", "PlainDisplay", "make_display", "step_counts"]

TAIL_EVERY = 0.2


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt_secs(s: float) -> str:
    if s < 60:
        return f"{s:.2f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


@dataclass
class _Tail:
    path: Path
    offset: int = 0
    pending: bytes = b""
    last: str = ""
    started: float = 0.0


class Display:
    """Base: no output. Subclasses override what they show."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.redact: Callable[[str], str] = lambda s: s

    def run_started(self, run_id: str, title: str, total: int, jobs: int, unit: str = "step") -> None: ...
    def step_started(self, name: str, command: str, log_path: Path, attempt: int) -> None: ...
    def step_retry(self, name: str, attempt: int, delay: float, why: str) -> None: ...
    # called again for a step shown as succeeded whose outputs then could not be cached (it failed)
    def step_finished(self, result: StepResult, name: str | None = None) -> None: ...
    def message(self, text: str, step: str | None = None, err: bool = False) -> None: ...
    def tick(self) -> None: ...
    def run_finished(self, summary: str, ok: bool) -> None: ...
    def close(self) -> None: ...


def step_counts(counts: Mapping[str, int]) -> str:
    """A run's steps by status, as a run ends and `runs list` shows it: `3 ran, 2 cached, 1 failed`
    (restored counts as cached; failed, blocked and cancelled only when there are some)."""
    parts = [f"{counts.get('succeeded', 0)} ran", f"{counts.get('cached', 0) + counts.get('restored', 0)} cached"]
    parts += [f"{counts[k]} {k}" for k in ("failed", "blocked", "cancelled") if counts.get(k)]
    return ", ".join(parts)


def to_devnull(stream: Any) -> None:
    """Point ``stream``'s descriptor at /dev/null (its reader went away): later writes, and the
    interpreter's last flush, no longer fail with BrokenPipeError. A stream without one is left."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):      # no descriptor (a StringIO)
        pass


class NullDisplay(Display):
    pass


class PlainDisplay(Display):
    """Prefixed lines; streams each running step's log unless ``quiet``."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self._tails: dict[str, _Tail] = {}
        self._last_tail = 0.0
        self._unflushed = False

    def _flush_stream(self) -> None:
        if self._unflushed:
            self._unflushed = False
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _print(self, line: str, err: bool = False) -> None:
        # one stream keeps the order of events; failures are marked in the text, not by the stream.
        # Lines are flushed by tick() (a few times a second) and at the end, not one by one.
        try:
            self.stream.write(line + "\n")
        except BrokenPipeError:
            self._reader_gone()
            return
        self._unflushed = True

    def _reader_gone(self) -> None:
        """The pipe's reader left (`mlprism run ... | head`): the run goes on, unseen (each step's log is
        in .mlprism/runs/), is recorded, and exits with its own code. The stream's descriptor now points
        at /dev/null, so nothing written later (nor the interpreter's last flush) fails again."""
        to_devnull(self.stream)
        self.stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the display
        self._unflushed = False

    def run_started(self, run_id: str, title: str, total: int, jobs: int, unit: str = "step") -> None:
        with self.lock:
            self._print(f"mlprism: run {run_id} · {title} · {total} {unit}{'s' * (total != 1)} · -j {jobs}")

    def step_started(self, name: str, command: str, log_path: Path, attempt: int) -> None:
        with self.lock:
            note = f" (attempt {attempt})" if attempt > 1 else ""
            self._print(f"[{name}] run{note}: {_short(self.redact(command))}")
            if not self.quiet:
                offset = log_path.stat().st_size if log_path.exists() else 0
                self._tails[name] = _Tail(log_path, offset, started=time.monotonic())

    def step_retry(self, name: str, attempt: int, delay: float, why: str) -> None:
        with self.lock:
            self._flush(name)
            self._print(f"[{name}] {why}; retrying in {delay:.1f}s (attempt {attempt + 1})")

    def _read(self, name: str, final: bool) -> list[str]:
        t = self._tails.get(name)
        if t is None:
            return []
        try:
            with open(t.path, "rb") as f:
                f.seek(t.offset)
                data = f.read()
        except OSError:
            return []
        t.offset += len(data)
        data = t.pending + data
        lines = data.split(b"\n")
        t.pending = lines.pop()
        if final and t.pending:
            lines.append(t.pending)
            t.pending = b""
        out = [self.redact(x.decode("utf-8", "replace").rstrip("\r")) for x in lines]
        if out:
            t.last = out[-1]
        return out

    def _flush(self, name: str) -> None:
        for line in self._read(name, final=True):
            self._print(f"[{name}] | {line}")

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_tail < TAIL_EVERY:
            return
        self._last_tail = now
        with self.lock:
            if not self.quiet:
                for name in list(self._tails):
                    for line in self._read(name, final=False):
                        self._print(f"[{name}] | {line}")
            self._flush_stream()

    def step_finished(self, result: StepResult, name: str | None = None) -> None:
        name = name or result.name
        with self.lock:
            self._flush(name)
            self._tails.pop(name, None)
            self._print(f"[{name}] {result.describe()}", err=not result.ok)

    def message(self, text: str, step: str | None = None, err: bool = False) -> None:
        with self.lock:
            prefix = f"[{step}] " if step else ""
            for line in self.redact(text).splitlines() or [""]:
                self._print(prefix + line, err=err)
            if not step:
                self._flush_stream()           # e.g. "waiting for the project lock": show it now

    def run_finished(self, summary: str, ok: bool) -> None:
        with self.lock:
            self._print(summary, err=not ok)
            self._flush_stream()

    def close(self) -> None:
        with self.lock:
            self._flush_stream()


class LiveDisplay(PlainDisplay):
    """A rich live view on a terminal: running steps with elapsed time and their last line of output."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        super().__init__(stream, quiet=True)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stdout)
        self._running: dict[str, _Tail] = {}
        self._counts: dict[str, int] = {}
        self._status: dict[str, str] = {}     # step -> the status counted for it
        self._total = 0
        self._title = ""
        self._t0 = time.monotonic()
        self._live = Live(self._render(), console=self.console, auto_refresh=False, transient=True)
        self._live.start()

    def _print(self, line: str, err: bool = False) -> None:
        from rich.text import Text

        style = "red" if err else None
        self._live.console.print(Text(line, style=style), highlight=False)

    def _render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, justify="right")
        table.add_column(no_wrap=True, overflow="ellipsis", max_width=80)
        now = time.monotonic()
        for name, t in sorted(self._running.items(), key=lambda kv: kv[1].started):
            table.add_row(Text(f"⠿ {name}", style="cyan"), _fmt_secs(now - t.started), Text(t.last, style="dim"))
        done = sum(self._counts.values())
        parts = [f"{done}/{self._total} done", f"{len(self._running)} running"]
        parts += [f"{n} {k}" for k, n in sorted(self._counts.items()) if n]
        table.add_row(Text(self._title, style="bold"), _fmt_secs(now - self._t0), Text(" · ".join(parts)))
        return table

    def run_started(self, run_id: str, title: str, total: int, jobs: int, unit: str = "step") -> None:
        with self.lock:
            self._title, self._total, self._t0 = title, total, time.monotonic()
            super().run_started(run_id, title, total, jobs, unit)
            self._refresh()

    def step_started(self, name: str, command: str, log_path: Path, attempt: int) -> None:
        with self.lock:
            offset = log_path.stat().st_size if log_path.exists() else 0
            self._running[name] = _Tail(log_path, offset, started=time.monotonic())
            self._refresh()

    def _read_last(self, name: str) -> None:
        t = self._running.get(name)
        if t is None:
            return
        self._tails[name] = t
        self._read(name, final=False)
        self._tails.pop(name, None)

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_tail < TAIL_EVERY:
            return
        self._last_tail = now
        with self.lock:
            for name in list(self._running):
                self._read_last(name)
            self._refresh()

    def step_finished(self, result: StepResult, name: str | None = None) -> None:
        name = name or result.name
        with self.lock:
            self._running.pop(name, None)
            before = self._status.get(name)
            if before is not None:           # shown again: it failed after it succeeded (its outputs not cached)
                self._counts[before] -= 1
            self._status[name] = result.status
            self._counts[result.status] = self._counts.get(result.status, 0) + 1
            self._print(f"{'✓' if result.ok else '✗'} {name}: {result.describe()}", err=not result.ok)
            self._refresh()

    def _refresh(self) -> None:
        self._live.update(self._render(), refresh=True)

    def run_finished(self, summary: str, ok: bool) -> None:
        with self.lock:
            self._live.stop()
            self.console.print(summary, style=None if ok else "red", highlight=False)

    def close(self) -> None:
        with self.lock:
            if self._live.is_started:
                self._live.stop()


def make_display(json_mode: bool, quiet: bool, stream: TextIO | None = None,
                 env: Mapping[str, str] | None = None) -> Display:
    env = os.environ if env is None else env
    if json_mode:
        return NullDisplay()
    stream = stream or sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty() and env.get("TERM") != "dumb" and not env.get("CI")
    return LiveDisplay(stream, quiet) if tty else PlainDisplay(stream, quiet)
