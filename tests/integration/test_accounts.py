"""Accounts, tokens and registered principals on the gateway (Art. 31, 34, 35, 38): Admin.Login,
ChangePassword, CreateAccount and DisableAccount over gRPC, the identity step (registered
certificates, bearer tokens bound to a certificate of the right kind), lockout, expiry, the
password policy, disable taking effect on the very next call on two gateways, the inactivity
sweep, separation of duties (三员) and the administrative record.

Each test creates its own accounts (as the dev stack's security admin `secadmin`, over the
`admin` certificate) so that tests never depend on each other's state. Ages are moved in the
database with the owner's role, never waited for."""

import hashlib
import os
import re
import secrets
import ssl
import subprocess
import threading
import time

import grpc
import pytest

from conftest import (HASHING_DEADLINE, PGBIN, ExtraGateway, bearer, holder_pid, lock_holder,
                      release_holder, wait_for, waiting_on)
from test_faults import superuser_uri
from test_foundation import SecondGateway, rpc_error
from test_metrics import scrape
import waygate_proto

LOGIN = "/waygate.v1.Admin/Login"
CHANGE = "/waygate.v1.Admin/ChangePassword"
CREATE = "/waygate.v1.Admin/CreateAccount"
DISABLE = "/waygate.v1.Admin/DisableAccount"

REFUSED = "login refused: unknown account, wrong password, or account locked or disabled"
TOKEN_INVALID = ("authorization: is not a valid token: unknown, expired, or its account is "
                 "disabled (Art. 38)")
MUST_CHANGE = ("authorization: the password has expired or is an initial one: call "
               "ChangePassword first (Art. 35)")
NOT_REGISTERED = "client certificate: is not a registered, enabled principal (Art. 31)"

_n = [0]


def unique(prefix):
    _n[0] += 1
    return "%s%d%s" % (prefix, _n[0], secrets.token_hex(3))


def password(n=16):
    """A password meeting the policy (four classes), never containing an account name."""
    return "Pw-" + secrets.token_hex(n // 2) + "Z9"


# Roles Admin.CreateAccount refuses (GW_RULE_ROLE_CLI_ONLY): the operator's CLI creates them.
CLI_ONLY = ("security_admin", "system_admin", "compliance_auditor", "lawful_access")
CLI_ONLY_RULE = ("role: security_admin, system_admin, compliance_auditor and lawful_access are "
                 "created only by waygatectl accounts create: no administrator alone makes who "
                 "asks and who decides, or holds two administrator roles (separation of duties, "
                 "Art. 16, 34, 37)")


class Admin:
    """Calls as the dev stack's security admin over the `admin` certificate."""

    def __init__(self, stack):
        self.stack = stack
        self.md = stack.login("secadmin")

    def create(self, name, role, branch="", person="", pw=None):
        """Creates the account: over Admin.CreateAccount, or, for the roles only the operator's
        CLI creates (CLI_ONLY), with waygatectl accounts create on secadmin's behalf (--actor:
        created_by is secadmin either way)."""
        pw = pw or password()
        if role in CLI_ONLY:
            r = self.stack.ctl("accounts", "create", name, "--role", role, "--password-stdin",
                               "--actor", "secadmin", "--db", self.stack.pguri,
                               *(["--person", person] if person else []),
                               input=pw + "\n")
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            return pw
        self.stack.unary(CREATE, self.stack.pb.admin.CreateAccountRequest(
            account=name, role=role, branch=branch, initial_password=pw, person=person),
            self.stack.pb.admin.CreateAccountResponse, principal="admin", metadata=self.md,
            timeout=HASHING_DEADLINE)
        return pw

    def disable(self, name, reason="left the company"):
        return self.stack.unary(DISABLE, self.stack.pb.admin.DisableAccountRequest(
            account=name, reason=reason), self.stack.pb.admin.DisableAccountResponse,
            principal="admin", metadata=self.md)


@pytest.fixture
def admin(stack):
    return Admin(stack)


def login(stack, name, pw, via, addr=None, timeout=HASHING_DEADLINE):
    ch = stack.channel(via, addr=addr)
    return waygate_proto.unary(ch, LOGIN, stack.pb.admin.LoginRequest(account=name, password=pw),
                               stack.pb.admin.LoginResponse, timeout=timeout)


def change(stack, md, via, old, new, addr=None):
    ch = stack.channel(via, addr=addr)
    return waygate_proto.unary(ch, CHANGE, stack.pb.admin.ChangePasswordRequest(
        old_password=old, new_password=new), stack.pb.admin.ChangePasswordResponse,
        timeout=HASHING_DEADLINE, metadata=md)


def ready(stack, admin, name, role, via, branch=""):
    """A new account past its forced first change: returns (current password, token metadata)."""
    pw = admin.create(name, role, branch=branch)
    r = login(stack, name, pw, via)
    assert r.must_change_password
    md = bearer(r.token)
    new = password()
    change(stack, md, via, pw, new)
    return new, bearer(login(stack, name, new, via).token)


def probe(stack, md, via, addr=None):
    """A call any valid token may make, with a stable answer: ChangePassword with an empty
    request (INVALID_ARGUMENT once the caller is identified). Returns (code, details)."""
    ch = stack.channel(via, addr=addr)
    try:
        waygate_proto.unary(ch, CHANGE, b"", None, timeout=20, metadata=md)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


TOKEN_OK = (grpc.StatusCode.INVALID_ARGUMENT, "old_password: is required")


# --- login ---

def test_login_issues_a_token_that_works(stack, admin):
    name = unique("it-ok-")
    pw = admin.create(name, "branch_clerk", branch="a")
    r = login(stack, name, pw, "branch_a")
    assert len(r.token) == 43 and all(c.isalnum() or c in "-_" for c in r.token)
    assert r.must_change_password, "an initial password must be changed"
    assert r.expires_at > 0
    # the session stores only the token's SHA-256, never the token
    rows = stack.psql("SELECT encode(token_hash, 'hex') FROM session s JOIN account a "
                      "ON a.id = s.account_id WHERE a.name = '%s'" % name)
    assert rows == [hashlib.sha256(r.token.encode()).hexdigest()]
    # the token identifies the account: an initial password allows only ChangePassword
    e = rpc_error(lambda: stack.unary(CREATE, b"", None, principal="branch_a",
                                      metadata=bearer(r.token)))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, MUST_CHANGE)
    assert probe(stack, bearer(r.token), "branch_a") == TOKEN_OK


def test_refusal_same_for_unknown_wrong_locked_disabled(stack, admin):
    """One message, one status, whatever the cause (no hint that the account exists)."""
    locked, disabled, known = unique("it-lk-"), unique("it-ds-"), unique("it-wp-")
    pw_locked = admin.create(locked, "branch_clerk", branch="a")
    pw_dis = admin.create(disabled, "branch_clerk", branch="a")
    admin.create(known, "branch_clerk", branch="a")
    admin.disable(disabled)
    stack.psql("UPDATE account SET locked_until = now() + interval '10 minutes' "
               "WHERE name = '%s'" % locked)
    answers = []
    for name, pw in ((unique("it-nobody-"), password()), (known, password()),
                     (locked, pw_locked), (disabled, pw_dis)):
        e = rpc_error(lambda: login(stack, name, pw, "branch_a"))
        answers.append((e.code(), e.details()))
    assert answers == [(grpc.StatusCode.UNAUTHENTICATED, REFUSED)] * 4, answers


def test_five_failures_lock_the_account(stack, admin):
    name = unique("it-lock-")
    pw = admin.create(name, "customer_service", branch="a")
    for i in range(5):
        e = rpc_error(lambda: login(stack, name, password(), "branch_a"))
        assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED), i
    assert stack.psql("SELECT failed_count, locked_until > now() + interval '14 minutes' "
                      "FROM account WHERE name = '%s'" % name) == ["5|t"]
    # the sixth, with the right password, is refused in the same words
    e = rpc_error(lambda: login(stack, name, pw, "branch_a"))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    assert stack.psql("SELECT count(*) FROM session s JOIN account a ON a.id = s.account_id "
                      "WHERE a.name = '%s'" % name) == ["0"]
    # once the lock has run out (moved in the database), the right password works again
    stack.psql("UPDATE account SET locked_until = now() - interval '1 second' WHERE name = '%s'"
               % name)
    assert login(stack, name, pw, "branch_a").token
    assert stack.psql("SELECT failed_count, locked_until IS NULL FROM account WHERE name = '%s'"
                      % name) == ["0|t"]
    rows = stack.psql("SELECT outcome, detail FROM admin_log WHERE action = 'Login' AND "
                      "object = '%s' ORDER BY id" % name)
    assert rows[:5] == ["refused|wrong password"] * 5 and rows[5] == "refused|account locked"
    assert rows[6].startswith("ok|"), rows


def login_state(stack, name):
    """'failed_count|locked' of an account (locked: locked_until in the future)."""
    return stack.psql("SELECT failed_count, coalesce(locked_until > now(), false) FROM account "
                      "WHERE name = '%s'" % name)


