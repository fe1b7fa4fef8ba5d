"""mlprism benchmarks, side by side with dvc, snakemake, ploomber and the kfp compiler: one command.

    make bench                                               # mlprism only, N = 100 and 1,000
    .venv/bin/python benchmarks/run.py --peers --sizes 100,1000 --repeat 3 --save
    .venv/bin/python benchmarks/run.py --sizes 5 --repeat 1 --hash-mib 0      # a smoke run

Every number is a whole process started by this script (as a user would type
it), timed with `os.wait4`: wall time (median of `--repeat` runs, with min-max),
CPU time (user + system of the process and every process it waited for) and peak
RSS (the largest process of the tree). On a shared machine the CPU time is the
steadier number.

Sections (`--only` picks some):
  startup  `python -c pass`, `mlprism --version`, `mlprism validate` on a 3-step spec
           (and each peer's `--version`)
  dag      per shape and N: `mlprism validate`, `mlprism compile --target all`,
           `mlprism status` on a fresh project; `dvc status`, `snakemake -n`,
           `ploomber status`, kfp's compiler, on the same workload
  targets  `mlprism compile --target T` for every installed target (mix shape)
  run      per shape and N: the floor (N `sh -c 'echo i > f'` from Python, one and two at a
           time), then for mlprism (`run -j J`), dvc (`repro`), snakemake (`--cores J`) and
           ploomber (`build`): cold run, no-op rerun, rerun after changing one input in the
           middle (`data/mid.txt`, read by the middle step only)
  hash     a file of `--hash-mib` MiB: plain read, md5, sha256, blake3 (one thread) and
           mlprism's hash_file (blake3, mmap, threads), page-cached and cold (the file's pages
           evicted with posix_fadvise DONTNEED; `--drop-caches`: /proc/sys/vm/drop_caches, root)

A command that runs longer than `--timeout` is killed (its whole process group) and
reported as "> T s (stopped)"; a measurement stops repeating once its runs took
`--budget` seconds (the report shows how many runs each number is). Peers are installed on first use into
build/bench-venvs/<peer> (`--peers`, or `--peers dvc,snakemake`). Results: a Markdown
report on stdout, and with `--save` benchmarks/results/<date>.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import PEERS, Tool  # noqa: E402
from specs import SHAPES, Workload, change_mid, generate, write_mlprism_project  # noqa: E402

SECTIONS = ("startup", "dag", "targets", "run", "hash")


# ---------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_kib: int
    rc: int | None            # None: killed at the timeout


@dataclass
class Row:
    section: str
    tool: str
    op: str
    shape: str = ""
    n: int = 0
    command: str = ""
    samples: list[Sample] = field(default_factory=list)
    status: str = "ok"        # ok | stopped | failed | skipped
    note: str = ""
    unit: str = "s"           # "s", or "GiB/s" for hashing rows

    @property
    def walls(self) -> list[float]:
        return [s.wall for s in self.samples]

    @property
    def median(self) -> float | None:
        return statistics.median(self.walls) if self.samples else None

    def summary(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("samples")
        if self.samples:
            d.update(median=self.median, min=min(self.walls), max=max(self.walls),
                     cpu_median=statistics.median(s.cpu for s in self.samples),
                     peak_rss_mib=round(max(s.rss_kib for s in self.samples) / 1024, 1),
                     runs=len(self.samples))
        return d


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300.0,
            log: Path | None = None) -> Sample:
    """Run one process to completion (or kill its process group at `timeout`)."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if log else subprocess.DEVNULL, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)      # the group we created for it: nothing else
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if killed.is_set():                              # stragglers of the group, if any
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                      None if killed.is_set() else proc.returncode)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rows: list[Row] = []
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def log_path(self, label: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:120]
        return self.logs / f"{safe}.log"

    def timed(self, row: Row, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
              before: Callable[[int], None] | None = None, repeat: int | None = None) -> Row:
        """Append `repeat` samples of `argv` to `row`; `before(k)` runs untimed before each."""
        row.command = row.command or " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
        log = self.log_path(f"{row.tool}-{row.op}-{row.shape}-{row.n}")
        for k in range(repeat or self.args.repeat):
            if before:
                before(k)
            log.write_text("")
            timeout = self.args.timeout if row.tool == "mlprism" else self.args.peer_timeout or self.args.timeout
            sample = measure(argv, cwd, env, timeout, log)
            if sample.rc is None:
                row.status, row.note = "stopped", f"> {timeout:g} s (stopped)"
                row.samples.append(sample)
                break
            if sample.rc != 0:
                row.status = "failed"
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                row.note = f"exit {sample.rc}: " + " / ".join(tail)[-400:]
                print(f"  ! {row.command} failed in {cwd} ({row.note})", file=sys.stderr, flush=True)
                break
            row.samples.append(sample)
            if sum(row.walls) > self.args.budget and len(row.samples) < (repeat or self.args.repeat):
                row.note = row.note or f"{len(row.samples)} of {repeat or self.args.repeat} runs (over the --budget)"
                break
        self.rows.append(row)
        self.progress(row)
        return row

    def progress(self, row: Row) -> None:
        where = f"{row.shape} N={row.n} " if row.n else ""
        print(f"  {row.section}: {row.tool} {row.op} {where}-> {cell(row)}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the tools


def mlprism_bin() -> list[str]:
    exe = Path(sys.executable).parent / "mlprism"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mlprism"]


def mlprism_targets() -> list[str]:
    """Installed targets, from `mlprism plugins` (NAME  DIST VERSION  targets: a, b)."""
    proc = subprocess.run([*mlprism_bin(), "plugins"], capture_output=True, text=True, check=True)
    names: list[str] = []
    for line in proc.stdout.splitlines():
        if "targets:" in line:
            names += [t.strip() for t in line.split("targets:", 1)[1].split(",") if t.strip()]
    return sorted(dict.fromkeys(names))


def precompile() -> None:
    """Write the bytecode of mlprism and its plugins, as installing a wheel does, before anything is timed.

    An editable install compiles a module on first import; with PYTHONDONTWRITEBYTECODE set (some
    sandboxes and CI images set it) it would be compiled again in every timed process.
    """
    import compileall
    import importlib.metadata
    import importlib.util

    names = ["mlprism", *sorted({ep.module.split(".")[0] for ep in importlib.metadata.entry_points(group="mlprism")})]
    for name in names:
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(loc, quiet=1)


def mlprism_version() -> str:
    return subprocess.run([*mlprism_bin(), "--version"], capture_output=True, text=True, check=False).stdout.strip()


_ACCEPTS: dict[str, tuple[list[str], dict[str, str]]] = {}


def accepting_targets(shape: str) -> tuple[list[str], dict[str, str]]:
    """(targets that compile this shape, {target: why not} for the others), from a trial compile
    of a small workload of the same shape in this process (untimed)."""
    if shape not in _ACCEPTS:
        import mlprism

        ok: list[str] = []
        refused: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="mlprism-bench-trial-") as tmp:
            spec = write_mlprism_project(generate(shape, 30), Path(tmp))
            for target in mlprism_targets():
                try:
                    mlprism.compile_spec(str(spec), target)
                    ok.append(target)
                except mlprism.DiagnosticError as e:
                    refused[target] = "; ".join(sorted({d.code for d in e.diagnostics}))
        _ACCEPTS[shape] = (ok, refused)
    return _ACCEPTS[shape]


