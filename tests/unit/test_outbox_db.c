/* test_outbox_db.c: the transactional outbox (store/outbox.c, the outbox rows written by
 * store_group.c and store_scan.c) against a throwaway PostgreSQL with the real migrations, through
 * the gateway's own role: a waybill and its delivery commit together (a failed statement leaves
 * neither), a duplicate submit or scan enqueues nothing, claims come oldest first and one per
 * waybill at a time with the waybill read as gw_store_get reads it, a row another transaction
 * holds is skipped, two owners never claim the same row, an expired lease is claimed again and
 * the old owner can no longer ack it, later / park / retry, depth, what `waygatectl outbox` reads
 * and changes (as the admin role), and the LISTEN connection's
 * wake-ups (after connecting, on a commit, after losing its connection), and which inserts
 * notify (sql/054: only those with a row no lease holds). Skipped without PostgreSQL. */
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
#include "outbox.h"
#include "pg_harness.h"
#include "scan.h"
#include "store.h"
#include "store_admin.h"
#include "store_outbox_admin.h"
#include "store_scan.h"

static struct pgh pg;
static bool pg_ok;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;
static struct gw_db *db;
static struct gw_store *store;
static PGconn *check; /* the owner: assertions and the test's own changes */
static char gw_conninfo[600];

#define T0 1764633600
#define LEASE 60000

/* ---- helpers ---- */

