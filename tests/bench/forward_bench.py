#!/usr/bin/python3
"""forward_bench.py: Submit with forwarding on (issue 9), beside its baseline in the same run.

  tests/bench/forward_bench.py [--sink c|python] [DIR]     ~2 minutes (~5 with BENCH_REPEAT=3);
                                                          prints the figures and a RESULT line

DIR is a dev stack whose waygated.conf has [forward] (deploy/devstack writes it: the gateway
forwards to deploy/backend-sink); without DIR a throw-away stack is started (WAYGATE_BUILD, default
./build) and removed afterwards.

The sink (--sink): c (the default when WAYGATE_BUILD has tests/bench/bench_sink) stops the dev
stack's Python sink for f64 and serves the same address with bench_sink (tests/bench/bench_sink.c:
the same certificates and client common name, accepting every delivery) at a fraction of the CPU,
since the sink shares the machine's cores with the gateway and in production runs elsewhere; the
Python sink is started again (deploy/devstack up) before o64 and whatever happens. python keeps the
dev stack's sink (its CPU then counts against the gateway's). What runs:
  (a1)  pgbench, 16 clients, one row per transaction (tests/bench/run.sh's baseline), then
  (f64) Submit at 64 streams (4 connections x 16, wgload through the mTLS listener) with the
        forwarder delivering every accepted waybill to the sink meanwhile (run.sh, figure s64);
while a sampler reads the outbox's depth (rows not parked) and the age of its oldest row every
250 ms. After the run it waits (bounded) for the outbox to empty, then reads the sink's file:
ack-to-sink latency = received_at_us (the sink) - enqueued_at_us (the commit of the waybill, just
before the gateway answered the Submit), the first acceptance of each delivery.
and then (o64) the same Submit figure with the [forward] endpoint commented out (the gateway
restarted without forwarding; the outbox keeps filling and is delivered once it is back on), for
what forwarding itself costs.
Targets: f64 >= 1.2x a1, outbox depth bounded (the maximum stays below a few seconds' worth of
Submits and returns to 0), ack-to-sink p99 < 1 s. Exit status 1 when a target is not met.
Environment: BENCH_DURATION (s, default 10), BENCH_REPEAT (run.sh's rounds in each of f64 and o64,
default 1: with 3, each figure is the median of three rounds and each ratio the median of three
per-round ratios, every s64 over the a1 of its own round; the per-round ratios are printed too),
WAYGATE_BUILD, WAYGATE_PGBIN."""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PGBIN = os.environ.get("WAYGATE_PGBIN", "/usr/lib/postgresql/15/bin")
BUILD = os.path.abspath(os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build")))
DRAIN_BOUND_S = 180
BENCH_SINK = os.path.join(BUILD, "tests", "bench", "bench_sink")
DEVSTACK = os.path.join(ROOT, "deploy", "devstack")
FORWARDER_CN = "waygate-forwarder"  # the dev stack's forwarding certificate (deploy/gen-certs)
sys.path.insert(0, os.path.join(ROOT, "deploy"))
from waygate_proto import read_env  # noqa: E402


def python_sink_pid(d, env):
    """The pid of the dev stack's Python sink when it runs (as deploy/devstack's sink_pid)."""
    try:
        with open(env["WAYGATE_SINK_PIDFILE"]) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if "--control %s" % env["WAYGATE_SINK_CONTROL"] in cmdline else None


def wait_gone(pid, bound_s):
    deadline = time.monotonic() + bound_s
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists("/proc/%d" % pid)


class CSink:
    """bench_sink serving the dev stack's sink address in place of its Python sink: the same
    address, certificates and client common name. start() stops the Python sink first; stop()
    ends bench_sink (SIGTERM: it flushes its log); restore_python_sink() brings the Python one
    back. log: one line per delivery (bench_sink.c), views: also each view's bytes."""

    def __init__(self, d, env, views=False):
        self.d, self.env, self.views, self.proc = d, env, views, None
        self.log = os.path.join(d, "bench_sink.log")
        self.pidfile = os.path.join(d, "bench_sink.pid")
        self.err = os.path.join(d, "bench_sink.err")

    def stop_python_sink(self):
        pid = python_sink_pid(self.d, self.env)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)

    def start(self):
        self.stop_python_sink()
        open(self.log, "w").close()  # this run's deliveries only
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)  # left by a bench_sink killed earlier: it means "serving"
        args = [BENCH_SINK, "--listen", self.env["WAYGATE_SINK_ADDR"], "--ca", self.env["WAYGATE_CA"],
                "--cert", self.env["WAYGATE_SINK_CERT"], "--key", self.env["WAYGATE_SINK_KEY"],
                "--log", self.log, "--client-cn", FORWARDER_CN, "--pidfile", self.pidfile]
        if self.views:
            args.append("--views")
        # the address may still be held for a moment by the sink just stopped: a few tries
        for _ in range(50):
            with open(self.err, "a") as err:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err,
                                             stderr=err, start_new_session=True)
            deadline = time.monotonic() + 30
            while self.proc.poll() is None and not os.path.exists(self.pidfile):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("bench_sink did not start within 30 s (%s)" % self.err)
                time.sleep(0.02)
            if self.proc.poll() is None:
                return
            time.sleep(0.2)
        self.proc = None
        raise RuntimeError("bench_sink could not serve %s (%s)" % (self.env["WAYGATE_SINK_ADDR"],
                                                                  self.err))

    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def records(self):
        """The deliveries bench_sink answered: dicts with delivery_id, kind, record_id,
        enqueued_at_us, received_at_us (and view, bytes or None, with views)."""
        out = []
        with open(self.log, encoding="ascii") as f:
            for line in f:
                p = line.split()
                if len(p) < 6 or p[0] != "D":
                    continue
                rec = {"delivery_id": p[1], "kind": int(p[2]), "record_id": p[3],
                       "enqueued_at_us": int(p[4]), "received_at_us": int(p[5])}
                if self.views:
                    import base64
                    rec["view"] = base64.b64decode(p[6]) if len(p) > 6 and p[6] != "-" else None
                out.append(rec)
        return out


