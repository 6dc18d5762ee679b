"""WaybillQuery.Search and Reveal, and the scraping throttle (issue 7; Art. 31, 34, 35).

Search: exactly one key (phone, ID number, waybill number through their blind indexes, or a
pickup day) of those the caller's role may search by (the policy's [search.<role>]: customer
service by phone or number only), within the caller's scope, newest first, one page at most the
policy's search_limit_max (100 built in), each view carrying a continuation that resumes after
it; an altered continuation, or one of another search, is INVALID_ARGUMENT. Searches by phone or
ID number are logged without the value.

Reveal: one field, a reason required, the role's permission (a courier: the recipient's phone of
a waybill its branch delivers), a reveal_log row with who/where/why and never the value, written
before the value is sent; a quota per hour (20 built in) past which RESOURCE_EXHAUSTED and a
'reveal_quota' incident. A refused Reveal's record, and a Search's over the bulk threshold, are
bounded as the Admin refusals are (refusals.h): per window the first 8 of a kind alone (and as
many reveal_quota incidents at most), the rest counted into one record.

Throttle: distinct waybills or phones looked up per principal in a window (200 per 600 s built
in), shared by the principal's connections on one gateway: the 201st is RESOURCE_EXHAUSTED and
one 'bulk_scraping' incident is recorded per window. It runs on a second gateway process of its
own (same database), so the session's gateway keeps a fresh table."""

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess

import grpc
import pytest

from conftest import BUILD, ExtraGateway, wait_for
from query_data import (PARTY_BASE, PICKUP_DAY, REVEAL, SEARCH, get, new_waybill, nonexistent,
                        refusal, reveal, search, submit, number_in, incidents_written)
from test_intake import person_id
from test_metrics import scrape, value as metric
import waygate_proto

ROWS_READ = "waygate_waybill_rows_read_total"

SENDER = 7  # the shared sender of the paging set
PAGING_N = 5


@pytest.fixture(scope="module")
def paging(stack):
    """PAGING_N waybills of branch a from one sender, submitted one by one (ids in order)."""
    out = []
    for _ in range(PAGING_N):
        w = new_waybill(stack, "a", sender_n=SENDER)
        out.append((w, submit(stack, w)))
    return out


def ids(views):
    return [v.id for v in views]


def test_search_by_phone_pages_with_continuation(stack, paging):
    phone = paging[0][0].sender.phone
    full = search(stack, "branch_a", phone=phone, limit=50)
    assert sorted(ids(full)) == sorted(i for _, i in paging)
    # newest first (accepted_at, then id, descending)
    keys = [(v.accepted_at, v.id) for v in full]
    assert keys == sorted(keys, reverse=True)
    pages, cont = [], ""
    while True:
        page = search(stack, "branch_a", phone=phone, limit=2, continuation=cont)
        assert len(page) <= 2
        if not page:
            break
        pages += page
        cont = page[-1].continuation
        assert cont
    assert ids(pages) == ids(full)
    # the view is Get's rendering: masked, with the redacted fields listed
    v = full[0]
    assert v.waybill.sender.phone != phone
    assert "sender.phone" in v.redacted_fields


def test_search_by_id_number_and_number_and_day(stack, paging):
    idn = paging[0][0].sender.id_number
    assert sorted(ids(search(stack, "branch_a", id_number=idn))) == sorted(i for _, i in paging)
    # normalised as at intake: a lower-case check character finds the same
    if idn.endswith("X"):
        assert sorted(ids(search(stack, "branch_a", id_number=idn.lower()))) == \
            sorted(i for _, i in paging)
    w, wid = paging[2]
    assert ids(search(stack, "branch_a", waybill_no=w.waybill_no)) == [wid]
    # the day: served while it selects at most the bulk threshold (20), else refused (issue 8)
    n_day = int(stack.psql("SELECT count(*) FROM waybill WHERE pickup_day = '%s' AND "
                           "(origin_branch = 'a' OR dest_region_code IN (SELECT region_code "
                           "FROM route WHERE branch = 'a'))" % PICKUP_DAY)[0])
    if n_day > 20:
        code, _ = refusal(lambda: search(stack, "branch_a", pickup_day=PICKUP_DAY, limit=100))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        return
    day = ids(search(stack, "branch_a", pickup_day=PICKUP_DAY, limit=100))
    assert set(i for _, i in paging) <= set(day)
    assert ids(search(stack, "branch_a", pickup_day=PICKUP_DAY, branch="a", limit=100)) == day


