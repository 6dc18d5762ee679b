"""Lawful access (Art. 16; issue 8): Compliance.RequestLawfulAccess by the lawful_access account,
DecideLawfulAccess by a security admin who is not the requester's person, then the lawful account
reads the clear fields of exactly the named waybills through WaybillQuery.Get, only after
approval and until the decision's expiry; every read is a confidential lawful.read audit record
committed before the view leaves (fail closed). Nothing of a case is visible to a branch.

Expiry is made deterministic by moving an approved case's times into the past as the schema's
owner (what the clock would do), never by sleeping."""

import json
import os
import re
import subprocess
import threading
import time
import uuid

import grpc
import pytest

import waygate_proto
from query_data import GET, get, new_waybill, nonexistent, refusal, submit
from test_accounts import (QUEUE_FULL, Admin, calls_until_queue_full, change, login, password,
                           unique)
from conftest import (HASHING_DEADLINE, PGBIN, ExtraGateway, bearer, lock_holder, release_holder,
                      wait_for)
from test_views import default_text, write_policy

REQUEST = "/waygate.v1.Compliance/RequestLawfulAccess"
DECIDE = "/waygate.v1.Compliance/DecideLawfulAccess"
VIEW = "/waygate.v1.Compliance/GetLawfulCase"
REPORT = "/waygate.v1.Compliance/Report"
WATCH = "/grpc.health.v1.Health/Watch"

NOT_GRANTED = ("waybill_no: is not named by an approved, unexpired lawful-access case of the "
               "caller, or is above the security level its role may see (Art. 16)")


class Lawful:
    """The dev stack's lawful account and security admin, each logged in once."""

    def __init__(self, stack):
        self.stack = stack
        self.pb = stack.pb
        self.lawful_md = stack.login("lawful")
        self.lawful_via = stack.account("lawful")[2]
        self.sec_md = stack.login("secadmin")
        self.sec_via = stack.account("secadmin")[2]

    def request(self, numbers, fields=(), md=None, via=None):
        req = self.pb.compliance.RequestLawfulAccessRequest(
            agency="某市公安局", officer="王警官 040123", case_ref="CASE-2026-%d" % time.time_ns(),
            legal_document_ref="调取证据通知书 (2026) 第17号", waybill_nos=list(numbers),
            fields=list(fields))
        return self.stack.unary(REQUEST, req, self.pb.compliance.RequestLawfulAccessResponse,
                                principal=via or self.lawful_via,
                                metadata=md if md is not None else self.lawful_md)

    def decide(self, case_id, approve=True, valid_until=0, md=None, via=None):
        req = self.pb.compliance.DecideLawfulAccessRequest(
            case_id=case_id, approve=approve, comment="checked the document",
            valid_until=valid_until)
        return self.stack.unary(DECIDE, req, self.pb.compliance.DecideLawfulAccessResponse,
                                principal=via or self.sec_via,
                                metadata=md if md is not None else self.sec_md)

    def view(self, case_id, md=None, via=None):
        return self.stack.unary(VIEW, self.pb.compliance.GetLawfulCaseRequest(case_id=case_id),
                                self.pb.compliance.LawfulCaseView, principal=via or self.sec_via,
                                metadata=md if md is not None else self.sec_md)

    def read(self, number):
        return self.stack.unary(GET, self.pb.query.GetRequest(waybill_no=number),
                                self.pb.common.WaybillView, principal=self.lawful_via,
                                metadata=self.lawful_md)


@pytest.fixture(scope="module")
def lawful(stack):
    return Lawful(stack)


@pytest.fixture(scope="module")
def waybills(stack):
    """Four stored waybills of branch a: (waybill, record id)."""
    out = []
    for _ in range(4):
        w = new_waybill(stack, "a")
        out.append((w, submit(stack, w)))
    return out


def records(stack, case_id, action=None):
    """The audit records of a case (approval = case id): (action, outcome, object, confidential)."""
    cond = " AND action = '%s'" % action if action else ""
    rows = stack.psql("SELECT action, outcome, coalesce(object, ''), confidential FROM "
                      "audit_record WHERE approval = '%s'%s ORDER BY chain, seq" % (case_id, cond))
    return [tuple(r.split("|")) for r in rows]


def refused_reads(stack):
    return int(stack.psql("SELECT count(*) FROM audit_record WHERE action = 'lawful.read' AND "
                          "outcome = 'refused'")[0])


def rls_visible(stack, case_id):
    """How many of the case's waybills the database itself shows the gateway's role under the
    requester's lawful scope (row-level security alone, without the gateway's own check)."""
    acct = stack.psql("SELECT requester_account FROM lawful_case WHERE id = '%s'" % case_id)[0]
    out = stack.psql("BEGIN; SELECT set_config('waygate.scope', 'lawful:%s', true); "
                     "SELECT count(*) FROM waybill WHERE wb_bidx IN (SELECT wb_bidx FROM "
                     "lawful_case_item WHERE case_id = '%s'); COMMIT;" % (acct, case_id),
                     uri=stack.pguri_gateway)
    return int(out[-1])


def test_reads_only_named_records_only_after_approval(stack, lawful, waybills):
    (w1, id1), (w2, id2), (w3, _), _ = waybills
    case = lawful.request([w1.waybill_no, w2.waybill_no])
    assert case.state == stack.pb.compliance.APPROVAL_STATE_PENDING
    assert records(stack, case.case_id) == [("lawful.request", "ok", case.case_id, "t")]

    # pending: nothing, with the answer of a number that does not exist
    assert refusal(lambda: lawful.read(w1.waybill_no)) == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
    assert rls_visible(stack, case.case_id) == 0

    d = lawful.decide(case.case_id)
    assert d.state == stack.pb.compliance.APPROVAL_STATE_APPROVED and d.audit_seq > 0

    assert rls_visible(stack, case.case_id) == 2
    v = lawful.read(w1.waybill_no)
    assert v.id == id1
    # clear, every field (the case named none): the real values, not masks or tokens
    assert v.waybill.sender.name == w1.sender.name
    assert v.waybill.sender.phone == w1.sender.phone
    assert v.waybill.recipient.phone == w1.recipient.phone
    assert v.waybill.recipient.address_detail == w1.recipient.address_detail
    assert v.waybill.sender.id_number == w1.sender.id_number
    assert list(v.redacted_fields) == []
    assert lawful.read(w2.waybill_no).id == id2

    # a waybill the case does not name stays invisible, although it exists; the attempt is a
    # confidential refused lawful.read naming the number's blind index, never the number
    refused = refused_reads(stack)
    assert refusal(lambda: lawful.read(w3.waybill_no)) == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
    assert refused_reads(stack) == refused + 1
    assert stack.psql("SELECT count(*) FROM audit_record WHERE action = 'lawful.read' AND "
                      "outcome = 'refused' AND (NOT confidential OR object !~ '^[0-9a-f]{32}$')"
                      ) == ["0"]

    reads = records(stack, case.case_id, "lawful.read")
    assert sorted(r[2] for r in reads) == sorted([id1, id2])
    assert all(r[1] == "ok" and r[3] == "t" for r in reads)


def test_case_fields_limit_the_clear_view(stack, lawful, waybills):
    _, _, _, (w4, id4) = waybills
    case = lawful.request([w4.waybill_no], fields=["recipient.phone", "recipient.name"])
    lawful.decide(case.case_id)
    v = lawful.read(w4.waybill_no)
    assert v.waybill.recipient.phone == w4.recipient.phone
    assert v.waybill.recipient.name == w4.recipient.name
    assert v.waybill.sender.phone == "" and v.waybill.sender.name == ""
    assert "sender.phone" in v.redacted_fields


