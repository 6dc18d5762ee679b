/* rpc.c: the dispatcher: routes a new stream by its :path to the method table and opens the
 * call, which then identifies the caller and asks the policy (call.c). Invariant: a path not in
 * the table is answered UNIMPLEMENTED before any call exists; the table is never modified. */
#include "rpc.h"

#include <string.h>

#include <openssl/rand.h>

#include "alloc.h"
#include "identity.h"
#include "rpc_int.h"

void gw_rpc_identify_cert(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                          const char *authorization)
{
    struct gw_principal p;
    struct gw_fault f;

    (void)ctx;
    if (gw_identity_resolve(peer, authorization, &p, &f) != 0)
        gw_call_identified(call, &f, NULL);
    else
        gw_call_identified(call, NULL, &p);
}

struct gw_rpc *gw_rpc_new(const struct gw_rpc_params *p)
{
    static const char hex[] = "0123456789abcdef";
    struct gw_rpc *rpc = gw_calloc(1, sizeof(*rpc));
    unsigned char rnd[8];

    if (rpc == NULL)
        return NULL;
    rpc->p = *p;
    rpc->stats = gw_calloc(p->methods->n + 1, sizeof(*rpc->stats));
    if (rpc->stats == NULL) {
        gw_free(rpc);
        return NULL;
    }
    if (rpc->p.identify == NULL)
        rpc->p.identify = gw_rpc_identify_cert;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        gw_free(rpc->stats);
        gw_free(rpc);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(rnd); i++) {
        rpc->id_prefix[2 * i] = hex[rnd[i] >> 4];
        rpc->id_prefix[2 * i + 1] = hex[rnd[i] & 15];
    }
    return rpc;
}

void gw_rpc_free(struct gw_rpc *rpc)
{
    if (rpc == NULL)
        return;
    gw_free(rpc->stats);
    gw_free(rpc);
}

void gw_rpc_count(struct gw_rpc *rpc, const struct gw_method *m, enum gw_grpc_status status,
                  uint64_t ms)
{
    size_t i = m != NULL ? (size_t)(m - rpc->p.methods->methods) : rpc->p.methods->n;
    struct gw_rpc_method_stats *st = &rpc->stats[i];

    if ((unsigned)status < sizeof(st->by_status) / sizeof(st->by_status[0]))
        st->by_status[status]++;
    gw_prom_hist_observe(&st->latency, (double)ms / 1000.0);
}

size_t gw_rpc_stats_n(const struct gw_rpc *rpc)
{
    return rpc->p.methods->n + 1;
}

const char *gw_rpc_stats_path(const struct gw_rpc *rpc, size_t i)
{
    return i < rpc->p.methods->n ? rpc->p.methods->methods[i].path : "other";
}

const struct gw_rpc_method_stats *gw_rpc_stats(const struct gw_rpc *rpc, size_t i)
{
    return &rpc->stats[i];
}

void gw_rpc_set_policy(struct gw_rpc *rpc, const struct gw_policy *pol)
{
    rpc->p.policy = pol;
}

const struct gw_method *gw_rpc_lookup(const struct gw_rpc_table *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->methods[i].path, path) == 0)
            return &t->methods[i];
    return NULL;
}

static void *open_cb(void *ctx, struct gw_h2_stream *st, const struct gw_grpc_headers *hdrs,
                     uint64_t timeout_ms)
{
    struct gw_rpc *rpc = ctx;
    const struct gw_method *m = gw_rpc_lookup(rpc->p.methods, hdrs->path);

    if (m == NULL) {
        struct gw_fault f;
        char msg[64];
        (void)gw_fault_set(&f, GW_EUNIMPL, NULL, NULL, GW_RULE_UNKNOWN_METHOD);
        gw_fault_format(&f, msg, sizeof(msg));
        gw_rpc_count(rpc, NULL, gw_fault_status(&f), 0);
        gw_h2_stream_finish(st, gw_fault_status(&f), msg);
        return NULL;
    }
    return gw_call_open(rpc, st, m, hdrs, timeout_ms);
}

struct gw_h2_upcalls gw_rpc_upcalls(struct gw_rpc *rpc)
{
    struct gw_h2_upcalls up = {
        .open = open_cb,
        .data = gw_call_up_data,
        .end = gw_call_up_end,
        .writable = gw_call_up_writable,
        .close = gw_call_up_close,
        .ctx = rpc,
    };
    return up;
}
