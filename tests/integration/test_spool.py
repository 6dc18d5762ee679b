"""The audit spool ([audit] spool): records of what already happened that the database has not
taken when the gateway stops (an incident, a config.reload record) are not lost. They wait in the
spool file, MAC'd under the keyring's spool key and bound to the gateway's chain, and the same
gateway started again writes them, each once, and removes the file. A spool that fails its check
is not replayed: it is moved aside, a critical incident says so, and the gateway serves.

Each test runs its own gateway (ExtraGateway: its own chain, and a spool file of its own) whose
segment cache is refreshed at most every 10 minutes, so that a submit outside the branch's
segments is refused, and its incident queued, while PostgreSQL is stopped."""

import glob
import os
import re
import shutil
import signal
import time
import uuid

import grpc

import waygate_proto

from audit_lib import verify_places
from conftest import ExtraGateway, wait_for
from test_accounts import CREATE, DISABLE, password
from test_foundation import rpc_error
from test_incidents import submit_to
from test_intake import _counter, new_waybill, number_in, pii_values


def spooled_gateway(stack, name, audit=""):
    """An ExtraGateway (a name, log and chain of this run's) with a segment cache that stays
    fresh and a spool file of its own; audit: more lines of its [audit] section."""
    name = "%s-%s" % (name, uuid.uuid4().hex[:8])
    path = os.path.join(stack.dir, name + ".spool")

    def edit(text):
        text = re.sub(r"(?m)^(listen\s*=.*)$", r"\1\nsegment_refresh_ms = 600000", text, count=1)
        # ends in ExtraGateway's [audit]
        return text.rstrip("\n") + "\nspool = %s\n%s" % (path, audit)

    gw = ExtraGateway(stack, name, edit)
    gw.spool = path
    return gw


def reload(gw):
    """SIGHUP: its config.reload record is kept (nobody waits for it)."""
    gw.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "SIGHUP: policy reloaded" in gw.log(), 30), gw.log()[-2000:]


def stop(gw):
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=60) == 0, gw.log()[-2000:]


def spooled_line(gw):
    m = re.search(r"drained: exiting, .*: (\d+) entr(?:y|ies) spooled to (\S+), (\d+) lost",
                  gw.log())
    assert m, gw.log()[-2000:]
    return int(m.group(1)), m.group(2), int(m.group(3))


def spool_a_reload(stack, gw):
    """PostgreSQL stopped (the caller starts it again), a SIGHUP (its config.reload record kept)
    and a SIGTERM: returns how many entries were spooled, none lost."""
    stack.devstack("pg-stop")
    reload(gw)
    stop(gw)
    n, _, lost = spooled_line(gw)
    assert n >= 1 and lost == 0, (n, lost)
    return n


def count(stack, sql):
    return int(stack.psql(sql)[0])


def replayed_at_start(gw, n):
    """gw started again: its spool's n entries written at the start, the file removed."""
    mark = len(gw.log())
    gw.start_again()
    written = r"spool \S+: %d entr(?:y|ies) written, 0 failed; file removed" % n
    assert wait_for(lambda: re.search(written, gw.log()[mark:]), 60), gw.log()[-2000:]


def close_after_outage(stack, gw, stopped):
    """The end of a test that stopped PostgreSQL: started again when the test left it stopped,
    the gateway stopped, the stack's own gateway serving again."""
    if stopped:
        stack.devstack("pg-start")
    gw.close()
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


def close_unwritable(stack, gw, stopped):
    """The end of a test that made <spool>.tmp a directory: PostgreSQL started again when the
    test left it stopped, the directory removed, the gateway stopped."""
    if stopped:
        stack.devstack("pg-start")
    if os.path.isdir(gw.spool + ".tmp"):
        os.rmdir(gw.spool + ".tmp")
    gw.close()


def refused_outside_segments(stack, gw):
    """While PostgreSQL is stopped (its segment cache loaded before): a submit by branch a's clerk
    of a number in branch b's segment, refused FAILED_PRECONDITION, its incident queued. Returns
    the waybill."""
    w = new_waybill(stack, "a")
    w.waybill_no = number_in(stack, "b", next(_counter))  # branch b's segment
    e = rpc_error(lambda: submit_to(stack, gw, w))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())
    return w


