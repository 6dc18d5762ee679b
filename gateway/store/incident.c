/* incident.c: the incident queue. Rows wait in FIFO order and go to the audit writer head first,
 * each row an entry of its own (its INSERT and its "incident" audit record, one transaction, so
 * the row exists exactly when its record does), at most BATCH_MAX entries in flight, one batch at
 * a time (the writer groups them into its transactions); rows whose entry failed stay queued and
 * the batch is retried after a backoff once all of it has answered. Invariants: a row in flight
 * is never changed (coalescing merges only into rows still waiting); a row leaves the queue only
 * when its entry committed or when the queue is freed (then it is counted in the log). */
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "alloc.h"
#include "audit.h"
#include "clock.h"
#include "db.h"
#include "incident.h"
#include "log.h"

#define BATCH_MAX 32
#define NPARAMS 10
#define RETRY_MIN_MS 50u
#define COUNT_MAX 2147483647u /* incident.count is an integer */

static const char *const insert_sql =
    "INSERT INTO incident (severity, kind, principal, peer, branch, detail, record_id, count, "
    "first_occurred_at, last_occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz, "
    "$10::timestamptz)";

static const char *const severities[] = {"low", "medium", "high", "critical"};

struct entry {
    TAILQ_ENTRY(entry) link;
    bool inflight;
    bool by_kind; /* a row per kind beyond the cap: only kind, severity and count are kept */
    int severity; /* index in severities */
    uint32_t count;
    struct timespec first, last;
    char *kind, *principal, *role, *cert, *peer, *branch, *detail; /* in the entry's own block */
    struct gw_incidents *q;
    struct gw_audit_req *areq; /* its entry in flight */
    bool has_record;
    uint8_t record_id[GW_INCIDENT_ID_LEN];
};

TAILQ_HEAD(entry_list, entry);

struct gw_incidents {
    struct gw_db *db;
    struct gw_audit *audit;
    uint32_t cap;
    uint32_t retry_max_ms;
    uint32_t retry_ms; /* the next backoff */
    struct event *ev_retry;
    struct event *ev_drain;
    struct entry_list q;
    uint32_t nrows;      /* rows on q; by-kind rows beyond the cap count too */
    size_t batch_n;      /* entries of the batch still in flight */
    int batch_err;       /* the first failure of the batch in flight (0: none yet) */
    char batch_state[8]; /* its SQLSTATE, "" when none */
    bool failing;        /* the last attempt failed (logged once per outage) */
    bool spooled;        /* the rows left at shutdown are in the spool (gw_incident_spooled) */
    bool halted;         /* gw_incident_halt: nothing more is sent */
    uint64_t episode_coalesced;
    gw_incident_drained_cb drain_cb;
    void *drain_arg;
    struct gw_incident_stats st;
    struct gw_incident_kind_count kinds[GW_INCIDENT_KINDS_MAX]; /* the last one: "other" */
    size_t nkinds;
};

static void flush(struct gw_incidents *q);

static int severity_index(const char *s)
{
    size_t i;

    for (i = 0; s != NULL && i < sizeof(severities) / sizeof(severities[0]); i++)
        if (strcmp(s, severities[i]) == 0)
            return (int)i;
    return -1;
}

static bool same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static size_t slen(const char *s)
{
    return s != NULL ? strlen(s) + 1 : 0;
}

static char *put(char **p, const char *s)
{
    char *d = *p;

    if (s == NULL)
        return NULL;
    memcpy(d, s, strlen(s) + 1);
    *p += strlen(s) + 1;
    return d;
}

