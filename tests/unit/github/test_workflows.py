"""The github-actions target: goldens, real validators, the graph read back, and the generated
scripts run by real bash on hostile values."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import mlprism
import pytest
from mlprism.testing import assert_golden
from mlprism_github.actions import PINNED

from tests.conftest import GOLDEN, run_cli
from tests.unit.github import gha
from tests.unit.github.conftest import HOSTILE, HOSTILE_FILES, Case, write_project

CASES = ["golden-full", "golden-minimal", "hostile", "hostile-overrides", "options"]


def pipeline_doc(case: Case) -> tuple[str, dict]:
    p = case.pipeline
    text = case.files[f".github/workflows/{p.name}.yml"].decode()
    return text, gha.load(text)


# -- goldens and determinism ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["full", "minimal"])
def test_golden(cases: dict[str, Case], name: str) -> None:
    assert_golden(cases[f"golden-{name}"].files, GOLDEN / name / "expected" / "github-actions")


@pytest.mark.parametrize("name", CASES)
def test_same_bytes_on_every_compile(cases: dict[str, Case], name: str) -> None:
    from tests.unit.github.conftest import compile_case

    assert compile_case(cases[name]) == cases[name].files


def test_emits_pipeline_and_monitor_workflows(cases: dict[str, Case]) -> None:
    assert sorted(cases["golden-full"].files) == [".github/workflows/churn-monitor.yml", ".github/workflows/churn.yml"]
    assert sorted(cases["golden-minimal"].files) == [".github/workflows/minimal.yml"]


# -- real validators (one batch for every case) ----------------------------------------------

@pytest.mark.validators
@pytest.mark.parametrize("name", CASES)
def test_actionlint_finds_nothing(validation, name: str) -> None:
    assert [f for path in validation.files[name] for f in validation.actionlint.get(str(path), [])] == []


@pytest.mark.validators
@pytest.mark.parametrize("name", CASES)
def test_zizmor_finds_nothing(validation, name: str) -> None:
    assert [f["ident"] for path in validation.files[name] for f in validation.zizmor.get(str(path), [])] == []


@pytest.mark.validators
@pytest.mark.parametrize("name", CASES)
def test_github_workflow_schema_accepts_all(validation, name: str) -> None:
    assert [e for path in validation.files[name] for e in validation.schema.get(str(path), [])] == []


@pytest.mark.validators
def test_validators_do_catch_problems(validation) -> None:
    """The same batch reports the known-bad files (so an empty result above means something)."""
    lint, schema = (str(p) for p in validation.files["bad"])
    assert any("nope" in str(f["message"]) for f in validation.actionlint.get(lint, []))
    idents = {f["ident"] for f in validation.zizmor.get(lint, [])}
    assert {"template-injection", "unpinned-uses", "artipacked"} <= idents
    assert validation.schema.get(schema)
    assert set(validation.zizmor) | set(validation.schema) <= {lint, schema}


# -- read back: the same graph, commands and params ------------------------------------------

def expected_run(p: mlprism.Pipeline, step: str, extra: list[str]) -> list[str]:
    return [*mlprism.step_command(p, step), *extra]


@pytest.mark.parametrize("name", CASES)
def test_workflow_reads_back_as_the_spec_graph(cases: dict[str, Case], name: str, tmp_path: Path) -> None:
    case = cases[name]
    p = case.pipeline
    text, _ = pipeline_doc(case)
    back = gha.decompile(text, tmp_path)
    # same steps, same edges
    assert set(back.jobs) == set(p.step_names)
    for s in p.steps:
        assert back.jobs[s.name].needs == set(p.upstream(s.name)), s.name
    # same commands: `mlprism run SPEC --only STEP` + compile overrides, then the per-run overrides
    from mlprism_github.workflow import sweep_legs, swept_steps

    swept = swept_steps(p)
    legs = sweep_legs(p)
    base = ["~sweep"] if p.sweep else []
    for s in p.steps:
        job = back.jobs[s.name]
        assert job.swept == (s.name in swept)
        want_legs = [base + leg for leg in legs] if s.name in swept else [base]
        assert job.runs == [expected_run(p, s.name, extra) for extra in want_legs], s.name
        if s.cache:
            assert job.fingerprints == [["mlprism", "fingerprint", p.spec_file, s.name, *p.overrides, *extra]
                                        for extra in want_legs]
        else:
            assert job.fingerprints == []
        # every upstream with outputs is downloaded (the same leg when both are swept)
        ups = [u for u in p.upstream(s.name) if p.step(u).outputs or p.step(u).metrics]
        assert job.downloads == [f"{u}.sweep-${{{{ matrix.sweep }}}}" if (u in swept and s.name in swept) else u
                                 for u in ups]
    # params: one dispatch input per param not swept, defaulting to the spec's value
    swept_params = set(p.sweep.params) if p.sweep else set()
    flat = {k: v for k, v in p.flat_params().items() if k not in swept_params}
    on = back.triggers
    if "workflow_dispatch" in on:
        limit = int((p.targets.get("github-actions") or {}).get("max_dispatch_inputs", 10))
        if len(flat) <= limit:
            described = {v["description"].split(" as on the command line", 1)[0]: v for v in back.inputs.values()}
            assert set(described) == {f"params.{k}" for k in flat}
        else:
            assert set(back.inputs) == {"overrides"}
    # sweep legs: each leg's overrides compose to exactly that combination
    if p.sweep:
        for combo, leg in zip(p.sweep.combinations(), legs, strict=True):
            q = mlprism.load_pipeline(str(case.spec), [*case.overrides, "~sweep", *leg])
            assert {k: q.flat_params()[k] for k in combo} == combo


@pytest.mark.parametrize("name", CASES)
def test_no_user_text_inside_expressions(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    secrets = set(case.pipeline.environment.secrets)
    opts = case.pipeline.targets.get("github-actions") or {}
    secrets |= {opts.get("kubeconfig_secret", "KUBECONFIG")}
    for rel, data in case.files.items():
        assert gha.bad_expressions(gha.load(data.decode()), secrets) == [], rel


@pytest.mark.parametrize("name", CASES)
def test_least_privilege_and_pinned_actions(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    opts = case.pipeline.targets.get("github-actions") or {}
    overrides = opts.get("actions") or {}
    for rel, data in case.files.items():
        text = data.decode()
        doc = gha.load(text)
        assert doc["permissions"] == {}, rel
        assert doc["concurrency"]["group"].startswith(f"mlprism-{case.pipeline.name}")
        for jid, job in doc["jobs"].items():
            perms = job["permissions"]
            allowed = {"contents": "read"}
            if jid == "retrain":
                allowed = {"actions": "write"}
            if jid == "deploy_model":
                allowed = {"contents": "read", "packages": "write"}
            assert set(perms.items()) <= set(allowed.items()), (jid, perms)
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
                    if "checkout" in step["uses"]:
                        assert step["with"]["persist-credentials"] is False
                for key, value in (step.get("env") or {}).items():
                    if "secrets." in str(value):
                        assert step["name"].startswith(("Run ", "Check for drift", "Push the images", "Apply ")), step
                        assert key.isupper()
        # every pin carries its tag as a comment, and comes from the table or the spec's overrides
        for m in re.finditer(r"uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (\S+)\n", text):
            repo, sha, tag = m.groups()
            key = next(k for k, a in PINNED.items() if repo.startswith(a.repo) or
                       repo.startswith(overrides.get(k, {}).get("repo", "\0")))
            want = overrides.get(key) or {"sha": PINNED[key].sha, "version": PINNED[key].version}
            assert (sha, tag) == (want["sha"], want.get("version", "pinned")), m.group(0)
        assert text.count("uses: ") == len(re.findall(r"uses: \S+@[0-9a-f]{40} # \S+\n", text))


def test_deploy_is_gated_approved_and_last(cases: dict[str, Case]) -> None:
    _, doc = pipeline_doc(cases["golden-full"])
    deploy = doc["jobs"]["deploy_model"]
    assert deploy["environment"] == "production"
    # after a sweep: when the selection succeeded (a leg that failed its gate is only not a candidate, as
    # locally and on Argo), not on GitHub's implicit success(), which would look at every leg
    assert deploy["if"] == "${{ !cancelled() && needs.select_sweep.result == 'success' && (github.ref == 'refs/heads/main') }}"
    assert doc["jobs"]["select_sweep"]["if"] == "${{ !cancelled() && !contains(needs.*.result, 'skipped') }}"
    # a leg of evaluate runs when some legs of train failed; it downloads its own leg of train
    assert doc["jobs"]["evaluate"]["if"] == ("${{ !cancelled() && needs.prepare.result == 'success' "
                                             "&& needs.train.result != 'skipped' }}")
    # needs every job, transitively: nothing runs after it and a failed gate anywhere stops it
    reach: set[str] = set()
    todo = list(deploy["needs"])
    while todo:
        j = todo.pop()
        if j not in reach:
            reach.add(j)
            todo.extend(doc["jobs"][j].get("needs") or [])
    assert reach == set(doc["jobs"]) - {"deploy_model"}
    names = [s["name"] for s in deploy["steps"]]
    assert "Promote the new version to production" in names and "Build the serving image" in names
    assert "Push the images" not in names and "Apply the Kubernetes manifests" not in names


def test_options_reach_the_workflow(cases: dict[str, Case]) -> None:
    case = cases["options"]
    text, doc = pipeline_doc(case)
    assert doc["concurrency"] == {"group": "mlprism-churn", "cancel-in-progress": True}
    jobs = doc["jobs"]
    assert jobs["prepare"]["runs-on"] == ["ubuntu-24.04"]
    assert jobs["train"]["runs-on"] == ["self-hosted", "linux", "x64", "gpu-a100"]
    assert "uses: actions/checkout@1111111111111111111111111111111111111111 # v9.9.9\n" in text
    assert "uses: example/cache-fork@2222222222222222222222222222222222222222 # v8.0.0\n" in text
    assert "uses: example/cache-fork/restore@2222222222222222222222222222222222222222 # v8.0.0\n" in text
    assert "retention-days: 3\n" in text and "python-version: '3.12'" in text
    assert "mlprism[ml] @ git+https://github.com/example/mlprism@0123456789abcdef0123456789abcdef01234567" in text
    deploy = jobs["deploy_model"]
    assert deploy["environment"] == "prod-eu"
    assert deploy["if"] == ("${{ !cancelled() && needs.select_sweep.result == 'success' && "
                            "(github.ref == 'refs/heads/main' || startsWith(github.ref, 'refs/heads/release/')) }}")
    assert deploy["permissions"] == {"contents": "read", "packages": "write"}
    steps = {s["name"]: s for s in deploy["steps"]}
    push = steps["Push the images"]
    assert push["env"] == {"REGISTRY_PASSWORD": "${{ github.token }}"}
    assert 'docker push ghcr.io/acme/churn-serve:"$GITHUB_SHA"' in push["run"]
    assert 'docker push ghcr.io/acme/churn-pipeline:"$GITHUB_SHA"' in push["run"]
    assert "mlprism build pipeline.yaml --tag" in steps["Build the serving image and the pipeline image"]["run"]
    apply = steps["Apply the Kubernetes manifests"]
    assert apply["env"] == {"KUBECONFIG_DATA": "${{ secrets.KUBE_CONFIG_PROD }}"}
    assert 'kubectl apply -k "$RUNNER_TEMP/mlprism-kubernetes/"overlays/dev' in apply["run"]
    assert '"++targets.kubernetes.image.tag=$GITHUB_SHA" --target kubernetes' in apply["run"]


def test_timeouts_cover_every_attempt(cases: dict[str, Case]) -> None:
    _, doc = pipeline_doc(cases["golden-full"])
    train = doc["jobs"]["train"]                      # timeout 30m, retries 2
    run = gha.named(train, "Run train")
    assert run["timeout-minutes"] == 30 * 3 + 2       # three attempts and a minute of backoff per retry
    assert train["timeout-minutes"] == run["timeout-minutes"] + 30
    assert "timeout-minutes" not in doc["jobs"]["prepare"]


# -- the generated scripts, run by real bash --------------------------------------------------

def _job(doc: dict, name: str) -> dict:
    return doc["jobs"][name]


def test_dispatch_inputs_arrive_intact(cases: dict[str, Case], tmp_path: Path) -> None:
    """A person types hostile values into the dispatch form: they reach `mlprism run` as one argv word
    each, unevaluated, and compose to exactly that value."""
    from mlprism import hydra_quote

    case = cases["hostile"]
    p = case.pipeline
    text, _ = pipeline_doc(case)
    typed = {"quote": "x'y\"z", "subst": "$(touch pwned3) `touch pwned4`; echo hi", "expr": "${{ secrets.API_TOKEN }}",
             "uni": "日本 — ✓\u2028x", "newline": "l1\nl2"}
    inputs = {k: hydra_quote(v) for k, v in typed.items()}
    inputs["num"] = "41"
    inputs["flag"] = "true"            # the default: not passed
    back = gha.decompile(text, tmp_path, inputs=inputs)
    run = back.jobs["fetch"].runs[0]
    extra = run[len(mlprism.step_command(p, "fetch")):]
    assert extra[0] == "~sweep"
    assert sorted(extra[1:]) == sorted([f"params.{k}={v}" for k, v in inputs.items() if k != "flag"])
    q = mlprism.load_pipeline(str(case.spec), extra)
    for k, v in typed.items():
        assert q.params[k] == v
    assert q.params["num"] == 41
    assert not list(tmp_path.rglob("pwned*"))


def test_outputs_cross_jobs_intact(cases: dict[str, Case], tmp_path: Path) -> None:
    """Pack in the producing job, unpack in the consuming one: hostile file names arrive byte-identical."""
    case = cases["hostile"]
    p = case.pipeline
    _, doc = pipeline_doc(case)
    producer = tmp_path / "producer"
    r1 = gha.Runner(tmp_path / "r1", producer)
    contents = {}
    for i, out in enumerate([*p.step("fetch").outputs]):
        path = producer / out
        path.parent.mkdir(parents=True, exist_ok=True)
        contents[out] = f"content {i} ü\n".encode()
        path.write_bytes(contents[out])
    done = r1.run(gha.named(_job(doc, "fetch"), "Pack the outputs"), _job(doc, "fetch"), doc)
    assert done.returncode == 0, done.stderr
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    r2 = gha.Runner(tmp_path / "r2", consumer, leg=1)
    (r2.temp / "mlprism-in").mkdir()
    shutil.copy(r1.temp / "mlprism-out" / "fetch.tar", r2.temp / "mlprism-in" / "fetch.tar")
    unpack = gha.named(_job(doc, "gate"), "Unpack the upstream outputs")
    (r2.temp / "mlprism-in" / "use.tar").write_bytes((r1.temp / "mlprism-out" / "fetch.tar").read_bytes())
    done = r2.run({"run": unpack["run"].splitlines()[0] + "\n"}, _job(doc, "gate"), doc)
    assert done.returncode == 0, done.stderr
    for out, data in contents.items():
        assert (consumer / out).read_bytes() == data
    assert not list(tmp_path.rglob("*pwned*")) and not (consumer / "d").exists()


def test_metrics_summary_is_an_escaped_table(cases: dict[str, Case], tmp_path: Path) -> None:
    case = cases["hostile"]
    p = case.pipeline
    _, doc = pipeline_doc(case)
    work = tmp_path / "w"
    metrics = work / p.step("use").metrics
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"accuracy": 0.93, "by|class": {"a<b>": 1, "x`y": "z\nw"}}))
    r = gha.Runner(tmp_path / "r", work)
    done = r.run(gha.named(_job(doc, "use"), "Metrics to the job summary"), _job(doc, "use"), doc)
    assert done.returncode == 0, done.stderr
    summary = r.summary.read_text()
    assert "| metric | value |" in summary
    assert "| accuracy | 0.93 |" in summary
    assert "| by\\|class.a&lt;b&gt; | 1 |" in summary
    assert "| by\\|class.x\\`y | z w |" in summary


def test_select_keeps_the_best_leg(cases: dict[str, Case], tmp_path: Path) -> None:
    case = cases["hostile"]
    p = case.pipeline
    _, doc = pipeline_doc(case)
    select = _job(doc, "select_sweep")
    work = tmp_path / "w"
    work.mkdir()
    r = gha.Runner(tmp_path / "r", work)
    scores = [0.5, 0.9, 0.9, 0.7]               # legs 1 and 2 tie: the first wins
    for leg, score in enumerate(scores):
        for step in ("use", "gate"):
            d = r.temp / "mlprism-sweep" / f"{step}.sweep-{leg}"
            d.mkdir(parents=True)
            src = tmp_path / f"src-{step}-{leg}"
            metrics_path = p.step(step).metrics
            (src / metrics_path).parent.mkdir(parents=True)
            (src / metrics_path).write_text(json.dumps({"accuracy": score if step == "gate" else 0.0, "leg": leg}))
            with tarfile.open(d / f"{step}.tar", "w") as tar:
                tar.add(src / metrics_path, arcname=metrics_path)
    done = r.run(gha.named(select, "Select the best leg"), select, doc)
    assert done.returncode == 0, done.stderr
    assert "index=1\n" in r.output.read_text()
    with tarfile.open(r.temp / "mlprism-out" / "gate.tar") as tar:
        assert json.load(tar.extractfile(p.step("gate").metrics))["leg"] == 1
    summary = r.summary.read_text()
    assert "| 1 **best** |" in summary and "params.swept=" in summary


@pytest.mark.parametrize(("code", "drifted", "ok"), [(0, "false", True), (1, "true", True), (2, None, False)])
def test_monitor_maps_exit_codes(cases: dict[str, Case], tmp_path: Path, code: int, drifted: str | None,
                                 ok: bool) -> None:
    case = cases["golden-full"]
    doc = gha.load(case.files[".github/workflows/churn-monitor.yml"].decode())
    assert set(doc["jobs"]) == {"drift", "retrain"}
    retrain = doc["jobs"]["retrain"]
    assert retrain["permissions"] == {"actions": "write"} and retrain["needs"] == ["drift"]
    assert retrain["if"] == "${{ needs.drift.outputs.drifted == 'true' }}"
    assert "gh workflow run churn.yml" in retrain["steps"][0]["run"]
    assert doc["on"]["schedule"] == [{"cron": "0 * * * *"}]
    drift = doc["jobs"]["drift"]
    r = gha.Runner(tmp_path / "r", tmp_path)
    (r.bin / "mlprism").write_text(f"#!/bin/sh\necho 'column x: psi 0.4'\nexit {code}\n")
    done = r.run(gha.named(drift, "Check for drift"), drift, doc)
    assert (done.returncode == 0) == ok, done.stderr
    if ok:
        assert f"drifted={drifted}\n" in r.output.read_text()
        assert "psi 0.4" in r.summary.read_text()


# -- what cannot be expressed is a diagnostic ---------------------------------------------------

def test_push_filter_with_expression_is_refused(tmp_path: Path) -> None:
    spec = write_project(tmp_path / "p", """
        apiVersion: mlprism/v1
        name: p
        steps: {a: {run: "true"}}
        triggers: {push: {branches: ["feat/\\\\${{ github.token }}", "bad name"]}}
        """, {})
    res = run_cli("compile", str(spec), "--target", "github-actions", "--out", str(tmp_path / "out"))
    assert res.code == 2, res.err
    assert res.err.count("MLP303") == 2 and "Traceback" not in res.err
    assert "pipeline.yaml:4:" in res.err


def test_big_step_needs_a_large_runner(tmp_path: Path) -> None:
    spec = write_project(tmp_path / "p", """
        apiVersion: mlprism/v1
        name: p
        steps: {a: {run: "true", resources: {cpu: 32, memory: 128Gi}}}
        """, {})
    res = run_cli("compile", str(spec), "--target", "github-actions", "--out", str(tmp_path / "out"))
    assert res.code == 2 and "MLP303" in res.err and "large_runs_on" in res.err, res.err
    ok = run_cli("compile", str(spec), "+targets.github-actions.large_runs_on=[big-runner]",
                 "--target", "github-actions", "--out", str(tmp_path / "out"))
    assert ok.code == 0, ok.err
    text = (tmp_path / "out" / ".github/workflows/p.yml").read_text()
    assert "runs-on:\n    - big-runner\n" in text


@pytest.mark.parametrize("combinations", [256, 257])
def test_sweep_beyond_the_matrix_limit_is_refused(tmp_path: Path, combinations: int) -> None:
    # GitHub: "A matrix will generate a maximum of 256 jobs per workflow run"; more fails the run there
    spec = write_project(tmp_path / "p", f"""
        apiVersion: mlprism/v1
        name: p
        params: {{a: 0}}
        sweep:
          params: {{a: {list(range(combinations))}}}
        steps: {{a: {{run: "echo ${{params.a}}"}}}}
        """, {})
    res = run_cli("compile", str(spec), "--target", "github-actions", "--out", str(tmp_path / "out"))
    if combinations <= 256:
        assert res.code == 0, res.err
        return
    assert res.code == 2 and "Traceback" not in res.err, res.err
    assert "MLP302" in res.err and "257 combinations" in res.err and "at most 256" in res.err, res.err
    assert "pipeline.yaml:5:" in res.err and "hint:" in res.err, res.err
    assert not (tmp_path / "out" / ".github").exists()


@pytest.mark.parametrize("option", ["actions.checkout.sha=v4", "runs_on='ubuntu \\${{ x }}'", "environment='a\\${{b}}'",
                                    "artifact_retention_days=0", "nope=1", "deploy_branches=['a b']"])
def test_bad_options_are_schema_errors(tmp_path: Path, option: str) -> None:
    spec = write_project(tmp_path / "p", "apiVersion: mlprism/v1\nname: p\nsteps: {a: {run: 'true'}}\n", {})
    res = run_cli("validate", str(spec), f"+targets.github-actions.{option}")
    assert res.code == 2, (option, res.out, res.err)
    assert re.search(r"MLP2\d\d", res.err) and "Traceback" not in res.err


def test_hostile_spec_compiles_from_the_command_line(tmp_path: Path) -> None:
    spec = write_project(tmp_path / "p", HOSTILE, HOSTILE_FILES)
    res = run_cli("compile", str(spec), "--target", "github-actions", "--out", str(tmp_path / "out"))
    assert res.code == 0, res.err
    check = run_cli("compile", str(spec), "--target", "github-actions", "--out", str(tmp_path / "out"), "--check")
    assert check.code == 0, check.err


def test_monitor_alert_fails_the_job_on_drift(tmp_path: Path) -> None:
    spec = write_project(tmp_path / "p", """
        apiVersion: mlprism/v1
        name: watch
        data: {ref: {path: ref.csv}, live: {path: live.csv}}
        steps: {a: {run: "true"}}
        monitor: {schedule: "15 4 * * *", drift: {reference: ref.csv, current: live.csv}, on_drift: alert}
        """, {"ref.csv": "x\n1\n", "live.csv": "x\n2\n"})
    files = mlprism.compile_spec(str(spec), "github-actions")
    doc = gha.load(files[".github/workflows/watch-monitor.yml"].decode())
    assert set(doc["jobs"]) == {"drift"}
    assert not any("Restore the newest data" in s["name"] for s in doc["jobs"]["drift"]["steps"])
    pipeline = gha.load(files[".github/workflows/watch.yml"].decode())
    assert "workflow_dispatch" in pipeline["on"]        # no other trigger: a person starts it
    for code, ok in ((0, True), (1, False)):
        r = gha.Runner(tmp_path / f"r{code}", tmp_path)
        (r.bin / "mlprism").write_text(f"#!/bin/sh\nexit {code}\n")
        done = r.run(gha.named(doc["jobs"]["drift"], "Check for drift"), doc["jobs"]["drift"], doc)
        assert (done.returncode == 0) == ok, done.stderr
