"""``mlprism.lock``: the data and step hashes of the project, beside the spec, meant for git.

Deterministic YAML written with :func:`mlprism.dump_yaml` (sorted keys, no
timestamps, no run ids, no absolute paths) and replaced atomically. It records
every declared ``data:`` entry (path, hash, size) and, per step, the
fingerprint, the params it uses, and its inputs' and outputs' hashes and sizes.
A teammate with the same lock and the same files gets "up to date" without any
cache: a step whose fingerprint and outputs match its lock entry is not rerun.

The lock of ``pipeline.yaml`` is ``mlprism.lock``; another spec ``NAME.yaml``
in the same directory gets ``NAME.mlprism.lock``.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from mlprism._internal.yamlio import float_text

__all__ = ["LOCK_VERSION", "lock_document", "lock_name", "lock_path", "read_lock", "render_document", "render_lock", "write_lock"]

LOCK_VERSION = 1
HEADER = "Written by `mlprism run`: data and step hashes of this project. Commit it with the spec."


def lock_name(spec_stem: str) -> str:
    """The lock file's name beside a spec named ``<spec_stem>.yaml``."""
    return "mlprism.lock" if spec_stem == "pipeline" else f"{spec_stem}.mlprism.lock"


def lock_path(spec_path: Path) -> Path:
    return spec_path.parent / lock_name(spec_path.stem)


def _sidecar(path: Path) -> Path:
    return path.parent / ".mlprism" / "locks" / f"{path.name}.json"


def read_lock(path: Path) -> dict[str, Any]:
    """The lock's data ({} when there is none or it cannot be parsed).

    Parsing YAML is slow for big pipelines, so the writer keeps a JSON copy in
    ``.mlprism/locks/``, used only while the lock file's bytes are the ones it wrote.
    """
    from mlprism.runtime.hashing import hash_bytes

    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    digest = hash_bytes(raw)
    try:
        side = json.loads(_sidecar(path).read_bytes())
        if isinstance(side, dict) and side.get("digest") == digest and isinstance(side.get("lock"), dict):
            return dict(side["lock"])
    except (OSError, ValueError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=loader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        return {}
    data.setdefault("data", {})
    data.setdefault("steps", {})
    _write_sidecar(path, digest, data)
    return data


def _write_sidecar(path: Path, digest: str, document: dict[str, Any]) -> None:
    if not (path.parent / ".mlprism").is_dir():
        return
    side = _sidecar(path)
    try:
        side.parent.mkdir(exist_ok=True)
        tmp = side.with_name(f".{side.name}.{os.urandom(4).hex()}.tmp")
        tmp.write_text(json.dumps({"digest": digest, "lock": document}, separators=(",", ":"), default=str))
        os.replace(tmp, side)
    except (OSError, TypeError, ValueError):
        pass                    # only a cache


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def lock_document(pipeline_name: str, data: dict[str, Any], steps: dict[str, Any], order: list[str]) -> dict[str, Any]:
    return {
        "version": LOCK_VERSION,
        "pipeline": pipeline_name,
        "data": _sorted(data),
        "steps": {name: _sorted(steps[name]) for name in order if name in steps},
    }


def render_lock(pipeline_name: str, data: dict[str, Any], steps: dict[str, Any], order: list[str]) -> str:
    """The lock's text: steps in pipeline order, everything else sorted.

    The same bytes as :func:`mlprism.dump_yaml` (a test holds them equal), written
    directly for the usual lock of plain names, digests and numbers: a lock of 10,000
    steps is 200,000 lines.
    """
    return render_document(lock_document(pipeline_name, data, steps, order))


def render_document(doc: dict[str, Any]) -> str:
    fast = _render_fast(doc)
    if fast is not None:
        return fast
    # dump_yaml takes libyaml's emitter itself wherever that writes the same bytes
    from mlprism import dump_yaml

    return dump_yaml(doc, header=HEADER)


class _Unsupported(Exception):
    """A value the fast renderer does not write (the YAML serializer does)."""


_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./-]*\Z")
#: Lowercase hex with two letters or more (a digest) is never read as anything but a string, by YAML 1.1
#: (numbers need a `.`, `:`, `-`, `x`, or one letter: `0b1…`) or 1.2 (one `e`: `1e5`), nor is a `_PLAIN`
#: path with a `/` (no number, date, bool or null has one): both are written plain.
_DIGEST = re.compile(r"[0-9]*[a-f][0-9]*[a-f][0-9a-f]*\Z")
_plain_ok: dict[str, bool] = {}


