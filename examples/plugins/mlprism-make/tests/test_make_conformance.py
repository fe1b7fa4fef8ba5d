"""The whole cross-target conformance suite of mlprism, for the `make` target.

The decompiler reads the Makefile back: its rules give the steps and the
order between them; each recipe is the command the step runs. What a recipe
leaves to the mlprism runtime (`mlprism run SPEC --only STEP`: params,
environment, secrets, retries, timeouts, cache keys) is read from the runtime's
view of that very command, so a recipe that dropped an override, ran another
spec or another step, or ran in another directory would show up here.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from makefile_parser import parse_makefile
from mlprism.testing import CanonicalPipeline, TargetConformance, step_from_invocation


def decompile_makefile(text: str, spec_dir: Path) -> CanonicalPipeline:
    mk = parse_makefile(text)
    steps = [t for t in mk.phony if t != "all"]
    assert mk.rules["all"].prerequisites == steps, "`all` must run every step"
    canonical_steps = {}
    edges = set()
    for name in steps:
        rule = mk.rules[name]
        for up in rule.prerequisites:
            assert up in steps, f"`{name}` depends on `{up}`, which is not a step"
            edges.add((up, name))
        assert len(rule.recipe) == 1, f"`{name}` must have one recipe line"
        argv = shlex.split(mk.expand(rule.recipe[0]))
        cwd = spec_dir
        if argv[:1] == ["cd"]:
            assert argv[2] == "&&", argv
            cwd = spec_dir / argv[1]
            argv = argv[3:]
        assert "&&" not in argv and ";" not in argv, argv
        assert argv[0] == mk.variables["MLPRISM"], argv
        canonical_steps[name] = step_from_invocation(argv, cwd)
        assert canonical_steps[name].name == name, f"recipe of `{name}` runs another step"
    return CanonicalPipeline(steps=canonical_steps, edges=frozenset(edges), schedules=())


class TestMakeConformance(TargetConformance):
    target_name = "make"

    def decompile(self, files: Mapping[str, bytes]) -> CanonicalPipeline:
        assert set(files) == {"Makefile"}, sorted(files)
        return decompile_makefile(files["Makefile"].decode(), self.spec_dir)
