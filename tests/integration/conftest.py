"""Integration-test fixtures: one real dev stack (PostgreSQL + waygated, deploy/devstack) per test
session, started in a fresh temporary directory and torn down at the end, plus helpers to talk
to it with python3-grpcio over mTLS.

Run with /usr/bin/python3 -m pytest tests/integration (Debian's grpcio and protobuf live there).
Environment: WAYGATE_BUILD (default ./build), WAYGATE_KEEP_STACK=1 keeps the temp dir for a look
afterwards (the processes are stopped either way).
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import waygate_proto  # noqa: E402

DEVSTACK = os.path.join(ROOT, "deploy", "devstack")
BUILD = os.path.abspath(os.environ.get("WAYGATE_BUILD", os.path.join(ROOT, "build")))
PGBIN = os.environ.get("WAYGATE_PGBIN", "/usr/lib/postgresql/15/bin")
# The deadline of a call that runs scrypt on the gateway's workers (Login, ChangePassword,
# CreateAccount, also with a wrong password): a guard against a call that hangs, not a bound on
# the machine's speed. A gateway starved of CPU (nice 15 beside busy processes of normal
# priority) took over 10 s, once over 30 s, for one scrypt, and a shorter deadline failed the test
# with DEADLINE_EXCEEDED. Every such call in the suite gets this deadline, and the dev stack's
# [server] max_deadline_ms (240 s, deploy/devstack) is above it, so the gateway does not end the
# call first (it would at its default 60 s).
HASHING_DEADLINE = 180


class Stack:
    """A running dev stack: its directory, its env file as a dict, and ways to reach it."""

    def __init__(self, directory, env):
        self.dir = directory
        self.env = env
        self.addr = env["WAYGATE_ADDR"]
        self.ca = env["WAYGATE_CA"]
        self.pguri = env["WAYGATE_PGURI"]                  # waygatectl's role (waygate_admin)
        self.pguri_gateway = env["WAYGATE_PGURI_GATEWAY"]  # waygated's role (waygate_gateway)
        self.pguri_owner = env["WAYGATE_PGURI_OWNER"]      # the schema's owner (waygate)
        self.log_path = env["WAYGATE_LOG"]
        self.pb = waygate_proto.load()
        self._channels = []
        self._persistent = []
        self._shared = {}  # shared_channel's, dropped by restart_gateway

    def config_for(self, port):
        """The dev stack's waygated.conf for another gateway on 127.0.0.1:port: [server] listen
        moved to that port, and the [metrics] listener left out (its port is the first
        gateway's), and [audit] spool left out (that file holds what the stack's gateway left,
        under its own chain: another gateway sets a spool of its own). Returns the text."""
        with open(os.path.join(self.dir, "waygated.conf")) as f:
            text = f.read()
        out, section = [], ""
        for line in text.splitlines():
            st = line.strip()
            if st.startswith("["):
                section = st
            elif section == "[audit]" and re.match(r"spool\s*=", st):
                continue
            elif re.match(r"listen\s*=", st):
                if section == "[metrics]":
                    continue
                if section == "[server]":
                    line = "listen = 127.0.0.1:%d" % port
            out.append(line)
        return "\n".join(out) + "\n"

    def cert(self, principal):
        """(cert, key) paths of a dev principal: courier_a ... admin, or revoked / rogue."""
        if principal in ("revoked", "rogue"):
            return (self.env["WAYGATE_%s_CERT" % principal.upper()],
                    self.env["WAYGATE_%s_KEY" % principal.upper()])
        return (self.env["WAYGATE_P_%s_CERT" % principal], self.env["WAYGATE_P_%s_KEY" % principal])

    def channel(self, principal="courier_a", ca=None, addr=None, options=(), persistent=False):
        """A new mTLS channel as `principal` (None: no client certificate). Closed when the test
        that opened it ends, or at the session's end when `persistent` (a module's cache)."""
        cert, key = self.cert(principal) if principal else (None, None)
        ch = waygate_proto.channel(addr or self.addr, ca or self.ca, cert, key, options)
        (self._persistent if persistent else self._channels).append(ch)
        return ch

    def shared_channel(self, principal="courier_a", addr=None):
        """One mTLS channel per (address, principal), kept for the session (for modules that make
        many calls: one connection, not one per call). restart_gateway drops them, so that no
        call goes out on a connection to the old process (its first write fails UNAVAILABLE)."""
        key = (addr or self.addr, principal)
        if key not in self._shared:
            self._shared[key] = self.channel(principal, addr=addr, persistent=True)
        return self._shared[key]

    def unary(self, method, request, response_cls, principal="courier_a", timeout=10,
              metadata=None):
        return waygate_proto.unary(self.channel(principal), method, request, response_cls,
                                   timeout=timeout, metadata=metadata)

    def health(self, principal="courier_a", timeout=30, addr=None):
        return waygate_proto.health_check(self.channel(principal, addr=addr), timeout=timeout)

    def devstack(self, cmd):
        r = subprocess.run([DEVSTACK, cmd, self.dir], capture_output=True, text=True,
                           env=dict(os.environ, WAYGATE_BUILD=BUILD))
        assert r.returncode == 0, "devstack %s failed:\n%s%s" % (cmd, r.stdout, r.stderr)
        return r.stdout

    def psql(self, sql, timeout=180, uri=None):
        """Runs SQL with psql against the stack's database, by default as the schema's owner (to
        inspect or tamper: the gateway's and the CLI's roles may not); returns the output lines
        (unaligned, tuples only, fields separated by '|'). The timeout only catches a hang: CREATE
        and DROP DATABASE wait for a checkpoint, which takes tens of seconds on a busy machine."""
        r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-d", uri or self.pguri_owner, "-c", sql],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, "psql failed: %s" % r.stderr
        return r.stdout.splitlines()

    def revoke_audit_insert(self, role):
        """role (a database role name) loses INSERT on audit_record; returns a function that gives
        back its INSERT privileges on audit_record's columns as they were."""
        cols = self.psql("SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM "
                         "pg_attribute WHERE attrelid = 'audit_record'::regclass AND attnum > 0 "
                         "AND NOT attisdropped AND has_column_privilege('%s', attrelid, attnum, "
                         "'INSERT')" % role)[0]
        assert cols, "%s may insert no column of audit_record to begin with" % role
        self.psql("REVOKE INSERT ON audit_record FROM %s" % role)
        return lambda: self.psql("GRANT INSERT (%s) ON audit_record TO %s" % (cols, role))

    @contextlib.contextmanager
    def audit_insert_revoked(self, role):
        """role may not insert audit records inside the block (revoke_audit_insert)."""
        restore = self.revoke_audit_insert(role)
        try:
            yield
        finally:
            restore()

    @contextlib.contextmanager
    def kek_versions_forgotten(self):
        """Inside the block the database knows no KEK version (as the owner: no login role may
        delete one), so that a gateway may load an unrelated keyring (sql/036 refuses a keyring
        whose version N is another key than the database's); afterwards the versions it learnt
        meanwhile are forgotten and the stack's come back as they were."""
        cols = "suite, version, check_value, first_seen, first_seen_by"
        saved = self.psql("SELECT %s FROM kek_version" % cols.replace(
            "check_value", "encode(check_value, 'hex')"))
        self.psql("DELETE FROM kek_version")
        try:
            yield
        finally:
            rows = ", ".join("(%s, %s, decode('%s', 'hex'), '%s', '%s')" % tuple(
                r.split("|", 4)[:4] + [r.split("|", 4)[4].replace("'", "''")]) for r in saved)
            self.psql("DELETE FROM kek_version" +
                      ("; INSERT INTO kek_version (%s) VALUES %s" % (cols, rows) if rows else ""))

    def ctl(self, *args, timeout=120, input=None):
        """Runs build/waygatectl with args (stdin: `input`, else nothing); returns the
        CompletedProcess (text, not checked)."""
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        # as an operator who sourced DIR/env: the CLI signs its audit checkpoints with the keyring
        env = dict(os.environ, WAYGATE_KEYRING=self.env["WAYGATE_KEYRING"])
        return subprocess.run([os.path.join(BUILD, "waygatectl")] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout, env=env, **stdin)

    # --- people: the dev stack's accounts (deploy/devstack-accounts) ---

    def account(self, name):
        """(account name, password, principal whose certificate it logs in over) of a dev stack
        account: clerk_a, clerk_b, cs_a, auditor, secadmin, sysadmin, lawful."""
        return (self.env["WAYGATE_P_%s_ACCOUNT" % name], self.env["WAYGATE_P_%s_PASSWORD" % name],
                self.env["WAYGATE_P_%s_VIA" % name])

    def login_response(self, name, password=None, principal=None, timeout=HASHING_DEADLINE,
                       addr=None):
        """Admin.Login of a dev stack account (or any account, given its password and the
        principal to connect as), on the stack's gateway or the one at addr; returns the
        LoginResponse (raises grpc.RpcError). The password hashing runs at idle priority, so a
        loaded machine can starve it past a gateway's own cap on a call (max_deadline_ms, 60 s
        unless its config says more, as the dev stack's does): a Login the gateway ended
        DEADLINE_EXCEEDED is asked again until timeout seconds have passed since the first."""
        account, pw, via = self.account(name) if password is None else (name, password, None)
        end = time.monotonic() + timeout
        while True:
            try:
                return waygate_proto.unary(
                    self.channel(principal or via or "admin", addr=addr), "/waygate.v1.Admin/Login",
                    self.pb.admin.LoginRequest(account=account, password=pw),
                    self.pb.admin.LoginResponse, timeout=max(end - time.monotonic(), 1))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED or time.monotonic() >= end - 1:
                    raise

    def login(self, name, password=None, principal=None):
        """Logs in (see login_response); returns the call metadata carrying the token."""
        return bearer(self.login_response(name, password, principal).token)

    def unary_as(self, name, method, request, response_cls, timeout=10, metadata=None):
        """Calls method as a dev stack account: over its certificate, with a fresh token."""
        md = self.login(name) + list(metadata or [])
        return self.unary(method, request, response_cls, principal=self.account(name)[2],
                          timeout=timeout, metadata=md)

    def chain(self):
        """The audit chain of the stack's gateway as it runs now: [audit] chain of its
        configuration, else the daemon's default gw-<host name>-<listen port> (daemon.c,
        start_audit: the host name with characters a chain may not hold as '-', at most 40). A
        restart on another port writes another chain. Tests that look for the records this gateway
        just wrote name it exactly: the shared trail holds other gateways' chains of any name."""
        with open(os.path.join(self.dir, "waygated.conf")) as f:
            text = f.read()
        m = re.search(r"(?ms)^\[audit\][^\[]*?^chain\s*=\s*(\S+)", text)
        if m:
            return m.group(1)
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()[:63])
        return "gw-%s-%s" % (host[:40], self.addr.rsplit(":", 1)[1])

    def metric(self, name):
        """The value of the unlabelled sample name on the gateway's GET /metrics (None when the
        gateway shows no such sample)."""
        return scrape_metrics(self.env["WAYGATE_METRICS_ADDR"]).get(name)

    def pool_whole(self, timeout=60):
        """Waits until every connection of the gateway's pool is up, set up (its prepares
        answered) and taking requests; fails the test when that takes over timeout seconds."""
        def whole():
            ready = self.metric("waygate_db_connections_ready")
            return ready is not None and ready == self.metric("waygate_db_pool_size")
        assert wait_for(whole, timeout), \
            "the gateway's database pool did not come back whole"

    def gateway_pid(self):
        with open(os.path.join(self.dir, "waygated.pid")) as f:
            return int(f.read().strip())

    def restart_gateway(self):
        """Stops the gateway if it still runs (SIGTERM; SIGKILL after 60 s) and starts it again
        with `devstack up` (PostgreSQL and the sink keep running). It may take another port when
        the old one is still held (TIME_WAIT): the stack's address follows DIR/env, and
        shared_channel makes new channels."""
        pid = self.gateway_pid()

        def ended():
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                return True
        if not ended():
            os.kill(pid, signal.SIGTERM)
            if not wait_for(ended, 60):
                os.kill(pid, signal.SIGKILL)
                assert wait_for(ended, 30), "the gateway did not end"
        self.devstack("up")
        env = waygate_proto.read_env(os.path.join(self.dir, "env"))
        self.env.update(env)
        self.addr = env["WAYGATE_ADDR"]
        self._shared.clear()

    def log_lines(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()

    def log_records(self):
        """Every log line parsed as JSON (fails the test on a line that is not one object)."""
        out = []
        for i, line in enumerate(self.log_lines(), 1):
            try:
                rec = json.loads(line)
            except ValueError:
                pytest.fail("waygated.log line %d is not JSON: %r" % (i, line[:200]))
            assert isinstance(rec, dict), "waygated.log line %d is not a JSON object" % i
            out.append(rec)
        return out

    def close_channels(self, keep=0):
        """Closes the channels opened after the first `keep` ones."""
        for ch in self._channels[keep:]:
            ch.close()
        self._channels = self._channels[:keep]


def free_port():
    """A TCP port on 127.0.0.1 free when asked."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_text(addr):
    """The body of GET /metrics at addr ("host:port")."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request("GET", "/metrics")
        return c.getresponse().read().decode()
    finally:
        c.close()


def scrape_metrics(addr):
    """The unlabelled samples of GET /metrics at addr ("host:port") as {name: value}."""
    text = metrics_text(addr)
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(?m)^(\w+) (\S+)$", text)}


class ExtraGateway:
    """Another waygated on the stack's database and keys, on a free port, with its own audit
    chain and log file: stack.config_for(port), then `edit(text)` -> text for what the test
    changes. Waits until it answers SERVING (or fails the test) unless not `serving` (a gateway
    that is not to serve yet); close() stops it (SIGTERM)."""

    def __init__(self, stack, name, edit=lambda text: text, binary="waygated", serving=True):
        port = free_port()
        self.stack, self.name, self.addr = stack, name, "127.0.0.1:%d" % port
        text = stack.config_for(port) + "\n[audit]\nchain = test-%s-%d\n" % (name, port)
        self.chain = "test-%s-%d" % (name, port)
        self.conf = os.path.join(stack.dir, name + ".conf")
        with open(self.conf, "w") as f:
            f.write(edit(text))
        self.log_path = os.path.join(stack.dir, name + ".log")
        self.binary = binary
        self.start_again(serving)

    def start_again(self, serving=True):
        """Starts the gateway (again, once it stopped: the same config, port and chain) and
        waits as __init__ says."""
        stack, name = self.stack, self.name
        if getattr(self, "_log", None) is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, self.binary), "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        if not serving:
            return
        if not wait_for(lambda: self.proc.poll() is None and
                        stack.health("backend", addr=self.addr, timeout=2) == "SERVING", 30):
            self.close()
            pytest.fail("gateway %s did not become SERVING (exit %r)" % (name, self.proc.poll()))
        # and its audit chain is open (gateway.start written): audited actions may follow
        q = "SELECT count(*) FROM audit_record WHERE chain = '%s'" % self.chain
        if not wait_for(lambda: int(stack.psql(q)[0]) > 0, 30):
            self.close()
            pytest.fail("gateway %s did not open its audit chain" % name)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def bearer(token):
    """The call metadata of a bearer token."""
    return [("authorization", "Bearer " + token)]


