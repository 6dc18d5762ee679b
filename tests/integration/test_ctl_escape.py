"""waygatectl prints stored text escaped (review: an insider holding only the gateway's database
role writes columns the CLI lists). As the gateway's role, hostile values (an OSC 52 clipboard
write ended by BEL, a carriage return, ESC[2K and ESC[1A, a newline and a fake row after it, a C1
control U+009B, a bidirectional override U+202E, a backslash) go into an incident's principal,
peer, branch and detail, a parked delivery's park_reason and an executed bulk request's purpose,
legal basis, destination and names; `incidents list`, `outbox list-parked` and `export trace`
then print each value escaped (gw_text_escape through ctl_esc: `\\xHH`, `\\uHHHH`, a backslash
doubled), no control byte but newline and tab, no DEL, no C1 code point, no U+202E, and as many
lines as the rows give. The database's own messages, which can quote a stored value, are escaped
where they are formatted (gw_pq_msg), and once: `report monthly`'s failure, printed and recorded,
shows a raw byte as `\\xHH`, never `\\\\xHH`."""

import os
import subprocess
import uuid

from conftest import BUILD
from query_data import new_waybill, submit

# the clipboard write, the line erased and the cursor moved up, a fake row, C1 CSI, RLO, "\"
HOSTILE_SQL = ("\\x1b]52;c;aGk=\\x07\\r\\x1b[2K\\x1b[1A\\n999 fake 1 line\\u009bx\\u202ey"
               "\\\\z")
HOSTILE_SHOWN = ("\\x1b]52;c;aGk=\\x07\\x0d\\x1b[2K\\x1b[1A\\x0a999 fake 1 line\\u009bx"
                 "\\u202ey\\\\z")


def hostile(tag):
    """The SQL literal of the hostile value tagged tag, and how the CLI must show it."""
    return "E'%s%s'" % (tag, HOSTILE_SQL), tag + HOSTILE_SHOWN


