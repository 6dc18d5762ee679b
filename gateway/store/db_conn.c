/* db_conn.c: one pool connection's state machine: non-blocking connect, pipeline-mode sends,
 * reading results in order, teardown and reconnect with jittered backoff. Invariants: no call
 * blocks (non-blocking connect and I/O, PQgetResult only when !PQisBusy); results are matched to
 * the in-flight FIFO in order, and anything out of step tears the connection down. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/util.h>

#include "alloc.h"
#include "clock.h"
#include "db.h"
#include "db_int.h"
#include "log.h"

#define DB_BACKOFF_MIN_MS 100u

/* A statement refused for want of resources on the server (class 53: disk full, out of memory,
 * too many connections), because it is shutting down or in recovery (57P01..57P03), or by a
 * broken connection (class 08): nothing was committed, and the same request may succeed later,
 * so the caller sees GW_EUNAVAIL (UNAVAILABLE), not a refusal of its data. */
static bool transient(const char *sqlstate)
{
    return strncmp(sqlstate, "53", 2) == 0 || strncmp(sqlstate, "08", 2) == 0 ||
           strcmp(sqlstate, "57P01") == 0 || strcmp(sqlstate, "57P02") == 0 ||
           strcmp(sqlstate, "57P03") == 0;
}

static void conn_teardown(struct conn *c);

static void quiet_notice(void *arg, const char *message)
{
    /* Server notices may quote values: never printed. */
    (void)arg;
    (void)message;
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
    tv = gw_clock_tv(ms);
    evtimer_add(c->ev_timer, &tv);
    GW_LOG(GW_LOG_DEBUG, "db", NULL, "connection %u: reconnect in %u ms", c->slot, ms);
}

