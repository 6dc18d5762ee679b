/* test_store.c: the waybill store against a throwaway PostgreSQL with the real migrations:
 * idempotent submit outcomes, group commit, concurrent same-number inserts, batches, a refused
 * row failing alone, the suspicious-phone register, reads (of stored format version 3 as written,
 * and of a version 2 row), segments, cancellation, the refusal of a record not of version 3, the
 * fast path's deep copy.
 * Skipped when the PostgreSQL binaries are missing. */
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
static PGconn *check; /* blocking connection for assertions */

static bool run_until(bool (*pred)(void *), void *arg, long timeout_ms)
{
    return pgh_loop_until(base, pred, arg, timeout_ms);
}

static bool int_reached(void *arg)
{
    int *p = arg;
    return p[0] >= p[1];
}

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
}

static bool store_idle(void *arg)
{
    struct gw_store_stats st;
    gw_store_stats(arg, &st);
    return st.groups_inflight == 0 && st.queued == 0;
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(check, sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
}

static bool group_in_flight(void *arg)
{
    struct gw_store_stats st;
    gw_store_stats(arg, &st);
    return st.groups_inflight > 0;
}

static char *q1(const char *sql)
{
    static char buf[256];
    PGresult *r = PQexec(check, sql);
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    snprintf(buf, sizeof(buf), "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return buf;
}

static void tohex(const uint8_t *p, size_t n, char *out)
{
    size_t i;
    for (i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

/* ---- a sealed waybill with deterministic fake contents ---- */

/* Version 3, as the store writes it: the fields as one sealed value (fields, in fields_ct), no
 * per-field ciphertext, no record MAC. dek and fields begin as sql/053's CHECK wants: format
 * version 1, algorithm 1 (the same in both). */
#define FAKE_FIELDS_LEN 80
struct fake {
    struct gw_sealed_waybill w;
    uint8_t dek[40];
    uint8_t fields[FAKE_FIELDS_LEN];
};

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* Points f's byte strings at its own buffers (after make, or a copy of the struct). */
static void repoint(struct fake *f)
{
    f->w.dek_wrapped.p = f->dek;
    f->w.fields_ct.p = f->fields;
}

/* wb: the waybill "number"; content: varies content_mac; phone/idn: sender phone and id (0 = none)
 */
static void make(struct fake *f, unsigned id, unsigned wb, unsigned content, unsigned phone,
                 unsigned idn)
{
    memset(f, 0, sizeof(*f));
    fill(f->w.id, 16, id * 7 + 1);
    f->w.id[6] = (uint8_t)((f->w.id[6] & 0x0f) | 0x40); /* a v4 UUID shape */
    f->w.id[8] = (uint8_t)((f->w.id[8] & 0x3f) | 0x80);
    f->w.origin_branch = "a";
    f->w.submitted_by = "courier_a";
    f->w.dest_region_code = "110101";
    f->w.weight_grams = 1500;
    f->w.service_type = "standard";
    f->w.security_level = 1;
    f->w.pickup_day = "2026-11-27";
    f->w.accepted_at = 1795766400 + (int64_t)id;
    f->w.mac_version = GW_RECORD_MAC_V3;
    f->w.has_record_mac = false;
    fill(f->w.wb_bidx, 16, wb * 13 + 3);
    if (phone) {
        fill(f->w.sender_phone_bidx, 16, phone * 17 + 5);
        f->w.has_sender_phone_bidx = true;
    }
    if (idn) {
        fill(f->w.sender_id_bidx, 16, idn * 19 + 7);
        f->w.has_sender_id_bidx = true;
    }
    fill(f->w.recipient_phone_bidx, 16, 99);
    f->w.has_recipient_phone_bidx = true;
    f->w.kek_version = 1;
    f->w.dek_version = 1;
    fill(f->dek, sizeof(f->dek), id + 11);
    f->dek[0] = f->dek[1] = 1;
    fill(f->w.content_mac, 32, content * 23 + 9);
    fill(f->fields, sizeof(f->fields), id * 31 + 2);
    f->fields[0] = f->fields[1] = 1;
    f->w.fields_ct.n = sizeof(f->fields);
    f->w.dek_wrapped.n = sizeof(f->dek);
    repoint(f);
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

static struct gw_store_result submit_wait(const struct fake *f)
{
    struct sub_out o = {0};
    assert_int_equal(gw_store_submit(store, &f->w, submit_cb, &o, NULL), 0);
    assert_true(run_until(sub_done, &o, 10000));
    assert_int_equal(o.calls, 1);
    return o.r;
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
    if (pgh_init_migrated(&pg, "test_store", &check, &pg_ok) != 0)
        return -1;
    pgh_db_config(&pg, &cfg, 400);
    db = gw_db_new(base, &cfg);
    store = gw_store_new(db);
    if (db == NULL || store == NULL || gw_db_start(db) != 0)
        return -1;
    if (!run_until(db_is_ready, db, 10000))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    /* the server first: whatever state a failed test left the loop in, no postgres outlives us */
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

static void test_new_same_different(void **state)
{
    struct fake a, b, c;
    struct gw_store_result r;

    (void)state;
    if (!pg_ok)
        skip();
    make(&a, 1, 1, 1, 0, 0);
    r = submit_wait(&a);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.outcome, GW_STORE_NEW);
    assert_memory_equal(r.id, a.w.id, 16);

    /* a retry: same number, same content, a fresh id from the gateway -> the stored id */
    make(&b, 2, 1, 1, 0, 0);
    r = submit_wait(&b);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.outcome, GW_STORE_EXISTING_SAME);
    assert_memory_equal(r.id, a.w.id, 16);

    /* same number, other content */
    make(&c, 3, 1, 2, 0, 0);
    r = submit_wait(&c);
    assert_int_equal(r.err, GW_EEXIST);
    assert_int_equal(r.outcome, GW_STORE_EXISTING_DIFFERENT);
    assert_string_equal(q1("SELECT count(*) FROM waybill WHERE weight_grams = 1500"), "1");
}

/* A number stored under one suite, submitted again by a gateway of another suite whose keyring
 * holds both (a migration): the item's own index and content MAC differ from the stored row's,
 * its alternatives (the other suite's) equal them. Same content: the stored id, no new row and
 * no new outbox row; other content: EEXIST; an alternative matching nothing: a new row. */
static void test_other_suite_same_number(void **state)
{
    struct fake a, b, c, d;
    struct gw_store_result r;
    char rows[32], outbox[32];

    (void)state;
    if (!pg_ok)
        skip();
    make(&a, 9040, 9040, 9040, 0, 0);
    r = submit_wait(&a);
    assert_int_equal(r.outcome, GW_STORE_NEW);
    snprintf(rows, sizeof(rows), "%s", q1("SELECT count(*) FROM waybill"));
    snprintf(outbox, sizeof(outbox), "%s", q1("SELECT count(*) FROM outbox"));

    make(&b, 9041, 9041, 9041, 0, 0); /* the other suite's index and MAC of the same waybill */
    b.w.n_alt = 1;
    memcpy(b.w.alt_wb_bidx[0], a.w.wb_bidx, 16);
    memcpy(b.w.alt_content_mac[0], a.w.content_mac, 32);
    r = submit_wait(&b);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.outcome, GW_STORE_EXISTING_SAME);
    assert_memory_equal(r.id, a.w.id, 16);
    assert_string_equal(q1("SELECT count(*) FROM waybill"), rows);
    assert_string_equal(q1("SELECT count(*) FROM outbox"), outbox);

    make(&c, 9042, 9041, 9042, 0, 0); /* same number, other content (under both suites) */
    c.w.n_alt = 1;
    memcpy(c.w.alt_wb_bidx[0], a.w.wb_bidx, 16);
    fill(c.w.alt_content_mac[0], 32, 4242);
    r = submit_wait(&c);
    assert_int_equal(r.err, GW_EEXIST);
    assert_int_equal(r.outcome, GW_STORE_EXISTING_DIFFERENT);
    assert_memory_equal(r.id, a.w.id, 16);
    assert_string_equal(q1("SELECT count(*) FROM waybill"), rows);

    make(&d, 9043, 9043, 9043, 0, 0); /* an alternative index nothing is stored under */
    d.w.n_alt = 1;
    fill(d.w.alt_wb_bidx[0], 16, 4343);
    r = submit_wait(&d);
    assert_int_equal(r.outcome, GW_STORE_NEW);
    assert_memory_equal(r.id, d.w.id, 16);
}

struct get_out {
    int calls, err;
    struct fake seen;
    char branch[32], day[16], region[16], service[32];
    size_t fields_n;                           /* fields_ct's length (0: NULL) */
    uint8_t ct[GW_COL_COUNT][FAKE_FIELDS_LEN]; /* a version 2 row's ciphertexts */
    size_t ctn[GW_COL_COUNT];
    bool ctnull[GW_COL_COUNT];
    bool dest_null;
};

static void get_cb(void *arg, int err, const struct gw_store_row *row)
{
    struct get_out *o = arg;
    const struct gw_sealed_waybill *w;
    size_t i;

    o->calls++;
    o->err = err;
    if (err != 0)
        return;
    w = &row->w;
    o->dest_null = row->dest_branch == NULL;
    o->seen.w = *w;
    snprintf(o->branch, sizeof(o->branch), "%s", w->origin_branch);
    snprintf(o->day, sizeof(o->day), "%s", w->pickup_day ? w->pickup_day : "");
    snprintf(o->region, sizeof(o->region), "%s", w->dest_region_code ? w->dest_region_code : "");
    snprintf(o->service, sizeof(o->service), "%s", w->service_type ? w->service_type : "");
    assert_int_equal(w->dek_wrapped.n, 40);
    memcpy(o->seen.dek, w->dek_wrapped.p, 40);
    o->fields_n = w->fields_ct.p != NULL ? w->fields_ct.n : 0;
    if (o->fields_n > 0 && o->fields_n <= FAKE_FIELDS_LEN)
        memcpy(o->seen.fields, w->fields_ct.p, o->fields_n);
    for (i = 0; i < GW_COL_COUNT; i++) {
        o->ctnull[i] = w->ct[i].p == NULL;
        o->ctn[i] = w->ct[i].n;
        if (w->ct[i].p != NULL && w->ct[i].n <= FAKE_FIELDS_LEN)
            memcpy(o->ct[i], w->ct[i].p, w->ct[i].n);
    }
}

static bool get_done(void *arg)
{
    return ((struct get_out *)arg)->calls > 0;
}

static void test_get(void **state)
{
    struct fake a;
    struct get_out *o = calloc(1, sizeof(*o));
    uint8_t unknown[GW_STORE_BIDX_ALTS][16] = {{0}}, pair[GW_STORE_BIDX_ALTS][16] = {{0}};
    size_t i;

    (void)state;
    if (!pg_ok)
        skip();
    make(&a, 40, 40, 40, 4040, 4041);
    a.w.dest_region_code = NULL;
    a.w.service_type = "";
    assert_int_equal(submit_wait(&a).outcome, GW_STORE_NEW);
    memcpy(pair[1], a.w.wb_bidx, 16); /* found by either of the pair (one per suite) */
    assert_int_equal(gw_store_get(store, "a", pair, 3, get_cb, o, NULL), 0);
    assert_true(run_until(get_done, o, 10000));
    assert_int_equal(o->err, 0);
    assert_memory_equal(o->seen.w.id, a.w.id, 16);
    assert_string_equal(o->branch, "a");
    assert_string_equal(o->day, "2026-11-27");
    assert_string_equal(o->region, "");
    assert_true(o->dest_null); /* no route for a waybill without a destination */
    assert_string_equal(o->service, "");
    assert_int_equal(o->seen.w.weight_grams, 1500);
    assert_int_equal(o->seen.w.security_level, 1);
    assert_int_equal(o->seen.w.kek_version, 1);
    assert_memory_equal(o->seen.w.wb_bidx, a.w.wb_bidx, 16);
    assert_true(o->seen.w.has_sender_phone_bidx);
    assert_memory_equal(o->seen.w.sender_phone_bidx, a.w.sender_phone_bidx, 16);
    assert_true(o->seen.w.has_sender_id_bidx);
    assert_false(o->seen.w.has_recipient_id_bidx);
    assert_memory_equal(o->seen.w.content_mac, a.w.content_mac, 32);
    assert_int_equal(o->seen.w.accepted_at, 1795766400 + 40); /* stored as given */
    assert_int_equal(o->seen.w.mac_version, GW_RECORD_MAC_V3);
    assert_false(o->seen.w.has_record_mac); /* NULL */
    assert_memory_equal(o->seen.dek, a.dek, 40);
    assert_int_equal(o->fields_n, FAKE_FIELDS_LEN); /* byte for byte */
    assert_memory_equal(o->seen.fields, a.fields, FAKE_FIELDS_LEN);
    for (i = 0; i < GW_COL_COUNT; i++) /* every *_ct NULL */
        assert_true(o->ctnull[i]);
    memset(o, 0, sizeof(*o));
    assert_int_equal(gw_store_get(store, "a", unknown, 3, get_cb, o, NULL), 0);
    assert_true(run_until(get_done, o, 10000));
    assert_int_equal(o->err, GW_ENOTFOUND);
    /* a record above the caller's level (it is 1) is not read, as one that does not exist */
    for (int level = -1; level <= 1; level++) {
        memset(o, 0, sizeof(*o));
        assert_int_equal(gw_store_get(store, "a", pair, level, get_cb, o, NULL), 0);
        assert_true(run_until(get_done, o, 10000));
        assert_int_equal(o->err, level < 1 ? GW_ENOTFOUND : 0);
    }
    free(o);
}

/* sql/053's CHECK refuses sql's UPDATE of row id (text) to what set says (23514). */
static void refused_by_check(const char *set, const char *id)
{
    char sql[512];
    PGresult *r;

    snprintf(sql, sizeof(sql), "UPDATE waybill SET %s WHERE id = '%s'", set, id);
    r = PQexec(check, sql);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514");
    assert_non_null(strstr(PQresultErrorMessage(r), "waybill_fields_sealed_together"));
    PQclear(r);
}

/* The group insert reads the waybill table by its indexes whatever the statistics say
 * (GW_STORE_SCOPE_INDEXED_SQL). The table emptied and analysed while empty, a new store's
 * connections (auto_explain loaded for them, nested statements too: every plan they run is in
 * the server's log) store 20 waybills one group at a time; then the table grows by 20 000 rows
 * (written beside the store) and the store stores 40 more. No plan of those connections, the
 * group inserts' and the foreign-key checks' they run, reads the waybill table by a sequential
 * scan (without the rule every group insert did, from the first to the last after the growth:
 * the prepared statement kept its plan). Runs last: it empties the table; its teardown undoes the
 * role's settings whatever failed. */
static struct gw_store *plans_saved_store;

static int plans_teardown(void **state)
{
    PGresult *r;

    (void)state;
    if (plans_saved_store != NULL)
        store = plans_saved_store;
    if (check != NULL) {
        r = PQexec(check, "ALTER ROLE postgres RESET ALL");
        PQclear(r);
    }
    return 0;
}

static void store_many(unsigned from, unsigned n)
{
    struct fake f;

    for (unsigned i = from; i < from + n; i++) {
        struct gw_store_result r;

        make(&f, i, i, i, i, i);
        r = submit_wait(&f);
        assert_int_equal(r.err, 0);
        assert_int_equal(r.outcome, GW_STORE_NEW);
    }
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_group_insert_reads_waybills_by_index_after_empty_analyze(void **state)
{
    static const char group_text[] = "Query Text: WITH v AS (SELECT * FROM unnest(";
    struct gw_store *mine;
    struct gw_db *db2;
    char path[300], *text;
    long start, size;
    size_t plans, seq;
    FILE *log;

    (void)state;
    if (!pg_ok)
        skip();
    snprintf(path, sizeof(path), "%s/server.log", pg.dir);
    log = fopen(path, "r");
    assert_non_null(log);
    assert_int_equal(fseek(log, 0, SEEK_END), 0);
    start = ftell(log);
    exec_ok("TRUNCATE waybill, phone_owner, phone_sender CASCADE");
    exec_ok("ANALYZE waybill");
    plans_saved_store = store;
    exec_ok("ALTER ROLE postgres SET session_preload_libraries = 'auto_explain'");
    exec_ok("ALTER ROLE postgres SET auto_explain.log_min_duration = 0");
    exec_ok("ALTER ROLE postgres SET auto_explain.log_nested_statements = on");
    db2 = gw_db_new(base, &cfg);
    assert_non_null(db2);
    mine = gw_store_new(db2);
    assert_non_null(mine);
    assert_int_equal(gw_db_start(db2), 0);
    assert_true(run_until(db_is_ready, db2, 10000));
    store = mine;
    store_many(7000, 20);
    /* 20 000 copies of a stored row's sealed columns under new ids and numbers */
    exec_ok("INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by, dest_region_code, "
            "weight_grams, service_type, security_level, pickup_day, accepted_at, kek_version, "
            "dek_version, dek_wrapped, content_mac, mac_version, fields_ct) "
            "SELECT md5('grow' || i)::uuid, decode(md5('wb' || i), 'hex'), w.origin_branch, "
            "w.submitted_by, w.dest_region_code, w.weight_grams, w.service_type, "
            "w.security_level, w.pickup_day, w.accepted_at, w.kek_version, w.dek_version, "
            "w.dek_wrapped, w.content_mac, w.mac_version, w.fields_ct "
            "FROM (SELECT * FROM waybill LIMIT 1) w, generate_series(1, 20000) i");
    store_many(8000, 40);
    store = plans_saved_store;
    gw_store_free(mine);
    gw_db_free(db2); /* plans_teardown resets the role's settings */
    assert_int_equal(fseek(log, 0, SEEK_END), 0);
    size = ftell(log) - start;
    assert_true(size > 0);
    text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fseek(log, start, SEEK_SET), 0);
    assert_int_equal(fread(text, 1, (size_t)size, log), (size_t)size);
    fclose(log);
    plans = count_of(text, group_text);
    seq = count_of(text, "Seq Scan on waybill ");
    assert_non_null(strstr(text, "FROM ONLY \"public\".\"waybill\"")); /* the checks ran, logged */
    free(text);
    print_message("group insert plans logged: %zu; sequential scans of waybill: %zu\n", plans, seq);
    assert_int_equal(plans, 60);
    assert_int_equal(seq, 0);
}

/* A row of version 2 (written before sql/053: a ciphertext per field, a record MAC, no
 * fields_ct) is read as it is stored: the read still has every *_ct column. Made here from a
 * stored version 3 row in SQL, as the owner, once sql/053's CHECK has refused the mixtures of
 * the two versions. */
static void test_get_version2_row(void **state)
{
    struct fake a;
    struct get_out *o = calloc(1, sizeof(*o));
    uint8_t pair[GW_STORE_BIDX_ALTS][16] = {{0}}, ct[40], mac[32];
    char sql[512], idt[37], cthex[81], machex[65];

    (void)state;
    if (!pg_ok)
        skip();
    make(&a, 41, 41, 41, 0, 0);
    assert_int_equal(submit_wait(&a).outcome, GW_STORE_NEW);
    fill(ct, sizeof(ct), 4141);
    ct[0] = ct[1] = 1;
    fill(mac, sizeof(mac), 4142);
    tohex(ct, sizeof(ct), cthex);
    tohex(mac, sizeof(mac), machex);
    gw_store_id_text(a.w.id, idt);
    refused_by_check("sender_name_ct = fields_ct", idt);
    refused_by_check("record_mac = content_mac", idt);
    refused_by_check("fields_ct = NULL", idt);
    refused_by_check("fields_ct = substr(fields_ct, 1, 29)", idt);
    refused_by_check("fields_ct = '\\x02' || substr(fields_ct, 2)", idt);
    refused_by_check("fields_ct = '\\x0102' || substr(fields_ct, 3)", idt);
    refused_by_check("mac_version = 2", idt);
    snprintf(sql, sizeof(sql),
             "UPDATE waybill SET mac_version = 2, fields_ct = NULL, record_mac = '\\x%s', "
             "sender_name_ct = '\\x%s' WHERE id = '%s'",
             machex, cthex, idt);
    exec_ok(sql);
    memcpy(pair[0], a.w.wb_bidx, 16);
    assert_int_equal(gw_store_get(store, "a", pair, 3, get_cb, o, NULL), 0);
    assert_true(run_until(get_done, o, 10000));
    assert_int_equal(o->err, 0);
    assert_int_equal(o->seen.w.mac_version, GW_RECORD_MAC_V2);
    assert_true(o->seen.w.has_record_mac);
    assert_memory_equal(o->seen.w.record_mac, mac, 32);
    assert_int_equal(o->fields_n, 0); /* NULL */
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        if (i != GW_COL_SENDER_NAME) {
            assert_true(o->ctnull[i]);
            continue;
        }
        assert_false(o->ctnull[i]);
        assert_int_equal(o->ctn[i], sizeof(ct));
        assert_memory_equal(o->ct[i], ct, sizeof(ct));
    }
    free(o);
}

#define NCONC 400
static int conc_done[2], conc_new;
static void conc_cb(void *arg, const struct gw_store_result *r)
{
    (void)arg;
    conc_done[0]++;
    if (r->err == 0 && r->outcome == GW_STORE_NEW)
        conc_new++;
}

static void test_group_commit(void **state)
{
    struct gw_store_stats before, after;
    struct fake *f = calloc(NCONC, sizeof(*f));
    int i;
    long n0;
    char want[32];

    (void)state;
    if (!pg_ok)
        skip();
    n0 = atol(q1("SELECT count(*) FROM waybill"));

    gw_store_stats(store, &before);
    conc_done[0] = 0;
    conc_done[1] = NCONC;
    conc_new = 0;
    /* submits arrive over several loop passes, as streams would */
    for (i = 0; i < NCONC; i++) {
        make(&f[i], 1000 + i, 1000 + i, 1, 100 + i % 7, 200 + i % 5);
        assert_int_equal(gw_store_submit(store, &f[i].w, conc_cb, NULL, NULL), 0);
        if (i % 50 == 49)
            event_base_loop(base, EVLOOP_NONBLOCK);
    }
    assert_true(run_until(int_reached, conc_done, 20000));
    assert_int_equal(conc_new, NCONC);
    gw_store_stats(store, &after);
    print_message("group commit: %d submits in %llu transactions\n", NCONC,
                  (unsigned long long)(after.groups - before.groups));
    assert_true(after.groups - before.groups < NCONC / 4);
    assert_int_equal(after.queued, 0);
    assert_int_equal(after.groups_inflight, 0);
    snprintf(want, sizeof(want), "%ld", n0 + NCONC);
    assert_string_equal(q1("SELECT count(*) FROM waybill"), want);
    free(f);
}

/* ---- the fast path's hook (store.h: gw_store_fast_hook) ---- */

struct fast_out {
    bool room;
    size_t reserved, released, n;
    struct gw_store_fast_item items[8];
};

static bool fast_reserve_cb(void *arg, size_t n)
{
    struct fast_out *o = arg;
    if (!o->room)
        return false;
    o->reserved += n;
    return true;
}

static void fast_done_cb(void *arg, size_t reserved, struct gw_store_fast_item *items, size_t n,
                         int64_t sent_ms)
{
    struct fast_out *o = arg;
    assert_true(sent_ms > 0);
    o->released += reserved;
    for (size_t i = 0; i < n && o->n < 8; i++)
        o->items[o->n++] = items[i];
}

/* With room, the insert leases the new waybill's outbox row to the hook's owner and the hook
 * gets the row and a deep copy of the sealed record; a duplicate hands nothing over; without
 * room the row carries no lease. */
static void test_fast_hook(void **state)
{
    struct fast_out o = {.room = true};
    struct gw_store_fast_hook h = {.owner = "gw-test:1",
                                   .lease_ms = 60000,
                                   .reserve = fast_reserve_cb,
                                   .done = fast_done_cb,
                                   .arg = &o};
    struct fake a, b;
    char sql[256], idt[37];

    (void)state;
    if (!pg_ok)
        skip();
    assert_int_equal(gw_store_set_fast(store, &h), 0);
    make(&a, 9100, 9100, 9100, 0, 0);
    assert_int_equal(submit_wait(&a).outcome, GW_STORE_NEW);
    assert_int_equal(o.reserved, 1);
    assert_int_equal(o.released, 1);
    assert_int_equal(o.n, 1);
    /* the copy is the record */
    assert_memory_equal(o.items[0].w->id, a.w.id, 16);
    assert_string_equal(o.items[0].w->origin_branch, "a");
    assert_string_equal(o.items[0].w->pickup_day, "2026-11-27");
    assert_int_equal(o.items[0].w->accepted_at, a.w.accepted_at);
    assert_false(o.items[0].w->has_record_mac);
    assert_memory_equal(o.items[0].w->dek_wrapped.p, a.dek, sizeof(a.dek));
    assert_int_equal(o.items[0].w->fields_ct.n, sizeof(a.fields));
    assert_memory_equal(o.items[0].w->fields_ct.p, a.fields, sizeof(a.fields));
    assert_true(o.items[0].w->fields_ct.p != a.fields); /* a copy */
    for (size_t i = 0; i < GW_COL_COUNT; i++)
        assert_null(o.items[0].w->ct[i].p);
    /* the row: this owner's live lease, the same delivery_id and enqueued_at */
    gw_store_id_text(a.w.id, idt);
    snprintf(sql, sizeof(sql),
             "SELECT lease_owner || ':' || (lease_until > now() + interval '50 s') || ':' || id "
             "|| ':' || delivery_id FROM outbox WHERE waybill_id = '%s'",
             idt);
    {
        char want[160];
        snprintf(want, sizeof(want), "gw-test:1:true:%lld:%s", (long long)o.items[0].outbox_id,
                 o.items[0].delivery_id);
        assert_string_equal(q1(sql), want);
    }
    snprintf(sql, sizeof(sql),
             "SELECT (extract(epoch FROM enqueued_at) * 1000000)::bigint = %lld FROM outbox "
             "WHERE waybill_id = '%s'",
             (long long)o.items[0].enqueued_at_us, idt);
    assert_string_equal(q1(sql), "t");
    gw_store_sealed_free(o.items[0].w);
    /* a retry of the same waybill creates nothing: nothing handed over, the reservation back */
    o.n = 0;
    assert_int_equal(submit_wait(&a).outcome, GW_STORE_EXISTING_SAME);
    assert_int_equal(o.n, 0);
    assert_int_equal(o.released, o.reserved);
    /* no room: no lease, nothing handed over */
    o.room = false;
    make(&b, 9101, 9101, 9101, 0, 0);
    assert_int_equal(submit_wait(&b).outcome, GW_STORE_NEW);
    assert_int_equal(o.n, 0);
    gw_store_id_text(b.w.id, idt);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE waybill_id = '%s' AND lease_owner IS NULL "
             "AND lease_until IS NULL",
             idt);
    assert_string_equal(q1(sql), "1");
    assert_int_equal(gw_store_set_fast(store, NULL), 0);
}

/* The fast path's copy owns every byte string: with the original's buffers freed (and written
 * over) it still holds fields_ct and the wrapped key (under ASan a copy pointing into the
 * original is a heap-use-after-free). Needs no database. */
static void test_sealed_dup_owns_fields(void **state)
{
    struct fake a;
    uint8_t *fields = malloc(FAKE_FIELDS_LEN), *dek = malloc(sizeof(a.dek));
    struct gw_sealed_waybill *copy;

    (void)state;
    assert_non_null(fields);
    assert_non_null(dek);
    make(&a, 9200, 9200, 9200, 0, 0);
    memcpy(fields, a.fields, FAKE_FIELDS_LEN);
    memcpy(dek, a.dek, sizeof(a.dek));
    a.w.fields_ct.p = fields;
    a.w.dek_wrapped.p = dek;
    copy = gw_store_sealed_dup(&a.w);
    assert_non_null(copy);
    memset(fields, 0xee, FAKE_FIELDS_LEN);
    memset(dek, 0xee, sizeof(a.dek));
    free(fields);
    free(dek);
    assert_int_equal(copy->fields_ct.n, FAKE_FIELDS_LEN);
    /* memcmp here, not in cmocka (not instrumented): ASan sees the reads */
    assert_int_equal(memcmp(copy->fields_ct.p, a.fields, FAKE_FIELDS_LEN), 0);
    assert_int_equal(memcmp(copy->dek_wrapped.p, a.dek, sizeof(a.dek)), 0);
    assert_false(copy->has_record_mac);
    for (size_t i = 0; i < GW_COL_COUNT; i++)
        assert_null(copy->ct[i].p);
    gw_store_sealed_free(copy);
}

static void refused_batch_cb(void *arg, const struct gw_store_result *r, size_t n)
{
    (void)r;
    (void)n;
    ((struct sub_out *)arg)->calls++;
}

/* The store writes version 3 only: a record with a field's own ciphertext, a record MAC, no
 * fields_ct or another version is refused before anything is queued (GW_EINVAL, no callback,
 * no row), alone or in a batch beside a good one; the same record as version 3 is then stored. */
static void test_refuses_other_versions(void **state)
{
    static const uint8_t ct[32] = {1, 1};
    struct sub_out o = {0};
    struct fake a, b;
    struct gw_sealed_waybill items[2];
    char sql[128], idt[37];

    (void)state;
    if (!pg_ok)
        skip();
    for (int how = 0; how < 5; how++) {
        make(&a, 9300, 9300, 9300, 0, 0);
        switch (how) {
        case 0: /* a per-field ciphertext beside fields_ct */
            a.w.ct[GW_COL_SENDER_NAME] = (struct gw_bytes){(uint8_t *)ct, sizeof(ct)};
            break;
        case 1: /* version 2's shape: per-field ciphertexts and a record MAC, no fields_ct */
            for (size_t i = 0; i < GW_COL_COUNT; i++)
                a.w.ct[i] = (struct gw_bytes){(uint8_t *)ct, sizeof(ct)};
            a.w.has_record_mac = true;
            a.w.mac_version = GW_RECORD_MAC_V2;
            a.w.fields_ct = (struct gw_bytes){NULL, 0};
            break;
        case 2: /* no fields_ct */
            a.w.fields_ct = (struct gw_bytes){NULL, 0};
            break;
        case 3: /* a record MAC */
            a.w.has_record_mac = true;
            break;
        default: /* another version */
            a.w.mac_version = GW_RECORD_MAC_V2;
            break;
        }
        assert_int_equal(gw_store_submit(store, &a.w, submit_cb, &o, NULL), GW_EINVAL);
        make(&b, 9301, 9301, 9301, 0, 0);
        items[0] = b.w;
        items[1] = a.w;
        assert_int_equal(gw_store_submit_batch(store, items, 2, refused_batch_cb, &o, NULL),
                         GW_EINVAL);
    }
    assert_int_equal(o.calls, 0);
    gw_store_id_text(a.w.id, idt);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM waybill WHERE id = '%s'", idt);
    assert_string_equal(q1(sql), "0");
    gw_store_id_text(b.w.id, idt);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM waybill WHERE id = '%s'", idt);
    assert_string_equal(q1(sql), "0");
    make(&a, 9300, 9300, 9300, 0, 0);
    gw_store_id_text(a.w.id, idt);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM waybill WHERE id = '%s'", idt);
    assert_int_equal(submit_wait(&a).outcome, GW_STORE_NEW);
    assert_string_equal(q1(sql), "1");
}

/* ---- a second client, holding locks in a fixed order ---- */

/* A blocking connection of its own, for a transaction that holds rows while the store runs. */
static PGconn *other_open(void)
{
    PGconn *c = PQconnectdb(pg.conninfo);
    assert_true(PQstatus(c) == CONNECTION_OK);
    return c;
}

static void other_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
}

