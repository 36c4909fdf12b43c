#!/usr/bin/env bash
# The filing benchmark: SubmitApplication throughput with Redis's AOF on, and
# the applicant's status read (GetApplication), against the foundation's
# SystemService/GetInfo measured in the same run, in rounds; plus what one
# submit costs in Redis commands and round trips. See bench/README.md.
#
# Settings (environment variables):
#   DURATION=3      seconds of each measured run (the submit rows' window
#                   also closes when their drafts run out: see SUBMIT_MARGIN)
#   C=20            connections of the client (fxb-bench-auth -c)
#   M=10            calls outstanding per connection (-m)
#   T=1             client threads
#   WORKERS=2       FXB_WORKERS of fxb-server (2 = the cores of this machine)
#   ROUNDS=7        quiet rounds wanted; each target once per round, in an
#                   order that rotates; ratios are medians of per-round ratios
#   QUIET_MAX=0.10  a round is noisy when, during one of its runs, other
#                   processes used more than this many cores
#   EXTRA_ROUNDS=8  rounds that may be added to replace noisy ones
#   WARMUP=5000     warm-up calls before each getinfo / status run
#   SUBMIT_WARMUP=200  warm-up calls (drafts) before each submit / complete run
#   TARGETS="getinfo submit status complete"   rows to measure:
#                   getinfo  SystemService/GetInfo, no token (the baseline)
#                   submit   SubmitApplication of a fresh draft of
#                            SUBMIT_ITEM on every call -> SUBMITTED
#                   status   GetApplication of STATUS_APPS submitted
#                            applications, rotating, with their owners' tokens
#                   complete SubmitApplication of a fresh draft of
#                            COMPLETE_ITEM (即办件) -> COMPLETED, the licence
#                            issued into the applicant's wallet
#   SUBMIT_ITEM=XX-RS-0003  a normal item whose required materials all take
#                   a PDF upload (M01, M02, M03)
#   COMPLETE_ITEM=XX-GA-0005  an immediate item with a result licence
#   APPLICANTS=1000 applicants (accounts at level 2, one PDF each) per pool:
#                   one pool for submit + status; for complete a new pool
#                   every round, as its wallets grow by a licence per
#                   completed application (each round starts from one PDF)
#   STATUS_APPS=1000  applications submitted up front for the status row
#   SUBMIT_MARGIN=1.25  drafts per submit run = the highest submit rate seen
#                   so far (first: a calibration run) x DURATION x this +
#                   SUBMIT_WARMUP + C x M; each draft is submitted once
#   SUBMIT_DRAFTS=  a fixed number of drafts per submit run instead
#   AOF_FSYNC=everysec  appendfsync of the private redis-server (always |
#                   everysec | no); appendonly is always yes
#   BREAKDOWN=1     0: skip the per-call Redis command breakdown
#   BREAKDOWN_CALLS=500  calls of each breakdown run
#   BUILD_DIR=      where the binaries are (default build/, see run.sh)
#   SKIP_BUILD=0    1: do not run cmake, use the binaries as they are
#   STRICT=0        1: exit 3 when any call failed or answered unexpectedly
#   OUT=            also write the report to this file
#   KEEP_TMP=0      1: keep the temporary folder (logs, client output,
#                   drafts, the Redis MONITOR capture of the breakdown)
#   RUN_TIMEOUT=120 seconds one client run may take beyond DURATION
#   START_TIMEOUT=20 seconds a server may take to open its port
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=filing-bench # log / die
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/bench/lib.sh"
DURATION=${DURATION:-3}
C=${C:-20}
M=${M:-10}
T=${T:-1}
WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-7}
QUIET_MAX=${QUIET_MAX:-0.10}
EXTRA_ROUNDS=${EXTRA_ROUNDS:-8}
WARMUP=${WARMUP:-5000}
SUBMIT_WARMUP=${SUBMIT_WARMUP:-200}
TARGETS=${TARGETS:-"getinfo submit status complete"}
SUBMIT_ITEM=${SUBMIT_ITEM:-XX-RS-0003}
COMPLETE_ITEM=${COMPLETE_ITEM:-XX-GA-0005}
APPLICANTS=${APPLICANTS:-1000}
STATUS_APPS=${STATUS_APPS:-1000}
SUBMIT_MARGIN=${SUBMIT_MARGIN:-1.25}
SUBMIT_DRAFTS=${SUBMIT_DRAFTS:-}
AOF_FSYNC=${AOF_FSYNC:-everysec}
BREAKDOWN=${BREAKDOWN:-1}
BREAKDOWN_CALLS=${BREAKDOWN_CALLS:-500}
BUILD_DIR=${BUILD_DIR:-}
SKIP_BUILD=${SKIP_BUILD:-0}
STRICT=${STRICT:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
START_TIMEOUT=${START_TIMEOUT:-20}
CAL_DRAFTS=2000 # the calibration run's drafts (first rate estimate)
MAX_DRAFTS=50000

GETINFO_PATH=/fxb.v1.SystemService/GetInfo
SUBMIT_PATH=/fxb.v1.FilingService/SubmitApplication
GET_PATH=/fxb.v1.FilingService/GetApplication
# -e checks of every response: SubmitResult.outcome (field 2) SUBMITTED = 1,
# COMPLETED = 5; Application.status (field 12) SUBMITTED = 2
EXPECT_SUBMIT=2=1
EXPECT_COMPLETE=2=5
EXPECT_STATUS=12=2

for v in DURATION C M T WORKERS ROUNDS APPLICANTS STATUS_APPS BREAKDOWN_CALLS RUN_TIMEOUT \
    START_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in WARMUP SUBMIT_WARMUP EXTRA_ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be an integer (got '${!v}')"
done
[[ -z $SUBMIT_DRAFTS || $SUBMIT_DRAFTS =~ ^[1-9][0-9]*$ ]] ||
    die "SUBMIT_DRAFTS must be a positive integer (got '$SUBMIT_DRAFTS')"
[[ $QUIET_MAX =~ ^[0-9]*\.?[0-9]+$ ]] || die "QUIET_MAX must be a number like 0.10"
[[ $SUBMIT_MARGIN =~ ^[0-9]*\.?[0-9]+$ ]] || die "SUBMIT_MARGIN must be a number like 1.25"
[[ $AOF_FSYNC == @(always|everysec|no) ]] || die "AOF_FSYNC must be always, everysec or no"
[[ $SUBMIT_ITEM =~ ^[A-Za-z0-9._-]+$ && $COMPLETE_ITEM =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "SUBMIT_ITEM / COMPLETE_ITEM must be item codes"
((C >= T)) || die "C ($C) must be >= T ($T)"
((APPLICANTS <= 50000)) || die "APPLICANTS must be at most 50000 (two pools, FXB_OTP_DAILY_IP cap)"
read -r -a TARGET_LIST <<<"$TARGETS"
((${#TARGET_LIST[@]} > 0)) || die "TARGETS is empty"
NEED_SUBMIT=0 NEED_STATUS=0 NEED_COMPLETE=0 HAS_GETINFO=0
for t in "${TARGET_LIST[@]}"; do
    case $t in
    getinfo) HAS_GETINFO=1 ;;
    submit) NEED_SUBMIT=1 ;;
    status) NEED_STATUS=1 ;;
    complete) NEED_COMPLETE=1 ;;
    *) die "unknown target '$t' (getinfo, submit, status, complete)" ;;
    esac
done
((HAS_GETINFO)) || log "WARNING: no getinfo row: no ratios"

if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
command -v "$PY" >/dev/null || die "python3 is needed"
"$PY" -c 'import grpc, google.protobuf' 2>/dev/null ||
    die "$PY lacks grpcio/protobuf (apt-get install python3-grpcio python3-protobuf)"

# --- packages -------------------------------------------------------------
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
need_cmd timeout coreutils
command -v protoc >/dev/null || die "protoc not found (it builds fxb: apt-get install protobuf-compiler)"

# --- build ----------------------------------------------------------------
BINARIES=(fxb-server fxb-admin fxb-bench-auth)

build_targets --reconfigure "${BINARIES[@]}"
need_binaries "${BINARIES[@]}"
check_build_type --sanitizer

# --- processes --------------------------------------------------------------
MON_PID= # redis-cli MONITOR of a breakdown run (bd_run) while it runs
# shellcheck disable=SC2317 # invoked by cleanup (bench/lib.sh)
stop_fg_and_monitor() { # the clean-up hook: the client, then the MONITOR
    if [[ -n $FG_PID ]]; then
        stop_pid TERM "$FG_PID"
        FG_PID=
    fi
    if [[ -n $MON_PID ]]; then
        stop_pid TERM "$MON_PID"
    fi
}
CLEANUP_HOOK=stop_fg_and_monitor
tmp_setup fxb-filing-bench

read -r REDIS_PORT FXB_PORT METRICS_PORT <<<"$(free_ports 3)"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# Redis as deploy/redis.conf has it (AOF, no RDB snapshots, noeviction),
# with appendfsync AOF_FSYNC, on TCP
start_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly yes --appendfsync "$AOF_FSYNC" --appendfilename fxb.aof \
    --maxmemory-policy noeviction --dir "$TMP" --daemonize no
wait_port redis "${PID[redis]}" "$REDIS_PORT"
mkdir -p "$TMP/data"
admin() { # admin LOGNAME ARGS... : fxb-admin on the private store and keys
    FXB_DATA_DIR="$TMP/data" FXB_REDIS_URL=$REDIS_URL "$BUILD_DIR/fxb-admin" "${@:2}" \
        >"$TMP/$1.log" 2>&1 || {
        cat "$TMP/$1.log" >&2
        die "fxb-admin ${*:2} failed"
    }
}
admin keys keys init
admin migrate migrate
admin catalog catalog import # the embedded seed (data/catalog/xinxiang.json)
admin calendar calendar import
# development: the dev SMS sink; code caps raised so that one address can
# sign in every applicant; tokens at their longest lifetime
start_bg fxb-server env FXB_ENV=development FXB_LISTEN="127.0.0.1:$FXB_PORT" \
    FXB_REDIS_URL="$REDIS_URL" FXB_METRICS_LISTEN="127.0.0.1:$METRICS_PORT" \
    FXB_LOG_LEVEL=warn FXB_DATA_DIR="$TMP/data" FXB_WORKERS="$WORKERS" \
    FXB_OTP_DAILY_IP=100000 FXB_OTP_DAILY_PHONE=1000 FXB_ACCESS_TOKEN_TTL_S=900 \
    "$BUILD_DIR/fxb-server"
wait_port fxb-server "${PID[fxb-server]}" "$FXB_PORT"
SERVER_PID=${PID[fxb-server]}
REDIS_PID=${PID[redis]}

# --- applicants and drafts --------------------------------------------------
mkdir -p "$TMP/py"
protoc -I"$ROOT/proto" --python_out="$TMP/py" "$ROOT/proto/fxb/v1/auth.proto" \
    "$ROOT/proto/fxb/v1/catalog.proto" "$ROOT/proto/fxb/v1/material.proto" \
    "$ROOT/proto/fxb/v1/filing.proto" || die "protoc --python_out failed"

prep() { # prep LOGNAME ARGS... : filing_prepare.py, its line on stderr
    fg_run 600 "$TMP/$1.log" "$PY" "$ROOT/bench/filing_prepare.py" "$2" \
        --target "127.0.0.1:$FXB_PORT" --py-dir "$TMP/py" "${@:3}" || {
        cat "$TMP/$1.log" >&2
        die "filing_prepare.py $2 failed"
    }
    sed 's/^/  /' "$TMP/$1.log" >&2
}

POOL_A=$TMP/pool-a.json # submit + status; complete: $TMP/pool-b.ROUND.json
if ((NEED_SUBMIT || NEED_STATUS)); then
    log "pool A: $APPLICANTS applicants (level 2, one PDF each)"
    prep setup-a setup --state "$POOL_A" --redis-url "$REDIS_URL" -n "$APPLICANTS"
fi
if ((NEED_STATUS)); then
    log "status row: $STATUS_APPS applications of $SUBMIT_ITEM, submitted now"
    prep status-set drafts --state "$POOL_A" --item "$SUBMIT_ITEM" -k "$STATUS_APPS" \
        --out "$TMP/status" --submit-expect SUBMITTED
fi

printf '' >"$TMP/empty.bin" # GetInfoRequest{}: the empty message

# client LABEL OUTFILE ARGS... : one fxb-bench-auth run, -p server -p redis;
# dies unless it ran (exit 0, or 3 = it ran and saw errors)
client() {
    local label=$1 out=$2 rc=0
    shift 2
    fg_run $((DURATION + RUN_TIMEOUT)) "$out" "$BUILD_DIR/fxb-bench-auth" -c "$C" -m "$M" \
        -t "$T" -l "$label" -p "$SERVER_PID" -p "$REDIS_PID" "$@" || rc=$?
    if ((rc == 124)); then
        die "fxb-bench-auth ($label) did not finish within $((DURATION + RUN_TIMEOUT))s"
    elif ((rc != 0 && rc != 3)); then
        tail -n 20 "$out" >&2
        die "fxb-bench-auth ($label) failed (exit $rc)"
    fi
    grep -q '^RESULT ' "$out" || die "fxb-bench-auth ($label) printed no result"
}

result_field() { # result_field FILE KEY: a value of the RESULT line
    sed -n "s/^RESULT .* $2=\([^ ]*\).*/\1/p" "$1"
}

# drafts for one submit / complete run: the highest rate the row has shown
# so far (before its first run: the calibration's) x DURATION x margin
declare -A RATE_EST=([submit]=0 [complete]=0)
drafts_per_run() { # drafts_per_run ROW
    if [[ -n $SUBMIT_DRAFTS ]]; then
        echo "$SUBMIT_DRAFTS"
        return
    fi
    awk -v r="${RATE_EST[$1]}" -v d="$DURATION" -v m="$SUBMIT_MARGIN" -v w="$SUBMIT_WARMUP" \
        -v o=$((C * M)) -v max=$MAX_DRAFTS 'BEGIN {
            n = int(r * d * m + w + o + 0.999); if (n > max) n = max; print n }'
}
note_rate() { # note_rate ROW RESULT_FILE: keep the highest rate the row showed
    local r
    r=$(result_field "$2" rps)
    RATE_EST[$1]=$(awk -v a="${RATE_EST[$1]}" -v b="${r:-0}" 'BEGIN { print (b > a ? b : a) }')
}

