"""The retention sweep (issue 8; Art. 26): waybills older than [compliance] retention_days are
destroyed inside the gateway, in batches of retention_batch, each batch one transaction with its
destruction record and its retention.destroy audit record; younger waybills stay.

It runs on a second gateway of its own (same database and keys) with batches of 2 and an hourly
sweep: everything below happens in the sweep at start (which must wait for the database and for
the audit writer to recover its chain, not put itself off by an hour) and in the batches that
follow one another within it. The test waits by polling the database with a bound (no sleeps as
assertions)."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

import audit_lib
import register_lib
from conftest import BUILD, PGBIN, lock_holder, release_holder, scrape_metrics, wait_for
from query_data import SEARCH, SUBMIT_BATCH, call, get, new_waybill, refusal, submit
from test_faults import superuser_uri
import waygate_proto

OLD_PICKUP = 1646100000  # 2022-03-01, more than the default 1095 days before the test runs
BATCH = 2


def submit_old(stack, w, t):
    """Submits w as picked up at t (unix seconds), then makes it accepted at t too (as the owner:
    the gateway stamps accepted_at with its clock, and a record's period runs from the later of
    the two days, sql/039). Its record MAC no longer holds (accepted_at is sealed under it): it
    is for destruction, not for reading. Returns its id."""
    w.pickup_time = t
    rid = submit(stack, w)
    stack.psql("UPDATE waybill SET accepted_at = to_timestamp(%d) WHERE id = '%s'" % (t, rid))
    return rid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def old_and_young(stack):
    """Five waybills picked up in 2022 and one picked up today, all of branch a. Two of the old
    ones are classified (秘密, 绝密): automatic expiry is the system's, not a bulk request bounded
    by a requester's levels (sql/031), and destroys expired records of every level."""
    old = []
    common = stack.pb.common
    levels = {1: common.SECURITY_LEVEL_SECRET, 3: common.SECURITY_LEVEL_TOP_SECRET}
    for i in range(5):
        w = new_waybill(stack, "a")
        w.security_level = levels.get(i, 0)
        old.append((w, submit_old(stack, w, OLD_PICKUP)))
    w = new_waybill(stack, "a")
    young = (w, submit(stack, w))
    return old, young


def sweeping_gateway(stack, days=1095, chain="gw-retention-test", metrics_port=None):
    """A second waygated whose retention sweep runs at start, then hourly, in batches of BATCH;
    with a metrics listener on metrics_port when given."""
    port = free_port()
    conf = os.path.join(stack.dir, "waygated-retention.conf")
    lines = stack.config_for(port).splitlines()
    lines += ["", "[compliance]", "retention_days = %d" % days, "retention_sweep_ms = 3600000",
              "retention_batch = %d" % BATCH, "", "[audit]", "chain = %s" % chain]
    if metrics_port is not None:
        lines += ["", "[metrics]", "listen = 127.0.0.1:%d" % metrics_port]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    log = open(os.path.join(stack.dir, "waygated-retention.log"), "ab")
    proc = subprocess.Popen([os.path.join(BUILD, "waygated"), "-c", conf],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    return proc, log, "127.0.0.1:%d" % port


def sweep_until(stack, done, why, chain="gw-retention-test"):
    """Runs a sweeping gateway (sweeping_gateway) until done() holds (at most 60 s: else fails
    with why), then stops it."""
    proc, log, _ = sweeping_gateway(stack, chain=chain)
    try:
        assert wait_for(done, 60), why
    finally:
        stop(proc, log)


def stop(proc, log):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_retention_destroys_old_records_in_batches_with_records(stack, old_and_young):
    old, (young_w, young_id) = old_and_young
    old_ids = [i for _, i in old]
    in_old = "('%s')" % "','".join(old_ids)
    keys = stack.psql("SELECT encode(dek_wrapped, 'hex') FROM waybill WHERE id IN %s" % in_old)
    assert len(keys) == 5
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s AND security_level > 0"
                      % in_old) == ["2"]
    before = int(stack.psql("SELECT coalesce(max(id), 0) FROM destruction")[0])

    sweep_until(stack, lambda: stack.psql("SELECT count(*) FROM waybill WHERE id IN %s"
                                          % in_old) == ["0"],
                "the sweep did not destroy the old waybills")

    # no wrapped data key of them is left: nothing of them can be decrypted any more
    for k in keys:
        assert stack.psql("SELECT count(*) FROM waybill WHERE dek_wrapped = decode('%s', 'hex')"
                          % k) == ["0"]
    for w, _ in old:
        assert refusal(lambda: get(stack, w.waybill_no, "branch_a"))[0] == \
            grpc.StatusCode.NOT_FOUND
    # the young one stays, readable
    assert get(stack, young_w.waybill_no, "branch_a").id == young_id

    # batches of at most BATCH, each with its destruction record ...
    recs = stack.psql("SELECT reason, selector, requester, count FROM destruction "
                      "WHERE id > %d ORDER BY id" % before)
    counts = [int(r.split("|")[3]) for r in recs]
    assert sum(counts) == 5 and all(1 <= c <= BATCH for c in counts) and len(counts) == 3
    for r in recs:
        reason, selector, requester, _ = r.split("|")
        assert reason == "retention" and selector == "older than 1095 days"
        assert requester == "waygated retention sweep"
    # ... and its audit record on the sweeping gateway's chain, in the same transaction
    audits = stack.psql("SELECT count, object, legal_basis, outcome FROM audit_record "
                        "WHERE chain = 'gw-retention-test' AND action = 'retention.destroy' "
                        "ORDER BY seq")
    assert [int(a.split("|")[0]) for a in audits] == counts
    assert all(a.split("|")[1:] == ["older than 1095 days", "Art. 26", "ok"] for a in audits)

    # audit verify finds each destruction's record, two batches of one size included; one more
    # of the same shape (selector, one record), done by the gateway's database role itself, has
    # none of its own: named, though a record of the sweep's says the same
    before = audit_lib.verify_places(stack)
    assert not [p for p in before if p.startswith("destruction ")], before
    rid = submit_old(stack, new_waybill(stack, "a"), OLD_PICKUP)
    rc, out, err = as_gateway(stack, "SELECT retention_destroy(ARRAY['%s']::uuid[], 1095, "
                                     "'older than 1095 days', 'waygated retention sweep')" % rid)
    assert rc == 0, err
    did = out.split()[0]
    try:
        assert audit_lib.verify_places(stack) == \
            before + [audit_lib.unrecorded_destruction(stack, did, "retention", 1)]
    finally:
        stack.psql("DELETE FROM destruction WHERE id = %s" % did)


