"""Attacks on a connection's streams (issue 10, findings 1 and 3), by a courier with a valid
certificate speaking raw HTTP/2 over TLS (frames written by hand: no h2 package).

Finding 1: a completion that answers one call must never free another call of the same connection
while the completions are being dispatched. The attack: two Submits with numbers outside the
courier's segments (both wait for the same segment reload) while the connection's output is backed
up and a reset of the second stream waits in the gateway's queue, then the output drains. Whether
the drain and the reload's answer meet in one loop pass is up to the scheduler, so this test is
the attack, repeated, with the gateway checked alive and clean after it (run it against the
ASan+UBSan build: a use-after-free aborts the gateway and writes its report into waygated.log);
the rule itself is proven deterministically by the unit tests (test_h2:
test_finish_in_completion_closes_no_other_stream, test_segcache:
test_cancel_from_another_waiters_callback).

Finding 3: 1 MiB sent on each of 100 streams without END_STREAM, never reset by the client. Each
call is answered at its deadline; the gateway then resets every stream the client left open (RST_STREAM
NO_ERROR) within a bound, and the connection's stream slots are free again: a new call on the same
connection is answered."""

import json
import os
import re
import socket
import ssl
import struct
import threading
import time

import pytest

import waygate_proto
from conftest import wait_for
from test_foundation import hostport
from test_intake import new_waybill, segment

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
NO_ERROR, FLOW_CONTROL_ERROR, REFUSED_STREAM = 0, 3, 7
HEALTH = b"/grpc.health.v1.Health/Check"
SUBMIT = b"/waygate.v1.WaybillIntake/Submit"
SUBMIT_BATCH = b"/waygate.v1.WaybillIntake/SubmitBatch"
SETTINGS_INITIAL_WINDOW_SIZE = 4
MAX_WINDOW = 0x7FFFFFFF
GATEWAY_STREAM_WINDOW = 1 << 20  # the gateway's SETTINGS_INITIAL_WINDOW_SIZE (h2.c)
MAX_FRAME = 16384


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK literal header field without indexing, no Huffman coding (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request_headers(stream, path, timeout=b"30S", end_stream=False):
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", path),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers"), (b"grpc-timeout", timeout)])
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream, block)


def unary(stream, path, message, timeout=b"30S"):
    body = b"\x00" + struct.pack(">I", len(message)) + message
    return request_headers(stream, path, timeout) + frame(DATA, END_STREAM, stream, body)


class RawConn:
    """One mTLS connection as courier_a, HTTP/2 by hand. rcvbuf: a small socket receive buffer,
    so that the gateway's output backs up soon when the test stops reading."""

    def __init__(self, stack, rcvbuf=None, window=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(stack.ca)
        ctx.set_alpn_protocols(["h2"])
        ctx.load_cert_chain(*stack.cert("courier_a"))
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(60)
        raw.connect(hostport(stack.addr))
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.conn_window = 65535  # ours to send into; the gateway's WINDOW_UPDATEs grow it
        self.frames = []          # every frame received: (type, flags, stream, payload)
        settings = b""
        if window:
            settings = struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, window)
        out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, settings)
        if window:
            out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535))
        self.sock.sendall(out)

    def send(self, data):
        self.sock.sendall(data)

    def read_some(self, timeout):
        """Reads what arrives within timeout seconds (at least one read); returns the new frames.
        A closed connection raises EOFError."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, ssl.SSLWantReadError):
            return []
        if not data:
            raise EOFError("the gateway closed the connection")
        self.buf += data
        new = []
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & MAX_WINDOW,
                 self.buf[9:9 + n])
            self.buf = self.buf[9 + n:]
            new.append(f)
            self.on_frame(f)
        self.frames += new
        return new

    def on_frame(self, f):
        ftype, flags, stream, payload = f
        if ftype == WINDOW_UPDATE and stream == 0:
            self.conn_window += int.from_bytes(payload[:4], "big") & MAX_WINDOW
        elif ftype == SETTINGS and not flags & ACK:
            self.send(frame(SETTINGS, ACK, 0, b""))
        elif ftype == PING and not flags & ACK:
            self.send(frame(PING, ACK, 0, payload))

    def send_data(self, stream, data):
        """DATA without END_STREAM, within the connection's flow-control window."""
        while data:
            while self.conn_window <= 0:
                self.read_some(5)
            out = []
            while data and self.conn_window > 0:
                n = min(len(data), MAX_FRAME, self.conn_window)
                out.append(frame(DATA, 0, stream, data[:n]))
                self.conn_window -= n
                data = data[n:]
            self.send(b"".join(out))

    def ended(self, stream):
        """The gateway's answer to stream is complete (a HEADERS or DATA with END_STREAM)."""
        return any(f[2] == stream and f[0] in (HEADERS, DATA) and f[1] & END_STREAM
                   for f in self.frames)

    def reset_code(self, stream):
        """The error code of the gateway's RST_STREAM on stream, or None."""
        for f in self.frames:
            if f[0] == RST_STREAM and f[2] == stream:
                return int.from_bytes(f[3][:4], "big")
        return None

    def goaway(self):
        return [f for f in self.frames if f[0] == GOAWAY]

    def close(self):
        self.sock.close()