if ((NEED_SUBMIT || NEED_COMPLETE)) && [[ -z $SUBMIT_DRAFTS ]]; then
    # a first estimate of the submit rate (also warms the server up)
    log "calibration: $CAL_DRAFTS submits of $SUBMIT_ITEM, to size the drafts of a run"
    prep cal-drafts drafts --state "$POOL_A" --item "$SUBMIT_ITEM" -k "$CAL_DRAFTS" \
        --out "$TMP/cal"
    client cal "$TMP/cal.out" -d "$DURATION" -w "$SUBMIT_WARMUP" -b "$TMP/cal.bodies" -o \
        -e "$EXPECT_SUBMIT" "127.0.0.1:$FXB_PORT" "$SUBMIT_PATH" - "$TMP/cal.tokens"
    grep -v '^RESULT ' "$TMP/cal.out" | sed 's/^/  /' >&2 || true
    [[ $(result_field "$TMP/cal.out" errors) == 0 ]] ||
        die "the calibration run saw errors: $(grep -m1 ERRORS "$TMP/cal.out")"
    note_rate submit "$TMP/cal.out"
    note_rate complete "$TMP/cal.out"
fi

# --- measuring --------------------------------------------------------------
RESULTS=$TMP/results.txt
: >"$RESULTS"
{
    echo "fxb filing bench: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "(+ uncommitted changes: $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) files)," \
        "$(nproc) cores, libgrpc $(dpkg-query -W -f '${Version}' libgrpc-dev 2>/dev/null || echo '?')," \
        "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/redis \1/p')"
    echo "DURATION=${DURATION}s C=$C M=$M T=$T WORKERS=$WORKERS ROUNDS=$ROUNDS WARMUP=$WARMUP" \
        "SUBMIT_WARMUP=$SUBMIT_WARMUP APPLICANTS=$APPLICANTS STATUS_APPS=$STATUS_APPS" \
        "build=$BUILD_DIR (${build_type:-?})"
    echo "redis: appendonly yes, appendfsync $AOF_FSYNC (AOF on); submit item $SUBMIT_ITEM," \
        "complete item $COMPLETE_ITEM"
} | tee "$TMP/report.txt"

