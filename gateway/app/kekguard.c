/* kekguard.c: the keyring's KEK versions compared with the database's at start and at reload
 * (kekguard.h). Invariants: one check in flight at most; a check value list is the keyring's own
 * (computed on a crypto context freed right after), never key bytes; app->keys_unchecked is cleared
 * only by a vouched start. */
#include "kekguard.h"

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "db.h"
#include "kek_check.h"
#include "log.h"

/* The start's retries: short, for the health check waits for them (a retry while no connection
 * is up costs nothing but the timer). */
#define KEKGUARD_RETRY_MAX_MS 500u

struct gw_kekguard {
    struct gw_app *app;
    char by[80];
    struct gw_keyring_check *vouched; /* the running keyring's, once vouched for */
    size_t nvouched;
    struct gw_keyring_check *pending; /* the keyring being checked */
    size_t npending;
    struct gw_db_req *req;
    struct event *retry_ev;
    uint32_t backoff_ms;
    bool starting; /* the start's check: retried until answered */
    bool warned;   /* the start's failure to ask was logged */
    gw_kekguard_cb cb;
    void *arg;
};

struct gw_kekguard *gw_kekguard_new(struct gw_app *app, const char *by)
{
    struct gw_kekguard *g = gw_calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->app = app;
    snprintf(g->by, sizeof g->by, "%s", by && by[0] ? by : "waygated");
    return g;
}

void gw_kekguard_free(struct gw_kekguard *g)
{
    if (!g)
        return;
    gw_db_cancel(g->req);
    if (g->retry_ev)
        event_free(g->retry_ev);
    gw_free(g->vouched);
    gw_free(g->pending);
    gw_free(g);
}

bool gw_kekguard_busy(const struct gw_kekguard *g)
{
    return g->req != NULL || g->starting;
}

static void send_check(struct gw_kekguard *g);

static void finish(struct gw_kekguard *g, int outcome, const char *msg)
{
    if (outcome == 0) {
        gw_free(g->vouched);
        g->vouched = g->pending;
        g->nvouched = g->npending;
        if (g->starting)
            g->app->keys_unchecked = false;
    } else {
        gw_free(g->pending);
    }
    g->pending = NULL;
    g->npending = 0;
    g->starting = false;
    g->cb(g->arg, outcome, msg);
}

/* The start's check could not be answered: again after the backoff. */
static void retry_later(struct gw_kekguard *g, const char *why)
{
    struct timeval tv;

    /* the pool connects right after the start: said only once it takes longer */
    if (!g->warned && g->backoff_ms >= KEKGUARD_RETRY_MAX_MS)
        GW_LOG(GW_LOG_WARN, "main", NULL,
               "the keyring's KEK versions are not yet checked against the database (%s): "
               "retrying; until then no waybill is sealed",
               why);
    g->warned |= g->backoff_ms >= KEKGUARD_RETRY_MAX_MS;
    g->backoff_ms = g->backoff_ms == 0 ? 20 : g->backoff_ms * 2;
    if (g->backoff_ms > KEKGUARD_RETRY_MAX_MS)
        g->backoff_ms = KEKGUARD_RETRY_MAX_MS;
    tv = gw_clock_tv(g->backoff_ms);
    evtimer_add(g->retry_ev, &tv);
}

static void done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_kekguard *g = arg;
    struct gw_kek_check_outcome o;
    char msg[256];

    g->req = NULL;
    if (err == 0 && (res->nresults != 1 || !res->results[0] ||
                     gw_kek_check_read(res->results[0], g->npending, &o) != 0))
        err = GW_EINTERNAL;
    if (err != 0) {
        if (g->starting) {
            snprintf(msg, sizeof msg, "%s, SQLSTATE %s", gw_err_str(err),
                     res && res->sqlstate ? res->sqlstate : "-");
            retry_later(g, msg);
            return;
        }
        finish(g, GW_EUNAVAIL,
               "the keyring's new KEK versions could not be checked against the "
               "database");
        return;
    }
    if (o.other_suite != 0) {
        gw_kek_mismatch_msg(msg, sizeof msg, o.other_suite, o.other_version);
        finish(g, GW_EEXIST, msg);
        return;
    }
    if (o.registered > 0)
        GW_LOG(GW_LOG_INFO, "main", NULL,
               "%zu KEK version(s) of the keyring registered with the database", o.registered);
    finish(g, 0, NULL);
}

static void send_check(struct gw_kekguard *g)
{
    struct gw_kek_check_params p;
    int rc;

    if (gw_kek_check_params(g->pending, g->npending, &p) != 0) {
        rc = GW_ENOMEM;
    } else {
        const char *values[4] = {p.suites, p.versions, p.checks, g->by};
        struct gw_db_stmt st = {.sql = GW_KEK_MEET_SQL, .nparams = 4, .values = values};
        /* the gateway's own work: charged to no caller */
        rc = gw_db_exec(g->app->db, &st, 1, GW_DB_SHARED, done_cb, g, &g->req);
        gw_kek_check_params_free(&p);
    }
    if (rc == 0)
        return;
    g->req = NULL;
    if (g->starting) {
        retry_later(g, gw_err_str(rc));
        return;
    }
    finish(g, rc == GW_ENOMEM ? GW_ENOMEM : GW_EUNAVAIL,
           "the keyring's new KEK versions could not be checked against the database");
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_check(arg);
}

int gw_kekguard_start(struct gw_kekguard *g, gw_kekguard_cb cb, void *arg)
{
    int rc;

    if (!g->retry_ev && !(g->retry_ev = evtimer_new(g->app->base, retry_cb, g)))
        return GW_ENOMEM;
    rc = gw_keyring_kek_checks(g->app->keys, &g->pending, &g->npending);
    if (rc != 0)
        return rc;
    g->app->keys_unchecked = true;
    g->starting = true;
    g->cb = cb;
    g->arg = arg;
    send_check(g);
    return 0;
}

bool gw_kekguard_covers(struct gw_kekguard *g, const struct gw_keyring *kr)
{
    struct gw_keyring_check *c = NULL;
    size_t n = 0;
    bool all = gw_keyring_kek_checks(kr, &c, &n) == 0;

    for (size_t i = 0; all && i < n; i++) {
        bool found = false;
        for (size_t j = 0; !found && j < g->nvouched; j++)
            found = g->vouched[j].suite == c[i].suite && g->vouched[j].version == c[i].version &&
                    memcmp(g->vouched[j].value, c[i].value, sizeof c[i].value) == 0;
        all = found;
    }
    gw_free(c);
    return all;
}

int gw_kekguard_check(struct gw_kekguard *g, const struct gw_keyring *kr, gw_kekguard_cb cb,
                      void *arg)
{
    int rc;

    if (gw_kekguard_busy(g))
        return GW_EUNAVAIL; /* not a mismatch: nothing was compared */
    rc = gw_keyring_kek_checks(kr, &g->pending, &g->npending);
    if (rc != 0)
        return rc;
    g->cb = cb;
    g->arg = arg;
    send_check(g);
    return 0;
}
