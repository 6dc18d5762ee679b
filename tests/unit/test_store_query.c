/* test_store_query.c: the Reveal record (store_query.c) against a throwaway PostgreSQL with the
 * real migrations, through the gateway's own role (so reveal_log's row-level security applies):
 * the quota counted per key, the row written only under it, the counts and the sequence; two
 * reveals racing for the last unit of a quota: exactly one is written; a reveal in another
 * branch's scope is refused by the database. Skipped when the PostgreSQL binaries are missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pg_harness.h"
#include "store.h"

static struct pgh pg;
static bool pg_ok;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;
static struct gw_db *db;
static struct gw_store *store;
static PGconn *check;
static char gw_conninfo[600];

struct out {
    int calls, err;
    struct gw_store_reveal_result r;
};

static void reveal_cb(void *arg, int err, const struct gw_store_reveal_result *r)
{
    struct out *o = arg;

    o->calls++;
    o->err = err;
    if (r != NULL)
        o->r = *r;
}

static bool two_done(void *arg)
{
    struct out *o = arg;
    return o[0].calls > 0 && o[1].calls > 0;
}

static bool one_done(void *arg)
{
    return ((struct out *)arg)->calls > 0;
}

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
}

static struct gw_store_reveal rv(const char *key, const char *scope, uint32_t hour, uint32_t day)
{
    struct gw_store_reveal r = {.scope = scope,
                                .quota_key = key,
                                .principal = "courier_x",
                                .role = "courier",
                                .cert = "courier_x",
                                .peer = "127.0.0.1:1",
                                .field = "recipient.phone",
                                .reason = "at the door",
                                .per_hour = hour,
                                .per_day = day};
    r.record_id[0] = 0x42;
    return r;
}

static struct out reveal_wait(const struct gw_store_reveal *r)
{
    struct out o = {0};

    assert_int_equal(gw_store_reveal(store, r, reveal_cb, &o, NULL), 0);
    assert_true(pgh_loop_until(base, one_done, &o, 10000));
    return o;
}

static const char *q1(const char *sql)
{
    static char buf[128];
    PGresult *res = PQexec(check, sql);

    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    snprintf(buf, sizeof(buf), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return buf;
}

static int group_setup(void **state)
{
    struct timeval tv = {0, 10000};
    char *at;

    (void)state;
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, pgh_on_tick, NULL);
    event_add(tick, &tv);
    gw_log_level = GW_LOG_WARN;
    if (!pgh_available())
        return 0;
    if (pgh_init_migrated(&pg, "test_store_query", &check, &pg_ok) != 0)
        return -1;
    pgh_db_config(&pg, &cfg, 400);
    /* the gateway's role of this database (sql/005_roles.sql): row-level security applies */
    snprintf(gw_conninfo, sizeof(gw_conninfo), "%s", pg.conninfo);
    at = strstr(gw_conninfo, "user=postgres");
    if (at == NULL)
        return -1;
    snprintf(at, sizeof(gw_conninfo) - (size_t)(at - gw_conninfo), "user=postgres_gateway");
    cfg.db_conninfo = gw_conninfo;
    db = gw_db_new(base, &cfg);
    store = gw_store_new(db);
    if (db == NULL || store == NULL || gw_db_start(db) != 0)
        return -1;
    if (!pgh_loop_until(base, db_is_ready, db, 10000))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (check != NULL)
        PQfinish(check);
    if (pg_ok)
        pgh_destroy(&pg);
    gw_store_free(store);
    gw_db_free(db);
    event_free(tick);
    event_base_free(base);
    return 0;
}

