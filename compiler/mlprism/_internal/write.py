"""Stage 8 — write: the one writer. Atomic, sorted, LF, byte-identical; or --check.

It also removes what an earlier compile generated and this one does not (a workflow of a
section the spec dropped keeps running otherwise). What was generated is recorded in a
manifest per pipeline, target and config choice, `.mlprism-generated/<name>.<target>[.<group>=<choice>…].json`
in the output directory, committed with the files: a file is deleted only when the previous
manifest of the same owner lists it, no other manifest there lists it, and its bytes are still
exactly those recorded (a file a person changed or replaced is kept, with a warning MLP306).
Emitters stay pure: all of this happens here.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from mlprism._internal.target import GeneratedFile
from mlprism._internal.validate import path_problem
from mlprism.diagnostics import Diagnostic, DiagnosticError, Severity

#: the directory, in an output directory, of the manifests of what mlprism generated there
MANIFEST_DIR = ".mlprism-generated"


@dataclass
class WriteResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)      # --check: differs or missing
    removed: list[str] = field(default_factory=list)    # generated before, not now: deleted (--check: would be)
    warnings: list[Diagnostic] = field(default_factory=list)


@dataclass(frozen=True)
class Owner:
    """Who generated a set of files: a pipeline, a target and the config choices (`env=prod`).

    Compiles with other config choices into one directory add to each other (the kubernetes
    target's `overlays/<env>/`), so each choice has its own manifest.
    """

    pipeline: str
    target: str
    choices: tuple[tuple[str, str], ...] = ()

    @property
    def manifest(self) -> str:
        """The manifest's path relative to the output directory."""
        parts = [self.pipeline, self.target, *(f"{g}={c}" for g, c in self.choices)]
        return f"{MANIFEST_DIR}/" + ".".join(quote(p, safe="=") for p in parts) + ".json"


@dataclass
class Plan:
    """What writing a target's files to a directory does: the files to write (with the manifest)
    and the files an earlier compile generated that this one removes."""

    files: dict[str, GeneratedFile]
    remove: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)


_BAD_OUTPUT_HINT = "this is a bug in the target; rerun with --debug and report it"


def _written_path_problem(path: str) -> str | None:
    """Why the writer cannot write `path` below an output directory (a target's, or one a manifest
    lists), or None: a path problem, no file, a trailing `/`, not its plain form, or the manifests'
    own directory."""
    problem = path_problem(path)
    if problem:
        return problem
    normal = posixpath.normpath(path) if path else ""
    if not path or normal == ".":
        return "names no file"
    if path.endswith("/"):
        return "ends with `/`"
    if normal != path:
        return f"is not in its plain form (write `{normal}`)"
    if path == MANIFEST_DIR or path.startswith(MANIFEST_DIR + "/"):
        return f"is under `{MANIFEST_DIR}/`, where mlprism records what it generated"
    return None


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
        problem = _written_path_problem(path)
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


def _digest(data: bytes) -> str:
    """A generated file's content hash in its manifest: blake3, as everything mlprism hashes (sha256 cost
    0.1-0.15 s of a 10,000-step compile, whose workflow alone is ~40 MB)."""
    import blake3

    return "blake3:" + blake3.blake3(data).hexdigest()


