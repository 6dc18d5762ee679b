"""The gateway's gRPC client (gateway/transport/gclient.c) against the reference backend
(deploy/backend-sink), through build/gclient_probe: one client per probe process, so the backend
can be taken down and up under it. Needs no database and no gateway: a throw-away PKI
(deploy/gen-certs) and sinks started here.

Proves: OK with one result per delivery, REJECTED results, a whole-call status passed through,
DEADLINE_EXCEEDED against a slow backend, UNAVAILABLE when the backend is down and a reconnect
when it is back (same client), RESOURCE_EXHAUSTED for a response over max_response (and the
connection still usable), a server certificate from another CA or naming another host refused,
cancel (no callback), a callback that frees the client, concurrent calls multiplexed; against
a hostile server of this file (HostileBackend), PING and WINDOW_UPDATE floods cut by the
control-frame budgets (a busy, well-behaved backend never cut), and calls freed at their deadline
while a server's stream limit of 0 keeps their requests queued (the connection dropped past the
client's bound).
"""

import json
import os
import re
import select
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import KEYUPDATE_COUNT_C, build_tls_c, h2_frame, hpack_literal, recv_exact

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build")))
SINK = os.path.join(ROOT, "deploy", "backend-sink")
PY = "/usr/bin/python3"
BOUND_S = 60  # upper bound for any one answer (never reached unless something is broken)

OK, DEADLINE, RESOURCE_EXHAUSTED, PERMISSION_DENIED, UNAVAILABLE, INVALID_ARGUMENT = 0, 4, 8, 7, 14, 3
ACCEPTED, REJECTED = 1, 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sink:
    def __init__(self, workdir, certs, name, cert="sink"):
        self.addr = "127.0.0.1:%d" % free_port()
        self.log = os.path.join(workdir, name + ".log")
        self.control = os.path.join(workdir, name + ".control")
        self.err = open(os.path.join(workdir, name + ".err"), "w")
        self.proc = subprocess.Popen(
            [PY, SINK, "serve", "--listen", self.addr, "--ca", os.path.join(certs, "ca.crt"),
             "--cert", os.path.join(certs, cert + ".crt"),
             "--key", os.path.join(certs, cert + ".key"), "--log", self.log,
             "--control", self.control, "--client-cn", "waygate-forwarder"],
            stdout=self.err, stderr=self.err)
        self.ctl("up")  # returns once the sink has applied it (serving)

    def ctl(self, *words):
        r = subprocess.run([PY, SINK, "ctl", self.control] + list(words), capture_output=True,
                           text=True, timeout=BOUND_S)
        assert r.returncode == 0, r.stderr

    def records(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=BOUND_S)
        self.err.close()


class Probe:
    def __init__(self, certs, addr, server_name="sink.localhost", principal="forwarder",
                 max_response=65536, expect_ready=True, connect_timeout_ms=5000, nameserver=None,
                 crl=None):
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "gclient_probe"), "--endpoint", addr,
             "--server-name", server_name, "--ca", os.path.join(certs, "ca.crt"),
             "--cert", os.path.join(certs, principal + ".crt"),
             "--key", os.path.join(certs, principal + ".key"),
             "--max-response", str(max_response),
             "--connect-timeout", str(connect_timeout_ms)] +
            (["--nameserver", nameserver] if nameserver else []) +
            (["--crl", crl] if crl else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.buf = b""
        self.first = self.line()
        if expect_ready:
            assert self.first == {"event": "ready"}, self.first

    def line(self):
        """The next answer line (read unbuffered, so that select never misses one)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            r, _, _ = select.select([fd], [], [], BOUND_S)
            assert r, "gclient_probe gave no answer within %d s" % BOUND_S
            chunk = os.read(fd, 65536)
            assert chunk, "gclient_probe exited (status %s)" % self.proc.poll()
            self.buf += chunk
        text, _, self.buf = self.buf.partition(b"\n")
        return json.loads(text)

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def call(self, tag, n=1, deadline_ms=5000, marker=None):
        self.send("call %s %d %d%s" % (tag, n, deadline_ms, " " + marker if marker else ""))
        r = self.line()
        assert r["tag"] == tag, r
        return r

    def stats(self):
        self.send("stats")
        return self.line()

    def close(self):
        if self.proc.poll() is None:
            self.send("quit")
            self.proc.wait(timeout=BOUND_S)
        assert self.proc.returncode == 0, "gclient_probe exited %s" % self.proc.returncode


class Blackhole:
    """A TCP relay to `target` that can freeze: the connections open then stay open but carry
    nothing more either way (a peer gone without a reset, as behind a dead NAT); connections
    opened after the freeze relay normally."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.frozen = []  # one Event per connection: set = frozen
        self.socks = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            frozen = threading.Event()
            self.frozen.append(frozen)
            self.socks += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(x, y, frozen), daemon=True).start()

    def _pump(self, src, dst, frozen):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if frozen.is_set():
                continue  # swallowed
            try:
                dst.sendall(data)
            except OSError:
                return

    def freeze(self):
        for f in self.frozen:
            f.set()

    def close(self):
        self.stop.set()
        self.lsock.close()
        for x in self.socks:
            x.close()


H2_DATA, H2_HEADERS, H2_RST_STREAM, H2_SETTINGS, H2_PING, H2_GOAWAY, H2_WINDOW_UPDATE = \
    0, 1, 3, 4, 6, 7, 8
H2_ACK = H2_END_STREAM = 1
H2_END_HEADERS = 4
SETTINGS_MAX_CONCURRENT_STREAMS = 3


