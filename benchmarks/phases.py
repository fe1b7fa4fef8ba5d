"""Where one `mlprism run` spends its time: the stages of a whole process, on a timeline.

    .venv/bin/python benchmarks/phases.py chain 1000               # one cold run of a generated project
    .venv/bin/python benchmarks/phases.py mix 1000 --runs 3        # three cold runs, each from a never-run state
    .venv/bin/python benchmarks/phases.py diamond 1000 --no-op     # a cold run, then the same command again

``run.py`` and ``ab.py`` time whole processes; this says what is inside one. Each run is a new
interpreter (this script with ``--child``) that puts timers around a few functions of mlprism
and then runs ``mlprism run pipeline.yaml -q -j 2`` in-process, as the console script would:
the interpreter's start and the imports, the IR cache's key, each compiler stage (the
compiler's own clock: ``mlprism validate --timings``), the IR cache's write, the checks
before the first step, each run's scheduling loop (a sweep has one per combination), the
lock file, and every ``posix_spawn`` of a step (count, total, median, 90th percentile).
A timer costs about a microsecond a call: the loop's steps are not timed one by one.

The project is generated with ``benchmarks/specs.py`` under --workdir (a tmpfs by default)
and reset to a never-run state before each cold run; mlprism's bytecode is written first, as
``run.py`` and ``ab.py`` do. Internals that a version of mlprism no longer has are
reported as not timed, not guessed; so are the stages of a module the run never imports.
"""

from __future__ import annotations

import argparse
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

    def wrap_module(module: Any) -> None:
        for name_, path, label in TIMED:
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
            wrap(owner, name, label)

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
            spawns.append(time.perf_counter() - t)
    os.posix_spawn = timed_spawn

    sys.argv = ["mlprism", *argv]
    code = 0
    try:
        console_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    missing += sorted(f"{module} (not imported by this run)" for module in pending)
    print(json.dumps({"imported": imported, "marks": marks, "missing": missing, "spawns": spawns,
                      "exit": time.perf_counter() - t0, "code": code}), file=sys.stderr)


def measure(project: Path, python: str) -> dict[str, Any]:
    """One run in ``project``: the child's report, and the wall time of the whole process seen from here."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "compiler"), str(ROOT / "plugins")]))
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
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", help="chain, fan, diamond or mix (benchmarks/specs.py)")
    ap.add_argument("n", type=int, help="number of steps")
    ap.add_argument("--runs", type=int, default=1, help="cold runs, each in a fresh copy (default 1)")
    ap.add_argument("--no-op", action="store_true", help="after each cold run, time the same command again")
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
        print("\n".join(render(measure(project, sys.executable), args.n)), flush=True)
        if args.no_op:
            print(f"no-op run {i + 1}:")
            print("\n".join(render(measure(project, sys.executable), args.n)), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        sys.exit(main())
