"""Compliance bulk operations (issue 8; Art. 37, 15, 26): RequestBulk, ApproveBulk, RunBulk and
`waygatectl export trace`.

A bulk export, copy or destruction is requested by one person (here the compliance auditor) with
a purpose and a legal basis (refused without one: INVALID_ARGUMENT, Art. 15), approved by a second
person (the security admin; self-approval is PERMISSION_DENIED and leaves a refused record), and
run once by its requester before the approval expires (FAILED_PRECONDITION otherwise). An export
is sealed to the requester's X25519 key (decrypted here with Debian's python3-cryptography,
independently of the gateway's code, from docs/bulk-export-format.md), holds the requester role's
view only (the compliance auditor's: no personal field at all), and every row carries a
watermark tag by which `waygatectl export trace` names the export a fragment of rows came from.
A destruction deletes the rows with their wrapped data keys and keeps a destruction record.
Every step leaves its audit record."""

import base64
import datetime
import hashlib
import os
import subprocess
import threading
import time
import uuid

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import audit_lib
import register_lib
from conftest import holder_pid, lock_holder, release_holder, wait_for, waiting_on
from query_data import GET, PICKUP, get, new_waybill, refusal, submit
from test_faults import superuser_uri
import waygate_proto

REQUEST = "/waygate.v1.Compliance/RequestBulk"
APPROVE = "/waygate.v1.Compliance/ApproveBulk"
RUN = "/waygate.v1.Compliance/RunBulk"
VIEW = "/waygate.v1.Compliance/GetBulk"

REQUESTER = "auditor"   # compliance_auditor
APPROVER = "secadmin"   # security_admin

PII_FIELDS = ("name", "phone", "province", "city", "district", "address_detail", "company",
              "id_number")


class People:
    """One login per account for the module; calls as a dev-stack account."""

    def __init__(self, stack):
        self.stack = stack
        self.md = {}

    def metadata(self, name):
        if name not in self.md:
            self.md[name] = self.stack.login(name)
        return self.md[name]

    def channel(self, name):
        return self.stack.channel(self.stack.account(name)[2])

    def unary(self, name, method, req, cls):
        return waygate_proto.unary(self.channel(name), method, req, cls,
                                   metadata=self.metadata(name))

    def stream(self, name, method, req, cls):
        return list(waygate_proto.stream(self.channel(name), method, req, cls,
                                         metadata=self.metadata(name), timeout=60))


@pytest.fixture(scope="module")
def people(stack):
    return People(stack)


def plain_and_secret(stack):
    """The ids of two waybills of branch a submitted now, a plain one and a 秘密 one, once the
    second of their acceptance has passed, and the 秘密 one's waybill number."""
    plain_w, secret_w = new_waybill(stack, "a"), new_waybill(stack, "a")
    secret_w.security_level = stack.pb.common.SECURITY_LEVEL_SECRET
    ids = [submit(stack, plain_w), submit(stack, secret_w)]
    past_this_second()
    return ids, secret_w.waybill_no


def past_this_second():
    """Waits until the clock is past the second it reads now. A request selects the records
    accepted before its own second (accepted_at is the gateway's whole second, on this machine's
    clock, as is the database's): after this wait, every waybill submitted so far is in the next
    request's selection. Only a wait made longer, never a race."""
    t = int(time.time())
    while int(time.time()) <= t:
        time.sleep(0.05)


@pytest.fixture(scope="module")
def records(stack):
    """Three waybills of branch a, submitted for this module: (waybill, id)."""
    out = []
    for _ in range(3):
        w = new_waybill(stack, "a")
        out.append((w, submit(stack, w)))
    past_this_second()
    return out


def raw_public(priv):
    return priv.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)


# The recipient's key pair of this module's exports and copies: RequestBulk takes the public key,
# and every run is sealed to it (keypair() below).
RECIPIENT = X25519PrivateKey.generate()
RECIPIENT_PUB = raw_public(RECIPIENT)


def key_for(op):
    """The recipient key a request of op carries: the module's for an export or copy."""
    return RECIPIENT_PUB if op in (1, 2) else b""


def request(people, op, ids, who=REQUESTER, legal_basis="《邮政法》第三十五条; 监管检查 2026-17",
            purpose="regulator inspection sample", pub=None):
    pb = people.stack.pb.compliance
    req = pb.RequestBulkRequest(operation=op, purpose=purpose, legal_basis=legal_basis,
                                destination="regulator audit workstation 3",
                                recipient_public_key=key_for(op) if pub is None else pub)
    req.selector.record_ids.extend(ids)
    return people.unary(who, REQUEST, req, pb.RequestBulkResponse)


def approve(people, request_id, who=APPROVER, ok=True):
    pb = people.stack.pb.compliance
    return people.unary(who, APPROVE, pb.ApproveBulkRequest(request_id=request_id, approve=ok,
                                                             comment="checked"),
                        pb.ApproveBulkResponse)


def run(people, request_id, pub=b"", who=REQUESTER):
    pb = people.stack.pb.compliance
    return people.stream(who, RUN, pb.RunBulkRequest(request_id=request_id,
                                                     recipient_public_key=pub),
                         pb.RunBulkChunk)


def keypair():
    """The recipient key pair the module's requests carry (request(), key_for())."""
    return RECIPIENT, RECIPIENT_PUB


def open_export(priv, data):
    """The plaintext of a sealed export (docs/bulk-export-format.md), from the format alone."""
    assert data[:8] == b"WGXSEAL1"
    header, eph, salt = data[:72], data[24:56], data[56:72]
    mypub = priv.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    shared = priv.exchange(X25519PublicKey.from_public_bytes(eph))
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt,
               info=b"waygate export v1" + eph + mypub).derive(shared)
    aead, base = AESGCM(okm[:32]), okm[32:]
    off, i, out = 72, 0, b""
    while True:
        n = int.from_bytes(data[off:off + 4], "big")
        end = off + 4 + n + 16
        assert end <= len(data), "chunk %d cut short" % i
        final = end == len(data)
        nonce = bytes(a ^ b for a, b in zip(base, i.to_bytes(12, "big")))
        aad = header + i.to_bytes(8, "big") + (b"\x01" if final else b"\x00")
        out += aead.decrypt(nonce, data[off + 4:end], aad)
        off, i = end, i + 1
        if final:
            return data[8:24], out


# What a change of bulk_request that its triggers refuse to every role, the owner included
# (sql/047), is run after: as a superuser, with row triggers off, as only someone holding the
# superuser (or the owner, disabling them) could make it.
TAMPER = "SET session_replication_role = replica; "


def tamper(stack, sql):
    """The output lines of sql run as a superuser with the row triggers off (TAMPER)."""
    return stack.psql(TAMPER + sql, uri=superuser_uri(stack))


def audit_rows(stack, action, obj):
    return stack.psql("SELECT outcome, actor, coalesce(count::text, ''), coalesce(approval, '') "
                      "FROM audit_record WHERE action = '%s' AND object = '%s' ORDER BY seq"
                      % (action, obj))


