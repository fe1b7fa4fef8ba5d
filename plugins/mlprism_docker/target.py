"""The docker target: a pipeline image, a serving image, a .dockerignore and a compose file.

Files are laid out for the project directory (the spec's directory is the build context):

- ``Dockerfile``        the pipeline image: Python, the pinned requirements, mlprism, the project
- ``serve.Dockerfile``  the serving image (only with ``deploy.serve``): ``mlprism serve`` and the model
- ``.dockerignore``     VCS, caches, ``.mlprism/`` state and every declared data file and step output
- ``compose.yaml``      one service per step (in order, through ``depends_on``) and the model server;
                        its ``x-mlprism`` block is what ``mlprism build`` reads to build the images

Dockerfiles come from Jinja2 templates; the compose file is built as data and
serialized with :func:`mlprism.dump_yaml`. Everything here is a pure function of
the IR and the options.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

import mlprism

from .options import CONTEXT_DIR, OPTIONS_SCHEMA, base_image, check_tag

#: Where the serving image appends the served rows with `deploy.serve.log_requests` (a writable place).
SERVE_REQUEST_LOG = "/tmp/mlprism/serve/requests.csv"
#: Every compose service: no Linux capability, and no way to gain one (setuid binaries).
LEAST_PRIVILEGE: dict[str, list[str]] = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}
#: A path a Dockerfile instruction can carry without quoting.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./+@%,=-]+$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def dockerfile_string(value: object) -> str:
    """A double-quoted Dockerfile word (ENV/LABEL values): backslash, quote and `$` escaped."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise mlprism.DiagnosticError([mlprism.Diagnostic(
            "MLP303", f"a value for the Dockerfile contains a line break: {text!r}", None,
            "use a single-line value")])
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def dockerignore_pattern(path: str) -> str:
    """A .dockerignore line that matches exactly `path`.

    Wildcards become one-character classes (`[*]`), which the Docker CLI, BuildKit and
    the Python SDK all read alike (the SDK has no backslash escapes); a leading `!` or
    `#` is kept literal by a `./` prefix, which every reader cleans away.
    """
    escaped = re.sub(r"([*?\[])", r"[\1]", path.strip("/"))
    if escaped.startswith(("!", "#")):
        escaped = "./" + escaped
    return escaped


def copy_args(src: str, dest: str) -> str:
    """Arguments of a COPY instruction, in JSON form when a path needs quoting."""
    if _PLAIN_PATH.match(src) and _PLAIN_PATH.match(dest):
        return f"{src} {dest}"
    return json.dumps([src, dest])


def compose_string(value: object) -> str:
    """A compose value: `$` doubled so compose does not interpolate user text."""
    return str(value).replace("$", "$$")


def memory_limit(quantity: str) -> str:
    """A Kubernetes memory quantity as compose wants it (binary suffixes kept exact, else bytes)."""
    m = _MEMORY.match(quantity)
    if not m:
        return quantity
    number, unit = m.group(1), m.group(2)
    if unit in ("Ki", "Mi", "Gi", "Ti") and "." not in number:
        return number + unit[0].lower()
    from decimal import Decimal  # here, not when the plugins load (every command): ~3 ms

    return str(int(Decimal(number) * _FACTORS[unit]))


def cpu_limit(quantity: str) -> str:
    if quantity.endswith("m"):
        from decimal import Decimal

        return str(Decimal(quantity[:-1]) / 1000).rstrip("0").rstrip(".") or "0"
    return quantity


if TYPE_CHECKING:
    import jinja2


@cache
def _templates() -> jinja2.Environment:
    import jinja2  # here, not at import: every command that loads the plugins would pay ~50 ms for it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlprism_docker", "templates"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)
    env.filters["dq"] = dockerfile_string
    return env


def _render(name: str, o: dict[str, Any]) -> str:
    text = _templates().get_template(name).render(o=o)
    text = re.sub(r"\n{3,}", "\n\n", text)     # conditional blocks leave no double gaps
    return text.rstrip("\n") + "\n"


