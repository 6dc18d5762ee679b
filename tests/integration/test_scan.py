"""Scan events and custody (issue 9, first part; Art. 34).

WaybillIntake.RecordScan: a device records an event for a stored waybill; each refusal is a
precise status whose message names the field and the rule; idempotent on (waybill, event, time,
device); the transition is judged against the waybill's latest event (PICKED_UP only first,
nothing but RETURNED after DELIVERED). WaybillView.status shows the latest event.

Custody: a branch whose device scanned a waybill in (ARRIVED) sees it (Get; a courier's Reveal of
the recipient's phone once it is out for delivery from there) until it departs from that branch,
is out for delivery at another branch, or is delivered, and not after; the database's row-level
security agrees.

Dev routes (deploy/devstack): 320102 -> b. A waybill of branch a bound for 330106 has no route:
only a sees it, until b takes custody."""

import os
import time

import grpc
import pytest

from query_data import (GET, PICKUP, call, get, incidents_written, new_waybill, nonexistent,
                        refusal, reveal, search, submit)
from conftest import ExtraGateway
from test_query import second_gateway_of
from test_views import default_text, write_policy
import waygate_proto

RECORD_SCAN = "/waygate.v1.WaybillIntake/RecordScan"


def ev(stack, name):
    return getattr(stack.pb.intake, "SCAN_EVENT_" + name)


def scan(stack, number, event, at=0, principal="courier_a", branch=""):
    req = stack.pb.intake.RecordScanRequest(waybill_no=number, event=ev(stack, event)
                                            if isinstance(event, str) else event,
                                            event_time=at, branch=branch)
    return call(stack, RECORD_SCAN, req, stack.pb.intake.RecordScanResponse, principal)


def unrouted(stack):
    """A fresh waybill of branch a that no route sends to b (number, record id)."""
    w = new_waybill(stack, "a", dest="330106")
    return w, submit(stack, w)


def missing_answer(stack, principal="courier_b"):
    return refusal(lambda: get(stack, nonexistent(stack, "a", 7), principal))


def put_scan(stack, record_id, branch, event, offset):
    """A scan written as the owner (a branch that exists only in the database), dated offset
    seconds after the pickup, as a late device queue would send it."""
    stack.psql("INSERT INTO scan (waybill_id, event, event_time, branch, device) VALUES "
               "('%s', %d, to_timestamp(%d), '%s', 'dev-%s')"
               % (record_id, event, PICKUP + offset, branch, branch))


def rls_sees(stack, branch, record_id):
    """Does the gateway's database role, in branch's scope, see the waybill row?"""
    out = stack.psql("BEGIN; SELECT set_config('waygate.scope', '%s', true) IS NOT NULL; "
                     "SELECT count(*) FROM waybill WHERE id = '%s'; COMMIT;" % (branch, record_id),
                     uri=stack.pguri_gateway)
    return out[-1] == "1"


# ---- validation ----

@pytest.mark.parametrize("kw,code,message", [
    (dict(number=""), grpc.StatusCode.INVALID_ARGUMENT, "waybill_no: is required"),
    (dict(event=0), grpc.StatusCode.INVALID_ARGUMENT, "event: is required"),
    (dict(event=42), grpc.StatusCode.INVALID_ARGUMENT, "event: is not a known scan event"),
    (dict(at=-5), grpc.StatusCode.INVALID_ARGUMENT,
     "event_time: must not be negative (0 means the gateway's receive time)"),
    (dict(at=PICKUP + 10 * 86400), grpc.StatusCode.INVALID_ARGUMENT,
     "event_time: is in the future (more than 5 minutes ahead of the gateway clock)"),
    (dict(at=86400), grpc.StatusCode.INVALID_ARGUMENT, "event_time: is before 2000-01-01"),
    (dict(at=PICKUP - 60), grpc.StatusCode.INVALID_ARGUMENT,
     "event_time: is before the waybill's pickup time"),
    (dict(branch="b"), grpc.StatusCode.PERMISSION_DENIED,
     "branch: must be the submitting device's own branch"),
])
def test_record_scan_refusals_name_field_and_rule(stack, kw, code, message):
    w, _ = unrouted(stack)
    args = dict(number=w.waybill_no, event="ARRIVED", at=PICKUP + 60, branch="")
    args.update(kw)
    got = refusal(lambda: scan(stack, args["number"], args["event"], args["at"],
                               branch=args["branch"]))
    assert got == (code, message)
    # nothing was stored
    assert get(stack, w.waybill_no, "courier_a").status == "accepted"


