"""The fixed cost of every command: a command line builds only its command's parsers, the entry
points are scanned once per process, and commands import only what they use.

Timings are measured in benchmarks/ (docs/performance.md); these tests hold the behaviour that
makes them: the same parse as the whole parser, and which modules and scans a process pays for.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlprism._internal import cli
from mlprism._internal.cli import COMMAND_MODULES, COMMANDS, _build, build_parser, parser_for


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_commands_names_every_command_of_its_module() -> None:
    assert _choices(build_parser()) == list(COMMANDS)
    for module in COMMAND_MODULES:
        assert _choices(_build((module,))) == [c for c, m in COMMANDS.items() if m == module], module


def _parsed(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[dict[str, object], str]:
    args, extra = parser.parse_known_args(argv)
    values = {k: v for k, v in vars(args).items() if k != "handler"}
    handler = getattr(args, "handler", None)
    return {**values, "extra": extra}, getattr(handler, "__qualname__", repr(handler))


LINES = [
    ["validate", "pipeline.yaml"],
    ["validate", "pipeline.yaml", "--json", "params.lr=0.1"],
    ["-p", "no:make", "--debug", "compile", "p.yaml", "-t", "local", "-o", "gen"],
    ["-pno:make", "run", "pipeline.yaml", "-q", "-j", "2", "params.x=1", "--only", "a"],
    ["--debug", "status", "pipeline.yaml", "--json"],
    ["-p", "run", "graph", "pipeline.yaml", "-f", "dot"],   # `run` is -p's value here
    ["models", "list", "--json"],
    ["runs", "compare", "a", "b"],
    ["build", "pipeline.yaml", "--image", "serve", "--tag", "v1"],
    ["init", "demo"],
    ["monitor", "pipeline.yaml"],
]


@pytest.mark.parametrize("argv", LINES, ids=[" ".join(a) for a in LINES])
def test_a_command_line_parses_as_with_the_whole_parser(argv: list[str]) -> None:
    assert _parsed(parser_for(argv), argv) == _parsed(build_parser(), argv)


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["bogus"], ["--deb", "validate", "x"], ["--", "run"],
                                  ["-p"], ["--debug"]])
def test_anything_else_gets_the_whole_parser(argv: list[str]) -> None:
    assert parser_for(argv) is build_parser()


def test_version_builds_no_command() -> None:
    assert _choices(parser_for(["--version"])) == []
    assert _choices(parser_for(["validate", "x"])) == [c for c, m in COMMANDS.items() if m == COMMANDS["validate"]]


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["run"], ["-p"], ["models", "bogus"], ["validate", "-t"]])
def test_errors_read_the_same(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    def message(parser: argparse.ArgumentParser) -> str:
        with pytest.raises(cli.UsageError) as exc:
            _, extra = parser.parse_known_args(argv)
            if extra:
                raise cli.UsageError(f"unrecognized arguments: {' '.join(extra)}")
        return str(exc.value)

    assert message(parser_for(argv)) == message(build_parser())


def test_no_command_prints_the_whole_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--debug"]) == 2
    assert capsys.readouterr().out == build_parser().format_help()


PROBE = textwrap.dedent("""
    import importlib.metadata, json, sys
    calls = []
    real = importlib.metadata.entry_points
    def counted(**kw):
        calls.append(kw.get("group"))
        return real(**kw)
    importlib.metadata.entry_points = counted
    from mlprism._internal.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"code": code, "mlprism_scans": calls.count("mlprism"),
                      "modules": sorted(m for m in sys.modules if m.startswith("mlprism"))}))
""")


def _probe(argv: list[str], cwd: Path) -> dict[str, object]:
    import json

    res = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


SPEC = """\
apiVersion: mlprism/v1
name: tiny
steps:
  a:
    run: "echo 1 > out/a.txt"
    outputs: ["out/a.txt"]
"""


def test_a_cold_run_scans_the_entry_points_once_and_imports_no_other_command(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    found = _probe(["run", "pipeline.yaml", "-q", "-j", "1"], tmp_path)
    assert found["code"] == 0
    assert found["mlprism_scans"] == 1      # plugin loading and the IR cache's key share one scan
    modules = set(found["modules"])         # type: ignore[arg-type]
    assert "mlprism._internal.cli.local" in modules
    assert not modules & {"mlprism._internal.cli.docker", "mlprism._internal.cli.lifecycle",
                          "mlprism._internal.cli.project"}


def test_validate_and_version_import_no_other_command(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    found = _probe(["validate", "pipeline.yaml"], tmp_path)
    assert found["code"] == 0 and found["mlprism_scans"] == 1
    assert not {m for m in found["modules"] if m.startswith("mlprism._internal.cli.")} - {  # type: ignore[union-attr]
        "mlprism._internal.cli.core", "mlprism._internal.cli.common"}
    found = _probe(["--version"], tmp_path)
    assert found["code"] == 0 and found["mlprism_scans"] == 0
    assert not [m for m in found["modules"] if m.startswith("mlprism._internal.cli.")]  # type: ignore[union-attr]


def test_plugins_and_the_ir_cache_share_one_scan_and_read_each_metadata_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from mlprism._internal import plugins
    from mlprism.runtime import ircache

    scans: list[object] = []
    reads: list[object] = []
    real_scan = importlib.metadata.entry_points
    real_metadata = importlib.metadata.Distribution.metadata

    def scan(**kw: object) -> object:
        scans.append(kw.get("group"))
        return real_scan(**kw)  # type: ignore[arg-type]

    def metadata(self: importlib.metadata.Distribution) -> object:
        reads.append(self)
        return real_metadata.fget(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(importlib.metadata, "entry_points", scan)
    monkeypatch.setattr(importlib.metadata.Distribution, "metadata", property(metadata))
    monkeypatch.setattr(plugins, "_ENTRY_POINTS", None)
    monkeypatch.setattr(plugins, "_DISTS", {})
    monkeypatch.setattr(ircache, "_ENTRY_POINTS", None)
    loaded = plugins.load_plugins()
    sources = ircache._entry_point_sources()
    plugins.load_plugins()
    assert scans == ["mlprism"]
    eps = plugins._entry_points()
    assert len(reads) == len({id(ep.dist) for ep in eps if ep.dist is not None}) < len(eps)
    assert [s[0][2] for s in sources] == [plugins.dist_info(ep)[1] for ep in eps]  # type: ignore[index]
    assert {(i.name, i.distribution, i.version) for i in loaded.infos} == {
        (ep.name, ep.dist.name, ep.dist.version) for ep in eps}


@pytest.mark.parametrize("argv, code", [(["--version"], 0), (["validate", "no-such-spec.yaml"], 2)])
def test_the_command_exits_with_mains_code_after_freezing_what_it_built(argv: list[str], code: int,
                                                                        tmp_path: Path) -> None:
    """`mlprism` (console_main, also `python -m mlprism`) freezes the heap before the interpreter's last
    collection would walk it; exit handlers still run and the exit code is main()'s."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print('frozen' if gc.get_freeze_count() else 'not frozen'))\n"
             "from mlprism._internal.cli import console_main\n"
             f"sys.argv = ['mlprism', *{argv!r}]\n"
             "console_main()\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert r.stdout.splitlines()[-1] == "frozen"
    m = subprocess.run([sys.executable, "-m", "mlprism", *argv], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert m.returncode == code and ("mlprism " in m.stdout if code == 0 else "MLP102" in m.stderr)
