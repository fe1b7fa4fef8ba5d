"""Where one `mlprism run` spends its time: the stages of a whole process, on a timeline.

    .venv/bin/python benchmarks/phases.py chain 1000               # one cold run of a generated project
    .venv/bin/python benchmarks/phases.py mix 1000 --runs 3        # three cold runs, each from a never-run state
    .venv/bin/python benchmarks/phases.py diamond 1000 --no-op     # a cold run, then the same command again
    .venv/bin/python benchmarks/phases.py chain 1000 --per-step    # and the parts of each step, on the loop's thread

``run.py`` and ``ab.py`` time whole processes; this says what is inside one. Each run is a new
interpreter (this script with ``--child``) that puts timers around a few functions of mlprism
and then runs ``mlprism run pipeline.yaml -q -j 2`` in-process, as the console script would:
the interpreter's start and the imports, the IR cache's key, each compiler stage (the
compiler's own clock: ``mlprism validate --timings``), the IR cache's write, the checks
before the first step, each run's scheduling loop (a sweep has one per combination), the
lock file, and every ``posix_spawn`` of a step (count, total, median, 90th percentile).
A timer costs about a microsecond a call: the loop's steps are not timed one by one, unless
``--per-step`` asks for it: then the parts of a step in the scheduling loop (``PER_STEP``) are timed
for every step (a few microseconds a step more), with the gaps between them on each loop's thread —
from a step's exit handled to the next process started (the runner's own work on a chain's critical
path), and from a process started to its exit handled (the process itself, and the loop noticing).

The project is generated with ``benchmarks/specs.py`` under --workdir (a tmpfs by default)
and reset to a never-run state before each cold run; mlprism's bytecode is written first, as
``run.py`` and ``ab.py`` do. Internals that a version of mlprism no longer has are
reported as not timed, not guessed; so are the stages of a module the run never imports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

#: (module, attribute path, label): what the child times, in the order a run meets them
TIMED = [
    ("mlprism.runtime.ircache", "_Loader.key", "IR cache key"),
    ("mlprism._internal.compiler", "get_plugins", "plugins"),
    ("mlprism._internal.compiler", "load_pipeline", "compile"),
    ("mlprism.runtime.ircache", "_store", "IR cache write"),
    ("mlprism.runtime.ircache", "_store_many", "IR cache write (sweep)"),
    ("mlprism.runtime.executor", "Session.__enter__", "session start"),
    ("mlprism.runtime.sweep", "SharedSteps.of", "shared steps"),
    ("mlprism.runtime.sweep", "link_workspace", "workspace"),
    ("mlprism.runtime.executor", "Run._check_escapes", "path checks"),
    ("mlprism.runtime.executor", "Run._check_inputs", "input checks"),
    ("mlprism.runtime.executor", "Run._loop", "loop"),
    ("mlprism.runtime.executor", "Run._write_lock", "lock file"),
    ("mlprism.runtime.sweep", "_restore_outputs", "selected outputs"),
    ("mlprism.runtime.sweep", "_write_project_lock", "lock file (sweep)"),
    ("mlprism.runtime.executor", "Session.__exit__", "session end"),
]

#: (module, attribute path, label): with --per-step, timed at every call, in the order a step meets them
PER_STEP = [
    ("mlprism.runtime.executor", "_Planner.decide", "decide (inputs hashed, fingerprint, cache)"),
    ("mlprism.runtime.executor", "Run._start", "start (outputs cleared, log, spawn)"),
    ("mlprism.runtime.executor", "Run._exited", "exit handled (outputs checked, hashed)"),
    ("mlprism.runtime.executor", "Run._finish", "finish (gate, ledger, lock entry, display)"),
    ("mlprism.runtime.executor", "Run._save_later", "save (cache record; after the next start)"),
]


def child(argv: list[str]) -> None:
    """Run `mlprism run` here with timers; print the marks as JSON on stderr's last line."""
    t0 = time.perf_counter()
    import functools
    import importlib.abc
    import importlib.util
    import threading

    marks: list[dict[str, Any]] = []
    missing: list[str] = []
    spawns: list[float] = []
    per_step = os.environ.get("MLPRISM_PHASES_PER_STEP") == "1"
    calls: list[tuple[str, float, float, int]] = []        # (label, start, end, thread): with --per-step

    def wrap(owner: Any, name: str, label: str) -> None:
        f = getattr(owner, name)

        @functools.wraps(f)
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                result = f(*a, **k)
            finally:
                marks.append({"label": label, "at": t - t0, "took": time.perf_counter() - t,
                              "thread": threading.current_thread().name})
            if label == "compile" and getattr(result, "timings", None):
                marks[-1]["stages"] = {k: round(v, 4) for k, v in result.timings.items()}
            return result
        setattr(owner, name, timed)

    def wrap_each(owner: Any, name: str, label: str) -> None:
        f = getattr(owner, name)
        add = calls.append
        clock = time.perf_counter
        ident = threading.get_ident

        @functools.wraps(f)
        def timed(*a: Any, **k: Any) -> Any:
            t = clock()
            try:
                return f(*a, **k)
            finally:
                add((label, t, clock(), ident()))
        setattr(owner, name, timed)

    def wrap_module(module: Any) -> None:
        for name_, path, label in TIMED + (PER_STEP if per_step else []):
            if name_ != module.__name__:
                continue
            try:
                owner: Any = module
                *outer, name = path.split(".")
                for part in outer:
                    owner = getattr(owner, part)
                getattr(owner, name)
            except AttributeError:
                missing.append(f"{name_}.{path}")
                continue
            (wrap_each if (name_, path, label) in PER_STEP else wrap)(owner, name, label)

    class AfterImport(importlib.abc.MetaPathFinder):
        """Wraps a timed module's functions once it is imported (by the run, when the run imports it)."""

        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname not in pending:
                return None
            pending.discard(fullname)
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                execute(module)
                wrap_module(module)
            spec.loader.exec_module = exec_module     # type: ignore[method-assign]
            return spec

    pending = {module for module, _, _ in TIMED}
    for module in list(pending):
        if module in sys.modules:
            pending.discard(module)
            wrap_module(sys.modules[module])
    sys.meta_path.insert(0, AfterImport())
    from mlprism._internal.cli import console_main
    imported = time.perf_counter() - t0

    spawn = os.posix_spawn

    def timed_spawn(*a: Any, **k: Any) -> int:
        t = time.perf_counter()
        try:
            return spawn(*a, **k)
        finally:
            end = time.perf_counter()
            spawns.append(end - t)
            if per_step:
                calls.append(("posix_spawn", t, end, threading.get_ident()))
    os.posix_spawn = timed_spawn

    sys.argv = ["mlprism", *argv]
    code = 0
    try:
        console_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    missing += sorted(f"{module} (not imported by this run)" for module in pending)
    print(json.dumps({"imported": imported, "marks": marks, "missing": missing, "spawns": spawns,
                      "exit": time.perf_counter() - t0, "code": code,
                      "per_step": per_step_summary(calls) if per_step else None}), file=sys.stderr)


