"""Model serving: a real HTTP server (FastAPI + uvicorn, the ``serve`` extra).

Endpoints:

- ``POST /predict``  body ``{"rows": [{"feature": value, ...}, ...]}`` (or rows as lists in
  feature order); answers ``{"predictions": [...], "probabilities": [[...]]?, "model": {...}}``.
  Rows are checked against the model's features (its signature, else the estimator's
  ``feature_names_in_``/``n_features_in_``): a bad request gets a 422 whose ``detail`` lists
  each problem with its location, in FastAPI's own error format. At most :data:`MAX_ROWS` rows
  a request, and a body of at most :data:`MAX_BODY_BYTES` (else 413, before it is read whole).
- ``GET /health``    ``{"status": "ok", "model": NAME, "version": N}``.
- ``GET /metadata``  the model's name, version, stages, hash, flavor, features and lineage.

A model comes from the registry (``NAME@production``) or from a directory written by
``mlprism models export`` (the model file + ``metadata.json``; the serving image runs
``mlprism serve --model-dir /app/model``). Loaders are chosen by the version's flavor:
``sklearn`` (joblib) and ``pickle`` are built in; :func:`register_loader` or the
``mlprism_model_loaders`` hook adds more.

Loading a joblib or pickle file runs code from it: serve only models your own pipelines registered.

With a request log, each predicted row is appended (with its prediction) to a CSV file
that ``mlprism monitor`` can read as the current data.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ROWS",
    "LoadedModel",
    "RequestLog",
    "bind_socket",
    "create_app",
    "load_model",
    "load_model_dir",
    "load_registered",
    "register_loader",
    "run_server",
]

MAX_ROWS = 10_000
#: A request body larger than this is refused (413) before it is read whole: a body is parsed in memory.
MAX_BODY_BYTES = 32 * 1024 * 1024
Loader = Callable[[Path], Any]


def _load_joblib(path: Path) -> Any:
    import joblib

    return joblib.load(path)


def _load_pickle(path: Path) -> Any:
    with path.open("rb") as fh:
        return pickle.load(fh)


_LOADERS: dict[str, Loader] = {"sklearn": _load_joblib, "joblib": _load_joblib, "pickle": _load_pickle}


def register_loader(flavor: str, loader: Loader) -> None:
    """Teach the server to load models of ``flavor``: ``loader(path) -> object with predict()``."""
    _LOADERS[flavor] = loader


def _loaders() -> dict[str, Loader]:
    loaders = dict(_LOADERS)
    try:
        from mlprism._internal.compiler import get_plugins

        for found in get_plugins().manager.hook.mlprism_model_loaders():
            loaders.update(found or {})
    except AttributeError:      # an mlprism without the hook
        pass
    return loaders


@dataclass
class LoadedModel:
    """A model ready to predict, with what the server needs to know about it."""

    name: str
    version: int | None
    estimator: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    features: list[str] | None = None          # names, in the order the estimator expects
    feature_types: dict[str, str] = field(default_factory=dict)   # name -> number|integer|string
    n_features: int | None = None

    def __post_init__(self) -> None:
        if self.features is None:
            names = getattr(self.estimator, "feature_names_in_", None)
            if names is not None:
                self.features = [str(n) for n in names]
        if self.features is not None:
            self.n_features = len(self.features)
        elif self.n_features is None:
            n = getattr(self.estimator, "n_features_in_", None)
            self.n_features = int(n) if n is not None else None

    @property
    def has_proba(self) -> bool:
        return callable(getattr(self.estimator, "predict_proba", None))

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    def predict(self, matrix: list[list[Any]]) -> dict[str, Any]:
        import numpy as np

        X: Any = np.asarray(matrix, dtype=float if all(t != "string" for t in self.feature_types.values())
                            else object)
        if getattr(self.estimator, "feature_names_in_", None) is not None:
            try:
                import pandas as pd

                X = pd.DataFrame(matrix, columns=self.features)
            except ImportError:
                pass
        out: dict[str, Any] = {"predictions": _jsonable(self.estimator.predict(X))}
        if self.has_proba:
            try:
                out["probabilities"] = _jsonable(self.estimator.predict_proba(X))
                classes = getattr(self.estimator, "classes_", None)
                if classes is not None:
                    out["classes"] = _jsonable(classes)
            except Exception:       # some estimators expose predict_proba but cannot use it
                pass
        return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _signature_features(signature: dict[str, Any] | None) -> tuple[list[str] | None, dict[str, str]]:
    if not signature or not isinstance(signature.get("features"), list):
        return None, {}
    names: list[str] = []
    types: dict[str, str] = {}
    for item in signature["features"]:
        if isinstance(item, dict):
            names.append(str(item["name"]))
            types[str(item["name"])] = str(item.get("type", "number"))
        else:
            names.append(str(item))
            types[str(item)] = "number"
    return names, types


def load_model(path: Path, flavor: str, *, name: str, version: int | None,
               metadata: dict[str, Any], signature: dict[str, Any] | None) -> LoadedModel:
    """Load an artifact with the loader of its flavor."""
    loaders = _loaders()
    if flavor not in loaders:
        raise DiagnosticError([Diagnostic(
            "MLP408", f"cannot serve `{name}`: no model loader for flavor `{flavor}`",
            hint=f"loaders: {', '.join(sorted(loaders))}; set `registry.flavor`, or add a loader with the "
                 "`mlprism_model_loaders` hook")])
    try:
        estimator = loaders[flavor](path)
    except Exception as exc:
        raise DiagnosticError([Diagnostic(
            "MLP408", f"cannot load `{name}` from {path} ({flavor}): {type(exc).__name__}: {exc}",
            hint="serve it with the same library versions it was trained with (environment.requirements)")])
    if not callable(getattr(estimator, "predict", None)):
        raise DiagnosticError([Diagnostic("MLP408", f"`{name}` loaded as {type(estimator).__name__}, "
                                          "which has no predict() method")])
    features, types = _signature_features(signature)
    return LoadedModel(name=name, version=version, estimator=estimator, metadata=metadata,
                       features=features, feature_types=types)


def load_registered(state_dir: Path, ref: str) -> LoadedModel:
    """Load ``ref`` (``NAME@production``…) from the project's registry."""
    from mlprism.runtime.registry import ModelRegistry

    mv = ModelRegistry(state_dir).resolve(ref)
    meta = {**mv.to_dict(), "ref": ref, "flavor": mv.flavor}
    return load_model(mv.path, mv.flavor, name=mv.name, version=mv.version, metadata=meta,
                      signature=mv.signature)