static const char *q1(const char *sql)
{
    static char buf[256];
    PGresult *res = PQexec(check, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "q1: %s", PQerrorMessage(check));
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    snprintf(buf, sizeof(buf), "%s",
             PQntuples(res) == 0 || PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    PQclear(res);
    return buf;
}

static void exec_ok(const char *sql)
{
    PGresult *res = PQexec(check, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "exec: %s", PQerrorMessage(check));
    assert_true(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
}

static long count(const char *sql)
{
    return strtol(q1(sql), NULL, 10);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

struct fake {
    struct gw_sealed_waybill w;
    uint8_t dek[40];
    uint8_t fields[64];
    char id[37];
};

/* A sealed waybill with fake contents, stored format version 3 as the store writes it (the
 * fields as one sealed value, no per-field ciphertext, no record MAC; dek and fields begin with
 * format version 1 and algorithm 1, as sql/053's CHECK wants): n picks its id and number. */
static void make(struct fake *f, unsigned n)
{
    memset(f, 0, sizeof(*f));
    fill(f->w.id, 16, n * 7 + 1);
    f->w.id[6] = (uint8_t)((f->w.id[6] & 0x0f) | 0x40);
    f->w.id[8] = (uint8_t)((f->w.id[8] & 0x3f) | 0x80);
    f->w.origin_branch = "a";
    f->w.submitted_by = "courier_a";
    f->w.dest_region_code = "110101";
    f->w.weight_grams = 1500;
    f->w.service_type = "standard";
    f->w.security_level = 1;
    f->w.pickup_day = "2026-11-27";
    f->w.accepted_at = 1795766400 + (int64_t)n;
    f->w.mac_version = GW_RECORD_MAC_V3;
    fill(f->w.wb_bidx, 16, n * 13 + 3);
    f->w.kek_version = 1;
    f->w.dek_version = 1;
    fill(f->dek, sizeof(f->dek), n + 11);
    f->dek[0] = f->dek[1] = 1;
    f->w.dek_wrapped.p = f->dek;
    f->w.dek_wrapped.n = sizeof(f->dek);
    fill(f->w.content_mac, 32, n * 23 + 9);
    fill(f->fields, sizeof(f->fields), n * 31 + 2);
    f->fields[0] = f->fields[1] = 1;
    f->w.fields_ct.p = f->fields;
    f->w.fields_ct.n = sizeof(f->fields);
    snprintf(f->id, sizeof(f->id),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", f->w.id[0],
             f->w.id[1], f->w.id[2], f->w.id[3], f->w.id[4], f->w.id[5], f->w.id[6], f->w.id[7],
             f->w.id[8], f->w.id[9], f->w.id[10], f->w.id[11], f->w.id[12], f->w.id[13],
             f->w.id[14], f->w.id[15]);
}

struct sub_out {
    int calls;
    struct gw_store_result r;
};

static void submit_cb(void *arg, const struct gw_store_result *r)
{
    struct sub_out *o = arg;

    o->calls++;
    o->r = *r;
}

static bool sub_done(void *arg)
{
    return ((struct sub_out *)arg)->calls > 0;
}

static struct gw_store_result submit(const struct fake *f)
{
    struct sub_out o = {0};

    assert_int_equal(gw_store_submit(store, &f->w, submit_cb, &o, NULL), 0);
    assert_true(pgh_loop_until(base, sub_done, &o, 10000));
    assert_int_equal(o.calls, 1);
    return o.r;
}

struct scan_out {
    int calls;
    struct gw_store_scan_result r;
};

static void scan_cb(void *arg, const struct gw_store_scan_result *r)
{
    struct scan_out *o = arg;

    o->calls++;
    o->r = *r;
}

static bool scan_done(void *arg)
{
    return ((struct scan_out *)arg)->calls > 0;
}

/* Records event ev at T0 + dt for waybill id, judged against (expected, expected_at). */
static struct gw_store_scan_result scan(const char *id, int ev, int64_t dt, int expected,
                                        int64_t expected_at)
{
    struct gw_store_scan e = {.waybill_id = id,
                              .event = ev,
                              .at = T0 + dt,
                              .branch = "b",
                              .device = "courier_x",
                              .expected = expected,
                              .expected_at = expected_at,
                              .allowed = true};
    struct scan_out o = {0};

    assert_int_equal(gw_store_scan_record(store, &e, scan_cb, &o, NULL), 0);
    assert_true(pgh_loop_until(base, scan_done, &o, 10000));
    return o.r;
}

/* ---- outbox calls, waited for ---- */

struct claim_out {
    int calls, err;
    struct gw_outbox_claim *c;
};

static void claim_cb(void *arg, int err, struct gw_outbox_claim *c)
{
    struct claim_out *o = arg;

    o->calls++;
    o->err = err;
    o->c = c;
}

static bool claim_done(void *arg)
{
    return ((struct claim_out *)arg)->calls > 0;
}

/* Claims as owner; the caller frees the claim. */
static struct gw_outbox_claim *claim(const char *owner, uint32_t max)
{
    struct claim_out o = {0};

    assert_int_equal(gw_outbox_claim(store, owner, max, LEASE, claim_cb, &o, NULL), 0);
    assert_int_equal(o.calls, 0); /* never from inside the call */
    assert_true(pgh_loop_until(base, claim_done, &o, 10000));
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.err, 0);
    assert_non_null(o.c);
    return o.c;
}

/* The claimed ids, "id,id,..." ("" when none). */
static const char *ids_of(const struct gw_outbox_claim *c)
{
    static char buf[512];
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < gw_outbox_claim_count(c); i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%lld", i > 0 ? "," : "",
                                (long long)gw_outbox_claim_item(c, i)->id);
    return buf;
}

/* Claims as owner and returns the claimed ids, freeing the claim. */
static const char *claim_ids(const char *owner, uint32_t max)
{
    struct gw_outbox_claim *c = claim(owner, max);
    const char *s = ids_of(c);

    gw_outbox_claim_free(c);
    return s;
}

struct done_out {
    int calls, err;
};

static void done_cb(void *arg, int err)
{
    struct done_out *o = arg;

    o->calls++;
    o->err = err;
}

static bool done_done(void *arg)
{
    return ((struct done_out *)arg)->calls > 0;
}

static void wait_done(struct done_out *o)
{
    assert_int_equal(o->calls, 0);
    assert_true(pgh_loop_until(base, done_done, o, 10000));
    assert_int_equal(o->calls, 1);
    assert_int_equal(o->err, 0);
}

static void ack(const char *owner, const int64_t *ids, size_t n)
{
    struct done_out o = {0};

    assert_int_equal(gw_outbox_ack(store, owner, ids, n, done_cb, &o, NULL), 0);
    wait_done(&o);
}

static void later(const char *owner, const int64_t *ids, size_t n, uint32_t ms, const char *why)
{
    struct done_out o = {0};

    assert_int_equal(gw_outbox_later(store, owner, ids, n, ms, why, done_cb, &o, NULL), 0);
    wait_done(&o);
}

static void park(const char *owner, int64_t id, const char *why)
{
    struct done_out o = {0};

    assert_int_equal(gw_outbox_park(store, owner, id, why, done_cb, &o, NULL), 0);
    wait_done(&o);
}

struct depth_out {
    int calls, err;
    struct gw_outbox_depth d;
};

static void depth_cb(void *arg, int err, const struct gw_outbox_depth *d)
{
    struct depth_out *o = arg;

    o->calls++;
    o->err = err;
    if (d != NULL)
        o->d = *d;
}

static bool depth_done(void *arg)
{
    return ((struct depth_out *)arg)->calls > 0;
}

static struct gw_outbox_depth depth(void)
{
    struct depth_out o = {0};

    assert_int_equal(gw_outbox_depth(store, depth_cb, &o, NULL), 0);
    assert_true(pgh_loop_until(base, depth_done, &o, 10000));
    assert_int_equal(o.err, 0);
    return o.d;
}

/* Deletes every outbox row: each test starts from an empty outbox. */
static void empty_outbox(void)
{
    exec_ok("DELETE FROM outbox");
}

static int64_t id_of(const char *sql)
{
    return strtoll(q1(sql), NULL, 10);
}

/* ---- setup ---- */

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
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
    if (pgh_init_migrated(&pg, "test_outbox_db", &check, &pg_ok) != 0)
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

/* ---- tests ---- */

/* A new waybill enqueues one delivery in its own statement; the same number again enqueues
 * nothing; a statement that fails (here: the outbox insert refused by a trigger) leaves neither
 * the waybill nor its delivery. */
static void test_enqueue_with_waybill(void **state)
{
    struct fake a, b;
    struct gw_store_result r;
    char sql[512];

    (void)state;
    if (!pg_ok)
        skip();
    empty_outbox();
    make(&a, 1);
    r = submit(&a);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.outcome, GW_STORE_NEW);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE kind = 1 AND scan_id IS NULL AND waybill_id = "
             "'%s' AND attempts = 0 AND parked_at IS NULL",
             a.id);
    assert_int_equal(count(sql), 1);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 1);
    /* a duplicate submit: the stored waybill's answer, no second delivery */
    r = submit(&a);
    assert_int_equal(r.outcome, GW_STORE_EXISTING_SAME);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 1);
    /* the delivery refused: the waybill is not stored either (one statement, one transaction) */
    make(&b, 2);
    snprintf(sql, sizeof(sql),
             "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF "
             "NEW.waybill_id = '%s' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; "
             "CREATE TRIGGER refuse BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse()",
             b.id);
    exec_ok(sql);
    r = submit(&b);
    exec_ok("DROP TRIGGER refuse ON outbox; DROP FUNCTION refuse()");
    assert_int_not_equal(r.err, 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM waybill WHERE id = '%s'", b.id);
    assert_int_equal(count(sql), 0);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 1);
    /* and the waybill refused (its number taken by a concurrent row is no refusal: a failing
     * CHECK is): no delivery */
    exec_ok("ALTER TABLE waybill ADD CONSTRAINT test_refuse CHECK (weight_grams <> 777)");
    b.w.weight_grams = 777;
    r = submit(&b);
    exec_ok("ALTER TABLE waybill DROP CONSTRAINT test_refuse");
    assert_int_not_equal(r.err, 0);
    assert_int_equal(count(sql), 0);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 1);
    /* once accepted, it is enqueued */
    b.w.weight_grams = 1500;
    assert_int_equal(submit(&b).outcome, GW_STORE_NEW);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 2);
}