def as_gateway(stack, sql):
    """psql as the gateway's database role: (returncode, stdout, stderr)."""
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                        "ON_ERROR_STOP=1", "-d", stack.pguri_gateway, "-c", sql],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def test_retention_floor_bounds_the_period_the_gateway_may_ask(stack):
    """retention_destroy took its period from the caller: the gateway's role could destroy a
    10-day-old record by asking for a 1-day retention. The period must now be at least the
    floor (sql/020), which only waygatectl changes, recorded in admin_log and the audit chain."""
    rid = submit_old(stack, new_waybill(stack, "a"), int(time.time()) - 10 * 86400)
    destroy = "SELECT retention_destroy(ARRAY['%s']::uuid[], %%d, 'older than %%d days', " \
              "'test')" % rid
    assert stack.ctl("retention", "floor", "--db", stack.pguri).stdout.split("\t")[0] == "1095"
    rc, _, err = as_gateway(stack, destroy % (1, 1))
    assert rc != 0 and "below the floor of 1095 days" in err, err
    # the gateway's role cannot lower the floor itself
    rc, _, err = as_gateway(stack, "UPDATE retention_floor SET min_days = 1")
    assert rc != 0 and "permission denied for table retention_floor" in err, err
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % rid) == ["1"]

    for bad in ("0", "36501", "5x", ""):
        r = stack.ctl("retention", "floor", bad, "--db", stack.pguri)
        assert r.returncode == 2 and "DAYS must be a whole number from 1 to 36500" in r.stderr, \
            (bad, r.stderr)
    r = stack.ctl("retention", "floor", "5", "--by", "floor-test", "--db", stack.pguri)
    assert r.returncode == 0 and r.stdout == "retention floor 5 days (was 1095)\n", r
    try:
        assert stack.psql("SELECT actor, object, detail FROM admin_log WHERE action = "
                          "'retention.floor' ORDER BY id DESC LIMIT 1") == \
            ["floor-test|5|was 1095"]
        assert stack.psql("SELECT actor, object, detail, outcome FROM audit_record WHERE "
                          "chain = 'ctl' AND action = 'retention.floor' ORDER BY seq DESC "
                          "LIMIT 1") == ["floor-test|5|was 1095|ok"]
        rc, _, err = as_gateway(stack, destroy % (4, 4))
        assert rc != 0 and "below the floor of 5 days" in err, err
        before = audit_lib.verify_places(stack)
        rc, out, err = as_gateway(stack, destroy % (5, 5))
        assert rc == 0, err
        assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % rid) == ["0"]
        # done by the role, not through the gateway's sweep: no retention.destroy record says
        # so, and audit verify names it (the sweep's own destructions, test_sweep_*, are not)
        did = out.split()[0]
        place = audit_lib.unrecorded_destruction(stack, did, "retention", 1)
        assert audit_lib.verify_places(stack) == before + [place]
        stack.psql("DELETE FROM destruction WHERE id = %s" % did)
    finally:
        assert stack.ctl("retention", "floor", "1095", "--by", "floor-test",
                         "--db", stack.pguri).returncode == 0


