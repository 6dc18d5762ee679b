"""Attack: memory amplification and a stalled loop from one connection (issue 10, finding 2), and
the gateway's request memory held by one certificate's connections.

One courier connection opens STREAMS SubmitBatch streams, each carrying ITEMS empty waybills
(2 bytes each on the wire, a few hundred bytes each once unpacked), sends every body first and
then ends all the streams in one write, so that every request completes in one read. Before the
fix the gateway unpacked each batch into an arena of up to 32x the message, checked the batch
size only after unpacking, and ran every handler of that read before giving the loop back: the
resident memory grew by about 35x the input and a health check on another connection waited for
all of it.

Checked here, with margin (figures in docs/performance.md):
  - the gateway's peak resident memory (VmHWM) grows by less than RSS_BOUND over its value
    before the bomb (the budgets: request memory in flight per connection and globally);
  - every bomb stream is answered (a refusal: the batch count before unpacking, or the request
    memory budget), the connection stays usable, and nothing is left in flight;
  - a health check on another connection, sent while the bomb's handlers run, is answered; its
    latency is printed (not asserted: a timing bound could flake on a busy machine; the unit
    test test_h2 test_handlers_yield_loop proves the loop is given back between handlers).

One certificate's many connections, each stream holding the decoder's first buffer for a prefix
and a byte, hold at most the certificate's budget of request memory, and another certificate's
calls are answered meanwhile (test_one_certificate_holds_at_most_its_share_of_request_memory).

The raw HTTP/2 client is test_transport's (TLS over memory BIOs, frames written by hand)."""

import socket
import ssl
import struct
import threading
import time
from types import SimpleNamespace

import grpc

import query_data
import waygate_proto
from conftest import ExtraGateway, free_port, wait_for
from test_attack_edge import PREFACE, frames
from test_foundation import hostport
from test_metrics import calls, scrape, value
from test_transport import (DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, RST_STREAM,
                            SETTINGS, Client, frame, literal)

SUBMIT_BATCH = b"/waygate.v1.WaybillIntake/SubmitBatch"
WINDOW_UPDATE, PING = 8, 6
STREAMS = 100
ITEMS = 100_000            # 200 KB of wire per stream, 20 MB for the connection
RSS_BOUND = 96 << 20       # peak resident growth allowed: the devstack's budgets are 16 MiB
                           # per connection, 64 MiB for the gateway (unpatched: +1449 MiB)
ACK = 0x1


