# Shared by the scripts: where things are, and how to install what is missing (Debian).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
mkdir -p "$RUN_DIR"

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
# Trust auth accepts any password; a fresh install gets this one (see ensure_postgres).
PG_SERVER=${PG_SERVER:-postgres://postgres:postgres@$PG_HOST:$PG_PORT}
# Query options of the services' database URLs: no TLS to a Postgres on this machine (sqlx
# would negotiate it, for nothing but CPU: a third of a like's); the driver's default
# elsewhere.
case $PG_SERVER in
*@127.0.0.1:* | *@localhost:* | *@\[::1\]:*) PG_OPTIONS="?sslmode=disable" ;;
*) PG_OPTIONS="" ;;
esac
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_PORT=${KAFKA_PORT:-9092}
NEXTEST_VERSION=0.9.151

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=
apt_install() {
    command -v apt-get >/dev/null || die "cannot install $* here: no apt-get; install it yourself"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing $* (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # port, what, seconds
    local i
    for ((i = 0; i < ${3:-60} * 10; i++)); do
        port_open "$1" && return 0
        sleep 0.1
    done
    die "$2 did not open port $1"
}

wait_for_postgres() { # seconds
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null && return 0
        sleep 0.1
    done
    die "PostgreSQL did not accept connections on port $PG_PORT within $1 s"
}

psql_server() { psql "$PG_SERVER/postgres" -v ON_ERROR_STOP=1 -qtA "$@"; }

create_database() {
    if [ -z "$(psql_server -c "SELECT 1 FROM pg_database WHERE datname = '$1'")" ]; then
        psql_server -c "CREATE DATABASE \"$1\"" >/dev/null
    fi
}

ensure_build_tools() {
    command -v cargo >/dev/null || die "cargo is needed: install Rust from https://rustup.rs"
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v make >/dev/null || missing+=(make)
    command -v curl >/dev/null || missing+=(curl ca-certificates)
    command -v psql >/dev/null || missing+=(postgresql-client)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    # The smoke test and the demo seeding read JSON replies with Python.
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

ensure_postgres() {
    if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then start_postgres; fi
    # Debian's cluster (installed just now, or with the machine) asks for a password over TCP
    # that its superuser does not have: give it the one our default URL carries. A server of
    # the user's own (PG_SERVER set) is left as it is.
    if [ "$PG_SERVER" = "postgres://postgres:postgres@$PG_HOST:$PG_PORT" ] &&
        ! psql_server -c 'SELECT 1' >/dev/null 2>&1 && command -v runuser >/dev/null; then
        log "giving PostgreSQL's superuser the password of the default URL"
        as_root runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'"
    fi
}

start_postgres() {
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    # Where a service manager runs, installing the package has already started the cluster.
    if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
        log "starting PostgreSQL $version"
        # A cluster still starting up (replaying its WAL after an unclean stop, say) is not
        # ready yet but is running: pg_ctlcluster then exits 2 ("already running"), and waiting
        # is the right answer, not failing.
        if ! as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
            pg_lsclusters -h "$version" main 2>/dev/null | grep -qw online ||
                die "PostgreSQL $version would not start (see /var/log/postgresql/)"
        fi
    fi
    wait_for_postgres 120
}

ensure_redis() {
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return; fi
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting Redis"
    # An append-only file, so that the read models survive a restart of the machine. Memory
    # bounded, and never evicting: an evicted key is a read model silently wrong, while a full
    # Redis refuses writes, which the projector takes for Redis away (Postgres keeps up, Redis
    # is rebuilt once it takes writes). REDIS_MAXMEMORY holds two generations (a rebuild
    # makes one beside the live one): docs/operations.md says how to size it.
    as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --appendonly yes \
        --maxmemory "${REDIS_MAXMEMORY:-2gb}" --maxmemory-policy noeviction \
        --logfile "$RUN_DIR/redis.log" --dir "$RUN_DIR"
    wait_for_port "$REDIS_PORT" Redis 30
}

ensure_nginx() {
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
}

CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin

# Apache Kafka, the local broker: its jars (deploy/kafka/pom.xml pins them) are fetched from
# Maven Central once into KAFKA_CACHE, shared by every checkout on the machine.
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")
KAFKA_CACHE=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/douyin/kafka-$KAFKA_VERSION}

ensure_kafka_jars() {
    if [ -e "$KAFKA_CACHE/.complete" ]; then return; fi
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_install maven
    log "fetching Apache Kafka $KAFKA_VERSION's jars from Maven Central into $KAFKA_CACHE (once)"
    rm -rf "$KAFKA_CACHE.partial"
    mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_CACHE.partial" >&2
    touch "$KAFKA_CACHE.partial/.complete"
    rm -rf "$KAFKA_CACHE"
    mv "$KAFKA_CACHE.partial" "$KAFKA_CACHE"
}

# The JVM running Kafka's classes: KAFKA_HEAP (1g) bounds the broker's heap.
kafka_java() {
    KAFKA_JAVA=(java -Xms256m -Xmx"${KAFKA_HEAP:-1g}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties"
        -cp "$KAFKA_CACHE/*")
}

# KAFKA_NODES (1 by default, or 3): Apache Kafka nodes, each a broker and a controller. Node
# i's broker answers on KAFKA_PORT + 100 * (i - 1) (9092, 9192, 9292) and its controller on
# the port after; with 3, internal topics are replicated 3 times (2 in sync at least) and the
# services make theirs so too (KAFKA_REPLICATION_FACTOR, kafka_settings).
KAFKA_NODES=${KAFKA_NODES:-1}
case $KAFKA_NODES in 1 | 3) ;; *) die "KAFKA_NODES is 1 or 3, not $KAFKA_NODES" ;; esac
kafka_port() { echo $((KAFKA_PORT + 100 * ($1 - 1))); }
# Each node's name: its pid file, log and data folder.
kafka_node() { if [ "$1" = 1 ]; then echo kafka; else echo "kafka-$1"; fi; }
# The bootstrap list of every node.
kafka_brokers() {
    local i list=()
    for i in $(seq "$KAFKA_NODES"); do list+=("127.0.0.1:$(kafka_port "$i")"); done
    (IFS=,; echo "${list[*]}")
}
# What the services read to use the local broker(s).
kafka_settings() {
    export KAFKA_BROKERS=${KAFKA_BROKERS:-$(kafka_brokers)}
    if [ "$KAFKA_NODES" = 3 ]; then export KAFKA_REPLICATION_FACTOR=${KAFKA_REPLICATION_FACTOR:-3}; fi
}

