"""Sweeps: every combination of swept params as its own run.

The grid comes from the spec's ``sweep.params`` (keys under ``params``) and from
Hydra multirun overrides on the command line (``mlprism run SPEC -m
params.lr=0.1,0.01``; Hydra's own override grammar, so ``range(…)`` and
``choice(…)`` work too). A key fixed by a plain command-line override leaves
the grid; a key swept on the command line replaces the spec's values.

Each combination is compiled with its overrides. The first (the leader) runs in
the project directory, like a plain ``mlprism run``; every other one runs in
``.mlprism/sweeps/<sweep-id>/<n>/``: a tree of relative symlinks to the
project's files, where every declared output and metrics file (and the
directories holding them) are real, so runs never write into each other or
into the project. The runs share one process: one project lock, one cache,
one ledger, and ``-j`` slots for all their processes together, and they run at
the same time. A step every combination compiles the same way (and whose
upstream steps are all alike: see ``SharedSteps``) runs once, by the leader;
the others wait for it and take the result from the cache, leaving its outputs
there unless one of their own steps reads them (lazy workspaces). Other steps
with equal fingerprints run once too: by whichever run needs them first.

``sweep.select`` then picks the best run by a metric; its outputs are restored
into the project (only those that differ from the leader's), written to the
lock file, and registered when the spec has a ``registry``. ``mlprism runs
compare <sweep-id>`` shows the sweep as one table.
"""
from __future__ import annotations

import itertools
import os
import posixpath
import shutil
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlprism._internal.compose import check_override_nesting, group_options, override_key
from mlprism._internal.overrides import hydra_value
from mlprism.diagnostics import Diagnostic, DiagnosticError, Location
from mlprism.ir import Pipeline
from mlprism.runtime.executor import (
    STATE_DIR,
    Decision,
    GraphIndex,
    Run,
    RunOptions,
    RunResult,
    Session,
    SharedSteps,
    alike_steps,
    check_secrets,
    dry_run_result,
    plan_decisions,
    plan_sweep_decisions,
    select_steps,
)
from mlprism.runtime.hashing import Digest
from mlprism.runtime.ledger import new_run_id
from mlprism.runtime.lockfile import lock_document, read_lock, render_document, write_lock

__all__ = ["SweepPlan", "link_workspace", "plan_sweep", "run_sweep", "split_sweep_overrides", "sweep_grid"]

Dim = tuple[str, list[str]]          # (override key, ["key=value", …])


