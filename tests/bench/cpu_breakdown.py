#!/usr/bin/python3
"""cpu_breakdown.py DIR [SECONDS]: where the gateway's CPU goes per accepted waybill, Submit at
64 streams (wgload -c 4 -s 16), by part of the work: TLS, HTTP/2, protobuf, identity and policy,
validation, sealing (split into its parts), the store and libpq, logging, the event loop.

DIR is a running dev stack whose gateway does not forward ([forward] endpoint commented out, the
gateway restarted: forwarding would add its own work). For SECONDS (default 10) wgload runs and
`perf record --call-graph dwarf` samples the gateway (FREQ Hz, default 1999); the gateway's CPU
time over the same window is read from /proc (utime + stime, all its threads). Each sample is
given to the innermost frame of its stack that names a part (RULES below, first match from the
leaf up: a malloc called by the sealing code counts as sealing, the sealing code called from
nghttp2's receive callback counts as sealing too); the samples of a part, as a share of all of
them, times the gateway's CPU per waybill, are that part's microseconds per waybill. Kernel
samples are shown apart in the same row (system calls made by that part, and what the kernel
does on the other side of a loopback socket inside them). perf's own sampling costs the
gateway a few per cent, which the total includes. A tool, not a test. Needs perf and a build
(WAYGATE_BUILD, default ./build: tests/bench/wgload, as submit64.py says)."""
import collections, os, re, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import submit64  # noqa: E402
from forward_bench import cpu_ticks  # noqa: E402

FREQ = os.environ.get("FREQ", "1999")

# (part, pattern over a frame's symbol): the first part whose pattern matches a frame, walking
# from the sample's leaf towards the loop, takes the sample. Order matters only within one frame.
RULES = [
    ("sealing: blind indexes", r"^gw_crypto_blind_index"),
    ("sealing: content MAC", r"^(gw_crypto_content_mac|content_digest)"),
    ("sealing: data key and its wrap", r"^(gw_crypto_dek_new|gw_keyring_wrap|file_wrap|next_pub)"),
    ("sealing: the fields' seal (AEAD)", r"^(gw_crypto_seal_into|gcm_seal|seal_together)"),
    ("sealing: encoding, AAD, the rest", r"^(gw_seal_|gw_crypto_items_encode|fields_aad|gcm_aad)"),
    ("validation", r"^(gw_waybill_validate|gw_idcard|gw_phone|gw_waybillno|gw_text_check|"
                   r"gw_utf8_|party_check|gw_api_waybill_from_pb|party_from_pb)"),
    ("protobuf: wire check, unpack, pack", r"^(gw_call_unpack|gw_wire|walk$|protobuf_c_|"
                                           r"gw_call_pack|.*__pack$|.*__unpack$)"),
    ("identity and policy", r"^(gw_call_open|gw_call_identified|identify|cache_get|gw_policy_|"
                            r"gw_identity_|gw_api_auth)"),
    ("logging and metrics", r"^(gw_log|gw_metric|log_)"),
    ("store: statement, results, libpq", r"^(gw_store_|gw_db_|store_stage|group_|item_resolve|"
                                         r"item_outcome|on_flush|on_read|PQ|pq)"),
    ("TLS (OpenSSL, the sockets)", r"^(gw_tls_|SSL_|ssl3_|tls1?3?_|BIO_)"),
    ("HTTP/2 and gRPC framing", r"^(gw_h2|nghttp2_|on_frame_|on_stream_|on_begin_headers|"
                                r"on_header|on_data_chunk|stream_free|gw_grpc_|gw_call_send|"
                                r"finish$|data_read_cb)"),
    ("event loop", r"^(event_|evbuffer_|gw_daemon_main|epoll)"),
]
COMPILED = [(p, re.compile(rx)) for p, rx in RULES]


def samples(script):
    """Yields each sample's frames, leaf first, as (symbol, dso)."""
    cur = None
    for line in script.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif not line[0].isspace():
            cur = []
        elif cur is not None:
            m = re.match(r"\s+\S+ (.*?) \((.*)\)$", line)
            if m:
                cur.append((re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)),
                            os.path.basename(m.group(2))))
    if cur:
        yield cur


def part_of(frames):
    for sym, _ in frames:
        for part, rx in COMPILED:
            if rx.match(sym):
                return part
    return "other"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    secs = sys.argv[2] if len(sys.argv) > 2 else "10"
    pid = submit64.gateway_pid(d)
    pidfile = os.path.join(d, "waygated.pid")
    tmp = tempfile.mkdtemp(prefix="cpu-breakdown-")
    data = os.path.join(tmp, "perf.data")
    rec = subprocess.Popen(["perf", "record", "-F", FREQ, "--call-graph", "dwarf,8192", "-p",
                            str(pid), "-o", data], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # perf attached before the first call
    hz = os.sysconf("SC_CLK_TCK")
    t0 = cpu_ticks(pidfile)
    kv = submit64.run(d, secs)
    t1 = cpu_ticks(pidfile)
    rec.send_signal(2)
    rec.wait()
    n = max(1, int(kv["ok_all"]))
    us_wb = (t1 - t0) / hz * 1e6 / n
    script = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True).stdout
    user, kern = collections.Counter(), collections.Counter()
    total = 0
    for frames in samples(script):
        total += 1
        part = part_of(frames)
        if frames[0][1] == "[kernel.kallsyms]":
            kern[part] += 1
        else:
            user[part] += 1
    if total == 0:
        sys.exit("cpu_breakdown: perf recorded no samples")
    print("gateway CPU: %.1f us per accepted waybill (%d waybills, %s waybills/s, p99 %s ms); "
          "%d samples at %s Hz" % (us_wb, n, kv["wps"], kv["p99_ms"], total, FREQ))
    print("| part | us/wb | of which in the kernel | share |")
    print("|---|---:|---:|---:|")
    parts = [p for p, _ in RULES] + ["other"]
    for part in sorted(parts, key=lambda p: -(user[p] + kern[p])):
        s = user[part] + kern[part]
        if s:
            print("| %s | %.2f | %.2f | %.1f %% |" % (part, s / total * us_wb,
                                                     kern[part] / total * us_wb,
                                                     100.0 * s / total))
    print("| **total** | **%.2f** | %.2f | 100 %% |" % (us_wb, sum(kern.values()) / total * us_wb))
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)


main()
