"""The gateway's own actions in the audit chain (Art. 33, 31, 34, 35, 38, 17): logins (ok and
failed), password changes, account creation, disabling and the inactivity sweep, refused
administrative calls, incidents and configuration reloads each leave an audit_record row naming
who (actor, role), where (peer, certificate principal, branch), what (action, object) and the
outcome; and an account change and its record commit together: with the gateway's INSERT on
audit_record revoked, DisableAccount, CreateAccount, ChangePassword and Login fail and change
nothing.

Each test creates its own accounts (as the dev stack's security admin) and finds its records by
the account's unique name, or by time for records without one. A record written after the call
has answered (a refusal's) is polled for with a bound, never waited for by sleeping."""

import http.client
import os
import re
import signal
import socket
import uuid

import grpc
import pytest

import waygate_proto

from conftest import ExtraGateway, free_port, scrape_metrics, wait_for
from test_accounts import (CHANGE, CREATE, DISABLE, REFUSED, Admin, change, login, password,
                           ready, unique)
from test_foundation import SecondGateway, rpc_error

FIELDS = "actor, role, peer IS NOT NULL, cert, branch, action, object, outcome, detail"


@pytest.fixture
def admin(stack):
    return Admin(stack)


def records(stack, where, since=0):
    """The audit records matching where (SQL), oldest first, as 'actor|role|t|cert|branch|action|
    object|outcome|detail' lines (peer only as present or not: its port varies)."""
    return stack.psql("SELECT %s FROM audit_record WHERE at_us > %d AND (%s) ORDER BY at_us, seq"
                      % (FIELDS, since, where))


def now_us(stack):
    return int(stack.psql("SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint")[0])


def poll(stack, where, n, since=0, timeout=15):
    """The records of where once there are at least n (bounded)."""
    rows = wait_for(lambda: (lambda r: r if len(r) >= n else None)(records(stack, where, since)),
                    timeout)
    assert rows, "fewer than %d audit records for %s: %r" % (n, where,
                                                             records(stack, where, since))
    return rows


# --- logins and passwords ---

def test_login_ok_and_failures_are_recorded(stack, admin):
    name = unique("au-lg-")
    pw = admin.create(name, "branch_clerk", branch="a")
    since = now_us(stack)
    # a wrong password, then the right one
    e = rpc_error(lambda: login(stack, name, password(), "branch_a"))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    assert login(stack, name, pw, "branch_a").token
    # committed with the login's effect: there when the call answers
    assert records(stack, "object = '%s'" % name, since) == [
        "branch_a|branch_clerk|t|branch_a|a|login.fail|%s|refused|credentials" % name,
        "%s|branch_clerk|t|branch_a|a|login.ok|%s|ok|password must change" % (name, name),
    ]


def test_login_failure_class_is_the_same_for_every_cause(stack, admin):
    """unknown, wrong, locked, disabled, and a certificate the account cannot be used over: one
    detail (the administrative record keeps the cause); an unknown name is not kept as the
    object (it may be a mistyped password)."""
    locked, disabled, known = unique("au-lk-"), unique("au-ds-"), unique("au-wp-")
    # of branch b: over branch_b's certificate each is refused for its own cause (an account of
    # another branch would be refused for the certificate, before anything else)
    pw_locked = admin.create(locked, "branch_clerk", branch="b")
    pw_dis = admin.create(disabled, "branch_clerk", branch="b")
    admin.create(known, "branch_clerk", branch="b")
    other = unique("au-ob-")  # of branch a: never usable over branch_b's certificate
    pw_other = admin.create(other, "branch_clerk", branch="a")
    admin.disable(disabled)
    stack.psql("UPDATE account SET locked_until = now() + interval '10 minutes' WHERE name = '%s'"
               % locked)
    since = now_us(stack)
    for acct, pw in ((locked, pw_locked), (disabled, pw_dis), (known, password()),
                     (unique("au-nx-"), password()), (other, pw_other)):
        e = rpc_error(lambda: login(stack, acct, pw, "branch_b"))
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    rows = records(stack, "action = 'login.fail' AND cert = 'branch_b'", since)
    assert rows == ["branch_b|branch_clerk|t|branch_b|b|login.fail|%s|refused|credentials" % o
                    for o in (locked, disabled, known, "", other)]


