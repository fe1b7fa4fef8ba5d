"""The drift monitor workflow: ``monitor.schedule`` -> ``mlprism monitor`` -> (on drift) the pipeline.

Job ``drift`` (``contents: read``): restores the files the monitor compares that
pipeline steps produce (the pipeline saves them under ``mlprism-NAME-monitor-STEP-``;
the newest is restored), runs ``mlprism monitor SPEC --no-retrain`` (exit 0: no
drift, 1: drift, anything else fails the job), writes the report to the job
summary and sets the output ``drifted``. With ``on_drift: alert`` a drift fails the
job (GitHub notifies); with ``none`` it is only reported.

Job ``retrain`` (only with ``on_drift: retrain``, only when drifted; the one job
with ``actions: write``): ``gh workflow run NAME.yml`` on the same ref, so the
pipeline runs again with its own permissions, concurrency, gates and deploy
approval. (A workflow dispatched with the workflow's own token does start a run:
``workflow_dispatch`` is exempt from GitHub's rule against token-triggered runs.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlprism_github.actions import sub
from mlprism_github.text import Script

if TYPE_CHECKING:
    from mlprism_github.workflow import Builder


def monitor_workflow(b: Builder) -> dict[str, Any]:
    from mlprism_github.workflow import _run

    p = b.p
    assert p.monitor is not None
    on: dict[str, Any] = {}
    if p.monitor.schedule:
        on["schedule"] = [{"cron": p.monitor.schedule}]
    on["workflow_dispatch"] = None
    steps: list[dict[str, Any]] = [b.checkout(), b.setup_python(), b.install()]
    for step_name in b.monitor_files:
        key = b.monitor_key(step_name)
        steps.append({"name": f"Restore the newest data of {step_name}", "uses": sub(b.a["cache"], "restore").uses,
                      "with": {"path": b.monitor_archive(step_name), "key": key + "${{ github.run_id }}",
                               "restore-keys": key, "fail-on-cache-miss": True}})
        sh = Script()
        sh.add(f'tar -xf "$RUNNER_TEMP/mlprism-monitor/"{sh.word(step_name + ".tar")}')
        steps.append(_run(f"Unpack the data of {step_name}", sh))
    sh = Script()
    sh.add("set +e",
           f"mlprism monitor {sh.words([p.spec_file, *p.overrides])} --no-retrain "
           '--report-dir "$RUNNER_TEMP/drift-report" 2>&1 | tee "$RUNNER_TEMP/drift.txt"',
           'code="${PIPESTATUS[0]}"',
           "set -e",
           'case "$code" in',
           '  0) drifted=false ;;',
           '  1) drifted=true ;;',
           '  *) echo "mlprism monitor failed (exit $code)" >&2; exit "$code" ;;',
           "esac",
           'echo "drifted=$drifted" >> "$GITHUB_OUTPUT"',
           "{",
           f"  echo '### Drift check of {p.name}: '\"$drifted\"",
           "  echo",
           "  echo '```text'",
           "  sed 's/```/` ` `/g' \"$RUNNER_TEMP/drift.txt\"",
           "  echo '```'",
           '} >> "$GITHUB_STEP_SUMMARY"')
    if p.monitor.on_drift == "alert":      # a failed job is GitHub's alert (notifications, the red badge)
        sh.add('if [ "$drifted" = true ]; then echo "drift detected (on_drift: alert)" >&2; exit 1; fi')
    check = _run("Check for drift", sh)
    check["id"] = "check"
    secrets = {n: f"${{{{ secrets.{n} }}}}" for n in p.environment.secrets}
    if secrets:
        check["env"] = secrets
    steps.append(check)
    steps.append(b.upload("drift-report", "", "ignore", "Upload the drift report", "drift-report", always=True))
    steps.extend(b.records("monitor", False))
    jobs: dict[str, Any] = {
        "drift": {
            "name": f"drift check of {p.name}",
            "runs-on": b.runs_on_default(),
            "permissions": {"contents": "read"},
            **b.job_defaults(),
            "timeout-minutes": 60,
            "outputs": {"drifted": "${{ steps.check.outputs.drifted }}"},
            "steps": steps,
        },
    }
    if p.monitor.on_drift == "retrain":
        sh = Script()
        sh.add(f'gh workflow run {sh.word(p.name + ".yml")} --repo "$GITHUB_REPOSITORY" --ref "$GITHUB_REF_NAME"')
        retrain = _run(f"Start the {p.name} pipeline", sh)
        retrain["env"] = {"GH_TOKEN": "${{ github.token }}"}
        jobs["retrain"] = {
            "name": f"retrain {p.name}",
            "needs": ["drift"],
            "if": "${{ needs.drift.outputs.drifted == 'true' }}",
            "runs-on": b.runs_on_default(),
            "permissions": {"actions": "write"},
            "timeout-minutes": 10,
            "steps": [retrain],
        }
    return {
        "name": f"{p.name}-monitor",
        "on": on,
        "permissions": {},
        "concurrency": {"group": f"mlprism-{p.name}-monitor", "cancel-in-progress": False},
        "defaults": {"run": {"shell": "bash"}},
        "jobs": jobs,
    }