n_targets=${#TARGET_LIST[@]}
quiet_rounds=0
r=0
while ((quiet_rounds < ROUNDS && r < ROUNDS + EXTRA_ROUNDS)); do
    r=$((r + 1))
    # fresh drafts for this round, fresh tokens for every row (outside any
    # measured window)
    if ((NEED_SUBMIT)); then
        prep "sub.$r" drafts --state "$POOL_A" --item "$SUBMIT_ITEM" \
            -k "$(drafts_per_run submit)" --out "$TMP/sub.$r"
    fi
    if ((NEED_STATUS)); then
        prep "status-retoken.$r" retoken --state "$POOL_A" --prefix "$TMP/status"
    fi
    if ((NEED_COMPLETE)); then
        prep "setup-b.$r" setup --state "$TMP/pool-b.$r.json" --redis-url "$REDIS_URL" \
            -n "$APPLICANTS"
        prep "cpl.$r" drafts --state "$TMP/pool-b.$r.json" --item "$COMPLETE_ITEM" \
            -k "$(drafts_per_run complete)" --out "$TMP/cpl.$r"
    fi
    noisy=0
    for ((i = 0; i < n_targets; i++)); do
        t=${TARGET_LIST[$(((i + r - 1) % n_targets))]} # rotate the order per round
        out=$TMP/$t.$r.out
        case $t in
        getinfo)
            client "$t" "$out" -d "$DURATION" -w "$WARMUP" \
                "127.0.0.1:$FXB_PORT" "$GETINFO_PATH" "$TMP/empty.bin" -
            ;;
        status)
            client "$t" "$out" -d "$DURATION" -w "$WARMUP" -b "$TMP/status.bodies" \
                -e "$EXPECT_STATUS" "127.0.0.1:$FXB_PORT" "$GET_PATH" - "$TMP/status.tokens"
            ;;
        submit)
            client "$t" "$out" -d "$DURATION" -w "$SUBMIT_WARMUP" -b "$TMP/sub.$r.bodies" -o \
                -e "$EXPECT_SUBMIT" "127.0.0.1:$FXB_PORT" "$SUBMIT_PATH" - "$TMP/sub.$r.tokens"
            note_rate submit "$out"
            ;;
        complete)
            client "$t" "$out" -d "$DURATION" -w "$SUBMIT_WARMUP" -b "$TMP/cpl.$r.bodies" -o \
                -e "$EXPECT_COMPLETE" "127.0.0.1:$FXB_PORT" "$SUBMIT_PATH" - "$TMP/cpl.$r.tokens"
            note_rate complete "$out"
            ;;
        esac
        line=$(grep '^RESULT ' "$out")
        echo "$line round=$r" >>"$RESULTS"
        grep -v '^RESULT ' "$out" | sed "s/^/  round $r /" >&2 || true
        others=$(sed -n 's/.* other_cores=\([0-9.]*\).*/\1/p' <<<"$line")
        if [[ -n $others ]] && awk -v o="$others" -v q="$QUIET_MAX" 'BEGIN { exit !(o > q) }'; then
            noisy=1
        fi
    done
    if ((noisy)); then
        log "round $r: other processes used more than $QUIET_MAX cores: noisy"
    else
        quiet_rounds=$((quiet_rounds + 1))
    fi