def test_no_legal_basis_is_invalid_argument(stack, people, records):
    ids = [i for _, i in records]
    code, details = refusal(lambda: request(people, 1, ids, legal_basis=""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("legal_basis:") and "Art. 15" in details
    code, details = refusal(lambda: request(people, 1, ids, legal_basis="   "))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("legal_basis:")
    code, details = refusal(lambda: request(people, 1, ids, purpose=""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("purpose:")
    code, details = refusal(lambda: request(people, 0, ids))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("operation:")
    code, details = refusal(lambda: request(people, 1, ["not-a-uuid"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("selector.record_ids[0]:")


def test_a_day_range_that_selects_no_day_is_refused(stack, people):
    """selector.to_day before selector.from_day selects nothing: INVALID_ARGUMENT naming to_day,
    and no request is stored (it was answered OK, PENDING, with a request and its record); one
    day (from_day == to_day) is a range."""
    pb = stack.pb.compliance
    before = stack.psql("SELECT count(*) FROM bulk_request")

    def ask(from_day, to_day):
        req = pb.RequestBulkRequest(operation=1, purpose="regulator inspection sample",
                                    legal_basis="《邮政法》第三十五条",
                                    destination="regulator audit workstation 3",
                                    recipient_public_key=RECIPIENT_PUB)
        req.selector.from_day, req.selector.to_day = from_day, to_day
        return people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)

    assert refusal(lambda: ask("2026-05-01", "2026-01-01")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "selector.to_day: must not be before selector.from_day")
    assert refusal(lambda: ask("2026-01-02", "2026-01-01"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert stack.psql("SELECT count(*) FROM bulk_request") == before
    assert ask("2026-01-01", "2026-01-01").request_id


@pytest.mark.parametrize("field", ["from_day", "to_day"])
def test_a_selector_day_that_is_no_calendar_date_is_invalid_argument(stack, people, field):
    """A selector's day is a calendar date (core/text.h gw_text_is_day, Search's pickup_day
    rule): February 29 of a common year ("2025-02-29") is INVALID_ARGUMENT naming the field, as
    "2026-04-31" is (it reached PostgreSQL's ::date, which raised: INTERNAL); February 29 of a
    leap year is a day."""
    pb = stack.pb.compliance

    def ask(day):
        req = pb.RequestBulkRequest(operation=1, purpose="regulator inspection sample",
                                    legal_basis="《邮政法》第三十五条",
                                    destination="regulator audit workstation 3",
                                    recipient_public_key=RECIPIENT_PUB)
        setattr(req.selector, field, day)
        return people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)

    for day in ("2025-02-29", "2100-02-29", "2026-04-31"):
        assert refusal(lambda: ask(day)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "selector.%s: must be a calendar date YYYY-MM-DD" % field), day
    assert ask("2024-02-29").request_id


def test_free_text_with_control_characters_refused(stack, people, records):
    """purpose, legal_basis, destination and an approval's comment: a control or bidirectional
    character is refused INVALID_ARGUMENT naming the field (the rule every free text an Admin or
    Compliance method stores follows), and nothing is stored."""
    ids = [i for _, i in records]
    pb = stack.pb.compliance
    before = stack.psql("SELECT count(*) FROM bulk_request")
    for field, value in (("purpose", "sample\nx"), ("legal_basis", "《邮政法》\u202e"),
                         ("destination", "ws 3\x1b[2J")):
        kw = dict(operation=1, purpose="regulator inspection sample",
                  legal_basis="《邮政法》第三十五条", destination="regulator audit workstation 3",
                  recipient_public_key=RECIPIENT_PUB)
        kw[field] = value
        req = pb.RequestBulkRequest(**kw)
        req.selector.record_ids.extend(ids)
        assert refusal(lambda: people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)) == (
            grpc.StatusCode.INVALID_ARGUMENT, field + ": must not contain control characters")
    assert stack.psql("SELECT count(*) FROM bulk_request") == before
    r = request(people, 1, ids)
    assert refusal(lambda: people.unary(APPROVER, APPROVE, pb.ApproveBulkRequest(
        request_id=r.request_id, approve=False, comment="no\u2066"), pb.ApproveBulkResponse)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "comment: must not contain control characters")
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == \
        ["pending"]


def test_request_is_pending_and_recorded(stack, people, records):
    ids = [i for _, i in records]
    r = request(people, 1, ids)
    assert r.state == stack.pb.compliance.APPROVAL_STATE_PENDING
    assert r.record_count == 3
    assert stack.psql("SELECT state, requester, record_count FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == ["pending|%s|3" % stack.account(REQUESTER)[0]]
    assert audit_rows(stack, "bulk.request", r.request_id) == [
        "ok|%s|3|%s" % (stack.account(REQUESTER)[0], r.request_id)]


def test_export_without_approval_is_failed_precondition(stack, people, records):
    _, pub = keypair()
    r = request(people, 1, [i for _, i in records])
    code, details = refusal(lambda: run(people, r.request_id, pub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.startswith("request_id:") and "not approved" in details
    # a rejected request never runs either
    d = approve(people, r.request_id, ok=False)
    assert d.state == stack.pb.compliance.APPROVAL_STATE_REJECTED and d.audit_seq > 0
    assert audit_rows(stack, "bulk.reject", r.request_id) == [
        "ok|%s|3|%s" % (stack.account(APPROVER)[0], r.request_id)]
    code, _ = refusal(lambda: run(people, r.request_id, pub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    outcomes = [row.split("|")[0] for row in audit_rows(stack, "bulk.run", r.request_id)]
    assert outcomes == ["refused", "refused"]
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
        "rejected"]


def test_self_approval_is_permission_denied(stack, people, records):
    r = request(people, 1, [i for _, i in records])
    code, details = refusal(lambda: approve(people, r.request_id, who=REQUESTER))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details.startswith("request_id:") and "second person" in details
    assert stack.psql("SELECT state, approver IS NULL FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == ["pending|t"]
    assert audit_rows(stack, "bulk.approve", r.request_id) == [
        "refused|%s|3|%s" % (stack.account(REQUESTER)[0], r.request_id)]
    # the database refuses it too, whatever the gateway does
    out = tamper(stack, "DO $$ BEGIN UPDATE bulk_request SET approver = requester, state = "
                     "'approved', expires_at = now() WHERE id = '%s'; "
                     "EXCEPTION WHEN check_violation THEN RAISE NOTICE 'refused'; END $$; "
                     "SELECT state FROM bulk_request WHERE id = '%s'"
                     % (r.request_id, r.request_id))
    assert out == ["pending"]


def test_approval_expires(stack, people, records):
    _, pub = keypair()
    r = request(people, 1, [i for _, i in records])
    approve(people, r.request_id)
    # [compliance] approval_ttl_s, 86400 by default
    assert stack.psql("SELECT extract(epoch FROM expires_at - decided_at)::int FROM bulk_request "
                      "WHERE id = '%s'" % r.request_id) == ["86400"]
    tamper(stack, "UPDATE bulk_request SET expires_at = now() - interval '1 second' WHERE id = '%s'"
               % r.request_id)
    code, details = refusal(lambda: run(people, r.request_id, pub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "expired" in details


def test_a_request_undecided_past_the_approval_period_expires(stack, people, records):
    """A bulk request is decided within [compliance] approval_ttl_s of being requested, like a
    lawful-access case (lawful_case_decide, WL004): past it the request has expired (ApprovalState
    EXPIRED, "not decided ... within the allowed time"), and neither an approval nor a rejection
    decides it: FAILED_PRECONDITION naming request_id, the request still undecided and never
    run. (One requested 400 days before, its time moved back in SQL, was approved, with a whole
    approval period to run it.)"""
    _, pub = keypair()
    r = request(people, 1, [records[0][1]])
    tamper(stack, "UPDATE bulk_request SET requested_at = requested_at - interval '400 days' "
               "WHERE id = '%s'" % r.request_id)
    expired = (grpc.StatusCode.FAILED_PRECONDITION,
               "request_id: the bulk request was not decided in time ([compliance] "
               "approval_ttl_s) and has expired; request it again")
    assert refusal(lambda: approve(people, r.request_id)) == expired
    assert refusal(lambda: approve(people, r.request_id, ok=False)) == expired
    assert stack.psql("SELECT state, approver IS NULL FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == ["pending|t"]
    assert refusal(lambda: run(people, r.request_id, pub))[0] == \
        grpc.StatusCode.FAILED_PRECONDITION
    # each attempt is recorded refused: none decided it
    assert [row.split("|")[0] for row in audit_rows(stack, "bulk.approve", r.request_id) +
            audit_rows(stack, "bulk.reject", r.request_id)] == ["refused", "refused"]
    # one just inside the period is still decided
    r = request(people, 1, [records[0][1]])
    tamper(stack, "UPDATE bulk_request SET requested_at = now() - interval '86300 seconds' "
               "WHERE id = '%s'" % r.request_id)
    assert approve(people, r.request_id).state == stack.pb.compliance.APPROVAL_STATE_APPROVED


def test_only_the_requester_runs(stack, people, records):
    _, pub = keypair()
    r = request(people, 1, [i for _, i in records])
    approve(people, r.request_id)
    code, details = refusal(lambda: run(people, r.request_id, pub, who=APPROVER))
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
    code, details = refusal(lambda: run(people, r.request_id, b"\x01" * 31))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("recipient_public_key:")
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
        "approved"]


def test_every_refused_decision_and_run_is_recorded(stack, people, records):
    """Art. 37 records each refused attempt, not only the ones a rule of the request refuses: a
    decision or a run of an id that names no request the caller may see, a decision of a
    request already decided, and a run of one already run are each an audit record (outcome
    refused, the id as object, why in the detail), written before the answer. Before, these
    answered with nothing in the trail, so an insider could try other people's requests
    unseen."""
    _, pub = keypair()
    unknown = str(uuid.uuid4())
    code, _ = refusal(lambda: approve(people, unknown))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = refusal(lambda: run(people, unknown, pub))
    assert code == grpc.StatusCode.NOT_FOUND
    assert stack.psql("SELECT action, outcome, detail FROM audit_record WHERE object = '%s' "
                      "ORDER BY seq" % unknown) == [
        "bulk.approve|refused|no such request", "bulk.run|refused|no such request"]
    r = request(people, 1, [records[0][1]])
    approve(people, r.request_id)
    code, _ = refusal(lambda: approve(people, r.request_id, ok=False))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert run(people, r.request_id, pub)  # the one run
    code, _ = refusal(lambda: run(people, r.request_id, pub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert stack.psql("SELECT action, outcome, coalesce(detail, '') FROM audit_record WHERE "
                      "object = '%s' AND outcome = 'refused' ORDER BY seq" % r.request_id) == [
        "bulk.reject|refused|not pending", "bulk.run|refused|not approved"]


def rcpt_of(pub):
    """How the bulk records name a recipient key (rcpt=): the first 8 bytes of its SHA-256."""
    return hashlib.sha256(pub).hexdigest()[:16]


def record_detail(stack, action, request_id):
    return stack.psql("SELECT detail FROM audit_record WHERE action = '%s' AND approval = '%s' "
                      "ORDER BY seq" % (action, request_id))


def test_a_request_for_an_export_carries_its_recipient_key(stack, people, records):
    """RequestBulk takes the key an export's or copy's output will be sealed to (Art. 37: what is
    approved is what runs): required for those, 32 bytes, a usable X25519 key (a low-order point,
    all zeros, gives no shared secret), and none for a destruction; each refused INVALID_ARGUMENT
    naming recipient_public_key, nothing stored. The key is stored with the request and named
    (rcpt=, its fingerprint) in the bulk.request record and the approver's bulk.approve record,
    and the gateway's role cannot change it afterwards."""
    ids = [i for _, i in records]
    before = stack.psql("SELECT count(*) FROM bulk_request")
    key_rule = ("recipient_public_key: must be the recipient's raw X25519 public key (32 bytes) "
                "for an export or copy")
    for op, pub in ((1, b""), (2, b""), (1, RECIPIENT_PUB[:31]), (1, b"\x00" * 32)):
        assert refusal(lambda: request(people, op, ids, pub=pub)) == (
            grpc.StatusCode.INVALID_ARGUMENT, key_rule), (op, pub)
    assert refusal(lambda: request(people, 3, ids, pub=RECIPIENT_PUB)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "recipient_public_key: must be empty for a destruction: nothing is sealed")
    assert stack.psql("SELECT count(*) FROM bulk_request") == before
    r = request(people, 1, ids)
    assert stack.psql("SELECT encode(recipient_key, 'hex') FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == [RECIPIENT_PUB.hex()]
    rcpt = " rcpt=%s " % rcpt_of(RECIPIENT_PUB)
    [detail] = record_detail(stack, "bulk.request", r.request_id)
    assert detail.startswith("kind=export" + rcpt), detail
    approve(people, r.request_id)
    assert record_detail(stack, "bulk.approve", r.request_id) == ["kind=export" + rcpt.rstrip()]
    # written once: the gateway's role holds no UPDATE of the column (sql/040)
    assert "permission denied" in gateway_sql_refused(
        stack, "UPDATE bulk_request SET recipient_key = '\\x%s' WHERE id = '%s'"
        % ("11" * 32, r.request_id))


def view(people, request_id, who=APPROVER):
    pb = people.stack.pb.compliance
    return people.unary(who, VIEW, pb.GetBulkRequest(request_id=request_id), pb.BulkRequestView)


def epoch(stack, column, request_id):
    """A time column of a bulk request as whole seconds since the epoch (0: none)."""
    [v] = stack.psql("SELECT coalesce(floor(extract(epoch FROM %s))::bigint, 0) FROM "
                     "bulk_request WHERE id = '%s'" % (column, request_id))
    return int(v)


def view_rows(stack, request_id):
    return stack.psql("SELECT outcome, actor, role, count, approval, detail, purpose, legal_basis "
                      "FROM audit_record WHERE action = 'bulk.view' AND object = '%s' ORDER BY seq"
                      % request_id)


def test_the_approver_sees_what_was_requested(stack, people, records):
    """The finding (Art. 37): ApproveBulk takes an id alone and no method showed the approver what
    it names, so a requester could file a harmless request and a harmful one (a destruction, an
    export sealed to its own key) and hand over the second's id. GetBulk shows a request as
    stored, which is what runs (written once: the gateway's role cannot change it): every field
    the requester gave, the recipient key with the fingerprint its bulk.request record names, the
    count, the requester, the state and its times; once decided, the decider and the approval's
    expiry. The requester may look at its own. Each view leaves a bulk.view record naming the
    request, what it showed (operation, key, state), its purpose and legal basis."""
    pb = stack.pb.compliance
    ids = [i for _, i in records]
    req = pb.RequestBulkRequest(operation=pb.BULK_OPERATION_EXPORT,
                                purpose="regulator inspection sample",
                                legal_basis="《邮政法》第三十五条; 监管检查 2026-17",
                                destination="regulator audit workstation 3",
                                recipient_public_key=RECIPIENT_PUB)
    req.selector.branch, req.selector.from_day, req.selector.to_day = "a", "2000-01-01", \
        "2999-12-31"
    req.selector.record_ids.extend(ids)
    r = people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)
    harmful = request(people, 3, ids, purpose="erasure")  # another id: another request shown
    v = view(people, r.request_id)
    assert (v.request_id, v.operation, v.selector) == (r.request_id, req.operation, req.selector)
    assert (v.purpose, v.legal_basis, v.destination, list(v.fields)) == (
        req.purpose, req.legal_basis, req.destination, [])
    assert v.recipient_public_key == RECIPIENT_PUB
    rcpt = rcpt_of(RECIPIENT_PUB)
    assert v.recipient_key_fingerprint == rcpt
    [detail] = record_detail(stack, "bulk.request", r.request_id)
    assert detail.startswith("kind=export rcpt=%s " % v.recipient_key_fingerprint), detail
    assert (v.record_count, v.max_level, v.state) == (3, 0, pb.APPROVAL_STATE_PENDING)
    me, them = stack.account(REQUESTER)[0], stack.account(APPROVER)[0]
    assert (v.requester, v.requester_role, v.requester_branch) == (me, "compliance_auditor", "")
    assert v.requested_at == epoch(stack, "requested_at", r.request_id) > 0
    # [compliance] approval_ttl_s, 86400 by default: decided by then or expired
    assert v.expires_at == epoch(stack, "requested_at + interval '86400 seconds'", r.request_id)
    assert (v.decider, v.decider_role, v.decided_at) == ("", "", 0)
    assert view(people, r.request_id, who=REQUESTER) == v
    h = view(people, harmful.request_id)
    assert (h.operation, list(h.selector.record_ids), h.purpose) == (
        pb.BULK_OPERATION_DESTROY, ids, "erasure")
    assert (h.recipient_public_key, h.recipient_key_fingerprint) == (b"", "")
    approve(people, r.request_id)
    a = view(people, r.request_id)
    assert (a.state, a.decider, a.decider_role) == (pb.APPROVAL_STATE_APPROVED, them,
                                                    "security_admin")
    assert a.decided_at == epoch(stack, "decided_at", r.request_id) >= v.requested_at
    assert a.expires_at == epoch(stack, "expires_at", r.request_id) > a.decided_at
    for f in ("state", "decider", "decider_role", "decided_at", "expires_at"):
        setattr(a, f, getattr(v, f))
    assert a == v  # nothing else changed
    common = "|3|%s|kind=export rcpt=%s state=%%s|%s|%s" % (r.request_id, rcpt, req.purpose,
                                                            req.legal_basis)
    assert view_rows(stack, r.request_id) == [
        "ok|%s|security_admin" % them + common % "pending",
        "ok|%s|compliance_auditor" % me + common % "pending",
        "ok|%s|security_admin" % them + common % "approved"]
    assert view_rows(stack, harmful.request_id) == [
        "ok|%s|security_admin|3|%s|kind=destroy state=pending|erasure|%s"
        % (them, harmful.request_id, "《邮政法》第三十五条; 监管检查 2026-17")]


def test_a_view_of_an_unknown_id_is_refused_as_a_decision_is(stack, people):
    """GetBulk reads a request by the load ApproveBulk and RunBulk decide by: an id that names no
    request is NOT_FOUND in their words, one that is no UUID INVALID_ARGUMENT in theirs. The
    unknown id leaves a refused bulk.view record as theirs leave a refused bulk.approve and
    bulk.run ("no such request", the id as object and approval), so that an insider trying ids
    with GetBulk is in the trail (an attacker's probe found it was not; bounded as every
    refusal a handler records, past 64 kinds a window the ids are named in one counting record
    as far as its list holds, the rest counted there); the
    malformed ones reach no request and leave none."""
    unknown = str(uuid.uuid4())
    got = refusal(lambda: view(people, unknown))
    assert got[0] == grpc.StatusCode.NOT_FOUND and got[1].startswith("request_id:"), got
    assert got == refusal(lambda: approve(people, unknown))
    assert got == refusal(lambda: run(people, unknown))
    bad = refusal(lambda: view(people, "not-a-uuid"))
    assert bad[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert bad == refusal(lambda: approve(people, "not-a-uuid"))
    assert refusal(lambda: view(people, ""))[1] == "request_id: is required"
    # recorded without holding the answer (the refusals' bound, refusals.h): waited for
    them = stack.account(APPROVER)[0]
    want = ["refused|%s|security_admin||%s|no such request||" % (them, unknown)]
    assert wait_for(lambda: view_rows(stack, unknown) == want, 30), view_rows(stack, unknown)
    assert stack.psql("SELECT action, outcome, detail FROM audit_record WHERE object = '%s' "
                      "ORDER BY action" % unknown) == [
        "bulk.approve|refused|no such request", "bulk.run|refused|no such request",
        "bulk.view|refused|no such request"]
    assert stack.psql("SELECT count(*) FROM audit_record WHERE action = 'bulk.view' AND "
                      "object IN ('not-a-uuid', '')") == ["0"]


def test_a_view_whose_caller_went_away_is_recorded_all_the_same(stack, people, records):
    """Nothing is shown before the view's bulk.view record committed, and once queued that record
    is written whether or not its caller stays (gw_audit_rebind, not gw_audit_cancel): with a lock
    the test keeps on audit_record, one view's record is in flight (its answer waits) and a second
    view's queued behind it; the second caller cancels, and once the lock goes both are on record
    (the first answered, the second shown nothing)."""
    from conftest import scrape_metrics
    from test_report import waiting_on_audit_record
    pb = stack.pb.compliance
    first, second = request(people, 1, [records[0][1]]), request(people, 1, [records[1][1]])
    md = people.metadata(APPROVER)  # logged in before the lock: a login is recorded too
    req_id = "it-bulk-view-cancel-%d" % int(time.time() * 1000)
    call = people.channel(APPROVER).unary_unary(
        VIEW, request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.BulkRequestView.FromString)

    def queued():
        return scrape_metrics(stack.env["WAYGATE_METRICS_ADDR"])["waygate_audit_queued"]
    holder = lock_holder(stack, "LOCK TABLE audit_record IN EXCLUSIVE MODE")
    try:
        answered = call.future(pb.GetBulkRequest(request_id=first.request_id), timeout=120,
                               metadata=md)
        assert wait_for(lambda: waiting_on_audit_record(stack), 30), "the record never waited"
        before = queued()
        gone = call.future(pb.GetBulkRequest(request_id=second.request_id), timeout=120,
                           metadata=md + [("x-request-id", req_id)])
        assert wait_for(lambda: queued() > before, 30), "the second view's record never queued"
        assert not answered.done()  # its record waits: nothing shown yet
        assert gone.cancel()
        assert wait_for(lambda: any(req_id in x and "call cancelled: " + VIEW in x
                                    for x in stack.log_lines()), 60), "no cancel seen"
    finally:
        release_holder(holder)
    assert answered.result().request_id == first.request_id
    for r in (first, second):
        assert wait_for(lambda: view_rows(stack, r.request_id), 30), "a view was not recorded"
        assert view_rows(stack, r.request_id) == [
            "ok|%s|security_admin|1|%s|kind=export rcpt=%s state=pending|%s|%s"
            % (stack.account(APPROVER)[0], r.request_id, rcpt_of(RECIPIENT_PUB),
               "regulator inspection sample", "《邮政法》第三十五条; 监管检查 2026-17")]


def test_only_the_roles_that_request_or_approve_view_a_request(stack, people, records):
    """GetBulk is the bulk roles' (those that may request or approve one: compliance_auditor and
    security_admin, through a person's account); every other role, an account's or a device's, is
    PERMISSION_DENIED by its role, and a bulk role's certificate without its account's token is
    refused as for every bulk call (Art. 31). Nothing is shown, nothing recorded."""
    from test_permissions import ADMIN_CERT_REFUSAL
    pb = stack.pb.compliance
    r = request(people, 1, [records[0][1]])
    ask = pb.GetBulkRequest(request_id=r.request_id)

    def denied(role):
        return (grpc.StatusCode.PERMISSION_DENIED,
                "role %s: may not call this method (least privilege, Art. 34)" % role)
    for account, role in (("clerk_a", "branch_clerk"), ("cs_a", "customer_service"),
                          ("sysadmin", "system_admin"), ("lawful", "lawful_access")):
        assert refusal(lambda: view(people, r.request_id, who=account)) == denied(role), account
    for principal, role in (("courier_a", "courier"), ("branch_a", "branch_clerk"),
                            ("backend", "backend")):
        assert refusal(lambda: stack.unary(VIEW, ask, pb.BulkRequestView,
                                           principal=principal)) == denied(role), principal
    assert refusal(lambda: stack.unary(VIEW, ask, pb.BulkRequestView, principal="admin")) == (
        grpc.StatusCode.PERMISSION_DENIED, ADMIN_CERT_REFUSAL)
    assert view_rows(stack, r.request_id) == []


def test_a_run_with_another_key_than_approved_is_refused(stack, people, records):
    """The finding: an export requested for "regulator ws 3" with the regulator's key and
    approved by a second person, then run by its requester with a key pair of their own. Refused
    FAILED_PRECONDITION naming recipient_public_key and the rule, before anything is claimed or
    released, and recorded as a refused bulk.run (both keys' fingerprints); the request stays
    approved, and runs sealed to the approved key (given or not), which opens it."""
    ids = [i for _, i in records]
    pb = stack.pb.compliance
    req = pb.RequestBulkRequest(operation=1, purpose="regulator inspection sample",
                                legal_basis="《邮政法》第三十五条", destination="regulator ws 3",
                                recipient_public_key=RECIPIENT_PUB)
    req.selector.record_ids.extend(ids)
    r = people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)
    approve(people, r.request_id)
    mine = X25519PrivateKey.generate()
    assert refusal(lambda: run(people, r.request_id, raw_public(mine))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "recipient_public_key: is not the recipient key the bulk request was approved with; an "
        "export or copy is sealed only to the key its approver saw (Art. 37)")
    assert stack.psql("SELECT state, export_id IS NULL FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == ["approved|t"]
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "refused|%s||%s" % (stack.account(REQUESTER)[0], r.request_id)]
    assert record_detail(stack, "bulk.run", r.request_id) == [
        "recipient key not the approved one: given rcpt=%s, approved rcpt=%s"
        % (rcpt_of(raw_public(mine)), rcpt_of(RECIPIENT_PUB))]
    # the approved key: given none, the run seals to it, and it opens the output
    chunks = run(people, r.request_id)
    data = b"".join(c.data for c in chunks)
    assert chunks[-1].last and chunks[-1].records_done == 3
    with pytest.raises(Exception):
        open_export(mine, data)
    _, plain = open_export(RECIPIENT, data)
    assert len(rows_of(plain)[1]) == 3
    assert [row.split("|")[0] for row in audit_rows(stack, "bulk.run", r.request_id)] == [
        "refused", "ok"]
    assert " rcpt=%s " % rcpt_of(RECIPIENT_PUB) in record_detail(
        stack, "bulk.run", r.request_id)[1]


def test_a_request_stored_without_a_key_runs_no_export(stack, people, records):
    """A request stored before sql/040 has no recipient key, so none was approved: its export is
    refused FAILED_PRECONDITION (request it again), with any key or none, and recorded; the
    database's claim takes no key for it either."""
    r = request(people, 1, [records[0][1]])
    approve(people, r.request_id)
    tamper(stack, "UPDATE bulk_request SET recipient_key = NULL WHERE id = '%s'" % r.request_id)
    again = (grpc.StatusCode.FAILED_PRECONDITION,
             "request_id: the bulk request was stored without a recipient key, so none was "
             "approved; request the export or copy again with its recipient_public_key (Art. 37)")
    assert refusal(lambda: run(people, r.request_id)) == again
    assert refusal(lambda: run(people, r.request_id, RECIPIENT_PUB)) == again
    assert [row.split("|")[0] for row in audit_rows(stack, "bulk.run", r.request_id)] == [
        "refused", "refused"]
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
        "approved"]


def exported(stack, people, records):
    """An approved export of the module's records: (request id, chunks, private key)."""
    priv, pub = keypair()
    r = request(people, 1, [i for _, i in records])
    d = approve(people, r.request_id)
    assert d.state == stack.pb.compliance.APPROVAL_STATE_APPROVED
    chunks = run(people, r.request_id, pub)
    return r.request_id, chunks, priv


@pytest.fixture(scope="module")
def export(stack, people, records):
    return exported(stack, people, records)


def rows_of(plain):
    lines = plain.decode("ascii").splitlines()
    return lines[0], lines[1:]


KEY_CHANGED = (grpc.StatusCode.FAILED_PRECONDITION,
               "request_id: the bulk request's recipient key is not the one it was requested "
               "with: it was changed in the database (an incident is recorded); nothing was "
               "decided or released (Art. 37)")


def call_across_a_change(stack, request_id, assignment, call):
    """call() (ApproveBulk or RunBulk of request_id) with the request's row changed in SQL
    (UPDATE ... SET assignment; TAMPER: sql/047's triggers refuse it to every role) after the
    gateway read it and before its statements wrote: the UPDATE holds the row; the call reads the
    row as it was (a read does not wait), passes the gateway's own checks of it and sends its
    statements, which wait on the row (seen in pg_stat_activity: a session blocked by the
    UPDATE's); then the UPDATE
    commits. So only the statements' conditions stand between the change and the decision or
    run. Returns (status, details), or "ok" if it succeeded."""
    holder = lock_holder(stack, TAMPER + "UPDATE bulk_request SET %s WHERE id = '%s'"
                         % (assignment, request_id), uri=superuser_uri(stack))
    result = {}

    def go():
        try:
            call()
            result["out"] = "ok"
        except grpc.RpcError as e:
            result["out"] = (e.code(), e.details())

    t = threading.Thread(target=go)
    try:
        pid = holder_pid(holder)
        t.start()
        assert wait_for(lambda: waiting_on(stack, pid, superuser_uri(stack)), 60)
        holder.stdin.write("COMMIT;\n\\echo committed\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "committed"
        t.join(timeout=120)
    finally:
        release_holder(holder)
        t.join(timeout=120)
    return result.get("out")


def call_across_a_key_change(stack, request_id, call):
    """call_across_a_change with the stored recipient key changed to another key."""
    other = raw_public(X25519PrivateKey.generate()).hex()
    out = call_across_a_change(stack, request_id, "recipient_key = '\\x%s'" % other, call)
    assert stack.psql("SELECT encode(recipient_key, 'hex') FROM bulk_request WHERE id = '%s'"
                      % request_id) == [other]
    return out


def refused_for_a_changed_key(stack, request_id, run, read=RECIPIENT_PUB):
    """What a decision (run: a run) refused for a changed key leaves: the request as it was
    (pending and undecided; approved and not run), one refused record saying why, and a critical
    bulk_key_changed incident naming the request and the key read (read: its public key)."""
    if run:
        action, who = "bulk.run", REQUESTER
        state, expect = "state, export_id IS NULL, run_at IS NULL", "approved|t|t"
    else:
        action, who = "bulk.approve", APPROVER
        state, expect = "state, approver IS NULL, decided_at IS NULL", "pending|t|t"
    assert stack.psql("SELECT %s FROM bulk_request WHERE id = '%s'" % (state, request_id)) == [
        expect]
    assert audit_rows(stack, action, request_id) == [
        "refused|%s||%s" % (stack.account(who)[0], request_id)]
    assert record_detail(stack, action, request_id) == ["recipient key changed"]
    q = ("SELECT severity, detail FROM incident WHERE kind = 'bulk_key_changed' AND detail LIKE "
         "'bulk request %s:%%'" % request_id)
    assert wait_for(lambda: stack.psql(q), 30) == [  # written by the incident queue
        "critical|bulk request %s: its stored recipient key (read rcpt=%s) is not the one its %s "
        "names: changed in the database; not %s"
        % (request_id, rcpt_of(read), "approval" if run else "request",
           "run" if run else "decided")]


def test_a_key_changed_before_a_decision_decides_nothing(stack, people, records):
    """A pending request's stored key is changed in SQL (TAMPER), and the approver,
    whose gateway reads that key and would name it in the bulk.approve record, is refused by the
    decision's own statement: the stored key is not the one the request's bulk.request record
    names. FAILED_PRECONDITION naming request_id and the rule,
    nothing decided, a refused bulk.approve record and a critical bulk_key_changed incident.
    Red with the record condition taken out of the key statement: approved, for a key nobody
    requested."""
    r = request(people, 1, [records[0][1]])
    other = X25519PrivateKey.generate()
    tamper(stack, "UPDATE bulk_request SET recipient_key = '\\x%s' WHERE id = '%s'"
               % (raw_public(other).hex(), r.request_id))
    assert refusal(lambda: approve(people, r.request_id)) == KEY_CHANGED
    refused_for_a_changed_key(stack, r.request_id, False, raw_public(other))


def test_a_key_changed_after_the_approval_releases_nothing(stack, people, records):
    """An approved request's stored key is changed in SQL (TAMPER) to a key of their own, and
    the requester runs it with that key. The gateway's check passes (the key given is the one
    stored); the claim's statement refuses it, the stored key not being the one the
    approver's bulk.approve record names. FAILED_PRECONDITION naming request_id and the rule,
    nothing released (still approved, no export id), a refused bulk.run record and a critical
    bulk_key_changed incident. Red with the record condition taken out: sealed to the owner's
    key."""
    r = request(people, 1, [i for _, i in records])
    approve(people, r.request_id)
    mine = raw_public(X25519PrivateKey.generate())
    tamper(stack, "UPDATE bulk_request SET recipient_key = '\\x%s' WHERE id = '%s'"
               % (mine.hex(), r.request_id))
    assert refusal(lambda: run(people, r.request_id, mine)) == KEY_CHANGED
    refused_for_a_changed_key(stack, r.request_id, True, mine)
    # the approved key again: it runs, sealed to it
    tamper(stack, "UPDATE bulk_request SET recipient_key = '\\x%s' WHERE id = '%s'"
               % (RECIPIENT_PUB.hex(), r.request_id))
    chunks = run(people, r.request_id)
    assert chunks[-1].last and chunks[-1].records_done == 3
    _, plain = open_export(RECIPIENT, b"".join(c.data for c in chunks))
    assert len(rows_of(plain)[1]) == 3


def test_a_key_changed_under_a_decision_decides_nothing(stack, people, records):
    """The database's own binding of a decision to the key its record names: the stored key
    changed between the gateway's read and the decision's statement (which the gateway's role
    cannot do, sql/040) is refused by the statement: FAILED_PRECONDITION naming request_id and
    the rule (not "not pending": it is), the request still pending and undecided, a refused
    bulk.approve record and a critical bulk_key_changed incident naming the request. Red with
    the statements' key and record conditions taken out: approved, for a key its approver never
    saw; red with the key statement's conditions alone taken out: "not pending"."""
    r = request(people, 1, [records[0][1]])
    assert call_across_a_key_change(
        stack, r.request_id, lambda: approve(people, r.request_id)) == KEY_CHANGED
    refused_for_a_changed_key(stack, r.request_id, False)
    # one decided meanwhile, its key unchanged, is still told as no longer pending
    r = request(people, 1, [records[0][1]])
    assert call_across_a_change(
        stack, r.request_id, "state = 'rejected', approver = 'it', decided_at = now()",
        lambda: approve(people, r.request_id)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "request_id: the bulk request is not pending: it was already decided, or it expired "
            "undecided")
    # recorded refused, as the attempt it was (no approval)
    assert [row.split("|")[0] for row in audit_rows(stack, "bulk.approve", r.request_id)] == [
        "refused"]
    assert record_detail(stack, "bulk.approve", r.request_id) == ["not pending"]


def test_a_key_changed_under_a_run_releases_nothing(stack, people, records):
    """The database's own binding of a run to the stored key: the key changed after the
    gateway read and checked it (the approved key, given by the caller) and before the run's
    claim is refused by the claim's statement: FAILED_PRECONDITION naming request_id and the
    rule, nothing released (the request still approved, no export id), a refused bulk.run
    record and a critical bulk_key_changed incident. Red with the statements' key and record
    conditions taken out: the run sealed to the key read and marked executed."""
    r = request(people, 1, [i for _, i in records])
    approve(people, r.request_id)
    assert call_across_a_key_change(
        stack, r.request_id, lambda: run(people, r.request_id, RECIPIENT_PUB)) == KEY_CHANGED
    refused_for_a_changed_key(stack, r.request_id, True)


def test_export_decrypts_with_the_requesters_key(stack, people, records, export):
    request_id, chunks, priv = export
    data = b"".join(c.data for c in chunks)
    assert [c.offset for c in chunks] == [sum(len(x.data) for x in chunks[:k])
                                          for k in range(len(chunks))]
    last = chunks[-1]
    assert last.last and all(not c.last for c in chunks[:-1])
    assert last.sha256 == hashlib.sha256(data).hexdigest()
    assert last.records_done == 3
    eid, plain = open_export(priv, data)
    assert str(__import__("uuid").UUID(bytes=eid)) == last.watermark_id
    first, rows = rows_of(plain)
    assert first == "waygate-export v1 " + last.watermark_id
    assert len(rows) == 3
    # another key cannot open it; a cut file does not open
    with pytest.raises(Exception):
        open_export(X25519PrivateKey.generate(), data)
    with pytest.raises(Exception):
        open_export(priv, data[:-1])
    assert stack.psql("SELECT state, export_id FROM bulk_request WHERE id = '%s'"
                      % request_id) == ["executed|" + last.watermark_id]
    assert audit_rows(stack, "bulk.run", request_id) == [
        "ok|%s|3|%s" % (stack.account(REQUESTER)[0], request_id)]
    # the record names the key the output was sealed to (Art. 37, where it went): the request's
    # destination is free text, the key is the run caller's choice
    pub = priv.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    detail = stack.psql("SELECT detail FROM audit_record WHERE action = 'bulk.run' AND "
                        "approval = '%s'" % request_id)[0]
    assert " rcpt=%s " % hashlib.sha256(pub).hexdigest()[:16] in detail, detail


def test_export_holds_only_the_roles_view(stack, people, records, export):
    _, chunks, priv = export
    _, plain = open_export(priv, b"".join(c.data for c in chunks))
    _, rows = rows_of(plain)
    views = [stack.pb.common.WaybillView.FromString(base64.b64decode(r.split(" ")[0]))
             for r in rows]
    assert sorted(v.id for v in views) == sorted(i for _, i in records)
    by_id = {i: w for w, i in records}
    for v in views:
        w = by_id[v.id]
        # compliance_auditor's view (deploy/policy.conf): no personal field at all
        for party in (v.waybill.sender, v.waybill.recipient):
            for f in PII_FIELDS:
                assert getattr(party, f) == "", f
        assert v.waybill.waybill_no == "" and v.waybill.item_description == ""
        assert "sender.phone" in v.redacted_fields and "recipient.name" in v.redacted_fields
        # the operational fields are there
        assert v.waybill.origin_branch == "a"
        assert v.waybill.weight_grams == w.weight_grams
    # and no clear value of any record anywhere in the file
    for w, _ in records:
        for value in (w.sender.phone, w.recipient.phone, w.sender.name, w.waybill_no):
            assert value.encode() not in plain


def test_export_follows_the_roles_policy_view(stack, people, records):
    """The export is rendered through the policy for the requester's role, cell by cell: give
    compliance_auditor two cells by a policy file (sender.name masked, recipient.city clear) and
    SIGHUP; a new export holds exactly those two personal fields so, and omits every other one.
    (With the default policy the role sees no personal field: the test above.)"""
    from test_views import default_text, set_policy_file, sighup, write_policy
    base = default_text()
    text = base.replace("[view.compliance_auditor]\n",
                        "[view.compliance_auditor]\nsender.name = mask\nrecipient.city = clear\n", 1)
    assert text != base
    path = os.path.join(stack.dir, "policy_bulk.conf")
    write_policy(path, text)
    set_policy_file(stack, path)
    try:
        line = sighup(stack)
        assert "policy reloaded from %s" % path in line, line
        _, chunks, priv = exported(stack, people, records)
    finally:
        set_policy_file(stack, None)
        assert "policy reloaded from the built-in default" in sighup(stack)
    _, plain = open_export(priv, b"".join(c.data for c in chunks))
    _, rows = rows_of(plain)
    views = [stack.pb.common.WaybillView.FromString(base64.b64decode(r.split(" ")[0]))
             for r in rows]
    by_id = {i: w for w, i in records}
    assert sorted(v.id for v in views) == sorted(by_id)
    for v in views:
        w = by_id[v.id]
        assert v.waybill.recipient.city == w.recipient.city
        name = v.waybill.sender.name
        assert name and name != w.sender.name and "*" in name and name[0] == w.sender.name[0]
        for party, keep in ((v.waybill.sender, "name"), (v.waybill.recipient, "city")):
            for f in PII_FIELDS:
                if f != keep:
                    assert getattr(party, f) == "", f
        assert "sender.name" in v.redacted_fields  # masked: not clear
        assert "recipient.city" not in v.redacted_fields
        assert "sender.phone" in v.redacted_fields
        assert w.sender.name.encode() not in plain


def test_an_export_runs_once(stack, people, export):
    request_id, _, _ = export
    _, pub = keypair()
    code, _ = refusal(lambda: run(people, request_id, pub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def trace(stack, path):
    return stack.ctl("export", "trace", path, "--keyring", os.path.join(stack.dir, "keyring"),
                     "--db", stack.pguri)


def test_rows_cut_from_an_export_are_traced(stack, people, records, export, tmp_path):
    request_id, chunks, priv = export
    last = chunks[-1]
    _, plain = open_export(priv, b"".join(c.data for c in chunks))
    _, rows = rows_of(plain)
    # a second export of the same records: other tags
    request2, chunks2, priv2 = exported(stack, people, records)
    _, plain2 = open_export(priv2, b"".join(c.data for c in chunks2))
    _, rows2 = rows_of(plain2)
    assert set(rows).isdisjoint(rows2)

    frag = tmp_path / "fragment.txt"
    frag.write_text(rows[1] + "\n")  # one row, without the file's first line
    r = trace(stack, str(frag))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "export %s: 1 row" % last.watermark_id in r.stdout
    assert "request %s" % request_id in r.stdout
    assert "requested by %s (compliance_auditor)" % stack.account(REQUESTER)[0] in r.stdout
    assert "approved by %s (security_admin)" % stack.account(APPROVER)[0] in r.stdout
    assert chunks2[-1].watermark_id not in r.stdout

    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\n".join([rows2[0], rows[2], rows2[2]]) + "\n")
    r = trace(stack, str(mixed))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "export %s: 1 row" % last.watermark_id in r.stdout
    assert "export %s: 2 rows" % chunks2[-1].watermark_id in r.stdout
    assert "request %s" % request2 in r.stdout

    # an altered row matches no export
    row = rows[0]
    bad = row[:5] + ("A" if row[5] != "A" else "B") + row[6:]
    altered = tmp_path / "altered.txt"
    altered.write_text(bad + "\n")
    r = trace(stack, str(altered))
    assert r.returncode == 1
    assert "matching no export: 1" in r.stdout

    # the sealed file names its export by its header
    sealed = tmp_path / "export.wgx"
    sealed.write_bytes(b"".join(c.data for c in chunks))
    r = trace(stack, str(sealed))
    assert r.returncode == 0 and "export %s: named by the sealed" % last.watermark_id in r.stdout

    # every trace is recorded in the CLI's chain, naming the export found first
    recs = stack.psql("SELECT object, outcome, detail FROM audit_record WHERE chain = 'ctl' "
                      "AND action = 'export.trace' ORDER BY seq")
    assert recs[-4:] == [
        "%s|ok|1 rows traced to 1 exports, 0 matching none" % last.watermark_id,
        "%s|ok|3 rows traced to 2 exports, 0 matching none" % last.watermark_id,
        "|untraced|0 rows traced to 0 exports, 1 matching none",
        "%s|ok|sealed file: named" % last.watermark_id]


def test_destroy_shreds_and_keeps_a_destruction_record(stack, people):
    victims = []
    for _ in range(2):
        w = new_waybill(stack, "a")
        victims.append((w, submit(stack, w)))
    ids = [i for _, i in victims]
    past_this_second()
    keys = stack.psql("SELECT encode(dek_wrapped, 'hex') FROM waybill WHERE id IN ('%s')"
                      % "','".join(ids))
    assert len(keys) == 2
    r = request(people, 3, ids, purpose="customer erasure request 2026-88",
                legal_basis="《个人信息保护法》第四十七条; written request ref 88")
    assert r.record_count == 2
    code, _ = refusal(lambda: run(people, r.request_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # not approved: nothing destroyed
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN ('%s')" % "','".join(ids)) == [
        "2"]
    approve(people, r.request_id)
    chunks = run(people, r.request_id)
    assert chunks[-1].last and chunks[-1].records_done == 2 and chunks[-1].data == b""
    # the rows and their wrapped data keys are gone: nothing of them can be decrypted
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN ('%s')" % "','".join(ids)) == [
        "0"]
    for k in keys:
        assert stack.psql("SELECT count(*) FROM waybill WHERE dek_wrapped = decode('%s', 'hex')"
                          % k) == ["0"]
    for w, _ in victims:
        code, _ = refusal(lambda: get(stack, w.waybill_no, "branch_a"))
        assert code == grpc.StatusCode.NOT_FOUND
    rec = stack.psql("SELECT reason, selector, requester, approver, count FROM destruction "
                     "WHERE request_id = '%s'" % r.request_id)
    assert rec == ["bulk|branch=* from=- to=- ids=2 level<=0|%s|%s|2"
                   % (stack.account(REQUESTER)[0], stack.account(APPROVER)[0])]
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "refused|%s||%s" % (stack.account(REQUESTER)[0], r.request_id),
        "ok|%s|2|%s" % (stack.account(REQUESTER)[0], r.request_id)]
    code, _ = refusal(lambda: run(people, r.request_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # once


def test_a_destroy_selecting_a_record_a_lawful_case_holds_destroys_nothing(stack, people):
    """An approved destroy that selects a waybill named by an approved, unexpired lawful-access
    case is refused whole (sql/038's trigger): FAILED_PRECONDITION naming the rule, nothing
    destroyed, a refused bulk.run record, the request still approved; once the case's
    valid_until has passed the same request runs. Before, the destroy took the held record with
    the others."""
    from test_retention import lapse, hold
    ids = [submit(stack, new_waybill(stack, "a")) for _ in range(2)]
    past_this_second()
    in_ids = "('%s')" % "','".join(ids)
    r = request(people, 3, ids, purpose="customer erasure request 2026-91",
                legal_basis="《个人信息保护法》第四十七条; written request ref 91")
    approve(people, r.request_id)
    case = hold(stack, ids[1])
    assert refusal(lambda: run(people, r.request_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "request_id: selects a record that an approved, unexpired lawful-access case holds "
        "(Art. 16); nothing was destroyed")
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s" % in_ids) == ["2"]
    assert stack.psql("SELECT state, run_count IS NULL FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == ["approved|t"]
    assert stack.psql("SELECT count(*) FROM destruction WHERE request_id = '%s'"
                      % r.request_id) == ["0"]
    assert stack.psql("SELECT outcome, detail FROM audit_record WHERE action = 'bulk.run' AND "
                      "approval = '%s'" % r.request_id) == ["refused|lawful hold"]
    lapse(stack, case)
    assert run(people, r.request_id)[-1].records_done == 2
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s" % in_ids) == ["0"]


def test_a_destroy_that_loses_a_deadlock_is_unavailable_and_stays_runnable(stack, people):
    """An approved destroy whose DELETE is chosen as a deadlock's victim (40P01: here against a
    session that holds a selected record's row and then waits for the request's row, which the
    run's claim locked, as a suite migration's batch met a destruction on the phone register)
    is refused UNAVAILABLE with a message saying retry, a refused bulk.run record, nothing
    destroyed, the request still approved; it then runs. Before, any error of the destroy's
    statement was "the records selected changed" (FAILED_PRECONDITION), which sends the requester
    to request it again for nothing. The gateway's DELETE waits first, so its deadlock check
    (deadlock_timeout after its wait began) runs first and it is the victim: no sleep decides."""
    ids = [submit(stack, new_waybill(stack, "a")) for _ in range(2)]
    past_this_second()
    in_ids = "('%s')" % "','".join(ids)
    r = request(people, 3, ids, purpose="customer erasure request 2026-93",
                legal_basis="《个人信息保护法》第四十七条; written request ref 93")
    approve(people, r.request_id)
    holder = lock_holder(stack, "SELECT 1 FROM waybill WHERE id = '%s' FOR UPDATE" % ids[1])
    try:
        pid = holder_pid(holder)
        out = {}

        def go():
            out["r"] = refusal(lambda: run(people, r.request_id))
        t = threading.Thread(target=go)
        t.start()
        su = superuser_uri(stack)
        assert wait_for(lambda: any("bulk_destroy" in q for q in waiting_on(stack, pid, su)), 60)
        # the holder now waits for the row the run's claim holds: a cycle
        holder.stdin.write("SELECT 1 FROM bulk_request WHERE id = '%s' FOR UPDATE;\n\\echo got\n"
                           % r.request_id)
        holder.stdin.flush()
        t.join(120)
        assert not t.is_alive()
        while holder.stdout.readline().strip() != "got":  # the holder won: the run gave way
            pass
    finally:
        release_holder(holder)
    assert out["r"] == (
        grpc.StatusCode.UNAVAILABLE,
        "a record it selects was locked by another transaction (a maintenance batch, a retention "
        "sweep) and the destruction gave way (deadlock or lock timeout); nothing was destroyed "
        "and the request stays approved: retry")
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s" % in_ids) == ["2"]
    assert stack.psql("SELECT state, run_count IS NULL FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == ["approved|t"]
    assert stack.psql("SELECT outcome, detail FROM audit_record WHERE action = 'bulk.run' AND "
                      "approval = '%s'" % r.request_id) == ["refused|lock conflict: retry"]
    assert run(people, r.request_id)[-1].records_done == 2
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s" % in_ids) == ["0"]


def test_a_destroy_that_meets_a_held_record_gives_way_within_its_lock_timeout(stack, people):
    """An approved destroy selecting a record whose row another transaction holds (a key batch's
    FOR UPDATE, here a psql session's) waits at most bulk_destroy's lock_timeout (2 s, sql/048)
    instead of until that transaction commits, holding the gateway's audit writer (every audited
    call) all the while: RunBulk answers UNAVAILABLE saying retry while the lock is still held,
    nothing is destroyed, the request stays approved and runs once the lock is gone. Before, the
    run waited for the holder for ever."""
    ids = [submit(stack, new_waybill(stack, "a")) for _ in range(2)]
    past_this_second()
    in_ids = "('%s')" % "','".join(ids)
    r = request(people, 3, ids, purpose="customer erasure request 2026-94",
                legal_basis="《个人信息保护法》第四十七条; written request ref 94")
    approve(people, r.request_id)
    holder = lock_holder(stack, "SELECT 1 FROM waybill WHERE id = '%s' FOR UPDATE" % ids[0])
    try:
        code, msg = refusal(lambda: run(people, r.request_id))
        assert holder.poll() is None, "the lock holder ended before the run answered"
    finally:
        release_holder(holder)
    assert code == grpc.StatusCode.UNAVAILABLE and msg.endswith("stays approved: retry"), msg
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s" % in_ids) == ["2"]
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
        "approved"]
    assert run(people, r.request_id)[-1].records_done == 2
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN %s" % in_ids) == ["0"]


def test_a_destroy_deletes_only_records_within_the_requesters_levels(stack, people):
    """A bulk destroy is bounded by its requester's security levels exactly as an export is
    (bulk_within_level: the request's count, the run's count and bulk_destroy, sql/031): the
    compliance auditor (level 0) asking to destroy a plain and a 秘密 waybill is told 1, destroys
    the plain one only, and its destruction and bulk.run records count 1 with the level in the
    selector; the 秘密 record stays readable to a role cleared for it. A requester cleared for
    秘密 (a gateway whose policy gives compliance_auditor, and security_admin who approves,
    level 1) destroys it. Before, the level-0 auditor destroyed both."""
    pb = stack.pb
    ids, secret_no = plain_and_secret(stack)
    r = request(people, 3, ids, purpose="erasure of two records", legal_basis="ref 2026-31")
    assert r.record_count == 1
    approve(people, r.request_id)
    chunks = run(people, r.request_id)
    assert chunks[-1].last and chunks[-1].records_done == 1
    assert stack.psql("SELECT id FROM waybill WHERE id IN ('%s')" % "','".join(ids)) == [ids[1]]
    assert get(stack, secret_no, "branch_a").id == ids[1]
    me, them = stack.account(REQUESTER)[0], stack.account(APPROVER)[0]
    assert stack.psql("SELECT selector, requester, approver, count FROM destruction "
                      "WHERE request_id = '%s'" % r.request_id) == [
        "branch=* from=- to=- ids=2 level<=0|%s|%s|1" % (me, them)]
    assert audit_rows(stack, "bulk.run", r.request_id) == ["ok|%s|1|%s" % (me, r.request_id)]
    # a requester cleared for 秘密, approved by an approver cleared for it, destroys it
    gw = cleared_gateway(stack, "bulklevel", ("compliance_auditor", "security_admin"))
    try:
        ch = stack.channel(stack.account(REQUESTER)[2], addr=gw.addr)
        cpb = pb.compliance
        req = cpb.RequestBulkRequest(operation=3, purpose="erasure of a classified record",
                                     legal_basis="ref 2026-31b", destination="none")
        req.selector.record_ids.extend([ids[1]])
        cleared = waygate_proto.unary(ch, REQUEST, req, cpb.RequestBulkResponse,
                                      metadata=people.metadata(REQUESTER))
        assert cleared.record_count == 1
        assert stack.psql("SELECT max_level FROM bulk_request WHERE id = '%s'"
                          % cleared.request_id) == ["1"]
        waygate_proto.unary(stack.channel(stack.account(APPROVER)[2], addr=gw.addr), APPROVE,
                            cpb.ApproveBulkRequest(request_id=cleared.request_id, approve=True,
                                                   comment="checked"),
                            cpb.ApproveBulkResponse, metadata=people.metadata(APPROVER))
        chunks = list(waygate_proto.stream(ch, RUN, cpb.RunBulkRequest(
            request_id=cleared.request_id), cpb.RunBulkChunk,
            metadata=people.metadata(REQUESTER), timeout=60))
        assert chunks[-1].last and chunks[-1].records_done == 1
    finally:
        gw.close()
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % ids[1]) == ["0"]
    assert stack.psql("SELECT selector, count FROM destruction WHERE request_id = '%s'"
                      % cleared.request_id) == ["branch=* from=- to=- ids=1 level<=1|1"]


def test_a_destroy_leaves_nothing_of_its_records_in_the_suspicious_register(stack, people):
    """An approved bulk destroy takes out of the suspicious-customer register what only the
    destroyed waybills taught it, in its transaction (sql/046; part 12 Art. 7, Art. 37): no row
    names a destroyed record or holds a phone <-> ID number pair only they held; a phone shared
    with a surviving waybill keeps the survivor's pair, recounted (one sender: no longer
    suspicious, the report's count one less); a new waybill with a destroyed customer's phone and
    another ID number is not flagged against the destroyed one (register_lib). Before, every row
    stayed: the destroyed record still counted as a second sender."""
    c = register_lib.customers(stack, submit, submit)
    f = register_lib.facts(stack, c)
    past_this_second()
    flagged = register_lib.reported_suspicious(stack)
    ids = [c[k][1] for k in ("alone", "shared_victim", "same_victim")]
    r = request(people, 3, ids, purpose="customer erasure request 2026-90",
                legal_basis="《个人信息保护法》第四十七条; written request ref 90")
    assert r.record_count == 3
    approve(people, r.request_id)
    chunks = run(people, r.request_id)
    assert chunks[-1].last and chunks[-1].records_done == 3
    register_lib.check_forgotten(stack, c, f)
    assert register_lib.reported_suspicious(stack) == flagged - 1
    register_lib.check_new_sender(stack, c, f)


def cleared_gateway(stack, name, roles):
    """A second gateway on the stack's database whose policy raises each of roles to level 1
    (秘密) and is otherwise the shipped one."""
    from conftest import ExtraGateway
    from test_views import default_text, write_policy
    policy = os.path.join(stack.dir, "policy_%s.conf" % name)
    text = default_text()
    for role in roles:
        assert text.count("\n%s = 0\n" % role) == 1
        text = text.replace("\n%s = 0\n" % role, "\n%s = 1\n" % role)
    write_policy(policy, text)
    return ExtraGateway(stack, name, edit=lambda conf: conf + "\n[policy]\nfile = %s\n" % policy)


def test_an_approver_is_cleared_for_the_levels_a_request_takes(stack, people):
    """An approval releases (or destroys) the records a request takes, up to the level it was
    counted at (its max_level), so its approver's role is cleared for that level as its
    requester's was (parts 1, 2, 4; Art. 37). On a gateway whose policy clears only the
    compliance auditor for 秘密, the auditor's request takes the 秘密 record (max_level 1); the
    security admin (level 0 there, and on the stack's own gateway) may not approve it: each try is
    PERMISSION_DENIED naming request_id and the rule, leaves a refused bulk.approve record, and
    the request stays pending. Rejecting it releases nothing and needs no level. A request
    counted at level 0 is approved as always. Before, the level-0 approver approved it."""
    pb = stack.pb.compliance
    ids, _ = plain_and_secret(stack)
    gw = cleared_gateway(stack, "approverlevel", ("compliance_auditor",))
    try:
        ch = stack.channel(stack.account(REQUESTER)[2], addr=gw.addr)
        sec = stack.channel(stack.account(APPROVER)[2], addr=gw.addr)

        def ask(purpose):
            req = pb.RequestBulkRequest(operation=1, purpose=purpose, legal_basis="ref 2026-44",
                                        destination="regulator audit workstation 3",
                                        recipient_public_key=key_for(1))
            req.selector.record_ids.extend(ids)
            return waygate_proto.unary(ch, REQUEST, req, pb.RequestBulkResponse,
                                       metadata=people.metadata(REQUESTER))

        def decide(channel, request_id, ok):
            return waygate_proto.unary(channel, APPROVE, pb.ApproveBulkRequest(
                request_id=request_id, approve=ok, comment="checked"), pb.ApproveBulkResponse,
                metadata=people.metadata(APPROVER))
        r = ask("export of a classified record")
        assert r.record_count == 2
        assert stack.psql("SELECT max_level FROM bulk_request WHERE id = '%s'"
                          % r.request_id) == ["1"]
        for channel in (sec, people.channel(APPROVER)):
            code, details = refusal(lambda: decide(channel, r.request_id, True))
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert details.startswith("request_id: the bulk request takes records up to a "
                                      "security level above the one the approver's role may "
                                      "see ([levels])"), details
        assert stack.psql("SELECT state, approver IS NULL FROM bulk_request WHERE id = '%s'"
                          % r.request_id) == ["pending|t"]
        me = stack.account(APPROVER)[0]
        assert stack.psql("SELECT outcome, actor, detail FROM audit_record WHERE action = "
                          "'bulk.approve' AND object = '%s' ORDER BY seq" % r.request_id) == [
            "refused|%s|approver level" % me] * 2
        decide(sec, r.request_id, False)
        assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'"
                          % r.request_id) == ["rejected"]
    finally:
        gw.close()
    plain = request(people, 1, ids)  # the stack's own gateway: counted at level 0
    assert plain.record_count == 1
    approve(people, plain.request_id)
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'"
                      % plain.request_id) == ["approved"]


def test_a_large_export_pages_and_chunks(stack, people):
    """230 records: three pages of the store (100 rows each) and several 64 KiB chunks, every row
    present exactly once, in record-id order, the whole file opening and tracing."""
    pb = stack.pb
    batch = pb.intake.SubmitBatchRequest()
    for _ in range(230):
        batch.waybills.add().CopyFrom(new_waybill(stack, "b"))
    res = waygate_proto.unary(stack.channel("courier_b"), "/waygate.v1.WaybillIntake/SubmitBatch",
                              batch, pb.intake.SubmitBatchResponse, timeout=60)
    ids = [r.id for r in res.results]
    assert len(ids) == 230 and all(r.code == 0 for r in res.results)
    past_this_second()
    priv, pub = keypair()
    r = request(people, 1, ids)
    assert r.record_count == 230
    approve(people, r.request_id)
    chunks = run(people, r.request_id, pub)
    data = b"".join(c.data for c in chunks)
    assert len(chunks) >= 4  # the header, then more than one sealed chunk
    assert [c.records_done for c in chunks] == sorted(c.records_done for c in chunks)
    assert chunks[-1].records_done == 230
    _, plain = open_export(priv, data)
    _, rows = rows_of(plain)
    got = [pb.common.WaybillView.FromString(base64.b64decode(x.split(" ")[0])).id for x in rows]
    assert got == sorted(ids)


def test_copy_is_sealed_and_watermarked_like_an_export(stack, people, records, tmp_path):
    priv, pub = keypair()
    r = request(people, 2, [i for _, i in records])
    approve(people, r.request_id)
    chunks = run(people, r.request_id, pub)
    _, plain = open_export(priv, b"".join(c.data for c in chunks))
    _, rows = rows_of(plain)
    assert len(rows) == 3
    frag = tmp_path / "copy.txt"
    frag.write_text(rows[0] + "\n")
    out = trace(stack, str(frag))
    assert out.returncode == 0 and "(copy, 3 records selected)" in out.stdout
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "ok|%s|3|%s" % (stack.account(REQUESTER)[0], r.request_id)]


@pytest.mark.parametrize("op", [1, 2], ids=["export", "copy"])
def test_a_run_records_only_the_records_it_releases(stack, people, op):
    """A run releases only the records within its requester's security levels
    (gw_policy_in_bulk_scope), and its bulk.run record, written before any row, counts what it
    releases (compliance matrix, Art. 37): the run's count leaves out what the run will (the
    requester role's [levels], gw_policy_max_level). The compliance auditor (level 0) exports or
    copies two waybills, one of them 秘密: one row, records_done 1, and the record counts 1 (it
    counted 2, the classified one with them, before)."""
    pb = stack.pb
    ids, secret_no = plain_and_secret(stack)
    r = request(people, op, ids)
    approve(people, r.request_id)
    priv, pub = keypair()
    chunks = run(people, r.request_id, pub)
    _, plain = open_export(priv, b"".join(c.data for c in chunks))
    _, rows = rows_of(plain)
    assert chunks[-1].last and chunks[-1].records_done == 1 and len(rows) == 1
    assert pb.common.WaybillView.FromString(base64.b64decode(rows[0].split(" ")[0])).id == ids[0]
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "ok|%s|1|%s" % (stack.account(REQUESTER)[0], r.request_id)]


@pytest.mark.parametrize("op", [1, 2], ids=["export", "copy"])
def test_a_requests_count_takes_only_the_requesters_levels(stack, people, op):
    """A request's record_count, which its requester and its approver see (and its bulk.request
    and bulk.approve records count), takes only the records within the requester's security
    levels, as its run does (bulk_within_level, sql/030; the level stored with the request): the
    compliance auditor (level 0) asking for a plain and a 秘密 waybill is told 1, which the run
    matches; asking for the 秘密 one alone it is told 0, as for an id that names nothing, so the
    count is no hint that a record above its levels exists. Before, the count was 2 and 1."""
    ids, secret_no = plain_and_secret(stack)
    r = request(people, op, ids)
    assert r.record_count == 1
    assert stack.psql("SELECT record_count, max_level FROM bulk_request WHERE id = '%s'"
                      % r.request_id) == ["1|0"]
    approve(people, r.request_id)
    me, them = stack.account(REQUESTER)[0], stack.account(APPROVER)[0]
    assert audit_rows(stack, "bulk.request", r.request_id) == [
        "ok|%s|1|%s" % (me, r.request_id)]
    assert audit_rows(stack, "bulk.approve", r.request_id) == [
        "ok|%s|1|%s" % (them, r.request_id)]
    priv, pub = keypair()
    chunks = run(people, r.request_id, pub)
    assert chunks[-1].last and chunks[-1].records_done == r.record_count
    assert audit_rows(stack, "bulk.run", r.request_id) == ["ok|%s|1|%s" % (me, r.request_id)]
    # the classified record alone counts as nothing, exactly as an id no record has
    assert request(people, op, [ids[1]]).record_count == 0
    assert request(people, op, [str(uuid.uuid4())]).record_count == 0


def test_a_run_that_leaves_out_an_unreadable_record_records_what_it_released(stack, people):
    """A record that fails authentication as the run reads it is left out (DATA_LOSS to Get; a
    decryption_failure incident) after the bulk.run record, written before any row, counted it:
    a second bulk.run record, outcome short, counts what was released, so the run's last record
    counts what was released, as a stopped run's does."""
    plain_w, bad_w = new_waybill(stack, "a"), new_waybill(stack, "a")
    ids = [submit(stack, plain_w), submit(stack, bad_w)]
    past_this_second()
    r = request(people, 1, ids)
    approve(people, r.request_id)
    flip = ("UPDATE waybill SET content_mac = set_byte(content_mac, 3, get_byte(content_mac, 3) "
            "# 1) WHERE id = '%s'" % ids[1])
    stack.psql(flip)
    try:
        priv, pub = keypair()
        chunks = run(people, r.request_id, pub)
    finally:
        stack.psql(flip)  # whole again
    _, plain = open_export(priv, b"".join(c.data for c in chunks))
    _, rows = rows_of(plain)
    assert chunks[-1].last and chunks[-1].records_done == 1 and len(rows) == 1
    me = stack.account(REQUESTER)[0]
    assert wait_for(lambda: audit_rows(stack, "bulk.run", r.request_id)[1:], 30) == [
        "short|%s|1|%s" % (me, r.request_id)]
    assert audit_rows(stack, "bulk.run", r.request_id)[0] == "ok|%s|2|%s" % (me, r.request_id)


def on_day(stack, t, n):
    """n fresh waybills of branch a picked up at t: their ids."""
    ids = []
    for _ in range(n):
        w = new_waybill(stack, "a")
        w.pickup_time = t
        ids.append(submit(stack, w))
    past_this_second()
    return ids


def day_request(people, day, op=1):
    """An export (or op) of branch a's waybills picked up on day (YYYY-MM-DD), requested."""
    pb = people.stack.pb.compliance
    req = pb.RequestBulkRequest(operation=op, purpose="regulator inspection of one day",
                                legal_basis="《邮政法》第三十五条; 监管检查 2026-17",
                                destination="regulator audit workstation 3",
                                recipient_public_key=key_for(op))
    req.selector.branch = "a"
    req.selector.from_day = day
    req.selector.to_day = day
    return people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)


def cst_day(t):
    return (datetime.datetime.utcfromtimestamp(t) + datetime.timedelta(hours=8)).strftime(
        "%Y-%m-%d")


def test_export_releases_only_what_was_approved(stack, people):
    """An approved export is frozen at the records accepted before its request's second: waybills
    that match its selector but were submitted after the approval are not released, and the
    bulk.run record counts exactly what was released. Each test its own pickup day, so no other
    test's waybills match."""
    pb = stack.pb
    t = PICKUP - 17 * 86400
    approved = on_day(stack, t, 4)
    r = day_request(people, cst_day(t))
    assert r.record_count == 4
    approve(people, r.request_id)
    on_day(stack, t, 5)  # in the request's second or later: not selected either way
    priv, pub = keypair()
    chunks = run(people, r.request_id, pub)
    assert chunks[-1].last and chunks[-1].records_done == 4
    _, plain = open_export(priv, b"".join(c.data for c in chunks))
    _, rows = rows_of(plain)
    got = [pb.common.WaybillView.FromString(base64.b64decode(x.split(" ")[0])).id for x in rows]
    assert got == sorted(approved)
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "ok|%s|4|%s" % (stack.account(REQUESTER)[0], r.request_id)]


def test_destroy_deletes_only_what_was_approved(stack, people):
    """An approved destroy was run against whatever its selector matched when it ran: waybills
    submitted after the approval were destroyed under it. Now it deletes only the records accepted
    before its request's second (sql/022, sql/024 and the run's count); the later ones stay
    readable."""
    t = PICKUP - 19 * 86400
    approved = on_day(stack, t, 3)
    pb = people.stack.pb.compliance
    req = pb.RequestBulkRequest(operation=3, purpose="erasure of one day's records",
                                legal_basis="《个人信息保护法》第四十七条; ref 2026-19",
                                destination="none")
    req.selector.branch = "a"
    req.selector.from_day = req.selector.to_day = cst_day(t)
    r = people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)
    assert r.record_count == 3
    approve(people, r.request_id)
    later = on_day(stack, t, 2)  # in the request's second or later: not selected either way
    chunks = run(people, r.request_id)
    assert chunks[-1].last and chunks[-1].records_done == 3
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN ('%s')" % "','".join(approved)) \
        == ["0"]
    assert stack.psql("SELECT count(*) FROM waybill WHERE id IN ('%s')" % "','".join(later)) == [
        "2"]
    assert stack.psql("SELECT count FROM destruction WHERE request_id = '%s'" % r.request_id) == [
        "3"]


def test_the_database_refuses_a_destroy_beyond_its_approval(stack, people):
    """bulk_destroy itself refuses to delete more records than the request row says were
    approved, whatever count the caller passes (a caller's bug or race; a holder of the
    gateway's role could forge the row itself, docs/threat-model.md)."""
    t = PICKUP - 20 * 86400
    on_day(stack, t, 1)
    pb = people.stack.pb.compliance
    req = pb.RequestBulkRequest(operation=3, purpose="erasure", legal_basis="ref 2026-20",
                                destination="none")
    req.selector.branch = "a"
    req.selector.from_day = req.selector.to_day = cst_day(t)
    r = people.unary(REQUESTER, REQUEST, req, pb.RequestBulkResponse)
    approve(people, r.request_id)
    tamper(stack, "UPDATE bulk_request SET state = 'executed' WHERE id = '%s'" % r.request_id)
    assert "the selection grew: 2 records, 1 approved" in gateway_sql_refused(
        stack, "SELECT bulk_destroy('%s', 'x', 2, 0)" % r.request_id)


def gateway_sql(stack, sql):
    """The output lines of sql run as the gateway's database role (it must succeed)."""
    from conftest import PGBIN
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                        "ON_ERROR_STOP=1", "-d", stack.pguri_gateway, "-c", sql],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_a_destroy_not_done_through_the_gateway_is_named_by_audit_verify(stack, people):
    """Whoever holds the gateway's database role can write a bulk request row of its own, move it
    through a decision and a claim as the gateway's statements do (sql/047's triggers allow those
    steps: the database cannot tell the gateway from its role, docs/threat-model.md), and call
    bulk_destroy with it: the record goes, and a destruction row says so, but no bulk.run record
    of a gateway's chain does, for the gateway writes that record in the destruction's
    transaction. `waygatectl audit verify` names that destruction, a critical
    destruction_unrecorded incident; any destruction done through RunBulk before it (this module's) each
    have their record and are not named. (Red without the reconciliation: the trail verified.)"""
    w = new_waybill(stack, "a")
    rid = submit(stack, w)
    past_this_second()
    before = audit_lib.verify_places(stack)
    assert not [p for p in before if p.startswith("destruction ")], before
    forged = str(uuid.uuid4())
    did = gateway_sql(
        stack, "INSERT INTO bulk_request (id, operation, sel_ids, purpose, legal_basis, "
               "requester, requester_role, record_count) VALUES ('%s', 'destroy', "
               "ARRAY['%s']::uuid[], 'x', 'x', '%s', 'compliance_auditor', 1); "
               "UPDATE bulk_request SET state = 'approved', approver = '%s', approver_role = "
               "'security_admin', decided_at = now(), expires_at = now() + interval '1 hour' "
               "WHERE id = '%s'; UPDATE bulk_request SET state = 'executed', run_at = now() "
               "WHERE id = '%s'; SELECT bulk_destroy('%s', 'forged', 1, 0)"
               % (forged, rid, REQUESTER, APPROVER, forged, forged, forged))[0]
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % rid) == ["0"]
    place = audit_lib.unrecorded_destruction(stack, did, "bulk", 1, ", request " + forged)
    try:
        r = stack.ctl("audit", "verify", "--db", stack.pguri)
        assert r.returncode == 1, r.stdout + r.stderr
        assert [l[len("FAILED: "):] for l in r.stdout.splitlines()
                if l.startswith("FAILED: ")] == before + [place], r.stdout
        assert " against --since, 1 destruction without its record)" in r.stderr, r.stderr
        assert stack.psql("SELECT severity FROM incident WHERE kind = 'destruction_unrecorded' "
                          "AND detail = '%s'" % place.replace("'", "''")) == ["critical"]
    finally:  # the shared trail as it was, for the tests after this one
        stack.psql("DELETE FROM destruction WHERE id = %s; DELETE FROM bulk_request "
                   "WHERE id = '%s'" % (did, forged))
    assert audit_lib.verify_places(stack) == before


def test_export_selecting_more_than_approved_is_refused(stack, people):
    """Should the frozen selection still hold more records than were approved (here: the
    request's time moved past later submissions, in SQL), the run is refused before anything is
    released or the request is used, with a refused bulk.run record."""
    t = PICKUP - 18 * 86400
    on_day(stack, t, 2)
    r = day_request(people, cst_day(t))
    assert r.record_count == 2
    approve(people, r.request_id)
    on_day(stack, t, 1)
    tamper(stack, "UPDATE bulk_request SET requested_at = now() + interval '1 hour' WHERE id = '%s'"
               % r.request_id)
    _, pub = keypair()
    assert refusal(lambda: run(people, r.request_id, pub)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "request_id: selects more records than the approved record_count (the selection grew "
        "since the request was counted); nothing was released; request it again")
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
        "approved"]
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "refused|%s||%s" % (stack.account(REQUESTER)[0], r.request_id)]
    # a sign that stored data changed (the frozen selection grew): a high incident naming the
    # request and both counts (red before: none)
    grew = ("SELECT severity, count, detail FROM incident WHERE kind = 'bulk_selection_grew' "
            "AND detail LIKE '%%%s%%'" % r.request_id)
    assert wait_for(lambda: stack.psql(grew), 30) == [
        "high|1|bulk request %s selects 3 records, more than the 2 approved; the run was "
        "refused" % r.request_id]


@pytest.mark.parametrize("op,days", [(1, 21), (3, 22)], ids=["export", "destroy"])
def test_a_waybill_of_the_requests_own_second_is_left_out(stack, people, op, days):
    """accepted_at is the gateway's whole second, requested_at is not: a matching waybill accepted
    in the request's own second, after its count, was inside accepted_at <= requested_at, so the
    run selected more than approved and refused (the export released nothing, the destroy could
    not run). Now the count and every run take only what was accepted before the request's second
    (sql/024, gateway/store/store_bulk.c): the run goes ahead without that waybill, which is
    neither released nor destroyed. Made deterministic by moving the request's time into the
    second the later waybill was accepted in (its count, 2, is still exactly right: the approved
    waybills were accepted seconds before)."""
    pb = stack.pb
    t = PICKUP - days * 86400
    approved = on_day(stack, t, 2)
    r = day_request(people, cst_day(t), op)
    assert r.record_count == 2
    approve(people, r.request_id)
    (late,) = on_day(stack, t, 1)
    tamper(stack, "UPDATE bulk_request SET requested_at = (SELECT accepted_at FROM waybill WHERE "
               "id = '%s') + interval '0.5 second' WHERE id = '%s'" % (late, r.request_id))
    # the later waybill is in the request's own second, and no later than the request
    assert stack.psql("SELECT w.accepted_at = date_trunc('second', b.requested_at), "
                      "w.accepted_at <= b.requested_at FROM waybill w, bulk_request b "
                      "WHERE w.id = '%s' AND b.id = '%s'" % (late, r.request_id)) == ["t|t"]
    priv, pub = keypair()
    chunks = run(people, r.request_id, pub if op == 1 else b"")
    assert chunks[-1].last and chunks[-1].records_done == 2
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "ok|%s|2|%s" % (stack.account(REQUESTER)[0], r.request_id)]
    if op == 1:
        _, plain = open_export(priv, b"".join(c.data for c in chunks))
        _, rows = rows_of(plain)
        got = [pb.common.WaybillView.FromString(base64.b64decode(x.split(" ")[0])).id
               for x in rows]
        assert got == sorted(approved)
    else:
        assert stack.psql("SELECT count(*) FROM waybill WHERE id IN ('%s')"
                          % "','".join(approved)) == ["0"]
        assert stack.psql("SELECT count FROM destruction WHERE request_id = '%s'"
                          % r.request_id) == ["2"]
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % late) == ["1"]


def gateway_sql_refused(stack, sql):
    """The error of sql run as the gateway's database role (it must fail)."""
    import subprocess
    from conftest import PGBIN
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                        "ON_ERROR_STOP=1", "-d", stack.pguri_gateway, "-c", sql],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, "the gateway's role was allowed: %s" % sql
    return r.stderr


def test_an_account_the_requester_created_may_not_approve(stack, people, records):
    """The reverse of a sock puppet: the security admin requests an export, then approves it with
    a compliance_auditor account they created under an invented person. Refused (sql/021),
    recorded as refused, the request stays pending; the dev stack's own auditor (created by the
    set-up, not by the requester) may still approve it."""
    from test_accounts import Admin
    from test_lawful import sock_puppet
    admin = Admin(stack)
    via = stack.account("auditor")[2]
    name, md = sock_puppet(stack, admin, "compliance_auditor", via)
    pending = request(people, 1, [records[0][1]], who="secadmin")
    pb = stack.pb.compliance
    assert refusal(lambda: waygate_proto.unary(
        stack.channel(via), APPROVE, pb.ApproveBulkRequest(request_id=pending.request_id,
                                                           approve=True, comment="mine"),
        pb.ApproveBulkResponse, metadata=md)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "request_id: the decider is not independent of the requester: one created the other's "
        "account (or another account of the same person did); an independent person decides "
        "(Art. 16, 37)")
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % pending.request_id) == \
        ["pending"]
    assert stack.psql("SELECT actor, outcome, detail FROM audit_record WHERE action = "
                      "'bulk.approve' AND approval = '%s'" % pending.request_id) == \
        ["%s|refused|decider not independent" % name]
    assert approve(people, pending.request_id, who="auditor").state == \
        pb.APPROVAL_STATE_APPROVED
    admin.disable(name)


def test_a_certificate_names_no_person_and_makes_no_bulk_call(stack, people, records):
    """A certificate of a bulk role names no person, so the second person's check (the
    approver's account against the requester's, sql/021) could not hold it: one person with a
    security_admin certificate approved the export their own compliance auditor account
    requested, then ran it. Such a certificate is now always registered for administration
    (sql/041 refuses the row otherwise, `principals add` refuses it without --admin), and so acts
    only through an account's token: its RequestBulk, ApproveBulk and RunBulk are
    PERMISSION_DENIED by the policy's rule for such certificates, nothing stored or decided; the
    request stays pending for a person to decide. The bulk handlers' own check
    (gw_api_bulk_start: a token's account or GW_RULE_BULK_ACCOUNT) stays behind it as defense in
    depth; no certificate reaches it while the policy holds."""
    from test_accounts import ADMIN_CERT_REFUSAL, fingerprint, issue_cert, unique
    pb = stack.pb.compliance
    channels = {}
    for role in ("security_admin", "compliance_auditor"):
        name = unique("itbulkcert")
        crt, key = issue_cert(stack, name, "/O=Waygate Dev/OU=%s/CN=%s" % (role, name))
        stack.psql("INSERT INTO principal (name, fingerprint, role, admin, created_by) VALUES "
                   "('%s', '\\x%s', '%s', true, 'test')" % (name, fingerprint(crt), role))
        channels[role] = (name, waygate_proto.channel(stack.addr, stack.ca, crt, key))
    refused = (grpc.StatusCode.PERMISSION_DENIED, ADMIN_CERT_REFUSAL)
    try:
        pending = request(people, 1, [records[0][1]])
        ch = channels["security_admin"][1]
        assert refusal(lambda: waygate_proto.unary(
            ch, APPROVE, pb.ApproveBulkRequest(request_id=pending.request_id, approve=True,
                                               comment="mine"),
            pb.ApproveBulkResponse, timeout=30)) == refused
        assert stack.psql("SELECT state, approver IS NULL FROM bulk_request WHERE id = '%s'"
                          % pending.request_id) == ["pending|t"]
        assert refusal(lambda: list(waygate_proto.stream(
            ch, RUN, pb.RunBulkRequest(request_id=pending.request_id), pb.RunBulkChunk,
            timeout=30))) == refused
        name, ch = channels["compliance_auditor"]
        req = pb.RequestBulkRequest(operation=1, purpose="regulator inspection sample",
                                    legal_basis="监管检查 2026-17", destination="workstation 3")
        req.selector.record_ids.append(records[0][1])
        assert refusal(lambda: waygate_proto.unary(ch, REQUEST, req, pb.RequestBulkResponse,
                                                   timeout=30)) == refused
        assert stack.psql("SELECT count(*) FROM bulk_request WHERE requester = '%s'" % name) == \
            ["0"]
        # a person decides it
        assert approve(people, pending.request_id).state == pb.APPROVAL_STATE_APPROVED
    finally:
        for name, ch in channels.values():
            ch.close()
            stack.psql("UPDATE principal SET disabled_at = now() WHERE name = '%s'" % name)


def test_the_database_checks_every_destruction(stack, people):
    """The gateway's role has no DELETE on waybill; the two destruction functions check the
    request, and the age of every record, themselves."""
    w = new_waybill(stack, "a")
    rid = submit(stack, w)
    assert "permission denied" in gateway_sql_refused(
        stack, "SELECT set_config('waygate.scope', '*', false); "
               "DELETE FROM waybill WHERE id = '%s'" % rid)
    pending = request(people, 3, [rid])
    # the signature that deleted every security level is gone (sql/031)
    assert "function bulk_destroy(unknown, unknown, integer) does not exist" in \
        gateway_sql_refused(stack, "SELECT bulk_destroy('%s', 'x', 1)" % pending.request_id)
    assert "not an approved destruction" in gateway_sql_refused(
        stack, "SELECT bulk_destroy('%s', 'x', 1, 0)" % pending.request_id)
    approve(people, pending.request_id)  # approved, but not claimed by a run
    assert "not an approved destruction" in gateway_sql_refused(
        stack, "SELECT bulk_destroy('%s', 'x', 1, 0)" % pending.request_id)
    # a young record is not past any retention; a zero retention is refused, and one below the
    # floor (sql/020; test_retention.py has the rest)
    assert "not every record is past its retention" in gateway_sql_refused(
        stack, "SELECT retention_destroy(ARRAY['%s']::uuid[], 1095, 'x', 'test')" % rid)
    assert "below the floor of 1095 days" in gateway_sql_refused(
        stack, "SELECT retention_destroy(ARRAY['%s']::uuid[], 1, 'x', 'test')" % rid)
    assert "at least one day" in gateway_sql_refused(
        stack, "SELECT retention_destroy(ARRAY['%s']::uuid[], 0, 'x', 'test')" % rid)
    assert stack.psql("SELECT count(*) FROM waybill WHERE id = '%s'" % rid) == ["1"]
    assert get(stack, w.waybill_no, "branch_a").id == rid


# --- a run stopped midway: what stops it, and what is then true ---

STOPPED_OVER = ("request_id: the run stopped before releasing more records than it recorded; "
                "request it again")


class Holder:
    """A psql session (the schema's owner's, or uri's) fed one statement at a time: run(sql)
    returns its output lines once psql executed it; close() ends the session (an open
    transaction rolls back)."""

    def __init__(self, stack, uri=None):
        from conftest import PGBIN
        self.p = subprocess.Popen([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t",
                                   "-v", "ON_ERROR_STOP=1", "-d", uri or stack.pguri_owner],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.n = 0

    def run(self, sql):
        self.n += 1
        mark = "done-%d" % self.n
        self.p.stdin.write("%s;\n\\echo %s\n" % (sql, mark))
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            assert line, "psql ended (%s): %r" % (sql, out)
            if line.strip() == mark:
                return out
            out.append(line.rstrip("\n"))

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=60)


def hold_request_row(stack, request_id):
    """An open transaction holding the request's row (FOR UPDATE): the run's claim, an UPDATE of
    that row, waits for it. Returns (holder, its backend pid). The holder is a superuser's session
    with the row triggers off (TAMPER): a test may change the row in it as the gateway never
    does."""
    h = Holder(stack, superuser_uri(stack))
    h.run(TAMPER.rstrip("; "))
    h.run("BEGIN")
    pid = int(h.run("SELECT pg_backend_pid() FROM bulk_request WHERE id = '%s' FOR UPDATE"
                    % request_id)[0])
    return h, pid


def blocked_by(stack, pid):
    """Some session waits for a lock the session pid holds."""
    return stack.psql("SELECT count(*) FROM pg_stat_activity WHERE %d = ANY(pg_blocking_pids(pid))"
                      % pid) != ["0"]


def open_sent_chunks(priv, data):
    """The plaintext of the sealed chunks of an export that stopped before its last one (each
    chunk opened as not final; docs/bulk-export-format.md), and the complete rows in it."""
    assert data[:8] == b"WGXSEAL1"
    header, eph, salt = data[:72], data[24:56], data[56:72]
    mypub = priv.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt,
               info=b"waygate export v1" + eph + mypub).derive(
        priv.exchange(X25519PublicKey.from_public_bytes(eph)))
    aead, base = AESGCM(okm[:32]), okm[32:]
    off, i, plain = 72, 0, b""
    while off < len(data):
        n = int.from_bytes(data[off:off + 4], "big")
        end = off + 4 + n + 16
        assert end <= len(data), "chunk %d cut short" % i
        nonce = bytes(a ^ b for a, b in zip(base, i.to_bytes(12, "big")))
        plain += aead.decrypt(nonce, data[off + 4:end], header + i.to_bytes(8, "big") + b"\x00")
        off, i = end, i + 1
    lines = plain.split(b"\n")
    assert lines[0].startswith(b"waygate-export v1 ")
    return plain, [x.decode("ascii") for x in lines[1:-1]]  # the last piece has no newline yet


def row_ids(pb, rows):
    return [pb.common.WaybillView.FromString(base64.b64decode(x.split(" ")[0])).id for x in rows]


def stopped_records(stack, request_id):
    return stack.psql("SELECT count, detail FROM audit_record WHERE action = 'bulk.run' AND "
                      "object = '%s' AND outcome = 'stopped'" % request_id)


def test_a_run_over_its_recorded_count_stops_mid_stream(stack, people):
    """A run may not release more records than its bulk.run record counts (the selection as
    counted just before the claim). Here the selection grows between the count and the reading:
    the claim waits on the request's row, which the test holds while it submits one more waybill
    of the day and moves the request's time past it. 230 records counted, 231 selected: the
    stream sends what it has sealed of the first 230 (rows in record-id order, a prefix), then
    stops with FAILED_PRECONDITION before any 231st record; no last chunk, no digest. The trail
    says what happened: the bulk.run record (230) and a second one, outcome stopped, counting the
    records the client could have read whole, exactly those in the chunks received. The request
    was used: it does not run again. The growth, a sign that stored data changed under the run,
    is also a high incident naming the request (bulk_selection_grew; red before: none)."""
    pb = stack.pb
    t = PICKUP - 23 * 86400
    batch = pb.intake.SubmitBatchRequest()
    for _ in range(230):
        w = new_waybill(stack, "a")
        w.pickup_time = t
        batch.waybills.add().CopyFrom(w)
    res = waygate_proto.unary(stack.channel("courier_a"), "/waygate.v1.WaybillIntake/SubmitBatch",
                              batch, pb.intake.SubmitBatchResponse, timeout=60)
    approved = [x.id for x in res.results]
    assert len(approved) == 230 and all(x.code == 0 for x in res.results)
    past_this_second()
    r = day_request(people, cst_day(t))
    assert r.record_count == 230
    approve(people, r.request_id)
    priv, pub = keypair()
    out = {"msgs": [], "err": None}

    def go():
        try:
            for m in waygate_proto.stream(
                    people.channel(REQUESTER), RUN,
                    pb.compliance.RunBulkRequest(request_id=r.request_id,
                                                 recipient_public_key=pub),
                    pb.compliance.RunBulkChunk, timeout=120,
                    metadata=people.metadata(REQUESTER)):
                out["msgs"].append(m)
        except grpc.RpcError as e:
            out["err"] = (e.code(), e.details())

    holder, pid = hold_request_row(stack, r.request_id)
    th = threading.Thread(target=go)
    try:
        th.start()
        assert wait_for(lambda: blocked_by(stack, pid), 60, 0.05), "the claim did not wait"
        (late,) = on_day(stack, t, 1)  # counted out: accepted after the request's second
        holder.run("UPDATE bulk_request SET requested_at = now() + interval '1 hour' "
                   "WHERE id = '%s'" % r.request_id)  # ...and selected in now
        holder.run("COMMIT")
        th.join(120)
    finally:
        holder.close()
        th.join(120)
    assert out["err"] == (grpc.StatusCode.FAILED_PRECONDITION, STOPPED_OVER), out["err"]
    msgs = out["msgs"]
    assert msgs and not any(m.last or m.sha256 or m.watermark_id for m in msgs)
    assert all(m.records_done <= 230 for m in msgs)
    _, rows = open_sent_chunks(priv, b"".join(m.data for m in msgs))
    got = row_ids(pb, rows)
    assert 0 < len(got) <= 230, len(got)  # mid-stream: records were released before the stop
    assert got == sorted(approved + [late])[:len(got)]
    acct = stack.account(REQUESTER)[0]
    assert wait_for(lambda: stopped_records(stack, r.request_id), 30)
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "ok|%s|230|%s" % (acct, r.request_id), "stopped|%s|%d|%s" % (acct, len(got), r.request_id)]
    ((count, detail),) = [x.split("|", 1) for x in stopped_records(stack, r.request_id)]
    assert detail.endswith("stopped after %s of 230 records: %s" % (count, STOPPED_OVER)), detail
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
        "executed"]
    code, _ = refusal(lambda: run(people, r.request_id, pub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    # a sign that stored data changed under the run (the selection grew past its count): a high
    # incident naming the request, as for a record that fails authentication
    grew = ("SELECT severity, count FROM incident WHERE kind = 'bulk_selection_grew' AND "
            "detail LIKE '%%%s%%'" % r.request_id)
    assert wait_for(lambda: stack.psql(grew), 30) == ["high|1"]  # written by the incident queue


CUT = ("the run stopped part way (the database unavailable, or the gateway's queue for it full): "
       "it is recorded as stopped with the records sent so far and cannot be run again; request "
       "it again")


@pytest.mark.parametrize("how,days", [("cancel", 24), ("database", 25), ("lost", 28)])
def test_a_run_stopped_after_its_record_says_so(stack, people, how, days):
    """A run whose bulk.run record committed, stopped before its first page was read: the claim
    waits on the request's row (held by the test) while the test locks the route table, which
    every page read joins; once the claim commits the header is sent and the first page waits.
    Then the client cancels (the gateway's log says the call was cancelled before the lock is
    let go), or the page read fails in the database (the statements waiting for route are
    cancelled by a superuser until the run ends: INTERNAL, not read), or its session is lost
    (terminated by a superuser: UNAVAILABLE, worded for a run whose request is spent, not the
    "retrying is safe" of a call that did nothing; red before). Each way a second bulk.run
    record, outcome stopped, counts the records the client could have read (none) and says why,
    and the request was used."""
    pb = stack.pb
    t = PICKUP - days * 86400
    on_day(stack, t, 3)
    r = day_request(people, cst_day(t))
    assert r.record_count == 3
    approve(people, r.request_id)
    _, pub = keypair()
    req_id = "it-bulk-stop-%s-%d" % (how, int(time.time() * 1000))
    holder, pid = hold_request_row(stack, r.request_id)
    route = Holder(stack)
    call = None
    try:
        call = waygate_proto.stream(
            people.channel(REQUESTER), RUN,
            pb.compliance.RunBulkRequest(request_id=r.request_id, recipient_public_key=pub),
            pb.compliance.RunBulkChunk, timeout=120,
            metadata=people.metadata(REQUESTER) + [("x-request-id", req_id)])
        assert wait_for(lambda: blocked_by(stack, pid), 60, 0.05), "the claim did not wait"
        route.run("BEGIN")
        route.run("LOCK TABLE route IN ACCESS EXCLUSIVE MODE")
        holder.run("COMMIT")
        first = next(call)  # the claim committed: the header; the first page cannot be read
        assert first.data[:8] == b"WGXSEAL1" and first.records_done == 0 and not first.last
        if how == "cancel":
            call.cancel()
            assert wait_for(lambda: any(
                req_id in x and "call cancelled: /waygate.v1.Compliance/RunBulk" in x
                for x in stack.log_lines()), 60), "the gateway did not see the cancel"
            route.close()
            why = "the call ended before the last chunk"
        else:
            # every statement waiting for route is cancelled (SQLSTATE 57014: an error of that
            # statement, the connection stays), again and again, until the page read was one
            ended = {}

            def read_on():
                try:
                    list(call)
                    ended["ok"] = True
                except grpc.RpcError as e:
                    ended["err"] = (e.code(), e.details())

            th = threading.Thread(target=read_on)
            th.start()
            cancel = ("SELECT pg_%s_backend(pid) FROM pg_locks WHERE relation = "
                      "'route'::regclass AND NOT granted"
                      % ("cancel" if how == "database" else "terminate"))
            assert wait_for(lambda: stack.psql(cancel, uri=superuser_uri(stack)) and ended, 60,
                            0.1), "the run did not end"
            th.join(60)
            route.close()
            if how == "database":
                why = "the waybill could not be read"
                assert ended == {"err": (grpc.StatusCode.INTERNAL, why)}
            else:
                why = CUT
                assert ended == {"err": (grpc.StatusCode.UNAVAILABLE, why)}
    finally:
        if call is not None:
            call.cancel()
        route.close()
        holder.close()
    acct = stack.account(REQUESTER)[0]
    assert wait_for(lambda: stopped_records(stack, r.request_id), 30)
    assert audit_rows(stack, "bulk.run", r.request_id) == [
        "ok|%s|3|%s" % (acct, r.request_id), "stopped|%s|0|%s" % (acct, r.request_id)]
    ((_, detail),) = [x.split("|", 1) for x in stopped_records(stack, r.request_id)]
    assert "stopped after 0 of 3 records: " + why in detail, detail
    assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
        "executed"]


@pytest.mark.parametrize("claim,days", [("commits", 26), ("fails", 27)])
def test_a_run_cancelled_during_its_claim_says_so(stack, people, claim, days):
    """The client cancels while the run's claim (the request executed and its bulk.run record, in
    one transaction) is out: the claim waits on the request's row, held by the test, and the test
    lets it go only once the gateway's log says the call was cancelled. A claim that then commits
    (the row let go as it was) leaves, behind its bulk.run record, a second one with outcome
    stopped counting no record, which says the call ended while the run was being recorded:
    nothing was streamed. A claim that then fails (the test rejected the request meanwhile)
    leaves no bulk.run record at all: the stop's record is guarded by the claim. (Red before:
    the committed claim's bulk.run ok record alone, as if the export had been released.)"""
    pb = stack.pb
    t = PICKUP - days * 86400
    on_day(stack, t, 3)
    r = day_request(people, cst_day(t))
    assert r.record_count == 3
    approve(people, r.request_id)
    _, pub = keypair()
    req_id = "it-bulk-claim-%s-%d" % (claim, int(time.time() * 1000))
    holder, pid = hold_request_row(stack, r.request_id)
    call = None
    try:
        call = waygate_proto.stream(
            people.channel(REQUESTER), RUN,
            pb.compliance.RunBulkRequest(request_id=r.request_id, recipient_public_key=pub),
            pb.compliance.RunBulkChunk, timeout=120,
            metadata=people.metadata(REQUESTER) + [("x-request-id", req_id)])
        assert wait_for(lambda: blocked_by(stack, pid), 60, 0.05), "the claim did not wait"
        call.cancel()
        assert wait_for(lambda: any(
            req_id in x and "call cancelled: /waygate.v1.Compliance/RunBulk" in x
            for x in stack.log_lines()), 60), "the gateway did not see the cancel"
        if claim == "fails":
            holder.run("UPDATE bulk_request SET state = 'rejected' WHERE id = '%s'"
                       % r.request_id)
        holder.run("COMMIT")
    finally:
        if call is not None:
            call.cancel()
        holder.close()
    acct = stack.account(REQUESTER)[0]
    if claim == "commits":
        assert wait_for(lambda: stopped_records(stack, r.request_id), 30), \
            audit_rows(stack, "bulk.run", r.request_id)
        assert audit_rows(stack, "bulk.run", r.request_id) == [
            "ok|%s|3|%s" % (acct, r.request_id), "stopped|%s|0|%s" % (acct, r.request_id)]
        ((_, detail),) = [x.split("|", 1) for x in stopped_records(stack, r.request_id)]
        assert "stopped after 0 of 3 records: the call ended before the last chunk" in detail
        assert detail.endswith("while the run was being recorded"), detail
        assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
            "executed"]
    else:
        # a run of the request now is refused, and its record queued after the stop's guard:
        # once it committed, the guard has been decided
        code, _ = refusal(lambda: run(people, r.request_id, pub))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert audit_rows(stack, "bulk.run", r.request_id) == [
            "refused|%s||%s" % (acct, r.request_id)]
        assert stack.psql("SELECT state FROM bulk_request WHERE id = '%s'" % r.request_id) == [
            "rejected"]


# ---- the request's row is written forward only (sql/047), and export trace reads the chain ----

def refused_as(stack, sql, uri):
    """The error line of sql, refused, run as uri's role (with its SQLSTATE)."""
    from conftest import PGBIN
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                        "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-d", uri, "-c", sql],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, "allowed: %s" % sql
    return r.stderr.splitlines()[0]


