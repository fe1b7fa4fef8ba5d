"""Hypothesis strategies that make hostile specs: random YAML, mutated valid specs, hostile overrides."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from hypothesis import strategies as st

HOSTILE_STRINGS = [
    "", " ", "\n", "\t", "---", "...", "- a", "a: b", "? x", "&a", "*a", "!tag", "%YAML 1.2", "@x", "`id`",
    "${{ github.sha }}", "${{ secrets.TOKEN }}", "$(rm -rf /)", "`rm -rf /`", "; rm -rf /", "&& curl x | sh",
    "${params.lr}", "${params.nope}", "${oc.env:HOME}", "${oc.env:NOPE}", "\\${params.lr}", "${", "}", "${}", "${.}",
    "${..x}", "${now:%Y}", "${oc.decode:'1'}", "$${x}", "${a:${b}}", "'", '"', "\\", "\\n", "%s%n", "{{ x }}",
    "{% raw %}", "<script>", "../..", "../x", "/etc/passwd", "~/x", "C:\\x", "a/../../b", "./", ".", "..",
    "ünïcödé", "名前", "مرحبا", "\u202etxt.exe", "😀" * 3, "\u0000", "\u0007", "\ufeff", "\u2028", "\x85",
    "0", "-1", "1e309", "nan", "inf", "true", "null", "~", "yes", "on", "0x1F", "0o17", "1_000", "2024-01-01",
    "a" * 300, "x" * 5000, "UPPER", "under_score", "-leading", "trailing-", "1digit", "with space", "dot.ted",
]

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=40), st.text(st.characters(codec="utf-8"), max_size=20),
)


def values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(["run", "inputs", "outputs", "needs", "metrics", "gate", "min",
                                                   "path", "name", "cpu", "memory", "timeout", "retries"]),
                                  st.text(max_size=8)), children, max_size=4)), max_leaves=max_leaves)


def base_specs() -> list[dict[str, Any]]:
    """Valid specs to start mutating from (no config groups: the fast path; see OVERRIDE_PROJECT for groups)."""
    minimal = {
        "apiVersion": "mlprism/v1", "name": "minimal", "params": {"greeting": "hello"},
        "steps": {
            "fetch": {"run": "echo ${params.greeting} > out/raw.txt", "outputs": ["out/raw.txt"]},
            "upper": {"run": "tr a-z A-Z < out/raw.txt > out/upper.txt", "inputs": ["out/raw.txt"],
                      "outputs": ["out/upper.txt"]},
            "count": {"run": "wc -c < out/upper.txt", "inputs": ["out/upper.txt"], "outputs": ["out/count.txt"]},
        },
    }
    full = {
        "apiVersion": "mlprism/v1", "name": "churn", "description": "every feature",
        "environment": {"python": "3.11", "variables": {"PYTHONHASHSEED": "0"}, "secrets": ["WAREHOUSE_TOKEN"]},
        "params": {"test_size": 0.2, "n_estimators": 200, "max_depth": 8},
        "data": {"raw": {"path": "data/raw.csv"}, "live": {"path": "data/live.csv"}},
        "steps": {
            "prepare": {"run": "python src/prepare.py --in ${data.raw.path} --test-size ${params.test_size}",
                        "inputs": ["data/raw.csv"], "outputs": ["data/train.csv", "data/test.csv"]},
            "train": {"run": "python src/train.py --n ${params.n_estimators} --d ${params.max_depth}",
                      "inputs": ["data/train.csv"], "outputs": ["models/model.joblib"], "metrics": "metrics/train.json",
                      "resources": {"cpu": 2, "memory": "4Gi", "gpu": 1}, "retries": 2, "timeout": "30m",
                      "env": {"STAGE": "train"}},
            "evaluate": {"run": "python src/evaluate.py", "inputs": ["models/model.joblib", "data/test.csv"],
                         "metrics": "metrics/eval.json", "needs": ["train"],
                         "gate": [{"metric": "accuracy", "min": 0.9},
                                  {"metric": "f1", "not_worse_than": "production", "tolerance": 0.01}]},
        },
        "sweep": {"params": {"n_estimators": [100, 200], "max_depth": [4, 8]},
                  "select": {"metric": "accuracy", "goal": "max"}},
        "registry": {"name": "churn", "artifact": "models/model.joblib", "register_after": "evaluate"},
        "deploy": {"serve": {"model": "churn@production", "port": 8080, "replicas": 2,
                             "autoscale": {"min": 2, "max": 10, "cpu": 70}},
                   "rollout": {"strategy": "canary", "steps": [10, 50, 100]}},
        "monitor": {"schedule": "0 * * * *", "drift": {"reference": "data/train.csv", "current": "${data.live.path}",
                                                      "method": "psi", "threshold": 0.2}, "on_drift": "retrain"},
        "triggers": {"push": {"branches": ["main"], "paths": ["src/**"]}, "schedule": "0 3 * * 1", "manual": True},
    }
    chain = {"apiVersion": "mlprism/v1", "name": "chain", "params": {"lr": 0.1},
             "steps": {f"s{i}": {"run": f"python s.py {i} ${{params.lr}}",
                                 **({"inputs": [f"o/{i - 1}.txt"]} if i else {}), "outputs": [f"o/{i}.txt"]}
                       for i in range(12)}}
    return [minimal, full, chain]


BASES = base_specs()
FILES_ON_DISK = ["data/raw.csv", "data/live.csv", "src/prepare.py", "src/train.py", "src/evaluate.py"]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid base spec with 1-4 hostile mutations."""
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "set", "delete", "unknown", "cycle", "dangling", "deep", "huge", "rename",
                                     "interp", "type"]))
        paths = [p for p in _paths(spec) if p]
        steps = spec.get("steps") if isinstance(spec.get("steps"), dict) else {}
        names = [n for n in steps if isinstance(steps.get(n), dict)]
        if kind in ("set", "type") and paths:
            path = draw(st.sampled_from(paths))
            parent = _get(spec, path[:-1])
            parent[path[-1]] = draw(values()) if kind == "set" else draw(SCALARS)
        elif kind == "delete" and paths:
            path = draw(st.sampled_from(paths))
            parent = _get(spec, path[:-1])
            del parent[path[-1]]
        elif kind == "unknown":
            mappings = [p for p in _paths(spec) if isinstance(_get(spec, p), dict)]
            target = _get(spec, draw(st.sampled_from(mappings)))
            target[draw(st.sampled_from(["stpes", "ouputs", "nmae", "x", "run ", "Run"]))] = draw(SCALARS)
        elif kind == "cycle" and len(names) >= 2:
            a, b = draw(st.permutations(names))[:2]
            if draw(st.booleans()):
                steps[a]["needs"] = [b]
                steps[b]["needs"] = [a]
            else:
                steps[a]["outputs"] = [f"cyc/{a}"]
                steps[a]["inputs"] = [f"cyc/{b}"]
                steps[b]["outputs"] = [f"cyc/{b}"]
                steps[b]["inputs"] = [f"cyc/{a}"]
        elif kind == "dangling" and names:
            which = draw(st.sampled_from(["needs", "register", "sweep", "gate", "input", "self"]))
            name = draw(st.sampled_from(names))
            if which == "needs":
                steps[name]["needs"] = [draw(st.sampled_from(["nope", name + "x", name]))]
            elif which == "register":
                spec["registry"] = {"name": "m", "artifact": "nope.pkl", "register_after": "nope"}
            elif which == "sweep":
                spec["sweep"] = {"params": {"nope": [1, 2]}, "select": {"metric": "acc"}}
            elif which == "gate":
                steps[name]["gate"] = [{"metric": "acc", "min": 0.5, "not_worse_than": "production"}]
                steps[name].pop("metrics", None)
            elif which == "input":
                steps[name]["inputs"] = ["never/made.csv"]
            else:
                steps[name]["inputs"] = [f"self/{name}"]
                steps[name]["outputs"] = [f"self/{name}"]
        elif kind == "deep":
            depth = draw(st.integers(1, 300))
            node: Any = 1
            for _ in range(depth):
                node = [node] if draw(st.booleans()) else {"k": node}
            spec[draw(st.sampled_from(["params", "steps", "x"]))] = node
        elif kind == "huge":
            n = draw(st.integers(30, 120))
            spec["steps"] = {f"s{i}": {"run": f"echo {i}", **({"needs": [f"s{i - 1}"]} if i else {})} for i in range(n)}
        elif kind == "rename" and names:
            old = draw(st.sampled_from(names))
            new = draw(st.sampled_from(HOSTILE_STRINGS))
            if new not in steps:
                steps[new] = steps.pop(old)
        elif kind == "interp" and names:
            name = draw(st.sampled_from(names))
            steps[name]["run"] = draw(st.sampled_from([s for s in HOSTILE_STRINGS if "$" in s] + ["echo ${x"]))
    return spec


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(spec: Any) -> str:
    return yaml.dump(spec, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=4096)