def test_records_left_at_shutdown_are_spooled_and_written_once_at_the_next_start(stack):
    """PostgreSQL stopped: an out-of-segment submit (its incident queued) and a SIGHUP (its
    config.reload record kept) on a gateway with a spool; SIGTERM exits 0 saying how many entries
    were spooled and none lost, and the file holds neither the waybill number nor any of its
    PII. PostgreSQL started, the same gateway started again: the incident row (with the time it
    happened, not the replay's) and the config.reload record appear exactly once, the audit chain
    verifies, and the spool file is gone."""
    gw = spooled_gateway(stack, "spool_replay")
    kind = "kind = 'segment_violation' AND principal = 'courier_a'"
    before = count(stack, "SELECT coalesce(sum(count), 0) FROM incident WHERE " + kind)
    places = verify_places(stack)
    reload_rec = "chain = '%s' AND action = 'config.reload'" % gw.chain
    incident_rec = "chain = '%s' AND action = 'incident' AND object = 'segment_violation'" % gw.chain
    stopped = False
    try:
        submit_to(stack, gw, new_waybill(stack, "a"))  # loads the segment cache
        stack.devstack("pg-stop")
        stopped = True
        w = refused_outside_segments(stack, gw)
        happened = time.time()
        reload(gw)
        stop(gw)
        n, path, lost = spooled_line(gw)
        assert path == gw.spool and n >= 2 and lost == 0, (n, path, lost)
        assert "incident(s) in 1 row(s) not written at shutdown: spooled" in gw.log()
        assert oct(os.stat(gw.spool).st_mode & 0o777) == "0o600"
        with open(gw.spool, "rb") as f:
            data = f.read()
        # an incident's row with its record and a config.reload record: the spool's cap counts
        # GW_AUDIT_SPOOL_ENTRY_BUDGET (2 KiB) an entry, twice what these take at most
        assert len(data) - 120 <= n * 1024, (len(data), n)
        for v in pii_values(w):
            assert v.encode() not in data, "the spool holds a waybill's clear PII"
        assert w.waybill_no not in gw.log()
        # the incident's time is the gateway's CLOCK_REALTIME in microseconds, taken before the
        # submit answered: at most `happened`, and before `restarted` with no pause between them;
        # a replay's now() would come after it
        restarted = time.time()
        stack.devstack("pg-start")
        stopped = False
        replayed_at_start(gw, n)  # (the file is removed before its line is written)
        assert not os.path.exists(gw.spool)
        assert "spool %s: %d entries verified, written again" % (gw.spool, n) in gw.log()
        assert count(stack, "SELECT coalesce(sum(count), 0) FROM incident WHERE " + kind) \
            == before + 1
        # the row keeps when it happened (the spool holds its INSERT), not when it was replayed
        at = stack.psql("SELECT extract(epoch FROM first_occurred_at) FROM incident WHERE %s "
                        "ORDER BY id DESC LIMIT 1" % kind)[0]
        assert happened - 5 <= float(at) < restarted, (happened, at, restarted)
        assert count(stack, "SELECT count(*) FROM audit_record WHERE " + reload_rec) == 1
        assert count(stack, "SELECT count(*) FROM audit_record WHERE " + incident_rec) == 1
        stop(gw)  # nothing left: nothing spooled, no file written
        assert not os.path.exists(gw.spool)
        assert "drained: exiting, 0 incident(s) not written, 0 audit entries not written" \
            in gw.log().split("entries written, 0 failed; file removed")[-1]
    finally:
        if stopped:
            stack.devstack("pg-start")
        gw.close()
    assert count(stack, "SELECT count(*) FROM audit_record WHERE " + reload_rec) == 1
    new = [p for p in verify_places(stack) if p not in places]
    assert not [p for p in new if gw.chain in p], new
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