/* True once some backend waits for a lock that the backend `pid` holds. */
static bool blocked_by(void *arg)
{
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE %d = ANY(pg_blocking_pids(pid))",
             *(int *)arg);
    return strcmp(q1(sql), "0") != 0;
}

/* True once at least *want backends of the database wait for a lock. */
static bool backends_blocked(void *arg)
{
    return atoi(q1("SELECT count(*) FROM pg_stat_activity WHERE "
                   "cardinality(pg_blocking_pids(pid)) > 0")) >= *(int *)arg;
}

/* A concurrent insert of the same number, uncommitted when the store's statement runs: the
 * statement waits for it, its snapshot (taken before the commit) does not see the row, so the
 * waybill gets zero rows and goes again in the next group, which sees the existing row. The
 * order is forced: the other transaction inserts, the store's statement is seen waiting on it,
 * and only then does the other transaction commit. */
static void test_concurrent_same_number(void **state)
{
    struct fake a, b;
    struct gw_store_stats before, after;
    struct sub_out o = {0};
    char idhex[64], wbhex[64], mac[80], sql[1024];
    PGconn *other;
    int other_pid;

    (void)state;
    if (!pg_ok)
        skip();
    make(&a, 50, 50, 5, 0, 0);
    make(&b, 51, 50, 5, 0, 0);
    tohex(a.w.id, 16, idhex);
    tohex(a.w.wb_bidx, 16, wbhex);
    tohex(a.w.content_mac, 32, mac);
    snprintf(sql, sizeof(sql),
             "INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by, kek_version, "
             "dek_version, dek_wrapped, content_mac) VALUES ('%s', '\\x%s', 'a', 'x', 1, 1, "
             "'\\x00', '\\x%s')",
             idhex, wbhex, mac);
    other = other_open();
    other_pid = PQbackendPID(other);
    other_exec(other, "BEGIN");
    other_exec(other, sql);
    gw_store_stats(store, &before);
    assert_int_equal(gw_store_submit(store, &b.w, submit_cb, &o, NULL), 0);
    assert_true(run_until(blocked_by, &other_pid, 30000));
    assert_int_equal(o.calls, 0);
    other_exec(other, "COMMIT");
    PQfinish(other);
    assert_true(run_until(sub_done, &o, 10000));
    assert_int_equal(o.r.err, 0);
    assert_int_equal(o.r.outcome, GW_STORE_EXISTING_SAME);
    assert_memory_equal(o.r.id, a.w.id, 16);
    gw_store_stats(store, &after);
    assert_int_equal(after.items_requeued - before.items_requeued, 1);
    assert_int_equal(after.groups_retried - before.groups_retried, 0);
}

