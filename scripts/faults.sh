#!/usr/bin/env bash
# Likes under faults (release build, through nginx): while users toggle likes, this kills a
# service with SIGKILL every few seconds (projector, command-api, query-api, the broker, in
# turn) and restarts it, and once kills the stack's Redis and starts it again empty, as a
# Redis without persistence comes back. Then every read must agree with every answered write
# (system-tests' likes-under-faults). The stack gets a Redis of its own for this, on
# FAULT_REDIS_PORT (6390), so stop a running stack first (make down).
#
#   USERS=40 LIKE_SECONDS=40 make faults
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROXY_PORT=${PROXY_PORT:-8080}
BASE=http://127.0.0.1:$PROXY_PORT
USERS=${USERS:-40}
SECONDS_OF_LIKES=${LIKE_SECONDS:-40}
FAULT_REDIS_PORT=${FAULT_REDIS_PORT:-6390}
export REDIS_URL=redis://127.0.0.1:$FAULT_REDIS_PORT
# Forty users toggling as fast as they can are not people on phones.
export RATE_LIMIT=off

if port_open "$PROXY_PORT"; then
    die "a stack already answers on :$PROXY_PORT: stop it first (make down)"
fi
mkdir -p "$RUN_DIR"

start_redis() {
    redis-server --daemonize yes --bind 127.0.0.1 --port "$FAULT_REDIS_PORT" --save "" --appendonly no \
        --pidfile "$RUN_DIR/fault-redis.pid" --logfile "$RUN_DIR/fault-redis.log" --dir "$RUN_DIR"
    wait_for_port "$FAULT_REDIS_PORT" "the stack's Redis" 30
}

likes=
cleanup() {
    if [ -n "$likes" ]; then kill "$likes" 2>/dev/null || true; fi
    "$ROOT/scripts/stack.sh" down
    kill_hard fault-redis
}
kill_hard() { # name
    local pid
    pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 0
    log "killing $1 (SIGKILL)"
    kill -KILL "$pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_redis # the scripts' own tools (redis-server) on a fresh machine
start_redis
"$ROOT/scripts/stack.sh" up
(cd "$ROOT" && cargo build --release --quiet -p system-tests --bin likes-under-faults)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/likes-under-faults" "$BASE" "$USERS" "$SECONDS_OF_LIKES" &
likes=$!

victims=(projector command-api query-api projector nisshi)
round=0
sleep 5
while kill -0 "$likes" 2>/dev/null && [ $round -lt $((SECONDS_OF_LIKES / 6)) ]; do
    victim=${victims[$((round % ${#victims[@]}))]}
    kill_hard "$victim"
    if [ $round -eq 2 ]; then
        kill_hard fault-redis
        sleep 0.5
        log "starting the stack's Redis again, empty"
        start_redis
    fi
    sleep 1
    "$ROOT/scripts/stack.sh" up >/dev/null
    round=$((round + 1))
    sleep 4
done
wait "$likes"
likes=
