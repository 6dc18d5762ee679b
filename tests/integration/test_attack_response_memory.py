"""Response memory (the attacker's probe against server streaming), each attack performed
against a test build of the gateway (build/waygated-test, whose /waygate.test.v1.Test/Flood
streams COUNT messages of SIZE bytes while the call is writable, tests/support/waygated_test.c):

- CONNS connections x 100 Flood streams whose client never grants HTTP/2 flow-control window
  (SETTINGS_INITIAL_WINDOW_SIZE 0): without a gateway-wide bound each stream queues 256 KiB plus
  one message (CONNS x 100 x 260 KiB, over 300 MiB); with the response budgets
  (response_memory_per_connection, response_memory) the handlers wait and the gateway's resident
  memory grows by less than RSS_GROWTH_BOUND_KIB, while another client's calls are answered;
- a client that grants one byte of window at a time (each grant lets a byte out) is reset at
  stream_write_timeout_ms: a drip is not progress, the queue must drain;
- one client certificate's CERT_CONNS connections x CERT_STREAMS Flood streams with no window
  hold at most its share (response_memory_per_certificate), not the gateway's whole budget, and
  another certificate's Flood is answered in full meanwhile.

Frames are written by hand (test_attack_edge.py's helpers). No assertion depends on timing: the
waits are bounded polls, and a slow machine can only make the first test's broken gateway look
better (fewer of its streams queued yet), never make a correct one fail."""

import os
import select
import socket
import ssl
import struct
import time

from types import SimpleNamespace

import grpc
import pytest

import waygate_proto
from conftest import BUILD, ExtraGateway, free_port, wait_for
from test_attack_edge import (DATA, END_HEADERS, END_STREAM, HEADERS, PING, PREFACE, RST_STREAM,
                              SETTINGS, WINDOW_UPDATE, ACK, frame, request_headers)
from test_foundation import SecondGateway, hostport
from test_metrics import scrape, value
from test_streaming import proc_status_kib

FLOOD = b"/waygate.test.v1.Test/Flood"
CONNS = 12
STREAMS = 100  # the gateway's max_concurrent_streams
MIB = 1024 * 1024
CONN_BUDGET = 2 * MIB
GATEWAY_BUDGET = 8 * MIB
# The budget itself, one message past it, and the 1200 waiting calls' own state (call, arena
# with its 4 KiB filler, h2 and nghttp2 stream, request buffers: about 30 KiB each), with slack
# for allocator fragmentation. Without the budget the streams alone queue over 300 MiB.
RSS_GROWTH_BOUND_KIB = 96 * 1024
CANCEL = 0x8
STALL_MS = 2000
RESET_MSG = "reset: the client took"
SETTINGS_INITIAL_WINDOW_SIZE = 0x4


def flood_request(stream, count, size):
    svc = b"%d:%d" % (count, size)
    msg = b"\x0a" + bytes([len(svc)]) + svc
    return request_headers(stream, path=FLOOD) + \
        frame(DATA, END_STREAM, stream, b"\x00" + struct.pack(">I", len(msg)) + msg)


