"""SIGKILL of the runner at random points: the state stays consistent and a rerun resumes.

Each chain of trials copies a project that already ran once (lock file A), starts
``mlprism run pipeline.yaml`` (after setting ``params.n: 2``) as a real process in its own process
group, kills that group with SIGKILL after a random delay (seeded), and checks
what a crash leaves behind:

- the ledger (and the model registry) open and pass ``PRAGMA integrity_check``;
- every cache object's content hashes to its name, every step record names
  objects that exist, and nothing but ``cache/tmp/`` holds half-written files;
- ``mlprism.lock`` is byte for byte either A or B (the lock an uninterrupted run
  with ``params.n: 2`` writes);
- a rerun exits 0, reuses every step whose record reached the cache before the
  kill, runs only the others, and leaves outputs, metrics and lock identical to
  the uninterrupted run's; ``cache/tmp/`` is empty and no temporary file is left
  in the project.

The step processes run in their own sessions, so killing the runner's group
orphans them exactly as a crash would; the rerun kills what is left.

``MLPRISM_KILL_TRIALS`` (default 20) and ``MLPRISM_KILL_SEED`` (default 9) set
the number of trials and the seed; results are in docs/hardening.md.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import blake3

MLPRISM = str(Path(sys.executable).parent / "mlprism")

SPEC = """\
apiVersion: mlprism/v1
name: crashy
params: {n: 1}
data:
  raw: {path: data/raw.txt}
steps:
  prep:
    run: python work.py prep ${params.n}
    inputs: [data/raw.txt, work.py]
    outputs: [build/prep.bin]
  wide:
    run: python work.py wide ${params.n}
    inputs: [build/prep.bin]
    outputs: [build/wide.bin]
  tree:
    run: python work.py tree ${params.n}
    inputs: [build/prep.bin]
    outputs: [build/tree]
  small:
    run: python work.py small ${params.n}
    inputs: [build/prep.bin]
    outputs: [build/small.bin]
    metrics: metrics/small.json
  train:
    run: python work.py train ${params.n}
    inputs: [build/wide.bin, build/tree, build/small.bin]
    outputs: [model/model.bin]
    metrics: metrics/train.json
  report:
    run: python work.py report ${params.n}
    inputs: [model/model.bin, metrics/train.json]
    outputs: [report.txt]
registry: {name: crashy, artifact: model/model.bin, register_after: train}
"""

# Deterministic outputs of a few KB to 1.5 MB, derived from the inputs and params.n.
WORK = """\
import hashlib, json, os, sys

kind, n = sys.argv[1], int(sys.argv[2])


def blob(seed: bytes, size: int) -> bytes:
    return hashlib.shake_256(seed + str(n).encode()).digest(size)


def write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


if kind == "prep":
    write("build/prep.bin", blob(read("data/raw.txt"), 256 * 1024))
elif kind == "wide":
    write("build/wide.bin", blob(read("build/prep.bin")[:64], 1536 * 1024))
elif kind == "tree":
    seed = read("build/prep.bin")[64:128]
    for i in range(6):
        write(f"build/tree/part-{i}.bin", blob(seed + bytes([i]), 48 * 1024))
    write("build/tree/sub/index.json", json.dumps({"parts": 6, "n": n}).encode())
elif kind == "small":
    data = blob(read("build/prep.bin")[128:192], 8 * 1024)
    write("build/small.bin", data)
    write("metrics/small.json", json.dumps({"small_sum": sum(data[:100])}).encode())
elif kind == "train":
    h = hashlib.sha256(read("build/wide.bin") + read("build/small.bin"))
    for name in sorted(os.listdir("build/tree")):
        if name.endswith(".bin"):
            h.update(read(f"build/tree/{name}"))
    write("model/model.bin", blob(h.digest(), 384 * 1024))
    write("metrics/train.json", json.dumps({"score": h.digest()[0] / 255}).encode())
elif kind == "report":
    m = json.loads(read("metrics/train.json"))
    write("report.txt", f"model {hashlib.sha256(read('model/model.bin')).hexdigest()} score {m['score']:.4f}\\n"
          .encode())
