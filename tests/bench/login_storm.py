#!/usr/bin/python3
"""login_storm.py DIR [N_LOGIN_THREADS] [N_SUBMITS]: Submit latency with and without a storm of
Admin.Login calls, against a running dev stack (deploy/devstack up DIR). The storm's threads log
the dev account clerk_a in over and over (each login is one scrypt on the gateway's worker
pool); meanwhile one client submits waybills one after another and the script prints Submit's
p50 and p99 without and with the storm, and the logins per second the pool sustained.

Measurement only (docs/accounts figures), never a test: on a shared machine the numbers move."""

import multiprocessing
import os
import random
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "deploy"))

import waygate_proto  # noqa: E402
from conftest import Stack  # noqa: E402
import test_intake  # noqa: E402

SUBMIT = "/waygate.v1.WaybillIntake/Submit"
LOGIN = "/waygate.v1.Admin/Login"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def submits(stack, ch, n):
    lat = []
    for _ in range(n):
        w = test_intake.new_waybill(stack, "a")
        t0 = time.perf_counter()
        waygate_proto.unary(ch, SUBMIT, stack.pb.intake.SubmitRequest(waybill=w),
                            stack.pb.intake.SubmitResponse, timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
    return lat


def storm_process(d, account, pw, via, nthreads, stop, count):
    stack = Stack(d, waygate_proto.read_env(os.path.join(d, "env")))

    def storm():
        c = stack.channel(via)
        req = stack.pb.admin.LoginRequest(account=account, password=pw)
        while not stop.is_set():
            try:
                waygate_proto.unary(c, LOGIN, req, stack.pb.admin.LoginResponse, timeout=60)
                with count.get_lock():
                    count.value += 1
            except Exception:  # busy (RESOURCE_EXHAUSTED) counts as not served
                pass

    threads = [threading.Thread(target=storm) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    d = sys.argv[1]
    nthreads = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    stack = Stack(d, waygate_proto.read_env(os.path.join(d, "env")))
    test_intake.INTAKE_OFFSET = random.randrange(100_000_000, 900_000_000)
    account, pw, via = stack.account("clerk_a")
    ch = stack.channel("courier_a")
    submits(stack, ch, 20)  # warm-up
    base = submits(stack, ch, n)

    # The storm runs in other processes (4, each with its threads), so that the measuring
    # client does not share an interpreter lock with it.
    stop = multiprocessing.Event()
    count = multiprocessing.Value("l", 0)
    procs = [multiprocessing.Process(target=storm_process,
                                     args=(d, account, pw, via, nthreads // 4, stop, count))
             for _ in range(4)]
    for p in procs:
        p.start()
    time.sleep(3)
    l0 = count.value
    t0 = time.monotonic()
    loaded = submits(stack, ch, n)
    dt = time.monotonic() - t0
    l1 = count.value
    stop.set()
    for p in procs:
        p.join()
    stack.close_channels()
    print("Submit latency, ms (one client, sequential, %d calls each):" % n)
    print("  quiet:       p50 %6.2f  p99 %6.2f" % (pct(base, 0.5), pct(base, 0.99)))
    print("  login storm: p50 %6.2f  p99 %6.2f  (%d login threads, %.1f logins/s served)"
          % (pct(loaded, 0.5), pct(loaded, 0.99), nthreads // 4 * 4, (l1 - l0) / dt))


if __name__ == "__main__":
    main()