def test_sweep_below_the_floor_is_refused_and_says_why(stack):
    """A gateway configured with retention_days below the floor destroys nothing, and its log
    names the cause (the database's message is never logged: it may quote values). Its metrics
    count the failed batch, so that a sweep that keeps records past their period is not silent
    (before, the sweep's counters reached no metric)."""
    rid = submit_old(stack, new_waybill(stack, "a"), int(time.time()) - 40 * 86400)
    mport = free_port()
    proc, log, _ = sweeping_gateway(stack, days=30, chain="gw-retention-floor",
                                    metrics_port=mport)
    path = os.path.join(stack.dir, "waygated-retention.log")
    try:
        said = wait_for(lambda: "below the database's retention floor" in open(path).read(), 60)
        assert said, "no log line names the floor"
        got = scrape_metrics("127.0.0.1:%d" % mport)
        assert got.get("waygate_retention_failures_total", 0) >= 1, got
        assert got.get("waygate_retention_destroyed_total") == 0, got
    finally:
        stop(proc, log)
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % rid) == ["1"]


def hold(stack, waybill_id):
    """An approved lawful-access case, valid for an hour, naming the waybill waybill_id by its
    number's blind index (written as the owner, as test_suite_migrate.py does): the case id."""
    case = stack.psql(
        "INSERT INTO lawful_case (id, requester_account, requester, agency, officer, case_ref, "
        "legal_document_ref, waybills, state, decided_at, decider_account, decider, valid_until) "
        "SELECT gen_random_uuid(), l.id, l.name, 'agency', 'officer', 'case', 'document', 1, "
        "'approved', now() - interval '1 hour', s.id, s.name, now() + interval '1 hour' "
        "FROM account l, account s WHERE l.name = 'lawful' AND s.name = 'secadmin' "
        "RETURNING id")[0]
    stack.psql("INSERT INTO lawful_case_item (case_id, wb_bidx) SELECT '%s', wb_bidx FROM "
               "waybill WHERE id = '%s'" % (case, waybill_id))
    return case


def lapse(stack, case):
    """The case's approval runs out (valid_until a minute ago)."""
    stack.psql("UPDATE lawful_case SET valid_until = now() - interval '1 minute' WHERE id = '%s'"
               % case)


HELD = "a waybill named by an approved, unexpired lawful-access case is held: not destroyed"


def test_a_waybill_a_lawful_case_holds_outlives_its_period(stack):
    """A waybill past its retention period that an approved lawful-access case names is kept
    while the case holds (sql/038): the sweep leaves it out and destroys the others of its
    batches, the database refuses its deletion whoever asks, and the sweep after the case's
    valid_until destroys it. Before, the sweep destroyed it under the case, and the officer's
    read found nothing. The held waybill is the lowest id of the three, so a sweep (which takes
    the expired records in id order) that did not leave it out would reach it first."""
    ids = [submit_old(stack, new_waybill(stack, "a"), OLD_PICKUP) for _ in range(3)]
    held = min(ids)
    others = "('%s')" % "','".join(i for i in ids if i != held)
    case = hold(stack, held)
    rc, _, err = as_gateway(stack, "SELECT retention_destroy(ARRAY['%s']::uuid[], 1095, "
                                   "'older than 1095 days', 'test')" % held)
    assert rc != 0 and HELD in err, err
    sweep_until(stack, lambda: stack.psql("SELECT count(*) FROM waybill WHERE id IN %s"
                                          % others) == ["0"],
                "the sweep did not destroy the records no case holds", chain="gw-retention-hold")
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % held) == ["1"]

    lapse(stack, case)
    sweep_until(stack, lambda: stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'"
                                          % held) == ["0"],
                "not destroyed once its case lapsed", chain="gw-retention-hold")