done

# --- checks: the applications are in the state the answers said ------------
# The drafts a run submitted are the first bodies_used lines of its file
# (a run stops at DURATION, usually before its drafts run out).
submitted_lines() { # submitted_lines ROW ROUND PREFIX: the lines of PREFIX.ROUND.drafts submitted
    local used
    used=$(result_field "$TMP/$1.$2.out" bodies_used)
    head -n "${used:-0}" "$TMP/$3.$2.drafts"
}
CHECKS=()
if ((NEED_SUBMIT)); then
    for ((i = 1; i <= r; i++)); do submitted_lines submit "$i" sub; done >"$TMP/sub-all.drafts"
    prep check-sub check --state "$POOL_A" --drafts "$TMP/sub-all.drafts" --status SUBMITTED \
        --sample 300
    CHECKS+=("submit: $(sed -n 's/^filing_prepare: check: //p' "$TMP/check-sub.log")")
fi
if ((NEED_COMPLETE)); then
    n_checked=0
    for ((i = 1; i <= r; i++)); do # a pool per round: one check each
        submitted_lines complete "$i" cpl >"$TMP/cpl-done.$i.drafts"
        prep "check-cpl.$i" check --state "$TMP/pool-b.$i.json" --drafts "$TMP/cpl-done.$i.drafts" \
            --status COMPLETED --sample 50
        n_checked=$((n_checked + $(sed -n 's/^filing_prepare: check: \([0-9]*\) .*/\1/p' \
            "$TMP/check-cpl.$i.log")))
    done
    CHECKS+=("complete: $n_checked applications sampled over the $r rounds, all COMPLETED")