def test_a_tampered_spool_is_moved_aside_not_replayed(stack):
    """A spool with one byte flipped is not replayed: the gateway moves it aside to
    <spool>.rejected.<time>, records the critical incident audit_spool_rejected, says so in a
    critical line naming the file and the reason, and serves; the config.reload record it held
    is not written."""
    gw = spooled_gateway(stack, "spool_tampered")
    reload_rec = "chain = '%s' AND action = 'config.reload'" % gw.chain
    rejected = "kind = 'audit_spool_rejected' AND severity = 'critical' AND detail LIKE '%%%s%%'" \
        % os.path.basename(gw.spool)
    stopped = False
    try:
        stopped = True
        spool_a_reload(stack, gw)
        with open(gw.spool, "r+b") as f:
            data = bytearray(f.read())
            data[len(data) // 2] ^= 0x01
            f.seek(0)
            f.write(data)
        stack.devstack("pg-start")
        stopped = False
        gw.start_again()  # serves
        aside = glob.glob(gw.spool + ".rejected.*")
        assert len(aside) == 1 and not os.path.exists(gw.spool), aside
        with open(aside[0], "rb") as f:
            assert f.read() == bytes(data)  # kept as it was found
        assert re.search(r"critical: spool refused, not replayed: %s: its MAC does not verify"
                         r".*moved aside to %s" % (re.escape(gw.spool), re.escape(aside[0])),
                         gw.log()), gw.log()[-2000:]
        assert wait_for(lambda: count(stack, "SELECT count(*) FROM incident WHERE " + rejected)
                        == 1, 30)
        # nothing of the file is written: a SIGHUP now queues its config.reload after anything a
        # replay could have queued at start, and the chain commits in order, so once that record
        # (timed after the signal) is there, a replayed one would be too
        since_us = int(time.time() * 1e6)
        sighups = gw.log().count("SIGHUP: policy reloaded")
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: gw.log().count("SIGHUP: policy reloaded") > sighups, 30)
        assert wait_for(lambda: count(stack, "SELECT count(*) FROM audit_record WHERE %s AND "
                                      "at_us >= %d" % (reload_rec, since_us)) == 1, 30)
        assert count(stack, "SELECT count(*) FROM audit_record WHERE " + reload_rec) == 1
    finally:
        close_after_outage(stack, gw, stopped)


def test_a_spool_that_cannot_be_written_keeps_the_file_read_at_start_and_says_so(stack):
    """PostgreSQL stopped: a gateway spools a config.reload record; started again (still no
    database), its replay queues that entry and nothing commits; <spool>.tmp is made a directory,
    so the new spool cannot be written. The exit line counts the entries of the file read at start
    as kept in it (not lost), and the file is left as it was. With the database back and the
    directory gone, the next start writes the record once and removes the file."""
    gw = spooled_gateway(stack, "spool_unwritable")
    reload_rec = "chain = '%s' AND action = 'config.reload'" % gw.chain
    stopped = False
    try:
        stopped = True
        n = spool_a_reload(stack, gw)
        with open(gw.spool, "rb") as f:
            data = f.read()
        mark = started_replaying(gw, n)
        os.mkdir(gw.spool + ".tmp")
        stop(gw)
        tail = gw.log()[mark:]
        m = re.search(r"drained: exiting, .*: 0 entries spooled to (\S+), (\d+) lost, (\d+) kept "
                      r"in it as read at start", tail)
        assert m and m.group(1) == gw.spool, tail[-2000:]
        assert int(m.group(3)) == n, m.groups()
        assert "spool not written: " in tail
        with open(gw.spool, "rb") as f:
            assert f.read() == data  # as read, its entry not written by this run
        os.rmdir(gw.spool + ".tmp")
        stack.devstack("pg-start")
        stopped = False
        replayed_at_start(gw, n)
        assert not os.path.exists(gw.spool)
        assert count(stack, "SELECT count(*) FROM audit_record WHERE " + reload_rec) == 1
    finally:
        close_unwritable(stack, gw, stopped)
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


# What a start reads of a spool (gateway/app/spool.c cap_of, store/audit_spool.c
# gw_audit_spool_cap): SPOOL_CARRY stops' worth of entries, a stop's worth being every entry the
# writer's queue ([audit] queue_max), the incident queue ([server] incident_queue_max) with its
# by-kind rows (GW_INCIDENT_KINDS_MAX) and the refusals' kinds (GW_REFUSALS_KINDS) can leave, and
# one more; GW_AUDIT_SPOOL_ENTRY_BUDGET bytes and a length each, besides the header, the MAC and
# room for one entry of GW_AUDIT_SPOOL_ENTRY_MAX.
SPOOL_CARRY, ENTRY_BUDGET, ENTRY_MAX = 4, 2048, 16384
INCIDENT_KINDS_MAX, REFUSALS_KINDS = 64, 1024


def spool_cap(audit_queue_max, incident_queue_max):
    entries = SPOOL_CARRY * (audit_queue_max + incident_queue_max + INCIDENT_KINDS_MAX +
                             REFUSALS_KINDS + 1)
    return 8 + 1 + 64 + 4 + 32 + 4 + ENTRY_MAX + entries * (4 + ENTRY_BUDGET)