def test_search_refusals(stack, paging):
    code, msg = refusal(lambda: search(stack, "branch_a"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert msg == "exactly one of phone, id_number, waybill_no, pickup_day must be set"
    code, msg = refusal(lambda: search(stack, "branch_a", pickup_day="2026-02-30"))
    assert (code, msg) == (grpc.StatusCode.INVALID_ARGUMENT,
                           "pickup_day: must be a calendar date YYYY-MM-DD")
    code, msg = refusal(lambda: search(stack, "branch_a", phone="12345"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("phone: ")


@pytest.mark.parametrize("key", ["id_number", "pickup_day"])
def test_customer_service_searches_only_by_phone_or_number(stack, paging, key):
    """docs/roles.md, the policy's [search.<role>] keys: customer service searches by phone or
    waybill number. Its view has no ID numbers, so a Search by ID number (which of the branch's
    waybills an ID-number holder sent: a lookup by a field the role may not see) is not its to
    make, nor is a pickup day's listing of the branch (the branch clerk's). Both are refused
    PERMISSION_DENIED naming the key and the rule, before any row is read; its own keys find the
    same waybills, and the clerk may search by both."""
    w, wid = paging[0]
    value = w.sender.id_number if key == "id_number" else PICKUP_DAY
    before, _ = scrape(stack)
    code, msg = refusal(lambda: search(stack, "cs_a", **{key: value}))
    after, _ = scrape(stack)
    assert (code, msg) == (grpc.StatusCode.PERMISSION_DENIED,
                           "%s: the caller's role may not search by this key (the policy's "
                           "[search.<role>] keys; least privilege, Art. 34)" % key)
    assert metric(after, ROWS_READ) == metric(before, ROWS_READ)
    # what the role may: by phone, by number
    assert wid in ids(search(stack, "cs_a", phone=w.sender.phone))
    assert ids(search(stack, "cs_a", waybill_no=w.waybill_no)) == [wid]
    # the clerk's listing and look-up: not refused for the key (served, or a day's selection
    # over the bulk threshold)
    try:
        search(stack, "branch_a", **{key: value})
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())


def party_waybill(stack, k):
    """A waybill of branch a whose recipient, too, carries an ID number (k: unique in this
    module's parties, from 30_000); (waybill, its id)."""
    w = new_waybill(stack, "a")
    w.recipient.id_type = stack.pb.common.ID_TYPE_RESIDENT_CARD
    w.recipient.id_number = person_id(PARTY_BASE + 2 * k + 1, male=False)
    return w, submit(stack, w)


def test_search_by_a_person_matches_only_the_sides_the_view_shows(stack):
    """docs/roles.md, docs/policy.md: a Search by phone or ID number matches a waybill's sender or
    recipient only when the caller's view does not omit that side's field (the policy's
    gw_policy_search_sides). The branch clerk's view shows sender.id_number masked and omits
    recipient.id_number: its Search by a waybill's recipient's ID number is an empty page, exactly
    as for a number never used, and by its sender's finds it. A policy whose clerk view shows
    recipient.id_number masked (and omits recipient.phone) finds it by the recipient's ID number
    (and no longer by the recipient's phone, still by the sender's); customer service, given
    id_number in its keys while its view omits both ID numbers, is refused the key as for one
    not in its keys, before any row is read."""
    from conftest import ExtraGateway
    from test_views import change_cell, default_text, write_policy
    w, wid = party_waybill(stack, 30_000)
    never = person_id(PARTY_BASE + 2 * 30_001 + 1, male=False)
    assert ids(search(stack, "branch_a", id_number=w.sender.id_number)) == [wid]
    assert search(stack, "branch_a", id_number=w.recipient.id_number) == []
    assert search(stack, "branch_a", id_number=never) == []
    assert ids(search(stack, "branch_a", phone=w.recipient.phone)) == [wid]
    text = change_cell(default_text(), "branch_clerk", "recipient.id_number", "mask")
    text = change_cell(text, "branch_clerk", "recipient.phone", "omit")
    assert text.count("\nkeys = phone, waybill_no\n") == 1
    text = text.replace("\nkeys = phone, waybill_no\n", "\nkeys = phone, id_number, waybill_no\n")
    policy = os.path.join(stack.dir, "policy_recipient_id.conf")
    write_policy(policy, text)
    gw = ExtraGateway(stack, "recipientid",
                      edit=lambda conf: conf + "\n[policy]\nfile = %s\n" % policy)
    try:
        def on(principal, **kw):
            return list(waygate_proto.stream(stack.channel(principal, addr=gw.addr), SEARCH,
                                             stack.pb.query.SearchRequest(**kw),
                                             stack.pb.common.WaybillView))
        found = on("branch_a", id_number=w.recipient.id_number)
        assert ids(found) == [wid]
        shown = found[0].waybill.recipient.id_number
        assert shown and shown != w.recipient.id_number
        assert on("branch_a", id_number=never) == []
        assert on("branch_a", phone=w.recipient.phone) == []
        assert ids(on("branch_a", phone=w.sender.phone)) == [wid]
        code, msg = refusal(lambda: on("cs_a", id_number=w.sender.id_number))
        assert (code, msg) == (grpc.StatusCode.PERMISSION_DENIED,
                               "id_number: the caller's role may not search by this key (the "
                               "policy's [search.<role>] keys; least privilege, Art. 34)")
    finally:
        gw.close()


def test_tampered_or_foreign_continuation_refused(stack, paging):
    phone = paging[0][0].sender.phone
    cont = search(stack, "branch_a", phone=phone, limit=1)[0].continuation
    flipped = cont[:20] + ("0" if cont[20] != "0" else "1") + cont[21:]
    want = (grpc.StatusCode.INVALID_ARGUMENT, "continuation: is not a continuation of this search")
    assert refusal(lambda: search(stack, "branch_a", phone=phone, continuation=flipped)) == want
    assert refusal(lambda: search(stack, "branch_a", phone=phone, continuation="zz")) == want
    # a genuine continuation, but of another search
    idn = paging[0][0].sender.id_number
    assert refusal(lambda: search(stack, "branch_a", id_number=idn, continuation=cont)) == want
    # the untouched one is accepted
    assert len(search(stack, "branch_a", phone=phone, limit=1, continuation=cont)) == 1


def continuation_refused_across(stack, paging, name, policy_text):
    """A continuation of the stack's gateway is refused by a second gateway on the same database
    and keys that runs policy_text, as another search's, and the reverse; each gateway's own
    continuations work on it."""
    from conftest import ExtraGateway
    from test_views import write_policy
    phone = paging[0][0].sender.phone
    want = (grpc.StatusCode.INVALID_ARGUMENT, "continuation: is not a continuation of this search")
    first = search(stack, "branch_a", phone=phone, limit=1)
    assert len(first) == 1 and first[0].continuation
    policy = os.path.join(stack.dir, "policy_%s.conf" % name)
    write_policy(policy, policy_text)
    gw = ExtraGateway(stack, name, edit=lambda conf: conf + "\n[policy]\nfile = %s\n" % policy)
    try:
        def on(**kw):
            return list(waygate_proto.stream(stack.channel("branch_a", addr=gw.addr), SEARCH,
                                             stack.pb.query.SearchRequest(**kw),
                                             stack.pb.common.WaybillView))
        assert refusal(lambda: on(phone=phone, limit=1, continuation=first[0].continuation)) == want
        own = on(phone=phone, limit=1)
        assert len(own) == 1 and own[0].continuation
        assert len(on(phone=phone, limit=1, continuation=own[0].continuation)) == 1
        assert refusal(lambda: search(stack, "branch_a", phone=phone, limit=1,
                                      continuation=own[0].continuation)) == want
    finally:
        gw.close()
    assert len(search(stack, "branch_a", phone=phone, limit=1,
                      continuation=first[0].continuation)) == 1


def test_a_continuation_ends_where_the_policy_changed_the_sides_its_key_matches(stack, paging):
    """A continuation is bound to the sides of a waybill its person's key matches (the policy's,
    from the caller's view: gw_policy_search_sides), not only to the caller, key and branch: a
    page after a policy change that narrowed them (here a second gateway on the same database and
    keys whose clerk view omits recipient.phone, as a reload would) is refused as another search's
    continuation, instead of going on matching the side the view no longer shows."""
    from test_views import change_cell, default_text
    continuation_refused_across(stack, paging, "narrowed",
                                change_cell(default_text(), "branch_clerk", "recipient.phone", "omit"))


def test_a_continuation_ends_where_the_policy_raised_the_callers_level(stack, paging):
    """A continuation is bound to the highest security level the caller's role may see: its
    first page counted against the bulk threshold only the records up to that level, and later
    pages are not counted, so after a policy change that raised the level (a second gateway whose
    [levels] gives the clerk 2, as a reload would) going on would walk records no first page
    counted (Art. 37). It is refused as another search's continuation."""
    from test_views import default_text
    text = default_text()
    assert text.count("\nbranch_clerk = 1\n") == 1
    continuation_refused_across(stack, paging, "raised",
                                text.replace("\nbranch_clerk = 1\n", "\nbranch_clerk = 2\n"))


def test_search_limit_capped_by_policy(stack):
    pb = stack.pb
    batch = [new_waybill(stack, "a") for _ in range(105)]
    r = waygate_proto.unary(stack.channel("courier_a"), "/waygate.v1.WaybillIntake/SubmitBatch",
                            pb.intake.SubmitBatchRequest(waybills=batch),
                            pb.intake.SubmitBatchResponse, timeout=60)
    assert len(r.results) == 105
    # more than the bulk threshold (20): refused before any row (issue 8, Art. 37) ...
    code, msg = refusal(lambda: search(stack, "branch_a", pickup_day=PICKUP_DAY, limit=1000))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "Compliance.RequestBulk" in msg
    # ... and with the threshold raised, the page is capped by the policy
    pb_conf = "\n[compliance]\nbulk_threshold = 500\n"
    with second_gateway_of(stack, pb_conf) as addr:
        ch = stack.channel("branch_a", addr=addr)
        page = list(waygate_proto.stream(ch, "/waygate.v1.WaybillQuery/Search",
                                         pb.query.SearchRequest(pickup_day=PICKUP_DAY, limit=1000),
                                         pb.common.WaybillView))
    assert len(page) == 100  # search_limit_max of the built-in policy


def test_phone_search_logged_without_value(stack, paging):
    phone = paging[1][0].sender.phone
    search(stack, "branch_a", phone=phone)
    lines = stack.log_lines()
    assert any("search by phone within branch a" in l for l in lines)
    assert not any(phone in l for l in lines)


def test_search_leaves_out_a_row_that_fails_authentication(stack, paging):
    """A row altered in SQL is left out of the page and recorded as an incident; the others are
    still served (one altered row must not hide a branch's other waybills)."""
    phone = paging[0][0].sender.phone
    bad = paging[4][1]
    stack.psql("UPDATE waybill SET weight_grams = weight_grams + 1 WHERE id = '%s'" % bad)
    try:
        got = ids(search(stack, "branch_a", phone=phone, limit=50))
        assert sorted(got) == sorted(i for _, i in paging[:4])
        assert wait_for(lambda: "decryption_failure" in stack.psql(
            "SELECT kind FROM incident WHERE record_id = '%s'" % bad), 20)
    finally:
        stack.psql("UPDATE waybill SET weight_grams = weight_grams - 1 WHERE id = '%s'" % bad)
    assert bad in ids(search(stack, "branch_a", phone=phone, limit=50))


# --- Reveal -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def delivered(stack):
    """A waybill of branch a bound for 320102, which branch b delivers."""
    w = new_waybill(stack, "a", dest="320102")
    return w, submit(stack, w)


@pytest.mark.parametrize("reason,rule", [
    ("   ", "is required"),
    ("\x1b[2J\x1b[31mcleared", "must not contain control characters"),
    ("checked\u202egnp.exe", "must not contain control characters"),
])
def test_reveal_reason_is_free_text_by_the_one_rule(stack, delivered, reason, rule):
    """A Reveal's reason is the audit record's purpose and a column of reveal_log: held to the one
    rule of a free text a person types and the gateway stores (core/text.h's gw_text_field, as a
    bulk purpose or a DisableAccount reason is): not blank, no control or bidirectional
    characters. Refused INVALID_ARGUMENT naming reason, and nothing is released or logged."""
    w, _ = delivered
    code, details = refusal(lambda: reveal(stack, "courier_b", w.waybill_no, "recipient.phone",
                                           reason=reason))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("reason: " + rule), \
        (code, details)
    assert stack.psql("SELECT count(*) FROM reveal_log WHERE reason = %s" %
                      "'" + reason.replace("'", "''") + "'") == ["0"]


def test_reveal_refusals(stack, delivered):
    w, _ = delivered
    assert refusal(lambda: reveal(stack, "courier_b", w.waybill_no, "recipient.phone",
                                  reason="")) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "reason: is required")
    assert refusal(lambda: reveal(stack, "courier_b", w.waybill_no, "recipient.shoe_size")) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "field: is not a field path of a waybill")
    denied = (grpc.StatusCode.PERMISSION_DENIED,
              "field: the caller's role may not reveal this field of this waybill "
              "(least privilege, Art. 34)")
    # a courier: not another field
    assert refusal(lambda: reveal(stack, "courier_b", w.waybill_no, "sender.phone")) == denied
    # a courier of the origin branch, which does not deliver it: the same refusal
    assert refusal(lambda: reveal(stack, "courier_a", w.waybill_no, "recipient.phone")) == denied


def test_reveal_recorded_before_release_without_value(stack, delivered):
    w, wid = delivered
    before = int(stack.psql("SELECT count(*) FROM reveal_log")[0])
    r = reveal(stack, "courier_b", w.waybill_no, "recipient.phone", reason="parcel at door 3")
    assert r.field == "recipient.phone"
    assert r.value == w.recipient.phone
    assert r.audit_seq > 0
    assert int(stack.psql("SELECT count(*) FROM reveal_log")[0]) == before + 1
    # audit_seq is the reveal's audit record (test_audit_reads.py); the quota ledger's row:
    row = stack.psql("SELECT principal, role, branch, cert, peer IS NOT NULL, record_id, field, "
                     "reason, quota_key FROM reveal_log WHERE record_id = '%s' AND "
                     "reason = 'parcel at door 3' ORDER BY id DESC LIMIT 1" % wid)
    assert row == ["courier_b|courier|b|courier_b|t|%s|recipient.phone|parcel at door 3|"
                   "cert:courier_b" % wid]
    whole = "\n".join(stack.psql("SELECT row_to_json(l)::text FROM reveal_log l"))
    assert w.recipient.phone not in whole


def test_reveal_not_recorded_releases_nothing(stack, delivered):
    """Fail closed: when the reveal_log row cannot be written, the value is not sent."""
    w, _ = delivered
    stack.psql("ALTER TABLE reveal_log ADD CONSTRAINT test_block CHECK (false) NOT VALID")
    try:
        assert refusal(lambda: reveal(stack, "courier_b", w.waybill_no, "recipient.phone")) == \
            (grpc.StatusCode.UNAVAILABLE,
             "the access record could not be written, so nothing was released")
    finally:
        stack.psql("ALTER TABLE reveal_log DROP CONSTRAINT test_block")
    assert reveal(stack, "courier_b", w.waybill_no, "recipient.phone").value == w.recipient.phone


def test_reveal_quota_exhausted_records_incident(stack, delivered):
    w, _ = delivered
    stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")
    incidents = "SELECT coalesce(sum(count), 0) FROM incident WHERE kind = 'reveal_quota' " \
                "AND principal = 'courier_b'"
    before = int(stack.psql(incidents)[0])
    left = []
    for _ in range(20):
        left.append(reveal(stack, "courier_b", w.waybill_no, "recipient.phone").remaining_quota)
    assert left == list(range(19, -1, -1))
    code, msg = refusal(lambda: reveal(stack, "courier_b", w.waybill_no, "recipient.phone"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert msg == "reveal quota used up (20 in the current period); an incident was recorded"
    assert wait_for(lambda: int(stack.psql(incidents)[0]) == before + 1, 20)
    # nothing was logged for the refused reveal
    assert stack.psql("SELECT count(*) FROM reveal_log WHERE quota_key = 'cert:courier_b'") == \
        ["20"]
    stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")


# --- a flood of refusals: bounded records ------------------------------------------------------

EACH = 8  # GW_REFUSALS_EACH
WINDOW_S = 3600  # the refusal window of the gateway below: longer than any run, so that no window
#                  ends during a flood, however slow the machine; its counting record is written
#                  when the test stops that gateway (SIGTERM: gw_refusals_flush, refusals.h). The
#                  window's own end (its timer) is unit:test_refusals' (window_ends)
EXIT_LINE = ("drained: exiting, 0 incident(s) not written, 0 audit entries not written, "
             "0 counted refusal(s) not recorded")
_refusing_n = itertools.count()


@pytest.fixture
def refusing(stack):
    """A gateway of its own for the test (it stops it) with an hour's refusal window and a bulk
    threshold of 1."""
    gw = ExtraGateway(stack, "q-refuse-%d" % next(_refusing_n), lambda text: text.rstrip("\n") +
                      "\nrefusal_window_s = %d\n[compliance]\nbulk_threshold = 1\n" % WINDOW_S)
    yield gw
    gw.close()


def refusal_records(stack, gw, action):
    """(records alone, records counting others, refusals they count) of action's refusals."""
    return tuple(int(x) for x in stack.psql(
        "SELECT count(*) FILTER (WHERE count = 0), count(*) FILTER (WHERE count > 0), "
        "coalesce(sum(count), 0) FROM audit_record WHERE chain = '%s' AND action = '%s' AND "
        "outcome = 'refused'" % (gw.chain, action))[0].split("|"))


def stop_and_count(stack, gw, action):
    """Within the window: the first EACH of action's refusals recorded alone (polled for: their
    writes are queued) and none counted yet; then gw stops (SIGTERM), which ends the window and
    writes the counting record before it exits, saying nothing was left. Returns
    refusal_records after the stop."""
    assert wait_for(lambda: refusal_records(stack, gw, action)[0] == EACH, 30), \
        refusal_records(stack, gw, action)
    assert refusal_records(stack, gw, action) == (EACH, 0, 0), "counted before the window ended"
    gw.close()
    assert EXIT_LINE in gw.log(), gw.log()[-2000:]
    return refusal_records(stack, gw, action)


def test_a_flood_of_reveals_over_quota_is_counted_not_chained(stack, delivered, refusing):
    """A caller repeating a Reveal over its quota cannot grow the audit trail or the incident
    list at its own pace: within a window the first 8 refusals are recorded alone, each with its
    reveal_quota incident; the rest are counted into one record when the window ends, here when
    the gateway stops (its count the rest: the incidents are bounded, the count is the
    record's). Every call is still refused RESOURCE_EXHAUSTED with the same words."""
    w, _ = delivered
    calls = 6 * EACH
    ch = stack.channel("courier_b", addr=refusing.addr)
    req = stack.pb.query.RevealRequest(waybill_no=w.waybill_no, field="recipient.phone",
                                       reason="customer asked for delivery")
    stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")
    since = stack.psql("SELECT now()")[0]
    incidents = "SELECT count(*), coalesce(sum(count), 0) FROM incident WHERE kind = " \
                "'reveal_quota' AND principal = 'courier_b' AND occurred_at >= '%s'" % since
    try:
        for _ in range(20):
            waygate_proto.unary(ch, REVEAL, req, stack.pb.query.RevealResponse)
        for _ in range(calls):
            assert refusal(lambda: waygate_proto.unary(ch, REVEAL, req,
                                                       stack.pb.query.RevealResponse)) == \
                (grpc.StatusCode.RESOURCE_EXHAUSTED,
                 "reveal quota used up (20 in the current period); an incident was recorded")
        assert stop_and_count(stack, refusing, "reveal") == (EACH, 1, calls - EACH)
        last = stack.psql("SELECT count, purpose, detail, confidential FROM audit_record "
                          "WHERE chain = '%s' AND action = 'reveal' AND outcome = 'refused' AND "
                          "count > 0" % refusing.chain)
        assert last == ["%d|customer asked for delivery|reveal quota: hour [%d such refusals "
                        "within %d s, counted in this record]|f"
                        % (calls - EACH, calls - EACH, WINDOW_S)], last
        # the incidents (written before the gateway exits): one per refusal recorded alone,
        # none for the counted ones
        assert stack.psql(incidents) == ["%d|%d" % (EACH, EACH)], stack.psql(incidents)
        assert stack.psql("SELECT count(*) FROM reveal_log WHERE quota_key = 'cert:courier_b'") \
            == ["20"]
    finally:
        stack.psql("DELETE FROM reveal_log WHERE quota_key = 'cert:courier_b'")


def test_a_flood_of_searches_over_the_bulk_threshold_is_counted_not_chained(stack, paging,
                                                                            refusing):
    """A caller repeating a Search by phone over the bulk threshold (here 1) cannot grow the
    audit trail at its own pace: the first 8 refused search.phone records alone, the rest counted
    into one record when the window ends, here when the gateway stops. Every call is still
    FAILED_PRECONDITION."""
    calls = 6 * EACH
    ch = stack.channel("branch_a", addr=refusing.addr)
    req = stack.pb.query.SearchRequest(phone=paging[0][0].sender.phone)
    for _ in range(calls):
        code, msg = refusal(lambda: list(waygate_proto.stream(ch, SEARCH, req,
                                                              stack.pb.common.WaybillView)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "Compliance.RequestBulk" in msg, \
            (code, msg)
    assert stop_and_count(stack, refusing, "search.phone") == (EACH, 1, calls - EACH)
    last = stack.psql("SELECT detail FROM audit_record WHERE chain = '%s' AND action = "
                      "'search.phone' AND count > 0" % refusing.chain)
    assert last == ["bulk threshold [%d such refusals within %d s, counted in this record]"
                    % (calls - EACH, WINDOW_S)], last


# --- throttle -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def second_gateway_of(stack, extra_conf=""):
    """A second waygated on the stack's database and keys, with a fresh throttle table (and
    extra_conf appended to its configuration)."""
    port = free_port()
    conf = os.path.join(stack.dir, "waygated-second-%d.conf" % port)
    lines, chain = [], "chain = test-second-%d" % port  # each instance its own audit chain
    for line in stack.config_for(port).splitlines():
        if line.strip().startswith("chain") and chain:
            line, chain = chain, None
        lines.append(line)
    if chain:
        lines += ["[audit]", chain]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n" + extra_conf)
    log = open(os.path.join(stack.dir, "waygated-second-%d.log" % port), "ab")
    proc = subprocess.Popen([os.path.join(BUILD, "waygated"), "-c", conf],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    addr = "127.0.0.1:%d" % port
    try:
        assert wait_for(lambda: stack.health("backend", addr=addr) == "SERVING", 30)
        yield addr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def second_gateway(stack):
    with second_gateway_of(stack) as addr:
        yield addr


def test_throttle_across_two_connections_one_incident(stack, second_gateway):
    pb = stack.pb
    addr = second_gateway
    # two connections (a channel of its own subchannel pool each: grpc would share one)
    own = (("grpc.use_local_subchannel_pool", 1),)
    chans = [stack.channel("courier_a", addr=addr, options=own),
             stack.channel("courier_a", addr=addr, options=own)]
    incidents = "SELECT coalesce(sum(count), 0) FROM incident WHERE kind = 'bulk_scraping' " \
                "AND principal = 'courier_a'"
    before = int(stack.psql(incidents)[0])

    def get_on(ch, number):
        return waygate_proto.unary(ch, "/waygate.v1.WaybillQuery/Get",
                                   pb.query.GetRequest(waybill_no=number), pb.common.WaybillView)

    for i in range(200):  # distinct numbers, alternating connections: all allowed
        code, _ = refusal(lambda: get_on(chans[i % 2], nonexistent(stack, "a", 10 + i)))
        assert code == grpc.StatusCode.NOT_FOUND, i
    # a number already looked up in the window is not a new lookup
    assert refusal(lambda: get_on(chans[0], nonexistent(stack, "a", 10)))[0] == \
        grpc.StatusCode.NOT_FOUND
    want = (grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many distinct waybills or phone numbers looked up (at most 200 in the window); "
            "an incident was recorded")
    assert refusal(lambda: get_on(chans[0], nonexistent(stack, "a", 500))) == want
    assert refusal(lambda: get_on(chans[1], nonexistent(stack, "a", 501))) == want
    # Reveal keys count too
    assert refusal(lambda: waygate_proto.unary(
        chans[1], "/waygate.v1.WaybillQuery/Reveal",
        pb.query.RevealRequest(waybill_no=nonexistent(stack, "a", 502), field="recipient.phone",
                               reason="r"), pb.query.RevealResponse)) == want
    # Incidents are written in order: once a later incident of the same gateway is in the
    # table, every earlier one is. A number outside courier_a's segments is one.
    fence = "SELECT coalesce(sum(count), 0) FROM incident WHERE principal = 'courier_a' AND " \
            "kind = 'segment_violation'"
    fenced = int(stack.psql(fence)[0])
    w = new_waybill(stack, "b")
    w.waybill_no = number_in(stack, "b", 900_000)
    assert refusal(lambda: waygate_proto.unary(
        chans[0], "/waygate.v1.WaybillIntake/Submit", pb.intake.SubmitRequest(waybill=w),
        pb.intake.SubmitResponse))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert wait_for(lambda: int(stack.psql(fence)[0]) > fenced, 20)
    assert int(stack.psql(incidents)[0]) == before + 1
    # the session's own gateway keeps its own table: courier_a is not throttled there
    assert refusal(lambda: get(stack, nonexistent(stack, "a", 503), "courier_a"))[0] == \
        grpc.StatusCode.NOT_FOUND



def test_a_full_throttle_table_refuses_new_lookups_with_an_incident_and_a_metric(stack):
    """The throttle's capacity, not a principal's limit ([server] lookup_throttle_keys at its
    least, 1024; courier's lookups_per_window raised far past it so that the table fills before
    the principal's limit, over a day's window so that nothing expires while it fills): 1024
    distinct Gets fill it, each NOT_FOUND; the next new number, of courier_a or of a principal the
    table has not seen (courier_b), is RESOURCE_EXHAUSTED naming the table (not the caller's own
    limit), while a number already counted in the window is still looked up; one throttle_full
    incident for the table's window (severity high, the table's use in its detail), listed to
    the CLI's role; waygate_lookup_throttle_full_total counts each refusal. Its recovery as
    windows expire is unit:test_throttle's (here it would wait on the clock)."""
    from conftest import ExtraGateway, free_port as any_port
    from test_views import default_text, write_policy
    import http.client
    pb = stack.pb
    limits = ("[limits.courier]\nreveals_per_hour = 20\nreveals_per_day = 100\n"
              "lookups_per_window = 200\nlookup_window_s = 600\n")
    text = default_text()
    assert text.count(limits) == 1
    policy = os.path.join(stack.dir, "policy_throttle_full.conf")
    write_policy(policy, text.replace(limits, limits.replace("= 200", "= 1000000").replace(
        "= 600", "= 86400")))
    mport = any_port()
    gw = ExtraGateway(stack, "throttlefull", lambda t: t.replace(
        "[server]\n", "[server]\nlookup_throttle_keys = 1024\nlookup_throttle_principals = 16\n",
        1).replace("[metrics]\n", "[metrics]\nlisten = 127.0.0.1:%d\n" % mport, 1)
        + "\n[policy]\nfile = %s\n" % policy)
    incidents = ("SELECT severity || '|' || principal || '|' || detail FROM cli_incident_list("
                 "NULL, NULL, 100000) WHERE kind = 'throttle_full'")
    before = stack.psql(incidents, uri=stack.pguri)

    def full_total():
        c = http.client.HTTPConnection("127.0.0.1", mport, timeout=60)
        try:
            c.request("GET", "/metrics")
            body = c.getresponse().read().decode()
        finally:
            c.close()
        found = re.search(r"(?m)^waygate_lookup_throttle_full_total (\S+)$", body)
        assert found, body[:300]
        return float(found.group(1))

    chans = {}

    def get_on(principal, number):
        if principal not in chans:
            chans[principal] = stack.channel(principal, addr=gw.addr)
        return waygate_proto.unary(chans[principal],
                                   "/waygate.v1.WaybillQuery/Get",
                                   pb.query.GetRequest(waybill_no=number), pb.common.WaybillView,
                                   timeout=60)

    full = (grpc.StatusCode.RESOURCE_EXHAUSTED,
            "this gateway instance's lookup throttle is tracking as many principals or lookups "
            "as it can (16 principals at most; not the caller's own limit): retry later")
    try:
        assert full_total() == 0
        for i in range(1024):
            code, _ = refusal(lambda: get_on("courier_a", nonexistent(stack, "a", 100_000 + i)))
            assert code == grpc.StatusCode.NOT_FOUND, i
        assert refusal(lambda: get_on("courier_a", nonexistent(stack, "a", 101_024))) == full
        # a principal not in the table finds no room for its key either
        assert refusal(lambda: get_on("courier_b", nonexistent(stack, "b", 100_000))) == full
        # a number counted in the window is no new key: looked up
        assert refusal(lambda: get_on("courier_a", nonexistent(stack, "a", 100_000)))[0] == \
            grpc.StatusCode.NOT_FOUND
        assert full_total() == 2
        incidents_written(stack, chans["courier_a"], "courier_a", "b", 900_001)
        after = stack.psql(incidents, uri=stack.pguri)
        assert len(after) == len(before) + 1, after  # one for the table's window
        assert [x for x in after if x not in before] == [
            "high|courier_a|lookup throttle table full on this gateway instance (1/16 "
            "principals, 1024/1024 keys): new lookups refused; see [server] lookup_throttle_*"]
    finally:
        gw.close()


# --- people: a branch clerk's account over its branch's certificate -----------------------------

def test_account_searches_and_reveals_in_its_branch_quota_per_account(stack, delivered):
    """A branch_clerk account of b (token over branch_b's certificate) finds and reveals the
    waybill its branch delivers; the reveal is recorded and counted for the account, not the
    certificate; a waybill of a alone is NOT_FOUND for it, like a missing number."""
    w, wid = delivered
    name, _, via = stack.account("clerk_b")
    md = stack.login("clerk_b")
    ch = stack.channel(via)
    found = list(waygate_proto.stream(ch, "/waygate.v1.WaybillQuery/Search",
                                      stack.pb.query.SearchRequest(waybill_no=w.waybill_no),
                                      stack.pb.common.WaybillView, metadata=md))
    assert [v.id for v in found] == [wid]
    req = stack.pb.query.RevealRequest(waybill_no=w.waybill_no, field="recipient.phone",
                                       reason="customer called the branch")
    r = waygate_proto.unary(ch, "/waygate.v1.WaybillQuery/Reveal", req,
                            stack.pb.query.RevealResponse, metadata=md)
    assert r.value == w.recipient.phone
    acct = stack.psql("SELECT id FROM account WHERE name = '%s'" % name)[0]
    row = stack.psql("SELECT principal, account_id, role, branch, cert, quota_key FROM reveal_log "
                     "WHERE record_id = '%s' AND reason = 'customer called the branch' "
                     "ORDER BY id DESC LIMIT 1" % wid)
    assert row == ["%s|%s|branch_clerk|b|%s|account:%s" % (name, acct, via, acct)]
    other = new_waybill(stack, "a", dest="330106")
    submit(stack, other)
    missing = refusal(lambda: waygate_proto.unary(
        ch, "/waygate.v1.WaybillQuery/Reveal",
        stack.pb.query.RevealRequest(waybill_no=nonexistent(stack, "a", 7), field="recipient.phone",
                                     reason="r"), stack.pb.query.RevealResponse, metadata=md))
    assert missing[0] == grpc.StatusCode.NOT_FOUND
    assert refusal(lambda: waygate_proto.unary(
        ch, "/waygate.v1.WaybillQuery/Reveal",
        stack.pb.query.RevealRequest(waybill_no=other.waybill_no, field="recipient.phone",
                                     reason="r"), stack.pb.query.RevealResponse,
        metadata=md)) == missing