fi
if ((NEED_STATUS)); then
    prep check-status check --state "$POOL_A" --drafts "$TMP/status.drafts" --status SUBMITTED \
        --sample 300
    CHECKS+=("status: $(sed -n 's/^filing_prepare: check: //p' "$TMP/check-status.log")")
fi
WALLET_NOTE=
if ((NEED_COMPLETE)); then
    # every completed application put a licence into its applicant's wallet
    acct=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["applicants"][0]["account"])' \
        "$TMP/pool-b.$r.json")
    WALLET_NOTE="wallet of one complete-row applicant after the last round: "
    WALLET_NOTE+="$(rcli ZCARD "{u:$acct}:wallet") entries (1 PDF + a licence per application"
    WALLET_NOTE+=" it completed, warm-up included)"
fi

# --- the Redis commands of one call -----------------------------------------
# Two unmeasured runs of BREAKDOWN_CALLS calls per row, with nothing else on
# the server. The first, plain: INFO commandstats (Redis's time per command)
# and INFO stats total_reads_processed (read events: round trips, a pipeline
# or a reply-less send counting once) before and after. The second with
# MONITOR on (which slows Redis, hence not the first): which commands
# fxb-server sent, and which its Lua scripts ran ([0 lua]).
bd_run() { # bd_run LABEL plain|monitor CLIENT-ARGS...
    local label=$1 mode=$2 f=$TMP/bd.$1.$2
    shift 2
    if [[ $mode == monitor ]]; then
        redis-cli -p "$REDIS_PORT" MONITOR >"$f.monitor" 2>&1 &
        MON_PID=$!
        sleep 0.3
    else
        rcli INFO commandstats >"$f.cs0"
        rcli INFO stats >"$f.st0"
    fi
    client "bd-$label" "$f.out" "$@"
    if [[ $mode == monitor ]]; then
        sleep 0.3
        stop_pid TERM "$MON_PID"
        MON_PID=
    else
        rcli INFO stats >"$f.st1"
        rcli INFO commandstats >"$f.cs1"
    fi
    [[ $(result_field "$f.out" errors) == 0 ]] ||
        die "the $label breakdown run saw errors: $(grep -m1 ERRORS "$f.out")"
}
bd_report() { # bd_report LABEL: the table of the two runs of LABEL
    local b=$TMP/bd.$1
    "$PY" - "$b" "$1" "$(result_field "$b.plain.out" bodies_used)" \
        "$(result_field "$b.monitor.out" bodies_used)" <<'EOF' >>"$TMP/breakdown.txt"
import re, sys
base, label, calls_p, calls_m = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def stats(path):
    out = {}
    for ln in open(path, errors="replace"):
        m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", ln)
        if m:
            out[m.group(1).upper()] = (int(m.group(2)), int(m.group(3)))
        elif ":" in ln:
            k, v = ln.strip().split(":", 1)
            out[k] = v
    return out
cs0, cs1 = stats(base + ".plain.cs0"), stats(base + ".plain.cs1")
st0, st1 = stats(base + ".plain.st0"), stats(base + ".plain.st1")
# minus the read of the INFO stats that took st1
reads = int(st1["total_reads_processed"]) - int(st0["total_reads_processed"]) - 1
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
ID = re.compile(r"[A-Za-z0-9_-]{16,}")
top, lua, scripts = {}, {}, {}
for ln in open(base + ".monitor.monitor", errors="replace"):
    m = re.match(r"^[0-9.]+ \[\d+ ([^\]]+)\] (.*)$", ln)
    if not m:
        continue
    args = QUOTED.findall(m.group(2))
    if not args:
        continue
    cmd = args[0].upper()
    if m.group(1) == "lua":
        lua[cmd] = lua.get(cmd, 0) + 1
        continue
    top[cmd] = top.get(cmd, 0) + 1
    if cmd in ("EVALSHA", "EVAL") and len(args) > 3:
        key = "%s %s.. KEYS[1] %s" % (cmd, args[1][:8], ID.sub("*", args[3]))
        scripts[key] = scripts.get(key, 0) + 1
def us(cmd):
    c0, c1 = cs0.get(cmd, (0, 0)), cs1.get(cmd, (0, 0))
    return (c1[1] - c0[1]) / calls_p
# leave out what is not this method's (a rare command of the sweeper)
cmds = [c for c in sorted(set(top) | set(lua), key=lambda c: -(top.get(c, 0) + lua.get(c, 0)))
        if top.get(c, 0) + lua.get(c, 0) >= 0.01 * calls_m]
n_top = sum(top.get(c, 0) for c in cmds) / calls_m
n_lua = sum(lua.get(c, 0) for c in cmds) / calls_m
# Redis's time in commands: the top-level ones (a script's time includes its commands)
t_top = sum(us(c) * top.get(c, 0) / (top.get(c, 0) + lua.get(c, 0)) for c in cmds)
print("%s: %.1f round trips per call (Redis read events over %d calls; a pipeline counts "
      "once), %.1f commands sent by fxb-server, %.1f more run by its Lua scripts; Redis "
      "spent ~%.0f us per call inside commands" % (label, reads / calls_p, calls_p, n_top,
                                                   n_lua, t_top))
print("  %-10s %9s %9s %14s" % ("command", "sent/call", "lua/call", "redis us/call"))
for c in cmds:
    print("  %-10s %9.2f %9.2f %14.2f" % (c, top.get(c, 0) / calls_m, lua.get(c, 0) / calls_m,
                                        us(c)))
for k, v in sorted(scripts.items(), key=lambda kv: -kv[1]):
    print("  script   %s: %.2f per call" % (k, v / calls_m))
EOF
}
: >"$TMP/breakdown.txt"
if [[ $BREAKDOWN == 1 ]]; then
    log "breakdown runs ($BREAKDOWN_CALLS calls each; not measured)"
    if ((NEED_SUBMIT)); then
        for mode in plain monitor; do
            prep "bd-sub-$mode" drafts --state "$POOL_A" --item "$SUBMIT_ITEM" \
                -k "$BREAKDOWN_CALLS" --out "$TMP/bdsub-$mode"
            bd_run submit "$mode" -w 0 -b "$TMP/bdsub-$mode.bodies" -o -e "$EXPECT_SUBMIT" \
                "127.0.0.1:$FXB_PORT" "$SUBMIT_PATH" - "$TMP/bdsub-$mode.tokens"
        done
        bd_report submit
    fi
    if ((NEED_STATUS)); then
        prep bd-status retoken --state "$POOL_A" --prefix "$TMP/status"
        for mode in plain monitor; do
            # -w 0 -n: about BREAKDOWN_CALLS; bodies_used is the exact count
            bd_run status "$mode" -w 0 -n "$BREAKDOWN_CALLS" -b "$TMP/status.bodies" \
                -e "$EXPECT_STATUS" "127.0.0.1:$FXB_PORT" "$GET_PATH" - "$TMP/status.tokens"
        done
        bd_report status
    fi
    if ((NEED_COMPLETE)); then
        prep bd-cpl-setup setup --state "$TMP/pool-b.bd.json" --redis-url "$REDIS_URL" \
            -n "$APPLICANTS"
        for mode in plain monitor; do
            prep "bd-cpl-$mode" drafts --state "$TMP/pool-b.bd.json" --item "$COMPLETE_ITEM" \
                -k "$BREAKDOWN_CALLS" --out "$TMP/bdcpl-$mode"
            bd_run complete "$mode" -w 0 -b "$TMP/bdcpl-$mode.bodies" -o \
                -e "$EXPECT_COMPLETE" "127.0.0.1:$FXB_PORT" "$SUBMIT_PATH" - \
                "$TMP/bdcpl-$mode.tokens"
        done
        bd_report complete
    fi
