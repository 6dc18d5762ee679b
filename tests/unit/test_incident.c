/* test_incident.c: the incident queue against a throwaway PostgreSQL with the real migrations:
 * rows written in FIFO order with their fields; queued while the database is stopped and written
 * after it restarts, none lost; at the cap, incidents coalesced into counted rows (one error-level
 * episode); out of memory, merged where possible; drain at shutdown reports what is left; each
 * row written with its audit record (action "incident", object the kind, count the row's count).
 * Skipped when the PostgreSQL binaries are missing. */
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

#include "alloc.h"
#include "audit.h"
#include "config.h"
#include "db.h"
#include "incident.h"
#include "log.h"
#include "migrate.h"
#include "pg_harness.h"

static struct pgh pg;
static bool pg_ok;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;
static struct gw_db *db;
static struct gw_audit *au;
static PGconn *check; /* blocking connection for assertions */

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

struct want {
    struct gw_incidents *q;
    uint64_t n;
};

static bool written_reached(void *arg)
{
    struct want *w = arg;
    struct gw_incident_stats st;

    gw_incident_stats(w->q, &st);
    return st.written >= w->n;
}

static bool failures_reached(void *arg)
{
    struct want *w = arg;
    struct gw_incident_stats st;

    gw_incident_stats(w->q, &st);
    return st.failures >= w->n;
}

static struct gw_incident_stats stats(struct gw_incidents *q)
{
    struct gw_incident_stats st;

    gw_incident_stats(q, &st);
    return st;
}

/* The rows of sql (one column), joined with ','. */
static char *rows(const char *sql)
{
    static char buf[2048];
    size_t len = 0;
    PGresult *r = PQexec(check, sql);
    int i;

    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    buf[0] = '\0';
    for (i = 0; i < PQntuples(r); i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "",
                                PQgetisnull(r, i, 0) ? "NULL" : PQgetvalue(r, i, 0));
    PQclear(r);
    return buf;
}

