#!/usr/bin/env bash
# tests/bench/audit_export.sh: the audit bundle export benchmark (issue 8): `waygatectl audit
# export` of a chain of N records (default 1000000, checkpoint every 1000) from PostgreSQL into a
# sealed bundle, its elapsed time and peak memory (max RSS), beside the same export of N/10
# records in the same run: bounded memory means the peak does not grow with N. Then both
# verifiers over the big bundle (waygatectl audit verify FILE; tests/audit/verify_bundle.py).
#
#   tests/bench/audit_export.sh [DIR]     DIR: a running dev stack (deploy/devstack up DIR);
#                                          without it a throw-away stack is started and removed
# Environment: BENCH_AUDIT_N (records, default 1000000), WAYGATE_BUILD (default ./build),
# WAYGATE_PGBIN. The chain goes into a database of its own (wgbench_audit, dropped at the end).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${WAYGATE_BUILD:-$ROOT/build}
PGBIN=${WAYGATE_PGBIN:-/usr/lib/postgresql/15/bin}
N=${BENCH_AUDIT_N:-1000000}
GEN=${BENCH_AUDIT_GEN:-$BUILD/tests/bench/bench_audit_gen}
SMALL=$((N / 10))
DIR=${1:-}
OWN=""
if [[ -z $DIR ]]; then
    DIR=$(mktemp -d /tmp/waygate-bench-audit.XXXXXX)
    chmod 0711 "$DIR"
    OWN=1
    WAYGATE_BUILD=$BUILD "$ROOT/deploy/devstack" up "$DIR" >/dev/null
fi
# shellcheck disable=SC1091
. "$DIR/env"
WORK=$(mktemp -d /tmp/waygate-bench-audit-out.XXXXXX)
su_uri() { # the database $1 as the superuser
    local u=${WAYGATE_PGURI_OWNER/user=waygate/user=postgres}
    printf '%s' "${u/postgresql:\/\/\/waygate?/postgresql:\/\/\/$1?}"
}
as_db() { # the database $1 as role $2
    local u=${WAYGATE_PGURI_OWNER/user=waygate/user=$2}
    printf '%s' "${u/postgresql:\/\/\/waygate?/postgresql:\/\/\/$1?}"
}
psql_su() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$(su_uri "$1")" "${@:2}"; }
cleanup() {
    psql_su postgres -c "DROP DATABASE IF EXISTS wgbench_audit" >/dev/null 2>&1 || true
    psql_su postgres -c "DROP ROLE IF EXISTS wgbench_audit_gateway" >/dev/null 2>&1 || true
    psql_su postgres -c "DROP ROLE IF EXISTS wgbench_audit_admin" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    if [[ -n $OWN ]]; then
        WAYGATE_BUILD=$BUILD "$ROOT/deploy/devstack" down "$DIR" >/dev/null 2>&1 || true
        rm -rf "$DIR"
    fi
}
trap cleanup EXIT

psql_su postgres -c "DROP DATABASE IF EXISTS wgbench_audit" >/dev/null 2>&1
psql_su postgres -c "CREATE DATABASE wgbench_audit OWNER waygate" >/dev/null
"$BUILD/waygatectl" migrate --db "$(su_uri wgbench_audit)" >/dev/null
T0=1700000000000000
t=$(date +%s.%N)
# big: chain "big" at T0 (1 ms apart); small: chain "small" an hour before it
"$GEN" big "$N" 1000 "$WAYGATE_KEYRING" "$T0" | psql_su wgbench_audit >/dev/null
"$GEN" small "$SMALL" 1000 "$WAYGATE_KEYRING" $((T0 - 3600000000000)) |
    psql_su wgbench_audit >/dev/null
psql_su wgbench_audit -c "ANALYZE" >/dev/null
load=$(echo "$(date +%s.%N) - $t" | bc)
ADMIN=$(as_db wgbench_audit wgbench_audit_admin)

export_run() { # label from to -> "records seconds maxrss_kB bytes"
    local out="$WORK/$1.bundle" res
    res=$( { /usr/bin/time -f "TIME %e %M" "$BUILD/waygatectl" audit export --from "$2" --to "$3" \
        --out "$out" --keyring "$WAYGATE_KEYRING" --db "$ADMIN" >"$WORK/$1.out"; } 2>&1 )
    grep -q '^wrote ' "$WORK/$1.out" || { cat "$WORK/$1.out"; echo "$res"; exit 1; }
    if grep -q WARNING "$WORK/$1.out"; then cat "$WORK/$1.out"; exit 1; fi
    local recs secs rss
    recs=$(sed -n 's/^wrote .*: \([0-9]*\) records.*/\1/p' "$WORK/$1.out")
    secs=$(echo "$res" | awk '/^TIME/ {print $2}')
    rss=$(echo "$res" | awk '/^TIME/ {print $3}')
    echo "$recs $secs $rss $(stat -c %s "$out")"
}
S0=$(((T0 - 3600000000000) / 1000000))
B0=$((T0 / 1000000))
read -r sr ss sm sb < <(export_run small "$S0" $((S0 + 3000)))
read -r br bs bm bb < <(export_run big "$B0" $((B0 + N / 1000 + 10)))
rate=$(echo "$br / $bs" | bc)
vt=$( { /usr/bin/time -f "TIME %e %M" "$BUILD/waygatectl" audit verify "$WORK/big.bundle" >/dev/null; } 2>&1 | awk '/^TIME/ {print $2, $3}')
pt=$( { /usr/bin/time -f "TIME %e %M" /usr/bin/python3 "$ROOT/tests/audit/verify_bundle.py" "$WORK/big.bundle" >/dev/null; } 2>&1 | awk '/^TIME/ {print $2, $3}')
printf 'audit bundle export (waygatectl audit export, chain in PostgreSQL, checkpoint every 1000)\n'
printf '  load of %s + %s generated records: %.1f s\n' "$N" "$SMALL" "$load"
printf '  %-8s %9s records %7.2f s  max RSS %6s kB  bundle %s bytes\n' small "$sr" "$ss" "$sm" "$sb"
printf '  %-8s %9s records %7.2f s  max RSS %6s kB  bundle %s bytes\n' big "$br" "$bs" "$bm" "$bb"
printf '  export rate: %s records/s\n' "$rate"
printf '  verify FILE (C):      %s s, max RSS %s kB\n' ${vt}
printf '  verify_bundle.py:     %s s, max RSS %s kB\n' ${pt}
