#!/usr/bin/env bash
# The foundation benchmark: fxb-server against the bare gRPC echo ceiling,
# measured side by side in one run with h2load. See bench/README.md.
#
# Settings (environment variables):
#   N=200000        requests per measured run
#   C=50            h2load clients (connections)
#   M=10            max concurrent streams per connection
#   T=1             h2load threads (2-core machine: h2load 1, servers the rest)
#   WORKERS=1       FXB_WORKERS of fxb-server and of the echo servers (same for all)
#   ROUNDS=5        quiet rounds wanted; each target is measured once per
#                   round, back to back, in an order that rotates; the table
#                   shows medians, the verdict the median of the per-round
#                   getinfo/echo ratios
#   QUIET_MAX=0.10  a round is noisy when, during one of its measured runs,
#                   processes other than h2load and the server under test
#                   used more than this many cores; noisy rounds are left out
#                   of the figures when >= 3 rounds are quiet
#   SPEED_TOL=1     a round is noisy too when the machine's speed (a short
#                   CPU probe before and after each measured run) varied by
#                   more than this fraction within it. Off in effect by
#                   default: the probe did not track the 2x state here
#   EXTRA_ROUNDS=5  rounds that may be added to replace noisy ones
#   WARMUP=N/10     requests of the warm-up run before every measured run (min 1000)
#   TARGETS="echo echo-unreg getinfo health"   which rows to measure
#   GOAL=0.90       the goal ratio getinfo / echo
#   ECHO_POLLER=1   0: echo servers without the extra polling thread that
#                   fxb-server has (fxb-bench-echo --no-poller)
#   BUILD_DIR=      where the binaries are (default build/, see below)
#   SKIP_BUILD=0    1: do not run cmake, use the binaries as they are
#   STRICT=0        1: exit 3 when the goal is not met or any error was seen
#   OUT=            also write the report to this file
#   KEEP_TMP=0      1: keep the temporary folder (logs, h2load logs)
#   RUN_TIMEOUT=300 seconds one h2load run may take
#   START_TIMEOUT=20 seconds a server may take to open its port
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=bench # log / die
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/bench/lib.sh"
N=${N:-200000}
C=${C:-50}
M=${M:-10}
T=${T:-1}
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-5}
QUIET_MAX=${QUIET_MAX:-0.10}
EXTRA_ROUNDS=${EXTRA_ROUNDS:-5}
SPEED_TOL=${SPEED_TOL:-1}
WARMUP=${WARMUP:-}
TARGETS=${TARGETS:-"echo echo-unreg getinfo health"}
GOAL=${GOAL:-0.90}
ECHO_POLLER=${ECHO_POLLER:-1}
BUILD_DIR=${BUILD_DIR:-}
SKIP_BUILD=${SKIP_BUILD:-0}
STRICT=${STRICT:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
START_TIMEOUT=${START_TIMEOUT:-20}

GETINFO_PATH=/fxb.v1.SystemService/GetInfo
HEALTH_PATH=/grpc.health.v1.Health/Check

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ -n $WARMUP ]] || WARMUP=$((N / 10 > 1000 ? N / 10 : 1000))
for v in C M T WORKERS ROUNDS WARMUP RUN_TIMEOUT START_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $EXTRA_ROUNDS =~ ^[0-9]+$ ]] || die "EXTRA_ROUNDS must be an integer (got '$EXTRA_ROUNDS')"
[[ $QUIET_MAX =~ ^[0-9]*\.?[0-9]+$ ]] || die "QUIET_MAX must be a number like 0.10"
[[ $SPEED_TOL =~ ^[0-9]*\.?[0-9]+$ ]] || die "SPEED_TOL must be a number like 0.15 (default 1: off)"
((C >= T)) || die "C ($C) must be >= T ($T)"
((N >= C && WARMUP >= C)) || die "N and WARMUP must be >= C ($C)"
[[ $GOAL =~ ^[0-9]*\.?[0-9]+$ ]] || die "GOAL must be a number like 0.90"
[[ $ECHO_POLLER == [01] ]] || die "ECHO_POLLER must be 0 or 1"
read -r -a TARGET_LIST <<<"$TARGETS"
((${#TARGET_LIST[@]} > 0)) || die "TARGETS is empty"
NEED_FXB=0
NEED_ECHO=0
NEED_ECHO_UNREG=0
for t in "${TARGET_LIST[@]}"; do
    case $t in
    echo) NEED_ECHO=1 ;;
    echo-unreg) NEED_ECHO_UNREG=1 ;;
    getinfo | health) NEED_FXB=1 ;;
    *) die "unknown target '$t' (echo, echo-unreg, getinfo, health)" ;;
    esac