def test_rejected_case_reads_nothing(stack, lawful, waybills):
    _, _, (w3, _), _ = waybills
    case = lawful.request([w3.waybill_no])
    d = lawful.decide(case.case_id, approve=False)
    assert d.state == stack.pb.compliance.APPROVAL_STATE_REJECTED
    assert refusal(lambda: lawful.read(w3.waybill_no)) == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
    assert [r[0] for r in records(stack, case.case_id)] == ["lawful.request", "lawful.reject"]
    assert records(stack, case.case_id, "lawful.read") == []
    assert rls_visible(stack, case.case_id) == 0
    # decided once only
    assert refusal(lambda: lawful.decide(case.case_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "case_id: the case was already decided")


def test_no_read_after_expiry(stack, lawful, waybills):
    _, _, (w3, id3), _ = waybills
    case = lawful.request([w3.waybill_no])
    lawful.decide(case.case_id, valid_until=int(time.time()) + 3600)
    assert lawful.read(w3.waybill_no).id == id3
    # the clock passes the decision's expiry
    stack.psql("UPDATE lawful_case SET decided_at = now() - interval '2 hours', "
               "valid_until = now() - interval '1 hour' WHERE id = '%s'" % case.case_id)
    assert refusal(lambda: lawful.read(w3.waybill_no)) == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
    assert rls_visible(stack, case.case_id) == 0
    assert len(records(stack, case.case_id, "lawful.read")) == 1


def test_a_case_reaches_no_waybill_accepted_after_its_request(stack, lawful):
    """A case names numbers, not records: a waybill accepted under a named number after the
    request (a number no waybill had yet, or one whose waybill was destroyed while the case
    waited) is not the case's, in the gateway and in the database's row-level security
    (sql/051). A case requested after the acceptance reaches it, and the read is recorded under
    that case, with its fields, though the earlier case lasts longer."""
    later = new_waybill(stack, "a")
    early = lawful.request([later.waybill_no])
    lawful.decide(early.case_id, valid_until=int(time.time()) + 7200)
    # the request an hour ago, as the clock would have it: the acceptance below is after it
    # whatever second both fall in
    stack.psql("UPDATE lawful_case SET requested_at = requested_at - interval '1 hour' "
               "WHERE id = '%s'" % early.case_id)
    later_id = submit(stack, later)

    refused = refused_reads(stack)
    assert refusal(lambda: lawful.read(later.waybill_no)) == (grpc.StatusCode.NOT_FOUND,
                                                               NOT_GRANTED)
    assert refused_reads(stack) == refused + 1
    assert rls_visible(stack, early.case_id) == 0

    case = lawful.request([later.waybill_no], fields=["recipient.phone"])
    lawful.decide(case.case_id, valid_until=int(time.time()) + 3600)
    assert rls_visible(stack, case.case_id) == 1
    v = lawful.read(later.waybill_no)
    assert v.id == later_id
    assert v.waybill.recipient.phone == later.recipient.phone
    assert v.waybill.sender.name == "" and "sender.name" in v.redacted_fields
    assert [r[2] for r in records(stack, case.case_id, "lawful.read")] == [later_id]
    assert records(stack, early.case_id, "lawful.read") == []


def test_the_database_dates_a_case_at_its_insert(stack, lawful):
    """The gateway's role may INSERT cases: the database, not the inserter, dates the request
    (sql/051), so a case written dated ahead reaches no waybill accepted after its insert."""
    acct, sec = stack.psql("SELECT l.id || '|' || s.id FROM account l, account s "
                           "WHERE l.name = 'lawful' AND s.name = 'secadmin'")[0].split("|")
    out = stack.psql("BEGIN; SELECT set_config('waygate.scope', '', true); "
                     "INSERT INTO lawful_case (id, requested_at, requester_account, requester, "
                     "agency, officer, case_ref, legal_document_ref, waybills) VALUES "
                     "(gen_random_uuid(), now() + interval '1 day', %s, 'lawful', 'x', 'x', "
                     "'x', 'x', 1) RETURNING id, requested_at = now(); COMMIT;" % acct,
                     uri=stack.pguri_gateway)
    case_id, dated_now = out[-1].split("|")
    assert dated_now == "t"
    later_id = submit(stack, new_waybill(stack, "a"))
    stack.psql("INSERT INTO lawful_case_item (case_id, wb_bidx) SELECT '%s', wb_bidx FROM "
               "waybill WHERE id = '%s'" % (case_id, later_id))
    # approved, and its request an hour before its insert (ahead of the waybill's acceptance
    # only had the inserter's date stood)
    stack.psql("UPDATE lawful_case SET state = 'approved', decided_at = now(), "
               "decider_account = %s, decider = 'secadmin', valid_until = now() + "
               "interval '1 hour', requested_at = requested_at - interval '1 hour' "
               "WHERE id = '%s'" % (sec, case_id))
    assert rls_visible(stack, case_id) == 0


def chain_lock_waiters(stack, chain):
    """The sessions waiting for the audit chain's lock (audit.c: CHAIN_LOCK_SQL,
    pg_advisory_xact_lock(1397, hashtext(chain))): (role, wait event, statement, the pids
    blocking it, the pids holding the lock), one per waiter."""
    key = "classid = 1397 AND objid = (hashtext('%s')::bigint & 4294967295)::text::oid " \
          "AND objsubid = 2" % chain
    rows = stack.psql(
        "SELECT a.usename, a.wait_event, a.query, pg_blocking_pids(a.pid)::text, "
        "(SELECT array_agg(g.pid)::text FROM pg_locks g WHERE g.locktype = 'advisory' AND "
        "g.granted AND g.%s) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND l.%s" % (key, key),
        uri=superuser_uri(stack))  # another role's statement and wait: pg_read_all_stats
    return [tuple(r.split("|")) for r in rows]


def test_a_case_lapsing_during_a_read_releases_nothing(stack, lawful):
    """The case expires after the read found it approved, while its lawful.read record waits for
    the audit chain's lock: the record's transaction asks lawful_case_check once more, the case
    has lapsed (WL005), nothing is released and no ok lawful.read is recorded; the answer is a
    number no case names. The waybill is submitted here, named by no other case (one still valid
    would grant the read itself). The premise is observed, not assumed: the one session waiting
    on the chain's lock while the case changes is the gateway's audit transaction, blocked by the
    test's holder; in the end the chain took no record and no checkpoint, one audit entry failed
    (the read's) and no refused lawful.read was recorded, which the read would have been had it
    looked for its case after the change."""
    w = new_waybill(stack, "a")
    submit(stack, w)
    case = lawful.request([w.waybill_no])
    lawful.decide(case.case_id, valid_until=int(time.time()) + 3600)
    chain = stack.chain()
    assert stack.psql("SELECT DISTINCT chain FROM audit_record WHERE approval = '%s'"
                      % case.case_id) == [chain]
    # the chain's head signed: no checkpoint comes due to wait on the lock in the read's place
    signed = ("SELECT (SELECT max(seq) FROM audit_checkpoint WHERE chain = '%s') = "
              "(SELECT max(seq) FROM audit_record WHERE chain = '%s')" % (chain, chain))
    assert wait_for(lambda: stack.psql(signed) == ["t"] and
                    stack.metric("waygate_audit_queued") == 0, 60)
    before = {m: stack.metric(m) for m in ("waygate_audit_records_total",
                                           "waygate_audit_checkpoints_total",
                                           "waygate_audit_failed_total")}
    refused = refused_reads(stack)
    holder = lock_holder(stack, "SELECT pg_advisory_lock(1397, hashtext('%s'))" % chain,
                         transaction=False)
    out = {}

    def read():
        try:
            out["view"] = lawful.read(w.waybill_no)
        except grpc.RpcError as e:
            out["refusal"] = (e.code(), e.details())

    t = threading.Thread(target=read)
    try:
        t.start()
        assert wait_for(lambda: chain_lock_waiters(stack, chain), 30), \
            "no session came to wait for the chain's lock"
        waiters = chain_lock_waiters(stack, chain)
        assert len(waiters) == 1
        role, event, query, blockers, holders = waiters[0]
        assert (role, event, query) == ("waygate_gateway", "advisory",
                                        "SELECT pg_advisory_xact_lock(1397, hashtext($1))")
        assert blockers == holders and len(holders.strip("{}").split(",")) == 1
        assert t.is_alive() and out == {}
        stack.psql("UPDATE lawful_case SET decided_at = now() - interval '2 hours', "
                   "valid_until = now() - interval '1 hour' WHERE id = '%s'" % case.case_id)
    finally:
        release_holder(holder)
        t.join(30)
    assert not t.is_alive()
    assert "view" not in out
    assert out["refusal"] == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
    assert records(stack, case.case_id, "lawful.read") == []
    assert refused_reads(stack) == refused
    after = {m: stack.metric(m) for m in before}
    assert after == dict(before, waygate_audit_failed_total=before[
        "waygate_audit_failed_total"] + 1)


def last_refused_read(stack):
    """The newest refused lawful.read: (outcome, object, approval, detail, confidential)."""
    return tuple(stack.psql(
        "SELECT outcome, coalesce(object, ''), coalesce(approval, ''), coalesce(detail, ''), "
        "confidential FROM audit_record WHERE action = 'lawful.read' AND outcome = 'refused' "
        "ORDER BY at_us DESC, seq DESC LIMIT 1")[0].split("|"))


def test_a_record_above_the_roles_security_level_is_answered_as_a_missing_one(stack, lawful):
    """The levels bind every role, lawful_access included (deploy/policy.conf [levels]: 0,
    unclassified): "a record above it is answered exactly like one that does not exist", and an
    approved case does not lift it (the deciding security admin does not see a record's level).
    A case naming a plain, a 秘密 (1) and a 机密 (2) waybill and a number that does not exist:
    the plain one is read in clear; the two classified ones, although the database shows them
    under the case's scope, are answered as the missing number is: NOT_FOUND, the same message,
    one confidential refused lawful.read each by the number's blind index (not the record id)
    with the same detail and no case; nothing of them in the case's trail (no read, ok or
    failed)."""
    pb = stack.pb
    plain, secret, highly = new_waybill(stack, "a"), new_waybill(stack, "a"), \
        new_waybill(stack, "a")
    secret.security_level = pb.common.SECURITY_LEVEL_SECRET
    highly.security_level = pb.common.SECURITY_LEVEL_HIGHLY_SECRET
    plain_id, secret_id, highly_id = (submit(stack, w) for w in (plain, secret, highly))
    missing = nonexistent(stack, "a", 2016)
    case = lawful.request([plain.waybill_no, secret.waybill_no, highly.waybill_no, missing])
    lawful.decide(case.case_id)
    assert rls_visible(stack, case.case_id) == 3  # the database shows them: the gateway refuses
    assert lawful.read(plain.waybill_no).waybill.sender.phone == plain.sender.phone

    refused = refused_reads(stack)
    assert refusal(lambda: lawful.read(missing)) == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
    as_missing = last_refused_read(stack)
    for w, record_id in ((secret, secret_id), (highly, highly_id)):
        assert refusal(lambda: lawful.read(w.waybill_no)) == (grpc.StatusCode.NOT_FOUND,
                                                              NOT_GRANTED)
        rec = last_refused_read(stack)
        # the same record as the missing number's but for the number's blind index
        assert rec[:1] + rec[2:] == as_missing[:1] + as_missing[2:], (rec, as_missing)
        assert rec[1] == stack.psql("SELECT encode(wb_bidx, 'hex') FROM waybill WHERE id = '%s'"
                                    % record_id)[0] != record_id
    assert as_missing[2:] == ("", "not named by an approved, unexpired case, or above the "
                              "role's security level", "t")
    assert refused_reads(stack) == refused + 3
    assert records(stack, case.case_id, "lawful.read") == [("lawful.read", "ok", plain_id, "t")]


def test_a_policy_raising_lawful_access_level_lets_its_cases_reach_classified_records(stack,
                                                                                      lawful):
    """The carrier's recorded choice: a policy file whose [levels] lawful_access = 1 lets an
    approved case read a 秘密 record in clear, and still not a 机密 one (NOT_FOUND, as a missing
    number)."""
    pb = stack.pb
    secret, highly = new_waybill(stack, "a"), new_waybill(stack, "a")
    secret.security_level = pb.common.SECURITY_LEVEL_SECRET
    highly.security_level = pb.common.SECURITY_LEVEL_HIGHLY_SECRET
    secret_id = submit(stack, secret)
    submit(stack, highly)
    case = lawful.request([secret.waybill_no, highly.waybill_no])
    lawful.decide(case.case_id)
    policy = os.path.join(stack.dir, "policy_lawful_level.conf")
    text = default_text()
    assert text.count("\nlawful_access = 0\n") == 1
    write_policy(policy, text.replace("\nlawful_access = 0\n", "\nlawful_access = 1\n"))
    gw = ExtraGateway(stack, unique("lawfullevel"),
                      edit=lambda conf: conf + "\n[policy]\nfile = %s\n" % policy)
    try:
        ch = stack.channel(lawful.lawful_via, addr=gw.addr)

        def read(number):
            return waygate_proto.unary(ch, GET, pb.query.GetRequest(waybill_no=number),
                                       pb.common.WaybillView, timeout=15,
                                       metadata=lawful.lawful_md)

        v = read(secret.waybill_no)
        assert v.id == secret_id and v.waybill.sender.phone == secret.sender.phone
        assert refusal(lambda: read(highly.waybill_no)) == (grpc.StatusCode.NOT_FOUND,
                                                            NOT_GRANTED)
    finally:
        gw.close()
    # the stack's own gateway, on the shipped policy (0): not even the 秘密 one
    assert refusal(lambda: lawful.read(secret.waybill_no)) == (grpc.StatusCode.NOT_FOUND,
                                                               NOT_GRANTED)


LAWFUL_MAX_S = 365 * 86400  # [compliance] lawful_max_s, the dev stack's default
TOO_LONG = ("valid_until: must be at most %d s from now (an approval's longest lifetime, "
            "[compliance] lawful_max_s)" % LAWFUL_MAX_S)


def test_an_approval_lasts_at_most_lawful_max_s(stack, lawful, waybills):
    """An approval's valid_until is checked by the gateway before any database work: past
    [compliance] lawful_max_s from now (a year by default; 2^62 overflowed PostgreSQL's
    to_timestamp and answered INTERNAL, raising the lawful statement into the server log, and a
    century was accepted) it is INVALID_ARGUMENT naming valid_until with its rule, nothing
    recorded, the case still pending; at the bound it is approved until exactly then. A
    rejection's valid_until is not used, whatever it is."""
    (w1, _), _, _, _ = waybills
    case = lawful.request([w1.waybill_no])
    now = int(time.time())
    # a minute past the bound: the gateway's clock, read later, cannot bring it back in
    for until in (2 ** 62, 2 ** 63 - 1, now + 100 * LAWFUL_MAX_S, now + LAWFUL_MAX_S + 60):
        assert refusal(lambda: lawful.decide(case.case_id, valid_until=until)) == (
            grpc.StatusCode.INVALID_ARGUMENT, TOO_LONG), until
    assert refusal(lambda: lawful.decide(case.case_id, valid_until=-2 ** 63)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "valid_until: must be in the future")
    assert stack.psql("SELECT state FROM lawful_case WHERE id = '%s'" % case.case_id) == \
        ["pending"]
    assert records(stack, case.case_id) == [("lawful.request", "ok", case.case_id, "t")]
    d = lawful.decide(case.case_id, valid_until=now + LAWFUL_MAX_S)
    assert d.state == stack.pb.compliance.APPROVAL_STATE_APPROVED
    assert stack.psql("SELECT extract(epoch FROM valid_until)::bigint FROM lawful_case WHERE "
                      "id = '%s'" % case.case_id) == [str(now + LAWFUL_MAX_S)]
    rejected = lawful.request([w1.waybill_no])
    assert lawful.decide(rejected.case_id, approve=False, valid_until=2 ** 62).state == \
        stack.pb.compliance.APPROVAL_STATE_REJECTED


def test_the_database_bounds_an_approvals_valid_until(stack, lawful, waybills):
    """The database holds an approval's valid_until to 365 days after the decision itself
    (sql/032: a trigger on lawful_case, WL008, naming valid_until and the rule), whoever writes
    it: connected as the gateway's own role, lawful_case_decide with a valid_until a year and a
    day away, a direct UPDATE deciding the case so, one dated in 2100 with a decided_at to match
    (the bound is the writing transaction's now(), not the row's decided_at), and a direct INSERT
    of an approved case are each refused, and the case stays pending. lawful_case_decidable, which
    the gateway asks first, answers WL008 for the same value and nothing for 364 days, and a
    364-day approval is written (then rolled back). Before, the database accepted all of them."""
    from test_privileges import as_role, refusal as pg_refusal
    (w1, _), _, _, _ = waybills
    case = lawful.request([w1.waybill_no]).case_id
    sec = stack.psql("SELECT id FROM account WHERE name = 'secadmin'")[0]
    acct = stack.psql("SELECT requester_account FROM lawful_case WHERE id = '%s'" % case)[0]
    gw = stack.pguri_gateway
    rule = ("valid_until: must be at most 31536000 s (365 days) after the decision (an "
            "approval's longest lifetime)")
    for sql in (
            "SELECT lawful_case_decide('{c}', {d}, 'secadmin', true, '', "
            "now() + interval '366 days', 86400)",
            "UPDATE lawful_case SET state = 'approved', decided_at = now(), decider_account = {d}, "
            "decider = 'secadmin', valid_until = now() + interval '366 days' WHERE id = '{c}'",
            "UPDATE lawful_case SET state = 'approved', decided_at = '2100-01-01', "
            "decider_account = {d}, decider = 'secadmin', valid_until = '2100-06-01' "
            "WHERE id = '{c}'",
            "INSERT INTO lawful_case (id, requester_account, requester, agency, officer, case_ref, "
            "legal_document_ref, waybills, state, decided_at, decider_account, decider, "
            "valid_until) VALUES (gen_random_uuid(), {a}, 'lawful', 'x', 'x', 'x', 'x', 1, "
            "'approved', now(), {d}, 'secadmin', now() + interval '100 years')"):
        assert pg_refusal(gw, sql.format(c=case, d=sec, a=acct)) == ("WL008", rule), sql
    assert stack.psql("SELECT state FROM lawful_case WHERE id = '%s'" % case) == ["pending"]
    ask = ("SELECT coalesce(lawful_case_decidable('%s', %s, true, now() + interval '%%s days', "
           "86400), 'decidable')" % (case, sec))
    for days, answer in ((366, "WL008"), (364, "decidable")):
        r = as_role(gw, ask % days)
        assert r.returncode == 0 and r.stdout.split() == [answer], r.stderr
    r = as_role(gw, "BEGIN; SELECT lawful_case_decide('%s', %s, 'secadmin', true, '', now() + "
                    "interval '364 days', 86400); ROLLBACK" % (case, sec))
    assert r.returncode == 0 and r.stdout.split() == ["approved"], r.stderr  # rolled back
    assert stack.psql("SELECT state FROM lawful_case WHERE id = '%s'" % case) == ["pending"]


def test_request_and_decision_rules(stack, lawful, waybills):
    (w1, _), _, _, _ = waybills
    pb = stack.pb
    bad = pb.compliance.RequestLawfulAccessRequest(agency="x", officer="y", case_ref="z",
                                                   waybill_nos=[w1.waybill_no])
    assert refusal(lambda: stack.unary(REQUEST, bad, pb.compliance.RequestLawfulAccessResponse,
                                       principal=lawful.lawful_via, metadata=lawful.lawful_md)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "legal_document_ref: is required")
    assert refusal(lambda: lawful.request([])) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                   "waybill_nos: is required")
    assert refusal(lambda: lawful.request(["WG1", "not a number!"]))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert refusal(lambda: lawful.request([w1.waybill_no], fields=["sender.shoe_size"])) == (
        grpc.StatusCode.INVALID_ARGUMENT, "fields[0]: is not a field path of a waybill")
    case = lawful.request([w1.waybill_no])
    assert refusal(lambda: lawful.decide(case.case_id, valid_until=int(time.time()) - 10)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "valid_until: must be in the future")
    assert refusal(lambda: lawful.decide("00000000-0000-4000-8000-000000000000")) == (
        grpc.StatusCode.NOT_FOUND, "case_id: no such lawful-access case")
    assert refusal(lambda: lawful.decide("nope")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "case_id: must be a case id (UUID)")
    # roles: the lawful account decides nothing, a security admin requests nothing
    assert refusal(lambda: lawful.decide(case.case_id, md=lawful.lawful_md,
                                         via=lawful.lawful_via))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    assert refusal(lambda: lawful.request([w1.waybill_no], md=lawful.sec_md,
                                          via=lawful.sec_via))[0] == \
        grpc.StatusCode.PERMISSION_DENIED


