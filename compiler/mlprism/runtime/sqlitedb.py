"""What the ledger and the registry (two SQLite files several processes open) share."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]


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
