/* store.c: the store's core: handles, idempotent group-committed waybill inserts and cancel
 * (reads and segments are in store_read.c; items and the group statement's text and
 * parameters in store_group.c). Invariants: a request (handle) lives until every one of its items
 * is resolved exactly once, so a group never points at freed items; each item is either waiting on
 * store->pending, or in exactly one group in flight; a cancelled request's callback never runs. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "db.h"
#include "log.h"
#include "pq_msg.h"
#include "store_int.h"

static void group_done_cb(void *arg, int err, const struct gw_db_result *res);
#define STORE_QUEUE_MAX 16384 /* single submits waiting for a group */
#ifndef STORE_GROUP_MIN
#define STORE_GROUP_MIN 8 /* smallest group made when spreading over connections */
#endif
#define STORE_REQUEUE_MAX 5 /* zero-row or innocent-bystander retries of one item */

static void schedule_flush(struct gw_store *s)
{
    event_active(s->ev_flush, EV_TIMEOUT, 0);
}

void gw_store_id_text(const uint8_t id[GW_STORE_ID_LEN], char buf[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0;

    for (i = 0; i < GW_STORE_ID_LEN; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            buf[o++] = '-';
        buf[o++] = hex[id[i] >> 4];
        buf[o++] = hex[id[i] & 15];
    }
    buf[o] = '\0';
}

/* ---- requests and items ---- */

/* All items resolved: report (unless cancelled) and free. */
static void req_finish(struct gw_store_req *r)
{
    if (!r->cancelled) {
        if (r->kind == GW_STORE_RK_SUBMIT && r->cb.submit != NULL)
            r->cb.submit(r->arg, &r->results[0]);
        else if (r->kind == GW_STORE_RK_BATCH && r->cb.batch != NULL)
            r->cb.batch(r->arg, r->results, r->n);
    }
    gw_store_req_free(r);
}

static void item_resolve(struct gw_store_item *it, int err, enum gw_store_outcome oc,
                         const uint8_t *id)
{
    struct gw_store_req *r = it->req;
    struct gw_store_result *res = &r->results[it->index];

    if (it->resolved)
        return;
    it->resolved = true;
    res->err = err;
    res->outcome = oc;
    if (id != NULL)
        memcpy(res->id, id, GW_STORE_ID_LEN);
    if (--r->nleft == 0)
        req_finish(r);
}

/* ---- groups ---- */

/* A group inserts its waybills in this order, taking each number's unique-index entry as it
 * goes: by number first, so that any two groups take the numbers they share in the same order
 * and never wait for each other both ways (a sender's phone first let two groups of the same
 * numbers, their phones in opposite orders, deadlock: a device could make other callers'
 * groups fail). The register's rows (the trigger) are written in phone order by the trigger
 * itself. */
static int item_cmp(const void *a, const void *b)
{
    const struct gw_store_item *x = *(struct gw_store_item *const *)a,
                               *y = *(struct gw_store_item *const *)b;
    int c = memcmp(x->wb, y->wb, GW_STORE_BIDX_LEN);

    if (c == 0)
        c = memcmp(x->sort_phone, y->sort_phone, GW_STORE_BIDX_LEN);
    if (c == 0)
        c = memcmp(x->sort_id, y->sort_id, GW_STORE_BIDX_LEN);
    return c;
}

static struct gw_store_group *group_new(struct gw_store *s, size_t n, bool batch)
{
    struct gw_store_group *g = gw_calloc(1, sizeof(*g) + n * sizeof(struct gw_store_item *));

    if (g == NULL)
        return NULL;
    g->store = s;
    g->batch = batch;
    return g;
}

/* ---- the fast path (store.h: gw_store_fast_hook) ---- */

/* Before a new group is sent: the hook's reservation for all of it, or none (every item must
 * carry its sealed copy). */
static void fast_reserve(struct gw_store *s, struct gw_store_group *g)
{
    g->fast = 0;
    g->sent_ms = (int64_t)gw_clock_ms();
    if (s->fast.reserve == NULL || g->n == 0)
        return;
    for (size_t i = 0; i < g->n; i++)
        if (g->items[i]->sealed == NULL)
            return;
    if (s->fast.reserve(s->fast.arg, g->n))
        g->fast = g->n;
}

/* The group's reservation ends: fi[0..n) (taken from its items) go to the hook, or are freed
 * when the hook was removed meanwhile. */
static void fast_finish(struct gw_store *s, struct gw_store_group *g, struct gw_store_fast_item *fi,
                        size_t n)
{
    if (g->fast > 0 && s->fast.done != NULL) {
        s->fast.done(s->fast.arg, g->fast, fi, n, g->sent_ms);
    } else {
        for (size_t i = 0; i < n; i++)
            gw_store_sealed_free(fi[i].w);
    }
    g->fast = 0;
}

/* A created waybill's outbox row (store_int.h: GW_STORE_GROUP_RESULT_COLS) and its sealed copy,
 * taken from the item, into *fi. False when the row lacks them. */
static bool fast_take(struct gw_store_item *it, const PGresult *res, int row,
                      struct gw_store_fast_item *fi)
{
    if (it->sealed == NULL || PQgetlength(res, row, 4) != 8 ||
        PQgetlength(res, row, 5) != GW_STORE_ID_LEN || PQgetlength(res, row, 6) != 8)
        return false;
    fi->outbox_id = gw_pq_int(res, row, 4, 8);
    gw_store_id_text((const uint8_t *)PQgetvalue(res, row, 5), fi->delivery_id);
    fi->enqueued_at_us = gw_pq_int(res, row, 6, 8);
    fi->w = it->sealed;
    it->sealed = NULL;
    return true;
}

int gw_store_set_fast(struct gw_store *s, const struct gw_store_fast_hook *hook)
{
    if (s == NULL)
        return GW_EINVAL;
    if (hook == NULL) {
        memset(&s->fast, 0, sizeof(s->fast));
        return 0;
    }
    if (hook->owner == NULL || hook->owner[0] == '\0' ||
        strlen(hook->owner) >= sizeof(s->fast_owner) || hook->reserve == NULL ||
        hook->done == NULL || hook->lease_ms == 0)
        return GW_EINVAL;
    snprintf(s->fast_owner, sizeof(s->fast_owner), "%s", hook->owner);
    s->fast = *hook;
    s->fast.owner = s->fast_owner;
    return 0;
}

/* Sorts and sends a new group; on failure resolves its items with the error. */
static void group_start(struct gw_store *s, struct gw_store_group *g)
{
    size_t i;
    int rc;

    qsort(g->items, g->n, sizeof(g->items[0]), item_cmp);
    fast_reserve(s, g);
    rc = gw_store_group_send(s, g, group_done_cb);
    if (rc != 0) {
        fast_finish(s, g, NULL, 0);
        for (i = 0; i < g->n; i++)
            item_resolve(g->items[i], rc, 0, NULL);
        gw_free(g);
        return;
    }
    TAILQ_INSERT_TAIL(&s->groups, g, link);
    s->st.groups_inflight++;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct gw_store *s = arg;
    unsigned pool = gw_db_pool_size(s->db);
    struct gw_store_item *it;

    (void)fd;
    (void)what;
    while (!TAILQ_EMPTY(&s->pending) && s->st.groups_inflight < pool) {
        /* Spread what is queued over the free connections, so that several backends (cores)
         * work at once, but keep groups big enough to share commits. */
        size_t free_slots = pool - (size_t)s->st.groups_inflight;
        size_t n = (s->st.queued + free_slots - 1) / free_slots;
        struct gw_store_group *g;

        if (n < STORE_GROUP_MIN)
            n = STORE_GROUP_MIN;
        if (n > s->st.queued)
            n = s->st.queued;
        if (n > GW_STORE_GROUP_MAX)
            n = GW_STORE_GROUP_MAX;
        g = group_new(s, n, false);
        if (g == NULL) {
            it = TAILQ_FIRST(&s->pending);
            TAILQ_REMOVE(&s->pending, it, link);
            it->queued = false;
            s->st.queued--;
            item_resolve(it, GW_ENOMEM, 0, NULL);
            continue;
        }
        while (g->n < n && (it = TAILQ_FIRST(&s->pending)) != NULL) {
            TAILQ_REMOVE(&s->pending, it, link);
            it->queued = false;
            s->st.queued--;
            g->items[g->n++] = it;
        }
        group_start(s, g);
    }
}

/* An item that must go again (zero rows, or an innocent item of a failed group). */
static void item_again(struct gw_store *s, struct gw_store_item *it, struct gw_store_group *follow)
{
    if (it->req->cancelled) {
        item_resolve(it, GW_ECANCELLED, 0, NULL);
        return;
    }
    if (++it->requeues > STORE_REQUEUE_MAX) {
        item_resolve(it, GW_EUNAVAIL, 0, NULL);
        return;
    }
    s->st.items_requeued++;
    if (follow != NULL) {
        follow->items[follow->n++] = it;
        return;
    }
    it->queued = true;
    TAILQ_INSERT_HEAD(&s->pending, it, link);
    s->st.queued++;
}

static bool retryable(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "40P01") == 0 || strcmp(sqlstate, "40001") == 0);
}

