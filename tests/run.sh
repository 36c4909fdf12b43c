#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds with
# ASan + UBSan, starts a throwaway redis-server on a free port, runs every
# test through ctest, stops Redis. Exits non-zero on any failure.
#   FXB_TEST_BUILD_DIR  build directory (default build-test)
#   CTEST_ARGS          extra ctest arguments, e.g. "-R e2e/"
#   FXB_TEST_RELEASE    0: skip compiling the Release binaries
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

deploy/install-deps.sh --test

build=${FXB_TEST_BUILD_DIR:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DFXB_SANITIZE=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

# The optimised build (deploy/dev-up.sh, the benchmarks) must compile too,
# every target: -O2 finds warnings (maybe-uninitialized, format-truncation,
# dangling-pointer) a Debug build does not.
# FXB_TEST_RELEASE=0 skips it.
if [ "${FXB_TEST_RELEASE:-1}" != 0 ]; then
  release=${FXB_TEST_RELEASE_DIR:-build-test-release}
  cmake -S . -B "$release" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$release" -j"$(nproc)"
fi

if [ -f tests/node/package-lock.json ]; then
  if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

redis_dir=$(mktemp -d /tmp/fxb-test-redis.XXXXXX)
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save '' \
  --appendonly no --daemonize no --logfile "$redis_dir/redis.log" &
redis_pid=$!
cleanup() {
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  rm -rf "$redis_dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$redis_port" ping >/dev/null

export FXB_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure --no-tests=error ${CTEST_ARGS:-}
