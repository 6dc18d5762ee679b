#!/usr/bin/python3
"""stack_ab.py ROUNDS NAME=DIR...: gateway CPU per accepted waybill, Submit at 64 streams
(wgload -c 4 -s 16), for gateways of different commits, each running on a dev stack of its own
(deploy/devstack up DIR from that commit's tree: its own schema, keys and certificates), in the
same window. Per round, each stack in turn (the order alternating every round): `perf stat -e
task-clock -p PID` on the stack's running gateway for the whole of one wgload run (DUR seconds,
default 8, no warm-up), divided by the waybills that run accepted (wgload's ok_all). Prints each
round, the medians and, for two stacks, the per-round ratios second/first and their median.
Used to measure a build against an older commit whose schema differs from today's (cpu_ab.py
runs builds on one stack and so needs one schema). A stack that forwards to a backend
([forward] endpoint set) is refused: forwarding would add its own CPU to the figure. The same
wgload binary (WGLOAD, default WAYGATE_BUILD/tests/bench/wgload) drives every stack; numbers come
from the middle of segment A, above what tests use, kept per stack in DIR/stack-ab-next. A tool,
not a test. Needs perf."""
import os, re, signal, statistics, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import submit64  # noqa: E402
DUR = os.environ.get("DUR", "8")


def forwards(d):
    sec = ""
    for line in open(os.path.join(d, "waygated.conf")):
        st = line.strip()
        if st.startswith("["):
            sec = st
        elif sec == "[forward]" and re.match(r"endpoint\s*=", st):
            return True
    return False


def run(d):
    ps = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "task-clock", "-p",
                           str(submit64.gateway_pid(d))], stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # perf attached before the first call
    kv = submit64.run(d, DUR)
    ps.send_signal(signal.SIGINT)
    err = ps.communicate()[1]
    msec = float([l for l in err.splitlines() if "task-clock" in l][0].split(",")[0])
    return msec * 1000 / max(1, int(kv["ok_all"])), kv


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    stacks = [a.split("=", 1) for a in sys.argv[2:]]
    for name, d in stacks:
        if forwards(d):
            sys.exit("stack_ab: %s (%s) forwards to a backend: comment out [forward] endpoint "
                     "and restart its gateway" % (name, d))
    res = {name: [] for name, _ in stacks}
    for r in range(rounds):
        for name, d in (stacks if r % 2 == 0 else stacks[::-1]):
            us, kv = run(d)
            res[name].append(us)
            print("round %d %-8s %6.1f us/wb  wps=%s p99_ms=%s errors=%s load=%s" % (
                r + 1, name, us, kv["wps"], kv["p99_ms"], kv["errors"],
                open("/proc/loadavg").read().split()[0]), flush=True)
    for name, _ in stacks:
        print("median %-8s %6.1f us/wb  (%s)" % (name, statistics.median(res[name]),
                                                 " ".join("%.1f" % x for x in res[name])))
    if len(stacks) == 2:
        a, b = stacks[0][0], stacks[1][0]
        rs = [y / x for x, y in zip(res[a], res[b])]
        print("ratio %s/%s per round: %s  median %.3f" % (
            b, a, " ".join("%.3f" % x for x in rs), statistics.median(rs)))


main()