/* A NEW scan enqueues one delivery (kind 2, its scan id); a duplicate, stale or refused one
 * enqueues nothing. */
static void test_enqueue_with_scan(void **state)
{
    struct fake a;
    struct gw_store_scan_result r;
    char sql[512];

    (void)state;
    if (!pg_ok)
        skip();
    make(&a, 3);
    assert_int_equal(submit(&a).outcome, GW_STORE_NEW);
    empty_outbox();
    r = scan(a.id, GW_SCAN_ARRIVED, 0, GW_SCAN_NONE, 0);
    assert_int_equal(r.outcome, GW_STORE_SCAN_NEW);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE kind = 2 AND waybill_id = '%s' AND scan_id = '%s'",
             a.id, r.id);
    assert_int_equal(count(sql), 1);
    assert_int_equal(scan(a.id, GW_SCAN_ARRIVED, 0, GW_SCAN_NONE, 0).outcome,
                     GW_STORE_SCAN_DUPLICATE);
    assert_int_equal(scan(a.id, GW_SCAN_DEPARTED, 60, GW_SCAN_NONE, 0).outcome,
                     GW_STORE_SCAN_STALE);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 1);
}

/* Claims come oldest first, at most max, each with its waybill as stored and its scan; a
 * waybill's later delivery waits until the earlier one is acknowledged. */
