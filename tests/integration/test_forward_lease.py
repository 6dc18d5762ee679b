"""The forwarder's lease bound, applied by its engine (gateway/forward/forward.c, send_batch): no
Deliver call of a claimed batch outlives the batch's lease, whose end the engine takes from when
the claim was sent (the claim's lease_until is its transaction's now() + lease_ms); the bound
itself, gw_fwd_call_room_ms, is unit-tested (tests/unit/test_forward.c). Here the engine uses it:
a claim held in PostgreSQL (a trigger on the outbox's claiming UPDATE waits for an advisory lock
the test holds) comes back late, so that
(1) with less than a call's minimum (100 ms) left before a second ahead of the lease's end,
    nothing of the batch is sent: it goes back for later, "the lease ends before another call
    could", and no Deliver call carried it;
(2) with some room left, but less than [forward] deadline_ms, the call's deadline is cut to that
    room: against a backend that answers only after longer, the call ends DEADLINE_EXCEEDED and
    the delivery stays in the outbox (with the full deadline it would be answered and accepted).
Only this test's gateway forwards meanwhile: the stack's own is stopped (SIGSTOP).

Only lower bounds of elapsed time decide: the claim is held at least so long (counted from when
it is seen waiting, after it was sent), the sink waits at least so long before it answers. No
outcome is hoped for from a sleep."""

import contextlib
import os
import re
import signal
import time

from conftest import ExtraGateway, lock_holder, release_holder, wait_for
from test_forward import DELIVERED_BOUND, new_waybill, sink, sink_lines, submit, wait_delivered
from test_forward_fast import fwd, free_port, outbox_empty

HOLD_KEY = 90910  # the advisory lock a claim's trigger waits for
LEASE_REASON = "the lease ends before another call could"


def hold_claims(stack):
    """Every claim (an UPDATE of the outbox that sets a lease owner) now waits, row by row, for
    an advisory lock the returned psql session holds until release_holder. Later, park and
    acknowledgement statements are not held."""
    stack.psql(
        "CREATE OR REPLACE FUNCTION test_claim_hold() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = public AS $$ BEGIN "
        "IF NEW.lease_owner IS NOT NULL THEN "
        "PERFORM pg_advisory_lock_shared(%d); PERFORM pg_advisory_unlock_shared(%d); END IF; "
        "RETURN NEW; END $$;"
        "DROP TRIGGER IF EXISTS test_claim_hold ON outbox;"
        "CREATE TRIGGER test_claim_hold BEFORE UPDATE ON outbox FOR EACH ROW "
        "EXECUTE FUNCTION test_claim_hold()" % (HOLD_KEY, HOLD_KEY))
    return lock_holder(stack, "SELECT pg_advisory_lock(%d)" % HOLD_KEY, transaction=False)



def claim_waiting(stack):
    """A claim waits for the test's lock (pg_locks: an advisory lock not granted)."""
    return stack.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                      "objid = %d AND NOT granted" % HOLD_KEY) != ["0"]


def row_of(stack, rid):
    """(last_error, attempts, leased, due later than in four minutes) of the waybill's outbox
    row, or None once it is gone."""
    rows = stack.psql("SELECT coalesce(last_error, ''), attempts, lease_owner IS NOT NULL, "
                      "next_at > now() + interval '4 minutes' FROM outbox WHERE waybill_id = '%s'"
                      % rid)
    return tuple(rows[0].split("|")) if rows else None