def case_epoch(stack, column, case_id):
    """A time column of a case as whole seconds since the epoch (0: none)."""
    [v] = stack.psql("SELECT coalesce(floor(extract(epoch FROM %s))::bigint, 0) FROM "
                     "lawful_case WHERE id = '%s'" % (column, case_id))
    return int(v)


def view_rows(stack, case_id):
    """The lawful.view records of a case: outcome|actor|role|count|detail|purpose|legal_basis|
    confidential."""
    return stack.psql("SELECT outcome, actor, role, count, detail, purpose, legal_basis, "
                      "confidential FROM audit_record WHERE action = 'lawful.view' AND object = "
                      "'%s' ORDER BY seq" % case_id)


def test_the_decider_sees_the_case_requested(stack, lawful, waybills):
    """The finding (Art. 16): DecideLawfulAccess takes an id alone and no method showed the
    security admin what it names, so an officer could discuss one case and hand over the id of
    another. GetLawfulCase shows a case as stored: agency, officer, references, how many waybills
    it names (their numbers are stored only as blind indexes), the fields asked for, the
    requester, the state and its times; once decided, the decider and valid_until. The officer
    may look at it too. Each view leaves a confidential lawful.view record naming the case."""
    (w1, _), (w2, _), (w3, _), _ = waybills
    pb = stack.pb.compliance
    case = lawful.request([w1.waybill_no, w2.waybill_no], fields=["recipient.phone"])
    other = lawful.request([w3.waybill_no])  # another id: another case shown
    [(agency, officer, case_ref, doc)] = [tuple(r.split("|")) for r in stack.psql(
        "SELECT agency, officer, case_ref, legal_document_ref FROM lawful_case WHERE id = '%s'"
        % case.case_id)]
    v = lawful.view(case.case_id)
    assert (v.case_id, v.agency, v.officer, v.case_ref, v.legal_document_ref) == (
        case.case_id, agency, officer, case_ref, doc)
    assert (v.waybill_count, list(v.fields), v.state) == (
        2, ["recipient.phone"], pb.APPROVAL_STATE_PENDING)
    me, them = stack.account("lawful")[0], stack.account("secadmin")[0]
    assert v.requester == me
    assert v.requested_at == case_epoch(stack, "requested_at", case.case_id) > 0
    assert (v.decider, v.decided_at, v.valid_until) == ("", 0, 0)
    assert lawful.view(case.case_id, md=lawful.lawful_md, via=lawful.lawful_via) == v
    o = lawful.view(other.case_id)
    assert (o.case_id, o.waybill_count, list(o.fields)) == (other.case_id, 1, [])
    assert o.case_ref != v.case_ref
    until = int(time.time()) + 3600
    lawful.decide(case.case_id, valid_until=until)
    a = lawful.view(case.case_id)
    assert (a.state, a.decider, a.valid_until) == (pb.APPROVAL_STATE_APPROVED, them, until)
    assert a.decided_at == case_epoch(stack, "decided_at", case.case_id) >= v.requested_at
    for f in ("state", "decider", "decided_at", "valid_until"):
        setattr(a, f, getattr(v, f))
    assert a == v  # nothing else changed
    common = "|2|state=%%s|%s|%s|t" % (case_ref, doc)
    assert view_rows(stack, case.case_id) == [
        "ok|%s|security_admin" % them + common % "pending",
        "ok|%s|lawful_access" % me + common % "pending",
        "ok|%s|security_admin" % them + common % "approved"]
    assert len(view_rows(stack, other.case_id)) == 1


