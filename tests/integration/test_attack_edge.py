"""Attacks at the edge (issue 10, findings 4, 6 and 9), each performed against the running
gateway with its bound checked:

- slot exhaustion: an attacker on 127.0.0.2 holds plain TCP sockets that never start TLS and
  reopens each one the gateway closes; a legitimate client on 127.0.0.1 opening a new connection
  per call still gets at least 99% of its calls answered (per-address caps and accept rate, slots
  kept for authenticated connections, a short pre-authentication timeout);
- control-frame floods (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM) on one mTLS
  connection are answered with GOAWAY ENHANCE_YOUR_CALM, and the gateway does not go on
  answering the flooding connection; the per-stream log lines of a refusal flood are
  rate-limited;
- a client without a certificate reads TLS's certificate_required alert, not a reset;
- the log cannot be flooded from the edge: failed handshakes (no certificate needed) and
  per-stream lines spread over many connections come out of gateway-wide budgets, with a count
  of what was left out;
- out of file descriptors, the listeners pause instead of spinning on accept(2) (one warning an
  episode, never a line that is not JSON) and recover by themselves; the metrics listener holds
  at most 16 connections;
- silent sockets from four addresses, each at its per-address cap, are more than the global
  unauthenticated cap: a new connection closes the oldest unauthenticated one, so a legitimate
  client's handshakes still get through;
- a TLS 1.3 KeyUpdate flood on one mTLS connection is answered like a PING flood;
- slow clients trickling a byte a second into a request or a ClientHello on every one of the
  metrics listener's 16 connections are closed 10 s after their accept, and a scrape gets in.

Frames are written by hand (struct over ssl): the h2 package is not installed. No assertion
depends on timing: a flood is over budget by a factor of at least ten, and "the gateway went on
answering" is seen as the answer to a marker PING sent after the flood."""

import http.client
import json
import os
import re
import resource
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy"))
import waygate_proto  # noqa: E402

from conftest import (KEYUPDATE_COUNT_C, MTLS_CONNECT_C, ExtraGateway, build_tls_c,  # noqa: E402
                      free_port, wait_for)
from test_foundation import SecondGateway, hostport  # noqa: E402

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 2, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
ENHANCE_YOUR_CALM = 0xB
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MARKER = b"waygate!"  # opaque data of the PING sent after a flood


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK literal header field without indexing, no Huffman coding (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request_headers(stream, path=b"/grpc.health.v1.Health/Check", ctype=b"application/grpc",
                    flags=END_HEADERS):
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", path),
        (b":authority", b"localhost"), (b"content-type", ctype), (b"te", b"trailers")])
    return frame(HEADERS, flags, stream, block)