class RawConn:
    """An mTLS HTTP/2 connection whose streams start with `window` bytes of flow-control window
    (SETTINGS_INITIAL_WINDOW_SIZE). poll() reads what has arrived, acknowledges the gateway's
    SETTINGS and PINGs, and records per stream the DATA bytes and any RST_STREAM code."""

    def __init__(self, stack, addr, window, principal="courier_a"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(stack.ca)
        ctx.set_alpn_protocols(["h2"])
        ctx.load_cert_chain(*stack.cert(principal))
        sock = socket.create_connection(hostport(addr), timeout=60)
        self.s = ctx.wrap_socket(sock, server_hostname="localhost")
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0,
                                       struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, window)))
        self.buf = b""
        self.data = {}
        self.headers = set()
        self.rst = {}
        self.pings = 0
        self.closed = False

    def send(self, data):
        self.s.sendall(data)

    def poll(self, timeout):
        """Reads for up to timeout seconds (less when nothing more is waiting)."""
        end = time.monotonic() + timeout
        while not self.closed:
            left = end - time.monotonic()
            if self.s.pending() == 0 and (left <= 0 or not select.select([self.s], [], [], left)[0]):
                return
            try:
                chunk = self.s.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except (ConnectionError, ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                return
            self.buf += chunk
            self._frames()

    def _frames(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            ftype, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            if ftype == SETTINGS and not flags & ACK:
                self.s.sendall(frame(SETTINGS, ACK, 0))
            elif ftype == PING and flags & ACK:
                self.pings += 1
            elif ftype == PING:
                self.s.sendall(frame(PING, ACK, 0, payload))
            elif ftype == DATA:
                self.data[stream] = self.data.get(stream, 0) + n
            elif ftype == HEADERS:
                self.headers.add(stream)
            elif ftype == RST_STREAM:
                self.rst[stream] = int.from_bytes(payload[:4], "big")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def gateway(stack, name, extra):
    if not os.access(os.path.join(BUILD, "waygated-test"), os.X_OK):
        pytest.fail("no %s/waygated-test: build first" % BUILD)
    return SecondGateway(stack, name, extra, binary="waygated-test")


def test_streams_that_never_read_stay_within_the_response_budget(stack):
    """CONNS x 100 Flood streams with no window at all: the gateway's resident memory grows by
    less than RSS_GROWTH_BOUND_KIB (without the budgets: over 300 MiB), no stream is reset for
    it, and another client's health checks are answered meanwhile."""
    gw = gateway(stack, "respmem", "stream_write_timeout_ms = 600000\n"
                 "response_memory_per_connection = %d\nresponse_memory = %d"
                 % (CONN_BUDGET, GATEWAY_BUDGET))
    conns = []
    try:
        pid = gw.proc.pid
        # Warm up: one Flood read whole, so its code paths and buffers are in the baseline.
        warm = RawConn(stack, gw.addr, 1 << 20)
        conns.append(warm)
        warm.send(flood_request(1, 4, 4096))
        assert wait_for(lambda: warm.poll(0.2) or 1 in warm.headers and warm.data.get(1, 0) >=
                        4 * 4096, 30)
        base = proc_status_kib(pid, "VmRSS")
        for _ in range(CONNS):
            c = RawConn(stack, gw.addr, 0)
            conns.append(c)
            c.send(b"".join(flood_request(2 * i + 1, 100000, 4096) for i in range(STREAMS)) +
                   frame(PING, 0, 0, b"respmem!"))
        # The gateway has read every request once it answers each connection's PING after them.
        for c in conns[1:]:
            assert wait_for(lambda: c.poll(0.2) or c.pings > 0, 60), "no PING answer"
        peak = 0
        # A while for the handlers (16 start per loop turn) to queue what they will; the other
        # client is answered meanwhile.
        for _ in range(10):
            for c in conns:
                c.poll(0.05)
            assert stack.health(addr=gw.addr, timeout=30) == "SERVING"
            peak = max(peak, proc_status_kib(pid, "VmRSS"))
            time.sleep(0.5)
        growth = peak - base
        print("\n%d streams with no window: gateway VmRSS %d KiB -> peak %d KiB (+%d KiB)"
              % (CONNS * STREAMS, base, peak, growth))
        assert all(not c.rst for c in conns[1:]), "a waiting stream was reset"
        assert all(not c.closed for c in conns), "the gateway closed an attacker's connection"
        assert growth < RSS_GROWTH_BOUND_KIB, \
            "gateway RSS grew by %d KiB with %d streams that never read" % (growth,
                                                                            CONNS * STREAMS)
        assert gw.proc.poll() is None
    finally:
        for c in conns:
            c.close()
        gw.close()


def test_drip_of_window_is_reset_at_stall_timeout(stack):
    """A Flood stream whose client grants one byte of window every quarter second (each grant
    lets one byte out, so "a byte was taken" stays true) is reset (RST_STREAM CANCEL) once it has
    not taken half of its queue within stream_write_timeout_ms, and the gateway logs why."""
    gw = gateway(stack, "respdrip", "stream_write_timeout_ms = %d" % STALL_MS)
    c = None
    try:
        c = RawConn(stack, gw.addr, 0)
        c.send(flood_request(1, 1000, 65536))
        assert wait_for(lambda: c.poll(0.2) or 1 in c.headers, 30), "no response headers"
        deadline = time.monotonic() + 30 * STALL_MS / 1000  # bounded: 15 stall periods
        while 1 not in c.rst and not c.closed and time.monotonic() < deadline:
            c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)))
            c.poll(0.25)
        print("\ndrip: %d bytes let out, RST_STREAM %r" % (c.data.get(1, 0), c.rst.get(1)))
        assert c.rst.get(1) == CANCEL, "the dripping stream was not reset"
        assert c.data.get(1, 0) > 0  # the drip did let bytes out
        assert wait_for(lambda: RESET_MSG in gw.log_text(), 10)
        assert stack.health(addr=gw.addr) == "SERVING"
    finally:
        if c is not None:
            c.close()
        gw.close()


# ---- One certificate's connections holding the gateway's response memory ----

CERT_CONNS = 24          # of courier_a: under the dev stack's max_connections_per_certificate (32)
CERT_STREAMS = 8         # per connection: 8 x 256 KiB could queue, past its 1 MiB
CERT_CONN_BUDGET = 1 * MIB
CERT_GATEWAY_BUDGET = 16 * MIB  # courier_a's connections could hold it all (24 x 1 MiB)
CERT_SIZE = 4096
CERT_SLACK = 64 * 1024   # past the limit: one message, with room to spare (a broken gateway: MiBs)
OTHER_COUNT = 256        # courier_b's Flood: 1 MiB in 4 KiB messages


def settled(metrics, name, at_least, samples=3):
    """Polls metric `name` until it is at least `at_least` and the same in `samples` scrapes in a
    row, a fifth of a second apart (bounded: 150 scrapes). Returns its value, or None."""
    last, same = None, 0
    for _ in range(150):
        v = value(scrape(metrics)[0], name)
        same = same + 1 if v == last else 1
        last = v
        if v >= at_least and same >= samples:
            return v
        time.sleep(0.2)
    return None


