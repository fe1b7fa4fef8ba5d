"""Cleans the raw data; fails `--failures` times first, with the token in its error message."""

import argparse
import pathlib
import sys

from common import secret, shout

ap = argparse.ArgumentParser()
ap.add_argument("--in", dest="src")
ap.add_argument("--failures", type=int)
ap.add_argument("--token")
args = ap.parse_args()
assert args.token == secret("WAREHOUSE_TOKEN"), "the token did not arrive as an argument"
shout("fetch")
counter = pathlib.Path("state/fetch-attempts")
counter.parent.mkdir(exist_ok=True)
attempt = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(attempt))
if attempt <= args.failures:
    print(f"fetch: attempt {attempt} failed", file=sys.stderr)
    raise SystemExit(f"warehouse refused token {args.token} (password {secret('DB_PASSWORD')})")
counter.unlink()
rows = pathlib.Path(args.src).read_text().splitlines()
out = pathlib.Path("data/clean.csv")
out.write_text("\n".join(r for r in rows if r.strip()) + "\n")
