"""Cases compiled once per session for the kubernetes tests: the shared goldens and variants that
turn on every option (artifact repository, digests, rolling update) and hostile values."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlprism
import pytest
import yaml

from tests.conftest import GOLDEN

#: The full golden spec with every option of `targets.kubernetes` set.
OPTIONS = """
targets:
  docker: {registry: ghcr.io/acme, tag: "1.4.2"}
  kubernetes:
    namespace: ml-prod
    kubernetes_version: "1.30"
    argo_version: "3.7"
    image:
      pull_policy: IfNotPresent
      pull_secrets: [regcred]
      pipeline: {digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
      serving: {repository: acme/churn-server, digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222"}
      project_dir: /opt/project
      uid: 20000
    storage: {class: fast-rwo, size: 50Gi, access_mode: ReadWriteOnce}
    service_account: churn-runner
    secret_name: churn-credentials
    node_selector: {pool: ml}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    default_resources: {cpu: 250m, memory: 512Mi}
    artifact_repository: {enabled: true, config_map: artifacts, key: s3, memoize_max_age: 24h}
    argo_rollouts: {enabled: false}
    timezone: Europe/Paris
"""

#: Quotes, spaces, unicode, `$(…)`, `${…}` (escaped), booleans-as-strings, lists, nested params,
#: parallel roots, a directory output, a sweep on a nested param without `select`, a monitor that alerts.
HOSTILE = r'''
apiVersion: mlprism/v1
name: evil-pipe
description: "quotes 'single' \"double\" $(id) `id` ; ünïcødé ✓"
environment:
  variables: {EVIL: "$(id) `id`; 'q' \"dq\" \\${x}", SPACED: "a b"}
  secrets: [API_TOKEN, OTHER_SECRET]
params:
  quote: "it's \"quoted\" and spaced"
  uni: "ünïcødé ✓"
  flag: "true"
  dollar: "\\${not.an.interpolation}"
  trailing: 'ends with a backslash \'
  num: 3
  ratio: 1.0e-05
  items: [1, "two words", 3]
  model: {depth: 4, kind: gb}
steps:
  make-data:
    run: mkdir -p "out/a b" && echo "${params.quote}" > "out/a b/x.txt"
    outputs: ["out/a b"]
  use-it:
    run: cat "out/a b/x.txt" && echo ${params.model.depth} > out/result.txt && echo '{"score":1}' > metrics/m.json
    inputs: ["out/a b"]
    outputs: [out/result.txt]
    metrics: metrics/m.json
    env: {STEP_VAR: "x y $(id)"}
    retries: 1
    timeout: 10m
  other-root:
    run: echo "${params.uni} ${params.flag} ${params.items}" > other.txt
    outputs: [other.txt]
  last:
    run: cat out/result.txt other.txt
    inputs: [out/result.txt, other.txt]
sweep:
  params: {model.depth: [2, 4], flag: ["true", "no way"]}
monitor:
  drift: {reference: "out/a b/x.txt", current: other.txt}
  schedule: "*/15 * * * *"
  on_drift: alert
triggers:
  push: {branches: ["release/*"], paths: ["src/**/*.py", "conf/?.yaml"]}
'''


@dataclass
class Case:
    name: str
    spec: Path
    files: dict[str, bytes]
    out: Path
    pipeline: mlprism.Pipeline
    options: dict[str, Any] = field(default_factory=dict)
    _parsed: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def docs(self, rel: str) -> list[dict[str, Any]]:
        if rel not in self._parsed:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            self._parsed[rel] = [d for d in yaml.load_all(self.files[rel], Loader=loader) if d is not None]
        return self._parsed[rel]

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [d for rel in sorted(self.files) if rel.startswith("base/") and not rel.endswith("kustomization.yaml")
                for d in self.docs(rel) if d["kind"] == kind]

    @property
    def template(self) -> dict[str, Any]:
        (wft,) = self.objects("WorkflowTemplate")
        return wft

    @property
    def version(self) -> str:
        return str(self.options.get("kubernetes_version", "1.32"))

    def kustomize_dirs(self) -> list[Path]:
        dirs = [self.out / "base"]
        dirs += sorted({(self.out / rel).parent for rel in self.files if rel.startswith("overlays/")})
        return dirs


def _compile(name: str, spec: Path, out_root: Path, overrides: tuple[str, ...] = ()) -> Case:
    pipeline = mlprism.load_pipeline(str(spec), overrides)
    files = mlprism.compile_spec(str(spec), "kubernetes", overrides)
    out = out_root / name
    for rel, data in files.items():
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return Case(name, spec, files, out, pipeline, dict(pipeline.targets.get("kubernetes") or {}))


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("k8s")
    out = root / "out"
    made: dict[str, Case] = {}
    for name in ("full", "minimal"):
        made[name] = _compile(name, GOLDEN / name / "pipeline.yaml", out)
    options = root / "options"
    shutil.copytree(GOLDEN / "full", options, ignore=shutil.ignore_patterns("expected", ".mlprism"))
    spec = options / "pipeline.yaml"
    spec.write_text(spec.read_text() + textwrap.dedent(OPTIONS))
    made["options"] = _compile("options", spec, out)
    made["prod"] = _compile("prod", GOLDEN / "full" / "pipeline.yaml", out,
                            ("env=prod", "params.n_estimators=300", "+params.extra=on", "~triggers.push"))
    hostile = root / "hostile"
    hostile.mkdir()
    (hostile / "pipeline.yaml").write_text(HOSTILE.lstrip())
    made["hostile"] = _compile("hostile", hostile / "pipeline.yaml", out)
    return made


@pytest.fixture(scope="session")
def all_cases(cases: dict[str, Case]) -> list[Case]:
    return [cases[n] for n in sorted(cases)]


@pytest.fixture(scope="session")
def built(all_cases: list[Case]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(case, base|overlay) -> the objects `kubectl kustomize` builds."""
    from . import validators

    return {(c.name, d.name): validators.kustomize(d) for c in all_cases for d in c.kustomize_dirs()}
