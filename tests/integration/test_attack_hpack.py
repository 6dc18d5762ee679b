"""An HPACK bomb on one mTLS connection (courier_a, raw HTTP/2 written by hand): one large field
added to the HPACK dynamic table once, then HEADERS blocks made of 1-byte indexed references to
it (0x80|62), each decoding to the whole field again: about 4000 decoded bytes per byte received.
Before the fix every decoded field was validated by nghttp2 and handed to on_header_cb even
after the stream's header list was over max_header_list_size (about 1 us of the gateway's single
loop per byte received). Now a stream's header list over the cap ends its block: it is answered
RESOURCE_EXHAUSTED at once, nghttp2 resets it and decodes the rest of the block without a
callback, and the reset is charged to the connection's RST_STREAM budget (h2_calm.h): a bomb
stream after bomb stream ends in GOAWAY ENHANCE_YOUR_CALM. The assertions are counts, never
times."""

import json
import os
import ssl
import threading
import time

import pytest

import waygate_proto
from conftest import wait_for
from test_attack_streams import RawConn, frame, literal

HEADERS, RST_STREAM, GOAWAY, CONTINUATION = 1, 3, 7, 9
INTERNAL_ERROR = 2
END_STREAM, END_HEADERS = 0x1, 0x4
ENHANCE_YOUR_CALM = 0xB
RESOURCE_EXHAUSTED = 8
HEALTH = b"/grpc.health.v1.Health/Check"
# References a frame (HEADERS after its other fields, or CONTINUATION): each decodes to the whole
# field, 8 MB a frame, far over the header list's cap. Not a full 16 KiB frame: only a flood of
# more streams a second than the RST_STREAM budget's refill is cut off, and a gateway starved of
# CPU (nice 15 beside busy processes) took 2 ms of its CPU for each stream of eight full frames
# (about 0.016 us a byte), near that rate.
REFS = 2048
VALUE = 4000   # the field's value: name + value + 32 fits the default 4096-byte dynamic table
BATCH = 50     # streams at once, fewer than max_concurrent_streams: none is refused for that
BOMBS = 4000   # streams; ten times the RST_STREAM budget's burst (400)
RST_BURST = 400
RST_REFILL = 40  # a second


def insert_field():
    """HPACK literal with incremental indexing, new name "x-b", a VALUE-byte value: it becomes
    dynamic-table index 62."""
    n = VALUE - 127
    return b"\x40\x03x-b\x7f" + bytes([(n & 0x7F) | 0x80, n >> 7]) + b"a" * VALUE


def pseudo():
    return b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", HEALTH),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])


def bomb_stream(stream, first, continuations):
    """One request whose header block is a frame of REFS references to index 62 (and, with
    continuations, that many CONTINUATION frames of REFS more), END_STREAM on the HEADERS."""
    head = pseudo() + (insert_field() if first else b"")
    out = frame(HEADERS, END_STREAM | (0 if continuations else END_HEADERS), stream,
                head + b"\xbe" * REFS)
    for k in range(continuations):
        out += frame(CONTINUATION, END_HEADERS if k == continuations - 1 else 0, stream,
                     b"\xbe" * REFS)
    return out


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def run_bomb(stack, continuations, bombs=BOMBS):
    """Sends bomb streams BATCH at a time, each batch once the last one was answered (trailers or
    a reset), until bombs were sent or the connection ended. Returns (conn, streams sent, bytes
    sent, how it ended)."""
    c = RawConn(stack)
    sent, nbytes, ended, stream = 0, 0, None, 1
    try:
        while sent < bombs and ended is None:
            batch = list(range(stream, stream + 2 * BATCH, 2))
            stream += 2 * BATCH
            data = b"".join(bomb_stream(s, s == 1, continuations) for s in batch)
            try:
                c.send(data)
            except (OSError, ssl.SSLError):
                ended = "send failed"
                break
            sent += len(batch)
            nbytes += len(data)
            idle = 0
            while ended is None and not c.goaway() and \
                    not all(c.ended(s) or c.reset_code(s) is not None for s in batch):
                try:
                    idle = 0 if c.read_some(5) else idle + 1
                except EOFError:
                    ended = "eof"
                except (OSError, ssl.SSLError):
                    ended = "reset"
                assert idle < 24, "no answer to a batch for 2 minutes"
            if c.goaway():
                ended = "goaway"
    finally:
        c.close()
    return c, sent, nbytes, ended or "open"


