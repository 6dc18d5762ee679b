/* outbox.c: the outbox's requests (outbox.h): claim ready deliveries under a lease (FOR UPDATE SKIP
 * LOCKED, oldest first, one per waybill at a time) with each item's waybill read the way
 * gw_store_get reads it (scope '*'), acknowledge, send again later, park, depth. The LISTEN
 * connection is outbox_listen.c. Invariants: a handle is freed exactly once, after its callback
 * or at cancel (its db request cancelled first); a claim owns a copy of its result, so its items
 * stay valid after the callback until gw_outbox_claim_free; every update and delete of a claimed
 * row requires lease_owner = the caller's owner; the claim, ack, later and park commit without
 * waiting for the WAL flush (prologue_sql: a crash can only undo a lease or an outcome, never a
 * delivery, whose row the synchronous waybill and scan inserts write) and read the outbox by its
 * indexes only, never whole (prologue_sql). */
#include "outbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "db.h"
#include "pq_msg.h"
#include "store_int.h"

#define REASON_MAX 200 /* sql/012_outbox.sql: last_error, park_reason */
#define OWNER_MAX 200

enum req_kind { RK_CLAIM, RK_DONE, RK_DEPTH };

struct gw_outbox_req {
    struct gw_db_req *dbreq;
    enum req_kind kind;
    union {
        gw_outbox_claim_cb claim;
        gw_outbox_done_cb done;
        gw_outbox_depth_cb depth;
    } cb;
    void *arg;
};

struct gw_outbox_claim {
    PGresult *res; /* a copy: the items and rows point into it */
    size_t n;
    struct gw_outbox_item *items;
    struct gw_store_row *rows;
};

/* The claim's result: the read columns (store_read.c, from alias w) at 0, then these from X =
 * GW_STORE_READ_COLS + GW_STORE_READ_EXTRA on. Binary format. */
enum {
    C_ID,       /* bigint */
    C_DELIVERY, /* text */
    C_KIND,     /* smallint */
    C_RECORD,   /* text */
    C_ENQ_US,   /* bigint */
    C_ATTEMPTS, /* integer */
    C_SCAN,     /* text or NULL */
    C_EVENT,    /* smallint or NULL */
    C_EVTIME,   /* bigint or NULL */
    C_BRANCH,   /* text or NULL */
    C_COUNT
};

/* $1 owner, $2 the most rows, $3 the lease in milliseconds. A row is claimable when it is not
 * parked, its next_at passed, its lease (if any) ran out, and no earlier row of its waybill is
 * still in the outbox; SKIP LOCKED passes over rows another transaction is claiming, and the
 * re-check of a row updated meanwhile (READ COMMITTED) drops one whose lease was just taken.
 * A waybill's own delivery (kind 1) is always its first row: it is inserted by the statement
 * that inserts the waybill (store_group.c), and a scan of the waybill, hence its row, can only
 * come after that statement committed, with a later id. So only scans (kind 2) are probed for
 * an earlier row. */
static const char claim_head[] =
    "WITH c AS (SELECT o.id FROM outbox o WHERE o.parked_at IS NULL AND o.next_at <= now() "
    "AND (o.lease_until IS NULL OR o.lease_until <= now()) "
    "AND (o.kind = 1 OR NOT EXISTS (SELECT 1 FROM outbox e WHERE e.waybill_id = o.waybill_id "
    "AND e.id < o.id)) "
    "ORDER BY o.id LIMIT $2::integer FOR UPDATE OF o SKIP LOCKED), "
    "u AS (UPDATE outbox o SET lease_owner = $1, "
    "lease_until = now() + $3::bigint * interval '1 millisecond', attempts = o.attempts + 1 "
    "FROM c WHERE o.id = c.id RETURNING o.id, o.delivery_id, o.kind, o.waybill_id, "
    "o.enqueued_at, o.attempts, o.scan_id) SELECT ";
