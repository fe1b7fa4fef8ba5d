"""Project commands: `mlprism init` (scaffold a project) and `mlprism diff` (what compile would change)."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError

GITIGNORE_ENTRY = ".mlprism/"


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="scaffold a new project that validates and runs as generated")
    p.add_argument("dir", nargs="?", default=".", help="the project directory (default: here); created if missing")
    p.add_argument("--name", help="the pipeline's name (default: from the directory name)")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("diff", help="show what `mlprism compile` would change (a unified diff: the files it "
                                        "writes and those it deletes); exit 1 if anything")
    p.add_argument("spec", help="the pipeline spec (pipeline.yaml)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, as for compile")
    p.add_argument("--target", "-t", action="append", required=True, metavar="T",
                   help="target name (repeatable); `all` for every installed target; `ir` for the IR as JSON")
    p.add_argument("--out", "-o", default=".", help="the directory compile would write (several targets: "
                                                     "one subdirectory each)")
    p.add_argument("--stat", action="store_true", help="list the changed files only (new file, changed, mode change, deleted)")
    p.set_defaults(handler=cmd_diff)


# -- init --------------------------------------------------------------------------------------------


def project_name(directory: Path) -> str:
    """A DNS-1123-safe pipeline name from a directory name."""
    name = re.sub(r"[^a-z0-9-]+", "-", directory.name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"ml-{name}".rstrip("-")
    return name[:50].rstrip("-") or "pipeline"


def scaffold(name: str) -> dict[str, str]:
    """The files of a new project: relative path -> text."""
    return {
        "pipeline.yaml": _SPEC.replace("{name}", name),
        "conf/env/dev.yaml": _ENV_DEV,
        "conf/env/prod.yaml": _ENV_PROD,
        "src/prepare.py": _PREPARE,
        "src/train.py": _TRAIN,
        "src/evaluate.py": _EVALUATE,
        "requirements.txt": _REQUIREMENTS,
        ".gitignore": _GITIGNORE,
    }


def cmd_init(args: argparse.Namespace) -> int:
    from mlprism._internal.validate import NAME_RE

    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        raise DiagnosticError([Diagnostic("MLP002", f"{root} exists and is not a directory", None,
                                          "give a new or existing directory")])
    name = args.name or project_name(root.resolve())
    if not NAME_RE.match(name):
        raise DiagnosticError([Diagnostic("MLP210", f"`{name}` is not a safe pipeline name", None,
                                          "lower-case letters, digits and hyphens, starting with a letter, "
                                          "at most 50 characters")])
    files = scaffold(name)
    existing = [rel for rel in files if rel != ".gitignore" and (root / rel).exists()]
    if existing and not args.force:
        raise DiagnosticError([Diagnostic(
            "MLP003", f"{len(existing)} file(s) already exist in {root}: {', '.join(existing)}", None,
            "nothing was written; rerun with --force to overwrite them, or pick another directory")])
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel == ".gitignore" and path.exists() and not args.force:
            current = path.read_text(encoding="utf-8", errors="replace")
            if GITIGNORE_ENTRY in current.split():
                continue
            path.write_text(current + ("" if current.endswith("\n") or not current else "\n")
                            + "# mlprism's local state: cache, run ledger, registry\n" + GITIGNORE_ENTRY + "\n",
                            encoding="utf-8")
            written.append(f"{rel} (added `{GITIGNORE_ENTRY}`)")
            continue
        path.write_text(text, encoding="utf-8")
        written.append(rel)
    shown = root if str(root) != "." else Path(".")
    spec = shown / "pipeline.yaml"
    print(f"created the pipeline `{name}` in {shown}:")
    for rel in written:
        print(f"  {rel}")
    print("\nnext:")
    print(f"  mlprism validate {spec}")
    print(f"  mlprism run {spec}                 # here, cached and tracked (env=prod for the prod config)")
    print(f"  mlprism graph {spec} --format mermaid")
    print(f"  mlprism compile {spec} --target all --out {shown / 'generated'}")
    return 0


_SPEC = """\
# The pipeline spec: one file, compiled to every target (`mlprism compile --target all`).
# Reference: `mlprism schema` prints the JSON Schema; editors with the YAML language server use it.
apiVersion: mlprism/v1
name: {name}                     # lower-case letters, digits, hyphens: every target derives its names from it
description: A starter pipeline made by `mlprism init`; replace the steps with your own.