def test_outside_scope_is_not_found_like_a_missing_number(stack):
    w, _ = unrouted(stack)
    missing = refusal(lambda: scan(stack, nonexistent(stack, "a", 8), "DEPARTED",
                                   principal="courier_b"))
    assert missing[0] == grpc.StatusCode.NOT_FOUND
    assert missing == missing_answer(stack)  # word for word what Get says of a missing number
    for event in ("DEPARTED", "OUT_FOR_DELIVERY", "DELIVERED", "PICKED_UP"):
        assert refusal(lambda: scan(stack, w.waybill_no, event, PICKUP + 60,
                                    principal="courier_b")) == missing
    # an arrival of a number that does not exist is NOT_FOUND too
    assert refusal(lambda: scan(stack, nonexistent(stack, "a", 9), "ARRIVED",
                                principal="courier_b")) == missing


def test_arrival_outside_scope_refused_like_a_missing_number(stack):
    """An arrival is read in any branch's scope, but until it is stored its refusals are the
    waybill's data: for a caller outside the scope, an arrival dated before the pickup time and
    one after DELIVERED are answered word for word as a missing number is, and store nothing;
    the caller within the scope still hears the precise rule."""
    w, record = unrouted(stack)
    n = w.waybill_no
    missing = refusal(lambda: scan(stack, nonexistent(stack, "a", 11), "ARRIVED", PICKUP + 60,
                                   principal="courier_b"))
    assert missing == missing_answer(stack)
    assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP - 60,
                                principal="courier_b")) == missing
    assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP - 60)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "event_time: is before the waybill's pickup time")
    assert scan(stack, n, "DELIVERED", PICKUP + 120).status == "delivered"
    assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP + 180,
                                principal="courier_b")) == missing
    assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP + 180)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "event: nothing but RETURNED may follow DELIVERED")
    assert stack.psql("SELECT count(*) FROM scan WHERE waybill_id = '%s' AND branch = 'b'"
                      % record) == ["0"]


THROTTLED = (grpc.StatusCode.RESOURCE_EXHAUSTED,
             "too many distinct waybills or phone numbers looked up (at most 200 in the window); "
             "an incident was recorded")


def scan_on(stack, ch, number, event, at):
    """(status, details) of a RecordScan over channel ch that is refused."""
    req = stack.pb.intake.RecordScanRequest(waybill_no=number, event=ev(stack, event),
                                            event_time=at)
    return refusal(lambda: waygate_proto.unary(ch, RECORD_SCAN, req,
                                               stack.pb.intake.RecordScanResponse))


def use_199_lookups(stack, ch, first):
    """Gets of 199 distinct missing numbers over ch (courier_b's limit is 200 in the window):
    each allowed, answered as a missing number."""
    missing = missing_answer(stack)
    for i in range(199):
        assert refusal(lambda: waygate_proto.unary(
            ch, GET, stack.pb.query.GetRequest(waybill_no=nonexistent(stack, "a", first + i)),
            stack.pb.common.WaybillView)) == missing, i


def test_arrival_not_found_counts_against_the_lookup_throttle(stack):
    """Every NOT_FOUND of an arrival is a lookup (the courier's limit: 200 distinct numbers in
    the window), a missing number's as much as a refused arrival's outside the scope: past the
    limit both are refused alike, so the throttle tells them apart no more than NOT_FOUND
    does. A second gateway: a throttle table of its own."""
    w, _ = unrouted(stack)
    late, _ = unrouted(stack)
    with second_gateway_of(stack) as addr:
        ch = stack.channel("courier_b", addr=addr)
        missing = missing_answer(stack)
        use_199_lookups(stack, ch, 1000)
        assert scan_on(stack, ch, w.waybill_no, "ARRIVED", PICKUP - 60) == missing  # the 200th
        assert scan_on(stack, ch, nonexistent(stack, "a", 1500), "ARRIVED", PICKUP + 60) == \
            THROTTLED
        assert scan_on(stack, ch, late.waybill_no, "ARRIVED", PICKUP - 60) == THROTTLED
        # a number already looked up in the window is not a new lookup
        assert scan_on(stack, ch, w.waybill_no, "ARRIVED", PICKUP - 60) == missing


