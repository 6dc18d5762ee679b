"""One principal cannot fill the database queue (threat model: "one principal fills the database
queue"): each certificate has a share of the pool's callers' requests queued or in flight
([database] queue_share), the identity step's lookup of a bearer token among them; from the
handler on, a call made with an account's token is charged to that account over the
certificate, a share of its own; a new call whose owner holds its share is refused
RESOURCE_EXHAUSTED naming the share, before any database work, and everyone else's calls
(another account's over the same certificate among them) still find room.

The state decides, not the timing: the held calls wait on a lock that the test holds (the
session table's, an account's reveal lock), so that exactly their owner's share of them is in
flight, on connections of their own, while the pool's other connections and its queue stay free
for the others."""

import re

import grpc

from conftest import ExtraGateway, bearer, free_port, holder_pid, lock_holder, release_holder
from conftest import scrape_metrics, wait_for
from query_data import GET, REVEAL, SUBMIT, new_waybill
import waygate_proto

SHARE = 3


def share_used(share):
    """The refusal of a new call whose owner holds its share of `share` requests (the rule's
    words name the certificate, whichever owner holds it)."""
    return (grpc.StatusCode.RESOURCE_EXHAUSTED,
            "this certificate's share of the gateway's database queue is in use (%d requests "
            "queued or running, [database] queue_share): retry later" % share)


SHARE_USED = share_used(SHARE)
QUEUE_FULL = (grpc.StatusCode.UNAVAILABLE,
              "the gateway's queue for the database is full, nothing was done; retrying is safe")
FAKE_TOKEN = "A" * 43  # well formed, no session's
FLOOD = 24


def share_gateway(stack, share=SHARE):
    """An extra gateway with 4 connections of depth 1, a queue of 8 and a share of `share`; it
    does not forward (the forwarder's claims would take places). Returns (the gateway, its
    metrics address) once its 4 connections are up."""
    mport = free_port()

    def edit(text):
        text = re.sub(r"(?m)^pool_size\s*=.*$", "pool_size = 4\npipeline_depth = 1\nqueue_max = 8\n"
                      "queue_share = %d" % share, text)
        text = re.sub(r"(?m)^(endpoint\s*=)", r"#off# \1", text)
        return text + "\n[metrics]\nlisten = 127.0.0.1:%d\n" % mport
    gw = ExtraGateway(stack, "dbshare", edit)
    metrics = "127.0.0.1:%d" % mport
    if not wait_for(lambda: scrape_metrics(metrics).get("waygate_db_connections_ready") == 4, 60):
        gw.close()
        raise AssertionError("the share gateway's pool did not come up")
    return gw, metrics


def end(gw, holder, futures):
    """The end of a share test, passed or failed: the test's lock released (holder may be None),
    its calls still open cancelled, the gateway stopped."""
    if holder is not None:
        release_holder(holder)
    for f in futures:
        f.cancel()
    gw.close()


def test_one_certificate_cannot_fill_the_database_queue(stack):
    """courier_a floods Get with a fake bearer token (its session lookups wait on the lock):
    SHARE of its calls are held, every other one is refused RESOURCE_EXHAUSTED naming the share,
    at once; meanwhile courier_b's Gets are answered OK, not UNAVAILABLE "queue full". Once the
    lock is gone the held calls end (UNAUTHENTICATED: no such session) and courier_a's share is
    whole again: its next call is not refused for it."""
    gw, metrics = share_gateway(stack)
    holder = None
    futures = []
    try:
        assert scrape_metrics(metrics)["waygate_db_queue_share"] == SHARE
        pb = stack.pb
        innocent = stack.channel("courier_b", addr=gw.addr)
        w = new_waybill(stack, branch="b")
        waygate_proto.unary(innocent, SUBMIT, pb.intake.SubmitRequest(waybill=w),
                            pb.intake.SubmitResponse, timeout=30)
        get_req = pb.query.GetRequest(waybill_no=w.waybill_no)
        assert waygate_proto.unary(innocent, GET, get_req, pb.common.WaybillView,
                                   timeout=30).waybill.waybill_no == w.waybill_no

        holder = lock_holder(stack, "LOCK TABLE session IN ACCESS EXCLUSIVE MODE")
        flooder = stack.channel("courier_a", addr=gw.addr)
        fn = flooder.unary_unary(GET, request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=pb.common.WaybillView.FromString)
        futures = [fn.future(pb.query.GetRequest(waybill_no=w.waybill_no), timeout=180,
                             metadata=bearer(FAKE_TOKEN)) for _ in range(FLOOD)]
        # every call past the share is answered at once; the share's wait on the lock
        wait_for(lambda: sum(f.done() for f in futures) >= FLOOD - SHARE, 30)

        # another principal's calls find a connection and the queue free
        for _ in range(10):
            try:
                v = waygate_proto.unary(innocent, GET, get_req, pb.common.WaybillView, timeout=60)
            except grpc.RpcError as e:
                raise AssertionError("courier_b refused: %s %s" % (e.code(), e.details()))
            assert v.waybill.waybill_no == w.waybill_no
        done = [f for f in futures if f.done()]
        answers = [(f.exception().code(), f.exception().details()) for f in done]
        assert len(done) == FLOOD - SHARE, (len(done), answers)
        assert answers == [SHARE_USED] * (FLOOD - SHARE), answers
        # the flooder is still at its share: refused again, still at once
        try:
            fn(pb.query.GetRequest(waybill_no=w.waybill_no), timeout=30,
               metadata=bearer(FAKE_TOKEN))
            raise AssertionError("the flooder's call over its share was answered")
        except grpc.RpcError as err:
            assert (err.code(), err.details()) == SHARE_USED
        m = scrape_metrics(metrics)
        assert m["waygate_db_queue_share_refusals_total"] == FLOOD - SHARE + 1
        assert m["waygate_db_queue_share_peak"] == SHARE

        release_holder(holder)
        holder = None
        for f in futures:
            if f not in done:
                e = f.exception(timeout=120)
                assert e is not None and e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        # every charge came back: the flooder's next call reaches the identity step again
        try:
            fn(pb.query.GetRequest(waybill_no=w.waybill_no), timeout=30,
               metadata=bearer(FAKE_TOKEN))
            raise AssertionError("a fake token was accepted")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
    finally:
        end(gw, holder, futures)


