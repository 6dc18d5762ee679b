/* store_scan.c: scan events stored by group commit (store_scan.h). A group is one transaction of
 * four statements: the intake scope '*', a per-waybill advisory lock (taken in waybill-id order,
 * so groups never deadlock), the insert that answers per event NEW / DUPLICATE / STALE / REFUSED,
 * and each waybill's latest event after it. Invariants: an event is either queued on q->pending or
 * in exactly one group in flight; it is answered exactly once (never after cancel) and freed by
 * whoever answers or drops it; a group holds at most one event per waybill. */
#include "store_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "alloc.h"
#include "db.h"
#include "log.h"
#include "store_int.h"

#define SCAN_QUEUE_MAX 16384
#define SCAN_GROUP_MAX 256
#define SCAN_LOCK_CLASS 1398 /* pg_advisory_xact_lock(class, hashtext(waybill id)) */

struct scan_group;

struct gw_store_scan_req {
    TAILQ_ENTRY(gw_store_scan_req) link; /* q->pending while queued */
    struct gw_store_scanq *q;
    struct scan_group *group; /* NULL while queued */
    bool cancelled;
    gw_store_scan_cb cb;
    void *arg;
    char id[37]; /* waybill id as UUID text */
    int event, expected;
    int64_t at, expected_at;
    bool allowed;
    char branch[GW_STORE_SCAN_BRANCH_MAX + 1];
    char device[GW_STORE_SCAN_DEVICE_MAX + 1];
};

struct scan_group {
    TAILQ_ENTRY(scan_group) link;
    struct gw_store_scanq *q;
    struct gw_db_req *dbreq;
    int attempt;
    size_t n;
    struct gw_store_scan_req *items[];
};

TAILQ_HEAD(scan_req_list, gw_store_scan_req);
TAILQ_HEAD(scan_group_list, scan_group);

struct gw_store_scanq {
    struct gw_db *db;
    struct event *ev_flush;
    struct scan_req_list pending;
    struct scan_group_list groups;
    struct gw_store_scan_stats st;
};

/* $1..$8: arrays of waybill id, event, time, branch, device, expected latest event, verdict, the
 * expected latest event's time. Each NEW event (only those: `ins`) enqueues its delivery to the
 * backend in the same statement (ob: sql/012_outbox.sql), after its waybill's own (that one
 * committed before the scan could see the waybill; the advisory lock orders a waybill's scans). */
static const char insert_sql[] =
    "WITH req AS (SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::bigint[], $4::text[], "
    "$5::text[], $6::smallint[], $7::boolean[], $8::bigint[]) WITH ORDINALITY "
    "AS t(wid, ev, at, branch, device, expected, allowed, expected_at, ord)), "
    "dup AS (SELECT r.ord, s.id FROM req r JOIN scan s ON s.waybill_id = r.wid AND s.event = r.ev "
    "AND s.event_time = to_timestamp(r.at) AND s.device = r.device), "
    "cand AS (SELECT r.*, (waybill_last_event(r.wid) = r.expected AND "
    "waybill_last_event_at(r.wid) = r.expected_at) AS fresh, "
    "(SELECT count(*) FROM scan s WHERE s.waybill_id = r.wid AND s.branch = r.branch) < 32 "
    "AS room FROM req r "
    "WHERE r.ord NOT IN (SELECT ord FROM dup)), "
    "ins AS (INSERT INTO scan (waybill_id, event, event_time, branch, device) "
    "SELECT wid, ev, to_timestamp(at), branch, device FROM cand "
    "WHERE allowed AND fresh AND room "
    "ON CONFLICT ON CONSTRAINT scan_idempotent DO NOTHING RETURNING id, waybill_id), "
    "ob AS (INSERT INTO outbox (kind, waybill_id, scan_id) SELECT 2, ins.waybill_id, ins.id "
    "FROM ins) "
    "SELECT r.ord, CASE WHEN d.id IS NOT NULL THEN 2 WHEN i.id IS NOT NULL THEN 1 "
    "WHEN NOT c.fresh THEN 3 WHEN NOT c.allowed THEN 4 WHEN NOT c.room THEN 5 ELSE 3 END, "
    "coalesce(d.id, i.id) FROM req r LEFT JOIN dup d ON d.ord = r.ord "
    "LEFT JOIN cand c ON c.ord = r.ord LEFT JOIN ins i ON i.waybill_id = r.wid ORDER BY r.ord";