"""

OUTPUTS = ["build/prep.bin", "build/wide.bin", "build/tree", "build/small.bin", "metrics/small.json",
           "model/model.bin", "metrics/train.json", "report.txt"]
STEPS = ["prep", "wide", "tree", "small", "train", "report"]


def make_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pipeline.yaml").write_text(SPEC)
    (root / "work.py").write_text(WORK)
    (root / "data").mkdir()
    (root / "data" / "raw.txt").write_text("".join(f"row {i}\n" for i in range(2000)))
    return root


def change_param(proj: Path) -> None:
    """params.n 1 -> 2: every step's fingerprint changes (an edited spec; no Hydra override, it is faster)."""
    spec = proj / "pipeline.yaml"
    spec.write_text(spec.read_text().replace("params: {n: 1}", "params: {n: 2}"))


def run(proj: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLPRISM, "run", "pipeline.yaml", "-j", "3", *args], cwd=proj, capture_output=True,
                          text=True, timeout=timeout)


def snapshot(proj: Path) -> dict[str, bytes]:
    """Every output file's bytes (directory outputs file by file)."""
    out: dict[str, bytes] = {}
    for rel in OUTPUTS:
        p = proj / rel
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    out[f.relative_to(proj).as_posix()] = f.read_bytes()
        else:
            out[rel] = p.read_bytes()
    return out


def integrity(db: Path) -> None:
    if not db.exists():
        return
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], db
    finally:
        conn.close()


def check_cache(state: Path) -> set[str]:
    """No partial entries: every object hashes to its name and every record's objects exist (or,
    for a small file kept inside the record, its inline bytes hash to the entry's hash).

    Returns the fingerprints that have a step record.
    """
    cache = state / "cache"
    objects = cache / "objects"
    if objects.is_dir():
        for obj in objects.rglob("*"):
            if obj.is_file():
                name = obj.parent.name + obj.name
                assert blake3.blake3(obj.read_bytes()).hexdigest() == name, f"damaged cache object {obj}"
            else:
                assert obj.is_dir() and len(obj.name) == 2, f"unexpected entry in the cache: {obj}"
    fingerprints: set[str] = set()
    steps = cache / "steps"
    if steps.is_dir():
        for rec in steps.rglob("*.json"):
            data = json.loads(rec.read_bytes())               # a record is whole or absent
            assert data["fingerprint"] == rec.parent.name + rec.stem
            for entry in data["outputs"].values():
                h = entry["hash"]
                if "inline" in entry:
                    inline = base64.b64decode(entry["inline"], validate=True)
                    assert blake3.blake3(inline).hexdigest() == h and len(inline) == entry["size"], rec
                    continue
                assert (objects / h[:2] / h[2:]).is_file(), f"record {rec} names a missing object"
            fingerprints.add(data["fingerprint"])
    return fingerprints


def stray_temp_files(proj: Path) -> list[str]:
    """Temporary files mlprism may leave in the user's project (outside .mlprism/)."""
    found = []
    for p in proj.rglob("*"):
        rel = p.relative_to(proj)
        if rel.parts[0] == ".mlprism":
            continue
        if p.name.endswith(".tmp") or ".mlprism-" in p.name:
            found.append(rel.as_posix())
    return found


def phase_of(proj: Path, lock_a: bytes, lock_b: bytes, fps_b: dict[str, str], recorded: set[str]) -> str:
    lock = (proj / "mlprism.lock").read_bytes()
    if lock == lock_b:
        return "after the lock file was written"
    done = sum(1 for s in STEPS if fps_b[s] in recorded)
    if done == 0:
        runs = proj / ".mlprism" / "runs"
        started = runs.is_dir() and len(list(runs.iterdir())) > 1
        return "steps running, none recorded" if started else "before any step started"
    if done == len(STEPS):
        return "every step recorded, lock not yet written"
    return f"{done} of {len(STEPS)} steps recorded"


