"""Sweep grids, multirun overrides and workspaces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mlprism.diagnostics import DiagnosticError
from mlprism.ir import Pipeline, Select, Step, Sweep
from mlprism.runtime.executor import GraphIndex, RunOptions, select_steps
from mlprism.runtime.sweep import link_workspace, split_sweep_overrides, sweep_grid


def _pipe(**kw: object) -> Pipeline:
    steps = (Step("prepare", "p", "p", outputs=("data/train.csv",)),
             Step("train", "t", "t", inputs=("data/train.csv",), outputs=("models/m.bin",), metrics="metrics/t.json"))
    p = Pipeline(name="s", steps=steps, params={"lr": 0.1, "depth": 2})
    from dataclasses import replace

    from mlprism._internal.graph import build

    return build(replace(p, **kw))  # type: ignore[arg-type]


def test_split_and_grid() -> None:
    fixed, swept = split_sweep_overrides(["params.lr=0.1,0.2", "params.depth=3", "+x=[1,2]"])
    assert fixed == ["params.depth=3", "+x=[1,2]"] and swept == ["params.lr=0.1,0.2"]
    p = _pipe(sweep=Sweep({"lr": (0.01, 0.1, 0.3), "depth": (2, 4)}, Select("acc")))
    assert len(sweep_grid(p, RunOptions())) == 6
    grid = sweep_grid(p, RunOptions(multirun=True, sweep_overrides=("params.lr=range(1,3)",)))
    assert grid == [["params.lr=1", "params.depth=2"], ["params.lr=1", "params.depth=4"],
                    ["params.lr=2", "params.depth=2"], ["params.lr=2", "params.depth=4"]]
    from dataclasses import replace

    fixed_lr = replace(p, overrides=("params.lr=0.5",))           # a fixed key leaves the grid
    assert sweep_grid(fixed_lr, RunOptions()) == [["params.depth=2"], ["params.depth=4"]]
    assert sweep_grid(p, RunOptions(no_sweep=True)) == [[]]
    with pytest.raises(DiagnosticError):
        split_sweep_overrides(["params.lr=0.1,"])


def test_glob_sweeps_a_config_groups_options_and_an_empty_sweep_is_refused(tmp_path: Path) -> None:
    for name in ("rf", "xgb", "lgbm"):
        (tmp_path / "conf" / "model").mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / "model" / f"{name}.yaml").write_text("depth: 1\n")
    _, swept = split_sweep_overrides(["model@params.model=glob(*,exclude=lgbm)"], tmp_path)
    grid = sweep_grid(_pipe(), RunOptions(multirun=True, sweep_overrides=tuple(swept)))
    assert grid == [["model@params.model=rf"], ["model@params.model=xgb"]]
    _, swept = split_sweep_overrides(["model=glob(x*)"], tmp_path)              # one option: still a sweep
    assert sweep_grid(_pipe(), RunOptions(multirun=True, sweep_overrides=tuple(swept))) == [["model=xgb"]]
    for bad in (["model=glob(q*)"], ["params.lr=glob(*)"]):
        with pytest.raises(DiagnosticError) as err:
            split_sweep_overrides(bad, tmp_path)
        assert err.value.diagnostics[0].code == "MLP226"
        assert err.value.diagnostics[0].location.override == bad[0]
    with pytest.raises(DiagnosticError) as err:
        sweep_grid(_pipe(), RunOptions(multirun=True, sweep_overrides=("params.lr=range(0,0)",)))
    assert err.value.diagnostics[0].code == "MLP226"


def test_selection() -> None:
    p = _pipe()
    idx = GraphIndex.of(p)
    assert select_steps(p, RunOptions(only=("train",)), idx) == ["train"]
    assert select_steps(p, RunOptions(from_step="train")) == ["train"]
    assert select_steps(p, RunOptions(until="prepare")) == ["prepare"]
    with pytest.raises(DiagnosticError) as exc:
        select_steps(p, RunOptions(only=("trian",)))
    assert exc.value.diagnostics[0].code == "MLP407" and "train" in (exc.value.diagnostics[0].hint or "")
    # selectors whose intersection is empty are a mistake, not "everything up to date (0 steps)"
    with pytest.raises(DiagnosticError) as exc:
        select_steps(p, RunOptions(only=("prepare",), from_step="train"))
    assert exc.value.diagnostics[0].code == "MLP002" and exc.value.diagnostics[0].hint


def test_graph_index_reuses_a_shared_graph_only() -> None:
    """Combinations compiled together share their edges (one object): their indexes share neighbours and order,
    each with its own steps; anything else gets its own index."""
    from dataclasses import replace

    p = _pipe()
    a = GraphIndex.of(p)
    swept = replace(p, steps=tuple(replace(s, run=s.run + " 2") if s.name == "train" else s for s in p.steps))
    b = GraphIndex.of(swept)
    assert b.ups is a.ups and b.order is a.order and b.steps["train"].run == "t 2" and a.steps["train"].run == "t"
    copied = replace(p, edges=tuple(replace(e) for e in p.edges))       # equal edges, another object
    c = GraphIndex.of(copied)
    assert c.ups is not a.ups and c.ups == a.ups and c.downs == a.downs
    renamed = replace(p, steps=tuple(reversed(p.steps)))                 # same edges, other order
    assert GraphIndex.of(renamed).order == {"train": 0, "prepare": 1}
    assert GraphIndex.of(p).order == {"prepare": 0, "train": 1}


def test_workspace_links_inputs_and_keeps_outputs_real(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    for rel in ("src/train.py", "data/raw.csv", "data/train.csv", "models/m.bin", "pipeline.yaml", ".mlprism/x"):
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text(rel)
    ws = proj / ".mlprism" / "sweeps" / "s" / "0"
    link_workspace(proj, ws, _pipe())
    assert (ws / "src").is_symlink() and not os.path.isabs(os.readlink(ws / "src"))
    assert (ws / "src" / "train.py").read_text() == "src/train.py"
    assert (ws / "data").is_dir() and not (ws / "data").is_symlink()
    assert (ws / "data" / "raw.csv").is_symlink() and not (ws / "data" / "train.csv").exists()
    assert (ws / "models").is_dir() and not (ws / "models" / "m.bin").exists()
    assert (ws / "metrics").is_dir() and not (ws / ".mlprism").exists()
    (ws / "data" / "train.csv").write_text("mine")
    assert (proj / "data" / "train.csv").read_text() == "data/train.csv"


def test_workspace_of_outputs_in_many_directories_is_linear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each output in its own directory (out/dI/f.txt), those directories already in the project: every one is
    mirrored as a real directory, and the holders are not scanned once per directory (quadratic: 4,000 such
    outputs took 8 s a combination)."""
    import builtins

    from mlprism.runtime import sweep

    n = 300
    steps = (Step("many", "m", "m", outputs=tuple(f"out/d{i}/f.txt" for i in range(n))),
             Step("deep", "d", "d", outputs=("a/b/c/x.txt",)))
    proj = tmp_path / "proj"
    for i in range(n):
        (proj / f"out/d{i}").mkdir(parents=True)
        (proj / f"out/d{i}/f.txt").write_text("old")
        (proj / f"out/d{i}/keep.txt").write_text("k")
    from mlprism._internal.graph import build

    sorted_items: list[int] = []

    def counting_sorted(items: Any, **kw: Any) -> list[Any]:
        out = builtins.sorted(items, **kw)
        sorted_items.append(len(out))
        return out

    monkeypatch.setattr(sweep, "sorted", counting_sorted, raising=False)
    ws = tmp_path / "ws"
    link_workspace(proj, ws, build(Pipeline(name="s", steps=steps)))
    assert sum(sorted_items) < 10 * n, sum(sorted_items)
    for i in (0, n - 1):
        assert (ws / f"out/d{i}").is_dir() and not (ws / f"out/d{i}").is_symlink()
        assert not (ws / f"out/d{i}/f.txt").exists() and (ws / f"out/d{i}/keep.txt").is_symlink()
    assert (ws / "a").is_dir() and not (ws / "a").is_symlink()


