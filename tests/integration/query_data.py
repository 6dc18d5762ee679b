"""Synthetic waybills and calls shared by test_scope.py and test_query.py (issue 7): numbers in the
dev stack's segments at QUERY_OFFSET (away from test_intake's), parties numbered from PARTY_BASE
so that their phones and ID numbers are not those of other modules (a phone search finds only
what this module submitted)."""

import datetime
import itertools
import time

import grpc

from test_intake import ITEMS, party, segment
import waygate_proto

SUBMIT = "/waygate.v1.WaybillIntake/Submit"
SUBMIT_BATCH = "/waygate.v1.WaybillIntake/SubmitBatch"
GET = "/waygate.v1.WaybillQuery/Get"
SEARCH = "/waygate.v1.WaybillQuery/Search"
REVEAL = "/waygate.v1.WaybillQuery/Reveal"

QUERY_OFFSET = 53_000_000  # test_intake: 31e6, test_tamper: 47e6
PARTY_BASE = 500_000
PICKUP = int(time.time()) // 60 * 60 - 7200
# the pickup day as the gateway files it: the calendar day in China Standard Time
PICKUP_DAY = (datetime.datetime.utcfromtimestamp(PICKUP) + datetime.timedelta(hours=8)).strftime(
    "%Y-%m-%d")

_counter = itertools.count(1)


def number_in(stack, branch, n):
    prefix, lo, hi = segment(stack, branch)
    assert lo + QUERY_OFFSET + n <= hi
    return "%s%d" % (prefix, lo + QUERY_OFFSET + n)


def new_waybill(stack, branch="a", dest="330106", sender_n=None):
    """A fresh valid waybill of branch a or b bound for region dest; sender_n picks the sender
    (the same sender_n: the same phone and ID number)."""
    pb = stack.pb
    n = next(_counter)
    s = PARTY_BASE + 2 * (sender_n if sender_n is not None else 10_000 + n)
    w = pb.common.Waybill(waybill_no=number_in(stack, branch, n),
                          item_description="%s（批号%d）" % (ITEMS[n % len(ITEMS)], 9000 + n),
                          pickup_time=PICKUP, dest_region_code=dest, weight_grams=900 + n,
                          service_type="standard")
    w.sender.CopyFrom(party(pb, s, sender=True))
    w.recipient.CopyFrom(party(pb, PARTY_BASE + 2 * (20_000 + n) + 1, sender=False))
    return w


def nonexistent(stack, branch, n):
    """A well-formed number of branch's segment that no test submits."""
    prefix, lo, hi = segment(stack, branch)
    return "%s%d" % (prefix, hi - 1000 - n)


def channel(stack, principal):
    return stack.shared_channel(principal)


def call(stack, method, request, response_cls, principal, timeout=10):
    return waygate_proto.unary(channel(stack, principal), method, request, response_cls,
                               timeout=timeout)


def submit(stack, w, principal="courier_a"):
    r = call(stack, SUBMIT, stack.pb.intake.SubmitRequest(waybill=w),
             stack.pb.intake.SubmitResponse, principal)
    assert not r.duplicate
    return r.id


def get(stack, number, principal):
    return call(stack, GET, stack.pb.query.GetRequest(waybill_no=number),
                stack.pb.common.WaybillView, principal)


def search(stack, principal, **kw):
    """Every view of one Search page (a list)."""
    req = stack.pb.query.SearchRequest(**kw)
    it = waygate_proto.stream(channel(stack, principal), SEARCH, req, stack.pb.common.WaybillView)
    return list(it)


def reveal(stack, principal, number, field, reason="customer asked for delivery"):
    req = stack.pb.query.RevealRequest(waybill_no=number, field=field, reason=reason)
    return call(stack, REVEAL, req, stack.pb.query.RevealResponse, principal)


def refusal(fn):
    """(status code, details) of the RpcError fn raises."""
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("the call succeeded")


def incidents_written(stack, ch, principal, branch, n):
    """Waits until every incident the gateway behind ch recorded about principal so far is in the
    table: incidents are written in order, so once a later one is, every earlier one is. The
    later one: principal's Submit over ch of a number of branch's segment (n: one no test
    submits), outside principal's own segments (FAILED_PRECONDITION, a segment_violation)."""
    from conftest import wait_for
    fence = ("SELECT count(*) FROM cli_incident_list(NULL, NULL, 100000) WHERE "
             "principal = '%s' AND kind = 'segment_violation'" % principal)
    fenced = int(stack.psql(fence, uri=stack.pguri)[0])
    w = new_waybill(stack, branch)
    w.waybill_no = number_in(stack, branch, n)
    assert refusal(lambda: waygate_proto.unary(
        ch, "/waygate.v1.WaybillIntake/Submit", stack.pb.intake.SubmitRequest(waybill=w),
        stack.pb.intake.SubmitResponse))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert wait_for(lambda: int(stack.psql(fence, uri=stack.pguri)[0]) > fenced, 60)
