"""The database knows which key each KEK version is (Art. 36, sql/036_kek_version.sql).

A KEK version was only a number: `keys retire` pointed at the wrong database counted no record
under it there and erased the key the other database still needed, and two copies of a key file
rotated apart gave one version two keys. Now each database keeps the check value of every KEK
version a keyring brought to it (HMAC of "waygate-kek-check-v1" under the KEK), the first one
seen; a keyring whose version N is another key is refused by the CLI and by a gateway started on
it, and `keys retire` refuses a version the database never met. The divergent keyrings here meet
only a database of their own (wgkek), never the stack's, whose keyring the other tests use."""

import base64
import hashlib
import hmac
import os
import re
import shutil
import signal

import pytest

from conftest import ExtraGateway, wait_for
from test_intake import KEK_LINE, SUITE, SUITE_BYTE

DB = "wgkek"
RULE = ("%s KEK version %d in this keyring is not the key this database knows as %s version %d: "
        "wrong database or a divergent keyring copy")


def uri(stack, db, user):
    return re.sub(r"user=[^&]*", "user=" + user,
                  stack.pguri_owner.replace("postgresql:///waygate?", "postgresql:///%s?" % db))


@pytest.fixture(scope="module")
def second(stack):
    """A second migrated database in the stack's cluster, which never met the stack's keyring:
    its admin role's URI."""
    su = uri(stack, "postgres", "postgres")
    stack.psql("DROP DATABASE IF EXISTS %s" % DB, uri=su)
    stack.psql("CREATE DATABASE %s OWNER waygate" % DB, uri=su)
    r = stack.ctl("migrate", "--db", uri(stack, DB, "postgres"))
    assert r.returncode == 0, r.stderr
    yield uri(stack, DB, DB + "_admin")
    stack.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB, uri=su)
    for role in (DB + "_gateway", DB + "_admin"):
        stack.psql("DROP ROLE IF EXISTS %s" % role, uri=su)


def kek_lines(path):
    """{version: base64 key or None (retired)} of SUITE's KEKs in the key file at path."""
    out = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[0] == KEK_LINE:
                out[int(p[1])] = p[3] if p[2] == "active" else None
    return out


def diverged_copy(stack, name):
    """A copy of the stack's key file with a KEK version newest+1 of its own, as a copy rotated
    apart has: (path, the stack's newest version)."""
    path = os.path.join(stack.dir, name)
    shutil.copy(stack.env["WAYGATE_KEYRING"], path)
    os.chmod(path, 0o600)
    newest = max(kek_lines(path))
    with open(path, "a") as f:
        f.write("%s %d active %s\n" % (KEK_LINE, newest + 1,
                                       base64.b64encode(os.urandom(32)).decode()))
    return path, newest


def test_the_stacks_keyring_is_registered_on_its_first_contact(stack):
    """The upgrade path: a database migrated to sql/036 learns the versions in use when a gateway
    meets it (the stack's started after the migration), each under its check value: the MAC of
    the label under the KEK, never the key."""
    keys = {v: k for v, k in kek_lines(stack.env["WAYGATE_KEYRING"]).items() if k}
    rows = stack.psql("SELECT version, encode(check_value, 'hex'), first_seen_by FROM kek_version "
                      "WHERE suite = %d ORDER BY version" % SUITE_BYTE)
    known = {int(r.split("|")[0]): r.split("|")[1:] for r in rows}
    assert set(keys) <= set(known), (keys.keys(), rows)
    for v, key in keys.items():
        value, by = known[v]
        assert by, rows
        assert value != base64.b64decode(key).hex()
        if SUITE == "aes":  # HMAC-SM3 is not in Python's hashlib
            assert value == hmac.new(base64.b64decode(key), b"waygate-kek-check-v1",
                                     hashlib.sha256).hexdigest(), v


def test_retire_against_a_database_that_never_met_the_key_is_refused(stack, second):
    """`keys retire` pointed at the wrong database: no record is under the version there, but the
    database never met the key, so it cannot vouch that nothing is sealed under it. Refused, and
    the KEK stays in the key file."""
    stack.psql("DELETE FROM kek_version", uri=uri(stack, DB, "postgres"))  # the other tests'
    path, old = diverged_copy(stack, "kek-retire-wrong-db")
    before = kek_lines(path)
    r = stack.ctl("keys", "retire", "--suite", SUITE, "--keyring", path, "--version", old,
                  "--db", second)
    assert r.returncode != 0, r.stdout
    assert "the database has no record of %s KEK version %d" % (SUITE, old) in r.stderr, r.stderr
    assert "nothing was erased" in r.stderr, r.stderr
    assert kek_lines(path) == before and before[old], "the KEK was erased from the key file"
    assert stack.psql("SELECT count(*) FROM kek_retired", uri=uri(stack, DB, "postgres")) == ["0"]


