"""The intermediate representation every target consumes.

Frozen dataclasses, versioned by :data:`IR_VERSION`, with a lossless JSON
round trip (:meth:`Pipeline.to_json` / :meth:`Pipeline.from_json`). Steps are
kept in a deterministic topological order; edges are sorted.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from mlprism.diagnostics import Location

__all__ = [
    "IR_VERSION",
    "Autoscale",
    "DataSource",
    "Deploy",
    "Drift",
    "Edge",
    "Environment",
    "GateCondition",
    "Monitor",
    "Pipeline",
    "Push",
    "Registry",
    "Resources",
    "Rollout",
    "Select",
    "Serve",
    "Step",
    "Sweep",
    "Tracking",
    "Triggers",
]

IR_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Resources:
    cpu: str | None = None       # normalised Kubernetes quantity, e.g. "2" or "500m"
    memory: str | None = None    # e.g. "4Gi"
    gpu: int = 0


@dataclass(frozen=True, slots=True)
class GateCondition:
    metric: str
    min: float | None = None
    max: float | None = None
    not_worse_than: str | None = None
    goal: str = "max"
    tolerance: float = 0.0


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    run: str                                 # the command with every interpolation resolved
    run_template: str                        # the command as written (before interpolation)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    metrics: str | None = None
    resources: Resources = field(default_factory=Resources)
    retries: int = 0
    timeout: int | None = None               # seconds
    env: dict[str, str] = field(default_factory=dict)
    params: tuple[str, ...] = ()             # dotted names of the params the step uses (command, env, paths,
    #                                          gate, the environment's variables, and params those name)
    cache: bool = True
    gate: tuple[GateCondition, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: str                                # "data" (outputs -> inputs) or "needs"
    path: str | None = None                  # the artifact that creates a data edge


@dataclass(frozen=True, slots=True)
class DataSource:
    name: str
    path: str
    description: str = ""
    external: bool = False          # `external: true`: may live outside the project (absolute, `..`, symlink)


@dataclass(frozen=True, slots=True)
class Environment:
    python: str = "3.11"
    requirements: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Select:
    metric: str
    goal: str = "max"


@dataclass(frozen=True, slots=True)
class Sweep:
    params: dict[str, tuple[Any, ...]]
    select: Select | None = None

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination, in a deterministic order (the grid's row-major order)."""
        import itertools

        names = list(self.params)
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*(self.params[n] for n in names))]


@dataclass(frozen=True, slots=True)
class Registry:
    name: str
    artifact: str
    register_after: str
    flavor: str = "sklearn"


@dataclass(frozen=True, slots=True)
class Autoscale:
    min: int
    max: int
    cpu: int = 80


@dataclass(frozen=True, slots=True)
class Serve:
    model: str
    port: int = 8080
    replicas: int = 1
    resources: Resources = field(default_factory=Resources)
    autoscale: Autoscale | None = None
    log_requests: bool = False

    @property
    def model_name(self) -> str:
        return self.model.split("@", 1)[0]

    @property
    def model_ref(self) -> str:
        return self.model.split("@", 1)[1]


@dataclass(frozen=True, slots=True)
class Rollout:
    strategy: str = "rolling"
    steps: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Deploy:
    serve: Serve | None = None
    rollout: Rollout | None = None


@dataclass(frozen=True, slots=True)
class Drift:
    reference: str
    current: str
    method: str = "psi"
    threshold: float = 0.2
    columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Monitor:
    drift: Drift
    schedule: str | None = None
    on_drift: str = "alert"


@dataclass(frozen=True, slots=True)
class Push:
    branches: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Triggers:
    push: Push | None = None
    schedule: str | None = None
    manual: bool = False


