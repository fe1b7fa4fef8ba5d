"""A step that prints nothing leaves no log file; `mlprism logs` still knows it ran and says so."""

from __future__ import annotations

import json
import time
from pathlib import Path

SPEC = """
    apiVersion: mlprism/v1
    name: quiet
    steps:
      quiet:
        run: echo 1 > a.txt
        outputs: [a.txt]
      loud:
        run: echo hello; echo 2 > b.txt
        inputs: [a.txt]
        outputs: [b.txt]
      quiet2:
        run: echo 3 > c.txt
        inputs: [b.txt]
        outputs: [c.txt]
      late:
        run: (sleep 0.4; echo late-line) & echo 4 > d.txt
        inputs: [c.txt]
        outputs: [d.txt]
      after-late:
        run: echo 5 > e.txt
        inputs: [d.txt]
        outputs: [e.txt]
      bad:
        run: "false"
        inputs: [e.txt]
"""


def _run_dir(proj: Path, run_id: str) -> Path:
    return proj / ".mlprism" / "runs" / run_id


def test_quiet_steps_leave_no_log_and_logs_says_they_printed_nothing(cli, project) -> None:
    proj = project({"pipeline.yaml": SPEC})
    r = cli("run", "pipeline.yaml", "-j", "1", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 1 and res["steps"]["bad"]["status"] == "failed"
    time.sleep(0.8)                                     # the background writer of `late` is done
    run_dir = _run_dir(proj, res["run_id"])
    # only steps that printed have a log; no spare file is left behind
    assert sorted(p.name for p in run_dir.iterdir()) == ["late.log", "loud.log"]
    assert (run_dir / "loud.log").read_text() == "hello\n"
    # a log still open in a process of its step is never handed to another step
    assert (run_dir / "late.log").read_text() == "late-line\n"

    out = cli("logs", "latest", cwd=proj)
    assert out.code == 0
    assert "==> quiet <==\n(`quiet` printed nothing)" in out.out
    assert "==> loud <==\nhello\n" in out.out
    assert "==> bad <==\n(`bad` printed nothing)" in out.out
    one = cli("logs", "latest", "quiet2", cwd=proj)
    assert one.code == 0 and one.out == "(`quiet2` printed nothing)\n"
    data = json.loads(cli("logs", "latest", "--json", cwd=proj).out)
    assert data["logs"]["quiet"] == "" and data["logs"]["loud"] == "hello\n"
    assert list(data["logs"]) == ["quiet", "loud", "quiet2", "late", "after-late", "bad"]


def test_failed_quiet_step_says_it_printed_nothing(cli, project) -> None:
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: bad
        steps:
          bad:
            run: exit 3
          noisy:
            run: echo oops; exit 4
    """})
    r = cli("run", "pipeline.yaml", "-j", "2", "--keep-going", cwd=proj)
    assert r.code == 1
    assert "[bad] FAILED [MLP400]: exit code 3 — it printed nothing" in r.out
    assert "[noisy] FAILED [MLP400]: exit code 4 — log: " in r.out
    cached = cli("logs", "latest", "nope", cwd=proj)
    assert cached.code == 2 and "MLP407" in cached.err


def test_many_quiet_steps_in_parallel(cli, project) -> None:
    steps = "\n".join(f"      s{i}:\n        run: echo {i} > out/s{i}.txt\n        outputs: [out/s{i}.txt]"
                      for i in range(30))
    proj = project({"pipeline.yaml": f"apiVersion: mlprism/v1\nname: many\nsteps:\n{steps}\n"})
    r = cli("run", "pipeline.yaml", "-j", "3", "--json", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 0 and all(s["status"] == "succeeded" for s in res["steps"].values())
    assert list(_run_dir(proj, res["run_id"]).iterdir()) == []
    assert all((proj / "out" / f"s{i}.txt").read_text() == f"{i}\n" for i in range(30))
