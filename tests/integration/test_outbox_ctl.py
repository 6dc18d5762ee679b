"""The outbox from the operator's side (issue 9): a waybill accepted and a scan recorded through
the gateway enqueue their deliveries through the gateway's own database role (the grants of
sql/012_outbox.sql), a duplicate submit enqueues nothing, and `waygatectl outbox status |
list-parked | retry ID` report and act on what is there, each run in admin_log and the audit
chain 'ctl'. Forwarding may be on in the stack (a forwarder then drains the outbox): the test
looks only at rows it makes sure stay put (parked), or counts deliveries enqueued ever
(outbox rows plus nothing else when no forwarder runs)."""

import itertools
import os
import re

from query_data import PICKUP, SUBMIT, call, new_waybill, submit
from test_scan import scan

PARK_REASON = "REJECTED: test refusal"
next_tag = itertools.count(int.from_bytes(os.urandom(3), "big")).__next__


def admin_log(stack, action, obj=None):
    """(outcome, detail) of the newest admin_log row of action (on obj)."""
    cond = "action = '%s'" % action + ("" if obj is None else " AND object = '%s'" % obj)
    rows = stack.psql("SELECT outcome || '|' || coalesce(detail, '') FROM admin_log WHERE %s "
                      "ORDER BY id DESC LIMIT 1" % cond)
    assert rows, "no admin_log row for %s" % action
    return tuple(rows[0].split("|", 1))


def audit_actions(stack, action):
    return int(stack.psql("SELECT count(*) FROM audit_record WHERE chain = 'ctl' AND action = '%s'"
                          % action)[0])


def parked_row(stack, record_id, reason=PARK_REASON):
    """The outbox id of a parked delivery of record_id: its own row parked as a forwarder would
    park it, or (when a forwarder already delivered it) one inserted parked, as the owner."""
    rows = stack.psql("UPDATE outbox SET parked_at = now(), park_reason = '%s', lease_owner = NULL, "
                      "lease_until = NULL WHERE waybill_id = '%s' RETURNING id"
                      % (reason, record_id))
    if not rows:
        rows = stack.psql("INSERT INTO outbox (kind, waybill_id, parked_at, park_reason) VALUES "
                          "(1, '%s', now(), '%s') RETURNING id" % (record_id, reason))
    return int(rows[0])


def forwarding(stack):
    """Does the stack's gateway forward (a [forward] endpoint)? Then a forwarder drains rows."""
    conf = open("%s/waygated.conf" % stack.dir).read()
    section = re.search(r"^\[forward\]([^\[]*)", conf, re.M)
    return bool(section and re.search(r"^\s*endpoint\s*=\s*\S", section.group(1), re.M))


def test_enqueued_through_the_gateway_role(stack):
    w = new_waybill(stack, "a")
    record_id = submit(stack, w)
    again = call(stack, SUBMIT, stack.pb.intake.SubmitRequest(waybill=w),
                 stack.pb.intake.SubmitResponse, "courier_a")
    assert again.duplicate and again.id == record_id
    scan(stack, w.waybill_no, "PICKED_UP", PICKUP + 60)
    rows = stack.psql("SELECT kind FROM outbox WHERE waybill_id = '%s' ORDER BY id" % record_id)
    print("outbox rows for the waybill: %s (1 acceptance, 2 scan)" % rows)
    if not forwarding(stack):
        assert rows == ["1", "2"]  # one acceptance (not two), then the scan


