/* test_db.c: the asynchronous pool against a throwaway PostgreSQL started in group setup:
 * queries, transactions, failures, pipelining, prepared statements, cancellation, the schema
 * check, and the server going away and coming back. Skipped when the PostgreSQL binaries are
 * missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "pg_harness.h"
#include "store_report.h"

static struct pgh pg;
static bool pg_ok;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;

struct ctx {
    int calls;
    int err;
    int failed_stmt;
    char sqlstate[6];
    char value[128];
    int nresults;
};

static bool run_until(bool (*pred)(void *), void *arg, long timeout_ms)
{
    return pgh_loop_until(base, pred, arg, timeout_ms);
}

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
}
static bool db_is_down(void *arg)
{
    return !gw_db_ready(arg);
}
static bool db_idle(void *arg)
{
    return gw_db_pending(arg) == 0;
}
static bool all_ready(void *arg)
{
    return gw_db_nready(arg) == gw_db_pool_size(arg);
}
static bool ctx_done(void *arg)
{
    return ((struct ctx *)arg)->calls > 0;
}

static void done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct ctx *c = arg;

    c->calls++;
    c->err = err;
    c->failed_stmt = res->failed_stmt;
    c->nresults = res->nresults;
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", res->sqlstate ? res->sqlstate : "");
    c->value[0] = '\0';
    if (err == 0 && res->nresults > 0) {
        PGresult *last = res->results[res->nresults - 1];
        if (last != NULL && PQntuples(last) > 0)
            snprintf(c->value, sizeof(c->value), "%s", PQgetvalue(last, 0, 0));
    }
}

static struct gw_db *new_db(void)
{
    struct gw_db *db = gw_db_new(base, &cfg);
    assert_non_null(db);
    assert_int_equal(gw_db_start(db), 0);
    assert_true(run_until(db_is_ready, db, 10000));
    return db;
}

/* Runs one request to completion. */
static void exec_sync(struct gw_db *db, const struct gw_db_stmt *st, int n, unsigned flags,
                      struct ctx *c)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(gw_db_exec(db, st, n, flags, done_cb, c, NULL), 0);
    assert_true(run_until(ctx_done, c, 10000));
    assert_int_equal(c->calls, 1);
}

static int group_setup(void **state)
{
    (void)state;
    base = event_base_new();
    if (base == NULL)
        return -1;
    tick = event_new(base, -1, EV_PERSIST, pgh_on_tick, NULL);
    struct timeval tv = {0, 10000};
    event_add(tick, &tv);
    gw_log_level = GW_LOG_WARN;
    if (!pgh_available())
        return 0;
    if (pgh_init(&pg) != 0) {
        fprintf(stderr, "test_db: could not start PostgreSQL (see %s/harness.log)\n", pg.dir);
        return -1;
    }
    pg_ok = true;
    pgh_db_config(&pg, &cfg, 400);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (pg_ok)
        pgh_destroy(&pg);
    event_free(tick);
    event_base_free(base);
    return 0;
}

static void test_simple_query(void **state)
{
    struct gw_db_stmt st = {.sql = "SELECT 40 + 2"};
    struct ctx c;
    struct gw_db *db;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    exec_sync(db, &st, 1, 0, &c);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.failed_stmt, -1);
    assert_string_equal(c.value, "42");
    assert_int_equal(gw_db_pool_size(db), 2);
    assert_int_equal(gw_db_pending(db), 0);
    gw_db_free(db);
}

