"""waygatectl principals and accounts against the dev stack (Art. 17, 31, 34, 35, 38): client
certificates registered by their SHA-256 fingerprint; the one-time bootstrap of the first security
admin; the password policy and separation of duties (三员) refused with the field and rule named,
the latter also by the database and recorded as an incident; disabling an account ends its
sessions at once; every command in admin_log; and no password, given or generated, in the
gateway's log, the database or its log. Also the dev stack's own principals and accounts."""

import hashlib
import os
import pwd
import select
import ssl
import stat
import subprocess
import termios
import time
import urllib.parse

import grpc
import pytest

from conftest import BUILD, HASHING_DEADLINE, PGBIN, bearer

ACTOR = "it-accounts"
# every password this module saw, for the final check that none was stored or logged
SEEN = set()

DEV_PRINCIPALS = {  # name: (role, branch, admin), as deploy/gen-certs issues them
    "courier_a": ("courier", "a", False), "courier_b": ("courier", "b", False),
    "branch_a": ("branch_clerk", "a", False), "branch_b": ("branch_clerk", "b", False),
    "backend": ("backend", None, False), "admin": ("security_admin", None, True),
    "cs_a": ("customer_service", "a", False), "auditor": ("compliance_auditor", None, True),
    "sysadmin": ("system_admin", None, True), "lawful": ("lawful_access", None, True),
}
DEV_ACCOUNTS = {  # name: (role, branch, principal it logs in over)
    "clerk_a": ("branch_clerk", "a", "branch_a"), "clerk_b": ("branch_clerk", "b", "branch_b"),
    "cs_a": ("customer_service", "a", "branch_a"), "auditor": ("compliance_auditor", None, "admin"),
    "secadmin": ("security_admin", None, "admin"), "sysadmin": ("system_admin", None, "admin"),
    "lawful": ("lawful_access", None, "admin"),
}
CLASSES = ("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789")


def ctl(stack, *args, input=None):
    r = stack.ctl(*args, "--actor", ACTOR, "--db", stack.pguri, input=input)
    for line in r.stdout.splitlines():
        SEEN.add(line.strip())
    return r


def fingerprint(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def last_log(stack, action, obj):
    """(actor, via, peer, outcome, detail) of the newest admin_log row of action on obj."""
    rows = stack.psql("SELECT actor, via, peer, outcome, coalesce(detail, '') FROM admin_log "
                      "WHERE action = '%s' AND object IS NOT DISTINCT FROM %s ORDER BY id DESC "
                      "LIMIT 1" % (action, "NULL" if obj is None else "'%s'" % obj))
    assert rows, "no admin_log row for %s %s" % (action, obj)
    return tuple(rows[0].split("|", 4))


def account_row(stack, name):
    rows = stack.psql("SELECT role, coalesce(branch, '-'), person, must_change, pw_params, "
                      "octet_length(pw_hash), octet_length(pw_salt), created_by, "
                      "disabled_at IS NOT NULL FROM account WHERE name = '%s'" % name)
    return rows[0].split("|") if rows else None


def one_time_password(r):
    """The generated password: alone on stdout, policy-conform, not on stderr."""
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    pw = lines[0]
    assert len(pw) == 20
    assert all(any(c in cls for c in pw) for cls in CLASSES)
    assert any(not c.isalnum() for c in pw)
    assert pw not in r.stderr
    SEEN.add(pw)
    return pw


def login_or_skip(stack, name, password, principal="admin"):
    try:
        return stack.login_response(name, password, principal)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            pytest.skip("this gateway has no Admin.Login yet")
        raise


@pytest.fixture
def selfsigned(tmp_path):
    """A fresh certificate (self-signed: only its fingerprint matters to the register)."""
    def make(name):
        crt, key = tmp_path / (name + ".crt"), tmp_path / (name + ".key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + name,
                        "-days", "2", "-keyout", str(key), "-out", str(crt)],
                       check=True, capture_output=True)
        return str(crt)
    return make


# --- the dev stack's principals and accounts ---

def test_devstack_registers_every_dev_certificate_but_revoked_and_rogue(stack):
    rows = {r.split("|")[0]: r.split("|")[1:] for r in stack.psql(
        "SELECT name, role, coalesce(branch, ''), admin, encode(fingerprint, 'hex'), "
        "disabled_at IS NULL, created_by FROM principal WHERE created_by = 'devstack'")}
    assert set(rows) == set(DEV_PRINCIPALS)
    for name, (role, branch, admin) in DEV_PRINCIPALS.items():
        cert, _ = stack.cert(name)
        assert rows[name] == [role, branch or "", "t" if admin else "f", fingerprint(cert), "t",
                              "devstack"], name
    known = set(r for r in stack.psql("SELECT encode(fingerprint, 'hex') FROM principal"))
    for other in ("revoked", "rogue"):
        assert fingerprint(stack.cert(other)[0]) not in known