/* A new row holding inc (all of it, or by_kind: only kind and severity). NULL on ENOMEM. */
static struct entry *entry_new(const struct gw_incident *inc, int sev, bool by_kind,
                               const struct timespec *now)
{
    static const char by_kind_detail[] =
        "incidents of this kind coalesced while the gateway's incident queue was full; "
        "principals, peers and details not kept";
    const char *principal = by_kind ? NULL : inc->principal, *peer = by_kind ? NULL : inc->peer;
    const char *branch = by_kind ? NULL : inc->branch, *role = by_kind ? NULL : inc->role;
    const char *cert = by_kind ? NULL : inc->cert;
    const char *detail = by_kind ? by_kind_detail : inc->detail;
    size_t n = sizeof(struct entry) + slen(inc->kind) + slen(principal) + slen(role) + slen(cert) +
               slen(peer) + slen(branch) + slen(detail);
    struct entry *e = gw_calloc(1, n);
    char *p;

    if (e == NULL)
        return NULL;
    p = (char *)(e + 1);
    e->kind = put(&p, inc->kind);
    e->principal = put(&p, principal);
    e->role = put(&p, role);
    e->cert = put(&p, cert);
    e->peer = put(&p, peer);
    e->branch = put(&p, branch);
    e->detail = put(&p, detail);
    e->by_kind = by_kind;
    e->severity = sev;
    e->count = 1;
    e->first = e->last = *now;
    if (!by_kind && inc->record_id != NULL) {
        e->has_record = true;
        memcpy(e->record_id, inc->record_id, GW_INCIDENT_ID_LEN);
    }
    return e;
}

/* A waiting row that inc can be merged into: same kind, principal and peer; else the kind's
 * by-kind row. NULL when none. */
static struct entry *find_merge(struct gw_incidents *q, const struct gw_incident *inc)
{
    struct entry *e;

    for (e = TAILQ_FIRST(&q->q); e != NULL; e = TAILQ_NEXT(e, link)) {
        if (!e->inflight && !e->by_kind && e->count < COUNT_MAX && same(e->kind, inc->kind) &&
            same(e->principal, inc->principal) && same(e->peer, inc->peer))
            return e;
    }
    for (e = TAILQ_FIRST(&q->q); e != NULL; e = TAILQ_NEXT(e, link)) {
        if (!e->inflight && e->by_kind && e->count < COUNT_MAX && same(e->kind, inc->kind))
            return e;
    }
    return NULL;
}

static void merge(struct gw_incidents *q, struct entry *e, int sev, const struct timespec *now)
{
    e->count++;
    e->last = *now;
    if (sev > e->severity)
        e->severity = sev;
    q->st.coalesced++;
    q->episode_coalesced++;
}

/* A new row beyond the cap, or merged into one: the queue is full. */
static void coalescing(struct gw_incidents *q)
{
    if (q->st.coalescing)
        return;
    q->st.coalescing = true;
    q->st.episodes++;
    q->episode_coalesced = 0;
    GW_LOG(GW_LOG_ERROR, "incident", NULL,
           "incident queue full (%u rows, %llu incidents unwritten): coalescing incidents "
           "of one kind, principal and peer into one row until the database catches up",
           q->nrows, (unsigned long long)q->st.pending);
}

/* Counts an incident by kind and severity (metrics). Kinds are the gateway's own constants; past
 * GW_INCIDENT_KINDS_MAX - 1 distinct ones, the rest count under "other". */
static void count_kind(struct gw_incidents *q, const char *kind, int sev)
{
    struct gw_incident_kind_count *k = NULL;
    size_t i;

    for (i = 0; i < q->nkinds && k == NULL; i++)
        if (strcmp(q->kinds[i].kind, kind) == 0 && q->kinds[i].severity == severities[sev])
            k = &q->kinds[i];
    if (k == NULL && q->nkinds < GW_INCIDENT_KINDS_MAX - 1 &&
        strlen(kind) < sizeof(q->kinds[0].kind)) {
        k = &q->kinds[q->nkinds++];
        snprintf(k->kind, sizeof(k->kind), "%s", kind);
        k->severity = severities[sev];
    }
    if (k == NULL) {
        k = &q->kinds[GW_INCIDENT_KINDS_MAX - 1];
        snprintf(k->kind, sizeof(k->kind), "other");
        k->severity = "any";
    }
    k->count++;
}

size_t gw_incident_kinds(const struct gw_incidents *q, const struct gw_incident_kind_count **out)
{
    *out = q->kinds;
    return q->kinds[GW_INCIDENT_KINDS_MAX - 1].count > 0 ? GW_INCIDENT_KINDS_MAX : q->nkinds;
}

