#!/usr/bin/python3
"""existence_rt.py DIR [N]: existence timing (issue 10, finding 8) on the dev stack DIR (its
DIR/env). courier_b Gets, N times each and interleaved, (1) a number of branch a's waybill bound for
a region without a route (it exists, outside b's scope) and (2) a number of branch a's segment that
nobody submitted. Both answer NOT_FOUND; prints each median, their ratio and difference, and a last
line "RESULT key=value ...". No assertion: the proof is test_existence.py, which counts the work
(rows read, records decrypted) instead of timing it. N defaults to 2000 (the review's sample).
Exit 0, or 2 on a set-up error."""

import json
import os
import statistics
import sys
import time

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import waygate_proto  # noqa: E402
from google.protobuf import json_format  # noqa: E402

GET = "/waygate.v1.WaybillQuery/Get"


def channel(env, principal):
    return waygate_proto.channel(env["WAYGATE_ADDR"], env["WAYGATE_CA"],
                                 env["WAYGATE_P_%s_CERT" % principal],
                                 env["WAYGATE_P_%s_KEY" % principal])


def not_found_us(ch, pb, number):
    """Microseconds of one Get that must answer NOT_FOUND."""
    req = pb.query.GetRequest(waybill_no=number)
    t0 = time.perf_counter()
    try:
        waygate_proto.unary(ch, GET, req, pb.common.WaybillView)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return (time.perf_counter() - t0) * 1e6
    sys.exit("existence_rt: %s was found by courier_b" % number)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    d = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 2000
    env = waygate_proto.read_env(os.path.join(d, "env"))
    pb = waygate_proto.load()
    with open(os.path.join(ROOT, "deploy", "example-waybill.json"), encoding="utf-8") as f:
        w = json_format.ParseDict(json.load(f), pb.common.Waybill())
    prefix, rng = env["WAYGATE_SEGMENT_A"].split(":")
    lo, hi = (int(x) for x in rng.split("-"))
    base = hi - 2_000_000 - int(time.time()) % 400_000 * 2
    w.waybill_no = "%s%d" % (prefix, base)
    missing = "%s%d" % (prefix, base + 1)
    w.pickup_time = int(time.time()) - 3600
    w.dest_region_code = "330106"  # no route: only branch a sees it
    waygate_proto.unary(channel(env, "courier_a"), "/waygate.v1.WaybillIntake/Submit",
                        pb.intake.SubmitRequest(waybill=w), pb.intake.SubmitResponse)
    ch = channel(env, "courier_b")
    for _ in range(20):  # warm the connection and the statement
        not_found_us(ch, pb, w.waybill_no)
        not_found_us(ch, pb, missing)
    other, absent = [], []
    for _ in range(n):
        other.append(not_found_us(ch, pb, w.waybill_no))
        absent.append(not_found_us(ch, pb, missing))
    mo, ma = statistics.median(other), statistics.median(absent)
    print("Get NOT_FOUND, courier_b, %d calls each, interleaved:" % n)
    print("  exists in branch a's scope: median %.1f us" % mo)
    print("  does not exist:             median %.1f us" % ma)
    print("  ratio %.3f, difference %+.1f us (the review saw +8..9 us with the scope checked "
          "after the read)" % (mo / ma, mo - ma))
    print("RESULT n=%d other_median_us=%.1f missing_median_us=%.1f ratio=%.4f" % (n, mo, ma,
                                                                                   mo / ma))
    return 0


if __name__ == "__main__":
    sys.exit(main())