/* Leaves CONN_READY (if it was) so that no new request is given to c. */
static void conn_mark_down(struct conn *c, enum conn_state st)
{
    if (c->pinned && c->db->nready > 0)
        c->db->nready--;
    c->pinned = false;
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

void gw_db_conn_close_pg(struct conn *c)
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
    gw_db_conn_close_pg(c);
    if (was_up)
        GW_LOG(c->schema_refused ? GW_LOG_DEBUG : GW_LOG_WARN, "db", NULL,
               "connection %u lost (%u requests in flight)", c->slot, c->ninflight);

    TAILQ_INIT(&failed);
    TAILQ_CONCAT(&failed, &c->inflight, link);
    c->ninflight = 0;
    c->ninternal = 0;
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
        gw_db_req_complete(r, GW_EUNAVAIL);
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
    gw_db_conn_close_pg(c);
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

/* Queues on c the PQsendPrepare of prepared[slot] as an internal request. */
void gw_db_conn_send_prepare(struct conn *c, int slot)
{
    struct gw_db_stmt st = {.sql = c->db->prepared[slot].sql};
    struct gw_db_req *r;
    int err;

    r = gw_db_req_new(&st, 1, &err);
    if (r == NULL)
        return; /* without it the connection sends the text: slower, not wrong */
    r->db = c->db;
    r->internal = true;
    r->stmts[0].prepare_slot = slot;
    (void)gw_db_conn_send(c, r);
}

/* A new connection's set-up is its prepares and then GW_DB_SESSION_SQL, the last request of its
 * own in its pipeline, and the connection takes no caller's request until that succeeded:
 * pinned, it counts as ready. One where it fails is closed and tried again after the backoff, so
 * every caller's request runs under READ COMMITTED. Results come in pipeline order, so pinned
 * also means every prepare was answered: a prepare that waits for a lock (an operator's LOCK
 * TABLE on a table a statement names) holds up only its own connection, never a caller's request
 * sent behind it while another connection is free. With a minimum schema version
 * (gw_db_set_schema_min) the same request reads the schema's version after the session
 * statement, and a schema older than the minimum, or one whose version cannot be read, is
 * refused the same way: the connection is closed and tried again after the backoff, until the
 * database is migrated. */

/* A failure of the schema read that says the schema is older than the read (class 42: no such
 * function, or no privilege to call it), not that the server is in trouble. */
static bool schema_unreadable(const char *sqlstate)
{
    return sqlstate != NULL && strncmp(sqlstate, "42", 2) == 0;
}

static int schema_value(const PGresult *res)
{
    long v;
    char *end;

    if (res == NULL || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
        return 0;
    v = strtol(PQgetvalue(res, 0, 0), &end, 10);
    return *end == '\0' && v >= 0 && v <= INT32_MAX ? (int)v : 0;
}

/* Records what a connection found (version, or GW_DB_SCHEMA_UNREADABLE with its SQLSTATE) and logs
 * a change of it once, however many connections find the same on however many retries. */
static void schema_found(struct gw_db *db, int version, const char *sqlstate)
{
    /* as gw_db_schema_behind, which is db.c's: db_conn.c calls nothing of db.c but dispatch */
    bool was_behind =
        db->schema_version != GW_DB_SCHEMA_UNKNOWN && db->schema_version < db->schema_min;

    if (version == db->schema_version)
        return;
    db->schema_version = version;
    if (version == GW_DB_SCHEMA_UNREADABLE && sqlstate != NULL && strcmp(sqlstate, "42501") == 0)
        GW_LOG(GW_LOG_ERROR, "db", NULL,
               "the database's schema version cannot be read (SQLSTATE 42501: the gateway's role "
               "may not call schema_version(), the grant of sql/029_schema_version.sql is "
               "missing), this build needs migration %d: run `waygatectl migrate`, or give the "
               "grant back if that migration is recorded; until then no database connection is "
               "used and calls that need the database answer UNAVAILABLE",
               db->schema_min);
    else if (version == GW_DB_SCHEMA_UNREADABLE)
        GW_LOG(GW_LOG_ERROR, "db", NULL,
               "the database's schema version cannot be read (SQLSTATE %s: the schema predates "
               "sql/029_schema_version.sql), this build needs migration %d: run `waygatectl "
               "migrate`; until then no database connection is used and calls that need the "
               "database answer UNAVAILABLE",
               sqlstate != NULL ? sqlstate : "none", db->schema_min);
    else if (version < db->schema_min)
        GW_LOG(GW_LOG_ERROR, "db", NULL,
               "the database's schema is at migration %d, this build needs %d: run `waygatectl "
               "migrate`; until then no database connection is used and calls that need the "
               "database answer UNAVAILABLE",
               version, db->schema_min);
    else
        GW_LOG(GW_LOG_INFO, "db", NULL,
               "the database's schema is at migration %d, this build needs %d%s", version,
               db->schema_min, was_behind ? ": database connections are used again" : "");
}

static void pin_done(void *arg, int err, const struct gw_db_result *res)
{
    struct conn *c = arg; /* one of the pool's array: valid while callbacks can run */
    struct gw_db *db = c->db;
    int version;

    /* A teardown completes this request after leaving CONN_READY: nothing more to do then. */
    if (c->state != CONN_READY || c->pinned)
        return;
    /* the schema was read (the request's second statement) or could not be */
    if (db->schema_min > 0 && res->nresults > 1 &&
        (err == 0 || (res->failed_stmt == 1 && schema_unreadable(res->sqlstate)))) {
        version = err == 0 ? schema_value(res->results[1]) : GW_DB_SCHEMA_UNREADABLE;
        schema_found(db, version, res->sqlstate);
        if (version < db->schema_min) {
            GW_LOG(GW_LOG_DEBUG, "db", NULL, "connection %u: schema behind; closing it", c->slot);
            c->schema_refused = true;
            db->schema_refusals++;
            conn_fail_later(c);
            return;
        }
    }
    if (err == 0) {
        c->pinned = true;
        c->schema_refused = false;
        c->attempt = 0;
        db->nready++; /* conn_process dispatches the queue after this callback */
        return;
    }
    db->session_failures++;
    GW_LOG(GW_LOG_ERROR, "db", NULL,
           "connection %u: its session statement failed (sqlstate %s); closing it", c->slot,
           res->sqlstate != NULL ? res->sqlstate : "none");
    conn_fail_later(c);
}

static void conn_pin(struct conn *c)
{
    struct gw_db_stmt st[2] = {
        {.sql = c->db->session_sql ? c->db->session_sql : GW_DB_SESSION_SQL},
        {.sql = GW_DB_SCHEMA_SQL},
    };
    struct gw_db_req *r;
    int err;

    r = gw_db_req_new(st, c->db->schema_min > 0 ? 2 : 1, &err);
    if (r == NULL) {
        conn_fail_later(c);
        return;
    }
    r->db = c->db;
    r->internal = true;
    r->cb = pin_done;
    r->arg = c;
    (void)gw_db_conn_send(c, r);
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
    c->pinned = false; /* pin_done counts it in nready and resets the backoff */
    c->prepared_ok = 0;
    GW_LOG(c->schema_refused ? GW_LOG_DEBUG : GW_LOG_INFO, "db", NULL,
           "connection %u up (server %d)", c->slot, PQserverVersion(c->pg));
    for (i = 0; i < c->db->nprepared && c->state == CONN_READY; i++)
        gw_db_conn_send_prepare(c, i);
    if (c->state == CONN_READY)
        conn_pin(c);
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

void gw_db_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    switch (c->state) {
    case CONN_DOWN:
        gw_db_conn_connect(c);
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

void gw_db_conn_connect(struct conn *c)
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
    tv = gw_clock_tv(c->db->connect_timeout_ms ? c->db->connect_timeout_ms : 5000);
    evtimer_add(c->ev_timer, &tv);
    conn_wait_poll(c);
}

/* ---- sending ---- */

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
int gw_db_conn_send(struct conn *c, struct gw_db_req *r)
{
    int i;

    r->conn = c;
    r->queued = false;
    r->sent = ++c->db->nsent;
    r->sent_ms = gw_clock_ms();
    TAILQ_INSERT_TAIL(&c->inflight, r, link);
    c->ninflight++;
    c->ninternal += r->internal;
    for (i = 0; i < r->nstmts; i++) {
        const struct req_stmt *s = &r->stmts[i];
        int slot, ok;

        if (s->prepare_slot >= 0) {
            ok = PQsendPrepare(c->pg, c->db->prepared[s->prepare_slot].name, s->sql, 0, NULL);
        } else if ((slot = gw_db_find_prepared(c->db, s->sql)) >= 0 &&
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
        /* a schema behind the build fails its prepares at every retry: said once, as behind */
        GW_LOG(c->schema_refused ? GW_LOG_DEBUG : GW_LOG_WARN, "db", NULL,
               "connection %u: prepare of %s failed (sqlstate %s)", c->slot,
               c->db->prepared[slot].name, r->sqlstate);
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
        c->ninternal -= r->internal;
        r->conn = NULL;
        if (r->nstmts == 1 && r->stmts[0].prepare_slot >= 0)
            prepared_done(c, r);
        gw_db_req_complete(r, r->failed_stmt < 0       ? 0
                              : transient(r->sqlstate) ? GW_EUNAVAIL
                                                       : GW_EINTERNAL);
        c->db->dispatch(c->db);
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