/* The last audit sequence number so far (records after it are the test's). */
static long audit_mark(void)
{
    return strtol(rows("SELECT coalesce(max(seq), 0) FROM audit_record"), NULL, 10);
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(check, sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
}

static void record(struct gw_incidents *q, const char *severity, const char *kind,
                   const char *principal, const char *peer)
{
    struct gw_incident inc = {.severity = severity,
                              .kind = kind,
                              .principal = principal,
                              .peer = peer,
                              .branch = "a",
                              .detail = "1 submitted waybill number(s) outside the branch's "
                                        "segments"};
    assert_int_equal(gw_incident_record(q, &inc), 0);
}

/* Stops PostgreSQL and runs the loop until the pool has noticed (bounded). */
static void db_stop(void)
{
    assert_int_equal(pgh_stop(&pg), 0);
    assert_true(run_until(db_is_down, db, 20000));
}

/* Starts PostgreSQL again; the assertion connection reconnects. */
static void db_start(void)
{
    assert_int_equal(pgh_start(&pg), 0);
    PQreset(check);
    assert_true(PQstatus(check) == CONNECTION_OK);
}

/* ---- tests ---- */

static void test_written_in_order(void **state)
{
    struct gw_incidents *q;
    struct want w;
    uint8_t rid[GW_INCIDENT_ID_LEN];

    (void)state;
    if (!pg_ok)
        skip();
    long mark = audit_mark();
    char sql[256];

    exec_ok("TRUNCATE incident");
    q = gw_incident_new(db, au, 16, 200);
    assert_non_null(q);
    memset(rid, 0x5a, sizeof(rid));
    assert_int_equal(gw_incident_record(q, &(struct gw_incident){.severity = "high",
                                                                 .kind = "decryption_failure",
                                                                 .principal = "courier_a",
                                                                 .peer = "127.0.0.1:5555",
                                                                 .branch = "a",
                                                                 .detail = "stored record failed "
                                                                           "authentication",
                                                                 .record_id = rid}),
                     0);
    record(q, "medium", "segment_violation", "courier_b", NULL);
    assert_int_equal(
        gw_incident_record(q, &(struct gw_incident){.severity = "low", .kind = "auth_failures"}),
        0);
    /* refused before queueing: nothing half-valid reaches the table */
    assert_int_equal(
        gw_incident_record(q, &(struct gw_incident){.severity = "urgent", .kind = "x"}), GW_EINVAL);
    assert_int_equal(gw_incident_record(q, &(struct gw_incident){.severity = "low"}), GW_EINVAL);
    w = (struct want){q, 3};
    assert_true(run_until(written_reached, &w, 10000));
    assert_string_equal(rows("SELECT kind FROM incident ORDER BY id"),
                        "decryption_failure,segment_violation,auth_failures");
    assert_string_equal(rows("SELECT count FROM incident ORDER BY id"), "1,1,1");
    assert_string_equal(rows("SELECT count(*) FROM incident WHERE last_occurred_at IS NULL AND "
                             "occurred_at <= now()"),
                        "3");
    assert_string_equal(rows("SELECT record_id FROM incident WHERE kind = 'decryption_failure'"),
                        "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a");
    assert_string_equal(rows("SELECT principal || ' ' || peer || ' ' || branch || ' ' || severity "
                             "FROM incident WHERE kind = 'decryption_failure'"),
                        "courier_a 127.0.0.1:5555 a high");
    assert_int_equal(stats(q).queued, 0);
    assert_int_equal(stats(q).pending, 0);
    /* each row with its record, in the same order; the detail text stays in the incident row */
    snprintf(sql, sizeof(sql),
             "SELECT actor || ' ' || coalesce(peer, '-') || ' ' || coalesce(branch, '-') || ' ' || "
             "object || ' ' || count || ' ' || outcome || ' ' || detail FROM audit_record WHERE "
             "action = 'incident' AND seq > %ld ORDER BY seq",
             mark);
    assert_string_equal(rows(sql), "courier_a 127.0.0.1:5555 a decryption_failure 1 ok "
                                   "severity=high,courier_b - a segment_violation 1 ok "
                                   "severity=medium,gateway - - auth_failures 1 ok severity=low");
    gw_incident_free(q);
}

/* The database stops: incidents queue (every attempt fails and is retried); it restarts: every
 * one is written, in the order they happened. */
static void test_queued_while_database_down(void **state)
{
    struct gw_incidents *q;
    struct want w;
    char who[16];
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("TRUNCATE incident");
    q = gw_incident_new(db, au, 64, 200);
    assert_non_null(q);
    db_stop();
    for (i = 0; i < 5; i++) {
        snprintf(who, sizeof(who), "courier_%d", i);
        record(q, "medium", "segment_violation", who, "10.0.0.1:1");
    }
    w = (struct want){q, 3};
    assert_true(run_until(failures_reached, &w, 10000)); /* retried, still queued */
    assert_int_equal(stats(q).written, 0);
    assert_int_equal(stats(q).queued, 5);
    record(q, "high", "decryption_failure", "courier_5", NULL);
    db_start();
    w = (struct want){q, 6};
    assert_true(run_until(written_reached, &w, 30000));
    assert_string_equal(rows("SELECT principal FROM incident ORDER BY id"),
                        "courier_0,courier_1,courier_2,courier_3,courier_4,courier_5");
    assert_string_equal(rows("SELECT sum(count) FROM incident"), "6");
    assert_int_equal(stats(q).queued, 0);
    assert_int_equal(stats(q).coalesced, 0);
    gw_incident_free(q);
}

/* At the cap nothing is dropped: same kind, principal and peer merge into one counted row; other
 * principals of a kind share that kind's row; the episode is one, and ends once written. */
static void test_cap_coalesces(void **state)
{
    struct gw_incidents *q;
    struct gw_incident_stats st;
    struct want w;
    long mark = audit_mark();
    char sql[160];
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("TRUNCATE incident");
    q = gw_incident_new(db, au, 3, 200);
    assert_non_null(q);
    db_stop();
    record(q, "medium", "segment_violation", "courier_a", "10.0.0.1:1");
    record(q, "medium", "segment_violation", "courier_b", "10.0.0.2:1");
    record(q, "high", "decryption_failure", "courier_a", "10.0.0.1:1");
    assert_false(stats(q).coalescing);
    for (i = 0; i < 10; i++)
        record(q, i == 5 ? "high" : "medium", "segment_violation", "courier_b", "10.0.0.2:1");
    record(q, "medium", "segment_violation", "courier_c", "10.0.0.3:1"); /* kind's row */
    record(q, "low", "segment_violation", "courier_d", "10.0.0.4:1");    /* merges into it */
    record(q, "low", "auth_failures", "courier_a", "10.0.0.1:1");        /* another kind's row */
    st = stats(q);
    assert_true(st.coalescing);
    assert_int_equal(st.episodes, 1);
    assert_int_equal(st.recorded, 16);
    assert_int_equal(st.pending, 16);
    assert_int_equal(st.coalesced, 11);
    assert_int_equal(st.queued, 5);
    assert_int_equal(st.written, 0);
    db_start();
    w = (struct want){q, 16};
    assert_true(run_until(written_reached, &w, 30000));
    assert_string_equal(rows("SELECT sum(count) FROM incident"), "16");
    assert_string_equal(
        rows("SELECT kind || ':' || coalesce(principal, '-') || ':' || count || ':' || severity || "
             "':' || (last_occurred_at IS NOT NULL) FROM incident ORDER BY id"),
        "segment_violation:courier_a:1:medium:false,segment_violation:courier_b:11:high:true,"
        "decryption_failure:courier_a:1:high:false,segment_violation:-:2:medium:true,"
        "auth_failures:-:1:low:false");
    assert_string_equal(rows("SELECT count(*) FROM incident WHERE principal IS NULL AND peer IS "
                             "NULL AND branch IS NULL AND detail LIKE '%coalesced%'"),
                        "2");
    st = stats(q);
    assert_false(st.coalescing);
    assert_int_equal(st.episodes, 1);
    assert_int_equal(st.lost, 0);
    /* a record per row, carrying the row's count */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) || ' ' || sum(count) FROM audit_record WHERE action = 'incident' "
             "AND seq > %ld",
             mark);
    assert_string_equal(rows(sql), "5 16");
    gw_incident_free(q);
}

