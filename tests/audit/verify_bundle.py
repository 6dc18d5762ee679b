#!/usr/bin/python3
"""verify_bundle.py: an independent verifier of Waygate audit bundles, written from
docs/audit-bundle-format.md alone (it shares no code with the C verifier of waygatectl).

    verify_bundle.py FILE [--trust-key KEYID]...

Exit 0 and a summary line when the bundle is good; exit 1 and a line "FAILED: <place>" for each
bad place otherwise, in the order found, then a line "checked: chain X: N records, U not covered
by a valid checkpoint" for each chain read. Within a chain the check never stops: a checkpoint
that fails is reported, then ignored (it anchors and covers nothing); a record that does not fit
is reported and the chain followed on from it, or from the run it interrupted (section 5 of the
format, "Going on after a broken record"); a bad place in the bundle's own structure (framing,
order, manifest, seal) ends the check (2: usage, or the file cannot be read). --trust-key (a key
id: 64 lowercase hex digits; up to 16 times, as `waygatectl audit verify FILE` takes it): every
checkpoint and the seal must be signed by one of the keys given; without it, by any key the
bundle lists. Ed25519 signatures (the aes suite) are
checked with the `cryptography` package (Debian: python3-cryptography); SM2 signatures (the sm
suite) with sm_verify.py beside this file: pure-Python SM3 and SM2 (GB/T 32905, 32918),
independent of OpenSSL and of the gateway. Reads the file in one pass; memory is one item at a
time plus a summary per chain.
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sm_verify  # noqa: E402  (tests/audit/sm_verify.py)

MAGIC = b"waygate.bundle.v1\x00"
REC_MAGIC = b"waygate.audit.v1\x00"
CKPT_MAGIC = b"waygate.checkpoint.v1\x00"
SEAL_MAGIC = b"waygate.bundle.seal.v1\x00"
ITEM_MAX = 1 << 20
TEXT_MAX = 1024
CHAIN_CHARS = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-")
ZERO = bytes(32)
TRUST_MAX = 16  # most --trust-key values, as the C verifier (GW_BUNDLE_TRUST_MAX)
USAGE = "usage: verify_bundle.py FILE [--trust-key KEYID]..."


class Bad(Exception):
    """A bad place that ends the check."""


def ed25519_verifier(pub):
    """verify(sig, msg) -> bool for a 32-byte Ed25519 key (RFC 8032, pure)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    key = Ed25519PublicKey.from_public_bytes(pub)

    def verify(sig, msg):
        if len(sig) != 64:
            return False
        try:
            key.verify(sig, msg)
            return True
        except InvalidSignature:
            return False
    return verify


def sm2_verifier(pub):
    """verify(sig, msg) -> bool for a 65-byte SM2 point: DER (r, s), SM3, ID 1234567812345678."""
    return lambda sig, msg: sm_verify.sm2_verify(pub, msg, sig)


# algorithm name -> (public key length, verifier factory); docs/audit-bundle-format.md section 1
ALGORITHMS = {"ed25519": (32, ed25519_verifier), "sm2": (65, sm2_verifier)}


class Fields:
    """Reads the fields of one payload: 0x00 (absent) or 0x01, 4-byte big-endian length, bytes."""

    def __init__(self, data, what):
        self.d, self.o, self.what = data, 0, what

    def next(self, required=True):
        d, o = self.d, self.o
        if o >= len(d):
            raise Bad("%s: malformed" % self.what)
        if d[o] == 0:
            self.o = o + 1
            if required:
                raise Bad("%s: malformed" % self.what)
            return None
        if d[o] != 1 or len(d) - o < 5:
            raise Bad("%s: malformed" % self.what)
        n = int.from_bytes(d[o + 1:o + 5], "big")
        if n > len(d) - o - 5:
            raise Bad("%s: malformed" % self.what)
        self.o = o + 5 + n
        return d[o + 5:o + 5 + n]

    def text(self, required=True, maximum=TEXT_MAX):
        f = self.next(required)
        if f is None:
            return None
        if len(f) > maximum or b"\x00" in f:
            raise Bad("%s: malformed" % self.what)
        try:
            return f.decode("utf-8")
        except UnicodeDecodeError:
            raise Bad("%s: malformed" % self.what) from None

    def integer(self, required=True):
        f = self.next(required)
        if f is None:
            return None
        s = f.decode("ascii", "replace")
        body = s[1:] if s.startswith("-") else s
        if (not body or not body.isdigit() or not body.isascii() or len(body) > 19 or
                (body[0] == "0" and (len(body) > 1 or s.startswith("-")))):
            raise Bad("%s: malformed" % self.what)
        v = int(s)
        if v > 2**63 - 1:
            raise Bad("%s: malformed" % self.what)
        return v

    def raw(self, length):
        f = self.next(True)
        if len(f) != length:
            raise Bad("%s: malformed" % self.what)
        return f

    def end(self):
        if self.o != len(self.d):
            raise Bad("%s: malformed" % self.what)


