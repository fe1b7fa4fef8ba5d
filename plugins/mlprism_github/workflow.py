"""Build the workflows as data; serialize with ``mlprism.dump_yaml``.

Layout of what is emitted for a pipeline ``NAME``:

``.github/workflows/NAME.yml`` — the pipeline
    One job per step (job id = step name), ``needs:`` = the step's upstream
    steps. Every job: check out (``persist-credentials: false``), set up Python
    (pip cache on the requirements file), install the requirements and mlprism,
    download and unpack the upstream steps' outputs, compute the step's
    fingerprint (``mlprism fingerprint SPEC STEP``), restore ``.mlprism/cache``
    from ``actions/cache`` under that fingerprint, run ``mlprism run SPEC --only
    STEP`` (which skips a step whose fingerprint is cached, retries, enforces the
    timeout, checks gates and registers), write the metrics to the job summary,
    and pack the outputs (one tar per step, so any file name survives) as the
    artifact ``STEP``. The run's records (logs, ledger) go to ``records.STEP``.

    Sweeps: every step that uses a swept param, and everything downstream of
    it, is a ``strategy.matrix`` over the combinations (``sweep: [0, 1, …]``;
    the values are in the script, never in an expression). Each leg uploads
    ``STEP.sweep-I`` when it succeeds (an empty archive for a step without
    outputs); a leg of a later swept step downloads its own leg's archives, so
    it fails when that leg failed (``fail-fast: false`` and ``if: !cancelled()``
    let the other legs go on). A leg passed when every swept step of it did;
    the ``select_sweep`` job (``!cancelled()``: it runs when some legs failed,
    e.g. their gate) ranks the legs that passed by ``sweep.select`` and
    re-publishes the winner's outputs as ``STEP``; it fails when none passed.
    As locally, the run is then reported failed (a leg's job failed) but the
    best passing combination is selected and registered.

    Deploy (``deploy.serve``): the ``deploy_model`` job needs every other job
    (with a sweep: the selection, not every leg of it; a leg that failed its gate
    is only not a candidate), runs only on ``deploy_branches`` and in the GitHub environment
    ``environment`` (add required reviewers there), builds the serving image
    and applies the kubernetes target's manifests when configured.

``.github/workflows/NAME-monitor.yml`` — ``monitor.schedule``
    ``mlprism monitor SPEC --no-retrain`` (exit 1 = drift); on drift with
    ``on_drift: retrain`` a second job (the only one with ``actions: write``)
    dispatches the pipeline workflow with ``gh workflow run``.

State that outlives a run goes through ``actions/cache`` under fixed key
prefixes: the model registry (``.mlprism/registry.db``, so ``not_worse_than``
gates compare with the last champion) and the files the monitor compares
that steps produce.

Retries: GitHub has no job retry; ``mlprism run`` retries the step itself
(``retries``, with backoff), so the job's ``timeout-minutes`` covers every
attempt.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Callable, Iterable
from typing import Any

from mlprism import (
    Diagnostic,
    DiagnosticError,
    Pipeline,
    Step,
    dump_yaml,
    hydra_value,
    step_command,
)

from mlprism_github.actions import Action, sub
from mlprism_github.target import Options
from mlprism_github.text import Script, plain, sh_word

SELECT_JOB = "select_sweep"
DEPLOY_JOB = "deploy_model"
_SETUP_MINUTES = 30           # checkout, Python, pip install, artifact transfer: added to a job's timeout

_METRICS_SUMMARY = r"""python3 - "$metrics" >> "$GITHUB_STEP_SUMMARY" <<'PY'
import json, os, sys
path, label = sys.argv[1], os.environ["GITHUB_JOB"]
def cell(value):
    text = str(value)
    for a, b in (("\\", "\\\\"), ("|", "\\|"), ("`", "\\`"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(a, b)
    return " ".join(text.split())
def flat(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
try:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
except (OSError, ValueError) as exc:
    print(f"### Metrics of {label}\n\nnot available: {cell(exc)}\n")
    raise SystemExit(0)
rows = {}
flat("", data, rows)
print(f"### Metrics of {label}\n\n| metric | value |\n|---|---|")
for key in sorted(rows):
    print(f"| {cell(key)} | {cell(rows[key])} |")
print()
PY"""

_SELECT_SCRIPT = r"""python3 - "$sweep" <<'PY'
import json, os, shutil, tarfile, sys
spec = json.loads(sys.argv[1])
tmp = os.environ["RUNNER_TEMP"]
def flat(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
def cell(value):
    text = str(value)
    for a, b in (("\\", "\\\\"), ("|", "\\|"), ("`", "\\`"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(a, b)
    return " ".join(text.split())
metric, goal = spec["metric"], spec["goal"]
def passed(index):                      # every swept step of the leg succeeded (and uploaded its archive)
    return all(os.path.exists(os.path.join(tmp, "mlprism-sweep", f"{step}.sweep-{index}", f"{step}.tar"))
               for step in spec["steps"])
scores, failed = [], []
for index, overrides in enumerate(spec["legs"]):
    if not passed(index):               # failed (e.g. its gate) or did not run: not a candidate
        failed.append((index, overrides, "failed"))
        continue
    if not metric:                      # no `sweep.select`: the first leg that passed goes on
        scores.append((float("nan"), index, overrides))
        continue
    found = {}
    for step, member in spec["metrics"]:        # the last step first: its metric wins
        archive = os.path.join(tmp, "mlprism-sweep", f"{step}.sweep-{index}", f"{step}.tar")
        with tarfile.open(archive) as tar:
            rows = {}
            flat("", json.load(tar.extractfile(member)), rows)
        for key, value in rows.items():
            found.setdefault(key, value)
    value = found.get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        failed.append((index, overrides, f"no number for {metric}"))
        continue
    scores.append((float(value), index, overrides))
if not scores:
    raise SystemExit(f"no leg of the sweep passed{' with a number for ' + repr(metric) if metric else ''}: "
                     "nothing is selected")
if metric:
    best = (max if goal == "max" else min)(scores, key=lambda s: (s[0], -s[1] if goal == "max" else s[1]))
else:
    best = scores[0]
with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as out:
    title = f"best {cell(metric)} ({goal})" if metric else "no `select`: the first leg goes on"
    out.write(f"### Sweep: {title}\n\n| leg | overrides | {cell(metric or '-')} |\n|---|---|---|\n")
    rows = [(index, overrides, f"{value:g}") for value, index, overrides in scores] + failed
    for index, overrides, shown in sorted(rows):
        mark = " **best**" if index == best[1] else ""
        out.write(f"| {index}{mark} | {cell(' '.join(overrides))} | {cell(shown)} |\n")
    out.write("\n")
os.makedirs(os.path.join(tmp, "mlprism-out"), exist_ok=True)
for step in spec["steps"]:
    source = os.path.join(tmp, "mlprism-sweep", f"{step}.sweep-{best[1]}", f"{step}.tar")
    if os.path.exists(source):
        shutil.copyfile(source, os.path.join(tmp, "mlprism-out", f"{step}.tar"))
with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
    out.write(f"index={best[1]}\n")
for index, overrides, why in failed:
    print(f"leg {index} is not a candidate ({why}): {' '.join(overrides)}")
print(f"best leg: {best[1]} ({metric} = {best[0]:g}): {' '.join(best[2])}")
PY"""


# -- small helpers --------------------------------------------------------------------------------

def _uses(action: Action) -> str:
    return action.uses


def _join(wd: str, path: str) -> str:
    """A project path as seen from the repository root (cache and filter paths are)."""
    if wd in ("", "."):
        return path
    neg = path.startswith("!")
    core = path[1:] if neg else path
    return ("!" if neg else "") + posixpath.join(wd, core)


def _input_id(dotted: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", dotted)
    if not re.match(r"^[A-Za-z_]", base):
        base = "p_" + base
    base = base[:90]
    name, n = base, 2
    while name.lower() in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name.lower())
    return name


def _gib(memory: str | None) -> float:
    if not memory:
        return 0.0
    m = re.match(r"^([0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$", memory)
    if not m:
        return 0.0
    units = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    return float(m.group(1)) * units[m.group(2)] / 2**30


def _cpu(cpu: str | None) -> float:
    if not cpu:
        return 0.0
    return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def _runs_on(step: Step, p: Pipeline, o: Options) -> str | list[str]:
    def out(labels: str | tuple[str, ...]) -> str | list[str]:
        return labels if isinstance(labels, str) else list(labels)

    if step.resources.gpu:
        return out(o.gpu_runs_on)
    if _cpu(step.resources.cpu) > o.capacity_cpu or _gib(step.resources.memory) > o.capacity_memory_gib:
        if o.large_runs_on is None:
            raise DiagnosticError([Diagnostic(
                "MLP303", f"step `{step.name}` asks for cpu {step.resources.cpu or '-'} and memory "
                f"{step.resources.memory or '-'}, more than one `runs_on` runner offers "
                f"({o.capacity_cpu:g} CPUs, {o.capacity_memory_gib:g} GiB)",
                p.location(f"steps.{step.name}.resources"),
                "set `targets.github-actions.large_runs_on` to the labels of a larger runner, "
                "or raise `targets.github-actions.runner_capacity`")])
        return out(o.large_runs_on)
    return out(o.runs_on)


def _descendants(p: Pipeline, roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(p.downstream(name))
    return seen


def swept_steps(p: Pipeline) -> set[str]:
    """Steps that run once per sweep combination: users of a swept param and all downstream of them."""
    if not p.sweep:
        return set()
    swept = set(p.sweep.params)
    roots = [s.name for s in p.steps if any(_covers(s_param, swept) for s_param in s.params)]
    return _descendants(p, roots)


def _covers(used: str, swept: set[str]) -> bool:
    return any(used == n or used.startswith(n + ".") or n.startswith(used + ".") for n in swept)


#: GitHub: "A matrix will generate a maximum of 256 jobs per workflow run."
MATRIX_JOBS = 256


def sweep_legs(p: Pipeline) -> list[list[str]]:
    """The overrides of each sweep combination, in the sweep's order."""
    if not p.sweep:
        return []
    return [[f"params.{k}={hydra_value(v)}" for k, v in combo.items()] for combo in p.sweep.combinations()]


def _artifact(step: str, swept: bool) -> str:
    return f"{step}.sweep-${{{{ matrix.sweep }}}}" if swept else step


def _timeout(step: Step) -> tuple[int | None, int | None]:
    """(minutes for the run step, minutes for the whole job)."""
    if not step.timeout:
        return None, None
    attempts = step.retries + 1
    run = math.ceil(step.timeout * attempts / 60) + step.retries   # a minute of backoff per retry
    return run, run + _SETUP_MINUTES


# -- the building blocks of a job ----------------------------------------------------------------

class Builder:
    def __init__(self, p: Pipeline, o: Options) -> None:
        self.p = p
        self.o = o
        self.a = o.actions
        self.wd = o.working_directory
        self.swept = swept_steps(p)
        self.legs = sweep_legs(p)
        if self.swept and len(self.legs) > MATRIX_JOBS:
            raise DiagnosticError([Diagnostic(
                "MLP302", f"target `github-actions` cannot express a sweep of {len(self.legs)} combinations: "
                f"a `strategy.matrix` makes at most {MATRIX_JOBS} jobs per workflow run (GitHub's limit), "
                "and GitHub would fail the run at the swept job", p.location("sweep.params"),
                f"sweep at most {MATRIX_JOBS} combinations (split the grid into several specs or overrides), "
                "or compile to the local or kubernetes target, which have no such limit")])
        flat = p.flat_params()
        swept_names = set(p.sweep.params) if p.sweep else set()
        self.dispatch_params = {k: v for k, v in flat.items() if not _covers(k, swept_names)}
        self.one_input_each = len(self.dispatch_params) <= o.max_dispatch_inputs
        taken: set[str] = {"overrides"}
        self.input_ids = {k: _input_id(k, taken) for k in self.dispatch_params} if self.one_input_each else {}
        t = p.triggers
        self.dispatch = bool(t.manual or (p.monitor and p.monitor.on_drift == "retrain")
                             or (t.push is None and not t.schedule))
        self.monitor_files = self._monitor_files()
        # Parts every job has alike are built once per compile and the same object is put in
        # each job (dump_yaml writes a collection it meets again from its first text). Nothing
        # here outlives this Builder, and nothing changes these objects once built.
        self._shared: dict[Any, Any] = {}
        # a swept step always uploads (maybe an empty archive): its leg's archive says that the leg succeeded
        self._with_artifact = {s.name for s in p.steps if s.outputs or s.metrics or s.name in self.swept}
        self._uses = {key: _uses(action) for key, action in self.a.items()}
        self._cache_path = _join(self.wd, ".mlprism/cache")
        if "${{" in self.wd:
            raise DiagnosticError([Diagnostic(
                "MLP303", f"the project directory `{self.wd}` contains `${{{{`, which GitHub would read as an expression",
                p.location("targets.github-actions.working_directory"),
                "rename the directory, or set `targets.github-actions.working_directory`")])

    # files the monitor compares that steps produce: {step: [paths]}
    def _monitor_files(self) -> dict[str, list[str]]:
        if not self.p.monitor:
            return {}
        out: dict[str, list[str]] = {}
        drift = self.p.monitor.drift
        for path in dict.fromkeys((drift.reference, drift.current)):
            norm = posixpath.normpath(path)
            for s in self.p.steps:
                if norm in {posixpath.normpath(x) for x in s.outputs}:
                    out.setdefault(s.name, []).append(path)
        return out

    def _part(self, key: Any, make: Callable[..., Any], *args: Any) -> Any:
        """The one object for `key` in this compile: ``make(*args)`` on first use, never changed afterwards."""
        if key not in self._shared:
            self._shared[key] = make(*args)
        return self._shared[key]

    # -- common steps --
    def checkout(self) -> dict[str, Any]:
        return self._part("checkout", lambda: {"name": "Check out", "uses": _uses(self.a["checkout"]),
                                               "with": {"persist-credentials": False}})

    def setup_python(self) -> dict[str, Any]:
        return self._part("setup-python", self._setup_python)

    def _setup_python(self) -> dict[str, Any]:
        step: dict[str, Any] = {"name": "Set up Python", "uses": _uses(self.a["setup-python"]),
                                "with": {"python-version": self.o.python_version}}
        req = self.p.environment.requirements
        if req:
            dep = _join(self.wd, req)
            if "${{" not in dep:    # an action input would evaluate it; then go without the pip cache
                step["with"]["cache"] = "pip"
                step["with"]["cache-dependency-path"] = dep
        return step

    def install(self) -> dict[str, Any]:
        return self._part("install", self._install)

    def _install(self) -> dict[str, Any]:
        sh = Script()
        req = self.p.environment.requirements
        args = ["-r", req] if req else []
        sh.add(f"python -m pip install {sh.words([*args, self.o.mlprism])}")
        return _run("Install requirements and mlprism", sh)

    def download(self, upstream: str, swept: bool) -> list[dict[str, Any]]:
        return [self._part(("download", upstream, swept), self._download, upstream, swept)]

    def _download(self, upstream: str, swept: bool) -> dict[str, Any]:
        return {"name": f"Download the outputs of {upstream}", "uses": _uses(self.a["download-artifact"]),
                "with": {"name": _artifact(upstream, swept), "path": "${{ runner.temp }}/mlprism-in"}}

    def has_artifact(self, step: Step) -> bool:
        return bool(step.outputs or step.metrics)

    def overrides_step(self, swept: bool) -> dict[str, Any] | None:
        """Writes the run's dynamic overrides (dispatch inputs, sweep leg), NUL-separated, to a file."""
        step: dict[str, Any] | None = self._part(("params", swept), self._overrides_step, swept)
        return step

    def _overrides_step(self, swept: bool) -> dict[str, Any] | None:
        if not (self.dispatch and self.dispatch_params) and not self.p.sweep:
            return None
        sh = Script()
        env: dict[str, str] = {}
        sh.add("overrides=()")
        if self.p.sweep:
            sh.add("overrides+=('~sweep')")
        if self.dispatch:
            if self.one_input_each:
                for dotted, ident in self.input_ids.items():
                    var = f"INPUT_{ident.upper()}"
                    env[var] = f"${{{{ inputs.{ident} }}}}"
                    default = _default_text(self.dispatch_params[dotted])
                    cond = f'[ -n "${var}" ]'
                    if default is not None:
                        cond += f' && [ "${var}" != {sh.word(default)} ]'
                    sh.add(f'if {cond}; then overrides+=({sh.word(f"params.{dotted}=")}"${var}"); fi')
            elif self.dispatch_params:
                env["INPUT_OVERRIDES"] = "${{ inputs.overrides }}"
                sh.add('read -r -a extra <<< "$INPUT_OVERRIDES"', 'overrides+=("${extra[@]}")')
        if swept:
            env["MLPRISM_SWEEP_LEG"] = "${{ matrix.sweep }}"
            sh.add('case "$MLPRISM_SWEEP_LEG" in')
            for i, leg in enumerate(self.legs):
                sh.add(f"  {i}) overrides+=({sh.words(leg)}) ;;")
            sh.add('  *) echo "unknown sweep leg $MLPRISM_SWEEP_LEG" >&2; exit 1 ;;', "esac")
        sh.add('if [ "${#overrides[@]}" -gt 0 ]; then',
               '  printf \'override: %s\\n\' "${overrides[@]}"',
               '  printf \'%s\\0\' "${overrides[@]}" > "$RUNNER_TEMP/mlprism-overrides"',
               "else",
               '  : > "$RUNNER_TEMP/mlprism-overrides"',
               "fi")
        step: dict[str, Any] = {"name": "Params"}
        if env:
            step["env"] = env
        step["run"] = sh.text()
        return step

    # -- one job per step --
    def step_job(self, step: Step) -> dict[str, Any]:
        p = self.p
        name = step.name
        swept = name in self.swept
        job: dict[str, Any] = {"name": name if not swept else f"{name} (sweep ${{{{ matrix.sweep }}}})"}
        needs = list(p.upstream(name))
        if needs:
            job["needs"] = needs
        job["runs-on"] = self.runs_on(step)
        job["permissions"] = self.read_only()
        job.update(self.job_defaults())
        run_minutes, job_minutes = _timeout(step)
        if job_minutes:
            job["timeout-minutes"] = job_minutes
        if swept and any(up in self.swept for up in needs):
            job["if"] = _if_legs(needs, self.swept)
        if swept:
            job["strategy"] = self.matrix()
        steps: list[dict[str, Any]] = [self.checkout(), self.setup_python(), self.install()]
        unpack: list[str] = []
        for up in needs:
            if up in self._with_artifact:
                steps.extend(self.download(up, swept and up in self.swept))
                unpack.append(f'tar -xf "$RUNNER_TEMP/mlprism-in/"{sh_word(up + ".tar")}\n')
        if unpack:
            steps.append({"name": "Unpack the upstream outputs", "run": _script("".join(unpack))})
        params = self.overrides_step(swept)
        dynamic = params is not None
        if params:
            steps.append(params)
        # the scripts' fixed parts, quoted once per compile: [read, fingerprint head, fingerprint tail, run tail]
        head, fp_head, fp_tail, run_tail = self._texts(dynamic)
        word = sh_word(name)
        if step.cache:
            steps.append({"name": "Fingerprint", "id": "fingerprint", "run": _script(fp_head + word + fp_tail)})
            steps.append({"name": "Restore the step cache", "uses": self._uses["cache"],
                          "with": {"path": self._cache_path,
                                   "key": f"mlprism-{p.name}-{name}-${{{{ steps.fingerprint.outputs.fingerprint }}}}"}})
        registers = bool(p.registry and p.registry.register_after == name)
        if registers:
            steps.append(self.registry_restore())
        run: dict[str, Any] = {"name": f"Run {name}"}
        secrets = self._secrets()
        if secrets:
            run["env"] = secrets
        run["run"] = _script(head + Script().words(step_command(p, step)) + run_tail)
        if run_minutes:
            run["timeout-minutes"] = run_minutes
        steps.append(run)
        if step.metrics:
            steps.append(self.metrics_summary(step))
        if registers and not swept:
            steps.append(self.registry_save())
        if name in self.monitor_files and not swept:
            steps.extend(self.monitor_save(name))
        if name in self._with_artifact:
            files = [*step.outputs, *([step.metrics] if step.metrics else [])]
            tar = sh_word(name + ".tar")
            what = f"-- {Script().words(files)}" if files else "--files-from=/dev/null"   # (empty: the leg succeeded)
            steps.append({"name": "Pack the outputs", "run": _script(
                f'mkdir -p "$RUNNER_TEMP/mlprism-out"\ntar -cf "$RUNNER_TEMP/mlprism-out/"{tar} {what}\n')})
            steps.append(self.upload(_artifact(name, swept), f"{name}.tar", "error", "Upload the outputs"))
        steps.extend(self.records(name, swept))
        job["steps"] = steps
        return job

    def _texts(self, dynamic: bool) -> tuple[str, str, str, str]:
        """The fixed parts of a job's fingerprint and run scripts, around the step's name."""
        texts: tuple[str, str, str, str] = self._part(("texts", dynamic), self._script_texts, dynamic)
        return texts

    def _script_texts(self, dynamic: bool) -> tuple[str, str, str, str]:
        p = self.p
        sh = Script()
        head = 'mapfile -d \'\' -t overrides < "$RUNNER_TEMP/mlprism-overrides"\n' if dynamic else ""
        tail = (' "${overrides[@]}"' if dynamic else "")
        rest = "".join(" " + sh.word(x) for x in p.overrides) + tail
        fp_head = head + f'fingerprint="$({sh.words(["mlprism", "fingerprint", p.spec_file])} '
        fp_tail = (f'{rest})"\n'
                   'if [[ ! "$fingerprint" =~ ^[0-9a-f]{16,128}$ ]]; then\n'
                   '  echo "mlprism fingerprint printed an unexpected value" >&2; exit 1\n'
                   "fi\n"
                   'echo "fingerprint=$fingerprint" >> "$GITHUB_OUTPUT"\n')
        return head, fp_head, fp_tail, tail + "\n"

    def runs_on(self, step: Step) -> str | list[str]:
        """`runs-on:` of a step's job (one object per distinct answer)."""
        r = step.resources
        labels: str | list[str] = self._part(("runs-on", bool(r.gpu), r.cpu, r.memory), _runs_on, step, self.p, self.o)
        return labels

    def read_only(self) -> dict[str, str]:
        perms: dict[str, str] = self._part("read-only", lambda: {"contents": "read"})
        return perms

    def matrix(self) -> dict[str, Any]:
        strategy: dict[str, Any] = self._part(
            "matrix", lambda: {"fail-fast": False, "matrix": {"sweep": list(range(len(self.legs)))}})
        return strategy

    def _secrets(self) -> dict[str, str]:
        env: dict[str, str] = self._part(
            "secrets", lambda: {n: f"${{{{ secrets.{n} }}}}" for n in self.p.environment.secrets})
        return env

    def upload(self, name: str, file: str, if_missing: str, title: str, directory: str = "mlprism-out",
               always: bool = False) -> dict[str, Any]:
        step: dict[str, Any] = {"name": title}
        if always:
            step["if"] = "${{ !cancelled() }}"
        step["uses"] = self._uses["upload-artifact"]
        step["with"] = {"name": name, "path": f"${{{{ runner.temp }}}}/{directory}" + (f"/{file}" if file else ""),
                        "if-no-files-found": if_missing, "retention-days": self.o.retention_days}
        return step

    def records(self, step_name: str, swept: bool) -> list[dict[str, Any]]:
        pack = {"name": "Pack the run records", "if": "${{ !cancelled() }}", "run": _script(
            "records=()\n"
            "for f in .mlprism/runs .mlprism/ledger.db* .mlprism/registry.db* .mlprism/registry; do\n"
            '  if [ -e "$f" ]; then records+=("$f"); fi\n'
            "done\n"
            'mkdir -p "$RUNNER_TEMP/mlprism-records"\n'
            'if [ "${#records[@]}" -gt 0 ]; then\n'
            f'  tar -cf "$RUNNER_TEMP/mlprism-records/"{sh_word(step_name + ".tar")} -- "${{records[@]}}"\n'
            "fi\n")}
        name = "records." + _artifact(step_name, swept)
        return [pack, self.upload(name, f"{step_name}.tar", "ignore", "Upload the run records",
                                  "mlprism-records", always=True)]

    def metrics_summary(self, step: Step) -> dict[str, Any]:
        sh = Script()
        sh.add(f"metrics={sh.word(step.metrics or '')}", _METRICS_SUMMARY)
        return {"name": "Metrics to the job summary", "if": "${{ !cancelled() }}", "run": sh.text()}

    # -- state kept between runs --
    def _registry_path(self) -> str:
        """The registry's state (see mlprism.runtime.registry): the SQLite file and the object store."""
        return "\n".join(_join(self.wd, x) for x in (".mlprism/registry.db*", ".mlprism/registry"))

    def _registry_prefix(self) -> str:
        return f"mlprism-{self.p.name}-registry-"

    def registry_restore(self, exact: bool = False) -> dict[str, Any]:
        prefix = self._registry_prefix()
        with_: dict[str, Any] = {"path": self._registry_path()}
        if exact:
            with_["key"] = prefix + "${{ github.run_id }}-${{ github.run_attempt }}"
            with_["fail-on-cache-miss"] = True
        else:
            with_["key"] = prefix + "${{ github.run_id }}-${{ github.run_attempt }}"
            with_["restore-keys"] = prefix
        return {"name": "Restore the model registry", "uses": _uses(sub(self.a["cache"], "restore")),
                "with": with_}

    def registry_save(self) -> dict[str, Any]:
        return {"name": "Save the model registry", "uses": _uses(sub(self.a["cache"], "save")),
                "with": {"path": self._registry_path(),
                         "key": self._registry_prefix() + "${{ github.run_id }}-${{ github.run_attempt }}"}}

    def monitor_archive(self, step_name: str) -> str:
        return f"${{{{ runner.temp }}}}/mlprism-monitor/{step_name}.tar"

    def monitor_key(self, step_name: str) -> str:
        return f"mlprism-{self.p.name}-monitor-{step_name}-"

    def monitor_save(self, step_name: str) -> list[dict[str, Any]]:
        """Keep the files the monitor compares (one tar, at a fixed path) in the cache for the monitor workflow."""
        sh = Script()
        sh.add('mkdir -p "$RUNNER_TEMP/mlprism-monitor"',
               f'tar -cf "$RUNNER_TEMP/mlprism-monitor/"{sh.word(step_name + ".tar")} -- '
               f"{sh.words(self.monitor_files[step_name])}")
        return [_run("Pack the data the monitor compares", sh),
                {"name": "Save the data the monitor compares", "uses": _uses(sub(self.a["cache"], "save")),
                 "with": {"path": self.monitor_archive(step_name),
                          "key": self.monitor_key(step_name) + "${{ github.run_id }}-${{ github.run_attempt }}"}}]

    # -- the select job of a sweep --
    def select_job(self) -> dict[str, Any]:
        p = self.p
        assert p.sweep is not None
        swept = [s for s in p.steps if s.name in self.swept]
        steps: list[dict[str, Any]] = [self.checkout()]
        for s in swept:         # the legs that succeeded uploaded one (see _with_artifact)
            steps.append({"name": f"Download every leg of {s.name}", "uses": _uses(self.a["download-artifact"]),
                          "with": {"pattern": f"{s.name}.sweep-*", "path": "${{ runner.temp }}/mlprism-sweep"}})
        select = p.sweep.select
        metric_files = [[s.name, posixpath.normpath(s.metrics)] for s in reversed(swept) if s.metrics]
        spec = {"metric": select.metric if select else "", "goal": select.goal if select else "max",
                "legs": self.legs, "metrics": metric_files,
                "steps": [s.name for s in swept]}        # each uploads an archive (see _with_artifact)
        sh = Script()
        sh.add(f"sweep={sh.word(json.dumps(spec, ensure_ascii=False, sort_keys=True))}", _SELECT_SCRIPT)
        choose = {"name": "Select the best leg", "id": "select", "run": sh.text()}
        steps.append(choose)
        for s in swept:
            if self.has_artifact(s):
                steps.append(self.upload(s.name, f"{s.name}.tar", "error", f"Publish the best {s.name}"))
        reg = p.registry
        if reg and reg.register_after in self.swept:
            steps.append({"name": "Download the best leg's records", "uses": _uses(self.a["download-artifact"]),
                          "with": {"name": f"records.{reg.register_after}.sweep-${{{{ steps.select.outputs.index }}}}",
                                   "path": "${{ runner.temp }}/mlprism-records"}})
            sh = Script()
            sh.add(f'tar -xf "$RUNNER_TEMP/mlprism-records/"{sh.word(reg.register_after + ".tar")} '
                   "--wildcards '.mlprism/registry.db*' '.mlprism/registry'")
            steps.append(_run("Unpack the best leg's registry", sh))
            steps.append(self.registry_save())
        for name in self.monitor_files:
            if name in self.swept:
                sh = Script()
                sh.add(f'tar -xf "$RUNNER_TEMP/mlprism-out/"{sh.word(name + ".tar")}')
                steps.append(_run(f"Unpack the best {name}", sh))
                steps.extend(self.monitor_save(name))
        job: dict[str, Any] = {
            "name": "select the best of the sweep",
            "needs": sorted(self.swept),
            # also when some legs failed (their gate, say): the script picks among the legs that passed
            "if": "${{ !cancelled() && !contains(needs.*.result, 'skipped') }}",
            "runs-on": _labels(self.o.runs_on),
            "permissions": {"contents": "read"},
            **self.job_defaults(),
        }
        job["steps"] = steps
        return job

    # -- deploy --
    def deploy_job(self, needs: list[str]) -> dict[str, Any]:
        from mlprism_github.deploy import deploy_job

        return deploy_job(self, needs)

    # -- the pipeline workflow --
    def triggers(self) -> dict[str, Any]:
        t = self.p.triggers
        on: dict[str, Any] = {}
        if t.push is not None:
            self.check_filters()
            push: dict[str, Any] = {}
            if t.push.branches:
                push["branches"] = list(t.push.branches)
            if t.push.paths:
                push["paths"] = [_join(self.wd, x) for x in t.push.paths]
            on["push"] = push or None
        if t.schedule:
            on["schedule"] = [{"cron": t.schedule}]
        if self.dispatch:
            inputs: dict[str, Any] = {}
            if self.one_input_each:
                for dotted, ident in self.input_ids.items():
                    inputs[ident] = _input(dotted, self.dispatch_params[dotted])
            elif self.dispatch_params:
                inputs["overrides"] = {
                    "description": "Overrides as on the command line, space-separated "
                                   "(e.g. params.lr=0.1 params.depth=4); empty: the spec's params",
                    "required": False, "type": "string", "default": ""}
            on["workflow_dispatch"] = {"inputs": inputs} if inputs else None
        return on

    def check_filters(self) -> None:
        """`on.push` filters are not expressions and must be valid git ref globs: refuse what GitHub would not take."""
        push = self.p.triggers.push
        assert push is not None
        diags = []
        for kind, values in (("branches", push.branches), ("paths", push.paths)):
            for i, value in enumerate(values):
                bad = None
                if "${{" in value:
                    bad = "contains `${{`, which GitHub would read as an expression"
                elif any(ord(c) < 32 or ord(c) == 127 for c in value):
                    bad = "contains a control character"
                elif kind == "branches" and re.search(r"[\s~^:\\]", value):
                    bad = "is not a valid git branch pattern (no spaces, `~`, `^`, `:` or backslashes)"
                if bad:
                    diags.append(Diagnostic(
                        "MLP303", f"`triggers.push.{kind}` entry `{value}` {bad}",
                        self.p.location(f"triggers.push.{kind}.{i}"),
                        "GitHub Actions cannot filter on it; change the pattern for this target"))
        if diags:
            raise DiagnosticError(diags)

    def pipeline(self) -> dict[str, Any]:
        p, o = self.p, self.o
        group = f"mlprism-{p.name}" + ("-${{ github.ref }}" if o.per_ref else "")
        wf: dict[str, Any] = {
            "name": p.name,
            "on": self.triggers(),
            "permissions": {},
            "concurrency": {"group": group, "cancel-in-progress": o.cancel_in_progress},
            "defaults": {"run": {"shell": "bash"}},
            "jobs": {},
        }
        jobs: dict[str, Any] = wf["jobs"]
        for step in p.steps:
            jobs[step.name] = self.step_job(step)
        if p.sweep and self.swept:
            jobs[SELECT_JOB] = self.select_job()
        if p.deploy and p.deploy.serve:
            needed = {name for name in jobs}
            sinks = sorted(n for n in needed if not any(n in (j.get("needs") or []) for j in jobs.values()))
            jobs[DEPLOY_JOB] = self.deploy_job(sinks)
        return wf

    def job_defaults(self) -> dict[str, Any]:
        """`defaults:` of a job that checks out: run in the spec's directory."""
        if self.wd in ("", "."):
            return {}
        return {"defaults": {"run": {"working-directory": self.wd}}}

    def runs_on_default(self) -> str | list[str]:
        return _labels(self.o.runs_on)

    def monitor(self) -> dict[str, Any]:
        from mlprism_github.monitor import monitor_workflow

        return monitor_workflow(self)


def _if_legs(needs: list[str], swept: set[str]) -> str:
    """`if:` of a swept step's job that needs swept jobs: it runs when some of their legs failed (each leg
    downloads its own leg's archives, so it fails when that leg failed); not when an upstream job that is
    not swept failed, nor when a swept one did not run at all."""
    tests = ["!cancelled()"] + [f"needs.{n}.result == 'success'" if n not in swept else f"needs.{n}.result != 'skipped'"
                                for n in needs]
    return "${{ " + " && ".join(tests) + " }}"


def _labels(value: str | tuple[str, ...]) -> str | list[str]:
    return value if isinstance(value, str) else list(value)


def _run(title: str, sh: Script) -> dict[str, Any]:
    return {"name": title, "run": sh.text()}


def _script(text: str) -> str:
    """A script's text built from fixed lines and :func:`sh_word`-quoted words (as :meth:`Script.text` checks)."""
    assert "${{" not in text, text       # expressions reach a script only through `env:`
    return text


def _default_text(value: Any) -> str | None:
    """The dispatch input's default (the spec's value as an override value), or None if it cannot be shown."""
    try:
        text = hydra_value(value)
    except ValueError:
        return None
    if "${{" in text or "\n" in text or "\r" in text or len(text) > 1000:
        return None
    return text


def _input(dotted: str, value: Any) -> dict[str, Any]:
    default = _default_text(value)
    spec: dict[str, Any] = {
        "description": plain(f"params.{dotted} as on the command line"
                             + ("" if default is not None else "; empty: the spec's value")),
        "required": False,
    }
    if isinstance(value, bool):
        spec["type"] = "boolean"
        spec["default"] = value
    else:
        spec["type"] = "string"
        spec["default"] = default if default is not None else ""
    return spec


# -- serialization -------------------------------------------------------------------------------

_STEP_KEYS = ("name", "id", "if", "uses", "with", "env", "run", "timeout-minutes")
_JOB_KEYS = ("name", "needs", "if", "runs-on", "environment", "permissions", "concurrency", "defaults",
             "timeout-minutes", "strategy", "outputs", "steps")


# keys as built -> the order to write them in (None when already in it), per conventional order
_STEP_ORDERS: dict[tuple[str, ...], tuple[str, ...] | None] = {}
_JOB_ORDERS: dict[tuple[str, ...], tuple[str, ...] | None] = {}


def _ordered(d: dict[str, Any], keys: tuple[str, ...],
             orders: dict[tuple[str, ...], tuple[str, ...] | None]) -> dict[str, Any]:
    """`d` with its keys in the order of `keys` (`d` itself when they are; a workflow has a few key sets)."""
    have = tuple(d)
    try:
        order = orders[have]
    except KeyError:
        extra = [k for k in d if k not in keys]
        if extra:
            raise AssertionError(f"unexpected keys {extra}") from None
        wanted = tuple(k for k in keys if k in d)
        order = orders[have] = None if wanted == have else wanted
    return d if order is None else {k: d[k] for k in order}


def _tidy(wf: dict[str, Any]) -> dict[str, Any]:
    """Jobs and steps with their keys in one conventional order (the input is left as it is).

    What is already in that order is kept as it is (the same objects), so a step shared by
    several jobs stays shared.
    """
    jobs = {}
    changed = False
    for name, job in wf["jobs"].items():
        tidy = _ordered(job, _JOB_KEYS, _JOB_ORDERS)
        steps = tidy["steps"]
        for step in steps:
            if _STEP_ORDERS.get(tuple(step), ()) is not None and _ordered(step, _STEP_KEYS, _STEP_ORDERS) is not step:
                tidy = {**tidy, "steps": [_ordered(s, _STEP_KEYS, _STEP_ORDERS) for s in steps]}
                break
        changed = changed or tidy is not job
        jobs[name] = tidy
    return {**wf, "jobs": jobs} if changed else wf


def serialize(data: dict[str, Any], header: str, o: Options) -> str:
    data = _tidy(data)
    pins = {a.uses: a.version for a in o.actions.values()}
    pins.update({sub(a, s).uses: a.version for a in o.actions.values() for s in ("restore", "save")})
    return dump_yaml(data, header=header, comments=pins)   # `uses: org/action@<sha> # <tag>`


def emit_workflows(p: Pipeline, o: Options) -> dict[str, str]:
    b = Builder(p, o)
    header = (f"Generated by mlprism (target github-actions) from {p.spec_file}: do not edit.\n"
              f"Change the spec and run `mlprism compile {p.spec_file} --target github-actions --out <repo root>`.")
    if p.description:
        header += "\n\n" + p.description
    files = {f".github/workflows/{p.name}.yml": serialize(b.pipeline(), header, o)}
    if p.monitor:
        files[f".github/workflows/{p.name}-monitor.yml"] = serialize(
            b.monitor(), f"Generated by mlprism (target github-actions) from {p.spec_file}: do not edit.\n"
                         f"Drift monitor of `{p.name}`.", o)
    return files