def test_a_probe_outside_the_scope_counts_against_the_lookup_throttle(stack):
    """An event other than an arrival, with its own time, at a waybill outside the caller's scope
    is looked up under every branch's scope (a retry of the caller's own event is still its
    duplicate): each such look-up is a lookup like an arrival's, counted before its work, so
    past the limit another branch's waybill and a missing number are refused alike. Before, only
    arrivals counted, and these probes told existing numbers from missing ones, unthrottled, by
    their time (a decryption and a group commit against one read). A second gateway: a
    throttle table of its own."""
    w, _ = unrouted(stack)
    other, _ = unrouted(stack)
    with second_gateway_of(stack) as addr:
        ch = stack.channel("courier_b", addr=addr)
        missing = missing_answer(stack)
        use_199_lookups(stack, ch, 2000)
        assert scan_on(stack, ch, w.waybill_no, "DEPARTED", PICKUP + 60) == missing  # the 200th
        assert scan_on(stack, ch, nonexistent(stack, "a", 2500), "DEPARTED", PICKUP + 60) == \
            THROTTLED
        assert scan_on(stack, ch, other.waybill_no, "DEPARTED", PICKUP + 60) == THROTTLED
        # a number already looked up in the window is not a new lookup
        assert scan_on(stack, ch, w.waybill_no, "DEPARTED", PICKUP + 60) == missing


def test_arrivals_are_bounded_before_the_read_alike_for_any_number(stack):
    """An arrival takes custody of any branch's waybill: each principal may scan in at most its
    role's arrivals_per_window distinct waybills per lookup_window_s (a count of its own beside
    its lookups), charged before the waybill is read. A gateway whose policy gives couriers 3:
    courier_b scans in 3 waybills of a (outside its scope: it takes custody); the 4th existing
    waybill and a missing number are refused alike, RESOURCE_EXHAUSTED word for word (the refusal
    says nothing of the number); a retry of a counted arrival is the same key and still answers
    its duplicate; one arrival_throttle incident (high) for the window. Before, a stolen
    courier's certificate moved the custody of any number it guessed, unbounded."""
    courier = "\narrivals_per_window = 2000\n"  # the courier's alone (it alone may RecordScan)
    text = default_text()
    assert text.count(courier) == 1
    policy = os.path.join(stack.dir, "policy_arrivals.conf")
    write_policy(policy, text.replace(courier, "\narrivals_per_window = 3\n"))
    gw = ExtraGateway(stack, "arrivals", lambda t: t + "\n[policy]\nfile = %s\n" % policy)
    incidents = ("SELECT severity || '|' || principal || '|' || detail FROM cli_incident_list("
                 "NULL, NULL, 100000) WHERE kind = 'arrival_throttle' AND principal = 'courier_b'")
    before = stack.psql(incidents, uri=stack.pguri)
    throttled = (grpc.StatusCode.RESOURCE_EXHAUSTED,
                 "waybill_no: too many distinct waybills scanned in as ARRIVED (at most 3 in the "
                 "window); an incident was recorded")
    ws = [unrouted(stack) for _ in range(4)]
    try:
        ch = stack.channel("courier_b", addr=gw.addr)

        def arrive(number):
            req = stack.pb.intake.RecordScanRequest(waybill_no=number, event=ev(stack, "ARRIVED"),
                                                    event_time=PICKUP + 60)
            return waygate_proto.unary(ch, RECORD_SCAN, req, stack.pb.intake.RecordScanResponse)

        first = [arrive(w.waybill_no) for w, _ in ws[:3]]
        assert [(r.status, r.duplicate) for r in first] == [("arrived", False)] * 3
        assert all(rls_sees(stack, "b", record) for _, record in ws[:3])  # b holds custody
        assert refusal(lambda: arrive(ws[3][0].waybill_no)) == throttled
        assert refusal(lambda: arrive(nonexistent(stack, "a", 3100))) == throttled
        own = new_waybill(stack, "b", dest="330106")  # b's own waybill, in its scope
        submit(stack, own, "courier_b")
        assert refusal(lambda: arrive(own.waybill_no)) == throttled
        assert not rls_sees(stack, "b", ws[3][1])
        # a retry of a counted arrival is no new waybill: still its duplicate
        again = arrive(ws[0][0].waybill_no)
        assert (again.id, again.duplicate, again.status) == (first[0].id, True, "arrived")
        incidents_written(stack, ch, "courier_b", "a", 900_101)
        after = stack.psql(incidents, uri=stack.pguri)
        assert [x for x in after if x not in before] == [
            "high|courier_b|more than 3 distinct waybills scanned in as ARRIVED within 600 s on "
            "this gateway instance; further arrivals refused"]
    finally:
        gw.close()
        # b's custody of a's waybills ends (the stack is shared: test_scope counts what b sees)
        for w, record in ws[:3]:
            if rls_sees(stack, "b", record):
                scan(stack, w.waybill_no, "DEPARTED", PICKUP + 120, principal="courier_b")
        assert not any(rls_sees(stack, "b", record) for _, record in ws)