def test_guesses_over_a_certificate_the_account_cannot_use_lock_nothing(stack, admin):
    """A registered device can no longer lock any account: courier_a's certificate (a scanner of
    branch a) can never carry the auditor's token (an administrative account is usable only over
    a certificate registered for administration) nor a branch b clerk's (only over branch b's),
    so a Login of either over it is refused before its password is looked at and counts no
    failure. Five wrong guesses (and the right password) over it leave both accounts unlocked,
    and each owner then logs in over its own certificate."""
    auditor, auditor_pw, via = stack.account("auditor")
    clerk = unique("it-far-")
    clerk_pw = admin.create(clerk, "branch_clerk", branch="b")
    first = int(stack.psql("SELECT coalesce(max(id), 0) FROM admin_log")[0])
    try:
        for name, right in ((auditor, auditor_pw), (clerk, clerk_pw)):
            for pw in [password() for _ in range(5)] + [right]:
                e = rpc_error(lambda: login(stack, name, pw, "courier_a"))
                assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
            assert login_state(stack, name) == ["0|f"], name
        assert login(stack, auditor, auditor_pw, via).token
        assert login(stack, clerk, clerk_pw, "branch_b").token
        # recorded like any refused login, the exact cause kept in the administrative record
        rows = stack.psql("SELECT actor, cert, object, outcome, detail FROM admin_log WHERE "
                          "id > %d AND action = 'Login' AND cert = 'courier_a' ORDER BY id" % first)
        assert rows == ["courier_a|courier_a|%s|refused|certificate not usable for the account"
                        % n for n in [auditor] * 6 + [clerk] * 6], rows
    finally:  # the dev stack's auditor is shared with other tests: never leave it counted
        stack.psql("UPDATE account SET failed_count = 0, locked_until = NULL WHERE name = '%s'"
                   % auditor)


def test_refusal_same_for_unusable_certificate_and_unknown_account(stack, admin):
    """Over courier_a: an unknown name, the auditor and secadmin (administrative accounts) with
    their right passwords, and a branch b clerk get the very refusal of every other login,
    status and words; the audit record gives the one class `credentials`."""
    clerk = unique("it-fau-")
    clerk_pw = admin.create(clerk, "customer_service", branch="b")
    cases = [(unique("it-nobody-"), password()), stack.account("auditor")[:2],
             stack.account("secadmin")[:2], (clerk, clerk_pw)]
    answers = []
    for name, pw in cases:
        e = rpc_error(lambda: login(stack, name, pw, "courier_a"))
        answers.append((e.code(), e.details()))
    assert answers == [(grpc.StatusCode.UNAUTHENTICATED, REFUSED)] * 4, answers
    for name, _ in cases[1:]:
        assert login_state(stack, name) == ["0|f"], name
        assert stack.psql("SELECT detail FROM audit_record WHERE action = 'login.fail' AND "
                          "object = '%s' AND cert = 'courier_a' ORDER BY seq DESC LIMIT 1"
                          % name) == ["credentials"]


def test_expired_password_forces_change(stack, admin):
    name = unique("it-exp-")
    pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    assert not login(stack, name, pw, "branch_a").must_change_password
    stack.psql("UPDATE account SET pw_set_at = now() - interval '91 days' WHERE name = '%s'"
               % name)
    r = login(stack, name, pw, "branch_a")
    assert r.must_change_password
    for token_md in (bearer(r.token), md):  # a token issued before the expiry is held too
        e = rpc_error(lambda: stack.unary(CREATE, b"", None, principal="branch_a",
                                          metadata=token_md))
        assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, MUST_CHANGE)
    new = password()
    resp = change(stack, bearer(r.token), "branch_a", pw, new)
    assert resp.expires_at > 0
    r2 = login(stack, name, new, "branch_a")
    assert not r2.must_change_password
    e = rpc_error(lambda: stack.unary(CREATE, b"", None, principal="branch_a",
                                      metadata=bearer(r2.token)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.details()  # the role's answer again


def test_password_policy(stack, admin):
    name = unique("it-pol-")
    pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")

    def refused(new, old=None):
        e = rpc_error(lambda: change(stack, md, "branch_a", old or pw, new))
        return e.code(), e.details()

    inv = grpc.StatusCode.INVALID_ARGUMENT
    assert refused("Ab1-short") == (inv, "new_password: must be at least 12 characters long "
                                         "(Art. 35)")
    assert refused("abcdefghijklmnop")[0] == inv
    assert refused("abcdefghijklmnop")[1].startswith("new_password: must mix at least three of")
    assert refused("Xy9-" + name + "-Q") == (inv, "new_password: must not contain the account "
                                                  "name (Art. 35)")
    reused = (inv, "new_password: must differ from the current and the last five passwords "
                   "(Art. 35)")
    assert refused(pw) == reused  # the current one
    e = rpc_error(lambda: change(stack, md, "branch_a", password(), password()))
    assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                       "old_password: is not the account's current password")
    # six changes: the history keeps the five before the current one
    history = [pw]
    for _ in range(6):
        new = password()
        change(stack, md, "branch_a", history[-1], new)
        history.append(new)
    pw = history[-1]
    for old in history[-6:-1]:  # each of the last five
        assert refused(old) == reused
    assert stack.psql("SELECT count(*) FROM account_password_history h JOIN account a ON "
                      "a.id = h.account_id WHERE a.name = '%s'" % name) == ["5"]
    change(stack, md, "branch_a", pw, history[-7])  # the sixth back is allowed again


def test_change_password_ends_other_sessions(stack, admin):
    name = unique("it-ses-")
    pw, md_other = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    md = bearer(login(stack, name, pw, "branch_a").token)
    change(stack, md, "branch_a", pw, password())
    assert probe(stack, md, "branch_a") == TOKEN_OK
    assert probe(stack, md_other, "branch_a") == (grpc.StatusCode.UNAUTHENTICATED, TOKEN_INVALID)


LOCKED_OLD = ("old_password: is not checked while the account is locked after repeated wrong "
              "passwords: retry later (Art. 35)")


def test_wrong_old_passwords_lock_the_account(stack, admin):
    """A captured token is no password oracle (Art. 35): wrong old passwords given to
    ChangePassword count towards the lockout as failed logins do, the failure that locks is an
    account_locked incident, and while the account is locked ChangePassword checks no password
    (FAILED_PRECONDITION, before any hashing), the right one included. Before, a token's holder
    could try passwords through ChangePassword for as long as the token lived, none counted."""
    name = unique("it-cpl-")
    pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    wrong = (grpc.StatusCode.PERMISSION_DENIED,
             "old_password: is not the account's current password")
    for i in range(5):
        e = rpc_error(lambda: change(stack, md, "branch_a", password(), password()))
        assert (e.code(), e.details()) == wrong, i
    assert login_state(stack, name) == ["5|t"]
    assert wait_for(lambda: stack.psql("SELECT count(*) FROM incident WHERE kind = "
                                       "'account_locked' AND detail LIKE 'account %s locked%%'"
                                       % name) == ["1"], timeout=15)
    e = rpc_error(lambda: change(stack, md, "branch_a", pw, password()))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, LOCKED_OLD)
    e = rpc_error(lambda: login(stack, name, pw, "branch_a"))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    assert stack.psql("SELECT outcome, detail FROM admin_log WHERE action = 'ChangePassword' "
                      "AND object = '%s' AND outcome = 'refused' ORDER BY id" % name) == [
        "refused|" + wrong[1]] * 5 + ["refused|" + LOCKED_OLD]
    # the lock run out (moved in the database): the password was never changed, and a right
    # change clears the count
    stack.psql("UPDATE account SET locked_until = now() - interval '1 second' WHERE name = '%s'"
               % name)
    e = rpc_error(lambda: change(stack, md, "branch_a", password(), password()))
    assert (e.code(), e.details()) == wrong
    assert login_state(stack, name) == ["1|f"]
    change(stack, md, "branch_a", pw, password())
    assert login_state(stack, name) == ["0|f"]


def test_a_lock_taken_after_a_change_was_read_changes_nothing(stack, admin):
    """ChangePassword with the right old password, read before the account locked and written
    after (several guesses sent at once over a stolen token: the failures of the others lock the
    account while this one is hashed): the lock holds, nothing changes, and the answer is a wrong
    old password's, so the guesser does not learn that this guess was right. Here the lock is
    committed by the test while the change's write waits for the account row. Before, the write
    checked no lock: the password changed and the lock was cleared."""
    name = unique("it-cplr-")
    pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    before = stack.psql("SELECT pw_set_at FROM account WHERE name = '%s'" % name)
    holder = lock_holder(stack, "UPDATE account SET locked_until = now() + interval '15 minutes' "
                         "WHERE name = '%s'" % name)
    result = {}

    def attempt():
        try:
            change(stack, md, "branch_a", pw, password())
            result["code"] = grpc.StatusCode.OK
        except grpc.RpcError as e:
            result["code"], result["details"] = e.code(), e.details()
    t = threading.Thread(target=attempt)
    try:
        t.start()
        su = superuser_uri(stack)
        pid = holder_pid(holder)
        assert wait_for(lambda: any("SET pw_hash" in q for q in waiting_on(stack, pid, su)),
                        HASHING_DEADLINE), "the change's write never waited for the account row"
        holder.stdin.write("COMMIT;\n")
        holder.stdin.flush()
    finally:
        release_holder(holder)
        t.join(HASHING_DEADLINE)
    assert (result.get("code"), result.get("details")) == (
        grpc.StatusCode.PERMISSION_DENIED, "old_password: is not the account's current password")
    assert stack.psql("SELECT pw_set_at FROM account WHERE name = '%s'" % name) == before
    assert login_state(stack, name)[0].endswith("|t")  # still locked


