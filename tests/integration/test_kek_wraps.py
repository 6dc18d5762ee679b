"""The data-key wraps made under each KEK version are counted and stop before the random-nonce
bound (sql/050_kek_wrap_lease.sql, Art. 36; NIST SP 800-38D 8.3): the gateway seals a record only
against a wrap it leased from the database, leases ahead, refuses Submit FAILED_PRECONDITION once
the version's limit is reached (an incident, a log line, the metric), and works again after
`keys rotate` and a SIGHUP; the count never goes down, for any role; a restart never reuses a
lease; `keys rewrap` and `keys migrate-suite` lease per batch exactly the wraps of the records
it took, nothing when it took none; `keys status` shows the count beside the records."""

import os
import re
import signal

import grpc
import pytest

from conftest import ExtraGateway, lock_holder, metrics_text, release_holder, wait_for
from test_intake import (KEK_LINE, SUBMIT, SUITE, SUITE_BYTE, keys_status, new_waybill,
                         reload_keys, reload_keys_logged, seed, submit)
import waygate_proto

LIMIT_MSG = ("waybill: the gateway's KEK version has reached its limit of data-key wraps "
             "(Art. 36, NIST SP 800-38D); an operator must rotate the KEK and reload the "
             "gateway's keyring")
BLOCK = 65536


def current_version(stack):
    m = re.search(r"(?m)^suite %s[^:\n]*: current KEK version: (\d+)$" % SUITE, keys_status(stack))
    assert m
    return int(m.group(1))


def counted(stack, version):
    rows = stack.psql("SELECT count, wrap_limit FROM kek_wrap WHERE suite = %d AND version = %d"
                      % (SUITE_BYTE, version))
    return tuple(int(x) for x in rows[0].split("|")) if rows else (0, 0)


def records(stack, version):
    return int(stack.psql("SELECT count(*) FROM waybill WHERE get_byte(dek_wrapped, 1) = %d AND "
                          "kek_version = %d" % (SUITE_BYTE, version))[0])


def leased_metric(stack, version):
    """waygate_kek_wraps_leased{suite=SUITE,version=version} on GET /metrics, or None."""
    m = re.search(r'(?m)^waygate_kek_wraps_leased\{suite="%s",version="%d"\} (\S+)$'
                  % (SUITE, version), metrics_text(stack.env["WAYGATE_METRICS_ADDR"]))
    return float(m.group(1)) if m else None


def submit_code(stack):
    """Submits a fresh waybill: (status code name, details)."""
    try:
        submit(stack, new_waybill(stack, "a"))
        return ("OK", "")
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def psql_error(stack, sql, uri):
    """The error psql reports for sql run as uri's role (it must fail)."""
    with pytest.raises(AssertionError) as e:
        stack.psql(sql, uri=uri)
    return str(e.value)


def test_the_gateway_leases_ahead_and_the_count_covers_its_records(stack):
    v = current_version(stack)
    assert wait_for(lambda: counted(stack, v)[0] > 0, 30), "the gateway leased nothing"
    assert submit_code(stack)[0] == "OK"
    count, limit = counted(stack, v)
    assert count >= records(stack, v), (count, records(stack, v))
    assert limit <= 2 ** 31
    assert stack.metric("waygate_kek_wraps_used_total") >= 1
    assert leased_metric(stack, v) >= records(stack, v)
    assert stack.metric("waygate_kek_wrap_limit_reached") == 0
    # keys status: the leased wraps beside the records
    assert re.search(r"(?m)^  %s %d\s+active\s+\d+ records\s+\d+ of \d+ wraps leased"
                     % (re.escape(KEK_LINE), v), keys_status(stack)), keys_status(stack)


