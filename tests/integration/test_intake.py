"""Intake (issue 3): scanners submit waybills through WaybillIntake.Submit / SubmitBatch; they are
validated (INVALID_ARGUMENT naming the field path, never the value), checked against the branch's
waybill-number segments (FAILED_PRECONDITION + incident), stored idempotently, encrypted (pg_dump
holds no clear value, a ciphertext moved to another row is DATA_LOSS + incident), readable by a
courier of the same branch through WaybillQuery.Get (masked view), flagged as suspicious when one
phone serves two senders, and still readable after KEK rotate -> rewrap -> retire. The gateway log
of the run holds no clear value.

All data is synthetic but valid: resident ID numbers carry a correct GB 11643 check digit computed
here, phones are mainland mobiles, waybill numbers lie in the dev stack's segments
(WAYGATE_SEGMENT_A for courier_a, branch a; WAYGATE_SEGMENT_B for courier_b, branch b), offset by
INTAKE_OFFSET so that other test modules sharing the session's stack do not collide.

Every clear value submitted anywhere in this module is collected in SEEDED; the pg_dump and the log
checks near the end look for each of them. The keys test changes global state (KEK versions) and
runs after every test that submits; only the dump and log checks, which do not depend on keys,
follow it."""

import datetime
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import grpc
import pytest

from conftest import PGBIN, lock_holder, release_holder, wait_for
from test_foundation import rpc_error
import waygate_proto

SUBMIT = "/waygate.v1.WaybillIntake/Submit"
SUBMIT_BATCH = "/waygate.v1.WaybillIntake/SubmitBatch"
GET = "/waygate.v1.WaybillQuery/Get"

INTAKE_OFFSET = 31_000_000  # numeric offset of this module's waybill numbers inside each segment
PICKUP = int(time.time()) // 60 * 60 - 3600  # one fixed pickup time for the whole module

SEEDED = []   # every clear PII value submitted (valid or not), for the dump and log checks
RECORDS = []  # (waybill_no, principal, id, waybill message) of every accepted waybill

_counter = itertools.count(1)

# --- synthetic, valid data ---------------------------------------------------------------------

SURNAMES = "赵钱孙李周吴郑冯陈褚卫蒋沈韩朱秦尤许何吕施孔曹严华金魏陶姜谢"
GIVEN = "澍霁珏琛翊昶曦铖煜玥璟婕骞珩琰溯昀湉砚檀"
STREETS = ("文三路", "澍霁街", "学院南路", "滨江大道", "玥湖西路", "檀香北街")
ITEMS = ("手绘青瓷茶盏", "檀木书签礼盒", "蓝莓果酱样品", "旧版地图册", "羊毛围巾")
PLACES = (("浙江省", "杭州市", "西湖区"), ("北京市", "北京市", "朝阳区"),
          ("广东省", "深圳市", "南山区"), ("四川省", "成都市", "武侯区"))
REGIONS = ("110105", "310104", "330106", "440305", "510107", "420106")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_char(d17):
    """GB 11643 check character (ISO 7064 MOD 11-2) of 17 digits."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(d17, ID_WEIGHTS)) % 11]


def resident_id(region, birth, seq2, male, check=None):
    """An 18-character resident ID number: region (6 digits), birth (YYYYMMDD), 2 sequence
    digits, a gender digit (odd: male) and the check character (computed unless given)."""
    g = (int(seq2) % 5) * 2 + (1 if male else 0)
    d17 = "%s%s%s%d" % (region, birth, seq2, g)
    assert len(d17) == 17, d17
    return d17 + (check if check is not None else id_check_char(d17))


def person_id(n, male=True):
    """A valid resident ID number for party n, distinct for every n below 1 500 000: the birth
    date repeats every 15 000 values of n and the region every 6, so the sequence digits step
    once more at each of those periods (a plain n % 100 repeats with them: two senders 7 500
    waybills apart shared an ID number, and a Search by it found both)."""
    birth = datetime.date(1960, 1, 1) + datetime.timedelta(days=(n * 397) % 15000)
    seq = (n + n // 15000) % 100
    return resident_id(REGIONS[n % len(REGIONS)], birth.strftime("%Y%m%d"), "%02d" % seq, male)


def person_name(n):
    return (SURNAMES[n % len(SURNAMES)] + GIVEN[(n * 7) % len(GIVEN)]
            + GIVEN[(n * 13 + 5) % len(GIVEN)])


def mobile(n):
    return "1%s%09d" % ("3456789"[n % 7], (804213579 + n * 1000003) % 10**9)


def address_detail(n):
    return "%s%d号%s苑%d幢%d0%d室" % (STREETS[n % len(STREETS)], n * 3 + 11, GIVEN[n % len(GIVEN)],
                                   n % 9 + 1, n % 4 + 1, n % 7 + 1)


def segment(stack, branch):
    """(prefix, from, to) of the dev stack's segment for branch a or b."""
    text = stack.env.get("WAYGATE_SEGMENT_%s" % branch.upper(), "")
    m = re.fullmatch(r"([A-Z]*):(\d+)-(\d+)", text)
    assert m, "the dev stack wrote no WAYGATE_SEGMENT_%s (got %r)" % (branch.upper(), text)
    return m.group(1), int(m.group(2)), int(m.group(3))


def number_in(stack, branch, n):
    prefix, lo, hi = segment(stack, branch)
    assert lo + INTAKE_OFFSET + n <= hi
    return "%s%d" % (prefix, lo + INTAKE_OFFSET + n)


def party(pb, n, sender):
    province, city, district = PLACES[n % len(PLACES)]
    p = pb.common.Party(name=person_name(n), phone=mobile(n), province=province, city=city,
                        district=district, address_detail=address_detail(n))
    if sender:
        p.id_type = pb.common.ID_TYPE_RESIDENT_CARD
        p.id_number = person_id(n, male=n % 2 == 0)
        p.gender = pb.common.GENDER_MALE if n % 2 == 0 else pb.common.GENDER_FEMALE
    else:
        p.company = "%s%s科技第%d分公司" % (GIVEN[n % len(GIVEN)], GIVEN[(n + 3) % len(GIVEN)], n)
    return p