def lock_holder(stack, sql, transaction=True, uri=None):
    """A psql session of the schema's owner (or uri's) that ran sql and keeps what it took until
    release_holder: a LOCK in the transaction it leaves open (transaction), or a session's
    advisory lock (not). Returned once sql ran; a failed statement ends the session and the test.
    Before a LOCK TABLE the stack's gateway first has its whole pool: a connection still setting
    up when a table it prepares a statement on is locked would wait with it (a test whose work
    needs a free connection beside one held up by the lock would not get one)."""
    if sql.lstrip().upper().startswith("LOCK TABLE"):
        stack.pool_whole()
    holder = subprocess.Popen([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t",
                               "-v", "ON_ERROR_STOP=1", "-d", uri or stack.pguri_owner],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write("%s%s;\n\\echo held\n" % ("BEGIN;\n" if transaction else "", sql))
    holder.stdin.flush()
    while True:
        line = holder.stdout.readline()
        assert line, "the lock holder's psql ended"
        if line.strip() == "held":
            return holder


def holder_pid(holder):
    """The backend pid of a lock_holder session (pg_blocking_pids names it)."""
    holder.stdin.write("SELECT pg_backend_pid();\n")
    holder.stdin.flush()
    return int(holder.stdout.readline())


def waiting_on(stack, pid, superuser):
    """The statements of the sessions waiting for a lock backend pid holds (pg_blocking_pids),
    read through superuser's URI: another role's statement needs pg_read_all_stats."""
    return stack.psql("SELECT query FROM pg_stat_activity WHERE %d = ANY(pg_blocking_pids(pid))"
                      % pid, uri=superuser)


def release_holder(holder):
    """Ends a lock_holder session: its transaction rolls back, its locks go with it."""
    if holder.poll() is None:
        holder.stdin.close()
        holder.wait(timeout=60)


def recv_exact(s, n):
    """Exactly n bytes from socket s; EOFError when the peer closes first."""
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b


def h2_frame(ftype, flags, stream_id, payload=b""):
    """One HTTP/2 frame (RFC 9113 4.1), for the tests' hand-written peers."""
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack(">I", stream_id) + payload)


