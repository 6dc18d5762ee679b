"""The monthly regulator report (Art. 16, 17, 26, 37; issue 8): Compliance.Report and
`waygatectl report monthly --month YYYY-MM` (JSON and CSV) over the current month in UTC+08:00
match the actions this test performs: a report before and one after differ by exactly those
actions (lawful-access requests, approvals, rejections and reads; an incident of known severity;
account changes), and by nothing else (no bulk operation, no destruction). The gateway's and the
CLI's reports agree. `waygatectl incidents list` shows the incident.

The gateway first records the attempt's start (report.generate, outcome "started", committed
before anything is counted: a gateway that dies while it counts leaves a start without an outcome
in the trail), counts in a read-only transaction of its own, then writes its outcome's
report.generate record (the SHA-256 of the document it sends) as an entry of its own, and answers
only after that record committed. A count held up (here: waiting for a lock the schema's owner
holds on `incident`) holds up nothing else: a Reveal's audit record commits meanwhile, a second
report is refused as busy. Every report that starts leaves exactly one outcome record beside its
start (Art. 33): a count past [compliance] report_timeout_ms, or one that fails (its database
session ended), ends the report DEADLINE_EXCEEDED or UNAVAILABLE only once its record (outcome
"timeout" or "failed", the month, no counts) committed, and UNAVAILABLE when even that record
cannot be written; a caller that goes away while it counts leaves one with outcome "cancelled".
A start that cannot be recorded counts nothing (UNAVAILABLE). Refusals before the start (the
month's format, busy, a pool of one connection: FAILED_PRECONDITION naming [database] pool_size)
leave no record, as the argument and capacity refusals of the other audited methods do not."""

import csv
import datetime
import hashlib
import io
import json
import re
import time

import grpc
import pytest

from conftest import ExtraGateway, lock_holder, release_holder, wait_for
from query_data import SUBMIT, new_waybill, refusal, reveal, submit
from test_accounts import Admin, unique
from test_faults import superuser_uri
from test_lawful import Lawful
import waygate_proto

REPORT = "/waygate.v1.Compliance/Report"

COUNTS = ("bulk_requested", "bulk_approved", "bulk_rejected", "bulk_executed",
          "lawful_access_requested", "lawful_access_approved", "lawful_access_rejected",
          "lawful_access_reads", "incidents", "destruction_records", "records_destroyed",
          "account_changes", "principal_changes", "refused_attempts", "suspicious_list_size")
SEVERITIES = ("low", "medium", "high", "critical")


def this_month():
    """The current calendar month in China Standard Time."""
    return (datetime.datetime.utcnow() + datetime.timedelta(hours=8)).strftime("%Y-%m")


class Reports:
    def __init__(self, stack):
        self.stack = stack
        self.md = stack.login("auditor")
        self.via = stack.account("auditor")[2]

    def grpc(self, month):
        return self.stack.unary(REPORT, self.stack.pb.compliance.ReportRequest(month=month),
                                self.stack.pb.compliance.ReportResponse, principal=self.via,
                                metadata=self.md)

    def cli(self, month, fmt="json"):
        r = self.stack.ctl("report", "monthly", "--month", month, "--format", fmt,
                           "--db", self.stack.pguri)
        assert r.returncode == 0, r.stderr
        return r.stdout


def flat(doc):
    """The counts of a JSON report document, severities as incidents_<severity>."""
    out = {k: doc[k] for k in COUNTS}
    for s in SEVERITIES:
        out["incidents_" + s] = doc["incidents_by_severity"][s]
    return out


def from_csv(text, month):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["month", "metric", "value"]
    assert all(r[0] == month for r in rows[1:])
    return {r[1]: int(r[2]) for r in rows[1:] if r[1] != "generated_at"}


@pytest.fixture(scope="module")
def reports(stack):
    return Reports(stack)