fi
AOF_BYTES=$(du -sb "$TMP/appendonlydir" 2>/dev/null | cut -f1 || true)

# --- the report ---------------------------------------------------------------
echo
report_rc=0
"$PY" - "$RESULTS" "$QUIET_MAX" "$ROUNDS" "${TARGET_LIST[@]}" >"$TMP/table.txt" <<'EOF' || report_rc=$?
import statistics, sys
path, quiet_max, want = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
targets = sys.argv[4:]
by_round = {}
for line in open(path):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    by_round.setdefault(int(kv["round"]), {})[kv["label"]] = kv
others = lambda rr: max(float(x.get("other_cores", 0)) for x in rr.values())
quiet = [r for r in sorted(by_round) if others(by_round[r]) <= quiet_max]
basis = quiet if len(quiet) >= 3 else sorted(by_round)
rows = {}
for r in basis:
    for t, kv in by_round[r].items():
        rows.setdefault(t, []).append(kv)
what = {"getinfo": "SystemService/GetInfo, no token (baseline)",
        "submit": "SubmitApplication, a fresh draft each -> SUBMITTED",
        "status": "GetApplication of a submitted application",
        "complete": "SubmitApplication, immediate item -> COMPLETED"}
med = lambda rs, k: statistics.median(float(r[k]) for r in rs if k in r)
has = lambda rs, k: all(k in r for r in rs)
def ratios(t):
    return [float(by_round[r][t]["rps"]) / float(by_round[r]["getinfo"]["rps"]) for r in basis
            if t in by_round[r] and "getinfo" in by_round[r]]
