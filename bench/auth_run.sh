#!/usr/bin/env bash
# The authentication benchmark: an authenticated unary RPC (token check + one
# Redis round trip) against the same RPC without auth, side by side in one
# run, with N_TOKENS distinct live tokens in rotation; and the same RPC made
# under a proxy grant with N_TOKENS delegated tokens (deleg). See
# bench/README.md.
#
# Settings (environment variables):
#   DURATION=3      seconds of each measured run
#   C=20            connections of the client (fxb-bench-auth -c)
#   M=10            calls outstanding per connection (-m)
#   T=1             client threads (2-core machine: client 1, server the rest)
#   WORKERS=1       FXB_WORKERS of fxb-server
#   ROUNDS=9        quiet rounds wanted; each target runs once per round, in
#                   an order that rotates; the table shows medians, the
#                   verdict the median of the per-round auth/noauth ratios
#                   (and deleg/auth the same way, as an extra line)
#   QUIET_MAX=0.10  a round is noisy when, during one of its runs, other
#                   processes used more than this many cores; noisy rounds
#                   are left out of the figures when >= 3 rounds are quiet
#   EXTRA_ROUNDS=12 rounds that may be added to replace noisy ones
#   WARMUP=         warm-up calls before each measured run (default 5000)
#   N_TOKENS=1000   distinct tokens in rotation for the auth row, and
#                   distinct delegated tokens (one grant each) for deleg
#   MISS_TOKENS=4096  distinct tokens in rotation for the miss row, against a
#                   second fxb-server whose token cache holds 1024 (the
#                   smallest allowed): every call misses the cache
#   TARGETS="noauth auth auth1 miss deleg"   rows to measure (bench/README.md)
#   GOAL=0.80       the goal ratio auth / noauth
#   TOKEN_BENCH=1   0: skip the fxb-bench-token figures (cache-miss path)
#   BUILD_DIR=      where the binaries are (default build/, see run.sh)
#   SKIP_BUILD=0    1: do not run cmake, use the binaries as they are
#   STRICT=0        1: exit 3 when the goal is not met or any error was seen
#   OUT=            also write the report to this file
#   KEEP_TMP=0      1: keep the temporary folder (logs, client output)
#   RUN_TIMEOUT=120 seconds one client run may take beyond DURATION
#   START_TIMEOUT=20 seconds a server may take to open its port
#   PERF=0          1: perf record -g the server during the first auth run
#                   (report kept in the temporary folder; implies KEEP_TMP=1)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=auth-bench # log / die
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/bench/lib.sh"
DURATION=${DURATION:-3}
C=${C:-20}
M=${M:-10}
T=${T:-1}
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-9}
QUIET_MAX=${QUIET_MAX:-0.10}
EXTRA_ROUNDS=${EXTRA_ROUNDS:-12}
WARMUP=${WARMUP:-5000}
N_TOKENS=${N_TOKENS:-1000}
MISS_TOKENS=${MISS_TOKENS:-4096}
TARGETS=${TARGETS:-"noauth auth auth1 miss deleg"}
GOAL=${GOAL:-0.80}
TOKEN_BENCH=${TOKEN_BENCH:-1}
BUILD_DIR=${BUILD_DIR:-}
SKIP_BUILD=${SKIP_BUILD:-0}
STRICT=${STRICT:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
START_TIMEOUT=${START_TIMEOUT:-20}
PERF=${PERF:-0}
# Access tokens live at most 900 s: the whole measuring must fit in that.
TOKEN_TTL_S=900
# Delegated tokens live at most 600 s (FXB_GRANT_TOKEN_TTL_S) from their
# exchange, which comes right after the sign-ins: with deleg, the measuring
# must fit in that instead.
DELEG_TTL_S=600

ECHO_PATH=/fxb.v1.DiagService/Echo
PROBE_PATH=/fxb.v1.DiagService/ProbeSignedIn
DELEG_PATH=/fxb.v1.DiagService/ProbeDelegated

for v in DURATION C M T WORKERS ROUNDS N_TOKENS MISS_TOKENS RUN_TIMEOUT START_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be an integer (got '$WARMUP')"
[[ $EXTRA_ROUNDS =~ ^[0-9]+$ ]] || die "EXTRA_ROUNDS must be an integer (got '$EXTRA_ROUNDS')"
[[ $QUIET_MAX =~ ^[0-9]*\.?[0-9]+$ ]] || die "QUIET_MAX must be a number like 0.10"
((C >= T)) || die "C ($C) must be >= T ($T)"
((N_TOKENS <= 100000 && MISS_TOKENS <= 100000)) ||
    die "N_TOKENS and MISS_TOKENS must be at most 100000 (FXB_OTP_DAILY_IP cap)"
[[ $GOAL =~ ^[0-9]*\.?[0-9]+$ ]] || die "GOAL must be a number like 0.80"
[[ $PERF == 1 ]] && KEEP_TMP=1
read -r -a TARGET_LIST <<<"$TARGETS"
NEED_MISS=0
NEED_DELEG=0
((${#TARGET_LIST[@]} > 0)) || die "TARGETS is empty"
for t in "${TARGET_LIST[@]}"; do
    case $t in
    noauth | auth | auth1) ;;
    miss) NEED_MISS=1 ;;
    deleg) NEED_DELEG=1 ;;
    *) die "unknown target '$t' (noauth, auth, auth1, miss, deleg)" ;;
    esac
