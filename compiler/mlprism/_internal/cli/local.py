"""Local commands: run, status, explain, fingerprint, logs, runs (list/show/compare)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mlprism._internal.cli.common import intermixed as _intermixed
from mlprism._internal.cli.common import project_arg as _project_arg
from mlprism.diagnostics import Diagnostic, DiagnosticError, Location


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the pipeline spec (pipeline.yaml)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                   help="Hydra overrides: params.lr=0.1, env=prod, ~monitor")






def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the pipeline here: parallel, cached, tracked",
                       description="Run the pipeline's steps as processes in dependency order, skipping those whose "
                                   "fingerprint is unchanged. Exit 0 ok, 1 a step or gate failed, 2 bad input.")
    _spec_args(p)
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="steps at once (default: CPU count)")
    p.add_argument("--only", nargs="+", metavar="STEP", default=[],
                   help="run just these steps, their inputs assumed present (how CI targets run one step)")
    p.add_argument("--from", dest="from_step", metavar="STEP", help="this step and everything downstream")
    p.add_argument("--until", metavar="STEP", help="this step and everything upstream")
    p.add_argument("--force", nargs="*", metavar="STEP", default=None,
                   help="rerun these steps (all selected steps when none is named) even if up to date")
    p.add_argument("--dry-run", "-n", action="store_true", help="print what would run and why; run nothing")
    p.add_argument("--keep-going", "-k", action="store_true",
                   help="after a failure, go on with the branches that do not depend on it")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="sweep overrides with several values (params.lr=0.1,0.01): one run per combination")
    p.add_argument("--no-sweep", action="store_true", help="ignore the spec's `sweep:` and run once")
    p.add_argument("--in-docker", action="store_true", help="run each step in the pipeline image (`mlprism build`)")
    p.add_argument("--image", help="the image for --in-docker (default: NAME-pipeline:TAG from targets.docker)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress output)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not stream the steps' output")
    p.add_argument("--lock-timeout", type=float, metavar="SECONDS",
                   help="wait at most this long for another run of the project to finish (0: fail at once)")
    p.add_argument("--no-register", action="store_true", help="do not register the model after the run")
    p.set_defaults(handler=cmd_run)
    _intermixed(p)

    p = sub.add_parser("status", help="changed data and stale steps (what the next run would do)",
                       description="Changed data and stale steps: what the next `mlprism run` would do. A spec with "
                       "a sweep is planned as its run would be: a step is stale when some combination would run it.")
    _spec_args(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON (with `sweep.combinations`)")
    p.set_defaults(handler=cmd_status)
    _intermixed(p)

    p = sub.add_parser("explain", help="why a step would rerun: what changed, old and new hashes")
    p.add_argument("spec", help="the pipeline spec")
    p.add_argument("step", help="the step")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_explain)
    _intermixed(p)

    p = sub.add_parser("fingerprint", help="print a step's fingerprint (the cache key every target uses)")
    p.add_argument("spec", help="the pipeline spec")
    p.add_argument("step", help="the step")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE")
    p.add_argument("--json", action="store_true", help="the fingerprint with its components")
    p.set_defaults(handler=cmd_fingerprint)
    _intermixed(p)

    p = sub.add_parser("logs", help="print the logs of a run (all steps, or one)")
    p.add_argument("run", help="a run id, a unique prefix of one, or `latest`")
    p.add_argument("step", nargs="?", help="only this step's log")
    _project_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_logs)

    runs = sub.add_parser("runs", help="the run ledger: list, show, compare")
    rsub = runs.add_subparsers(dest="runs_command", metavar="COMMAND", parser_class=type(runs))
    q = rsub.add_parser("list", help="recent runs")
    _project_arg(q)
    q.add_argument("--limit", "-n", type=int, default=20)
    q.add_argument("--spec", help="only runs of this pipeline name")
    q.add_argument("--all", action="store_true", help="include the runs inside sweeps")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_runs_list)
    q = rsub.add_parser("show", help="one run: steps, params, metrics, artifacts")
    q.add_argument("run", help="a run id, a unique prefix of one, or `latest`")
    _project_arg(q)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_runs_show)
    q = rsub.add_parser("compare", help="params and metrics of runs side by side (a sweep id: all its runs)")
    q.add_argument("runs", nargs="+", help="run ids (or prefixes, `latest`); a sweep's id expands to its runs")
    _project_arg(q)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_runs_compare)
    runs.set_defaults(handler=lambda args: (runs.print_help(), 2)[1])


# -- shared -----------------------------------------------------------------------------------
def _is_override(token: str) -> bool:
    return "=" in token or token.startswith(("~", "+"))


def _split_steps(names: list[str] | None, overrides: list[str]) -> list[str] | None:
    """`--only train params.x=1`: argparse gives both to --only; overrides go back where they belong."""
    if names is None:
        return None
    steps = []
    for n in names:
        (overrides if _is_override(n) else steps).append(n)
    return steps


def _load(args: argparse.Namespace, overrides: list[str] | None = None) -> Any:
    from mlprism._internal.cli import print_diagnostics
    from mlprism.runtime.ircache import load_pipeline_cached

    spec = Path(args.spec)
    if not spec.is_file():
        from mlprism._internal.load import load_file

        load_file(spec, args.spec)        # MLP102, as every command that reads a spec says it (missing, a folder…)
    pipeline, warnings = load_pipeline_cached(args.spec, overrides if overrides is not None else args.overrides,
                                              tuple(args.plugin_options))
    if warnings and not getattr(args, "json", False):
        print_diagnostics(warnings)
    return pipeline


def _project_dir(args: argparse.Namespace) -> Path:
    return Path(args.spec).absolute().parent


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


# -- run ----------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from mlprism.runtime.executor import RunOptions, run_pipeline

    overrides = list(args.overrides)
    only = _split_steps(args.only, overrides) or []
    force = _split_steps(args.force, overrides)
    swept: list[str] = []
    if args.multirun:
        from mlprism.runtime.sweep import split_sweep_overrides

        overrides, swept = split_sweep_overrides(overrides, _project_dir(args))
        if not swept:
            raise DiagnosticError([Diagnostic("MLP002", "-m/--multirun needs an override with several values", None,
                                              "e.g. `mlprism run pipeline.yaml -m params.lr=0.1,0.01`")])
        if only:
            # --only runs steps once, as a CI job does for one combination: the swept values would be dropped
            raise DiagnosticError([Diagnostic(
                "MLP002", f"--only runs the steps once and cannot sweep `{swept[0]}`", Location(override=swept[0]),
                "give one value per key to run one combination with --only, or use --from/--until to sweep "
                "part of the pipeline")])
    # without -m, an override with several values is refused by compose (MLP110), as for every command
    if args.image and not args.in_docker:
        raise DiagnosticError([Diagnostic("MLP002", "--image is used with --in-docker", None,
                                          "add --in-docker, or drop --image")])
    if args.jobs is not None and args.jobs < 1:
        raise DiagnosticError([Diagnostic("MLP002", "-j needs a number of at least 1", None,
                                          "-j N runs up to N steps at once; the default is the number of CPUs")])
    pipeline = _load(args, overrides)
    options = RunOptions(jobs=args.jobs, only=tuple(only), from_step=args.from_step, until=args.until,
                         force=tuple(force) if force is not None else None, dry_run=args.dry_run,
                         keep_going=args.keep_going, multirun=args.multirun, sweep_overrides=tuple(swept),
                         no_sweep=args.no_sweep, in_docker=args.in_docker, image=args.image, json=args.json,
                         quiet=args.quiet, lock_timeout=args.lock_timeout, register=not args.no_register)
    result = run_pipeline(_project_dir(args), pipeline, options)
    if args.dry_run:
        return _print_dry_run(args, pipeline, result)
    if args.json:
        try:
            _dump(result.to_dict())
        except BrokenPipeError:     # the reader left; the run's outcome is still the exit code
            from mlprism.runtime.display import to_devnull

            to_devnull(sys.stdout)
    return 0 if result.ok else 1


def _local_plan(args: argparse.Namespace, pipeline: Any) -> dict[str, Any] | None:
    """The local target's plan.json for this pipeline (None when the local plugin is not loaded)."""
    from mlprism._internal.compiler import emit, get_plugins, project_path_for

    plugins = get_plugins(tuple(args.plugin_options))
    if "local" not in plugins.targets:
        return None
    files = emit(pipeline, "local", plugins, project_path_for(Path(args.spec).absolute()))
    gf = files.get("plan.json")
    return json.loads(gf.data()) if gf is not None else None


