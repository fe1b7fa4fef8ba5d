"""The target API: what a target is, what it is given, what it returns."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mlprism.diagnostics import Diagnostic, DiagnosticError, Severity, did_you_mean

if TYPE_CHECKING:
    from mlprism.ir import Pipeline, Step


@dataclass(frozen=True)
class GeneratedFile:
    """A file a target emits. Text is written UTF-8 with LF line endings."""

    content: str | bytes
    executable: bool = False

    def data(self) -> bytes:
        raw = self.content.encode("utf-8") if isinstance(self.content, str) else self.content
        return raw


Files = dict[str, "str | bytes | GeneratedFile"]


@dataclass(frozen=True)
class EmitContext:
    """What a target is told besides the IR. Everything here is deterministic.

    ``project_path`` is the spec's directory relative to the repository root
    (``.`` when the spec is at the root, or when there is no repository): CI
    systems run from the repository root, so generated workflows ``cd`` there.
    ``options`` is the spec's ``targets.<name>`` section with schema defaults.
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    project_path: str = "."
    mlprism_version: str = "0"


class Target:
    """Base class for compilation targets. Subclass it and register an instance.

    ``emit`` must be a pure function of its arguments: no I/O, no clock, no
    randomness, no absolute paths of the machine. It returns a mapping of
    relative POSIX paths to file contents; the writer writes them atomically.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: feature name (see mlprism.FEATURES) -> how this target expresses it.
    #: A feature the spec uses that is absent here is an MLP302 error.
    capabilities: ClassVar[Mapping[str, str]] = {}
    #: JSON Schema of the spec's `targets.<name>` section, or None.
    options_schema: ClassVar[dict[str, Any] | None] = None
    #: What the platform accepts: glob of a generated path (fnmatch, `*` crosses `/`) ->
    #: (the most bytes such a file may have, why it matters, a hint). A bigger file is still
    #: written, with an MLP305 warning (e.g. GitHub starts no workflow file above 500 KB).
    size_limits: ClassVar[Mapping[str, tuple[int, str, str]]] = {}

    def emit(self, pipeline: Pipeline, context: EmitContext) -> Files:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Target {self.name}>"


@dataclass
class TargetInfo:
    target: Target
    plugin: str
    version: str


class TargetRegistry:
    """Handed to ``mlprism_register_targets``; collects targets by name."""

    def __init__(self) -> None:
        self._targets: dict[str, TargetInfo] = {}
        self._current_plugin = "?"
        self._current_version = "?"
        self._failed: list[str] = []       # plugins that failed to load or to register (their MLP301 warnings)

    def add(self, target: Target) -> None:
        if not isinstance(target, Target):
            raise TypeError(f"{target!r} is not an mlprism.Target")
        if not target.name:
            raise ValueError(f"{type(target).__name__} has no name")
        if target.name in self._targets:
            other = self._targets[target.name].plugin
            raise ValueError(f"target `{target.name}` is registered twice (by {other} and {self._current_plugin})")
        self._targets[target.name] = TargetInfo(target, self._current_plugin, self._current_version)

    def get(self, name: str) -> Target:
        try:
            return self._targets[name].target
        except KeyError:
            hint = did_you_mean(name, self._targets) or (
                f"installed targets: {', '.join(sorted(self._targets))}" if self._targets else "no target plugin is installed")
            if self._failed:       # the target may be one of theirs: say so (their warnings are not shown here)
                hint += "; " + ", ".join(f"plugin `{p}`" for p in self._failed) + (
                    " failed to load or to register its targets: `mlprism plugins` says why")
            raise DiagnosticError([Diagnostic("MLP300", f"unknown target `{name}`", None, hint)])

    def info(self, name: str) -> TargetInfo:
        return self._targets[name]

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[Target]:
        return iter(self._targets[n].target for n in self.names())

    def __len__(self) -> int:
        return len(self._targets)


def step_command(pipeline: Pipeline, step: Step | str, *extra: str) -> list[str]:
    """The command every target runs for a step: the mlprism runtime, so params,
    fingerprints, caching, metrics and gates behave the same everywhere."""
    name = step if isinstance(step, str) else step.name
    return ["mlprism", "run", pipeline.spec_file, "--only", name, *extra, *pipeline.overrides]


def shell_join(argv: list[str]) -> str:
    return shlex.join(argv)


def _size_text(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def size_warnings(target: Target, files: Mapping[str, str | bytes | GeneratedFile]) -> list[Diagnostic]:
    """MLP305 warnings for the generated files larger than the target's ``size_limits`` allow."""
    import fnmatch

    warnings: list[Diagnostic] = []
    if not target.size_limits:
        return warnings
    for path in sorted(files):
        for pattern, (limit, why, hint) in target.size_limits.items():
            if not fnmatch.fnmatchcase(path, pattern):
                continue
            content = files[path]
            raw = content.content if isinstance(content, GeneratedFile) else content
            # an ASCII str is its UTF-8 length (isascii is O(1)): no copy of a file of tens of MB
            size = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode("utf-8"))
            if size > limit:
                warnings.append(Diagnostic(
                    "MLP305", f"target `{target.name}`: `{path}` is {_size_text(size)} "
                    f"(at most {_size_text(limit)}): {why}", None, hint, Severity.WARNING))
            break
    return warnings