def compile_all_argv(shape: str) -> tuple[list[str], str]:
    ok, refused = accepting_targets(shape)
    if not refused:
        return ["--target", "all"], ""
    why = ", ".join(f"{t} ({c})" for t, c in refused.items())
    return [a for t in ok for a in ("-t", t)], f"every target that can express it; refused: {why}"


class Mlprism(Tool):
    name = "mlprism"
    state = (".mlprism", "mlprism.lock", "gen")
    run_label = "mlprism run"

    def installed(self) -> bool:
        return True

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def write(self, w: Workload, directory: Path) -> None:
        write_mlprism_project(w, directory)

    def dag_commands(self, w: Workload) -> list[tuple[str, list[str]]]:
        targets, _ = compile_all_argv(w.shape)
        return [("validate", [*mlprism_bin(), "validate", "pipeline.yaml"]),
                ("compile --target all", [*mlprism_bin(), "compile", "pipeline.yaml", *targets, "--out", "gen"]),
                ("status", [*mlprism_bin(), "status", "pipeline.yaml"])]

    def run_command(self, jobs: int) -> list[str]:
        return [*mlprism_bin(), "run", "pipeline.yaml", "-q", "-j", str(jobs)]


# ---------------------------------------------------------------------------- sections


def section_startup(b: Bench, tools: list[Tool]) -> None:
    proj = b.work / "startup"
    write_mlprism_project(generate("chain", 3), proj)
    b.timed(Row("startup", "python", "python -c pass"), [sys.executable, "-c", "pass"], proj)
    b.timed(Row("startup", "mlprism", "--version"), [*mlprism_bin(), "--version"], proj)
    b.timed(Row("startup", "mlprism", "validate (3 steps)"), [*mlprism_bin(), "validate", "pipeline.yaml"], proj)
    for tool in tools:
        if isinstance(tool, Mlprism):
            continue
        exe = {"kfp": ["python", "-c", "import kfp.dsl, kfp.compiler"]}.get(tool.name, [tool.name, "--version"])
        label = "import kfp.dsl, kfp.compiler" if tool.name == "kfp" else "--version"
        b.timed(Row("startup", tool.name, label), [tool.bin(exe[0]), *exe[1:]], proj, env=tool.env())