def test_a_login_in_flight_across_a_password_change_issues_no_session(stack, admin):
    """A login verified against the old password, written after the password changed (a
    ChangePassword committed between the login's read and its write, here on another gateway,
    played by the owner's psql), issues no session: before, the session was inserted after the
    change had ended the account's sessions, so whoever knew the old password kept a token the
    change was meant to end. The login's write is held on the account row's lock until the
    change commits, so the race is forced, not hoped for."""
    name = unique("it-pwr-")
    pw, _ = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    holder = lock_holder(stack, "SELECT 1 FROM account WHERE name = '%s' FOR UPDATE" % name)
    result = {}

    def run():
        try:
            result["token"] = login(stack, name, pw, "branch_a").token
        except grpc.RpcError as e:
            result["error"] = (e.code(), e.details())

    t = threading.Thread(target=run)
    try:
        pid = holder_pid(holder)
        t.start()
        # the login has read the account, verified the old password and its write (store's
        # login_ok_sql) waits on the row this holder locked, not any other test's lock
        assert wait_for(lambda: [q for q in waiting_on(stack, pid, superuser_uri(stack))
                                 if q.startswith("UPDATE account SET failed_count = 0, ")],
                        timeout=HASHING_DEADLINE)
        holder.stdin.write("UPDATE account SET pw_hash = sha256('%s-new'::bytea), pw_set_at = "
                           "now() WHERE name = '%s';\nDELETE FROM session WHERE account_id = "
                           "(SELECT id FROM account WHERE name = '%s');\nCOMMIT;\n"
                           % (name, name, name))
        holder.stdin.flush()
        t.join(timeout=60)
    finally:
        release_holder(holder)
        t.join(timeout=60)
    assert result.get("error") == (grpc.StatusCode.UNAUTHENTICATED, REFUSED), result
    assert sessions_of(stack, name) == 0
    assert stack.psql("SELECT outcome, detail FROM admin_log WHERE action = 'Login' AND "
                      "object = '%s' ORDER BY id DESC LIMIT 1" % name) == [
        "refused|account disabled, locked or its password changed during the login"]


def test_a_login_hashes_again_a_password_hashed_under_other_parameters(stack, admin):
    """An account whose password was hashed under other scrypt parameters than the gateway's
    [auth] scrypt_n (made with waygatectl's --scrypt-n, or before scrypt_n was raised) costs a
    Login another time than an unknown name's dummy hash: its existence showed in the time of a
    refusal. A right password now hashes it again under the gateway's parameters, in the login's
    transaction, with the password's age and history unchanged; a wrong one changes nothing."""
    name, fresh = unique("it-rh-"), unique("it-rh-ref-")
    admin.create(fresh, "branch_clerk", branch="a")  # hashed by the gateway: its parameters
    gateway_params = stack.psql("SELECT pw_params FROM account WHERE name = '%s'" % fresh)[0]
    pw = password()
    r = stack.ctl("accounts", "create", name, "--role", "branch_clerk", "--branch", "a",
                  "--person", unique("it-person-"), "--password-stdin", "--scrypt-n", "1024",
                  "--actor", "secadmin", "--db", stack.pguri, input=pw + "\n")
    assert r.returncode == 0, r.stderr
    state = ("SELECT pw_params, encode(pw_hash, 'hex'), encode(pw_salt, 'hex'), pw_set_at, "
             "(SELECT count(*) FROM account_password_history h WHERE h.account_id = a.id) "
             "FROM account a WHERE name = '%s'" % name)
    before = stack.psql(state)[0].split("|")
    assert before[0] == "scrypt:N=1024,r=8,p=1" != gateway_params
    e = rpc_error(lambda: login(stack, name, password(), "branch_a"))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    assert stack.psql(state)[0].split("|") == before, "a wrong password changed the hash"
    # nor does the right one while the account is locked: its second hash would have told the
    # right password from a wrong one by the time of the refusal, the lock counting neither
    stack.psql("UPDATE account SET locked_until = now() + interval '10 minutes' WHERE name = '%s'"
               % name)
    e = rpc_error(lambda: login(stack, name, pw, "branch_a"))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    assert stack.psql(state)[0].split("|") == before, "a locked account's hash changed"
    stack.psql("UPDATE account SET locked_until = NULL, failed_count = 0 WHERE name = '%s'" % name)
    assert login(stack, name, pw, "branch_a").token
    after = stack.psql(state)[0].split("|")
    assert after[0] == gateway_params, after
    assert after[1] != before[1] and after[2] != before[2], "hashed again under a new salt"
    assert after[3:] == before[3:], "the password's age and history are unchanged"
    assert stack.psql("SELECT outcome, detail FROM admin_log WHERE action = 'Login' AND "
                      "object = '%s' ORDER BY id" % name) == [
        "refused|wrong password", "refused|account locked",
        "ok|password must change; hashed again under [auth] scrypt_n"]
    # the new hash holds the same password: it logs in again, with nothing left to redo
    r = login(stack, name, pw, "branch_a")
    assert r.token and probe(stack, bearer(r.token), "branch_a") == TOKEN_OK
    assert stack.psql(state)[0].split("|") == after
    assert stack.psql("SELECT detail FROM admin_log WHERE action = 'Login' AND object = '%s' "
                      "ORDER BY id DESC LIMIT 1" % name) == ["password must change"]


def test_a_login_past_the_inactive_period_is_refused_before_the_sweep(stack, admin):
    """Art. 38: an account unused for more than inactive_disable_days (90) is refused at Login
    in the same words as any refusal, whether or not the sweep (hourly) has disabled it yet, and
    the refused login does not make it used again. Before, a login in the hour before the sweep
    succeeded and stamped last_used_at, so the account was never disabled."""
    name = unique("it-idl-")
    pw, _ = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    stack.psql("UPDATE account SET last_used_at = now() - interval '91 days' WHERE name = '%s'"
               % name)
    e = rpc_error(lambda: login(stack, name, pw, "branch_a"))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    assert stack.psql("SELECT last_used_at < now() - interval '90 days' FROM account WHERE "
                      "name = '%s'" % name) == ["t"]
    assert stack.psql("SELECT outcome, detail FROM admin_log WHERE action = 'Login' AND "
                      "object = '%s' ORDER BY id DESC LIMIT 1" % name) == [
        "refused|account unused past inactive_disable_days (Art. 38)"]
    # one used 89 days ago still logs in
    stack.psql("UPDATE account SET last_used_at = now() - interval '89 days' WHERE name = '%s'"
               % name)
    assert login(stack, name, pw, "branch_a").token


# --- tokens and certificates ---

def test_token_needs_a_certificate_of_its_kind(stack, admin):
    name = unique("it-br-")
    _, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    assert probe(stack, md, "branch_a") == TOKEN_OK
    assert probe(stack, md, "branch_b") == (
        grpc.StatusCode.PERMISSION_DENIED, "authorization: a branch account is usable only over "
        "a certificate of its own branch (Art. 34)")
    assert probe(stack, md, "admin")[0] == grpc.StatusCode.PERMISSION_DENIED
    auditor = stack.login("auditor")
    assert probe(stack, auditor, "admin") == TOKEN_OK
    for via in ("auditor", "sysadmin", "lawful"):  # every certificate registered for administration
        assert probe(stack, auditor, via) == TOKEN_OK
    assert probe(stack, auditor, "branch_a") == (
        grpc.StatusCode.PERMISSION_DENIED, "authorization: an administrative account is usable "
        "only over a certificate registered for administration (Art. 31)")
    assert probe(stack, [("authorization", "Basic abc")], "branch_a") == (
        grpc.StatusCode.UNAUTHENTICATED, 'authorization: must be "Bearer " followed by a token')
    assert probe(stack, bearer("A" * 43), "branch_a") == (grpc.StatusCode.UNAUTHENTICATED,
                                                        TOKEN_INVALID)


ADMIN_CERT_REFUSAL = ("authorization: a certificate registered for administration acts only "
                      "through an account's token: call Admin/Login first (Art. 31)")


def test_admin_certificate_acts_only_through_a_token(stack, admin):
    """Art. 31, 34: every administrative act names a person. The `admin` certificate (registered
    for administration, role security_admin) without a token may not create or disable an
    account; each refusal is in admin_log; the same calls with secadmin's token succeed."""
    pb = stack.pb
    name = unique("it-adc-")
    first = int(stack.psql("SELECT coalesce(max(id), 0) FROM admin_log")[0])
    create = pb.admin.CreateAccountRequest(account=name, role="branch_clerk", branch="a",
                                           initial_password=password())
    disable = pb.admin.DisableAccountRequest(account="clerk_b", reason="test")
    for method, req, resp in ((CREATE, create, pb.admin.CreateAccountResponse),
                              (DISABLE, disable, pb.admin.DisableAccountResponse)):
        err = rpc_error(lambda: stack.unary(method, req, resp, principal="admin"))
        assert (err.code(), err.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                               ADMIN_CERT_REFUSAL)
    q = ("SELECT actor, role, cert, via, action, outcome, detail FROM admin_log WHERE id > %d "
         "AND cert = 'admin' AND outcome = 'refused' ORDER BY id" % first)
    rows = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(stack.psql(q)), 10)
    assert rows == ["admin|security_admin|admin|grpc|%s|refused|%s" % (a, ADMIN_CERT_REFUSAL)
                    for a in ("CreateAccount", "DisableAccount")]
    # nothing was done: no account, clerk_b still enabled
    assert stack.psql("SELECT count(*) FROM account WHERE name = '%s'" % name) == ["0"]
    assert stack.psql("SELECT disabled_at IS NULL FROM account WHERE name = 'clerk_b'") == ["t"]
    # with a person's token the same certificate carries secadmin's role, and secadmin is recorded
    stack.unary(CREATE, create, pb.admin.CreateAccountResponse, principal="admin",
                metadata=admin.md, timeout=HASHING_DEADLINE)
    assert stack.psql("SELECT count(*) FROM account WHERE name = '%s'" % name) == ["1"]
    assert stack.psql("SELECT actor, cert, outcome FROM admin_log WHERE action = 'CreateAccount' "
                      "AND object = '%s'" % name) == ["secadmin|admin|ok"]
    other = unique("it-adc-")
    admin.create(other, "branch_clerk", branch="a")
    admin.disable(other)
    assert stack.psql("SELECT disabled_at IS NOT NULL FROM account WHERE name = '%s'" % other) \
        == ["t"]