def test_lockout_is_an_incident(stack, admin):
    """Repeated authentication failures (Art. 17): the failure that locks the account is an
    incident (once per lock), its row and its record written together."""
    name = unique("au-lo-")
    admin.create(name, "branch_clerk", branch="a")
    since = now_us(stack)
    for _ in range(6):  # five lock it (the dev stack's lockout_failures), the sixth is refused
        e = rpc_error(lambda: login(stack, name, password(), "branch_a"))
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    rows = poll(stack, "action = 'incident' AND object = 'account_locked' AND actor = 'branch_a'",
                1, since)
    assert rows == ["branch_a|branch_clerk|t|branch_a|a|incident|account_locked|ok|"
                    "severity=medium"]
    assert stack.psql("SELECT principal, severity FROM incident WHERE kind = 'account_locked' AND "
                      "detail LIKE 'account %s locked%%'" % name) == ["branch_a|medium"]
    assert len(records(stack, "action = 'login.fail' AND object = '%s'" % name, since)) == 6


def test_password_change_is_recorded(stack, admin):
    name = unique("au-pw-")
    since = now_us(stack)
    pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    assert records(stack, "action = 'password.change' AND object = '%s'" % name, since) == [
        "%s|branch_clerk|t|branch_a|a|password.change|%s|ok|other sessions of the account ended"
        % (name, name)]
    # a wrong old password: refused, and recorded as such (after the answer: polled)
    e = rpc_error(lambda: change(stack, md, "branch_a", password(), password()))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    rows = poll(stack, "action = 'password.change' AND object = '%s' AND outcome = 'refused'"
                % name, 1, since)
    assert rows[0].startswith("%s|branch_clerk|t|branch_a|a|password.change|%s|refused|"
                              "old_password: " % (name, name)), rows


# --- accounts ---

def test_account_create_and_disable_are_recorded(stack, admin):
    name = unique("au-ac-")
    since = now_us(stack)
    admin.create(name, "branch_clerk", branch="b")
    admin.disable(name, reason="moved to another branch")
    rows = records(stack, "object = '%s'" % name, since)
    assert rows == [
        "secadmin|security_admin|t|admin||account.create|%s|ok|role=branch_clerk branch=b" % name,
        "secadmin|security_admin|t|admin||account.disable|%s|ok|sessions ended; reason in the "
        "account row" % name,
    ]
    # the staff's free-text reason stays out of the chain
    assert stack.psql("SELECT count(*) FROM audit_record WHERE detail LIKE '%another branch%'") \
        == ["0"]
    # a refused creation (the name is taken) is recorded as refused
    e = rpc_error(lambda: admin.create(name, "branch_clerk", branch="b"))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS
    rows = poll(stack, "object = '%s' AND outcome = 'refused'" % name, 1, since)
    assert rows[0].startswith("secadmin|security_admin|t|admin||account.create|%s|refused|account:"
                              % name), rows


def test_an_administrator_role_asked_of_the_api_is_refused_and_recorded(stack, admin):
    """Admin.CreateAccount creates none of the three administrator roles (the operator's CLI
    does, where one person's second such role is refused and an incident: test_accounts_ctl.py);
    the refusal is an account.create record, refused, naming the rule."""
    second = unique("au-sys-")
    since = now_us(stack)
    e = rpc_error(lambda: stack.unary(CREATE, stack.pb.admin.CreateAccountRequest(
        account=second, role="system_admin", initial_password=password(),
        person=unique("au-staff-")), stack.pb.admin.CreateAccountResponse, principal="admin",
        metadata=admin.md))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    rows = poll(stack, "object = '%s'" % second, 1, since)
    assert rows[0].startswith("secadmin|security_admin|t|admin||account.create|%s|refused|role: "
                              "security_admin, system_admin, compliance_auditor and lawful_access "
                              "are created only by waygatectl" % second), rows


