"""The forwarder's fast path (issue 9): a waybill this gateway accepted is sent from memory at
once, under the lease its own insert took (sql/018_outbox_fast.sql), without a claim.

Shown here: (1) the fast path carries a waybill accepted while the backend is up, and no claim is
needed for it (the forwarder's counters); (2) what it sends is byte for byte what the claim path
sends for the same record (the same outbox row enqueued again and claimed); (3) a gateway killed
(SIGKILL) with fast deliveries queued in memory loses none: their leases run out and a claim
sends them; (4) the queue's bound ([forward] fast_max): more waybills than it holds while the
backend is slow, none lost, the rest by claim; and [forward] fast = false turns the path off;
(5) queued fast deliveries never starve what only a claim sends (a scan event); (6) a call's
slot is free at the backend's answer, not at its delete: while the outbox's deletes are held in
PostgreSQL the calls go on, up to the bound ([forward] fast_max) of accepted deliveries whose
delete is pending, and what accumulated meanwhile leaves in one delete; (7) a delete lost with
its database connection is sent again, not left to the leases; (8) a batch that is not full
lingers ([forward] linger_ms) until it fills or the linger ends, and a stop sends it at once;
(9) a linger near its bound never has the delivery dropped to its lease; (10) a claim that held
the only call slot hands it to the queue when it ends.

Waits poll with a bound (never a sleep for an outcome); bounds are wide (a lease of 30 s, a
loaded 2-core machine)."""

import contextlib
import http.client
import os
import re
import signal
import socket
import time

from conftest import ExtraGateway, lock_holder, release_holder, wait_for
from test_faults import superuser_uri
from test_forward import (DELIVERED_BOUND, PICKUP, channel, kind_of, new_waybill, outbox_rows,
                          received,
                          report, restart_gateway, scan, sink, sink_lines, submit, submit_many,
                          wait_delivered)
import waygate_proto

SUBMIT_BATCH = "/waygate.v1.WaybillIntake/SubmitBatch"
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (-?[0-9.e+]+)$')


