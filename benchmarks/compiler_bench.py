"""Front-end benchmark: how long `mlprism validate` takes on big generated specs.

    .venv/bin/python benchmarks/compiler_bench.py                 # N = 100, 1000, 10000; 5 runs each
    .venv/bin/python benchmarks/compiler_bench.py --n 1000 --runs 3 --shapes chain,mix
    .venv/bin/python benchmarks/compiler_bench.py --profile 1000 # cProfile of one in-process validate

Every number is a whole process (`mlprism validate SPEC`, start-up included),
median over the runs with the min-max range, plus the peak RSS of the process;
the "in-process" column is the median of `main(["validate", SPEC])` repeated in
one warm interpreter (work beyond start-up). Prints a Markdown table.

Shapes (the generator is also used by the tests):
  chain    s0 → s1 → … → sN-1 (the deepest graph)
  fan      one source fans out to N-2 workers that fan in to one sink
  diamond  layers of 10 steps; every step reads two outputs of the layer before
  mix      a realistic mix: params with interpolation, data, metrics, gates,
           resources, retries, timeouts, `needs`, directory outputs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = ("chain", "fan", "diamond", "mix")


def _step(name: str, run: str, inputs: list[str], outputs: list[str], extra: list[str] | None = None) -> list[str]:
    lines = [f"  {name}:", f"    run: {run}"]
    if inputs:
        lines.append(f"    inputs: [{', '.join(inputs)}]")
    if outputs:
        lines.append(f"    outputs: [{', '.join(outputs)}]")
    lines.extend(f"    {x}" for x in extra or [])
    return lines


def generate_spec(shape: str, n: int, name: str | None = None) -> str:
    """A valid spec of `n` steps in the given shape (inputs are produced or declared data)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {SHAPES}")
    n = max(n, 3)
    head = [
        "apiVersion: mlprism/v1",
        f"name: {name or f'bench-{shape}-{n}'}",
        "description: generated for benchmarks",
        "params:",
        "  lr: 0.1",
        "  depth: 8",
        "  model: {layers: 4, width: 128}",
        "data:",
        "  raw: {path: data/raw.csv}",
        "steps:",
    ]
    body: list[str] = []
    if shape == "chain":
        for i in range(n):
            inp = ["data/raw.csv"] if i == 0 else [f"out/s{i - 1}.txt"]
            body += _step(f"s{i}", f"python step.py --lr ${{params.lr}} --i {i}", inp, [f"out/s{i}.txt"])
    elif shape == "fan":
        body += _step("source", "python split.py ${data.raw.path}", ["data/raw.csv"], ["out/source.txt"])
        for i in range(n - 2):
            body += _step(f"w{i}", f"python work.py --part {i} --depth ${{params.depth}}", ["out/source.txt"],
                          [f"out/w{i}.txt"])
        body += _step("sink", "python merge.py", [f"out/w{i}.txt" for i in range(n - 2)], ["out/sink.txt"])
    elif shape == "diamond":
        width = 10
        for i in range(n):
            layer, pos = divmod(i, width)
            if layer == 0:
                inp = ["data/raw.csv"]
            else:
                prev = (layer - 1) * width
                inp = sorted({f"out/s{prev + pos}.txt", f"out/s{prev + (pos + 1) % width}.txt"})
            body += _step(f"s{i}", f"python step.py {i} ${{params.model.width}}", inp, [f"out/s{i}.txt"])
    else:  # mix
        for i in range(n):
            extra: list[str] = []
            if i == 0:
                inp = ["data/raw.csv"]
            elif i % 7 == 0:
                inp = [f"out/d{i - 7}", f"out/s{i - 1}.txt"]        # a directory output of an earlier step
            else:
                inp = [f"out/s{i - 1}.txt"] + ([f"out/s{i - 3}.txt"] if i >= 3 and i % 3 == 0 else [])
            outs = [f"out/s{i}.txt"] + ([f"out/d{i}"] if i % 7 == 0 else [])
            if i % 5 == 0:
                extra += [f"metrics: metrics/s{i}.json", "gate:", "  - {metric: accuracy, min: 0.5}"]
            if i % 4 == 0:
                extra += ["resources: {cpu: 2, memory: 4Gi}", "retries: 1", "timeout: 30m"]
            if i % 11 == 0 and i > 2:
                extra += [f"needs: [s{i - 2}]"]
            if i % 13 == 0:
                extra += ["env: {STAGE: s" + str(i) + "}"]
            body += _step(f"s{i}", f"python step.py --lr ${{params.lr}} --layers ${{params.model.layers}} --i {i}",
                          inp, outs, extra)
    return "\n".join(head + body) + "\n"