def new_waybill(stack, branch="a"):
    """A fresh valid waybill for branch a or b, its number unique in this module."""
    pb = stack.pb
    n = next(_counter)
    w = pb.common.Waybill(waybill_no=number_in(stack, branch, n),
                          item_description="%s（批号%d）" % (ITEMS[n % len(ITEMS)], 7000 + n),
                          pickup_time=PICKUP, dest_region_code="330106", weight_grams=1200 + n,
                          service_type="standard")
    w.sender.CopyFrom(party(pb, 2 * n, sender=True))
    w.recipient.CopyFrom(party(pb, 2 * n + 1, sender=False))
    return w


def pii_values(w):
    """The clear PII strings of a waybill worth looking for: the distinctive ones (names,
    phones, ID numbers, address details, companies, item description, waybill number; no bare
    province or city names), at least 3 characters that are not blank."""
    out = [w.waybill_no, w.item_description]
    for p in (w.sender, w.recipient):
        out += [p.name, p.phone, p.address_detail, p.company, p.id_number]
    return [v for v in out if len(v.strip()) >= 3]


def seed(w):
    for v in pii_values(w):
        if v not in SEEDED:
            SEEDED.append(v)


# --- calls ---------------------------------------------------------------------------------------

def call(stack, method, request, response_cls, principal="courier_a", timeout=10):
    """A unary call on one cached mTLS channel per principal (stack.unary opens a new channel,
    hence a new connection, per call; this module makes a few hundred calls)."""
    return waygate_proto.unary(stack.shared_channel(principal), method, request, response_cls,
                               timeout=timeout)


def submit(stack, w, principal="courier_a"):
    seed(w)
    return call(stack, SUBMIT, stack.pb.intake.SubmitRequest(waybill=w),
                stack.pb.intake.SubmitResponse, principal)


def submit_batch(stack, waybills, principal="courier_a"):
    for w in waybills:
        seed(w)
    return call(stack, SUBMIT_BATCH, stack.pb.intake.SubmitBatchRequest(waybills=waybills),
                stack.pb.intake.SubmitBatchResponse, principal)


def get(stack, waybill_no, principal="courier_a"):
    return call(stack, GET, stack.pb.query.GetRequest(waybill_no=waybill_no),
                stack.pb.common.WaybillView, principal)


def accepted(stack, w, principal="courier_a"):
    """Submits a valid waybill, checks it is accepted as new, records it; returns its id."""
    resp = submit(stack, w, principal)
    assert str(uuid.UUID(resp.id)) == resp.id, resp.id
    assert not resp.duplicate
    RECORDS.append((w.waybill_no, principal, resp.id, w))
    return resp.id


def mask_name(name):
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone):
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits[0] + "*" * (len(digits) - 5) + digits[-4:]


def check_courier_view(view, w, rec_id):
    """The courier's masked view of docs/roles.md (gateway/view.c)."""
    v = view.waybill
    assert view.id == rec_id
    assert v.waybill_no == w.waybill_no.upper()
    assert v.sender.name == mask_name(w.sender.name)
    assert v.recipient.name == mask_name(w.recipient.name)
    assert v.sender.phone == mask_phone(w.sender.phone)
    assert v.recipient.phone == mask_phone(w.recipient.phone)
    # the full delivery address
    assert (v.recipient.province, v.recipient.city, v.recipient.district,
            v.recipient.address_detail) == (w.recipient.province, w.recipient.city,
                                            w.recipient.district, w.recipient.address_detail)
    # the sender's ID document is omitted; the sender's street address is not shown in clear
    assert v.sender.id_number == ""
    assert v.sender.id_type == 0
    assert v.sender.address_detail != w.sender.address_detail
    assert w.sender.address_detail not in str(v)
    assert v.item_description == ""
    assert v.origin_branch in ("a", "b")
    for f in ("sender.name", "sender.phone", "recipient.name", "recipient.phone",
              "sender.id_number"):
        assert f in view.redacted_fields, (f, list(view.redacted_fields))


def assert_no_value(msg, w, extra=()):
    """A refusal message names no value of the submitted waybill."""
    for v in list(pii_values(w)) + [x for x in extra if x]:
        assert v not in msg, "status message quotes a submitted value: %r" % msg


# --- accepted waybills and the courier's view --------------------------------------------------

def test_valid_waybills_accepted_and_readable_masked(stack):
    for branch, principal in (("a", "courier_a"), ("a", "courier_a"), ("b", "courier_b")):
        before = int(time.time())
        w = new_waybill(stack, branch)
        rec_id = accepted(stack, w, principal)
        view = get(stack, w.waybill_no, principal)
        check_courier_view(view, w, rec_id)
        assert view.waybill.origin_branch == branch
        assert view.status == "accepted"
        # the commit time of the record (same machine clock as the test's)
        assert before - 2 <= view.accepted_at <= int(time.time()) + 2


def test_get_of_other_branch_is_not_found_like_unknown(stack):
    w = new_waybill(stack, "a")
    accepted(stack, w, "courier_a")
    other = rpc_error(lambda: get(stack, w.waybill_no, "courier_b"))
    assert other.code() == grpc.StatusCode.NOT_FOUND, other
    unknown_no = number_in(stack, "a", 999_999)  # never submitted
    for principal in ("courier_b", "courier_a"):
        unknown = rpc_error(lambda: get(stack, unknown_no, principal))
        assert unknown.code() == grpc.StatusCode.NOT_FOUND, unknown
        assert other.details() == unknown.details()
    assert "waybill_no" in other.details()
    assert w.waybill_no not in other.details()
    # and the owner still reads it
    assert get(stack, w.waybill_no, "courier_a").waybill.waybill_no == w.waybill_no


