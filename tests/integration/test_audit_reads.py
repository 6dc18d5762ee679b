"""Reads that release personal data are audit records committed first, and CLI actions are audit
records in their own transaction (issue 8; Art. 31, 33, 37).

Reveal: a "reveal" record (object "<record id>:<field>", purpose the reason) in this gateway's
chain commits before the value is sent; audit_seq is its sequence number. Search by phone or ID
number: a "search.phone" / "search.id_number" record (object the hex of the blind index, count
the rows sent) commits before the first row. Fail closed: with the gateway role's INSERT on
audit_record revoked, a Reveal fails UNAVAILABLE without its value and a Search by phone fails
UNAVAILABLE without a row.

Bulk threshold: a Search key selecting more than [compliance] bulk_threshold (20) records the
caller may see is refused FAILED_PRECONDITION before any row, pointing to Compliance.RequestBulk;
exactly 20 is served, and a record above the caller's level counts for nothing.

CLI: routes add/remove, segments issue, principals add/disable, accounts create/disable and
keys rotate each append a record to the chain 'ctl'; with the admin role's INSERT on
audit_record revoked, the action is not done."""

import os
import re
import shutil
import subprocess
import tempfile

import grpc
import pytest

from conftest import wait_for
from query_data import new_waybill, refusal, reveal, search, submit
import waygate_proto

GW_ROLE = "waygate_gateway"
ADMIN_ROLE = "waygate_admin"
# the columns the schema (sql/008_audit.sql) lets the two roles insert
NOT_RECORDED = (grpc.StatusCode.UNAVAILABLE,
                "the access record could not be written, so nothing was released")
BULK_MSG = ("phone: selects more than 20 records: a selection that large is a bulk operation, "
            "requested and approved through Compliance.RequestBulk (Art. 37)")


def record(stack, where):
    """The audit records matching an SQL condition, as dicts (newest first)."""
    cols = ["chain", "seq", "actor", "role", "peer", "cert", "branch", "action", "object",
            "count", "purpose", "outcome", "detail", "confidential"]
    rows = stack.psql("SELECT %s FROM audit_record WHERE %s ORDER BY recorded_at DESC, seq DESC"
                      % (", ".join("coalesce(%s::text, '')" % c for c in cols), where))
    return [dict(zip(cols, r.split("|"))) for r in rows]


def submit_batch(stack, waybills):
    pb = stack.pb
    r = waygate_proto.unary(stack.channel("courier_a"), "/waygate.v1.WaybillIntake/SubmitBatch",
                            pb.intake.SubmitBatchRequest(waybills=waybills),
                            pb.intake.SubmitBatchResponse, timeout=60)
    assert len(r.results) == len(waybills)
    return [x.id for x in r.results]


def stream_rows(stack, principal, **kw):
    """(rows received, RpcError or None) of one Search: the rows that arrived before an error."""
    rows = []
    req = stack.pb.query.SearchRequest(**kw)
    ch = stack.channel(principal)
    try:
        for v in waygate_proto.stream(ch, "/waygate.v1.WaybillQuery/Search", req,
                                      stack.pb.common.WaybillView):
            rows.append(v)
    except grpc.RpcError as e:
        return rows, e
    return rows, None


@pytest.fixture(scope="module")
def delivered(stack):
    """A waybill of branch a bound for 320102, which branch b delivers (courier_b reveals)."""
    w = new_waybill(stack, "a", dest="320102")
    return w, submit(stack, w)


@pytest.fixture
def fresh_quota(stack):
    stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")
    yield
    stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")


# --- Reveal ----------------------------------------------------------------------------------------

def test_reveal_record_committed_with_its_seq(stack, delivered, fresh_quota):
    w, wid = delivered
    r = reveal(stack, "courier_b", w.waybill_no, "recipient.phone", reason="parcel at door 3")
    assert r.value == w.recipient.phone
    assert r.audit_seq > 0
    # the stack's gateway's chain: the trail holds other gateways' chains of as many records
    recs = record(stack, "chain = '%s' AND seq = %d AND action = 'reveal'"
                  % (stack.chain(), r.audit_seq))
    assert len(recs) == 1, recs
    rec = recs[0]
    assert (rec["actor"], rec["role"], rec["branch"], rec["cert"], rec["object"], rec["count"],
            rec["purpose"], rec["outcome"], rec["confidential"]) == \
        ("courier_b", "courier", "b", "courier_b", "%s:recipient.phone" % wid, "1",
         "parcel at door 3", "ok", "false")
    assert rec["peer"] != ""
    # the quota ledger keeps its row too (the quota counts it)
    assert stack.psql("SELECT count(*) FROM reveal_log WHERE quota_key = 'cert:courier_b'") == \
        ["1"]
    whole = "\n".join(stack.psql("SELECT row_to_json(a)::text FROM audit_record a"))
    assert w.recipient.phone not in whole


