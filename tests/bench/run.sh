#!/usr/bin/env bash
# tests/bench/run.sh: the intake benchmark, with its baselines in the same run (issue 3).
#
#   tests/bench/run.sh [DIR]            full run (~2 minutes): baselines, then the gateway; prints
#                                       the figures and rewrites docs/performance.md
#   tests/bench/run.sh --smoke [DIR]    a few seconds with small counts: proves the harness works;
#                                       exits non-zero if any call failed; writes no document
#   tests/bench/run.sh --baseline-only [DIR]   only the pgbench baselines (no gateway needed)
#
# DIR is a dev stack (deploy/devstack up DIR; its DIR/env is read). Without DIR a throw-away stack
# is started under a temporary directory and removed afterwards (needs a build: WAYGATE_BUILD,
# default ./build); WAYGATE_BENCH_DIR stands for DIR when none is given. With --baseline-only and
# no DIR, WAYGATE_PGURI_OWNER (or WAYGATE_PGURI) must name a database as its owner.
#
# What runs, all against the same PostgreSQL:
#   (a1) pgbench, 16 clients, one row per transaction, into bench_baseline: a table created
#        LIKE the gateway's `waybill` table (same columns, same indexes) with pre-encrypted bytes
#        as the gateway writes them (stored format version 3: one random bytea fields_ct of the
#        size of the gateway's sealed fields, the *_ct columns and record_mac NULL);
#   (a2) pgbench, 8 clients, 50 rows per transaction sent in one pipeline (\startpipeline);
#   (b)  wgload (tests/bench/wgload.c) through the real mTLS listener as courier_a: Submit at 16,
#        64 and 128 concurrent streams and SubmitBatch of 100, ~10 s each after a 1 s warm-up;
# and for issue 7, each beside its baseline (see "issue 7" below for the details):
#   (g)  Get at 64 streams vs (g0) pgbench, 16 clients, the gateway's Get statement by wb_bidx;
#   (s)  Search by a phone 20 waybills share vs (s0) pgbench fetching those 20 rows;
#   (l)  Login throughput vs (l0) one thread's scrypt verifications at the gateway's cost;
#   (p)  Submit p99 at 64 streams during 20 parallel Logins vs (p0) without them (closed loop:
#        saturation, where any extra runnable thread on the box moves latency);
#   (pr) Submit in an open loop at a fixed rate (BENCH_PR_FRACTION, default 0.5, of p0's
#        waybills/s) during 20 parallel Logins vs (pr0) the same rate without them, and (pri) the
#        same rate beside [auth] workers' number of SCHED_IDLE busy loops outside the gateway, in its
#        [auth] worker_cgroup when it has one (CPU-only work placed as the hashing is);
#        BENCH_PR_ROUNDS (3) alternating rounds, latency from the due time.
# and for issue 8 (the audit chain; see "issue 8" below):
#   (uq) Submit at 64 streams with the audit chain on, (u) the same with audited Searches by phone
#        beside it, vs (u0) pgbench's one row per transaction right before them; (r) a Reveal's
#        latency and round trips beside a Get's.
# Waybill numbers come from segment A, above the middle of it (integration tests use the low end);
# the next unused number is kept in DIR/bench-next so that repeated runs never resubmit one.
#
# On a stack it started itself, run.sh empties the gateway's waybill tables before each gateway
# figure, as it empties bench_baseline before each baseline (same starting state for every
# figure); on a given DIR it does so only with BENCH_RESET=1.
# Environment overrides: BENCH_DURATION (s, default 10), BENCH_REPEAT (rounds of the whole
# sequence, each cell then the median; default 1), BENCH_A1_CLIENTS (16),
# BENCH_A2_CLIENTS (8), BENCH_CONF ("label:conns:streams:batch ..." for the gateway runs),
# WGLOAD (path of the wgload binary), WAYGATE_BUILD (build directory), WAYGATE_PGBIN,
# BENCH_FIGURES (a subset of "submit get search login storm audit"; the document is then not
# rewritten), BENCH_PR_FRACTION (0.5), BENCH_PR_ROUNDS (3; smoke 1), BENCH_GET_N (waybills
# submitted for Get, 20000; smoke 150), BENCH_READ_CLIENTS (pgbench clients of g0 and s0, 16),
# BENCH_BASE (path of bench_base).
# Login (l, p, pr, pri) needs the stack's clerk_a account (WAYGATE_P_clerk_a_ACCOUNT/PASSWORD in DIR/env)
# and Search (s) logs in as it when it exists (else courier_a); a figure the stack cannot give is
# skipped and said so.
# Not part of the test suite: only --smoke may be (ctest -L smoke with -DWAYGATE_BENCH_SMOKE=ON).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=${WAYGATE_PGBIN:-/usr/lib/postgresql/15/bin}
MODE=full
DIR=
DOC=$ROOT/docs/performance.md

die() { echo "bench: $*" >&2; exit 2; }
say() { echo "bench: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
    --smoke) MODE=smoke ;;
    --baseline-only) MODE=baseline ;;
    --doc) DOC=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) DIR=$1 ;;
    esac
    shift
done
DIR=${DIR:-${WAYGATE_BENCH_DIR:-}}
export PGOPTIONS='-c client_min_messages=warning'
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ $MODE == smoke ]]; then
    DUR=${BENCH_DURATION:-1}
else
    DUR=${BENCH_DURATION:-10}
fi
A1_CLIENTS=${BENCH_A1_CLIENTS:-16}
A2_CLIENTS=${BENCH_A2_CLIENTS:-8}
A2_ROWS=50
REPEAT=${BENCH_REPEAT:-1}
[[ $MODE == smoke ]] && REPEAT=1
BUILD=${WAYGATE_BUILD:-$ROOT/build}
[[ -d $BUILD ]] && BUILD=$(cd "$BUILD" && pwd)