def test_a_probe_of_an_unreadable_record_is_a_missing_number(stack):
    """A probe opens nothing: at another branch's record that fails authentication it is answered
    as a missing number, not DATA_LOSS (which told a caller outside the scope that the number
    exists); the branch's own read still finds the damage."""
    w, record = unrouted(stack)
    stack.psql("UPDATE waybill SET content_mac = set_byte(content_mac, 3, "
               "get_byte(content_mac, 3) # 1) WHERE id = '%s'" % record)
    assert refusal(lambda: scan(stack, w.waybill_no, "DEPARTED", PICKUP + 60,
                                principal="courier_b")) == missing_answer(stack)
    assert refusal(lambda: get(stack, w.waybill_no, "courier_a"))[0] == grpc.StatusCode.DATA_LOSS


def test_transitions(stack):
    w, _ = unrouted(stack)
    n = w.waybill_no
    assert scan(stack, n, "PICKED_UP", PICKUP + 60).status == "picked_up"
    code, msg = refusal(lambda: scan(stack, n, "PICKED_UP", PICKUP + 120))
    assert (code, msg) == (grpc.StatusCode.FAILED_PRECONDITION,
                           "event: PICKED_UP must be the waybill's first event")
    assert scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 180).status == "out_for_delivery"
    assert scan(stack, n, "DELIVERY_FAILED", PICKUP + 240).status == "delivery_failed"
    # a DELIVERED dated before the latest event would have that event after it
    code, msg = refusal(lambda: scan(stack, n, "DELIVERED", PICKUP + 200))
    assert (code, msg) == (grpc.StatusCode.FAILED_PRECONDITION, "event_time: a DELIVERED event "
                           "must not be dated before the waybill's latest event")
    assert scan(stack, n, "DELIVERED", PICKUP + 300).status == "delivered"
    for event in ("ARRIVED", "DEPARTED", "OUT_FOR_DELIVERY", "DELIVERED", "DELIVERY_FAILED"):
        code, msg = refusal(lambda: scan(stack, n, event, PICKUP + 360))
        assert (code, msg) == (grpc.StatusCode.FAILED_PRECONDITION,
                               "event: nothing but RETURNED may follow DELIVERED")
    assert scan(stack, n, "RETURNED", PICKUP + 420).status == "returned"
    assert get(stack, n, "courier_a").status == "returned"


def test_a_branch_records_at_most_32_scan_events_of_a_waybill(stack):
    """Each scan event is a delivery to the backend queued behind the waybill's earlier ones: a
    device alternating ARRIVED and DEPARTED queued as many as it liked behind one waybill, each
    sent one claim after the last (review). A branch's 32nd event of a waybill is stored, its
    33rd refused FAILED_PRECONDITION naming the rule, nothing stored; a retry of a stored event
    is still the duplicate. The bound is the branch's, not the waybill's: another branch still
    records its events (a cap per waybill let one device freeze the waybill, its custody and its
    status for everyone, review), and outside the scope the refusal is a missing number's."""
    w, record = unrouted(stack)
    n = w.waybill_no
    arrived, departed = ev(stack, "ARRIVED"), ev(stack, "DEPARTED")
    count = "SELECT count(*) FROM scan WHERE waybill_id = '%s' AND branch = '%%s'" % record
    for i in range(31):  # written as the owner: a long history at a, quickly
        put_scan(stack, record, "a", departed if i % 2 else arrived, 60 + i)
    assert scan(stack, n, "DEPARTED", PICKUP + 200).status == "departed"
    assert stack.psql(count % "a") == ["32"]
    assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP + 300)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "waybill_no: the branch recorded the most scan events one branch may record for one "
        "waybill (32): nothing was recorded")
    assert stack.psql(count % "a") == ["32"]
    assert scan(stack, n, "DEPARTED", PICKUP + 200).duplicate
    # b is not held back by a's events: it scans the waybill in (and holds custody)
    assert scan(stack, n, "ARRIVED", PICKUP + 300, principal="courier_b").status == "arrived"
    assert get(stack, n, "courier_b").status == "arrived"
    # b's own history fills (as the owner), ending with its departure: b is outside the scope
    for i in range(31):
        put_scan(stack, record, "b", arrived if i % 2 else departed, 301 + i)
    assert stack.psql(count % "b") == ["32"]
    assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP + 400, principal="courier_b")) == \
        missing_answer(stack)
    assert stack.psql(count % "b") == ["32"]