def test_a_view_of_an_unknown_case_is_refused_as_a_decision_is(stack, lawful):
    """GetLawfulCase reads a case as DecideLawfulAccess's question does: an id that names no case
    is NOT_FOUND in the decision's words, one that is no UUID INVALID_ARGUMENT in its words.
    The unknown id leaves a confidential refused lawful.view record ("no such case", the id as
    object and approval), as a refused bulk decision or run does, so that ids tried one after
    another are in the trail (an attacker's probe found they were not); the malformed ones reach
    no case and leave none."""
    unknown = str(uuid.uuid4())
    got = refusal(lambda: lawful.view(unknown))
    assert got == (grpc.StatusCode.NOT_FOUND, "case_id: no such lawful-access case")
    assert got == refusal(lambda: lawful.decide(unknown))
    assert got == refusal(lambda: lawful.view(unknown, md=lawful.lawful_md,
                                              via=lawful.lawful_via))
    bad = refusal(lambda: lawful.view("not-a-uuid"))
    assert bad == (grpc.StatusCode.INVALID_ARGUMENT, "case_id: must be a case id (UUID)")
    assert bad == refusal(lambda: lawful.decide("not-a-uuid"))
    assert refusal(lambda: lawful.view("")) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                "case_id: is required")
    # recorded without holding the answer (the refusals' bound, refusals.h): waited for
    sec, me = stack.account("secadmin")[0], stack.account("lawful")[0]
    want = ["refused|%s|security_admin||no such case|||t" % sec,
            "refused|%s|lawful_access||no such case|||t" % me]
    assert wait_for(lambda: sorted(view_rows(stack, unknown)) == sorted(want), 30), \
        view_rows(stack, unknown)
    assert records(stack, unknown, "lawful.view") == [
        ("lawful.view", "refused", unknown, "t")] * 2
    assert stack.psql("SELECT count(*) FROM audit_record WHERE action = 'lawful.view' AND "
                      "object IN ('not-a-uuid', '')") == ["0"]


def test_an_officer_sees_its_own_cases_only(stack, lawful, waybills):
    """A lawful_access account may view the cases it requested, not another officer's (another
    agency's case, its references and officer): another's id is answered as an id that names no
    case, and recorded as one: the same confidential refused lawful.view record ("no such case",
    nothing of the case in it), so that neither the answer nor the record tells the officer's
    probe of a real case from one of no case, and the probe is in the trail all the same (an
    attacker's probe found it was not); the security admin sees both."""
    admin = Admin(stack)
    name, md = sock_puppet(stack, admin, "lawful_access", lawful.lawful_via)
    me = stack.account("lawful")[0]
    unknown = str(uuid.uuid4())
    try:
        theirs = lawful.request([waybills[0][0].waybill_no], md=md)
        mine = lawful.request([waybills[1][0].waybill_no])
        answer = refusal(lambda: lawful.view(theirs.case_id, md=lawful.lawful_md,
                                             via=lawful.lawful_via))
        assert answer == (grpc.StatusCode.NOT_FOUND, "case_id: no such lawful-access case")
        assert answer == refusal(lambda: lawful.view(unknown, md=lawful.lawful_md,
                                                     via=lawful.lawful_via))
        # recorded without holding the answer (the refusals' bound, refusals.h): waited for
        want = ["refused|%s|lawful_access||no such case|||t" % me]
        assert wait_for(lambda: view_rows(stack, theirs.case_id) == want, 30), \
            view_rows(stack, theirs.case_id)
        assert wait_for(lambda: view_rows(stack, unknown) == want, 30), view_rows(stack, unknown)
        # the two records alike but for the id each names
        same = ("SELECT role, count, approval = object, detail, purpose, legal_basis, "
                "confidential, branch FROM audit_record WHERE action = 'lawful.view' AND "
                "object = '%s'")
        assert stack.psql(same % theirs.case_id) == stack.psql(same % unknown)
        assert lawful.view(theirs.case_id, md=md, via=lawful.lawful_via).requester == name
        assert lawful.view(mine.case_id, md=lawful.lawful_md, via=lawful.lawful_via).case_id == \
            mine.case_id
        assert lawful.view(theirs.case_id).requester == name
    finally:
        admin.disable(name)


def test_a_view_whose_caller_went_away_is_recorded_all_the_same(stack, lawful, waybills):
    """Nothing is shown before the view's lawful.view record committed, and once queued that
    record is written whether or not its caller stays (gw_audit_rebind, not gw_audit_cancel):
    with a lock the test keeps on audit_record, one view's record is in flight (its answer waits)
    and a second view's queued behind it; the second caller cancels. A confidential call's cancel
    is logged and counted nowhere, so a health Watch on the same connection is cancelled right
    after it: the gateway reads a connection's frames in order, so once the Watch counts
    CANCELLED the view's reset was processed too (its cancel run, where gw_audit_cancel would
    drop the entry), and the entry is still queued; once the lock goes both are on record (the
    first answered, the second shown nothing)."""
    from conftest import scrape_metrics
    from test_metrics import calls, scrape
    from test_report import waiting_on_audit_record
    pb = stack.pb.compliance
    first = lawful.request([waybills[0][0].waybill_no])
    second = lawful.request([waybills[1][0].waybill_no])
    ch = stack.channel(lawful.sec_via)  # one connection: the view's reset, then the Watch's
    call = ch.unary_unary(VIEW, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=pb.LawfulCaseView.FromString)
    watch = ch.unary_stream(WATCH,
                            request_serializer=stack.pb.health.HealthCheckRequest.SerializeToString,
                            response_deserializer=stack.pb.health.HealthCheckResponse.FromString)

    def queued():
        return scrape_metrics(stack.env["WAYGATE_METRICS_ADDR"])["waygate_audit_queued"]

    def watches_cancelled():
        return calls(scrape(stack)[0], WATCH, "CANCELLED")
    holder = lock_holder(stack, "LOCK TABLE audit_record IN EXCLUSIVE MODE")
    try:
        answered = call.future(pb.GetLawfulCaseRequest(case_id=first.case_id), timeout=120,
                               metadata=lawful.sec_md)
        assert wait_for(lambda: waiting_on_audit_record(stack), 30), "the record never waited"
        before = queued()
        gone = call.future(pb.GetLawfulCaseRequest(case_id=second.case_id), timeout=120,
                           metadata=lawful.sec_md)
        assert wait_for(lambda: queued() > before, 30), "the second view's record never queued"
        assert not answered.done()  # its record waits: nothing shown yet
        cancelled = watches_cancelled()
        behind = watch(stack.pb.health.HealthCheckRequest(), timeout=120)
        next(behind)  # its first status: the gateway runs the Watch
        assert gone.cancel()
        behind.cancel()  # its reset follows the view's on the connection
        assert wait_for(lambda: watches_cancelled() > cancelled, 30), "the resets never arrived"
        assert queued() > before, "the cancelled view's record was dropped"
    finally:
        release_holder(holder)
    assert answered.result().case_id == first.case_id
    me = stack.account("secadmin")[0]
    for c in (first, second):
        assert wait_for(lambda: view_rows(stack, c.case_id), 30), "a view was not recorded"
        assert [r.split("|")[:5] for r in view_rows(stack, c.case_id)] == [
            ["ok", me, "security_admin", "1", "state=pending"]]