def account_records(stack):
    """(account changes, refused attempts) in the audit trail: what the other packages' wiring
    records for the CLI's and the Admin service's actions."""
    return tuple(int(x) for x in stack.psql(
        "SELECT count(*) FILTER (WHERE outcome = 'ok' AND action IN ('account.create', "
        "'account.disable', 'account.disable_inactive', 'password.change')), "
        "count(*) FILTER (WHERE outcome = 'refused') FROM audit_record")[0].split("|"))


def test_monthly_report_matches_the_actions_performed(stack, reports):
    month = this_month()
    before_resp = reports.grpc(month)
    before = flat(json.loads(before_resp.document))
    before_accounts = account_records(stack)

    # --- the actions ---
    lawful = Lawful(stack)
    ws = []
    for _ in range(3):
        w = new_waybill(stack, "a")
        submit(stack, w)
        ws.append(w)
    approved = lawful.request([ws[0].waybill_no, ws[1].waybill_no])
    rejected = lawful.request([ws[2].waybill_no])
    lawful.decide(approved.case_id)
    lawful.decide(rejected.case_id, approve=False)
    for w in (ws[0], ws[1], ws[0]):
        lawful.read(w.waybill_no)
    # one incident of severity medium: a second administrator role for one person (Art. 34)
    r = stack.ctl("accounts", "create", unique("sys"), "--role", "system_admin", "--person",
                  "secadmin", "--db", stack.pguri)
    assert r.returncode == 3, r.stderr
    # two account changes over gRPC (Admin.CreateAccount, DisableAccount: account.create,
    # account.disable)
    admin = Admin(stack)
    name = unique("rep")
    admin.create(name, "branch_clerk", branch="a")
    admin.disable(name)
    accounts, refused = (a - b for a, b in zip(account_records(stack), before_accounts))
    assert accounts == 2

    # --- the report ---
    resp = reports.grpc(month)
    after = flat(json.loads(resp.document))
    delta = {k: after[k] - before[k] for k in after}
    expected = dict.fromkeys(delta, 0)
    expected.update(lawful_access_requested=2, lawful_access_approved=1,
                    lawful_access_rejected=1, lawful_access_reads=3, incidents=1,
                    incidents_medium=1, account_changes=accounts,
                    refused_attempts=refused)
    expected["suspicious_list_size"] = delta["suspicious_list_size"]  # not an action here
    assert delta == expected

    # the response's fields say the same as its document
    doc = json.loads(resp.document)
    assert resp.month == doc["month"] == month
    assert (resp.bulk_requested, resp.bulk_approved, resp.bulk_executed) == (
        doc["bulk_requested"], doc["bulk_approved"], doc["bulk_executed"])
    assert (resp.lawful_access_requested, resp.lawful_access_approved,
            resp.lawful_access_reads) == (doc["lawful_access_requested"],
                                          doc["lawful_access_approved"],
                                          doc["lawful_access_reads"])
    assert resp.incidents == doc["incidents"] == sum(doc["incidents_by_severity"].values())
    assert resp.account_changes == doc["account_changes"]
    assert resp.records_destroyed == doc["records_destroyed"]
    assert resp.suspicious_list_size == doc["suspicious_list_size"] == int(stack.psql(
        "SELECT count(*) FROM phone_owner WHERE suspicious")[0])
    assert from_csv(resp.csv, month) == after

    # the CLI's report of the same month agrees, in JSON and in CSV
    assert flat(json.loads(reports.cli(month))) == after
    assert from_csv(reports.cli(month, "csv"), month) == after

    # each report is itself recorded (report.generate, the month as its object): the gateway's
    # on its chain, the CLI's on chain 'ctl'
    gen = stack.psql("SELECT chain = 'ctl', count(*) FROM audit_record WHERE action = "
                     "'report.generate' AND object = '%s' GROUP BY 1 ORDER BY 1" % month)
    assert [g.split("|")[0] for g in gen] == ["f", "t"]
    assert int(gen[0].split("|")[1]) >= 2 and int(gen[1].split("|")[1]) >= 2

    # and the incident is listed
    r = stack.ctl("incidents", "list", "--severity", "medium", "--limit", "5",
                  "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert "separation_of_duties" in r.stdout


def month_to_come():
    """The month after next in UTC+08:00, YYYY-MM: still to come however long the test takes."""
    now = time.gmtime(time.time() + 8 * 3600)
    n = now.tm_year * 12 + now.tm_mon - 1 + 2
    return "%04d-%02d" % (n // 12, n % 12 + 1)


def test_report_of_an_empty_month_and_refusals(stack, reports):
    """A month's report of nothing; argument refusals name the field and leave no record (like
    Reveal's and RunBulk's: nothing was read or done)."""
    gen = "SELECT count(*) FROM audit_record WHERE action = 'report.generate'"
    before = attempts(stack, "2001-01", main(stack))
    resp = reports.grpc("2001-01")
    doc = json.loads(resp.document)
    assert doc["from_us"] == (978307200 - 8 * 3600) * 1000000
    assert all(doc[k] == 0 for k in COUNTS if k != "suspicious_list_size")
    assert attempts(stack, "2001-01", main(stack)) == before + [STARTED, ("ok", digest(resp), "-")]
    n = stack.psql(gen)
    assert refusal(lambda: reports.grpc("2026-13")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "month: must be a month YYYY-MM (UTC+08:00)")
    assert refusal(lambda: reports.grpc("")) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                 "month: is required")
    # a month to come counts nothing: refused, not recorded (one soon, and the last one)
    for month in (month_to_come(), "9999-12"):
        assert refusal(lambda: reports.grpc(month)) == (
            grpc.StatusCode.INVALID_ARGUMENT, "month: must be a month that has begun (UTC+08:00)")
    assert stack.psql(gen) == n  # the refusals left no record
    r = stack.ctl("report", "monthly", "--month", "2026-1", "--db", stack.pguri)
    assert r.returncode == 2 and "--month" in r.stderr
    r = stack.ctl("report", "monthly", "--month", month_to_come(), "--db", stack.pguri)
    assert r.returncode == 2 and "--month: must be a month that has begun" in r.stderr
    assert stack.psql(gen) == n
    # only compliance auditors
    for name in ("secadmin", "lawful", "clerk_a"):
        code, _ = refusal(lambda: stack.unary_as(name, REPORT,
                                                 stack.pb.compliance.ReportRequest(month="2026-12"),
                                                 stack.pb.compliance.ReportResponse))
        assert code == grpc.StatusCode.PERMISSION_DENIED, name


# --- the counts hold up nothing else ---------------------------------------------------------------

def hold_incident_table(stack):
    """A psql session of the schema's owner holding ACCESS EXCLUSIVE on `incident` (which the
    report's incident count reads) until release_holder(); returned once the lock is held."""
    return lock_holder(stack, "LOCK TABLE incident IN ACCESS EXCLUSIVE MODE")



def waiting_on_incident(stack):
    """True once a session waits for a lock on `incident` (the report's count)."""
    return stack.psql("SELECT count(*) FROM pg_locks WHERE relation = 'incident'::regclass "
                      "AND NOT granted") != ["0"]


def report_future(stack, reports, month, request_id=None, addr=None):
    """The auditor's Report of month, under way (its future)."""
    pb = stack.pb.compliance
    call = stack.channel(reports.via, addr=addr).unary_unary(
        REPORT, request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.ReportResponse.FromString)
    md = reports.md + ([("x-request-id", request_id)] if request_id else [])
    return call.future(pb.ReportRequest(month=month), timeout=120, metadata=md)


def report_counting(stack, reports, month, addr=None):
    """A Report of month whose count waits on the incident table (hold_incident_table held)."""
    fut = report_future(stack, reports, month, addr=addr)
    assert wait_for(lambda: waiting_on_incident(stack), 30), "the report's count never waited"
    return fut


def generated(stack, month, chain_cond="chain <> 'ctl'"):
    return stack.psql("SELECT coalesce(detail, '') FROM audit_record WHERE action = "
                      "'report.generate' AND object = '%s' AND %s ORDER BY recorded_at, seq"
                      % (month, chain_cond))


@pytest.fixture
def revealable(stack):
    """A waybill of branch a that branch b delivers (courier_b may reveal its recipient's phone),
    with courier_b's reveal quota fresh."""
    w = new_waybill(stack, "a", dest="320102")
    submit(stack, w)
    stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")
    yield w
    stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")


def test_a_report_counting_holds_up_no_audited_write(stack, reports, revealable):
    """While a report's count waits (for a lock the owner holds), a Reveal answers with its audit
    record committed; a second report is refused RESOURCE_EXHAUSTED (and not recorded); of the
    waiting report only its start is recorded. Once the lock goes, the report answers, and its report.generate record
    (with the SHA-256 of the document sent) was committed before the answer arrived. Before the
    counts had a transaction of their own they ran in the audit writer's, and the Reveal waited
    for the lock too (DEADLINE_EXCEEDED here)."""
    month = this_month()
    before = generated(stack, month)
    holder = hold_incident_table(stack)
    try:
        fut = report_counting(stack, reports, month)

        r = reveal(stack, "courier_b", revealable.waybill_no, "recipient.phone")
        assert r.value == revealable.recipient.phone and r.audit_seq > 0
        assert stack.psql("SELECT count(*) FROM audit_record WHERE %s AND seq = %d "
                          "AND action = 'reveal'" % (main(stack), r.audit_seq)) == ["1"]

        assert refusal(lambda: reports.grpc(month)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many requests of this kind in progress (at most 1): retry later")
        assert not fut.done()
        assert generated(stack, month) == before + [""]  # the start, no detail
    finally:
        release_holder(holder)
    resp = fut.result()
    after = generated(stack, month)
    assert len(after) == len(before) + 2
    assert after[-1] == "document_sha256=" + hashlib.sha256(resp.document.encode()).hexdigest()
    assert json.loads(resp.document)["month"] == month
    # the slot is free again
    assert reports.grpc(month).month == month


# TimeoutGateway's report_timeout_ms: what a count held by a lock always reaches, and one that
# nothing holds never does, however loaded the machine. With 300 ms, a count of a whole CI run's
# audit_record on a busy machine could pass it again and again.
TIMEOUT_MS = 10000
TIMEOUT_LIMIT = ("month: counting the month took longer than the report's time limit (%d ms, "
                 "[compliance] report_timeout_ms); no report was made" % TIMEOUT_MS)


def main(stack):
    """The condition for the stack gateway's own chain (conftest: Stack.chain)."""
    return "chain = '%s'" % stack.chain()
STARTED = ("started", "", "-")


def digest(resp):
    return "document_sha256=" + hashlib.sha256(resp.document.encode()).hexdigest()


def attempts(stack, month, chain_cond):
    """(outcome, detail, count or '-') of every report.generate record of month on the chains
    chain_cond selects, in order."""
    return [tuple(r.split("|")) for r in stack.psql(
        "SELECT outcome, coalesce(detail, ''), coalesce(count::text, '-') FROM audit_record "
        "WHERE action = 'report.generate' AND object = '%s' AND %s ORDER BY chain, seq"
        % (month, chain_cond))]


class TimeoutGateway(ExtraGateway):
    """A gateway with [compliance] report_timeout_ms = TIMEOUT_MS, and its Report call."""

    def __init__(self, stack, reports, name):
        super().__init__(stack, name,
                         lambda t: t + "\n[compliance]\nreport_timeout_ms = %d\n" % TIMEOUT_MS)
        self.reports = reports
        self.where = "chain = '%s'" % self.chain

    def report(self, month):
        pb = self.stack.pb.compliance
        return waygate_proto.unary(self.stack.channel(self.reports.via, addr=self.addr), REPORT,
                                   pb.ReportRequest(month=month), pb.ReportResponse,
                                   timeout=60, metadata=self.reports.md)


def test_a_report_past_its_time_limit_is_recorded_as_a_timeout(stack, reports):
    """A gateway with [compliance] report_timeout_ms = TIMEOUT_MS (10 s): a count still waiting
    after it (behind a lock of the incident table, which the test holds) is cancelled by the
    database (statement_timeout), and the report answers DEADLINE_EXCEEDED naming
    the rule and its bound only once one report.generate record of the attempt committed (after
    its start's): outcome "timeout", the month, the same words as its detail, no count and no
    digest. The trail still
    verifies; the same gateway reports the month once nothing holds the count up. (Red before:
    no record at all.)"""
    gw = TimeoutGateway(stack, reports, "report-timeout")
    try:
        month = this_month()
        holder = hold_incident_table(stack)
        try:
            assert refusal(lambda: gw.report(month)) == (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                         TIMEOUT_LIMIT)
            # committed before the answer: read while the lock is still held
            assert attempts(stack, month, gw.where) == [STARTED, ("timeout", TIMEOUT_LIMIT, "-")]
        finally:
            release_holder(holder)
        # nothing holds the count now: it ends well within TIMEOUT_MS. Should a machine starved
        # of CPU still take longer (this rule at work, not the lock), each such attempt is
        # recorded as the first was, and another is made.
        late = []
        for _ in range(3):
            try:
                resp = gw.report(month)
                break
            except grpc.RpcError as e:
                assert (e.code(), e.details()) == (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                   TIMEOUT_LIMIT)
                late += [STARTED, ("timeout", TIMEOUT_LIMIT, "-")]
        else:
            raise AssertionError("3 reports in a row past %d ms with nothing holding them"
                                 % TIMEOUT_MS)
        assert attempts(stack, month, gw.where) == [STARTED, ("timeout", TIMEOUT_LIMIT, "-")] + \
            late + [STARTED, ("ok", digest(resp), "-")]
    finally:
        gw.close()
    # this gateway's chain verifies (closed: its last checkpoint covers its last record, the
    # timeout's among them) and is signed to its end. Only its own: the shared stack's trail also
    # holds what earlier tests of the run left in it (chains signed by keys they added), which
    # the live check names each on its own lines without stopping.
    r = stack.ctl("audit", "verify", "--db", stack.pguri)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    if r.returncode == 0:
        assert r.stdout.startswith("audit trail verified"), r.stdout
    named = [line for line in (r.stdout + r.stderr).splitlines()
             if line.startswith(("FAILED:", "checked:", "waygatectl"))]
    assert named or r.returncode == 0, r.stdout + r.stderr
    assert not any(gw.chain in line or "reading the audit trail" in line for line in named), \
        r.stdout + r.stderr
    assert stack.psql("SELECT max(seq) FROM audit_checkpoint WHERE chain = '%s'" % gw.chain) == \
        stack.psql("SELECT max(seq) FROM audit_record WHERE chain = '%s'" % gw.chain)


def test_a_report_whose_count_fails_is_recorded_as_failed(stack, reports):
    """The database session of a waiting count is terminated (the database went away under it):
    the report answers UNAVAILABLE only once its attempt's record committed, outcome "failed"
    with the words the caller gets. (Red before: no record.)"""
    month = this_month()
    where = main(stack)
    before = attempts(stack, month, where)
    su = superuser_uri(stack)
    holder = hold_incident_table(stack)
    try:
        fut = report_counting(stack, reports, month)
        pid = stack.psql("SELECT pid FROM pg_locks WHERE relation = 'incident'::regclass AND "
                         "NOT granted", uri=su)
        assert len(pid) == 1, pid
        assert stack.psql("SELECT pg_terminate_backend(%s)" % pid[0], uri=su) == ["t"]
        with pytest.raises(grpc.RpcError) as e:
            fut.result()
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE,
                                                       "database unavailable; retrying is safe")
        assert attempts(stack, month, where) == before + [
            STARTED, ("failed", "database unavailable; retrying is safe", "-")]
    finally:
        release_holder(holder)
    assert reports.grpc(month).month == month  # the pool came back


def test_a_report_cancelled_while_counting_is_recorded(stack, reports):
    """A caller that goes away while its report counts: one report.generate record with outcome
    "cancelled" is written all the same (red before: no record). Its count still holds its
    connection until its statement ends on the server, and so still holds its slot: a caller
    that cancels and asks again is busy meanwhile, not counting on a second connection (red
    before: the slot was freed at the cancel, and cancel after cancel took every connection of
    the pool); once the count ends the slot is free again."""
    month = this_month()
    where = main(stack)
    before = attempts(stack, month, where)
    holder = hold_incident_table(stack)
    try:
        fut = report_counting(stack, reports, month)
        assert fut.cancel()
        assert wait_for(lambda: len(attempts(stack, month, where)) > len(before) + 1, 30)
        assert attempts(stack, month, where) == before + [STARTED, ("cancelled", "", "-")]
        assert refusal(lambda: reports.grpc(month)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many requests of this kind in progress (at most 1): retry later")
        assert waiting_on_incident(stack)  # the cancelled count, still on its connection
    finally:
        release_holder(holder)

    def answered():
        try:
            return reports.grpc(month).month == month
        except grpc.RpcError as e:  # busy until the gateway has read the count's end
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
            return False
    assert wait_for(answered, 60), "the cancelled count's slot was never freed"
    # the busy answers left no record; the report that was answered left its two
    assert [a[0] for a in attempts(stack, month, where)[len(before) + 2:]] == ["started", "ok"]


def test_pool_of_one_connection_refuses_reports(stack, reports):
    """[database] pool_size = 1 is a valid setting (docs/performance.md measures it), but a
    report's count would hold the only connection for up to report_timeout_ms: such a gateway
    answers Report FAILED_PRECONDITION naming both keys and the bound, before anything is read,
    and serves everything else. (Red before: it counted.)"""
    def one(text):
        out, n = re.subn(r"(?m)^pool_size\s*=.*$", "pool_size = 1", text)
        assert n == 1, "no pool_size line in the stack's configuration"
        return out
    gw = ExtraGateway(stack, "report-pool1", one)
    try:
        pb = stack.pb.compliance
        month = this_month()
        assert refusal(lambda: waygate_proto.unary(
            stack.channel(reports.via, addr=gw.addr), REPORT, pb.ReportRequest(month=month),
            pb.ReportResponse, timeout=60, metadata=reports.md)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "a report needs [database] pool_size of at least 2 connections (its count holds one "
            "for up to [compliance] report_timeout_ms); no report was made")
        assert attempts(stack, month, "chain = '%s'" % gw.chain) == []
        w = new_waybill(stack, "a")
        r = waygate_proto.unary(stack.channel("courier_a", addr=gw.addr), SUBMIT,
                                stack.pb.intake.SubmitRequest(waybill=w),
                                stack.pb.intake.SubmitResponse, timeout=60)
        assert r.id and not r.duplicate
    finally:
        gw.close()


@pytest.fixture
def audit_unwritable(stack):
    """The gateway's role loses INSERT on audit_record for the test (restored after)."""
    from test_audit_reads import GW_ROLE
    with stack.audit_insert_revoked(GW_ROLE):
        yield


UNRECORDED = ("no report was made, and the attempt could not be recorded either (every report "
              "attempt is recorded before it is answered); retry later")


def revoke_audit_insert(stack):
    """The gateway's role loses INSERT on audit_record; returns what gives it back."""
    from test_audit_reads import GW_ROLE
    return stack.revoke_audit_insert(GW_ROLE)


def test_a_report_whose_start_cannot_be_recorded_counts_nothing(stack, reports, audit_unwritable):
    """Fail closed: while the attempt's start cannot be recorded (the gateway's role lost INSERT
    on audit_record) nothing is counted: the report answers UNAVAILABLE naming the rule while the
    test holds the lock every count waits for (a count would not have answered), and nothing is
    recorded. (Red before: the count ran first and waited for the lock.)"""
    month = this_month()
    before = generated(stack, month)
    holder = hold_incident_table(stack)
    try:
        assert refusal(lambda: reports.grpc(month)) == (grpc.StatusCode.UNAVAILABLE, UNRECORDED)
        assert not waiting_on_incident(stack)
    finally:
        release_holder(holder)
    assert generated(stack, month) == before


def test_a_report_is_not_sent_without_its_record(stack, reports):
    """Fail closed: the start is recorded and the counts are read, but the outcome's
    report.generate record cannot be written (INSERT revoked while the count waits for a lock):
    no report is sent, and the trail holds the start alone."""
    month = this_month()
    before = generated(stack, month)
    holder, restore = hold_incident_table(stack), None
    try:
        fut = report_future(stack, reports, month)
        assert wait_for(lambda: waiting_on_incident(stack), 30), "the report's count never waited"
        restore = revoke_audit_insert(stack)
        release_holder(holder)
        with pytest.raises(grpc.RpcError) as e:
            fut.result()
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.INTERNAL,
            "the action and its audit record could not be written, so nothing was done")
    finally:
        if restore:
            restore()
        release_holder(holder)
    assert generated(stack, month) == before + [""]


def test_a_report_whose_attempt_cannot_be_recorded_fails_closed(stack, reports):
    """Fail closed: a count that fails (its session terminated) while its attempt's outcome
    cannot be recorded either (INSERT revoked after the start committed) answers UNAVAILABLE
    naming the rule; the trail holds the start without an outcome, as a gateway that died while
    counting leaves it."""
    month = this_month()
    before = attempts(stack, month, main(stack))
    su = superuser_uri(stack)
    holder, restore = hold_incident_table(stack), None
    try:
        fut = report_future(stack, reports, month)
        assert wait_for(lambda: waiting_on_incident(stack), 30), "the report's count never waited"
        restore = revoke_audit_insert(stack)
        pid = stack.psql("SELECT pid FROM pg_locks WHERE relation = 'incident'::regclass AND "
                         "NOT granted", uri=su)
        assert len(pid) == 1, pid
        assert stack.psql("SELECT pg_terminate_backend(%s)" % pid[0], uri=su) == ["t"]
        with pytest.raises(grpc.RpcError) as e:
            fut.result()
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE, UNRECORDED)
    finally:
        if restore:
            restore()
        release_holder(holder)
    assert attempts(stack, month, main(stack)) == before + [STARTED]
    assert reports.grpc(month).month == month


