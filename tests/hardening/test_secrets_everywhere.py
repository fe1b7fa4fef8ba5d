"""Secrets: each declared secret gets a random value; it must appear nowhere mlprism writes or prints.

The project (``secrets_project/``) declares a secret in every place a spec can: ``environment.secrets``
(four, used by the steps: one holds another's value, as a URL with a token does, and one has several
lines, like a PEM key), ``targets.docker.build_secrets``, the github-actions target's
``kubeconfig_secret`` / ``registry_username_secret`` / ``registry_password_secret`` (and the
kubernetes target's ``secret_name`` and pull secrets, which name Secret objects). Its steps use every
step secret: print it to stdout and stderr (whole, and split across two writes), take it as a
command-line argument and through an environment variable, fail with it in the error message and
get retried, and compute metrics while it is set; they never write it into a declared output.

With each secret set to a unique random value in the environment, the test compiles every installed
target (``--target all``, each target alone, and ``--target ir``), runs the pipeline as a real
process (a sweep that registers a model, and a run whose step fails after its retries), runs the
inspection commands (``validate``, ``graph``, ``status``, ``explain``, ``fingerprint``, ``runs
list/show/compare``, ``logs``, ``models promote/history/list/show/export``) and the drift monitor
(which retrains, running a step again), and checks that a secret's value in an override or a
``${oc.env:…}`` is refused (MLP204) without printing it. Then it scans every file under the test's
directory — the project with ``.mlprism/`` (logs, cache objects and step records, the IR cache,
statcache, drift reports), ``mlprism.lock``, generated files, exports, HOME and TMPDIR — as raw bytes,
every row of every table of every SQLite database, and every command's stdout and stderr, for the
value and its encodings (the random part alone, JSON-escaped, URL-encoded, Python repr, base64 at all
three alignments, hex, UTF-16).

With a Docker engine (CI), two more: ``mlprism build`` with the build secret set (the value is absent
from the build output, ``docker history``, ``docker image inspect`` and ``docker save``) followed by
``mlprism run --in-docker``; and a step container's log, masked as it is written.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import gzip
import json
import os
import re
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Result, require, run_cli, run_proc

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).parent / "secrets_project"
SPEC = "pipeline.yaml"
STEP_SECRETS = ("WAREHOUSE_TOKEN", "API_KEY", "DB_PASSWORD", "SERVICE_KEY")   # environment.secrets
TARGET_SECRETS = ("PIP_INDEX_TOKEN", "DEPLOY_KUBECONFIG", "REGISTRY_USER", "REGISTRY_PASSWORD")
MODEL = "secrets-model"
_REMOVAL = re.compile(r"on the command line: `(~[^`]+)`")


# -- the values and what to look for ------------------------------------------------------------
def make_values() -> dict[str, str]:
    """A unique random value per secret; each holds one or more random parts of 24 hex digits."""
    def rnd() -> str:
        return secrets.token_hex(12)

    values = {name: f"mlp-{name.lower()}+/{rnd()}" for name in (*STEP_SECRETS, *TARGET_SECRETS)}
    # a quote and a backslash: its JSON, repr and URL forms all differ from the raw text
    values["DB_PASSWORD"] = f'p"w\\d=+/{rnd()}'
    # several lines, like a PEM key or a kubeconfig: step output is masked line by line
    values["SERVICE_KEY"] = f"-----BEGIN MLPRISM TEST KEY-----\n{rnd()}\n{rnd()}==\n-----END MLPRISM TEST KEY-----"
    # one secret holding another (a URL with a token in it): masking the shorter first would show the rest
    values["WAREHOUSE_TOKEN"] = f"https://svc:{values['API_KEY']}@warehouse.example/{rnd()}"
    return values


_RANDOM = re.compile(r"[0-9a-f]{24}")


def forms(value: str) -> dict[str, bytes]:
    """The byte strings that would betray `value`: itself, its random parts, and their encodings."""
    raw = value.encode()
    out = {
        "raw": raw,
        "JSON-escaped": json.dumps(value)[1:-1].encode(),
        "URL-encoded": urllib.parse.quote(value, safe="").encode(),
        "URL-encoded (form)": urllib.parse.quote_plus(value).encode(),
        "Python repr": repr(value)[1:-1].encode(),
    }
    for i, core in enumerate(_RANDOM.findall(value)):
        out[f"random part {i}"] = core.encode()
        out[f"random part {i}, first half"] = core[:12].encode()
        out[f"random part {i}, second half"] = core[12:].encode()
        out[f"random part {i}, hex"] = core.encode().hex().encode()
        out[f"random part {i}, UTF-16"] = core.encode("utf-16-le")
    for shift in range(3):           # base64 of the value at any offset: skip the groups it shares with neighbours
        for label, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            text = encode(b"\0" * shift + raw)
            out[f"{label} (offset {shift})"] = text[4 if shift else 0:-4]
    return out


@dataclass
class Leak:
    where: str
    secret: str
    form: str

    def __str__(self) -> str:
        return f"{self.where}: {self.secret} ({self.form})"


def find(data: bytes, values: dict[str, str], where: str) -> list[Leak]:
    return [Leak(where, name, label) for name, value in values.items()
            for label, needle in forms(value).items() if needle in data]


def decoded(path: Path, data: bytes) -> Iterator[tuple[str, bytes]]:
    """The file's bytes, and its decompressed content when it is gzip-compressed."""
    yield str(path), data
    if data[:2] == b"\x1f\x8b":
        try:
            yield f"{path} (gunzipped)", gzip.decompress(data)
        except OSError:
            pass


