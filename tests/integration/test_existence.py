"""Existence timing (issue 10, finding 8): Get, Reveal and Search of a waybill that exists in
another branch's scope must do the same work as one that does not exist at all, or the time of
the refusal tells a guesser which numbers (phones, ID numbers) exist. Proved by counting work,
not by timing it: the gateway's metrics count the waybill rows its reads returned
(`waygate_waybill_rows_read_total`, under the caller's scope: row-level security) and the stored
waybills it decrypted (`waygate_waybill_records_opened_total`). Out of scope and missing both
cost zero rows and zero decryptions, and the answer is the same word for word; the positive
control (the owner's Get) moves both counters by one, so a counter that never moves cannot pass.
A scope checked after the read (the record fetched, decrypted, then refused) turns this red.
The bench that prints the two medians' ratio is tests/bench/existence_rt.py (no assertion)."""

import pytest

from test_intake import mobile
from query_data import (get, new_waybill, nonexistent, refusal, reveal, search, submit)
from test_metrics import scrape, value

ROWS = "waygate_waybill_rows_read_total"
OPENED = "waygate_waybill_records_opened_total"


@pytest.fixture(scope="module")
def other(stack):
    """A waybill of branch a bound for a region without a route: branch b must not see it."""
    w = new_waybill(stack, "a", dest="330106")
    return w, submit(stack, w)


def work(stack, fn):
    """(refusal of fn, rows read, records opened) of one call."""
    before, _ = scrape(stack)
    answer = refusal(fn)
    after, _ = scrape(stack)
    return (answer, value(after, ROWS) - value(before, ROWS),
            value(after, OPENED) - value(before, OPENED))


def test_counters_count_a_visible_read(stack, other):
    w, wid = other
    before, _ = scrape(stack)
    assert get(stack, w.waybill_no, "courier_a").id == wid
    after, _ = scrape(stack)
    assert value(after, ROWS) - value(before, ROWS) == 1
    assert value(after, OPENED) - value(before, OPENED) == 1


def test_get_other_branch_does_the_work_of_a_missing_number(stack, other):
    w, _ = other
    missing = work(stack, lambda: get(stack, nonexistent(stack, "a", 31), "courier_b"))
    hidden = work(stack, lambda: get(stack, w.waybill_no, "courier_b"))
    assert missing[0][0].name == "NOT_FOUND"
    assert hidden == missing
    assert hidden[1:] == (0, 0)


def test_reveal_other_branch_does_the_work_of_a_missing_number(stack, other):
    w, _ = other
    missing = work(stack, lambda: reveal(stack, "courier_b", nonexistent(stack, "a", 32),
                                         "recipient.phone"))
    hidden = work(stack, lambda: reveal(stack, "courier_b", w.waybill_no, "recipient.phone"))
    assert missing[0][0].name == "NOT_FOUND"
    assert hidden == missing
    assert hidden[1:] == (0, 0)


def search_work(stack, **kw):
    before, _ = scrape(stack)
    found = search(stack, "branch_b", **kw)
    after, _ = scrape(stack)
    return (found, value(after, ROWS) - value(before, ROWS),
            value(after, OPENED) - value(before, OPENED))


def test_search_other_branch_does_the_work_of_a_missing_key(stack, other):
    w, _ = other
    hidden = search_work(stack, waybill_no=w.waybill_no)
    missing = search_work(stack, waybill_no=nonexistent(stack, "a", 33))
    assert hidden == missing == ([], 0, 0)
    # a phone and an ID number that exist only in branch a's record, and ones nobody used
    assert search_work(stack, phone=w.recipient.phone) == ([], 0, 0)
    assert search_work(stack, id_number=w.sender.id_number) == ([], 0, 0)
    assert search_work(stack, phone=mobile(7_999_999)) == ([], 0, 0)  # nobody's phone


