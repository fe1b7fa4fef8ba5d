"""Read generated YAML the way GitHub, compose and Kubernetes do: YAML 1.2 (`on:` stays a string)."""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML


def load(data: bytes | str) -> Any:
    return YAML(typ="safe", pure=True).load(data)


def load_all(data: bytes | str) -> list[Any]:
    return [d for d in YAML(typ="safe", pure=True).load_all(data) if d is not None]


def upstream_through(graph: dict[str, list[str]], keep: set[str]) -> set[tuple[str, str]]:
    """Edges between `keep` nodes of a dependency graph (node -> what it waits for), through other nodes."""
    edges = set()
    for node in keep:
        stack, seen = list(graph.get(node, ())), set()
        while stack:
            up = stack.pop()
            if up in seen:
                continue
            seen.add(up)
            if up in keep:
                edges.add((up, node))
            else:
                stack.extend(graph.get(up, ()))
    return edges