def ledger_rows(state: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(str(state / "ledger.db"), timeout=30)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def kill_after(proj: Path, delay: float) -> None:
    """Start a run in its own process group and SIGKILL the group after ``delay`` seconds."""
    runner = subprocess.Popen([MLPRISM, "run", "pipeline.yaml", "-j", "3"], cwd=proj, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    try:
        os.killpg(runner.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    runner.wait()


def test_sigkill_at_random_points(tmp_path: Path) -> None:
    """Chains of kills: a project is killed up to 3 times in a row (each run resumes the last), then rerun."""
    trials = int(os.environ.get("MLPRISM_KILL_TRIALS") or 20)
    rng = random.Random(int(os.environ.get("MLPRISM_KILL_SEED") or 9))
    base = make_project(tmp_path / "base")
    first = run(base)
    assert first.returncode == 0, first.stdout + first.stderr
    lock_a = (base / "mlprism.lock").read_bytes()

    ref = tmp_path / "ref"
    shutil.copytree(base, ref, symlinks=True)
    change_param(ref)
    t0 = time.monotonic()
    second = run(ref)
    span = time.monotonic() - t0                          # how long an uninterrupted run takes now
    assert second.returncode == 0, second.stdout + second.stderr
    lock_b = (ref / "mlprism.lock").read_bytes()
    assert lock_b != lock_a
    expected = snapshot(ref)
    fps_b = {name: entry["fingerprint"] for name, entry in json.loads(
        subprocess.run([sys.executable, "-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
                       input=lock_b.decode(), capture_output=True, text=True, check=True).stdout)["steps"].items()}

    phases: Counter[str] = Counter()
    reused_total = chains = trial = 0
    while trial < trials:
        chains += 1
        proj = tmp_path / f"c{chains}"
        shutil.copytree(base, proj, symlinks=True)
        change_param(proj)
        state = proj / ".mlprism"
        recorded: set[str] = set()
        for _ in range(3):
            trial += 1
            # most kills land where the runtime writes (steps, cache, lock, registry); some during start-up
            delay = rng.uniform(0.0, span) if rng.random() < 0.25 else rng.uniform(0.4 * span, 1.05 * span)
            runs_before = {i for (i,) in ledger_rows(state, "SELECT id FROM runs")}
            kill_after(proj, delay)
            where = f"trial {trial} (killed after {delay:.2f}s)"
            # what the crash left behind
            integrity(state / "ledger.db")
            integrity(state / "registry.db")
            before, recorded = recorded, check_cache(state)
            assert before <= recorded, f"{where}: step records disappeared"
            lock = (proj / "mlprism.lock").read_bytes()
            assert lock in (lock_a, lock_b), f"{where}: mlprism.lock is neither the old nor the new one"
            # the killed run reused what the kill before it had left (for the steps it reached)
            new_runs = {i for (i,) in ledger_rows(state, "SELECT id FROM runs")} - runs_before
            for run_id in new_runs:
                for step, fp, status in ledger_rows(
                        state, f"SELECT step, fingerprint, status FROM step_runs WHERE run_id='{run_id}'"):
                    if fp in before:
                        assert status in ("cached", "restored"), f"{where}: `{step}` was recorded yet {status}"
            phases[phase_of(proj, lock_a, lock_b, fps_b, recorded)] += 1
            if lock == lock_b or trial >= trials:
                break

        # the rerun resumes
        where = f"chain {chains} (trials up to {trial})"
        r = run(proj, "--json")
        assert r.returncode == 0, f"{where}: rerun failed\n{r.stdout}\n{r.stderr}"
        result = json.loads(r.stdout)
        assert result["status"] == "succeeded"
        for name in STEPS:
            status = result["steps"][name]["status"]
            if fps_b[name] in recorded:
                assert status in ("cached", "restored"), f"{where}: `{name}` finished before the kill but {status}"
                reused_total += 1
            else:
                assert status == "succeeded", f"{where}: `{name}` had no record but {status}"
        assert result["registered"] is not None
        assert (proj / "mlprism.lock").read_bytes() == lock_b, f"{where}: lock after the rerun differs"
        assert snapshot(proj) == expected, f"{where}: outputs after the rerun differ"
        check_cache(state)
        integrity(state / "ledger.db")
        integrity(state / "registry.db")
        assert not list((state / "cache" / "tmp").iterdir()), f"{where}: cache/tmp not cleaned"
        assert stray_temp_files(proj) == [], f"{where}: temporary files left in the project"
        statuses = [s for (s,) in ledger_rows(state, "SELECT status FROM runs")]
        assert "running" not in statuses, f"{where}: a run is still marked running"
        shutil.rmtree(proj)

    summary = ", ".join(f"{k}: {v}" for k, v in sorted(phases.items()))
    print(f"\n{trials} kills in {chains} chains (an uninterrupted run: {span:.2f}s), "
          f"{reused_total} step results reused by reruns; {summary}")
    # the delays spread over a whole run: some kills land after a step finished and before the lock was written
    if trials >= 12:
        assert any("of" in k or k.startswith("every") for k in phases), summary
