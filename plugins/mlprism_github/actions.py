"""The one table of third-party actions the generated workflows use, pinned to commit SHAs.

Every ``uses:`` in a generated workflow comes from :data:`PINNED`: a full
40-hex commit SHA, written with the release tag as a trailing comment
(``uses: actions/checkout@3d3c… # v7.0.1``). A SHA is immutable; a tag is not.

How the SHAs were read (``fetch`` of each repository, then)::

    git --git-dir actions+checkout/repo rev-parse 'v7.0.1^{commit}'

Users override an entry in the spec, e.g. to follow a newer release::

    targets:
      github-actions:
        actions:
          checkout: {sha: 0123…(40 hex), version: v7.0.2}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Action:
    repo: str          # owner/name, or owner/name/sub-path (actions/cache/restore)
    sha: str           # full 40-hex commit SHA
    version: str       # the release tag that SHA is, written as a comment

    @property
    def uses(self) -> str:
        return f"{self.repo}@{self.sha}"


#: key -> pinned action. Sub-actions (actions/cache/restore) share their repository's pin.
PINNED: dict[str, Action] = {
    "checkout": Action("actions/checkout", "3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "setup-python": Action("actions/setup-python", "5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "cache": Action("actions/cache", "27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"),
    "upload-artifact": Action("actions/upload-artifact", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "download-artifact": Action("actions/download-artifact", "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
}

SHA_PATTERN = "^[0-9a-f]{40}$"
VERSION_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
REPO_PATTERN = "^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"

#: JSON Schema of `targets.github-actions.actions`.
OVERRIDES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Replace a pinned action: `{sha: <40-hex commit>, version: <tag, for the comment>, repo: owner/name}`.",
    "additionalProperties": False,
    "properties": {
        key: {
            "type": "object",
            "additionalProperties": False,
            "required": ["sha"],
            "properties": {
                "sha": {"type": "string", "pattern": SHA_PATTERN, "description": "A full 40-hex commit SHA."},
                "version": {"type": "string", "pattern": VERSION_PATTERN,
                            "description": "The tag the SHA is (written as a comment)."},
                "repo": {"type": "string", "pattern": REPO_PATTERN,
                         "description": f"A fork to use instead of `{action.repo}`."},
            },
        }
        for key, action in PINNED.items()
    },
}


def resolve(overrides: Mapping[str, Mapping[str, str]] | None) -> dict[str, Action]:
    """The pinned table with the spec's overrides applied (already schema-validated)."""
    table = dict(PINNED)
    for key, over in (overrides or {}).items():
        base = table[key]
        table[key] = Action(repo=over.get("repo", base.repo), sha=over["sha"],
                            version=over.get("version", "pinned"))
    return table


def sub(action: Action, path: str) -> Action:
    """A sub-action of a pinned repository (``actions/cache/restore``), same SHA."""
    return Action(f"{action.repo}/{path}", action.sha, action.version)