static bool retried(void *arg)
{
    struct gw_store_stats st;
    gw_store_stats(store, &st);
    return st.groups_retried > *(unsigned long long *)arg;
}

/* A forced deadlock: another transaction holds the higher phone's register row; the store's
 * group (its register rows written by the trigger in phone order: the lower phone first) takes
 * the lower one and is seen waiting for the higher;
 * then the other transaction asks for the lower one. The other session's deadlock_timeout is an
 * hour, so the store's backend is the one that detects the cycle and is aborted (40P01); the
 * other's insert then completes and commits before the event loop runs again, and the store's
 * one retry of the whole group stores both waybills. */
static void test_deadlock_retried(void **state)
{
    struct fake lo, hi;
    struct sub_out olo = {0}, ohi = {0};
    struct gw_store_stats before, after;
    char plo[40], phi[40], sql_lo[512], sql_hi[512];
    unsigned long long retried0;
    PGconn *other;
    PGresult *r;
    int other_pid;

    (void)state;
    if (!pg_ok)
        skip();
    make(&lo, 700, 700, 1, 7100, 7200);
    make(&hi, 701, 701, 1, 7101, 7201);
    if (memcmp(lo.w.sender_phone_bidx, hi.w.sender_phone_bidx, 16) > 0) {
        struct fake t = lo;
        lo = hi;
        hi = t;
        repoint(&lo);
        repoint(&hi);
    }
    tohex(lo.w.sender_phone_bidx, 16, plo);
    tohex(hi.w.sender_phone_bidx, 16, phi);
    /* the other transaction's rows: each phone with a sender id of its own, so that both
     * phone_owner rows are written */
    snprintf(sql_hi, sizeof(sql_hi),
             "INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by, kek_version, "
             "dek_version, dek_wrapped, content_mac, sender_phone_bidx, sender_id_bidx) VALUES "
             "(gen_random_uuid(), decode(md5('dl-hi'), 'hex'), 'a', 'x', 1, 1, '\\x00', "
             "decode(md5('m') || md5('m'), 'hex'), '\\x%s', decode(md5('other-hi'), 'hex'))",
             phi);
    snprintf(sql_lo, sizeof(sql_lo),
             "INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by, kek_version, "
             "dek_version, dek_wrapped, content_mac, sender_phone_bidx, sender_id_bidx) VALUES "
             "(gen_random_uuid(), decode(md5('dl-lo'), 'hex'), 'a', 'x', 1, 1, '\\x00', "
             "decode(md5('m') || md5('m'), 'hex'), '\\x%s', decode(md5('other-lo'), 'hex'))",
             plo);
    other = other_open();
    other_pid = PQbackendPID(other);
    other_exec(other, "SET deadlock_timeout = '1h'");
    other_exec(other, "BEGIN");
    other_exec(other, sql_hi);

    gw_store_stats(store, &before);
    retried0 = before.groups_retried;
    /* submitted in one loop pass: one group */
    assert_int_equal(gw_store_submit(store, &hi.w, submit_cb, &ohi, NULL), 0);
    assert_int_equal(gw_store_submit(store, &lo.w, submit_cb, &olo, NULL), 0);
    assert_true(run_until(blocked_by, &other_pid, 30000));
    /* close the cycle; this returns once the store's backend has detected it and aborted */
    assert_int_equal(PQsendQuery(other, sql_lo), 1);
    r = PQgetResult(other);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    assert_null(PQgetResult(other));
    other_exec(other, "COMMIT");
    PQfinish(other);

    assert_true(run_until(retried, &retried0, 30000));
    assert_true(run_until(sub_done, &olo, 15000));
    assert_true(run_until(sub_done, &ohi, 15000));
    assert_int_equal(olo.r.err, 0);
    assert_int_equal(olo.r.outcome, GW_STORE_NEW);
    assert_memory_equal(olo.r.id, lo.w.id, 16);
    assert_int_equal(ohi.r.err, 0);
    assert_int_equal(ohi.r.outcome, GW_STORE_NEW);
    assert_memory_equal(ohi.r.id, hi.w.id, 16);
    gw_store_stats(store, &after);
    assert_int_equal(after.groups_retried - before.groups_retried, 1);
    assert_int_equal(after.groups - before.groups, 2); /* one group, sent twice */
    /* both phones now have two senders: the other transaction's and the store's */
    snprintf(sql_lo, sizeof(sql_lo),
             "SELECT string_agg(senders::text, ',' ORDER BY phone_bidx) FROM phone_owner "
             "WHERE phone_bidx IN ('\\x%s', '\\x%s')",
             plo, phi);
    assert_string_equal(q1(sql_lo), "2,2");
}