def test_no_role_lowers_the_count(stack):
    """The gateway's and the CLI's roles may only read the table and call kek_wrap_lease, for a
    registered version, with a limit that binds their own call; nobody, the owner included,
    lowers a count, raises a limit or removes the row of a registered version."""
    v = current_version(stack)
    assert wait_for(lambda: counted(stack, v)[0] > 0, 30)
    before = counted(stack, v)
    where = " WHERE suite = %d AND version = %d" % (SUITE_BYTE, v)
    for uri in (stack.pguri_gateway, stack.pguri):
        for sql in ("UPDATE kek_wrap SET count = 0" + where, "DELETE FROM kek_wrap" + where,
                    "TRUNCATE kek_wrap",
                    "INSERT INTO kek_wrap (suite, version) VALUES (%d, 999999)" % SUITE_BYTE):
            assert "permission denied" in psql_error(stack, sql, uri), (uri, sql)
        # reading is allowed
        assert stack.psql("SELECT count FROM kek_wrap" + where, uri=uri)
    for sql in ("UPDATE kek_wrap SET count = count - 1" + where,
                "UPDATE kek_wrap SET wrap_limit = 4294967296" + where,
                "DELETE FROM kek_wrap" + where, "TRUNCATE kek_wrap"):
        assert "never" in psql_error(stack, sql, stack.pguri_owner), sql
    # a caller's limit binds its own call only: the gateway's role asking with a limit of 1
    # sets no limit (before, the lowest limit passed was kept, and intake stopped)
    assert "rotate the KEK" in psql_error(
        stack, "SELECT * FROM kek_wrap_lease(%d, %d, 1, 1)" % (SUITE_BYTE, v), stack.pguri_gateway)
    assert counted(stack, v)[1] == 2 ** 31
    assert submit_code(stack)[0] == "OK"
    # nor can it lease a version no keyring registered (sql/036), to use up a future version
    # before its rotation (review: 2048 leases of 2^20 a version)
    assert "not registered" in psql_error(
        stack, "SELECT * FROM kek_wrap_lease(%d, %d, 1, 10)" % (SUITE_BYTE, v + 1000),
        stack.pguri_gateway)
    assert counted(stack, v + 1000) == (0, 0)
    # whole (the CLI's batches): all or nothing, so a batch the limit leaves short uses up
    # nothing (review); the same short lease not whole grants what is left
    count = counted(stack, v)[0]
    assert "rotate the KEK" in psql_error(
        stack, "SELECT * FROM kek_wrap_lease(%d, %d, 2, %d, true)" % (SUITE_BYTE, v, count + 1),
        stack.pguri)
    assert counted(stack, v)[0] == count
    assert stack.psql("SELECT l_granted FROM kek_wrap_lease(%d, %d, 2, %d)"
                      % (SUITE_BYTE, v, count + 1), uri=stack.pguri) == ["1"]
    # the owner may delete the row of a version kek_version does not hold (one the login roles
    # registered with a made-up check value and used up, once that registration is deleted)
    stack.psql("INSERT INTO kek_wrap (suite, version, count) VALUES (%d, %d, 5)"
               % (SUITE_BYTE, v + 1000))
    stack.psql("DELETE FROM kek_wrap WHERE suite = %d AND version = %d" % (SUITE_BYTE, v + 1000))
    assert counted(stack, v + 1000) == (0, 0)
    # the function refuses what is not a lease
    for args in ("%d, %d, 0, 10" % (SUITE_BYTE, v), "%d, %d, 1, 4294967297" % (SUITE_BYTE, v),
                 "%d, %d, 1048577, 10" % (SUITE_BYTE, v), "3, 1, 1, 10"):
        assert "kek_wrap_lease" in psql_error(
            stack, "SELECT * FROM kek_wrap_lease(%s)" % args, stack.pguri_gateway), args
    assert counted(stack, v) >= before


def test_a_restart_does_not_reuse_a_lease(stack):
    v = current_version(stack)
    assert wait_for(lambda: counted(stack, v)[0] > 0, 30)
    before = counted(stack, v)[0]
    stack.restart_gateway()
    n = 3
    assert wait_for(lambda: submit_code(stack)[0] == "OK", 30)
    for _ in range(n - 1):
        assert submit_code(stack)[0] == "OK"
    after = counted(stack, v)[0]
    # the restarted gateway's wraps come from a lease of its own, counted past the old one's
    assert after >= before + n, (before, after)
    assert after >= before + BLOCK, (before, after)


