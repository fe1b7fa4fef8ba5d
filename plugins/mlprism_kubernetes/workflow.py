"""The pipeline on Argo Workflows: a WorkflowTemplate, CronWorkflows, a WorkflowEventBinding.

Layout of one run (see docs/targets/kubernetes.md):

- every pod mounts the PersistentVolumeClaim ``<name>-workspace`` at /workspace: the
  project's data, the steps' outputs and the runtime's state (cache, ledger, registry);
  the ``workspace`` task first copies the project's code from the pipeline image there;
- each step is one task running ``mlprism run SPEC --only STEP`` (so fingerprints,
  caching, metrics, gates and registration are the runtime's, as on every target), with
  every param and config-group choice passed as an override from a workflow parameter;
- a sweep fans out one ``trial`` DAG per combination (``withItems``), each in its own copy
  of the project under /workspace/.mlprism-sweeps; ``select`` picks the best trial, and the
  swept steps then run in the workspace with the winning params (cache hits: the trial's
  cache entries were handed over), so registration happens once, after the gate;
- with ``artifact_repository.enabled``, step outputs also travel as Argo artifacts and each
  step is memoized by its fingerprint (``mlprism fingerprint``), computed by a task before it.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import mlprism

from .common import (
    HELPER,
    SWEEPS_DIR,
    TMP,
    WORKSPACE,
    Problem,
    argo_name,
    base_env,
    container_security,
    hydra_value,
    k8s_escape,
    labels,
    metadata,
    pod_security,
    resources,
    secret_env,
    selector,
    tmp_mount,
    tmp_volume,
    unique_argo_names,
)
from .options import Settings
from .scripts import SELECT, TRIAL_WORKSPACE

#: Task names of the workflow's own tasks (in the pipeline, trial and monitor DAGs); steps cannot take them.
RESERVED = frozenset({"workspace", "sweep", "select", "done", "drift", "retrain"})
TRIAL = "sweep-trial"                 # the trial index parameter (no param can be named with `-`)
LOCK_TIMEOUT = "86400"                # steps sharing the workspace wait for its lock instead of failing
SELECT_OUT = f"{TMP}/mlprism/select"
DRIFT_OUT = f"{TMP}/mlprism/drift"
INPUTS_DIR = f"{TMP}/inputs"
#: Argo variables the generated objects may contain; any other `{{` is user text Argo would substitute.
_ARGO_VAR = re.compile(r"\{\{(workflow\.(uid|parameters\.[-a-zA-Z0-9_]+)|inputs\.(parameters|artifacts)\.[-a-zA-Z0-9_]+"
                       r"|item\.[-a-zA-Z0-9_]+|tasks\.[-a-zA-Z0-9]+\.outputs\.(result|(parameters|artifacts)\.[-a-zA-Z0-9_]+))\}\}")
#: `mlprism monitor` exits 1 on drift: that becomes the output parameter `drift`, any other failure fails.
_DRIFT_WRAPPER = (f'set -u; mkdir -p {shlex.quote(posixpath.dirname(DRIFT_OUT))}; rc=0; "$@" || rc=$?; '
                  f'if [ "$rc" -eq 0 ]; then echo false > {shlex.quote(DRIFT_OUT)}; '
                  f'elif [ "$rc" -eq 1 ]; then echo true > {shlex.quote(DRIFT_OUT)}; else exit "$rc"; fi')


def cron_name(p: mlprism.Pipeline, suffix: str) -> str:
    """`<name>-<suffix>` within Argo's 52-character limit for CronWorkflow names."""
    name = f"{p.name}-{suffix}"
    if len(name) <= 52:
        return name
    return f"{p.name[:51 - len(suffix)].rstrip('-')}-{suffix}"