def test_a_deletion_beside_an_approval_in_flight_waits_for_it(stack):
    """A case's approval not yet committed when a deletion of the waybill it names runs: the
    deletion waits for the decision (sql/038 locks the cases naming the waybill FOR SHARE before
    it looks for a hold) and, the approval committed, is refused; the waybill stays. Here the
    decision is the owner's open transaction making a lapsed case valid again, and the deletion
    is retention_destroy as the gateway's role, seen waiting in pg_locks. Red without the lock:
    the deletion saw the case lapsed and destroyed the waybill while the approval was in flight,
    and both committed."""
    held = submit_old(stack, new_waybill(stack, "a"), OLD_PICKUP)
    case = hold(stack, held)
    lapse(stack, case)
    holder = lock_holder(stack, "UPDATE lawful_case SET valid_until = now() + interval '1 hour' "
                         "WHERE id = '%s'" % case)
    out = {}

    def destroy():
        out["r"] = as_gateway(stack, "SELECT retention_destroy(ARRAY['%s']::uuid[], 1095, "
                                     "'older than 1095 days', 'test')" % held)

    t = threading.Thread(target=destroy)
    try:
        t.start()
        waiting = ("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT "
                   "l.granted AND a.usename = 'waygate_gateway' AND a.query LIKE "
                   "'%retention_destroy%'")
        # as the superuser: the owner does not see another role's query text
        su = re.sub(r"user=[^&]*", "user=postgres", stack.pguri_owner)
        assert wait_for(lambda: "r" in out or stack.psql(waiting, uri=su) != ["0"], 60)
        assert "r" not in out, "the deletion did not wait for the approval: %r" % (out["r"],)
        holder.stdin.write("COMMIT;\n\\echo committed\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "committed"
        t.join(60)
        rc, _, err = out["r"]
        assert rc != 0 and HELD in err, err
        assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % held) == ["1"]
    finally:
        release_holder(holder)
        t.join(60)
        lapse(stack, case)


def test_a_waybill_is_kept_its_period_from_the_day_it_was_accepted(stack):
    """The period runs from the later of the pickup day, which the submitting device sends, and
    the day the gateway accepted the record (sql/039): a waybill submitted today as picked up in
    2022 is kept, by the sweep and by retention_destroy from the gateway's role. Before, a
    device's backdated pickup day made the next sweep destroy a record accepted minutes before.
    Of three waybills picked up in 2022, the two of higher id were also accepted then and go;
    the lowest, accepted today, would have been the sweep's first."""
    ids = []
    for _ in range(3):
        w = new_waybill(stack, "a")
        w.pickup_time = OLD_PICKUP
        ids.append(submit(stack, w))
    today = min(ids)
    others = [i for i in ids if i != today]
    stack.psql("UPDATE waybill SET accepted_at = to_timestamp(%d) WHERE id IN ('%s')"
               % (OLD_PICKUP, "','".join(others)))
    rc, _, err = as_gateway(stack, "SELECT retention_destroy(ARRAY['%s']::uuid[], 1095, "
                                   "'older than 1095 days', 'test')" % today)
    assert rc != 0 and "not every record is past its retention: 0 of 1" in err, err
    sweep_until(stack, lambda: stack.psql("SELECT count(*) FROM waybill WHERE id IN ('%s')"
                                          % "','".join(others)) == ["0"],
                "the sweep did not destroy the records accepted in 2022",
                chain="gw-retention-accepted")
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % today) == ["1"]


def test_a_destroyed_record_leaves_nothing_of_it_in_the_suspicious_register(stack):
    """The sweep takes out of the suspicious-customer register what only the expired waybills
    taught it, in each batch's transaction (sql/046; part 12 Art. 7, Art. 26): of three customers
    whose old waybills expire (batches of 2: two transactions), no register row names one or holds
    a phone <-> ID number pair only they held; a phone shared with a young waybill keeps the young
    one's pair, recounted (one sender: no longer suspicious, the report's count one less); a new
    waybill with an expired customer's phone and another ID number is not flagged against the
    destroyed one (register_lib). Before, every row stayed: the destroyed record still counted as
    a second sender."""
    c = register_lib.customers(stack, lambda s, w: submit_old(s, w, OLD_PICKUP), submit)
    f = register_lib.facts(stack, c)
    flagged = register_lib.reported_suspicious(stack)
    victims = "('%s')" % "','".join(c[k][1] for k in ("alone", "shared_victim", "same_victim"))
    sweep_until(stack, lambda: stack.psql("SELECT count(*) FROM waybill WHERE id IN %s"
                                          % victims) == ["0"],
                "the sweep did not destroy the expired waybills", chain="gw-retention-register")
    register_lib.check_forgotten(stack, c, f)
    assert register_lib.reported_suspicious(stack) == flagged - 1
    register_lib.check_new_sender(stack, c, f)