static void test_claim_order_per_waybill(void **state)
{
    struct fake a, b;
    struct gw_store_scan_result s1, s2;
    struct gw_outbox_claim *c;
    const struct gw_outbox_item *it;
    int64_t ids[4], wa, sa1, sa2, wb;
    char sql[256];

    (void)state;
    if (!pg_ok)
        skip();
    empty_outbox();
    make(&a, 10);
    make(&b, 11);
    assert_int_equal(submit(&a).outcome, GW_STORE_NEW);
    s1 = scan(a.id, GW_SCAN_ARRIVED, 0, GW_SCAN_NONE, 0);
    s2 = scan(a.id, GW_SCAN_DEPARTED, 60, GW_SCAN_ARRIVED, T0);
    assert_int_equal(s2.outcome, GW_STORE_SCAN_NEW);
    assert_int_equal(submit(&b).outcome, GW_STORE_NEW);
    snprintf(sql, sizeof(sql), "SELECT id FROM outbox WHERE waybill_id = '%s' AND kind = 1", a.id);
    wa = id_of(sql);
    snprintf(sql, sizeof(sql), "SELECT id FROM outbox WHERE scan_id = '%s'", s1.id);
    sa1 = id_of(sql);
    snprintf(sql, sizeof(sql), "SELECT id FROM outbox WHERE scan_id = '%s'", s2.id);
    sa2 = id_of(sql);
    snprintf(sql, sizeof(sql), "SELECT id FROM outbox WHERE waybill_id = '%s'", b.id);
    wb = id_of(sql);
    assert_true(wa < sa1 && sa1 < sa2 && sa2 < wb); /* enqueued in commit order */

    /* A's acceptance and B's: A's scans wait behind A's acceptance */
    c = claim("gw1", 10);
    assert_int_equal(gw_outbox_claim_count(c), 2);
    it = gw_outbox_claim_item(c, 0);
    assert_int_equal(it->id, wa);
    assert_int_equal(it->kind, GW_OUTBOX_WAYBILL);
    assert_string_equal(it->record_id, a.id);
    assert_int_equal(strlen(it->delivery_id), 36);
    assert_int_equal(it->attempts, 1);
    assert_true(it->enqueued_at_us > 1700000000LL * 1000000);
    /* the waybill as gw_store_get gives it: the sealed record, its status */
    assert_non_null(it->row);
    assert_memory_equal(it->row->w.id, a.w.id, 16);
    assert_memory_equal(it->row->w.content_mac, a.w.content_mac, 32);
    assert_memory_equal(it->row->w.wb_bidx, a.w.wb_bidx, 16);
    assert_int_equal(it->row->w.mac_version, GW_RECORD_MAC_V3);
    assert_int_equal(it->row->w.fields_ct.n, sizeof(a.fields)); /* byte for byte */
    assert_memory_equal(it->row->w.fields_ct.p, a.fields, sizeof(a.fields));
    assert_false(it->row->w.has_record_mac); /* NULL */
    for (size_t i = 0; i < GW_COL_COUNT; i++)
        assert_null(it->row->w.ct[i].p);
    assert_int_equal(it->row->w.weight_grams, 1500);
    assert_string_equal(it->row->w.origin_branch, "a");
    assert_int_equal(it->row->last_event, GW_SCAN_DEPARTED);
    assert_int_equal(gw_outbox_claim_item(c, 1)->id, wb);
    assert_string_equal(gw_outbox_claim_item(c, 1)->record_id, b.id);
    assert_null(gw_outbox_claim_item(c, 2));
    /* nothing else is ready: A's scans wait, the others are leased */
    assert_string_equal(claim_ids("gw2", 10), "");
    ids[0] = wa;
    ack("gw1", ids, 1);
    gw_outbox_claim_free(c);
    /* the arrival now; the departure still waits behind it */
    c = claim("gw2", 10);
    assert_int_equal(gw_outbox_claim_count(c), 1);
    it = gw_outbox_claim_item(c, 0);
    assert_int_equal(it->id, sa1);
    assert_int_equal(it->kind, GW_OUTBOX_SCAN);
    assert_string_equal(it->scan_id, s1.id);
    assert_string_equal(it->record_id, a.id);
    assert_int_equal(it->event, GW_SCAN_ARRIVED);
    assert_int_equal(it->event_time, T0);
    assert_string_equal(it->branch, "b");
    ids[0] = sa1;
    ack("gw2", ids, 1);
    gw_outbox_claim_free(c);
    /* max is respected */
    snprintf(sql, sizeof(sql), "%lld", (long long)sa2);
    assert_string_equal(claim_ids("gw1", 1), sql);
    ids[0] = sa2;
    ids[1] = wb;
    ack("gw2", ids, 2); /* gw2 holds neither: nothing happens */
    assert_int_equal(count("SELECT count(*) FROM outbox"), 2);
    ack("gw1", ids, 2);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 0);
}

/* A row another transaction holds (a gateway in the middle of claiming it) is skipped at once,
 * and two owners claiming together never get the same row. */
static void test_skip_locked_and_two_owners(void **state)
{
    struct fake f[20];
    struct claim_out o1 = {0}, o2 = {0};
    char seen[64] = {0};
    int64_t first;

    (void)state;
    if (!pg_ok)
        skip();
    empty_outbox();
    for (unsigned i = 0; i < 20; i++) {
        make(&f[i], 100 + i);
        assert_int_equal(submit(&f[i]).outcome, GW_STORE_NEW);
    }
    first = id_of("SELECT min(id) FROM outbox");
    exec_ok("BEGIN");
    exec_ok("SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE");
    {
        struct gw_outbox_claim *c = claim("gw1", 1);

        assert_int_equal(gw_outbox_claim_count(c), 1);
        assert_int_equal(gw_outbox_claim_item(c, 0)->id, first + 1);
        gw_outbox_claim_free(c);
    }
    exec_ok("COMMIT");
    /* both claims in flight at once, on the pool's two connections */
    assert_int_equal(gw_outbox_claim(store, "gw1", 8, LEASE, claim_cb, &o1, NULL), 0);
    assert_int_equal(gw_outbox_claim(store, "gw2", 8, LEASE, claim_cb, &o2, NULL), 0);
    assert_true(pgh_loop_until(base, claim_done, &o1, 10000));
    assert_true(pgh_loop_until(base, claim_done, &o2, 10000));
    assert_int_equal(o1.err, 0);
    assert_int_equal(o2.err, 0);
    assert_int_equal(gw_outbox_claim_count(o1.c) + gw_outbox_claim_count(o2.c), 16);
    for (int k = 0; k < 2; k++) {
        struct gw_outbox_claim *c = k == 0 ? o1.c : o2.c;

        for (size_t i = 0; i < gw_outbox_claim_count(c); i++) {
            int64_t d = gw_outbox_claim_item(c, i)->id - first;

            assert_true(d >= 0 && d < 20);
            assert_int_equal(seen[d], 0);
            seen[d] = 1;
        }
    }
    gw_outbox_claim_free(o1.c);
    gw_outbox_claim_free(o2.c);
    assert_int_equal(count("SELECT count(*) FROM outbox WHERE lease_owner = 'gw1'") +
                         count("SELECT count(*) FROM outbox WHERE lease_owner = 'gw2'"),
                     17);
    /* the rest: 3 rows, the others leased */
    assert_int_equal(strlen(claim_ids("gw3", 20)) > 0, 1);
    assert_int_equal(count("SELECT count(*) FROM outbox WHERE lease_owner IS NULL"), 0);
}

