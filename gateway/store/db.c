/* db.c: the asynchronous PostgreSQL pool: its slots, a bounded FIFO of requests waiting for a slot,
 * the requests' single allocations and the public API (one connection's state machine is in
 * db_conn.c). Invariants: a request's callback runs at most once, never from inside
 * gw_db_exec/gw_db_cancel, never after gw_db_cancel; a request is on exactly one list (the pool
 * queue or one connection's in-flight FIFO, whose order is the order of results on the wire). */
#include "db.h"

#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "config.h"
#include "db_int.h"
#include "log.h"

/* ---- dispatch ---- */

/* Callers' requests in flight on c (its own, internal ones ride along in the pipeline). */
static unsigned callers_inflight(const struct conn *c)
{
    return c->ninflight - c->ninternal;
}

/* True while a GW_DB_SLOW request is in flight on c: nothing is sent behind it. */
static bool holds_slow(const struct conn *c)
{
    const struct gw_db_req *r;

    TAILQ_FOREACH(r, &c->inflight, link)
    if (r->slow)
        return true;
    return false;
}

/* A request in flight this long at the head of a connection's pipeline is taken to wait (on a
 * lock: an operator's LOCK TABLE, a row another transaction holds), and the connection to be held
 * up with it: no statement of the gateway's own runs this long unless the database is overloaded,
 * when every connection is. */
#define DB_STALL_MS 1000u

/* How long c's oldest request has been in flight (0: none is). */
static uint64_t head_age(const struct conn *c, uint64_t now)
{
    const struct gw_db_req *h = TAILQ_FIRST(&c->inflight);

    return h != NULL && now > h->sent_ms ? now - h->sent_ms : 0;
}

/* c's oldest request in flight was sent after best's (a connection with none counts as newest). */
static bool head_newer(const struct conn *c, const struct conn *best)
{
    const struct gw_db_req *hc = TAILQ_FIRST(&c->inflight), *hb = TAILQ_FIRST(&best->inflight);

    return hb != NULL && (hc == NULL || hc->sent > hb->sent);
}

/* c is a better place than best for the next request: not held up when best is; else the fewer
 * callers' requests in flight; else, as busy, the newer oldest request (what is pipelined behind
 * a request waits for it). */
static bool better(const struct conn *c, const struct conn *best, uint64_t now)
{
    bool cs = head_age(c, now) >= DB_STALL_MS, bs = head_age(best, now) >= DB_STALL_MS;

    if (cs != bs)
        return bs;
    if (callers_inflight(c) != callers_inflight(best))
        return callers_inflight(c) < callers_inflight(best);
    return head_newer(c, best);
}

/* The best connection with room for a request (better), never one running a slow request; for
 * a slow request, one with no caller's request in flight. So a request goes behind one that has
 * waited DB_STALL_MS only when every connection is held up (or full), and behind an older one
 * only when the others are busier. NULL when there is none. */
static struct conn *pick_conn(struct gw_db *db, bool slow)
{
    struct conn *best = NULL;
    uint64_t now = gw_clock_ms();
    unsigned i;

    for (i = 0; i < db->pool_size; i++) {
        struct conn *c = &db->conns[i];
        if (c->state != CONN_READY || !c->pinned || callers_inflight(c) >= db->depth ||
            (slow && callers_inflight(c) > 0) || holds_slow(c))
            continue;
        if (best == NULL || better(c, best, now))
            best = c;
    }
    return best;
}

/* Sends queued requests, in order, while connections have room. A slow request that finds no
 * free connection stays queued and the requests after it go on; an ordinary one that finds no
 * room ends the pass (none after it would find any). */
static void dispatch(struct gw_db *db)
{
    struct gw_db_req *r, *next;
    struct conn *c;

    for (r = TAILQ_FIRST(&db->queue); r != NULL; r = next) {
        next = TAILQ_NEXT(r, link);
        c = pick_conn(db, r->slow);
        if (c == NULL) {
            if (!r->slow)
                break;
            continue;
        }
        TAILQ_REMOVE(&db->queue, r, link);
        db->nqueued--;
        (void)gw_db_conn_send(c, r);
    }
}

/* ---- public API ---- */

struct gw_db *gw_db_new(struct event_base *base, const struct gw_config *cfg)
{
    struct gw_db *db = NULL;
    unsigned i;