def test_swept_strings_reach_the_run_as_they_are_written(tmp_path: Path) -> None:
    """Each leg's override, composed by Hydra and OmegaConf, gives back exactly the swept value."""
    import mlprism

    values = ("a\\b", "x${y}", "it's", "two words", "true", "1e3", "end\\")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("apiVersion: mlprism/v1\nname: s\nparams: {mode: a}\nsteps:\n  a: {run: echo}\n")
    p = _pipe(params={"mode": "a"}, sweep=Sweep({"mode": values}, Select("acc")))
    legs = sweep_grid(p, RunOptions())
    assert [mlprism.load_pipeline(str(spec), leg).params["mode"] for leg in legs] == list(values)



# -- shared steps: the first combination (the leader) runs them once, in the project ------------------------------
SHARED = """
apiVersion: mlprism/v1
name: shared
params: {k: 1}
steps:
  prep:
    run: echo prep >> "$LOG" && mkdir -p out && echo p > out/prep.txt && echo q > out/other.txt
    outputs: [out/prep.txt, out/other.txt]
  feat:
    run: echo feat >> "$LOG" && cat out/prep.txt > out/feat.txt
    inputs: [out/prep.txt]
    outputs: [out/feat.txt]
  train:
    run: |
      echo "train ${params.k}:" $(ls out) >> "$LOG" && cat out/feat.txt > out/m.txt && echo '{"acc": ${params.k}}' > out/m.json
    inputs: [out/feat.txt]
    outputs: [out/m.txt]
    metrics: out/m.json
sweep:
  params: {k: [1, 2, 3]}
  select: {metric: acc, goal: GOAL}
"""


