#!/usr/bin/env bash
# tests/bench/suite_bench.sh: Submit at 64 streams under the sm suite against aes, each beside the
# one-row pgbench baseline (a1), in the same run (issue 11).
#
#   tests/bench/suite_bench.sh [ROUNDS]     ROUNDS (default 3; odd gives a true median)
#
# Why a separate script: run.sh measures one stack; the suite is fixed when a stack is created
# (deploy/devstack: WAYGATE_SUITE at the first `up`). This script starts two throw-away dev stacks,
# one WAYGATE_SUITE=aes and one WAYGATE_SUITE=sm, and runs run.sh on each in turn
# (BENCH_FIGURES=submit BENCH_CONF=s64:4:16:0 BENCH_RESET=1: the gateway's tables are emptied
# before s64), alternating which suite goes first from round to round. It reuses run.sh for
# every measurement and parses only the per-figure lines run.sh prints on stderr ("a1 ...",
# "s64: ..."); run.sh also measures a2 (pipelined pgbench) whenever it measures Submit, which
# is logged but not reported here.
#
# Prints, per round and as medians over the rounds: a1 rows/s, s64 waybills/s, s64/a1 under each
# suite, the sm/aes ratio of s64 (each round's sm over the same round's aes), and the gateway's
# CPU (user+sys, from /proc, per waybill accepted) under each suite. A ratio's median is the
# median of the per-round ratios. Also the load average at the start and at the end.
# Invariants: both stacks are stopped and removed on every exit path; the script never writes a
# document (the figures go to stdout; docs/performance.md is edited by hand).
# Environment: BENCH_DURATION (s per figure, default 10), WAYGATE_BUILD (default ./build),
# SUITE_BENCH_KEEP=1 keeps the run.sh logs (their directory is printed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "suite_bench: ROUNDS must be a positive integer" >&2; exit 2; }
BUILD=${WAYGATE_BUILD:-$PWD/build}
BUILD=$(cd "$BUILD" && pwd) || { echo "suite_bench: no build directory $BUILD" >&2; exit 2; }
export WAYGATE_BUILD=$BUILD
WORK=$(mktemp -d /tmp/wgsuite.XXXXXX)
declare -A STACK=()