def _plain(text: str) -> bool:
    """Whether PyYAML (with mlprism's representer) writes this string as a plain scalar."""
    ok = _plain_ok.get(text)
    if ok is None:
        if _surely_plain(text):
            return True         # not remembered: digests and paths are many, each met once or twice
        ok = _plain_by_resolver(text)
        if len(_plain_ok) < 1_000_000:
            _plain_ok[text] = ok
    return ok


def _surely_plain(text: str) -> bool:
    """A digest or a path (see `_DIGEST`): plain, without asking the resolver (a test holds them equal)."""
    return len(text) < 120 and (_DIGEST.match(text) is not None or (
        "/" in text and _PLAIN.match(text) is not None and not text.startswith("...")))


def _plain_by_resolver(text: str) -> bool:
    from mlprism._internal.yamlio import _YAML12_NON_STRING

    return (len(text) < 120 and _PLAIN.match(text) is not None and not text.startswith(("---", "..."))
            and _YAML12_NON_STRING.match(text) is None
            and _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str")


_RESOLVER = yaml.resolver.Resolver()


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        if _plain(value):
            return value
        raise _Unsupported
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return float_text(value)
    raise _Unsupported


def _emit(mapping: dict[str, Any], indent: str, out: list[str]) -> None:
    append = out.append
    known = _plain_ok.get
    for key, value in mapping.items():
        if not isinstance(key, str) or not (known(key) or _plain(key)):
            raise _Unsupported
        if type(value) is str:          # the usual value (a digest or a path): _scalar's first case, inline
            if not (known(value) or _plain(value)):
                raise _Unsupported
            append(f"{indent}{key}: {value}\n")
        elif isinstance(value, dict):
            if value:
                append(f"{indent}{key}:\n")
                _emit(value, indent + "  ", out)
            else:
                append(f"{indent}{key}: {{}}\n")
        else:
            append(f"{indent}{key}: {_scalar(value)}\n")


def _render_fast(doc: dict[str, Any]) -> str | None:
    """The bytes :func:`mlprism.dump_yaml` writes for a lock document of plain names, hashes and numbers.

    Lock files are mappings of short path-like strings, hex digests and numbers; this writes
    them directly (about 20x faster than the YAML serializer for 10,000 steps). Anything
    else (quoted strings, lists, long keys) returns None and goes through the serializer;
    a property test holds the two equal.
    """
    if not doc:
        return None
    out = ["".join(f"# {line}".rstrip() + "\n" for line in HEADER.splitlines())]
    try:
        _emit(doc, "", out)
    except _Unsupported:
        return None
    return "".join(out)


def _replace_durably(path: Path, raw: bytes) -> None:
    """Write ``raw`` to a temporary sibling, fsync it, rename it over ``path``, fsync the directory.

    A crash leaves the old lock or the new one, never a mix; a full disk (the OSError is
    raised) leaves the old one. Temporaries of killed runs are removed first (the caller
    holds the project lock, so no other writer is using them).
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_lock(path: Path, text: str, document: dict[str, Any] | None = None) -> bool:
    """Replace the lock atomically if its text changed; return whether it was written.

    With ``document`` (the data ``text`` renders), a JSON copy is kept for :func:`read_lock`.
    """
    from mlprism.runtime.hashing import hash_bytes

    raw = text.encode("utf-8")
    try:
        changed = path.read_bytes() != raw
    except OSError:
        changed = True
    if changed:
        _replace_durably(path, raw)
    if document is not None:
        _write_sidecar(path, hash_bytes(raw), document)
    return changed