def project(b: Bench, tool: Tool, w: Workload) -> Path:
    directory = b.work / f"{tool.name}-{w.shape}-{w.n}"
    if not directory.exists():
        tool.write(w, directory)
        tool.setup(directory)
    return directory


def section_dag(b: Bench, tools: list[Tool], w: Workload) -> None:
    for tool in tools:
        directory = project(b, tool, w)
        for op, argv in tool.dag_commands(w):
            note = compile_all_argv(w.shape)[1] if op == "compile --target all" else ""
            row = b.timed(Row("dag", tool.name, op, w.shape, w.n), argv, directory, tool.env(),
                          before=lambda k, t=tool, d=directory: t.reset(d, w))
            row.note = row.note or note


def section_targets(b: Bench, w: Workload, targets: list[str]) -> None:
    tool = Mlprism()
    directory = project(b, tool, w)
    refused = accepting_targets(w.shape)[1]
    for target in targets:
        if target in refused:
            b.rows.append(Row("targets", "mlprism", f"compile --target {target}", w.shape, w.n, status="skipped",
                              note=f"the target refuses this spec: {refused[target]}"))
            continue
        b.timed(Row("targets", "mlprism", f"compile --target {target}", w.shape, w.n),
                [*mlprism_bin(), "compile", "pipeline.yaml", "--target", target, "--out", "gen"], directory,
                before=lambda k, d=directory: shutil.rmtree(d / "gen", ignore_errors=True))


def floor(b: Bench, w: Workload, jobs: int) -> None:
    """The cost of starting the same number of trivial processes from Python, serially and `jobs` at a time."""
    directory = b.work / f"floor-{w.shape}-{w.n}"
    count = w.executions()
    for width in sorted({1, jobs}):
        row = Row("run", "floor", f"{count} x sh -c, {width} at a time", w.shape, w.n,
                  command=f"subprocess.run(['sh', '-c', 'echo i > out/si.txt']) x {count}")
        for _ in range(b.args.repeat):
            shutil.rmtree(directory, ignore_errors=True)
            (directory / "out").mkdir(parents=True)

            def one(i: int, d: Path = directory) -> None:
                subprocess.run(["sh", "-c", f"echo {i} > out/s{i}.txt"], cwd=d, check=True)

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            if width == 1:
                for i in range(count):
                    one(i)
            else:
                with ThreadPoolExecutor(width) as pool:
                    list(pool.map(one, range(count)))
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            row.samples.append(Sample(wall, cpu, 0, 0))
        b.rows.append(row)
        b.progress(row)
    shutil.rmtree(directory, ignore_errors=True)


