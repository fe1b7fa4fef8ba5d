"""Diagnostics: every user mistake becomes one of these, never a traceback.

A :class:`Diagnostic` has a code (``MLP101``), a severity, a message, a
location (``file:line:col`` or the CLI override that caused it) and a hint.
Codes live in one registry, :data:`CODES`; plugins add their own with
:func:`register_code` (use a prefix of your own, e.g. ``MKE001``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "CODES",
    "Diagnostic",
    "DiagnosticError",
    "Diagnostics",
    "Location",
    "Severity",
    "did_you_mean",
    "register_code",
    "render",
]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a diagnostic points: a file position, or a command-line override."""

    file: str | None = None
    line: int | None = None
    col: int | None = None
    override: str | None = None

    def __str__(self) -> str:
        if self.override is not None:
            return f"override `{self.override}`"
        if self.file is None:
            return "<spec>"
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.col or 1}"

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in (("file", self.file), ("line", self.line), ("col", self.col),
                                  ("override", self.override)) if v is not None}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    location: Location | None = None
    hint: str | None = None
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.severity.value}[{self.code}]: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return _visible(text)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "severity": self.severity.value,
                                  "message": self.message}
        if self.location:
            out["location"] = self.location.to_dict()
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass
class Diagnostics:
    """An ordered collection that stages and plugins append to."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, code: str, message: str, location: Location | None = None,
            hint: str | None = None, severity: Severity = Severity.ERROR) -> Diagnostic:
        diag = Diagnostic(code, message, location, hint, severity)
        self.items.append(diag)
        return diag

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.items.extend(diags)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.is_error]

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise DiagnosticError(self.items)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class DiagnosticError(Exception):
    """Raised by a stage that cannot go on; carries every diagnostic found so far."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


