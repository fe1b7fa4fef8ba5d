"""Running steps inside the pipeline image (``mlprism run --in-docker``) and reaching the engine.

:class:`DockerLauncher` runs one step's command in a container of the pipeline
image built by ``mlprism build``: the project directory is bind-mounted at
``/workspace`` (so the step sees the same relative layout and writes its outputs
into the project), the container runs as the invoking user, its output goes to
the step's log file, and it is killed when the step's timeout passes. Hashing,
the cache and the lock file stay with the caller on the host, so fingerprints and
lock files equal those of a local run.

The engine is the one ``DOCKER_HOST`` names (or Docker's default socket). The
engine must see the project directory at the same path (a local engine).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError
from mlprism.runtime.redact import mask, redaction_values

__all__ = ["CONTAINER_WORKDIR", "TIMEOUT_EXIT_CODE", "DockerLauncher", "docker_client", "engine_gone", "engine_hint", "engine_where"]

#: Where the project is mounted inside step containers (compose uses the same path).
CONTAINER_WORKDIR = "/workspace"
#: The exit status :meth:`DockerLauncher.run` returns for a step it killed on timeout (as `timeout(1)`).
TIMEOUT_EXIT_CODE = 124

#: Host variables that describe the host, not the step: never passed into a container.
_HOST_ONLY = frozenset({
    "PATH", "HOME", "PWD", "OLDPWD", "SHELL", "USER", "LOGNAME", "HOSTNAME", "TMPDIR", "TMP", "TEMP",
    "VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "LD_LIBRARY_PATH", "LD_PRELOAD",
    "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "SSH_AUTH_SOCK",
    "XDG_RUNTIME_DIR", "DISPLAY", "MAIL", "SHLVL", "_",
})


def engine_hint() -> str:
    return ("start a Docker engine (`sudo systemctl start docker`, or `dockerd &` as root) or point DOCKER_HOST at "
            "one, and check that your user may use its socket (the `docker` group)")


def engine_where() -> str:
    """The engine mlprism talks to, for messages: DOCKER_HOST, or Docker's default socket."""
    return os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"