def rss_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^%s:\s+(\d+) kB" % field, f.read(), re.M)
    return int(m.group(1))


def sanitizer_reports(stack):
    with open(stack.log_path, errors="replace") as f:
        text = f.read()
    return re.findall(r"ERROR: AddressSanitizer[^\n]*|runtime error:[^\n]*|"
                      r"ERROR: LeakSanitizer[^\n]*", text)


# --- finding 3 -----------------------------------------------------------------------------------

STREAMS = 100          # the gateway's max_concurrent_streams (config default)
PER_STREAM = GATEWAY_STREAM_WINDOW  # 1 MiB each: the whole window of each stream
ANNOUNCED = 1 << 20    # the message announced: never complete (the dev stack's max_message_size)
RESET_BOUND_S = 120    # deadline + linger (2 s) + the sending itself, with a wide margin


def test_streams_left_open_after_the_answer_are_reset(stack):
    pid = stack.gateway_pid()
    before = rss_kb(pid, "VmRSS")
    c = RawConn(stack)
    try:
        streams = [2 * i + 1 for i in range(STREAMS)]
        for s in streams:
            # a deadline long enough that every stream is open with its 1 MiB at once
            c.send(request_headers(s, HEALTH, timeout=b"10S"))
            c.send_data(s, b"\x00" + struct.pack(">I", ANNOUNCED) +
                        b"\x00" * (PER_STREAM - 5))
        sent_at = time.monotonic()

        def all_reset():
            c.read_some(1)
            return all(c.reset_code(s) is not None for s in streams)

        assert wait_for(all_reset, timeout=RESET_BOUND_S, interval=0), \
            "streams not reset %.0f s after the data: %d of %d answered, %d reset, goaway %r" % (
                time.monotonic() - sent_at, sum(c.ended(s) for s in streams), STREAMS,
                sum(c.reset_code(s) is not None for s in streams), c.goaway())
        after = rss_kb(pid, "VmRSS")
        peak = rss_kb(pid, "VmHWM")
        # each was answered first (DEADLINE_EXCEEDED trailers), then reset with NO_ERROR
        assert all(c.ended(s) for s in streams)
        assert {c.reset_code(s) for s in streams} == {NO_ERROR}
        assert not c.goaway()
        # the slots are free: a new call on the same connection is answered, not refused
        s = 2 * STREAMS + 1
        c.send(unary(s, HEALTH, b""))
        assert wait_for(lambda: c.read_some(1) is not None and c.ended(s), timeout=30,
                        interval=0), "no answer on a new stream: reset %r" % c.reset_code(s)
        assert c.reset_code(s) is None
        print("finding 3: gateway VmRSS %d kB before, peak (VmHWM) %d kB, %d kB after the resets; "
              "%d streams of 1 MiB reset %.1f s after the last byte" % (
                  before, peak, after, STREAMS, time.monotonic() - sent_at))
    finally:
        c.close()
    assert stack.health() is not None
    assert sanitizer_reports(stack) == []


# --- finding 1 -----------------------------------------------------------------------------------

ROUNDS = 10
FILLER_CALLS = 90       # SubmitBatch calls (about 14 KB of refusals each) backing the output up,
#                        fewer than max_concurrent_streams with the two Submits
FILLER_ITEMS = 256      # empty waybills in each: one refusal with its message per item
# The cache reloads on a miss at most once per segment_refresh_ms (5 s by default): the first round
# meets a reload (the stack's last one is older), a later round may be answered from the cache,
# which still finishes the call with the reset waiting.