@dataclass(frozen=True, slots=True)
class Tracking:
    backend: str = "ledger"
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A whole compiled spec. ``steps`` are in topological order."""

    name: str
    steps: tuple[Step, ...]
    edges: tuple[Edge, ...] = ()
    description: str = ""
    spec_file: str = "pipeline.yaml"         # the spec's file name, relative to the project dir
    overrides: tuple[str, ...] = ()          # command-line overrides it was compiled with
    environment: Environment = field(default_factory=Environment)
    params: dict[str, Any] = field(default_factory=dict)
    data: tuple[DataSource, ...] = ()
    sweep: Sweep | None = None
    registry: Registry | None = None
    deploy: Deploy | None = None
    monitor: Monitor | None = None
    triggers: Triggers = field(default_factory=Triggers)
    tracking: Tracking = field(default_factory=Tracking)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_choices: dict[str, str] = field(default_factory=dict)   # e.g. {"env": "dev"}
    locations: dict[str, Location] = field(default_factory=dict, compare=False)
    ir_version: str = IR_VERSION

    # -- lookups -------------------------------------------------------------
    def step(self, name: str) -> Step:
        try:
            return _index(self.steps, _by_name)[name]
        except KeyError:
            raise KeyError(name) from None

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def upstream(self, name: str) -> tuple[str, ...]:
        """Direct predecessors of a step, sorted."""
        return _index(self.edges, _upstream).get(name, ())

    def downstream(self, name: str) -> tuple[str, ...]:
        return _index(self.edges, _downstream).get(name, ())

    def location(self, dotted: str) -> Location | None:
        """The spec position of a dotted key path (``steps.train.gate``), or its nearest parent's."""
        key = dotted
        while key:
            loc = self.locations.get(key)
            if loc is not None:
                return loc
            key = key.rpartition(".")[0]
        return None

    def flat_params(self) -> dict[str, Any]:
        """Params flattened to dotted names (``{"model.depth": 8}``)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif prefix:                   # no params at all: nothing (it was {"": {}})
                out[prefix] = value

        walk("", self.params)
        return out

    # -- JSON round trip -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pipeline:
        version = data.get("ir_version")
        if version != IR_VERSION:
            raise ValueError(f"unsupported ir_version {version!r} (this mlprism reads {IR_VERSION!r})")
        return _from_jsonable(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Pipeline:
        return cls.from_dict(json.loads(text))


# Look-ups by name, built once per steps/edges tuple (both immutable) instead of a scan per call:
# a compile asks for every step's upstream, which scanned all edges each time (O(N^2)).
_INDEXES: dict[tuple[int, Any], tuple[tuple[Any, ...], dict[str, Any]]] = {}


def _index(items: tuple[Any, ...], build: Any) -> dict[str, Any]:
    if type(items) is not tuple:             # a list could change under the index
        return build(items)
    key = (id(items), build)
    hit = _INDEXES.get(key)
    if hit is not None and hit[0] is items:
        return hit[1]
    index = build(items)
    if len(_INDEXES) >= 16:                 # a few pipelines are alive at a time; drop the oldest
        try:
            del _INDEXES[next(iter(_INDEXES))]
        except (KeyError, RuntimeError, StopIteration):    # another thread got there first
            pass
    _INDEXES[key] = (items, index)
    return index


def _by_name(steps: tuple[Step, ...]) -> dict[str, Step]:
    out: dict[str, Step] = {}
    for s in steps:
        out.setdefault(s.name, s)
    return out


def _upstream(edges: tuple[Edge, ...]) -> dict[str, tuple[str, ...]]:
    sets: dict[str, set[str]] = {}
    for e in edges:
        sets.setdefault(e.target, set()).add(e.source)
    return {k: tuple(sorted(v)) for k, v in sets.items()}


def _downstream(edges: tuple[Edge, ...]) -> dict[str, tuple[str, ...]]:
    sets: dict[str, set[str]] = {}
    for e in edges:
        sets.setdefault(e.source, set()).add(e.target)
    return {k: tuple(sorted(v)) for k, v in sets.items()}


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Location):
            return value.to_dict()
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_jsonable(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_jsonable(args[0], value) if len(args) == 1 else value
    if tp is Location:
        return Location(**value)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{k: _from_jsonable(hints[k], v) for k, v in value.items() if k in hints})
    if origin is tuple:
        args = typing.get_args(tp)
        return tuple(_from_jsonable(args[0], v) for v in value)
    if origin is dict:
        _, vt = typing.get_args(tp)
        return {k: _from_jsonable(vt, v) for k, v in value.items()}
    return value
