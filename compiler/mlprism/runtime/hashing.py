"""Content hashes: blake3, each file read once, directories hashed as trees, a stat cache.

A file's hash is the blake3 hex digest of its bytes: small files are read in one
call, big ones through ``mmap`` (multi-threaded blake3 for the biggest).
A directory's hash is the blake3 digest of its *manifest*: canonical JSON of
``[relative path, hash, size, executable]`` rows sorted by path (empty
directories are rows with a null hash). The manifest is what the cache stores to
rebuild the directory, so a tree's hash is also the key of its manifest object.

The stat cache maps ``(device, inode)`` to ``(size, mtime_ns, hash)`` and is
persisted in ``.mlprism/statcache.json``, so an unchanged file is never read
twice. An entry is trusted only if the file's mtime was at least
:data:`RACY_NS` older than the moment it was hashed: a file written within the
file system's timestamp granularity of being hashed is re-read next time (git's
"racily clean" rule). Keying by inode makes a symlinked or hard-linked file
(sweep workspaces link the project's files) a hit as well.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

__all__ = ["Digest", "Hasher", "hash_bytes", "hash_file", "manifest_entries", "manifest_links"]

CHUNK = 1 << 20            # read size for files below MMAP_MIN
MMAP_MIN = 4 << 20         # files at least this big are hashed through mmap
THREADS_MIN = 64 << 20     # ... and with several threads from this size on
RACY_NS = 2_000_000_000    # an entry younger than this (mtime vs hash time) is re-verified
STATCACHE = "statcache.json"
STATCACHE_MAX = 200_000    # entries kept beyond the ones used in this process


def hash_bytes(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _hash_open_file(path: str | os.PathLike[str], size: int) -> str:
    if size >= MMAP_MIN:
        h = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= THREADS_MIN else 1)
        h.update_mmap(os.fspath(path))
        return h.hexdigest()
    h = blake3.blake3()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)      # a plain descriptor: most outputs are a few bytes
    try:
        while chunk := os.read(fd, CHUNK):                # to the end, even if it grew since the stat
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """The blake3 hex digest of a file's bytes (no stat cache)."""
    p = Path(path)
    return _hash_open_file(p, p.stat().st_size)


@dataclass(frozen=True, slots=True)
class Digest:
    """What a path hashes to. ``kind`` is ``file``, ``dir`` or ``missing``."""

    kind: str
    hash: str | None = None
    size: int = 0
    executable: bool = False
    manifest: bytes | None = None          # directories only: the bytes whose hash is ``hash``
    files: int = 0

    @property
    def exists(self) -> bool:
        return self.kind != "missing"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"hash": self.hash, "size": self.size}
        if self.kind == "dir":
            out["kind"] = "dir"
            out["files"] = self.files
        if self.executable:
            out["executable"] = True
        return out


MISSING = Digest("missing")


def manifest_entries(manifest: bytes) -> list[tuple[str, str | None, int, bool]]:
    """Rows of a directory manifest: (relative path, hash or None for a directory, size, executable).
    Symbolic links to directories are not among them: see :func:`manifest_links`."""
    rows = json.loads(manifest.decode("utf-8", "surrogateescape"))     # see _tree: names that are not UTF-8
    return [(str(r[0]), r[1], int(r[2]), bool(r[3])) for r in rows if len(r) == 4]


def manifest_links(manifest: bytes) -> list[tuple[str, str]]:
    """The symbolic links to directories of a directory manifest: (relative path, link target as written)."""
    rows = json.loads(manifest.decode("utf-8", "surrogateescape"))
    return [(str(r[0]), str(r[4])) for r in rows if len(r) == 5]


