"""The content-addressed store in ``.mlprism/cache/``.

- ``objects/ab/cdef…``  file contents (and directory manifests) by blake3 hash, read-only
- ``steps/ab/cdef….json`` one record per step fingerprint: the hashes of its outputs and its metrics
- ``tmp/``               half-written files; emptied when a run starts

A step's output file of at most :data:`INLINE_MAX` bytes is kept inside its record (base64,
``"inline"``) instead of as an object: a run of steps with small outputs (metrics, params,
markers) then creates one file in the store per step, not two. Creating a file is the costly
part of caching a small output (on ext4 after many deletions, several hundred microseconds;
see docs/performance.md), and an object of a few bytes takes a whole disk block. An entry is
found by its hash either way: the records this process read or wrote lend their inline bytes to
:meth:`Cache.can_restore` and :meth:`Cache.restore`.

Outputs enter the store only after their step succeeded and they were hashed;
every write goes to ``tmp/`` first and is renamed into place, so a killed run
never leaves a damaged object or record. Restoring copies an object back
(reflink where the file system supports it) and never hands out the object
itself, so a step that rewrites its output cannot damage the store.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import itertools
import json
import os
import posixpath
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlprism.runtime.hashing import Digest, manifest_entries, manifest_links

__all__ = ["Cache", "OutputEntry", "StepRecord"]

_FICLONE = 0x40049409
INLINE_MAX = 4 << 10               # output files up to this size are kept in their step's record


@dataclass(frozen=True)
class OutputEntry:
    hash: str
    size: int
    kind: str = "file"            # "file" or "dir"
    executable: bool = False
    files: int = 0
    # a small file's bytes, when its record carries them instead of an object (see INLINE_MAX);
    # not part of what an entry is: the lock file and the ledger name outputs by hash and size
    inline: bytes | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, d: Digest) -> OutputEntry:
        assert d.hash is not None
        return cls(d.hash, d.size, d.kind, d.executable, d.files)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hash": self.hash, "size": self.size}
        if self.kind != "file":
            out["kind"] = self.kind
            out["files"] = self.files
        if self.executable:
            out["executable"] = True
        return out

    def record_dict(self) -> dict[str, Any]:
        """As in a step record: :meth:`to_dict` and the inline bytes, if any."""
        out = self.to_dict()
        if self.inline is not None:
            out["inline"] = base64.b64encode(self.inline).decode("ascii")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputEntry:
        size = int(d.get("size", 0))
        inline = d.get("inline")
        data = base64.b64decode(inline, validate=True) if isinstance(inline, str) else None
        if data is not None and len(data) != size:
            data = None                  # not the bytes the entry names: as if the record had none
        return cls(str(d["hash"]), size, str(d.get("kind", "file")),
                   bool(d.get("executable", False)), int(d.get("files", 0)), data)


@dataclass
class StepRecord:
    fingerprint: str
    step: str
    outputs: dict[str, OutputEntry]
    metrics: dict[str, float] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    duration: float = 0.0
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "step": self.step,
                "outputs": {k: v.record_dict() for k, v in sorted(self.outputs.items())},
                "metrics": self.metrics, "components": self.components, "created": self.created,
                "duration": self.duration, "run_id": self.run_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepRecord:
        return cls(str(d["fingerprint"]), str(d["step"]),
                   {k: OutputEntry.from_dict(v) for k, v in (d.get("outputs") or {}).items()},
                   {k: float(v) for k, v in (d.get("metrics") or {}).items()},
                   dict(d.get("components") or {}), float(d.get("created", 0.0)),
                   float(d.get("duration", 0.0)), d.get("run_id"))


SMALL = 64 << 10                    # files up to this size are copied with one read and one write
_NO_CLONE: set[int] = set()         # devices whose file system refused FICLONE (not asked again)
_CLONE_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.ENOSYS, errno.EPERM}


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_new(path: str | os.PathLike[str], data: bytes, mode: int) -> None:
    """Write ``data`` to a file that must not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], mode: int = 0o644) -> None:
    """Copy file content into a new file, as a reflink when the file system can (instant, no extra space).

    Plain file descriptors, no Python file objects: a run copies one small output per step.
    """
    import fcntl

    fin = os.open(src, os.O_RDONLY)
    try:
        st = os.fstat(fin)
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            if st.st_size <= SMALL:
                while True:                                  # to the end, even if it grew since fstat
                    chunk = os.read(fin, SMALL + 1)
                    if not chunk:
                        return
                    _write_all(fout, chunk)
            if st.st_dev not in _NO_CLONE:
                try:
                    fcntl.ioctl(fout, _FICLONE, fin)
                    return
                except OSError as exc:
                    if exc.errno in _CLONE_UNSUPPORTED:
                        _NO_CLONE.add(st.st_dev)
            _sendfile_fd(fin, fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _sendfile_fd(fin: int, fout: int) -> None:
    offset = 0
    while True:
        try:
            sent = os.sendfile(fout, fin, offset, 1 << 30)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOSYS):
                os.lseek(fin, offset, os.SEEK_SET)
                while True:
                    chunk = os.read(fin, 1 << 20)
                    if not chunk:
                        return
                    _write_all(fout, chunk)
            raise
        if sent == 0:
            return
        offset += sent


