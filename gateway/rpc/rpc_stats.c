/* rpc_stats.c: the dispatcher's call counters (metrics): finished calls by method and gRPC
 * status, and their latency. Its own file so that the dispatcher (rpc.c) and the calls (call.c)
 * both count here without depending on each other. */
#include "rpc.h"
#include "rpc_int.h"

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
