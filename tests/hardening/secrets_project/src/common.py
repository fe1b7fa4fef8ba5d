"""What every step does with the secrets: use them, print them, never write them into an output."""

from __future__ import annotations

import json
import os
import sys
import time

SECRETS = ("WAREHOUSE_TOKEN", "API_KEY", "DB_PASSWORD", "SERVICE_KEY")


def secret(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set")
    return value


def shout(step: str) -> None:
    """Print every secret to stdout and stderr, whole and split across two writes."""
    for name in SECRETS:
        value = secret(name)
        print(f"{step}: stdout {name}={value}", flush=True)
        print(f"{step}: stderr {name}={value}", file=sys.stderr, flush=True)
        half = len(value) // 2
        sys.stdout.write(f"{step}: split {name}={value[:half]}")
        sys.stdout.flush()
        time.sleep(0.02)
        sys.stdout.write(f"{value[half:]} (end)\n")
        sys.stdout.flush()
    # as programs print values inside a structure: JSON (a logged payload) and Python's repr (argv, a dict)
    print(f"{step}: as JSON {json.dumps({name: secret(name) for name in SECRETS})}", flush=True)
    print(f"{step}: as repr {[secret(name) for name in SECRETS]!r}", file=sys.stderr, flush=True)