@st.composite
def yaml_texts(draw: st.DrawFn) -> bytes:
    """Random YAML-ish text: a valid spec's text cut, spliced and sprinkled with YAML syntax, or bytes."""
    kind = draw(st.sampled_from(["splice", "splice", "tokens", "bytes", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(values()), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if kind == "tokens":
        tokens = ["\n", "  ", "- ", ": ", "? ", "&a ", "*a ", "!!str ", "!x ", "<<: ", "[", "]", "{", "}", ",", "#",
                  "'", '"', "|", ">", "---\n", "...\n", "\t", "steps", "run", "apiVersion: mlprism/v1\n", "name: x\n",
                  "${", "}", "%TAG ! x\n", "a", "1", "~"]
        return "".join(draw(st.lists(st.sampled_from(tokens), max_size=60))).encode()
    text = dump(draw(st.sampled_from(BASES)))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["cut", "dup", "indent", "insert", "swap"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        if op == "cut":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = draw(st.sampled_from([" ", "\t", "   ", ""])) + lines[i].lstrip(" ")
        elif op == "insert":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(st.sampled_from(["'", '"', ": ", "- ", "{", "[", "&x ", "*x", "\t", "#",
                                                              "\x00", "💥"])) + lines[i][pos:]
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines).encode("utf-8", "surrogatepass")


OVERRIDE_PROJECT = {
    "pipeline.yaml": dump({**BASES[1], "defaults": ["_self_", {"env": "dev"}]}),
    "conf/env/dev.yaml": "# @package _global_\nparams:\n  n_estimators: 50\n",
    "conf/env/prod.yaml": "# @package _global_\nparams:\n  n_estimators: 500\nsteps:\n  train:\n    retries: 3\n",
}

OVERRIDE_KEYS = ["params.n_estimators", "params.test_size", "params.nope", "steps.train.retries", "steps.train.run",
                 "steps.nope.run", "env", "name", "monitor", "deploy.serve.port", "hydra.run.dir", "hydra",
                 "steps.evaluate.gate.0.min", "defaults", "params", "steps.train.inputs", "data.raw.path", ""]


@st.composite
def overrides(draw: st.DrawFn) -> list[str]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "add", "del", "group", "raw"]))
        key = draw(st.sampled_from(OVERRIDE_KEYS))
        value = draw(st.one_of(st.sampled_from(HOSTILE_STRINGS), st.sampled_from(
            ["1", "0.5", "[1,2]", "{a:1}", "null", "'quoted'", "prod", "dev", "staging", "${params.test_size}",
             "[1,", "a=b", "x,y", "\\", "${{ x }}"])))
        if kind == "set":
            out.append(f"{key}={value}")
        elif kind == "add":
            out.append(f"+{key}={value}")
        elif kind == "del":
            out.append(f"~{key}")
        elif kind == "group":
            out.append(f"env={value}")
        else:
            out.append(draw(st.text(st.sampled_from("[]{}(),=+~@:'\"\\$ .abz019-_/"), min_size=1, max_size=20)))
    return out


