/* db.c: the asynchronous PostgreSQL pool: per-slot libpq connections in pipeline mode driven by
 * libevent, a bounded FIFO of requests waiting for a slot, reconnect with jittered backoff.
 * Invariants: no call blocks (non-blocking connect and I/O, PQgetResult only when !PQisBusy); a
 * request's callback runs at most once, never from inside gw_db_exec/gw_db_cancel, never after
 * gw_db_cancel; a request is on exactly one list (the pool queue or one connection's in-flight
 * FIFO, whose order is the order of results on the wire). */
#include "db.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/util.h>

#include "alloc.h"
#include "config.h"
#include "log.h"

#define DB_BACKOFF_MIN_MS 100u
#define DB_PREPARED_MAX 16

enum conn_state {
    CONN_DOWN,       /* not connected; ev_timer may hold a reconnect */
    CONN_CONNECTING, /* PQconnectPoll in progress; ev_timer holds the connect timeout */
    CONN_READY,      /* in pipeline mode, takes requests */
    CONN_FAILING,    /* a send failed; ev_timer is active to tear it down from the loop */
};

/* A statement as copied into the request's single allocation. */
struct req_stmt {
    const char *sql;
    const char *const *values;
    const int *lengths;
    const int *formats;
    int nparams;
    int result_format;
    int prepare_slot; /* >= 0: this is the PQsendPrepare of db->prepared[slot] (internal) */
};

struct conn;

struct gw_db_req {
    TAILQ_ENTRY(gw_db_req) link;
    struct gw_db *db;
    struct conn *conn; /* NULL while queued */
    gw_db_done_cb cb;
    void *arg;
    bool queued;
    bool cancelled;
    int nstmts;
    struct req_stmt *stmts;
    PGresult **results;
    size_t alloc_size;
    /* reading state */
    int cursor;      /* statement whose results are being read; == nstmts: waiting for the sync */
    bool cur_seen;   /* a result for stmts[cursor] arrived; the next NULL ends it */
    int failed_stmt; /* -1 or index */
    char sqlstate[6];
    char *errmsg;
};

TAILQ_HEAD(req_list, gw_db_req);

struct conn {
    struct gw_db *db;
    unsigned slot;
    enum conn_state state;
    PGconn *pg;
    struct event *ev_conn;  /* connect phase: one-shot on the current PQsocket */
    struct event *ev_rd;    /* ready: persistent read */
    struct event *ev_wr;    /* ready: one-shot write, armed while PQflush has more to send */
    struct event *ev_timer; /* connect timeout, reconnect backoff, deferred teardown */
    PostgresPollingStatusType poll;
    unsigned attempt; /* failed connects in a row (backoff exponent) */
    unsigned ninflight;
    struct req_list inflight;
    uint32_t prepared_ok; /* bit i: db->prepared[i] is prepared on this connection */
};

struct prepared {
    char *sql;
    char name[16];
};

struct gw_db {
    struct event_base *base;
    char *conninfo;
    unsigned pool_size;
    unsigned depth;
    unsigned queue_max;
    uint32_t connect_timeout_ms;
    uint32_t reconnect_max_ms;
    bool started;
    unsigned nready;
    unsigned nqueued;
    struct req_list queue;
    struct prepared prepared[DB_PREPARED_MAX];
    int nprepared;
    struct conn *conns;
};

static void conn_connect(struct conn *c);
static void conn_teardown(struct conn *c);
static void dispatch(struct gw_db *db);

static void quiet_notice(void *arg, const char *message)
{
    /* Server notices may quote values: never printed. */
    (void)arg;
    (void)message;
}

static void ms_to_tv(uint32_t ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (long)(ms % 1000) * 1000;
}

static void req_free(struct gw_db_req *r)
{
    int i;

    if (r == NULL)
        return;
    for (i = 0; i < r->nstmts; i++)
        PQclear(r->results[i]);
    gw_free(r->errmsg);
    /* The copied parameters may be ciphertext, blind indexes or worse: wipe them. */
    gw_free_wipe(r, r->alloc_size);
}