def engine_gone(exc: BaseException, during: str, then: str) -> DiagnosticError:
    """MLP450 for an engine that stopped answering (stopped, restarted, its socket gone) while ``during``;
    ``then``: what to do once it is back."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DiagnosticError([Diagnostic(
        "MLP450", f"the Docker engine at {engine_where()} stopped answering while {during} ({reason}); "
                  f"start it again and {then}", hint=engine_hint())])


def docker_client(timeout: float = 120) -> Any:
    """A connected ``docker.DockerClient``; a Diagnostic (MLP450), not a traceback, when none answers."""
    try:
        import docker
    except ImportError as exc:      # pragma: no cover - a declared dependency
        raise DiagnosticError([Diagnostic("MLP450", f"the docker SDK is not installed ({exc})",
                                          hint="pip install 'docker>=7'")])
    host = os.environ.get("DOCKER_HOST")
    where = engine_where()
    try:
        client = (docker.DockerClient(base_url=host, timeout=int(timeout)) if host
                  else docker.from_env(timeout=int(timeout)))
        client.ping()
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DiagnosticError([Diagnostic("MLP450", f"no Docker engine answers at {where}: {reason}",
                                          hint=engine_hint())])
    return client


class DockerLauncher:
    """Runs step commands in containers of ``image`` with ``project_dir`` mounted at /workspace."""

    def __init__(self, image: str, project_dir: Path, *, client: Any = None, user: str | None = None,
                 network: str | None = None, shell: str = "/bin/sh", redact_values: Sequence[str] = ()) -> None:
        self.image = image
        # secret values masked as the log is written (not only afterwards: a killed runner leaves the log)
        self.redact_values = redaction_values(redact_values)
        self.project_dir = Path(project_dir).resolve()
        self.client = client if client is not None else docker_client()
        self.user = user or (f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None)
        self.network = network or os.environ.get("MLPRISM_DOCKER_NETWORK") or None
        self.shell = shell
        self._running: dict[str, Any] = {}
        self._lock = threading.Lock()
        import docker.errors

        try:
            self.image_id = self.client.images.get(image).id
        except docker.errors.ImageNotFound:
            raise DiagnosticError([Diagnostic(
                "MLP452", f"the image `{image}` does not exist in the Docker engine",
                hint="build it with `mlprism build SPEC` (or pass --image with one that exists)")])
        except docker.errors.APIError as exc:
            if exc.is_client_error():       # 400: not an image reference at all ("Bad Image!!")
                raise DiagnosticError([Diagnostic(
                    "MLP002", f"`{image}` is not a valid image reference: {exc.explanation or exc}",
                    hint="pass --image NAME:TAG (lowercase name), e.g. the NAME-pipeline:TAG `mlprism build` makes")])
            raise DiagnosticError([Diagnostic("MLP450", f"the Docker engine refused to inspect `{image}`: "
                                              f"{exc.explanation or exc}", hint=engine_hint())])

    # -- paths and environment -----------------------------------------------------------
    def container_path(self, host_path: Path) -> str:
        """The path inside the container of a path under the project directory."""
        path = Path(host_path).resolve()
        try:
            rel = path.relative_to(self.project_dir)
        except ValueError:
            raise DiagnosticError([Diagnostic(
                "MLP453", f"{path} is outside the project directory {self.project_dir}, which is all a "
                          "step container sees", hint="run steps from inside the project")])
        return CONTAINER_WORKDIR if rel == Path(".") else f"{CONTAINER_WORKDIR}/{rel.as_posix()}"

    @staticmethod
    def container_env(env: Mapping[str, str]) -> dict[str, str]:
        """The step's environment without what only describes the host; HOME is a writable /tmp."""
        out = {k: str(v) for k, v in env.items() if k not in _HOST_ONLY and "=" not in k and k}
        out["HOME"] = "/tmp"
        return dict(sorted(out.items()))

    # -- running -------------------------------------------------------------------------
    def run(self, command: str, *, cwd: Path, env: dict[str, str], log_path: Path,
            timeout: float | None) -> int:
        """Run `command` with the shell in a fresh container; return its exit status.

        Output (stdout and stderr, interleaved) is appended to `log_path`. After
        `timeout` seconds the container is killed and :data:`TIMEOUT_EXIT_CODE` returned.
        The container is always removed.
        """
        import docker.errors
        import requests.exceptions

        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {
            "entrypoint": [self.shell, "-c"],
            "command": [command],
            "working_dir": self.container_path(cwd),
            "environment": self.container_env(env),
            "volumes": {str(self.project_dir): {"bind": CONTAINER_WORKDIR, "mode": "rw"}},
            "labels": {"io.mlprism.role": "step", "io.mlprism.project": str(self.project_dir)},
            "detach": True,
            "stdin_open": False,
            "tty": False,
            # least privilege: a step needs no capability (even as the caller's uid 0, it owns the
            # mounted project's files), and nothing it runs may gain privileges (setuid binaries)
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
        }
        if self.user:
            kwargs["user"] = self.user
        if self.network:
            kwargs["network_mode"] = self.network
        try:
            container = self.client.containers.create(self.image_id, **kwargs)
        except docker.errors.APIError as exc:
            raise DiagnosticError([Diagnostic("MLP453", f"cannot create a container of `{self.image}`: "
                                              f"{exc.explanation or exc}")])
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._engine_gone(exc)
        pump: threading.Thread | None = None
        with self._lock:
            self._running[container.id] = container
        try:
            with open(log_path, "ab") as log:
                try:
                    container.start()
                except docker.errors.APIError as exc:
                    raise DiagnosticError([Diagnostic("MLP453", f"cannot start a container of `{self.image}`: "
                                                      f"{exc.explanation or exc}")])
                except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                    raise self._engine_gone(exc)
                pump = threading.Thread(target=_copy_logs, args=(container, log, self.redact_values), daemon=True)
                pump.start()
                try:
                    result = container.wait(timeout=timeout) if timeout else container.wait()
                    status = int(result.get("StatusCode", 1))
                except requests.exceptions.RequestException as exc:
                    # a read timeout (over a unix socket it is a ConnectionError), or the engine went away
                    if not self._engine_answers():
                        raise self._engine_gone(exc)
                    _kill(container)
                    status = TIMEOUT_EXIT_CODE
                pump.join(timeout=10)
                log.flush()
            return status
        finally:
            with self._lock:
                self._running.pop(container.id, None)
            _remove(container)

    def reap_orphans(self) -> int:
        """Kill and remove the step containers of this project that a killed runner left; return how
        many still ran. Only the holder of the project lock calls this, so none of them is another run's."""
        try:
            left = self.client.containers.list(all=True, filters={"label": [
                "io.mlprism.role=step", f"io.mlprism.project={self.project_dir}"]})
        except Exception:       # best effort: an engine that cannot list fails the first step instead
            return 0
        running = 0
        for container in left:
            if getattr(container, "status", "") == "running":
                running += 1
                _kill(container)
            _remove(container)
        return running

    def _engine_answers(self) -> bool:
        try:
            self.client.ping()
        except Exception:
            return False
        return True

    def _engine_gone(self, exc: BaseException) -> DiagnosticError:
        """The engine stopped answering in the middle of a step (stopped, restarted, its socket gone)."""
        return engine_gone(exc, f"the step ran in `{self.image}`", "rerun: the steps that finished are cached")

    def terminate_all(self) -> None:
        """Kill every running step container (the runner is stopping)."""
        with self._lock:
            containers = list(self._running.values())
        threads = [threading.Thread(target=_kill, args=(c,)) for c in containers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _copy_logs(container: Any, log: Any, redact_values: Sequence[str] = ()) -> None:
    pending = b""                  # with values to mask: a partial line waits for its end (or for 1 MiB)

    def write(data: bytes) -> None:
        if redact_values:
            data = mask(data.decode("utf-8", "surrogateescape"), redact_values).encode("utf-8", "surrogateescape")
        log.write(data)
        log.flush()

    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            if not redact_values:
                write(chunk)
                continue
            pending += chunk
            cut = pending.rfind(b"\n") + 1 if len(pending) < 1 << 20 else len(pending)
            if cut:
                write(pending[:cut])
                pending = pending[cut:]
    except Exception:     # the container went away (killed on timeout): the log ends here
        pass
    if pending:
        try:
            write(pending)
        except (OSError, ValueError):
            pass


def _kill(container: Any) -> None:
    try:
        container.kill()
        container.wait(timeout=30)
    except Exception:
        pass


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception:
        pass