def test_reveal_over_quota_recorded_as_refused(stack, delivered, fresh_quota):
    w, wid = delivered
    stack.psql("INSERT INTO reveal_log (quota_key, principal, role, branch, record_id, field, "
               "reason) SELECT 'cert:courier_b', 'courier_b', 'courier', 'b', '%s', "
               "'recipient.phone', 'filler' FROM generate_series(1, 20)" % wid)
    code, _ = refusal(lambda: reveal(stack, "courier_b", w.waybill_no, "recipient.phone"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert wait_for(lambda: record(stack, "action = 'reveal' AND outcome = 'refused' AND "
                                          "object = '%s:recipient.phone'" % wid), 20)


# --- Search ----------------------------------------------------------------------------------------

def test_search_by_phone_and_id_number_recorded_with_count(stack):
    ws = [new_waybill(stack, "a", sender_n=901) for _ in range(3)]
    ids = submit_batch(stack, ws)
    phone_hex, id_hex = stack.psql(
        "SELECT encode(sender_phone_bidx, 'hex') || '|' || encode(sender_id_bidx, 'hex') "
        "FROM waybill WHERE id = '%s'" % ids[0])[0].split("|")
    rows = search(stack, "branch_a", phone=ws[0].sender.phone)
    assert len(rows) == 3
    recs = record(stack, "action = 'search.phone' AND object = '%s'" % phone_hex)
    assert len(recs) == 1 and recs[0]["count"] == "3" and recs[0]["outcome"] == "ok", recs
    assert (recs[0]["actor"], recs[0]["branch"]) == ("branch_a", "a")
    # a smaller page: the count is the rows sent
    assert len(search(stack, "branch_a", id_number=ws[0].sender.id_number, limit=2)) == 2
    recs = record(stack, "action = 'search.id_number' AND object = '%s'" % id_hex)
    assert len(recs) == 1 and recs[0]["count"] == "2", recs
    # a waybill-number search is not a search by a person's key: no record
    searches = "SELECT count(*) FROM audit_record WHERE action LIKE 'search.%'"
    before = stack.psql(searches)
    assert len(search(stack, "branch_a", waybill_no=ws[0].waybill_no)) == 1
    assert stack.psql(searches) == before
    whole = "\n".join(stack.psql("SELECT row_to_json(a)::text FROM audit_record a"))
    assert ws[0].sender.phone not in whole and ws[0].sender.id_number not in whole


def test_search_over_bulk_threshold_refused_before_any_row(stack):
    at = [new_waybill(stack, "a", sender_n=902) for _ in range(20)]
    submit_batch(stack, at)
    # exactly the threshold: served, in pages as usual
    rows, err = stream_rows(stack, "branch_a", phone=at[0].sender.phone, limit=100)
    assert err is None and len(rows) == 20
    page, err = stream_rows(stack, "branch_a", phone=at[0].sender.phone, limit=5)
    assert err is None and len(page) == 5
    rest, err = stream_rows(stack, "branch_a", phone=at[0].sender.phone, limit=100,
                            continuation=page[-1].continuation)
    assert err is None and len(rest) == 15
    # one more: refused before any row, whatever the page size
    submit(stack, new_waybill(stack, "a", sender_n=902))
    for limit in (0, 1, 100):
        rows, err = stream_rows(stack, "branch_a", phone=at[0].sender.phone, limit=limit)
        assert rows == [] and err is not None
        assert (err.code(), err.details()) == (grpc.StatusCode.FAILED_PRECONDITION, BULK_MSG)
    phone_hex = stack.psql("SELECT encode(sender_phone_bidx, 'hex') FROM waybill w WHERE "
                           "w.sender_phone_bidx IN (SELECT sender_phone_bidx FROM waybill "
                           "GROUP BY 1 HAVING count(*) = 21) LIMIT 1")[0]
    assert wait_for(lambda: len(record(stack, "action = 'search.phone' AND object = '%s' AND "
                                              "outcome = 'refused'" % phone_hex)) == 3, 20)


def test_search_bulk_threshold_counts_only_records_the_caller_may_see(stack):
    """Art. 37 and Parts 1, 2, 4: a record above the caller's `[levels]` value does not exist for
    it, so it counts for nothing against the bulk threshold. Customer service (unclassified only)
    gets exactly the 20 unclassified waybills of one phone, with 秘密 ones of that phone mixed
    in among them, as if they were not there: served, in pages as usual. Counted, the hidden
    ones would turn this into "selects more than 20 records", telling the caller a record it may
    not see exists; fetched among the threshold + 1 rows the first page counts, they would take
    the places of visible ones and let a 21st visible record through: refused as before."""
    def secret():
        w = new_waybill(stack, "a", sender_n=905)
        w.security_level = stack.pb.common.SECURITY_LEVEL_SECRET
        submit(stack, w)
        return w

    plain = []
    for i in range(20):  # oldest first; a 秘密 one after every fifth
        plain.append(new_waybill(stack, "a", sender_n=905))
        submit(stack, plain[-1])
        if i % 5 == 2:
            secret()
    phone = plain[0].sender.phone
    want = sorted(w.waybill_no for w in plain)
    for limit in (0, 20, 100):
        rows, err = stream_rows(stack, "cs_a", phone=phone, limit=limit)
        assert err is None, (err.code(), err.details())
        assert sorted(v.waybill.waybill_no for v in rows) == want
    page, err = stream_rows(stack, "cs_a", phone=phone, limit=5)
    assert err is None and len(page) == 5
    rest, err = stream_rows(stack, "cs_a", phone=phone, limit=100,
                            continuation=page[-1].continuation)
    assert err is None
    assert sorted(v.waybill.waybill_no for v in page + rest) == want
    # the branch clerk (up to 秘密) sees all 24: more than the threshold
    rows, err = stream_rows(stack, "branch_a", phone=phone)
    assert rows == [] and (err.code(), err.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                          BULK_MSG)
    # a 21st unclassified one, between 秘密 ones: refused before any row
    plain.append(new_waybill(stack, "a", sender_n=905))
    submit(stack, plain[-1])
    secret()
    for limit in (0, 1, 100):
        rows, err = stream_rows(stack, "cs_a", phone=phone, limit=limit)
        assert rows == [] and err is not None
        assert (err.code(), err.details()) == (grpc.StatusCode.FAILED_PRECONDITION, BULK_MSG)


# --- fail closed -----------------------------------------------------------------------------------

@pytest.fixture
def audit_unwritable(stack):
    """The gateway's role loses INSERT on audit_record for the test (restored after)."""
    with stack.audit_insert_revoked(GW_ROLE):
        yield


def test_reveal_fails_closed_without_the_audit_insert(stack, delivered, fresh_quota,
                                                      audit_unwritable):
    w, _ = delivered
    err = None
    try:
        r = reveal(stack, "courier_b", w.waybill_no, "recipient.phone")
        pytest.fail("the reveal succeeded without its audit record: %r" % r.value)
    except grpc.RpcError as e:
        err = e
    assert (err.code(), err.details()) == NOT_RECORDED
    assert w.recipient.phone not in str(err.trailing_metadata() or "")


def test_search_by_phone_fails_closed_without_a_row(stack, audit_unwritable):
    ws = [new_waybill(stack, "a", sender_n=903) for _ in range(2)]
    submit_batch(stack, ws)
    rows, err = stream_rows(stack, "branch_a", phone=ws[0].sender.phone)
    assert rows == [] and err is not None
    assert (err.code(), err.details()) == NOT_RECORDED
    rows, err = stream_rows(stack, "branch_a", id_number=ws[0].sender.id_number)
    assert rows == [] and (err.code(), err.details()) == NOT_RECORDED


def test_reads_work_again_once_the_insert_is_back(stack, delivered, fresh_quota):
    w, _ = delivered
    assert reveal(stack, "courier_b", w.waybill_no, "recipient.phone").value == w.recipient.phone


# --- the CLI -----------------------------------------------------------------------------------------

def ctl(stack, *args, input=None):
    r = stack.ctl(*args, "--db", stack.pguri, input=input)
    return r


def ctl_records(stack, action, obj):
    return record(stack, "chain = 'ctl' AND action = '%s' AND object = '%s'" % (action, obj))


def test_cli_actions_are_audit_records(stack):
    # the dev stack's own set-up: the first security admin by `accounts bootstrap`
    boot = ctl_records(stack, "account.create", stack.account("secadmin")[0])
    assert [x["outcome"] for x in boot] == ["ok"], boot
    r = ctl(stack, "routes", "add", "329901", "a", "--by", "auditor-test")
    assert r.returncode == 0, r.stderr
    rec = ctl_records(stack, "route.add", "329901")
    assert len(rec) == 1 and rec[0]["actor"] == "auditor-test" and \
        rec[0]["detail"] == "branch a" and rec[0]["peer"] == "local", rec
    r = ctl(stack, "routes", "remove", "329901", "--by", "auditor-test")
    assert r.returncode == 0, r.stderr
    assert len(ctl_records(stack, "route.remove", "329901")) == 1

    r = ctl(stack, "segments", "issue", "--branch", "zq", "--segment", "ZQ:100-199", "--by", "segs")
    assert r.returncode == 0, r.stderr
    rec = ctl_records(stack, "segment.issue", "zq")
    assert len(rec) == 1 and rec[0]["outcome"] == "ok" and rec[0]["detail"] == "ZQ:100-199", rec
    # an overlap is refused, and that is recorded too
    r = ctl(stack, "segments", "issue", "--branch", "zq", "--segment", "ZQ:150-250", "--by", "segs")
    assert r.returncode != 0
    assert [x["outcome"] for x in ctl_records(stack, "segment.issue", "zq")] == ["refused", "ok"]

    r = ctl(stack, "accounts", "create", "audit_probe", "--role", "compliance_auditor",
            "--person", "audit-probe-person", "--actor", "acct-test")
    assert r.returncode == 0, r.stderr
    rec = ctl_records(stack, "account.create", "audit_probe")
    assert len(rec) == 1 and rec[0]["actor"] == "acct-test", rec
    assert r.stdout.strip() not in "\n".join(
        stack.psql("SELECT row_to_json(a)::text FROM audit_record a"))  # never the password
    r = ctl(stack, "accounts", "disable", "audit_probe", "--reason", "test over",
            "--actor", "acct-test")
    assert r.returncode == 0, r.stderr
    assert len(ctl_records(stack, "account.disable", "audit_probe")) == 1

    tmp = tempfile.mkdtemp(dir=stack.dir)
    cert = os.path.join(tmp, "probe.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", os.path.join(tmp, "k.pem"),
                    "-out", cert, "-days", "1", "-subj", "/CN=audit_probe_dev/OU=courier/L=a"],
                   check=True, capture_output=True)
    r = ctl(stack, "principals", "add", "audit_probe_dev", "--cert", cert, "--role", "courier",
            "--branch", "a", "--actor", "pr-test")
    assert r.returncode == 0, r.stderr
    rec = ctl_records(stack, "principal.add", "audit_probe_dev")
    assert len(rec) == 1 and rec[0]["outcome"] == "ok" and rec[0]["actor"] == "pr-test", rec
    r = ctl(stack, "principals", "disable", "audit_probe_dev", "--actor", "pr-test")
    assert r.returncode == 0, r.stderr
    assert len(ctl_records(stack, "principal.disable", "audit_probe_dev")) == 1

    keyring = os.path.join(tmp, "keyring")
    shutil.copy(stack.env["WAYGATE_KEYRING"], keyring)
    os.chmod(keyring, 0o600)
    submit(stack, new_waybill(stack, "a"))  # a record under the current version
    st = ctl(stack, "keys", "status", "--keyring", keyring)
    current = re.search(r"current KEK version: (\d+)", st.stdout).group(1)  # the records' version
    r = ctl(stack, "keys", "rotate", "--keyring", keyring)
    assert r.returncode == 0, r.stderr
    rec = ctl_records(stack, "key.rotate", keyring)
    assert len(rec) == 1 and rec[0]["detail"].startswith("added KEK version"), rec

    # retiring the version the records still use fails: recorded as failed
    r = ctl(stack, "keys", "retire", "--keyring", keyring, "--version", current)
    assert r.returncode != 0
    assert [x["outcome"] for x in ctl_records(stack, "key.retire", keyring)] == ["failed"]
    # the copy's new version is its own (sql/036 registered it): forgotten, so that the stack's
    # keyring may rotate to that number later (the owner's delete; no login role may)
    with open(keyring) as f:
        suite = 1 if re.search(r"(?m)^kek ", f.read()) else 2
    stack.psql("DELETE FROM kek_version WHERE suite = %d AND version > %s" % (suite, current))
    fresh = os.path.join(tmp, "fresh-keyring")
    r = ctl(stack, "keys", "init", "--keyring", fresh)
    assert r.returncode == 0, r.stderr
    assert [x["outcome"] for x in ctl_records(stack, "key.init", fresh)] == ["ok"]


def test_cli_action_not_done_without_its_record(stack):
    with stack.audit_insert_revoked(ADMIN_ROLE):
        r = ctl(stack, "routes", "add", "329902", "b", "--by", "auditor-test")
        assert r.returncode != 0
        assert "audit record could not be written" in r.stderr
        r2 = ctl(stack, "segments", "issue", "--branch", "zr", "--segment", "ZR:1-9")
        assert r2.returncode != 0
    assert stack.psql("SELECT count(*) FROM route WHERE region_code = '329902'") == ["0"]
    assert stack.psql("SELECT count(*) FROM segment WHERE branch = 'zr'") == ["0"]
    assert ctl_records(stack, "route.add", "329902") == []
