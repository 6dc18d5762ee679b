"""Incidents are never dropped (Art. 17): a refusal the gateway decides while PostgreSQL is down
still ends as a row of the incident table once PostgreSQL is back, and a gateway stopped before
that logs how many incidents it could not write (a count, never their contents).

The refusal decidable without the database: a waybill number outside the branch's segments, while
the segment cache is fresh. Each test runs its own gateway (SecondGateway) whose cache is refreshed
at most every 10 minutes (segment_refresh_ms), loads that cache with one valid submit, then stops
PostgreSQL. Every wait polls with a bounded timeout."""

import signal

import grpc

from conftest import wait_for
from test_foundation import SecondGateway, rpc_error
from test_intake import SUBMIT, new_waybill, number_in, _counter
import waygate_proto

LONG_REFRESH = "segment_refresh_ms = 600000"


def submit_to(stack, gw, w, principal="courier_a"):
    return waygate_proto.unary(stack.channel(principal, addr=gw.addr), SUBMIT,
                               stack.pb.intake.SubmitRequest(waybill=w),
                               stack.pb.intake.SubmitResponse, timeout=10)


def segment_incidents(stack):
    """How many segment_violation incidents the table records (a row counts its count)."""
    return int(stack.psql("SELECT coalesce(sum(count), 0) FROM incident "
                          "WHERE kind = 'segment_violation'")[0])


def refused_while_database_down(stack, gw):
    """Loads gw's segment cache, stops PostgreSQL (the caller starts it again), and submits a
    number outside courier_a's segments: refused from the cache alone. Returns the number."""
    submit_to(stack, gw, new_waybill(stack, "a"))  # loads the segment cache
    stack.devstack("pg-stop")
    w = new_waybill(stack, "a")
    w.waybill_no = number_in(stack, "b", next(_counter))  # branch b's segment
    e = rpc_error(lambda: submit_to(stack, gw, w))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())
    assert e.details() == "waybill.waybill_no: is outside the branch's issued segments (Art. 18)", \
        e.details()
    assert w.waybill_no not in e.details()
    return w.waybill_no


def test_incident_written_after_database_returns(stack):
    """PostgreSQL stopped: the out-of-segment submit is refused and its incident waits in the
    gateway (the log says the write is being retried). PostgreSQL started again: the incident row
    appears, with its principal and branch, and the gateway's log holds no waybill number."""
    gw = SecondGateway(stack, "incidents_restart", LONG_REFRESH)
    stopped = False
    try:
        before = segment_incidents(stack)
        stopped = True
        number = refused_while_database_down(stack, gw)
        assert wait_for(lambda: "incidents not written yet" in gw.log_text(), timeout=30), \
            "the gateway never tried (and failed) to write the incident"
        stack.devstack("pg-start")
        stopped = False
        got = wait_for(lambda: segment_incidents(stack) == before + 1, timeout=60)
        assert got, "the incident was not written after PostgreSQL came back (before %d, now %d)" \
            % (before, segment_incidents(stack))
        row = stack.psql("SELECT principal, branch, severity, count FROM incident "
                         "WHERE kind = 'segment_violation' ORDER BY id DESC LIMIT 1")[0]
        assert row == "courier_a|a|medium|1", row
        assert number not in gw.log_text()
    finally:
        if stopped:
            stack.devstack("pg-start")
        gw.close()
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


def test_sigterm_logs_unwritten_incidents_as_a_count(stack):
    """PostgreSQL stopped, an incident queued, on a gateway without [audit] spool (the stack's
    spool is left out of another gateway's config; test_spool.py has a gateway with one): SIGTERM
    drains (the dev stack's drain_timeout_ms, 5 s, bounds the wait for the queue too), the gateway
    exits 0 and logs the incident it could not write as a count, lost; the waybill number appears
    nowhere in its log."""
    gw = SecondGateway(stack, "incidents_sigterm", LONG_REFRESH)
    stopped = False
    try:
        stopped = True
        number = refused_while_database_down(stack, gw)
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(timeout=30) == 0
        log = gw.log_text()
        assert "1 incident(s) not written" in log, log[-2000:]
        assert "1 incident(s) in 1 row(s) not written at shutdown (a row" in log, log[-2000:]
        assert "spooled" not in log and "[audit] spool is not set" in log, log[-2000:]
        assert number not in log
    finally:
        if stopped:
            stack.devstack("pg-start")
        gw.close()
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


def test_identity_while_database_down(stack):
    """PostgreSQL stopped: a certificate this gateway has looked up before still identifies its
    caller (its last answer stands in only while the database is unavailable), but a bearer token
    is refused UNAVAILABLE: sessions are looked up on every call and never answered from memory,
    so a disabled account cannot slip through an outage, nor fall back to its certificate."""
    name, _, via = stack.account("secadmin")
    md = stack.login("secadmin")  # over the admin certificate: the gateway has looked it up
    disable = "/waygate.v1.Admin/DisableAccount"
    req = stack.pb.admin.DisableAccountRequest(account="it-no-such-account", reason="test")
    e = rpc_error(lambda: stack.unary(disable, req, stack.pb.admin.DisableAccountResponse,
                                      principal=via, metadata=md))
    assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())  # the token works
    stack.devstack("pg-stop")
    try:
        # identified from the last answer (an unknown certificate would be UNAUTHENTICATED);
        # the health check itself reports the database as down
        assert stack.health(via) == "NOT_SERVING"
        e = rpc_error(lambda: stack.unary(disable, req, stack.pb.admin.DisableAccountResponse,
                                          principal=via, metadata=md))
        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
        assert e.details() == "database unavailable; retrying is safe", e.details()
    finally:
        stack.devstack("pg-start")
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)
