/* test_accounts_db.c: store/accounts.h against a throwaway PostgreSQL with the gateway's
 * migrations: the identity lookups (certificate by fingerprint, session by token hash; a disabled
 * account's session is gone), the password history kept at five, and the concurrent-creation
 * race that only the database's unique indexes can decide (三员 and the account name): a second
 * connection holds the conflicting row uncommitted until the gateway's INSERT waits on it, then
 * commits, so the race is forced, not hoped for. Every write goes through the audit writer: each
 * leaves its audit record, a refused one none, and a change whose record cannot be written does
 * not happen (a trigger refusing audit_record inserts). Skipped where PostgreSQL cannot run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "accounts.h"
#include "audit.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pg_harness.h"

static struct pgh pg;
static bool pg_ok;
static PGconn *check;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;
static struct gw_db *db;
static struct gw_audit *au;

struct res {
    int calls;
    int err;
    bool found;
    int64_t i64;
    enum gw_acct_create_result created;
    struct gw_acct_cert cert;
    struct gw_acct_session sess;
    bool has_cert, has_sess, locked;
    struct gw_acct_pw cur, hist[GW_ACCT_HISTORY];
    size_t nhist;
};

static bool called(void *arg)
{
    return ((struct res *)arg)->calls > 0;
}

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
}

static void wait_called(struct res *r)
{
    assert_true(pgh_loop_until(base, called, r, 20000));
    assert_int_equal(r->calls, 1);
}

static void exec_ok(const char *sql)
{
    PGresult *res = PQexec(check, sql);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(check));
    PQclear(res);
}

static char *scalar(PGconn *c, const char *sql)
{
    static char buf[256];
    PGresult *res = PQexec(c, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    snprintf(buf, sizeof(buf), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return buf;
}

static void fill(uint8_t *p, size_t n, uint8_t v)
{
    memset(p, v, n);
}

static struct gw_acct_log log_row(const char *action, const char *object)
{
    struct gw_acct_log l = {
        .actor = "test", .via = "grpc", .action = action, .object = object, .outcome = "ok"};
    return l;
}

static struct gw_audit_rec rec_of(const char *action, const char *object)
{
    struct gw_audit_rec r = {
        .actor = "test", .action = action, .object = object, .count = -1, .outcome = "ok"};
    return r;
}

/* ---- callbacks ---- */

static void identify_cb(void *arg, int err, const struct gw_acct_cert *c,
                        const struct gw_acct_session *s)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->has_cert = c != NULL;
    r->has_sess = s != NULL;
    if (c != NULL)
        r->cert = *c;
    if (s != NULL)
        r->sess = *s;
}

static void login_done_cb(void *arg, int err, bool created, int64_t expires_at, bool locked)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->found = created;
    r->i64 = expires_at;
    r->locked = locked;
}

static void create_cb(void *arg, int err, enum gw_acct_create_result cr, int64_t at)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->created = cr;
    r->i64 = at;
}

static void changed_cb(void *arg, int err, bool changed, int64_t at)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->found = changed;
    r->i64 = at;
}

static void pw_cb(void *arg, int err, const struct gw_acct_pw *cur, bool locked,
                  const struct gw_acct_pw *hist, size_t n)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->found = cur != NULL;
    r->locked = locked;
    if (cur != NULL)
        r->cur = *cur;
    r->nhist = n;
    for (size_t i = 0; i < n; i++)
        r->hist[i] = hist[i];
}

static void pw_failed_cb(void *arg, int err, bool locked)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->locked = locked;
}

static void disabled_cb(void *arg, int err, bool found, int64_t at)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->found = found;
    r->i64 = at;
}

/* ---- helpers over the store ---- */

/* The password hash create() stores (32 bytes 0x11): a login verified against it. */
static const uint8_t created_hash[GW_ACCT_HASH_LEN] = {
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};