/* Runs sql on a blocking connection of the harness's (the superuser). */
static void admin_exec(const char *sql)
{
    PGconn *c = PQconnectdb(pg.conninfo);
    PGresult *r;

    assert_true(PQstatus(c) == CONNECTION_OK);
    r = PQexec(c, sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

/* The gateway's transactions are READ COMMITTED whatever the defaults say (a lock, then a
 * statement that must see what its holder committed), and the other startup options (here from
 * PGOPTIONS) still apply. The database's default is put back by the teardown. */
static void test_read_committed_pinned(void **state)
{
    struct gw_db_stmt st = {.sql = "SELECT current_setting('transaction_isolation') || '/' || "
                                   "current_setting('search_path')"};
    struct ctx c;
    struct gw_db *db;

    (void)state;
    if (!pg_ok)
        skip();
    admin_exec("ALTER DATABASE postgres SET default_transaction_isolation = 'repeatable read'");
    assert_int_equal(setenv("PGOPTIONS",
                            "-c search_path=pg_catalog,public "
                            "-c default_transaction_isolation=serializable",
                            1),
                     0);
    db = new_db();
    unsetenv("PGOPTIONS");
    exec_sync(db, &st, 1, 0, &c);
    assert_int_equal(c.err, 0);
    assert_string_equal(c.value, "read committed/pg_catalog,public");
    gw_db_free(db);
}

/* Requests offered on every turn of the loop while each connection's session statement fails. */
struct offer {
    struct gw_db *db;
    struct ctx runs[64];
    int accepted, refused;
    bool ready_seen;
};

static const struct gw_db_stmt ISOLATION = {.sql =
                                                "SELECT current_setting('transaction_isolation')"};

/* One turn's offer: a request, counted as taken or refused, and whether the pool says ready. */
static void offer_one(struct offer *o)
{
    o->ready_seen |= gw_db_ready(o->db);
    if (o->accepted < 64) {
        if (gw_db_exec(o->db, &ISOLATION, 1, 0, done_cb, &o->runs[o->accepted], NULL) == 0)
            o->accepted++;
        else
            o->refused++;
    }
}

static bool offer_until_failures(void *arg)
{
    struct offer *o = arg;

    offer_one(o);
    return gw_db_session_failures(o->db) >= 4;
}

static bool offers_done(void *arg)
{
    struct offer *o = arg;

    for (int i = 0; i < o->accepted; i++)
        if (o->runs[i].calls == 0)
            return false;
    return true;
}

/* A connection whose session statement fails takes no caller's request: what is offered while
 * it runs is refused (GW_EUNAVAIL), nothing runs under the server's default (REPEATABLE READ
 * here), the pool never says it is ready and keeps reconnecting; once the statement succeeds the
 * pool is ready and runs READ COMMITTED. */
static void test_session_statement_failure_takes_no_request(void **state)
{
    struct offer o;
    struct ctx c;

    (void)state;
    if (!pg_ok)
        skip();
    admin_exec("ALTER DATABASE postgres SET default_transaction_isolation = 'repeatable read'");
    memset(&o, 0, sizeof(o));
    o.db = gw_db_new(base, &cfg);
    assert_non_null(o.db);
    assert_int_equal(gw_db_set_session_sql(o.db, "SET default_transaction_isolation = 'no such'"),
                     0);
    assert_int_equal(gw_db_start(o.db), 0);
    assert_true(run_until(offer_until_failures, &o, 20000));
    assert_true(run_until(offers_done, &o, 10000));
    for (int i = 0; i < o.accepted; i++)
        print_message("offered request %d ran: err %d, isolation '%s'\n", i, o.runs[i].err,
                      o.runs[i].value);
    assert_int_equal(o.accepted, 0);
    assert_true(o.refused > 0);
    assert_false(o.ready_seen);

    assert_int_equal(gw_db_set_session_sql(o.db, NULL), 0);
    assert_true(run_until(db_is_ready, o.db, 10000));
    exec_sync(o.db, &ISOLATION, 1, 0, &c);
    assert_int_equal(c.err, 0);
    assert_string_equal(c.value, "read committed");
    gw_db_free(o.db);
}

static int reset_default_isolation(void **state)
{
    (void)state;
    unsetenv("PGOPTIONS");
    if (pg_ok)
        admin_exec("ALTER DATABASE postgres RESET default_transaction_isolation");
    return 0;
}

/* ---- the schema check (gw_db_set_schema_min, sql/029_schema_version.sql) ---- */

#define SCHEMA_ROLE "postgres_gateway" /* sql/029 grants to current_database() || '_gateway' */

/* The migration that lets the gateway's role read the schema's version. */
static const struct gw_migration *schema_version_migration(void)
{
    for (size_t i = 0; i < gw_migrations_count; i++)
        if (strcmp(gw_migrations[i].name, "029_schema_version") == 0)
            return &gw_migrations[i];
    fail_msg("sql/029_schema_version.sql is not embedded");
    return NULL;
}

/* Requests offered on every turn of the loop until the pool has refused `refusals` connections
 * for their schema. */
struct schema_offer {
    struct offer o;
    unsigned refusals;
};

static bool offer_until_refusals(void *arg)
{
    struct schema_offer *so = arg;

    offer_one(&so->o);
    return gw_db_schema_refusals(so->o.db) >= so->refusals;
}

/* Offers requests while at least two more set-ups are refused: none is taken, none runs, the pool
 * never says it is ready. */
static void refused_for_schema(struct gw_db *db)
{
    struct schema_offer so;

    memset(&so, 0, sizeof(so));
    so.o.db = db;
    so.refusals = gw_db_schema_refusals(db) + 2;
    assert_true(run_until(offer_until_refusals, &so, 30000));
    assert_true(run_until(offers_done, &so.o, 10000));
    for (int i = 0; i < so.o.accepted; i++)
        print_message("offered request %d ran: err %d\n", i, so.o.runs[i].err);
    assert_int_equal(so.o.accepted, 0);
    assert_true(so.o.refused > 0);
    assert_false(so.o.ready_seen);
    assert_true(gw_db_schema_behind(db));
}

/* Ends the pool's sessions so that every connection sets up again. */
static void reconnect_all(void)
{
    PGconn *admin = PQconnectdb(pg.conninfo);
    PGresult *r;

    assert_true(PQstatus(admin) == CONNECTION_OK);
    r = PQexec(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE usename = '" SCHEMA_ROLE "'");
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(admin);
}

/* A pool on the gateway's role, given the build's newest migration as its minimum, takes no
 * connection into use while the schema is behind: recorded up to the migration before (here
 * 028, the database not migrated since the upgrade), or with schema_version() not callable (the
 * grant of 029 missing): what is offered is refused (GW_EUNAVAIL), nothing runs, the pool keeps
 * retrying, and it takes its connections once the schema is migrated, with no restart. A schema
 * newer than the build is used. Without a minimum, the bare database of the other tests is
 * used as before. */
static void test_schema_behind_takes_no_request(void **state)
{
    const struct gw_migration *m029;
    struct gw_config gcfg = cfg;
    struct gw_db *db;
    struct ctx c;
    char ci[600], sql[128];
    PGconn *admin;
    PGresult *r;

    (void)state;
    if (!pg_ok)
        skip();
    m029 = schema_version_migration();
    admin_exec("CREATE ROLE " SCHEMA_ROLE " LOGIN");
    admin_exec("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
               "checksum bytea NOT NULL)");
    snprintf(sql, sizeof(sql),
             "INSERT INTO schema_migrations SELECT v, 'm' || v, '\\x00' "
             "FROM generate_series(1, %d) v",
             m029->version - 1);
    admin_exec(sql);
    admin = PQconnectdb(pg.conninfo);
    assert_true(PQstatus(admin) == CONNECTION_OK);
    r = PQexec(admin, m029->sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(admin);

    snprintf(ci, sizeof(ci), "host=%s port=%d dbname=postgres user=" SCHEMA_ROLE, pg.dir, pg.port);
    gcfg.db_conninfo = ci;
    db = gw_db_new(base, &gcfg);
    assert_non_null(db);
    assert_int_equal(gw_db_schema_version(db), GW_DB_SCHEMA_UNKNOWN);
    assert_int_equal(gw_db_set_schema_min(db, -1), GW_EINVAL);
    assert_int_equal(gw_db_set_schema_min(db, m029->version), 0);
    assert_int_equal(gw_db_start(db), 0);

    /* behind: the migration's row is missing */
    refused_for_schema(db);
    assert_int_equal(gw_db_schema_version(db), m029->version - 1);

    /* migrated: taken into use without a restart */
    snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations VALUES (%d, 'm', '\\x00')",
             m029->version);
    admin_exec(sql);
    assert_true(run_until(all_ready, db, 30000));
    assert_false(gw_db_schema_behind(db));
    assert_int_equal(gw_db_schema_version(db), m029->version);
    exec_sync(db, &ISOLATION, 1, 0, &c);
    assert_int_equal(c.err, 0);
    assert_string_equal(c.value, "read committed");

    /* the grant of 029 missing: the version cannot be read, which is behind too */
    admin_exec("REVOKE EXECUTE ON FUNCTION schema_version() FROM " SCHEMA_ROLE);
    reconnect_all();
    assert_true(run_until(db_is_down, db, 30000));
    refused_for_schema(db);
    assert_int_equal(gw_db_schema_version(db), GW_DB_SCHEMA_UNREADABLE);

    /* granted again, on a schema newer than the build: used */
    snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations VALUES (%d, 'm', '\\x00')",
             m029->version + 1);
    admin_exec(sql);
    admin_exec("GRANT EXECUTE ON FUNCTION schema_version() TO " SCHEMA_ROLE);
    assert_true(run_until(all_ready, db, 30000));
    assert_false(gw_db_schema_behind(db));
    assert_int_equal(gw_db_schema_version(db), m029->version + 1);
    exec_sync(db, &ISOLATION, 1, 0, &c);
    assert_int_equal(c.err, 0);
    gw_db_free(db);
}

static int drop_schema(void **state)
{
    (void)state;
    if (!pg_ok)
        return 0;
    reconnect_all();
    admin_exec("DROP FUNCTION IF EXISTS schema_version()");
    admin_exec("DROP TABLE IF EXISTS schema_migrations");
    admin_exec("DROP ROLE IF EXISTS " SCHEMA_ROLE);
    return 0;
}

static void test_params_text_and_binary(void **state)
{
    static const char blob[5] = {0x00, 0x01, (char)0xff, 0x00, 0x7f};
    const char *vals[2] = {"hello", blob};
    const int lens[2] = {0, 5};
    const int fmts[2] = {0, 1};
    struct gw_db_stmt st = {.sql = "SELECT $1::text || ':' || encode($2::bytea, 'hex')",
                            .nparams = 2,
                            .values = vals,
                            .lengths = lens,
                            .formats = fmts};
    const char *nullv[1] = {NULL};
    struct gw_db_stmt stn = {
        .sql = "SELECT coalesce($1::text, 'was null')", .nparams = 1, .values = nullv};
    struct ctx c;
    struct gw_db *db;
    char copy[8];

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    /* the request copies its parameters: scribble over ours before the loop runs */
    strcpy(copy, "hello");
    vals[0] = copy;
    memset(&c, 0, sizeof(c));
    assert_int_equal(gw_db_exec(db, &st, 1, 0, done_cb, &c, NULL), 0);
    memset(copy, 'X', 5);
    assert_true(run_until(ctx_done, &c, 10000));
    assert_int_equal(c.err, 0);
    assert_string_equal(c.value, "hello:0001ff007f");
    exec_sync(db, &stn, 1, 0, &c);
    assert_string_equal(c.value, "was null");
    gw_db_free(db);
}

static void test_transaction(void **state)
{
    struct gw_db_stmt setup[] = {
        {.sql = "CREATE TABLE IF NOT EXISTS t_txn (k int PRIMARY KEY, v text)"},
        {.sql = "TRUNCATE t_txn"},
    };
    const char *v1[] = {"1", "one"}, *v2[] = {"2", "two"}, *v3[] = {"3", "three"};
    struct gw_db_stmt txn[] = {
        {.sql = "INSERT INTO t_txn VALUES ($1, $2)", .nparams = 2, .values = v1},
        {.sql = "INSERT INTO t_txn VALUES ($1, $2)", .nparams = 2, .values = v2},
        {.sql = "INSERT INTO t_txn VALUES ($1, $2)", .nparams = 2, .values = v3},
        {.sql = "UPDATE t_txn SET v = upper(v) WHERE k = 2"},
        {.sql = "SELECT string_agg(v, ',' ORDER BY k) FROM t_txn"},
    };
    struct gw_db_stmt check = {.sql = "SELECT count(*) FROM t_txn"};
    struct ctx c;
    struct gw_db *db;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    exec_sync(db, setup, 2, GW_DB_TXN, &c);
    assert_int_equal(c.err, 0);
    exec_sync(db, txn, 5, GW_DB_TXN, &c);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.nresults, 5);
    assert_string_equal(c.value, "one,TWO,three");
    exec_sync(db, &check, 1, 0, &c);
    assert_string_equal(c.value, "3");
    gw_db_free(db);
}

/* Captures what the failure callback sees beyond ctx. */
static int fail_seen_results;
static void fail_cb(void *arg, int err, const struct gw_db_result *res)
{
    int i;
    fail_seen_results = 0;
    for (i = 0; i < res->nresults; i++)
        if (res->results[i] != NULL)
            fail_seen_results |= 1 << i;
    assert_non_null(res->errmsg);
    done_cb(arg, err, res);
}

static void test_failure_isolated(void **state)
{
    struct gw_db_stmt setup[] = {
        {.sql = "CREATE TABLE IF NOT EXISTS t_fail (k int PRIMARY KEY)"},
        {.sql = "TRUNCATE t_fail"},
    };
    const char *k10[] = {"10"};
    struct gw_db_stmt bad[] = {
        {.sql = "INSERT INTO t_fail VALUES ($1)", .nparams = 1, .values = k10},
        {.sql = "INSERT INTO t_fail VALUES ($1)", .nparams = 1, .values = k10},
        {.sql = "SELECT 1"},
    };
    struct gw_db_stmt check = {.sql = "SELECT count(*) FROM t_fail"};
    struct ctx c, c2, c3;
    struct gw_db *db;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    exec_sync(db, setup, 2, GW_DB_TXN, &c);
    assert_int_equal(c.err, 0);

    /* the failing request and the next one are pipelined back to back on one connection */
    memset(&c, 0, sizeof(c));
    memset(&c2, 0, sizeof(c2));
    memset(&c3, 0, sizeof(c3));
    assert_int_equal(gw_db_exec(db, bad, 3, GW_DB_TXN, fail_cb, &c, NULL), 0);
    assert_int_equal(gw_db_exec(db, &check, 1, 0, done_cb, &c2, NULL), 0);
    assert_int_equal(gw_db_exec(db, bad, 3, 0, fail_cb, &c3, NULL), 0);
    assert_true(run_until(db_idle, db, 10000));
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.err, GW_EINTERNAL);
    assert_int_equal(c.failed_stmt, 1);
    assert_string_equal(c.sqlstate, "23505");
    assert_int_equal(fail_seen_results, 1); /* results[0] kept, NULL from the failed one on */
    assert_int_equal(c2.calls, 1);
    assert_int_equal(c2.err, 0);
    assert_int_equal(c3.err, GW_EINTERNAL);
    assert_int_equal(c3.failed_stmt, 1);

    /* the first insert was rolled back with the transaction */
    exec_sync(db, &check, 1, 0, &c);
    assert_int_equal(c.err, 0);
    assert_string_equal(c.value, "0");
    gw_db_free(db);
}