def ctl_bytes(stack, *args):
    """build/waygatectl with args as the CLI's role: (returncode, stdout, stderr) as bytes (text
    mode would turn a carriage return into a newline and hide it)."""
    env = dict(os.environ, WAYGATE_KEYRING=stack.env["WAYGATE_KEYRING"])
    r = subprocess.run([os.path.join(BUILD, "waygatectl")] + [str(a) for a in args] +
                       ["--db", stack.pguri], capture_output=True, timeout=120, env=env,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def assert_inert(raw):
    """raw is UTF-8 holding no control byte but newline and tab, no DEL, no C1 code point and no
    bidirectional override; returns it decoded."""
    text = raw.decode("utf-8")  # strict: broken UTF-8 would have been \xHH
    for ch in text:
        o = ord(ch)
        assert (o >= 0x20 or ch in "\n\t") and o != 0x7f and not 0x80 <= o <= 0x9f, \
            "raw U+%04X in %r" % (o, text)
        assert ch != "\u202e", "raw U+202E in %r" % text
    return text


def as_gateway(stack, sql):
    return stack.psql(sql, uri=stack.pguri_gateway)


def test_incidents_list_escapes_what_the_gateway_role_wrote(stack):
    p_sql, p_shown = hostile("p")
    d_sql, d_shown = hostile("d")
    v_sql, v_shown = hostile("v")
    b_sql, b_shown = hostile("b")
    as_gateway(stack, "INSERT INTO incident (severity, kind, principal, peer, branch, detail) "
               "VALUES ('low', 'it_escape', %s, %s, %s, %s)" % (p_sql, v_sql, b_sql, d_sql))
    [rows] = stack.psql("SELECT count(*) FROM incident")
    rc, out, err = ctl_bytes(stack, "incidents", "list", "--limit", "100000")
    assert rc == 0, err
    text = assert_inert(out)
    assert_inert(err)
    for shown in (p_shown, v_shown, b_shown, d_shown):
        assert shown in text, text
    lines = text.splitlines()
    assert len(lines) == 1 + int(rows), text  # the header and one line per row: none injected
    assert not any(ln.startswith("999 fake") for ln in lines)


def test_outbox_list_parked_escapes_a_park_reason(stack):
    record_id = submit(stack, new_waybill(stack, "a"))
    r_sql, r_shown = hostile("r")
    # enqueued again and parked through the gateway's role, as its forwarder parks one; under a
    # lease of its own meanwhile, so that no forwarder of the stack delivers it first
    [oid] = as_gateway(stack, "INSERT INTO outbox (kind, waybill_id, lease_owner, lease_until) "
                       "VALUES (1, '%s', 'it-escape', now() + interval '1 hour') RETURNING id"
                       % record_id)
    as_gateway(stack, "UPDATE outbox SET parked_at = now(), park_reason = %s, lease_owner = NULL, "
               "lease_until = NULL WHERE id = %s" % (r_sql, oid))
    [rows] = stack.psql("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL")
    rc, out, err = ctl_bytes(stack, "outbox", "list-parked", "--limit", "100000", "--actor",
                             "it-escape")
    assert rc == 0, err
    text = assert_inert(out)
    assert_inert(err)
    assert r_shown in text, text
    assert len(text.splitlines()) == 1 + int(rows), text
    stack.psql("DELETE FROM outbox WHERE id = %s" % oid)


def test_export_trace_escapes_a_bulk_requests_text(stack, tmp_path):
    rid, xid = uuid.uuid4(), uuid.uuid4()
    fields = {k: hostile(k[:2]) for k in ("purpose", "legal_basis", "destination", "requester",
                                          "approver")}
    # as the gateway writes one (sql/047 lets no row in but a pending one, and moves it only
    # forward): requested, approved, run
    as_gateway(stack, "INSERT INTO bulk_request (id, operation, purpose, legal_basis, destination, "
               "requester, requester_role, record_count, state) VALUES ('%s', 'export', "
               "%s, %s, %s, %s, 'system_admin', 1, 'pending')"
               % (rid, fields["purpose"][0], fields["legal_basis"][0], fields["destination"][0],
                  fields["requester"][0]))
    as_gateway(stack, "UPDATE bulk_request SET state = 'approved', approver = %s, "
               "approver_role = 'security_admin', decided_at = now(), "
               "expires_at = now() + interval '1 hour' WHERE id = '%s'"
               % (fields["approver"][0], rid))
    as_gateway(stack, "UPDATE bulk_request SET state = 'executed', run_at = now(), "
               "export_id = '%s' WHERE id = '%s'" % (xid, rid))
    sealed = tmp_path / "leaked.wgx"
    sealed.write_bytes(b"WGXSEAL1" + xid.bytes + bytes(48))  # a sealed file's header naming it
    rc, out, err = ctl_bytes(stack, "export", "trace", sealed, "--keyring",
                             stack.env["WAYGATE_KEYRING"])
    # the gateway's chain holds no record of it: the trace says so and fails (exit 1)
    assert rc == 1, err
    text = assert_inert(out)
    assert_inert(err)
    for _, shown in fields.values():
        assert shown in text, text
    # export, request, requested by, approved by, run at, purpose, legal basis, destination, the
    # three things the chain does not confirm (names escaped there too), the note on the chain
    lines = text.splitlines()
    assert len(lines) == 12, text
    assert [l.split(" by ")[0] for l in lines[8:11]] == [
        "  the audit chain does not confirm the request",
        "  the audit chain does not confirm the approval",
        "  the audit chain does not confirm the run of export %s" % xid], text


def test_report_failure_escapes_the_servers_words_once(stack):
    """A count that fails with a message quoting hostile text (report_suspicious() set aside for
    the test and stood in for by one that raises it): `report monthly` prints "the database
    refused: " and the server's words escaped exactly once (gw_pq_msg escaped them; ctl_report.c
    escaped them again: ESC came out as `\\\\x1b`), records the same words as the failure's
    detail, and prints no report."""
    from test_report import this_month
    month = this_month()
    msg_sql = "q\\x1b]52;c;aGk=\\x07\\x1b[2K\\u009bx\\u202ey\\\\z"
    shown = "q\\x1b]52;c;aGk=\\x07\\x1b[2K\\u009bx\\u202ey\\\\z"
    [schema] = stack.psql("SELECT pronamespace::regnamespace FROM pg_proc WHERE oid = "
                          "'report_suspicious()'::regprocedure")
    stack.psql("ALTER FUNCTION %s.report_suspicious() RENAME TO report_suspicious_it_aside; "
               "CREATE FUNCTION %s.report_suspicious() RETURNS bigint LANGUAGE plpgsql AS "
               "$fn$ BEGIN RAISE EXCEPTION '%%', E'%s'; END $fn$; "
               "GRANT EXECUTE ON FUNCTION %s.report_suspicious() TO PUBLIC"
               % (schema, schema, msg_sql, schema))
    try:
        rc, out, err = ctl_bytes(stack, "report", "monthly", "--month", month, "--actor",
                                 "it-escape")
    finally:
        stack.psql("DROP FUNCTION %s.report_suspicious(); ALTER FUNCTION "
                   "%s.report_suspicious_it_aside() RENAME TO report_suspicious"
                   % (schema, schema))
    assert (rc, out) == (1, b""), err
    text = assert_inert(err)
    assert text.startswith("waygatectl report monthly: the database refused: ") and \
        text.count("\n") == 1, text
    why = text.strip().split(": ", 1)[1]
    assert shown in why, why  # once: "\\x1b", a backslash "\\\\"
    assert "\\\\x" not in why and "\\\\u" not in why, why  # not twice
    [detail] = stack.psql("SELECT detail FROM audit_record WHERE chain = 'ctl' AND action = "
                          "'report.generate' AND object = '%s' AND actor = 'it-escape' AND "
                          "outcome = 'failed' ORDER BY seq DESC LIMIT 1" % month)
    assert detail == why