def h2_connect(stack, principal="courier_a"):
    """An mTLS connection that has sent the client preface and an empty SETTINGS frame."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(stack.ca)
    ctx.set_alpn_protocols(["h2"])
    ctx.load_cert_chain(*stack.cert(principal))
    # The bound of a wait for an answer that a broken gateway would never send.
    sock = socket.create_connection(hostport(stack.addr), timeout=60)
    s = ctx.wrap_socket(sock, server_hostname="localhost")
    s.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return s


def frames(s):
    """Yields (type, flags, stream, payload) for every frame read, until the connection ends."""
    buf = b""
    while True:
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            yield buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]
            buf = buf[9 + n:]
        try:
            data = s.recv(65536)
        except (ConnectionError, ssl.SSLError, OSError):
            return
        if not data:
            return
        buf += data


def send_all_tolerant(s, data):
    """Sends what the gateway still takes: it may close the connection mid-flood."""
    try:
        s.sendall(data)
        return True
    except (ConnectionError, ssl.SSLError, OSError):
        return False


def flood_answer(stack, flood):
    """Sends flood (bytes after the preface) and then a marker PING; returns what ended the
    conversation: ("goaway", error code), ("marker", None) when the gateway answered the PING
    sent after the flood without a GOAWAY first, or ("closed", None)."""
    s = h2_connect(stack)
    try:
        send_all_tolerant(s, flood + frame(PING, 0, 0, MARKER))
        for ftype, flags, _, payload in frames(s):
            if ftype == GOAWAY:
                return "goaway", struct.unpack(">I", payload[4:8])[0]
            if ftype == PING and flags & ACK and payload == MARKER:
                return "marker", None
        return "closed", None
    finally:
        s.close()


def assert_calm(stack, flood, what):
    since = len(stack.log_lines())
    how, code = flood_answer(stack, flood)
    assert (how, code) == ("goaway", ENHANCE_YOUR_CALM), \
        "%s flood: expected GOAWAY ENHANCE_YOUR_CALM, got %s %s" % (what, how, code)
    # The gateway names the flood in its log, and is still serving everyone else.
    assert any("flood" in line and what in line for line in stack.log_lines()[since:]), \
        "no log line names the %s flood" % what
    assert stack.health() == "SERVING"


# --- finding 6: control-frame floods ---

def test_ping_flood_answered_with_enhance_your_calm(stack):
    assert_calm(stack, b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(5000)),
                "PING")


def test_settings_flood_answered_with_enhance_your_calm(stack):
    assert_calm(stack, frame(SETTINGS, 0, 0) * 2000, "SETTINGS")


def test_window_update_flood_answered_with_enhance_your_calm(stack):
    # +1 on the connection window, 20 000 times: 20x the budget, 20 kB of window in total.
    assert_calm(stack, frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 20000, "WINDOW_UPDATE")


def test_priority_flood_answered_with_enhance_your_calm(stack):
    # PRIORITY on an idle stream is legal and changes nothing we serve: 5000 of them.
    prio = struct.pack(">IB", 0, 15)
    assert_calm(stack, b"".join(frame(PRIORITY, 0, 2 * (i % 50) + 1, prio) for i in range(5000)),
                "PRIORITY")


def test_rst_stream_flood_answered_with_enhance_your_calm(stack):
    # Rapid reset: open a stream and reset it at once, 4000 times (10x the budget).
    rst = struct.pack(">I", 8)  # CANCEL
    flood = b"".join(request_headers(2 * i + 1, path=b"/waygate.v1.Nothing/Here") +
                     frame(RST_STREAM, 0, 2 * i + 1, rst) for i in range(4000))
    assert_calm(stack, flood, "RST_STREAM")


def test_ordinary_control_traffic_is_not_a_flood(stack):
    """A well-behaved client's control frames stay well inside the budgets: a few PINGs, one
    SETTINGS, window updates, and calls; the marker PING is answered and no GOAWAY comes."""
    ordinary = (frame(PING, 0, 0, b"\x00" * 8) * 5 + frame(SETTINGS, 0, 0) +
                frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)) * 5 +
                b"".join(request_headers(2 * i + 1) +
                         frame(DATA, END_STREAM, 2 * i + 1, b"\x00" * 5) for i in range(20)))
    assert flood_answer(stack, ordinary) == ("marker", None)


def test_refusal_flood_log_lines_rate_limited(stack):
    """4000 streams refused on one connection (a wrong content-type) write a bounded number of
    "refused" lines, then say how many they left out."""
    since = len(stack.log_lines())
    s = h2_connect(stack)
    try:
        for start in range(0, 4000, 100):  # under max_concurrent_streams at each step
            batch = b"".join(request_headers(2 * i + 1, ctype=b"text/plain",
                                             flags=END_HEADERS | END_STREAM)
                             for i in range(start, start + 100))
            s.sendall(batch + frame(PING, 0, 0, MARKER))
            for ftype, flags, _, payload in frames(s):
                if ftype == PING and flags & ACK and payload == MARKER:
                    break
                assert ftype != GOAWAY, "refusals are not a flood: no GOAWAY expected"
    finally:
        s.close()
    assert_lines_limited(stack, since, lambda m: "refused" in m and "stream" in m, "refusals")


def assert_lines_limited(stack, since, counted, what):
    """The log since line `since` says how many per-stream lines it left out, and holds at most
    100 lines whose message `counted` accepts (of 4000 `what`). None is right too: the gateway-wide
    budget may have been spent (by the test before, or by other connections) when they came."""
    def records():
        return [json.loads(line) for line in stack.log_lines()[since:]]

    # The count of lines left out is written with the next line allowed, or when the connection
    # closes: poll for it (bounded).
    assert wait_for(lambda: any("suppressed" in r.get("msg", "") for r in records()), 30), \
        "no count of suppressed lines"
    n = sum(1 for r in records() if counted(r.get("msg", "")))
    assert n <= 100, "%d log lines for 4000 %s" % (n, what)


@pytest.mark.parametrize("kind", ["denied", "malformed"])
def test_failing_call_flood_log_lines_rate_limited(stack, kind):
    """4000 calls on one connection that each fail at once (a method the courier's role may not
    call: PERMISSION_DENIED; a malformed request: INVALID_ARGUMENT) write a bounded number of
    "call finished" lines, then say how many they left out: a certificate holder cannot write
    the log at the rate it can fail calls."""
    path, body = {
        "denied": (b"/waygate.v1.Compliance/Report", b""),
        "malformed": (b"/waygate.v1.WaybillQuery/Get", b"\x0a\xff\xff\xff\xff\x0f"),
    }[kind]
    message = b"\x00" + struct.pack(">I", len(body)) + body
    since = len(stack.log_lines())
    s = h2_connect(stack)
    answered = set()
    try:
        read = frames(s)  # one reader: a frame read past a batch's last answer is kept
        for start in range(0, 4000, 100):  # under max_concurrent_streams at each step
            ids = {2 * i + 1 for i in range(start, start + 100)}
            s.sendall(b"".join(request_headers(sid, path=path) +
                               frame(DATA, END_STREAM, sid, message) for sid in sorted(ids)))
            for ftype, flags, sid, _ in read:
                assert ftype != GOAWAY, "failing calls are not a flood: no GOAWAY expected"
                if (ftype == HEADERS and flags & END_STREAM) or ftype == RST_STREAM:
                    answered.add(sid)
                if ids <= answered:
                    break
            assert ids <= answered, "the connection ended before its calls were answered"
    finally:
        s.close()
    assert_lines_limited(stack, since, lambda m: m.startswith("call finished"), "failing calls")


def log_records_since(stack, since):
    """The log's records from line `since` on; a line that is not JSON becomes a record whose
    msg says so."""
    out = []
    for line in stack.log_lines()[since:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"msg": "NOT JSON: " + line[:200]})
    return out


def test_refusal_log_lines_limited_across_connections_of_one_certificate(stack):
    """The refusal flood above spread over 40 connections of one certificate, 100 streams each:
    each new connection has a fresh per-connection budget (20 lines), but every line also comes
    out of the gateway's budget of per-stream lines, so reconnecting writes no more than one
    connection would: at most 100 "refused" lines for the 4000, and a count of the rest."""
    since = len(stack.log_lines())
    for _ in range(40):
        s = h2_connect(stack)
        try:
            s.sendall(b"".join(request_headers(2 * i + 1, ctype=b"text/plain",
                                               flags=END_HEADERS | END_STREAM)
                               for i in range(100)) + frame(PING, 0, 0, MARKER))
            for ftype, flags, _, payload in frames(s):
                if ftype == PING and flags & ACK and payload == MARKER:
                    break
        finally:
            s.close()
    assert_lines_limited(stack, since, lambda m: "refused" in m and "stream" in m,
                         "refusals on 40 connections")


def garbage_handshakes(host, port, source, n):
    """n connections from address source, each sending a TLS record that is no ClientHello and
    reading until the gateway closes (so the gateway's line about it is written when this
    returns)."""
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(10)
        try:
            s.connect((host, port))
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            while s.recv(4096):
                pass
        except OSError:
            pass
        finally:
            s.close()


def test_failed_handshakes_do_not_write_a_log_line_each(stack):
    """800 connections from 8 loopback addresses (100 each: under the per-address burst, so none
    is refused at accept) that send a TLS record that is no ClientHello. Each is answered (the
    gateway's FIN is read) before the next opens, so every line the gateway writes for them is in
    the log when counted. Lines about connections come out of one gateway-wide budget, which no
    certificate is needed to spend: at most 100 lines for the 800, and the rest counted (the
    periodic "log rate limit" line, and the metrics)."""
    host, port = hostport(stack.addr)
    since = len(stack.log_lines())
    before = scrape_metrics(stack)
    for a in range(8):
        garbage_handshakes(host, port, "127.0.0.%d" % (20 + a), 100)
    lines = [r for r in log_records_since(stack, since)
             if r.get("msg", "").startswith(("tls error", "tls handshake refused"))]
    assert len(lines) <= 100, \
        "%d log lines for 800 unauthenticated handshakes that failed" % len(lines)
    key = 'waygate_log_lines_suppressed_total{kind="connection"}'
    assert float(scrape_metrics(stack)[key]) - float(before[key]) >= 800 - 100, \
        "the lines left out are not counted"
    assert wait_for(lambda: any(r.get("msg", "").startswith("log rate limit")
                                for r in log_records_since(stack, since)), 30), \
        "no count of the lines left out"


def test_reconnects_of_known_clients_do_not_spend_the_budget_that_reports_attacks(stack):
    """A courier reconnecting 60 times in a row (a "tls established" line each, more than the
    budget's burst of 20) and then 5 garbage handshakes without a certificate: the 5 are all in
    the log. Lines about connections with a principal draw on a budget of their own, so ordinary
    reconnects cannot hide an attack (nor an attacker's flood the known clients). A gateway of
    its own, so both budgets start full. (One shared budget left the garbage lines out: red.)"""
    gw = SecondGateway(stack, "log_budgets")
    try:
        host, port = hostport(gw.addr)
        for _ in range(60):
            ch = waygate_proto.channel(gw.addr, stack.ca, *stack.cert("courier_a"))
            try:
                assert waygate_proto.health_check(ch, timeout=10) == "SERVING"
            finally:
                ch.close()
        for a in range(5):
            garbage_handshakes(host, port, "127.0.0.%d" % (40 + a), 1)
        records = [json.loads(line) for line in gw.log_text().splitlines() if line.startswith("{")]
        established = [r for r in records if r.get("msg", "").startswith("tls established")]
        garbage = [r for r in records if r.get("msg", "").startswith("tls error")
                   and r.get("peer", "").startswith("127.0.0.4")]
        print("%d tls established lines for 61 connections, %d of 5 garbage handshakes logged" %
              (len(established), len(garbage)))
        assert len(established) < 60, "the reconnects were not rate-limited at all"
        assert len(garbage) == 5, garbage
    finally:
        gw.close()


# --- finding 9: the missing certificate ---

def tcp_state(sock):
    """The kernel's TCP state of sock (tcpi_state: 7 CLOSE after a reset, 8 CLOSE_WAIT after a
    FIN)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def test_missing_certificate_gets_certificate_required_alert(stack):
    """TLS 1.3 without a client certificate. The handshake completes on the client's side
    before the gateway has seen the (empty) Certificate, so an HTTP/2 client has sent its
    preface before the alert arrives, and writes again before it reads. The client must then
    read the certificate_required alert (OpenSSL: TLSV13_ALERT_CERTIFICATE_REQUIRED), not a
    reset: the gateway must not close the socket with the client's bytes unread (the kernel
    then answers with RST). The test waits (bounded poll) until the gateway's side has ended
    the conversation (RST or FIN seen), so that the outcome does not depend on timing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(stack.ca)
    ctx.set_alpn_protocols(["h2"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    seen = []
    for _ in range(5):
        sock = socket.create_connection(hostport(stack.addr), timeout=30)
        try:
            s = ctx.wrap_socket(sock, server_hostname="localhost")  # completes on our side
            try:
                s.sendall(PREFACE + frame(SETTINGS, 0, 0))
                deadline = time.monotonic() + 30
                while tcp_state(s) not in (7, 8) and time.monotonic() < deadline:
                    time.sleep(0.01)
                s.sendall(request_headers(1) + frame(DATA, END_STREAM, 1, b"\x00" * 5))
                s.recv(1)
                seen.append("no error")
            except ssl.SSLError as e:
                seen.append(e.reason or str(e))
            except (ConnectionError, OSError) as e:
                seen.append("%s: %s" % (type(e).__name__, e))
        finally:
            sock.close()
    assert seen == ["TLSV13_ALERT_CERTIFICATE_REQUIRED"] * 5, seen


# --- finding 4: unauthenticated slot exhaustion ---

def scrape_metrics(stack):
    """{sample name with labels: value} from GET /metrics (DIR/env WAYGATE_METRICS_ADDR)."""
    return scrape_metrics_at(stack.env["WAYGATE_METRICS_ADDR"])

ATTACKER = r"""
import select, socket, sys
host, port, addrs, per = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
socks, opened = {}, 0
def reopen(src):
    global opened
    s = socket.socket()
    s.bind((src, 0))
    s.setblocking(False)
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    socks[s] = src
    opened += 1
for a in addrs:
    for _ in range(per):
        reopen(a)
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    for s in select.select(list(socks), [], [], 0.05)[0]:
        src = socks.pop(s)  # readable: closed by the gateway (it never sends us anything else)
        s.close()
        reopen(src)
print("opened", opened, flush=True)
"""


def calls_under_silent_sockets(stack, addrs, per, principal, timeout):
    """Holds `per` plain TCP sockets from each of addrs that never start TLS, reopening each one
    the gateway closes, while `principal` makes 100 health checks from 127.0.0.1, each on its own
    new connection. Returns (answered, the attacker's report)."""
    host, port = hostport(stack.addr)
    att = subprocess.Popen([sys.executable, "-c", ATTACKER, host, str(port), ",".join(addrs),
                            str(per)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ok, out = 0, ""
    try:
        assert att.stdout.readline().strip() == "ready"
        cert, key = stack.cert(principal)
        for _ in range(100):
            ch = waygate_proto.channel(stack.addr, stack.ca, cert, key,
                                       [("grpc.use_local_subchannel_pool", 1)])
            try:
                if waygate_proto.health_check(ch, timeout=timeout) == "SERVING":
                    ok += 1
            except grpc.RpcError:
                pass
            finally:
                ch.close()
    finally:
        att.stdin.close()
        try:
            out = att.stdout.read()
            att.wait(timeout=30)
        finally:
            if att.poll() is None:
                att.kill()
                att.wait()
    return ok, out.strip()


def test_slot_exhaustion_from_one_address(stack):
    """300 sockets from 127.0.0.2 that never start TLS (more than max_connections = 256 of the
    dev stack), reopened as the gateway closes them; 100 health checks from 127.0.0.1, each on
    its own new connection: at least 99% answered. (100 new connections fit in one address's
    accept burst, 128, however fast the client runs: the bound does not depend on speed.)"""
    since = len(stack.log_lines())
    ok, report = calls_under_silent_sockets(stack, ["127.0.0.2"], 300, "courier_a", 10)
    print("legitimate calls: %d of 100 answered; attacker: %s" % (ok, report))
    assert ok >= 99, "only %d of 100 legitimate calls answered under attack" % ok
    # The attacker was held by the per-address limits (the first refusal is always logged), and
    # the metrics count those refusals by limit.
    assert any("refusing connections" in line and "per_address" in line
               for line in stack.log_lines()[since:]), "the attacker was never refused"
    metrics = scrape_metrics(stack)
    refused = sum(float(v) for k, v in metrics.items()
                  if k.startswith("waygate_connections_refused_total{") and "per_address" in k)
    assert refused > 0, "waygate_connections_refused_total does not count the refusals"
    assert "waygate_connections_preauth" in metrics


# --- out of file descriptors ---

def open_sockets(addr, n, sources=None):
    """n TCP connections to addr ("host:port") that send nothing, connected without waiting: a
    listener that stops accepting leaves them in the kernel's backlog (or its SYN queue). With
    sources (loopback addresses), the i-th is bound to sources[i % len(sources)]."""
    host, port = addr.rsplit(":", 1)
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        if sources:
            s.bind((sources[i % len(sources)], 0))
        s.connect_ex((host, int(port)))
        socks.append(s)
    return socks


def test_out_of_file_descriptors_neither_spins_nor_floods_the_log(stack):
    """A gateway whose file-descriptor limit is 256 (prlimit), with a metrics listener.
    - 300 connections to the metrics port from 100 addresses (3 each, under the listener's 4 per
      address): it holds at most 16 of them (the rest wait in the kernel), so the process's
      descriptors grow by at most 16 (and a few of its own).
    - 300 connections to the gRPC port that never start TLS, the caps on unauthenticated
      connections and their timeouts raised past them: accept(2) fails with EMFILE. libevent
      would retry on every loop turn and warn each time (measured: 1.6 million lines in 10 s,
      half of them not JSON); the listener pauses instead: the log stays JSON lines and names the
      failure a bounded number of times.
    - Once the sockets go, the gRPC listener answers again by itself, and the metrics count the
      failed accepts."""
    mport = free_port()

    def edit(text):
        text = text.replace("[log]", "[metrics]\nlisten = 127.0.0.1:%d\n\n[log]" % mport)
        return text.replace("[server]\n", "[server]\nmax_preauth_per_address = 1000\n"
                            "accept_rate_per_address = 100000\npreauth_timeout_ms = 60000\n", 1) \
            .replace("max_connections = 256", "max_connections = 4096") \
            .replace("handshake_timeout_ms = 5000", "handshake_timeout_ms = 60000")

    g = ExtraGateway(stack, "emfile", edit)
    socks = []

    def records(since):
        out = []
        for line in g.log().splitlines()[since:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": "NOT JSON: " + line[:200]})
        return out

    def nfds():
        return len(os.listdir("/proc/%d/fd" % g.proc.pid))

    try:
        resource.prlimit(g.proc.pid, resource.RLIMIT_NOFILE, (256, 256))
        maddr = "127.0.0.1:%d" % mport
        assert "waygate_connections" in scrape_metrics_at(maddr)
        base = nfds()
        socks += open_sockets(maddr, 300, ["127.0.1.%d" % i for i in range(1, 101)])
        assert wait_for(lambda: nfds() >= base + 16, 30), "the metrics connections not accepted"
        time.sleep(0.5)  # room for a 17th accept, which must not come
        assert nfds() <= base + 16 + 4, "%d descriptors for 300 metrics connections" % (
            nfds() - base)
        for s in socks:
            s.close()
        socks = []
        assert wait_for(lambda: nfds() <= base + 4, 30), "the metrics connections not closed"

        since = len(g.log().splitlines())
        socks += open_sockets(g.addr, 300)
        # The gRPC listener's own line: another part may run out first (the kernel holds back
        # the connections past the listen backlog and lets them in at their SYN's retry, 1 s or
        # more later), and the sockets stay open until the listener has met the limit itself.
        assert wait_for(lambda: any(r.get("msg", "").startswith(
            "accept on the grpc listener failed: Too many open files") for r in records(since)),
            30), "the gRPC listener never ran out of descriptors; lines about the limit: %r" % [
                r["msg"] for r in records(since) if "Too many open files" in r.get("msg", "")]
        # one health check over TLS while out of descriptors (its outcome is not asserted)
        try:
            stack.health("courier_b", addr=g.addr, timeout=2)
        except grpc.RpcError:
            pass
        new = records(since)
        raw = [r["msg"] for r in new if r.get("msg", "").startswith("NOT JSON")]
        accept = [r for r in new if "Too many open files" in r.get("msg", "")]
        assert not raw, "%d log lines are not JSON, e.g. %r" % (len(raw), raw[0])
        assert len(accept) <= 10, "%d log lines about a failed accept" % len(accept)
    finally:
        for s in socks:
            s.close()
    try:
        assert wait_for(lambda: stack.health("backend", addr=g.addr, timeout=2) == "SERVING", 30), \
            "the gRPC listener did not recover once descriptors were free"
        m = scrape_metrics_at("127.0.0.1:%d" % mport)
        assert float(m['waygate_accept_paused_total{listener="grpc"}']) > 0
    finally:
        g.close()


def scrape_metrics_at(addr):
    """{sample name with labels: value} from GET /metrics at addr ("host:port")."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = value
    return out


def evicted(metrics):
    return sum(float(v) for k, v in metrics.items()
               if k.startswith("waygate_connections_evicted_total{"))


def test_silent_sockets_from_four_addresses_leave_room_for_handshakes(stack):
    """Four loopback addresses each hold max_preauth_per_address (32) plain TCP sockets that
    never start TLS, reopened as the gateway closes them: 128 sockets, twice the global
    unauthenticated cap of the dev stack (64, a quarter of max_connections), so the cap stays
    full. A new connection then closes the oldest unauthenticated one instead of being refused:
    courier_b's 100 new connections from 127.0.0.1, at least 90 answered (before: none). The
    closings are counted and logged; the cap itself still holds."""
    since = len(stack.log_lines())
    before = evicted(scrape_metrics(stack))
    ok, report = calls_under_silent_sockets(
        stack, ["127.0.0.%d" % (60 + i) for i in range(4)], 32, "courier_b", 5)
    print("legitimate new connections: %d of 100 answered; attacker: %s" % (ok, report))
    assert ok >= 90, "only %d of 100 legitimate connections answered" % ok
    metrics = scrape_metrics(stack)
    assert evicted(metrics) > before, "waygate_connections_evicted_total does not count them"
    assert float(metrics["waygate_connections_preauth"]) <= 64
    assert any("closing the oldest unauthenticated connection" in line and
               "max_preauth_connections" in line
               for line in stack.log_lines()[since:]), "no closing was logged"


KEYUPDATE_C = r"""
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

/* ca cert key port n [at-once|at-once-http1]: a TLS 1.3 mTLS connection (ALPN h2, preface and
 * SETTINGS sent) that sends n KeyUpdate messages, each asking for one back, and reads what the
 * server sends when it comes, or every 256. With "at-once" the n messages are made in memory
 * first and written as one stream of bytes as fast as the socket takes them, so the server always
 * has the next one waiting, however slowly it answers; "at-once-http1" does the same with no ALPN
 * and nothing sent before the messages (an HTTPS listener's connection waiting for a request).
 * Prints how many went out before the connection failed (with "at-once": the bytes of the stream
 * written), the error code of the GOAWAY the server sent (-1: none read), how the connection
 * ended: "open" (it did not), "reset" (ECONNRESET or EPIPE), "eof" (close_notify or FIN) or
 * "error", and how many KeyUpdates the server sent (its answers). A GOAWAY the client has not
 * read yet when the server's close (RST: it closes with our records unread) arrives is lost with
 * the socket's receive queue, so a reset without one is the same answer seen later. */
static unsigned char in[1 << 20];
static size_t inlen;
static const char *ended = "open";
""" + KEYUPDATE_COUNT_C + MTLS_CONNECT_C + r"""
/* Why the connection failed, from the SSL call that failed with r. */
static const char *failure(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);

    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
        return "eof";
    if (e == SSL_ERROR_SYSCALL && (errno == ECONNRESET || errno == EPIPE))
        return "reset";
    return "error";
}

static long goaway_code(void)
{
    size_t off = 0;

    while (off + 9 <= inlen) {
        size_t len = (size_t)in[off] << 16 | (size_t)in[off + 1] << 8 | in[off + 2];
        if (off + 9 + len > inlen)
            break;
        if (in[off + 3] == 7 && len >= 8)
            return (long)in[off + 13] << 24 | in[off + 14] << 16 | in[off + 15] << 8 | in[off + 16];
        off += 9 + len;
    }
    return -1;
}

/* Reads what has arrived; returns 0 while the connection is up. */
static int drain(SSL *ssl, int fd)
{
    int r = 0;

    fcntl(fd, F_SETFL, O_NONBLOCK);
    errno = 0;
    while (inlen < sizeof(in) && (r = SSL_read(ssl, in + inlen, (int)(sizeof(in) - inlen))) > 0)
        inlen += (size_t)r;
    fcntl(fd, F_SETFL, 0);
    if (inlen < sizeof(in) && SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ)
        return 0;
    if (strcmp(ended, "open") == 0) /* the first failure names the end */
        ended = inlen < sizeof(in) ? failure(ssl, r) : "error";
    return -1;
}

int main(int argc, char **argv)
{
    static const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int http1 = argc == 7 && strcmp(argv[6], "at-once-http1") == 0, fd = -1;
    long n, i;
    SSL *ssl;

    if ((argc != 6 && (argc != 7 || (strcmp(argv[6], "at-once") != 0 && !http1))) ||
        ctx == NULL)
        return 2;
    signal(SIGPIPE, SIG_IGN); /* a write after the gateway closed fails, and is counted */
    n = atol(argv[5]);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* a FIN alone is "eof" too */
    if ((ssl = mtls_connect(ctx, argv, !http1, &fd)) == NULL ||
        (!http1 && SSL_write(ssl, pre, sizeof(pre) - 1) <= 0))
        return 2;
    SSL_set_msg_callback(ssl, count_cb);
    if (argc == 7) {
        BIO *mem = BIO_new(BIO_s_mem());
        char *stream;
        long len, off = 0;

        if (mem == NULL)
            return 2;
        SSL_set0_wbio(ssl, mem); /* the messages into memory; reading stays on the socket */
        for (i = 0; i < n; i++)
            if (!SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) || SSL_do_handshake(ssl) != 1)
                return 2;
        len = BIO_get_mem_data(mem, &stream);
        for (;;) {
            struct pollfd p = {fd, POLLIN | (off < len ? POLLOUT : 0), 0};

            if (poll(&p, 1, 10000) <= 0)
                break; /* nothing for 10 s: "open" */
            if (off < len && (p.revents & POLLOUT)) {
                ssize_t w = send(fd, stream + off, (size_t)(len - off), MSG_DONTWAIT);

                if (w > 0)
                    off += w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    ended = errno == ECONNRESET || errno == EPIPE ? "reset" : "error";
                    break;
                }
            }
            if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && drain(ssl, fd) != 0)
                break;
        }
        printf("%ld %ld %s %ld\n", off, goaway_code(), ended, answers);
        return 0;
    }
    for (i = 0; i < n; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        int r;

        errno = 0;
        if (!SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED)) {
            ended = "error";
            break;
        }
        if ((r = SSL_do_handshake(ssl)) != 1) {
            ended = failure(ssl, r);
            break;
        }
        if ((i % 256 == 255 || poll(&p, 1, 0) == 1) && drain(ssl, fd) != 0)
            break;
    }
    (void)drain(ssl, fd); /* what came before the close, if OpenSSL still reads */
    printf("%ld %ld %s %ld\n", i, goaway_code(), ended, answers);
    return 0;
}
"""


FLOOD = 1000000


def test_key_update_flood_is_answered_like_a_ping_flood(stack, tmp_path):
    """courier_a sends up to a million TLS 1.3 KeyUpdate messages on one connection, each asking
    for one back: each costs the gateway two key derivations, new cipher contexts and a record, as
    a PING costs it an answer (before: 200 000 in 20 s all accepted, 28% of a core). The
    connection has a budget (32 at once, then one a second): the gateway writes one warning naming
    the peer and the certificate's principal and closes the connection long before the flood ends
    (a million records are more than both sockets' buffers hold, so what the client wrote before
    it saw the close does not depend on speed), and goes on serving. On the wire the client reads
    GOAWAY ENHANCE_YOUR_CALM, or, when the close (a reset: the gateway closes with the client's
    records unread) arrives before it has read the GOAWAY, which the reset then discards, a reset
    or an end of stream; both are accepted, any other GOAWAY is not. Built with the system's gcc
    and libssl-dev (the build's own dependencies): Python's ssl module cannot send a KeyUpdate."""
    exe = build_tls_c(tmp_path, "keyupdate", KEYUPDATE_C)
    since = len(stack.log_lines())
    _, port = hostport(stack.addr)
    cert, key = stack.cert("courier_a")
    r = subprocess.run([exe, stack.ca, cert, key, str(port), str(FLOOD)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, "the KeyUpdate client could not connect: %s" % r.stderr
    went, code, ended, _ = r.stdout.split()
    went, code = int(went), int(code)
    print("KeyUpdate messages written on one connection: %d of %d; GOAWAY %d; ended: %s" % (
        went, FLOOD, code, ended))
    assert went < FLOOD and ended != "open", \
        "%d KeyUpdate messages accepted on one connection, none refused" % went
    if code != -1:
        assert code == ENHANCE_YOUR_CALM, "expected GOAWAY ENHANCE_YOUR_CALM, got %d" % code
    else:
        assert ended in ("reset", "eof"), "no GOAWAY read, and the connection ended by %s" % ended
    # the gateway's side: its one warning, written before it closed the connection
    assert wait_for(lambda: any("TLS KeyUpdate or renegotiation flood" in line
                                for line in stack.log_lines()[since:]), 30), \
        "no KeyUpdate flood warning"
    warned = [json.loads(line) for line in stack.log_lines()[since:]
              if "TLS KeyUpdate or renegotiation flood" in line]
    assert len(warned) == 1, "%d KeyUpdate flood warnings for one connection" % len(warned)
    assert warned[0]["level"] == "warn" and warned[0]["principal"] == "courier_a" and \
        warned[0]["peer"].startswith("127.0.0.1:")
    assert "ENHANCE_YOUR_CALM" in warned[0]["msg"]
    assert stack.health() == "SERVING"


KEYUPDATES_AT_ONCE = 8192  # ~230 KB, more than one read of OpenSSL's (read-ahead) buffer
KEYUPDATES_ANSWERED_MAX = 1024  # far above the budget's burst (32), far below the flood


def test_key_update_flood_written_at_once_is_cut_within_a_read(stack, tmp_path):
    """courier_b writes 8192 TLS 1.3 KeyUpdate messages at once, each asking for one back, so the
    gateway always has the next one waiting in its socket: it answers at most one read-ahead
    buffer's worth before the budget (32 at once) is charged and the connection closed, far fewer
    than the flood (counted as the server's KeyUpdates the client reads). Red with OpenSSL's
    SSL_MODE_AUTO_RETRY left on: one SSL_read then went back to the socket for the next record and
    read and answered every message waiting before the loop could charge any."""
    exe = build_tls_c(tmp_path, "keyupdate", KEYUPDATE_C)
    _, port = hostport(stack.addr)
    cert, key = stack.cert("courier_b")
    r = subprocess.run([exe, stack.ca, cert, key, str(port), str(KEYUPDATES_AT_ONCE),
                        "at-once"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "the KeyUpdate client could not connect: %s" % r.stderr
    written, code, ended, answered = r.stdout.split()
    print("KeyUpdate flood of %d at once: %s bytes written, %s answered; GOAWAY %s; ended: %s" % (
        KEYUPDATES_AT_ONCE, written, answered, code, ended))
    assert ended != "open", "the connection outlived a flood of %d" % KEYUPDATES_AT_ONCE
    assert int(code) in (-1, ENHANCE_YOUR_CALM), code
    assert int(answered) <= KEYUPDATES_ANSWERED_MAX, \
        "the gateway answered %s KeyUpdates before closing" % answered
    assert stack.health() == "SERVING"


RENEGOTIATION_C = r"""
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

/* ca cert key port records: a TLS 1.2 mTLS connection (ALPN h2, ECDHE-ECDSA-AES128-GCM-SHA256)
 * that then writes `records` records of its own, each holding PER_RECORD empty ClientHello
 * messages (4 bytes each, a renegotiation attempt each), sealed with the connection's client
 * write key (its key block from OpenSSL's TLS1-PRF, the records with OpenSSL's AES-GCM: OpenSSL
 * has no call that sends a handshake message of one's choosing), and counts the alert records
 * the server sends back (one warning no_renegotiation per attempt) until the connection ends or
 * nothing comes for 10 s. Prints "alerts ended" ("open": the connection did not end). */
#define PER_RECORD 4096
""" + MTLS_CONNECT_C + r"""
static int key_block(SSL *ssl, unsigned char *out, size_t outlen)
{
    static const char label[] = "key expansion";
    unsigned char master[48], seed[sizeof(label) - 1 + 64];
    size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof(master));
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
    EVP_KDF_CTX *k = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[4];
    int ok;

    memcpy(seed, label, sizeof(label) - 1);
    SSL_get_server_random(ssl, seed + sizeof(label) - 1, 32);
    SSL_get_client_random(ssl, seed + sizeof(label) - 1 + 32, 32);
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, master, mlen);
    p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed));
    p[3] = OSSL_PARAM_construct_end();
    ok = k != NULL && mlen == 48 && EVP_KDF_derive(k, out, outlen, p) == 1;
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(kdf);
    return ok;
}

