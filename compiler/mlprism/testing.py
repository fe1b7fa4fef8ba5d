"""What plugin authors test with: golden files and the target conformance suite.

Golden files
------------
Compile a spec, compare every emitted file with the files kept under
``expected/``; run pytest with ``--update-goldens`` to rewrite them::

    from mlprism.testing import assert_golden
    assert_golden(mlprism.compile_spec("pipeline.yaml", "make"), Path("expected/make"))

A plugin's own ``tests/conftest.py`` gets the ``--update-goldens`` switch with::

    from mlprism.testing import pytest_addoption, pytest_configure  # noqa: F401

Conformance
-----------
A spec means the same on every target. A target proves it by subclassing
:class:`TargetConformance` in one line and providing a *decompiler*: a function
that reads the generated files back into a :class:`CanonicalPipeline`. The
suite compiles a corpus of specs (``tests/golden/*`` and ``examples/*`` of the
repository the tests run in, the subclass's own ``specs``, and generated ones)
and checks, for every feature the target declares in ``capabilities``, that
the decompiled form equals :func:`canonical` of the IR::

    from mlprism.testing import TargetConformance, step_from_invocation

    class TestMakeConformance(TargetConformance):
        target_name = "make"

        def decompile(self, files):
            ...  # parse files["Makefile"]; one CanonicalStep per make target

It also checks that compiling twice gives identical bytes (in this process and
in another one with a different hash seed), that no secret's value reaches the
output, that every emitted path is relative, and that each feature the target
does not declare is refused with ``MLP302`` at the spec line that uses it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import posixpath
import random
import secrets as _secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import mlprism
from mlprism.diagnostics import Diagnostic, DiagnosticError
from mlprism.ir import Pipeline

__all__ = [
    "UPDATE_ENV",
    "CanonicalPipeline",
    "CanonicalStep",
    "Invocation",
    "TargetConformance",
    "assert_golden",
    "canonical",
    "compare",
    "cpu_millicores",
    "generate_spec",
    "memory_bytes",
    "param_text",
    "parse_invocation",
    "pytest_addoption",
    "pytest_configure",
    "step_from_invocation",
]

#: Set to 1 (pytest's --update-goldens does) to rewrite expected files instead of comparing.
UPDATE_ENV = "MLPRISM_UPDATE_GOLDENS"


# -- golden files ---------------------------------------------------------------------


def assert_golden(files: Mapping[str, bytes | str], expected_dir: Path, update: bool | None = None) -> None:
    """Assert that `files` equal the tree under `expected_dir` exactly (no file more, none less)."""
    update = os.environ.get(UPDATE_ENV) == "1" if update is None else update
    data = {k: (v.encode() if isinstance(v, str) else v) for k, v in files.items()}
    if update:
        if expected_dir.exists():
            shutil.rmtree(expected_dir)
        for rel, content in sorted(data.items()):
            dest = expected_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
        return
    if not expected_dir.is_dir():
        raise AssertionError(f"no golden files at {expected_dir}; run pytest with --update-goldens")
    existing = {p.relative_to(expected_dir).as_posix() for p in expected_dir.rglob("*") if p.is_file()}
    problems = []
    for rel in sorted(existing - data.keys()):
        problems.append(f"missing from output: {rel}")
    for rel in sorted(data.keys() - existing):
        problems.append(f"new file not in goldens: {rel}")
    for rel in sorted(data.keys() & existing):
        want = (expected_dir / rel).read_bytes()
        if want != data[rel]:
            diff = difflib.unified_diff(want.decode(errors="replace").splitlines(),
                                        data[rel].decode(errors="replace").splitlines(),
                                        f"expected/{rel}", f"emitted/{rel}", lineterm="", n=2)
            problems.append("\n".join(list(diff)[:60]))
    if problems:
        raise AssertionError("golden files differ (rerun with --update-goldens if intended):\n" + "\n".join(problems))


def pytest_addoption(parser: Any) -> None:
    """Add ``--update-goldens`` (re-export this hook from your conftest.py)."""
    try:
        parser.addoption("--update-goldens", action="store_true",
                         help="rewrite golden files instead of comparing")
    except ValueError:      # another conftest in the same run already added it
        pass


def pytest_configure(config: Any) -> None:
    """Make ``--update-goldens`` reach :func:`assert_golden` (re-export from your conftest.py)."""
    try:
        update = config.getoption("--update-goldens")
    except ValueError:
        return
    if update:
        os.environ[UPDATE_ENV] = "1"


# -- the canonical form -----------------------------------------------------------------


@dataclass(frozen=True)
class CanonicalStep:
    """What one step means, independent of how a target writes it down."""

    name: str
    #: the shell command the step runs, every interpolation resolved
    run: str
    #: the params the step's command uses: dotted name -> value as text (see :func:`param_text`)
    params: Mapping[str, str] = field(default_factory=dict)
    #: names of the non-secret environment variables the step gets (spec-wide and the step's own)
    env: tuple[str, ...] = ()
    #: names of the secrets the step gets
    secrets: tuple[str, ...] = ()
    #: CPU request in millicores (``"500m"`` and ``0.5`` are both 500; see :func:`cpu_millicores`)
    cpu: int | None = None
    #: memory request in bytes (``"4Gi"``; see :func:`memory_bytes`)
    memory: int | None = None
    gpu: int = 0
    retries: int = 0
    #: seconds
    timeout: int | None = None
    #: the paths whose content keys the step's cache (its inputs), or None when it is never cached
    cache_inputs: tuple[str, ...] | None = ()


@dataclass(frozen=True)
class CanonicalPipeline:
    """What a whole pipeline means: its steps, the order between them, its schedules."""

    steps: Mapping[str, CanonicalStep]
    #: direct dependencies (upstream, downstream); compared through their transitive closure
    edges: frozenset[tuple[str, str]] = frozenset()
    #: (what, cron) pairs: ("pipeline", ...) from triggers.schedule, ("monitor", ...) from monitor.schedule
    schedules: tuple[tuple[str, str], ...] = ()


def param_text(value: Any) -> str:
    """A param value as text, the same however it was written down (``200``, ``"200"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def cpu_millicores(value: str | float | None) -> int | None:
    """A CPU quantity in millicores: ``"500m"`` -> 500, ``"2"`` -> 2000, ``1.5`` -> 1500."""
    if value is None:
        return None
    text = str(value).strip()
    if text.endswith("m"):
        return int(text[:-1])
    return round(float(text) * 1000)


def memory_bytes(value: str | int | None) -> int | None:
    """A Kubernetes memory quantity in bytes: ``"4Gi"`` -> 4294967296, ``"512M"`` -> 512000000."""
    if value is None:
        return None
    text = str(value).strip()
    number = text.rstrip("kMGTPEi")
    unit = text[len(number):]
    if unit not in _MEMORY_UNITS:
        raise ValueError(f"not a Kubernetes memory quantity: {value!r}")
    return round(float(number) * _MEMORY_UNITS[unit])


def _param_value(params: Mapping[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _norm(path: str) -> str:
    return posixpath.normpath(path)


def canonical(pipeline: Pipeline) -> CanonicalPipeline:
    """The canonical form of a compiled pipeline: what every target must reproduce."""
    steps = {}
    for s in pipeline.steps:
        steps[s.name] = CanonicalStep(
            name=s.name,
            run=s.run,
            params={name: param_text(_param_value(pipeline.params, name)) for name in sorted(s.params)},
            env=tuple(sorted(set(pipeline.environment.variables) | set(s.env))),
            secrets=tuple(sorted(pipeline.environment.secrets)),
            cpu=cpu_millicores(s.resources.cpu),
            memory=memory_bytes(s.resources.memory),
            gpu=s.resources.gpu,
            retries=s.retries,
            timeout=s.timeout,
            cache_inputs=tuple(sorted({_norm(i) for i in s.inputs})) if s.cache else None,
        )
    schedules = []
    if pipeline.triggers.schedule:
        schedules.append(("pipeline", pipeline.triggers.schedule))
    if pipeline.monitor and pipeline.monitor.schedule:
        schedules.append(("monitor", pipeline.monitor.schedule))
    return CanonicalPipeline(steps=steps, edges=frozenset((e.source, e.target) for e in pipeline.edges),
                             schedules=tuple(sorted(schedules)))


#: CanonicalStep field -> the feature that must be declared for it to be compared.
FIELD_FEATURES: dict[str, str] = {
    "run": "steps", "params": "params", "env": "env", "secrets": "secrets", "cpu": "resources",
    "memory": "resources", "gpu": "gpu", "retries": "retries", "timeout": "timeouts",
    "cache_inputs": "caching",
}


def _closure(edges: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    succ: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    out: set[tuple[str, str]] = set()
    for start in list(succ):
        stack, seen = list(succ[start]), set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            out.add((start, node))
            stack.extend(succ.get(node, ()))
    return out


def compare(expected: CanonicalPipeline, actual: CanonicalPipeline, features: Iterable[str]) -> list[str]:
    """Differences between two canonical forms, for the features given (empty when equal).

    Steps are always compared by name. Ordering is compared through the
    transitive closure of the edges: a target must keep every ordering of the
    IR; with ``parallelism`` it must also add none (or independent steps would
    not run at the same time).
    """
    feats = set(features)
    problems: list[str] = []
    want, got = set(expected.steps), set(actual.steps)
    for name in sorted(want - got):
        problems.append(f"step `{name}` is missing from the target's output")
    for name in sorted(got - want):
        problems.append(f"the target's output has a step `{name}` the spec does not")
    want_order, got_order = _closure(expected.edges), _closure(actual.edges)
    for a, b in sorted(want_order - got_order):
        problems.append(f"ordering lost: `{b}` may start before `{a}` has finished")
    if "parallelism" in feats:
        for a, b in sorted(got_order - want_order):
            problems.append(f"extra ordering: `{b}` waits for `{a}`, which the spec does not ask for")
    for name in sorted(want & got):
        e, a = expected.steps[name], actual.steps[name]
        for fname, feature in FIELD_FEATURES.items():
            if feature not in feats:
                continue
            ev, av = getattr(e, fname), getattr(a, fname)
            if fname == "params":
                ev, av = dict(ev), dict(av)
            if ev != av:
                problems.append(f"step `{name}`: {fname} is {av!r} on the target, {ev!r} in the spec")
    kinds = {"pipeline": "schedule", "monitor": "monitor"}
    for kind, feature in kinds.items():
        if feature in feats:
            ev = sorted(c for k, c in expected.schedules if k == kind)
            av = sorted(c for k, c in actual.schedules if k == kind)
            if ev != av:
                problems.append(f"{kind} schedule is {av!r} on the target, {ev!r} in the spec")
    return problems


# -- what the runtime makes of an invocation -----------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """``mlprism run SPEC --only STEP [FLAGS] [OVERRIDES]`` taken apart."""

    spec: str
    step: str
    overrides: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


def parse_invocation(argv: Sequence[str]) -> Invocation:
    """Take apart a step command as built by :func:`mlprism.step_command`.

    Anything before ``run`` (``mlprism``, ``python -m mlprism``, a path) is
    ignored; options starting with ``-`` other than ``--only`` are flags.
    """
    args = list(argv)
    if "run" not in args:
        raise ValueError(f"not an `mlprism run` command: {shlex.join(args)}")
    rest = args[args.index("run") + 1:]
    valued = _valued_run_flags()
    spec: str | None = None
    step: str | None = None
    overrides: list[str] = []
    flags: list[str] = []
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok == "--only" and i + 1 < len(rest):
            step = rest[i + 1]
            i += 2
            continue
        if tok.startswith("--only="):
            step = tok.split("=", 1)[1]
        elif tok.startswith("-"):
            flags.append(tok)
            if tok in valued and "=" not in tok and i + 1 < len(rest):
                flags.append(rest[i + 1])
                i += 1
        elif spec is None:
            spec = tok
        else:
            overrides.append(tok)
        i += 1
    if spec is None or step is None:
        raise ValueError(f"`mlprism run` without a spec or `--only STEP`: {shlex.join(args)}")
    return Invocation(spec, step, tuple(overrides), tuple(flags))


@functools.cache
def _valued_run_flags() -> frozenset[str]:
    """Options of `mlprism run` that take a value (`--lock-timeout S`), from its parser."""
    import argparse

    from mlprism._internal.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices.get("run")
    if run is None:
        return frozenset()
    return frozenset(o for a in run._actions if a.option_strings and a.nargs != 0 for o in a.option_strings)


@functools.lru_cache(maxsize=64)
def _load(spec: str, overrides: tuple[str, ...]) -> CanonicalPipeline:
    return canonical(mlprism.load_pipeline(spec, overrides, check_inputs=False))


def step_from_invocation(argv: Sequence[str], cwd: Path | str) -> CanonicalStep:
    """What the mlprism runtime runs for a step command started in ``cwd``.

    For the parts a target leaves to the runtime (every target runs steps with
    ``mlprism run SPEC --only STEP OVERRIDES``), a decompiler asks the runtime's
    view: the spec is loaded from ``cwd`` with the command's overrides, exactly
    as ``mlprism run`` would. The decompiler then replaces the fields the target
    expresses itself (``dataclasses.replace(step, retries=...)``).
    """
    inv = parse_invocation(argv)
    spec = (Path(cwd) / inv.spec).resolve()
    pipeline = _load(str(spec), inv.overrides)
    try:
        return pipeline.steps[inv.step]
    except KeyError:
        raise AssertionError(f"`{shlex.join(argv)}` runs step `{inv.step}`, which {spec.name} does not have")


# -- generated specs -------------------------------------------------------------------------

_WORDS = ("load", "clean", "split", "encode", "fit", "score", "merge", "sample", "tune", "check",
          "export", "report")

#: features a generated spec needs besides the one it shows (a gate needs a metric …).
_REQUIRES: dict[str, tuple[str, ...]] = {
    "gates": ("metrics",), "sweeps": ("metrics", "params"), "serve": ("registry",),
    "autoscale": ("serve", "registry"), "canary": ("serve", "registry"),
}


def generate_spec(seed: int, features: Iterable[str], *, everything: bool = False) -> dict[str, str]:
    """A random valid project using only `features`: {relative path: text}, spec at ``pipeline.yaml``.

    Each optional feature is used with probability 0.6 (or always with
    ``everything``). Steps run real POSIX shell commands on small text files.
    Without ``parallelism`` the steps form a chain; without ``caching`` every
    step sets ``cache: false``.
    """
    rng = random.Random(seed)
    allowed = set(features)

    def use(feature: str) -> bool:
        ok = feature in allowed and all(r in allowed for r in _REQUIRES.get(feature, ()))
        return ok and (everything or rng.random() < 0.6)

    n = rng.randint(3, 6)
    names = rng.sample(_WORDS, n)
    spec: dict[str, Any] = {"apiVersion": "mlprism/v1", "name": f"gen-{seed}",
                            "description": f"Generated conformance spec (seed {seed})."}
    params: dict[str, Any] = {}
    if "params" in allowed:
        params = {"alpha": rng.choice([0.1, 0.5, 2]), "label": rng.choice(["x y", "it's 5%", "a#b"]),
                  "model": {"depth": rng.randint(1, 9)}}
        spec["params"] = params
    env_vars = use("env")
    if env_vars:
        spec["environment"] = {"variables": {"PYTHONHASHSEED": "0", "MODE": rng.choice(["fast", "full"])}}
    if use("secrets"):
        spec.setdefault("environment", {})["secrets"] = sorted(rng.sample(["API_TOKEN", "DB_PASSWORD", "HF_TOKEN"], 2))
    use_data = use("data")
    if use_data:
        spec["data"] = {"seed": {"path": "data/seed.txt"}}
    parallel = "parallelism" in allowed
    cached = "caching" in allowed
    do_sweep = bool(params) and use("sweeps")
    want_metrics = use("metrics") or use("gates") or do_sweep or use("registry")
    steps: dict[str, dict[str, Any]] = {}
    outputs: list[str] = []
    metric_step: str | None = None
    for i, name in enumerate(names):
        out = f"out/{name}.txt"
        if i == 0:
            inputs = ["data/seed.txt"]
        elif parallel and i == 2:
            inputs = [outputs[0]]           # independent of step 1: parallelism is really used
        elif parallel:
            inputs = sorted(rng.sample(outputs, rng.randint(1, min(2, len(outputs)))))
        else:
            inputs = [outputs[-1]]
        src = "${data.seed.path}" if use_data and i == 0 else " ".join(inputs)
        cmd = f"mkdir -p out && cat {src} > {out}"
        if params and (rng.random() < 0.7 or (do_sweep and i == 0)):
            ref = "${params.alpha}" if do_sweep and i == 0 else \
                rng.choice(["${params.alpha}", "${params.model.depth}", "${params.label}"])
            cmd += f' && echo "{ref}" >> {out}'
        step: dict[str, Any] = {"run": cmd, "inputs": inputs, "outputs": [out]}
        if want_metrics and (i == n - 1 or (metric_step is None and rng.random() < 0.4)):
            metric_step = metric_step or name
            if metric_step == name:
                step["run"] += f" && mkdir -p metrics && echo '{{\"score\": 0.9{i}}}' > metrics/{name}.json"
                step["metrics"] = f"metrics/{name}.json"
                if "gates" in allowed and use("gates"):
                    step["gate"] = [{"metric": "score", "min": 0.5}]
        if parallel and i >= 2 and rng.random() < 0.3:
            step["needs"] = [names[rng.randrange(i - 1)]]
        if use("retries"):
            step["retries"] = rng.randint(1, 3)
        if use("timeouts"):
            step["timeout"] = rng.choice(["90s", "30m", "1h30m", 600])
        res: dict[str, Any] = {}
        if use("resources"):
            res.update({"cpu": rng.choice(["500m", 2, "1.5"]), "memory": rng.choice(["512Mi", "4Gi"])})
        if use("gpu"):
            res["gpu"] = 1
        if res:
            step["resources"] = res
        if env_vars and rng.random() < 0.5:
            step["env"] = {"STEP_NAME": name}
        if not cached:
            step["cache"] = False
        steps[name] = step
        outputs.append(out)
    spec["steps"] = steps
    if do_sweep and metric_step:
        spec["sweep"] = {"params": {"alpha": [0.1, 0.5]}, "select": {"metric": "score", "goal": "max"}}
    if use("registry"):
        spec["registry"] = {"name": f"gen-{seed}", "artifact": outputs[-1], "register_after": names[-1],
                            "flavor": "file"}
        if use("serve"):
            serve: dict[str, Any] = {"model": f"gen-{seed}@production", "port": 8080, "replicas": 2}
            if use("autoscale"):
                serve["autoscale"] = {"min": 2, "max": 5, "cpu": 70}
            spec["deploy"] = {"serve": serve}
            if use("canary"):
                spec["deploy"]["rollout"] = {"strategy": "canary", "steps": [25, 100]}
    if use("monitor"):
        spec["monitor"] = {"schedule": "0 * * * *", "on_drift": "alert",
                           "drift": {"reference": "data/seed.txt", "current": "data/seed.txt"}}
    triggers: dict[str, Any] = {}
    if use("schedule"):
        triggers["schedule"] = rng.choice(["0 3 * * 1", "*/15 * * * *"])
    if use("push"):
        triggers["push"] = {"branches": ["main"], "paths": ["data/**"]}
    if use("manual"):
        triggers["manual"] = True
    if triggers:
        spec["triggers"] = triggers
    if use("mlflow"):
        spec["tracking"] = {"backend": "mlflow", "uri": "file:mlruns"}
    text = mlprism.dump_yaml(spec, header=f"Generated by mlprism.testing.generate_spec(seed={seed}).")
    return {"pipeline.yaml": text, "data/seed.txt": f"seed {seed}\n"}


# -- the suite --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    id: str
    spec: Path | None = None              # a spec on disk …
    seed: int | None = None               # … or a generated one
    overrides: tuple[str, ...] = ()


def _repo_root(start: Path) -> Path | None:
    for parent in [start, *start.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def _corpus_root() -> Path | None:
    """The nearest directory above the working directory with tests/golden/*/pipeline.yaml."""
    here = Path.cwd().resolve()
    for parent in [here, *here.parents]:
        if any((parent / "tests" / "golden").glob("*/pipeline.yaml")):
            return parent
    return None


class TargetConformance:
    """Subclass in a test module, set ``target_name``, implement :meth:`decompile`.

    While :meth:`decompile` runs, ``self.spec_dir`` is the spec's directory
    (the generated files are treated as written there, like ``--out .``),
    ``self.project_path`` the spec's directory relative to the repository root
    (what :class:`mlprism.EmitContext` got) and ``self.repo_root`` that root.

    Class attributes a subclass may set:

    - ``specs``: more spec files for the corpus (paths, or ``(path, overrides)``);
    - ``generated``: how many generated specs to add (default 6);
    - ``use_repository_corpus``: add ``tests/golden/*`` and ``examples/*`` of the
      repository the tests run in (default True).
    """

    target_name: ClassVar[str] = ""
    specs: ClassVar[Sequence[str | Path | tuple[str | Path, Sequence[str]]]] = ()
    generated: ClassVar[int] = 6
    use_repository_corpus: ClassVar[bool] = True

    spec_dir: Path
    project_path: str
    repo_root: Path

    # -- the part a plugin provides --------------------------------------------------------
    def decompile(self, files: Mapping[str, bytes]) -> CanonicalPipeline:
        """Read the target's generated files back into the canonical form."""
        raise NotImplementedError(f"{type(self).__name__} must implement decompile(files)")

    # -- corpus ---------------------------------------------------------------------------------
    @classmethod
    def corpus(cls) -> list[_Case]:
        cases: list[_Case] = []
        root = _corpus_root() if cls.use_repository_corpus else None
        if root is not None:
            for spec in sorted(root.glob("tests/golden/*/pipeline.yaml")):
                cases.append(_Case(f"golden/{spec.parent.name}", spec))
            for spec in sorted(root.glob("examples/*/pipeline.yaml")):
                cases.append(_Case(f"example/{spec.parent.name}", spec))
        for entry in cls.specs:
            path, ovs = (entry if isinstance(entry, tuple) else (entry, ()))
            path = Path(path).resolve()
            cases.append(_Case(f"spec/{path.parent.name}/{path.name}" + (f"[{' '.join(ovs)}]" if ovs else ""),
                               path, overrides=tuple(ovs)))
        target = _installed_target(cls.target_name)
        caps = target.capabilities if target else {}
        for seed in range(cls.generated):
            ovs: tuple[str, ...] = ()
            if seed % 3 == 2 and "params" in caps:   # some generated cases carry command-line overrides with odd characters
                ovs = ("params.label='a b$c #d'",)
            cases.append(_Case(f"generated-{seed}", seed=seed, overrides=ovs))
        return cases

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "conformance_case" in metafunc.fixturenames:
            cases = self.corpus()
            metafunc.parametrize("conformance_case", cases, ids=[c.id for c in cases])
        if "undeclared_feature" in metafunc.fixturenames:
            target = _installed_target(self.target_name)
            missing = [f for f in mlprism.FEATURES if f not in (target.capabilities if target else {})
                       and f != "steps"]
            metafunc.parametrize("undeclared_feature", missing or [None], ids=missing or ["none"])

    # -- helpers ---------------------------------------------------------------------------------
    def _target(self) -> mlprism.Target:
        target = _installed_target(self.target_name)
        if target is None:
            raise AssertionError(f"target `{self.target_name}` is not installed (`mlprism plugins` lists targets)")
        return target

    def _materialize(self, case: _Case, tmp: Path) -> Path:
        if case.spec is not None:
            return case.spec
        target = self._target()
        project = tmp / f"gen-{case.seed}"
        for rel, text in generate_spec(case.seed or 0, target.capabilities, everything=case.seed == 0).items():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text(text)
        return project / "pipeline.yaml"

    def _set_context(self, spec: Path) -> str:
        self.spec_dir = spec.parent.resolve()
        root = _repo_root(self.spec_dir)
        self.repo_root = root or self.spec_dir
        self.project_path = (self.spec_dir.relative_to(root).as_posix() or ".") if root else "."
        return self.project_path

    def _compile(self, spec: Path, overrides: Sequence[str]) -> dict[str, bytes]:
        project_path = self._set_context(spec)
        return mlprism.compile_spec(str(spec), self.target_name, list(overrides), project_path)

    def _reduction(self, pipeline: Pipeline) -> tuple[list[str], list[str]]:
        """Overrides removing what the target cannot express, and the features that cannot be removed."""
        from mlprism._internal.features import feature_uses

        caps = self._target().capabilities
        keys: list[str] = []
        stuck: list[str] = []
        for feature, used in feature_uses(pipeline).items():
            if feature in caps:
                continue
            if feature == "caching":
                keys += [f"+{k}.cache=false" for k in used]
            elif feature in ("steps", "parallelism", "params"):
                stuck.append(feature)
            else:
                keys += [f"~{k}" for k in used]
        removed = [k[1:] for k in keys if k.startswith("~")]
        keys = [k for k in keys if not (k.startswith("~") and any(k[1:].startswith(r + ".") for r in removed))]
        return keys, stuck

    # -- the tests -------------------------------------------------------------------------------
    def test_target_is_installed(self) -> None:
        assert self.target_name, f"{type(self).__name__} must set target_name"
        self._target()

    def test_capabilities_are_known_features(self) -> None:
        caps = self._target().capabilities
        unknown = sorted(set(caps) - set(mlprism.FEATURES))
        assert not unknown, f"unknown features in capabilities: {unknown}; known: {sorted(mlprism.FEATURES)}"
        empty = sorted(f for f, how in caps.items() if not str(how).strip())
        assert not empty, f"capabilities must say how each feature is expressed: {empty}"
        assert "steps" in caps, "a target must at least run steps"

    def test_conforms(self, conformance_case: _Case, tmp_path: Path, monkeypatch: Any) -> None:
        """The decompiled output equals the IR's canonical form for every declared feature."""
        spec = self._materialize(conformance_case, tmp_path)
        overrides = list(conformance_case.overrides)
        pipeline = mlprism.load_pipeline(str(spec), overrides)
        target = self._target()
        values = {name: "s3cr3t-" + _secrets.token_hex(12) for name in pipeline.environment.secrets}
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        missing = [f for f in mlprism.features_used(pipeline) if f not in target.capabilities]
        if missing:
            # never a silent drop: every undeclared feature is refused …
            with _raises_diagnostics() as caught:
                self._compile(spec, overrides)
            for feature in missing:
                assert any(d.code == "MLP302" and f"`{feature}`" in d.message for d in caught), \
                    f"expected MLP302 for `{feature}`; got {[d.render() for d in caught]}"
            # … and the rest of the spec conforms once those parts are removed
            extra, stuck = self._reduction(pipeline)
            if stuck:
                return
            overrides = overrides + extra
            pipeline = mlprism.load_pipeline(str(spec), overrides)
        files = self._compile(spec, overrides)
        _check_output(files, values, spec)
        self._set_context(spec)
        actual = self.decompile(files)
        assert isinstance(actual, CanonicalPipeline), "decompile() must return a CanonicalPipeline"
        problems = compare(canonical(pipeline), actual, target.capabilities)
        assert not problems, f"{self.target_name} differs from the spec {spec}:\n  " + "\n  ".join(problems)

    def test_deterministic(self, conformance_case: _Case, tmp_path: Path) -> None:
        """Compiling twice gives the same bytes (specs using undeclared features: once those are removed)."""
        spec = self._materialize(conformance_case, tmp_path)
        overrides = list(conformance_case.overrides)
        pipeline = mlprism.load_pipeline(str(spec), overrides)
        caps = self._target().capabilities
        if any(f not in caps for f in mlprism.features_used(pipeline)):
            extra, stuck = self._reduction(pipeline)
            if stuck:
                return      # nothing this target can compile; test_conforms checks the MLP302s
            overrides += extra
        first = self._compile(spec, overrides)
        assert self._compile(spec, overrides) == first, "two compiles of the same spec differ"

    def test_deterministic_across_processes(self, tmp_path: Path) -> None:
        """Another process with another hash seed compiles the same bytes."""
        target = self._target()
        project = tmp_path / "gen"
        for rel, text in generate_spec(1, target.capabilities, everything=True).items():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text(text)
        spec = project / "pipeline.yaml"
        digest = _digest(self._compile(spec, ()))
        code = ("import hashlib, sys, mlprism\n"
                f"files = mlprism.compile_spec({str(spec)!r}, {self.target_name!r}, [], {self.project_path!r})\n"
                "h = hashlib.sha256()\n"
                "for k in sorted(files): h.update(k.encode() + b'\\0' + files[k] + b'\\0')\n"
                "print(h.hexdigest())\n")
        env = {**os.environ, "PYTHONHASHSEED": "12345"}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              cwd=tempfile.gettempdir(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == digest, "another process emitted different bytes"

    def test_undeclared_feature_is_mlp302(self, undeclared_feature: str | None, tmp_path: Path) -> None:
        """A spec using a feature the target does not declare fails with MLP302 at that feature's line."""
        from mlprism._internal.features import features_used

        if undeclared_feature is None:
            return      # the target declares every feature
        target = self._target()
        allowed = set(target.capabilities) | {undeclared_feature, *_REQUIRES.get(undeclared_feature, ())}
        for seed in range(20):      # the generator picks features at random: find a spec that uses it
            files = generate_spec(1000 + seed, allowed, everything=True)
            project = tmp_path / f"s{seed}"
            for rel, text in files.items():
                (project / rel).parent.mkdir(parents=True, exist_ok=True)
                (project / rel).write_text(text)
            spec = project / "pipeline.yaml"
            pipeline = mlprism.load_pipeline(str(spec))
            if undeclared_feature in features_used(pipeline):
                break
        else:
            raise AssertionError(f"generate_spec cannot make a spec using `{undeclared_feature}`")
        with _raises_diagnostics() as caught:
            self._compile(spec, ())
        key = features_used(pipeline)[undeclared_feature]
        hits = [d for d in caught if d.code == "MLP302" and f"`{undeclared_feature}`" in d.message]
        assert hits, f"no MLP302 for `{undeclared_feature}`: {[d.render() for d in caught]}"
        diag = hits[0]
        assert f"`{self.target_name}`" in diag.message, diag.render()
        assert diag.hint, diag.render()
        assert diag.location is not None and diag.location.line, diag.render()
        line = files["pipeline.yaml"].splitlines()[diag.location.line - 1]
        word = key.rsplit(".", 1)[-1]
        assert word in line, f"MLP302 for `{undeclared_feature}` points at line {diag.location.line} ({line!r}), not at `{key}`"


def _installed_target(name: str) -> mlprism.Target | None:
    from mlprism._internal.compiler import get_plugins

    targets = get_plugins().targets
    return targets.get(name) if name in targets else None


class _raises_diagnostics:
    """Context manager: the block must raise DiagnosticError; its diagnostics are collected."""

    def __enter__(self) -> list[Diagnostic]:
        self.caught: list[Diagnostic] = []
        return self.caught

    def __exit__(self, tp: Any, exc: Any, tb: Any) -> bool:
        if tp is None:
            raise AssertionError("expected the compile to fail with diagnostics, and it succeeded")
        if not issubclass(tp, DiagnosticError):
            return False
        self.caught.extend(exc.diagnostics)
        return True


def _digest(files: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for k in sorted(files):
        h.update(k.encode() + b"\0" + files[k] + b"\0")
    return h.hexdigest()


def _check_output(files: Mapping[str, bytes], secret_values: Mapping[str, str], spec: Path) -> None:
    """Relative paths, no secret value, no absolute path of this machine."""
    assert files, "the target emitted no files"
    spec_dir = spec.parent.resolve()
    machine = {str(spec_dir), str(_repo_root(spec_dir) or spec_dir)}
    for path, data in files.items():
        assert not path.startswith("/") and ".." not in path.split("/") and "\\" not in path, \
            f"emitted path is not relative: {path!r}"
        for name, value in secret_values.items():
            assert value.encode() not in data, f"the value of secret {name} appears in {path}"
        text = data.decode("utf-8", errors="replace")
        for abs_path in machine:
            assert abs_path not in text, f"{path} contains an absolute path of this machine: {abs_path}"