/* An expired lease is claimed again (an attempt more); the first owner's ack, later and park
 * then change nothing. */
static void test_lease_expiry(void **state)
{
    struct fake a;
    struct gw_outbox_claim *c;
    int64_t id;
    char sql[128];

    (void)state;
    if (!pg_ok)
        skip();
    empty_outbox();
    make(&a, 200);
    assert_int_equal(submit(&a).outcome, GW_STORE_NEW);
    id = id_of("SELECT id FROM outbox");
    snprintf(sql, sizeof(sql), "%lld", (long long)id);
    assert_string_equal(claim_ids("gw1", 10), sql);
    assert_string_equal(claim_ids("gw2", 10), ""); /* leased */
    /* the lease runs out (moved into the past rather than waited for) */
    exec_ok("UPDATE outbox SET lease_until = now() - interval '1 second'");
    c = claim("gw2", 10);
    assert_int_equal(gw_outbox_claim_count(c), 1);
    assert_int_equal(gw_outbox_claim_item(c, 0)->attempts, 2);
    gw_outbox_claim_free(c);
    ack("gw1", &id, 1);
    later("gw1", &id, 1, 0, "UNAVAILABLE");
    park("gw1", id, "refused");
    assert_string_equal(q1("SELECT lease_owner || '|' || attempts || '|' || "
                           "coalesce(last_error, '-') || '|' || (parked_at IS NULL) FROM outbox"),
                        "gw2|2|-|true");
    ack("gw2", &id, 1);
    assert_int_equal(count("SELECT count(*) FROM outbox"), 0);
}

static struct gw_admin *adm;

static void admin_open(void)
{
    char ci[600], err[256], *at;

    snprintf(ci, sizeof(ci), "%s", pg.conninfo);
    at = strstr(ci, "user=postgres");
    assert_non_null(at);
    snprintf(at, sizeof(ci) - (size_t)(at - ci), "user=postgres_admin");
    assert_int_equal(gw_admin_connect(ci, &adm, err, sizeof(err)), 0);
}

static void admin_close(void)
{
    gw_admin_free(adm);
    adm = NULL;
}

struct parked_seen {
    size_t n;
    long long id;
    char line[256];
};

static void parked_seen_cb(void *arg, const struct gw_admin_outbox_parked *p)
{
    struct parked_seen *ps = arg;

    ps->n++;
    ps->id = p->id;
    snprintf(ps->line, sizeof(ps->line), "%s|%s", p->kind, p->reason);
}

/* later frees the lease with a delay and a reason; park keeps the row out of every claim and
 * holds back the waybill's later deliveries, until retry (what `waygatectl outbox retry` does)
 * makes it ready again. */
