/* test_store_acct_admin.c: the CLI's SQL on principals, accounts, sessions, admin_log and
 * incidents (store_acct_admin.h), run as the database's admin role against a throwaway
 * PostgreSQL with the migrations applied: what it may do is exactly what sql/006_accounts.sql
 * grants. Skips when no PostgreSQL is installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pg_harness.h"
#include "store_acct_admin.h"

static struct {
    struct pgh pg;
    bool started;
    PGconn *check; /* the owner's connection, to look */
    struct gw_admin *a;
    char err[512];
} F;

static int group_setup(void **state)
{
    char conninfo[600];
    (void)state;
    if (!pgh_available())
        return 0;
    if (pgh_init_migrated(&F.pg, "test_store_acct_admin", &F.check, &F.started) != 0)
        return -1;
    snprintf(conninfo, sizeof conninfo, "host=%s port=%d dbname=postgres user=postgres_admin",
             F.pg.dir, F.pg.port);
    return gw_admin_connect(conninfo, &F.a, F.err, sizeof F.err) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    gw_admin_free(F.a);
    PQfinish(F.check);
    if (F.started)
        pgh_destroy(&F.pg);
    return 0;
}

static long long scalar(const char *sql)
{
    PGresult *r = PQexec(F.check, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(F.check));
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(F.check, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(F.check));
    PQclear(r);
}

struct seen {
    int n;
    char names[8][64];
    bool admin[8], disabled[8];
    uint8_t fp[8][GW_ADMIN_FP_LEN];
};

static void principal_cb(void *arg, const struct gw_admin_principal *p)
{
    struct seen *s = arg;
    if (s->n >= 8)
        return;
    snprintf(s->names[s->n], sizeof s->names[0], "%s", p->name);
    s->admin[s->n] = p->admin;
    s->disabled[s->n] = p->disabled_at != NULL;
    memcpy(s->fp[s->n], p->fingerprint, GW_ADMIN_FP_LEN);
    s->n++;
}

static void account_cb(void *arg, const struct gw_admin_account *acc)
{
    struct seen *s = arg;
    if (s->n >= 8)
        return;
    snprintf(s->names[s->n], sizeof s->names[0], "%s", acc->name);
    s->admin[s->n] = acc->must_change;
    s->disabled[s->n] = acc->disabled_at != NULL;
    s->n++;
}

static void test_principals(void **state)
{
    (void)state;
    if (!F.started)
        skip();
    struct gw_admin_principal p = {0};
    struct seen s = {0};
    long long id = 0, id2 = 0;
    bool already = true;

    memset(p.fingerprint, 0xab, GW_ADMIN_FP_LEN);
    p.name = "dev1";
    p.role = "courier";
    p.branch = "a";
    p.created_by = "tester";
    assert_int_equal(gw_admin_principal_add(F.a, &p, &id, F.err, sizeof F.err), 0);
    assert_true(id > 0);
    /* the same name, or the same certificate, again: refused, nothing stored */
    assert_int_equal(gw_admin_principal_add(F.a, &p, &id2, F.err, sizeof F.err), GW_EEXIST);
    p.name = "dev2";
    assert_int_equal(gw_admin_principal_add(F.a, &p, &id2, F.err, sizeof F.err), GW_EEXIST);
    assert_int_equal(scalar("SELECT count(*) FROM principal"), 1);
    /* the column's rule (branch only for the branch roles) is the database's too */
    memset(p.fingerprint, 0xcd, GW_ADMIN_FP_LEN);
    p.role = "backend";
    assert_int_equal(gw_admin_principal_add(F.a, &p, &id2, F.err, sizeof F.err), GW_EINTERNAL);
    p.branch = NULL;
    p.admin = true;
    assert_int_equal(gw_admin_principal_add(F.a, &p, &id2, F.err, sizeof F.err), 0);

    uint8_t fp[GW_ADMIN_FP_LEN];
    memset(fp, 0xab, sizeof fp);
    assert_int_equal(
        gw_admin_principal_find(F.a, "dev2", fp, principal_cb, &s, F.err, sizeof F.err), 0);
    assert_int_equal(s.n, 2); /* dev1 by its certificate, dev2 by its name */
    assert_string_equal(s.names[0], "dev1");
    assert_memory_equal(s.fp[0], fp, GW_ADMIN_FP_LEN);
    assert_true(s.admin[1]);

    memset(&s, 0, sizeof s);
    assert_int_equal(
        gw_admin_principal_disable(F.a, "dev1", "tester", &already, F.err, sizeof F.err), 0);
    assert_false(already);
    assert_int_equal(
        gw_admin_principal_disable(F.a, "dev1", "other", &already, F.err, sizeof F.err), 0);
    assert_true(already);
    assert_int_equal(scalar("SELECT count(*) FROM principal WHERE disabled_by = 'tester'"), 1);
    assert_int_equal(
        gw_admin_principal_disable(F.a, "nobody", "tester", &already, F.err, sizeof F.err),
        GW_ENOTFOUND);
    assert_int_equal(gw_admin_principal_list(F.a, principal_cb, &s, F.err, sizeof F.err), 0);
    assert_int_equal(s.n, 2);
    assert_true(s.disabled[0]);
    assert_false(s.disabled[1]);
}