def row_of(stack, request_id):
    return stack.psql("SELECT row_to_json(b) FROM bulk_request b WHERE id = '%s'" % request_id)


def history(column, rule):
    return "ERROR:  WB002: bulk_request.%s: %s (Art. 37)" % (column, rule)


ONCE = "a decision or run, once written, never changes"
REQUESTED = "what was requested never changes"
STATE = ("moves only from pending to approved or rejected, or from approved to executed")

# (assignment, column, rule) refused on an executed export to the gateway's role, which holds
# UPDATE of these columns (sql/009)
ON_EXECUTED = [
    ("approver = 'auditor2'", "approver", ONCE),
    ("approver_role = 'compliance_auditor'", "approver_role", ONCE),
    ("decision_comment = 'other'", "decision_comment", ONCE),
    ("decided_at = decided_at - interval '1 day'", "decided_at", ONCE),
    ("expires_at = expires_at + interval '1 day'", "expires_at", ONCE),
    ("run_at = run_at - interval '1 day'", "run_at", ONCE),
    ("export_id = gen_random_uuid()", "export_id", ONCE),
    ("state = 'approved'", "state", STATE),
    ("state = 'rejected'", "state", STATE),
]

ON_PENDING = [
    ("state = 'executed', run_at = now()", "state", STATE),
    ("approver = 'secadmin2'", "approver", "written only by the decision of a pending request"),
    ("expires_at = now() + interval '1 day'", "expires_at",
     "written only by the decision of a pending request"),
    ("run_at = now()", "run_at", "written only by the run of an approved request"),
    ("export_id = gen_random_uuid()", "export_id", "written only by the run of an approved request"),
    ("state = 'rejected'", "decided_at",
     "a decision names its approver and their role, and is dated when it is made"),
    ("state = 'approved', approver = 'secadmin2', approver_role = 'security_admin', decided_at = "
     "now() - interval '1 day', expires_at = now() + interval '1 day'", "decided_at",
     "a decision names its approver and their role, and is dated when it is made"),
]