static void test_later_park_retry(void **state)
{
    struct fake a, b;
    struct gw_outbox_depth d;
    int64_t wa, wb, sa;
    char sql[256], want[64];

    (void)state;
    if (!pg_ok)
        skip();
    empty_outbox();
    d = depth();
    assert_int_equal(d.depth, 0);
    assert_int_equal(d.oldest_ms, 0);
    make(&a, 300);
    make(&b, 301);
    assert_int_equal(submit(&a).outcome, GW_STORE_NEW);
    assert_int_equal(submit(&b).outcome, GW_STORE_NEW);
    assert_int_equal(scan(a.id, GW_SCAN_ARRIVED, 0, GW_SCAN_NONE, 0).outcome, GW_STORE_SCAN_NEW);
    snprintf(sql, sizeof(sql), "SELECT id FROM outbox WHERE waybill_id = '%s' AND kind = 1", a.id);
    wa = id_of(sql);
    snprintf(sql, sizeof(sql), "SELECT id FROM outbox WHERE waybill_id = '%s' AND kind = 2", a.id);
    sa = id_of(sql);
    snprintf(sql, sizeof(sql), "SELECT id FROM outbox WHERE waybill_id = '%s'", b.id);
    wb = id_of(sql);
    snprintf(want, sizeof(want), "%lld,%lld", (long long)wa, (long long)wb);
    assert_string_equal(claim_ids("gw1", 10), want);
    /* later, no delay: ready again at once, the reason kept, the attempt counted */
    later("gw1", &wb, 1, 0, "UNAVAILABLE");
    snprintf(sql, sizeof(sql), "SELECT last_error || '|' || attempts FROM outbox WHERE id = %lld",
             (long long)wb);
    assert_string_equal(q1(sql), "UNAVAILABLE|1");
    snprintf(want, sizeof(want), "%lld", (long long)wb);
    assert_string_equal(claim_ids("gw1", 10), want);
    /* later by a minute: not ready */
    later("gw1", &wb, 1, 60000, "deadline");
    assert_string_equal(claim_ids("gw1", 10), "");
    /* park A's acceptance: its arrival is parked behind it (sql/044), nothing is claimable */
    park("gw1", wa, "REJECTED: unknown service type");
    assert_string_equal(claim_ids("gw1", 10), "");
    snprintf(sql, sizeof(sql),
             "SELECT park_reason || '|' || parked_behind FROM outbox WHERE id = %lld",
             (long long)sa);
    snprintf(want, sizeof(want), "behind parked delivery %lld|%lld", (long long)wa, (long long)wa);
    assert_string_equal(q1(sql), want);
    d = depth();
    assert_int_equal(d.depth, 3);
    assert_int_equal(d.parked, 2);
    assert_true(d.oldest_ms >= 0);
    snprintf(sql, sizeof(sql),
             "SELECT park_reason || '|' || (lease_owner IS NULL) FROM outbox WHERE id = %lld",
             (long long)wa);
    assert_string_equal(q1(sql), "REJECTED: unknown service type|true");
    /* a reason past 200 bytes is cut (the column's limit), never refused */
    {
        char longr[400];

        memset(longr, 'x', sizeof(longr) - 1);
        longr[sizeof(longr) - 1] = '\0';
        exec_ok("UPDATE outbox SET next_at = '-infinity'");
        snprintf(want, sizeof(want), "%lld", (long long)wb);
        assert_string_equal(claim_ids("gw1", 10), want);
        later("gw1", &wb, 1, 60000, longr);
        snprintf(sql, sizeof(sql), "SELECT octet_length(last_error) FROM outbox WHERE id = %lld",
                 (long long)wb);
        assert_string_equal(q1(sql), "200");
    }
    /* what `waygatectl outbox` sees and does, as the admin role */
    {
        struct gw_admin_outbox_status st;
        struct parked_seen ps = {0};
        char err[256], uuid[40];
        struct gw_admin_outbox_retried got;

        admin_open();
        assert_int_equal(gw_admin_outbox_status(adm, &st, err, sizeof(err)), 0);
        assert_int_equal(st.depth, 3);
        assert_int_equal(st.parked, 2); /* wa, and sa behind it */
        assert_int_equal(st.behind, 1);
        assert_int_equal(st.leased, 0);
        assert_int_equal(st.waiting, 1); /* wb, a minute later */
        assert_int_equal(st.ready, 0);
        assert_int_equal(st.max_attempts, 3);
        assert_int_equal(strlen(st.oldest_at), 20);
        assert_int_equal(gw_admin_outbox_parked(adm, 100, parked_seen_cb, &ps, err, sizeof(err)),
                         0);
        assert_int_equal(ps.n, 2);
        assert_int_equal(ps.id, sa); /* the last one seen */
        snprintf(want, sizeof(want), "scan|behind parked delivery %lld", (long long)wa);
        assert_string_equal(ps.line, want);
        /* the one behind is retried through the head: refused, naming it */
        snprintf(want, sizeof(want), "%lld", (long long)sa);
        assert_int_equal(gw_admin_outbox_retry(adm, want, &got, err, sizeof(err)), GW_EPRECOND);
        assert_int_equal(got.behind, wa);
        snprintf(sql, sizeof(sql), "SELECT delivery_id FROM outbox WHERE id = %lld", (long long)wa);
        snprintf(uuid, sizeof(uuid), "%s", q1(sql));
        /* not parked, no such delivery, neither form: refused, nothing changed */
        snprintf(want, sizeof(want), "%lld", (long long)wb);
        assert_int_equal(gw_admin_outbox_retry(adm, want, &got, err, sizeof(err)), GW_EPRECOND);
        assert_int_equal(gw_admin_outbox_retry(adm, "999999", &got, err, sizeof(err)),
                         GW_ENOTFOUND);
        assert_int_equal(gw_admin_outbox_retry(adm, "12; DROP", &got, err, sizeof(err)), GW_EINVAL);
        assert_int_equal(count("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL"), 2);
        /* by its delivery id: ready again, first in line, its arrival behind it unparked too */
        assert_int_equal(gw_admin_outbox_retry(adm, uuid, &got, err, sizeof(err)), 0);
        assert_int_equal(got.id, wa);
        assert_int_equal(got.behind, 0);
        assert_int_equal(got.followers, 1);
        assert_int_equal(count("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL OR "
                               "parked_behind IS NOT NULL OR park_reason IS NOT NULL"),
                         0);
        admin_close();
    }
    snprintf(want, sizeof(want), "%lld", (long long)wa);
    assert_string_equal(claim_ids("gw1", 10), want);
    ack("gw1", &wa, 1);
    snprintf(want, sizeof(want), "%lld", (long long)sa);
    assert_string_equal(claim_ids("gw1", 10), want);
    d = depth();
    assert_int_equal(d.depth, 2);
    assert_int_equal(d.parked, 0);
}