done

if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
command -v "$PY" >/dev/null || die "python3 is needed for the figures"
[[ -r /proc/stat ]] || die "/proc/stat is needed for the CPU figures"
CLK_TCK=$(getconf CLK_TCK) || die "getconf CLK_TCK failed"
[[ $CLK_TCK =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK printed '$CLK_TCK'"
STATS=$ROOT/bench/bench_stats.py

# --- packages -------------------------------------------------------------
need_cmd h2load nghttp2-client
need_cmd timeout coreutils
if ((NEED_FXB)); then
    need_cmd redis-server redis-server
fi

# --- build ----------------------------------------------------------------
BINARIES=()
((NEED_ECHO || NEED_ECHO_UNREG)) && BINARIES+=(fxb-bench-echo)
((NEED_FXB)) && BINARIES+=(fxb-server fxb-admin)

build_targets "${BINARIES[@]}"
need_binaries "${BINARIES[@]}"
# shellcheck disable=SC2119 # no options: no sanitizer warning here
check_build_type

# --- processes --------------------------------------------------------------
tmp_setup fxb-bench

read -r REDIS_PORT FXB_PORT METRICS_PORT ECHO_PORT ECHO_UNREG_PORT <<<"$(free_ports 5)"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0

if ((NEED_FXB)); then
    start_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
        --appendonly no --dir "$TMP" --daemonize no
    wait_port redis "${PID[redis]}" "$REDIS_PORT"
    FXB_REDIS_URL=$REDIS_URL "$BUILD_DIR/fxb-admin" migrate >"$TMP/migrate.log" 2>&1 || {
        cat "$TMP/migrate.log" >&2
        die "fxb-admin migrate failed"
    }
    mkdir -p "$TMP/data"
    start_bg fxb-server env FXB_LISTEN="127.0.0.1:$FXB_PORT" FXB_REDIS_URL="$REDIS_URL" \
        FXB_METRICS_LISTEN="127.0.0.1:$METRICS_PORT" FXB_LOG_LEVEL=warn \
        FXB_DATA_DIR="$TMP/data" FXB_WORKERS="$WORKERS" "$BUILD_DIR/fxb-server"
fi
ECHO_OPTS=()
[[ $ECHO_POLLER == 0 ]] && ECHO_OPTS=(--no-poller)
if ((NEED_ECHO)); then
    # The fxb paths registered with the payload read with the call, as
    # fxb-server registers its unary methods: the like-for-like ceiling.
    start_bg echo "$BUILD_DIR/fxb-bench-echo" "${ECHO_OPTS[@]}" "127.0.0.1:$ECHO_PORT" "$WORKERS" \
        "$GETINFO_PATH" "$HEALTH_PATH"
fi
if ((NEED_ECHO_UNREG)); then
    # Every call unregistered: request -> RECV_MESSAGE -> reply.
    start_bg echo-unreg "$BUILD_DIR/fxb-bench-echo" "${ECHO_OPTS[@]}" "127.0.0.1:$ECHO_UNREG_PORT" \
        "$WORKERS"
fi
if ((NEED_FXB)); then
    wait_port fxb-server "${PID[fxb-server]}" "$FXB_PORT"
    wait_port fxb-server "${PID[fxb-server]}" "$METRICS_PORT"
fi
((NEED_ECHO)) && wait_port echo "${PID[echo]}" "$ECHO_PORT"
((NEED_ECHO_UNREG)) && wait_port echo-unreg "${PID[echo-unreg]}" "$ECHO_UNREG_PORT"

# --- measuring --------------------------------------------------------------
printf '\x00\x00\x00\x00\x00' >"$TMP/body.bin" # empty GetInfoRequest / HealthCheckRequest

fetch_metrics() { # fetch_metrics FILE
    if command -v curl >/dev/null; then
        curl -fsS --max-time 10 "http://127.0.0.1:$METRICS_PORT/metrics" -o "$1" ||
            die "cannot fetch http://127.0.0.1:$METRICS_PORT/metrics"
    else
        "$PY" -c 'import sys, urllib.request
sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())' \
            "http://127.0.0.1:$METRICS_PORT/metrics" >"$1" ||
            die "cannot fetch http://127.0.0.1:$METRICS_PORT/metrics"
    fi
}

target_url() {
    case $1 in
    echo) echo "http://127.0.0.1:$ECHO_PORT$GETINFO_PATH" ;;
    echo-unreg) echo "http://127.0.0.1:$ECHO_UNREG_PORT$GETINFO_PATH" ;;
    getinfo) echo "http://127.0.0.1:$FXB_PORT$GETINFO_PATH" ;;
    health) echo "http://127.0.0.1:$FXB_PORT$HEALTH_PATH" ;;
    esac
}