class DockerTarget(mlprism.Target):
    name: ClassVar[str] = "docker"
    description: ClassVar[str] = "Dockerfiles (pipeline and serving images), .dockerignore and a compose file"
    capabilities: ClassVar[dict[str, str]] = {
        "steps": "one compose service per step runs `mlprism run SPEC --only STEP` in the pipeline image",
        "parallelism": "compose starts independent step services together (depends_on: service_completed_successfully)",
        "caching": "the runtime in the image skips unchanged steps (cache in the mounted project); "
                   "image layers put the requirements before the code",
        "params": "the spec's params and the compile's overrides reach `mlprism run`",
        "data": "the runtime records data hashes in the mounted project's mlprism.lock",
        "metrics": "the runtime records metrics in the mounted project's ledger",
        "env": "ENV in the image and `environment:` in compose",
        "secrets": "compose passes them by name from the invoking shell; never in an image",
        "retries": "the runtime retries the step inside the container",
        "timeouts": "the runtime stops the step inside the container",
        "resources": "compose deploy.resources.limits (cpus, memory)",
        "gpu": "compose device reservation (driver nvidia, capabilities [gpu])",
        "gates": "a failed gate fails the step's service, so no dependent service starts",
        "registry": "the runtime registers into the mounted project's registry after the gate",
        "serve": "a serving image (`mlprism serve`, HEALTHCHECK on /health) and a compose service",
    }
    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA

    def emit(self, pipeline: mlprism.Pipeline, context: mlprism.EmitContext) -> mlprism.Files:
        options = dict(context.options)
        tag = str(options.get("tag") or "dev")
        check_tag(tag, pipeline.location("targets.docker.tag"))
        o = self._template_values(pipeline, options, context)
        files: mlprism.Files = {
            "Dockerfile": _render("Dockerfile.j2", o),
            ".dockerignore": _render("dockerignore.j2", o),
        }
        if o["serve"] is not None:
            files["serve.Dockerfile"] = _render("serve.Dockerfile.j2", o)
        files["compose.yaml"] = mlprism.dump_yaml(self._compose(pipeline, options, o, tag), header=(
            f"Runs `{pipeline.name}` in containers: its steps in order"
            + (", and the model server" if o["serve"] is not None else "") + ".\n"
            f"Generated by mlprism (target docker) from {pipeline.spec_file}: do not edit, rerun `mlprism compile`.\n"
            f"Paths are relative to the project directory: compile there (`-o .`). `mlprism build {pipeline.spec_file}`\n"
            "stages .mlprism/docker/ and builds the images. Steps write into the project, mounted at /workspace,\n"
            "so run them as your own user: MLPRISM_UID=$(id -u) MLPRISM_GID=$(id -g) docker compose up"))
        return files

    # -- values ---------------------------------------------------------------------
    def _template_values(self, p: mlprism.Pipeline, options: dict[str, Any],
                         context: mlprism.EmitContext) -> dict[str, Any]:
        env = p.environment
        serve = p.deploy.serve if p.deploy and p.deploy.serve else None
        data_paths: dict[str, None] = {}          # insertion-ordered set: one pattern per path
        for path in [d.path for d in p.data] + [x for s in p.steps for x in (*s.outputs, s.metrics) if x]:
            if path != env.requirements:
                data_paths.setdefault(dockerignore_pattern(path))
        run_all = ["mlprism", "run", p.spec_file, *p.overrides]
        secrets = list(options.get("build_secrets") or [])
        secret_prefix = ""
        if secrets:
            # BuildKit mounts each secret as a file for this RUN only; it never reaches a layer.
            mounts = " ".join(f"--mount=type=secret,id={s}" for s in secrets)
            reads = "".join(f"    if [ -f /run/secrets/{s} ]; then {s}=\"$(cat /run/secrets/{s})\"; export {s}; fi; \\\n"
                            for s in secrets)
            secret_prefix = f"{mounts} \\\n{reads}    "
        env_instruction = ""
        broken = [k for k, v in env.variables.items() if "\n" in v or "\r" in v]
        if broken:
            # legitimate elsewhere (a process environment, a manifest, a workflow carry it), but a
            # Dockerfile's ENV cannot: a line break ends the instruction, and its escapes have no `\n`
            raise mlprism.DiagnosticError([mlprism.Diagnostic(
                "MLP302", f"target `docker` cannot express the line break in the value of `{k}`: a Dockerfile "
                          "`ENV` value is one line", p.location(f"environment.variables.{k}"),
                "use a one-line value for this target (an override works: "
                f"`environment.variables.{k}=...`), or compile to local, kubernetes or github-actions, which carry it")
                for k in broken])
        if env.variables:
            env_instruction = "ENV " + " \\\n    ".join(
                f"{k}={dockerfile_string(v)}" for k, v in env.variables.items())
        o: dict[str, Any] = {
            "name": p.name,
            "spec_file": p.spec_file,
            "python": env.python,
            "base_image": base_image(p, options),
            "apt_packages": list(options.get("apt_packages") or []),
            "user": options.get("user", "mlprism"),
            "uid": int(options.get("uid", 10001)),
            "source": options.get("source"),
            "build_secrets": secrets,
            "secret_prefix": secret_prefix,
            "env_instruction": env_instruction,
            "requirements": env.requirements,
            "requirements_copy": copy_args(env.requirements, "/tmp/requirements.txt") if env.requirements else None,
            "context_dir": CONTEXT_DIR,
            "wheel": f"mlprism-{context.mlprism_version}-py3-none-any.whl",
            "mlprism_version": context.mlprism_version,
            "data_paths": list(data_paths),
            "pipeline_cmd": json.dumps(run_all),
            # a label is one line: a block-scalar description (`description: |`) is folded
            "pipeline_description": " ".join(p.description.split()) or f"Steps of the {p.name} pipeline",
            "serve": serve,
            "serve_description": f"Model server of the {p.name} pipeline ({serve.model})" if serve else "",
        }
        if serve is not None:
            port = serve.port
            cmd = ["mlprism", "serve", "--model-dir", "/app/model", "--host", "0.0.0.0", "--port", str(port)]
            if serve.log_requests:
                # /app is read-only on Kubernetes (readOnlyRootFilesystem); /tmp is writable (an emptyDir there)
                cmd += ["--log-requests", SERVE_REQUEST_LOG]
            o["serve_cmd"] = json.dumps(cmd)
            probe = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=4)")
            o["healthcheck_cmd"] = json.dumps(["python", "-c", probe])
        return o

    def image_names(self, p: mlprism.Pipeline, options: dict[str, Any], tag: str) -> dict[str, str]:
        registry = str(options.get("registry") or "").rstrip("/")
        prefix = f"{registry}/" if registry else ""
        names = {"pipeline": f"{prefix}{p.name}-pipeline:{tag}"}
        if p.deploy and p.deploy.serve:
            names["serve"] = f"{prefix}{p.name}-serve:{tag}"
        return names

    def _compose(self, p: mlprism.Pipeline, options: dict[str, Any], o: dict[str, Any], tag: str) -> dict[str, Any]:
        images = self.image_names(p, options, tag)
        platforms = list(options.get("platforms") or [])

        def build(dockerfile: str) -> dict[str, Any]:
            b: dict[str, Any] = {"context": ".", "dockerfile": dockerfile}
            if platforms:
                b["platforms"] = platforms
            if o["build_secrets"]:
                b["secrets"] = list(o["build_secrets"])
            return b

        environment = [f"{k}={compose_string(v)}" for k, v in p.environment.variables.items()]
        environment += list(p.environment.secrets)      # names only: compose takes values from the shell
        services: dict[str, Any] = {}
        for step in p.steps:
            svc: dict[str, Any] = {
                "image": images["pipeline"],
                "build": build("Dockerfile"),
                "command": [compose_string(a) for a in mlprism.step_command(p, step)],
                "working_dir": "/workspace",
                "user": "${MLPRISM_UID:-" + str(o["uid"]) + "}:${MLPRISM_GID:-" + str(o["uid"]) + "}",
                "volumes": [{"type": "bind", "source": ".", "target": "/workspace"}],
                "environment": [*environment, "HOME=/tmp"],
                "restart": "no",
                **LEAST_PRIVILEGE,
            }
            ups = p.upstream(step.name)
            if ups:
                svc["depends_on"] = {u: {"condition": "service_completed_successfully"} for u in ups}
            limits: dict[str, Any] = {}
            if step.resources.cpu:
                limits["cpus"] = cpu_limit(step.resources.cpu)
            if step.resources.memory:
                limits["memory"] = memory_limit(step.resources.memory)
            resources: dict[str, Any] = {}
            if limits:
                resources["limits"] = limits
            if step.resources.gpu:
                resources["reservations"] = {"devices": [
                    {"driver": "nvidia", "count": step.resources.gpu, "capabilities": ["gpu"]}]}
            if resources:
                svc["deploy"] = {"resources": resources}
            services[step.name] = svc
        serve = o["serve"]
        if serve is not None:
            name = "serve" if "serve" not in services else f"{p.name}-serve"
            ports = (f"{serve.port}:{serve.port}" if serve.replicas <= 1
                     else f"{serve.port}-{serve.port + serve.replicas - 1}:{serve.port}")
            # the server writes only under /tmp (its request log): the rest of its file system is read-only
            svc = {"image": images["serve"], "build": build("serve.Dockerfile"), "ports": [ports],
                   "read_only": True, "tmpfs": ["/tmp"], **LEAST_PRIVILEGE}
            if serve.replicas > 1:
                svc["deploy"] = {"replicas": serve.replicas}
            services[name] = svc
        manifest: dict[str, Any] = {
            "spec": p.spec_file,
            "context_dir": CONTEXT_DIR,
            "wheel": o["wheel"],
            "wheel_requirements": f"{CONTEXT_DIR}/mlprism-requirements.txt",
            "base_image": o["base_image"],
            "images": {kind: {"name": name, "dockerfile": "Dockerfile" if kind == "pipeline" else "serve.Dockerfile"}
                       for kind, name in images.items()},
        }
        if serve is not None:
            manifest["model"] = serve.model
        if o["build_secrets"]:
            manifest["build_secrets"] = list(o["build_secrets"])
        doc: dict[str, Any] = {"name": p.name, "x-mlprism": manifest, "services": services}
        if o["build_secrets"]:
            doc["secrets"] = {s: {"environment": s} for s in o["build_secrets"]}
        return doc