static int64_t create(const char *name, const char *person, const char *role, const char *branch,
                      enum gw_acct_create_result want)
{
    struct gw_acct_pw pw;
    struct gw_acct_new n = {.name = name,
                            .person = person,
                            .role = role,
                            .branch = branch,
                            .pw = &pw,
                            .created_by = "test",
                            .log = log_row("CreateAccount", name),
                            .rec = rec_of("account.create", name)};
    struct res r = {0};

    fill(pw.hash, sizeof(pw.hash), 0x11);
    fill(pw.salt, sizeof(pw.salt), 0x22);
    strcpy(pw.params, "scrypt:N=1024,r=8,p=1");
    assert_int_equal(gw_acct_create(au, &n, create_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.created, want);
    return r.i64;
}

static int64_t account_id(const char *name)
{
    char sql[160];

    snprintf(sql, sizeof(sql), "SELECT id FROM account WHERE name = '%s'", name);
    return strtoll(scalar(check, sql), NULL, 10);
}

/* A successful login's outcome for account name, verified against pw_hash, with token tok. */
static void ok_outcome(struct gw_acct_login_outcome *o, const char *name, const uint8_t *tok,
                       const uint8_t *pw_hash)
{
    memset(o, 0, sizeof(*o));
    o->ok = true;
    o->name = name;
    o->id = account_id(name);
    o->token_hash = tok;
    o->pw_hash = pw_hash;
    o->ttl_s = 3600;
    o->sessions_max = 16;
    o->lockout_failures = 5;
    o->lockout_minutes = 15;
    o->log = log_row("Login", name);
    o->rec = rec_of("login.ok", name);
}

/* ---- tests ---- */

static void test_identify(void **state)
{
    uint8_t fpr[32], other[32], tok[32];
    struct gw_acct_login_outcome o;
    struct res r = {0};

    (void)state;
    if (!pg_ok)
        skip();
    fill(fpr, sizeof(fpr), 0xA1);
    fill(other, sizeof(other), 0xA2);
    fill(tok, sizeof(tok), 0xB1);
    exec_ok("INSERT INTO principal (name, fingerprint, role, branch, admin, created_by) VALUES "
            "('branch_a', '\\xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1', "
            "'branch_clerk', 'a', false, 'test')");
    /* a registered certificate; an unknown one */
    assert_int_equal(gw_acct_identify(db, fpr, NULL, 90, identify_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.has_cert && !r.has_sess);
    assert_string_equal(r.cert.name, "branch_a");
    assert_string_equal(r.cert.role, "branch_clerk");
    assert_string_equal(r.cert.branch, "a");
    assert_false(r.cert.admin);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_identify(db, other, NULL, 90, identify_cb, &r, NULL), 0);
    wait_called(&r);
    assert_false(r.has_cert);

    /* a session issued by a successful login is found with its account, and stamps its use */
    create("clerk-id", "clerk-id", "branch_clerk", "a", GW_ACCT_CREATED);
    ok_outcome(&o, "clerk-id", tok, created_hash);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_login_finish(au, &o, login_done_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found && r.i64 > 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_identify(db, fpr, tok, 90, identify_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.has_cert && r.has_sess);
    assert_string_equal(r.sess.name, "clerk-id");
    assert_string_equal(r.sess.branch, "a");
    assert_true(r.sess.must_change); /* an initial password */
    assert_string_equal(scalar(check, "SELECT last_used_at IS NOT NULL FROM account WHERE "
                                      "name = 'clerk-id'"),
                        "t");

    /* disabled: its session is gone with it */
    {
        struct gw_acct_log l = log_row("DisableAccount", "clerk-id");
        struct gw_audit_rec ar = rec_of("account.disable", "clerk-id");
        memset(&r, 0, sizeof(r));
        assert_int_equal(
            gw_acct_disable(au, "clerk-id", "test", "left", &l, &ar, disabled_cb, &r, NULL), 0);
        wait_called(&r);
        assert_true(r.found);
    }
    assert_string_equal(scalar(check, "SELECT count(*) FROM session"), "0");
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_identify(db, NULL, tok, 90, identify_cb, &r, NULL), 0);
    wait_called(&r);
    assert_false(r.has_sess);
}

static void test_password_history_keeps_five(void **state)
{
    struct gw_acct_pw next;
    struct gw_acct_pw_change c;
    uint8_t keep[32], old[32];
    struct res r = {0};
    int64_t id;

    (void)state;
    if (!pg_ok)
        skip();
    create("hist-user", "hist-user", "customer_service", "a", GW_ACCT_CREATED);
    id = account_id("hist-user");
    fill(keep, sizeof(keep), 0xCC);
    fill(old, sizeof(old), 0x11); /* the initial hash */
    for (uint8_t v = 1; v <= 7; v++) {
        fill(next.hash, sizeof(next.hash), (uint8_t)(0x40 + v));
        fill(next.salt, sizeof(next.salt), v);
        strcpy(next.params, "scrypt:N=1024,r=8,p=1");
        memset(&c, 0, sizeof(c));
        c.account_id = id;
        c.old_hash = old;
        c.new_pw = &next;
        c.keep_token_hash = keep;
        c.log = log_row("ChangePassword", "hist-user");
        c.rec = rec_of("password.change", "hist-user");
        memset(&r, 0, sizeof(r));
        assert_int_equal(gw_acct_pw_write(au, &c, changed_cb, &r, NULL), 0);
        wait_called(&r);
        assert_int_equal(r.err, 0);
        assert_true(r.found);
        memcpy(old, next.hash, sizeof(old));
    }
    /* a stale old hash changes nothing */
    fill(old, sizeof(old), 0x11);
    c.old_hash = old;
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_pw_write(au, &c, changed_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_false(r.found);

    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_pw_read(db, id, pw_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found);
    assert_int_equal(r.cur.hash[0], 0x47);
    assert_int_equal(r.nhist, 5); /* the five before the current one, newest first */
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(r.hist[i].hash[0], 0x46 - i);
    assert_string_equal(scalar(check, "SELECT count(*) FROM account_password_history"), "5");
    assert_string_equal(scalar(check, "SELECT must_change FROM account WHERE name = 'hist-user'"),
                        "f");
    assert_string_equal(scalar(check, "SELECT count(*) FROM admin_log WHERE action = "
                                      "'ChangePassword' AND object = 'hist-user'"),
                        "7");
    /* seven changes, seven records; the refused eighth left none */
    assert_string_equal(scalar(check, "SELECT count(*) FROM audit_record WHERE action = "
                                      "'password.change' AND object = 'hist-user'"),
                        "7");
}

static bool waiting_on_lock(void *arg)
{
    (void)arg;
    return strcmp(scalar(check, "SELECT count(*) FROM pg_stat_activity WHERE "
                                "wait_event_type = 'Lock'"),
                  "0") != 0;
}

/* other holds its conflicting INSERT uncommitted; the store's creation must wait on it and then
 * be refused by the unique index, reported as want. */
static void race(PGconn *other, const char *insert, const char *name, const char *person,
                 const char *role, enum gw_acct_create_result want)
{
    struct gw_acct_pw pw;
    struct gw_acct_new n = {.name = name,
                            .person = person,
                            .role = role,
                            .pw = &pw,
                            .created_by = "test",
                            .log = log_row("CreateAccount", name),
                            .rec = rec_of("account.create", name)};
    struct res r = {0};
    PGresult *res;

    fill(pw.hash, sizeof(pw.hash), 0x11);
    fill(pw.salt, sizeof(pw.salt), 0x22);
    strcpy(pw.params, "scrypt:N=1024,r=8,p=1");
    res = PQexec(other, "BEGIN");
    PQclear(res);
    res = PQexec(other, insert);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    assert_int_equal(gw_acct_create(au, &n, create_cb, &r, NULL), 0);
    /* the store's INSERT passed its own check (the row is not committed) and now waits */
    assert_true(pgh_loop_until(base, waiting_on_lock, NULL, 20000));
    assert_int_equal(r.calls, 0);
    res = PQexec(other, "COMMIT");
    PQclear(res);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.created, want);
}

static void test_concurrent_creation_decided_by_the_indexes(void **state)
{
    PGconn *other;

    (void)state;
    if (!pg_ok)
        skip();
    other = PQconnectdb(pg.conninfo);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    race(other,
         "INSERT INTO account (name, person, role, pw_hash, pw_salt, pw_params, created_by) "
         "VALUES ('race-sys', 'race-person', 'system_admin', '\\x"
         "1111111111111111111111111111111111111111111111111111111111111111', "
         "'\\x22222222222222222222222222222222', 'scrypt:N=1024,r=8,p=1', 'other')",
         "race-sec", "race-person", "security_admin", GW_ACCT_SEPARATION_OF_DUTIES);
    race(other,
         "INSERT INTO account (name, person, role, branch, pw_hash, pw_salt, pw_params, "
         "created_by) VALUES ('race-name', 'p1', 'branch_clerk', 'a', '\\x"
         "1111111111111111111111111111111111111111111111111111111111111111', "
         "'\\x22222222222222222222222222222222', 'scrypt:N=1024,r=8,p=1', 'other')",
         "race-name", "p2", "lawful_access", GW_ACCT_NAME_TAKEN);
    PQfinish(other);
    /* and without a race, the statement's own check answers the same */
    create("race-aud", "race-person", "compliance_auditor", NULL, GW_ACCT_SEPARATION_OF_DUTIES);
    create("race-name", "p3", "lawful_access", NULL, GW_ACCT_NAME_TAKEN);
    assert_string_equal(scalar(check, "SELECT count(*) FROM account WHERE person = "
                                      "'race-person'"),
                        "1");
    /* refused creations leave no account.create record */
    assert_string_equal(scalar(check, "SELECT count(*) FROM audit_record WHERE action = "
                                      "'account.create' AND object IN ('race-sec', 'race-aud')"),
                        "0");
}

static void disable_as_test(const char *name, struct res *r)
{
    struct gw_acct_log l = log_row("DisableAccount", name);
    struct gw_audit_rec ar = rec_of("account.disable", name);

    memset(r, 0, sizeof(*r));
    assert_int_equal(gw_acct_disable(au, name, "test", "left", &l, &ar, disabled_cb, r, NULL), 0);
    wait_called(r);
}

/* The change and its record are one transaction: while audit_record refuses inserts, disabling
 * fails and the account stays enabled (its admin_log row is not written either); once it takes
 * them again, the same call disables it and leaves its record. An unknown account: found false
 * and no record. */
static void test_change_and_record_commit_together(void **state)
{
    struct res r;

    (void)state;
    if (!pg_ok)
        skip();
    create("tx-user", "tx-user", "branch_clerk", "a", GW_ACCT_CREATED);
    exec_ok("CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'audit_record refused by the test' USING ERRCODE = "
            "'insufficient_privilege'; END $$");
    exec_ok("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_record FOR EACH ROW EXECUTE "
            "FUNCTION refuse_audit()");
    disable_as_test("tx-user", &r);
    assert_int_equal(r.err, GW_EINTERNAL);
    assert_false(r.found);
    assert_string_equal(scalar(check, "SELECT disabled_at IS NULL FROM account WHERE name = "
                                      "'tx-user'"),
                        "t");
    assert_string_equal(scalar(check, "SELECT count(*) FROM admin_log WHERE action = "
                                      "'DisableAccount' AND object = 'tx-user'"),
                        "0");
    exec_ok("DROP TRIGGER refuse_audit ON audit_record");
    exec_ok("DROP FUNCTION refuse_audit()");
    disable_as_test("tx-user", &r);
    assert_int_equal(r.err, 0);
    assert_true(r.found && r.i64 > 0);
    assert_string_equal(scalar(check, "SELECT count(*) FROM audit_record WHERE action = "
                                      "'account.disable' AND object = 'tx-user'"),
                        "1");
    disable_as_test("no-such-user", &r);
    assert_int_equal(r.err, 0);
    assert_false(r.found);
    assert_string_equal(scalar(check, "SELECT count(*) FROM audit_record WHERE object = "
                                      "'no-such-user'"),
                        "0");
}

/* Writes a successful login's outcome for name (verified against pw_hash) that must issue
 * nothing: created false, no session, no login.ok record. */
static void login_ok_refused(const char *name, const uint8_t *pw_hash)
{
    struct gw_acct_login_outcome o;
    uint8_t tok[32];
    struct res r = {0};
    char sql[200];

    fill(tok, sizeof(tok), 0xD1);
    ok_outcome(&o, name, tok, pw_hash);
    assert_int_equal(gw_acct_login_finish(au, &o, login_done_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_false(r.found);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM session WHERE account_id = (SELECT id FROM account WHERE "
             "name = '%s')",
             name);
    assert_string_equal(scalar(check, sql), "0");
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_record WHERE action = 'login.ok' AND object = '%s'", name);
    assert_string_equal(scalar(check, sql), "0");
}

/* A login found ok whose account was disabled before its outcome was written: no session and no
 * login.ok record (the guard failed the transaction); created is false. */
static void test_login_ok_guarded(void **state)
{
    struct res r = {0};

    (void)state;
    if (!pg_ok)
        skip();
    create("guard-user", "guard-user", "branch_clerk", "a", GW_ACCT_CREATED);
    disable_as_test("guard-user", &r);
    assert_true(r.found);
    login_ok_refused("guard-user", created_hash);
}

/* A login verified against the password the account had when it was read, written after that
 * password changed (another gateway's ChangePassword committed in between): no session and no
 * login.ok record, created false; the same outcome against the current hash issues one, and an
 * ok outcome without a hash is refused (not taken as "any password"). */
static void test_login_ok_guarded_by_the_password(void **state)
{
    struct gw_acct_login_outcome o;
    uint8_t tok[32], now[GW_ACCT_HASH_LEN];
    struct res r = {0};

    (void)state;
    if (!pg_ok)
        skip();
    create("pwrace-user", "pwrace-user", "branch_clerk", "a", GW_ACCT_CREATED);
    exec_ok("UPDATE account SET pw_hash = '\\x3333333333333333333333333333333333333333333333333333"
            "333333333333', pw_set_at = now() WHERE name = 'pwrace-user'");
    login_ok_refused("pwrace-user", created_hash); /* the hash the login read and verified */
    fill(tok, sizeof(tok), 0xD2);
    fill(now, sizeof(now), 0x33);
    ok_outcome(&o, "pwrace-user", tok, now);
    assert_int_equal(gw_acct_login_finish(au, &o, login_done_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_true(r.found);
    o.pw_hash = NULL;
    assert_int_equal(gw_acct_login_finish(au, &o, login_done_cb, &r, NULL), GW_EINVAL);
}

/* A wrong old password given to ChangePassword counts as a failed login: the failure that
 * reaches lockout_failures locks the account (once), each leaves its record, and the password
 * read then says locked; another account is not touched. */
static void test_wrong_old_password_counts_towards_the_lockout(void **state)
{
    struct gw_acct_pw_fail f;
    struct res r = {0};

    (void)state;
    if (!pg_ok)
        skip();
    create("pwfail-user", "pwfail-user", "branch_clerk", "a", GW_ACCT_CREATED);
    create("pwfail-other", "pwfail-other", "branch_clerk", "a", GW_ACCT_CREATED);
    memset(&f, 0, sizeof(f));
    f.account_id = account_id("pwfail-user");
    f.lockout_failures = 2;
    f.lockout_minutes = 15;
    f.log = log_row("ChangePassword", "pwfail-user");
    f.log.outcome = "refused";
    f.rec = rec_of("password.change", "pwfail-user");
    f.rec.outcome = "refused";
    for (int i = 0; i < 3; i++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(gw_acct_pw_fail(au, &f, pw_failed_cb, &r, NULL), 0);
        wait_called(&r);
        assert_int_equal(r.err, 0);
        assert_int_equal(r.locked, i == 1); /* the second locks; the third finds it locked */
    }
    assert_string_equal(scalar(check, "SELECT failed_count || '|' || (locked_until > now() + "
                                      "interval '14 minutes') FROM account WHERE name = "
                                      "'pwfail-user'"),
                        "2|true");
    assert_string_equal(scalar(check, "SELECT count(*) FROM audit_record WHERE action = "
                                      "'password.change' AND outcome = 'refused' AND object = "
                                      "'pwfail-user'"),
                        "3");
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_pw_read(db, f.account_id, pw_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found && r.locked);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_pw_read(db, account_id("pwfail-other"), pw_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found && !r.locked);
}

static void login_read_cb(void *arg, int err, const struct gw_acct_login *l)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->found = l != NULL && l->found;
    r->locked = l != NULL && l->inactive; /* this test's one flag */
}

/* Login reads an account unused for more than inactive_days as inactive (Art. 38: the sweep has
 * not disabled it yet, and a login must not revive it); 0 days: never; a used one: not. */
static void test_login_read_tells_an_inactive_account(void **state)
{
    struct res r = {0};

    (void)state;
    if (!pg_ok)
        skip();
    create("idle-login", "idle-login", "branch_clerk", "a", GW_ACCT_CREATED);
    create("busy-login", "busy-login", "branch_clerk", "a", GW_ACCT_CREATED);
    exec_ok("UPDATE account SET last_used_at = now() - interval '91 days', created_at = now() - "
            "interval '200 days' WHERE name = 'idle-login'");
    exec_ok("UPDATE account SET last_used_at = now() - interval '89 days', created_at = now() - "
            "interval '200 days' WHERE name = 'busy-login'");
    assert_int_equal(gw_acct_login_read(db, "idle-login", 90, 90, login_read_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found && r.locked);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_login_read(db, "idle-login", 90, 0, login_read_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found && !r.locked);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_login_read(db, "busy-login", 90, 90, login_read_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found && !r.locked);
    /* never used: its creation counts */
    exec_ok("UPDATE account SET last_used_at = NULL WHERE name = 'busy-login'");
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_login_read(db, "busy-login", 90, 90, login_read_cb, &r, NULL), 0);
    wait_called(&r);
    assert_true(r.found && r.locked);
}

/* A failed login's outcome says whether it locked the account: only the failure that reaches
 * lockout_failures does (once per lock); each failure leaves its login.fail record. */
static void test_failure_that_locks_is_reported(void **state)
{
    struct gw_acct_login_outcome o;
    bool want[3] = {false, true, false};
    struct res r;

    (void)state;
    if (!pg_ok)
        skip();
    create("lock-user", "lock-user", "branch_clerk", "a", GW_ACCT_CREATED);
    memset(&o, 0, sizeof(o));
    o.ok = false;
    o.name = "lock-user";
    o.id = account_id("lock-user");
    o.lockout_failures = 2;
    o.lockout_minutes = 15;
    o.log = log_row("Login", "lock-user");
    o.rec = rec_of("login.fail", "lock-user");
    o.rec.outcome = "refused";
    for (int i = 0; i < 3; i++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(gw_acct_login_finish(au, &o, login_done_cb, &r, NULL), 0);
        wait_called(&r);
        assert_int_equal(r.err, 0);
        assert_false(r.found);
        assert_int_equal(r.locked, want[i]);
    }
    assert_string_equal(scalar(check, "SELECT count(*) FROM audit_record WHERE action = "
                                      "'login.fail' AND object = 'lock-user'"),
                        "3");
}

static void swept_cb(void *arg, int err, const char *const *names, size_t n, size_t purged)
{
    struct res *r = arg;

    r->calls++;
    r->err = err;
    r->nhist = n;
    r->found = n == 1 && strcmp(names[0], "idle-user") == 0;
    r->i64 = (int64_t)purged;
}

/* The inactivity sweep disables each idle account in its own transaction with its record. */
static void test_sweep_records_each_account(void **state)
{
    struct res r = {0};

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("UPDATE account SET disabled_at = now() WHERE disabled_at IS NULL");
    create("idle-user", "idle-user", "branch_clerk", "a", GW_ACCT_CREATED);
    create("busy-user", "busy-user", "branch_clerk", "a", GW_ACCT_CREATED);
    exec_ok("UPDATE account SET created_at = now() - interval '100 days' WHERE name = "
            "'idle-user'");
    assert_int_equal(gw_acct_sweep_inactive(db, au, 90, swept_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_true(r.found);
    assert_string_equal(scalar(check, "SELECT disabled_by FROM account WHERE name = 'idle-user'"),
                        "gateway");
    assert_string_equal(scalar(check, "SELECT disabled_at IS NULL FROM account WHERE name = "
                                      "'busy-user'"),
                        "t");
    assert_string_equal(scalar(check, "SELECT actor || ' ' || outcome || ' ' || detail FROM "
                                      "audit_record WHERE action = 'account.disable_inactive' "
                                      "AND object = 'idle-user'"),
                        "gateway ok unused for more than 90 days (Art. 38)");
    assert_string_equal(scalar(check, "SELECT count(*) FROM admin_log WHERE action = "
                                      "'DisableInactive' AND object = 'idle-user'"),
                        "1");
}

/* One successful login of name with a token hash of 32 bytes v. */
static void login_ok_as(const char *name, uint8_t v, uint32_t sessions_max)
{
    struct gw_acct_login_outcome o;
    uint8_t tok[32];
    struct res r = {0};

    fill(tok, sizeof(tok), v);
    ok_outcome(&o, name, tok, created_hash);
    o.sessions_max = sessions_max;
    assert_int_equal(gw_acct_login_finish(au, &o, login_done_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_true(r.found);
}

/* A login keeps at most sessions_max live sessions of its account, the new one included: past
 * it the oldest end, in the login's transaction; the account's expired sessions end with it;
 * another account's sessions are not touched. */
static void test_login_caps_the_sessions_of_an_account(void **state)
{
    (void)state;
    if (!pg_ok)
        skip();
    create("cap-user", "cap-user", "branch_clerk", "a", GW_ACCT_CREATED);
    create("cap-other", "cap-other", "branch_clerk", "a", GW_ACCT_CREATED);
    exec_ok("INSERT INTO session (token_hash, account_id, issued_at, expires_at) SELECT "
            "sha256('cap-expired'::bytea), id, now() - interval '9 hours', now() - interval "
            "'1 hour' FROM account WHERE name = 'cap-user'");
    login_ok_as("cap-other", 0x60, 16);
    for (uint8_t v = 1; v <= 20; v++) /* each its own transaction: issued_at increases */
        login_ok_as("cap-user", v, 16);
    assert_string_equal(scalar(check, "SELECT count(*) FROM session s JOIN account a ON a.id = "
                                      "s.account_id WHERE a.name = 'cap-user'"),
                        "16");
    /* the newest sixteen: tokens 5..20; the expired one is gone */
    assert_string_equal(scalar(check, "SELECT min(get_byte(token_hash, 0)) || '-' || "
                                      "max(get_byte(token_hash, 0)) FROM session s JOIN account a "
                                      "ON a.id = s.account_id WHERE a.name = 'cap-user'"),
                        "5-20");
    assert_string_equal(scalar(check, "SELECT count(*) FROM session s JOIN account a ON a.id = "
                                      "s.account_id WHERE a.name = 'cap-other'"),
                        "1");
    /* sessions_max 0 is refused, not taken as "no cap" */
    {
        struct gw_acct_login_outcome o;
        uint8_t tok[32];
        struct res r = {0};

        fill(tok, sizeof(tok), 0x70);
        memset(&o, 0, sizeof(o));
        o.ok = true;
        o.name = "cap-user";
        o.token_hash = tok;
        o.pw_hash = created_hash;
        o.log = log_row("Login", "cap-user");
        o.rec = rec_of("login.ok", "cap-user");
        assert_int_equal(gw_acct_login_finish(au, &o, login_done_cb, &r, NULL), GW_EINVAL);
    }
}

/* The inactivity sweep also deletes expired sessions, at most GW_ACCT_SWEEP_SESSIONS_MAX a run
 * (the next run goes on), never a live one; with days 0 (no inactivity rule) it still does. */
static void test_sweep_purges_expired_sessions(void **state)
{
    char sql[400];
    struct res r = {0};

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("DELETE FROM session");
    create("purge-user", "purge-user", "branch_clerk", "a", GW_ACCT_CREATED);
    snprintf(sql, sizeof(sql),
             "INSERT INTO session (token_hash, account_id, issued_at, expires_at) SELECT "
             "sha256(('purge-' || i)::bytea), a.id, now() - interval '9 hours', now() - "
             "interval '1 second' * i FROM account a, generate_series(1, %d) i WHERE a.name = "
             "'purge-user'",
             GW_ACCT_SWEEP_SESSIONS_MAX + 10);
    exec_ok(sql);
    exec_ok("INSERT INTO session (token_hash, account_id, expires_at) SELECT "
            "sha256('purge-live'::bytea), id, now() + interval '1 hour' FROM account WHERE name = "
            "'purge-user'");
    assert_int_equal(gw_acct_sweep_inactive(db, au, 90, swept_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.i64, GW_ACCT_SWEEP_SESSIONS_MAX);
    /* the oldest went first: the ten expired last are left */
    assert_string_equal(scalar(check, "SELECT count(*) FROM session WHERE expires_at <= now() AND "
                                      "expires_at > now() - interval '11 seconds'"),
                        "10");
    assert_string_equal(scalar(check, "SELECT count(*) FROM session"), "11");
    memset(&r, 0, sizeof(r));
    assert_int_equal(gw_acct_sweep_inactive(db, au, 0, swept_cb, &r, NULL), 0);
    wait_called(&r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.i64, 10);
    assert_int_equal(r.nhist, 0); /* days 0: nothing disabled */
    assert_string_equal(scalar(check, "SELECT count(*) FROM session WHERE token_hash = "
                                      "sha256('purge-live'::bytea)"),
                        "1");
    assert_string_equal(scalar(check, "SELECT count(*) FROM session"), "1");
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    struct timeval tv = {0, 10000};

    (void)state;
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, pgh_on_tick, NULL);
    event_add(tick, &tv);
    gw_log_level = GW_LOG_WARN;
    if (!pgh_available())
        return 0;
    if (pgh_init_migrated(&pg, "test_accounts_db", &check, &pg_ok) != 0)
        return -1;
    pgh_db_config(&pg, &cfg, 200);
    db = gw_db_new(base, &cfg);
    if (db == NULL || gw_db_start(db) != 0)
        return -1;
    if (!pgh_loop_until(base, db_is_ready, db, 10000))
        return -1;
    {
        static const uint8_t seed[GW_SIGN_SEED_LEN] = {7};
        struct gw_audit_config ac = {.chain = "test-accounts",
                                     .checkpoint_every = 100,
                                     .checkpoint_ms = 60000,
                                     .alg = GW_SIGN_ED25519,
                                     .seed = seed};

        if (gw_audit_new(db, &ac, &au) != 0 || gw_audit_start(au) != 0)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    gw_audit_free(au);
    gw_db_free(db);
    if (check != NULL)
        PQfinish(check);
    if (pg_ok)
        pgh_destroy(&pg);
    event_free(tick);
    event_base_free(base);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identify),
        cmocka_unit_test(test_password_history_keeps_five),
        cmocka_unit_test(test_concurrent_creation_decided_by_the_indexes),
        cmocka_unit_test(test_change_and_record_commit_together),
        cmocka_unit_test(test_login_ok_guarded),
        cmocka_unit_test(test_login_ok_guarded_by_the_password),
        cmocka_unit_test(test_login_read_tells_an_inactive_account),
        cmocka_unit_test(test_wrong_old_password_counts_towards_the_lockout),
        cmocka_unit_test(test_failure_that_locks_is_reported),
        cmocka_unit_test(test_sweep_records_each_account),
        cmocka_unit_test(test_login_caps_the_sessions_of_an_account),
        cmocka_unit_test(test_sweep_purges_expired_sessions),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
