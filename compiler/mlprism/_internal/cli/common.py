"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from typing import Any


def project_arg(p: argparse.ArgumentParser) -> None:
    """`--project/-C DIR`: the project directory (holding .mlprism/), or its spec file."""
    p.add_argument("--project", "-C", default=".", metavar="DIR",
                   help="the project directory (holding .mlprism/), or its spec file; default: here")


def intermixed(parser: argparse.ArgumentParser) -> None:
    """Let overrides come after options (`run SPEC -j 2 params.x=1`): parse this subcommand intermixed."""
    original = parser.parse_known_args
    busy = False

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        nonlocal busy
        if busy:
            return original(args, namespace)
        busy = True
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            busy = False

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