def field(b):
    return b"\x01" + len(b).to_bytes(4, "big") + b


def chain_ok(c):
    return 1 <= len(c) <= 64 and all(ch in CHAIN_CHARS for ch in c.encode())


class Run:
    """Records each linked to the one before it, and what they follow: kind "start" (seq 1 with
    32 zero bytes), "ckpt" (a checkpoint that holds), "record", or "any" (a time range's chain
    whose anchor failed). A checkpoint that holds over its tip covers the whole run."""

    def __init__(self, kind="start", seq=0, links=(ZERO,)):
        self.kind, self.seq, self.links = kind, seq, tuple(links)
        self.pending = 0          # its records no checkpoint has covered yet
        self.pend_from = None     # the seq of the first of them

    def fits(self, seq, prev):
        return self.kind == "any" or (seq == self.seq + 1 and prev in self.links)

    def heads(self, seq, head):
        return self.kind == "record" and seq == self.seq and head in self.links

    def extend(self, seq, stored):
        self.kind, self.seq, self.links = "record", seq, (stored,)
        if self.pending == 0:
            self.pend_from = seq
        self.pending += 1


class Chain:
    def __init__(self, cid):
        self.id = cid
        self.records = 0
        # last_ckpt: the last checkpoint that held (anchor included); ckpt_item: the last C item,
        # held or not (the manifest's last_checkpoint_seq)
        self.first = self.last = self.last_ckpt = self.ckpt_item = None
        self.head = None          # the content's hash of the last record (the manifest's)
        self.sha = hashlib.sha256()
        self.digest = None
        # cur: the run the last record read belongs to; alt: after a record that did not fit,
        # the run it interrupted (kept until a record or a checkpoint settles it; only the first)
        self.cur, self.alt = Run(), None
        self.cut_off = 0          # records no checkpoint covers or can cover any more

    def not_covered(self):
        return self.cut_off + self.cur.pending + (self.alt.pending if self.alt else 0)

    def break_run(self):
        """The current run did not go on: set aside as the resume point, unless one is already
        (then its records lose every chance of cover)."""
        if self.alt is None:
            self.alt = self.cur
        else:
            self.cut_off += self.cur.pending
        self.cur = Run("record")