def scan_files(root: Path, values: dict[str, str]) -> tuple[list[Leak], list[Path]]:
    leaks: list[Leak] = []
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    for path in files:
        for where, data in decoded(path.relative_to(root), path.read_bytes()):
            leaks += find(data, values, where)
    return leaks, files


def sqlite_files(files: list[Path]) -> list[Path]:
    out = []
    for p in files:
        with open(p, "rb") as f:
            if f.read(16) == b"SQLite format 3\x00":
                out.append(p)
    return out


def scan_sqlite(db: Path, values: dict[str, str], root: Path) -> tuple[list[Leak], dict[str, int]]:
    """Every cell of every table (read through SQLite, so WAL content is included)."""
    leaks: list[Leak] = []
    rows: dict[str, int] = {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cur = conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cur.description]
            rows[table] = 0
            for n, row in enumerate(cur):
                rows[table] += 1
                for column, cell in zip(columns, row, strict=True):
                    if cell is None:
                        continue
                    data = cell if isinstance(cell, bytes) else str(cell).encode()
                    leaks += find(data, values, f"{db.relative_to(root)} {table}[{n}].{column}")
    finally:
        conn.close()
    return leaks, rows


# -- the world: everything the test runs, once --------------------------------------------------
@dataclass
class World:
    root: Path
    project: Path
    values: dict[str, str]
    results: dict[str, Result] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)


def removals(res: Result) -> list[str]:
    """The `~key` overrides that drop what a target cannot express (from the hints of its MLP302 errors)."""
    return sorted(set(_REMOVAL.findall(res.err))) if res.code == 2 and "MLP302" in res.err else []


