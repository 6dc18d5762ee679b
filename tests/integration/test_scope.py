"""Branch scope (issue 7, Art. 34): a branch's principals see the waybills their branch accepted
(origin) and those bound for a region their branch delivers (routing table, `waygatectl routes`);
anything else answers exactly like a number that does not exist, through Get, Search and Reveal.
The database enforces the same scope a second time: as the gateway's role, a transaction sees
only the rows of the scope it set (row-level security), and nothing without one.

Dev routes (deploy/devstack): 320102 -> b, 320104 -> a. A_ONLY is a waybill of branch a bound for
330106 (no route: only a sees it); TO_B is one of branch a bound for 320102 (b delivers it)."""

import grpc
import pytest

from query_data import (get, new_waybill, nonexistent, refusal, reveal, search, submit)


@pytest.fixture(scope="module")
def waybills(stack):
    a_only = new_waybill(stack, "a", dest="330106")
    to_b = new_waybill(stack, "a", dest="320102")
    ids = {"a_only": submit(stack, a_only), "to_b": submit(stack, to_b)}
    return {"a_only": a_only, "to_b": to_b, "ids": ids}


def not_found_of_missing(stack, principal, branch):
    return refusal(lambda: get(stack, nonexistent(stack, branch, 1), principal))


def test_get_other_branch_is_not_found_like_a_missing_number(stack, waybills):
    missing = not_found_of_missing(stack, "courier_b", "a")
    assert missing[0] == grpc.StatusCode.NOT_FOUND
    assert missing == not_found_of_missing(stack, "courier_b", "b")
    other = refusal(lambda: get(stack, waybills["a_only"].waybill_no, "courier_b"))
    assert other == missing  # same status, same message, word for word
    # the owner still sees it
    assert get(stack, waybills["a_only"].waybill_no, "courier_a").id == waybills["ids"]["a_only"]


def test_destination_branch_sees_the_waybill(stack, waybills):
    v = get(stack, waybills["to_b"].waybill_no, "courier_b")
    assert v.id == waybills["ids"]["to_b"]
    assert v.waybill.origin_branch == "a"
    assert v.waybill.dest_region_code == "320102"
    # and through Search, as branch b's clerk
    found = search(stack, "branch_b", waybill_no=waybills["to_b"].waybill_no)
    assert [x.id for x in found] == [waybills["ids"]["to_b"]]


def test_search_other_branch_finds_nothing(stack, waybills):
    w = waybills["a_only"]
    assert search(stack, "branch_b", waybill_no=w.waybill_no) == []
    assert search(stack, "branch_b", phone=w.sender.phone) == []
    assert search(stack, "branch_b", id_number=w.sender.id_number) == []
    # the same searches by branch a find it
    assert [x.id for x in search(stack, "branch_a", waybill_no=w.waybill_no)] == \
        [waybills["ids"]["a_only"]]
    assert waybills["ids"]["a_only"] in [x.id for x in search(stack, "branch_a",
                                                               phone=w.sender.phone)]