/* Arguments are checked before anything is queued; a cancelled request never calls back. */
static void test_refusals_and_cancel(void **state)
{
    struct claim_out o = {0};
    struct gw_outbox_req *req = NULL;
    struct depth_out d = {0};
    int64_t id = 1;

    (void)state;
    if (!pg_ok)
        skip();
    assert_int_equal(gw_outbox_claim(store, "", 1, LEASE, claim_cb, &o, NULL), GW_EINVAL);
    assert_int_equal(gw_outbox_claim(store, "gw1", 0, LEASE, claim_cb, &o, NULL), GW_EINVAL);
    assert_int_equal(gw_outbox_claim(store, "gw1", 1, 0, claim_cb, &o, NULL), GW_EINVAL);
    assert_int_equal(gw_outbox_ack(store, "gw1", &id, 0, done_cb, &o, NULL), GW_EINVAL);
    assert_int_equal(gw_outbox_park(store, NULL, 1, "x", done_cb, &o, NULL), GW_EINVAL);
    assert_int_equal(gw_outbox_claim(store, "gw1", 10, LEASE, claim_cb, &o, &req), 0);
    assert_non_null(req);
    gw_outbox_cancel(req);
    /* a request after it completes: the cancelled one's result was discarded */
    assert_int_equal(gw_outbox_depth(store, depth_cb, &d, NULL), 0);
    assert_true(pgh_loop_until(base, depth_done, &d, 10000));
    assert_int_equal(o.calls, 0);
    gw_outbox_cancel(NULL);
}

/* ---- the listener ---- */

static int wakes;

static void wake_cb(void *arg)
{
    (void)arg;
    wakes++;
}

static bool woken(void *arg)
{
    return wakes >= *(int *)arg;
}

/* Woken once connected, on a commit that enqueued, not by one that did not; after its connection
 * is killed it reconnects and wakes again; freed, it wakes no more. */
static void test_listener(void **state)
{
    struct gw_outbox_listener *l;
    struct fake a;
    int want, before;
    long pid;

    (void)state;
    if (!pg_ok)
        skip();
    wakes = 0;
    l = gw_outbox_listen(store, wake_cb, NULL);
    assert_non_null(l);
    assert_int_equal(wakes, 0); /* from the loop only */
    want = 1;
    assert_true(pgh_loop_until(base, woken, &want, 10000));
    /* a submit that enqueues wakes it */
    make(&a, 400);
    assert_int_equal(submit(&a).outcome, GW_STORE_NEW);
    want = 2;
    assert_true(pgh_loop_until(base, woken, &want, 10000));
    /* its connection killed: it comes back (another backend) and wakes */
    pid = count("SELECT pid FROM pg_stat_activity WHERE application_name = 'waygated-listen'");
    before = wakes;
    exec_ok("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
            "'waygated-listen'");
    want = before + 1;
    assert_true(pgh_loop_until(base, woken, &want, 20000));
    assert_int_not_equal(
        count("SELECT pid FROM pg_stat_activity WHERE application_name = 'waygated-listen'"), pid);
    /* a notification after the reconnection arrives too */
    before = wakes;
    exec_ok("NOTIFY waygate_outbox");
    want = before + 1;
    assert_true(pgh_loop_until(base, woken, &want, 10000));
    gw_outbox_listener_free(l);
    exec_ok("NOTIFY waygate_outbox");
    want = wakes + 1;
    assert_false(pgh_loop_until(base, woken, &want, 300));
}

/* The payloads of the waygate_outbox notifications `check` received so far, in order, each in
 * brackets ("[][mark]": an insert's, then the test's marker). */
static const char *notified(void)
{
    static char buf[256];
    PGnotify *n;

    buf[0] = '\0';
    assert_int_equal(PQconsumeInput(check), 1);
    while ((n = PQnotifies(check)) != NULL) {
        size_t len = strlen(buf);
        if (strcmp(n->relname, "waygate_outbox") == 0)
            snprintf(buf + len, sizeof(buf) - len, "[%s]", n->extra);
        PQfreemem(n);
    }
    return buf;
}

/* Inserts into the outbox, for waybill id, a row leased as the fast path leases it, and with
 * plain_too a row without a lease in the same statement. */
static void insert_leased(const char *id, bool plain_too)
{
    char sql[400];
    int n = snprintf(sql, sizeof(sql),
                     "INSERT INTO outbox (kind, waybill_id, lease_owner, lease_until) "
                     "VALUES (1, '%s', 'fast-owner', now() + interval '1 minute')",
                     id);

    if (plain_too)
        snprintf(sql + n, sizeof(sql) - (size_t)n, ", (1, '%s', NULL, NULL)", id);
    exec_ok(sql);
}

/* sql/054: an insert into the outbox wakes the forwarders only when one of its rows may be
 * claimed now (inserted without a lease): a delivery the fast path leased at its insert is the
 * inserting gateway's until its lease runs out, so nobody is woken for it. The notifications of a
 * session's own transactions arrive, in commit order, before each statement's answer: a marker
 * sent after an insert shows whether the insert notified. */
