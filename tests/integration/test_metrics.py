"""The Prometheus metrics listener (GET /metrics on [metrics] listen, DIR/env WAYGATE_METRICS_ADDR):
well-formed text, counters that move with what the test does (a Submit, a refusal, an incident),
gauges that say what an operator must watch (database up, certificate and CRL expiry, the audit
chain's sequence), nothing but GET /metrics answered, and no personal information in it."""
import http.client
import os
import re
import select
import shlex
import signal
import socket
import ssl
import subprocess
import threading
import time

import grpc
import pytest

import query_data
from conftest import ExtraGateway, cluster_pids, wait_for

SUBMIT = "/waygate.v1.WaybillIntake/Submit"
GET = "/waygate.v1.WaybillQuery/Get"
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+]+|[+-]Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def fetch(stack, method="GET", path="/metrics"):
    host, port = stack.env["WAYGATE_METRICS_ADDR"].rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode()
    finally:
        c.close()


def scrape(stack):
    """{(name, ((label, value), ...)): value} of one scrape; fails on a malformed line."""
    status, ctype, text = fetch(stack)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = LINE.match(line)
        assert m, "not exposition format: %r" % line
        labels = tuple(sorted(LABEL.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out, text


def value(sample, name, **labels):
    return sample.get((name, tuple(sorted(labels.items()))), 0.0)


def calls(sample, method, code):
    return value(sample, "waygate_grpc_calls_total", method=method, code=code)


def test_counters_move_with_calls(stack):
    before, _ = scrape(stack)
    w = query_data.new_waybill(stack, "a")
    query_data.submit(stack, w)
    with pytest.raises(grpc.RpcError) as e:  # a number nobody submitted: NOT_FOUND
        query_data.get(stack, query_data.nonexistent(stack, "a", 1), "courier_b")
    code = e.value.code().name
    after, text = scrape(stack)
    assert calls(after, SUBMIT, "OK") - calls(before, SUBMIT, "OK") == 1
    assert calls(after, GET, code) - calls(before, GET, code) == 1
    assert value(after, "waygate_waybills_accepted_total") - \
        value(before, "waygate_waybills_accepted_total") == 1
    # the histogram counts every finished call of the method, whatever its status
    total = sum(v for (n, lb), v in after.items()
                if n == "waygate_grpc_calls_total" and ("method", SUBMIT) in lb)
    assert value(after, "waygate_grpc_call_seconds_count", method=SUBMIT) == total
    assert value(after, "waygate_grpc_call_seconds_bucket", method=SUBMIT, le="+Inf") == total
    assert value(after, "waygate_group_commit_waybills_count") > 0
    # nothing of the waybill in the metrics
    for clear in (w.waybill_no, w.sender.phone, w.recipient.name, w.sender.id_number):
        assert clear not in text


def test_lawful_access_is_in_no_series(stack):
    """Lawful access (Art. 16) is confidential to the metrics' readers (system_admin, or any local
    user of the plain listener): after a case requested, decided and read, and a request refused
    to another role, no line names a lawful-access method, and the lawful read moved no Get
    series (a lawful_access account's Get is left out with them)."""
    from test_lawful import Lawful
    lawful = Lawful(stack)
    w = query_data.new_waybill(stack, "a")
    query_data.submit(stack, w)
    before, _ = scrape(stack)
    case = lawful.request([w.waybill_no])
    lawful.decide(case.case_id)
    assert lawful.read(w.waybill_no).waybill.sender.phone == w.sender.phone
    with pytest.raises(grpc.RpcError):  # the security admin may not request: refused, not counted
        lawful.request([w.waybill_no], md=lawful.sec_md, via=lawful.sec_via)
    after, text = scrape(stack)
    for method in ("RequestLawfulAccess", "DecideLawfulAccess", "Lawful"):
        assert method not in text, [ln for ln in text.splitlines() if method in ln]

    def gets(sample):
        return sorted((n, lb, v) for (n, lb), v in sample.items()
                      if n.startswith("waygate_grpc_call") and ("method", GET) in lb)
    assert gets(after) == gets(before)
    # nor the count of records opened: it moving while every call series stood still told a
    # lawful read, and how many records it opened
    assert value(after, "waygate_waybill_records_opened_total") == \
        value(before, "waygate_waybill_records_opened_total")


def test_incidents_by_kind(stack):
    pb = stack.pb
    before, _ = scrape(stack)
    w = query_data.new_waybill(stack, "a")
    w.waybill_no = query_data.nonexistent(stack, "b", 7)  # branch b's number, submitted by a
    with pytest.raises(grpc.RpcError) as e:
        query_data.call(stack, SUBMIT, pb.intake.SubmitRequest(waybill=w),
                        pb.intake.SubmitResponse, "courier_a")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    after, _ = scrape(stack)
    k = dict(kind="segment_violation", severity="medium")
    assert value(after, "waygate_incidents_total", **k) - \
        value(before, "waygate_incidents_total", **k) == 1


def test_gauges_an_operator_watches(stack):
    s, _ = scrape(stack)
    assert value(s, "waygate_db_up") == 1
    assert value(s, "waygate_db_pool_size") >= 1
    stack.pool_whole()  # waygate_db_connections_ready reaches it: every connection set up
    # the schema the stack migrated to is the build's (test_faults.py: one that is behind)
    assert value(s, "waygate_db_schema_behind") == 0
    assert value(s, "waygate_db_schema_needed") >= 29
    assert value(s, "waygate_db_schema_version") == value(s, "waygate_db_schema_needed")
    assert value(s, "waygate_connections") >= 1
    assert value(s, "waygate_tls_cert_expiry_seconds") > 86400  # gen-certs: valid for long
    assert value(s, "waygate_tls_crl_next_update_seconds") > 3600
    assert value(s, "waygate_process_resident_bytes") > 1 << 20
    seq = [v for (n, lb), v in s.items() if n == "waygate_audit_seq"]
    assert len(seq) == 1 and seq[0] >= 1  # gateway.start at least


def test_only_get_metrics(stack):
    assert fetch(stack, "POST")[0] == 501  # evhttp: a method not allowed is "not implemented"
    assert fetch(stack, "GET", "/")[0] == 404
    assert fetch(stack, "GET", "/metrics/../admin")[0] == 404


# --- the outbox and the forwarder (issue 10: outbox depth, forwarder counters) ---

def sink(stack, *words):
    """Tells the dev stack's backend-sink what to be (up, down); returns once it applied it."""
    cmd = shlex.split(stack.env["WAYGATE_SINK"]) + ["ctl", stack.env["WAYGATE_SINK_CONTROL"]]
    r = subprocess.run(cmd + [str(w) for w in words], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "backend-sink ctl %s: %s%s" % (words, r.stdout, r.stderr)


def test_outbox_depth_and_forwarder_counters_move(stack):
    before, _ = scrape(stack)
    assert ("waygate_outbox_deliveries", ()) in before  # sampled by the scrape itself
    assert ("waygate_forward_delivered_total", ()) in before
    sink(stack, "down")
    try:
        w = query_data.new_waybill(stack, "a")
        query_data.submit(stack, w)
        # the backend is down: the delivery is retried and waits in the outbox (the depth is a
        # sample at most a second old: polled until it shows)
        def waiting():
            s = scrape(stack)[0]
            ok = value(s, "waygate_forward_retried_total") > \
                value(before, "waygate_forward_retried_total") and \
                value(s, "waygate_outbox_deliveries") - value(s, "waygate_outbox_parked") >= 1
            return s if ok else None
        mid = wait_for(waiting, 120)
        assert mid, "no retried delivery waiting in the outbox while the backend was down"
        assert value(mid, "waygate_outbox_oldest_seconds") > 0
        assert value(mid, "waygate_outbox_sample_age_seconds") >= 0
    finally:
        sink(stack, "up")
    # the backend back: delivered, and nothing unparked left waiting
    assert wait_for(lambda: value(scrape(stack)[0], "waygate_forward_delivered_total") >
                    value(before, "waygate_forward_delivered_total"), 150)
    assert wait_for(lambda: (lambda s: value(s, "waygate_outbox_deliveries") -
                             value(s, "waygate_outbox_parked") == 0)(scrape(stack)[0]), 150)



def test_scrape_answers_while_the_database_hangs(stack):
    """A scrape never waits on a hung database for long: with PostgreSQL frozen (SIGSTOP), a
    scrape whose outbox sample is stale starts a query that cannot finish and answers with the
    older sample once its wait runs out (SAMPLE_WAIT_MS, metrics.c); a second scrape does the
    same without a second query. Once PostgreSQL moves again, the sample is fresh again. (The
    only time here is a lower bound: the sleep makes the first sample stale.)"""
    first, _ = scrape(stack)
    assert ("waygate_outbox_deliveries", ()) in first
    pids = cluster_pids(stack)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(1.5)  # older than SAMPLE_FRESH_MS (1 s): the next scrape asks for a sample
        for _ in range(2):
            during, _ = scrape(stack)  # http.client's 30 s timeout: a hang fails the test
            assert value(during, "waygate_outbox_sample_age_seconds") >= 1.5
            assert value(during, "waygate_outbox_deliveries") == \
                value(first, "waygate_outbox_deliveries")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert wait_for(lambda: value(scrape(stack)[0], "waygate_outbox_sample_age_seconds") < 1.5,
                    60), "the outbox sample did not refresh after PostgreSQL came back"
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


# --- [metrics] tls: over mTLS, for a registered system_admin certificate only ---

def https_response(stack, addr, principal):
    """GET /metrics over TLS as principal (a dev principal's name, a (cert, key) pair, or None:
    no client certificate); (status, body, the Connection header)."""
    ctx = ssl.create_default_context(cafile=stack.ca)
    if principal is not None:
        cert, key = stack.cert(principal) if isinstance(principal, str) else principal
        ctx.load_cert_chain(cert, key)
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=30)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        return r.status, r.read().decode(), r.getheader("Connection")
    finally:
        c.close()


def https_fetch(stack, addr, principal):
    """https_response's (status, body)."""
    return https_response(stack, addr, principal)[:2]


@pytest.fixture(scope="module")
def tls_metrics(stack):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = "127.0.0.1:%d" % port
    gw = ExtraGateway(stack, "metrics-tls", lambda t: t.replace(
        "[metrics]\n", "[metrics]\nlisten = %s\ntls = true\n" % addr))
    yield gw, addr
    gw.close()


def test_tls_metrics_answer_system_admin(stack, tls_metrics):
    gw, addr = tls_metrics
    status, text, connection = https_response(stack, addr, "sysadmin")
    assert status == 200, text
    assert connection == "close", connection  # one request per connection
    assert "waygate_grpc_calls_total" in text and "waygate_outbox_deliveries" in text
    assert "https://%s/metrics" % addr in gw.log()


WRONG_ROLE = "the client certificate's principal is not of role system_admin"


def refusal_lines(gw):
    return [ln for ln in gw.log().splitlines() if "scrape from " in ln and " refused (" in ln]


def test_tls_metrics_refuse_other_certificates(stack, tls_metrics):
    """A registered principal of another role is refused 403 with a warning that names neither
    the principal nor its role (Art. 16: no line names a lawful_access principal, so none names
    any), and the refusal closes the connection (no second try on it); no client certificate, or
    one of another CA, fails the handshake."""
    gw, addr = tls_metrics
    for principal, role in (("courier_a", "courier"), ("admin", "security_admin"),
                            ("lawful", "lawful_access")):
        before = len(refusal_lines(gw))
        status, text, connection = https_response(stack, addr, principal)
        assert status == 403, (principal, status)
        assert "waygate_" not in text
        assert connection == "close", connection
        assert wait_for(lambda: len(refusal_lines(gw)) > before, 10)
        line = refusal_lines(gw)[-1]
        assert WRONG_ROLE in line, line
        rest = line.replace(WRONG_ROLE, "")  # ("admin" is in "system_admin")
        assert principal not in rest and role not in rest, line
    # no certificate: the handshake fails (it is required), nothing reaches the listener
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_fetch(stack, addr, None)
    # a certificate of another CA: the handshake fails
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_fetch(stack, addr, "rogue")
    # and plain HTTP on the TLS listener gets nothing
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            c.request("GET", "/metrics")
            c.getresponse().read()
    finally:
        c.close()


def test_tls_metrics_refusal_warnings_are_rate_limited(stack, tls_metrics):
    """60 refused scrapes (courier_a's certificate) write at most the budget's 10 lines and one a
    second after it; a later line counts the refusals left out before it (scrapes go on, one at a
    time, until one is written)."""
    gw, addr = tls_metrics
    before = len(refusal_lines(gw))
    start = time.monotonic()
    for _ in range(60):
        assert https_fetch(stack, addr, "courier_a")[0] == 403
    elapsed = time.monotonic() - start
    assert wait_for(lambda: len(refusal_lines(gw)) > before, 10)
    written = len(refusal_lines(gw)) - before
    assert written <= 10 + int(elapsed) + 1, (written, elapsed)
    if written == 60:  # (a machine so slow that the budget refilled as fast: nothing left out)
        return

    def counted():
        assert https_fetch(stack, addr, "courier_a")[0] == 403
        return any("refusals before it not logged" in ln for ln in refusal_lines(gw)[before:])
    assert wait_for(counted, 30), "no line counted the refusals left out"


def test_tls_metrics_disabled_admin_not_admitted_while_the_database_is_away(stack, tls_metrics):
    """The last certificate admitted stands in for the database while it is unavailable, but any
    answer of the database replaces it: a system_admin certificate scraped (200), then disabled
    (403 while the database answers), is not admitted again once PostgreSQL stops (503)."""
    from test_accounts import issue_cert
    gw, addr = tls_metrics
    name = "it_scraper_%d" % os.getpid()
    pair = issue_cert(stack, name, "/O=Waygate Dev/OU=system_admin/CN=%s" % name)
    r = stack.ctl("principals", "add", name, "--cert", pair[0], "--role", "system_admin",
                  "--admin", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert https_fetch(stack, addr, pair)[0] == 200
    r = stack.ctl("principals", "disable", name, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert https_fetch(stack, addr, pair)[0] == 403
    stack.devstack("pg-stop")
    try:
        status, text = https_fetch(stack, addr, pair)
        assert status == 503 and "waygate_" not in text, status
    finally:
        stack.devstack("pg-start")
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)
    # the enabled system_admin is served again once the database is back
    assert wait_for(lambda: https_fetch(stack, addr, "sysadmin")[0] == 200, 30)


def test_silent_sockets_from_one_address_leave_room_for_a_scrape(stack):
    """One address (127.0.0.3) keeps 120 sockets to the metrics listener that send nothing,
    reopening each as it is closed; scrapes from another address (127.0.0.2) are answered while
    that flood goes on: the address holds at most 4 of the 16 connections (the others are closed
    as they are accepted, counted under limit="per_address" or "rate"), so the backlog drains and
    a scrape is accepted in its turn; the 4 silent ones are closed 2 s after their accept
    (waygate_metrics_first_byte_closed_total). Without the per-address cap the 120 held the 16
    connections and the backlog, each reopened one accepted before the waiting scrape, and no
    scrape was answered (or one late, with no per-address refusal counted). What proves it is the
    counters and that each scrape is answered while the flood reopens sockets before it and after
    its answer, not how fast: every wait is a poll with a generous bound (a busy 2-core CI)."""
    from conftest import free_port
    mport = free_port()
    g = ExtraGateway(stack, "metrics-flood", lambda t: t.replace(
        "[metrics]\n", "[metrics]\nlisten = 127.0.0.1:%d\n" % mport, 1))
    stop, flood = threading.Event(), {"reopened": 0, "error": None}

    def opened():
        s = socket.socket()
        s.setblocking(False)
        s.bind(("127.0.0.3", 0))
        s.connect_ex(("127.0.0.1", mport))
        return s

    def attacker():
        socks = []
        try:
            socks = [opened() for _ in range(120)]
            while not stop.is_set():
                readable, _, _ = select.select(socks, [], [], 0.05)
                for s in readable:
                    try:
                        if s.recv(1, socket.MSG_DONTWAIT):
                            continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    socks[socks.index(s)] = opened()  # closed by the gateway (EOF, reset)
                    s.close()
                    flood["reopened"] += 1
        except Exception as e:  # reported by the assertions below
            flood["error"] = repr(e)
        finally:
            for s in socks:
                s.close()

    def scrape_from_another_address():
        """(status, body) of one scrape from 127.0.0.2; the timeout only catches a hang."""
        c = http.client.HTTPConnection("127.0.0.1", mport, timeout=60,
                                       source_address=("127.0.0.2", 0))
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def reopens():
        """True once the flood reopened a socket closed after this call: it is live."""
        n = flood["reopened"]
        return bool(wait_for(lambda: flood["reopened"] > n, 60))

    def first_byte_closed():
        status, body = scrape_from_another_address()
        m = re.search(r"(?m)^waygate_metrics_first_byte_closed_total (\S+)$", body)
        return status == 200 and m is not None and float(m.group(1)) >= 4

    t = threading.Thread(target=attacker, daemon=True)
    try:
        t.start()
        assert wait_for(lambda: flood["reopened"] >= 200, 60), flood
        for _ in range(3):
            assert reopens(), "the flood was not live before the scrape: %r" % flood
            status, body = scrape_from_another_address()
            assert status == 200
            assert reopens() and flood["error"] is None and t.is_alive(), \
                "the flood was not live after the scrape's answer: %r" % flood
        refused = re.search(
            r'(?m)^waygate_metrics_connections_refused_total\{limit="per_address"\} (\S+)$', body)
        assert refused and float(refused.group(1)) > 0, body[:300]
        # the 4 silent ones the address holds are closed FIRST_BYTE_S after their accept
        assert wait_for(first_byte_closed, 60), flood
    finally:
        stop.set()
        t.join(10)
        g.close()