def metrics(addr):
    """{name: value} of the unlabelled samples of GET /metrics at addr."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200
        text = r.read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m and not m.group(2):
            out[m.group(1)] = float(m.group(3))
    return out


def fwd(addr):
    m = metrics(addr)
    return {k: m.get("waygate_forward_%s" % k, 0.0) for k in
            ("claimed_total", "fast_sent_total", "fast_delivered_total", "fast_dropped_total",
             "fast_queued", "delivered_total", "sent_total", "ack_pending", "calls_inflight")}


def outbox_empty(stack):
    """No delivery left that a claim could take, now or later (a parked one, and its waybill's
    later ones waiting behind it, left by other tests, do not count)."""
    return stack.psql("SELECT count(*) FROM outbox o WHERE parked_at IS NULL AND NOT EXISTS "
                      "(SELECT 1 FROM outbox p WHERE p.waybill_id = o.waybill_id "
                      "AND p.parked_at IS NOT NULL)") == ["0"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extra_gateway(stack, name, forward_lines, more=""):
    """Another gateway on the stack's database with these [forward] lines (and the text `more`)
    added and its own [metrics] listener; returns (gateway, metrics address)."""
    maddr = "127.0.0.1:%d" % free_port()
    gw = ExtraGateway(stack, name, lambda t: t + "\n[forward]\n%s\n[metrics]\nlisten = %s\n%s"
                      % ("\n".join(forward_lines), maddr, more))
    return gw, maddr


def test_fast_path_sends_without_claim(stack):
    """(1) With the backend up, every waybill accepted goes by the fast path: its counter moves
    by the number submitted, and the forwarder claims nothing for them."""
    sink(stack, "up")
    assert wait_for(lambda: outbox_empty(stack), DELIVERED_BOUND), "the outbox did not empty"
    maddr = stack.env["WAYGATE_METRICS_ADDR"]
    before = fwd(maddr)
    expected = submit_many(stack, 30)
    got = wait_delivered(stack, expected)
    want, distinct, dup = report("fast path", expected, got)
    after = fwd(maddr)
    fast = after["fast_delivered_total"] - before["fast_delivered_total"]
    claimed = after["claimed_total"] - before["claimed_total"]
    print("fast path: %d delivered fast, %d claimed" % (fast, claimed))
    assert distinct == want and dup == 0
    assert fast == want, "only %d of %d went by the fast path" % (fast, want)
    assert claimed == 0, "%d deliveries were claimed: the fast path did not carry them" % claimed


def test_fast_delivery_is_byte_identical_to_the_claimed_one(stack):
    """(2) The same record through both paths: its acceptance sent fast, then the same outbox
    row enqueued again (as the owner) and sent by a claim. Everything but the delivery's own id
    and enqueueing time is identical, the view's deterministic encoding byte for byte."""
    sink(stack, "up")
    assert wait_for(lambda: outbox_empty(stack), DELIVERED_BOUND), "the outbox did not empty"
    maddr = stack.env["WAYGATE_METRICS_ADDR"]
    before = fwd(maddr)
    expected = submit_many(stack, 3)
    wait_delivered(stack, expected)
    mid = fwd(maddr)
    assert mid["fast_delivered_total"] - before["fast_delivered_total"] == 3
    assert mid["claimed_total"] == before["claimed_total"]
    stack.psql("INSERT INTO outbox (kind, waybill_id) SELECT 1, w FROM unnest(ARRAY[%s]::uuid[]) w"
               % ",".join("'%s'" % r for r in expected))
    again = {r: 2 for r in expected}
    got = wait_delivered(stack, again)
    after = fwd(maddr)
    assert after["claimed_total"] - mid["claimed_total"] >= 3, "the copies were not claimed"
    for rid, lines in got.items():
        fast, claimed = lines[0], lines[-1]
        assert fast["delivery_id"] != claimed["delivery_id"]
        assert fast["waybill_pb"], "no view in the delivery"
        assert fast["waybill_pb"] == claimed["waybill_pb"], "the two views differ for %s" % rid
        for k in ("kind", "record_id", "waybill", "scan"):
            assert fast[k] == claimed[k], "%s differs for %s" % (k, rid)
    print("byte-identical: %d records, fast and claimed views equal" % len(got))


def test_sigkill_with_fast_deliveries_queued_nothing_lost(stack):
    """(3) The backend slow, waybills accepted faster than the calls end: fast deliveries wait
    in memory. SIGKILL then: after the restart every one arrives (their leases run out and a
    claim sends them)."""
    maddr = stack.env["WAYGATE_METRICS_ADDR"]
    sink(stack, "slow", 3000)
    expected = submit_many(stack, 150)
    queued = wait_for(lambda: fwd(maddr)["fast_queued"] or None, 60, 0.05)
    assert queued, "no fast delivery waited in memory: the test proves nothing"
    os.kill(stack.gateway_pid(), signal.SIGKILL)
    before_kill = sum(len(v) for v in received(stack, expected).values())
    restart_gateway(stack)
    sink(stack, "up")
    got = wait_delivered(stack, expected)
    want, distinct, _ = report("SIGKILL with %d fast deliveries queued (after %d received)"
                               % (queued, before_kill), expected, got)
    assert distinct == want
    assert before_kill < want


