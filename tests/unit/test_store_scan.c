/* test_store_scan.c: scan events stored by group commit (store_scan.c) against a throwaway
 * PostgreSQL with the real migrations, through the gateway's own role (row-level security
 * applies): NEW, DUPLICATE on (waybill, event, time, device), STALE when the latest event moved,
 * REFUSED when the caller's verdict was no; two events of one waybill queued together go in two
 * groups, the second judged after the first; custody as the database derives it; the gateway's
 * role writes and reads scans only under the intake scope. Skipped without PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <cmocka.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pg_harness.h"
#include "scan.h"
#include "store.h"
#include "store_scan.h"

static struct pgh pg;
static bool pg_ok;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;
static struct gw_db *db;
static struct gw_store *store;
static PGconn *check;
static char gw_conninfo[600];

#define W1 "00000000-0000-4000-8000-000000000001"
#define W2 "00000000-0000-4000-8000-000000000002"
#define W3 "00000000-0000-4000-8000-000000000003"
#define W4 "00000000-0000-4000-8000-000000000004"
#define T0 1764633600

struct out {
    int calls;
    struct gw_store_scan_result r;
};

static void scan_cb(void *arg, const struct gw_store_scan_result *r)
{
    struct out *o = arg;

    o->calls++;
    o->r = *r;
}

static bool all_done(void *arg)
{
    struct out *o = arg;

    for (; o->calls >= 0 && o->r.err != -999; o++)
        if (o->calls == 0)
            return false;
    return true;
}

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
}

static struct gw_store_scan ev(const char *w, int event, int64_t at, const char *branch,
                               int expected, int64_t expected_at, bool allowed)
{
    return (struct gw_store_scan){.waybill_id = w,
                                  .event = event,
                                  .at = at,
                                  .branch = branch,
                                  .device = "courier_x",
                                  .expected = expected,
                                  .expected_at = expected_at,
                                  .allowed = allowed};
}

/* Records one event and waits for its answer. */
static struct gw_store_scan_result record(struct gw_store_scan e)
{
    struct out o[2] = {{0}, {.calls = -1, .r.err = -999}};

    assert_int_equal(gw_store_scan_record(store, &e, scan_cb, &o[0], NULL), 0);
    assert_true(pgh_loop_until(base, all_done, o, 10000));
    assert_int_equal(o[0].calls, 1);
    return o[0].r;
}

static const char *q1(const char *sql)
{
    static char buf[128];
    PGresult *res = PQexec(check, sql);

    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    snprintf(buf, sizeof(buf), "%s", PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    PQclear(res);
    return buf;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);

    assert_true(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
}

/* A stored waybill row of branch a (as the owner; only its id matters here). */
static void waybill(const char *id)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by, kek_version, "
             "dek_version, dek_wrapped, content_mac) VALUES ('%s', decode(md5('%s'), 'hex'), 'a', "
             "'t', 1, 1, '\\x00', decode(md5('%s') || md5('%s'), 'hex'))",
             id, id, id, id);
    exec_ok(check, sql);
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
    if (pgh_init_migrated(&pg, "test_store_scan", &check, &pg_ok) != 0)
        return -1;
    pgh_db_config(&pg, &cfg, 400);
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
    waybill(W1);
    waybill(W2);
    waybill(W3);
    waybill(W4);
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