/* Two groups that hold the same two numbers A < B, their senders' phones in opposite orders,
 * each held up by a number another transaction inserted and has not committed (P1, P2): with
 * the items in phone order the first takes A and the second B before they wait, and once the
 * holders roll back each wants the other's (a deadlock, one group aborted and sent again). In
 * number order both take A first: the second waits for the first, nothing is retried. */
static void test_groups_take_numbers_in_one_order(void **state)
{
    static const uint8_t wb[6] = {0x10, 0x20, 0x40, 0x40, 0x30, 0x10}; /* A P1 B | B P2 A */
    struct fake f[6];
    struct sub_out o[6];
    struct gw_store_stats before, after;
    PGconn *h[2];
    char sql[640], hex[33];
    int i, blocked, stored;

    (void)state;
    if (!pg_ok)
        skip();
    memset(o, 0, sizeof(o));
    for (i = 0; i < 6; i++) {
        make(&f[i], 800 + (unsigned)i, 800 + (unsigned)i, 800 + (unsigned)i, 800 + (unsigned)i,
             800 + (unsigned)i);
        f[i].w.wb_bidx[0] = wb[i];
        f[i].w.sender_phone_bidx[0] = (uint8_t)(1 + i % 3); /* each group: in the order above */
        repoint(&f[i]);
    }
    memcpy(f[3].w.wb_bidx, f[2].w.wb_bidx, 16); /* the same number B */
    memcpy(f[5].w.wb_bidx, f[0].w.wb_bidx, 16); /* the same number A */
    for (i = 0; i < 2; i++) {                   /* the holders of P1 and P2 */
        tohex(f[1 + 3 * i].w.wb_bidx, 16, hex);
        h[i] = other_open();
        other_exec(h[i], "SET deadlock_timeout = '1h'");
        other_exec(h[i], "BEGIN");
        snprintf(sql, sizeof(sql),
                 "INSERT INTO waybill (id, wb_bidx, origin_branch, submitted_by, kek_version, "
                 "dek_version, dek_wrapped, content_mac) VALUES (gen_random_uuid(), '\\x%s', "
                 "'a', 'x', 1, 1, '\\x00', decode(md5('m') || md5('m'), 'hex'))",
                 hex);
        other_exec(h[i], sql);
    }
    gw_store_stats(store, &before);
    for (i = 0; i < 3; i++) /* one loop pass: the first group */
        assert_int_equal(gw_store_submit(store, &f[i].w, submit_cb, &o[i], NULL), 0);
    blocked = 1;
    assert_true(run_until(backends_blocked, &blocked, 30000));
    for (i = 3; i < 6; i++) /* the second group, on the pool's other connection */
        assert_int_equal(gw_store_submit(store, &f[i].w, submit_cb, &o[i], NULL), 0);
    blocked = 2;
    assert_true(run_until(backends_blocked, &blocked, 30000));
    for (i = 0; i < 2; i++) {
        other_exec(h[i], "ROLLBACK");
        PQfinish(h[i]);
    }
    for (i = 0; i < 6; i++)
        assert_true(run_until(sub_done, &o[i], 30000));
    for (i = 0, stored = 0; i < 6; i++) { /* A and B stored once, once refused as other content */
        assert_true(o[i].r.err == 0 || o[i].r.err == GW_EEXIST);
        stored += o[i].r.err == 0;
    }
    assert_int_equal(stored, 4);
    gw_store_stats(store, &after);
    assert_int_equal(after.groups_retried - before.groups_retried, 0);
}