def test_a_spool_at_its_carry_bound_is_read_and_one_byte_over_is_refused_unread(stack):
    """A gateway with small queues ([audit] queue_max = 10, [server] incident_queue_max = 10):
    a file of exactly the bound (SPOOL_CARRY = 4 stops' worth of those queues' entries) is read
    whole and judged by its MAC; one byte longer is refused before it is read ("larger than
    <bound> bytes"). Either way the refused file is not replayed, is moved aside as it was found
    (both kept: the newest 4 are), a critical line names it and the reason, the critical incident
    audit_spool_rejected records it, and the gateway serves. (The bound's write side, a stop whose
    entries would not fit writing no spool, is unit:test_audit_spool's; no metric counts it.)"""
    cap = spool_cap(10, 10)
    name = "spool_bound-%s" % uuid.uuid4().hex[:8]
    path = os.path.join(stack.dir, name + ".spool")

    def edit(text):
        text = re.sub(r"(?m)^(listen\s*=.*)$", r"\1\nincident_queue_max = 10", text, count=1)
        return text.rstrip("\n") + "\nspool = %s\nqueue_max = 10\n" % path  # in [audit]

    gw = ExtraGateway(stack, name, edit)
    try:
        stop(gw)  # the database took everything: no spool
        assert not os.path.exists(path)
        for size, reason in ((cap, "its MAC does not verify"),
                             (cap + 1, "larger than %d bytes" % cap)):
            planted = b"WGSPOOL1" + os.urandom(size - 8)  # a spool's magic, then noise
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(planted)
            before = set(glob.glob(path + ".rejected.*"))
            mark = len(gw.log())
            gw.start_again()  # serves
            aside = [p for p in glob.glob(path + ".rejected.*") if p not in before]
            assert len(aside) == 1 and not os.path.exists(path), aside
            with open(aside[0], "rb") as f:
                assert f.read() == planted  # kept as it was found
            assert re.search(r"critical: spool refused, not replayed: %s: %s[^;]*; moved aside "
                             r"to %s " % (re.escape(path), re.escape(reason), re.escape(aside[0])),
                             gw.log()[mark:]), (size, cap, gw.log()[mark:][-2000:])
            assert "entries verified, written again" not in gw.log()[mark:]
            rejected = ("kind = 'audit_spool_rejected' AND severity = 'critical' AND detail = "
                        "'the audit spool failed its check; moved aside to %s'" % aside[0])
            assert wait_for(lambda: count(stack, "SELECT count(*) FROM incident WHERE " +
                                          rejected) == 1, 30), size
            stop(gw)
            assert not os.path.exists(path)
        assert len(glob.glob(path + ".rejected.*")) == 2
    finally:
        gw.close()
        for p in glob.glob(path + ".rejected.*"):
            os.unlink(p)
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


def started_replaying(gw, n):
    """Starts gw again over its spool of n entries (not waiting for SERVING) until it has
    verified them and listens: its signal handlers are set once the start is done, and the line
    that says it listens is written after them (daemon.c). Returns where its log was before."""
    mark = len(gw.log())
    gw.start_again(serving=False)
    assert wait_for(lambda: "spool %s: %d entr%s verified, written again"
                    % (gw.spool, n, "y" if n == 1 else "ies") in gw.log()[mark:], 60), \
        gw.log()[mark:][-2000:]
    assert wait_for(lambda: "listening: tls" in gw.log()[mark:], 60), gw.log()[mark:][-2000:]
    return mark


RELOADS = "SELECT count(*) FROM audit_record WHERE chain = '%s' AND action = 'config.reload'"
WAITING = "SELECT count(*) FROM pg_locks WHERE relation = 'audit_record'::regclass AND NOT granted"


def replay_waits_on_the_lock(stack, gw, held):
    """gw spools a config.reload record (spool_a_reload; PostgreSQL started again after it,
    whatever happens), then is started again with audit_record locked (EXCLUSIVE, by a session
    appended to held: the caller releases it): once its replay's entries are in the writer's
    first transaction, which waits on the lock. Returns how many entries and where its log was
    at the start."""
    from conftest import lock_holder
    try:
        n = spool_a_reload(stack, gw)
    finally:
        stack.devstack("pg-start")
    held.append(lock_holder(stack, "LOCK TABLE audit_record IN EXCLUSIVE MODE"))
    mark = started_replaying(gw, n)
    # its first transaction waits on the lock
    assert wait_for(lambda: count(stack, WAITING) > 0, 60), "no transaction waited"
    return n, mark