def outside_submit(stack, stream, offset):
    prefix, lo, _ = segment(stack, "a")
    w = new_waybill(stack, "a")
    w.waybill_no = "%s%d" % (prefix, lo - 1 - offset)  # below branch a's segment
    msg = stack.pb.intake.SubmitRequest(waybill=w).SerializeToString()
    return unary(stream, SUBMIT, msg)


def test_two_segment_misses_while_output_backed_up(stack):
    pid = stack.gateway_pid()
    empty_batch = b"\x0a\x00" * FILLER_ITEMS
    for rnd in range(ROUNDS):
        c = RawConn(stack, rcvbuf=4096, window=MAX_WINDOW)
        try:
            out = b"".join(unary(2 * i + 1, SUBMIT_BATCH, empty_batch)
                           for i in range(FILLER_CALLS))
            a, b = 2 * FILLER_CALLS + 1, 2 * FILLER_CALLS + 3
            out += outside_submit(stack, a, 1000 * rnd + 1)
            out += outside_submit(stack, b, 1000 * rnd + 2)
            # overflows b's send window: a stream error, nghttp2 queues RST_STREAM for b
            out += frame(WINDOW_UPDATE, 0, b, struct.pack(">I", MAX_WINDOW))
            c.send(out)
            # now drain everything the gateway has queued, as fast as we can
            assert wait_for(lambda: c.read_some(1) is not None and c.ended(a) and
                            (c.ended(b) or c.reset_code(b) is not None), timeout=120,
                            interval=0), "round %d: a answered %s, b answered %s reset %r" % (
                                rnd, c.ended(a), c.ended(b), c.reset_code(b))
            assert c.reset_code(a) is None
        finally:
            c.close()
        assert stack.gateway_pid() == pid
        assert stack.health() is not None
    assert sanitizer_reports(stack) == []
    assert os.path.exists("/proc/%d" % pid)


# --- MadeYouReset (CVE-2025-8671) ----------------------------------------------------------------

ENHANCE_YOUR_CALM, PROTOCOL_ERROR = 0xB, 0x1
PROVOKED_FLOOD = 4000  # streams the gateway is made to reset: 10x the RST_STREAM burst (h2_calm.h)
PROVOKED_BATCH = 50    # at once, fewer than max_concurrent_streams: none is refused for that
# Passing the whole flood would take the RST_STREAM budget's refill (40 a second) 90 s of flood,
# far longer than the flood lasts (before the fix: all 4000 reset in under a second).


def provoking(kind, stream, stack):
    """A stream the gateway itself must reset, by kind:
    - window_overflow: a complete, valid Submit (its handler runs), then a WINDOW_UPDATE that
      overflows the stream's send window: FLOW_CONTROL_ERROR;
    - connection_header: request headers with `connection: close` (forbidden in HTTP/2):
      PROTOCOL_ERROR;
    - content_length: content-length 1, then a whole Submit body: PROTOCOL_ERROR."""
    if kind == "window_overflow":
        msg = stack.pb.intake.SubmitRequest(waybill=new_waybill(stack, "a")).SerializeToString()
        return unary(stream, SUBMIT, msg) + \
            frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", MAX_WINDOW))
    extra = (b"connection", b"close") if kind == "connection_header" else (b"content-length", b"1")
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", SUBMIT),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers"), (b"grpc-timeout", b"30S"), extra])
    body = b"\x00" + struct.pack(">I", 5) + b"\x0a\x03abc"
    return frame(HEADERS, END_HEADERS, stream, block) + frame(DATA, END_STREAM, stream, body)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.parametrize("kind", ["window_overflow", "connection_header", "content_length"])