def _log(path: Path) -> list[str]:
    lines = sorted(path.read_text().splitlines()) if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


@pytest.mark.parametrize("goal", ["min", "max"])
def test_shared_steps_run_once_by_the_leader_in_the_project(cli, project, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, goal: str) -> None:
    import json

    from mlprism.runtime.ledger import Ledger

    log = tmp_path / "log.txt"
    monkeypatch.setenv("LOG", str(log))
    proj = project({"pipeline.yaml": SHARED.replace("GOAL", goal)})
    r = cli("run", "pipeline.yaml", "--json", "-j", "3", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 0 and res["status"] == "succeeded", r.out + r.err
    # prep and feat run once, in the project (the leader, k=1, sees everything there); k=2 and k=3 run
    # in workspaces that hold what their step reads: feat.txt, not the rest of prep's outputs
    assert _log(log) == ["feat", "prep", "train 1: feat.txt other.txt prep.txt", "train 2: feat.txt",
                         "train 3: feat.txt"]
    chosen = "k=1" if goal == "min" else "k=3"
    assert [run["combo"] for run in res["sweep"]["runs"] if run["selected"]] == [chosen]
    assert json.loads((proj / "out" / "m.json").read_text()) == {"acc": 1 if goal == "min" else 3}
    assert sorted(p.name for p in (proj / "out").iterdir()) == ["feat.txt", "m.json", "m.txt", "other.txt",
                                                                 "prep.txt"]
    with Ledger(proj / ".mlprism" / "ledger.db") as ledger:      # every combination records every step
        for child in ledger.children(res["run_id"]):
            i = child["info"]["index"]
            assert child["info"]["workdir"] == ("." if i == 0 else f".mlprism/sweeps/{res['run_id']}/{i}")
            steps = {s["step"]: s["status"] for s in ledger.step_runs(child["id"])}
            assert steps == {"prep": "succeeded" if i == 0 else "cached",
                             "feat": "succeeded" if i == 0 else "cached", "train": "succeeded"}
    r = cli("run", "pipeline.yaml", "--json", "-j", "3", cwd=proj)          # a no-op sweep touches nothing
    assert r.code == 0 and _log(log) == [], r.out + r.err
    assert json.loads((proj / "out" / "m.json").read_text()) == {"acc": 1 if goal == "min" else 3}
    (proj / "out" / "prep.txt").unlink()                                    # lost: put back, nothing runs
    r = cli("run", "pipeline.yaml", "--json", "-j", "3", cwd=proj)
    assert r.code == 0 and _log(log) == [] and (proj / "out" / "prep.txt").read_text() == "p\n"


def test_a_partial_sweep_reads_the_unselected_steps_outputs_from_the_project(cli, project, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --from train` on a spec with a sweep: prep and feat are not selected, their outputs are in the
    project and every combination reads them (was MLP411 "out/feat.txt does not exist" from the second
    combination's workspace, with the sweep left `running` in the ledger)."""
    import json

    log = tmp_path / "log.txt"
    monkeypatch.setenv("LOG", str(log))
    proj = project({"pipeline.yaml": SHARED.replace("GOAL", "max")})
    r = cli("run", "pipeline.yaml", "--no-sweep", "--until", "feat", cwd=proj)
    assert r.code == 0, r.out + r.err
    _log(log)
    r = cli("run", "pipeline.yaml", "--json", "--from", "train", cwd=proj)
    assert r.code == 0, r.out + r.err
    # every combination sees the project's files, as a plain --from run does
    assert _log(log) == [f"train {k}: feat.txt other.txt prep.txt" for k in (1, 2, 3)]
    assert json.loads((proj / "out" / "m.json").read_text()) == {"acc": 3}
    assert (proj / "out" / "feat.txt").read_text() == "p\n" and not (proj / "out" / "feat.txt").is_symlink()
    r = cli("runs", "list", "--json", cwd=proj)
    assert "running" not in {run["status"] for run in json.loads(r.out)["runs"]}, r.out


def test_a_sweep_that_cannot_start_is_not_left_running(cli, project, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("LOG", str(tmp_path / "log.txt"))
    proj = project({"pipeline.yaml": SHARED.replace("GOAL", "max")})
    r = cli("run", "pipeline.yaml", "--from", "train", cwd=proj)        # nothing made out/feat.txt yet
    assert r.code == 2 and "MLP411" in r.err, r.out + r.err
    r = cli("runs", "list", "--json", cwd=proj)
    assert [run["status"] for run in json.loads(r.out)["runs"]] == ["failed"], r.out
    assert not list((proj / ".mlprism").glob("sweeps/*"))


@pytest.mark.parametrize("goal", ["min", "max"])
def test_the_outputs_the_leader_wrote_are_not_read_again_to_select(cli, project, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, goal: str) -> None:
    """Putting the selected run's outputs in the project compares what the leader ran by the hashes taken when
    each step exited (a fresh output is not vouched for by the stat cache: it would be read in full again)."""
    from mlprism.runtime import sweep
    from mlprism.runtime.hashing import Hasher

    monkeypatch.setenv("LOG", str(tmp_path / "log.txt"))
    proj = project({"pipeline.yaml": SHARED.replace("GOAL", goal)})
    looked: list[str] = []
    selecting = False
    digest, restore = Hasher.digest, sweep._restore_outputs

    def watched_digest(self: Hasher, path: str | os.PathLike[str]) -> object:
        if selecting:
            looked.append(Path(path).relative_to(proj).as_posix())
        return digest(self, path)

    def watched_restore(*args: object) -> None:
        nonlocal selecting
        selecting = True
        try:
            restore(*args)
        finally:
            selecting = False

    monkeypatch.setattr(Hasher, "digest", watched_digest)
    monkeypatch.setattr(sweep, "_restore_outputs", watched_restore)
    r = cli("run", "pipeline.yaml", "-j", "3", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert looked == []                          # prep, feat and train (k=1) ran in the project: known hashes
    assert (proj / "out" / "m.txt").read_text() == "p\n"
    (proj / "out" / "m.txt").write_text("changed by hand\n")
    r = cli("run", "pipeline.yaml", "-j", "3", cwd=proj)    # nothing runs: each output is looked at where it is
    assert r.code == 0 and sorted(looked) == ["out/feat.txt", "out/m.json", "out/m.txt", "out/other.txt",
                                                      "out/prep.txt"], looked
    assert (proj / "out" / "m.txt").read_text() == "p\n"      # and the selected version put back


def test_shared_steps_vouched_for_by_the_lock_file_alone_reach_the_followers(cli, project, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A teammate's checkout: the lock file and the outputs, no cache. The leader finds the shared steps up to
    date in the project; the followers take their outputs from the cache, so the leader puts them there."""
    import shutil

    log = tmp_path / "log.txt"
    monkeypatch.setenv("LOG", str(log))
    proj = project({"pipeline.yaml": SHARED.replace("GOAL", "min")})
    r = cli("run", "pipeline.yaml", "-j", "3", cwd=proj)
    assert r.code == 0 and len(_log(log)) == 5, r.out + r.err
    shutil.rmtree(proj / ".mlprism")
    r = cli("run", "pipeline.yaml", "-j", "3", cwd=proj)
    assert r.code == 0, r.out + r.err
    # prep and feat are not run again (the lock file says they are up to date); k=1's train neither (the
    # lock file holds the selected combination's); k=2 and k=3 run theirs, reading feat.txt from the cache
    assert _log(log) == ["train 2: feat.txt", "train 3: feat.txt"], r.out
    assert (proj / "out" / "m.json").read_text().strip() == '{"acc": 1}'


def test_a_new_combination_reads_a_shared_small_output_from_its_record(cli, project, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Small outputs live inside their step records (no cache objects). A combination added later runs
    in a workspace and needs the shared feat.txt: the leader, finding feat up to date, only checks that
    its record exists; the follower reads the bytes from it when it puts the file in place."""
    log = tmp_path / "log.txt"
    monkeypatch.setenv("LOG", str(log))
    # m.txt gets a line of its own: no record of train holds feat.txt's bytes (the store is by content)
    spec = SHARED.replace("GOAL", "max").replace("cat out/feat.txt > out/m.txt", "(cat out/feat.txt; echo ${params.k}) > out/m.txt")
    assert spec.count("echo ${params.k}) > out/m.txt") == 1
    proj = project({"pipeline.yaml": spec})
    assert cli("run", "pipeline.yaml", "-j", "3", cwd=proj).code == 0 and len(_log(log)) == 5
    cache = proj / ".mlprism" / "cache"
    assert not [p for p in (cache / "objects").rglob("*") if p.is_file()]
    (proj / "pipeline.yaml").write_text(spec.replace("k: [1, 2, 3]", "k: [1, 2, 3, 4]"))
    r = cli("run", "pipeline.yaml", "-j", "3", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert _log(log) == ["train 4: feat.txt"], r.out
    assert (proj / "out" / "m.json").read_text().strip() == '{"acc": 4}'
    assert (proj / "out" / "m.txt").read_text() == "p\n4\n"
    assert not [p for p in (cache / "objects").rglob("*") if p.is_file()]


def test_followers_are_released_when_the_leader_stops_before_a_shared_step(cli, project, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """k=1's own step fails first and its run stops: k=2 must not wait for shared steps that will never run."""
    import json

    log = tmp_path / "log.txt"
    monkeypatch.setenv("LOG", str(log))
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: stops
        params: {k: 1}
        steps:
          swept:
            run: |
              echo swept ${params.k} >> "$LOG" && test ${params.k} = 2 && echo '{"acc": 1}' > m.json
            metrics: m.json
          shared:
            run: echo shared >> "$LOG" && echo s > s.txt
            outputs: [s.txt]
        sweep:
          params: {k: [1, 2]}
          select: {metric: acc, goal: max}
    """})
    r = cli("run", "pipeline.yaml", "--json", "-j", "1", cwd=proj)
    res = json.loads(r.out)
    assert r.code == 1 and res["status"] == "failed", r.out + r.err
    # the leader (k=1) stopped after its failure, before `shared`; k=2 ran it itself and was selected
    assert _log(log) == ["shared", "swept 1", "swept 2"]
    assert [(run["combo"], run["status"], run["selected"]) for run in res["sweep"]["runs"]] == [
        ("k=1", "failed", False), ("k=2", "succeeded", True)]
    assert (proj / "s.txt").read_text() == "s\n"


def test_status_and_dry_run_consider_every_combination(cli, project, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """After a sweep the project holds the selected combination: `status` and `--dry-run` plan the sweep as
    `run` would (every combination), not the spec's base params, so they agree with the no-op rerun."""
    import json

    monkeypatch.setenv("LOG", str(tmp_path / "log.txt"))
    proj = project({"pipeline.yaml": SHARED.replace("GOAL", "max")})
    assert cli("run", "pipeline.yaml", "-j", "2", cwd=proj).code == 0
    r = cli("status", "pipeline.yaml", cwd=proj)                  # the project holds k=3's train (selected)
    assert r.code == 0 and "everything up to date" in r.out, r.out
    assert "sweep: 3 combinations, every one up to date" in r.out
    doc = json.loads(cli("status", "pipeline.yaml", "--json", cwd=proj).out)
    assert doc["up_to_date"] and [s["state"] for s in doc["steps"]] == ["up to date"] * 3
    assert [(c["combo"], c["stale"]) for c in doc["sweep"]["combinations"]] == [("k=1", []), ("k=2", []),
                                                                                ("k=3", [])]
    dry = json.loads(cli("run", "pipeline.yaml", "--dry-run", "--json", cwd=proj).out)
    assert {n: s["action"] for n, s in dry["steps"].items()} == {"prep": "cached", "feat": "cached",
                                                                 "train": "cached"}
    assert [run["would_run"] for run in dry["sweep"]["runs"]] == [[], [], []]

    spec = proj / "pipeline.yaml"                                  # a new value: only it has a step to run
    spec.write_text(spec.read_text().replace("k: [1, 2, 3]", "k: [1, 2, 3, 4]"))
    doc = json.loads(cli("status", "pipeline.yaml", "--json", cwd=proj).out)
    states = {s["name"]: (s["state"], s["reasons"]) for s in doc["steps"]}
    assert states["prep"][0] == states["feat"][0] == "up to date"
    assert states["train"][0] == "stale" and states["train"][1][0].startswith("k=4: ")
    assert [(c["combo"], c["stale"]) for c in doc["sweep"]["combinations"]][-2:] == [("k=3", []), ("k=4", ["train"])]
    r = cli("status", "pipeline.yaml", cwd=proj)
    assert "sweep: 4 combinations, 1 with steps to run: k=4 (train)" in r.out, r.out
    dry = json.loads(cli("run", "pipeline.yaml", "--dry-run", "--json", cwd=proj).out)
    assert dry["steps"]["train"]["action"] == "would-run" and dry["sweep"]["runs"][3]["would_run"] == ["train"]
    assert cli("run", "pipeline.yaml", "-j", "2", cwd=proj).code == 0
    assert json.loads(cli("status", "pipeline.yaml", "--json", cwd=proj).out)["up_to_date"]
    r = cli("status", "pipeline.yaml", "params.k=4", cwd=proj)    # a fixed key leaves the grid: no sweep
    assert r.code == 0 and "sweep:" not in r.out and "everything up to date" in r.out, r.out   # k=4 was selected
    r = cli("status", "pipeline.yaml", "params.k=2", cwd=proj)
    assert "train  restorable" in r.out, r.out
    r = cli("explain", "pipeline.yaml", "train", cwd=proj)       # one configuration: it says which, and how
    assert r.code == 0 and "note: the spec sweeps 4 combinations; this explains the params as given (k=1)" in r.out
    assert "to explain one, add its overrides, e.g. `params.k=1`" in r.out, r.out
    r = cli("explain", "pipeline.yaml", "train", "params.k=4", cwd=proj)
    assert r.code == 0 and "is up to date" in r.out and "note:" not in r.out, r.out


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_sweep_stops_every_combination_at_once(project, tmp_path: Path, signame: str) -> None:
    """Ctrl-C (or SIGTERM, as for a plain run) stops the steps of every combination. Before, a sweep waited for
    them to finish on their own after Ctrl-C, and SIGTERM killed the runner and left them running."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from mlprism.runtime.ledger import Ledger

    from tests.conftest import BIN
    from tests.unit.runtime.test_inline_start import _group_gone

    pids = tmp_path / "pids"
    pids.mkdir()
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: long
        params: {k: 1}
        steps:
          prep: {run: echo p > p.txt, outputs: [p.txt]}
          train:
            run: echo $$ > "$PIDS/${params.k}"; sleep 60; cat p.txt > m.txt
            inputs: [p.txt]
            outputs: [m.txt]
        sweep:
          params: {k: [1, 2, 3]}
    """})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PIDS": str(pids)}
    proc = subprocess.Popen([str(BIN / "mlprism"), "run", "pipeline.yaml", "-j", "3"], cwd=proj, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started: list[int] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(started) < 3:
        started = [int(p.read_text()) for p in pids.iterdir() if p.read_text().strip()]
        time.sleep(0.05)
    assert len(started) == 3, "the combinations' steps did not start"
    t0 = time.monotonic()
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 10, out + err                   # not the steps' 60 s
    # as a plain run: exit code 1 (a pipeline that did not succeed), the sweep's summary says why
    assert proc.returncode == 1 and ": interrupted: " in out and "sweep " in out, out + err
    for pid in started:                                             # every combination's process group is gone
        assert _group_gone(pid), f"process group {pid} still runs"
    with Ledger(proj / ".mlprism" / "ledger.db") as ledger:
        [sweep] = [r for r in ledger.list_runs() if r["kind"] == "sweep"]
        assert sweep["status"] == "interrupted"
        assert {c["status"] for c in ledger.children(sweep["id"])} == {"interrupted"}, json.dumps(
            ledger.children(sweep["id"]), default=str)


def test_a_partial_sweep_cannot_leave_out_a_step_that_differs_between_combinations(
        cli, project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--from report` with `train` swept: every combination would read the project's one `out/m.txt` (one
    combination's model) as its own; refused with MLP002 and a hint, before anything runs."""
    monkeypatch.setenv("LOG", str(tmp_path / "log.txt"))
    spec = SHARED.replace("GOAL", "max").replace("sweep:", """  report:
    run: cat out/m.txt > out/report.txt
    inputs: [out/m.txt]
    outputs: [out/report.txt]
sweep:""")
    proj = project({"pipeline.yaml": spec})
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    r = cli("run", "pipeline.yaml", "--from", "report", cwd=proj)
    assert r.code == 2 and "MLP002" in r.err and "`train`" in r.err and "--from train" in r.err, r.out + r.err
    # a left-out step alike in every combination (feat) is fine
    r = cli("run", "pipeline.yaml", "--from", "train", cwd=proj)
    assert r.code == 0, r.out + r.err


def test_multirun_with_only_is_refused_not_run_once(cli, project) -> None:
    """`run -m params.tag=x,y --only train` ran train once with the spec's tag: the sweep was dropped silently."""
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: s
        params: {tag: base}
        steps: {train: {run: "echo ${params.tag} > t.txt", outputs: [t.txt]}}
    """})
    res = cli("run", "pipeline.yaml", "-m", "params.tag=x,y", "--only", "train", cwd=proj)
    assert res.code == 2, res.out + res.err
    assert "MLP002" in res.err and "override `params.tag=x,y`" in res.err
    assert not (proj / "t.txt").exists()