def test_role_not_allowed_stores_and_reveals_nothing(stack):
    """A valid waybill from a role that may not submit (a clerk of the same branch, the security
    admin) is PERMISSION_DENIED naming the role and no value, and nothing is stored: the courier
    submitting it next gets a new record. Nor may a role without Get read it back (the clerk
    may: test_views.py)."""
    w = new_waybill(stack, "a")
    seed(w)
    secadmin = lambda: stack.unary_as("secadmin", SUBMIT, stack.pb.intake.SubmitRequest(waybill=w),
                                      stack.pb.intake.SubmitResponse)
    for attempt, why in (
            (lambda: submit(stack, w, "branch_a"),
             "role branch_clerk: may not call this method (least privilege, Art. 34)"),
            (secadmin, "role security_admin: may not call this method (least privilege, Art. 34)"),
            # the admin certificate without a person's token (Art. 31)
            (lambda: submit(stack, w, "admin"),
             "authorization: a certificate registered for administration acts only through an "
             "account's token: call Admin/Login first (Art. 31)")):
        e = rpc_error(attempt)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
        assert e.details() == why, e.details()
        assert_no_value(e.details(), w)
    accepted(stack, w, "courier_a")
    for principal in ("admin", "backend"):
        e = rpc_error(lambda: get(stack, w.waybill_no, principal))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
        assert_no_value(e.details(), w)


def _landline(w):
    w.recipient.phone = "0571-8702 %04d" % (next(_counter) % 10000)


def _plus86(w):
    w.sender.phone = "+86 " + w.sender.phone


def _check_x(w):
    # an ID number whose check character is X, written in lower case
    for seq in range(100):
        for birth in ("19880312", "19790521", "19920107"):
            n = resident_id("330106", birth, "%02d" % seq, male=True)
            if n.endswith("X") and n not in SEEDED:
                w.sender.id_number = n.lower()
                w.sender.gender = 1
                return
    raise AssertionError("no X check digit found")


def _legacy15(w):
    # region 330106, born 1979-05-DD, sequence SS, gender digit 3 (odd: male), no check digit
    day, seq = next(_counter) % 28 + 1, 20 + next(_counter) % 70
    w.sender.id_number = "3301067905%02d%02d3" % (day, seq)
    w.sender.gender = 1


@pytest.mark.parametrize("variant", [_landline, _plus86, _check_x, _legacy15],
                         ids=["landline_with_area_code", "plus86_mobile", "id_check_char_x",
                              "legacy_15_digit_id"])
def test_valid_variants_accepted(stack, variant):
    w = new_waybill(stack, "a")
    variant(w)
    rec_id = accepted(stack, w, "courier_a")
    check_courier_view(get(stack, w.waybill_no), w, rec_id)


# --- validation ----------------------------------------------------------------------------------

def future_birth():
    now = datetime.datetime.now(datetime.timezone.utc)
    return (now + datetime.timedelta(days=3)).strftime("%Y%m%d")


def _bad_check(w):
    good = w.sender.id_number
    w.sender.id_number = good[:17] + "10X98765432"[("10X98765432".index(good[17]) + 1) % 11]


def _gender_mismatch(w):
    male = resident_id("440305", "19850417", "37", male=True)
    w.sender.id_number = male
    w.sender.gender = 2  # GENDER_FEMALE


def _no_sender_id(w):
    w.sender.id_type = 0
    w.sender.id_number = ""


def _no_sender_id_number(w):
    w.sender.id_number = ""


def setter(part, field, value):
    """A mutation that sets w.<part>.<field> (part "" for the waybill itself) to value, or to
    value() when value is callable (evaluated at test time)."""
    def mutate(w):
        obj = getattr(w, part) if part else w
        setattr(obj, field, value(w) if callable(value) else value)
    return mutate


def clearer(part, field):
    return lambda w: (getattr(w, part) if part else w).ClearField(field)


def _impossible_birth(w):
    return resident_id("110105", "19900230", "12", w.sender.gender == 1)


def _future_birth(w):
    return resident_id("110105", future_birth(), "12", w.sender.gender == 1)


# (test id, mutation of a valid waybill, field path the message starts with, word of the rule)
VALIDATION = [
    ("missing_sender_name", clearer("sender", "name"), r"waybill\.sender\.name", "required"),
    ("blank_sender_name", setter("sender", "name", "   "), r"waybill\.sender\.name", ""),
    ("missing_recipient_phone", clearer("recipient", "phone"), r"waybill\.recipient\.phone",
     "required"),
    ("missing_sender_address", clearer("sender", "address_detail"),
     r"waybill\.sender\.address_detail", "required"),
    ("missing_recipient_name", clearer("recipient", "name"), r"waybill\.recipient\.name",
     "required"),
    ("missing_sender_id", _no_sender_id, r"waybill\.sender\.id_(type|number)", "real-name"),
    ("missing_sender_id_number", _no_sender_id_number, r"waybill\.sender\.id_number",
     "real-name"),
    ("bad_id_check_digit", _bad_check, r"waybill\.sender\.id_number", "check"),
    ("impossible_birth_date", setter("sender", "id_number", _impossible_birth),
     r"waybill\.sender\.id_number", "birth"),
    ("future_birth_date", setter("sender", "id_number", _future_birth),
     r"waybill\.sender\.id_number", "birth"),
    ("gender_digit_inconsistent", _gender_mismatch, r"waybill\.sender\.id_number", "gender"),
    ("bad_mobile_second_digit", setter("sender", "phone", "12804213579"),
     r"waybill\.sender\.phone", ""),
    ("bad_mobile_ten_digits", setter("recipient", "phone", "1398042135"),
     r"waybill\.recipient\.phone", ""),
    ("foreign_country_code", setter("recipient", "phone", "+44 13980421357"),
     r"waybill\.recipient\.phone", ""),
    ("bad_region_code_province", setter("", "dest_region_code", "991234"),
     r"waybill\.dest_region_code", ""),
    ("bad_region_code_length", setter("", "dest_region_code", "33010"),
     r"waybill\.dest_region_code", ""),
    ("control_char_in_address", setter("recipient", "address_detail", "澍霁街8号\x07檀苑3幢"),
     r"waybill\.recipient\.address_detail", "control"),
    ("overlong_address", setter("sender", "address_detail", "玥湖西路澍霁苑" * 13),
     r"waybill\.sender\.address_detail", "long"),
    ("overlong_name", setter("recipient", "name", "琰" * 22), r"waybill\.recipient\.name", "long"),
    ("overlong_item_description", setter("", "item_description", "檀木书签礼盒澍霁" * 22),
     r"waybill\.item_description", "long"),
    ("waybill_no_too_short", setter("", "waybill_no", "WG1031234"), r"waybill\.waybill_no", ""),
    ("waybill_no_too_long", setter("", "waybill_no", "WG1031000000000000007"),
     r"waybill\.waybill_no", ""),
    ("waybill_no_punctuation", setter("", "waybill_no", "WG-1031000077"),
     r"waybill\.waybill_no", ""),
    ("waybill_no_missing", clearer("", "waybill_no"), r"waybill\.waybill_no", "required"),
]


