#!/usr/bin/env bash
# Smoke test of the built wheel, outside the checkout: a new virtual
# environment gets only the wheel (and aiohttp for the test's Socket.IO
# client); .ci/smoke_wheel.py then makes a project with startproject, adds
# docsync as the README's "Add it to your project" says, runs check and
# migrate, starts runserver (daphne) and syncs a document through
# python-socketio.
#
# Usage: .ci/smoke_wheel.sh DIST_DIR
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIST="$(cd "${1:?usage: smoke_wheel.sh DIST_DIR}" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/docsync-smoke.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

wheels=("$DIST"/django_docsync-*.whl)
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "${wheels[@]}" "aiohttp>=3.9,<4"
cd "$WORK"
"$WORK/venv/bin/python" "$ROOT/.ci/smoke_wheel.py" "$ROOT/README.md"
