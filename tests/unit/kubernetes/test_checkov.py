"""checkov's Kubernetes checks on every built tree, in one run.

checkov knows core kinds only: it skips a Rollout's and a WorkflowTemplate's containers. So the
objects are handed to it as Kubernetes would run them: a Rollout as the Deployment with its pod
template, and each container/script template of a WorkflowTemplate as the Pod Argo creates from it
(the workflow's pod-level settings plus that container; Argo adds its own executor containers).

Accepted failures, each for a reason (docs/targets/kubernetes.md lists them too):

- CKV_K8S_35 (secrets as files, not environment variables): the runtime reads the spec's
  `environment.secrets` from the environment by name, on every target.
- CKV_K8S_43 (images by digest): the default is the tag the docker target builds; set
  `image.pipeline.digest` / `image.serving.digest` to pin (the `options` case does, and passes).
- CKV_K8S_8, CKV_K8S_9 (liveness/readiness probes) on workflow pods only: batch steps serve
  nothing to probe. The serving pods have both.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, require

from . import validators
from .conftest import Case

ALWAYS = {"CKV_K8S_35"}
UNLESS_DIGEST = {"CKV_K8S_43"}
BATCH_ONLY = {"CKV_K8S_8", "CKV_K8S_9"}


def _checkov() -> str:
    for candidate in (os.environ.get("MLPRISM_CHECKOV"), str(ROOT / "build" / "checkov-venv" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    require("validators", "checkov is not installed: run `bash .ci/install-validators.sh` (build/checkov-venv)")
    raise AssertionError("unreachable")


def as_kubernetes_runs_them(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for d in docs:
        if d["kind"] == "Rollout":
            dep = copy.deepcopy(d)
            dep.update(apiVersion="apps/v1", kind="Deployment")
            dep["spec"].pop("strategy")
            out.append(dep)
        elif d["kind"] == "WorkflowTemplate":
            spec = d["spec"]
            pod_level = {k: spec[k] for k in ("serviceAccountName", "automountServiceAccountToken", "securityContext",
                                              "volumes", "nodeSelector", "tolerations", "imagePullSecrets") if k in spec}
            for t in spec["templates"]:
                c = t.get("container") or t.get("script")
                if c is None:
                    continue
                c = {k: v for k, v in c.items() if k != "source"}
                c["name"] = "main"
                pod_spec = {**copy.deepcopy(pod_level), "containers": [c], "restartPolicy": "Never"}
                if "activeDeadlineSeconds" in t:
                    pod_spec["activeDeadlineSeconds"] = t["activeDeadlineSeconds"]
                out.append({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": f"{d['metadata']['name']}-{t['name']}",
                                         "namespace": d["metadata"]["namespace"],
                                         "labels": spec["podMetadata"]["labels"]},
                            "spec": pod_spec})
        elif not d["apiVersion"].startswith("argoproj.io/"):
            out.append(d)
    return out


@pytest.mark.slow
def test_checkov_kubernetes_checks(all_cases: list[Case], built: dict, tmp_path: Path) -> None:
    checkov = _checkov()
    digests: set[str] = set()
    for case in all_cases:      # overlays only add a label: the bases are what checkov needs to see
        objs = as_kubernetes_runs_them(built[(case.name, "base")])
        validators.validate_objects([o for o in objs if o["kind"] == "Pod"], case.version)   # still valid pods
        (tmp_path / f"{case.name}.yaml").write_text(yaml.safe_dump_all(objs))
        if all("@sha256:" in c["image"] for o in objs if o["kind"] in ("Pod", "Deployment")
               for c in (o["spec"].get("containers") or o["spec"]["template"]["spec"]["containers"])):
            digests.add(f"{case.name}.yaml")
    assert digests, "one case pins every image by digest"
    proc = subprocess.run([checkov, "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json", "--compact"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
                          cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    (report,) = [r for r in reports if r.get("check_type") == "kubernetes"]
    passed = report["results"]["passed_checks"]
    assert len({c["check_id"] for c in passed}) >= 40, "checkov looked at the containers"
    unexpected = []
    for c in report["results"]["failed_checks"]:
        file = Path(c["file_path"]).name
        kind = c["resource"].split(".")[0]
        if c["check_id"] in ALWAYS:
            continue
        if c["check_id"] in UNLESS_DIGEST and file not in digests:
            continue
        if c["check_id"] in BATCH_ONLY and kind == "Pod":
            continue
        unexpected.append(f"{c['check_id']} {c['check_name']}: {c['resource']} ({file})")
    assert not unexpected, "\n".join(unexpected)