def vm(pid, key):
    """VmRSS or VmHWM (peak resident) of a process, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no " + key)


def bomb_outcomes(stack, first_line):
    """grpc-status of each SubmitBatch the gateway finished after log line first_line."""
    out = {}
    for rec in stack.log_records()[first_line:]:
        msg = rec.get("msg", "")
        if msg.startswith("call finished: /waygate.v1.WaybillIntake/SubmitBatch grpc-status "):
            code = int(msg.split("grpc-status ")[1].split()[0])
            reason = msg.split("(", 1)[1].rsplit(")", 1)[0]
            out[(code, reason)] = out.get((code, reason), 0) + 1
    return out


def batch_headers(stream):
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", SUBMIT_BATCH),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])
    return frame(HEADERS, END_HEADERS, stream, block)


class Bomber(Client):
    """Test_transport's client with HTTP/2 flow control for sending: bodies go out as the
    gateway's windows allow; frames read meanwhile are recorded."""

    def __init__(self, stack):
        super().__init__(stack)
        self.conn_window = 65535
        self.initial = 65535
        self.windows = {}
        self.ended = set()
        self.reset = set()
        self.goaway = False
        self.buf = b""
        self.sock.settimeout(60)

    def write(self, data):
        self.tls.write(data)
        self.send_pending()

    def pump(self, block):
        """Reads what has arrived (waiting for some when block) and handles it."""
        try:
            if block:
                self.receive()
            else:
                self.sock.setblocking(False)
                try:
                    data = self.sock.recv(65536)
                    if data:
                        self.inc.write(data)
                except (BlockingIOError, ssl.SSLWantReadError):
                    pass
                finally:
                    self.sock.settimeout(60)
        except socket.timeout:
            raise AssertionError("the gateway sent nothing for 60 s")
        while True:
            try:
                self.buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            self.handle(ftype, flags, stream, payload)

    def handle(self, ftype, flags, stream, payload):
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(payload), 6):
                ident, value = struct.unpack(">HI", payload[i:i + 6])
                if ident == 4:  # SETTINGS_INITIAL_WINDOW_SIZE
                    for s in self.windows:
                        self.windows[s] += value - self.initial
                    self.initial = value
            self.write(frame(SETTINGS, ACK, 0, b""))
        elif ftype == WINDOW_UPDATE:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if stream == 0:
                self.conn_window += inc
            elif stream in self.windows:
                self.windows[stream] += inc
        elif ftype == PING and not flags & ACK:
            self.write(frame(PING, ACK, 0, payload))
        elif ftype in (HEADERS, DATA) and flags & END_STREAM:
            self.ended.add(stream)
        elif ftype == RST_STREAM:
            self.reset.add(stream)
        elif ftype == GOAWAY:
            self.goaway = True

    def send_body(self, stream, body):
        """Sends body on stream without END_STREAM, within the windows; stops early when the
        gateway has answered the stream (a refusal: the rest would be discarded)."""
        self.windows.setdefault(stream, self.initial)
        off = 0
        while off < len(body):
            if stream in self.ended or stream in self.reset or self.goaway:
                return
            n = min(16384, len(body) - off, self.conn_window, self.windows[stream])
            if n <= 0:
                self.pump(block=True)
                continue
            self.write(frame(DATA, 0, stream, body[off:off + n]))
            self.conn_window -= n
            self.windows[stream] -= n
            off += n
            self.pump(block=False)


def bomb_body():
    msg = b"\x0a\x00" * ITEMS  # SubmitBatchRequest{waybills: [{}, {}, ...]}
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def health_latency(stack, ch, out):
    t0 = time.monotonic()
    try:
        from waygate_proto import health_check
        out["status"] = health_check(ch, timeout=120)
    except Exception as e:  # reported by the test
        out["status"] = repr(e)
    out["latency"] = time.monotonic() - t0
    out["done_at"] = time.monotonic()


