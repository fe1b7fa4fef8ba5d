"""Reading generated workflows back: a YAML 1.2 loader, an expression checker, and a small
emulation of the runner for `run:` steps (real bash, real tar, real files).

`decompile()` turns the pipeline workflow back into the graph it describes: one entry per
step job with its `needs`, the argv it runs (found by executing the job's scripts with an
argv recorder first on PATH), its dispatch inputs and its sweep legs.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

AUX_JOBS = {"select_sweep", "deploy_model"}
_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def load(text: str) -> dict[str, Any]:
    """Parse a workflow as GitHub does: YAML 1.2 (`on` stays a string key)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)
    data = yaml.load(io.StringIO(text))
    assert isinstance(data, dict)
    return data


def strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a loaded document, with its dotted path (keys included)."""
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((f"{path}.<key>", str(k)))
            out.extend(strings(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(strings(v, f"{path}.{i}"))
    elif isinstance(value, str):
        out.append((path, value))
    return out


#: Every expression a generated workflow may contain. Anything else means user text leaked
#: into a `${{ }}`.
_ALLOWED = [
    r"inputs\.[A-Za-z_][A-Za-z0-9_]*",
    r"matrix\.sweep",
    r"secrets\.[A-Z_][A-Z0-9_]*",
    r"github\.(token|ref|run_id|run_attempt)",
    r"runner\.temp",
    r"steps\.fingerprint\.outputs\.fingerprint",
    r"steps\.select\.outputs\.index",
    r"steps\.check\.outputs\.drifted",
    r"needs\.drift\.outputs\.drifted == 'true'",
    r"!cancelled\(\)",
    # a swept job after swept jobs, the select job of a sweep, the deploy job after a sweep
    r"!cancelled\(\)( && needs\.[A-Za-z_][A-Za-z0-9_-]*\.result (==|!=) '(success|skipped)')+",
    r"!cancelled\(\) && !contains\(needs\.\*\.result, 'skipped'\)",
    r"!cancelled\(\)( && needs\.[A-Za-z_][A-Za-z0-9_-]*\.result == 'success')+ && \("
    r"(github\.ref == 'refs/heads/[A-Za-z0-9_./-]+'|startsWith\(github\.ref, 'refs/heads/[A-Za-z0-9_./-]*'\))"
    r"( \|\| (github\.ref == 'refs/heads/[A-Za-z0-9_./-]+'|startsWith\(github\.ref, 'refs/heads/[A-Za-z0-9_./-]*'\)))*\)",
    r"(github\.ref == 'refs/heads/[A-Za-z0-9_./-]+'|startsWith\(github\.ref, 'refs/heads/[A-Za-z0-9_./-]*'\))"
    r"( \|\| (github\.ref == 'refs/heads/[A-Za-z0-9_./-]+'|startsWith\(github\.ref, 'refs/heads/[A-Za-z0-9_./-]*'\)))*",
]
_ALLOWED_RE = re.compile("^(" + "|".join(_ALLOWED) + ")$")


def expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(where, m.group(1).strip()) for where, text in strings(doc) for m in _EXPR.finditer(text)]


def bad_expressions(doc: dict[str, Any], secrets: set[str]) -> list[str]:
    bad = []
    for where, expr in expressions(doc):
        if not _ALLOWED_RE.match(expr):
            bad.append(f"{where}: ${{{{ {expr} }}}}")
        elif expr.startswith("secrets.") and expr.split(".", 1)[1] not in secrets:
            bad.append(f"{where}: undeclared secret {expr}")
    for where, text in strings(doc):
        if where.endswith(".run") and "${{" in text:
            bad.append(f"{where}: an expression inside run:")
    return bad


def evaluate(text: str, ctx: dict[str, str]) -> str:
    """What GitHub makes of a string holding expressions, for the expressions generated workflows use."""
    def one(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr in ctx:
            return ctx[expr]
        if expr.startswith("inputs."):
            return ctx.get(expr, "")
        if expr.startswith("secrets."):
            return f"secret-value-of-{expr[8:]}"
        raise AssertionError(f"no value for ${{{{ {expr} }}}} in the emulation")
    return _EXPR.sub(one, text)


# -- running `run:` steps --------------------------------------------------------------------

RECORDER = textwrap.dedent("""\
    #!/bin/bash
    # Records the argv it was called with (NUL-separated, one file per call) and answers like mlprism.
    n=$(find "$ARGV_LOG" -type f 2>/dev/null | wc -l)
    mkdir -p "$ARGV_LOG"
    if [ "$#" -gt 0 ]; then printf '%s\\0' "$@" > "$ARGV_LOG/$(printf '%03d' "$n")"; else : > "$ARGV_LOG/$(printf '%03d' "$n")"; fi
    if [ "$1" = fingerprint ]; then echo 0123456789abcdef0123456789abcdef; fi
    """)


@dataclass
class Runner:
    """One emulated job: a workspace, RUNNER_TEMP, GITHUB_OUTPUT/STEP_SUMMARY, and an argv recorder."""

    root: Path
    workdir: Path
    inputs: dict[str, str] = field(default_factory=dict)
    leg: int | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.temp = self.root / "runner-temp"
        self.bin = self.root / "bin"
        self.log = self.root / "argv"
        for d in (self.temp, self.bin):
            d.mkdir(parents=True, exist_ok=True)
        rec = self.bin / "mlprism"
        rec.write_text(RECORDER)
        rec.chmod(0o755)
        self.output = self.root / "github-output"
        self.summary = self.root / "step-summary"
        self.output.touch()
        self.summary.touch()

    def context(self) -> dict[str, str]:
        ctx = {f"inputs.{k}": v for k, v in self.inputs.items()}
        ctx["matrix.sweep"] = "" if self.leg is None else str(self.leg)
        ctx["runner.temp"] = str(self.temp)
        ctx.update({f"secrets.{k}": v for k, v in self.secrets.items()})
        ctx["github.token"] = "ghs_emulated"
        return ctx

    def run(self, step: dict[str, Any], job: dict[str, Any], wf: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        assert "run" in step, step
        env = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.root), "LC_ALL": "C.UTF-8",
               "RUNNER_TEMP": str(self.temp), "GITHUB_OUTPUT": str(self.output),
               "GITHUB_STEP_SUMMARY": str(self.summary), "GITHUB_JOB": "job", "ARGV_LOG": str(self.log),
               "GITHUB_SHA": "0" * 40, "GITHUB_REF_NAME": "main", "GITHUB_REPOSITORY": "o/r"}
        ctx = self.context()
        for k, v in (step.get("env") or {}).items():
            env[k] = evaluate(str(v), ctx)
        shell = (wf.get("defaults") or {}).get("run", {}).get("shell")
        assert shell == "bash"
        script = self.root / "step.sh"
        script.write_text(step["run"])
        # what GitHub runs for `shell: bash`
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=self.workdir,
                              env=env, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [p.read_bytes().decode("utf-8", "surrogateescape").split("\0")[:-1]
                for p in sorted(self.log.iterdir())]


def named(job: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    return next((s for s in job["steps"] if str(s.get("name", "")).startswith(prefix)), None)


# -- the graph a workflow describes ----------------------------------------------------------

@dataclass
class StepJob:
    name: str
    needs: set[str]
    runs: list[list[str]]                   # argv of "Run <step>", one per sweep leg (one if not swept)
    fingerprints: list[list[str]]           # argv of "Fingerprint", likewise (empty: no cache)
    swept: bool
    downloads: list[str]
    uploads: list[str]


@dataclass
class Decompiled:
    jobs: dict[str, StepJob]
    inputs: dict[str, dict[str, Any]]
    triggers: dict[str, Any]
    aux: dict[str, dict[str, Any]]


def decompile(text: str, tmp: Path, inputs: dict[str, str] | None = None) -> Decompiled:
    """The pipeline workflow as a graph, by reading it and running its scripts in an emulated runner.

    `inputs` are `workflow_dispatch` values (by input id), as a person would type them.
    """
    wf = load(text)
    on = wf["on"]
    dispatch = on.get("workflow_dispatch") or {}
    declared = dict(dispatch.get("inputs") or {})
    jobs: dict[str, StepJob] = {}
    for jid, job in wf["jobs"].items():
        if jid in AUX_JOBS:
            continue
        legs = len(((job.get("strategy") or {}).get("matrix") or {}).get("sweep") or [])
        runs: list[list[str]] = []
        fingerprints: list[list[str]] = []
        for leg in range(legs) if legs else [None]:
            root = tmp / f"{jid}-{leg}"
            work = root / "work"
            work.mkdir(parents=True)
            r = Runner(root, work, inputs=dict(inputs or {}), leg=leg)
            for prefix in ("Params", "Fingerprint", f"Run {jid}"):
                step = named(job, prefix)
                if step is None:
                    assert prefix != f"Run {jid}", f"job {jid} has no `Run {jid}` step"
                    continue
                done = r.run(step, job, wf)
                assert done.returncode == 0, (prefix, done.stderr)
            calls = [["mlprism", *c] for c in r.calls()]
            runs.append(calls[-1])
            if len(calls) == 2:
                fingerprints.append(calls[0])
            assert len(calls) in (1, 2), calls
        downloads = [s["with"].get("name") or s["with"].get("pattern") for s in job["steps"]
                     if "download-artifact" in str(s.get("uses", ""))]
        uploads = [s["with"]["name"] for s in job["steps"] if "upload-artifact" in str(s.get("uses", ""))]
        jobs[jid] = StepJob(jid, set(job.get("needs") or []), runs, fingerprints, bool(legs), downloads, uploads)
    aux = {k: v for k, v in wf["jobs"].items() if k in AUX_JOBS}
    return Decompiled(jobs, declared, on, aux)