class HostileBackend:
    """A TLS + HTTP/2 server (the sink's certificate, client certificate required, ALPN h2)
    that misbehaves on purpose, one thread per connection. Modes:
      flood: sends its SETTINGS and then PING frames without end, never reading, until the client
             drops the connection (or FLOOD_CAP bytes);
      mcs0:  advertises SETTINGS_MAX_CONCURRENT_STREAMS 0, acknowledges SETTINGS, answers PINGs
             and counts the HEADERS frames it receives (none once the client has the limit);
             `settings_acked` is set when the client has acknowledged the limit (applied it);
      wuflood: sends its SETTINGS and then connection WINDOW_UPDATEs of 1 without end (or
             FLOOD_CAP bytes), never reading;
      echo:  a busy but well-behaved backend: for every DATA frame received a connection and a
             stream WINDOW_UPDATE (`window_updates` counts them), for every request a PING
             (`pings`), an OK answer with an empty message and then RST_STREAM NO_ERROR (`resets`:
             what a server that answers before the request has ended sends);
      goaway: sends its SETTINGS, waits for the client's acknowledgement (`settings_acked`: the
             client has read them), then GOAWAY NO_ERROR naming stream 0 (it processed none),
             and reads until the client closes;
      close: the same, but closes the connection instead of the GOAWAY;
      silent: completes the TLS handshake, then reads and discards until the client closes,
             never sending a byte (no SETTINGS, no PING acknowledgement).
    `ended` is set when a connection has ended, by either side."""

    FLOOD_CAP = 1 << 30

    def __init__(self, certs, mode):
        self.mode = mode
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(certs, "sink.crt"), os.path.join(certs, "sink.key"))
        self.ctx.load_verify_locations(os.path.join(certs, "ca.crt"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.set_alpn_protocols(["h2"])
        self.lsock = socket.socket()
        # small kernel buffers on the server's side, so a flood meets the client's own bounds
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = self.closed = self.headers = self.flood_sent = 0
        self.window_updates = self.pings = self.resets = 0
        self.ended = threading.Event()
        self.settings_acked = threading.Event()
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            raw.settimeout(BOUND_S)
            self.socks.append(raw)
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._conn, args=(raw,), daemon=True).start()

    def _silent(self, s):
        while True:
            try:
                if not s.recv(65536):
                    return
            except socket.timeout:
                continue

    def _conn(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
            if self.mode == "flood":
                self._flood(s)
            elif self.mode == "wuflood":
                self._wuflood(s)
            elif self.mode == "echo":
                self._echo(s)
            elif self.mode in ("goaway", "close"):
                self._leave(s)
            elif self.mode == "silent":
                self._silent(s)
            else:
                self._mcs0(s)
        except (OSError, EOFError):
            pass  # the client dropped the connection (or the handshake failed)
        finally:
            with self.lock:
                self.closed += 1
            self.ended.set()

    def _flood(self, s):
        s.sendall(h2_frame(H2_SETTINGS, 0, 0))
        block = h2_frame(H2_PING, 0, 0, b"floodpng") * 4096  # 68 KB of PINGs, never an ACK read
        while self.flood_sent < self.FLOOD_CAP:
            s.sendall(block)
            with self.lock:
                self.flood_sent += len(block)

    def _wuflood(self, s):
        s.sendall(h2_frame(H2_SETTINGS, 0, 0))
        block = h2_frame(H2_WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 1000
        while self.flood_sent < self.FLOOD_CAP:
            s.sendall(block)
            with self.lock:
                self.flood_sent += len(block)

    def _echo(self, s):
        recv_exact(s, 24)  # the client's preface
        s.sendall(h2_frame(H2_SETTINGS, 0, 0))
        answer_headers = hpack_literal([(":status", "200"), ("content-type", "application/grpc")])
        trailers = hpack_literal([("grpc-status", "0")])
        while True:
            hd = recv_exact(s, 9)
            length, ftype, flags = int.from_bytes(hd[:3], "big"), hd[3], hd[4]
            sid = struct.unpack(">I", hd[5:])[0] & 0x7FFFFFFF
            payload = recv_exact(s, length)
            out = b""
            if ftype == H2_SETTINGS and not flags & H2_ACK:
                out += h2_frame(H2_SETTINGS, H2_ACK, 0)
            elif ftype == H2_PING and not flags & H2_ACK:
                out += h2_frame(H2_PING, H2_ACK, 0, payload)
            elif ftype == H2_DATA:
                if length:
                    inc = struct.pack(">I", length)
                    out += h2_frame(H2_WINDOW_UPDATE, 0, 0, inc)
                    out += h2_frame(H2_WINDOW_UPDATE, 0, sid, inc)
                    self.window_updates += 2
                if flags & H2_END_STREAM:
                    out += h2_frame(H2_PING, 0, 0, struct.pack(">Q", sid))
                    self.pings += 1
                    out += (h2_frame(H2_HEADERS, H2_END_HEADERS, sid, answer_headers) +
                            h2_frame(H2_DATA, 0, sid, b"\x00\x00\x00\x00\x00") +
                            h2_frame(H2_HEADERS, H2_END_HEADERS | H2_END_STREAM, sid, trailers) +
                            h2_frame(H2_RST_STREAM, 0, sid, struct.pack(">I", 0)))
                    self.resets += 1
            if out:
                s.sendall(out)

    def _leave(self, s):
        recv_exact(s, 24)  # the client's preface
        s.sendall(h2_frame(H2_SETTINGS, 0, 0))
        while True:  # until the client has read the SETTINGS (it acknowledges them)
            hd = recv_exact(s, 9)
            recv_exact(s, int.from_bytes(hd[:3], "big"))
            if hd[3] == H2_SETTINGS and hd[4] & H2_ACK:
                self.settings_acked.set()
                break
        if self.mode == "close":
            socket.socket.shutdown(s, socket.SHUT_RDWR)
            s.close()
            return
        s.sendall(h2_frame(H2_GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
        while s.recv(65536):
            pass

    def _mcs0(self, s):
        recv_exact(s, 24)  # the client's preface
        s.sendall(h2_frame(H2_SETTINGS, 0, 0, struct.pack(">HI", SETTINGS_MAX_CONCURRENT_STREAMS, 0)))
        while True:
            hd = recv_exact(s, 9)
            length, ftype, flags = int.from_bytes(hd[:3], "big"), hd[3], hd[4]
            payload = recv_exact(s, length)
            if ftype == H2_SETTINGS and flags & H2_ACK:
                self.settings_acked.set()
            elif ftype == H2_SETTINGS:
                s.sendall(h2_frame(H2_SETTINGS, H2_ACK, 0))
            elif ftype == H2_PING and not flags & H2_ACK:
                s.sendall(h2_frame(H2_PING, H2_ACK, 0, payload))
            elif ftype == H2_HEADERS:
                with self.lock:
                    self.headers += 1

    def close(self):
        self.lsock.close()
        for x in self.socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()


def poll(fn, bound_s=BOUND_S, interval=0.1):
    """Calls fn until it returns a true value (bounded); returns that value."""
    end = time.monotonic() + bound_s
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < end, "condition not reached within %d s" % bound_s
        time.sleep(interval)


@pytest.fixture(scope="module")
def env():
    assert os.path.exists(os.path.join(BUILD, "gclient_probe")), "build gclient_probe first"
    work = tempfile.mkdtemp(prefix="wg-gclient-")
    certs = os.path.join(work, "certs")
    subprocess.run([os.path.join(ROOT, "deploy", "gen-certs"), certs], check=True,
                   capture_output=True, timeout=300)
    sinks = []

    class Env:
        dir = work
        certdir = certs

        def sink(self, name, cert="sink"):
            s = Sink(work, certs, name, cert)
            sinks.append(s)
            return s

    yield Env()
    for s in sinks:
        s.stop()
    if not os.environ.get("WAYGATE_KEEP_STACK"):
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def sink(env):
    return env.sink("main")


@pytest.fixture
def probe(env, sink):
    sink.ctl("up")
    p = Probe(env.certdir, sink.addr)
    yield p
    p.close()
    sink.ctl("up")


def test_ok_one_result_per_delivery_and_the_sink_records_them(probe, sink):
    r = probe.call("ok", n=3)
    assert r["status"] == OK, r
    assert sorted(x["id"] for x in r["results"]) == ["ok-0", "ok-1", "ok-2"]
    assert all(x["outcome"] == ACCEPTED for x in r["results"])
    assert r["inflight"] == 0
    recs = [x for x in sink.records() if x["delivery_id"].startswith("ok-")]
    assert sorted(x["delivery_id"] for x in recs) == ["ok-0", "ok-1", "ok-2"]
    assert all(x["kind"] == "DELIVERY_KIND_WAYBILL_ACCEPTED" and x["outcome"] == "ACCEPTED"
               for x in recs)
    assert recs[0]["waybill"]["status"] == "accepted"
    print("sink received %d deliveries of the call" % len(recs))


def test_connection_sends_without_nagle(probe, sink):
    """The client's TCP connection has TCP_NODELAY: a request's last frames go out at once
    instead of waiting for the backend's delayed ACK (with Nagle on, each Deliver call on a local
    backend took ~90 ms and the forwarder fell behind the intake)."""
    assert probe.call("nd", n=1)["status"] == OK
    probe.send("sockopts")
    r = probe.line()
    print("the client's TCP sockets, TCP_NODELAY: %s" % r["tcp"])
    assert r["tcp"], "no TCP connection found"
    assert r["tcp"] == [1] * len(r["tcp"]), r


def test_rejected_result_for_the_marked_delivery_only(probe, sink):
    sink.ctl("refuse", "MARK-rej")
    r = probe.call("rej", n=2, marker="MARK-rej")
    assert r["status"] == OK, r
    by_id = {x["id"]: x for x in r["results"]}
    assert by_id["rej-0"]["outcome"] == REJECTED and by_id["rej-0"]["reason_len"] > 0
    assert by_id["rej-1"]["outcome"] == ACCEPTED and by_id["rej-1"]["reason_len"] == 0


def test_whole_call_status_and_message_are_passed_through(probe, sink):
    sink.ctl("invalid", "MARK-inv")
    r = probe.call("inv", n=2, marker="MARK-inv")
    assert r["status"] == INVALID_ARGUMENT, r
    assert "marker" in r["message"]
    assert "results" not in r


def test_deadline_exceeded_with_a_slow_backend_then_ok(probe, sink):
    sink.ctl("slow", "20000")  # far beyond the call's deadline: never answers in time
    r = probe.call("slow", n=1, deadline_ms=300)
    assert r["status"] == DEADLINE, r
    assert r["inflight"] == 0
    sink.ctl("up")
    r = probe.call("after-slow", n=1)  # the same connection (the stream was reset, not it)
    assert r["status"] == OK, r


def test_unavailable_when_down_and_reconnect_when_back(probe, sink):
    assert probe.call("warm", n=1)["status"] == OK  # connected
    sink.ctl("down")  # closes the listener and the open connection
    r = probe.call("down", n=1)
    assert r["status"] == UNAVAILABLE, r
    r = probe.call("down2", n=1)
    assert r["status"] == UNAVAILABLE, r
    assert "refused" in r["message"] or "closed" in r["message"], r
    sink.ctl("up")
    attempts = []

    def ok():
        res = probe.call("back%d" % len(attempts), n=1)
        attempts.append(res["status"])
        return res["status"] == OK

    poll(ok)
    assert set(attempts[:-1]) <= {UNAVAILABLE}, attempts
    print("reconnected after %d call(s) failed fast in the client's backoff" % (len(attempts) - 1))


def test_response_over_max_response_is_resource_exhausted_and_connection_survives(probe, sink):
    sink.ctl("big", "200000")  # the probe's max_response is 65536
    r = probe.call("big", n=1)
    assert r["status"] == RESOURCE_EXHAUSTED, r
    assert "max_response" in r["message"]
    sink.ctl("up")
    assert probe.call("after-big", n=1)["status"] == OK


def test_response_under_max_response_is_ok(env, sink):
    sink.ctl("big", "30000")
    p = Probe(env.certdir, sink.addr)
    try:
        r = p.call("mid", n=1)
        assert r["status"] == OK, r
        assert r["results"][0]["reason_len"] == 30000
    finally:
        p.close()
        sink.ctl("up")


def test_response_past_the_initial_flow_control_window_is_ok(env, sink):
    # 300 000 bytes: several times HTTP/2's initial 65 535-byte window (the client's window updates)
    sink.ctl("big", "300000")
    p = Probe(env.certdir, sink.addr, max_response=1024 * 1024)
    try:
        r = p.call("window", n=1)
        assert r["status"] == OK, r
        assert r["results"][0]["reason_len"] == 300000
    finally:
        p.close()
        sink.ctl("up")


def test_backend_going_down_under_a_call_in_flight_is_unavailable(probe, sink):
    assert probe.call("pre", n=1)["status"] == OK  # connected
    sink.ctl("slow", "20000")
    probe.send("call inflight-down 1 30000")
    sink.ctl("down")  # closes the connection the call is on (or refuses it, had it not left yet)
    r = probe.line()
    assert r["tag"] == "inflight-down" and r["status"] == UNAVAILABLE, r
    assert r["inflight"] == 0


def test_server_certificate_of_another_ca_is_refused(env):
    rogue = env.sink("rogue", cert="rogue-sink")
    p = Probe(env.certdir, rogue.addr)
    try:
        r = p.call("rogue", n=1)
        assert r["status"] == UNAVAILABLE, r
        assert "server certificate refused" in r["message"], r
    finally:
        p.close()
    assert rogue.records() == []


def test_server_certificate_naming_another_host_is_refused(env):
    # the gateway's own server certificate: the right CA, but it names localhost, not the sink
    other = env.sink("othername", cert="server")
    p = Probe(env.certdir, other.addr)
    try:
        r = p.call("name", n=1)
        assert r["status"] == UNAVAILABLE, r
        assert "hostname mismatch" in r["message"], r
    finally:
        p.close()
    assert other.records() == []
    # the same sink accepts a client that expects its name
    p = Probe(env.certdir, other.addr, server_name="localhost")
    try:
        assert p.call("name-ok", n=1)["status"] == OK
    finally:
        p.close()


def test_backend_requires_the_forwarding_certificate(env, sink):
    p = Probe(env.certdir, sink.addr, principal="courier_a")
    try:
        r = p.call("courier", n=1)
        assert r["status"] == PERMISSION_DENIED, r
    finally:
        p.close()


def test_cancelled_call_never_calls_back(probe, sink):
    sink.ctl("slow", "20000")
    probe.send("cancel cx 1 10000")
    r = probe.line()
    assert r == {"tag": "cx", "cancelled": True, "inflight": 0}, r
    sink.ctl("up")
    # the next line is the next call's answer, never the cancelled call's
    r = probe.call("after-cancel", n=1)
    assert r["status"] == OK, r


def test_callback_may_free_the_client(probe):
    probe.send("freecb fc 1 5000")
    r = probe.line()
    assert r["tag"] == "fc" and r["status"] == OK and r.get("freed") is True, r
    assert probe.call("after-free", n=1)["status"] == OK


def test_concurrent_calls_are_multiplexed(probe, sink):
    n = 24
    for i in range(n):
        probe.send("call cc%d 2 10000" % i)
    answers = [probe.line() for _ in range(n)]
    assert sorted(a["tag"] for a in answers) == sorted("cc%d" % i for i in range(n))
    assert all(a["status"] == OK for a in answers), answers
    probe.send("inflight")
    assert probe.line() == {"inflight": 0}
    got = {x["delivery_id"] for x in sink.records() if x["delivery_id"].startswith("cc")}
    assert len(got) == 2 * n


def test_unreadable_key_fails_at_creation(env, sink):
    p = Probe(env.certdir, sink.addr, principal="no-such", expect_ready=False)
    assert p.first["event"] == "error" and "no-such.crt" in p.first["message"], p.first
    assert p.proc.wait(timeout=BOUND_S) == 1


def test_silently_dead_connection_is_dropped_after_an_unanswered_ping(env, sink):
    hole = Blackhole(sink.addr)
    p = Probe(env.certdir, hole.addr)
    try:
        assert p.call("alive", n=1)["status"] == OK
        hole.freeze()  # the connection stays open and silent, as behind a dead NAT
        r = p.call("frozen", n=1, deadline_ms=300)
        assert r["status"] == DEADLINE, r
        statuses = []

        def recovered():
            res = p.call("recover%d" % len(statuses), n=1, deadline_ms=1000)
            statuses.append(res["status"])
            return res["status"] == OK

        poll(recovered)  # without the PING check every call would hit its deadline forever
        print("recovered on a new connection after %d call(s): %s" % (len(statuses),
                                                                       statuses[:-1]))
    finally:
        p.close()
        hole.close()


def test_against_the_gateways_own_http2_server(stack):
    """The client against Waygate's own server (transport/h2.c): a unary answer with trailers,
    and a Trailers-Only refusal."""
    certs = os.path.dirname(stack.ca)
    p = Probe(certs, stack.addr, server_name="localhost", principal="backend")
    try:
        p.send("raw health /grpc.health.v1.Health/Check - 5000")
        r = p.line()
        assert r["status"] == OK and r["response"] == "0801", r  # status: SERVING
        p.send("raw nosuch /waygate.v1.NoSuch/Method - 5000")
        r = p.line()
        assert r["status"] == 12, r  # UNIMPLEMENTED
    finally:
        p.close()


def test_ping_flood_from_a_backend_that_never_reads_is_cut_by_its_budget(env):
    """A backend sends PINGs without end and never reads: every PING makes nghttp2 queue an ACK,
    and nghttp2's flood limit counts only its own queue. The client's PING budget (the server
    side's, h2_calm.h) ends the connection once the flood passes it: the call fails UNAVAILABLE
    naming the PING flood long before its deadline, and the output held no more than the ACKs
    within the budget (the output's mark stays behind it as a second bound). Without the budget
    the call ran to its deadline while the client answered the flood."""
    srv = HostileBackend(env.certdir, "flood")
    p = Probe(env.certdir, srv.addr, connect_timeout_ms=1000)
    try:
        r = p.call("flood", n=1, deadline_ms=BOUND_S * 1000)
        assert r["status"] == UNAVAILABLE, r
        assert "PING flood" in r["message"], r
        assert srv.ended.wait(BOUND_S), "the client never dropped the flooding connection"
        st = p.stats()
        print("PING flood: %d KB sent by the server, the client's output at most %d bytes "
              "(mark %d): %s" % (srv.flood_sent >> 10, st["out_peak"], st["out_high"],
                                 r["message"]))
        assert st["inflight"] == 0, st
        assert st["out_peak"] <= st["out_high"] + 17 * 1024, st  # the mark plus one frame chunk
    finally:
        p.close()
        srv.close()


def test_window_update_flood_from_a_backend_is_cut_by_its_budget(env):
    """A backend sends connection WINDOW_UPDATEs without end (each asks for no work, and costs
    the gateway's loop a frame's processing): past the client's WINDOW_UPDATE budget, earned
    back only by our own requests, the connection is dropped and the call fails UNAVAILABLE
    naming the flood, every call in flight, long before their deadlines; the next attempt waits
    for the backoff. Without the budget the client processed the flood until the calls'
    deadlines."""
    srv = HostileBackend(env.certdir, "wuflood")
    p = Probe(env.certdir, srv.addr, connect_timeout_ms=1000)
    try:
        for i in range(3):
            p.send("call wu%d 1 %d" % (i, BOUND_S * 1000))
        answers = [p.line() for _ in range(3)]
        for r in answers:  # each call in flight is told why, not just "stream reset"
            assert r["status"] == UNAVAILABLE, r
            assert "WINDOW_UPDATE flood" in r["message"], r
        assert srv.ended.wait(BOUND_S), "the client never dropped the flooding connection"
        print("WINDOW_UPDATE flood: %d frames sent by the server before the drop: %s" %
              (srv.flood_sent // 13, r["message"]))  # whole blocks only
        r = p.call("wu2", n=1, deadline_ms=5000)  # refused in the backoff, or flooded again
        assert r["status"] == UNAVAILABLE and "flood" in r["message"], r
        assert p.stats()["inflight"] == 0
    finally:
        p.close()
        srv.close()


# gclient.c: the reconnect backoff after a failed attempt (BACKOFF_MIN_MS doubled, BACKOFF_MAX_MS)
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
LEAVING_CONNECTIONS = 6


def attempts_within(elapsed):
    """The most connection attempts the client's backoff allows within elapsed seconds when each
    one fails: the first at once, each next one at least its backoff after the last failed."""
    n, t, b = 1, 0.0, BACKOFF_MIN_S
    while t + b <= elapsed:
        t, n, b = t + b, n + 1, min(b * 2, BACKOFF_MAX_S)
    return n


@pytest.mark.parametrize("mode", ["goaway", "close"])
def test_a_backend_that_settles_and_leaves_meets_the_backoff(env, mode):
    """A backend that answers every connection with its SETTINGS and then GOAWAY (or a close)
    serves no call: each connection is a failed attempt. Calls made one after another (every
    10 ms) until the backend has seen LEAVING_CONNECTIONS connections cost no more connections
    than the reconnect backoff allows in the time they took, not one TLS handshake per call, and
    the client still comes back after each backoff. Before, the SETTINGS reset the backoff and a
    GOAWAY or close after them counted as an established connection lost: every call connected
    again at once."""
    srv = HostileBackend(env.certdir, mode)
    p = Probe(env.certdir, srv.addr, connect_timeout_ms=5000)
    answers = []
    try:
        start = time.monotonic()
        while srv.accepted < LEAVING_CONNECTIONS:
            assert time.monotonic() < start + BOUND_S, "the client stopped connecting"
            answers.append(p.call("gone%d" % len(answers), n=1, deadline_ms=BOUND_S * 1000))
            time.sleep(0.01)  # pacing the calls, not waiting for an outcome
        elapsed = time.monotonic() - start
        with srv.lock:
            accepted = srv.accepted
        print("%s: %d calls in %.1f s, %d connections (the backoff allows %d): %s" % (
            mode, len(answers), elapsed, accepted, attempts_within(elapsed),
            answers[-1]["message"]))
        assert srv.settings_acked.is_set(), "the client never read the SETTINGS: no premise"
        assert all(a["status"] == UNAVAILABLE for a in answers), answers
        assert accepted <= attempts_within(elapsed), \
            "%d connections for %d calls in %.1f s: the backoff was reset" % (
                accepted, len(answers), elapsed)
        assert p.stats()["inflight"] == 0
    finally:
        p.close()
        srv.close()


def test_a_silent_backend_meets_the_backoff(env):
    """A backend that completes the TLS handshake and then says nothing (no SETTINGS, no answer
    to the PING a call's deadline sends) never proved its connection usable: each such connection
    dropped for its unanswered PING is a failed attempt and meets the reconnect backoff. Calls
    made one after another until the backend has seen LEAVING_CONNECTIONS connections cost no
    more connections than the backoff allows in the time they took. Before, the unanswered PING
    counted the connection as established, and the next call connected again at once (review).
    The bound holds by construction whatever the machine's speed; a slow machine only weakens
    the test."""
    srv = HostileBackend(env.certdir, "silent")
    p = Probe(env.certdir, srv.addr, connect_timeout_ms=300)
    answers = []
    try:
        start = time.monotonic()
        while srv.accepted < LEAVING_CONNECTIONS:
            assert time.monotonic() < start + 4 * BOUND_S, "the client stopped connecting"
            answers.append(p.call("hush%d" % len(answers), n=1, deadline_ms=200))
            time.sleep(0.01)  # pacing the calls, not waiting for an outcome
        elapsed = time.monotonic() - start
        with srv.lock:
            accepted = srv.accepted
        print("silent: %d calls in %.1f s, %d connections (the backoff allows %d): %s" % (
            len(answers), elapsed, accepted, attempts_within(elapsed),
            sorted({a["message"] for a in answers})))
        assert all(a["status"] in (DEADLINE, UNAVAILABLE) for a in answers), answers
        assert accepted <= attempts_within(elapsed), \
            "%d connections for %d calls in %.1f s: the backoff was reset" % (
                accepted, len(answers), elapsed)
    finally:
        p.close()
        srv.close()


KEYUPDATE_SERVER_C = r"""
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

/* ca cert key n: a TLS 1.3 server on 127.0.0.1 (port printed on the first line), client
 * certificate required, ALPN h2. On its one connection it reads the client's preface and sends
 * an empty SETTINGS frame. Then it makes n KeyUpdate messages, each asking for one back, into
 * memory and writes them as one stream of bytes, as fast as the socket takes them: the client
 * always has the next record waiting, however slowly it answers. Meanwhile, and after, it reads
 * what the client sends and counts the client's KeyUpdates (its answers), until the connection
 * ends or nothing has come for 10 s. Prints "written answers ended": the bytes of the stream
 * written, the answers, and whether the connection ended ("closed") or not ("open"). */
""" + KEYUPDATE_COUNT_C + r"""
static int alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i + 1 + in[i] <= inlen; i += 1u + in[i])
        if (in[i] == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int main(int argc, char **argv)
{
    static const unsigned char settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    static unsigned char buf[65536];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    struct sockaddr_in sa = {0};
    socklen_t salen = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fd, one = 1, got = 0, r;
    const char *ended = "open";
    char *stream;
    long n, i, len, off = 0;
    BIO *mem;
    SSL *ssl;

    if (argc != 5 || ctx == NULL || lfd < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    n = atol(argv[4]);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (!SSL_CTX_load_verify_locations(ctx, argv[1], NULL) ||
        !SSL_CTX_use_certificate_chain_file(ctx, argv[2]) ||
        !SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM))
        return 2;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, alpn, NULL);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0)
        return 2;
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    if ((fd = accept(lfd, NULL, NULL)) < 0)
        return 2;
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1)
        return 3;
    while (got < 24 && (r = SSL_read(ssl, buf, 24 - got)) > 0) /* the preface */
        got += r;
    if (got < 24 || SSL_write(ssl, settings, sizeof(settings)) <= 0)
        return 3;
    SSL_set_msg_callback(ssl, count_cb);
    /* the n messages, into memory (the read side stays on the socket) */
    if ((mem = BIO_new(BIO_s_mem())) == NULL)
        return 3;
    SSL_set0_wbio(ssl, mem);
    for (i = 0; i < n; i++)
        if (!SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) || SSL_do_handshake(ssl) != 1)
            return 3;
    len = BIO_get_mem_data(mem, &stream);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        struct pollfd p = {fd, POLLIN | (off < len ? POLLOUT : 0), 0};

        if (poll(&p, 1, 10000) <= 0)
            break; /* nothing for 10 s: "open" */
        if (off < len && (p.revents & POLLOUT)) {
            ssize_t w = write(fd, stream + off, (size_t)(len - off));

            if (w > 0)
                off += w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                ended = "closed";
                break;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            while ((r = SSL_read(ssl, buf, sizeof(buf))) > 0) /* the client's answers */
                ;
            r = SSL_get_error(ssl, r);
            if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) {
                ended = "closed";
                break;
            }
        }
    }
    printf("%ld %ld %s\n", off, answers, ended);
    return 0;
}
"""
KEYUPDATE_FLOOD = 8192  # messages, written at once (~230 KB)
KEY_UPDATE_ANSWERED_MAX = 1024  # far above the budget's burst (32, h2_calm.h), far below the flood


def test_key_update_flood_from_a_backend_is_cut_by_its_budget(env, tmp_path):
    """A backend writes 8192 TLS 1.3 KeyUpdate messages at once, each asking for one back (two
    key derivations, new cipher contexts and a record of the client's each), so that the next
    one is always waiting in the client's socket: the client counts them (OpenSSL's message
    callback, as the gateway's server side does) against the same budget (32 at once, then one a
    second) and drops the connection past it, the call failing UNAVAILABLE naming the KeyUpdate
    flood long before its deadline, having answered far fewer than the flood. Red without the
    budget (the call ran to its deadline), and red with OpenSSL's SSL_MODE_AUTO_RETRY left on:
    one SSL_read then read and answered every message waiting before the budget could be
    charged. Built with the system's gcc and libssl-dev: Python's ssl module cannot send a
    KeyUpdate."""
    exe = build_tls_c(tmp_path, "keyupdate_server", KEYUPDATE_SERVER_C)
    certs = env.certdir
    srv = subprocess.Popen([exe, os.path.join(certs, "ca.crt"),
                            os.path.join(certs, "sink.crt"), os.path.join(certs, "sink.key"),
                            str(KEYUPDATE_FLOOD)], stdout=subprocess.PIPE, text=True)
    p = None
    try:
        port = int(srv.stdout.readline())
        p = Probe(certs, "127.0.0.1:%d" % port, connect_timeout_ms=5000)
        a = p.call("keyupdate", n=1, deadline_ms=BOUND_S * 1000)
        out, _ = srv.communicate(timeout=BOUND_S)
        written, answered, ended = out.split()
        print("KeyUpdate flood of %d: %s bytes written, %s answered before the connection ended "
              "(%s): %s" % (KEYUPDATE_FLOOD, written, answered, ended, a["message"]))
        assert a["status"] == UNAVAILABLE, a
        assert "TLS KeyUpdate or renegotiation flood" in a["message"], a
        assert ended == "closed"
        # (fewer than the burst may be seen: answers still unread are lost when the client's
        # reset arrives; the failure's message above shows the budget was reached)
        assert int(answered) <= KEY_UPDATE_ANSWERED_MAX, answered
        assert p.stats()["inflight"] == 0
    finally:
        if p is not None:
            p.close()
        if srv.poll() is None:
            srv.kill()
            srv.wait()


# h2_calm.h's bounds, which the client applies to the backend
WINDOW_UPDATE_BURST, WINDOW_UPDATE_RATE = 1000, 100
PING_BURST, PING_RATE = 100, 10
RST_STREAM_BURST, RST_STREAM_RATE = 400, 40
INFLIGHT = 64  # config.c: [forward] inflight at most

MAX_STALE = 128  # gclient.c: finished calls still tied to streams + orphaned requests


def test_calls_behind_a_stream_limit_of_zero_are_freed_at_their_deadline(env):
    """The backend's SETTINGS_MAX_CONCURRENT_STREAMS is 0: nghttp2 keeps each request in its queue,
    unsent. A call that reaches its deadline there is freed at once (its request cancelled, with
    the call detached from it), not held until the connection closes (the deadline's PING is
    answered, so it would never close); past MAX_STALE such requests on one connection the client
    drops the connection, which frees nghttp2's queue as well."""
    srv = HostileBackend(env.certdir, "mcs0")
    p = Probe(env.certdir, srv.addr)
    try:
        # the first call opens the connection; its HEADERS leave before the server's SETTINGS
        p.send("call warm 1 300")
        assert srv.settings_acked.wait(BOUND_S), "the client never acknowledged the limit"
        headers_before = srv.headers
        assert p.line()["status"] == DEADLINE
        n = 8
        for i in range(n):
            p.send("call z%d 200 300" % i)
        answers = [p.line() for _ in range(n)]
        assert all(a["status"] == DEADLINE for a in answers), answers
        st = p.stats()
        print("stream limit 0, after %d deadlines: %s" % (n, st))
        assert st["inflight"] == 0 and st["held"] == 0, st
        assert srv.headers == headers_before, "a request went out past the server's limit"
        assert srv.accepted == 1 and srv.closed == 0  # freed without dropping the connection

        m = MAX_STALE  # with the 8 above: past the bound
        for i in range(m):
            p.send("call y%d 1 300" % i)
        answers = [p.line() for _ in range(m)]
        deadline = [a for a in answers if a["status"] == DEADLINE]
        # the calls still queued when the connection went end UNAVAILABLE
        assert all(a["status"] in (DEADLINE, UNAVAILABLE) for a in answers), answers
        assert len(deadline) >= MAX_STALE - n + 1, len(deadline)
        assert srv.ended.wait(BOUND_S), "the connection was not dropped past the bound"
        st = p.stats()
        print("past the bound: %d DEADLINE, %d UNAVAILABLE, then %s" %
              (len(deadline), m - len(deadline), st))
        assert st["inflight"] == 0 and st["held"] == 0, st
        assert srv.headers == headers_before
    finally:
        p.close()
        srv.close()


class FakeDNS:
    """A DNS server on a loopback UDP port: `answer` mode answers every A query with 127.0.0.1
    (and AAAA with no address), `drop` mode never answers (a resolver gone silent). Counts the
    queries it received."""

    def __init__(self, mode):
        self.mode = mode
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            q, peer = self.sock.recvfrom(512)
            self.queries += 1
            if self.mode != "answer" or len(q) < 17:
                continue
            end = 12
            while end < len(q) and q[end] != 0:
                end += 1 + q[end]
            question = q[12:end + 5]
            qtype = struct.unpack("!H", q[end + 1:end + 3])[0]
            answers = b""
            if qtype == 1:
                answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([127, 0, 0, 1])
            header = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answers else 0, 0, 0)
            self.sock.sendto(header + question + answers, peer)

    def stop(self):
        self.stopped = True
        self.thread.join(BOUND_S)
        self.sock.close()


def test_host_name_is_resolved_on_the_loop(env, sink):
    """An endpoint named by a host name is resolved through libevent's resolver on the loop (here
    pointed at a test DNS server), and the call goes through."""
    sink.ctl("up")
    dns = FakeDNS("answer")
    port = sink.addr.rsplit(":", 1)[1]
    p = Probe(env.certdir, "sink.localhost:%s" % port, nameserver=dns.addr)
    try:
        r = p.call("named", n=1)
        assert r["status"] == OK, r
        assert dns.queries >= 1
    finally:
        p.close()
        dns.stop()


def test_host_name_from_the_system_hosts_file(env, sink):
    """Without a nameserver of the tests' own, the resolver is set up as in production, from
    resolv.conf and the hosts file: "localhost" is answered from the hosts file and the call goes
    through (the server's name is still checked against its certificate: sink.localhost)."""
    with open("/etc/hosts") as f:
        assert re.search(r"(?m)^127\.0\.0\.1\s.*\blocalhost\b", f.read()), \
            "this machine's /etc/hosts does not name localhost"
    sink.ctl("up")
    port = sink.addr.rsplit(":", 1)[1]
    p = Probe(env.certdir, "localhost:%s" % port)
    try:
        r = p.call("hosts", n=1)
        assert r["status"] == OK, r
    finally:
        p.close()


def test_silent_dns_server_does_not_hold_the_loop(env, sink):
    """A DNS server that never answers costs the call its connect deadline, not the loop: while
    the lookup waits (a connect timeout far longer than the test), a command is answered and
    shows the call still in flight (the C library's blocking resolver held the whole gateway for
    its own timeout on every attempt); with a short connect timeout the call then fails
    UNAVAILABLE naming it. Nothing here depends on how fast the machine is."""
    dns = FakeDNS("drop")
    port = sink.addr.rsplit(":", 1)[1]
    p = Probe(env.certdir, "sink.localhost:%s" % port, nameserver=dns.addr,
              connect_timeout_ms=600000)
    try:
        p.send("call silent 1 600000")
        poll(lambda: dns.queries >= 1)  # the lookup is under way
        st = p.stats()
        assert st["inflight"] == 1, st  # answered while the call waits on the lookup
    finally:
        p.close()  # the call never answers: its client is freed with the lookup cancelled
    q = Probe(env.certdir, "sink.localhost:%s" % port, nameserver=dns.addr,
              connect_timeout_ms=300)
    try:
        r = q.call("silent", n=1, deadline_ms=600000)
        assert r["status"] == UNAVAILABLE and "connect timeout" in r["message"], r
    finally:
        q.close()
        dns.stop()


@pytest.fixture(scope="module")
def crls(env):
    """Two CRLs of the test CA, made in a copy of its directory: `ok` (the sink's certificate not
    listed) and `sink` (the sink's certificate revoked)."""
    work = tempfile.mkdtemp(prefix="wg-gclient-crl-")
    certs = os.path.join(work, "certs")
    shutil.copytree(env.certdir, certs)
    cnf = os.path.join(certs, "ca", "openssl.cnf")
    with open(cnf) as f:
        text = f.read().replace(os.path.join(env.certdir, "ca"), os.path.join(certs, "ca"))
    with open(cnf, "w") as f:
        f.write(text)

    def openssl(*args):
        r = subprocess.run(["openssl", "ca", "-config", cnf, "-batch"] + list(args),
                           capture_output=True, text=True, timeout=BOUND_S)
        assert r.returncode == 0, r.stderr

    out = {"ok": os.path.join(work, "ok.pem"), "sink": os.path.join(work, "sink.pem")}
    openssl("-gencrl", "-crldays", "30", "-out", out["ok"])
    openssl("-revoke", os.path.join(certs, "sink.crt"))
    openssl("-gencrl", "-crldays", "30", "-out", out["sink"])
    yield out
    shutil.rmtree(work, ignore_errors=True)


def test_backend_certificate_revoked_by_the_crl_is_refused(env, sink, crls):
    """[forward] crl: a backend whose certificate the CRL lists is refused at the handshake; the
    same backend with a CRL that does not list it, or with none, is served."""
    sink.ctl("up")
    for crl, want in ((crls["ok"], OK), (None, OK), (crls["sink"], UNAVAILABLE)):
        p = Probe(env.certdir, sink.addr, crl=crl)
        try:
            r = p.call("crl", n=1)
            assert r["status"] == want, (crl, r)
        finally:
            p.close()


def test_crl_read_again_drops_a_connection_to_a_revoked_backend(env, sink, crls):
    """gw_gclient_reload_tls (the daemon calls it with [tls] crl_reload_ms and on SIGHUP): a file
    it cannot read leaves the CRL in force; a new CRL revoking the backend drops the live
    connection, so the next call is refused rather than carried on the old one."""
    sink.ctl("up")
    path = os.path.join(env.dir, "forward-crl.pem")
    shutil.copy(crls["ok"], path)
    p = Probe(env.certdir, sink.addr, crl=path)
    try:
        assert p.call("before", n=1)["status"] == OK  # the connection is up
        with open(path, "w") as f:
            f.write("not a CRL\n")
        p.send("reload")
        r = p.line()
        assert r["reload"] != 0 and "cannot load CRL" in r["message"], r
        assert p.call("kept", n=1)["status"] == OK
        shutil.copy(crls["sink"], path)
        p.send("reload")
        assert p.line() == {"reload": 0, "message": ""}
        r = p.call("after", n=1)
        assert r["status"] == UNAVAILABLE, r
    finally:
        p.close()


def test_a_busy_backend_earns_its_window_updates_pings_and_resets(env):
    """The reverse of the floods above: a backend answering many calls sends window updates and
    pings in proportion to what we send (here HostileBackend "echo": a connection and a stream
    WINDOW_UPDATE for every DATA frame received, a PING and a RST_STREAM per request), far past
    the budgets' bursts within a second; our requests earn them back, so not one call fails.
    Calls are kept at most INFLIGHT at a time, the forwarder's largest `[forward] inflight`: the
    credit a frame earns is capped at the budget's burst, so thousands of requests sent before
    any answer would lose most of theirs."""
    srv = HostileBackend(env.certdir, "echo")
    p = Probe(env.certdir, srv.addr)
    try:
        n = 3 * WINDOW_UPDATE_BURST
        start = time.monotonic()
        answers = []
        for i in range(n):
            if i >= INFLIGHT:
                answers.append(p.line())
            p.send("call e%d 1 %d" % (i, BOUND_S * 1000))
        answers += [p.line() for _ in range(min(n, INFLIGHT))]
        elapsed = time.monotonic() - start
        bad = [a for a in answers if a["status"] != OK]
        print("%d calls in %.1f s, %d WINDOW_UPDATEs and %d PINGs from the backend, %d failed%s" %
              (n, elapsed, srv.window_updates, srv.pings, len(bad),
               (": %s" % bad[0]) if bad else ""))
        assert not bad
        assert srv.accepted == 1
        # more than the budgets' bursts and refills could have paid for: the credit did
        assert srv.window_updates > WINDOW_UPDATE_BURST + WINDOW_UPDATE_RATE * elapsed
        assert srv.pings > PING_BURST + PING_RATE * elapsed
        assert srv.resets > RST_STREAM_BURST + RST_STREAM_RATE * elapsed
    finally:
        p.close()
        srv.close()