# refused to the owner too (the gateway's role may not update these columns at all)
BY_THE_OWNER = [
    ("requester = 'secadmin2'", "requester", REQUESTED),
    ("requester_role = 'security_admin'", "requester_role", REQUESTED),
    ("purpose = 'other'", "purpose", REQUESTED),
    ("sel_ids = '{}'", "sel_ids", REQUESTED),
    ("record_count = record_count + 1", "record_count", REQUESTED),
    ("requested_at = requested_at - interval '1 day'", "requested_at", REQUESTED),
    ("recipient_key = NULL", "recipient_key", REQUESTED),
    ("run_count = 3", "run_count", "written only by an executed destruction"),
]


def test_the_gateways_role_rewrites_no_executed_request(stack, people, export):
    """As the gateway's database role (which holds UPDATE of the decision's and the run's columns),
    every rewrite of an executed export's decision, run or state is refused by sql/047's trigger,
    naming the column and the rule (WB002), and the row is unchanged. The finding: UPDATE
    bulk_request SET approver = ... on an executed request was UPDATE 1. (Red without the
    approver's check: the first case was allowed.)"""
    request_id, _, _ = export
    before = row_of(stack, request_id)
    for assignment, column, rule in ON_EXECUTED:
        assert refused_as(stack, "UPDATE bulk_request SET %s WHERE id = '%s'"
                          % (assignment, request_id), stack.pguri_gateway) == history(column, rule)
        assert row_of(stack, request_id) == before


