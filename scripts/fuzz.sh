#!/usr/bin/env bash
# A property-based fuzz run of the client API, driven by its description (docs/openapi.json),
# with schemathesis, through nginx, against a stack of its own: its own ports (18080-18082),
# databases, Redis keys, Kafka topics and consumer group, made afresh, stopped and removed at
# the end, so that it runs beside `make run` and leaves it alone. It fails on any answer that is
#
#   - a server error (HTTP 5xx),
#   - not the JSON envelope {status_code, status_msg} (scripts/fuzz_checks.py),
#   - a refusal (non-zero status_code) that stored events anyway (scripts/fuzz_checks.py).
#
# It also fails on an answer that does not match the document. FUZZ_EXAMPLES (examples per
# operation and phase, 150) and FUZZ_SECONDS (the most the schemathesis run may take, 300)
# bound the run; FUZZ_SEED repeats an earlier run's cases, FUZZ_CHECKS picks the checks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

SCHEMATHESIS_VERSION=4.32.5
PSYCOPG_VERSION=3.3.9
VENV=$ROOT/.run/venv
FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-150}
FUZZ_SECONDS=${FUZZ_SECONDS:-300}
# Beside the three above, schemathesis's own: the answers match the document (their fields,
# status codes and content types), so that the document cannot drift from the code.
FUZZ_CHECKS=${FUZZ_CHECKS:-not_a_server_error,json_envelope,nothing_stored_when_refused,response_schema_conformance,status_code_conformance,content_type_conformance,response_headers_conformance}

ensure_schemathesis() {
    if "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" &&
        "$VENV/bin/python" -c "import psycopg; assert psycopg.__version__ == '$PSYCOPG_VERSION'" 2>/dev/null; then
        return
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION in $VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian's Python makes virtual environments only with python3-venv.
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" "psycopg[binary]==$PSYCOPG_VERSION"
}

# Postgres, Redis and the broker are shared with the other stacks and tests: started (if they
# are not running) as `make test` starts them, and left running.
ensure_services
ensure_nginx
ensure_schemathesis
python3 scripts/openapi.py --check

# Databases, Redis keys and topics of the test run's own: the broker keeps older runs' events,
# which must not be applied to this run's new read models.
own_test_run
own_stack fuzz "${FUZZ_PORT:-18080}"
# The fuzzer sends thousands of requests from one address, as one user.
export RATE_LIMIT=off
BASE=http://127.0.0.1:$PROXY_PORT
log "a new fuzz stack on :$PROXY_PORT, its names under $TEST_RUN_PREFIX"
at_exit 'log "stopping the fuzz stack"; "$ROOT/scripts/stack.sh" down'
"$ROOT/scripts/stack.sh" up

fixtures=$RUN_DIR/fixtures.json
"$VENV/bin/python" scripts/fuzz_checks.py setup "$BASE" "$fixtures"

log "fuzzing $BASE with docs/openapi.json (at most $FUZZ_SECONDS s)"
seed=()
if [ -n "${FUZZ_SEED:-}" ]; then seed=(--seed "$FUZZ_SEED"); fi
# One call at a time: the check that refusals store nothing counts events around each call.
# From $RUN_DIR, where schemathesis keeps the failures it found (`st replay` there repeats
# them).
status=0
cd "$RUN_DIR"
FUZZ_FIXTURES=$fixtures \
    FUZZ_EVENTS_DATABASE_URL=$DATABASE_URL \
    SCHEMATHESIS_HOOKS=$ROOT/scripts/fuzz_checks.py \
    timeout --signal INT --kill-after 10 "$FUZZ_SECONDS" \
    "$VENV/bin/schemathesis" run "$ROOT/docs/openapi.json" \
    --url "$BASE" \
    --workers 1 \
    --max-examples "$FUZZ_EXAMPLES" \
    --checks "$FUZZ_CHECKS" \
    --generation-database none \
    --request-timeout 30 \
    --no-color \
    --output-sanitize false \
    "${seed[@]}" || status=$?
case $status in
0) log "fuzz run passed" ;;
124) die "the fuzz run took more than $FUZZ_SECONDS s: lower FUZZ_EXAMPLES" ;;
*) die "the fuzz run failed (the requests above reproduce each failure; logs in $RUN_DIR)" ;;
esac