def test_only_the_roles_that_request_or_decide_view_a_case(stack, lawful, waybills):
    """GetLawfulCase is lawful_access's and security_admin's (the roles that may request or
    decide a case, through a person's account); every other role, an account's or a device's, is
    PERMISSION_DENIED by its role, and the administration certificate without an account's token
    is refused as for every lawful call. Nothing is shown, nothing recorded."""
    from test_permissions import ADMIN_CERT_REFUSAL
    pb = stack.pb.compliance
    case = lawful.request([waybills[0][0].waybill_no])
    ask = pb.GetLawfulCaseRequest(case_id=case.case_id)

    def denied(role):
        return (grpc.StatusCode.PERMISSION_DENIED,
                "role %s: may not call this method (least privilege, Art. 34)" % role)
    for account, role in (("clerk_a", "branch_clerk"), ("cs_a", "customer_service"),
                          ("sysadmin", "system_admin"), ("auditor", "compliance_auditor")):
        assert refusal(lambda: stack.unary_as(account, VIEW, ask, pb.LawfulCaseView)) == \
            denied(role), account
    for principal, role in (("courier_a", "courier"), ("branch_a", "branch_clerk"),
                            ("backend", "backend")):
        assert refusal(lambda: stack.unary(VIEW, ask, pb.LawfulCaseView,
                                           principal=principal)) == denied(role), principal
    assert refusal(lambda: stack.unary(VIEW, ask, pb.LawfulCaseView, principal="admin")) == (
        grpc.StatusCode.PERMISSION_DENIED, ADMIN_CERT_REFUSAL)
    assert view_rows(stack, case.case_id) == []


def test_case_free_text_refused_with_control_characters_or_blank(stack, lawful, waybills):
    """The case's free texts follow the rule of every free text an Admin or Compliance method
    stores: a control or bidirectional character, or a blank required value, is refused
    INVALID_ARGUMENT naming the field and the rule, and no case is stored."""
    (w1, _), _, _, _ = waybills
    pb = stack.pb
    good = dict(agency="某市公安局", officer="王警官 040123", case_ref="CASE-F7",
                legal_document_ref="调取证据通知书 (2026) 第17号", waybill_nos=[w1.waybill_no])
    cases_before = stack.psql("SELECT count(*) FROM lawful_case")
    for field, value, words in (
            ("agency", "   ", "agency: is required"),
            ("agency", "某市\n公安局", "agency: must not contain control characters"),
            ("officer", "王警官\u202e 040123", "officer: must not contain control characters"),
            ("case_ref", "CASE\x1b[2J", "case_ref: must not contain control characters"),
            ("legal_document_ref", "  ", "legal_document_ref: is required"),
            ("legal_document_ref", "doc\u2028x",
             "legal_document_ref: must not contain control characters")):
        req = pb.compliance.RequestLawfulAccessRequest(**dict(good, **{field: value}))
        assert refusal(lambda: stack.unary(REQUEST, req,
                                           pb.compliance.RequestLawfulAccessResponse,
                                           principal=lawful.lawful_via,
                                           metadata=lawful.lawful_md)) == (
            grpc.StatusCode.INVALID_ARGUMENT, words), (field, value)
    assert stack.psql("SELECT count(*) FROM lawful_case") == cases_before
    case = lawful.request([w1.waybill_no])
    for comment in ("ok\n\x1b[2Jx", "ok\u202e"):
        req = pb.compliance.DecideLawfulAccessRequest(case_id=case.case_id, approve=False,
                                                      comment=comment)
        assert refusal(lambda: stack.unary(DECIDE, req,
                                           pb.compliance.DecideLawfulAccessResponse,
                                           principal=lawful.sec_via, metadata=lawful.sec_md)) == (
            grpc.StatusCode.INVALID_ARGUMENT, "comment: must not contain control characters")
    assert stack.psql("SELECT state FROM lawful_case WHERE id = '%s'" % case.case_id) == \
        ["pending"]
    # an empty or blank comment stays optional
    req = pb.compliance.DecideLawfulAccessRequest(case_id=case.case_id, approve=False,
                                                  comment="   ")
    assert stack.unary(DECIDE, req, pb.compliance.DecideLawfulAccessResponse,
                       principal=lawful.sec_via, metadata=lawful.sec_md).state == \
        pb.compliance.APPROVAL_STATE_REJECTED


def test_requester_person_may_not_decide(stack, lawful, waybills):
    """A security_admin account of the lawful account's own person is refused, and the attempt
    is recorded as refused (Art. 16: a second person decides)."""
    (w1, _), _, _, _ = waybills
    person = stack.psql("SELECT person FROM account WHERE name = '%s'"
                        % stack.account("lawful")[0])[0]
    name = unique("sec")
    admin = Admin(stack)
    pw = admin.create(name, "security_admin", person=person)
    r = login(stack, name, pw, "admin")
    new = password()
    change(stack, bearer(r.token), "admin", pw, new)
    md = bearer(login(stack, name, new, "admin").token)
    case = lawful.request([w1.waybill_no])
    assert refusal(lambda: lawful.decide(case.case_id, md=md, via="admin")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "case_id: the requester may not decide their own case (a second person decides, "
        "Art. 16)")
    assert records(stack, case.case_id) == [("lawful.request", "ok", case.case_id, "t"),
                                            ("lawful.approve", "refused", case.case_id, "t")]
    assert stack.psql("SELECT state FROM lawful_case WHERE id = '%s'" % case.case_id) == \
        ["pending"]
    admin.disable(name)


RELATED = ("case_id: the decider is not independent of the requester: one created the other's "
           "account (or another account of the same person did); an independent person decides "
           "(Art. 16, 37)")


def sock_puppet(stack, admin, role, via):
    """An account the security admin creates under an invented person, with a password of their
    choosing, logged in over via: (name, metadata)."""
    name = unique("puppet")
    pw = admin.create(name, role, person=unique("not-me-"))
    r = login(stack, name, pw, via)
    new = password()
    change(stack, bearer(r.token), via, pw, new)
    return name, bearer(login(stack, name, new, via).token)


def test_creator_of_the_requesters_account_may_not_decide(stack, lawful, waybills):
    """A security admin alone: a lawful_access account they created under another person's name
    files a case, and they approve it with their own account. Refused (sql/021) and recorded as
    refused; the case stays pending and its waybill unreadable to the puppet."""
    (w1, _), _, _, _ = waybills
    admin = Admin(stack)
    name, md = sock_puppet(stack, admin, "lawful_access", lawful.lawful_via)
    case = lawful.request([w1.waybill_no], md=md)
    assert refusal(lambda: lawful.decide(case.case_id)) == (
        grpc.StatusCode.PERMISSION_DENIED, RELATED)
    assert records(stack, case.case_id) == [("lawful.request", "ok", case.case_id, "t"),
                                            ("lawful.approve", "refused", case.case_id, "t")]
    assert stack.psql("SELECT state FROM lawful_case WHERE id = '%s'" % case.case_id) == \
        ["pending"]
    assert refusal(lambda: stack.unary(GET, stack.pb.query.GetRequest(waybill_no=w1.waybill_no),
                                       stack.pb.common.WaybillView, principal=lawful.lawful_via,
                                       metadata=md)) == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
    admin.disable(name)


def test_lawful_records_invisible_to_a_branch(stack, lawful, waybills):
    (w1, id1), _, _, _ = waybills
    # every lawful.* audit record is confidential
    assert stack.psql("SELECT count(*) FROM audit_record WHERE action LIKE 'lawful.%' "
                      "AND NOT confidential") == ["0"]
    assert int(stack.psql("SELECT count(*) FROM audit_record WHERE action = 'lawful.read'")[0]) > 0
    # under a branch's scope the database shows no case and no item to the gateway's role
    assert int(stack.psql("SELECT count(*) FROM lawful_case")[0]) > 0
    for scope in ("a", "b"):
        out = stack.psql("BEGIN; SELECT set_config('waygate.scope', '%s', true); "
                         "SELECT (SELECT count(*) FROM lawful_case) || ',' || "
                         "(SELECT count(*) FROM lawful_case_item); COMMIT;" % scope,
                         uri=stack.pguri_gateway)
        assert out[-1] == "0,0", out
    # the branch sees its waybill exactly as before: masked, no trace of the lawful reads
    v = get(stack, w1.waybill_no, "branch_a")
    assert v.id == id1 and v.waybill.sender.phone != w1.sender.phone
    # and reaches none of the lawful or report methods
    pb = stack.pb
    for method, req, resp in (
            (REQUEST, pb.compliance.RequestLawfulAccessRequest(), pb.compliance
             .RequestLawfulAccessResponse),
            (DECIDE, pb.compliance.DecideLawfulAccessRequest(), pb.compliance
             .DecideLawfulAccessResponse),
            (REPORT, pb.compliance.ReportRequest(month="2026-12"), pb.compliance.ReportResponse)):
        for who in ("branch_a", "clerk_a"):
            call = (lambda: stack.unary(method, req, resp, principal="branch_a")) \
                if who == "branch_a" else (lambda: stack.unary_as("clerk_a", method, req, resp))
            assert refusal(call)[0] == grpc.StatusCode.PERMISSION_DENIED, (method, who)