/* Whether a stored content_mac is it's under its own suite or under another the keyring holds:
 * the row found may be of another suite (store_group.c: the number's alternative indexes). */
static bool same_content(const struct gw_store_item *it, const char *mac)
{
    if (memcmp(mac, it->mac, GW_STORE_MAC_LEN) == 0)
        return true;
    for (size_t k = 0; k < it->n_alt; k++)
        if (memcmp(mac, it->alt_mac[k], GW_STORE_MAC_LEN) == 0)
            return true;
    return false;
}

/* Row `row` of the group statement's result: (ordinal, created, id, content_mac). */
static void item_outcome(struct gw_store_item *it, const PGresult *res, int row)
{
    const char *created = PQgetvalue(res, row, 1), *id = PQgetvalue(res, row, 2),
               *mac = PQgetvalue(res, row, 3);

    if (PQgetlength(res, row, 1) != 1 || PQgetlength(res, row, 2) != GW_STORE_ID_LEN) {
        item_resolve(it, GW_EINTERNAL, 0, NULL);
    } else if (created[0] != 0) {
        item_resolve(it, 0, GW_STORE_NEW, (const uint8_t *)id);
    } else if (PQgetlength(res, row, 3) == GW_STORE_MAC_LEN && same_content(it, mac)) {
        item_resolve(it, 0, GW_STORE_EXISTING_SAME, (const uint8_t *)id);
    } else {
        item_resolve(it, GW_EEXIST, GW_STORE_EXISTING_DIFFERENT, (const uint8_t *)id);
    }
}

