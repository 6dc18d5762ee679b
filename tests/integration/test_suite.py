"""The cipher suite as a deployment choice (issue 11): `[crypto] suite = aes | sm`.

The stack runs the suite of WAYGATE_SUITE (devstack: aes by default; sm in CI's second run);
OTHER is the other one. Shown here:
  - the daemon refuses to start when the keyring lacks the configured suite, naming the rule
    ([crypto] suite) and the keyring, and starts once `keys add-suite` added it;
  - a record written under the stack's suite is read (Get) and found (Search by phone, ID number
    and waybill number) by a gateway switched to OTHER, whose new records are sealed under OTHER
    (every sealed column names it), and the stack's gateway, reloaded with both suites' keys,
    reads and finds those: lookups match the blind index of every suite the keyring holds;
  - a waybill number is one waybill across suites: an identical Submit of a number stored under
    one suite, retried through a gateway of the other (both keyrings holding both suites), is a
    duplicate with the stored id and adds no record and no outbox row; other content for that
    number is ALREADY_EXISTS naming waybill.waybill_no;
  - the same holds when both gateways submit one new number at the same instant: the test holds
    the tables that the insert's statement trigger writes (phone_sender, phone_owner) locked, so
    an insert that got past its duplicate check waits there, uncommitted; with both submits
    waiting, it lets go: one record, the other caller answered with its id (identical content)
    or ALREADY_EXISTS (other content);
  - SIGHUP with a keyring that lost the configured suite keeps the running keys;
  - `waygatectl audit export --suite sm` (a keyring holding both suites) seals the bundle, and
    signs the checkpoint over its own record, with SM2: the bundle verifies in tests/audit/
    verify_bundle.py, whose SM2 is sm_verify.py (pure Python), and the seal with sm_verify alone;
    a tampered bundle is refused. Without --suite it signs with the daemon's [crypto] suite (the
    file $WAYGATE_CONF names), else the keyring's default; a suite the keyring lacks is refused.
"""

import os
import re
import shutil
import signal
import hashlib
import subprocess
import sys
import threading
import time

import grpc
import pytest

import audit_lib
from conftest import BUILD, PGBIN, ExtraGateway, wait_for
from query_data import GET, SEARCH, new_waybill
from test_intake import check_courier_view
import waygate_proto

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYVERIFY = os.path.join(ROOT, "tests", "audit", "verify_bundle.py")
sys.path.insert(0, os.path.join(ROOT, "tests", "audit"))
import sm_verify  # noqa: E402  (pure-Python SM3/SM2, no OpenSSL)

STACK = os.environ.get("WAYGATE_SUITE", "aes")
OTHER = "sm" if STACK == "aes" else "aes"
ALG = {"aes": 1, "sm": 2}
SENDER = 1101  # this module's sender (query_data: phone and ID number of its own)
SEALED = ("dek_wrapped", "fields_ct")  # a record's sealed parts (stored format version 3)


def configured(suite, keyring=None):
    """An ExtraGateway/config edit: [crypto] suite = suite (and [keys] keyring = keyring)."""
    def edit(text):
        text = re.sub(r"(?m)^\[crypto\]\n(suite *=.*\n)?", "", text)
        if keyring:
            text = re.sub(r"(?m)^keyring *=.*$", "keyring = %s" % keyring, text)
        return text + "\n[crypto]\nsuite = %s\n" % suite
    return edit


