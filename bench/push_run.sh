#!/usr/bin/env bash
# The push benchmark: N concurrent InboxService/Subscribe streams on one
# fxb-server, what they cost it in memory while idle, and how fast a notice
# appended to an inbox (fxb_inbox_append: XADD + PUBLISH fxb:inbox:new)
# reaches its subscriber, steadily and in a burst to every subscriber, each
# notice checked delivered exactly once. See bench/README.md.
#
# Settings (environment variables):
#   N=10000         streams, one per signed-in account (at most 100000, the
#                   FXB_OTP_DAILY_IP cap)
#   C=16            connections of the client (fxb-bench-push -c); raised to
#                   ceil(N / 1000) when smaller (the server's
#                   FXB_MAX_CONCURRENT_STREAMS default is 1000 a connection)
#   T=2             client threads, one completion queue each (1..4)
#   RATE=2000       steady phase: notices per second, to random subscribers
#                   (0: no steady phase, no verdict)
#   DURATION=10     steady phase: seconds
#   BURST=1         0: skip the burst (one notice to each of the N subscribers)
#   WRITERS=1       writer threads of the client, each its own Redis
#                   connection calling fxb_inbox_append
#   SETTLE=3        seconds between the last stream opened and the idle
#                   memory reading
#   GOAL_MS=50      the goal: steady-phase delivery p99 below this
#   WORKERS=2       FXB_WORKERS of fxb-server (2 = the cores of this machine)
#   SEED=1          the random choice of subscribers
#   SIGNIN_BATCH=100  concurrent sign-ins per batch (auth_signin.py --batch)
#   BUILD_DIR=      where the binaries are (default build/, see run.sh)
#   SKIP_BUILD=0    1: do not run cmake, use the binaries as they are
#   STRICT=0        1: exit 3 when the goal is missed or a check failed
#   OUT=            also write the report to this file
#   KEEP_TMP=0      1: keep the temporary folder (logs, client output)
#   OPEN_TIMEOUT=120  seconds all N streams may take to open
#   RUN_TIMEOUT=300 seconds the client may take beyond its phases
#   START_TIMEOUT=20 seconds a server may take to open its port
#
# Redis runs with --save '' --appendonly no: nothing here needs durability,
# and an fsync on the append path would measure the disk, not the push.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=push-bench # log / die
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/bench/lib.sh"
N=${N:-10000}
C=${C:-16}
T=${T:-2}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
BURST=${BURST:-1}
WRITERS=${WRITERS:-1}
SETTLE=${SETTLE:-3}
GOAL_MS=${GOAL_MS:-50}
WORKERS=${WORKERS:-2}
SEED=${SEED:-1}
SIGNIN_BATCH=${SIGNIN_BATCH:-100}
BUILD_DIR=${BUILD_DIR:-}
SKIP_BUILD=${SKIP_BUILD:-0}
STRICT=${STRICT:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
OPEN_TIMEOUT=${OPEN_TIMEOUT:-120}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
START_TIMEOUT=${START_TIMEOUT:-20}
# Access tokens live at most 900 s; a stream is authenticated when it opens.
TOKEN_TTL_S=900

for v in N C T DURATION WORKERS SEED SIGNIN_BATCH OPEN_TIMEOUT RUN_TIMEOUT START_TIMEOUT \
    WRITERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in RATE SETTLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be an integer (got '${!v}')"
done
[[ $BURST == 0 || $BURST == 1 ]] || die "BURST must be 0 or 1"
[[ $GOAL_MS =~ ^[0-9]*\.?[0-9]+$ ]] || die "GOAL_MS must be a number like 50"
((N <= 100000)) || die "N must be at most 100000 (FXB_OTP_DAILY_IP cap)"
((T <= 4)) || die "T must be 1..4"
((WRITERS <= 16)) || die "WRITERS must be 1..16"
((SIGNIN_BATCH <= 500)) || die "SIGNIN_BATCH must be 1..500"
MIN_C=$(((N + 999) / 1000))
if ((C < MIN_C)); then
    log "C=$C cannot carry $N streams at 1000 a connection: using C=$MIN_C"
    C=$MIN_C
fi

if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
command -v "$PY" >/dev/null || die "python3 is needed"
"$PY" -c 'import grpc, google.protobuf' 2>/dev/null ||
    die "$PY lacks grpcio/protobuf (apt-get install python3-grpcio python3-protobuf)"

# --- packages -------------------------------------------------------------
need_cmd redis-server redis-server
need_cmd timeout coreutils
command -v protoc >/dev/null || die "protoc not found (it builds fxb: apt-get install protobuf-compiler)"

# --- build ----------------------------------------------------------------
BINARIES=(fxb-server fxb-admin fxb-bench-push)

# re-run the configure step of a configured BUILD_DIR so that new targets
# (this one) are known
build_targets --reconfigure "${BINARIES[@]}"
need_binaries "${BINARIES[@]}"
check_build_type --sanitizer

# --- processes --------------------------------------------------------------
# the clean-up hook: the client (FG_PID) first, then the servers one at a
# time in the reverse order, fxb-server before the Redis it talks to, each
# given 10 s before SIGKILL; PIDS is emptied so that the clean-up of
# bench/lib.sh has nothing left to stop
# shellcheck disable=SC2317 # invoked by cleanup (bench/lib.sh)
stop_in_reverse() {
    local i k pid
    if [[ -n $FG_PID ]]; then
        stop_pid TERM "$FG_PID"
        FG_PID=
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null || true
        for ((k = 0; k < 100; k++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "process $pid did not stop in 10 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
CLEANUP_HOOK=stop_in_reverse
tmp_setup fxb-push-bench

read -r REDIS_PORT FXB_PORT METRICS_PORT <<<"$(free_ports 3)"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0

# 10,000 subscribers: Redis needs a client per fxb-server connection only,
# but its default maxclients is fine either way
start_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no --dir "$TMP" --daemonize no
wait_port redis "${PID[redis]}" "$REDIS_PORT"
mkdir -p "$TMP/data"
FXB_DATA_DIR="$TMP/data" FXB_REDIS_URL=$REDIS_URL "$BUILD_DIR/fxb-admin" keys init \
    >"$TMP/keys.log" 2>&1 || {
    cat "$TMP/keys.log" >&2
    die "fxb-admin keys init failed"
}
FXB_DATA_DIR="$TMP/data" FXB_REDIS_URL=$REDIS_URL "$BUILD_DIR/fxb-admin" migrate \
    >"$TMP/migrate.log" 2>&1 || {
    cat "$TMP/migrate.log" >&2
    die "fxb-admin migrate failed"
}
# development: the dev SMS sink (codes in a Redis stream) for signing in;
# code caps raised so that one address can sign in every account; tokens at
# their longest lifetime. FXB_MAX_CONCURRENT_STREAMS stays at its default.
start_bg fxb-server env FXB_ENV=development FXB_LISTEN="127.0.0.1:$FXB_PORT" \
    FXB_REDIS_URL="$REDIS_URL" FXB_METRICS_LISTEN="127.0.0.1:$METRICS_PORT" \
    FXB_LOG_LEVEL=warn FXB_DATA_DIR="$TMP/data" FXB_WORKERS="$WORKERS" \
    FXB_OTP_DAILY_IP=100000 FXB_OTP_DAILY_PHONE=1000 FXB_ACCESS_TOKEN_TTL_S=$TOKEN_TTL_S \
    "$BUILD_DIR/fxb-server"
wait_port fxb-server "${PID[fxb-server]}" "$FXB_PORT"

# --- accounts ---------------------------------------------------------------
mkdir -p "$TMP/py"
protoc -I"$ROOT/proto" --python_out="$TMP/py" "$ROOT/proto/fxb/v1/auth.proto" ||
    die "protoc --python_out failed"
log "signing in $N accounts"
SIGNED_IN_AT=$SECONDS
fg_run 1800 "$TMP/signin.log" "$PY" "$ROOT/bench/auth_signin.py" --target "127.0.0.1:$FXB_PORT" \
    --redis-url "$REDIS_URL" --py-dir "$TMP/py" --out "$TMP/tokens.txt" -n "$N" \
    --batch "$SIGNIN_BATCH" || {
    cat "$TMP/signin.log" >&2
    die "signing in failed"
}
cat "$TMP/signin.log" >&2
# "<account id> <token>" a line: the account id is the token's sub claim
"$PY" - "$TMP/tokens.txt" "$TMP/subjects.txt" <<'EOF' || die "reading the tokens' account ids failed"
import base64, json, os, sys
src, dst = sys.argv[1], sys.argv[2]
out = []
for tok in open(src).read().split():
    payload = tok.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    out.append("%s %s" % (claims["sub"], tok))
if len(set(line.split()[0] for line in out)) != len(out):
    sys.exit("push-bench: two tokens of one account")
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    f.write("\n".join(out) + "\n")
EOF
((SECONDS - SIGNED_IN_AT < TOKEN_TTL_S - OPEN_TIMEOUT)) ||
    die "signing in took $((SECONDS - SIGNED_IN_AT)) s: the first tokens expire before the streams open"

# --- measuring --------------------------------------------------------------
{
    echo "fxb push bench: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(nproc) cores, libgrpc $(dpkg-query -W -f '${Version}' libgrpc-dev 2>/dev/null || echo '?')," \
        "redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') (appendonly no)"
    echo "N=$N C=$C T=$T RATE=$RATE DURATION=${DURATION}s BURST=$BURST WRITERS=$WRITERS" \
        "SETTLE=${SETTLE}s WORKERS=$WORKERS SEED=$SEED build=$BUILD_DIR (${build_type:-?})"
} | tee "$TMP/report.txt"
PHASES_S=$((RATE > 0 ? DURATION : 0))
rc=0
fg_run $((OPEN_TIMEOUT + SETTLE + PHASES_S + RUN_TIMEOUT)) "$TMP/client.out" \
    "$BUILD_DIR/fxb-bench-push" -n "$N" -c "$C" -t "$T" -r "$RATE" -d "$DURATION" -B "$BURST" \
    -W "$WRITERS" -s "$SETTLE" -o "$OPEN_TIMEOUT" -g "$GOAL_MS" -S "$SEED" \
    -p "${PID[fxb-server]}" -P "${PID[redis]}" \
    "127.0.0.1:$FXB_PORT" "$REDIS_URL" "$TMP/subjects.txt" || rc=$?
if ((rc == 124)); then
    die "fxb-bench-push did not finish in time"
elif ((rc != 0 && rc != 3)); then
    tail -n 20 "$TMP/client.out" >&2
    die "fxb-bench-push failed (exit $rc)"
fi
grep -q '^RESULT ' "$TMP/client.out" || die "fxb-bench-push printed no result"
echo | tee -a "$TMP/report.txt"
grep -v '^RESULT ' "$TMP/client.out" | tee -a "$TMP/report.txt"
if ! kill -0 "${PID[fxb-server]}" 2>/dev/null; then
    log "WARNING: fxb-server is gone after the run: see $TMP/fxb-server.log"
    KEEP_TMP=1
fi
if grep -qiE 'error|fatal' "$TMP/fxb-server.log"; then
    log "fxb-server logged errors (first lines follow; log kept in $TMP):"
    grep -iE 'error|fatal' "$TMP/fxb-server.log" | head -n 5 >&2
    KEEP_TMP=1
fi
[[ -n $OUT ]] && cp "$TMP/report.txt" "$OUT"
if [[ $STRICT == 1 ]]; then
    exit "$rc"
fi
exit 0