/* Out of memory: an incident that can merge into a waiting row is kept (counted); only one with
 * nothing to merge into is lost, and says so. (The first incident may be in flight at the audit
 * writer, where nothing merges into it: the second one is the waiting row.) */
static void test_out_of_memory(void **state)
{
    struct gw_incidents *q;
    struct want w;

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("TRUNCATE incident");
    q = gw_incident_new(db, au, 8, 200);
    assert_non_null(q);
    db_stop();
    record(q, "low", "auth_failures", "courier_z", "10.0.0.9:1");
    record(q, "medium", "segment_violation", "courier_a", "10.0.0.1:1");
    gw_alloc_fail_nth(1);
    record(q, "medium", "segment_violation", "courier_a", "10.0.0.1:1");
    gw_alloc_fail_nth(1);
    assert_int_equal(gw_incident_record(q, &(struct gw_incident){.severity = "high",
                                                                 .kind = "decryption_failure"}),
                     GW_ENOMEM);
    gw_alloc_fail_nth(0);
    assert_int_equal(stats(q).lost, 1);
    assert_int_equal(stats(q).pending, 3);
    db_start();
    w = (struct want){q, 3};
    assert_true(run_until(written_reached, &w, 30000));
    assert_string_equal(rows("SELECT kind || ':' || count FROM incident ORDER BY kind"),
                        "auth_failures:1,segment_violation:2");
    gw_incident_free(q);
}

/* The row and its audit record are one transaction: while audit_record refuses inserts, no
 * incident row is written (the attempts fail and are retried, the incident stays queued); once
 * it takes them again, the row is written with its record. */
