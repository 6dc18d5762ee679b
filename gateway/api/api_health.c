/* api_health.c: grpc.health.v1.Health, as the health checking protocol specifies.
 * Check: SERVING when the database answers SELECT 1 before the deadline, NOT_SERVING otherwise
 * and while the keyring loaded at start is not yet checked against the database (app/kekguard.h)
 * or no data-key wrap is held for Submit to seal with (domain/wraplease.h: at start, until the
 * first lease; while the database does not answer the next); an unknown service name is
 * NOT_FOUND.
 * Watch (server streaming, for load balancers): the status at once, then each change. Its status
 * is the pool's (SERVING while at least one database connection is ready, the keyring is checked,
 * a data-key wrap is held and the gateway is not draining), looked at every WATCH_POLL_MS; an
 * unknown service gets SERVICE_UNKNOWN and the stream stays open, as the protocol says. A draining
 * gateway sends NOT_SERVING and ends the stream (OK), so a load balancer moves away before the
 * listener closes. A stream lasts until the client ends it or its deadline ([server]
 * max_deadline_ms caps it: a client watches again). A client that does not read gets no queue: only
 * the latest status waits to be sent. Invariant: a pending database request or timer is cancelled
 * when the call is cancelled, so no callback reaches a dead call. */
#include <string.h>

#include <event2/event.h>

#include "grpc/health/v1/health.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "app.h"
#include "clock.h"
#include "db.h"
#include "wraplease.h"

#define WATCH_POLL_MS 250

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

struct health {
    struct gw_call *call;
    struct gw_db_req *req;
};

struct watch {
    struct gw_call *call;
    struct gw_app *app;
    struct event *poll_ev;
    bool known;          /* a service this gateway serves */
    serving_status sent; /* the last status sent; 0 (UNKNOWN) before the first */
};

static const char *const known_services[] = {
    "",
    "waygate.v1",
    "grpc.health.v1.Health",
    "waygate.v1.WaybillIntake",
    "waygate.v1.WaybillQuery",
    "waygate.v1.Compliance",
    "waygate.v1.Admin",
};

static void reply(struct gw_call *call, bool serving)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    int rc;

    resp.status = serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                          : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    rc = gw_call_send(call, &resp.base);
    if (rc != 0) {
        gw_call_fail(call, rc, NULL, GW_RULE_NONE);
        return;
    }
    gw_call_finish(call, GW_GRPC_OK, NULL);
}

static void cancel_cb(void *arg)
{
    struct health *h = arg;

    gw_db_cancel(h->req);
    h->req = NULL;
}

static void db_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct health *h = arg;

    (void)res;
    h->req = NULL;
    gw_call_set_cancel(h->call, NULL, NULL);
    reply(h->call, err == 0);
}

static bool known_service(const char *name)
{
    for (size_t i = 0; i < sizeof(known_services) / sizeof(known_services[0]); i++)
        if (strcmp(name, known_services[i]) == 0)
            return true;
    return false;
}

void gw_api_health_check(struct gw_call *call, const uint8_t *req, size_t len)
{
    static const struct gw_db_stmt stmt = {.sql = "SELECT 1"};
    Grpc__Health__V1__HealthCheckRequest *in;
    struct gw_app *app = gw_call_app(call);
    struct health *h;

    in = (Grpc__Health__V1__HealthCheckRequest *)gw_call_unpack(
        call, &grpc__health__v1__health_check_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (!known_service(in->service)) {
        gw_call_fail(call, GW_ENOTFOUND, "service", GW_RULE_UNKNOWN_SERVICE);
        return;
    }
    /* kekguard.h: not yet vouched; wraplease.h: no data-key wrap held yet, Submit refused */
    if (app == NULL || app->db == NULL || app->keys_unchecked || gw_wraplease_starved(app->wraps)) {
        reply(call, false);
        return;
    }
    h = gw_arena_alloc(gw_call_arena(call), sizeof(*h));
    if (h == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    h->call = call;
    h->req = NULL;
    if (gw_db_exec(app->db, &stmt, 1, 0, db_done_cb, h, &h->req) != 0) {
        reply(call, false);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, h);
}

/* ---- Watch ---- */

static serving_status watch_status(const struct watch *w)
{
    if (!w->known)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    if (w->app == NULL || w->app->draining || w->app->keys_unchecked ||
        gw_wraplease_starved(w->app->wraps) || !gw_db_ready(w->app->db))
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

static void watch_cancel_cb(void *arg)
{
    struct watch *w = arg;

    event_free(w->poll_ev);
    w->poll_ev = NULL;
}

/* Ends the stream (the call is dead after it). */
static void watch_end(struct watch *w, int err)
{
    struct gw_call *call = w->call;

    event_free(w->poll_ev);
    w->poll_ev = NULL;
    gw_call_set_cancel(call, NULL, NULL);
    if (err != 0)
        gw_call_fail(call, err, NULL, GW_RULE_NONE);
    else
        gw_call_finish(call, GW_GRPC_OK, NULL);
}

static void watch_writable_cb(void *arg);

/* Sends the current status when it differs from the last one sent and the client takes it;
 * ends the stream after NOT_SERVING of a draining gateway. Returns false when the call ended. */
static bool watch_update(struct watch *w)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    serving_status now = watch_status(w);
    int rc;

    if (now != w->sent) {
        if (!gw_call_writable(w->call)) {
            gw_call_on_writable(w->call, watch_writable_cb, w);
            return true;
        }
        resp.status = now;
        rc = gw_call_send(w->call, &resp.base);
        if (rc != 0) {
            watch_end(w, rc);
            return false;
        }
        w->sent = now;
    }
    if (w->app != NULL && w->app->draining && w->known) {
        watch_end(w, 0);
        return false;
    }
    return true;
}

static void watch_writable_cb(void *arg)
{
    (void)watch_update(arg);
}

static void watch_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct watch *w = arg;
    const struct timeval tv = gw_clock_tv(WATCH_POLL_MS);

    (void)fd;
    (void)what;
    if (watch_update(w))
        evtimer_add(w->poll_ev, &tv);
}

void gw_api_health_watch(struct gw_call *call, const uint8_t *req, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest *in;
    struct gw_app *app = gw_call_app(call);
    struct watch *w;

    in = (Grpc__Health__V1__HealthCheckRequest *)gw_call_unpack(
        call, &grpc__health__v1__health_check_request__descriptor, req, len);
    if (in == NULL)
        return;
    w = gw_arena_alloc(gw_call_arena(call), sizeof(*w));
    if (w == NULL || app == NULL) {
        gw_call_fail(call, w == NULL ? GW_ENOMEM : GW_EUNAVAIL, NULL, GW_RULE_NONE);
        return;
    }
    memset(w, 0, sizeof(*w));
    w->call = call;
    w->app = app;
    w->known = known_service(in->service);
    w->poll_ev = evtimer_new(app->base, watch_poll_cb, w);
    if (w->poll_ev == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    gw_call_set_cancel(call, watch_cancel_cb, w);
    watch_poll_cb(-1, 0, w); /* the first status now; then every WATCH_POLL_MS */
}
