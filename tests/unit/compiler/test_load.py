"""Stage 1 — load: YAML with a source map; every mistake a diagnostic."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import pytest
from mlprism._internal.load import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_file, load_text
from mlprism.diagnostics import DiagnosticError, Location

SPEC = """\
apiVersion: mlprism/v1
name: demo
params:
  lr: 1e-3
  depth: 8
  when: 2024-01-01
steps:
  train:
    run: python train.py
    inputs: [data.csv, src/train.py]
    resources: {cpu: 2}
"""


def codes(exc: pytest.ExceptionInfo[DiagnosticError]) -> list[tuple[str, int | None, int | None]]:
    return [(d.code, d.location.line if d.location else None, d.location.col if d.location else None)
            for d in exc.value.diagnostics]


def test_values_and_types() -> None:
    data = load_text(SPEC, "p.yaml").data
    assert data["params"] == {"lr": 0.001, "depth": 8, "when": "2024-01-01"}   # OmegaConf's floats, dates as text
    assert data["steps"]["train"]["inputs"] == ["data.csv", "src/train.py"]


def test_source_map_keys_and_values() -> None:
    smap = load_text(SPEC, "p.yaml").source_map
    assert smap.lookup("name", "key") == Location("p.yaml", 2, 1)
    assert smap.lookup("name") == Location("p.yaml", 2, 7)               # a scalar: its value
    assert smap.lookup("steps.train") == Location("p.yaml", 8, 3)        # a block mapping: its key
    assert smap.lookup("steps.train", "value") == Location("p.yaml", 9, 5)
    assert smap.lookup("steps.train.inputs.1") == Location("p.yaml", 10, 24)
    assert smap.lookup("steps.train.resources") == Location("p.yaml", 11, 16)   # a flow mapping: its value
    assert smap.lookup("steps.train.resources.cpu") == Location("p.yaml", 11, 22)
    assert smap.lookup("nope") is None


def test_keys_that_yaml_11_reads_as_booleans_stay_text() -> None:
    data = load_text("on: 1\nyes: 2\n~: 3\n", "p.yaml").data
    assert data == {"on": 1, "yes": 2, "null": 3}


def test_duplicate_keys_top_level_nested_and_flow() -> None:
    with pytest.raises(DiagnosticError) as exc:
        load_text("a: 1\nb:\n  c: 1\n  c: 2\nd: {e: 1, e: 2}\na: 3\n", "p.yaml")
    assert codes(exc) == [("MLP101", 4, 3), ("MLP101", 5, 11), ("MLP101", 6, 1)]
    assert "first defined at line 3" in exc.value.diagnostics[0].message


def test_merge_keys_explicit_keys_win() -> None:
    data = load_text("base: &b {run: echo a, retries: 1}\nstep:\n  <<: *b\n  retries: 3\n", "p.yaml").data
    assert data["step"] == {"retries": 3, "run": "echo a"}


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system [id]\n", "a: !Ref x\n", "a: !!binary aGk=\n",
                                  "a: !!set {x, y}\n", "a: !custom [1]\n", "? [a, b]\n: 1\n"])
def test_unsupported_tags_and_keys(text: str) -> None:
    with pytest.raises(DiagnosticError) as exc:
        load_text(text, "p.yaml")
    assert {c for c, _, _ in codes(exc)} == {"MLP104"}


@pytest.mark.parametrize(("text", "line", "col"), [
    ("a: 'unclosed\nb: 1\n", 1, 4),         # points at the opening quote
    ("a:\n\tb: 1\n", 2, 1),                 # a tab
    ("a: 1\n---\nb: 2\n", 2, 1),            # two documents
    ("a: *nothing\n", 1, 4),
    ("a: x\x07y\n", 1, 5),                  # a control character
])
def test_syntax_errors_have_positions(text: str, line: int, col: int) -> None:
    with pytest.raises(DiagnosticError) as exc:
        load_text(text, "p.yaml")
    assert codes(exc) == [("MLP100", line, col)]


def test_tab_hint() -> None:
    with pytest.raises(DiagnosticError) as exc:
        load_text("a:\n\tb: 1\n", "p.yaml")
    assert "spaces" in (exc.value.diagnostics[0].hint or "")


def test_empty_and_comment_only() -> None:
    assert load_text("", "p.yaml").data is None
    assert load_text("# nothing\n", "p.yaml").data is None


def test_alias_bomb_refused_quickly_with_bounded_memory() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]   # 10^9 values
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(DiagnosticError) as exc:
        load_text("\n".join(lines) + "\n", "p.yaml")
    elapsed = time.perf_counter() - t0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert codes(exc)[0][0] == "MLP103"
    assert f"{MAX_NODES:,}" in exc.value.diagnostics[0].message
    assert elapsed < 1.0, elapsed
    assert grown_mib < 50, grown_mib


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(DiagnosticError) as exc:
        load_text("a: &a [1, *a]\n", "p.yaml")
    assert codes(exc)[0][0] == "MLP103"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000])
def test_deep_nesting_refused(depth: int) -> None:
    t0 = time.perf_counter()
    with pytest.raises(DiagnosticError) as exc:
        load_text("a: " + "[" * depth + "]" * depth + "\n", "p.yaml")
    assert codes(exc)[0][0] == "MLP103"
    assert time.perf_counter() - t0 < 1.0


def test_nesting_at_the_limit_loads() -> None:
    depth = MAX_DEPTH - 1
    assert load_text("a: " + "[" * depth + "1" + "]" * depth + "\n", "p.yaml").data


def test_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (MAX_BYTES + 10) + "\n")
    with pytest.raises(DiagnosticError) as exc:
        load_file(big, "big.yaml")
    assert codes(exc)[0] == ("MLP103", 1, 1)


def test_non_utf8_position(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_bytes(b"a: 1\nname: d\xe9mo\n")
    with pytest.raises(DiagnosticError) as exc:
        load_file(f, "p.yaml")
    assert codes(exc) == [("MLP102", 2, 8)]


def test_utf8_bom_and_unicode(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_bytes("\ufeffname: démo ✓\n".encode())
    assert load_file(f).data == {"name": "démo ✓"}


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_unreadable_paths(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x.yaml"
    if make == "directory":
        path.mkdir()
    with pytest.raises(DiagnosticError) as exc:
        load_file(path)
    assert codes(exc)[0][0] == "MLP102"


def test_fifo_and_device_are_refused_not_read(tmp_path: Path) -> None:
    """A FIFO blocked the read forever; /dev/zero has st_size 0 and was read until memory ran out."""
    import os

    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(DiagnosticError) as exc:
            load_file(path)
        assert codes(exc)[0][0] == "MLP102"
        assert "not a regular file" in exc.value.diagnostics[0].message


def _shares_nodes(text: str) -> bool:
    """Whether the composed YAML reuses a node (an alias), found by walking the tree."""
    import yaml

    seen: set[int] = set()
    stack = [yaml.compose(text, Loader=yaml.SafeLoader)]
    while stack:
        node = stack.pop()
        if node is None or not isinstance(node, yaml.CollectionNode):
            continue
        if id(node) in seen:
            return True
        seen.add(id(node))
        stack.extend(n for pair in node.value for n in (pair if isinstance(pair, tuple) else (pair,)))
    return False


@pytest.mark.parametrize("text", [
    "a: &x [1]\nb: *x\n", "a: &x [1]\nb: [*x, *x]\n", "a: &x {k: 1}\nb: {c: *x}\n", "a: &x [1]\nb: [2,*x]\n",
    "- &x [1]\n- *x\n", "a: &x\n  - 1\nb:\n  - *x\n", "a: &x [1]\n? *x\n: v\n", "a:   &x [1]\nb:   *x\n",
    "{a: &x [1], b: *x}\n", "a: &a-b_9 [1]\nb: *a-b_9\n", "a: &x [1]\nb: {*x: v}\n", "[&x [1], *x]\n", "a: !!seq &x [1]\nb: *x\n", "a: &x [1]\nb: {? *x : v}\n",
])
def test_every_alias_is_seen_by_the_cheap_text_test(text: str) -> None:
    from mlprism._internal.load import _may_alias

    assert _shares_nodes(text)
    assert _may_alias(text)


def test_commands_with_ampersands_and_globs_skip_the_expansion_check() -> None:
    from mlprism._internal.load import _may_alias

    assert not _may_alias("steps:\n  a: {run: 'make && make install'}\n")
    assert not _may_alias("steps:\n  a: {run: 'rm -f *.tmp'}\n")
    assert not _may_alias("a: {run: 'make && rm -f *.tmp && cp x *y', v: &anchor 1}\n")
    loaded = load_text("steps:\n  a: {run: 'make && rm -f *.tmp', outputs: ['*.o']}\n", "p.yaml")
    assert loaded.data["steps"]["a"]["run"] == "make && rm -f *.tmp"


@pytest.mark.parametrize(("error", "words"), [(PermissionError(13, "Permission denied"), "chmod a+r"),
                                              (OSError(5, "Input/output error"), "check the file")])
def test_an_unreadable_spec_has_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError,
                                       words: str) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("apiVersion: mlprism/v1\n")

    def refuse(*args: object, **kwargs: object) -> None:     # (root reads a chmod 000 file anyway)
        raise error

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DiagnosticError) as exc:
        load_file(spec, "pipeline.yaml")
    (diag,) = exc.value.diagnostics
    assert diag.code == "MLP102" and diag.hint and words in diag.hint


@pytest.mark.parametrize("name", ["pipeline.yml", "spec.txt", "pipeline.YAML"])
@pytest.mark.parametrize("command", [["validate"], ["compile", "-t", "local"], ["run"], ["graph"], ["status"]])
def test_a_spec_not_named_yaml_is_refused_at_the_file_with_a_hint(name: str, command: list[str], tmp_path: Path,
                                                                   cli) -> None:
    (tmp_path / name).write_text("- a list, which is refused only after the name\n")
    res = cli(*command, name, cwd=tmp_path)
    assert res.code == 2 and "Traceback" not in res.err
    stem = name.rsplit(".", 1)[0]
    assert res.err.startswith(f"{name}: error[MLP102]: a spec file name must end in `.yaml`\n"), res.err
    assert f"hint: rename it to `{stem}.yaml`" in res.err
    res = cli("validate", name, "--json", cwd=tmp_path)
    [diag] = json.loads(res.out)["diagnostics"]
    assert diag["location"] == {"file": name} and diag["hint"]


@pytest.mark.parametrize("command", [["validate"], ["graph"], ["compile", "-t", "local"], ["run"], ["status"]])
@pytest.mark.parametrize("what", ["missing", "folder"])
def test_a_spec_path_that_is_no_file_is_the_same_mlp102_at_the_path_for_every_command(
        command: list[str], what: str, tmp_path: Path, cli) -> None:
    """`run` and `status` said MLP002 "no spec file" without a location; the others MLP102 without one."""
    if what == "folder":
        (tmp_path / "specs.yaml").mkdir()
    res = cli(*command, "specs.yaml", cwd=tmp_path)
    assert res.code == 2 and "Traceback" not in res.err
    message = "no such file: specs.yaml" if what == "missing" else "specs.yaml is a directory, not a spec file"
    assert res.err.startswith(f"specs.yaml: error[MLP102]: {message}\n"), res.err
    assert "hint: " in res.err
