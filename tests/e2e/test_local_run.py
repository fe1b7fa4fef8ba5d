"""`mlprism run` end to end: real processes, real files, the real ledger (in-process CLI for speed)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

SPEC = """
apiVersion: mlprism/v1
name: demo
params:
  greeting: hello
  scale: 2
data:
  raw: {path: data/raw.txt}
steps:
  fetch:
    run: echo fetch >> "$COUNT_FILE" && tr a-z A-Z < data/raw.txt > out/raw.txt && echo "${params.greeting}" >> out/raw.txt
    inputs: [data/raw.txt]
    outputs: [out/raw.txt]
  score:
    run: echo score >> "$COUNT_FILE" && python src/score.py ${params.scale}
    inputs: [out/raw.txt, src/score.py]
    outputs: [out/model.txt]
    metrics: metrics/score.json
"""

SCORE = """
import json, sys
text = open("out/raw.txt").read()
scale = float(sys.argv[1])
open("out/model.txt", "w").write(text[::-1])
json.dump({"chars": len(text), "quality": {"scaled": len(text) * scale}}, open("metrics/score.json", "w"))
print("scored", len(text))
"""


@pytest.fixture
def demo(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    proj = project({"pipeline.yaml": SPEC, "src/score.py": SCORE, "data/raw.txt": "abc\n"})

    def executed() -> list[str]:
        lines = count.read_text().split() if count.exists() else []
        count.unlink(missing_ok=True)
        return lines

    return proj, executed


def test_run_then_everything_cached(cli, demo) -> None:
    proj, executed = demo
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert executed() == ["fetch", "score"]
    assert (proj / "out" / "raw.txt").read_text() == "ABC\nhello\n"
    assert "[score] | scored 10" in r.out                       # step output streamed with a prefix
    assert json.loads((proj / "metrics" / "score.json").read_text())["chars"] == 10
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and executed() == []
    assert "everything up to date (2 steps cached)" in r.out
    lock = yaml.safe_load((proj / "mlprism.lock").read_text())
    assert lock["data"]["raw"]["size"] == 4 and set(lock["steps"]) == {"fetch", "score"}
    assert lock["steps"]["fetch"]["params"] == {"greeting": "hello"}
    assert set(lock["steps"]["score"]["outputs"]) == {"out/model.txt", "metrics/score.json"}


def test_ledger_records_runs_steps_params_metrics_artifacts_lineage(cli, demo) -> None:
    proj, _ = demo
    assert cli("run", "pipeline.yaml", "params.scale=3", cwd=proj).code == 0
    db = sqlite3.connect(proj / ".mlprism" / "ledger.db")
    run_id, spec, overrides, status = db.execute("SELECT id, spec, overrides, status FROM runs").fetchone()
    assert (spec, json.loads(overrides), status) == ("demo", ["params.scale=3"], "succeeded")
    steps = dict(db.execute("SELECT step, status FROM step_runs WHERE run_id=?", (run_id,)).fetchall())
    assert steps == {"fetch": "succeeded", "score": "succeeded"}
    metrics = dict(db.execute("SELECT key, value FROM metrics WHERE run_id=?", (run_id,)).fetchall())
    assert metrics == {"chars": 10.0, "quality.scaled": 30.0}
    params = dict(db.execute("SELECT key, value FROM params WHERE run_id=?", (run_id,)).fetchall())
    assert params["scale"] == "3" and params["greeting"] == '"hello"'
    roles = {r[0] for r in db.execute("SELECT role FROM artifacts WHERE run_id=?", (run_id,))}
    assert roles == {"data", "input", "output"}
    edges = set(db.execute("SELECT source, target FROM lineage WHERE run_id=?", (run_id,)).fetchall())
    assert ("path:out/raw.txt", "step:score") in edges and ("step:fetch", "path:out/raw.txt") in edges
    r = cli("runs", "show", run_id[:12], "--json", cwd=proj)
    assert r.code == 0 and json.loads(r.out)["metrics"]["score"]["chars"] == 10
    r = cli("runs", "list", cwd=proj)
    assert run_id in r.out and "succeeded" in r.out
    r = cli("logs", "latest", "score", cwd=proj)
    assert r.out == "scored 10\n"


def test_param_switch_back_and_forth_reruns_nothing(cli, demo) -> None:
    proj, executed = demo
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    first = (proj / "out" / "model.txt").read_bytes()
    assert cli("run", "pipeline.yaml", "params.greeting=bye", cwd=proj).code == 0
    assert executed() == ["fetch", "score", "fetch", "score"]
    assert (proj / "out" / "model.txt").read_bytes() != first
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and executed() == []
    assert (proj / "out" / "model.txt").read_bytes() == first     # restored from the cache
    assert "restored `out/raw.txt` from the cache" in r.out
    (proj / "out" / "model.txt").unlink()
    (proj / "metrics" / "score.json").write_text("{}")
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and executed() == []
    assert (proj / "out" / "model.txt").read_bytes() == first
    assert json.loads((proj / "metrics" / "score.json").read_text())["chars"] == 10


def test_small_outputs_are_cached_inside_their_records_and_restored_from_them(proc, demo) -> None:
    """Outputs of a few bytes are no cache objects (one file per step in the store, not two); the
    lock file names them by hash, and a later process restores them from the step's record."""
    proj, executed = demo
    assert proc("run", "pipeline.yaml", cwd=proj).code == 0
    assert executed() == ["fetch", "score"]
    cache = proj / ".mlprism" / "cache"
    assert not [p for p in (cache / "objects").rglob("*") if p.is_file()]
    records = [json.loads(p.read_text()) for p in (cache / "steps").rglob("*.json")]
    inline = {rel for r in records for rel, e in r["outputs"].items() if "inline" in e}
    assert inline == {"out/raw.txt", "out/model.txt", "metrics/score.json"}
    lock = yaml.safe_load((proj / "mlprism.lock").read_text())
    assert "inline" not in json.dumps(lock)
    before = {rel: (proj / rel).read_bytes() for rel in inline}
    for rel in inline:
        (proj / rel).unlink()
    r = proc("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and executed() == [], r.out + r.err
    assert "restored `out/raw.txt` from the cache" in r.out and "`out/model.txt` from the cache" in r.out
    assert {rel: (proj / rel).read_bytes() for rel in inline} == before
    r = proc("status", "pipeline.yaml", cwd=proj)
    assert "everything up to date" in r.out


def test_explain_and_status_say_what_changed(cli, demo) -> None:
    proj, _ = demo
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    r = cli("status", "pipeline.yaml", cwd=proj)
    assert "everything up to date" in r.out
    old = yaml.safe_load((proj / "mlprism.lock").read_text())["data"]["raw"]["hash"]
    (proj / "data" / "raw.txt").write_text("abcd\n")
    r = cli("status", "pipeline.yaml", "--json", cwd=proj)
    status = json.loads(r.out)
    assert status["data"][0]["changed"] and status["data"][0]["state"].startswith(f"changed: {old[:12]}")
    assert {s["name"]: s["state"] for s in status["steps"]} == {"fetch": "stale", "score": "stale"}
    r = cli("explain", "pipeline.yaml", "fetch", cwd=proj)
    assert r.code == 0
    assert f"input `data/raw.txt` changed: {old[:12]} → " in r.out
    r = cli("explain", "pipeline.yaml", "score", "params.scale=5", "--json", cwd=proj)
    info = json.loads(r.out)
    assert info["action"] == "run" and "param `scale` changed: 2 → 5" in info["own_changes"]
    assert "fetch" in info["upstream"]
    r = cli("run", "pipeline.yaml", "--dry-run", cwd=proj)
    assert "fetch  would-run" in r.out and r.code == 0
    assert not (proj / "out" / "raw.txt").read_text().startswith("ABCD")       # nothing ran
    r = cli("run", "pipeline.yaml", "--dry-run", "--json", cwd=proj)
    plan = json.loads(r.out)
    assert plan["steps"]["score"]["action"] == "would-run"
    assert plan["plan"]["layers"] == [["fetch"], ["score"]]
    assert plan["plan"]["steps"]["fetch"]["runtime_command"] == "mlprism run pipeline.yaml --only fetch"


def test_explain_names_the_param_switched_back_when_the_cache_restores(cli, demo) -> None:
    """The outputs in the project are another version's, not edited: explain names the param that
    differs from the last run, and says the cache has this version (it blamed the outputs before)."""
    proj, executed = demo
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    assert cli("run", "pipeline.yaml", "params.scale=5", cwd=proj).code == 0
    r = cli("explain", "pipeline.yaml", "score", cwd=proj)
    assert r.code == 0 and "would be restored from the cache" in r.out, r.out
    assert "param `scale` changed: 5 → 2" in r.out, r.out
    assert "the cache has this version's `metrics/score.json`" in r.out and "changed;" not in r.out, r.out
    executed()
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and executed() == [] and "restored `metrics/score.json`" in r.out, r.out


def test_lock_file_is_deterministic(cli, project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNT_FILE", str(tmp_path / "c.txt"))
    files = {"pipeline.yaml": SPEC, "src/score.py": SCORE, "data/raw.txt": "abc\n"}
    a = project(files, tmp_path / "a")
    b = project(files, tmp_path / "elsewhere" / "b")
    assert cli("run", "pipeline.yaml", "-j", "1", cwd=a).code == 0
    assert cli("run", "pipeline.yaml", "-j", "2", cwd=b).code == 0
    lock = (a / "mlprism.lock").read_bytes()
    assert lock == (b / "mlprism.lock").read_bytes()
    assert b"/" + str(tmp_path).encode().lstrip(b"/") not in lock           # no absolute path
    mtime = (a / "mlprism.lock").stat().st_mtime_ns
    time.sleep(0.01)
    assert cli("run", "pipeline.yaml", cwd=a).code == 0
    assert (a / "mlprism.lock").stat().st_mtime_ns == mtime                  # unchanged: not rewritten
    r = cli("fingerprint", "pipeline.yaml", "score", cwd=a)
    assert r.out.strip() == yaml.safe_load(lock)["steps"]["score"]["fingerprint"]


def test_only_runs_one_step_with_its_inputs_present(cli, demo) -> None:
    proj, executed = demo
    r = cli("run", "pipeline.yaml", "--only", "score", "params.scale=4", cwd=proj)
    assert r.code == 2 and "MLP411" in r.err and "out/raw.txt" in r.err and executed() == []
    assert cli("run", "pipeline.yaml", "--only", "fetch", cwd=proj).code == 0
    r = cli("run", "pipeline.yaml", "--only", "score", "params.scale=4", cwd=proj)
    assert r.code == 0 and executed() == ["fetch", "score"]
    assert json.loads((proj / "metrics" / "score.json").read_text())["quality"]["scaled"] == 40
    r = cli("run", "pipeline.yaml", "--force", "fetch", "--until", "fetch", cwd=proj)
    assert r.code == 0 and executed() == ["fetch"]
    r = cli("run", "pipeline.yaml", "--only", "nope", cwd=proj)
    assert r.code == 2 and "MLP407" in r.err


FAILING = """
apiVersion: mlprism/v1
name: failing
steps:
  bad:
    run: echo oops; exit 3
    outputs: [bad.txt]
  after-bad:
    run: cat bad.txt > after.txt
    inputs: [bad.txt]
    outputs: [after.txt]
  other:
    run: echo ok > other.txt
    outputs: [other.txt]
  lazy:
    run: echo "did not write it"
    outputs: [missing/never.txt]
"""


def test_failure_stops_and_keep_going_continues(cli, project) -> None:
    proj = project({"pipeline.yaml": FAILING})
    r = cli("run", "pipeline.yaml", "-j", "1", cwd=proj)
    assert r.code == 1
    assert "[bad] FAILED [MLP400]: exit code 3" in r.out
    assert "[after-bad] blocked: upstream `bad` did not succeed" in r.out
    assert not (proj / "other.txt").exists()                   # stopped scheduling after the failure
    r = cli("run", "pipeline.yaml", "-j", "1", "--keep-going", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 1 and res["status"] == "failed"
    assert {n: s["status"] for n, s in res["steps"].items()} == {
        "bad": "failed", "after-bad": "blocked", "other": "succeeded", "lazy": "failed"}
    assert res["steps"]["lazy"]["code"] == "MLP401" and "missing/never.txt" in res["steps"]["lazy"]["error"]
    assert (proj / "missing").is_dir()                          # parent directories of outputs are made first
    assert (proj / ".mlprism" / "runs" / res["run_id"] / "bad.log").read_text() == "oops\n"


def test_retries_with_backoff(cli, project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPRISM_RETRY_BACKOFF", "0.05")
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: flaky
        steps:
          flaky:
            run: n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; echo "try $n"; test $n -ge 2 && echo ok > f.txt
            outputs: [f.txt]
            retries: 3
    """})
    t0 = time.monotonic()
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 0 and res["steps"]["flaky"]["attempts"] == 3
    assert time.monotonic() - t0 >= 0.15                        # 0.05 + 0.1 of backoff
    log = (proj / ".mlprism" / "runs" / res["run_id"] / "flaky.log").read_text()
    assert "try 0" in log and "attempt 3 of 4" in log and "try 2" in log


def test_timeout_kills_the_whole_process_group(cli, project) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: slow
        steps:
          slow:
            run: sleep 30 & echo $! > bg.pid; sleep 30; echo done > s.txt
            outputs: [s.txt]
            timeout: 1s
    """})
    t0 = time.monotonic()
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 1 and "MLP403" in r.out and "timed out after 1s" in r.out
    assert time.monotonic() - t0 < 10
    bg = int((proj / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(bg, 0)
        except ProcessLookupError:
            break
        # a killed child of an orphaned shell is reaped by init; until then it is a zombie
        if Path(f"/proc/{bg}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the background process of the timed-out step is still running")


def test_secrets_reach_the_step_but_are_never_written(cli, project, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: secretive
        environment:
          variables: {MODE: fast}
          secrets: [API_TOKEN]
        steps:
          use:
            run: echo "mode=$MODE token=$API_TOKEN" && echo "$API_TOKEN" | wc -c > out.txt
            outputs: [out.txt]
    """})
    monkeypatch.delenv("API_TOKEN", raising=False)
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 2 and "MLP405" in r.err and "API_TOKEN" in r.err
    assert not (proj / "out.txt").exists()
    secret = "tok-3f9a8b7c6d5e"
    monkeypatch.setenv("API_TOKEN", secret)
    r = cli("run", "pipeline.yaml", "--force", cwd=proj)
    assert r.code == 0 and "mode=fast token=***" in r.out and secret not in r.out
    assert (proj / "out.txt").read_text().strip() == str(len(secret) + 1)   # the step saw the real value
    for path in [proj / "mlprism.lock", *(proj / ".mlprism").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_a_secret_in_a_metric_name_is_masked(cli, project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metric names come from the step's JSON: one holding a secret's value went to the ledger, the registry,
    the cache record and `runs show` / `models list`."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: secret-metrics
        environment:
          secrets: [API_TOKEN]
        registry: {name: m, artifact: model.bin, flavor: file}
        steps:
          train:
            run: echo m > model.bin && printf '{"acc":0.9,"rows@db-%s":7}' "$API_TOKEN" > metrics.json
            outputs: [model.bin]
            metrics: metrics.json
    """})
    secret = "tok-9e8d7c6b5a4f"
    monkeypatch.setenv("API_TOKEN", secret)
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0, r.err
    shown = cli("runs", "show", "latest", "--json", cwd=proj).out + cli("models", "list", cwd=proj).out
    assert secret not in shown and "rows@db-***" in shown
    r = cli("run", "pipeline.yaml", cwd=proj)           # cached: the metrics come from the record
    assert r.code == 0 and secret not in r.out + r.err
    for path in [proj / "mlprism.lock", *(proj / ".mlprism").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_directory_outputs_are_hashed_as_trees_and_restored(cli, project) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: trees
        steps:
          build:
            run: mkdir -p model/parts && echo w > model/weights.txt && echo 1 > model/parts/a.txt
            outputs: [model]
          use:
            run: cat model/parts/a.txt model/weights.txt > used.txt
            inputs: [model/parts/a.txt]
            outputs: [used.txt]
    """})
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    entry = yaml.safe_load((proj / "mlprism.lock").read_text())["steps"]["build"]["outputs"]["model"]
    assert entry["kind"] == "dir" and entry["files"] == 2 and entry["size"] == 4
    (proj / "model" / "parts" / "a.txt").unlink()
    (proj / "model" / "extra.txt").write_text("junk")
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and "restored `model` from the cache" in r.out and "[use] up to date" in r.out
    assert (proj / "model" / "parts" / "a.txt").read_text() == "1\n" and not (proj / "model" / "extra.txt").exists()


def test_a_file_name_that_is_not_utf8_in_a_directory_output_is_cached_and_restored(cli, project) -> None:
    """A name such as b"bad\\xffname" (made in a Latin-1 locale) is legal on Linux: the step succeeds, its tree is
    hashed and restored with the same bytes (it was MLP001, a UnicodeEncodeError while hashing the tree)."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: names
        steps:
          make:
            run: mkdir -p d && printf x > "d/$(printf 'bad\\377name')" && echo 1 > d/ok.txt
            outputs: [d]
    """})
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0, r.out + r.err
    bad = os.fsencode(proj / "d") + b"/bad\xffname"
    assert os.path.exists(bad)
    shutil.rmtree(proj / "d")
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and "restored `d` from the cache" in r.out, r.out + r.err
    assert sorted(os.listdir(os.fsencode(proj / "d"))) == [b"bad\xffname", b"ok.txt"]
    with open(bad, "rb") as f:
        assert f.read() == b"x"
    assert cli("status", "pipeline.yaml", cwd=proj).code == 0


def test_a_directory_symlink_inside_a_directory_output_is_hashed_and_restored(cli, project) -> None:
    """`models/latest -> v1` inside an output: it was left out of the tree's hash and of the cache, so a restored
    `models` had no `latest` and the step reading `models/latest/model.bin` failed; deleting or repointing the
    link was not seen either."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: links
        steps:
          make:
            run: rm -rf models && mkdir -p models/v1 models/v2 && echo w > models/v1/model.bin && ln -s v1 models/latest
            outputs: [models]
          use:
            run: cat models/latest/model.bin > used.txt
            inputs: [models]
            outputs: [used.txt]
    """})
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    shutil.rmtree(proj / "models")
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and "restored `models` from the cache" in r.out, r.out + r.err
    assert os.readlink(proj / "models" / "latest") == "v1"
    (proj / "used.txt").unlink()
    assert cli("run", "pipeline.yaml", "--force", "use", cwd=proj).code == 0
    (proj / "models" / "latest").unlink()
    (proj / "models" / "latest").symlink_to("v2")
    r = cli("status", "pipeline.yaml", cwd=proj)
    assert "make  restorable" in r.out, r.out
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    assert os.readlink(proj / "models" / "latest") == "v1"


def test_missing_declared_data_stops_the_run_before_any_step(cli, project) -> None:
    """A declared data file that does not exist, read by a step downstream of another: MLP411 at once,
    naming the data (it ran both steps, exit 0, and wrote `hash: null` for the data in the lock file);
    a directory input holding the outputs of a step of the same run is fine before it exists."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: miss
        data:
          raw: {path: data/nope.csv}
        steps:
          a: {run: mkdir -p out && echo a > out/a.txt, outputs: [out/a.txt]}
          b: {run: cat out/a.txt > b.txt, inputs: [out, data/nope.csv], outputs: [b.txt]}
    """})
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 2 and "MLP411" in r.err and "`data/nope.csv`" in r.err and "declared data `raw`" in r.err, r.err
    assert not (proj / "out").exists() and not (proj / "mlprism.lock").exists()
    (proj / "data").mkdir()
    (proj / "data" / "nope.csv").write_text("x\n")
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and (proj / "b.txt").read_text() == "a\n", r.out + r.err


def test_a_teammates_clone_restores_a_switched_back_param_from_the_cache(cli, demo, tmp_path: Path) -> None:
    """A clone has the lock file and the outputs but no .mlprism: its first run finds everything up to
    date through the lock file and now also keeps those outputs in its cache, so switching a param away
    and back restores them instead of running the steps again (they ran again: nothing had cached them)."""
    import shutil

    proj, executed = demo
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0 and executed() == ["fetch", "score"]
    clone = tmp_path / "clone"
    shutil.copytree(proj, clone, ignore=shutil.ignore_patterns(".mlprism"))
    r = cli("run", "pipeline.yaml", cwd=clone)
    assert r.code == 0 and executed() == [] and "everything up to date" in r.out, r.out + r.err
    assert cli("run", "pipeline.yaml", "params.scale=5", cwd=clone).code == 0 and executed() == ["score"]
    r = cli("run", "pipeline.yaml", cwd=clone)
    assert r.code == 0 and executed() == [], r.out + r.err                   # restored, not run
    assert "restored" in r.out and json.loads((clone / "metrics" / "score.json").read_text())["quality"] == \
        {"scaled": 20.0}
    # and explain can name what changed against the clone's first state (the lock file alone has no command)
    (clone / "pipeline.yaml").write_text((clone / "pipeline.yaml").read_text().replace("python src/score.py",
                                                                                        "python  src/score.py"))
    r = cli("explain", "pipeline.yaml", "score", cwd=clone)
    assert "command changed" in r.out, r.out


def _ran_one_step(cli, project) -> Path:
    """A project of one step without params, run once."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: one
        steps:
          a:
            run: echo 1 > a.txt
            outputs: [a.txt]
    """})
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    return proj


def test_a_ledger_that_cannot_be_opened_is_mlp410_not_an_internal_error(cli, project) -> None:
    """`mlprism runs list|show` and `logs` on a read-only `.mlprism/` (a read-only mount, another user's project):
    SQLite cannot open a WAL database there. It was MLP001 ("this is a bug"), exit 3."""
    proj = _ran_one_step(cli, project)
    # made for real (root writes through file modes): SQLite cannot write the WAL index beside the database
    # (here a directory stands where it goes), as on a read-only mount
    state = proj / ".mlprism"
    for name in ("ledger.db-wal", "ledger.db-shm"):
        (state / name).unlink(missing_ok=True)
    (state / "ledger.db-shm").mkdir()
    for args in (["runs", "list"], ["runs", "show", "latest"], ["logs", "latest", "a"]):
        r = cli(*args, cwd=proj)
        assert r.code == 2, (args, r.out, r.err)
        assert "error[MLP410]: cannot open the run ledger `.mlprism/ledger.db`: " in r.err, r.err
        assert "MLP001" not in r.err and "hint: SQLite" in r.err, r.err


def test_a_pipeline_without_params_records_none(cli, project) -> None:
    """`runs show` of a pipeline without `params:` printed `params:` then `   = {}`, and `--json` said
    `"params": {"": {}}` (a param named "" in the ledger, mirrored as such to MLflow)."""
    proj = _ran_one_step(cli, project)
    r = cli("runs", "show", "latest", cwd=proj)
    assert r.code == 0 and "params:" not in r.out and " = {}" not in r.out, r.out
    assert json.loads(cli("runs", "show", "latest", "--json", cwd=proj).out)["params"] == {}


def test_runs_list_counts_a_failed_step_as_failed_not_cached(cli, project) -> None:
    spec = """
apiVersion: mlprism/v1
name: gated
steps:
  score:
    run: sh score.sh
    metrics: m.json
    gate:
      - {metric: acc, min: 0.9}
"""
    proj = project({"pipeline.yaml": spec, "score.sh": "echo '{\"acc\": 0.5}' > m.json\n"})
    assert cli("run", "pipeline.yaml", cwd=proj).code == 1
    again = cli("run", "pipeline.yaml", cwd=proj)             # the failed gate, from the cache
    assert again.code == 1 and "0 ran, 0 cached, 1 failed" in again.out
    rows = cli("runs", "list", cwd=proj).out.splitlines()[1:]
    assert len(rows) == 2 and all("0 ran, 0 cached, 1 failed" in r for r in rows), rows