PEOPLE_CERT_CHECK = "principal_people_admin"


def sql_refused(uri, sql):
    """The error of sql run over uri (it must fail)."""
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                        "ON_ERROR_STOP=1", "-d", uri, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, "allowed: %s" % sql
    return r.stderr


def test_admin_certificate_is_what_the_database_keeps_for_a_peoples_role(stack):
    """Art. 31, 34: a certificate of a people's role is registered for administration or not at
    all (sql/041's CHECK): a row without `admin` is refused to the owner and to the CLI's role
    alike, for each of the four roles; the same row with `admin` is taken."""
    for role in CLI_ONLY:
        for uri in (stack.pguri_owner, stack.pguri):
            name = unique("itpeople")
            err = sql_refused(uri, "INSERT INTO principal (name, fingerprint, role, created_by) "
                                   "VALUES ('%s', '\\x%s', '%s', 'test')"
                              % (name, secrets.token_hex(32), role))
            assert PEOPLE_CERT_CHECK in err, err
        stack.psql("INSERT INTO principal (name, fingerprint, role, admin, created_by, "
                   "disabled_at, disabled_by) VALUES ('%s', '\\x%s', '%s', true, 'test', now(), "
                   "'test')" % (unique("itpeople"), secrets.token_hex(32), role))
    # a device's role is not bound by it
    stack.psql("INSERT INTO principal (name, fingerprint, role, created_by, disabled_at, "
               "disabled_by) VALUES ('%s', '\\x%s', 'backend', 'test', now(), 'test')"
               % (unique("itpeople"), secrets.token_hex(32)))


def test_admin_certificate_flag_set_on_legacy_rows_by_the_upgrade(stack):
    """The upgrade path of sql/041: a security_admin certificate registered without `admin`
    before it (the CHECK dropped to write it, as the database held it then) is refused what its
    role allows even so (the policy treats a people's role's certificate as an administration
    channel whatever its flag: PERMISSION_DENIED naming the rule); `waygatectl migrate`, the rows
    of sql/041 and of every later migration deleted from schema_migrations (migrate refuses a
    missing migration below an applied one; each is rerunnable), sets its flag and puts the CHECK
    back, and the certificate is still refused CreateAccount without a token."""
    name = unique("itlegacy")
    crt, key = issue_cert(stack, name, "/O=Waygate Dev/OU=security_admin/CN=%s" % name)
    account = unique("it-leg-")
    req = stack.pb.admin.CreateAccountRequest(account=account, role="branch_clerk", branch="a",
                                              initial_password=password())
    ch = waygate_proto.channel(stack.addr, stack.ca, crt, key)

    def create():
        err = rpc_error(lambda: waygate_proto.unary(ch, CREATE, req,
                                                    stack.pb.admin.CreateAccountResponse,
                                                    timeout=30))
        return err.code(), err.details()
    check = ("SELECT count(*) FROM pg_constraint WHERE conrelid = 'principal'::regclass AND "
             "conname = '%s'" % PEOPLE_CERT_CHECK)
    applied = stack.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                         "schema_migrations")
    migrated = False
    try:
        stack.psql("ALTER TABLE principal DROP CONSTRAINT %s" % PEOPLE_CERT_CHECK)
        stack.psql("INSERT INTO principal (name, fingerprint, role, created_by) VALUES "
                   "('%s', '\\x%s', 'security_admin', 'test')" % (name, fingerprint(crt)))
        assert create() == (grpc.StatusCode.PERMISSION_DENIED, ADMIN_CERT_REFUSAL)
        stack.psql("DELETE FROM schema_migrations WHERE version >= 41")
        r = stack.ctl("migrate", "--db", stack.pguri_owner)
        assert r.returncode == 0, r.stderr
        migrated = True
        # the operator is told which certificates changed (the migration's WARNING)
        said = [l for l in r.stdout.splitlines() if l.startswith("  migration 041 says: ")]
        assert len(said) == 1 and name in said[0] and "now registered for administration" in \
            said[0], r.stdout
        assert stack.psql("SELECT admin FROM principal WHERE name = '%s'" % name) == ["t"]
        assert stack.psql(check) == ["1"]
        assert stack.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                          "schema_migrations") == applied
        assert create() == (grpc.StatusCode.PERMISSION_DENIED, ADMIN_CERT_REFUSAL)
        assert stack.psql("SELECT count(*) FROM account WHERE name = '%s'" % account) == ["0"]
    finally:
        ch.close()
        if not migrated:  # sql/041 again: the flag set, the CHECK back
            stack.psql("DELETE FROM schema_migrations WHERE version >= 41")
            stack.ctl("migrate", "--db", stack.pguri_owner)
        stack.psql("UPDATE principal SET disabled_at = now(), disabled_by = 'test' WHERE "
                   "name = '%s'" % name)


def issue_cert(stack, name, subject):
    """A fresh client certificate of the dev CA (valid, not revoked, never registered)."""
    certs = os.path.join(stack.dir, "certs")
    cadir = os.path.join(certs, "ca")
    key, csr, crt = (os.path.join(stack.dir, name + ext) for ext in (".key", ".csr", ".crt"))
    for cmd in (["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-out", key],
                ["openssl", "req", "-new", "-utf8", "-key", key, "-subj", subject, "-out", csr],
                ["openssl", "ca", "-config", os.path.join(cadir, "openssl.cnf"), "-batch",
                 "-notext", "-extensions", "client_ext", "-in", csr, "-out", crt]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return crt, key


def fingerprint(crt):
    with open(crt) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def health_as(stack, crt, key):
    ch = waygate_proto.channel(stack.addr, stack.ca, crt, key)
    try:
        return waygate_proto.health_check(ch, timeout=10)
    finally:
        ch.close()


def test_unregistered_or_disabled_certificate_is_unauthenticated(stack):
    name = unique("itcert")
    # its subject would have made it a courier under the old subject rule
    crt, key = issue_cert(stack, name, "/O=Waygate Dev/OU=courier/L=a/CN=%s" % name)
    e = rpc_error(lambda: health_as(stack, crt, key))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, NOT_REGISTERED)
    # registered: served; disabled: refused again (within principal_cache_ms)
    stack.psql("INSERT INTO principal (name, fingerprint, role, branch, created_by) VALUES "
               "('%s', '\\x%s', 'courier', 'a', 'test')" % (name, fingerprint(crt)))
    assert wait_for(lambda: health_as(stack, crt, key) == "SERVING", timeout=60)
    stack.psql("UPDATE principal SET disabled_at = now() WHERE name = '%s'" % name)

    def refused():
        try:
            health_as(stack, crt, key)
        except grpc.RpcError as err:
            return err.code() == grpc.StatusCode.UNAUTHENTICATED and err.details()
        return False
    assert wait_for(refused, timeout=60) == NOT_REGISTERED


def test_calls_that_miss_the_certificate_cache_share_one_lookup(stack):
    """20 calls of a newly registered certificate arrive while its first lookup is held up (the
    principal table locked): they all wait for that one lookup (single flight) instead of
    queueing 20 lookups of the same row, and all are answered once the lock goes.
    waygate_certificate_lookups_total counts the database lookups (1 here; 20 without the
    flight), waygate_certificate_lookups_shared_total the calls that joined one (19)."""
    name = unique("itflight")
    crt, key = issue_cert(stack, name, "/O=Waygate Dev/OU=courier/L=a/CN=%s" % name)
    stack.psql("INSERT INTO principal (name, fingerprint, role, branch, created_by) VALUES "
               "('%s', '\\x%s', 'courier', 'a', 'test')" % (name, fingerprint(crt)))
    lookups = stack.metric("waygate_certificate_lookups_total")
    shared = stack.metric("waygate_certificate_lookups_shared_total")
    ch = waygate_proto.channel(stack.addr, stack.ca, crt, key)
    holder = lock_holder(stack, "LOCK TABLE principal IN ACCESS EXCLUSIVE MODE")
    try:
        pb = stack.pb.health
        fn = ch.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=pb.HealthCheckResponse.FromString)
        futures = [fn.future(pb.HealthCheckRequest(), timeout=120) for _ in range(20)]
        assert wait_for(lambda: stack.metric("waygate_certificate_lookups_total") - lookups +
                        stack.metric("waygate_certificate_lookups_shared_total") - shared >= 20,
                        60), "the 20 calls did not reach the identity step"
        assert not any(f.done() for f in futures)  # all held by the one lookup
    finally:
        release_holder(holder)
    try:
        assert [f.result().status for f in futures] == [pb.HealthCheckResponse.SERVING] * 20
    finally:
        ch.close()
    print("20 calls: %d lookup(s), %d shared" % (
        stack.metric("waygate_certificate_lookups_total") - lookups,
        stack.metric("waygate_certificate_lookups_shared_total") - shared))
    assert stack.metric("waygate_certificate_lookups_total") - lookups == 1
    assert stack.metric("waygate_certificate_lookups_shared_total") - shared == 19


HEALTH = "/grpc.health.v1.Health/Check"


def health_calls_ended(stack):
    """Health checks the gateway has ended, whatever their status (GET /metrics)."""
    sample, _ = scrape(stack)
    return sum(v for (n, lb), v in sample.items()
               if n == "waygate_grpc_calls_total" and ("method", HEALTH) in lb)


