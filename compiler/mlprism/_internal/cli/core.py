"""Compiler commands: validate, compile, graph, plugins, schema."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError


def add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the pipeline spec (pipeline.yaml)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                   help="Hydra overrides: params.lr=0.1, +steps.x.retries=3, ~monitor, env=prod")


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of jobs, at least 1 (got {text!r})")
    return n


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="load, compose and validate a spec")
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timings", action="store_true", help="print the seconds each compiler stage took (stderr)")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("compile", help="compile a spec for one or more targets",
                       description="Compile a spec for one or more targets and write the files (atomically, "
                                   "byte-identical on every compile). Beside them, `.mlprism-generated/NAME.TARGET"
                                   "[.GROUP=CHOICE…].json` records what this pipeline, target and config choices "
                                   "generated there (commit it with the files): a later compile deletes the files "
                                   "it generated before and no longer does (a workflow of a dropped `monitor`), "
                                   "unless another manifest there lists them or they changed since (kept, warning "
                                   "MLP306). Files mlprism did not generate are never touched. `--check` writes "
                                   "and deletes nothing: it lists what compile would write or delete, and exits 1 "
                                   "if there is any; `mlprism diff` shows it.")
    add_spec_args(p)
    p.add_argument("--target", "-t", action="append", required=True, metavar="T",
                   help="target name (repeatable); `all` for every installed target; `ir` for the IR as JSON")
    p.add_argument("--out", "-o", default=".", help="output directory (several targets: one subdirectory each)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if OUT differs (a file to write, or one an earlier compile "
                        "generated that compile would delete), listing the files")
    p.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N",
                   help="emit up to N targets side by side on a large spec (default: the CPUs available; 1: one after another)")
    p.add_argument("--timings", action="store_true",
                   help="print the seconds each compiler stage and each target took (stderr)")
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("graph", help="print the DAG")
    add_spec_args(p)
    p.add_argument("--format", "-f", choices=["text", "mermaid", "dot", "json"], default="text")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("plugins", help="list installed plugins and their targets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_plugins)

    p = sub.add_parser("schema", help="print the JSON Schema of the spec (core plus installed targets)")
    p.set_defaults(handler=cmd_schema)


def _plugins(args: argparse.Namespace) -> Any:
    from mlprism._internal.compiler import get_plugins

    return get_plugins(tuple(args.plugin_options))


def load(args: argparse.Namespace, check_inputs: bool = True) -> Any:
    from mlprism._internal.cli import print_diagnostics
    from mlprism._internal.compiler import load_pipeline

    compiled = load_pipeline(args.spec, args.overrides, plugins=_plugins(args), check_inputs=check_inputs)
    if compiled.warnings and not getattr(args, "json", False):
        print_diagnostics(compiled.warnings)
    return compiled


def print_timings(timings: dict[str, float]) -> None:
    """Stage and target times, to stderr (stdout stays the command's output)."""
    width = max(map(len, timings), default=0)
    for name, seconds in timings.items():
        print(f"timing: {name:<{width}}  {seconds:8.3f} s", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    compiled = load(args)
    if args.timings:
        print_timings(compiled.timings)
    p = compiled.pipeline
    if args.json:
        print(json.dumps({"ok": True, "name": p.name, "steps": len(p.steps), "edges": len(p.edges),
                          "diagnostics": [d.to_dict() for d in compiled.warnings]}, indent=2))
    else:
        print(f"ok: {p.name} ({len(p.steps)} steps, {len(p.edges)} edges)")
    return 0


def emit_targets(args: argparse.Namespace, timings: dict[str, float] | None = None
                 ) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Compile the spec for every `--target` (`all` expands; `ir` is the IR as JSON); write nothing.

    Shared by `compile` and `diff`. All targets' errors are collected before raising. Returns the
    target names, their files and their owners (for the writer's manifest of generated files).
    """
    from mlprism._internal.compiler import emit_many, project_path_for
    from mlprism._internal.target import GeneratedFile, size_warnings
    from mlprism._internal.write import Owner

    plugins = _plugins(args)
    names: list[str] = []
    for t in args.target:
        for name in (plugins.targets.names() if t == "all" else [t]):
            if name not in names:
                names.append(name)
    for name in names:
        if name != "ir":
            plugins.targets.get(name)       # unknown target: MLP300 before any work
    compiled = load(args)
    if timings is not None:
        timings.update(compiled.timings)
    pipeline = compiled.pipeline
    project_path = project_path_for(compiled.spec_path)
    targets = [n for n in names if n != "ir"]
    emitted, errors = emit_many(pipeline, targets, plugins, project_path, jobs=getattr(args, "jobs", None),
                                timings=timings)
    outputs: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == "ir":
            outputs[name] = {"pipeline.ir.json": GeneratedFile(pipeline.to_json())}
        elif name in emitted:
            outputs[name] = emitted[name]
    if errors:
        raise DiagnosticError(errors)
    warnings = [w for name in targets for w in size_warnings(plugins.targets.get(name), outputs[name])]
    if warnings:
        from mlprism._internal.cli import print_diagnostics

        print_diagnostics(warnings)
    choices = tuple(sorted(pipeline.config_choices.items()))
    return names, outputs, {name: Owner(pipeline.name, name, choices) for name in names}


def dest_of(out: Path, name: str, names: list[str]) -> Path:
    """Where a target's files go: `out`, or with several targets `out/<target>`."""
    return out if len(names) == 1 else out / name


def cmd_compile(args: argparse.Namespace) -> int:
    from mlprism._internal.write import write_files

    timings: dict[str, float] | None = {} if args.timings else None
    from mlprism._internal.cli import print_diagnostics

    names, outputs, owners = emit_targets(args, timings)
    out = Path(args.out)
    stale: list[str] = []
    start = time.perf_counter()
    for name in names:
        dest = dest_of(out, name, names)
        result = write_files(dest, outputs[name], check=args.check, owner=owners[name])
        print_diagnostics(result.warnings)
        if args.check:
            stale.extend(sorted([*(str(dest / f) for f in result.stale),
                                 *(f"{dest / f} (no longer generated: compile deletes it)" for f in result.removed)]))
        else:
            removed = f", deleted {len(result.removed)}" if result.removed else ""
            print(f"{name}: wrote {len(result.written)} file(s), {len(result.unchanged)} unchanged{removed} in {dest}")
            for f in result.removed:
                print(f"  deleted {dest / f} (no longer generated)")
    if timings is not None:
        timings["check" if args.check else "write"] = time.perf_counter() - start
        print_timings(timings)
    if args.check:
        if stale:
            listed = "".join(f"\n  {f}" for f in stale)
            print_diagnostics([Diagnostic("MLP304", f"{len(stale)} generated file(s) differ from this compile:{listed}",
                                          None, "rerun `mlprism compile` without --check, then commit the files")])
            return 1
        print(f"up to date: {', '.join(names)} in {out}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from mlprism._internal.render import render_graph

    compiled = load(args)
    fmt = "json" if args.json else args.format
    sys.stdout.write(render_graph(compiled.pipeline, fmt))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from mlprism._internal.cli import print_diagnostics

    plugins = _plugins(args)
    rows = []
    for info in plugins.infos:
        targets = [n for n in plugins.targets.names() if plugins.targets.info(n).plugin == info.name]
        rows.append({"name": info.name, "module": info.module, "distribution": info.distribution,
                     "version": info.version, "targets": targets})
    if args.json:
        print(json.dumps({"plugins": rows, "diagnostics": [d.to_dict() for d in plugins.problems]}, indent=2))
        return 0
    print_diagnostics(plugins.problems)
    if not rows:
        print("no plugins loaded")
    for r in rows:
        targets = ", ".join(r["targets"]) or "-"
        print(f"{r['name']:<16} {r['distribution']} {r['version']:<10} targets: {targets}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from mlprism._internal.plugins import schema_sections
    from mlprism._internal.validate import full_schema

    print(json.dumps(full_schema(schema_sections(_plugins(args))), indent=2, ensure_ascii=False))
    return 0