def test_inactive_disable_is_recorded(stack, admin):
    name = unique("au-idle-")
    ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    stack.psql("UPDATE account SET last_used_at = now() - interval '91 days' WHERE name = '%s'"
               % name)
    since = now_us(stack)
    gw2 = SecondGateway(stack, "audit_sweep", "[auth]\ninactive_check_ms = 1000\n[server]")
    try:
        rows = poll(stack, "object = '%s' AND action = 'account.disable_inactive'" % name, 1,
                    since, timeout=30)
        assert rows == ["gateway||f|||account.disable_inactive|%s|ok|unused for more than 90 "
                        "days (Art. 38)" % name]
        assert stack.psql("SELECT disabled_by FROM account WHERE name = '%s'" % name) \
            == ["gateway"]
    finally:
        gw2.close()


# --- refused administrative calls ---

def test_refused_administrative_calls_are_recorded(stack, admin):
    name = unique("au-rf-")
    _, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    since = now_us(stack)
    req = stack.pb.admin.CreateAccountRequest(account=unique("au-x-"), role="branch_clerk",
                                              branch="a", initial_password=password())
    # a clerk's token: the policy refuses
    e = rpc_error(lambda: stack.unary(CREATE, req, stack.pb.admin.CreateAccountResponse,
                                      principal="branch_a", metadata=md))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    rows = poll(stack, "action = 'admin.refused' AND actor = '%s'" % name, 1, since)
    assert rows[0].startswith("%s|branch_clerk|t|branch_a|a|admin.refused|CreateAccount|refused|"
                              % name), rows
    # the administration certificate without a person's token
    e = rpc_error(lambda: stack.unary(DISABLE, stack.pb.admin.DisableAccountRequest(
        account="clerk_b", reason="x"), stack.pb.admin.DisableAccountResponse, principal="admin"))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    rows = poll(stack, "action = 'admin.refused' AND actor = 'admin'", 1, since)
    assert rows[0].startswith("admin|security_admin|t|admin||admin.refused|DisableAccount|"
                              "refused|authorization: "), rows


def test_a_flood_of_refusals_is_counted_not_chained(stack):
    """A caller repeating a refused Admin call cannot grow the append-only trail at its own pace
    (nor fill the audit writer's queue): per window ([audit] refusal_window_s, here an hour) the
    first GW_REFUSALS_EACH (8) refusals of a kind are recorded on their own, the rest are counted
    into one record, written when the window ends or, as here, when the gateway stops. Every
    refusal is in the trail: the records' counts add up to the calls."""
    calls, alone = 200, 8
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        metrics_port = sk.getsockname()[1]
    gw = ExtraGateway(stack, unique("rf-flood"), lambda text: re.sub(
        r"(?m)^\[metrics\]$", "[metrics]\nlisten = 127.0.0.1:%d" % metrics_port,
        text.rstrip("\n") + "\nrefusal_window_s = 3600\n"))
    ch = stack.channel("courier_a", addr=gw.addr)
    req = stack.pb.admin.CreateAccountRequest(account="x", role="branch_clerk", branch="a",
                                              initial_password=password())
    where = ("chain = '%s' AND action = 'admin.refused' AND actor = 'courier_a' AND object = "
             "'CreateAccount'" % gw.chain)
    q = "SELECT count(*), coalesce(sum(coalesce(count, 1)), 0) FROM audit_record WHERE " + where
    try:
        for _ in range(calls):
            e = rpc_error(lambda: waygate_proto.unary(ch, CREATE, req,
                                                      stack.pb.admin.CreateAccountResponse))
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert wait_for(lambda: stack.psql(q) == ["%d|%d" % (alone, alone)], 15), stack.psql(q)
        c = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=30)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        assert re.search(r"(?m)^waygate_audit_refusals_counted_total %d$" % (calls - alone),
                         text), [x for x in text.splitlines() if "refusals" in x]
    finally:
        gw.close()  # SIGTERM: the counted refusals are recorded before it exits
    assert stack.psql(q) == ["%d|%d" % (alone + 1, calls)]
    last = stack.psql("SELECT count, detail FROM audit_record WHERE %s AND count IS NOT NULL"
                      % where)
    assert len(last) == 1 and last[0].startswith("%d|role courier: " % (calls - alone)), last
    assert last[0].endswith("[%d such refusals within 3600 s, counted in this record]"
                            % (calls - alone)), last
    logged = stack.psql("SELECT count(*) FROM admin_log WHERE cert = 'courier_a' AND action = "
                        "'CreateAccount' AND detail LIKE '%%such refusals within 3600 s%%'")
    assert int(logged[0]) >= 1
    assert ("drained: exiting, 0 incident(s) not written, 0 audit entries not written, 0 counted "
            "refusal(s) not recorded") in gw.log()
    # and the last record, the counting one, is covered by a checkpoint signed before the exit
    assert stack.psql("SELECT (SELECT max(seq) FROM audit_checkpoint WHERE chain = '%s') >= "
                      "(SELECT max(seq) FROM audit_record WHERE chain = '%s')"
                      % (gw.chain, gw.chain)) == ["t"]