def others(stack):
    """The records a `keys migrate-suite --to SUITE` would take: of another suite, or none."""
    return int(stack.psql("SELECT count(*) FROM waybill w WHERE (CASE WHEN "
                          "octet_length(w.dek_wrapped) >= 2 THEN get_byte(w.dek_wrapped, 1) END) "
                          "IS DISTINCT FROM %d" % SUITE_BYTE)[0])


def rewrap(stack):
    """`keys rewrap` of SUITE in batches of 7: (returncode, re-wrapped, failed, stderr)."""
    r = stack.ctl("keys", "rewrap", "--suite", SUITE, "--keyring", stack.env["WAYGATE_KEYRING"],
                  "--db", stack.pguri, "--batch", "7")
    m = re.search(r"rewrap: (\d+) data keys re-wrapped .*, (\d+) failed", r.stderr)
    assert m, r.stdout + r.stderr
    return r.returncode, int(m.group(1)), int(m.group(2)), r.stderr


def migrate(stack, *args):
    """`keys migrate-suite --to SUITE` (waited for): (returncode, re-sealed, stderr)."""
    r = stack.ctl("keys", "migrate-suite", "--to", SUITE, "--keyring",
                  stack.env["WAYGATE_KEYRING"], "--db", stack.pguri, *args)
    m = re.search(r"migrate-suite: (\d+) records re-sealed under", r.stderr)
    assert m, r.stdout + r.stderr
    return r.returncode, int(m.group(1)), r.stderr


def test_rewrap_leases_its_wraps(stack):
    """A rewrap's batch leases one wrap per record its SELECT took, after it took them: the
    records under older versions of the suite at most, those it re-wrapped at least; a second
    run, with nothing left to re-wrap, leases nothing."""
    v = current_version(stack)
    old = int(stack.psql("SELECT count(*) FROM waybill WHERE get_byte(dek_wrapped, 1) = %d AND "
                         "kek_version <> %d" % (SUITE_BYTE, v))[0])
    before = counted(stack, v)[0]
    rc, done, failed, err = rewrap(stack)
    assert rc == (1 if failed else 0), err
    after = counted(stack, v)[0]
    assert done <= after - before <= old, (before, after, done, old)
    if failed == 0:
        rc, done, failed, err = rewrap(stack)
        assert (rc, done, failed) == (0, 0, 0), err
        assert counted(stack, v)[0] == after  # nothing to do: nothing leased


def test_migrate_suite_with_nothing_to_do_leases_nothing(stack):
    v = current_version(stack)
    assert others(stack) == 0
    before = counted(stack, v)[0]
    rc, done, err = migrate(stack, "--batch", "100000", "--lock-wait", "0")
    assert (rc, done) == (0, 0), err
    assert counted(stack, v)[0] == before


# A record made one of another suite's, as the owner may: the algorithm byte of its wrapped data key
# and of its sealed fields (sql/053's CHECK wants them equal; fields_ct is NULL in a row of
# version 1 or 2, and stays so). It no longer opens, which these tests do not need.
OTHER_SUITE = ("UPDATE waybill SET dek_wrapped = set_byte(dek_wrapped, 1, %d), "
               "fields_ct = set_byte(fields_ct, 1, %d) WHERE id = '%s'")


