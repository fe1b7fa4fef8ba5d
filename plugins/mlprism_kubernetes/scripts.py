"""Python programs the sweep runs as Argo `script` templates, in the pipeline image.

They take everything through environment variables set from compile-time JSON (and
Argo's own `{{workflow.uid}}` / `{{inputs.parameters.*}}` for directory names), so no
user text is ever spliced into code or a shell. Both are plain standard-library
Python and are tested by running them (tests/unit/kubernetes/test_scripts.py).

The runtime's content-addressed store (``.mlprism/cache/objects`` and
``.mlprism/cache/steps``, see ``mlprism.runtime.cache``) is write-once: an entry is
written to ``tmp/`` and renamed into place, and never changed afterwards. That is
what lets a trial start with hard links to the workspace's entries (an unchanged
combination is a cache hit) and lets the selection hand the winner's new entries
back (the re-run of the swept steps with the winning params is a cache hit too). A trial
reads the workspace's model registry through a symbolic link (its gates compare with the
champion) and never writes it: trials run with ``--no-register``.
"""

from __future__ import annotations

#: Prepares one trial's working copy: the project from the image, the swept steps' inputs
#: that come from outside the sweep, and links to the workspace's cache entries.
TRIAL_WORKSPACE = '''\
import json
import os
import shutil
from pathlib import Path


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge_tree(src, dst):
    for root, _dirs, files in os.walk(src):
        target = Path(dst) / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            if not (target / name).exists():
                link_or_copy(os.path.join(root, name), target / name)


trial = Path(os.environ["MLPRISM_TRIAL_DIR"])
workspace = Path(os.environ["MLPRISM_WORKSPACE"])
if trial.exists():
    shutil.rmtree(trial)
trial.parent.mkdir(parents=True, exist_ok=True)
shutil.copytree(os.environ["MLPRISM_PROJECT_DIR"], trial, symlinks=True)
copied = 0
for rel, source in json.loads(os.environ["MLPRISM_COPY"]):
    src, dst = Path(source), trial / rel
    if not src.exists():
        print(f"not found, left to the step to report: {rel}")
        continue
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)
    copied += 1
for part in ("objects", "steps"):
    store = workspace / ".mlprism" / "cache" / part
    if store.is_dir():
        merge_tree(store, trial / ".mlprism" / "cache" / part)
for name in ("registry.db", "registry"):      # gates compare with the champion (read only: no registration)
    if (workspace / ".mlprism" / name).exists():
        (trial / ".mlprism").mkdir(parents=True, exist_ok=True)
        os.symlink(workspace / ".mlprism" / name, trial / ".mlprism" / name)
print(f"trial workspace {trial}: project copied, {copied} input(s) copied, cache linked")
'''

#: Picks the best successful trial (its `done` task left a marker) by a metric, writes the
#: winner's params as output parameters, hands
#: the winner's cache entries to the workspace and removes the trials' working copies.
SELECT = '''\
import json
import math
import os
import shutil
import sys
from pathlib import Path


def flatten(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def metric_of(trial_dir, files, metric):
    for rel in reversed(files):
        path = trial_dir / rel
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        flat = flatten("", data, {}) if isinstance(data, dict) else {}
        value = flat.get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        return float(value)
    return None


def publish(src, dst):
    for root, _dirs, files in os.walk(src):
        target = Path(dst) / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            final = target / name
            if final.exists():
                continue
            tmp = target / f".{name}.{os.getpid()}.tmp"
            try:
                os.link(os.path.join(root, name), tmp)
            except OSError:
                shutil.copy2(os.path.join(root, name), tmp)
            os.replace(tmp, final)


config = json.loads(os.environ["MLPRISM_SELECT"])
sweep_dir = Path(os.environ["MLPRISM_SWEEP_DIR"])
workspace = Path(os.environ["MLPRISM_WORKSPACE"])
out_dir = Path(config["out_dir"])
metric, goal = config["metric"], config["goal"]
rows, best = [], None
for trial in config["trials"]:
    trial_dir = sweep_dir / trial["trial"]
    ok = (trial_dir / config["marker"]).exists()
    value = metric_of(trial_dir, config["metrics"], metric) if ok else None
    rows.append((trial, ok, value))
    if value is not None and (best is None or (value > best[1] if goal == "max" else value < best[1])):
        best = (trial, value)
names = list(config["trials"][0]["values"]) if config["trials"] else []
print("trial  " + "  ".join(names) + f"  {metric}")
for trial, ok, value in rows:
    mark = "  <- selected" if best is not None and trial is best[0] else ""
    shown = "failed" if not ok else "missing" if value is None else f"{value:g}"
    print(f"{trial['trial']:>5}  " + "  ".join(trial["values"][n] for n in names) + f"  {shown}{mark}")
if best is None:
    sys.exit(f"no successful trial reported the metric `{metric}` in {', '.join(config['metrics'])}")
out_dir.mkdir(parents=True, exist_ok=True)
for name, value in best[0]["values"].items():
    (out_dir / name).write_text(value, encoding="utf-8")
for part in ("objects", "steps"):
    store = sweep_dir / best[0]["trial"] / ".mlprism" / "cache" / part
    if store.is_dir():
        publish(store, workspace / ".mlprism" / "cache" / part)
shutil.rmtree(sweep_dir, ignore_errors=True)
print(f"selected trial {best[0]['trial']}: {metric} = {best[1]:g} ({goal})")
'''