def test_the_migration_forgets_what_earlier_destructions_left(stack):
    """What destructions before sql/046 left in the suspicious-customer register (destroyed here
    with the migration's trigger disabled, as they were) is forgotten when the migration applies,
    as a destruction now forgets it, and the operator is told (its WARNING): the same checks as
    the sweep's (register_lib)."""
    c = register_lib.customers(stack, submit, submit)
    f = register_lib.facts(stack, c)
    flagged = register_lib.reported_suspicious(stack)
    victims = "('%s')" % "','".join(c[k][1] for k in ("alone", "shared_victim", "same_victim"))
    stack.psql("ALTER TABLE waybill DISABLE TRIGGER waybill_phone_register_forget")
    try:
        stack.psql("DELETE FROM waybill WHERE id IN %s" % victims)
    finally:
        stack.psql("ALTER TABLE waybill ENABLE TRIGGER waybill_phone_register_forget")
    assert stack.psql("SELECT count(*) FROM phone_sender WHERE first_record IN %s"
                      % victims) == ["3"]
    # the later migrations with it: migrate applies none over a gap (each applies again unchanged)
    stack.psql("DELETE FROM schema_migrations WHERE version >= 46")
    r = stack.ctl("migrate", "--db", stack.pguri_owner)
    assert r.returncode == 0, r.stderr
    said = [l for l in r.stdout.splitlines() if l.startswith("  migration 046 says: ")]
    assert len(said) == 1 and "pairs forgotten" in said[0], r.stdout
    register_lib.check_forgotten(stack, c, f)
    assert register_lib.reported_suspicious(stack) == flagged - 1
    register_lib.check_new_sender(stack, c, f)


def test_a_sweep_leaves_a_held_record_and_holds_up_no_audited_call(stack):
    """An expired record whose row another transaction holds (here a psql session's FOR UPDATE,
    as a `keys migrate-suite` or `keys rewrap` batch holds its rows until it commits) is left out
    of the sweep (retention_expired_ids skips locked rows, sql/048), so the sweep's DELETE, which
    runs in the audit writer's transaction, waits for nothing: the other expired records are
    destroyed and a Search on the sweeping gateway (an audited call) answers while the lock is
    still held. The held record is destroyed by a sweep after the lock is released. Before, the
    sweep selected it, its DELETE waited for the holder's commit, and every audited call of that
    gateway waited with it (a Search took 20 s while a batch's locks were held)."""
    ids = [submit_old(stack, new_waybill(stack, "a"), OLD_PICKUP) for _ in range(3)]
    young = new_waybill(stack, "a")
    young_id = submit(stack, young)
    # the lowest id: the sweep's first batch (id order, BATCH records) would take it
    held = min(ids)
    others = "('%s')" % "','".join(i for i in ids if i != held)
    holder = lock_holder(stack, "SELECT 1 FROM waybill WHERE id = '%s' FOR UPDATE" % held)
    proc, log, addr = sweeping_gateway(stack)
    try:
        assert wait_for(lambda: stack.psql("SELECT count(*) FROM waybill WHERE id IN %s"
                                           % others) == ["0"], 60), \
            "the sweep did not destroy the expired records nobody holds"
        views = list(waygate_proto.stream(stack.channel("branch_a", addr=addr), SEARCH,
                                          stack.pb.query.SearchRequest(
                                              waybill_no=young.waybill_no),
                                          stack.pb.common.WaybillView, timeout=60))
        assert [v.id for v in views] == [young_id]
        assert holder.poll() is None, "the lock holder ended before the Search answered"
        assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % held) == ["1"]
    finally:
        release_holder(holder)
        stop(proc, log)
    sweep_until(stack, lambda: stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'"
                                          % held) == ["0"],
                "the record held during the first sweep was not destroyed by the next")


RANGE_PAGES = 32  # waybill_accepted_brin's pages_per_range (sql/055)
TABLE_BLOCKS = "pg_relation_size('waybill') / current_setting('block_size')::int"


def wear_correlation(stack, value):
    """Sets accepted_at's correlation statistic (the slot ANALYZE fills with kind 3) to value, as
    a superuser: the planner reads it until the next ANALYZE of waybill."""
    slots = ", ".join("stanumbers%d = CASE stakind%d WHEN 3 THEN ARRAY[%s]::real[] "
                      "ELSE stanumbers%d END" % (k, k, value, k) for k in range(1, 6))
    kind3 = " OR ".join("stakind%d = 3" % k for k in range(1, 6))
    r = stack.psql("UPDATE pg_statistic SET %s WHERE starelid = 'waybill'::regclass AND staattnum "
                   "= (SELECT attnum FROM pg_attribute WHERE attrelid = 'waybill'::regclass AND "
                   "attname = 'accepted_at') AND (%s) RETURNING 1" % (slots, kind3),
                   uri=superuser_uri(stack))
    assert r == ["1"], "no correlation statistic of waybill.accepted_at to set: %s" % r