def test_devstack_accounts_and_env(stack):
    assert stat.S_IMODE(os.stat(os.path.join(stack.dir, "env")).st_mode) == 0o600
    for name, (role, branch, via) in DEV_ACCOUNTS.items():
        account, pw, env_via = stack.account(name)
        assert account == name and env_via == via
        SEEN.add(pw)
        row = account_row(stack, name)
        assert row is not None and row[0] == role and row[1] == (branch or "-"), name
        assert row[8] == "f"


def test_devstack_accounts_log_in_without_forced_change(stack):
    for name in DEV_ACCOUNTS:
        account, pw, via = stack.account(name)
        resp = login_or_skip(stack, account, pw, via)
        assert resp.token and not resp.must_change_password, name
        assert account_row(stack, name)[3] == "f", name


def test_devstack_second_up_keeps_principals_accounts_and_passwords(stack):
    before = {n: stack.account(n) for n in DEV_ACCOUNTS}
    nprinc = stack.psql("SELECT count(*) FROM principal")
    stack.devstack("up")
    from waygate_proto import read_env
    env = read_env(os.path.join(stack.dir, "env"))
    for n, (account, pw, via) in before.items():
        assert (env["WAYGATE_P_%s_ACCOUNT" % n], env["WAYGATE_P_%s_PASSWORD" % n],
                env["WAYGATE_P_%s_VIA" % n]) == (account, pw, via)
    assert stack.psql("SELECT count(*) FROM principal") == nprinc
    assert stack.psql("SELECT count(*) FROM account WHERE name IN (%s)"
                      % ", ".join("'%s'" % n for n in DEV_ACCOUNTS)) == [str(len(DEV_ACCOUNTS))]


# --- principals ---

def test_principals_add_list_disable(stack, selfsigned):
    crt = selfsigned("it_dev1")
    fp = fingerprint(crt)
    r = ctl(stack, "principals", "add", "it_dev1", "--cert", crt, "--role", "courier",
            "--branch", "a")
    assert r.returncode == 0, r.stderr
    assert "sha256:" + fp in r.stdout
    assert stack.psql("SELECT role, branch, admin, encode(fingerprint, 'hex'), created_by, "
                      "disabled_at IS NULL FROM principal WHERE name = 'it_dev1'") == [
        "courier|a|f|%s|%s|t" % (fp, ACTOR)]
    assert last_log(stack, "principals.add", "it_dev1")[:4] == (ACTOR, "cli", "local", "ok")

    # the same registration again: nothing changes, exit 0 (deployment scripts rerun it)
    r = ctl(stack, "principals", "add", "it_dev1", "--cert", crt, "--role", "courier",
            "--branch", "a")
    assert r.returncode == 0 and "nothing changed" in r.stdout
    assert last_log(stack, "principals.add", "it_dev1")[3] == "unchanged"
    # the same name otherwise, or the same certificate under another name: refused (exit 3)
    r = ctl(stack, "principals", "add", "it_dev1", "--cert", crt, "--role", "courier",
            "--branch", "b")
    assert r.returncode == 3 and "principals add: name: " in r.stderr
    r = ctl(stack, "principals", "add", "it_dev2", "--cert", crt, "--role", "backend")
    assert r.returncode == 3
    assert "cert: is registered already for another principal" in r.stderr
    assert last_log(stack, "principals.add", "it_dev2")[3] == "refused"
    assert stack.psql("SELECT count(*) FROM principal WHERE name = 'it_dev2'") == ["0"]

    r = ctl(stack, "principals", "list")
    assert r.returncode == 0
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("it_dev1 ")]
    assert len(line) == 1 and fp in line[0] and "courier" in line[0]
    assert last_log(stack, "principals.list", None)[3] == "ok"

    r = ctl(stack, "principals", "disable", "it_dev1")
    assert r.returncode == 0, r.stderr
    assert stack.psql("SELECT disabled_by FROM principal WHERE name = 'it_dev1' "
                      "AND disabled_at IS NOT NULL") == [ACTOR]
    assert last_log(stack, "principals.disable", "it_dev1")[3] == "ok"
    r = ctl(stack, "principals", "disable", "it_dev1")
    assert r.returncode == 0 and "already" in r.stdout
    r = ctl(stack, "principals", "disable", "it_nobody")
    assert r.returncode == 3 and "name: no such principal" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--role", "courier"], "branch: is required for courier"),
    (["--role", "backend", "--branch", "a"], "branch: is required for courier"),
    (["--role", "root"], "role: is not a principal role"),
    (["--role", "courier", "--branch", "a b"], "branch: must be 1 to 31"),
    (["--role", "courier", "--branch", "a", "--admin"], "admin: a certificate registered for "
                                                          "administration must not be"),
] + [(["--role", role], "admin: a certificate of the people's role %s must be registered for "
                        "administration (--admin): it acts only through an account's token "
                        "(Art. 31)" % role)
     for role in ("security_admin", "system_admin", "compliance_auditor", "lawful_access")])
