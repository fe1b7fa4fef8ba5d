"""Cases compiled once per session for the github-actions tests, and one validator run over all of them."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import mlprism
import pytest

from tests.conftest import GOLDEN
from tests.unit.github import validators

#: Params, commands, descriptions, paths and env values holding quotes, newlines, `${{ }}`
#: (escaped as `\${{` for OmegaConf), `$(…)`, backticks, `;`, YAML markers and unicode.
HOSTILE = r'''
apiVersion: mlprism/v1
name: evil-pipe
description: "Line one\nline two \\${{ github.token }} $(id) `id` ; rm -rf / 'q' \"dq\" — ünïcødé ✓\n---\n# not a comment"
environment:
  python: "3.12"
  requirements: "req s/requirements's.txt"
  variables: {EVIL: "\\${{ secrets.X }} $(id) `id`; 'q' \"dq\""}
  secrets: [API_TOKEN, OTHER_SECRET]
params:
  quote: "it's \"quoted\""
  newline: "a\nb"
  expr: "\\${{ github.token }}"
  subst: "$(touch pwned) `touch pwned2`; echo hi"
  uni: "naïve — ✓ 日本"
  flag: true
  num: 3
  nested: {"we ird": {"x;y": "v"}, plain: 1}
  swept: "a"
data:
  raw: {path: "data/r a w's.csv", description: "evil \\${{ x }}"}
steps:
  fetch:
    description: "desc \\${{ github.token }}\n$(id)"
    run: "cat \"${data.raw.path}\" > 'out/$(x) \\${{ y }}.txt'; echo '${params.quote}' \\${{ github.token }} `id`"
    inputs: ["data/r a w's.csv"]
    outputs: ["out/\\${{ github.token }}.txt", "out/a;b `c` $(d) 'e' \"f\" ü.txt"]
  use:
    run: "echo ${params.subst} ${params.expr} ${params.uni} ${params.nested.plain} ${params.swept}"
    inputs: ["out/\\${{ github.token }}.txt"]
    outputs: ["out/use.txt"]
    metrics: "metrics/m e t'r\"ics.json"
    env: {X: "\\${{ github.token }}"}
    retries: 1
    timeout: 90s
  gate:
    run: "python -c 'print(1)' ${params.num} ${params.flag} ${params.newline}"
    inputs: ["out/use.txt", "out/a;b `c` $(d) 'e' \"f\" ü.txt"]
    metrics: metrics/g.json
    gate: [{metric: accuracy, min: 0.5}]
    needs: [use]
sweep:
  params: {swept: ["a b", "\\${{ github.token }}", "$(id)", "it's"]}
  select: {metric: accuracy, goal: max}
registry: {name: evil-model, artifact: out/use.txt, register_after: gate}
deploy:
  serve: {model: evil-model@production}
monitor:
  schedule: "*/5 * * * *"
  drift: {reference: out/use.txt, current: "data/r a w's.csv"}
  on_drift: retrain
triggers:
  push: {branches: ["main", "it's", "feat/ü*"], paths: ["src/**", "!docs/**", "data/$(x) 'y' \"z\" ü;`a`"]}
  schedule: "0 3 * * 1"
  manual: true
'''

HOSTILE_FILES = {"data/r a w's.csv": "a,b\n1,2\n", "req s/requirements's.txt": "numpy\n"}

#: A compile-time override that itself is hostile (it ends up in every command).
HOSTILE_OVERRIDES = ["params.quote='x \"y\" $(z) `w` ; \\${{ v }} ü'", "params.num=7"]

OPTIONS = """
targets:
  github-actions:
    runs_on: [ubuntu-24.04]
    gpu_runs_on: [self-hosted, linux, x64, gpu-a100]
    python_version: "3.12"
    mlprism: "mlprism[ml] @ git+https://github.com/example/mlprism@0123456789abcdef0123456789abcdef01234567"
    actions:
      checkout: {sha: '1111111111111111111111111111111111111111', version: v9.9.9}
      cache: {sha: '2222222222222222222222222222222222222222', version: v8.0.0, repo: example/cache-fork}
    concurrency: {cancel_in_progress: true, per_ref: false}
    artifact_retention_days: 3
    environment: prod-eu
    deploy_branches: [main, release/*]
    kubeconfig_secret: KUBE_CONFIG_PROD
  docker: {registry: ghcr.io/acme}
  kubernetes: {}
"""


@dataclass
class Case:
    name: str
    spec: Path
    overrides: list[str] = field(default_factory=list)
    project_path: str = "."
    labels: set[str] = field(default_factory=lambda: {"gpu"})
    files: dict[str, bytes] = field(default_factory=dict)
    _pipeline: mlprism.Pipeline | None = None

    @property
    def pipeline(self) -> mlprism.Pipeline:
        if self._pipeline is None:
            self._pipeline = mlprism.load_pipeline(str(self.spec), self.overrides)
        return self._pipeline


def write_project(root: Path, spec: str, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipeline.yaml").write_text(textwrap.dedent(spec).lstrip("\n"), encoding="utf-8")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pipeline.yaml"


def compile_case(case: Case) -> dict[str, bytes]:
    return mlprism.compile_spec(str(case.spec), "github-actions", case.overrides, case.project_path)


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("github-cases")
    hostile = write_project(tmp / "hostile", HOSTILE, HOSTILE_FILES)
    options_dir = tmp / "options"
    shutil.copytree(GOLDEN / "full", options_dir, ignore=shutil.ignore_patterns("expected", ".mlprism"))
    spec = options_dir / "pipeline.yaml"
    spec.write_text(spec.read_text() + OPTIONS)
    out = [
        Case("golden-full", GOLDEN / "full" / "pipeline.yaml"),
        Case("golden-minimal", GOLDEN / "minimal" / "pipeline.yaml"),
        Case("hostile", hostile, project_path="sub dir/ünï 'q' $(x)"),
        Case("hostile-overrides", hostile, [*HOSTILE_OVERRIDES, "+targets.github-actions.max_dispatch_inputs=2"]),
        Case("options", spec, labels={"gpu-a100"}),
    ]
    for case in out:
        case.files = compile_case(case)
    return {c.name: c for c in out}


#: Known-bad workflows, validated in the same batch: the validators must find these, so that
#: an empty result for the generated files means something.
BAD_LINT = """on: push
permissions: write-all
jobs:
  a:
    runs-on: ubuntu-latest
    needs: [nope]
    steps:
      - uses: actions/checkout@v4
      - run: echo ${{ github.event.head_commit.message }}
"""
BAD_SCHEMA = "on: push\njobs:\n  a:\n    runs-on: x\n    stepz: []\n"


@dataclass
class Validation:
    actionlint: dict[str, list[dict[str, object]]]      # by file
    zizmor: dict[str, list[dict[str, object]]]          # by file
    schema: dict[str, list[str]]                        # by file
    files: dict[str, list[Path]]                        # by case (and "bad")


def _zizmor_file(finding: dict[str, object]) -> str:
    loc = finding["locations"][0]["symbolic"]["key"]["Local"]      # type: ignore[index]
    return str(loc["verbatim_path"])                                # type: ignore[index]


@pytest.fixture(scope="session")
def validation(cases: dict[str, Case], tmp_path_factory: pytest.TempPathFactory) -> Validation:
    """Every workflow of every case, and two bad ones, through the three validators: one run each."""
    tmp = tmp_path_factory.mktemp("github-validate")
    files: dict[str, list[Path]] = {}
    for case in cases.values():
        for rel, data in case.files.items():
            path = tmp / case.name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files.setdefault(case.name, []).append(path)
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "lint.yml").write_text(BAD_LINT)
    (bad / "schema.yml").write_text(BAD_SCHEMA)
    files["bad"] = [bad / "lint.yml", bad / "schema.yml"]
    every = [p for ps in files.values() for p in ps]
    labels = set().union(*(c.labels for c in cases.values()))
    lint: dict[str, list[dict[str, object]]] = {}
    for finding in validators.actionlint(every, labels):
        lint.setdefault(str(finding["path"]), []).append(finding)
    audit: dict[str, list[dict[str, object]]] = {}
    # (--strict-collection stops at a file that is not a workflow: the schema-bad one is not for zizmor)
    for finding in validators.zizmor([p for p in every if p.name != "schema.yml"]):
        audit.setdefault(_zizmor_file(finding), []).append(finding)
    schema: dict[str, list[str]] = {}
    for error in validators.check_jsonschema(every):
        schema.setdefault(error.split(": ", 1)[0], []).append(error)
    return Validation(lint, audit, schema, files)