def selection_reads(stack):
    """(ids retention_expired_ids(1095, 500) returns, heap blocks of the waybill table it read,
    the table's blocks): one statement, the function run first (a MATERIALIZED CTE), then this
    transaction's block count of the table (pg_stat_get_xact_blocks_fetched: hits and reads)."""
    row = stack.psql(
        "WITH s AS MATERIALIZED (SELECT array_agg(id::text) AS ids "
        "FROM retention_expired_ids(1095, 500) AS id) "
        "SELECT coalesce(array_to_string(ids, ','), ''), "
        "pg_stat_get_xact_blocks_fetched('waybill'::regclass), %s FROM s" % TABLE_BLOCKS)[0]
    ids, read, blocks = row.split("|")
    return set(filter(None, ids.split(","))), int(read), int(blocks)


DUE = "SELECT count(*) FROM retention_stale_range WHERE noted_at <= now() - interval '10 minutes'"


def settle(stack):
    """Calls the selection until no noted range is due (sql/057): a call that summarises ranges
    again reads their blocks, and one that finds the table's lock taken leaves them to the next."""
    assert wait_for(lambda: selection_reads(stack) and stack.psql(DUE) == ["0"], 60), \
        "noted ranges still due: %s" % stack.psql(DUE)


def test_the_selection_reads_the_old_ranges_not_the_whole_table(stack):
    """The sweep's selection (retention_expired_ids, sql/055) reads the block ranges where
    expired records can be (waybill_accepted_brin, a BRIN index on accepted_at), not every
    waybill: with the table at least 32 ranges long, its ranges summarised and its statistics
    current, one call finds the three expired records made here (and any another test left), and
    reads fewer heap blocks than a quarter of the table. sql/048's selection walked the primary key and read a
    block per waybill, more blocks than the table has, at every hourly sweep. So it does again
    with accepted_at's correlation statistic worn down to 0.001, as refilled space wears it:
    sql/055 left the plan to the planner, which then priced the index above a sequential scan
    and read the whole table (a CI run: 8 162 of 8 159 blocks); sql/056 pins the bitmap scan.
    The three are then destroyed by a sweep, as the other tests' are."""
    old = []
    for _ in range(3):
        w = new_waybill(stack, "a")
        old.append(submit_old(stack, w, OLD_PICKUP))
    need = 32 * RANGE_PAGES
    for _ in range(100):  # 100 x 100 waybills at most, about 1 700 pages
        if int(stack.psql("SELECT " + TABLE_BLOCKS)[0]) >= need:
            break
        ws = [new_waybill(stack, "a") for _ in range(100)]
        r = call(stack, SUBMIT_BATCH, stack.pb.intake.SubmitBatchRequest(waybills=ws),
                 stack.pb.intake.SubmitBatchResponse, "courier_a", timeout=60)
        assert [x.code for x in r.results] == [0] * len(ws)
    stack.psql("SELECT brin_summarize_new_values('waybill_accepted_brin')")
    stack.psql("ANALYZE waybill")
    try:
        settle(stack)
        ids, read, blocks = selection_reads(stack)
        print("retention selection: %d expired found, %d heap blocks read of the table's %d"
              % (len(ids), read, blocks))
        assert blocks >= need, "the table did not grow to %d pages: %d" % (need, blocks)
        assert set(old) <= ids, "the selection found %s, not the three expired records" % ids
        assert read < blocks // 4, \
            "the selection read %d of the table's %d blocks: it walks the whole table" % (
                read, blocks)
        # The planner prices the index by accepted_at's correlation with the rows' order, which
        # destructions wear down (their space is refilled): at 0.001 it would scan the table.
        wear_correlation(stack, 0.001)
        ids, worn = selection_reads(stack)[:2]
        print("with the correlation at 0.001: %d heap blocks read" % worn)
        assert set(old) <= ids, "the selection found %s, not the three expired records" % ids
        assert worn < blocks // 4, \
            "with accepted_at's correlation at 0.001 the selection read %d of the table's %d " \
            "blocks: the planner chose to walk the whole table" % (worn, blocks)
    finally:
        stack.psql("ANALYZE waybill")  # the real statistics back, before the gateway's sweeps
        left = "SELECT count(*) FROM waybill WHERE id IN (%s)" % ",".join("'%s'" % r for r in old)
        sweep_until(stack, lambda: stack.psql(left) == ["0"],
                    "the three expired records were not destroyed")