#define NPIPE 600
static int pipe_ok, pipe_calls;
static void pipe_cb(void *arg, int err, const struct gw_db_result *res)
{
    intptr_t want = (intptr_t)arg;
    pipe_calls++;
    if (err == 0 && PQntuples(res->results[0]) == 1 &&
        atol(PQgetvalue(res->results[0], 0, 0)) == (long)want * 2)
        pipe_ok++;
}

static void test_many_pipelined(void **state)
{
    struct gw_db *db;
    char num[16];
    const char *vals[1] = {num};
    struct gw_db_stmt st = {.sql = "SELECT $1::int * 2", .nparams = 1, .values = vals};
    intptr_t i;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    pipe_ok = pipe_calls = 0;
    for (i = 0; i < NPIPE; i++) {
        snprintf(num, sizeof(num), "%ld", (long)i);
        assert_int_equal(gw_db_exec(db, &st, 1, 0, pipe_cb, (void *)i, NULL), 0);
    }
    assert_true(gw_db_pending(db) == NPIPE);
    assert_true(run_until(db_idle, db, 20000));
    assert_int_equal(pipe_calls, NPIPE);
    assert_int_equal(pipe_ok, NPIPE);
    gw_db_free(db);
}

/* A blocking connection of the harness's holding a session advisory lock on key until closed. */
static PGconn *hold_lock(const char *key)
{
    PGconn *c = PQconnectdb(pg.conninfo);
    char sql[64];
    PGresult *r;

    assert_true(PQstatus(c) == CONNECTION_OK);
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%s)", key);
    r = PQexec(c, sql);
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    return c;
}