static void be(unsigned char *p, unsigned long long v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

int main(int argc, char **argv)
{
    static unsigned char in[65536];
    unsigned char kb[40], plain[PER_RECORD * 4], *out, *rec;
    size_t plen = sizeof(plain), reclen = 5 + 8 + plen + 16, len, off = 0, hdr = 0, skip = 0;
    long records, alerts = 0;
    const char *ended = "open";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int fd = -1, n;
    unsigned char head[5];
    SSL *ssl;

    if (argc != 6 || ctx == NULL)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    records = atol(argv[5]);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (!SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256") ||
        (ssl = mtls_connect(ctx, argv, 1, &fd)) == NULL)
        return 2;
    if (SSL_version(ssl) != TLS1_2_VERSION || !key_block(ssl, kb, 40))
        return 3;
    for (size_t i = 0; i < plen; i += 4) { /* client_hello, length 0 */
        plain[i] = 1;
        plain[i + 1] = plain[i + 2] = plain[i + 3] = 0;
    }
    len = reclen * (size_t)records;
    if ((out = malloc(len)) == NULL)
        return 2;
    for (long r = 0; r < records; r++) { /* the Finished was sequence number 0 */
        unsigned long long seq = (unsigned long long)r + 1;
        unsigned char nonce[12], aad[13];
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int outl = 0, fin = 0;

        rec = out + reclen * (size_t)r;
        memcpy(nonce, kb + 32, 4); /* client_write_IV, then the explicit nonce */
        be(nonce + 4, seq, 8);
        be(aad, seq, 8);
        aad[8] = 22;
        aad[9] = 3;
        aad[10] = 3;
        be(aad + 11, plen, 2);
        rec[0] = 22;
        rec[1] = 3;
        rec[2] = 3;
        be(rec + 3, 8 + plen + 16, 2);
        memcpy(rec + 5, nonce + 4, 8);
        if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, kb, nonce) != 1 ||
            EVP_EncryptUpdate(c, NULL, &outl, aad, sizeof(aad)) != 1 ||
            EVP_EncryptUpdate(c, rec + 13, &outl, plain, (int)plen) != 1 ||
            EVP_EncryptFinal_ex(c, rec + 13 + outl, &fin) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, rec + 13 + plen) != 1)
            return 2;
        EVP_CIPHER_CTX_free(c);
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN | (off < len ? POLLOUT : 0), 0};

        if (poll(&p, 1, 10000) <= 0)
            break; /* nothing for 10 s: "open" */
        if (off < len && (p.revents & POLLOUT)) {
            ssize_t w = send(fd, out + off, len - off, MSG_DONTWAIT);

            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                ended = "reset";
                break;
            }
        }
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        n = (int)recv(fd, in, sizeof(in), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            ended = n == 0 ? "eof" : "reset";
            break;
        }
        for (int i = 0; i < n; i++) { /* record headers: count the alerts */
            if (skip > 0) {
                skip--;
                continue;
            }
            head[hdr++] = in[i];
            if (hdr == 5) {
                alerts += head[0] == 21;
                skip = (size_t)head[3] << 8 | head[4];
                hdr = 0;
            }
        }
    }
    printf("%ld %s\n", alerts, ended);
    return 0;
}
"""
RENEGOTIATION_RECORDS = 16  # of 4096 attempts each


def test_renegotiation_flood_is_cut_like_a_key_update_flood(stack, tmp_path):
    """courier_b negotiates TLS 1.2 and writes 16 records of 4096 ClientHello messages each (4
    bytes each): every one a renegotiation attempt, which OpenSSL refuses with a warning alert and
    carries on, each costing the gateway a pass of its handshake state machine and an alert record
    written. They are charged to the KeyUpdate budget (32 at once, then one a second): the
    connection closes after at most the two records one SSL_read may take (read-ahead: one full,
    one partial), with a warning "TLS KeyUpdate or renegotiation flood". Red with the attempts
    left uncounted: all 65 536 answered and the connection left open."""
    exe = build_tls_c(tmp_path, "renegotiate", RENEGOTIATION_C)
    since = len(stack.log_lines())
    _, port = hostport(stack.addr)
    cert, key = stack.cert("courier_b")
    r = subprocess.run([exe, stack.ca, cert, key, str(port), str(RENEGOTIATION_RECORDS)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "the renegotiating client failed (%d): %s" % (r.returncode,
                                                                            r.stderr)
    alerts, ended = r.stdout.split()
    print("renegotiation attempts: %d written, %s answered; ended: %s" % (
        RENEGOTIATION_RECORDS * 4096, alerts, ended))
    assert ended != "open", "the connection outlived %d renegotiation attempts" % (
        RENEGOTIATION_RECORDS * 4096)
    assert int(alerts) <= 2 * 4096 + 64, "%s renegotiation attempts answered" % alerts
    assert wait_for(lambda: any("TLS KeyUpdate or renegotiation flood" in line
                                for line in stack.log_lines()[since:]), 30), "no flood warning"
    assert stack.health() == "SERVING"


def test_key_update_flood_on_the_metrics_listener_closes_the_connection(stack, tmp_path):
    """courier_b's certificate (any the CA signed completes the handshake; the role is judged on
    the scrape) writes 8192 TLS 1.3 KeyUpdate messages at once to a [metrics] tls listener, which
    no scraper sends: past 32 the connection is closed from the loop, counted in
    waygate_metrics_key_update_closed_total and not as a deadline close, with a warning naming
    the peer, a few dozen answered. Red without the count (all 8192 answered, the connection held
    to its 10 s deadline) and with SSL_MODE_AUTO_RETRY left on (all 8192 read in one SSL_read)."""
    from test_metrics import https_response
    mport = free_port()
    maddr = "127.0.0.1:%d" % mport
    g = ExtraGateway(stack, "metrics-keyupdate", lambda t: t.replace(
        "[metrics]\n", "[metrics]\nlisten = %s\ntls = true\n" % maddr, 1))
    try:
        exe = build_tls_c(tmp_path, "keyupdate", KEYUPDATE_C)
        cert, key = stack.cert("courier_b")
        r = subprocess.run([exe, stack.ca, cert, key, str(mport), str(KEYUPDATES_AT_ONCE),
                            "at-once-http1"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, "the KeyUpdate client could not connect: %s" % r.stderr
        written, _, ended, answered = r.stdout.split()
        print("metrics listener, KeyUpdate flood of %d at once: %s bytes written, %s answered; "
              "ended: %s" % (KEYUPDATES_AT_ONCE, written, answered, ended))
        assert ended != "open", "the connection outlived a flood of %d" % KEYUPDATES_AT_ONCE
        assert int(answered) <= 64, "the listener answered %s KeyUpdates" % answered
        status, body, _ = https_response(stack, maddr, "sysadmin")
        assert status == 200, (status, body[:200])

        def count(name):
            m = re.search(r"(?m)^%s (\S+)$" % name, body)
            assert m, "no %s" % name
            return float(m.group(1))
        assert count("waygate_metrics_key_update_closed_total") == 1
        assert count("waygate_metrics_deadline_closed_total") == 0
        assert ("closed: TLS KeyUpdate or renegotiation flood (more than 32 on one connection)"
                in g.log())
    finally:
        g.close()


# --- the metrics listener: slow clients ---

TRICKLE = {
    # a request's headers, never ended
    "headers": b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200,
    # a TLS record header announcing a 512-byte ClientHello, then its bytes one at a time
    "clienthello": b"\x16\x03\x01\x02\x00" + b"\x01" * 200,
}


@pytest.mark.parametrize("kind", sorted(TRICKLE))
def test_trickling_clients_do_not_hold_the_metrics_listener(stack, kind):
    """16 sockets from 16 addresses (the listener's cap; it holds 4 per address), each sending a
    byte a second (well inside the 10 s inactivity timeout, which every byte restarts) into a
    request's headers (plain listener) or a ClientHello ([metrics] tls): each is closed all the
    same, unanswered and counted, and a scrape that waited behind them in the backlog is
    answered: the headers 10 s after their accept (waygate_metrics_deadline_closed_total), the
    ClientHello 2 s after, no request byte having come through TLS by then
    (waygate_metrics_first_byte_closed_total). Without the deadline they held the listener as
    long as they trickled."""
    from test_metrics import https_response
    mport = free_port()
    maddr = "127.0.0.1:%d" % mport
    tls = kind == "clienthello"
    g = ExtraGateway(stack, "trickle-" + kind, lambda t: t.replace(
        "[metrics]\n", "[metrics]\nlisten = %s\n%s" % (maddr, "tls = true\n" if tls else ""), 1))
    socks, result = [], {}

    def scrape():
        try:
            if tls:
                status, body, _ = https_response(stack, maddr, "sysadmin")
            else:
                c = http.client.HTTPConnection("127.0.0.1", mport, timeout=120)
                c.request("GET", "/metrics")
                r = c.getresponse()
                status, body = r.status, r.read().decode()
                c.close()
            result["scrape"] = (status, body)
        except Exception as e:  # reported by the assertion below
            result["scrape"] = (None, repr(e))

    try:
        data = TRICKLE[kind]
        for i in range(16):
            s = socket.create_connection(("127.0.0.1", mport), timeout=10,
                                         source_address=("127.0.2.%d" % (i + 1), 0))
            s.sendall(data[:1])
            socks.append(s)
        # behind the 16 in the kernel's backlog: accepted once one of them is closed
        t = threading.Thread(target=scrape, daemon=True)
        t.start()
        open_socks, sent, deadline = list(socks), 1, time.monotonic() + 90
        while open_socks and time.monotonic() < deadline:
            time.sleep(1)  # the attacker's pace, not a wait for the gateway
            still = []
            for s in open_socks:
                try:
                    s.sendall(data[sent:sent + 1])
                    r, _, _ = select.select([s], [], [], 0)
                    if r and not s.recv(4096, socket.MSG_DONTWAIT):
                        continue  # closed by the gateway (EOF)
                except (ConnectionError, BlockingIOError):
                    continue
                still.append(s)
            open_socks, sent = still, sent + 1
        assert not open_socks, "%d trickling sockets still open after %d bytes each" % (
            len(open_socks), sent)
        t.join(120)
        status, body = result.get("scrape", (None, "no answer"))
        assert status == 200, (status, body[:200])
        # (that scrape may have got in as the first of them closed: the count, once all have)
        scrape()
        status, body = result["scrape"]
        m = re.search(r"(?m)^waygate_metrics_%s_closed_total (\S+)$" % (
            "first_byte" if tls else "deadline"), body)
        assert status == 200 and m and float(m.group(1)) >= 16, (status, body[:200])
    finally:
        for s in socks:
            s.close()
        g.close()
