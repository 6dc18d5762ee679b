#!/usr/bin/python3
"""db_share_flood.py [SHARE ...]: another principal's Get latency while one certificate floods
Search with a fake bearer token (the attack of the threat model's row "one principal fills the
database queue"), against a fresh dev stack (deploy/devstack up; WAYGATE_BUILD selects the
build). For each SHARE (a [database] queue_share; 1000000: no share in effect, 0: the default)
an extra gateway on the stack's database runs with it; wgload floods it from courier_a (100
connections x 100 streams, 20 s) while one courier_b client Gets its own waybill one call after
another; the script prints courier_b's p50/p99 and statuses, and wgload's summary line.

Measurement only, never a test: on a shared machine the numbers move."""

import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "deploy"))

import grpc  # noqa: E402
import waygate_proto  # noqa: E402
from conftest import BUILD, ExtraGateway, Stack, free_port  # noqa: E402
from query_data import GET, SUBMIT, new_waybill  # noqa: E402

DEVSTACK = os.path.join(ROOT, "deploy", "devstack")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def innocent_gets(stack, addr, stop, out, w=None):
    pb = stack.pb
    ch = stack.channel("courier_b", addr=addr)
    if w is None:
        w = out["w"] = new_waybill(stack, branch="b")
        waygate_proto.unary(ch, SUBMIT, pb.intake.SubmitRequest(waybill=w),
                            pb.intake.SubmitResponse, timeout=30)
    req = pb.query.GetRequest(waybill_no=w.waybill_no)
    out["ready"].set()
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            waygate_proto.unary(ch, GET, req, pb.common.WaybillView, timeout=10)
            status = "OK"
        except grpc.RpcError as e:
            status = "%s %s" % (e.code().name, e.details()[:48])
        out["lat"].append((time.perf_counter() - t0) * 1000)
        out["status"][status] = out["status"].get(status, 0) + 1


def run(stack, share):
    # the flood's 100 connections come from one address at once: the per-address limits of
    # unauthenticated connections raised (each is authenticated a moment later)
    gw = ExtraGateway(stack, "flood%d" % share, lambda t: t.replace(
        "[database]", "[database]\nqueue_share = %d" % share, 1).replace(
        "[server]", "[server]\nmax_preauth_per_address = 1000\naccept_rate_per_address = 1000\n"
        "max_preauth_connections = 200", 1))
    try:
        stop = threading.Event()
        quiet = {"lat": [], "status": {}, "ready": threading.Event()}
        t = threading.Thread(target=innocent_gets, args=(stack, gw.addr, stop, quiet))
        t.start()
        quiet["ready"].wait(60)
        time.sleep(3)
        stop.set()
        t.join()
        env = stack.env
        flood = subprocess.Popen(
            [os.path.join(BUILD, "tests", "bench", "wgload"), "--addr", gw.addr,
             "--ca", env["WAYGATE_CA"], "--cert", env["WAYGATE_P_courier_a_CERT"],
             "--key", env["WAYGATE_P_courier_a_KEY"], "--servername", "localhost",
             "-c", "100", "-s", "100", "-d", "20", "-w", "1",
             "--search-phone", "13800000000", "--expect", "0", "--timeout-ms", "10000",
             "--metadata", "authorization: Bearer " + "A" * 43],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(4)
        stop = threading.Event()
        loaded = {"lat": [], "status": {}, "ready": threading.Event()}
        t = threading.Thread(target=innocent_gets,
                             args=(stack, gw.addr, stop, loaded, quiet["w"]))
        t.start()
        time.sleep(14)
        stop.set()
        t.join()
        report = flood.communicate()[0]
        print("queue_share %d:" % share)
        print("  courier_b Get, quiet:  p50 %7.1f ms p99 %7.1f ms %s"
              % (pct(quiet["lat"], .5), pct(quiet["lat"], .99), quiet["status"]))
        print("  courier_b Get, flood:  p50 %7.1f ms p99 %7.1f ms %s"
              % (pct(loaded["lat"], .5), pct(loaded["lat"], .99), loaded["status"]))
        print("  flood (wgload):\n    " + "\n    ".join(report.strip().splitlines()[-12:]))
    finally:
        gw.close()


def main():
    shares = [int(a) for a in sys.argv[1:]] or [1000000, 0]
    d = tempfile.mkdtemp(prefix="waygate-flood-")
    os.chmod(d, 0o711)
    env = dict(os.environ, WAYGATE_BUILD=BUILD)
    subprocess.run([DEVSTACK, "up", d], check=True, capture_output=True, env=env)
    try:
        stack = Stack(d, waygate_proto.read_env(os.path.join(d, "env")))
        for share in shares:
            run(stack, share)
        stack.close_channels()
    finally:
        subprocess.run([DEVSTACK, "down", d], capture_output=True, env=env)


if __name__ == "__main__":
    main()
