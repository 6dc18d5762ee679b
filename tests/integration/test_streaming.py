"""Server streaming with backpressure: a test build of the gateway (build/waygated-test) adds
/waygate.test.v1.Test/Flood, which streams COUNT WaybillView messages of SIZE filler bytes while
the call is writable and otherwise waits for the writable callback. A slow reader gets every byte
while the gateway's resident memory stays bounded; a client that stops reading is reset after
stream_write_timeout_ms; a client that vanishes mid-stream leaves the gateway healthy.

No test here asserts a duration: the slow reader's pauses only make the gateway wait, and the
waits for the gateway are bounded polls of its log or of its health."""

import os
import select
import signal
import subprocess
import sys
import threading

import grpc
import pytest

from conftest import BUILD, ROOT, lock_holder, release_holder, wait_for
from test_foundation import SecondGateway
import waygate_proto

FLOOD = "/waygate.test.v1.Test/Flood"
STALL_MS = 2000
MIB = 1024 * 1024
# What the gateway may grow by (peak resident set) while streaming 50 MiB to a slow reader. The
# stream's queue is bounded at 256 KiB plus one message and the connection's output at about
# 256 KiB plus one frame; the rest is TLS records, allocator slack and the call's arena.
RSS_GROWTH_BOUND_KIB = 32 * 1024
RESET_MSG = "reset: the client took"


def proc_status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (key, pid))


@pytest.fixture(scope="module")
def gw(stack):
    if not os.access(os.path.join(BUILD, "waygated-test"), os.X_OK):
        pytest.fail("no %s/waygated-test: build first" % BUILD)
    g = SecondGateway(stack, "streaming", "stream_write_timeout_ms = %d" % STALL_MS,
                      binary="waygated-test")
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def patient_gw(stack):
    """The same test build with the default stall limit (30 s): a reader that keeps reading must
    never be reset, and a loaded machine can starve a Python reader for longer than STALL_MS."""
    g = SecondGateway(stack, "streaming-patient", "stream_write_timeout_ms = 30000",
                      binary="waygated-test")
    try:
        yield g
    finally:
        g.close()


def flood(stack, gw, count, size, timeout=120, channel=None):
    ch = channel or stack.channel(addr=gw.addr)
    req = stack.pb.health.HealthCheckRequest(service="%d:%d" % (count, size))
    return waygate_proto.stream(ch, FLOOD, req, stack.pb.common.WaybillView, timeout=timeout)


def reset_lines(gw):
    return [line for line in gw.log_text().splitlines() if RESET_MSG in line]


