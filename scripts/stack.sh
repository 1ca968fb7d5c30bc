#!/usr/bin/env bash
# The whole stack on this machine: Postgres, Redis, Apache Kafka, the three services and
# nginx in front of them on :8080. Uploaded media is kept in $MEDIA_DIR (.run/media).
#
#   scripts/stack.sh up      start it in the background, return once :8080 answers
#   scripts/stack.sh run     start it and stay in the foreground; Ctrl-C stops it all
#   scripts/stack.sh down    stop what `up` started (Postgres and Redis are left running)
#   scripts/stack.sh verify  check the read models and topics against the events (--help)
#   scripts/stack.sh projector rebuild|waiting|redrive|rebuild-redis   the projector's operator
#                            commands (`make rebuild` is `projector rebuild`)
#
# PROFILE=release|dev picks the cargo profile (release by default). Every variable the
# services read (README) can be set in the environment to override the defaults here.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PROFILE=${PROFILE:-release}
PROXY_PORT=${PROXY_PORT:-8080}
# Where nginx listens: loopback unless told (PROXY_LISTEN=0.0.0.0:8080 for a phone on the
# same network: README, "A phone"). Its port is PROXY_PORT's, which the scripts reach on
# loopback.
PROXY_LISTEN=${PROXY_LISTEN:-127.0.0.1:$PROXY_PORT}
export COMMAND_API_ADDR=${COMMAND_API_ADDR:-127.0.0.1:8081}
export QUERY_API_ADDR=${QUERY_API_ADDR:-127.0.0.1:8082}
# The projector's /metrics and /readyz (each service's are on its own address, never on :8080).
export PROJECTOR_ADDR=${PROJECTOR_ADDR:-127.0.0.1:8083}
export DATABASE_URL=${DATABASE_URL:-$PG_SERVER/douyin$PG_OPTIONS}
export READ_DATABASE_URL=${READ_DATABASE_URL:-$PG_SERVER/douyin_read}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
kafka_settings
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:$PROXY_PORT}
export MEDIA_DIR=${MEDIA_DIR:-$RUN_DIR/media}
export RUST_LOG=${RUST_LOG:-info}
SERVICES=(command-api projector query-api)

target_dir() {
    local dir=${CARGO_TARGET_DIR:-$ROOT/target}
    if [ "$PROFILE" = dev ]; then echo "$dir/debug"; else echo "$dir/$PROFILE"; fi
}

jwt_secret() {
    # A secret of this machine's own, made once, unless one is given.
    if [ -z "${JWT_SECRET:-}" ]; then
        [ -s "$RUN_DIR/jwt-secret" ] || head -c 48 /dev/urandom | base64 | tr -d '\n/+=' >"$RUN_DIR/jwt-secret"
        JWT_SECRET=$(cat "$RUN_DIR/jwt-secret")
    fi
    export JWT_SECRET
}

# A process that died but was not reaped (a zombie: where no init reaps orphans, as in some
# containers) is not running.
alive() { kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }

running() { [ -s "$RUN_DIR/$1.pid" ] && alive "$(cat "$RUN_DIR/$1.pid")"; }

# Whether process $1 is still the one a pid file named $2 was written for: after a restart of
# the machine, the number may belong to anything.
is_ours() { # pid, name
    local program=${2%-2}
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$program"
}

database_of() { local url=${1%%\?*}; echo "${url##*/}"; }

start_service() { # name [binary]
    local name=$1 binary=${2:-$1}
    if running "$name"; then return; fi
    # Each projector a static member of its group, by its name: restarted, it takes its
    # partitions back without a rebalance.
    local instance=()
    if [ "$binary" = projector ]; then instance=(env "PROJECTOR_INSTANCE_ID=$name"); fi
    setsid nohup "${instance[@]}" "$(target_dir)/$binary" >>"$RUN_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
}

# A second command API (its relay competing for the outbox) and a second projector (sharing
# the partitions), for `make faults`: started by `stack.sh extra`, then kept up by `up` until
# `down`.
EXTRAS=(command-api-2 projector-2)
start_extras() {
    [ -e "$RUN_DIR/extras" ] || return 0
    COMMAND_API_ADDR=127.0.0.1:${COMMAND_API_2_PORT:-8091} start_service command-api-2 command-api
    PROJECTOR_ADDR=127.0.0.1:${PROJECTOR_2_PORT:-8093} start_service projector-2 projector
}