def test_a_replay_in_flight_when_the_next_spool_cannot_be_written_is_not_written_twice(stack):
    """PostgreSQL stopped: a gateway spools a config.reload record. Started again with the
    database back but audit_record locked (EXCLUSIVE, by a session the test holds), its replay's
    entry goes out in the writer's first transaction, which waits on the lock; <spool>.tmp is
    made a directory (the next spool cannot be written) and the gateway is stopped (SIGTERM).
    That transaction's outcome is unknown at the exit (pipelined to its sync, it commits once the
    lock is released, the gateway gone); the file read at start is marked (v2), so it is kept as
    read, saying why, and the exit line counts its entry as kept, none lost; the record commits
    once, and the next start replays the file and skips it (its mark), not writing it a second
    time. (Before the marks, the file was kept and the record written twice; then removed, and
    an entry not written yet was lost with it.)"""
    from conftest import release_holder
    gw = spooled_gateway(stack, "spool_in_flight")
    reload_rec = RELOADS % gw.chain
    held = []
    try:
        n, mark = replay_waits_on_the_lock(stack, gw, held)
        os.mkdir(gw.spool + ".tmp")
        stop(gw)
        tail = gw.log()[mark:]
        assert "spool not written: " in tail, tail[-2000:]
        assert "spool %s: kept: of its %d entries %d are owed (%d with the writer" \
            % (gw.spool, n, n, n) in tail, tail[-2000:]
        m = re.search(r"drained: exiting, .*: 0 entries spooled to (\S+), (\d+) lost, (\d+) kept "
                      r"in it as read at start", tail)
        assert m and m.group(1) == gw.spool and int(m.group(3)) == n, tail[-2000:]
        assert os.path.exists(gw.spool)
        release_holder(held.pop())
        assert wait_for(lambda: count(stack, WAITING) == 0, 60)
        assert wait_for(lambda: count(stack, reload_rec) == 1, 60)  # committed after the exit
        os.rmdir(gw.spool + ".tmp")
        mark = len(gw.log())
        gw.start_again()
        assert replayed_again(gw, mark) == (0, n)
        assert not os.path.exists(gw.spool)
        assert count(stack, reload_rec) == 1
    finally:
        for holder in held:
            release_holder(holder)
        close_unwritable(stack, gw, False)
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


MARKS = "SELECT count(*) FROM audit_spool_entry"


def replayed_again(gw, mark):
    """gw's start after mark, its spool replayed to the end and the file removed: how many of
    its entries were written, and how many skipped as written before."""
    done = r"spool \S+: (\d+) entr(?:y|ies) written, 0 failed; file removed; (\d+) written before"
    assert wait_for(lambda: re.search(done, gw.log()[mark:]), 60), gw.log()[mark:][-2000:]
    m = re.search(done, gw.log()[mark:])
    return int(m.group(1)), int(m.group(2))


def test_a_spool_put_back_after_its_replay_is_skipped_not_written_again(stack):
    """PostgreSQL stopped: a gateway spools a config.reload record, and the file is copied
    aside. Started again with the database back, it writes the record once, one mark per entry
    (audit_spool_entry, in the entry's own transaction), and removes the file. The copy put
    back in place (whoever can write the directory: MAC-valid, it is this keyring's and chain's)
    is verified again at the next start, but each entry's mark is there: none is written again,
    the start says how many were skipped, and the file is removed. (Before, its records were
    written a second time.)"""
    gw = spooled_gateway(stack, "spool_again")
    reload_rec = RELOADS % gw.chain
    aside = gw.spool + ".copy"
    stopped = False
    try:
        stopped = True
        n = spool_a_reload(stack, gw)
        shutil.copy2(gw.spool, aside)
        stack.devstack("pg-start")
        stopped = False
        before = count(stack, MARKS)
        replayed_at_start(gw, n)
        assert count(stack, reload_rec) == 1
        assert count(stack, MARKS) == before + n
        stop(gw)
        assert not os.path.exists(gw.spool)
        os.replace(aside, gw.spool)
        mark = len(gw.log())
        gw.start_again()
        done = replayed_again(gw, mark)
        assert "spool %s: %d entr%s verified, written again" \
            % (gw.spool, n, "y" if n == 1 else "ies") in gw.log()[mark:]
        assert not os.path.exists(gw.spool)
        assert count(stack, reload_rec) == 1
        assert done == (0, n), done
        assert count(stack, MARKS) == before + n
    finally:
        if os.path.exists(aside):
            os.unlink(aside)
        close_after_outage(stack, gw, stopped)