def test_a_migrate_suite_waiting_on_a_locked_record_leases_only_what_it_reseals(stack):
    """One record of another suite held FOR UPDATE by another transaction: the run's idle passes
    (a batch every 100 ms for --lock-wait seconds, each taking nothing) lease nothing; before the
    fix each leased 2 x --batch wraps."""
    v = current_version(stack)
    assert others(stack) == 0
    assert wait_for(lambda: submit_code(stack)[0] == "OK", 30)  # a record to hold
    rid = stack.psql("SELECT id FROM waybill WHERE get_byte(dek_wrapped, 1) = %d ORDER BY id "
                     "LIMIT 1" % SUITE_BYTE)[0]
    # the record made one of the other suite's (its algorithm byte; the owner may), then held
    stack.psql(OTHER_SUITE % (3 - SUITE_BYTE, 3 - SUITE_BYTE, rid))
    holder = None
    try:
        holder = lock_holder(stack, "SELECT 1 FROM waybill WHERE id = '%s' FOR UPDATE" % rid)
        before = counted(stack, v)[0]
        rc, done, err = migrate(stack, "--batch", "100000", "--lock-wait", "1")
        assert rc == 1 and "locked by other transactions" in err, err
        assert counted(stack, v)[0] - before <= 2 * done, (before, counted(stack, v), done)
    finally:
        if holder is not None:
            release_holder(holder)
        stack.psql(OTHER_SUITE % (SUITE_BYTE, SUITE_BYTE, rid))
    assert others(stack) == 0