static bool all_done(void *arg)
{
    struct ctx *c = arg;

    for (int i = 0; i < 16; i++)
        if (c[i].calls == 0)
            return false;
    return true;
}

/* A GW_DB_SLOW request runs alone on its connection: while it waits for a lock the test holds,
 * 16 ordinary requests sent after it (more than the other connection takes at once: depth 4) all
 * complete, none pipelined behind it; it completes once the lock is released. Without the flag
 * honoured the second ordinary request goes to the slow one's connection and waits with it. */
static void test_slow_request_runs_alone(void **state)
{
    struct gw_db_stmt slow = {.sql = "SELECT pg_advisory_xact_lock(7001)"};
    struct gw_db_stmt quick = {.sql = "SELECT 1"};
    struct ctx s, q[16];
    struct gw_db *db;
    PGconn *holder;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    holder = hold_lock("7001");
    memset(&s, 0, sizeof(s));
    memset(q, 0, sizeof(q));
    assert_int_equal(gw_db_exec(db, &slow, 1, GW_DB_SLOW, done_cb, &s, NULL), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(gw_db_exec(db, &quick, 1, 0, done_cb, &q[i], NULL), 0);
    assert_true(run_until(all_done, q, 10000));
    for (int i = 0; i < 16; i++)
        assert_int_equal(q[i].err, 0);
    assert_int_equal(s.calls, 0); /* still waiting for the lock */
    PQfinish(holder);             /* releases it */
    assert_true(run_until(ctx_done, &s, 10000));
    assert_int_equal(s.err, 0);
    gw_db_free(db);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* A waits for a lock (key) on one connection (for held_ms before the rest is sent), then nb
 * requests B for another (key + 1) go to the other, and C is sent after them: it must go behind
 * the Bs, not behind A. Once the Bs' lock is released C completes while A still waits. Each test
 * its own keys: a failed one leaves its holders behind. */
static void not_behind(int key, long held_ms, int nb)
{
    char sa[64], sb[64], ka[16], kb[16];
    struct gw_db_stmt a = {.sql = sa};
    struct gw_db_stmt b = {.sql = sb};
    struct gw_db_stmt q = {.sql = "SELECT 1"};
    struct ctx ca, cb[2], cq;
    struct gw_db *db;
    PGconn *ha, *hb;
    int done = 0;

    if (!pg_ok)
        skip();
    snprintf(ka, sizeof ka, "%d", key);
    snprintf(kb, sizeof kb, "%d", key + 1);
    snprintf(sa, sizeof sa, "SELECT pg_advisory_xact_lock(%s)", ka);
    snprintf(sb, sizeof sb, "SELECT pg_advisory_xact_lock_shared(%s)", kb);
    db = new_db();
    assert_true(run_until(all_ready, db, 10000)); /* both connections take requests */
    ha = hold_lock(ka);
    hb = hold_lock(kb);
    memset(&ca, 0, sizeof(ca));
    memset(cb, 0, sizeof(cb));
    memset(&cq, 0, sizeof(cq));
    assert_int_equal(gw_db_exec(db, &a, 1, 0, done_cb, &ca, NULL), 0);
    if (held_ms > 0)
        assert_false(run_until(never, NULL, held_ms));
    for (int i = 0; i < nb; i++)
        assert_int_equal(gw_db_exec(db, &b, 1, 0, done_cb, &cb[i], NULL), 0);
    assert_int_equal(gw_db_exec(db, &q, 1, 0, done_cb, &cq, NULL), 0);
    PQfinish(hb); /* the Bs end; C, behind them, follows */
    assert_true(run_until(ctx_done, &cq, 10000));
    assert_int_equal(cq.err, 0);
    for (int i = 0; i < nb; i++)
        done += cb[i].calls;
    assert_int_equal(done, nb);
    assert_int_equal(ca.calls, 0); /* still waiting for its lock */
    PQfinish(ha);
    assert_true(run_until(ctx_done, &ca, 10000));
    assert_int_equal(ca.err, 0);
    gw_db_free(db);
}

/* Between two connections as busy, a request goes to the one whose oldest request in flight is
 * the newer, not behind a statement that has been waiting longer: one B, as busy as A's
 * connection; sent behind A (the first connection, as the pool picked before), C would wait with
 * it. */
static void test_request_not_behind_the_older_wait(void **state)
{
    (void)state;
    not_behind(7004, 0, 1);
}

/* A connection whose oldest request has waited a second (DB_STALL_MS) takes a request only when
 * every other is held up too, however busier they are: A has waited 1.5 s, the two Bs go to the
 * other connection; by the count alone (1 in flight against 2) C would wait with A. */
static void test_request_not_behind_a_held_up_connection(void **state)
{
    (void)state;
    not_behind(7006, 1500, 2);
}

/* The report's transaction (store_report.h), opened in a pipeline as the gateway sends it: one
 * REPEATABLE READ, READ ONLY snapshot with its own statement_timeout, which cancels a statement
 * that runs past it (SQLSTATE 57014); nothing of it stays on the pooled connection. */
static void test_report_transaction(void **state)
{
    const char *ms[1] = {"250"};
    struct gw_db_stmt st[3] = {
        {.sql = gw_store_report_snapshot_sql},
        {.sql = gw_store_report_timeout_sql, .nparams = 1, .values = ms},
        {.sql = "SELECT current_setting('transaction_isolation') || '/' || "
                "current_setting('transaction_read_only') || '/' || "
                "current_setting('statement_timeout')"},
    };
    struct gw_db_stmt after = {.sql = "SELECT current_setting('transaction_isolation') || '/' || "
                                      "current_setting('statement_timeout')"};
    struct gw_db_stmt write = {.sql = "CREATE TEMP TABLE report_wrote (x int)"};
    struct ctx c, q[2];
    struct gw_db *db;
    PGconn *holder;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    exec_sync(db, st, 3, GW_DB_SLOW, &c);
    assert_int_equal(c.err, 0);
    assert_string_equal(c.value, "repeatable read/on/250ms");
    /* read only */
    st[2] = write;
    exec_sync(db, st, 3, GW_DB_SLOW, &c);
    assert_int_equal(c.err, GW_EINTERNAL);
    assert_int_equal(c.failed_stmt, 2);
    assert_string_equal(c.sqlstate, "25006");
    /* a statement waiting past the timeout is cancelled */
    holder = hold_lock("7002");
    st[2] = (struct gw_db_stmt){.sql = "SELECT pg_advisory_xact_lock(7002)"};
    exec_sync(db, st, 3, GW_DB_SLOW, &c);
    assert_int_equal(c.err, GW_EINTERNAL);
    assert_int_equal(c.failed_stmt, 2);
    assert_string_equal(c.sqlstate, "57014");
    PQfinish(holder);
    /* and the connections are as they were: both of them (two requests at once take one each) */
    memset(q, 0, sizeof(q));
    for (int i = 0; i < 2; i++)
        assert_int_equal(gw_db_exec(db, &after, 1, 0, done_cb, &q[i], NULL), 0);
    assert_true(run_until(ctx_done, &q[1], 10000) && run_until(ctx_done, &q[0], 10000));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(q[i].err, 0);
        assert_string_equal(q[i].value, "read committed/0");
    }
    gw_db_free(db);
}

static void test_prepared(void **state)
{
    static const char *sql = "SELECT $1::int + 1000";
    struct gw_db *db;
    char num[16];
    const char *vals[1] = {num};
    struct gw_db_stmt st = {.sql = sql, .nparams = 1, .values = vals};
    struct gw_db_stmt count = {.sql = "SELECT count(*) FROM pg_prepared_statements WHERE statement "
                                      "= 'SELECT $1::int + 1000'"};
    struct ctx c;
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    /* both connections set up: one still setting up would get the prepare only when it
     * reconnects (gw_db_prepare), and the count below may run on either */
    assert_true(run_until(all_ready, db, 10000));
    assert_int_equal(gw_db_prepare(db, sql), 0);
    assert_int_equal(gw_db_prepare(db, sql), 0); /* idempotent */
    assert_true(run_until(db_idle, db, 10000));
    for (i = 0; i < 20; i++) {
        snprintf(num, sizeof(num), "%d", i);
        exec_sync(db, &st, 1, 0, &c);
        assert_int_equal(c.err, 0);
        assert_int_equal(atoi(c.value), 1000 + i);
    }
    exec_sync(db, &count, 1, 0, &c);
    assert_string_equal(c.value, "1");
    /* a prepare that fails (no such table) leaves the text path working */
    assert_int_equal(gw_db_prepare(db, "SELECT * FROM no_such_table_xyz"), 0);
    assert_true(run_until(db_idle, db, 10000));
    snprintf(num, sizeof(num), "5");
    exec_sync(db, &st, 1, 0, &c);
    assert_int_equal(atoi(c.value), 1005);
    gw_db_free(db);
}

/* The harness's connections that wait for a lock on table setup_locked. */
static bool setup_waits(void *arg)
{
    PGconn *c = PQconnectdb(pg.conninfo);
    PGresult *r;
    bool all;

    assert_true(PQstatus(c) == CONNECTION_OK);
    r = PQexec(c, "SELECT count(*) FROM pg_locks WHERE relation = 'setup_locked'::regclass AND "
                  "NOT granted");
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    all = (unsigned)atoi(PQgetvalue(r, 0, 0)) == gw_db_pool_size(arg);
    PQclear(r);
    PQfinish(c);
    return all;
}

/* A connection takes callers' requests only once its set-up is done, prepares included: while
 * an operator's LOCK TABLE holds up the prepare of a statement that names the table, no
 * connection is ready and a request is refused UNAVAILABLE (not sent behind the prepare, to wait
 * with it); once the lock goes, every connection comes up and the request runs. Red with the
 * session statement sent ahead of the prepares (ready while they wait). */
static void test_set_up_includes_the_prepares(void **state)
{
    struct gw_db_stmt st = {.sql = "SELECT count(*) FROM setup_locked"};
    PGconn *holder;
    PGresult *r;
    struct gw_db *db;
    struct ctx c;

    (void)state;
    if (!pg_ok)
        skip();
    admin_exec("CREATE TABLE IF NOT EXISTS setup_locked (x int)");
    holder = PQconnectdb(pg.conninfo);
    assert_true(PQstatus(holder) == CONNECTION_OK);
    r = PQexec(holder, "BEGIN; LOCK TABLE setup_locked IN ACCESS EXCLUSIVE MODE");
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    db = gw_db_new(base, &cfg);
    assert_non_null(db);
    assert_int_equal(gw_db_prepare(db, st.sql), 0);
    assert_int_equal(gw_db_start(db), 0);
    assert_true(run_until(setup_waits, db, 10000)); /* each connection's prepare waits */
    assert_false(run_until(db_is_ready, db, 500));
    assert_int_equal(gw_db_nready(db), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(gw_db_exec(db, &st, 1, 0, done_cb, &c, NULL), GW_EUNAVAIL);
    PQfinish(holder); /* the lock goes */
    assert_true(run_until(db_is_ready, db, 10000));
    exec_sync(db, &st, 1, 0, &c);
    assert_int_equal(c.err, 0);
    assert_string_equal(c.value, "0");
    assert_true(run_until(all_ready, db, 10000));
    gw_db_free(db);
}

static void test_cancel(void **state)
{
    struct gw_db *db;
    struct gw_db_stmt slow = {.sql = "SELECT 'slow' FROM pg_sleep(0.2)"};
    struct gw_db_stmt fast = {.sql = "SELECT 'fast'"};
    struct ctx busy[8], queued, inflight, after;
    struct gw_db_req *hq = NULL, *hi = NULL;
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    memset(busy, 0, sizeof(busy));
    memset(&queued, 0, sizeof(queued));
    memset(&inflight, 0, sizeof(inflight));
    memset(&after, 0, sizeof(after));
    /* one in flight that we cancel, then fill every slot to its depth */
    assert_int_equal(gw_db_exec(db, &slow, 1, 0, done_cb, &inflight, &hi), 0);
    for (i = 0; i < 7; i++)
        assert_int_equal(gw_db_exec(db, &slow, 1, 0, done_cb, &busy[i], NULL), 0);
    /* 2 connections x depth 4 = 8 in flight: this one waits in the queue */
    assert_int_equal(gw_db_exec(db, &fast, 1, 0, done_cb, &queued, &hq), 0);
    assert_int_equal(gw_db_pending(db), 9);
    assert_int_equal(gw_db_exec(db, &fast, 1, 0, done_cb, &after, NULL), 0);
    gw_db_cancel(hq);
    assert_int_equal(gw_db_pending(db), 9);
    gw_db_cancel(hi);
    assert_true(run_until(db_idle, db, 20000));
    assert_int_equal(queued.calls, 0);
    assert_int_equal(inflight.calls, 0);
    for (i = 0; i < 7; i++) {
        assert_int_equal(busy[i].calls, 1);
        assert_string_equal(busy[i].value, "slow");
    }
    assert_int_equal(after.calls, 1);
    assert_string_equal(after.value, "fast");
    /* cancelling NULL is harmless */
    gw_db_cancel(NULL);
    gw_db_free(db);
}

/* gw_db_rebind: a request already sent runs to its end and the new callback gets its outcome
 * (the old one never runs); one still queued is dropped (false) and neither runs. What a report
 * whose caller went away relies on to keep its place until its count has ended. */
static void test_rebind(void **state)
{
    struct gw_db_stmt slow = {.sql = "SELECT 'slow' FROM pg_advisory_xact_lock(7003)"};
    struct gw_db_stmt fast = {.sql = "SELECT 'fast'"};
    struct ctx old_sent, new_sent, old_queued, new_queued, busy[8];
    struct gw_db_req *hs = NULL, *hq = NULL;
    struct gw_db *db;
    PGconn *holder;
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    holder = hold_lock("7003");
    memset(&old_sent, 0, sizeof(old_sent));
    memset(&new_sent, 0, sizeof(new_sent));
    memset(&old_queued, 0, sizeof(old_queued));
    memset(&new_queued, 0, sizeof(new_queued));
    memset(busy, 0, sizeof(busy));
    assert_int_equal(gw_db_exec(db, &slow, 1, GW_DB_SLOW, done_cb, &old_sent, &hs), 0);
    for (i = 0; i < 4; i++) /* the other connection to its depth */
        assert_int_equal(gw_db_exec(db, &slow, 1, 0, done_cb, &busy[i], NULL), 0);
    assert_int_equal(gw_db_exec(db, &fast, 1, 0, done_cb, &old_queued, &hq), 0);
    assert_int_equal(gw_db_pending(db), 6); /* the last one queued */
    assert_true(gw_db_rebind(hs, done_cb, &new_sent));
    assert_false(gw_db_rebind(hq, done_cb, &new_queued));
    assert_int_equal(gw_db_pending(db), 5);
    PQfinish(holder);
    assert_true(run_until(db_idle, db, 20000));
    assert_int_equal(old_sent.calls, 0);
    assert_int_equal(new_sent.calls, 1);
    assert_int_equal(new_sent.err, 0);
    assert_string_equal(new_sent.value, "slow");
    assert_int_equal(old_queued.calls + new_queued.calls, 0);
    for (i = 0; i < 4; i++)
        assert_int_equal(busy[i].calls, 1);
    assert_false(gw_db_rebind(NULL, done_cb, &new_sent));
    gw_db_free(db);
}

static void test_queue_full(void **state)
{
    struct gw_config small = cfg;
    struct gw_db *db;
    struct gw_db_stmt slow = {.sql = "SELECT pg_sleep(0.1)"};
    int i, rc;

    (void)state;
    if (!pg_ok)
        skip();
    small.db_pool_size = 1;
    small.db_pipeline_depth = 1;
    small.db_queue_max = 2;
    db = gw_db_new(base, &small);
    assert_non_null(db);
    assert_int_equal(gw_db_start(db), 0);
    assert_true(run_until(db_is_ready, db, 10000));
    for (i = 0; i < 3; i++)
        assert_int_equal(gw_db_exec(db, &slow, 1, 0, NULL, NULL, NULL), 0);
    rc = gw_db_exec(db, &slow, 1, 0, NULL, NULL, NULL);
    assert_int_equal(rc, GW_EQUEUEFULL);
    /* the audit writer's reserve: its request still waits, and only it takes the place */
    for (i = 0; i < (int)GW_DB_QUEUE_RESERVE; i++)
        assert_int_equal(gw_db_exec(db, &slow, 1, GW_DB_TXN | GW_DB_RESERVED, NULL, NULL, NULL), 0);
    assert_int_equal(gw_db_exec(db, &slow, 1, GW_DB_RESERVED, NULL, NULL, NULL), GW_EQUEUEFULL);
    assert_int_equal(gw_db_exec(db, &slow, 1, 0, NULL, NULL, NULL), GW_EQUEUEFULL);
    assert_int_equal(gw_db_exec(db, NULL, 0, 0, NULL, NULL, NULL), GW_EINVAL);
    /* free with requests in flight and queued: no callbacks, no leaks */
    gw_db_free(db);
}

static void test_server_restart(void **state)
{
    struct gw_db *db;
    struct gw_db_stmt slow = {.sql = "SELECT pg_sleep(30)"};
    struct gw_db_stmt fast = {.sql = "SELECT 'back'"};
    struct ctx c[3], c2;
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    db = new_db();
    memset(c, 0, sizeof(c));
    for (i = 0; i < 3; i++)
        assert_int_equal(gw_db_exec(db, &slow, 1, 0, done_cb, &c[i], NULL), 0);
    /* let them reach the server */
    for (i = 0; i < 20; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(pgh_stop(&pg), 0);
    assert_true(run_until(db_is_down, db, 10000));
    assert_true(run_until(db_idle, db, 10000));
    for (i = 0; i < 3; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].err, GW_EUNAVAIL);
    }
    assert_int_equal(gw_db_exec(db, &fast, 1, 0, done_cb, &c2, NULL), GW_EUNAVAIL);
    /* a while down: the backoff grows but stays under db_reconnect_max_ms */
    run_until(db_is_ready, db, 1500);
    assert_false(gw_db_ready(db));
    assert_int_equal(pgh_start(&pg), 0);
    assert_true(run_until(db_is_ready, db, 10000));
    exec_sync(db, &fast, 1, 0, &c2);
    assert_int_equal(c2.err, 0);
    assert_string_equal(c2.value, "back");
    gw_db_free(db);
}

static void test_connect_refused_then_up(void **state)
{
    struct gw_config bad = cfg;
    struct gw_db *db;
    char ci[600];

    (void)state;
    if (!pg_ok)
        skip();
    /* nothing listens on this port: the pool keeps retrying without blocking */
    snprintf(ci, sizeof(ci), "host=%s port=%d dbname=postgres user=postgres", pg.dir, pg.port + 1);
    bad.db_conninfo = ci;
    db = gw_db_new(base, &bad);
    assert_non_null(db);
    assert_int_equal(gw_db_start(db), 0);
    run_until(db_is_ready, db, 500);
    assert_false(gw_db_ready(db));
    assert_int_equal(
        gw_db_exec(db, &(struct gw_db_stmt){.sql = "SELECT 1"}, 1, 0, NULL, NULL, NULL),
        GW_EUNAVAIL);
    gw_db_free(db);
    assert_null(gw_db_new(base, &(struct gw_config){0}));
    gw_db_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_query),
        cmocka_unit_test_teardown(test_read_committed_pinned, reset_default_isolation),
        cmocka_unit_test_teardown(test_session_statement_failure_takes_no_request,
                                  reset_default_isolation),
        cmocka_unit_test_teardown(test_schema_behind_takes_no_request, drop_schema),
        cmocka_unit_test(test_params_text_and_binary),
        cmocka_unit_test(test_transaction),
        cmocka_unit_test(test_failure_isolated),
        cmocka_unit_test(test_many_pipelined),
        cmocka_unit_test(test_prepared),
        cmocka_unit_test(test_slow_request_runs_alone),
        cmocka_unit_test(test_request_not_behind_the_older_wait),
        cmocka_unit_test(test_request_not_behind_a_held_up_connection),
        cmocka_unit_test(test_report_transaction),
        cmocka_unit_test(test_set_up_includes_the_prepares),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_rebind),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_connect_refused_then_up),
        cmocka_unit_test(test_server_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