target_pid() { # target_pid TARGET: the pid of the server that answers it
    case $1 in
    echo) echo "${PID[echo]}" ;;
    echo-unreg) echo "${PID[echo-unreg]}" ;;
    getinfo | health) echo "${PID[fxb-server]}" ;;
    esac
}

# cpu_snap FILE SERVER_PID : the CPU counters at this instant, for
# bench_stats.py record --cpu. Builtins only (read, printf, times), so that
# taking it forks nothing that would be counted in the window:
#   - the wall clock ($EPOCHREALTIME);
#   - the machine's total, the "cpu" line of /proc/stat (in CLK_TCK);
#   - the server's own /proc/PID/stat (utime + stime: all its threads);
#   - `times`: this shell's own CPU, then that of its reaped children. h2load
#     (and the timeout around it) is the only child reaped inside the window,
#     so the change of the second line is h2load's CPU.
# It appends to FILE.
cpu_snap() {
    local cpu srv=
    read -r cpu </proc/stat
    read -r srv <"/proc/$2/stat" || true
    {
        printf 'time %s\n' "$EPOCHREALTIME"
        printf '%s\n' "$cpu"
        printf 'srv %s\n' "$srv"
        times
    } >>"$1"
}

# h2load_run URL REQUESTS STDOUT_FILE [LOG_FILE [SNAP_PREFIX SERVER_PID]]
# With SNAP_PREFIX, CPU snapshots are taken right before h2load starts and
# right after it ends: SNAP_PREFIX.cpu0 and SNAP_PREFIX.cpu1, each with the
# machine's speed (bench_stats.py speed) measured just outside the window.
h2load_run() {
    local url=$1 n=$2 out=$3 logf=${4:-} snap=${5:-} srv_pid=${6:-}
    local extra=()
    [[ -n $logf ]] && extra=(--log-file="$logf")
    local rc=0
    if [[ -n $snap ]]; then
        "$PY" "$STATS" speed >"$snap.cpu0" || die "bench_stats.py speed failed"
        cpu_snap "$snap.cpu0" "$srv_pid"
    fi
    # fg_run: a signal to this script is handled at once (the trap stops
    # h2load too) instead of after h2load ends.
    fg_run "$RUN_TIMEOUT" "$out" h2load -n "$n" -c "$C" -m "$M" -t "$T" \
        -H 'content-type: application/grpc' -H 'te: trailers' -d "$TMP/body.bin" \
        "${extra[@]}" "$url" || rc=$?
    if [[ -n $snap ]]; then
        : >"$snap.cpu1"
        cpu_snap "$snap.cpu1" "$srv_pid"
        "$PY" "$STATS" speed >>"$snap.cpu1" || die "bench_stats.py speed failed"
    fi
    if ((rc == 124)); then
        die "h2load on $url did not finish within ${RUN_TIMEOUT}s"
    elif ((rc != 0)); then
        tail -n 20 "$out" >&2
        die "h2load on $url failed (exit $rc)"
    fi
    grep -q '^requests: ' "$out" || {
        tail -n 20 "$out" >&2
        die "h2load on $url printed no result"
    }
}

