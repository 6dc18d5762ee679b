"""Forwarding to the carrier backend (issue 9): the transactional outbox and its forwarder.

Every waybill the gateway accepts and every scan it records reaches CarrierBackend.Deliver (the
dev stack's deploy/backend-sink, which appends one JSON line per delivery it answers to
WAYGATE_SINK_LOG) at least once, in order per waybill, as the backend policy's view: nothing is
lost when (1) the backend is down for a while as waybills keep coming, (2) the gateway is killed
(SIGKILL) mid-forwarding and started again, (3) PostgreSQL restarts mid-forwarding, (4) two
gateways share one database. Each scenario prints its counts (submitted, received, duplicates:
at-least-once means a delivery may arrive twice, with the same delivery_id). A delivery the
backend refuses for good is parked with an incident while the others flow on, and comes back with
`waygatectl outbox retry`. No clear value the backend view does not grant reaches the sink.

Waits poll with a bound (never a sleep for an outcome); the sink's control command returns once
the sink applied it. Bounds have margin: a lease (30 s) plus the dev stack's backoff cap (2 s)."""

import base64
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, wait_for
from test_intake import ITEMS, party, segment
import waygate_proto

SUBMIT = "/waygate.v1.WaybillIntake/Submit"
RECORD_SCAN = "/waygate.v1.WaybillIntake/RecordScan"
GET = "/waygate.v1.WaybillQuery/Get"

FWD_OFFSET = 61_000_000  # test_intake: 31e6, test_tamper: 47e6, query_data: 53e6
PARTY_BASE = 900_000
# five days back: this module submits thousands of waybills, kept off the pickup day that
# test_query.py searches by (its threshold counts every record of that day)
PICKUP = int(time.time()) // 60 * 60 - 5 * 86400
# the longest a delivery may take once the backend answers: a lease that ran out (30 s) plus
# the backoff cap (2 s) and the poll, with a wide margin for a loaded 2-core machine
DELIVERED_BOUND = 150
DOWN_SECONDS = float(os.environ.get("WAYGATE_FWD_DOWN_SECONDS", "60"))

_n = [0]


# ---- the sink ----

