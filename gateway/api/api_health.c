/* api_health.c: grpc.health.v1.Health/Check. SERVING when the database answers SELECT 1 before
 * the deadline, NOT_SERVING otherwise; an unknown service name is NOT_FOUND, as the health
 * checking protocol specifies. Invariant: a pending database request is cancelled when the call
 * is cancelled, so no callback reaches a dead call. */
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "app.h"
#include "db.h"

struct health {
    struct gw_call *call;
    struct gw_db_req *req;
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

void gw_api_health_check(struct gw_call *call, const uint8_t *req, size_t len)
{
    static const struct gw_db_stmt stmt = {.sql = "SELECT 1"};
    Grpc__Health__V1__HealthCheckRequest *in;
    struct gw_app *app = gw_call_app(call);
    struct health *h;
    bool known = false;

    in = (Grpc__Health__V1__HealthCheckRequest *)gw_call_unpack(
        call, &grpc__health__v1__health_check_request__descriptor, req, len);
    if (in == NULL)
        return;
    for (size_t i = 0; i < sizeof(known_services) / sizeof(known_services[0]); i++)
        if (strcmp(in->service, known_services[i]) == 0)
            known = true;
    if (!known) {
        gw_call_fail(call, GW_ENOTFOUND, "service", GW_RULE_UNKNOWN_SERVICE);
        return;
    }
    if (app == NULL || app->db == NULL) {
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