/* Runs the request's callback (unless cancelled) and frees it. r is on no list. */
static void req_complete(struct gw_db_req *r, int err)
{
    struct gw_db_result res;

    if (!r->cancelled && r->cb != NULL) {
        if (err == GW_EUNAVAIL) {
            int i;
            for (i = 0; i < r->nstmts; i++) {
                PQclear(r->results[i]);
                r->results[i] = NULL;
            }
            r->failed_stmt = -1;
        }
        res.nresults = r->nstmts;
        res.results = r->results;
        res.failed_stmt = err == GW_EUNAVAIL ? -1 : r->failed_stmt;
        res.sqlstate = (err != GW_EUNAVAIL && r->failed_stmt >= 0 && r->sqlstate[0] != '\0')
                           ? r->sqlstate
                           : NULL;
        res.errmsg = err == GW_EUNAVAIL ? NULL : r->errmsg;
        r->cb(r->arg, err, &res);
    }
    req_free(r);
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* Copies the statements into one allocation. Returns NULL with *err set. */
static struct gw_db_req *req_new(const struct gw_db_stmt *stmts, int nstmts, int *err)
{
    size_t nparams_total = 0, nbytes = 0, size, off_ptr, off_int, off_chr;
    struct gw_db_req *r;
    char *base, *chr;
    const char **vals;
    int *ints;
    int i, j;

    *err = GW_EINVAL;
    if (stmts == NULL || nstmts <= 0 || nstmts > 65535)
        return NULL;
    for (i = 0; i < nstmts; i++) {
        const struct gw_db_stmt *s = &stmts[i];
        if (s->sql == NULL || s->nparams < 0 || s->nparams > 65535 ||
            (s->nparams > 0 && s->values == NULL))
            return NULL;
        nbytes += strlen(s->sql) + 1;
        for (j = 0; j < s->nparams; j++) {
            bool bin = s->formats != NULL && s->formats[j] != 0;
            if (s->values[j] == NULL)
                continue;
            if (bin && (s->lengths == NULL || s->lengths[j] < 0))
                return NULL;
            nbytes += (bin ? (size_t)s->lengths[j] : strlen(s->values[j])) + 1;
        }
        nparams_total += (size_t)s->nparams;
    }
    off_ptr = align_up(sizeof(*r), 16);
    size = off_ptr + (size_t)nstmts * (sizeof(struct req_stmt) + sizeof(PGresult *)) +
           nparams_total * sizeof(char *);
    off_int = align_up(size, sizeof(int));
    size = off_int + nparams_total * 2 * sizeof(int);
    off_chr = size;
    size += nbytes;

    *err = GW_ENOMEM;
    base = gw_calloc(1, size);
    if (base == NULL)
        return NULL;
    r = (struct gw_db_req *)base;
    r->alloc_size = size;
    r->nstmts = nstmts;
    r->failed_stmt = -1;
    r->stmts = (struct req_stmt *)(base + off_ptr);
    r->results = (PGresult **)(r->stmts + nstmts);
    vals = (const char **)(r->results + nstmts);
    ints = (int *)(base + off_int);
    chr = base + off_chr;
    for (i = 0; i < nstmts; i++) {
        const struct gw_db_stmt *s = &stmts[i];
        struct req_stmt *d = &r->stmts[i];
        size_t len = strlen(s->sql) + 1;
        int *lens = ints, *fmts = ints + s->nparams;

        memcpy(chr, s->sql, len);
        d->sql = chr;
        chr += len;
        d->nparams = s->nparams;
        d->result_format = s->result_format;
        d->prepare_slot = -1;
        d->values = vals;
        d->lengths = lens;
        d->formats = fmts;
        for (j = 0; j < s->nparams; j++) {
            bool bin = s->formats != NULL && s->formats[j] != 0;
            fmts[j] = bin ? 1 : 0;
            if (s->values[j] == NULL) {
                vals[j] = NULL;
                lens[j] = 0;
                continue;
            }
            len = bin ? (size_t)s->lengths[j] : strlen(s->values[j]);
            memcpy(chr, s->values[j], len);
            chr[len] = '\0';
            vals[j] = chr;
            lens[j] = (int)len;
            chr += len + 1;
        }
        vals += s->nparams;
        ints += 2 * s->nparams;
    }
    *err = 0;
    return r;
}

/* ---- connection lifecycle ---- */

static uint32_t backoff_ms(struct conn *c)
{
    uint32_t max =
        c->db->reconnect_max_ms < DB_BACKOFF_MIN_MS ? DB_BACKOFF_MIN_MS : c->db->reconnect_max_ms;
    uint32_t d = DB_BACKOFF_MIN_MS;
    uint32_t rnd = 0;
    unsigned i;

    for (i = 0; i < c->attempt && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    if (c->attempt < 32)
        c->attempt++;
    /* Jitter: somewhere in [d/2, d], so that a restarted server is not hit by every slot of every
     * gateway in the same millisecond. Not security relevant. */
    evutil_secure_rng_get_bytes(&rnd, sizeof(rnd));
    return d / 2 + rnd % (d / 2 + 1);
}

static void conn_schedule_reconnect(struct conn *c)
{
    struct timeval tv;
    uint32_t ms = backoff_ms(c);

    c->state = CONN_DOWN;
    ms_to_tv(ms, &tv);
    evtimer_add(c->ev_timer, &tv);
    GW_LOG(GW_LOG_DEBUG, "db", NULL, "connection %u: reconnect in %u ms", c->slot, ms);
}

/* Leaves CONN_READY (if it was) so that no new request is given to c. */
static void conn_mark_down(struct conn *c, enum conn_state st)
{
    if (c->state == CONN_READY && c->db->nready > 0)
        c->db->nready--;
    c->state = st;
}

/* A send failed inside a caller's gw_db_exec: tear down from the loop, not from the caller. */
static void conn_fail_later(struct conn *c)
{
    if (c->state == CONN_FAILING)
        return;
    conn_mark_down(c, CONN_FAILING);
    evtimer_del(c->ev_timer);
    event_active(c->ev_timer, EV_TIMEOUT, 0);
}

static void conn_close_pg(struct conn *c)
{
    if (c->ev_conn != NULL) {
        event_free(c->ev_conn);
        c->ev_conn = NULL;
    }
    if (c->ev_rd != NULL) {
        event_free(c->ev_rd);
        c->ev_rd = NULL;
    }
    if (c->ev_wr != NULL) {
        event_free(c->ev_wr);
        c->ev_wr = NULL;
    }
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->prepared_ok = 0;
}

/* The connection broke: every request in flight on it (and, when no connection is left, every
 * queued one) fails with GW_EUNAVAIL; the slot reconnects after a backoff. */
static void conn_teardown(struct conn *c)
{
    struct gw_db *db = c->db;
    struct req_list failed;
    struct gw_db_req *r;
    bool was_up = c->state == CONN_READY || c->state == CONN_FAILING;

    conn_mark_down(c, CONN_DOWN);
    evtimer_del(c->ev_timer);
    conn_close_pg(c);
    if (was_up)
        GW_LOG(GW_LOG_WARN, "db", NULL, "connection %u lost (%u requests in flight)", c->slot,
               c->ninflight);

    TAILQ_INIT(&failed);
    TAILQ_CONCAT(&failed, &c->inflight, link);
    c->ninflight = 0;
    if (db->nready == 0) {
        TAILQ_FOREACH(r, &db->queue, link)
        r->queued = false;
        TAILQ_CONCAT(&failed, &db->queue, link);
        db->nqueued = 0;
    }
    TAILQ_FOREACH(r, &failed, link)
    r->conn = NULL;
    conn_schedule_reconnect(c);

    /* Callbacks may gw_db_exec (the slot is down now) or cancel requests still on `failed`
     * (those are not queued, so cancel only marks them). */
    while ((r = TAILQ_FIRST(&failed)) != NULL) {
        TAILQ_REMOVE(&failed, r, link);
        req_complete(r, GW_EUNAVAIL);
    }
}

static void conn_connect_failed(struct conn *c, const char *why)
{
    /* The first failure in a row is a warning; the retries that follow are debug noise. */
    if (c->attempt == 0)
        GW_LOG(GW_LOG_WARN, "db", NULL, "connection %u: connect failed (%s)", c->slot, why);
    else
        GW_LOG(GW_LOG_DEBUG, "db", NULL, "connection %u: connect failed again (%s)", c->slot, why);
    evtimer_del(c->ev_timer);
    conn_close_pg(c);
    conn_schedule_reconnect(c);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg);

/* Waits for the socket libpq names now (it can change between PQconnectPoll calls). */
static void conn_wait_poll(struct conn *c)
{
    int fd = PQsocket(c->pg);
    short ev = c->poll == PGRES_POLLING_READING ? EV_READ : EV_WRITE;

    if (c->ev_conn != NULL) {
        event_free(c->ev_conn);
        c->ev_conn = NULL;
    }
    if (fd < 0) {
        conn_connect_failed(c, "no socket");
        return;
    }
    c->ev_conn = event_new(c->db->base, fd, ev, on_connect_io, c);
    if (c->ev_conn == NULL || event_add(c->ev_conn, NULL) != 0) {
        conn_connect_failed(c, "event setup");
        return;
    }
}

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static int conn_send(struct conn *c, struct gw_db_req *r);

/* Queues on c the PQsendPrepare of prepared[slot] as an internal request. */
static void conn_send_prepare(struct conn *c, int slot)
{
    struct gw_db_stmt st = {.sql = c->db->prepared[slot].sql};
    struct gw_db_req *r;
    int err;

    r = req_new(&st, 1, &err);
    if (r == NULL)
        return; /* without it the connection sends the text: slower, not wrong */
    r->db = c->db;
    r->stmts[0].prepare_slot = slot;
    (void)conn_send(c, r);
}

static void conn_established(struct conn *c)
{
    int fd = PQsocket(c->pg);
    int i;

    if (c->ev_conn != NULL) {
        event_free(c->ev_conn);
        c->ev_conn = NULL;
    }
    evtimer_del(c->ev_timer);
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        conn_connect_failed(c, "pipeline setup");
        return;
    }
    c->ev_rd = event_new(c->db->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->ev_wr = event_new(c->db->base, fd, EV_WRITE, on_write, c);
    if (c->ev_rd == NULL || c->ev_wr == NULL || event_add(c->ev_rd, NULL) != 0) {
        conn_connect_failed(c, "event setup");
        return;
    }
    c->state = CONN_READY;
    c->attempt = 0;
    c->prepared_ok = 0;
    c->db->nready++;
    GW_LOG(GW_LOG_INFO, "db", NULL, "connection %u up (server %d)", c->slot,
           PQserverVersion(c->pg));
    for (i = 0; i < c->db->nprepared && c->state == CONN_READY; i++)
        conn_send_prepare(c, i);
    dispatch(c->db);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    c->poll = PQconnectPoll(c->pg);
    switch (c->poll) {
    case PGRES_POLLING_OK:
        conn_established(c);
        break;
    case PGRES_POLLING_FAILED:
        conn_connect_failed(c, "server refused or unreachable");
        break;
    default:
        conn_wait_poll(c);
        break;
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    switch (c->state) {
    case CONN_DOWN:
        conn_connect(c);
        break;
    case CONN_CONNECTING:
        conn_connect_failed(c, "timeout");
        break;
    case CONN_FAILING:
        conn_teardown(c);
        break;
    case CONN_READY:
        break;
    }
}

static void conn_connect(struct conn *c)
{
    const char *kw[] = {"dbname", "fallback_application_name", NULL};
    const char *val[] = {c->db->conninfo, "waygated", NULL};
    struct timeval tv;

    c->pg = PQconnectStartParams(kw, val, 1);
    if (c->pg == NULL) {
        conn_connect_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_connect_failed(c, "failed at start");
        return;
    }
    PQsetNoticeProcessor(c->pg, quiet_notice, NULL);
    c->state = CONN_CONNECTING;
    c->poll = PGRES_POLLING_WRITING;
    ms_to_tv(c->db->connect_timeout_ms ? c->db->connect_timeout_ms : 5000, &tv);
    evtimer_add(c->ev_timer, &tv);
    conn_wait_poll(c);
}

/* ---- sending ---- */

static int find_prepared(const struct gw_db *db, const char *sql)
{
    int i;

    for (i = 0; i < db->nprepared; i++)
        if (strcmp(db->prepared[i].sql, sql) == 0)
            return i;
    return -1;
}

static void conn_flush(struct conn *c)
{
    int rc = PQflush(c->pg);

    if (rc < 0) {
        conn_fail_later(c);
    } else if (rc > 0) {
        event_add(c->ev_wr, NULL);
        /* PQflush may have read input to avoid a deadlock: let the loop parse it. */
        event_active(c->ev_rd, EV_READ, 0);
    }
}

/* Puts r on c's in-flight FIFO and writes it to the pipeline. A failed send tears c down from
 * the loop (r then gets GW_EUNAVAIL). Returns 0. */
static int conn_send(struct conn *c, struct gw_db_req *r)
{
    int i;

    r->conn = c;
    r->queued = false;
    TAILQ_INSERT_TAIL(&c->inflight, r, link);
    c->ninflight++;
    for (i = 0; i < r->nstmts; i++) {
        const struct req_stmt *s = &r->stmts[i];
        int slot, ok;

        if (s->prepare_slot >= 0) {
            ok = PQsendPrepare(c->pg, c->db->prepared[s->prepare_slot].name, s->sql, 0, NULL);
        } else if ((slot = find_prepared(c->db, s->sql)) >= 0 &&
                   (c->prepared_ok & (1u << slot)) != 0) {
            ok = PQsendQueryPrepared(c->pg, c->db->prepared[slot].name, s->nparams, s->values,
                                     s->lengths, s->formats, s->result_format);
        } else {
            ok = PQsendQueryParams(c->pg, s->sql, s->nparams, NULL, s->values, s->lengths,
                                   s->formats, s->result_format);
        }
        if (!ok) {
            conn_fail_later(c);
            return 0;
        }
    }
    if (PQpipelineSync(c->pg) != 1) {
        conn_fail_later(c);
        return 0;
    }
    conn_flush(c);
    return 0;
}

static struct conn *pick_conn(struct gw_db *db)
{
    struct conn *best = NULL;
    unsigned i;

    for (i = 0; i < db->pool_size; i++) {
        struct conn *c = &db->conns[i];
        if (c->state != CONN_READY || c->ninflight >= db->depth)
            continue;
        if (best == NULL || c->ninflight < best->ninflight)
            best = c;
    }
    return best;
}

static void dispatch(struct gw_db *db)
{
    struct gw_db_req *r;
    struct conn *c;

    while ((r = TAILQ_FIRST(&db->queue)) != NULL && (c = pick_conn(db)) != NULL) {
        TAILQ_REMOVE(&db->queue, r, link);
        db->nqueued--;
        (void)conn_send(c, r);
    }
}

/* ---- receiving ---- */

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    int rc;

    (void)fd;
    (void)what;
    if (c->state != CONN_READY)
        return;
    rc = PQflush(c->pg);
    if (rc < 0) {
        conn_teardown(c);
        return;
    }
    if (rc > 0)
        event_add(c->ev_wr, NULL);
    event_active(c->ev_rd, EV_READ, 0);
}

static void prepared_done(struct conn *c, struct gw_db_req *r)
{
    int slot = r->stmts[0].prepare_slot;

    if (r->failed_stmt < 0) {
        c->prepared_ok |= 1u << slot;
    } else {
        GW_LOG(GW_LOG_WARN, "db", NULL, "connection %u: prepare of %s failed (sqlstate %s)",
               c->slot, c->db->prepared[slot].name, r->sqlstate);
    }
}

/* Stores one non-NULL result for the statement at r->cursor. */
static void take_result(struct gw_db_req *r, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    int i = r->cursor;

    r->cur_seen = true;
    if (st == PGRES_FATAL_ERROR && r->failed_stmt < 0) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        r->failed_stmt = i;
        if (state != NULL)
            snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", state);
        if (msg != NULL && !r->cancelled)
            r->errmsg = gw_strdup(msg);
    }
    if (st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED || r->failed_stmt >= 0 ||
        r->cancelled) {
        PQclear(res);
        if (r->failed_stmt >= 0 && r->failed_stmt <= i) {
            PQclear(r->results[i]);
            r->results[i] = NULL;
        }
        return;
    }
    PQclear(r->results[i]); /* a statement yields one result; keep the last if ever more */
    r->results[i] = res;
}

/* Reads every result available without blocking and completes requests whose sync arrived.
 * Returns false when c was torn down. */
static bool conn_process(struct conn *c)
{
    struct gw_db_req *r;
    int nulls = 0;

    while (c->state == CONN_READY && (r = TAILQ_FIRST(&c->inflight)) != NULL) {
        PGresult *res;

        if (PQstatus(c->pg) == CONNECTION_BAD)
            break;
        if (PQisBusy(c->pg))
            return true;
        res = PQgetResult(c->pg);
        if (r->cursor < r->nstmts) {
            if (res == NULL) {
                if (!r->cur_seen) {
                    if (++nulls > 2)
                        goto confused;
                    continue;
                }
                r->cursor++;
                r->cur_seen = false;
                nulls = 0;
                continue;
            }
            nulls = 0;
            if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                PQclear(res);
                goto confused;
            }
            take_result(r, res);
            continue;
        }
        if (res == NULL) {
            if (++nulls > 2)
                goto confused;
            continue;
        }
        nulls = 0;
        if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
            PQclear(res);
            goto confused;
        }
        PQclear(res);
        TAILQ_REMOVE(&c->inflight, r, link);
        c->ninflight--;
        r->conn = NULL;
        if (r->nstmts == 1 && r->stmts[0].prepare_slot >= 0)
            prepared_done(c, r);
        req_complete(r, r->failed_stmt >= 0 ? GW_EINTERNAL : 0);
        dispatch(c->db);
    }
    if (c->state == CONN_READY && PQstatus(c->pg) == CONNECTION_BAD) {
        conn_teardown(c);
        return false;
    }
    return true;