def _stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "total": sum(values), "median": statistics.median(values) if values else 0.0}


def per_step_summary(calls: list[tuple[str, float, float, int]]) -> dict[str, Any]:
    """Each timed part's calls (count, total, median), and the gaps on each loop's thread between a
    step's exit handled and the next process started, and between a process started and its exit handled."""
    parts: dict[str, list[float]] = {}
    for label, start, end, _ in calls:
        parts.setdefault(label, []).append(end - start)
    exited = PER_STEP[2][2]
    after_exit: list[float] = []
    running: list[float] = []
    for thread in {c[3] for c in calls}:
        mine = sorted((c for c in calls if c[3] == thread and c[0] in (exited, "posix_spawn")), key=lambda c: c[1])
        for before, after in itertools.pairwise(mine):
            if before[0] == exited and after[0] == "posix_spawn":
                after_exit.append(after[1] - before[2])
            elif before[0] == "posix_spawn" and after[0] == exited:
                running.append(after[1] - before[2])
    return {"parts": {k: _stats(v) for k, v in parts.items()},
            "gaps": {"exit handled -> next process started": _stats(after_exit),
                     "process started -> its exit handled": _stats(running)}}


def measure(project: Path, python: str, per_step: bool = False) -> dict[str, Any]:
    """One run in ``project``: the child's report, and the wall time of the whole process seen from here."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "compiler"), str(ROOT / "plugins")]),
               MLPRISM_PHASES_PER_STEP="1" if per_step else "0")
    t = time.perf_counter()
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--child", "run", "pipeline.yaml", "-q", "-j", "2"],
                          cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    report["wall"] = wall
    return report


def render(report: dict[str, Any], steps: int) -> list[str]:
    lines = [f"  {'import of the CLI':34s} {'0.000':>7s} {report['imported']:7.3f} s"]
    cursor = report["imported"]              # the timeline is accounted for up to here (by some thread's stage)
    for m in sorted(report["marks"], key=lambda m: m["at"]):
        if m["at"] - cursor > 0.005:
            lines.append(f"  {'(untimed: imports, setup)':34s} {cursor:7.3f} {m['at'] - cursor:7.3f} s")
        cursor = max(cursor, m["at"] + m["took"])
        extra = ""
        if "stages" in m:
            extra = "  (" + ", ".join(f"{k} {v * 1000:.0f}" for k, v in m["stages"].items() if v >= 0.0005) + " ms)"
        if m["label"] == "loop" and steps:
            extra = f"  ({m['took'] / steps * 1000:.2f} ms per step of the spec; {m['thread']})"
        lines.append(f"  {m['label']:34s} {m['at']:7.3f} {m['took']:7.3f} s{extra}")
    sp = sorted(report["spawns"])
    if sp:
        lines.append(f"  {'posix_spawn, ' + str(len(sp)) + ' calls':34s} {'':7s} {sum(sp):7.3f} s  (median "
                     f"{statistics.median(sp) * 1000:.3f} ms, 90th percentile {sp[9 * len(sp) // 10] * 1000:.3f} ms)")
    lines.append(f"  {'exit (seen inside / from outside)':34s} {report['exit']:7.3f} {report['wall']:7.3f} s"
                 + ("" if report["code"] == 0 else f"  EXIT {report['code']}"))
    if report["missing"]:
        lines.append(f"  not timed: {', '.join(report['missing'])}")
    summary = report.get("per_step")
    if summary:
        lines.append(f"  {'per step (calls):':34s} {'total':>7s} {'median':>9s}")
        for label, st in [*summary["parts"].items(), *summary["gaps"].items()]:
            if st["n"]:
                lines.append(f"    {label[:44] + ' (' + str(st['n']) + ')':48s} {st['total']:7.3f} s "
                             f"{st['median'] * 1e6:6.0f} µs")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", help="chain, fan, diamond or mix (benchmarks/specs.py)")
    ap.add_argument("n", type=int, help="number of steps")
    ap.add_argument("--runs", type=int, default=1, help="cold runs, each in a fresh copy (default 1)")
    ap.add_argument("--no-op", action="store_true", help="after each cold run, time the same command again")
    ap.add_argument("--per-step", action="store_true",
                    help="also time the parts of every step in the scheduling loop (see PER_STEP)")
    ap.add_argument("--workdir", type=Path, default=Path("/dev/shm/mlprism-phases"))
    args = ap.parse_args(argv)
    import specs
    from ab import project as generate
    from ab import reset
    from run import precompile

    if args.shape not in specs.SHAPES:
        ap.error(f"unknown shape {args.shape!r}: one of {', '.join(specs.SHAPES)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    project = generate(args.shape, args.n, args.workdir)
    precompile()
    print(f"# phases of `mlprism run pipeline.yaml -q -j 2`: {args.shape}, {args.n:,} steps "
          f"({time.strftime('%Y-%m-%d %H:%M')}; load average {os.getloadavg()[0]:.1f})")
    print("#   stage                              at (s)  took")
    for i in range(args.runs):
        reset(project)
        print(f"cold run {i + 1}:")
        print("\n".join(render(measure(project, sys.executable, args.per_step), args.n)), flush=True)
        if args.no_op:
            print(f"no-op run {i + 1}:")
            print("\n".join(render(measure(project, sys.executable, args.per_step), args.n)), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        sys.exit(main())
