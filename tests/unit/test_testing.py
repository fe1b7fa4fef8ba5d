"""mlprism.testing itself: the canonical form, the comparison, the invocation parser, the generator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlprism
import pytest
from mlprism.testing import (
    CanonicalPipeline,
    assert_golden,
    canonical,
    compare,
    cpu_millicores,
    generate_spec,
    memory_bytes,
    param_text,
    parse_invocation,
    step_from_invocation,
)

from tests.conftest import GOLDEN

FULL = GOLDEN / "full" / "pipeline.yaml"


def _write(files: dict[str, str], root: Path) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "pipeline.yaml"


@pytest.mark.parametrize("seed", range(12))
def test_generated_specs_are_valid_and_use_only_what_they_are_given(seed: int, tmp_path: Path) -> None:
    everything = _write(generate_spec(seed, mlprism.FEATURES, everything=True), tmp_path / "all")
    mlprism.load_pipeline(str(everything))
    allowed = {"steps", "params", "retries", "env"}
    spec = _write(generate_spec(seed, allowed), tmp_path / "few")
    used = set(mlprism.features_used(mlprism.load_pipeline(str(spec))))
    assert used <= allowed, used - allowed       # without caching/parallelism: cache false, a chain


def test_generate_spec_is_deterministic() -> None:
    assert generate_spec(3, mlprism.FEATURES) == generate_spec(3, mlprism.FEATURES)
    assert generate_spec(3, mlprism.FEATURES) != generate_spec(4, mlprism.FEATURES)


def test_everything_uses_every_feature(tmp_path: Path) -> None:
    spec = _write(generate_spec(0, mlprism.FEATURES, everything=True), tmp_path)
    assert set(mlprism.features_used(mlprism.load_pipeline(str(spec)))) == set(mlprism.FEATURES)


def test_canonical_of_the_full_golden() -> None:
    c = canonical(mlprism.load_pipeline(str(FULL)))
    train = c.steps["train"]
    assert train.cpu == 2000 and train.memory == 4 * 2**30 and train.gpu == 1
    assert train.retries == 2 and train.timeout == 1800
    assert train.params == {"max_depth": "8", "n_estimators": "200"}      # `_self_` last: the spec wins
    assert train.secrets == ("WAREHOUSE_TOKEN",) and train.env == ("PYTHONHASHSEED",)
    assert train.cache_inputs == ("data/train.csv", "src/train.py")
    assert ("prepare", "train") in c.edges and ("train", "evaluate") in c.edges
    assert c.schedules == (("monitor", "0 * * * *"), ("pipeline", "0 3 * * 1"))


def test_compare_reports_only_declared_features_and_ordering() -> None:
    c = canonical(mlprism.load_pipeline(str(FULL)))
    assert compare(c, c, mlprism.FEATURES) == []
    fewer = dataclasses.replace(c.steps["train"], retries=0, gpu=0)
    other = CanonicalPipeline(steps={**c.steps, "train": fewer}, edges=c.edges - {("train", "evaluate")},
                              schedules=())
    problems = compare(c, other, {"steps", "retries"})
    assert any("retries" in p for p in problems)
    assert not any("gpu" in p for p in problems)                    # gpu not declared: not compared
    assert any("`evaluate` may start before `train`" in p for p in problems)
    assert not any("schedule" in p for p in problems)
    serial = CanonicalPipeline(steps=c.steps, edges=c.edges | {("prepare", "evaluate")})
    assert compare(c, serial, {"steps"}) == []                      # implied by prepare -> train -> evaluate


def test_extra_ordering_matters_only_with_parallelism() -> None:
    c = CanonicalPipeline(steps={}, edges=frozenset({("a", "c"), ("b", "c")}))
    chained = CanonicalPipeline(steps={}, edges=c.edges | {("a", "b")})
    assert compare(c, chained, {"steps"}) == []
    assert compare(c, chained, {"steps", "parallelism"}) == [
        "extra ordering: `b` waits for `a`, which the spec does not ask for"]


def test_parse_invocation() -> None:
    inv = parse_invocation(["/x/bin/mlprism", "run", "p.yaml", "--only", "train", "--lock-timeout", "60",
                            "--no-sweep", "params.lr=0.1", "~monitor"])
    assert (inv.spec, inv.step, inv.overrides) == ("p.yaml", "train", ("params.lr=0.1", "~monitor"))
    assert inv.flags == ("--lock-timeout", "60", "--no-sweep")
    with pytest.raises(ValueError):
        parse_invocation(["mlprism", "compile", "p.yaml"])


def test_step_from_invocation_applies_the_overrides() -> None:
    argv = mlprism.step_command(mlprism.load_pipeline(str(FULL)), "train", "params.max_depth=3")
    step = step_from_invocation(argv, FULL.parent)
    assert step.params["max_depth"] == "3" and "--max-depth 3" in step.run


def test_quantities_and_param_text() -> None:
    assert cpu_millicores("500m") == 500 and cpu_millicores(2) == 2000 and cpu_millicores("1.5") == 1500
    assert memory_bytes("4Gi") == 4 * 2**30 and memory_bytes("512M") == 512 * 10**6 and memory_bytes(None) is None
    assert param_text(200) == "200" and param_text(True) == "true" and param_text([1, 2]) == "[1,2]"


def test_assert_golden_compares_and_updates(tmp_path: Path) -> None:
    assert_golden({"a.txt": "1\n"}, tmp_path / "g", update=True)
    assert_golden({"a.txt": b"1\n"}, tmp_path / "g", update=False)
    with pytest.raises(AssertionError, match=r"a\.txt"):
        assert_golden({"a.txt": "2\n"}, tmp_path / "g", update=False)
    with pytest.raises(AssertionError, match=r"new file not in goldens: b\.txt"):
        assert_golden({"a.txt": "1\n", "b.txt": ""}, tmp_path / "g", update=False)
