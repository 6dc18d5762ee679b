"""The forwarder's breaker (gateway/forward/forward_int.h): a backend that refuses every delivery
(a schema or version skew after the carrier deployed) does not get every delivery parked, an
incident each, at the intake's rate. After [forward] breaker_after refusals in a row with no
acceptance, the breaker opens: one incident 'forward_breaker_open' and one ERROR line, and every
later refusal puts its delivery back (paced as a failing backend) instead of parking it; the
first acceptance closes it (one INFO line) and everything not parked is delivered. A refusal
among acceptances still parks (test_forward.py's parking tests, on the stack's gateway whose
breaker_after is the default 32).

On a gateway of the test's own ([forward] breaker_after K, batch BATCH, its own [metrics]) while
the stack's gateway is stopped (SIGSTOP: only the test's gateway forwards). Waits poll for
observable state with generous bounds; nothing waits on a sleep. While it is open, the
forwarder's counters are read over WINDOW_S (a span observed, as in test_forward_pause.py: only
upper bounds, relative to the pauses counted in it, are asserted)."""

import re
import time

import pytest

from conftest import wait_for
from test_forward import DELIVERED_BOUND, sink, wait_delivered
from test_forward_fast import metrics, submit_batch
from test_forward_pause import counters, own_gateway

K = 8
BATCH = 10
GROUPS = 2  # SubmitBatch groups of GROUP waybills: the first goes fast, the second is claimed
GROUP = 30
WINDOW_S = 3.0
# how the sink refuses everything, and the reason a refused delivery is parked with: REJECTED for
# each delivery; or INVALID_ARGUMENT for every call ("delivery_id" is in every delivery the sink
# sees), which sends a batch again one delivery per call, each refused alone
MODES = {
    "rejected": (("refuse",), "REJECTED: delivery: refused by the sink's control (refuse)"),
    "invalid": (("invalid", "delivery_id"),
                "INVALID_ARGUMENT: deliveries: a delivery the sink is told to refuse (marker)"),
}


def breaker_gateway(stack, name, refuse):
    """The test's gateway ([forward] breaker_after K, pauses of 100-200 ms), the stack's own
    stopped, the sink refusing everything (test_forward_pause.own_gateway)."""
    return own_gateway(stack, name, refuse, ["breaker_after = %d" % K, "batch = %d" % BATCH,
                                             "inflight = 4", "backoff_min_ms = 100"],
                       lambda text: re.sub(r"(?m)^backoff_max_ms\s*=.*$", "backoff_max_ms = 200",
                                           text))


def ids_sql(rids):
    return ",".join("'%s'" % r for r in sorted(rids))


def parked_of(stack, rids):
    """{outbox id: (waybill id, park reason)} of these waybills' parked rows."""
    rows = stack.psql("SELECT id, waybill_id, park_reason FROM outbox WHERE parked_at IS NOT "
                      "NULL AND waybill_id IN (%s)" % ids_sql(rids))
    return {int(r.split("|", 2)[0]): tuple(r.split("|", 2)[1:]) for r in rows if r}


def held_of(stack, rids):
    """These waybills' unparked rows refused while the breaker was open."""
    return int(stack.psql("SELECT count(*) FROM outbox WHERE parked_at IS NULL AND "
                          "last_error LIKE 'breaker open:%%' AND waybill_id IN (%s)"
                          % ids_sql(rids))[0])


def status(stack):
    r = stack.ctl("outbox", "status", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    return dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())


def incidents(stack, kind, after_id, rids=None):
    where = " AND record_id IN (%s)" % ids_sql(rids) if rids else ""
    return stack.psql("SELECT severity, detail FROM incident WHERE kind = '%s' AND id > %d%s"
                      % (kind, after_id, where))