def test_principals_add_refusals_name_field_and_rule(stack, selfsigned, args, words):
    crt = selfsigned("it_bad")
    r = ctl(stack, "principals", "add", "it_bad", "--cert", crt, *args)
    assert r.returncode == 3, r.stderr
    assert words in r.stderr
    assert stack.psql("SELECT count(*) FROM principal WHERE name = 'it_bad'") == ["0"]
    assert last_log(stack, "principals.add", "it_bad")[3] == "refused"


def test_principals_add_peoples_role_for_administration(stack, selfsigned):
    """With --admin a people's role's certificate is registered (the refusal above is of its
    absence alone), and a second run without it is refused, the row unchanged."""
    crt = selfsigned("it_people")
    r = ctl(stack, "principals", "add", "it_people", "--cert", crt, "--role", "lawful_access",
            "--admin")
    assert r.returncode == 0, r.stderr
    assert stack.psql("SELECT role, admin FROM principal WHERE name = 'it_people'") == [
        "lawful_access|t"]
    r = ctl(stack, "principals", "add", "it_people", "--cert", crt, "--role", "lawful_access")
    assert r.returncode == 3 and "admin: a certificate of the people's role" in r.stderr
    assert last_log(stack, "principals.add", "it_people")[3] == "refused"
    assert ctl(stack, "principals", "disable", "it_people").returncode == 0


def test_principals_add_unreadable_certificate(stack, tmp_path):
    bad = tmp_path / "not.pem"
    bad.write_text("not a certificate\n")
    r = ctl(stack, "principals", "add", "it_bad", "--cert", str(bad), "--role", "backend")
    assert r.returncode == 3 and "cert: cannot be read as a PEM X.509 certificate" in r.stderr


# --- accounts ---

def test_bootstrap_once_then_only_change_password(stack):
    r = ctl(stack, "accounts", "bootstrap", "it_boot0")
    assert r.returncode == 3 and r.stdout == ""
    assert "account: an enabled security_admin exists already" in r.stderr
    assert account_row(stack, "it_boot0") is None
    # take the enabled security admins away for a moment (as the owner) to bootstrap anew: a state
    # only a fresh database is in, since sql/037 keeps one enabled, so the owner lifts that rule
    # for the moment too
    stack.psql("ALTER TABLE account DISABLE TRIGGER account_keep_security_admin_update")
    held = stack.psql("UPDATE account SET disabled_at = now() WHERE role = 'security_admin' "
                      "AND disabled_at IS NULL RETURNING name")
    try:
        r = ctl(stack, "accounts", "bootstrap", "it_boot", "--person", "it-boot-person")
        assert r.returncode == 0, r.stderr
        otp = one_time_password(r)
        assert account_row(stack, "it_boot") == [
            "security_admin", "-", "it-boot-person", "t", "scrypt:N=32768,r=8,p=1", "32", "16",
            ACTOR, "f"]
        assert last_log(stack, "accounts.bootstrap", "it_boot")[3] == "ok"
        # a second bootstrap is refused now that an enabled security admin exists
        r = ctl(stack, "accounts", "bootstrap", "it_boot2", "--person", "it-boot-person2")
        assert r.returncode == 3 and r.stdout == ""
        assert account_row(stack, "it_boot2") is None
        assert last_log(stack, "accounts.bootstrap", "it_boot2")[3] == "refused"
    finally:
        stack.psql("UPDATE account SET disabled_at = NULL WHERE name IN (%s)"
                   % ", ".join("'%s'" % n for n in held) if held else "SELECT 1")
        stack.psql("ALTER TABLE account ENABLE TRIGGER account_keep_security_admin_update")

    resp = login_or_skip(stack, "it_boot", otp, "admin")
    assert resp.must_change_password
    md = bearer(resp.token)
    pb = stack.pb
    # anything but ChangePassword is refused with that token
    with pytest.raises(grpc.RpcError) as e:
        stack.unary("/waygate.v1.Admin/CreateAccount",
                    pb.admin.CreateAccountRequest(account="it_nope", role="lawful_access",
                                                  initial_password="Xx-123456789012"),
                    pb.admin.CreateAccountResponse, principal="admin", metadata=md)
    assert e.value.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                              grpc.StatusCode.PERMISSION_DENIED)
    assert "ChangePassword" in e.value.details()
    assert account_row(stack, "it_nope") is None
    new = "It-Boot-New-Password-1"
    SEEN.add(new)
    stack.unary("/waygate.v1.Admin/ChangePassword",
                pb.admin.ChangePasswordRequest(old_password=otp, new_password=new),
                pb.admin.ChangePasswordResponse, principal="admin", metadata=md,
                timeout=HASHING_DEADLINE)
    assert not stack.login_response("it_boot", new, "admin").must_change_password
    r = ctl(stack, "accounts", "disable", "it_boot", "--reason", "integration test over")
    assert r.returncode == 0