def test_contention_outside_scope_answers_as_a_missing_number(stack):
    """RecordScan inserts an event only while the latest event it judged against is still the
    latest, and reads and judges again at most three times before it gives up (UNAVAILABLE for a
    caller who sees the waybill). An arrival outside the caller's scope that gives up says the
    waybill exists as much as any other refusal would: it is answered as a missing number. The
    contention is made deterministic here: as the owner, waybill_last_event_at answers a time no
    event has for this one waybill, so every insert finds its judgement stale."""
    w, record = unrouted(stack)
    n = w.waybill_no
    original = "\n".join(stack.psql(
        "SELECT pg_get_functiondef('waybill_last_event_at(uuid)'::regprocedure)"))
    stack.psql("""CREATE OR REPLACE FUNCTION waybill_last_event_at(w uuid) RETURNS bigint
                  LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
                  BEGIN
                      IF w = '%s' THEN RETURN -1; END IF;
                      RETURN coalesce((SELECT extract(epoch FROM s.order_at)::bigint FROM scan s
                                        WHERE s.waybill_id = w
                                        ORDER BY s.order_at DESC, s.seq DESC LIMIT 1), 0);
                  END $$""" % record)
    try:
        assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")) == \
            missing_answer(stack)
        assert refusal(lambda: scan(stack, n, "ARRIVED", PICKUP + 60)) == \
            (grpc.StatusCode.UNAVAILABLE,
             "waybill_no: the waybill's events changed concurrently too often: retry (the retry "
             "is idempotent)")
    finally:
        stack.psql(original)
    assert stack.psql("SELECT count(*) FROM scan WHERE waybill_id = '%s'" % record) == ["0"]
    assert scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b").status == "arrived"
    # (and b's custody ends: other tests count what b's scope sees)
    assert scan(stack, n, "DEPARTED", PICKUP + 120, principal="courier_b").status == "departed"


# ---- idempotency ----

def test_retry_is_idempotent(stack):
    w, record = unrouted(stack)
    n = w.waybill_no
    first = scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 60)
    assert not first.duplicate and first.id
    again = scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 60)
    assert (again.id, again.duplicate, again.status) == (first.id, True, "out_for_delivery")
    # the same event at another time is another event
    other = scan(stack, n, "DELIVERY_FAILED", PICKUP + 120)
    assert other.id != first.id and not other.duplicate
    assert scan(stack, n, "DELIVERED", PICKUP + 180).status == "delivered"
    # a late retry of an event recorded before DELIVERED is still its duplicate, not a refusal
    late = scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 60)
    assert (late.id, late.duplicate, late.status) == (first.id, True, "delivered")
    rows = stack.psql("SELECT event, branch, device FROM scan WHERE waybill_id = '%s' "
                      "ORDER BY event_time" % record)
    assert rows == ["4|a|courier_a", "6|a|courier_a", "5|a|courier_a"]


def test_retry_after_custody_ended_is_still_the_duplicate(stack):
    """The custodian's DEPARTED ends its scope; the device's retry of that very scan (its
    answer was lost) is still answered as the duplicate, while any other event of it is
    NOT_FOUND."""
    w, record = unrouted(stack)
    n = w.waybill_no
    scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    gone = scan(stack, n, "DEPARTED", PICKUP + 120, principal="courier_b")
    again = scan(stack, n, "DEPARTED", PICKUP + 120, principal="courier_b")
    assert (again.id, again.duplicate, again.status) == (gone.id, True, "departed")
    missing = missing_answer(stack)
    assert refusal(lambda: scan(stack, n, "DEPARTED", PICKUP + 180,
                                principal="courier_b")) == missing
    assert refusal(lambda: scan(stack, n, "DELIVERED", PICKUP + 120,
                                principal="courier_b")) == missing
    assert stack.psql("SELECT count(*) FROM scan WHERE waybill_id = '%s'" % record) == ["2"]