struct batch_out {
    int calls;
    size_t n;
    struct gw_store_result r[16];
};

static void batch_cb(void *arg, const struct gw_store_result *r, size_t n)
{
    struct batch_out *o = arg;
    o->calls++;
    o->n = n;
    memcpy(o->r, r, n * sizeof(*r));
}

static bool batch_done(void *arg)
{
    return ((struct batch_out *)arg)->calls > 0;
}

static void test_batch(void **state)
{
    struct fake f[6], dup;
    struct gw_sealed_waybill items[6];
    struct batch_out o = {0};
    struct gw_store_stats before, after;
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    make(&dup, 60, 60, 6, 0, 0);
    assert_int_equal(submit_wait(&dup).outcome, GW_STORE_NEW);
    for (i = 0; i < 4; i++)
        make(&f[i], 61 + i, 61 + i, 6, 0, 0);
    make(&f[4], 70, 60, 6, 0, 0); /* same as dup */
    make(&f[5], 71, 60, 7, 0, 0); /* dup's number, other content */
    for (i = 0; i < 6; i++)
        items[i] = f[i].w;
    gw_store_stats(store, &before);
    assert_int_equal(gw_store_submit_batch(store, items, 6, batch_cb, &o, NULL), 0);
    assert_true(run_until(batch_done, &o, 10000));
    gw_store_stats(store, &after);
    assert_int_equal(after.groups - before.groups, 1);
    assert_int_equal(o.n, 6);
    for (i = 0; i < 4; i++) {
        assert_int_equal(o.r[i].err, 0);
        assert_int_equal(o.r[i].outcome, GW_STORE_NEW);
        assert_memory_equal(o.r[i].id, f[i].w.id, 16);
    }
    assert_int_equal(o.r[4].outcome, GW_STORE_EXISTING_SAME);
    assert_memory_equal(o.r[4].id, dup.w.id, 16);
    assert_int_equal(o.r[5].err, GW_EEXIST);
    assert_int_equal(o.r[5].outcome, GW_STORE_EXISTING_DIFFERENT);

    /* a row the database refuses (no such date) fails alone; the others are stored */
    memset(&o, 0, sizeof(o));
    for (i = 0; i < 3; i++) {
        make(&f[i], 80 + i, 80 + i, 8, 0, 0);
        items[i] = f[i].w;
    }
    items[1].pickup_day = "2026-13-45";
    assert_int_equal(gw_store_submit_batch(store, items, 3, batch_cb, &o, NULL), 0);
    assert_true(run_until(batch_done, &o, 10000));
    assert_int_equal(o.r[0].outcome, GW_STORE_NEW);
    assert_int_equal(o.r[1].err, GW_EINTERNAL);
    assert_int_equal(o.r[2].outcome, GW_STORE_NEW);
    assert_int_equal(o.r[2].err, 0);

    assert_int_equal(gw_store_submit_batch(store, items, 0, batch_cb, &o, NULL), GW_EINVAL);
}

