"""Stage 8 — write: the one writer. Atomic, sorted, LF, byte-identical; or --check."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlprism._internal.target import GeneratedFile
from mlprism._internal.validate import path_problem
from mlprism.diagnostics import Diagnostic, DiagnosticError


@dataclass
class WriteResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)      # --check: differs or missing


def normalize(files: Mapping[str, object], origin: str) -> dict[str, GeneratedFile]:
    out: dict[str, GeneratedFile] = {}
    for path in sorted(files):
        value = files[path]
        gf = value if isinstance(value, GeneratedFile) else GeneratedFile(value)  # type: ignore[arg-type]
        if not isinstance(gf.content, str | bytes):
            raise TypeError(f"target {origin} returned {type(gf.content).__name__} for {path}")
        problem = path_problem(path)
        if problem or not path or path.endswith("/"):
            raise DiagnosticError([Diagnostic("MLP001", f"target `{origin}` emitted a bad path `{path}` ({problem})")])
        data = gf.data()
        if isinstance(gf.content, str):
            data = data.replace(b"\r\n", b"\n")
        out[path] = GeneratedFile(data, gf.executable)
    return out


def atomic_write(path: Path, data: bytes, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755 if executable else 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_files(out_dir: Path, files: Mapping[str, GeneratedFile], check: bool = False) -> WriteResult:
    result = WriteResult()
    for rel in sorted(files):
        gf = files[rel]
        data = gf.data()
        dest = out_dir / rel
        try:
            current = dest.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            current = None
        mode_ok = current is None or not gf.executable or os.access(dest, os.X_OK)
        if current == data and mode_ok:
            result.unchanged.append(rel)
            continue
        if check:
            result.stale.append(rel)
            continue
        try:
            atomic_write(dest, data, gf.executable)
        except OSError as exc:
            raise DiagnosticError([Diagnostic("MLP410", f"cannot write {dest}: {exc.strerror or exc}", None,
                                              "check free disk space and permissions")])
        result.written.append(rel)
    return result