render_nginx() {
    local conf=$RUN_DIR/nginx
    mkdir -p "$conf/tmp"
    chmod 1777 "$conf/tmp"
    # Room for the publish form's other fields beside the largest video.
    local publish_max_body=$((${MAX_UPLOAD_BYTES:-104857600} + 65536))
    sed -e "s|\${COMMAND_API_UPSTREAM}|$COMMAND_API_ADDR|" \
        -e "s|\${QUERY_API_UPSTREAM}|$QUERY_API_ADDR|" \
        -e "s|\${PROXY_LISTEN}|$PROXY_LISTEN|" \
        -e "s|\${NGINX_ACCESS_LOG}|$RUN_DIR/nginx-access.log|" \
        -e "s|\${NGINX_ERROR_LOG}|$RUN_DIR/nginx.log|" \
        -e "s|\${PUBLISH_MAX_BODY}|$publish_max_body|" \
        -e "s|\${RATE_LIMIT}|${RATE_LIMIT:-on}|" \
        "$ROOT/deploy/nginx/douyin.conf.template" >"$conf/douyin.conf"
    cat >"$conf/nginx.conf" <<CONF
worker_processes auto;
pid $RUN_DIR/nginx.pid;
# Error lines quote the request line, query (password, token) included; requests log to the
# server's own error log (emerg only, douyin.conf), this one has start-up and shutdown.
error_log $RUN_DIR/nginx.log crit;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $conf/tmp/body;
    proxy_temp_path $conf/tmp/proxy;
    fastcgi_temp_path $conf/tmp/fastcgi;
    uwsgi_temp_path $conf/tmp/uwsgi;
    scgi_temp_path $conf/tmp/scgi;
    include $conf/douyin.conf;
}
CONF
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

up() {
    ensure_services
    ensure_nginx
    # The databases of this stack's settings (a test's stack has its own).
    create_database "$(database_of "$DATABASE_URL")"
    create_database "$(database_of "$READ_DATABASE_URL")"
    jwt_secret
    log "building the services ($PROFILE)"
    (cd "$ROOT" && cargo build --profile "$PROFILE" --bins --quiet)
    for name in "${SERVICES[@]}"; do start_service "$name"; done
    start_extras
    render_nginx
    if ! running nginx; then
        "$(nginx_bin)" -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf"
    fi
    wait_ready
    log "the client API is on http://127.0.0.1:$PROXY_PORT (logs in $RUN_DIR)"
}

wait_ready() {
    local i
    for ((i = 0; i < 600; i++)); do
        if curl -fsS "http://$COMMAND_API_ADDR/readyz" >/dev/null 2>&1 &&
            curl -fsS "http://$QUERY_API_ADDR/readyz" >/dev/null 2>&1 &&
            curl -fsS "http://$PROJECTOR_ADDR/readyz" >/dev/null 2>&1 &&
            curl -fsS -X POST "http://127.0.0.1:$PROXY_PORT/douyin/user/login/" 2>/dev/null | grep -q status_code; then
            return 0
        fi
        for name in "${SERVICES[@]}"; do
            running "$name" || { tail -n 20 "$RUN_DIR/$name.log" >&2; die "$name stopped"; }
        done
        sleep 0.1
    done
    die "the stack did not answer on :$PROXY_PORT within a minute"
}

stop_pid() { # name
    local file=$RUN_DIR/$1.pid pid
    # nginx removes its own pid file as it quits, maybe between a check and a read.
    pid=$(cat "$file" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    if alive "$pid" && is_ours "$pid" "$1"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

down() {
    if running nginx; then "$(nginx_bin)" -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf" -s quit || true; fi
    stop_pid nginx
    for name in "${SERVICES[@]}" "${EXTRAS[@]}"; do stop_pid "$name"; done
    rm -f "$RUN_DIR/extras"
    # The nodes of a cluster together: the last one left alone has no quorum to leave by.
    local node stopping=()
    for node in kafka kafka-2 kafka-3; do
        stop_pid "$node" &
        stopping+=($!)
    done
    wait "${stopping[@]}"
    stop_pid nisshi
}

feed_is_empty() {
    curl -fsS "http://127.0.0.1:$PROXY_PORT/douyin/feed/" | grep -q '"video_list":\[\]'
}

run() {
    up
    if feed_is_empty; then
        log "the feed is empty: loading the demo videos (make seed)"
        "$ROOT/scripts/seed.sh" || log "could not load the demo videos; see above"
    fi
    trap 'echo; log "stopping"; down; exit 0' INT TERM
    log "Ctrl-C stops everything"
    tail -n 0 -F "$RUN_DIR"/{command-api,projector,query-api}.log &
    wait
}

# An operator's command against this stack's stores, with the services' settings: the verify
# tool, or one of the projector's commands (`projector waiting`, `projector redrive`).
operate() { # binary, its arguments...
    local binary=$1
    shift
    (cd "$ROOT" && cargo build --profile "$PROFILE" --bin "$binary" --quiet)
    # In this process: a signal sent to it (make faults kills a rebuild) reaches the command.
    exec "$(target_dir)/$binary" "$@"
}

case "${1:-}" in
up) up ;;
down) down ;;
run) run ;;
extra) touch "$RUN_DIR/extras"; start_extras ;;
verify) shift; operate verify "$@" ;;
projector) shift; operate projector "$@" ;;
*) die "usage: $0 up|run|down|extra|verify [--help]|projector [--help]" ;;
esac