say() { echo "suite_bench: $*" >&2; }
cleanup() {
    local rc=$? s
    for s in "${!STACK[@]}"; do
        "$ROOT/deploy/devstack" down "${STACK[$s]}" >>"$WORK/devstack.log" 2>&1 || true
        rm -rf "${STACK[$s]}"
    done
    if [[ -n ${SUITE_BENCH_KEEP:-} ]]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for s in aes sm; do
    STACK[$s]=$(mktemp -d "/tmp/wgsuite-$s.XXXXXX")
    say "starting the $s stack under ${STACK[$s]}"
    WAYGATE_SUITE=$s "$ROOT/deploy/devstack" up "${STACK[$s]}" >>"$WORK/devstack.log" 2>&1 ||
        { tail -n 30 "$WORK/devstack.log" >&2; exit 1; }
    grep -qE '^suite[[:space:]]*=[[:space:]]*'"$s"'$' "${STACK[$s]}/waygated.conf" ||
        { say "the $s stack's waygated.conf does not say suite = $s"; exit 1; }
    # Forwarding off (as forward_bench.py's o64): the dev stack forwards to a Python sink on the
    # same two cores, which would cost more CPU than the suites differ by. Issue 9 measures it.
    sed -i -E 's/^(endpoint[[:space:]]*=)/#bench-off# \1/' "${STACK[$s]}/waygated.conf"
    for c in down up; do
        WAYGATE_SUITE=$s "$ROOT/deploy/devstack" $c "${STACK[$s]}" >>"$WORK/devstack.log" 2>&1 ||
            { tail -n 30 "$WORK/devstack.log" >&2; exit 1; }
    done
done

# One run.sh measurement on SUITE's stack -> A1, S64, GWCPU, ERR (from run.sh's stderr lines).
measure() {
    local s=$1 log rc=0
    log=$WORK/run-$s-$round.log
    BENCH_FIGURES=submit BENCH_CONF=s64:4:16:0 BENCH_REPEAT=1 BENCH_RESET=1 \
        "$ROOT/tests/bench/run.sh" "${STACK[$s]}" >"$log" 2>&1 || rc=$?
    A1=$(sed -nE 's/^bench: a1 one row\/txn: +([0-9.]+) rows\/s.*/\1/p' "$log" | tail -n 1)
    S64=$(sed -nE 's/^bench: s64: ([0-9.]+) waybills\/s.*/\1/p' "$log" | tail -n 1)
    GWCPU=$(sed -nE 's/^bench: s64: .* gateway ([0-9.]+|n\/a) us\/wb.*/\1/p' "$log" | tail -n 1)
    ERR=$(sed -nE 's/^bench: s64: .* errors ([0-9]+) .*/\1/p' "$log" | tail -n 1)
    if [[ -z $A1 || -z $S64 ]] || ((rc != 0)); then
        tail -n 20 "$log" >&2
        say "run.sh on the $s stack failed (exit $rc)"
        exit 1
    fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { # the median of the numbers given (the lower one for an even count), or n/a
    printf '%s\n' "$@" | awk '/^[0-9.]+$/' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print v[int((NR + 1) / 2)] }'
}

declare -A V=() # V[suite.field] = space-separated per-round values
last() { awk '{ print $NF }' <<<"${V[$1]}"; }
printf '| round | first | aes a1 rows/s | aes s64 wb/s | aes s64/a1 | aes gw CPU us/wb | sm a1 rows/s | sm s64 wb/s | sm s64/a1 | sm gw CPU us/wb | sm/aes s64 | load |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then order="aes sm"; else order="sm aes"; fi
    for s in $order; do
        say "round $round of $ROUNDS: $s"
        measure "$s"
        ((ERR == 0)) || say "round $round, $s: s64 had $ERR failed calls"
        V[$s.a1]+=" $A1" V[$s.s64]+=" $S64" V[$s.r]+=" $(ratio "$S64" "$A1")" V[$s.cpu]+=" $GWCPU"
        V[$s.err]+=" $ERR"
        say "$s: a1 $A1 rows/s, s64 $S64 waybills/s ($(ratio "$S64" "$A1")x a1), gateway $GWCPU us/wb"
    done
    V[smaes]+=" $(ratio "$(last sm.s64)" "$(last aes.s64)")"
    printf '| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "${order%% *}" \
        "$(last aes.a1)" "$(last aes.s64)" "$(last aes.r)" "$(last aes.cpu)" \
        "$(last sm.a1)" "$(last sm.s64)" "$(last sm.r)" "$(last sm.cpu)" "$(last smaes)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
done
# shellcheck disable=SC2086 # word splitting of the value lists is intended
printf '| median | | %s | %s | %s | %s | %s | %s | %s | %s | %s | |\n' \
    "$(median ${V[aes.a1]})" "$(median ${V[aes.s64]})" "$(median ${V[aes.r]})" "$(median ${V[aes.cpu]})" \
    "$(median ${V[sm.a1]})" "$(median ${V[sm.s64]})" "$(median ${V[sm.r]})" "$(median ${V[sm.cpu]})" \
    "$(median ${V[smaes]})"
echo
echo "load average at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
echo "s64 failed calls per round: aes${V[aes.err]}; sm${V[sm.err]}"
# shellcheck disable=SC2086
echo "target (issue 11: Submit under sm >= 1.2x a1): sm s64/a1 median $(median ${V[sm.r]})x:" \
    "$(awk -v r="$(median ${V[sm.r]})" 'BEGIN { print (r >= 1.2) ? "met" : "NOT met" }') in this run"
