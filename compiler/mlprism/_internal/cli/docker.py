"""`mlprism build`: build the docker target's images through the Docker SDK.

1. compile the spec for the `docker` target in memory (the Dockerfiles, .dockerignore and the
   compose file, whose `x-mlprism` block names the images and the build-context folder);
2. stage that folder (`.mlprism/docker/` in the project): a wheel of the running mlprism
   (mlprism is installed into the images from it), the model exported from the registry when
   the spec serves one, and the Dockerfiles as built;
3. build each image with the project directory as the context, filtered by the emitted
   .dockerignore, streaming the engine's progress; print each image's name and id.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError, Severity

#: Proxy settings Docker passes to builds as predefined build arguments (not kept in the image).
_PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "FTP_PROXY", "ALL_PROXY",
               "http_proxy", "https_proxy", "no_proxy", "ftp_proxy", "all_proxy")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def register(sub: Any) -> None:
    from mlprism._internal.cli.core import add_spec_args

    p = sub.add_parser("build", help="build the docker target's images (pipeline, serving) with a Docker engine",
                       description="Build the pipeline image (and the serving image when the spec has "
                                   "deploy.serve) through the Docker engine DOCKER_HOST names.")
    add_spec_args(p)
    p.add_argument("--tag", help="tag of the images (default: targets.docker.tag, `dev`)")
    p.add_argument("--base-image", metavar="IMAGE",
                   help="base image to build from instead of targets.docker.base_image (BASE_IMAGE build arg)")
    p.add_argument("--image", action="append", choices=["pipeline", "serve"], dest="images",
                   help="build only this image (repeatable; default: all the spec needs)")
    p.add_argument("--model", metavar="REF",
                   help="model to bake into the serving image (default: deploy.serve.model, e.g. NAME@production)")
    p.add_argument("--wheel", metavar="FILE",
                   help="install this mlprism wheel in the images instead of one built from the running mlprism")
    p.add_argument("--no-cache", action="store_true", help="do not reuse cached layers")
    p.add_argument("--network", metavar="MODE",
                   help="network for RUN instructions, e.g. host (default: $MLPRISM_DOCKER_NETWORK or the engine's)")
    p.add_argument("--platform", help="platform to build for (default: the first of targets.docker.platforms)")
    p.add_argument("--prepare-only", action="store_true",
                   help="only stage the build context folder (then `docker compose build` works); build nothing")
    p.add_argument("--quiet", "-q", action="store_true", help="no build progress, only the image ids")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(handler=cmd_build)


# -- the mlprism wheel ---------------------------------------------------------------------------
def _package_files(name: str) -> list[tuple[str, Path]]:
    spec = find_spec(name)
    if spec is None:
        return []
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        files = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                files.append((f"{name}/{path.relative_to(root).as_posix()}", path))
        return files
    if spec.origin and spec.origin.endswith(".py"):
        return [(f"{name}.py", Path(spec.origin))]
    return []


def build_wheel(dest_dir: Path) -> Path:
    """Write a wheel of the running mlprism (editable or not) into dest_dir; byte-identical for the same code."""
    import base64
    import hashlib
    from importlib import metadata

    dist = metadata.distribution("mlprism")
    version = dist.version
    top_level = (dist.read_text("top_level.txt") or "mlprism").split()
    info = f"mlprism-{version}.dist-info"
    members: list[tuple[str, bytes]] = []
    for name in sorted(set(top_level)):
        for arc, path in _package_files(name):
            members.append((arc, path.read_bytes()))
    if not any(arc.startswith("mlprism/") for arc, _ in members):
        raise DiagnosticError([Diagnostic("MLP452", "cannot find mlprism's own files to build its wheel")])
    members.append((f"{info}/METADATA", (dist.read_text("METADATA") or
                                         f"Metadata-Version: 2.1\nName: mlprism\nVersion: {version}\n").encode()))
    members.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: mlprism build\n"
                                     b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    members.append((f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode()))
    members.append((f"{info}/top_level.txt", ("\n".join(sorted(set(top_level))) + "\n").encode()))
    record = io.StringIO()
    for arc, data in members:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{arc},sha256={digest},{len(data)}\n")
    record.write(f"{info}/RECORD,,\n")
    members.append((f"{info}/RECORD", record.getvalue().encode()))
    dest_dir.mkdir(parents=True, exist_ok=True)
    wheel = dest_dir / f"mlprism-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in members:
            zi = zipfile.ZipInfo(arc, date_time=_ZIP_DATE)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    data = buf.getvalue()
    if not wheel.exists() or wheel.read_bytes() != data:      # unchanged bytes keep Docker's layer cache
        tmp = wheel.with_name(f".{wheel.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, wheel)
    for other in dest_dir.glob("*.whl"):
        if other != wheel:
            other.unlink()
    return wheel


def _stage_wheel(source: Path, dest_dir: Path) -> Path:
    """Put a given mlprism wheel where the Dockerfiles install it from."""
    if not source.is_file() or not re.fullmatch(r"mlprism-[^-]+-py3-none-any\.whl", source.name):
        raise DiagnosticError([Diagnostic("MLP002", f"--wheel {source}: not an mlprism wheel file", None,
                                          "give a file named mlprism-VERSION-py3-none-any.whl")])
    wheel = dest_dir / source.name
    _write_if_changed(wheel, source.read_bytes())
    for other in dest_dir.glob("*.whl"):
        if other != wheel:
            other.unlink()
    return wheel


def wheel_requirements(wheel: Path, extras: tuple[str, ...] = ("serve",)) -> str:
    """mlprism's dependencies (with `extras`) from a wheel's METADATA, as a requirements file.

    The images install these in a layer before the wheel itself (`--no-deps`), so a new
    mlprism with the same dependencies reuses that layer."""
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode()
    lines = []
    for line in meta.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req, _, marker = line[len("Requires-Dist:"):].strip().partition(";")
        marker = marker.strip()
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra:
            if extra.group(1) not in extras:
                continue
            marker = re.sub(r"""\s*(and\s+)?extra\s*==\s*["'][^"']+["']\s*(and\s+)?""", " ", marker).strip()
        lines.append(req.strip() + (f"; {marker}" if marker else ""))
    header = f"# mlprism's dependencies (extras: {', '.join(extras)}), from {wheel.name}; written by `mlprism build`\n"
    return header + "".join(f"{line}\n" for line in lines)


# -- the build ---------------------------------------------------------------------------------
def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _dockerignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _pinned(image: str) -> bool:
    """A tag other than `latest`, or a digest."""
    if re.search(r"\s", image):
        return False
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def _git_revision(project: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(project), "rev-parse", "--verify", "-q", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", rev) else None


def _export_model(project: Path, ref: str, out_dir: Path) -> None:
    from mlprism.runtime.registry import ModelRegistry

    if out_dir.exists():
        shutil.rmtree(out_dir)
    try:
        ModelRegistry(project / ".mlprism").export(ref, out_dir)
    except DiagnosticError as exc:
        hint = (f"the serving image bakes in {ref}: run the pipeline (`mlprism run`) so it registers "
                "a model, promote one (`mlprism models promote`), or build only the pipeline image (--image pipeline)")
        raise DiagnosticError([*exc.diagnostics, Diagnostic("MLP452", f"cannot export {ref} for the serving image",
                                                            None, hint)])


def _stale_note(project: Path, files: dict[str, bytes]) -> list[Diagnostic]:
    """A note when the project holds generated docker files that differ from this compile."""
    stale = [name for name in sorted(files) if (project / name).is_file()
             and b"Generated by mlprism" in (project / name).read_bytes()[:600]
             and (project / name).read_bytes() != files[name]]
    if not stale:
        return []
    return [Diagnostic("MLP304", f"{', '.join(stale)} in {project} differ from this compile; "
                                 "the images are built from the fresh output", None,
                       f"refresh them with `mlprism compile SPEC --target docker --out {project}`",
                       Severity.WARNING)]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _build_one(client: Any, *, project: Path, dockerfile: str, tag: str, patterns: list[str],
               buildargs: dict[str, str], args: argparse.Namespace, platform: str | None) -> str:
    import docker.errors
    import requests.exceptions
    import urllib3.exceptions
    from docker.utils.build import tar

    with warnings.catch_warnings():     # the SDK's regex for a `[[]` class warns "possible nested set"
        warnings.simplefilter("ignore", FutureWarning)
        context = tar(str(project), exclude=patterns, gzip=False)
    kwargs: dict[str, Any] = {"fileobj": context, "custom_context": True, "dockerfile": dockerfile, "tag": tag,
                              "buildargs": buildargs, "rm": True, "forcerm": True, "decode": True,
                              "nocache": args.no_cache, "pull": False, "labels": None}
    network = args.network or os.environ.get("MLPRISM_DOCKER_NETWORK")
    if network:
        kwargs["network_mode"] = network
    if platform:
        kwargs["platform"] = platform
    image_id: str | None = None
    tail: list[str] = []
    try:
        for chunk in client.api.build(**kwargs):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                shown = "" if not args.quiet else "\n" + "\n".join(f"    {t}" for t in tail[-8:])
                raise DiagnosticError([Diagnostic(
                    "MLP451", f"building {tag} failed: {detail.strip()}{shown}", None,
                    "the build output shows the failing instruction; fix it (or the requirements) and rerun")])
            text = chunk.get("stream") or chunk.get("status") or ""
            if text:
                for line in text.rstrip("\n").splitlines():
                    # the engine colours a RUN's stderr (ESC[91m ... ESC[0m): in a diagnostic it is noise
                    tail.append(_ANSI.sub("", line))
                    if not args.quiet:
                        print(f"  {line}", file=sys.stderr)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
    except docker.errors.APIError as exc:
        raise DiagnosticError([Diagnostic("MLP451", f"building {tag} failed: {exc.explanation or exc}")])
    except (docker.errors.DockerException, requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
            ConnectionError) as exc:
        # the engine stopped (or restarted) in the middle of the build: its stream broke off
        from mlprism.runtime.container import engine_gone

        raise engine_gone(exc, f"building {tag}", "rerun `mlprism build`: the layers built so far are cached") from exc
    finally:
        context.close()
    if image_id is None:
        try:
            image_id = client.images.get(tag).id
        except docker.errors.DockerException as exc:
            raise DiagnosticError([Diagnostic("MLP451", f"the engine built no image {tag}: {exc}")])
    return image_id


def _buildkit_cli() -> str | None:
    """A docker CLI that builds with BuildKit: one with buildx, or a classic one (< 23) with it built in."""
    candidates: list[str] = []
    if os.environ.get("MLPRISM_DOCKER_CLI"):
        candidates.append(os.environ["MLPRISM_DOCKER_CLI"])
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", "docker")
        if os.access(path, os.X_OK) and path not in candidates:
            candidates.append(path)
    for cli in candidates:
        try:
            if subprocess.run([cli, "buildx", "version"], capture_output=True, timeout=20).returncode == 0:
                return cli
            out = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True,
                                 text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            continue
        major = re.match(r"(\d+)\.", out.stdout.strip())
        if major and int(major.group(1)) < 23:
            return cli
    return None


def _build_with_buildkit(*, project: Path, dockerfile: str, tag: str, buildargs: dict[str, str],
                         secrets: list[str], args: argparse.Namespace, platform: str | None) -> str:
    """Build with BuildKit through the docker CLI: the only way to pass build secrets as secret mounts."""
    import tempfile

    cli = _buildkit_cli()
    if cli is None:
        raise DiagnosticError([Diagnostic(
            "MLP451", "`targets.docker.build_secrets` needs BuildKit, and no docker CLI here can use it", None,
            "install the docker buildx plugin (or set MLPRISM_DOCKER_CLI to a docker CLI that has it)")])
    from mlprism.runtime.redact import mask, redaction_values

    with tempfile.TemporaryDirectory(prefix="mlprism-build-") as tmp:
        iidfile = Path(tmp) / "iid"
        cmd = [cli, "build", "--file", str(project / dockerfile), "--tag", tag, "--iidfile", str(iidfile),
               "--progress", "plain"]
        for key, value in buildargs.items():    # values from the environment by name only (not in `ps`)
            cmd += ["--build-arg", key if os.environ.get(key) == value else f"{key}={value}"]
        for name in secrets:
            if os.environ.get(name):
                cmd += ["--secret", f"id={name},env={name}"]
            elif not args.json:
                print(f"note: build secret {name} is not set in the environment; building without it",
                      file=sys.stderr)
        network = args.network or os.environ.get("MLPRISM_DOCKER_NETWORK")
        if network:
            cmd += ["--network", network]
        if platform:
            cmd += ["--platform", platform]
        if args.no_cache:
            cmd.append("--no-cache")
        cmd.append(str(project))
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        assert proc.stdout is not None
        # a build step that prints a build secret (a pip index URL with its token...) shows `***` instead
        values = redaction_values(os.environ.get(name) or "" for name in secrets)
        for line in proc.stdout:
            line = mask(line, values)
            tail = [*tail[-19:], line.rstrip("\n")]
            if not args.quiet:
                print(f"  {line.rstrip()}", file=sys.stderr)
        if proc.wait() != 0 or not iidfile.exists():
            shown = "\n".join(f"    {t}" for t in tail[-8:])
            raise DiagnosticError([Diagnostic("MLP451", f"building {tag} failed:\n{shown}", None,
                                              "the build output shows the failing instruction; fix it and rerun")])
        return iidfile.read_text().strip()


def _emit_for_build(pipeline: Any, target: Any, project_path: str, args: argparse.Namespace) -> dict[str, bytes]:
    """The docker target's files. Features an image does not carry (schedules, monitors, canary
    rollouts...) are a note here, not an error: they belong to other targets, not to the images."""
    from mlprism._internal.cli import print_diagnostics
    from mlprism._internal.compiler import target_options
    from mlprism._internal.features import features_used
    from mlprism._internal.target import EmitContext
    from mlprism._internal.write import normalize
    from mlprism._version import __version__

    elsewhere = [f for f in features_used(pipeline) if f not in target.capabilities]
    if elsewhere and not args.json:
        print_diagnostics([Diagnostic(
            "MLP302", f"the images do not carry {', '.join(f'`{f}`' for f in elsewhere)} (the docker target cannot "
                      "express them); building them anyway", None,
            "compile the spec for a target that can (`mlprism compile --target github-actions`...)",
            Severity.NOTE)])
    ctx = EmitContext(options=target_options(pipeline, target), project_path=project_path,
                      mlprism_version=__version__)
    try:
        emitted = target.emit(pipeline, ctx)
    except DiagnosticError:
        raise
    except Exception as exc:
        raise DiagnosticError([Diagnostic("MLP001", f"target `docker` crashed while emitting: "
                                          f"{type(exc).__name__}: {exc}", None, "rerun with --debug and report it")])
    return {name: gf.data() for name, gf in normalize(emitted, "docker").items()}


def cmd_build(args: argparse.Namespace) -> int:
    import yaml

    from mlprism._internal.cli import print_diagnostics
    from mlprism._internal.cli.core import _plugins, load
    from mlprism._internal.compiler import project_path_for

    plugins = _plugins(args)
    target = plugins.targets.get("docker")          # MLP300 when the plugin is missing
    compiled = load(args)
    pipeline = compiled.pipeline
    project = compiled.spec_path.parent
    files = _emit_for_build(pipeline, target, project_path_for(compiled.spec_path), args)
    manifest = (yaml.safe_load(files["compose.yaml"]) or {}).get("x-mlprism") or {}
    images: dict[str, dict[str, str]] = dict(manifest.get("images") or {})
    wanted = list(args.images or images)
    missing = [kind for kind in wanted if kind not in images]
    if missing:
        raise DiagnosticError([Diagnostic("MLP452", f"the spec has no {missing[0]} image", pipeline.location("deploy"),
                                          "a serving image needs `deploy.serve` in the spec")])
    tag = args.tag or str((pipeline.targets.get("docker") or {}).get("tag") or "dev")
    if tag == "latest" or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise DiagnosticError([Diagnostic("MLP002", f"image tag `{tag}` is not allowed", None,
                                          "use a version or a name such as `dev`, `1.2.0` or a commit id "
                                          "(never `latest`)")])
    names = {kind: re.sub(r":[^:/]+$", f":{tag}", images[kind]["name"]) for kind in wanted}
    base_image = args.base_image or manifest.get("base_image")
    if args.base_image and not _pinned(args.base_image):
        raise DiagnosticError([Diagnostic("MLP002", f"--base-image `{args.base_image}` is not pinned", None,
                                          "give a tag other than `latest` (local/python-base:bookworm) or a digest")])
    warnings = _stale_note(project, files)
    if warnings and not args.json:
        print_diagnostics(warnings)

    client = None
    if not args.prepare_only:           # no engine: say so before doing any work
        from mlprism.runtime.container import docker_client

        client = docker_client(timeout=600)

    # 1. stage the build-context folder
    context_dir = project / str(manifest.get("context_dir") or ".mlprism/docker")
    wheel = _stage_wheel(Path(args.wheel), context_dir / "wheels") if args.wheel else build_wheel(context_dir / "wheels")
    if manifest.get("wheel") and wheel.name != manifest["wheel"]:
        raise DiagnosticError([Diagnostic("MLP452", f"the Dockerfile installs {manifest['wheel']} but this mlprism "
                                                    f"builds {wheel.name}", None, "recompile with this mlprism")])
    _write_if_changed(project / str(manifest.get("wheel_requirements") or f"{context_dir}/mlprism-requirements.txt"),
                      wheel_requirements(wheel).encode())
    dockerfiles: dict[str, str] = {}
    build_secrets = [str(x) for x in manifest.get("build_secrets") or []]
    for kind in wanted:
        name = images[kind]["dockerfile"]
        _write_if_changed(context_dir / name, files[name])
        # BuildKit reads the ignore file next to the Dockerfile (the classic builder gets the patterns below)
        _write_if_changed(context_dir / f"{name}.dockerignore", files[".dockerignore"])
        dockerfiles[kind] = f"{context_dir.relative_to(project).as_posix()}/{name}"
    if "serve" in wanted:
        try:
            _export_model(project, str(args.model or manifest["model"]), context_dir / "model")
        except DiagnosticError as exc:
            if args.images:                 # asked for by name: an error
                raise
            wanted.remove("serve")          # by default: build what can be built, and say why not the rest
            if not args.json:
                cause = exc.diagnostics[0]
                promote = cause.code == "MLP407" and (cause.hint or "").startswith("promote one: ")
                todo = (f"{cause.hint}, then build again" if promote         # registered, not promoted
                        else "run the pipeline (`mlprism run`) so it registers a model, then build again")
                print_diagnostics([Diagnostic(
                    "MLP452", f"skipping the serving image: {cause.message}", None,
                    f"it bakes in {args.model or manifest['model']}: {todo}", Severity.WARNING)])
    if args.prepare_only:
        print(f"staged {context_dir.relative_to(project).as_posix()}/ in {project} (wheel {wheel.name}"
              + (", model " + str(manifest["model"]) if "serve" in wanted else "") + ")")
        return 0

    # 2. build
    buildargs = {k: os.environ[k] for k in _PROXY_ARGS if os.environ.get(k)}
    if base_image:
        buildargs["BASE_IMAGE"] = str(base_image)
    revision = _git_revision(project)
    if revision:
        buildargs["VCS_REF"] = revision
    platforms = (pipeline.targets.get("docker") or {}).get("platforms") or []
    platform = args.platform or (platforms[0] if platforms else None)
    patterns = _dockerignore_patterns(files[".dockerignore"].decode())
    results: dict[str, dict[str, str]] = {}
    for kind in wanted:
        if not args.quiet:
            print(f"building {names[kind]} ({kind} image, from {base_image})", file=sys.stderr)
        if build_secrets:
            image_id = _build_with_buildkit(project=project, dockerfile=dockerfiles[kind], tag=names[kind],
                                            buildargs=buildargs, secrets=build_secrets, args=args, platform=platform)
        else:
            image_id = _build_one(client, project=project, dockerfile=dockerfiles[kind], tag=names[kind],
                                  patterns=patterns, buildargs=buildargs, args=args, platform=platform)
        results[kind] = {"name": names[kind], "id": image_id}
        if not args.json:
            print(f"{kind}: {names[kind]} {image_id}")
    if args.json:
        print(json.dumps({"ok": True, "images": results}, indent=2))
    return 0
