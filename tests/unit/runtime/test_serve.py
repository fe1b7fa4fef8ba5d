"""The model server over real HTTP on 127.0.0.1 (uvicorn in a thread, httpx as the client)."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from mlprism.diagnostics import DiagnosticError
from mlprism.runtime.registry import ModelRegistry
from mlprism.runtime.serve import bind_socket, create_app, load_model_dir, load_registered
from sklearn.linear_model import LogisticRegression

FEATURES = ["size", "weight", "age"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    tmp = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    path = tmp / "models" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(model, path)
    path.with_name("model.joblib.signature.json").write_text(json.dumps({"features": FEATURES}))
    reg = ModelRegistry(tmp / ".mlprism")
    reg.register("toy", path, run_id="run-1", lineage={"metrics": {"accuracy": 0.97}, "params": {"C": 1.0},
                                                        "git_commit": "abc123", "flavor": "sklearn"})
    reg.promote("toy", 1, "production", who="tester")
    return reg


class Server:
    def __init__(self, app, request_log: Path | None = None) -> None:
        import uvicorn

        self.sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def served(registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("log") / "requests.csv"
    model = load_registered(registry.state_dir, "toy@production")
    with Server(create_app(model, request_log=log)) as srv:
        yield srv.url, log


def test_health_and_metadata(served: tuple[str, Path]) -> None:
    url, _ = served
    r = httpx.get(f"{url}/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "name": "toy", "version": 1}
    meta = httpx.get(f"{url}/metadata").json()
    assert meta["version"] == 1 and meta["features"] == FEATURES and meta["stages"] == ["production"]
    assert meta["lineage"]["git_commit"] == "abc123" and meta["lineage"]["metrics"]["accuracy"] == 0.97
    assert meta["run_id"] == "run-1" and meta["flavor"] == "sklearn" and meta["predict_proba"] is True
    assert "path" not in meta


def test_predict_named_and_positional_rows_and_log(served: tuple[str, Path]) -> None:
    url, log = served
    rows = [{"size": 2.0, "weight": 1.0, "age": 0.0}, {"size": -2.0, "weight": -1.0, "age": 5}]
    r = httpx.post(f"{url}/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == [1, 0] and body["model"] == {"name": "toy", "version": 1}
    assert body["classes"] == [0, 1] and len(body["probabilities"]) == 2
    assert body["probabilities"][0][1] > 0.9
    r = httpx.post(f"{url}/predict", json={"rows": [[2.0, 1.0, 0.0]]})
    assert r.status_code == 200 and r.json()["predictions"] == [1]
    with log.open() as fh:
        logged = list(csv.reader(fh))
    assert logged[0] == [*FEATURES, "prediction"]
    assert logged[1:] == [["2.0", "1.0", "0.0", "1"], ["-2.0", "-1.0", "5", "0"], ["2.0", "1.0", "0.0", "1"]]


@pytest.mark.parametrize(("payload", "loc", "kind"), [
    ({"rows": [{"size": 1.0, "weight": 1.0}]}, ["body", "rows", 0, "age"], "missing"),
    ({"rows": [{"size": 1.0, "weight": 1.0, "age": 1.0, "colour": 2}]}, ["body", "rows", 0, "colour"], "extra_forbidden"),
    ({"rows": [{"size": "big", "weight": 1.0, "age": 1.0}]}, ["body", "rows", 0, "size"], "float_type"),
    ({"rows": [{"size": None, "weight": 1.0, "age": 1.0}]}, ["body", "rows", 0, "size"], "missing"),
    ({"rows": [[1.0, 2.0]]}, ["body", "rows", 0], "wrong_length"),
    ({"rows": []}, ["body", "rows"], "list_type"),
    ({"data": []}, ["body"], "missing"),
    ({"rows": ["x"]}, ["body", "rows", 0], "model_type"),
])
def test_bad_input_is_a_clear_422(served: tuple[str, Path], payload: dict, loc: list, kind: str) -> None:
    url, log = served
    before = log.read_text() if log.exists() else ""
    r = httpx.post(f"{url}/predict", json=payload)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["type"] == kind and detail[0]["msg"]
    assert (log.read_text() if log.exists() else "") == before     # nothing logged


@pytest.mark.parametrize(("literal", "kind"), [
    ("NaN", "finite_number"), ("Infinity", "finite_number"), ("-Infinity", "finite_number"),
    ("[NaN]", "float_type"), ('{"a": Infinity}', "float_type"),
])
def test_non_finite_number_is_a_clear_422(served: tuple[str, Path], literal: str, kind: str) -> None:
    # Python's json (and many clients) write these literals; the answer must be a 422, not a 500
    url, _ = served
    body = '{"rows": [{"size": ' + literal + ', "weight": 1.0, "age": 1.0}]}'
    r = httpx.post(f"{url}/predict", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == ["body", "rows", 0, "size"] and detail[0]["type"] == kind


def test_invalid_json_is_422(served: tuple[str, Path]) -> None:
    url, _ = served
    r = httpx.post(f"{url}/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"rows": [' + '{"a": ' * 5000 + "1" + "}" * 5000 + "]}"])
def test_too_deeply_nested_json_is_422_not_500(served: tuple[str, Path], body: str) -> None:
    # json.loads raises RecursionError (not a ValueError) on deep nesting: that was a 500 and a traceback
    url, _ = served
    r = httpx.post(f"{url}/predict", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "json_invalid" and "nested" in r.json()["detail"][0]["msg"]


def test_a_body_over_the_limit_is_413_before_it_is_read(served: tuple[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared too large (Content-Length), or streamed past the limit without one: 413 either way."""
    from mlprism.runtime import serve

    monkeypatch.setattr(serve, "MAX_BODY_BYTES", 1000)       # read when a request comes (same process)
    url, _ = served
    row = '{"size": 1.0, "weight": 1.0, "age": 1.0}'
    big = ('{"rows": [' + ", ".join([row] * 50) + "]}").encode()
    r = httpx.post(f"{url}/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["type"] == "too_large", r.text

    def chunks() -> Iterator[bytes]:                          # no Content-Length: chunked transfer
        yield big[:600]
        yield big[600:]

    r = httpx.post(f"{url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    r = httpx.post(f"{url}/predict", content=('{"rows": [' + row + "]}").encode(),
                   headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_a_request_log_that_cannot_be_written_fails_at_start(registry: ModelRegistry, tmp_path: Path) -> None:
    # was: the server started, then every prediction was a 500 (IsADirectoryError) with a traceback
    model = load_registered(registry.state_dir, "toy@production")
    with pytest.raises(DiagnosticError) as exc:
        create_app(model, request_log=tmp_path)                     # a directory
    assert exc.value.diagnostics[0].code == "MLP002" and exc.value.diagnostics[0].hint

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DiagnosticError):
        create_app(model, request_log=blocker / "requests.csv")     # its parent is a file
    create_app(model, request_log=tmp_path / "new" / "requests.csv")
    assert not (tmp_path / "new" / "requests.csv").exists()        # nothing written before a prediction


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_request_log_no_file_can_be_created_in_fails_at_start(registry: ModelRegistry) -> None:
    # /proc passes os.access(W_OK) for root, yet no file can be created there: that was a 500 on every /predict
    model = load_registered(registry.state_dir, "toy@production")
    with pytest.raises(DiagnosticError) as exc:
        create_app(model, request_log=Path("/proc/mlprism-requests.csv"))
    assert exc.value.diagnostics[0].code == "MLP002" and "cannot log requests" in exc.value.diagnostics[0].message