def test_search_passes_over_other_branches_records_without_asking_custody(stack):
    """A Search's scope is applied before the row-level security policy, so another branch's
    records under the key cost no custody lookup (waybill_custodian, the policy's third term):
    before, every such record ran it, and the time of the empty page told branch b how many of
    branch a's waybills share a phone, an ID number or a pickup day (+5-7 ms for 300 of them).
    Proved without timing: the schema's owner makes waybill_custodian raise for the length of
    the test; branch b's Search by a phone on six of branch a's waybills still answers an empty
    page (by an ID number too), while a Get of one of them, which must ask custody, fails;
    branch a's own Search finds
    all six (its rows pass the policy's first term and never reach the third)."""
    import grpc
    ws = [new_waybill(stack, "a", dest="330106", sender_n=61) for _ in range(6)]
    for w in ws:
        submit(stack, w)
    phone = ws[0].sender.phone
    fn = "waybill_custodian(uuid)"
    saved = stack.psql("SELECT pg_get_functiondef('%s'::regprocedure)" % fn)
    stack.psql("CREATE OR REPLACE FUNCTION waybill_custodian(w uuid) RETURNS text "
               "LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$ BEGIN "
               "RAISE EXCEPTION 'custody asked' USING ERRCODE = 'XX000'; END $$")
    try:
        assert search(stack, "branch_b", phone=phone) == []
        assert search(stack, "branch_b", id_number=ws[0].sender.id_number) == []
        code, _ = refusal(lambda: get(stack, ws[0].waybill_no, "branch_b"))
        assert code != "OK" and code != grpc.StatusCode.NOT_FOUND, \
            "the replaced function is not what the policy calls"
        assert sorted(v.waybill.waybill_no for v in search(stack, "branch_a", phone=phone)) == \
            sorted(w.waybill_no for w in ws)
    finally:
        stack.psql("\n".join(saved))
    assert refusal(lambda: get(stack, ws[0].waybill_no, "branch_b"))[0] == \
        grpc.StatusCode.NOT_FOUND


def test_a_record_above_the_callers_level_does_the_work_of_a_missing_number(stack):
    """A record of the caller's own branch above its role's security level is not read at all:
    the read statement asks the level, as Search's does, so Get and Reveal of a 机密 waybill by
    courier_a (level 1 in the shipped policy) read no row, open nothing and answer word for word
    as for a number nobody used. Before, the row was read and authenticated, then refused: a
    measurably later NOT_FOUND, and DATA_LOSS or FAILED_PRECONDITION instead of it when the record
    was altered or its key missing (review). The positive control (no role of the shipped policy
    is cleared for 机密): a 秘密 record of the same branch, read and opened once."""
    high = new_waybill(stack, "a", dest="330106")
    high.security_level = stack.pb.common.SECURITY_LEVEL_HIGHLY_SECRET
    submit(stack, high)
    secret = new_waybill(stack, "a", dest="330106")
    secret.security_level = stack.pb.common.SECURITY_LEVEL_SECRET
    submit(stack, secret)
    missing = work(stack, lambda: get(stack, nonexistent(stack, "a", 35), "courier_a"))
    assert missing[0][0].name == "NOT_FOUND" and missing[1:] == (0, 0)
    assert work(stack, lambda: get(stack, high.waybill_no, "courier_a")) == missing
    missing_r = work(stack, lambda: reveal(stack, "branch_a", nonexistent(stack, "a", 36),
                                           "recipient.phone"))
    assert missing_r[0][0].name == "NOT_FOUND" and missing_r[1:] == (0, 0)
    assert work(stack, lambda: reveal(stack, "branch_a", high.waybill_no, "recipient.phone")) \
        == missing_r
    before, _ = scrape(stack)
    assert get(stack, secret.waybill_no, "courier_a").waybill.waybill_no == secret.waybill_no
    after, _ = scrape(stack)
    assert (value(after, ROWS) - value(before, ROWS), value(after, OPENED) - value(before, OPENED)) \
        == (1, 1)
