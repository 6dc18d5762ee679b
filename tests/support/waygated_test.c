/* waygated_test.c: waygated with one test-only method added, for the integration tests of
 * server streaming and backpressure (tests/integration/test_streaming.py). Never installed.
 *
 * /waygate.test.v1.Test/Flood takes a grpc.health.v1.HealthCheckRequest whose service field is
 * "COUNT:SIZE" and streams COUNT WaybillView messages, each carrying SIZE bytes of filler in
 * waybill.item_description, honouring backpressure: it sends while the call is writable and
 * otherwise waits for the writable callback. Any authenticated principal may call it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "waygate/v1/query.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "daemon.h"

#define FLOOD_PATH "/waygate.test.v1.Test/Flood"
#define FLOOD_MAX_SIZE (1u << 20)

struct flood {
    struct gw_call *call;
    unsigned long left;
    Waygate__V1__WaybillView view;
    Waygate__V1__Waybill waybill;
};

static void pump(void *arg)
{
    struct flood *f = arg;
    int rc;

    while (f->left > 0) {
        if (!gw_call_writable(f->call)) {
            gw_call_on_writable(f->call, pump, f);
            return;
        }
        rc = gw_call_send(f->call, &f->view.base);
        if (rc != 0) {
            gw_call_fail(f->call, rc, NULL, GW_RULE_NONE);
            return;
        }
        f->left--;
    }
    gw_call_finish(f->call, GW_GRPC_OK, NULL);
}

static void flood_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest *in;
    unsigned long count, size;
    struct flood *f;
    char *filler, *end;

    in = (Grpc__Health__V1__HealthCheckRequest *)gw_call_unpack(
        call, &grpc__health__v1__health_check_request__descriptor, req, len);
    if (in == NULL)
        return;
    count = strtoul(in->service, &end, 10);
    size = *end == ':' ? strtoul(end + 1, &end, 10) : 0;
    if (*end != '\0' || count == 0 || size == 0 || size > FLOOD_MAX_SIZE) {
        gw_call_fail(call, GW_EINVAL, "service", GW_RULE_PROTOBUF);
        return;
    }
    f = gw_arena_alloc(gw_call_arena(call), sizeof(*f));
    filler = gw_arena_alloc(gw_call_arena(call), size + 1);
    if (f == NULL || filler == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    memset(filler, 'x', size);
    filler[size] = '\0';
    f->call = call;
    f->left = count;
    waygate__v1__waybill_view__init(&f->view);
    waygate__v1__waybill__init(&f->waybill);
    f->waybill.item_description = filler;
    f->view.waybill = &f->waybill;
    pump(f);
}

int main(int argc, char **argv)
{
    static struct gw_method methods[64];
    static const struct gw_policy_method rules[] = {
        {FLOOD_PATH, GW_POLICY_AUTHENTICATED, NULL},
    };
    const struct gw_rpc_table *base = gw_api_methods();
    struct gw_rpc_table table;
    struct gw_daemon_ext ext;

    if (base->n + 1 > sizeof(methods) / sizeof(methods[0])) {
        fprintf(stderr, "waygated-test: method table too large\n");
        return 1;
    }
    memcpy(methods, base->methods, base->n * sizeof(methods[0]));
    methods[base->n] = (struct gw_method){FLOOD_PATH, flood_handler, true, false};
    table.methods = methods;
    table.n = base->n + 1;
    ext.methods = &table;
    ext.rules = rules;
    ext.nrules = 1;
    return gw_daemon_main(argc, argv, &ext);
}
