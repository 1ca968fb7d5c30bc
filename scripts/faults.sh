#!/usr/bin/env bash
# Likes under faults (release build, through nginx): while users toggle likes, this kills a
# service with SIGKILL every few seconds (projector, command-api, query-api, the broker, in
# turn), restarts it, and once wipes the stack's Redis keys as a Redis restart without its
# data would. Then every read must agree with every answered write (system-tests'
# likes-under-faults). Starts the stack unless one answers on :8080; stops what it started.
#
#   USERS=40 LIKE_SECONDS=40 make faults
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROXY_PORT=${PROXY_PORT:-8080}
BASE=http://127.0.0.1:$PROXY_PORT
USERS=${USERS:-40}
SECONDS_OF_LIKES=${LIKE_SECONDS:-40}
REDIS_KEY_PREFIX=${REDIS_KEY_PREFIX:-douyin:}

started_stack=
likes=
cleanup() {
    if [ -n "$likes" ]; then kill "$likes" 2>/dev/null || true; fi
    if [ -n "$started_stack" ]; then "$ROOT/scripts/stack.sh" down; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! port_open "$PROXY_PORT"; then
    "$ROOT/scripts/stack.sh" up
    started_stack=1
fi
(cd "$ROOT" && cargo build --release --quiet -p system-tests --bin likes-under-faults)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/likes-under-faults" "$BASE" "$USERS" "$SECONDS_OF_LIKES" &
likes=$!

kill_hard() { # name
    local pid
    pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 0
    log "killing $1 (SIGKILL)"
    kill -KILL "$pid" 2>/dev/null || true
}

victims=(projector command-api query-api projector nisshi)
round=0
sleep 5
while kill -0 "$likes" 2>/dev/null && [ $round -lt $((SECONDS_OF_LIKES / 6)) ]; do
    victim=${victims[$((round % ${#victims[@]}))]}
    kill_hard "$victim"
    if [ $round -eq 2 ]; then
        log "wiping Redis keys under $REDIS_KEY_PREFIX (as a restart without persistence)"
        # At once, as a restart does: not key by key while the projector rebuilds.
        redis-cli -p "$REDIS_PORT" eval "local keys = redis.call('KEYS', ARGV[1])
            for i = 1, #keys, 5000 do redis.call('UNLINK', unpack(keys, i, math.min(i + 4999, #keys))) end
            return #keys" 0 "$REDIS_KEY_PREFIX*" >/dev/null
    fi
    sleep 1
    "$ROOT/scripts/stack.sh" up >/dev/null
    round=$((round + 1))
    sleep 4
done
wait "$likes"
likes=
