#!/usr/bin/env bash
# Measurements against the stack as `make run` starts it (release build, through nginx).
# Starts the stack unless one already answers on :8080, and stops what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BASE=http://127.0.0.1:${PROXY_PORT:-8080}
TRIES=${TRIES:-100}

if ! port_open "${PROXY_PORT:-8080}"; then
    "$ROOT/scripts/stack.sh" up
    trap '"$ROOT/scripts/stack.sh" down' EXIT
fi
(cd "$ROOT" && cargo build --release --quiet -p system-tests --bin write-to-read)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/write-to-read" "$BASE" "$TRIES"
