"""The benchmarks' carrier backend (tests/bench/bench_sink.c, which tests/bench/forward_bench.py
runs in place of the dev stack's Python sink): the gateway forwards to it over mTLS as it does to
the Python sink, on the same address with the same certificates. Waybills submitted while no sink
serves each arrive (at least once) when bench_sink serves, under the delivery id their outbox row had, as the
backend policy's view (no clear value of the waybill), and leave the outbox;
a client certificate of another common name is refused PERMISSION_DENIED. The dev stack's Python
sink is running again afterwards (the other modules' tests rely on it).

Waits poll with a bound (test_forward.py's: a lease plus the backoff cap, with margin)."""

import os
import sys

import grpc
import pytest

from conftest import BUILD, ROOT, wait_for
import test_forward as fwd
import waygate_proto

sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
import forward_bench  # noqa: E402

N = 12
DELIVERED_BOUND = 150


@pytest.fixture
def csink(stack):
    """bench_sink in place of the dev stack's Python sink; the Python sink is stopped, bench_sink
    not yet started (the test starts it)."""
    if not os.access(forward_bench.BENCH_SINK, os.X_OK):
        pytest.fail("no %s: build it (cmake --build %s)" % (forward_bench.BENCH_SINK, BUILD))
    c = forward_bench.CSink(stack.dir, stack.env, views=True)
    try:
        c.stop_python_sink()
        yield c
    finally:
        c.stop()
        if forward_bench.python_sink_pid(stack.dir, stack.env) is None:
            forward_bench.restore_python_sink(stack.dir)


def accepted_by_record(c, rids):
    out = {r: [] for r in rids}
    for rec in c.records():
        if rec["record_id"] in out and rec["kind"] == 1:
            out[rec["record_id"]].append(rec)
    return out


def test_gateway_forwards_to_bench_sink_each_waybill_once_as_its_view(stack, csink):
    # submitted while no sink serves: the outbox holds them, and says which delivery id each has
    waybills, rids = [], []
    for _ in range(N):
        w = fwd.new_waybill(stack)
        waybills.append(w)
        rids.append(fwd.submit(stack, w))
    rows = stack.psql("SELECT waybill_id, delivery_id FROM outbox WHERE waybill_id IN (%s)"
                      % ",".join("'%s'" % r for r in rids))
    sent = dict(row.split("|") for row in rows)
    assert sorted(sent) == sorted(rids), "not every waybill waits in the outbox"
    csink.start()
    ok = wait_for(lambda: all(accepted_by_record(csink, rids).values()), DELIVERED_BOUND,
                  interval=0.5)
    got = accepted_by_record(csink, rids)
    assert ok, "%d of %d waybills not at bench_sink within %d s" % (
        sum(1 for v in got.values() if not v), N, DELIVERED_BOUND)
    lines = sum(len(v) for v in got.values())
    print("\nbench_sink: %d waybills submitted, %d received, %d repeated deliveries"
          % (N, len(got), lines - len(got)))
    for w, rid in zip(waybills, rids):
        # the sink's file names the delivery the gateway sent (its idempotency key), each once
        assert {r["delivery_id"] for r in got[rid]} == {sent[rid]}
        rec = got[rid][0]
        assert rec["enqueued_at_us"] > 0 and rec["received_at_us"] >= rec["enqueued_at_us"] - 10**6
        assert rec["view"] is not None, "a waybill delivery without its view"
        view = stack.pb.common.WaybillView.FromString(rec["view"])
        assert view.id == rid and view.waybill.waybill_no == w.waybill_no
        secrets = [w.sender.name, w.sender.phone, w.sender.id_number, w.sender.address_detail,
                   w.recipient.name, w.recipient.phone, w.recipient.address_detail,
                   w.item_description]
        for s in secrets:
            assert s.encode() not in rec["view"], "a clear value reached the sink"
    # the outbox is empty of them: the gateway took every answer as ACCEPTED
    assert wait_for(lambda: not stack.psql("SELECT 1 FROM outbox WHERE waybill_id IN (%s)"
                                           % ",".join("'%s'" % r for r in rids)), 60)


def test_bench_sink_refuses_another_client_common_name(stack, csink):
    csink.start()
    ch = grpc.secure_channel(stack.env["WAYGATE_SINK_ADDR"],
                             waygate_proto.credentials(stack.ca, *stack.cert("courier_a")),
                             options=[("grpc.ssl_target_name_override", "sink.localhost")])
    try:
        with pytest.raises(grpc.RpcError) as e:
            waygate_proto.unary(ch, "/waygate.v1.CarrierBackend/Deliver",
                                stack.pb.backend.DeliverRequest(),
                                stack.pb.backend.DeliverResponse, timeout=20)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "common name" in e.value.details()
    finally:
        ch.close()
