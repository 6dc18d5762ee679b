"""Tampering with a stored waybill in SQL (Art. 36): every clear column of a waybill row that a
reader relies on is bound to the sealed fields (the AAD of fields_ct, stored format version 3;
the wrapped data key by its wrapping AAD), so altering any one of them in the database, or the
sealed fields themselves, as the schema's owner (WAYGATE_PGURI), makes WaybillQuery.Get answer
DATA_LOSS and records a decryption_failure incident naming the record; the status message quotes
no value. The format's own columns (mac_version, record_mac, the per-field *_ct of older rows)
cannot be changed on a version 3 row at all: the schema's CHECK refuses it (the reader's refusal
of a relabelled row is unit:test_seal's). Swapping the waybill number's blind index between two rows
never serves one number's Get with the other waybill's data.

origin_branch is the one column the database's row-level security decides on (sql/007_scope.sql):
a row moved to branch b is no longer in a's scope, so a's courier gets NOT_FOUND (such a writer
could as well delete the row; docs/threat-model.md); the branch it was moved into reads it, and
that read is DATA_LOSS with its incident: a moved row never shows its data to another branch.

Each test alters its own fresh waybill and puts the original value back afterwards (Get then
answers again), so the rows stay whole for the other modules sharing the session's stack."""

import grpc
import pytest

from conftest import wait_for
from test_foundation import rpc_error
import test_intake
from test_intake import accepted, check_courier_view, get, mask_name, segment

TAMPER_OFFSET = 47_000_000  # numeric offset of this module's waybill numbers in each segment
_n = iter(range(1, 10**6))


def tamper_waybill(stack):
    """A fresh valid waybill of branch a, numbered in this module's own range."""
    w = test_intake.new_waybill(stack, "a")
    prefix, lo, hi = segment(stack, "a")
    n = lo + TAMPER_OFFSET + next(_n)
    assert n <= hi
    w.waybill_no = "%s%d" % (prefix, n)
    return w


def incidents(stack, record_id):
    return stack.psql("SELECT kind FROM incident WHERE record_id = '%s'" % record_id)


def column_text(stack, record_id, column):
    """The column's value as SQL text (None for NULL)."""
    rows = stack.psql("SELECT coalesce(%s::text, '<NULL>') FROM waybill WHERE id = '%s'"
                      % (column, record_id))
    assert len(rows) == 1, rows
    return None if rows[0] == "<NULL>" else rows[0]


def literal(v):
    return "NULL" if v is None else "'%s'" % v.replace("'", "''")


FLIP = "set_byte({c}, 3, get_byte({c}, 3) # 1)"  # one bit of a bytea

# column -> SQL expression of its altered value; each alters one clear column, or the sealed
# fields.
TAMPER = {
    "submitted_by": "'courier_b'",
    "origin_branch": "'b'",
    "dest_region_code": "'310104'",
    "weight_grams": "weight_grams + 1",
    "service_type": "'express'",
    "security_level": "security_level + 1",
    "pickup_day": "pickup_day + 1",
    "accepted_at": "accepted_at + interval '1 second'",
    "sender_phone_bidx": FLIP.format(c="sender_phone_bidx"),
    "recipient_phone_bidx": FLIP.format(c="recipient_phone_bidx"),
    "sender_id_bidx": FLIP.format(c="sender_id_bidx"),
    "recipient_id_bidx": "'\\x000102030405060708090a0b0c0d0e0f'::bytea",  # absent made present
    "id": "gen_random_uuid()",
    "dek_version": "dek_version + 1",
    "dek_wrapped": FLIP.format(c="dek_wrapped"),
    "content_mac": FLIP.format(c="content_mac"),
    "fields_ct": FLIP.format(c="fields_ct"),
}

# What the schema refuses on a version 3 row (sql/053's CHECK waybill_fields_sealed_together):
# a relabelling to version 1 or 2, a record MAC, a per-field ciphertext beside fields_ct.
REFUSED = {
    "mac_version": ["mac_version = 1", "mac_version = 2",
                    "mac_version = 2, record_mac = content_mac"],
    "record_mac": ["record_mac = content_mac"],
    "sender_name_ct": ["sender_name_ct = fields_ct"],
}


def test_tamper_list_matches_schema(stack):
    """Every clear column of the table, and fields_ct, is tampered with below, refused by the
    schema, or tested on its own (wb_bidx: the swap; kek_version: the unavailable key)."""
    cols = set(stack.psql("SELECT column_name FROM information_schema.columns "
                          "WHERE table_name = 'waybill' AND (column_name NOT LIKE '%\\_ct' "
                          "OR column_name = 'fields_ct')"))
    assert cols == set(TAMPER) | set(REFUSED) - {"sender_name_ct"} | {"wb_bidx", "kek_version"}, \
        sorted(cols)


