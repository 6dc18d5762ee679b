"""audit_lib.py: test helpers for the audit trail, written from docs/audit-bundle-format.md and
gateway/domain/audit_rec.h (no code shared with the C side): the canonical record encoding, a
chain builder that appends hash-chained records and checkpoints signed as the keyring's suite
signs them (Ed25519 under aes; SM2 under sm, through tests/audit/sm_verify.py) to a database as
its owner (for tests that need a chain of known shape, independent of the gateway's writer), and
a bundle item reader/writer for tampering with bundles."""

import base64
import hashlib
import hmac
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

REC_MAGIC = b"waygate.audit.v1\x00"
CKPT_MAGIC = b"waygate.checkpoint.v1\x00"
BUNDLE_MAGIC = b"waygate.bundle.v1\x00"

RECORD_FIELDS = ("chain", "seq", "at_us", "actor", "role", "peer", "cert", "branch", "action",
                 "object", "count", "purpose", "legal_basis", "approval", "outcome", "detail",
                 "confidential", "prev_hash")


def field(b):
    return b"\x01" + len(b).to_bytes(4, "big") + b


def enc_value(v):
    if v is None:
        return b"\x00"
    if isinstance(v, bool):
        return field(b"1" if v else b"0")
    if isinstance(v, int):
        return field(str(v).encode())
    if isinstance(v, bytes):
        return field(v)
    return field(v.encode("utf-8"))


def encode_record(r):
    """The canonical encoding of a record (a dict with RECORD_FIELDS)."""
    return REC_MAGIC + b"".join(enc_value(r[k]) for k in RECORD_FIELDS)


def checkpoint_msg(chain, seq, head, at_us):
    return CKPT_MAGIC + enc_value(chain) + enc_value(seq) + field(head) + enc_value(at_us)


def keyring_seed(path):
    """The audit signing seed (32 bytes) of a keyring file."""
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "audit":
                return base64.b64decode(parts[1])
    raise AssertionError("keyring %s has no audit key" % path)


def keyring_signer(path):
    """The signer of a keyring's default suite, as waygatectl signs with it: the `audit` key
    (Ed25519) when the file has the aes suite, else `sm.audit` (SM2)."""
    keys = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("audit", "sm.audit"):
                keys[parts[0]] = base64.b64decode(parts[1])
            elif parts and parts[0] in ("kek", "sm.kek"):
                keys.setdefault(parts[0].replace("kek", "suite"), True)
    if "suite" in keys:
        assert "audit" in keys, "keyring %s has no audit key" % path
        s = Signer(keys["audit"])
        s.writer_key = writer_mac_key(keys["audit"], "sha256")
        return s
    assert "sm.audit" in keys, "keyring %s has no sm.audit key" % path
    s = SM2Signer(int.from_bytes(keys["sm.audit"], "big"))
    s.writer_key = writer_mac_key(keys["sm.audit"], "sm3")
    return s


def writer_mac_key(seed, digest):
    """(key, digest) of the writer MACs a gateway holding this audit key writes beside each
    record's hash (sql/028_audit_writer_mac.sql): key = HMAC(seed, "waygate-audit-writer-v1"),
    HMAC-SHA256 for the aes suite's key, HMAC-SM3 for the sm suite's."""
    return hmac.new(seed, b"waygate-audit-writer-v1", digest).digest(), digest


def writer_mac(writer_key, h):
    """The writer MAC of a record whose hash is h."""
    key, digest = writer_key
    return hmac.new(key, h, digest).digest()


def rogue_signer(path):
    """A fresh key of the same algorithm as the keyring's signer (a forger's)."""
    import secrets
    if keyring_signer(path).algorithm == "sm2":
        return SM2Signer(secrets.randbelow(2**255) + 1)
    return Signer()


class SM2Signer:
    """SM2 with SM3 and identifier 1234567812345678 (pure Python: tests/audit/sm_verify.py)."""
    algorithm = "sm2"
    writer_key = None  # a keyring's (keyring_signer): the gateway's writer MACs

    def __init__(self, d):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))), "audit"))
        import sm_verify
        self.sm, self.d = sm_verify, d
        self.pub = sm_verify.sm2_public(d)
        self.key_id = hashlib.sha256(self.pub).hexdigest()

    def sign(self, msg):
        return self.sm.sm2_sign(self.d, msg)