class Verifier:
    def __init__(self, trust=(), report=lambda place: print("FAILED: %s" % place), whole=False):
        self.trust = list(trust)  # key ids; empty: any key the bundle lists
        self.whole = whole  # every chain from seq 1 (the live check's rule; not for files)
        self.report = report  # told each bad place as found
        self.bad = 0
        self.keys = {}
        self.algorithms = set()
        self.done = []
        self.cur = None
        self.n_records = self.n_ckpts = self.n_left_out = 0
        self.phase = "header"
        self.uncovered = []
        self.n_uncovered = self.n_cut_off = 0

    # --- bad places ---
    def flag(self, place):
        """A bad place the check goes on past (a checkpoint's)."""
        self.bad += 1
        self.report(place)

    # --- signing keys ---
    def key_for(self, key_id, what, fatal=True):
        """The verifier of key_id; a fault ends the check when fatal, else it is flagged (None)."""
        fault = None
        if key_id not in self.keys:
            fault = "%s: signed by key %s..., which is not in the bundle" % (what, key_id[:16])
        elif self.trust and key_id not in self.trust:
            # one pinned key: the words of docs/audit-bundle-format.md; several: the key named
            # whole, for the operator to look up (the C verifier's words)
            if len(self.trust) == 1:
                fault = "%s: signed by key %s..., not by the trusted key %s..." % (
                    what, key_id[:16], self.trust[0][:16])
            else:
                fault = "%s: signed by key %s, which is not one of the %d trusted keys" % (
                    what, key_id, len(self.trust))
        if fault is None:
            return self.keys[key_id]
        if fatal:
            raise Bad(fault)
        self.flag(fault)
        return None

    # --- chains ---
    def close_chain(self):
        c = self.cur
        if c is None:
            return
        c.digest = c.sha.digest()
        if c.cur.pending:
            self.uncovered.append("chain %s: seq %d..%d not yet covered by a checkpoint" %
                                  (c.id, c.cur.pend_from, c.cur.seq))
        self.n_uncovered += c.cur.pending
        self.n_cut_off += c.not_covered() - c.cur.pending
        self.done.append(c)
        self.cur = None

    def tallies(self):
        """(chain, records checked, records no valid checkpoint covers) of every chain read."""
        chains = self.done + ([self.cur] if self.cur is not None else [])
        return [(c.id, c.records, c.not_covered()) for c in chains]

    def enter_chain(self, cid):
        if self.cur is not None and self.cur.id == cid:
            return
        prev = self.cur.id if self.cur is not None else (self.done[-1].id if self.done else None)
        if prev is not None and cid.encode() <= prev.encode():
            raise Bad("chain %s: its items are not together, or chains not in ascending order"
                      % cid)
        self.close_chain()
        self.cur = Chain(cid)

    # --- items ---
    def header(self, f):
        try:
            version = f.text(maximum=7)
        except Bad:
            version = None
        if version != "1":
            raise Bad("header: format version is not 1")
        f.text(maximum=64)
        f.integer()
        self.from_us, self.to_us = f.integer(), f.integer()
        f.text(required=False)
        f.end()

    def key(self, f):
        f.what = "key %d" % (len(self.keys) + 1)
        key_id = f.text(maximum=64)
        pub = f.next()
        # the algorithm's name; absent in bundles made before the sm suite: Ed25519
        alg = f.text(maximum=15) if f.o < len(f.d) else "ed25519"
        f.end()
        if alg not in ALGORITHMS or len(pub) != ALGORITHMS[alg][0] or \
                (alg == "sm2" and pub[0] != 4):
            raise Bad("%s: malformed" % f.what)
        if hashlib.sha256(pub).hexdigest() != key_id:
            raise Bad("key %s...: its id is not the SHA-256 of its public key" % key_id[:16])
        if key_id in self.keys:
            raise Bad("key %s...: listed twice" % key_id[:16])
        if alg == "sm2" and sm_verify._point(pub, sm_verify.SM2P256) is None:
            raise Bad("%s: malformed" % f.what)  # not a point of the curve
        self.keys[key_id] = ALGORITHMS[alg][1](pub)
        self.algorithms.add(alg)

    def record(self, f):
        try:
            enc, chain, seq, prev, stored = self.parse_record(f)
        except Bad:
            raise Bad("record %d of the bundle: malformed encoding" % (self.n_records + 1)) \
                from None
        self.link(enc, chain, seq, prev, stored)

    def parse_record(self, f):
        """The record item's fields (any fault: Bad, reworded by the caller)."""
        enc = f.next()
        stored = f.raw(32)
        f.end()
        if not enc.startswith(REC_MAGIC):
            raise Bad("record")
        r = Fields(enc[len(REC_MAGIC):], "record")
        chain = r.text(maximum=64)
        if not chain_ok(chain):
            raise Bad(f.what)
        seq = r.integer()
        if seq < 1:
            raise Bad(f.what)
        r.integer()                              # at_us
        r.text()                                 # actor
        for _ in range(4):                       # role, peer, cert, branch
            r.text(False)
        r.text()                                 # action
        r.text(False)                            # object
        count = r.integer(False)
        if count is not None and count < 0:
            raise Bad(f.what)
        for _ in range(3):                       # purpose, legal_basis, approval
            r.text(False)
        r.text()                                 # outcome
        r.text(False)                            # detail
        if r.text(maximum=1) not in ("0", "1"):  # confidential
            raise Bad(f.what)
        prev = r.raw(32)
        r.end()
        return enc, chain, seq, prev, stored

    def link(self, enc, chain, seq, prev, stored):
        self.enter_chain(chain)
        c = self.cur
        h = hashlib.sha256(enc).digest()
        self.place(c, seq, prev, stored, h)
        c.records += 1
        if c.first is None:
            c.first = seq
        c.last = seq
        c.head = h
        self.n_records += 1

    def place(self, c, seq, prev, stored, h):
        """A record's place in its chain (the check goes on whatever it finds)."""
        if h != stored:
            # its content is attested by nothing; the next record may follow its stored hash
            # (the content altered) or its content's (the stored column altered)
            self.flag("chain %s: seq %d: the record's content does not match its hash (the "
                      "record altered)" % (c.id, seq))
            c.cut_off += 1
            c.break_run()
            c.cur.kind, c.cur.seq, c.cur.links = "record", seq, (stored, h)
            return
        if c.cur.fits(seq, prev):
            c.cur.extend(seq, stored)
            return
        if c.alt is not None and c.alt.fits(seq, prev):
            # the records since the break were put in between: covered by nothing
            c.cut_off += c.cur.pending
            c.cur, c.alt = c.alt, None
            c.cur.extend(seq, stored)
            return
        t = c.cur
        if t.kind == "start" and seq != 1:
            self.flag("chain %s: seq 1 expected, found seq %d (records 1..%d missing, and no "
                      "checkpoint anchors the chain here)" % (c.id, seq, seq - 1))
        elif t.kind == "start":
            self.flag("chain %s: seq 1: prev_hash is not 32 zero bytes" % c.id)
        elif t.kind == "ckpt" and seq != t.seq + 1:
            self.flag("chain %s: seq %d expected after the checkpoint at seq %d, found seq %d (a "
                      "record missing or out of order)" % (c.id, t.seq + 1, t.seq, seq))
        elif t.kind == "ckpt":
            self.flag("chain %s: seq %d: prev_hash is not the head of the checkpoint at seq %d "
                      "(the record or the checkpoint altered)" % (c.id, seq, t.seq))
        elif seq != t.seq + 1:
            self.flag("chain %s: seq %d expected after seq %d, found seq %d (a record missing or "
                      "out of order)" % (c.id, t.seq + 1, t.seq, seq))
        else:
            self.flag("chain %s: seq %d: prev_hash is not the hash of seq %d (seq %d altered, or "
                      "this link)" % (c.id, seq, t.seq, t.seq))
        c.break_run()
        c.cur.extend(seq, stored)

    def left_out(self, f):
        """A record the exporter could not carry (rule 5b): named; the chain goes on as without
        it, so the next record's seq shows it missing."""
        f.what = "left-out record %d of the bundle" % (self.n_left_out + 1)
        chain = f.text(maximum=64)
        seq = f.integer()
        f.raw(32)  # its stored hash
        f.end()
        if not chain_ok(chain) or seq < 1:
            raise Bad("%s: malformed" % f.what)
        self.enter_chain(chain)
        self.n_left_out += 1
        self.flag("chain %s: seq %d: not a record the audit format can hold (an empty actor, or a "
                  "text over %d bytes); left out of the bundle" % (chain, seq, TEXT_MAX))

    def checkpoint(self, f):
        what0 = "checkpoint %d of the bundle" % (self.n_ckpts + 1)
        f.what = what0
        chain = f.text(maximum=64)
        seq = f.integer()
        head = f.raw(32)
        at_us = f.integer()
        key_id = f.text(maximum=64)
        sig = f.next()
        f.end()
        if not chain_ok(chain) or seq < 1 or len(sig) > 72:
            raise Bad("%s: malformed" % what0)
        what = "chain %s: checkpoint at seq %d" % (chain, seq)
        # a checkpoint that fails (signer, signature, place) is flagged, then ignored: it anchors
        # and covers nothing
        key = self.key_for(key_id, what, fatal=False)
        msg = (CKPT_MAGIC + field(chain.encode()) + field(str(seq).encode()) + field(head) +
               field(str(at_us).encode()))
        signed = key is not None and key(sig, msg)
        if key is not None and not signed:
            self.flag("%s: the signature does not verify (forged or altered checkpoint)" % what)
        self.enter_chain(chain)
        c = self.cur
        first = c.records == 0 and c.ckpt_item is None
        c.ckpt_item = seq
        self.n_ckpts += 1
        if c.records == 0 and self.whole is False and c.cur.kind == "start":
            c.cur.kind = "any"  # unless it holds and anchors the chain, below
        if not signed:
            return
        after_last = c.last_ckpt is None or seq > c.last_ckpt
        if c.records == 0 and c.cur.kind != "ckpt" and (self.whole or first):
            if self.whole:  # a whole chain starts at seq 1: the records up to it are gone
                self.flag("chain %s: seq 1..%d missing: the checkpoint at seq %d comes before "
                          "any record (a whole chain starts at seq 1)" % (chain, seq, seq))
            c.cur = Run("ckpt", seq, (head,))  # the anchor
            c.last_ckpt = seq
        elif c.records == 0:
            self.flag("%s: out of place (a second checkpoint before any record)" % what)
        elif c.alt is not None and after_last and c.alt.heads(seq, head) and \
                not c.cur.heads(seq, head):
            # the break is settled for the run set aside: what followed it was put in between
            c.cut_off += c.cur.pending
            c.cur, c.alt = c.alt, None
            c.cur.pending = 0
            c.last_ckpt = seq
        elif seq > c.cur.seq:
            self.flag("chain %s: seq %d..%d missing: the checkpoint at seq %d covers records the "
                      "chain does not have (it ends at seq %d)" % (chain, c.cur.seq + 1, seq, seq,
                                                                   c.cur.seq))
            c.cut_off += c.cur.pending + (c.alt.pending if c.alt else 0)
            c.cur, c.alt = Run("ckpt", seq, (head,)), None  # the chain goes on from it
            c.last_ckpt = seq
        elif seq < c.cur.seq or not after_last:
            self.flag("%s: out of place (after seq %d)" % (what, c.last))
        elif not c.cur.heads(seq, head):
            self.flag("%s: its head hash is not the hash of seq %d (the record or the checkpoint "
                      "altered)" % (what, seq))
        else:
            c.cur.pending = 0
            if c.alt is not None:  # the break is settled for the current run
                c.cut_off += c.alt.pending
            c.alt = None
            c.last_ckpt = seq

    def manifest(self, f, before):
        self.close_chain()
        f.what = "manifest"
        n_keys, n_chains, n_records, n_ckpts = f.integer(), f.integer(), f.integer(), f.integer()
        if n_chains < 0:
            raise Bad("manifest: malformed")
        for i in range(n_chains):
            f.what = "manifest: chain entry %d" % (i + 1)
            try:
                cid = f.text(maximum=64)
                records = f.integer()
                first, last = f.integer(False), f.integer(False)
                head = f.next(False)
                if head is not None and len(head) != 32:
                    raise Bad(f.what)
                last_ckpt = f.integer(False)
                digest = f.raw(32)
            except Bad:
                raise Bad("manifest: chain entry %d malformed" % (i + 1)) from None
            f.what = "manifest"
            if i >= len(self.done):
                raise Bad("chain %s: missing from the bundle (its manifest lists seq %s..%s)" %
                          (cid, first, last))
            c = self.done[i]
            if c.id != cid:
                raise Bad("chain %s: missing from the bundle (the manifest lists it before "
                          "chain %s)" % (cid, c.id))
            if last is not None and c.records and last > c.last:
                raise Bad("chain %s: the bundle ends at seq %d but its manifest at seq %d: seq "
                          "%d..%d missing (tail truncated)" % (cid, c.last, last, c.last + 1,
                                                               last))
            if (records != c.records or first != c.first or last != c.last or
                    last_ckpt != c.ckpt_item or (c.records and head != c.head) or
                    (not c.records and head is not None)):
                m1 = lambda v: -1 if v is None else v  # noqa: E731 (absent: -1, as the C verifier)
                raise Bad("chain %s: the manifest does not describe the bundle's records (it says "
                          "seq %d..%d, %d records; the bundle has %d..%d, %d)"
                          % (cid, m1(first), m1(last), records, m1(c.first), m1(c.last),
                             c.records))
            if digest != c.digest:
                raise Bad("chain %s: the manifest's SHA-256 of its items does not match" % cid)
        if n_chains < len(self.done):
            raise Bad("chain %s: in the bundle but not in its manifest" % self.done[n_chains].id)
        content = f.raw(32)
        f.end()
        if (n_keys, n_records, n_ckpts) != (len(self.keys), self.n_records, self.n_ckpts):
            raise Bad("manifest: counts (keys, records, checkpoints) do not match the bundle")
        if content != before:
            raise Bad("manifest: the SHA-256 of the bundle before it does not match")

    def seal(self, f, before):
        f.what = "seal"
        key_id = f.text(maximum=64)
        sig = f.next()
        f.end()
        if len(sig) > 72:
            raise Bad("seal: malformed")
        key = self.key_for(key_id, "seal")
        if not key(sig, SEAL_MAGIC + before):
            raise Bad("seal: the signature does not verify (the bundle was altered after export)")

    NAMES = {b"H": "header", b"K": "key", b"R": "record", b"C": "checkpoint", b"M": "manifest",
             b"Z": "seal", b"G": "left-out record"}

    def item(self, t, payload, before, offset):
        name = self.NAMES.get(t)
        if name is None:
            raise Bad("byte %d: unknown item type 0x%02x" % (offset, t[0]))
        if self.phase in ("sealed", "manifest") and not (self.phase == "manifest" and t == b"Z"):
            raise Bad("%s after the %s: the bundle must end there" %
                      (name, "seal" if self.phase == "sealed" else "manifest"))
        if (self.phase == "header") != (t == b"H"):
            raise Bad("%s: out of place (the header comes first, once)" % name)
        if t == b"K" and (self.n_records or self.n_ckpts or self.n_left_out):
            raise Bad("key: out of place (keys come before the records)")
        f = Fields(payload, name)
        if t == b"H":
            self.header(f)
            self.phase = "body"
        elif t == b"K":
            self.key(f)
        elif t == b"R":
            self.record(f)
        elif t == b"C":
            self.checkpoint(f)
        elif t == b"G":
            self.left_out(f)
        elif t == b"M":
            self.manifest(f, before)
            self.phase = "manifest"
        else:
            self.seal(f, before)
            self.phase = "sealed"
        if t in (b"R", b"C", b"G"):
            self.cur.sha.update(t + len(payload).to_bytes(4, "big") + payload)

    def run(self, stream):
        total = hashlib.sha256()
        if stream.read(len(MAGIC)) != MAGIC:
            raise Bad("byte 0: not a Waygate audit bundle (magic)")
        total.update(MAGIC)
        offset = len(MAGIC)
        while True:
            head = stream.read(5)
            if not head:
                break
            if len(head) < 5:
                raise Bad("bundle truncated inside an item at byte %d" % offset)
            n = int.from_bytes(head[1:5], "big")
            if n > ITEM_MAX:
                raise Bad("byte %d: item longer than %d bytes" % (offset, ITEM_MAX))
            payload = stream.read(n)
            if len(payload) < n:
                raise Bad("bundle truncated inside an item at byte %d" % offset)
            self.item(head[:1], payload, total.copy().digest(), offset)
            total.update(head)
            total.update(payload)
            offset += 5 + n
        if self.phase == "header":
            raise Bad("bundle truncated: no header")
        if self.phase == "body":
            raise Bad("bundle truncated: no manifest")
        if self.phase == "manifest":
            raise Bad("bundle truncated: no seal after the manifest")
        return total.hexdigest()


