"""Hashing: blake3 of files and trees, the stat cache and its racy-entry rule."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import blake3
import pytest
from mlprism.runtime import hashing
from mlprism.runtime.cache import INLINE_MAX, Cache
from mlprism.runtime.hashing import Hasher, hash_file, manifest_entries


def test_file_hash_is_blake3_of_the_bytes(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    data = os.urandom(3 * hashing.CHUNK + 17)
    f.write_bytes(data)
    assert hash_file(f) == blake3.blake3(data).hexdigest()
    assert hash_file(f) != hashlib.sha256(data).hexdigest()


def test_big_files_use_mmap_and_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "big.bin"
    data = os.urandom(1 << 20)
    f.write_bytes(data)
    monkeypatch.setattr(hashing, "MMAP_MIN", 1024)
    monkeypatch.setattr(hashing, "THREADS_MIN", 2048)
    assert hash_file(f) == blake3.blake3(data).hexdigest()


def test_stat_cache_skips_rereading_unchanged_files(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("hello")
    old = time.time() - 60
    os.utime(f, (old, old))                   # old enough to be trusted
    state = tmp_path / "state"
    state.mkdir()
    h1 = Hasher(state)
    d = h1.digest(f)
    assert d.kind == "file" and d.size == 5 and h1.files_read == 1
    assert h1.digest(f).hash == d.hash and h1.files_read == 1
    h1.save()
    h2 = Hasher(state)                        # persisted across processes
    assert h2.digest(f).hash == d.hash and h2.files_read == 0
    f.write_text("hellO")                     # same size, new mtime
    assert h2.digest(f).hash != d.hash and h2.files_read == 1


def test_racy_entries_are_verified_again(tmp_path: Path) -> None:
    f = tmp_path / "fresh.txt"
    f.write_text("one")
    h = Hasher(tmp_path)
    first = h.digest(f).hash
    st = f.stat()
    f.write_text("two")                       # same size, possibly the same coarse mtime
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert h.digest(f).hash != first          # a fresh entry is never trusted


def test_damaged_stat_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / hashing.STATCACHE).write_text("{not json")
    f = tmp_path / "a"
    f.write_text("a")
    assert Hasher(tmp_path).digest(f).hash == blake3.blake3(b"a").hexdigest()


def test_tree_hash_depends_on_names_contents_and_modes(tmp_path: Path) -> None:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "empty").mkdir()
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("bb")
    h = Hasher(None)
    t1 = h.digest(d)
    assert t1.kind == "dir" and t1.size == 3 and t1.files == 2
    assert blake3.blake3(t1.manifest).hexdigest() == t1.hash
    rows = manifest_entries(t1.manifest)
    assert [r[0] for r in rows] == ["a.txt", "empty", "sub", "sub/b.txt"]
    (d / "sub" / "b.txt").rename(d / "sub" / "c.txt")
    t2 = h.digest(d)
    assert t2.hash != t1.hash
    os.chmod(d / "a.txt", 0o755)
    assert h.digest(d).hash != t2.hash


def test_missing_path(tmp_path: Path) -> None:
    d = Hasher(None).digest(tmp_path / "nope")
    assert not d.exists and d.hash is None


def test_digest_output_gives_the_bytes_it_hashed(tmp_path: Path) -> None:
    small, big, tree = tmp_path / "small.txt", tmp_path / "big.bin", tmp_path / "tree"
    small.write_bytes(b"12 34\n")
    os.chmod(small, 0o755)
    big.write_bytes(os.urandom(5000))
    tree.mkdir()
    (tree / "a").write_text("a")
    h = Hasher(tmp_path)
    d, data = h.digest_output(str(small), 4096)
    assert data == b"12 34\n" and d == Hasher(None).digest(small) and d.executable and d.size == 6
    d, data = h.digest_output(str(big), 4096)                 # above the limit: hashed, not kept
    assert data is None and d.hash == hash_file(big) and d.size == 5000
    d, data = h.digest_output(str(tree), 4096)
    assert data is None and d.kind == "dir" and d == Hasher(None).digest(tree)
    d, data = h.digest_output(str(tmp_path / "nope"), 4096)
    assert data is None and not d.exists
    assert h.files_read == 3                                  # the tree's one file, big and small


def test_stored_output_bytes_are_the_hashed_ones(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    cache = Cache(tmp_path / ".mlprism")
    big = b"result\n" * (INLINE_MAX // 7 + 1)
    out.write_bytes(big)
    d, data = Hasher(None).digest_output(str(out), 1 << 16)
    assert data == big
    entry = cache.store_bytes(data, d)
    obj = cache.object_path(entry.hash)
    assert entry.inline is None
    assert obj.read_bytes() == big and blake3.blake3(obj.read_bytes()).hexdigest() == d.hash
    assert obj.stat().st_mode & 0o777 == 0o444
    # a small output is not written as an object: its entry carries the bytes that were hashed
    out.write_text("result\n")
    d, data = Hasher(None).digest_output(str(out), 1 << 16)
    entry = cache.store_bytes(data, d)
    assert entry.inline == b"result\n" and blake3.blake3(entry.inline).hexdigest() == d.hash
    assert not cache.has_object(entry.hash)
