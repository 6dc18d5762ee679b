/* retention.c: the retention sweep (retention.h). States: idle (timer armed), reading (a batch's
 * ids requested), destroying (the batch with its records handed to the audit writer). Invariant:
 * at most one request in flight; free cancels it, so no callback reaches a freed sweep. */
#include "retention.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "alloc.h"
#include "audit.h"
#include "clock.h"
#include "log.h"
#include "store_bulk.h"

#define ACTOR "waygated retention sweep"
#define RETRY_MS 1000 /* after the database or the audit writer was unavailable */

struct gw_retention {
    struct event *ev;
    struct gw_store *store;
    struct gw_audit *audit;
    struct gw_retention_config cfg;
    struct gw_store_bulk_req *sreq;
    struct gw_audit_req *areq;
    char selector[96];
    char detail[64];
    size_t inflight; /* waybills in the batch being destroyed */
    struct gw_retention_stats st;
};

static void arm(struct gw_retention *r, uint32_t ms)
{
    struct timeval tv = gw_clock_tv(ms);

    if (evtimer_add(r->ev, &tv) != 0)
        GW_LOG(GW_LOG_ERROR, "retention", NULL, "cannot arm the retention timer");
}

static void next_batch(struct gw_retention *r);

/* Gives up the sweep for now: the next one after sweep_ms, or soon when the database (or the
 * audit writer, recovering its chain at start) was only unavailable or a queue to it full, so
 * that a sweep due at start is not put off by a whole interval. */
static void retry(struct gw_retention *r, int err, const char *what)
{
    uint32_t ms = r->cfg.sweep_ms;

    if (err == GW_EUNAVAIL || err == GW_EQUEUEFULL) {
        if (ms > RETRY_MS)
            ms = RETRY_MS;
        GW_LOG(GW_LOG_DEBUG, "retention", NULL, "%s: %s; retrying soon", what, gw_err_str(err));
    } else {
        r->st.failures++;
        GW_LOG(GW_LOG_ERROR, "retention", NULL, "%s: %s; retried at the next sweep", what,
               gw_err_str(err));
    }
    arm(r, ms);
}

static void destroyed_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_retention *r = arg;

    (void)seq;
    r->areq = NULL;
    if (err != 0) {
        /* sql/020: the period asked is below the floor that waygatectl keeps */
        bool floor = res != NULL && res->sqlstate != NULL && strcmp(res->sqlstate, "WR001") == 0;
        retry(r, err,
              floor ? "a retention batch was refused: [compliance] retention_days is below the "
                      "database's retention floor (waygatectl retention floor)"
                    : "a retention batch was not destroyed");
        return;
    }
    r->st.batches++;
    r->st.destroyed += r->inflight;
    GW_LOG(GW_LOG_INFO, "retention", NULL, "destroyed %zu waybills %s", r->inflight, r->selector);
    next_batch(r);
}

/* "{id,id,...}" of n UUIDs (gw_malloc'd), or NULL. */
static char *id_array(const char *const *ids, size_t n)
{
    char *s = gw_malloc(n * 37 + 3), *p;

    if (s == NULL)
        return NULL;
    p = s;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        memcpy(p, ids[i], 36);
        p += 36;
        *p++ = i + 1 < n ? ',' : '}';
    }
    *p = '\0';
    return s;
}

static void ids_cb(void *arg, int err, const char *const *ids, size_t n)
{
    struct gw_retention *r = arg;
    struct gw_store_bulk_stmt st[2];
    struct gw_audit_rec rec;
    char *arr;
    int rc;

    r->sreq = NULL;
    if (err != 0) {
        retry(r, err, "the retention sweep could not read");
        return;
    }
    if (n == 0) { /* nothing (more) has expired */
        arm(r, r->cfg.sweep_ms);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (strlen(ids[i]) != 36) {
            arm(r, r->cfg.sweep_ms);
            return;
        }
    if ((arr = id_array(ids, n)) == NULL) {
        arm(r, r->cfg.sweep_ms);
        return;
    }
    gw_store_bulk_scope(&st[0], "*");
    gw_store_bulk_destroy_ids(&st[1], arr, r->cfg.days, r->selector, ACTOR);
    snprintf(r->detail, sizeof(r->detail), "batch of at most %" PRIu32, r->cfg.batch);
    rec = (struct gw_audit_rec){
        .actor = ACTOR,
        .action = "retention.destroy",
        .object = r->selector,
        .count = (int64_t)n,
        .purpose = "retention period expired",
        .legal_basis = "Art. 26",
        .outcome = "ok",
        .detail = r->detail,
    };
    {
        struct gw_db_stmt s[2] = {st[0].st, st[1].st};
        rc = gw_audit_write(r->audit, s, 2, &rec, 1, destroyed_cb, r, &r->areq);
    }
    gw_free(arr);
    if (rc != 0) {
        retry(r, rc, "cannot queue a retention batch");
        return;
    }
    r->inflight = n;
}

static void next_batch(struct gw_retention *r)
{
    int rc = gw_store_bulk_expired_ids(r->store, r->cfg.days, r->cfg.batch, ids_cb, r, &r->sreq);

    if (rc != 0)
        retry(r, rc, "the retention sweep could not start");
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    next_batch(arg);
}

int gw_retention_new(struct event_base *base, struct gw_store *store, struct gw_audit *audit,
                     const struct gw_retention_config *cfg, struct gw_retention **out)
{
    struct gw_retention *r;

    *out = NULL;
    if (base == NULL || store == NULL || audit == NULL || cfg == NULL || cfg->sweep_ms == 0 ||
        cfg->batch == 0 || cfg->batch > GW_RETENTION_BATCH_MAX)
        return GW_EINVAL;
    if ((r = gw_calloc(1, sizeof(*r))) == NULL)
        return GW_ENOMEM;
    r->store = store;
    r->audit = audit;
    r->cfg = *cfg;
    snprintf(r->selector, sizeof(r->selector), "older than %" PRIu32 " days", cfg->days);
    if ((r->ev = evtimer_new(base, timer_cb, r)) == NULL) {
        gw_free(r);
        return GW_ENOMEM;
    }
    *out = r;
    return 0;
}

int gw_retention_start(struct gw_retention *r)
{
    if (r->cfg.days == 0)
        return 0; /* keep everything */
    arm(r, 0);
    return 0;
}

void gw_retention_stats(const struct gw_retention *r, struct gw_retention_stats *out)
{
    *out = r->st;
}

void gw_retention_free(struct gw_retention *r)
{
    if (r == NULL)
        return;
    gw_store_bulk_cancel(r->sreq);
    gw_audit_cancel(r->areq);
    event_free(r->ev);
    gw_free(r);
}