PAGEINSPECT = "wg_test_pageinspect"  # the test's schema for pageinspect, dropped after it
RANGE_OF = "(ctid::text::point)[0]::bigint / %d * %d" % (RANGE_PAGES, RANGE_PAGES)


def old_summaries(stack):
    """{first block of a range: True when its summary in waybill_accepted_brin holds an
    accepted_at more than 1095 days old}, summarised ranges only, read with pageinspect."""
    rows = stack.psql(
        "SELECT i.blknum, split_part(btrim(i.value, '{{}}'), ' .. ', 1)::timestamptz "
        "< now() - interval '1095 days' FROM generate_series(1, pg_relation_size("
        "'waybill_accepted_brin') / current_setting('block_size')::int - 1) AS p, "
        "LATERAL (SELECT {0}.get_raw_page('waybill_accepted_brin', p::int) AS raw) AS r, "
        "LATERAL {0}.brin_page_items(r.raw, 'waybill_accepted_brin') AS i "
        "WHERE {0}.brin_page_type(r.raw) = 'regular' AND NOT i.allnulls "
        "AND NOT i.placeholder".format(PAGEINSPECT), uri=superuser_uri(stack))
    return {int(b): o == "t" for b, o in (r.split("|") for r in rows)}


def test_the_ranges_of_destroyed_records_are_summarised_again(stack):
    """A BRIN summary widens as rows arrive and never narrows as they go: the range of a
    destroyed record went on reaching back to it, and every later selection read the range
    (refilled with new rows, in time most of the table). The selection notes the ranges of the
    records it returns (retention_stale_range), and a call at least ten minutes later (the test
    moves the note back ten minutes, and waits until no transaction older than the destruction
    runs) summarises them again and forgets them (sql/057): the three expired records made here
    destroyed by a sweep, the ranges that held them and hold no other expired record are
    summarised as young, and the selection reads those ranges' blocks no more. Red without
    sql/057: the summaries stay old."""
    su = superuser_uri(stack)
    stack.psql("CREATE SCHEMA IF NOT EXISTS %s; CREATE EXTENSION IF NOT EXISTS pageinspect "
               "SCHEMA %s" % (PAGEINSPECT, PAGEINSPECT), uri=su)
    try:
        old = [submit_old(stack, new_waybill(stack, "a"), OLD_PICKUP) for _ in range(3)]
        in_old = "('%s')" % "','".join(old)
        ranges = {int(r) for r in stack.psql(
            "SELECT DISTINCT %s FROM waybill WHERE id IN %s" % (RANGE_OF, in_old))}
        stack.psql("SELECT brin_summarize_new_values('waybill_accepted_brin')")
        summaries = old_summaries(stack)
        assert all(summaries.get(r) for r in ranges), (ranges, summaries)
        settle(stack)
        ids, before, blocks = selection_reads(stack)
        assert set(old) <= ids, ids

        sweep_until(stack, lambda: stack.psql(
            "SELECT count(*) FROM waybill WHERE id IN %s" % in_old) == ["0"],
            "the three expired records were not destroyed")
        noted = {int(r) for r in stack.psql("SELECT range_start FROM retention_stale_range")}
        assert ranges <= noted, "the selection noted %s, not the ranges %s" % (noted, ranges)
        # ranges that still hold another expired record (another test's, held) stay old
        kept = {int(r) for r in stack.psql(
            "SELECT DISTINCT %s FROM waybill WHERE accepted_at < now() - interval '1095 days'"
            % RANGE_OF)}
        clean = ranges - kept
        assert clean, "every range of the three holds another expired record: %s" % ranges
        assert old_summaries(stack).get(min(clean)), "destroying changed no summary: %s" % clean

        stack.psql("UPDATE retention_stale_range SET noted_at = noted_at - interval '10 minutes'")
        # no transaction that could still see the destroyed rows (then they stay in a summary)
        # (a VACUUM's snapshot holds nothing back from others)
        older = ("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                 "coalesce(query, '') NOT LIKE 'autovacuum: VACUUM%' AND "
                 "least(age(backend_xmin), age(backend_xid)) >= age('{0}'::xid)".format(
                     stack.psql("SELECT pg_current_xact_id()::xid")[0]))
        assert wait_for(lambda: stack.psql(older, uri=su) == ["0"], 60), \
            "a transaction older than the destruction still runs"

        def young():  # through the gateway's role; a call that finds the lock taken leaves them
            rc, _, err = as_gateway(stack, "SELECT count(*) FROM retention_expired_ids(1095, 500)")
            assert rc == 0, err
            return not any(old_summaries(stack).get(r) for r in clean)

        assert wait_for(young, 60), \
            "ranges %s still summarised as old: %s" % (clean, old_summaries(stack))
        left = {int(r) for r in stack.psql("SELECT range_start FROM retention_stale_range")}
        assert not clean & left, "the summarised ranges are still noted: %s" % left
        settle(stack)
        _, after, blocks = selection_reads(stack)
        in_clean = sum(min(RANGE_PAGES, blocks - r) for r in clean)
        print("selection before the destruction: %d blocks; after, the %d ranges summarised "
              "again (%d blocks): %d" % (before, len(clean), in_clean, after))
        assert after <= before - in_clean, \
            "the selection read %d blocks, %d before: the ranges' %d blocks are still read" % (
                after, before, in_clean)
    finally:
        stack.psql("DROP EXTENSION IF EXISTS pageinspect; DROP SCHEMA IF EXISTS %s"
                   % PAGEINSPECT, uri=su)