def test_a_hard_kill_during_a_replay_leaves_the_file_but_not_its_committed_entries(stack):
    """PostgreSQL stopped: a gateway spools a config.reload record. Started again with the
    database back but audit_record locked (EXCLUSIVE, by a session the test holds), its
    replay's entry goes out in the writer's first transaction, which waits on the lock; the
    gateway is killed (SIGKILL: no stop, no spool), and the file stays as it was read. The lock
    released, that transaction commits (pipelined to its sync). The next start replays the file
    again: the entry's mark is there, so it is skipped, not written a second time. (Before, the
    record was written twice: the limit docs/architecture.md admitted.)"""
    from conftest import release_holder
    gw = spooled_gateway(stack, "spool_killed")
    reload_rec = RELOADS % gw.chain
    held = []
    try:
        n, _ = replay_waits_on_the_lock(stack, gw, held)
        gw.proc.kill()
        gw.proc.wait(timeout=60)
        assert os.path.exists(gw.spool)  # as it was read
        release_holder(held.pop())
        assert wait_for(lambda: count(stack, WAITING) == 0, 60)
        assert wait_for(lambda: count(stack, reload_rec) == 1, 60)  # committed after the kill
        mark = len(gw.log())
        gw.start_again()
        done = replayed_again(gw, mark)
        assert not os.path.exists(gw.spool)
        assert count(stack, reload_rec) == 1
        assert done == (0, n), done
    finally:
        for holder in held:
            release_holder(holder)
        close_after_outage(stack, gw, False)
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


def refuse(stack, gw, method):
    """courier_a calls an Admin method (CreateAccount or DisableAccount) on gw with no token: the
    policy refuses it (PERMISSION_DENIED) without the database, and its refusal is recorded."""
    ch = stack.channel("courier_a", addr=gw.addr)
    if method == CREATE:
        req, resp = stack.pb.admin.CreateAccountRequest(
            account="x", role="branch_clerk", branch="a",
            initial_password=password()), stack.pb.admin.CreateAccountResponse
    else:
        req, resp = stack.pb.admin.DisableAccountRequest(
            account="clerk_b", reason="x"), stack.pb.admin.DisableAccountResponse
    e = rpc_error(lambda: waygate_proto.unary(ch, method, req, resp))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (e.code(), e.details())


# The writer's checkpoint timer (every 10 s) sends a transaction with nothing queued: one sent
# after PostgreSQL stopped would tell the writer of the outage before the test's first refusal,
# which the tests below need to be the one the writer learns of it by.
NO_CHECKPOINT = "checkpoint_ms = 86400000\n"


def refusals_of(gw, method):
    """SQL: courier_a's admin.refused records of method on gw's chain, as 'records|refusals|
    alone' (a counting record counts its refusals; alone: the records with no count)."""
    return ("SELECT count(*) || '|' || coalesce(sum(coalesce(count, 1)), 0) || '|' || count(*) "
            "FILTER (WHERE count IS NULL) FROM audit_record WHERE chain = '%s' AND action = "
            "'admin.refused' AND actor = 'courier_a' AND object = '%s'"
            % (gw.chain, method.rsplit("/", 1)[1]))


def test_an_admin_refusal_recorded_alone_in_an_outage_is_written_when_it_ends_or_spooled(stack):
    """An Admin refusal recorded on its own (one of the first GW_REFUSALS_EACH of its kind) while
    PostgreSQL is stopped waits for the database, as every record of what already happened does:
    PostgreSQL started again, its record (on its own: no count) is written; refused in a second
    outage and the gateway stopped in it, it is spooled (none lost) and written at the next start,
    once. (A first refusal with the database up lets the gateway know courier_a's certificate: in
    an outage a certificate-only call goes on with the last known answer.) (Before, its transaction was one that fails UNAVAILABLE: the first refusal after the
    database went away was dropped with an error line, and the next ones of the outage, refused a
    place in the writer's queue, were counted into a record of their own.)"""
    gw = spooled_gateway(stack, "spool_refused", NO_CHECKPOINT)
    q = refusals_of(gw, CREATE)
    stopped = False
    try:
        refuse(stack, gw, CREATE)
        assert wait_for(lambda: stack.psql(q) == ["1|1|1"], 30), stack.psql(q)
        stack.devstack("pg-stop")
        stopped = True
        refuse(stack, gw, CREATE)
        stack.devstack("pg-start")
        stopped = False
        assert wait_for(lambda: stack.psql(q) == ["2|2|2"], 60), (stack.psql(q), gw.log()[-2000:])
        stack.devstack("pg-stop")
        stopped = True
        refuse(stack, gw, DISABLE)
        stop(gw)
        n, path, lost = spooled_line(gw)
        assert path == gw.spool and n >= 1 and lost == 0, (n, path, lost, gw.log()[-2000:])
        stack.devstack("pg-start")
        stopped = False
        replayed_at_start(gw, n)
        assert stack.psql(refusals_of(gw, DISABLE)) == ["1|1|1"]
        assert stack.psql(q) == ["2|2|2"]
        assert "were not written" not in gw.log()
    finally:
        close_after_outage(stack, gw, stopped)