@pytest.mark.parametrize("password, words", [
    (b"Short-1a", "password: must be at least 12 characters long (Art. 35)"),
    ("密码密码密码密码密A1".encode(), "password: must be at least 12 characters long"),
    (b"alllowercaseletters", "password: must mix at least three of"),
    (b"ABCDEFGH12345678", "password: must mix at least three of"),
    (b"xxIT_CLERK1-yy", "password: must not contain the account name (Art. 35)"),
    (b"Abcdefgh-123\x80", "password: is not valid UTF-8"),
    (b"A1-" + b"a" * 300, "password: is too long"),
])
def test_create_password_policy_refusals(stack, password, words):
    r = subprocess.run([os.path.join(BUILD, "waygatectl"), "accounts", "create", "it_clerk1",
                        "--role", "branch_clerk", "--branch", "a", "--password-stdin",
                        "--actor", ACTOR, "--db", stack.pguri],
                       input=password + b"\n", capture_output=True)
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert words in err
    assert r.stdout == b""
    assert password.decode(errors="replace") not in err
    assert account_row(stack, "it_clerk1") is None
    actor, via, _, outcome, detail = last_log(stack, "accounts.create", "it_clerk1")
    assert (actor, via, outcome) == (ACTOR, "cli", "refused") and words in detail
    SEEN.add(password.decode(errors="replace"))


def test_create_password_length_bound(stack):
    """256 bytes (followed by CRLF) are accepted, 257 refused naming the bound."""
    for n, code in ((256, 0), (257, 3)):
        pw = "A1-" + "b" * (n - 3)
        r = ctl(stack, "accounts", "create", "it_len%d" % n, "--role", "lawful_access",
                "--password-stdin", "--scrypt-n", "1024", input=pw + "\r\n")
        assert r.returncode == code, r.stderr
        if code:
            assert "password: is too long (at most 256 bytes)" in r.stderr
        assert (account_row(stack, "it_len%d" % n) is not None) == (code == 0)


@pytest.mark.parametrize("args, words", [
    (["it_Bad", "--role", "lawful_access"], "account: must be 3 to 64 characters"),
    (["it_x1", "--role", "courier", "--branch", "a"], "role: is not a role an account may hold"),
    (["it_x1", "--role", "branch_clerk"], "branch: is required for branch_clerk"),
    (["it_x1", "--role", "lawful_access", "--branch", "a"], "branch: is required for"),
])
def test_create_refusals_name_field_and_rule(stack, args, words):
    r = ctl(stack, "accounts", "create", *args)
    assert r.returncode == 3 and words in r.stderr and r.stdout == ""
    assert account_row(stack, "it_x1") is None


