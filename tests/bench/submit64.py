"""One Submit run at 64 streams (wgload -c 4 -s 16, no warm-up) against a running dev stack,
for the tools that measure the gateway around it (stack_ab.py, cpu_breakdown.py). Numbers come
from the middle of segment A, above what tests use, kept per stack in DIR/stack-ab-next so that
successive runs never repeat one. WGLOAD (default WAYGATE_BUILD/tests/bench/wgload) drives it."""
import os, re, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
from waygate_proto import read_env  # noqa: E402

BUILD = os.path.abspath(os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build")))
WGLOAD = os.environ.get("WGLOAD", os.path.join(BUILD, "tests", "bench", "wgload"))


def gateway_pid(d):
    return int(open(os.path.join(d, "waygated.pid")).read().strip())


def run(d, secs, settle=0.3):
    """Runs wgload for secs seconds against stack d; returns its RESULT line as a dict. The
    caller starts what it measures before and stops it after; settle seconds pass after the
    run (the last answers written) before this returns."""
    env = read_env(os.path.join(d, "env"))
    m = re.fullmatch(r"([A-Z]*):(\d+)-(\d+)", env["WAYGATE_SEGMENT_A"])
    lo, hi = int(m.group(2)), int(m.group(3))
    nf = os.path.join(d, "stack-ab-next")
    nxt = int(open(nf).read()) if os.path.exists(nf) else lo + (hi - lo) * 3 // 4
    out = subprocess.run([WGLOAD, "--addr", env["WAYGATE_ADDR"], "--ca", env["WAYGATE_CA"],
                          "--cert", env["WAYGATE_P_courier_a_CERT"],
                          "--key", env["WAYGATE_P_courier_a_KEY"],
                          "--segment", env["WAYGATE_SEGMENT_A"], "-c", "4", "-s", "16",
                          "-d", str(secs), "-w", "0", "--first", str(nxt)],
                         capture_output=True, text=True).stdout
    time.sleep(settle)
    res = [l for l in out.splitlines() if l.startswith("RESULT ")]
    if not res:
        sys.exit("wgload gave no result for %s: %s" % (d, out[-800:]))
    kv = dict(p.split("=", 1) for p in res[-1].split()[1:])
    open(nf, "w").write(kv["next"])
    return kv
