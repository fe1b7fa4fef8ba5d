"""Secret values out of what mlprism writes or prints.

- :func:`mask` with :func:`redaction_values`: step logs, the live display and build output
  (local steps, step containers, ``mlprism build``) show ``***`` for each declared secret's
  value, its forms inside a JSON string and a Python repr (a step that prints its arguments or
  a dict), and each line of a multi-line one (a PEM key, a kubeconfig: output is masked line by
  line), longest first, so a value that holds another is masked whole.
- :func:`label`: messages about a secret (diagnostics, run errors) show ``[secret:NAME]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["MASK", "label", "mask", "redaction_values"]

MASK = "***"
#: Secret values (and lines of one) shorter than this are not looked for in a spec (a "secret" like `test`
#: would match ordinary text); logs still mask them.
MIN_SECRET_LENGTH = 6


def _quoted_forms(value: str) -> set[str]:
    """How a program commonly prints ``value`` quoted: inside a JSON string (ASCII-escaped or not) and in a
    Python repr (``print(sys.argv)``, a logged dict). They differ from the value when it holds a quote, a
    backslash, a control or a non-ASCII character, and masking the value alone would then miss them."""
    import json

    forms = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
             ascii(value)[1:-1]}
    forms.discard(value)
    return forms


def redaction_values(values: Iterable[str]) -> list[str]:
    """What to mask for these secret values, longest first: each value, its JSON and Python-repr forms, and
    each line (of 4+ characters) of a multi-line one."""
    out: set[str] = set()
    for v in values:
        if v:
            out.add(v)
            out.update(_quoted_forms(v))
            out.update(line.strip() for line in v.splitlines() if len(line.strip()) >= 4)
    return sorted(out, key=len, reverse=True)


def mask(text: str, values: Sequence[str]) -> str:
    """``text`` with each of ``values`` (from :func:`redaction_values`) replaced by ``***``."""
    for v in values:
        if v and v in text:
            text = text.replace(v, MASK)
    return text


def secret_needles(secrets: Mapping[str, str], min_line: int = MIN_SECRET_LENGTH) -> list[tuple[str, str]]:
    """(text, name) to look for: each secret's value, and each line (of ``min_line``+ characters) of a
    multi-line one (a PEM key: one of its lines is as secret as the whole), longest first."""
    out: dict[str, str] = {}
    for name, value in secrets.items():
        if not value:
            continue
        out.setdefault(value, name)
        if "\n" in value:
            for line in value.splitlines():
                if len(line.strip()) >= min_line:
                    out.setdefault(line.strip(), name)
    return sorted(out.items(), key=lambda kv: -len(kv[0]))


def label(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every secret's value (name -> value), or a line of one, replaced by ``[secret:NAME]``."""
    for value, name in secret_needles(secrets):
        if value in text:
            text = text.replace(value, f"[secret:{name}]")
    return text