static const char lock_sql[] = "SELECT count(pg_advisory_xact_lock(1398, hashtext(x::text))) "
                               "FROM unnest($1::uuid[]) AS x";
static const char latest_sql[] = "SELECT waybill_last_event(x) FROM unnest($1::uuid[]) "
                                 "WITH ORDINALITY AS t(x, o) ORDER BY o";
_Static_assert(SCAN_LOCK_CLASS == 1398, "lock_sql names the class");
_Static_assert(GW_STORE_SCAN_MAX == 32 && GW_STORE_SCAN_FULL == 5, "insert_sql names both");

static void group_done_cb(void *arg, int err, const struct gw_db_result *res);

/* ---- answering ---- */

static void answer(struct gw_store_scan_req *r, const struct gw_store_scan_result *res)
{
    if (!r->cancelled && r->cb != NULL)
        r->cb(r->arg, res);
    gw_free(r);
}

static void answer_err(struct gw_store_scan_req *r, int err)
{
    struct gw_store_scan_result res = {.err = err};

    answer(r, &res);
}

/* ---- groups ---- */

static int item_cmp(const void *a, const void *b)
{
    const struct gw_store_scan_req *x = *(struct gw_store_scan_req *const *)a,
                                   *y = *(struct gw_store_scan_req *const *)b;

    return strcmp(x->id, y->id);
}

/* Element `which` (the insert's parameter $which+1) of r as text; num holds numbers. */
static const char *elem(const struct gw_store_scan_req *r, size_t which, char num[24])
{
    switch (which) {
    case 0:
        return r->id;
    case 1:
        snprintf(num, 24, "%d", r->event);
        return num;
    case 2:
        snprintf(num, 24, "%lld", (long long)r->at);
        return num;
    case 3:
        return r->branch;
    case 4:
        return r->device;
    case 5:
        snprintf(num, 24, "%d", r->expected);
        return num;
    case 6:
        return r->allowed ? "t" : "f";
    default:
        snprintf(num, 24, "%lld", (long long)r->expected_at);
        return num;
    }
}

/* Parameter `which` of g as a PostgreSQL array literal, every element double-quoted (backslash
 * and quote escaped). gw_free it; NULL on ENOMEM. */