UNENDED = ("SELECT seq FROM (SELECT chain, seq, outcome, lead(outcome) OVER (PARTITION BY chain "
           "ORDER BY seq) AS next FROM audit_record WHERE action = 'report.generate') r "
           "WHERE outcome = 'started' AND (next IS NULL OR next = 'started')")


def test_a_gateway_that_dies_while_counting_leaves_the_start(stack, reports):
    """Art. 33: the attempt's start is committed before anything is counted, so a gateway killed
    while its report counts (SIGKILL while the count waits for a lock) leaves a report.generate
    record with outcome started and none after it: a report begun and never ended is visible in
    the trail. (Red before: the only record came after the count, so nothing at all.)"""
    gw = ExtraGateway(stack, "report-dies")
    where = "chain = '%s'" % gw.chain
    month = this_month()
    holder = hold_incident_table(stack)
    try:
        fut = report_counting(stack, reports, month, addr=gw.addr)
        assert attempts(stack, month, where) == [STARTED]
        gw.proc.kill()
        gw.proc.wait(30)
        with pytest.raises(grpc.RpcError):
            fut.result()
    finally:
        release_holder(holder)
        gw.close()
    assert attempts(stack, month, where) == [STARTED]
    # docs/operations.md's query of the starts without an outcome names it
    seq = stack.psql("SELECT seq FROM audit_record WHERE %s AND action = 'report.generate'" % where)
    assert stack.psql(UNENDED + " AND chain = '%s'" % gw.chain) == seq