static const char claim_tail[] =
    ", u.id, u.delivery_id::text, u.kind, u.waybill_id::text, "
    "(extract(epoch FROM u.enqueued_at) * 1000000)::bigint, u.attempts, u.scan_id::text, "
    "s.event, extract(epoch FROM s.event_time)::bigint, s.branch "
    "FROM u JOIN waybill w ON w.id = u.waybill_id LEFT JOIN scan s ON s.id = u.scan_id "
    "ORDER BY u.id";

/* Sent first in every claim, ack, later and park, for this transaction only:
 *  - its commit does not wait for the WAL flush (synchronous_commit off). What a crash can lose
 *    is then the last fraction of a second of these transactions: a lost claim is a lease never
 *    taken (the rows stay ready), a lost ack a delivery sent again (at least once: the backend
 *    deduplicates by delivery_id), a lost later or park a delivery claimed again after its lease.
 *    None loses a delivery: the rows are written by the waybill and scan inserts, which stay
 *    synchronous;
 *  - no sequential scan (enable_seqscan off): each statement finds its rows by the outbox's
 *    indexes (the primary key, outbox_ready_idx, outbox_waybill_idx) whatever the statistics say.
 *    A queue's statistics mislead: VACUUM of a drained outbox records it as empty, every plan
 *    made while its file is small then reads it whole, and a connection keeps that plan for its
 *    prepared ack and claim while the outbox grows again (measured: 600-900 pages read by one
 *    delete of 20-30 rows; docs/performance.md). */
static const char prologue_sql[] =
    "SELECT set_config('synchronous_commit', 'off', true), " GW_STORE_NO_SEQSCAN;

static const char ack_sql[] =
    "DELETE FROM outbox WHERE lease_owner = $1 AND id = ANY($2::bigint[])";
static const char later_sql[] =
    "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, "
    "next_at = now() + $3::bigint * interval '1 millisecond', last_error = $4 "
    "WHERE lease_owner = $1 AND id = ANY($2::bigint[])";
static const char park_sql[] = "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, "
                               "parked_at = now(), park_reason = $3 "
                               "WHERE lease_owner = $1 AND id = $2::bigint";
static const char depth_sql[] =
    "SELECT count(*), count(*) FILTER (WHERE parked_at IS NOT NULL), "
    "coalesce((extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE parked_at IS NULL)) "
    "* 1000)::bigint, 0) FROM outbox";

/* ---- handles ---- */

static struct gw_outbox_req *req_new(enum req_kind kind, void *arg)
{
    struct gw_outbox_req *r = gw_calloc(1, sizeof(*r));

    if (r != NULL) {
        r->kind = kind;
        r->arg = arg;
    }
    return r;
}

static int req_start(struct gw_store *s, struct gw_outbox_req *r, const struct gw_db_stmt *st,
                     int nst, gw_db_done_cb done, struct gw_outbox_req **out)
{
    int err = gw_store_txn_send(s, st, nst, done, r, &r->dbreq);

    if (err == 0 && out != NULL)
        *out = r;
    return err;
}

void gw_outbox_cancel(struct gw_outbox_req *req)
{
    if (req == NULL)
        return;
    gw_db_cancel(req->dbreq);
    gw_free(req);
}

/* A failed request's error for the caller: unavailable stays, anything else is internal. */
static int fail_err(int err)
{
    return err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL;
}

static bool owner_ok(const char *owner)
{
    return owner != NULL && owner[0] != '\0' && strlen(owner) <= OWNER_MAX;
}