static void test_suspicious(void **state)
{
    struct fake f;

    (void)state;
    if (!pg_ok)
        skip();
    /* phone 5001 with the same sender id twice: not suspicious */
    make(&f, 500, 500, 1, 5001, 7001);
    assert_int_equal(submit_wait(&f).outcome, GW_STORE_NEW);
    make(&f, 501, 501, 1, 5001, 7001);
    assert_int_equal(submit_wait(&f).outcome, GW_STORE_NEW);
    /* phone 5002 with two different sender ids: flagged */
    make(&f, 502, 502, 1, 5002, 7001);
    assert_int_equal(submit_wait(&f).outcome, GW_STORE_NEW);
    make(&f, 503, 503, 1, 5002, 7002);
    assert_int_equal(submit_wait(&f).outcome, GW_STORE_NEW);
    make(&f, 504, 504, 1, 5002, 7002);
    assert_int_equal(submit_wait(&f).outcome, GW_STORE_NEW);

    uint8_t p1[16], p2[16];
    char sql[256];
    int i, o;
    fill(p1, 16, 5001 * 17 + 5);
    fill(p2, 16, 5002 * 17 + 5);
    o = snprintf(sql, sizeof(sql),
                 "SELECT suspicious::text || senders FROM phone_owner WHERE phone_bidx = '\\x");
    for (i = 0; i < 16; i++)
        o += snprintf(sql + o, sizeof(sql) - (size_t)o, "%02x", p1[i]);
    snprintf(sql + o, sizeof(sql) - (size_t)o, "'");
    assert_string_equal(q1(sql), "false1");
    o = snprintf(sql, sizeof(sql),
                 "SELECT suspicious::text || senders FROM phone_owner WHERE phone_bidx = '\\x");
    for (i = 0; i < 16; i++)
        o += snprintf(sql + o, sizeof(sql) - (size_t)o, "%02x", p2[i]);
    snprintf(sql + o, sizeof(sql) - (size_t)o, "'");
    assert_string_equal(q1(sql), "true2");
    /* the register holds blind indexes and record ids only: two distinct senders, two records */
    o = snprintf(sql, sizeof(sql), "SELECT count(*) FROM phone_sender WHERE phone_bidx = '\\x");
    for (i = 0; i < 16; i++)
        o += snprintf(sql + o, sizeof(sql) - (size_t)o, "%02x", p2[i]);
    snprintf(sql + o, sizeof(sql) - (size_t)o, "'");
    assert_string_equal(q1(sql), "2");
}