def test_the_gateways_role_moves_no_pending_request_but_as_the_gateway_does(stack, people,
                                                                            records):
    """A pending request, as the gateway's role: no state, decision or run column is written but by
    a decision as the gateway's statement makes it (refused, WB002, the row unchanged); the
    gateway's own decision of it still goes through."""
    r = request(people, 1, [records[0][1]])
    before = row_of(stack, r.request_id)
    for assignment, column, rule in ON_PENDING:
        assert refused_as(stack, "UPDATE bulk_request SET %s WHERE id = '%s'"
                          % (assignment, r.request_id), stack.pguri_gateway) == \
            history(column, rule)
        assert row_of(stack, r.request_id) == before
    assert approve(people, r.request_id).state == stack.pb.compliance.APPROVAL_STATE_APPROVED


def test_what_was_requested_never_changes_not_even_for_the_owner(stack, people, records, export):
    """The columns of what was requested (the gateway's role may not update them) and run_count
    are refused to the schema's owner too, on a pending and an executed request alike."""
    pending = request(people, 1, [records[0][1]]).request_id
    for request_id in (pending, export[0]):
        before = row_of(stack, request_id)
        for assignment, column, rule in BY_THE_OWNER:
            assert refused_as(stack, "UPDATE bulk_request SET %s WHERE id = '%s'"
                              % (assignment, request_id), stack.pguri_owner) == \
                history(column, rule)
            assert row_of(stack, request_id) == before