def test_lawful_read_fails_closed(stack, lawful, waybills):
    """With the audit table unwritable by the gateway, an approved read fails and sends
    nothing."""
    _, (w2, _), _, _ = waybills
    case = lawful.request([w2.waybill_no])
    lawful.decide(case.case_id)
    before = len(records(stack, case.case_id, "lawful.read"))
    with stack.audit_insert_revoked("waygate_gateway"):
        code, details = refusal(lambda: lawful.read(w2.waybill_no))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert details == "the access record could not be written, so nothing was released"
    assert len(records(stack, case.case_id, "lawful.read")) == before
    # recorded again: the read works
    assert lawful.read(w2.waybill_no).waybill.sender.phone == w2.sender.phone


def debug_log(text):
    """A gateway's configuration at the most verbose log level the daemon has (debug)."""
    text, n = re.subn(r"(?m)^level\s*=.*$", "level = debug", text)
    assert n == 1, "no [log] level in the dev stack's configuration"
    return text


def test_lawful_access_leaves_nothing_in_the_log(stack, waybills):
    """Art. 16: lawful access is confidential to the gateway's log readers as to its metrics'. A
    gateway logging at debug serves the whole flow: the officer and the security admin log in
    (and a new officer account logs in, changes its one-time password, logs in again), a case is
    requested, approved and read (Get), another requested and rejected and its waybill
    refused, and lawful calls are refused (by the policy, by a rule, by the case's state, for want
    of their record). Its log then names none of it: no lawful method or role ("lawful" in any
    case), no case id, none of the case's free texts, no waybill number, no request id the lawful
    calls carried; the lawful_access account's login and Gets are not among the calls logged;
    the one error an operator needs (a record the database refused) is there without any of it.
    The security admin's login and a courier's Gets in the same window are there, at debug: the
    log was on."""
    (w1, id1), _, (w3, id3), _ = waybills
    w2 = new_waybill(stack, "a")  # named by no case of the officer's but the rejected one
    submit(stack, w2)
    pb = stack.pb
    # a second officer's account, new: its first login and password change are in the window
    admin = Admin(stack)
    second = unique("officer")
    first_pw = admin.create(second, "lawful_access")
    gw = ExtraGateway(stack, "lawfullog", edit=debug_log)
    try:
        start = len(gw.log())
        admin_ch = stack.channel("admin", addr=gw.addr)
        courier_ch = stack.channel("courier_a", addr=gw.addr)
        tag = "%d" % time.time_ns()
        hidden = []  # what the log must not hold, beyond "lawful"

        def call(ch, method, req, resp, md=(), rid=None, timeout=15):
            if rid is None:  # a lawful call's: none of its lines may carry it
                rid = "rq-conf-%s-%d" % (tag, len(hidden))
                hidden.append(rid)
            return waygate_proto.unary(ch, method, req, resp, timeout=timeout,
                                       metadata=list(md) + [("x-request-id", rid)])

        def log_in(name, rid=None):
            account, pw, via = stack.account(name)
            assert via == "admin"
            return bearer(call(admin_ch, "/waygate.v1.Admin/Login",
                               pb.admin.LoginRequest(account=account, password=pw),
                               pb.admin.LoginResponse, rid=rid, timeout=HASHING_DEADLINE).token)

        # both over the administration certificate: the security admin's login is logged, the
        # officer's (a lawful_access account's) is not
        sec_login = "rq-login-%s" % tag
        officer, sec = log_in("lawful"), log_in("secadmin", sec_login)
        hidden.append(second)
        new_pw = password()
        r = call(admin_ch, "/waygate.v1.Admin/Login",
                 pb.admin.LoginRequest(account=second, password=first_pw), pb.admin.LoginResponse,
                 timeout=HASHING_DEADLINE)
        assert r.must_change_password
        call(admin_ch, "/waygate.v1.Admin/ChangePassword", pb.admin.ChangePasswordRequest(
            old_password=first_pw, new_password=new_pw), pb.admin.ChangePasswordResponse,
            bearer(r.token), timeout=HASHING_DEADLINE)
        call(admin_ch, "/waygate.v1.Admin/Login",
             pb.admin.LoginRequest(account=second, password=new_pw), pb.admin.LoginResponse,
             timeout=HASHING_DEADLINE)
        texts = dict(agency="某市公安局刑侦支队%s" % tag, officer="李警官 %s" % tag,
                     case_ref="CASE-LOG-%s" % tag, legal_document_ref="调取证据通知书 %s 号" % tag)
        comments = ("approved-after-review-%s" % tag, "rejected-after-review-%s" % tag)
        hidden += list(texts.values()) + list(comments) + [w1.waybill_no, w2.waybill_no]

        def request(number, md=officer):
            return call(admin_ch, REQUEST,
                        pb.compliance.RequestLawfulAccessRequest(waybill_nos=[number], **texts),
                        pb.compliance.RequestLawfulAccessResponse, md)

        def decide(case_id, approve, comment, md=sec):
            return call(admin_ch, DECIDE, pb.compliance.DecideLawfulAccessRequest(
                case_id=case_id, approve=approve, comment=comment),
                pb.compliance.DecideLawfulAccessResponse, md)

        def read(number):
            return call(admin_ch, GET, pb.query.GetRequest(waybill_no=number),
                        pb.common.WaybillView, officer)

        def view(case_id, md=sec):
            return call(admin_ch, VIEW, pb.compliance.GetLawfulCaseRequest(case_id=case_id),
                        pb.compliance.LawfulCaseView, md)

        approved = request(w1.waybill_no)
        assert view(approved.case_id).case_ref == texts["case_ref"]
        assert view(approved.case_id, md=officer).agency == texts["agency"]
        assert refusal(lambda: view(str(uuid.uuid4())))[0] == grpc.StatusCode.NOT_FOUND
        assert decide(approved.case_id, True, comments[0]).state == \
            pb.compliance.APPROVAL_STATE_APPROVED
        assert read(w1.waybill_no).id == id1
        rejected = request(w2.waybill_no)
        assert decide(rejected.case_id, False, comments[1]).state == \
            pb.compliance.APPROVAL_STATE_REJECTED
        hidden += [approved.case_id, rejected.case_id]
        assert refusal(lambda: read(w2.waybill_no)) == (grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
        # refused: by the policy (each role the other's method; the officer a method of nobody's
        # case), by a rule, by the case's state
        assert refusal(lambda: request(w1.waybill_no, md=sec))[0] == \
            grpc.StatusCode.PERMISSION_DENIED
        assert refusal(lambda: decide(approved.case_id, True, comments[0], md=officer))[0] == \
            grpc.StatusCode.PERMISSION_DENIED
        assert refusal(lambda: view(approved.case_id, md=()))[0] == \
            grpc.StatusCode.PERMISSION_DENIED  # the certificate without an account's token
        assert refusal(lambda: call(admin_ch, REPORT, pb.compliance.ReportRequest(month="2026-12"),
                                    pb.compliance.ReportResponse, officer))[0] == \
            grpc.StatusCode.PERMISSION_DENIED
        assert refusal(lambda: decide(approved.case_id, True, comments[0])) == (
            grpc.StatusCode.FAILED_PRECONDITION, "case_id: the case was already decided")
        assert refusal(lambda: read("not a number!"))[0] == grpc.StatusCode.INVALID_ARGUMENT
        # a read whose record cannot be written: refused, and the operator is told (below)
        with stack.audit_insert_revoked("waygate_gateway"):
            assert refusal(lambda: read(w1.waybill_no))[0] == grpc.StatusCode.UNAVAILABLE
        assert read(w1.waybill_no).id == id1  # recorded again

        # a courier's Gets in the same window: logged (status 0 at debug, NOT_FOUND at info)
        seen = ["rq-visible-%s-%d" % (tag, i) for i in (1, 2)]
        assert waygate_proto.unary(courier_ch, GET, pb.query.GetRequest(waybill_no=w3.waybill_no),
                                   pb.common.WaybillView, timeout=15,
                                   metadata=[("x-request-id", seen[0])]).id == id3
        assert refusal(lambda: waygate_proto.unary(
            courier_ch, GET, pb.query.GetRequest(waybill_no=nonexistent(stack, "a", 5)),
            pb.common.WaybillView, timeout=15, metadata=[("x-request-id", seen[1])]))[0] == \
            grpc.StatusCode.NOT_FOUND

        # every line of those connections written: both closed (their close is logged at debug)
        admin_ch.close()
        courier_ch.close()
        assert wait_for(lambda: gw.log()[start:].count("connection closed") >= 2, 20), \
            "the gateway did not log the connections' close"
        window = gw.log()[start:]
    finally:
        gw.close()
        admin.disable(second)
    lines = [json.loads(ln) for ln in window.splitlines()]
    gets = [r for r in lines if r["msg"].startswith("call finished: %s " % GET)]
    assert [(r["level"], r.get("request_id")) for r in gets] == \
        [("debug", seen[0]), ("info", seen[1])], gets
    logins = [r.get("request_id") for r in lines
              if r["msg"].startswith("call finished: /waygate.v1.Admin/Login ")]
    assert logins == [sec_login], logins
    # the failed record's error is there, saying what failed and nothing of whose or which
    unrecorded = [r for r in lines if "not recorded" in r["msg"]]
    assert [(r["level"], r["component"], sorted(r)) for r in unrecorded] == \
        [("error", "audit", ["component", "level", "msg", "time"])], unrecorded
    for needle in ["lawful", "Lawful", "LAWFUL"] + hidden:
        assert needle not in window, (needle, [ln for ln in window.splitlines() if needle in ln])


# --- no trace outside the places built for lawful access: incidents, the server log ---

FLIP_MAC = "content_mac = set_byte(content_mac, 3, get_byte(content_mac, 3) # 1)"


def ctl_incidents_since(stack, first_id):
    """The incident rows with an id >= first_id as the CLI's role lists them (`waygatectl
    incidents list`, through cli_incident_list): the listing's lines."""
    r = stack.ctl("incidents", "list", "--limit", "10000", "--db", stack.pguri)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return [ln for ln in r.stdout.splitlines()[1:]
            if ln.split()[0].isdigit() and int(ln.split()[0]) >= first_id]


def test_incidents_of_lawful_calls_name_no_lawful_access(stack, lawful):
    """Art. 16 and 17: the incidents a lawful call causes say what happened and nothing of lawful
    access. A lawful read of a tampered record (DATA_LOSS) and of one whose key is unavailable
    (FAILED_PRECONDITION), and an account locked by failed logins sent with the officer's token:
    the rows keep their kind, severity and detail (a stored record failed authentication, and
    where; an account locked), since the carrier must see them; listed as the CLI's role they name
    no officer account, principal, peer, case id, method, and not the record a case names, and
    their audit records are the gateway's. Which record failed, under which case, is in the
    case's confidential audit trail (lawful.read, outcome failed), and the gateway's log line
    names no record."""
    officer = stack.account("lawful")[0]
    w = new_waybill(stack, "a")
    rec = submit(stack, w)
    case = lawful.request([w.waybill_no])
    lawful.decide(case.case_id)
    assert lawful.read(w.waybill_no).id == rec
    first = int(stack.psql("SELECT coalesce(max(id), 0) + 1 FROM incident")[0])
    start_us = int(stack.psql("SELECT (extract(epoch FROM now()) * 1000000)::bigint")[0])
    log_start = len(open(stack.log_path, errors="replace").read())
    saved = stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % rec)[0]
    stack.psql("UPDATE waybill SET %s WHERE id = '%s'" % (FLIP_MAC, rec))
    try:
        code, _ = refusal(lambda: lawful.read(w.waybill_no))
        assert code == grpc.StatusCode.DATA_LOSS
    finally:
        stack.psql("UPDATE waybill SET %s WHERE id = '%s'" % (FLIP_MAC, rec))
    stack.psql("UPDATE waybill SET kek_version = kek_version + 1000 WHERE id = '%s'" % rec)
    try:
        code, _ = refusal(lambda: lawful.read(w.waybill_no))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        stack.psql("UPDATE waybill SET kek_version = %s WHERE id = '%s'" % (saved, rec))
    assert lawful.read(w.waybill_no).id == rec  # whole again

    # an account locked by the failures of Logins sent with the officer's token (confidential)
    admin = Admin(stack)
    victim = unique("officer")
    admin.create(victim, "lawful_access")
    ch = stack.channel(lawful.lawful_via)
    for _ in range(5):  # [auth] lockout_failures
        assert refusal(lambda: waygate_proto.unary(
            ch, "/waygate.v1.Admin/Login", stack.pb.admin.LoginRequest(
                account=victim, password="Wrong-pass-9Z"), stack.pb.admin.LoginResponse,
            timeout=HASHING_DEADLINE, metadata=lawful.lawful_md))[0] == \
            grpc.StatusCode.UNAUTHENTICATED
    try:
        kinds = "SELECT kind FROM incident WHERE id >= %d ORDER BY id" % first
        assert wait_for(lambda: sorted(stack.psql(kinds)) == [
            "account_locked", "decryption_failure", "key_unavailable"], 30), stack.psql(kinds)
        rows = ctl_incidents_since(stack, first)
        assert len(rows) == 3, rows
        listing = "\n".join(rows)
        assert "stored record failed authentication at fields_ct" in listing
        assert "key-encryption key version" in listing
        assert "an account locked for" in listing
        for needle in ("lawful", "Lawful", officer, victim, case.case_id, rec, "Get",
                       "127.0.0.1", "admin"):
            assert needle not in listing, (needle, rows)
        # every column the listing shows but the detail: empty ("-")
        assert stack.psql("SELECT count(*) FROM incident WHERE id >= %d AND (principal IS NOT "
                          "NULL OR peer IS NOT NULL OR branch IS NOT NULL OR record_id IS NOT "
                          "NULL)" % first) == ["0"]
        # their audit records: the gateway's, naming no one
        assert wait_for(lambda: len(stack.psql(
            "SELECT 1 FROM audit_record WHERE action = 'incident' AND at_us >= %d AND object IN "
            "('account_locked', 'decryption_failure', 'key_unavailable')" % start_us)) == 3, 30)
        assert stack.psql(
            "SELECT DISTINCT actor || '|' || coalesce(role, '-') || '|' || coalesce(cert, '-') || "
            "'|' || coalesce(peer, '-') FROM audit_record WHERE action = 'incident' AND at_us >= "
            "%d AND object IN ('account_locked', 'decryption_failure', 'key_unavailable')"
            % start_us) == ["gateway|-|-|-"]
        # the refused Logins sent with the officer's token are recorded as confidential, like
        # every record of the officer's calls, its own logins among them (red before: 'f')
        fails = ("SELECT DISTINCT confidential FROM audit_record WHERE action = 'login.fail' AND "
                 "object = '%s' AND at_us >= %d" % (victim, start_us))
        assert wait_for(lambda: stack.psql(fails) == ["t"], 30), stack.psql(fails)
        assert stack.psql("SELECT DISTINCT confidential FROM audit_record WHERE action = "
                          "'login.ok' AND actor = '%s'" % officer) == ["t"]
        # which record, under which case: in the case's confidential trail only
        assert wait_for(lambda: sorted(r for r in records(stack, case.case_id, "lawful.read")
                                       if r[1] == "failed") ==
                        [("lawful.read", "failed", rec, "t")] * 2, 30)
        # the gateway's line of the unreadable record names no record
        window = open(stack.log_path, errors="replace").read()[log_start:]
        bad = [ln for ln in window.splitlines() if "failed authentication" in ln]
        assert bad and all(rec not in ln for ln in bad), bad
    finally:
        stack.psql("UPDATE account SET failed_count = 0, locked_until = NULL WHERE name = '%s'"
                   % victim)
        admin.disable(victim)