print("medians over %s" % ("the %d quiet rounds" % len(basis) if basis is quiet else
                           "all %d rounds (fewer than 3 were quiet)" % len(basis)))
print("%-8s %-52s %7s %15s %7s %7s %6s %8s %8s %8s" % (
    "target", "what", "req/s", "(min..max)", "p50 ms", "p99 ms", "errors", "vs getinfo",
    "srv us/c", "rds us/c"))
for t in targets:
    rs = rows.get(t)
    if not rs:
        continue
    rps = [float(r["rps"]) for r in rs]
    rr = ratios(t)
    ratio = "%9.1f%%" % (100 * statistics.median(rr)) if rr else "         -"
    srv = "%8.1f" % med(rs, "cpu0_us_per_call") if has(rs, "cpu0_us_per_call") else "       -"
    rds = "%8.1f" % med(rs, "cpu1_us_per_call") if has(rs, "cpu1_us_per_call") else "       -"
    print("%-8s %-52s %6.1fk %15s %7.2f %7.2f %6d %10s %8s %8s" % (
        t, what[t], med(rs, "rps") / 1e3,
        "(%.1fk..%.1fk)" % (min(rps) / 1e3, max(rps) / 1e3),
        med(rs, "p50_us") / 1e3, med(rs, "p99_us") / 1e3,
        sum(int(r["errors"]) for r in rs), ratio, srv, rds))