/* The 1-based ordinal of a result row, or 0 when malformed. */
static size_t row_ordinal(const PGresult *res, int row, size_t n)
{
    const uint8_t *p = (const uint8_t *)PQgetvalue(res, row, 0);
    uint32_t v;

    if (PQgetlength(res, row, 0) != 4)
        return 0;
    v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return v >= 1 && v <= n ? v : 0;
}

static void group_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_group *g = arg;
    struct gw_store *s = g->store;
    struct gw_store_group *follow = NULL;
    struct gw_store_fast_item fi[GW_STORE_GROUP_MAX];
    size_t i, nf = 0;

    g->dbreq = NULL;
    if (err == GW_EINTERNAL && retryable(res->sqlstate) && g->attempt == 0) {
        /* deadlock or serialization failure: the whole group again, once */
        g->attempt++;
        s->st.groups_retried++;
        GW_LOG(GW_LOG_INFO, "store", NULL, "group of %zu retried (sqlstate %s)", g->n,
               res->sqlstate);
        if (gw_store_group_send(s, g, group_done_cb) == 0)
            return;
        err = GW_EUNAVAIL;
    }
    TAILQ_REMOVE(&s->groups, g, link);
    s->st.groups_inflight--;
    if (g->batch) {
        follow = group_new(s, g->n, true);
        /* without memory for a follow-up, items that need another round fail (ENOMEM below) */
    }

    /* [0] set the scope (store_int.h); the insert is the last (after the numbers' locks when
     * the keyring holds more than one suite: store_group.c) */
    if (err == 0 && res->nresults >= 2 && res->results[res->nresults - 1] != NULL &&
        PQnfields(res->results[res->nresults - 1]) == GW_STORE_GROUP_RESULT_COLS) {
        /* a resolved item may be freed at once (its request finished): track by index */
        bool answered[GW_STORE_GROUP_MAX] = {false};
        const PGresult *r = res->results[res->nresults - 1];
        int row, nrows = PQntuples(r);
        for (row = 0; row < nrows; row++) {
            size_t ord = row_ordinal(r, row, g->n);
            if (ord != 0 && !answered[ord - 1]) {
                struct gw_store_item *it = g->items[ord - 1];
                answered[ord - 1] = true;
                /* the fast path takes the created waybill's copy before the item may be freed */
                if (g->fast > 0 && PQgetlength(r, row, 1) == 1 && PQgetvalue(r, row, 1)[0] != 0 &&
                    fast_take(it, r, row, &fi[nf]))
                    nf++;
                item_outcome(it, r, row);
            }
        }
        for (i = 0; i < g->n; i++) {
            if (answered[i])
                continue;
            if (g->batch && follow == NULL)
                item_resolve(g->items[i], GW_ENOMEM, 0, NULL);
            else
                item_again(s, g->items[i], follow);
        }
    } else if (err == 0) {
        for (i = 0; i < g->n; i++)
            item_resolve(g->items[i], GW_EINTERNAL, 0, NULL);
    } else if (err == GW_EINTERNAL && !retryable(res->sqlstate) && g->n > 1) {
        /* the database refused a row of the group: every waybill goes again on its own, so the
         * one it refuses fails alone (a group of one that fails is resolved below) */
        GW_LOG(GW_LOG_WARN, "store", NULL, "group of %zu refused (sqlstate %s): storing singly",
               g->n, res->sqlstate ? res->sqlstate : "?");
        fast_finish(s, g, NULL, 0); /* the singles reserve again */
        for (i = 0; i < g->n; i++) {
            struct gw_store_group *one = group_new(s, 1, g->batch);
            if (one == NULL) {
                item_resolve(g->items[i], GW_ENOMEM, 0, NULL);
                continue;
            }
            one->items[one->n++] = g->items[i];
            group_start(s, one);
        }
    } else if (err == GW_EINTERNAL && !retryable(res->sqlstate)) {
        char idtext[37];
        gw_store_id_text(g->items[0]->id, idtext);
        GW_LOG(GW_LOG_WARN, "store", NULL, "record %s refused (sqlstate %s)", idtext,
               res->sqlstate ? res->sqlstate : "?");
        item_resolve(g->items[0],
                     res->sqlstate && strcmp(res->sqlstate, GW_STORE_KEK_RETIRED) == 0
                         ? GW_EPRECOND
                         : GW_EINTERNAL,
                     0, NULL);
    } else {
        if (err == GW_EINTERNAL)
            err = retryable(res->sqlstate) ? GW_EUNAVAIL : GW_EINTERNAL;
        for (i = 0; i < g->n; i++)
            item_resolve(g->items[i], err, 0, NULL);
    }
    fast_finish(s, g, fi, nf);
    gw_free(g);
    if (follow != NULL) {
        if (follow->n > 0)
            group_start(s, follow);
        else
            gw_free(follow);
    }
    schedule_flush(s);
}