def waiting_on_audit_record(stack):
    return stack.psql("SELECT count(*) FROM pg_locks WHERE relation = 'audit_record'::regclass "
                      "AND NOT granted") != ["0"]


def test_a_report_cancelled_while_its_start_is_written_is_recorded(stack, reports):
    """A caller that goes away while its attempt's start is being written (the insert waits for a
    lock the test holds on audit_record; the test lets it go once the gateway's log says the call
    was cancelled): the start is written all the same, followed by an outcome record
    "cancelled", and nothing is counted; the slot is free again."""
    month = this_month()
    before = attempts(stack, month, main(stack))
    req_id = "it-report-start-cancel-%d" % int(time.time() * 1000)
    holder = lock_holder(stack, "LOCK TABLE audit_record IN EXCLUSIVE MODE")
    try:
        fut = report_future(stack, reports, month, req_id)
        assert wait_for(lambda: waiting_on_audit_record(stack), 30), "the start never waited"
        assert fut.cancel()
        assert wait_for(lambda: any(
            req_id in x and "call cancelled: /waygate.v1.Compliance/Report" in x
            for x in stack.log_lines()), 60), "the gateway did not see the cancel"
    finally:
        release_holder(holder)
    assert wait_for(lambda: len(attempts(stack, month, main(stack))) > len(before) + 1, 30)
    assert attempts(stack, month, main(stack)) == before + [STARTED, ("cancelled", "", "-")]
    assert reports.grpc(month).month == month


