#!/usr/bin/python3
"""test_verify_bundle.py: verify_bundle.py's signer pins, --trust-key given more than once, as
`waygatectl audit verify FILE` takes it (gateway/ctl/ctl_audit.c): every checkpoint and the seal
must be signed by one of the keys given.

The bundle is made here from docs/audit-bundle-format.md (with tests/integration/audit_lib.py's
encoders) and is signed by two keys, as a trail that changed suite is: chain gw1's checkpoint and
the seal by an Ed25519 key A, chain gw2's checkpoint by an SM2 key B. It verifies unpinned and
with both keys trusted; with only one of them, or with one and an unrelated key, it fails at the
first checkpoint the other signed. Given the path of waygatectl, each case is also run through
the C verifier, which must agree: the same exit code and the same FAILED line. Usage faults (a
value that is not a key id, a missing value, more than 16 keys) exit 2 in both. A second bundle
has gw2's checkpoint "signed" by an Ed25519 key of small order (the identity point, whose one
signature verifies over every message): both verifiers accept it unpinned and refuse it, in the
same words, with key A pinned.

    test_verify_bundle.py [WAYGATECTL]

Exit 0 when every check holds; 1 and the failed check otherwise. Runs under ctest (label unit).
"""

import hashlib
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import audit_lib  # noqa: E402  (tests/integration/audit_lib.py: the format's encoders)

VERIFY = os.path.join(HERE, "verify_bundle.py")
SEAL_MAGIC = b"waygate.bundle.seal.v1\x00"
T0 = 1_780_000_000_000_000  # microseconds; any time will do


def record(chain, seq, prev):
    r = dict(chain=chain, seq=seq, at_us=T0 + seq * 1_000_000, actor="clerk", role="branch_clerk",
             peer="10.0.0.1", cert=None, branch="a", action="login.ok", object=None, count=None,
             purpose=None, legal_basis=None, approval=None, outcome="ok", detail=None,
             confidential=False, prev_hash=prev)
    enc = audit_lib.encode_record(r)
    return enc, hashlib.sha256(enc).digest()


def chain_items(chain, n, signer):
    """Records 1..n of chain and a checkpoint over seq n signed by signer: [(type, payload)]."""
    items, prev = [], bytes(32)
    for seq in range(1, n + 1):
        enc, h = record(chain, seq, prev)
        items.append((b"R", audit_lib.field(enc) + audit_lib.field(h)))
        prev = h
    at = T0 + n * 1_000_000 + 500
    sig = signer.sign(audit_lib.checkpoint_msg(chain, n, prev, at))
    items.append((b"C", b"".join(audit_lib.enc_value(v) for v in (
        chain, n, prev, at, signer.key_id, sig))))
    return items


def bundle(sign_a, sign_b):
    """The bundle: keys A and B, gw1 checkpointed by A, gw2 by B, sealed by A."""
    header = b"".join(audit_lib.enc_value(v) for v in ("1", "test_verify_bundle", T0, T0,
                                                       T0 + 3_600_000_000, None))
    items = [(b"H", header)]
    for s in (sign_a, sign_b):
        items.append((b"K", b"".join(audit_lib.enc_value(v) for v in (
            s.key_id, s.pub, s.algorithm))))
    items += chain_items("gw1", 3, sign_a) + chain_items("gw2", 2, sign_b)
    items = audit_lib.rebuild_manifest(items)
    sig = sign_a.sign(SEAL_MAGIC + hashlib.sha256(audit_lib.write_items(items)).digest())
    items.append((b"Z", audit_lib.field(sign_a.key_id.encode()) + audit_lib.field(sig)))
    return audit_lib.write_items(items)


class SmallOrderSigner:
    """An Ed25519 "key" that is the identity point (a point of small order: 1), which OpenSSL,
    and so both verifiers, take as a public key: under it the one signature R = the identity,
    S = 0 verifies over every message, and nobody holds a private key. It is trusted only when
    its id is pinned; a pinned id is the keyring's audit key (docs/threat-model.md)."""
    algorithm = "ed25519"
    pub = bytes([1]) + bytes(31)
    key_id = hashlib.sha256(pub).hexdigest()

    def sign(self, msg):
        return bytes([1]) + bytes(63)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def failed_line(out):
    lines = [x for x in out.splitlines() if x.startswith("FAILED: ")]
    return lines[0] if lines else None