def manifest_text(owner: Owner, files: Mapping[str, GeneratedFile], pending: Mapping[str, str] | None = None) -> str:
    """The manifest of `files` (sorted keys, LF: the same files give the same bytes); `pending`:
    {path: digest} of files generated before that could not be removed yet."""
    listed = {**(pending or {}), **{rel: _digest(gf.data()) for rel, gf in files.items()}}
    doc = {
        "about": "The files `mlprism compile` generated in this directory for this pipeline, target and "
                 "config choices. Commit it with them: the next compile deletes those it no longer "
                 "generates (unless changed since).",
        "pipeline": owner.pipeline,
        "target": owner.target,
        "config_choices": dict(owner.choices),
        "files": dict(sorted(listed.items())),
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _manifest_problem(warn: list[Diagnostic], path: Path, what: str) -> None:
    warn.append(Diagnostic("MLP306", f"{path} {what}; nothing is deleted on its account", None,
                           f"delete or fix {path}: it is mlprism's record of the files it generated there",
                           Severity.WARNING))


def read_manifest(path: Path, warn: list[Diagnostic]) -> dict[str, str] | None:
    """{relative path: digest} of a manifest; None when there is none or it is unusable (a warning)."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        _manifest_problem(warn, path, f"cannot be read ({exc.strerror or exc})")
        return None
    try:
        files = json.loads(raw.decode("utf-8"))["files"]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError):
        _manifest_problem(warn, path, "is not an mlprism manifest (JSON with `files`)")
        return None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        _manifest_problem(warn, path, "is not an mlprism manifest (`files` maps paths to digests)")
        return None
    for rel in files:
        if _written_path_problem(rel):
            _manifest_problem(warn, path, f"lists a path mlprism never writes (`{rel}`)")
            return None
    return files


def _inside(out_dir: Path, path: Path) -> bool:
    """`path`'s directory, with symlinks resolved, is `out_dir` or below it."""
    try:
        path.parent.resolve().relative_to(out_dir.resolve())
    except (ValueError, OSError):
        return False
    return True


def plan_output(out_dir: Path, files: Mapping[str, GeneratedFile], owner: Owner) -> Plan:
    """The files to write in `out_dir` (with `owner`'s manifest) and those to remove.

    Removed: what `owner`'s previous manifest lists, this compile does not generate, no other
    manifest in `out_dir` lists, and is still a regular file with the recorded bytes.
    """
    warnings: list[Diagnostic] = []
    new = {rel: files[rel] for rel in sorted(files)}
    new[owner.manifest] = GeneratedFile(manifest_text(owner, files))
    plan = Plan(dict(sorted(new.items())), [], warnings)
    previous = read_manifest(out_dir / owner.manifest, warnings)
    gone = sorted(set(previous or {}) - set(files))
    if not gone:
        return plan
    others: set[str] = set()
    try:
        siblings = sorted(p for p in (out_dir / MANIFEST_DIR).iterdir()
                          if p.name.endswith(".json") and p.name != posixpath.basename(owner.manifest))
    except OSError:
        siblings = []
    for sibling in siblings:
        listed = read_manifest(sibling, warnings)
        if listed is None:          # cannot tell what it owns: delete nothing now, keep them listed
            pending = {rel: previous[rel] for rel in gone}  # type: ignore[index]
            plan.files[owner.manifest] = GeneratedFile(manifest_text(owner, files, pending))
            return plan
        others.update(listed)
    for rel in gone:
        if rel in others:
            continue
        path = out_dir / rel
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            st = None
        ours = st is not None and stat.S_ISREG(st.st_mode) and _inside(out_dir, path)
        if ours:
            try:
                ours = _digest(path.read_bytes()) == previous[rel]  # type: ignore[index]
            except OSError:
                ours = False
        if ours:
            plan.remove.append(rel)
        else:
            warnings.append(Diagnostic(
                "MLP306", f"kept {path}: an earlier compile generated it and this one does not, but it "
                "changed since", None, "delete it if nothing uses it; mlprism no longer tracks it",
                Severity.WARNING))
    return plan


def _remove(out_dir: Path, rel: str) -> None:
    """Delete a file, then its directories that became empty (never `out_dir`)."""
    path = out_dir / rel
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DiagnosticError([Diagnostic("MLP410", f"cannot delete {path}: {exc.strerror or exc}", None,
                                          "check permissions")]) from None
    parent = posixpath.dirname(rel)
    while parent:
        try:
            (out_dir / parent).rmdir()
        except OSError:
            break
        parent = posixpath.dirname(parent)


def write_files(out_dir: Path, files: Mapping[str, GeneratedFile], check: bool = False,
                owner: Owner | None = None) -> WriteResult:
    """Write `files` under `out_dir` (or, with `check`, only compare).

    With an `owner`, also its manifest, and remove what its previous compile generated that this
    one does not (see :func:`plan_output`): removals first (a file may become a directory), then
    the files, the manifest last, so an interrupted compile leaves the previous manifest, which
    still lists every file this one may have left.
    """
    result = WriteResult()
    if owner is not None:
        plan = plan_output(out_dir, files, owner)
        files, result.warnings, result.removed = plan.files, plan.warnings, plan.remove
        if not check:
            for gone in plan.remove:
                _remove(out_dir, gone)
    for rel in sorted(files, key=lambda rel: (owner is not None and rel == owner.manifest, rel)):
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