def _print_dry_run(args: argparse.Namespace, pipeline: Any, result: Any) -> int:
    if args.json:
        try:
            plan = _local_plan(args, pipeline)
        except DiagnosticError:
            plan = None
        _dump({"dry_run": True, "steps": {n: {"action": r.status, "fingerprint": r.fingerprint, "reason": r.reason}
                                          for n, r in result.steps.items()},
               "sweep": result.sweep, "plan": plan})
        return 0
    from mlprism import graph_layers

    steps = result.steps
    width = max((len(n) for n in steps), default=4)
    print(f"dry run of {pipeline.name}: {len(steps)} step{'s' * (len(steps) != 1)} selected (nothing is run)")
    for name, r in steps.items():
        print(f"  {name:<{width}}  {r.status:<13}  {r.reason}")
    layers = [[n for n in layer if n in steps] for layer in graph_layers(pipeline)]
    layers = [layer for layer in layers if layer]
    print("order (steps on one line may run at the same time):")
    for i, layer in enumerate(layers, 1):
        print(f"  {i}. {', '.join(layer)}")
    if result.sweep:
        runs = result.sweep["runs"]
        print(f"sweep: {len(runs)} runs: " + "; ".join(r["combo"] for r in runs))
    todo = sum(1 for r in steps.values() if r.status != "cached")
    print("everything up to date" if todo == 0 else f"{todo} step{'s' * (todo != 1)} would run or be restored")
    return 0