static struct gw_admin_account_new new_account(const char *name, const char *person,
                                               const char *role, const char *branch)
{
    struct gw_admin_account_new n = {0};
    n.name = name;
    n.person = person;
    n.role = role;
    n.branch = branch;
    memset(n.pw_hash, 0x11, sizeof n.pw_hash);
    memset(n.pw_salt, 0x22, sizeof n.pw_salt);
    n.pw_params = "scrypt:N=1024,r=8,p=1";
    n.created_by = "tester";
    return n;
}

static void test_accounts(void **state)
{
    (void)state;
    if (!F.started)
        skip();
    struct gw_admin_account_new n;
    struct seen s = {0};
    long long id = 0, count = -1, sessions = -1;
    bool already = true;

    n = new_account("sys1", "p1", "system_admin", NULL);
    assert_int_equal(gw_admin_account_insert(F.a, &n, &id, F.err, sizeof F.err), 0);
    assert_int_equal(scalar("SELECT count(*) FROM account WHERE name = 'sys1' AND must_change "
                            "AND octet_length(pw_hash) = 32"),
                     1);
    assert_int_equal(gw_admin_account_insert(F.a, &n, &id, F.err, sizeof F.err), GW_EEXIST);
    /* the separation-of-duties index: one person, one administrator role */
    n = new_account("aud1", "p1", "compliance_auditor", NULL);
    assert_int_equal(gw_admin_account_insert(F.a, &n, &id, F.err, sizeof F.err), GW_EPERM);
    n = new_account("law1", "p1", "lawful_access", NULL);
    assert_int_equal(gw_admin_account_insert(F.a, &n, &id, F.err, sizeof F.err), 0);
    assert_int_equal(gw_admin_account_admin_roles(F.a, "p1", account_cb, &s, F.err, sizeof F.err),
                     0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.names[0], "sys1");

    /* a transaction rolled back keeps nothing */
    assert_int_equal(gw_admin_begin(F.a, F.err, sizeof F.err), 0);
    assert_int_equal(gw_admin_xact_lock(F.a, "test", F.err, sizeof F.err), 0);
    n = new_account("sec1", "p2", "security_admin", NULL);
    assert_int_equal(gw_admin_account_insert(F.a, &n, &id, F.err, sizeof F.err), 0);
    assert_int_equal(
        gw_admin_account_count_role(F.a, "security_admin", &count, F.err, sizeof F.err), 0);
    assert_int_equal(count, 1);
    gw_admin_rollback(F.a);
    assert_int_equal(
        gw_admin_account_count_role(F.a, "security_admin", &count, F.err, sizeof F.err), 0);
    assert_int_equal(count, 0);

    /* disable ends every session of the account, and only its */
    n = new_account("clerk1", "p3", "branch_clerk", "a");
    assert_int_equal(gw_admin_account_insert(F.a, &n, &id, F.err, sizeof F.err), 0);
    exec_ok("INSERT INTO session (token_hash, account_id, expires_at) SELECT sha256(t::bytea), "
            "a.id, now() + interval '1 hour' FROM account a, (VALUES ('t1'), ('t2')) v(t) "
            "WHERE a.name = 'clerk1'");
    exec_ok("INSERT INTO session (token_hash, account_id, expires_at) SELECT sha256('t3'), id, "
            "now() + interval '1 hour' FROM account WHERE name = 'law1'");
    assert_int_equal(gw_admin_begin(F.a, F.err, sizeof F.err), 0);
    assert_int_equal(gw_admin_account_disable(F.a, "clerk1", "tester", "left", &already, &sessions,
                                              F.err, sizeof F.err),
                     0);
    assert_int_equal(gw_admin_commit(F.a, F.err, sizeof F.err), 0);
    assert_false(already);
    assert_int_equal(sessions, 2);
    assert_int_equal(scalar("SELECT count(*) FROM session"), 1);
    assert_int_equal(scalar("SELECT count(*) FROM account WHERE name = 'clerk1' AND "
                            "disabled_reason = 'left' AND disabled_by = 'tester'"),
                     1);
    assert_int_equal(gw_admin_account_disable(F.a, "clerk1", "x", "again", &already, &sessions,
                                              F.err, sizeof F.err),
                     0);
    assert_true(already);
    assert_int_equal(scalar("SELECT count(*) FROM account WHERE disabled_reason = 'left'"), 1);
    assert_int_equal(
        gw_admin_account_disable(F.a, "nobody", "x", "r", &already, &sessions, F.err, sizeof F.err),
        GW_ENOTFOUND);

    memset(&s, 0, sizeof s);
    assert_int_equal(gw_admin_account_list(F.a, NULL, account_cb, &s, F.err, sizeof F.err), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.names[0], "clerk1");
    assert_true(s.disabled[0]);
    memset(&s, 0, sizeof s);
    assert_int_equal(gw_admin_account_list(F.a, "law1", account_cb, &s, F.err, sizeof F.err), 0);
    assert_int_equal(s.n, 1);
}