@pytest.mark.parametrize("columns,values,column,rule", [
    ("state, approver, approver_role, decided_at, expires_at",
     "'approved', 'secadmin', 'security_admin', now(), now() + interval '1 hour'",
     "state", "a new request is pending"),
    ("approver, approver_role", "'secadmin', 'security_admin'",
     "approver", "a new request is undecided and has not run"),
], ids=["approved", "with-approver"])
def test_the_gateways_role_inserts_only_a_pending_request(stack, people, columns, values, column,
                                                          rule):
    """An INSERT of a request already approved (or naming an approver) is refused to the gateway's
    role (WB002); nothing is stored."""
    forged = str(uuid.uuid4())
    assert refused_as(
        stack, "INSERT INTO bulk_request (id, operation, purpose, legal_basis, requester, "
               "requester_role, record_count, %s) VALUES ('%s', 'export', 'x', 'x', 'auditor', "
               "'compliance_auditor', 1, %s)" % (columns, forged, values),
        stack.pguri_gateway) == history(column, rule)
    assert stack.psql("SELECT count(*) FROM bulk_request WHERE id = '%s'" % forged) == ["0"]


def chain_rec(stack, action, request_id):
    """'chain#seq: action ok by actor (role)' of the request's ok record of action."""
    (row,) = stack.psql("SELECT chain || '#' || seq || ': ' || action || ' ok by ' || actor || "
                        "' (' || role || ')' FROM audit_record WHERE action = '%s' AND "
                        "approval = '%s' AND outcome = 'ok'" % (action, request_id))
    return "  audit " + row