def hpack_literal(headers):
    """A header block of literal fields without indexing (no Huffman): short names and values."""
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        assert len(n) < 127 and len(v) < 127
        out += b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v
    return out


def wait_for(fn, timeout, interval=0.25):
    """Polls fn() until it returns a true value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = fn()
        except Exception:  # a failed RPC while the stack settles counts as "not yet"
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def stack():
    if not os.access(os.path.join(BUILD, "waygated"), os.X_OK):
        pytest.fail("no %s/waygated: build first (cmake -S . -B build && cmake --build build)"
                    % BUILD)
    directory = tempfile.mkdtemp(prefix="waygate-it-")
    os.chmod(directory, 0o711)  # PostgreSQL runs as user postgres when we are root
    env = dict(os.environ, WAYGATE_BUILD=BUILD)
    r = subprocess.run([DEVSTACK, "up", directory], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        subprocess.run([DEVSTACK, "down", directory], capture_output=True, env=env)
        pytest.fail("deploy/devstack up failed:\n" + r.stdout + r.stderr)
    s = Stack(directory, waygate_proto.read_env(os.path.join(directory, "env")))
    try:
        yield s
    finally:
        s.close_channels()
        for ch in s._persistent:
            ch.close()
        subprocess.run([DEVSTACK, "down", directory], capture_output=True, env=env)
        if os.environ.get("WAYGATE_KEEP_STACK"):
            print("\nintegration stack kept in", directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _close_test_channels(request):
    """A test's channels (each one a connection to the gateway) are closed when the test ends,
    so that the whole session never nears the gateway's max_connections; channels opened by
    module- or session-scoped fixtures, before the test, stay open."""
    if "stack" not in request.fixturenames:
        yield
        return
    s = request.getfixturevalue("stack")
    keep = len(s._channels)
    yield
    s.close_channels(keep)


def cluster_pids(stack):
    """The stack's PostgreSQL processes: the postmaster and its children."""
    with open(os.path.join(stack.dir, "pg", "data", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


# C for the KeyUpdate flood tests (test_attack_edge.py, test_gclient.py): Python's ssl module
# cannot send a KeyUpdate. KEYUPDATE_COUNT_C counts the peer's KeyUpdate messages in `answers`
# (set as the SSL's message callback).
KEYUPDATE_COUNT_C = r"""
static long answers;
static void count_cb(int write_p, int version, int type, const void *buf, size_t len, SSL *ssl,
                     void *arg)
{
    (void)version;
    (void)ssl;
    (void)arg;
    if (!write_p && type == SSL3_RT_HANDSHAKE && len >= 1 &&
        ((const unsigned char *)buf)[0] == SSL3_MT_KEY_UPDATE)
        answers++;
}
"""

# MTLS_CONNECT_C: mtls_connect(ctx, argv, h2, &fd), an mTLS connection to 127.0.0.1 with the
# client certificate of a program's "ca cert key port" arguments (argv[1..4]).
MTLS_CONNECT_C = r"""
/* An mTLS connection over ctx (its protocol and ciphers set by the caller) to 127.0.0.1:argv[4],
 * trusting argv[1], with the certificate argv[2] and key argv[3], ALPN h2 when h2 is not 0; *fd
 * its socket. NULL when a step fails. */
static SSL *mtls_connect(SSL_CTX *ctx, char **argv, int h2, int *fd)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    struct sockaddr_in sa = {0};
    SSL *ssl;

    if (!SSL_CTX_load_verify_locations(ctx, argv[1], NULL) ||
        !SSL_CTX_use_certificate_chain_file(ctx, argv[2]) ||
        !SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) ||
        (h2 && SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0))
        return NULL;
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[4]));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if ((*fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        connect(*fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || (ssl = SSL_new(ctx)) == NULL)
        return NULL;
    SSL_set_fd(ssl, *fd);
    return SSL_connect(ssl) == 1 ? ssl : NULL;
}
"""


def build_tls_c(tmp_path, name, source):
    """Builds source (C using libssl) with the system's gcc into tmp_path; returns the program's
    path."""
    src, exe = tmp_path / (name + ".c"), tmp_path / name
    src.write_text(source)
    r = subprocess.run(["gcc", "-O1", "-o", str(exe), str(src), "-lssl", "-lcrypto"],
                       capture_output=True, text=True)
    assert r.returncode == 0, "cannot build %s: %s" % (name, r.stderr)
    return str(exe)