    if (base == NULL || cfg == NULL || cfg->db_conninfo == NULL)
        return NULL;
    db = gw_calloc(1, sizeof(*db));
    if (db == NULL)
        return NULL;
    db->dispatch = dispatch;
    db->base = base;
    TAILQ_INIT(&db->queue);
    db->pool_size = cfg->db_pool_size ? cfg->db_pool_size : 1;
    db->depth = cfg->db_pipeline_depth ? cfg->db_pipeline_depth : 1;
    db->queue_max = cfg->db_queue_max;
    /* by default a sixteenth of the queue, and at least what the pool runs at once: one
     * certificate cannot fill the queue, and a client's ordinary concurrency (64 calls at once,
     * whose identity steps may all look the certificate up when its cache entry ends) fits */
    db->share = cfg->db_queue_share;
    if (db->share == 0) {
        db->share = db->queue_max / 16u;
        if (db->share < db->pool_size * db->depth)
            db->share = db->pool_size * db->depth;
    }
    db->connect_timeout_ms = cfg->db_connect_timeout_ms;
    db->reconnect_max_ms = cfg->db_reconnect_max_ms;
    db->schema_version = GW_DB_SCHEMA_UNKNOWN;
    db->conninfo = gw_strdup(cfg->db_conninfo);
    db->conns = gw_calloc(db->pool_size, sizeof(*db->conns));
    if (db->conninfo == NULL || db->conns == NULL)
        goto fail;
    for (i = 0; i < db->pool_size; i++) {
        struct conn *c = &db->conns[i];
        c->db = db;
        c->slot = i;
        c->state = CONN_DOWN;
        TAILQ_INIT(&c->inflight);
        c->ev_timer = evtimer_new(base, gw_db_on_timer, c);
        if (c->ev_timer == NULL)
            goto fail;
    }
    return db;

fail:
    gw_db_free(db);
    return NULL;
}

int gw_db_start(struct gw_db *db)
{
    unsigned i;

    if (db == NULL)
        return GW_EINVAL;
    if (db->started)
        return 0;
    db->started = true;
    for (i = 0; i < db->pool_size; i++)
        gw_db_conn_connect(&db->conns[i]);
    return 0;
}

void gw_db_free(struct gw_db *db)
{
    struct gw_db_req *r;
    unsigned i;
    int p;

    if (db == NULL)
        return;
    if (db->conns != NULL) {
        for (i = 0; i < db->pool_size; i++) {
            struct conn *c = &db->conns[i];
            gw_db_conn_close_pg(c);
            if (c->ev_timer != NULL)
                event_free(c->ev_timer);
            while ((r = TAILQ_FIRST(&c->inflight)) != NULL) {
                TAILQ_REMOVE(&c->inflight, r, link);
                gw_db_req_free(r);
            }
        }
    }
    while ((r = TAILQ_FIRST(&db->queue)) != NULL) {
        TAILQ_REMOVE(&db->queue, r, link);
        gw_db_req_free(r);
    }
    gw_db_owner_free_all(db); /* after the requests, which gave their charges back */
    for (p = 0; p < db->nprepared; p++)
        gw_free(db->prepared[p].sql);
    gw_free(db->conns);
    gw_free(db->conninfo);
    gw_free(db->session_sql);
    gw_free(db);
}

int gw_db_prepare(struct gw_db *db, const char *sql)
{
    struct prepared *p;
    unsigned i;

    if (db == NULL || sql == NULL)
        return GW_EINVAL;
    if (gw_db_find_prepared(db, sql) >= 0)
        return 0;
    if (db->nprepared >= DB_PREPARED_MAX)
        return GW_ETOOBIG;
    p = &db->prepared[db->nprepared];
    p->sql = gw_strdup(sql);
    if (p->sql == NULL)
        return GW_ENOMEM;
    snprintf(p->name, sizeof(p->name), "gw_p%d", db->nprepared);
    db->nprepared++;
    /* to connections set up already: one still setting up would have it behind its session
     * statement, ready with a prepare out (it sends this text unprepared until it reconnects) */
    for (i = 0; i < db->pool_size; i++)
        if (db->conns[i].state == CONN_READY && db->conns[i].pinned)
            gw_db_conn_send_prepare(&db->conns[i], db->nprepared - 1);
    return 0;
}

/* How many requests may wait when one with these flags arrives: the reserve on top of queue_max
 * is the audit writer's alone, so nothing else can fill it. */
static unsigned queue_bound(const struct gw_db *db, unsigned flags)
{
    return db->queue_max + ((flags & GW_DB_RESERVED) != 0 ? GW_DB_QUEUE_RESERVE : 0);
}