def test_export_trace_reads_the_audit_chain_beside_the_table(stack, people, records, tmp_path):
    """`waygatectl export trace` prints, beside the row's requester and approver, the audit
    chain's records of the request (chain#seq, actor), and exits 0 when they confirm the row.
    With the approver rewritten in the table (as a superuser with the triggers off: no login role
    may, sql/047) it says the chain does not confirm that approval and exits 1; with two exports'
    export ids swapped it says the chain does not confirm either run. (Red without the
    cross-check: exit 0 naming the forged approver.)"""
    request_id, chunks, priv = exported(stack, people, records)
    request2, chunks2, _ = exported(stack, people, records)
    eid, eid2 = chunks[-1].watermark_id, chunks2[-1].watermark_id
    sealed = tmp_path / "export.wgx"
    sealed.write_bytes(b"".join(c.data for c in chunks))
    r = trace(stack, str(sealed))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for action in ("bulk.request", "bulk.approve", "bulk.run"):
        assert chain_rec(stack, action, request_id) in lines, r.stdout
    assert "does not confirm" not in r.stdout
    assert "`waygatectl audit verify` proves the chain itself" in r.stdout

    tamper(stack, "UPDATE bulk_request SET approver = 'auditor2' WHERE id = '%s'" % request_id)
    try:
        r = trace(stack, str(sealed))
        assert r.returncode == 1, r.stdout + r.stderr
        assert "  approved by auditor2 (security_admin) at " in r.stdout
        assert [l for l in r.stdout.splitlines() if "does not confirm" in l] == [
            "  the audit chain does not confirm the approval by auditor2 (security_admin)"]
        assert chain_rec(stack, "bulk.approve", request_id) in r.stdout.splitlines()
    finally:
        tamper(stack, "UPDATE bulk_request SET approver = '%s' WHERE id = '%s'"
               % (stack.account(APPROVER)[0], request_id))

    swap = ("UPDATE bulk_request SET export_id = gen_random_uuid() WHERE id = '{0}'; "
            "UPDATE bulk_request SET export_id = '{2}' WHERE id = '{1}'; "
            "UPDATE bulk_request SET export_id = '{3}' WHERE id = '{0}'")
    tamper(stack, swap.format(request_id, request2, eid, eid2))
    try:
        r = trace(stack, str(sealed))  # the header names eid: now request2's row
        assert r.returncode == 1, r.stdout + r.stderr
        assert "  request %s (export, " % request2 in r.stdout
        assert [l for l in r.stdout.splitlines() if "does not confirm" in l] == [
            "  the audit chain does not confirm the run of export %s by %s (compliance_auditor)"
            % (eid, stack.account(REQUESTER)[0])]
    finally:
        tamper(stack, swap.format(request2, request_id, eid, eid2))
    assert trace(stack, str(sealed)).returncode == 0