def test_a_stop_while_the_backend_fails_ends_and_loses_nothing(stack):
    """(3b) The backend answers nothing (slower than the call's deadline), so the forwarder marks
    it failing with fast deliveries still queued in memory. SIGTERM then ends the gateway: the
    queued deliveries are dropped to their leases (a claim sends them), where the drain used to
    wait forever for a queue that only a successful call would empty (review). After the backend
    is back every one arrives."""
    sink(stack, "slow", 60000)
    gw, maddr = extra_gateway(stack, "stopfailing", ["deadline_ms = 1000", "batch = 8",
                                                      "inflight = 1", "lease_ms = 5000"])
    try:
        expected = submit_many(stack, 40, addr=gw.addr)
        state = wait_for(lambda: (lambda m: m if m.get("waygate_forward_paused") == 1 and
                                  m.get("waygate_forward_fast_queued", 0) > 0 else None)(
                                      metrics(maddr)), 60, 0.05)
        assert state, "the backend was not marked failing with deliveries queued"
        gw.proc.send_signal(signal.SIGTERM)
        ended = wait_for(lambda: gw.proc.poll() is not None, 60, 0.1)
        print("\nstop while failing: %d queued, %d in flight; ended: %s"
              % (state["waygate_forward_fast_queued"], state["waygate_forward_calls_inflight"],
                 ended))
        assert ended, "the gateway did not end after SIGTERM"
        assert gw.proc.returncode == 0
        # ended by dropping the queue at once (the drain's bound, a deadline later, may still
        # cut a call that began just before the signal: that is not what this test is about)
        assert "stopping while the backend fails: " in gw.log(), gw.log()[-2000:]
    finally:
        gw.close()
        sink(stack, "up")
    got = wait_delivered(stack, expected)
    want, distinct, _ = report("stop while the backend fails", expected, got)
    assert distinct == want


def submit_batch(stack, n, addr):
    """One SubmitBatch of n new waybills (one group insert of n); {record id: 1}."""
    ws = [new_waybill(stack) for _ in range(n)]
    r = waygate_proto.unary(channel(stack, addr), SUBMIT_BATCH,
                            stack.pb.intake.SubmitBatchRequest(waybills=ws),
                            stack.pb.intake.SubmitBatchResponse, timeout=60)
    assert [x.code for x in r.results] == [0] * n
    return {x.id: 1 for x in r.results}


def test_fast_queue_bound_and_switch(stack):
    """(4) A gateway with fast_max = 8, the backend slow: a group of 20 waybills (one
    SubmitBatch) is more than the queue may hold, so none of it goes fast (all or nothing): the
    claim sends it; single submits beyond the bound wait for room or go by claim; none is lost
    and the queue never holds more than 8. A gateway with fast = false sends none fast."""
    sink(stack, "slow", 1000)
    gw, maddr = extra_gateway(stack, "fastmax", ["fast_max = 8"])
    try:
        before = fwd(maddr)
        expected = submit_batch(stack, 20, gw.addr)
        big = fwd(maddr)
        seen = []
        for _ in range(4):
            expected.update(submit_many(stack, 10, addr=gw.addr))
            seen.append(fwd(maddr)["fast_queued"])
        sink(stack, "up")
        got = wait_delivered(stack, expected)
        want, distinct, _ = report("fast_max 8", expected, got)
        m = fwd(maddr)
        print("fast_max 8: %d of %d fast, queue samples %s"
              % (m["fast_sent_total"] - before["fast_sent_total"], want, seen))
        assert distinct == want
        assert big["fast_sent_total"] == before["fast_sent_total"], \
            "a group larger than fast_max went fast"
        assert max(seen) <= 8
    finally:
        gw.close()
    gw, maddr = extra_gateway(stack, "fastoff", ["fast = false"])
    try:
        expected = submit_many(stack, 10, addr=gw.addr)
        wait_delivered(stack, expected)
        assert fwd(maddr)["fast_sent_total"] == 0
        assert "fast path off" in gw.log()
    finally:
        gw.close()