def test_two_copies_rotated_apart_the_second_is_refused(stack, second):
    """Two copies of the key file each made a version newest+1 of their own. The first to meet
    the database registers it; the other is refused by the CLI (naming the version and the rule)
    and by a gateway started on it, which exits with a critical line and a kek_mismatch incident,
    and the stored check value stays the first one's."""
    one, newest = diverged_copy(stack, "kek-copy-one")
    two, _ = diverged_copy(stack, "kek-copy-two")
    owner = uri(stack, DB, "postgres")
    stack.psql("DELETE FROM kek_version", uri=owner)  # the other tests' copies
    r = stack.ctl("keys", "rewrap", "--suite", SUITE, "--keyring", one, "--db", second)
    assert r.returncode == 0, r.stderr
    value = "SELECT encode(check_value, 'hex') FROM kek_version WHERE suite = %d AND version = %d" \
        % (SUITE_BYTE, newest + 1)
    first = stack.psql(value, uri=owner)
    assert len(first) == 1, first
    rule = RULE % (SUITE, newest + 1, SUITE, newest + 1)
    for args in (("rewrap", "--suite", SUITE), ("status",),
                 ("retire", "--suite", SUITE, "--version", newest)):
        r = stack.ctl("keys", *args, "--keyring", two, "--db", second)
        assert r.returncode != 0, (args, r.stdout)
        assert rule in r.stderr, (args, r.stderr)
    # a third, plain copy would rotate to a second newest+1: refused before its file changes
    plain = os.path.join(stack.dir, "kek-copy-plain")
    shutil.copy(stack.env["WAYGATE_KEYRING"], plain)
    os.chmod(plain, 0o600)
    r = stack.ctl("keys", "rotate", "--suite", SUITE, "--keyring", plain, "--db", second)
    assert r.returncode != 0, r.stdout
    assert "another copy of the keyring was rotated" in r.stderr, r.stderr
    assert max(kek_lines(plain)) == newest

    def on_second(keyring):
        def edit(text):
            text = re.sub(r"(?m)^keyring\s*=.*$", "keyring = " + keyring, text)
            return text.replace("postgresql:///waygate?", "postgresql:///%s?" % DB).replace(
                "user=waygate_gateway", "user=%s_gateway" % DB)
        return edit

    gw = ExtraGateway(stack, "kek-two", edit=on_second(two), serving=False)
    try:
        rc = gw.proc.wait(120)  # the start is refused once the database answered
    finally:
        gw.close()
    log = gw.log()
    assert rc == 2, log[-2000:]
    assert re.search(r"critical: \[keys\] keyring %s: %s: refusing to start"
                     % (re.escape(two), re.escape(rule)), log), log[-2000:]
    rows = stack.psql("SELECT severity, detail FROM incident WHERE kind = 'kek_mismatch'",
                      uri=owner)
    assert rows == ["critical|" + rule], rows
    assert stack.psql(value, uri=owner) == first


def test_a_reload_before_the_start_check_answered_is_no_mismatch(stack):
    """A SIGHUP while the keyring loaded at start still waits for the database (here a database
    that does not exist, so the start's check retries) is refused as not yet checked: no critical
    kek_mismatch line, since nothing was compared. Before, the busy guard answered as a mismatch
    would, and the reload logged (and, had the database come back, recorded) a false
    kek_mismatch."""
    def nowhere(text):
        return text.replace("postgresql:///waygate?", "postgresql:///wgkek_nowhere?")

    gw = ExtraGateway(stack, "kek-nodb", edit=nowhere, serving=False)
    try:
        assert wait_for(lambda: "are not yet checked against the database" in gw.log(), 60), \
            gw.log()[-2000:]
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "SIGHUP: nothing reloaded" in gw.log(), 60), gw.log()[-2000:]
        log = gw.log()
        assert "SIGHUP: keyring refused: the keyring loaded at start is not yet checked against " \
            "the database" in log, log[-2000:]
        assert "kek_mismatch" not in log and "critical: [keys]" not in log, log[-2000:]
        assert gw.proc.poll() is None, log[-2000:]
    finally:
        gw.close()