def installed_targets() -> list[str]:
    res = run_cli("plugins", "--json")
    assert res.code == 0, res.err
    return sorted({t for plugin in json.loads(res.out)["plugins"] for t in plugin["targets"]})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("secrets")
    project = root / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".mlprism", "__pycache__", "mlprism.lock",
                                                                     "state", "models", "metrics", "clean.csv"))
    for sub in ("home", "tmp", "gen", "reports", "export"):
        (root / sub).mkdir()
    w = World(root, project, make_values())
    mp = pytest.MonkeyPatch()
    for name, value in w.values.items():
        mp.setenv(name, value)
    mp.setenv("HOME", str(root / "home"))
    mp.setenv("XDG_CACHE_HOME", str(root / "home" / ".cache"))
    mp.setenv("MLPRISM_RETRY_BACKOFF", "0.05")
    mp.setenv("MLPRISM_USER", "secrets-test")
    proc_env = {"TMPDIR": str(root / "tmp")}
    try:
        r = w.results

        def cli(label: str, *args: str) -> Result:
            r[label] = run_cli(*args, cwd=project)
            return r[label]

        def proc(label: str, *args: str) -> Result:
            r[label] = run_proc(*args, cwd=project, env=proc_env, timeout=180)
            return r[label]

        # compile: every installed target alone (without what it cannot express), all at once, and the IR
        w.targets = installed_targets()
        union: set[str] = set()
        cli("validate", "validate", SPEC, "--json")
        cli("graph", "graph", SPEC)
        for target in w.targets:
            out = str(root / "gen" / target)
            drop = removals(cli(f"compile {target} (full spec)", "compile", SPEC, "--target", target, "--out", out))
            if drop:
                union.update(drop)
                cli(f"compile {target}", "compile", SPEC, "--target", target, "--out", out, *drop)
            else:
                r[f"compile {target}"] = r[f"compile {target} (full spec)"]
        cli("compile ir", "compile", SPEC, "--target", "ir", "--out", str(root / "gen" / "ir"))
        proc("compile all", "compile", SPEC, "--target", "all", "--out", str(root / "gen" / "all"), *sorted(union))

        # run: a step that fails on every attempt (the secret in its error), then the sweep that registers
        proc("run failing", "run", SPEC, "--no-sweep", "--json", "params.flaky_failures=3")
        shutil.rmtree(project / "state", ignore_errors=True)
        proc("run sweep", "run", SPEC)
        # new live data that drifted: the monitor retrains, and `fetch` (which reads it) runs again
        live = project / "data" / "live.csv"
        live.write_text(live.read_text() + "".join(f"{5 + i / 10:.2f},1\n" for i in range(20)))
        proc("monitor", "monitor", SPEC, "--json", "--report-dir", str(root / "reports"))

        # a secret's value where it would be written out: refused, and not echoed
        proc("override refused", "run", SPEC, "--no-sweep", f"+params.note={w.values['API_KEY']}")
        text = (project / SPEC).read_text().replace('"$WAREHOUSE_TOKEN"', "${oc.env:WAREHOUSE_TOKEN}")
        (project / "oc-env.yaml").write_text(text)
        cli("oc.env refused", "compile", "oc-env.yaml", "--target", "all", "--out", str(root / "gen" / "oc-env"))

        # inspection
        cli("status", "status", SPEC, "--json")
        cli("explain", "explain", SPEC, "fetch", "--json")
        cli("fingerprint", "fingerprint", SPEC, "train", "--json")
        listed = cli("runs list", "runs", "list", "--json")
        run_ids = [run["id"] for run in json.loads(listed.out)["runs"]] if listed.code == 0 else []
        for rid in run_ids:
            cli(f"runs show {rid}", "runs", "show", rid, "--json")
            cli(f"logs {rid}", "logs", rid)
            cli(f"logs {rid} --json", "logs", rid, "--json")
        sweeps = [rid for rid in run_ids if json.loads(r[f"runs show {rid}"].out)["run"]["kind"] == "sweep"]
        for rid in sweeps:
            cli(f"runs compare {rid}", "runs", "compare", rid, "--json")
            for child in json.loads(r[f"runs show {rid}"].out)["run"]["info"]["runs"]:
                cli(f"runs show {child}", "runs", "show", child, "--json")
                cli(f"logs {child}", "logs", child)
        assert sweeps, "the sweep is not in the ledger"
        cli("models promote", "models", "promote", MODEL, "latest", "--stage", "production", "--json",
            "--reason", "approved by the secrets test")
        cli("models history", "models", "history", MODEL, "--json")
        cli("models list", "models", "list", "--json")
        cli("models show", "models", "show", f"{MODEL}@production", "--json")
        cli("models export", "models", "export", f"{MODEL}@latest", "--out", str(root / "export"), "--json")
        yield w
    finally:
        mp.undo()


