#!/usr/bin/env bash
# Every test: unit tests, tests against the real Postgres, Redis and broker, and a smoke test
# of the whole stack through nginx on :8080. Starts the services the tests need first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

started=$(date +%s)
# A full build of the tests takes a few gigabytes; a full disk shows up as a linker crash.
free_gb=$(df -Pk "$ROOT" | awk 'NR == 2 { print int($4 / 1048576) }')
log "$free_gb GiB free on the disk of $ROOT"
if [ "$free_gb" -lt 4 ]; then
    log "warning: under 4 GiB free; the build may fail with 'No space left on device'"
fi
# Consumer groups of the tests start at once rather than waiting for late members.
ensure_services --group-initial-rebalance-delay 0s
ensure_nginx
export TEST_POSTGRES_URL=$PG_SERVER
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT

log "dropping databases left by earlier test runs"
for db in $(psql_server -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'"); do
    psql_server -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done

log "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
python3 "$ROOT/scripts/rust_version.py"

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

log "smoke test of the stack on :8080"
PROFILE=dev scripts/smoke.sh

log "fuzz"
scripts/fuzz.sh

log "all tests passed in $(($(date +%s) - started)) s"