static void test_outcomes(void **state)
{
    struct gw_store_scan_result r, first;

    (void)state;
    if (!pg_ok)
        skip();
    first = record(ev(W1, GW_SCAN_ARRIVED, T0, "b", GW_SCAN_NONE, 0, true));
    assert_int_equal(first.err, 0);
    assert_int_equal(first.outcome, GW_STORE_SCAN_NEW);
    assert_int_equal(first.latest, GW_SCAN_ARRIVED);
    assert_int_equal(strlen(first.id), 36);
    /* the same (waybill, event, time, device): its id, even with a verdict that is now stale */
    r = record(ev(W1, GW_SCAN_ARRIVED, T0, "b", GW_SCAN_NONE, 0, true));
    assert_int_equal(r.outcome, GW_STORE_SCAN_DUPLICATE);
    assert_string_equal(r.id, first.id);
    /* judged against "no event" while ARRIVED is the latest: stale, nothing stored */
    r = record(ev(W1, GW_SCAN_DEPARTED, T0 + 60, "b", GW_SCAN_NONE, 0, true));
    assert_int_equal(r.outcome, GW_STORE_SCAN_STALE);
    assert_string_equal(r.id, "");
    assert_int_equal(r.latest, GW_SCAN_ARRIVED);
    /* refused by the caller: nothing stored */
    r = record(ev(W1, GW_SCAN_PICKED_UP, T0 + 60, "b", GW_SCAN_ARRIVED, T0, false));
    assert_int_equal(r.outcome, GW_STORE_SCAN_REFUSED);
    assert_string_equal(q1("SELECT count(*) FROM scan WHERE waybill_id = '" W1 "'"), "1");
    assert_string_equal(q1("SELECT waybill_custodian('" W1 "')"), "b");
    /* judged against the right latest event: stored; custody ends with the departure */
    r = record(ev(W1, GW_SCAN_DEPARTED, T0 + 60, "b", GW_SCAN_ARRIVED, T0, true));
    assert_int_equal(r.outcome, GW_STORE_SCAN_NEW);
    assert_int_equal(r.latest, GW_SCAN_DEPARTED);
    assert_string_equal(q1("SELECT waybill_custodian('" W1 "')"), "(null)");
    /* the same latest event kind at another time is another state: stale */
    r = record(ev(W1, GW_SCAN_OUT_FOR_DELIVERY, T0 + 90, "b", GW_SCAN_DEPARTED, T0, true));
    assert_int_equal(r.outcome, GW_STORE_SCAN_STALE);
    assert_string_equal(q1("SELECT waybill_last_event_at('" W1 "')"), "1764633660");
    assert_string_equal(q1("SELECT device || '|' || branch || '|' || extract(epoch FROM "
                           "event_time)::bigint FROM scan WHERE id = '" W1 "'::uuid OR "
                           "(waybill_id = '" W1 "' AND event = 3)"),
                        "courier_x|b|1764633660");
}

static void test_one_event_per_waybill_per_group(void **state)
{
    struct out o[4] = {{0}, {0}, {0}, {.calls = -1, .r.err = -999}};
    struct gw_store_scan e[3] = {
        ev(W2, GW_SCAN_ARRIVED, T0, "c", GW_SCAN_NONE, 0, true),
        ev(W3, GW_SCAN_ARRIVED, T0, "c", GW_SCAN_NONE, 0, true),
        /* judged as if W2's arrival were stored: never in the arrival's group */
        ev(W2, GW_SCAN_DEPARTED, T0 + 60, "c", GW_SCAN_ARRIVED, T0, true),
    };
    struct gw_store_scan_stats before, after;

    (void)state;
    if (!pg_ok)
        skip();
    gw_store_scan_stats(store, &before);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_store_scan_record(store, &e[i], scan_cb, &o[i], NULL), 0);
    assert_true(pgh_loop_until(base, all_done, o, 10000));
    gw_store_scan_stats(store, &after);
    /* two groups: the arrivals, then W2's departure (in one group it would have been judged
     * against the snapshot before the arrival). The second group may run on the other
     * connection and take W2's lock first: then it is STALE (the caller reads and judges again,
     * api_scan.c), and again it is NEW. */
    assert_int_equal(after.groups - before.groups, 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o[i].r.err, 0);
    assert_int_equal(o[0].r.outcome, GW_STORE_SCAN_NEW);
    assert_int_equal(o[1].r.outcome, GW_STORE_SCAN_NEW);
    if (o[2].r.outcome == GW_STORE_SCAN_STALE)
        o[2].r = record(e[2]);
    assert_int_equal(o[2].r.outcome, GW_STORE_SCAN_NEW);
    assert_int_equal(o[2].r.latest, GW_SCAN_DEPARTED);
    assert_string_equal(q1("SELECT waybill_custodian('" W3 "') || coalesce(waybill_custodian('" W2
                           "'), '-') || waybill_last_event('" W2 "')"),
                        "c-3");
}

/* waybill_scan_facts (sql/017, what every read asks) answers what the three functions answer:
 * W3 in custody at c, W2 departed (no custodian), W1 departed, a waybill with no scan. */
static void test_scan_facts_agree(void **state)
{
    (void)state;
    if (!pg_ok)
        skip();
    assert_string_equal(
        q1("SELECT string_agg(((t.f).custodian IS NOT DISTINCT FROM waybill_custodian(t.x) AND "
           "(t.f).last_event = waybill_last_event(t.x) AND (t.f).last_event_at = "
           "waybill_last_event_at(t.x))::text || ':' || coalesce((t.f).custodian, '-') || "
           "(t.f).last_event, ' ' ORDER BY t.o) FROM (SELECT x, o, waybill_scan_facts(x) AS f "
           "FROM unnest(ARRAY['" W1 "', '" W2 "', '" W3 "', gen_random_uuid()::text]::uuid[]) "
           "WITH ORDINALITY AS u(x, o)) t"),
        "true:-3 true:-3 true:c2 true:-0");
}

/* An event dated ahead takes its place at the second it was recorded (sql/023_scan_order.sql):
 * an ARRIVED at e dated 250 s ahead is not the latest once f's arrival, dated now, is recorded
 * after it, and f has the custody; the stored event_time is still the one given. */
