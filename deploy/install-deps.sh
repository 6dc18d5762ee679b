#!/usr/bin/env bash
# install-deps.sh: installs, from Debian 12's own packages, everything Waygate needs to build,
# run its dev stack and run every test. Idempotent: when all packages are already installed it
# only checks (no apt-get update, no network). Runs apt through sudo unless already root.
set -euo pipefail

PKGS=(
    # build
    build-essential cmake pkg-config
    # libraries of the daemon and the CLI
    libevent-dev libssl-dev libpq-dev libprotobuf-c-dev protobuf-c-compiler libnghttp2-dev
    # unit tests
    libcmocka-dev
    # the dev stack's database
    postgresql-15 postgresql-client-15 postgresql-contrib
    # integration tests and the shipped client (a real gRPC client)
    python3-grpcio python3-protobuf python3-pytest protobuf-compiler
    # tooling: certificates, HTTP/2 load (h2load)
    nghttp2-client openssl clang-format
    # the service unit's check (systemd-analyze; nothing is started)
    systemd
)

missing=()
# One dpkg-query for all: a package counts only when its status is "install ok installed".
declare -A have=()
while read -r name status; do
    [[ "$status" == "install ok installed" ]] && have[$name]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null || true)
for p in "${PKGS[@]}"; do
    [[ -n "${have[$p]:-}" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#PKGS[@]} packages already installed"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: not root and sudo is not available; install as root: ${missing[*]}" >&2
        exit 1
    fi
    SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PKGS[@]}"
echo "install-deps: done"
