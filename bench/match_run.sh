#!/usr/bin/env bash
# The city-scale matching benchmark (issue 7): one new benefit policy of 3-5
# conditions matched over every synthetic person (6.1 M by default), with
# the list of matched subjects produced, by fxb's matching index
# (services/benefit/index.h, in fxb-bench-match) and by PostgreSQL 15
# evaluating the same rule as a WHERE over the same rows, side by side in
# one run; and a single profile change re-evaluated against 1,000 policies.
# See bench/README.md.
#
# Settings (environment variables):
#   PERSONS=6100000    synthetic persons (rows of both sides)
#   ENTERPRISES=500000 synthetic enterprises
#   SEED=20240607      generator seed (same data on both sides, every run)
#   TODAY=20250601     the evaluation date (ages are whole years on it)
#   ROUNDS=3           rounds; in each, every rule is measured on PostgreSQL
#                      (every config) and then on fxb, back to back; ratios
#                      are taken per round, the verdict is their median
#   PG_REPS=5          PostgreSQL runs per rule and config: the best counts
#   BEST=5             fxb timed matches per rule: the best counts
#   MEDIAN=20          further fxb timed matches: their median is shown
#   POLICIES=1000      random policies for the single-change figure
#   CHANGES=10000      random single-profile changes
#   RULES="R1 R2 R3 R4 E1"   rules to measure (defined below)
#   GOAL=10            goal: PostgreSQL's best / fxb's best, per rule
#   CHANGE_GOAL_US=1000  goal: p99 of one change against POLICIES, in µs
#   PG_BIN=/usr/lib/postgresql/15/bin
#   PG_USER=postgres   the OS user PostgreSQL runs as when this runs as root
#   PG_SHARED_BUFFERS=4GB  PG_WORK_MEM=64MB  PG_EFFECTIVE_CACHE=16GB
#   PG_CONFIGS="seq seq-nojit idx idx-nojit"   PostgreSQL configurations:
#                      seq = index scans disabled (enable_indexscan,
#                      enable_bitmapscan, enable_indexonlyscan off: the plan
#                      of a table without indexes), idx = the planner's
#                      choice with the indexes below; -nojit = jit off
#   BUILD_DIR=         where fxb-bench-match is (default build/, or
#                      build-bench/ when build/ is not a plain Release build)
#   SKIP_BUILD=0       1: do not run cmake, use BUILD_DIR as it is
#   STRICT=0           1: exit 3 when a goal is not met
#   OUT=               also write the report to this file
#   KEEP_TMP=0         1: keep the temporary folder (CSV, PostgreSQL's data
#                      folder and log, raw results)
# Exit status: 0 after a report, 1 when setup or a run failed or when the
# two sides' counts or lists disagree, 3 with STRICT=1 when a goal is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=match-bench # log / die
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/bench/lib.sh"
PERSONS=${PERSONS:-6100000}
ENTERPRISES=${ENTERPRISES:-500000}
SEED=${SEED:-20240607}
TODAY=${TODAY:-20250601}
ROUNDS=${ROUNDS:-3}
PG_REPS=${PG_REPS:-5}
BEST=${BEST:-5}
MEDIAN=${MEDIAN:-20}
POLICIES=${POLICIES:-1000}
CHANGES=${CHANGES:-10000}
RULES=${RULES:-"R1 R2 R3 R4 E1"}
GOAL=${GOAL:-10}
CHANGE_GOAL_US=${CHANGE_GOAL_US:-1000}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-postgres}
PG_SHARED_BUFFERS=${PG_SHARED_BUFFERS:-4GB}
PG_WORK_MEM=${PG_WORK_MEM:-64MB}
PG_EFFECTIVE_CACHE=${PG_EFFECTIVE_CACHE:-16GB}
PG_CONFIGS=${PG_CONFIGS:-"seq seq-nojit idx idx-nojit"}
BUILD_DIR=${BUILD_DIR:-}
SKIP_BUILD=${SKIP_BUILD:-0}
STRICT=${STRICT:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}

for v in PERSONS ENTERPRISES SEED ROUNDS PG_REPS BEST MEDIAN POLICIES CHANGES; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be an integer (got '${!v}')"
done
for v in PERSONS ROUNDS PG_REPS BEST MEDIAN POLICIES CHANGES; do
    ((${!v} > 0)) || die "$v must be positive"