@pytest.mark.parametrize("mutate,path,rule", [v[1:] for v in VALIDATION],
                         ids=[v[0] for v in VALIDATION])
def test_validation_refused(stack, mutate, path, rule):
    w = new_waybill(stack, "a")
    before = list(pii_values(w))
    mutate(w)
    e = rpc_error(lambda: submit(stack, w))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
    msg = e.details() or ""
    assert re.match(path + r"\b", msg), "message %r does not start with %s" % (msg, path)
    if rule:
        assert rule in msg.lower(), "message %r does not state the rule (%s)" % (msg, rule)
    assert_no_value(msg, w, before)
    # nothing was stored under that number
    if re.fullmatch(r"[A-Za-z0-9]{10,20}", w.waybill_no):
        nf = rpc_error(lambda: get(stack, w.waybill_no))
        assert nf.code() == grpc.StatusCode.NOT_FOUND, nf


def test_invalid_utf8_in_name_refused(stack):
    """protobuf-c does not check UTF-8; the gateway must. The name is replaced on the wire by
    bytes of the same length that are not UTF-8 (so no length prefix changes)."""
    w = new_waybill(stack, "a")
    placeholder = "QZQZQZQZ"
    w.recipient.name = placeholder
    raw = stack.pb.intake.SubmitRequest(waybill=w).SerializeToString()
    assert raw.count(placeholder.encode()) == 1
    bad = b"\xe5\xbc\xa0\xff\xfe\xc3\x28\xa0"  # 张 then garbage
    raw = raw.replace(placeholder.encode(), bad)
    seed(w)
    e = rpc_error(lambda: call(stack, SUBMIT, raw, None))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
    msg = e.details() or ""
    assert msg.startswith("waybill.recipient.name"), msg
    assert "utf-8" in msg.lower(), msg
    assert "\ufffd" not in msg and "张" not in msg
    assert_no_value(msg, w)


# --- segments (Art. 18) --------------------------------------------------------------------------

def incident_count(stack, kind):
    return int(stack.psql("SELECT count(*) FROM incident WHERE kind = '%s'" % kind)[0])


def test_number_outside_branch_segments_refused_and_recorded(stack):
    before = incident_count(stack, "segment_violation")
    prefix, lo, _ = segment(stack, "a")
    outside = [number_in(stack, "b", next(_counter)),   # branch b's segment
               "%s%d" % (prefix, lo - 1 - next(_counter))]  # below branch a's segment
    for no in outside:
        w = new_waybill(stack, "a")
        w.waybill_no = no
        e = rpc_error(lambda: submit(stack, w, "courier_a"))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())
        assert e.details().startswith("waybill.waybill_no"), e.details()
        assert_no_value(e.details(), w)
        nf = rpc_error(lambda: get(stack, no, "courier_b"))
        assert nf.code() == grpc.StatusCode.NOT_FOUND
    n = wait_for(lambda: incident_count(stack, "segment_violation") >= before + 2, timeout=60)
    assert n, "no segment_violation incident recorded (before %d, now %d)" % (
        before, incident_count(stack, "segment_violation"))
    rows = stack.psql("SELECT severity, coalesce(branch, ''), coalesce(principal, ''), "
                      "coalesce(detail, '') FROM incident WHERE kind = 'segment_violation' "
                      "ORDER BY id DESC LIMIT 2")
    for row in rows:
        severity, branch, principal, detail = row.split("|", 3)
        assert severity in ("low", "medium", "high", "critical")
        assert branch == "a", row
        assert principal, row
        for no in outside:
            assert no not in row


def test_batch_outside_segments_is_one_incident(stack):
    """A batch with several numbers outside the branch's segments refuses each of them and records
    one incident for the call, with the count, rather than one per waybill."""
    before = incident_count(stack, "segment_violation")
    items = [new_waybill(stack, "a") for _ in range(4)]
    for it in items[1:]:
        it.waybill_no = number_in(stack, "b", next(_counter))
    resp = submit_batch(stack, items)
    assert [r.code for r in resp.results] == [0, 9, 9, 9]
    assert wait_for(lambda: incident_count(stack, "segment_violation") == before + 1, timeout=60)
    time.sleep(0.5)  # nothing more arrives
    assert incident_count(stack, "segment_violation") == before + 1
    detail = stack.psql("SELECT detail FROM incident WHERE kind = 'segment_violation' "
                        "ORDER BY id DESC LIMIT 1")[0]
    assert detail.startswith("3 submitted waybill number(s)"), detail
    for it in items[1:]:
        assert it.waybill_no not in detail


# --- idempotency ---------------------------------------------------------------------------------

def test_resubmit_same_content_is_duplicate_with_same_id(stack):
    w = new_waybill(stack, "a")
    rec_id = accepted(stack, w)
    again = submit(stack, w)
    assert again.id == rec_id and again.duplicate


def test_resubmit_lower_case_number_is_the_same_waybill(stack):
    w = new_waybill(stack, "a")
    rec_id = accepted(stack, w)
    lower = stack.pb.common.Waybill()
    lower.CopyFrom(w)
    lower.waybill_no = w.waybill_no.lower()
    again = submit(stack, lower)
    assert again.id == rec_id and again.duplicate


def test_resubmit_different_content_already_exists(stack):
    w = new_waybill(stack, "a")
    rec_id = accepted(stack, w)
    other = stack.pb.common.Waybill()
    other.CopyFrom(w)
    other.item_description = "澍霁改动的物品描述%d" % next(_counter)
    e = rpc_error(lambda: submit(stack, other))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS, (e.code(), e.details())
    assert e.details().startswith("waybill.waybill_no"), e.details()
    assert_no_value(e.details(), other)
    # the stored record is unchanged
    view = get(stack, w.waybill_no)
    assert view.id == rec_id


# --- SubmitBatch ---------------------------------------------------------------------------------