def test_a_caller_outside_the_scope_hears_only_its_own_events_status(stack):
    """RecordScan answers a caller outside the waybill's scope (its custody ended, or an arrival
    that gave it none) with the status its own event sets, never the waybill's status now: before,
    b's device re-sent its old ARRIVED or DEPARTED after the parcel had left b and heard each
    later status (out for delivery, delivered) of a waybill b may not look up, as often as it
    liked, with nothing stored and nothing throttled; and an arrival dated before the custodian's
    own told b the custodian's latest status."""
    w, record = unrouted(stack)
    n = w.waybill_no
    arrived = scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    departed = scan(stack, n, "DEPARTED", PICKUP + 120, principal="courier_b")
    scan(stack, n, "ARRIVED", PICKUP + 180)
    scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 240)
    assert not rls_sees(stack, "b", record)
    again = scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    assert (again.id, again.duplicate, again.status) == (arrived.id, True, "arrived")
    again = scan(stack, n, "DEPARTED", PICKUP + 120, principal="courier_b")
    assert (again.id, again.duplicate, again.status) == (departed.id, True, "departed")
    scan(stack, n, "DELIVERED", PICKUP + 300)
    again = scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    assert (again.id, again.duplicate, again.status) == (arrived.id, True, "arrived")
    # the origin's own device still hears the waybill's status now
    assert scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 240).status == "delivered"

    # an arrival placed before the custodian's (a later ARRIVED elsewhere keeps the custody)
    w, record = unrouted(stack)
    n = w.waybill_no
    scan(stack, n, "ARRIVED", PICKUP + 120)
    scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 180)
    r = scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    assert (r.duplicate, r.status) == (False, "arrived")
    assert not rls_sees(stack, "b", record)
    assert refusal(lambda: get(stack, n, "courier_b")) == missing_answer(stack)


# ---- custody ----

def test_custody_granted_on_arrival_gone_after_departure(stack):
    w, record = unrouted(stack)
    n = w.waybill_no
    missing = missing_answer(stack)
    assert refusal(lambda: get(stack, n, "courier_b")) == missing
    assert not rls_sees(stack, "b", record)

    r = scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    assert (r.status, r.duplicate) == ("arrived", False)
    v = get(stack, n, "courier_b")
    assert (v.id, v.status) == (record, "arrived")
    assert get(stack, n, "branch_b").id == record  # the branch's clerk too
    assert rls_sees(stack, "b", record)

    assert scan(stack, n, "DEPARTED", PICKUP + 120, principal="courier_b").status == "departed"
    assert refusal(lambda: get(stack, n, "courier_b")) == missing
    assert refusal(lambda: get(stack, n, "branch_b")) == missing_answer(stack, "branch_b")
    assert not rls_sees(stack, "b", record)
    # the origin branch keeps its scope throughout
    assert get(stack, n, "courier_a").status == "departed"


def test_custody_gone_after_delivery(stack):
    w, record = unrouted(stack)
    n = w.waybill_no
    scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 120, principal="courier_b")
    assert get(stack, n, "courier_b").status == "out_for_delivery"
    r = scan(stack, n, "DELIVERED", PICKUP + 180, principal="courier_b")
    assert r.status == "delivered"
    assert refusal(lambda: get(stack, n, "courier_b")) == missing_answer(stack)
    assert not rls_sees(stack, "b", record)


def test_arrival_elsewhere_moves_custody(stack):
    """One custodian at a time: when a's device scans it back in, b's custody ends."""
    w, record = unrouted(stack)
    n = w.waybill_no
    scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    assert rls_sees(stack, "b", record)
    scan(stack, n, "ARRIVED", PICKUP + 120, principal="courier_a")
    assert refusal(lambda: get(stack, n, "courier_b")) == missing_answer(stack)
    assert not rls_sees(stack, "b", record)


def test_arrival_dated_ahead_neither_keeps_custody_nor_blocks_delivery(stack):
    """A device may date an event up to 300 s ahead (a fast clock), but the event takes its
    place when it arrives (sql/023_scan_order.sql): b's ARRIVED dated 250 s ahead does not stay
    the latest event while a's own scans, dated now, arrive after it. Before, b kept the custody
    for those minutes and a's DELIVERED was refused as dated before the latest event."""
    w, record = unrouted(stack)
    n = w.waybill_no
    ahead = int(time.time()) + 250
    assert scan(stack, n, "ARRIVED", ahead, principal="courier_b").status == "arrived"
    assert rls_sees(stack, "b", record)
    assert scan(stack, n, "ARRIVED").status == "arrived"  # a's arrival, dated now
    assert refusal(lambda: get(stack, n, "courier_b")) == missing_answer(stack)
    assert not rls_sees(stack, "b", record)
    r = scan(stack, n, "DELIVERED")
    assert (r.status, r.duplicate) == ("delivered", False)
    assert get(stack, n, "courier_a").status == "delivered"
    # what the devices said is kept: b's time as given, the idempotency key with it
    again = scan(stack, n, "ARRIVED", ahead, principal="courier_b")
    assert again.duplicate and again.status == "arrived"  # b's own event: b is outside the scope
    rows = stack.psql("SELECT branch || ':' || (extract(epoch FROM event_time)::bigint = %d)::text "
                      "FROM scan WHERE waybill_id = '%s' ORDER BY seq" % (ahead, record))
    assert rows == ["b:true", "a:false", "a:false"]