def test_one_certificate_holds_at_most_its_share_of_response_memory(stack):
    """courier_a opens 24 connections of 8 Flood streams whose client grants no window, on a
    gateway whose response memory is 16 MiB (1 MiB per connection): 24 x 1 MiB could hold it all,
    and then every other client's streaming responses would wait until stream_write_timeout_ms
    (here 10 minutes) reset courier_a's streams. Bounded: courier_a's connections together hold
    at most response_memory_per_certificate (by default an eighth of response_memory: 2 MiB)
    plus one message, its waiting streams are not reset, and courier_b's Flood of 1 MiB is
    answered in full while courier_a holds its share. Once courier_a's connections close,
    nothing is left queued."""
    mport = free_port()
    extra = ("stream_write_timeout_ms = 600000\nresponse_memory_per_connection = %d\n"
             "response_memory = %d\n" % (CERT_CONN_BUDGET, CERT_GATEWAY_BUDGET))

    def edit(text):
        assert "[server]\n" in text and "[log]" in text
        return text.replace("[server]\n", "[server]\n" + extra, 1) \
            .replace("[log]", "[metrics]\nlisten = 127.0.0.1:%d\n\n[log]" % mport)

    if not os.access(os.path.join(BUILD, "waygated-test"), os.X_OK):
        pytest.fail("no %s/waygated-test: build first" % BUILD)
    gw = ExtraGateway(stack, "respcert", edit=edit, binary="waygated-test")
    metrics = SimpleNamespace(env={"WAYGATE_METRICS_ADDR": "127.0.0.1:%d" % mport})
    conns = []
    try:
        limit = value(scrape(metrics)[0], "waygate_response_memory_certificate_limit_bytes")
        assert limit == CERT_GATEWAY_BUDGET // 8
        for _ in range(CERT_CONNS):
            c = RawConn(stack, gw.addr, 0)
            conns.append(c)
            c.send(b"".join(flood_request(2 * i + 1, 100000, CERT_SIZE)
                            for i in range(CERT_STREAMS)) + frame(PING, 0, 0, b"respcert"))
        # The gateway has read every request once it answers each connection's PING after them.
        for c in conns:
            assert wait_for(lambda: c.poll(0.2) or c.pings > 0, 60), "no PING answer"
        # courier_a's handlers queue what they may (16 start per loop turn), then wait.
        held = settled(metrics, "waygate_response_memory_bytes", limit)
        sample = scrape(metrics)[0]
        print("\ncourier_a: %d streams with no window, %s bytes queued (the gateway's %d of %d); "
              "its budget %d" % (CERT_CONNS * CERT_STREAMS,
                                 value(sample, "waygate_response_memory_certificate_max_bytes"),
                                 value(sample, "waygate_response_memory_bytes"),
                                 value(sample, "waygate_response_memory_limit_bytes"), limit))
        assert held is not None, "courier_a's response memory did not settle at its budget"
        # courier_a holds its share, and no more: everything the gateway has queued is its
        assert held <= limit + CERT_SLACK, \
            "courier_a's streams hold %d bytes of response memory, its budget is %d" % (held, limit)
        assert value(sample, "waygate_response_memory_certificate_max_bytes") == held
        assert value(sample, "waygate_response_memory_limit_bytes") == CERT_GATEWAY_BUDGET

        # Another certificate's Flood is answered in full meanwhile.
        ch = waygate_proto.channel(gw.addr, stack.ca, *stack.cert("courier_b"))
        got, nbytes = 0, 0
        try:
            req = stack.pb.health.HealthCheckRequest(service="%d:%d" % (OTHER_COUNT, CERT_SIZE))
            for v in waygate_proto.stream(ch, FLOOD.decode(), req, stack.pb.common.WaybillView,
                                          timeout=60):
                got += 1
                nbytes += len(v.waybill.item_description)
        except grpc.RpcError as e:
            pytest.fail("courier_b's Flood: %s %s after %d of %d messages while courier_a holds "
                        "its share" % (e.code(), e.details(), got, OTHER_COUNT))
        finally:
            ch.close()
        print("courier_b: %d of %d messages (%d bytes)" % (got, OTHER_COUNT, nbytes))
        assert got == OTHER_COUNT
        assert nbytes == OTHER_COUNT * CERT_SIZE
        # courier_a still holds its share, none of its streams reset nor connections closed
        for c in conns:
            c.poll(0.05)
        assert value(scrape(metrics)[0], "waygate_response_memory_certificate_max_bytes") == held
        assert all(not c.rst for c in conns), "a waiting stream was reset"
        assert all(not c.closed for c in conns), "the gateway closed a connection of courier_a"
    finally:
        for c in conns:
            c.close()
    try:
        # courier_a's connections gone with their streams: nothing queued, nothing left over
        assert wait_for(lambda: value(scrape(metrics)[0], "waygate_response_memory_bytes") == 0,
                        30)
        sample = scrape(metrics)[0]
        assert value(sample, "waygate_response_memory_certificate_max_bytes") == 0
        assert value(sample, "waygate_response_memory_certificate_peak_bytes") >= held
        assert gw.proc.poll() is None
    finally:
        gw.close()
