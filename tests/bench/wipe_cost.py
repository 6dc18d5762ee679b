#!/usr/bin/python3
"""wipe_cost.py DIR [ROUNDS [SECONDS]]: what wiping costs (issue 10, finding 7), as a ratio in the
same run. On the dev stack DIR (its DIR/env) two more gateways start on the stack's database and
keys: waygated (libevent and nghttp2 buffers wiped on free, TLS plaintext cleansed) and
waygated-nowipe (the same daemon with the transport's wiping off). wgload drives each in turn,
alternating the order every round (A B, B A, ...), with Submit at 64 streams (4 connections x 16)
and then Get at 64 streams of numbers submitted in that round, SECONDS each (default 5) after a
1 s warm-up, ROUNDS rounds (default 3). Reported per figure: calls/s and the gateway's CPU
(user + system, /proc/PID/stat) per call, medians over the rounds, and the ratios wipe/nowipe.
Last line: "RESULT key=value ...". Exit 0, 1 when a call failed, 2 on a set-up error.
Needs a build (WAYGATE_BUILD, default ./build): waygated, waygated-nowipe, tests/bench/wgload."""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import waygate_proto  # noqa: E402

BUILD = os.path.abspath(os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build")))
TICK = os.sysconf("SC_CLK_TCK")


def die(msg):
    print("wipe_cost: " + msg, file=sys.stderr)
    sys.exit(2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(directory, port, name):
    """The stack's waygated.conf on another port, without the metrics listener, its own chain."""
    with open(os.path.join(directory, "waygated.conf")) as f:
        text = f.read()
    out, section = [], ""
    for line in text.splitlines():
        st = line.strip()
        if st.startswith("["):
            section = st
        elif re.match(r"listen\s*=", st):
            if section == "[metrics]":
                continue
            if section == "[server]":
                line = "listen = 127.0.0.1:%d" % port
        out.append(line)
    text = "\n".join(out) + "\n\n[audit]\nchain = bench-%s-%d\n" % (name, port)
    if "[policy]" not in text:
        text += "\n[policy]\nfile = %s\n" % bench_policy(directory)
    path = os.path.join(directory, "bench-%s.conf" % name)
    with open(path, "w") as f:
        f.write(text)
    return path


def bench_policy(directory):
    """deploy/policy.conf with the scraping throttle raised (as run.sh does for its read
    figures): Get of thousands of distinct numbers is the load here, not an attack."""
    with open(os.path.join(ROOT, "deploy", "policy.conf")) as f:
        text = f.read()
    text = re.sub(r"(?m)^(lookups_per_window\s*=\s*).*$", r"\g<1>1000000000", text)
    path = os.path.join(directory, "bench-wipe-policy.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class Gateway:
    def __init__(self, env, directory, binary):
        self.name = binary
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.log = open(os.path.join(directory, "bench-%s.log" % binary), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, binary), "-c", config(directory, self.port, binary)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                ch = waygate_proto.channel(self.addr, env["WAYGATE_CA"],
                                           env["WAYGATE_P_backend_CERT"],
                                           env["WAYGATE_P_backend_KEY"])
                ok = waygate_proto.health_check(ch, timeout=2) == "SERVING"
                ch.close()
                if ok:
                    break
            except Exception:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                die("%s did not become SERVING" % binary)
            time.sleep(0.25)

    def cpu_s(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wgload(gw, args):
    """One wgload run against gw: (RESULT fields, gateway CPU seconds spent during it)."""
    c0 = gw.cpu_s()
    r = subprocess.run([os.path.join(BUILD, "tests", "bench", "wgload"), "--addr", gw.addr]
                       + [str(a) for a in args], capture_output=True, text=True)
    c1 = gw.cpu_s()
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        die("wgload gave no result (exit %d): %s" % (r.returncode, r.stderr[-500:]))
    kv = dict(p.split("=", 1) for p in line[-1].split()[1:])
    return kv, c1 - c0


def main():
    if len(sys.argv) < 2:
        die("usage: wipe_cost.py DIR [ROUNDS [SECONDS]]")
    directory = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    secs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    env = waygate_proto.read_env(os.path.join(directory, "env"))
    for k, v in env.items():
        os.environ.setdefault(k, v)
    m = re.fullmatch(r"([A-Z]*):(\d+)-(\d+)", env["WAYGATE_SEGMENT_A"])
    lo, hi = int(m.group(2)), int(m.group(3))
    next_file = os.path.join(directory, "bench-wipe-next")
    nxt = lo + (hi - lo) * 3 // 4  # run.sh takes from the middle, the tests from the low end
    if os.path.exists(next_file):
        with open(next_file) as f:
            nxt = int(f.read())
    gws = [Gateway(env, directory, "waygated"), Gateway(env, directory, "waygated-nowipe")]
    res = {(g.name, f): [] for g in gws for f in ("submit", "get")}
    failed = False
    try:
        for r in range(rounds):
            for g in (gws if r % 2 == 0 else gws[::-1]):
                first = nxt
                kv, cpu = wgload(g, ["-c", 4, "-s", 16, "-d", secs, "-w", 1, "--first", first])
                nxt = int(kv["next"])
                with open(next_file, "w") as f:
                    f.write(str(nxt))
                failed |= int(kv["errors"]) > 0
                res[(g.name, "submit")].append((float(kv["wps"]), cpu * 1e6 / int(kv["ok_all"])))
                kv, cpu = wgload(g, ["-c", 4, "-s", 16, "-d", secs, "-w", 1, "--get",
                                     "--first", first, "--count", nxt - first])
                failed |= int(kv["errors"]) > 0
                res[(g.name, "get")].append((float(kv["cps"]),
                                             cpu * 1e6 / max(1, int(kv["ok_all"]))))
    finally:
        for g in gws:
            g.stop()
    out = {}
    for f in ("submit", "get"):
        for g in gws:
            rate = statistics.median(x[0] for x in res[(g.name, f)])
            cpu = statistics.median(x[1] for x in res[(g.name, f)])
            out[(g.name, f)] = (rate, cpu)
            print("%-8s %-16s %9.1f calls/s  %7.1f us gateway CPU per call" % (f, g.name, rate,
                                                                               cpu))
        w, n = out[("waygated", f)], out[("waygated-nowipe", f)]
        print("%-8s wipe/nowipe: calls/s x%.3f, gateway CPU per call x%.3f" % (
            f, w[0] / n[0], w[1] / n[1]))
    print("RESULT rounds=%d seconds=%d " % (rounds, secs) + " ".join(
        "%s_rate_ratio=%.3f %s_cpu_ratio=%.3f" % (
            f, out[("waygated", f)][0] / out[("waygated-nowipe", f)][0],
            f, out[("waygated", f)][1] / out[("waygated-nowipe", f)][1])
        for f in ("submit", "get")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