def test_custody_out_of_order_and_in_turn_agree_in_the_database(stack):
    """Custody follows the events' times, not the order they were recorded, and passes from
    branch to branch; the database's row-level security and the facts the gateway reads
    (waybill_scan_facts) name the same custodian at each step. Branches c and d exist only in
    the database: their scans are written as the owner, as a late device queue would send them."""
    w, record = unrouted(stack)

    def put(branch, event, offset):
        put_scan(stack, record, branch, event, offset)

    def custodian():
        facts = stack.psql("SELECT coalesce((waybill_scan_facts('%s')).custodian, '-')" % record)
        seen = [b for b in ("c", "d") if rls_sees(stack, b, record)]
        assert seen == ([] if facts == ["-"] else facts)
        return facts[0]

    ARRIVED, DEPARTED, DELIVERED = 2, 3, 5
    put("c", ARRIVED, 60)
    assert custodian() == "c"
    put("c", DEPARTED, 120)
    assert custodian() == "-"
    put("c", ARRIVED, 90)  # an older arrival recorded after the departure
    assert custodian() == "-"
    put("d", ARRIVED, 180)
    assert custodian() == "d"
    put("c", ARRIVED, 150)  # c's late arrival is before d's: d keeps it
    assert custodian() == "d"
    put("c", ARRIVED, 240)
    assert custodian() == "c"
    put("d", DEPARTED, 300)  # d's departure does not end c's custody
    assert custodian() == "c"
    put("c", DELIVERED, 360)
    assert custodian() == "-"
    put("d", ARRIVED, 330)  # an arrival dated before the delivery, recorded after it
    assert custodian() == "-"


# ---- Reveal of the recipient's phone ----

def test_destination_courier_reveals_the_recipient_phone(stack):
    w = new_waybill(stack, "a", dest="320102")  # b delivers it (routing table)
    submit(stack, w)
    r = reveal(stack, "courier_b", w.waybill_no, "recipient.phone")
    assert r.value == w.recipient.phone and r.audit_seq > 0


def test_custody_courier_reveals_only_when_out_for_delivery(stack):
    w, _ = unrouted(stack)
    n = w.waybill_no
    scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    code, msg = refusal(lambda: reveal(stack, "courier_b", n, "recipient.phone"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert msg.startswith("field: the caller's role may not reveal this field of this waybill")
    scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 120, principal="courier_b")
    assert reveal(stack, "courier_b", n, "recipient.phone").value == w.recipient.phone
    scan(stack, n, "DELIVERED", PICKUP + 180, principal="courier_b")
    assert refusal(lambda: reveal(stack, "courier_b", n, "recipient.phone")) == \
        missing_answer(stack)


def test_custody_alone_reveals_only_the_recipients_phone_while_delivering(stack):
    """A branch that holds a waybill only in custody (it neither accepted nor delivers it) sees it
    (Get), but its clerk reveals nothing of it until it is out for delivery from there, and then
    only the recipient's phone (the call at the door), whatever else the clerk's role may reveal
    of its own branch's waybills; the origin's clerk keeps its reveals."""
    w, _ = unrouted(stack)
    n = w.waybill_no
    scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    assert get(stack, n, "branch_b").waybill.waybill_no.upper() == n.upper()
    denied = (grpc.StatusCode.PERMISSION_DENIED,
              "field: the caller's role may not reveal this field of this waybill (least "
              "privilege, Art. 34)")
    for field in ("sender.name", "sender.phone", "recipient.name", "recipient.address_detail",
                  "recipient.phone"):
        assert refusal(lambda: reveal(stack, "branch_b", n, field)) == denied, field
    scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 120, principal="courier_b")
    assert reveal(stack, "branch_b", n, "recipient.phone").value == w.recipient.phone
    for field in ("sender.name", "sender.phone", "recipient.name", "recipient.address_detail"):
        assert refusal(lambda: reveal(stack, "branch_b", n, field)) == denied, field
    assert reveal(stack, "branch_a", n, "sender.name").value == w.sender.name
    # delivered: b's custody ends (the stack is shared: test_scope counts what b sees)
    scan(stack, n, "DELIVERED", PICKUP + 180, principal="courier_b")
    assert refusal(lambda: get(stack, n, "courier_b")) == missing_answer(stack)