def test_fast_queue_never_starves_the_claim(stack):
    """(5) One Deliver call in flight at a time ([forward] inflight = 1, batch = 1), the backend
    slow (1 s a call), ten fast deliveries queued in memory, the stack's own gateway stopped
    (SIGSTOP: it would claim the scan itself): a scan event recorded meanwhile
    (kind 2, which only a claim sends) reaches the backend before the queue has drained, because
    a due claim takes the free slot before the queue does. (Before that rule, the claim ran only
    once the queue was empty: under sustained intake, never.)"""
    sink(stack, "up")
    gw, maddr = extra_gateway(stack, "starve", ["inflight = 1", "batch = 1"])
    main_gw = stack.gateway_pid()
    stopped = False
    try:
        w = new_waybill(stack)
        rid = submit(stack, w, gw.addr)
        wait_delivered(stack, {rid: 1})  # its acceptance gone: its scan may be claimed
        # the stack's own gateway claims too: stopped, so that only this gateway can send the scan
        os.kill(main_gw, signal.SIGSTOP)
        stopped = True
        sink(stack, "slow", 1000)
        queue = submit_batch(stack, 10, gw.addr)  # one group: ten fast deliveries
        scan(stack, w, "PICKED_UP", PICKUP + 60, gw.addr)
        left = fwd(maddr)["fast_queued"]
        assert left >= 3, "only %d fast deliveries still queued: the test proves nothing" % left
        expected = dict(queue)
        expected[rid] = 2
        wait_delivered(stack, expected)
        order = [(r["record_id"], kind_of(r)) for r in sink_lines(stack)
                 if r.get("outcome") == "ACCEPTED" and r.get("record_id") in expected]
        at_scan = order.index((rid, "DELIVERY_KIND_SCAN_EVENT"))
        last_fast = max(i for i, (r, _) in enumerate(order) if r in queue)
        print("claim beside the fast queue: the scan arrived %d deliveries before the queue's "
              "last (%d queued when it was recorded)" % (last_fast - at_scan, left))
        assert at_scan < last_fast, "the scan waited until the fast queue had drained"
    finally:
        if stopped:
            os.kill(main_gw, signal.SIGCONT)
        sink(stack, "up")
        gw.close()


def test_a_batch_that_is_not_full_lingers_then_goes_whole(stack):
    """(8) [forward] linger_ms: the fast path holds a batch that is not full for more. A gateway
    with batch = 4 and a linger of 300 s: a SubmitBatch of 3 leaves them queued, none sent (read
    from the metrics after the answer: the handover and the send happen before it); the 4th fills
    the batch and the four leave at once, in one Deliver call (one receive stamp at the sink).
    Two more are queued, and a stop (SIGTERM) sends them at once rather than waiting out the
    linger: their leases (an hour) keep any claim from sending them. Then a gateway with a linger
    of 100 ms that polls the outbox every ten minutes (nothing else would wake its forwarder: a
    row the fast path leased sends no notification) delivers a lone waybill by the fast path:
    the linger ends by itself (red with its timer never armed)."""
    sink(stack, "up")
    assert wait_for(lambda: outbox_empty(stack), DELIVERED_BOUND), "the outbox did not empty"
    gw, maddr = extra_gateway(stack, "lingers", ["batch = 4", "linger_ms = 300000",
                                                  "lease_ms = 3600000"])
    stopping, every = {}, {}
    try:
        before = fwd(maddr)
        three = submit_batch(stack, 3, gw.addr)
        every.update(three)
        held = fwd(maddr)
        assert held["fast_queued"] == 3 and held["fast_sent_total"] == before["fast_sent_total"], \
            "a batch of 3 of 4 did not linger: %r" % held
        fourth = submit_batch(stack, 1, gw.addr)
        every.update(fourth)
        full = fwd(maddr)
        assert full["fast_sent_total"] - before["fast_sent_total"] == 4 and \
            full["fast_queued"] == 0, "the full batch did not leave at once: %r" % full
        batch = dict(three, **fourth)
        got = wait_delivered(stack, batch)
        stamps = {r["received_at_us"] for v in got.values() for r in v}
        assert len(stamps) == 1, "the four came in %d calls" % len(stamps)
        stopping = submit_batch(stack, 2, gw.addr)
        every.update(stopping)
        assert fwd(maddr)["fast_queued"] == 2
        gw.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: gw.proc.poll() is not None, 60, 0.1), "the gateway did not stop"
        assert gw.proc.returncode == 0
        got = received(stack, stopping)
        want, distinct, dup = report("linger: 3 held, 4 in one call, 2 sent by the stop",
                                     stopping, got)
        assert distinct == want, "the stop left %d lingering deliveries unsent" % (want - distinct)
    finally:
        gw.close()
        if every:  # whatever is left (a failed assertion) goes to a claim now, not in an hour
            stack.psql("UPDATE outbox SET lease_until = now() WHERE waybill_id = ANY "
                       "(ARRAY[%s]::uuid[])" % ",".join("'%s'" % r for r in every))
    fast, _, claimed = lone_fast_delivery(stack, "lingerends", ["linger_ms = 100"])
    assert (fast, claimed) == (1, 0)