# Where the local broker keeps its data, logs and pid files: $RUN_DIR unless KAFKA_RUN_DIR
# says (`make bench` runs its stack in a folder of its own, and uses the broker found or
# started before it moved there).
kafka_run_dir() { echo "${KAFKA_RUN_DIR:-$RUN_DIR}"; }

# A Kafka-protocol broker on $KAFKA_PORT: Apache Kafka in KRaft mode, KAFKA_NODES nodes (see
# above), their data in kafka_run_dir's kafka-<port> (one node) or kafka-cluster-<port>
# (three), their logs in its <node>.log. Reuses any broker that already answers on the port (Redpanda,
# another Kafka); starts again a node of the cluster that stopped.
ensure_broker() {
    # The broker this project ran before Apache Kafka, left running by an older checkout.
    if [ -s "$RUN_DIR/nisshi.pid" ] && kill -0 "$(cat "$RUN_DIR/nisshi.pid")" 2>/dev/null; then
        log "stopping the nisshi broker an earlier version left running"
        kill -TERM "$(cat "$RUN_DIR/nisshi.pid")" 2>/dev/null || true
        for _ in $(seq 50); do port_open "$KAFKA_PORT" || break; sleep 0.2; done
        rm -f "$RUN_DIR/nisshi.pid"
    fi
    if [ "$KAFKA_NODES" = 1 ] && port_open "$KAFKA_PORT"; then return; fi
    local i name
    for i in $(seq "$KAFKA_NODES"); do
        name=$(kafka_node "$i")
        if ! port_open "$(kafka_port "$i")"; then
            start_kafka_node "$i"
        elif [ "$KAFKA_NODES" != 1 ] &&
            ! { [ -s "$(kafka_run_dir)/$name.pid" ] && kill -0 "$(cat "$(kafka_run_dir)/$name.pid")" 2>/dev/null; }; then
            die "something other than this cluster's $name answers on :$(kafka_port "$i"): stop it first (make down)"
        fi
    done
    for i in $(seq "$KAFKA_NODES"); do
        wait_for_port "$(kafka_port "$i")" "Apache Kafka ($(kafka_node "$i"))" 120
    done
}

