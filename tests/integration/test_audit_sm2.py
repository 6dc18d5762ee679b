"""SM2-signed audit checkpoints and bundles (issue 11; docs/audit-bundle-format.md).

A gateway configured with `[crypto] suite = sm` signs its chain's checkpoints and the bundles it
exports with SM2 (SM3, identifier 1234567812345678) under the keyring's `sm.audit` key; the
keys are stored with their algorithm, and a trail holding both Ed25519 and SM2 checkpoints
verifies whole. The bundle is checked by both verifiers: `waygatectl audit verify FILE` (C,
OpenSSL) and tests/audit/verify_bundle.py, whose SM2 is tests/audit/sm_verify.py (pure Python,
no OpenSSL). A forged SM2 checkpoint signature and a forged SM2 seal are refused by both, naming
the place. waygatectl with an sm-only keyring signs its own chain and its exports with SM2 too.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

import audit_lib
import waygate_proto
from conftest import BUILD, ExtraGateway, bearer, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYVERIFY = os.path.join(ROOT, "tests", "audit", "verify_bundle.py")
sys.path.insert(0, os.path.join(ROOT, "tests", "audit"))
import sm_verify  # noqa: E402

EXPORT = "/waygate.v1.Compliance/ExportAudit"


def sm_keyring(stack, name, add_to_stack_keys=True):
    """A keyring file with an sm key set: a copy of the stack's keyring once `keys add-suite
    --suite sm` gave it one (the stack's own file: a copy given its own sm keys would be a
    divergent keyring, whose sm KEK version 1 the database refuses once another copy's is
    registered, sql/036), or (add_to_stack_keys False) a fresh sm-only one (`keys init --suite
    sm`) that never meets the database as a keyring."""
    path = os.path.join(stack.dir, name)
    if os.path.exists(path):
        os.unlink(path)
    if add_to_stack_keys:
        stack_keys = stack.env["WAYGATE_KEYRING"]
        with open(stack_keys) as f:
            has_sm = any(line.startswith("sm.kek ") for line in f)
        if not has_sm:  # (the stack runs under the sm suite already when WAYGATE_SUITE=sm)
            r = stack.ctl("keys", "add-suite", "--suite", "sm", "--keyring", stack_keys, "--db",
                          stack.pguri)
            assert r.returncode == 0, r.stdout + r.stderr
        shutil.copy(stack_keys, path)
        os.chmod(path, 0o600)
        return path
    else:
        r = stack.ctl("keys", "init", "--suite", "sm", "--keyring", path)
    assert r.returncode == 0, r.stdout + r.stderr
    return path


def sm_config(keyring):
    """An ExtraGateway edit: the keyring, `[crypto] suite = sm`, a checkpoint every 2 records
    and at most 200 ms after one (the text ends inside ExtraGateway's [audit] section)."""
    def edit(text):
        text = re.sub(r"(?m)^keyring\s*=.*$", "keyring = " + keyring, text)
        text += "checkpoint_every = 2\ncheckpoint_ms = 200\n"
        if re.search(r"(?m)^suite\s*=", text):
            return re.sub(r"(?m)^suite\s*=.*$", "suite = sm", text)
        return text + "\n[crypto]\nsuite = sm\n"
    return edit


def sm2_checkpoints(stack, chain):
    return int(stack.psql(
        "SELECT count(*) FROM audit_checkpoint c JOIN audit_key k USING (key_id) "
        "WHERE c.chain = '%s' AND k.algorithm = 'sm2' AND octet_length(k.public_key) = 65"
        % chain)[0])


@pytest.fixture(scope="module")
def smgw(stack):
    g = ExtraGateway(stack, "sm2audit", sm_config(sm_keyring(stack, "keyring-sm2audit")))
    yield g
    g.close()


def login_on(stack, gw, name):
    via = stack.account(name)[2]
    return bearer(stack.login_response(name, addr=gw.addr).token), via


def export_on(stack, gw, frm, to):
    md, via = login_on(stack, gw, "auditor")
    req = stack.pb.compliance.ExportAuditRequest(from_time=frm, to_time=to)
    chunks = list(waygate_proto.stream(stack.channel(via, addr=gw.addr), EXPORT, req,
                                       stack.pb.compliance.ExportAuditChunk, timeout=120,
                                       metadata=md))
    data = b"".join(c.data for c in chunks)
    assert chunks[-1].last and chunks[-1].sha256 == hashlib.sha256(data).hexdigest()
    return data


def verify_both(stack, path, *extra):
    c = stack.ctl("audit", "verify", path, *extra)
    p = subprocess.run(["/usr/bin/python3", PYVERIFY, path] + list(extra), capture_output=True,
                       text=True, timeout=300)
    return c, p


def assert_both_fail(stack, path, *needles):
    c, p = verify_both(stack, path)
    for who, r in (("waygatectl", c), ("verify_bundle.py", p)):
        out = r.stdout + r.stderr
        assert r.returncode == 1, "%s accepted it: %s" % (who, out)
        for n in needles:
            assert n in out, "%s: %r not in %s" % (who, n, out)


def write(tmp_path, name, data):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def key_items(items):
    """{key_id: (public key, algorithm)} of a bundle's K items."""
    out = {}
    for t, p in items:
        if t == b"K":
            f = audit_lib.fields(p)
            out[f[0].decode()] = (f[1], f[2].decode() if len(f) > 2 else "ed25519")
    return out


def forge_der(sig):
    """Another DER signature: s + 1 (mod n), as a forger without the key would try."""
    r, s = sm_verify.der_decode_sig(sig)
    return sm_verify.der_encode_sig(r, s % (sm_verify.SM2P256.n - 1) + 1)


def field_bytes(values):
    return b"".join(audit_lib.field(v) for v in values)


@pytest.fixture(scope="module")
def sm_bundle(stack, smgw):
    """A bundle exported over gRPC from the sm gateway, covering its chain after an SM2
    checkpoint has been signed on it (and whatever else the shared trail holds then)."""
    # audited actions on the sm gateway until its chain has SM2 checkpoints (bounded poll)
    for _ in range(3):
        login_on(stack, smgw, "auditor")
    assert wait_for(lambda: sm2_checkpoints(stack, smgw.chain) >= 2, 120), smgw.log()
    now = int(time.time())
    return export_on(stack, smgw, now - 3600, now + 3600)


def test_sm_gateway_signs_checkpoints_with_sm2(stack, smgw):
    assert wait_for(lambda: sm2_checkpoints(stack, smgw.chain) >= 1, 120), smgw.log()
    # every checkpoint of its chain is SM2 (none under the aes key), its signature DER
    rows = stack.psql("SELECT k.algorithm, get_byte(c.signature, 0), octet_length(c.signature) "
                      "FROM audit_checkpoint c JOIN audit_key k USING (key_id) "
                      "WHERE c.chain = '%s'" % smgw.chain)
    assert rows and all(r.split("|")[0] == "sm2" and r.split("|")[1] == "48" and
                        8 <= int(r.split("|")[2]) <= 72 for r in rows), rows


def test_sm2_bundle_verifies_in_both_verifiers(stack, smgw, sm_bundle, tmp_path):
    items = audit_lib.read_items(sm_bundle)
    keys = key_items(items)
    seal_id = audit_lib.fields(items[-1][1])[0].decode()
    assert items[-1][0] == b"Z" and keys[seal_id][1] == "sm2", keys
    pub = keys[seal_id][0]
    assert len(pub) == 65 and pub[0] == 4 and hashlib.sha256(pub).hexdigest() == seal_id
    # the sm chain's checkpoints name the SM2 key
    ck = [audit_lib.fields(p) for t, p in items if t == b"C"]
    mine = [f for f in ck if f[0].decode() == smgw.chain]
    assert mine and all(f[4].decode() == seal_id for f in mine)
    path = write(tmp_path, "sm2.bundle", sm_bundle)
    c, p = verify_both(stack, path)
    assert c.returncode == 0, c.stdout + c.stderr
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"(?m)^signatures: .*sm2", p.stdout), p.stdout
    # the Python verifier's SM2 is its own: the seal checks with sm_verify alone
    before = sm_bundle[:len(sm_bundle) - 5 - len(items[-1][1])]
    seal_sig = audit_lib.fields(items[-1][1])[1]
    assert sm_verify.sm2_verify(pub, b"waygate.bundle.seal.v1\x00" +
                                hashlib.sha256(before).digest(), seal_sig)


def test_forged_sm2_checkpoint_is_refused_by_both(stack, smgw, sm_bundle, tmp_path):
    items = audit_lib.read_items(sm_bundle)
    i = next(k for k, (t, p) in enumerate(items)
             if t == b"C" and audit_lib.fields(p)[0].decode() == smgw.chain)
    f = audit_lib.fields(items[i][1])
    seq = int(f[1])
    items[i] = (b"C", field_bytes(f[:5] + [forge_der(f[5])]))
    path = write(tmp_path, "forged-ckpt.bundle", audit_lib.write_items(items))
    assert_both_fail(stack, path, "chain %s: checkpoint at seq %d: the signature does not verify"
                     % (smgw.chain, seq))


def test_forged_sm2_seal_is_refused_by_both(stack, sm_bundle, tmp_path):
    items = audit_lib.read_items(sm_bundle)
    f = audit_lib.fields(items[-1][1])
    items[-1] = (b"Z", field_bytes([f[0], forge_der(f[1])]))
    path = write(tmp_path, "forged-seal.bundle", audit_lib.write_items(items))
    assert_both_fail(stack, path, "seal: the signature does not verify")


def test_sm2_key_swapped_for_another_point_is_refused(stack, sm_bundle, tmp_path):
    """The seal's K item carrying another valid SM2 point (and its id): signatures no longer
    verify under it, the first being the sm chain's checkpoint."""
    items = audit_lib.read_items(sm_bundle)
    seal_id = audit_lib.fields(items[-1][1])[0]
    other = sm_verify.sm2_public(0xC0FFEE)
    other_id = hashlib.sha256(other).hexdigest().encode()
    out = []
    for t, p in items:
        if t == b"K" and audit_lib.fields(p)[0] == seal_id:
            p = field_bytes([other_id, other, b"sm2"])
        elif t in (b"C", b"Z"):
            f = audit_lib.fields(p)
            if (t == b"C" and f[4] == seal_id) or (t == b"Z" and f[0] == seal_id):
                p = field_bytes(f[:4] + [other_id, f[5]]) if t == b"C" else \
                    field_bytes([other_id, f[1]])
        out.append((t, p))
    path = write(tmp_path, "other-key.bundle", audit_lib.write_items(out))
    assert_both_fail(stack, path, "the signature does not verify")


def test_live_trail_with_both_algorithms_verifies(stack, smgw, sm_bundle):
    """The shared trail now holds SM2 checkpoints (the sm gateway) and, under the default aes
    suite, Ed25519 ones (the stack's gateway, the CLI): `waygatectl audit verify` checks each
    with its key's algorithm."""
    algs = set(stack.psql("SELECT DISTINCT k.algorithm FROM audit_checkpoint c "
                          "JOIN audit_key k USING (key_id)"))
    assert "sm2" in algs and algs <= {"ed25519", "sm2"}, algs
    # the signers are pinned: the sm gateway's keyring holds both suites' audit keys (the stack's
    # own keyring has only its default suite's), so it pins the whole trail
    r = stack.ctl("audit", "verify", "--db", stack.pguri, "--keyring",
                  os.path.join(stack.dir, "keyring-sm2audit"))
    assert r.returncode == 0, r.stdout + r.stderr
    signers = re.findall(r"(?m)^signed by key ([0-9a-f]{64}) \((ed25519|sm2)\)$", r.stdout)
    assert {a for _, a in signers} == algs, r.stdout
    # and the same keys given by --trust-key, one per signer
    r = stack.ctl("audit", "verify", "--db", stack.pguri,
                  *[x for k, _ in signers for x in ("--trust-key", k)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "signers pinned: the %d key%s given by --trust-key" % (
        len(signers), "" if len(signers) == 1 else "s") in r.stdout, r.stdout


def test_cli_with_an_sm_keyring_signs_and_seals_with_sm2(stack, smgw, tmp_path):
    """waygatectl with an sm-only keyring ($WAYGATE_KEYRING, --keyring): the export's own record
    on chain ctl gets an SM2 checkpoint, and the bundle is sealed with SM2 and verifies."""
    kr = sm_keyring(stack, "keyring-sm2audit-only", add_to_stack_keys=False)
    env = dict(os.environ, WAYGATE_KEYRING=kr)
    before = sm2_checkpoints(stack, "ctl")
    out = str(tmp_path / "cli-sm2.bundle")
    now = int(time.time())
    r = subprocess.run([os.path.join(BUILD, "waygatectl"), "audit", "export", "--from",
                        str(now - 3600), "--to", str(now + 3600), "--out", out, "--keyring", kr,
                        "--db", stack.pguri], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sm2_checkpoints(stack, "ctl") == before + 1
    items = audit_lib.read_items(open(out, "rb").read())
    seal_id = audit_lib.fields(items[-1][1])[0].decode()
    assert key_items(items)[seal_id][1] == "sm2"
    c, p = verify_both(stack, out)
    assert c.returncode == 0, c.stdout + c.stderr
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"(?m)^signatures: .*sm2", p.stdout), p.stdout