def test_the_cli_records_its_start_before_it_counts(stack, reports):
    """`waygatectl report monthly` as the gateway's Report (Art. 33): its report.generate record
    with outcome started (chain 'ctl') commits before anything is counted, so a run killed while
    it counts leaves it; a count that fails leaves a "failed" record with the words printed and
    prints no report; one that counts leaves "ok" after its start. (Red before: one record, after
    the count, and nothing for a count that failed.)"""
    import os
    import signal
    import subprocess
    from conftest import BUILD

    month = this_month()
    where = "chain = 'ctl'"
    su = superuser_uri(stack)
    started = ("started", "waygatectl report monthly", "-")
    env = dict(os.environ, WAYGATE_KEYRING=stack.env["WAYGATE_KEYRING"])

    def run_held(then):
        """A CLI report whose count waits on the incident table's lock; then(process, pid of its
        waiting backend) while it waits; returns (returncode, stdout, stderr)."""
        holder = hold_incident_table(stack)
        p = None
        try:
            p = subprocess.Popen([os.path.join(BUILD, "waygatectl"), "report", "monthly",
                                  "--month", month, "--db", stack.pguri, "--actor", "it-cli"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
            assert wait_for(lambda: waiting_on_incident(stack), 30), "the count never waited"
            assert attempts(stack, month, where)[-1] == started  # before anything was counted
            pid = stack.psql("SELECT pid FROM pg_locks WHERE relation = 'incident'::regclass "
                             "AND NOT granted", uri=su)
            assert len(pid) == 1, pid
            then(p, pid[0])
            out, err = p.communicate(timeout=60)
            return p.returncode, out, err
        finally:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(60)
            release_holder(holder)

    # killed while it counts: the start stays, with no outcome after it
    before = attempts(stack, month, where)
    rc, out, _ = run_held(lambda p, pid: p.send_signal(signal.SIGKILL))
    assert rc == -signal.SIGKILL and out == ""
    assert attempts(stack, month, where) == before + [started]

    # its count cancelled in the database: "failed", the words printed, no report
    before = attempts(stack, month, where)
    rc, out, err = run_held(lambda p, pid: stack.psql("SELECT pg_cancel_backend(%s)" % pid,
                                                      uri=su))
    assert (rc, out) == (1, "") and err.startswith("waygatectl report monthly: "), err
    why = err.strip().split(": ", 1)[1]
    assert why.startswith("the database refused: ") and \
        "canceling statement due to user request" in why, why
    assert attempts(stack, month, where) == before + [started, ("failed", why, "-")]

    # one that counts: its start, then "ok", and the report
    before = attempts(stack, month, where)
    assert json.loads(reports.cli(month))["month"] == month
    assert attempts(stack, month, where) == before + [started, ("ok", started[1], "-")]