done
N_SIGNIN=$N_TOKENS
((NEED_MISS && MISS_TOKENS > N_SIGNIN)) && N_SIGNIN=$MISS_TOKENS
# deleg: a principal and an agent account per delegated token
((NEED_DELEG && 2 * N_TOKENS > N_SIGNIN)) && N_SIGNIN=$((2 * N_TOKENS))
((N_SIGNIN <= 100000)) || die "deleg needs 2 x N_TOKENS accounts: at most 100000"
# 1024 entries in 64 shards of 16: a fixed rotation misses every time only
# when every shard sees more than 16 of the tokens
((NEED_MISS == 0 || MISS_TOKENS >= 4096)) ||
    log "WARNING: MISS_TOKENS=$MISS_TOKENS: some calls of the miss row may hit the cache"
# warm-up at ~10k calls/s is well under a second; 30 s of slack for the rest
budget=$((ROUNDS * ${#TARGET_LIST[@]} * (DURATION + 3) + 30))
TTL_S=$TOKEN_TTL_S
((NEED_DELEG)) && TTL_S=$DELEG_TTL_S
((budget < TTL_S - 60)) ||
    die "ROUNDS x targets x DURATION (~${budget}s) would outlive the ${TTL_S}s tokens"

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
BUILD_TARGETS=("${BINARIES[@]}")
[[ $TOKEN_BENCH == 1 ]] && BUILD_TARGETS+=(fxb-bench-token) # run if present

build_targets --reconfigure "${BUILD_TARGETS[@]}"
need_binaries "${BINARIES[@]}"
check_build_type --sanitizer

# --- processes --------------------------------------------------------------
PERF_PID= # perf record (PERF=1): a pid while it runs, then "stopped"
# shellcheck disable=SC2317 # invoked by cleanup (bench/lib.sh)
stop_perf() { # the clean-up hook: perf first, so that it writes its data
    if [[ $PERF_PID =~ ^[0-9]+$ ]]; then
        stop_pid INT "$PERF_PID"
    fi
}
CLEANUP_HOOK=stop_perf
tmp_setup fxb-auth-bench

read -r REDIS_PORT FXB_PORT METRICS_PORT MISS_PORT <<<"$(free_ports 4)"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0

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
# development: DiagService and the dev SMS sink (codes in a Redis stream);
# code caps raised so that one address can sign in every account; tokens at
# their longest lifetime; the token cache at its default size (65536).
start_bg fxb-server env FXB_ENV=development FXB_LISTEN="127.0.0.1:$FXB_PORT" \
    FXB_REDIS_URL="$REDIS_URL" FXB_METRICS_LISTEN="127.0.0.1:$METRICS_PORT" \
    FXB_LOG_LEVEL=warn FXB_DATA_DIR="$TMP/data" FXB_WORKERS="$WORKERS" \
    FXB_OTP_DAILY_IP=100000 FXB_OTP_DAILY_PHONE=1000 FXB_ACCESS_TOKEN_TTL_S=$TOKEN_TTL_S \
    "$BUILD_DIR/fxb-server"
# the first fxb-server up before the second starts: a development server
# generates the eKYC simulator's key pair in FXB_DATA_DIR/keys/ekyc when it
# is missing, and two doing it at once in the same folder can fail
wait_port fxb-server "${PID[fxb-server]}" "$FXB_PORT"
if ((NEED_MISS)); then
    # The same keys and Redis (it accepts the tokens the first one issued),
    # with the smallest token cache: MISS_TOKENS in a fixed rotation through
    # an LRU of 1024 entries never hit. Idle while the other rows run.
    start_bg fxb-server-miss env FXB_ENV=development FXB_LISTEN="127.0.0.1:$MISS_PORT" \
        FXB_REDIS_URL="$REDIS_URL" FXB_METRICS_LISTEN=off FXB_LOG_LEVEL=warn \
        FXB_DATA_DIR="$TMP/data" FXB_WORKERS="$WORKERS" FXB_TOKEN_CACHE_ENTRIES=1024 \
        "$BUILD_DIR/fxb-server"
    wait_port fxb-server-miss "${PID[fxb-server-miss]}" "$MISS_PORT"
fi

# --- tokens -----------------------------------------------------------------
mkdir -p "$TMP/py"
protoc -I"$ROOT/proto" --python_out="$TMP/py" "$ROOT/proto/fxb/v1/auth.proto" \
    "$ROOT/proto/fxb/v1/proxy.proto" || die "protoc --python_out failed"
DELEG_ARGS=()
if ((NEED_DELEG)); then
    DELEG_ARGS=(--delegated-out "$TMP/deleg-tokens.txt" --delegated "$N_TOKENS"
        --grants-out "$TMP/grants.txt")
    log "signing in $N_SIGNIN accounts, then $N_TOKENS delegated tokens (ExchangeToken)"
else
    log "signing in $N_SIGNIN accounts"
fi
SIGNED_IN_AT=$SECONDS # the first token's lifetime starts here
fg_run 300 "$TMP/signin.log" "$PY" "$ROOT/bench/auth_signin.py" --target "127.0.0.1:$FXB_PORT" \
    --redis-url "$REDIS_URL" --py-dir "$TMP/py" --out "$TMP/all-tokens.txt" -n "$N_SIGNIN" \
    "${DELEG_ARGS[@]}" || {
    cat "$TMP/signin.log" >&2
    die "signing in failed"
}
cat "$TMP/signin.log" >&2
head -n "$N_TOKENS" "$TMP/all-tokens.txt" >"$TMP/tokens.txt"
head -n "$MISS_TOKENS" "$TMP/all-tokens.txt" >"$TMP/miss-tokens.txt"
head -n1 "$TMP/tokens.txt" >"$TMP/token1.txt"
DELEG_EXPIRES_AT=0 # epoch seconds: the first delegated token expires then
if ((NEED_DELEG)); then
    DELEG_EXPIRES_AT=$(awk 'NR == 1 || $2 < m { m = $2 } END { printf "%d", m / 1000 }' \
        "$TMP/grants.txt")
    ((DELEG_EXPIRES_AT > EPOCHSECONDS)) || die "the delegated tokens have expired already"
fi

# --- measuring --------------------------------------------------------------
printf '\x20\x01' >"$TMP/echo.bin"  # EchoRequest{touch_store: true}
printf '\x10\x01' >"$TMP/probe.bin" # ProbeRequest{touch_store: true}

target_args() { # target_args TARGET: PORT SERVER_PID METHOD BODY TOKENS
    case $1 in
    noauth) echo "$FXB_PORT ${PID[fxb-server]} $ECHO_PATH $TMP/echo.bin -" ;;
    auth) echo "$FXB_PORT ${PID[fxb-server]} $PROBE_PATH $TMP/probe.bin $TMP/tokens.txt" ;;
    auth1) echo "$FXB_PORT ${PID[fxb-server]} $PROBE_PATH $TMP/probe.bin $TMP/token1.txt" ;;
    miss) echo "$MISS_PORT ${PID[fxb-server-miss]} $PROBE_PATH $TMP/probe.bin $TMP/miss-tokens.txt" ;;
    deleg) echo "$FXB_PORT ${PID[fxb-server]} $DELEG_PATH $TMP/probe.bin $TMP/deleg-tokens.txt" ;;
    esac
}