confused:
    GW_LOG(GW_LOG_ERROR, "db", NULL, "connection %u: results out of step with requests", c->slot);
    conn_teardown(c);
    return false;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state != CONN_READY)
        return;
    if (PQconsumeInput(c->pg) != 1) {
        conn_teardown(c);
        return;
    }
    if (!conn_process(c))
        return;
    /* With nothing in flight the server may still have told us it is going away. */
    if (c->state == CONN_READY && PQstatus(c->pg) == CONNECTION_BAD)
        conn_teardown(c);
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
    db->base = base;
    TAILQ_INIT(&db->queue);
    db->pool_size = cfg->db_pool_size ? cfg->db_pool_size : 1;
    db->depth = cfg->db_pipeline_depth ? cfg->db_pipeline_depth : 1;
    db->queue_max = cfg->db_queue_max;
    db->connect_timeout_ms = cfg->db_connect_timeout_ms;
    db->reconnect_max_ms = cfg->db_reconnect_max_ms;
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
        c->ev_timer = evtimer_new(base, on_timer, c);
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
        conn_connect(&db->conns[i]);
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
            conn_close_pg(c);
            if (c->ev_timer != NULL)
                event_free(c->ev_timer);
            while ((r = TAILQ_FIRST(&c->inflight)) != NULL) {
                TAILQ_REMOVE(&c->inflight, r, link);
                req_free(r);
            }
        }
    }
    while ((r = TAILQ_FIRST(&db->queue)) != NULL) {
        TAILQ_REMOVE(&db->queue, r, link);
        req_free(r);
    }
    for (p = 0; p < db->nprepared; p++)
        gw_free(db->prepared[p].sql);
    gw_free(db->conns);
    gw_free(db->conninfo);
    gw_free(db);
}

