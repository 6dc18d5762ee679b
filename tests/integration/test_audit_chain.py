"""Tamper tests on the audit trail (Art. 33): the live chain in the database and audit bundles.

Each tamper - a deleted record, an altered field, two records swapped, a tail truncated after the
last checkpoint, a forged checkpoint signature - is detected by both verifiers, each naming the
place, and a junk checkpoint or a junk record planted inside a chain hides nothing after it (each
verifier names it and goes on): `waygatectl audit verify` (live chain) and `waygatectl audit
verify FILE` (C), and tests/audit/verify_bundle.py (Python, written from
docs/audit-bundle-format.md alone). A tampered live chain is also exported (the export warns, and
writes the trail as stored) and the bundle checked by both. A gateway that meets a head it did
not write which fails its check does not chain onto it (a gateway of its own on a test database,
DbGateway), and a row the bundle format cannot hold is left out of both exports, named.

The product never changes the trail: these tests tamper in a database of their own (a copy of a
template holding known chains, made with tests/integration/audit_lib.py), as the superuser,
disabling the append-only triggers first, as an attacker would have to (or, to plant what the
gateway's database role may append, as that role)."""

import datetime
import hashlib
import os
import re
import signal
import socket
import subprocess

import grpc
import pytest

import audit_lib
import waygate_proto
from conftest import BUILD, PGBIN, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYVERIFY = os.path.join(ROOT, "tests", "audit", "verify_bundle.py")
TEMPLATE = "wgaudit"
T0 = 1_700_000_000_000_000     # gw1's first record, microseconds since the epoch
T0_CTL = T0 + 10_000_000_000   # ctl's records, far from gw1's
FAR = "4102444800"             # 2100-01-01
GW1_CKPTS = (10, 20, 25)       # gw1: 27 records; 26 and 27 not yet covered
_n = iter(range(1, 1000))


def uri(stack, db, user):
    return re.sub(r"user=[^&]*", "user=" + user,
                  stack.pguri_owner.replace("postgresql:///waygate?", "postgresql:///%s?" % db))


def su(stack, db="postgres"):
    return uri(stack, db, "postgres")


@pytest.fixture(scope="module")
def template(stack):
    """A migrated database holding chain gw1 (27 records, checkpoints at 10, 20, 25) and chain
    ctl (5 records, a checkpoint at 5), signed with the keyring's audit key."""
    stack.psql("DROP DATABASE IF EXISTS %s" % TEMPLATE, uri=su(stack))
    stack.psql("CREATE DATABASE %s OWNER waygate" % TEMPLATE, uri=su(stack))
    r = stack.ctl("migrate", "--db", su(stack, TEMPLATE))
    assert r.returncode == 0, r.stderr
    signer = audit_lib.keyring_signer(stack.env["WAYGATE_KEYRING"])
    sql1, recs, _ = audit_lib.build_chain("gw1", 27, signer, GW1_CKPTS, T0)
    sql2, _, _ = audit_lib.build_chain("ctl", 5, signer, (5,), T0_CTL, kind="ctl")
    stack.psql(sql1 + sql2, uri=su(stack, TEMPLATE))
    yield {"signer": signer, "gw1": recs}
    for db in stack.psql("SELECT datname FROM pg_database WHERE datname LIKE 'wgaudit%%'",
                         uri=su(stack)):
        stack.psql("DROP DATABASE IF EXISTS %s" % db, uri=su(stack))
    for role in ("wgaudit_gateway", "wgaudit_admin"):
        stack.psql("DROP ROLE IF EXISTS %s" % role, uri=su(stack))


@pytest.fixture
def db(stack, template):
    """A fresh copy of the template for one test."""
    name = "wgaudit_t%d" % next(_n)
    stack.psql("CREATE DATABASE %s TEMPLATE %s OWNER waygate" % (name, TEMPLATE), uri=su(stack))
    return name


def tamper(stack, db, sql):
    """Runs sql as the superuser with the append-only triggers off (and on again after)."""
    off = ("ALTER TABLE audit_record DISABLE TRIGGER USER; "
           "ALTER TABLE audit_checkpoint DISABLE TRIGGER USER; ")
    on = (" ALTER TABLE audit_record ENABLE TRIGGER USER; "
          "ALTER TABLE audit_checkpoint ENABLE TRIGGER USER;")
    stack.psql("BEGIN; " + off + sql + on + " COMMIT;", uri=su(stack, db))


def ctl_verify_live(stack, db):
    return stack.ctl("audit", "verify", "--db", uri(stack, db, TEMPLATE + "_admin"))


def export(stack, db, path, frm="0", to=FAR):
    r = stack.ctl("audit", "export", "--from", frm, "--to", to, "--out", path, "--keyring",
                  stack.env["WAYGATE_KEYRING"], "--db", uri(stack, db, TEMPLATE + "_admin"))
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def verify_file(stack, path, *extra):
    """(C result, Python result) of verifying the bundle at path."""
    c = stack.ctl("audit", "verify", path, *extra)
    p = subprocess.run(["/usr/bin/python3", PYVERIFY, path] + list(extra), capture_output=True,
                       text=True, timeout=120)
    return c, p


def assert_good(stack, path, *extra):
    c, p = verify_file(stack, path, *extra)
    assert c.returncode == 0, c.stdout + c.stderr
    assert p.returncode == 0, p.stdout + p.stderr
    return c, p


def assert_both_fail(stack, path, *needles, extra=()):
    """Both verifiers refuse the bundle, and each one's FAILED line names every needle."""
    c, p = verify_file(stack, path, *extra)
    for who, r in (("waygatectl", c), ("verify_bundle.py", p)):
        assert r.returncode == 1, "%s accepted a tampered bundle:\n%s%s" % (who, r.stdout,
                                                                            r.stderr)
        line = [l for l in r.stdout.splitlines() if l.startswith("FAILED: ")]
        assert line, "%s: no FAILED line:\n%s%s" % (who, r.stdout, r.stderr)
        for n in needles:
            assert n in line[0], "%s does not name %r: %s" % (who, n, line[0])


def assert_live_fails(stack, db, tmp_path, *needles):
    """The live check names the place, and so do both verifiers on an export of the chain."""
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, "audit verify accepted a tampered chain:\n" + r.stdout + r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("FAILED: ")]
    assert line, r.stdout + r.stderr
    for n in needles:
        assert n in line[0], "audit verify does not name %r: %s" % (n, line[0])
    # each break is an incident (Art. 17) naming the place, in the order found (the check goes
    # on past each, so a tamper may show at more than one place: a swap by seq)
    inc = stack.psql("SELECT severity || '|' || detail FROM incident "
                     "WHERE kind = 'audit_chain_break' ORDER BY id", uri=su(stack, db))
    assert inc == ["critical|" + l[len("FAILED: "):] for l in line], inc
    path = str(tmp_path / "tampered.bundle")
    e = export(stack, db, path)
    assert "WARNING: does not verify" in e.stdout, e.stdout
    assert_both_fail(stack, path, *needles)


def good_bundle(stack, db, tmp_path):
    path = str(tmp_path / "good.bundle")
    export(stack, db, path)
    with open(path, "rb") as f:
        return path, audit_lib.read_items(f.read())


def write(tmp_path, items, name="tampered.bundle"):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(audit_lib.write_items(items))
    return path


# ---- the good trail ----

def test_good_trail_verifies_live_and_as_a_bundle(stack, db, tmp_path):
    signer = audit_lib.keyring_signer(stack.env["WAYGATE_KEYRING"])
    r = ctl_verify_live(stack, db)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 chains, 32 records, 4 checkpoints" in r.stdout, r.stdout
    assert "chain gw1: seq 26..27 not yet covered by a checkpoint" in r.stdout, r.stdout
    # who signed, and that the keyring ($WAYGATE_KEYRING) pinned it
    assert "\nsigned by key %s (%s)\n" % (signer.key_id, signer.algorithm) in r.stdout, r.stdout
    assert "signers pinned: the audit key of keyring " in r.stdout, r.stdout
    path, items = good_bundle(stack, db, tmp_path)
    c, p = assert_good(stack, path, "--trust-key", signer.key_id)
    assert "signed by key %s (%s)\n" % (signer.key_id, signer.algorithm) in c.stdout, c.stdout
    assert "signers pinned: the 1 key given by --trust-key\n" in c.stdout, c.stdout
    # without --trust-key a bundle still verifies (exit 0), saying whose keys signed it and that
    # nothing pinned them: the regulator compares the ids by eye
    c, p = assert_good(stack, path)
    assert [l for l in c.stdout.splitlines() if l.startswith("signed by key ")] == [
        "signed by key %s (%s)" % (signer.key_id, signer.algorithm)], c.stdout
    assert "note: the signers are not pinned (no --trust-key): any key the bundle lists was " \
           "accepted" in c.stdout, c.stdout
    assert "2 chains, 32 records, 4 checkpoints" in c.stdout, c.stdout
    assert "2 chains, 32 records, 4 checkpoints" in p.stdout, p.stdout
    # the manifest is what docs/audit-bundle-format.md says, computed independently
    assert audit_lib.rebuild_manifest(items) == items
    # confidential records are in the bundle, as stored (the bundle is for auditors)
    recs = [audit_lib.record_of(p)[0] for t, p in items if t == b"R"]
    assert any(r["confidential"] == b"1" for r in recs)