static void test_cancel(void **state)
{
    struct fake a, b, c[3];
    struct gw_sealed_waybill items[3];
    struct sub_out oa = {0}, ob = {0}, probe = {0};
    struct batch_out obatch = {0};
    struct gw_store_req *ha = NULL, *hb = NULL, *hc = NULL;
    int i;

    (void)state;
    if (!pg_ok)
        skip();
    /* cancelled while still queued in the store: dropped, never stored */
    make(&a, 900, 900, 1, 0, 0);
    assert_int_equal(gw_store_submit(store, &a.w, submit_cb, &oa, &ha), 0);
    gw_store_cancel(ha);
    /* cancelled after its group was sent: another session holds a lock that makes the insert
     * wait, so the group is surely on the wire and not yet answered when it is cancelled */
    exec_ok("BEGIN");
    exec_ok("LOCK TABLE waybill IN EXCLUSIVE MODE");
    make(&b, 901, 901, 1, 0, 0);
    assert_int_equal(gw_store_submit(store, &b.w, submit_cb, &ob, &hb), 0);
    assert_true(run_until(group_in_flight, store, 5000));
    assert_int_equal(ob.calls, 0);
    gw_store_cancel(hb);
    for (i = 0; i < 3; i++) {
        make(&c[i], 910 + i, 910 + i, 1, 0, 0);
        items[i] = c[i].w;
    }
    assert_int_equal(gw_store_submit_batch(store, items, 3, batch_cb, &obatch, &hc), 0);
    gw_store_cancel(hc);
    exec_ok("COMMIT");
    /* a later submit completes: everything before it has been answered or dropped */
    make(&a, 920, 920, 1, 0, 0);
    assert_int_equal(gw_store_submit(store, &a.w, submit_cb, &probe, NULL), 0);
    assert_true(run_until(sub_done, &probe, 10000));
    assert_true(run_until(store_idle, store, 10000));
    assert_int_equal(oa.calls, 0);
    assert_int_equal(ob.calls, 0);
    assert_int_equal(obatch.calls, 0);
    /* the one dropped before its group was sent was never stored */
    {
        char sql[128];
        int o = snprintf(sql, sizeof(sql), "SELECT count(*) FROM waybill WHERE id = '");
        make(&a, 900, 900, 1, 0, 0);
        for (i = 0; i < 16; i++)
            o += snprintf(sql + o, sizeof(sql) - (size_t)o, "%02x", a.w.id[i]);
        snprintf(sql + o, sizeof(sql) - (size_t)o, "'");
        assert_string_equal(q1(sql), "0");
    }
    gw_store_cancel(NULL);
}