def test_at_the_limit_submit_is_refused_until_a_rotation(stack):
    keyring = stack.env["WAYGATE_KEYRING"]
    v = current_version(stack)
    assert wait_for(lambda: counted(stack, v)[0] > 0, 30)
    # the owner lowers the version's limit to 2 wraps past what is counted (allowed: a limit
    # only falls), then restarts the gateway: its held lease is gone, its next holds 2 wraps
    stack.psql("UPDATE kek_wrap SET wrap_limit = count + 2 WHERE suite = %d AND version = %d"
               % (SUITE_BYTE, v))
    stack.restart_gateway()
    incidents = int(stack.psql("SELECT count(*) FROM incident WHERE kind = 'kek_wrap_limit'")[0])
    since = len(stack.log_lines())
    seen = []

    def refused():
        seen.append(submit_code(stack))
        return seen[-1][0] == "FAILED_PRECONDITION"
    assert wait_for(refused, 60), seen[-5:]
    assert [c for c, _ in seen if c == "OK"] == ["OK", "OK"], seen  # exactly the 2 leased
    assert set(c for c, _ in seen) <= {"OK", "UNAVAILABLE", "FAILED_PRECONDITION"}, seen
    assert seen[-1][1] == LIMIT_MSG, seen[-1]
    assert submit_code(stack) == ("FAILED_PRECONDITION", LIMIT_MSG)
    count, limit = counted(stack, v)
    assert count == limit, (count, limit)
    # one incident for the version, a log line, the metric
    assert wait_for(lambda: int(stack.psql(
        "SELECT count(*) FROM incident WHERE kind = 'kek_wrap_limit'")[0]) == incidents + 1, 30)
    assert stack.psql("SELECT severity FROM incident WHERE kind = 'kek_wrap_limit' "
                      "ORDER BY id DESC LIMIT 1") == ["high"]
    assert any("has reached its limit of data-key wraps" in line
               for line in stack.log_lines()[since:])
    assert stack.metric("waygate_kek_wrap_limit_reached") == 1
    assert leased_metric(stack, v) == limit
    # the CLI: a run with nothing to do leases nothing, so it is not refused; one that takes a
    # record (one made of the other suite: migrate-suite takes it) is refused and says why
    r = stack.ctl("keys", "rewrap", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri)
    assert r.returncode == 0, r.stdout + r.stderr
    rid = stack.psql("SELECT id FROM waybill WHERE get_byte(dek_wrapped, 1) = %d ORDER BY id "
                     "LIMIT 1" % SUITE_BYTE)[0]
    stack.psql(OTHER_SUITE % (3 - SUITE_BYTE, 3 - SUITE_BYTE, rid))
    try:
        rc, done, err = migrate(stack, "--lock-wait", "0")
    finally:
        stack.psql(OTHER_SUITE % (SUITE_BYTE, SUITE_BYTE, rid))
    assert rc != 0 and "rotate the KEK" in err, err
    assert counted(stack, v) == (count, limit)
    # rotate, reload: the new version's wraps, Submit works again
    r = stack.ctl("keys", "rotate", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    reload_keys(stack, v + 1)
    assert wait_for(lambda: submit_code(stack)[0] == "OK", 30)
    assert counted(stack, v + 1)[0] >= 1
    assert stack.metric("waygate_kek_wrap_limit_reached") == 0


NO_LEASE_MSG = ("waybill: the gateway holds no lease of data-key wraps from the database "
                "(Art. 36); retrying is safe")


def lease_waits(stack):
    """A lease (kek_wrap_lease) waits on the lock a lock_holder took on kek_wrap."""
    return int(stack.psql("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                          "'kek_wrap'::regclass")[0]) > 0


def submit_via(stack, addr):
    """Submits a fresh waybill through the gateway at addr: (status code name, details)."""
    w = new_waybill(stack, "a")
    seed(w)
    try:
        waygate_proto.unary(stack.channel("courier_a", addr=addr), SUBMIT,
                            stack.pb.intake.SubmitRequest(waybill=w),
                            stack.pb.intake.SubmitResponse, timeout=30)
        return ("OK", "")
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def test_health_is_not_serving_until_the_first_lease(stack):
    """A gateway started while its first lease waits (kek_wrap locked) answers NOT_SERVING for as
    long as a Submit would be refused for want of a wrap, and SERVING, with Submit working, once
    the lease is granted: a load balancer (or a test) that waits for SERVING never sends a Submit
    into that refusal. (Red before: SERVING once the keyring was vouched for, Submit refused.)"""
    holder = lock_holder(stack, "LOCK TABLE kek_wrap IN EXCLUSIVE MODE")
    gw = None
    try:
        try:
            gw = ExtraGateway(stack, "wraps-start", serving=False)
            seen = []

            def no_lease():  # the keyring vouched for (its refusal comes first), no wrap held
                seen.append(submit_via(stack, gw.addr))
                return seen[-1] == ("UNAVAILABLE", NO_LEASE_MSG)
            assert wait_for(no_lease, 60), seen[-3:]
            assert lease_waits(stack)
            assert stack.health(addr=gw.addr) == "NOT_SERVING"
        finally:
            release_holder(holder)
        assert wait_for(lambda: stack.health(addr=gw.addr) == "SERVING", 60)
        assert submit_via(stack, gw.addr) == ("OK", "")
    finally:
        if gw is not None:
            gw.close()


def test_a_reload_leases_under_the_new_kek_before_it_swaps(stack):
    """keys rotate, then SIGHUP while the new version's lease waits (kek_wrap locked): the running
    keyring goes on sealing under its own lease (Submit OK, the old version), and once the lease
    is granted the reload ends and the very next Submit is sealed under the new version. (Red
    before: the keyring was swapped first and every Submit refused UNAVAILABLE until the lease
    came.)"""
    keyring = stack.env["WAYGATE_KEYRING"]
    v = current_version(stack)
    assert wait_for(lambda: counted(stack, v)[0] > 0, 30)
    r = stack.ctl("keys", "rotate", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    holder = lock_holder(stack, "LOCK TABLE kek_wrap IN EXCLUSIVE MODE")
    try:
        since = len(stack.log_lines())
        os.kill(stack.gateway_pid(), signal.SIGHUP)
        assert wait_for(lambda: lease_waits(stack), 60), "the reload asked no lease"
        w = new_waybill(stack, "a")
        rid = submit(stack, w).id
        assert stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % rid) == [str(v)]
        assert not [l for l in stack.log_lines()[since:] if "keyring" in l and "reload" in l]
    finally:
        release_holder(holder)
    reload_keys_logged(stack, since, v + 1)
    rid = submit(stack, new_waybill(stack, "a")).id
    assert stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % rid) == [str(v + 1)]
    assert counted(stack, v + 1)[0] >= 1
