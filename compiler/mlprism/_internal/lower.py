"""Stage 4 — lower: a composed, validated config into the IR."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlprism._internal.graph import norm
from mlprism._internal.load import without_gc
from mlprism._internal.validate import normalize_cpu, parse_duration
from mlprism.diagnostics import Diagnostic, Location, did_you_mean
from mlprism.ir import (
    Autoscale,
    DataSource,
    Deploy,
    Drift,
    Environment,
    GateCondition,
    Monitor,
    Pipeline,
    Push,
    Registry,
    Resources,
    Rollout,
    Select,
    Serve,
    Step,
    Sweep,
    Tracking,
    Triggers,
)

_PARAM_REF = re.compile(r"\$\{params\.([A-Za-z0-9_.]+)\}")
Locate = Callable[[str], Location | None]


def _str_env(values: dict[str, Any] | None) -> dict[str, str]:
    if not values:
        return {}
    out = {}
    for k, v in values.items():
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return dict(sorted(out.items()))


_NO_RESOURCES = Resources()           # frozen: one for every step that asks for none


def _resources(res: dict[str, Any] | None) -> Resources:
    if not res:
        return _NO_RESOURCES
    return Resources(cpu=normalize_cpu(res["cpu"]) if "cpu" in res else None,
                     memory=res.get("memory"), gpu=int(res.get("gpu", 0)))


def _param_refs(value: Any) -> set[str]:
    """The params a raw (not yet interpolated) value names with ``${params.…}``, in any string in it."""
    if isinstance(value, str):
        return set(_PARAM_REF.findall(value)) if "${" in value else set()
    if isinstance(value, dict):
        return set().union(*(_param_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_param_refs(v) for v in value)) if value else set()
    return set()


class _ParamUses:
    """The params a step uses: those its command, env, paths and gate name, those the environment's
    variables name (every step has them), and, through a param whose value names others, those too."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.through: dict[str, set[str]] = {}          # param (dotted) -> params its raw value names
        stack: list[tuple[str, Any]] = [("", raw.get("params") or {})]
        while stack:
            prefix, node = stack.pop()
            if isinstance(node, dict):
                stack.extend((f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}", v) for k, v in node.items())
            else:
                refs = _param_refs(node)
                if refs:
                    self.through[prefix] = refs
        self.common = _param_refs((raw.get("environment") or {}).get("variables") or {})

    def of(self, raw_step: dict[str, Any], run_template: str) -> list[str]:
        named = set(_PARAM_REF.findall(run_template)) | self.common
        named |= _param_refs({k: v for k, v in raw_step.items() if k not in ("run", "description")})
        todo = list(named)
        while todo and self.through:                    # a param whose value names others uses them too
            name = todo.pop()
            for key, refs in self.through.items():
                if key == name or key.startswith(name + ".") or name.startswith(key + "."):
                    for ref in refs - named:
                        named.add(ref)
                        todo.append(ref)
        return sorted(named)


@without_gc
def lower(config: dict[str, Any], raw: dict[str, Any], *, spec_file: str, overrides: tuple[str, ...] = (),
          choices: dict[str, str] | None = None, locations: dict[str, Location] | None = None) -> Pipeline:
    raw_steps = raw.get("steps") or {}
    uses = _ParamUses(raw)
    steps = []
    for name, s in config["steps"].items():
        raw_step = raw_steps.get(name) or {}
        template = str(raw_step.get("run", s["run"]))
        used = uses.of(raw_step, template) if isinstance(raw_step, dict) else sorted(set(_PARAM_REF.findall(template)))
        steps.append(Step(
            name=name,
            run=s["run"],
            run_template=template,
            inputs=tuple(s.get("inputs") or ()),
            outputs=tuple(s.get("outputs") or ()),
            needs=tuple(s.get("needs") or ()),
            metrics=s.get("metrics"),
            resources=_resources(s.get("resources")),
            retries=int(s.get("retries", 0)),
            timeout=parse_duration(s["timeout"]) if "timeout" in s else None,
            env=_str_env(s.get("env")),
            params=tuple(used),
            cache=bool(s.get("cache", True)),
            gate=tuple(GateCondition(metric=c["metric"], min=c.get("min"), max=c.get("max"),
                                     not_worse_than=c.get("not_worse_than"), goal=c.get("goal", "max"),
                                     tolerance=float(c.get("tolerance", 0))) for c in s["gate"]) if s.get("gate") else (),
            description=s.get("description", ""),
        ))
    env = config.get("environment") or {}
    environment = Environment(python=str(env.get("python", "3.11")), requirements=env.get("requirements"),
                              variables=_str_env(env.get("variables")), secrets=tuple(env.get("secrets") or ()))
    data = tuple(DataSource(name=k, path=v["path"], description=v.get("description", ""),
                            external=bool(v.get("external", False)))
                 for k, v in (config.get("data") or {}).items())
    sweep = None
    if config.get("sweep"):
        sw = config["sweep"]
        sel = sw.get("select")
        sweep = Sweep(params={k: tuple(v) for k, v in sw["params"].items()},
                      select=Select(sel["metric"], sel.get("goal", "max")) if sel else None)
    registry = None
    if config.get("registry"):
        r = config["registry"]
        after = r.get("register_after") or next(
            (s.name for s in steps if norm(r["artifact"]) in {norm(o) for o in s.outputs}), "")
        registry = Registry(name=r["name"], artifact=r["artifact"], register_after=after,
                            flavor=r.get("flavor", "sklearn"))
    deploy = None
    if config.get("deploy"):
        d = config["deploy"]
        serve = None
        if d.get("serve"):
            sv = d["serve"]
            auto = sv.get("autoscale")
            serve = Serve(model=sv["model"], port=int(sv.get("port", 8080)), replicas=int(sv.get("replicas", 1)),
                          resources=_resources(sv.get("resources")),
                          autoscale=Autoscale(auto["min"], auto["max"], auto.get("cpu", 80)) if auto else None,
                          log_requests=bool(sv.get("log_requests", False)))
        rollout = None
        if d.get("rollout"):
            ro = d["rollout"]
            rollout = Rollout(strategy=ro["strategy"], steps=tuple(ro.get("steps") or ()))
        deploy = Deploy(serve=serve, rollout=rollout)
    monitor = None
    if config.get("monitor"):
        m = config["monitor"]
        dr = m["drift"]
        monitor = Monitor(drift=Drift(reference=dr["reference"], current=dr["current"], method=dr.get("method", "psi"),
                                      threshold=float(dr.get("threshold", 0.2)), columns=tuple(dr.get("columns") or ())),
                          schedule=m.get("schedule"), on_drift=m.get("on_drift", "alert"))
    tr = config.get("triggers") or {}
    push = None
    if "push" in tr:
        push = Push(branches=tuple((tr["push"] or {}).get("branches") or ()),
                    paths=tuple((tr["push"] or {}).get("paths") or ()))
    triggers = Triggers(push=push, schedule=tr.get("schedule"), manual=bool(tr.get("manual", False)))
    tracking_cfg = config.get("tracking") or {}
    tracking = Tracking(backend=tracking_cfg.get("backend", "ledger"), uri=tracking_cfg.get("uri"))
    return Pipeline(
        name=config["name"],
        description=config.get("description", ""),
        steps=tuple(steps),
        spec_file=spec_file,
        overrides=tuple(overrides),
        environment=environment,
        params=config.get("params") or {},
        data=data,
        sweep=sweep,
        registry=registry,
        deploy=deploy,
        monitor=monitor,
        triggers=triggers,
        tracking=tracking,
        targets={k: v for k, v in sorted((config.get("targets") or {}).items())},
        config_choices=dict(sorted((choices or {}).items())),
        locations=locations or {},
    )


_CONTAINERS = (dict, list)


@without_gc
def collect_locations(raw: dict[str, Any], locate: Locate, depth: int = 4, *,
                      locate_many: Callable[[list[str]], dict[str, Location]] | None = None) -> dict[str, Location]:
    """Locations of every key down to `depth` levels (steps.<name>.<key>.<index>).

    `locate` is asked once per key; `locate_many` (:meth:`Composed.locate_many`: the same
    answers, in bulk), when given, for all keys at once.
    """
    dotteds: list[str] = []
    add = dotteds.append

    def walk(value: Any, prefix: str, level: int) -> None:
        """Add the keys of `value` (a dict or a list) at `level`, and below it down to `depth`."""
        deeper = level < depth
        for k, v in value.items() if isinstance(value, dict) else enumerate(value):
            dotted = f"{prefix}{k}"
            add(dotted)
            if deeper and isinstance(v, _CONTAINERS):
                walk(v, dotted + "." if dotted else "", level + 1)

    if depth >= 1 and isinstance(raw, _CONTAINERS):
        walk(raw, "", 1)
    if locate_many is not None:
        return locate_many(dotteds)
    out: dict[str, Location] = {}
    for dotted in dotteds:
        loc = locate(dotted)
        if loc is not None:
            out[dotted] = loc
    return out


def missing_inputs(pipeline: Pipeline, project_dir: Path) -> list[Diagnostic]:
    """Inputs no step produces, that are not declared data and do not exist on disk."""
    normal: dict[str, str] = {}             # path as written -> normalised (an output and its readers)
    produced: set[str] = set()
    for s in pipeline.steps:
        for o in s.outputs:
            produced.add(normal.get(o) or normal.setdefault(o, posixpath.normpath(o)))
        if s.metrics:
            produced.add(posixpath.normpath(s.metrics))
    produced_dirs = {p for o in produced if "/" in o for p in _parents(o)}
    declared = {norm(d.path) for d in pipeline.data}
    diags = []
    for s in pipeline.steps:
        for i, inp in enumerate(s.inputs):
            key = normal.get(inp) or normal.setdefault(inp, posixpath.normpath(inp))
            if key in produced or key in declared or key in produced_dirs:
                continue
            if any(p in produced for p in _parents(key)):
                continue
            if (project_dir / inp).exists():
                continue
            hint = did_you_mean(inp, sorted(produced | declared)) or (
                "list it in some step's `outputs`, declare it under `data:`, or create the file")
            diags.append(Diagnostic("MLP223", f"step `{s.name}` reads `{inp}`, which no step produces and which does not exist",
                                    pipeline.location(f"steps.{s.name}.inputs.{i}"), hint))
    return diags


def _parents(path: str) -> list[str]:
    out = []
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        out.append(path)
    return out