def test_search_naming_another_branch_is_denied(stack, waybills):
    code, msg = refusal(lambda: search(stack, "branch_b", pickup_day="2026-01-01", branch="a"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert msg == "branch: is outside the caller's scope"


def test_reveal_other_branch_is_not_found_like_get(stack, waybills):
    missing = not_found_of_missing(stack, "courier_b", "a")
    other = refusal(lambda: reveal(stack, "courier_b", waybills["a_only"].waybill_no,
                                   "recipient.phone"))
    assert other == missing
    gone = refusal(lambda: reveal(stack, "courier_b", nonexistent(stack, "a", 2),
                                  "recipient.phone"))
    assert gone == missing


def test_gateway_role_sees_only_its_scope_in_sql(stack, waybills):
    a_id, b_id = waybills["ids"]["a_only"], waybills["ids"]["to_b"]
    sql = ("BEGIN; SELECT set_config('waygate.scope', '%s', true) IS NOT NULL; "
           "SELECT id, origin_branch FROM waybill WHERE id IN ('%s', '%s') ORDER BY id; COMMIT;")
    rows_b = [r for r in stack.psql(sql % ("b", a_id, b_id), uri=stack.pguri_gateway)
              if "|" in r]
    assert rows_b == ["%s|a" % b_id]  # the waybill b delivers, never a's own
    rows = stack.psql("SELECT count(*) FROM waybill WHERE origin_branch = 'a' AND "
                      "dest_region_code IS DISTINCT FROM '320102'" , uri=None)
    assert int(rows[0]) >= 1  # the owner sees them: they exist
    scoped = stack.psql("BEGIN; SELECT set_config('waygate.scope', 'b', true) IS NOT NULL; "
                        "SELECT count(*) FROM waybill WHERE origin_branch = 'a' AND "
                        "dest_region_code IS DISTINCT FROM '320102'; COMMIT;",
                        uri=stack.pguri_gateway)
    assert scoped[-1] == "0"
    # no scope set: nothing at all
    assert stack.psql("SELECT count(*) FROM waybill", uri=stack.pguri_gateway) == ["0"]
    # branch a's scope sees both
    rows_a = [r for r in stack.psql(sql % ("a", a_id, b_id), uri=stack.pguri_gateway)
              if "|" in r]
    assert sorted(rows_a) == sorted(["%s|a" % a_id, "%s|a" % b_id])


def test_routes_cli_changes_scope_and_is_logged(stack, waybills):
    w = new_waybill(stack, "a", dest="320199")
    submit(stack, w)
    assert refusal(lambda: get(stack, w.waybill_no, "courier_b"))[0] == grpc.StatusCode.NOT_FOUND
    r = stack.ctl("routes", "add", "320199", "b", "--by", "test_scope", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    listed = stack.ctl("routes", "list", "--db", stack.pguri)
    assert listed.returncode == 0, listed.stderr
    assert any(l.split("\t")[:2] == ["320199", "b"] for l in listed.stdout.splitlines())
    assert get(stack, w.waybill_no, "courier_b").waybill.dest_region_code == "320199"
    r = stack.ctl("routes", "remove", "320199", "--by", "test_scope", "--db", stack.pguri)
    assert r.returncode == 0, r.stderr
    assert refusal(lambda: get(stack, w.waybill_no, "courier_b"))[0] == grpc.StatusCode.NOT_FOUND
    logged = stack.psql("SELECT action, object, via, outcome FROM admin_log "
                        "WHERE actor = 'test_scope' ORDER BY id")
    assert logged == ["routes.add|320199|cli|ok", "routes.remove|320199|cli|ok"]
    # a bad region is refused before the database
    bad = stack.ctl("routes", "add", "32019", "b", "--db", stack.pguri)
    assert bad.returncode == 2


def test_security_level_restricts_who_sees_a_record(stack):
    """Parts 1, 2, 4: a record above the role's `[levels]` value (deploy/policy.conf: courier and
    branch_clerk up to 秘密, customer_service unclassified only) is outside the scope, answered
    like a number that does not exist; at or below it, the record is seen as usual."""
    levels = stack.pb.common
    secret = new_waybill(stack, "a")
    secret.security_level = levels.SECURITY_LEVEL_SECRET
    highly = new_waybill(stack, "a")
    highly.security_level = levels.SECURITY_LEVEL_HIGHLY_SECRET
    plain = new_waybill(stack, "a")
    ids = {k: submit(stack, w) for k, w in
           (("secret", secret), ("highly", highly), ("plain", plain))}
    missing = not_found_of_missing(stack, "courier_a", "a")

    v = get(stack, secret.waybill_no, "courier_a")
    assert v.id == ids["secret"]
    assert v.waybill.security_level == levels.SECURITY_LEVEL_SECRET
    assert get(stack, secret.waybill_no, "branch_a").id == ids["secret"]
    assert refusal(lambda: get(stack, highly.waybill_no, "courier_a")) == missing
    assert refusal(lambda: get(stack, highly.waybill_no, "branch_a")) == \
        not_found_of_missing(stack, "branch_a", "a")
    # customer service: unclassified only
    assert get(stack, plain.waybill_no, "cs_a").id == ids["plain"]
    assert refusal(lambda: get(stack, secret.waybill_no, "cs_a")) == \
        not_found_of_missing(stack, "cs_a", "a")
    # Search leaves out what the caller may not see
    assert search(stack, "branch_a", waybill_no=highly.waybill_no) == []
    assert [x.id for x in search(stack, "branch_a", waybill_no=secret.waybill_no)] == \
        [ids["secret"]]
