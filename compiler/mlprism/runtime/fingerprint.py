"""THE definition of a step's cache key. Every target reuses it (``mlprism fingerprint``).

A fingerprint is the blake3 digest of canonical JSON of these components:

- ``command``: the resolved command, with the value of any declared secret replaced by its name
- ``params``: the values of the params the step uses (dotted names): those its command, env, paths and
  gate name, those the environment's variables name, and those a used param's value names
- ``env``: the declared environment variables (``environment.variables`` and the step's ``env``), names and values
- ``secrets``: the declared secret NAMES (never their values)
- ``python``: ``environment.python`` of the spec (not the running interpreter's version)
- ``requirements``: the content hash of ``environment.requirements``, if declared
- ``definition``: what the step promises: outputs, metrics file, gate conditions
- ``inputs``: the content hash of every declared input (files, or directories as trees)

Nothing machine-specific enters it: no absolute path, no host name, no clock,
no ``sys.version``. A Docker, CI or Kubernetes run of the same spec over the
same data computes the same fingerprint. Retries, timeout, resources and the
description are left out: they change how a step runs, not what it produces.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlprism.runtime.hashing import Digest, Hasher, hash_bytes
from mlprism.runtime.redact import label as redact

if TYPE_CHECKING:
    from mlprism.ir import Pipeline, Step

__all__ = ["FINGERPRINT_VERSION", "Fingerprint", "compute_fingerprint", "fingerprint_step", "redact",
           "secret_values", "step_params"]

FINGERPRINT_VERSION = 1
MISSING = "missing"


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    components: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return self.digest


def step_params(pipeline: Pipeline, step: Step, flat: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Values of the params a step uses; a name that is a subtree brings all its leaves."""
    if not step.params:
        return {}
    flat = pipeline.flat_params() if flat is None else flat
    out: dict[str, Any] = {}
    for name in step.params:
        if name in flat:
            out[name] = flat[name]
            continue
        prefix = name + "."
        for key, value in flat.items():
            if key.startswith(prefix):
                out[key] = value
    return dict(sorted(out.items()))


def secret_values(pipeline: Pipeline, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The declared secrets that are set in the caller's environment: name -> value."""
    environ = os.environ if environ is None else environ
    return {n: environ[n] for n in pipeline.environment.secrets if environ.get(n)}


def _norm(path: str) -> str:
    """posixpath.normpath, skipped for paths already in normal form (the usual case; it is hot)."""
    if path.startswith(".") or path.endswith("/") or "/." in path or "//" in path:
        return posixpath.normpath(path)
    return path


def _definition(step: Step) -> dict[str, Any]:
    return {
        "outputs": sorted(_norm(o) for o in step.outputs),
        "metrics": _norm(step.metrics) if step.metrics else None,
        "gate": [{"metric": g.metric, "min": g.min, "max": g.max, "not_worse_than": g.not_worse_than,
                  "goal": g.goal, "tolerance": g.tolerance} for g in step.gate],
    }


def compute_fingerprint(pipeline: Pipeline, step: Step, input_hashes: Mapping[str, str | None],
                        requirements_hash: str | None, secrets: Mapping[str, str] | None = None,
                        flat_params: Mapping[str, Any] | None = None) -> Fingerprint:
    """The fingerprint of ``step`` given its inputs' content hashes (None: the input is missing).

    ``flat_params`` is ``pipeline.flat_params()``, precomputed by callers that fingerprint many steps.
    """
    env = {**pipeline.environment.variables, **step.env}
    components: dict[str, Any] = {
        "v": FINGERPRINT_VERSION,
        "command": redact(step.run, secrets or {}),
        "params": step_params(pipeline, step, flat_params),
        "env": dict(sorted(env.items())),
        "secrets": sorted(pipeline.environment.secrets),
        "python": pipeline.environment.python,
        "requirements": requirements_hash,
        "definition": _definition(step),
        "inputs": {_norm(k): (v if v is not None else MISSING)
                   for k, v in sorted(input_hashes.items())},
    }
    text = json.dumps(components, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return Fingerprint(hash_bytes(text.encode("utf-8")), components)


def requirements_hash(project_dir: Path, pipeline: Pipeline, hasher: Hasher) -> str | None:
    req = pipeline.environment.requirements
    if not req:
        return None
    d = hasher.digest(project_dir / req)
    return d.hash if d.exists else MISSING


def input_digests(project_dir: Path, step: Step, hasher: Hasher) -> dict[str, Digest]:
    return {posixpath.normpath(i): hasher.digest(project_dir / i) for i in step.inputs}


def fingerprint_step(project_dir: Path, pipeline: Pipeline, step: Step | str, hasher: Hasher | None = None,
                     environ: Mapping[str, str] | None = None) -> Fingerprint:
    """Hash a step's inputs as they are now under ``project_dir`` and return its fingerprint."""
    hasher = hasher or Hasher(None)
    s = pipeline.step(step) if isinstance(step, str) else step
    inputs = {k: d.hash for k, d in input_digests(project_dir, s, hasher).items()}
    return compute_fingerprint(pipeline, s, inputs, requirements_hash(project_dir, pipeline, hasher),
                               secret_values(pipeline, environ))
