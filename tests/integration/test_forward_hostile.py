"""The forwarder (gateway/forward/) and its gRPC client (transport/gclient.c) against a carrier
backend that misbehaves on purpose: a TLS + HTTP/2 server of this file written frame by
frame, holding the sink's certificate (a backend the gateway trusts), served on the dev stack's
sink address while the reference sink is down.

Each test states the rule it holds the gateway to; waits poll with a bound, never a sleep for an
outcome."""

import os
import signal
import socket
import ssl
import struct
import threading
import time

import pytest

from conftest import h2_frame, hpack_literal, recv_exact, wait_for
from test_forward import new_waybill, outbox_rows, sink, submit, wait_delivered

BOUND_S = 60
H2_DATA, H2_HEADERS, H2_SETTINGS, H2_PING = 0, 1, 4, 6
END_STREAM = ACK = 1
END_HEADERS = 4


class HostileBackend:
    """A CarrierBackend on `addr` (the sink's certificate, client certificate required, ALPN h2)
    that reads whole Deliver requests and answers each by `answer(deliveries)`: a grpc-status
    (int) sent trailers-only, a DeliverResponse's bytes sent with grpc-status 0, or None to never
    answer (PINGs and SETTINGS are still answered, so the connection stays alive). `calls` lists
    (monotonic time, number of deliveries) per call, `records` every delivery's record_id
    received."""

    def __init__(self, stack, answer):
        env = stack.env
        self.pb = stack.pb
        self.answer = answer
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(env["WAYGATE_SINK_CERT"], env["WAYGATE_SINK_KEY"])
        self.ctx.load_verify_locations(env["WAYGATE_CA"])
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.set_alpn_protocols(["h2"])
        host, port = env["WAYGATE_SINK_ADDR"].rsplit(":", 1)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, int(port)))
        self.lsock.listen(16)
        self.lock = threading.Lock()
        self.calls = []
        self.records = []
        self.socks = []
        self.threads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            raw.settimeout(BOUND_S * 3)
            # wrapped here, before the handshake: wrap_socket detaches `raw` (its fd is the TLS
            # socket's now), and close() must shut down the socket that owns the fd
            s = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self.socks.append(s)
            t = threading.Thread(target=self._conn, args=(s,), daemon=True)
            self.threads.append(t)
            t.start()

    def _conn(self, s):
        try:
            s.do_handshake()
            self._serve(s)
        except (OSError, EOFError, ssl.SSLError):
            pass
        finally:
            s.close()

    def _serve(self, s):
        wlock = threading.Lock()

        def send(b):
            with wlock:
                s.sendall(b)
        recv_exact(s, 24)  # the client's preface
        send(h2_frame(H2_SETTINGS, 0, 0))
        bodies = {}
        while True:
            hd = recv_exact(s, 9)
            length, ftype, flags = int.from_bytes(hd[:3], "big"), hd[3], hd[4]
            sid = struct.unpack(">I", hd[5:])[0] & 0x7FFFFFFF
            payload = recv_exact(s, length)
            if ftype == H2_SETTINGS and not flags & ACK:
                send(h2_frame(H2_SETTINGS, ACK, 0))
            elif ftype == H2_PING and not flags & ACK:
                send(h2_frame(H2_PING, ACK, 0, payload))
            elif ftype == H2_HEADERS:
                bodies[sid] = b""
            elif ftype == H2_DATA:
                if length:  # give the window back
                    send(h2_frame(8, 0, 0, struct.pack(">I", length)))
                bodies[sid] = bodies.get(sid, b"") + payload
                if flags & END_STREAM:
                    body = bodies.pop(sid)
                    req = self.pb.backend.DeliverRequest.FromString(body[5:])
                    with self.lock:
                        self.calls.append((time.monotonic(), len(req.deliveries)))
                        self.records.extend(d.record_id for d in req.deliveries)
                    status = self.answer(req.deliveries)
                    if isinstance(status, bytes):
                        send(h2_frame(H2_HEADERS, END_HEADERS, sid, hpack_literal(
                            [(":status", "200"), ("content-type", "application/grpc")])) +
                             h2_frame(H2_DATA, 0, sid, b"\x00" + struct.pack(">I", len(status)) +
                                      status) +
                             h2_frame(H2_HEADERS, END_HEADERS | END_STREAM, sid,
                                      hpack_literal([("grpc-status", "0")])))
                    elif status is not None:
                        send(h2_frame(H2_HEADERS, END_HEADERS | END_STREAM, sid, hpack_literal(
                            [(":status", "200"), ("content-type", "application/grpc"),
                             ("grpc-status", str(status)), ("grpc-message", "refused")])))

    def singles(self):
        with self.lock:
            return [t for t, n in self.calls if n == 1]

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept: the port is free at once
        except OSError:
            pass
        self.lsock.close()
        # the TCP shutdown, not TLS's (SSLSocket.shutdown drops the TLS object under the thread
        # still reading it): the gateway sees its connection closed, and each serving thread
        # ends and closes its socket
        for x in self.socks:
            try:
                socket.socket.shutdown(x, socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(BOUND_S)
            assert not t.is_alive(), "a connection of the hostile backend is still served"


def gateway_ended(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def hold_rows(stack, ids, until):
    """Sets next_at of these waybills' outbox rows (none leased) to `until`; True once all are."""
    chunk = ",".join("'%s'" % r for r in ids)
    stack.psql("UPDATE outbox SET next_at = '%s' WHERE waybill_id IN (%s) AND lease_owner IS NULL"
               % (until, chunk))
    return int(stack.psql("SELECT count(*) FROM outbox WHERE waybill_id IN (%s) AND next_at = '%s'"
                          % (chunk, until))[0]) == len(ids)


def test_sigterm_drain_starts_no_new_deliver_call(stack):
    """On SIGTERM the forwarder "claims nothing more and the daemon waits for its calls in
    flight" (docs/architecture.md), and the calls' part of the drain is bounded by [server]
    drain_timeout_ms (deploy/systemd/waygated.service). A backend that refuses a batch as a whole
    (INVALID_ARGUMENT) makes the forwarder send the batch again one delivery per call; if it then
    never answers a single call, each takes the full deadline (5 s). No Deliver call may begin
    after SIGTERM: the drain should wait for the one call in flight, not send the rest of the
    batch one by one until the lease runs out (before the fix: 3 more calls and an exit ~20-29 s
    after SIGTERM, the batch going on in singles mode while draining)."""
    sink(stack, "down")
    ids = [submit(stack, new_waybill(stack)) for _ in range(4)]
    # every row unleased and held, so that one claim takes all four at once (one batch)
    assert wait_for(lambda: hold_rows(stack, ids, "infinity"), BOUND_S, 0.2)
    srv = HostileBackend(stack, lambda ds: 3 if len(ds) > 1 else None)
    pid = stack.gateway_pid()
    try:
        assert hold_rows(stack, ids, "-infinity")  # released together: one claim of four
        assert wait_for(lambda: srv.singles(), BOUND_S, 0.05), "no batch went one by one"
        assert any(n == 4 for _, n in srv.calls), srv.calls
        t_term = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: gateway_ended(pid), 120, 0.1), "the gateway did not end"
        took = time.monotonic() - t_term
        after = [t for t in srv.singles() if t > t_term]
        print("\ndrain: exited %.1f s after SIGTERM; %d Deliver call(s) began after it"
              % (took, len(after)))
        assert not after, "%d Deliver call(s) began after SIGTERM (exit after %.1f s)" % (
            len(after), took)
    finally:
        srv.close()
        stack.restart_gateway()
        sink(stack, "up")
    wait_delivered(stack, {r: 1 for r in ids})
    assert outbox_rows(stack, ids) == 0


def test_ack_of_an_id_never_sent_deletes_nothing(stack):
    """A delivery leaves the outbox only once the backend acknowledged *that* delivery_id. This
    backend answers every call OK with one ACCEPTED result per delivery, each for an id it was
    never sent: the delivery's id followed by a NUL and more bytes (a different protobuf string;
    a backend with NUL-padded or garbled ids). None of them may count: the deliveries must stay in
    the outbox and be sent again: a response whose strings are not UTF-8 without a NUL is
    malformed (wirecheck.h), since protobuf-c hands a string over NUL-terminated and the id
    would end at its first NUL (before the fix: all deleted at the first answer)."""
    pb = stack.pb
    sink(stack, "down")
    ids = [submit(stack, new_waybill(stack)) for _ in range(3)]

    def answer(deliveries):
        return pb.backend.DeliverResponse(results=[
            pb.backend.DeliveryResult(delivery_id=d.delivery_id + "\x00never-sent",
                                      outcome=pb.backend.DeliveryResult.OUTCOME_ACCEPTED)
            for d in deliveries]).SerializeToString()
    srv = HostileBackend(stack, answer)
    try:
        # either every delivery came back for a second try (its first answer was settled as
        # "no result") or the outbox lost them
        def settled():
            with srv.lock:
                seen = list(srv.records)
            return outbox_rows(stack, ids) < len(ids) or all(seen.count(r) >= 2 for r in ids)
        assert wait_for(settled, BOUND_S, 0.1), "the deliveries were not sent twice"
        left = outbox_rows(stack, ids)
        # the backend's malformed answers are its failures: logged, not silent
        assert any("Deliver answered: malformed DeliverResponse: a string that is not UTF-8 or "
                   "holds a NUL" in line for line in stack.log_lines()), \
            "no line tells of the backend's malformed answers"
        print("\nack of ids never sent: %d of %d deliveries left in the outbox" % (left, len(ids)))
        assert left == len(ids), "%d deliveries deleted on acks of ids never sent" % (
            len(ids) - left)
    finally:
        srv.close()
        sink(stack, "up")
    wait_delivered(stack, {r: 1 for r in ids})