/* reason cut to at most REASON_MAX bytes at a UTF-8 character boundary, into buf. */
static const char *cut_reason(const char *reason, char buf[REASON_MAX + 1])
{
    size_t n = reason != NULL ? strlen(reason) : 0;

    if (n > REASON_MAX) {
        n = REASON_MAX;
        while (n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(buf, reason, n);
    buf[n] = '\0';
    return buf;
}

/* ids as a PostgreSQL array literal "{1,2,3}" (gw_free it); NULL on ENOMEM. */
static char *ids_lit(const int64_t *ids, size_t n)
{
    size_t cap = 3 + n * 21, len = 0, i;
    char *s = gw_malloc(cap);

    if (s == NULL)
        return NULL;
    s[len++] = '{';
    for (i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%" PRId64, i > 0 ? "," : "", ids[i]);
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

/* ---- claim ---- */

static void copy_text(char *dst, size_t cap, const PGresult *res, int row, int col)
{
    dst[0] = '\0';
    if (!PQgetisnull(res, row, col))
        snprintf(dst, cap, "%s", PQgetvalue(res, row, col));
}

/* Row i of c->res into c->items[i] / c->rows[i]. 0 or GW_EINTERNAL. */
static int item_get(struct gw_outbox_claim *c, int i)
{
    const PGresult *res = c->res;
    struct gw_outbox_item *it = &c->items[i];
    int x = GW_STORE_READ_COLS + GW_STORE_READ_EXTRA;

    if (gw_store_row_get_at(res, i, 0, &c->rows[i]) != 0 || PQgetisnull(res, i, x + C_ID) ||
        PQgetlength(res, i, x + C_ID) != 8 || PQgetlength(res, i, x + C_KIND) != 2)
        return GW_EINTERNAL;
    it->id = gw_pq_int(res, i, x + C_ID, 8);
    copy_text(it->delivery_id, sizeof(it->delivery_id), res, i, x + C_DELIVERY);
    it->kind = (enum gw_outbox_kind)gw_pq_int(res, i, x + C_KIND, 2);
    copy_text(it->record_id, sizeof(it->record_id), res, i, x + C_RECORD);
    it->enqueued_at_us = gw_pq_int(res, i, x + C_ENQ_US, 8);
    it->attempts = (int32_t)gw_pq_int(res, i, x + C_ATTEMPTS, 4);
    it->row = &c->rows[i];
    if (it->kind == GW_OUTBOX_SCAN) {
        if (PQgetisnull(res, i, x + C_SCAN) || PQgetisnull(res, i, x + C_EVENT))
            return GW_EINTERNAL;
        copy_text(it->scan_id, sizeof(it->scan_id), res, i, x + C_SCAN);
        it->event = (int)gw_pq_int(res, i, x + C_EVENT, 2);
        it->event_time = gw_pq_int(res, i, x + C_EVTIME, 8);
        copy_text(it->branch, sizeof(it->branch), res, i, x + C_BRANCH);
    } else if (it->kind != GW_OUTBOX_WAYBILL) {
        return GW_EINTERNAL;
    }
    return 0;
}

void gw_outbox_claim_free(struct gw_outbox_claim *c)
{
    if (c == NULL)
        return;
    PQclear(c->res);
    gw_free(c->items);
    gw_free(c->rows);
    gw_free(c);
}

/* The claim made of res (copied). 0 or GW_ENOMEM / GW_EINTERNAL (*out NULL). */
static int claim_new(const PGresult *res, struct gw_outbox_claim **out)
{
    struct gw_outbox_claim *c;
    int n = PQntuples(res), i, err = GW_ENOMEM;

    *out = NULL;
    if (PQnfields(res) != GW_STORE_READ_COLS + GW_STORE_READ_EXTRA + C_COUNT)
        return GW_EINTERNAL;
    c = gw_calloc(1, sizeof(*c));
    if (c == NULL)
        return GW_ENOMEM;
    c->n = (size_t)n;
    c->res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    if (c->res == NULL)
        goto fail;
    if (n > 0) {
        c->items = gw_calloc((size_t)n, sizeof(*c->items));
        c->rows = gw_calloc((size_t)n, sizeof(*c->rows));
        if (c->items == NULL || c->rows == NULL)
            goto fail;
    }
    for (i = 0; i < n; i++) {
        err = item_get(c, i);
        if (err != 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    gw_outbox_claim_free(c);
    return err;
}

static void claim_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_outbox_req *r = arg;
    struct gw_outbox_claim *c = NULL;

    r->dbreq = NULL;
    if (err != 0)
        err = fail_err(err);
    else if (res->nresults != 3 || res->results[2] == NULL)
        err = GW_EINTERNAL;
    else
        err = claim_new(res->results[2], &c); /* [0] set the scope, [1] the commit's mode */
    r->cb.claim(r->arg, err, c);
    gw_free(r);
}

/* The claim's text (the same for every claim, so that it runs as a prepared statement). */
static bool claim_text(struct gw_store_sql *b)
{
    gw_store_sql_add(b, "%s", claim_head);
    gw_store_read_cols(b);
    gw_store_sql_add(b, "%s", claim_tail);
    return !b->overflow;
}

int gw_outbox_prepare(struct gw_store *store)
{
    struct gw_store_sql b = {.len = 0};
    int rc;

    if (store == NULL)
        return GW_EINVAL;
    if (!claim_text(&b))
        return GW_EINTERNAL;
    if ((rc = gw_db_prepare(store->db, prologue_sql)) != 0 ||
        (rc = gw_db_prepare(store->db, ack_sql)) != 0 ||
        (rc = gw_db_prepare(store->db, b.buf)) != 0)
        return rc;
    return 0;
}

int gw_outbox_claim(struct gw_store *store, const char *owner, uint32_t max, uint32_t lease_ms,
                    gw_outbox_claim_cb cb, void *arg, struct gw_outbox_req **out)
{
    struct gw_store_sql b = {.len = 0};
    char nmax[16], nlease[16];
    const char *vals[3] = {owner, nmax, nlease}, *sv[1];
    struct gw_db_stmt st[3];
    struct gw_outbox_req *r;

    if (out != NULL)
        *out = NULL;
    if (store == NULL || !owner_ok(owner) || max == 0 || max > 10000 || lease_ms == 0 || cb == NULL)
        return GW_EINVAL;
    if (!claim_text(&b))
        return GW_EINTERNAL;
    snprintf(nmax, sizeof(nmax), "%" PRIu32, max);
    snprintf(nlease, sizeof(nlease), "%" PRIu32, lease_ms);
    /* The waybills and scans are read as intake reads them: every branch's. */
    gw_store_scope_stmt(&st[0], sv, GW_STORE_SCOPE_ALL);
    st[1] = (struct gw_db_stmt){.sql = prologue_sql};
    st[2] = (struct gw_db_stmt){.sql = b.buf, .nparams = 3, .values = vals, .result_format = 1};
    r = req_new(RK_CLAIM, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.claim = cb;
    return req_start(store, r, st, 3, claim_done_cb, out);
}

size_t gw_outbox_claim_count(const struct gw_outbox_claim *c)
{
    return c != NULL ? c->n : 0;
}

const struct gw_outbox_item *gw_outbox_claim_item(const struct gw_outbox_claim *c, size_t i)
{
    return c != NULL && i < c->n ? &c->items[i] : NULL;
}

/* ---- ack, later, park ---- */

static void done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_outbox_req *r = arg;

    (void)res;
    r->dbreq = NULL;
    r->cb.done(r->arg, err != 0 ? fail_err(err) : 0);
    gw_free(r);
}

/* Sends one statement whose $1 is the owner (already checked) and $2.. are vals[1..], after
 * prologue_sql in the same transaction. */
static int done_start(struct gw_store *store, const char *sql, const char *const *vals, int nparams,
                      gw_outbox_done_cb cb, void *arg, struct gw_outbox_req **out)
{
    struct gw_db_stmt st[2] = {{.sql = prologue_sql},
                               {.sql = sql, .nparams = nparams, .values = vals}};
    struct gw_outbox_req *r = req_new(RK_DONE, arg);

    if (r == NULL)
        return GW_ENOMEM;
    r->cb.done = cb;
    return req_start(store, r, st, 2, done_cb, out);
}

static bool ids_ok(const int64_t *ids, size_t n)
{
    return ids != NULL && n > 0 && n <= GW_OUTBOX_IDS_MAX;
}

int gw_outbox_ack(struct gw_store *store, const char *owner, const int64_t *ids, size_t n,
                  gw_outbox_done_cb cb, void *arg, struct gw_outbox_req **out)
{
    const char *vals[2];
    char *lit;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (store == NULL || !owner_ok(owner) || !ids_ok(ids, n) || cb == NULL)
        return GW_EINVAL;
    lit = ids_lit(ids, n);
    if (lit == NULL)
        return GW_ENOMEM;
    vals[0] = owner;
    vals[1] = lit;
    rc = done_start(store, ack_sql, vals, 2, cb, arg, out);
    gw_free(lit);
    return rc;
}

int gw_outbox_later(struct gw_store *store, const char *owner, const int64_t *ids, size_t n,
                    uint32_t delay_ms, const char *error, gw_outbox_done_cb cb, void *arg,
                    struct gw_outbox_req **out)
{
    char delay[16], why[REASON_MAX + 1];
    const char *vals[4];
    char *lit;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (store == NULL || !owner_ok(owner) || !ids_ok(ids, n) || cb == NULL)
        return GW_EINVAL;
    lit = ids_lit(ids, n);
    if (lit == NULL)
        return GW_ENOMEM;
    snprintf(delay, sizeof(delay), "%" PRIu32, delay_ms);
    vals[0] = owner;
    vals[1] = lit;
    vals[2] = delay;
    vals[3] = error != NULL && error[0] != '\0' ? cut_reason(error, why) : NULL;
    rc = done_start(store, later_sql, vals, 4, cb, arg, out);
    gw_free(lit);
    return rc;
}

int gw_outbox_park(struct gw_store *store, const char *owner, int64_t id, const char *reason,
                   gw_outbox_done_cb cb, void *arg, struct gw_outbox_req **out)
{
    char num[24], why[REASON_MAX + 1];
    const char *vals[3];

    if (out != NULL)
        *out = NULL;
    if (store == NULL || !owner_ok(owner) || id <= 0 || cb == NULL)
        return GW_EINVAL;
    snprintf(num, sizeof(num), "%" PRId64, id);
    vals[0] = owner;
    vals[1] = num;
    vals[2] = cut_reason(reason != NULL && reason[0] != '\0' ? reason : "refused", why);
    return done_start(store, park_sql, vals, 3, cb, arg, out);
}

/* ---- depth ---- */

static void depth_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_outbox_req *r = arg;
    struct gw_outbox_depth d = {0, 0, 0};
    const PGresult *pr = err == 0 && res->nresults == 1 ? res->results[0] : NULL;

    r->dbreq = NULL;
    if (err != 0) {
        err = fail_err(err);
    } else if (pr == NULL || PQntuples(pr) != 1 || PQnfields(pr) != 3) {
        err = GW_EINTERNAL;
    } else {
        d.depth = gw_pq_int(pr, 0, 0, 8);
        d.parked = gw_pq_int(pr, 0, 1, 8);
        d.oldest_ms = gw_pq_int(pr, 0, 2, 8);
    }
    r->cb.depth(r->arg, err, err == 0 ? &d : NULL);
    gw_free(r);
}

int gw_outbox_depth(struct gw_store *store, gw_outbox_depth_cb cb, void *arg,
                    struct gw_outbox_req **out)
{
    struct gw_db_stmt st = {.sql = depth_sql, .result_format = 1};
    struct gw_outbox_req *r;

    if (out != NULL)
        *out = NULL;
    if (store == NULL || cb == NULL)
        return GW_EINVAL;
    r = req_new(RK_DEPTH, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.depth = cb;
    return req_start(store, r, &st, 1, depth_done_cb, out);
}
