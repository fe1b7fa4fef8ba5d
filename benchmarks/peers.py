"""The tools users would pick instead, each in its own virtualenv, fed the same workloads as mlprism.

    .venv/bin/python benchmarks/peers.py --install            # create build/bench-venvs/<peer>, pip install
    .venv/bin/python benchmarks/peers.py --write snakemake chain 10 DIR   # look at a generated project

Each peer renders a :class:`specs.Workload` as its own project:

  dvc        ``dvc.yaml`` (one stage per step: deps, outs, params, metrics) + ``params.yaml``,
             in a git repository with ``dvc init``; measured: ``dvc status``, ``dvc repro``
  snakemake  ``Snakefile`` (one rule per step, ``configfile``, a first ``all`` rule) ;
             measured: ``snakemake -n``, ``snakemake --cores 2``
  ploomber   ``pipeline.yaml`` + one shell script per task (``{{upstream['x']}}`` and
             ``{{product}}`` placeholders, data files as ``resources_``); measured:
             ``ploomber status``, ``ploomber build`` (its default serial executor)
  kfp        a Python file defining one container component and a pipeline of N
             container tasks with the same edges (``.after``), compiled with
             ``kfp.compiler.Compiler``; measured: the compile (kfp does not run locally
             without Docker; the issue asks for its compiler)

Commands are the same ``echo`` commands; params are written in each tool's own
syntax where it tracks them (dvc ``${lr}`` from params.yaml, snakemake
``{config[lr]}``, ploomber task params), and a swept step becomes one copy per
value (none of the peers has sweeps over a single DAG with a shared cache).
Peers have no gates: their steps write the same metrics files, unchecked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from specs import MID, SEED, Workload, generate, suffixed, write_data

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "build" / "bench-venvs"
QUIET_ENV = {"DVC_NO_ANALYTICS": "1", "PLOOMBER_STATS_ENABLED": "false", "PYTHONWARNINGS": "ignore",
             "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
             "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}

try:
    _Dumper: type = yaml.CSafeDumper
except AttributeError:          # pragma: no cover - PyYAML without libyaml
    _Dumper = yaml.SafeDumper


def _dump(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1 << 16)


def consumed(w: Workload) -> set[str]:
    return {p for s in w.steps for p in s.inputs}


class Tool:
    """A tool under test: how to write a project, reset it for a cold run, and what to time."""

    name = ""
    package = ""           # pip requirement
    dist = ""              # distribution whose version is reported
    state = ()             # paths (relative to the project) that hold the tool's state
    run_label = ""

    def __init__(self, venvs: Path = VENVS) -> None:
        self.venv = venvs / self.name

    # -- installation
    def bin(self, exe: str) -> str:
        return str(self.venv / "bin" / exe)

    def installed(self) -> bool:
        return (self.venv / "bin" / "python").exists() and self.version() is not None

    def install(self) -> None:
        if not (self.venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        subprocess.run([self.bin("python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        self.package], check=True)

    def version(self) -> str | None:
        py = self.venv / "bin" / "python"
        if not py.exists():
            return None
        proc = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version({self.dist!r}))"],
                              capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def env(self) -> dict[str, str]:
        return {**os.environ, **QUIET_ENV, "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    # -- projects
    def write(self, w: Workload, directory: Path) -> None:
        raise NotImplementedError

    def setup(self, directory: Path) -> None:
        """Untimed one-off initialisation after `write` (git init, …)."""

    def reset(self, directory: Path, w: Workload) -> None:
        """Back to a never-run project: outputs and the tool's state removed."""
        for rel in ("out", "metrics", *self.state):
            path = directory / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        (directory / "out").mkdir()
        (directory / "metrics").mkdir()

    def dag_commands(self, w: Workload) -> list[tuple[str, list[str]]]:
        """(label, argv) of the commands that build the DAG without running it."""
        raise NotImplementedError

    def run_command(self, jobs: int) -> list[str] | None:
        return None


def _command(step, values: dict, suffix: str, param: Callable[[str], str] | None = None) -> str:  # type: ignore[no-untyped-def]
    render = param or (lambda p: str(values[p]))
    return step.command(render, lambda path: suffixed(path, suffix))