RESULTS=$TMP/results.jsonl
: >"$RESULTS"
{
    echo "fxb bench: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(nproc) cores, $(h2load --version 2>/dev/null | head -n1)"
    echo "N=$N C=$C M=$M T=$T WORKERS=$WORKERS ROUNDS=$ROUNDS WARMUP=$WARMUP ECHO_POLLER=$ECHO_POLLER" \
        "QUIET_MAX=$QUIET_MAX SPEED_TOL=$SPEED_TOL build=$BUILD_DIR (${build_type:-?})"
} | tee "$TMP/report.txt"

n_targets=${#TARGET_LIST[@]}
quiet_rounds=0
r=0
while ((quiet_rounds < ROUNDS && r < ROUNDS + EXTRA_ROUNDS)); do
    r=$((r + 1))
    for ((k = 0; k < n_targets; k++)); do
        t=${TARGET_LIST[$(((k + r - 1) % n_targets))]} # rotate the order per round
        url=$(target_url "$t")
        srv_pid=$(target_pid "$t")
        h2load_run "$url" "$WARMUP" "$TMP/$t.$r.warmup.out"
        run=$TMP/$t.$r
        case $t in
        getinfo | health)
            method=$GETINFO_PATH
            [[ $t == health ]] && method=$HEALTH_PATH
            fetch_metrics "$run.before.prom"
            h2load_run "$url" "$N" "$run.out" "$run.log" "$run" "$srv_pid"
            sleep 0.3 # let the server record the last calls (after their final batch)
            fetch_metrics "$run.after.prom"
            "$PY" "$STATS" record "$RESULTS" "$t" "$r" "$run.out" "$run.log" \
                --cpu "$CLK_TCK" "$run.cpu0" "$run.cpu1" \
                "$run.before.prom" "$run.after.prom" "$method"
            ;;
        *)
            h2load_run "$url" "$N" "$run.out" "$run.log" "$run" "$srv_pid"
            "$PY" "$STATS" record "$RESULTS" "$t" "$r" "$run.out" "$run.log" \
                --cpu "$CLK_TCK" "$run.cpu0" "$run.cpu1"
            ;;
        esac
        # per-request logs are large (~30 B a request); the figures are recorded
        [[ $KEEP_TMP == 1 ]] || rm -f "$run.log"
    done
    quiet_rc=0
    "$PY" "$STATS" quiet "$RESULTS" "$r" "$QUIET_MAX" "$SPEED_TOL" || quiet_rc=$?
    case $quiet_rc in
    0) quiet_rounds=$((quiet_rounds + 1)) ;;
    4) log "round $r: noisy (other processes above $QUIET_MAX cores, or speed changed by more than $SPEED_TOL)" ;;
    *) die "bench_stats.py quiet failed (exit $quiet_rc)" ;;
    esac
done

echo
report_rc=0
"$PY" "$STATS" report "$RESULTS" echo getinfo "$GOAL" "$QUIET_MAX" "$ROUNDS" "$SPEED_TOL" >"$TMP/table.txt" || report_rc=$?
((report_rc == 0 || report_rc == 3)) || die "bench_stats.py report failed (exit $report_rc)"
tee -a "$TMP/report.txt" <"$TMP/table.txt"
[[ -n $OUT ]] && cp "$TMP/report.txt" "$OUT"
if [[ $STRICT == 1 ]]; then
    exit "$report_rc"
fi
exit 0