static void test_event_dated_ahead_placed_at_receipt(void **state)
{
    struct gw_store_scan_result r;
    int64_t now = (int64_t)time(NULL), placed;
    char sql[256], want[32];

    (void)state;
    if (!pg_ok)
        skip();
    r = record(ev(W4, GW_SCAN_ARRIVED, now + 250, "e", GW_SCAN_NONE, 0, true));
    assert_int_equal(r.outcome, GW_STORE_SCAN_NEW);
    placed = strtoll(q1("SELECT waybill_last_event_at('" W4 "')"), NULL, 10);
    assert_true(placed >= now && placed < now + 250);
    assert_string_equal(q1("SELECT waybill_custodian('" W4 "')"), "e");
    r = record(ev(W4, GW_SCAN_ARRIVED, placed, "f", GW_SCAN_ARRIVED, placed, true));
    assert_int_equal(r.outcome, GW_STORE_SCAN_NEW);
    assert_string_equal(q1("SELECT waybill_custodian('" W4 "')"), "f");
    /* (times as given, from the receipt second: the test's own clock may be a second behind) */
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(branch || ':' || (extract(epoch FROM event_time)::bigint - %lld), "
             "' ' ORDER BY seq) FROM scan WHERE waybill_id = '" W4 "'",
             (long long)placed);
    snprintf(want, sizeof(want), "e:%lld f:0", (long long)(now + 250 - placed));
    assert_string_equal(q1(sql), want);
    snprintf(sql, sizeof(sql), "SELECT (waybill_scan_facts('" W4 "')).last_event_at - %lld",
             (long long)placed);
    assert_string_equal(q1(sql), "0");
}

static void test_cancelled_never_answers(void **state)
{
    struct out o = {0};
    struct gw_store_scan e = ev(W3, GW_SCAN_DEPARTED, T0 + 60, "c", GW_SCAN_ARRIVED, T0, true);
    struct gw_store_scan_req *req = NULL;

    (void)state;
    if (!pg_ok)
        skip();
    assert_int_equal(gw_store_scan_record(store, &e, scan_cb, &o, &req), 0);
    gw_store_scan_cancel(req); /* still queued: dropped */
    /* a later event is answered: the queue goes on */
    assert_int_equal(
        record(ev(W3, GW_SCAN_DEPARTED, T0 + 90, "c", GW_SCAN_ARRIVED, T0, true)).outcome,
        GW_STORE_SCAN_NEW);
    assert_int_equal(o.calls, 0);
    assert_string_equal(q1("SELECT count(*) FROM scan WHERE waybill_id = '" W3 "'"), "2");
}

static void test_gateway_role_only_under_intake_scope(void **state)
{
    PGconn *c;
    PGresult *res;

    (void)state;
    if (!pg_ok)
        skip();
    c = PQconnectdb(gw_conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    /* a branch's scope sees no scan row and may write none */
    res = PQexec(c, "BEGIN; SELECT set_config('waygate.scope', 'b', true); "
                    "SELECT count(*) FROM scan");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "0");
    PQclear(res);
    res = PQexec(c, "INSERT INTO scan (waybill_id, event, event_time, branch, device) VALUES "
                    "('" W1 "', 2, now(), 'b', 'x')");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    exec_ok(c, "ROLLBACK");
    /* no UPDATE or DELETE at all, even under '*' */
    res = PQexec(c, "BEGIN; SELECT set_config('waygate.scope', '*', true); "
                    "DELETE FROM scan");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    exec_ok(c, "ROLLBACK");
    /* custody opens the waybill to its custodian's scope, and only while it lasts: W2 and W3
     * departed from c, W1 arrives at d */
    assert_int_equal(
        record(ev(W1, GW_SCAN_ARRIVED, T0 + 120, "d", GW_SCAN_DEPARTED, T0 + 60, true)).outcome,
        GW_STORE_SCAN_NEW);
    exec_ok(c, "BEGIN; SELECT set_config('waygate.scope', 'd', true)");
    res = PQexec(c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM waybill");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), W1);
    PQclear(res);
    exec_ok(c, "ROLLBACK");
    exec_ok(c, "BEGIN; SELECT set_config('waygate.scope', 'c', true)");
    res = PQexec(c, "SELECT count(*) FROM waybill");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "0");
    PQclear(res);
    exec_ok(c, "ROLLBACK");
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_one_event_per_waybill_per_group),
        cmocka_unit_test(test_scan_facts_agree),
        cmocka_unit_test(test_event_dated_ahead_placed_at_receipt),
        cmocka_unit_test(test_cancelled_never_answers),
        cmocka_unit_test(test_gateway_role_only_under_intake_scope),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