static char *array_lit(const struct scan_group *g, size_t which)
{
    size_t cap = 3, i;
    char num[24], *out, *p;

    for (i = 0; i < g->n; i++)
        cap += 2 * strlen(elem(g->items[i], which, num)) + 3;
    out = gw_malloc(cap);
    if (out == NULL)
        return NULL;
    p = out;
    *p++ = '{';
    for (i = 0; i < g->n; i++) {
        if (i > 0)
            *p++ = ',';
        *p++ = '"';
        for (const char *c = elem(g->items[i], which, num); *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

#define NARR 8

/* Sends g (one transaction). Returns 0 or the error (g is then not sent). */
static int group_send(struct gw_store_scanq *q, struct scan_group *g)
{
    char *arr[NARR] = {NULL};
    const char *scope[1];
    const char *vals[NARR];
    struct gw_db_stmt st[4];
    size_t k;
    int rc = GW_ENOMEM;

    for (k = 0; k < NARR; k++) {
        arr[k] = array_lit(g, k);
        if (arr[k] == NULL)
            goto out;
        vals[k] = arr[k];
    }
    gw_store_scope_indexed_stmt(&st[0], scope, GW_STORE_SCOPE_ALL); /* and by index only */
    st[1] = (struct gw_db_stmt){.sql = lock_sql, .nparams = 1, .values = vals};
    st[2] = (struct gw_db_stmt){.sql = insert_sql, .nparams = NARR, .values = vals};
    st[3] = (struct gw_db_stmt){.sql = latest_sql, .nparams = 1, .values = vals};
    /* GW_DB_SHARED: many callers' scan events (bounded by the scan queue), charged to none */
    rc = gw_db_exec(q->db, st, 4, GW_DB_TXN | GW_DB_SHARED, group_done_cb, g, &g->dbreq);
    if (rc == 0)
        q->st.groups++;
out:
    for (k = 0; k < NARR; k++)
        gw_free(arr[k]);
    return rc;
}

static struct scan_group *group_new(struct gw_store_scanq *q, size_t n)
{
    struct scan_group *g = gw_calloc(1, sizeof(*g) + n * sizeof(g->items[0]));

    if (g != NULL)
        g->q = q;
    return g;
}

/* Sorts and sends g; on failure answers its items with the error. */
static void group_start(struct gw_store_scanq *q, struct scan_group *g)
{
    size_t i;
    int rc;

    qsort(g->items, g->n, sizeof(g->items[0]), item_cmp);
    for (i = 0; i < g->n; i++)
        g->items[i]->group = g;
    rc = group_send(q, g);
    if (rc != 0) {
        for (i = 0; i < g->n; i++)
            answer_err(g->items[i], rc);
        gw_free(g);
        return;
    }
    TAILQ_INSERT_TAIL(&q->groups, g, link);
    q->st.inflight++;
}

static bool in_group(const struct scan_group *g, const char *id)
{
    size_t i;

    for (i = 0; i < g->n; i++)
        if (strcmp(g->items[i]->id, id) == 0)
            return true;
    return false;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct gw_store_scanq *q = arg;
    unsigned pool = gw_db_pool_size(q->db);

    (void)fd;
    (void)what;
    while (!TAILQ_EMPTY(&q->pending) && q->st.inflight < pool) {
        struct gw_store_scan_req *r, *next;
        struct scan_group *g = group_new(q, SCAN_GROUP_MAX);

        if (g == NULL) {
            r = TAILQ_FIRST(&q->pending);
            TAILQ_REMOVE(&q->pending, r, link);
            q->st.queued--;
            answer_err(r, GW_ENOMEM);
            continue;
        }
        /* In arrival order; a second event of a waybill already in the group waits for the
         * next group, so its transition is judged after the first's. */
        for (r = TAILQ_FIRST(&q->pending); r != NULL && g->n < SCAN_GROUP_MAX; r = next) {
            next = TAILQ_NEXT(r, link);
            if (in_group(g, r->id))
                continue;
            TAILQ_REMOVE(&q->pending, r, link);
            q->st.queued--;
            g->items[g->n++] = r;
        }
        group_start(q, g);
    }
}

static void schedule_flush(struct gw_store_scanq *q)
{
    event_active(q->ev_flush, EV_TIMEOUT, 0);
}

static bool retryable(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "40P01") == 0 || strcmp(sqlstate, "40001") == 0);
}

/* The insert's row for item i of g (ordinal i + 1) and the latest event after it. */
static void item_outcome(struct scan_group *g, size_t i, const PGresult *ins,
                         const PGresult *latest)
{
    struct gw_store_scan_result res = {.err = 0};
    int row = (int)i;

    if (row >= PQntuples(ins) || row >= PQntuples(latest) ||
        atoi(PQgetvalue(ins, row, 0)) != row + 1) {
        answer_err(g->items[i], GW_EINTERNAL);
        return;
    }
    res.outcome = (enum gw_store_scan_outcome)atoi(PQgetvalue(ins, row, 1));
    res.latest = atoi(PQgetvalue(latest, row, 0));
    if (!PQgetisnull(ins, row, 2))
        snprintf(res.id, sizeof(res.id), "%s", PQgetvalue(ins, row, 2));
    answer(g->items[i], &res);
}

static void group_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct scan_group *g = arg;
    struct gw_store_scanq *q = g->q;
    size_t i;

    g->dbreq = NULL;
    if (err == GW_EINTERNAL && retryable(res->sqlstate) && g->attempt == 0) {
        g->attempt++;
        if (group_send(q, g) == 0)
            return;
        err = GW_EUNAVAIL;
    }
    TAILQ_REMOVE(&q->groups, g, link);
    q->st.inflight--;
    if (err == 0 && res->nresults == 4 && res->results[2] != NULL && res->results[3] != NULL &&
        PQnfields(res->results[2]) == 3 && PQnfields(res->results[3]) == 1) {
        for (i = 0; i < g->n; i++)
            item_outcome(g, i, res->results[2], res->results[3]);
    } else if (err == GW_EINTERNAL && !retryable(res->sqlstate) && g->n > 1) {
        /* the database refused one event of the group (its waybill is gone, say): each goes
         * again alone, so only that one fails */
        GW_LOG(GW_LOG_WARN, "store", NULL, "scan group of %zu refused (sqlstate %s): singly", g->n,
               res->sqlstate ? res->sqlstate : "?");
        for (i = 0; i < g->n; i++) {
            struct scan_group *one = group_new(q, 1);
            if (one == NULL) {
                answer_err(g->items[i], GW_ENOMEM);
                continue;
            }
            one->items[one->n++] = g->items[i];
            group_start(q, one);
        }
    } else {
        if (err == 0 || err == GW_EINTERNAL)
            err = retryable(res->sqlstate) ? GW_EUNAVAIL : GW_EINTERNAL;
        for (i = 0; i < g->n; i++)
            answer_err(g->items[i], err);
    }
    gw_free(g);
    schedule_flush(q);
}