WORK=$(mktemp -d /tmp/wgbench.XXXXXX)
OWN_STACK=
cleanup() {
    local rc=$?
    if [[ -n $OWN_STACK ]]; then
        WAYGATE_BUILD=$BUILD "$ROOT/deploy/devstack" down "$OWN_STACK" >/dev/null 2>&1 || true
        rm -rf "$OWN_STACK"
    fi
    if [[ -n ${PGURI:-} && -n ${BASELINE_CREATED:-} ]]; then
        "$PGBIN/psql" -X -q -d "$PGURI" -c 'DROP TABLE IF EXISTS bench_baseline' >/dev/null 2>&1 || true
    fi
    if [[ -n ${PGURI:-} && -n ${SCRATCH_CREATED:-} ]]; then
        "$PGBIN/psql" -X -q -d "$PGURI" -c 'DROP TABLE IF EXISTS bench_seen' \
            -c 'DROP TABLE IF EXISTS bench_get_keys' >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# ---------------------------------------------------------------- the stack
if [[ -z $DIR && $MODE != baseline ]]; then
    OWN_STACK=$(mktemp -d /tmp/wgbench-stack.XXXXXX)
    say "starting a throw-away dev stack under $OWN_STACK"
    WAYGATE_BUILD=$BUILD "$ROOT/deploy/devstack" up "$OWN_STACK" >"$WORK/devstack.log" 2>&1 ||
        { cat "$WORK/devstack.log" >&2; die "deploy/devstack up failed"; }
    DIR=$OWN_STACK
    # The read figures look up thousands of distinct waybills: the default policy's scraping
    # throttle (lookups_per_window) would refuse all but the first few hundred. On its own stack
    # run.sh runs the gateway with the repository's policy file, that limit raised (the
    # throttle's bookkeeping is still done on every call); anything else stays as shipped. The
    # smoke run looks up fewer distinct waybills than the default allows and skips the restart.
    # Forwarding is off on run.sh's own stack unless BENCH_FORWARD=1: the dev stack forwards to
    # a Python sink on the same cores, whose CPU would be counted against the gateway;
    # tests/bench/forward_bench.py measures forwarding, beside the same Submit without it.
    RESTART=
    if [[ $MODE == full && -z ${BENCH_FORWARD:-} ]]; then
        sed -i -E 's/^(endpoint[[:space:]]*=)/#bench-off# \1/' "$DIR/waygated.conf"
        BENCH_FORWARD_NOTE="forwarding to the backend off (BENCH_FORWARD=1 keeps it on; forward_bench.py measures it)"
        RESTART=1
    fi
    # The figures load the gateway from one certificate (courier_a) at up to 64 streams: the
    # database queue's share per certificate ([database] queue_share, pool_size x pipeline_depth
    # by default) would refuse most of a read figure's calls, as it should refuse a flood. The
    # share is lifted on run.sh's own stack (tests/bench/db_share_flood.py measures it).
    if [[ $MODE != baseline ]] && grep -q '^\[database\]' "$DIR/waygated.conf" &&
        ! grep -qE '^queue_share[[:space:]]*=' "$DIR/waygated.conf"; then
        sed -i -E 's/^\[database\]$/[database]\nqueue_share = 1000000/' "$DIR/waygated.conf"
        say "the stack's gateway runs with [database] queue_share = 1000000 (one certificate's load)"
        RESTART=1
    fi
    POLICY_SRC=$ROOT/deploy/policy.conf
    if [[ $MODE == full && -f $POLICY_SRC ]] && grep -qE '^lookups_per_window[[:space:]]*=' "$POLICY_SRC" &&
        ! grep -q '^\[policy\]' "$DIR/waygated.conf"; then
        sed -E -e 's/^(lookups_per_window[[:space:]]*=[[:space:]]*).*/\11000000000/' \
            -e 's/^(reveals_per_(hour|day)[[:space:]]*=[[:space:]]*).*/\11000000/' "$POLICY_SRC" >"$DIR/bench-policy.conf"
        chmod 0600 "$DIR/bench-policy.conf" # waygated refuses a policy file others may write
        printf '\n[policy]\nfile = %s\n' "$DIR/bench-policy.conf" >>"$DIR/waygated.conf"
        say "the stack's gateway runs deploy/policy.conf, lookups_per_window raised to 10^9 (the read figures' many distinct lookups)"
        BENCH_POLICY_NOTE="the gateway ran deploy/policy.conf with every role's lookups_per_window raised to 10^9 and reveals_per_hour/day to 10^6, so that the read figures are not throttled (the throttle and the reveal quota still count every lookup)"
        RESTART=1
    fi
    if [[ -n $RESTART ]]; then
        say "restarting the stack's gateway${BENCH_FORWARD_NOTE:+, $BENCH_FORWARD_NOTE}"
        { WAYGATE_BUILD=$BUILD "$ROOT/deploy/devstack" down "$DIR" && WAYGATE_BUILD=$BUILD "$ROOT/deploy/devstack" up "$DIR"; } \
            >>"$WORK/devstack.log" 2>&1 || { cat "$WORK/devstack.log" >&2; die "deploy/devstack could not restart with the bench settings"; }
    fi
fi
if [[ -n $DIR ]]; then
    [[ -f $DIR/env ]] || die "$DIR/env not found (deploy/devstack up $DIR)"
    # shellcheck disable=SC1091
    . "$DIR/env"
fi
# The schema's owner when the stack names it (the baseline creates a table); else WAYGATE_PGURI.
PGURI=${WAYGATE_PGURI_OWNER:-${WAYGATE_PGURI:-}}
[[ -n $PGURI ]] || die "no database: give a dev stack DIR or set WAYGATE_PGURI_OWNER"
# The cluster's superuser on the same socket, for CHECKPOINT between runs (optional).
ADMIN_URI=$(sed -E 's/([?&])user=[^&]*/\1user=postgres/' <<<"$PGURI")
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$PGURI")

checkpoint() { # flush dirty pages between figures so one figure's writes do not slow the next
    [[ $MODE == smoke ]] && return 0
    "$PGBIN/psql" -X -q -d "$ADMIN_URI" -c CHECKPOINT >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- the baseline table
# Sizes of the plaintexts of our synthetic waybills' fields (UTF-8 bytes), by their version 1/2
# column. The gateway writes version 3 (sql/053): every field sealed together in fields_ct, whose
# plaintext is the fields' items, each 4 + name length + 1 + 8 + value length bytes (the field's
# name as in gateway/domain/record.c: sender_phone_ct holds "sender.phone"), sealed as one value
# of plaintext + 30 bytes (version, algorithm, nonce, tag: gateway/crypto.h).
declare -A PT=(
    [waybill_no_ct]=12 [item_description_ct]=15 [pickup_time_ct]=10
    [sender_name_ct]=8 [sender_phone_ct]=11 [sender_province_ct]=9 [sender_city_ct]=9
    [sender_district_ct]=9 [sender_address_detail_ct]=45 [sender_company_ct]=6
    [sender_id_type_ct]=1 [sender_id_number_ct]=18 [sender_gender_ct]=1
    [recipient_name_ct]=8 [recipient_phone_ct]=11 [recipient_province_ct]=9
    [recipient_city_ct]=9 [recipient_district_ct]=9 [recipient_address_detail_ct]=45
    [recipient_company_ct]=0 [recipient_id_type_ct]=1 [recipient_id_number_ct]=0
    [recipient_gender_ct]=1
)
field_name() { # COLUMN (e.g. sender_phone_ct) -> prints its field's name (sender.phone)
    local f=${1%_ct}
    case "$f" in
    sender_* | recipient_*) echo "${f%%_*}.${f#*_}" ;;
    *) echo "$f" ;;
    esac
}
FIELDS_CT_LEN=30
for c in "${!PT[@]}"; do
    f=$(field_name "$c")
    FIELDS_CT_LEN=$((FIELDS_CT_LEN + 4 + ${#f} + 1 + 8 + ${PT[$c]}))
done
HEXPOOL=$(openssl rand -hex 8192)
HEXOFF=0
randhex() { # N: N random bytes as hex, into HEX (no subshell: the pool offset must advance)
    HEX=${HEXPOOL:HEXOFF:$(($1 * 2))}
    HEXOFF=$((HEXOFF + $1 * 2))
}

# The fallback when the database has no `waybill` table (e.g. --baseline-only on a bare
# PostgreSQL): the shape of sql/002_waybills.sql as the issue describes it, with the columns of
# sql/003 (mac_version, record_mac) and sql/053 (fields_ct).
FALLBACK_DDL="
CREATE TABLE bench_baseline (
  id uuid PRIMARY KEY, wb_bidx bytea NOT NULL UNIQUE,
  origin_branch text NOT NULL, dest_region_code text NOT NULL, weight_grams integer NOT NULL,
  service_type text NOT NULL, security_level smallint NOT NULL, status text NOT NULL,
  pickup_day date NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
  kek_version integer NOT NULL, dek_version integer NOT NULL,
  dek_wrapped bytea NOT NULL, content_mac bytea NOT NULL,
  sender_phone_bidx bytea NOT NULL, recipient_phone_bidx bytea NOT NULL,
  sender_id_bidx bytea, recipient_id_bidx bytea,
  mac_version smallint NOT NULL DEFAULT 1, record_mac bytea, fields_ct bytea,
  $(for c in "${!PT[@]}"; do printf '%s bytea, ' "$c"; done | sed 's/, $//'));
CREATE INDEX ON bench_baseline (sender_phone_bidx);
CREATE INDEX ON bench_baseline (recipient_phone_bidx);
CREATE INDEX ON bench_baseline (sender_id_bidx);
CREATE INDEX ON bench_baseline (recipient_id_bidx);"

# One value expression per column, from its name and type: random 16-byte blind indexes and
# uuids (unique per row), pre-encrypted constants for the sealed fields and the wrapped key,
# plain constants for the operational columns. Columns with a default are left to it (but
# mac_version, 3, as the gateway writes it).
value_for() { # NAME TYPE UDT -> prints the expression
    local name=$1 type=$2 udt=$3
    case "$type" in
    uuid) echo "gen_random_uuid()" ;;
    bytea)
        case "$name" in
        *bidx*) echo "uuid_send(gen_random_uuid())" ;;
        record_mac) echo "NULL" ;; # version 3 has none
        *) echo "'\\x$HEX'::bytea" ;; # HEX: set by the caller (randhex)
        esac ;;
    smallint | integer | bigint | numeric | real | "double precision")
        [[ $name == mac_version ]] && echo 3 || echo 1 ;;
    boolean) echo false ;;
    date) echo current_date ;;
    timestamp*) echo "now()" ;;
    json | jsonb) echo "'{}'" ;;
    USER-DEFINED)
        "${PSQL[@]}" -tA -c "SELECT quote_literal(enumlabel) || '::' || '$udt'
                               FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
                              WHERE t.typname = '$udt' ORDER BY enumsortorder LIMIT 1" ;;
    *)
        case "$name" in
        *branch*) echo "'a'" ;;
        submitted_by) echo "'courier_a'" ;;
        *region*) echo "'310104'" ;;
        status) echo "'accepted'" ;;
        service_type) echo "'standard'" ;;
        *) echo "'x'" ;;
        esac ;;
    esac
}

make_baseline() {
    local has cols=() vals=() name type udt def
    "${PSQL[@]}" -c 'DROP TABLE IF EXISTS bench_baseline'
    BASELINE_CREATED=1
    has=$("${PSQL[@]}" -tA -c "SELECT to_regclass('waybill') IS NOT NULL")
    if [[ $has == t ]]; then
        BASELINE_SHAPE="created LIKE the gateway's \`waybill\` table (columns, CHECK constraints, indexes; not its triggers)"
        "${PSQL[@]}" -c 'CREATE TABLE bench_baseline (LIKE waybill INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING IDENTITY INCLUDING GENERATED)'
    else
        BASELINE_SHAPE="no \`waybill\` table in this database: the built-in shape (fields_ct beside the 23 sealed columns of versions 1 and 2, 5 blind-index indexes)"
        "${PSQL[@]}" -c "$FALLBACK_DDL"
    fi
    while IFS='|' read -r name type udt def; do
        [[ $def == t && $name != mac_version ]] && continue
        # version 3: the gateway's insert names no *_ct column (NULL)
        [[ $name == *_ct && $name != fields_ct ]] && continue
        cols+=("$name")
        # fields_ct and dek_wrapped: format version 1 and algorithm 1 (aes), as sql/053's CHECK
        # wants them (the same algorithm byte), then random bytes
        case "$name" in
        fields_ct) randhex $((FIELDS_CT_LEN - 2)) && HEX=0101$HEX ;;
        dek_wrapped*) randhex 60 && HEX=0101$HEX ;;
        *) randhex 32 ;;
        esac
        vals+=("$(value_for "$name" "$type" "$udt")")
    done < <("${PSQL[@]}" -tA -c "SELECT column_name, data_type, udt_name, column_default IS NOT NULL OR is_generated = 'ALWAYS' OR is_identity = 'YES'
                                    FROM information_schema.columns
                                   WHERE table_schema = current_schema() AND table_name = 'bench_baseline'
                                ORDER BY ordinal_position")
    local IFS=,
    INSERT="INSERT INTO bench_baseline (${cols[*]}) VALUES (${vals[*]});"
    unset IFS
    if ! "${PSQL[@]}" -c "$INSERT" >"$WORK/probe.log" 2>&1; then
        # a CHECK our constants do not satisfy: keep the shape, drop the checks
        say "a CHECK constraint refuses the baseline's constants ($(head -n 1 "$WORK/probe.log")); dropping the table's CHECKs"
        "${PSQL[@]}" -tA -c "SELECT 'ALTER TABLE bench_baseline DROP CONSTRAINT ' || quote_ident(conname) || ';'
                               FROM pg_constraint WHERE conrelid = 'bench_baseline'::regclass AND contype = 'c'" |
            "${PSQL[@]}"
        BASELINE_SHAPE="${BASELINE_SHAPE/CHECK constraints, /}"
        "${PSQL[@]}" -c "$INSERT"
    fi
    NINDEX=$("${PSQL[@]}" -tA -c "SELECT count(*) FROM pg_indexes WHERE tablename = 'bench_baseline'")
    echo "$INSERT" >"$WORK/a1.sql"
    {
        printf '%s\n' '\startpipeline'
        echo 'BEGIN;'
        for ((i = 0; i < A2_ROWS; i++)); do echo "$INSERT"; done
        echo 'COMMIT;'
        printf '%s\n' '\endpipeline'
    } >"$WORK/a2.sql"
}

# percentiles of pgbench's per-transaction log (3rd column: latency in microseconds)
pgbench_pct() { # PREFIX -> "p50_ms p99_ms"
    cat "$1".* 2>/dev/null | awk '{print $3}' | sort -n | awk '
        { v[NR] = $1 }
        END { if (NR == 0) { print "0 0"; exit }
              i50 = int(0.50 * (NR - 1) + 1.5); i99 = int(0.99 * (NR - 1) + 1.5)
              printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }'
}

run_pgbench() { # NAME CLIENTS SCRIPT ROWS_PER_TXN -> sets R_wps R_p50 R_p99 R_err
    local name=$1 clients=$2 script=$3 rows=$4 out tps failed ntx p0 p1
    R_cpu='' R_gwcpu=''
    "${PSQL[@]}" -c 'TRUNCATE bench_baseline'
    checkpoint
    local dur_args=(-T "$DUR")
    [[ $MODE == smoke ]] && dur_args=(-t $((rows > 1 ? 3 : 10)))
    p0=$(pg_cpu_ticks)
    out=$("$PGBIN/pgbench" -n -M prepared -c "$clients" -j 2 "${dur_args[@]}" -f "$script" \
        -l --log-prefix="$WORK/log-$name" "$PGURI" 2>&1) || { echo "$out" >&2; die "pgbench $name failed"; }
    p1=$(pg_cpu_ticks)
    tps=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' <<<"$out")
    ntx=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$out")
    R_pgcpu=$(per_unit_us "$p0" "$p1" $((${ntx:-0} * rows)))
    failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' <<<"$out")
    [[ -n $tps ]] || { echo "$out" >&2; die "cannot read pgbench's tps"; }
    R_wps=$(awk -v t="$tps" -v r="$rows" 'BEGIN { printf "%.0f", t * r }')
    read -r R_p50 R_p99 < <(pgbench_pct "$WORK/log-$name")
    R_err=${failed:-0}
    rm -f "$WORK/log-$name".*
}