int gw_incident_record(struct gw_incidents *q, const struct gw_incident *inc)
{
    struct timespec now;
    struct entry *e;
    bool full;
    int sev;

    if (q == NULL || inc == NULL || inc->kind == NULL || inc->kind[0] == '\0')
        return GW_EINVAL;
    sev = severity_index(inc->severity);
    if (sev < 0)
        return GW_EINVAL;
    count_kind(q, inc->kind, sev);
    clock_gettime(CLOCK_REALTIME, &now);
    full = q->nrows >= q->cap;
    if (full)
        coalescing(q);
    e = full ? find_merge(q, inc) : NULL;
    if (e == NULL) {
        e = entry_new(inc, sev, full, &now);
        if (e != NULL) {
            TAILQ_INSERT_TAIL(&q->q, e, link);
            q->nrows++;
        } else if ((e = find_merge(q, inc)) == NULL) {
            /* out of memory and nothing waiting to merge into (which would keep the count) */
            q->st.lost++;
            GW_LOG(GW_LOG_ERROR, "incident", NULL, "out of memory: a %s incident was lost",
                   inc->kind);
            return GW_ENOMEM;
        } else {
            merge(q, e, sev, &now);
        }
    } else {
        merge(q, e, sev, &now);
    }
    q->st.recorded++;
    q->st.pending++;
    flush(q);
    return 0;
}

static void fmt_time(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;
    size_t n;

    gmtime_r(&ts->tv_sec, &tm);
    n = strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%06u+00", (unsigned)(ts->tv_nsec / 1000 % 1000000));
}

static void schedule_retry(struct gw_incidents *q)
{
    struct timeval tv = gw_clock_tv(q->retry_ms);

    evtimer_add(q->ev_retry, &tv);
    q->retry_ms = q->retry_ms * 2 > q->retry_max_ms ? q->retry_max_ms : q->retry_ms * 2;
}

static void failed(struct gw_incidents *q, int err, const char *sqlstate)
{
    q->st.failures++;
    if (!q->failing) {
        q->failing = true;
        GW_LOG(GW_LOG_ERROR, "incident", NULL,
               "incidents not written yet (%s, sqlstate %s): %llu waiting, retrying with backoff",
               gw_err_str(err), sqlstate != NULL ? sqlstate : "-",
               (unsigned long long)q->st.pending);
    }
    schedule_retry(q);
}

static void drained(struct gw_incidents *q)
{
    gw_incident_drained_cb cb = q->drain_cb;

    if (cb == NULL)
        return;
    q->drain_cb = NULL;
    evtimer_del(q->ev_drain);
    cb(q->drain_arg, q->st.pending);
}

/* The batch has answered: retry after a backoff if part of it failed, else go on. */
static void batch_done(struct gw_incidents *q)
{
    if (q->batch_err != 0) {
        int err = q->batch_err;

        q->batch_err = 0;
        failed(q, err, q->batch_state[0] ? q->batch_state : NULL);
        return;
    }
    q->retry_ms = RETRY_MIN_MS;
    if (q->failing) {
        q->failing = false;
        GW_LOG(GW_LOG_INFO, "incident", NULL, "incidents written again, %llu waiting",
               (unsigned long long)q->st.pending);
    }
    if (q->st.coalescing && q->nrows < q->cap) {
        q->st.coalescing = false;
        GW_LOG(GW_LOG_WARN, "incident", NULL,
               "incident queue below its cap again: %llu incidents were coalesced meanwhile",
               (unsigned long long)q->episode_coalesced);
    }
    if (TAILQ_EMPTY(&q->q))
        drained(q);
    else
        flush(q);
}

static void written_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct entry *e = arg;
    struct gw_incidents *q = e->q;

    (void)seq;
    e->areq = NULL;
    e->inflight = false;
    q->batch_n--;
    if (err != 0) {
        if (q->batch_err == 0) {
            q->batch_err = err;
            snprintf(q->batch_state, sizeof(q->batch_state), "%s",
                     res != NULL && res->sqlstate != NULL ? res->sqlstate : "");
        }
    } else {
        TAILQ_REMOVE(&q->q, e, link);
        q->nrows--;
        q->st.rows++;
        q->st.written += e->count;
        q->st.pending -= e->count;
        gw_free(e);
    }
    if (q->batch_n == 0)
        batch_done(q);
}

