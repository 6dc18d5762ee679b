"""The forwarder's pause (gateway/forward/forward.c): while the backend fails, the forwarder claims
nothing until its pause is over, then probes the backend with one batch; the fast path is closed
meanwhile. Without it every ready row of a backlog was claimed, decrypted, sent into an instant
failure (the client's reconnect backoff) and put back, back to back, for as long as the backend
failed: a pool connection busy, the outbox's dead tuples and WAL growing, the event loop
decrypting.

Shown against a backlog of BACKLOG rows, on a gateway of the test's own ([forward] batch BATCH,
inflight 4, fast = false, backoff_min_ms = backoff_max_ms = PAUSE_MS: every pause, like every
row's own backoff, lasts between half of it and all of it) while the stack's gateway is stopped
(SIGSTOP: only the test's claims), over a window of the forwarder's counters (/metrics):
(1) a backend that refuses connections, (2) a backend that answers every call OK with RETRY for
every delivery (it takes nothing): in both, every claim follows a pause (claimed <= BATCH per
pause begun in the window, plus the probe in flight when it opened), and the pauses are at least
PAUSE_MS / 2 apart; before the pause, the same window claimed the whole backlog again every row
backoff (hundreds of rows). Once the backend answers, everything is delivered.

Only upper bounds are asserted over the window (a slow machine claims less, never more); the
window's length is measured around the counters it reads. No outcome is awaited by a sleep."""

import contextlib
import os
import re
import signal
import time

from conftest import ExtraGateway, wait_for
from test_forward import DELIVERED_BOUND, sink, wait_delivered
from test_forward_fast import free_port, metrics, outbox_empty, submit_batch
from test_forward_hostile import HostileBackend

BATCH = 5
BACKLOG = 150
PAUSE_MS = 2000
WINDOW_S = 8.0


def counters(maddr):
    m = metrics(maddr)
    return {k: m.get("waygate_forward_%s" % k, 0.0)
            for k in ("claimed_total", "retried_total", "pauses_total", "paused")}


@contextlib.contextmanager
def own_gateway(stack, name, sink_words, lines, edit=lambda text: text):
    """From an empty outbox, the sink told sink_words: the test's gateway (these [forward] lines
    and a [metrics] listener added to the stack's config, after edit), the stack's own stopped
    (SIGSTOP: only the test's gateway forwards). Yields (gateway, metrics address); undone on the
    way out (the stack's gateway goes on, the sink is up)."""
    sink(stack, "up")
    assert wait_for(lambda: outbox_empty(stack), DELIVERED_BOUND), "the outbox did not empty"
    sink(stack, *sink_words)
    maddr = "127.0.0.1:%d" % free_port()
    main_gw = stack.gateway_pid()
    gw = None
    os.kill(main_gw, signal.SIGSTOP)
    try:
        gw = ExtraGateway(stack, name, lambda text: edit(text) + "\n[forward]\n%s\n[metrics]\n"
                          "listen = %s\n" % ("\n".join(lines), maddr))
        yield gw, maddr
    finally:
        if gw is not None:
            gw.close()
        os.kill(main_gw, signal.SIGCONT)
        sink(stack, "up")


def pause_gateway(stack, name):
    """own_gateway with the sink down, the module's [forward] lines, every pause PAUSE_MS."""
    lines = ["fast = false", "batch = %d" % BATCH, "inflight = 4",
             "backoff_min_ms = %d" % PAUSE_MS]
    return own_gateway(stack, name, ("down",), lines, lambda text: re.sub(
        r"(?m)^backoff_max_ms\s*=.*$", "backoff_max_ms = %d" % PAUSE_MS, text))


def backlog(stack, gw):
    """BACKLOG waybills accepted by gw (SubmitBatch of 50): {record id: 1}."""
    expected = {}
    while len(expected) < BACKLOG:
        expected.update(submit_batch(stack, 50, gw.addr))
    return expected


def claims_over_window(maddr, what):
    """The forwarder seen paused, then its counters over WINDOW_S: asserts the pause's bounds and
    returns (claimed, pauses) in the window."""
    assert wait_for(lambda: counters(maddr)["paused"] == 1, DELIVERED_BOUND, 0.1), \
        "the forwarder did not pause: %s" % counters(maddr)
    t0 = time.monotonic()
    before = counters(maddr)
    time.sleep(WINDOW_S)  # the span observed, not a wait for an outcome
    after = counters(maddr)
    elapsed = time.monotonic() - t0
    claimed = after["claimed_total"] - before["claimed_total"]
    retried = after["retried_total"] - before["retried_total"]
    pauses = after["pauses_total"] - before["pauses_total"]
    print("\n%s: %.1f s, %d claimed, %d put back, %d pause(s) (backlog %d, batch %d)"
          % (what, elapsed, claimed, retried, pauses, BACKLOG, BATCH))
    assert after["paused"] == 1, after
    # a claim only after a pause, one batch each (the probe): a probe in flight when the window
    # opened may add one batch
    assert claimed <= BATCH * (pauses + 1), \
        "%d rows claimed in %d pause(s): claims while paused" % (claimed, pauses)
    # a pause lasts at least PAUSE_MS / 2 (the backoff's jitter covers its upper half)
    assert pauses <= elapsed / (PAUSE_MS / 2000.0) + 1, \
        "%d pauses in %.1f s: shorter than the backoff" % (pauses, elapsed)
    assert retried <= BATCH * (pauses + 1), "%d rows put back in the window" % retried
    return claimed, pauses


def test_backend_down_pauses_the_claims(stack):
    """(1) The backend refuses connections: the backlog is not swept over and over, one batch
    per pause; the sink back up, every delivery arrives and the pause ends."""
    with pause_gateway(stack, "pause-down") as (gw, maddr):
        expected = backlog(stack, gw)
        claims_over_window(maddr, "backend down")
        sink(stack, "up")
        wait_delivered(stack, expected)
        assert wait_for(lambda: counters(maddr)["paused"] == 0, DELIVERED_BOUND, 0.1)


def test_backend_answering_retry_to_all_pauses_the_claims(stack):
    """(2) A backend that answers every call OK, RETRY for every delivery, takes nothing: paced as
    a failing one (one batch per pause), its answers logged; the reference sink back, every
    delivery arrives."""
    pb = stack.pb

    def answer(deliveries):
        return pb.backend.DeliverResponse(results=[
            pb.backend.DeliveryResult(delivery_id=d.delivery_id,
                                      outcome=pb.backend.DeliveryResult.OUTCOME_RETRY)
            for d in deliveries]).SerializeToString()
    with pause_gateway(stack, "pause-retry") as (gw, maddr):
        expected = backlog(stack, gw)
        srv = HostileBackend(stack, answer)
        try:
            assert wait_for(lambda: srv.calls, DELIVERED_BOUND, 0.1), "no call reached the backend"
            claims_over_window(maddr, "backend answering RETRY")
            assert any("no delivery accepted or refused" in line for line in gw.log().splitlines())
        finally:
            srv.close()
        sink(stack, "up")
        wait_delivered(stack, expected)
        assert wait_for(lambda: counters(maddr)["paused"] == 0, DELIVERED_BOUND, 0.1)