def test_refusals_in_an_outage_the_writer_knows_of_are_counted_not_queued(stack):
    """Once the audit writer knows PostgreSQL is away (its recovery failed, logged), a refusal
    takes no place in its queue: it is counted, and its count written when the database is back
    (here at the stop: the window is an hour). Only the refusal the writer learnt of the outage by
    waits there on its own. (Before, each of the first GW_REFUSALS_EACH refusals of a kind, and
    as many more each window, was queued on its own to wait for the database, filling the half of
    the queue that the records of actions already done need.)"""
    gw = spooled_gateway(stack, "spool_down", "refusal_window_s = 3600\n" + NO_CHECKPOINT)
    q = refusals_of(gw, CREATE)
    stopped = False
    try:
        refuse(stack, gw, CREATE)  # the database up: the gateway knows courier_a's certificate
        assert wait_for(lambda: stack.psql(q) == ["1|1|1"], 30), stack.psql(q)
        stack.devstack("pg-stop")
        stopped = True
        refuse(stack, gw, CREATE)  # queued on its own: the writer does not know yet
        assert wait_for(lambda: "head not recovered" in gw.log(), 60), gw.log()[-2000:]
        for _ in range(5):
            refuse(stack, gw, CREATE)
        stack.devstack("pg-start")
        stopped = False
        assert wait_for(lambda: stack.psql(q) == ["2|2|2"], 60), (stack.psql(q), gw.log()[-2000:])
        stop(gw)
        assert "0 counted refusal(s) not recorded" in gw.log(), gw.log()[-2000:]
        assert stack.psql(q) == ["3|7|2"], stack.psql(q)  # 2 alone, 5 in one counting record
    finally:
        close_after_outage(stack, gw, stopped)


def test_a_counting_record_still_queued_when_the_drain_times_out_is_spooled(stack):
    """Refusals past the first GW_REFUSALS_EACH (8) of a kind in a window (an hour here) are
    counted; at SIGTERM their counting record is queued behind a config.reload transaction that
    waits on audit_record (locked EXCLUSIVE by a session the test holds), and the drain
    ([server] drain_timeout_ms) times out with it still queued. It is spooled with the reload's
    (none lost), and the next start, the lock released, writes it: the records of that kind add
    up to the calls, in the 8 alone and one counting record. (Before, a counting record queued
    at shutdown was not an entry the writer spools, nor one the refusals' leftover visits: it
    was lost.)"""
    from conftest import lock_holder, release_holder
    calls, alone = 12, 8
    gw = spooled_gateway(stack, "spool_counted", "refusal_window_s = 3600\n")
    q = refusals_of(gw, CREATE)
    waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'audit_record'::regclass AND " \
        "NOT granted"
    holder = None
    try:
        for _ in range(calls):
            refuse(stack, gw, CREATE)
        assert wait_for(lambda: stack.psql(q) == ["%d|%d|%d" % (alone, alone, alone)], 30), \
            stack.psql(q)
        holder = lock_holder(stack, "LOCK TABLE audit_record IN EXCLUSIVE MODE")
        reload(gw)
        assert wait_for(lambda: count(stack, waiting) > 0, 60), "no transaction waited"
        stop(gw)
        n, path, lost = spooled_line(gw)
        assert path == gw.spool and n >= 2 and lost == 0, (n, path, lost, gw.log()[-2000:])
        # the exit line counts them as not recorded (by the database) before it says spooled
        assert "%d counted refusal(s) not recorded" % (calls - alone) in gw.log(), gw.log()[-2000:]
        release_holder(holder)
        holder = None
        assert wait_for(lambda: count(stack, waiting) == 0, 60)
        replayed_at_start(gw, n)
        assert stack.psql(q) == ["%d|%d|%d" % (alone + 1, calls, alone)]
        assert count(stack, "SELECT count(*) FROM audit_record WHERE chain = '%s' AND action = "
                     "'config.reload'" % gw.chain) == 1
    finally:
        if holder is not None:
            release_holder(holder)
        gw.close()
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