struct seg_out {
    int calls, err;
    size_t n;
    char first[64];
};

static void seg_cb(void *arg, int err, const struct gw_store_segment *seg, size_t n)
{
    struct seg_out *o = arg;
    o->calls++;
    o->err = err;
    o->n = n;
    if (n > 0)
        snprintf(o->first, sizeof(o->first), "%s %s %lld-%lld", seg[0].branch, seg[0].prefix,
                 (long long)seg[0].range_from, (long long)seg[0].range_to);
}

static bool seg_done(void *arg)
{
    return ((struct seg_out *)arg)->calls > 0;
}

static void test_segments(void **state)
{
    struct seg_out o = {0};
    PGresult *r;

    (void)state;
    if (!pg_ok)
        skip();
    r = PQexec(check, "INSERT INTO segment (branch, prefix, range_from, range_to, issued_by) "
                      "VALUES ('a', 'WG', 1000, 1999, 'sec'), ('b', 'WG', 2000, 2999, 'sec')");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(check, "INSERT INTO segment (branch, prefix, range_from, range_to, issued_by) "
                      "VALUES ('c', 'WG', 1999, 2000, 'sec')");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23P01");
    PQclear(r);
    assert_int_equal(gw_store_load_segments(store, seg_cb, &o, NULL), 0);
    assert_true(run_until(seg_done, &o, 10000));
    assert_int_equal(o.err, 0);
    assert_int_equal(o.n, 2);
    assert_string_equal(o.first, "a WG 1000-1999");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_same_different),
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_concurrent_same_number),
        cmocka_unit_test(test_deadlock_retried),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_suspicious),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_other_suite_same_number),
        cmocka_unit_test(test_fast_hook),
        cmocka_unit_test(test_groups_take_numbers_in_one_order),
        cmocka_unit_test(test_sealed_dup_owns_fields),
        cmocka_unit_test(test_refuses_other_versions),
        cmocka_unit_test(test_get_version2_row),
        cmocka_unit_test_teardown(test_group_insert_reads_waybills_by_index_after_empty_analyze,
                                  plans_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
