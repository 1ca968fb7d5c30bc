#!/usr/bin/env bash
# Every test: unit tests, tests against the real Postgres, Redis and broker, and a smoke test
# of a whole stack through nginx, on ports, databases, Redis keys and topics of the run's own.
# Starts the services the tests need first.
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
ensure_services
ensure_nginx
export TEST_POSTGRES_URL=$PG_SERVER
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT

# Every database, Redis key, topic, consumer group and media folder of this run is named under
# one prefix of its own, and removed when the run ends (KEEP_TEST_DATA=1 keeps them).
own_test_run
log "this run's names begin with $TEST_RUN_PREFIX"

log "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
python3 "$ROOT/scripts/rust_version.py"
# The projector serves no client: none of the HTTP services' weight (nor their attack surface).
for crate in actix-web argon2 jsonwebtoken object_store; do
    if cargo tree -p projector -e normal --prefix none | grep -q "^$crate v"; then
        die "the projector links $crate (it belongs in http-api, not infra)"
    fi
done

log "tests"
# A process per test: tests that install a process-wide recorder (metrics, the trace exporter)
# need one to themselves.
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest $NEXTEST_VERSION from crates.io (a few minutes, once)"
    cargo install cargo-nextest --version "$NEXTEST_VERSION" --locked --quiet
fi
cargo nextest run --workspace --no-fail-fast

log "smoke test of a whole stack through nginx"
PROFILE=dev scripts/smoke.sh

log "fuzz"
scripts/fuzz.sh

log "all tests passed in $(($(date +%s) - started)) s"
