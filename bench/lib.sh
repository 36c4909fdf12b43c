# shellcheck shell=bash
# The shell helpers of the benchmark scripts (run.sh, auth_run.sh,
# filing_run.sh, match_run.sh, push_run.sh, benefit_run.sh): messages, packages, the build, the temporary
# folder and the processes started, and their clean-up on exit. Sourced,
# never run:
#
#   ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
#   LOG_PREFIX=auth-bench
#   . "$ROOT/bench/lib.sh"
#
# Sourcing it defines the functions below (and sets APT_UPDATED=0); nothing
# runs until a script calls one.
# The globals it reads and sets are named at each function:
#   LOG_PREFIX     set by the script: the prefix of every message ("bench")
#   ROOT           set by the script: the repository's top folder
#   BUILD_DIR, SKIP_BUILD, KEEP_TMP, START_TIMEOUT, PY   the scripts' settings
#   TMP            the temporary folder (tmp_setup)
#   PIDS, PID      the background processes (start_bg): pids in start order,
#                  and NAME -> pid
#   FG_PID         the foreground command of fg_run while it runs, else empty
#   CLEANUP_HOOK   optional, set by the script: a function the clean-up calls
#                  first, for what only that script starts; it must not fail
#                  (the trap runs under set -e: end its commands with || true)
#   KEPT_WHAT      optional: the word of "... kept in $TMP" (default: logs)
#   build_type     set by check_build_type

# --- messages -----------------------------------------------------------------

# log MESSAGE... : "$LOG_PREFIX: MESSAGE" on stderr. Returns 0.
log() { echo "$LOG_PREFIX: $*" >&2; }

# die MESSAGE... : "$LOG_PREFIX: error: MESSAGE" on stderr, then exit 1 (the
# EXIT trap, when set, cleans up). Does not return.
die() {
    echo "$LOG_PREFIX: error: $*" >&2
    exit 1
}

# --- packages -----------------------------------------------------------------
APT_UPDATED=0

# need_cmd COMMAND DEBIAN_PACKAGE : installs DEBIAN_PACKAGE with apt-get (with
# sudo when not root) when COMMAND is not on the PATH; runs apt-get update at
# most once per script (global APT_UPDATED), and only when an install fails.
# Returns 0 when COMMAND is there; dies otherwise.
need_cmd() {
    command -v "$1" >/dev/null && return 0
    log "$1 not found: installing $2"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "$1 is missing and I am not root: apt-get install $2"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -q "$2" >/dev/null; then
        if ((APT_UPDATED == 0)); then
            "${sudo[@]}" apt-get update -q >/dev/null || true
            APT_UPDATED=1
        fi
        "${sudo[@]}" apt-get install -y -q "$2" >/dev/null || die "apt-get install $2 failed"
    fi
    command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}

# --- build ----------------------------------------------------------------------

# cache_value BUILD_DIR NAME : prints the value of NAME in BUILD_DIR's
# CMakeCache.txt, nothing when there is no cache or no such entry. Returns 0.
cache_value() {
    [[ -f $1/CMakeCache.txt ]] || return 0
    sed -n "s/^$2:[A-Z]*=//p" "$1/CMakeCache.txt" | head -n1
}

# build_targets [--reconfigure] TARGET... : unless SKIP_BUILD=1, builds the
# cmake TARGETs in BUILD_DIR. An empty BUILD_DIR becomes $ROOT/build, or
# $ROOT/build-bench when build/ is configured but not a plain Release build
# (a build type other than Release, or FXB_SANITIZE=ON). A BUILD_DIR that is
# not configured yet is configured as Release with FXB_TESTS=OFF; with
# --reconfigure, one that is configured already has its configure step run
# again (so that new targets are known). With SKIP_BUILD=1 an empty BUILD_DIR
# is $ROOT/build. Globals: SKIP_BUILD, ROOT; sets BUILD_DIR. Returns 0; dies
# when cmake is missing or fails.
build_targets() {
    local reconfigure=0
    if [[ ${1:-} == --reconfigure ]]; then
        reconfigure=1
        shift
    fi
    if [[ $SKIP_BUILD != 1 ]]; then
        command -v cmake >/dev/null || die "cmake not found (or run with SKIP_BUILD=1 BUILD_DIR=...)"
        if [[ -z $BUILD_DIR ]]; then
            BUILD_DIR=$ROOT/build
            if [[ -f $BUILD_DIR/CMakeCache.txt ]] &&
                [[ $(cache_value "$BUILD_DIR" CMAKE_BUILD_TYPE) != @(Release|) ||
                    $(cache_value "$BUILD_DIR" FXB_SANITIZE) == ON ]]; then
                log "build/ is not a plain Release build: using build-bench/ instead"
                BUILD_DIR=$ROOT/build-bench
            fi
        fi
        if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
            log "configuring Release build in $BUILD_DIR"
            cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DFXB_TESTS=OFF >/dev/null ||
                die "cmake configure failed"
        elif ((reconfigure)); then
            cmake "$BUILD_DIR" >/dev/null || die "cmake configure of $BUILD_DIR failed"
        fi
        log "building $* in $BUILD_DIR"
        cmake --build "$BUILD_DIR" -j --target "$@" >/dev/null ||
            die "build failed: run cmake --build $BUILD_DIR --target $* to see why"
    fi
    BUILD_DIR=${BUILD_DIR:-$ROOT/build}
}

