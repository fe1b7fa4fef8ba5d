"""Where the runtime may read and write, and what to say when writing fails.

- :func:`escaping_paths` — MLP230 for every spec path that a symlink takes out of the project
  (checked by ``mlprism validate`` and before a run starts; ``data.<name>.external: true``
  opts a data entry, and the inputs under it, out). Defined with the other path checks in
  ``mlprism._internal.validate``.
- :func:`write_failure` — the MLP410 diagnostic for a failed write of project state
  (disk full, quota, read-only file system, permissions), naming the file and
  saying how much space is left. Writes of state are atomic (a temporary file,
  renamed into place), so such a failure leaves the previous state intact.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from mlprism._internal.validate import escaping_paths, resolved_outside
from mlprism.diagnostics import Diagnostic

__all__ = ["NO_SPACE_ERRNOS", "disk_full_in_log", "escaping_paths", "free_bytes", "is_no_space", "is_write_failure",
           "resolved_outside", "write_failure"]

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_WRITE_ERRNOS = NO_SPACE_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}
_LOG_MARKERS = (b"no space left on device", b"disk quota exceeded", b"[errno 28]", b"enospc")


def is_no_space(exc: BaseException) -> bool:
    """An OSError for a full disk or quota, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in str(exc)   # SQLITE_FULL
    return False


def is_write_failure(exc: BaseException) -> bool:
    """A failure of the file system (not a bug): full, read-only, no permission, I/O error."""
    if isinstance(exc, OSError):
        return exc.errno in _WRITE_ERRNOS
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return is_no_space(exc) or "readonly" in text or "disk I/O error" in text
    return False


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer can still use on the file system holding ``path``."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"


def _shown(path: Path | str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("../../") else str(path)


def write_failure(exc: BaseException, what: str, path: Path | str | None = None) -> Diagnostic:
    """MLP410: ``what`` (e.g. "the lock file") could not be written at ``path``."""
    target = path if path is not None else getattr(exc, "filename", None)
    where = f" `{_shown(target)}`" if target else ""
    if is_no_space(exc):
        free = free_bytes(Path(target)) if target else None
        left = f" ({_size(free)} free)" if free is not None else ""
        return Diagnostic("MLP410", f"cannot write {what}{where}: no space left on device{left}", None,
                          "free some space on that file system (or raise the quota), then run again: steps that "
                          "finished are reused; `rm -rf .mlprism/cache` frees the cache if it is the culprit")
    reason = getattr(exc, "strerror", None) or str(exc)
    return Diagnostic("MLP410", f"cannot write {what}{where}: {reason}", None,
                      "check the permissions and free space of that file system, then run again")


def disk_full_in_log(log: Path, limit: int = 65536) -> bool:
    """Whether the tail of a step's log reports a full disk (as `write`, Python, dd or cp word it)."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            tail = f.read().lower()
    except OSError:
        return False
    return any(m in tail for m in _LOG_MARKERS)