def test_batch_with_mixed_items(stack):
    pb = stack.pb
    stored = new_waybill(stack, "a")
    stored_id = accepted(stack, stored)
    conflicting = pb.common.Waybill()
    conflicting.CopyFrom(stored)
    conflicting.recipient.address_detail = address_detail(next(_counter) + 500)

    items = [new_waybill(stack, "a") for _ in range(5)]
    _bad_check(items[1])                       # 1: bad ID check digit
    items[3].waybill_no = number_in(stack, "b", next(_counter))  # 3: outside branch a
    items[4].recipient.ClearField("phone")     # 4: missing recipient phone
    items.append(stored)                       # 5: identical retry
    items.append(conflicting)                  # 6: same number, different content
    expect = [(0, None), (3, r"waybills\[1\]\.sender\.id_number"), (0, None),
              (9, r"waybills\[3\]\.waybill_no"), (3, r"waybills\[4\]\.recipient\.phone"),
              (0, None), (6, r"waybills\[6\]\.waybill_no")]

    resp = submit_batch(stack, items)
    assert len(resp.results) == len(items)
    for i, (r, w, (code, path)) in enumerate(zip(resp.results, items, expect)):
        assert r.index == i
        assert r.code == code, (i, r.code, r.message)
        if code == 0:
            assert str(uuid.UUID(r.id)) == r.id and r.message == ""
        else:
            assert r.id == ""
            assert re.match(path + r"\b", r.message), (i, r.message)
            assert_no_value(r.message, w)
    assert resp.results[5].id == stored_id and resp.results[5].duplicate
    for i in (0, 2):
        assert not resp.results[i].duplicate
        RECORDS.append((items[i].waybill_no, "courier_a", resp.results[i].id, items[i]))
        check_courier_view(get(stack, items[i].waybill_no), items[i], resp.results[i].id)
    for i in (1, 4):
        assert rpc_error(lambda: get(stack, items[i].waybill_no)).code() == \
            grpc.StatusCode.NOT_FOUND
    assert get(stack, stored.waybill_no).id == stored_id


@pytest.mark.parametrize("mutate,code", [
    (_bad_check, grpc.StatusCode.INVALID_ARGUMENT),
    (clearer("recipient", "phone"), grpc.StatusCode.INVALID_ARGUMENT),
    (setter("recipient", "address_detail", "玥湖西路澍霁苑" * 13), grpc.StatusCode.INVALID_ARGUMENT),
    (setter("", "origin_branch", "b"), grpc.StatusCode.PERMISSION_DENIED),
    ("outside_segments", grpc.StatusCode.FAILED_PRECONDITION),
], ids=["check_digit", "missing_phone", "too_long", "other_branch", "outside_segments"])
def test_batch_item_refused_like_submit(stack, mutate, code):
    """One mapping: a SubmitBatch item is refused with the status and the words Submit uses for
    the same waybill; only the root of the field path differs (waybills[i] for waybill)."""
    w = new_waybill(stack, "a")
    if mutate == "outside_segments":
        w.waybill_no = number_in(stack, "b", next(_counter))
    else:
        mutate(w)
    e = rpc_error(lambda: submit(stack, w))
    assert e.code() == code, (e.code(), e.details())
    assert e.details().startswith("waybill."), e.details()
    assert_no_value(e.details(), w)
    good = new_waybill(stack, "a")
    resp = submit_batch(stack, [good, w])
    r = resp.results[1]
    assert r.code == code.value[0], (r.code, r.message)
    assert r.message == "waybills[1]." + e.details()[len("waybill."):], (r.message, e.details())
    assert resp.results[0].code == 0
    RECORDS.append((good.waybill_no, "courier_a", resp.results[0].id, good))


def test_batch_empty_invalid_argument(stack):
    e = rpc_error(lambda: submit_batch(stack, []))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "waybills" in e.details()


# --- suspicious customers (part 12 Art. 7) -------------------------------------------------------

def test_one_phone_two_senders_is_suspicious(stack):
    shared = new_waybill(stack, "a")
    second = new_waybill(stack, "a")
    second.sender.phone = shared.sender.phone          # same phone, other sender (other ID)
    assert second.sender.id_number != shared.sender.id_number
    id1 = accepted(stack, shared)
    id2 = accepted(stack, second)

    same1 = new_waybill(stack, "a")
    same2 = new_waybill(stack, "a")
    same2.sender.CopyFrom(same1.sender)                # same sender, same phone, twice
    id3 = accepted(stack, same1)
    id4 = accepted(stack, same2)

    r = stack.ctl("suspicious", "list", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if id1 in l or id2 in l]
    assert lines, "phone shared by two senders not listed:\n" + r.stdout
    assert any(id1 in l and id2 in l and re.search(r"\s2\s", l) for l in lines), r.stdout
    assert id3 not in r.stdout and id4 not in r.stdout, \
        "a phone reused by one sender is listed:\n" + r.stdout
    for v in SEEDED:
        assert v not in r.stdout


# --- ciphertexts bound to their row --------------------------------------------------------------

SWAP = ("UPDATE waybill w SET fields_ct = o.fields_ct FROM waybill o "
        "WHERE (w.id, o.id) IN (('{x}'::uuid, '{y}'::uuid), ('{y}'::uuid, '{x}'::uuid)) "
        "RETURNING w.id")


def test_ciphertext_swapped_between_rows_is_data_loss(stack):
    wx, wy = new_waybill(stack, "a"), new_waybill(stack, "a")
    x, y = accepted(stack, wx), accepted(stack, wy)
    since = incident_count(stack, "decryption_failure")
    assert sorted(stack.psql(SWAP.format(x=x, y=y))) == sorted([x, y])
    try:
        for w, mine, other in ((wx, x, wy), (wy, y, wx)):
            e = rpc_error(lambda: get(stack, w.waybill_no))
            assert e.code() == grpc.StatusCode.DATA_LOSS, (e.code(), e.details())
            for v in (other.sender.name, mask_name(other.sender.name), w.sender.name):
                assert v not in (e.details() or "")
        ok = wait_for(lambda: incident_count(stack, "decryption_failure") >= since + 2, timeout=60)
        assert ok, "no decryption_failure incident recorded"
        rows = stack.psql("SELECT record_id, severity FROM incident "
                          "WHERE kind = 'decryption_failure' AND record_id IN ('%s', '%s')"
                          % (x, y))
        assert {r.split("|")[0] for r in rows} == {x, y}, rows
    finally:
        assert len(stack.psql(SWAP.format(x=x, y=y))) == 2  # swap back: the records are whole again
    check_courier_view(get(stack, wx.waybill_no), wx, x)
    check_courier_view(get(stack, wy.waybill_no), wy, y)