static void test_row_and_record_together(void **state)
{
    struct gw_incidents *q;
    struct want w;
    long mark = audit_mark();
    char sql[200];

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("TRUNCATE incident");
    exec_ok("CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'audit_record refused by the test' USING ERRCODE = "
            "'insufficient_privilege'; END $$");
    exec_ok("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_record FOR EACH ROW EXECUTE "
            "FUNCTION refuse_audit()");
    q = gw_incident_new(db, au, 8, 200);
    assert_non_null(q);
    record(q, "high", "decryption_failure", "courier_t", "10.0.0.7:1");
    w = (struct want){q, 2};
    assert_true(run_until(failures_reached, &w, 10000));
    assert_string_equal(rows("SELECT count(*) FROM incident"), "0");
    assert_int_equal(stats(q).queued, 1);
    exec_ok("DROP TRIGGER refuse_audit ON audit_record");
    exec_ok("DROP FUNCTION refuse_audit()");
    w = (struct want){q, 1};
    assert_true(run_until(written_reached, &w, 10000));
    assert_string_equal(rows("SELECT principal FROM incident"), "courier_t");
    snprintf(sql, sizeof(sql),
             "SELECT actor || ' ' || object FROM audit_record WHERE action = 'incident' AND "
             "seq > %ld",
             mark);
    assert_string_equal(rows(sql), "courier_t decryption_failure");
    gw_incident_free(q);
}

struct drained {
    int calls;
    uint64_t left;
};

static void drained_cb(void *arg, uint64_t left)
{
    struct drained *d = arg;

    d->calls++;
    d->left = left;
}

static bool drain_called(void *arg)
{
    return ((struct drained *)arg)->calls > 0;
}

/* Shutdown: a drain with the database up writes everything and reports 0; with it down, the
 * bounded wait ends and reports how many are left. */
static void test_drain(void **state)
{
    struct gw_incidents *q;
    struct drained d = {0, 99};

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("TRUNCATE incident");
    q = gw_incident_new(db, au, 8, 200);
    assert_non_null(q);
    gw_incident_drain(q, 1000, drained_cb, &d); /* empty: answered from the loop */
    assert_int_equal(d.calls, 0);
    assert_true(run_until(drain_called, &d, 5000));
    assert_int_equal(d.left, 0);

    record(q, "medium", "segment_violation", "courier_a", NULL);
    record(q, "medium", "segment_violation", "courier_b", NULL);
    d = (struct drained){0, 99};
    gw_incident_drain(q, 20000, drained_cb, &d);
    assert_true(run_until(drain_called, &d, 25000));
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.left, 0);
    assert_string_equal(rows("SELECT count(*) FROM incident"), "2");

    db_stop();
    record(q, "medium", "segment_violation", "courier_c", NULL);
    record(q, "medium", "segment_violation", "courier_c", NULL);
    record(q, "high", "decryption_failure", "courier_c", NULL);
    d = (struct drained){0, 99};
    gw_incident_drain(q, 300, drained_cb, &d);
    assert_true(run_until(drain_called, &d, 10000));
    assert_int_equal(d.left, 3);
    gw_incident_free(q); /* logs the 3 as a count */
    db_start();
    assert_true(run_until(db_is_ready, db, 20000));
}

static bool a_backend_waits_on_a_lock(void *arg)
{
    (void)arg;
    return strcmp(rows("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                       "wait_event = 'advisory'"),
                  "1") == 0;
}

static bool row_committed(void *arg)
{
    return strcmp(rows(arg), "1") == 0;
}

struct handed {
    struct gw_audit *to;
    int n, in_doubt;
    bool done;
    int err;
};

static void handed_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct handed *h = arg;

    (void)seq;
    (void)res;
    h->done = true;
    h->err = err;
}

static bool handed_done(void *arg)
{
    return ((struct handed *)arg)->done;
}

/* A gw_audit_left_cb that hands each entry to an unstarted writer as a spool's replay does
 * (audit_replay.c): one in doubt to be settled, the others to be written. */