def section_run(b: Bench, tools: list[Tool], w: Workload) -> None:
    jobs = b.args.jobs
    floor(b, w, jobs)
    for tool in tools:
        argv = tool.run_command(jobs)
        if argv is None:
            continue
        directory = project(b, tool, w)
        label = {"mlprism": f"run -j {jobs}", "snakemake": f"--cores {jobs}"}.get(tool.name, tool.run_label.split()[-1])
        env = tool.env()
        cold = b.timed(Row("run", tool.name, f"cold: {label}", w.shape, w.n), argv, directory, env,
                       before=lambda k, t=tool, d=directory: t.reset(d, w))
        if cold.status != "ok":
            for mode in ("no-op", "mid input changed"):
                b.rows.append(Row("run", tool.name, f"{mode}: {label}", w.shape, w.n, status="skipped",
                                  note=f"cold run {cold.status}"))
            continue
        b.timed(Row("run", tool.name, f"no-op: {label}", w.shape, w.n), argv, directory, env)
        b.timed(Row("run", tool.name, f"mid input changed: {label}", w.shape, w.n), argv, directory, env,
                before=lambda k, d=directory: change_mid(d, k + 1))


def section_hash(b: Bench, mib: int) -> None:
    import blake3
    from mlprism.runtime.hashing import hash_file

    path = b.work / "hash-1g.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    size = mib << 20

    def plain() -> None:
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass

    def hashlib_file(name: str) -> Callable[[], None]:
        def go() -> None:
            with open(path, "rb") as f:
                hashlib.file_digest(f, name)
        return go

    def blake3_one_thread() -> None:
        h = blake3.blake3()
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)

    methods: list[tuple[str, Callable[[], None]]] = [
        ("plain read (1 MiB reads)", plain),
        ("md5 (hashlib.file_digest)", hashlib_file("md5")),
        ("sha256 (hashlib.file_digest)", hashlib_file("sha256")),
        ("blake3, one thread (1 MiB reads)", blake3_one_thread),
        ("blake3, mlprism hash_file (mmap, threads)", lambda: hash_file(path)),
    ]
    how = drop_cache_method(path, b.args.drop_caches)
    for cached in (True, False):
        for label, fn in methods:
            row = Row("hash", "mlprism" if "mlprism" in label else "python", label,
                      shape="page-cached" if cached else f"cold ({how})", n=mib, unit="GiB/s")
            for _ in range(b.args.repeat):
                if cached:
                    plain()
                else:
                    evict(path, how)
                before = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                fn()
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_SELF)
                row.samples.append(Sample(wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                                          0, 0))
            row.note = f"{size / (1 << 30) / statistics.median(row.walls):.2f} GiB/s"
            b.rows.append(row)
            b.progress(row)
    path.unlink()


def drop_cache_method(path: Path, global_drop: bool) -> str:
    """How to make the file cold: posix_fadvise(DONTNEED) evicts just its pages (no root needed, and
    the other users of the machine keep their cache); `--drop-caches` writes /proc/sys/vm/drop_caches."""
    allowed = os.access("/proc/sys/vm/drop_caches", os.W_OK)
    print(f"  hash: /proc/sys/vm/drop_caches is {'writable' if allowed else 'not writable (needs root)'}",
          file=sys.stderr)
    return "drop_caches" if global_drop and allowed else "fadvise"


def evict(path: Path, how: str) -> None:
    if how == "drop_caches":
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- the report


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def cell(row: Row | None) -> str:
    if row is None:
        return "—"
    if row.status == "stopped":
        return row.note
    if row.status in ("failed", "skipped"):
        return f"{row.status} ({row.note[:60]})" if row.note else row.status
    if row.unit == "GiB/s":
        return row.note
    med = row.median or 0.0
    if len(row.samples) == 1:
        return f"{fmt_s(med)} s"
    return f"{fmt_s(med)} s ({fmt_s(min(row.walls))}-{fmt_s(max(row.walls))})"


def ratio(peer: Row | None, base: Row | None) -> str:
    if peer is None or base is None or not base.median:
        return ""
    if peer.status == "stopped":
        return f" **>{peer.samples[0].wall / base.median:.0f}x**"
    if peer.status != "ok" or not peer.median:
        return ""
    return f" **{peer.median / base.median:.1f}x**"


def find(rows: Iterable[Row], **kw: object) -> Row | None:
    for r in rows:
        if all(getattr(r, k) == v for k, v in kw.items()):
            return r
    return None


