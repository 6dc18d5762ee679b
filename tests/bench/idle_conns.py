#!/usr/bin/python3
"""idle_conns.py DIR [N [WAYGATED]]: what an idle mTLS HTTP/2 connection costs the gateway (issue
10: 10 000 idle connections, at most 32 KiB each; about 62 KiB at first), on the dev stack DIR.

Starts a gateway of its own (WAYGATED, default $WAYGATE_BUILD/waygated or build/waygated) on DIR's
database and keys with DIR/waygated.conf, the caps of one address raised above N and long timeouts
(the per-address admission of finding 4 is tested elsewhere). The client (asyncio, this process)
opens WARM connections, then the rest up to N (default 10 000); each completes the TLS handshake
as courier_a, sends the HTTP/2 preface and SETTINGS and waits for the gateway's SETTINGS and the
answer to a PING: authenticated, its session idle. Prints the growth of the gateway's VmRSS from
WARM to N connections divided by the connections added, the malloc'd bytes (glibc malloc_stats via
gdb, when gdb is there: the C library's blocks only, not nghttp2's large blocks, which are page
mappings of their own, gateway/transport/h2mem.h) and a last line "RESULT key=value ...". The
regression guard is test_h2's test_idle_session_memory, not this. No assertion: a bench (10 000
handshakes take 5 to 7 minutes of this shared 2-CPU machine, mostly the Python client's).
Needs RLIMIT_NOFILE above N for both processes. Exit 0, or 2 on a set-up error."""

import asyncio
import os
import re
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import waygate_proto  # noqa: E402

WARM = 1_000
PARALLEL = 64  # handshakes in flight at once
# A connection gives back its session's zero pages after a second without input (conn.c,
# QUIET_MS): both measurements wait longer than that, so the last connections opened count as
# idle ones, not as ones still in their handshake's aftermath.
SETTLE_S = 2.5
SETTINGS, PING = 4, 6
ACK = 0x1
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def config(directory, port, n):
    """DIR's waygated.conf on another port, no metrics listener, caps for one address above n."""
    caps = {"max_connections": n + 500, "max_preauth_connections": n + 400,
            "max_preauth_per_address": n + 400, "accept_rate_per_address": 1_000_000,
            "handshake_timeout_ms": 120_000, "preauth_timeout_ms": 120_000,
            "idle_timeout_ms": 3_600_000}
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
        if section == "[server]" and st.split("=")[0].strip() in caps:
            continue
        out.append(line)
        if st == "[server]":
            out.extend("%s = %d" % kv for kv in caps.items())
    return "\n".join(out) + "\n[audit]\nchain = bench-idle-%d\n" % port


async def read_frame(r):
    head = await r.readexactly(9)
    return head[3], head[4], await r.readexactly(int.from_bytes(head[:3], "big"))


async def open_idle(port, ctx):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    w.write(PREFACE + frame(SETTINGS, 0, 0) + frame(PING, 0, 0, b"idle-001"))
    settings_seen = ping_seen = False
    while not (settings_seen and ping_seen):
        ftype, flags, _ = await read_frame(r)
        if ftype == SETTINGS and not flags & ACK:
            settings_seen = True
            w.write(frame(SETTINGS, ACK, 0))
        elif ftype == PING and flags & ACK:
            ping_seen = True
    await w.drain()
    return r, w


async def open_many(port, ctx, n, held):
    sem = asyncio.Semaphore(PARALLEL)

    async def one():
        async with sem:
            held.append(await asyncio.wait_for(open_idle(port, ctx), 120))

    await asyncio.gather(*(one() for _ in range(n)))


def vmrss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sockets(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def in_use(pid, log_path):
    """glibc's 'in use bytes' total, asked through gdb (None without gdb)."""
    with open(log_path, "rb") as f:
        f.seek(0, 2)
        start = f.tell()
    try:
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (void)malloc_stats()"],
                       capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    time.sleep(0.5)
    with open(log_path, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    m = re.findall(r"Total \(incl. mmap\):\s*system bytes\s*=\s*\d+\s*in use bytes\s*=\s*(\d+)",
                   text)
    return int(m[-1]) if m else None


async def scenario(pid, port, ctx, n, log_path):
    held = []
    try:
        await open_many(port, ctx, WARM, held)
        await asyncio.sleep(SETTLE_S)
        base = (vmrss(pid), sockets(pid), in_use(pid, log_path))
        await open_many(port, ctx, n - WARM, held)
        await asyncio.sleep(SETTLE_S)
        end = (vmrss(pid), sockets(pid), in_use(pid, log_path))
        return base, end
    finally:
        for _, w in held:
            w.transport.abort()


def main():
    if len(sys.argv) not in (2, 3, 4):
        sys.exit(__doc__)
    d = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) >= 3 else 10_000
    build = os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build"))
    binary = sys.argv[3] if len(sys.argv) == 4 else os.path.join(build, "waygated")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n + 1000:
        print("idle_conns: RLIMIT_NOFILE is below %d" % (n + 1000), file=sys.stderr)
        return 2
    env = waygate_proto.read_env(os.path.join(d, "env"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(d, "bench-idle.conf")
    log_path = os.path.join(d, "bench-idle.log")
    with open(conf, "w") as f:
        f.write(config(d, port, n))
    log = open(log_path, "ab")
    proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log)
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(env["WAYGATE_CA"])
        ctx.set_alpn_protocols(["h2"])
        ctx.load_cert_chain(env["WAYGATE_P_courier_a_CERT"], env["WAYGATE_P_courier_a_KEY"])
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("idle_conns: the gateway did not start (see %s)" % log_path,
                          file=sys.stderr)
                    return 2
                time.sleep(0.2)
        (r0, s0, u0), (r1, s1, u1) = asyncio.run(scenario(proc.pid, port, ctx, n, log_path))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    per = (r1 - r0) / (n - WARM)
    held = s1 - s0
    print("%d idle mTLS HTTP/2 connections (%d added after %d): gateway VmRSS %.1f -> %.1f MiB, "
          "%.1f KiB each (the issue's bound: 32 KiB); sockets held %+d" %
          (n, n - WARM, WARM, r0 / 2**20, r1 / 2**20, per / 1024, held))
    if u0 is not None and u1 is not None:
        print("malloc'd (glibc in use): %.1f KiB each" % ((u1 - u0) / (n - WARM) / 1024))
    print("RESULT n=%d rss_per_conn_kib=%.1f sockets_added=%d" % (n, per / 1024, held))
    return 0


if __name__ == "__main__":
    sys.exit(main())