# -- the checks ---------------------------------------------------------------------------------
def test_the_scan_finds_every_encoding(tmp_path: Path) -> None:
    """Positive control: each form, planted in a file or a SQLite cell, is found."""
    values = make_values()
    value = values["DB_PASSWORD"]
    for label, needle in forms(value).items():
        (tmp_path / "f.bin").write_bytes(b"x" * 7 + needle + b"y" * 5)
        leaks, _ = scan_files(tmp_path, values)
        assert any(leak.form == label for leak in leaks), label
    b64 = base64.b64encode(b"ab" + value.encode() + b"c")
    (tmp_path / "f.bin").write_bytes(gzip.compress(b"header " + b64))
    assert scan_files(tmp_path, values)[0]
    (tmp_path / "f.bin").unlink()
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (a TEXT, b BLOB)")
        conn.execute("INSERT INTO t VALUES (?, ?)", ("ok", json.dumps({"v": value}).encode()))
    conn.close()
    leaks, rows = scan_sqlite(db, values, tmp_path)
    assert rows == {"t": 1} and {leak.form for leak in leaks} >= {"JSON-escaped", "random part 0"}


def test_every_secret_was_set_declared_and_used(world: World) -> None:
    """The run really used the secrets (a step fails without them) and every target saw their names."""
    r = world.results
    for label in ("validate", "graph", "compile ir", "compile all", "status", "explain", "fingerprint", "runs list",
                  "models promote", "models history", "models list", "models show", "models export",
                  *(f"compile {t}" for t in world.targets)):
        assert r[label].code == 0, f"{label}: {r[label].err}"
    sweep = r["run sweep"]
    assert sweep.code == 0, sweep.out + sweep.err
    assert "(2 attempts)" in sweep.out and "registered" in sweep.out, sweep.out
    assert "warehouse refused token *** (password ***)" in sweep.out
    assert sweep.out.count("split WAREHOUSE_TOKEN=*** (end)") >= 3
    failing = json.loads(r["run failing"].out)
    assert r["run failing"].code == 1 and failing["steps"]["fetch"]["status"] == "failed"
    assert failing["steps"]["fetch"]["attempts"] == 3
    monitor = json.loads(r["monitor"].out)
    assert r["monitor"].code == 1 and monitor["drifted"] and monitor["retrain"]["status"] == "succeeded"
    # `fetch` ran again, with the secrets, in one leg of the retrain's sweep (the legs run side by side: the
    # other one, maybe the selected one, takes its outputs from the cache)
    assert monitor["retrain"]["steps"]["fetch"] in ("succeeded", "cached"), monitor["retrain"]
    with contextlib.closing(sqlite3.connect(world.project / ".mlprism" / "ledger.db")) as conn:
        ran = conn.execute("SELECT count(*) FROM step_runs JOIN runs ON runs.id = step_runs.run_id "
                           "WHERE runs.parent = ? AND step_runs.step = 'fetch' AND step_runs.status = 'succeeded'",
                           (monitor["retrain"]["run_id"],)).fetchone()[0]
    assert ran == 1, f"fetch ran {ran} times in the retrain {monitor['retrain']}"
    logs = list((world.project / ".mlprism" / "runs").rglob("*.log"))
    assert {p.stem for p in logs} >= {"fetch", "train", "evaluate"}
    assert all("***" in p.read_text() for p in logs if p.stem in ("fetch", "train", "evaluate")), logs
    shown = [json.loads(r[k].out) for k in r if k.startswith("runs show")]
    assert any((s.get("metrics") or {}).get("evaluate", {}).get("accuracy") for s in shown), "no metrics recorded"
    # names reach the generated files; values never do (checked below)
    gen = world.root / "gen"
    assert list((gen / "github-actions").rglob("*.yml")), "github-actions wrote nothing"
    text = {t: "\n".join(p.read_text() for p in (gen / t).rglob("*") if p.is_file()) for t in world.targets}
    assert "secrets.WAREHOUSE_TOKEN" in text["github-actions"] and "secrets.REGISTRY_PASSWORD" in text["github-actions"]
    assert "secrets.DEPLOY_KUBECONFIG" in text["github-actions"]
    assert "PIP_INDEX_TOKEN" in text["docker"] and "WAREHOUSE_TOKEN" in text["docker"]
    assert "secretKeyRef" in text["kubernetes"] and "secrets-everywhere-creds" in text["kubernetes"]