def test_counted_refusals_not_recorded_at_shutdown_are_said(stack):
    """Counted refusals whose record the audit trail does not take before the gateway stops are
    not dropped silently: an error line says so, and the exit line counts them. Here a trigger,
    put in as the owner, refuses the counting record's administrative row."""
    calls, alone = 40, 8
    gw = ExtraGateway(stack, unique("rf-lost"),
                      lambda text: text.rstrip("\n") + "\nrefusal_window_s = 3600\n")
    ch = stack.channel("courier_a", addr=gw.addr)
    req = stack.pb.admin.CreateAccountRequest(account="x", role="branch_clerk", branch="a",
                                              initial_password=password())
    stack.psql("CREATE FUNCTION it_refuse_counts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               "IF NEW.detail LIKE '%such refusals within%' THEN RAISE EXCEPTION 'no'; END IF; "
               "RETURN NEW; END $$; CREATE TRIGGER it_refuse_counts BEFORE INSERT ON admin_log "
               "FOR EACH ROW EXECUTE FUNCTION it_refuse_counts()")
    try:
        for _ in range(calls):
            e = rpc_error(lambda: waygate_proto.unary(ch, CREATE, req,
                                                      stack.pb.admin.CreateAccountResponse))
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        gw.close()
    finally:
        gw.close()
        stack.psql("DROP TRIGGER it_refuse_counts ON admin_log; DROP FUNCTION it_refuse_counts()")
    log = gw.log()
    assert ("%d counted refusal(s) not recorded" % (calls - alone)) in log, log[-2000:]
    assert "the record of %d counted refusal(s) was not written at shutdown" % (calls - alone) \
        in log, log[-2000:]


