"""A full disk: a clear MLP410, no traceback, and the state of the last good run intact.

The project lives on a 2 MiB tmpfs mounted for the test (root only; elsewhere the
tests skip, and fail in CI where ``MLPRISM_REQUIRE_TMPFS=1``). Each case first
runs the pipeline successfully, then makes something run out of space: a step's
own write, storing its outputs in the cache, the lock file and the ledger.
Afterwards the lock file holds the same bytes as before, the ledger passes
``PRAGMA integrity_check``, every cache object hashes to its name, no temporary
file is left, and once space is freed a rerun succeeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.hardening.test_crash import check_cache, integrity, stray_temp_files

MLPRISM = str(Path(sys.executable).parent / "mlprism")

SPEC = """\
apiVersion: mlprism/v1
name: diskfull
params: {kib: 64}
steps:
  prep:
    run: head -c 20000 /dev/urandom > prep.bin
    outputs: [prep.bin]
  big:
    run: head -c ${params.kib}K /dev/zero > out/big.bin
    inputs: [prep.bin]
    outputs: [out/big.bin]
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        require("tmpfs", "mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        require("tmpfs", f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def run(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLPRISM, "run", "pipeline.yaml", "-q", "-j", "1", *args], cwd=proj, capture_output=True,
                          text=True, timeout=120)


def set_kib(proj: Path, kib: int) -> None:
    spec = proj / "pipeline.yaml"
    text = spec.read_text()
    start = text.index("params: {kib: ")
    end = text.index("}", start)
    spec.write_text(text[:start] + f"params: {{kib: {kib}}}" + text[end + 1:])


def project_on(disk: Path, spec: str = SPEC) -> tuple[Path, bytes]:
    """A project on ``disk`` after one good run; returns it and its lock file's bytes."""
    proj = disk / "proj"
    proj.mkdir()
    (proj / "pipeline.yaml").write_text(spec)
    r = run(proj)
    assert r.returncode == 0, r.stdout + r.stderr
    return proj, (proj / "mlprism.lock").read_bytes()


def assert_intact(proj: Path, lock: bytes) -> None:
    assert (proj / "mlprism.lock").read_bytes() == lock, "the lock file changed"
    integrity(proj / ".mlprism" / "ledger.db")
    check_cache(proj / ".mlprism")
    tmp = proj / ".mlprism" / "cache" / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir()), "half-written files left in the cache"
    assert stray_temp_files(proj) == []


def assert_clear(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    text = r.stdout + r.stderr
    assert "Traceback" not in text and "MLP001" not in text, text
    assert "MLP410" in text, text
    for n in needles:
        assert n in text, text


def test_a_step_that_fills_the_disk_fails_clearly(small_disk: Path) -> None:
    proj, lock = project_on(small_disk)
    set_kib(proj, 4096)                                   # 4 MiB on a 2 MiB disk
    r = run(proj)
    assert r.returncode == 1, r.stdout + r.stderr          # a failed pipeline
    assert_clear(r, "[big] FAILED [MLP410]", "no space left on device", "partial output `out/big.bin` removed",
                 "free some space")
    assert not (proj / "out" / "big.bin").exists()
    assert_intact(proj, lock)
    set_kib(proj, 64)                                     # back to the last good params: all from the cache
    r = run(proj)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[big] cached: restored `out/big.bin`" in r.stdout or "restored" in r.stdout, r.stdout
    assert (proj / "mlprism.lock").read_bytes() == lock
    assert (proj / "out" / "big.bin").stat().st_size == 64 * 1024


def test_no_room_to_cache_the_outputs(small_disk: Path) -> None:
    proj, lock = project_on(small_disk)
    set_kib(proj, 1200)                                   # fits once, not twice (the output and its cache copy)
    r = run(proj)
    assert r.returncode == 1, r.stdout + r.stderr
    assert_clear(r, "[big] FAILED [MLP410]", "cannot write the step's outputs into the cache",
                 "no space left on device")
    assert_intact(proj, lock)
    assert (proj / "out" / "big.bin").stat().st_size == 1200 * 1024   # the step's own output is whole
    set_kib(proj, 64)
    r = run(proj)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_room_for_the_lock_file_or_the_ledger(small_disk: Path) -> None:
    spec = SPEC.replace("outputs: [out/big.bin]", "outputs: [out/big.bin]\n    cache: false")
    proj, lock = project_on(small_disk, spec)
    fill = " && (cat /dev/zero > filler.bin 2>/dev/null || true)"
    text = (proj / "pipeline.yaml").read_text()
    (proj / "pipeline.yaml").write_text(text.replace("> out/big.bin", "> out/big.bin" + fill))
    r = run(proj)                                          # the step fills the disk, then succeeds
    assert r.returncode in (1, 2), r.stdout + r.stderr     # failed run (lock) or state not writable (ledger)
    assert_clear(r, "no space left on device", "free some space")
    assert "the lock file" in r.stdout + r.stderr or "the run ledger" in r.stdout + r.stderr
    assert_intact(proj, lock)
    (proj / "filler.bin").unlink()
    (proj / "pipeline.yaml").write_text(text)
    r = run(proj)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (proj / "mlprism.lock").read_bytes() == lock
    integrity(proj / ".mlprism" / "ledger.db")


def test_runtime_writes_on_a_full_disk_leave_no_trace(small_disk: Path) -> None:
    """The writers themselves: the lock file and a cache object, on a disk with no space left."""
    from mlprism.runtime.cache import Cache
    from mlprism.runtime.hashing import Hasher
    from mlprism.runtime.lockfile import write_lock

    lock = small_disk / "mlprism.lock"
    write_lock(lock, "version: 1\n")
    (small_disk / ".mlprism").mkdir()
    cache = Cache(small_disk / ".mlprism")
    cache.clean_tmp()
    big = small_disk / "big.bin"
    big.write_bytes(os.urandom(1200 * 1024))
    digest = Hasher(None).digest(big)
    filler = small_disk / "filler"
    with open(filler, "wb") as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    filler_size = filler.stat().st_size
    with pytest.raises(OSError) as exc:
        write_lock(lock, "version: 1\n" + "# padding\n" * 2000 + uuid.uuid4().hex)
    assert exc.value.errno == 28
    assert lock.read_text() == "version: 1\n"
    assert [p.name for p in small_disk.iterdir() if p.name.endswith(".tmp")] == []
    filler.unlink()
    with open(filler, "wb") as f:                        # leave room for the output, not for its copy
        f.write(b"\0" * (filler_size - 1300 * 1024))
    with pytest.raises(OSError) as exc:
        cache.store(big, digest)
    assert exc.value.errno == 28
    assert list(cache.tmp.iterdir()) == []
    assert not cache.has_object(digest.hash or "")
    check_cache(small_disk / ".mlprism")