def test_calls_sharing_a_lookup_may_all_go_away(stack):
    """5 calls of a newly registered certificate wait for one held-up lookup and all reach their
    deadline: each leaves the flight as it is reset, the last one cancels the lookup, and once
    the lock goes the next call starts a lookup of its own and is served (2 lookups, 4 shared).
    The lock goes only once the gateway has ended the five calls (its call counter): the client
    gives up at its own deadline, and a gateway slower to end them than the lock to go would let
    the lookup complete first (a CI run saw 1 lookup)."""
    name = unique("itflight")
    crt, key = issue_cert(stack, name, "/O=Waygate Dev/OU=courier/L=a/CN=%s" % name)
    stack.psql("INSERT INTO principal (name, fingerprint, role, branch, created_by) VALUES "
               "('%s', '\\x%s', 'courier', 'a', 'test')" % (name, fingerprint(crt)))
    lookups = stack.metric("waygate_certificate_lookups_total")
    shared = stack.metric("waygate_certificate_lookups_shared_total")
    ch = waygate_proto.channel(stack.addr, stack.ca, crt, key)
    try:
        # connected first (the lookup is per call, not per connection): a handshake slowed by
        # a loaded machine would otherwise eat the calls' deadline, and a call that expires
        # before the gateway reads it joins no lookup; 10 s, not less, for a gateway starved of
        # CPU (the lock holds every call to its deadline anyway)
        grpc.channel_ready_future(ch).result(timeout=60)
        holder = lock_holder(stack, "LOCK TABLE principal IN ACCESS EXCLUSIVE MODE")
        try:
            pb = stack.pb.health
            fn = ch.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=pb.HealthCheckResponse.FromString)
            ended = health_calls_ended(stack)
            futures = [fn.future(pb.HealthCheckRequest(), timeout=10) for _ in range(5)]
            codes = [f.exception().code() if f.exception() else "OK" for f in futures]
            assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 5, codes
            assert wait_for(lambda: health_calls_ended(stack) - ended >= 5, 60), \
                "the gateway did not end the five calls"
        finally:
            release_holder(holder)
        assert waygate_proto.health_check(ch, timeout=30) == "SERVING"
    finally:
        ch.close()
    assert stack.metric("waygate_certificate_lookups_total") - lookups == 2
    assert stack.metric("waygate_certificate_lookups_shared_total") - shared == 4


SUBJECT_FORM = ("client certificate: the subject must hold one CN, and at most one OU and one L, "
                "each of A-Z a-z 0-9 _ . - only (CN at most 63, OU and L at most 31 characters): "
                "this connection answers no call and is closed")


@pytest.mark.parametrize("subject", ["/O=Waygate Dev/OU=courier/OU=branch_clerk/L=a/CN=%s",
                                     "/O=Waygate Dev/OU=courier/L=a/CN=\u5f20%s",
                                     "/O=Waygate Dev/OU=courier/L=a/CN=%s/CN=other"],
                         ids=["two-OU", "UTF-8-CN", "two-CN"])
def test_certificate_whose_subject_names_no_principal_is_told_why(stack, subject):
    """A certificate of the carrier's CA whose subject the gateway cannot read as a principal
    (a repeated field, characters outside the subject rule) is a client of ours with a broken
    certificate: every call is answered UNAUTHENTICATED naming the rule (even Health, which
    anyone may ask), not a connection closed without a word."""
    name = unique("itsubj")
    crt, key = issue_cert(stack, name, subject % name)
    e = rpc_error(lambda: health_as(stack, crt, key))
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, SUBJECT_FORM)


# --- disable: at once, on every gateway ---

def test_disable_takes_effect_on_next_call_on_two_gateways(stack, admin):
    name = unique("it-dis-")
    gw2 = SecondGateway(stack, "accounts_second")
    try:
        pw, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
        md2 = bearer(login(stack, name, pw, "branch_a", addr=gw2.addr).token)
        for token in (md, md2):  # sessions live in the database: each token works on both
            assert probe(stack, token, "branch_a") == TOKEN_OK
            assert probe(stack, token, "branch_a", addr=gw2.addr) == TOKEN_OK
        resp = admin.disable(name, "left the company")
        assert resp.account == name and resp.disabled_at > 0
        for token in (md, md2):
            assert probe(stack, token, "branch_a") == (grpc.StatusCode.UNAUTHENTICATED,
                                                       TOKEN_INVALID)
            assert probe(stack, token, "branch_a", addr=gw2.addr) == (
                grpc.StatusCode.UNAUTHENTICATED, TOKEN_INVALID)
        assert stack.psql("SELECT count(*) FROM session s JOIN account a ON a.id = s.account_id "
                          "WHERE a.name = '%s'" % name) == ["0"]
        assert stack.psql("SELECT disabled_by, disabled_reason FROM account WHERE name = '%s'"
                          % name) == ["secadmin|left the company"]
        e = rpc_error(lambda: login(stack, name, pw, "branch_a", addr=gw2.addr))
        assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    finally:
        gw2.close()


LAST_SECADMIN = ("account: is the last enabled security_admin account, and one must stay enabled "
                 "to administer accounts: create another security_admin (waygatectl accounts "
                 "create) before disabling it (Art. 31, 34)")


def only_security_admins(stack, *names):
    """Leaves exactly the security_admin accounts names enabled (other tests' are disabled as the
    owner; sql/037 allows that while one of names stays)."""
    stack.psql("UPDATE account SET disabled_at = now(), disabled_by = 'it', disabled_reason = "
               "'test' WHERE role = 'security_admin' AND disabled_at IS NULL AND name NOT IN (%s)"
               % ", ".join("'%s'" % n for n in names))
    assert stack.psql("SELECT name FROM account WHERE role = 'security_admin' AND disabled_at IS "
                      "NULL ORDER BY name") == sorted(names)


def enabled(stack, name):
    return stack.psql("SELECT disabled_at IS NULL FROM account WHERE name = '%s'" % name) == ["t"]


def reenable_secadmin(stack):
    """A test that may have disabled the dev stack's security admin gives it back to the others."""
    stack.psql("UPDATE account SET disabled_at = NULL, disabled_by = NULL, disabled_reason = NULL "
               "WHERE name = 'secadmin'")


def test_the_last_security_admin_stays_enabled(stack, admin):
    """No path leaves the gateway without an enabled security_admin (sql/037): DisableAccount of
    the last one (here the caller's own account) is FAILED_PRECONDITION naming the rule, recorded
    as refused, and changes nothing (its sessions live on); the CLI refuses it in the same words;
    the owner's own UPDATE is refused by the database. With a second one enabled, either may go."""
    only_security_admins(stack, "secadmin")
    since = stack.psql("SELECT coalesce(max(id), 0) FROM admin_log")[0]
    e = rpc_error(lambda: admin.disable("secadmin", "leaving"))
    assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION, LAST_SECADMIN)
    assert enabled(stack, "secadmin")
    assert probe(stack, admin.md, "admin") == TOKEN_OK  # the session was not ended
    assert wait_for(lambda: stack.psql(
        "SELECT actor, outcome, detail FROM admin_log WHERE action = 'DisableAccount' AND object = "
        "'secadmin' AND id > %s" % since) == ["secadmin|refused|" + LAST_SECADMIN], timeout=15)
    r = stack.ctl("accounts", "disable", "secadmin", "--reason", "leaving", "--actor", "it-ctl",
                  "--db", stack.pguri)
    assert r.returncode == 3 and "accounts disable: " + LAST_SECADMIN in r.stderr, r.stderr
    assert enabled(stack, "secadmin")
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-d", stack.pguri_owner, "-c",
                        "UPDATE account SET disabled_at = now() WHERE name = 'secadmin'"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "the last enabled security_admin account stays enabled" \
        in r.stderr, r.stderr
    assert enabled(stack, "secadmin")
    # a second one: then the first may go (here the other way round: secadmin stays)
    second = unique("it-sa-")
    admin.create(second, "security_admin", person=unique("p-"))
    assert admin.disable(second, "leaving").account == second
    assert enabled(stack, "secadmin") and not enabled(stack, second)


def test_two_security_admins_disabling_each_other_at_once_leave_one(stack, admin):
    """Two transactions each disabling the other of the last two security admins: the second
    waits for the first (the advisory lock of sql/037), then finds none left besides itself and
    is refused. Here the operator's transaction disables sa (held open), while sa, over the API,
    disables secadmin: the API call waits on the lock (seen in pg_locks), and once the first
    commits it is FAILED_PRECONDITION and secadmin stays enabled."""
    sa = unique("it-sa-")
    _, md = ready(stack, admin, sa, "security_admin", "admin")
    only_security_admins(stack, "secadmin", sa)
    holder = lock_holder(stack, "UPDATE account SET disabled_at = now(), disabled_by = 'it', "
                         "disabled_reason = 'test' WHERE name = '%s'" % sa)
    out = {}

    def disable_secadmin():
        try:
            out["ok"] = stack.unary(DISABLE, stack.pb.admin.DisableAccountRequest(
                account="secadmin", reason="leaving"), stack.pb.admin.DisableAccountResponse,
                principal="admin", metadata=md, timeout=60)
        except grpc.RpcError as e:
            out["error"] = e

    t = threading.Thread(target=disable_secadmin)
    try:
        t.start()
        # the API call's transaction waits on the lock the holder's took (or, with no lock, is
        # done already)
        assert wait_for(lambda: out or stack.psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            == ["1"], timeout=60)
        holder.stdin.write("COMMIT;\n\\echo committed\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "committed"
        t.join(60)
        assert "error" in out, "both security admins were disabled"
        assert (out["error"].code(), out["error"].details()) == (
            grpc.StatusCode.FAILED_PRECONDITION, LAST_SECADMIN)
        assert enabled(stack, "secadmin") and not enabled(stack, sa)
    finally:
        release_holder(holder)
        t.join(60)
        reenable_secadmin(stack)


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_a_security_admin_is_disabled_only_read_committed(stack, admin, level):
    """sql/037's trigger counts the enabled security admins after its lock's wait; a REPEATABLE
    READ or SERIALIZABLE transaction would count from a snapshot taken before that wait (and
    PostgreSQL's serializable checks do not see the gateway's READ COMMITTED writer), so two
    disables could each still count the other's account: the change is refused outright there,
    WA001 naming the rule, even with another security admin enabled; in READ COMMITTED the same
    UPDATE goes through (red when SERIALIZABLE was let through)."""
    sa = unique("it-sa-")
    ready(stack, admin, sa, "security_admin", "admin")
    only_security_admins(stack, "secadmin", sa)
    update = ("UPDATE account SET disabled_at = now(), disabled_by = 'it', disabled_reason = "
              "'test' WHERE name = '%s'" % sa)
    try:
        r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                            "ON_ERROR_STOP=1", "-d", stack.pguri_owner],
                           input="BEGIN ISOLATION LEVEL %s;\n%s;\nCOMMIT;\n"
                           % (level.upper(), update),
                           capture_output=True, text=True, timeout=180)
        assert r.returncode != 0, r.stdout
        assert ("account: a security_admin account is disabled only in a READ COMMITTED "
                "transaction") in r.stderr, r.stderr
        assert enabled(stack, sa)
        stack.psql(update)
        assert not enabled(stack, sa)
    finally:
        reenable_secadmin(stack)


