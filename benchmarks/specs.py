"""Synthetic workloads for the benchmarks: one description, rendered for mlprism and for every peer.

    .venv/bin/python benchmarks/specs.py mix 100 > pipeline.yaml     # print one mlprism spec
    .venv/bin/python benchmarks/specs.py chain 5 --project DIR        # write a runnable project

A :class:`Workload` is a list of trivial steps (each writes one small file with
``echo``) plus the files they read. :func:`write_mlprism_project` renders it as
an mlprism project; ``benchmarks/peers.py`` renders the *same* workload for dvc,
snakemake, ploomber and the Kubeflow Pipelines compiler, so every tool builds
the same DAG and runs the same processes.

This is the one generator of the benchmarks (``benchmarks/run.py`` and
``benchmarks/compiler_bench.py``) and of the tests that need big specs. Shapes
(runnable commands, a structure peers can be rendered from, one data file read
in the middle, sweeps):

  chain    s0 → s1 → … → sN-1: the deepest graph, nothing runs in parallel
  fan      one source fans out to N-2 workers that fan in to one sink
  diamond  layers of 10 steps; every step reads two outputs of the layer before
  mix      a realistic project: params interpolated into commands, declared data,
           metrics with gates every 10th step, resources/retries/timeouts, explicit
           ``needs``, skip connections, and a sweep over the last N/100 steps
           (3 values: mlprism runs each swept step 3 times, peers get 3 copies)

Every shape reads ``data/seed.txt`` at its root and ``data/mid.txt`` at its
middle step (``mid_step``), so "change one input in the middle" means the
same thing for every tool.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

SHAPES = ("chain", "fan", "diamond", "mix")
SIZES = (100, 1000, 10000)
WIDTH = 10                         # steps per layer of the diamond
SEED = "data/seed.txt"
MID = "data/mid.txt"
PARAMS: dict[str, float | int] = {"lr": 0.1, "depth": 8}
SWEEP_PARAM = "alpha"
SWEEP_VALUES = (1, 2, 3)
GATE_METRIC = "accuracy"
METRIC_VALUE = 0.9


@dataclass(frozen=True)
class Step:
    """One trivial step. ``params`` are the names its command echoes (they are part of its cache key)."""

    name: str
    index: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: tuple[str, ...] = ()
    metrics: str | None = None
    gate_min: float | None = None
    needs: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()      # mlprism-only keys (resources, retries…): peers have no equivalent
    swept: bool = False

    def command(self, param: Callable[[str], str], out: Callable[[str], str] = str) -> str:
        """The shell command; ``param(name)`` renders a param reference in the tool's own syntax,
        ``out(path)`` an output path (peers rename the outputs of sweep copies)."""
        words = " ".join([str(self.index), *(param(p) for p in self.params)])
        parts = [f"echo {words} > {out(o)}" for o in self.outputs]
        if self.metrics:
            parts.append(f"echo '{{\"{GATE_METRIC}\": {METRIC_VALUE}}}' > {out(self.metrics)}")
        return " && ".join(parts)

    @property
    def products(self) -> tuple[str, ...]:
        return self.outputs + ((self.metrics,) if self.metrics else ())


@dataclass(frozen=True)
class Workload:
    shape: str
    n: int
    steps: tuple[Step, ...]
    params: dict[str, float | int] = field(default_factory=dict)
    sweep: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"bench-{self.shape}-{self.n}"

    @property
    def mid_step(self) -> Step:
        return next(s for s in self.steps if MID in s.inputs)

    @property
    def data_files(self) -> dict[str, str]:
        return {SEED: "seed\n", MID: "mid 0\n"}

    def executions(self) -> int:
        """How many step processes a cold run starts (swept steps run once per value)."""
        copies = len(next(iter(self.sweep.values()))) if self.sweep else 1
        return sum(copies if s.swept else 1 for s in self.steps)

    def expanded(self) -> list[tuple[Step, dict[str, float | int], str]]:
        """Steps for a tool without sweeps: (step, param values, suffix); a swept step becomes
        one copy per value whose outputs get the suffix (``out/s9.txt`` → ``out/s9_a1.txt``)."""
        rows: list[tuple[Step, dict[str, float | int], str]] = []
        for step in self.steps:
            if step.swept:
                for value in self.sweep[SWEEP_PARAM]:
                    rows.append((step, {**self.params, SWEEP_PARAM: value}, f"_a{value}"))
            else:
                rows.append((step, self.params, ""))
        return rows


def suffixed(path: str, suffix: str) -> str:
    if not suffix:
        return path
    stem, dot, ext = path.rpartition(".")
    return f"{stem}{suffix}.{ext}" if dot else path + suffix


def _out(i: int) -> str:
    return f"out/s{i}.txt"


def generate(shape: str, n: int) -> Workload:
    """The workload of `n` steps (n >= 3) in the given shape."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
    if n < 3:
        raise ValueError("a workload needs at least 3 steps")
    mid = n // 2
    steps: list[Step] = []
    if shape == "chain":
        for i in range(n):
            inputs = [SEED if i == 0 else _out(i - 1)] + ([MID] if i == mid else [])
            steps.append(Step(f"s{i}", i, tuple(inputs), (_out(i),)))
        return Workload(shape, n, tuple(steps))
    if shape == "fan":
        steps.append(Step("source", 0, (SEED,), ("out/source.txt",)))
        for i in range(1, n - 1):
            inputs = ["out/source.txt"] + ([MID] if i == mid else [])
            steps.append(Step(f"w{i}", i, tuple(inputs), (_out(i),)))
        steps.append(Step("sink", n - 1, tuple(_out(i) for i in range(1, n - 1)), ("out/sink.txt",)))
        return Workload(shape, n, tuple(steps))
    if shape == "diamond":
        for i in range(n):
            layer, pos = divmod(i, WIDTH)
            if layer == 0:
                inputs = [SEED]
            else:
                prev = (layer - 1) * WIDTH
                inputs = sorted({_out(prev + pos), _out(prev + (pos + 1) % WIDTH)})
            if i == mid:
                inputs.append(MID)
            steps.append(Step(f"s{i}", i, tuple(inputs), (_out(i),)))
        return Workload(shape, n, tuple(steps))
    # mix: a chain with skip connections and the features a real project uses, then a swept tail
    swept = max(1, n // 100)
    body = n - swept
    mid = body // 2
    for i in range(body):
        inputs = [SEED] if i == 0 else [_out(i - 1)]
        if i >= 3 and i % 3 == 0:
            inputs.append(_out(i - 3))
        if i == mid:
            inputs.append(MID)
        extra: list[str] = []
        if i % 4 == 0:
            extra += ["resources: {cpu: 1, memory: 1Gi}", "retries: 1", "timeout: 30m"]
        if i % 13 == 0:
            extra.append(f"env: {{STAGE: s{i}}}")
        gated = i % 10 == 9
        steps.append(Step(
            f"s{i}", i, tuple(inputs), (_out(i),),
            params=("lr",) if i % 2 == 0 else ("depth",),
            metrics=f"metrics/s{i}.json" if gated else None,
            gate_min=0.5 if gated else None,
            needs=(f"s{i - 2}",) if i % 11 == 0 and i > 2 else (),
            extra=tuple(extra),
        ))
    for i in range(body, n):          # the sweep's leaves: each reads the last body step
        steps.append(Step(
            f"s{i}", i, (_out(body - 1),), (_out(i),), params=("lr", SWEEP_PARAM),
            metrics=f"metrics/s{i}.json", gate_min=0.5, swept=True,
        ))
    params = {**PARAMS, SWEEP_PARAM: SWEEP_VALUES[0]}
    return Workload(shape, n, tuple(steps), params=params, sweep={SWEEP_PARAM: SWEEP_VALUES})


# ---------------------------------------------------------------------------- mlprism


def _flow(items: Iterable[object]) -> str:
    return "[" + ", ".join(json.dumps(x) for x in items) + "]"


def mlprism_spec(w: Workload) -> str:
    """The workload as an mlprism spec (text built line by line: PyYAML is slow at 10,000 steps;
    every string is written as a JSON string, which is valid YAML)."""
    lines = ["apiVersion: mlprism/v1", f"name: {w.name}", "description: generated by benchmarks/specs.py"]
    if w.params:
        lines.append("params:")
        lines += [f"  {k}: {json.dumps(v)}" for k, v in w.params.items()]
    lines += ["data:", f"  seed: {{path: {SEED}}}", f"  mid: {{path: {MID}}}", "steps:"]
    for s in w.steps:
        lines += [f"  {s.name}:", f"    run: {json.dumps(s.command(lambda p: '${params.' + p + '}'))}"]
        lines.append(f"    inputs: {_flow(s.inputs)}")
        lines.append(f"    outputs: {_flow(s.outputs)}")
        if s.metrics:
            lines.append(f"    metrics: {s.metrics}")
        if s.gate_min is not None:
            lines.append(f"    gate: [{{metric: {GATE_METRIC}, min: {s.gate_min}}}]")
        if s.needs:
            lines.append(f"    needs: {_flow(s.needs)}")
        lines += [f"    {x}" for x in s.extra]
    if w.sweep:
        lines += ["sweep:", "  params:"]
        lines += [f"    {k}: {_flow(vs)}" for k, vs in w.sweep.items()]
        lines.append(f"  select: {{metric: {GATE_METRIC}, goal: max}}")
    return "\n".join(lines) + "\n"


def write_data(w: Workload, directory: Path) -> None:
    for rel, text in w.data_files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (directory / "out").mkdir(exist_ok=True)
    (directory / "metrics").mkdir(exist_ok=True)


def write_mlprism_project(w: Workload, directory: Path) -> Path:
    """A runnable mlprism project; returns the spec's path."""
    directory.mkdir(parents=True, exist_ok=True)
    write_data(w, directory)
    spec = directory / "pipeline.yaml"
    spec.write_text(mlprism_spec(w))
    return spec


def change_mid(directory: Path, k: int) -> None:
    """"Touch one input in the middle": new bytes in the file only the middle step reads."""
    (directory / MID).write_text(f"mid {k}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Print (or write) a generated benchmark workload as an mlprism spec.")
    ap.add_argument("shape", choices=SHAPES)
    ap.add_argument("n", type=int)
    ap.add_argument("--project", type=Path, help="write a runnable project (spec and data) into this directory")
    args = ap.parse_args(argv)
    w = generate(args.shape, args.n)
    if args.project:
        print(write_mlprism_project(w, args.project))
    else:
        sys.stdout.write(mlprism_spec(w))
    return 0


if __name__ == "__main__":
    sys.exit(main())