class Dvc(Tool):
    name = package = dist = "dvc"
    state = ("dvc.lock", ".dvc/cache", ".dvc/tmp")
    run_label = "dvc repro"

    def write(self, w: Workload, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_data(w, directory)
        stages: dict[str, dict] = {}
        for step, values, suffix in w.expanded():
            templated = {p for p in step.params if p in w.params and not (suffix and p in w.sweep)}
            cmd = _command(step, values, suffix, lambda p, t=templated, v=values: f"${{{p}}}" if p in t else str(v[p]))
            stage: dict[str, object] = {"cmd": cmd, "deps": list(step.inputs)}
            if templated:
                stage["params"] = sorted(templated)
            stage["outs"] = [suffixed(o, suffix) for o in step.outputs]
            if step.metrics:
                stage["metrics"] = [{suffixed(step.metrics, suffix): {"cache": False}}]
            stages[step.name + suffix] = stage
        (directory / "dvc.yaml").write_text(_dump({"stages": stages}))
        (directory / "params.yaml").write_text(_dump({k: v for k, v in w.params.items()}) if w.params else "{}\n")

    def setup(self, directory: Path) -> None:
        env = self.env()
        for argv in (["git", "init", "-q"], [self.bin("dvc"), "init", "-q"],
                     [self.bin("dvc"), "config", "core.analytics", "false"]):
            subprocess.run(argv, cwd=directory, env=env, check=True, stdout=subprocess.DEVNULL)

    def reset(self, directory: Path, w: Workload) -> None:
        super().reset(directory, w)
        for gi in (directory / "out" / ".gitignore", directory / "metrics" / ".gitignore"):
            gi.unlink(missing_ok=True)

    def dag_commands(self, w: Workload) -> list[tuple[str, list[str]]]:
        return [("dvc status", [self.bin("dvc"), "status"])]

    def run_command(self, jobs: int) -> list[str]:
        return [self.bin("dvc"), "repro"]


class Snakemake(Tool):
    name = package = dist = "snakemake"
    state = (".snakemake",)
    run_label = "snakemake --cores 2"

    def write(self, w: Workload, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_data(w, directory)
        used = consumed(w)
        targets: list[str] = []
        rules: list[str] = []
        for step, values, suffix in w.expanded():
            outs = [suffixed(p, suffix) for p in step.products]
            targets += [p for p in outs if p not in used]
            fixed = {p for p in step.params if suffix and p in w.sweep}

            def param(p: str, fixed: set[str] = fixed, values: dict = values) -> str:
                return str(values[p]) if p in fixed else f"\0{p}\1"      # \0 \1: {config[ ]} after escaping

            cmd = _command(step, values, suffix, param).replace("{", "{{").replace("}", "}}")
            cmd = cmd.replace("\0", "{config[").replace("\1", "]}")
            rules.append(f"rule {step.name}{suffix}:\n    input: {json.dumps(list(step.inputs))}\n"
                         f"    output: {json.dumps(outs)}\n    shell: {json.dumps(cmd)}\n")
        head = ['configfile: "config.yaml"\n', f"rule all:\n    input: {json.dumps(targets)}\n"]
        (directory / "Snakefile").write_text("\n".join(head + rules))
        (directory / "config.yaml").write_text(_dump(dict(w.params)) if w.params else "{}\n")

    def dag_commands(self, w: Workload) -> list[tuple[str, list[str]]]:
        return [("snakemake -n", [self.bin("snakemake"), "-n", "--cores", "2", "--quiet"])]

    def run_command(self, jobs: int) -> list[str]:
        return [self.bin("snakemake"), "--cores", str(jobs), "--quiet"]


class Ploomber(Tool):
    name = package = dist = "ploomber"
    state = ()     # metadata lives beside the products (out/.s0.txt.metadata): removed with out/
    run_label = "ploomber build"

    def write(self, w: Workload, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_data(w, directory)
        scripts = directory / "scripts"
        shutil.rmtree(scripts, ignore_errors=True)
        scripts.mkdir()
        producer = {p: s.name for s in w.steps for p in s.products}
        tasks: list[dict[str, object]] = []
        for step, values, suffix in w.expanded():
            name = step.name + suffix
            keys = {o: f"o{k}" for k, o in enumerate(step.products)}
            lines = ["# generated by benchmarks/peers.py"]
            ups = [producer[p] for p in step.inputs if p in producer]
            if ups:   # ploomber reads dependencies from the placeholders in the source
                lines.append("# reads: " + " ".join(f"{{{{upstream['{u}']}}}}" for u in dict.fromkeys(ups)))

            def out(path: str, keys: dict[str, str] = keys) -> str:
                return f"{{{{product['{keys[path]}']}}}}"

            params: dict[str, object] = {p: values[p] for p in step.params}
            data = [p for p in step.inputs if p in (SEED, MID)]
            if data:      # data files: hashed by ploomber as resources_ (each must appear in the source)
                params["resources_"] = {Path(p).stem: p for p in data}
                lines.append("# data: " + " ".join(f"{{{{resources_['{Path(p).stem}']}}}}" for p in data))
            lines.append(step.command(lambda p: f"{{{{{p}}}}}", out))
            (scripts / f"{name}.sh").write_text("\n".join(lines) + "\n")
            task: dict[str, object] = {"source": f"scripts/{name}.sh", "name": name,
                                       "product": {keys[o]: suffixed(o, suffix) for o in step.products}}
            if params:
                task["params"] = params
            tasks.append(task)
        (directory / "pipeline.yaml").write_text(_dump({"tasks": tasks}))

    def dag_commands(self, w: Workload) -> list[tuple[str, list[str]]]:
        return [("ploomber status", [self.bin("ploomber"), "status"])]

    def run_command(self, jobs: int) -> list[str]:
        return [self.bin("ploomber"), "build"]


KFP_TEMPLATE = '''"""Generated by benchmarks/peers.py: {name}, {count} container tasks."""
import json
import sys

from kfp import compiler, dsl

STEPS = json.loads({steps!r})


@dsl.container_component
def step(words: str, out: str):
    return dsl.ContainerSpec(image="alpine:3.20", command=["sh", "-c", 'echo "$0" > "$1"'], args=[words, out])


@dsl.pipeline(name={name!r})
def pipeline():
    tasks = {{}}
    for name, words, out, after in STEPS:
        task = step(words=words, out=out).set_display_name(name)
        for upstream in after:
            task.after(tasks[upstream])
        tasks[name] = task


if __name__ == "__main__":
    compiler.Compiler().compile(pipeline, sys.argv[1] if len(sys.argv) > 1 else "pipeline.yaml")
'''


class Kfp(Tool):
    name = package = dist = "kfp"
    state = ("pipeline.yaml",)

    def write(self, w: Workload, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        producer = {p: s.name for s in w.steps for p in s.products}
        rows = []
        for step, values, suffix in w.expanded():
            ups = list(dict.fromkeys(producer[p] for p in step.inputs if p in producer))
            ups += [n for n in step.needs if n not in ups]
            words = " ".join([str(step.index), *(str(values[p]) for p in step.params)])
            rows.append([step.name + suffix, words, suffixed(step.outputs[0], suffix), ups])
        (directory / "pipeline_kfp.py").write_text(
            KFP_TEMPLATE.format(name=w.name, count=len(rows), steps=json.dumps(rows, separators=(",", ":"))))

    def dag_commands(self, w: Workload) -> list[tuple[str, list[str]]]:
        return [("kfp compile", [self.bin("python"), "pipeline_kfp.py", "pipeline.yaml"])]


PEERS: dict[str, type[Tool]] = {"dvc": Dvc, "snakemake": Snakemake, "ploomber": Ploomber, "kfp": Kfp}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Install the peers, or write one peer's project for a workload.")
    ap.add_argument("--install", action="store_true", help="create the virtualenvs that are missing")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--write", nargs=4, metavar=("PEER", "SHAPE", "N", "DIR"))
    args = ap.parse_args(argv)
    if args.write:
        peer, shape, n, directory = args.write
        tool = PEERS[peer]()
        tool.write(generate(shape, int(n)), Path(directory))
        tool.setup(Path(directory))
        print(directory)
        return 0
    for name in [p for p in args.peers.split(",") if p]:
        tool = PEERS[name]()
        if args.install and not tool.installed():
            print(f"installing {name} into {tool.venv} …", flush=True)
            tool.install()
        print(f"{name}: {tool.version() or 'not installed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