# ---------------------------------------------------------------- the gateway
find_wgload() {
    if [[ -n ${WGLOAD:-} ]]; then
        [[ -x $WGLOAD ]] || die "WGLOAD=$WGLOAD is not executable"
        return
    fi
    WGLOAD=$BUILD/tests/bench/wgload
    if [[ ! -x $WGLOAD ]]; then
        say "building wgload in $BUILD"
        cmake --build "$BUILD" --target wgload >"$WORK/build.log" 2>&1 ||
            { tail -n 30 "$WORK/build.log" >&2; die "cannot build wgload (set WGLOAD=...)"; }
    fi
}

gw_cpu_ticks() { # utime + stime of the running waygated, in clock ticks; 0 when unknown
    local pid
    pid=$(cat "${WAYGATE_PIDFILE:-/nonexistent}" 2>/dev/null) || { echo 0; return; }
    [[ -r /proc/$pid/stat ]] || { echo 0; return; }
    sed -E 's/^.*\) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}

# CPU of the PostgreSQL cluster: the postmaster (with the children it has reaped) plus its live
# children, in clock ticks; 0 when the cluster's postmaster is not known.
PG_PM=
if [[ -n ${WAYGATE_DIR:-} && -r $WAYGATE_DIR/pg/data/postmaster.pid ]]; then
    PG_PM=$(head -n 1 "$WAYGATE_DIR/pg/data/postmaster.pid")
fi
pg_cpu_ticks() {
    [[ -n $PG_PM && -r /proc/$PG_PM/stat ]] || { echo 0; return; }
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$PG_PM" '
        { pid = $1; sub(/^.*\) /, "")
          if (pid == pm) t += $12 + $13 + $14 + $15; else if ($2 == pm) t += $12 + $13 }
        END { print t + 0 }'
}
per_unit_us() { # TICKS0 TICKS1 UNITS -> microseconds per unit, or n/a
    awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v n="$3" \
        'BEGIN { if (a > 0 && b > 0 && n > 0) printf "%.1f", (b - a) / hz * 1e6 / n; else print "n/a" }'
}