# -- status / explain / fingerprint ----------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from mlprism.runtime.executor import RunOptions
    from mlprism.runtime.lockfile import lock_path, read_lock
    from mlprism.runtime.sweep import plan_sweep

    pipeline = _load(args)
    project = _project_dir(args)
    lock = read_lock(lock_path(project / pipeline.spec_file))
    plan = plan_sweep(project, pipeline, RunOptions(), lock)      # a sweep: as its run would, every combination
    decisions, data = plan.decisions, plan.data
    data_rows = []
    for d in pipeline.data:
        dg = data[d.name]
        old = (lock.get("data") or {}).get(d.name) or {}
        if not dg.exists:
            state = "missing"
        elif not old:
            state = "new (not in the lock file)"
        elif old.get("hash") != dg.hash:
            state = f"changed: {str(old.get('hash'))[:12]} → {str(dg.hash)[:12]}"
        else:
            state = "unchanged"
        data_rows.append({"name": d.name, "path": d.path, "hash": dg.hash, "size": dg.size, "state": state,
                          "changed": state != "unchanged"})
    labels = {"run": "stale", "restore": "restorable", "cached": "up to date"}
    step_rows = [{"name": n, "state": labels[d.action], "action": d.action, "fingerprint": d.fingerprint.digest,
                  "reasons": d.reasons} for n, d in decisions.items()]
    stale = [r for r in step_rows if r["action"] != "cached"]
    if args.json:
        doc = {"pipeline": pipeline.name, "up_to_date": not stale and not any(r["changed"] for r in data_rows),
               "data": data_rows, "steps": step_rows}
        if plan.combos:
            doc["sweep"] = {"combinations": plan.combos}
        _dump(doc)
        return 0
    changed = [r for r in data_rows if r["changed"]]
    restorable = sum(1 for r in step_rows if r["action"] == "restore")
    print(f"{pipeline.name}: {len(stale)} of {len(step_rows)} step{'s' * (len(step_rows) != 1)} not up to date"
          + (f" ({restorable} restorable from the cache)" if restorable else "")
          + f", {len(changed)} data change{'s' * (len(changed) != 1)}")
    if data_rows:
        print("data:")
        w = max(len(r["name"]) for r in data_rows)
        pw = max(len(r["path"]) for r in data_rows)
        for r in data_rows:
            print(f"  {r['name']:<{w}}  {r['path']:<{pw}}  {r['state']}")
    print("steps:")
    w = max((len(r["name"]) for r in step_rows), default=4)
    for r in step_rows:
        why = "" if r["action"] == "cached" else "  " + "; ".join(r["reasons"])
        print(f"  {r['name']:<{w}}  {r['state']}{why}")
    if plan.combos:
        todo = [c for c in plan.combos if c["stale"]]
        if not todo:
            state = "every one up to date (the project holds one; the others' outputs are in the cache)"
        elif len(todo) == len(plan.combos):
            state = "every one has steps to run"
        else:
            shown = "; ".join(f"{c['combo']} ({', '.join(c['stale'])})" for c in todo[:5])
            state = f"{len(todo)} with steps to run: {shown}" + ("; …" if len(todo) > 5 else "")
        print(f"sweep: {len(plan.combos)} combinations, {state}")
    if not stale and not changed:
        print("everything up to date")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from mlprism.runtime.executor import RunOptions, _Planner, plan_decisions, state_dir_of
    from mlprism.runtime.lockfile import lock_path, read_lock

    overrides = list(args.overrides)
    pipeline = _load(args, overrides)
    if args.step not in pipeline.step_names:
        from mlprism.diagnostics import did_you_mean

        raise DiagnosticError([Diagnostic("MLP407", f"no step is named `{args.step}`", None,
                                          did_you_mean(args.step, pipeline.step_names)
                                          or f"steps: {', '.join(pipeline.step_names)}")])
    project = _project_dir(args)
    decisions, _ = plan_decisions(project, pipeline, RunOptions(until=args.step))
    d = decisions[args.step]
    upstream = {n: x for n, x in decisions.items() if n != args.step and x.action != "cached"}
    # the step's own changes, hashing its inputs as they are on disk now
    from mlprism.runtime.cache import Cache
    from mlprism.runtime.hashing import Hasher

    state = state_dir_of(project)
    planner = _Planner(pipeline, project, Hasher(state if state.is_dir() else None), Cache(state),
                       read_lock(lock_path(project / pipeline.spec_file)), {}, set())
    own = planner.decide(pipeline.step(args.step))
    own_reasons, previous = planner.why_changed(args.step, own.fingerprint)
    if own.action != "run":
        own_reasons = own.reasons
    verdict = {"run": "would run", "restore": "would be restored from the cache", "cached": "is up to date"}[d.action]
    from mlprism.runtime.sweep import sweep_grid

    grid = sweep_grid(pipeline, RunOptions())      # a sweep: this explains one configuration, say which
    sweep_note = None if grid == [[]] else (
        f"the spec sweeps {len(grid)} combinations; this explains the params as given "
        f"({', '.join(f'{k}={v}' for k, v in sorted(own.fingerprint.components['params'].items())) or 'none'}); "
        f"`mlprism status` plans every combination; to explain one, add its overrides, e.g. `{' '.join(grid[0])}`")
    if args.json:
        _dump({"step": args.step, "action": d.action, "reasons": d.reasons, "own_changes": own_reasons,
               "fingerprint": {"new": own.fingerprint.digest, "old": d.previous or previous},
               "upstream": {n: {"action": x.action, "reasons": x.reasons} for n, x in upstream.items()},
               "components": own.fingerprint.components, "sweep_note": sweep_note})
        return 0
    print(f"`{args.step}` {verdict}:")
    for r in d.reasons:
        print(f"  - {r}")
    if own_reasons != d.reasons and own.action == "run":
        print("its own changes (inputs as they are now):")
        for r in own_reasons:
            print(f"  - {r}")
    for n, x in upstream.items():
        print(f"upstream `{n}` {'would run' if x.action == 'run' else 'would be restored'}:")
        for r in x.reasons:
            print(f"  - {r}")
    old = d.previous or previous
    same = " (the lock file's)" if old == own.fingerprint.digest else f" (lock file: {old})" if old else ""
    print(f"fingerprint with the inputs as they are now: {own.fingerprint.digest}{same}")
    if sweep_note:
        print(f"note: {sweep_note}")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from mlprism.runtime.executor import state_dir_of
    from mlprism.runtime.fingerprint import fingerprint_step
    from mlprism.runtime.hashing import Hasher

    pipeline = _load(args, list(args.overrides))
    if args.step not in pipeline.step_names:
        from mlprism.diagnostics import did_you_mean

        raise DiagnosticError([Diagnostic("MLP407", f"no step is named `{args.step}`", None,
                                          did_you_mean(args.step, pipeline.step_names)
                                          or f"steps: {', '.join(pipeline.step_names)}")])
    project = _project_dir(args)
    state = state_dir_of(project)
    fp = fingerprint_step(project, pipeline, args.step, Hasher(state if state.is_dir() else None))
    if args.json:
        _dump({"step": args.step, "fingerprint": fp.digest, "components": fp.components})
    else:
        print(fp.digest)
    return 0


