"""The content-addressed cache, the lock file and the ledger: real files, real SQLite."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from pathlib import Path

import yaml
from mlprism import dump_yaml
from mlprism.runtime.cache import INLINE_MAX, Cache, OutputEntry, StepRecord
from mlprism.runtime.hashing import Hasher
from mlprism.runtime.ledger import Ledger
from mlprism.runtime.lockfile import (
    HEADER,
    lock_document,
    lock_path,
    read_lock,
    render_lock,
    write_lock,
)


def test_store_and_restore_file_and_tree(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "state")
    cache.clean_tmp()
    h = Hasher(None)
    f = tmp_path / "w" / "model.bin"
    f.parent.mkdir()
    f.write_bytes(b"weights")
    os.chmod(f, 0o755)
    entry = cache.store(f, h.digest(f))
    obj = cache.object_path(entry.hash)
    assert obj.read_bytes() == b"weights" and obj.parent.name == entry.hash[:2]
    assert entry.executable
    d = tmp_path / "w" / "dir"
    (d / "x").mkdir(parents=True)
    (d / "x" / "a").write_text("a")
    (d / "empty").mkdir()
    tree = cache.store(d, h.digest(d))
    f.write_bytes(b"changed")
    import shutil

    shutil.rmtree(d)
    cache.restore(f, entry)
    cache.restore(d, tree)
    assert f.read_bytes() == b"weights" and os.access(f, os.X_OK)
    assert (d / "x" / "a").read_text() == "a" and (d / "empty").is_dir()
    assert h.digest(d).hash == tree.hash
    f.write_bytes(b"overwrite")            # restored files are copies: the object is untouched
    assert obj.read_bytes() == b"weights"
    assert cache.can_restore(tree)
    cache.object_path(h.digest(tmp_path / "w" / "dir" / "x" / "a").hash).unlink()
    assert not cache.can_restore(tree)


def test_records_round_trip_and_tmp_is_cleaned(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.clean_tmp()
    (cache.tmp / "leftover").write_text("half")
    cache.put_record(StepRecord("ab" * 32, "train", {}, {"acc": 0.5}, {"v": 1}))
    rec = cache.get_record("ab" * 32)
    assert rec is not None and rec.metrics == {"acc": 0.5} and rec.step == "train"
    assert cache.get_record("cd" * 32) is None
    cache.record_path("ef" * 32).parent.mkdir(parents=True, exist_ok=True)
    cache.record_path("ef" * 32).write_text("{broken")
    assert cache.get_record("ef" * 32) is None
    cache.clean_tmp()
    assert list(cache.tmp.iterdir()) == []


def test_small_outputs_live_in_their_record(tmp_path: Path) -> None:
    """A file of at most INLINE_MAX bytes is kept inside the step's record, not as an object; an entry
    naming it by hash alone (as the lock file does) is restorable once that record is read."""
    state = tmp_path / "state"
    cache = Cache(state)
    cache.clean_tmp()
    h = Hasher(None)
    small, big = tmp_path / "metrics.json", tmp_path / "model.bin"
    small.write_bytes(b'{"acc": 0.9}\n')
    os.chmod(small, 0o755)
    big.write_bytes(b"w" * (INLINE_MAX + 1))
    entries = {}
    for f in (small, big):
        d, data = h.digest_output(str(f), 1 << 16)
        assert data is not None
        entries[f.name] = cache.store_bytes(data, d)
    assert entries["metrics.json"].inline is not None and entries["model.bin"].inline is None
    assert not cache.has_object(entries["metrics.json"].hash) and cache.has_object(entries["model.bin"].hash)
    assert sorted(p.name for p in (state / "cache" / "objects").rglob("*") if p.is_file()) == [
        entries["model.bin"].hash[2:]]
    cache.put_record(StepRecord("ab" * 32, "train", entries))
    as_json = cache.record_path("ab" * 32).read_text()
    assert '"inline":' in as_json and as_json.count('"inline":') == 1
    # the lock file's view of the same output: hash and size, no bytes (entries compare equal)
    by_hash = OutputEntry.from_dict(entries["metrics.json"].to_dict())
    assert by_hash == entries["metrics.json"] and by_hash.inline is None and "inline" not in by_hash.to_dict()
    fresh = Cache(state)                                     # another process: it has read no record yet
    assert not fresh.can_restore(by_hash)
    rec = fresh.get_record("ab" * 32)
    assert rec is not None and rec.outputs["metrics.json"].inline == b'{"acc": 0.9}\n'
    assert fresh.can_restore(by_hash)
    small.unlink()
    fresh.restore(small, by_hash)
    assert small.read_bytes() == b'{"acc": 0.9}\n' and os.access(small, os.X_OK)
    assert h.digest(small).hash == by_hash.hash
    # a record whose inline bytes are not what its entry names is not trusted with them
    damaged = json.loads(as_json)
    damaged["outputs"]["metrics.json"]["inline"] = base64.b64encode(b"short").decode()
    cache.record_path("cd" * 32).parent.mkdir(parents=True, exist_ok=True)
    cache.record_path("cd" * 32).write_text(json.dumps({**damaged, "fingerprint": "cd" * 32}))
    other = Cache(state)
    rec = other.get_record("cd" * 32)
    assert rec is not None and rec.outputs["metrics.json"].inline is None
    assert not other.can_restore(by_hash)


def test_threads_restoring_an_entry_kept_in_a_record_at_once_all_get_it(tmp_path: Path) -> None:
    """A sweep's followers run in threads: two may put the same shared small output in their workspaces at
    once, both finding the bytes through the record a leader vouched for (kept_in_record)."""
    import threading

    state = tmp_path / "state"
    f = tmp_path / "prep.txt"
    f.write_bytes(b"p\n")
    d, data = Hasher(None).digest_output(str(f), 1 << 16)
    assert data is not None
    writer = Cache(state)
    writer.put_record(StepRecord("ab" * 32, "prep", {"prep.txt": writer.store_bytes(data, d)}))
    by_hash = OutputEntry(d.hash or "", d.size)
    cache = Cache(state)                         # the run that restores: it has read no record yet
    assert cache.kept_in_record(by_hash, "ab" * 32)
    first_in, go = threading.Event(), threading.Event()
    read = cache.get_record

    def slow_read(fingerprint: str) -> StepRecord | None:
        first_in.set()
        assert go.wait(10)
        return read(fingerprint)

    cache.get_record = slow_read                 # type: ignore[method-assign]
    got: dict[str, bool] = {}
    a = threading.Thread(target=lambda: got.update(a=cache.can_restore(by_hash)))
    a.start()
    assert first_in.wait(10)                     # A is reading the record; B asks meanwhile
    b = threading.Thread(target=lambda: got.update(b=cache.can_restore(by_hash)))
    b.start()
    b.join(0.5)
    go.set()
    a.join(10)
    b.join(10)
    assert got == {"a": True, "b": True}
    for name in ("a", "b"):
        cache.restore(tmp_path / name / "prep.txt", by_hash)
        assert (tmp_path / name / "prep.txt").read_bytes() == b"p\n"


def test_lock_is_deterministic_sorted_and_equal_to_dump_yaml(tmp_path: Path) -> None:
    steps = {"b": {"fingerprint": "f", "params": {"z": 1, "a": "x: y"}, "inputs": {}, "outputs": {}},
             "a": {"fingerprint": "g", "params": {}, "inputs": {"in.txt": {"hash": "h", "size": 1}}, "outputs": {}}}
    data = {"raw": {"path": "d.csv", "hash": "h", "size": 3}}
    text = render_lock("p", data, steps, ["a", "b"])
    assert text == render_lock("p", dict(reversed(data.items())), dict(reversed(steps.items())), ["a", "b"])
    assert text == dump_yaml(lock_document("p", data, steps, ["a", "b"]), header=HEADER)
    assert list(yaml.safe_load(text)["steps"]) == ["a", "b"]
    assert list(yaml.safe_load(text)["steps"]["b"]["params"]) == ["a", "z"]
    path = lock_path(tmp_path / "pipeline.yaml")
    assert path.name == "mlprism.lock" and lock_path(tmp_path / "other.yaml").name == "other.mlprism.lock"
    assert write_lock(path, text) and not write_lock(path, text)
    assert read_lock(path)["steps"]["a"]["fingerprint"] == "g"
    assert [p.name for p in tmp_path.iterdir()] == ["mlprism.lock"]      # no temporary left behind
    path.write_text("version: 99\n")
    assert read_lock(path) == {}


def test_ledger_tables_wal_and_reports(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with Ledger(db) as ledger:
        ledger.start_run("20260101-000000-aaaaaa", "p", overrides=["params.x=1"], params={"x": 1, "m.d": [1]})
        ledger.record_step("20260101-000000-aaaaaa", "train", status="succeeded", exit_code=0, duration=0.5,
                           fingerprint="fp", cache_hit=False, attempts=1)
        ledger.add_metrics("20260101-000000-aaaaaa", "train", {"acc": 0.9})
        ledger.add_artifacts("20260101-000000-aaaaaa", "train", "output", {"m.bin": ("h", 3)})
        ledger.add_lineage("20260101-000000-aaaaaa", [("path:in", "step:train", "input")])
        ledger.finish_run("20260101-000000-aaaaaa", "succeeded")
        rid = ledger.add_report("drift", {"psi": 0.3})
        ledger.start_run("20260101-000001-bbbbbb", "p")
        ledger.commit()
        assert ledger.mark_interrupted() == ["20260101-000001-bbbbbb"]
        assert ledger.resolve("20260101-000000") == "20260101-000000-aaaaaa"
        assert ledger.resolve("latest") == "20260101-000001-bbbbbb"
        assert ledger.params("20260101-000000-aaaaaa") == {"m.d": [1], "x": 1}
        assert ledger.metrics("20260101-000000-aaaaaa") == {"train": {"acc": 0.9}}
        assert ledger.reports("drift")[0]["payload"] == {"psi": 0.3} and rid > 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "step_runs", "params", "metrics", "artifacts", "lineage", "reports"} <= tables
    assert conn.execute("SELECT status FROM runs WHERE id='20260101-000001-bbbbbb'").fetchone()[0] == "interrupted"