def load_model_dir(model_dir: Path) -> LoadedModel:
    """Load a directory written by ``mlprism models export`` (model file + ``metadata.json``)."""
    model_dir = Path(model_dir)
    meta_path = model_dir / "metadata.json"
    if not meta_path.is_file():
        raise DiagnosticError([Diagnostic("MLP407", f"{model_dir} holds no metadata.json",
                                          hint="write one with `mlprism models export NAME@STAGE --out DIR`")])
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DiagnosticError([Diagnostic("MLP408", f"{meta_path} is not valid JSON: {exc}")])
    artifact = model_dir / str(meta.get("artifact", ""))
    if not meta.get("artifact") or not artifact.exists():
        raise DiagnosticError([Diagnostic("MLP407", f"{model_dir}: the model file `{meta.get('artifact')}` "
                                          "named in metadata.json is missing")])
    from mlprism.runtime.registry import flavor_of

    return load_model(artifact, str(meta.get("flavor") or flavor_of(artifact.name)), name=str(meta.get("name", "model")),
                      version=meta.get("version"), metadata=meta, signature=meta.get("signature"))


class RequestLog:
    """Appends predicted rows to a CSV file (thread- and process-safe), for drift monitoring."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = [*columns, "prediction"]
        self._lock = threading.Lock()
        self._check()

    def _check(self) -> None:
        """Refuse, before the server starts, a log every prediction would then fail to write (a 500 each)."""
        problem = None
        if self.path.is_dir():
            problem = "it is a directory"
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problem = f"its directory cannot be created ({exc.strerror or exc})"
            else:
                target = self.path if self.path.exists() else self.path.parent
                if not os.access(target, os.W_OK):
                    problem = f"{'it' if target == self.path else 'its directory'} is not writable"
                else:           # os.access says yes to root everywhere (/proc, ...): open it as append() will
                    try:
                        if self.path.exists():
                            self.path.open("a", encoding="utf-8").close()
                        else:           # nothing is left behind before a prediction
                            self.path.open("x", encoding="utf-8").close()
                            self.path.unlink()
                    except OSError as exc:
                        problem = f"it cannot be opened for writing ({exc.strerror or exc})"
        if problem:
            raise DiagnosticError([Diagnostic("MLP002", f"cannot log requests to {self.path}: {problem}",
                                              hint="give --log-requests (or deploy.serve's log file) a CSV file path "
                                                   "in a writable directory")])

    def append(self, matrix: list[list[Any]], predictions: list[Any]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row, pred in zip(matrix, predictions, strict=True):
            writer.writerow([*row, pred])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8", newline="") as fh:
            try:
                import fcntl

                fcntl.flock(fh, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - not POSIX
                pass
            if fh.tell() == 0:
                csv.writer(fh, lineterminator="\n").writerow(self.columns)
            fh.write(buf.getvalue())
            fh.flush()


def _error(loc: list[Any], msg: str, typ: str, value: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"loc": ["body", *loc], "msg": msg, "type": typ}
    if value is not None:
        try:        # echo the input only if JSON can carry it back (not NaN or Infinity, anywhere in it)
            json.dumps(value, allow_nan=False)
            err["input"] = value
        except ValueError:
            err["input"] = repr(value)
    return err


def _check_value(value: Any, kind: str, loc: list[Any], errors: list[dict[str, Any]]) -> Any:
    if kind == "string":
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return value
        errors.append(_error(loc, "Input should be a string", "string_type", value))
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        if value is None:
            errors.append(_error(loc, "Input should be a number, not null", "missing"))
        else:
            errors.append(_error(loc, "Input should be a valid number", "float_type", value))
        return None
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(_error(loc, "Input should be a finite number", "finite_number", value))
        return None
    return value


def validate_rows(body: Any, model: LoadedModel) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """The rows as a matrix in feature order, and FastAPI-style errors (empty when valid)."""
    errors: list[dict[str, Any]] = []
    if not isinstance(body, dict) or "rows" not in body:
        return [], [_error([], 'Body should be an object with a "rows" list', "missing",
                           None if not isinstance(body, dict) else sorted(body))]
    rows = body["rows"]
    if not isinstance(rows, list) or not rows:
        return [], [_error(["rows"], "rows should be a non-empty list", "list_type")]
    if len(rows) > MAX_ROWS:
        return [], [_error(["rows"], f"at most {MAX_ROWS} rows per request", "too_long")]
    features = model.features
    matrix: list[list[Any]] = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            if features is None:
                errors.append(_error(["rows", i], "this model has no feature names: send each row as a list "
                                     f"of {model.n_features or 'its'} values", "list_type"))
                continue
            missing = [f for f in features if f not in row]
            unknown = sorted(k for k in row if k not in set(features))
            for f in missing:
                errors.append(_error(["rows", i, f], "Field required", "missing"))
            for k in unknown:
                errors.append(_error(["rows", i, k], "Unknown feature", "extra_forbidden"))
            values = [_check_value(row[f], model.feature_types.get(f, "number"), ["rows", i, f], errors)
                      for f in features if f in row]
        elif isinstance(row, list):
            if model.n_features is not None and len(row) != model.n_features:
                errors.append(_error(["rows", i], f"expected {model.n_features} values, got {len(row)}",
                                     "wrong_length"))
                continue
            names = features or [str(j) for j in range(len(row))]
            values = [_check_value(v, model.feature_types.get(n, "number"), ["rows", i, j], errors)
                      for j, (n, v) in enumerate(zip(names, row, strict=True))]
        else:
            errors.append(_error(["rows", i], "each row should be an object or a list", "model_type"))
            continue
        matrix.append(values)
        if len(errors) > 100:
            break
    return matrix, errors


def create_app(model: LoadedModel, *, request_log: Path | None = None) -> Any:
    """The ASGI application serving ``model``."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
        from starlette.concurrency import run_in_threadpool
    except ImportError as exc:
        raise DiagnosticError([Diagnostic("MLP412", f"serving needs FastAPI and uvicorn ({exc.name} is missing)",
                                          hint="pip install 'mlprism[serve]'")])
    log = RequestLog(request_log, model.features or [f"x{j}" for j in range(model.n_features or 0)]) \
        if request_log else None
    app = FastAPI(title=f"mlprism: {model.name}", version=str(model.version or "0"),
                  description=f"Predictions from the `{model.name}` model (version {model.version}).")
    example_row = ({f: 0.0 for f in model.features} if model.features else [0.0] * (model.n_features or 1))
    request_schema = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["rows"], "properties": {"rows": {
            "type": "array", "minItems": 1, "maxItems": MAX_ROWS,
            "items": {"oneOf": [{"type": "object"}, {"type": "array"}]}}},
        "example": {"rows": [example_row]}}}}}}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **model.info()}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        meta = {k: v for k, v in model.metadata.items() if k not in ("path",)}
        return {**meta, **model.info(), "features": model.features, "n_features": model.n_features,
                "predict_proba": model.has_proba}

    async def predict(request: Request) -> Any:
        raw = await _capped_body(request)
        if raw is None:
            return JSONResponse(status_code=413, content={"detail": [_error(
                [], f"Body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB; send at most {MAX_ROWS} rows "
                    "per request", "too_large")]})
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse(status_code=422, content={"detail": [_error([], "Body is not valid JSON",
                                                                             "json_invalid")]})
        except RecursionError:                    # json.loads on thousands of nested [ or {
            return JSONResponse(status_code=422, content={"detail": [_error(
                [], "Body is nested too deeply to be read", "json_invalid")]})
        matrix, errors = validate_rows(body, model)
        if errors:
            return JSONResponse(status_code=422, content={"detail": errors})
        try:
            result = await run_in_threadpool(model.predict, matrix)
        except Exception as exc:
            return JSONResponse(status_code=422, content={"detail": [_error(
                ["rows"], f"the model could not predict these rows: {type(exc).__name__}: {exc}", "value_error")]})
        if log is not None:
            await run_in_threadpool(log.append, matrix, result["predictions"])
        return {**result, "model": model.info()}

    # the annotations are strings (PEP 563) naming a lazily imported class: give FastAPI the class
    predict.__annotations__["request"] = Request
    app.post("/predict", openapi_extra=request_schema)(predict)
    return app


