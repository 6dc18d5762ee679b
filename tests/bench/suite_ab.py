"""suite_ab.py [ROUNDS] [--keyring both|split] [--dir DIR]: Submit at 64 streams under the sm suite
and under aes, each against the one-row pgbench baseline (a1) on the SAME database, in the same run
(issue 11).

One dev stack, one PostgreSQL, one database, one keyring holding both suites (`waygatectl keys
add-suite --suite sm`), and two gateways of the same binary beside the stack's own: one with
`[crypto] suite = aes`, one with `suite = sm`, each on its own server and metrics ports, forwarding
off, an audit chain of its own (as cpu_ab.py runs gateways on one stack). The stack's own gateway
is restarted with forwarding off too (idle: nothing claims the new rows and sends them to the
dev stack's Python sink on the same CPUs).

Sequence: a1, then per round the two s64 figures (aes first in odd rounds, sm first in even
ones) and a1 again, so that every s64 has an a1 right before and right after its pair; each s64
is reported against the mean of those two a1 figures, plus sm/aes of the same round. a1 is
tests/bench/run.sh --baseline-only on this stack (its a1: pgbench, 16 clients, one row per
transaction into a table LIKE the gateway's `waybill`; run.sh also measures a2 then, unused here).
s64 is `wgload -c 4 -s 16` for DUR s after a 1 s warm-up, against an emptied waybill table and
after a CHECKPOINT (as run.sh's s64). The gateway's CPU per waybill is `perf stat -e task-clock`
on its process over a window inside the run (from 2 s in to 1 s before the end) divided by the
waybills it accepted in that window (waygate_waybills_accepted_total before and after; without
perf, utime+stime from /proc over the same window).

After each s64 the rows it stored are counted by the algorithm byte of their data key
(get_byte(dek_wrapped, 1): 1 aes, 2 sm) and of its fields (fields_ct, stored format version 3;
sender_name_ct in a row of version 1 or 2): every row must be of the suite that gateway was
configured with, else the run stops. Prints every round, the medians
(a ratio's median is the median of the per-round ratios), the load average before and after
each figure, and whether sm's s64/a1 median reaches the issue's 1.2x.

--keyring split gives the sm gateway a keyring of its own with only the sm suite (`keys init
--suite sm`) and leaves the stack's aes-only keyring to the aes gateway: each then runs as a
single-suite deployment does, without the per-number locks and the other suite's blind indexes a
two-suite keyring costs every Submit (docs/operations.md, moving records to another suite).

--dir DIR runs on an existing dev stack instead of a throw-away one, and changes it: its
waygated.conf's [forward] endpoint is commented out, and in the default mode its keyring gains the
sm suite (split needs a keyring without sm: use a fresh stack).

Environment: BENCH_DURATION (s per figure, default 10), WAYGATE_BUILD (default ./build),
SUITE_AB_KEEP=1 keeps the logs and the throw-away stack's directory (stopped) (their directory is printed).
A tool, not a test. Invariants: the gateways it starts and (without --dir) the stack are stopped
on every exit path; it never writes a document."""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import waygate_proto  # noqa: E402

BUILD = os.path.abspath(os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build")))
WGLOAD = os.environ.get("WGLOAD", os.path.join(BUILD, "tests", "bench", "wgload"))
CTL = os.path.join(BUILD, "waygatectl")
PGBIN = os.environ.get("WAYGATE_PGBIN", "/usr/lib/postgresql/15/bin")
SUITE_BYTE = {"aes": 1, "sm": 2}


def say(msg):
    print("suite_ab: " + msg, file=sys.stderr, flush=True)


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env=None, check=True):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit("suite_ab: %s failed (exit %d):\n%s%s" % (" ".join(cmd[:3]), p.returncode,
                                                             p.stdout[-2000:], p.stderr[-2000:]))
    return p


def forwarding_off(path):
    """Comments [forward] endpoint out (as suite_bench.sh and run.sh did); True if it changed."""
    text = open(path).read()
    new = re.sub(r"(?m)^(endpoint\s*=)", r"#bench-off# \1", text)
    open(path, "w").write(new)
    return new != text