def test_format_columns_refused_by_the_schema(stack):
    """A version 3 row cannot be relabelled, given a record MAC or a per-field ciphertext: each
    UPDATE fails on the CHECK (SQLSTATE 23514), the row is unchanged and still opens."""
    w = tamper_waybill(stack)
    rec = accepted(stack, w)
    before = stack.psql("SELECT mac_version, md5(fields_ct), record_mac IS NULL FROM waybill "
                        "WHERE id = '%s'" % rec)
    assert before and before[0].split("|")[0] == "3", before
    for column, sets in sorted(REFUSED.items()):
        for change in sets:
            with pytest.raises(AssertionError) as e:
                stack.psql("UPDATE waybill SET %s WHERE id = '%s'" % (change, rec))
            assert "waybill_fields_sealed_together" in str(e.value), (column, change, e.value)
    assert stack.psql("SELECT mac_version, md5(fields_ct), record_mac IS NULL FROM waybill "
                      "WHERE id = '%s'" % rec) == before
    check_courier_view(get(stack, w.waybill_no), w, rec)


def check_data_loss(stack, w, record_id, other=None, principal="courier_a"):
    e = rpc_error(lambda: get(stack, w.waybill_no, principal))
    assert e.code() == grpc.StatusCode.DATA_LOSS, (e.code(), e.details())
    values = test_intake.pii_values(w)
    if other is not None:
        values += test_intake.pii_values(other) + [mask_name(other.sender.name)]
    for v in values:
        assert v not in (e.details() or "")
    ok = wait_for(lambda: "decryption_failure" in incidents(stack, record_id), timeout=60)
    assert ok, "no decryption_failure incident for record %s" % record_id


@pytest.mark.parametrize("column", sorted(TAMPER))
def test_altered_clear_column_is_data_loss(stack, column):
    w = tamper_waybill(stack)
    rec = accepted(stack, w)
    check_courier_view(get(stack, w.waybill_no), w, rec)
    saved = {column: column_text(stack, rec, column)}
    if column == "id":  # the outbox's foreign key would refuse a new id: the writer drops its row
        stack.psql("DELETE FROM outbox WHERE waybill_id = '%s'" % rec)
    rows = stack.psql("UPDATE waybill SET %s = %s WHERE id = '%s' RETURNING id"
                      % (column, TAMPER[column], rec))
    assert len(rows) == 1, rows
    now_id = rows[0]
    try:
        if column == "origin_branch":  # moved out of a's scope (row-level security), into b's
            e = rpc_error(lambda: get(stack, w.waybill_no))
            assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())
            check_data_loss(stack, w, now_id, principal="courier_b")
        else:
            check_data_loss(stack, w, now_id)
    finally:
        stack.psql("UPDATE waybill SET %s WHERE id = '%s'"
                   % (", ".join("%s = %s" % (c, literal(v)) for c, v in saved.items()), now_id))
    check_courier_view(get(stack, w.waybill_no), w, rec)  # whole again


def test_unknown_kek_version_is_key_unavailable(stack):
    """kek_version is bound by the wrapped data key's AAD; a version this gateway has no key for
    answers FAILED_PRECONDITION with a key_unavailable incident (a retired key looks the same)."""
    w = tamper_waybill(stack)
    rec = accepted(stack, w)
    saved = column_text(stack, rec, "kek_version")
    stack.psql("UPDATE waybill SET kek_version = kek_version + 1000 WHERE id = '%s'" % rec)
    try:
        e = rpc_error(lambda: get(stack, w.waybill_no))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())
        ok = wait_for(lambda: "key_unavailable" in incidents(stack, rec), timeout=60)
        assert ok, "no key_unavailable incident"
    finally:
        stack.psql("UPDATE waybill SET kek_version = %s WHERE id = '%s'" % (saved, rec))
    check_courier_view(get(stack, w.waybill_no), w, rec)


def swap_blind_indexes(stack, x, bx, y, by):
    """Gives record x the blind index by and y bx, as a writer with the owner's rights does: with
    the trigger that keeps a given-up blind index its record's (sql/043, which refuses this to
    anyone who leaves it on) disabled for the transaction. A unique index is checked row by row:
    x's index is parked on a placeholder first."""
    stack.psql("BEGIN; ALTER TABLE waybill DISABLE TRIGGER waybill_reseal_lawful; "
               "UPDATE waybill SET wb_bidx = '\\xffffffffffffffffffffffffffffffff' "
               "WHERE id = '%s'; UPDATE waybill SET wb_bidx = %s WHERE id = '%s'; "
               "UPDATE waybill SET wb_bidx = %s WHERE id = '%s'; "
               "ALTER TABLE waybill ENABLE TRIGGER waybill_reseal_lawful; COMMIT"
               % (x, literal(bx), y, literal(by), x))


def test_number_blind_index_swap_never_serves_the_other_waybill(stack):
    wx, wy = tamper_waybill(stack), tamper_waybill(stack)
    x, y = accepted(stack, wx), accepted(stack, wy)
    bx, by = column_text(stack, x, "wb_bidx"), column_text(stack, y, "wb_bidx")
    swap_blind_indexes(stack, x, bx, y, by)
    try:
        # Get of x's number now finds y's row, and of y's number x's row: neither is served
        check_data_loss(stack, wx, y, other=wy)
        check_data_loss(stack, wy, x, other=wx)
    finally:
        swap_blind_indexes(stack, x, by, y, bx)
    check_courier_view(get(stack, wx.waybill_no), wx, x)
    check_courier_view(get(stack, wy.waybill_no), wy, y)