async def _capped_body(request: Any) -> bytes | None:
    """The request's body, or None once it is (or says it is) over MAX_BODY_BYTES: a huge body is refused
    without being held in memory (it was read and parsed whole, then refused for its rows)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (``port`` 0 picks a free one); raises a Diagnostic if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OverflowError:                         # a port outside 0-65535 (`--port 99999`)
        sock.close()
        raise DiagnosticError([Diagnostic("MLP002", f"cannot listen on {host}:{port}: a port is 0 to 65535",
                                          hint="choose a port from 1 to 65535 (0 picks a free one)")]) from None
    except OSError as exc:
        sock.close()
        raise DiagnosticError([Diagnostic("MLP002", f"cannot listen on {host}:{port}: {exc.strerror}",
                                          hint="choose another --port (0 picks a free one)")])
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_server(model: LoadedModel, *, host: str = "127.0.0.1", port: int = 8080,
               request_log: Path | None = None, log_level: str = "warning") -> None:
    """Serve until interrupted (SIGINT/SIGTERM shut down gracefully)."""
    try:
        import uvicorn
    except ImportError:
        raise DiagnosticError([Diagnostic("MLP412", "serving needs uvicorn", hint="pip install 'mlprism[serve]'")])
    app = create_app(model, request_log=request_log)
    sock = bind_socket(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {model.name} v{model.version} on http://{shown}:{actual} "
          f"(POST /predict, GET /health, GET /metadata)" + (f"; logging requests to {request_log}" if request_log else ""),
          flush=True)
    config = uvicorn.Config(app, log_level=os.environ.get("MLPRISM_SERVE_LOG_LEVEL", log_level),
                            access_log=log_level in ("info", "debug"), timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