def lone_fast_delivery(stack, name, forward_lines):
    """A gateway with these [forward] lines and a poll ten minutes away (nothing but its own
    events wakes its forwarder: a row the fast path leased sends no notification) submits one
    waybill; (fast deliveries, dropped to their leases, claimed) by it meanwhile."""
    sink(stack, "up")
    gw, maddr = extra_gateway(stack, name, forward_lines + ["poll_ms = 600000"])
    try:
        before = fwd(maddr)
        lone = submit_many(stack, 1, addr=gw.addr)
        wait_delivered(stack, lone)  # by this gateway, or after its lease by a claim
        after = fwd(maddr)
    finally:
        gw.close()
    return tuple(after[k] - before[k] for k in
                 ("fast_delivered_total", "fast_dropped_total", "claimed_total"))


def test_a_linger_near_its_bound_never_has_the_delivery_dropped(stack):
    """(9) The linger counts from the handover; a queued delivery is dropped to its lease past
    the fast wait counted from its insert's sending (lease_ms 9000, deadline_ms 5000: 3 s). A
    linger of 2 999 ms (accepted: below 3 s) is cut at half the fast wait from the sending, so
    the lone delivery leaves in time, by the fast path, none dropped. Red with the linger
    counted from the handover alone: the commit's milliseconds put it past the 3 s and it was
    dropped, to reach the backend through a claim after its lease."""
    fast, dropped, claimed = lone_fast_delivery(
        stack, "lingerbound", ["deadline_ms = 5000", "lease_ms = 9000", "linger_ms = 2999"])
    print("linger near its bound: %d fast, %d dropped, %d claimed" % (fast, dropped, claimed))
    assert (fast, dropped) == (1, 0)


def test_a_claim_that_held_the_only_slot_hands_it_to_the_queue(stack):
    """(10) One call slot ([forward] inflight = 1), no linger: the delivery's handover starts a
    claim (none in flight), which takes the slot, so the queue waits; the claim finds nothing and
    the forwarder rests. The delivery leaves when the claim ends, by the fast path. Red before:
    nothing woke the queue until the next poll (here ten minutes), and the delivery reached the
    backend through a claim after its lease."""
    fast, dropped, claimed = lone_fast_delivery(
        stack, "oneslot", ["inflight = 1", "batch = 4", "linger_ms = 0"])
    print("one slot: %d fast, %d dropped, %d claimed" % (fast, dropped, claimed))
    assert (fast, dropped) == (1, 0)


HOLD_KEY = 90909  # the advisory lock the deletes' trigger waits for
OWNER = re.compile(r"lease owner ([^,]+),")


def hold_deletes(stack):
    """Every DELETE on the outbox now waits, before its commit, for an advisory lock that the
    returned psql session holds (until it ends), and records, per lease owner, how many rows it
    deleted in test_ack_deletes. The inserts, claims and updates are not held.
    undo_hold_deletes removes it."""
    stack.psql(
        "CREATE TABLE IF NOT EXISTS test_ack_deletes (owner text, n bigint NOT NULL);"
        "TRUNCATE test_ack_deletes;"
        "CREATE OR REPLACE FUNCTION test_ack_hold() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = public AS $$ BEGIN "
        "PERFORM pg_advisory_lock_shared(%d); PERFORM pg_advisory_unlock_shared(%d); "
        "INSERT INTO test_ack_deletes SELECT lease_owner, count(*) FROM gone "
        "GROUP BY lease_owner; RETURN NULL; END $$;"
        "DROP TRIGGER IF EXISTS test_ack_hold ON outbox;"
        "CREATE TRIGGER test_ack_hold AFTER DELETE ON outbox REFERENCING OLD TABLE AS gone "
        "FOR EACH STATEMENT EXECUTE FUNCTION test_ack_hold()" % (HOLD_KEY, HOLD_KEY))
    return lock_holder(stack, "SELECT pg_advisory_lock(%d)" % HOLD_KEY, transaction=False)



