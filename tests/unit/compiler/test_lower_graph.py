"""Stages 4 and 5 — lower to the IR (JSON round trip) and build the graph (inference, cycles, order)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mlprism._internal.compiler import load_pipeline
from mlprism._internal.graph import Graph, build, infer_edges
from mlprism._internal.lower import missing_inputs
from mlprism._internal.render import render_graph
from mlprism.diagnostics import DiagnosticError
from mlprism.ir import Edge, Pipeline, Step

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden"


def step(name: str, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = (), needs: tuple[str, ...] = ()) -> Step:
    return Step(name=name, run=f"echo {name}", run_template=f"echo {name}", inputs=inputs, outputs=outputs, needs=needs)


# -- lower ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "overrides"), [("full", ()), ("full", ("env=prod",)), ("minimal", ())])
def test_ir_json_round_trip(case: str, overrides: tuple[str, ...]) -> None:
    p = load_pipeline(GOLDEN / case / "pipeline.yaml", overrides).pipeline
    text = p.to_json()
    back = Pipeline.from_json(text)
    assert back == p
    assert back.to_json() == text
    assert back.locations == p.locations          # not compared by ==, but kept


def test_lowering_the_full_spec() -> None:
    p = load_pipeline(GOLDEN / "full" / "pipeline.yaml").pipeline
    train = p.step("train")
    assert train.run == "python src/train.py --n-estimators 200 --max-depth 8"
    assert train.run_template.startswith("python src/train.py --n-estimators ${params.n_estimators}")
    assert train.params == ("max_depth", "n_estimators")
    assert (train.resources.cpu, train.resources.memory, train.resources.gpu) == ("2", "4Gi", 1)
    assert (train.retries, train.timeout) == (2, 1800)
    assert p.registry is not None and p.registry.register_after == "evaluate"
    assert p.config_choices == {"env": "dev"}
    loc = p.location("steps.train.resources.memory")
    assert loc is not None and (loc.line, loc.col) == (30, 33)


def test_missing_inputs_allow_produced_declared_present_and_directories(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("")
    p = Pipeline(name="x", steps=(
        step("a", inputs=("src/a.py", "data/raw.csv"), outputs=("out",)),
        step("b", inputs=("out/part.csv", "./out//x", "nowhere.csv")),
    ), data=())
    diags = missing_inputs(p, tmp_path)
    assert [d.message.split("`")[3] for d in diags] == ["data/raw.csv", "nowhere.csv"]


# -- graph ---------------------------------------------------------------------------------------------

def test_edges_from_files_directories_and_needs() -> None:
    steps = [
        step("prepare", outputs=("data/train.csv", "features")),
        step("train", inputs=("data/train.csv", "features/a.parquet"), outputs=("models/m.pkl",)),
        step("report", inputs=("models",), needs=("prepare",)),
        step("lint", inputs=("src/x.py",)),
    ]
    edges, diags = infer_edges(steps)
    assert not diags
    assert edges == [
        Edge("prepare", "report", "needs", None),
        Edge("prepare", "train", "data", "data/train.csv"),
        Edge("prepare", "train", "data", "features/a.parquet"),   # an input below a directory output
        Edge("train", "report", "data", "models"),                # a directory input over an output
    ]


def test_two_producers_and_self_dependency() -> None:
    _, diags = infer_edges([step("a", outputs=("x",)), step("b", outputs=("./x",)),
                            step("c", inputs=("c/in",), outputs=("c",))])
    assert [d.code for d in diags] == ["MLP221", "MLP231"]


def test_topological_order_is_deterministic_and_follows_the_spec() -> None:
    names = [f"s{i}" for i in range(30)]
    rng = random.Random(1)
    edges = {(a, b) for a, b in (sorted(rng.sample(names, 2), key=names.index) for _ in range(40))}
    edge_list = [Edge(a, b, "needs") for a, b in edges]
    orders = set()
    for seed in range(5):
        shuffled = list(edge_list)
        random.Random(seed).shuffle(shuffled)
        orders.add(tuple(Graph(names, shuffled).topological_order()))
    assert len(orders) == 1
    (order,) = orders
    for a, b in edges:
        assert order.index(a) < order.index(b)
    # ties keep spec order: independent steps come out as written
    assert Graph(["c", "a", "b"], []).topological_order() == ["c", "a", "b"]


@pytest.mark.parametrize(("steps", "shown"), [
    ([step("a", needs=("b",)), step("b", needs=("a",))], "a → b → a"),
    ([step("x"), step("b", inputs=("c.txt",), outputs=("b.txt",)), step("c", inputs=("b.txt",), outputs=("c.txt",))],
     "b → c → b"),
    ([step("a", outputs=("a",), needs=("c",)), step("b", inputs=("a",), outputs=("b",)), step("c", inputs=("b",))],
     "a → b → c → a"),
])
def test_cycles_report_their_path(steps: list[Step], shown: str) -> None:
    with pytest.raises(DiagnosticError) as exc:
        build(Pipeline(name="x", steps=tuple(steps)))
    (d,) = exc.value.diagnostics
    assert d.code == "MLP224" and shown in d.message


def test_layers() -> None:
    p = build(Pipeline(name="x", steps=(step("c", inputs=("a.txt", "b.txt")), step("a", outputs=("a.txt",)),
                                        step("b", outputs=("b.txt",)))))
    assert p.step_names == ("a", "b", "c")
    assert Graph(p.step_names, p.edges).layers() == [["a", "b"], ["c"]]


# -- render --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["text", "mermaid", "dot", "json"])
def test_graph_renderings_are_deterministic(fmt: str) -> None:
    p = load_pipeline(GOLDEN / "full" / "pipeline.yaml").pipeline
    out = render_graph(p, fmt)
    assert out == render_graph(Pipeline.from_json(p.to_json()), fmt)
    assert out.endswith("\n")
    if fmt == "json":
        data = json.loads(out)
        assert data["order"] == ["prepare", "train", "evaluate"]
        assert {(e["source"], e["target"]) for e in data["edges"]} == {("prepare", "train"), ("prepare", "evaluate"),
                                                                       ("train", "evaluate")}
    if fmt == "mermaid":
        assert out.splitlines()[0] == "flowchart TD" and "evaluate{{" in out


PARAM_USES = """
apiVersion: mlprism/v1
name: uses
params: {t: 0.5, lr: 0.1, tag: "lr-${params.lr}", opt: {decay: 0.9, name: adam}, unused: 1}
environment: {variables: {SEED: "${params.opt.name}"}}
steps:
  ev:
    run: echo '{"acc":0.9}' > m.json
    env: {LR: "${params.lr}"}
    metrics: m.json
    gate: [{metric: acc, min: "${params.t}"}]
  pub:
    run: echo $TAG > out/${params.opt.decay}.txt
    env: {TAG: "${params.tag}"}
    outputs: ["out/${params.opt.decay}.txt"]
sweep:
  params: {lr: [0.1, 0.2]}
  select: {metric: acc, goal: max}
"""


def test_a_step_uses_the_params_its_env_paths_gate_and_environment_name(tmp_path: Path) -> None:
    """Step.params is every param the step's definition names, not only its command's: the env, the paths,
    the gate, the environment's variables, and the params a param's value names (`tag` names `lr`). The
    targets scope sweeps by it: `lr` used only through `env:` made the kubernetes target refuse the sweep
    (MLP320, no step uses it) and github-actions run the step once, with the default value."""
    (tmp_path / "pipeline.yaml").write_text(PARAM_USES)
    p = load_pipeline(str(tmp_path / "pipeline.yaml")).pipeline
    assert p.step("ev").params == ("lr", "opt.name", "t")
    assert p.step("pub").params == ("lr", "opt.decay", "opt.name", "tag")
    from mlprism_github.workflow import swept_steps

    assert swept_steps(p) == {"ev", "pub"}
    import mlprism

    files = mlprism.compile_spec(str(tmp_path / "pipeline.yaml"), "kubernetes")     # was MLP320
    workflow = next(v for k, v in files.items() if k.endswith("pipeline.yaml")).decode()
    assert "trial" in workflow, sorted(files)