def test_batch_bomb_memory_bounded_and_loop_free(stack):
    pid = stack.gateway_pid()
    health_ch = stack.channel("courier_b")
    assert stack.health(timeout=30) == "SERVING"
    from waygate_proto import health_check
    assert health_check(health_ch, timeout=30) == "SERVING"  # connected and warm
    # The peak so far (start-up) is forgotten: VmHWM restarts from the current VmRSS.
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")
    before = vm(pid, "VmRSS")
    assert vm(pid, "VmHWM") <= before + (1 << 20)
    first_line = len(stack.log_lines())
    counted = scrape(stack)[0]
    t0 = time.monotonic()

    c = Bomber(stack)
    try:
        c.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, b"") +
                frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", (1 << 30))))
        body = bomb_body()
        streams = [2 * i + 1 for i in range(STREAMS)]
        for s in streams:
            c.write(batch_headers(s))
            c.send_body(s, body)
        # Every stream still open ends in one write: every request completes in one read.
        ends = b"".join(frame(DATA, END_STREAM, s, b"") for s in streams
                        if s not in c.ended and s not in c.reset)
        early = len(c.ended | c.reset)
        out = {}
        t = threading.Thread(target=health_latency, args=(stack, health_ch, out))
        c.write(ends)
        t.start()
        while len(c.ended | c.reset) < STREAMS and not c.goaway:
            c.pump(block=True)
        bomb_done = time.monotonic()
        t.join(timeout=150)
        assert not c.goaway
        assert c.ended | c.reset == set(streams)
        after = vm(pid, "VmHWM")
        growth = after - before
        outcomes = bomb_outcomes(stack, first_line)
        print("\nbatch bomb: %d streams x %d items (%d bytes) in %.1f s; VmRSS before %d MiB, "
              "VmHWM after %d MiB (+%d MiB, bound %d MiB); answered before the end: %d; "
              "health check %s in %.3f s, %s the last bomb answer; outcomes %s"
              % (STREAMS, ITEMS, len(body), bomb_done - t0, before >> 20, after >> 20,
                 growth >> 20, RSS_BOUND >> 20, early, out.get("status"),
                 out.get("latency", -1),
                 "before" if out.get("done_at", 1e18) <= bomb_done else "after", outcomes))
        assert out.get("status") == "SERVING"
        assert growth < RSS_BOUND
        # Each stream refused by a rule, never unpacked: over the connection's budget while its
        # body arrived, or counted on the wire past the batch size. Counted by the metrics (the
        # log writes the connection's first lines only, then how many it left out); the lines
        # written name one of the two rules each.
        now = scrape(stack)[0]
        over_budget, too_many = (calls(now, SUBMIT_BATCH.decode(), code) -
                                 calls(counted, SUBMIT_BATCH.decode(), code)
                                 for code in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"))
        assert over_budget > 0 and too_many > 0, (over_budget, too_many)
        assert over_budget + too_many == STREAMS, (over_budget, too_many)
        assert outcomes and set(outcomes) <= {
            (8, "request memory in flight would exceed its budget of 16777216 bytes: retry "
                "later"),
            (3, "waybills: at most 256 waybills per batch")}, outcomes
    finally:
        c.close()
    # The gateway still serves, and the bomber's connection left nothing behind: the request
    # memory in flight is back to 0, and it never passed the gateway's budget.
    assert stack.health(timeout=30) == "SERVING"
    assert wait_for(lambda: value(scrape(stack)[0], "waygate_request_memory_bytes") == 0, 30)
    sample = scrape(stack)[0]
    peak = value(sample, "waygate_request_memory_peak_bytes")
    print("request memory in flight: peak %d bytes, limit %d"
          % (peak, value(sample, "waygate_request_memory_limit_bytes")))
    assert value(sample, "waygate_request_memory_limit_bytes") == 64 << 20
    assert 0 < peak <= 64 << 20


# ---- One maximal message of empty fields (the loop's remaining stall) ----

MAX_MESSAGE = 4 << 20  # the default [server] max_message_size
SUBMIT = b"/waygate.v1.WaybillIntake/Submit"


def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def empty_fields_bodies():
    """(name, path, gRPC body, the refusal expected) of messages of MAX_MESSAGE bytes made of
    2-byte empty fields: a SubmitBatch of empty items (refused by the count on the wire) and a
    Submit whose waybill repeats an empty waybill_no (refused by the measure before unpacking:
    64 bytes of protobuf-c bookkeeping per occurrence)."""
    n = (MAX_MESSAGE - 16) // 2
    batch = b"\x0a\x00" * n
    inner = b"\x0a\x00" * (n - 3)
    submit = b"\x0a" + varint(len(inner)) + inner
    assert len(batch) <= MAX_MESSAGE and len(submit) <= MAX_MESSAGE
    frame_of = lambda m: b"\x00" + struct.pack(">I", len(m)) + m  # noqa: E731
    return [("SubmitBatch of %d empty items" % n, SUBMIT_BATCH, frame_of(batch),
             (3, "waybills: at most 256 waybills per batch")),
            ("Submit of a waybill of %d empty fields" % (n - 3), SUBMIT, frame_of(submit),
             (8, "request: is too large to unpack"))]


def call_headers(stream, path):
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", path),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])
    return frame(HEADERS, END_HEADERS, stream, block)


def finished(gw_log, path):
    """(grpc-status, reason) of each call of path the gateway logged as finished."""
    import json
    out = []
    for line in gw_log.splitlines():
        try:
            msg = json.loads(line).get("msg", "")
        except ValueError:
            continue
        if msg.startswith("call finished: %s grpc-status " % path.decode()):
            code = int(msg.split("grpc-status ")[1].split()[0])
            out.append((code, msg.split("(", 1)[1].rsplit(")", 1)[0]))
    return out


def test_one_maximal_message_of_empty_fields_is_refused_without_unpacking(stack):
    """One 4 MiB message of 2-byte empty fields, complete in one read: refused by a rule before
    protobuf-c sees it, and refused early (the count stops past the batch limit, the measure
    stops once the memory it has counted is over the bound), so that the handler does not hold
    the loop: a health check on another connection, sent with the message's last frame, is
    answered. Its latency is printed, not asserted (issue 10: the loop never blocked for more
    than 100 ms; docs/performance.md has the figures)."""
    from types import SimpleNamespace
    from conftest import ExtraGateway
    from waygate_proto import channel, health_check

    def edit(text):  # the default message size, and budgets of at least 10x it (config.c)
        return text.replace("max_message_size = 1048576", "max_message_size = %d" % MAX_MESSAGE) \
            .replace("request_memory_per_connection = 16777216",
                     "request_memory_per_connection = %d" % (16 * MAX_MESSAGE)) \
            .replace("request_memory = 67108864", "request_memory = %d" % (64 * MAX_MESSAGE))

    gw = ExtraGateway(stack, "maxmsg", edit=edit)
    try:
        target = SimpleNamespace(addr=gw.addr, ca=stack.ca, cert=stack.cert)
        cert, key = stack.cert("courier_b")
        health_ch = channel(gw.addr, stack.ca, cert, key)
        assert health_check(health_ch, timeout=30) == "SERVING"  # connected and warm
        for name, path, body, refusal in empty_fields_bodies():
            c = Bomber(target)
            try:
                c.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, b"") +
                        frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", (1 << 30))))
                c.write(call_headers(1, path))
                c.send_body(1, body[:-1])
                assert not (c.ended or c.reset), "%s: answered before it was whole" % name
                out = {}
                t = threading.Thread(target=health_latency, args=(stack, health_ch, out))
                c.send_body(1, body[-1:])
                c.write(frame(DATA, END_STREAM, 1, b""))
                t.start()
                while not (c.ended or c.reset or c.goaway):
                    c.pump(block=True)
                t.join(timeout=150)
                print("\n%s (%d bytes): health check %s in %.3f s"
                      % (name, len(body), out.get("status"), out.get("latency", -1)))
                assert out.get("status") == "SERVING"
                assert c.ended == {1} and not c.goaway
                assert wait_for(lambda: finished(gw.log(), path), 30)
                assert finished(gw.log(), path)[-1] == refusal
            finally:
                c.close()
        health_ch.close()
    finally:
        gw.close()