class ArgoPipeline:
    """Builds the Argo objects of one pipeline; every method is a pure function of the IR and settings."""

    def __init__(self, p: mlprism.Pipeline, s: Settings) -> None:
        self.p, self.s = p, s
        # Parts every container has alike are one object per compile: dump_yaml writes a collection
        # it meets again from its first text. Nothing changes them once built.
        self._parts: dict[Any, Any] = {}
        self.flat = p.flat_params() if p.params else {}
        _refuse_braces(p, self.flat)
        self.param_names = unique_argo_names(list(self.flat), "params", "params")
        self.group_names = {g: "config-" + argo_name(g) for g in p.config_choices}
        added = {_key(o)[len("params."):] for o in p.overrides if o.startswith("+") and not o.startswith("++")
                 and _key(o).startswith("params.")}
        self.added = {n for n in self.flat if n in added or any(n.startswith(a + ".") for a in added)}
        # Overrides already reflected in the workflow parameters are not passed again.
        self.passthrough = tuple(o for o in p.overrides if not self._represented(o))
        self.cmd_pipeline = replace(p, overrides=self.passthrough)
        self.steps = {st.name: st for st in p.steps}
        for name in self.steps:
            if name in RESERVED or name.startswith("fingerprint-"):
                raise Problem(f"the step name `{name}` is taken by a task of the kubernetes target's workflow",
                              f"steps.{name}", f"rename the step (reserved: {', '.join(sorted(RESERVED))}, "
                                               "fingerprint-…)")
        self.swept, self.trial_steps = self._sweep_scope()
        outputs = sorted({o for st in p.steps for o in st.outputs})
        self.artifact_names = unique_argo_names(outputs, "outputs", "steps") if s.artifacts else {}
        self.producer = {o: st.name for st in p.steps for o in st.outputs}

    # -- overrides ---------------------------------------------------------------------
    def _represented(self, override: str) -> bool:
        key = _key(override)
        if override.startswith("~"):
            return False
        return key == "params" or key.startswith("params.") or key in self.p.config_choices

    def overrides(self, param_source: dict[str, str] | None = None) -> list[str]:
        """Config-group choices and every param, from workflow parameters (or `param_source`)."""
        out = [f"{g}={{{{workflow.parameters.{a}}}}}" for g, a in self.group_names.items()]
        for name, arg in self.param_names.items():
            source = (param_source or {}).get(name) or f"{{{{workflow.parameters.{arg}}}}}"
            out.append(f"{'++' if name in self.added else ''}params.{name}={source}")
        return out

    def step_argv(self, step: mlprism.Step, params: dict[str, str] | None = None, trial: bool = False) -> list[str]:
        extra = ["--lock-timeout", LOCK_TIMEOUT]
        if self.p.sweep is not None:
            extra.append("--no-sweep")        # Argo fans the sweep out itself
        if trial:
            extra.append("--no-register")     # only the selected combination is registered
        if step.retries:
            extra.append(f"steps.{step.name}.retries=0")   # Argo's retryStrategy retries the pod instead
        return mlprism.step_command(self.cmd_pipeline, step, *extra, *self.overrides(params))

    def fingerprint_argv(self, step: mlprism.Step, params: dict[str, str] | None = None) -> list[str]:
        return ["mlprism", "fingerprint", self.p.spec_file, step.name, *self.overrides(params), *self.passthrough]

    # -- sweep -------------------------------------------------------------------------------
    def _sweep_scope(self) -> tuple[dict[str, str], list[str]]:
        sweep = self.p.sweep
        if sweep is None:
            return {}, []
        swept = {name: self.param_names[name] for name in sweep.params if name in self.param_names}
        direct = {st.name for st in self.p.steps
                  if any(n == w or n.startswith(w + ".") or w.startswith(n + ".") for n in st.params for w in sweep.params)}
        if not direct:
            raise Problem(f"no step uses the swept params ({', '.join(sweep.params)})", "sweep.params",
                          "sweep params a step uses through `${params.…}` (its command, env, paths or gate)")
        scope = set(direct)
        for st in self.p.steps:        # topological order: descendants follow
            if any(u in scope for u in self.p.upstream(st.name)):
                scope.add(st.name)
        return swept, [n for n in self.p.step_names if n in scope]

    def combinations(self) -> list[dict[str, str]]:
        assert self.p.sweep is not None
        items = []
        for i, combo in enumerate(self.p.sweep.combinations()):
            item = {TRIAL: str(i)}
            item.update({self.param_names[n]: k8s_escape(hydra_value(v)) for n, v in combo.items()
                         if n in self.param_names})
            items.append(item)
        return items

    # -- objects -------------------------------------------------------------------------
    def workflow_template(self) -> dict[str, Any]:
        p, s = self.p, self.s
        templates = [self._pipeline_dag(), self._workspace_template()]
        main_steps = [n for n in p.step_names if n not in self.trial_steps or self._refit()]
        for name in main_steps:
            st = self.steps[name]
            swept = name in self.trial_steps
            if s.artifacts:
                templates.append(self._fingerprint_template(st, swept))
            templates.append(self._step_template(st, swept))
        if self.trial_steps:
            templates.append(self._trial_dag())
            templates.append(self._trial_workspace_template())
            templates.extend(self._step_template(self.steps[n], True, trial=True) for n in self.trial_steps)
            templates.append(self._trial_done_template())
            if self._refit():
                templates.append(self._select_template())
        if p.monitor is not None:
            templates.append(self._monitor_dag())
            templates.append(self._drift_template())
        spec: dict[str, Any] = {
            "entrypoint": "pipeline",
            "arguments": {"parameters": self._arguments()},
            "serviceAccountName": s.service_account,
            "automountServiceAccountToken": False,
            "executor": {"serviceAccountName": s.executor_account},
            "securityContext": pod_security(s),
            "podMetadata": {"labels": selector(p, "pipeline")},
            "synchronization": {"mutexes": [{"name": f"{p.name}-workspace"}]},
            "podGC": {"strategy": "OnPodSuccess"},
            "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": f"{p.name}-workspace"}},
                        tmp_volume()],
        }
        if s.node_selector:
            spec["nodeSelector"] = dict(s.node_selector)
        if s.tolerations:
            spec["tolerations"] = [dict(t) for t in s.tolerations]
        if s.pull_secrets:
            spec["imagePullSecrets"] = [{"name": n} for n in s.pull_secrets]
        if s.artifacts:
            ref = {"configMap": s.artifact_config_map}
            if s.artifact_key:
                ref["key"] = s.artifact_key
            spec["artifactRepositoryRef"] = ref
        spec["templates"] = templates
        annotations = {"workflows.argoproj.io/version": f">= {s.argo_version}.0"}
        if p.description:
            annotations["workflows.argoproj.io/description"] = p.description
        doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
               "metadata": metadata(p, s, p.name, "pipeline", annotations), "spec": spec}
        check_argo_text(doc)
        return doc

    def _refit(self) -> bool:
        return bool(self.trial_steps) and self.p.sweep is not None and self.p.sweep.select is not None

    def _arguments(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for group, arg in self.group_names.items():
            out.append({"name": arg, "description": f"config group `{group}`: the option to compose with",
                        "valueFrom": {"configMapKeyRef": {"name": f"{self.p.name}-params", "key": arg},
                                      "default": self.p.config_choices[group]}})
        for name, arg in self.param_names.items():
            out.append({"name": arg, "description": f"params.{name}, in Hydra's override syntax ($$ for a $)",
                        "valueFrom": {"configMapKeyRef": {"name": f"{self.p.name}-params", "key": arg},
                                      "default": k8s_escape(hydra_value(self.flat[name]))}})
        return out

    def config_data(self) -> dict[str, str]:
        """The params ConfigMap: one key per workflow parameter (as it goes into the args: Hydra syntax,
        `$` escaped for Kubernetes)."""
        data = {arg: k8s_escape(self.p.config_choices[g]) for g, arg in self.group_names.items()}
        data.update({arg: k8s_escape(hydra_value(self.flat[name])) for name, arg in self.param_names.items()})
        return data

    # -- DAGs -------------------------------------------------------------------------------
    def _deps(self, names: list[str] | tuple[str, ...], fallback: str = "workspace") -> list[str]:
        return list(names) if names else [fallback]

    def _pipeline_dag(self) -> dict[str, Any]:
        p = self.p
        tasks: list[dict[str, Any]] = [{"name": "workspace", "template": "workspace"}]
        trial_set = set(self.trial_steps)
        winner = {n: f"{{{{tasks.select.outputs.parameters.{a}}}}}" for n, a in self.swept.items()}
        for name in p.step_names:
            if name in trial_set:
                continue
            tasks.extend(self._step_tasks(self.steps[name], self._deps(p.upstream(name))))
        if self.trial_steps:
            outside = sorted({u for n in self.trial_steps for u in p.upstream(n)} - trial_set)
            sweep: dict[str, Any] = {"name": "sweep", "template": "trial", "dependencies": self._deps(outside),
                                     "arguments": {"parameters": [{"name": TRIAL, "value": f"{{{{item.{TRIAL}}}}}"}] + [
                                         {"name": a, "value": f"{{{{item.{a}}}}}"} for a in self.swept.values()]},
                                     "withItems": self.combinations()}
            arts = self._external_artifacts()
            if arts:
                sweep["arguments"]["artifacts"] = [{"name": a, "from": f"{{{{tasks.{src}.outputs.artifacts.{a}}}}}"}
                                                   for _path, src, a in arts]
            if self._refit():
                sweep["continueOn"] = {"failed": True}    # a failed trial is not a candidate; the others are
            tasks.append(sweep)
            if self._refit():
                tasks.append({"name": "select", "template": "select", "dependencies": ["sweep"]})
                for name in self.trial_steps:
                    ups = [u for u in p.upstream(name)]
                    deps = ups if any(u in trial_set for u in ups) else [*ups, "select"]
                    tasks.extend(self._step_tasks(self.steps[name], deps, winner))
        return {"name": "pipeline", "dag": {"tasks": tasks}}

    def _step_tasks(self, st: mlprism.Step, deps: list[str], winner: dict[str, str] | None = None) -> list[dict[str, Any]]:
        params = [{"name": a, "value": v} for n, v in (winner or {}).items() for a in [self.swept[n]]]
        arts = [{"name": self.artifact_names[path], "from": f"{{{{tasks.{src}.outputs.artifacts.{self.artifact_names[path]}}}}}"}
                for path, src in self._consumed(st)] if self.s.artifacts else []
        out: list[dict[str, Any]] = []
        task: dict[str, Any] = {"name": st.name, "template": f"step-{st.name}", "dependencies": list(deps)}
        if self.s.artifacts:
            fp: dict[str, Any] = {"name": f"fingerprint-{st.name}", "template": f"fingerprint-{st.name}",
                                  "dependencies": list(deps)}
            if params or arts:
                fp["arguments"] = {k: v for k, v in (("parameters", params), ("artifacts", arts)) if v}
            out.append(fp)
            task["dependencies"] = [*deps, f"fingerprint-{st.name}"]
            params = [*params, {"name": "fingerprint", "value": f"{{{{tasks.fingerprint-{st.name}.outputs.result}}}}"}]
        if params or arts:
            task["arguments"] = {k: v for k, v in (("parameters", params), ("artifacts", arts)) if v}
        out.append(task)
        return out

    def _consumed(self, st: mlprism.Step) -> list[tuple[str, str]]:
        """(path, producing step) of every input another step produces."""
        return [(path, self.producer[path]) for path in st.inputs if path in self.producer and self.producer[path] != st.name]

    def _external_artifacts(self) -> list[tuple[str, str, str]]:
        """(path, producer, artifact) the trials need from steps outside the sweep (artifact mode)."""
        if not self.s.artifacts:
            return []
        trial_set = set(self.trial_steps)
        seen: dict[str, tuple[str, str, str]] = {}
        for name in self.trial_steps:
            for path, src in self._consumed(self.steps[name]):
                if src not in trial_set:
                    seen.setdefault(path, (path, src, self.artifact_names[path]))
        return list(seen.values())

    def _trial_dag(self) -> dict[str, Any]:
        p = self.p
        trial_set = set(self.trial_steps)
        params = [{"name": TRIAL, "value": f"{{{{inputs.parameters.{TRIAL}}}}}"}]
        swept_in = {n: f"{{{{inputs.parameters.{a}}}}}" for n, a in self.swept.items()}
        tasks: list[dict[str, Any]] = []
        ws: dict[str, Any] = {"name": "workspace", "template": "trial-workspace", "arguments": {"parameters": params}}
        arts = self._external_artifacts()
        if arts:
            ws["arguments"]["artifacts"] = [{"name": a, "from": f"{{{{inputs.artifacts.{a}}}}}"} for _p, _s, a in arts]
        tasks.append(ws)
        leaves = []
        for name in self.trial_steps:
            ups = [u for u in p.upstream(name) if u in trial_set]
            tasks.append({"name": name, "template": f"trial-{name}", "dependencies": self._deps(ups),
                          "arguments": {"parameters": [*params, *({"name": self.swept[n], "value": v}
                                                                  for n, v in swept_in.items())]}})
            if not any(d in trial_set for d in p.downstream(name)):
                leaves.append(name)
        tasks.append({"name": "done", "template": "trial-done", "dependencies": leaves,
                      "arguments": {"parameters": params}})
        inputs: dict[str, Any] = {"parameters": [{"name": TRIAL}, *({"name": a} for a in self.swept.values())]}
        if arts:
            inputs["artifacts"] = [{"name": a} for _p, _s, a in arts]
        return {"name": "trial", "inputs": inputs, "dag": {"tasks": tasks}}

    def _monitor_dag(self) -> dict[str, Any]:
        monitor = self.p.monitor
        assert monitor is not None
        tasks: list[dict[str, Any]] = [{"name": "workspace", "template": "workspace"},
                                       {"name": "drift", "template": "drift", "dependencies": ["workspace"]}]
        if monitor.on_drift == "retrain":
            tasks.append({"name": "retrain", "template": "pipeline", "dependencies": ["drift"],
                          "when": "{{tasks.drift.outputs.parameters.drift}} == true"})
        return {"name": "monitor", "dag": {"tasks": tasks}}

    # -- containers -----------------------------------------------------------------------------
    def _container(self, command: list[str], res: Any = None, workdir: str = WORKSPACE, secrets: bool = True,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
        s = self.s
        c: dict[str, Any] = {"image": s.pipeline_image.ref, "imagePullPolicy": s.pipeline_image.pull_policy,
                             "command": [k8s_escape(a) for a in command[:1]],
                             "args": [k8s_escape(a) for a in command[1:]], "workingDir": workdir}
        envs = [*self._part("base-env", base_env),
                *({"name": k, "value": k8s_escape(str(v))} for k, v in (env or {}).items())]
        if secrets:
            envs += self._part("secret-env", lambda: secret_env(self.p, s))
        c["env"] = envs
        if self.p.environment.variables:
            c["envFrom"] = self._part("env-from", lambda: [{"configMapRef": {"name": f"{self.p.name}-env"}}])
        quota = (res.cpu, res.memory, res.gpu) if res is not None else None
        c["resources"] = self._part(("resources", quota), lambda: resources(s, res))
        c["securityContext"] = self._part("security", lambda: container_security(s))
        c["volumeMounts"] = self._part("mounts", lambda: [{"name": "workspace", "mountPath": WORKSPACE}, tmp_mount()])
        return c

    def _part(self, key: Any, make: Callable[[], Any]) -> Any:
        """The one object for `key` in this compile (made on first use; never changed afterwards)."""
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = make()
        return part

    def _workspace_template(self) -> dict[str, Any]:
        script = 'set -eu; rm -rf "$2"; cp -R "$1/." "$3/"'
        cmd = ["sh", "-c", script, "sh", self.s.project_dir, SWEEPS_DIR, WORKSPACE]
        c = self._container(cmd, HELPER, secrets=False)
        c.pop("envFrom", None)
        return {"name": "workspace", "container": c}

    def _io(self, st: mlprism.Step, swept: bool, trial: bool = False, fingerprint: bool = False) -> dict[str, Any]:
        t: dict[str, Any] = {}
        params = [{"name": TRIAL}] if trial else []
        if swept:
            params += [{"name": a} for a in self.swept.values()]
        if self.s.artifacts and not trial and not fingerprint:
            params.append({"name": "fingerprint"})
        inputs: dict[str, Any] = {}
        if params:
            inputs["parameters"] = params
        if self.s.artifacts and not trial:
            arts = [{"name": self.artifact_names[path], "path": posixpath.join(WORKSPACE, path)}
                    for path, _src in self._consumed(st)]
            if arts:
                inputs["artifacts"] = arts
        if inputs:
            t["inputs"] = inputs
        return t

    def _step_template(self, st: mlprism.Step, swept: bool, trial: bool = False) -> dict[str, Any]:
        s = self.s
        params = ({n: f"{{{{inputs.parameters.{a}}}}}" for n, a in self.swept.items()} if swept else None)
        workdir = f"{SWEEPS_DIR}/{{{{workflow.uid}}}}/{{{{inputs.parameters.{TRIAL}}}}}" if trial else WORKSPACE
        t: dict[str, Any] = {"name": f"{'trial' if trial else 'step'}-{st.name}", **self._io(st, swept, trial)}
        if s.artifacts and not trial:
            outs = [{"name": self.artifact_names[o], "path": posixpath.join(WORKSPACE, o)} for o in st.outputs]
            if outs:
                t["outputs"] = {"artifacts": outs}
            t["memoize"] = {"key": f"{st.name}-{{{{inputs.parameters.fingerprint}}}}", "maxAge": s.memoize_max_age,
                            "cache": {"configMap": {"name": f"{self.p.name}-memo"}}}
        if st.retries:
            t["retryStrategy"] = {"limit": st.retries, "retryPolicy": "Always",
                                  "backoff": {"duration": "10s", "factor": 2}}
        if st.timeout:
            t["activeDeadlineSeconds"] = st.timeout
        t["container"] = self._container(self.step_argv(st, params, trial), st.resources, workdir, env=st.env)
        return t

    def _fingerprint_template(self, st: mlprism.Step, swept: bool) -> dict[str, Any]:
        params = ({n: f"{{{{inputs.parameters.{a}}}}}" for n, a in self.swept.items()} if swept else None)
        t: dict[str, Any] = {"name": f"fingerprint-{st.name}", **self._io(st, swept, fingerprint=True)}
        t["container"] = self._container(self.fingerprint_argv(st, params), env=st.env)
        return t

    def _script(self, name: str, source: str, env: dict[str, str], workdir: str = WORKSPACE) -> dict[str, Any]:
        c = self._container(["python3"], HELPER, secrets=False, workdir=workdir, env=env)
        c.pop("envFrom", None)
        c.pop("args")
        c["source"] = source
        return {"name": name, "script": c}

    def _trial_workspace_template(self) -> dict[str, Any]:
        trial_set = set(self.trial_steps)
        external = {a[0]: a for a in self._external_artifacts()}
        copies: list[list[str]] = []
        for name in self.trial_steps:
            for path in self.steps[name].inputs:
                if self.producer.get(path) in trial_set or any(c[0] == path for c in copies):
                    continue
                source = (posixpath.join(INPUTS_DIR, external[path][2]) if path in external
                          else posixpath.join(WORKSPACE, path))
                copies.append([path, source])
        env = {"MLPRISM_TRIAL_DIR": f"{SWEEPS_DIR}/{{{{workflow.uid}}}}/{{{{inputs.parameters.{TRIAL}}}}}",
               "MLPRISM_PROJECT_DIR": self.s.project_dir, "MLPRISM_WORKSPACE": WORKSPACE,
               "MLPRISM_COPY": json.dumps(copies, ensure_ascii=False)}
        t = self._script("trial-workspace", TRIAL_WORKSPACE, env)
        inputs: dict[str, Any] = {"parameters": [{"name": TRIAL}]}
        if external:
            inputs["artifacts"] = [{"name": a, "path": posixpath.join(INPUTS_DIR, a)} for _p, _s, a in external.values()]
        return {"name": t["name"], "inputs": inputs, "script": t["script"]}

    def _trial_done_template(self) -> dict[str, Any]:
        marker = f"{SWEEPS_DIR}/{{{{workflow.uid}}}}/{{{{inputs.parameters.{TRIAL}}}}}/.mlprism-trial-succeeded"
        c = self._container(["touch", marker], HELPER, secrets=False)
        c.pop("envFrom", None)
        return {"name": "trial-done", "inputs": {"parameters": [{"name": TRIAL}]}, "container": c}

    def _select_template(self) -> dict[str, Any]:
        sweep = self.p.sweep
        assert sweep is not None and sweep.select is not None
        metrics = [self.steps[n].metrics for n in self.trial_steps if self.steps[n].metrics]
        config = {"metric": sweep.select.metric, "goal": sweep.select.goal, "metrics": metrics,
                  "marker": ".mlprism-trial-succeeded", "out_dir": SELECT_OUT,
                  "trials": [{"trial": item[TRIAL], "values": {a: item[a] for a in self.swept.values()}}
                             for item in self.combinations()]}
        env = {"MLPRISM_SELECT": json.dumps(config, ensure_ascii=False),
               "MLPRISM_SWEEP_DIR": f"{SWEEPS_DIR}/{{{{workflow.uid}}}}", "MLPRISM_WORKSPACE": WORKSPACE}
        t = self._script("select", SELECT, env)
        t["outputs"] = {"parameters": [{"name": a, "valueFrom": {"path": f"{SELECT_OUT}/{a}"}}
                                       for a in self.swept.values()]}
        return t

    def _drift_template(self) -> dict[str, Any]:
        monitor = self.p.monitor
        assert monitor is not None
        argv = ["mlprism", "monitor", self.p.spec_file, *self.overrides(), *self.passthrough]
        if monitor.on_drift != "retrain":
            return {"name": "drift", "container": self._container(argv)}
        argv.insert(3, "--no-retrain")      # the monitor DAG retrains, in this workflow
        t = {"name": "drift", "outputs": {"parameters": [{"name": "drift", "valueFrom": {"path": DRIFT_OUT}}]},
             "container": self._container(["sh", "-c", _DRIFT_WRAPPER, "sh", *argv])}
        return t

    # -- schedules and events -------------------------------------------------------------
    def cron_workflows(self) -> list[dict[str, Any]]:
        p, s = self.p, self.s
        out = []
        crons = []
        if p.triggers.schedule:
            crons.append(("schedule", p.triggers.schedule, "pipeline", "runs the pipeline on `triggers.schedule`"))
        if p.monitor is not None and p.monitor.schedule:
            crons.append(("monitor", p.monitor.schedule, "monitor",
                          "checks drift on `monitor.schedule`" + ("; on drift it retrains" if p.monitor.on_drift == "retrain" else "")))
        for suffix, schedule, entrypoint, what in crons:
            wf: dict[str, Any] = {"workflowTemplateRef": {"name": p.name}}
            if entrypoint != "pipeline":
                wf["entrypoint"] = entrypoint
            out.append({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
                "metadata": metadata(p, s, cron_name(p, suffix), "pipeline",
                                     {"workflows.argoproj.io/description": f"{p.name}: {what}"}),
                "spec": {"schedules": [schedule], "timezone": s.timezone, "concurrencyPolicy": "Forbid",
                         "startingDeadlineSeconds": 600, "successfulJobsHistoryLimit": 3,
                         "failedJobsHistoryLimit": 3,
                         "workflowMetadata": {"labels": labels(p, entrypoint)},
                         "workflowSpec": wf},
            })
        for doc in out:
            check_argo_text(doc)
        return out

    def event_binding(self, project_path: str) -> dict[str, Any] | None:
        """`triggers.push` as a WorkflowEventBinding: a GitHub push webhook sent to the Argo Server's
        events endpoint submits the WorkflowTemplate when a branch and a path match."""
        push = self.p.triggers.push
        if push is None:
            return None
        prefix = "" if project_path in ("", ".") else project_path.rstrip("/") + "/"
        parts = [f"discriminator == {_expr_string(self.p.name)}",
                 'metadata["x-github-event"] == ["push"]']
        if push.branches:
            refs = " || ".join(f"payload.ref matches {_expr_string(glob_regex('refs/heads/' + b))}" for b in push.branches)
            parts.append(f"({refs})")
        paths = list(push.paths)
        if prefix and not paths:
            paths = ["**"]
        if paths:
            pattern = "|".join(glob_regex(prefix + g)[1:-1] for g in paths)
            rx = _expr_string(f"^({pattern})$")
            parts.append("any(payload.commits, {any(.added, {# matches " + rx + "}) || any(.modified, {# matches "
                         + rx + "}) || any(.removed, {# matches " + rx + "})})")
        doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowEventBinding",
               "metadata": metadata(self.p, self.s, f"{self.p.name}-push", "pipeline",
                                    {"workflows.argoproj.io/description":
                                     f"submits {self.p.name} when GitHub reports a push that matches `triggers.push`"}),
               "spec": {"event": {"selector": " && ".join(parts)},
                        "submit": {"workflowTemplateRef": {"name": self.p.name}}}}
        check_argo_text(doc)
        return doc


def _refuse_braces(p: mlprism.Pipeline, flat: dict[str, Any]) -> None:
    """`{{` in a value that reaches a template would be read by Argo as a variable: say where it is."""
    found: list[tuple[str, Any]] = [("description", p.description)]
    found += [(f"params.{n}", hydra_value(v)) for n, v in flat.items()]
    if p.sweep is not None:
        found += [(f"sweep.params.{n}", hydra_value(list(v))) for n, v in p.sweep.params.items()]
    for st in p.steps:
        found += [(f"steps.{st.name}.env.{k}", v) for k, v in st.env.items()]
        found += [(f"steps.{st.name}.inputs", x) for x in st.inputs]
        found += [(f"steps.{st.name}.outputs", x) for x in st.outputs]
    for key, value in found:
        if "{{" in str(value):
            raise Problem(f"`{key}` contains `{{{{`, which Argo would read as one of its variables", key,
                          "remove `{{` from the value for the kubernetes target")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def _expr_string(text: str) -> str:
    """A string literal of expr-lang (the language of Argo's event selectors)."""
    return json.dumps(text, ensure_ascii=False)


def glob_regex(glob: str) -> str:
    """A GitHub Actions path/branch glob as an anchored regular expression:
    `**` any characters, `*` any but `/`, `?` one character but `/`."""
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
        i += 1
    return "^" + "".join(out) + "$"


def check_argo_text(doc: Any) -> None:
    """Every `{{` in an Argo object must be one of ours: user text with `{{` would be substituted."""
    stack = [doc]
    pop, extend = stack.pop, stack.extend
    seen: set[int] = set()              # parts shared across templates are one object: look at each once
    add = seen.add
    checked: set[str] = set()           # ... and at each text with `{{` once
    while stack:
        v = pop()
        t = type(v)
        if t is dict or t is list or t is tuple:
            if id(v) in seen:
                continue
            add(id(v))
            extend(v.values() if t is dict else v)
        elif t is str and "{{" in v and v not in checked:
            checked.add(v)
            if "{{" not in _ARGO_VAR.sub("", v):
                continue
            first = next(_strings_in_order(doc, lambda text: "{{" in _ARGO_VAR.sub("", text)))
            shown = shlex.quote(first)[:120].replace("\n", "\\n")       # one line
            raise Problem(f"a value contains `{{{{`, which Argo would read as a variable: {shown}",
                          None, "remove `{{` from params, paths, commands and overrides for this target")


def _strings_in_order(doc: Any, match: Callable[[str], bool]) -> Iterator[str]:
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _strings_in_order(v, match)
    elif isinstance(doc, (list, tuple)):
        for v in doc:
            yield from _strings_in_order(v, match)
    elif isinstance(doc, str) and "{{" in doc and match(doc):
        yield doc
