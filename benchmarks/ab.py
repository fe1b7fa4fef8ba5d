"""Two versions of mlprism side by side, in the same minutes: an interleaved A/B of whole processes.

    .venv/bin/python benchmarks/ab.py 6436929 HEAD                   # every case, 4 runs each
    .venv/bin/python benchmarks/ab.py 6436929 HEAD --cases run --runs 6
    .venv/bin/python benchmarks/ab.py HEAD~3 WORKTREE --cases compile  # WORKTREE: the files as they are

This machine's speed drifts over an hour (other guests of its host): the floors that
`run.py` measures moved by 10-20% between two rounds of the same day, and compiling with
targets nobody had changed took 35-50% longer. Comparing a round's numbers with the last
round's then measures the machine. Here each version is exported (`git archive`) into
`build/ab/<name>/`, its bytecode written, and every case runs the versions in turn
(A B, B A, A B, ...), each process started as a user starts `mlprism` with that version's
code first on PYTHONPATH. Cases:

  small    `mlprism validate` on a 3-step spec
  run      `mlprism run -q -j 2`, N = 1,000, chain, diamond and mix: cold (a never-run project) and no-op
  compile  `mlprism compile` of N = 10,000 to every target that takes the shape

Each line: median wall (min-max) and median CPU (user + system of the process tree) per version.
Work directories are under --workdir (default /dev/shm/mlprism-ab, a tmpfs: file creation
costs vary less there).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import specs  # noqa: E402

#: `python -m mlprism`: the same in every version (the console script names an entry function that a
#: version may not have: `console_main` is newer than the fifth round)
MLPRISM = [sys.executable, "-m", "mlprism"]
RUN = ["run", "pipeline.yaml", "-q", "-j", "2"]


def export(rev: str, dest: Path) -> Path:
    """The version's compiler/ and plugins/ in ``dest``, bytecode written."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if rev == "WORKTREE":
        for part in ("compiler", "plugins"):
            shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "archive", rev, "compiler", "plugins"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    compileall.compile_dir(dest, quiet=1)
    return dest


def timed(tree: Path, argv: list[str], cwd: Path) -> tuple[float, float, int]:
    env = dict(os.environ, PYTHONPATH=f"{tree / 'compiler'}{os.pathsep}{tree / 'plugins'}")
    t0 = time.perf_counter()
    proc = subprocess.Popen([*MLPRISM, *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def project(shape: str, n: int, root: Path) -> Path:
    d = root / f"{shape}-{n}"
    if d.exists():
        shutil.rmtree(d)
    specs.write_mlprism_project(specs.generate(shape, n), d)
    return d


def reset(d: Path) -> None:
    """Back to a never-run project: no state, no outputs, no lock, no generated files."""
    for name in (".mlprism", "out", "gen", "mlprism.lock"):
        p = d / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    metrics = d / "metrics"
    if metrics.is_dir():
        for f in metrics.iterdir():
            f.unlink()


def case(label: str, trees: dict[str, Path], d: Path, argv: list[str], runs: int,
         prepare: Callable[[Path, Path], None]) -> str:
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in trees}
    names = list(trees)
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            prepare(trees[name], d)
            results[name].append(timed(trees[name], argv, d))
    parts = [label]
    for name, rows in results.items():
        walls = [w for w, _, _ in rows]
        cpus = [c for _, c, _ in rows]
        codes = sorted({c for _, _, c in rows})
        parts.append(f"{name} {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}), "
                     f"CPU {statistics.median(cpus):.2f} s" + ("" if codes == [0] else f", exit {codes}"))
    line = " | ".join(parts)
    print(line, flush=True)
    return line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="a git revision, or WORKTREE")
    ap.add_argument("b", help="a git revision, or WORKTREE")
    ap.add_argument("--cases", default="small,run,compile", help="comma-separated: small, run, compile")
    ap.add_argument("--runs", type=int, default=4, help="runs per version and case (default 4)")
    ap.add_argument("--workdir", type=Path, default=Path("/dev/shm/mlprism-ab"))
    ap.add_argument("--build", type=Path, default=ROOT / "build" / "ab", help="where the versions are exported")
    args = ap.parse_args(argv)
    cases = set(args.cases.split(","))
    if unknown := cases - {"small", "run", "compile"}:
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.a == args.b:
        ap.error("compare two different versions")
    trees = {args.a: export(args.a, args.build / "a"), args.b: export(args.b, args.build / "b")}
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"# A/B {args.a} vs {args.b}, {args.runs} runs each, interleaved ({time.strftime('%Y-%m-%d %H:%M')}; "
          f"load average {os.getloadavg()[0]:.1f})", flush=True)
    if "small" in cases:
        d = project("chain", 3, args.workdir)
        case("validate, 3 steps", trees, d, ["validate", "pipeline.yaml"], args.runs, lambda t, d: None)
    if "run" in cases:
        for shape in ("chain", "diamond", "mix"):
            d = project(shape, 1000, args.workdir)
            case(f"{shape} 1,000 cold run", trees, d, RUN, args.runs, lambda t, d: reset(d))

            def warm(tree: Path, d: Path) -> None:
                reset(d)
                timed(tree, RUN, d)

            case(f"{shape} 1,000 no-op run", trees, d, RUN, args.runs, warm)
    if "compile" in cases:
        for shape in ("diamond", "mix"):
            d = project(shape, 10000, args.workdir)
            targets = ["-t", "all"] if shape != "mix" else ["-t", "github-actions", "-t", "kubernetes", "-t", "local"]
            case(f"{shape} 10,000 compile {' '.join(targets)}", trees, d,
                 ["compile", "pipeline.yaml", *targets, "--out", "gen"], args.runs, lambda t, d: reset(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