def key_id_ok(s):
    """A --trust-key value: a key id as the bundle format writes it, 64 lowercase hex digits."""
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def parse(args):
    """(file, [trusted key ids]) of the arguments, or None after a usage message."""
    files, trust = [], []
    i = 0
    while i < len(args):
        if args[i] == "--trust-key" or args[i].startswith("--trust-key="):
            if "=" in args[i]:
                value = args[i].split("=", 1)[1]
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                print(USAGE, file=sys.stderr)
                return None
            if not key_id_ok(value):
                print("verify_bundle.py: --trust-key: must be a key id, 64 lowercase hex digits",
                      file=sys.stderr)
                return None
            if len(trust) == TRUST_MAX:
                print("verify_bundle.py: --trust-key: at most %d keys" % TRUST_MAX,
                      file=sys.stderr)
                return None
            trust.append(value)
        else:
            files.append(args[i])
        i += 1
    if len(files) != 1:
        print(USAGE, file=sys.stderr)
        return None
    return files[0], trust


def print_tallies(v):
    """After a bad place: how much of each chain was checked, and how much of it no valid
    checkpoint covers (the words of waygatectl audit verify)."""
    for cid, records, not_covered in v.tallies():
        print("checked: chain %s: %d records, %d not covered by a valid checkpoint"
              % (cid, records, not_covered))


def main(argv):
    parsed = parse(argv[1:])
    if parsed is None:
        return 2
    path, trust = parsed
    v = Verifier(trust)
    try:
        with open(path, "rb") as f:
            digest = v.run(f)
    except OSError as e:
        print("verify_bundle.py: %s" % e, file=sys.stderr)
        return 2
    except Bad as e:
        print("FAILED: %s" % e)
        print_tallies(v)
        return 1
    if v.bad:
        print_tallies(v)
        return 1
    print("bundle verified: %d chains, %d records, %d checkpoints, %d keys; sha256 %s" %
          (len(v.done), v.n_records, v.n_ckpts, len(v.keys), digest))
    print("signatures: %s" % ", ".join(sorted(v.algorithms)))
    if trust:
        print("signers pinned: the %d key%s given by --trust-key" %
              (len(trust), "" if len(trust) == 1 else "s"))
    for note in v.uncovered:
        print("note: %s" % note)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
