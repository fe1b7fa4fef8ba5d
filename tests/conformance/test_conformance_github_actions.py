"""The conformance suite for the github-actions target: the workflows read back (YAML 1.2).

The pipeline workflow has one job per step: the job whose script runs
`mlprism run SPEC --only STEP` is that step, in its `working-directory`, with
the overrides its Params step always adds (the ones that depend on a
`workflow_dispatch` input or a sweep leg are off by default). `needs:` gives the
order (through helper jobs such as the sweep's selection), `${{ secrets.X }}` on
the running step the secrets, `on.schedule` the schedules (the monitor
workflow's is the monitor's). The runtime's view of the command gives what
`mlprism run` does inside the job; on top of that the decompiler checks what
only the workflow decides: the dispatch inputs' defaults are the spec's params,
GPU steps run on `gpu_runs_on`, steps bigger than `runner_capacity` on
`large_runs_on`, a step's cache is keyed by its fingerprint, and the job's
timeout leaves room for every attempt.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlprism
from mlprism.testing import (
    CanonicalPipeline,
    CanonicalStep,
    TargetConformance,
    memory_bytes,
    param_text,
    step_from_invocation,
)

from tests.conformance.yaml12 import load, upstream_through

_SECRET = re.compile(r"^\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_ALWAYS = re.compile(r"^\s*overrides\+=\((.*)\)\s*$")
_OVERRIDES_WORD = "${overrides[@]}"


def _labels(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _run_line(script: str, command: str) -> list[str] | None:
    for line in script.splitlines():
        if line.strip().startswith(f"mlprism {command} "):
            return shlex.split(line)
    return None


def _options(spec: Path, overrides: list[str]) -> dict[str, Any]:
    """targets.github-actions of the spec, with the target's schema defaults."""
    target = next(t for t in _targets() if t.name == "github-actions")
    pipeline = mlprism.load_pipeline(str(spec), overrides, check_inputs=False)
    options = dict(pipeline.targets.get("github-actions") or {})
    for key, prop in (target.options_schema or {}).get("properties", {}).items():
        if key not in options and "default" in prop:
            options[key] = prop["default"]
    return options


def _targets() -> list[mlprism.Target]:
    from mlprism._internal.compiler import get_plugins

    return list(get_plugins().targets)


