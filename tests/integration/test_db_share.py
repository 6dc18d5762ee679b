"""One principal cannot fill the database queue (threat model: "one principal fills the database
queue"): each certificate has a share of the pool's callers' requests queued or in flight
([database] queue_share), the identity step's lookup of a bearer token among them; a new call
over a certificate that holds its share is refused RESOURCE_EXHAUSTED naming the share, before
any database work, and everyone else's calls still find room.

The state decides, not the timing: the flooder's session lookups wait on a lock of the session
table that the test holds, so that exactly its share of them is in flight, on connections of
their own, while the pool's other connection and its queue stay free for the others."""

import re

import grpc

from conftest import ExtraGateway, bearer, free_port, lock_holder, release_holder, scrape_metrics
from conftest import wait_for
from query_data import GET, SUBMIT, new_waybill
import waygate_proto

SHARE = 3
SHARE_USED = (grpc.StatusCode.RESOURCE_EXHAUSTED,
              "this certificate's share of the gateway's database queue is in use (%d requests "
              "queued or running, [database] queue_share): retry later" % SHARE)
QUEUE_FULL = (grpc.StatusCode.UNAVAILABLE,
              "the gateway's queue for the database is full, nothing was done; retrying is safe")
FAKE_TOKEN = "A" * 43  # well formed, no session's
FLOOD = 24


def share_gateway(stack, metrics_port):
    """An extra gateway with 4 connections of depth 1, a queue of 8 and a share of SHARE, its
    metrics on metrics_port; it does not forward (the forwarder's claims would take places)."""
    def edit(text):
        text = re.sub(r"(?m)^pool_size\s*=.*$", "pool_size = 4\npipeline_depth = 1\nqueue_max = 8\n"
                      "queue_share = %d" % SHARE, text)
        text = re.sub(r"(?m)^(endpoint\s*=)", r"#off# \1", text)
        return text + "\n[metrics]\nlisten = 127.0.0.1:%d\n" % metrics_port
    return ExtraGateway(stack, "dbshare", edit)


def test_one_certificate_cannot_fill_the_database_queue(stack):
    """courier_a floods Get with a fake bearer token (its session lookups wait on the lock):
    SHARE of its calls are held, every other one is refused RESOURCE_EXHAUSTED naming the share,
    at once; meanwhile courier_b's Gets are answered OK, not UNAVAILABLE "queue full". Once the
    lock is gone the held calls end (UNAUTHENTICATED: no such session) and courier_a's share is
    whole again: its next call is not refused for it."""
    mport = free_port()
    gw = share_gateway(stack, mport)
    holder = None
    futures = []
    try:
        metrics = "127.0.0.1:%d" % mport
        assert wait_for(lambda: scrape_metrics(metrics).get("waygate_db_connections_ready") == 4,
                        60)
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
        if holder is not None:
            release_holder(holder)
        for f in futures:
            f.cancel()
        gw.close()