#: Control characters a terminal acts on (ESC sequences, carriage return, backspace, bell, C1 controls
#: such as CSI): a spec's text quoted in a message must not move the cursor, erase lines or set the title.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    """`text` with each control character other than tab and line feed written as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def render(diags: Iterable[Diagnostic]) -> str:
    return "\n".join(d.render() for d in diags)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """``did you mean `train`?`` for a near miss, else None."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


#: code -> one-line summary. The error-code reference in docs/ is generated from this.
CODES: dict[str, str] = {
    # 0xx: the tool itself
    "MLP001": "Internal error: a bug in mlprism or a plugin; please report it (rerun with --debug for the trace).",
    "MLP002": "Bad command line: unknown option, missing argument or a file that does not exist.",
    "MLP003": "`mlprism init` would overwrite existing files (nothing is written; use --force).",
    # 1xx: load and compose
    "MLP100": "YAML syntax error.",
    "MLP101": "Duplicate key in a mapping (YAML would silently keep the last one).",
    "MLP102": "The spec (or a config file) cannot be read.",
    "MLP103": "The spec (or a config file, or an override's value) is too large, too deeply nested, or expands too many "
              "aliases.",
    "MLP104": "Unsupported YAML tag or a non-string mapping key.",
    "MLP110": "A command-line override does not parse (Hydra's override grammar), or gives several values "
              "(a sweep: `params.lr=1,2`) where only `mlprism run -m` takes them.",
    "MLP111": "A command-line override names a key that does not exist (use `+key=value` to add one).",
    "MLP112": "A config group or option in `defaults` (or `group=option` on the command line) does not exist.",
    "MLP113": "Hydra could not compose the config.",
    "MLP120": "An interpolation `${...}` cannot be resolved.",
    "MLP121": "Text that looks like an interpolation but is not valid syntax (e.g. `${{ }}`); escape it as `\\${`.",
    # 2xx: validation
    "MLP200": "Unknown key.",
    "MLP201": "Wrong type.",
    "MLP202": "Missing required key.",
    "MLP203": "Value not allowed (enum, pattern, range or length).",
    "MLP204": "The value of a declared secret is in the spec or an override (it would be written out); use `$NAME`.",
    "MLP210": "A name is not safe for every target (lower-case letters, digits, hyphens; starts with a letter).",
    "MLP211": "Invalid cron expression.",
    "MLP212": "Invalid Kubernetes quantity (cpu or memory).",
    "MLP213": "Invalid duration.",
    "MLP214": "Unsupported `apiVersion`.",
    "MLP220": "`needs` names a step that does not exist.",
    "MLP221": "The same output is produced by two steps, or one step's output lies inside another's.",
    "MLP222": "A gate checks a metric that no step reports.",
    "MLP223": "An input is not produced by any step, is not declared data and does not exist on disk.",
    "MLP224": "The steps form a cycle.",
    "MLP225": "The registry refers to a step or an artifact that does not exist.",
    "MLP226": "A sweep or selection refers to something that does not exist.",
    "MLP227": "A deploy, monitor or tracking setting refers to something that does not exist, or a command "
              "needs one the spec does not have (`monitor` without a `monitor` section, `tracking sync` "
              "without MLflow).",
    "MLP228": "A swept param is used by nothing in the spec: every combination would run the same pipeline.",
    "MLP230": "A path escapes the project (absolute, `..`, or through a symlink); `data` may, with `external: true`.",
    "MLP231": "A step depends on itself.",
    "MLP232": "An output or metrics file would replace the project directory itself, mlprism's state (`.mlprism/`, "
              "the lock file), `.git/`, the spec or a config file it is composed from.",
    # 3xx: plugins and targets
    "MLP300": "Unknown target.",
    "MLP301": "A plugin failed to load or raised an error.",
    "MLP302": "The spec uses a feature the chosen target cannot express.",
    "MLP303": "Invalid options in a target's `targets.<name>` section.",
    "MLP304": "Generated files are stale (`--check`).",
    "MLP305": "A generated file is larger than its platform accepts (a warning; the file is written).",
    "MLP306": "A file an earlier compile generated is no longer generated but was changed since, or a "
              "manifest in `.mlprism-generated/` is unusable (a warning; nothing is deleted on its account).",
    "MLP320": "A spec value cannot be carried into the kubernetes target's manifests (`{{`, which Argo "
              "substitutes, or two names that become one Argo name).",
    # 4xx: running
    "MLP400": "A step failed.",
    "MLP401": "A step did not produce a declared output.",
    "MLP402": "An evaluation gate failed.",
    "MLP403": "A step timed out.",
    "MLP404": "Another mlprism run holds the project lock.",
    "MLP405": "A declared secret is not set in the environment.",
    "MLP406": "A metrics file is missing or is not a JSON object.",
    "MLP407": "Unknown run, step, model or version.",
    "MLP408": "The model registry refused the operation.",
    "MLP409": "Drift detected.",
    "MLP410": "Writing failed (disk full, permissions).",
    "MLP411": "A step of a partial run (--only, --from) reads an input no selected step makes, and it does not exist.",
    "MLP412": "An optional dependency is not installed (`pip install 'mlprism[serve]'`, `'mlprism[mlflow]'`).",
    "MLP413": "Mirroring runs or models to the tracking server (MLflow) failed.",
    # 45x: Docker (mlprism build, mlprism run --in-docker)
    "MLP450": "No Docker engine is reachable (DOCKER_HOST, or the default socket).",
    "MLP451": "A Docker image build failed.",
    "MLP452": "Something an image build or a container needs is missing (an image, a model, the mlprism wheel).",
    "MLP453": "A container could not be created, started or stopped.",
}


def register_code(code: str, summary: str) -> None:
    """Register a plugin's diagnostic code. Re-registering the same summary is a no-op."""
    existing = CODES.get(code)
    if existing is not None and existing != summary:
        raise ValueError(f"diagnostic code {code} is already registered: {existing}")
    CODES[code] = summary