def test_an_officer_locked_out_without_a_token_is_named_nowhere(stack, lawful):
    """Art. 16 and 17: an officer mistyping a lawful_access account's password over the
    administration certificate, no token sent (an ordinary Login, not a confidential call): the
    account_locked incident says only that an account was locked, naming no account, principal,
    certificate or peer, and the refused Logins' login.fail records are confidential, as its
    login.ok records are. Before, the incident named the officer's account and the workstation,
    and the failures were in the ordinary trail."""
    admin = Admin(stack)
    victim = unique("officer")
    admin.create(victim, "lawful_access")
    first = int(stack.psql("SELECT coalesce(max(id), 0) + 1 FROM incident")[0])
    start_us = int(stack.psql("SELECT (extract(epoch FROM now()) * 1000000)::bigint")[0])
    try:
        for _ in range(5):  # [auth] lockout_failures
            code, _ = refusal(lambda: login(stack, victim, "Wrong-pass-9Z", lawful.lawful_via))
            assert code == grpc.StatusCode.UNAUTHENTICATED
        kinds = "SELECT kind FROM incident WHERE id >= %d AND kind = 'account_locked'" % first
        assert wait_for(lambda: stack.psql(kinds) == ["account_locked"], 30), stack.psql(kinds)
        assert stack.psql("SELECT count(*) FROM incident WHERE id >= %d AND (principal IS NOT "
                          "NULL OR peer IS NOT NULL OR branch IS NOT NULL OR detail LIKE '%%%s%%')"
                          % (first, victim)) == ["0"]
        listing = "\n".join(ctl_incidents_since(stack, first))
        assert "an account locked for" in listing and victim not in listing, listing
        fails = ("SELECT DISTINCT confidential FROM audit_record WHERE action = 'login.fail' AND "
                 "object = '%s' AND at_us >= %d" % (victim, start_us))
        assert wait_for(lambda: stack.psql(fails) == ["t"], 30), stack.psql(fails)
    finally:
        stack.psql("UPDATE account SET failed_count = 0, locked_until = NULL WHERE name = '%s'"
                   % victim)
        admin.disable(victim)


def superuser_uri(stack):
    return re.sub(r"user=[^&]*", "user=postgres", stack.pguri_owner)