class Hasher:
    """Hashes files and trees with a persistent stat cache. Thread-safe."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self._path = state_dir / STATCACHE if state_dir else None
        self._lock = threading.Lock()
        self._entries: dict[str, list[object]] = {}
        self._used: set[str] = set()
        self._dirty = False
        self.files_read = 0
        self.bytes_read = 0
        if self._path is not None:
            try:
                data = json.loads(self._path.read_bytes())
                if isinstance(data, dict) and data.get("v") == 1 and isinstance(data.get("entries"), dict):
                    self._entries = data["entries"]
            except (OSError, ValueError):
                pass  # a missing or damaged cache only costs a rehash

    # -- files -----------------------------------------------------------------
    def _file(self, path: str | os.PathLike[str], st: os.stat_result) -> str:
        key = f"{st.st_dev}:{st.st_ino}"
        entry = self._entries.get(key)
        if (entry is not None and entry[0] == st.st_size and entry[1] == st.st_mtime_ns
                and st.st_mtime_ns + RACY_NS < entry[2]):       # type: ignore[operator]
            self._used.add(key)
            return str(entry[3])
        hashed_at = time.time_ns()
        digest = _hash_open_file(path, st.st_size)
        self._hashed(key, st, os.stat(path), st.st_size, hashed_at, digest)
        return digest

    def _hashed(self, key: str, st: os.stat_result, after: os.stat_result, nbytes: int, hashed_at: int,
                digest: str) -> None:
        """Count a file read and remember its hash, unless it changed while it was read (``st`` vs ``after``)."""
        with self._lock:
            self.files_read += 1
            self.bytes_read += nbytes
            if after.st_mtime_ns == st.st_mtime_ns and after.st_size == st.st_size == nbytes:
                self._entries[key] = [st.st_size, st.st_mtime_ns, hashed_at, digest]
                self._used.add(key)
                self._dirty = True

    def file(self, path: str | os.PathLike[str]) -> str:
        return self._file(path, os.stat(path))

    # -- any path --------------------------------------------------------------
    def digest(self, path: str | os.PathLike[str]) -> Digest:
        """Hash a file or a directory tree; a path that does not exist is ``MISSING``."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return MISSING
        if stat.S_ISDIR(st.st_mode):
            return self._tree(Path(path))
        return Digest("file", self._file(path, st), st.st_size, bool(st.st_mode & 0o100))

    def digest_output(self, path: str, small: int) -> tuple[Digest, bytes | None]:
        """``digest(path)`` of a step's output just written, with its bytes when it is a file of at most ``small``.

        The bytes are the ones hashed, so the cache stores exactly what the digest names (a copy
        made after hashing could meet a file changed in between). A fresh output is never a stat
        cache hit (see RACY_NS), so this reads it without looking there; the entry is recorded.
        """
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return MISSING, None
        if not stat.S_ISREG(st.st_mode) or st.st_size > small:
            return self.digest(path), None
        hashed_at = time.time_ns()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, small + 1):        # to the end, even if it grew since the stat
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        digest = hash_bytes(data)
        self._hashed(f"{st.st_dev}:{st.st_ino}", st, os.stat(path), len(data), hashed_at, digest)
        return Digest("file", digest, len(data), bool(st.st_mode & 0o100)), data

    def _tree(self, root: Path) -> Digest:
        rows: list[list[object]] = []
        total = 0
        files = 0
        for rel, full, st in _walk(root):
            if stat.S_ISLNK(st.st_mode):                    # a link to a directory: kept as a link (its text)
                rows.append([rel, None, 0, False, os.readlink(full)])
                continue
            if stat.S_ISDIR(st.st_mode):
                rows.append([rel, None, 0, False])
                continue
            h = self._file(full, st)
            rows.append([rel, h, st.st_size, bool(st.st_mode & 0o100)])
            total += st.st_size
            files += 1
        rows.sort(key=lambda r: str(r[0]))
        # a file name that is not UTF-8 (legal on Linux) is a str with surrogates (os.fsdecode): its own bytes
        # go into the manifest, so the tree hashes and restores as it is; every other manifest is unchanged
        manifest = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")
        return Digest("dir", hash_bytes(manifest), total, False, manifest, files)

    # -- persistence -------------------------------------------------------------
    def save(self) -> None:
        """Write the stat cache atomically (a crash loses only the cache, never correctness)."""
        if self._path is None or not self._dirty:
            return
        with self._lock:
            entries = self._entries
            if len(entries) > STATCACHE_MAX + len(self._used):
                entries = {k: v for k, v in entries.items() if k in self._used}
            data = json.dumps({"v": 1, "entries": entries}, separators=(",", ":"))
            self._dirty = False
        tmp = self._path.with_name(f".{STATCACHE}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_text(data)
            os.replace(tmp, self._path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _walk(root: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """(posix relative path, path, stat) of everything below root; symlinks are followed for files, and a
    symlink to a directory is yielded with its own (lstat) result, never followed."""
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as it:
            entries = list(it)
        for e in entries:
            rel = f"{prefix}{e.name}"
            full = Path(e.path)
            try:
                st = os.stat(full)
            except OSError:
                continue                            # a dangling symlink is not content
            if stat.S_ISDIR(st.st_mode):
                if e.is_symlink():                  # never follow directory links (cycles): the link itself
                    yield rel, full, os.lstat(full)
                    continue
                yield rel, full, st
                stack.append((full, rel + "/"))
            elif stat.S_ISREG(st.st_mode):
                yield rel, full, st