def test_exported_model_dir_serves_the_same(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.export("toy@production", tmp_path / "model")
    model = load_model_dir(tmp_path / "model")
    assert (model.name, model.version, model.features) == ("toy", 1, FEATURES)
    with Server(create_app(model)) as srv:
        r = httpx.post(f"{srv.url}/predict", json={"rows": [{"size": 2, "weight": 1, "age": 0}]})
        assert r.json()["predictions"] == [1]
        assert httpx.get(f"{srv.url}/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]


def test_load_errors_are_diagnostics(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as exc:
        load_model_dir(tmp_path)
    assert exc.value.diagnostics[0].code == "MLP407"
    with pytest.raises(DiagnosticError) as exc:
        load_registered(registry.state_dir, "toy@staging")
    assert exc.value.diagnostics[0].code == "MLP407"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.joblib").write_bytes(b"not a joblib file")
    (bad / "metadata.json").write_text(json.dumps({"name": "x", "version": 1, "artifact": "model.joblib"}))
    with pytest.raises(DiagnosticError) as exc:
        load_model_dir(bad)
    assert exc.value.diagnostics[0].code == "MLP408"
    (bad / "metadata.json").write_text(json.dumps({"name": "x", "artifact": "model.joblib", "flavor": "onnx"}))
    with pytest.raises(DiagnosticError) as exc:
        load_model_dir(bad)
    assert "no model loader for flavor `onnx`" in exc.value.diagnostics[0].message


def test_port_in_use_is_a_diagnostic() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(DiagnosticError) as exc:
            bind_socket("127.0.0.1", sock.getsockname()[1])
        assert exc.value.diagnostics[0].code == "MLP002"
    finally:
        sock.close()


@pytest.mark.parametrize("port", [65536, 99999, -1])
def test_port_out_of_range_is_a_diagnostic(port: int) -> None:
    # was: error[MLP001]: internal error: OverflowError: bind(): port must be 0-65535 (exit 3)
    with pytest.raises(DiagnosticError) as exc:
        bind_socket("127.0.0.1", port)
    assert exc.value.diagnostics[0].code == "MLP002" and "65535" in exc.value.diagnostics[0].message


def test_cli_serves_an_exported_model_dir_as_a_real_process(registry: ModelRegistry, tmp_path: Path) -> None:
    """What the serving image runs: `mlprism serve --model-dir /app/model`."""
    import signal
    import subprocess
    import sys

    registry.export("toy@production", tmp_path / "model")
    exe = Path(sys.executable).parent / "mlprism"
    proc = subprocess.Popen([str(exe), "serve", "--model-dir", str(tmp_path / "model"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**__import__("os").environ, "MLPRISM_REQUEST_LOG": str(tmp_path / "req.csv")})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving toy v1 on http://127.0.0.1:" in line, line
        url = line.split(" on ", 1)[1].split()[0]
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        assert httpx.post(f"{url}/predict", json={"rows": [[2, 1, 0]]}).json()["predictions"] == [1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert (tmp_path / "req.csv").read_text().splitlines()[1] == "2,1,0,1"


def test_cli_serve_errors(cli, tmp_path: Path) -> None:
    r = cli("serve", "--model-dir", str(tmp_path))
    assert r.code == 2 and "MLP407" in r.err and "metadata.json" in r.err
    r = cli("serve", cwd=tmp_path)
    assert r.code == 2 and "no pipeline.yaml here" in r.err
