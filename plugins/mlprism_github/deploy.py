"""The deploy job of the pipeline workflow (``deploy.serve``).

It needs every other job (so a failed gate anywhere means no deploy; with a sweep, the
selection: a combination that failed its gate is only not a candidate), runs only
for ``deploy_branches``, and runs in the GitHub environment named by the
``environment`` option: add required reviewers to that environment and a
person approves each deploy. After approval it

1. restores this run's model registry (saved by the job that registered),
2. promotes the newest version to the stage ``deploy.serve.model`` names
   (``churn@production`` -> ``mlprism models promote churn latest --stage
   production``) and saves the registry again, so the next run's
   ``not_worse_than`` gate compares with this champion,
3. builds the serving image with ``mlprism build SPEC --image serve`` (the
   docker target; the model is exported from the registry into the image),
   tagged with the commit (``$GITHUB_SHA``), and pushes it when
   ``targets.docker.registry`` is set (ghcr.io: with the workflow's token and
   ``packages: write``; elsewhere: ``registry_username_secret`` /
   ``registry_password_secret``),
4. when ``targets.kubernetes`` is configured: builds and pushes the pipeline
   image too (the manifests run the pipeline on Argo), compiles the
   kubernetes target with ``image.tag`` set to the commit and applies the
   overlay of the spec's ``env`` choice (else ``base/``) with ``kubectl apply
   -k`` (kubeconfig from the secret named by ``kubeconfig_secret``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlprism_github.actions import sub
from mlprism_github.text import Script

if TYPE_CHECKING:
    from mlprism_github.workflow import Builder


def _if_branches(branches: tuple[str, ...], needs: list[str] | None = None) -> str:
    """`if:` for the deploy job; branch names are schema-checked (letters, digits, `_./-`, a final `*`).

    With `needs` (a sweep): every job it needs succeeded, whatever became of the legs of the sweep
    before the selection (GitHub's implicit `success()` would look at them too).
    """
    tests = [f"startsWith(github.ref, 'refs/heads/{b[:-1]}')" if b.endswith("*") else f"github.ref == 'refs/heads/{b}'"
             for b in branches]
    branch = " || ".join(tests)
    if needs is None:
        return "${{ " + branch + " }}"
    ok = " && ".join(f"needs.{n}.result == 'success'" for n in needs)
    return "${{ !cancelled() && " + ok + " && (" + branch + ") }}"


def deploy_job(b: Builder, needs: list[str]) -> dict[str, Any]:
    from mlprism_github.workflow import SELECT_JOB, _run

    p, o = b.p, b.o
    assert p.deploy is not None and p.deploy.serve is not None
    serve = p.deploy.serve
    docker = p.targets.get("docker") or {}
    registry_host = str(docker.get("registry") or "").rstrip("/")
    kubernetes = "kubernetes" in p.targets
    ghcr = registry_host.startswith("ghcr.io/") and not o.registry_password_secret
    permissions: dict[str, str] = {"contents": "read"}
    if ghcr:
        permissions["packages"] = "write"

    steps: list[dict[str, Any]] = [b.checkout(), b.setup_python(), b.install()]
    prefix = b._registry_prefix()
    if p.registry:
        steps.append({"name": "Restore this run's model registry", "uses": sub(b.a["cache"], "restore").uses,
                      "with": {"path": b._registry_path(),
                               "key": prefix + "${{ github.run_id }}-${{ github.run_attempt }}",
                               "restore-keys": prefix + "${{ github.run_id }}-",
                               "fail-on-cache-miss": True}})
    stage = serve.model_ref
    if p.registry and not stage.isdigit() and stage != "latest":
        sh = Script()
        sh.add(f"mlprism models promote {sh.word(serve.model_name)} latest --stage {sh.word(stage)} "
               '--reason "approved in GitHub Actions run $GITHUB_RUN_ID ($GITHUB_SHA)"')
        steps.append(_run(f"Promote the new version to {stage}", sh))
        steps.append({"name": "Save the model registry", "uses": sub(b.a["cache"], "save").uses,
                      "with": {"path": b._registry_path(),
                               "key": prefix + "${{ github.run_id }}-${{ github.run_attempt }}-deployed"}})
    # with kubernetes, the manifests run the pipeline on Argo too: both images, one tag (the commit)
    kinds = ["pipeline", "serve"] if kubernetes else ["serve"]
    spec_args = [p.spec_file, *p.overrides]
    build = Script()
    only = "" if kubernetes else " --image serve"
    build.add(f'mlprism build {build.words(spec_args)}{only} --tag "$GITHUB_SHA"')
    steps.append(_run("Build the serving image" + (" and the pipeline image" if kubernetes else ""), build))
    if registry_host:
        push = Script()
        env: dict[str, str] = {}
        user = ""
        if o.registry_password_secret:
            env["REGISTRY_PASSWORD"] = f"${{{{ secrets.{o.registry_password_secret} }}}}"
            if o.registry_username_secret:
                env["REGISTRY_USERNAME"] = f"${{{{ secrets.{o.registry_username_secret} }}}}"
                user = "$REGISTRY_USERNAME"
            else:
                user = "$GITHUB_ACTOR"
        elif ghcr:
            env["REGISTRY_PASSWORD"] = "${{ github.token }}"
            user = "$GITHUB_ACTOR"
        if user:
            push.add(f'printf \'%s\' "$REGISTRY_PASSWORD" | docker login {push.word(registry_host.split("/", 1)[0])} '
                     f'--username "{user}" --password-stdin')
        for kind in kinds:
            push.add(f'docker push {push.word(f"{registry_host}/{p.name}-{kind}:")}"$GITHUB_SHA"')
        step = _run("Push the images", push)
        if env:
            step["env"] = env
        steps.append(step)
    if kubernetes:
        sh = Script()
        overlay = p.config_choices.get("env")
        tree = "overlays/" + overlay if overlay else "base"
        sh.add("umask 077",
               'printf \'%s\' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"',
               'export KUBECONFIG="$RUNNER_TEMP/kubeconfig"',
               f'mlprism compile {sh.words(spec_args)} "++targets.kubernetes.image.tag=$GITHUB_SHA" '
               '--target kubernetes --out "$RUNNER_TEMP/mlprism-kubernetes"',
               f'kubectl apply -k "$RUNNER_TEMP/mlprism-kubernetes/"{sh.word(tree)}')
        apply = _run("Apply the Kubernetes manifests", sh)
        apply["env"] = {"KUBECONFIG_DATA": f"${{{{ secrets.{o.kubeconfig_secret} }}}}"}
        steps.append(apply)
    return {
        "name": f"deploy {serve.model}",
        "needs": needs,
        "if": _if_branches(o.deploy_branches, needs if SELECT_JOB in needs else None),
        "runs-on": b.runs_on_default(),
        "permissions": permissions,
        **b.job_defaults(),
        "environment": o.environment,
        "concurrency": {"group": f"mlprism-{p.name}-deploy", "cancel-in-progress": False},
        "steps": steps,
    }
