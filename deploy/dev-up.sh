#!/usr/bin/env bash
# Runs fxb for development: installs missing Debian packages, builds Release
# into build/, starts a private redis-server (AOF on, data under var/),
# applies migrations, and runs build/fxb-server on 127.0.0.1:50051 in the
# foreground. Ctrl-C stops both cleanly. Safe to run again and again.
#   FXB_LISTEN, FXB_METRICS_LISTEN, FXB_WORKERS, ... are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

deploy/install-deps.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFXB_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"

var="$root/var"
mkdir -p "$var/redis"
sock="$var/redis/redis.sock"
pidfile="$var/redis/redis.pid"

# A Redis left over from an earlier run that did not stop (kill -9): stop it.
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  redis-cli -s "$sock" shutdown >/dev/null 2>&1 || kill "$(cat "$pidfile")" || true
  for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$sock"

# setsid: Ctrl-C reaches fxb-server only; Redis is stopped after it, in order.
setsid redis-server "$root/deploy/redis.conf" --dir "$var/redis" --unixsocket "$sock" \
  --pidfile "$pidfile" --logfile "$var/redis/redis.log" &
redis_pid=$!
stop_redis() {
  redis-cli -s "$sock" shutdown >/dev/null 2>&1 || kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
}
trap stop_redis EXIT
for _ in $(seq 1 100); do
  redis-cli -s "$sock" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -s "$sock" ping >/dev/null || { echo "dev-up: redis did not start, see var/redis/redis.log" >&2; exit 1; }

export FXB_REDIS_URL="unix://$sock"
export FXB_DATA_DIR="${FXB_DATA_DIR:-$var}"
export FXB_ENV="${FXB_ENV:-development}"
build/fxb-admin keys init
build/fxb-admin migrate
build/fxb-admin demo-load
# the seed catalogue, working-day calendar and profile schema (data/,
# embedded in fxb-admin); the imports are idempotent
build/fxb-admin catalog import
build/fxb-admin calendar import
build/fxb-admin profile schema import

echo "fxb-server on ${FXB_LISTEN:-127.0.0.1:50051}, metrics on ${FXB_METRICS_LISTEN:-127.0.0.1:9464}; Ctrl-C stops" >&2
trap 'true' INT   # the server handles Ctrl-C (a handler, not SIG_IGN: children inherit ignores)
set +e
build/fxb-server "$@"
rc=$?
set -e
trap - INT
exit $rc
