"""The specs the docker tests compile (each once per session) and where their goldens live."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import mlprism

from tests.conftest import GOLDEN

HERE = Path(__file__).resolve().parent

#: What the docker target cannot express in tests/golden/full (MLP302 without these overrides).
FULL_OVERRIDES = ("~monitor", "~triggers", "~deploy.rollout", "~deploy.serve.autoscale", "~sweep")
FULL_UNSUPPORTED = {"autoscale", "canary", "monitor", "schedule", "push", "manual", "sweeps"}


@dataclass(frozen=True)
class Case:
    name: str
    spec: Path
    overrides: tuple[str, ...]
    expected: Path

    @property
    def files(self) -> dict[str, bytes]:
        return compiled(self.name)


CASES: dict[str, Case] = {
    "minimal": Case("minimal", GOLDEN / "minimal" / "pipeline.yaml", (), GOLDEN / "minimal" / "expected" / "docker"),
    "full": Case("full", GOLDEN / "full" / "pipeline.yaml", FULL_OVERRIDES, GOLDEN / "full" / "expected" / "docker"),
    "options": Case("options", HERE / "cases" / "options" / "pipeline.yaml", (),
                    HERE / "cases" / "options" / "expected"),
}


@cache
def compiled(name: str) -> dict[str, bytes]:
    case = CASES[name]
    return mlprism.compile_spec(str(case.spec), "docker", list(case.overrides))


def dockerfiles() -> list[tuple[str, str, bytes]]:
    """(case, file name, content) of every emitted Dockerfile."""
    return [(name, path, data) for name in CASES for path, data in sorted(compiled(name).items())
            if path.endswith("Dockerfile")]