int gw_db_exec(struct gw_db *db, const struct gw_db_stmt *stmts, int nstmts, unsigned flags,
               gw_db_done_cb cb, void *arg, struct gw_db_req **out)
{
    struct gw_db_req *r;
    struct conn *c;
    int err;

    /* Every request is one implicit transaction: in pipeline mode PostgreSQL runs everything
     * between two sync points as one transaction (committed at the sync, rolled back when a
     * statement fails), so GW_DB_TXN needs no BEGIN/COMMIT on the wire. An explicit BEGIN block
     * that failed would outlive its sync and break the next request on the connection. */
    if (out != NULL)
        *out = NULL;
    if (db == NULL || stmts == NULL || nstmts <= 0)
        return GW_EINVAL;
    if (db->nready == 0)
        return GW_EUNAVAIL;
    c = TAILQ_EMPTY(&db->queue) ? pick_conn(db, (flags & GW_DB_SLOW) != 0) : NULL;
    if (c == NULL && db->nqueued >= queue_bound(db, flags))
        return GW_EQUEUEFULL;
    r = gw_db_req_new(stmts, nstmts, &err);
    if (r == NULL)
        return err;
    r->db = db;
    r->cb = cb;
    r->arg = arg;
    r->slow = (flags & GW_DB_SLOW) != 0;
    err = gw_db_owner_charge(db, r, flags);
    if (err != 0) {
        gw_db_req_free(r);
        return err;
    }
    if (out != NULL)
        *out = r;
    if (c != NULL) {
        (void)gw_db_conn_send(c, r);
    } else {
        r->queued = true;
        TAILQ_INSERT_TAIL(&db->queue, r, link);
        db->nqueued++;
        dispatch(db); /* a slow request waiting at the head must not hold this one back */
    }
    return 0;
}

void gw_db_cancel(struct gw_db_req *req)
{
    if (req == NULL)
        return;
    if (req->queued) {
        TAILQ_REMOVE(&req->db->queue, req, link);
        req->db->nqueued--;
        gw_db_req_free(req);
        return;
    }
    req->cancelled = true;
    req->cb = NULL;
}

bool gw_db_rebind(struct gw_db_req *req, gw_db_done_cb cb, void *arg)
{
    if (req == NULL)
        return false;
    if (req->queued) {
        gw_db_cancel(req);
        return false;
    }
    req->cb = cb;
    req->arg = arg;
    return true;
}

int gw_db_set_session_sql(struct gw_db *db, const char *sql)
{
    char *copy = NULL;

    if (db == NULL)
        return GW_EINVAL;
    if (sql != NULL && (copy = gw_strdup(sql)) == NULL)
        return GW_ENOMEM;
    gw_free(db->session_sql);
    db->session_sql = copy;
    return 0;
}

int gw_db_set_schema_min(struct gw_db *db, int min_version)
{
    if (db == NULL || min_version < 0)
        return GW_EINVAL;
    db->schema_min = min_version;
    return 0;
}

int gw_db_schema_version(const struct gw_db *db)
{
    return db != NULL ? db->schema_version : GW_DB_SCHEMA_UNKNOWN;
}

int gw_db_schema_min(const struct gw_db *db)
{
    return db != NULL ? db->schema_min : 0;
}

bool gw_db_schema_behind(const struct gw_db *db)
{
    return db != NULL && db->schema_min > 0 && db->schema_version != GW_DB_SCHEMA_UNKNOWN &&
           db->schema_version < db->schema_min;
}

unsigned gw_db_schema_refusals(const struct gw_db *db)
{
    return db != NULL ? db->schema_refusals : 0;
}

unsigned gw_db_session_failures(const struct gw_db *db)
{
    return db != NULL ? db->session_failures : 0;
}

bool gw_db_ready(const struct gw_db *db)
{
    return db != NULL && db->nready > 0;
}

unsigned gw_db_pending(const struct gw_db *db)
{
    unsigned n, i;

    if (db == NULL)
        return 0;
    n = db->nqueued;
    for (i = 0; i < db->pool_size; i++)
        n += callers_inflight(&db->conns[i]);
    return n;
}

unsigned gw_db_nready(const struct gw_db *db)
{
    return db != NULL ? db->nready : 0;
}

unsigned gw_db_pool_size(const struct gw_db *db)
{
    return db != NULL ? db->pool_size : 0;
}

struct event_base *gw_db_base(const struct gw_db *db)
{
    return db != NULL ? db->base : NULL;
}

const char *gw_db_conninfo(const struct gw_db *db)
{
    return db != NULL ? db->conninfo : NULL;
}