def test_probes_past_a_callers_share_of_kinds_are_named_or_counted(stack):
    """A caller's refusals of more kinds than its share (64 a window, refusals.h) are counted in
    one call.refused record; that record still names what was probed: here GetBulk of 84 unknown
    ids, 64 recorded on their own (one kind each), the 20 past the share each named in the
    counting record with its count, as many as its bounded list holds, and the others counted
    there in so many words. Red without the list: the record named none of them."""
    share, past = 64, 20
    gw = ExtraGateway(stack, unique("rf-objs"),
                      lambda text: text.rstrip("\n") + "\nrefusal_window_s = 3600\n")
    pb = stack.pb.compliance
    ch = stack.channel(stack.account("secadmin")[2], addr=gw.addr)
    md = stack.login("secadmin")
    ids = [str(uuid.uuid4()) for _ in range(share + past)]
    try:
        for i in ids:
            e = rpc_error(lambda: waygate_proto.unary(ch, "/waygate.v1.Compliance/GetBulk",
                                                      pb.GetBulkRequest(request_id=i),
                                                      pb.BulkRequestView, metadata=md))
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
    finally:
        gw.close()  # the counting record is written at the stop
    alone = stack.psql("SELECT object FROM audit_record WHERE chain = '%s' AND "
                       "action = 'bulk.view' AND outcome = 'refused'" % gw.chain)
    assert sorted(alone) == sorted(ids[:share])
    [row] = stack.psql("SELECT actor, count, detail FROM audit_record WHERE chain = '%s' AND "
                       "action = 'call.refused'" % gw.chain)
    actor, count, detail = row.split("|", 2)
    assert (actor, count) == ("secadmin", str(past)), row
    named = [i for i in ids[share:] if "bulk.view %s (1)" % i in detail]
    assert len(named) >= 5 and named == ids[share:share + len(named)], detail
    cut = past - len(named)
    assert detail.endswith("; %d refusal(s) of objects not named (the list holds 640 bytes)]"
                           % cut), detail
    assert len(detail.encode()) <= 1024


# --- configuration reload ---

def test_config_reload_is_recorded(stack):
    since = now_us(stack)
    os.kill(stack.gateway_pid(), signal.SIGHUP)
    rows = poll(stack, "action = 'config.reload'", 1, since)
    assert len(rows) == 1
    assert rows[0].startswith("gateway||t|||config.reload|SIGHUP|ok|reloaded: keyring: current "
                              "KEK version"), rows
    # the dev stack forwards to its sink: the forwarder's own TLS files were read again too
    assert rows[0].endswith("; tls: certificates and CRL; forward tls: certificates and CRL"), rows


def test_a_reload_that_changes_a_restart_only_key_is_refused(stack):
    """A reload applies the TLS files, the keyring and the policy file; a key nothing reads after
    the start ([database] pool_size here) changed in the file refuses the whole reload: the log
    names it, the config.reload record's outcome is failed, and nothing else of the file is taken
    either (the CRL dropped with it stays in force). Put back, the next SIGHUP reloads. Red
    before: the changed pool size was ignored and the record said ok."""
    from test_crl import refused_at_tls
    gw = ExtraGateway(stack, "reload_restart_key")
    where = "action = 'config.reload' AND chain = '%s'" % gw.chain
    q = "SELECT outcome, detail FROM audit_record WHERE %s ORDER BY seq" % where
    try:
        with open(gw.conf) as f:
            good = f.read()
        bad = re.sub(r"(?m)^pool_size\s*=.*$", "pool_size = 3", good, count=1)
        bad = re.sub(r"(?m)^crl\s*=.*\n", "", bad, count=1)
        assert bad != good and "pool_size = 3" in bad
        with open(gw.conf, "w") as f:
            f.write(bad)
        gw.proc.send_signal(signal.SIGHUP)
        rows = wait_for(lambda: stack.psql(q), 30)
        assert rows == ["failed|nothing reloaded: changed, needs a restart: [database] pool_size"], \
            rows
        log = gw.log()
        assert "SIGHUP: [database] pool_size changed, needs a restart" in log, log[-2000:]
        assert "SIGHUP: nothing reloaded, the running configuration stays" in log
        assert "[tls] crl changed" not in log  # a reload reads the CRL: not a restart's key
        assert gw.proc.poll() is None
        assert stack.health("courier_a", addr=gw.addr) == "SERVING"
        assert refused_at_tls(gw, *stack.cert("revoked"))  # the running CRL still in force
        with open(gw.conf, "w") as f:
            f.write(good)
        gw.proc.send_signal(signal.SIGHUP)
        rows = wait_for(lambda: [r for r in stack.psql(q) if r.startswith("ok|")], 30)
        assert len(rows) == 1 and rows[0].startswith("ok|reloaded: keyring: "), rows
    finally:
        gw.close()