ACCOUNT_SHARE = 2


def test_accounts_over_one_certificate_each_have_a_share(stack):
    """Two branch clerks log in over the one branch_a certificate (as the staff of a branch's
    workstation do). Each account's calls are charged, from the handler on, to that account over
    the certificate, not to the certificate: clerk 1's Reveals wait in their quota transaction on
    the account's advisory lock (gw_store_reveal's 'reveal:account:<id>'), which a psql session of
    the test holds, so that exactly ACCOUNT_SHARE requests of clerk 1's are in flight; clerk 2's
    Reveal over the same certificate is admitted and answered meanwhile, and clerk 1's next call
    is refused RESOURCE_EXHAUSTED naming the share (its identity step, the certificate's, was
    admitted: the certificate itself holds nothing). Red with the share the certificate's: clerk
    2's Reveal is refused in those words. Once the lock is gone clerk 1's Reveals are answered."""
    from test_accounts import Admin, ready, unique  # noqa: E402
    pb = stack.pb
    gw, metrics = share_gateway(stack, share=ACCOUNT_SHARE)
    holder = None
    futures = []
    try:
        admin = Admin(stack)
        clerks = [unique("it-share-%d-" % i) for i in (1, 2)]
        tokens = [ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")[1]
                  for name in clerks]
        first_id = int(stack.psql("SELECT id FROM account WHERE name = '%s'" % clerks[0])[0])
        w = new_waybill(stack, branch="a")
        waygate_proto.unary(stack.channel("courier_a"), SUBMIT, pb.intake.SubmitRequest(waybill=w),
                            pb.intake.SubmitResponse, timeout=30)
        req = pb.query.RevealRequest(waybill_no=w.waybill_no, field="recipient.phone",
                                     reason="customer asked for delivery")
        workstation = stack.channel("branch_a", addr=gw.addr)
        fn = workstation.unary_unary(REVEAL, request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=pb.query.RevealResponse.FromString)
        for md in tokens:  # both accounts may reveal it, over this gateway
            assert fn(req, timeout=60, metadata=md).value == w.recipient.phone

        holder = lock_holder(stack, "SELECT pg_advisory_lock(hashtextextended('reveal:account:%d',"
                             " 0))" % first_id, transaction=False)
        pid = holder_pid(holder)
        waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                   "AND %d = ANY(pg_blocking_pids(pid))" % pid)
        futures = [fn.future(req, timeout=180, metadata=tokens[0]) for _ in range(ACCOUNT_SHARE)]
        assert wait_for(lambda: stack.psql(waiting) == [str(ACCOUNT_SHARE)], 60), \
            stack.psql(waiting)
        assert not any(f.done() for f in futures)

        # the other account over the same certificate is admitted and answered
        try:
            r = fn(req, timeout=60, metadata=tokens[1])
        except grpc.RpcError as e:
            raise AssertionError("clerk 2 refused: %s %s" % (e.code(), e.details()))
        assert r.value == w.recipient.phone
        # the first account holds its share: its next call is refused before its handler
        try:
            fn(req, timeout=30, metadata=tokens[0])
            raise AssertionError("clerk 1's call over its share was answered")
        except grpc.RpcError as err:
            assert (err.code(), err.details()) == share_used(ACCOUNT_SHARE)
        assert not any(f.done() for f in futures)
        m = scrape_metrics(metrics)
        assert m["waygate_db_queue_share_refusals_total"] == 1
        assert m["waygate_db_queue_share_peak"] == ACCOUNT_SHARE

        release_holder(holder)
        holder = None
        for f in futures:
            assert f.result(timeout=120).value == w.recipient.phone
    finally:
        end(gw, holder, futures)