def write_spec(directory: Path, shape: str, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    (directory / "data" / "raw.csv").write_text("a,b\n1,2\n")
    spec = directory / "pipeline.yaml"
    spec.write_text(generate_spec(shape, n))
    return spec


def _mlprism() -> str:
    return str(Path(sys.executable).parent / "mlprism")


def run_process(args: list[str], cwd: Path) -> tuple[float, int, int]:
    """(wall seconds, exit code, peak RSS in KiB) of one real process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr:
        err = proc.stderr.read()
        proc.stderr.close()
        if proc.returncode != 0:
            sys.stderr.write(err.decode(errors="replace"))
    return wall, proc.returncode, usage.ru_maxrss


def in_process(spec: Path, runs: int) -> float:
    """Median seconds of validate in this (warm) interpreter."""
    import contextlib
    import io

    from mlprism._internal.cli import main

    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["validate", str(spec)])
        times.append(time.perf_counter() - t0)
        if code != 0:
            raise SystemExit(f"validate failed on {spec}")
    return statistics.median(times[1:])   # the first run warms caches (imports, schema)


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def bench(sizes: list[int], shapes: list[str], runs: int) -> str:
    rows = ["| spec | steps | validate, whole process, s (min-max) | peak RSS MiB | in-process, s |",
            "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="mlprism-bench-") as tmp:
        base = Path(tmp)
        # start-up: --version and a 3-step spec
        small = write_spec(base / "small", "chain", 3)
        for label, args in (("`mlprism --version`", [_mlprism(), "--version"]),
                            ("3-step chain", [_mlprism(), "validate", str(small)])):
            walls, rss = [], []
            for _ in range(runs):
                wall, code, kib = run_process(args, base)
                if code != 0:
                    raise SystemExit(f"{label} failed")
                walls.append(wall)
                rss.append(kib)
            rows.append(f"| {label} | {3 if 'chain' in label else 0} | {_fmt(walls)} | {max(rss) / 1024:.0f} | "
                        f"{in_process(small, runs) if 'chain' in label else 0:.3f} |")
        for n in sizes:
            for shape in shapes:
                spec = write_spec(base / f"{shape}-{n}", shape, n)
                walls, rss = [], []
                for _ in range(runs):
                    wall, code, kib = run_process([_mlprism(), "validate", str(spec)], spec.parent)
                    if code != 0:
                        raise SystemExit(f"validate failed on {shape} {n}")
                    walls.append(wall)
                    rss.append(kib)
                warm = in_process(spec, max(1, min(runs, 3)))
                rows.append(f"| {shape} | {n} | {_fmt(walls)} | {max(rss) / 1024:.0f} | {warm:.3f} |")
    return "\n".join(rows)


def profile(n: int, shape: str) -> None:
    import contextlib
    import cProfile
    import io
    import pstats

    from mlprism._internal.cli import main

    with tempfile.TemporaryDirectory(prefix="mlprism-prof-") as tmp:
        spec = write_spec(Path(tmp), shape, n)
        with contextlib.redirect_stdout(io.StringIO()):
            main(["validate", str(spec)])              # warm imports
        prof = cProfile.Profile()
        prof.enable()
        with contextlib.redirect_stdout(io.StringIO()):
            main(["validate", str(spec)])
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="100,1000,10000", help="comma-separated step counts")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", type=int, metavar="N", help="profile one in-process validate of N steps")
    ap.add_argument("--emit", metavar="SHAPE:N", help="print a generated spec and exit")
    args = ap.parse_args(argv)
    if args.emit:
        shape, _, n = args.emit.partition(":")
        sys.stdout.write(generate_spec(shape, int(n or 100)))
        return 0
    shapes = [s for s in args.shapes.split(",") if s]
    if args.profile:
        profile(args.profile, shapes[0] if len(shapes) == 1 else "mix")
        return 0
    print(bench([int(x) for x in args.n.split(",")], shapes, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