/* As the CLI's role: unlock clears the failure count and the lock (sql/025_account_unlock.sql
 * grants exactly those two columns) and says what it found; an unknown name changes nothing;
 * the role still may not set a password. */
static void test_unlock(void **state)
{
    (void)state;
    if (!F.started)
        skip();
    struct gw_admin_account_new n = new_account("locked1", "p4", "customer_service", "b");
    struct gw_admin_unlock was;
    long long id = 0;
    PGresult *r;

    assert_int_equal(gw_admin_account_insert(F.a, &n, &id, F.err, sizeof F.err), 0);
    exec_ok("UPDATE account SET failed_count = 5, locked_until = now() + interval '15 minutes' "
            "WHERE name = 'locked1'");
    assert_int_equal(gw_admin_begin(F.a, F.err, sizeof F.err), 0);
    assert_int_equal(gw_admin_account_unlock(F.a, "locked1", &was, F.err, sizeof F.err), 0);
    assert_int_equal(gw_admin_commit(F.a, F.err, sizeof F.err), 0);
    assert_true(was.locked);
    assert_false(was.disabled);
    assert_int_equal(was.failed_count, 5);
    assert_int_equal(strlen(was.locked_until), 20); /* YYYY-MM-DDTHH:MM:SSZ */
    assert_int_equal(scalar("SELECT count(*) FROM account WHERE name = 'locked1' AND "
                            "failed_count = 0 AND locked_until IS NULL"),
                     1);
    /* again: nothing was locked */
    assert_int_equal(gw_admin_account_unlock(F.a, "locked1", &was, F.err, sizeof F.err), 0);
    assert_false(was.locked);
    assert_int_equal(was.failed_count, 0);
    assert_string_equal(was.locked_until, "");
    /* a lock that ran out is not reported as a lock, its count is cleared */
    exec_ok("UPDATE account SET failed_count = 5, locked_until = now() - interval '1 minute', "
            "disabled_at = now() WHERE name = 'locked1'");
    assert_int_equal(gw_admin_account_unlock(F.a, "locked1", &was, F.err, sizeof F.err), 0);
    assert_false(was.locked);
    assert_true(was.disabled);
    assert_int_equal(was.failed_count, 5);
    assert_int_equal(
        scalar("SELECT count(*) FROM account WHERE name = 'locked1' AND "
               "failed_count = 0 AND locked_until IS NULL AND disabled_at IS NOT NULL"),
        1);
    assert_int_equal(gw_admin_account_unlock(F.a, "nobody", &was, F.err, sizeof F.err),
                     GW_ENOTFOUND);
    /* the grant is those two columns: no password, no must_change */
    r = PQexec(gw_admin_conn(F.a), "UPDATE account SET must_change = false WHERE name = 'locked1'");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42501");
    PQclear(r);
    r = PQexec(gw_admin_conn(F.a), "UPDATE account SET pw_hash = pw_hash WHERE name = 'locked1'");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42501");
    PQclear(r);
}