# ---- One certificate's connections holding the gateway's request memory ----

CERT_CONNECTIONS = 24      # of courier_a: under the dev stack's max_connections_per_certificate
CERT_STREAMS = 100         # per connection: max_concurrent_streams
HELD = 16384               # the decoder's first buffer, held for a prefix and one byte
GET = "/waygate.v1.WaybillQuery/Get"


def held_headers(stream):
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", GET.encode()),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])
    return frame(HEADERS, END_HEADERS, stream, block)


def test_one_certificate_holds_at_most_its_share_of_request_memory(stack):
    """courier_a opens 24 connections of 100 Get streams; each stream sends a gRPC prefix that
    announces 16 KiB and one byte of it, and never ends, so that the gateway buffers 16 KiB for
    6 bytes. On a gateway whose request memory is 32 MiB (16 MiB per connection), 2400 such
    streams would hold all of it (as 4200 held the dev stack's 64 MiB before the budget per
    certificate: every other client's Get refused RESOURCE_EXHAUSTED, 50 of 50, until the
    attacker's deadlines ran out, and renewable). Bounded: courier_a's connections together hold at most
    request_memory_per_certificate (by default an eighth of request_memory, at least one
    connection's: 16 MiB here), the streams past it are refused RESOURCE_EXHAUSTED naming that
    budget, and courier_b's 50 Gets are answered OK while courier_a holds its share. Once
    courier_a's connections close, nothing is left in flight."""
    mport = free_port()

    def edit(text):
        return text.replace("request_memory = 67108864", "request_memory = %d" % (32 << 20)) \
            .replace("[log]", "[metrics]\nlisten = 127.0.0.1:%d\n\n[log]" % mport)

    w = query_data.new_waybill(stack, "a", dest="320102")  # delivered by branch b: courier_b's
    record = query_data.submit(stack, w)
    gw = ExtraGateway(stack, "certmem", edit=edit)
    metrics = SimpleNamespace(env={"WAYGATE_METRICS_ADDR": "127.0.0.1:%d" % mport})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(stack.ca)
    ctx.set_alpn_protocols(["h2"])
    ctx.load_cert_chain(*stack.cert("courier_a"))
    partial = b"\x00" + struct.pack(">I", HELD) + b"\x0a"
    conns = []
    try:
        before = scrape(metrics)[0]
        for _ in range(CERT_CONNECTIONS):
            s = ctx.wrap_socket(socket.create_connection(hostport(gw.addr), timeout=60),
                                server_hostname="localhost")
            s.sendall(PREFACE + frame(SETTINGS, 0, 0, b"") +
                      b"".join(held_headers(2 * i + 1) + frame(DATA, 0, 2 * i + 1, partial)
                               for i in range(CERT_STREAMS)) +
                      frame(PING, 0, 0, b"held!!!!"))
            conns.append(s)
        for s in conns:  # every stream's bytes read by the gateway
            for ftype, flags, _, payload in frames(s):
                if ftype == PING and flags & ACK and payload == b"held!!!!":
                    break
        sample = scrape(metrics)[0]
        held = value(sample, "waygate_request_memory_certificate_max_bytes")
        limit = value(sample, "waygate_request_memory_certificate_limit_bytes")
        refused = (calls(sample, GET, "RESOURCE_EXHAUSTED") -
                   calls(before, GET, "RESOURCE_EXHAUSTED"))
        print("\ncourier_a: %d streams, %d bytes held of its %d, %d refused; the gateway's: %d "
              "of %d" % (CERT_CONNECTIONS * CERT_STREAMS, held, limit, refused,
                         value(sample, "waygate_request_memory_bytes"),
                         value(sample, "waygate_request_memory_limit_bytes")))
        assert limit == 16 << 20
        assert value(sample, "waygate_request_memory_limit_bytes") == 32 << 20
        # courier_a holds its share, and no more: the streams past it were refused
        assert limit - 8 * HELD <= held <= limit
        assert value(sample, "waygate_request_memory_bytes") == held
        assert refused >= CERT_CONNECTIONS * CERT_STREAMS - limit // HELD, refused
        assert "this certificate's request memory in flight would exceed its budget of %d bytes " \
            "([server] request_memory_per_certificate): retry later" % limit in gw.log()

        ch = waygate_proto.channel(gw.addr, stack.ca, *stack.cert("courier_b"))
        ok, failed = 0, []
        try:
            for _ in range(50):
                try:
                    view = waygate_proto.unary(
                        ch, GET, stack.pb.query.GetRequest(waybill_no=w.waybill_no),
                        stack.pb.common.WaybillView, timeout=10)
                    ok += view.id == record
                except grpc.RpcError as e:
                    failed.append("%s %s" % (e.code(), e.details()))
        finally:
            ch.close()
        # courier_a still holds its share meanwhile
        assert value(scrape(metrics)[0], "waygate_request_memory_certificate_max_bytes") == held
        assert ok == 50, "courier_b: %d of 50 Gets answered while courier_a holds its share: %s" \
            % (ok, failed[:1])
    finally:
        for s in conns:
            s.close()
    try:
        # the certificate's connections gone with their calls: nothing held, nothing left over
        assert wait_for(lambda: value(scrape(metrics)[0], "waygate_request_memory_bytes") == 0, 30)
        sample = scrape(metrics)[0]
        assert value(sample, "waygate_request_memory_certificate_max_bytes") == 0
        assert value(sample, "waygate_request_memory_certificate_peak_bytes") == held
        assert gw.proc.poll() is None
    finally:
        gw.close()
