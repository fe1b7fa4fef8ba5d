"""Lifecycle commands: models (list, show, promote, rollback, export, history), serve, monitor.

Exit codes: 0 ok, 1 drift detected (monitor), 2 user error (unknown model, refused
operation, bad spec), 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlprism._internal.cli.common import intermixed as _intermixed
from mlprism._internal.cli.common import project_arg as _project_arg
from mlprism.diagnostics import Diagnostic, DiagnosticError


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="the model registry: list, show, promote, rollback, export")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(models))
    models.set_defaults(handler=lambda args: (models.print_help(), 2)[1])

    p = msub.add_parser("list", help="registered versions (of one model, or of all)")
    p.add_argument("name", nargs="?", help="a model name")
    _project_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_models_list)

    p = msub.add_parser("show", help="one version: lineage, metrics, stages, audit trail")
    p.add_argument("ref", metavar="NAME@VERSION", help="NAME@VERSION, NAME@production, NAME@staging or NAME@latest")
    _project_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models_show)

    p = msub.add_parser("promote", help="put a version in a stage (recorded with who/when)")
    p.add_argument("name")
    p.add_argument("version", help="a version number, or a reference such as `latest` or `staging`")
    p.add_argument("--stage", required=True, choices=["staging", "production"])
    p.add_argument("--reason", help="a note kept in the audit trail")
    _project_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models_promote)

    p = msub.add_parser("rollback", help="return a stage to the version it held before")
    p.add_argument("name")
    p.add_argument("--stage", required=True, choices=["staging", "production"])
    p.add_argument("--reason", help="a note kept in the audit trail")
    _project_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models_rollback)

    p = msub.add_parser("export", help="write a version's model file and metadata.json to a directory")
    p.add_argument("ref", metavar="REF", help="NAME@production, NAME@VERSION, …")
    p.add_argument("--out", "-o", required=True, metavar="DIR")
    _project_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models_export)

    p = msub.add_parser("history", help="the audit trail of stage changes")
    p.add_argument("name")
    p.add_argument("--stage", choices=["staging", "production"])
    _project_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models_history)

    p = sub.add_parser("serve", help="serve a model over HTTP (POST /predict, GET /health, GET /metadata)")
    p.add_argument("spec", nargs="?", help="the pipeline spec (default: pipeline.yaml here, unless --model-dir)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides")
    p.add_argument("--model", metavar="NAME@STAGE", help="the model to serve (default: deploy.serve.model)")
    p.add_argument("--model-dir", metavar="DIR", help="serve an exported model (`mlprism models export`) instead")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default: deploy.serve.port, else 8080; 0 picks a free one)")
    p.add_argument("--log-requests", metavar="CSV", default=None,
                   help="append predicted rows to this CSV (default with deploy.serve.log_requests: "
                        ".mlprism/serve/requests.csv)")
    p.set_defaults(handler=cmd_serve)
    _intermixed(p)

    tracking = sub.add_parser("tracking", help="mirror runs and models to MLflow (`tracking: {backend: mlflow}`)")
    tsub = tracking.add_subparsers(dest="tracking_command", metavar="ACTION", parser_class=type(tracking))
    tracking.set_defaults(handler=lambda args: (tracking.print_help(), 2)[1])
    p = tsub.add_parser("sync", help="copy the runs, versions and stages MLflow does not hold yet")
    p.add_argument("spec", help="the pipeline spec")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides")
    p.add_argument("--uri", help="the MLflow tracking URI (default: tracking.uri)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_tracking_sync)
    _intermixed(p)

    p = sub.add_parser("monitor", help="check data drift (monitor.drift); exit 1 on drift")
    p.add_argument("spec", help="the pipeline spec")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides")
    p.add_argument("--watch", action="store_true", help="repeat on monitor.schedule (or every --interval seconds)")
    p.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                   help="with --watch: check every SECONDS instead of on monitor.schedule")
    p.add_argument("--count", type=int, default=None, help=argparse.SUPPRESS)   # with --watch: stop after N checks
    p.add_argument("--no-retrain", action="store_true",
                   help="only report: do not run the pipeline on drift even with `on_drift: retrain`")
    p.add_argument("--report-dir", metavar="DIR",
                   help="write drift.json and drift.html here (default: .mlprism/reports/drift/)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=cmd_monitor)
    _intermixed(p)


# -- helpers -----------------------------------------------------------------------------

def _project_dir(arg: str) -> Path:
    path = Path(arg)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise DiagnosticError([Diagnostic("MLP002", f"project directory {arg} does not exist", None,
                                          "give the spec (or its directory) of an existing project")])
    return path


def _registry(args: argparse.Namespace) -> Any:
    from mlprism.runtime.registry import ModelRegistry

    return ModelRegistry(_project_dir(args.project) / ".mlprism")


def _shown(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith(".." + os.sep + "..") else str(path)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _metrics_text(metrics: dict[str, float], limit: int = 4) -> str:
    items = list(metrics.items())[:limit]
    text = " ".join(f"{k}={v:.4g}" for k, v in items)
    return text + (" …" if len(metrics) > limit else "")


# -- models ----------------------------------------------------------------------------

def cmd_models_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    versions = reg.list(args.name)
    if args.json:
        _print_json({"models": reg.models() if args.name is None else
                     [m for m in reg.models() if m["name"] == args.name],
                     "versions": [v.to_dict() for v in versions]})
        return 0
    if not versions:
        print("no model is registered yet (a pipeline with `registry:` registers one after its gate passes)")
        return 0
    rows = [("MODEL", "VERSION", "STAGES", "CREATED", "RUN", "METRICS")]
    for v in versions:
        rows.append((v.name, str(v.version), ",".join(v.stages) or "-", v.created_at[:19].replace("T", " "),
                     v.run_id or "-", _metrics_text(v.metrics) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    info = _registry(args).show(args.ref)
    if args.json:
        _print_json(info)
        return 0
    lineage = info["lineage"]
    print(f"{info['name']}@{info['version']}  stages: {', '.join(info['stages']) or '-'}")
    print(f"  created   {info['created_at']} by {info['created_by']}")
    print(f"  artifact  {info['filename']} ({info['size']} bytes, blake3 {info['hash'][:16]}…)")
    print(f"  run       {info['run_id'] or '-'}   git {str(lineage.get('git_commit') or '-')[:12]}")
    for key in ("metrics", "params", "data"):
        value = lineage.get(key)
        if value:
            print(f"  {key}:")
            for k, v in sorted(_flat(value).items()):
                print(f"    {k} = {v}")
    if info.get("signature") and info["signature"].get("features"):
        feats = info["signature"]["features"]
        print(f"  features  {len(feats)}")
    if info["history"]:
        print("  history:")
        for h in info["history"]:
            print(f"    {h['at'][:19].replace('T', ' ')}  {h['action']:<9} {h['stage']:<10} "
                  f"v{h['previous'] if h['previous'] is not None else '-'} -> v{h['version']}  by {h['who']}"
                  + (f"  ({h['reason']})" if h.get("reason") else ""))
    return 0


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def cmd_models_promote(args: argparse.Namespace) -> int:
    reg = _registry(args)
    version = args.version
    if not str(version).isdigit():
        version = reg.resolve(f"{args.name}@{version}").version
    change = reg.promote(args.name, int(version), args.stage, reason=args.reason)
    if args.json:
        _print_json(change.to_dict())
    elif change.action == "unchanged":
        print(f"{args.name}@{args.stage} is already version {change.version}")
    else:
        before = f"v{change.previous}" if change.previous is not None else "nothing"
        print(f"promoted {args.name} v{change.version} to {args.stage} (was {before}) by {change.who}")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    change = _registry(args).rollback(args.name, args.stage, reason=args.reason)
    if args.json:
        _print_json(change.to_dict())
    else:
        print(f"rolled back {args.name}@{args.stage}: v{change.previous} -> v{change.version} by {change.who}")
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    reg = _registry(args)
    model = reg.export(args.ref, Path(args.out))
    mv = reg.resolve(args.ref)
    if args.json:
        _print_json({"name": mv.name, "version": mv.version, "model": str(model),
                     "metadata": str(Path(args.out) / "metadata.json")})
    else:
        print(f"exported {mv.name} v{mv.version} to {_shown(model)} (+ metadata.json)")
    return 0


def cmd_models_history(args: argparse.Namespace) -> int:
    reg = _registry(args)
    reg.list(args.name)        # unknown model: MLP407
    changes = reg.history(args.name, args.stage)
    if args.json:
        _print_json([c.to_dict() for c in changes])
        return 0
    if not changes:
        print(f"no stage change recorded for {args.name}")
    for c in changes:
        print(f"{c.at[:19].replace('T', ' ')}  {c.action:<9} {c.stage:<10} "
              f"v{c.previous if c.previous is not None else '-'} -> v{c.version}  by {c.who}"
              + (f"  ({c.reason})" if c.reason else ""))
    return 0


# -- serve -----------------------------------------------------------------------------

def _load_spec(args: argparse.Namespace) -> Any:
    from mlprism._internal.cli.core import load

    return load(args, check_inputs=False)


def cmd_serve(args: argparse.Namespace) -> int:
    from mlprism.runtime.serve import load_model_dir, load_registered, run_server

    log: Path | None = Path(args.log_requests) if args.log_requests else None
    port, host = args.port, args.host or "127.0.0.1"
    if args.model_dir:
        if args.model:
            raise DiagnosticError([Diagnostic("MLP002", "give either --model or --model-dir, not both", None,
                                              "--model NAME@STAGE serves from the project's registry, --model-dir DIR "
                                              "an exported model (`mlprism models export`)")])
        model = load_model_dir(Path(args.model_dir))
        if log is None and os.environ.get("MLPRISM_REQUEST_LOG"):
            log = Path(os.environ["MLPRISM_REQUEST_LOG"])
    else:
        if args.spec is None:
            if not Path("pipeline.yaml").is_file():
                raise DiagnosticError([Diagnostic("MLP002", "no spec given and no pipeline.yaml here",
                                                  hint="mlprism serve SPEC, or mlprism serve --model-dir DIR")])
            args.spec = "pipeline.yaml"
        compiled = _load_spec(args)
        pipeline = compiled.pipeline
        serve = pipeline.deploy.serve if pipeline.deploy else None
        ref = args.model or (serve.model if serve else None)
        if ref is None:
            raise DiagnosticError([Diagnostic(
                "MLP227", f"{args.spec} has no `deploy.serve.model` and no --model was given",
                pipeline.location("deploy"), "add `deploy: {serve: {model: NAME@production}}` or pass --model")])
        project = compiled.spec_path.parent
        model = load_registered(project / ".mlprism", ref)
        if port is None and serve is not None:
            port = serve.port
        if log is None and serve is not None and serve.log_requests:
            log = project / ".mlprism" / "serve" / "requests.csv"
    run_server(model, host=host, port=8080 if port is None else port, request_log=log)
    return 0


# -- tracking --------------------------------------------------------------------------

def cmd_tracking_sync(args: argparse.Namespace) -> int:
    from mlprism.runtime.tracking import sync

    compiled = _load_spec(args)
    pipeline = compiled.pipeline
    if pipeline.tracking.backend != "mlflow" and not args.uri:
        raise DiagnosticError([Diagnostic(
            "MLP227", f"{args.spec} does not mirror to MLflow (`tracking.backend` is `{pipeline.tracking.backend}`)",
            pipeline.location("tracking"), "add `tracking: {backend: mlflow, uri: sqlite:///mlflow.db}` or pass --uri")])
    result = sync(compiled.spec_path.parent, pipeline, uri=args.uri)
    if args.json:
        _print_json(result.to_dict())
    else:
        stages = ", ".join(f"{k}=v{v}" for k, v in result.aliases.items() if v) or "no stage aliases"
        print(f"mlflow {result.uri}: {len(result.runs)} new run(s), {len(result.models)} new model version(s); "
              f"{stages}")
    return 0


# -- monitor ---------------------------------------------------------------------------

def _cron_values(field: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    out: set[int] = set()
    for part in field.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            start, end = lo, hi
        else:
            bounds = [int(b) if b.isdigit() else names[b.lower()] for b in rng.split("-")]
            start = bounds[0]
            end = bounds[1] if len(bounds) == 2 else (hi if step else bounds[0])
        out.update(range(start, end + 1, int(step) if step else 1))
    return out


_MONTHS = {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


def next_fire(expr: str, after: datetime) -> datetime:
    """The first minute after ``after`` (UTC) that matches a five-field cron expression."""
    f = expr.split()
    minutes, hours = _cron_values(f[0], 0, 59, {}), _cron_values(f[1], 0, 23, {})
    doms, months = _cron_values(f[2], 1, 31, {}), _cron_values(f[3], 1, 12, _MONTHS)
    dows = {d % 7 for d in _cron_values(f[4], 0, 7, _DAYS)}
    dom_any, dow_any = f[2] == "*", f[4] == "*"
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    limit = t + timedelta(days=366 * 5)
    while t < limit:
        if t.month not in months:       # jump to the next month, day or hour that can match
            t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            continue
        dom_ok, dow_ok = t.day in doms, (t.weekday() + 1) % 7 in dows
        if not ((dom_ok and dow_ok) if (dom_any or dow_any) else (dom_ok or dow_ok)):
            t = t.replace(hour=0, minute=0) + timedelta(days=1)
            continue
        if t.hour not in hours:
            t = t.replace(minute=0) + timedelta(hours=1)
            continue
        if t.minute in minutes:
            return t
        t += timedelta(minutes=1)
    raise DiagnosticError([Diagnostic("MLP211", f"`{expr}` never fires")])


def _check_once(args: argparse.Namespace, compiled: Any) -> int:
    from mlprism._internal.cli import print_diagnostics
    from mlprism.runtime.drift import check_drift, run_retrain, should_retrain

    pipeline = compiled.pipeline
    project = compiled.spec_path.parent
    result = check_drift(pipeline, project, report_dir=Path(args.report_dir) if args.report_dir else None)
    report = result.report
    retrain = not args.no_retrain and should_retrain(pipeline, result)
    if not args.json:
        print(report.summary())
        print(f"report: {_shown(result.html_path)} (and {result.json_path.name})", flush=True)
        if report.drifted:
            hint = f"open {_shown(result.html_path)}; " + (
                "on_drift: retrain runs the pipeline now" if retrain
                else f"retrain on fresh data with `mlprism run {args.spec}`")
            print_diagnostics([Diagnostic(
                "MLP409", f"drift detected in {len(report.drifted_columns)} of {len(report.columns)} column(s): "
                f"{', '.join(report.drifted_columns[:8])}{' …' if len(report.drifted_columns) > 8 else ''}",
                pipeline.location("monitor.drift"), hint)])
            sys.stderr.flush()
    if retrain:
        from mlprism.runtime.executor import RunOptions

        result.retrain = run_retrain(pipeline, project, result.report_id, RunOptions(json=args.json))
        if not args.json:
            r = result.retrain
            print(f"retrain: run {r.get('run_id')} {r.get('status')}" + (f": {r['message']}" if r.get("message") else ""))
    if args.json:
        _print_json({**report.to_dict(), "report_json": str(result.json_path), "report_html": str(result.html_path),
                     "ledger_report_id": result.report_id, "retrain": result.retrain})
    return 1 if report.drifted else 0


def cmd_monitor(args: argparse.Namespace) -> int:
    compiled = _load_spec(args)
    pipeline = compiled.pipeline
    if pipeline.monitor is None:
        raise DiagnosticError([Diagnostic("MLP227", f"{args.spec} has no `monitor` section",
                                          hint="add `monitor: {drift: {reference: data/train.csv, current: data/live.csv}}`")])
    if not args.watch:
        return _check_once(args, compiled)
    if args.interval is None and not pipeline.monitor.schedule:
        raise DiagnosticError([Diagnostic("MLP227", "--watch needs `monitor.schedule` (a cron expression) or --interval",
                                          pipeline.location("monitor"), 'add `schedule: "0 * * * *"` under `monitor`')])
    checks, code = 0, 0
    while True:
        if checks:      # the first check runs at once, the next ones on the schedule
            if args.interval is not None:
                wait = args.interval
                when = datetime.now(UTC) + timedelta(seconds=wait)
            else:
                when = next_fire(str(pipeline.monitor.schedule), datetime.now(UTC))
                wait = max((when - datetime.now(UTC)).total_seconds(), 0)
            if not args.json:
                print(f"next check at {when.strftime('%Y-%m-%d %H:%M:%S')} UTC", flush=True)
            time.sleep(wait)
            compiled = _load_spec(args)      # pick up edits to the spec between checks
        code = _check_once(args, compiled)
        sys.stdout.flush()
        checks += 1
        if args.count is not None and checks >= args.count:
            return code