# -- ledger commands ------------------------------------------------------------------------------
def _find_state(args: argparse.Namespace) -> Path:
    start = Path(args.project).absolute()
    if start.is_file():
        start = start.parent
    for d in [start, *start.parents]:
        if (d / ".mlprism" / "ledger.db").is_file():
            return d / ".mlprism"
    raise DiagnosticError([Diagnostic("MLP407", f"no run ledger in {args.project} or above it", None,
                                      "run a pipeline first (`mlprism run pipeline.yaml`), or pass --project DIR")])


def _ledger(args: argparse.Namespace) -> Any:
    import sqlite3

    from mlprism.runtime.ledger import Ledger

    path = _find_state(args) / "ledger.db"
    try:
        return Ledger(path)
    except (sqlite3.Error, OSError) as exc:   # a read-only `.mlprism/` (a mount, another user's project)
        try:
            shown = os.path.relpath(path)
        except (ValueError, OSError):
            shown = str(path)
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DiagnosticError([Diagnostic(
            "MLP410", f"cannot open the run ledger `{shown}`: {reason}", None,
            "SQLite (in WAL mode) writes beside the database even to read it: make `.mlprism/` writable for "
            "this user (or copy the project), then run again")]) from None


def _when(ts: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _dur(run: dict[str, Any]) -> str:
    if run.get("ended") and run.get("started"):
        return f"{run['ended'] - run['started']:.2f}s"
    return "-"


def cmd_runs_list(args: argparse.Namespace) -> int:
    from collections import Counter

    from mlprism.runtime.display import step_counts

    with _ledger(args) as ledger:
        rows = ledger.list_runs(args.limit, args.spec, include_children=args.all)
        if args.json:
            _dump({"runs": rows})
            return 0
        if not rows:
            print("no runs yet")
            return 0
        table = [["run", "pipeline", "kind", "status", "started", "duration", "steps", "overrides"]]
        for r in rows:
            steps = ledger.step_runs(r["id"])
            summary = (step_counts(Counter(s["status"] for s in steps)) if r["kind"] == "run"
                       else f"{len(ledger.children(r['id']))} runs")
            table.append([r["id"], r["spec"], r["kind"], r["status"], _when(r["started"]), _dur(r), summary,
                          " ".join(r["overrides"])])
        _print_table(table)
    return 0


def _print_table(rows: list[list[str]], marks: list[bool] | None = None) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for i, row in enumerate(rows):
        line = "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        if i == 0 and color:
            line = f"\033[1m{line}\033[0m"
        elif marks and marks[i] and color:
            line = f"\033[33m{line}\033[0m"
        print(line)


def cmd_runs_show(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        run_id = ledger.resolve(args.run)
        run = ledger.get_run(run_id)
        data = {"run": run, "steps": ledger.step_runs(run_id), "params": ledger.params(run_id),
                "metrics": ledger.metrics(run_id), "artifacts": ledger.artifacts(run_id),
                "lineage": ledger.lineage(run_id), "children": ledger.children(run_id)}
        if args.json:
            _dump(data)
            return 0
    print(f"run {run['id']} · {run['spec']} · {run['kind']} · {run['status']}")
    print(f"  started {_when(run['started'])}, took {_dur(run)}; git {run['git_commit'] or '-'}")
    if run["overrides"]:
        print(f"  overrides: {' '.join(run['overrides'])}")
    if run["parent"]:
        print(f"  part of sweep {run['parent']}")
    if data["children"]:
        print(f"  runs: {', '.join(c['id'] for c in data['children'])} (selected: {run['info'].get('selected') or '-'})")
    if data["steps"]:
        print("steps:")
        table = [["step", "status", "exit", "duration", "cache", "fingerprint", "error"]]
        for s in data["steps"]:
            table.append([s["step"], s["status"], "" if s["exit_code"] is None else str(s["exit_code"]),
                          f"{s['duration']:.2f}s" if s["duration"] is not None else "-",
                          "hit" if s["cache_hit"] else "", (s["fingerprint"] or "")[:12], s["error"] or ""])
        _indent_table(table)
    if data["params"]:
        print("params:")
        for k, v in data["params"].items():
            print(f"  {k} = {json.dumps(v)}")
    if data["metrics"]:
        print("metrics:")
        for step, values in data["metrics"].items():
            for k, v in values.items():
                print(f"  {step}: {k} = {v:g}")
    arts = data["artifacts"]
    if arts:
        print("artifacts:")
        table = [["role", "step", "path", "hash", "size"]]
        for a in arts:
            table.append([a["role"], a["step"] or "-", a["path"], (a["hash"] or "missing")[:12], str(a["size"] or 0)])
        _indent_table(table)
    return 0


def _indent_table(rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cmd_runs_compare(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        ids: list[str] = []
        for ref in args.runs:
            run_id = ledger.resolve(ref)
            run = ledger.get_run(run_id)
            members = [c["id"] for c in ledger.children(run_id)] if run["kind"] == "sweep" else [run_id]
            ids.extend(i for i in members if i not in ids)
        runs = {i: ledger.get_run(i) for i in ids}
        params = {i: ledger.params(i) for i in ids}
        metrics: dict[str, dict[str, float]] = {}
        for i in ids:
            flat: dict[str, float] = {}
            for step, values in ledger.metrics(i).items():
                for k, v in values.items():
                    flat[f"{step}:{k}"] = v
            metrics[i] = flat
    param_keys = sorted({k for p in params.values() for k in p})
    metric_keys = sorted({k for m in metrics.values() for k in m})
    selected = _selected_by_sweeps(args, runs)
    if args.json:
        _dump({"runs": [{"id": i, "status": runs[i]["status"], "params": params[i], "metrics": metrics[i],
                         "selected": i in selected} for i in ids],
               "differ": {"params": [k for k in param_keys if len({json.dumps(params[i].get(k)) for i in ids}) > 1],
                          "metrics": [k for k in metric_keys if len({metrics[i].get(k) for i in ids}) > 1]}})
        return 0
    header = ["", ""] + [i + (" *" if i in selected else "") for i in ids]
    rows = [header, ["", "status"] + [runs[i]["status"] for i in ids]]
    marks = [False, False]
    for k in param_keys:
        values = [json.dumps(params[i].get(k)) if k in params[i] else "-" for i in ids]
        differ = len(set(values)) > 1
        rows.append(["≠" if differ else "", f"param {k}", *values])
        marks.append(differ)
    for k in metric_keys:
        values = [f"{metrics[i][k]:g}" if k in metrics[i] else "-" for i in ids]
        differ = len(set(values)) > 1
        rows.append(["≠" if differ else "", f"metric {k}", *values])
        marks.append(differ)
    _print_table(rows, marks)
    if any(i in selected for i in ids):
        print("* selected by the sweep")
    return 0


def _selected_by_sweeps(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> set[str]:
    """The runs a sweep selected, among these."""
    parents = {r["parent"] for r in runs.values() if r.get("parent")}
    if not parents:
        return set()
    with _ledger(args) as ledger:
        chosen = {ledger.get_run(p)["info"].get("selected") for p in parents}
    return {i for i in runs if i in chosen}


def cmd_logs(args: argparse.Namespace) -> int:
    state = _find_state(args)
    with _ledger(args) as ledger:
        run_id = ledger.resolve(args.run)
        run = ledger.get_run(run_id)
        steps = ledger.step_runs(run_id)
        children = ledger.children(run_id)
    if run["kind"] == "sweep" and not args.step:
        print(f"run {run_id} is a sweep; its runs: {', '.join(c['id'] for c in children)}")
        return 0
    log_dir = state / "runs" / run_id
    # a step that ran has a log path in the ledger; its file exists only if the step printed something
    names = list(dict.fromkeys(s["step"] for s in steps
                               if s.get("log") or (log_dir / f"{s['step']}.log").exists()))
    if args.step:
        if args.step not in names:
            from mlprism.diagnostics import did_you_mean

            known = [s["step"] for s in steps]
            why = "did not run in it (cached or not selected)" if args.step in known else "is not a step of it"
            raise DiagnosticError([Diagnostic("MLP407", f"run {run_id} has no log of `{args.step}`: it {why}", None,
                                              did_you_mean(args.step, names) or
                                              (f"logs: {', '.join(names)}" if names else "no step ran in this run"))])
        names = [args.step]

    def text_of(name: str) -> str | None:
        try:
            return (log_dir / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return None

    if args.json:
        _dump({"run": run_id, "logs": {n: text_of(n) or "" for n in names}})
        return 0
    if not names:
        print(f"run {run_id}: no step ran (everything was cached)")
    for n in names:
        text = text_of(n)
        if len(names) > 1:
            print(f"==> {n} <==")
        if not text:
            print(f"(`{n}` printed nothing)")
            continue
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
