"""docs/tutorial.md works when followed: `mlprism init`, run, register, monitor, and every target.

The code the tutorial tells readers to paste (the scikit-learn `train.py` and `evaluate.py`,
the `registry`/`deploy`/`monitor` sections) is taken from the page itself, so the page and this
test cannot drift apart. Serving is exercised by the quickstart's test (same server).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"


def _block_after(text: str, marker: str, lang: str) -> str:
    """The first ```lang fenced block after the line containing ``marker``."""
    at = text.index(marker)
    m = re.compile(rf"^```{lang}\n(.*?)^```$", re.S | re.M).search(text, at)
    assert m, f"no ```{lang} block after {marker!r}"
    return m.group(1)


def _bash_commands(text: str, section: str) -> list[str]:
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```$", body, re.S | re.M):
        commands += [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    return commands


@pytest.fixture(scope="module")
def page() -> str:
    return TUTORIAL.read_text(encoding="utf-8")


def test_tutorial_from_init_to_every_target(tmp_path: Path, cli, page: str) -> None:
    proj = tmp_path / "churn"
    # 1. scaffold: validates and runs as generated
    assert cli("init", str(proj)).code == 0
    r = cli("validate", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and r.out.strip() in page, r.out + r.err          # "ok: churn (3 steps, 3 edges)"
    assert cli("graph", "pipeline.yaml", "--format", "mermaid", cwd=proj).out.startswith("flowchart")

    # 2. run here, cached, with an override the scaffold has
    assert "mlprism run pipeline.yaml params.rows=2000" in _bash_commands(page, "2. Run it here")
    assert cli("run", "pipeline.yaml", cwd=proj).code == 0
    assert "everything up to date" in cli("run", "pipeline.yaml", cwd=proj).out
    r = cli("run", "pipeline.yaml", "params.rows=2000", cwd=proj)
    assert r.code == 0 and "3 ran" in r.out, r.out + r.err
    assert cli("explain", "pipeline.yaml", "train", cwd=proj).code == 0

    # 3. the page's scikit-learn steps and spec sections, pasted as the reader would
    (proj / "src" / "train.py").write_text(_block_after(page, "`src/train.py`:", "python"))
    (proj / "src" / "evaluate.py").write_text(_block_after(page, "`src/evaluate.py`:", "python"))
    spec_part = _block_after(page, "add a registry, a server and a drift monitor", "yaml")
    outputs = re.search(r"^    outputs: .*$", spec_part, re.M)
    inputs = re.search(r"^    inputs: .*$", spec_part, re.M)
    assert outputs and inputs
    spec = (proj / "pipeline.yaml").read_text()
    spec = re.sub(r"^    outputs: \[models/model.json\]$", outputs.group(0), spec, count=1, flags=re.M)
    spec = re.sub(r"^    inputs: \[models/model.json, .*$", inputs.group(0), spec, count=1, flags=re.M)
    assert "model.json" not in spec.split("# More to add")[0], "the scaffold changed: update the tutorial"
    spec += "\n" + spec_part[spec_part.index("registry:"):]
    (proj / "pipeline.yaml").write_text(spec)
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0 and "model `churn` registered: version 1" in r.out, r.out + r.err
    assert cli("models", "promote", "churn", "1", "--stage", "production", cwd=proj).code == 0
    r = cli("monitor", "pipeline.yaml", cwd=proj)
    assert r.code == 0, r.out + r.err                                   # the test split has no drift
    assert (proj / ".mlprism" / "reports" / "drift" / "latest.html").is_file()

    # 4. a mistaken override is a diagnostic, as shown
    r = cli("run", "pipeline.yaml", "params.n_estimators=400", cwd=proj)
    assert r.code == 2 and r.err.strip().splitlines()[0] in page, r.err

    # 5. docker: `monitor` is refused unless left out, as the page says; the files go in the project
    # directory (compose.yaml's `context: .` and bind `source: .` are relative to the file: from docker/
    # they would build and mount docker/, without the spec or the code)
    assert "mlprism compile pipeline.yaml --target docker --out . '~monitor'" in _bash_commands(page, "5. Docker")
    assert "MLP302" in cli("compile", "pipeline.yaml", "--target", "docker", "--out", ".", cwd=proj).err
    r = cli("compile", "pipeline.yaml", "--target", "docker", "--out", ".", "~monitor", cwd=proj)
    assert r.code == 0 and {"Dockerfile", "serve.Dockerfile", "compose.yaml"} <= {p.name for p in proj.iterdir()}
    assert "source: .\n" in (proj / "compose.yaml").read_text()

    # 6. GitHub Actions at the repository root
    r = cli("compile", "pipeline.yaml", "--target", "github-actions", "--out", ".", cwd=proj)
    assert r.code == 0 and sorted(p.name for p in (proj / ".github" / "workflows").iterdir()) == \
        ["churn-monitor.yml", "churn.yml"]
    assert cli("compile", "pipeline.yaml", "--target", "github-actions", "--out", ".", "--check", cwd=proj).code == 0

    # 7. Kubernetes: the overlay the page applies, rendered by kubectl when it is installed
    assert cli("compile", "pipeline.yaml", "--target", "kubernetes", "--out", "deploy/", cwd=proj).code == 0
    assert "kubectl apply -k deploy/overlays/dev" in _bash_commands(page, "7. Kubernetes")
    assert (proj / "deploy" / "overlays" / "dev" / "kustomization.yaml").is_file()
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", "deploy/overlays/dev"], cwd=proj, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert "kind: WorkflowTemplate" in out and "namespace: churn" in out
        assert "{{workflow.parameters.rows}}" in out, "the page submits `-p rows=...`"