defaults:                         # config groups beside this file: conf/env/dev.yaml, conf/env/prod.yaml
  - _self_                        # first, so the env file's values override the ones below
  - env: dev                      # pick another on the command line: `mlprism run pipeline.yaml env=prod`

environment:                      # the one runtime every target reproduces
  python: "3.11"
  requirements: requirements.txt  # pinned; the Docker image and CI install exactly this
  variables: {PYTHONHASHSEED: "0"}

params:                           # override any of them: `mlprism run pipeline.yaml params.rows=2000`
  rows: 400                       # conf/env/*.yaml set their own
  seed: 7
  test_fraction: 0.25

steps:                            # edges are inferred: a step that reads another's output runs after it
  prepare:
    run: python src/prepare.py --rows ${params.rows} --seed ${params.seed} --test-fraction ${params.test_fraction}
    inputs: [src/prepare.py]
    outputs: [data/train.csv, data/test.csv]
  train:
    run: python src/train.py
    inputs: [data/train.csv, src/train.py]
    outputs: [models/model.json]
    metrics: metrics/train.json   # numbers tracked per run: `mlprism runs list`
  evaluate:
    run: python src/evaluate.py
    inputs: [models/model.json, data/test.csv, src/evaluate.py]
    metrics: metrics/eval.json
    gate:                         # the pipeline stops here unless every condition holds
      - {metric: accuracy, min: 0.7}

# More to add when you need it (see docs/reference/spec.md):
#
# data:                           # versioned inputs: content hashes recorded in mlprism.lock
#   raw: {path: data/raw.csv}
# sweep:                          # every combination runs; the best is selected
#   params: {seed: [1, 2, 3]}
#   select: {metric: accuracy, goal: max}
# registry:                       # register the model after the gate passes
#   name: {name}
#   artifact: models/model.json
#   flavor: file
# triggers:
#   push: {branches: [main]}
#   schedule: "0 3 * * 1"         # cron, UTC
# targets:                        # per-target options: `mlprism schema` lists them
#   docker: {base_image: "python:3.11-slim"}
"""

_ENV_DEV = """\
# @package _global_
# The `dev` environment (the default): a small, fast run.
params:
  rows: 400
"""

_ENV_PROD = """\
# @package _global_
# The `prod` environment: `mlprism run pipeline.yaml env=prod`.
params:
  rows: 4000
"""

_PREPARE = '''\
"""Make a small, deterministic two-class data set and split it (standard library only)."""

import argparse
import csv
import random
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for _ in range(args.rows):
        label = rng.randint(0, 1)
        x = rng.gauss(1.0 if label else -1.0, 1.0)
        y = rng.gauss(0.5 if label else -0.5, 1.0)
        rows.append((round(x, 6), round(y, 6), label))
    cut = int(len(rows) * (1 - args.test_fraction))
    Path("data").mkdir(exist_ok=True)
    for name, part in (("train", rows[:cut]), ("test", rows[cut:])):
        with open(f"data/{name}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["x", "y", "label"])
            writer.writerows(part)
    print(f"wrote {cut} training and {len(rows) - cut} test rows")


if __name__ == "__main__":
    main()
'''

_TRAIN = '''\
"""Train a nearest-centroid classifier (standard library only)."""

import csv
import json
from pathlib import Path


def read(path: str) -> list[tuple[float, float, int]]:
    with open(path, newline="") as fh:
        return [(float(r["x"]), float(r["y"]), int(r["label"])) for r in csv.DictReader(fh)]


def main() -> None:
    rows = read("data/train.csv")
    centroids = {}
    for label in (0, 1):
        points = [(x, y) for x, y, lab in rows if lab == label]
        centroids[str(label)] = [sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)]
    Path("models").mkdir(exist_ok=True)
    Path("models/model.json").write_text(json.dumps({"centroids": centroids}, indent=2, sort_keys=True) + "\\n")
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/train.json").write_text(json.dumps({"rows": len(rows)}) + "\\n")
    print(f"trained on {len(rows)} rows")


if __name__ == "__main__":
    main()
'''

_EVALUATE = '''\
"""Evaluate the model on the test split; the spec's gate checks `accuracy` (standard library only)."""

import csv
import json
from pathlib import Path