def ctl_ok(stack, *args):
    r = stack.ctl(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def algorithms(stack, rid):
    """The algorithm byte of each sealed column of record rid."""
    row = stack.psql("SELECT %s FROM waybill WHERE id = '%s'" % (
        ", ".join("get_byte(%s, 1)" % c for c in SEALED), rid))
    assert len(row) == 1, row
    return [int(x) for x in row[0].split("|")]


def submit_on(stack, addr, w, principal="courier_a"):
    r = waygate_proto.unary(stack.channel(principal, addr=addr), "/waygate.v1.WaybillIntake/Submit",
                            stack.pb.intake.SubmitRequest(waybill=w),
                            stack.pb.intake.SubmitResponse)
    return r


def get_on(stack, addr, number, principal="courier_a"):
    return waygate_proto.unary(stack.channel(principal, addr=addr), GET,
                               stack.pb.query.GetRequest(waybill_no=number),
                               stack.pb.common.WaybillView)


def search_on(stack, addr, principal="branch_a", **kw):
    return [v.id for v in waygate_proto.stream(stack.channel(principal, addr=addr), SEARCH,
                                               stack.pb.query.SearchRequest(**kw),
                                               stack.pb.common.WaybillView)]


def reload_stack_keys(stack):
    """SIGHUP to the stack's gateway; waits until it logs the keyring reloaded."""
    since = len(stack.log_lines())
    os.kill(stack.gateway_pid(), signal.SIGHUP)
    line = wait_for(lambda: [l for l in stack.log_lines()[since:]
                             if "SIGHUP: keyring:" in l and "reloaded" in l], timeout=20)
    assert line, "no keyring reload logged after SIGHUP"
    assert "(suite %s)" % STACK in line[-1], line


def check_config(stack, edit, name):
    conf = os.path.join(stack.dir, name + ".conf")
    with open(conf, "w") as f:
        f.write(edit(stack.config_for(1)))
    return subprocess.run([os.path.join(BUILD, "waygated"), "-c", conf, "--check-config"],
                          capture_output=True, text=True, timeout=60)


def test_daemon_refuses_a_suite_the_keyring_lacks(stack, tmp_path):
    keyring = str(tmp_path / "keyring")
    ctl_ok(stack, "keys", "init", "--suite", STACK, "--keyring", keyring)
    r = check_config(stack, configured(OTHER, keyring), "suite-refused")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "[crypto] suite = %s" % OTHER in r.stderr, r.stderr
    assert keyring in r.stderr and "add-suite" in r.stderr, r.stderr
    # the same file with the suite added: accepted
    ctl_ok(stack, "keys", "add-suite", "--suite", OTHER, "--keyring", keyring, "--db", stack.pguri)
    r = check_config(stack, configured(OTHER, keyring), "suite-accepted")
    assert r.returncode == 0, r.stdout + r.stderr
    status = ctl_ok(stack, "keys", "status", "--keyring", keyring)
    assert "suite aes" in status and "suite sm" in status, status


@pytest.fixture(scope="module")
def switched(stack):
    """Records under the stack's suite; then the stack's keyring gains OTHER (the stack's gateway
    reloads it, keeping its suite) and a second gateway runs with [crypto] suite = OTHER."""
    old = []
    for _ in range(2):
        w = new_waybill(stack, "a", sender_n=SENDER)
        r = submit_on(stack, stack.addr, w)
        assert not r.duplicate
        old.append((w, r.id))
    keyring = stack.env["WAYGATE_KEYRING"]
    if "suite %s: no keys" % OTHER in ctl_ok(stack, "keys", "status", "--keyring", keyring):
        ctl_ok(stack, "keys", "add-suite", "--suite", OTHER, "--keyring", keyring, "--db",
               stack.pguri)
    reload_stack_keys(stack)
    g = ExtraGateway(stack, "suite-" + OTHER, edit=configured(OTHER))
    yield old, g
    g.close()


def test_records_of_the_old_suite_read_and_found_after_the_switch(stack, switched):
    old, g = switched
    for w, rid in old:
        assert algorithms(stack, rid) == [ALG[STACK]] * len(SEALED)
        check_courier_view(get_on(stack, g.addr, w.waybill_no), w, rid)
    w = old[0][0]
    want = sorted(rid for _, rid in old)
    assert sorted(search_on(stack, g.addr, phone=w.sender.phone, limit=50)) == want
    assert sorted(search_on(stack, g.addr, id_number=w.sender.id_number, limit=50)) == want
    assert search_on(stack, g.addr, waybill_no=w.waybill_no) == [old[0][1]]


def test_new_records_sealed_under_the_configured_suite_found_by_both(stack, switched):
    old, g = switched
    w = new_waybill(stack, "a", sender_n=SENDER)
    r = submit_on(stack, g.addr, w)
    assert not r.duplicate
    # every sealed part of the new record is of the gateway's suite
    assert algorithms(stack, r.id) == [ALG[OTHER]] * len(SEALED)
    # read back and found through both gateways (each holds both suites' keys)
    for addr in (g.addr, stack.addr):
        check_courier_view(get_on(stack, addr, w.waybill_no), w, r.id)
        found = search_on(stack, addr, phone=w.sender.phone, limit=50)
        assert sorted(found) == sorted([rid for _, rid in old] + [r.id]), addr
        assert search_on(stack, addr, waybill_no=w.waybill_no) == [r.id]
    # a retried submit through the gateway of the record's suite is a duplicate
    again = submit_on(stack, g.addr, w)
    assert again.duplicate and again.id == r.id


def stored_counts(stack):
    """(waybill rows, outbox rows ever enqueued) as the owner: the outbox sequence, since
    delivered outbox rows are deleted."""
    rows = stack.psql("SELECT (SELECT count(*) FROM waybill), "
                      "coalesce(pg_sequence_last_value('outbox_id_seq'), 0)")
    return rows[0]


def check_one_waybill_across_suites(stack, addr, w, rid):
    """w, stored as record rid under one suite, submitted through addr (a gateway of the other):
    the same record, nothing added; other content for its number refused."""
    before = stored_counts(stack)
    again = submit_on(stack, addr, w)
    assert again.duplicate and again.id == rid, (again.duplicate, again.id, rid)
    assert stored_counts(stack) == before
    other = stack.pb.common.Waybill()
    other.CopyFrom(w)
    other.item_description = "跨套件改动的物品描述"
    with pytest.raises(grpc.RpcError) as e:
        submit_on(stack, addr, other)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS, (e.value.code(), e.value.details())
    assert e.value.details().startswith("waybill.waybill_no"), e.value.details()
    assert stored_counts(stack) == before
    assert search_on(stack, addr, waybill_no=w.waybill_no) == [rid]


def test_a_number_is_one_waybill_across_suites(stack, switched):
    old, g = switched
    w, rid = old[1]
    assert algorithms(stack, rid) == [ALG[STACK]] * len(SEALED)
    check_one_waybill_across_suites(stack, g.addr, w, rid)
    # and the other way: a record of the new suite retried through the old suite's gateway
    w = new_waybill(stack, "a", sender_n=SENDER + 2)
    r = submit_on(stack, g.addr, w)
    assert not r.duplicate and algorithms(stack, r.id) == [ALG[OTHER]] * len(SEALED)
    check_one_waybill_across_suites(stack, stack.addr, w, r.id)


class TriggerTablesLock:
    """A psql session, as the owner, holding phone_sender and phone_owner in SHARE mode until
    released: a waybill insert (its statement trigger writes both) then waits inside its
    statement, after its duplicate check and its row, uncommitted."""

    def __init__(self, stack):
        self.p = subprocess.Popen([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                                   "ON_ERROR_STOP=1", "-d", stack.pguri_owner],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p.stdin.write("BEGIN;\nLOCK TABLE phone_sender, phone_owner IN SHARE MODE;\n"
                           "SELECT 'locked';\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "locked"

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("COMMIT;\n")
            self.p.stdin.close()
            assert self.p.wait(30) == 0


# What a waiting insert waits for: the tables held above, or another gateway's lock on the number
# (store_group.c: pg_advisory_xact_lock(1399, key)).
WAITING = ("SELECT count(*) FROM pg_locks WHERE NOT granted AND "
           "(relation IN ('phone_sender'::regclass, 'phone_owner'::regclass) OR "
           "(locktype = 'advisory' AND classid = 1399))")


def submit_in_thread(stack, addr, w, out):
    def run():
        try:
            out.append(waygate_proto.unary(
                stack.channel("courier_a", addr=addr), "/waygate.v1.WaybillIntake/Submit",
                stack.pb.intake.SubmitRequest(waybill=w), stack.pb.intake.SubmitResponse,
                timeout=120))
        except grpc.RpcError as e:
            out.append(e)
    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("same_content", [True, False], ids=["identical", "other-content"])
def test_one_new_number_submitted_at_once_through_both_suites(stack, switched, same_content):
    _, g = switched
    w = new_waybill(stack, "a", sender_n=SENDER + 3 + int(same_content))
    w2 = stack.pb.common.Waybill()
    w2.CopyFrom(w)
    if not same_content:
        w2.item_description = "同一单号的另一物品描述"
    before = [int(x) for x in stored_counts(stack).split("|")]
    assert int(stack.psql(WAITING)[0]) == 0
    lock = TriggerTablesLock(stack)
    outs, threads = [[], []], []
    try:
        threads.append(submit_in_thread(stack, stack.addr, w, outs[0]))
        threads.append(submit_in_thread(stack, g.addr, w2, outs[1]))
        # both submits in the database, each waiting on a lock: one inside its insert (it passed
        # its duplicate check), the other on that one, or inside its own insert too (no lock
        # per number: the race this test catches)
        assert wait_for(lambda: int(stack.psql(WAITING)[0]) >= 2, 60), \
            stack.psql("SELECT locktype, relation::regclass, classid, granted FROM pg_locks "
                       "WHERE NOT granted")
    finally:
        lock.release()
        for t in threads:
            t.join(150)
    assert all(len(o) == 1 for o in outs), outs
    results = [o[0] for o in outs]
    new = [r for r in results if not isinstance(r, grpc.RpcError) and not r.duplicate]
    assert len(new) == 1, results
    (other,) = [r for r in results if r is not new[0]]
    if same_content:
        assert not isinstance(other, grpc.RpcError), (other.code(), other.details())
        assert other.duplicate and other.id == new[0].id, other
    else:
        assert isinstance(other, grpc.RpcError), other
        assert other.code() == grpc.StatusCode.ALREADY_EXISTS, (other.code(), other.details())
        assert other.details().startswith("waybill.waybill_no"), other.details()
    # one record and one delivery for the number, found through either gateway
    after = [int(x) for x in stored_counts(stack).split("|")]
    assert after == [before[0] + 1, before[1] + 1], (before, after)
    for addr in (stack.addr, g.addr):
        assert search_on(stack, addr, waybill_no=w.waybill_no) == [new[0].id]


def test_sighup_keeps_the_keys_when_the_keyring_loses_the_suite(stack, switched, tmp_path):
    _, g0 = switched
    keyring = str(tmp_path / "keyring")
    shutil.copy(stack.env["WAYGATE_KEYRING"], keyring)
    os.chmod(keyring, 0o600)
    g = ExtraGateway(stack, "suite-reload", edit=configured(OTHER, keyring))
    try:
        w = new_waybill(stack, "a", sender_n=SENDER + 1)
        rid = submit_on(stack, g.addr, w).id
        # the key file now holds the stack's suite only
        fresh = str(tmp_path / "fresh")
        ctl_ok(stack, "keys", "init", "--suite", STACK, "--keyring", fresh)
        os.replace(fresh, keyring)
        since = len(g.log())
        g.proc.send_signal(signal.SIGHUP)
        line = wait_for(lambda: [l for l in g.log()[since:].splitlines()
                                 if "SIGHUP: keyring refused" in l], timeout=20)
        assert line, g.log()[since:]
        assert "[crypto] suite = %s" % OTHER in line[-1], line
        # still serving with the keys it had
        v = get_on(stack, g.addr, w.waybill_no)
        assert v.id == rid
    finally:
        g.close()


# --- the CLI's signing suite: waygatectl audit export --suite ------------------------------------

SIG_ALG = {"aes": "ed25519", "sm": "sm2"}


def cli_export(stack, out, *extra, conf=None, keyring=None):
    """waygatectl audit export of the last 15 minutes into out, as an operator whose environment
    names the keyring (the stack's, holding both suites once `switched` ran) and, when conf is
    given, the daemon's configuration ($WAYGATE_CONF)."""
    env = dict(os.environ, WAYGATE_KEYRING=keyring or stack.env["WAYGATE_KEYRING"],
               WAYGATE_PGURI=stack.pguri)
    env.pop("WAYGATE_CONF", None)
    if conf:
        env["WAYGATE_CONF"] = conf
    now = int(time.time())
    return subprocess.run([os.path.join(BUILD, "waygatectl"), "audit", "export", "--from",
                           str(now - 900), "--to", str(now + 60), "--out", out] + list(extra),
                          env=env, capture_output=True, text=True, timeout=300)


def ctl_checkpoints(stack, alg):
    return int(stack.psql("SELECT count(*) FROM audit_checkpoint c JOIN audit_key k "
                          "USING (key_id) WHERE c.chain = 'ctl' AND k.algorithm = '%s'" % alg)[0])


def seal_of(data):
    """(algorithm, public key, signature, the bytes the seal signs) of a bundle."""
    items = audit_lib.read_items(data)
    assert items[-1][0] == b"Z", [t for t, _ in items[-3:]]
    seal_id, sig = audit_lib.fields(items[-1][1])[:2]
    for t, p in items:
        f = audit_lib.fields(p)
        if t == b"K" and f[0] == seal_id:
            alg = f[2].decode() if len(f) > 2 and f[2] else "ed25519"
            return alg, f[1], sig, data[:len(data) - 5 - len(items[-1][1])]
    raise AssertionError("the seal's key is not in the bundle")


def py_verify(path):
    return subprocess.run(["/usr/bin/python3", PYVERIFY, path], capture_output=True, text=True,
                          timeout=600)


def test_cli_export_with_suite_sm_seals_with_sm2(stack, switched, tmp_path):
    out = str(tmp_path / "cli-suite-sm.bundle")
    before = ctl_checkpoints(stack, "sm2")
    r = cli_export(stack, out, "--suite", "sm")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sealed under suite sm (SM2)" in r.stdout, r.stdout
    # the export's own record on chain ctl: a checkpoint signed with SM2 too
    assert ctl_checkpoints(stack, "sm2") == before + 1
    data = open(out, "rb").read()
    alg, pub, sig, signed = seal_of(data)
    assert alg == "sm2" and len(pub) == 65 and pub[0] == 4, (alg, len(pub))
    # the seal checks with sm_verify alone (pure Python), and the whole bundle with verify_bundle
    assert sm_verify.sm2_verify(pub, b"waygate.bundle.seal.v1\x00" +
                                hashlib.sha256(signed).digest(), sig)
    p = py_verify(out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"(?m)^signatures: .*sm2", p.stdout), p.stdout
    c = stack.ctl("audit", "verify", out)
    assert c.returncode == 0, c.stdout + c.stderr

    # tampered: one byte of the first audit record changed
    items = audit_lib.read_items(data)
    i = next(k for k, (t, _) in enumerate(items) if t == b"R")
    payload = bytearray(items[i][1])
    payload[len(payload) // 2] ^= 0x01
    items[i] = (b"R", bytes(payload))
    bad = audit_lib.write_items(items)
    assert not sm_verify.sm2_verify(pub, b"waygate.bundle.seal.v1\x00" +
                                    hashlib.sha256(seal_of(bad)[3]).digest(), sig)
    path = str(tmp_path / "cli-suite-sm-tampered.bundle")
    with open(path, "wb") as f:
        f.write(bad)
    for who, res in (("verify_bundle.py", py_verify(path)),
                     ("waygatectl", stack.ctl("audit", "verify", path))):
        assert res.returncode == 1 and "FAILED" in res.stdout + res.stderr, \
            "%s accepted a tampered bundle: %s" % (who, res.stdout + res.stderr)


def test_cli_export_suite_default_and_refusal(stack, switched, tmp_path):
    _, g = switched
    # --suite aes|sm: each suite's algorithm; the keyring holds both
    for suite in ("aes", "sm"):
        out = str(tmp_path / ("cli-%s.bundle" % suite))
        r = cli_export(stack, out, "--suite", suite)
        assert r.returncode == 0, r.stdout + r.stderr
        assert seal_of(open(out, "rb").read())[0] == SIG_ALG[suite]
    # no --suite: the daemon's [crypto] suite from $WAYGATE_CONF (g's file says OTHER), else the
    # keyring's default (aes: it holds both)
    out = str(tmp_path / "cli-conf.bundle")
    r = cli_export(stack, out, conf=g.conf)
    assert r.returncode == 0, r.stdout + r.stderr
    assert seal_of(open(out, "rb").read())[0] == SIG_ALG[OTHER]
    out = str(tmp_path / "cli-default.bundle")
    r = cli_export(stack, out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert seal_of(open(out, "rb").read())[0] == "ed25519"
    # a suite the keyring lacks: refused, naming --suite and the way out; no file
    keyring = str(tmp_path / "keyring-one-suite")
    ctl_ok(stack, "keys", "init", "--suite", STACK, "--keyring", keyring)
    out = str(tmp_path / "cli-refused.bundle")
    r = cli_export(stack, out, "--suite", OTHER, keyring=keyring)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "--suite" in r.stderr and "add-suite --suite %s" % OTHER in r.stderr, r.stderr
    assert not os.path.exists(out)