def test_a_secret_value_in_an_override_or_oc_env_is_refused(world: World) -> None:
    r = world.results
    refused = r["override refused"]
    assert refused.code == 2 and "MLP204" in refused.err and "[secret:API_KEY]" in refused.err, refused.err
    oc_env = r["oc.env refused"]
    assert oc_env.code == 2 and "MLP204" in oc_env.err and "steps.fetch.run" in oc_env.err, oc_env.err
    assert not (world.root / "gen" / "oc-env").exists(), "a refused compile wrote files"


def test_no_secret_value_in_any_file(world: World) -> None:
    leaks, files = scan_files(world.root, world.values)
    names = {p.relative_to(world.root).as_posix() for p in files}
    # the scan covered what a run writes
    for expected in ("project/mlprism.lock", "project/.mlprism/ledger.db", "project/.mlprism/registry.db",
                     "project/.mlprism/statcache.json"):
        assert expected in names, sorted(names)
    # the outputs the cache stores: this world's are small, kept inside their step records (base64,
    # a form the scan looks for); a bigger one would be an object under cache/objects/
    records = [world.root / n for n in names if n.startswith("project/.mlprism/cache/steps/")]
    assert records and any('"inline":' in p.read_text() for p in records)
    assert any(n.startswith("project/.mlprism/ir/") for n in names)
    assert any(n.startswith("reports/") for n in names) and any(n.startswith("export/") for n in names)
    assert not leaks, "secret values found in files:\n" + "\n".join(map(str, leaks[:40]))


def test_no_secret_value_in_any_database_row(world: World) -> None:
    _, files = scan_files(world.root, {})
    dbs = sqlite_files(files)
    assert {p.name for p in dbs} >= {"ledger.db", "registry.db"}, dbs
    leaks: list[Leak] = []
    total = 0
    for db in dbs:
        found, rows = scan_sqlite(db, world.values, world.root)
        leaks += found
        total += sum(rows.values())
    assert total > 20, "the ledger and the registry are nearly empty"
    assert not leaks, "secret values found in database rows:\n" + "\n".join(map(str, leaks[:40]))


def test_no_secret_value_in_any_command_output(world: World) -> None:
    leaks: list[Leak] = []
    for label, res in world.results.items():
        leaks += find(res.out.encode(), world.values, f"`{label}` stdout")
        leaks += find(res.err.encode(), world.values, f"`{label}` stderr")
    assert len(world.results) > 20
    assert not leaks, "secret values found in command output:\n" + "\n".join(map(str, leaks[:40]))


# -- docker: a build secret reaches the build, never the image ---------------------------------
BASE_IMAGE = os.environ.get("MLPRISM_TEST_BASE_IMAGE", "local/python-base:bookworm")
IMAGE = "registry.example.com/acme/secrets-everywhere-pipeline:secrets-test"


def _docker_cli() -> str:
    """A BuildKit-capable docker CLI talking to a real engine that has the base image, or skip."""
    from mlprism._internal.cli.docker import _buildkit_cli

    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        require("docker", "no Docker engine: DOCKER_HOST is unset and /var/run/docker.sock does not exist "
                          "(`source .ci/docker-engine.sh && start_docker_engine` starts one)")
    cli = _buildkit_cli()
    if cli is None:
        require("docker", "no docker CLI here builds with BuildKit (buildx, or a classic CLI before 23)")
    assert cli is not None
    probe = subprocess.run([cli, "image", "inspect", BASE_IMAGE], capture_output=True, timeout=60)
    if probe.returncode != 0:
        require("docker", f"the engine does not answer or lacks the base image {BASE_IMAGE}: "
                          f"{probe.stderr.decode(errors='replace')[-300:]}")
    return cli


def _stream_find(cmd: list[str], needles: dict[str, bytes]) -> tuple[set[str], int]:
    """The labels of the needles found in a command's (large) output, read in chunks; and its size."""
    overlap = max(len(n) for n in needles.values())
    found: set[str] = set()
    size = 0
    tail = b""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 24):
            size += len(chunk)
            window = tail + chunk
            found.update(label for label, n in needles.items() if n in window)
            tail = window[-overlap:]
    assert proc.returncode == 0, cmd
    return found, size


