#!/usr/bin/env bash
# Measurements against the stack as `make run` starts it (release build, through nginx), with
# rate limits off (RATE_LIMIT=off): load comes from one address here, an attack from many.
# Starts the stack unless one already answers on :8080, and stops what it started.
#
# - write-to-read: how soon a registration and a like show in the reads;
# - sign-up-flood: 64 and 256 registrations, then logins, at once: how many succeed or are
#   told "busy", and the command API's resident memory before, at the peak and after;
# - a 300 MiB multipart body on a read route, straight to the query API and through nginx:
#   how fast it is refused and what it costs the query API.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROXY_PORT=${PROXY_PORT:-8080}
BASE=http://127.0.0.1:$PROXY_PORT
TRIES=${TRIES:-100}
export RATE_LIMIT=off

if ! port_open "$PROXY_PORT"; then
    "$ROOT/scripts/stack.sh" up
    trap '"$ROOT/scripts/stack.sh" down' EXIT
else
    log "a stack already answers on :$PROXY_PORT: measuring it as it is (its rate limits may be on)"
fi
(cd "$ROOT" && cargo build --release --quiet -p system-tests --bin write-to-read --bin sign-up-flood)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

log "write to read"
"$BIN/write-to-read" "$BASE" "$TRIES"

log "sign-ups and logins at once"
"$BIN/sign-up-flood" "$BASE" "$(cat "$RUN_DIR/command-api.pid")" "${FLOOD_BURSTS:-64,256}"

resident() { awk '/^VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status"; }

# Multipart fields of 64 KiB each, 300 MiB in all, declared up front as a client would.
multipart_flood() { # url
    python3 - "$1" <<'PY'
import sys, time, http.client, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
boundary = "flood"
field = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n").encode() + b"x" * 65536 + b"\r\n"
fields = 300 * 1024 * 1024 // len(field)
def body():
    for _ in range(fields):
        yield field
    yield f"--{boundary}--\r\n".encode()
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
start = time.monotonic()
try:
    length = len(field) * fields + len(f"--{boundary}--\r\n")
    connection.request("GET", url.path, body=body(),
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                "Content-Length": str(length)})
    reply = connection.getresponse()
    answer = f"HTTP {reply.status} {reply.read()[:120]!r}"
except (BrokenPipeError, ConnectionResetError) as error:
    answer = f"connection closed by the server ({error.__class__.__name__})"
print(f"    answered in {(time.monotonic() - start) * 1000:.0f} ms: {answer}")
PY
}
log "a 300 MiB multipart body on GET /douyin/feed/"
query_pid=$(cat "$RUN_DIR/query-api.pid")
for url in "http://${QUERY_API_ADDR:-127.0.0.1:8082}/douyin/feed/" "$BASE/douyin/feed/"; do
    echo "  $url (query API resident before: $(resident "$query_pid"))"
    multipart_flood "$url"
    echo "    query API resident after: $(resident "$query_pid")"
done
