#!/usr/bin/env bash
# The entitlement benchmark (issue 7: "1 M matched entitlements + inbox
# messages made durable: under 10 s"): fxb-bench-benefit against a private
# redis-server with AOF on, once per appendfsync mode (everysec, then
# always), each on a fresh Redis: N person subjects with accounts (half of
# them online), a published cash policy, then N subjects through
# fxb_grantout_run (the engine's write-out of a full match), timed to the
# last reply and the bench's own fsync of the AOF files, checked, and the
# naive baseline (HSET + XADD per subject, no script) in the same
# run. See bench/README.md.
#
# Settings (environment variables):
#   N=1000000       person subjects
#   T=8             connections of fxb_grantout_run, one thread each, as the
#                   engine's FXB_BENEFIT_WRITERS (1..8); the baseline uses
#                   as many threads
#   B=1000          the baseline's pipeline depth in subjects (1..1000;
#                   fxb's batches are FXB_ENT_BATCH_MAX = 1000, as the
#                   engine's)
#   FSYNC="everysec always"   the appendfsync modes, one fresh Redis each
#   BASELINE=1      0: skip the naive baseline
#   INBOXES=fresh   fresh: every notice creates its account's inbox (the
#                   worst case); existing: every account has an inbox of one
#                   earlier notice (fxb-bench-benefit -I)
#   TRANSPORT=unix  unix: Redis on a unix socket (as deploy/redis.conf);
#                   tcp: on 127.0.0.1
#   REDIS_ARGS=     more redis-server arguments (after the deploy ones, so
#                   they override them), e.g. "--stream-node-max-bytes 4096"
#                   (Redis's default) or "--auto-aof-rewrite-percentage 0"
#   BUILD_DIR=      where the binaries are (default build/, see run.sh)
#   SKIP_BUILD=0    1: do not run cmake, use the binaries as they are
#   STRICT=0        1: exit 3 when the goal is missed or a check failed
#   OUT=            also write the report to this file
#   KEEP_TMP=0      1: keep the temporary folder (Redis logs; the AOF
#                   files are removed after each mode either way: about
#                   1 GB each at N=1000000)
#   RUN_TIMEOUT=900 seconds one mode may take
#   START_TIMEOUT=20 seconds Redis may take to start
#
# Memory: about 1.8 GB of Redis per million subjects (each new inbox stream
# preallocates a listpack node of stream-node-max-bytes, 1 KB as in
# deploy/redis.conf; 4.8 GB with Redis's default 4 KB), plus the AOF on
# disk (about 0.8 GB per million per mode, removed after each mode).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=benefit-bench # log / die
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/bench/lib.sh"
N=${N:-1000000}
T=${T:-8}
B=${B:-1000}
FSYNC=${FSYNC:-everysec always}
BASELINE=${BASELINE:-1}
INBOXES=${INBOXES:-fresh}
TRANSPORT=${TRANSPORT:-unix}
REDIS_ARGS=${REDIS_ARGS:-}
BUILD_DIR=${BUILD_DIR:-}
SKIP_BUILD=${SKIP_BUILD:-0}
STRICT=${STRICT:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
START_TIMEOUT=${START_TIMEOUT:-20}

for v in N T B RUN_TIMEOUT START_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((T <= 8)) || die "T must be 1..8"
((B <= 1000)) || die "B must be 1..1000"
[[ $BASELINE == 0 || $BASELINE == 1 ]] || die "BASELINE must be 0 or 1"
[[ $TRANSPORT == unix || $TRANSPORT == tcp ]] || die "TRANSPORT must be unix or tcp"
[[ $INBOXES == fresh || $INBOXES == existing ]] || die "INBOXES must be fresh or existing"
for m in $FSYNC; do
    [[ $m == everysec || $m == always || $m == no ]] || die "FSYNC: unknown mode '$m'"
done
[[ -n $FSYNC ]] || die "FSYNC names no mode"

if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
command -v "$PY" >/dev/null || die "python3 is needed"

# --- packages and build -------------------------------------------------------
need_cmd redis-server redis-server
need_cmd timeout coreutils
BINARIES=(fxb-bench-benefit)
# re-run the configure step of a configured BUILD_DIR so that this new
# target is known
build_targets --reconfigure "${BINARIES[@]}"
need_binaries "${BINARIES[@]}"
check_build_type --sanitizer

# --- processes --------------------------------------------------------------------
tmp_setup fxb-benefit-bench
KEPT_WHAT="Redis logs"
REPORT=$TMP/report.txt
{
    echo "fxb benefit bench: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(nproc) cores, redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')," \
        "AOF on (appendonly yes), $TRANSPORT socket"
    echo "N=$N T=$T B=$B FSYNC='$FSYNC' BASELINE=$BASELINE INBOXES=$INBOXES" \
        "REDIS_ARGS='$REDIS_ARGS'" \
        "build=$BUILD_DIR (${build_type:-?})"
} | tee "$REPORT"

checks_failed=0 goal_missed=0
for mode in $FSYNC; do
    dir=$TMP/redis-$mode
    mkdir -p "$dir"
    if [[ $TRANSPORT == unix ]]; then
        listen=(--port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700)
        url=unix://$dir/redis.sock
    else
        read -r port <<<"$(free_ports 1)"
        listen=(--bind 127.0.0.1 --port "$port")
        url=redis://127.0.0.1:$port/0
    fi
    # the deploy settings (deploy/redis.conf) with the mode under test
    # shellcheck disable=SC2086 # REDIS_ARGS is a list of arguments
    start_bg "redis-$mode" redis-server "${listen[@]}" --dir "$dir" --save '' \
        --appendonly yes --appendfsync "$mode" --maxmemory-policy noeviction \
        --stream-node-max-bytes 1024 --daemonize no $REDIS_ARGS
    pid=${PID[redis-$mode]}
    deadline=$((SECONDS + START_TIMEOUT))
    if [[ $TRANSPORT == unix ]]; then cli=(redis-cli -s "$dir/redis.sock"); else cli=(redis-cli -p "$port"); fi
    until "${cli[@]}" ping >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$TMP/redis-$mode.log" >&2 || true
            die "redis-server ($mode) exited at start (log above)"
        }
        ((SECONDS < deadline)) || die "redis-server ($mode) did not answer within ${START_TIMEOUT}s"
        sleep 0.1
    done
    log "appendfsync $mode: running fxb-bench-benefit (N=$N)"
    # -A: the bench fsyncs the AOF files itself after the last reply, so
    # that the time is to "durable" in every mode
    args=(-n "$N" -t "$T" -b "$B" -A "$dir/appendonlydir")
    [[ $BASELINE == 1 ]] || args+=(-B)
    [[ $INBOXES == fresh ]] || args+=(-I)
    mrc=0
    fg_run "$RUN_TIMEOUT" "$TMP/client-$mode.out" "$BUILD_DIR/fxb-bench-benefit" "${args[@]}" \
        "$url" || mrc=$?
    if ((mrc == 124)); then
        die "fxb-bench-benefit ($mode) did not finish in ${RUN_TIMEOUT}s"
    elif ((mrc != 0 && mrc != 3)); then
        tail -n 20 "$TMP/client-$mode.out" >&2
        die "fxb-bench-benefit ($mode) failed (exit $mrc)"
    fi
    grep -q '^RESULT ' "$TMP/client-$mode.out" || die "fxb-bench-benefit printed no result"
    ((mrc == 0)) || checks_failed=1
    grep -q 'durable in under 10 s: MET' "$TMP/client-$mode.out" || goal_missed=1
    {
        echo
        echo "=== appendfsync $mode ==="
        grep -v '^RESULT ' "$TMP/client-$mode.out"
        echo "AOF on disk: $(du -sh "$dir" | cut -f1)"
    } | tee -a "$REPORT"
    # stop this Redis before the next mode (it may take a while to write
    # its AOF buffer) and free the disk
    stop_pid TERM "$pid"
    rm -rf "$dir/appendonlydir"
done

[[ -n $OUT ]] && cp "$REPORT" "$OUT"
((checks_failed == 0)) || log "a check after the run failed (see above)"
((goal_missed == 0)) || log "the goal (under 10 s for 1 M) was missed in at least one mode"
if [[ $STRICT == 1 ]] && ((checks_failed || goal_missed)); then
    exit 3
fi
exit 0
