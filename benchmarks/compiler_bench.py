"""Where a compile's time goes: seconds per compiler stage and per target, on generated specs.

    .venv/bin/python benchmarks/compiler_bench.py                         # diamond and mix, N = 1,000 and 10,000
    .venv/bin/python benchmarks/compiler_bench.py --sizes 10000 --shapes mix --runs 3 --jobs 1
    .venv/bin/python benchmarks/compiler_bench.py --profile mix:10000 --target kubernetes   # cProfile, in process

Each run is a whole process, `mlprism compile SPEC --target T --timings` (timed by
`benchmarks/run.py`'s `measure`; targets as run.py compiles them: every installed one that
can express the shape), on the workloads of `benchmarks/specs.py`. The table shows, per stage, the
median over the runs of the seconds the compiler itself reports (`--timings`), then the
process's wall time, CPU time and peak RSS. `emit <target>` is measured where the target
ran: with `--jobs` > 1 targets run side by side and `emit (N workers)` is their wall time.
`benchmarks/run.py` is the side-by-side benchmark with the peers; this one is for finding
the slow stage.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import specs  # noqa: E402
from run import compile_all_argv, measure, mlprism_bin, precompile  # noqa: E402

_TIMING = re.compile(r"^timing: (\S.*?)\s+(\d+\.\d+) s$")


def write_spec(directory: Path, shape: str, n: int) -> Path:
    """A generated project (spec and data files) in `directory`; the spec's path. Also used by the tests."""
    return specs.write_mlprism_project(specs.generate(shape, n), directory)


def target_args(shape: str, target: str) -> list[str]:
    """`--target` arguments: one target, or every one that can express the shape (as run.py compiles it)."""
    return ["--target", target] if target != "all" else compile_all_argv(shape)[0]


def compile_once(spec: Path, targets: list[str], jobs: int | None) -> tuple[dict[str, float], float, float, int]:
    """(stage seconds, wall, CPU, peak RSS KiB) of one `mlprism compile --timings` process."""
    args = [*mlprism_bin(), "compile", str(spec), "--out", str(spec.parent / "gen"), "--timings", *targets]
    if jobs is not None:
        args += ["--jobs", str(jobs)]
    log = spec.parent / "compile.log"
    log.unlink(missing_ok=True)
    sample = measure(args, spec.parent, log=log)
    text = log.read_text()
    if sample.rc != 0:
        raise SystemExit(f"compile failed on {spec}:\n{text}")
    stages = {m.group(1): float(m.group(2)) for m in map(_TIMING.match, text.splitlines()) if m}
    return stages, sample.wall, sample.cpu, sample.rss_kib


def bench(shapes: list[str], sizes: list[int], runs: int, target: str, jobs: int | None) -> str:
    cells: list[tuple[str, int, list[tuple[dict[str, float], float, float, int]]]] = []
    with tempfile.TemporaryDirectory(prefix="mlprism-compile-bench-") as tmp:
        for n in sizes:
            for shape in shapes:
                spec = write_spec(Path(tmp) / f"{shape}-{n}", shape, n)
                cells.append((shape, n, [compile_once(spec, target_args(shape, target), jobs) for _ in range(runs)]))
    stages: list[str] = []
    for _, _, measured in cells:
        stages += [s for s in measured[0][0] if s not in stages]
    rows = ["| shape | N | " + " | ".join(stages) + " | wall | CPU | peak RSS |",
            "|---|---:|" + "---:|" * (len(stages) + 3)]
    for shape, n, measured in cells:
        times = [f"{statistics.median(m[0][s] for m in measured):.2f}" if s in measured[0][0] else "—" for s in stages]
        wall = statistics.median(m[1] for m in measured)
        cpu = statistics.median(m[2] for m in measured)
        rss = max(m[3] for m in measured) / 1024
        rows.append(f"| {shape} | {n:,} | " + " | ".join(times) + f" | **{wall:.2f} s** | {cpu:.2f} s | {rss:.0f} MiB |")
    return "\n".join(rows)


def profile(shape: str, n: int, target: str, top: int) -> None:
    """cProfile of one in-process compile (the cyclic GC paused as the CLI does), by cumulative time."""
    import contextlib
    import cProfile
    import io
    import pstats

    from mlprism._internal.cli import main

    with tempfile.TemporaryDirectory(prefix="mlprism-prof-") as tmp:
        spec = write_spec(Path(tmp) / "p", shape, n)
        args = ["compile", str(spec), "--out", str(spec.parent / "gen"), "--jobs", "1", *target_args(shape, target)]
        prof = cProfile.Profile()
        with contextlib.redirect_stdout(io.StringIO()):
            prof.enable()
            code = main(args)
            prof.disable()
        if code != 0:
            raise SystemExit(f"compile failed ({code})")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated step counts")
    ap.add_argument("--shapes", default="diamond,mix", help=f"comma-separated, of: {', '.join(specs.SHAPES)}")
    ap.add_argument("--runs", type=int, default=3, help="processes per cell (median)")
    ap.add_argument("--target", default="all", help="one target, or `all` (default)")
    ap.add_argument("--jobs", type=int, help="`mlprism compile --jobs` (default: the CLI's)")
    ap.add_argument("--profile", metavar="SHAPE:N", help="cProfile one in-process compile instead")
    ap.add_argument("--top", type=int, default=40, help="rows of the profile")
    args = ap.parse_args(argv)
    profiled, _, n = (args.profile or "").partition(":")
    shapes = [profiled] if args.profile else [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in specs.SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(specs.SHAPES)}")
    if args.profile:
        profile(profiled, int(n or 1000), args.target, args.top)
        return 0
    precompile()
    print(bench(shapes, [int(x) for x in args.sizes.split(",")], args.runs, args.target, args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