def report(rows: list[Row], metas: list[dict[str, object]], repeat: int) -> str:
    meta = metas[0]
    out = [f"# mlprism benchmarks - {meta['date']}", ""]
    for m in metas:
        out.append(f"- `{m['command']}` ({m['date']}): load average {m['load_start']} at the start, "
                   f"{m['load_end']} at the end; peers: "
                   + (", ".join(f"{k} {v}" for k, v in m["peers"].items()) or "not measured"))  # type: ignore[union-attr]
    out += [f"- machine: {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['memory_gib']} GiB RAM, "
            f"python {meta['python']}, {meta['mlprism']}",
            f"- each cell: median wall time of up to {repeat} whole-process runs (min-max); "
            "**bold** = the peer's time / mlprism's (>1: mlprism is faster)", ""]
    startup = [r for r in rows if r.section == "startup"]
    if startup:
        out += ["## Start-up", "", "| tool | command | wall | CPU | peak RSS |", "|---|---|---:|---:|---:|"]
        out += [f"| {r.tool} | `{r.op}` | {cell(r)} | {_cpu(r)} | {_rss(r)} |" for r in startup]
        out.append("")
    dag = [r for r in rows if r.section == "dag"]
    if dag:
        base_op = "compile --target all"
        ops = list(dict.fromkeys((r.tool, r.op) for r in dag))
        out += ["## DAG build / compile (fresh project)", "",
                f"Ratios against `mlprism {base_op}` (all targets) on the same workload.", "",
                "| shape | N | " + " | ".join(f"{t} `{o}`" for t, o in ops) + " |",
                "|---|---:|" + "---:|" * len(ops)]
        for shape, n in dict.fromkeys((r.shape, r.n) for r in dag):
            base = find(dag, tool="mlprism", op=base_op, shape=shape, n=n)
            cells = []
            for t, o in ops:
                r = find(dag, tool=t, op=o, shape=shape, n=n)
                cells.append(cell(r) + (ratio(r, base) if t != "mlprism" else ""))
            out.append(f"| {shape} | {n:,} | " + " | ".join(cells) + " |")
        notes = dict.fromkeys(f"{r.shape}: `{r.tool} {r.op}` = {r.note}" for r in dag if r.status == "ok" and r.note)
        out += ["", *(f"- {x}" for x in notes), ""]
    targets = [r for r in rows if r.section == "targets"]
    if targets:
        out += ["## mlprism compile, per target", "", "| shape | N | target | wall | CPU | peak RSS |",
                "|---|---:|---|---:|---:|---:|"]
        out += [f"| {r.shape} | {r.n:,} | `{r.op.split()[-1]}` | {cell(r)} | {_cpu(r)} | {_rss(r)} |" for r in targets]
        out.append("")
    run = [r for r in rows if r.section == "run"]
    if run:
        tools = list(dict.fromkeys(r.tool for r in run if r.tool != "floor"))
        out += ["## Local execution of N trivial steps", "",
                "`cold`: a never-run project; `no-op`: the same command again; `mid input changed`: new bytes "
                "in `data/mid.txt`, read by the middle step only. floor: the same number of "
                "`sh -c 'echo i > f'` processes started from Python.", "",
                "| shape | N | mode | " + " | ".join(tools) + " |", "|---|---:|---|" + "---:|" * len(tools)]
        for shape, n in dict.fromkeys((r.shape, r.n) for r in run):
            for mode in ("cold", "no-op", "mid input changed"):
                base = next((r for r in run if r.tool == "mlprism" and r.shape == shape and r.n == n
                             and r.op.startswith(mode + ":")), None)
                cells = []
                for t in tools:
                    r = next((x for x in run if x.tool == t and x.shape == shape and x.n == n
                              and x.op.startswith(mode + ":")), None)
                    cells.append(cell(r) + (ratio(r, base) if t != "mlprism" else ""))
                out.append(f"| {shape} | {n:,} | {mode} | " + " | ".join(cells) + " |")
            for r in run:
                if r.tool == "floor" and r.shape == shape and r.n == n:
                    out.append(f"| {shape} | {n:,} | floor: {r.op} | {cell(r)} |" + " |" * (len(tools) - 1))
        out.append("")
    out += growth(rows)
    hashing = [r for r in rows if r.section == "hash"]
    if hashing:
        out += [f"## Hashing a {hashing[0].n} MiB file", "", "| method | page-cached | cold |", "|---|---:|---:|"]
        for op in dict.fromkeys(r.op for r in hashing):
            hot = next((r for r in hashing if r.op == op and r.shape == "page-cached"), None)
            cold = next((r for r in hashing if r.op == op and r.shape != "page-cached"), None)
            out.append(f"| {op} | {cell(hot)} | {cell(cold)} |")
        out += ["", "cold (fadvise): the file's pages evicted with posix_fadvise(POSIX_FADV_DONTNEED) before each "
                "run; cold (drop_caches): `echo 3 > /proc/sys/vm/drop_caches` before each run.", ""]
    out += ["## Every measurement", "", "| section | tool | what | command | shape | N | wall | CPU | peak RSS | runs |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r.section} | {r.tool} | {r.op} | `{r.command or r.op}` | {r.shape} | {r.n or ''} | {cell(r)} | "
                   f"{_cpu(r)} | {_rss(r)} | {len(r.samples)} |")
    return "\n".join(out) + "\n"