/* ---- public: lifecycle ---- */

struct gw_store *gw_store_new(struct gw_db *db)
{
    struct gw_store *s;
    struct event_base *base = gw_db_base(db);

    if (db == NULL || base == NULL)
        return NULL;
    s = gw_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->db = db;
    TAILQ_INIT(&s->pending);
    TAILQ_INIT(&s->reqs);
    TAILQ_INIT(&s->groups);
    s->group_sql = gw_store_group_sql_new();
    s->get_sql = gw_store_get_sql_new();
    s->ev_flush = event_new(base, -1, 0, on_flush, s);
    if (s->group_sql == NULL || s->get_sql == NULL || s->ev_flush == NULL) {
        gw_store_free(s);
        return NULL;
    }
    /* Prepared once per connection: the insert is parsed and planned once, not per waybill.
     * A failure only costs speed: db.c then sends the text. */
    if (gw_db_prepare(db, s->group_sql) != 0 || gw_db_prepare(db, s->get_sql) != 0 ||
        gw_db_prepare(db, GW_STORE_SCOPE_SQL) != 0 ||
        gw_db_prepare(db, GW_STORE_SCOPE_INDEXED_SQL) != 0)
        GW_LOG(GW_LOG_WARN, "store", NULL, "statements not prepared");
    return s;
}

void gw_store_free(struct gw_store *s)
{
    struct gw_store_group *g;
    struct gw_store_req *r;

    if (s == NULL)
        return;
    while ((g = TAILQ_FIRST(&s->groups)) != NULL) {
        TAILQ_REMOVE(&s->groups, g, link);
        gw_db_cancel(g->dbreq);
        gw_free(g);
    }
    while ((r = TAILQ_FIRST(&s->reqs)) != NULL) {
        gw_db_cancel(r->dbreq);
        gw_store_req_free(r);
    }
    gw_store_scanq_free(s->scans);
    if (s->ev_flush != NULL)
        event_free(s->ev_flush);
    gw_free(s->group_sql);
    gw_free(s->get_sql);
    gw_free(s);
}