@contextlib.contextmanager
def lease_gateway(stack, name, lease_ms, deadline_ms):
    """From an empty outbox: a gateway forwarding by claims only ([forward] fast = false), one
    call at a time, with this lease and deadline and a backoff of five to ten minutes (a
    delivery put back stays put while the test looks), the stack's own gateway stopped
    (SIGSTOP), and every claim held (hold_claims). Yields (gateway, its metrics address, holder).
    Everything is undone on the way out: the hold, the gateway; the stack's gateway goes on, and
    what this one put back is made due again for it."""
    sink(stack, "up")
    assert wait_for(lambda: outbox_empty(stack), DELIVERED_BOUND), "the outbox did not empty"
    maddr = "127.0.0.1:%d" % free_port()
    lines = ["fast = false", "inflight = 1", "lease_ms = %d" % lease_ms,
             "deadline_ms = %d" % deadline_ms, "backoff_min_ms = 600000"]

    def edit(text):
        text = re.sub(r"(?m)^backoff_max_ms\s*=.*$", "backoff_max_ms = 600000", text)
        return text + "\n[forward]\n%s\n[metrics]\nlisten = %s\n" % ("\n".join(lines), maddr)

    main_gw = stack.gateway_pid()
    gw = holder = None
    os.kill(main_gw, signal.SIGSTOP)
    try:
        gw = ExtraGateway(stack, name, edit)
        holder = hold_claims(stack)
        yield gw, maddr, holder
    finally:
        if holder is not None:
            release_holder(holder)
        stack.psql("DROP TRIGGER IF EXISTS test_claim_hold ON outbox;"
                   "DROP FUNCTION IF EXISTS test_claim_hold()")
        if gw is not None:
            gw.close()
        os.kill(main_gw, signal.SIGCONT)
        sink(stack, "up")
        stack.psql("UPDATE outbox SET next_at = now() WHERE parked_at IS NULL AND next_at > now()")


def held_claim_returns_late(stack, gw, holder, rid, hold_s):
    """The claim that took rid's row is seen waiting; the lock is released hold_s seconds after
    that (the claim was sent before it was seen: it comes back at least hold_s after it was
    sent)."""
    assert wait_for(lambda: claim_waiting(stack), 60, 0.05), "no claim waited for the lock"
    seen = time.monotonic()
    assert row_of(stack, rid)[1] == "0"  # the claim has not taken it yet (its update waits)
    time.sleep(max(0.0, seen + hold_s - time.monotonic()))  # a lower bound, not a hope
    release_holder(holder)


def test_a_batch_whose_lease_is_spent_is_not_sent(stack):
    """(1) lease_ms 3000, deadline_ms 1000: the claim comes back at least 3 s after it was sent,
    past the lease's end less the engine's second of margin. The engine sends nothing of the
    batch (no Deliver call: the sink has no line of it, the gateway's sent counter did not move)
    and puts the delivery back with the reason; another claim sends it later."""
    with lease_gateway(stack, "lease-spent", 3000, 1000) as (gw, maddr, holder):
        before = fwd(maddr)
        rid = submit(stack, new_waybill(stack), addr=gw.addr)
        held_claim_returns_late(stack, gw, holder, rid, 3.0)
        row = wait_for(lambda: (lambda r: r if r and r[0] else None)(row_of(stack, rid)), 60)
        assert row == (LEASE_REASON, "1", "f", "t"), row_of(stack, rid)
        after = fwd(maddr)
        assert after["claimed_total"] - before["claimed_total"] == 1
        assert after["sent_total"] == before["sent_total"], "a Deliver call carried the batch"
        assert not [r for r in sink_lines(stack) if r.get("record_id") == rid]
    # made due again, the stack's gateway delivers it
    wait_delivered(stack, {rid: 1})


def test_a_call_is_cut_to_the_lease(stack):
    """(2) lease_ms 10000, deadline_ms 8000, a backend that answers after 6 s: the claim comes
    back at least 5.5 s after it was sent, so at most 3.5 s are left before the lease's end less
    a second, and the call's deadline is cut to that: it ends DEADLINE_EXCEEDED before the
    backend answers, and the delivery stays in the outbox, put back (with the full 8 s deadline
    the backend's answer at 6 s would have been taken and the delivery acknowledged). On a
    machine so slow that not even 100 ms were left, the batch goes back unsent, as in (1)."""
    with lease_gateway(stack, "lease-cut", 10000, 8000) as (gw, maddr, holder):
        rid = submit(stack, new_waybill(stack), addr=gw.addr)
        sink(stack, "slow", 6000)
        held_claim_returns_late(stack, gw, holder, rid, 5.5)
        row = wait_for(lambda: (lambda r: r if r is None or r[0] else None)(row_of(stack, rid)),
                       60)
        assert row is not None, "the delivery was acknowledged: its call outlived the lease"
        assert row[0] in ("DEADLINE_EXCEEDED", LEASE_REASON) and row[1:] == ("1", "f", "t"), row
    wait_delivered(stack, {rid: 1})
