/* wrapguard.c: leases of data-key wraps asked of the database on the pool (wrapguard.h).
 * Invariants: one lease request in flight at most, of the lease's KEK; a request made under a
 * KEK since replaced is cancelled (whatever the server granted stays counted, never used); no
 * wrap is held but what the database granted. */
#include "wrapguard.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "kek_wrap.h"
#include "keyring.h"
#include "log.h"
#include "wraplease.h"

#define WRAPGUARD_RETRY_MAX_MS 1000u

struct gw_wrapguard {
    struct gw_app *app;
    struct gw_wraplease lease;
    struct gw_db_req *req;
    struct event *retry_ev;
    uint32_t backoff_ms;
    bool warned; /* the failure to lease was logged (once per outage) */
    /* a reload's lease under its new KEK, asked before the swap (gw_wrapguard_prepare) */
    struct {
        struct gw_db_req *req;
        int suite;
        uint32_t version;
        bool answered, refused; /* refused: at the version's limit */
        uint64_t granted, count;
        gw_wrapguard_ready_fn ready;
        void *arg;
    } next;
};

static void send_lease(struct gw_wrapguard *g);

static void want_cb(void *arg)
{
    struct gw_wrapguard *g = arg;
    if (g->req == NULL && !evtimer_pending(g->retry_ev, NULL))
        send_lease(g);
}

struct gw_wrapguard *gw_wrapguard_new(struct gw_app *app)
{
    struct gw_wrapguard *g = gw_calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->app = app;
    gw_wraplease_init(&g->lease, GW_KEK_WRAP_BLOCK, want_cb, g);
    app->wraps = &g->lease;
    return g;
}

void gw_wrapguard_free(struct gw_wrapguard *g)
{
    if (!g)
        return;
    gw_db_cancel(g->req);
    gw_db_cancel(g->next.req);
    if (g->retry_ev)
        event_free(g->retry_ev);
    if (g->app->wraps == &g->lease)
        g->app->wraps = NULL;
    gw_free(g);
}

/* The lease could not be asked or answered: again after the backoff. */
static void retry_later(struct gw_wrapguard *g, const char *why)
{
    struct timeval tv;

    if (!g->warned && g->backoff_ms >= WRAPGUARD_RETRY_MAX_MS)
        GW_LOG(GW_LOG_WARN, "main", NULL,
               "no lease of data-key wraps from the database (%s): retrying; a Submit finding "
               "none held is refused UNAVAILABLE",
               why);
    g->warned |= g->backoff_ms >= WRAPGUARD_RETRY_MAX_MS;
    g->backoff_ms = g->backoff_ms == 0 ? 20 : g->backoff_ms * 2;
    if (g->backoff_ms > WRAPGUARD_RETRY_MAX_MS)
        g->backoff_ms = WRAPGUARD_RETRY_MAX_MS;
    tv = gw_clock_tv(g->backoff_ms);
    evtimer_add(g->retry_ev, &tv);
}

/* The database's answer to a lease: 0 with *granted and *count, GW_EPRECOND (the version is at
 * its limit), or another error. */
static int lease_answer(int err, const struct gw_db_result *res, uint64_t *granted, uint64_t *count)
{
    if (err != 0 && res != NULL && res->sqlstate != NULL &&
        strcmp(res->sqlstate, GW_KEK_WRAP_AT_LIMIT) == 0)
        return GW_EPRECOND;
    if (err == 0 && (res->nresults != 1 || !res->results[0] ||
                     gw_kek_wrap_read(res->results[0], granted, count) != 0))
        err = GW_EINTERNAL;
    return err;
}

/* Asks the database for a block of wraps under (suite, version), on the pool (the gateway's own
 * work: charged to no caller; in the queue's reserve). Returns gw_db_exec's. */
static int lease_send(struct gw_wrapguard *g, int suite, uint32_t version, gw_db_done_cb cb,
                      struct gw_db_req **out)
{
    char ss[16], vs[16], ns[24], ls[24];
    const char *values[4] = {ss, vs, ns, ls};
    struct gw_db_stmt st = {.sql = GW_KEK_WRAP_LEASE_SQL, .nparams = 4, .values = values};

    snprintf(ss, sizeof ss, "%d", suite);
    snprintf(vs, sizeof vs, "%" PRIu32, version);
    snprintf(ns, sizeof ns, "%" PRIu64, g->lease.block);
    snprintf(ls, sizeof ls, "%" PRIu32, g->app->cfg->kek_wrap_limit);
    /* the reserve (db.h): callers filling the queue do not starve every Submit of wraps */
    return gw_db_exec(g->app->db, &st, 1, GW_DB_SHARED | GW_DB_RESERVED, cb, g, out);
}

