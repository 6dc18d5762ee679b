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