def test_provoked_reset_flood_answered_with_enhance_your_calm(stack, kind):
    """MadeYouReset (CVE-2025-8671): courier_a opens streams that the gateway itself resets
    (malformed or protocol-violating), 50 at a time, each batch sent once the last one's resets
    came, so no stream is ever refused and the stream limit never slows the flood. Each reset
    stream's slot is free at once; the work its request started must be cancelled. Before: with
    connection_header and content_length all 4000 reset in under a second (5000 to 7000 a second
    on one connection, 0.05 to 0.08 s of the gateway's CPU), no GOAWAY; with window_overflow each
    Submit opened a call that was then cancelled, until the WINDOW_UPDATE budget (not the reset
    budget) ran out after about 1000. The gateway's resets are charged to the connection's
    RST_STREAM budget like the client's own (h2_calm.h): the flood is cut off long before its end
    with GOAWAY ENHANCE_YOUR_CALM (or, when the gateway's close overtakes the GOAWAY, a reset or
    end of stream, as in test_attack_edge's KeyUpdate test), one warning naming peer, principal
    and the provoked error, and the gateway goes on serving. Bounded by counts only: the budget's
    refill would need 90 s of flood to let it all through."""
    pid = stack.gateway_pid()
    since = len(stack.log_lines())
    stored_before = int(stack.psql("SELECT count(*) FROM waybill")[0])
    ticks_before = cpu_ticks(pid)
    # Another client's calls meanwhile, on their own connection: what the flood costs others
    # (printed, not asserted).
    other, others, stop = stack.channel("courier_b"), [], threading.Event()

    def other_calls():
        while not stop.is_set():
            t = time.monotonic()
            waygate_proto.health_check(other, timeout=30)
            others.append(time.monotonic() - t)

    other_calls_thread = threading.Thread(target=other_calls)
    c = RawConn(stack)
    reset, ended, started = 0, None, time.monotonic()
    other_calls_thread.start()
    try:
        first = 1
        while first < 2 * PROVOKED_FLOOD and ended is None:
            batch = [first + 2 * k for k in range(PROVOKED_BATCH)]
            first += 2 * PROVOKED_BATCH
            try:
                c.send(b"".join(provoking(kind, s, stack) for s in batch))
            except (OSError, ssl.SSLError):
                ended = "send failed"
                break
            idle = 0
            while ended is None and not c.goaway() and \
                    not all(c.reset_code(s) is not None for s in batch):
                try:
                    idle = 0 if c.read_some(5) else idle + 1
                except EOFError:
                    ended = "eof"
                except (OSError, ssl.SSLError):
                    ended = "reset"
                assert idle < 24, "no answer to a batch for 2 minutes"
            if c.goaway():
                ended = "goaway"
            reset = sum(1 for f in c.frames if f[0] == RST_STREAM)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        other_calls_thread.join()
        c.close()
    codes = {int.from_bytes(f[3][:4], "big") for f in c.frames if f[0] == RST_STREAM}
    stored = int(stack.psql("SELECT count(*) FROM waybill")[0]) - stored_before
    print("provoked resets (%s): %d of %d streams reset in %.1f s (%.0f a second), RST codes %r, "
          "ended by %s, %d Submits stored, gateway CPU %.2f s" % (
              kind, reset, PROVOKED_FLOOD, elapsed, reset / max(elapsed, 1e-3), sorted(codes),
              ended, stored, (cpu_ticks(pid) - ticks_before) / os.sysconf("SC_CLK_TCK")))
    others.sort()
    print("courier_b's health checks meanwhile: %d, median %.1f ms, slowest %.1f ms" % (
        len(others), 1000 * others[len(others) // 2], 1000 * others[-1]))
    assert codes <= {FLOW_CONTROL_ERROR if kind == "window_overflow" else PROTOCOL_ERROR}
    assert ended is not None and reset < PROVOKED_FLOOD, \
        "%d provoked resets on one connection, the flood never cut off" % reset
    if ended == "goaway":
        assert [struct.unpack(">I", f[3][4:8])[0] for f in c.goaway()] == [ENHANCE_YOUR_CALM]
    assert wait_for(lambda: any("RST_STREAM flood" in line
                                for line in stack.log_lines()[since:]), 30), \
        "no RST_STREAM flood warning"
    warned = [json.loads(line) for line in stack.log_lines()[since:] if "flood" in line]
    assert len(warned) == 1, "%d flood warnings for one connection" % len(warned)
    assert warned[0]["level"] == "warn" and warned[0]["principal"] == "courier_a" and \
        warned[0]["peer"].startswith("127.0.0.1:")
    assert "RST_STREAM flood (streams we reset for the client's protocol errors, the last %s)" % (
        "FLOW_CONTROL_ERROR" if kind == "window_overflow" else "PROTOCOL_ERROR") in \
        warned[0]["msg"] and "ENHANCE_YOUR_CALM" in warned[0]["msg"]
    assert stack.health() == "SERVING"
    assert stack.gateway_pid() == pid
    assert sanitizer_reports(stack) == []