/* The audit record of a row (the incident's kind is its object; never its detail text, which
 * stays in the incident table). */
static void rec_of(const struct entry *e, char *detail, size_t dlen, struct gw_audit_rec *r)
{
    snprintf(detail, dlen, "severity=%s", severities[e->severity]);
    memset(r, 0, sizeof(*r));
    r->actor = e->principal != NULL && e->principal[0] ? e->principal : "gateway";
    r->role = e->role;
    r->cert = e->cert;
    r->peer = e->peer;
    r->branch = e->branch;
    r->action = "incident";
    r->object = e->kind;
    r->count = e->count;
    r->outcome = "ok";
    r->detail = detail;
}

/* One row's statement and record, as written (pointers into e and b). */
struct row_bufs {
    const char *vals[NPARAMS];
    char count[12], first[48], last[48], detail[32];
};

static const int row_fmts[NPARAMS] = {0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
static const int row_lens[NPARAMS] = {0, 0, 0, 0, 0, 0, GW_INCIDENT_ID_LEN, 0, 0, 0};

static void row_entry(const struct entry *e, struct row_bufs *b, struct gw_db_stmt *st,
                      struct gw_audit_rec *r)
{
    snprintf(b->count, sizeof(b->count), "%u", e->count);
    fmt_time(&e->first, b->first, sizeof(b->first)); /* when it happened, not when written */
    fmt_time(&e->last, b->last, sizeof(b->last));
    b->vals[0] = severities[e->severity];
    b->vals[1] = e->kind;
    b->vals[2] = e->principal;
    b->vals[3] = e->peer;
    b->vals[4] = e->branch;
    b->vals[5] = e->detail;
    b->vals[6] = e->has_record ? (const char *)e->record_id : NULL;
    b->vals[7] = b->count;
    b->vals[8] = b->first;
    b->vals[9] = e->count > 1 ? b->last : NULL;
    *st = (struct gw_db_stmt){.sql = insert_sql,
                              .nparams = NPARAMS,
                              .values = b->vals,
                              .lengths = row_lens,
                              .formats = row_fmts};
    rec_of(e, b->detail, sizeof(b->detail), r);
}

/* The record of a row whose own was refused: the kind alone, so that a malformed name never
 * holds the queue up. */
static void kind_only(struct gw_audit_rec *r)
{
    r->actor = "gateway";
    r->role = r->cert = r->peer = r->branch = NULL;
}

/* Queues one row's entry; GW_EINVAL (its record refused) is answered by a record of the kind
 * alone. */
static int send_row(struct gw_incidents *q, struct entry *e)
{
    struct row_bufs b;
    struct gw_db_stmt st;
    struct gw_audit_rec r;
    int err;

    row_entry(e, &b, &st, &r);
    e->q = q;
    err = gw_audit_write(q->audit, &st, 1, &r, 1, written_cb, e, &e->areq);
    if (err == GW_EINVAL) {
        GW_LOG(GW_LOG_ERROR, "incident", NULL,
               "the audit record of a %s incident was refused: recorded with its kind only",
               e->kind);
        kind_only(&r);
        err = gw_audit_write(q->audit, &st, 1, &r, 1, written_cb, e, &e->areq);
    }
    return err;
}

int gw_incident_leftover(struct gw_incidents *q, gw_audit_left_cb cb, void *arg, uint64_t *rows)
{
    struct entry *e;
    int rc;

    *rows = 0;
    TAILQ_FOREACH(e, &q->q, link)
    {
        struct row_bufs b;
        struct gw_audit_left l = {.nstmts = 1, .nrecs = 1};

        row_entry(e, &b, &l.stmts[0], &l.recs[0]);
        if (gw_audit_rec_check(&l.recs[0]) != 0)
            kind_only(&l.recs[0]);
        /* sent: its transaction may commit after the exit, so the replay settles it by that
         * transaction's last record as the writer's kept entries in it are, not writes it again */
        if (e->inflight)
            l.in_doubt = gw_audit_req_in_doubt(q->audit, e->areq, &l.doubt_seq, l.doubt_hash);
        if ((rc = cb(arg, &l)) != 0)
            return rc;
        ++*rows;
    }
    return 0;
}

/* Sends the head of the queue (at most BATCH_MAX rows), unless a batch is in flight or a retry
 * waits. */
static void flush(struct gw_incidents *q)
{
    struct entry *e;
    int err = 0;

    if (q->halted || q->batch_n > 0 || evtimer_pending(q->ev_retry, NULL) || TAILQ_EMPTY(&q->q))
        return;
    q->batch_err = 0;
    q->batch_state[0] = '\0';
    for (e = TAILQ_FIRST(&q->q); e != NULL && q->batch_n < BATCH_MAX; e = TAILQ_NEXT(e, link)) {
        err = send_row(q, e);
        if (err != 0)
            break;
        e->inflight = true;
        q->batch_n++;
    }
    if (err != 0) {
        e->areq = NULL;
        if (q->batch_n == 0) {
            failed(q, err, NULL);
            return;
        }
        q->batch_err = err; /* retried once the rows in flight have answered */
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_incidents *q = arg;

    (void)fd;
    (void)what;
    drained(q);
}

struct gw_incidents *gw_incident_new(struct gw_db *db, struct gw_audit *audit, uint32_t cap,
                                     uint32_t retry_max_ms)
{
    struct gw_incidents *q;

    if (db == NULL || audit == NULL || cap == 0)
        return NULL;
    q = gw_calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->db = db;
    q->audit = audit;
    q->cap = cap;
    q->retry_max_ms = retry_max_ms < RETRY_MIN_MS ? RETRY_MIN_MS : retry_max_ms;
    q->retry_ms = RETRY_MIN_MS;
    TAILQ_INIT(&q->q);
    q->ev_retry = evtimer_new(gw_db_base(db), retry_cb, q);
    q->ev_drain = evtimer_new(gw_db_base(db), drain_timeout_cb, q);
    if (q->ev_retry == NULL || q->ev_drain == NULL || gw_db_prepare(db, insert_sql) != 0) {
        gw_incident_free(q);
        return NULL;
    }
    return q;
}

void gw_incident_drain(struct gw_incidents *q, uint32_t timeout_ms, gw_incident_drained_cb cb,
                       void *arg)
{
    struct timeval tv = gw_clock_tv(timeout_ms);

    q->drain_cb = cb;
    q->drain_arg = arg;
    if (TAILQ_EMPTY(&q->q))
        tv = (struct timeval){0, 0}; /* answered from the loop, never from inside this call */
    evtimer_add(q->ev_drain, &tv);
    if (evtimer_pending(q->ev_retry, NULL)) {
        evtimer_del(q->ev_retry);
        flush(q);
    }
}

void gw_incident_free(struct gw_incidents *q)
{
    struct entry *e;

    if (q == NULL)
        return;
    TAILQ_FOREACH(e, &q->q, link)
    {
        if (e->areq != NULL)
            gw_audit_cancel(e->areq);
    }
    if (q->nrows > 0 && q->spooled)
        GW_LOG(GW_LOG_INFO, "incident", NULL,
               "%llu incident(s) in %u row(s) not written at shutdown: spooled",
               (unsigned long long)q->st.pending, q->nrows);
    else if (q->nrows > 0)
        GW_LOG(GW_LOG_ERROR, "incident", NULL,
               "%llu incident(s) in %u row(s) not written at shutdown (a row in flight may have "
               "been written)",
               (unsigned long long)q->st.pending, q->nrows);
    while ((e = TAILQ_FIRST(&q->q)) != NULL) {
        TAILQ_REMOVE(&q->q, e, link);
        gw_free(e);
    }
    if (q->ev_retry != NULL)
        event_free(q->ev_retry);
    if (q->ev_drain != NULL)
        event_free(q->ev_drain);
    gw_free(q);
}

void gw_incident_halt(struct gw_incidents *q)
{
    if (q == NULL)
        return;
    q->halted = true;
    evtimer_del(q->ev_retry);
    evtimer_del(q->ev_drain);
}

void gw_incident_spooled(struct gw_incidents *q)
{
    q->spooled = true;
}

void gw_incident_stats(const struct gw_incidents *q, struct gw_incident_stats *out)
{
    *out = q->st;
    out->queued = q->nrows;
}
