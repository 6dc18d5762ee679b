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

static void done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_wrapguard *g = arg;
    struct gw_wraplease *l = &g->lease;
    uint64_t granted = 0, count = 0;
    char why[96];

    g->req = NULL;
    if (err != 0 && res != NULL && res->sqlstate != NULL &&
        strcmp(res->sqlstate, GW_KEK_WRAP_AT_LIMIT) == 0) {
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
    if (err == 0 && (res->nresults != 1 || !res->results[0] ||
                     gw_kek_wrap_read(res->results[0], &granted, &count) != 0))
        err = GW_EINTERNAL;
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
    char ss[16], vs[16], ns[24], ls[24];
    const char *values[4] = {ss, vs, ns, ls};
    struct gw_db_stmt st = {.sql = GW_KEK_WRAP_LEASE_SQL, .nparams = 4, .values = values};
    int rc;

    if (!l->asking || g->req != NULL)
        return;
    snprintf(ss, sizeof ss, "%d", l->suite);
    snprintf(vs, sizeof vs, "%" PRIu32, l->version);
    snprintf(ns, sizeof ns, "%" PRIu64, l->block);
    snprintf(ls, sizeof ls, "%" PRIu32, g->app->cfg->kek_wrap_limit);
    /* the gateway's own work: charged to no caller */
    rc = gw_db_exec(g->app->db, &st, 1, GW_DB_SHARED, done_cb, g, &g->req);
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

    if (!g->retry_ev && !(g->retry_ev = evtimer_new(g->app->base, retry_cb, g)))
        return GW_ENOMEM;
    /* the same KEK (a reload of the policy or TLS files): the lease held goes on */
    if (!gw_wraplease_reset(&g->lease, (int)suite, gw_keyring_current(kr, suite)))
        return 0;
    gw_db_cancel(g->req); /* of the KEK replaced: what it was granted stays counted */
    g->req = NULL;
    evtimer_del(g->retry_ev);
    g->backoff_ms = 0;
    gw_wraplease_ask(&g->lease);
    return 0;
}