def split_sweep_overrides(overrides: list[str] | tuple[str, ...],
                          spec_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """Split command-line overrides into (fixed, swept) with Hydra's override parser; a config group's
    `glob(...)` becomes the list of the options it matches in `spec_dir`'s conf/ (`model=glob(*)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import OverrideParseException

    check_override_nesting(overrides)
    parser = OverridesParser.create()
    fixed, swept = [], []
    for ov in overrides:
        try:
            parsed = parser.parse_overrides([ov])[0]
        except OverrideParseException as exc:
            msg = str(exc).splitlines()[0] if str(exc) else "cannot parse"
            raise DiagnosticError([Diagnostic("MLP110", f"bad override: {msg}", Location(override=ov),
                                              "sweep a key with comma-separated values: params.lr=0.1,0.01")])
        if parsed.is_sweep_override() and isinstance(parsed.value(), Glob):
            ov = _glob_options(ov, str(parsed.key_or_group), parsed.value(), spec_dir)
        (swept if parsed.is_sweep_override() else fixed).append(ov)
    return fixed, swept


def _glob_options(ov: str, group: str, glob: Any, spec_dir: Path | None) -> str:
    """`model@params.model=glob(*)` as `model@params.model=rf,xgb`: the options of conf/model/ it matches."""
    gdir = (spec_dir or Path()) / "conf" / group
    if not gdir.is_dir():
        raise DiagnosticError([Diagnostic("MLP226", f"`{ov}`: glob() sweeps the options of a config group, and "
                                          f"`conf/{group}/` does not exist", Location(override=ov),
                                          "sweep a key by listing its values: params.lr=0.1,0.01")])
    options = group_options(gdir)
    chosen = glob.filter(options)
    if not chosen:
        raise DiagnosticError([Diagnostic("MLP226", f"`{ov}` matches no option of the config group `{group}`",
                                          Location(override=ov),
                                          f"its options: {', '.join(options) or f'none (conf/{group}/ is empty)'}")])
    return f"{ov.split('=', 1)[0]}=choice({','.join(hydra_value(o) for o in chosen)})"   # (one option: a sweep still)


def _cli_dims(swept: tuple[str, ...]) -> list[Dim]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    dims: list[Dim] = []
    for ov in swept:
        parsed = parser.parse_overrides([ov])[0]
        key = parsed.get_key_element()
        if not parsed.is_discrete_sweep():
            raise DiagnosticError([Diagnostic("MLP226", f"`{ov}` is an interval sweep; only lists of values can be run",
                                              Location(override=ov), "give the values: params.lr=0.1,0.01,0.001")])
        values = [f"{key}={v}" for v in parsed.sweep_string_iterator()]
        if not values:
            raise DiagnosticError([Diagnostic("MLP226", f"`{ov}` sweeps no values", Location(override=ov),
                                              "range(start, stop) stops before stop: range(1,4) is 1,2,3")])
        dims.append((key.lstrip("+"), values))
    return dims


def sweep_grid(pipeline: Pipeline, options: RunOptions) -> list[list[str]]:
    """Every combination as a list of overrides, in row-major order of the dimensions."""
    fixed = {override_key(o) for o in pipeline.overrides}
    dims: dict[str, list[str]] = {}
    if pipeline.sweep and not options.no_sweep:
        for name, values in pipeline.sweep.params.items():
            key = f"params.{name}"
            if key not in fixed:
                dims[key] = [f"{key}={hydra_value(v)}" for v in values]
    if options.multirun:
        for key, values in _cli_dims(options.sweep_overrides):
            dims[key] = values
    if not dims:
        return [[]]
    return [list(c) for c in itertools.product(*dims.values())]


def link_workspace(project_dir: Path, workspace: Path, pipeline: Pipeline,
                   selected: Collection[str] | None = None) -> None:
    """Mirror the project in ``workspace`` with relative symlinks; outputs and their directories stay real.

    ``selected``: the steps the run covers (--from, --until); the outputs of the others are inputs
    assumed present, as in the project, so they are linked like any other file."""
    outputs = set()
    for s in pipeline.steps:
        if selected is not None and s.name not in selected:
            continue
        outputs.update(posixpath.normpath(o) for o in s.outputs)
        if s.metrics:
            outputs.add(posixpath.normpath(s.metrics))
    holders = set()
    for o in outputs:
        parts = o.split("/")
        for i in range(1, len(parts)):
            holders.add("/".join(parts[:i]))
    # a registry artifact or a data path produced by a step is an output as well
    skip = {STATE_DIR, ".git"}
    # the holders directly in each directory ("" the project, "a/b/" below it): looked up per
    # directory mirrored, not by a scan of every holder (quadratic with outputs in many directories)
    below: dict[str, list[str]] = {}
    for h in sorted(holders):
        parent, _, name = h.rpartition("/")
        below.setdefault(f"{parent}/" if parent else "", []).append(name)

    def mirror(src_dir: Path, dst_dir: Path, prefix: str) -> None:
        dst_dir.mkdir(parents=True, exist_ok=True)
        try:
            entries = sorted(os.scandir(src_dir), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            rel = f"{prefix}{e.name}"
            if not prefix and e.name in skip:
                continue
            if rel in outputs:
                continue
            dst = dst_dir / e.name
            if rel in holders and e.is_dir(follow_symlinks=False):
                mirror(Path(e.path), dst, rel + "/")
                continue
            os.symlink(os.path.relpath(e.path, dst_dir), dst)
        for name in below.get(prefix, ()):
            (dst_dir / name).mkdir(exist_ok=True)

    mirror(project_dir, workspace, "")


def _combo_label(combo: list[str]) -> str:
    return ",".join(o.split("=", 1)[0].removeprefix("params.") + "=" + o.split("=", 1)[1] for o in combo) or "base"


def _check_left_out(pipeline: Pipeline, index: GraphIndex, selected: set[str], alike: set[str],
                    options: RunOptions) -> None:
    """MLP002 when a selected step reads a left-out step whose outputs differ between the combinations."""
    ups = index.ups
    differ = sorted({u for n in selected for u in ups[n] if u not in selected and u not in alike},
                    key=pipeline.step_names.index)
    if differ:
        flags = " ".join(f"{f} {v}" for f, v in (("--from", options.from_step), ("--until", options.until)) if v)
        names = ", ".join(f"`{n}`" for n in differ)
        raise DiagnosticError([Diagnostic(
            "MLP002", f"{flags} leaves out {names}, whose outputs differ between the sweep's combinations "
                      "(it uses a swept param, or reads a step that does): each combination needs its own",
            None, f"start from {differ[0]} (`--from {differ[0]}`), or run one combination with --no-sweep")])


def run_sweep(project_dir: Path, pipeline: Pipeline, options: RunOptions) -> RunResult:
    """Run every combination, select the best, restore its outputs, register it."""
    from mlprism.runtime.ircache import load_pipelines_cached

    grid = sweep_grid(pipeline, options)
    selected = set(select_steps(pipeline, options))
    spec_path = project_dir / pipeline.spec_file
    compiled = [p for p, _ in load_pipelines_cached(spec_path, [[*pipeline.overrides, *combo] for combo in grid])]
    # --from/--until: the steps left out whose outputs every combination would make alike are read from
    # the project by every combination; one whose outputs differ between them cannot be left out
    index = GraphIndex.of(compiled[0])
    alike = alike_steps(compiled, {n for n in pipeline.step_names if n not in selected}, index)
    _check_left_out(compiled[0], index, selected, alike, options)
    select = pipeline.sweep.select if pipeline.sweep else None
    if options.dry_run:
        plan = _plan_compiled(project_dir, grid, compiled, options)
        result = dry_run_result(pipeline, plan.decisions, plan.data)
        result.sweep = {"runs": [{"combo": c["combo"], "overrides": c["overrides"], "would_run": c["stale"]}
                                 for c in plan.combos],
                        "metric": select.metric if select else None}
        return result
    check_secrets(pipeline, options.env)
    t0 = time.monotonic()
    sweep_id = new_run_id()
    with Session(project_dir, pipeline, options) as session:
        session.shared = True
        display = session.display
        display.run_started(sweep_id, f"{pipeline.name} (sweep)", len(grid), session.jobs, unit="run")
        ledger = session.ledger
        dims_info = [_combo_label(c) for c in grid]
        ledger.start_run(sweep_id, pipeline.name, spec_file=pipeline.spec_file, overrides=list(pipeline.overrides),
                         git_commit=session.git_commit, kind="sweep", params=pipeline.flat_params(), pid=os.getpid(),
                         info={"combos": dims_info, "multirun": list(options.sweep_overrides),
                               "select": {"metric": select.metric, "goal": select.goal} if select else None})
        ledger.commit()
        base = session.state_dir / "sweeps" / sweep_id
        runs: list[Run] = []
        share: SharedSteps | None = None
        try:
            for i, (combo, p) in enumerate(zip(grid, compiled, strict=True)):
                info = {"sweep": sweep_id, "combo": _combo_label(combo), "index": i}
                if i == 0:
                    # the leader: the first combination runs in the project, like a plain run, and runs the
                    # steps every combination shares (see SharedSteps); the others run in workspaces
                    run = Run(session, project_dir, p, options, new_run_id(), write_lock=False, register=False,
                              parent=sweep_id, info=info, lazy=True, leader=True)
                    run.lock = read_lock(run.lock_file)      # it answers for unchanged steps (not written: see below)
                    share = run.share = SharedSteps.of(compiled, run.selected, run.forced)
                else:
                    ws = base / str(i)
                    link_workspace(project_dir, ws, p, set(p.step_names) - alike)
                    run = Run(session, ws, p, options, new_run_id(), write_lock=False, register=False, parent=sweep_id,
                              info=info, lazy=True, share=share)
                run.label = f"{i}"
                run._check_inputs()
                runs.append(run)
        except BaseException:       # e.g. MLP411 before any step ran: the sweep is not left `running`
            ledger.finish_run(sweep_id, "failed")
            ledger.commit()
            shutil.rmtree(base, ignore_errors=True)
            raise
        results: list[RunResult | None] = [None] * len(runs)

        def go(i: int) -> None:
            results[i] = runs[i].execute()

        interrupted = False
        try:
            with ThreadPoolExecutor(max_workers=min(len(runs), session.jobs), thread_name_prefix="mlprism-sweep") as pool:
                futures = [pool.submit(go, i) for i in range(len(runs))]
                try:
                    for f in futures:
                        f.result()
                except KeyboardInterrupt:
                    # stop every combination's steps now: leaving the pool waits for each run to end
                    for f in futures:
                        f.cancel()
                    session.terminate()
                    interrupted = True
        except KeyboardInterrupt:                    # again, while the runs stop
            ledger.finish_run(sweep_id, "interrupted")
            raise
        table = []
        for run, res, combo in zip(runs, results, grid, strict=True):
            assert res is not None or interrupted           # a combination cancelled before it started
            table.append({"run_id": run.run_id, "combo": _combo_label(combo), "overrides": combo,
                          "status": res.status if res is not None else "interrupted", "metrics": run.metrics(),
                          "selected": False})
        # interrupted: nothing is selected nor written to the lock file; the runs' statuses are in the
        # ledger, and the exit code is 1, as a plain run's
        best = _select(table, select.metric, select.goal) if select and not interrupted else None
        messages: list[str] = []
        registered = None
        lock_written = False
        steps = {}
        if best is not None:
            table[best]["selected"] = True
            chosen = runs[best]
            chosen_res = results[best]
            assert chosen_res is not None
            steps = chosen_res.steps
            _restore_outputs(session, chosen, project_dir, runs[0])
            lock_written = _write_project_lock(session, chosen, project_dir, runs[0].lock)
            data = {d.name: session.hasher.digest(project_dir / d.path) for d in chosen.pipeline.data}
            chosen.workdir = project_dir
            registered = chosen.register(data)
            assert select is not None
            messages.append(f"selected run {chosen.run_id} ({table[best]['combo']}): "
                            f"{select.metric} = {table[best]['metrics'][select.metric]:g}; "
                            "its outputs are now in the project")
        elif not interrupted:
            # the steps the leader ran left their outputs in the project: the lock says so
            leader = runs[0]
            lock_written = _write_project_lock(session, leader, project_dir, leader.lock,
                                               [n for n, r in leader.results.items() if r.status == "succeeded"])
            if select:
                messages.append(f"no run succeeded with a `{select.metric}` metric: nothing selected")
        ok_runs = sum(1 for r in table if r["status"] == "succeeded")
        status = ("interrupted" if interrupted
                  else "succeeded" if ok_runs == len(table) and (best is not None or not select) else "failed")
        info = {"combos": dims_info, "runs": [r["run_id"] for r in table],
                "selected": table[best]["run_id"] if best is not None else None,
                "select": {"metric": select.metric, "goal": select.goal} if select else None,
                "registered": registered}
        ledger.finish_run(sweep_id, status, info)
        ledger.commit()
        shutil.rmtree(base, ignore_errors=True)
        for line in _render_table(table, select.metric if select else None):
            display.message(line)
        for m in messages:
            display.message(m)
        result = RunResult(sweep_id, status, steps, time.monotonic() - t0, registered,
                           {"id": sweep_id, "metric": select.metric if select else None,
                            "goal": select.goal if select else None,
                            "selected": table[best]["run_id"] if best is not None else None, "runs": table},
                           str(runs[0].lock_file) if lock_written else None, {}, messages)
        display.run_finished(f"sweep {sweep_id}: {status}: {ok_runs}/{len(table)} runs succeeded"
                             + (f", selected {table[best]['run_id']}" if best is not None else "")
                             + f" in {result.duration:.2f}s", result.ok)
        return result


@dataclass
class SweepPlan:
    """What a run would do (``status``, ``--dry-run``), every combination of the sweep considered.

    ``decisions``: one per step, merged over the combinations: ``run`` when some combination
    would run it (its reasons, led by the first such combination's name unless all would), else
    ``cached`` when some combination has it up to date (the sweep takes the others' outputs
    from the cache), else ``restore``. ``combos``: per combination its label, overrides and
    the steps it would run; empty when the spec has no sweep (or ``--no-sweep``).
    """

    decisions: dict[str, Decision]
    data: dict[str, Digest]
    combos: list[dict[str, Any]]


def plan_sweep(project_dir: Path, pipeline: Pipeline, options: RunOptions,
               lock: dict[str, Any] | None = None) -> SweepPlan:
    """Plan ``pipeline`` as ``mlprism run`` would run it: every combination of its sweep, if it has one.

    ``lock``: the project's lock file, if the caller has read it already."""
    grid = sweep_grid(pipeline, options)
    if grid == [[]]:
        decisions, data = plan_decisions(project_dir, pipeline, options, lock=lock)
        return SweepPlan(decisions, data, [])
    from mlprism.runtime.ircache import load_pipelines_cached

    compiled = [p for p, _ in load_pipelines_cached(project_dir / pipeline.spec_file,
                                                    [[*pipeline.overrides, *combo] for combo in grid])]
    return _plan_compiled(project_dir, grid, compiled, options, lock)


def _plan_compiled(project_dir: Path, grid: list[list[str]], compiled: list[Pipeline],
                   options: RunOptions, lock: dict[str, Any] | None = None) -> SweepPlan:
    plans, data = plan_sweep_decisions(project_dir, compiled, options, lock)
    labels = [_combo_label(c) for c in grid]
    merged: dict[str, Decision] = {}
    for name in plans[0]:
        each = [(label, plan[name]) for label, plan in zip(labels, plans, strict=True) if name in plan]
        runs = [(label, d) for label, d in each if d.action == "run"]
        if runs and len(runs) < len(each):
            label, d = runs[0]
            more = len(runs) - 1
            reasons = [f"{label}: {d.reasons[0]}" if d.reasons else label, *d.reasons[1:]]
            merged[name] = replace(d, reasons=reasons + ([f"and {more} other combination{'s' * (more != 1)}"]
                                                         if more else []))
        elif runs:
            merged[name] = runs[0][1]
        else:
            merged[name] = next((d for _, d in each if d.action == "cached"), each[0][1])
    combos = [{"combo": label, "overrides": combo, "stale": [n for n, d in plan.items() if d.action == "run"]}
              for label, combo, plan in zip(labels, grid, plans, strict=True)]
    return SweepPlan(merged, data, combos)


def _select(table: list[dict[str, Any]], metric: str, goal: str) -> int | None:
    candidates = [(i, r["metrics"][metric]) for i, r in enumerate(table)
                  if r["status"] == "succeeded" and metric in r["metrics"]]
    if not candidates:
        return None
    pick = max if goal == "max" else min
    # ties go to the earliest combination: deterministic
    return pick(candidates, key=lambda iv: (iv[1], -iv[0]) if goal == "max" else (iv[1], iv[0]))[0]


def _restore_outputs(session: Session, run: Run, project_dir: Path, leader: Run) -> None:
    """Put the selected run's outputs into the project (from the cache, else from its workspace).

    The outputs of the steps the leader ran are in the project with the hashes taken when each
    step exited: they are compared by those, not read again (the stat cache does not vouch for a
    file written less than ``RACY_NS`` before it was hashed, so a big output just written would
    be read in full a second time). Any other output is hashed where it is now.
    """
    written = {posixpath.normpath(rel): e.hash for r in leader.results.values()
               if r.status == "succeeded" for rel, e in r.outputs.items()}
    for r in run.results.values():
        for rel, entry in r.outputs.items():
            dest = project_dir / rel
            current = written.get(posixpath.normpath(rel))
            if (current if current is not None else session.hasher.digest(dest).hash) == entry.hash:
                continue
            if session.cache.can_restore(entry):
                session.cache.restore(dest, entry)
                continue
            src = run.workdir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(src, dest)
            else:
                tmp = dest.with_name(f".{dest.name}.mlprism-tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)


def _write_project_lock(session: Session, run: Run, project_dir: Path, lock: dict[str, Any],
                        only: Sequence[str] | None = None) -> bool:
    """Write ``run``'s lock entries (``only`` those steps') over ``lock``, the project's lock file as the
    leader read it when the sweep started (nothing else writes it while the sweep holds the project lock)."""
    steps = dict(lock.get("steps") or {})
    steps.update(run.lock_steps if only is None else {n: run.lock_steps[n] for n in only if n in run.lock_steps})
    names = set(run.pipeline.step_names)
    steps = {k: v for k, v in steps.items() if k in names}
    data = {d.name: {"path": d.path, **session.hasher.digest(project_dir / d.path).to_dict()}
            for d in run.pipeline.data}
    doc = lock_document(run.pipeline.name, data, steps, list(run.pipeline.step_names))
    if doc == lock and list(doc["steps"]) == list(lock["steps"]):
        return False                         # unchanged (a no-op sweep): spare rendering a big lock file
    return write_lock(run.lock_file, render_document(doc), doc)


def _render_table(table: list[dict[str, Any]], metric: str | None) -> list[str]:
    head = ["", "run", "params", "status"] + ([metric] if metric else [])
    rows = []
    for r in table:
        value = r["metrics"].get(metric) if metric else None
        rows.append(["*" if r["selected"] else "", r["run_id"], r["combo"], r["status"]]
                    + ([f"{value:g}" if value is not None else "-"] if metric else []))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(head, widths, strict=True)).rstrip()]
    out += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return out