def test_inactive_accounts_disabled_by_the_gateway(stack, admin):
    name = unique("it-idle-")
    _, md = ready(stack, admin, name, "branch_clerk", "branch_a", branch="a")
    stack.psql("UPDATE account SET last_used_at = now() - interval '91 days' WHERE name = '%s'"
               % name)
    # a gateway that starts sweeps at once (and then every second)
    gw2 = SecondGateway(stack, "accounts_sweep", "[auth]\ninactive_check_ms = 1000\n[server]")
    try:
        assert wait_for(lambda: stack.psql("SELECT disabled_by FROM account WHERE name = '%s'"
                                           % name) == ["gateway"], timeout=30)
        rows = stack.psql("SELECT actor, via, action, outcome FROM admin_log WHERE object = '%s' "
                          "AND action = 'DisableInactive'" % name)
        assert rows == ["gateway|gateway|DisableInactive|ok"]
        assert probe(stack, md, "branch_a") == (grpc.StatusCode.UNAUTHENTICATED, TOKEN_INVALID)
        assert "account %s disabled: unused for more than 90 days" % name in gw2.log_text()
    finally:
        gw2.close()


def test_the_sweep_leaves_the_last_security_admin_enabled(stack, admin):
    """The inactivity sweep (Art. 38) disables idle accounts, but not the last enabled
    security_admin (sql/037): it says so in its log and goes on with the others; Login refuses
    that account as unused meanwhile (test_a_login_past_the_inactive_period_...)."""
    idle = unique("it-idle-")
    ready(stack, admin, idle, "branch_clerk", "branch_a", branch="a")
    only_security_admins(stack, "secadmin")
    old = stack.psql("SELECT last_used_at FROM account WHERE name = 'secadmin'")[0]
    stack.psql("UPDATE account SET last_used_at = now() - interval '91 days' WHERE name IN "
               "('secadmin', '%s')" % idle)
    gw2 = SecondGateway(stack, "accounts_sweep_last", "[auth]\ninactive_check_ms = 1000\n[server]")
    try:
        assert wait_for(lambda: "account secadmin is the last enabled security_admin and stays "
                        "enabled" in gw2.log_text(), timeout=30)
        assert wait_for(lambda: not enabled(stack, idle), timeout=30)
        assert enabled(stack, "secadmin")
    finally:
        gw2.close()
        stack.psql("UPDATE account SET last_used_at = %s WHERE name = 'secadmin'"
                   % ("'%s'" % old if old else "NULL"))


# --- sessions: capped per account, expired ones deleted ---

SESSIONS_MAX = 16  # GW_AUTH_SESSIONS_MAX (gateway/core/config.h)


def sessions_of(stack, name):
    return int(stack.psql("SELECT count(*) FROM session s JOIN account a ON a.id = s.account_id "
                          "WHERE a.name = '%s'" % name)[0])


def test_a_login_past_the_cap_ends_the_oldest_session(stack, admin):
    """An account keeps at most 16 live sessions: the 17th login ends the first (in its own
    transaction, so there are never more), and the account's expired sessions end with it; the
    other tokens keep working."""
    name = unique("it-cap-")
    pw = admin.create(name, "branch_clerk", branch="a")
    stack.psql("INSERT INTO session (token_hash, account_id, issued_at, expires_at) SELECT "
               "sha256('%s-expired'::bytea), id, now() - interval '9 hours', now() - interval "
               "'1 hour' FROM account WHERE name = '%s'" % (name, name))
    tokens = []
    for i in range(SESSIONS_MAX + 1):
        tokens.append(login(stack, name, pw, "branch_a").token)
        assert sessions_of(stack, name) == min(i + 1, SESSIONS_MAX), i
    assert probe(stack, bearer(tokens[0]), "branch_a") == (grpc.StatusCode.UNAUTHENTICATED,
                                                          TOKEN_INVALID)
    for t in (tokens[1], tokens[-1]):
        assert probe(stack, bearer(t), "branch_a") == TOKEN_OK


def test_expired_sessions_deleted_by_the_gateway(stack, admin):
    """The inactivity sweep deletes expired sessions (at most 4096 a run), never a live one; it
    runs even where no account is ever disabled for inactivity (inactive_disable_days = 0)."""
    name = unique("it-exs-")
    admin.create(name, "branch_clerk", branch="a")
    stack.psql("INSERT INTO session (token_hash, account_id, issued_at, expires_at) SELECT "
               "sha256(('%s-' || i)::bytea), a.id, now() - interval '9 hours', now() - "
               "interval '1 minute' * i FROM account a, generate_series(1, 3) i WHERE a.name = "
               "'%s'" % (name, name))
    stack.psql("INSERT INTO session (token_hash, account_id, expires_at) SELECT "
               "sha256('%s-live'::bytea), id, now() + interval '1 hour' FROM account WHERE "
               "name = '%s'" % (name, name))
    assert sessions_of(stack, name) == 4
    gw2 = SecondGateway(stack, "accounts_purge",
                        "[auth]\ninactive_disable_days = 0\ninactive_check_ms = 1000\n[server]")
    try:
        assert wait_for(lambda: sessions_of(stack, name) == 1, timeout=30)
        assert stack.psql("SELECT count(*) FROM session WHERE token_hash = sha256('%s-live'::bytea)"
                          % name) == ["1"]
        assert "expired sessions deleted" in gw2.log_text()
        assert stack.psql("SELECT disabled_at IS NULL FROM account WHERE name = '%s'" % name) \
            == ["t"]
    finally:
        gw2.close()


# --- separation of duties (三员, Art. 34) ---

def test_one_person_cannot_hold_two_administrator_roles(stack, admin):
    """The three administrator roles are created by the operator's CLI only (CLI_ONLY), which
    refuses one person's second one and records an incident (test_accounts_ctl.py::
    test_separation_of_duties_refused_in_code_and_by_the_database); the database refuses it too,
    whoever writes; lawful_access is not one of the three."""
    person = unique("staff-")
    first, third = unique("it-aud-"), unique("it-law-")
    admin.create(first, "compliance_auditor", person=person)  # (the CLI: CLI_ONLY)
    r = stack.ctl("accounts", "create", unique("it-sys-"), "--role", "system_admin", "--person",
                  person, "--password-stdin", "--actor", "secadmin", "--db", stack.pguri,
                  input=password() + "\n")
    assert r.returncode == 3 and "role: the person already holds one of the administrator roles" \
        in r.stderr, r.stderr
    # lawful_access is not one of the three: the same person may hold it
    admin.create(third, "lawful_access", person=person)
    # the database refuses it too, whoever writes
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-d", stack.pguri_owner, "-c",
                        "INSERT INTO account (name, person, role, pw_hash, pw_salt, pw_params, "
                        "created_by) VALUES ('%s', '%s', 'security_admin', '\\x%s', '\\x%s', "
                        "'scrypt:N=1024,r=8,p=1', 'test')"
                        % (unique("it-sec-"), person, "00" * 32, "00" * 16)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "account_one_admin_role_per_person" in r.stderr


def test_create_account_refusals(stack, admin):
    inv = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (dict(account="X", role="branch_clerk", branch="a"), inv, "account: must be 3 to 64"),
        (dict(account=unique("it-r-"), role="courier", branch="a"), inv,
         "role: is not a role an account may hold"),
        (dict(account=unique("it-b-"), role="branch_clerk"), inv, "branch: is required for"),
        (dict(account=unique("it-b-"), role="system_admin", branch="a"), inv,
         "branch: is required for"),
        (dict(account=unique("it-p-"), role="branch_clerk", branch="a",
              initial_password="short"), inv,
         "initial_password: must be at least 12 characters"),
    ]
    for req, code, words in cases:
        req.setdefault("initial_password", password())
        e = rpc_error(lambda: stack.unary(CREATE, stack.pb.admin.CreateAccountRequest(**req),
                                          stack.pb.admin.CreateAccountResponse,
                                          principal="admin", metadata=admin.md))
        assert e.code() == code and e.details().startswith(words), (req, e.details())
    name = unique("it-dup-")
    admin.create(name, "branch_clerk", branch="b")
    e = rpc_error(lambda: admin.create(name, "branch_clerk", branch="b"))
    assert (e.code(), e.details()) == (grpc.StatusCode.ALREADY_EXISTS,
                                       "account: an account with this name already exists")
    e = rpc_error(lambda: admin.disable(unique("it-none-")))
    assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "account: no such account")


