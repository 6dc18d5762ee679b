#!/usr/bin/python3
"""cpu_ab.py DIR ROUNDS NAME=BINARY...: the gateway's steady-state CPU per accepted waybill,
Submit at 64 streams (wgload -c 4 -s 16), for several waygated builds in the same window.
Each binary runs as a gateway of its own on the dev stack DIR (its database and keys; forwarding
off: [forward] endpoint commented out; its own server and metrics ports). Per round, each gateway
in turn (the order alternating every round): wgload for DUR seconds (default 11) after a 1 s
warm-up, and from 3 s in `perf stat -e task-clock -p PID` for 6 s; the waybills accepted in that
window come from the gateway's waygate_waybills_accepted_total before and after. Prints each
round, the medians, and for two builds the per-round ratios second/first and their median.
PROFILE=PREFIX records `perf record --call-graph dwarf` (FREQ Hz, default 999) in that window
instead (PREFIX-NAME-ROUND.data; the us/wb printed is then not meaningful). A tool, not a test.
Needs perf, a build (WAYGATE_BUILD, default ./build: tests/bench/wgload) and deploy/devstack."""
import os, re, signal, socket, statistics, subprocess, sys, time, urllib.request
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import waygate_proto
BUILD = os.path.abspath(os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build")))
WGLOAD = os.environ.get("WGLOAD", os.path.join(BUILD, "tests", "bench", "wgload"))

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def config(d, port, mport, name):
    out, sec = [], ""
    for line in open(os.path.join(d, "waygated.conf")).read().splitlines():
        st = line.strip()
        if st.startswith("["): sec = st
        elif re.match(r"listen\s*=", st):
            line = "listen = 127.0.0.1:%d" % (port if sec == "[server]" else mport)
        elif sec == "[forward]" and re.match(r"endpoint\s*=", st):
            line = "# " + line
        out.append(line)
    text = "\n".join(out) + "\n\n[audit]\nchain = ab-%s-%d\n" % (name, port)
    p = os.path.join(d, "ab-%s.conf" % name)
    open(p, "w").write(text); return p

class GW:
    def __init__(s, env, d, name, binary):
        s.name = name; s.port = free_port(); s.mport = free_port()
        s.addr = "127.0.0.1:%d" % s.port
        s.log = open(os.path.join(d, "ab-%s.log" % name), "ab")
        s.proc = subprocess.Popen([binary, "-c", config(d, s.port, s.mport, name)],
                                  stdin=subprocess.DEVNULL, stdout=s.log, stderr=s.log)
        dl = time.monotonic() + 40
        while True:
            try:
                ch = waygate_proto.channel(s.addr, env["WAYGATE_CA"], env["WAYGATE_P_backend_CERT"], env["WAYGATE_P_backend_KEY"])
                ok = waygate_proto.health_check(ch, timeout=2) == "SERVING"; ch.close()
                if ok: break
            except Exception: pass
            if s.proc.poll() is not None or time.monotonic() > dl:
                s.stop(); sys.exit("cpu_ab: %s did not become SERVING" % name)
            time.sleep(0.25)
    def accepted(s):
        t = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.mport, timeout=5).read().decode()
        return float(re.search(r"^waygate_waybills_accepted_total (\S+)", t, re.M).group(1))
    def stop(s):
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
            try: s.proc.wait(20)
            except subprocess.TimeoutExpired: s.proc.kill(); s.proc.wait()

def main():
    d = sys.argv[1]; rounds = int(sys.argv[2])
    bins = [a.split("=", 1) for a in sys.argv[3:]]
    env = waygate_proto.read_env(os.path.join(d, "env"))
    for k, v in env.items(): os.environ.setdefault(k, v)
    m = re.fullmatch(r"([A-Z]*):(\d+)-(\d+)", env["WAYGATE_SEGMENT_A"])
    lo, hi = int(m.group(2)), int(m.group(3))
    nf = os.path.join(d, "ab-next")
    nxt = int(open(nf).read()) if os.path.exists(nf) else lo + (hi - lo) // 2
    gws = [GW(env, d, n, b) for n, b in bins]
    res = {g.name: [] for g in gws}
    try:
        for r in range(rounds):
            for g in (gws if r % 2 == 0 else gws[::-1]):
                w = subprocess.Popen([WGLOAD, "--addr", g.addr, "-c", "4", "-s", "16", "-d", os.environ.get("DUR", "11"), "-w", "1",
                                      "--first", str(nxt)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                time.sleep(3)
                a0 = g.accepted()
                prof = os.environ.get("PROFILE")
                if prof:
                    subprocess.run(["perf", "record", "-F", os.environ.get("FREQ","999"), "--call-graph", "dwarf,16384", "-o", "%s-%s-%d.data" % (prof, g.name, r),
                                    "-p", str(g.proc.pid), "--", "sleep", "6"], capture_output=True)
                ps = subprocess.run(["perf", "stat", "-x", ",", "-e", "task-clock", "-p", str(g.proc.pid), "--", "sleep", "6" if not prof else "0.5"],
                                    capture_output=True, text=True)
                a1 = g.accepted()
                out, _ = w.communicate()
                line = [l for l in out.splitlines() if l.startswith("RESULT ")]
                if not line: sys.exit("cpu_ab: wgload gave no result: " + out[-800:])
                kv = dict(p.split("=", 1) for p in line[-1].split()[1:])
                nxt = int(kv["next"]); open(nf, "w").write(str(nxt))
                msec = float([l for l in ps.stderr.splitlines() if "task-clock" in l][0].split(",")[0])
                us = msec * 1000 / max(1, a1 - a0)
                la = open("/proc/loadavg").read().split()[0]
                res[g.name].append(us)
                print("round %d %-8s %7.1f us/wb  %6.0f wb/s(window)  wps=%s err=%s load=%s" % (
                    r + 1, g.name, us, (a1 - a0) / 6, kv["wps"], kv["errors"], la), flush=True)
    finally:
        for g in gws: g.stop()
    for g in gws:
        print("median %-8s %7.1f us/wb  (%s)" % (g.name, statistics.median(res[g.name]), " ".join("%.1f" % x for x in res[g.name])))
    if len(gws) == 2:
        a, b = gws
        rs = [y / x for x, y in zip(res[a.name], res[b.name])]
        print("ratio %s/%s per round: %s median %.3f" % (b.name, a.name, " ".join("%.3f" % x for x in rs), statistics.median(rs)))
if __name__ == "__main__":
    main()