@pytest.mark.docker
def test_a_build_secret_never_reaches_the_image_nor_steps_in_containers(tmp_path_factory: pytest.TempPathFactory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _docker_cli()
    values = make_values()
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    root = tmp_path_factory.mktemp("secrets-docker")
    project = root / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".mlprism", "__pycache__"))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "docker-e2e-build.lock", "w") as lock:      # one build at a time, one wheel per session
        fcntl.flock(lock, fcntl.LOCK_EX)
        from mlprism._internal.cli.docker import build_wheel

        wheels = sorted((shared / "docker-e2e-wheel").glob("mlprism-*.whl"))
        wheel = wheels[0] if wheels else build_wheel(shared / "docker-e2e-wheel")
        build = run_proc("build", SPEC, "--image", "pipeline", "--base-image", BASE_IMAGE, "--tag", "secrets-test",
                         "--wheel", str(wheel), cwd=project, env={"MLPRISM_DOCKER_CLI": cli}, timeout=1200)
    try:
        assert build.code == 0, build.err[-4000:]
        assert "--mount=type=secret,id=PIP_INDEX_TOKEN" in build.err, "the build did not mount the secret"
        value = values["PIP_INDEX_TOKEN"]
        leaks = find(build.out.encode(), values, "build stdout") + find(build.err.encode(), values, "build stderr")
        for what in (["history", "--no-trunc", IMAGE], ["image", "inspect", IMAGE]):
            out = subprocess.run([cli, *what], capture_output=True, timeout=120, check=True).stdout
            leaks += find(out, values, f"docker {what[0]}")
        # the saved image (every layer, its config and manifest): the forms a file or a layer could hold
        needles = {k: v for k, v in forms(value).items() if k == "raw" or k.startswith(("random part 0", "base64 "))}
        found, size = _stream_find([cli, "save", IMAGE], needles)
        assert size > 10_000_000, "docker save gave almost nothing"
        leaks += [Leak("docker save", "PIP_INDEX_TOKEN", label) for label in sorted(found)]
        # the steps in containers of that image: same redaction, nothing written
        ran = run_proc("run", SPEC, "--in-docker", "--image", IMAGE, "--no-sweep", cwd=project, timeout=600)
        assert ran.code == 0 and "(2 attempts)" in ran.out and "token *** (password ***)" in ran.out, ran.out + ran.err
        leaks += find(ran.out.encode(), values, "run --in-docker stdout")
        leaks += find(ran.err.encode(), values, "run --in-docker stderr")
        leaks += scan_files(project, values)[0]
        assert not leaks, "a secret leaked:\n" + "\n".join(map(str, leaks))
    finally:
        subprocess.run([cli, "rmi", "--force", IMAGE], capture_output=True, timeout=120)


@pytest.mark.docker
def test_a_step_container_log_is_masked_as_it_is_written(tmp_path: Path) -> None:
    """`run --in-docker`: the log is masked while it is written (a killed runner cannot scrub it afterwards)."""
    _docker_cli()
    from mlprism.runtime.container import DockerLauncher
    from mlprism.runtime.redact import redaction_values

    values = make_values()
    launcher = DockerLauncher(BASE_IMAGE, tmp_path, redact_values=redaction_values(values.values()))
    script = ("import os, sys, time\n"
              "v = os.environ['DB_PASSWORD']\n"
              "sys.stdout.write('split ' + v[:9]); sys.stdout.flush(); time.sleep(0.3)\n"
              "sys.stdout.write(v[9:] + ' end\\n'); sys.stdout.flush()\n")
    # (the last line ends with a newline: the engine's follow stream may miss a final partial line)
    command = (f'printf "%s\\n" "$WAREHOUSE_TOKEN" "$SERVICE_KEY" "len=${{#API_KEY}}" >&2; '
               f"python3 -c {shlex.quote(script)}; printf 'last %s\\n' \"$API_KEY\"")
    log = tmp_path / "step.log"
    code = launcher.run(command, cwd=tmp_path, env=dict(values), log_path=log, timeout=60)
    text = log.read_bytes()
    assert code == 0, text
    assert f"len={len(values['API_KEY'])}".encode() in text and b"split *** end" in text, text
    assert text.endswith(b"last ***\n"), text
    leaks = find(text, values, "step log")
    assert not leaks, "\n".join(map(str, leaks))