def test_deciding_and_clear_reading_roles_are_not_created_over_the_api(stack, admin):
    """A security admin alone could create a lawful_access account and a second security_admin
    under invented persons, file a case with the one and approve it with the other, then read
    waybills in clear (the same for two compliance auditors and a bulk destroy); or a
    system_admin account under an invented person, so holding two of the three administrator
    roles (三员) with `person` telling otherwise. The roles that decide or read in clear, and the
    three administrator roles, are created only by the operator's CLI: Admin.CreateAccount
    refuses them, names the rule, creates nothing and records the refusal."""
    for role in CLI_ONLY:
        name = unique("it-cli-")
        e = rpc_error(lambda: stack.unary(CREATE, stack.pb.admin.CreateAccountRequest(
            account=name, role=role, initial_password=password(), person=unique("invented-")),
            stack.pb.admin.CreateAccountResponse, principal="admin", metadata=admin.md))
        assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, CLI_ONLY_RULE), role
        assert stack.psql("SELECT count(*) FROM account WHERE name = '%s'" % name) == ["0"]
        assert wait_for(lambda: stack.psql(
            "SELECT outcome FROM admin_log WHERE action = 'CreateAccount' AND object = '%s'"
            % name) == ["refused"], timeout=15), role
    # the branch roles still are
    name = unique("it-api-")
    admin.create(name, "customer_service", branch="a", person=unique("p-"))
    assert stack.psql("SELECT role FROM account WHERE name = '%s'" % name) == ["customer_service"]


CONTROL = "must not contain control characters"
NAME_RULE = "account: must be 3 to 64 characters of a-z, 0-9, '.', '_' or '-'"


def test_free_text_refused_as_the_cli_refuses_it(stack, admin):
    """CreateAccount.person and DisableAccount.reason follow the rule the CLI applies (a control
    or bidirectional character, or a blank value, is refused INVALID_ARGUMENT naming the field
    and the rule, and nothing is stored); DisableAccount.account is a well-formed account name or
    refused as such, without being kept in the record."""
    inv = grpc.StatusCode.INVALID_ARGUMENT
    for person, words in (("bob\nx", "person: " + CONTROL), ("bob\u202ex", "person: " + CONTROL),
                          ("bob\x1b[2J", "person: " + CONTROL), ("   ", "person: is required")):
        name = unique("it-pt-")
        e = rpc_error(lambda: admin.create(name, "branch_clerk", branch="a", person=person))
        assert (e.code(), e.details()) == (inv, words), repr(person)
        assert stack.psql("SELECT count(*) FROM account WHERE name = '%s'" % name) == ["0"]
        # the CLI's words for the same value
        r = stack.ctl("accounts", "create", name, "--role", "branch_clerk", "--branch", "a",
                      "--person", person, "--db", stack.pguri)
        assert r.returncode == 3 and words in r.stderr, (person, r.stderr)

    victim = unique("it-rs-")
    admin.create(victim, "branch_clerk", branch="a")
    for reason, words in (("   ", "reason: is required"),
                          ("left\n\x1b[2Jx", "reason: " + CONTROL),
                          ("left\u2066x", "reason: " + CONTROL)):
        e = rpc_error(lambda: admin.disable(victim, reason))
        assert (e.code(), e.details()) == (inv, words), repr(reason)
        r = stack.ctl("accounts", "disable", victim, "--reason", reason, "--db", stack.pguri)
        assert r.returncode == 3 and words in r.stderr, (reason, r.stderr)
    assert stack.psql("SELECT disabled_at IS NULL FROM account WHERE name = '%s'" % victim) == \
        ["t"]

    # a name no account can have: its own refusal, and the record does not keep it
    refused = ("SELECT count(*) FROM admin_log WHERE action = 'DisableAccount' AND outcome = "
               "'refused' AND object IS NULL AND detail = '%s'" % NAME_RULE.replace("'", "''"))
    before = int(stack.psql(refused)[0])
    e = rpc_error(lambda: admin.disable("bob\nx"))
    assert (e.code(), e.details()) == (inv, NAME_RULE)
    assert wait_for(lambda: int(stack.psql(refused)[0]) == before + 1, timeout=15)
    assert stack.psql("SELECT count(*) FROM admin_log WHERE object LIKE 'bob%'") == ["0"]
    assert stack.psql("SELECT count(*) FROM audit_record WHERE object LIKE 'bob%'") == ["0"]

    # what the rule allows goes through, and is stored as given
    admin.disable(victim, "left the company 王")
    assert stack.psql("SELECT disabled_reason FROM account WHERE name = '%s'" % victim) == \
        ["left the company 王"]


# --- the administrative record (Art. 31) ---

def test_admin_calls_recorded_without_secrets(stack, admin):
    name = unique("it-log-")
    pw = admin.create(name, "branch_clerk", branch="a")
    r = login(stack, name, pw, "branch_a")
    new = password()
    change(stack, bearer(r.token), "branch_a", pw, new)
    # refused by the policy before any handler: a clerk may not create accounts
    clerk = bearer(login(stack, name, new, "branch_a").token)
    e = rpc_error(lambda: stack.unary(CREATE, stack.pb.admin.CreateAccountRequest(
        account=unique("it-x-"), role="branch_clerk", branch="a", initial_password=password()),
        stack.pb.admin.CreateAccountResponse, principal="branch_a", metadata=clerk))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    cols = ("SELECT actor, role, cert, peer IS NOT NULL, via, action, coalesce(object, ''), "
            "outcome FROM admin_log WHERE actor = '%s' OR object = '%s' ORDER BY id"
            % (name, name))
    want = ["secadmin|security_admin|admin|t|grpc|CreateAccount|%s|ok" % name,
            "branch_a|branch_clerk|branch_a|t|grpc|Login|%s|ok" % name,  # the certificate logs in
            "%s|branch_clerk|branch_a|t|grpc|ChangePassword|%s|ok" % (name, name),
            "%s|branch_clerk|branch_a|t|grpc|CreateAccount||refused" % name]
    rows = wait_for(lambda: (lambda got: got if all(w in got for w in want) else None)(
        stack.psql(cols)), timeout=15)
    assert rows, "missing administrative-record rows: %r" % stack.psql(cols)
    assert rows[0] == want[0]
    # never a password or a token, in any column
    dump = "\n".join(stack.psql("SELECT admin_log::text FROM admin_log"))
    for secret in (pw, new, r.token):
        assert secret not in dump


def test_logins_cancelled_midway_leave_the_gateway_serving(stack, admin):
    """Logins whose deadline passes while their scrypt runs on a worker (the job is dropped, its
    done never reaches the ended call): the gateway keeps serving, and a login then works."""
    name = unique("it-cx-")
    pw = admin.create(name, "branch_clerk", branch="a")
    ch = stack.channel("branch_a")
    # connected (a new connection's handshake on a loaded machine: more than health_check's 5 s
    # default), so that the calls reach the gateway
    assert waygate_proto.health_check(ch, timeout=60) == "SERVING"
    fn = ch.unary_unary(LOGIN, request_serializer=lambda m: m.SerializeToString(),
                        response_deserializer=stack.pb.admin.LoginResponse.FromString)
    futures = [fn.future(stack.pb.admin.LoginRequest(account=name, password=pw), timeout=0.02)
               for _ in range(20)]
    for f in futures:
        try:
            f.result()
        except grpc.RpcError:
            pass  # DEADLINE_EXCEEDED (or, on a slow box, a refusal): either is fine here
    assert stack.health() == "SERVING"
    assert login(stack, name, pw, "branch_a").token


# --- full queues: UNAVAILABLE, nothing done, retrying safe ---

QUEUE_FULL = (grpc.StatusCode.UNAVAILABLE,
              "the gateway's queue for the database is full, nothing was done; retrying is safe")



def calls_until_queue_full(call, limit=12):
    """Starts call(i) in threads, one after another, until one answers QUEUE_FULL (the others
    wait behind the lock). The state decides, not the timing: each call still waiting holds a
    place, so one of the first few must be refused; waiting for an answer only spares calls.
    Returns ({i: (code, details) or "ok"}, threads)."""
    results, threads = {}, []

    def run(i):
        try:
            call(i)
            results[i] = "ok"
        except grpc.RpcError as e:
            results[i] = (e.code(), e.details())

    for i in range(limit):
        t = threading.Thread(target=run, args=(i,))
        t.start()
        threads.append(t)
        if wait_for(lambda: QUEUE_FULL in results.values(), 5, 0.05):
            return results, threads
    raise AssertionError("no call was refused with a full queue: %r" % results)


