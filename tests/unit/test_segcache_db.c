/* test_segcache.c: the segment cache against a throwaway PostgreSQL with the real migrations:
 * checks waiting on one load are answered once each, and a waiter cancelled by another waiter's
 * callback is never called; within the refresh interval a miss is answered from the cache without
 * a database round trip; past it a miss reloads and sees a segment issued meanwhile. Skipped when
 * the PostgreSQL binaries are missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pg_harness.h"
#include "segcache.h"
#include "store.h"

static struct pgh pg;
static bool pg_ok;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;
static struct gw_db *db;
static struct gw_store *store;
static PGconn *check;

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(check, sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
}

struct waiter {
    int calls;
    int err;
    bool found;
    struct gw_segcache_req *handle;
    struct waiter *cancel; /* cancelled from this waiter's callback */
};

static void waiter_cb(void *arg, int err, bool found)
{
    struct waiter *w = arg;

    w->calls++;
    w->err = err;
    w->found = found;
    w->handle = NULL;
    if (w->cancel != NULL) {
        gw_segcache_cancel(w->cancel->handle);
        w->cancel->handle = NULL;
    }
}

static bool called(void *arg)
{
    return ((struct waiter *)arg)->calls > 0;
}

static bool either_called(void *arg)
{
    struct waiter *w = arg;
    return w[0].calls > 0 || w[1].calls > 0;
}

/* Two checks wait on one load; whichever is answered first cancels the other (as a call that
 * finishes may free other calls of its connection): the other is never called. */
static void test_waiter_cancelled_by_another(void **state)
{
    struct gw_segcache *c;
    struct waiter w[2];

    (void)state;
    if (!pg_ok)
        skip();
    c = gw_segcache_new(store, 60000);
    assert_non_null(c);
    memset(w, 0, sizeof(w));
    w[0].cancel = &w[1];
    w[1].cancel = &w[0];
    assert_int_equal(gw_segcache_check(c, "a", "WG", 1500, waiter_cb, &w[0], &w[0].handle),
                     GW_OK_PENDING);
    assert_int_equal(gw_segcache_check(c, "a", "WG", 5000, waiter_cb, &w[1], &w[1].handle),
                     GW_OK_PENDING);
    assert_true(pgh_loop_until(base, either_called, w, 10000));
    assert_int_equal(w[0].calls + w[1].calls, 1);
    /* whatever else the loop runs, the cancelled one stays silent */
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(w[0].calls + w[1].calls, 1);
    assert_int_equal(w[0].calls ? w[0].err : w[1].err, 0);
    assert_true(w[0].calls ? w[0].found : !w[1].found);
    gw_segcache_free(c);
}

/* Within the refresh interval a miss is refused from the cache at once (no load, no waiting);
 * with a zero interval the same miss reloads and sees a segment issued since. */
static void test_refresh_interval(void **state)
{
    struct gw_segcache *fresh, *eager;
    struct waiter w;

    (void)state;
    if (!pg_ok)
        skip();
    fresh = gw_segcache_new(store, 3600000);
    eager = gw_segcache_new(store, 0);
    assert_non_null(fresh);
    assert_non_null(eager);
    /* both load once */
    memset(&w, 0, sizeof(w));
    assert_int_equal(gw_segcache_check(fresh, "a", "WG", 1500, waiter_cb, &w, NULL), GW_OK_PENDING);
    assert_true(pgh_loop_until(base, called, &w, 10000));
    assert_true(w.found);
    memset(&w, 0, sizeof(w));
    assert_int_equal(gw_segcache_check(eager, "a", "WG", 1500, waiter_cb, &w, NULL), GW_OK_PENDING);
    assert_true(pgh_loop_until(base, called, &w, 10000));
    assert_true(w.found);
    /* hits answer at once */
    assert_int_equal(gw_segcache_check(fresh, "a", "WG", 1999, waiter_cb, &w, NULL), 1);
    exec_ok("INSERT INTO segment (branch, prefix, range_from, range_to, issued_by) "
            "VALUES ('a', 'WG', 7000, 7999, 'test')");
    /* fresh: a miss is decided from the cache, now, without the database */
    assert_int_equal(gw_segcache_check(fresh, "a", "WG", 7500, waiter_cb, &w, NULL), 0);
    assert_int_equal(gw_segcache_check(fresh, "b", "WG", 1500, waiter_cb, &w, NULL), 0);
    /* eager: the miss reloads and finds the new segment */
    memset(&w, 0, sizeof(w));
    assert_int_equal(gw_segcache_check(eager, "a", "WG", 7500, waiter_cb, &w, NULL), GW_OK_PENDING);
    assert_true(pgh_loop_until(base, called, &w, 10000));
    assert_int_equal(w.err, 0);
    assert_true(w.found);
    exec_ok("DELETE FROM segment WHERE range_from = 7000");
    gw_segcache_free(fresh);
    gw_segcache_free(eager);
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
    if (pgh_init_migrated(&pg, "test_segcache", &check, &pg_ok) != 0)
        return -1;
    exec_ok("INSERT INTO segment (branch, prefix, range_from, range_to, issued_by) "
            "VALUES ('a', 'WG', 1000, 1999, 'test')");
    cfg.db_conninfo = pg.conninfo;
    cfg.db_pool_size = 1;
    cfg.db_pipeline_depth = 4;
    cfg.db_queue_max = 64;
    cfg.db_connect_timeout_ms = 2000;
    cfg.db_reconnect_max_ms = 200;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waiter_cancelled_by_another),
        cmocka_unit_test(test_refresh_interval),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
