"""Transport: the gateway reads with TLS read-ahead (one read takes every record that has
arrived) and writes a loop pass's output at once. A client whose requests arrive as many TLS
records in one TCP segment gets every one of them answered: none is left waiting in the TLS
layer's buffer while the socket has nothing more to read. Driven by the ssl module over memory
BIOs, so the records and the segment are exactly what the test says."""

import socket
import ssl
import struct

from test_foundation import hostport

HEALTH = b"/grpc.health.v1.Health/Check"
SERVING = b"\x00\x00\x00\x00\x02\x08\x01"  # gRPC prefix + HealthCheckResponse{status: SERVING}
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0, 1, 3, 4, 7
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK literal header field without indexing, no Huffman coding (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def health_request(stream):
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", HEALTH),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])
    return frame(HEADERS, END_HEADERS, stream, block) + \
        frame(DATA, END_STREAM, stream, b"\x00\x00\x00\x00\x00")


def count_records(data):
    count = 0
    while data:
        count += 1
        data = data[5 + int.from_bytes(data[3:5], "big"):]
    return count


class Client:
    """TLS over memory BIOs on a blocking socket: what the TLS layer writes is sent only when
    the test says so."""

    def __init__(self, stack):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(stack.ca)
        ctx.set_alpn_protocols(["h2"])
        ctx.load_cert_chain(*stack.cert("courier_a"))
        # A failing gateway would leave the test waiting for answers: bound that wait.
        self.sock = socket.create_connection(hostport(stack.addr), timeout=30)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.send_pending()
                self.receive()
        self.send_pending()

    def send_pending(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def receive(self):
        data = self.sock.recv(65536)
        assert data, "the gateway closed the connection"
        self.inc.write(data)

    def read_frames(self):
        """Yields (type, flags, stream, payload) for every frame the gateway sends."""
        buf = b""
        while True:
            while True:
                try:
                    buf += self.tls.read(65536)
                except ssl.SSLWantReadError:
                    break
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                ftype, flags = buf[3], buf[4]
                stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                yield ftype, flags, stream, buf[9:9 + n]
                buf = buf[9 + n:]
            self.receive()

    def close(self):
        self.sock.close()


def test_requests_in_many_records_of_one_segment_are_all_answered(stack):
    n = 60
    c = Client(stack)
    try:
        # The preface, SETTINGS and every request each in a TLS record of its own ...
        c.tls.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, b""))
        for i in range(n):
            c.tls.write(health_request(2 * i + 1))
        records = c.out.read()
        assert count_records(records) == n + 1
        c.sock.sendall(records)  # ... and all of them in one write
        # Nothing more is sent (not even the SETTINGS acknowledgement, which HTTP/2 lets a
        # client delay): any bytes arriving later would wake the gateway and hide records left
        # waiting in its TLS buffer.
        answered, ended = {}, set()
        for ftype, flags, stream, payload in c.read_frames():
            assert ftype not in (RST_STREAM, GOAWAY), (ftype, payload)
            if ftype == DATA and stream:
                answered[stream] = answered.get(stream, b"") + payload
            if ftype in (HEADERS, DATA) and flags & END_STREAM:
                ended.add(stream)
            if len(ended) == n:
                break
        assert ended == {2 * i + 1 for i in range(n)}
        assert all(answered[2 * i + 1] == SERVING for i in range(n))
    finally:
        c.close()