int gw_db_prepare(struct gw_db *db, const char *sql)
{
    struct prepared *p;
    unsigned i;

    if (db == NULL || sql == NULL)
        return GW_EINVAL;
    if (find_prepared(db, sql) >= 0)
        return 0;
    if (db->nprepared >= DB_PREPARED_MAX)
        return GW_ETOOBIG;
    p = &db->prepared[db->nprepared];
    p->sql = gw_strdup(sql);
    if (p->sql == NULL)
        return GW_ENOMEM;
    snprintf(p->name, sizeof(p->name), "gw_p%d", db->nprepared);
    db->nprepared++;
    for (i = 0; i < db->pool_size; i++)
        if (db->conns[i].state == CONN_READY)
            conn_send_prepare(&db->conns[i], db->nprepared - 1);
    return 0;
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
    (void)flags;
    if (out != NULL)
        *out = NULL;
    if (db == NULL || stmts == NULL || nstmts <= 0)
        return GW_EINVAL;
    if (db->nready == 0)
        return GW_EUNAVAIL;
    c = TAILQ_EMPTY(&db->queue) ? pick_conn(db) : NULL;
    if (c == NULL && db->nqueued >= db->queue_max)
        return GW_ETOOBIG;
    r = req_new(stmts, nstmts, &err);
    if (r == NULL)
        return err;
    r->db = db;
    r->cb = cb;
    r->arg = arg;
    if (out != NULL)
        *out = r;
    if (c != NULL) {
        (void)conn_send(c, r);
    } else {
        r->queued = true;
        TAILQ_INSERT_TAIL(&db->queue, r, link);
        db->nqueued++;
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
        req_free(req);
        return;
    }
    req->cancelled = true;
    req->cb = NULL;
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
        n += db->conns[i].ninflight;
    return n;
}

unsigned gw_db_pool_size(const struct gw_db *db)
{
    return db != NULL ? db->pool_size : 0;
}

struct event_base *gw_db_base(const struct gw_db *db)
{
    return db != NULL ? db->base : NULL;
}