class Signer:
    algorithm = "ed25519"
    writer_key = None  # a keyring's (keyring_signer): the gateway's writer MACs

    def __init__(self, seed=None):
        self.key = (Ed25519PrivateKey.from_private_bytes(seed) if seed
                    else Ed25519PrivateKey.generate())
        self.pub = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(self.pub).hexdigest()

    def sign(self, msg):
        return self.key.sign(msg)


def sql_text(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return "'\\x%s'::bytea" % v.hex()
    return "'%s'" % v.replace("'", "''")


def build_chain(chain, n, signer, checkpoint_at, t0_us, step_us=1_000_000, kind="gateway"):
    """SQL that creates `chain` with records 1..n (record i at t0_us + (i-1)*step_us) and a
    checkpoint after each seq in checkpoint_at; returns (sql, records, checkpoints). A gateway's
    chain signed with a keyring's key carries that keyring's writer MACs, as a gateway writes
    it."""
    stmts = ["INSERT INTO audit_chain (id, kind) VALUES (%s, %s) ON CONFLICT DO NOTHING"
             % (sql_text(chain), sql_text(kind)),
             "INSERT INTO audit_key (key_id, public_key, algorithm) VALUES (%s, %s, %s) "
             "ON CONFLICT DO NOTHING"
             % (sql_text(signer.key_id), sql_text(signer.pub), sql_text(signer.algorithm))]
    prev = bytes(32)
    records, ckpts = [], []
    actions = ["login.ok", "reveal", "search.phone", "account.create", "lawful.read"]
    for i in range(1, n + 1):
        r = dict(chain=chain, seq=i, at_us=t0_us + (i - 1) * step_us, actor="clerk_%d" % (i % 3),
                 role="branch_clerk", peer="10.0.0.%d" % (i % 250), cert="branch_a", branch="a",
                 action=actions[i % len(actions)], object="obj-%d" % i,
                 count=(i if i % 2 else None), purpose=("delivery" if i % 4 == 0 else None),
                 legal_basis=None, approval=None, outcome="ok", detail=None,
                 confidential=(actions[i % len(actions)] == "lawful.read"), prev_hash=prev)
        h = hashlib.sha256(encode_record(r)).digest()
        cols = [k for k in RECORD_FIELDS] + ["hash"]
        vals = [r[k] for k in RECORD_FIELDS] + [h]
        if kind == "gateway" and signer.writer_key:
            cols.append("writer_mac")
            vals.append(writer_mac(signer.writer_key, h))
        stmts.append("INSERT INTO audit_record (%s) VALUES (%s)"
                     % (", ".join(cols), ", ".join(sql_text(v) for v in vals)))
        records.append(dict(r, hash=h))
        prev = h
        if i in checkpoint_at:
            at = r["at_us"] + 500
            sig = signer.sign(checkpoint_msg(chain, i, h, at))
            stmts.append("INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, "
                         "signature) VALUES (%s, %d, %s, %d, %s, %s)"
                         % (sql_text(chain), i, sql_text(h), at, sql_text(signer.key_id),
                            sql_text(sig)))
            ckpts.append(dict(chain=chain, seq=i, head=h, at_us=at))
    return ";\n".join(stmts) + ";\n", records, ckpts


def verify_places(stack):
    """The bad places `waygatectl audit verify` names on the stack's shared trail, in order. The
    trail also holds what earlier tests of the run left in it (chains signed by keys they added,
    which the stack's keyring does not pin): a test compares the places before and after what it
    does, never expects none."""
    r = stack.ctl("audit", "verify", "--db", stack.pguri)
    assert r.returncode in (0, 1) and "verify: reading" not in r.stderr, r.stdout + r.stderr
    return [l[len("FAILED: "):] for l in r.stdout.splitlines() if l.startswith("FAILED: ")]


def unrecorded_destruction(stack, did, reason, count, extra=""):
    """The place `audit verify` names for destruction did, which no record of a gateway's chain
    accounts for (extra: ", request ID" of a bulk one)."""
    at = stack.psql("SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                    "FROM destruction WHERE id = %s" % did)[0]
    return ("destruction %s (%s%s, %d record%s, at %s): no %s record of a gateway's chain "
            "accounts for it: not done through the gateway, or its record is gone"
            % (did, reason, extra, count, "" if count == 1 else "s", at,
               "bulk.run" if reason == "bulk" else "retention.destroy"))


# ---- bundles as items, for tampering ----

def read_items(data):
    """[(type byte, payload)] of a bundle (after its magic)."""
    assert data.startswith(BUNDLE_MAGIC)
    o, items = len(BUNDLE_MAGIC), []
    while o < len(data):
        n = int.from_bytes(data[o + 1:o + 5], "big")
        items.append((data[o:o + 1], data[o + 5:o + 5 + n]))
        o += 5 + n
    return items


def write_items(items):
    return BUNDLE_MAGIC + b"".join(t + len(p).to_bytes(4, "big") + p for t, p in items)


def fields(payload):
    """The fields of a payload, None for an absent one."""
    out, o = [], 0
    while o < len(payload):
        if payload[o] == 0:
            out.append(None)
            o += 1
            continue
        n = int.from_bytes(payload[o + 1:o + 5], "big")
        out.append(payload[o + 5:o + 5 + n])
        o += 5 + n
    return out


def record_of(payload):
    """(dict of the record's fields, stored hash) of a record item's payload."""
    enc, stored = fields(payload)
    vals = fields(enc[len(REC_MAGIC):])
    return dict(zip(RECORD_FIELDS, vals)), stored


def record_payload(rec, stored=None):
    """A record item's payload from a dict of raw field bytes (None: absent); the stored hash
    is the content's unless given."""
    enc = REC_MAGIC + b"".join(b"\x00" if rec[k] is None else field(rec[k])
                               for k in RECORD_FIELDS)
    return field(enc) + field(stored if stored is not None else hashlib.sha256(enc).digest())


def index_of(items, typ, seq):
    """Index of the record ('R') or checkpoint ('C') item with this seq."""
    for i, (t, p) in enumerate(items):
        if t == typ:
            s = record_of(p)[0]["seq"] if typ == b"R" else fields(p)[1]
            if int(s) == seq:
                return i
    raise AssertionError("no %s item with seq %d" % (typ, seq))


def rebuild_manifest(items):
    """items with the manifest ('M') recomputed from the other items, as an attacker without the
    signing key could do (the seal, if any, is kept as it was)."""
    body = [it for it in items if it[0] not in (b"M", b"Z")]
    seal = [it for it in items if it[0] == b"Z"]
    chains, order = {}, []
    for t, p in body:
        if t not in (b"R", b"C", b"G"):
            continue
        if t == b"R":
            rec, _ = record_of(p)
            cid, seq = rec["chain"], int(rec["seq"])
        else:  # a checkpoint, or a left-out record: chain and seq first
            f = fields(p)
            cid, seq = f[0], int(f[1])
        if cid not in chains:
            chains[cid] = dict(records=0, first=None, last=None, head=None, ckpt=None,
                               sha=hashlib.sha256())
            order.append(cid)
        c = chains[cid]
        c["sha"].update(t + len(p).to_bytes(4, "big") + p)
        if t == b"R":
            c["records"] += 1
            c["first"] = seq if c["first"] is None else c["first"]
            c["last"] = seq
            c["head"] = hashlib.sha256(fields(p)[0]).digest()
        elif t == b"C":
            c["ckpt"] = seq
    m = b"".join(enc_value(n) for n in (
        sum(1 for t, _ in body if t == b"K"), len(order),
        sum(1 for t, _ in body if t == b"R"), sum(1 for t, _ in body if t == b"C")))
    for cid in order:
        c = chains[cid]
        m += (field(cid) + enc_value(c["records"]) + enc_value(c["first"]) +
              enc_value(c["last"]) + enc_value(c["head"]) + enc_value(c["ckpt"]) +
              field(c["sha"].digest()))
    m += field(hashlib.sha256(write_items(body)).digest())
    return body + [(b"M", m)] + seal