def refusing_incident_records(stack, chain):
    """A trigger that refuses the audit records of incidents of chain (not a passing error: the
    writer gives their entries up); returns the function that drops it."""
    name = "refuse_" + re.sub(r"[^a-z0-9]", "_", chain.lower())
    stack.psql("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.chain = "
               "'%s' AND NEW.action = 'incident' THEN RAISE EXCEPTION 'refused by the test'; "
               "END IF; RETURN NEW; END $$; CREATE TRIGGER %s BEFORE INSERT ON audit_record FOR "
               "EACH ROW EXECUTE FUNCTION %s()" % (name, chain, name, name))

    def drop():
        stack.psql("DROP TRIGGER IF EXISTS %s ON audit_record; DROP FUNCTION IF EXISTS %s()"
                   % (name, name))
    return drop


def test_an_entry_refused_in_a_replay_is_kept_and_written_once_later(stack):
    """PostgreSQL stopped: a gateway spools an incident (an out-of-segment submit) and a
    config.reload record. Started again with the database back but the incident's audit record
    refused (a trigger: not an outage, so the writer gives the entry up), its replay writes the
    record, fails the incident, and keeps the file (marked): killed (SIGKILL), the next start
    replays it, skips the record (its mark) and fails the incident again; stopped in a second
    outage beside another config.reload record, the failed incident is carried into the new spool
    with it. The trigger dropped, the last start writes both: each record and the incident row
    exactly once. (Before, the file was removed once every entry had answered, and a failed
    entry was neither kept nor carried: the incident was lost.)"""
    gw = spooled_gateway(stack, "spool_refused")
    kind = "kind = 'segment_violation' AND principal = 'courier_a'"
    reload_rec = RELOADS % gw.chain
    incident_rec = "SELECT count(*) FROM audit_record WHERE chain = '%s' AND action = " \
                   "'incident'" % gw.chain
    kept = r"spool \S+: (\d+) entr(?:y|ies) written, 1 failed; file kept: the next start " \
           r"writes the failed ones and skips the others \(their mark\); (\d+) written before"
    drop = None
    stopped = False
    try:
        before = count(stack, "SELECT coalesce(sum(count), 0) FROM incident WHERE " + kind)
        submit_to(stack, gw, new_waybill(stack, "a"))  # loads the segment cache
        stack.devstack("pg-stop")
        stopped = True
        refused_outside_segments(stack, gw)
        reload(gw)
        stop(gw)
        n, _, lost = spooled_line(gw)
        assert n >= 2 and lost == 0, (n, lost)
        stack.devstack("pg-start")
        stopped = False
        drop = refusing_incident_records(stack, gw.chain)

        mark = len(gw.log())
        gw.start_again()
        assert wait_for(lambda: re.search(kept, gw.log()[mark:]), 60), gw.log()[mark:][-2000:]
        assert re.search(kept, gw.log()[mark:]).groups() == (str(n - 1), "0")
        assert os.path.exists(gw.spool)
        assert count(stack, reload_rec) == 1 and count(stack, incident_rec) == 0
        gw.proc.kill()
        gw.proc.wait(timeout=60)

        mark = len(gw.log())
        gw.start_again()
        assert wait_for(lambda: re.search(kept, gw.log()[mark:]), 60), gw.log()[mark:][-2000:]
        assert re.search(kept, gw.log()[mark:]).groups() == ("0", str(n - 1))
        assert count(stack, reload_rec) == 1 and count(stack, incident_rec) == 0

        stack.devstack("pg-stop")
        stopped = True
        reload(gw)
        stop(gw)
        # the new reload's record and the incident carried
        assert re.search(r"drained: exiting, .*: 2 entries spooled to \S+, 0 lost",
                         gw.log()[mark:]), gw.log()[mark:][-2000:]
        stack.devstack("pg-start")
        stopped = False
        drop()
        drop = None
        replayed_at_start(gw, 2)
        assert not os.path.exists(gw.spool)
        assert count(stack, reload_rec) == 2
        assert count(stack, incident_rec) == 1
        assert count(stack, "SELECT coalesce(sum(count), 0) FROM incident WHERE " + kind) \
            == before + 1
    finally:
        if stopped:
            stack.devstack("pg-start")
        if drop is not None:
            drop()
        gw.close()
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)