static void test_notify_only_when_claimable(void **state)
{
    struct fake a;

    (void)state;
    if (!pg_ok)
        skip();
    empty_outbox();
    exec_ok("LISTEN waygate_outbox");
    (void)notified();
    /* the store's insert without the fast path: its row has no lease */
    make(&a, 500);
    assert_int_equal(submit(&a).outcome, GW_STORE_NEW);
    assert_int_equal(count("SELECT count(*) FROM outbox WHERE lease_until IS NULL"), 1);
    exec_ok("NOTIFY waygate_outbox, 'mark'");
    assert_string_equal(notified(), "[][mark]");
    /* a leased row, as the fast path inserts it: no notification */
    insert_leased(a.id, false);
    exec_ok("NOTIFY waygate_outbox, 'mark'");
    assert_string_equal(notified(), "[mark]");
    /* one statement with a leased row and one without: one notification */
    insert_leased(a.id, true);
    exec_ok("NOTIFY waygate_outbox, 'mark'");
    assert_string_equal(notified(), "[][mark]");
    exec_ok("UNLISTEN waygate_outbox");
    empty_outbox();
}

/* A claim leaves each row on its page (sql/016: fillfactor), even when it takes every row of
 * the pages at once under the longest lease owner the gateway makes (forward.c: a host name of
 * up to 48 bytes, the pid, 8 hex digits); so the claim's update adds no index entry (HOT). */
static void test_claim_keeps_rows_on_their_page(void **state)
{
    char owner[80], sql[256];
    struct gw_outbox_claim *c;
    struct fake a;

    (void)state;
    if (!pg_ok)
        skip();
    empty_outbox();
    make(&a, 40);
    assert_int_equal(submit(&a).outcome, GW_STORE_NEW);
    snprintf(sql, sizeof(sql),
             "INSERT INTO outbox (kind, waybill_id) SELECT 1, '%s' FROM generate_series(1, 299)",
             a.id);
    exec_ok(sql);
    exec_ok("DROP TABLE IF EXISTS page_before");
    exec_ok("CREATE TABLE page_before AS SELECT id, (ctid::text::point)[0] AS blk FROM outbox");
    assert_true(count("SELECT count(DISTINCT blk) FROM page_before") >= 3);
    snprintf(owner, sizeof(owner), "%.48s:%ld:%08x",
             "a-host-name-of-forty-eight-bytes-as-gethostname-", 4194304L, 0xdeadbeefu);
    c = claim(owner, 1000);
    assert_int_equal(gw_outbox_claim_count(c), 300);
    gw_outbox_claim_free(c);
    assert_int_equal(count("SELECT count(*) FROM outbox o JOIN page_before b USING (id) "
                           "WHERE o.lease_owner IS NOT NULL"),
                     300);
    assert_int_equal(count("SELECT count(*) FROM outbox o JOIN page_before b USING (id) "
                           "WHERE (o.ctid::text::point)[0] <> b.blk"),
                     0);
    exec_ok("DROP TABLE page_before");
    empty_outbox();
}

/* Autovacuum clears the outbox after 5000 dead rows whatever its size (sql/058): a row lives a
 * fraction of a second, so the share of live rows PostgreSQL waits for by default says nothing
 * about the pages the deletes left. The trigger as autovacuum computes it (threshold + scale
 * factor x rows), for an outbox of a million rows, and its pass unthrottled. */
static void test_outbox_vacuumed_by_count(void **state)
{
    static const char opt[] =
        "(SELECT split_part(o, '=', 2)::float8 FROM pg_class, unnest(reloptions) o "
        "WHERE oid = 'outbox'::regclass AND split_part(o, '=', 1) = '%s')";
    char sql[768], t[256], f[256], d[256];

    (void)state;
    if (!pg_ok)
        skip();
    snprintf(t, sizeof(t), opt, "autovacuum_vacuum_threshold");
    snprintf(f, sizeof(f), opt, "autovacuum_vacuum_scale_factor");
    snprintf(d, sizeof(d), opt, "autovacuum_vacuum_cost_delay");
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(%s, current_setting('autovacuum_vacuum_threshold')::float8) + "
             "1e6 * coalesce(%s, current_setting('autovacuum_vacuum_scale_factor')::float8)",
             t, f);
    assert_int_equal(count(sql), 5000);
    snprintf(sql, sizeof(sql), "SELECT coalesce(%s, -1)", d);
    assert_int_equal(count(sql), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enqueue_with_waybill),
        cmocka_unit_test(test_enqueue_with_scan),
        cmocka_unit_test(test_claim_order_per_waybill),
        cmocka_unit_test(test_skip_locked_and_two_owners),
        cmocka_unit_test(test_lease_expiry),
        cmocka_unit_test(test_later_park_retry),
        cmocka_unit_test(test_refusals_and_cancel),
        cmocka_unit_test(test_listener),
        cmocka_unit_test(test_notify_only_when_claimable),
        cmocka_unit_test(test_claim_keeps_rows_on_their_page),
        cmocka_unit_test(test_outbox_vacuumed_by_count),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