def main() -> None:
    model = json.loads(Path("models/model.json").read_text())["centroids"]
    with open("data/test.csv", newline="") as fh:
        rows = [(float(r["x"]), float(r["y"]), int(r["label"])) for r in csv.DictReader(fh)]

    def predict(x: float, y: float) -> int:
        dist = {int(k): (x - c[0]) ** 2 + (y - c[1]) ** 2 for k, c in model.items()}
        return min(dist, key=dist.__getitem__)

    correct = sum(predict(x, y) == label for x, y, label in rows)
    accuracy = correct / len(rows) if rows else 0.0
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/eval.json").write_text(json.dumps({"accuracy": round(accuracy, 4), "rows": len(rows)}) + "\\n")
    print(f"accuracy {accuracy:.3f} on {len(rows)} rows")


if __name__ == "__main__":
    main()
'''

_REQUIREMENTS = """\
# Pinned requirements of the steps (the Docker image and CI install exactly this file).
# The starter steps use only the standard library; add lines like `scikit-learn==1.5.2`.
"""

_GITIGNORE = f"""\
# mlprism's local state: cache, run ledger, registry
{GITIGNORE_ENTRY}
# what the steps produce (mlprism tracks their hashes)
data/
models/
metrics/
"""


# -- diff ---------------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    from mlprism._internal.cli import print_diagnostics
    from mlprism._internal.cli.core import dest_of, emit_targets
    from mlprism._internal.write import plan_output

    names, outputs, owners = emit_targets(args)
    out = Path(args.out)
    changed = 0
    for name in names:
        dest = dest_of(out, name, names)
        plan = plan_output(dest, outputs[name], owners[name])
        print_diagnostics(plan.warnings)
        texts = {rel: file_diff(dest, rel, gf, stat=args.stat) for rel, gf in plan.files.items()}
        texts.update({rel: deletion_diff(dest, rel, stat=args.stat) for rel in plan.remove})
        for rel in sorted(texts):
            if texts[rel]:
                changed += 1
                sys.stdout.write(texts[rel])
    if changed:
        print(f"{changed} file(s) would change; `mlprism compile` writes (or deletes) them", file=sys.stderr)
        return 1
    print(f"no changes: {', '.join(names)} in {out} match the spec", file=sys.stderr)
    return 0


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path).replace(os.sep, "/")
    except ValueError:      # pragma: no cover - another drive on Windows
        return path.as_posix()


def deletion_diff(dest: Path, rel: str, stat: bool = False) -> str:
    """A git-style deletion of `dest/rel`, a file an earlier compile generated and compile deletes."""
    path = dest / rel
    shown = _display(path)
    if stat:
        return f"deleted: {shown}\n"
    old = path.read_bytes()
    header = f"diff --mlprism a/{shown} b/{shown}\ndeleted file mode {'100755' if os.access(path, os.X_OK) else '100644'}\n"
    return _text_diff(header, old, None, f"a/{shown}", "/dev/null")


def _text_diff(header: str, old: bytes | None, new: bytes | None, a_name: str, b_name: str) -> str:
    """`header` and a unified diff of the two contents (None: no file), or a line saying they are binary."""
    try:
        old_text = "" if old is None else old.decode("utf-8")
        new_text = "" if new is None else new.decode("utf-8")
    except UnicodeDecodeError:
        return header + f"Binary files {a_name} and {b_name} differ\n"
    lines = difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                 fromfile=a_name, tofile=b_name)
    body = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return header + body


def file_diff(dest: Path, rel: str, generated: Any, stat: bool = False) -> str:
    """A unified diff (git style) from the file in `dest` to what compile would write there; "" if none."""
    path = dest / rel
    new = generated.data()
    try:
        old: bytes | None = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        old = None
    mode_change = old is not None and generated.executable and not os.access(path, os.X_OK)
    if old == new and not mode_change:
        return ""
    shown = _display(path)
    if stat:
        what = "new file" if old is None else "changed" if old != new else "mode change"
        return f"{what}: {shown}\n"
    header = f"diff --mlprism a/{shown} b/{shown}\n"
    if old is None:
        header += f"new file mode {'100755' if generated.executable else '100644'}\n"
    elif mode_change:
        header += "old mode 100644\nnew mode 100755\n"
    if old == new:
        return header
    return _text_diff(header, old, new, "/dev/null" if old is None else f"a/{shown}", f"b/{shown}")