done
[[ $TODAY =~ ^[0-9]{8}$ ]] || die "TODAY must be YYYYMMDD (got '$TODAY')"
[[ $GOAL =~ ^[0-9]*\.?[0-9]+$ ]] || die "GOAL must be a number"
[[ $CHANGE_GOAL_US =~ ^[0-9]*\.?[0-9]+$ ]] || die "CHANGE_GOAL_US must be a number"
T="${TODAY:0:4}-${TODAY:4:2}-${TODAY:6:2}" # ISO date for SQL
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
command -v "$PY" >/dev/null || die "python3 is needed for the report"

# --- the rules: fxb's text and the same rule as SQL, translated by hand ------
# Three-valued logic on both sides (rule.h: a condition on an unknown value
# is UNKNOWN, and only TRUE matches; SQL's WHERE does the same with NULL).
# age is whole years on TODAY: `age >= N` is birth_date <= TODAY - N years,
# `age < N` is birth_date > TODAY - N years, `age <= N` is age < N + 1.
declare -A SUBJ FXB SQL
before() { echo "(DATE '$T' - INTERVAL '$1 years')::date"; }
SUBJ[R1]=person
FXB[R1]='age >= 80 && district in {"红旗区", "卫滨区"} && !receives_pension'
SQL[R1]="birth_date <= $(before 80) AND district IN ('红旗区', '卫滨区') AND NOT receives_pension"
SUBJ[R2]=person
FXB[R2]='low_income && disability_level >= 2 && household_type == "rural" && age < 60'
SQL[R2]="low_income AND disability_level >= 2 AND household_type = 'rural' AND birth_date > $(before 60)"
SUBJ[R3]=person
FXB[R3]='children >= 2 && age >= 25 && age <= 45 && employment == "unemployed" && district == "获嘉县"'
SQL[R3]="children >= 2 AND birth_date <= $(before 25) AND birth_date > $(before 46) AND employment = 'unemployed' AND district = '获嘉县'"
SUBJ[R4]=person # a broad one: about 15% of everyone, to show the cost of a long list
FXB[R4]='age >= 60 && receives_pension && district != "红旗区"'
SQL[R4]="birth_date <= $(before 60) AND receives_pension AND district <> '红旗区'"
SUBJ[E1]=enterprise
FXB[E1]='size_class in {"micro", "small"} && industry_code in {"C", "I", "M"} && established_date >= "2020-01-01" && tax_credit_rating in {"A", "B"} && certifications contains "科技型中小企业"'
SQL[E1]="size_class IN ('micro', 'small') AND industry_code IN ('C', 'I', 'M') AND established_date >= DATE '2020-01-01' AND tax_credit_rating IN ('A', 'B') AND certifications @> ARRAY['科技型中小企业']"
# The indexes of the idx configuration: what a DBA would add for such rules
# (the planner picks among them, or keeps the sequential scan).
INDEXES=(
    "CREATE INDEX persons_birth ON persons (birth_date)"
    "CREATE INDEX persons_district_birth ON persons (district, birth_date)"
    "CREATE INDEX persons_district_emp_birth ON persons (district, employment, birth_date)"
    "CREATE INDEX persons_low_income_birth ON persons (birth_date) WHERE low_income"
    "CREATE INDEX persons_pension_birth ON persons (birth_date) WHERE receives_pension"
    "CREATE INDEX enterprises_established ON enterprises (established_date)"
    "CREATE INDEX enterprises_industry_size ON enterprises (industry_code, size_class)"
    "CREATE INDEX enterprises_certs ON enterprises USING gin (certifications)"
)
read -r -a RULE_LIST <<<"$RULES"
((${#RULE_LIST[@]} > 0)) || die "RULES is empty"
for r in "${RULE_LIST[@]}"; do
    [[ -n ${FXB[$r]:-} ]] || die "unknown rule '$r' (R1 R2 R3 R4 E1)"
    if [[ ${SUBJ[$r]} == enterprise ]] && ((ENTERPRISES == 0)); then
        die "rule $r needs ENTERPRISES > 0"
    fi
done
read -r -a CONFIGS <<<"$PG_CONFIGS"
for c in "${CONFIGS[@]}"; do
    [[ $c == @(seq|seq-nojit|idx|idx-nojit) ]] || die "unknown PG config '$c'"
done
table_of() { [[ ${SUBJ[$1]} == person ]] && echo persons || echo enterprises; }

# --- packages -----------------------------------------------------------------
if [[ ! -x $PG_BIN/initdb || ! -x $PG_BIN/psql ]]; then
    log "no PostgreSQL in $PG_BIN: deploy/install-deps.sh --bench (postgresql-15)"
    if ((EUID == 0)); then
        "$ROOT/deploy/install-deps.sh" --bench >&2 || die "install-deps.sh --bench failed"
    else
        command -v sudo >/dev/null || die "PostgreSQL 15 is missing: run deploy/install-deps.sh --bench"
        sudo "$ROOT/deploy/install-deps.sh" --bench >&2 || die "install-deps.sh --bench failed"
    fi
    [[ -x $PG_BIN/initdb ]] || die "still no $PG_BIN/initdb"
fi
if ((EUID == 0)); then
    id "$PG_USER" >/dev/null 2>&1 || die "PostgreSQL will not run as root and there is no user $PG_USER"
    pg() { runuser -u "$PG_USER" -- "$@"; }
else
    pg() { "$@"; }
fi

# --- build --------------------------------------------------------------------
build_targets --reconfigure fxb-bench-match
need_binaries fxb-bench-match
BIN=$BUILD_DIR/fxb-bench-match
check_build_type --sanitizer --empty-unknown

# --- temporary folder, clean-up -------------------------------------------------
PG_STARTED=0
FXB_PID= # fxb-bench-match run --serve (a coprocess) while it runs
# the clean-up hook: fxb-bench-match, then PostgreSQL (pg_ctl stop)
# shellcheck disable=SC2317 # invoked by cleanup (bench/lib.sh)
stop_fxb_and_pg() {
    if [[ -n $FXB_PID ]]; then
        stop_pid TERM "$FXB_PID"
    fi
    if ((PG_STARTED)); then
        pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            log "pg_ctl stop failed (PostgreSQL may still run: $PGDATA)"
    fi
}
CLEANUP_HOOK=stop_fxb_and_pg
KEPT_WHAT=files # "files kept in $TMP"
tmp_setup fxb-match-bench
chmod 755 "$TMP" # PostgreSQL's user must reach its folders inside
PGDATA=$TMP/pg
SOCK=$TMP/sock

RESULTS=$TMP/results.txt
: >"$RESULTS"
{
    echo "fxb matching bench: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "$("$PG_BIN/postgres" --version), libroaring $(dpkg-query -W -f '${Version}' libroaring-dev 2>/dev/null || echo '?')"
    echo "PERSONS=$PERSONS ENTERPRISES=$ENTERPRISES SEED=$SEED TODAY=$TODAY ROUNDS=$ROUNDS" \
        "PG_REPS=$PG_REPS BEST=$BEST MEDIAN=$MEDIAN POLICIES=$POLICIES CHANGES=$CHANGES" \
        "build=$BUILD_DIR (${build_type:-?}); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$TMP/report.txt"

# --- data -----------------------------------------------------------------------
log "generating $PERSONS persons and $ENTERPRISES enterprises (CSV)"
"$BIN" gen --persons "$PERSONS" --enterprises "$ENTERPRISES" --seed "$SEED" --today "$TODAY" \
    --out "$TMP/data" >"$TMP/gen.out" 2>&1 || die "generating failed: $(tail -n 5 "$TMP/gen.out")"
chmod 755 "$TMP/data"

# --- PostgreSQL -------------------------------------------------------------------
mkdir -p "$PGDATA" "$SOCK" "$TMP/pglog"
if ((EUID == 0)); then chown "$PG_USER" "$PGDATA" "$SOCK" "$TMP/pglog"; fi
log "initdb in $PGDATA"
pg "$PG_BIN/initdb" -D "$PGDATA" -U bench --auth=trust --locale=C --encoding=UTF8 --no-sync \
    >"$TMP/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$TMP/initdb.log")"
cat >>"$PGDATA/postgresql.conf" <<EOF
# fxb match bench: unix socket only; data fits in memory; durability off
# (it does not change how a SELECT runs); parallel query left at its defaults
listen_addresses = ''
unix_socket_directories = '$SOCK'
shared_buffers = $PG_SHARED_BUFFERS
work_mem = $PG_WORK_MEM
maintenance_work_mem = 1GB
effective_cache_size = $PG_EFFECTIVE_CACHE
random_page_cost = 1.1
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
autovacuum = off
statement_timeout = '600s'
EOF
pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$TMP/pglog/postgres.log" -w -t 60 start >/dev/null 2>&1 ||
    die "PostgreSQL did not start: $(tail -n 5 "$TMP/pglog/postgres.log")"
PG_STARTED=1
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -U bench -d postgres)
sql() { "${PSQL[@]}" -At -c "$1"; }

log "loading the CSV into PostgreSQL (COPY), VACUUM ANALYZE"
SECONDS_LOAD=$SECONDS
"${PSQL[@]}" >"$TMP/load.log" 2>&1 <<EOF || die "loading failed: $(tail -n 5 "$TMP/load.log")"
BEGIN;
CREATE TABLE persons (subject text NOT NULL, birth_date date, district text,
    disability_level smallint, low_income boolean, receives_pension boolean, employment text,
    children smallint, veteran boolean, household_type text);
\copy persons FROM '$TMP/data/persons.csv' WITH (FORMAT csv, FREEZE)
CREATE TABLE enterprises (subject text NOT NULL, industry_code text, size_class text,
    district text, employees integer, tax_credit_rating text, high_tech boolean,
    established_date date, certifications text[]);
\copy enterprises FROM '$TMP/data/enterprises.csv' WITH (FORMAT csv, FREEZE)
COMMIT;
VACUUM ANALYZE persons;
VACUUM ANALYZE enterprises;
EOF
load_s=$((SECONDS - SECONDS_LOAD))
SECONDS_IDX=$SECONDS
for ddl in "${INDEXES[@]}"; do
    sql "$ddl" >/dev/null || die "$ddl failed"
done
sql "ANALYZE persons; ANALYZE enterprises" >/dev/null
idx_s=$((SECONDS - SECONDS_IDX))
rm -f "$TMP/data/"*.csv # loaded: free the disk
{
    echo "PostgreSQL: loaded in ${load_s}s (COPY FREEZE + VACUUM ANALYZE), ${#INDEXES[@]} indexes in ${idx_s}s;" \
        "persons $(sql "SELECT pg_size_pretty(pg_table_size('persons'))") +" \
        "indexes $(sql "SELECT pg_size_pretty(pg_indexes_size('persons'))"), enterprises" \
        "$(sql "SELECT pg_size_pretty(pg_table_size('enterprises'))")"
    echo "PostgreSQL settings: max_parallel_workers_per_gather=$(sql 'SHOW max_parallel_workers_per_gather')" \
        "(default, not changed) max_parallel_workers=$(sql 'SHOW max_parallel_workers')" \
        "shared_buffers=$(sql 'SHOW shared_buffers') work_mem=$(sql 'SHOW work_mem')" \
        "jit=$(sql 'SHOW jit') (available: $(sql 'SELECT pg_jit_available()'))" \
        "random_page_cost=$(sql 'SHOW random_page_cost') collation C"
} | tee -a "$TMP/report.txt"
# warm the caches: one pass over both tables
sql "SELECT count(*) FROM persons; SELECT count(*) FROM enterprises" >/dev/null

config_sql() { # the SET statements of a configuration
    local c=$1
    if [[ $c == *-nojit ]]; then echo "SET jit = off;"; else echo "SET jit = on;"; fi
    if [[ $c == seq* ]]; then
        echo "SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;"
    else
        echo "SET enable_indexscan = on; SET enable_bitmapscan = on; SET enable_indexonlyscan = on;"
    fi
}

# counts, lists (MD5 of the sorted subjects, one per line) and plans, untimed
log "PostgreSQL: counts, list digests and plans"
for r in "${RULE_LIST[@]}"; do
    t=$(table_of "$r")
    line=$(sql "SELECT count(*), md5(coalesce(string_agg(subject || E'\\n', '' ORDER BY subject), '')) FROM $t WHERE ${SQL[$r]}") ||
        die "PostgreSQL failed on $r"
    echo "PGCOUNT rule=$r count=${line%%|*} md5=${line##*|}" >>"$RESULTS"
    for c in seq idx; do
        plan=$("${PSQL[@]}" -At <<EOF
$(config_sql "$c")
EXPLAIN (COSTS OFF) SELECT subject FROM $t WHERE ${SQL[$r]};
EOF
        ) || die "EXPLAIN failed on $r"
        echo "$plan" >"$TMP/plan.$r.$c.txt"
        nodes=$(grep -oE '(Parallel )?(Seq Scan|Bitmap Heap Scan|Bitmap Index Scan|Index Only Scan|Index Scan|BitmapAnd|BitmapOr)( using [a-z_]+)?' \
            <<<"$plan" | sed 's/ using / /' | tr ' ' '+' | paste -sd'|' -)
        workers=$(sed -n 's/.*Workers Planned: \([0-9]*\).*/\1/p' <<<"$plan" | head -n1)
        echo "PLAN rule=$r config=$c workers=${workers:-0} nodes=$nodes" >>"$RESULTS"
    done
done

# --- fxb: the index, built by fxb-bench-match from the same generator ------------------
fxb_rules=()
for r in "${RULE_LIST[@]}"; do
    fxb_rules+=(--rule "$r:${SUBJ[$r]}:${FXB[$r]}")
done
log "fxb: building the index of $PERSONS persons and $ENTERPRISES enterprises"
coproc FXB_PROC {
    exec "$BIN" run --persons "$PERSONS" --enterprises "$ENTERPRISES" --seed "$SEED" \
        --today "$TODAY" --best "$BEST" --median "$MEDIAN" --policies "$POLICIES" \
        --changes "$CHANGES" --serve "${fxb_rules[@]}" 2>"$TMP/fxb.err"
}
FXB_PID=$FXB_PROC_PID
exec {FXB_IN}>&"${FXB_PROC[1]}" {FXB_OUT}<&"${FXB_PROC[0]}"
fxb_line() { # fxb_line TIMEOUT: the next line of fxb-bench-match
    local line
    IFS= read -r -t "$1" -u "$FXB_OUT" line ||
        die "fxb-bench-match stopped answering: $(tail -n 5 "$TMP/fxb.err")"
    [[ $line != ERROR* ]] || die "fxb-bench-match: $line"
    printf '%s\n' "$line"
}
while :; do
    line=$(fxb_line 1800)
    echo "$line" >>"$RESULTS"
    [[ $line == READY* ]] && break
done

# --- rounds: PostgreSQL (every config) then fxb, rule by rule ----------------------------
for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round of $ROUNDS"
    for r in "${RULE_LIST[@]}"; do
        t=$(table_of "$r")
        {
            printf '%s\n' "\\timing off"
            printf '%s\n' "\\o /dev/null"
            for c in "${CONFIGS[@]}"; do
                config_sql "$c"
                printf '%s\n' "\\echo @ $c"
                printf '%s\n' "\\timing on"
                for ((i = 0; i < PG_REPS; i++)); do
                    echo "COPY (SELECT subject FROM $t WHERE ${SQL[$r]}) TO STDOUT;"
                done
                printf '%s\n' "\\timing off"
            done
        } >"$TMP/round.sql"
        "${PSQL[@]}" -f "$TMP/round.sql" >"$TMP/round.out" 2>&1 ||
            die "PostgreSQL failed on $r: $(tail -n 5 "$TMP/round.out")"
        awk -v round="$round" -v rule="$r" '
            /^@ / { c = $2; next }
            /^Time: / { t[c] = t[c] (t[c] == "" ? "" : ",") $2 }
            END { for (c in t) printf "PG round=%s rule=%s config=%s times=%s\n", round, rule, c, t[c] }
        ' "$TMP/round.out" >>"$RESULTS"
        echo "match $r" >&"$FXB_IN"
        line=$(fxb_line 600)
        echo "$line round=$round" >>"$RESULTS"
    done
done

log "fxb: one profile change against $POLICIES policies, $CHANGES times"
echo change >&"$FXB_IN"
fxb_line 1800 >>"$RESULTS"
echo quit >&"$FXB_IN"
wait "$FXB_PID" 2>/dev/null || true
FXB_PID=

# --- the report ---------------------------------------------------------------------------
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$TMP/report.txt"
echo
report_rc=0
"$PY" - "$RESULTS" "$GOAL" "$CHANGE_GOAL_US" "${RULE_LIST[@]}" >"$TMP/table.txt" <<'EOF' || report_rc=$?
import statistics, sys
path, goal, change_goal = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rules = sys.argv[4:]
kvs = []
for line in open(path):
    parts = line.split()
    if parts:
        kvs.append((parts[0], dict(p.split("=", 1) for p in parts[1:] if "=" in p)))
pgcount = {kv["rule"]: kv for k, kv in kvs if k == "PGCOUNT"}
plans = {(kv["rule"], kv["config"]): kv for k, kv in kvs if k == "PLAN"}
builds = [kv for k, kv in kvs if k == "BUILD"]
pg = {}   # (rule, round) -> {config: best ms}
for k, kv in kvs:
    if k == "PG":
        pg.setdefault((kv["rule"], int(kv["round"])), {})[kv["config"]] = min(
            float(x) for x in kv["times"].split(","))
fx = {}   # (rule, round) -> MATCH line
for k, kv in kvs:
    if k == "MATCH":
        fx[(kv["name"], int(kv["round"]))] = kv
rounds = sorted({r for (_, r) in fx})
med = statistics.median
for b in builds:
    print("fxb index, %s: %s rows built in %.1f s (generator ~%.1f s of it; optimize %.1f s), "
          "%d bitmaps, %.1f MiB of bitmaps + %.1f MiB of row blocks + %.1f MiB row->subject "
          "table (RSS +%.0f MiB)" % (
              b["subject"], b["rows"], float(b["ms"]) / 1e3, float(b["gen_ms"]) / 1e3,
              float(b.get("optimize_ms", 0)) / 1e3, int(b["bitmaps"]),
              int(b["bitmap_bytes"]) / 2**20, int(b.get("row_bytes", 0)) / 2**20,
              int(b["subject_bytes"]) / 2**20, int(b["rss_delta_kib"]) / 1024))
print()
configs = sorted({c for v in pg.values() for c in v},
                 key=lambda c: ["seq", "seq-nojit", "idx", "idx-nojit"].index(c))
print("ms; PostgreSQL: best of its runs per config, median over rounds; fxb: best / median of its runs, median over rounds")
hdr = "%-4s %-5s %4s %8s %8s %5s" % ("rule", "subj", "cond", "pg rows", "fxb rows", "list")
for c in configs:
    hdr += " %9s" % ("pg " + c)
hdr += " %8s %8s %8s %8s %8s %7s %15s %7s %7s" % ("pg best", "fxb best", "fxb med", "bitmap", "1st", "ratio", "(range)", "goal", "vs seq")
print(hdr)
rc = 0
mismatch = []
verdicts = []
seq_ratios = []
for rule in rules:
    ms = [fx[(rule, r)] for r in rounds if (rule, r) in fx]
    if not ms:
        continue
    pc = pgcount.get(rule, {})
    fcount, pcount = ms[0]["count"], pc.get("count", "?")
    same_list = pc.get("md5") == ms[0]["md5"]
    ok = fcount == pcount == ms[0]["eval_count"] and same_list
    if not ok:
        mismatch.append(rule)
    row = "%-4s %-5s %4s %8s %8s %5s" % (rule, "ent" if rule.startswith("E") else "pers",
                                        ms[0]["conditions"], pcount, fcount,
                                        "same" if same_list else "DIFF")
    for c in configs:
        v = [pg[(rule, r)][c] for r in rounds if c in pg.get((rule, r), {})]
        row += " %9.1f" % med(v) if v else " %9s" % "-"
    ratios, pgbest = [], []
    for r in rounds:
        if (rule, r) in pg and (rule, r) in fx:
            b = min(pg[(rule, r)].values())
            pgbest.append(b)
            ratios.append(b / float(fx[(rule, r)]["best_ms"]))
    ratio = med(ratios)
    met = ratio >= goal
    verdicts.append((rule, ratio, met))
    seqr = [min(v for c, v in pg[(rule, r)].items() if c.startswith("seq")) /
            float(fx[(rule, r)]["best_ms"]) for r in rounds
            if (rule, r) in fx and any(c.startswith("seq") for c in pg.get((rule, r), {}))]
    seq_ratios.append((rule, med(seqr) if seqr else None))
    row += " %8.1f %8.2f %8.2f %8.2f %8.2f %6.1fx %15s %7s" % (
        med(pgbest), med(float(m["best_ms"]) for m in ms), med(float(m["median_ms"]) for m in ms),
        med(float(m["bitmap_median_ms"]) for m in ms), float(ms[0]["first_ms"]), ratio,
        "(%.1f..%.1fx)" % (min(ratios), max(ratios)), "MET" if met else "NOT MET")
    row += " %6.1fx" % seq_ratios[-1][1] if seq_ratios[-1][1] else " %7s" % "-"
    print(row)
print()
print("columns: pg rows / fxb rows = matched subjects (fxb rows is also checked against "
      "fxb_rule_eval row by row); list = MD5 of the sorted subject lists; pg <config> = "
      "COPY (SELECT subject ...) TO STDOUT through psql, client-side \\timing; fxb best / med = "
      "fxb_index_match + the subject ids into a buffer; bitmap = the fxb_index_match part "
      "(median); 1st = fxb's first match of the process (cold, round 1); ratio = median over "
      "rounds of (PostgreSQL's best config in the round / fxb best in the round); vs seq = the "
      "same against PostgreSQL's best sequential-scan config (a table without indexes)")
print()
print("PostgreSQL plans (EXPLAIN, Workers Planned):")
for rule in rules:
    for c in ("seq", "idx"):
        p = plans.get((rule, c))
        if p:
            print("  %s %-3s workers=%s %s" % (rule, c, p["workers"], p["nodes"].replace("+", " ").replace("|", " / ")))
print()
print("every round (PostgreSQL best config ms / fxb best ms = ratio):")
for r in rounds:
    cells = []
    for rule in rules:
        if (rule, r) in pg and (rule, r) in fx:
            b = min(pg[(rule, r)].values())
            which = min(pg[(rule, r)], key=pg[(rule, r)].get)
            f = float(fx[(rule, r)]["best_ms"])
            cells.append("%s %.0f(%s)/%.2f=%.0fx" % (rule, b, which, f, b / f))
    print("  round %d: %s" % (r, ", ".join(cells)))
print()
for k, kv in kvs:
    if k == "CHANGE":
        p99 = float(kv["eval_p99_us"])
        print("single change: %s random policies (%s conditions each, compiled in %s ms), %s random "
              "changes: fxb_rule_eval of every policy per change p50 %s us, p99 %s us, max %s us "
              "(%s policies TRUE per change on average, %s policies TRUE at least once)" % (
                  kv["policies"], "3-5", kv["compile_ms"], kv["changes"], kv["eval_p50_us"],
                  kv["eval_p99_us"], kv["eval_max_us"], kv["matched_per_change"],
                  kv["policies_ever_true"]))
        if "set_p99_us" in kv:
            print("  the same change applied to the index (fxb_index_set): p50 %s us, p99 %s us, "
                  "max %s us; eval + set p99 %s us" % (kv["set_p50_us"], kv["set_p99_us"],
                                                      kv["set_max_us"], kv["both_p99_us"]))
        cmet = p99 < change_goal
        print("target: single change against %s policies, p99 < %.0f us: %s (%.1f us)" % (
            kv["policies"], change_goal, "MET" if cmet else "NOT MET", p99))
        if not cmet:
            rc = 3
allmet = all(m for _, _, m in verdicts)
print("target: fxb >= %gx faster than PostgreSQL's best, every rule: %s (%s)" % (
    goal, "MET" if allmet else "NOT MET",
    ", ".join("%s %.1fx" % (r, x) for r, x, _ in verdicts)))
if not allmet:
    rc = 3
if any(x for _, x in seq_ratios):
    print("  (against PostgreSQL without indexes: %s)" % ", ".join(
        "%s %.1fx" % (r, x) for r, x in seq_ratios if x))
if mismatch:
    print("MISMATCH: PostgreSQL and fxb disagree on %s (counts or lists): the run FAILS" % ", ".join(mismatch))
    rc = 4
else:
    print("counts and lists agree on every rule (PostgreSQL, fxb index, fxb_rule_eval per row)")
sys.exit(rc)
EOF
((report_rc == 0 || report_rc == 3 || report_rc == 4)) || die "the report failed (exit $report_rc)"
tee -a "$TMP/report.txt" <"$TMP/table.txt"
[[ -n $OUT ]] && cp "$TMP/report.txt" "$OUT"
((report_rc == 4)) && die "PostgreSQL and fxb disagree (see MISMATCH above)"
if [[ $STRICT == 1 ]]; then
    exit "$report_rc"
fi
exit 0
