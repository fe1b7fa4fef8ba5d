"""Run a generated pipeline workflow here, job by job, with the real `mlprism` and real bash.

What GitHub would provide is emulated just enough, and nothing of the workflow is skipped
silently:

- jobs in `needs:` order, matrix legs one after another (a job fails when a leg does); a job
  without a status function in its `if:` is skipped when a job it needs was skipped or one before
  it (needed, directly or not) failed, as GitHub's implicit `success()`; `if:` on steps
  (`!cancelled()`) and on jobs (`!cancelled()`, `needs.J.result`, `contains(needs.*.result, …)`,
  the deploy job's branch test) is honoured;
- `actions/checkout` copies the project into a fresh workspace for every job;
- `actions/setup-python` and the "Install requirements and mlprism" step are the only steps
  not executed: the test's own environment already has Python and this mlprism;
- `actions/upload-artifact` / `download-artifact` copy files through an artifact store of the
  run (`name`, or `pattern` into one folder per artifact);
- `actions/cache` restores now and saves after the job succeeded (unless the key hit);
  `actions/cache/restore` and `/save` act at once; keys and `restore-keys` prefixes behave as
  GitHub's do (exact key first, else the newest entry with the prefix). The cache store
  outlives a run, so a second run sees the first one's entries.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from tests.unit.github.gha import evaluate, load

_SKIPPED_RUN_STEPS = ("Install requirements and mlprism",)


@dataclass
class Store:
    """Artifacts of one run and the cache shared by every run (one directory)."""

    root: Path
    run_id: int = 0
    _clock: int = 0

    def new_run(self) -> None:
        self.run_id += 1
        shutil.rmtree(self.root / "artifacts", ignore_errors=True)

    def artifact_dir(self, name: str) -> Path:
        return self.root / "artifacts" / name

    def artifacts(self) -> list[str]:
        base = self.root / "artifacts"
        return sorted(p.name for p in base.iterdir()) if base.exists() else []

    # cache entries: cache/<n>/key + data.tar (n orders them by creation)
    def _entries(self) -> list[tuple[int, str, Path]]:
        base = self.root / "cache"
        if not base.exists():
            return []
        out = []
        for d in base.iterdir():
            out.append((int(d.name), (d / "key").read_text(), d / "data.tar"))
        return sorted(out)

    def cache_find(self, key: str, restore_keys: list[str]) -> tuple[str, Path] | None:
        entries = self._entries()
        for _, k, data in entries:
            if k == key:
                return k, data
        for prefix in restore_keys:
            hits = [(n, k, data) for n, k, data in entries if k.startswith(prefix)]
            if hits:
                _, k, data = hits[-1]
                return k, data
        return None

    def cache_save(self, key: str, workspace: Path, paths: list[str]) -> bool:
        if any(k == key for _, k, _ in self._entries()):
            return False
        files = []
        for pattern in paths:
            files += [p.relative_to(workspace).as_posix() if p.is_relative_to(workspace) else str(p)
                      for p in _glob(workspace, pattern)]
        if not files:
            raise AssertionError(f"cache save: nothing matches {paths}")
        n = len(self._entries())
        d = self.root / "cache" / f"{n:04d}"
        d.mkdir(parents=True)
        (d / "key").write_text(key)
        with tarfile.open(d / "data.tar", "w") as tar:
            for f in files:
                tar.add(workspace / f if not Path(f).is_absolute() else f, arcname=f)
        return True


def _glob(workspace: Path, pattern: str) -> list[Path]:
    base = Path(pattern) if Path(pattern).is_absolute() else workspace / pattern
    if any(c in pattern for c in "*?["):
        return sorted(base.parent.glob(base.name))
    return [base] if base.exists() else []


@dataclass
class JobResult:
    name: str
    ok: bool
    skipped: bool = False
    log: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    summary: str = ""


class Emulator:
    def __init__(self, workflow_text: str, project: Path, store: Store, work: Path, bin_dir: Path,
                 inputs: dict[str, str] | None = None, ref: str = "refs/heads/main") -> None:
        self.wf = load(workflow_text)
        self.project = project
        self.store = store
        self.work = work
        self.bin = bin_dir
        self.inputs = inputs or {}
        self.ref = ref

    def order(self) -> list[str]:
        jobs = self.wf["jobs"]
        done: list[str] = []
        while len(done) < len(jobs):
            ready = [j for j in jobs if j not in done and all(n in done for n in jobs[j].get("needs") or [])]
            assert ready, "the needs graph has a cycle"
            done.append(ready[0])
        return done

    def run(self) -> dict[str, JobResult]:
        self.store.new_run()
        results: dict[str, JobResult] = {}
        ancestors: dict[str, set[str]] = {}
        for name in self.order():
            job = self.wf["jobs"][name]
            needs = job.get("needs") or []
            ancestors[name] = set(needs).union(*(ancestors[n] for n in needs))
            cond = job.get("if")
            status_function = cond is not None and re.search(r"\b(cancelled|always|failure|success)\(\)", cond)
            if not status_function and (any(results[n].skipped for n in needs)
                                        or any(not results[n].ok for n in ancestors[name])):
                results[name] = JobResult(name, ok=True, skipped=True)
                continue
            if cond is not None and not self._job_if(cond, {n: results[n] for n in needs}):
                results[name] = JobResult(name, ok=True, skipped=True)
                continue
            legs = ((job.get("strategy") or {}).get("matrix") or {}).get("sweep")
            parts = [self.run_job(name, job, leg) for leg in (legs if legs else [None])]
            merged = JobResult(name, ok=all(p.ok for p in parts), log=[x for p in parts for x in p.log],
                               summary="".join(p.summary for p in parts))
            for p in parts:
                merged.outputs.update(p.outputs)
            results[name] = merged
        return results

    def _base_ctx(self) -> dict[str, str]:
        ctx = {f"inputs.{k}": v for k, v in self.inputs.items()}
        ctx.update({"github.run_id": str(1000 + self.store.run_id), "github.run_attempt": "1",
                    "github.ref": self.ref, "github.token": "ghs_emulated"})
        return ctx

    def _job_if(self, cond: str, needs: dict[str, JobResult]) -> bool:
        """A job's `if:`, for the forms generated workflows use (see gha._ALLOWED), with `&&`, `||`, `!`
        and parentheses; nothing is cancelled here."""
        def result(r: JobResult) -> str:
            return "skipped" if r.skipped else "success" if r.ok else "failure"

        tokens = re.findall(r"\|\||&&|!=|==|!|\(|\)|,|'[^']*'|[A-Za-z_][A-Za-z0-9_.*-]*", cond.strip()[3:-2])
        pos = 0

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def take(expected: str | None = None) -> str:
            nonlocal pos
            tok = tokens[pos]
            assert expected is None or tok == expected, (expected, tok, cond)
            pos += 1
            return tok

        def value() -> Any:
            tok = take()
            if tok.startswith("'"):
                return tok[1:-1]
            if tok == "cancelled":
                take("("), take(")")
                return False
            if tok in ("contains", "startsWith"):
                take("(")
                a = value()
                take(",")
                b = value()
                take(")")
                return b in a if tok == "contains" else a.startswith(b)
            if tok == "needs.*.result":
                return [result(r) for r in needs.values()]
            m = re.fullmatch(r"needs\.([A-Za-z_][A-Za-z0-9_-]*)\.result", tok)
            if m:
                return result(needs[m.group(1)])
            if tok == "github.ref":
                return self.ref
            raise AssertionError(f"no value for {tok} in the emulation: {cond}")

        def unary() -> Any:
            if peek() == "!":
                take()
                return not unary()
            if peek() == "(":
                take()
                v = disjunction()
                take(")")
                return v
            v = value()
            if peek() in ("==", "!="):
                op = take()
                w = value()
                return (v == w) == (op == "==")
            return v

        def conjunction() -> Any:
            v = unary()
            while peek() == "&&":
                take()
                w = unary()
                v = v and w
            return v

        def disjunction() -> Any:
            v = conjunction()
            while peek() == "||":
                take()
                w = conjunction()
                v = v or w
            return v

        out = disjunction()
        assert pos == len(tokens), cond
        return bool(out)

    def run_job(self, name: str, job: dict[str, Any], leg: int | None) -> JobResult:
        root = self.work / f"run{self.store.run_id}" / f"{name}-{leg}"
        workspace = root / "workspace"
        temp = root / "temp"
        temp.mkdir(parents=True)
        output_file, summary_file = root / "output", root / "summary"
        summary_file.touch()
        wd = ((job.get("defaults") or {}).get("run") or {}).get("working-directory", ".")
        result = JobResult(name, ok=True)
        steps_ctx: dict[str, str] = {}
        post: list[tuple[str, list[str]]] = []
        failed = False
        for step in job["steps"]:
            cond = step.get("if")
            if failed and cond != "${{ !cancelled() }}":
                continue
            ctx = {**self._base_ctx(), **steps_ctx, "runner.temp": str(temp),
                   "matrix.sweep": "" if leg is None else str(leg), "!cancelled()": "true"}
            title = step.get("name", "")
            uses = str(step.get("uses", ""))
            with_ = {k: evaluate(str(v), ctx) for k, v in (step.get("with") or {}).items()}
            ok = True
            if "/checkout@" in uses:
                shutil.copytree(self.project, workspace, ignore=shutil.ignore_patterns(".mlprism", "expected"))
            elif "/setup-python@" in uses or title in _SKIPPED_RUN_STEPS:
                pass
            elif "/download-artifact@" in uses:
                dest = Path(with_["path"])
                if "name" in with_:
                    src = self.store.artifact_dir(with_["name"])
                    ok = src.exists()
                    if ok:
                        shutil.copytree(src, dest, dirs_exist_ok=True)
                else:
                    for art in self.store.artifacts():
                        if fnmatchcase(art, with_["pattern"]):
                            shutil.copytree(self.store.artifact_dir(art), dest / art, dirs_exist_ok=True)
            elif "/upload-artifact@" in uses:
                src = Path(with_["path"])
                dest = self.store.artifact_dir(with_["name"])
                assert not dest.exists(), f"artifact {with_['name']} uploaded twice"
                if src.is_file():
                    dest.mkdir(parents=True)
                    shutil.copy2(src, dest / src.name)
                elif src.is_dir():
                    shutil.copytree(src, dest)
                else:
                    ok = with_.get("if-no-files-found") != "error"
            elif re.search(r"/cache(/restore)?@", uses):
                paths = [p for p in with_["path"].splitlines() if p]
                found = self.store.cache_find(with_["key"], [k for k in with_.get("restore-keys", "").splitlines() if k])
                if found:
                    with tarfile.open(found[1]) as tar:
                        tar.extractall(workspace, filter="fully_trusted")
                elif with_.get("fail-on-cache-miss") == "true":
                    ok = False
                if "/cache@" in uses and not (found and found[0] == with_["key"]):
                    post.append((with_["key"], paths))
                result.log.append(f"cache hit: {found[0]}" if found else f"cache miss: {with_['key']}")
            elif "/cache/save@" in uses:
                self.store.cache_save(with_["key"], workspace, [p for p in with_["path"].splitlines() if p])
            elif "run" in step:
                env = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(root), "LC_ALL": "C.UTF-8",
                       "RUNNER_TEMP": str(temp), "GITHUB_OUTPUT": str(output_file),
                       "GITHUB_STEP_SUMMARY": str(summary_file), "GITHUB_JOB": name, "GITHUB_SHA": "0" * 40,
                       "GITHUB_RUN_ID": str(1000 + self.store.run_id), "GITHUB_REF_NAME": "main",
                       "MLPRISM_DISABLE_PLUGIN_AUTOLOAD": os.environ.get("MLPRISM_DISABLE_PLUGIN_AUTOLOAD", "")}
                for k, v in (step.get("env") or {}).items():
                    env[k] = evaluate(str(v), ctx)
                output_file.write_text("")
                script = root / "step.sh"
                script.write_text(step["run"])
                proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                      cwd=workspace / wd, env=env, capture_output=True, text=True, timeout=300)
                result.log.append(f"$ {title}\n{proc.stdout}{proc.stderr}")
                ok = proc.returncode == 0
                if "id" in step:
                    for line in output_file.read_text().splitlines():
                        k, _, v = line.partition("=")
                        steps_ctx[f"steps.{step['id']}.outputs.{k}"] = v
                        result.outputs.setdefault(step["id"], {})[k] = v
            else:
                raise AssertionError(f"the emulation does not know step {step}")
            if not ok:
                failed = True
                result.log.append(f"step failed: {title}")
        if not failed:
            for key, paths in post:
                self.store.cache_save(key, workspace, paths)
        result.ok = not failed
        result.summary = summary_file.read_text()
        return result