def test_a_back_dated_arrival_elsewhere_reveals_nothing(stack):
    """b's courier scanned its waybill in and took it out for delivery; a courier of branch a,
    outside its scope, sends an ARRIVED dated between the two, as a late upload would be. Stored
    (nothing lost), and a's arrival is later than b's, but the parcel out for delivery from b is
    not at a: a's custody ends at b's OUT_FOR_DELIVERY (sql/042). Before, a became the custodian
    while the latest event stayed b's OUT_FOR_DELIVERY, and a's courier revealed the recipient's
    phone of a waybill it delivers nothing of. The status stays b's event; the database agrees."""
    w = new_waybill(stack, "b", dest="330106")  # branch b's, no route: b and custody only
    record = submit(stack, w, "courier_b")
    n = w.waybill_no
    scan(stack, n, "ARRIVED", PICKUP + 60, principal="courier_b")
    scan(stack, n, "OUT_FOR_DELIVERY", PICKUP + 180, principal="courier_b")
    assert refusal(lambda: get(stack, n, "courier_a")) == missing_answer(stack, "courier_a")
    r = scan(stack, n, "ARRIVED", PICKUP + 120, principal="courier_a")
    assert (r.status, r.duplicate) == ("arrived", False)  # its own event's: it has no custody
    assert stack.psql("SELECT count(*) FROM scan WHERE waybill_id = '%s' AND branch = 'a'"
                      % record) == ["1"]
    assert refusal(lambda: reveal(stack, "courier_a", n, "recipient.phone")) == \
        missing_answer(stack, "courier_a")
    assert refusal(lambda: get(stack, n, "courier_a")) == missing_answer(stack, "courier_a")
    assert not rls_sees(stack, "a", record)
    assert stack.psql("SELECT coalesce((waybill_scan_facts('%s')).custodian, '-')" % record) == \
        ["-"]
    # b, the origin here, keeps its scope and its view of the status
    assert get(stack, n, "courier_b").status == "out_for_delivery"


def test_custody_ends_at_delivery_from_another_branch(stack):
    """Custody out of order, in the database: an OUT_FOR_DELIVERY or DELIVERY_FAILED at another
    branch after the latest arrival ends that arrival's custody; one at the custodian's own branch
    keeps it (so that custody with a latest event out for delivery is always the custodian's own
    event); a DEPARTED elsewhere still does not end it."""
    w, record = unrouted(stack)

    def put(branch, event, offset):
        put_scan(stack, record, branch, event, offset)

    def custodian():
        return stack.psql("SELECT coalesce((waybill_scan_facts('%s')).custodian, '-')"
                          % record)[0]

    ARRIVED, DEPARTED, OUT, FAILED = 2, 3, 4, 6
    put("c", ARRIVED, 60)
    put("c", OUT, 120)
    assert custodian() == "c"
    put("c", FAILED, 180)
    assert custodian() == "c"
    put("d", DEPARTED, 200)
    assert custodian() == "c"
    put("d", ARRIVED, 30)  # late: before c's arrival, so c keeps custody
    assert custodian() == "c"
    put("e", ARRIVED, 150)  # late, between c's out for delivery and its failed delivery
    assert custodian() == "-"
    put("c", ARRIVED, 240)
    assert custodian() == "c"
    put("e", OUT, 300)
    assert custodian() == "-"


# ---- status ----

def test_status_is_the_latest_event_by_time(stack):
    w, _ = unrouted(stack)
    n = w.waybill_no
    assert get(stack, n, "courier_a").status == "accepted"
    scan(stack, n, "ARRIVED", PICKUP + 300)
    # an earlier event recorded late does not change the status
    r = scan(stack, n, "DEPARTED", PICKUP + 60)
    assert r.status == "arrived"
    assert get(stack, n, "branch_a").status == "arrived"
    found = search(stack, "branch_a", waybill_no=n)
    assert [v.status for v in found] == ["arrived"]