RESULTS=$TMP/results.txt
: >"$RESULTS"
{
    echo "fxb auth bench: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(nproc) cores, libgrpc $(dpkg-query -W -f '${Version}' libgrpc-dev 2>/dev/null || echo '?')"
    echo "DURATION=${DURATION}s C=$C M=$M T=$T WORKERS=$WORKERS ROUNDS=$ROUNDS WARMUP=$WARMUP" \
        "N_TOKENS=$N_TOKENS MISS_TOKENS=$MISS_TOKENS build=$BUILD_DIR (${build_type:-?})"
} | tee "$TMP/report.txt"

n_targets=${#TARGET_LIST[@]}
quiet_rounds=0
r=0
while ((quiet_rounds < ROUNDS && r < ROUNDS + EXTRA_ROUNDS)); do
    r=$((r + 1))
    if ((SECONDS - SIGNED_IN_AT > TOKEN_TTL_S - 60 - n_targets * (DURATION + 3))); then
        log "stopping after $((r - 1)) rounds: the tokens expire soon"
        break
    fi
    if ((NEED_DELEG && EPOCHSECONDS > DELEG_EXPIRES_AT - 60 - n_targets * (DURATION + 3))); then
        log "stopping after $((r - 1)) rounds: the delegated tokens expire soon"
        break
    fi
    noisy=0
    for ((k = 0; k < n_targets; k++)); do
        t=${TARGET_LIST[$(((k + r - 1) % n_targets))]} # rotate the order per round
        read -r port server_pid method body tokens <<<"$(target_args "$t")"
        if [[ $PERF == 1 && $t == auth && -z $PERF_PID ]] && command -v perf >/dev/null; then
            perf record -g -o "$TMP/perf.data" -p "${PID[fxb-server]}" \
                >"$TMP/perf-record.log" 2>&1 &
            PERF_PID=$!
        fi
        rc=0
        fg_run $((DURATION + RUN_TIMEOUT)) "$TMP/$t.$r.out" "$BUILD_DIR/fxb-bench-auth" \
            -c "$C" -m "$M" -t "$T" -d "$DURATION" -w "$WARMUP" -l "$t" \
            -p "$server_pid" -p "${PID[redis]}" \
            "127.0.0.1:$port" "$method" "$body" "$tokens" || rc=$?
        if [[ -n $PERF_PID && $PERF_PID != stopped ]]; then
            stop_pid INT "$PERF_PID"
            PERF_PID=stopped
        fi
        if ((rc == 124)); then
            die "fxb-bench-auth ($t) did not finish within $((DURATION + RUN_TIMEOUT))s"
        elif ((rc != 0 && rc != 3)); then
            tail -n 20 "$TMP/$t.$r.out" >&2
            die "fxb-bench-auth ($t) failed (exit $rc)"
        fi
        line=$(grep '^RESULT ' "$TMP/$t.$r.out") || die "fxb-bench-auth ($t) printed no result"
        echo "$line round=$r" >>"$RESULTS"
        grep -v '^RESULT ' "$TMP/$t.$r.out" | sed "s/^/  round $r /" >&2 || true
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

echo
report_rc=0
"$PY" - "$RESULTS" "$GOAL" "$QUIET_MAX" "$ROUNDS" "${TARGET_LIST[@]}" >"$TMP/table.txt" <<'EOF' || report_rc=$?
import statistics, sys
path, goal, quiet_max, want = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
targets = sys.argv[5:]
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
what = {"noauth": "Echo{touch_store}, no token (baseline)",
        "auth": "ProbeSignedIn{touch_store}, rotating tokens",
        "auth1": "ProbeSignedIn{touch_store}, one token",
        "miss": "ProbeSignedIn{touch_store}, all cache misses",
        "deleg": "ProbeDelegated{touch_store}, delegated tokens"}
med = lambda rs, k: statistics.median(float(r[k]) for r in rs if k in r)
has = lambda rs, k: all(k in r for r in rs)
print("medians over %s" % ("the %d quiet rounds" % len(basis) if basis is quiet else
                           "all %d rounds (fewer than 3 were quiet)" % len(basis)))
base = med(rows["noauth"], "rps") if "noauth" in rows else None
print("%-7s %-44s %8s %17s %7s %7s %6s %7s %8s %6s" % (
    "target", "what", "req/s", "(min..max)", "p50 ms", "p99 ms", "errors", "vs base",
    "srv us/c", "srv cores"))
for t in targets:
    rs = rows.get(t)
    if not rs:
        continue
    rps = [float(r["rps"]) for r in rs]
    ratio = "%6.1f%%" % (100 * med(rs, "rps") / base) if base else "      -"
    srv = "%8.1f" % med(rs, "cpu0_us_per_call") if has(rs, "cpu0_us_per_call") else "       -"
    cores = "%6.2f" % med(rs, "cpu0_cores") if has(rs, "cpu0_cores") else "     -"
    print("%-7s %-44s %7.1fk %17s %7.2f %7.2f %6d %7s %8s %6s" % (
        t, what[t], med(rs, "rps") / 1e3,
        "(%.1fk..%.1fk)" % (min(rps) / 1e3, max(rps) / 1e3),
        med(rs, "p50_us") / 1e3, med(rs, "p99_us") / 1e3,
        sum(int(r["errors"]) for r in rs), ratio, srv, cores))
print()
print("every round (req/s; others = cores used by other processes, quiet <= %.2f):" % quiet_max)
for r in sorted(by_round):
    rr = by_round[r]
    cells = ["%s %.1fk" % (t, float(rr[t]["rps"]) / 1e3) for t in targets if t in rr]
    pair = ""
    if "noauth" in rr and "auth" in rr:
        pair = ", auth/noauth %.1f%%" % (100 * float(rr["auth"]["rps"]) / float(rr["noauth"]["rps"]))
    if "deleg" in rr and "auth" in rr:
        pair += ", deleg/auth %.1f%%" % (100 * float(rr["deleg"]["rps"]) / float(rr["auth"]["rps"]))
    steal = max(float(x.get("steal_cores", 0)) for x in rr.values())
    print("  round %d: %s%s; others up to %.2f cores%s%s" % (
        r, ", ".join(cells), pair, others(rr), " (steal %.2f)" % steal if steal >= 0.01 else "",
        "" if r in quiet else "  NOISY" + ("" if r in basis else ", left out")))
allrs = [kv for rr in by_round.values() for kv in rr.values()]
clients = [float(kv["client_cores"]) for kv in allrs]
redis = [float(kv["cpu1_cores"]) for kv in allrs if "cpu1_cores" in kv]
print("client fxb-bench-auth: %.2f cores, redis-server: %.2f cores (medians over all runs)" % (
    statistics.median(clients), statistics.median(redis) if redis else float("nan")))
rc = 0
dpairs = [by_round[r] for r in basis if "deleg" in by_round[r] and "auth" in by_round[r]]
if dpairs:
    dr = [float(rr["deleg"]["rps"]) / float(rr["auth"]["rps"]) for rr in dpairs]
    print("deleg / auth: %.1f%% (median of the per-round ratios, %.1f..%.1f%%; ratio of the "
          "medians %.1f%%)" % (100 * statistics.median(dr), 100 * min(dr), 100 * max(dr),
                               100 * med(rows["deleg"], "rps") / med(rows["auth"], "rps")))
    for i, name in ((0, "fxb-server"), (1, "redis-server")):
        k = "cpu%d_us_per_call" % i
        d = [float(rr["deleg"][k]) - float(rr["auth"][k]) for rr in dpairs
             if k in rr["deleg"] and k in rr["auth"]]
        if d:
            print("%s CPU per call, deleg - auth: %+.1f us (median of the per-round "
                  "differences)" % (name, statistics.median(d)))
pairs = [by_round[r] for r in basis if "noauth" in by_round[r] and "auth" in by_round[r]]
if pairs:
    ratio = statistics.median(float(rr["auth"]["rps"]) / float(rr["noauth"]["rps"]) for rr in pairs)
    print("auth / noauth: %.1f%% (median of the per-round ratios; ratio of the medians %.1f%%)" % (
        100 * ratio, 100 * med(rows["auth"], "rps") / base))
    srv = [float(rr["auth"]["cpu0_us_per_call"]) - float(rr["noauth"]["cpu0_us_per_call"])
           for rr in pairs if "cpu0_us_per_call" in rr["auth"] and "cpu0_us_per_call" in rr["noauth"]]
    if srv:
        print("fxb-server CPU per call, auth - noauth: %+.1f us (median of the per-round "
              "differences)" % statistics.median(srv))
    if len(quiet) < want:
        print("WARNING: only %d of the %d quiet rounds wanted: the machine was busy; the figures "
              "are noisy" % (len(quiet), want))
    met = ratio >= goal
    print("target: authenticated >= %d%% of unauthenticated: %s" % (
        round(goal * 100), "MET" if met else "NOT MET"))
    rc = 0 if met else 3
errors = sum(int(kv["errors"]) for kv in allrs)
if errors:
    print("ERRORS: %d calls did not end with status OK (see the client output)" % errors)
    rc = 3
sys.exit(rc)
EOF
((report_rc == 0 || report_rc == 3)) || die "the report failed (exit $report_rc)"
tee -a "$TMP/report.txt" <"$TMP/table.txt"
if ((NEED_DELEG)); then
    # every delegated call appends an act to its grant's activity stream
    read -r gid _ <"$TMP/grants.txt"
    xlen=$(redis-cli -p "$REDIS_PORT" XLEN "{g:$gid}:activity") || die "redis-cli XLEN failed"
    deleg_calls=$(awk '$2 == "label=deleg" { for (i = 3; i <= NF; i++) if ($i ~ /^calls=/) \
        n += substr($i, 7) } END { printf "%d", n }' "$RESULTS")
    echo "activity stream of one grant ({g:$gid}:activity): $xlen acts (the exchange," \
        "plus its share of the $deleg_calls measured deleg calls and of the warm-ups)" |
        tee -a "$TMP/report.txt"
fi

if [[ $TOKEN_BENCH == 1 && ! -x $BUILD_DIR/fxb-bench-token ]]; then
    log "no $BUILD_DIR/fxb-bench-token: the per-token figures are left out"
elif [[ $TOKEN_BENCH == 1 ]]; then
    # The cache-miss path in isolation (no server): what every call would
    # pay without the verified-token cache.
    echo | tee -a "$TMP/report.txt"
    echo "per-token check cost without the server (fxb-bench-token --quick 1):" |
        tee -a "$TMP/report.txt"
    fg_run 120 "$TMP/token-bench.out" "$BUILD_DIR/fxb-bench-token" --quick 1 ||
        die "fxb-bench-token failed: $(tail -n 5 "$TMP/token-bench.out")"
    grep -E '^(path|libjwt ES256|fxb verify|  token length|fxb check \((miss|cache hit))' \
        "$TMP/token-bench.out" | sed 's/^/  /' | tee -a "$TMP/report.txt"
fi
if [[ -f $TMP/perf.data ]]; then
    perf report -i "$TMP/perf.data" --no-children --stdio -g none --sort dso,symbol 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 60 >"$TMP/perf.txt" || true
    log "perf profile of the server during the first auth run: $TMP/perf.txt ($TMP/perf.data)"
fi
[[ -n $OUT ]] && cp "$TMP/report.txt" "$OUT"
if [[ $STRICT == 1 ]]; then
    exit "$report_rc"
fi
exit 0
