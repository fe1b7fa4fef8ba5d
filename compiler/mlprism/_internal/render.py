"""Graph renderings for `mlprism graph`: text, mermaid, dot, json. Deterministic."""

from __future__ import annotations

import json
import re

from mlprism.ir import Pipeline


def _mermaid_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def render_graph(p: Pipeline, fmt: str) -> str:
    if fmt == "json":
        data = {
            "name": p.name,
            "ir_version": p.ir_version,
            "nodes": [{"name": s.name, "run": s.run, "inputs": list(s.inputs), "outputs": list(s.outputs),
                       "params": list(s.params), "gate": bool(s.gate)} for s in p.steps],
            "edges": [{"source": e.source, "target": e.target, "kind": e.kind, "path": e.path} for e in p.edges],
            "order": list(p.step_names),
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "mermaid":
        lines = ["flowchart TD"]
        for s in p.steps:
            shape = ("{{", "}}") if s.gate else ("[", "]")
            label = s.name.replace('"', "'")
            lines.append(f'  {_mermaid_id(s.name)}{shape[0]}"{label}"{shape[1]}')
        seen = set()
        for e in p.edges:
            if (e.source, e.target) in seen:
                continue
            seen.add((e.source, e.target))
            lines.append(f"  {_mermaid_id(e.source)} --> {_mermaid_id(e.target)}")
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        lines = [f'digraph "{p.name}" {{', "  rankdir=LR;"]
        for s in p.steps:
            shape = "diamond" if s.gate else "box"
            lines.append(f'  "{s.name}" [shape={shape}];')
        seen = set()
        for e in p.edges:
            if (e.source, e.target) not in seen:
                seen.add((e.source, e.target))
                style = ' [style=dashed]' if e.kind == "needs" else ""
                lines.append(f'  "{e.source}" -> "{e.target}"{style};')
        lines.append("}")
        return "\n".join(lines) + "\n"
    lines = [f"{p.name}: {len(p.steps)} steps, {len(p.edges)} edges"]
    for s in p.steps:
        ups = p.upstream(s.name)
        lines.append(f"  {s.name}" + (f"  <- {', '.join(ups)}" if ups else ""))
    return "\n".join(lines) + "\n"