/* ---- lifecycle ---- */

static struct gw_store_scanq *scanq(struct gw_store *s)
{
    struct gw_store_scanq *q;

    if (s->scans != NULL)
        return s->scans;
    q = gw_calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->db = s->db;
    TAILQ_INIT(&q->pending);
    TAILQ_INIT(&q->groups);
    q->ev_flush = event_new(gw_db_base(s->db), -1, 0, on_flush, q);
    if (q->ev_flush == NULL) {
        gw_free(q);
        return NULL;
    }
    s->scans = q;
    return q;
}

void gw_store_scanq_free(struct gw_store_scanq *q)
{
    struct gw_store_scan_req *r;
    struct scan_group *g;
    size_t i;

    if (q == NULL)
        return;
    while ((g = TAILQ_FIRST(&q->groups)) != NULL) {
        TAILQ_REMOVE(&q->groups, g, link);
        gw_db_cancel(g->dbreq);
        for (i = 0; i < g->n; i++)
            gw_free(g->items[i]);
        gw_free(g);
    }
    while ((r = TAILQ_FIRST(&q->pending)) != NULL) {
        TAILQ_REMOVE(&q->pending, r, link);
        gw_free(r);
    }
    event_free(q->ev_flush);
    gw_free(q);
}

/* ---- public ---- */

static bool copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;

    if (n == 0 || n >= cap)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

int gw_store_scan_record(struct gw_store *s, const struct gw_store_scan *sc, gw_store_scan_cb cb,
                         void *arg, struct gw_store_scan_req **out)
{
    struct gw_store_scanq *q;
    struct gw_store_scan_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || sc == NULL || cb == NULL || sc->event < 1 || sc->event > 7)
        return GW_EINVAL;
    if (!gw_db_ready(s->db))
        return GW_EUNAVAIL;
    q = scanq(s);
    if (q == NULL)
        return GW_ENOMEM;
    if (q->st.queued >= SCAN_QUEUE_MAX)
        return GW_EQUEUEFULL;
    r = gw_calloc(1, sizeof(*r));
    if (r == NULL)
        return GW_ENOMEM;
    if (!copy_str(r->branch, sizeof(r->branch), sc->branch) ||
        !copy_str(r->device, sizeof(r->device), sc->device)) {
        gw_free(r);
        return GW_EINVAL;
    }
    r->q = q;
    r->cb = cb;
    r->arg = arg;
    if (sc->waybill_id == NULL || strlen(sc->waybill_id) != sizeof(r->id) - 1) {
        gw_free(r);
        return GW_EINVAL;
    }
    memcpy(r->id, sc->waybill_id, sizeof(r->id));
    r->event = sc->event;
    r->at = sc->at;
    r->expected = sc->expected;
    r->expected_at = sc->expected_at;
    r->allowed = sc->allowed;
    TAILQ_INSERT_TAIL(&q->pending, r, link);
    q->st.queued++;
    schedule_flush(q);
    if (out != NULL)
        *out = r;
    return 0;
}

void gw_store_scan_cancel(struct gw_store_scan_req *r)
{
    if (r == NULL || r->cancelled)
        return;
    r->cancelled = true;
    if (r->group != NULL)
        return; /* answered (silently) and freed when its group ends */
    TAILQ_REMOVE(&r->q->pending, r, link);
    r->q->st.queued--;
    gw_free(r);
}

void gw_store_scan_stats(const struct gw_store *s, struct gw_store_scan_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (s != NULL && s->scans != NULL)
        *out = s->scans->st;
}
