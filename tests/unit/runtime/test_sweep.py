"""Sweep grids, multirun overrides and workspaces."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_selection() -> None:
    p = _pipe()
    idx = GraphIndex.of(p)
    assert select_steps(p, RunOptions(only=("train",)), idx) == ["train"]
    assert select_steps(p, RunOptions(from_step="train")) == ["train"]
    assert select_steps(p, RunOptions(until="prepare")) == ["prepare"]
    with pytest.raises(DiagnosticError) as exc:
        select_steps(p, RunOptions(only=("trian",)))
    assert exc.value.diagnostics[0].code == "MLP407" and "train" in (exc.value.diagnostics[0].hint or "")


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


def test_swept_strings_reach_the_run_as_they_are_written(tmp_path: Path) -> None:
    """Each leg's override, composed by Hydra and OmegaConf, gives back exactly the swept value."""
    import mlprism

    values = ("a\\b", "x${y}", "it's", "two words", "true", "1e3", "end\\")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("apiVersion: mlprism/v1\nname: s\nparams: {mode: a}\nsteps:\n  a: {run: echo}\n")
    p = _pipe(params={"mode": "a"}, sweep=Sweep({"mode": values}, Select("acc")))
    legs = sweep_grid(p, RunOptions())
    assert [mlprism.load_pipeline(str(spec), leg).params["mode"] for leg in legs] == list(values)