static void test_quota_counts_and_refuses(void **state)
{
    struct gw_store_reveal r = rv("cert:courier_x", "x", 3, 10);
    struct out o;
    int64_t last = 0;

    (void)state;
    if (!pg_ok)
        skip();
    for (uint32_t i = 1; i <= 3; i++) {
        o = reveal_wait(&r);
        assert_int_equal(o.err, 0);
        assert_int_equal(o.r.used_hour, i);
        assert_int_equal(o.r.used_day, i);
        assert_true(o.r.seq > last);
        last = o.r.seq;
    }
    o = reveal_wait(&r);
    assert_int_equal(o.err, GW_ETOOBIG);
    assert_true(o.r.hour_hit);
    assert_int_equal(o.r.used_hour, 3);
    assert_string_equal(q1("SELECT count(*) FROM reveal_log WHERE quota_key = 'cert:courier_x'"),
                        "3");
    /* another key has its own quota; the day's limit is reported when it is the one hit */
    r = rv("account:7", "x", 10, 1);
    r.account_id = 7;
    assert_int_equal(reveal_wait(&r).err, 0);
    o = reveal_wait(&r);
    assert_int_equal(o.err, GW_ETOOBIG);
    assert_false(o.r.hour_hit);
    assert_string_equal(q1("SELECT account_id::text || branch || reason FROM reveal_log "
                           "WHERE quota_key = 'account:7'"),
                        "7xat the door");
}

/* True when a backend waits for an advisory lock. (Both reveals wait for it when the pool sent
 * them on its two connections; the second may also queue behind the first on one connection.) */
static bool lock_awaited(void *arg)
{
    (void)arg;
    return atoi(q1("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")) >=
           1;
}

static void test_race_for_the_last_unit(void **state)
{
    struct gw_store_reveal r = rv("cert:racer", "x", 1, 10);
    struct out o[2] = {{0}, {0}};
    PGresult *res;

    (void)state;
    if (!pg_ok)
        skip();
    /* Hold the key's lock: the reveals must wait for it, then pass one at a time, so the second
     * counts the first's row (without the lock, nothing waits and the loop below times out). */
    res = PQexec(check, "SELECT pg_advisory_lock(hashtextextended('reveal:cert:racer', 0))");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    assert_int_equal(gw_store_reveal(store, &r, reveal_cb, &o[0], NULL), 0);
    assert_int_equal(gw_store_reveal(store, &r, reveal_cb, &o[1], NULL), 0);
    assert_true(pgh_loop_until(base, lock_awaited, NULL, 10000));
    assert_int_equal(o[0].calls + o[1].calls, 0); /* nothing passed the lock */
    res = PQexec(check, "SELECT pg_advisory_unlock(hashtextextended('reveal:cert:racer', 0))");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    assert_true(pgh_loop_until(base, two_done, o, 10000));
    assert_true((o[0].err == 0 && o[1].err == GW_ETOOBIG) ||
                (o[1].err == 0 && o[0].err == GW_ETOOBIG));
    assert_string_equal(q1("SELECT count(*) FROM reveal_log WHERE quota_key = 'cert:racer'"), "1");
}

static void test_row_outside_scope_refused(void **state)
{
    struct gw_store_reveal r = rv("cert:other", "x", 5, 5);
    struct out o;

    (void)state;
    if (!pg_ok)
        skip();
    /* a reveal is written in its revealer's branch, which is the transaction's scope */
    o = reveal_wait(&r);
    assert_int_equal(o.err, 0);
    /* as the gateway's role without a scope, reveal_log shows nothing */
    {
        PGconn *c = PQconnectdb(gw_conninfo);
        PGresult *res;
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        res = PQexec(c, "SELECT count(*) FROM reveal_log");
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(res, 0, 0), "0");
        PQclear(res);
        res = PQexec(c, "BEGIN; SELECT set_config('waygate.scope', 'y', true); "
                        "INSERT INTO reveal_log (quota_key, principal, role, branch, record_id, "
                        "field, reason) VALUES ('k', 'p', 'courier', 'x', gen_random_uuid(), "
                        "'recipient.phone', 'r')");
        assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR); /* x outside scope y */
        PQclear(res);
        PQfinish(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quota_counts_and_refuses),
        cmocka_unit_test(test_race_for_the_last_unit),
        cmocka_unit_test(test_row_outside_scope_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
