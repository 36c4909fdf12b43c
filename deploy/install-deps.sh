#!/usr/bin/env bash
# Installs the Debian 12 packages fxb needs that are missing. Idempotent; a
# machine that has them all runs no apt-get at all.
#   deploy/install-deps.sh            build + run
#   deploy/install-deps.sh --test     also what tests/run.sh needs
#   deploy/install-deps.sh --bench    also what bench/run.sh needs
set -euo pipefail

pkgs=(cmake make gcc pkg-config ca-certificates
      libgrpc-dev protobuf-compiler protobuf-c-compiler libprotobuf-c-dev
      libhiredis-dev libjwt-dev libjansson-dev libssl-dev libmicrohttpd-dev libargon2-dev libroaring-dev
      redis-server redis-tools)
for arg in "$@"; do
  case "$arg" in
    --test) pkgs+=(libcmocka-dev python3 python3-grpcio python3-protobuf curl) ;;
    --bench) pkgs+=(nghttp2-client python3 curl postgresql-15) ;;
    *) echo "install-deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js for the @grpc/grpc-js interop test: any node >= 16 on PATH will do.
if [[ " $* " == *" --test "* ]] && ! command -v node >/dev/null; then
  missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
