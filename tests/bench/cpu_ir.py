#!/usr/bin/python3
"""cpu_ir.py DIR NAME=BINARY...: the gateway's instructions and system calls per accepted waybill,
Submit at 64 streams (wgload -c 4 -s 16 -n N), for several waygated builds: a deterministic
measure (instructions, not time) for a machine shared with other work, where cpu_ab.py's
task-clock is noisy. Each binary runs as a gateway of its own on the dev stack DIR (cpu_ab.py's
config: its database and keys, forwarding off), twice:
  1. under `valgrind --tool=callgrind --instr-atstart=no`: WARM Submits (default 300) not
     counted, then collection on (callgrind_control -i on) for N Submits (default 3000) with a
     fixed --seed, off again; Ir / waybills accepted in that window (the gateway's
     waygate_waybills_accepted_total before and after). The profile is PREFIX-NAME.callgrind
     (PREFIX: env OUT, default ./cpu-ir): `callgrind_annotate --inclusive=yes` reads it. Also
     printed without SSL_do_handshake's inclusive cost (wgload's 4 connections are made inside
     the window; a retried load makes 8): steady-state connections do no handshakes.
  2. natively under `strace -f -c` attached after the same warm-up for N Submits: system calls per
     waybill, by name.
Valgrind runs the gateway ~50x slower, so calls per read and per group commit differ from a
native run: compare builds measured by this script, not with cpu_ab.py's times. A tool, not a
test. Needs valgrind, strace, a build (WAYGATE_BUILD, default ./build: tests/bench/wgload)."""
import os, re, signal, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_ab
from cpu_ab import waygate_proto

N = int(os.environ.get("N", "3000"))
WARM = int(os.environ.get("WARM", "300"))
OUT = os.path.abspath(os.environ.get("OUT", "cpu-ir"))

class Gateway(cpu_ab.GW):
    """cpu_ab's gateway, started under a wrapper command (valgrind, or nothing)."""
    def __init__(s, env, d, name, binary, wrap):
        s.name = name; s.port = cpu_ab.free_port(); s.mport = cpu_ab.free_port()
        s.addr = "127.0.0.1:%d" % s.port
        s.log = open(os.path.join(d, "ir-%s.log" % name), "ab")
        s.proc = subprocess.Popen(wrap + [binary, "-c", cpu_ab.config(d, s.port, s.mport, name)],
                                  stdin=subprocess.DEVNULL, stdout=s.log, stderr=s.log)
        dl = time.monotonic() + 300
        while True:
            try:
                ch = waygate_proto.channel(s.addr, env["WAYGATE_CA"], env["WAYGATE_P_backend_CERT"],
                                           env["WAYGATE_P_backend_KEY"])
                ok = waygate_proto.health_check(ch, timeout=10) == "SERVING"; ch.close()
                if ok: break
            except Exception: pass
            if s.proc.poll() is not None or time.monotonic() > dl:
                s.stop(); sys.exit("cpu_ir: %s did not become SERVING" % name)
            time.sleep(1)

def load(g, first, n, tries=3):
    r = subprocess.run([cpu_ab.WGLOAD, "--addr", g.addr, "-c", "4", "-s", "16", "-n", str(n),
                        "--first", str(first), "--seed", "1"], capture_output=True, text=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    if not line and tries > 1 and "no load was sent" in r.stderr + r.stdout:
        time.sleep(2)  # a connection not up in time under valgrind: nothing was sent, try again
        return load(g, first, n, tries - 1)
    if r.returncode != 0 or not line:
        sys.exit("cpu_ir: wgload failed: " + (r.stdout + r.stderr)[-800:])
    return int(dict(p.split("=", 1) for p in line[-1].split()[1:])["next"])

def main():
    d = sys.argv[1]
    env = waygate_proto.read_env(os.path.join(d, "env"))
    for k, v in env.items(): os.environ.setdefault(k, v)
    m = re.fullmatch(r"([A-Z]*):(\d+)-(\d+)", env["WAYGATE_SEGMENT_A"])
    lo, hi = int(m.group(2)), int(m.group(3))
    nf = os.path.join(d, "ab-next")
    nxt = int(open(nf).read()) if os.path.exists(nf) else lo + (hi - lo) // 2
    for name, binary in (a.split("=", 1) for a in sys.argv[2:]):
        cg = "%s-%s.callgrind" % (OUT, name)
        g = Gateway(env, d, name, binary, ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                           "--callgrind-out-file=" + cg])
        try:
            nxt = load(g, nxt, WARM)
            subprocess.run(["callgrind_control", "-i", "on", str(g.proc.pid)], check=True, capture_output=True)
            a0 = g.accepted(); nxt = load(g, nxt, N); a1 = g.accepted()
            subprocess.run(["callgrind_control", "-i", "off", str(g.proc.pid)], check=True, capture_output=True)
        finally:
            g.stop(); open(nf, "w").write(str(nxt))
        ir = 0
        for line in open(cg):
            if line.startswith("totals:") or line.startswith("summary:"):
                ir = int(line.split()[1])
        # the load's own connections' handshakes (wgload connects at start): not per-waybill work
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", cg], capture_output=True, text=True).stdout
        hs = [int(l.split()[0].replace(",", "")) for l in ann.splitlines() if re.search(r":SSL_do_handshake ", l)]
        hs = hs[0] if hs else 0
        wb = max(1, a1 - a0)
        print("%-8s Ir/wb %9.0f, %9.0f without the load's %d-connection TLS handshakes  (Ir %d, %d waybills; %s)" % (
            name, ir / wb, (ir - hs) / wb, 4, ir, a1 - a0, cg), flush=True)
        g = Gateway(env, d, name, binary, [])
        try:
            nxt = load(g, nxt, WARM)
            st = subprocess.Popen(["strace", "-f", "-c", "-o", "%s-%s.strace" % (OUT, name), "-p", str(g.proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            a0 = g.accepted(); nxt = load(g, nxt, N); a1 = g.accepted()
            st.send_signal(signal.SIGINT); st.wait(30)
        finally:
            g.stop(); open(nf, "w").write(str(nxt))
        wb = max(1, a1 - a0)
        rows = []
        for line in open("%s-%s.strace" % (OUT, name)):
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                calls = int(f[3]); rows.append((calls, f[-1]))
        rows.sort(reverse=True)
        print("%-8s syscalls/wb %.2f: %s" % (name, sum(c for c, _ in rows) / wb,
              ", ".join("%s %.2f" % (n, c / wb) for c, n in rows if c / wb >= 0.01)), flush=True)

if __name__ == "__main__":
    main()
