"""The programs inside the emitted templates, run for real: the sweep's trial workspace and selection
(Python, as Argo runs a `script` template), the drift wrapper and the workspace copy (`sh -c`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import Case


def _template(case: Case, name: str) -> dict[str, Any]:
    return next(t for t in case.template["spec"]["templates"] if t["name"] == name)


def _env(container: dict[str, Any], root: Path, **subst: str) -> dict[str, str]:
    """The container's env with the paths moved under `root` and Argo's variables filled in."""
    env = {}
    for e in container["env"]:
        if "value" not in e:
            continue
        value = e["value"].replace("$$", "$")   # Kubernetes reads `$$` as `$` (no `$(` in these values)
        for var, val in subst.items():
            value = value.replace("{{" + var + "}}", val)
        env[e["name"]] = re.sub(r'(^|")/(workspace|app|tmp)(?=/|"|$)', lambda m: f"{m.group(1)}{root}/{m.group(2)}",
                                value)
    return env


def _run_script(t: dict[str, Any], root: Path, **subst: str) -> subprocess.CompletedProcess[str]:
    script = root / f"{t['name']}.py"
    script.write_text(t["script"]["source"])
    env = {"PATH": os.environ["PATH"], **_env(t["script"], root, **subst)}
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_trial_workspace_copies_project_inputs_and_links_the_cache(cases: dict[str, Case], tmp_path: Path) -> None:
    t = _template(cases["full"], "trial-workspace")
    app, ws = tmp_path / "app", tmp_path / "workspace"
    (app / "src").mkdir(parents=True)
    (app / "pipeline.yaml").write_text("name: churn\n")
    (app / "src" / "train.py").write_text("print('train')\n")
    (ws / "data").mkdir(parents=True)
    (ws / "data" / "train.csv").write_text("a,b\n1,2\n")
    (ws / "src").mkdir()
    (ws / "src" / "train.py").write_text("print('train')\n")
    obj = ws / ".mlprism" / "cache" / "objects" / "ab" / "cdef"
    obj.parent.mkdir(parents=True)
    obj.write_text("cached")
    (ws / ".mlprism" / "registry.db").write_text("db")
    proc = _run_script(t, tmp_path, **{"workflow.uid": "uid-1", "inputs.parameters.sweep-trial": "3"})
    assert proc.returncode == 0, proc.stderr
    trial = ws / ".mlprism-sweeps" / "uid-1" / "3"
    assert (trial / "pipeline.yaml").read_text() == "name: churn\n"
    assert (trial / "data" / "train.csv").read_text() == "a,b\n1,2\n"
    assert "data/test.csv" in proc.stdout          # declared but not there yet: left to the step to report
    linked = trial / ".mlprism" / "cache" / "objects" / "ab" / "cdef"
    assert linked.read_text() == "cached" and linked.stat().st_ino == obj.stat().st_ino
    assert (trial / ".mlprism" / "registry.db").is_symlink()
    # Running it again (a retried pod) starts from a clean copy.
    (trial / "stale.txt").write_text("x")
    assert _run_script(t, tmp_path, **{"workflow.uid": "uid-1", "inputs.parameters.sweep-trial": "3"}).returncode == 0
    assert not (trial / "stale.txt").exists()


def _trial(sweep: Path, i: int, metrics: dict[str, Any] | None, ok: bool = True, cache: str | None = None) -> None:
    d = sweep / str(i)
    (d / "metrics").mkdir(parents=True)
    if metrics is not None:
        (d / "metrics" / "eval.json").write_text(json.dumps(metrics))
    if ok:
        (d / ".mlprism-trial-succeeded").write_text("")
    if cache:
        rec = d / ".mlprism" / "cache" / "steps" / "12" / f"{cache}.json"
        rec.parent.mkdir(parents=True)
        rec.write_text(json.dumps({"fingerprint": cache}))


def test_select_picks_the_best_successful_trial_and_hands_its_cache_over(cases: dict[str, Case], tmp_path: Path) -> None:
    t = _template(cases["full"], "select")
    sweep = tmp_path / "workspace" / ".mlprism-sweeps" / "uid-9"
    _trial(sweep, 0, {"accuracy": 0.91})
    _trial(sweep, 1, {"accuracy": 0.99}, ok=False)           # its gate failed: not a candidate
    _trial(sweep, 2, {"nested": {"x": 1}, "accuracy": 0.95}, cache="12abc")
    _trial(sweep, 3, {"accuracy": 0.95})                     # a tie goes to the earlier combination
    _trial(sweep, 4, {"accuracy": "high"})
    _trial(sweep, 5, None)
    proc = _run_script(t, tmp_path, **{"workflow.uid": "uid-9"})
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "tmp" / "mlprism" / "select"
    assert (out / "n_estimators").read_text() == "200" and (out / "max_depth").read_text() == "4"   # trial 2
    assert "selected trial 2: accuracy = 0.95 (max)" in proc.stdout
    assert "failed" in proc.stdout.splitlines()[2]
    record = tmp_path / "workspace" / ".mlprism" / "cache" / "steps" / "12" / "12abc.json"
    assert json.loads(record.read_text()) == {"fingerprint": "12abc"}
    assert not sweep.exists()
    # declared outputs match what the script writes
    outs = {o["name"]: o["valueFrom"]["path"] for o in t["outputs"]["parameters"]}
    assert outs == {"n_estimators": "/tmp/mlprism/select/n_estimators", "max_depth": "/tmp/mlprism/select/max_depth"}


def test_select_fails_when_no_trial_succeeded(cases: dict[str, Case], tmp_path: Path) -> None:
    t = _template(cases["full"], "select")
    sweep = tmp_path / "workspace" / ".mlprism-sweeps" / "u"
    _trial(sweep, 0, {"accuracy": 0.9}, ok=False)
    proc = _run_script(t, tmp_path, **{"workflow.uid": "u"})
    assert proc.returncode == 1
    assert "no successful trial reported the metric `accuracy`" in proc.stderr


def test_select_values_round_trip_hostile_sweeps(cases: dict[str, Case]) -> None:
    """Sweep values travel as JSON in an env value (Kubernetes-escaped) to an output file, then
    into args: what reaches the process is the Hydra value of the combination."""
    from mlprism_kubernetes.common import hydra_value

    case = cases["full"]
    t = _template(case, "select")
    env = {e["name"]: e["value"] for e in t["script"]["env"] if "value" in e}
    config = json.loads(env["MLPRISM_SELECT"].replace("$$", "$"))
    combos = case.pipeline.sweep.combinations()
    assert [tr["values"] for tr in config["trials"]] == [{k: hydra_value(v) for k, v in c.items()} for c in combos]


def _sh(argv: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("/tmp/mlprism", str(tmp / "mlprism")) for a in argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_drift_wrapper_turns_exit_codes_into_the_drift_parameter(cases: dict[str, Case], tmp_path: Path) -> None:
    t = _template(cases["full"], "drift")
    c = t["container"]
    argv = c["command"] + c["args"]
    assert argv[:4] == ["sh", "-c", argv[2], "sh"] and argv[4:8] == ["mlprism", "monitor", "pipeline.yaml", "--no-retrain"]
    assert t["outputs"]["parameters"] == [{"name": "drift", "valueFrom": {"path": "/tmp/mlprism/drift"}}]
    out = tmp_path / "mlprism" / "drift"
    for code, expected in ((0, "false"), (1, "true")):
        proc = _sh([*argv[:4], sys.executable, "-c", f"import sys; sys.exit({code})"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert out.read_text().strip() == expected
    out.unlink()
    proc = _sh([*argv[:4], sys.executable, "-c", "import sys; sys.exit(2)"], tmp_path)
    assert proc.returncode == 2 and not out.exists()          # a bad spec is a failure, not "no drift"
    alert = _template(cases["hostile"], "drift")
    assert alert["container"]["command"] == ["mlprism"] and "outputs" not in alert


def test_workspace_copy_refreshes_code_and_clears_old_trials(cases: dict[str, Case], tmp_path: Path) -> None:
    c = _template(cases["full"], "workspace")["container"]
    argv = [a.replace("/workspace", str(tmp_path / "ws")).replace("/app", str(tmp_path / "app"))
            for a in c["command"] + c["args"]]
    (tmp_path / "app" / "src").mkdir(parents=True)
    (tmp_path / "app" / "src" / "train.py").write_text("new\n")
    (tmp_path / "ws" / "src").mkdir(parents=True)
    (tmp_path / "ws" / "src" / "train.py").write_text("old\n")
    (tmp_path / "ws" / "data").mkdir()
    (tmp_path / "ws" / "data" / "raw.csv").write_text("keep\n")
    (tmp_path / "ws" / ".mlprism-sweeps" / "old").mkdir(parents=True)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ws" / "src" / "train.py").read_text() == "new\n"
    assert (tmp_path / "ws" / "data" / "raw.csv").read_text() == "keep\n"
    assert not (tmp_path / "ws" / ".mlprism-sweeps").exists()