static void test_log_and_incident(void **state)
{
    (void)state;
    if (!F.started)
        skip();
    struct gw_admin_logrec r = {"tester", "accounts.create", "x1", "refused", "password: rule"};

    assert_int_equal(gw_admin_log(F.a, &r, F.err, sizeof F.err), 0);
    assert_int_equal(scalar("SELECT count(*) FROM admin_log WHERE actor = 'tester' AND via = "
                            "'cli' AND peer = 'local' AND action = 'accounts.create' AND "
                            "outcome = 'refused'"),
                     1);
    assert_int_equal(gw_admin_incident(F.a, "medium", "separation_of_duties", "tester", NULL,
                                       "detail", F.err, sizeof F.err),
                     0);
    assert_int_equal(scalar("SELECT count(*) FROM incident WHERE kind = 'separation_of_duties' "
                            "AND peer = 'local' AND severity = 'medium'"),
                     1);
    /* the admin role reaches incidents only through the function; a bad severity is refused */
    assert_int_equal(gw_admin_incident(F.a, "huge", "k", NULL, NULL, NULL, F.err, sizeof F.err),
                     GW_EINTERNAL);
}

/* The CLI's connections run READ COMMITTED whatever the role's default says: its transactions
 * take a lock, then read what the lock's holder committed. */
static void test_read_committed_pinned(void **state)
{
    char conninfo[600];
    struct gw_admin *a = NULL;
    PGresult *r;

    (void)state;
    if (!F.started)
        skip();
    exec_ok("ALTER ROLE postgres_admin SET default_transaction_isolation = 'serializable'");
    snprintf(conninfo, sizeof conninfo, "host=%s port=%d dbname=postgres user=postgres_admin",
             F.pg.dir, F.pg.port);
    assert_int_equal(gw_admin_connect(conninfo, &a, F.err, sizeof F.err), 0);
    exec_ok("ALTER ROLE postgres_admin RESET default_transaction_isolation");
    r = PQexec(gw_admin_conn(a), "SELECT current_setting('transaction_isolation')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "read committed");
    PQclear(r);
    gw_admin_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_principals),
        cmocka_unit_test(test_accounts),
        cmocka_unit_test(test_unlock),
        cmocka_unit_test(test_log_and_incident),
        cmocka_unit_test(test_read_committed_pinned),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
