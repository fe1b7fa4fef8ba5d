#!/usr/bin/env python3
"""Benchmark of the local target (`mlprism run`): per-step overhead and hashing speed.

    python benchmarks/local_bench.py                    # N = 100, 1000, 10000; 1 GiB hashing file
    python benchmarks/local_bench.py --sizes 100,1000 --hash-mib 256 --jobs 2

For each shape (a chain, and a layered diamond: layers of 10 steps, each reading
two outputs of the layer before) and each N, it generates a spec of N trivial
steps (`echo i > out/s_i.txt`) and times, as a user would, whole `mlprism run`
commands (process start, compile, run, lock file, ledger):

- cold:     a fresh project (no .mlprism, no lock, no outputs): every step runs
- no-op:    the same command again: everything is cached
- touch:    one input's mtime changes (same bytes): it is rehashed, nothing reruns
- edit:     the first input's bytes change: the first step reruns; its output is
            the same bytes, so nothing downstream reruns

Then it hashes one big file with blake3 (the runtime's hasher, mmap and threads),
md5 and sha256 (hashlib), and plain reads, with the file in the page cache.
Prints a Markdown table. Reference (issue 3, same kind of 2-core machine,
N = 1,000): no-op rerun snakemake 1.7 s, ploomber 8 s, dvc 16 s; cold run
snakemake or ploomber 18 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mlprism_cmd() -> list[str]:
    script = Path(sys.executable).parent / "mlprism"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlprism"]


def chain_spec(n: int) -> str:
    lines = ["apiVersion: mlprism/v1", f"name: chain-{n}", "data:", "  seed: {path: data/seed.txt}", "steps:"]
    for i in range(n):
        inp = "data/seed.txt" if i == 0 else f"out/s{i - 1}.txt"
        lines += [f"  s{i}:", f"    run: echo {i} > out/s{i}.txt", f"    inputs: [{inp}]", f"    outputs: [out/s{i}.txt]"]
    return "\n".join(lines) + "\n"


def diamond_spec(n: int, width: int = 10) -> str:
    lines = ["apiVersion: mlprism/v1", f"name: diamond-{n}", "data:", "  seed: {path: data/seed.txt}", "steps:"]
    for i in range(n):
        layer, j = divmod(i, width)
        if layer == 0:
            inputs = ["data/seed.txt"]
        else:
            prev = (layer - 1) * width
            inputs = sorted({f"out/s{prev + j}.txt", f"out/s{prev + (j + 1) % width}.txt"})
        lines += [f"  s{i}:", f"    run: echo {i} > out/s{i}.txt", f"    inputs: [{', '.join(inputs)}]",
                  f"    outputs: [out/s{i}.txt]"]
    return "\n".join(lines) + "\n"


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every process it started)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_pipeline(root: Path, shape: str, n: int, jobs: int) -> dict[str, tuple[float, float]]:
    proj = root / f"{shape}-{n}"
    shutil.rmtree(proj, ignore_errors=True)
    (proj / "data").mkdir(parents=True)
    (proj / "out").mkdir()
    (proj / "data" / "seed.txt").write_text("seed\n")
    (proj / "pipeline.yaml").write_text(chain_spec(n) if shape == "chain" else diamond_spec(n))
    run = [*mlprism_cmd(), "run", "pipeline.yaml", "-q", "-j", str(jobs)]
    out: dict[str, tuple[float, float]] = {}
    out["compile"] = timed([*mlprism_cmd(), "validate", "pipeline.yaml"], proj)
    out["cold"] = timed(run, proj)
    out["noop"] = timed(run, proj)
    seed = proj / "data" / "seed.txt"
    time.sleep(0.01)
    os.utime(seed)
    out["touch"] = timed(run, proj)
    seed.write_text("seed 2\n")
    out["edit"] = timed(run, proj)
    shutil.rmtree(proj, ignore_errors=True)
    return out


def bench_hash(root: Path, mib: int) -> dict[str, float]:
    from mlprism.runtime.hashing import hash_file

    path = root / "big.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)
    size = mib * (1 << 20)

    def read_plain() -> None:
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass

    def hashlib_file(name: str) -> None:
        with open(path, "rb") as f:
            hashlib.file_digest(f, name)

    runs = {
        "plain read (1 MiB chunks)": read_plain,
        "blake3 (mlprism hash_file: mmap, threads)": lambda: hash_file(path),
        "md5 (hashlib)": lambda: hashlib_file("md5"),
        "sha256 (hashlib)": lambda: hashlib_file("sha256"),
    }
    read_plain()                         # into the page cache
    out = {}
    for label, fn in runs.items():
        best = min(_time(fn) for _ in range(2))
        out[label] = size / best / (1 << 30)
    path.unlink()
    return out


def _time(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="comma-separated step counts")
    ap.add_argument("--shapes", default="chain,diamond")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--hash-mib", type=int, default=1024, help="size of the hashing file (0: skip)")
    ap.add_argument("--workdir", help="where to create the projects (default: a temporary directory)")
    args = ap.parse_args()
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mlprism-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    shapes = [s for s in args.shapes.split(",") if s]
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start, python {sys.version.split()[0]}, "
          f"-j {args.jobs}\n")
    print("Each cell: wall time / CPU time (mlprism and every step process it started). On a busy machine the")
    print("CPU time is the steadier number; on an idle one the wall time is about CPU / min(cores, -j).\n")
    print("| shape | N | compile (validate) | cold run | no-op rerun | touch one input | edit one input | cold CPU per step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        for shape in shapes:
            r = bench_pipeline(root, shape, n, args.jobs)
            cells = " | ".join(f"{r[k][0]:.2f} s / {r[k][1]:.2f} s" for k in ("compile", "cold", "noop", "touch", "edit"))
            print(f"| {shape} | {n:,} | {cells} | {r['cold'][1] / n * 1000:.2f} ms |", flush=True)
    if args.hash_mib:
        print(f"\nhashing a {args.hash_mib} MiB file (in the page cache), GiB/s:\n")
        print("| method | GiB/s |")
        print("|---|---:|")
        for label, speed in bench_hash(root, args.hash_mib).items():
            print(f"| {label} | {speed:.2f} |", flush=True)
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