def gateway_config(d, suite, keyring, port, mport):
    """DIR/ab-SUITE.conf: the stack's waygated.conf with its own ports, suite and keyring."""
    out, sec = [], ""
    for line in open(os.path.join(d, "waygated.conf")).read().splitlines():
        st = line.strip()
        if st.startswith("["):
            sec = st
        elif re.match(r"listen\s*=", st):
            line = "listen = 127.0.0.1:%d" % (port if sec == "[server]" else mport)
        elif sec == "[forward]" and re.match(r"endpoint\s*=", st):
            line = "# " + line
        elif sec == "[crypto]" and re.match(r"suite\s*=", st):
            line = "suite = " + suite
        elif sec == "[keys]" and re.match(r"keyring\s*=", st):
            line = "keyring = " + keyring
        out.append(line)
    text = "\n".join(out) + "\n\n[audit]\nchain = ab-%s-%d\n" % (suite, port)
    if not re.search(r"(?m)^\s*suite\s*=\s*%s\s*$" % suite, text):
        sys.exit("suite_ab: the stack's waygated.conf has no [crypto] suite line to set")
    p = os.path.join(d, "ab-%s.conf" % suite)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, 0o600)
    return p


class Gateway:
    def __init__(self, env, d, suite, keyring):
        self.suite = suite
        self.port, self.mport = free_port(), free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.log = open(os.path.join(d, "ab-%s.log" % suite), "ab")
        conf = gateway_config(d, suite, keyring, self.port, self.mport)
        self.proc = subprocess.Popen([os.path.join(BUILD, "waygated"), "-c", conf],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            try:
                ch = waygate_proto.channel(self.addr, env["WAYGATE_CA"], env["WAYGATE_P_backend_CERT"],
                                           env["WAYGATE_P_backend_KEY"])
                ok = waygate_proto.health_check(ch, timeout=2) == "SERVING"
                ch.close()
                if ok:
                    break
            except Exception:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit("suite_ab: the %s gateway did not become SERVING (log: %s)" %
                         (suite, os.path.join(d, "ab-%s.log" % suite)))
            time.sleep(0.25)

    def accepted(self):
        t = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.mport, timeout=5).read().decode()
        return float(re.search(r"^waygate_waybills_accepted_total (\S+)", t, re.M).group(1))

    def cpu_ticks(self):
        f = open("/proc/%d/stat" % self.proc.pid).read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bench:
    def __init__(self, d, env, dur, work):
        self.d, self.env, self.dur, self.work = d, env, dur, work
        self.owner = env["WAYGATE_PGURI_OWNER"]
        self.admin = re.sub(r"([?&])user=[^&]*", r"\1user=postgres", self.owner)
        m = re.fullmatch(r"([A-Z]*):(\d+)-(\d+)", env["WAYGATE_SEGMENT_A"])
        lo, self.hi = int(m.group(2)), int(m.group(3))
        self.nf = os.path.join(d, "bench-next")  # shared with run.sh: never resubmit a number
        self.next = int(open(self.nf).read()) if os.path.exists(self.nf) else lo + (self.hi - lo) // 2
        self.perf = shutil.which("perf") is not None
        self.n_a1 = 0

    def psql(self, uri, *sql):
        cmd = [os.path.join(PGBIN, "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", uri]
        for s in sql:
            cmd += ["-c", s]
        return run(cmd).stdout.strip()

    def a1(self):
        """One a1 figure (rows/s) from run.sh --baseline-only on this stack."""
        self.n_a1 += 1
        env = dict(os.environ, BENCH_DURATION=str(self.dur), BENCH_REPEAT="1")
        p = run([os.path.join(ROOT, "tests", "bench", "run.sh"), "--baseline-only", self.d], env=env)
        with open(os.path.join(self.work, "a1-%d.log" % self.n_a1), "w") as f:
            f.write(p.stderr)
        m = re.findall(r"^bench: a1 one row/txn: +([0-9.]+) rows/s", p.stderr, re.M)
        if not m:
            sys.exit("suite_ab: run.sh printed no a1 figure:\n" + p.stderr[-2000:])
        return float(m[-1])

    def reset(self):
        """Empties the gateway's waybill tables (as run.sh's BENCH_RESET) and checkpoints."""
        tables = [t for t in ("waybill", "phone_owner", "phone_sender")
                  if self.psql(self.owner, "SELECT to_regclass('%s') IS NOT NULL" % t) == "t"]
        self.psql(self.owner, "SET lock_timeout = '10s'", "TRUNCATE %s CASCADE" % ", ".join(tables))
        run([os.path.join(PGBIN, "psql"), "-X", "-q", "-d", self.admin, "-c", "CHECKPOINT"], check=False)

    def rows_by_suite(self):
        """{(dek algorithm byte, fields' algorithm byte): rows} of the waybill table (the fields:
        fields_ct, or sender_name_ct in a row of version 1 or 2)."""
        out = self.psql(self.owner, "SELECT get_byte(dek_wrapped, 1), "
                                    "get_byte(coalesce(fields_ct, sender_name_ct), 1), count(*) "
                                    "FROM waybill GROUP BY 1, 2")
        res = {}
        for line in out.splitlines():
            a, b, n = line.split("|")
            res[(int(a), int(b))] = int(n)
        return res

    def s64(self, g):
        """Submit at 64 streams on gateway g -> dict(wps, err, us, rows)."""
        self.reset()
        w = subprocess.Popen([WGLOAD, "--addr", g.addr, "-c", "4", "-s", "16", "-d", str(self.dur), "-w", "1",
                              "--first", str(self.next)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        win = max(1.0, self.dur - 2.0)  # from 2 s in (1 s warm-up + 1 s) to 1 s before the end
        time.sleep(2)
        a0 = g.accepted()
        if self.perf:
            ps = subprocess.run(["perf", "stat", "-x", ",", "-e", "task-clock", "-p", str(g.proc.pid), "--",
                                 "sleep", "%.1f" % win], capture_output=True, text=True)
            lines = [ln for ln in ps.stderr.splitlines() if "task-clock" in ln]
            try:
                msec = float(lines[0].split(",")[0])
            except (IndexError, ValueError):
                msec = None
        else:
            msec = None
        if msec is None:
            t0 = g.cpu_ticks()
            time.sleep(win)
            msec = (g.cpu_ticks() - t0) * 1000.0 / os.sysconf("SC_CLK_TCK")
        a1 = g.accepted()
        out, _ = w.communicate()
        with open(os.path.join(self.work, "wgload.log"), "a") as f:
            f.write("== %s\n%s\n" % (g.suite, out))
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if not line:
            sys.exit("suite_ab: wgload gave no result: " + out[-800:])
        kv = dict(p.split("=", 1) for p in line[-1].split()[1:])
        self.next = int(kv["next"])
        with open(self.nf, "w") as f:
            f.write(str(self.next))
        rows = self.rows_by_suite()
        want = SUITE_BYTE[g.suite]
        wrong = {k: n for k, n in rows.items() if k != (want, want)}
        stored = rows.get((want, want), 0)
        if wrong or stored == 0:
            sys.exit("suite_ab: the %s gateway's rows are not all %s (algorithm bytes (dek, field): rows): %s"
                     % (g.suite, g.suite, rows))
        return {"wps": float(kv["wps"]), "err": int(kv["errors"]), "rows": stored,
                "us": msec * 1000.0 / max(1.0, a1 - a0)}


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else float("nan")


def on_signal(signum, _frame):
    raise SystemExit("suite_ab: signal %d: stopping" % signum)


def main():
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rounds", nargs="?", type=int, default=3)
    ap.add_argument("--dir", help="an existing dev stack (default: a throw-away one)")
    ap.add_argument("--keyring", choices=("both", "split"), default="both")
    a = ap.parse_args()
    if a.rounds < 1:
        sys.exit("suite_ab: ROUNDS must be a positive integer")
    dur = int(os.environ.get("BENCH_DURATION", "10"))
    if dur < 4:
        sys.exit("suite_ab: BENCH_DURATION must be at least 4 s (warm-up, CPU window)")
    for p in (WGLOAD, CTL, os.path.join(BUILD, "waygated")):
        if not os.access(p, os.X_OK):
            sys.exit("suite_ab: %s missing (build first; WAYGATE_BUILD=%s)" % (p, BUILD))
    keep = bool(os.environ.get("SUITE_AB_KEEP"))
    work = tempfile.mkdtemp(prefix="wgsuiteab.")
    own = None
    d = a.dir
    denv = dict(os.environ, WAYGATE_BUILD=BUILD)
    gws = []
    load_start = load()
    try:
        if not d:
            own = d = tempfile.mkdtemp(prefix="wgsuiteab-stack.")
            say("starting a dev stack under %s" % d)
            run([os.path.join(ROOT, "deploy", "devstack"), "up", d], env=denv)
        d = os.path.abspath(d)
        if forwarding_off(os.path.join(d, "waygated.conf")):
            say("restarting the stack's gateway with forwarding off")
            run([os.path.join(ROOT, "deploy", "devstack"), "down", d], env=denv)
            run([os.path.join(ROOT, "deploy", "devstack"), "up", d], env=denv)
        env = waygate_proto.read_env(os.path.join(d, "env"))
        for k, v in env.items():
            os.environ.setdefault(k, v)
        keyring = os.path.join(d, "keyring")
        status = run([CTL, "keys", "status", "--keyring", keyring]).stdout
        keyrings = {"aes": keyring, "sm": keyring}
        if a.keyring == "both":
            if re.search(r"(?m)^suite sm: no keys", status) or not re.search(r"(?m)^suite sm\b", status):
                say("adding the sm suite to %s (waygatectl keys add-suite)" % keyring)
                run([CTL, "keys", "add-suite", "--suite", "sm", "--keyring", keyring])
        else:
            if not re.search(r"(?m)^suite sm: no keys", status):
                sys.exit("suite_ab: --keyring split needs a stack whose keyring has no sm keys (%s has)" % keyring)
            keyrings["sm"] = os.path.join(d, "keyring-sm")
            if not os.path.exists(keyrings["sm"]):
                old = os.umask(0o077)
                run([CTL, "keys", "init", "--suite", "sm", "--keyring", keyrings["sm"]])
                os.umask(old)
        with open(os.path.join(work, "keys-status.txt"), "w") as f:
            f.write(run([CTL, "keys", "status", "--keyring", keyring]).stdout)
        b = Bench(d, env, dur, work)
        say("starting the aes and sm gateways (%s keyring)" % ("one two-suite" if a.keyring == "both"
                                                              else "a single-suite"))
        for s in ("aes", "sm"):
            gws.append(Gateway(env, d, s, keyrings[s]))  # appended one by one: stopped on exit
        print("suite_ab: %d rounds, %d s per figure, keyring %s, build %s, %d CPUs, load at the start %s"
              % (a.rounds, dur, a.keyring, BUILD, os.cpu_count(), load_start), flush=True)
        print("| round | first | a1 before | aes s64 wb/s | sm s64 wb/s | a1 after | aes s64/a1 | sm s64/a1 "
              "| sm/aes | aes gw us/wb | sm gw us/wb | rows aes/sm | errors aes/sm | load |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
        res = {k: [] for k in ("a1", "aes", "sm", "raes", "rsm", "smaes", "uaes", "usm")}
        a1_prev = b.a1()
        res["a1"].append(a1_prev)
        say("a1 %.0f rows/s (load %s)" % (a1_prev, load()))
        for r in range(1, a.rounds + 1):
            order = gws if r % 2 else gws[::-1]
            fig = {}
            for g in order:
                fig[g.suite] = b.s64(g)
                say("round %d %s s64: %.1f wb/s, %.1f us/wb, %d rows, %d errors (load %s)"
                    % (r, g.suite, fig[g.suite]["wps"], fig[g.suite]["us"], fig[g.suite]["rows"],
                       fig[g.suite]["err"], load()))
            a1_next = b.a1()
            say("a1 %.0f rows/s (load %s)" % (a1_next, load()))
            base = (a1_prev + a1_next) / 2
            ra, rs = fig["aes"]["wps"] / base, fig["sm"]["wps"] / base
            sa = fig["sm"]["wps"] / fig["aes"]["wps"]
            for k, v in (("a1", a1_next), ("aes", fig["aes"]["wps"]), ("sm", fig["sm"]["wps"]), ("raes", ra),
                         ("rsm", rs), ("smaes", sa), ("uaes", fig["aes"]["us"]), ("usm", fig["sm"]["us"])):
                res[k].append(v)
            print("| %d | %s | %.0f | %.1f | %.1f | %.0f | %.2f | %.2f | %.2f | %.1f | %.1f | %d/%d | %d/%d | %s |"
                  % (r, order[0].suite, a1_prev, fig["aes"]["wps"], fig["sm"]["wps"], a1_next, ra, rs, sa,
                     fig["aes"]["us"], fig["sm"]["us"], fig["aes"]["rows"], fig["sm"]["rows"],
                     fig["aes"]["err"], fig["sm"]["err"], load()), flush=True)
            a1_prev = a1_next
        print("| median | | %.0f (all a1) | %.1f | %.1f | | %.2f | %.2f | %.2f | %.1f | %.1f | | | |"
              % (med(res["a1"]), med(res["aes"]), med(res["sm"]), med(res["raes"]), med(res["rsm"]),
                 med(res["smaes"]), med(res["uaes"]), med(res["usm"])))
        print()
        print("load average at the start: %s; at the end: %s" % (load_start, load()))
        print("rows checked after every s64: each gateway stored only rows of its suite (algorithm byte "
              "of dek_wrapped and fields_ct: aes 1, sm 2)")
        rsm = med(res["rsm"])
        print("target (issue 11: Submit under sm >= 1.2x a1): sm s64/a1 median %.2fx (per round %s): %s in this run"
              % (rsm, " ".join("%.2f" % x for x in res["rsm"]), "met" if rsm >= 1.2 else "NOT met"))
    finally:
        for g in gws:
            g.stop()
        if own:
            subprocess.run([os.path.join(ROOT, "deploy", "devstack"), "down", own], env=denv,
                           capture_output=True)
            if not keep:
                shutil.rmtree(own, ignore_errors=True)
        if keep:
            say("kept: logs in %s%s" % (work, ", stack in %s" % own if own else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