def undo_hold_deletes(stack):
    stack.psql("DROP TRIGGER IF EXISTS test_ack_hold ON outbox;"
               "DROP FUNCTION IF EXISTS test_ack_hold();"
               "DROP TABLE IF EXISTS test_ack_deletes")


def deletes_of(stack, gw):
    """Rows per committed delete of gw's lease (its owner name, from its log)."""
    owner = OWNER.search(gw.log()).group(1)
    return [int(x) for x in stack.psql("SELECT n FROM test_ack_deletes WHERE owner = '%s'"
                                       % owner)]


def held_gateway(stack, name):
    """A gateway for the held-delete tests: one Deliver call at a time ([forward] inflight = 1,
    batch = 1), fast_max = 4, and no pipelining on its database connections (pipeline_depth = 1:
    nothing of it queues behind its own held delete on that connection)."""
    return extra_gateway(stack, name, ["inflight = 1", "batch = 1", "fast_max = 4"],
                         "[database]\npipeline_depth = 1\n")


def wait_four_pending(maddr):
    m = wait_for(lambda: (lambda x: x if x["ack_pending"] >= 4 else None)(fwd(maddr)),
                 DELIVERED_BOUND, 0.1)
    assert m, "the calls stopped behind the first delivery's delete: %s" % fwd(maddr)
    return m


@contextlib.contextmanager
def deletes_held(stack, name):
    """From an empty outbox: a held_gateway, every outbox delete held (hold_deletes) and the
    stack's own gateway stopped (SIGSTOP: only this one forwards and claims). Yields (gateway,
    its metrics address, release): release() ends the hold and lets the stack's gateway run
    again. Everything is undone on the way out, whatever happened."""
    sink(stack, "up")
    assert wait_for(lambda: outbox_empty(stack), DELIVERED_BOUND), "the outbox did not empty"
    gw, maddr = held_gateway(stack, name)
    main_gw = stack.gateway_pid()
    st = {"holder": None, "stopped": False}

    def release():
        release_holder(st["holder"])
        if st["stopped"]:
            os.kill(main_gw, signal.SIGCONT)
            st["stopped"] = False

    try:
        st["holder"] = hold_deletes(stack)
        os.kill(main_gw, signal.SIGSTOP)
        st["stopped"] = True
        yield gw, maddr, release
    finally:
        if st["stopped"]:
            os.kill(main_gw, signal.SIGCONT)
        if st["holder"] is not None:
            release_holder(st["holder"])
        undo_hold_deletes(stack)
        gw.close()


def test_calls_go_on_while_the_deletes_wait(stack):
    """(6) One Deliver call at a time, fast_max = 4, every DELETE of the outbox held in
    PostgreSQL, the stack's own gateway stopped (SIGSTOP: only this one forwards): the first
    accepted delivery's delete waits, yet the next three are sent and accepted (a slot is free at
    the answer); at four accepted deliveries whose delete is pending the forwarder starts no call
    (the bound) though more wait, and still none a poll later; once the deletes go through,
    everything arrives once, the outbox empties, and what accumulated behind the held delete left
    in one. (Before: the slot was held until the delete, and only the first delivery reached the
    backend while it waited.)"""
    with deletes_held(stack, "ackwait") as (gw, maddr, release):
        before = fwd(maddr)
        expected = submit_many(stack, 10, addr=gw.addr)
        m = wait_four_pending(maddr)
        assert m["ack_pending"] == 4 and m["calls_inflight"] == 0, \
            "a call went on with %d deletes pending: fast_max does not bound them" % (
                m["ack_pending"])
        time.sleep(2.5)  # more than a poll (1 s) and the claim's rest: nothing may start
        again = fwd(maddr)
        arrived = sum(1 for v in received(stack, expected).values() if v)
        rows = outbox_rows(stack, expected)
        print("deletes held: %d accepted with the delete pending, %d sent, %d arrived, %d queued, "
              "%d outbox rows left" % (again["ack_pending"], again["sent_total"] -
                                       before["sent_total"], arrived, again["fast_queued"], rows))
        assert again["ack_pending"] == 4 and again["sent_total"] == m["sent_total"], \
            "a call started at the bound: %s" % again
        assert arrived == 4, "%d deliveries arrived, not 4" % arrived
        assert rows == 10, "a delete went through while the trigger held it: proves nothing"
        release()
        got = wait_delivered(stack, expected)
        want, distinct, dup = report("deletes held, then released", expected, got)
        assert distinct == want and dup == 0
        sizes = deletes_of(stack, gw)
        total = int(stack.psql("SELECT coalesce(sum(n), 0) FROM test_ack_deletes")[0])
        print("rows per delete: %s (all gateways' deletes: %d rows)" % (sizes, total))
        # the outbox was empty before: every row deleted is one of the ten, each deleted once
        # (the two that went by claim may be the stack's own gateway's, once it runs again)
        assert total == 10, "%d rows deleted, not the 10" % total
        assert max(sizes) >= 3, "the acknowledgements were not coalesced: %s" % sizes