def breaker(maddr):
    m = metrics(maddr)
    return {k: m.get("waygate_forward_%s" % k)
            for k in ("breaker_open", "breaker_opens_total", "breaker_refusals", "parked_total")}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_backend_refusing_everything_opens_the_breaker(stack, mode):
    """The sink refuses every delivery (REJECTED, or every call INVALID_ARGUMENT); GROUPS x GROUP
    waybills, well over K: exactly K - 1 are parked (each with its delivery_parked incident), the
    K-th refusal opens the breaker (one incident, one ERROR line, the gauge at 1) and every other
    delivery stays in the outbox unparked, refused again at the backoff's pace, or not sent
    (`outbox status`'s held). The sink accepting
    again, the next probe closes it (one INFO line) and every unparked delivery arrives; the K - 1
    parked come back with `outbox retry`."""
    refuse, prefix = MODES[mode]
    last_inc = int(stack.psql("SELECT coalesce(max(id), 0) FROM incident")[0])
    with breaker_gateway(stack, "breaker-" + mode, refuse) as (gw, maddr):
        expected = {}
        for _ in range(GROUPS):
            expected.update(submit_batch(stack, GROUP, gw.addr))
        n = len(expected)
        # every delivery refused at least once: parked before the breaker opened, or held
        assert wait_for(lambda: len(parked_of(stack, expected)) + held_of(stack, expected) == n,
                        DELIVERED_BOUND, 0.5), \
            "not every delivery was refused: %d parked, %d held of %d" % (
                len(parked_of(stack, expected)), held_of(stack, expected), n)
        parked = parked_of(stack, expected)
        assert len(parked) == K - 1, "%d parked, not K - 1 = %d" % (len(parked), K - 1)
        assert all(why.startswith(prefix) for _, why in parked.values()), parked
        assert int(status(stack)["held"]) == n - (K - 1)
        b = breaker(maddr)
        assert b["breaker_open"] == 1 and b["breaker_opens_total"] == 1, b
        # breaker_refusals counts what was refused: singles left unsent are held, not refused
        assert b["parked_total"] == K - 1 and b["breaker_refusals"] >= K, b
        assert wait_for(lambda: len(incidents(stack, "delivery_parked", last_inc, expected))
                        == K - 1, DELIVERED_BOUND, 0.5)
        assert wait_for(lambda: incidents(stack, "forward_breaker_open", last_inc),
                        DELIVERED_BOUND, 0.5), "no forward_breaker_open incident"
        (inc,) = incidents(stack, "forward_breaker_open", last_inc)
        severity, detail = inc.split("|", 1)
        assert severity == "high"
        # the count and the last reason, its digits redacted (the sink echoes the waybill number)
        assert detail.startswith("%d deliveries refused in a row" % K), detail
        assert "last: %s, waybill " % prefix in detail and not re.search(r"[0-9]{2}",
                                                                                  detail), detail
        opened = [ln for ln in gw.log().splitlines() if "breaker open: the backend refused" in ln]
        assert len(opened) == 1 and '"error"' in opened[0].lower(), opened
        # paced as a failing backend, one delivery a probe (a probe of a batch refused together
        # for one bad delivery would come back together and keep it open): at most one row
        # claimed per pause begun in the window, plus the probe in flight when it opened
        before, t0 = counters(maddr), time.monotonic()
        time.sleep(WINDOW_S)  # the span observed, not a wait for an outcome
        after, elapsed = counters(maddr), time.monotonic() - t0
        claimed = after["claimed_total"] - before["claimed_total"]
        pauses = after["pauses_total"] - before["pauses_total"]
        print("\nbreaker open (%s): %.1f s, %d claimed, %d pause(s)" % (mode, elapsed, claimed,
                                                                       pauses))
        assert claimed <= pauses + 1, "%d rows claimed in %d pause(s)" % (claimed, pauses)

        sink(stack, "up")
        kept = {rid for rid, _ in parked.values()}
        wait_delivered(stack, {rid: 1 for rid in expected if rid not in kept})
        assert wait_for(lambda: breaker(maddr)["breaker_open"] == 0, DELIVERED_BOUND, 0.5)
        closed = [ln for ln in gw.log().splitlines() if "breaker closed" in ln]
        assert len(closed) == 1, closed
        assert parked_of(stack, expected) == parked  # nothing parked meanwhile, none unparked
        assert len(incidents(stack, "forward_breaker_open", last_inc)) == 1
        # the parked ones are retried by hand, as after any park (no state left behind)
        for oid in parked:
            r = stack.ctl("outbox", "retry", oid, "--db", stack.pguri)
            assert r.returncode == 0, r.stderr
        wait_delivered(stack, expected)
        print("\nbreaker (%s): %d waybills refused, %d parked before it opened, the rest held and "
              "delivered once the sink accepted" % (mode, n, len(parked)))