void gw_store_stats(const struct gw_store *s, struct gw_store_stats *out)
{
    if (out == NULL)
        return;
    if (s == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = s->st;
}

/* ---- public: submits ---- */

static struct gw_store_req *submit_req_new(struct gw_store *s, enum gw_store_kind kind,
                                           const struct gw_sealed_waybill *w, size_t n, void *arg,
                                           int *err)
{
    struct gw_store_req *r = gw_store_req_new(s, kind, arg);
    size_t i;

    *err = GW_ENOMEM;
    if (r == NULL)
        return NULL;
    r->items = gw_calloc(n, sizeof(*r->items));
    r->results = gw_calloc(n, sizeof(*r->results));
    if (r->items == NULL || r->results == NULL)
        goto fail;
    r->n = n;
    r->nleft = n;
    for (i = 0; i < n; i++) {
        *err = gw_store_item_new(&w[i], &r->items[i]);
        if (*err != 0)
            goto fail;
        r->items[i]->req = r;
        r->items[i]->index = i;
        /* for the fast path; without memory for it, the claim sends this one */
        if (s->fast.reserve != NULL)
            r->items[i]->sealed = gw_store_sealed_dup(&w[i]);
    }
    *err = 0;
    return r;
fail:
    gw_store_req_free(r);
    return NULL;
}

int gw_store_submit(struct gw_store *s, const struct gw_sealed_waybill *w, gw_store_submit_cb cb,
                    void *arg, struct gw_store_req **out)
{
    struct gw_store_req *r;
    int err;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || w == NULL)
        return GW_EINVAL;
    if (!gw_db_ready(s->db))
        return GW_EUNAVAIL;
    if (s->st.queued >= STORE_QUEUE_MAX)
        return GW_EQUEUEFULL;
    r = submit_req_new(s, GW_STORE_RK_SUBMIT, w, 1, arg, &err);
    if (r == NULL)
        return err;
    r->cb.submit = cb;
    r->items[0]->queued = true;
    TAILQ_INSERT_TAIL(&s->pending, r->items[0], link);
    s->st.queued++;
    s->st.submits++;
    /* Flushed from the loop, after every submit that arrived in this loop pass has queued. */
    schedule_flush(s);
    if (out != NULL)
        *out = r;
    return 0;
}

int gw_store_submit_batch(struct gw_store *s, const struct gw_sealed_waybill *items, size_t n,
                          gw_store_batch_cb cb, void *arg, struct gw_store_req **out)
{
    struct gw_store_req *r;
    struct gw_store_group *g;
    size_t i;
    int err;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || items == NULL || n == 0)
        return GW_EINVAL;
    if (n > GW_STORE_GROUP_MAX)
        return GW_ETOOBIG;
    if (!gw_db_ready(s->db))
        return GW_EUNAVAIL;
    r = submit_req_new(s, GW_STORE_RK_BATCH, items, n, arg, &err);
    if (r == NULL)
        return err;
    r->cb.batch = cb;
    g = group_new(s, n, true);
    if (g == NULL) {
        gw_store_req_free(r);
        return GW_ENOMEM;
    }
    for (i = 0; i < n; i++)
        g->items[g->n++] = r->items[i];
    qsort(g->items, g->n, sizeof(g->items[0]), item_cmp);
    fast_reserve(s, g);
    err = gw_store_group_send(s, g, group_done_cb);
    if (err != 0) {
        fast_finish(s, g, NULL, 0);
        gw_free(g);
        gw_store_req_free(r);
        return err;
    }
    TAILQ_INSERT_TAIL(&s->groups, g, link);
    s->st.groups_inflight++;
    s->st.submits += n;
    if (out != NULL)
        *out = r;
    return 0;
}

/* ---- public: cancel ---- */

void gw_store_cancel(struct gw_store_req *r)
{
    struct gw_store *s;
    size_t i, n;

    if (r == NULL || r->cancelled)
        return;
    s = r->store;
    r->cancelled = true;
    if (r->kind != GW_STORE_RK_SUBMIT && r->kind != GW_STORE_RK_BATCH) {
        gw_db_cancel(r->dbreq);
        gw_store_req_free(r);
        return;
    }
    /* Queued items leave now; items in a group in flight are resolved (silently) when it ends.
     * The last resolution frees r. */
    n = r->n;
    for (i = 0; i < n; i++) {
        struct gw_store_item *it = r->items[i];
        bool last;
        if (!it->queued)
            continue;
        TAILQ_REMOVE(&s->pending, it, link);
        it->queued = false;
        s->st.queued--;
        last = r->nleft == 1;
        item_resolve(it, GW_ECANCELLED, 0, NULL);
        if (last)
            return; /* r is freed */
    }
}
