#!/usr/bin/env bash
# tests/bench/suite_bench.sh: Submit at 64 streams under the sm suite against aes, each against the
# one-row pgbench baseline (a1) of the same database, in the same run (issue 11).
#
#   tests/bench/suite_bench.sh [ROUNDS] [--keyring both|split] [--dir DIR]
#
# Runs tests/bench/suite_ab.py (its docstring has the method): one dev stack, one database, one
# keyring holding both suites, two gateways of the same binary (`[crypto] suite = aes` and
# `suite = sm`), per round a1, aes s64, sm s64 (order alternating), a1 again; each s64 against the
# mean of the a1 right before and after it, sm/aes, each gateway's CPU per waybill (perf stat
# task-clock), the rows of each s64 counted by their algorithm byte. Until 2026-12-02 this script
# ran two dev stacks (one per suite) with run.sh on each; their a1 differed by 20-25 % from one
# cluster to the other, which is why the measurement moved to one database.
# Environment: BENCH_DURATION (s per figure, default 10), WAYGATE_BUILD (default ./build),
# SUITE_AB_KEEP=1 keeps the logs. Invariants: as suite_ab.py's (everything it starts is stopped
# on every exit path; no document is written).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export WAYGATE_BUILD=${WAYGATE_BUILD:-$PWD/build}
exec /usr/bin/python3 "$ROOT/tests/bench/suite_ab.py" "$@"