# need_binaries NAME... : dies ("missing binary ...") unless every
# $BUILD_DIR/NAME is executable. Globals: BUILD_DIR. Returns 0.
need_binaries() {
    local b
    for b in "$@"; do
        [[ -x $BUILD_DIR/$b ]] || die "missing binary $BUILD_DIR/$b"
    done
}

# check_build_type [--sanitizer] [--empty-unknown] : sets the global
# build_type to BUILD_DIR's CMAKE_BUILD_TYPE and warns (log) when it is not
# Release: the figures are not representative. An empty CMAKE_BUILD_TYPE in
# the cache is Release (the top level defaults to it), unless
# --empty-unknown: then build_type stays empty. --sanitizer: also warns when
# BUILD_DIR is a sanitizer build (FXB_SANITIZE=ON). Globals: BUILD_DIR; sets
# build_type. Returns 0.
check_build_type() {
    local sanitizer=0 empty_unknown=0 a
    for a in "$@"; do
        case $a in
        --sanitizer) sanitizer=1 ;;
        --empty-unknown) empty_unknown=1 ;;
        *) die "check_build_type: unknown option '$a'" ;;
        esac
    done
    build_type=$(cache_value "$BUILD_DIR" CMAKE_BUILD_TYPE)
    if ((!empty_unknown)) && [[ -f $BUILD_DIR/CMakeCache.txt && -z $build_type ]]; then
        build_type=Release
    fi
    if [[ -n $build_type && $build_type != Release ]]; then
        log "WARNING: $BUILD_DIR is a $build_type build: figures are not representative"
    fi
    if ((sanitizer)) && [[ $(cache_value "$BUILD_DIR" FXB_SANITIZE) == ON ]]; then
        log "WARNING: $BUILD_DIR is a sanitizer build: figures are not representative"
    fi
    return 0
}

# --- the temporary folder, processes, clean-up -------------------------------------

# tmp_setup NAME : creates the temporary folder TMP=/tmp/NAME.XXXXXX, empties
# PIDS, PID and FG_PID, and sets the traps: on exit, cleanup; SIGINT exits
# 130, SIGTERM 143 (both through cleanup). Sets TMP, PIDS, PID, FG_PID.
# Returns 0; set -e stops the script when mktemp fails.
tmp_setup() {
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    declare -gA PID=()
    FG_PID=
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# stop_pid SIGNAL PID : sends SIGNAL to PID (a child of this shell) and waits
# for it to end. Returns 0 whether or not it was still running.
stop_pid() {
    kill -"$1" "$2" 2>/dev/null || true
    wait "$2" 2>/dev/null || true
}

# cleanup : the EXIT trap (set by tmp_setup). With the exit status of the
# script: calls $CLEANUP_HOOK when set; stops the fg_run command (FG_PID,
# SIGTERM: timeout passes it on); sends SIGTERM to every pid of PIDS, waits up
# to 5 s for each and then SIGKILLs it; removes TMP, or keeps it ("$KEPT_WHAT
# kept in $TMP") when the status is neither 0 nor 3 or when KEEP_TMP=1.
# Globals: CLEANUP_HOOK, FG_PID, PIDS, TMP, KEEP_TMP, KEPT_WHAT. Exits with the
# script's status.
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    if [[ -n ${CLEANUP_HOOK:-} ]]; then
        "$CLEANUP_HOOK"
    fi
    if [[ -n $FG_PID ]]; then
        stop_pid TERM "$FG_PID"
    fi
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "process $pid did not stop in 5 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if ((rc != 0 && rc != 3)) || [[ $KEEP_TMP == 1 ]]; then
        log "${KEPT_WHAT:-logs} kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}

# start_bg NAME COMMAND... : runs COMMAND in the background, its output to
# $TMP/NAME.log; appends its pid to PIDS and sets PID[NAME] (the clean-up
# stops it). Globals: TMP, PIDS, PID. Returns 0.
start_bg() {
    local name=$1
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    # shellcheck disable=SC2034 # PID is read by the scripts
    PID[$name]=$!
}

# fg_run TIMEOUT OUTFILE COMMAND... : runs COMMAND under `timeout TIMEOUT`,
# its output to OUTFILE, in the background + wait, so that a signal to this
# script is handled at once (the clean-up stops it: FG_PID is its pid while
# it runs). Returns the command's status (124: timed out).
fg_run() {
    local secs=$1 out=$2 rc=0
    shift 2
    timeout "$secs" "$@" >"$out" 2>&1 &
    FG_PID=$!
    wait "$FG_PID" || rc=$?
    FG_PID=
    return "$rc"
}

# wait_port NAME PID PORT : waits until 127.0.0.1:PORT accepts a connection.
# Dies with the last lines of $TMP/NAME.log when PID exits first or when
# START_TIMEOUT seconds pass. Globals: TMP, START_TIMEOUT. Returns 0.
wait_port() {
    local name=$1 pid=$2 port=$3 deadline=$((SECONDS + START_TIMEOUT))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$TMP/$name.log" >&2 || true
            die "$name exited before opening port $port (log above)"
        fi
        ((SECONDS < deadline)) || {
            tail -n 20 "$TMP/$name.log" >&2 || true
            die "$name did not open port $port within ${START_TIMEOUT}s"
        }
        sleep 0.1
    done
}

# free_ports N : prints N free TCP ports of 127.0.0.1 on one line
# (bench_stats.py freeport). Globals: PY, ROOT. Returns its status.
free_ports() {
    "$PY" "$ROOT/bench/bench_stats.py" freeport "$1"
}