# --- keys: rotate -> reload -> rewrap -> retire ---------------------------------------------------

# The suite the stack's gateway seals new records with (deploy/devstack: WAYGATE_SUITE, default aes):
# the keys test rotates, rewraps and retires that suite's KEK. Records of the other suite may be in
# the database too (test_suite.py, test_suite_migrate.py): a rewrap of one suite leaves them as they
# are. A record's suite is the algorithm byte of its wrapped data key (1 aes, 2 sm).
SUITE = os.environ.get("WAYGATE_SUITE", "aes")
SUITE_BYTE = {"aes": 1, "sm": 2}[SUITE]
KEK_LINE = "kek" if SUITE == "aes" else "sm.kek"  # `keys status`: "  kek 1 active", "  sm.kek 1 ..."

# fields_ct: the fields sealed together (version 3, what is written); the others: per field, as rows
# of versions 1 and 2 hold them
CT_COLUMNS = ("fields_ct", "waybill_no_ct", "item_description_ct", "sender_name_ct",
              "sender_phone_ct", "sender_address_detail_ct", "sender_id_number_ct",
              "recipient_name_ct", "recipient_phone_ct", "recipient_address_detail_ct")


def field_digests(stack, mine=True):
    """{id: [kek_version, md5 of the wrapped data key, md5 of the ciphertexts]} of every record
    of SUITE (mine) or of every other suite."""
    rows = stack.psql("SELECT id, kek_version, md5(dek_wrapped), md5(concat_ws(',', %s)) "
                      "FROM waybill WHERE (get_byte(dek_wrapped, 1) = %d) = %s ORDER BY id"
                      % (", ".join("%s::text" % c for c in CT_COLUMNS), SUITE_BYTE,
                         "true" if mine else "false"))
    return {r.split("|")[0]: r.split("|")[1:] for r in rows}


def reload_keys(stack, version):
    since = len(stack.log_lines())
    os.kill(stack.gateway_pid(), signal.SIGHUP)
    reload_keys_logged(stack, since, version)


def reload_keys_logged(stack, since, version):
    """The keyring reload of a SIGHUP sent after log line `since` has ended, with the current KEK
    version `version` (a reload checks a new version against the database and leases its wraps
    before it ends: a loaded machine gets 60 s)."""
    line = wait_for(lambda: [l for l in stack.log_lines()[since:]
                             if "keyring" in l and "reload" in l], timeout=60)
    assert line, "no keyring reload logged after SIGHUP; the gateway's log since:\n%s\n" \
        "its database sessions:\n%s" % ("\n".join(stack.log_lines()[since:][-20:]),
                                         gateway_sessions(stack))
    assert "version %d (suite %s)" % (version, SUITE) in line[-1], line
    assert "not reloaded" not in line[-1], line


def gateway_sessions(stack):
    """The state, wait event and statement of each database session of the gateway's role (read
    as the superuser: another role's statement needs pg_read_all_stats), for a failure's message."""
    su = re.sub(r"user=[^&]*", "user=postgres", stack.pguri_owner)
    return "\n".join(stack.psql("SELECT pid, state, wait_event_type, wait_event, left(query, 120) "
                                "FROM pg_stat_activity WHERE usename = current_database() || "
                                "'_gateway'", uri=su))