def test_a_reload_while_the_database_is_down_is_recorded_once_it_is_back(stack):
    """PostgreSQL stopped, a gateway reloads (SIGHUP): nobody waits for its config.reload record,
    so the record waits in the gateway (the writer retries its recovery meanwhile) and is written,
    once, after PostgreSQL is back. Red before: the writer failed it at once (UNAVAILABLE) and
    only the log said it was not written."""
    maddr = "127.0.0.1:%d" % free_port()
    gw = ExtraGateway(stack, "reload_outage",
                      edit=lambda text: text + "\n[metrics]\nlisten = %s\n" % maddr)
    where = "action = 'config.reload' AND chain = '%s'" % gw.chain
    stopped = False
    try:
        stack.devstack("pg-stop")
        stopped = True
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "SIGHUP: policy reloaded" in gw.log(), 30), gw.log()[-2000:]
        # the record waits in the writer's queue (its send found no connection)
        assert wait_for(lambda: scrape_metrics(maddr)["waygate_audit_queued"] == 1, 30), \
            gw.log()[-2000:]
        stack.devstack("pg-start")
        stopped = False
        rows = poll(stack, where, 1, timeout=60)
        assert len(rows) == 1 and rows[0].startswith(
            "gateway||t|||config.reload|SIGHUP|ok|reloaded: keyring"), rows
        assert "config.reload audit record was not" not in gw.log()
    finally:
        if stopped:
            stack.devstack("pg-start")
        gw.close()
    assert len(records(stack, where)) == 1
    assert wait_for(lambda: stack.health(timeout=2) == "SERVING", timeout=30)


# --- an account change and its record are one transaction ---


def test_change_fails_without_its_record(stack, admin):
    victim, newbie = unique("au-tx-"), unique("au-tn-")
    pw_victim = admin.create(victim, "branch_clerk", branch="a")
    changer = unique("au-tc-")
    pw_changer, md_changer = ready(stack, admin, changer, "branch_clerk", "branch_a", branch="a")
    log_before = int(stack.psql("SELECT coalesce(max(id), 0) FROM admin_log")[0])
    role = stack.psql("SELECT current_database() || '_gateway'")[0]
    with stack.audit_insert_revoked(role):
        # DisableAccount fails, and the account stays enabled with its sessions
        e = rpc_error(lambda: admin.disable(victim))
        assert e.code() == grpc.StatusCode.INTERNAL, e.details()
        assert stack.psql("SELECT disabled_at IS NULL FROM account WHERE name = '%s'" % victim) \
            == ["t"]
        # CreateAccount fails: no account
        e = rpc_error(lambda: admin.create(newbie, "branch_clerk", branch="a"))
        assert e.code() == grpc.StatusCode.INTERNAL, e.details()
        assert stack.psql("SELECT count(*) FROM account WHERE name = '%s'" % newbie) == ["0"]
        # ChangePassword fails: the old password still holds
        e = rpc_error(lambda: change(stack, md_changer, "branch_a", pw_changer, password()))
        assert e.code() == grpc.StatusCode.INTERNAL, e.details()
        # Login fails: no session
        e = rpc_error(lambda: login(stack, victim, pw_victim, "branch_a"))
        assert e.code() == grpc.StatusCode.INTERNAL, e.details()
        assert stack.psql("SELECT count(*) FROM session s JOIN account a ON a.id = s.account_id "
                          "WHERE a.name = '%s'" % victim) == ["0"]
        # and the administrative record has no 'ok' row of any of them
        assert stack.psql("SELECT count(*) FROM admin_log WHERE id > %d AND outcome = 'ok'"
                          % log_before) == ["0"]
    # restored: the same calls succeed, each with its record
    since = now_us(stack)
    assert login(stack, changer, pw_changer, "branch_a").token
    admin.disable(victim)
    assert stack.psql("SELECT disabled_at IS NOT NULL FROM account WHERE name = '%s'" % victim) \
        == ["t"]
    assert [r.split("|")[5] for r in records(stack, "object IN ('%s', '%s')" % (victim, changer),
                                             since)] == ["login.ok", "account.disable"]
