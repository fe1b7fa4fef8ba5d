"""Stage 5 — graph: the DAG of steps, built with networkx inside this module only.

Edges are inferred from outputs to inputs (a directory output feeds inputs below
it, and an input directory consumes the outputs below it) plus explicit
``needs``. A cycle is reported with its path and the lines that create it. The
topological order is deterministic: ties are broken by the order in the spec.
No networkx type leaves this module.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from mlprism._internal.load import without_gc
from mlprism._internal.slots import slot_setters
from mlprism.diagnostics import Diagnostic, DiagnosticError, Location
from mlprism.ir import Edge, Pipeline, Step

if TYPE_CHECKING:
    import networkx as nx

Locate = Callable[[str], Location | None]


def norm(path: str) -> str:
    return posixpath.normpath(path)


def _parents(path: str) -> Iterable[str]:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def infer_edges(steps: Sequence[Step], locate: Locate | None = None) -> tuple[list[Edge], list[Diagnostic]]:
    """Data edges (outputs -> inputs) and `needs` edges, sorted; plus the errors of outputs made twice:
    the same path by two steps, or a path inside another step's output (MLP221)."""
    diags: list[Diagnostic] = []
    normal: dict[str, str] = {}                       # path as written -> normalised (an output and its readers)
    producer: dict[str, tuple[str, str]] = {}          # normalised output -> (step, output as written)
    below: dict[str, list[tuple[str, str]]] = {}      # directory -> outputs below it
    for s in steps:
        name = s.name
        outputs = s.outputs
        # a step's metrics file is something it produces too: a later step may read it
        for i, out in enumerate((*outputs, s.metrics) if s.metrics else outputs):
            key = normal.get(out)
            if key is None:
                key = normal[out] = norm(out)
            first = producer.get(key)
            if first is not None and first[0] != name:
                where = f"steps.{name}.outputs.{i}" if i < len(outputs) else f"steps.{name}.metrics"
                diags.append(Diagnostic("MLP221", f"`{out}` is written by both `{first[0]}` and `{name}`",
                                        locate(where) if locate else None,
                                        "each file has one producer; write to another path or merge the steps"))
                continue
            producer[key] = (name, out)
            nested = None
            for parent in _parents(key):
                if nested is None:
                    above = producer.get(parent)
                    if above is not None and above[0] != name:
                        nested = (f"`{out}` (of `{name}`) is inside `{above[1]}`, an output of `{above[0]}`", above[0])
                below.setdefault(parent, []).append((name, out))
            if nested is None:
                inner = next((o for o in below.get(key, ()) if o[0] != name), None)
                if inner is not None:
                    nested = (f"`{out}` (of `{name}`) holds `{inner[1]}`, an output of `{inner[0]}`", inner[0])
            if nested is not None:
                where = f"steps.{name}.outputs.{i}" if i < len(outputs) else f"steps.{name}.metrics"
                diags.append(Diagnostic(
                    "MLP221", nested[0], locate(where) if locate else None,
                    f"each path has one producer, and so has everything below it: write `{name}`'s output "
                    f"outside `{nested[1]}`'s, or let one step make both"))
    # (source, target, kind, path or ""): sorted as the edges are, without an Edge per duplicate
    found: set[tuple[str, str, str, str]] = set()
    add = found.add
    for s in steps:
        name = s.name
        for i, inp in enumerate(s.inputs):
            key = normal.get(inp)
            if key is None:
                key = normal[inp] = norm(inp)
            hit = producer.get(key)
            if hit is not None:
                hits = [hit]
            else:
                hits = [producer[p] for p in _parents(key) if p in producer]
                hits.extend(below.get(key, ()))
            for src, path in hits:
                if src != name:
                    add((src, name, "data", inp))
                elif normal[path] == key or key.startswith(normal[path] + "/"):
                    diags.append(Diagnostic(
                        "MLP231", f"step `{name}` reads `{inp}`, which it writes itself",
                        locate(f"steps.{name}.inputs.{i}") if locate else None,
                        "a step cannot depend on its own output: write to a new path, or split the step in two"))
        for dep in s.needs:
            add((dep, name, "needs", ""))
    return _sorted_edges(found), diags


def _sorted_edges(found: set[tuple[str, str, str, str]]) -> list[Edge]:
    """The edges of (source, target, kind, path or "") tuples, in that order."""
    make = _edge_maker()
    return [make(src, target, kind, path if kind == "data" else None) for src, target, kind, path in sorted(found)]


