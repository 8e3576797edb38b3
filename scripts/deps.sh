#!/usr/bin/env bash
# Installs the Debian packages that building and testing Profilis need. Idempotent: quiet and
# fast when everything is present. Needs root (or sudo) only when something is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang
  libprotobuf-c-dev protobuf-c-compiler
  libnghttp2-dev libssl-dev zlib1g-dev
  libcmocka-dev
  libmicrohttpd-dev libgnutls28-dev libyaml-dev liblmdb-dev
  prometheus
  libclang-rt-14-dev
  valgrind
  python3 python3-grpcio python3-protobuf protobuf-compiler
  openssl
  cppcheck clang-tidy
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  python3-yaml python3-jsonschema
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# node/npm: only when node is absent (another install may already provide it).
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/profilis-deps.log 2>&1; then
  $SUDO apt-get update -qq >>/tmp/profilis-deps.log 2>&1
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/profilis-deps.log 2>&1 || {
    echo "deps.sh: apt-get install failed; see /tmp/profilis-deps.log" >&2
    tail -20 /tmp/profilis-deps.log >&2
    exit 1
  }
fi