def test_a_delete_lost_with_its_connection_is_sent_again(stack):
    """(7) The same held deletes; then the database connection that runs this gateway's held
    delete is terminated (pg_terminate_backend: its transaction rolls back and the gateway learns
    nothing of its outcome). The ids it carried are kept and deleted by the next delete, on
    another connection, once the hold ends: every delivery arrives exactly once and each row is
    deleted once, without waiting for a lease and a second send. (Before: the ids were dropped,
    their rows stayed leased until the lease ran out and were claimed and sent again.)"""
    held_q = ("SELECT pid FROM pg_stat_activity WHERE query LIKE 'DELETE FROM outbox%' "
              "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    su = superuser_uri(stack)  # the gateway's sessions, their queries and waits: all visible
    with deletes_held(stack, "acklost") as (gw, maddr, release):
        expected = submit_many(stack, 6, addr=gw.addr)
        wait_four_pending(maddr)
        first = wait_for(lambda: stack.psql(held_q, uri=su) or None, DELIVERED_BOUND, 0.1)
        assert first, "no held delete seen"
        assert stack.psql("SELECT pg_terminate_backend(%s)" % first[0], uri=su) == ["t"]
        # the kept ids go again in a new delete (held in its turn) once a connection is back
        again = wait_for(lambda: [p for p in stack.psql(held_q, uri=su) if p not in first] or None,
                         DELIVERED_BOUND, 0.1)
        assert again, "the lost delete's ids were not sent again"
        release()
        got = wait_delivered(stack, expected)
        want, distinct, dup = report("a held delete lost with its connection", expected, got)
        total = int(stack.psql("SELECT coalesce(sum(n), 0) FROM test_ack_deletes")[0])
        print("rows per committed delete of this gateway: %s; all gateways': %d rows"
              % (deletes_of(stack, gw), total))
        assert distinct == want
        assert dup == 0, "%d deliveries were sent twice: the lost delete's ids were dropped" % dup
        assert total == want, "%d rows deleted, not %d once each" % (total, want)


# ---- (8) the forwarder's statements and the outbox's statistics ----

PLAN = re.compile(r"Query Text: (.*?)\n(.*?)(?=\n\S|\Z)", re.S)
FORWARDER_SQL = ("DELETE FROM outbox", "UPDATE outbox SET lease_owner = NULL",
                 "WITH c AS (SELECT o.id FROM outbox o")
# the statements that write outbox rows, and the foreign-key checks they run (nested)
INSERT_SQL = ("WITH v AS (SELECT * FROM unnest(", 'SELECT 1 FROM ONLY "public"."waybill"')
WHOLE = re.compile(r"Seq Scan on (outbox|waybill) ")


def logged_plans(text):
    """[(statement, plan)] of the forwarder's claims, acknowledgements, later and park, and of
    the group inserts with their foreign-key checks, in the PostgreSQL log text that auto_explain
    wrote."""
    return [(q, p) for q, p in PLAN.findall(text) if q.startswith(FORWARDER_SQL + INSERT_SQL)]


def test_the_forwarders_statements_use_the_outbox_indexes_whatever_its_statistics(stack):
    """(8) A queue's statistics mislead the planner: VACUUM of a drained outbox records it as
    empty, and every plan then made while its file is small reads it whole (a sequential scan),
    including the generic plan a connection keeps for its prepared acknowledgement and claim while
    the outbox grows again; measured, one such delete read 600-900 pages to remove 20-30 rows, and
    Submit at 64 streams lost up to a third of PostgreSQL's time per waybill to them. So the
    forwarder's transactions rule sequential scans out (enable_seqscan off in each), as the group
    inserts' do. Shown from the plans themselves: auto_explain logs every statement of the
    gateway's database role (nested ones too) while a gateway, started after VACUUM of the drained
    outbox, forwards waybills by its fast path (acknowledgement deletes), through a backend that
    is down for a moment (later) and scans (by claim): none of the forwarder's plans, nor of the
    inserts that wrote the rows and their foreign-key checks, reads the outbox or the waybill table
    by a sequential scan, and each kind ran. Afterwards no session of the role keeps auto_explain
    (those opened meanwhile are ended: the gateway opens new ones)."""
    su = superuser_uri(stack)
    pglog = os.path.join(stack.dir, "pg", "postgres.log")
    assert wait_for(lambda: outbox_empty(stack), DELIVERED_BOUND), "the outbox did not empty"
    since = stack.psql("SELECT now()", uri=su)[0]
    gw = None
    try:
        stack.psql("ALTER TABLE outbox SET (autovacuum_enabled = off)")
        for setting in ("session_preload_libraries = 'auto_explain'",
                        "auto_explain.log_min_duration = 0",
                        "auto_explain.log_nested_statements = on"):
            stack.psql("ALTER ROLE waygate_gateway SET " + setting, uri=su)
        stack.psql("VACUUM outbox", uri=su)
        print("outbox after VACUUM: %s (pages|tuples)" % stack.psql(
            "SELECT relpages || '|' || reltuples FROM pg_class WHERE oid = 'outbox'::regclass"))
        start = os.path.getsize(pglog)
        gw, maddr = extra_gateway(stack, "plans", [])
        expected = submit_many(stack, 40, addr=gw.addr)
        sink(stack, "down")
        expected.update(submit_many(stack, 3, addr=gw.addr))
        assert wait_for(lambda: metrics(maddr).get("waygate_forward_retried_total", 0) > 0,
                        DELIVERED_BOUND), "no delivery was put back while the backend was down"
        sink(stack, "up")
        expected.update(submit_many(stack, 10, addr=gw.addr, scans=True))
        wait_delivered(stack, expected)
        assert wait_for(lambda: outbox_rows(stack, expected) == 0, DELIVERED_BOUND), \
            "the delivered rows were not deleted"
        gw.close()
        gw = None
        with open(pglog, errors="replace") as f:
            f.seek(start)
            plans = logged_plans(f.read())
    finally:
        if gw is not None:
            gw.close()
        stack.psql("ALTER ROLE waygate_gateway RESET ALL", uri=su)
        stack.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                   "usename = 'waygate_gateway' AND backend_start >= '%s'" % since, uri=su)
        stack.psql("ALTER TABLE outbox RESET (autovacuum_enabled)")
        stack.psql("ANALYZE outbox", uri=su)
    kinds = {k: sum(1 for q, _ in plans if q.startswith(k)) for k in FORWARDER_SQL + INSERT_SQL}
    whole = [(q[:60], p) for q, p in plans if WHOLE.search(p)]
    print("plans logged: %s; reading a table whole: %d" % (kinds, len(whole)))
    assert all(kinds.values()), "a kind of statement never ran: %s" % kinds
    assert not whole, "%d of %d plans read a table whole, e.g. %s...:\n%s" % (
        len(whole), len(plans), whole[0][0], "\n".join(whole[0][1].splitlines()[:12]))
