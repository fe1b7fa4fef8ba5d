"""Read a generated Makefile back: variables, rules, and each recipe as the shell will see it.

A small reader for the subset of GNU Make the `make` target writes; anything
else is an error, so a change in the emitter cannot slip past the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ASSIGN = re.compile(r"^([.A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|\+=|=)\s*(.*)$")
_RULE = re.compile(r"^([^\s:=#][^:=#]*):(?!=)\s*(.*)$")
_VAR = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_]*)\))")


@dataclass
class Rule:
    target: str
    prerequisites: list[str]
    recipe: list[str] = field(default_factory=list)


@dataclass
class Makefile:
    variables: dict[str, str]
    rules: dict[str, Rule]

    def expand(self, text: str, **overrides: str) -> str:
        """Expand `$(VAR)` with the Makefile's (or the given) values and `$$` to `$`."""
        values = {**self.variables, **overrides}

        def sub(m: re.Match[str]) -> str:
            if m.group(1) == "$":
                return "$"
            name = m.group(2)
            if name not in values:
                raise ValueError(f"undefined make variable {name}")
            return values[name]

        leftover = _VAR.sub("", text)
        if "$" in leftover:
            raise ValueError(f"unexpected `$` in {text!r}")
        return _VAR.sub(sub, text)

    @property
    def phony(self) -> list[str]:
        return self.rules[".PHONY"].prerequisites if ".PHONY" in self.rules else []


def _unescape_value(value: str) -> str:
    return value.replace("\\#", "#")


def parse_makefile(text: str) -> Makefile:
    variables: dict[str, str] = {}
    rules: dict[str, Rule] = {}
    current: Rule | None = None
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("\t"):
            if current is None:
                raise ValueError(f"line {number}: recipe line outside a rule")
            current.recipe.append(line[1:])
            continue
        if line.endswith("\\"):
            raise ValueError(f"line {number}: unexpected line continuation")
        if not line.strip() or line.startswith("#"):
            current = None if not line.strip() else current
            continue
        m = _ASSIGN.match(line)
        if m:
            name, op, value = m.groups()
            value = _unescape_value(value)
            if op == "?=":
                variables.setdefault(name, value)
            elif op == "+=":
                variables[name] = (variables.get(name, "") + " " + value).strip()
            else:
                variables[name] = value
            current = None
            continue
        m = _RULE.match(line)
        if m:
            target, prereqs = m.group(1).strip(), m.group(2).split()
            if target in rules and target != ".PHONY":
                raise ValueError(f"line {number}: target `{target}` defined twice")
            current = rules.setdefault(target, Rule(target, []))
            current.prerequisites += prereqs
            continue
        raise ValueError(f"line {number}: cannot read {line!r}")
    return Makefile(variables, rules)
