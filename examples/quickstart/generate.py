"""Regenerate examples/quickstart/generated/: the quickstart compiled for every target.

    python examples/quickstart/generate.py          # write
    python examples/quickstart/generate.py --check  # exit 1 when a file is stale (CI)

A target that cannot express a feature the spec uses refuses it with MLP302;
the overrides below remove exactly those sections for that target, as a user
would on the command line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLPRISM = str(Path(sys.executable).parent / "mlprism")

#: target -> the overrides that drop what the target cannot express (see docs/reference/capabilities.md)
TARGETS: dict[str, list[str]] = {
    "local": ["~triggers"],
    "docker": ["~triggers", "~monitor"],
    "github-actions": [],
    "kubernetes": [],
    "make": ["~triggers", "~monitor", "~deploy", "~steps.train.resources"],
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    worst = 0
    for target, overrides in TARGETS.items():
        cmd = [MLPRISM, "compile", "pipeline.yaml", "--target", target, "--out", f"generated/{target}", *overrides]
        if check:
            cmd.append("--check")
        proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        worst = max(worst, proc.returncode)
    return worst


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