def test_a_secret_value_written_in_a_config_file_is_refused_where_it_is(project, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLP204 points at the file and line that holds the value; a value under 6 characters is not looked for."""
    proj = project({
        "pipeline.yaml": """
            apiVersion: mlprism/v1
            name: literal
            defaults: [_self_, {env: dev}]
            environment: {secrets: [TOKEN]}
            params: {url: none}
            steps:
              a:
                run: echo ${params.url} test
        """,
        "conf/env/dev.yaml": """
            # @package _global_
            params:
              url: https://svc:tok-5f1e9a7c@warehouse.example
        """,
    })
    monkeypatch.setenv("TOKEN", "tok-5f1e9a7c")
    res = run_cli("validate", "pipeline.yaml", "--json", cwd=proj)
    diags = json.loads(res.out)["diagnostics"]
    assert res.code == 2 and {d["code"] for d in diags} == {"MLP204"}, res.out
    where = {(d["location"].get("file"), d["location"].get("line")) for d in diags}
    assert ("conf/env/dev.yaml", 3) in where and ("pipeline.yaml", 8) in where, where
    assert "tok-5f1e9a7c" not in res.out + res.err
    monkeypatch.setenv("TOKEN", "test")           # too short to tell from ordinary text: masked in logs only
    assert run_cli("validate", "pipeline.yaml", cwd=proj).code == 0


def test_a_cached_pipeline_is_not_reused_once_an_override_holds_a_secret(project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled-pipeline cache (.mlprism/ir) keys on the overrides, not on the secrets' values: a hit whose
    override has since become a secret's value is dropped, so the compiler refuses it (MLP204)."""
    proj = project({
        "pipeline.yaml": """
            apiVersion: mlprism/v1
            name: cached
            environment: {secrets: [TOKEN]}
            params: {note: none}
            steps:
              a:
                run: echo ${params.note} > a.txt
                outputs: [a.txt]
        """,
    })
    monkeypatch.setenv("TOKEN", "tok-0ld0ne")          # then the secret changes to what the override holds
    first = run_proc("run", "pipeline.yaml", "params.note=tok-77aa01", cwd=proj)
    assert first.code == 0, first.err
    assert list((proj / ".mlprism" / "ir").glob("*.pickle")), "the compiled pipeline was not cached"
    monkeypatch.setenv("TOKEN", "tok-77aa01")
    again = run_proc("run", "pipeline.yaml", "params.note=tok-77aa01", cwd=proj)
    assert again.code == 2 and "MLP204" in again.err and "[secret:TOKEN]" in again.err, again.err
    assert "tok-77aa01" not in again.out + again.err


def test_one_line_of_a_multi_line_secret_is_refused_like_the_whole(project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PEM-like secret: one of its lines in an override (or in the spec) is MLP204 as the whole value is,
    shown labelled, never printed (it validated, and would have reached the lock file and the ledger)."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: pem
        environment: {secrets: [KEY_PEM]}
        params: {lr: "0.1"}
        steps:
          a:
            run: echo ${params.lr}
    """})
    monkeypatch.setenv("KEY_PEM", "-----BEGIN KEY-----\nLINEONEabc123SECRETPEM\nLINETWOdef456\n-----END KEY-----")
    res = run_cli("validate", "pipeline.yaml", "params.lr=LINEONEabc123SECRETPEM", cwd=proj)
    assert res.code == 2 and "MLP204" in res.err and "[secret:KEY_PEM]" in res.err, res.err
    assert "LINEONEabc123SECRETPEM" not in res.out + res.err
    assert run_cli("validate", "pipeline.yaml", "params.lr=0.2", cwd=proj).code == 0