def growth(rows: list[Row]) -> list[str]:
    """How each command's CPU time grows with N: the exponent k in t ~ N^k between the two largest
    sizes measured (1.0 = linear; start-up costs make it < 1 at small N)."""
    series: dict[tuple[str, str, str, str], dict[int, Row]] = {}
    for r in rows:
        if r.section in ("dag", "targets", "run") and r.tool != "floor" and r.n:
            series.setdefault((r.section, r.tool, r.op, r.shape), {})[r.n] = r
    sizes = sorted({r.n for r in rows if r.section in ("dag", "targets", "run") and r.n})
    if len(sizes) < 2:
        return []
    out = ["## Growth with N", "",
           "CPU time (user + system of the whole process tree), median; k: t ~ N^k between the two largest "
           "N measured (1.0 = linear).", "",
           "| section | tool | command | shape | " + " | ".join(f"N={n:,}" for n in sizes) + " | k |",
           "|---|---|---|---|" + "---:|" * (len(sizes) + 1)]
    for (section, tool, op, shape), by_n in series.items():
        if len(by_n) < 2:
            continue
        cells, points = [], []
        for n in sizes:
            r = by_n.get(n)
            if r is None:
                cells.append("")
            elif r.status == "ok" and r.samples:
                cpu = statistics.median(x.cpu for x in r.samples)
                cells.append(f"{cpu:.2f} s")
                points.append((n, cpu))
            else:
                cells.append(cell(r))
        k = ""
        if len(points) >= 2 and points[-2][1] > 0:
            (n1, t1), (n2, t2) = points[-2], points[-1]
            k = f"{math.log(t2 / t1) / math.log(n2 / n1):.2f}"
        out.append(f"| {section} | {tool} | `{op}` | {shape} | " + " | ".join(cells) + f" | {k} |")
    return [*out, ""]


def load_results(paths: list[Path]) -> tuple[list[Row], list[dict[str, object]], int]:
    rows: list[Row] = []
    metas: list[dict[str, object]] = []
    repeat = 1
    for path in paths:
        data = json.loads(path.read_text())
        metas.append(data["meta"])
        repeat = max(repeat, int(data["meta"].get("repeat", 1)))
        for d in data["rows"]:
            fields = {k: d[k] for k in ("section", "tool", "op", "shape", "n", "command", "status", "note", "unit")}
            rows.append(Row(**fields, samples=[Sample(**x) for x in d["samples"]]))
    return rows, metas, repeat


def _cpu(r: Row) -> str:
    return f"{statistics.median(s.cpu for s in r.samples):.2f} s" if r.samples else ""


def _rss(r: Row) -> str:
    peak = max((s.rss_kib for s in r.samples), default=0)
    return f"{peak / 1024:.0f} MiB" if peak and r.unit == "s" else ""