def _step_of_job(job_id: str, job: Mapping[str, Any], workflow: Mapping[str, Any],
                 repo_root: Path, inputs: Mapping[str, Any]) -> CanonicalStep | None:
    steps = job.get("steps") or []
    running = [s for s in steps if _run_line(s.get("run") or "", "run")]
    if not running:
        return None
    assert len(running) == 1, f"job {job_id} runs mlprism more than once"
    run_step = running[0]
    overrides: list[str] = []
    for s in steps:
        for line in (s.get("run") or "").splitlines():
            m = _ALWAYS.match(line)
            if m:
                overrides += shlex.split(m.group(1))
    argv = _run_line(run_step["run"], "run") or []
    assert argv.count(_OVERRIDES_WORD) <= 1
    argv = [a for a in argv if a != _OVERRIDES_WORD] + overrides
    wd = (run_step.get("working-directory")
          or ((job.get("defaults") or {}).get("run") or {}).get("working-directory")
          or ((workflow.get("defaults") or {}).get("run") or {}).get("working-directory") or ".")
    cwd = repo_root / wd
    step = step_from_invocation(argv, cwd)
    assert job_id == step.name, f"job {job_id} runs step {step.name}"

    secrets, env = set(), set()
    for scope in (workflow.get("env"), job.get("env"), run_step.get("env")):
        for name, value in (scope or {}).items():
            m = _SECRET.match(str(value))
            if m:
                assert m.group(1) == name, f"{job_id}: secret {m.group(1)} exposed as {name}"
                secrets.add(name)
            elif scope is run_step.get("env"):
                env.add(name)

    # params: a dispatch input's default, given on the command line as the input says, is the spec's value
    params = dict(step.params)
    for spec in inputs.values():
        dotted = re.match(r"params\.([A-Za-z0-9_.]+) as on the command line", str(spec.get("description", "")))
        if dotted and dotted.group(1) in params and spec.get("default") not in (None, ""):
            with_input = [*argv, f"params.{dotted.group(1)}={param_text(spec['default'])}"]
            params[dotted.group(1)] = step_from_invocation(with_input, cwd).params[dotted.group(1)]

    # what only the workflow decides: runners, cache, timeouts
    spec_file = cwd / next(a for a in argv[argv.index("run") + 1:] if not a.startswith("-"))
    options = _options(spec_file, overrides)
    runs_on = _labels(job.get("runs-on"))
    gpu = step.gpu if runs_on == _labels(options["gpu_runs_on"]) else 0
    capacity = options.get("runner_capacity") or {}
    big = ((step.cpu or 0) > float(capacity.get("cpu", 4)) * 1000
           or (step.memory or 0) > float(capacity.get("memory_gib", 16)) * 2**30)
    if big and not step.gpu:
        assert runs_on == _labels(options.get("large_runs_on")), f"{job_id} is bigger than a runner: {runs_on}"
    fingerprinted = any(re.search(rf"\bmlprism fingerprint \S+ {re.escape(job_id)}\b", s.get("run") or "")
                        for s in steps)
    cached = fingerprinted and any(str(s.get("uses", "")).startswith("actions/cache@")
                                   and "fingerprint" in str((s.get("with") or {}).get("key", "")) for s in steps)
    if step.timeout:
        minutes = run_step.get("timeout-minutes") or job.get("timeout-minutes")
        assert minutes and minutes * 60 >= step.timeout * (step.retries + 1), \
            f"{job_id}: timeout-minutes {minutes} cuts {step.retries + 1} attempts of {step.timeout}s short"
    return dataclasses.replace(step, secrets=tuple(sorted(secrets)), env=tuple(sorted(env | set(step.env))),
                               params=params, gpu=gpu, cache_inputs=step.cache_inputs if cached else None)


def decompile_workflows(files: Mapping[str, bytes], repo_root: Path) -> CanonicalPipeline:
    steps: dict[str, CanonicalStep] = {}
    needs: dict[str, list[str]] = {}
    schedules: list[tuple[str, str]] = []
    for path in sorted(files):
        assert path.startswith(".github/workflows/") and path.endswith((".yml", ".yaml")), path
        workflow = load(files[path])
        triggers = workflow["on"]                     # YAML 1.2: `on` is a string key
        jobs = workflow["jobs"]
        scripts = " ".join(str(s.get("run") or "") for j in jobs.values() for s in j.get("steps") or [])
        kind = "monitor" if "mlprism monitor " in scripts else "pipeline"
        for entry in (triggers.get("schedule") or []) if isinstance(triggers, dict) else []:
            schedules.append((kind, entry["cron"]))
        inputs = ((triggers.get("workflow_dispatch") or {}) if isinstance(triggers, dict) else {}) or {}
        inputs = inputs.get("inputs") or {}
        for job_id, job in jobs.items():
            need = job.get("needs") or []
            needs[job_id] = [need] if isinstance(need, str) else list(need)
            if kind != "pipeline":
                continue
            step = _step_of_job(job_id, job, workflow, repo_root, inputs)
            if step is not None:
                steps[step.name] = step
    edges = upstream_through(needs, set(steps))
    return CanonicalPipeline(steps=steps, edges=frozenset(edges), schedules=tuple(sorted(schedules)))


class TestGithubActionsConformance(TargetConformance):
    target_name = "github-actions"

    def decompile(self, files: Mapping[str, bytes]) -> CanonicalPipeline:
        return decompile_workflows(files, self.repo_root)


def test_memory_bytes_matches_runner_capacity_units() -> None:
    assert memory_bytes("16Gi") == 16 * 2**30
