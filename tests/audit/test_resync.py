#!/usr/bin/python3
"""test_resync.py: the shared corpus of chains with junk records, for both bundle verifiers.

Each case is a bundle built here from docs/audit-bundle-format.md (tests/integration/audit_lib.py's
encoders; manifest and seal correct, so only the chain's own places fail): chain gw1 of 25 records
with checkpoints at 10 and 20 and a clean chain gw2 of 3, with junk records such as the gateway's
database role may insert (at a free seq, with a link to nothing; the gateway, reading its head
again, chains its next record onto the junk), junk only a bundle can hold (a seq already taken, a
record put in between), later tampering (a record deleted or altered), and records an exporter
left out because the format cannot hold them (a `G` item in their place, rule 5b). verify_bundle.py, and
`waygatectl audit verify FILE` when its path is given, must each print exactly the expected FAILED
lines (every bad place, in order: a junk record hides nothing after it) and the "checked:" line of
each chain (records checked, records no valid checkpoint covers), and exit 1; the clean bundle
passes both. The C verifier's unit test (tests/unit/test_audit_bundle.c, junk_* and
resync_*) checks the same cases through its API with the same figures.

    test_resync.py [WAYGATECTL]

Exit 0 when every case holds; 1 and the failed cases otherwise. Runs under ctest (label unit).
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
T0 = 1_780_000_000_000_000
NOWHERE = b"\x6a" * 32  # a junk record's prev_hash: the hash of no record


class Chain:
    """Writes one chain's items as a writer would store them: each record linked to the stored
    hash of the record before it in the chain (a planted junk record included, as the gateway
    chains onto the head it reads again)."""

    def __init__(self, chain, signer):
        self.chain, self.signer = chain, signer
        self.items, self.prev, self.hashes = [], bytes(32), {}

    def record(self, seq, actor="clerk", prev=None, stored=None, follow=True):
        """Appends record seq (prev: its prev_hash, default the chain's; stored: its stored hash,
        default its content's; follow: the chain goes on from it). Returns its stored hash."""
        r = dict(chain=self.chain, seq=seq, at_us=T0 + seq * 1_000_000, actor=actor,
                 role="branch_clerk", peer="10.0.0.1", cert=None, branch="a", action="reveal",
                 object="obj-%d" % seq, count=seq, purpose=None, legal_basis=None,
                 approval=None, outcome="ok", detail=None, confidential=False,
                 prev_hash=self.prev if prev is None else prev)
        enc = audit_lib.encode_record(r)
        h = hashlib.sha256(enc).digest()
        stored = h if stored is None else stored
        self.items.append((b"R", audit_lib.field(enc) + audit_lib.field(stored)))
        if follow:
            self.prev = stored
            self.hashes[seq] = stored
        return stored

    def left_out(self, seq):
        """A `G` item in place of record seq, which the exporter could not carry (a text over
        1024 bytes): the chain goes on from its stored hash, as the writer stored it."""
        stored = hashlib.sha256(b"left out %d" % seq).digest()
        self.items.append((b"G", b"".join(audit_lib.enc_value(v) for v in (
            self.chain, seq, stored))))
        self.prev = stored
        self.hashes[seq] = stored

    def checkpoint(self, seq, head=None):
        at = T0 + seq * 1_000_000 + 500
        head = self.hashes[seq] if head is None else head
        sig = self.signer.sign(audit_lib.checkpoint_msg(self.chain, seq, head, at))
        self.items.append((b"C", b"".join(audit_lib.enc_value(v) for v in (
            self.chain, seq, head, at, self.signer.key_id, sig))))


def bundle(signer, gw1):
    """The sealed bundle of gw1's items and a clean gw2 (3 records, a checkpoint at 3)."""
    header = b"".join(audit_lib.enc_value(v) for v in ("1", "test_resync", T0, T0,
                                                       T0 + 3_600_000_000, None))
    items = [(b"H", header), (b"K", b"".join(audit_lib.enc_value(v) for v in (
        signer.key_id, signer.pub, signer.algorithm)))]
    gw2 = Chain("gw2", signer)
    for seq in (1, 2, 3):
        gw2.record(seq)
    gw2.checkpoint(3)
    items = audit_lib.rebuild_manifest(items + gw1.items + gw2.items)
    sig = signer.sign(SEAL_MAGIC + hashlib.sha256(audit_lib.write_items(items)).digest())
    items.append((b"Z", audit_lib.field(signer.key_id.encode()) + audit_lib.field(sig)))
    return audit_lib.write_items(items)


def gw1(signer, junk=(), junk_hash=(), skip=(), alter=(), after=None, last=25, swap=None,
        left_out=()):
    """gw1's records 1..last and checkpoints at 10 and 20 as the writer stored them: at each seq
    of junk a junk record linked to nothing (with a stored hash that is not its content's when in
    junk_hash); the records in skip deleted, those in alter changed after hashing; after: {seq:
    [(seq, prev seq or None)]} records put in after that one, which nothing links to; swap: a
    seq written after the next one."""
    c = Chain("gw1", signer)
    for seq in range(1, last + 1):
        mark = len(c.items)
        if seq in left_out:
            c.left_out(seq)
        elif seq in junk:
            c.record(seq, actor="junk", prev=NOWHERE,
                     stored=hashlib.sha256(b"junk").digest() if seq in junk_hash else None)
        else:
            c.record(seq)
        if seq in skip:
            del c.items[mark:]
        elif seq in alter:  # the actor changed after hashing: the stored hash kept
            rec, stored = audit_lib.record_of(c.items[mark][1])
            rec["actor"] = b"mallory"
            c.items[mark] = (b"R", audit_lib.record_payload(rec, stored))
        for s, prev in (after or {}).get(seq, ()):
            c.record(s, actor="junk", prev=c.hashes[prev] if prev else NOWHERE, follow=False)
        if swap is not None and seq == swap + 1:
            c.items[-2], c.items[-1] = c.items[-1], c.items[-2]
        if seq in (10, 20):
            c.checkpoint(seq)
    return c


def expected(places, records, not_covered):
    return (["FAILED: " + p for p in places] +
            ["checked: chain gw1: %d records, %d not covered by a valid checkpoint"
             % (records, not_covered),
             "checked: chain gw2: 3 records, 0 not covered by a valid checkpoint"])


def link(seq):
    return "chain gw1: seq %d: prev_hash is not the hash of seq %d (seq %d altered, or this link)" \
        % (seq, seq - 1, seq - 1)


def order(want, after, found):
    return "chain gw1: seq %d expected after seq %d, found seq %d (a record missing or out of " \
           "order)" % (want, after, found)


def left(seq):
    return "chain gw1: seq %d: not a record the audit format can hold (an empty actor, or a " \
           "text over 1024 bytes); left out of the bundle" % seq


def altered(seq):
    return "chain gw1: seq %d: the record's content does not match its hash (the record " \
           "altered)" % seq


def cases(signer):
    """(name, gw1's items, the expected lines). The figures: records checked, and records no
    valid checkpoint covers (before a break the next checkpoint settled for what follows it,
    put in between, altered, or after the last checkpoint)."""
    out = []

    def case(name, chain, places, records, not_covered):
        out.append((name, chain, expected(places, records, not_covered)))

    # the gateway's role plants a record at seq 15 (the next seq then); the gateway chains 16..
    # onto it: named once; 11..14 are cut off (the checkpoint at 20 signs a chain through the
    # junk, not through them), 21..25 not yet covered
    case("junk_in_the_middle", gw1(signer, junk=(15,)), [link(15)], 25, 4 + 5)
    case("junk_at_the_end", gw1(signer, junk=(26,), last=26), [link(26)], 26, 5 + 1)
    case("two_junk_records", gw1(signer, junk=(8, 16)), [link(8), link(16)], 25, 7 + 5 + 5)
    case("two_junk_records_together", gw1(signer, junk=(15, 16)), [link(15), link(16)], 25,
         1 + 4 + 5)
    # a stored hash that is not its content's: the next record follows the stored one
    case("junk_with_a_wrong_hash", gw1(signer, junk=(15,), junk_hash=(15,)), [altered(15)], 25,
         1 + 4 + 5)
    # a seq already taken (only a bundle can hold it: the trail's primary key refuses it): put in
    # after the real 15, which 16 follows: named once, covered by nothing, and 16.. go on
    case("junk_with_a_duplicate_seq", gw1(signer, after={15: [(15, 14)]}),
         [order(16, 15, 15)], 26, 1 + 5)
    case("junk_put_in_between", gw1(signer, after={15: [(99, None)]}), [order(16, 15, 99)], 26,
         1 + 5)
    # a later position: the gap before it is what the verifier sees (records missing)
    case("junk_claiming_a_later_seq", gw1(signer, last=25, after={25: [(30, None)]}),
         [order(26, 25, 30)], 26, 5 + 1)
    # junk, then the superuser deletes or alters a later record: both named
    case("junk_then_a_deletion", gw1(signer, junk=(12,), skip=(22,)),
         [link(12), order(22, 21, 23)], 24, 1 + 1 + 3)
    case("junk_then_an_alteration", gw1(signer, junk=(12,), alter=(22,)),
         [link(12), altered(22)], 25, 1 + 1 + 1 + 3)
    case("junk_then_a_swap", gw1(signer, junk=(8,), swap=14),
         [link(8), order(14, 13, 15), order(15, 14, 16)], 25, 7 + 1 + 4 + 5)
    # a record deleted under a checkpoint: the checkpoint shows it gone and the chain goes on
    # from the checkpoint (21 follows it)
    case("deleted_under_a_checkpoint", gw1(signer, skip=(20,)),
         ["chain gw1: seq 20..20 missing: the checkpoint at seq 20 covers records the chain does "
          "not have (it ends at seq 19)"], 24, 9 + 5)
    # a row the exporter could not carry (stored before sql/026): named where it was left out,
    # then its seq shows as missing and the chain goes on from the next record (11..14 cut off
    # by the checkpoint at 20 over the run from 16, 21..25 not yet covered); at the chain's end
    # nothing follows it, and it is named all the same; under a checkpoint, the checkpoint shows
    # it gone too
    case("left_out_in_the_middle", gw1(signer, left_out=(15,)), [left(15), order(15, 14, 16)],
         24, 4 + 5)
    case("left_out_at_the_end", gw1(signer, left_out=(25,)), [left(25)], 24, 4)
    case("left_out_under_a_checkpoint", gw1(signer, left_out=(20,)),
         [left(20), "chain gw1: seq 20..20 missing: the checkpoint at seq 20 covers records the "
          "chain does not have (it ends at seq 19)"], 24, 9 + 5)
    # a seq already taken, right before the checkpoint over the real record of that seq: the
    # checkpoint settles it (the junk covered by nothing), and 21.. follow 20
    c = Chain("gw1", signer)
    for seq in range(1, 26):
        c.record(seq)
        if seq == 20:
            c.record(20, actor="junk", prev=c.hashes[19], follow=False)
        if seq in (10, 20):
            c.checkpoint(seq)
    case("duplicate_settled_by_a_checkpoint", c, [order(21, 20, 20)], 26, 1 + 5)
    return out


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def lines(out):
    return [x for x in out.splitlines() if x.startswith(("FAILED: ", "checked: "))]


def main(argv):
    ctl = argv[1] if len(argv) > 1 else None
    signer = audit_lib.Signer(bytes(range(32)))
    bad = []
    with tempfile.TemporaryDirectory() as d:
        todo = [("clean", gw1(signer), None)] + cases(signer)
        for name, chain, want in todo:
            path = os.path.join(d, name + ".bundle")
            with open(path, "wb") as f:
                f.write(bundle(signer, chain))
            verifiers = [("verify_bundle.py", ["/usr/bin/python3", VERIFY, path])]
            if ctl:
                verifiers.append(("waygatectl", [ctl, "audit", "verify", path]))
            for who, cmd in verifiers:
                rc, out, err = run(cmd)
                if want is None and rc != 0:
                    bad.append("%s %s: exit %d\n%s%s" % (who, name, rc, out, err))
                elif want is not None and (rc != 1 or lines(out) != want):
                    bad.append("%s %s: exit %d\n  got:  %s\n  want: %s\n%s"
                               % (who, name, rc, "\n        ".join(lines(out)),
                                  "\n        ".join(want), err))
    for fault in bad:
        print("FAIL: " + fault)
    print("test_resync: %d cases %s%s" % (len(todo), "passed" if not bad else
                                           "(%d failures)" % len(bad),
                                           "" if ctl else " (no waygatectl given: Python only)"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