static void done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_wrapguard *g = arg;
    struct gw_wraplease *l = &g->lease;
    uint64_t granted = 0, count = 0;
    char why[96];

    g->req = NULL;
    err = lease_answer(err, res, &granted, &count);
    if (err == GW_EPRECOND) {
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "%s KEK version %" PRIu32 " has reached its limit of data-key wraps ([keys] "
               "kek_wrap_limit, sql/050): no waybill is sealed under it once the %" PRIu64
               " wraps held are used; rotate the KEK (waygatectl keys rotate) and reload the "
               "gateway's keyring (SIGHUP)",
               gw_suite_name((enum gw_suite)l->suite), l->version, l->leased - l->used);
        gw_wraplease_refused(l, l->suite, l->version);
        g->backoff_ms = 0;
        return;
    }
    if (err != 0) {
        snprintf(why, sizeof why, "%s, SQLSTATE %s", gw_err_str(err),
                 res && res->sqlstate ? res->sqlstate : "-");
        retry_later(g, why);
        return;
    }
    if (g->warned)
        GW_LOG(GW_LOG_INFO, "main", NULL, "data-key wraps leased from the database again");
    g->warned = false;
    g->backoff_ms = 0;
    gw_wraplease_grant(l, l->suite, l->version, granted, count);
    GW_LOG(GW_LOG_DEBUG, "main", NULL,
           "%" PRIu64 " data-key wraps leased under %s KEK version %" PRIu32 " (%" PRIu64
           " counted)",
           granted, gw_suite_name((enum gw_suite)l->suite), l->version, count);
}

static void send_lease(struct gw_wrapguard *g)
{
    struct gw_wraplease *l = &g->lease;
    int rc;

    if (!l->asking || g->req != NULL)
        return;
    rc = lease_send(g, l->suite, l->version, done_cb, &g->req);
    if (rc != 0) {
        g->req = NULL;
        retry_later(g, gw_err_str(rc));
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_lease(arg);
}

int gw_wrapguard_keyring(struct gw_wrapguard *g)
{
    struct gw_keyring *kr = g->app->keys;
    enum gw_suite suite = gw_keyring_suite(kr);
    uint32_t version = gw_keyring_current(kr, suite);
    bool prepared = g->next.answered && g->next.suite == (int)suite && g->next.version == version;

    g->next.answered = false;
    if (!g->retry_ev && !(g->retry_ev = evtimer_new(g->app->base, retry_cb, g)))
        return GW_ENOMEM;
    /* the same KEK (a reload of the policy or TLS files): the lease held goes on */
    if (!gw_wraplease_reset(&g->lease, (int)suite, version))
        return 0;
    gw_db_cancel(g->req); /* of the KEK replaced: what it was granted stays counted */
    g->req = NULL;
    evtimer_del(g->retry_ev);
    g->backoff_ms = 0;
    /* the lease the reload asked for before the swap (gw_wrapguard_prepare) */
    if (prepared && g->next.refused)
        gw_wraplease_refused(&g->lease, (int)suite, version);
    else if (prepared && g->next.granted > 0)
        gw_wraplease_grant(&g->lease, (int)suite, version, g->next.granted, g->next.count);
    else
        gw_wraplease_ask(&g->lease);
    return 0;
}

static void next_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_wrapguard *g = arg;
    uint64_t granted = 0, count = 0;

    g->next.req = NULL;
    err = lease_answer(err, res, &granted, &count);
    g->next.answered = true;
    g->next.refused = err == GW_EPRECOND;
    g->next.granted = err == 0 ? granted : 0;
    g->next.count = count;
    if (err != 0 && err != GW_EPRECOND)
        GW_LOG(GW_LOG_WARN, "main", NULL,
               "SIGHUP: no lease of data-key wraps under the new KEK before the swap (%s, "
               "SQLSTATE %s): asked again after it",
               gw_err_str(err), res && res->sqlstate ? res->sqlstate : "-");
    g->next.ready(g->next.arg); /* may swap the keyring in (gw_wrapguard_keyring) */
}

int gw_wrapguard_prepare(struct gw_wrapguard *g, const struct gw_keyring *kr,
                         gw_wrapguard_ready_fn ready, void *arg)
{
    enum gw_suite suite = gw_keyring_suite(kr);
    uint32_t version = gw_keyring_current(kr, suite);
    int rc;

    if (g->next.req != NULL)
        return GW_EINVAL;
    g->next.answered = false;
    if (g->lease.suite == (int)suite && g->lease.version == version)
        return 1;
    g->next.suite = (int)suite;
    g->next.version = version;
    g->next.ready = ready;
    g->next.arg = arg;
    rc = lease_send(g, (int)suite, version, next_done_cb, &g->next.req);
    if (rc != 0)
        g->next.req = NULL;
    return rc;
}