def main(argv):
    ctl = argv[1] if len(argv) > 1 else None
    a = audit_lib.Signer()                  # Ed25519
    b = audit_lib.SM2Signer(0x5EED_2B0B)    # SM2
    c = audit_lib.Signer()                  # signs nothing here
    A, B, C = a.key_id, b.key_id, c.key_id
    gw1_ckpt = "chain gw1: checkpoint at seq 3"
    gw2_ckpt = "chain gw2: checkpoint at seq 2"
    cases = [  # (pins, exit code, the FAILED line or None)
        ([], 0, None),
        ([A, B], 0, None),
        ([B, A], 0, None),
        ([A], 1, "FAILED: %s: signed by key %s..., not by the trusted key %s..."
         % (gw2_ckpt, B[:16], A[:16])),
        ([B], 1, "FAILED: %s: signed by key %s..., not by the trusted key %s..."
         % (gw1_ckpt, A[:16], B[:16])),
        ([A, C], 1, "FAILED: %s: signed by key %s, which is not one of the 2 trusted keys"
         % (gw2_ckpt, B)),
        ([C, B], 1, "FAILED: %s: signed by key %s, which is not one of the 2 trusted keys"
         % (gw1_ckpt, A)),
    ]
    # gw2's checkpoint "signed" by the small-order key: accepted unpinned (a bundle then proves
    # only that it is consistent and signed by the keys it lists, as a forger's own key makes
    # one), refused with the trail's key pinned, in the same words by both verifiers
    s = SmallOrderSigner()
    small_cases = [
        ([], 0, None),
        ([A], 1, "FAILED: %s: signed by key %s..., not by the trusted key %s..."
         % (gw2_ckpt, s.key_id[:16], A[:16])),
    ]
    bad = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "two-signers.bundle")
        with open(path, "wb") as f:
            f.write(bundle(a, b))
        small = os.path.join(d, "small-order-signer.bundle")
        with open(small, "wb") as f:
            f.write(bundle(a, s))
        for pins, code, line, file in ([c + (path,) for c in cases] +
                                       [c + (small,) for c in small_cases]):
            args = [x for k in pins for x in ("--trust-key", k)]
            verifiers = [("verify_bundle.py", ["/usr/bin/python3", VERIFY, file] + args)]
            if ctl:
                verifiers.append(("waygatectl", [ctl, "audit", "verify", file] + args))
            for who, cmd in verifiers:
                rc, out, err = run(cmd)
                if rc != code or failed_line(out) != line:
                    bad.append("%s on %s with %d pins %s: exit %d, %r (expected exit %d, %r)\n%s%s"
                               % (who, os.path.basename(file), len(pins), [p[:8] for p in pins],
                                  rc, failed_line(out), code, line, out, err))
                elif code == 0 and pins and \
                        "signers pinned: the %d keys given by --trust-key" % len(pins) not in out:
                    bad.append("%s with pins %s: no 'signers pinned' line\n%s" % (who, pins, out))
        usage = [
            ["--trust-key", A.upper()],        # not lowercase
            ["--trust-key", A[:63]],           # too short
            [path, "--trust-key"],             # no value
            [x for k in range(17) for x in ("--trust-key", "%064x" % k)],  # one too many
        ]
        for args in usage:
            if path not in args:
                args = [path] + args
            verifiers = [("verify_bundle.py", ["/usr/bin/python3", VERIFY] + args)]
            if ctl:
                verifiers.append(("waygatectl", [ctl, "audit", "verify"] + args))
            for who, cmd in verifiers:
                rc, out, err = run(cmd)
                if rc != 2:
                    bad.append("%s %s: exit %d, expected 2 (usage)\n%s%s"
                               % (who, args[1:3], rc, out, err))
        # sixteen keys are allowed (both trusted among them)
        pins = [A, B] + ["%064x" % k for k in range(14)]
        args = [path] + [x for k in pins for x in ("--trust-key", k)]
        for who, cmd in [("verify_bundle.py", ["/usr/bin/python3", VERIFY] + args)] + \
                ([("waygatectl", [ctl, "audit", "verify"] + args)] if ctl else []):
            rc, out, err = run(cmd)
            if rc != 0:
                bad.append("%s with 16 pins: exit %d\n%s%s" % (who, rc, out, err))
    for fault in bad:
        print("FAIL: " + fault)
    print("test_verify_bundle: %s%s" % ("passed" if not bad else "%d failed" % len(bad),
                                        "" if ctl else " (no waygatectl given: Python only)"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