def test_create_with_given_and_generated_password(stack):
    given = "It-Given-Password-42"
    SEEN.add(given)
    r = ctl(stack, "accounts", "create", "it_clerk2", "--role", "branch_clerk", "--branch", "a",
            "--password-stdin", "--scrypt-n", "1024", input=given + "\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # a given password is never echoed
    assert account_row(stack, "it_clerk2") == [
        "branch_clerk", "a", "it_clerk2", "t", "scrypt:N=1024,r=8,p=1", "32", "16", ACTOR, "f"]
    r = ctl(stack, "accounts", "create", "it_clerk2", "--role", "branch_clerk", "--branch", "a")
    assert r.returncode == 3 and "account: an account with this name already exists" in r.stderr

    r = ctl(stack, "accounts", "create", "it_cs3", "--role", "customer_service", "--branch", "b")
    assert r.returncode == 0, r.stderr
    one_time_password(r)
    assert account_row(stack, "it_cs3")[:4] == ["customer_service", "b", "it_cs3", "t"]
    _, _, _, outcome, detail = last_log(stack, "accounts.create", "it_cs3")
    assert outcome == "ok" and "password=generated" in detail and "must_change=yes" in detail

    r = ctl(stack, "accounts", "list")
    assert r.returncode == 0
    assert any(ln.startswith("it_cs3 ") and "customer_service" in ln for ln in r.stdout.splitlines())
    assert last_log(stack, "accounts.list", None)[3] == "ok"


def test_separation_of_duties_refused_in_code_and_by_the_database(stack):
    def incidents():
        return int(stack.psql("SELECT count(*) FROM incident "
                              "WHERE kind = 'separation_of_duties'")[0])

    r = ctl(stack, "accounts", "create", "it_sys", "--role", "system_admin", "--person",
            "it-person-1", "--scrypt-n", "1024")
    assert r.returncode == 0, r.stderr
    SEEN.add(r.stdout.strip())
    before = incidents()
    for name, role in (("it_aud", "compliance_auditor"), ("it_sec", "security_admin"),
                       ("it_sys2", "system_admin")):
        r = ctl(stack, "accounts", "create", name, "--role", role, "--person", "it-person-1",
                "--scrypt-n", "1024")
        assert r.returncode == 3, r.stderr
        assert r.stdout == ""
        assert "role: the person already holds one of the administrator roles" in r.stderr
        assert "separation of duties" in r.stderr
        assert account_row(stack, name) is None
        assert last_log(stack, "accounts.create", name)[3] == "refused"
    assert incidents() == before + 3
    # the CLI's own check found it (the database's refusal would not name the other account)
    assert stack.psql("SELECT principal, severity, detail FROM incident WHERE kind = "
                      "'separation_of_duties' AND detail LIKE 'account it_aud %'") == [
        ACTOR + "|medium|account it_aud as compliance_auditor refused: its person holds "
        "system_admin already (account it_sys)"]
    # a role outside the three stays possible for the same person
    r = ctl(stack, "accounts", "create", "it_law", "--role", "lawful_access", "--person",
            "it-person-1", "--scrypt-n", "1024")
    assert r.returncode == 0, r.stderr
    SEEN.add(r.stdout.strip())
    # the database refuses it too: the CLI's role writing the row itself, without the CLI's check
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-d", stack.pguri, "-c",
                        "INSERT INTO account (name, person, role, pw_hash, pw_salt, pw_params, "
                        "created_by) VALUES ('it_aud9', 'it-person-1', 'compliance_auditor', "
                        "decode(repeat('00', 32), 'hex'), decode(repeat('00', 16), 'hex'), "
                        "'scrypt:N=1024,r=8,p=1', 'it')"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "account_one_admin_role_per_person" in r.stderr
    # the CLI's role writes incidents only through cli_record_incident, not into the table
    r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-d", stack.pguri, "-c",
                        "INSERT INTO incident (severity, kind) VALUES ('low', 'forged')"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "permission denied for table incident" in r.stderr


def test_disable_ends_sessions_at_once(stack):
    given = "It-Clerk-Password-77"
    SEEN.add(given)
    r = ctl(stack, "accounts", "create", "it_clerk4", "--role", "branch_clerk", "--branch", "a",
            "--password-stdin", "--scrypt-n", "1024", input=given + "\n")
    assert r.returncode == 0, r.stderr
    # a session as the gateway would store it (only the token's SHA-256)
    stack.psql("INSERT INTO session (token_hash, account_id, expires_at) SELECT "
               "sha256('it-token-4'::bytea), id, now() + interval '1 hour' FROM account "
               "WHERE name = 'it_clerk4'")
    r = ctl(stack, "accounts", "disable", "it_clerk4")
    assert r.returncode == 3 and "reason: is required" in r.stderr
    r = ctl(stack, "accounts", "disable", "it_clerk4", "--reason", "left the company")
    assert r.returncode == 0, r.stderr
    assert "1 sessions ended" in r.stdout
    assert stack.psql("SELECT count(*) FROM session s JOIN account a ON a.id = s.account_id "
                      "WHERE a.name = 'it_clerk4'") == ["0"]
    assert stack.psql("SELECT disabled_by, disabled_reason FROM account WHERE name = "
                      "'it_clerk4' AND disabled_at IS NOT NULL") == [ACTOR + "|left the company"]
    _, _, _, outcome, detail = last_log(stack, "accounts.disable", "it_clerk4")
    assert outcome == "ok" and "1 sessions ended" in detail
    r = ctl(stack, "accounts", "disable", "it_nobody", "--reason", "x")
    assert r.returncode == 3 and "account: no such account" in r.stderr


def test_list_escapes_a_stored_control_character(stack):
    """`accounts list` never prints a stored control character raw: a person written past the
    rule (as the table's owner, as a row stored before the gateway refused such text would be)
    is listed escaped, on one line, with no escape sequence and no bidirectional override."""
    r = ctl(stack, "accounts", "create", "it_esc1", "--role", "lawful_access")
    assert r.returncode == 0, r.stderr
    SEEN.add(r.stdout.strip())
    stack.psql("UPDATE account SET person = E'bob\\nit_fake  lawful_access\\x1b[2J\\u202ex\\\\' "
               "WHERE name = 'it_esc1'")
    r = ctl(stack, "accounts", "list", "it_esc1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2, r.stdout  # the header and the one row: no injected row
    assert lines[1].split()[3] == "bob\\x0ait_fake"
    assert "lawful_access\\x1b[2J\\u202ex\\\\" in lines[1]
    for raw in ("\x1b", "\u202e", "\r"):
        assert raw not in r.stdout
    r = ctl(stack, "accounts", "list")
    assert r.returncode == 0
    assert "\x1b" not in r.stdout and not any(
        ln.startswith("it_fake") for ln in r.stdout.splitlines())


def test_disable_stops_a_live_token(stack):
    """Over gRPC: a token that works stops working on its very next call once the CLI disables
    the account. The account is lawful_access over the `admin` certificate (a security_admin
    principal): a call only the token's role may make shows the token is what was honoured."""
    given = "It-Lawful-Password-55"
    SEEN.add(given)
    r = ctl(stack, "accounts", "create", "it_law5", "--role", "lawful_access", "--password-stdin",
            "--scrypt-n", "1024", input=given + "\n")
    assert r.returncode == 0, r.stderr
    resp = login_or_skip(stack, "it_law5", given, "admin")
    new = "It-Lawful-Password-56"
    SEEN.add(new)
    pb = stack.pb
    stack.unary("/waygate.v1.Admin/ChangePassword",
                pb.admin.ChangePasswordRequest(old_password=given, new_password=new),
                pb.admin.ChangePasswordResponse, principal="admin", metadata=bearer(resp.token),
                timeout=HASHING_DEADLINE)
    md = stack.login("it_law5", new, "admin")
    method = "/waygate.v1.Compliance/RequestLawfulAccess"
    req = pb.compliance.RequestLawfulAccessRequest()

    def call(metadata):
        try:
            stack.unary(method, req, pb.compliance.RequestLawfulAccessResponse,
                        principal="admin", metadata=metadata)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    # the certificate alone (security_admin) may not; with the token (lawful_access) it gets past
    # authorization (the method itself may still be unbuilt)
    assert call(None) == grpc.StatusCode.PERMISSION_DENIED
    honoured = call(md)
    assert honoured not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    r = ctl(stack, "accounts", "disable", "it_law5", "--reason", "test")
    assert r.returncode == 0 and "2 sessions ended" in r.stdout  # the limited and the full one
    assert call(md) == grpc.StatusCode.UNAUTHENTICATED


def test_unlock_clears_a_lockout(stack):
    """Art. 35: five wrong passwords over the account's own branch certificate lock it, and the
    right one is then refused; `accounts unlock` clears the lock, recorded in admin_log and in
    the audit chain (account.unlock) like the other account commands, and the right password
    works at once. An unknown name is refused, exit 3, and recorded as refused."""
    given = "It-Clerk-Password-66"
    SEEN.add(given)
    r = ctl(stack, "accounts", "create", "it_clerk6", "--role", "branch_clerk", "--branch", "a",
            "--password-stdin", "--scrypt-n", "1024", input=given + "\n")
    assert r.returncode == 0, r.stderr

    def refused(pw):
        try:
            stack.login_response("it_clerk6", pw, "branch_a")
        except grpc.RpcError as e:
            return e.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    for i in range(5):
        assert refused("Wrong-Password-%02d" % i), i
    assert stack.psql("SELECT failed_count, locked_until > now() FROM account WHERE name = "
                      "'it_clerk6'") == ["5|t"]
    assert refused(given)  # locked: the right password too
    r = ctl(stack, "accounts", "unlock", "it_clerk6")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("unlocked account it_clerk6: was locked until "), r.stdout
    assert "after 5 failed logins" in r.stdout
    assert stack.psql("SELECT failed_count, locked_until IS NULL FROM account WHERE name = "
                      "'it_clerk6'") == ["0|t"]
    actor, via, peer, outcome, detail = last_log(stack, "accounts.unlock", "it_clerk6")
    assert (actor, via, peer, outcome) == (ACTOR, "cli", "local", "ok")
    assert detail.startswith("was locked until ") and detail.endswith(" after 5 failed logins")
    assert stack.psql("SELECT actor, peer, outcome, detail FROM audit_record WHERE chain = 'ctl' "
                      "AND action = 'account.unlock' AND object = 'it_clerk6'") == [
        "%s|local|ok|%s" % (ACTOR, detail)]
    assert login_or_skip(stack, "it_clerk6", given, "branch_a").token
    # nothing left to clear: exit 0, recorded as unchanged
    r = ctl(stack, "accounts", "unlock", "it_clerk6")
    assert r.returncode == 0 and r.stdout.startswith("nothing to unlock: account it_clerk6"), \
        r.stdout
    assert last_log(stack, "accounts.unlock", "it_clerk6")[3] == "unchanged"
    # an unknown name: refused precisely, nothing changed, recorded
    r = ctl(stack, "accounts", "unlock", "it_nobody6")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stderr == "waygatectl accounts unlock: account: no such account\n"
    assert last_log(stack, "accounts.unlock", "it_nobody6")[3:] == (
        "refused", "account: no such account")
    r = ctl(stack, "accounts", "unlock")
    assert r.returncode == 2 and "exactly one NAME" in r.stderr
    r = ctl(stack, "accounts", "unlock", "it_clerk6", "--reason", "x")
    assert r.returncode == 2 and "an option of another action" in r.stderr


def test_segments_commands_recorded(stack):
    """Art. 31: `segments issue` and `list` write admin_log rows too (issued, refused, listed)."""
    args = ["segments", "issue", "--branch", "zz", "--segment", "ZZ:1000000000-1000000099",
            "--by", ACTOR, "--db", stack.pguri]
    r = stack.ctl(*args)
    assert r.returncode == 0, r.stderr
    assert last_log(stack, "segments.issue", "zz") == (ACTOR, "cli", "local", "ok",
                                                       "ZZ:1000000000-1000000099")
    r = stack.ctl(*args)
    assert r.returncode != 0
    assert last_log(stack, "segments.issue", "zz")[3] == "refused"
    r = stack.ctl("segments", "list", "--branch", "zz", "--db", stack.pguri)
    assert r.returncode == 0
    assert last_log(stack, "segments.list", "zz")[3] == "ok"


DB_SECRET = "It-Db-Secret-Pw-77"  # a database password the CLI must refuse to carry


def ctl_env(stack, *args, env=None, **kw):
    """build/waygatectl with args and the environment env (over os.environ, without
    WAYGATE_PGURI[_OWNER] unless env sets them); returns the CompletedProcess."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("WAYGATE_PGURI")}
    e.update(env or {})
    return subprocess.run([os.path.join(BUILD, "waygatectl")] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=120, env=e,
                          stdin=subprocess.DEVNULL, **kw)


def conninfo_with_password(stack, form, user="waygate_admin"):
    """The stack's connection string for user with DB_SECRET in it, in one of libpq's forms."""
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(stack.pguri).query)
    host, port = q["host"][0], q["port"][0]
    return {
        "uri_userinfo": "postgresql://%s:%s@/waygate?host=%s&port=%s" % (
            user, DB_SECRET, urllib.parse.quote(host, safe=""), port),
        "uri_query": "postgresql:///waygate?host=%s&port=%s&user=%s&password=%s" % (
            urllib.parse.quote(host, safe=""), port, user, DB_SECRET),
        "keyvalue": "host='%s' port=%s dbname=waygate user=%s password=%s" % (
            host, port, user, DB_SECRET),
        "sslpassword": "host='%s' port=%s dbname=waygate user=%s sslpassword=%s" % (
            host, port, user, DB_SECRET),
    }[form]


@pytest.mark.parametrize("form", ["uri_userinfo", "uri_query", "keyvalue", "sslpassword"])
@pytest.mark.parametrize("source", ["--db", "WAYGATE_PGURI"])
def test_ctl_refuses_a_password_in_its_conninfo(stack, form, source):
    """A database password in --db shows in /proc/PID/cmdline to every local user and in the
    shell's history: waygatectl refuses it as the daemon refuses one in [database] conninfo
    (conninfo.h), and from $WAYGATE_PGURI alike, before it connects: exit 2 (usage), the option
    and the rule named, the password never echoed, nothing done (the stack's database trusts
    local connections: a password it ignored would not have stopped the command)."""
    SEEN.add(DB_SECRET)
    name = "it_pwdb_%s_%s" % (form, "opt" if source == "--db" else "env")
    uri = conninfo_with_password(stack, form)
    args = ["accounts", "create", name, "--role", "compliance_auditor", "--actor", ACTOR]
    if source == "--db":
        r = ctl_env(stack, *args, "--db", uri)
    else:
        r = ctl_env(stack, *args, env={"WAYGATE_PGURI": uri})
    assert r.returncode == 2, r.stderr
    assert ("waygatectl accounts create: %s: must not contain a password" % source) in r.stderr
    assert "passfile" in r.stderr and "PGPASSFILE" in r.stderr
    assert DB_SECRET not in r.stderr and DB_SECRET not in r.stdout and r.stdout == ""
    assert account_row(stack, name) is None
    assert stack.psql("SELECT count(*) FROM admin_log WHERE object = '%s'" % name) == ["0"]


@pytest.mark.parametrize("source", ["--db", "WAYGATE_PGURI_OWNER", "WAYGATE_PGURI"])
def test_migrate_refuses_a_password_in_its_conninfo(stack, source):
    """The same for `waygatectl migrate`, whose connection string is the schema owner's."""
    uri = conninfo_with_password(stack, "uri_query", user="waygate")
    before = stack.psql("SELECT count(*), max(applied_at) FROM schema_migrations")
    if source == "--db":
        r = ctl_env(stack, "migrate", "--db", uri)
    else:
        r = ctl_env(stack, "migrate", env={source: uri})
    assert r.returncode == 2, r.stderr
    assert ("waygatectl migrate: %s: must not contain a password" % source) in r.stderr
    assert DB_SECRET not in r.stderr and r.stdout == ""
    assert stack.psql("SELECT count(*), max(applied_at) FROM schema_migrations") == before


def test_ctl_refuses_a_malformed_conninfo_without_echoing_it(stack):
    """A string libpq cannot parse might still hold a password: refused, never echoed."""
    uri = conninfo_with_password(stack, "uri_userinfo").replace("@", "%zz@", 1)
    r = ctl_env(stack, "routes", "list", "--db", uri)
    assert r.returncode == 2, r.stderr
    assert "routes: --db: not a valid libpq connection string or URI" in r.stderr
    assert DB_SECRET not in r.stderr and "%zz" not in r.stderr


def test_ctl_turns_core_dumps_off(stack):
    """waygatectl holds the keyring (keys rewrap, keys migrate-suite, audit export) and clear
    records (migrate-suite): like the daemon (nodump.h) it runs with RLIMIT_CORE 0 and not
    dumpable, so no core file and no ptrace or /proc/PID/mem by another process of its uid. Seen
    on a run held at its --password-stdin read: /proc/PID/limits, and /proc/PID owned by root
    while the process runs as another user (as root, the run is another user's: postgres, who
    reaches the stack's database over its socket)."""
    kw = {}
    if os.geteuid() != 0:  # a process of one's own uid that is not dumpable hides /proc/PID/fd
        pytest.skip("needs root, to run waygatectl as another user and read its /proc entries")
    try:
        kw["user"] = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        pytest.skip("running as root and no postgres user to run waygatectl as")
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("WAYGATE_") and k != "HOME"}
    # started with core files allowed (as far as the hard limit lets): waygatectl must lower it
    p = subprocess.Popen(["/bin/sh", "-c", 'ulimit -c "$(ulimit -H -c)"; exec "$@"', "sh",
                          os.path.join(BUILD, "waygatectl"), "accounts", "create", "it_nodump",
                          "--role", "compliance_auditor", "--password-stdin", "--actor", ACTOR,
                          "--db", stack.pguri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e, cwd="/", **kw)
    def link(fd):  # what fd names, or "" when it was closed since the listing
        try:
            return os.readlink("/proc/%d/fd/%s" % (p.pid, fd))
        except FileNotFoundError:
            return ""
    try:
        # connected (a socket open: main is well past its first step) and waiting on stdin
        deadline = time.monotonic() + 60
        while True:
            assert p.poll() is None, p.communicate()
            fds = os.listdir("/proc/%d/fd" % p.pid)
            if any(link(fd).startswith("socket:") for fd in fds if fd not in ("0", "1", "2")):
                break
            assert time.monotonic() < deadline, "waygatectl never connected"
            time.sleep(0.05)
        with open("/proc/%d/limits" % p.pid) as f:
            core = [ln.split() for ln in f if ln.startswith("Max core file size")]
        assert core and core[0][4:6] == ["0", "0"], core
        with open("/proc/%d/status" % p.pid) as f:
            uid = [ln.split()[1] for ln in f if ln.startswith("Uid:")][0]
        assert int(uid) != 0
        # not dumpable: its /proc entries but the world-readable directory are then root's
        assert os.stat("/proc/%d/fd" % p.pid).st_uid == 0
    finally:
        p.kill()  # held in its read: nothing was begun, nothing is recorded
        p.communicate()
    assert account_row(stack, "it_nodump") is None


@pytest.mark.parametrize("password,code", [("It-Tty-Password-31", 0), ("It-Short-1", 3)])
def test_password_stdin_from_a_terminal_is_not_echoed(stack, password, code):
    """--password-stdin read from a terminal: echo is off while the line is read (nothing of it
    comes back on the terminal), and on again after, when the account was made and when the
    password was refused."""
    SEEN.add(password)
    name = "it_tty%d" % code
    master, slave = os.openpty()
    try:
        assert termios.tcgetattr(slave)[3] & termios.ECHO
        p = subprocess.Popen([os.path.join(BUILD, "waygatectl"), "accounts", "create", name,
                              "--role", "compliance_auditor", "--password-stdin", "--scrypt-n",
                              "1024", "--actor", ACTOR, "--db", stack.pguri],
                             stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ,
                                                 WAYGATE_KEYRING=stack.env["WAYGATE_KEYRING"]))
        deadline = time.monotonic() + 60
        while termios.tcgetattr(slave)[3] & termios.ECHO:  # it turns echo off to read
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "waygatectl never turned the echo off"
            time.sleep(0.05)
        os.write(master, (password + "\n").encode())
        out, err = p.communicate(timeout=HASHING_DEADLINE)
        echoed = b""
        while select.select([master], [], [], 0.2)[0]:
            echoed += os.read(master, 4096)
        assert p.returncode == code, err
        assert out == "" and password not in err
        assert password.encode() not in echoed and echoed.strip(b"\r\n") == b""
        assert termios.tcgetattr(slave)[3] & termios.ECHO  # restored
    finally:
        os.close(master)
        os.close(slave)
    assert (account_row(stack, name) is not None) == (code == 0)


def test_no_password_in_logs_or_tables(stack):
    """Last: none of the passwords this module gave or was given, nor the dev stack's, appears
    in the gateway's log, PostgreSQL's log, or a dump of the whole database."""
    secrets = {p for p in SEEN if len(p) >= 12}
    secrets.update(stack.account(n)[1] for n in DEV_ACCOUNTS)
    assert len(secrets) >= len(DEV_ACCOUNTS)
    dump = subprocess.run([os.path.join(PGBIN, "pg_dump"), "-d", stack.pguri_owner],
                          capture_output=True, text=True, check=True).stdout
    assert "COPY public.account " in dump and "COPY public.admin_log " in dump
    texts = {"pg_dump": dump}
    with open(stack.log_path, encoding="utf-8", errors="replace") as f:
        texts["waygated.log"] = f.read()
    pglog = os.path.join(stack.dir, "pg", "postgres.log")
    if os.path.exists(pglog):
        with open(pglog, encoding="utf-8", errors="replace") as f:
            texts["postgres.log"] = f.read()
    for where, text in texts.items():
        for p in secrets:
            assert p not in text, "a password appears in %s" % where
    # and the hashes are what the table holds: 32 bytes each, with their parameters
    assert stack.psql("SELECT count(*) FROM account WHERE octet_length(pw_hash) <> 32 "
                      "OR pw_params !~ '^scrypt:N=[0-9]+,r=8,p=1$'") == ["0"]
    assert "secadmin" in dump  # the dump does hold the accounts