def machine() -> dict[str, object]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem, 1),
            "python": platform.python_version(), "platform": platform.platform()}


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", nargs="?", const=",".join(PEERS), default="",
                    help="also measure the peers (all, or a comma-separated subset of dvc,snakemake,ploomber,kfp)")
    ap.add_argument("--sizes", default="100,1000", help="comma-separated step counts (default 100,1000)")
    ap.add_argument("--peer-sizes", help="sizes at which peers are measured too (default: all of --sizes)")
    ap.add_argument("--peer-run-sizes", help="sizes at which peers also execute the workloads (default: --peer-sizes)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median, min-max)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="shapes for the dag section")
    ap.add_argument("--run-shapes", default="diamond,mix", help="shapes for the run section")
    ap.add_argument("--target-shape", default="diamond", help="shape for the per-target compile")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"sections: {','.join(SECTIONS)}")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="parallel steps for mlprism and snakemake")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a command is killed")
    ap.add_argument("--peer-timeout", type=float, help="a different --timeout for the peers' commands")
    ap.add_argument("--budget", type=float, default=120.0,
                    help="stop repeating a measurement once its runs took this many seconds in all")
    ap.add_argument("--hash-mib", type=int, default=1024, help="size of the hashing file in MiB (0: skip)")
    ap.add_argument("--drop-caches", action="store_true",
                    help="make the file cold with /proc/sys/vm/drop_caches (root; affects the whole machine) "
                         "instead of posix_fadvise on the file")
    ap.add_argument("--workdir", type=Path, help="keep the generated projects here (default: a temp dir, removed)")
    ap.add_argument("--save", action="store_true", help="also write benchmarks/results/<date>.md and .json")
    ap.add_argument("--results", type=Path, default=HERE / "results", help="where --save writes")
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                    help="measure nothing: print one report from results saved by earlier runs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        rows, metas, repeat = load_results(args.report)
        sys.stdout.write(report(rows, metas, repeat))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    peer_sizes = {int(s) for s in args.peer_sizes.split(",") if s} if args.peer_sizes else set(sizes)
    peer_run_sizes = {int(s) for s in args.peer_run_sizes.split(",") if s} if args.peer_run_sizes else peer_sizes
    only = {s for s in args.only.split(",") if s}
    unknown = only - set(SECTIONS) | {p for p in args.peers.split(",") if p} - set(PEERS)
    if unknown:
        print(f"unknown section or peer: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    peers: list[Tool] = []
    for name in [p for p in args.peers.split(",") if p]:
        tool = PEERS[name]()
        if not tool.installed():
            print(f"installing {name} into {tool.venv} …", file=sys.stderr, flush=True)
            tool.install()
        peers.append(tool)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlprism-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        **machine(), "load_start": f"{os.getloadavg()[0]:.1f}", "mlprism": mlprism_version(),
        "peers": {p.name: p.version() for p in peers}, "repeat": args.repeat,
    }
    b = Bench(args, work)
    precompile()
    mlprism = Mlprism()
    try:
        if "startup" in only:
            section_startup(b, [mlprism, *peers])
        for n in sizes:
            tools = [mlprism, *(peers if n in peer_sizes else [])]
            if "dag" in only:
                for shape in [s for s in args.shapes.split(",") if s]:
                    section_dag(b, tools, generate(shape, n))
            if "targets" in only:
                section_targets(b, generate(args.target_shape, n), mlprism_targets())
            if "run" in only:
                runners = [mlprism, *(peers if n in peer_run_sizes else [])]
                for shape in [s for s in args.run_shapes.split(",") if s]:
                    section_run(b, runners, generate(shape, n))
        if "hash" in only and args.hash_mib:
            section_hash(b, args.hash_mib)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_end"] = f"{os.getloadavg()[0]:.1f}"
    text = report(b.rows, [meta], args.repeat)
    sys.stdout.write(text)
    if args.save:
        args.results.mkdir(parents=True, exist_ok=True)
        stem = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
        (args.results / f"{stem}.md").write_text(text)
        (args.results / f"{stem}.json").write_text(json.dumps(
            {"meta": meta, "rows": [r.summary() | {"samples": [asdict(s) for s in r.samples]} for r in b.rows]},
            indent=1) + "\n")
        print(f"wrote {args.results / stem}.md and .json", file=sys.stderr)
    failed = [r for r in b.rows if r.status == "failed" and r.tool == "mlprism"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