def keys_status(stack):
    r = stack.ctl("keys", "status", "--keyring", stack.env["WAYGATE_KEYRING"], "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    return r.stdout


def kek_state(version, state):
    """A `keys status` line of SUITE's KEK version in state (active, retired)."""
    return r"(?m)^  %s %d\s+%s" % (re.escape(KEK_LINE), version, state)


def test_keys_rotate_rewrap_retire_all_records_readable(stack):
    keyring = stack.env["WAYGATE_KEYRING"]
    m = re.search(r"(?m)^suite %s[^:\n]*: current KEK version: (\d+)$" % SUITE, keys_status(stack))
    assert m, keys_status(stack)
    old = int(m.group(1))
    new = old + 1
    # at least one record under the old version, whatever ran before
    w = new_waybill(stack, "a")
    old_id = accepted(stack, w)
    assert stack.psql("SELECT kek_version, get_byte(dek_wrapped, 1) FROM waybill WHERE id = '%s'"
                      % old_id) == ["%d|%d" % (old, SUITE_BYTE)]
    others = field_digests(stack, mine=False)  # another suite's records: the rewrap leaves them

    log_from = int(stack.psql("SELECT coalesce(max(id), 0) FROM admin_log")[0])
    r = stack.ctl("keys", "rotate", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert "version %d" % new in r.stdout, r.stdout
    reload_keys(stack, new)

    w = new_waybill(stack, "a")
    new_id = accepted(stack, w)
    assert stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % new_id) == [str(new)]

    # retire refuses while records still use the old version
    r = stack.ctl("keys", "retire", "--suite", SUITE, "--keyring", keyring, "--version", old,
                  "--db", stack.pguri)
    assert r.returncode != 0, r.stdout
    assert "rewrap" in r.stderr, r.stderr
    assert re.search(kek_state(old, "active"), keys_status(stack)), keys_status(stack)

    before = field_digests(stack)
    r = stack.ctl("keys", "rewrap", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri,
                  "--batch", "7")
    assert r.returncode == 0, r.stdout + r.stderr
    after = field_digests(stack)
    assert stack.psql("SELECT count(*) FROM waybill WHERE get_byte(dek_wrapped, 1) = %d "
                      "AND kek_version <> %d" % (SUITE_BYTE, new)) == ["0"]
    assert field_digests(stack, mine=False) == others, "rewrap touched another suite's records"
    assert before.keys() == after.keys()
    for rid, (kv, dek, fields) in before.items():
        assert after[rid][2] == fields, "rewrap touched the field ciphertexts of %s" % rid
        assert after[rid][0] == str(new)
        if kv != str(new):
            assert after[rid][1] != dek, "data key of %s not re-wrapped" % rid

    r = stack.ctl("keys", "retire", "--suite", SUITE, "--keyring", keyring, "--version", old,
                  "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert re.search(kek_state(old, "retired"), keys_status(stack)), keys_status(stack)
    reload_keys(stack, new)

    # Art. 31: each key operation left its administrative record, the refused retire included
    rows = stack.psql("SELECT via, action, object, outcome, detail FROM admin_log WHERE id > %d "
                      "AND action LIKE 'keys.%%' ORDER BY id" % log_from)
    assert [tuple(x.split("|")[1:4]) for x in rows] == [
        ("keys.rotate", keyring, "ok"), ("keys.retire", keyring, "failed"),
        ("keys.rewrap", keyring, "ok"), ("keys.retire", keyring, "ok")], rows
    assert all(x.startswith("cli|") for x in rows), rows
    # the detail names the suite the version belongs to (KEK versions are per suite)
    assert re.search(r"\|added KEK version %d \(suite %s\)$" % (new, SUITE), rows[0]), rows
    assert re.search(r"\|retired KEK version %d \(suite %s\)$" % (old, SUITE), rows[3]), rows

    unreadable = []
    for no, principal, rid, sent in RECORDS:
        try:
            check_courier_view(get(stack, no, principal), sent, rid)
        except grpc.RpcError as e:
            unreadable.append("%s: %s %s" % (rid, e.code().name, e.details()))
    assert not unreadable, "records not readable after retire:\n" + "\n".join(unreadable)


def test_a_rewrap_batch_does_not_hold_up_a_scan_of_its_records(stack):
    """`keys rewrap` locks its batch's rows FOR NO KEY UPDATE: it changes dek_wrapped and
    kek_version only, no column of a unique index, so a RecordScan of a record the batch holds
    (its event's foreign-key check takes FOR KEY SHARE) completes while the batch runs. The CLI
    is held mid-batch by a lock the test controls: SHARE on phone_sender, which the waybill
    UPDATE's statement trigger (sql/013) inserts into, so the first record's UPDATE waits with
    the whole batch locked. Before, the batch took FOR UPDATE and the scan waited for the
    batch's commit (here: for ever)."""
    from test_faults import superuser_uri
    from test_scan import scan
    from conftest import BUILD, holder_pid, waiting_on
    keyring = stack.env["WAYGATE_KEYRING"]
    m = re.search(r"(?m)^suite %s[^:\n]*: current KEK version: (\d+)$" % SUITE, keys_status(stack))
    assert m, keys_status(stack)
    old = int(m.group(1))
    w = new_waybill(stack, "a")
    rid = accepted(stack, w)
    r = stack.ctl("keys", "rotate", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    reload_keys(stack, old + 1)
    holder = lock_holder(stack, "LOCK TABLE phone_sender IN SHARE MODE")
    cli = None
    try:
        pid = holder_pid(holder)
        cli = subprocess.Popen([os.path.join(BUILD, "waygatectl"), "keys", "rewrap", "--suite",
                                SUITE, "--keyring", keyring, "--db", stack.pguri, "--batch",
                                "100000"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, WAYGATE_KEYRING=keyring))
        su = superuser_uri(stack)
        assert wait_for(lambda: any("UPDATE waybill" in q for q in waiting_on(stack, pid, su)), 60)
        # the batch holds every record of the old version, rid among them, until it commits
        assert stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % rid) == [str(old)]
        assert scan(stack, w.waybill_no, "PICKED_UP", PICKUP + 60).status == "picked_up"
        assert cli.poll() is None, "the rewrap ended before the scan: it held nothing"
    finally:
        release_holder(holder)
        if cli is not None:
            out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, out + err
    assert stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % rid) == [str(old + 1)]


def test_retire_with_a_gateway_not_reloaded_loses_nothing(stack):
    """A gateway whose keyring was not reloaded after `keys rotate` (its SIGHUP failed, which
    keeps the running keys, or was never sent) goes on sealing under the old KEK version. Once a
    rewrap emptied that version, `keys retire` erased its key while the gateway still stored
    records under it: each was acknowledged, then unreadable as soon as the gateway loaded the
    key file. Since sql/033_kek_retired.sql the database refuses a record under a retired version:
    the Submit fails (the client knows it was not stored), nothing acknowledged is lost, and
    after the reload the same waybill is stored under the new version. The refusal is
    FAILED_PRECONDITION naming the rule and the remedy (no SQLSTATE, no internals), and the
    operator hears of it by one kek_retired incident however many Submits are refused."""
    keyring = stack.env["WAYGATE_KEYRING"]
    m = re.search(r"(?m)^suite %s[^:\n]*: current KEK version: (\d+)$" % SUITE, keys_status(stack))
    assert m, keys_status(stack)
    old = int(m.group(1))
    new = old + 1
    r = stack.ctl("keys", "rotate", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    # no SIGHUP: the gateway still seals under the old version
    r = stack.ctl("keys", "rewrap", "--suite", SUITE, "--keyring", keyring, "--db", stack.pguri)
    assert r.returncode == 0, r.stdout + r.stderr
    r = stack.ctl("keys", "retire", "--suite", SUITE, "--keyring", keyring, "--version", old,
                  "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    since = len(stack.log_lines())
    incidents = incident_count(stack, "kek_retired")
    w = new_waybill(stack, "a")
    try:
        rid, refused = accepted(stack, w), None
    except grpc.RpcError as e:
        rid, refused = None, e
    # a second refusal under the same keyring: its incident is the first one's
    e2 = rpc_error(lambda: accepted(stack, new_waybill(stack, "a")))
    assert e2.code() == grpc.StatusCode.FAILED_PRECONDITION, (e2.code(), e2.details())
    assert wait_for(lambda: incident_count(stack, "kek_retired") > incidents, timeout=30), \
        "no kek_retired incident recorded"
    reload_keys(stack, new)
    if refused is None:  # acknowledged: it must be readable under the key file the gateway loads
        try:
            check_courier_view(get(stack, w.waybill_no), w, rid)
        except grpc.RpcError as e:
            pytest.fail("record %s, acknowledged under retired KEK version %d, is lost: %s %s"
                        % (rid, old, e.code().name, e.details()))
    assert refused is not None, "a record was stored under retired KEK version %d" % old
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, refused
    assert refused.details() == ("waybill: the gateway's key version is retired; an operator "
                                 "must reload the gateway's keyring"), refused.details()
    assert_no_value(refused.details(), w)
    assert incident_count(stack, "kek_retired") == incidents + 1
    assert stack.psql("SELECT severity, detail FROM incident WHERE kind = 'kek_retired' "
                      "ORDER BY id DESC LIMIT 1") == [
        "high|Submit refused: %s KEK version %d of this gateway's keyring is retired in the "
        "database; reload the gateway's keyring" % (SUITE, old)]
    assert [l for l in stack.log_lines()[since:] if "refused (sqlstate 55000)" in l], \
        "the refusal is not in the gateway's log"
    assert stack.psql("SELECT count(*) FROM waybill WHERE get_byte(dek_wrapped, 1) = %d "
                      "AND kek_version = %d" % (SUITE_BYTE, old)) == ["0"]
    # reloaded, the gateway stores it under the new version
    rid = accepted(stack, w)
    assert stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % rid) == [str(new)]
    check_courier_view(get(stack, w.waybill_no), w, rid)


def test_a_refusal_after_a_reload_names_the_key_it_was_sealed_under(stack):
    """A Submit sealed under a retired KEK version whose refusal arrives after a SIGHUP reloaded
    the keyring is the replaced keyring's: its log line names the version the waybill was sealed
    under, and it records no kek_retired incident, which would blame the new keyring's version
    and spend the new keyring's one report. Held deterministically: the waybill table is locked
    while the Submit's group statement waits on it (seen in pg_locks) and the keyring reloads."""
    keyring = stack.env["WAYGATE_KEYRING"]
    m = re.search(r"(?m)^suite %s[^:\n]*: current KEK version: (\d+)$" % SUITE, keys_status(stack))
    assert m, keys_status(stack)
    old = int(m.group(1))
    new = old + 1
    for cmd in (["rotate"], ["rewrap"], ["retire", "--version", str(old)]):
        r = stack.ctl("keys", cmd[0], "--suite", SUITE, "--keyring", keyring, *cmd[1:],
                      "--db", stack.pguri)
        assert r.returncode == 0, r.stdout + r.stderr
    last = int(stack.psql("SELECT coalesce(max(id), 0) FROM incident")[0])
    since = len(stack.log_lines())
    w = new_waybill(stack, "a")
    outcome = {}

    def run():
        try:
            outcome["ok"] = submit(stack, w)
        except grpc.RpcError as e:
            outcome["error"] = e

    holder = lock_holder(stack, "LOCK TABLE waybill IN EXCLUSIVE MODE")
    try:
        t = threading.Thread(target=run)
        t.start()
        su = re.sub(r"user=[^&]*", "user=postgres", stack.pguri_owner)
        assert wait_for(lambda: stack.psql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'waybill'::regclass",
            uri=su) != ["0"], timeout=30), "the Submit's group statement never waited on the lock"
        reload_keys(stack, new)
    finally:
        release_holder(holder)
    t.join(timeout=60)
    assert not t.is_alive()
    e = outcome.get("error")
    assert e is not None, "stored under retired KEK version %d" % old
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())
    line = wait_for(lambda: [l for l in stack.log_lines()[since:] if "refused: the database has "
                             "retired" in l], timeout=30)
    assert line, "the refusal is not in the gateway's log"
    assert ("retired %s KEK version %d, which the keyring a reload has since replaced sealed them "
            "under" % (SUITE, old)) in line[-1], line
    # an incident written after it: the queue writes in order, so one of the refusal's would be
    # there first
    prefix, lo, _ = segment(stack, "a")
    outside = new_waybill(stack, "a")
    outside.waybill_no = "%s%d" % (prefix, lo - 1 - next(_counter))
    assert rpc_error(lambda: submit(stack, outside)).code() == \
        grpc.StatusCode.FAILED_PRECONDITION
    assert wait_for(lambda: stack.psql("SELECT count(*) FROM incident WHERE id > %d AND kind = "
                                       "'segment_violation'" % last) != ["0"], timeout=30)
    assert stack.psql("SELECT detail FROM incident WHERE id > %d AND kind = 'kek_retired'"
                      % last) == []
    rid = accepted(stack, w)
    assert stack.psql("SELECT kek_version FROM waybill WHERE id = '%s'" % rid) == [str(new)]