def restore_python_sink(d):
    """deploy/devstack up: starts the stack's Python sink again (on its port) when it is not
    running; what already runs is kept."""
    r = subprocess.run([DEVSTACK, "up", d], capture_output=True, text=True,
                       env=dict(os.environ, WAYGATE_BUILD=BUILD))
    if r.returncode != 0:
        raise RuntimeError("devstack up failed:\n%s%s" % (r.stdout, r.stderr))


def psql_argv(uri):
    """psql on uri: no psqlrc, quiet, unaligned, tuples only."""
    return [os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-d", uri]


def psql(uri, sql):
    r = subprocess.run(psql_argv(uri) + ["-c", sql], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return r.stdout.strip()


class Sampler(threading.Thread):
    """The outbox's depth (not parked) and its oldest row's age, every 250 ms, through one psql
    session kept open (a psql and a backend started per sample cost the machine a few percent
    during the very runs measured); a session that failed (psql stops at an error) is opened
    again at the next sample."""

    QUERY = ("SELECT count(*) || '|' || coalesce(round(extract(epoch FROM clock_timestamp() - "
             "min(enqueued_at)) * 1000), 0) || '|' || pg_relation_size('outbox') FROM outbox "
             "WHERE parked_at IS NULL;\n")

    def __init__(self, uri):
        super().__init__(daemon=True)
        self.uri, self.stop, self.samples, self.proc = uri, threading.Event(), [], None

    def sample(self):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                psql_argv(self.uri) + ["-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.proc.stdin.write(self.QUERY)
        depth, age, size = self.proc.stdout.readline().strip().split("|")  # "" once psql stopped
        return int(depth), int(float(age)), int(size)

    def run(self):
        try:
            while not self.stop.wait(0.25):
                try:
                    depth, age, size = self.sample()
                    self.samples.append((time.time(), depth, age, size))
                except (OSError, ValueError):
                    pass  # a sample missed under load
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.stdin.close()
                self.proc.wait(30)


FWD_KEYS = ("sent_total", "delivered_total", "claimed_total", "fast_sent_total",
            "fast_dropped_total", "fast_queued", "calls_inflight", "ack_pending")


def scrape_forward(addr):
    """The gateway's waygate_forward_* samples ({short name: value}, plus "accepted": waybills
    accepted so far) from GET /metrics at addr."""
    import http.client
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("waygate_forward_"):
            name, _, value = line.rpartition(" ")
            out[name[len("waygate_forward_"):]] = float(value)
        elif line.startswith("waygate_waybills_accepted_total "):
            out["accepted"] = float(line.rpartition(" ")[2])
    return out


class MetricsSampler(threading.Thread):
    """The forwarder's counters and gauges (/metrics), every second: how many went by the fast
    path and by claims, and what held the calls (in flight, queued, deletes pending); beside them
    the CPU ticks of the gateway, of every postgres process and of the sink (pidfiles; None: not
    read), so that the CPU per waybill is taken over the Submit window alone (cpu_per_waybill)."""

    def __init__(self, d, addr, gw_pidfile=None, sink_pidfile=None):
        super().__init__(daemon=True)
        self.d, self.addr, self.stop, self.samples = d, addr, threading.Event(), []
        self.gw_pidfile, self.sink_pidfile = gw_pidfile, sink_pidfile

    def run(self):
        while True:
            try:
                m = scrape_forward(self.addr)
                m["cpu_gw"] = cpu_ticks(self.gw_pidfile) if self.gw_pidfile else 0
                m["cpu_pg"] = postgres_ticks(self.d)
                m["cpu_sink"] = cpu_ticks(self.sink_pidfile) if self.sink_pidfile else 0
                self.samples.append((time.time(), m))
            except (OSError, ValueError):
                pass  # a scrape missed under load
            if self.stop.wait(1.0):
                return

    def cpu_per_waybill(self):
        """(waybills/s, gateway, PostgreSQL, sink CPU in us per waybill) over the seconds in
        which the gateway accepted at least half its best second's rate (the Submit figure's
        run, without pgbench's a1 or the idle waits around it); None with too few samples."""
        s = [x for x in self.samples if "accepted" in x[1]]
        steps = [(a, b) for a, b in zip(s, s[1:]) if b[0] > a[0]]
        if not steps:
            return None
        rate = [(b[1]["accepted"] - a[1]["accepted"]) / (b[0] - a[0]) for a, b in steps]
        best = max(rate)
        win = [st for st, r in zip(steps, rate) if best > 0 and r >= best / 2]
        n = sum(b[1]["accepted"] - a[1]["accepted"] for a, b in win)
        dt = sum(b[0] - a[0] for a, b in win)
        if n <= 0:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        per = [sum(b[1][k] - a[1][k] for a, b in win) / hz * 1e6 / n
               for k in ("cpu_gw", "cpu_pg", "cpu_sink")]
        return (n / dt, per[0], per[1], per[2])

    def report(self, end_us):
        """Lines: the forwarder during f64 and after it (rates, the split, the gauges' maxima)."""
        s = self.samples
        if len(s) < 2:
            return ["forwarder metrics: too few scrapes"]
        during = [x for x in s if x[0] * 1e6 <= end_us] or s[:1]
        lines = []
        for name, a, b in (("during f64", s[0], during[-1]), ("after f64", during[-1], s[-1])):
            dt = b[0] - a[0]
            if dt <= 0:
                continue
            d = {k: b[1].get(k, 0.0) - a[1].get(k, 0.0) for k in FWD_KEYS}
            part = [x for x in s if a[0] <= x[0] <= b[0]]
            mx = {k: max(x[1].get(k, 0.0) for x in part) for k in
                  ("fast_queued", "calls_inflight", "ack_pending")}
            lines.append("forwarder %s (%.1f s): delivered %.0f/s (%d fast, %d claimed, %d fast "
                         "dropped); max fast queued %d, calls in flight %d, deletes pending %d"
                         % (name, dt, d["delivered_total"] / dt, d["fast_sent_total"],
                            d["claimed_total"], d["fast_dropped_total"], mx["fast_queued"],
                            mx["calls_inflight"], mx["ack_pending"]))
        return lines


def cpu_ticks(pidfile):
    """utime + stime of the process whose pid is in pidfile (0 when unknown)."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


def postgres_ticks(d):
    """CPU ticks of stack d's PostgreSQL: its postmaster (with the children it reaped) and its
    live children (backends, WAL writer, autovacuum...); 0 when the postmaster is unknown. Other
    clusters on the machine are not counted."""
    try:
        with open(os.path.join(d, "pg", "data", "postmaster.pid")) as f:
            pm = f.readline().strip()
    except OSError:
        return 0
    total = 0
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e) as f:
                fields = f.read().rpartition(")")[2].split()
            if e == pm:
                total += sum(int(x) for x in fields[11:15])
            elif fields[1] == pm:
                total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_kib(pid):
    """VmRSS of pid in KiB (0 when unknown)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, TypeError):
        pass
    return 0


def run_submit(d):
    """run.sh's a1 and s64 on stack d, BENCH_REPEAT rounds (default 1): (a1 rows/s, s64 waybills/s,
    ratio, s64 p99 ms, per-round ratios, output). With more than one round the figures are run.sh's
    medians and the ratio the median of the per-round ratios (each s64 over its own round's a1)."""
    r = subprocess.run([os.path.join(ROOT, "tests", "bench", "run.sh"), d], capture_output=True,
                       text=True, env=dict(os.environ, WAYGATE_BUILD=BUILD, BENCH_FIGURES="submit",
                                           BENCH_CONF="s64:4:16:0"))
    out = r.stdout + r.stderr
    if r.returncode != 0:
        print(out)
        sys.exit("forward_bench: run.sh failed")
    m = re.search(r"Submit at 64 streams >= 1\.2x .*?: ([0-9.]+)x, p99 ([0-9.]+) ms", out)
    a1 = re.search(r"^\| a1 \| [^|]* \| ([0-9.]+) \|", out, re.M)  # run.sh's table: medians
    s64 = re.search(r"^\| s64 \| [^|]* \| ([0-9.]+) \|", out, re.M)
    rounds = re.search(r"\(per round: ratio ([0-9., ]+);", out)
    per_round = rounds.group(1) if rounds else (m.group(1) if m else "")
    return (float(a1.group(1)) if a1 else 0.0, float(s64.group(1)) if s64 else 0.0,
            float(m.group(1)) if m else 0.0, float(m.group(2)) if m else 0.0, per_round, out)


def set_forwarding(d, on):
    """Comments the [forward] endpoint out (off) or in (on) and restarts the stack's gateway."""
    path = os.path.join(d, "waygated.conf")
    with open(path) as f:
        text = f.read()
    if on:
        text = re.sub(r"^#bench-off# (endpoint\s*=)", r"\1", text, flags=re.M)
    else:
        text = re.sub(r"^(endpoint\s*=)", r"#bench-off# \1", text, flags=re.M)
    with open(path, "w") as f:
        f.write(text)
    e = dict(os.environ, WAYGATE_BUILD=BUILD)
    for cmd in ("down", "up"):
        r = subprocess.run([DEVSTACK, cmd, d], capture_output=True, text=True, env=e)
        if r.returncode != 0:
            sys.exit("forward_bench: devstack %s failed:\n%s%s" % (cmd, r.stdout, r.stderr))


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sink", choices=("c", "python"),
                    default="c" if os.access(BENCH_SINK, os.X_OK) else "python",
                    help="the backend the gateway forwards to during f64 (default c when built)")
    ap.add_argument("dir", nargs="?", help="a dev stack (default: a throw-away one)")
    args = ap.parse_args()
    if args.sink == "c" and not os.access(BENCH_SINK, os.X_OK):
        sys.exit("forward_bench: --sink c needs %s (build it)" % BENCH_SINK)
    own = None
    if args.dir:
        d = args.dir
    else:
        own = d = tempfile.mkdtemp(prefix="wgfwd-stack.")
        os.chmod(d, 0o711)
        r = subprocess.run([DEVSTACK, "up", d], capture_output=True, text=True,
                           env=dict(os.environ, WAYGATE_BUILD=BUILD))
        if r.returncode != 0:
            sys.exit("devstack up failed:\n" + r.stdout + r.stderr)
    try:
        return run(d, args.sink)
    finally:
        if own:
            subprocess.run([DEVSTACK, "down", own], capture_output=True,
                           env=dict(os.environ, WAYGATE_BUILD=BUILD))
            shutil.rmtree(own, ignore_errors=True)


def run(d, sink):
    env = read_env(os.path.join(d, "env"))
    with open(os.path.join(d, "waygated.conf")) as f:
        if not re.search(r"^\[forward\][^\[]*^endpoint\s*=", f.read(), re.M):
            sys.exit("forward_bench: %s/waygated.conf has no [forward] endpoint" % d)
    subprocess.run([sys.executable, env["WAYGATE_SINK"], "ctl", env["WAYGATE_SINK_CONTROL"], "up"],
                   check=True, capture_output=True, timeout=60)
    csink = CSink(d, env) if sink == "c" else None
    try:
        return measure(d, env, csink)
    finally:
        if csink is not None:
            csink.stop()
            if python_sink_pid(d, env) is None:
                restore_python_sink(d)


def measure(d, env, csink):
    if csink is not None:
        csink.start()
        sink_desc = "c (%s, pid %d)" % (BENCH_SINK, csink.pid())
        sink_pidfile = csink.pidfile
    else:
        sink_desc = "python (%s)" % env["WAYGATE_SINK"]
        sink_pidfile = env["WAYGATE_SINK_PIDFILE"]
    print("sink: " + sink_desc, flush=True)
    uri = env["WAYGATE_PGURI_OWNER"]
    # an earlier run's o64 leaves its waybills in the outbox, delivered once forwarding is back
    # on: f64 starts from an empty outbox (bounded wait), so they count neither in its depth nor
    # in the sink's CPU
    deadline = time.time() + DRAIN_BOUND_S
    while psql(uri, "SELECT count(*) FROM outbox WHERE parked_at IS NULL") != "0":
        if time.time() > deadline:
            sys.exit("forward_bench: the outbox did not empty within %d s before the run"
                     % DRAIN_BOUND_S)
        time.sleep(0.5)
    start_us = int(time.time() * 1e6)
    sampler = Sampler(uri)
    sampler.start()
    msampler = MetricsSampler(d, env["WAYGATE_METRICS_ADDR"], os.path.join(d, "waygated.pid"),
                              sink_pidfile) if env.get("WAYGATE_METRICS_ADDR") else None
    if msampler is not None:
        msampler.start()
    t_gw, t_sink = cpu_ticks(os.path.join(d, "waygated.pid")), cpu_ticks(sink_pidfile)
    t_pg = postgres_ticks(d)
    rss0 = rss_kib(csink.pid()) if csink is not None else 0
    a1_rate, s64_rate, ratio, p99_submit, rounds, out = run_submit(d)
    end_us = int(time.time() * 1e6)
    t_gw = cpu_ticks(os.path.join(d, "waygated.pid")) - t_gw
    t_sink = cpu_ticks(sink_pidfile) - t_sink
    t_pg = postgres_ticks(d) - t_pg
    rss1 = rss_kib(csink.pid()) if csink is not None else 0
    drained_at = None
    deadline = time.time() + DRAIN_BOUND_S
    while time.time() < deadline:
        if sampler.samples and sampler.samples[-1][0] * 1e6 > end_us and sampler.samples[-1][1] == 0:
            drained_at = time.time()
            break
        time.sleep(0.25)
    sampler.stop.set()
    sampler.join()
    if msampler is not None:
        msampler.stop.set()
        msampler.join()
    if csink is not None:
        # the deliveries are in; the Python sink comes back with the gateway's restart below
        csink.stop()
        recs = csink.records()
    else:
        with open(env["WAYGATE_SINK_LOG"], encoding="utf-8") as f:
            recs = [r for r in map(json.loads, f) if r.get("outcome") == "ACCEPTED"]
    # (o64) then the same figure with forwarding off (what forwarding costs); the outbox keeps
    # those waybills and the gateway delivers them once forwarding is back on
    set_forwarding(d, False)
    try:
        o_gw, o_pg = cpu_ticks(os.path.join(d, "waygated.pid")), postgres_ticks(d)
        osampler = MetricsSampler(d, env["WAYGATE_METRICS_ADDR"], os.path.join(d, "waygated.pid")) \
            if env.get("WAYGATE_METRICS_ADDR") else None
        if osampler is not None:
            osampler.start()
        off_a1, off_s64, off_ratio, off_p99, off_rounds, _ = run_submit(d)
        if osampler is not None:
            osampler.stop.set()
            osampler.join()
        o_gw = cpu_ticks(os.path.join(d, "waygated.pid")) - o_gw
        o_pg = postgres_ticks(d) - o_pg
    finally:
        set_forwarding(d, True)
    first, lat = {}, []
    for rec in recs:
        if not start_us <= rec.get("enqueued_at_us", 0) <= end_us:
            continue  # only what f64 submitted (o64's waybills wait for forwarding to be on)
        if rec["delivery_id"] in first:
            continue
        first[rec["delivery_id"]] = rec
        lat.append((rec["received_at_us"] - rec["enqueued_at_us"]) / 1000.0)
    during = [s for s in sampler.samples if s[0] * 1e6 <= end_us]
    max_depth = max((s[1] for s in during), default=0)
    max_age = max((s[2] for s in during), default=0)
    max_size = max((s[3] for s in during), default=0)
    hz = os.sysconf("SC_CLK_TCK")
    print("o64 Submit 64 streams, forwarding off: %.0f waybills/s, p99 %.1f ms: %.2fx its a1 "
          "(%.0f rows/s; per round %s)" % (off_s64, off_p99, off_ratio, off_a1, off_rounds))
    print("f64 Submit 64 streams, forwarding on: %.0f waybills/s, p99 %.1f ms: %.2fx its a1 "
          "(%.0f rows/s; per round %s); %.2fx o64" % (s64_rate, p99_submit, ratio, a1_rate, rounds,
                                                      s64_rate / off_s64 if off_s64 else 0.0))
    print("CPU during f64 (run.sh's whole call, a1 included): gateway %.1f s, sink %.1f s (%s), "
          "PostgreSQL %.1f s (every postgres process)"
          % (t_gw / hz, t_sink / hz, sink_desc, t_pg / hz))
    print("CPU during o64 (the same call, forwarding off): gateway %.1f s, PostgreSQL %.1f s"
          % (o_gw / hz, o_pg / hz))
    if csink is not None:
        print("bench_sink VmRSS: %d KiB before f64, %d KiB after" % (rss0, rss1))
    print("outbox while submitting: max depth %d rows, oldest row at most %d ms old, table at "
          "most %.1f MiB; %s" % (max_depth, max_age, max_size / 1048576.0,
                                 "drained %.1f s after the run" % (drained_at - end_us / 1e6)
                                 if drained_at else "NOT drained within %d s" % DRAIN_BOUND_S))
    print("ack-to-sink over %d deliveries: p50 %.0f ms, p99 %.0f ms, max %.0f ms"
          % (len(lat), pct(lat, 0.5), pct(lat, 0.99), max(lat, default=0)))
    # both sinks stamp one receive time per Deliver call: distinct stamps ~ calls
    calls = len({r["received_at_us"] for r in first.values()})
    print("Deliver calls (distinct receive stamps): %d, %.1f deliveries per call"
          % (calls, len(first) / calls if calls else 0.0))
    for line in msampler.report(end_us) if msampler is not None else []:
        print(line)
    for name, smp in (("f64", msampler), ("o64", osampler)):
        c = smp.cpu_per_waybill() if smp is not None else None
        if c is not None:
            print("CPU per waybill in %s's Submit window (%.0f waybills/s): gateway %.1f us, "
                  "PostgreSQL %.1f us, sink %.1f us" % (name, c[0], c[1], c[2], c[3]))
    ok = ratio >= 1.2 and drained_at is not None and pct(lat, 0.99) < 1000 and lat
    print("RESULT sink=%s ratio=%.2f rounds=%s off_ratio=%.2f max_depth=%d drained=%s "
          "p99_ack_to_sink_ms=%.0f deliveries=%d %s"
          % ("c" if csink is not None else "python", ratio, rounds.replace(" ", ""), off_ratio,
             max_depth, "yes" if drained_at else "no", pct(lat, 0.99), len(lat),
             "met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
