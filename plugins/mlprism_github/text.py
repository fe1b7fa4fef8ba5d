"""Getting user text into a workflow safely.

GitHub evaluates ``${{ … }}`` in almost every string of a workflow (``run:``,
``env:``, ``with:``, ``name:``, input defaults…). User text (params, paths,
overrides, sweep values, descriptions) must reach the job intact and never be
evaluated, so:

- In a ``run:`` script every word is built by :func:`sh_word`: ``shlex.quote``-d,
  and wherever the text holds ``${{`` it is quoted in two pieces, ``'…$'`` and
  ``'{{…'``. Bash joins adjacent quoted pieces into one word; GitHub, which only
  looks for the three characters ``${{`` in a row, sees no expression. So no
  script ever contains ``${{``, and none needs ``env:`` for user text.
- Places that are documentation only (input descriptions) get :func:`plain`.
- Action inputs (``with:``) carry only text mlprism makes (fixed paths under
  ``${{ runner.temp }}``, key prefixes from the pipeline name) plus the
  project directory, which the target refuses if it holds ``${{``.
"""

from __future__ import annotations

import functools
import shlex

from mlprism import Diagnostic, DiagnosticError

_OPEN = "${{"


@functools.lru_cache(maxsize=1 << 16)       # a workflow repeats most words in every job
def sh_word(text: str) -> str:
    """One shell word that bash reads as exactly `text`, with no `${{` in the script text."""
    if "\x00" in text:
        raise DiagnosticError([Diagnostic("MLP303", f"a value for a GitHub Actions script contains a NUL byte: {text!r}",
                                          None, "remove the NUL character")])
    pieces = text.split(_OPEN)
    if len(pieces) == 1:
        return shlex.quote(text)
    parts: list[str] = []
    for i, piece in enumerate(pieces):
        if i > 0:
            piece = "{{" + piece
        if i < len(pieces) - 1:
            piece += "$"
        parts.append(shlex.quote(piece) if piece else "")
    return "".join(parts)


def plain(text: str) -> str:
    """Text for a place that is only documentation (a description): no expression, one line."""
    one_line = " ".join(text.split())
    return one_line.replace(_OPEN, "$ {{")


class Script:
    """The lines of one ``run:`` script. :meth:`word` quotes user text (see :func:`sh_word`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def word(self, text: str) -> str:
        return sh_word(text)

    def words(self, texts: list[str] | tuple[str, ...]) -> str:
        return " ".join(sh_word(t) for t in texts)

    def add(self, *lines: str) -> Script:
        self.lines.extend(lines)
        return self

    def text(self) -> str:
        out = "\n".join(self.lines) + "\n"
        assert _OPEN not in out, out       # expressions reach a script only through `env:`
        return out


