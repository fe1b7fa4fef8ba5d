"""What the ledger and the registry (two SQLite files several processes open) share."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

__all__ = ["connect", "use_wal"]

# SQLite's unix VFS keeps a database's full path, with "-journal" added, under 512 bytes (MAX_PATHNAME)
SQLITE_MAX_PATH = 512 - len("-journal")


def connect(path: str | os.PathLike[str], what: str, **kwargs: Any) -> sqlite3.Connection:
    """``sqlite3.connect(path, **kwargs)``; a path too long for SQLite is MLP410 with a hint, not an internal error
    ("unable to open database file" from a project under a deep folder, ~490 characters or more)."""
    try:
        return sqlite3.connect(path, **kwargs)
    except sqlite3.OperationalError:
        full = os.fsencode(os.path.abspath(path))
        if len(full) <= SQLITE_MAX_PATH:
            raise
        from mlprism.diagnostics import Diagnostic, DiagnosticError

        raise DiagnosticError([Diagnostic(
            "MLP410", f"cannot open {what} `{os.fsdecode(full)}`: its path is {len(full)} bytes long, and SQLite "
            f"opens databases only up to {SQLITE_MAX_PATH} bytes", None,
            "move the project to a folder with a shorter path, then run again")]) from None


def use_wal(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Put the database in WAL mode (it stays in it: later opens only check).

    Switching needs the database to itself, and SQLite answers "database is locked" at
    once instead of calling the busy handler, so processes that open a new database at
    the same moment (a run and `mlprism runs list`, sweeps registering) failed now and
    then. Here the switch is retried until ``timeout``, like every other lock wait.
    """
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            cur = conn.cursor()
            cur.row_factory = None                  # plain tuples, whatever the connection's factory
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