def test_a_full_database_queue_is_unavailable_and_does_nothing(stack, admin):
    """The pool's queue full ([database] pool_size 1, pipeline_depth 1, queue_max 1, and a
    certificate's share above it: queue_share 1000, so that one certificate can fill it; its one
    connection waiting on a lock of the account table that the test holds): a Login over a
    certificate the identity step knows (principal_cache_ms) is refused by the handler (the
    account read could not be queued), and a call with a token by the identity step (its session
    lookup could not), both UNAVAILABLE naming the full queue, at once, while the calls queued
    before them wait. Nothing was done: the account's failed logins did not grow, and the same
    Login retried once the lock is gone succeeds. The refusal's own record is not lost to the
    full queue: the audit writer's transaction has a place of its own in the pool's queue
    (GW_DB_RESERVED), so it waits there and commits once the lock is gone (it failed "queue full"
    before, and the record was only logged as not written)."""
    name = unique("it-qdb-")
    pw = admin.create(name, "branch_clerk", branch="a")
    md = stack.login("secadmin")
    gw = ExtraGateway(stack, unique("qfull-db"), lambda text: re.sub(
        r"(?m)^pool_size\s*=.*$", "pool_size = 1\npipeline_depth = 1\nqueue_max = 1\n"
        "queue_share = 1000", text) + "\n[auth]\nprincipal_cache_ms = 600000\n")
    holder = None
    threads = []
    try:
        # branch_a's certificate known to this gateway for ten minutes: its identity step needs
        # no database from here on
        e = rpc_error(lambda: login(stack, unique("it-qdb-none-"), "wrong", "branch_a",
                                    addr=gw.addr))
        assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
        holder = lock_holder(stack, "LOCK TABLE account IN ACCESS EXCLUSIVE MODE")
        results, threads = calls_until_queue_full(lambda i: login(
            stack, "it-qdb-wait-%d" % i, "wrong", "branch_a", addr=gw.addr, timeout=180))
        assert all(r == QUEUE_FULL for r in results.values() if r != "ok"), results
        # the queue stays full while the lock is held: both refusals are the state's
        e = rpc_error(lambda: login(stack, name, "wrong-" + pw, "branch_a", addr=gw.addr))
        assert (e.code(), e.details()) == QUEUE_FULL
        assert probe(stack, md, "admin", addr=gw.addr) == QUEUE_FULL  # the identity step
        release_holder(holder)
        for t in threads:
            t.join(180)
        assert stack.psql("SELECT failed_count FROM account WHERE name = '%s'" % name) == ["0"]
        # every Login refused so is in this gateway's chain (login.fail names no account; the
        # first 8 of a kind are written on their own, refusals.c)
        refused = min(8, 1 + sum(1 for r in results.values() if r == QUEUE_FULL))
        recorded = ("SELECT count(*) FROM audit_record WHERE chain = '%s' AND action = "
                    "'login.fail' AND outcome = 'failed' AND detail = '%s'"
                    % (gw.chain, QUEUE_FULL[1].replace("'", "''")))
        assert wait_for(lambda: stack.psql(recorded) == [str(refused)], 60), \
            (stack.psql(recorded), refused)
        assert login(stack, name, pw, "branch_a", addr=gw.addr).must_change_password
    finally:
        if holder is not None:
            release_holder(holder)
        for t in threads:
            t.join(180)
        gw.close()


def full_db_queue_gateway(stack, name):
    """An extra gateway whose pool's queue fills at once ([database] pool_size 1, pipeline_depth
    1, queue_max 1; queue_share 1000, so that one certificate can fill it), which knows a
    certificate's registration for ten minutes (principal_cache_ms): its certificate calls need
    no database in the identity step, and which does not forward (the forwarder's claims would take the queue's one place now and then)."""
    def edit(text):
        text = re.sub(r"(?m)^pool_size\s*=.*$",
                      "pool_size = 1\npipeline_depth = 1\nqueue_max = 1\nqueue_share = 1000",
                      text)
        text = re.sub(r"(?m)^(endpoint\s*=)", r"#off# \1", text)
        return text + "\n[auth]\nprincipal_cache_ms = 600000\n"
    return ExtraGateway(stack, unique(name), edit)


def unless_queue_full(fn, timeout=60):
    """fn(), asked again while it answers QUEUE_FULL: before a test fills the queue on purpose,
    the gateway's own work (its audit records, a checkpoint) may hold the queue's one place."""
    end = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except grpc.RpcError as e:
            if (e.code(), e.details()) != QUEUE_FULL or time.monotonic() > end:
                raise
        time.sleep(0.05)


def test_a_full_database_queue_is_the_same_answer_in_every_handler(stack, admin):
    """With the pool's queue full (as above: its one connection waiting on a lock of the account
    table, the queue filled by Logins), the intake (Submit, SubmitBatch's items) and a query (Get)
    reach their handler and each answers the full queue as the Admin handlers do: UNAVAILABLE
    naming the full queue, so that clients retry. (They answered RESOURCE_EXHAUSTED "could not be
    stored/read" before.) The bulk calls are not among them: they act only through an account's
    token (test_bulk.py::test_a_certificate_names_no_person_and_makes_no_bulk_call), whose
    session lookup in the identity step meets the full queue before the handler."""
    from query_data import GET, SUBMIT, SUBMIT_BATCH, new_waybill, nonexistent
    pb = stack.pb
    gw = full_db_queue_gateway(stack, "qfull-all")
    courier = stack.channel("courier_a", addr=gw.addr)
    clerk = stack.channel("branch_a", addr=gw.addr)

    def submit(w):
        return waygate_proto.unary(courier, SUBMIT, pb.intake.SubmitRequest(waybill=w),
                                   pb.intake.SubmitResponse, timeout=30)

    def submit_batch(ws):
        return waygate_proto.unary(courier, SUBMIT_BATCH, pb.intake.SubmitBatchRequest(
            waybills=ws), pb.intake.SubmitBatchResponse, timeout=30)

    def get(number):
        return waygate_proto.unary(clerk, GET, pb.query.GetRequest(waybill_no=number),
                                   pb.common.WaybillView, timeout=30)

    holder = None
    threads = []
    try:
        # every certificate known to this gateway, its segments read: answers from the database
        unless_queue_full(lambda: submit(new_waybill(stack, "a")))
        e = rpc_error(lambda: unless_queue_full(lambda: get(nonexistent(stack, "a", 7))))
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
        e = rpc_error(lambda: unless_queue_full(lambda: login(
            stack, unique("it-qall-none-"), "wrong", "branch_a", addr=gw.addr)))
        assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)
        holder = lock_holder(stack, "LOCK TABLE account IN ACCESS EXCLUSIVE MODE")
        results, threads = calls_until_queue_full(lambda i: login(
            stack, "it-qall-wait-%d" % i, "wrong", "branch_a", addr=gw.addr, timeout=180))
        w = new_waybill(stack, "a")
        answers = {}
        for method, fn in (("Submit", lambda: submit(w)), ("Get", lambda: get(w.waybill_no))):
            e = rpc_error(fn)
            answers[method] = (e.code(), e.details())
        batch = submit_batch([new_waybill(stack, "a"), new_waybill(stack, "a")])
        answers["SubmitBatch"] = [(grpc.StatusCode.UNAVAILABLE if r.code == 14 else r.code,
                                   r.message) for r in batch.results]
        # each item still says which it is (red before: the bare wording)
        assert answers == {"Submit": QUEUE_FULL, "Get": QUEUE_FULL,
                           "SubmitBatch": [(QUEUE_FULL[0], "waybills[%d]: %s" % (i, QUEUE_FULL[1]))
                                           for i in range(2)]}, answers
        release_holder(holder)
        for t in threads:
            t.join(180)
        # nothing was done: the waybill refused is not stored, and a retry stores it
        assert not unless_queue_full(lambda: submit(w)).duplicate
    finally:
        if holder is not None:
            release_holder(holder)
        for t in threads:
            t.join(180)
        gw.close()


def test_a_full_audit_queue_is_unavailable_and_does_nothing(stack, admin):
    """The audit writer's queue full ([audit] queue_max 1, its transaction waiting on a lock of
    audit_record that the test holds): a DisableAccount, whose change and record go to the
    writer as one entry, is refused UNAVAILABLE naming the full queue, at once; the account stays
    enabled, and the same call retried once the lock is gone disables it. The refusal is in the
    audit trail (counted: refusals never take the writer's last places)."""
    victim = unique("it-qau-")
    admin.create(victim, "branch_clerk", branch="a")
    # the calls that fill the queue: each must reach the audit record's insert, so each disables
    # an account that exists (an unknown one fails at the entry's first statement, before it)
    fillers = [unique("it-qaf-") for _ in range(4)]
    for f in fillers:
        admin.create(f, "branch_clerk", branch="a")
    gw = ExtraGateway(stack, unique("qfull-audit"),
                      lambda text: text.rstrip("\n") + "\nqueue_max = 1\n")  # in [audit]
    ch = stack.channel("admin", addr=gw.addr)

    def disable(name, timeout=180):
        return waygate_proto.unary(ch, DISABLE, stack.pb.admin.DisableAccountRequest(
            account=name, reason="left the company"), stack.pb.admin.DisableAccountResponse,
            timeout=timeout, metadata=admin.md)

    holder = None
    threads = []
    try:
        holder = lock_holder(stack, "LOCK TABLE audit_record IN SHARE MODE")
        results, threads = calls_until_queue_full(lambda i: disable(fillers[i]),
                                                  limit=len(fillers))
        e = rpc_error(lambda: disable(victim, timeout=30))
        assert (e.code(), e.details()) == QUEUE_FULL
        release_holder(holder)
        for t in threads:
            t.join(180)
        for i, r in results.items():  # disabled exactly when its call was answered OK
            assert r in ("ok", QUEUE_FULL), results
            assert stack.psql("SELECT disabled_at IS NOT NULL FROM account WHERE name = '%s'"
                              % fillers[i]) == ["t" if r == "ok" else "f"], (i, r)
        assert stack.psql("SELECT disabled_at IS NULL FROM account WHERE name = '%s'"
                          % victim) == ["t"]
        assert disable(victim, timeout=30).account == victim
        assert stack.psql("SELECT disabled_at IS NULL FROM account WHERE name = '%s'"
                          % victim) == ["f"]
        # the refusal is in the trail: with no room in the writer's queue it was counted, and
        # its record written when the window ends or, here, when the gateway stops
        gw.close()
        assert "0 counted refusal(s) not recorded" in gw.log()
        assert stack.psql(
            "SELECT count, outcome FROM audit_record WHERE chain = '%s' AND action = "
            "'account.disable' AND object = '%s' AND detail LIKE '%%%s%%'"
            % (gw.chain, victim, QUEUE_FULL[1].replace("'", "''"))) == ["1|failed"]
    finally:
        if holder is not None:
            release_holder(holder)
        for t in threads:
            t.join(180)
        gw.close()