@pytest.mark.parametrize("mac", ["none", "another key's"])
def test_uncovered_gateway_records_need_the_keyrings_writer_mac(stack, db, template, mac):
    """gw1's records 26..27, after its last checkpoint, carry the keyring's writer MACs, as a
    gateway writes them: the live check says so. A record the gateway's database role appends at
    seq 28, linked properly (its hash is its content's, its prev_hash 27's), carrying no writer
    MAC or one made under another key, is named, an incident. Under --trust-key without --keyring
    the MACs are not read, and the check says so. (Red without the check: the planted record was
    only "not yet covered".)"""
    r = ctl_verify_live(stack, db)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: 2 of them, in gateway chains, carry a writer MAC of the keyring\n" in r.stdout
    last = template["gw1"][-1]
    rec = dict(last, seq=28, at_us=last["at_us"] + 1_000_000, object="planted",
               prev_hash=last["hash"])
    rec.pop("hash")
    h = hashlib.sha256(audit_lib.encode_record(rec)).digest()
    cols, vals = list(audit_lib.RECORD_FIELDS) + ["hash"], [rec[k] for k in
                                                           audit_lib.RECORD_FIELDS] + [h]
    if mac != "none":
        seed = os.urandom(32)
        cols.append("writer_mac")
        vals.append(audit_lib.writer_mac(audit_lib.writer_mac_key(seed, "sha256"), h))
    stack.psql("INSERT INTO audit_record (%s) VALUES (%s)" % (
        ", ".join(cols), ", ".join(audit_lib.sql_text(v) for v in vals)),
        uri=uri(stack, db, TEMPLATE + "_gateway"))
    why = "it carries no writer MAC: nothing shows that a gateway holding this keyring wrote it" \
        if mac == "none" else "its writer MAC is not one this keyring makes"
    place = "chain gw1: seq 28: no checkpoint covers it and %s (1 such record in seq 26..28)" % why
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert failed(r) == [place], r.stdout
    assert "checked: chain gw1: 28 records, 3 not covered by a valid checkpoint" in \
        r.stdout.splitlines(), r.stdout
    assert stack.psql("SELECT severity || '|' || detail FROM incident WHERE kind = "
                      "'audit_chain_break'", uri=su(stack, db)) == ["critical|" + place]
    r = stack.ctl("audit", "verify", "--db", uri(stack, db, TEMPLATE + "_admin"), "--trust-key",
                  template["signer"].key_id)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: the writer MACs of 3 of them, in gateway chains, were not checked (no " \
           "keyring)" in r.stdout, r.stdout
    r = stack.ctl("audit", "verify", "--db", uri(stack, db, TEMPLATE + "_admin"), "--trust-key",
                  template["signer"].key_id, "--keyring", stack.env["WAYGATE_KEYRING"])
    assert r.returncode == 1 and failed(r) == [place], r.stdout + r.stderr