start_kafka_node() { # i
    ensure_kafka_jars
    kafka_java
    local i=$1 name dir port controller voters=() j
    name=$(kafka_node "$i")
    port=$(kafka_port "$i")
    controller=$((port + 1))
    # Named by port: a store formatted for other ports keeps their controller's address.
    if [ "$KAFKA_NODES" = 1 ]; then
        dir=$(kafka_run_dir)/kafka-$port
    else
        dir=$(kafka_run_dir)/kafka-cluster-$KAFKA_PORT/$name
    fi
    mkdir -p "$dir/data"
    for j in $(seq "$KAFKA_NODES"); do voters+=("$j@127.0.0.1:$(($(kafka_port "$j") + 1))"); done
    {
        cat "$ROOT/deploy/kafka/server.properties"
        echo "node.id=$i"
        echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
        echo "log.dirs=$dir/data"
        if [ "$KAFKA_NODES" = 1 ]; then
            echo "controller.quorum.bootstrap.servers=127.0.0.1:$controller"
        else
            # A fixed quorum of the three, and internal topics on all three, two in sync.
            echo "controller.quorum.voters=$(IFS=,; echo "${voters[*]}")"
            echo "offsets.topic.replication.factor=3"
            echo "transaction.state.log.replication.factor=3"
            echo "transaction.state.log.min.isr=2"
            echo "share.coordinator.state.topic.replication.factor=3"
            echo "share.coordinator.state.topic.min.isr=2"
            echo "min.insync.replicas=2"
            echo "default.replication.factor=3"
            # A broker killed is out of the cluster, and its partitions led elsewhere, after
            # 3 s rather than 9: publishing waits that long.
            echo "broker.session.timeout.ms=3000"
            echo "broker.heartbeat.interval.ms=500"
        fi
    } >"$dir/server.properties"
    if [ ! -s "$dir/data/meta.properties" ]; then
        log "formatting Apache Kafka's storage in $dir/data"
        local cluster_file=$(dirname "$dir")/cluster-id
        if [ "$KAFKA_NODES" = 1 ]; then cluster_file=$dir/cluster-id; fi
        if [ ! -s "$cluster_file" ]; then
            local cluster
            cluster=$("${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)
            [ -n "$cluster" ] || die "Kafka's storage tool made no cluster id (is Java 17 there?)"
            echo "$cluster" >"$cluster_file"
        fi
        local standalone=()
        if [ "$KAFKA_NODES" = 1 ]; then standalone=(--standalone); fi
        "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format "${standalone[@]}" -t "$(cat "$cluster_file")" \
            -c "$dir/server.properties" >>"$(kafka_run_dir)/$name.log" 2>&1 ||
            die "formatting Kafka's storage failed: see $(kafka_run_dir)/$name.log"
    fi
    log "starting Apache Kafka $KAFKA_VERSION ($name) on :$port"
    setsid nohup "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties" >>"$(kafka_run_dir)/$name.log" 2>&1 &
    echo $! >"$(kafka_run_dir)/$name.pid"
}

# Covers of uploaded videos are taken with ffmpeg; the demo videos are made with it.
ensure_ffmpeg() {
    command -v ffmpeg >/dev/null || apt_install ffmpeg
}

ensure_services() {
    ensure_build_tools
    ensure_ffmpeg
    ensure_postgres
    ensure_redis
    ensure_broker
}

# Steps run when the script exits, however it exits, last registered first.
AT_EXIT=()
run_at_exit() {
    local i
    for ((i = ${#AT_EXIT[@]} - 1; i >= 0; i--)); do eval "${AT_EXIT[i]}" || true; done
}
at_exit() { AT_EXIT+=("$*"); trap run_at_exit EXIT; }

# A test run's own names: every database, Redis key, topic, consumer group and media folder a
# test makes begins with $TEST_RUN_PREFIX (infra::testing::run_prefix), so that the run
# removes exactly what it made when it ends, and nothing of `make run`'s (douyin, douyin_read,
# douyin:*, douyin.*) or of another run's. A script run inside `make test` shares its run; one
# run alone makes its own. Runs stopped before their removal are removed by the next one.
own_test_run() {
    if [ -n "${TEST_RUN_PREFIX:-}" ]; then return; fi
    TEST_RUN_PREFIX=$(printf 'test-%04x%04x-' $RANDOM $RANDOM)
    export TEST_RUN_PREFIX
    local runs=$ROOT/.run/test-runs run
    mkdir -p "$runs"
    # Whole or not at all: a run starting meanwhile must not read an empty record as stopped.
    echo $$ >"$runs/.$TEST_RUN_PREFIX" && mv "$runs/.$TEST_RUN_PREFIX" "$runs/$TEST_RUN_PREFIX"
    local stopped=("$TEST_RUN_PREFIX")
    for run in "$runs"/*; do
        [ "$(basename "$run")" = "$TEST_RUN_PREFIX" ] && continue
        if ! kill -0 "$(cat "$run" 2>/dev/null)" 2>/dev/null; then
            stopped+=("$(basename "$run")")
            # Its stacks first, now: they hold ports this run's stacks may want.
            stop_stacks_of "$(basename "$run")"
        fi
    done
    # Folders of finished runs' stacks (their logs, kept for one run).
    local dir prefix
    for dir in "$ROOT"/.run/test-*/; do
        [ -d "$dir" ] || continue
        prefix=$(basename "$dir" | sed -n 's/^\(test-[0-9a-f]\{8\}-\).*/\1/p')
        [ -n "$prefix" ] || continue
        kill -0 "$(cat "$runs/$prefix" 2>/dev/null)" 2>/dev/null || stop_stacks_of "$prefix"
    done
    at_exit remove_test_runs "${stopped[@]}"
}

# Stops the stacks a test run started (own_stack) and removes their folders; with `keep-logs`,
# their logs stay (until the next run) for a failure to be looked into.
stop_stacks_of() { # prefix [keep-logs]
    local dir
    for dir in "$ROOT/.run/$1"*/; do
        [ -d "$dir" ] || continue
        RUN_DIR=${dir%/} "$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
        if [ "${2:-}" = keep-logs ]; then rm -rf "$dir/media"; else rm -rf "$dir"; fi
    done
}

remove_test_runs() { # prefix...
    local prefix
    if [ -n "${KEEP_TEST_DATA:-}" ]; then
        log "keeping what test run $1 made (KEEP_TEST_DATA is set)"
        return
    fi
    # Built with the tests (and with any stack): a run stopped before either made nothing yet,
    # and is left on record for the next run, rather than building everything to remove it.
    local remover=${CARGO_TARGET_DIR:-$ROOT/target}/debug/remove-test-run
    if [ ! -x "$remover" ]; then
        log "no test was built yet: nothing of test run $1 to remove"
        return
    fi
    stop_stacks_of "$1" keep-logs
    for prefix in "$@"; do
        # The servers the tests used, whatever a stack's settings said.
        TEST_POSTGRES_URL=$PG_SERVER REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
            KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT "$remover" "$prefix" &&
            rm -f "$ROOT/.run/test-runs/$prefix"
    done
}

# A whole stack of a test's own beside `make run`'s (scripts/stack.sh, with these settings):
# four ports from $2 (nginx, command API, query API, projector), a folder of its own for logs
# and media (.run/<run prefix><name>), and databases, Redis keys, topics and a consumer group
# named under the test run (own_test_run). Refuses ports in use: it never stops a stack it
# did not start.
own_stack() { # name, first of four ports
    local own=$TEST_RUN_PREFIX$1 port
    for port in "$2" $(($2 + 1)) $(($2 + 2)) $(($2 + 3)); do
        if port_open "$port"; then die "port $port is taken: another stack runs there"; fi
    done
    export RUN_DIR=$ROOT/.run/$own
    mkdir -p "$RUN_DIR"
    export PROFILE=${PROFILE:-dev}
    export PROXY_PORT=$2
    export COMMAND_API_ADDR=127.0.0.1:$(($2 + 1))
    export QUERY_API_ADDR=127.0.0.1:$(($2 + 2))
    export PROJECTOR_ADDR=127.0.0.1:$(($2 + 3))
    export PUBLIC_BASE_URL=http://127.0.0.1:$PROXY_PORT
    export DATABASE_URL=$PG_SERVER/$own-events$PG_OPTIONS
    export READ_DATABASE_URL=$PG_SERVER/$own-read
    export REDIS_KEY_PREFIX=$own:
    export KAFKA_TOPIC_PREFIX=$own.
    export PROJECTOR_GROUP=$own-projector
    export RATE_LIMIT_KEY_PREFIX=$own-limits:
    export MEDIA_DIR=$RUN_DIR/media
}