def measure(stack, continuations):
    """The bomb, with another client's health checks on their own connection meanwhile; prints
    what it cost (not asserted)."""
    pid = stack.gateway_pid()
    other, others, stop = stack.channel("courier_b"), [], threading.Event()

    def other_calls():
        while not stop.is_set():
            t = time.monotonic()
            waygate_proto.health_check(other, timeout=30)
            others.append(time.monotonic() - t)

    waygate_proto.health_check(other, timeout=30)
    t = threading.Thread(target=other_calls)
    ticks, started = cpu_ticks(pid), time.monotonic()
    t.start()
    try:
        c, sent, nbytes, ended = run_bomb(stack, continuations)
    finally:
        stop.set()
        t.join()
    elapsed = time.monotonic() - started
    cpu = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK")
    others.sort()
    print("HPACK bomb (%d CONTINUATIONs a block): %d streams, %d bytes in %.1f s, ended by %s; "
          "gateway CPU %.2f s (%.3f us a byte); courier_b's health checks: %d, median %.1f ms, "
          "slowest %.1f ms" % (
              continuations, sent, nbytes, elapsed, ended, cpu, 1e6 * cpu / max(nbytes, 1),
              len(others), 1000 * others[len(others) // 2] if others else 0,
              1000 * others[-1] if others else 0))
    return c, sent, nbytes, ended, elapsed


@pytest.mark.parametrize("continuations", [0, 7])
def test_hpack_bomb_answered_with_enhance_your_calm(stack, continuations):
    """Bomb stream after bomb stream, BATCH at a time (each batch once the last was answered, so
    no stream is refused for the stream limit), each block a HEADERS frame (and, with
    continuations, that many CONTINUATION frames) of references: before the fix all 4000 were
    decoded and validated in full (with full 16 KiB HEADERS frames: 65 MB in 125 s, 91 s of the
    gateway's CPU, 1.4 us a byte; another client's health checks took 146 ms at the median
    instead of about 2), and no GOAWAY came. Now each stream is answered at the field that
    passed the cap and costs a reset from the connection's RST_STREAM budget: the bomb is cut
    off after about the budget's burst (400) with GOAWAY ENHANCE_YOUR_CALM (or a reset or end of
    stream when the gateway's close overtakes it, as in test_attack_edge's KeyUpdate test), one
    warning names peer, principal and the rule, and the gateway goes on serving. Counts only:
    the budget's refill (40 a second) would need 90 s of bombs to let them all through (small
    frames, REFS: the gateway decodes the bombs many times faster than that, also when starved
    of CPU)."""
    since = len(stack.log_lines())
    c, sent, nbytes, ended, elapsed = measure(stack, continuations)
    assert ended != "open" and sent < BOMBS, \
        "%d bomb streams (%d bytes) accepted on one connection in %.1f s, none cut off" % (
            sent, nbytes, elapsed)
    # the burst, then at most what the refill (RST_REFILL a second) gave back over the time the
    # bomb took (a slow machine sends slower and so earns more back: a count, not a time), and
    # the batches in flight
    assert sent <= RST_BURST + RST_REFILL * (elapsed + 1) + 2 * BATCH, \
        "%d bomb streams in %.1f s before the connection ended" % (sent, elapsed)
    if ended == "goaway":
        code = int.from_bytes(c.goaway()[0][3][4:8], "big")
        assert code == ENHANCE_YOUR_CALM, "expected GOAWAY ENHANCE_YOUR_CALM, got %d" % code
    else:
        assert ended in ("eof", "reset", "send failed"), ended
    # nghttp2 resets each bomb stream after our answer (INTERNAL_ERROR), nothing else
    codes = {int.from_bytes(f[3][:4], "big") for f in c.frames if f[0] == RST_STREAM}
    assert codes <= {INTERNAL_ERROR}, "RST_STREAM codes %r" % sorted(codes)
    assert wait_for(lambda: any("flood" in line and "header list" in line
                                for line in stack.log_lines()[since:]), 30), \
        "no warning names the header-list flood"
    warned = [json.loads(line) for line in stack.log_lines()[since:]
              if "flood" in line and "header list" in line]
    assert len(warned) == 1, "%d warnings for one connection" % len(warned)
    assert warned[0]["level"] == "warn" and warned[0]["principal"] == "courier_a" and \
        warned[0]["peer"].startswith("127.0.0.1:")
    assert "ENHANCE_YOUR_CALM" in warned[0]["msg"]
    assert stack.health() == "SERVING"