def test_export_digest_is_the_files_and_the_export_is_recorded(stack, db, tmp_path):
    path = str(tmp_path / "d.bundle")
    r = export(stack, db, path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert ("sha256 " + digest) in r.stdout, r.stdout
    # the export is an audit record on chain ctl (and an admin_log row), naming range and digest
    last = stack.psql("SELECT seq, action, object, detail FROM audit_record WHERE chain = 'ctl' "
                      "ORDER BY seq DESC LIMIT 1", uri=su(stack, db))
    assert last == ["6|audit.export|0..%s|records=32 sha256=%s" % (FAR, digest)], last
    assert stack.psql("SELECT count(*) FROM admin_log WHERE action = 'audit.export'",
                      uri=su(stack, db)) == ["1"]
    # appended to the chain properly, and covered by a checkpoint signed with the keyring
    r = ctl_verify_live(stack, db)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 chains, 33 records, 5 checkpoints" in r.stdout, r.stdout


def test_export_refuses_a_planted_partial_file_and_writes_a_private_bundle(stack, db, tmp_path):
    """Confidential records go to OUT.partial, then OUT: a symbolic link planted at OUT.partial
    is refused (exit 1, naming the path and the rule), its target untouched and nothing
    recorded; without it the bundle is mode 0600 even under umask 0."""
    path = str(tmp_path / "private.bundle")
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    os.chmod(victim, 0o644)
    os.symlink(str(victim), path + ".partial")
    r = stack.ctl("audit", "export", "--from", "0", "--to", FAR, "--out", path, "--keyring",
                  stack.env["WAYGATE_KEYRING"], "--db", uri(stack, db, TEMPLATE + "_admin"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert (path + ".partial: already exists (a new file is required: an existing file or "
            "symbolic link there is never written through)") in r.stderr, r.stderr
    assert victim.read_bytes() == b"not yours" and os.stat(victim).st_mode & 0o7777 == 0o644
    assert os.path.islink(path + ".partial") and not os.path.exists(path)
    assert stack.psql("SELECT count(*) FROM admin_log WHERE action = 'audit.export'",
                      uri=su(stack, db)) == ["0"]
    os.unlink(path + ".partial")
    old = os.umask(0)
    try:
        export(stack, db, path)
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o7777 == 0o600
    assert not os.path.lexists(path + ".partial")
    assert_good(stack, path)


def test_range_bundle_is_anchored_by_the_checkpoints_around_it(stack, db, tmp_path):
    """Records 13..16 of gw1 are in the range; the bundle runs from after the checkpoint at 10
    (its anchor) to the checkpoint at 20 (covering them): seq 11..20, ctl absent."""
    frm = str((T0 + 12_000_000) // 1_000_000)
    to = str((T0 + 16_000_000) // 1_000_000)
    path = str(tmp_path / "range.bundle")
    export(stack, db, path, frm, to)
    c, p = assert_good(stack, path)
    assert "1 chains, 10 records, 2 checkpoints" in c.stdout, c.stdout
    with open(path, "rb") as f:
        items = audit_lib.read_items(f.read())
    seqs = [int(audit_lib.record_of(p)[0]["seq"]) for t, p in items if t == b"R"]
    assert seqs == list(range(11, 21))
    # the anchor matters: without it, the first record is not tied to anything
    del items[audit_lib.index_of(items, b"C", 10)]
    assert_both_fail(stack, write(tmp_path, items), "chain gw1", "seq 1 expected, found seq 11")


def test_the_trigger_refuses_changes_even_to_the_owner(stack, db):
    for sql in ("UPDATE audit_record SET actor = 'x' WHERE seq = 3",
                "DELETE FROM audit_record WHERE seq = 3",
                "DELETE FROM audit_checkpoint WHERE seq = 10"):
        r = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-v",
                            "ON_ERROR_STOP=1", "-d", uri(stack, db, "waygate"), "-c", sql],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "append-only" in r.stderr, (sql, r.stderr)


# ---- a deleted record ----

def test_deleted_record_live(stack, db, tmp_path):
    tamper(stack, db, "DELETE FROM audit_record WHERE chain = 'gw1' AND seq = 7;")
    assert_live_fails(stack, db, tmp_path, "chain gw1", "seq 7 expected after seq 6")


def test_deleted_record_bundle(stack, db, tmp_path):
    _, items = good_bundle(stack, db, tmp_path)
    del items[audit_lib.index_of(items, b"R", 7)]
    assert_both_fail(stack, write(tmp_path, items), "chain gw1", "seq 7 expected after seq 6")


# ---- the oldest records deleted ----

def assert_live_names(stack, db, place):
    """The live check fails with FAILED: place, and records it as a critical incident."""
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, "audit verify accepted a tampered chain:\n" + r.stdout + r.stderr
    assert "FAILED: %s\n" % place in r.stdout, r.stdout + r.stderr
    inc = stack.psql("SELECT severity || '|' || detail FROM incident "
                     "WHERE kind = 'audit_chain_break'", uri=su(stack, db))
    assert inc and inc[-1] == "critical|" + place, inc


def test_live_chain_without_its_first_records_fails(stack, db, tmp_path):
    """Records are never deleted, so the live check takes no checkpoint as a chain's anchor (a
    time range's bundle does): gw1 without records 1..10 (no checkpoint below 10; the one at 10
    kept, which such a bundle would start from) fails, naming the chain and the missing seqs;
    a bundle of what is left still verifies, as a range bundle may start there."""
    tamper(stack, db, "DELETE FROM audit_record WHERE chain = 'gw1' AND seq <= 10;")
    assert_live_names(stack, db, "chain gw1: seq 1..10 missing: the checkpoint at seq 10 comes "
                                 "before any record (a whole chain starts at seq 1)")
    path = str(tmp_path / "rest.bundle")
    e = export(stack, db, path)
    assert "WARNING" not in e.stdout, e.stdout
    assert_good(stack, path)


def test_live_chain_of_checkpoints_without_records_fails(stack, db):
    """Chain ctl's five records deleted, its checkpoint at 5 kept."""
    tamper(stack, db, "DELETE FROM audit_record WHERE chain = 'ctl';")
    assert_live_names(stack, db, "chain ctl: seq 1..5 missing: the checkpoint at seq 5 comes "
                                 "before any record (a whole chain starts at seq 1)")


# ---- signers pinned ----

def test_live_verify_pins_the_keyrings_audit_keys(stack, db, template):
    """The checkpoint at 20 re-signed, validly, by a key the attacker added to audit_key (what
    the database's owner can do): the live check pins the keyring's audit keys and names the key;
    with both keys given by --trust-key it verifies and names both signers; with neither a
    keyring nor --trust-key it refuses to call the trail verified (exit 2: the table is the
    database's word, which whoever rewrote the trail could add to); with --unpinned it accepts the
    table's keys but says the signers are not pinned."""
    kr = stack.env["WAYGATE_KEYRING"]
    trusted = audit_lib.keyring_signer(kr)
    rogue = audit_lib.rogue_signer(kr)
    c = template["gw1"][19]
    sig = rogue.sign(audit_lib.checkpoint_msg("gw1", 20, c["hash"], c["at_us"] + 500))
    tamper(stack, db, "INSERT INTO audit_key (key_id, public_key, algorithm) VALUES "
                      "('%s', '\\x%s', '%s'); UPDATE audit_checkpoint SET key_id = '%s', "
                      "signature = '\\x%s' WHERE chain = 'gw1' AND seq = 20;"
           % (rogue.key_id, rogue.pub.hex(), rogue.algorithm, rogue.key_id, sig.hex()))
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("FAILED: ")]
    assert line and line[0].startswith("FAILED: chain gw1: checkpoint at seq 20: signed by key "
                                       + rogue.key_id[:16]), r.stdout
    assert ("not by the trusted key " + trusted.key_id[:16]) in line[0] or \
        (rogue.key_id + ", which is not one of the") in line[0], line[0]
    # a key given alone pins alone: the rogue one is refused by it too
    r = stack.ctl("audit", "verify", "--db", uri(stack, db, TEMPLATE + "_admin"), "--trust-key",
                  trusted.key_id)
    assert r.returncode == 1 and "not by the trusted key" in r.stdout, r.stdout + r.stderr
    r = stack.ctl("audit", "verify", "--db", uri(stack, db, TEMPLATE + "_admin"), "--trust-key",
                  trusted.key_id, "--trust-key", rogue.key_id)
    assert r.returncode == 0, r.stdout + r.stderr
    for k in (trusted, rogue):
        assert "signed by key %s (%s)\n" % (k.key_id, k.algorithm) in r.stdout, r.stdout
    assert "signers pinned: the 2 keys given by --trust-key" in r.stdout, r.stdout
    env = {k: v for k, v in os.environ.items() if k != "WAYGATE_KEYRING"}
    live = [os.path.join(BUILD, "waygatectl"), "audit", "verify", "--db",
            uri(stack, db, TEMPLATE + "_admin")]
    r = subprocess.run(live, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "verified" not in r.stdout and "nothing pins the checkpoints' signers: give " \
        "--keyring PATH (or set WAYGATE_KEYRING) or --trust-key KEYID" in r.stderr, r.stderr
    r = subprocess.run(live + ["--unpinned"], env=env, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: the signers are not pinned (--unpinned): any key of the audit_key table was " \
           "accepted" in r.stdout, r.stdout
    for bad in (["--unpinned", "--trust-key", trusted.key_id], ["--unpinned", "/dev/null"]):
        r = subprocess.run(live + bad, env=env, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and "--unpinned: " in r.stderr, r.stdout + r.stderr


def test_trust_key_must_be_a_key_id(stack):
    for bad in ("abc", "A" * 64, "g" * 64):
        r = stack.ctl("audit", "verify", "--trust-key", bad, "--db", stack.pguri)
        assert r.returncode == 2 and "--trust-key: must be a key id, 64 lowercase hex digits" \
            in r.stderr, r.stderr


# ---- an altered field ----

def test_altered_field_live(stack, db, tmp_path):
    tamper(stack, db, "UPDATE audit_record SET actor = 'someone_else' "
                      "WHERE chain = 'gw1' AND seq = 12;")
    assert_live_fails(stack, db, tmp_path, "chain gw1: seq 12: the record's content does not "
                                           "match its hash")


def test_every_broken_chain_is_reported_live(stack, db):
    """A junk chain planted to sort first ('0', one record at seq 2) does not hide a break in
    another: the live check verifies each chain on its own and names every broken one, each a
    critical incident."""
    tamper(stack, db, "INSERT INTO audit_chain (id, kind) VALUES ('0', 'gateway'); "
                      "INSERT INTO audit_record (chain, seq, at_us, actor, action, outcome, "
                      "confidential, prev_hash, hash) VALUES ('0', 2, 0, 'x', 'x', 'ok', false, "
                      "decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')); "
                      "UPDATE audit_record SET actor = 'someone_else' "
                      "WHERE chain = 'gw1' AND seq = 12;")
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    failed = [l[len("FAILED: "):] for l in r.stdout.splitlines() if l.startswith("FAILED: ")]
    assert len(failed) == 2, r.stdout
    assert failed[0].startswith("chain 0: "), failed
    assert failed[1].startswith(
        "chain gw1: seq 12: the record's content does not match its hash"), failed
    assert "2 broken places (2 of 3 chains, 0 against --since)" in r.stderr, r.stderr
    inc = stack.psql("SELECT detail FROM incident WHERE kind = 'audit_chain_break' ORDER BY id",
                     uri=su(stack, db))
    assert inc == failed, inc


def test_many_junk_chains_do_not_flood_the_incidents(stack, db):
    """20 junk chains (what the gateway's role may register): every one is named, but one check
    records at most 16 incidents and one more that counts the rest."""
    tamper(stack, db, "INSERT INTO audit_chain (id, kind) SELECT 'junk' || g, 'gateway' "
                      "FROM generate_series(1, 20) g; "
                      "INSERT INTO audit_record (chain, seq, at_us, actor, action, outcome, "
                      "confidential, prev_hash, hash) SELECT 'junk' || g, 2, 0, 'x', 'x', 'ok', "
                      "false, decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex') "
                      "FROM generate_series(1, 20) g;")
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert sum(l.startswith("FAILED: chain junk") for l in r.stdout.splitlines()) == 20, r.stdout
    inc = stack.psql("SELECT detail FROM incident WHERE kind = 'audit_chain_break' ORDER BY id",
                     uri=su(stack, db))
    assert len(inc) == 17 and inc[-1] == "and 4 more broken places (audit verify lists them)", inc


def test_tail_cut_with_its_checkpoints_is_found_against_an_earlier_bundle(stack, db, tmp_path):
    """gw1's records 21..27 deleted together with the checkpoints at 25 (what covered them):
    what is left verifies on its own, which the live check says (no external anchor). Against a
    bundle exported before the cut (--since), it names the chain and the head it no longer holds,
    and an incident is recorded; the same check before the cut passes."""
    path, _ = good_bundle(stack, db, tmp_path)
    admin = uri(stack, db, TEMPLATE + "_admin")
    before = stack.ctl("audit", "verify", "--db", admin, "--since", path)
    assert before.returncode == 0, before.stdout + before.stderr
    tamper(stack, db, "DELETE FROM audit_checkpoint WHERE chain = 'gw1' AND seq > 20; "
                      "DELETE FROM audit_record WHERE chain = 'gw1' AND seq > 20;")
    alone = ctl_verify_live(stack, db)
    assert alone.returncode == 0, alone.stdout + alone.stderr  # not detectable from the chain
    r = stack.ctl("audit", "verify", "--db", admin, "--since", path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED: chain gw1: seq 27 of the earlier bundle %s: the trail no longer holds it " \
           "(cut since)\n" % path in r.stdout, r.stdout
    inc = stack.psql("SELECT detail FROM incident WHERE kind = 'audit_chain_break'",
                     uri=su(stack, db))
    assert inc and "chain gw1: seq 27 of the earlier bundle" in inc[-1], inc


def test_altered_field_with_its_hash_recomputed_live(stack, db, tmp_path, template):
    """The attacker also rewrites the record's hash column: the next link names seq 12."""
    r = dict(template["gw1"][11])
    r["outcome"] = "refused"
    h = hashlib.sha256(audit_lib.encode_record(r)).digest()
    tamper(stack, db, "UPDATE audit_record SET outcome = 'refused', hash = '\\x%s' "
                      "WHERE chain = 'gw1' AND seq = 12;" % h.hex())
    assert_live_fails(stack, db, tmp_path, "chain gw1: seq 13: prev_hash is not the hash of "
                                           "seq 12")


def test_altered_field_bundle(stack, db, tmp_path):
    _, items = good_bundle(stack, db, tmp_path)
    i = audit_lib.index_of(items, b"R", 12)
    rec, stored = audit_lib.record_of(items[i][1])
    rec["object"] = b"obj-999"
    items[i] = (b"R", audit_lib.record_payload(rec, stored))
    assert_both_fail(stack, write(tmp_path, items, "a.bundle"),
                     "chain gw1: seq 12: the record's content does not match its hash")
    items[i] = (b"R", audit_lib.record_payload(rec))  # hash recomputed too
    assert_both_fail(stack, write(tmp_path, items, "b.bundle"),
                     "chain gw1: seq 13: prev_hash is not the hash of seq 12")


# ---- two records swapped ----

def test_swapped_records_live(stack, db, tmp_path):
    tamper(stack, db, "UPDATE audit_record SET seq = 1000 WHERE chain = 'gw1' AND seq = 8; "
                      "UPDATE audit_record SET seq = 8 WHERE chain = 'gw1' AND seq = 9; "
                      "UPDATE audit_record SET seq = 9 WHERE chain = 'gw1' AND seq = 1000;")
    assert_live_fails(stack, db, tmp_path, "chain gw1: seq 8")


def test_swapped_records_bundle(stack, db, tmp_path):
    _, items = good_bundle(stack, db, tmp_path)
    i, j = audit_lib.index_of(items, b"R", 8), audit_lib.index_of(items, b"R", 9)
    items[i], items[j] = items[j], items[i]
    assert_both_fail(stack, write(tmp_path, items), "chain gw1",
                     "seq 8 expected after seq 7, found seq 9")


# ---- a tail truncated after the last checkpoint ----

def test_tail_truncated_after_the_last_checkpoint_live(stack, db, tmp_path):
    """The checkpoint at 25 was signed; then records 24.. were cut: the checkpoint names them."""
    tamper(stack, db, "DELETE FROM audit_record WHERE chain = 'gw1' AND seq >= 24;")
    assert_live_fails(stack, db, tmp_path, "chain gw1: seq 24..25 missing")


def test_tail_truncated_after_the_last_checkpoint_bundle(stack, db, tmp_path):
    """Records 26 and 27 follow gw1's last checkpoint (25): cut from the bundle, the signed
    manifest names them; cut with everything after them, the bundle has no manifest."""
    _, items = good_bundle(stack, db, tmp_path)
    i = audit_lib.index_of(items, b"C", 25)
    cut = items[:i + 1] + [it for it in items[i + 1:] if it[0] != b"R" or
                           audit_lib.record_of(it[1])[0]["chain"] != b"gw1"]
    assert_both_fail(stack, write(tmp_path, cut, "a.bundle"), "chain gw1",
                     "seq 26..27 missing (tail truncated)")
    assert_both_fail(stack, write(tmp_path, items[:i + 1], "b.bundle"),
                     "bundle truncated: no manifest")
    # cut, and the manifest rewritten to match: only the seal can tell, and it does
    assert_both_fail(stack, write(tmp_path, audit_lib.rebuild_manifest(cut), "c.bundle"),
                     "seal: the signature does not verify")
    # (the rewritten manifest itself is right: with the seal dropped, only the seal is missing)
    unsealed = [it for it in audit_lib.rebuild_manifest(cut) if it[0] != b"Z"]
    assert_both_fail(stack, write(tmp_path, unsealed, "d.bundle"), "no seal after the manifest")


# ---- a forged checkpoint signature ----

def test_forged_checkpoint_signature_live(stack, db, tmp_path, template):
    """The checkpoint at 20 re-signed by a key that is not the trail's (its key id kept)."""
    rogue = audit_lib.rogue_signer(stack.env["WAYGATE_KEYRING"])
    c = template["gw1"][19]
    sig = rogue.sign(audit_lib.checkpoint_msg("gw1", 20, c["hash"], c["at_us"] + 500))
    tamper(stack, db, "UPDATE audit_checkpoint SET signature = '\\x%s' "
                      "WHERE chain = 'gw1' AND seq = 20;" % sig.hex())
    assert_live_fails(stack, db, tmp_path, "chain gw1: checkpoint at seq 20: the signature does "
                                           "not verify")


def test_forged_checkpoint_signature_bundle(stack, db, tmp_path):
    _, items = good_bundle(stack, db, tmp_path)
    i = audit_lib.index_of(items, b"C", 20)
    f = audit_lib.fields(items[i][1])
    sig = bytearray(f[5])
    sig[7] ^= 1
    f[5] = bytes(sig)
    items[i] = (b"C", b"".join(audit_lib.field(x) for x in f))
    assert_both_fail(stack, write(tmp_path, items, "a.bundle"),
                     "chain gw1: checkpoint at seq 20: the signature does not verify")


# ---- junk checkpoints planted inside a chain ----

def failed(r):
    """The places of r's FAILED lines, in order."""
    return [l[len("FAILED: "):] for l in r.stdout.splitlines() if l.startswith("FAILED: ")]


def test_junk_checkpoints_do_not_hide_later_tampering_live(stack, db, tmp_path, template):
    """What the gateway's database role may do to a gateway chain (its grants and row-level
    security let it append checkpoints and keys): plant a checkpoint row with a junk signature at
    seq 15, and one at seq 18 validly signed by a key of its own that it added to audit_key, each
    as if planted when its seq was the head and not yet signed (since sql/045 the role may plant
    one only beyond the chain's last checkpoint, which the template's are not: the superuser puts
    them in). Later record 22 is altered (as the superuser). The live check names
    both junk checkpoints, ignores them and goes on through the chain to the altered record: three
    FAILED lines, three incidents. An export shows the same places to both bundle verifiers with
    the trail's key pinned."""
    kr = stack.env["WAYGATE_KEYRING"]
    trusted = audit_lib.keyring_signer(kr)
    rogue = audit_lib.rogue_signer(kr)
    r15, r18 = template["gw1"][14], template["gw1"][17]
    sig18 = rogue.sign(audit_lib.checkpoint_msg("gw1", 18, r18["hash"], r18["at_us"] + 500))
    stack.psql("INSERT INTO audit_key (key_id, public_key, algorithm) VALUES ('%s', '\\x%s', "
               "'%s'); INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, "
               "signature) VALUES ('gw1', 15, '\\x%s', %d, '%s', '\\x%s'), ('gw1', 18, "
               "'\\x%s', %d, '%s', '\\x%s');"
               % (rogue.key_id, rogue.pub.hex(), rogue.algorithm,
                  r15["hash"].hex(), r15["at_us"] + 500, trusted.key_id, (b"\x5a" * 64).hex(),
                  r18["hash"].hex(), r18["at_us"] + 500, rogue.key_id, sig18.hex()),
               uri=su(stack, db))
    tamper(stack, db, "UPDATE audit_record SET actor = 'someone_else' "
                      "WHERE chain = 'gw1' AND seq = 22;")
    places = ["chain gw1: checkpoint at seq 15: the signature does not verify (forged or altered "
              "checkpoint)",
              "chain gw1: checkpoint at seq 18: signed by key %s..., not by the trusted key %s..."
              % (rogue.key_id[:16], trusted.key_id[:16]),
              "chain gw1: seq 22: the record's content does not match its hash (the record "
              "altered)"]
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert failed(r) == places, r.stdout
    assert "3 broken places (1 of 2 chains, 0 against --since)" in r.stderr, r.stderr
    inc = stack.psql("SELECT severity || '|' || detail FROM incident "
                     "WHERE kind = 'audit_chain_break' ORDER BY id", uri=su(stack, db))
    assert inc == ["critical|" + p for p in places], inc
    # exported as stored; the export's own check pins nothing, so the key listed with the trail
    # passes there: two bad places
    path = str(tmp_path / "junk.bundle")
    e = export(stack, db, path)
    assert "WARNING: does not verify: %s\nWARNING: and 1 more bad place " % places[0] in e.stdout, \
        e.stdout
    c, p = verify_file(stack, path, "--trust-key", trusted.key_id)
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert res.returncode == 1, who + ": " + res.stdout + res.stderr
        assert failed(res) == places, "%s: %s" % (who, res.stdout)


def test_key_rows_listed_twice_or_off_the_curve_hide_nothing(stack, db, tmp_path, template):
    """Rows the gateway's database role could add to audit_key before sql/035 refused them (its
    two checks dropped here, as the superuser, to plant them): the trail's own public key again
    under another key id, a key of its own under two ids, and an SM2 "key" that is not a point of
    the curve. Then gw1's record 22 altered. The live check, and both verifiers on an export, name
    the altered record and nothing else: each public key is listed once, and a row that is no key
    is left out. (Red before: every chain's live check ended at "key ...: listed twice", naming
    no tampering; an export listed the second key twice, and the off-curve one, which
    verify_bundle.py refuses by rule 4.)"""
    signer = template["signer"]
    rogue = audit_lib.rogue_signer(stack.env["WAYGATE_KEYRING"])
    off = b"\x04" + b"\x01" * 64
    rows = [("ab" * 32, signer.pub, signer.algorithm), (rogue.key_id, rogue.pub, rogue.algorithm),
            ("cd" * 32, rogue.pub, rogue.algorithm), (hashlib.sha256(off).hexdigest(), off, "sm2")]
    stack.psql("ALTER TABLE audit_key DROP CONSTRAINT audit_key_id_is_its_hash; "
               "ALTER TABLE audit_key DROP CONSTRAINT audit_key_sm2_on_the_curve; " +
               "".join("INSERT INTO audit_key (key_id, public_key, algorithm) VALUES "
                       "('%s', '\\x%s', '%s'); " % (k, pub.hex(), alg) for k, pub, alg in rows),
               uri=su(stack, db))
    tamper(stack, db, "UPDATE audit_record SET actor = 'someone_else' "
                      "WHERE chain = 'gw1' AND seq = 22;")
    places = ["chain gw1: seq 22: the record's content does not match its hash (the record "
              "altered)"]
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert failed(r) == places, r.stdout
    path = str(tmp_path / "keys.bundle")
    export(stack, db, path)
    with open(path, "rb") as f:
        keys = [audit_lib.fields(p)[1] for t, p in audit_lib.read_items(f.read()) if t == b"K"]
    assert sorted(keys) == sorted([signer.pub, rogue.pub]), keys
    c, p = verify_file(stack, path, "--trust-key", signer.key_id)
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert res.returncode == 1, who + ": " + res.stdout + res.stderr
        assert failed(res) == places, "%s: %s" % (who, res.stdout)


def test_junk_checkpoint_does_not_hide_later_tampering_bundle(stack, db, tmp_path):
    """A checkpoint item with a junk signature put in at seq 15 and record 23 deleted: both
    verifiers name the checkpoint, go on past it, and name the gap too, in the same words; then
    the manifest, which the bundle no longer matches (it was changed after export)."""
    _, items = good_bundle(stack, db, tmp_path)
    rogue = audit_lib.rogue_signer(stack.env["WAYGATE_KEYRING"])
    f = audit_lib.fields(items[audit_lib.index_of(items, b"C", 10)][1])  # its time and key id
    r15 = audit_lib.index_of(items, b"R", 15)
    junk = [b"gw1", b"15", audit_lib.record_of(items[r15][1])[1], f[3], f[4], rogue.sign(b"junk")]
    items.insert(r15 + 1, (b"C", b"".join(audit_lib.field(x) for x in junk)))
    del items[audit_lib.index_of(items, b"R", 23)]
    places = ["chain gw1: checkpoint at seq 15: the signature does not verify (forged or altered "
              "checkpoint)",
              "chain gw1: seq 23 expected after seq 22, found seq 24 (a record missing or out of "
              "order)",
              "chain gw1: the manifest does not describe the bundle's records (it says seq "
              "1..27, 27 records; the bundle has 1..27, 26)"]
    c, p = verify_file(stack, write(tmp_path, items))
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert res.returncode == 1, who + ": " + res.stdout + res.stderr
        assert failed(res) == places, "%s: %s" % (who, res.stdout)


# ---- junk records planted inside a chain ----

NOWHERE = b"\x6a" * 32  # a junk record's prev_hash: the hash of no record


def plant_junk_then_chain_on(stack, db, template):
    """What the gateway's database role may do to gw1 (27 records, checkpoints at 10, 20, 25), as
    that role: a junk record at seq 28, the next free seq, linked to nothing; then what the
    gateway itself does once it meets that row (its insert at 28 fails on the primary key, it
    reads the head again, and the junk is now the head it chains onto): records 29..33 linked
    onward from the junk, and a checkpoint at 31 signed with the trail's key."""
    signer = audit_lib.keyring_signer(stack.env["WAYGATE_KEYRING"])
    last = template["gw1"][-1]
    rows, prev, stmts = [], NOWHERE, []
    for seq in range(28, 34):
        r = dict(last, seq=seq, at_us=last["at_us"] + (seq - 27) * 1_000_000,
                 actor="junk" if seq == 28 else "clerk_1", object="obj-%d" % seq,
                 prev_hash=prev)
        r.pop("hash")
        h = hashlib.sha256(audit_lib.encode_record(r)).digest()
        cols = list(audit_lib.RECORD_FIELDS) + ["hash"]
        stmts.append("INSERT INTO audit_record (%s) VALUES (%s)" % (
            ", ".join(cols), ", ".join(audit_lib.sql_text(v) for v in
                                       [r[k] for k in audit_lib.RECORD_FIELDS] + [h])))
        rows.append(dict(r, hash=h))
        prev = h
        if seq == 31:
            at = r["at_us"] + 500
            stmts.append("INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, "
                         "signature) VALUES ('gw1', 31, %s, %d, %s, %s)"
                         % (audit_lib.sql_text(h), at, audit_lib.sql_text(signer.key_id),
                            audit_lib.sql_text(signer.sign(audit_lib.checkpoint_msg(
                                "gw1", 31, h, at)))))
    stack.psql("; ".join(stmts) + ";", uri=uri(stack, db, TEMPLATE + "_gateway"))
    return signer, rows


JUNK_28 = "chain gw1: seq 28: prev_hash is not the hash of seq 27 (seq 27 altered, or this link)"


def test_junk_record_does_not_hide_later_tampering_live(stack, db, tmp_path, template):
    """A junk record planted at gw1's next seq as the gateway's role, the gateway's records
    chained onto it, then record 32 deleted as the superuser: the live check names the junk, goes
    on through the chain from it, and names the gap too; two incidents; it says how much of the
    chain was checked and how much no valid checkpoint covers (26..27, cut off by the junk: the
    checkpoint at 31 signs a chain through the junk, not through them; and 33). An export shows
    both places, and the same counts, to both bundle verifiers. A junk record cannot take a seq
    already used: the primary key refuses it to the gateway's role."""
    signer, _ = plant_junk_then_chain_on(stack, db, template)
    r = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        "-d", uri(stack, db, TEMPLATE + "_gateway"), "-c",
                        "INSERT INTO audit_record (chain, seq, at_us, actor, action, outcome, "
                        "confidential, prev_hash, hash) VALUES ('gw1', 15, 0, 'x', 'x', 'ok', "
                        "false, decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), "
                        "'hex'))"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "duplicate key" in r.stderr, r.stderr
    tamper(stack, db, "DELETE FROM audit_record WHERE chain = 'gw1' AND seq = 32;")
    places = [JUNK_28, "chain gw1: seq 32 expected after seq 31, found seq 33 (a record missing "
                       "or out of order)"]
    checked = "checked: chain gw1: 32 records, 3 not covered by a valid checkpoint"
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert failed(r) == places, r.stdout
    assert checked in r.stdout.splitlines(), r.stdout
    assert "2 broken places (1 of 2 chains, 0 against --since); in the broken chains 32 " \
           "records checked, 3 not covered by a valid checkpoint" in r.stderr, r.stderr
    inc = stack.psql("SELECT severity || '|' || detail FROM incident "
                     "WHERE kind = 'audit_chain_break' ORDER BY id", uri=su(stack, db))
    assert inc == ["critical|" + p for p in places], inc
    path = str(tmp_path / "junk-record.bundle")
    e = export(stack, db, path)
    assert "WARNING: does not verify: %s\nWARNING: and 1 more bad place " % places[0] \
        in e.stdout, e.stdout
    c, p = verify_file(stack, path, "--trust-key", signer.key_id)
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert res.returncode == 1, who + ": " + res.stdout + res.stderr
        assert failed(res) == places, "%s: %s" % (who, res.stdout)
        assert checked in res.stdout.splitlines(), "%s: %s" % (who, res.stdout)
    assert c.stdout == p.stdout, (c.stdout, p.stdout)


def test_junk_record_does_not_hide_later_tampering_bundle(stack, db, tmp_path, template):
    """The same junk record and the records chained onto it, then record 30 altered as the
    superuser (its stored hash kept): an export, sealed and consistent as the trail is stored,
    shows both places to both verifiers, word for word, with the same counts (28..29 and 26..27
    cut off, 30 itself attested by nothing, 32..33 after the last checkpoint)."""
    signer, _ = plant_junk_then_chain_on(stack, db, template)
    tamper(stack, db, "UPDATE audit_record SET actor = 'someone_else' "
                      "WHERE chain = 'gw1' AND seq = 30;")
    path = str(tmp_path / "junk-record.bundle")
    export(stack, db, path)
    c, p = verify_file(stack, path, "--trust-key", signer.key_id)
    places = [JUNK_28, "chain gw1: seq 30: the record's content does not match its hash (the "
                       "record altered)"]
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert res.returncode == 1, who + ": " + res.stdout + res.stderr
        assert failed(res) == places, "%s: %s" % (who, res.stdout)
        assert "checked: chain gw1: 33 records, 7 not covered by a valid checkpoint" in \
            res.stdout.splitlines(), "%s: %s" % (who, res.stdout)
    assert c.stdout == p.stdout, (c.stdout, p.stdout)
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1 and failed(r) == places, r.stdout + r.stderr


def test_record_the_format_cannot_hold_is_left_out_live(stack, db, tmp_path, template):
    """Rows the bundle format cannot hold, planted before sql/026 refused them (the constraint
    dropped here, as the superuser, to plant them): one with an empty actor in a junk chain '0'
    that sorts first, one with a detail over 1024 bytes at gw1's seq 28 with a record 29 chained
    onto it; and gw1's record 12 altered. The live check names each such row, leaves it out and
    checks on (it used to stop at the first with "invalid argument", checking nothing after it):
    the altered record and the gap left at 28 are named too, an incident each. An export leaves
    each such row out too (it used to fail naming the first, writing no bundle), with a `G` item
    in its place: both bundle verifiers name the same places, word for word."""
    last = template["gw1"][-1]
    r28 = dict(last, seq=28, at_us=last["at_us"] + 1_000_000, detail="x" * 1025,
               prev_hash=last["hash"])
    r28.pop("hash")
    h28 = hashlib.sha256(audit_lib.encode_record(r28)).digest()
    r29 = dict(r28, seq=29, detail=None, prev_hash=h28)
    h29 = hashlib.sha256(audit_lib.encode_record(r29)).digest()
    cols = ", ".join(list(audit_lib.RECORD_FIELDS) + ["hash"])
    rows = ", ".join("(%s)" % ", ".join(audit_lib.sql_text(v) for v in
                                        [r[k] for k in audit_lib.RECORD_FIELDS] + [h])
                     for r, h in ((r28, h28), (r29, h29)))
    tamper(stack, db, "ALTER TABLE audit_record DROP CONSTRAINT audit_record_encodable; "
                      "INSERT INTO audit_chain (id, kind) VALUES ('0', 'gateway'); "
                      "INSERT INTO audit_record (chain, seq, at_us, actor, action, outcome, "
                      "confidential, prev_hash, hash) VALUES ('0', 1, 0, '', 'x', 'ok', false, "
                      "decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')); "
                      "INSERT INTO audit_record (%s) VALUES %s; "
                      "UPDATE audit_record SET actor = 'someone_else' "
                      "WHERE chain = 'gw1' AND seq = 12;" % (cols, rows))
    cannot = "not a record the audit format can hold (an empty actor, or a text over 1024 bytes)"
    places = ["chain 0: seq 1: %s; left out of the check" % cannot,
              "chain gw1: seq 12: the record's content does not match its hash (the record "
              "altered)",
              "chain gw1: seq 28: %s; left out of the check" % cannot,
              "chain gw1: seq 28 expected after seq 27, found seq 29 (a record missing or out of "
              "order)"]
    r = ctl_verify_live(stack, db)
    assert r.returncode == 1, r.stdout + r.stderr
    assert failed(r) == places, r.stdout + r.stderr
    assert "4 broken places (2 of 3 chains, 0 against --since)" in r.stderr, r.stderr
    inc = stack.psql("SELECT detail FROM incident WHERE kind = 'audit_chain_break' ORDER BY id",
                     uri=su(stack, db))
    assert inc == places, inc
    # an export leaves each such row out too, and says so in the bundle (a `G` item in its
    # place): both verifiers name the same places, word for word (it used to fail naming the
    # first row, writing no bundle)
    path = str(tmp_path / "cannot.bundle")
    e = export(stack, db, path)
    assert "chain 0: seq 1: %s; left out of the bundle" % cannot in e.stderr, e.stderr
    assert "chain gw1: seq 28: %s; left out of the bundle" % cannot in e.stderr, e.stderr
    assert "WARNING: does not verify: chain 0: seq 1: %s" % cannot in e.stdout, e.stdout
    in_bundle = [p.replace("left out of the check", "left out of the bundle") for p in places]
    c, p = verify_file(stack, path)
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert res.returncode == 1, who + ": " + res.stdout + res.stderr
        assert failed(res) == in_bundle, "%s: %s" % (who, res.stdout)
    assert c.stdout == p.stdout, (c.stdout, p.stdout)


def test_checkpoint_signed_by_a_key_added_to_the_bundle_is_refused_with_a_trusted_key(
        stack, db, tmp_path):
    """An attacker adds his own key and re-signs the checkpoint at 20 with it (head changed):
    pinning the trail's key id names the checkpoint."""
    _, items = good_bundle(stack, db, tmp_path)
    rogue = audit_lib.rogue_signer(stack.env["WAYGATE_KEYRING"])
    trusted = audit_lib.keyring_signer(stack.env["WAYGATE_KEYRING"]).key_id
    items.insert(1, (b"K", audit_lib.field(rogue.key_id.encode()) + audit_lib.field(rogue.pub) +
                     audit_lib.field(rogue.algorithm.encode())))
    i = audit_lib.index_of(items, b"C", 20)
    f = audit_lib.fields(items[i][1])
    f[4] = rogue.key_id.encode()
    f[5] = rogue.sign(audit_lib.checkpoint_msg("gw1", 20, f[2], int(f[3])))
    items[i] = (b"C", b"".join(audit_lib.field(x) for x in f))
    assert_both_fail(stack, write(tmp_path, items), "chain gw1: checkpoint at seq 20",
                     "not by the trusted key", extra=("--trust-key", trusted))


def test_a_bundle_altered_after_export_fails_its_seal(stack, db, tmp_path):
    """Header changed (it is not in any chain): the manifest's digest, then the seal."""
    _, items = good_bundle(stack, db, tmp_path)
    f = audit_lib.fields(items[0][1])
    f[5] = b"mallory"
    items[0] = (b"H", b"".join(b"\x00" if x is None else audit_lib.field(x) for x in f))
    assert_both_fail(stack, write(tmp_path, items), "manifest: the SHA-256 of the bundle before "
                                                    "it does not match")


# ---- Compliance.ExportAudit: the same bundle over gRPC ----

EXPORT = "/waygate.v1.Compliance/ExportAudit"
T0_GRPC = 1_650_000_000_000_000  # 2022: far from anything else in the shared database


@pytest.fixture(scope="module")
def grpc_chains(stack):
    """Chains grpc1 (27 records) and grpc2 (2500: several batches and chunks) appended to the
    shared database as its owner (valid chains; nothing is altered there)."""
    signer = audit_lib.keyring_signer(stack.env["WAYGATE_KEYRING"])
    sql1, _, _ = audit_lib.build_chain("grpc1", 27, signer, GW1_CKPTS, T0_GRPC)
    stack.psql(sql1)
    sql2, _, _ = audit_lib.build_chain("grpc2", 2500, signer, range(100, 2501, 100),
                                       T0_GRPC + 100_000_000, step_us=1000)
    path = os.path.join(stack.dir, "grpc2.sql")
    with open(path, "w") as f:
        f.write(sql2)
    r = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        "-d", stack.pguri_owner, "-f", path], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return signer


def export_grpc(stack, frm, to, account="auditor"):
    md = stack.login(account)
    req = stack.pb.compliance.ExportAuditRequest(from_time=frm, to_time=to)
    ch = stack.channel(stack.account(account)[2])
    return list(waygate_proto.stream(ch, EXPORT, req, stack.pb.compliance.ExportAuditChunk,
                                     timeout=120, metadata=md))


def assemble(chunks):
    """The bundle bytes; checks offsets, the last flag and the SHA-256."""
    data, off = b"", 0
    for i, c in enumerate(chunks):
        assert c.offset == off, "chunk %d at offset %d, expected %d" % (i, c.offset, off)
        assert c.last == (i == len(chunks) - 1)
        data += c.data
        off += len(c.data)
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()
    return data


def test_export_audit_streams_a_sealed_bundle(stack, grpc_chains, tmp_path):
    frm = T0_GRPC // 1_000_000
    chunks = export_grpc(stack, frm, frm + 50)
    path = str(tmp_path / "grpc.bundle")
    with open(path, "wb") as f:
        f.write(assemble(chunks))
    c, p = assert_good(stack, path, "--trust-key", grpc_chains.key_id)
    assert "1 chains, 27 records, 3 checkpoints" in c.stdout, c.stdout
    assert "1 chains, 27 records, 3 checkpoints" in p.stdout, p.stdout
    hdr = audit_lib.fields(audit_lib.read_items(open(path, "rb").read())[0][1])
    assert hdr[1] == b"waygated" and hdr[5] == stack.account("auditor")[0].encode()


def test_export_audit_of_many_batches_and_chunks(stack, grpc_chains, tmp_path):
    frm = (T0_GRPC + 100_000_000) // 1_000_000
    chunks = export_grpc(stack, frm, frm + 10)
    assert len(chunks) > 5
    path = str(tmp_path / "grpc2.bundle")
    data = assemble(chunks)
    with open(path, "wb") as f:
        f.write(data)
    c, p = assert_good(stack, path, "--trust-key", grpc_chains.key_id)
    assert "1 chains, 2500 records, 25 checkpoints" in c.stdout, c.stdout
    # the same range through the CLI gives the same records and checkpoints
    cli = str(tmp_path / "cli.bundle")
    r = stack.ctl("audit", "export", "--from", frm, "--to", frm + 10, "--out", cli, "--keyring",
                  stack.env["WAYGATE_KEYRING"], "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    body = lambda d: [it for it in audit_lib.read_items(d) if it[0] in (b"R", b"C", b"K")]
    assert body(data) == body(open(cli, "rb").read())
    # and tampering with it is caught as with any bundle
    items = audit_lib.read_items(data)
    del items[audit_lib.index_of(items, b"R", 1234)]
    assert_both_fail(stack, write(tmp_path, items), "chain grpc2",
                     "seq 1234 expected after seq 1233")


def test_export_audit_across_a_reload_is_sealed_with_the_key_it_started_with(stack, grpc_chains,
                                                                            tmp_path):
    """A SIGHUP while an export streams frees the keyring the export started under (the gateway
    reads the keyring file again, even unchanged): the export seals the bundle at its end with
    its own copy of the audit key it took at its start, and the bundle verifies. Before, it kept
    a pointer into the freed keyring and read freed memory as its private key (a review found it
    under AddressSanitizer); without the sanitizer the seal's own check failed the export at its
    end. The export is held mid-way by a lock on audit_checkpoint while the gateway reloads."""
    import threading
    from conftest import lock_holder, release_holder
    frm = T0_GRPC // 1_000_000
    md = stack.login("auditor")
    ch = stack.channel(stack.account("auditor")[2])

    def count(text):
        return sum(text in line for line in stack.log_lines())
    started, reloaded = count("audit export of ["), count("SIGHUP: policy reloaded")
    res = {}

    def run():
        try:
            res["chunks"] = list(waygate_proto.stream(
                ch, EXPORT, stack.pb.compliance.ExportAuditRequest(from_time=frm, to_time=frm + 50),
                stack.pb.compliance.ExportAuditChunk, timeout=150, metadata=md))
        except grpc.RpcError as e:
            res["error"] = (e.code(), e.details())
    holder = lock_holder(stack, "LOCK TABLE audit_checkpoint IN ACCESS EXCLUSIVE MODE")
    t = threading.Thread(target=run)
    try:
        t.start()
        assert wait_for(lambda: count("audit export of [") > started, 30), "no export started"
        os.kill(stack.gateway_pid(), signal.SIGHUP)
        assert wait_for(lambda: count("SIGHUP: policy reloaded") > reloaded, 30), "no reload"
        assert "chunks" not in res and "error" not in res  # still held by the lock
    finally:
        release_holder(holder)
    t.join(180)
    assert "error" not in res, res.get("error")
    path = str(tmp_path / "reload.bundle")
    with open(path, "wb") as f:
        f.write(assemble(res["chunks"]))
    c, p = assert_good(stack, path, "--trust-key", grpc_chains.key_id)
    assert "1 chains, 27 records, 3 checkpoints" in c.stdout, c.stdout


def test_export_audit_is_recorded_before_anything_is_sent(stack, grpc_chains):
    """audit.export on the gateway's chain, with who and the range; with the gateway unable to
    write audit records, the export fails and sends nothing (fail closed)."""
    frm = T0_GRPC // 1_000_000
    export_grpc(stack, frm, frm + 7)
    rows = stack.psql("SELECT actor || '|' || coalesce(role, '') || '|' || object FROM "
                      "audit_record WHERE action = 'audit.export' AND chain <> 'ctl' "
                      "ORDER BY at_us DESC LIMIT 1")
    assert rows == ["%s|compliance_auditor|%d..%d" % (stack.account("auditor")[0], frm,
                                                      frm + 7)], rows
    md = stack.login("auditor")  # before: a login is itself an audit record
    ch = stack.channel(stack.account("auditor")[2])
    with stack.audit_insert_revoked("waygate_gateway"):
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for c in waygate_proto.stream(
                    ch, EXPORT,
                    stack.pb.compliance.ExportAuditRequest(from_time=frm, to_time=frm + 7),
                    stack.pb.compliance.ExportAuditChunk, timeout=60, metadata=md):
                got.append(c)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
        assert "could not be written, so nothing was released" in e.value.details()
        assert got == []


def test_export_audit_refuses_a_reversed_range(stack):
    with pytest.raises(grpc.RpcError) as e:
        export_grpc(stack, 100, 50)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("to_time: must make a range"), e.value.details()


def test_both_verifiers_refuse_every_flipped_byte_in_the_same_words(stack, db, tmp_path):
    """60 bytes of a good bundle, chosen at random (fixed seed), each altered alone: both
    verifiers refuse each one and name the same first bad place, word for word (the format
    document is exact enough for two independent verifiers to agree)."""
    import random
    path, _ = good_bundle(stack, db, tmp_path)
    with open(path, "rb") as f:
        data = f.read()
    rnd = random.Random(8)
    for pos in sorted(rnd.sample(range(len(data)), 60)):
        d = bytearray(data)
        d[pos] ^= 1 << rnd.randrange(8)
        bad = str(tmp_path / "flip.bundle")
        with open(bad, "wb") as f:
            f.write(d)
        c, p = verify_file(stack, bad)
        assert c.returncode == 1 and p.returncode == 1, (pos, c.stdout, p.stdout)
        assert c.stdout.strip() == p.stdout.strip(), (pos, c.stdout, p.stdout)


def test_the_trail_the_gateway_and_the_cli_wrote_verifies(stack, grpc_chains, tmp_path):
    """The shared database's real trail: the gateway's own chain (store/audit.c: gateway.start
    and whatever the session did) and the CLI's chain 'ctl' (devstack's commands), checked live
    and as a bundle by both verifiers, the trail's key pinned."""
    gw_chains = stack.psql("SELECT DISTINCT chain FROM audit_record WHERE action = "
                           "'gateway.start'")
    assert gw_chains, "the gateway wrote no gateway.start record"
    r = stack.ctl("audit", "verify", "--db", stack.pguri, "--trust-key", grpc_chains.key_id)
    assert r.returncode == 0, r.stdout + r.stderr
    # as deploy/quickstart runs it (after . var/env): pinned by $WAYGATE_KEYRING's audit keys
    r = stack.ctl("audit", "verify", "--db", stack.pguri)
    assert r.returncode == 0 and "signers pinned: the audit key" in r.stdout, r.stdout + r.stderr
    path = str(tmp_path / "real.bundle")
    r = stack.ctl("audit", "export", "--from", "0", "--to", FAR, "--out", path, "--keyring",
                  stack.env["WAYGATE_KEYRING"], "--db", stack.pguri)
    assert r.returncode == 0 and "WARNING" not in r.stdout, r.stdout + r.stderr
    c, p = assert_good(stack, path, "--trust-key", grpc_chains.key_id)
    with open(path, "rb") as f:
        items = audit_lib.read_items(f.read())
    chains = {audit_lib.record_of(p)[0]["chain"].decode() for t, p in items if t == b"R"}
    assert set(gw_chains) <= chains and "ctl" in chains, chains


def test_export_audit_cancelled_midway_leaves_the_gateway_well(stack, grpc_chains):
    """A client that goes away after the first chunk: the export stops (its reads cancelled, its
    memory freed) and the next export is whole."""
    frm = (T0_GRPC + 100_000_000) // 1_000_000
    for _ in range(3):
        call = waygate_proto.stream(
            stack.channel(stack.account("auditor")[2]), EXPORT,
            stack.pb.compliance.ExportAuditRequest(from_time=frm, to_time=frm + 10),
            stack.pb.compliance.ExportAuditChunk, timeout=60, metadata=stack.login("auditor"))
        first = next(call)
        assert first.offset == 0 and not first.last
        call.cancel()
    assert stack.health() == "SERVING"
    data = assemble(export_grpc(stack, frm, frm + 10))
    assert data.count(b"grpc2") > 2500


# ---- a head the gateway did not write (a gateway on a test database of its own) ----

class DbGateway:
    """A waygated on test database db, as its gateway role (wgaudit_gateway), on a free port,
    with audit chain `chain`; start() (again after stop()) waits until it answers SERVING. Its
    records go to db only: the shared trail, which later tests verify whole, is not touched."""

    def __init__(self, stack, db, name, checkpoint_ms=500):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.stack, self.db, self.addr, self.chain = stack, db, "127.0.0.1:%d" % port, name
        text = stack.config_for(port) + "\n[audit]\nchain = %s\ncheckpoint_ms = %d\n" % (
            name, checkpoint_ms)
        text, n = re.subn(r"(?m)^conninfo\s*=.*$",
                          "conninfo = " + uri(stack, db, TEMPLATE + "_gateway"), text)
        assert n == 1, "no single [database] conninfo in the stack's config"
        self.conf = os.path.join(stack.dir, "%s-%s.conf" % (db, name))
        with open(self.conf, "w") as f:
            f.write(text)
        self.log_path = self.conf[:-5] + ".log"
        self.proc = None

    def start(self):
        if self.proc is None:  # the certificates it accepts: the dev stack's principals
            copy_rows(self.stack, self.db, "principal")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([os.path.join(BUILD, "waygated"), "-c", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if not wait_for(lambda: self.proc.poll() is None and self.stack.health(
                "backend", addr=self.addr, timeout=2) == "SERVING", 60):
            self.stop()
            pytest.fail("gateway on %s did not become SERVING:\n%s" % (self.db, self.log()))

    def stop(self):
        """SIGTERM: it drains (a checkpoint over its last record) and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        """SIGKILL: no drain, so its records since the last checkpoint stay unsigned."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def rows(self, where="true"):
        """'seq|action|object|prev_hash hex|hash hex' of its chain's records, by seq."""
        return self.stack.psql(
            "SELECT seq || '|' || action || '|' || coalesce(object, '') || '|' || "
            "encode(prev_hash, 'hex') || '|' || encode(hash, 'hex') FROM audit_record WHERE "
            "chain = '%s' AND %s ORDER BY seq" % (self.chain, where), uri=su(self.stack, self.db))


@pytest.fixture
def dbgw(stack, db):
    made = []

    def make(name, **kw):
        g = DbGateway(stack, db, name, **kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.stop()


def plant_head(stack, db, chain, role="gateway", linked=False):
    """As the gateway's database role (or the CLI's, role "admin"): a record at chain's next seq
    whose hash is its content's, but linked to nothing (prev_hash NOWHERE), or with linked, linked
    properly (prev_hash the head's hash), the kind of row that role may insert. Returns its seq
    and stored hash."""
    seq = int(stack.psql("SELECT max(seq) FROM audit_record WHERE chain = '%s'" % chain,
                         uri=su(stack, db))[0]) + 1
    prev = bytes.fromhex(stack.psql("SELECT encode(hash, 'hex') FROM audit_record WHERE chain = "
                                    "'%s' AND seq = %d" % (chain, seq - 1),
                                    uri=su(stack, db))[0]) if linked else NOWHERE
    at = int(stack.psql("SELECT max(at_us) FROM audit_record WHERE chain = '%s'" % chain,
                        uri=su(stack, db))[0]) + 1
    r = dict(chain=chain, seq=seq, at_us=at, actor="junk", role="branch_clerk", peer=None,
             cert=None, branch="a", action="reveal", object="planted", count=None, purpose=None,
             legal_basis=None, approval=None, outcome="ok", detail=None, confidential=False,
             prev_hash=prev)
    h = hashlib.sha256(audit_lib.encode_record(r)).digest()
    cols = list(audit_lib.RECORD_FIELDS) + ["hash"]
    stack.psql("INSERT INTO audit_record (%s) VALUES (%s)" % (
        ", ".join(cols), ", ".join(audit_lib.sql_text(v) for v in
                                   [r[k] for k in audit_lib.RECORD_FIELDS] + [h])),
        uri=uri(stack, db, TEMPLATE + "_" + role))
    return seq, h


def link_fault(chain, seq):
    return "chain %s: seq %d: prev_hash is not the hash of seq %d (seq %d altered, or this " \
           "link)" % (chain, seq, seq - 1, seq - 1)


def assert_break_after(stack, db, gw, seq, planted):
    """The record after the planted head (seq) names it and is linked to nothing; the next one
    follows it; a critical audit_head_rejected incident says why; a checkpoint of the trail's
    key covers the new segment; and both verifiers, live and on an export, name the planted head
    and the break, and count the planted record as covered by nothing."""
    rows = [r.split("|") for r in gw.rows("seq >= %d" % seq)]
    assert rows[0][:2] == [str(seq), "reveal"] and rows[0][4] == planted.hex(), rows
    brk = rows[1]
    assert brk[:4] == [str(seq + 1), "audit.break", "seq %d" % seq, "00" * 32], rows
    assert len(rows) > 2 and rows[2][3] == brk[4], rows  # the new segment goes on from it
    why = "chain %s: seq %d: its prev_hash is not the hash of the record before it; not " \
          "chained onto: a new segment starts at seq %d, linked to nothing" % (gw.chain, seq,
                                                                            seq + 1)
    assert stack.psql("SELECT severity || '|' || detail FROM incident WHERE kind = "
                      "'audit_head_rejected'", uri=su(stack, db)) == ["critical|" + why]
    assert stack.psql("SELECT detail FROM audit_record WHERE chain = '%s' AND seq = %d"
                      % (gw.chain, seq + 1), uri=su(stack, db)) == [why]
    places = [link_fault(gw.chain, seq), link_fault(gw.chain, seq + 1)]
    r = ctl_verify_live(stack, db)
    assert [x for x in failed(r) if x.startswith("chain %s:" % gw.chain)] == places, r.stdout
    # the planted record alone is covered by nothing (not cut off: the records before it were
    # signed before it came)
    checked = [x for x in r.stdout.splitlines() if x.startswith("checked: chain %s:" % gw.chain)]
    n = len(gw.rows())
    assert checked == ["checked: chain %s: %d records, 1 not covered by a valid checkpoint"
                       % (gw.chain, n)], r.stdout
    path = os.path.join(stack.dir, "%s-%s.bundle" % (db, gw.chain))
    export(stack, db, path)
    c, p = verify_file(stack, path)
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert [x for x in failed(res) if x.startswith("chain %s:" % gw.chain)] == places, \
            "%s: %s" % (who, res.stdout)
        assert checked[0] in res.stdout.splitlines(), "%s: %s" % (who, res.stdout)
    assert c.stdout == p.stdout, (c.stdout, p.stdout)


def test_a_forged_head_is_not_chained_onto_at_start(stack, db, dbgw):
    """The gateway's role puts a record linked to nothing at the next seq of a stopped gateway's
    chain. Started again, the gateway reads it as its head, finds that its prev_hash is not the
    hash of the record before it, and does not chain onto it (the link would vouch for it): its
    first record, audit.break, names the planted seq and starts a new segment linked to nothing
    (32 zero bytes), with a critical incident and a checkpoint over it; gateway.start follows.
    The verifiers name the planted record and the break, and count the planted record as covered
    by nothing. Started once more, the gateway takes its own signed head: no second break."""
    gw = dbgw("head-start")
    gw.start()
    assert wait_for(lambda: gw.rows("action = 'gateway.start'"), 30), gw.log()
    gw.stop()
    seq, planted = plant_head(stack, db, gw.chain)
    gw.start()
    assert wait_for(lambda: len(gw.rows("action = 'gateway.start'")) == 2, 30), gw.log()
    assert [r.split("|")[1] for r in gw.rows("seq > %d" % seq)] == ["audit.break",
                                                                    "gateway.start"]
    assert "chain %s: the head at seq %d fails its check (its prev_hash is not the hash of the " \
           "record before it): not chained onto" % (gw.chain, seq) in gw.log(), gw.log()
    gw.stop()
    gw.start()
    assert wait_for(lambda: len(gw.rows("action = 'gateway.start'")) == 3, 30), gw.log()
    gw.stop()
    assert len(gw.rows("action = 'audit.break'")) == 1
    assert_break_after(stack, db, gw, seq, planted)


def test_a_forged_head_met_on_a_clash_is_not_chained_onto(stack, db, dbgw):
    """The gateway's role puts a record linked to nothing at the next seq of a running gateway's
    chain. The gateway's next insert meets it on the primary key; it reads the head again, finds
    it fails its check and starts a new segment instead of chaining onto it (it used to link its
    records to the planted one, which then looked like part of the chain): audit.break names it,
    the refusal that met it is recorded after the break, and the verifiers agree."""
    gw = dbgw("head-clash")
    gw.start()
    # gateway.start, and the checkpoint over it (at most checkpoint_ms later)
    assert wait_for(lambda: stack.psql(
        "SELECT count(*) FROM audit_checkpoint WHERE chain = '%s' AND seq = 1" % gw.chain,
        uri=su(stack, db)) == ["1"], 30), gw.log()
    seq, planted = plant_head(stack, db, gw.chain)
    ch = stack.channel("courier_a", addr=gw.addr)
    req = stack.pb.admin.CreateAccountRequest(account="x", role="branch_clerk", branch="a",
                                              initial_password="Aa1-" + "x" * 16)
    with pytest.raises(grpc.RpcError) as e:
        waygate_proto.unary(ch, "/waygate.v1.Admin/CreateAccount", req,
                            stack.pb.admin.CreateAccountResponse)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert wait_for(lambda: gw.rows("action = 'admin.refused'"), 30), gw.log()
    assert [r.split("|")[1] for r in gw.rows("seq > %d" % seq)] == ["audit.break",
                                                                    "admin.refused"]
    assert "sequence taken by another writer" in gw.log(), gw.log()
    gw.stop()
    assert_break_after(stack, db, gw, seq, planted)


def test_a_linked_head_without_the_writer_mac_is_not_chained_onto(stack, db, dbgw):
    """A gateway killed (SIGKILL: no drain, its head signed by no checkpoint) takes its own head
    again at restart: the writer MAC beside it is its keyring's. Then the gateway's role puts at
    the next seq of its chain, stopped, a record that links properly (its prev_hash the head's
    hash, its hash its content's): all a record hash can show. Started again, the gateway finds
    no writer MAC of its keyring beside it and does not chain onto it: audit.break names it and
    starts a new segment, with a critical incident saying why, and the live check names the
    break. (Red before sql/028: the gateway chained onto the planted record and its next
    checkpoint covered it, which no verifier can tell.)"""
    gw = dbgw("head-linked", checkpoint_ms=3_600_000)
    gw.start()
    assert wait_for(lambda: gw.rows("action = 'gateway.start'"), 30), gw.log()
    gw.kill()
    assert stack.psql("SELECT count(*) FROM audit_checkpoint WHERE chain = '%s'" % gw.chain,
                      uri=su(stack, db)) == ["0"]  # only its writer MAC can vouch for the head
    gw.start()
    assert wait_for(lambda: len(gw.rows("action = 'gateway.start'")) == 2, 30), gw.log()
    rows = [r.split("|") for r in gw.rows()]
    assert [r[1] for r in rows] == ["gateway.start", "gateway.start"] and \
        rows[1][3] == rows[0][4], rows
    gw.stop()
    seq, planted = plant_head(stack, db, gw.chain, linked=True)
    gw.start()
    assert wait_for(lambda: len(gw.rows("action = 'gateway.start'")) == 3, 30), gw.log()
    gw.stop()
    rows = [r.split("|") for r in gw.rows("seq >= %d" % seq)]
    assert rows[0][:2] == [str(seq), "reveal"] and rows[0][4] == planted.hex(), rows
    assert rows[1][:4] == [str(seq + 1), "audit.break", "seq %d" % seq, "00" * 32], rows
    assert rows[2][1] == "gateway.start" and rows[2][3] == rows[1][4], rows
    why = "chain %s: seq %d: it carries no writer MAC; not chained onto: a new segment starts " \
          "at seq %d, linked to nothing" % (gw.chain, seq, seq + 1)
    assert stack.psql("SELECT severity || '|' || detail FROM incident WHERE kind = "
                      "'audit_head_rejected'", uri=su(stack, db)) == ["critical|" + why]
    r = ctl_verify_live(stack, db)
    assert [x for x in failed(r) if x.startswith("chain %s:" % gw.chain)] == \
        [link_fault(gw.chain, seq + 1)], r.stdout


class CtlChain:
    """Chain ctl of test database db, read as DbGateway reads its own (assert_break_after)."""
    chain = "ctl"

    def __init__(self, stack, db):
        self.stack, self.db = stack, db

    rows = DbGateway.rows


def test_a_forged_head_is_not_chained_onto_by_the_cli(stack, db):
    """waygatectl checks the head of chain ctl as the gateway checks its own: the CLI's role puts a
    record linked to nothing at ctl's next seq; the next command that records (here a monthly
    report: started, then ok) does not chain onto it: audit.break names the planted seq and
    starts a new segment linked to nothing, with a critical audit_head_rejected incident, its
    records follow the break under its signed checkpoint, and the verifiers name the planted record
    and the break. The next record chains onto the CLI's own signed head: no second break. (Red
    before: the CLI linked its record to the planted one, which its checkpoint then covered.)"""
    seq, planted = plant_head(stack, db, "ctl", role="admin")
    month = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).strftime("%Y-%m")
    r = stack.ctl("report", "monthly", "--month", month, "--db", uri(stack, db, TEMPLATE + "_admin"))
    assert r.returncode == 0, r.stderr
    assert "chain ctl: seq %d: its prev_hash is not the hash of the record before it" % seq \
        in r.stderr, r.stderr
    ctl = CtlChain(stack, db)
    assert [x.split("|")[1] for x in ctl.rows("seq > %d" % seq)] == [
        "audit.break", "report.generate", "report.generate"]
    assert_break_after(stack, db, ctl, seq, planted)


def copy_rows(stack, db, table, where="true"):
    """The rows of the dev stack's table that match where, copied into test database db."""
    rows = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                           stack.pguri_owner, "-c", "COPY (SELECT * FROM %s WHERE %s) TO STDOUT"
                           % (table, where)], capture_output=True, text=True, timeout=60)
    assert rows.returncode == 0 and rows.stdout, rows.stderr
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                        su(stack, db), "-c", "COPY %s FROM STDIN" % table], input=rows.stdout,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_export_audit_leaves_out_a_row_the_format_cannot_hold(stack, db, dbgw, template,
                                                              tmp_path):
    """Compliance.ExportAudit over a row the bundle format cannot hold (a 1025-byte detail at
    gw1's seq 28, planted with sql/026's constraint dropped, and a record 29 chained onto it):
    the export succeeds (it used to fail midway, naming nothing to the caller), the row is left
    out and a `G` item in its place names it; both verifiers name it and the gap it leaves, word
    for word, and the rest of the trail verifies as usual."""
    last = template["gw1"][-1]
    r28 = dict(last, seq=28, at_us=last["at_us"] + 1_000_000, detail="x" * 1025,
               prev_hash=last["hash"])
    r28.pop("hash")
    h28 = hashlib.sha256(audit_lib.encode_record(r28)).digest()
    r29 = dict(r28, seq=29, at_us=r28["at_us"] + 1_000_000, detail=None, prev_hash=h28)
    h29 = hashlib.sha256(audit_lib.encode_record(r29)).digest()
    cols = ", ".join(list(audit_lib.RECORD_FIELDS) + ["hash"])
    rows = ", ".join("(%s)" % ", ".join(audit_lib.sql_text(v) for v in
                                        [r[k] for k in audit_lib.RECORD_FIELDS] + [h])
                     for r, h in ((r28, h28), (r29, h29)))
    tamper(stack, db, "ALTER TABLE audit_record DROP CONSTRAINT audit_record_encodable; "
                      "INSERT INTO audit_record (%s) VALUES %s;" % (cols, rows))
    account, pw, via = stack.account("auditor")
    copy_rows(stack, db, "account", "name = '%s'" % account)
    gw = dbgw("export")
    gw.start()
    ch = stack.channel(via, addr=gw.addr)
    token = stack.login_response(account, pw, via, addr=gw.addr).token
    chunks = list(waygate_proto.stream(
        ch, EXPORT, stack.pb.compliance.ExportAuditRequest(from_time=0, to_time=int(FAR)),
        stack.pb.compliance.ExportAuditChunk, timeout=120,
        metadata=[("authorization", "Bearer " + token)]))
    path = str(tmp_path / "grpc-cannot.bundle")
    with open(path, "wb") as f:
        f.write(assemble(chunks))
    places = ["chain gw1: seq 28: not a record the audit format can hold (an empty actor, or a "
              "text over 1024 bytes); left out of the bundle",
              "chain gw1: seq 28 expected after seq 27, found seq 29 (a record missing or out of "
              "order)"]
    c, p = verify_file(stack, path)
    for who, res in (("waygatectl", c), ("verify_bundle.py", p)):
        assert res.returncode == 1, who + ": " + res.stdout + res.stderr
        assert failed(res) == places, "%s: %s" % (who, res.stdout)
    assert c.stdout == p.stdout, (c.stdout, p.stdout)
    assert "audit export: chain gw1: seq 28: not a record the audit format can hold; left out " \
           "of the bundle" in gw.log(), gw.log()