@st.composite
def hostile_valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec whose free-text fields (commands, descriptions, params, environment values) are hostile:
    these specs mostly pass validation, so every target has to emit them."""
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    text = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=30))
    steps = spec["steps"]
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.sampled_from(["run", "description", "step-description", "param", "variable", "env"]))
        name = draw(st.sampled_from(sorted(steps)))
        value = draw(text)
        if where == "run":
            steps[name]["run"] = value or "true"
        elif where == "description":
            spec["description"] = value
        elif where == "step-description":
            steps[name]["description"] = value
        elif where == "param":
            spec.setdefault("params", {})[draw(st.sampled_from(["p", "lr", "x_1"]))] = draw(st.one_of(text, SCALARS))
        elif where == "variable":
            spec.setdefault("environment", {}).setdefault("variables", {})["MY_VAR"] = value
        else:
            steps[name]["env"] = {"STEP_VAR": value}
    return spec


ENTRY_KEYS = ["env", "/env", "override env", "optional env", "env@pkg", "nope", "hydra/launcher", "_self_", "", "a/b"]


@st.composite
def defaults_lists(draw: st.DrawFn) -> str:
    """The group project's spec with a hostile `defaults` value (text of the whole spec)."""
    entry = st.one_of(
        st.sampled_from(["_self_", "env", "base", "", "_self_ ", "${x}"]),
        st.dictionaries(st.sampled_from(ENTRY_KEYS),
                        st.one_of(st.sampled_from(["dev", "prod", "nope", "", None]), st.lists(st.sampled_from(
                            ["dev", "prod", "x"]), max_size=3), SCALARS), min_size=1, max_size=2),
        SCALARS)
    value = draw(st.one_of(st.lists(entry, max_size=4), values()))
    return dump({**BASES[1], "defaults": value})