static int hand_over(void *arg, const struct gw_audit_left *e)
{
    struct handed *h = arg;

    h->n++;
    h->in_doubt += e->in_doubt;
    if (e->in_doubt)
        return gw_audit_write_in_doubt(h->to, e, handed_cb, h);
    return gw_audit_write_kept(h->to, e->stmts, e->nstmts, e->recs, e->nrecs, handed_cb, h);
}

/* A row whose transaction was sent when the gateway stopped is spooled in doubt: that transaction
 * (held here on the chain's lock) commits after the halt, and the next start's replay settles the
 * row by its record instead of writing it a second time (before, it was spooled as an ordinary
 * entry and the incident was there twice). */
static void test_row_in_flight_at_a_stop_is_written_once(void **state)
{
    static const char count_sql[] = "SELECT count(*) FROM incident WHERE kind = 'doubt_kind'";
    static const uint8_t seed[GW_SIGN_SEED_LEN] = {9};
    struct gw_audit_config ac = {.chain = "test-incident-doubt",
                                 .checkpoint_every = 100,
                                 .checkpoint_ms = 60000,
                                 .alg = GW_SIGN_ED25519,
                                 .seed = seed};
    struct gw_audit *a, *next;
    struct gw_incidents *q;
    struct handed h = {0};
    struct want w;
    uint64_t n = 0;

    (void)state;
    if (!pg_ok)
        skip();
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    q = gw_incident_new(db, a, 8, 200);
    assert_non_null(q);
    record(q, "low", "doubt_warmup", "courier_d", NULL); /* the writer has recovered */
    w = (struct want){q, 1};
    assert_true(run_until(written_reached, &w, 20000));
    exec_ok("BEGIN");
    assert_string_equal(rows("SELECT pg_advisory_xact_lock(1397, hashtext('test-incident-doubt'))"
                             "::text"),
                        "");
    record(q, "high", "doubt_kind", "courier_d", "10.0.0.9:1");
    assert_true(run_until(a_backend_waits_on_a_lock, NULL, 20000)); /* sent, held */

    gw_audit_halt(a);
    gw_incident_halt(q);
    assert_int_equal(gw_audit_new(db, &ac, &next), 0);
    h.to = next;
    assert_int_equal(gw_incident_leftover(q, hand_over, &h, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h.in_doubt, 1);
    exec_ok("COMMIT"); /* the transaction sent before the stop commits after it */
    assert_true(run_until(row_committed, (void *)count_sql, 20000));
    gw_incident_free(q);
    gw_audit_free(a);

    assert_int_equal(gw_audit_start(next), 0);
    assert_true(run_until(handed_done, &h, 20000));
    assert_int_equal(h.err, 0);
    assert_string_equal(rows(count_sql), "1");
    assert_string_equal(rows("SELECT count(*) FROM audit_record WHERE chain = "
                             "'test-incident-doubt' AND object = 'doubt_kind'"),
                        "1");
    gw_audit_free(next);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    struct timeval tv = {0, 10000};

    (void)state;
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, pgh_on_tick, NULL);
    event_add(tick, &tv);
    gw_log_level = GW_LOG_OFF;
    if (!pgh_available())
        return 0;
    if (pgh_init_migrated(&pg, "test_incident", &check, &pg_ok) != 0)
        return -1;
    pgh_db_config(&pg, &cfg, 200);
    db = gw_db_new(base, &cfg);
    if (db == NULL || gw_db_start(db) != 0)
        return -1;
    if (!run_until(db_is_ready, db, 10000))
        return -1;
    {
        static const uint8_t seed[GW_SIGN_SEED_LEN] = {9};
        struct gw_audit_config ac = {.chain = "test-incident",
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
    if (check != NULL)
        PQfinish(check);
    if (pg_ok)
        pgh_destroy(&pg);
    gw_audit_free(au);
    gw_db_free(db);
    event_free(tick);
    event_base_free(base);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_written_in_order),
        cmocka_unit_test(test_queued_while_database_down),
        cmocka_unit_test(test_cap_coalesces),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_row_and_record_together),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_row_in_flight_at_a_stop_is_written_once),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