def _edge_maker() -> Callable[[str, str, str, str | None], Edge]:
    """``Edge(source, target, kind, path)``, its slots set directly (twice as fast) while Edge is a plain
    slotted dataclass of these four fields."""
    setters = slot_setters(Edge, ("source", "target", "kind", "path"))
    if setters is None:
        return Edge
    new = object.__new__
    set_source, set_target, set_kind, set_path = setters

    def make(source: str, target: str, kind: str, path: str | None) -> Edge:
        edge = new(Edge)
        set_source(edge, source)
        set_target(edge, target)
        set_kind(edge, kind)
        set_path(edge, path)
        return edge
    return make


class Graph:
    """A thin wrapper over networkx.DiGraph; the only place networkx is used."""

    def __init__(self, steps: Sequence[str], edges: Iterable[Edge]) -> None:
        import networkx as nx

        self._order = {name: i for i, name in enumerate(steps)}
        self._g: nx.DiGraph = nx.DiGraph()
        self._g.add_nodes_from(steps)
        self._all = edges if isinstance(edges, list | tuple) else list(edges)
        self._edges: dict[tuple[str, str], list[Edge]] | None = None     # by (source, target), when asked
        self._g.add_edges_from(dict.fromkeys([(e.source, e.target) for e in self._all]))

    def find_cycle(self) -> list[str] | None:
        import networkx as nx

        try:
            cycle = nx.find_cycle(self._g)
        except nx.NetworkXNoCycle:
            return None
        path = [u for u, _v in cycle]
        # start the reported cycle at its earliest step in the spec: stable messages
        i = min(range(len(path)), key=lambda k: self._order[path[k]])
        return path[i:] + path[:i]

    def edges_between(self, a: str, b: str) -> list[Edge]:
        if self._edges is None:
            self._edges = {}
            for e in self._all:
                self._edges.setdefault((e.source, e.target), []).append(e)
        return self._edges.get((a, b), [])

    def topological_order(self) -> list[str] | None:
        """Steps in dependency order, ties broken by their order in the spec; None if there is a cycle."""
        import networkx as nx

        try:
            return list(nx.lexicographical_topological_sort(self._g, key=self._order.__getitem__))
        except nx.NetworkXUnfeasible:
            return None

    def ancestors(self, name: str) -> set[str]:
        import networkx as nx

        return set(nx.ancestors(self._g, name))

    def descendants(self, name: str) -> set[str]:
        import networkx as nx

        return set(nx.descendants(self._g, name))

    def layers(self) -> list[list[str]]:
        import networkx as nx

        return [sorted(layer, key=self._order.__getitem__) for layer in nx.topological_generations(self._g)]


@without_gc
def build(pipeline: Pipeline, locate: Locate | None = None) -> Pipeline:
    """Infer the edges, reject cycles, and return the pipeline with steps in topological order."""
    edges, diags = infer_edges(pipeline.steps, locate)
    if diags:
        raise DiagnosticError(diags)
    graph = Graph(pipeline.step_names, edges)
    order = graph.topological_order()       # one linear pass; the cycle search only when it fails
    if order is None:
        cycle = graph.find_cycle()
        assert cycle is not None
        raise DiagnosticError([_cycle_diag(cycle, graph, pipeline, locate)])
    by_name = {s.name: s for s in pipeline.steps}
    ordered = tuple(by_name[n] for n in order)
    return replace(pipeline, steps=ordered, edges=tuple(edges))


def _cycle_diag(cycle: list[str], graph: Graph, pipeline: Pipeline, locate: Locate | None) -> Diagnostic:
    """The cycle with every edge that makes it, pointing at the edge that closes it (back to its first step)."""
    shown = " → ".join([*cycle, cycle[0]])
    reasons = []
    closing = None
    pairs = list(zip(cycle, [*cycle[1:], cycle[0]], strict=True))
    for a, b in pairs:
        edges = sorted(graph.edges_between(a, b), key=lambda e: (e.kind != "needs", e.path or ""))
        if not edges:
            continue
        e = edges[0]
        step = pipeline.step(b)
        if e.kind == "needs":
            key = f"steps.{b}.needs.{step.needs.index(a)}"
            why = f"`{b}` needs `{a}`"
        else:
            key = f"steps.{b}.inputs.{step.inputs.index(e.path)}" if e.path in step.inputs else f"steps.{b}"
            why = f"`{b}` reads `{e.path}`, an output of `{a}`"
        loc = locate(key) if locate else None
        if b == cycle[0]:
            closing = loc
        reasons.append(f"{why}{f' (line {loc.line})' if loc and loc.line else ''}")
    return Diagnostic("MLP224", f"the steps form a cycle: {shown}; " + "; ".join(reasons), closing,
                      "remove one of these dependencies; a pipeline is a DAG")


def graph_of(pipeline: Pipeline) -> Graph:
    """A Graph view of a compiled pipeline (for selections and layers)."""
    return Graph(pipeline.step_names, pipeline.edges)