def test_slow_reader_gets_everything_in_bounded_memory(stack, patient_gw):
    """800 messages of 64 KiB (50 MiB) to a client that pauses every 8 messages: every byte
    arrives, the stream is not reset (the client keeps taking bytes), and the gateway's peak
    resident memory grows by less than RSS_GROWTH_BOUND_KIB."""
    gw = patient_gw
    count, size = 800, 64 * 1024
    pid = gw.proc.pid
    # Warm up the code paths and buffers a stream uses, then take the baseline.
    assert sum(len(v.waybill.item_description) for v in flood(stack, gw, 16, size)) == 16 * size
    base_hwm = proc_status_kib(pid, "VmHWM")
    resets_before = len(reset_lines(gw))
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(proc_status_kib(pid, "VmRSS"))
            stop.wait(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    got = 0
    nbytes = 0
    try:
        for i, v in enumerate(flood(stack, gw, count, size)):
            got += 1
            nbytes += len(v.waybill.item_description)
            if i % 8 == 7:
                stop.wait(0.02)  # the trickle: the gateway must wait for us, not buffer
    finally:
        stop.set()
        t.join()
    assert got == count
    assert nbytes == count * size
    growth = proc_status_kib(pid, "VmHWM") - base_hwm
    print("\ngateway VmHWM growth %d KiB, VmRSS max %d KiB over %d samples (baseline HWM %d KiB)"
          % (growth, max(samples), len(samples), base_hwm))
    assert growth < RSS_GROWTH_BOUND_KIB, \
        "gateway peak RSS grew by %d KiB streaming %d MiB" % (growth, count * size // MIB)
    assert len(reset_lines(gw)) == resets_before, "a reading client was reset"


def test_stopped_reader_is_reset(stack, gw):
    """A client that reads one message and then stops is cut off once it has taken no bytes for
    stream_write_timeout_ms: the gateway logs the reset, the client's call ends with an error
    status, and the gateway goes on serving."""
    count = 800
    before = len(reset_lines(gw))
    it = flood(stack, gw, count, 64 * 1024)
    next(it)
    # Stop reading. grpcio does not take more than its flow-control window for us.
    assert wait_for(lambda: len(reset_lines(gw)) > before, timeout=60), \
        "no reset logged within 60 s of the client stopping"
    got = 1
    with pytest.raises(grpc.RpcError) as ei:
        for _ in it:
            got += 1
    # RST_STREAM(CANCEL) as grpcio maps it
    assert ei.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
                               grpc.StatusCode.UNAVAILABLE), ei.value
    print("\nstopped reader: %d of %d messages, then %s" % (got, count, ei.value.code()))
    assert got < count
    assert stack.health(addr=gw.addr) == "SERVING"
    assert gw.proc.poll() is None


CLIENT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import waygate_proto
pb = waygate_proto.load()
ch = waygate_proto.channel(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
req = pb.health.HealthCheckRequest(service="800:65536")
it = waygate_proto.stream(ch, "%s", req, pb.common.WaybillView, timeout=600)
next(it)
print("streaming", flush=True)
sys.stdin.read()  # until killed
""" % FLOOD


def test_client_vanishing_mid_stream_leaves_gateway_healthy(stack, gw):
    """Clients killed (SIGKILL) while a stream is flowing to them: the kernel resets their
    connections; the gateway drops them and still serves, health and a whole new stream."""
    cert, key = stack.cert("courier_a")
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", CLIENT, os.path.join(ROOT, "deploy"), gw.addr,
                              stack.ca, cert, key],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            ready, _, _ = select.select([p.stdout], [], [], 60)
            assert ready and p.stdout.readline() == b"streaming\n", "client did not start"
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stdout.close()
            p.stdin.close()
    assert wait_for(lambda: stack.health(addr=gw.addr, timeout=2) == "SERVING", timeout=30)
    assert gw.proc.poll() is None
    n = sum(len(v.waybill.item_description) for v in flood(stack, gw, 64, 64 * 1024))
    assert n == 64 * 64 * 1024


# --- a stream's caller checked again while it streams (rpc.h's recheck) ---

TOKEN_INVALID = ("authorization: is not a valid token: unknown, expired, or its account is "
                 "disabled (Art. 38)")
RECHECK_COUNT, RECHECK_SIZE = 100000, 1024  # 100 MiB: far more than flow control lets out


@pytest.fixture(scope="module")
def recheck_gw(stack):
    """A test gateway that checks a stream's caller again before each message once one went out
    since the last check ([auth] principal_cache_ms = 0: no cached answer is ever fresh)."""
    g = SecondGateway(stack, "streaming_recheck", "[auth]\nprincipal_cache_ms = 0\n[server]",
                      binary="waygated-test")
    try:
        yield g
    finally:
        g.close()


def clerk_token(stack):
    """A branch a clerk past its first password change: (name, password, token metadata)."""
    from test_accounts import Admin, ready, unique  # noqa: E402
    name = unique("it-str-")
    pw, md = ready(stack, Admin(stack), name, "branch_clerk", "branch_a", branch="a")
    return name, pw, md


def flood_as(stack, gw, md):
    req = stack.pb.health.HealthCheckRequest(service="%d:%d" % (RECHECK_COUNT, RECHECK_SIZE))
    return waygate_proto.stream(stack.channel("branch_a", addr=gw.addr), FLOOD, req,
                                stack.pb.common.WaybillView, timeout=120, metadata=md)


def drain_until_error(it):
    """Reads the rest of a stream; returns (messages read, the error that ended it, or None)."""
    n = 0
    try:
        for _ in it:
            n += 1
    except grpc.RpcError as e:
        return n, e
    return n, None


def test_a_stream_ends_when_its_account_is_disabled(stack, recheck_gw):
    """A stream started before its account was disabled does not run to its end: the next check
    of its caller finds the session gone and ends it UNAUTHENTICATED, in the words a new call
    with that token gets. Deterministic: the client holds the stream back by flow control, so
    the gateway has sent only a small part of it when the account is disabled."""
    from test_accounts import Admin  # noqa: E402
    name, _, md = clerk_token(stack)
    it = flood_as(stack, recheck_gw, md)
    assert len(next(it).waybill.item_description) == RECHECK_SIZE
    Admin(stack).disable(name, "left the company")
    n, e = drain_until_error(it)
    assert e is not None, "the whole stream ran to its end"
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, TOKEN_INVALID)
    assert n < RECHECK_COUNT // 10, n


def test_a_stream_ends_when_a_password_change_ends_its_session(stack, recheck_gw):
    """The same when the stream's session was ended by a password change made with another
    session of the account (ChangePassword ends the account's other sessions)."""
    from test_accounts import change, login, password  # noqa: E402
    name, pw, md = clerk_token(stack)
    other = [("authorization", "Bearer " + login(stack, name, pw, "branch_a").token)]
    it = flood_as(stack, recheck_gw, md)
    next(it)
    change(stack, other, "branch_a", pw, password())
    n, e = drain_until_error(it)
    assert e is not None, "the whole stream ran to its end"
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, TOKEN_INVALID)
    assert n < RECHECK_COUNT // 10, n


def test_a_stream_ends_when_its_password_must_be_changed(stack, recheck_gw):
    """A password that expires while a stream runs (here the account marked to change it, as
    [auth] password_max_age_days or an administrator's reset marks it) refuses every method but
    ChangePassword to new calls (Art. 35); the stream's next check asks the policy again and ends
    it in the same words. Before, the check ended a stream only when the session was gone, and
    the stream ran to its end (review)."""
    name, _, md = clerk_token(stack)
    it = flood_as(stack, recheck_gw, md)
    next(it)
    stack.psql("UPDATE account SET must_change = true WHERE name = '%s'" % name)
    n, e = drain_until_error(it)
    assert e is not None, "the whole stream ran to its end"
    must = (grpc.StatusCode.FAILED_PRECONDITION,
            "authorization: the password has expired or is an initial one: call ChangePassword "
            "first (Art. 35)")
    assert (e.code(), e.details()) == must
    assert n < RECHECK_COUNT // 10, n
    req = stack.pb.health.HealthCheckRequest(service="1:16")
    try:
        list(waygate_proto.stream(stack.channel("branch_a", addr=recheck_gw.addr), FLOOD, req,
                                  stack.pb.common.WaybillView, timeout=60, metadata=md))
        raise AssertionError("a new stream was served")
    except grpc.RpcError as new:
        assert (new.code(), new.details()) == must


def session_lock_waiters(stack):
    """How many lock requests on the session table wait (pg_locks: visible to every role)."""
    return stack.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                      "WHERE c.relname = 'session' AND NOT l.granted")[0]


def test_a_stream_cancelled_while_its_caller_is_checked_leaves_the_gateway_serving(stack,
                                                                                   recheck_gw):
    """The check's session lookup is held up (the session table locked), the stream cancelled
    meanwhile; once the lookup can answer, its answer goes nowhere (the check was cancelled with
    the call: run against the ASan build too), and the gateway serves the same token's next
    stream to its end."""
    _, _, md = clerk_token(stack)
    it = flood_as(stack, recheck_gw, md)
    next(it)
    holder = lock_holder(stack, "LOCK TABLE session IN ACCESS EXCLUSIVE MODE")
    try:
        # reading on lets the gateway send, and so check again: its lookup waits on the lock
        reader = threading.Thread(target=drain_until_error, args=(it,), daemon=True)
        reader.start()
        assert wait_for(lambda: session_lock_waiters(stack) != "0", timeout=60)
        it.cancel()
        reader.join(60)
        assert wait_for(lambda: "call cancelled: " + FLOOD in recheck_gw.log_text(), timeout=30)
    finally:
        release_holder(holder)
    assert wait_for(lambda: session_lock_waiters(stack) == "0", timeout=60)
    req = stack.pb.health.HealthCheckRequest(service="64:1024")
    views = list(waygate_proto.stream(stack.channel("branch_a", addr=recheck_gw.addr), FLOOD,
                                      req, stack.pb.common.WaybillView, timeout=60, metadata=md))
    assert len(views) == 64
    assert "AddressSanitizer" not in recheck_gw.log_text()
    assert "runtime error" not in recheck_gw.log_text()