def test_status_list_parked_retry(stack):
    w = new_waybill(stack, "a")
    record_id = submit(stack, w)
    oid = parked_row(stack, record_id)
    delivery = stack.psql("SELECT delivery_id FROM outbox WHERE id = %d" % oid)[0]

    r = stack.ctl("outbox", "status", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert int(fields["parked"]) >= 1 and int(fields["depth"]) >= 1
    assert admin_log(stack, "outbox.status")[0] == "ok"
    print(r.stdout)

    r = stack.ctl("outbox", "list-parked", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("%d " % oid)]
    assert len(line) == 1 and delivery in line[0] and record_id in line[0]
    assert line[0].endswith(PARK_REASON) and " waybill " in line[0]
    assert admin_log(stack, "outbox.list_parked")[0] == "ok"
    assert audit_actions(stack, "outbox.list_parked") >= 1

    # refusals name the field and the rule, change nothing, and are recorded
    r = stack.ctl("outbox", "retry", "not-an-id", "--db", stack.pguri)
    assert r.returncode == 3 and "ID: must be an outbox id or a delivery id (UUID)" in r.stderr
    r = stack.ctl("outbox", "retry", "987654321", "--db", stack.pguri)
    assert r.returncode == 3 and "ID: no such delivery in the outbox" in r.stderr
    assert admin_log(stack, "outbox.retry", "987654321") == (
        "refused", "ID: no such delivery in the outbox")

    retried = audit_actions(stack, "outbox.retry")
    r = stack.ctl("outbox", "retry", delivery, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert "delivery %d is ready again" % oid in r.stdout
    assert admin_log(stack, "outbox.retry", delivery) == ("ok", "outbox id %d ready again" % oid)
    assert audit_actions(stack, "outbox.retry") == retried + 1
    # unparked (or, with a forwarder running, already delivered and gone)
    assert stack.psql("SELECT count(*) FROM outbox WHERE id = %d AND parked_at IS NOT NULL"
                      % oid) == ["0"]
    # a second retry: no longer parked (or gone)
    r = stack.ctl("outbox", "retry", str(oid), "--db", stack.pguri)
    assert r.returncode == 3
    assert ("the delivery is not parked" in r.stderr or "no such delivery" in r.stderr)


def test_retry_all_by_reason_in_runs_of_a_limit(stack):
    """After a backend that refused everything is mended, `outbox retry --all` makes the
    deliveries it parked ready again without one run per id: the oldest --limit parked on their
    own whose reason starts with --reason, each with the deliveries of its waybill parked behind
    it; it says how many are left, leaves other reasons parked, and is recorded once a run."""
    tag = "REJECTED: schema %d;" % next_tag()  # ';': no other run's tag starts with this one
    other = "REJECTED: other %d;" % next_tag()
    heads = []
    for _ in range(3):
        w = new_waybill(stack, "a")
        heads.append((w, parked_row(stack, submit(stack, w), tag)))
    # a scan of the first waybill enqueued after its acceptance parked: parked behind it
    scan(stack, heads[0][0].waybill_no, "PICKED_UP", PICKUP + 60)
    behind = stack.psql("SELECT id FROM outbox WHERE parked_behind = %d" % heads[0][1])
    assert len(behind) == 1
    w = new_waybill(stack, "a")
    kept = parked_row(stack, submit(stack, w), other)
    ids = [oid for _, oid in heads]

    def parked(oids):
        return int(stack.psql("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND id IN "
                              "(%s)" % ", ".join(str(i) for i in oids))[0])

    # refusals: the options' bounds, and --reason only with --all; nothing changes
    for args, msg in ((("--all", "--limit", "0"), "--limit"), (("--all", "--limit", "1001"),
                                                                 "--limit"),
                      (("--all", "--reason", ""), "--reason must be 1 to 200 bytes"),
                      (("--all", "--reason", "REJECTED:\tx"), "of printable ASCII"),
                      (("1", "--reason", tag), "--reason goes with --all")):
        r = stack.ctl("outbox", "retry", *args, "--db", stack.pguri)
        assert r.returncode == 2 and msg in r.stderr, (args, r.returncode, r.stderr)
    assert parked(ids + [kept]) == 4

    runs = audit_actions(stack, "outbox.retry")
    r = stack.ctl("outbox", "retry", "--all", "--reason", tag, "--limit", "2", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert ("2 deliveries are ready again (outbox ids %d to %d), with the 1 parked behind them"
            % (ids[0], ids[1])) in r.stdout, r.stdout
    assert "1 more parked on their own with that reason: run it again" in r.stdout, r.stdout
    assert admin_log(stack, "outbox.retry", "all") == (
        "ok", 'reason "%s", limit 2: 2 ready again (outbox ids %d to %d), 1 behind them, 1 left'
        % (tag, ids[0], ids[1]))
    assert audit_actions(stack, "outbox.retry") == runs + 1
    # the two oldest and the one behind the first: unparked (or, forwarded, gone); the third and
    # the other reason's still parked
    assert parked(ids[:2] + [int(behind[0])]) == 0
    assert parked([ids[2], kept]) == 2

    r = stack.ctl("outbox", "retry", "--all", "--reason", tag, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert "1 delivery is ready again (outbox ids %d to %d)" % (ids[2], ids[2]) in r.stdout
    assert "more parked" not in r.stdout
    assert parked([ids[2]]) == 0 and parked([kept]) == 1
    r = stack.ctl("outbox", "retry", "--all", "--reason", tag, "--db", stack.pguri)
    assert r.returncode == 0 and "nothing changed" in r.stdout, r.stdout
    assert admin_log(stack, "outbox.retry", "all") == (
        "ok", 'reason "%s", limit 1000: none parked on its own' % tag)
    r = stack.ctl("outbox", "retry", str(kept), "--db", stack.pguri)  # leave nothing parked
    assert r.returncode == 0, r.stderr