_IDS = itertools.count()
_PREFIX: tuple[int, str] = (0, "")


# what restore (file: _unique(); tree: 8 hex digits; the tree it replaces: old-) and a sweep's copy into the
# project (-tmp) name their temporaries beside an output
_RESTORE_TMP = re.compile(r"\.(.+)\.mlprism-(?:[0-9a-f]{16}-\d+-\d+|[0-9a-f]{8}|old-[0-9a-f]{8}|tmp)")


def _unique() -> str:
    """A name no other writer uses: random per process (and host), then a counter (cheaper than uuid4 per file)."""
    global _PREFIX
    pid = os.getpid()
    if _PREFIX[0] != pid:                     # first call, or a forked child
        _PREFIX = (pid, f"{os.urandom(8).hex()}-{pid}")
    return f"{_PREFIX[1]}-{next(_IDS)}"


class Cache:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "cache"
        self.objects = self.root / "objects"
        self.steps = self.root / "steps"
        self.tmp = self.root / "tmp"
        self._made: set[str] = set()        # directories known to exist (paths as strings: the hot path)
        self._lock = threading.Lock()
        # records read or written by this process (None: known missing). Records change only under
        # the project lock, which the process using this cache holds while it runs.
        self._records: dict[str, StepRecord | None] = {}
        self._inline: dict[str, bytes] = {}  # hash -> bytes kept in a record this process read or wrote
        self._homes: dict[str, str] = {}     # hash -> fingerprint whose record keeps its bytes (read on use)
        self._objects_str = str(self.objects)
        self._steps_str = str(self.steps)
        self._tmp_str = str(self.tmp)

    # -- housekeeping --------------------------------------------------------------
    def clean_tmp(self) -> None:
        """Remove leftovers of killed runs (call while holding the project lock)."""
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def clean_restore_leftovers(self, root: Path, outputs: Iterable[str]) -> None:
        """Remove the temporaries a runner killed while restoring (see :meth:`restore`) left beside the outputs
        of ``root`` (``.NAME.mlprism-…``, a file or part of a tree; call while holding the project lock)."""
        names: dict[str, set[str]] = {}
        for o in outputs:
            parent, name = posixpath.split(posixpath.normpath(o))
            names.setdefault(parent, set()).add(name)
        for parent, wanted in names.items():
            try:
                with os.scandir(root / parent if parent else root) as it:
                    entries = [e for e in it if e.name.startswith(".")]
            except OSError:
                continue
            for e in entries:
                m = _RESTORE_TMP.fullmatch(e.name)
                if m is None or m.group(1) not in wanted:
                    continue
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(e.path)

    def _mkdir(self, path: str) -> None:
        if path not in self._made:
            os.makedirs(path, exist_ok=True)
            with self._lock:
                self._made.add(path)

    def _tmp_path(self, suffix: str = "") -> str:
        self._mkdir(self._tmp_str)
        return f"{self._tmp_str}/{_unique()}{suffix}"

    def _place(self, tmp: str, dest: str) -> None:
        """Rename a finished temp file into the store (its fan-out folder made on first use)."""
        self._mkdir(dest.rpartition("/")[0])
        os.replace(tmp, dest)

    # -- objects -------------------------------------------------------------------
    def _object_file(self, digest: str) -> str:
        """The object's path as a string (the hot checks skip building a Path)."""
        return f"{self._objects_str}/{digest[:2]}/{digest[2:]}"

    def object_path(self, digest: str) -> Path:
        return Path(self._object_file(digest))

    def has_object(self, digest: str) -> bool:
        return os.path.exists(self._object_file(digest))

    def _put_file(self, src: str | os.PathLike[str], digest: str) -> None:
        dest = self._object_file(digest)
        if os.path.exists(dest):
            return
        tmp = self._tmp_path()
        try:
            _copy(src, tmp, 0o444)
            self._place(tmp, dest)
        except BaseException:
            _unlink(tmp)
            raise

    def _put_bytes(self, data: bytes, digest: str) -> None:
        dest = self._object_file(digest)
        if os.path.exists(dest):
            return
        tmp = self._tmp_path()
        try:
            _write_new(tmp, data, 0o444)
            self._place(tmp, dest)
        except BaseException:
            _unlink(tmp)
            raise

    def store(self, path: str | os.PathLike[str], digest: Digest) -> OutputEntry:
        """Put a hashed output (file or directory) into the store; return its entry."""
        assert digest.hash is not None
        if digest.kind == "dir":
            assert digest.manifest is not None
            for rel, h, _size, _x in manifest_entries(digest.manifest):
                if h is not None:
                    self._put_file(os.path.join(path, rel), h)
            self._put_bytes(digest.manifest, digest.hash)
        else:
            self._put_file(path, digest.hash)
        return OutputEntry.of(digest)

    def store_bytes(self, data: bytes, digest: Digest) -> OutputEntry:
        """Put a file's bytes, hashed to ``digest`` (see Hasher.digest_output), into the store.

        Bytes of at most :data:`INLINE_MAX` are not written: the entry returned carries them,
        and the record that names it (:meth:`put_record`) keeps them.
        """
        assert digest.hash is not None and digest.kind == "file"
        if len(data) <= INLINE_MAX:
            return OutputEntry(digest.hash, len(data), "file", digest.executable, 0, data)
        self._put_bytes(data, digest.hash)
        return OutputEntry.of(digest)

    def _inline_bytes(self, entry: OutputEntry) -> bytes | None:
        """A file entry's bytes when a record carries them (this one, one this process read or wrote, or
        the one :meth:`kept_in_record` found)."""
        if entry.inline is not None:
            return entry.inline
        if entry.kind != "file":
            return None
        data = self._inline.get(entry.hash)
        if data is None and (home := self._homes.get(entry.hash)) is not None:
            # kept, not popped: a second thread restoring the same entry meanwhile reads it as well
            self.get_record(home)
            data = self._inline.get(entry.hash)
        return data

    def kept_in_record(self, entry: OutputEntry, fingerprint: str) -> bool:
        """Whether the store has a small file's bytes without an object: known already, or the record of
        ``fingerprint`` (the step that produced it) exists and is read when the entry is restored.

        For a run that may never restore it (a sweep's leader vouching for a shared step): one ``stat``.
        """
        if entry.kind != "file" or entry.size > INLINE_MAX:
            return False
        if entry.inline is not None or entry.hash in self._inline or entry.hash in self._homes:
            return True
        if not os.path.exists(self._record_file(fingerprint)):
            return False
        self._homes[entry.hash] = fingerprint
        return True

    def _lend_inline(self, record: StepRecord) -> None:
        for e in record.outputs.values():
            if e.inline is not None:
                self._inline[e.hash] = e.inline

    def can_restore(self, entry: OutputEntry, fingerprint: str | None = None) -> bool:
        """Whether :meth:`restore` can put ``entry`` back. ``fingerprint``: the step that produced it, whose
        record is read if need be (the lock file names a small file by hash; its record holds the bytes)."""
        if entry.kind == "file":
            if self._inline_bytes(entry) is not None or self.has_object(entry.hash):
                return True
            if fingerprint is None:
                return False
            self.get_record(fingerprint)
            return self._inline_bytes(entry) is not None
        try:                                   # a directory: its manifest and every file in it
            rows = manifest_entries(self.object_path(entry.hash).read_bytes())
        except (OSError, ValueError):
            return False
        return all(h is None or self.has_object(h) for _r, h, _s, _x in rows)

    def restore(self, dest: Path, entry: OutputEntry) -> None:
        """Put an output back at ``dest`` from the store, atomically (raises if objects are missing)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            self._restore_tree(dest, entry)
            return
        tmp = dest.with_name(f".{dest.name}.mlprism-{_unique()}")
        data = self._inline_bytes(entry)
        mode = 0o755 if entry.executable else 0o644
        try:
            if data is None:
                _copy(self.object_path(entry.hash), tmp, mode)
            else:
                _write_new(tmp, data, mode)
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _restore_tree(self, dest: Path, entry: OutputEntry) -> None:
        manifest = self.object_path(entry.hash).read_bytes()
        rows = manifest_entries(manifest)
        build = dest.with_name(f".{dest.name}.mlprism-{os.urandom(4).hex()}")
        try:
            build.mkdir()
            for rel, h, _size, executable in sorted(rows):
                target = build / rel
                if h is None:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy(self.object_path(h), target, 0o755 if executable else 0o644)
            for rel, link in manifest_links(manifest):
                (build / rel).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link, build / rel)
            old = None
            if dest.exists() or dest.is_symlink():
                old = dest.with_name(f".{dest.name}.mlprism-old-{os.urandom(4).hex()}")
                os.replace(dest, old)
            os.replace(build, dest)
            if old is not None:
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
        finally:
            if build.exists():
                shutil.rmtree(build, ignore_errors=True)

    # -- step records --------------------------------------------------------------
    def _record_file(self, fingerprint: str) -> str:
        return f"{self._steps_str}/{fingerprint[:2]}/{fingerprint[2:]}.json"

    def record_path(self, fingerprint: str) -> Path:
        return Path(self._record_file(fingerprint))

    def has_record(self, fingerprint: str) -> bool:
        """Whether the cache holds a record for ``fingerprint`` (one stat; no Path, no read: it is asked
        for every step a no-op run finds up to date)."""
        return self._records.get(fingerprint) is not None or os.path.exists(self._record_file(fingerprint))

    def get_record(self, fingerprint: str) -> StepRecord | None:
        try:
            return self._records[fingerprint]
        except KeyError:
            pass
        record: StepRecord | None = None
        try:
            fd = os.open(self._record_file(fingerprint), os.O_RDONLY)
        except OSError:
            pass
        else:
            try:
                chunks = []
                while chunk := os.read(fd, SMALL):
                    chunks.append(chunk)
                record = StepRecord.from_dict(json.loads(b"".join(chunks)))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                record = None
            finally:
                os.close(fd)
        if record is not None:
            self._lend_inline(record)
        self._records[fingerprint] = record
        return record

    def put_record(self, record: StepRecord) -> None:
        if not record.created:
            record.created = time.time()
        tmp = self._tmp_path(".json")
        try:
            _write_new(tmp, json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":")).encode(), 0o666)
            self._place(tmp, self._record_file(record.fingerprint))
        except BaseException:
            _unlink(tmp)
            raise
        self._lend_inline(record)
        self._records[record.fingerprint] = record