def test_the_selection_goes_on_when_ranges_cannot_be_summarised(stack):
    """Summarising ranges again serves the selection's speed only: with waybill_accepted_brin
    dropped by an operator, a selection with a range due (noted an hour ago, past the table's
    end), called by the gateway's role, still returns the expired record made here, warns that
    it could not summarise and why, and keeps the range for a later call (sql/057). Red with
    the failure left to stop the call: the selection, so the sweep, fails. The index is then
    built again and the record destroyed by a sweep."""
    far = 1_000_000_000  # a range past the table's end: no record the test makes is noted in it
    stack.psql("INSERT INTO retention_stale_range VALUES (%d, now() - interval '1 hour')" % far)
    rid = submit_old(stack, new_waybill(stack, "a"), OLD_PICKUP)
    stack.psql("DROP INDEX waybill_accepted_brin")
    try:
        def warned():  # through the gateway's role; a call that finds the lock taken tries not
            rc, out, err = as_gateway(stack, "SELECT id FROM retention_expired_ids(1095, 500) "
                                             "AS id")
            assert rc == 0, err
            assert rid in out.split(), "the selection found %s, not the expired record" % out
            return "not summarised again: index waybill_accepted_brin does not exist" in err

        assert wait_for(warned, 60), "no call warned that it could not summarise"
        assert stack.psql("SELECT count(*) FROM retention_stale_range WHERE range_start = %d "
                          "AND noted_at <= now() - interval '10 minutes'" % far) == ["1"]
    finally:
        stack.psql("CREATE INDEX IF NOT EXISTS waybill_accepted_brin ON waybill USING brin "
                   "(accepted_at) WITH (pages_per_range = 32, autosummarize = on)")
        sweep_until(stack, lambda: stack.psql(
            "SELECT count(*) FROM waybill WHERE id = '%s'" % rid) == ["0"],
            "the expired record was not destroyed")


def test_two_selections_noting_one_range_do_not_wait_on_each_other(stack):
    """Two gateways' sweeps may select at once, and their records may share a range: each notes
    it (sql/057). The notes are insert only, so the second selection neither waits for the
    first's transaction nor fails: with the range of the expired record made here noted in a
    transaction held open (as a selection running beside it notes it; the range's earlier notes
    deleted first), a selection by the gateway's role returns the record at once. Red with the
    notes keyed by range (a unique index: the insert waits for the open transaction's note, then
    times out, lock_timeout). The record is then destroyed."""
    rid = submit_old(stack, new_waybill(stack, "a"), OLD_PICKUP)
    settle(stack)
    start = stack.psql("SELECT %s FROM waybill WHERE id = '%s'" % (RANGE_OF, rid))[0]
    stack.psql("DELETE FROM retention_stale_range WHERE range_start = %s" % start)
    holder = lock_holder(stack, "INSERT INTO retention_stale_range (range_start) VALUES (%s)"
                         % start)
    try:
        rc, out, err = as_gateway(stack, "SELECT id FROM retention_expired_ids(1095, 500) AS id")
        assert rc == 0, "the selection beside the open note failed: %s" % err
        assert rid in out.split(), "the selection found %s, not the expired record" % out
    finally:
        release_holder(holder)
        sweep_until(stack, lambda: stack.psql(
            "SELECT count(*) FROM waybill WHERE id = '%s'" % rid) == ["0"],
            "the expired record was not destroyed")
