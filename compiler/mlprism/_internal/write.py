"""Stage 8 — write: the one writer. Atomic, sorted, LF, byte-identical; or --check."""

from __future__ import annotations

import os
import posixpath
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


_BAD_OUTPUT_HINT = "this is a bug in the target; rerun with --debug and report it"


def normalize(files: object, target: str, plugin: str | None = None) -> dict[str, GeneratedFile]:
    """A target's `emit` result checked and made canonical: {relative POSIX path: GeneratedFile}.

    What a target returns that the writer cannot write as such (not a mapping, a value that is
    not text or bytes, a path that is absolute, leaves the output directory, is not in its plain
    form, or is also another file's directory) is an MLP001 naming the target, never a TypeError.
    """
    origin = f"target `{target}`" + (f" (plugin `{plugin}`)" if plugin and plugin != target else "")

    def bad(what: str) -> DiagnosticError:
        return DiagnosticError([Diagnostic("MLP001", f"{origin} {what}", None, _BAD_OUTPUT_HINT)])

    if not isinstance(files, Mapping):
        raise bad(f"returned {type(files).__name__} from emit, not a mapping of "
                  "relative paths to file contents")
    bad_keys = [k for k in files if not isinstance(k, str)]
    if bad_keys:
        raise bad(f"emitted a path that is not a string: {bad_keys[0]!r}")
    out: dict[str, GeneratedFile] = {}
    for path in sorted(files):
        value = files[path]
        gf = value if isinstance(value, GeneratedFile) else GeneratedFile(value)  # type: ignore[arg-type]
        if not isinstance(gf.content, str | bytes):
            raise bad(f"returned {type(gf.content).__name__} for `{path}`, not str, bytes "
                      "or mlprism.GeneratedFile")
        problem = path_problem(path)
        if not problem:
            normal = posixpath.normpath(path) if path else ""
            if not path or normal == ".":
                problem = "names no file"
            elif path.endswith("/"):
                problem = "ends with `/`"
            elif normal != path:
                problem = f"is not in its plain form (write `{normal}`)"
        if problem:
            raise bad(f"emitted a bad path `{path}` ({problem})")
        data = gf.data()
        if isinstance(gf.content, str):
            data = data.replace(b"\r\n", b"\n")
        out[path] = GeneratedFile(data, gf.executable)
    for path in out:        # `a` and `a/b`: one cannot be a file and the other's directory
        parent = posixpath.dirname(path)
        while parent:
            if parent in out:
                raise bad(f"emitted both `{parent}` and `{path}` (`{parent}` cannot be a "
                          "file and a directory)")
            parent = posixpath.dirname(parent)
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