NEXT_FILE=
next_number() { # the first unused number of segment A for the benchmark
    local from to
    from=${WAYGATE_SEGMENT_A#*:}; from=${from%-*}
    to=${WAYGATE_SEGMENT_A##*-}
    NEXT_FILE=$DIR/bench-next
    if [[ -s $NEXT_FILE ]]; then
        NEXT=$(cat "$NEXT_FILE")
    else
        NEXT=$((from + (to - from) / 2))
    fi
    [[ $NEXT =~ ^[0-9]+$ && $NEXT -le $to ]] || die "bad $NEXT_FILE (segment exhausted?)"
}

# Every figure starts from the same state: an empty table and a checkpoint. For the gateway that
# means emptying its waybill tables, which run.sh does only on a stack it started itself (or with
# BENCH_RESET=1); on someone else's stack the table keeps what it has and the doc says how much.
RESET=${BENCH_RESET:-}
[[ -n $OWN_STACK ]] && RESET=1
reset_gateway_tables() {
    local t tables=()
    for t in waybill phone_owner phone_sender; do
        [[ $("${PSQL[@]}" -tA -c "SELECT to_regclass('$t') IS NOT NULL") == t ]] && tables+=("$t")
    done
    ((${#tables[@]})) || return 0
    local IFS=, try
    # A forwarder claiming meanwhile (BENCH_FORWARD=1, or someone else's stack) can deadlock
    # with TRUNCATE's exclusive locks: PostgreSQL then aborts one side, and run.sh tries again.
    for try in 1 2 3 4 5; do
        "${PSQL[@]}" -c "SET lock_timeout = '5s'" -c "TRUNCATE ${tables[*]} CASCADE" 2>"$WORK/truncate.err" && return 0
        grep -qE 'deadlock detected|lock timeout' "$WORK/truncate.err" || { cat "$WORK/truncate.err" >&2; return 1; }
        say "emptying the gateway's tables met a lock (try $try of 5); again"
        sleep 1
    done
    cat "$WORK/truncate.err" >&2
    return 1
}
GW_ROWS_AT_START=

run_wgload() { # NAME CONNS STREAMS BATCH -> R_* ; appends the full output to $WORK/wgload.log
    local name=$1 conns=$2 streams=$3 batch=$4 out line rc=0 t0 t1 p0 p1 args
    if [[ -n $RESET && $MODE != smoke ]]; then
        reset_gateway_tables
    elif [[ -z $GW_ROWS_AT_START ]]; then
        GW_ROWS_AT_START=$("${PSQL[@]}" -tA -c 'SELECT count(*) FROM waybill' 2>/dev/null || echo "?")
    fi
    checkpoint
    args=(-c "$conns" -s "$streams" --first "$NEXT")
    ((batch > 0)) && args+=(-b "$batch")
    if [[ $MODE == smoke ]]; then
        args+=(-n $((batch > 0 ? 4 : 200)) -w 0)
    else
        args+=(-d "$DUR" -w 1)
    fi
    t0=$(gw_cpu_ticks) p0=$(pg_cpu_ticks)
    out=$("$WGLOAD" "${args[@]}" 2>&1) || rc=$?
    t1=$(gw_cpu_ticks) p1=$(pg_cpu_ticks)
    { echo "== $name: wgload ${args[*]}"; echo "$out"; } >>"$WORK/wgload.log"
    line=$(grep '^RESULT ' <<<"$out" | tail -n 1 || true)
    if [[ -z $line ]]; then
        echo "$out" >&2
        die "wgload $name produced no result (exit $rc)"
    fi
    kv() { sed -nE "s/.* $1=([^ ]*).*/\1/p" <<<"$line"; }
    R_wps=$(kv wps); R_p50=$(kv p50_ms); R_p99=$(kv p99_ms); R_err=$(kv errors)
    R_cpu=$(kv cpu_us_per_wb); R_okall=$(kv ok_all)
    NEXT=$(kv next)
    echo "$NEXT" >"$NEXT_FILE"
    # over the whole call (warm-up and drain included) and every waybill it got accepted
    R_gwcpu=$(per_unit_us "$t0" "$t1" "${R_okall:-0}")
    R_pgcpu=$(per_unit_us "$p0" "$p1" "${R_okall:-0}")
    if ((rc != 0)); then
        grep -E '^  (errors|call status|item status|e\.g\.)' <<<"$out" | sed "s/^/bench: $name: /" >&2 || true
    fi
    return 0
}

gw_conf_summary() { # the [server]/[database] settings that shape these figures
    local f=${WAYGATE_CONF:-}
    [[ -r $f ]] || { echo "configuration not readable"; return; }
    grep -E '^[[:space:]]*(max_concurrent_streams|pool_size|pipeline_depth|queue_max)[[:space:]]*=' "$f" |
        tr -d ' ' | paste -sd' ' | sed 's/^$/defaults/; s/^/waygated.conf: /'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# NAME BASE -> the median over rounds of NAME's waybills/s over BASE's in the same round (a figure
# is compared with the baseline measured minutes before it, not with another round's)
paired_ratio() {
    awk -v a="${V_W[$1]}" -v b="${V_W[$2]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) if (y[i] > 0) printf "%.2f\n", x[i] / y[i] }' | median
}
ratios_list() { # NAME BASE -> "1.16, 1.41, 1.19"
    awk -v a="${V_W[$1]}" -v b="${V_W[$2]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) if (y[i] > 0) printf "%s%.2f", (i > 1 ? ", " : ""), x[i] / y[i] }'
}

# ---------------------------------------------------------------- issue 7: reads, Search, Login
# (g)  Get at 64 streams (courier_a, its own branch's waybills: GET_N numbers submitted just
#      before) vs (g0) pgbench, 16 clients, the same lookups in SQL: the gateway's own statement
#      (bench_base get-sql) by wb_bidx, the blind indexes of those waybills in bench_get_keys;
# (s)  Search by a phone that exactly 20 waybills share (submitted with --same-phone) vs (s0)
#      pgbench, 16 clients, the 20 rows by the phone's blind index (sender or recipient), newest
#      first;
# (l)  Login throughput (16 concurrent, the dev stack's clerk_a) vs (l0) one thread's scrypt
#      verifications/s at the gateway's cost;
# (p)  Submit p99 at 64 streams while 20 Logins run in parallel (p) and without them (p0);
# (pr) Submit at PR_FRACTION of p0's waybills/s in an open loop (wgload --rate: each call sent
#      when due, its latency counted from then) while 20 Logins run (pr), without them (pr0), and
#      beside as many SCHED_IDLE busy loops as the gateway has auth workers, in its worker cgroup
#      when it has one (pri: the control);
#      PR_ROUNDS rounds in the order pr0 pr pri, then pri pr pr0, ... (drift cancels).
# A figure the stack cannot give (UNIMPLEMENTED, no account) is skipped and said so; one that ran
# with failed calls fails the run.
GET_N=${BENCH_GET_N:-20000}
[[ $MODE == smoke ]] && GET_N=${BENCH_GET_N:-150} # under the default policy's 200 lookups
READ_CLIENTS=${BENCH_READ_CLIENTS:-16}
PR_FRACTION=${BENCH_PR_FRACTION:-0.5}
PR_ROUNDS=${BENCH_PR_ROUNDS:-3}
[[ $MODE == smoke ]] && PR_ROUNDS=1
FIGURES=${BENCH_FIGURES:-submit get search login storm audit}
want() { [[ " $FIGURES " == *" $1 "* ]]; }
declare -A SKIP=() WHY_FAIL=()
ISSUE7=()

find_bench_base() {
    BENCH_BASE=${BENCH_BASE:-$BUILD/tests/bench/bench_base}
    if [[ ! -x $BENCH_BASE ]]; then
        say "building bench_base in $BUILD"
        cmake --build "$BUILD" --target bench_base >"$WORK/build.log" 2>&1 ||
            { tail -n 30 "$WORK/build.log" >&2; die "cannot build bench_base (set BENCH_BASE=...)"; }
    fi
}

# NAME ARGS...: one wgload run; sets R_wps (calls/s), R_items (items/s), R_p50, R_p99, R_err,
# R_state (ok | skip | fail) and R_why; the full output goes to $WORK/wgload.log.
run_wl() {
    local name=$1 out line rc=0 unimpl okall
    shift
    out=$("$WGLOAD" "$@" 2>&1) || rc=$?
    { echo "== $name: wgload $*"; echo "$out"; } >>"$WORK/wgload.log"
    line=$(grep '^RESULT ' <<<"$out" | tail -n 1 || true)
    R_why='' R_codes=- R_wps=0 R_items=0 R_p50=0 R_p99=0 R_err=0 R_cpu='' R_gwcpu='' R_pgcpu=''
    if [[ -z $line ]]; then
        R_state=fail R_err=1 R_why="wgload gave no result (exit $rc): $(grep -m1 'wgload:' <<<"$out" || true)"
        return 0
    fi
    kv() { sed -nE "s/.* $1=([^ ]*).*/\1/p" <<<"$line"; }
    R_wps=$(kv cps) R_items=$(kv wps) R_p50=$(kv p50_ms) R_p99=$(kv p99_ms) R_err=$(kv errors)
    unimpl=$(kv unimplemented) R_codes=$(kv codes) okall=$(kv ok_all)
    R_why=$(grep -m1 '^  e\.g\. ' <<<"$out" | sed 's/^  e\.g\. *//' || true)
    if ((R_err == 0 && okall > 0)); then
        R_state=ok
    elif ((R_err > 0 && unimpl == R_err)); then
        R_state=skip R_why="answers UNIMPLEMENTED ($R_why)"
    else
        R_state=fail
        [[ -n $R_why ]] || R_why="no call succeeded"
        R_why="$R_why; call status $R_codes"
    fi
}

# NAME CLIENTS SCRIPT: a read-only pgbench; sets R_wps (transactions/s), R_p50, R_p99, R_err.
run_pgbench_read() {
    local name=$1 clients=$2 script=$3 out tps failed
    R_cpu='' R_gwcpu='' R_pgcpu='' R_state=ok R_why=''
    out=$("$PGBIN/pgbench" -n -M prepared -c "$clients" -j 2 -T "$DUR" -f "$script" \
        -l --log-prefix="$WORK/log-$name" "$PGURI" 2>&1) || { echo "$out" >&2; die "pgbench $name failed"; }
    tps=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' <<<"$out")
    failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' <<<"$out")
    [[ -n $tps ]] || { echo "$out" >&2; die "cannot read pgbench's tps"; }
    R_wps=$(awk -v t="$tps" 'BEGIN { printf "%.1f", t }')
    read -r R_p50 R_p99 < <(pgbench_pct "$WORK/log-$name")
    R_err=${failed:-0}
    rm -f "$WORK/log-$name".*
}

# Remembers the blind indexes the table has now, so that new_rows can tell this figure's rows.
snapshot_rows() {
    "${PSQL[@]}" -c 'DROP TABLE IF EXISTS bench_seen' -c 'CREATE TABLE bench_seen AS SELECT wb_bidx FROM waybill' \
        -c 'CREATE UNIQUE INDEX ON bench_seen (wb_bidx)'
    SCRATCH_CREATED=1
}
NEW_ROWS="waybill w WHERE NOT EXISTS (SELECT 1 FROM bench_seen s WHERE s.wb_bidx = w.wb_bidx)"

# Submits N waybills from NEXT as courier_a (extra wgload arguments after N); 0 when all went in.
submit_n() {
    local name=$1 n=$2
    shift 2
    run_wl "$name" -c 2 -s 16 --first "$NEXT" -n "$n" "$@"
    if [[ $R_state != ok ]]; then
        say "$name: submitting $n waybills failed: $R_why"
        return 1
    fi
    NEXT=$(sed -nE 's/.* next=([0-9]+).*/\1/p' <<<"$(grep '^RESULT ' "$WORK/wgload.log" | tail -n 1)")
    echo "$NEXT" >"$NEXT_FILE"
}

# FIGURE: records a skipped or failed figure of this round (R_state, R_why).
note_state() {
    local n=$1
    case $R_state in
    skip) SKIP[$n]=$R_why; say "$n: skipped: $R_why" ;;
    fail) WHY_FAIL[$n]=$R_why; ERR[$n]=$((${ERR[$n]:-0} + (R_err > 0 ? R_err : 1))); say "$n: FAILED: $R_why" ;;
    esac
}

figure_get() {
    local first n
    [[ -n $RESET && $MODE != smoke ]] && reset_gateway_tables
    snapshot_rows
    first=$NEXT
    submit_n g-setup "$GET_N" || { R_state=fail R_why="could not submit the $GET_N waybills to look up"; note_state g; return; }
    "${PSQL[@]}" -c 'DROP TABLE IF EXISTS bench_get_keys' \
        -c "CREATE TABLE bench_get_keys AS SELECT row_number() OVER () AS n, w.wb_bidx AS b FROM $NEW_ROWS" \
        -c 'ALTER TABLE bench_get_keys ADD PRIMARY KEY (n)' -c 'ANALYZE bench_get_keys'
    n=$("${PSQL[@]}" -tA -c 'SELECT count(*) FROM bench_get_keys')
    ((n == GET_N)) || say "g0: the table shows $n new rows, $GET_N were submitted (other writers?); pgbench looks up those $n"
    ((n > 0)) || { R_state=fail R_why="no new rows visible to the owner (row-level security?)"; note_state g0; return; }
    checkpoint
    local margs=(-d "$DUR" -w 1)
    [[ $MODE == smoke ]] && margs=(-d 1 -w 0)
    run_wl g --get --first "$first" --count "$GET_N" -c 4 -s 16 "${margs[@]}"
    if [[ $R_state == ok ]]; then
        keep g
        say "g Get 64 streams: $R_wps lookups/s  p50 $R_p50 ms  p99 $R_p99 ms"
    else
        [[ $R_why == *RESOURCE_EXHAUSTED* ]] && R_why="$R_why (the scraping throttle: raise the courier's lookups per window in the stack's policy file, [policy] file in waygated.conf, or run against such a stack DIR)"
        note_state g
    fi
    {
        echo "\\set k random(1, $n)"
        echo "$("$BENCH_BASE" get-sql | sed -E 's/\$[12]([^0-9]|$)/(SELECT b FROM bench_get_keys WHERE n = :k)\1/g');"
    } >"$WORK/g0.sql"
    run_pgbench_read g0 "$READ_CLIENTS" "$WORK/g0.sql"
    keep g0
    say "g0 pgbench $READ_CLIENTS clients: $R_wps lookups/s  p50 $R_p50 ms  p99 $R_p99 ms"
}

figure_search() {
    local phone bidx n who=()
    snapshot_rows
    phone=139$(printf '%08d' $((NEXT % 100000000)))
    submit_n s-setup 20 --same-phone "$phone" -c 1 -s 4 ||
        { R_state=fail R_why="could not submit the 20 waybills to search for"; note_state s; return; }
    bidx=$("${PSQL[@]}" -tA -c "SELECT encode(w.recipient_phone_bidx, 'hex') FROM $NEW_ROWS GROUP BY 1 HAVING count(*) = 20")
    who=(--cert "$WAYGATE_P_courier_a_CERT" --key "$WAYGATE_P_courier_a_KEY")
    S_WHO=courier_a
    if [[ -n ${WAYGATE_P_clerk_a_ACCOUNT:-} && -n ${WAYGATE_P_clerk_a_PASSWORD:-} && -n ${WAYGATE_P_branch_a_CERT:-} ]]; then
        who=(--cert "$WAYGATE_P_branch_a_CERT" --key "$WAYGATE_P_branch_a_KEY"
            --as "$WAYGATE_P_clerk_a_ACCOUNT" --password-env WAYGATE_P_clerk_a_PASSWORD)
        S_WHO="clerk_a (branch_a certificate)"
    fi
    local margs=(-d "$DUR" -w 1)
    [[ $MODE == smoke ]] && margs=(-d 1 -w 0)
    run_wl s --search-phone "$phone" --expect 20 -c 4 -s 16 "${who[@]}" "${margs[@]}"
    if [[ $R_state == fail && $S_WHO == courier_a && $R_codes == PERMISSION_DENIED:* && $R_codes != *,* ]]; then
        R_state=skip R_why="courier_a may not call Search (PERMISSION_DENIED) and the stack has no clerk_a account (WAYGATE_P_clerk_a_ACCOUNT/PASSWORD in DIR/env)"
    fi
    if [[ $R_state == ok ]]; then
        keep s
        say "s Search by phone (20 results), 64 streams as $S_WHO: $R_wps searches/s  p50 $R_p50 ms  p99 $R_p99 ms"
    else
        note_state s
    fi
    if [[ -z $bidx ]]; then
        say "s0: the 20 rows sharing the phone are not visible to the owner; no baseline"
        return
    fi
    local sql where
    sql=$("$BENCH_BASE" get-sql)
    where="WHERE \\1sender_phone_bidx = '\\\\x$bidx'::bytea OR \\1recipient_phone_bidx = '\\\\x$bidx'::bytea ORDER BY \\1accepted_at DESC, \\1id LIMIT 21"
    sql=$(sed -E "s/WHERE ([a-z_]+\\.)?wb_bidx IN \\(\\\$1, \\\$2\\)\$/$where/" <<<"$sql")
    if [[ $sql == *'$1'* ]]; then
        R_state=fail R_why="bench_base get-sql: the statement does not end in WHERE wb_bidx IN (\$1, \$2); cannot derive the Search baseline"
        note_state s0
        return
    fi
    echo "$sql;" >"$WORK/s0.sql"
    run_pgbench_read s0 "$READ_CLIENTS" "$WORK/s0.sql"
    keep s0
    say "s0 pgbench $READ_CLIENTS clients: $R_wps searches/s  p50 $R_p50 ms  p99 $R_p99 ms"
}

LOGIN_OK=
login_args() {
    LOGIN=(--cert "$WAYGATE_P_branch_a_CERT" --key "$WAYGATE_P_branch_a_KEY"
        --login "$WAYGATE_P_clerk_a_ACCOUNT" --password-env WAYGATE_P_clerk_a_PASSWORD)
}
no_account() {
    [[ -z ${WAYGATE_P_clerk_a_ACCOUNT:-} || -z ${WAYGATE_P_clerk_a_PASSWORD:-} || -z ${WAYGATE_P_branch_a_CERT:-} ]]
}

figure_login() {
    if no_account; then
        R_state=skip R_why="the stack has no clerk_a account (WAYGATE_P_clerk_a_ACCOUNT/PASSWORD in DIR/env)"
        note_state l
        return
    fi
    login_args
    local margs=(-d "$DUR" -w 1)
    # a login takes a few hundred ms of scrypt: in 1 s a busy machine may finish none, so the
    # smoke run counts 8 logins instead (the window then spans them all)
    [[ $MODE == smoke ]] && margs=(-n 8 -w 0)
    run_wl l -c 1 -s 16 "${LOGIN[@]}" "${margs[@]}"
    if [[ $R_state != ok ]]; then
        note_state l
        return
    fi
    LOGIN_OK=1
    keep l
    say "l Login, 16 concurrent: $R_wps logins/s  p50 $R_p50 ms  p99 $R_p99 ms"
    local sn out
    sn=$(sed -nE 's/^[[:space:]]*scrypt_n[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "${WAYGATE_CONF:-/nonexistent}" 2>/dev/null | tail -n 1)
    SCRYPT_N=${sn:-32768}
    out=$("$BENCH_BASE" scrypt "$SCRYPT_N" "$DUR") || die "bench_base scrypt failed: $out"
    R_wps=$(sed -nE 's/.* per_s=([0-9.]+).*/\1/p' <<<"$out") R_p50=$(sed -nE 's/.* ms_each=([0-9.]+).*/\1/p' <<<"$out")
    R_p99='' R_err=0
    keep l0
    say "l0 scrypt N=$SCRYPT_N, one thread: $R_wps verifications/s  ($R_p50 ms each)"
}

figure_storm() {
    if no_account; then
        R_state=skip R_why="the stack has no clerk_a account (WAYGATE_P_clerk_a_ACCOUNT/PASSWORD in DIR/env)"
        note_state p
        return
    fi
    if [[ -z $LOGIN_OK ]] && want login; then
        R_state=skip R_why="Login does not work on this stack (figure l)"
        note_state p
        return
    fi
    login_args
    local margs=(-d "$DUR" -w 1) sdur storm_pid storm_out=$WORK/storm.out
    [[ $MODE == smoke ]] && margs=(-d 1 -w 1)
    # p0: Submit at 64 streams, quiet
    [[ -n $RESET && $MODE != smoke ]] && reset_gateway_tables
    checkpoint
    run_wl p0 -c 4 -s 16 --first "$NEXT" "${margs[@]}"
    if [[ $R_state != ok ]]; then
        note_state p0
        return
    fi
    NEXT=$(sed -nE 's/.* next=([0-9]+).*/\1/p' <<<"$(grep '^RESULT ' "$WORK/wgload.log" | tail -n 1)")
    echo "$NEXT" >"$NEXT_FILE"
    keep p0
    P0_ITEMS=$R_items
    say "p0 Submit 64 streams, no logins: $R_items waybills/s  p50 $R_p50 ms  p99 $R_p99 ms"
    # p: the same while a storm of 20 parallel Logins runs through the whole window
    [[ -n $RESET && $MODE != smoke ]] && reset_gateway_tables
    checkpoint
    sdur=$(awk -v d="${margs[1]}" 'BEGIN { print d + 3 }')
    "$WGLOAD" -c 1 -s 20 "${LOGIN[@]}" -d "$sdur" -w 0 >"$storm_out" 2>&1 &
    storm_pid=$!
    sleep 0.5
    run_wl p -c 4 -s 16 --first "$NEXT" "${margs[@]}"
    local st=$R_state why=$R_why
    wait "$storm_pid" || true
    NEXT=$(sed -nE 's/.* next=([0-9]+).*/\1/p' <<<"$(grep '^RESULT ' "$WORK/wgload.log" | tail -n 1)")
    echo "$NEXT" >"$NEXT_FILE"
    { echo "== p-storm: 20 parallel logins"; cat "$storm_out"; } >>"$WORK/wgload.log"
    STORM_LPS=$(sed -nE 's/^RESULT .* cps=([0-9.]+).*/\1/p' "$storm_out")
    if ! storm_ok "$storm_out"; then
        R_state=fail R_why="the login storm failed: $(grep -m1 -E '^  e\.g\.|wgload:' "$storm_out" || echo 'no result')"
        note_state p
        figure_storm_rate
        return
    fi
    R_state=$st R_why=$why
    if [[ $R_state == ok ]]; then
        keep p
        say "p Submit 64 streams, 20 logins in parallel ($STORM_LPS logins/s): $R_items waybills/s  p50 $R_p50 ms  p99 $R_p99 ms"
    else
        note_state p
    fi
    figure_storm_rate
}

# FILE: the storm's wgload output shows no failed Login. Logins still queued when its window
# ended and not answered within wgload's 15 s grace (a starved pool on a busy machine: the
# workers only get idle CPU) are not failures of the storm; they are counted in STORM_UNFINISHED.
STORM_UNFINISHED=0
storm_ok() {
    local e u
    e=$(sed -nE 's/^RESULT .* errors=([0-9]+).*/\1/p' "$1")
    u=$(sed -nE 's/^  errors .*unfinished ([0-9]+).*/\1/p' "$1")
    [[ -n $e ]] || return 1
    STORM_UNFINISHED=$((STORM_UNFINISHED + ${u:-0}))
    ((e - ${u:-0} == 0))
}

auth_key() { # KEY: [auth] KEY of the gateway's configuration, or nothing
    awk -F= -v k="$1" '/^[[:space:]]*\[/ { sec = $0; gsub(/[][[:space:]]/, "", sec); next }
        sec == "auth" && $1 ~ "^[[:space:]]*" k "[[:space:]]*$" { gsub(/[[:space:]]/, "", $2); v = $2 }
        END { print v }' "${WAYGATE_CONF:-/nonexistent}" 2>/dev/null || true
}
auth_workers() { # [auth] workers of the gateway's configuration (default 2)
    local n
    n=$(auth_key workers)
    echo "${n:-2}"
}

# The gateway's main thread (its event loop): "RUN_NS WAIT_NS" from the kernel's schedstat (time
# on a CPU, time runnable but waiting for one), or "0 0" when unknown.
loop_sched() {
    local pid
    pid=$(cat "${WAYGATE_PIDFILE:-/nonexistent}" 2>/dev/null) || { echo "0 0"; return; }
    awk '{ print $1, $2 }' "/proc/$pid/task/$pid/schedstat" 2>/dev/null || echo "0 0"
}

# NAME BG: one open-loop Submit run at PR_RATE beside BG (none | logins | idle); keeps NAME.
run_rate() {
    local name=$1 bg=$2 bg_pids=() bg_out=$WORK/$1-bg.out sdur i st why rate_line s0 s1 t0 t1
    [[ -n $RESET && $MODE != smoke ]] && reset_gateway_tables
    checkpoint
    sdur=$(awk -v d="${PR_MARGS[1]}" 'BEGIN { print d + 3 }')
    case $bg in
    logins)
        "$WGLOAD" -c 1 -s 20 "${LOGIN[@]}" -d "$sdur" -w 0 >"$bg_out" 2>&1 &
        bg_pids=($!) ;;
    idle) # placed as the gateway places its hashing: in [auth] worker_cgroup when it has one
        for ((i = 0; i < PR_IDLE_N; i++)); do
            CG=$PR_IDLE_CG chrt -i 0 timeout "$sdur" bash -c \
                '[[ -z $CG ]] || echo $$ >"$CG/cgroup.procs"; while :; do :; done' &
            bg_pids+=($!)
        done ;;
    esac
    ((${#bg_pids[@]} == 0)) || sleep 0.5
    s0=$(loop_sched) t0=$(date +%s%N)
    run_wl "$name" -c 4 -s 16 --rate "$PR_RATE" --first "$NEXT" "${PR_MARGS[@]}"
    s1=$(loop_sched) t1=$(date +%s%N)
    st=$R_state why=$R_why
    # the loop's wait for a CPU, ms per second of the run (0 when the gateway's pid is unknown)
    PR_RQ[$name]+=" $(awk -v a="$s0" -v b="$s1" -v t="$((t1 - t0))" 'BEGIN {
        split(a, x, " "); split(b, y, " "); printf "%.0f", (t > 0 ? (y[2] - x[2]) / t * 1000 : 0) }')"
    rate_line=$(grep '^RATE ' "$WORK/wgload.log" | tail -n 1 || true)
    NEXT=$(sed -nE 's/.* next=([0-9]+).*/\1/p' <<<"$(grep '^RESULT ' "$WORK/wgload.log" | tail -n 1)")
    echo "$NEXT" >"$NEXT_FILE"
    if [[ $bg == idle ]]; then
        for i in "${bg_pids[@]}"; do kill "$i" 2>/dev/null || true; done
    fi
    for i in "${bg_pids[@]}"; do wait "$i" 2>/dev/null || true; done
    local lps=''
    if [[ $bg == logins ]]; then
        { echo "== $name-storm: 20 parallel logins"; cat "$bg_out"; } >>"$WORK/wgload.log"
        lps=$(sed -nE 's/^RESULT .* cps=([0-9.]+).*/\1/p' "$bg_out")
        if ! storm_ok "$bg_out"; then
            st=fail why="the login storm failed: $(grep -m1 -E '^  e\.g\.|wgload:' "$bg_out" || echo 'no result')"
        fi
        PR_LPS+=" $lps"
    fi
    R_state=$st R_why=$why
    if [[ $R_state != ok ]]; then
        note_state "$name"
        return 1
    fi
    keep "$name"
    kvr() { sed -nE "s/.* $1=([^ ]*).*/\1/p" <<<"$rate_line"; }
    PR_LATE[$name]+=" $(kvr late)/$(kvr sent)"
    PR_LAG[$name]+=" $(kvr lag_max_ms)"
    say "$name Submit open loop at $PR_RATE/s$([[ $bg == logins ]] && echo ", 20 logins in parallel ($lps logins/s)")$([[ $bg == idle ]] && echo ", $PR_IDLE_N SCHED_IDLE busy loops"): $R_items waybills/s  p50 $R_p50 ms  p99 $R_p99 ms  late $(kvr late) of $(kvr sent), lag max $(kvr lag_max_ms) ms"
}

# (pr0, pr, pri): the open-loop figures at PR_FRACTION of this round's p0.
declare -A PR_LATE=() PR_LAG=() PR_RQ=()
PR_LPS=
figure_storm_rate() {
    local k order
    PR_RATE=$(awk -v w="${P0_ITEMS:-0}" -v f="$PR_FRACTION" 'BEGIN { printf "%.0f", w * f }')
    if ((PR_RATE < 1)); then
        R_state=fail R_why="p0 gave no throughput to take a fraction of"
        note_state pr0
        return
    fi
    PR_IDLE_N=$(auth_workers)
    PR_IDLE_CG=$(auth_key worker_cgroup)
    PR_MARGS=(-d "$DUR" -w 1)
    [[ $MODE == smoke ]] && PR_MARGS=(-d 1 -w 1)
    for ((k = 1; k <= PR_ROUNDS; k++)); do
        if ((k % 2)); then order="pr0:none pr:logins pri:idle"; else order="pri:idle pr:logins pr0:none"; fi
        for f in $order; do
            run_rate "${f%%:*}" "${f#*:}" || return 0
        done
    done
}

issue7_round() {
    want get && figure_get
    want search && figure_search
    want login && figure_login
    want storm && figure_storm
    "${PSQL[@]}" -c 'DROP TABLE IF EXISTS bench_seen' -c 'DROP TABLE IF EXISTS bench_get_keys'
    return 0
}

# ---------------------------------------------------------------- issue 8: the audit chain
# (u0) pgbench, A1_CLIENTS clients, one row per transaction (a1's script), right before the two
#      figures below: the raw one-row baseline of the same run;
# (uq) Submit at 64 streams (4 x 16), the audit chain on (the writer running, checkpoints by
#      timer) but no audited traffic: the issue asks uq >= 1.2 x u0;
# (u)  the same while a second wgload searches, at 4 streams over the whole window, by a phone one
#      waybill has: every Search is a search.phone audit record committed before its row leaves,
#      so the chain writer commits all the time beside the Submits (the chain must not serialise
#      commits: u stays near uq). Also counted: the audit records committed in the window and the
#      transactions that carried them (the records of one transaction share recorded_at, its
#      start);
# (r)  tests/bench/reveal_rt.py: a Reveal's latency and database commits beside a Get's, one call
#      at a time (the issue: at most one extra round trip for the audit record).
U_NOTE= R_NOTE=
figure_audit() {
    local phone who=() margs=(-d "$DUR" -w 1) sdur bg_pid bg_out=$WORK/audit-bg.out t0 counts
    [[ $MODE == smoke ]] && margs=(-d 1 -w 1)
    [[ -n $RESET && $MODE != smoke ]] && reset_gateway_tables
    phone=137$(printf '%08d' $((NEXT % 100000000)))
    submit_n u-setup 1 --same-phone "$phone" -c 1 -s 1 ||
        { R_state=fail R_why="could not submit the waybill to search for"; note_state u; return; }
    who=(--cert "$WAYGATE_P_courier_a_CERT" --key "$WAYGATE_P_courier_a_KEY")
    if [[ -n ${WAYGATE_P_clerk_a_ACCOUNT:-} && -n ${WAYGATE_P_clerk_a_PASSWORD:-} && -n ${WAYGATE_P_branch_a_CERT:-} ]]; then
        who=(--cert "$WAYGATE_P_branch_a_CERT" --key "$WAYGATE_P_branch_a_KEY"
            --as "$WAYGATE_P_clerk_a_ACCOUNT" --password-env WAYGATE_P_clerk_a_PASSWORD)
    fi
    "${PSQL[@]}" -c 'TRUNCATE bench_baseline'
    checkpoint
    run_pgbench u0 "$A1_CLIENTS" "$WORK/a1.sql" 1
    keep u0
    say "u0 one row/txn: $R_wps rows/s  p50 $R_p50 ms  p99 $R_p99 ms"
    checkpoint
    run_wl uq -c 4 -s 16 --first "$NEXT" "${margs[@]}"
    if [[ $R_state != ok ]]; then
        note_state uq
        return
    fi
    NEXT=$(sed -nE 's/.* next=([0-9]+).*/\1/p' <<<"$(grep '^RESULT ' "$WORK/wgload.log" | tail -n 1)")
    echo "$NEXT" >"$NEXT_FILE"
    R_wps=$R_items
    keep uq
    say "uq Submit 64 streams, the chain on, no audited traffic: $R_items waybills/s  p50 $R_p50 ms  p99 $R_p99 ms"
    checkpoint
    t0=$("${PSQL[@]}" -tA -c 'SELECT now()')
    sdur=$(awk -v d="${margs[1]}" 'BEGIN { print d + 3 }')
    "$WGLOAD" --search-phone "$phone" --expect 1 -c 1 -s 4 "${who[@]}" -d "$sdur" -w 0 >"$bg_out" 2>&1 &
    bg_pid=$!
    sleep 0.5
    run_wl u -c 4 -s 16 --first "$NEXT" "${margs[@]}"
    local st=$R_state why=$R_why
    wait "$bg_pid" || true
    NEXT=$(sed -nE 's/.* next=([0-9]+).*/\1/p' <<<"$(grep '^RESULT ' "$WORK/wgload.log" | tail -n 1)")
    echo "$NEXT" >"$NEXT_FILE"
    { echo "== u-searches: audited Searches beside the Submits"; cat "$bg_out"; } >>"$WORK/wgload.log"
    counts=$("${PSQL[@]}" -tA -F' ' -c "SELECT count(*), count(DISTINCT recorded_at) FROM audit_record WHERE action = 'search.phone' AND recorded_at >= '$t0'")
    local sps serr
    sps=$(sed -nE 's/^RESULT .* cps=([0-9.]+).*/\1/p' "$bg_out")
    serr=$(sed -nE 's/^RESULT .* errors=([0-9]+).*/\1/p' "$bg_out")
    if [[ -z $serr || $serr != 0 ]]; then
        R_state=fail R_why="the audited searches beside it failed: $(grep -m1 -E '^  e\.g\.|wgload:' "$bg_out" || echo 'no result')"
        note_state u
        return
    fi
    R_state=$st R_why=$why
    if [[ $R_state == ok ]]; then
        R_wps=$R_items
        keep u
        read -r nrec ntx <<<"$counts"
        U_NOTE="$sps audited searches/s beside it; $nrec search.phone records committed in $ntx transactions ($(awk -v a="$nrec" -v b="$ntx" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }') a commit)"
        say "u Submit 64 streams with the audit chain busy: $R_items waybills/s  p50 $R_p50 ms  p99 $R_p99 ms; $U_NOTE"
    else
        note_state u
    fi
    local n=200 out
    [[ $MODE == smoke ]] && n=5
    [[ -n $OWN_STACK ]] || n=15 # someone else's stack: the built-in reveal quota (20 an hour)
    out=$(/usr/bin/python3 "$ROOT/tests/bench/reveal_rt.py" "$DIR" "$n" 2>&1) ||
        { say "r: reveal_rt.py failed: $out"; R_state=fail R_why="reveal_rt.py failed"; note_state r; return; }
    echo "$out" >>"$WORK/wgload.log"
    R_NOTE=$(grep -v '^RESULT ' <<<"$out" | sed 's/^/  /')
    say "r: $(grep "^Reveal - Get" <<<"$out")"
}

# ---------------------------------------------------------------- run
say "mode $MODE, ${DUR}s per figure, database $(sed -E 's/\?.*//' <<<"$PGURI")"
make_baseline
say "baseline table: $BASELINE_SHAPE; $NINDEX indexes"

declare -A V_W V_P50 V_P99 V_CPU V_GWCPU V_PGCPU W P50 P99 CPU GWCPU PGCPU ERR DESC
keep() { # NAME: appends this round's R_* figures to NAME's lists
    local n=$1
    V_W[$n]+=" $R_wps" V_P50[$n]+=" $R_p50" V_P99[$n]+=" $R_p99"
    V_CPU[$n]+=" ${R_cpu:-}" V_GWCPU[$n]+=" ${R_gwcpu:-}" V_PGCPU[$n]+=" ${R_pgcpu:-}"
    ERR[$n]=$((${ERR[$n]:-0} + R_err))
}
median() { # the median of the numbers on stdin (the lower one for an even count), or n/a
    tr ' ' '\n' | awk '/^[0-9.]+$/' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print v[int((NR + 1) / 2)] }'
}

GW_RUNS=()
if [[ $MODE != baseline ]]; then
    [[ -n ${WAYGATE_SEGMENT_A:-} ]] || die "the dev stack issued no segment to branch a (WAYGATE_SEGMENT_A empty)"
    find_wgload
    next_number
    if want get || want search || want login; then find_bench_base; fi
    if [[ $MODE == smoke ]]; then
        CONF=${BENCH_CONF:-"s8:1:8:0 b20:1:2:20"}
    else
        CONF=${BENCH_CONF:-"s16:2:8:0 s64:4:16:0 s128:8:16:0 b100:4:2:100"}
    fi
    for spec in $CONF; do
        IFS=: read -r name conns streams batch <<<"$spec"
        want submit && GW_RUNS+=("$name:$batch")
        if ((batch > 0)); then
            DESC[$name]="gateway SubmitBatch of $batch, $conns conn x $streams streams"
        else
            DESC[$name]="gateway Submit, $((conns * streams)) streams ($conns conn x $streams)"
        fi
    done
fi
DESC[a1]="pgbench, $A1_CLIENTS clients, 1 row per transaction"
DESC[a2]="pgbench, $A2_CLIENTS clients, $A2_ROWS rows per transaction, pipelined"

for ((round = 1; round <= REPEAT; round++)); do
    ((REPEAT == 1)) || say "round $round of $REPEAT"
    if want submit || [[ $MODE == baseline ]]; then
        run_pgbench a1 "$A1_CLIENTS" "$WORK/a1.sql" 1
        keep a1
        say "a1 one row/txn:  $R_wps rows/s  p50 $R_p50 ms  p99 $R_p99 ms  postgres $R_pgcpu us/row"
        run_pgbench a2 "$A2_CLIENTS" "$WORK/a2.sql" "$A2_ROWS"
        keep a2
        say "a2 pipelined:    $R_wps rows/s  p50 $R_p50 ms (per transaction)  p99 $R_p99 ms  postgres $R_pgcpu us/row"
    fi
    [[ $MODE != baseline ]] || continue
    if want submit; then
        for spec in $CONF; do
            IFS=: read -r name conns streams batch <<<"$spec"
            run_wgload "$name" "$conns" "$streams" "$batch"
            keep "$name"
            say "$name: $R_wps waybills/s  p50 $R_p50 ms  p99 $R_p99 ms  errors $R_err  client $R_cpu us/wb  gateway $R_gwcpu us/wb  postgres $R_pgcpu us/wb"
        done
    fi
    issue7_round
    want audit && figure_audit
done
"${PSQL[@]}" -c 'DROP TABLE IF EXISTS bench_baseline'
BASELINE_CREATED=

FAILED=0
for n in "${!ERR[@]}"; do
    ((ERR[$n] == 0)) || FAILED=1
    W[$n]=$(median <<<"${V_W[$n]:-}") P50[$n]=$(median <<<"${V_P50[$n]:-}")
    P99[$n]=$(median <<<"${V_P99[$n]:-}") CPU[$n]=$(median <<<"${V_CPU[$n]:-}")
    GWCPU[$n]=$(median <<<"${V_GWCPU[$n]:-}") PGCPU[$n]=$(median <<<"${V_PGCPU[$n]:-}")
done

# ---------------------------------------------------------------- report
vs() { # NAME -> the baseline it is compared with
    local b=${1#*:}
    ((b > 0)) && echo a2 || echo a1
}
TABLE=$WORK/table.md
{
    echo "| figure | what | waybills/s | vs baseline | p50 ms | p99 ms | client CPU us/wb | gateway CPU us/wb | PostgreSQL CPU us/wb | errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in a1 a2; do
        [[ -n ${W[$n]:-} ]] || continue
        echo "| $n | ${DESC[$n]} | ${W[$n]} | 1.00 | ${P50[$n]} | ${P99[$n]} | | | ${PGCPU[$n]} | ${ERR[$n]} |"
    done
    for r in "${GW_RUNS[@]}"; do
        n=${r%%:*} b=$(vs "$r")
        echo "| $n | ${DESC[$n]} | ${W[$n]} | $(paired_ratio "$n" "$b") x $b | ${P50[$n]} | ${P99[$n]} | ${CPU[$n]} | ${GWCPU[$n]} | ${PGCPU[$n]} | ${ERR[$n]} |"
    done
} >"$TABLE"
if [[ -n ${W[a1]:-} ]]; then
    echo
    cat "$TABLE"
    echo
fi

TARGETS=$WORK/targets.md
: >"$TARGETS"
if [[ -n ${W[s64]:-} ]]; then
    r=$(paired_ratio s64 a1)
    ok=$(awk -v r="$r" -v p="${P99[s64]}" -v e="${ERR[s64]}" 'BEGIN { print (r >= 1.2 && p < 50 && e == 0) ? "met" : "NOT met" }')
    echo "- Submit at 64 streams >= 1.2x the one-row baseline (a1) with p99 < 50 ms: ${r}x, p99 ${P99[s64]} ms: **$ok**" >>"$TARGETS"
    ((REPEAT == 1)) || echo "  (per round: ratio $(ratios_list s64 a1); p99 $(sed 's/^ //; s/ /, /g' <<<"${V_P99[s64]}") ms)" >>"$TARGETS"
fi
if [[ -n ${W[b100]:-} ]]; then
    r=$(paired_ratio b100 a2)
    ok=$(awk -v r="$r" -v e="${ERR[b100]}" 'BEGIN { print (r >= 0.6 && e == 0) ? "met" : "NOT met" }')
    echo "- SubmitBatch of 100 >= 0.6x the pipelined baseline (a2): ${r}x: **$ok**" >>"$TARGETS"
    ((REPEAT == 1)) || echo "  (per round: ratio $(ratios_list b100 a2))" >>"$TARGETS"
fi
cat "$TARGETS"

# ---------------------------------------------------------------- report: issue 7
I7_FIGS=(g g0 s s0 l l0 p0 p pr0 pr pri)
DESC[g]="gateway Get, 64 streams (4 conn x 16), courier_a, random numbers of $GET_N submitted just before"
DESC[g0]="pgbench, $READ_CLIENTS clients, the gateway's Get statement by wb_bidx, same $GET_N rows"
DESC[s]="gateway Search by phone, 20 results a call, 64 streams (4 conn x 16), ${S_WHO:-?}"
DESC[s0]="pgbench, $READ_CLIENTS clients, the 20 rows by phone blind index (sender or recipient), newest first"
DESC[l]="gateway Login, 16 concurrent, clerk_a (branch_a certificate)"
DESC[l0]="scrypt N=${SCRYPT_N:-?} verifications, one thread (bench_base), per second"
DESC[p0]="gateway Submit, 64 streams, no logins (waybills/s)"
DESC[p]="gateway Submit, 64 streams, 20 parallel Logins throughout (waybills/s; ${STORM_LPS:-?} logins/s)"
DESC[pr0]="gateway Submit, open loop at ${PR_RATE:-?} calls/s (${PR_FRACTION} x p0), no logins (waybills/s)"
DESC[pr]="the same rate, 20 parallel Logins throughout ($(median <<<"${PR_LPS:-}") logins/s)"
DESC[pri]="the same rate, ${PR_IDLE_N:-?} SCHED_IDLE busy loops outside the gateway$([[ -z ${PR_IDLE_CG:-} ]] || echo " in its worker cgroup") (the control)"
declare -A I7_VS=([g]=g0 [s]=s0 [l]=l0 [p]=p0 [pr]=pr0 [pri]=pr0)
p99_ratio() { # NAME BASE -> the median over rounds of NAME's p99 over BASE's
    awk -v a="${V_P99[$1]}" -v b="${V_P99[$2]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) if (y[i] > 0) printf "%.2f\n", x[i] / y[i] }' | median
}
lat_ratios() { # LIST_A LIST_B -> "1.10, 0.97, 1.30": the per-round ratios
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) if (y[i] > 0) printf "%s%.2f", (i > 1 ? ", " : ""), x[i] / y[i] }'
}
lat_ratio() { lat_ratios "$1" "$2" | tr -d ' ' | tr ',' ' ' | median; } # the median of those
commas() { sed 's/^ //; s/ /, /g' <<<"$1"; }
TABLE7=$WORK/table7.md
TARGETS7=$WORK/targets7.md
: >"$TABLE7"
: >"$TARGETS7"
if ((${#SKIP[@]} + ${#WHY_FAIL[@]})) || [[ -n ${V_W[g]:-}${V_W[s]:-}${V_W[l]:-}${V_W[p]:-}${V_W[g0]:-} ]]; then
    {
        echo "| figure | what | calls/s | vs baseline | p50 ms | p99 ms | errors |"
        echo "|---|---|---:|---:|---:|---:|---:|"
        for n in "${I7_FIGS[@]}"; do
            if [[ -n ${SKIP[$n]:-} && -z ${V_W[$n]:-} ]]; then
                echo "| $n | ${DESC[$n]} | skipped | | | | |"
                continue
            fi
            [[ -n ${V_W[$n]:-} || -n ${WHY_FAIL[$n]:-} ]] || continue
            b=${I7_VS[$n]:-}
            if [[ -n $b && -n ${V_W[$b]:-} && -n ${V_W[$n]:-} ]]; then
                if [[ $n == p || $n == pr || $n == pri ]]; then vs="p99 $(p99_ratio "$n" "$b") x $b"; else vs="$(paired_ratio "$n" "$b") x $b"; fi
            elif [[ -n $b ]]; then
                vs=n/a
            else
                vs=1.00
            fi
            echo "| $n | ${DESC[$n]} | ${W[$n]:-failed} | $vs | ${P50[$n]:-} | ${P99[$n]:-} | ${ERR[$n]:-0} |"
        done
    } >"$TABLE7"
    if [[ -n ${V_W[g]:-} && -n ${V_W[g0]:-} ]]; then
        r=$(paired_ratio g g0)
        ok=$(awk -v r="$r" -v e="${ERR[g]:-0}" 'BEGIN { print (r >= 0.5 && e == 0) ? "met" : "NOT met" }')
        echo "- Get at 64 streams >= 0.5x pgbench's lookups by blind index at $READ_CLIENTS clients (g0): ${r}x: **$ok**" >>"$TARGETS7"
        ((REPEAT == 1)) || echo "  (per round: ratio $(ratios_list g g0))" >>"$TARGETS7"
    fi
    if [[ -n ${V_W[s]:-} ]]; then
        echo "- Search by phone returning 20 rows: ${W[s]} searches/s ($(awk -v w="${W[s]}" 'BEGIN { printf "%.0f", w * 20 }') rows/s), p99 ${P99[s]} ms; $( [[ -n ${V_W[s0]:-} ]] && echo "$(paired_ratio s s0)x pgbench's (s0)" || echo "no baseline")" >>"$TARGETS7"
    fi
    if [[ -n ${V_W[l]:-} ]]; then
        echo "- Login throughput with the worker pool: ${W[l]} logins/s, $(paired_ratio l l0)x one thread's scrypt rate (l0; the pool can reach at most min(workers, CPUs) x)" >>"$TARGETS7"
    fi
    if [[ -n ${V_W[p]:-} && -n ${V_W[p0]:-} ]]; then
        echo "- Submit p99 at 64 streams during a storm of 20 parallel logins: ${P99[p]} ms against ${P99[p0]} ms without: $(p99_ratio p p0)x (the issue asks that it not move; run.sh sets no threshold)" >>"$TARGETS7"
        ((REPEAT == 1)) || echo "  (per round: p99 with $(sed 's/^ //; s/ /, /g' <<<"${V_P99[p]}") ms, without $(sed 's/^ //; s/ /, /g' <<<"${V_P99[p0]}") ms)" >>"$TARGETS7"
    fi
    if [[ -n ${V_P99[pr]:-} && -n ${V_P99[pr0]:-} ]]; then
        {
            echo "- Submit at a stated load, open loop at ${PR_RATE} calls/s (${PR_FRACTION} x p0's waybills/s; latency from each call's due time), ${PR_ROUNDS} alternating rounds$( ((REPEAT == 1)) || echo " in each of $REPEAT repeats"):"
            echo "  - during 20 parallel logins (pr) against none (pr0): p99 ratio $(lat_ratio "${V_P99[pr]}" "${V_P99[pr0]}") (per round $(lat_ratios "${V_P99[pr]}" "${V_P99[pr0]}")), p50 ratio $(lat_ratio "${V_P50[pr]}" "${V_P50[pr0]}") (per round $(lat_ratios "${V_P50[pr]}" "${V_P50[pr0]}"))"
            echo "  - p99 ms per round: pr $(commas "${V_P99[pr]}"); pr0 $(commas "${V_P99[pr0]}"); p50 ms: pr $(commas "${V_P50[pr]}"); pr0 $(commas "${V_P50[pr0]}"); logins/s during pr: $(commas "${PR_LPS:-}")"
            if [[ -n ${V_P99[pri]:-} ]]; then
                echo "  - control, ${PR_IDLE_N} SCHED_IDLE busy loops outside the gateway$([[ -z ${PR_IDLE_CG:-} ]] || echo " in its worker cgroup") instead of logins (pri): p99 ratio $(lat_ratio "${V_P99[pri]}" "${V_P99[pr0]}") (per round $(lat_ratios "${V_P99[pri]}" "${V_P99[pr0]}")), p50 ratio $(lat_ratio "${V_P50[pri]}" "${V_P50[pr0]}"); p99 ms per round $(commas "${V_P99[pri]}")"
            fi
            echo "  - the gateway loop's wait for a CPU (runnable, not running; kernel schedstat), ms per s of the run: pr0 $(commas "${PR_RQ[pr0]:-}"); pr $(commas "${PR_RQ[pr]:-}")$([[ -z ${PR_RQ[pri]:-} ]] || echo "; pri $(commas "${PR_RQ[pri]}")")"
            ((STORM_UNFINISHED == 0)) || echo "  - logins still queued at the end of a storm and not answered within wgload's 15 s grace (the pool starved of idle CPU; not counted as failures): $STORM_UNFINISHED"
            echo "  - calls sent more than 1 ms after they were due / calls due (per run): pr0 $(commas "${PR_LATE[pr0]:-}"); pr $(commas "${PR_LATE[pr]:-}")$([[ -z ${PR_LATE[pri]:-} ]] || echo "; pri $(commas "${PR_LATE[pri]}")"); the longest send lag, ms: pr0 $(commas "${PR_LAG[pr0]:-}"); pr $(commas "${PR_LAG[pr]:-}")"
        } >>"$TARGETS7"
    fi
    for n in "${I7_FIGS[@]}"; do
        [[ -z ${SKIP[$n]:-} ]] || echo "- ($n) skipped: ${SKIP[$n]}" >>"$TARGETS7"
        [[ -z ${WHY_FAIL[$n]:-} ]] || echo "- ($n) **FAILED**: ${WHY_FAIL[$n]}" >>"$TARGETS7"
    done
    cat "$TABLE7"
    echo
    cat "$TARGETS7"
fi

TARGETS8=$WORK/targets8.md
: >"$TARGETS8"
if [[ -n ${V_W[uq]:-} && -n ${V_W[u0]:-} ]]; then
    r=$(paired_ratio uq u0)
    ok=$(awk -v r="$r" -v e="${ERR[uq]:-0}" 'BEGIN { print (r >= 1.2 && e == 0) ? "met" : "NOT met" }')
    echo "- Submit at 64 streams with the audit chain on (uq): ${W[uq]} waybills/s, p99 ${P99[uq]} ms, against pgbench's one row per transaction at $A1_CLIENTS clients right before it (u0): ${W[u0]} rows/s: ${r}x (target >= 1.2): **$ok**" >>"$TARGETS8"
fi
if [[ -n ${V_W[u]:-} && -n ${V_W[uq]:-} ]]; then
    {
        echo "- The same with audited Searches by phone beside it (u): ${W[u]} waybills/s, p99 ${P99[u]} ms: $(paired_ratio u uq)x uq, $(paired_ratio u u0)x u0"
        echo "  ($U_NOTE)"
    } >>"$TARGETS8"
fi
[[ -z ${R_NOTE:-} ]] || { echo "- Reveal beside Get, one call at a time (tests/bench/reveal_rt.py):"; echo "$R_NOTE"; } >>"$TARGETS8"
for n in u uq u0 r; do
    [[ -z ${WHY_FAIL[$n]:-} ]] || echo "- ($n) **FAILED**: ${WHY_FAIL[$n]}" >>"$TARGETS8"
done
[[ ! -s $TARGETS8 ]] || { echo; cat "$TARGETS8"; }

if [[ $MODE == full && -n ${BENCH_FIGURES:-} ]]; then
    say "BENCH_FIGURES is set: a partial run; $DOC is not rewritten"
elif [[ $MODE == full ]]; then
    mkdir -p "$(dirname "$DOC")"
    CPU_MODEL=$(sed -nE 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
    PGVER=$("${PSQL[@]}" -tA -c 'SHOW server_version')
    SYNC=$("${PSQL[@]}" -tA -c 'SHOW synchronous_commit')
    REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -n 1) ]]; then
        REV="$REV with uncommitted changes"
    fi
    # The hand-written part of the document (the CPU profile) follows KEEP_MARK and is carried over.
    KEEP_MARK='<!-- tests/bench/run.sh keeps everything below this line -->'
    KEPT=
    [[ -f $DOC ]] && KEPT=$(sed -n "\|^$KEEP_MARK\$|,\$p" "$DOC")
    cat >"$DOC" <<EOF
# Performance

Written by \`tests/bench/run.sh\` (do not edit by hand above the marker line: the next run
rewrites that part; what follows the marker is carried over). The benchmark is
**not part of the test suite**; \`tests/bench/run.sh --smoke\` (a few seconds, small counts) is
the only part a test run may call. Figures are of one machine and one run: compare ratios, not
absolute numbers, across machines.

## This run

- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $REV
- machine: $(nproc) CPUs ($CPU_MODEL), $MEM, $(uname -sr); PostgreSQL $PGVER on the same box
  (synchronous_commit = $SYNC: a waybill is acknowledged only after its commit is durable)
- each figure: ${DUR} s after a 1 s warm-up (gateway) or ${DUR} s (pgbench), in the table's
  order; $(if ((REPEAT > 1)); then echo "the whole sequence ran $REPEAT times; each cell is the median of its $REPEAT values (errors: the sum), a ratio the median of the per-round ratios (each figure over the baseline of its own round)"; else echo "one round (BENCH_REPEAT=3 gives medians of three)"; fi)
- gateway: $(gw_conf_summary)
- load average at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (anything
  else running on the machine shows up in these figures)

$(cat "$TABLE")

## Targets (issue 3)

$(if [[ -s $TARGETS ]]; then cat "$TARGETS"; else echo "- gateway figures not measured in this run"; fi)

## Reads, Search and Login (issue 7)

$(if [[ -s $TABLE7 ]]; then cat "$TABLE7"; echo; cat "$TARGETS7"; else echo "- not measured in this run"; fi)

## The audit chain (issue 8)

$(if [[ -s $TARGETS8 ]]; then cat "$TARGETS8"; else echo "- not measured in this run"; fi)

## What is measured

- **a1, a2 (baselines)**: pgbench against the same PostgreSQL, into \`bench_baseline\`, $BASELINE_SHAPE; $NINDEX indexes.
  As the gateway writes a record (stored format version 3), the fields are one sealed value,
  \`fields_ct\`, of random bytes of the size the gateway writes for these waybills
  (${FIELDS_CT_LEN} bytes: the fields' items plus 30), the \`*_ct\` columns and \`record_mac\` NULL; the
  wrapped data key 62 bytes, the content MAC 32; blind indexes and ids are random per row, so
  the index inserts land where the gateway's land. \`-M prepared\`; the table is emptied before
  each baseline. a2 sends BEGIN, ${A2_ROWS} INSERTs and COMMIT in one pipeline
  (\`\\startpipeline\`); its latency is per transaction. The baselines do no TLS, HTTP/2,
  protobuf, validation or encryption: they are what the database alone can take. Nor do they
  fire the \`waybill\` table's triggers (the suspicious-customer register: two more rows per
  new sender) or read segments: the gateway does all of that on top.
- **gateway**: \`wgload\` (tests/bench/wgload.c: libnghttp2 + OpenSSL + libevent, one thread)
  drives \`waygate.v1.WaybillIntake\` through the real mTLS listener with the courier_a
  certificate, C connections x S streams in a closed loop, synthetic valid waybills (unique
  numbers in segment A, Chinese names, mobile numbers, 18-digit ID numbers with a correct GB 11643
  check digit). Every response's HTTP status, grpc-status and, for batches, each item's code is
  checked; waybills/s counts only accepted waybills completed in the measured window. Latency is
  per call (a batch of 100 is one call). "client CPU" is wgload's own user+sys time per waybill
  (getrusage), on the same two CPUs as the gateway and PostgreSQL; "gateway CPU" is waygated's
  user+sys time (from /proc) over the whole wgload call, warm-up included, per waybill
  accepted in that call; "PostgreSQL CPU" likewise for the whole cluster (postmaster, its
  backends, background writers), per row for the baselines. With $(nproc) CPUs, $(nproc) 000 000 us
  of CPU per second are available in all: the three CPU columns show who spends them.
- **g, g0 (issue 7)**: $GET_N waybills are submitted as courier_a (its own branch's), then
  \`wgload --get\` looks up random ones of them at 64 streams (4 connections x 16) with the
  courier_a certificate: each call reads the row, checks its MAC, decrypts it and renders the
  role's view; a call counts when it returns a view with the record id. g0 is pgbench at
  $READ_CLIENTS clients on the same \`waybill\` table right after: the gateway's own Get statement
  (printed by \`bench_base get-sql\`: the same columns and expressions) with the blind index taken
  by \`\\set k random(1, N)\` from \`bench_get_keys\` (the new rows' \`wb_bidx\`, numbered) in a
  sub-select, as the table's owner, text results. The ratio is lookups/s over transactions/s.
- **s, s0**: 20 waybills are submitted whose recipients share one phone (\`wgload --same-phone\`,
  a phone new to the table), then \`wgload --search-phone\` streams them at 64 streams, as
  $(echo "${S_WHO:-courier_a}"); a call counts when exactly 20 views arrive (the request's limit is 21, so
  a surplus shows). s0: pgbench, $READ_CLIENTS clients, the Get statement's columns for those rows by
  the phone's blind index (sender or recipient), newest first, LIMIT 21.
- **l, l0**: \`wgload --login\` with the dev stack's clerk_a account over the branch_a certificate,
  16 calls in flight; a call counts when it returns a token (never printed). l0 is
  \`bench_base scrypt N\`: one thread verifying a password at the configured cost (scrypt_n
  ${SCRYPT_N:-?}, r 8, p 1) through the gateway's crypto/password.c; the pool can reach at most
  min(auth workers, CPUs) times that.
- **p0, p**: Submit at 64 streams for the same duration without logins (p0), then with a second
  wgload running 20 Logins in parallel over the whole window (p); both start from an empty table
  on a stack run.sh started. This is saturation (a closed loop keeps the two CPUs busy), where any
  other runnable thread on the machine moves latency, whatever its priority.
- **pr0, pr, pri**: the load the issue means: Submit in an open loop (\`wgload --rate\`) at
  ${PR_FRACTION} x p0's waybills/s of the same round, 4 connections x at most 16 streams; each call is
  sent when it is due whatever the answers, and its latency counts from that due time, so that a
  call the client could not send on time shows its wait (no coordinated omission; the calls sent
  more than 1 ms late are counted). pr0 alone, pr with 20 parallel Logins over the whole window,
  pri with as many \`chrt -i 0\` (SCHED_IDLE) busy loops outside the gateway as it has auth
  workers, in the gateway's \`[auth] worker_cgroup\` when it has one (${PR_IDLE_CG:-none here}): what
  this machine does to Submit when that much CPU-only work runs where the hashing runs, which
  tells the cost of taking the cores back from the cost of scrypt's memory traffic. ${PR_ROUNDS} rounds,
  ordered pr0 pr pri, then pri pr pr0 (drift cancels); each from an empty table. Beside the
  latencies: how long the gateway's loop thread was runnable but waiting for a CPU (the kernel's
  schedstat of its main thread), which tells CPU contention from the gateway's own delays.
- The gateway's tables: $(if [[ -n $RESET ]]; then echo "emptied (\`waybill\`, \`phone_owner\`, \`phone_sender\`) before each gateway figure, as \`bench_baseline\` is before each baseline, so that every figure starts from an empty table and a checkpoint (with random blind-index keys, index size and full-page writes after a checkpoint grow with the table)"; else echo "not emptied (someone else's stack): the \`waybill\` table held ${GW_ROWS_AT_START:-?} rows at the first gateway figure and grew during the run, which makes the gateway figures lower than on an empty table"; fi).
$([[ -z ${BENCH_POLICY_NOTE:-} ]] || echo "- Policy: $BENCH_POLICY_NOTE.")
$([[ -z ${BENCH_FORWARD_NOTE:-} ]] || echo "- Forwarding: $BENCH_FORWARD_NOTE.")
- Run it: \`tests/bench/run.sh\` (a throw-away dev stack) or \`tests/bench/run.sh DIR\` (an
  existing one; it adds the benchmark's waybills to that stack's database);
  \`BENCH_REPEAT=3\` for medians of three rounds. This file came from:
  \`BENCH_REPEAT=$REPEAT BENCH_DURATION=$DUR tests/bench/run.sh$([[ -n $OWN_STACK ]] || echo " DIR")\`.
EOF
    [[ -z $KEPT ]] || printf '\n%s\n' "$KEPT" >>"$DOC"
    say "wrote $DOC"
fi

if ((FAILED)); then
    say "FAILED: some calls or transactions failed (see above)"
    [[ -s $WORK/wgload.log ]] && grep -E '^(==|  (errors|call status|item status|e\.g\.))' "$WORK/wgload.log" >&2
    exit 1
fi
say "ok"