# --- nothing clear at rest or in the logs --------------------------------------------------------

def test_pg_dump_holds_no_clear_value(stack):
    assert len(SEEDED) >= 10, "too few seeded values: %d" % len(SEEDED)
    r = subprocess.run([os.path.join(PGBIN, "pg_dump"), "-d", stack.pguri_owner], capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    dump = r.stdout.decode("utf-8")
    assert "COPY public.waybill" in dump and "fields_ct" in dump
    # (A digits-only value, a phone or an ID number, of 10 or more digits occurs by chance in
    # the hex of the ciphertexts with a probability of about len(dump) / 16**10: negligible.)
    found = [v for v in SEEDED if v in dump or v.upper() in dump]
    # A clear value stored as bytea would show as the hex of its UTF-8 bytes (long enough that a
    # chance match in random ciphertext is negligible).
    lower = dump.lower()
    found += ["hex of " + v for v in SEEDED if len(v.encode()) >= 8 and v.encode().hex() in lower]
    assert not found, "pg_dump holds clear values: %r" % found


def test_log_holds_no_clear_value(stack):
    """The gateway log of the whole run (JSON lines, decoded so that \\u escapes count too) and
    PostgreSQL's server log hold none of the seeded values."""
    assert SEEDED
    found = set()
    lines = stack.log_lines()
    pglog = os.path.join(stack.dir, "pg", "postgres.log")
    if os.path.exists(pglog):
        with open(pglog, encoding="utf-8", errors="replace") as f:
            lines += ["postgres.log: " + l for l in f.read().splitlines()]
    for line in lines:
        texts = [line]
        try:
            texts.append(json.dumps(json.loads(line), ensure_ascii=False))
        except ValueError:
            pass
        for t in texts:
            for v in SEEDED:
                if v in t or v.upper() in t:
                    found.add(v)
    assert not found, "the gateway log holds clear values: %r" % sorted(found)