def sink(stack, *words):
    """Tells the sink what to be (up, down, slow MS, refuse [MARKER], invalid MARKER); returns
    once it applied the command."""
    cmd = shlex.split(stack.env["WAYGATE_SINK"]) + ["ctl", stack.env["WAYGATE_SINK_CONTROL"]]
    r = subprocess.run(cmd + [str(w) for w in words], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "backend-sink ctl %s: %s%s" % (words, r.stdout, r.stderr)


def sink_lines(stack):
    with open(stack.env["WAYGATE_SINK_LOG"], encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def kind_of(rec):
    k = rec.get("kind")
    return {1: "DELIVERY_KIND_WAYBILL_ACCEPTED", 2: "DELIVERY_KIND_SCAN_EVENT"}.get(k, k)


def received(stack, record_ids):
    """{record_id: [accepted lines, in the order received]} for these records."""
    want = set(record_ids)
    out = {r: [] for r in want}
    for rec in sink_lines(stack):
        if rec.get("record_id") in want and rec.get("outcome") == "ACCEPTED":
            out[rec["record_id"]].append(rec)
    return out


def all_received(stack, expected):
    """expected: {record_id: deliveries expected (1 + its scans)}. True when each has as many
    distinct delivery ids accepted, and the outbox holds none of them any more."""
    got = received(stack, expected)
    if any(len({r["delivery_id"] for r in got[k]}) < n for k, n in expected.items()):
        return False
    return outbox_rows(stack, expected) == 0


def outbox_rows(stack, record_ids):
    """Outbox rows of these waybills (in chunks: one psql argument must stay under 128 KiB)."""
    ids, n = sorted(record_ids), 0
    for i in range(0, len(ids), 1000):
        chunk = ",".join("'%s'" % r for r in ids[i:i + 1000])
        n += int(stack.psql("SELECT count(*) FROM outbox WHERE waybill_id IN (%s)" % chunk)[0])
    return n


def report(name, expected, got):
    """Prints the scenario's counts and returns (deliveries expected, received, duplicates)."""
    want = sum(expected.values())
    lines = sum(len(v) for v in got.values())
    distinct = sum(len({r["delivery_id"] for r in v}) for v in got.values())
    dup = lines - distinct
    print("\n%s: %d deliveries expected, %d received (%d distinct), %d duplicate(s)"
          % (name, want, lines, distinct, dup))
    return want, distinct, dup


# ---- waybills and scans ----

def number(stack, n, branch="a"):
    prefix, lo, hi = segment(stack, branch)
    assert lo + FWD_OFFSET + n <= hi
    return "%s%d" % (prefix, lo + FWD_OFFSET + n)


def new_waybill(stack, level=0):
    pb = stack.pb
    _n[0] += 1
    n = _n[0]
    w = pb.common.Waybill(waybill_no=number(stack, n),
                          item_description="%s（货号%d）" % (ITEMS[n % len(ITEMS)], 8000 + n),
                          pickup_time=PICKUP, dest_region_code="330106", weight_grams=700 + n,
                          service_type="standard", security_level=level)
    # 50 senders in turn: thousands of distinct senders would repeat the ID numbers (their
    # generator has a period) of other modules' fixed senders, which test_query searches by
    w.sender.CopyFrom(party(pb, PARTY_BASE + 2 * (n % 50), sender=True))
    w.recipient.CopyFrom(party(pb, PARTY_BASE + 2 * n + 1, sender=False))
    return w


def channel(stack, addr=None, principal="courier_a"):
    return stack.shared_channel(principal, addr)


def restart_gateway(stack):
    """The killed gateway started again (Stack.restart_gateway)."""
    stack.restart_gateway()


def submit(stack, w, addr=None):
    r = waygate_proto.unary(channel(stack, addr), SUBMIT, stack.pb.intake.SubmitRequest(waybill=w),
                            stack.pb.intake.SubmitResponse, timeout=20)
    assert not r.duplicate
    return r.id


def scan(stack, w, event, at, addr=None):
    req = stack.pb.intake.RecordScanRequest(waybill_no=w.waybill_no,
                                            event=getattr(stack.pb.intake, "SCAN_EVENT_" + event),
                                            event_time=at)
    return waygate_proto.unary(channel(stack, addr), RECORD_SCAN, req,
                               stack.pb.intake.RecordScanResponse, timeout=20)


def submit_many(stack, count, addr=None, scans=False):
    """Submits count waybills (each with a PICKED_UP scan when scans); returns {record id:
    deliveries expected}."""
    out = {}
    for _ in range(count):
        w = new_waybill(stack)
        rid = submit(stack, w, addr)
        out[rid] = 1
        if scans:
            scan(stack, w, "PICKED_UP", PICKUP + 60, addr)
            out[rid] = 2
    return out


def wait_delivered(stack, expected):
    ok = wait_for(lambda: all_received(stack, expected), DELIVERED_BOUND, interval=0.5)
    got = received(stack, expected)
    missing = [k for k, n in expected.items() if len({r["delivery_id"] for r in got[k]}) < n]
    assert ok, "%d of %d waybills not (fully) delivered within %d s (outbox rows left: %d)" % (
        len(missing), len(expected), DELIVERED_BOUND, outbox_rows(stack, expected))
    return got


@pytest.fixture(autouse=True)
def sink_up_after(stack):
    sink(stack, "up")
    yield
    sink(stack, "up")


# ---- the four nothing-lost scenarios ----

def test_backend_down_while_submitting_nothing_lost(stack):
    """(1) The backend refuses connections for DOWN_SECONDS while waybills and scans keep being
    accepted: they wait in the outbox (none lost, none delivered), and all arrive once it is
    back."""
    sink(stack, "down")
    expected = {}
    end = time.monotonic() + DOWN_SECONDS
    while time.monotonic() < end or len(expected) < 20:
        expected.update(submit_many(stack, 1, scans=len(expected) % 2 == 0))
    assert received(stack, expected) == {k: [] for k in expected}
    assert outbox_rows(stack, expected) == sum(expected.values())
    # the failures were recorded as a reason without a value
    errors = stack.psql("SELECT DISTINCT last_error FROM outbox WHERE last_error IS NOT NULL "
                        "AND waybill_id IN (%s)" % ",".join("'%s'" % r for r in list(expected)[:1000]))
    assert errors and all(e in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "not sent") for e in errors), \
        errors
    sink(stack, "up")
    got = wait_delivered(stack, expected)
    want, distinct, _ = report("backend down %.0f s" % DOWN_SECONDS, expected, got)
    assert distinct == want


def test_gateway_sigkill_mid_forwarding_nothing_lost(stack):
    """(2) The gateway is killed (SIGKILL) while deliveries are in flight to a slow backend and
    started again: every delivery arrives (those of the lost leases again after the lease)."""
    # 3 s per call: the acceptances arrive in a first round, the scans (each behind its
    # waybill's acceptance) in a second one 3 s later; the kill comes as soon as the first round
    # is seen, well inside the second
    sink(stack, "slow", 3000)
    expected = submit_many(stack, 40, scans=True)
    assert wait_for(lambda: any(received(stack, expected).values()), DELIVERED_BOUND, 0.05), \
        "nothing was delivered before the kill"
    os.kill(stack.gateway_pid(), signal.SIGKILL)
    delivered_before = sum(len(v) for v in received(stack, expected).values())
    restart_gateway(stack)
    sink(stack, "up")
    got = wait_delivered(stack, expected)
    want, distinct, _ = report("gateway SIGKILL (after %d received)" % delivered_before,
                               expected, got)
    assert distinct == want
    assert delivered_before < want, "everything arrived before the kill: the test proved nothing"


def test_postgres_restart_mid_forwarding_nothing_lost(stack):
    """(3) PostgreSQL stops and starts again while deliveries are in flight: acknowledgements
    that failed end with their lease, claims resume once the pool reconnects."""
    sink(stack, "slow", 300)
    expected = submit_many(stack, 40, scans=True)
    assert wait_for(lambda: any(received(stack, expected).values()), DELIVERED_BOUND, 0.2)
    stack.devstack("pg-stop")
    stack.devstack("pg-start")
    sink(stack, "up")
    got = wait_delivered(stack, expected)
    want, distinct, _ = report("PostgreSQL restart", expected, got)
    assert distinct == want
    assert stack.health() == "SERVING"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_two_gateways_one_database_nothing_lost(stack):
    """(4) A second gateway on the same database forwards from the same outbox: the leases share
    the work; every delivery arrives, duplicates are counted."""
    conf = os.path.join(stack.dir, "waygated2.conf")
    port = free_port()
    with open(os.path.join(stack.dir, "waygated.conf")) as f:
        text = f.read()
    # its own ports: the API listener and any other ([metrics])
    text = text.replace(stack.addr, "127.0.0.1:%d" % port)
    text = re.sub(r"(?m)^(listen\s*=\s*127\.0\.0\.1:)(?!%d$)\d+$" % port,
                  lambda m: m.group(1) + str(free_port()), text)
    with open(conf, "w") as f:
        f.write(text)
    os.chmod(conf, 0o600)
    addr2 = "127.0.0.1:%d" % port
    log2 = open(os.path.join(stack.dir, "waygated2.log"), "ab")
    gw2 = subprocess.Popen([os.path.join(BUILD, "waygated"), "-c", conf], stdin=subprocess.DEVNULL,
                           stdout=log2, stderr=log2)
    try:
        assert wait_for(lambda: stack.health(addr=addr2) == "SERVING", 60), \
            "the second gateway did not serve"
        sink(stack, "slow", 50)
        expected = {}
        for i in range(30):
            expected.update(submit_many(stack, 1, scans=True, addr=addr2 if i % 2 else None))
        sink(stack, "up")
        got = wait_delivered(stack, expected)
        want, distinct, dup = report("two gateways", expected, got)
        assert distinct == want
        # nothing failed: no lease ran out, so no delivery went twice (each gateway's fast path
        # sends under the lease its insert took, which the other's claim skips)
        assert dup == 0, "%d duplicate(s) with nothing failing" % dup
        owners = stack.psql("SELECT count(*) FROM outbox WHERE lease_owner IS NOT NULL AND "
                            "waybill_id IN (%s)" % ",".join("'%s'" % r for r in expected))
        assert owners == ["0"]
    finally:
        gw2.send_signal(signal.SIGTERM)
        try:
            gw2.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gw2.kill()
            gw2.wait()
        log2.close()
    with open(os.path.join(stack.dir, "waygated2.log"), "rb") as f:
        assert b"forwarding the outbox to" in f.read()


# ---- what the backend receives ----

def values_in(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from values_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from values_in(v)
    else:
        yield str(obj)


def test_no_clear_pii_reaches_the_backend_only_its_view(stack):
    """Distinctive names, phones, ID numbers, addresses, companies and descriptions never reach
    the sink (nor the outbox table, nor the gateway's log); the sink receives exactly the backend
    policy's view: the fields customer service sees masked the same way (one rendering), phones
    and ID numbers as tokens (the same value: the same token), no description, no ID type or
    gender."""
    w = new_waybill(stack)
    twin = new_waybill(stack)
    twin.sender.CopyFrom(w.sender)  # the same sender: the same tokens
    rid, rid2 = submit(stack, w), submit(stack, twin)
    got = wait_delivered(stack, {rid: 1, rid2: 1})
    secrets = [w.sender.name, w.sender.phone, w.sender.id_number, w.sender.address_detail,
               w.recipient.name, w.recipient.phone, w.recipient.address_detail,
               w.recipient.company, w.item_description]
    assert all(len(s) >= 3 for s in secrets), secrets
    with open(stack.env["WAYGATE_SINK_LOG"], encoding="utf-8") as f:
        raw = f.read()
    values = [v for rec in sink_lines(stack) for v in values_in(rec)]
    table = "\n".join(stack.psql("SELECT * FROM outbox"))
    log = "\n".join(stack.log_lines())
    for s in secrets:
        escaped = json.dumps(s)[1:-1]
        assert s not in raw and escaped not in raw, "clear value in the sink's file"
        assert not any(s in v for v in values), "clear value received by the sink"
        assert s not in table and s not in log
    rec = got[rid][0]
    assert kind_of(rec) == "DELIVERY_KIND_WAYBILL_ACCEPTED"
    view = stack.pb.common.WaybillView.FromString(base64.b64decode(rec["waybill_pb"]))
    twin_view = stack.pb.common.WaybillView.FromString(
        base64.b64decode(got[rid2][0]["waybill_pb"]))
    cs = stack.unary_as("cs_a", GET, stack.pb.query.GetRequest(waybill_no=w.waybill_no),
                        stack.pb.common.WaybillView)
    b, c = view.waybill, cs.waybill
    assert view.id == rid and view.status == "accepted"
    assert b.waybill_no == w.waybill_no and b.pickup_time == PICKUP
    assert b.item_description == ""  # omitted for the backend
    assert (b.origin_branch, b.dest_region_code, b.weight_grams) == (
        c.origin_branch, c.dest_region_code, c.weight_grams)
    for side in ("sender", "recipient"):
        bp, cp = getattr(b, side), getattr(c, side)
        for f in ("name", "province", "city", "district", "address_detail", "company"):
            assert getattr(bp, f) == getattr(cp, f), (side, f)  # masked or clear, as for cs
        assert bp.id_type == 0 and bp.gender == 0
    for f in ("phone",):
        for side in ("sender", "recipient"):
            tok = getattr(getattr(b, side), f)
            assert tok and tok != getattr(getattr(w, side), f)
    assert b.sender.id_number and b.sender.id_number != w.sender.id_number
    # tokens are deterministic: the twin's sender has the same tokens, its recipient others
    assert twin_view.waybill.sender.phone == b.sender.phone
    assert twin_view.waybill.sender.id_number == b.sender.id_number
    assert twin_view.waybill.recipient.phone != b.recipient.phone
    assert "item_description" in view.redacted_fields
    assert "sender.phone" in view.redacted_fields


def test_record_above_backend_level_is_delivered_without_its_waybill(stack):
    """The backend role may see security level 1 at most ([levels] backend = 1): a level-2
    waybill is delivered (the backend learns that it exists, by its id) without any field."""
    w = new_waybill(stack, level=2)
    rid = submit(stack, w)
    got = wait_delivered(stack, {rid: 1})
    rec = got[rid][0]
    assert not rec.get("waybill") and not rec.get("waybill_pb")


def test_per_waybill_order(stack):
    """A waybill's acceptance arrives before its scans, and its scans in the order recorded,
    even when they all queued up while the backend was down."""
    sink(stack, "down")
    events = ["PICKED_UP", "ARRIVED", "DEPARTED", "ARRIVED", "OUT_FOR_DELIVERY", "DELIVERED"]
    expected, scan_ids = {}, {}
    waybills = [new_waybill(stack) for _ in range(4)]
    rids = [submit(stack, w) for w in waybills]
    for i, ev in enumerate(events):  # interleaved across the waybills
        for w, rid in zip(waybills, rids):
            r = scan(stack, w, ev, PICKUP + 60 * (i + 1))
            scan_ids.setdefault(rid, []).append(r.id)
    for rid in rids:
        expected[rid] = 1 + len(events)
    sink(stack, "up")
    got = wait_delivered(stack, expected)
    for rid in rids:
        first = []
        for rec in got[rid]:
            if rec["delivery_id"] not in [r["delivery_id"] for r in first]:
                first.append(rec)
        kinds = [kind_of(r) for r in first]
        assert kinds == ["DELIVERY_KIND_WAYBILL_ACCEPTED"] + ["DELIVERY_KIND_SCAN_EVENT"] * len(
            events)
        assert [r["scan"]["id"] for r in first[1:]] == scan_ids[rid]
    report("per-waybill order", expected, got)


def parked_rows(stack, rid):
    """The rows of waybill rid parked on their own (the backend refused them)."""
    return stack.psql("SELECT id, delivery_id, park_reason FROM outbox WHERE waybill_id = '%s' "
                      "AND parked_at IS NOT NULL AND parked_behind IS NULL" % rid)


def behind_rows(stack, rid):
    """The rows of waybill rid parked behind another (sql/044), in order."""
    return stack.psql("SELECT id, delivery_id, parked_behind, park_reason FROM outbox "
                      "WHERE waybill_id = '%s' AND parked_at IS NOT NULL AND parked_behind IS NOT "
                      "NULL ORDER BY id" % rid)


def test_refused_delivery_is_parked_with_incident_the_rest_flow(stack):
    """REJECTED: the delivery is parked with the backend's reason and an incident
    'delivery_parked'; the other waybills are delivered; the refused waybill's scan waits behind
    it; `waygatectl outbox status | list-parked` show it; `retry` sends it (and then its scan)."""
    bad = new_waybill(stack)
    sink(stack, "refuse", bad.waybill_no)
    bad_id = submit(stack, bad)
    scan(stack, bad, "PICKED_UP", PICKUP + 60)
    others = submit_many(stack, 6)
    wait_delivered(stack, others)
    assert wait_for(lambda: parked_rows(stack, bad_id), DELIVERED_BOUND, 0.5)
    (row,) = parked_rows(stack, bad_id)
    oid, delivery_id, reason = row.split("|")
    # the sink's reason echoes the waybill's number: kept with its digits redacted
    assert reason == ("REJECTED: delivery: refused by the sink's control (refuse), waybill %s"
                      % re.sub(r"[0-9]+", "#", bad.waybill_no))
    # the scan behind it was never sent, and is parked behind it
    assert received(stack, [bad_id])[bad_id] == []
    assert outbox_rows(stack, [bad_id]) == 2
    assert [r.split("|")[2] for r in behind_rows(stack, bad_id)] == [oid]
    inc = wait_for(lambda: stack.psql(
        "SELECT severity, principal, detail FROM incident WHERE kind = 'delivery_parked' AND "
        "record_id = '%s'" % bad_id), 60, 0.5)
    assert inc, "no delivery_parked incident"
    severity, _principal, detail = inc[0].split("|", 2)
    assert severity == "medium" and delivery_id in detail
    for s in (bad.sender.name, bad.sender.phone, bad.recipient.address_detail, bad.waybill_no):
        assert s not in detail
    assert not [l for l in stack.log_lines() if bad.waybill_no in l]
    status = stack.ctl("outbox", "status", "--db", stack.pguri)
    assert status.returncode == 0, status.stderr
    assert "parked" in status.stdout
    listed = stack.ctl("outbox", "list-parked", "--db", stack.pguri)
    assert listed.returncode == 0 and delivery_id in listed.stdout, listed.stdout + listed.stderr
    for s in (bad.sender.name, bad.sender.phone):
        assert s not in listed.stdout
    sink(stack, "up")
    retried = stack.ctl("outbox", "retry", oid, "--db", stack.pguri)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    got = wait_delivered(stack, {bad_id: 2})
    assert [kind_of(r) for r in got[bad_id]][:2] == ["DELIVERY_KIND_WAYBILL_ACCEPTED",
                                                     "DELIVERY_KIND_SCAN_EVENT"]
    print("\nparking: 1 parked, %d others delivered meanwhile, delivered after retry" %
          len(others))


def test_deliveries_behind_a_parked_one_are_parked_behind_it(stack):
    """A waybill's acceptance refused for good: its scans, recorded before the park and after it,
    are parked behind it (sql/044: by the park, and on insert; parked_at set, park_reason 'behind parked delivery <id>'), so
    no claim walks them and the other waybills flow on; `status` counts them parked and behind,
    `list-parked` shows them; `retry` of one behind is refused naming the head; `retry` of the
    head brings the head and its followers back, and the sink receives them in order."""
    bad = new_waybill(stack)
    sink(stack, "down")  # the first scan is in the outbox before the acceptance is refused
    bad_id = submit(stack, bad)
    events = ["PICKED_UP", "ARRIVED", "DEPARTED", "ARRIVED"]
    scan_ids = [scan(stack, bad, events[0], PICKUP + 60).id]
    assert stack.psql("SELECT count(*) FROM outbox WHERE waybill_id = '%s' AND parked_at IS NULL"
                      % bad_id) == ["2"]
    sink(stack, "refuse", bad.waybill_no)
    assert wait_for(lambda: parked_rows(stack, bad_id), DELIVERED_BOUND, 0.5)
    (row,) = parked_rows(stack, bad_id)
    oid, delivery_id, reason = row.split("|")
    assert reason.startswith("REJECTED: ")
    for i, ev in enumerate(events[1:], 2):  # recorded after the park: parked on insert
        scan_ids.append(scan(stack, bad, ev, PICKUP + 60 * i).id)
    behind = behind_rows(stack, bad_id)
    assert len(behind) == len(events), behind
    for r in behind:
        _id, _did, head, why = r.split("|")
        assert head == oid and why == "behind parked delivery %s" % oid
    # nothing of the waybill is left unparked, hence in no claim's walk; the others flow on
    assert stack.psql("SELECT count(*) FROM outbox WHERE waybill_id = '%s' AND parked_at IS NULL"
                      % bad_id) == ["0"]
    others = submit_many(stack, 4, scans=True)
    wait_delivered(stack, others)
    assert received(stack, [bad_id])[bad_id] == []
    status = stack.ctl("outbox", "status", "--db", stack.pguri)
    assert status.returncode == 0, status.stderr
    fields = dict(line.split(None, 1) for line in status.stdout.splitlines() if line.strip())
    assert int(fields["parked"]) >= 1 + len(events) and int(fields["behind"]) >= len(events)
    listed = stack.ctl("outbox", "list-parked", "--limit", "100000", "--db", stack.pguri)
    assert listed.returncode == 0, listed.stderr
    for r in behind:
        line = [x for x in listed.stdout.splitlines() if r.split("|")[1] in x]
        assert len(line) == 1 and line[0].endswith("behind parked delivery %s" % oid), line
    refused = stack.ctl("outbox", "retry", behind[0].split("|")[0], "--db", stack.pguri)
    assert refused.returncode != 0
    assert "waits behind parked delivery %s" % oid in refused.stderr, refused.stderr
    assert len(behind_rows(stack, bad_id)) == len(events)
    sink(stack, "up")
    retried = stack.ctl("outbox", "retry", oid, "--db", stack.pguri)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "then the %d" % len(events) in retried.stdout, retried.stdout
    got = wait_delivered(stack, {bad_id: 1 + len(events)})
    first = []
    for rec in got[bad_id]:
        if rec["delivery_id"] not in [r["delivery_id"] for r in first]:
            first.append(rec)
    assert [kind_of(r) for r in first] == (["DELIVERY_KIND_WAYBILL_ACCEPTED"] +
                                           ["DELIVERY_KIND_SCAN_EVENT"] * len(events))
    assert first[0]["delivery_id"] == delivery_id
    assert [r["scan"]["id"] for r in first[1:]] == scan_ids
    print("\nparked behind: %d scans parked behind their refused acceptance, %d others "
          "delivered meanwhile, all delivered in order after one retry" % (len(events),
                                                                           len(others)))


def test_whole_call_invalid_argument_parks_only_the_refused_one(stack):
    """A whole-call INVALID_ARGUMENT makes the forwarder send the batch one by one: only the
    delivery that causes it is parked, the ones batched with it are delivered."""
    sink(stack, "down")
    bad = new_waybill(stack)
    bad_id = submit(stack, bad)
    others = submit_many(stack, 5)
    sink(stack, "invalid", bad.waybill_no)
    wait_delivered(stack, others)
    assert wait_for(lambda: parked_rows(stack, bad_id), DELIVERED_BOUND, 0.5)
    (row,) = parked_rows(stack, bad_id)
    # the sink's message echoes the waybill's number: kept with its digits redacted
    assert row.split("|")[2] == ("INVALID_ARGUMENT: deliveries: a delivery the sink is told to "
                                 "refuse (marker), waybill %s" % re.sub(r"[0-9]+", "#",
                                                                         bad.waybill_no))
    assert not [l for l in stack.log_lines() if bad.waybill_no in l]
    assert received(stack, [bad_id])[bad_id] == []