def test_lawful_refusals_leave_nothing_in_the_server_log(stack, lawful):
    """Art. 16: PostgreSQL's own log keeps every statement that raised an error (here with its
    parameters too: log_parameter_max_length_on_error = -1 for the test). The refusals a lawful
    flow meets in the ordinary course are answered as before, and none raises in the database:
    a decision of no such case, of a case already decided, of an expired undecided case, by the
    requester's own person and by a decider not independent of the requester; a read of a
    waybill no case names, of a rejected case's and of an expired case's. The server log then
    holds no "lawful" (no message, no function), no case id, comment or officer text."""
    w1, w3 = new_waybill(stack, "a"), new_waybill(stack, "a")  # named by no other test's case
    submit(stack, w1)
    submit(stack, w3)
    pglog = os.path.join(stack.dir, "pg", "postgres.log")
    su = superuser_uri(stack)
    stack.psql("ALTER SYSTEM SET log_parameter_max_length_on_error = -1", uri=su)
    stack.psql("SELECT pg_reload_conf()", uri=su)
    hidden = []
    try:
        assert wait_for(lambda: stack.psql(
            "SHOW log_parameter_max_length_on_error", uri=su) == ["-1"], 30)
        start = os.path.getsize(pglog)
        comment = "checked the document"  # lawful.decide's comment
        hidden += [comment, "王警官", "CASE-2026-", "调取证据通知书"]
        nobody = "00000000-0000-4000-8000-%012d" % (time.time_ns() % 10**12)
        hidden.append(nobody)
        assert refusal(lambda: lawful.decide(nobody)) == (
            grpc.StatusCode.NOT_FOUND, "case_id: no such lawful-access case")
        done = lawful.request([w1.waybill_no])
        hidden.append(done.case_id)
        lawful.decide(done.case_id, approve=False)
        assert refusal(lambda: lawful.decide(done.case_id)) == (
            grpc.StatusCode.FAILED_PRECONDITION, "case_id: the case was already decided")
        assert refusal(lambda: lawful.read(w1.waybill_no)) == (grpc.StatusCode.NOT_FOUND,
                                                               NOT_GRANTED)
        old = lawful.request([w3.waybill_no])
        hidden.append(old.case_id)
        stack.psql("UPDATE lawful_case SET requested_at = now() - interval '400 days' "
                   "WHERE id = '%s'" % old.case_id)
        assert refusal(lambda: lawful.decide(old.case_id)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "case_id: the case was not decided in time and has expired")
        # the requester's own person (a new officer and a new security admin of one person: a
        # person holds one administrator role), and a puppet of the deciding security admin
        admin = Admin(stack)
        person = unique("person-")
        officer2, officer2_md = account_of(stack, admin, "lawful_access", person, lawful.lawful_via)
        same, same_md = account_of(stack, admin, "security_admin", person, "admin")
        hidden.append(officer2)
        own = lawful.request([w1.waybill_no], md=officer2_md)
        hidden.append(own.case_id)
        assert refusal(lambda: lawful.decide(own.case_id, md=same_md, via="admin"))[0] == \
            grpc.StatusCode.PERMISSION_DENIED
        puppet, puppet_md = sock_puppet(stack, admin, "lawful_access", lawful.lawful_via)
        hidden.append(puppet)
        theirs = lawful.request([w1.waybill_no], md=puppet_md)
        hidden.append(theirs.case_id)
        assert refusal(lambda: lawful.decide(theirs.case_id)) == (
            grpc.StatusCode.PERMISSION_DENIED, RELATED)
        assert records(stack, own.case_id)[-1][:2] == ("lawful.approve", "refused")
        assert records(stack, theirs.case_id)[-1][:2] == ("lawful.approve", "refused")
        # an approved case that expired: its waybill refused
        lapsed = lawful.request([w3.waybill_no])
        hidden.append(lapsed.case_id)
        lawful.decide(lapsed.case_id)
        stack.psql("UPDATE lawful_case SET decided_at = now() - interval '2 hours', "
                   "valid_until = now() - interval '1 hour' WHERE id = '%s'" % lapsed.case_id)
        assert refusal(lambda: lawful.read(w3.waybill_no)) == (grpc.StatusCode.NOT_FOUND,
                                                               NOT_GRANTED)
        # the server log, once a statement that raises after the flows' is in it
        raise_marker(stack, su, "marker-%d" % start)
        assert wait_for(lambda: "marker-%d" % start in read_from(pglog, start), 30)
        window = read_from(pglog, start)
        for name in (officer2, same, puppet):
            admin.disable(name)
    finally:
        stack.psql("ALTER SYSTEM RESET log_parameter_max_length_on_error", uri=su)
        stack.psql("SELECT pg_reload_conf()", uri=su)
    for needle in ["lawful", "Lawful", "LAWFUL", "WL00"] + hidden:
        assert needle not in window, (needle, [ln for ln in window.splitlines() if needle in ln])


def account_of(stack, admin, role, person, via):
    """A new account of role for person, past its first password change, logged in over via:
    (name, metadata)."""
    name = unique("officer" if role == "lawful_access" else "sec")
    pw = admin.create(name, role, person=person)
    r = login(stack, name, pw, via)
    new = password()
    change(stack, bearer(r.token), via, pw, new)
    return name, bearer(login(stack, name, new, via).token)


def read_from(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def raise_marker(stack, uri, marker):
    """A statement that raises, so that its error (naming marker) follows in the server log
    whatever the flows before it left there."""
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-d", uri, "-c",
                        "SELECT '%s'::int" % marker], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and marker in r.stderr, r.stderr


def test_a_lawful_call_whose_record_cannot_be_queued_logs_only_the_neutral_line(stack):
    """The audit writer's queue full ([audit] queue_max 1, its transaction waiting on a lock of
    audit_record the test holds), on a gateway at debug: lawful requests fill it, and the next
    is refused UNAVAILABLE naming the full queue; a decision and a lawful read are refused too,
    and so is a read of a waybill no case names, whose refusal record could not be queued. The
    gateway's log then holds the neutral lines an operator needs, without context ("access not
    recorded in the audit chain", "a record nobody waited for ... was not written"), and nothing
    of lawful access: no "lawful", case id, officer account, free text or request id."""
    w1, w2 = new_waybill(stack, "a"), new_waybill(stack, "a")  # named by no other test's case
    id1 = submit(stack, w1)
    submit(stack, w2)
    pb = stack.pb
    officer = stack.account("lawful")[0]
    gw = ExtraGateway(stack, unique("lawfulq"), edit=lambda text: debug_log(
        text).rstrip("\n") + "\nqueue_max = 1\n")  # in [audit]
    ch = stack.channel("admin", addr=gw.addr)
    tag = "%d" % time.time_ns()
    hidden = [officer, tag]
    texts = dict(agency="某市公安局 %s" % tag, officer="赵警官 %s" % tag,
                 case_ref="CASE-Q-%s" % tag, legal_document_ref="调取证据通知书 %s" % tag)
    md = stack.login("lawful")
    sec = stack.login("secadmin")
    n = [0]

    def call(method, req, resp, meta, timeout=180):
        n[0] += 1
        rid = "rq-q-%s-%d" % (tag, n[0])
        return waygate_proto.unary(ch, method, req, resp, timeout=timeout,
                                   metadata=list(meta) + [("x-request-id", rid)])

    def request(number, timeout=180):
        return call(REQUEST, pb.compliance.RequestLawfulAccessRequest(waybill_nos=[number],
                                                                      **texts),
                    pb.compliance.RequestLawfulAccessResponse, md, timeout)

    pending = request(w1.waybill_no)
    approved = request(w1.waybill_no)
    assert call(DECIDE, pb.compliance.DecideLawfulAccessRequest(case_id=approved.case_id,
                                                                approve=True),
                pb.compliance.DecideLawfulAccessResponse, sec).state == \
        pb.compliance.APPROVAL_STATE_APPROVED
    hidden += [pending.case_id, approved.case_id, w1.waybill_no, w2.waybill_no]
    start = len(gw.log())
    holder = None
    threads = []
    try:
        holder = lock_holder(stack, "LOCK TABLE audit_record IN SHARE MODE")
        results, threads = calls_until_queue_full(lambda i: request(w1.waybill_no))
        assert all(r in ("ok", QUEUE_FULL) for r in results.values()), results
        assert refusal(lambda: request(w1.waybill_no, timeout=30)) == QUEUE_FULL
        assert refusal(lambda: call(DECIDE, pb.compliance.DecideLawfulAccessRequest(
            case_id=pending.case_id, approve=False), pb.compliance.DecideLawfulAccessResponse,
            sec, timeout=30)) == QUEUE_FULL
        assert refusal(lambda: call(GET, pb.query.GetRequest(waybill_no=w1.waybill_no),
                                    pb.common.WaybillView, md, timeout=30)) == QUEUE_FULL
        assert refusal(lambda: call(GET, pb.query.GetRequest(waybill_no=w2.waybill_no),
                                    pb.common.WaybillView, md, timeout=30)) == (
            grpc.StatusCode.NOT_FOUND, NOT_GRANTED)
        release_holder(holder)
        holder = None
        for t in threads:
            t.join(180)
        assert call(GET, pb.query.GetRequest(waybill_no=w1.waybill_no), pb.common.WaybillView,
                    md, timeout=60).id == id1  # recorded again
        window = gw.log()[start:]
    finally:
        if holder is not None:
            release_holder(holder)
        for t in threads:
            t.join(180)
        gw.close()
    lines = [json.loads(ln) for ln in window.splitlines()]
    unrecorded = [r for r in lines if "access not recorded in the audit chain" in r["msg"]]
    # the requests' refused for the full queue, the decision's, the approved read's
    full = sum(1 for r in results.values() if r == QUEUE_FULL)
    assert len(unrecorded) == full + 3, (results, unrecorded)
    assert len(set(r["msg"] for r in unrecorded)) == 1, unrecorded
    refused = [r for r in lines if r["msg"].startswith("a record nobody waited for")]
    assert len(refused) == 1, refused  # the unnamed waybill's refusal record
    for r in unrecorded + refused:
        assert (r["level"], r["component"], sorted(r)) == (
            "error", "audit", ["component", "level", "msg", "time"]), r
    for needle in ["lawful", "Lawful", "LAWFUL", "rq-q-"] + hidden + list(texts.values()):
        assert needle not in window, (needle, [ln for ln in window.splitlines() if needle in ln])
