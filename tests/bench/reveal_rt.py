#!/usr/bin/python3
"""reveal_rt.py DIR [N]: what a Reveal costs beside a Get of the same waybill (issue 8), on the dev
stack DIR (its DIR/env), one call at a time as courier_a:
  - Get and Reveal latency (p50, p90 over N calls each; Reveal of recipient.phone of a waybill of
    branch a bound for 320104, which branch a delivers);
  - database round trips (transactions) per call, counted from what they wrote: a Get is one
    (the read); a Reveal is the read, the quota ledger's (one reveal_log row each) and the audit
    record's: the distinct recorded_at (a transaction's start time) of its "reveal" records, fewer
    than N when the writer grouped several into one commit. Before the audit chain a Reveal was
    two; the issue allows one more.
N defaults to 15: the built-in policy allows courier_a 20 reveals an hour (run.sh's own stack
raises it; then give more). Prints the figures and a last line "RESULT key=value ...".
Exit 0, or 2 on a set-up error."""

import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import waygate_proto  # noqa: E402
from google.protobuf import json_format  # noqa: E402

PSQL = os.path.join(os.environ.get("WAYGATE_PGBIN", "/usr/lib/postgresql/15/bin"), "psql")


def psql(uri, sql):
    r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-d", uri, "-c", sql],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        sys.exit("reveal_rt: psql: %s" % r.stderr.strip())
    return r.stdout.strip()


def timed(fn, n):
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return statistics.median(lat), lat[int(0.9 * (len(lat) - 1))]


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    d = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 15
    env = waygate_proto.read_env(os.path.join(d, "env"))
    pb = waygate_proto.load()
    uri = env["WAYGATE_PGURI_OWNER"]
    ch = waygate_proto.channel(env["WAYGATE_ADDR"], env["WAYGATE_CA"],
                               env["WAYGATE_P_courier_a_CERT"], env["WAYGATE_P_courier_a_KEY"])
    with open(os.path.join(ROOT, "deploy", "example-waybill.json"), encoding="utf-8") as f:
        w = json_format.ParseDict(json.load(f), pb.common.Waybill())
    prefix, rng = env["WAYGATE_SEGMENT_A"].split(":")
    lo, hi = (int(x) for x in rng.split("-"))
    w.waybill_no = "%s%d" % (prefix, hi - 1000 - int(time.time()) % 400000)
    w.pickup_time = int(time.time()) - 3600
    w.dest_region_code = "320104"  # delivered by branch a (the dev stack's routes)
    waygate_proto.unary(ch, "/waygate.v1.WaybillIntake/Submit", pb.intake.SubmitRequest(waybill=w),
                        pb.intake.SubmitResponse)
    get_req = pb.query.GetRequest(waybill_no=w.waybill_no)
    rev_req = pb.query.RevealRequest(waybill_no=w.waybill_no, field="recipient.phone",
                                     reason="benchmark: delivery contact")

    def get():
        waygate_proto.unary(ch, "/waygate.v1.WaybillQuery/Get", get_req, pb.common.WaybillView)

    def reveal():
        r = waygate_proto.unary(ch, "/waygate.v1.WaybillQuery/Reveal", rev_req,
                                pb.query.RevealResponse)
        assert r.audit_seq > 0 and r.value == w.recipient.phone

    rid = waygate_proto.unary(ch, "/waygate.v1.WaybillQuery/Get", get_req,
                              pb.common.WaybillView).id  # also warms the connection
    g50, g90 = timed(get, n)
    t0 = psql(uri, "SELECT now()")
    r50, r90 = timed(reveal, n)
    ledger = int(psql(uri, "SELECT count(*) FROM reveal_log WHERE record_id = '%s' AND at >= '%s'"
                      % (rid, t0)))
    recs, txns = (int(x) for x in psql(
        uri, "SELECT count(*) || ' ' || count(DISTINCT recorded_at) FROM audit_record WHERE "
        "action = 'reveal' AND object = '%s:recipient.phone' AND recorded_at >= '%s'"
        % (rid, t0)).split())
    rt = 1 + ledger / n + txns / n
    print("Get    (1 stream, %d calls): p50 %.2f ms  p90 %.2f ms  1 round trip (the read)" %
          (n, g50, g90))
    print("Reveal (1 stream, %d calls): p50 %.2f ms  p90 %.2f ms  %.2f round trips (the read, "
          "%d ledger rows, %d audit records in %d transactions)" % (n, r50, r90, rt, ledger, recs,
                                                                  txns))
    print("Reveal - Get: %.2f ms at p50; the audit record adds %.2f round trip a Reveal (before "
          "issue 8: 2 in all; the issue allows one more)" % (r50 - g50, txns / n))
    print("RESULT n=%d get_p50_ms=%.3f reveal_p50_ms=%.3f reveal_round_trips=%.2f "
          "audit_round_trips=%.2f" % (n, g50, r50, rt, txns / n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