print()
print("every round (req/s, and for submit/complete the window in s; others = cores used by "
      "other processes, quiet <= %.2f):" % quiet_max)
for r in sorted(by_round):
    rr = by_round[r]
    cells = []
    for t in targets:
        if t not in rr:
            continue
        c = "%s %.1fk" % (t, float(rr[t]["rps"]) / 1e3)
        if "bodies" in rr[t] and rr[t].get("exhausted") is not None and t != "status":
            c += " (%.2fs%s)" % (float(rr[t]["secs"]),
                                 ", drafts ran out" if rr[t]["exhausted"] == "1" else "")
        cells.append(c)
    pair = ""
    if "getinfo" in rr:
        for t in ("submit", "status", "complete"):
            if t in rr:
                pair += ", %s/getinfo %.1f%%" % (t, 100 * float(rr[t]["rps"]) /
                                                 float(rr["getinfo"]["rps"]))
    print("  round %d: %s%s; others up to %.2f cores%s" % (
        r, ", ".join(cells), pair, others(rr),
        "" if r in quiet else "  NOISY" + ("" if r in basis else ", left out")))
allrs = [kv for rr in by_round.values() for kv in rr.values()]
clients = [float(kv["client_cores"]) for kv in allrs]
print("client fxb-bench-auth: %.2f cores (median over all runs); fxb-server / redis-server "
      "cores per row: %s" % (statistics.median(clients), ", ".join(
          "%s %.2f / %.2f" % (t, med(rows[t], "cpu0_cores"), med(rows[t], "cpu1_cores"))
          for t in targets if t in rows and has(rows[t], "cpu0_cores") and
          has(rows[t], "cpu1_cores"))))
for t in ("submit", "status", "complete"):
    rr = ratios(t)
    if rr:
        print("%s / getinfo: %.2f%% (median of the per-round ratios, %.2f..%.2f%%): "
              "getinfo is %.1fx faster" % (t, 100 * statistics.median(rr), 100 * min(rr),
                                             100 * max(rr), 1 / statistics.median(rr)))
if len(quiet) < want:
    print("WARNING: only %d of the %d quiet rounds wanted: the machine was busy; the figures "
          "are noisy" % (len(quiet), want))
errors = sum(int(kv["errors"]) for kv in allrs)
if errors:
    print("ERRORS: %d calls did not end OK with the expected answer (see the client output)" %
          errors)
sys.exit(3 if errors else 0)
EOF
((report_rc == 0 || report_rc == 3)) || die "the report failed (exit $report_rc)"
{
    cat "$TMP/table.txt"
    for c in "${CHECKS[@]}"; do
        echo "check afterwards (GetApplication of a sample): $c"
    done
    [[ -n $WALLET_NOTE ]] && echo "$WALLET_NOTE"
    [[ -n $AOF_BYTES ]] && echo "AOF after the run: $((AOF_BYTES / 1024 / 1024)) MiB," \
        "redis used_memory $(rcli INFO memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')," \
        "$(rcli DBSIZE) keys"
    if [[ -s $TMP/breakdown.txt ]]; then
        echo
        echo "Redis per call ($BREAKDOWN_CALLS-call breakdown runs: counts from MONITOR," \
            "the commands of Lua scripts apart; redis us/call from INFO commandstats of a" \
            "run without MONITOR, all executions of the command, an EVALSHA's including" \
            "its script's commands):"
        cat "$TMP/breakdown.txt"
    fi
} | tee -a "$TMP/report.txt" >/dev/null
sed -n '/^medians over/,$p' "$TMP/report.txt"
[[ -n $OUT ]] && cp "$TMP/report.txt" "$OUT"
if [[ $STRICT == 1 ]]; then
    exit "$report_rc"
fi
exit 0
